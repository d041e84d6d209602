"""`python -m energyray report`: the summary table, and the HTML dashboard with --out."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from energyray.report.summary import (
    CONFIG_KEYS,
    _default_console,
    _norm,
    _value,
    print_summary,
    skipped_lines,
)
from energyray.store import Store, _safe


def report_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m energyray report",
                                     description="Summarise a store; optionally write a Plotly dashboard.")
    parser.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    parser.add_argument("--sweep", help="only this sweep")
    parser.add_argument("--out", help="write an HTML dashboard here (needs plotly: pip install 'energyray[report]')")
    args = parser.parse_args(argv)
    store = Store(args.store, log_damaged=False)  # listed below, with the summary
    trials = store.read("trials", sweep=args.sweep)
    skipped = skipped_lines(store.damaged, store.path)
    if trials.empty:
        print("\n".join([f"No trials in {args.store}{f' for sweep {args.sweep!r}' if args.sweep else ''}. "
                         "Run a sweep first: python -m energyray sweep=quantization", *skipped]), file=sys.stderr)
        return 1
    if args.sweep:
        trials = trials[trials["sweep"].astype(str).isin({args.sweep, _safe(args.sweep)})]
    console = _default_console()
    print_summary(trials, console, title=f"{args.store}: {len(trials)} trials")
    for line in skipped:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if args.out:
        write_dashboard(trials, Path(args.out))
        print(f"dashboard: {args.out}")
    return 0


def write_dashboard(trials: pd.DataFrame, out: Path) -> None:
    """A self-contained HTML page: J/token and tokens/s per configuration (labelled by the axes
    that vary), energy vs tokens."""
    try:
        import plotly.express as px
    except ImportError as e:
        raise SystemExit("The dashboard needs plotly: pip install 'energyray[report]'") from e
    ok = trials[trials["status"] == "ok"].reindex(columns=list(dict.fromkeys([*trials.columns, *CONFIG_KEYS])))
    varying = [k for k in CONFIG_KEYS if len({_norm(v) for v in ok[k]}) > 1] or ["model"]
    ok["config"] = [" · ".join(map(_value, values)) for values in ok[varying].itertuples(index=False, name=None)]
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
