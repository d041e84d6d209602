"""How long a 1,000-trial dry run takes, and what the scheduler costs
per trial and per group, measured side by side in one run.

    python benchmarks/scheduler.py [--trials 200] [--groups 20]

1. `python -m energyray sweep=<1,000-trial grid> dry_run=true`, wall time of the whole
   command (Python start, Hydra, grid expansion, validation, the printed table); goal < 3 s.
2. The same expansion and grouping in-process (what the driver spends before Ray starts).
3. Scheduler overhead: N trials of a backend that does no work (`_null_backend.py`), once in
   one group and once in `--groups` groups, through `run_sweep` (Ray actors, one ray.wait
   loop) and, beside it, through a bare TrialRunner in this process (no Ray). The difference
   per trial is what the orchestration costs; per group, what a fresh worker costs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import ROOT

HERE = Path(__file__).resolve().parent
GRID = """name: big
description: 1,000 trials, for benchmarks/scheduler.py
repeats: 5
grid:
  batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  precision: [baseline, fp16, bf16, int8, nf4]
  task: [longform, qa]
  prompt_variant: [default, brief]
"""


def dry_run_s() -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as d:
        (Path(d) / "big.yaml").write_text(GRID)
        env = {**os.environ, "ENERGYRAY_SWEEPS": d, "COLUMNS": "200"}
        t0 = time.perf_counter()
        out = subprocess.run([sys.executable, "-m", "energyray", "sweep=big", "dry_run=true", "model=tiny-llama",
                              f"store.path={d}/store", f"hydra.run.dir={d}/hydra"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
    count = next((line for line in out.stdout.splitlines() if line.startswith("trials:")), "?")
    return wall, count


def expand_s() -> tuple[float, int, int]:
    import yaml

    from energyray.grid import expand, group

    spec = yaml.safe_load(GRID)
    defaults = {"model": "tiny-llama", "backend": "transformers", "weights": "real", "precision": "baseline",
                "batch_size": 1, "task": "longform", "prompt_variant": "default", "hardware": "cpu",
                "max_new_tokens": None}
    t0 = time.perf_counter()
    specs = expand("big", spec["grid"], defaults, spec["repeats"])
    groups = group(specs)
    return time.perf_counter() - t0, len(specs), len(groups)


def overhead(trials: int, groups: int) -> dict[str, float]:
    import ray

    from energyray.config import MeasurementConfig, ModelConfig, RunConfig
    from energyray.grid import expand, group
    from energyray.orchestrator import run_sweep
    from energyray.plan import Plan
    from energyray.trial import TrialRunner

    cache = tempfile.mkdtemp()
    cfg = RunConfig(device="cpu", cache_dir=cache, measurement=MeasurementConfig(idle_s=0.0))
    cfg.sampler.cpu = "none"
    cfg.generation.warmup_runs = 0
    model = ModelConfig(name="null", builtin="null")
    backend = "_null_backend:NullBackend"

    def specs_for(n_groups: int) -> list:
        per = trials // n_groups
        precisions = [f"p{i}" for i in range(n_groups)]  # the null backend takes any precision: one group each
        return expand("overhead", {"precision": precisions}, {
            "model": "null", "backend": backend, "weights": "real", "precision": "p0", "batch_size": 1,
            "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 1}, repeats=per)

    out: dict[str, float] = {}
    os.environ["PYTHONPATH"] = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    sys.path.insert(0, str(HERE))
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    out["ray_init_s"] = time.perf_counter() - t0
    try:
        for n_groups in (1, groups):
            specs = specs_for(n_groups)
            plan = Plan(groups=group(specs), models={"null": model}, configs={s.trial_id: {} for s in specs},
                        cfg=cfg, local_hardware="cpu")
            rows: list[Any] = []
            t0 = time.perf_counter()
            run_sweep(plan, rows.append)
            wall = time.perf_counter() - t0
            assert len(rows) == len(specs) and all(r.row["status"] == "ok" for r in rows), rows[:1]
            out[f"ray_{n_groups}g_s_per_trial"] = wall / len(specs)
            # the same trials through a bare TrialRunner, in this process
            t0 = time.perf_counter()
            for g in group(specs):
                runner = TrialRunner(None, cfg.generation, cache, device="cpu", measurement=cfg.measurement)
                runner.load(g[0], model)
                for i, s in enumerate(g):
                    runner.run(s, model, {}, last=i == len(g) - 1)
            bare = time.perf_counter() - t0
            out[f"bare_{n_groups}g_s_per_trial"] = bare / len(specs)
            out[f"n_{n_groups}g"] = len(specs)
    finally:
        ray.shutdown()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=200)
    ap.add_argument("--groups", type=int, default=20)
    a = ap.parse_args()
    wall, count = dry_run_s()
    print(f"dry_run of the 1,000-trial grid (whole command): {wall:.2f} s ({count}); goal < 3 s: "
          f"{'PASS' if wall < 3 else 'MISS'}")
    t, n, g = expand_s()
    print(f"expand + group in-process: {t * 1000:.1f} ms for {n} trials in {g} groups")
    o = overhead(a.trials, a.groups)
    print(f"ray.init: {o['ray_init_s']:.2f} s")
    for n_groups in (1, a.groups):
        ray_t, bare_t = o[f"ray_{n_groups}g_s_per_trial"], o[f"bare_{n_groups}g_s_per_trial"]
        print(f"{int(o[f'n_{n_groups}g'])} null trials in {n_groups} group(s): {ray_t * 1000:.1f} ms/trial through "
              f"Ray vs {bare_t * 1000:.1f} ms bare: scheduler overhead {1000 * (ray_t - bare_t):.1f} ms/trial")
    per_group = (o[f"ray_{a.groups}g_s_per_trial"] - o["ray_1g_s_per_trial"]) * o[f"n_{a.groups}g"] / (a.groups - 1)
    print(f"a fresh worker per group: {per_group:.2f} s more per group")


if __name__ == "__main__":
    main()
