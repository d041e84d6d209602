"""Store compaction: loose per-trial files merged into segments, and every reader's precedence."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from energyray import store as store_mod
from energyray.store import QUARANTINE, Store, store_main, upgrade

OLD_STORE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"
ROOT = Path(__file__).resolve().parents[2]


def _trial(store: Store, tid: str, status: str = "ok", energy: float = 1.0, sweep: str = "s1",
           hardware: str = "h1", responses: bool = True) -> None:
    store.write_trial({"trial_id": tid, "status": status, "energy_j": energy, "batch_size": 2},
                      [{"trial_id": tid, "t_ns": i, "power_w": energy} for i in range(3)],
                      [{"trial_id": tid, "request_index": 0, "output_tokens": 5}] if responses else [],
                      sweep, hardware)


def _filled(store: Store) -> Store:
    for i in range(6):
        _trial(store, f"a{i}", "ok" if i % 3 else "failed", energy=float(i))
    _trial(store, "b0", sweep="s2", hardware="h2", responses=False)
    store.write("systems", [{"node": "n", "kind": "cpu"}], "s1", "h1", "n-cpu")
    return store


def _sorted(df: pd.DataFrame, *by: str) -> pd.DataFrame:
    if df.empty:
        return df
    return df.sort_values(list(by)).reset_index(drop=True)[sorted(df.columns)]


def _tables(store: Store) -> dict[str, pd.DataFrame]:
    return {"trials": _sorted(store.read("trials"), "trial_id"),
            "samples": _sorted(store.read("samples"), "trial_id", "t_ns"),
            "responses": _sorted(store.read("responses"), "trial_id"),
            "systems": _sorted(store.read("systems"), "node")}


def _data_files(store: Store, table: str) -> list[Path]:
    return sorted(p for p in (store.path / table).rglob("*.parquet") if not p.name.startswith("."))


@pytest.fixture
def store(tmp_path):
    return _filled(Store(tmp_path / "store"))


def test_compaction_keeps_every_row_and_leaves_one_segment_per_partition(store):
    before = _tables(store)
    summary = store.compact()
    assert summary.tables["trials"].merged == 7 and summary.tables["trials"].trials == 7
    assert summary.tables["samples"].segments == 2 and summary.tables["responses"].segments == 1
    for table in ("trials", "samples"):
        files = _data_files(store, table)
        assert len(files) == 2 and all(p.name.startswith("segment-") for p in files)
    assert [p.name for p in _data_files(store, "systems")] == ["n-cpu.parquet"]  # systems stay loose
    after = _tables(store)
    for table in before:
        pd.testing.assert_frame_equal(after[table], before[table])


def test_a_compacted_store_still_reads_whole_with_pandas(store):
    # segments are not hidden (no "_" prefix): a plain reader sees every trial after compaction
    store.compact()
    seen = pd.read_parquet(store.path / "trials", columns=["trial_id"])
    assert sorted(seen["trial_id"]) == sorted(store.read("trials")["trial_id"]) and len(seen) == 7


def test_compaction_is_idempotent(store):
    store.compact()
    names = {t: [p.name for p in _data_files(store, t)] for t in ("trials", "samples", "responses")}
    before = _tables(store)
    summary = store.compact()
    assert summary.partitions == 0 and "already compact" in summary.lines()[0]
    assert {t: [p.name for p in _data_files(store, t)] for t in names} == names
    for table, df in _tables(store).items():
        pd.testing.assert_frame_equal(df, before[table])


def test_done_ids_are_the_same_before_and_after(store):
    done = {s: store.done_ids(s) for s in ("s1", "s2")}
    assert done["s1"] == {"a1", "a2", "a4", "a5"} and done["s2"] == {"b0"}
    store.compact()
    assert {s: store.done_ids(s) for s in ("s1", "s2")} == done
    assert store.done_ids("s1", statuses=("failed",)) == {"a0", "a3"}


def test_a_rerun_after_compaction_writes_a_loose_file_that_wins(store):
    store.compact()
    # a0 failed: its rerun succeeds, with no responses; a1's rerun fails and writes no responses
    _trial(store, "a0", "ok", energy=9.0)
    _trial(store, "a1", "failed", energy=7.0, responses=False)
    t = store.read().set_index("trial_id")
    assert len(t) == 7 and t.loc["a0", "status"] == "ok" and t.loc["a0", "energy_j"] == 9.0
    assert t.loc["a1", "status"] == "failed"
    s = store.read("samples")
    assert list(s[s.trial_id == "a0"]["power_w"]) == [9.0] * 3 and len(s) == 21
    r = store.read("responses")
    assert "a1" not in set(r["trial_id"]), "the segment's responses of a1's earlier run lose to its rerun"
    assert list(r[r.trial_id == "a0"]["output_tokens"]) == [5]
    assert store.done_ids("s1") == {"a0", "a2", "a4", "a5"}
    before = _tables(store)
    store.compact()  # and the rerun's rows are what the next segment keeps
    for table, df in _tables(store).items():
        pd.testing.assert_frame_equal(df, before[table])
    assert store.done_ids("s1") == {"a0", "a2", "a4", "a5"}


def test_the_newer_segment_wins_after_a_crash_before_the_old_one_was_deleted(store, tmp_path):
    store.compact()
    old = {t: _data_files(store, t)[0] for t in ("trials", "samples")}  # sweep s1
    kept = {t: tmp_path / f"{t}-old.parquet" for t in old}
    for t, p in old.items():
        shutil.copy2(p, kept[t])
    _trial(store, "a0", "ok", energy=9.0)
    store.compact()
    for t, p in old.items():  # the crash: the old segments are still there beside the new
        shutil.copy2(kept[t], p)
    assert len(_data_files(store, "trials")) == 3
    t = store.read().set_index("trial_id")
    assert len(t) == 7 and t.loc["a0", "status"] == "ok" and t.loc["a0", "energy_j"] == 9.0
    s = store.read("samples")
    assert list(s[s.trial_id == "a0"]["power_w"]) == [9.0] * 3 and len(s) == 21
    assert store.done_ids("s1") == {"a0", "a1", "a2", "a4", "a5"}
    before = _tables(store)
    summary = store.compact()
    assert summary.tables["trials"].segments_in == 2
    for table, df in _tables(store).items():
        pd.testing.assert_frame_equal(df, before[table])


def test_a_damaged_segment_is_moved_aside_whole_and_its_trials_are_not_done(store, caplog):
    store.compact()
    seg = [p for p in _data_files(store, "samples") if "sweep=s1" in str(p)][0]
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    assert store.done_ids("s2") == {"b0"}
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        assert store.done_ids("s1") == set()
    [line] = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert str(seg) in line and "a segment of 6 trial(s): a rerun of its sweep runs them again" in line
    [d] = store.damaged
    assert d.path == seg and d.moved_to == store.path / QUARANTINE / seg.relative_to(store.path)
    assert d.held == 6 and "a segment of 6 trial(s): a rerun of its sweep runs them again" in d.line()
    assert set(d.moved_with) == {"trials", "responses"}
    assert set(store.read()["trial_id"]) == {"b0"}
    _trial(store, "a1")  # the rerun
    assert store.done_ids("s1") == {"a1"}


def test_check_names_a_damaged_segment_and_how_many_trials_it_held(store, capsys):
    store.compact()
    seg = [p for p in _data_files(store, "trials") if "sweep=s1" in str(p)][0]
    seg.write_bytes(b"not parquet at all " * 64)
    assert store_main(["check", "--store", str(store.path)]) == 1
    out = capsys.readouterr().out
    assert str(seg) in out and "a segment of 6 trial(s)" in out


def test_compaction_moves_a_damaged_loose_file_aside_with_its_trial(store):
    p = store.path / "samples" / "sweep=s1" / "hardware=h1" / "a2.parquet"
    p.write_bytes(b"")
    summary = store.compact()
    assert [d.path for d in summary.damaged] == [p] and summary.damaged[0].moved_to is not None
    assert "a2" not in set(store.read()["trial_id"]) and len(store.read()) == 6
    assert store.done_ids("s1") == {"a1", "a4", "a5"}


def test_a_file_changed_during_compaction_is_left_and_wins(store, monkeypatch):
    loose = store.path / "trials" / "sweep=s1" / "hardware=h1" / "a3.parquet"
    real = store_mod._write_atomic
    done: list[Path] = []

    def write_then_rerun(t, target, base=None):
        real(t, target, base)
        if not done:  # a sweep's rerun of a3 lands after compaction read it, before it deleted it
            done.append(target)
            _trial(store, "a3", "ok", energy=3.5)

    monkeypatch.setattr(store_mod, "_write_atomic", write_then_rerun)
    summary = store.compact("s1")
    monkeypatch.undo()
    assert loose.exists() and summary.tables["trials"].left == [loose]
    assert "changed while compacting" in "\n".join(summary.lines())
    assert (loose.parent.parent.parent.parent / "samples" / "sweep=s1" / "hardware=h1" / "a3.parquet").exists()
    t = store.read().set_index("trial_id")
    assert len(t) == 7 and t.loc["a3", "status"] == "ok" and t.loc["a3", "energy_j"] == 3.5
    s = store.read("samples")
    assert list(s[s.trial_id == "a3"]["power_w"]) == [3.5] * 3
    assert "a3" in store.done_ids("s1")


def test_a_trial_being_written_keeps_its_loose_files(store):
    # samples written, trials file not yet: the samples stay loose and still read
    store.write("samples", [{"trial_id": "c0", "t_ns": 0, "power_w": 1.0}], "s1", "h1", "c0")
    summary = store.compact()
    assert summary.tables["samples"].kept_loose == 1
    assert (store.path / "samples" / "sweep=s1" / "hardware=h1" / "c0.parquet").exists()
    assert "c0" in set(store.read("samples")["trial_id"])


def test_an_old_store_compacts_to_what_upgrade_reads(old_store_copy):
    old, upgraded = old_store_copy
    upgrade(upgraded)
    summary = Store(old).compact()
    assert summary.tables["trials"].trials == 3 and not summary.damaged
    a, b = _tables(Store(old)), _tables(Store(upgraded))
    for table in ("trials", "samples"):  # (systems are not compacted)
        pd.testing.assert_frame_equal(a[table], b[table])
    assert Store(old).done_ids("smoke") == Store(upgraded).done_ids("smoke") != set()


@pytest.fixture
def old_store_copy(tmp_path):
    return shutil.copytree(OLD_STORE, tmp_path / "old"), shutil.copytree(OLD_STORE, tmp_path / "upgraded")


def test_read_of_a_column_subset_works_on_segments(store):
    _trial(store, "a0", "ok", energy=9.0)  # written before compaction, overrides nothing
    store.compact()
    _trial(store, "a1", "ok", energy=8.0)  # a loose file over the segment
    df = store.read("trials", columns=["energy_j", "sweep", "no_such_column"])
    assert list(df.columns) == ["energy_j", "sweep"]
    assert sorted(df["energy_j"]) == [1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 9.0]  # b0, a2..a5, then a1, a0 rerun
    ids = store.read("trials", columns=["trial_id", "energy_j"]).set_index("trial_id")["energy_j"]
    assert len(ids) == 7 and ids["a1"] == 8.0 and ids["a0"] == 9.0
    s = store.read("samples", columns=["power_w", "hardware"])
    assert list(s.columns) == ["power_w", "hardware"]
    assert sorted(s["power_w"]) == sorted([1.0, 2.0, 3.0, 4.0, 5.0, 8.0, 9.0] * 3)


def test_files_starting_with_an_underscore_are_not_data(store):
    part = store.path / "trials" / "sweep=s1" / "hardware=h1"
    shutil.copy2(part / "a1.parquet", part / "_notes.parquet")
    assert len(store.read()) == 7 and store_mod.Store(store.path)._files("trials", "s1") == sorted(
        str(p) for p in part.glob("a*.parquet"))


def test_cli_compacts_and_a_bad_path_is_one_line_naming_the_fix(tmp_path):
    store = _filled(Store(tmp_path / "store"))
    before = _tables(store)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    run = subprocess.run([sys.executable, "-m", "energyray", "store", "compact", "--store", str(store.path)],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "trials: 7 file(s) merged" in run.stdout and "7 trial(s) in 2 segment(s) written" in run.stdout
    for table, df in _tables(Store(store.path)).items():
        pd.testing.assert_frame_equal(df, before[table])
    bad = subprocess.run([sys.executable, "-m", "energyray", "store", "compact", "--store", str(tmp_path / "nope")],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and bad.stdout == ""
    err = bad.stderr.strip()
    assert "\n" not in err and "no energyray store at" in err and "give --store" in err
    assert store_main(["compact", "--store", str(store.path), "--sweep", "nope"]) == 2


def test_segments_hold_the_declared_schema(store):
    store.compact()
    from energyray import schema

    for table in ("trials", "samples", "responses"):
        for p in _data_files(store, table):
            assert pq.read_schema(p).remove_metadata().equals(schema.arrow_schema(table))


def test_clean_partial_removes_a_segment_a_killed_compaction_left(store):
    store.compact()
    part = store.path / "trials" / "sweep=s1" / "hardware=h1"
    seg = next(part.glob("segment-*.parquet"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    tmp = part / f".{seg.name}.{int(dead.stdout)}.tmp"
    tmp.write_bytes(seg.read_bytes()[:100])
    assert len(store.read()) == 7
    assert store.clean_partial() == [tmp] and not tmp.exists()
