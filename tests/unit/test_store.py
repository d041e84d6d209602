"""The Parquet store: atomic per-trial files, hive partitions, schema union, resume ids."""

from __future__ import annotations

import os

import pandas as pd
import pyarrow.parquet as pq
import pytest

from energyray.store import Store


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
    assert set(df.columns) == {
        "trial_id",
        "status",
        "energy_j",
        "batch_size",
        "co2_kg",
        "sweep",
        "hardware",
    }
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
