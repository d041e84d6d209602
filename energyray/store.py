"""The Parquet store: one file per trial per table, written atomically by the driver.

Layout: `<store>/<table>/sweep=<name>/hardware=<name>/<trial_id>.parquet` for the tables
`trials` (one row per trial repetition), `samples` (the time series), `responses` (one row
per request of a trial) and `systems` (one row per node and device). A table may have no
folder at all (a store written before it, a sweep whose trials all failed): readers get
no rows. Every file carries the full schema that energyray/schema.py
declares (typed nulls where a row has no value), so any Parquet reader reads the store;
partition columns live in the path only. Files are written to a dot-prefixed temp name and
renamed, so a reader never sees a partial file. `Store.read` also reads stores written
before the declared schema; `upgrade` rewrites them to it.

A file that cannot be read (truncated, zeroed, not Parquet) never stops a sweep or a reader:
readers skip it and name it; the resume check (`done_ids`) moves it, with the other files of
its trial, to `<store>/_quarantine/<same relative path>` and leaves its trial to run again.
A write that fails (disk full, file too large, no permission) raises StoreWriteError.

Compaction (`Store.compact`, `python -m energyray store compact`) merges a partition's loose
per-trial files of the tables trials/samples/responses into one segment,
`segment-<UTC time>-<8 hex>.parquet` beside them. Every reader applies the same precedence:
for a trial id a loose file beats any segment, and a later segment (by name) beats an earlier
one; for samples/responses the rows of one winning file are kept, of the same kind (loose or
segment) as the trial's trials row where it has one. Other `_`- or `.`-prefixed files are not data.
"""

from __future__ import annotations

import argparse
import datetime
import errno
import json
import logging
import math
import numbers
import os
import re
import sys
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from energyray import schema
from energyray.errors import EnergyRayError, StoreError

TABLES = tuple(schema.TABLES)
PARTITIONS = ("sweep", "hardware")
# Tables with one file per trial, named by its id: a trial is whole only with each of them readable.
TRIAL_TABLES = ("trials", "samples", "responses")
# Where damaged files go: beside the tables, so no reader of `<store>/<table>` ever sees them
# (and `_`-prefixed, which pyarrow's and pandas' dataset discovery skip anyway).
QUARANTINE = "_quarantine"
STRICT_ENV = "ENERGYRAY_STRICT_SCHEMA"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
# A compacted file of many trials' rows; the UTC time in its name orders segments (later wins).
SEGMENT_PREFIX = "segment-"
log = logging.getLogger(__name__)
_warned: set[str] = set()


class SchemaError(EnergyRayError):
    """A row holds a column that energyray/schema.py does not declare, or a value of the wrong type."""


class StoreWriteError(StoreError):
    """A file could not be written to the store (disk full, file too large, no permission)."""


@dataclass(frozen=True)
class Damaged:
    """A store file that cannot be read: where it was, why, and where it went (None: left in place)."""

    path: Path
    reason: str
    moved_to: Path | None = None
    moved_with: tuple[str, ...] = ()  # the tables of its trial's other files, moved along
    held: int | None = None  # a segment: how many trials it held (None: not a segment, or not known)

    def line(self) -> str:
        where = f"; moved to {self.moved_to}" if self.moved_to else ""
        what = "segment" if _is_segment(self.path.name) else "file"
        with_ = f" with its {', '.join(self.moved_with)} {what}" if self.moved_with else ""
        return f"{self.path}: {self.reason}{where}{with_}{self.held_note()}"

    def held_note(self) -> str:
        if not _is_segment(self.path.name):
            return ""
        n = "an unknown number of" if self.held is None else str(self.held)
        return f"; a segment of {n} trial(s): a rerun of its sweep runs them again"


# What reading a damaged file raises: ArrowInvalid (a ValueError: no magic bytes, 0 bytes, a bad
# footer or page), OSError (an I/O error, no permission), KeyError/IndexError (a column missing).
_UNREADABLE = (pa.ArrowException, OSError, ValueError, KeyError, IndexError)


def _reason(e: BaseException) -> str:
    """The error's first line without pyarrow's 'Could not open Parquet input source <path>:'."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if text.startswith("Could not open Parquet input source") and "': " in text:
        text = text.split("': ", 1)[1]
    return text


def _safe(value: Any) -> str:
    return _SAFE.sub("_", str(value)) or "_"


def _is_segment(name: str) -> bool:
    return name.startswith(SEGMENT_PREFIX) and name.endswith(".parquet")


def _is_data(name: str) -> bool:
    """A loose `<trial_id>.parquet` or a segment; other `.`/`_`-prefixed files are not data."""
    return name.endswith(".parquet") and (not name.startswith((".", "_")) or _is_segment(name))


def _split(paths: Iterable[str | Path]) -> dict[Path, tuple[list[Path], list[Path]]]:
    """Paths grouped by folder (partition): (loose files, segments oldest first)."""
    out: dict[Path, tuple[list[Path], list[Path]]] = {}
    for f in paths:
        p = Path(f)
        loose, segs = out.setdefault(p.parent, ([], []))
        (segs if _is_segment(p.name) else loose).append(p)
    for _, segs in out.values():
        segs.sort(key=lambda p: p.name)
    return out


def _keys(col: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Trial ids as the names of their loose files (`_safe`), vectorised."""
    col = col.cast(pa.string())
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    out = pc.replace_substring_regex(col, pattern=_SAFE.pattern, replacement="_")
    out = pc.fill_null(out, "_")
    return pc.if_else(pc.equal(out, ""), "_", out)


def _not_in(keys: pa.Array, seen: set[str]) -> pa.Array:
    if not seen:
        return pa.array([True] * len(keys), pa.bool_())
    return pc.invert(pc.is_in(keys, value_set=pa.array(sorted(seen), pa.string())))


def _segment_keys(trials_dir: Path) -> tuple[set[str], set[str]]:
    """Of a trials partition: the loose files' trial keys, and the trial keys its segments hold
    (trial_id column only; an unreadable segment counts for nothing here, its readers name it)."""
    loose: set[str] = set()
    held: set[str] = set()
    if not trials_dir.is_dir():
        return loose, held
    for entry in os.scandir(trials_dir):
        if not _is_data(entry.name):
            continue
        if not _is_segment(entry.name):
            loose.add(entry.name[: -len(".parquet")])
            continue
        try:
            held.update(pc.unique(_keys(pq.read_table(entry.path, columns=["trial_id"]).column(0))).to_pylist())
        except _UNREADABLE:
            pass
    return loose, held


def _winners(table: str, loose: Collection[str], segs: list[pa.Array], trials_loose: set[str],
             trials_held: set[str]) -> tuple[set[str], list[pa.Array]]:
    """The precedence: which loose files (by key) and which segment rows (a mask per segment,
    `segs` the segments' key arrays oldest first) hold each trial's rows.

    A loose file beats a segment; a later segment beats an earlier one. For samples/responses
    the winner is of the trial's trials row's kind: a trial with a loose trials file keeps its
    loose file only (none where its rerun wrote none); one whose trials row is in a segment
    keeps its latest segment's rows where a segment has it."""
    if table == "trials":
        chosen = set(loose)
        seen = set(chosen)
    else:
        in_segs: set[str] = set()
        for k in segs:
            in_segs.update(pc.unique(k).to_pylist())
        chosen = {k for k in loose if k in trials_loose or not (k in trials_held and k in in_segs)}
        seen = chosen | trials_loose
    masks: list[pa.Array] = [pa.array([], pa.bool_())] * len(segs)
    for i in range(len(segs) - 1, -1, -1):
        masks[i] = _not_in(segs[i], seen)
        seen.update(pc.unique(segs[i]).to_pylist())
    return chosen, masks


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


# errno codes of a write that cannot succeed as things are, and what to do about each
_WRITE_FIXES = {errno.ENOSPC: "free space", errno.EDQUOT: "free space (or raise the quota)",
                errno.EFBIG: "raise the file size limit (ulimit -f)", errno.EACCES: "make it writable",
                errno.EPERM: "make it writable", errno.EROFS: "use a writable store.path"}


def _errno_of(e: OSError) -> int | None:
    """An OSError's errno; pyarrow's carry it too, or name it in their text ('[errno 28] ...')."""
    if e.errno:
        return e.errno
    m = re.search(r"\[errno (\d+)\]", str(e), re.IGNORECASE)
    return int(m.group(1)) if m else None


def _write_atomic(t: pa.Table, target: Path, store: Path | None = None) -> None:
    """Write `t` to a dot-prefixed temp file beside `target`, then rename it to `target`.

    A failed write leaves no temp file and raises StoreWriteError naming the store (`store`,
    default the target's folder) and the system's reason; files written before are untouched."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(t, tmp)
        os.replace(tmp, target)
    except OSError as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:
            pass  # clean_partial removes it on the next run
        raise _write_error(e, store or target.parent, target.name) from e


def _write_error(e: OSError, store: Path, name: str) -> StoreWriteError:
    code = _errno_of(e)
    why = os.strerror(code) if code else _reason(e)
    fix = _WRITE_FIXES.get(code or 0)
    then = f"{fix}, then run the same command again" if fix else "run the same command again once that is fixed"
    return StoreWriteError(f"cannot write to the store {store}: {why} (writing {name}). "
                           f"Trials already stored are kept: {then} to resume.")


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
    def __init__(self, path: str | Path, strict: bool | None = None, log_damaged: bool = True) -> None:
        self.path = Path(path)
        self.strict = strict  # None: from ENERGYRAY_STRICT_SCHEMA
        self.log_damaged = log_damaged  # a warning per damaged file found (off: the caller prints `damaged`)
        self.damaged: list[Damaged] = []  # the damaged files this object found, each once

    def file(self, table: str, sweep: str, hardware: str, name: str) -> Path:
        return self.path / table / f"sweep={_safe(sweep)}" / f"hardware={_safe(hardware)}" / f"{_safe(name)}.parquet"

    def write(self, table: str, rows: list[dict[str, Any]], sweep: str, hardware: str, name: str) -> Path | None:
        """Write rows as one file of the declared schema (see `to_arrow`), atomically (temp
        file + os.replace). Returns the path. A failed write (disk full, no permission) raises
        StoreWriteError and leaves no temp file."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        if not rows:
            return None
        t = to_arrow(table, rows, self.strict)  # before the path: a SchemaError leaves nothing behind
        target = self.file(table, sweep, hardware, name)
        _write_atomic(t, target, self.path)
        return target

    def write_trial(self, row: dict[str, Any], samples: list[dict[str, Any]], responses: list[dict[str, Any]],
                    sweep: str, hardware: str) -> None:
        """A trial's files: samples and responses first, the trials file last (it is what marks the
        trial done for resume, so a driver killed between the writes reruns the trial rather than
        lose its other files). A responses file an earlier run of the trial left is removed where
        this run has none (it failed)."""
        name = str(row["trial_id"])
        self.write("samples", samples, sweep, hardware, name)
        if responses:
            self.write("responses", responses, sweep, hardware, name)
        else:
            stale = self.file("responses", sweep, hardware, name)
            try:
                stale.unlink(missing_ok=True)
            except OSError as e:
                raise _write_error(e, self.path, stale.name) from e
        self.write("trials", [row], sweep, hardware, name)

    def clean_partial(self) -> list[Path]:
        """Remove temp files that a killed writer left (`.<name>.<pid>.tmp` whose pid is gone: a
        trial's file or a compaction's segment). Readers never see them anyway (dot files are
        skipped); this only frees the space."""
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

    def _files(self, table: str, sweep: str | None = None) -> list[str]:
        root = self.path / table
        if sweep is not None:
            root = root / f"sweep={_safe(sweep)}"
        if not root.exists():
            return []
        return sorted(str(p) for p in root.rglob("*.parquet") if _is_data(p.name))

    # -- damaged files ---------------------------------------------------------------------------
    def quarantine(self, path: str | Path) -> tuple[Path | None, list[Path]]:
        """Move a file of the store to `<store>/_quarantine/<same relative path>` (a numbered name
        where one is there already); for a trial's file (TRIAL_TABLES), its trial's files in the
        other tables too, so the trial is rerun whole. Returns (where it went, the other files
        moved); where it cannot be moved (a read-only store) (None, [])."""
        path = Path(path)
        rel = path.relative_to(self.path)
        try:
            moved = self._move_aside(path)
        except OSError:
            return None, []
        others = []
        if rel.parts[0] in TRIAL_TABLES:
            for table in TRIAL_TABLES:
                other = self.path / table / Path(*rel.parts[1:])
                if table != rel.parts[0] and other.exists():
                    try:
                        self._move_aside(other)
                        others.append(other)
                    except OSError:
                        pass  # a readable file left alone: the rerun overwrites it
        return moved, others

    def _move_aside(self, path: Path) -> Path:
        dest = self.path / QUARANTINE / path.relative_to(self.path)
        n = 1
        while dest.exists():  # the same trial damaged before: keep both
            dest = dest.with_name(f"{path.stem}~{n}{path.suffix}")
            n += 1
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        return dest

    def _found(self, path: Path, e: BaseException, quarantine: bool) -> Damaged | None:
        """Record a file that could not be read (and log it); with `quarantine`, move it aside.
        None where the file is gone (moved by another process meanwhile): nothing to report."""
        if not path.exists():
            return None
        prior = next((d for d in self.damaged if d.path == path), None)
        if prior is not None and not quarantine:
            return prior  # reported once
        reason = _reason(e)
        held = self._held(path) if _is_segment(path.name) else None  # before its companions move
        moved, others = self.quarantine(path) if quarantine else (None, [])
        damaged = Damaged(path, reason, moved, tuple(p.relative_to(self.path).parts[0] for p in others), held)
        if prior is not None:
            self.damaged[self.damaged.index(prior)] = damaged
            if moved is None:
                return damaged
        else:
            self.damaged.append(damaged)
        if self.log_damaged:
            trial = path.relative_to(self.path).parts[0] in TRIAL_TABLES
            if moved is not None:
                with_ = f" with its {', '.join(damaged.moved_with)} file" if damaged.moved_with else ""
                then = damaged.held_note() if _is_segment(path.name) else "; its trial runs again" if trial else ""
                log.warning(f"energyray: damaged file in the store: {path} ({reason}); moved to {moved}{with_}{then}")
            else:
                then = "a rerun of its sweep moves it to " + str(self.path / QUARANTINE)
                then += damaged.held_note() if _is_segment(path.name) else " and runs its trial again" if trial else ""
                log.warning(f"energyray: skipped a damaged file: {path} ({reason}); {then}")
        return damaged

    def _held(self, segment: Path) -> int | None:
        """How many trials a (damaged) segment held: from its footer (trials), else from the
        segment of the same name in another trial table; None where none can tell."""
        rel = segment.relative_to(self.path)
        if rel.parts[0] == "trials":
            try:
                return pq.read_metadata(segment).num_rows
            except _UNREADABLE:
                pass
        for table in TRIAL_TABLES:
            other = self.path / table / Path(*rel.parts[1:])
            if other == segment or not other.exists():
                continue
            try:
                return len(pc.unique(pq.read_table(other, columns=["trial_id"]).column(0)))
            except _UNREADABLE:
                continue
        return None

    # -- compaction --------------------------------------------------------------------------------
    def compact(self, sweep: str | None = None) -> CompactSummary:
        """Merge each partition's loose files and older segments of the trial tables into one new
        segment per table, written atomically, then remove the merged inputs (a loose file only if
        unchanged since it was read: one rewritten meanwhile stays, and wins). The precedence is
        the readers' (module docstring); damaged files are moved aside as the resume check does.
        Idempotent. Raises FileNotFoundError where the store or the sweep is not there."""
        _require_store(self)
        if sweep is not None and not any((self.path / t / f"sweep={_safe(sweep)}").is_dir() for t in TRIAL_TABLES):
            have = sorted({p.name.partition("=")[2] for t in TRIAL_TABLES if (self.path / t).is_dir()
                           for p in (self.path / t).iterdir() if p.name.startswith("sweep=")})
            raise FileNotFoundError(f"no sweep {sweep!r} in the store {self.path} (its sweeps: "
                                    f"{', '.join(have) or 'none'}): give --sweep one of them, or leave it out")
        summary = CompactSummary(self.path, damaged=self.damaged)
        parts = sorted({Path(f).parent.relative_to(self.path / t) for t in TRIAL_TABLES for f in self._files(t, sweep)})
        skip: set[Path] = set()
        for rel in parts:
            for _ in range(10):  # each retry follows a damaged file moved aside
                if _compact_partition(self, rel, summary, skip):
                    break
        return summary

    # -- reading -----------------------------------------------------------------------------------
    def read(self, table: str = "trials", columns: Iterable[str] | None = None, sweep: str | None = None,
             quarantine: bool = False) -> pd.DataFrame:
        """The whole table (or one sweep's part of it) as a DataFrame, partition columns included.
        Files of every version are read: columns are cast to their declared types, and the union
        of columns is kept (an old file's legacy columns too; a column a file lacks is null on its
        rows). A file that cannot be read is skipped, logged and added to `damaged`; with
        `quarantine` it is moved aside too (see `quarantine`). A reader leaves files in place by
        default: the store may be read-only, or in use by a sweep (whose resume check moves them)."""
        files = self._files(table, sweep)
        if not files:
            return pd.DataFrame()
        want = None if columns is None else list(dict.fromkeys(columns))
        base = self.path / table
        parts = []
        for folder, (loose, segs) in _split(files).items():
            if not segs or table not in TRIAL_TABLES:
                parts += [t for p in loose + segs if (t := self._read_one(p, table, want, base, quarantine)) is not None]
                continue
            # a partition with segments: read each segment with its trial ids, then keep the winners
            seg_tables, seg_keys = [], []
            for p in segs:
                t = self._read_one(p, table, None if want is None else [*want, "trial_id"] if "trial_id" not in want else want, base, quarantine)
                if t is None or "trial_id" not in t.column_names:
                    continue
                seg_tables.append(t)
                seg_keys.append(_keys(t.column("trial_id")))
            trials_loose, trials_held = (set(), set()) if table == "trials" else \
                _segment_keys(self.path / "trials" / folder.relative_to(base))
            by_key = {p.name[: -len(".parquet")]: p for p in loose}
            chosen, masks = _winners(table, by_key, seg_keys, trials_loose, trials_held)
            parts += [t for k in sorted(chosen) if (t := self._read_one(by_key[k], table, want, base, quarantine))
                      is not None]
            parts += [t.filter(m) for t, m in zip(seg_tables, masks, strict=True)]
        if not parts:
            return pd.DataFrame()
        out = pa.concat_tables(parts, promote_options="permissive")
        if want is not None:
            out = out.select([c for c in want if c in out.column_names])
        return out.to_pandas()

    def _read_one(self, path: Path, table: str, want: list[str] | None, base: Path, quarantine: bool) -> pa.Table | None:
        """One file's rows (the `want` columns it has), types conformed, partition columns added;
        None where it cannot be read (recorded in `damaged`)."""
        try:
            names = pq.read_schema(path).names
            t = pq.read_table(path, columns=None if want is None else [c for c in want if c in names])
        except _UNREADABLE as e:
            self._found(path, e, quarantine)
            return None
        t = _conform_types(t, table)
        for key, value in _partition_values(path, base).items():
            if key not in t.column_names and (want is None or key in want):
                t = t.append_column(key, pa.array([value] * t.num_rows, pa.string()))
        return t

    def done_ids(self, sweep: str, statuses: tuple[str, ...] = ("ok", "oom"), quarantine: bool = True) -> set[str]:
        """Trial ids of this sweep already stored with one of `statuses` (for resume).

        Reads the trials files' and segments' `trial_id` and `status` and the footers of the sweep's
        samples, responses and systems files, nothing more; a loose file beats a segment, a later
        segment an earlier one. A trial with a file that cannot be read is not done (a damaged
        segment: none of its trials);
        with `quarantine` (the default: a sweep is about to write here) the damaged file and its
        trial's other files are moved to `<store>/_quarantine/`. Each is logged and added to
        `damaged`."""
        broken: set[Path] = set()  # <sweep>/<hardware>/<file> of trials with a damaged file
        rows: dict[Path, list[tuple[Any, Any]]] = {}  # a trials file's (trial_id, status) pairs
        listed: list[Path] = []
        base = self.path / "trials"
        for f in map(Path, self._files("trials", sweep)):
            rel = f.relative_to(base)
            listed.append(rel)
            try:
                with pq.ParquetFile(f) as pf:
                    names = pf.schema_arrow.names
                    if "trial_id" not in names or "status" not in names:
                        continue  # not a row energyray wrote: not done
                    t = pf.read(columns=["trial_id", "status"])
            except _UNREADABLE as e:
                if self._found(f, e, quarantine) is not None:
                    broken.add(rel)
                continue
            rows[rel] = list(zip(t.column("trial_id").to_pylist(), t.column("status").to_pylist(), strict=True))
        for table in ("samples", "responses", "systems"):
            for f in map(Path, self._files(table, sweep)):  # listed now: after the trials' companions moved
                try:
                    pq.read_metadata(f)
                except _UNREADABLE as e:
                    if self._found(f, e, quarantine) is not None and table in TRIAL_TABLES:
                        broken.add(f.relative_to(self.path / table))
        # the precedence: a loose file (damaged or not) decides its trial; then the latest segment
        done: set[str] = set()
        for loose, segs in _split(listed).values():
            seen = {rel.name[: -len(".parquet")] for rel in loose}
            for rel in loose:
                if rel not in broken:
                    done.update(tid for tid, status in rows.get(rel, ()) if status in statuses)
            for rel in reversed(segs):
                pairs = rows.get(rel, [])
                for tid, status in pairs:
                    key = _safe(tid)
                    if key not in seen and rel not in broken and status in statuses:
                        done.add(tid)
                seen.update(_safe(tid) for tid, _ in pairs)
        return done


def check(path: str | Path, quarantine: bool = False) -> list[Damaged]:
    """Read every file of the store at `path` in full; the files that cannot be read (moved aside
    with `quarantine`, with their trial's other files). Raises FileNotFoundError where `path`
    holds no store."""
    store = Store(path, log_damaged=False)
    _require_store(store)
    for table in TABLES:
        for f in map(Path, store._files(table)):  # listed now: after an earlier table's companions moved
            try:
                pq.read_table(f, partitioning=None)
            except _UNREADABLE as e:
                store._found(f, e, quarantine)
    return store.damaged


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
    damaged: list[Damaged] = field(default_factory=list)  # files that could not be read: left as they are

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
        if self.damaged:
            out.append(f"{len(self.damaged)} damaged file(s) skipped, left in place "
                       f"(`python -m energyray store check --store {self.path} --quarantine` moves them aside):")
            out += [f"  {d.line()}" for d in self.damaged]
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
    store = Store(path, strict=False, log_damaged=False)
    _require_store(store)
    summary = UpgradeSummary(store.path, damaged=store.damaged)
    for table in TABLES:
        target = schema.arrow_schema(table)
        declared = {f.name: f.type for f in target}
        for f in store._files(table):
            summary.files += 1
            try:
                t = pq.read_table(f, partitioning=None)
            except _UNREADABLE as e:
                store._found(Path(f), e, quarantine=False)
                continue
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
            _write_atomic(new, Path(f), store.path)
            summary.rewritten += 1
    return summary


# -- compaction: a partition's loose files and older segments into one segment -----------------
@dataclass
class TableCompaction:
    """What `compact` did to one table."""

    merged: int = 0  # input files merged (loose files and older segments)
    segments_in: int = 0  # of which segments
    trials: int = 0  # trials in the segments written
    segments: int = 0  # segments written
    bytes_before: int = 0  # size of the merged inputs
    bytes_after: int = 0  # size of the segments written
    left: list[Path] = field(default_factory=list)  # merged, but changed while compacting: left, and they win
    kept_loose: int = 0  # samples/responses files of trials with no trials file yet: not merged


@dataclass
class CompactSummary:
    """What `compact` did, per table, and the damaged files it moved aside."""

    path: Path
    tables: dict[str, TableCompaction] = field(default_factory=lambda: {t: TableCompaction() for t in TRIAL_TABLES})
    partitions: int = 0  # partitions compacted
    damaged: list[Damaged] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.path}: {self.partitions} partition(s) compacted"
               + ("" if self.partitions else ": nothing to merge, already compact")]
        for table, c in self.tables.items():
            if not (c.merged or c.left or c.kept_loose):
                continue
            out.append(f"  {table}: {c.merged} file(s) merged ({c.merged - c.segments_in} loose, {c.segments_in} "
                       f"segment(s)), {c.trials} trial(s) in {c.segments} segment(s) written; "
                       f"{_size(c.bytes_before)} -> {_size(c.bytes_after)}; {len(c.left)} file(s) left")
            out += [f"    left (changed while compacting; it wins over the segment): {p}" for p in c.left]
            if c.kept_loose:
                out.append(f"    {c.kept_loose} file(s) kept loose: their trial has no trials file (being written, or "
                           "cut short: its rerun replaces them)")
        if self.damaged:
            out.append(f"{len(self.damaged)} damaged file(s) skipped:")
            out += [f"  {d.line()}" for d in self.damaged]
        return out


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _stat(p: Path) -> tuple[int, int, int]:
    st = p.stat()
    return st.st_size, st.st_mtime_ns, st.st_ino


def _declared(table: str, t: pa.Table, key: str | None = None) -> pa.Table:
    """A file's rows in the declared schema (an older file's as `upgrade` writes them); a loose
    file's rows without a trial id get the one its name holds (`key`)."""
    target = schema.arrow_schema(table)
    if not t.schema.remove_metadata().equals(target):
        rows = _upgrade_rows(table, t, UpgradeSummary(Path()))
        t = to_arrow(table, [{k: v for k, v in r.items() if k not in PARTITIONS} for r in rows], strict=False)
    t = t.replace_schema_metadata(None)
    if key is not None and t.column("trial_id").null_count:
        i = t.column_names.index("trial_id")
        t = t.set_column(i, target.field(i), pc.fill_null(t.column(i), key))
    return t


def _segment_name(after: Iterable[str]) -> str:
    """A new segment's name, later than every name in `after` (a clock set back cannot make it lose)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    last = max((n for n in after if _is_segment(n)), default="")
    stamp = now.strftime("%Y%m%dT%H%M%S%f")
    if last and stamp <= last[len(SEGMENT_PREFIX):len(SEGMENT_PREFIX) + len(stamp)]:
        prior = datetime.datetime.strptime(last[len(SEGMENT_PREFIX):len(SEGMENT_PREFIX) + len(stamp)], "%Y%m%dT%H%M%S%f")
        stamp = (prior + datetime.timedelta(microseconds=1)).strftime("%Y%m%dT%H%M%S%f")
    return f"{SEGMENT_PREFIX}{stamp}-{os.urandom(4).hex()}.parquet"


def _compact_partition(store: Store, rel: Path, summary: CompactSummary, skip: set[Path]) -> bool:
    """Compact `<table>/<rel>` for the three trial tables into segments of one name. False where a
    damaged file was moved aside meanwhile (the caller lists the partition again)."""
    listing: dict[str, tuple[list[Path], list[Path]]] = {}
    for table in TRIAL_TABLES:  # trials first: a trial's trials file is written last, so its others are listed too
        folder = store.path / table / rel
        names = [e.name for e in os.scandir(folder)] if folder.is_dir() else []
        paths = [folder / n for n in sorted(names) if _is_data(n) and folder / n not in skip]
        listing[table] = _split(paths).get(folder, ([], []))
    trials_loose = {p.name[: -len(".parquet")] for p in listing["trials"][0]}
    if not trials_loose and all(len(segs) <= 1 for _, segs in listing.values()):
        return True  # compact already
    # read every input first: a damaged one is moved aside (with its companions) before anything is written
    stats: dict[Path, tuple[int, int, int]] = {}
    loose_keys: dict[str, list[str]] = {}
    loose_tables: dict[str, list[pa.Table]] = {}  # the loose files' rows, merged in blocks: one small table
    seg_tables: dict[str, list[pa.Table]] = {}    # per file costs tens of kB of Arrow buffers
    for table in TRIAL_TABLES:
        loose, segs = listing[table]
        loose_keys[table], loose_tables[table], seg_tables[table] = [], [], []
        pending: list[pa.Table] = []
        for p in loose + segs:
            key = None if _is_segment(p.name) else p.name[: -len(".parquet")]
            if key is not None and table != "trials" and key not in trials_loose:
                continue  # no trials file: kept loose (counted below)
            try:
                st = _stat(p)
                with pq.ParquetFile(p) as pf:  # cheaper per small file than read_table's dataset
                    t = _declared(table, pf.read(), key)
            except _UNREADABLE as e:
                d = store._found(p, e, quarantine=True)
                if d is None or d.moved_to is not None:
                    return False
                skip.add(p)  # left in place (a read-only store): named in `damaged`, not merged
                continue
            stats[p] = st
            if key is None:
                seg_tables[table].append(t)
                continue
            loose_keys[table].append(key)
            pending.append(t)
            if len(pending) >= 512:
                loose_tables[table].append(pa.concat_tables(pending).combine_chunks())
                pending = []
        if pending:
            loose_tables[table].append(pa.concat_tables(pending).combine_chunks())
    trials_held: set[str] = set()
    for t in seg_tables["trials"]:
        trials_held.update(pc.unique(_keys(t.column("trial_id"))).to_pylist())
    name = _segment_name(p.name for _, segs in listing.values() for p in segs)
    written: list[Path] = []
    for table in TRIAL_TABLES:
        c = summary.tables[table]
        keys = [_keys(t.column("trial_id")) for t in seg_tables[table]]
        # every loose file read is of a trial with a loose trials file: the winner, merged whole
        _, masks = _winners(table, set(loose_keys[table]), keys, trials_loose, trials_held)
        parts = loose_tables[table] + [t.filter(m) for t, m in zip(seg_tables[table], masks, strict=True)]
        merged = [p for p in listing[table][0] + listing[table][1] if p in stats]
        c.merged += len(merged)
        c.segments_in += sum(1 for p in merged if _is_segment(p.name))
        c.bytes_before += sum(stats[p][0] for p in merged)
        c.kept_loose += sum(1 for p in listing[table][0] if p.name[: -len(".parquet")] not in trials_loose)
        rows = pa.concat_tables(parts) if parts else None
        if rows is None or rows.num_rows == 0:
            continue
        target = store.path / table / rel / name
        _write_atomic(rows, target, store.path)
        written.append(target)
        c.segments += 1
        c.trials += len(pc.unique(rows.column("trial_id")))
        c.bytes_after += target.stat().st_size
    # every new segment is in place: the inputs go (older segments lose to it anyway, should this stop)
    for table in TRIAL_TABLES:
        for p in listing[table][1]:
            if p in stats:
                p.unlink(missing_ok=True)
    left_trials: set[str] = set()
    for table in TRIAL_TABLES:
        for p in listing[table][0]:
            key = p.name[: -len(".parquet")]
            if p not in stats:
                continue
            try:
                unchanged = key not in left_trials and _stat(p) == stats[p]
            except FileNotFoundError:
                continue
            if unchanged:
                p.unlink(missing_ok=True)
            else:  # rewritten meanwhile (a rerun): it wins, and so do its trial's other loose files
                summary.tables[table].left.append(p)
                if table == "trials":
                    left_trials.add(key)
    summary.partitions += 1
    return True


def compact(path: str | Path, sweep: str | None = None) -> CompactSummary:
    """`Store(path).compact(sweep)`, its damaged files not logged (the summary names them)."""
    return Store(path, log_damaged=False).compact(sweep)


def _require_store(store: Store) -> None:
    if not store.path.is_dir() or not any((store.path / t).is_dir() for t in TABLES):
        raise FileNotFoundError(f"no energyray store at {store.path} (expected {', '.join(TABLES)} folders): "
                                "give --store the folder a sweep's store.path names")


def store_main(argv: list[str]) -> int:
    """`python -m energyray store upgrade|check|compact --store PATH`."""
    ap = argparse.ArgumentParser(prog="python -m energyray store", description="Maintain an energyray store.")
    sub = ap.add_subparsers(dest="command", required=True)
    up = sub.add_parser("upgrade", help="rewrite an older store's files to the declared schema (in place, atomically; "
                                        "safe to run twice)")
    up.add_argument("--store", required=True, help="the store's folder (store.path of the sweep)")
    ck = sub.add_parser("check", help="read every file in full and list those that cannot be read (exit 1 if any "
                                      "is left in place)")
    ck.add_argument("--store", required=True, help="the store's folder (store.path of the sweep)")
    ck.add_argument("--quarantine", action="store_true", help=f"move damaged files (and their trial's other files) "
                                                              f"to <store>/{QUARANTINE}/; a rerun of the sweep runs "
                                                              "their trials again")
    cp = sub.add_parser("compact", help="merge each partition's per-trial files into one segment file, so that "
                                        "a large store reads fast (atomically; safe to run twice)")
    cp.add_argument("--store", required=True, help="the store's folder (store.path of the sweep)")
    cp.add_argument("--sweep", help="compact only this sweep (default: all)")
    args = ap.parse_args(argv)
    try:
        if args.command == "check":
            damaged = check(args.store, args.quarantine)
        elif args.command == "compact":
            compacted = compact(args.store, args.sweep)
        else:
            summary = upgrade(args.store)
    except (FileNotFoundError, StoreWriteError) as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        return 2
    if args.command == "upgrade":
        print("\n".join(summary.lines()))
        return 0
    if args.command == "compact":
        print("\n".join(compacted.lines()))
        return 0
    if not damaged:
        print(f"{args.store}: every file reads")
        return 0
    print(f"{args.store}: {len(damaged)} damaged file(s)" + ("" if args.quarantine else
          f" (`--quarantine` moves them to {Path(args.store) / QUARANTINE}; a rerun of the sweep also does)"))
    print("\n".join(f"  {d.line()}" for d in damaged))
    return 0 if all(d.moved_to for d in damaged) else 1
