"""The Parquet store: one file per trial per table, written atomically by the driver.

Layout: `<store>/<table>/sweep=<name>/hardware=<name>/<trial_id>.parquet` for the tables
`trials` (one row per trial repetition), `samples` (the time series) and `systems` (one
row per node and device). Files are written to a dot-prefixed temp name and renamed, so a
reader never sees a partial file. Partition columns are not repeated inside files. Reads
unify schemas across files (newer files may add columns).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

TABLES = ("trials", "samples", "systems")
PARTITIONS = ("sweep", "hardware")
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _safe(value: Any) -> str:
    return _SAFE.sub("_", str(value)) or "_"


class Store:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def file(self, table: str, sweep: str, hardware: str, name: str) -> Path:
        return self.path / table / f"sweep={_safe(sweep)}" / f"hardware={_safe(hardware)}" / f"{_safe(name)}.parquet"

    def write(self, table: str, rows: list[dict[str, Any]], sweep: str, hardware: str, name: str) -> Path | None:
        """Write rows as one file, atomically (temp file + os.replace). Returns the path."""
        if table not in TABLES:
            raise ValueError(f"unknown table {table!r}")
        if not rows:
            return None
        frame = pd.DataFrame([{k: v for k, v in r.items() if k not in PARTITIONS} for r in rows])
        target = self.file(table, sweep, hardware, name)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        os.replace(tmp, target)
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
        """The whole table as a DataFrame, partition columns included, schemas unified."""
        files = self._files(table)
        if not files:
            return pd.DataFrame()
        schemas = [pq.read_schema(f) for f in files]
        part = ds.partitioning(pa.schema([(p, pa.string()) for p in PARTITIONS]), flavor="hive")
        schema = pa.unify_schemas(schemas + [pa.schema([(p, pa.string()) for p in PARTITIONS])],
                                  promote_options="permissive")
        dataset = ds.dataset(files, schema=schema, format="parquet", partitioning=part,
                             partition_base_dir=str(self.path / table))
        cols = None if columns is None else [c for c in columns if c in schema.names]
        return dataset.to_table(columns=cols).to_pandas()

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
