"""Hardware targeting: trials run only on Ray nodes that advertise their hardware's resource,
and a sweep the cluster cannot run fails before anything starts."""

from __future__ import annotations

import json

import pytest
import ray

from energyray.config import HardwareConfig, MeasurementConfig, ModelConfig, RunConfig
from energyray.grid import expand, group
from energyray.orchestrator import run_sweep
from energyray.plan import Plan


@pytest.fixture()
def hetero_ray():
    # one node that declares one logical A6000 and one logical L4 (Ray's resources; no real GPU)
    ray.init(num_cpus=2, num_gpus=2, resources={"hw_a6000": 1, "hw_l4": 1}, include_dashboard=False,
             log_to_driver=False, configure_logging=False, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()


def test_each_trial_runs_on_a_worker_holding_its_hardware(hetero_ray, shared_cache):
    cfg = RunConfig(device="cpu", cache_dir=str(shared_cache), measurement=MeasurementConfig(idle_s=0.0))
    cfg.sampler.cpu = "none"
    model = ModelConfig(name="tiny-llama", builtin="tiny-llama")
    specs = expand("hw", {"hardware": ["a6000", "l4"]}, {
        "model": "tiny-llama", "backend": "transformers", "weights": "real", "precision": "baseline",
        "batch_size": 1, "task": "qa", "prompt_variant": "default", "hardware": "auto", "max_new_tokens": 4},
        repeats=2)
    plan = Plan(groups=group(specs), models={"tiny-llama": model}, configs={s.trial_id: {} for s in specs},
                cfg=cfg, local_hardware="cpu",
                hardware={n: HardwareConfig(name=n, gpu=True, resource=f"hw_{n}") for n in ("a6000", "l4")})
    results = []
    run_sweep(plan, results.append)
    by_id = {s.trial_id: s for s in specs}
    assert sorted(r.row["trial_id"] for r in results) == sorted(by_id)
    for r in results:
        assert r.row["status"] == "ok", r.row["error"]
        held = json.loads(r.row["env_json"])["ray_assigned_resources"]
        hw = by_id[r.row["trial_id"]].hardware
        assert held.get(f"hw_{hw}") == 1 and held.get("GPU") == 1
        assert not any(k.startswith("hw_") and k != f"hw_{hw}" for k in held)


def test_a_sweep_for_missing_hardware_fails_before_any_trial(energyray, tmp_path):
    r = energyray("sweep=smoke", "hardware=h100", f"store.path={tmp_path / 'store'}")
    assert r.returncode == 2, r.explain()
    assert "hw_h100" in r.output and "The cluster has" in r.output and "Traceback" not in r.output
    assert "0/4" not in r.output  # refused before the progress bar, not after it started
    assert not (tmp_path / "store" / "trials").exists()
