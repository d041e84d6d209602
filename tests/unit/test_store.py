"""The Parquet store: atomic per-trial files, hive partitions, schema union, resume ids."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from energyray import schema
from energyray import store as store_mod
from energyray.store import STRICT_ENV, TABLES, SchemaError, Store, store_main, upgrade


def _row(tid: str, status: str = "ok", **extra):
    return {"trial_id": tid, "status": status, "energy_j": 1.5, "batch_size": 2, **extra}


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "store")


def _all_files(store: Store):
    return [p for p in store.path.rglob("*") if p.is_file()]


def test_write_path_layout(store):
    p = store.write("trials", [_row("t1")], sweep="s1", hardware="h100", name="t1")
    assert p == store.path / "trials" / "sweep=s1" / "hardware=h100" / "t1.parquet"
    assert p.exists()


def test_same_partition_union_of_columns(store):
    store.write("trials", [_row("t1", sweep="s1", hardware="h1")], "s1", "h1", "t1")
    store.write("trials", [_row("t2", co2_kg=0.25)], "s1", "h1", "t2")
    df = store.read()
    assert len(df) == 2
    # every file carries the whole declared schema, so the union is exactly the declared columns
    assert set(df.columns) == set(schema.names("trials"))
    assert {"trial_id", "status", "energy_j", "batch_size", "co2_kg", "sweep", "hardware"} <= set(df.columns)
    by_id = df.set_index("trial_id")
    assert by_id.loc["t2", "co2_kg"] == 0.25
    assert pd.isna(by_id.loc["t1", "co2_kg"])
    assert set(df["sweep"]) == {"s1"}
    assert set(df["hardware"]) == {"h1"}


def test_different_partitions_union_of_columns(store):
    p1 = store.write("trials", [_row("t1")], "s1", "h1", "t1")
    p2 = store.write(
        "trials", [_row("t2", co2_kg=0.5, sweep="s2", hardware="h2")], "s2", "h2", "t2"
    )
    df = store.read().sort_values("trial_id").reset_index(drop=True)
    assert list(df["trial_id"]) == ["t1", "t2"]
    assert list(df["sweep"]) == ["s1", "s2"]
    assert list(df["hardware"]) == ["h1", "h2"]
    assert "co2_kg" in df.columns and df.loc[1, "co2_kg"] == 0.5 and pd.isna(df.loc[0, "co2_kg"])
    # partition columns live in the path only, never inside the files
    for p in (p1, p2):
        names = pq.read_schema(p).names
        assert "sweep" not in names
        assert "hardware" not in names
        assert "trial_id" in names


def test_multi_row_files_and_column_selection(store):
    store.write("samples", [{"t_ns": i, "power_w": float(i)} for i in range(5)], "s", "h", "t1")
    store.write(
        "samples",
        [{"t_ns": 10 + i, "power_w": 1.0, "temperature_c": 50.0} for i in range(3)],
        "s",
        "h",
        "t2",
    )
    df = store.read("samples")
    assert len(df) == 8
    sub = store.read("samples", columns=["t_ns", "sweep", "no_such_column"])
    assert list(sub.columns) == ["t_ns", "sweep"]
    assert len(sub) == 8


def test_null_column_then_typed_column_unifies(store):
    store.write("trials", [_row("t1", accuracy=None)], "s", "h", "t1")
    store.write("trials", [_row("t2", accuracy=0.75)], "s", "h", "t2")
    df = store.read().set_index("trial_id")
    assert df.loc["t2", "accuracy"] == 0.75
    assert pd.isna(df.loc["t1", "accuracy"])


def test_no_temp_files_left(store):
    store.write("trials", [_row("t1")], "s1", "h1", "t1")
    store.write("trials", [_row("t2")], "s1", "h1", "t2")
    store.write("trials", [_row("t1")], "s1", "h1", "t1")
    files = _all_files(store)
    assert len(files) == 2
    assert not [p for p in files if p.name.startswith(".")]


def test_read_ignores_dot_prefixed_partial_file(store):
    p = store.write("trials", [_row("t1")], "s1", "h1", "t1")
    (p.parent / ".t2.parquet.123.tmp").write_bytes(b"PAR1 partial")
    (p.parent / ".t3.parquet").write_bytes(b"PAR1 partial")
    assert list(store.read()["trial_id"]) == ["t1"]
    assert store.done_ids("s1") == {"t1"}


def test_done_ids_ok_and_oom_not_failed(store):
    store.write("trials", [_row("a", "ok")], "s1", "h1", "a")
    store.write("trials", [_row("b", "oom")], "s1", "h2", "b")
    store.write("trials", [_row("c", "failed")], "s1", "h1", "c")
    store.write("trials", [_row("d", "ok")], "other", "h1", "d")
    assert store.done_ids("s1") == {"a", "b"}
    assert store.done_ids("other") == {"d"}
    assert store.done_ids("missing") == set()
    assert store.done_ids("s1", statuses=("failed",)) == {"c"}


def test_pandas_reads_the_store_directory(store):
    store.write("trials", [_row("t1")], "s1", "h1", "t1")
    store.write("trials", [_row("t2", co2_kg=0.1)], "s2", "h2", "t2")
    df = pd.read_parquet(store.path / "trials")
    assert sorted(df["trial_id"]) == ["t1", "t2"]
    assert {"sweep", "hardware"} <= set(df.columns)
    assert sorted(df["sweep"].astype(str)) == ["s1", "s2"]


def test_overwrite_same_trial_keeps_one_row(store):
    store.write("trials", [_row("t1", "failed")], "s1", "h1", "t1")
    store.write("trials", [_row("t1", "ok")], "s1", "h1", "t1")
    df = store.read()
    assert len(df) == 1
    assert df.loc[0, "status"] == "ok"
    assert store.done_ids("s1") == {"t1"}


def test_empty_store_and_empty_rows(store):
    assert store.read().empty
    assert store.write("trials", [], "s", "h", "t") is None
    assert not store.path.exists() or not _all_files(store)
    with pytest.raises(ValueError):
        store.write("nope", [_row("t")], "s", "h", "t")


def test_unsafe_names_are_sanitised(store):
    p = store.write("trials", [_row("t1")], "my sweep/../x", "a100 80GB", "t/1")
    assert p.is_relative_to(store.path / "trials")
    assert p.parent.parent.name == "sweep=my_sweep_.._x"
    assert p.parent.name == "hardware=a100_80GB"
    assert store.done_ids("my sweep/../x") == {"t1"}


def test_clean_partial_removes_only_temp_files_of_dead_writers(store):
    p = store.write("trials", [_row("a", "ok")], "s1", "h1", "a")
    dead = p.parent / f".b.parquet.{2**22 + 12345}.tmp"  # above pid_max's default: no such process
    alive = p.parent / f".c.parquet.{os.getpid()}.tmp"
    for f in (dead, alive):
        f.write_bytes(b"PAR1 partial")
    assert store.clean_partial() == [dead]
    assert not dead.exists() and alive.exists() and p.exists()


# -- the declared schema ---------------------------------------------------------------------
OLD_STORE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"


@pytest.fixture
def old_store(tmp_path):
    """A copy of tests/data/store-0.1.0 (written by energyray 0.1.0, before the declared schema)."""
    dst = tmp_path / "old"
    shutil.copytree(OLD_STORE, dst)
    return dst


def test_every_file_has_the_full_declared_schema(store):
    for table, rows in (("trials", [_row("t1")]), ("samples", [{"t_ns": 1, "power_w": 2.0}]),
                        ("systems", [{"node": "n", "pid": 7}])):
        p = store.write(table, rows, "s", "h", "x")
        assert pq.read_schema(p).remove_metadata().equals(schema.arrow_schema(table)), table
        t = pq.read_table(p)
        assert t.column("schema_version").to_pylist() == [schema.SCHEMA_VERSION]
        assert t.column("extra_json").to_pylist() == [None]


def test_values_are_cast_to_the_declared_types(store):
    row = _row("t1", energy_j=np.float32(1.5), output_tokens=np.int64(8), duration_s=2,
               max_new_tokens=16.0, accuracy=float("nan"), double_quant=np.bool_(True), error=None,
               sample_output={"not": "text"})
    p = store.write("trials", [row], "s", "h", "t1")
    got = pq.read_table(p).to_pylist()[0]
    assert got["energy_j"] == 1.5 and got["output_tokens"] == 8 and got["duration_s"] == 2.0
    assert got["max_new_tokens"] == 16 and got["accuracy"] is None and got["double_quant"] is True
    assert json.loads(got["sample_output"]) == {"not": "text"}  # a dict in a text column: JSON
    assert got["batch_size"] == 2 and got["extra_json"] is None


def test_systems_describe_values_become_json_text(store):
    p = store.write("systems", [{"node": "n", "energy_counter": True, "rapl_zones": ["package-0", "dram"]}],
                    "s", "h", "n")
    got = pq.read_table(p).to_pylist()[0]
    assert got["energy_counter"] == "true" and json.loads(got["rapl_zones"]) == ["package-0", "dram"]


def test_undeclared_columns_without_strict_go_to_extra_json_and_warn_once(tmp_path, caplog, monkeypatch):
    monkeypatch.delenv(STRICT_ENV, raising=False)
    monkeypatch.setattr(store_mod, "_warned", set())
    s = Store(tmp_path / "s")
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        s.write("trials", [_row("t1", mystery_j=2.0, batch_size="two")], "s", "h", "t1")
        s.write("trials", [_row("t2", mystery_j=3.0, batch_size="two")], "s", "h", "t2")
    warnings = [r.getMessage() for r in caplog.records if "extra_json" in r.getMessage()]
    assert len(warnings) == 1 and "mystery_j" in warnings[0] and "energyray/schema.py" in warnings[0]
    df = s.read().set_index("trial_id")
    assert json.loads(df.loc["t2", "extra_json"]) == {"mystery_j": 3.0, "batch_size": "two"}
    assert pd.isna(df.loc["t2", "batch_size"])
    assert pd.read_parquet(s.path / "trials").shape[0] == 2


def test_strict_mode_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(STRICT_ENV, "1")
    with pytest.raises(SchemaError, match="mystery"):
        Store(tmp_path / "a").write("trials", [_row("t", mystery=1)], "s", "h", "t")
    monkeypatch.setenv(STRICT_ENV, "0")
    assert Store(tmp_path / "b").write("trials", [_row("t", mystery=1)], "s", "h", "t") is not None
    assert Store(tmp_path / "c", strict=True).strict is True


def test_legacy_columns_are_refused_in_strict_mode(store):
    with pytest.raises(SchemaError, match="legacy columns written: latency_s"):
        store.write("trials", [_row("t1", duration_s=1.0, latency_s=1.0)], "s", "h", "t1")


def test_legacy_columns_are_not_written_outside_strict_mode(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(store_mod, "_warned", set())
    store = Store(tmp_path / "lax", strict=False)
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        p = store.write("trials", [_row("t1", duration_s=1.0, latency_s=1.0, ttft_s=0.1, prefill_s=0.1,
                                        group_rule="prose")], "s", "h", "t1")
    names = pq.read_schema(p).names
    assert not {"latency_s", "prefill_s", "group_rule"} & set(names)
    assert pq.read_table(p).column("extra_json").to_pylist() == [None]
    text = caplog.text
    assert "latency_s" in text and "duration_s" in text and "group_rule" in text


def test_read_old_store(old_store):
    s = Store(old_store)
    trials = s.read()
    assert len(trials) == 3 and set(trials["sweep"]) == {"smoke", "smoke_failed"}
    assert {"latency_s", "group_rule"} <= set(trials.columns)  # old names stay readable
    assert sorted(trials["status"]) == ["failed", "ok", "ok"]
    assert len(s.read("samples")) > 0 and len(s.read("systems")) == 2
    with pytest.raises(Exception, match="(?i)cast"):
        pd.read_parquet(old_store / "trials")  # what `upgrade` is for


def test_read_mixed_old_and_new_store(old_store):
    s = Store(old_store)
    s.write("trials", [_row("new1", sweep="smoke", hardware="cpu", duration_s=1.0)], "smoke", "cpu", "new1")
    s.write("systems", [{"node": "n", "energy_counter": True}], "smoke", "cpu", "n-gpu")
    df = s.read().set_index("trial_id")
    assert len(df) == 4 and df.loc["new1", "schema_version"] == schema.SCHEMA_VERSION
    assert pd.isna(df.loc["13a761f867acc1fc", "schema_version"])
    assert df.loc["13a761f867acc1fc", "latency_s"] == df.loc["13a761f867acc1fc", "duration_s"]
    assert len(s.read("systems")) == 3
    assert list(s.read(columns=["trial_id", "hardware"]).columns) == ["trial_id", "hardware"]


def _comparable(df: pd.DataFrame) -> pd.DataFrame:
    cols = sorted(set(df.columns) - {"schema_version", "extra_json"})
    return df[cols].sort_values(sorted({"trial_id", "t_ns", "node"} & set(cols))).reset_index(drop=True)


def test_upgrade_makes_pandas_read_and_keeps_rows_and_values(old_store):
    s = Store(old_store)
    before = {t: s.read(t) for t in TABLES}
    summary = upgrade(old_store)
    assert summary.files == 8 and summary.rewritten == 8
    assert summary.dropped["trials"] == {"latency_s", "prefill_s", "group_rule"}
    assert before["responses"].empty and not (old_store / "responses").exists()  # a table added since
    for t in [t for t in TABLES if t != "responses"]:
        df = pd.read_parquet(old_store / t)
        after = s.read(t)
        assert len(df) == len(after) == len(before[t]), t
        assert set(after.columns) == set(schema.names(t)), t
        old = before[t].drop(columns=[c for c in schema.LEGACY[t] if c in before[t].columns])
        new = _comparable(after)[sorted(set(old.columns) - {"schema_version", "extra_json"})]
        pd.testing.assert_frame_equal(_comparable(old), new, check_dtype=False)
        assert (after["schema_version"] == schema.SCHEMA_VERSION).all()
    for p in old_store.rglob("*.parquet"):
        table = p.relative_to(old_store).parts[0]
        assert pq.read_schema(p).remove_metadata().equals(schema.arrow_schema(table)), p
    assert not [p for p in old_store.rglob("*") if p.name.startswith(".")]  # no temp file left


def test_upgrade_is_idempotent(old_store):
    upgrade(old_store)
    stamps = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in old_store.rglob("*.parquet")}
    again = upgrade(old_store)
    assert again.files == 8 and again.rewritten == 0 and again.rows == 1082
    assert stamps == {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in old_store.rglob("*.parquet")}


def test_upgrade_renames_a_legacy_column_whose_replacement_is_missing(tmp_path):
    p = tmp_path / "s" / "trials" / "sweep=a" / "hardware=b" / "t.parquet"
    p.parent.mkdir(parents=True)
    pq.write_table(pa.table({"trial_id": ["t"], "latency_s": [1.25], "prefill_s": [None], "odd_col": [7]}), p)
    summary = upgrade(tmp_path / "s")
    assert summary.renamed["trials"] == {"latency_s -> duration_s", "prefill_s -> ttft_s"}
    row = pq.read_table(p).to_pylist()[0]
    assert row["duration_s"] == 1.25 and row["ttft_s"] is None and "latency_s" not in row
    assert json.loads(row["extra_json"]) == {"odd_col": 7}  # undeclared: kept, never lost
    assert any("odd_col" in line for line in summary.lines())


def test_store_main(old_store, tmp_path, capsys):
    assert store_main(["upgrade", "--store", str(old_store)]) == 0
    out = capsys.readouterr().out
    assert "8 rewritten" in out and "latency_s" in out
    assert store_main(["upgrade", "--store", str(old_store)]) == 0
    assert "0 rewritten" in capsys.readouterr().out
    assert store_main(["upgrade", "--store", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("energyray: error: no energyray store at") and "\n" not in err


def test_text_columns_take_dates_and_numbers_as_plain_text(store):
    import datetime

    p = store.write("trials", [_row("t1", price_table_date=datetime.date(2026, 1, 2), node=7)], "s", "h", "t1")
    got = pq.read_table(p).to_pylist()[0]
    assert got["price_table_date"] == "2026-01-02" and got["node"] == "7"


# -- damaged files -----------------------------------------------------------------------------
def _damage(p: Path, how: str) -> bytes:
    """Damage a written file as a crash, a full disk or a bad copy would; returns its new bytes."""
    data = p.read_bytes()
    new = {"half": data[: len(data) // 2], "zero": b"", "garbage": b"not parquet at all " * 64,
           "footer": data[:-12] + b"\x00" * 12,
           "pages": data[:100] + b"\xff" * 200 + data[300:]}[how]  # the footer intact
    p.write_bytes(new)
    return new


def _trial(store: Store, tid: str, sweep: str = "s1", hardware: str = "h1", status: str = "ok") -> dict[str, Path]:
    samples = store.write("samples", [{"trial_id": tid, "t_ns": i, "power_w": 1.0} for i in range(4)],
                          sweep, hardware, tid)
    trials = store.write("trials", [_row(tid, status)], sweep, hardware, tid)
    return {"trials": trials, "samples": samples}


def _moved(store: Store, p: Path) -> Path:
    return store.path / store_mod.QUARANTINE / p.relative_to(store.path)


@pytest.mark.parametrize("how", ["half", "zero", "garbage", "footer"])
def test_a_damaged_trials_file_is_moved_aside_with_its_samples_and_its_trial_is_not_done(store, caplog, how):
    a, b = _trial(store, "a"), _trial(store, "b")
    content = _damage(a["trials"], how)
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        assert store.done_ids("s1") == {"b"}
    # the damaged file, byte for byte, and its trial's samples, under the same relative paths
    assert _moved(store, a["trials"]).read_bytes() == content
    assert _moved(store, a["samples"]).is_file()
    assert not a["trials"].exists() and not a["samples"].exists() and b["trials"].exists()
    [d] = store.damaged
    assert d.path == a["trials"] and d.moved_to == _moved(store, a["trials"])
    assert ("magic bytes" in d.reason or "0 bytes" in d.reason), d.reason
    [line] = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert str(a["trials"]) in line and str(_moved(store, a["trials"])) in line and "runs again" in line
    # the rerun stores the trial again: once, readable everywhere, the quarantine left out
    _trial(store, "a")
    assert store.done_ids("s1") == {"a", "b"}
    assert sorted(store.read()["trial_id"]) == ["a", "b"]
    assert sorted(pd.read_parquet(store.path / "trials")["trial_id"]) == ["a", "b"]
    assert len(store.read("samples")) == 8


def test_a_damaged_samples_file_reruns_its_trial_rather_than_keep_it_without_samples(store):
    a, _ = _trial(store, "a"), _trial(store, "b")
    _damage(a["samples"], "half")
    assert store.done_ids("s1") == {"b"}
    assert _moved(store, a["samples"]).is_file() and _moved(store, a["trials"]).is_file()
    assert sorted(store.read()["trial_id"]) == ["b"]  # no trial left without its samples
    assert [d.path for d in store.damaged] == [a["samples"]]


def test_a_damaged_systems_file_is_moved_aside_and_reruns_nothing(store):
    _trial(store, "a")
    sysfile = store.write("systems", [{"node": "n", "kind": "cpu"}], "s1", "h1", "n-cpu")
    _damage(sysfile, "garbage")
    assert store.done_ids("s1") == {"a"}
    assert _moved(store, sysfile).is_file() and not sysfile.exists()
    assert store.read("systems").empty and len(store.read()) == 1


def test_done_ids_reads_only_its_sweep_and_without_quarantine_moves_nothing(store, caplog):
    a = _trial(store, "a")
    other = _trial(store, "x", sweep="other")
    _damage(other["trials"], "zero")
    _damage(a["trials"], "half")
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        assert store.done_ids("s1", quarantine=False) == set()
    assert a["trials"].exists() and other["trials"].exists()  # a dry run changes nothing
    assert not (store.path / store_mod.QUARANTINE).exists()
    assert [d.path for d in store.damaged] == [a["trials"]]  # the other sweep's file is not read
    assert "skipped a damaged file" in caplog.text and str(a["trials"]) in caplog.text


def test_a_file_that_cannot_be_moved_is_left_and_still_never_blocks(store, caplog):
    a, _ = _trial(store, "a"), _trial(store, "b")
    _damage(a["trials"], "half")
    (store.path / store_mod.QUARANTINE).write_text("a file where the folder would go")  # every move fails
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        assert store.done_ids("s1") == {"b"}
    assert a["trials"].exists() and store.damaged[0].moved_to is None
    assert "skipped a damaged file" in caplog.text


def test_a_trial_damaged_twice_keeps_both_copies(store):
    for _ in range(2):
        a = _trial(store, "a")
        _damage(a["trials"], "half")
        Store(store.path).done_ids("s1")
    folder = _moved(store, a["trials"]).parent
    assert sorted(p.name for p in folder.iterdir()) == ["a.parquet", "a~1.parquet"]


def test_read_skips_a_damaged_file_names_it_and_moves_it_only_when_asked(store, caplog):
    a, _ = _trial(store, "a"), _trial(store, "b")
    _damage(a["trials"], "garbage")
    with caplog.at_level(logging.WARNING, logger="energyray.store"):
        assert list(store.read()["trial_id"]) == ["b"]
        assert list(store.read(columns=["trial_id"])["trial_id"]) == ["b"]
    lines = [r.getMessage() for r in caplog.records if "damaged" in r.getMessage()]
    assert len(lines) == 1 and str(a["trials"]) in lines[0] and "magic bytes" in lines[0]  # once per file
    assert a["trials"].exists()  # a reader leaves it: the store may be read-only, or a sweep's
    assert list(store.read(quarantine=True)["trial_id"]) == ["b"]
    assert not a["trials"].exists() and _moved(store, a["trials"]).is_file()
    assert _moved(store, a["samples"]).is_file()
    store.write("trials", [_row("c")], "s2", "h1", "c")
    assert list(store.read(sweep="s2")["trial_id"]) == ["c"] and store.read(sweep="none").empty


def test_read_finds_damaged_pages_behind_an_intact_footer(store):
    a, _ = _trial(store, "a"), _trial(store, "b")
    _damage(a["samples"], "pages")
    assert store.done_ids("s1") == {"a", "b"}  # the resume check reads footers only: not seen there
    assert sorted(store.read("samples")["trial_id"].unique()) == ["b"]
    assert "Deserializing page header failed" in store.damaged[0].reason or "thrift" in store.damaged[0].reason


def test_check_reads_every_file_and_quarantines_on_request(store, capsys):
    a, _ = _trial(store, "a"), _trial(store, "b")
    _damage(a["samples"], "half")
    assert store_main(["check", "--store", str(store.path)]) == 1
    out = capsys.readouterr().out
    assert f"{a['samples']}: Parquet magic bytes not found" in out and "--quarantine" in out
    assert a["samples"].exists()
    assert store_main(["check", "--store", str(store.path), "--quarantine"]) == 0
    assert f"moved to {_moved(store, a['samples'])} with its trials file" in capsys.readouterr().out
    assert _moved(store, a["trials"]).is_file()
    assert store_main(["check", "--store", str(store.path)]) == 0
    assert "every file reads" in capsys.readouterr().out


def test_upgrade_skips_a_damaged_file_and_names_it(old_store):
    victim = sorted((old_store / "samples").rglob("*.parquet"))[0]
    _damage(victim, "half")
    summary = upgrade(old_store)
    assert summary.files == 8 and summary.rewritten == 7
    assert [d.path for d in summary.damaged] == [victim] and victim.exists()
    assert any(str(victim) in line for line in summary.lines())


# -- failed writes -----------------------------------------------------------------------------
@pytest.fixture
def file_size_limit():
    """with file_size_limit(n): files this process writes may not grow past n bytes (RLIMIT_FSIZE;
    Python ignores SIGXFSZ, so a write past it fails with EFBIG, as on a full disk)."""
    resource = pytest.importorskip("resource")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)

    @contextlib.contextmanager
    def limit(n: int):
        resource.setrlimit(resource.RLIMIT_FSIZE, (n, hard))
        try:
            yield
        finally:
            resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    return limit


def test_a_write_that_fails_raises_a_short_store_error_and_leaves_no_temp_file(store, file_size_limit):
    kept = _trial(store, "a")
    with file_size_limit(4096), pytest.raises(store_mod.StoreWriteError) as err:  # a trials file is ~45 kB
        store.write("trials", [_row("b")], "s1", "h1", "b")
    text = str(err.value)
    assert text.startswith(f"cannot write to the store {store.path}: File too large (writing b.parquet)"), text
    assert "Trials already stored are kept" in text and "run the same command again" in text
    assert "ulimit -f" in text and "\n" not in text and isinstance(err.value, store_mod.EnergyRayError)
    assert sorted(p.name for p in kept["trials"].parent.iterdir()) == ["a.parquet"]  # no temp file
    assert store.done_ids("s1") == {"a"} and store.write("trials", [_row("b")], "s1", "h1", "b")


def test_a_store_path_that_cannot_be_a_folder_is_a_store_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(store_mod.StoreWriteError, match="Not a directory .*run the same command again"):
        Store(tmp_path / "file" / "store").write("trials", [_row("a")], "s", "h", "a")
