"""How planning scales: the wall time of a 4-trial and a 10,000-trial dry run, side by side.

Each is the whole command (`python -m energyray ... dry_run=true`, as a user runs it: Python's
start, imports, Hydra, the plan, the printout), run as a subprocess, alternating between the two
so that both see the same machine; the median of `--runs` each, and their ratio. The 10,000
trials: five catalogue models x five precisions x ten batch sizes x two tasks x two prompt
variants x ten repeats, weights=dummy. `--root` times another checkout (e.g. an older one).

    python benchmarks/plan_scale.py --runs 5
    python benchmarks/plan_scale.py --root /tmp/energyray-before --root . --runs 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIG = """\
name: plan_scale
repeats: 10
grid:
  model: [gemma3-270m, gemma3-1b, llama3-8b, mistral-7b, qwen2-7b]
  precision: [baseline, fp16, bf16, int8, nf4]
  batch_size: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]
  task: [longform, qa]
  prompt_variant: [default, brief]
"""
CASES = {"4 trials": (["sweep=smoke"], 4), "10,000 trials": (["sweep=plan_scale", "weights=dummy"], 10_000)}


def dry_run_s(root: Path, args: list[str], count: int, work: Path) -> float:
    """Wall time of one dry run; checks that it planned `count` trials."""
    env = {**os.environ, "ENERGYRAY_SWEEPS": str(work / "sweeps"), "PYTHONPATH": str(root), "COLUMNS": "200"}
    for var in ("ENERGYRAY_CONF", "RAY_ADDRESS"):
        env.pop(var, None)
    cmd = [sys.executable, "-m", "energyray", *args, "dry_run=true", f"store.path={work / 'store'}",
           f"hydra.run.dir={work / 'hydra'}"]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if out.returncode != 0 or f"trials: {count}" not in out.stdout:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout[-2000:]}\n{out.stderr[-2000:]}")
    return wall


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, action="append",
                        help="an energyray checkout to time; repeat it to compare checkouts in one run, "
                             "interleaved (default: this one)")
    parser.add_argument("--runs", type=int, default=5, help="runs of each dry run (default 5)")
    args = parser.parse_args(argv)
    roots = [r.resolve() for r in args.root or [ROOT]]
    times: dict[tuple[Path, str], list[float]] = {(r, name): [] for r in roots for name in CASES}
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        (work / "sweeps").mkdir()
        (work / "sweeps" / "plan_scale.yaml").write_text(BIG)
        for _ in range(args.runs):
            for root in roots:
                for name, (overrides, count) in CASES.items():
                    times[root, name].append(dry_run_s(root, overrides, count, work))
    print(f"{args.runs} runs of each, interleaved; {os.cpu_count()} CPUs; 1-min load average "
          f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    for root in roots:
        med = {name: statistics.median(times[root, name]) for name in CASES}
        print(f"{root}:")
        for name in CASES:
            runs = ", ".join(f"{x:.2f}" for x in times[root, name])
            print(f"  {name:>14}: median {med[name]:.2f} s  (runs: {runs})")
        print(f"  ratio 10,000 / 4: {med['10,000 trials'] / med['4 trials']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
