"""The named sweeps in sweeps/: every one expands (dry run), and those a CPU can run, run end
to end through the CLI on the tiny offline model with small overrides (each real run starts
a local Ray: ~15 s). The default sweep's real run is tests/integration/test_default_sweep.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from energyray.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]
SWEEPS = sorted(p.stem for p in (REPO_ROOT / "sweeps").glob("*.yaml"))
TRIAL_ID = re.compile(r"^([0-9a-f]{16}) ", re.MULTILINE)  # a line of the dry run's list
# What a CPU run keeps small: the built-in tiny model, no idle baseline, short answers,
# 100 Hz polling (the tiny model's trials are shorter than the default 0.1 s period).
CPU_RUN = ["model=tiny-llama", "measurement.idle_s=0", "generation.cpu_max_new_tokens=4",
           "sampler.interval_s=0.01", "sweep.repeats=1"]


@pytest.mark.parametrize(("sweep", "count"), [
    ("quantization", 24), ("smoke", 4), ("batching", 12), ("prompt_brevity", 36),
    ("model_scale", 30), ("backends", 42), ("open_vs_closed", 64), ("accuracy", 42),
    ("input_length", 54), ("summarization", 36),
    ("reasoning", 36), ("diffusion", 6),
])
def test_every_named_sweep_expands(energyray, tmp_path, sweep, count):
    r = energyray(f"sweep={sweep}", "dry_run=true", f"store.path={tmp_path / 'store'}")
    assert r.returncode == 0, r.explain()
    assert "Traceback" not in r.output
    assert f"trials: {count}" in r.stdout, r.explain()
    assert len(set(TRIAL_ID.findall(r.stdout))) == count


def test_the_list_above_is_every_sweep():
    listed = {"quantization", "smoke", "batching", "prompt_brevity", "model_scale", "backends", "open_vs_closed",
              "accuracy", "input_length", "summarization", "reasoning", "diffusion"}
    assert set(SWEEPS) == listed  # a new sweep needs its own dry-run case above


def test_model_scale_spans_270m_to_70b(energyray, tmp_path):
    r = energyray("sweep=model_scale", "dry_run=true", f"store.path={tmp_path / 'store'}")
    assert r.returncode == 0, r.explain()
    for model in ("gemma3-270m", "gemma3-1b", "gemma3-4b", "llama3-8b", "llama3-70b"):
        assert model in r.stdout


def _run(cli, tmp_path, shared_cache, *args, code: int = 0):
    """A real run; `code`: its exit status (1: some trial failed)."""
    store = tmp_path / "store"
    r = cli([*args, *CPU_RUN, f"store.path={store}", f"cache_dir={shared_cache}"], tmp_path / "hydra")
    assert r.returncode == code, r.explain()
    assert "Traceback" not in r.output, r.explain()
    return r, Store(store).read("trials")


def test_batching_runs_on_cpu(cli, tmp_path, shared_cache):
    _, t = _run(cli, tmp_path, shared_cache, "sweep=batching", "sweep.grid.batch_size=[1,4]")
    assert len(t) == 2 and (t["status"] == "ok").all(), t[["status", "error"]]
    assert set(t["weights"]) == {"dummy"}
    t = t.sort_values("batch_size")
    assert list(t["batch_size"]) == [1, 4]
    assert list(t["output_tokens"]) == [4, 16]  # random weights: every sequence decodes all its tokens
    assert t["j_per_token"].notna().all()
    assert t.iloc[1]["steady_tokens"] == 4 * 3  # the batch's steady window (no ramp-up, no drain)


def test_prompt_brevity_runs_on_cpu_and_changes_the_input(cli, tmp_path, shared_cache):
    _, t = _run(cli, tmp_path, shared_cache, "sweep=prompt_brevity", "sweep.grid.max_new_tokens=[4]",
                "sweep.grid.task=[longform,qa]", "tasks.limit=4")
    assert len(t) == 6 and (t["status"] == "ok").all(), t[["status", "error"]]
    long = t[t["task"] == "longform"].set_index("prompt_variant")["input_tokens"]
    assert long["brief"] < long["short"] < long["default"] < long["concise"]
    qa = t[t["task"] == "qa"]
    assert set(qa["prompt_variant"]) == {"default", "brief"}
    assert qa["accuracy"].isna().all()  # the tiny model is random init; a real model's is scored
    assert qa["accuracy_reason"].str.contains("tiny-llama is built random").all()
    assert set(t["max_new_tokens_used"]) == {4}


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed here")
def test_backends_runs_transformers_and_the_server_and_fails_vllm_rows_saying_how_to_install(cli, tmp_path, shared_cache):
    r, t = _run(cli, tmp_path, shared_cache, "sweep=backends", "sweep.grid.batch_size=[2]",
                "sweep.grid.precision=[baseline,nf4-dq]", code=1)
    assert len(t) == 5, t
    hf, vl, srv = (t[t["backend"] == b] for b in ("transformers", "vllm", "server"))
    assert (hf["status"] == "ok").all(), hf[["status", "error"]]
    assert set(hf["precision"]) == {"fp32", "nf4-dq"}
    assert bool(hf.set_index("precision").loc["nf4-dq", "double_quant"]) is True
    assert (vl["status"] == "failed").all() and len(vl) == 2
    for error in vl["error"]:
        assert "pip install 'energyray[vllm]'" in error and "CUDA GPU" in error
    assert (vl["energy_source"] == "not_measurable").all()
    config = json.loads(vl.iloc[0]["config_json"])
    assert config["vllm"]["max_num_seqs"] == 2  # the sweep's largest batch
    assert len(srv) == 1 and (srv["status"] == "ok").all(), srv[["status", "error"]]
    assert srv.iloc[0]["load_label"] == "server_startup" and srv.iloc[0]["load_j"] > 0
    assert srv.iloc[0]["output_tokens"] > 0
    assert "3 ok, 2 failed" in r.stdout, r.explain()
    assert not vl["retryable"].any()  # vLLM missing: a rerun fails the same way
    assert "retry" not in r.stdout.strip().splitlines()[-1], r.explain()


def test_each_backend_gets_its_config_section():
    """The scheduler hands each worker the RunConfig sections backends ask for (transformers,
    vllm, api, server), the tasks section the trial runner reads, and the store's absolute path
    (where an image backend saves its images)."""
    from energyray.config import RunConfig
    from energyray.orchestrator.scheduler import backend_settings

    cfg = RunConfig()
    cfg.vllm.gpu_memory_utilization = 0.5
    cfg.transformers.cudnn_attention = None
    assert backend_settings(cfg) == {"transformers": cfg.transformers, "vllm": cfg.vllm, "api": cfg.api,
                                     "server": cfg.server, "tasks": cfg.tasks,
                                     "store_path": str(Path(cfg.store.path).resolve())}
