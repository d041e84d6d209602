"""Summaries of a store: the end-of-sweep table and `python -m energyray report`.

Reads the store only, and never changes it: a damaged file is skipped and named (the next run
of its sweep moves it aside). A configuration is a grid point: its sweep and every axis of
`energyray.grid.AXES`. Per configuration: trials ok of stored, mean J/token and tokens/s with
their spread, accuracy where the trials were scored, and whether the energy was measured or
estimated, and over what.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pandas as pd
from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from energyray.grid import AXES
from energyray.store import QUARANTINE, Damaged, Store, _safe

# The sweep is part of a configuration: a sweep also sets what its axes do not (generation and
# measurement settings, the tasks' prompts), and trial ids hash it, so one grid point measured
# in two sweeps is two configurations. Within one sweep it is constant and goes to the title.
CONFIG_KEYS: tuple[str, ...] = ("sweep", *AXES)

# energy_source values read from a device (the rest are a model's estimate or nothing)
MEASURED_SOURCES = frozenset({"counter", "counter_apportioned", "polled", "pdu", "pdu_counter_apportioned"})

_HEADERS = {"sweep": "sweep", "model": "model", "backend": "backend", "weights": "weights",
            "precision": "precision", "batch_size": "batch", "task": "task", "prompt_variant": "prompt",
            "hardware": "hw", "max_new_tokens": "max tok", "requests": "requests", "prompt_tokens": "prompt tok",
            "chat_template": "template", "inference_steps": "steps", "resolution": "px",
            "guidance_scale": "guidance"}
# Axes added later, and what a row written before them (no value) means: chat_template as auto,
# requests as one batch (batch_size); trial ids leave them out at these values, so such rows are
# the same configuration as new ones.
_LATER_DEFAULTS = {"chat_template": "auto"}
# what each energy label means, keyed by a text the label contains
_FOOTNOTES = {
    "measured": "measured: read from the device over the trial's window, by an energy counter or "
                "polled power (NVML for a GPU, RAPL for a CPU, a PDU at the wall).",
    "estimated (cpu+ram": "estimated (cpu+ram): not measured; CodeCarbon's model of CPU and RAM "
                          "power from their load.",
    "flops": "estimated (flops): not measured; an API model's output tokens x FLOPs per token "
             "at an assumed GPU utilisation and power.",
    "not measured": "not measured: no energy for these trials; the energy_reason column says why.",
}


def _norm(v: Any) -> Any:
    """A key value with every kind of null as None and whole floats as ints (64.0 -> 64)."""
    if type(v) is str or type(v) is int:  # most values: returned as they are, without the checks below
        return v
    if v is None:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()  # numpy scalar
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    try:
        if pd.isna(v):
            return None
    except (TypeError, ValueError):
        pass
    return v


def _order(key: tuple[Any, ...]) -> tuple[Any, ...]:
    # nulls last, numbers before text, numbers by value (batch 2 before 16)
    return tuple((v is None, not isinstance(v, (int, float)), v if isinstance(v, (int, float)) else str(v))
                 for v in key)


def configurations(trials: pd.DataFrame) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The trials grouped by configuration (CONFIG_KEYS), sorted; each key as a dict.

    A key column the rows lack (stores written before an axis existed) counts as null, and all
    nulls of a column group together: None, NaN and a missing column are the same value.
    """
    if trials.empty:
        return []
    keyed = trials.reindex(columns=list(CONFIG_KEYS)).astype(object)
    for axis, default in _LATER_DEFAULTS.items():
        keyed[axis] = [default if _norm(v) is None else v for v in keyed[axis]]
    keyed["requests"] = [b if _norm(r) is None else r for r, b in zip(keyed["requests"], keyed["batch_size"],
                                                                      strict=True)]
    keys = [tuple(_norm(v) for v in row) for row in keyed.itertuples(index=False, name=None)]
    positions: dict[tuple[Any, ...], list[int]] = {}
    for i, k in enumerate(keys):
        positions.setdefault(k, []).append(i)
    return [(dict(zip(CONFIG_KEYS, k, strict=True)), trials.iloc[positions[k]])
            for k in sorted(positions, key=_order)]


def _scope(scope: Any) -> str | None:
    if _norm(scope) is None:
        return None
    s = str(scope).split(":")[0]  # wall:<host>:<outlets> -> wall
    return {"cpu_package+dram": "cpu+dram"}.get(s, s)


def energy_label(good: pd.DataFrame) -> str:
    """'measured (gpu)', 'estimated (cpu+ram)', 'not measured', or several joined by ' + '."""
    seen: dict[str, set[str]] = {}
    for _, r in good.iterrows():
        source, scope = _norm(r.get("energy_source")), _scope(r.get("energy_scope"))
        if source in MEASURED_SOURCES:
            kind = "measured"
        elif source == "estimated":
            kind = "estimated"
        elif _norm(r.get("energy_estimated_j")) is not None:
            kind, scope = "estimated", "flops"
        else:
            kind, scope = "not measured", None
        seen.setdefault(kind, set()).update({scope} if scope else set())
    parts = [f"{k} ({', '.join(sorted(seen[k]))})" if seen[k] else k
             for k in ("measured", "estimated", "not measured") if k in seen]
    return " + ".join(parts) or "-"


# the columns summarize reads
_READ = ("status", "error", "j_per_token", "tokens_per_s", "output_tokens", "energy_source", "energy_scope",
         "energy_estimated_j", "accuracy", "scored_requests", "correct_requests")


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: CONFIG_KEYS, counts, mean/std of J/token and tokens/s, energy.

    `energy` is the label (measured/estimated and over what); `energy_source` the raw sources
    with their scopes. Where no trial has a measured or CodeCarbon J/token but an API model has
    a FLOPs estimate, J/token is that estimate (and `energy` says so).
    """
    rows = []
    for key, g in configurations(trials):
        # columns an older store or an API row lacks read as null
        g = g.reindex(columns=list(dict.fromkeys([*g.columns, *_READ])))
        good, bad = g[g["status"] == "ok"], g[g["status"] != "ok"]
        jpt = pd.to_numeric(good["j_per_token"], errors="coerce").dropna()
        if jpt.empty:
            est = pd.to_numeric(good["energy_estimated_j"], errors="coerce")
            jpt = (est / pd.to_numeric(good["output_tokens"], errors="coerce")).dropna()
        tps = pd.to_numeric(good["tokens_per_s"], errors="coerce").dropna()
        sources = sorted({f"{s} ({_scope(c)})" if _scope(c) else str(s)
                          for s, c in zip(good["energy_source"], good["energy_scope"], strict=True)
                          if _norm(s) is not None})
        errors = Counter(_first_line(e, s) for e, s in zip(bad["error"], bad["status"], strict=True))
        scored = pd.to_numeric(good["scored_requests"], errors="coerce").fillna(0)
        correct = pd.to_numeric(good["correct_requests"], errors="coerce")
        # pooled over the trials: correct / scored requests; rows without the counts, their mean
        if scored.sum() > 0:
            accuracy = float(correct[scored > 0].sum() / scored.sum())
        else:
            acc = pd.to_numeric(good["accuracy"], errors="coerce").dropna()
            accuracy = float(acc.mean()) if len(acc) else math.nan
        rows.append({
            **key, "trials": len(g), "ok": len(good), "failed": len(bad),
            "j_per_token": jpt.mean() if len(jpt) else math.nan,
            "j_per_token_std": jpt.std() if len(jpt) > 1 else math.nan,
            "tokens_per_s": tps.mean() if len(tps) else math.nan,
            "tokens_per_s_std": tps.std() if len(tps) > 1 else math.nan,
            "accuracy": accuracy,
            "energy": energy_label(good) if len(good) else "-",
            "energy_source": ", ".join(sources) or "-",
            "errors": dict(errors),
        })
    return pd.DataFrame(rows)


def _first_line(error: Any, status: Any) -> str:
    """'failed: ValueError: ...': the status and the error's first line (a traceback follows it)."""
    text = str(error).strip() if _norm(error) is not None else ""
    return f"{_norm(status) or 'failed'}: {text.splitlines()[0] if text else 'no error recorded'}"


def _num(v: Any) -> str:
    if _norm(v) is None:
        return "-"
    v = float(v)
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _with_spread(mean: Any, std: Any) -> str:
    """'0.0682 ±4%': the mean and the standard deviation over repeats relative to it."""
    text = _num(mean)
    if _norm(std) is None or _norm(mean) is None:
        return text
    return f"{text} ±{100 * std / mean:.0f}%" if mean else f"{text} ±{_num(std)}"


def _value(v: Any) -> str:
    v = _norm(v)
    return "-" if v is None else str(v)


def _at_default(axis: str, row: Any) -> bool:
    """An axis at the value that adds nothing to a title: template auto, requests one batch."""
    if axis == "chat_template":
        return bool(_norm(row[axis]) == "auto")
    if axis == "requests":
        return bool(_norm(row[axis]) == _norm(row["batch_size"]))
    return False


def _constant(axis: str, v: Any) -> str:
    """How a value all rows share reads in the title: bare for the identity axes, named otherwise."""
    if axis in ("model", "backend", "hardware", "precision"):
        return str(v)
    if axis == "sweep":
        return f"sweep {v}"
    if axis == "max_new_tokens":
        return f"max {v} new tokens"
    return f"{_HEADERS[axis]} {v}"


def _table(summary: pd.DataFrame, axes: list[str], spread_cols: bool, energy_col: bool, stacked: bool,
           accuracy_col: bool = False) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    if stacked:  # every varying axis in one wrapping column: nothing cut, however many there are
        table.add_column(" · ".join(_HEADERS[a] for a in axes), overflow="fold", ratio=2)
    rows = []
    for _, r in summary.iterrows():
        cells = [] if stacked else [_value(r[a]) for a in axes]
        cells += [f"{r['ok']}/{r['trials']}",
                  _with_spread(r["j_per_token"], r["j_per_token_std"]) if spread_cols else _num(r["j_per_token"]),
                  _with_spread(r["tokens_per_s"], r["tokens_per_s_std"]) if spread_cols else _num(r["tokens_per_s"])]
        if accuracy_col:
            cells.append("-" if _norm(r["accuracy"]) is None else f"{100 * r['accuracy']:.0f}%")
        rows.append(cells)
    numbers = ["ok", "J/token", "tokens/s"] + (["accuracy"] if accuracy_col else [])
    fixed = ([] if stacked else [_HEADERS[a] for a in axes]) + numbers
    for i, header in enumerate(fixed):
        # a fixed width: rich never shrinks (and so never cuts) these; the rest wraps
        width = max(len(header), *(len(c[i]) for c in rows))
        right = i >= len(fixed) - len(numbers) or (not stacked and axes[i] in (
            "batch_size", "max_new_tokens", "requests", "prompt_tokens"))
        table.add_column(header, width=width, no_wrap=True, justify="right" if right else "left")
    if energy_col:
        table.add_column("energy")
    for (_, r), cells in zip(summary.iterrows(), rows, strict=True):
        if stacked:
            cells = [" · ".join(_value(r[a]) for a in axes), *cells]
        if energy_col:
            cells.append(str(r["energy"]))
        table.add_row(*cells)
    return table


def print_summary(trials: pd.DataFrame, console: Console | None = None, title: str | None = None) -> None:
    """The table of configurations, fitted to the console's width.

    Columns are the axes that vary among these rows; the constant ones (and the energy label
    when all rows share it) go to the title. Failures follow the table, one line per distinct
    error with its count, then a footnote on measured and estimated energy.
    """
    console = console or _default_console()
    summary = summarize(trials)
    if summary.empty:
        console.print("No trials.")
        return
    varying = [k for k in CONFIG_KEYS if len({_norm(v) for v in summary[k]}) > 1]
    title_order = ["sweep", "model", "backend", "hardware", "precision"]
    title_order += [k for k in CONFIG_KEYS if k not in title_order]
    first = summary.iloc[0]
    constant = [_constant(k, _norm(first[k])) for k in title_order
                if k not in varying and _norm(first[k]) is not None and not _at_default(k, first)]
    labels = sorted(set(summary["energy"]) - {"-"})
    energy_col = len(set(summary["energy"])) > 1
    head = [title] if title else []
    if not energy_col and labels:
        constant.append(f"energy {labels[0]}")
    full_title = " · ".join(head + constant) or "energyray summary"
    spread = bool(summary["j_per_token_std"].notna().any() or summary["tokens_per_s_std"].notna().any())
    accuracy = bool(summary["accuracy"].notna().any())

    # the axes as columns if they fit beside the numbers and the energy label wrapped at its
    # longest word; else stacked in one column
    need = Measurement.get(console, console.options.update(max_width=10_000), _table(summary, varying, spread, False, False, accuracy)).maximum
    if energy_col:
        need += 3 + max(len(word) for label in summary["energy"] for word in str(label).split())
    table = _table(summary, varying, spread, energy_col, stacked=need > console.width, accuracy_col=accuracy)
    console.print(full_title, style="bold", markup=False, highlight=False)
    console.print(table)

    errors: Counter[str] = Counter()
    for e in summary["errors"]:
        errors.update(e)
    for text, n in sorted(errors.items(), key=lambda kv: (-kv[1], kv[0])):
        line = f"{n} x {text}"
        limit = console.width - 2
        console.print(line if len(line) <= limit else line[: limit - 1] + "…", markup=False, highlight=False)
    notes = []
    if spread:
        notes.append("±: standard deviation over the repeats, relative to the mean.")
    if accuracy:
        notes.append("accuracy: requests scored correct of those scored, over the configuration's trials; "
                     "-: not scored (random weights, or no gold answers: accuracy_reason says which).")
    notes += [note for key, note in _FOOTNOTES.items() if any(key in label for label in labels)]
    for note in notes:
        console.print(note, style="dim", markup=False, highlight=False)


def print_sweep_summary(store: Store, sweep: str, console: Console | None = None) -> None:
    """The table of every trial of `sweep` in the store: the whole sweep, not only this run,
    so a resumed sweep counts the repeats that earlier runs stored."""
    console = console or _default_console()
    trials = store.read("trials", sweep=sweep)  # a damaged file is skipped, and the store logs it
    if not trials.empty and "sweep" in trials:
        trials = trials[trials["sweep"].astype(str).isin({sweep, _safe(sweep)})]
    if trials.empty:
        console.print(f"No trials of sweep {sweep!r} in {store.path}.")
        return
    print_summary(trials, console)


def _default_console() -> Console:
    console = Console()
    return console if console.is_terminal else Console(width=100)


def skipped_lines(damaged: list[Damaged], store: Path) -> list[str]:
    """What a reader skipped: one line per damaged file (path: reason), then what to do."""
    if not damaged:
        return []
    return [f"skipped {len(damaged)} damaged file(s):", *(f"  {d.line()}" for d in damaged),
            f"a rerun of their sweep moves them to {store / QUARANTINE} and runs their trials again "
            f"(or: python -m energyray store check --store {store} --quarantine)"]
