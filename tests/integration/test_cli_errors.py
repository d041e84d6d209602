"""`python -m energyray` as a user would run it, with the mistakes a user makes: each ends in a
line or two that name the problem and the fix, and an exit status a script can trust
(0 all ok, 1 a trial failed, 2 refused or a setup error, 130 interrupted); never a traceback.

All but the Ctrl-C test are refused before Ray starts (a second each)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from energyray.store import Store

REPO_ROOT = Path(__file__).resolve().parents[2]


def _clean(r, code: int = 2) -> None:
    assert r.returncode == code, r.explain()
    assert "Traceback" not in r.output, r.explain()


# -- the store is checked writable before Ray starts --------------------------------------------
@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_an_unwritable_store_is_refused_before_ray_starts(energyray, tmp_path, where):
    store = "/proc/energyray" if where == "proc" else str(tmp_path / "a-file" / "store")
    (tmp_path / "a-file").write_text("")
    r = energyray("sweep=smoke", f"store.path={store}")
    _clean(r)
    assert f"store.path={store}: cannot write there" in r.stderr and "writable directory" in r.stderr, r.explain()
    assert len(r.stderr.strip().splitlines()) == 1, r.explain()
    assert "Ray" not in r.output, r.explain()  # refused before a cluster started


# -- a broken sweep file of the user's ----------------------------------------------------------
def _in(cwd: Path, cli_process, *args: str) -> subprocess.CompletedProcess[str]:
    argv, _, env = cli_process
    env = {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))}
    return subprocess.run([*argv, *args, f"hydra.run.dir={cwd / 'hydra'}"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_a_yaml_error_in_a_users_sweep_names_file_and_line_and_spares_the_other_sweeps(tmp_path, cli_process):
    sweeps = tmp_path / "sweeps"
    sweeps.mkdir()
    (sweeps / "mine.yaml").write_text("name: mine\ngrid:\n  batch_size: [1, 2\n  task: qa\n")
    (sweeps / "other.yaml").write_text("grid:\n  model: [tiny-llama]\n  batch_size: [1, 2]\n")

    mine = _in(tmp_path, cli_process, "sweep=mine", "dry_run=true")
    assert mine.returncode == 2 and "Traceback" not in mine.stdout + mine.stderr, mine.stderr
    assert f"{sweeps / 'mine.yaml'}: YAML error at line 4: expected ',' or ']'" in mine.stderr, mine.stderr
    assert len(mine.stderr.strip().splitlines()) == 1, mine.stderr

    for sweep, trials in (("other", 2), ("smoke", 4)):  # the user's other sweep, and a shipped one
        r = _in(tmp_path, cli_process, f"sweep={sweep}", "dry_run=true")
        assert r.returncode == 0, r.stderr
        assert f"trials: {trials}" in r.stdout, r.stdout
        assert "mine.yaml: YAML error at line 4" in r.stderr and "sweep 'mine' is left out" in r.stderr


# -- every knob, before Ray starts ----------------------------------------------------------------
@pytest.mark.parametrize(("override", "says"), [
    ("+sweep.grid.max_new_tokens=[0]", "sweep.grid.max_new_tokens: 0 is out of range"),
    ("sweep.grid.batch_size=[1.5]", "sweep.grid.batch_size: 1.5 is out of range: each value must be a whole number"),
    ("device=gpu", "device='gpu' is not one of: auto (a GPU where there is one, else the CPU), cpu, cuda. "
                   "Did you mean 'cuda'?"),
    ("device=cuda:0", "Did you mean 'cuda'?"),
    ("sampler.interval_s=0", "sampler.interval_s=0.0 is out of range: it must be at least 0.001 and at most 60"),
    ("ray.trial_timeout_s=-1", "ray.trial_timeout_s=-1.0 is out of range: it must be greater than 0"),
    ("sweep.repeats=0", "sweep.repeats=0 is out of range: it must be at least 1"),
    ("generation.warmup_runs=-1", "generation.warmup_runs=-1 is out of range: it must be at least 0"),
    ("ray.cpu_workers=0", "ray.cpu_workers=0 is out of range: it must be at least 1"),
])
def test_a_bad_knob_is_refused_upfront_with_its_name_value_and_range(energyray, tmp_path, override, says):
    store = tmp_path / "store"
    r = energyray("sweep=smoke", f"store.path={store}", override)
    _clean(r)
    assert says in r.stderr, r.explain()
    assert not store.exists()


def test_a_value_hydra_cannot_convert_is_exit_2(energyray, tmp_path):
    r = energyray("sweep=smoke", f"store.path={tmp_path / 'store'}", "sampler.interval_s=abc")
    _clean(r)
    assert "sampler.interval_s" in r.stderr and "abc" in r.stderr


def test_report_on_a_missing_store_is_a_short_message(cli_process, tmp_path):
    argv, cwd, env = cli_process
    r = subprocess.run([*argv, "report", "--store", str(tmp_path / "nothing-here")], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=120)
    # a path that is no store is refused input (2), one line naming both fixes
    assert r.returncode == 2 and "Traceback" not in r.stdout + r.stderr, r.stderr
    assert "no store at" in r.stderr and "python -m energyray sweep=" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


# -- Ctrl-C ----------------------------------------------------------------------------------------
TRIALS = 2


def _trial_files(store: Path) -> list[Path]:
    root = store / "trials"
    return [p for p in root.rglob("*.parquet") if not p.name.startswith(".")] if root.exists() else []


def test_ctrl_c_stops_cleanly_says_what_is_stored_and_the_same_command_resumes(tmp_path, shared_cache, cli_process):
    argv, cwd, env = cli_process
    store = tmp_path / "store"
    # trials of several seconds each (16 requests of 200 tokens, 2 at a time), so that the second is
    # still running when Ctrl-C comes, however fast the machine
    args = ["sweep=smoke", "sweep.grid.precision=[baseline]", f"sweep.repeats={TRIALS}", "generation.ignore_eos=true",
            "generation.cpu_max_new_tokens=200", "requests=16", f"store.path={store}", f"cache_dir={shared_cache}"]
    # SIGINT as a terminal's Ctrl-C finds it: not ignored, even where this suite runs as a
    # background job (whose children inherit SIGINT ignored, so Python would not raise on it)
    proc = subprocess.Popen([*argv, *args, f"hydra.run.dir={tmp_path / 'h1'}"], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 240
        while not _trial_files(store) and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before Ctrl-C: make the trials longer"
        os.kill(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        # the driver's own Ray (in its process group) is shut down with it
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.2)
        else:
            pytest.fail("Ray processes of the interrupted driver are still running")
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 130, out[-3000:] + err[-3000:]
    assert "Traceback" not in out + err, out[-3000:] + err[-3000:]
    m = re.search(r"interrupted\. This run stored (\d+) trial\(s\) \((\d+) ok\); the store (\S+) has (\d+) of the "
                  rf"{TRIALS} trials of sweep 'smoke' done\. The same command resumes", err)
    assert m, err[-3000:]
    stored = len(_trial_files(store))
    assert int(m[1]) == int(m[2]) == int(m[4]) == stored and 1 <= stored < TRIALS and m[3] == str(store)

    rerun = subprocess.run([*argv, *args, f"hydra.run.dir={tmp_path / 'h2'}"], cwd=cwd, env=env,
                           capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    last = rerun.stdout.strip().splitlines()[-1]
    assert last == f"sweep smoke: {TRIALS - stored} ok, 0 failed, {stored} skipped; store {store}", rerun.stdout[-3000:]
    trials = Store(store).read("trials")
    assert len(trials) == TRIALS and trials["trial_id"].is_unique and (trials["status"] == "ok").all()
