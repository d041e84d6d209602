"""The driver SIGKILLed mid-sweep, then the same command again: the store ends with every
trial exactly once, each with its samples, and readers never saw a partial file."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd

from energyray.store import Store

TRIALS = 6


def _args(store: Path, cache: Path, hydra: Path) -> list[str]:
    return ["sweep=smoke", "sweep.grid.precision=[baseline]", f"sweep.repeats={TRIALS}", "generation.ignore_eos=true",
            "generation.cpu_max_new_tokens=200", f"store.path={store}", f"cache_dir={cache}", f"hydra.run.dir={hydra}"]


def _trial_files(store: Path) -> list[Path]:
    root = store / "trials"
    return [p for p in root.rglob("*.parquet") if not p.name.startswith(".")] if root.exists() else []


def test_sigkill_of_the_driver_then_rerun_stores_every_trial_once(tmp_path, shared_cache, cli_process):
    store = tmp_path / "store"
    argv, cwd, env = cli_process
    proc = subprocess.Popen([*argv, *_args(store, shared_cache, tmp_path / "h1")], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while len(_trial_files(store)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be killed: make the trials longer"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the driver started (Ray's own processes)
        except ProcessLookupError:
            pass
    first = {p.name: p.stat().st_mtime_ns for p in _trial_files(store)}
    assert 2 <= len(first) < TRIALS, f"killed after {len(first)} of {TRIALS} trials"
    # what a reader sees right after the kill: whole files only
    assert len(pd.read_parquet(store / "trials")) == len(first)

    rerun = subprocess.run([*argv, *_args(store, shared_cache, tmp_path / "h2")], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert f"{TRIALS - len(first)} trials" in rerun.stdout and f"({len(first)} already in the store)" in rerun.stdout

    trials = Store(store).read("trials")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique
    assert (trials["status"] == "ok").all(), trials["error"].tolist()
    assert set(Store(store).read("samples")["trial_id"]) == set(trials["trial_id"])  # no trial without its samples
    after = {p.name: p.stat().st_mtime_ns for p in _trial_files(store)}
    assert all(after[name] == mtime for name, mtime in first.items())  # the first run's trials were not redone
    assert not list(store.rglob(".*.tmp"))  # a killed writer's temp file is cleaned up on the rerun
