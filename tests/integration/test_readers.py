"""Every documented reader on a store: pandas, pyarrow.dataset, DuckDB and Store.read.

A store written by this version (rows through Store, and a real smoke sweep through the CLI,
strict: ENERGYRAY_STRICT_SCHEMA=1 from tests/conftest.py) reads everywhere; a store written
by energyray 0.1.0 (tests/data/store-0.1.0) reads through Store.read, DuckDB and the report,
and pandas reads it once `python -m energyray store upgrade` has rewritten it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from energyray import schema
from energyray.store import TABLES, Store

OLD_STORE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"


def _duckdb_count(store: Path, table: str) -> int:
    duckdb = pytest.importorskip("duckdb", reason="needs the report extra: pip install 'energyray[report]'")
    glob = str(store / table / "**" / "*.parquet")
    return int(duckdb.sql(f"select count(*) from read_parquet('{glob}', hive_partitioning=true, "
                          "union_by_name=true)").fetchall()[0][0])


def _counts(store: Path, table: str, with_pandas: bool = True) -> dict[str, int]:
    out = {
        "Store.read": len(Store(store).read(table)),
        "pyarrow.dataset": ds.dataset(store / table, format="parquet", partitioning="hive").count_rows(),
        "duckdb": _duckdb_count(store, table),
    }
    if with_pandas:
        out["pandas"] = len(pd.read_parquet(store / table))
    return out


@pytest.fixture
def energyray(cli_process):
    """energyray(*args) -> CompletedProcess: a subcommand (report, store) run as a user would."""
    argv, cwd, env = cli_process

    def call(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*argv, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return call


def _explain(r: subprocess.CompletedProcess[str]) -> str:
    return f"exit {r.returncode}\n--- stdout ---\n{r.stdout[-4000:]}\n--- stderr ---\n{r.stderr[-4000:]}"


# -- a store written by this version -----------------------------------------------------------
def test_rows_written_through_store_read_everywhere(tmp_path):
    store = Store(tmp_path / "store")
    store.write("trials", [{"trial_id": "a", "status": "ok", "energy_j": 1.0, "batch_size": 1}], "s1", "cpu", "a")
    store.write("trials", [{"trial_id": "b", "status": "failed", "error": "boom"}], "s1", "cpu", "b")
    store.write("trials", [{"trial_id": "c", "status": "ok", "co2_kg": 0.5, "quant_method": "bitsandbytes",
                            "double_quant": True}], "s2", "h100", "c")
    store.write("samples", [{"trial_id": "a", "t_ns": i, "power_w": 1.0} for i in range(5)], "s1", "cpu", "a")
    store.write("samples", [{"trial_id": "c", "t_ns": 1, "energy_j": 3.0}], "s2", "h100", "c")
    store.write("systems", [{"node": "n1", "kind": "cpu"}], "s1", "cpu", "n1")
    store.write("systems", [{"node": "n2", "kind": "gpu", "energy_counter": True}], "s2", "h100", "n2")
    store.write("responses", [{"trial_id": "a", "request_index": i, "response": "x", "energy_j": 0.5}
                              for i in range(2)], "s1", "cpu", "a")
    expected = {"trials": 3, "samples": 6, "systems": 2, "responses": 2}
    for table in TABLES:
        assert set(_counts(store.path, table).values()) == {expected[table]}, table
    df = pd.read_parquet(store.path / "trials")
    assert set(df.columns) == set(schema.names("trials"))
    assert sorted(df["sweep"].astype(str)) == ["s1", "s1", "s2"]


def test_every_reader_leaves_out_the_quarantine(tmp_path):
    """Damaged files moved to <store>/_quarantine/ (beside the tables, under the same relative
    paths) are read by none of the documented readers; nor is a reader pointed at the store's
    root by pyarrow.dataset (it skips `_` folders)."""
    store = Store(tmp_path / "store")
    for tid in ("a", "b", "c"):
        store.write("samples", [{"trial_id": tid, "t_ns": i, "power_w": 1.0} for i in range(3)], "s1", "cpu", tid)
        store.write("trials", [{"trial_id": tid, "status": "ok"}], "s1", "cpu", tid)
    store.write("systems", [{"node": "n1"}], "s1", "cpu", "n1")
    store.write("systems", [{"node": "n2"}], "s1", "cpu", "n2")
    for table, name in (("trials", "a"), ("samples", "b"), ("systems", "n2")):
        f = store.file(table, "s1", "cpu", name)
        f.write_bytes(f.read_bytes()[:200])
    assert store.done_ids("s1") == {"c"}  # a and b moved aside whole, each with its other file
    quarantine = store.path / "_quarantine"
    assert len(list(quarantine.rglob("*.parquet"))) == 5
    expected = {"trials": 1, "samples": 3, "systems": 1}
    for table in ("trials", "samples", "systems"):
        assert set(_counts(store.path, table).values()) == {expected[table]}, table
    root = ds.dataset(store.path, format="parquet", partitioning="hive", exclude_invalid_files=False)
    assert not [f for f in root.files if "_quarantine" in f]


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory, shared_cache, cli):
    root = tmp_path_factory.mktemp("readers-smoke")
    store = root / "store"
    r = cli(["sweep=smoke", f"store.path={store}", f"cache_dir={shared_cache}", "sampler.interval_s=0.01"],
            root / "hydra")
    assert r.returncode == 0, r.explain()
    return store, r


def test_a_real_sweep_reads_everywhere(smoke_store):
    store, _ = smoke_store
    for table in TABLES:
        counts = _counts(store, table)
        assert len(set(counts.values())) == 1 and min(counts.values()) > 0, (table, counts)
    assert _counts(store, "trials")["pandas"] == 4


def test_a_real_sweep_writes_only_declared_columns(smoke_store):
    """Strict mode (ENERGYRAY_STRICT_SCHEMA=1) would have failed the sweep on an undeclared
    column or a legacy one; every file holds exactly the declared schema, and nothing went to
    extra_json."""
    store, r = smoke_store
    for table in TABLES:
        for p in (store / table).rglob("*.parquet"):
            assert pq.read_schema(p).remove_metadata().equals(schema.arrow_schema(table)), p
            assert set(pq.read_table(p, columns=["extra_json"]).column(0).to_pylist()) == {None}, p
    assert "is legacy" not in r.output, r.output


# -- a store written by energyray 0.1.0 --------------------------------------------------------
@pytest.fixture
def old_store(tmp_path):
    dst = tmp_path / "store-0.1.0"
    shutil.copytree(OLD_STORE, dst)
    return dst


def test_an_old_store_reads_through_store_duckdb_and_the_report(old_store, energyray):
    for table in TABLES:
        if table == "responses":  # a table added since: no folder, no rows
            assert not (old_store / table).exists() and Store(old_store).read(table).empty
            continue
        counts = _counts(old_store, table, with_pandas=False)
        assert len(set(counts.values())) == 1, (table, counts)
    with pytest.raises(Exception, match="(?i)cast"):
        pd.read_parquet(old_store / "trials")
    r = energyray("report", "--store", str(old_store))
    assert r.returncode == 0, _explain(r)
    assert "tiny-llama" in r.stdout


def test_store_upgrade_from_the_cli(old_store, energyray):
    before = {t: Store(old_store).read(t) for t in TABLES}
    r = energyray("store", "upgrade", "--store", str(old_store))
    assert r.returncode == 0, _explain(r)
    assert "8 rewritten" in r.stdout and "group_rule" in r.stdout
    for table in ("trials", "samples", "systems"):
        counts = _counts(old_store, table)
        assert set(counts.values()) == {len(before[table])}, (table, counts)
    trials = pd.read_parquet(old_store / "trials").set_index("trial_id").sort_index()
    old = before["trials"].set_index("trial_id").sort_index()
    for col in ("energy_j", "duration_s", "ttft_s", "status", "config_json", "load_id"):
        pd.testing.assert_series_equal(trials[col], old[col], check_dtype=False, check_names=False)
    assert json.loads(trials["config_json"].dropna().iloc[0])
    again = energyray("store", "upgrade", "--store", str(old_store))
    assert again.returncode == 0 and "0 rewritten" in again.stdout, _explain(again)
    r = energyray("report", "--store", str(old_store))
    assert r.returncode == 0 and "tiny-llama" in r.stdout, _explain(r)


def test_store_upgrade_of_a_missing_store_is_one_clear_line(tmp_path, energyray):
    r = energyray("store", "upgrade", "--store", str(tmp_path / "nope"))
    assert r.returncode != 0
    assert r.stderr.strip().startswith("energyray: error: no energyray store at"), r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
