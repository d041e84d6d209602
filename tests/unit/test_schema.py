"""The result contract (energyray/schema.py): every column declared once, with a type, a unit
its name says, a meaning and who fills it; docs/columns.md generated from it."""

from __future__ import annotations

import pyarrow as pa
import pytest

from energyray import schema
from energyray.store import SchemaError, Store, to_arrow

ALLOWED_TYPES = {pa.string(), pa.int64(), pa.float64(), pa.bool_()}


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_names_are_unique_and_snake_case(table):
    names = schema.names(table)
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    for n in names:
        assert n == n.lower() and n.replace("_", "").isalnum() and not n[0].isdigit(), n


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_every_column_has_a_valid_type_a_meaning_and_a_filler(table):
    for c in schema.columns(table):
        assert isinstance(c.type, pa.DataType) and c.type in ALLOWED_TYPES, (c.name, c.type)
        assert c.meaning.strip() and "\n" not in c.meaning, c.name
        assert c.filled_by in schema.FILLERS, (c.name, c.filled_by)
    pa.schema([pa.field(c.name, c.type) for c in schema.columns(table)])  # a valid Arrow schema


@pytest.mark.parametrize("table", list(schema.TABLES))
def test_units_are_in_the_names(table):
    for c in schema.columns(table):
        if c.name in schema.UNIT_NOT_IN_NAME:
            assert c.unit is not None and schema.unit_of_name(c.name) is None, c.name
        else:
            assert c.unit == schema.unit_of_name(c.name), (c.name, c.unit)


def test_unit_of_name():
    assert schema.unit_of_name("energy_j") == "J"
    assert schema.unit_of_name("decode_avg_power_w") == "W"
    assert schema.unit_of_name("j_per_token") == "J/token"
    assert schema.unit_of_name("steady_j_per_token") == "J/token"
    assert schema.unit_of_name("tokens_per_s") == "tokens/s"
    assert schema.unit_of_name("temperature_max_c") == "°C"
    assert schema.unit_of_name("status") is None
    assert schema.unit_of_name("retried_errors") is None


def test_partitions_schema_version_and_extra_json():
    for table in schema.TABLES:
        parts = [c.name for c in schema.columns(table) if c.partition]
        assert parts == ["sweep", "hardware"]
        file_names = schema.arrow_schema(table).names
        assert "sweep" not in file_names and "hardware" not in file_names
        assert {"schema_version", "extra_json"} <= set(file_names)
        assert schema.arrow_schema(table).field("schema_version").type == pa.int64()


def test_patterned_columns_are_declared():
    names = set(schema.names("trials"))
    for phase in schema.PHASES:
        for suffix in ("j", "s", "source", "energy_reason", "avg_power_w", "peak_power_w"):
            assert f"{phase}_{suffix}" in names
        for role in schema.NODE_ROLES:
            assert f"{phase}_{role}_j" in names
    for part in schema.WINDOW_PARTS:
        assert {f"{part}_j", f"{part}_source", f"{part}_energy_reason"} <= names
    for role in schema.NODE_ROLES:
        assert {f"{role}_energy_j", f"{role}_energy_share", f"{role}_idle_power_w"} <= names


def test_legacy_columns_are_not_declared_and_point_at_declared_ones():
    assert set(schema.LEGACY["trials"]) == {"latency_s", "prefill_s", "group_rule"}
    for table, legacy in schema.LEGACY.items():
        declared = set(schema.names(table))
        for old, (new, why) in legacy.items():
            assert old not in declared
            assert new is None or new in declared
            assert why


def test_group_meanings_are_in_the_docs():
    text = schema.markdown()
    for words in ("load_id", "group_trials", "idle_*", "unload_*", "warmup_*", "backend=server", "backend=openai"):
        assert words in text


def test_docs_columns_md_is_current():
    assert schema.DOCS_PATH.exists(), f"docs/columns.md is missing: run `{schema.REGENERATE}`"
    assert schema.DOCS_PATH.read_text() == schema.markdown(), (
        f"docs/columns.md is stale (energyray/schema.py changed): run `{schema.REGENERATE}`")


def test_a_column_written_but_not_declared_fails(tmp_path):
    row = {"trial_id": "t1", "status": "ok", "energy_j": 1.0, "mystery_j": 2.0}
    with pytest.raises(SchemaError, match=r"mystery_j.*energyray/schema\.py"):
        to_arrow("trials", [row], strict=True)
    with pytest.raises(SchemaError, match="mystery_j"):
        Store(tmp_path / "s").write("trials", [row], "s", "h", "t1")  # strict: ENERGYRAY_STRICT_SCHEMA=1 here
    assert not list((tmp_path / "s").rglob("*.parquet"))


def test_a_value_of_the_wrong_type_fails_in_strict_mode():
    with pytest.raises(SchemaError, match=r"batch_size='two'"):
        to_arrow("trials", [{"trial_id": "t", "batch_size": "two"}], strict=True)
    with pytest.raises(SchemaError, match="energy_j"):
        to_arrow("trials", [{"trial_id": "t", "energy_j": 1.5, "status": "ok", "short_window": "yes"},
                            {"trial_id": "u", "energy_j": "lots"}], strict=True)


def test_main_prints_and_writes(tmp_path, monkeypatch, capsys):
    assert schema.main([]) == 0
    assert capsys.readouterr().out == schema.markdown()
    target = tmp_path / "docs" / "columns.md"
    monkeypatch.setattr(schema, "DOCS_PATH", target)
    assert schema.main(["--write"]) == 0
    assert target.read_text() == schema.markdown()


def test_every_name_the_record_builder_patterns_is_declared():
    """trial.record builds the phase, part and node columns from the contract's lists: every
    name it can build is a declared column."""
    from energyray.trial import record

    missing = record.patterned_columns() - set(schema.names("trials"))
    assert not missing, f"declare in energyray/schema.py: {sorted(missing)}"
