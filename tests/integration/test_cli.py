"""`python -m energyray` end to end, as a subprocess: real sweeps on Ray, dry runs, refused input.

Two real sweeps start a local Ray (the smoke sweep, and a sweep with one failing group);
everything else is a dry run or input refused before anything runs.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pandas as pd
import pytest

from energyray.store import Store

TRIAL_ID = re.compile(r"^([0-9a-f]{16}) ", re.MULTILINE)  # a line of the dry run's list


def _no_traceback(r) -> None:
    assert "Traceback" not in r.output, r.explain()


def _last_line(r) -> str:
    """The run's last line on stdout: its counts, and what a rerun does."""
    return (r.stdout.strip().splitlines() or [""])[-1]


# -- a. the smoke sweep, end to end, then resumed ---------------------------------------------
@pytest.fixture(scope="module")
def smoke(tmp_path_factory, shared_cache, cli):
    root = tmp_path_factory.mktemp("smoke")
    store = root / "store"
    # The tiny model's trials can take ~20 ms, shorter than the default 0.1 s polling period,
    # and a window with no sample inside stores no samples: poll at 100 Hz so that some land.
    # ray.bytecode_cache=true: the worker keeps the bytecode it compiles under the cache whatever
    # this machine's PYTHONDONTWRITEBYTECODE (auto would, only where it is set)
    args = ["sweep=smoke", f"store.path={store}", f"cache_dir={shared_cache}", "sampler.interval_s=0.01",
            "ray.bytecode_cache=true"]
    first = cli(args, root / "hydra-1")
    return {"args": args, "store": store, "root": root, "first": first, "cli": cli}


def _trials(store: Path):
    return Store(store).read("trials")


def test_smoke_sweep_exits_zero(smoke):
    r = smoke["first"]
    assert r.returncode == 0, r.explain()
    _no_traceback(r)


def test_smoke_sweep_stores_four_good_trials(smoke):
    assert smoke["first"].returncode == 0, smoke["first"].explain()
    df = _trials(smoke["store"])
    assert len(df) == 4, df
    assert (df["status"] == "ok").all(), df[["status", "error"]]
    assert df["trial_id"].is_unique
    assert set(df["sweep"]) == {"smoke"}
    assert set(df["model"]) == {"tiny-llama"}
    assert sorted(df["precision_requested"]) == ["baseline", "baseline", "nf4", "nf4"]
    assert sorted(df["precision"]) == ["fp32", "fp32", "nf4", "nf4"]  # baseline resolved on a CPU
    assert sorted(df["repeat"].astype(int)) == [0, 0, 1, 1]


def test_smoke_sweep_measures_energy_and_throughput(smoke):
    df = _trials(smoke["store"])
    assert len(df) == 4
    assert df["energy_j"].notna().all(), df[["energy_j", "energy_reason"]]
    assert (df["energy_j"] > 0).all()
    assert set(df["energy_source"]) <= {"estimated", "counter"}, set(df["energy_source"])
    assert df["energy_scope"].notna().all()
    assert (df["output_tokens"] > 0).all()
    assert (df["tokens_per_s"] > 0).all()
    for _, row in df.iterrows():
        assert row["j_per_token"] == pytest.approx(row["energy_j"] / row["output_tokens"])


def test_smoke_sweep_config_json_names_the_model(smoke):
    df = _trials(smoke["store"])
    assert len(df) == 4
    for text in df["config_json"]:
        config = json.loads(text)
        assert config["model"]["name"] == "tiny-llama"
        assert config["sweep"]["name"] == "smoke"
        assert config["trial"]["model"] == "tiny-llama"
    for text in df["env_json"]:
        json.loads(text)


def test_smoke_sweep_writes_samples_and_systems(smoke):
    store = Store(smoke["store"])
    trials = store.read("trials")
    samples = store.read("samples")
    systems = store.read("systems")
    assert (smoke["store"] / "samples").is_dir() and (smoke["store"] / "systems").is_dir()
    assert len(samples) > 0
    assert set(samples["trial_id"]) <= set(trials["trial_id"])
    window = samples[samples["phase"].isin(["prefill", "decode", "generate", "trial_edge"])]
    assert len(window) == int(trials["samples_n"].sum())  # each trial window's samples, all stored
    assert set(samples["phase"]) <= {"prefill", "decode", "generate", "trial_edge", "idle", "load",
                                     "warmup", "response", "unload"}
    assert {"idle", "load"} <= set(samples["phase"])  # the group phases are in the series too
    assert len(systems) >= 1


def test_smoke_sweep_records_where_the_worker_start_went(smoke):
    """The worker imported its backend in the background (ray.preload_backend) and says how
    its start went; load says how long it still waited for that import."""
    store = Store(smoke["store"])
    systems, trials = store.read("systems"), store.read("trials")
    worker = systems[systems["kind"].isin(["cpu", "gpu"])]
    assert len(worker) >= 1 and (worker["worker_preload"] == "transformers").all()
    assert (worker["worker_init_s"] > 0).all() and (worker["worker_init_s"] >= worker["worker_bind_s"]).all()
    assert worker["worker_process_age_s"].notna().all()  # Linux: /proc
    assert trials["import_s"].notna().all() and (trials["import_s"] >= 0).all()


def test_smoke_sweep_worker_runs_at_a_users_priority_and_the_observer_is_measured(smoke):
    """Ray starts workers at nice 15; the worker takes 0 back where it may (root here in CI's
    containers, or not: the row says which). Every trial row says what the sampler cost."""
    store = Store(smoke["store"])
    worker = store.read("systems")
    worker = worker[worker["kind"].isin(["cpu", "gpu"])]
    assert worker["worker_nice_at_start"].notna().all() and worker["worker_nice"].notna().all()
    privileged = os.geteuid() == 0
    expected = 0 if privileged else worker["worker_nice_at_start"]
    assert (worker["worker_nice"] == expected).all(), worker[["worker_nice_at_start", "worker_nice"]]
    trials = store.read("trials")
    measured = trials[trials["energy_j"].notna()]
    assert len(measured) >= 1 and (measured["sampler_cpu_s"] >= 0).all()


def test_smoke_sweep_worker_kept_its_bytecode_under_the_cache(smoke, shared_cache):
    """ray.bytecode_cache=true: the worker wrote what it compiled (transformers, its backend) under
    <cache_dir>/pycache, before it imported them."""
    systems = Store(smoke["store"]).read("systems")
    worker = systems[systems["kind"].isin(["cpu", "gpu"])]
    assert set(worker["worker_bytecode_cache"]) == {str(shared_cache / "pycache")}
    kept = list((shared_cache / "pycache").rglob("*.pyc"))
    assert any("transformers" in p.parts for p in kept), kept[:5]
    assert any(p.name.startswith("transformers.") and "backends" in p.parts for p in kept), kept[:5]


def test_smoke_sweep_prints_the_summary(smoke):
    r = smoke["first"]
    assert r.returncode == 0, r.explain()
    assert "sweep smoke · tiny-llama" in r.stdout, r.explain()  # the whole sweep, from the store
    assert "J/token" in r.stdout and "tokens/s" in r.stdout
    assert "tiny-llama" in r.stdout
    assert _last_line(r).startswith(f"sweep smoke: 4 ok, 0 failed, 0 skipped; store {smoke['store']}"), r.explain()


def test_smoke_sweep_rerun_resumes_without_duplicates(smoke):
    assert smoke["first"].returncode == 0, smoke["first"].explain()
    files = sorted((smoke["store"] / "trials").rglob("*.parquet"))
    before = {p: p.stat().st_mtime_ns for p in files}
    again = smoke["cli"](smoke["args"], smoke["root"] / "hydra-2")
    assert again.returncode == 0, again.explain()
    _no_traceback(again)
    assert "already in" in again.output, again.explain()
    assert "All 4 trials" in again.output, again.explain()
    assert _last_line(again) == f"sweep smoke: 0 ok, 0 failed, 4 skipped; store {smoke['store']}", again.explain()
    df = _trials(smoke["store"])
    assert len(df) == 4
    assert df["trial_id"].is_unique
    assert {p: p.stat().st_mtime_ns for p in files} == before  # nothing rewritten


# -- b. dry runs: no Ray, no store -------------------------------------------------------------
@pytest.mark.parametrize(("overrides", "count"), [
    ([], 24),
    (["sweep.grid.batch_size=[1]"], 12),
    (["model=mistral-7b", "weights=dummy"], 24),
    (["sweep.repeats=1"], 12),
    (["sweep=smoke"], 4),
])
def test_dry_run_counts_trials(energyray, tmp_path, overrides, count):
    store = tmp_path / "store"
    r = energyray("dry_run=true", f"store.path={store}", *overrides)
    assert r.returncode == 0, r.explain()
    _no_traceback(r)
    assert f"trials: {count}" in r.stdout, r.explain()
    assert f"{count} trials to run" in r.stdout
    assert len(set(TRIAL_ID.findall(r.stdout))) == count  # every trial listed, ids unique
    assert not store.exists(), "a dry run must not create the store"
    assert "Ray" not in r.output  # no cluster was started


BIG = ["sweep=smoke", "weights=dummy", "sweep.repeats=3", "sweep.grid.model=[tiny-llama,mistral-7b]",
       "sweep.grid.precision=[baseline,fp16,nf4]", "sweep.grid.batch_size=[1,2,4,8,16]", "sweep.grid.task=[qa,longform]"]


def test_large_dry_run_prints_counts_by_axis_not_every_trial(energyray, tmp_path):
    r = energyray("dry_run=true", f"store.path={tmp_path / 'store'}", *BIG)  # 2*3*5*2 points x 3 repeats
    assert r.returncode == 0, r.explain()
    _no_traceback(r)
    assert "180 trials to run in 6 groups" in r.stdout and "trials: 180" in r.stdout, r.explain()
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.startswith("  ")}
    assert lines["model"].split(None, 1)[1] == "tiny-llama (90), mistral-7b (90)", r.explain()
    assert lines["precision"].split(None, 1)[1] == "baseline (60), fp16 (60), nf4 (60)"
    assert lines["batch_size"].split(None, 1)[1] == "1 (36), 2 (36), 4 (36), 8 (36), 16 (36)"
    assert lines["task"].split(None, 1)[1] == "qa (90), longform (90)"
    assert lines["weights"].split(None, 1)[1] == "dummy (180)"
    assert lines["repeat"].split(None, 1)[1] == "0 (60), 1 (60), 2 (60)"
    assert not TRIAL_ID.findall(r.stdout), "more than 100 trials: the list only with dry_run=list"
    assert "dry_run=list" in r.stdout  # says how to see them
    listed = energyray("dry_run=list", f"store.path={tmp_path / 'store'}", *BIG)
    assert listed.returncode == 0, listed.explain()
    assert len(set(TRIAL_ID.findall(listed.stdout))) == 180
    assert "model          tiny-llama (90), mistral-7b (90)" in listed.stdout


def test_dry_run_summary_counts_what_the_store_already_has(smoke, energyray):
    """After the smoke run, a grid twice as long: the 4 stored trials are counted apart."""
    assert smoke["first"].returncode == 0, smoke["first"].explain()
    r = energyray("dry_run=true", *smoke["args"], "sweep.repeats=4")
    assert r.returncode == 0, r.explain()
    assert "4 trials to run in 2 groups (4 already in the store)" in r.stdout, r.explain()
    assert "repeat         2 (2), 3 (2)" in r.stdout


def test_dry_run_refuses_an_unknown_mode(energyray, tmp_path):
    r = energyray("dry_run=maybe", f"store.path={tmp_path / 'store'}", "sweep=smoke")
    assert r.returncode == 2, r.explain()
    _no_traceback(r)
    assert "dry_run='maybe'" in r.output and "list" in r.output


def test_help_names_subcommands_overrides_and_dry_run(cli_process):
    import subprocess

    argv, cwd, env = cli_process
    for flag in ("--help", "-h"):
        r = subprocess.run([*argv, flag], cwd=cwd, env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert len(out.splitlines()) <= 40
        for text in ("report", "store upgrade", "sweep=", "model=", "precision=", "weights=dummy",
                     "sweep.grid.batch_size=[1,8]", "sweep.repeats=", "store.path=", "device=", "ray.address=",
                     "sampler/pdu=", "dry_run=true", "dry_run=list", "--cfg job", "docs/guide.md"):
            assert text in out, text
        assert "Powered by Hydra" not in out  # energyray's own help, not Hydra's


def test_cfg_job_prints_every_knob(energyray):
    r = energyray("--cfg", "job")
    assert r.returncode == 0, r.explain()
    for key in ("max_new_tokens: 128", "idle_scope: slot", "reuse_workers: auto", "api_key_env: OPENAI_API_KEY",
                "name: gemma3-270m", "name: quantization"):
        assert key in r.stdout, key


def test_dry_run_names_the_pinned_model(energyray, tmp_path):
    r = energyray("dry_run=true", f"store.path={tmp_path / 'store'}", "model=mistral-7b", "weights=dummy")
    assert r.returncode == 0, r.explain()
    assert "mistral-7b" in r.stdout
    assert "gemma3-270m" not in r.stdout
    assert "dummy" in r.stdout


def test_dry_run_after_a_real_run_lists_only_what_is_left(smoke, energyray):
    """The smoke store holds all 4 trials: a dry run of the same sweep has nothing to list."""
    assert smoke["first"].returncode == 0, smoke["first"].explain()
    r = energyray("dry_run=true", *smoke["args"])
    assert r.returncode == 0, r.explain()
    assert "All 4 trials" in r.stdout or "trials: 0" in r.stdout, r.explain()


def test_explicit_hardware_auto_is_the_default(energyray, tmp_path):
    store = f"store.path={tmp_path / 'store'}"
    plain = energyray("dry_run=true", store, "sweep=smoke")
    explicit = energyray("dry_run=true", store, "sweep=smoke", "hardware=auto")
    assert plain.returncode == 0 and explicit.returncode == 0, plain.explain() + explicit.explain()
    assert set(TRIAL_ID.findall(explicit.stdout)) == set(TRIAL_ID.findall(plain.stdout))


# -- c. refused input: non-zero exit, the valid choices named, no traceback ---------------------
@pytest.mark.parametrize(("overrides", "must_name"), [
    (["sweep=nope"], ["nope", "quantization", "smoke"]),
    (["model=nope"], ["nope", "gemma3-270m", "tiny-llama", "mistral-7b"]),
    (["precision=int3"], ["int3", "baseline", "int8", "nf4", "fp4"]),
    (["sweep=smoke", "precision=int3"], ["int3", "nf4"]),
    (["weights=bogus"], ["bogus", "real", "dummy"]),
    (["task=nope"], ["nope", "longform", "qa"]),
    (["sweep=smoke", "sweep.grid.batch_size=[0]"], ["batch_size", "at least 1"]),
    (["sweep=smoke", "sweep.grid.model=[tiny-llama,nope]"], ["nope", "tiny-llama", "gemma3-270m"]),
    (["sweep=smoke", "ray.bytecode_cache=sometimes"], ["ray.bytecode_cache", "sometimes", "auto", "true", "false"]),
], ids=lambda v: " ".join(v) if isinstance(v, list) and v and "=" in v[0] else None)
def test_bad_input_is_refused_with_choices(energyray, tmp_path, shared_cache, overrides, must_name):
    store = tmp_path / "store"
    r = energyray(f"store.path={store}", f"cache_dir={shared_cache}", *overrides)
    assert r.returncode != 0, r.explain()
    _no_traceback(r)
    for word in must_name:
        assert word in r.output, f"{word!r} not named\n{r.explain()}"
    assert not store.exists(), "refused input must not reach the store"


def test_unknown_grid_axis_is_refused(energyray, tmp_path):
    r = energyray(f"store.path={tmp_path / 'store'}", "sweep.grid.colour=[1]")
    assert r.returncode != 0, r.explain()
    _no_traceback(r)
    assert "colour" in r.output
    # Hydra refuses the new key in the typed grid; if it ever lets it through, energyray must
    # name the valid axes.
    assert "not in struct" in r.output or "batch_size" in r.output, r.explain()


def test_unknown_grid_axis_added_with_plus_names_the_valid_axes(energyray, tmp_path):
    """Hydra's hint for the above is `+sweep.grid.colour=[1]`: energyray then names the axes."""
    r = energyray(f"store.path={tmp_path / 'store'}", "+sweep.grid.colour=[1]")
    assert r.returncode != 0, r.explain()
    _no_traceback(r)
    assert "colour" in r.output
    for axis in ("model", "precision", "batch_size", "task"):
        assert axis in r.output, r.explain()


def test_unknown_top_level_key_is_refused(energyray, tmp_path):
    r = energyray(f"store.path={tmp_path / 'store'}", "foo=1")
    assert r.returncode != 0, r.explain()
    _no_traceback(r)
    assert "foo" in r.output
    for key in ("precision", "batch_size", "sweep", "model", "store"):  # the valid keys are listed
        assert key in r.output, r.explain()
    assert not (tmp_path / "store").exists()


def test_misspelt_nested_key_gets_did_you_mean(energyray, tmp_path):
    r = energyray(f"store.path={tmp_path / 'store'}", "generation.max_new_tokn=3")
    assert r.returncode != 0, r.explain()
    _no_traceback(r)
    assert "generation.max_new_tokens" in r.output, r.explain()


def test_misspelt_key_added_with_plus_is_refused(energyray, tmp_path):
    r = energyray("dry_run=true", f"store.path={tmp_path / 'store'}", "sweep=smoke", "+precison=nf4")
    assert r.returncode != 0, r.explain()
    assert "precison" in r.output


# -- d. a failing group does not stop the sweep, and the exit status says so -------------------
def test_failing_group_does_not_stop_the_sweep(tmp_path, shared_cache, cli):
    """A model that cannot load: its trial fails in the worker, the other runs; exit 1, and the
    last line does not promise that a rerun fixes it (the path is wrong until it is changed)."""
    store = tmp_path / "store"
    args = ["sweep=smoke", "sweep.grid.model=[tiny-llama,gemma3-270m]", "model.path=/nonexistent/model",
            "sweep.grid.precision=[baseline]", "sweep.repeats=1", f"store.path={store}",
            f"cache_dir={shared_cache}"]
    r = cli(args, tmp_path / "hydra")
    assert r.returncode == 1, r.explain()
    _no_traceback(r)
    line = _last_line(r)
    assert line.startswith(f"sweep smoke: 1 ok, 1 failed, 0 skipped; store {store}; "), r.explain()
    assert "will fail again until their error (above) is fixed" in line and "retry" not in line, line
    df = _trials(store)
    assert sorted(df["model"]) == ["gemma3-270m", "tiny-llama"], df
    tiny = df[df["model"] == "tiny-llama"].iloc[0]
    assert tiny["status"] == "ok", tiny["error"]
    assert tiny["energy_j"] > 0 and tiny["output_tokens"] > 0
    gemma = df[df["model"] == "gemma3-270m"].iloc[0]
    assert gemma["status"] == "failed" and gemma["retryable"] == False  # noqa: E712 (numpy bool)
    assert pd.isna(tiny["retryable"])  # ok: nothing to retry
    assert "/nonexistent/model" in gemma["error"]
    assert gemma["energy_source"] == "not_measurable"
    assert json.loads(gemma["config_json"])["model"]["path"] == "/nonexistent/model"
    assert json.loads(tiny["config_json"])["model"]["path"] is None  # the override hit the composed model only


def test_a_trial_over_its_timeout_is_one_failed_row_and_the_rest_still_run(energyray, shared_cache, tmp_path):
    """trial_timeout_s so short that every trial times out: each is stored once, failed, with the
    reason; exit 1, and a timeout is what a rerun may fix, so the last line says to rerun."""
    r = energyray("sweep=smoke", "sweep.repeats=2", "sweep.grid.precision=[baseline]", "sweep.grid.batch_size=[64]",
                  "generation.cpu_max_new_tokens=440", "generation.warmup_runs=0", "ray.trial_timeout_s=0.2", f"store.path={tmp_path / 'store'}", f"cache_dir={shared_cache}",
                  timeout=300)
    assert r.returncode == 1, r.explain()
    _no_traceback(r)
    assert "sweep smoke: 0 ok, 2 failed, 0 skipped" in _last_line(r), r.explain()
    assert "rerun the same command to retry the 2 failed" in _last_line(r), r.explain()
    t = Store(tmp_path / "store").read("trials")
    assert len(t) == 2 and t["trial_id"].is_unique
    assert (t["status"] == "failed").all()
    assert t["error"].str.contains("timed out").all()
    assert t["retryable"].all()
