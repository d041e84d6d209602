"""Summaries of a store: the end-of-sweep table and `python -m energyray report`.

Reads the store only. Per configuration (model, precision, batch size, task, hardware): trials
ok of run, mean J/token and tokens/s with their spread, the energy source and what it covers.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from energyray.store import Store

CONFIG_COLUMNS = ["model", "precision", "batch_size", "task", "hardware"]


def summarize(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration: counts, mean/std of J/token and tokens/s, sources."""
    if trials.empty:
        return pd.DataFrame()
    df = trials.copy()
    for col in CONFIG_COLUMNS + ["status", "energy_source", "energy_scope", "j_per_token", "tokens_per_s", "energy_j"]:
        if col not in df:
            df[col] = None
    keys = [c for c in CONFIG_COLUMNS if df[c].notna().any()]

    def agg(g: pd.DataFrame) -> pd.Series:
        good = g[g["status"] == "ok"]
        jpt = pd.to_numeric(good["j_per_token"], errors="coerce").dropna()
        tps = pd.to_numeric(good["tokens_per_s"], errors="coerce").dropna()
        sources = sorted({f"{s} ({c})" if c else str(s) for s, c in zip(good["energy_source"], good["energy_scope"], strict=True) if s})
        return pd.Series({
            "trials": len(g), "ok": int((g["status"] == "ok").sum()),
            "failed": int((g["status"] != "ok").sum()),
            "j_per_token": jpt.mean() if len(jpt) else math.nan,
            "j_per_token_std": jpt.std() if len(jpt) > 1 else math.nan,
            "tokens_per_s": tps.mean() if len(tps) else math.nan,
            "tokens_per_s_std": tps.std() if len(tps) > 1 else math.nan,
            "energy_source": ", ".join(sources) or "-",
            "errors": "; ".join(sorted({str(e).splitlines()[0][:80] for e in g.loc[g["status"] != "ok", "error"].dropna()})) if "error" in g else "",
        })

    out = df.groupby(keys, dropna=False, sort=True).apply(agg, include_groups=False).reset_index()
    return out


def _fmt(v: Any, spec: str) -> str:
    try:
        return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)
    except (TypeError, ValueError):
        return str(v)


def print_summary(trials: pd.DataFrame, console: Console | None = None, title: str = "energyray summary") -> None:
    if console is None:
        console = Console()
        console = console if console.is_terminal else Console(width=200)
    summary = summarize(trials)
    if summary.empty:
        console.print("No trials.")
        return
    table = Table(title=title)
    keys = [c for c in CONFIG_COLUMNS if c in summary]
    for k in keys:
        table.add_column(k)
    for col in ("ok/run", "J/token", "±", "tokens/s", "±", "energy source", "failures"):
        table.add_column(col, justify="right" if col in ("ok/run", "J/token", "±", "tokens/s") else "left")
    for _, r in summary.iterrows():
        table.add_row(
            *[str(r[k]) for k in keys], f"{r['ok']}/{r['trials']}",
            _fmt(r["j_per_token"], ".4g"), _fmt(r["j_per_token_std"], ".2g"),
            _fmt(r["tokens_per_s"], ".3g"), _fmt(r["tokens_per_s_std"], ".2g"),
            r["energy_source"], (r["errors"] or "")[:120] if r["failed"] else "",
        )
    console.print(table)


def print_sweep_summary(store: Store, sweep: str, console: Console | None = None) -> None:
    """The end-of-sweep table: every trial of `sweep` in the store, earlier runs' included (a
    resumed sweep shows the whole sweep). Minimal: print_summary over the store's rows."""
    trials = store.read("trials")
    if not trials.empty and "sweep" in trials:
        trials = trials[trials["sweep"] == sweep]
    print_summary(trials, console, title=f"sweep {sweep}: all {len(trials)} trials in the store")


def report_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m energyray report",
                                     description="Summarise a store; optionally write a Plotly dashboard.")
    parser.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    parser.add_argument("--sweep", help="only this sweep")
    parser.add_argument("--out", help="write an HTML dashboard here (needs plotly: pip install 'energyray[report]')")
    args = parser.parse_args(argv)
    store = Store(args.store)
    trials = store.read("trials")
    if trials.empty:
        print(f"No trials in {args.store}. Run a sweep first: python -m energyray sweep=quantization", file=sys.stderr)
        return 1
    if args.sweep:
        trials = trials[trials["sweep"] == args.sweep]
    print_summary(trials, title=f"{args.store}: {len(trials)} trials")
    if args.out:
        write_dashboard(trials, Path(args.out))
        print(f"dashboard: {args.out}")
    return 0


def write_dashboard(trials: pd.DataFrame, out: Path) -> None:
    """A self-contained HTML page: J/token and tokens/s per configuration, energy vs tokens."""
    try:
        import plotly.express as px
    except ImportError as e:
        raise SystemExit("The dashboard needs plotly: pip install 'energyray[report]'") from e
    ok = trials[trials["status"] == "ok"].copy()
    ok["config"] = ok["model"].astype(str) + " " + ok["precision"].astype(str) + " b=" + ok["batch_size"].astype(str)
    figs = [
        px.box(ok, x="config", y="j_per_token", color="hardware", points="all", title="Energy per output token (J)"),
        px.box(ok, x="config", y="tokens_per_s", color="hardware", points="all", title="Throughput (tokens/s)"),
        px.scatter(ok, x="output_tokens", y="energy_j", color="config", symbol="hardware",
                   hover_data=["trial_id", "energy_source", "energy_scope"], title="Energy vs output tokens"),
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    parts = [f.to_html(full_html=False, include_plotlyjs=(i == 0)) for i, f in enumerate(figs)]
    out.write_text("<html><head><meta charset='utf-8'><title>energyray</title></head><body>"
                   + "".join(parts) + "</body></html>")
