"""backend=server's process handling, with the fake OpenAI server as the launched command.

The launch / wait-until-ready / shutdown machinery is the same whatever the command; these
tests run the fake (`python -m energyray.testing.fake_openai`, ~0.5 s to start) so that they
take seconds. tests/integration/test_server_backend.py runs a real `transformers serve`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from energyray.backends.server import ServerBackend
from energyray.config import (
    ApiConfig,
    GenerationConfig,
    MeasurementConfig,
    ModelConfig,
    ServerConfig,
)
from energyray.errors import BackendError, ConfigError
from energyray.grid import expand
from energyray.samplers.base import WindowReading
from energyray.trial import TrialRunner
from energyray.trial.record import GROUP_RULE

FAKE = ["{python}", "-m", "energyray.testing.fake_openai", "--port", "{port}", "--api-key", "unused"]
KEY = "sk-test-NeverForAServer0123456789abcdef"
DEFAULTS = {"model": "m", "backend": "server", "weights": "real", "precision": "baseline", "batch_size": 2,
            "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 8}


@pytest.fixture
def model(tmp_path) -> ModelConfig:
    d = tmp_path / "model-dir"
    d.mkdir()
    return ModelConfig(name="m", path=str(d), params_b=0.1)


def server_cfg(tmp_path: Path, command: list[str] | None = None, **kw: Any) -> ServerConfig:
    return ServerConfig(**{"command": command or FAKE, "hf_home": str(tmp_path / "hf"), "startup_timeout_s": 60.0,
                           "shutdown_timeout_s": 10.0, **kw})


def started(tmp_path: Path, model: ModelConfig, **kw: Any) -> ServerBackend:
    b = ServerBackend(ApiConfig(backoff_s=0.01), server_cfg(tmp_path, **kw))
    b.prepare(model, "real", "baseline", "cpu", str(tmp_path), 0)
    b.load(model, "real", "baseline", "cpu", str(tmp_path), 0)
    return b


@pytest.mark.extra("api")
def test_launch_generate_and_shut_down(tmp_path, model, gone):
    b = started(tmp_path, model)
    assert b.proc is not None
    pid = b.proc.pid
    gen = b.generate(["Question: What is the capital of France?\nAnswer:", "hi"], 8, False)
    assert gen.output_tokens and gen.output_tokens > 0 and gen.ttft_s is not None
    assert b.decode(gen)[0].startswith("The answer")
    assert gen.extras["api_endpoint"] == "completions" and gen.extras["cost_usd"] is None
    assert gen.extras["cost_reason"] == "a local server: no API price"
    b.unload()
    assert gone(pid)
    assert b.unload_extras["server_shutdown_forced"] is False
    assert b.unload_extras["server_exit_code"] is not None and b.unload_extras["server_shutdown_s"] < 10


@pytest.mark.extra("api")
def test_the_command_gets_its_placeholders_and_precision_args(tmp_path, model):
    cfg = server_cfg(tmp_path, command=["{python}", "-m", "x", "{model_dir}", "{host}", "{port}", "{device}", "{served_model}"],
                     precision_args={"baseline": ["--dtype", "{baseline_dtype}"], "nf4": ["--quantization", "bnb-4bit"]})
    b = ServerBackend(ApiConfig(), cfg)
    b.prepare(model, "real", "nf4", "cpu", str(tmp_path), 0)
    assert b.command == [sys.executable, "-m", "x", model.path, "127.0.0.1", str(b.port), "cpu", model.path,
                         "--quantization", "bnb-4bit"]
    b.prepare(model, "real", "baseline", "cpu", str(tmp_path), 0)
    assert b.command[-2:] == ["--dtype", "float32"] and b.resolved == "fp32"  # the default baseline_dtype on a CPU
    with pytest.raises(ConfigError, match="precision_args.*int8"):
        b.prepare(model, "real", "int8", "cpu", str(tmp_path), 0)
    with pytest.raises(ConfigError, match="unknown placeholder"):
        ServerBackend(ApiConfig(), server_cfg(tmp_path, command=["{nope}"])).prepare(model, "real", "baseline", "cpu",
                                                                                       str(tmp_path), 0)
    with pytest.raises(ConfigError, match="weights=dummy"):
        b.prepare(model, "dummy", "baseline", "cpu", str(tmp_path), 0)


@pytest.mark.extra("api")
def test_hf_home_gets_a_hub_folder(tmp_path, model):
    b = started(tmp_path, model)
    b.unload()
    assert (tmp_path / "hf" / "hub").is_dir()


@pytest.mark.extra("api")
def test_the_server_never_sees_the_users_key(tmp_path, model, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    dump = tmp_path / "env.json"
    script = ("import json, os, sys; json.dump(dict(os.environ), open(sys.argv[1], 'w')); "
              "from energyray.testing.fake_openai import main; main(['--port', sys.argv[2], '--api-key', 'unused'])")
    b = started(tmp_path, model, command=["{python}", "-c", script, str(dump), "{port}"])
    gen = b.generate(["hi"], 4, False)  # the fake answers 401 to any key but "unused"
    b.unload()
    assert gen.output_tokens
    env = json.loads(dump.read_text())
    assert "OPENAI_API_KEY" not in env and KEY not in json.dumps(env)
    assert env["HF_HOME"] == str(tmp_path / "hf") and env["HF_HUB_DISABLE_UPDATE_CHECK"] == "1"


@pytest.mark.extra("api")
def test_a_server_that_exits_during_startup_says_why(tmp_path, model):
    cmd = ["{python}", "-c", "import sys; print('cannot load the model: bad dir'); sys.exit(3)"]
    with pytest.raises(BackendError, match=r"(?s)exited during startup \(code 3\).*cannot load the model"):
        started(tmp_path, model, command=cmd)


@pytest.mark.extra("api")
def test_startup_timeout_kills_the_server(tmp_path, model):
    cmd = ["{python}", "-c", "import time; time.sleep(60)"]
    b = ServerBackend(ApiConfig(), server_cfg(tmp_path, command=cmd, startup_timeout_s=1.0))
    b.prepare(model, "real", "baseline", "cpu", str(tmp_path), 0)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="did not answer"):
        b.load(model, "real", "baseline", "cpu", str(tmp_path), 0)
    assert time.monotonic() - t0 < 10
    assert b.proc is not None and b.proc.poll() is not None


@pytest.mark.extra("api")
def test_a_server_ignoring_sigterm_is_killed_after_the_timeout(tmp_path, model, gone):
    script = ("import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
              "from energyray.testing.fake_openai import main; main(['--port', sys.argv[1]])")
    b = started(tmp_path, model, command=["{python}", "-c", script, "{port}"], shutdown_timeout_s=0.5)
    assert b.proc is not None
    pid = b.proc.pid
    b.unload()
    assert b.unload_extras["server_shutdown_forced"] is True and b.unload_extras["server_exit_code"] == -signal.SIGKILL
    assert gone(pid)


@pytest.mark.extra("api")
def test_a_crashed_server_fails_the_trial_not_the_worker(tmp_path, model):
    b = started(tmp_path, model)
    assert b.proc is not None
    b.proc.kill()
    b.proc.wait()
    with pytest.raises(BackendError, match="server exited"):
        b.generate(["hi"], 4, False)


def test_the_server_dies_with_its_worker(tmp_path, model, gone):
    """A worker killed by the orchestrator (SIGKILL) must not leave a server holding the GPU."""
    code = textwrap.dedent(f"""
        import sys, time
        from energyray.backends.server import ServerBackend
        from energyray.config import ApiConfig, ModelConfig, ServerConfig
        m = ModelConfig(name="m", path={model.path!r})
        b = ServerBackend(ApiConfig(), ServerConfig(command={FAKE!r}, hf_home={str(tmp_path / "hf")!r}))
        b.prepare(m, "real", "baseline", "cpu", {str(tmp_path)!r}, 0)
        b.load(m, "real", "baseline", "cpu", {str(tmp_path)!r}, 0)
        print(b.proc.pid, flush=True)
        time.sleep(120)
    """)
    worker = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
    try:
        assert worker.stdout is not None
        server_pid = int(worker.stdout.readline())
        os.kill(server_pid, 0)  # it runs
        worker.kill()
        worker.wait()
        assert gone(server_pid)
    finally:
        worker.kill()


# -- through the runner: startup and shutdown are measured phases ---------------------------------
class ConstantSampler:
    """Every window reads 5 J: enough to see which phases were measured."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.open: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        return {"sampler": "constant", "scope": "cpu"}

    def latest(self) -> dict[str, Any]:
        return {}

    def begin(self, label: str) -> int:
        self.labels.append(label)
        self.open[label] = time.monotonic_ns()
        return self.open[label]

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        t0 = self.open.pop(label)
        return WindowReading(label=label, source="counter", scope="cpu", start_ns=t0, end_ns=time.monotonic_ns(),
                             energy_j=5.0, parts={n: {"energy_j": 2.5, "source": "counter_apportioned"}
                                                  for n in (parts or {})})


@pytest.mark.extra("api")
def test_runner_measures_startup_generation_and_shutdown(tmp_path, model, monkeypatch):
    from energyray import roofline

    monkeypatch.setattr(roofline, "measure_copy_bandwidth_gbs", lambda: 10.0)
    sampler = ConstantSampler()
    runner = TrialRunner(sampler, GenerationConfig(warmup_runs=1), str(tmp_path), device="cpu",
                         measurement=MeasurementConfig(idle_s=0.0),
                         backend_settings={"api": ApiConfig(), "server": server_cfg(tmp_path)})
    group = expand("t", {"prompt_variant": ["default", "brief"]}, DEFAULTS)
    runner.load(group[0], model)
    rows = [runner.run(s, model, {}, last=i == 1).row for i, s in enumerate(group)]
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["load_label"] == "server_startup" and row["unload_label"] == "server_shutdown"
        assert row["load_j"] == 5.0 and row["load_s"] > 0  # the startup, measured locally
        assert row["energy_j"] == 5.0 and row["energy_source"] == "counter"  # unlike backend=openai
        assert row["output_tokens"] > 0 and row["device"] == "cpu"
    assert rows[0]["warmup_runs"] == 1  # the generation config's warmup applies to a local server
    assert rows[1]["unload_j"] == 5.0 and rows[1]["server_shutdown_forced"] is False
    assert "load" in sampler.labels and "unload" in sampler.labels
    assert "backend=server" in GROUP_RULE and "group_rule" not in rows[0]  # the rule: in the column docs


@pytest.mark.extra("api")
def test_a_hub_model_is_fetched_in_prepare_not_in_the_measured_startup(tmp_path, monkeypatch):
    import huggingface_hub

    local = tmp_path / "snapshot"
    local.mkdir()
    calls: list[str] = []

    def fake_download(repo: str, **kw: Any) -> str:
        calls.append(repo)
        return str(local)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_download)
    b = ServerBackend(ApiConfig(), server_cfg(tmp_path, command=["vllm", "serve", "{model_dir}"]))
    b.prepare(ModelConfig(name="q", hub_id="Qwen/Qwen2-7B-Instruct"), "real", "baseline", "cpu", str(tmp_path), 0)
    assert calls == ["Qwen/Qwen2-7B-Instruct"]
    assert b.model_dir == str(local) and b.command[:3] == ["vllm", "serve", str(local)]
