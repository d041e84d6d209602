"""Published figures (papers, leaderboards, earlier studies) read from CSV or Parquet files, to be
drawn beside the store's measurements and marked as external.

One row per figure: model, hardware, precision, batch_size, metric, value, unit, source, date
(required columns; precision and batch_size may be empty when the source does not say), and
optionally task, backend, notes, url. `metric` is the store column the figure sits beside
(j_per_token, j_per_request, tokens_per_s, ...: see METRICS); `value` in `unit` is converted to
that column's unit. The format, with examples: conf/external/README.md.
"""

from __future__ import annotations

import csv
import difflib
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

REQUIRED = ("model", "hardware", "precision", "batch_size", "metric", "value", "unit", "source", "date")
OPTIONAL = ("task", "backend", "notes", "url")
# Columns that may be empty: the source does not say (unknown is null, never guessed).
MAY_BE_EMPTY = {"precision", "batch_size", *OPTIONAL}

# metric (a store column) -> (its unit, {accepted unit spelling: factor to that unit}).
# Spellings compare case-insensitively, spaces removed.
_E = {"J": 1.0, "kJ": 1e3, "MJ": 1e6, "Wh": 3600.0, "kWh": 3.6e6}
_S = {"s": 1.0, "ms": 1e-3}
METRICS: dict[str, tuple[str, dict[str, float]]] = {
    "energy_j": ("J", _E),
    "j_per_token": ("J/token", {"J/token": 1.0, "mJ/token": 1e-3}),
    "j_per_request": ("J/request", {f"{u}/request": f for u, f in _E.items()}
                      | {f"{u}/response": f for u, f in _E.items()}),
    "j_per_word": ("J/word", {"J/word": 1.0}),
    "j_per_correct": ("J/correct answer", {"J/correct answer": 1.0, "J/correct": 1.0}),
    "j_per_image": ("J/image", {f"{u}/image": f for u, f in _E.items()}),
    "tokens_per_s": ("tokens/s", {"tokens/s": 1.0, "token/s": 1.0}),
    "ttft_s": ("s", _S),
    "tpot_s": ("s", {**_S, "s/token": 1.0, "ms/token": 1e-3}),
    "latency_request_s_mean": ("s", _S),
    "duration_s": ("s", _S),
    "avg_power_w": ("W", {"W": 1.0, "kW": 1e3}),
    "accuracy": ("fraction", {"fraction": 1.0, "%": 0.01}),
    "co2_g": ("gCO2e", {"gCO2e": 1.0, "g": 1.0, "kgCO2e": 1e3, "kg": 1e3}),
    "co2_g_per_request": ("gCO2e/request", {"gCO2e/request": 1.0, "g/request": 1.0,
                                            "kgCO2e/request": 1e3, "kg/request": 1e3}),
    "cost_usd_per_request": ("USD/request", {"USD/request": 1.0}),
    "cost_usd_per_1k_tokens": ("USD/1k tokens", {"USD/1k tokens": 1.0, "USD/1M tokens": 1e-3}),
}
# Metrics that cannot be negative (all of them today).
_NON_NEGATIVE = set(METRICS)
_DATE = re.compile(r"^\d{4}(-\d{2}(-\d{2})?)?$")  # YYYY, YYYY-MM or YYYY-MM-DD: as precise as the source
COLUMNS = ["kind", "model", "hardware", "precision", "batch_size", "task", "backend", "metric", "value",
           "unit", "reported_value", "reported_unit", "source", "date", "url", "notes", "file", "line"]
README = "conf/external/README.md"


class ExternalFormatError(ValueError):
    """A file of external figures breaks the format: the message names file, line and fix."""


def _key(unit: str) -> str:
    return unit.replace(" ", "").lower()


def _rows(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """(header, [(line number, row)]) of a CSV (lines starting with # are comments) or Parquet file."""
    if path.suffix.lower() == ".parquet":
        try:
            frame = pd.read_parquet(path)
        except Exception as e:  # noqa: BLE001  any unreadable file gets the same one-line message
            raise ExternalFormatError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from e
        names = [str(c) for c in frame.columns]
        return names, [(i + 1, {c: "" if _isnull(v) else str(v) for c, v in zip(names, values, strict=True)})
                       for i, values in enumerate(frame.itertuples(index=False, name=None))]
    if path.suffix.lower() != ".csv":
        raise ExternalFormatError(f"{path}: external figures are read from .csv or .parquet files")
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header: list[str] | None = None
        rows: list[tuple[int, dict[str, str]]] = []
        for cells in reader:
            if not cells or not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if header is None:
                header = [c.strip() for c in cells]
                continue
            if len(cells) != len(header):
                raise ExternalFormatError(f"{path}:{reader.line_num}: {len(cells)} cells for {len(header)} columns "
                                          "(quote a value that holds a comma)")
            rows.append((reader.line_num, {h: c.strip() for h, c in zip(header, cells, strict=True)}))
    if header is None:
        raise ExternalFormatError(f"{path}: no header line (columns: {', '.join(REQUIRED)}; see {README})")
    return header, rows


def _isnull(value: object) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _figure(path: Path, line: int, row: dict[str, str]) -> dict[str, object]:
    where = f"{path}:{line}" if path.suffix.lower() == ".csv" else f"{path}: row {line}"
    for col in REQUIRED:
        if not row.get(col, "") and col not in MAY_BE_EMPTY:
            raise ExternalFormatError(f"{where}: empty {col} (every figure needs model, hardware, metric, value, "
                                      "unit, source and date)")
    metric = row["metric"]
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ExternalFormatError(f"{where}: unknown metric {metric!r}: {hint}known: {', '.join(METRICS)}")
    unit, factors = METRICS[metric]
    accepted = {_key(u): f for u, f in factors.items()}
    if _key(row["unit"]) not in accepted:
        raise ExternalFormatError(f"{where}: unit {row['unit']!r} does not fit {metric}: use one of "
                                  f"{', '.join(factors)}")
    try:
        reported = float(row["value"])
    except ValueError:
        raise ExternalFormatError(f"{where}: value {row['value']!r} is not a number (write it plainly, "
                                  "e.g. 0.12; leave an unknown figure out)") from None
    if not math.isfinite(reported) or (metric in _NON_NEGATIVE and reported < 0):
        raise ExternalFormatError(f"{where}: value {row['value']!r} is not a finite, non-negative number")
    batch: int | None = None
    if row.get("batch_size", ""):
        text = row["batch_size"]
        try:
            as_float = float(text)
        except ValueError:
            as_float = float("nan")
        if not (as_float.is_integer() and as_float >= 1):
            raise ExternalFormatError(f"{where}: batch_size {text!r} is not a positive whole number "
                                      "(leave it empty when the source does not say)")
        batch = int(as_float)
    if not _DATE.match(row["date"]):
        raise ExternalFormatError(f"{where}: date {row['date']!r}: write the publication date as YYYY-MM-DD "
                                  "(or YYYY-MM, YYYY when the source gives no more)")
    url = row.get("url", "")
    if url and not url.startswith(("http://", "https://")):
        raise ExternalFormatError(f"{where}: url {url!r} is not an http(s) address (leave it empty when there is none)")
    return {
        "kind": "external", "model": row["model"], "hardware": row["hardware"],
        "precision": row.get("precision") or None, "batch_size": batch,
        "task": row.get("task") or None, "backend": row.get("backend") or None,
        "metric": metric, "value": reported * accepted[_key(row["unit"])], "unit": unit,
        "reported_value": reported, "reported_unit": row["unit"],
        "source": row["source"], "date": row["date"], "url": url or None,
        "notes": row.get("notes") or None, "file": str(path), "line": line,
    }


def load(paths: str | Path | Iterable[str | Path]) -> pd.DataFrame:
    """Every figure of these files (a directory: its *.csv and *.parquet), one row each, in the
    store's units (COLUMNS; kind = "external"). Raises ExternalFormatError on the first bad row."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(f for f in p.iterdir() if f.suffix.lower() in (".csv", ".parquet"))
        elif p.exists():
            files.append(p)
        else:
            raise ExternalFormatError(f"{p}: no such file (external figures: a .csv/.parquet file or a directory)")
    figures: list[dict[str, object]] = []
    for path in files:
        header, rows = _rows(path)
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise ExternalFormatError(f"{path}: missing column{'s' if len(missing) > 1 else ''} "
                                      f"{', '.join(missing)} (the format: {README})")
        unknown = [c for c in header if c not in REQUIRED and c not in OPTIONAL]
        if unknown:
            raise ExternalFormatError(f"{path}: unknown column{'s' if len(unknown) > 1 else ''} {', '.join(unknown)} "
                                      f"(allowed: {', '.join((*REQUIRED, *OPTIONAL))}; put anything else in notes)")
        figures += [_figure(path, line, row) for line, row in rows]
    frame = pd.DataFrame(figures, columns=COLUMNS)
    frame["batch_size"] = frame["batch_size"].astype("Int64")
    return frame


def wide(figures: pd.DataFrame, keys: Sequence[str] = ("model", "hardware", "precision", "batch_size", "task",
                                                       "backend", "source", "date", "url")) -> pd.DataFrame:
    """One row per configuration and source, one column per metric (the store's layout, to draw
    beside config_stats); notes of the merged figures joined with "; "."""
    if figures.empty:
        return pd.DataFrame(columns=[*keys, "kind", "notes"])
    keys = list(keys)
    index = figures[keys].astype("string").fillna("")
    table = figures.assign(**{k: index[k] for k in keys})
    values = table.pivot_table(index=keys, columns="metric", values="value", aggfunc="first").reset_index()
    values.columns.name = None
    notes = (table.groupby(keys, dropna=False)["notes"]
             .agg(lambda s: "; ".join(dict.fromkeys(str(n) for n in s if isinstance(n, str) and n)) or None)
             .reset_index())
    out = values.merge(notes, on=keys, how="left")
    for k in keys:  # back to nulls where the source said nothing
        out[k] = out[k].replace("", None)
    if "batch_size" in keys:
        out["batch_size"] = pd.to_numeric(out["batch_size"]).astype("Int64")
    out.insert(0, "kind", "external")
    return out
