"""`python -m energyray report`: the summary table, and the HTML dashboard with --out."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import NoReturn

import pandas as pd

from energyray.report import export as static_export
from energyray.report.summary import _default_console, print_summary, skipped_lines
from energyray.store import Store, _safe

PROG = "python -m energyray report"


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line naming the fix, not the usage block
        self.exit(2, f"{PROG}: {message} (see {PROG} --help)\n")


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--queries-per-day wants a number, not {text!r}") from None
    if not v > 0:
        raise argparse.ArgumentTypeError(f"--queries-per-day wants a positive number, not {text}")
    return v


def _sweeps_in(store: Store) -> list[str]:
    root = store.path / "trials"
    return sorted(p.name.removeprefix("sweep=") for p in root.glob("sweep=*") if p.is_dir()) if root.exists() else []


def report_main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog=PROG, description="Summarise a store in the terminal; with --out, also write the "
                     "dashboard: one self-contained HTML page (docs/report.md).")
    parser.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    parser.add_argument("--sweep", action="append", metavar="SWEEP",
                        help="only this sweep (repeat for several; default: every sweep)")
    parser.add_argument("--out", metavar="HTML", help="write the dashboard here (needs pip install 'energyray[report]')")
    parser.add_argument("--external", action="append", default=[], metavar="PATH",
                        help="published results (a CSV or Parquet file, or a folder of them: conf/external/README.md) "
                             "to show beside the measured ones; repeat for several")
    parser.add_argument("--queries-per-day", type=_positive, metavar="N",
                        help="queries a day for the daily-scale projection (default: the view's own)")
    parser.add_argument("--title", help="the page's title (default: energyray report: <sweeps>)")
    static_export.add_arguments(parser)
    args = parser.parse_args(argv)

    store_path = Path(args.store)
    if not store_path.is_dir():
        return _fail(f"no store at {store_path}: pass --store DIR (the sweep's store.path), or run a sweep first: "
                     "python -m energyray sweep=quantization")
    for f in args.external:
        if not Path(f).exists():
            return _fail(f"--external {f}: no such file or folder; pass a CSV or Parquet file of published results, "
                         "or a folder of them (conf/external/ has examples)")
    if args.external and not (args.out or args.export):
        return _fail("--external is shown on the dashboard and its figures only: add --out report.html or --export png")
    if args.views and not args.export:
        return _fail("--views picks the views to export: add --export png (or pdf, or png,pdf)")
    out = Path(args.out) if args.out else None
    if out is not None:
        if out.is_dir():
            return _fail(f"--out {out} is a directory: give a file name, e.g. --out {out / 'report.html'}")
        if any(p.exists() and not p.is_dir() for p in out.parents):
            return _fail(f"--out {out}: a parent of it is a file; choose another path")
        missing = [m for m in ("plotly", "duckdb") if importlib.util.find_spec(m) is None]
        if missing:
            return _fail(f"the dashboard needs {' and '.join(missing)}: pip install 'energyray[report]'")

    store = Store(store_path, log_damaged=False)  # listed below, with the summary
    sweeps = list(dict.fromkeys(args.sweep or []))
    if sweeps:
        frames = [store.read("trials", sweep=s) for s in sweeps]
        frames = [f[f["sweep"].astype(str).isin({s, _safe(s)})] for f, s in zip(frames, sweeps, strict=True)
                  if not f.empty and "sweep" in f]
        trials = pd.concat([f for f in frames if not f.empty], ignore_index=True) if any(
            not f.empty for f in frames) else pd.DataFrame()
    else:
        trials = store.read("trials")
    skipped = skipped_lines(store.damaged, store.path)
    if trials.empty:
        what = f" for sweep {', '.join(map(repr, sweeps))}" if sweeps else ""
        there = _sweeps_in(store)
        hint = (f"sweeps there: {', '.join(there)}" if sweeps and there
                else "Run a sweep first: python -m energyray sweep=quantization")
        print("\n".join([f"No trials in {args.store}{what}. {hint}", *skipped]), file=sys.stderr)
        return 1
    found = set(trials["sweep"].astype(str)) if "sweep" in trials else set()
    absent = [s for s in sweeps if s not in found and _safe(s) not in found]
    if absent:
        print(f"No trials of sweep {', '.join(map(repr, absent))} in {args.store}; sweeps there: "
              f"{', '.join(_sweeps_in(store)) or 'none'}. Drop it or fix its name.", file=sys.stderr)
        return 1
    console = _default_console()
    print_summary(trials, console, title=f"{args.store}: {len(trials)} trials")
    for line in skipped:
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if out is not None or args.export:
        from energyray.report.dashboard import load_report_data, write_report
        from energyray.report.views import build_views

        data = load_report_data(store_path, sweeps=sweeps or None, external=args.external,
                                queries_per_day=args.queries_per_day)
        views = build_views(data)  # one set of figures for the page and the static files
        if out is not None:
            write_report(data, out, title=args.title, views=views)
            size = out.stat().st_size / 1e6
            print(f"dashboard: {out} ({size:.1f} MB; opens offline in a browser)")
        if args.export:
            return static_export.export_main(args, views)
    return 0
