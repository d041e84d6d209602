"""Static export: the dashboard's views as PNG, PDF or SVG files for papers, drawn by kaleido in a
headless Chromium (Debian's `chromium` package; BROWSER_PATH names another). The only module
importing kaleido."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

FORMATS = ("png", "pdf", "svg")
# Where a figure sets no size: the page's chart height, and a column width that prints well.
DEFAULT_WIDTH_PX = 900
DEFAULT_HEIGHT_PX = 420
PNG_SCALE = 2  # PNG pixels per CSS pixel: sharp enough for print
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
NO_CHROMIUM = ("static export needs a Chromium browser and none was found: apt-get install chromium "
               "(Debian/Ubuntu; scripts/install.sh --dev does it), or set BROWSER_PATH to one")


class ExportError(RuntimeError):
    """A static export that cannot be done; the message says what to change."""


class ViewLike(Protocol):
    id: str
    title: str
    fig: Any  # a plotly Figure, or None for a view without data
    note: str | None


def find_chromium() -> str | None:
    """The browser kaleido will drive: BROWSER_PATH when set, else the first Chromium on PATH,
    else Debian's /usr/bin/chromium."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if os.access(env, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        if found := shutil.which(name):
            return found
    return "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None


def parse_list(text: str | None) -> list[str]:
    """'png, pdf' -> ['png', 'pdf']; None or '' -> []."""
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _select(views: Iterable[ViewLike], ids: Sequence[str] | None) -> list[ViewLike]:
    views = list(views)
    if not ids:
        return [v for v in views if v.fig is not None]
    by_id = {v.id: v for v in views}
    unknown = [i for i in ids if i not in by_id]
    if unknown:
        raise ExportError(f"no view {', '.join(map(repr, unknown))}: the views are {', '.join(by_id)}")
    empty = [by_id[i] for i in ids if by_id[i].fig is None]
    if empty:
        v = empty[0]
        raise ExportError(f"view {v.id!r} has no figure to export: {v.note or 'no data for it in this store'}")
    return [by_id[i] for i in dict.fromkeys(ids)]


def _legend_entries(fig: Any) -> int:
    if fig.layout.showlegend is False:
        return 0
    groups = set()
    for i, trace in enumerate(fig.data):
        if trace.showlegend is not False and trace.name:
            groups.add(trace.legendgroup or f"trace {i}")
    return len(groups) if len(groups) > 1 or fig.layout.showlegend else 0


def _figure(view: ViewLike) -> tuple[Any, dict[str, int]]:
    """A copy of the view's figure for a page of its own, and its size: its title on it (the
    dashboard shows titles outside the charts), room above for it, and tall enough that every
    legend entry shows (a file cannot scroll its legend as the page does)."""
    fig = type(view.fig)(view.fig)  # a copy: the dashboard's figure stays as it is
    if not (fig.layout.title and fig.layout.title.text):
        fig.update_layout(title_text=view.title)
    if fig.layout.margin.t is not None and fig.layout.margin.t < 70:  # None: plotly's default, 100
        fig.update_layout(margin_t=70)
    entries = _legend_entries(fig)
    width = fig.layout.width or (DEFAULT_WIDTH_PX + 400 if entries else DEFAULT_WIDTH_PX)
    height = max(fig.layout.height or DEFAULT_HEIGHT_PX, 140 + 22 * entries)
    return fig, {"width": int(width), "height": int(height)}


def export(views: Iterable[ViewLike], out_dir: str | Path, formats: Sequence[str] = ("png", "pdf"),
           ids: Sequence[str] | None = None) -> list[Path]:
    """Write `<out_dir>/<view id>.<format>` for each view (those in `ids`, in that order, or every
    view with a figure) and each format; returns the files written."""
    formats = [f.lower().lstrip(".") for f in formats]
    bad = [f for f in formats if f not in FORMATS]
    if bad or not formats:
        raise ExportError(f"cannot export as {', '.join(bad) or 'nothing'}: the formats are {', '.join(FORMATS)}")
    chosen = _select(views, ids)
    if not chosen:
        return []
    try:
        import kaleido
    except ImportError as e:
        raise ExportError("static export needs kaleido: pip install 'energyray[report]'") from e
    browser = find_chromium()
    if browser is None:
        raise ExportError(NO_CHROMIUM)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    jobs, paths = [], []
    for view in chosen:
        fig, size = _figure(view)
        for fmt in formats:
            path = out / f"{view.id}.{fmt}"
            opts = {"format": fmt, **size, **({"scale": PNG_SCALE} if fmt == "png" else {})}
            jobs.append({"fig": fig, "path": path, "opts": opts})
            paths.append(path)
    # mathjax=False: kaleido would fetch MathJax from a CDN otherwise (no network is needed)
    try:
        kaleido.write_fig_from_object_sync(jobs, kopts={"path": browser, "mathjax": False}, cancel_on_error=True)
    except Exception as e:  # noqa: BLE001  kaleido/choreographer raise many kinds; one clear line instead
        raise ExportError(f"static export with {browser} failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''} "
                          "(check that this Chromium starts: chromium --headless --version)") from e
    missing = [p for p in paths if not p.is_file() or p.stat().st_size == 0]
    if missing:
        raise ExportError(f"static export wrote nothing to {missing[0]} (Chromium {browser})")
    return paths


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `report` options of static export."""
    parser.add_argument("--export", metavar="FORMATS",
                        help=f"also write views as static files: a comma-separated list of {', '.join(FORMATS)} "
                             "(needs kaleido and Chromium: apt-get install chromium)")
    parser.add_argument("--views", metavar="IDS",
                        help="with --export: only these view ids, comma-separated (default: every view with data)")
    parser.add_argument("--export-dir", default="outputs/figures", metavar="DIR",
                        help="with --export: where the files go (default: outputs/figures)")


def export_main(args: argparse.Namespace, views: Iterable[ViewLike]) -> int:
    """`report --export png,pdf [--views id,id] [--export-dir DIR]`: writes the files, prints one line
    per file; a user error is one line on stderr and exit status 2."""
    views = list(views)
    try:
        paths = export(views, args.export_dir, formats=parse_list(args.export), ids=parse_list(args.views) or None)
    except ExportError as e:
        print(f"report --export: {e}", file=sys.stderr)
        return 2
    for path in paths:
        print(f"figure: {path}")
    if not args.views:
        for view in views:
            if view.fig is None:
                print(f"figure: {view.id} skipped: {view.note or 'no data'}")
    return 0
