"""The dashboard: one self-contained HTML page of a store's results.

`load_report_data` reads a store (through report.query's DuckDB queries) into a `ReportData`;
`write_report` writes the page: what was run, a table per configuration (mean ± 95 % CI, n,
std, energy source), the plain-language cheapest-per-quality answer, the failures, and the
views of report.views, with plotly.js and the page's own script and style inlined, so that it
opens offline. Filters on the page (assets/dashboard.js) apply to every chart, the table and the
answer; Pareto charts get a latency-deadline and an energy-budget input.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from energyray import __version__
from energyray.report import labels
from energyray.report.gcpause import paused
from energyray.report.summary import (
    _HEADERS,
    CONFIG_KEYS,
    MEASURED_SOURCES,
    _first_line,
    _norm,
    _order,
)

# the keys a filter selects on, in the order of trace.meta "key"/"keys" lists
FILTER_KEYS: tuple[str, ...] = ("sweep", "hardware", "model", "precision", "backend", "task")
# the per-configuration figures of the table: column, header, unit shown after the value
METRICS: tuple[tuple[str, str], ...] = (
    ("j_per_token", "J/token"), ("j_per_request", "J/request"), ("tokens_per_s", "tokens/s"),
    ("ttft_s", "TTFT (s)"), ("accuracy", "accuracy"), ("co2_g_per_request", "gCO2e/request"))
# counts config_stats also reads: accuracy pooled over a configuration's trials, with its Wilson interval
COUNTS: tuple[str, ...] = ("correct_requests", "scored_requests")
# accuracy within this many points (fraction) of the best counts as the same quality
QUALITY_TOLERANCE = 0.02
# representative trials whose power series the page plots: one per configuration, at most this many
MAX_SERIES_TRIALS = 40
# the trials columns the page reads beside the views' (views.TRIAL_COLUMNS): run info, failures, series pick
PAGE_COLUMNS: tuple[str, ...] = ("repeat", "gpu_name", "started_at", "energyray_version", "env_json",
                                 "schema_version")
# summary-table rows written into the page (in summary order); the rest are counted in a note
MAX_TABLE_ROWS = 500
# view families in page order (a family not listed follows, in the order views come)
FAMILY_ORDER = ("overview", "energy", "latency", "accuracy", "pareto", "time series", "phases",
                "hardware", "projection", "diffusion", "failures")


@dataclass
class ReportData:
    """Everything the page shows, read once from the store."""
    trials: pd.DataFrame            # StoreQuery.trials(): every status
    configs: pd.DataFrame           # StoreQuery.config_stats(METRICS): one row per configuration
    series: pd.DataFrame            # StoreQuery.samples(representative trial ids), downsampled
    categories: pd.DataFrame        # StoreQuery.responses_by_category()
    external: pd.DataFrame          # report.external.load(paths), may be empty
    projection: dict[str, Any] | None  # queries_per_day etc. for the daily-scale view
    damaged: list[str] = field(default_factory=list)  # files the reader skipped, one line each


@paused
def load_report_data(store: str | Path, sweeps: Sequence[str] | None = None, external: Iterable[str | Path] = (),
                     queries_per_day: float | None = None) -> ReportData:
    """Read `store` (only `sweeps` where given) and the external results files into a ReportData."""
    from energyray.report.query import StoreQuery
    from energyray.report.views import TRIAL_COLUMNS

    q = StoreQuery(store, sweeps)
    # only the columns read: all ~300 of 100,000 trials cost 2x the time and memory
    trials = q.trials(list(dict.fromkeys([*CONFIG_KEYS, *TRIAL_COLUMNS, *PAGE_COLUMNS])))
    configs = q.config_stats([*(m for m, _ in METRICS), *COUNTS])
    ids = representative_trials(trials)
    series = q.samples(ids) if ids else pd.DataFrame()
    categories = q.responses_by_category()
    ext_paths = [Path(p) for p in external]
    if ext_paths:
        from energyray.report.external import load as load_external
        ext = load_external(ext_paths)
    else:
        ext = pd.DataFrame()
    projection = {"queries_per_day": queries_per_day} if queries_per_day else None
    return ReportData(trials=trials, configs=configs, series=series, categories=categories, external=ext,
                      projection=projection, damaged=[d.line() for d in q.damaged])


def representative_trials(trials: pd.DataFrame, limit: int = MAX_SERIES_TRIALS) -> list[str]:
    """One ok trial per configuration (its lowest repeat), for the time-series views: at most `limit`."""
    if trials.empty or "trial_id" not in trials:
        return []
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    keyed = ok.reindex(columns=[*CONFIG_KEYS, "repeat", "trial_id"]).sort_values("repeat", kind="stable")
    firsts = keyed.drop_duplicates(subset=list(CONFIG_KEYS))  # NaN equals NaN here
    ranks = []
    for k in CONFIG_KEYS:  # summary's order: each column's distinct values ranked once, then a stable sort
        codes, uniques = pd.factorize(firsts[k], use_na_sentinel=True)
        orders = [_order((_norm(u),)) for u in uniques] + [_order((None,))]
        dense = {o: i for i, o in enumerate(sorted(set(orders)))}
        ranks.append(np.array([dense[o] for o in orders], dtype=np.int64)[codes])
    ids = firsts["trial_id"].tolist()
    order: list[int] = np.lexsort(ranks[::-1])[:limit].tolist() if ids else []
    return [str(ids[i]) for i in order]


# -- configurations ---------------------------------------------------------------------------

def _s(v: Any) -> str:
    """A filter key's value as the page compares it: '' for null, 64 for 64.0."""
    v = _norm(v)
    return "" if v is None else str(v)


def energy_kind(sources: Any) -> tuple[str, str]:
    """('measured'|'estimated'|'not measured' or several joined by ' + ', the label with scopes)
    from config_stats' energy_sources text, e.g. 'counter (gpu), estimated (cpu+ram)'."""
    return _energy_kind("" if _norm(sources) is None else str(sources))


@functools.lru_cache(maxsize=1024)
def _energy_kind(text: str) -> tuple[str, str]:
    # few distinct texts among thousands of configurations: each parsed once
    seen: dict[str, set[str]] = {}
    for source, scope in re.findall(r"([A-Za-z_]+)\s*(?:\(([^)]*)\))?", text):
        if source in MEASURED_SOURCES:
            kind = "measured"
        elif source == "estimated":
            kind = "estimated"
        elif source in ("flops", "ecologits"):
            kind, scope = "estimated", scope or source
        else:
            kind, scope = "not measured", ""
        seen.setdefault(kind, set()).update({scope.split(":")[0]} if scope else set())
    kinds = [k for k in ("measured", "estimated", "not measured") if k in seen] or ["not measured"]
    label = " + ".join(f"{k} ({', '.join(sorted(seen[k]))})" if seen.get(k) else k for k in kinds)
    return " + ".join(kinds), label


def varying_axes(configs: pd.DataFrame) -> list[str]:
    """The configuration keys whose value differs among `configs` (the model at least)."""
    axes = [k for k in CONFIG_KEYS if k in configs and len({_s(v) for v in configs[k].unique()}) > 1]
    return axes or (["model"] if "model" in configs else [])


def config_records(configs: pd.DataFrame) -> list[dict[str, Any]]:
    """The configurations as the cheapest answer reads them (and the page's script, as JSON)."""
    # only the columns read, a list each (to_dict of every column costs ~0.3 s at 9,000 rows)
    n = len(configs)
    read = list(dict.fromkeys([*CONFIG_KEYS, "energy_sources", "energy", "accuracy", "j_per_request", "ok", "failed",
                               *(c + s for c in COUNTS for s in ("", "_n"))]))
    have = [c for c in read if c in configs]
    rows = [dict(zip(have, vals, strict=True)) for vals in zip(*(configs[c].tolist() for c in have), strict=True)] \
        if have else [{} for _ in range(n)]
    all_parts = labels.parts_columns({k: configs[k].tolist() for k in CONFIG_KEYS if k in configs}, n)
    out = []
    for r, parts, name in zip(rows, all_parts, labels.names(all_parts, ", "), strict=True):
        kind, label = energy_kind(r.get("energy_sources"))
        given = _norm(r.get("energy"))  # config_stats' summary.energy_label, where it gives one
        if given is not None and given != "-":
            label = str(given)
            kind = " + ".join(k for k in ("measured", "estimated", "not measured") if k in label) or kind
        out.append({
            "keys": [_s(r.get(k)) for k in FILTER_KEYS],
            "label": name,
            # each axis as a name shows it ('' where null or at its default): the answer names a
            # configuration by the axes that differ among those shown (report.labels)
            "parts": parts,
            "accuracy": pooled[0] if (pooled := pooled_accuracy(r)) else _num_or_none(r.get("accuracy")),
            "j_per_request": _num_or_none(r.get("j_per_request")),
            "ok": int(_norm(r.get("ok")) or 0),
            "failed": int(_norm(r.get("failed")) or 0),
            "energy": label, "energy_kind": kind,
        })
    return out


def wilson(correct: float, n: float, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval (95 % at z 1.96) of a share `correct` / `n`: always within 0..1
    (a t interval over a few trials' accuracies runs past 1); (NaN, NaN) where n is 0."""
    if not n > 0:
        return (math.nan, math.nan)
    p = correct / n
    d = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / d
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (max(0.0, centre - half), min(1.0, centre + half))


def pooled_accuracy(r: Any) -> tuple[float, float, float, int, int] | None:
    """(accuracy, low, high, correct, scored) of a config_stats row: correct / scored requests over
    its ok trials and the Wilson 95 % interval; None where the row lacks the counts."""
    got = [_norm(r.get(c + s)) for c in COUNTS for s in ("", "_n")]
    if any(v is None for v in got):
        return None
    k, n = round(got[0] * got[1]), round(got[2] * got[3])  # mean x count: the sums
    if n <= 0:
        return None
    lo, hi = wilson(k, n)
    return k / n, lo, hi, k, n


def _num_or_none(v: Any) -> float | None:
    v = _norm(v)
    return None if v is None else float(v)


# -- the cheapest answer: assets/dashboard.js has the same function (cheapestAnswer); keep both alike

def fmt(v: float, digits: int = 3) -> str:
    """`digits` significant digits, no exponent, trailing zeros dropped (0.41, 12.3, 1234); as the page's fmt."""
    if v == 0 or not math.isfinite(v):
        return "0" if v == 0 else str(v)
    if abs(v) >= 10 ** (digits - 1):
        return f"{v:.0f}"
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(v))))
    text = f"{v:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.1f}×" if b > 0 else "∞×"


def _relabel(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records named by report.labels among themselves; records without parts keep their label."""
    if not recs or not all("parts" in r for r in recs):
        return recs
    return [{**r, "label": name} for r, name in zip(recs, labels.names([r["parts"] for r in recs], ", "),
                                                     strict=True)]


TASK_KEY = FILTER_KEYS.index("task")


def cheapest_answer(configs: list[dict[str, Any]] | pd.DataFrame) -> str:
    """The plain-language answer to 'which configuration is cheapest for the quality I need?'.

    Among scored configurations with an energy per request: the highest accuracy, then the
    cheapest (J/request) within QUALITY_TOLERANCE of it; ties go to the earlier configuration
    (summary order). Nothing scored: the cheapest by J/request, and why quality is not compared.
    """
    recs = config_records(configs) if isinstance(configs, pd.DataFrame) else configs
    if not recs:
        return "No configuration selected."
    # a request of one task is not a request of another (an image, an answer): each task on its own
    tasks = sorted({r["keys"][TASK_KEY] for r in recs})
    if len(tasks) > 1:
        return (f"{len(tasks)} tasks, each compared on its own (a request of one is not a request of another). "
                + " ".join(f"Task {task or '–'}: {_answer([r for r in recs if r['keys'][TASK_KEY] == task])}"
                           for task in tasks))
    return _answer(recs)


def _answer(recs: list[dict[str, Any]]) -> str:
    if not any(r["ok"] for r in recs):
        failed = sum(r["failed"] for r in recs)
        return f"No trial completed ({failed} failed): there is nothing to compare; the failures section says why."
    priced = _relabel([r for r in recs if r["ok"] and r["j_per_request"] is not None])
    if not priced:
        return ("No configuration has an energy per request (energy not measured): "
                "nothing to compare; run on hardware with an energy counter or an estimate.")
    scored = [r for r in priced if r["accuracy"] is not None]
    if not scored:
        cheap = min(priced, key=lambda r: r["j_per_request"])
        dear = max(priced, key=lambda r: r["j_per_request"])
        text = ("No configuration was scored for accuracy (random weights, or a task without gold answers), "
                "so quality cannot be compared. "
                f"Cheapest by energy: {cheap['label']} at {fmt(cheap['j_per_request'])} J/request ({cheap['energy']})")
        if dear is not cheap and dear["j_per_request"] > cheap["j_per_request"]:
            text += f", {_ratio(dear['j_per_request'], cheap['j_per_request'])} less than {dear['label']}"
        return text + "."
    best = max(scored, key=lambda r: (r["accuracy"], -r["j_per_request"]))
    close = [r for r in scored if r["accuracy"] >= best["accuracy"] - QUALITY_TOLERANCE - 1e-9]
    cheap = min(close, key=lambda r: r["j_per_request"])
    text = (f"Highest accuracy measured: {100 * best['accuracy']:.0f} % ({best['label']}), "
            f"at {fmt(best['j_per_request'])} J/request ({best['energy']}). ")
    if cheap is best:
        text += (f"No configuration within {100 * QUALITY_TOLERANCE:.0f} points of it uses less energy: "
                 "it is also the cheapest for that quality.")
    else:
        text += (f"Cheapest configuration within {100 * QUALITY_TOLERANCE:.0f} points of it: {cheap['label']} "
                 f"({100 * cheap['accuracy']:.0f} %) at {fmt(cheap['j_per_request'])} J/request ({cheap['energy']}), "
                 f"{_ratio(best['j_per_request'], cheap['j_per_request'])} less energy than {best['label']}.")
    if best["energy_kind"] != cheap["energy_kind"]:
        text += " Careful: one figure is measured, the other estimated."
    unscored = len(priced) - len(scored)
    if unscored:
        text += f" {unscored} configuration(s) without accuracy are left out."
    return text


# -- the page ---------------------------------------------------------------------------------

def _asset(name: str) -> str:
    return resources.files("energyray.report").joinpath("assets", name).read_text(encoding="utf-8")


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _json_script(id_: str, obj: Any) -> str:
    # UTF-8 as it is (the page is UTF-8): labels' "·" escaped would add ~1 MB to a page of 9,000 configurations
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, default=str, ensure_ascii=False).replace(
        "</", "<\\/")
    return f'<script type="application/json" id="{id_}">{text}</script>'


def _cell(r: Any, metric: str) -> tuple[str, str, str]:
    """(text, title, sort value) of one metric cell: 'mean ± ci95', the title with n and std."""
    mean, std, ci, n = (_norm(r.get(metric + s)) for s in ("", "_std", "_ci95", "_n"))
    pooled = pooled_accuracy(r) if metric == "accuracy" else None
    if pooled:
        acc, lo, hi, k, scored = pooled
        trials = f" over {n} trials" if n is not None else ""
        return (f"{100 * acc:.1f} % ({fmt(100 * lo, 2)}–{fmt(100 * hi, 2)} %)",
                f"{k} of {scored} scored requests correct{trials}; Wilson 95 % interval "
                f"{fmt(100 * lo, 2)}–{fmt(100 * hi, 2)} %", repr(float(acc)))
    if mean is None:
        return "–", "no value", ""
    pct = metric == "accuracy"
    show = (lambda v: f"{100 * v:.1f} %") if pct else (lambda v: fmt(float(v)))
    # the interval to 2 significant digits: more would be noise
    half = (f"{fmt(100 * ci, 2)} %" if pct else fmt(float(ci), 2)) if ci is not None else ""
    text = show(mean) + (f" ± {half}" if half else "")
    title = [f"mean {show(mean)}", f"n {n if n is not None else '?'}"]
    title.append(f"std {show(std)}" if std is not None else "std – (one value)")
    title.append(f"95 % CI ± {half}" if half else "95 % CI – (fewer than 2 values)")
    return text, ", ".join(title), repr(float(mean))


# the terminal's short headers, spelled out where a web page has the room
_TABLE_HEADERS = {**_HEADERS, "hardware": "hardware", "max_new_tokens": "max tokens", "prompt_tokens": "prompt tokens"}


def _summary_table(configs: pd.DataFrame, records: list[dict[str, Any]]) -> str:
    axes = varying_axes(configs)
    head = [*(_e(_TABLE_HEADERS.get(a, a)) for a in axes), "ok", *(_e(h) for _, h in METRICS), "energy"]
    rows = []
    for r, rec in zip(configs.head(MAX_TABLE_ROWS).to_dict("records"), records, strict=False):
        cells = [f"<td>{_e('–' if _norm(r.get(a)) is None else _norm(r[a]))}</td>" for a in axes]
        ok, trials = int(_norm(r.get("ok")) or 0), int(_norm(r.get("trials")) or 0)
        cells.append(f'<td class="num">{ok}/{trials}</td>')
        for m, _ in METRICS:
            text, title, sort = _cell(r, m)
            cells.append(f'<td class="num" title="{_e(title)}" data-sort="{sort}">{_e(text)}</td>')
        kind_class = "er-" + rec["energy_kind"].split(" + ")[0].replace(" ", "-")
        cells.append(f'<td><span class="er-energy {kind_class}">{_e(rec["energy"])}</span></td>')
        rows.append(f"<tr data-keys=\"{_e(json.dumps(rec['keys']))}\">{''.join(cells)}</tr>")
    more = ""
    if len(configs) > MAX_TABLE_ROWS:
        more = (f'<p class="er-hint" id="summary-more">The first {MAX_TABLE_ROWS:,} of {len(configs):,} '
                f"configurations (summary order); {len(configs) - MAX_TABLE_ROWS:,} more are not in this table: "
                "python -m energyray report prints them all, and report --sweep narrows the page. The cheapest "
                "answer and the charts' filters consider every configuration.</p>")
    return (more + '<table id="summary-table"><thead><tr>' + "".join(f"<th>{h}</th>" for h in head)
            + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _versions(trials: pd.DataFrame) -> list[str]:
    """The energyray versions that wrote the trials (from env_json, or a column energyray_version)."""
    found: set[str] = set()
    if "energyray_version" in trials:
        found |= {_s(v) for v in trials["energyray_version"].dropna().unique()}
    if "env_json" in trials:
        # a regex, not json.loads: 100k rows' environments read in a blink
        found |= set(pd.Series(trials["env_json"].dropna().unique()).astype(str)
                     .str.extract(r'"energyray":\s*"([^"]+)"', expand=False).dropna().unique())
    return sorted(found - {""})


def run_info(data: ReportData) -> list[tuple[str, str]]:
    """(what, value) lines on what was run: sweeps, hardware, dates, versions, trials."""
    t = data.trials
    lines: list[tuple[str, str]] = []

    def counts(col: str) -> str:
        if col not in t or t.empty:
            return "–"
        c: Counter[str] = Counter()
        for v, n in t[col].value_counts(dropna=False).items():
            c[_s(v) or "(none)"] += int(n)
        return ", ".join(f"{k} ({n} trial{'s' if n != 1 else ''})" for k, n in sorted(c.items()))

    lines.append(("sweeps", counts("sweep")))
    hw = counts("hardware")
    if "gpu_name" in t and t["gpu_name"].notna().any():
        hw += "; GPUs: " + ", ".join(sorted({str(v) for v in t["gpu_name"].dropna().unique()}))
    lines.append(("hardware", hw))
    if "started_at" in t and t["started_at"].notna().any():
        starts = t["started_at"].dropna().astype(str)
        first, last = starts.min(), starts.max()
        lines.append(("dates", f"{first[:16].replace('T', ' ')} to {last[:16].replace('T', ' ')} UTC"))
    else:
        lines.append(("dates", "– (no start times stored)"))
    versions = _versions(t)
    lines.append(("energyray", ", ".join(versions) if versions else "– (not recorded)"))
    if "schema_version" in t:
        sv = sorted({_s(v) or "none (energyray 0.1.0)" for v in t["schema_version"].unique()})
    else:
        sv = ["none (energyray 0.1.0)"] if not t.empty else []
    lines.append(("schema versions", ", ".join(sv) or "–"))
    status: Counter[str] = Counter()
    for v, n in (t["status"].value_counts(dropna=False).items() if "status" in t else ()):
        status[_s(v) or "(none)"] += int(n)
    ok = status.pop("ok", 0)
    lines.append(("trials", f"{len(t)}: {ok} ok, {sum(status.values())} not ok"
                  + (f" ({', '.join(f'{n} {k}' for k, n in sorted(status.items()))})" if status else "")))
    lines.append(("configurations", str(len(data.configs))))
    if not data.external.empty:
        src = sorted({_s(v) for v in data.external.get("source", pd.Series(dtype=object))} - {""})
        lines.append(("external results", f"{len(data.external)} rows" + (f" from {', '.join(src)}" if src else "")))
    if data.damaged:
        lines.append(("damaged files skipped", f"{len(data.damaged)}: " + "; ".join(data.damaged)))
    lines.append(("generated", f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by energyray {__version__}"))
    return lines


def _failures(trials: pd.DataFrame, intro: bool = True) -> str:
    if trials.empty or "status" not in trials:
        return "<p>No trials.</p>"
    bad = trials[trials["status"] != "ok"].reindex(columns=[*CONFIG_KEYS, "status", "error", "trial_id"])
    if bad.empty:
        return '<p class="er-none">No failed trials.</p>'
    groups: dict[str, list[Any]] = {}
    bad_parts = _parts_of(bad)
    for r, parts in zip(bad.to_dict("records"), bad_parts, strict=True):
        groups.setdefault(_first_line(r["error"], r["status"]), []).append((r, tuple(parts)))
    # named among every configuration of the store, as the charts name them
    keys = trials.reindex(columns=list(CONFIG_KEYS)).drop_duplicates()
    all_parts = list(dict.fromkeys(tuple(p) for p in _parts_of(keys)))
    name_of = dict(zip(all_parts, labels.names(all_parts, ", "), strict=True))
    rows = []
    for text, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        rs = [r for r, _ in members]
        names = sorted({name_of[parts] for _, parts in members})
        ids = [str(r["trial_id"]) for r in rs[:5]] + (["…"] if len(rs) > 5 else [])
        rows.append(f'<tr><td class="num">{len(rs)}</td><td class="er-error">{_e(text)}</td>'
                    f"<td>{_e('; '.join(names))}</td><td><code>{_e(' '.join(ids))}</code></td></tr>")
    lead = (f"{len(bad)} of {len(trials)} trials did not complete, by error:" if intro else
            "Each error, the configurations it stopped and their trial ids:")
    return (f"<p>{_e(lead)}</p>"
            '<table class="er-failures"><thead><tr><th>trials</th><th>error (first line)</th>'
            "<th>configurations</th><th>trial ids</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _parts_of(keyed: pd.DataFrame) -> list[list[str]]:
    """labels.parts of each row of a frame with CONFIG_KEYS columns, each axis value worded once."""
    return labels.parts_columns({k: keyed[k].astype(object).tolist() for k in CONFIG_KEYS if k in keyed}, len(keyed))


def _view_html(v: Any, heading: bool = True) -> str:
    note = f'<p class="er-note">{_e(v.note)}</p>' if v.note and v.fig is not None else ""
    if v.fig is None:
        body = (f'<div class="er-chart er-nodata" id="view-{_e(v.id)}"><p class="er-empty">{_e(v.note or "No data.")}'
                "</p></div>")
    else:
        body = f'<div class="er-chart" id="view-{_e(v.id)}"></div>'
    title = f"<h3>{_e(v.title)}</h3>" if heading else ""
    return f'<figure class="er-view">{title}{body}{note}</figure>'


def _figure_json(fig: Any) -> Any:
    # the figure's own dicts where they are plain JSON (lists, no NaN): plotly's to_json deep-copies and
    # re-encodes them (0.7 s of a 100,000-trial page); anything else goes through it
    try:
        plain = {"data": fig._data, "layout": fig._layout}
        json.dumps(plain, allow_nan=False)
    except (AttributeError, TypeError, ValueError):
        return json.loads(fig.to_json())
    return plain


def _filter_values(data: ReportData, figs: list[Any], configs: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Every value each filter key takes: in the configurations and in the charts' trace keys."""
    values: dict[str, set[str]] = {k: set() for k in FILTER_KEYS}
    for rec in configs:
        for k, v in zip(FILTER_KEYS, rec["keys"], strict=True):
            values[k].add(v)
    for k in FILTER_KEYS:
        if k in data.trials:
            values[k] |= {_s(v) for v in data.trials[k].unique()}
    for fig in figs:
        for trace in fig.get("data", []):
            meta = trace.get("meta") if isinstance(trace.get("meta"), dict) else {}
            keys = ([meta["key"]] if isinstance(meta.get("key"), list) else []) + list(meta.get("keys") or [])
            for key in keys:
                if isinstance(key, list) and len(key) == len(FILTER_KEYS):
                    for k, v in zip(FILTER_KEYS, key, strict=True):
                        values[k].add(str(v))
    return {k: sorted(v, key=lambda s: (s == "", s)) for k, v in values.items()}


def _family_order(views: list[Any]) -> list[str]:
    seen = list(dict.fromkeys(str(v.family) for v in views))
    return [f for f in FAMILY_ORDER if f in seen] + [f for f in seen if f not in FAMILY_ORDER]


@paused
def write_report(data: ReportData, out: Path, title: str | None = None, views: list[Any] | None = None) -> Path:
    """Write the page to `out` (its folders made); returns `out`. `views` default: report.views.build_views(data)."""
    from plotly.offline import get_plotlyjs

    if views is None:
        from energyray.report.views import build_views
        views = build_views(data)
    sweeps = sorted({_s(v) for v in data.trials["sweep"].unique()} - {""}) if "sweep" in data.trials else []
    title = title or f"energyray report: {', '.join(sweeps) or 'no sweeps'}"
    configs = config_records(data.configs)
    figures = {v.id: _figure_json(v.fig) for v in views if v.fig is not None}
    filters = _filter_values(data, list(figures.values()), configs)

    parts = [f"<h1>{_e(title)}</h1>", '<section id="run-info"><h2>What was run</h2><dl>']
    parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in run_info(data)]
    parts.append("</dl></section>")
    parts.append('<section id="filters"><h2>Filters</h2><p class="er-hint">Every chart, the table and the '
                 'answer below show only the selected values (ctrl/cmd-click selects several).</p><div class="er-filter-row">')
    for k in FILTER_KEYS:
        opts = "".join(f'<option value="{_e(v)}" selected>{_e(v or "(none)")}</option>' for v in filters[k])
        size = max(2, min(6, len(filters[k])))
        parts.append(f'<div class="er-filter"><label>{_e(k)}<select multiple size="{size}" data-key="{k}">{opts}'
                     f'</select></label><button type="button" data-all="{k}">all</button>'
                     f'<button type="button" data-none="{k}">none</button></div>')
    parts.append('</div><p id="er-shown"></p></section>')
    parts.append(f'<section id="cheapest-section"><h2>Cheapest for the quality</h2><p id="cheapest">'
                 f"{_e(cheapest_answer(configs))}</p></section>")
    parts.append('<section id="summary"><h2>Per configuration</h2><p class="er-hint">Each figure: mean ± half '
                 "width of its 95 % confidence interval (t) over the configuration's ok trials; hover a cell for n "
                 "and the standard deviation. Accuracy: correct / scored requests pooled over the trials, with its Wilson "
                 "95 % interval (within 0–100 %). Energy: <span class=\"er-energy er-measured\">measured</span> "
                 "(read from a device), <span class=\"er-energy er-estimated\">estimated</span> (a model's "
                 "estimate, not a measurement), <span class=\"er-energy er-not-measured\">not measured</span>."
                 "</p><div class=\"er-table-wrap\">")
    parts.append(_summary_table(data.configs, configs) + "</div></section>")
    # the failures view is drawn in the page's failures section, under its one heading
    failure_views = [v for v in views if str(v.family).lower() == "failures"]
    parts.append('<section id="views">')
    for family in _family_order([v for v in views if v not in failure_views]):
        parts.append(f'<section class="er-family"><h2>{_e(family.capitalize())}</h2>')
        parts += [_view_html(v) for v in views if str(v.family) == family]
        parts.append("</section>")
    parts.append("</section>")
    drawn = any(v.fig is not None for v in failure_views)
    # where the view already says there are none (or no trials), its note is the whole section
    table = "" if failure_views and not drawn else _failures(data.trials, intro=not drawn)
    parts.append('<section id="failures"><h2>Failures</h2>' + "".join(_view_html(v, heading=False) for v in failure_views)
                 + table + "</section>")

    page = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{_e(title)}</title><style>{_asset('dashboard.css')}</style>",
            f"<script>{get_plotlyjs()}</script></head><body>", *parts,
            _json_script("er-figures", figures), _json_script("er-configs", configs),
            _json_script("er-filter-keys", list(FILTER_KEYS)),
            f"<script>{_asset('dashboard.js')}</script></body></html>"]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text("\n".join(page), encoding="utf-8")
    tmp.replace(out)
    return out
