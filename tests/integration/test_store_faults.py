"""A store that fails or is damaged, through the real CLI: a write that fails mid-sweep (the
file size limit, as a full disk fails it) stops the sweep with one line and keeps what is
stored; a truncated trials file is skipped and named by `report`, then moved aside and its
trial run again by the same command, which completes the sweep. Two real sweeps in all."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from energyray.store import QUARANTINE, Store

TRIALS = 3
LIMIT_BYTES = 16 * 1024  # below a trials file (~45 kB): the next trial's write fails part way


def _args(store: Path, cache: Path, hydra: Path) -> list[str]:
    return ["sweep=smoke", "sweep.grid.precision=[baseline]", f"sweep.repeats={TRIALS}", "generation.ignore_eos=true",
            "generation.cpu_max_new_tokens=100", f"store.path={store}", f"cache_dir={cache}", f"hydra.run.dir={hydra}"]


def _files(store: Path, table: str = "trials") -> list[Path]:
    root = store / table
    return sorted(p for p in root.rglob("*.parquet") if not p.name.startswith(".")) if root.exists() else []


def _run(argv: list[str], cwd: Path, env: dict[str, str], args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*argv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _explain(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}\n--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-4000:]}"


def _sweep_until_a_write_fails(argv: list[str], cwd: Path, env: dict[str, str], args: list[str],
                               store: Path) -> subprocess.CompletedProcess[str]:
    """The sweep, whose driver may not grow a file past LIMIT_BYTES once its first trial is
    stored (set from outside with prlimit: Ray's own processes, started before, keep theirs)."""
    proc = subprocess.Popen([*argv, *args], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        while not _files(store) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before its writes could be limited: make the trials longer"
        resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (LIMIT_BYTES, resource.RLIM_INFINITY))
        out, err = proc.communicate(timeout=240)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # anything the driver left (Ray's own processes)
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def test_a_full_disk_stops_the_sweep_and_a_damaged_file_neither_blocks_the_report_nor_the_rerun(
        tmp_path, shared_cache, cli_process):
    store = tmp_path / "store"
    argv, cwd, env = cli_process

    # 1. a write fails: one line naming the store and the reason; what is stored stays whole
    first = _sweep_until_a_write_fails(argv, cwd, env, _args(store, shared_cache, tmp_path / "h1"), store)
    assert first.returncode != 0, _explain(first)
    assert "Traceback" not in first.stderr, _explain(first)
    [error] = [line for line in first.stderr.splitlines() if line.startswith("energyray: error:")]
    assert error.startswith(f"energyray: error: cannot write to the store {store}: File too large (writing "), error
    assert "Trials already stored are kept" in error and "run the same command again" in error
    stored = _files(store)
    assert 1 <= len(stored) < TRIALS, _explain(first)
    assert not list(store.rglob(".*.tmp"))  # the failed write left no temp file
    assert len(pd.read_parquet(store / "trials")) == len(stored)

    # 2. one stored trials file truncated: `report` skips it, names it, and changes nothing
    victim = stored[0]
    damaged = victim.read_bytes()[: victim.stat().st_size // 2]
    victim.write_bytes(damaged)
    report = _run(argv, cwd, env, ["report", "--store", str(store)])
    if len(stored) > 1:  # the summary of the others, then what was skipped
        assert report.returncode == 0 and f"{len(stored) - 1} trials" in report.stdout, _explain(report)
    else:  # nothing left to summarise: says so, and what was skipped
        assert report.returncode == 1 and "No trials in" in report.stderr, _explain(report)
    assert "skipped 1 damaged file(s):" in report.stdout + report.stderr, _explain(report)
    assert f"{victim}: Parquet magic bytes not found" in report.stdout + report.stderr, _explain(report)
    assert victim.read_bytes() == damaged and not (store / QUARANTINE).exists()

    # 3. the same command: names the file, moves it aside with its samples, runs its trial again
    again = _run(argv, cwd, env, _args(store, shared_cache, tmp_path / "h2"))
    assert again.returncode == 0, _explain(again)
    assert "Traceback" not in again.stderr, _explain(again)
    moved = store / QUARANTINE / victim.relative_to(store)
    [line] = [x for x in (again.stdout + again.stderr).splitlines() if str(victim) in x]
    assert "damaged" in line and f"moved to {moved}" in line and "runs again" in line, line
    done = len(stored) - 1
    assert f"{TRIALS - done} trials" in again.stdout and f"({done} already in the store)" in again.stdout
    assert moved.read_bytes() == damaged
    assert (store / QUARANTINE / "samples" / victim.relative_to(store / "trials")).is_file()

    # every trial stored once, with its samples; every reader agrees and none reads the quarantine
    trials = Store(store).read("trials")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique and victim.stem in set(trials["trial_id"])
    assert (trials["status"] == "ok").all(), trials["error"].tolist()
    assert set(Store(store).read("samples")["trial_id"]) == set(trials["trial_id"])
    assert len(pd.read_parquet(store / "trials")) == TRIALS
    assert ds.dataset(store / "trials", format="parquet", partitioning="hive").count_rows() == TRIALS
    clean = _run(argv, cwd, env, ["report", "--store", str(store)])
    assert clean.returncode == 0 and "skipped" not in clean.stdout and f"{TRIALS} trials" in clean.stdout, \
        _explain(clean)
