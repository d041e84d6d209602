"""The Parquet store: one file per trial per table, written atomically by the driver.

Layout: `<store>/<table>/sweep=<name>/hardware=<name>/<trial_id>.parquet` for the tables
`trials` (one row per trial repetition), `samples` (the time series) and `systems` (one
row per node and device). Every file carries the full schema that energyray/schema.py
declares (typed nulls where a row has no value), so any Parquet reader reads the store;
partition columns live in the path only. Files are written to a dot-prefixed temp name and
renamed, so a reader never sees a partial file. `Store.read` also reads stores written
before the declared schema; `upgrade` rewrites them to it.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import numbers
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from energyray import schema
from energyray.errors import EnergyRayError

TABLES = tuple(schema.TABLES)
PARTITIONS = ("sweep", "hardware")
STRICT_ENV = "ENERGYRAY_STRICT_SCHEMA"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
log = logging.getLogger(__name__)
_warned: set[str] = set()


class SchemaError(EnergyRayError):
    """A row holds a column that energyray/schema.py does not declare, or a value of the wrong type."""


def _safe(value: Any) -> str:
    return _SAFE.sub("_", str(value)) or "_"


def _warn_once(key: str, message: str) -> None:
    if key not in _warned:
        _warned.add(key)
        log.warning(message)


def strict_default() -> bool:
    """Whether undeclared columns raise (ENERGYRAY_STRICT_SCHEMA=1: the test suite) or are kept in extra_json."""
    return os.environ.get(STRICT_ENV, "") not in ("", "0")


_MISMATCH = object()


def _coerce(value: Any, type_: pa.DataType) -> Any:
    """`value` as the Python value of a declared Arrow type; None for null/NaN; _MISMATCH if it is not one."""
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, np.generic):
        value = value.item()
        if isinstance(value, float) and math.isnan(value):
            return None
    if pa.types.is_string(type_) or pa.types.is_large_string(type_):
        if isinstance(value, str):
            return value
        if isinstance(value, (dict, list, tuple, bool)):  # a sampler's settings, a flag: JSON text
            return json.dumps(value, sort_keys=True, default=str)
        return str(value)  # a date, a path, a number
    if pa.types.is_boolean(type_):
        return value if isinstance(value, bool) else _MISMATCH
    if pa.types.is_integer(type_):
        if isinstance(value, numbers.Integral):
            return int(value)
        if isinstance(value, float) and value.is_integer():
            return int(value)
        return _MISMATCH
    if pa.types.is_floating(type_):
        return float(value) if isinstance(value, numbers.Real) else _MISMATCH
    return value


def to_arrow(table: str, rows: list[dict[str, Any]], strict: bool | None = None) -> pa.Table:
    """`rows` as an Arrow table of `table`'s declared file schema (partition columns left out).

    Values are cast to the declared types; a missing column is a typed null. A column not
    declared (or a value of the wrong type): with `strict` (default: ENERGYRAY_STRICT_SCHEMA=1)
    a SchemaError naming it; without, it is kept, as JSON, in `extra_json`, and a warning is
    logged once. Columns of older versions (schema.LEGACY): with `strict` a SchemaError (no
    part of energyray writes them any more); without, dropped with a warning (their
    replacement holds the value).
    """
    strict = strict_default() if strict is None else strict
    target = schema.arrow_schema(table)
    declared = {f.name: f.type for f in target}
    legacy = schema.LEGACY.get(table, {})
    extras: list[dict[str, Any]] = [{} for _ in rows]
    undeclared: set[str] = set()
    stale: set[str] = set()
    wrong: dict[str, str] = {}
    data: dict[str, list[Any]] = {name: [None] * len(rows) for name in declared}
    for i, row in enumerate(rows):
        for key, value in row.items():
            if key in PARTITIONS or key == "schema_version":
                continue
            if key in legacy:
                new, why = legacy[key]
                stale.add(f"{key} ({why})")
                _warn_once(f"legacy:{table}:{key}", f"energyray.store: column {key!r} of table {table!r} is legacy "
                           f"({why}): not written{f'; its value is in {new!r}' if new else ''} (energyray/schema.py LEGACY)")
                continue
            type_ = declared.get(key)
            if type_ is None:
                undeclared.add(key)
                extras[i][key] = value
                continue
            v = _coerce(value, type_)
            if v is _MISMATCH:
                wrong[key] = f"{key}={value!r} ({type(value).__name__}, declared {type_})"
                extras[i][key] = value
                continue
            data[key][i] = v
    if strict and (undeclared or wrong or stale):
        parts = []
        if stale:
            parts.append(f"legacy columns written: {', '.join(sorted(stale))}")
        if undeclared:
            parts.append(f"columns not declared: {', '.join(sorted(undeclared))}")
        if wrong:
            parts.append(f"values not of the declared type: {'; '.join(wrong[k] for k in sorted(wrong))}")
        raise SchemaError(f"table {table!r}: {'; '.join(parts)}. Declare each column (name, Arrow type, unit, "
                          f"meaning, filled by) in energyray/schema.py, then run `{schema.REGENERATE}` "
                          f"(strict: {STRICT_ENV}=1 or Store(strict=True))")
    if undeclared or wrong:
        _warn_once(f"extra:{table}:{','.join(sorted(undeclared | set(wrong)))}",
                   f"energyray.store: table {table!r}: {', '.join(sorted(undeclared | set(wrong)))} not declared in "
                   "energyray/schema.py (or of another type): kept as JSON in the column extra_json")
    for i, extra in enumerate(extras):
        if not extra:
            continue
        prior = data["extra_json"][i]
        merged = {**(json.loads(prior) if prior else {}), **extra}
        data["extra_json"][i] = json.dumps(merged, sort_keys=True, default=str)
    data["schema_version"] = [schema.SCHEMA_VERSION] * len(rows)
    return pa.table({name: pa.array(data[name], type=declared[name]) for name in declared}, schema=target)


def _write_atomic(t: pa.Table, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(t, tmp)
    os.replace(tmp, target)


def _partition_values(path: Path, base: Path) -> dict[str, str]:
    out = {}
    for part in path.relative_to(base).parts[:-1]:
        key, sep, value = part.partition("=")
        if sep and key in PARTITIONS:
            out[key] = value
    return out


def _conform_types(t: pa.Table, table: str) -> pa.Table:
    """Cast a file's columns to their declared types where they differ (null-typed or older types)."""
    declared = {c.name: c.type for c in schema.columns(table)}
    cols, fields = [], []
    for name, col in zip(t.column_names, t.columns, strict=True):
        want = declared.get(name)
        if want is not None and col.type != want:
            try:
                col = col.cast(want)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
                pass  # kept as written; concat promotes it where it can
        cols.append(col)
        fields.append(pa.field(name, col.type))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields))


class Store:
    def __init__(self, path: str | Path, strict: bool | None = None) -> None:
        self.path = Path(path)
        self.strict = strict  # None: from ENERGYRAY_STRICT_SCHEMA

    def file(self, table: str, sweep: str, hardware: str, name: str) -> Path:
        return self.path / table / f"sweep={_safe(sweep)}" / f"hardware={_safe(hardware)}" / f"{_safe(name)}.parquet"

    def write(self, table: str, rows: list[dict[str, Any]], sweep: str, hardware: str, name: str) -> Path | None:
        """Write rows as one file of the declared schema (see `to_arrow`), atomically (temp
        file + os.replace). Returns the path."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        if not rows:
            return None
        t = to_arrow(table, rows, self.strict)  # before the path: a SchemaError leaves nothing behind
        target = self.file(table, sweep, hardware, name)
        _write_atomic(t, target)
        return target

    def clean_partial(self) -> list[Path]:
        """Remove temp files that a killed writer left (`.<name>.<pid>.tmp` whose pid is gone).
        Readers never see them anyway (dot files are skipped); this only frees the space."""
        removed: list[Path] = []
        if not self.path.exists():
            return removed
        for p in self.path.rglob(".*.tmp"):
            try:
                pid = int(p.name.rsplit(".", 2)[-2])
                os.kill(pid, 0)
                continue  # its writer is alive
            except (ValueError, ProcessLookupError):
                pass
            except PermissionError:
                continue
            p.unlink(missing_ok=True)
            removed.append(p)
        return removed

    def _files(self, table: str) -> list[str]:
        root = self.path / table
        if not root.exists():
            return []
        return sorted(str(p) for p in root.rglob("*.parquet") if not p.name.startswith("."))

    def read(self, table: str = "trials", columns: Iterable[str] | None = None) -> pd.DataFrame:
        """The whole table as a DataFrame, partition columns included. Files of every version
        are read: columns are cast to their declared types, and the union of columns is kept
        (an old file's legacy columns too; a column a file lacks is null on its rows)."""
        files = self._files(table)
        if not files:
            return pd.DataFrame()
        want = None if columns is None else list(dict.fromkeys(columns))
        base = self.path / table
        parts = []
        for f in files:
            path = Path(f)
            names = pq.read_schema(f).names
            t = pq.read_table(f, columns=None if want is None else [c for c in want if c in names])
            t = _conform_types(t, table)
            for key, value in _partition_values(path, base).items():
                if key not in t.column_names and (want is None or key in want):
                    t = t.append_column(key, pa.array([value] * t.num_rows, pa.string()))
            parts.append(t)
        out = pa.concat_tables(parts, promote_options="permissive")
        if want is not None:
            out = out.select([c for c in want if c in out.column_names])
        return out.to_pandas()

    def done_ids(self, sweep: str, statuses: tuple[str, ...] = ("ok", "oom")) -> set[str]:
        """Trial ids of this sweep already stored with one of `statuses` (for resume)."""
        root = self.path / "trials" / f"sweep={_safe(sweep)}"
        if not root.exists():
            return set()
        done = set()
        for f in root.rglob("*.parquet"):
            if f.name.startswith("."):
                continue
            t = pq.read_table(f, columns=["trial_id", "status"])
            for tid, status in zip(t.column("trial_id").to_pylist(), t.column("status").to_pylist(), strict=True):
                if status in statuses:
                    done.add(tid)
        return done


# -- upgrade: an older store to the declared schema ------------------------------------------
@dataclass
class UpgradeSummary:
    """What `upgrade` did: files seen and rewritten, and per table the columns it changed."""

    path: Path
    files: int = 0
    rewritten: int = 0
    rows: int = 0
    added: dict[str, set[str]] = field(default_factory=dict)  # table -> declared columns a file lacked
    renamed: dict[str, set[str]] = field(default_factory=dict)  # table -> "old -> new"
    dropped: dict[str, set[str]] = field(default_factory=dict)  # table -> legacy columns dropped
    cast: dict[str, set[str]] = field(default_factory=dict)  # table -> "name: old type -> new type"
    kept_as_json: dict[str, set[str]] = field(default_factory=dict)  # table -> undeclared columns

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.files} file(s), {self.rewritten} rewritten to schema version "
               f"{schema.SCHEMA_VERSION}, {self.files - self.rewritten} already current; {self.rows} row(s) kept"]
        for table in TABLES:
            notes = []
            for label, d in (("renamed", self.renamed), ("dropped (legacy)", self.dropped),
                             ("kept in extra_json (not declared)", self.kept_as_json)):
                if d.get(table):
                    notes.append(f"{label}: {', '.join(sorted(d[table]))}")
            cast = sorted(self.cast.get(table, set()))
            typed = [c for c in cast if "large_string -> string" not in c]
            if typed:
                notes.append(f"typed: {', '.join(typed)}")
            if len(cast) > len(typed):
                notes.append(f"{len(cast) - len(typed)} text column(s) large_string -> string")
            if self.added.get(table):
                notes.append(f"{len(self.added[table])} declared column(s) some file lacked, added as typed nulls")
            out += [f"  {table}: {n}" for n in notes]
        return out


def _upgrade_rows(table: str, t: pa.Table, summary: UpgradeSummary) -> list[dict[str, Any]]:
    """A file's rows with legacy columns renamed (where the new column is absent) or dropped."""
    legacy = schema.LEGACY.get(table, {})
    present = set(t.column_names)
    rename = {old: new for old, (new, _) in legacy.items() if old in present and new and new not in present}
    for old, new in rename.items():
        summary.renamed.setdefault(table, set()).add(f"{old} -> {new}")
    for old in present & set(legacy):
        if old not in rename:
            summary.dropped.setdefault(table, set()).add(old)
    rows = []
    for r in t.to_pylist():
        out = {rename.get(k, k): v for k, v in r.items() if k in rename or k not in legacy}
        rows.append(out)
    return rows


def upgrade(path: str | Path) -> UpgradeSummary:
    """Rewrite every file of the store at `path` that is not of the declared schema, atomically:
    legacy columns renamed or dropped (schema.LEGACY), missing columns typed nulls, values cast
    to the declared types, undeclared columns kept in extra_json. Idempotent: a current file is
    left alone. Raises FileNotFoundError where `path` holds no store."""
    store = Store(path, strict=False)
    if not store.path.is_dir() or not any((store.path / t).is_dir() for t in TABLES):
        raise FileNotFoundError(f"no energyray store at {store.path} (expected {', '.join(TABLES)} folders)")
    summary = UpgradeSummary(store.path)
    for table in TABLES:
        target = schema.arrow_schema(table)
        declared = {f.name: f.type for f in target}
        for f in store._files(table):
            summary.files += 1
            t = pq.read_table(f, partitioning=None)
            summary.rows += t.num_rows
            if t.schema.remove_metadata().equals(target) and \
                    set(t.column("schema_version").to_pylist()) <= {schema.SCHEMA_VERSION}:
                continue  # already current
            names = set(t.column_names) - set(PARTITIONS)
            for name in set(declared) - names - {"schema_version", "extra_json"}:
                summary.added.setdefault(table, set()).add(name)
            for fld in t.schema:
                want = declared.get(fld.name)
                if want is not None and fld.type != want and fld.name != "schema_version":
                    summary.cast.setdefault(table, set()).add(f"{fld.name}: {fld.type} -> {want}")
            legacy = set(schema.LEGACY.get(table, {}))
            for name in names - set(declared) - legacy:
                summary.kept_as_json.setdefault(table, set()).add(name)
            rows = _upgrade_rows(table, t, summary)
            new = to_arrow(table, [{k: v for k, v in r.items() if k not in PARTITIONS} for r in rows], strict=False)
            if new.num_rows != t.num_rows:  # never: a guard before replacing a user's file
                raise RuntimeError(f"upgrade of {f} would change its row count")
            _write_atomic(new, Path(f))
            summary.rewritten += 1
    return summary


def store_main(argv: list[str]) -> int:
    """`python -m energyray store upgrade --store PATH`."""
    ap = argparse.ArgumentParser(prog="python -m energyray store", description="Maintain an energyray store.")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="rewrite an older store's files to the declared schema (in place, atomically; "
                                        "safe to run twice)")
    up.add_argument("--store", required=True, help="the store's folder (store.path of the sweep)")
    args = ap.parse_args(argv)
    try:
        summary = upgrade(args.store)
    except FileNotFoundError as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(summary.lines()))
    return 0
