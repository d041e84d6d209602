"""The trial process (ray.trial_process=child): a TrialRunner in a plain child process whose
sampler calls come back to the parent. Without Ray: the parent's sampler here is a plain
object, the model the real tiny Llama on CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from energyray.backends.transformers import build_tiny_llama
from energyray.config import GenerationConfig, ModelConfig
from energyray.grid import TrialSpec, expand
from energyray.samplers.base import WindowReading
from energyray.trial.process import TrialProcess, TrialProcessDied


class CountingSampler:
    """The Sampler protocol, in the parent: 2 W for every window, and who called it."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []  # (method, label, pid of the caller)
        self.open: dict[str, int] = {}

    def describe(self) -> dict[str, Any]:
        return {"sampler": "counting", "scope": "cpu", "interval_s": 0.1}

    def latest(self) -> dict[str, Any]:
        return {"t_ns": time.monotonic_ns(), "power_w": 2.0}

    def begin(self, label: str) -> int:
        self.calls.append(("begin", label, os.getpid()))
        self.open[label] = time.monotonic_ns()
        return self.open[label]

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        self.calls.append(("end", label, os.getpid()))
        t0, t1 = from_ns or self.open.pop(label), at_ns or time.monotonic_ns()
        return WindowReading(label=label, source="counter", scope="cpu", start_ns=t0, end_ns=t1,
                             energy_j=2.0 * (t1 - t0) / 1e9)


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> ModelConfig:
    path = build_tiny_llama(tmp_path_factory.getbasetemp() / "shared-tiny-llama")
    return ModelConfig(name="tiny-llama", path=str(path), params_b=0.000204)


def spec(**over: Any) -> TrialSpec:
    point = dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline", batch_size=2,
                 task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=4)
    (s,) = expand("unit", {}, {**point, **over})
    return s


def started(tmp_path: Path, sampler: Any) -> TrialProcess:
    tp = TrialProcess("cpu", str(tmp_path), preload="transformers")
    generation = GenerationConfig(ignore_eos=True, warmup_runs=1, warmup_new_tokens=2)
    tp.start(sampler, {}, generation=generation, cache_dir=str(tmp_path), device="cpu", seed=0, node="test-node",
             env={"hostname": "test-node"})
    return tp


def test_a_trial_runs_in_the_child_and_its_windows_are_measured_by_the_parents_sampler(tmp_path, model) -> None:
    sampler = CountingSampler()
    tp = started(tmp_path, sampler)
    try:
        assert tp.ready()["pid"] == tp.pid != os.getpid()
        s = spec()
        tp.load(s, model)
        result = tp.run(s, model, {"trial": {}}, last=True)
    finally:
        tp.close()
    row = result.row
    assert row["status"] == "ok", row.get("error")
    assert row["output_tokens"] == 2 * 4
    assert row["energy_j"] is not None, row.get("energy_reason")
    assert row["energy_j"] > 0 and row["energy_source"] == "counter"
    labels = [label for method, label, _ in sampler.calls if method == "begin"]
    assert labels == ["load", "warmup", f"trial:{s.trial_id}", "response", "unload"]
    assert {pid for *_, pid in sampler.calls} == {os.getpid()}  # called here, for the child
    assert tp.proc.returncode == 0  # quit when asked


def test_the_childs_error_arrives_as_itself_with_the_childs_traceback(tmp_path, model) -> None:
    tp = started(tmp_path, CountingSampler())
    try:
        with pytest.raises(Exception) as info:
            tp.load(spec(precision="fp7"), model)
        assert "fp7" in str(info.value)
        assert any("in the trial process" in n for n in getattr(info.value, "__notes__", [])) or sys.version_info < (3, 11)
        assert tp.proc.poll() is None  # the child lives on: the next group may load
    finally:
        tp.close()


def test_a_child_that_dies_mid_group_is_reported_with_its_signal(tmp_path) -> None:
    tp = started(tmp_path, None)
    os.kill(tp.pid, signal.SIGKILL)  # the child this test started
    with pytest.raises(TrialProcessDied, match="signal 9"):
        tp.unload()


def test_the_child_dies_with_the_worker_that_started_it(tmp_path) -> None:
    """Linux: a worker killed by Ray (SIGKILL) takes its trial process, and the model, with it."""
    code = ("import sys; from energyray.trial.process import TrialProcess; "
            f"tp = TrialProcess('cpu', {str(tmp_path)!r}); tp.ready(); print(tp.pid, flush=True); "
            "import time; time.sleep(120)")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert os.path.exists(f"/proc/{child}")
    finally:
        parent.kill()  # the helper this test started
        parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and _alive(child):
        time.sleep(0.05)
    assert not _alive(child)


def _alive(pid: int) -> bool:
    """Running, not a zombie (reaped by init once its parent is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_ray_trial_process_takes_child_or_actor_and_names_both_otherwise() -> None:
    from energyray.config import trial_process_mode
    from energyray.errors import ConfigError

    assert trial_process_mode("Child") == "child" and trial_process_mode("actor") == "actor"
    with pytest.raises(ConfigError, match="use child .* or actor"):
        trial_process_mode("thread")
