"""The dashboard's figures: `build_views(data)` turns a store's query results into Plotly figures.

Every trace carries the filter keys the page's script filters on (`meta.key`: one per trace, or
`meta.keys`: one per point, each [sweep, hardware, model, precision, backend, task] as strings) and
the kind of figure it draws (`meta.kind`: measured, estimated or external, each drawn its own way:
filled markers and solid lines, hollow markers and dashed lines, open diamonds). Pareto figures
carry `layout.meta.pareto` and one frontier trace the page recomputes from the visible points.
Charts draw at most MAX_POINTS points (a per-configuration stratified sample beyond that) and
round floats to 4 significant digits, so a store of 100,000 trials makes a small page. Over
MAX_TRACES configurations, point charts draw one trace per model (or hardware) with per-point keys,
and per-configuration charts draw the MAX_CONFIGS cheapest by energy per request (the note says so).
"""

from __future__ import annotations

import colorsys
import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from energyray.report import labels as naming
from energyray.report.gcpause import paused
from energyray.report.labels import config_names, full_name
from energyray.report.summary import (
    CONFIG_KEYS,
    MEASURED_SOURCES,
    _first_line,
    _norm,
    _order,
    _value,
)

FILTER_KEYS = ("sweep", "hardware", "model", "precision", "backend", "task")
MAX_POINTS = 5000  # drawn points per chart at most
# above this many configurations, point charts draw one trace per model (or hardware), each point
# keeping its configuration's filter keys and label, and per-configuration charts draw MAX_CONFIGS
MAX_TRACES = 60
MAX_CONFIGS = 60
GL_ABOVE = 1000  # scatters drawing more points than this use WebGL (scattergl)
HEIGHT = 420  # px, every chart
# plotly checks every property as a figure is built (3x the time); the tests turn it on
VALIDATE = False
MEASURED, ESTIMATED, EXTERNAL = "measured", "estimated", "external"
SYMBOL = {MEASURED: "circle", ESTIMATED: "circle-open", EXTERNAL: "diamond-open"}
DASH = {MEASURED: "solid", ESTIMATED: "dash", EXTERNAL: "dot"}
# samples sources that read the wall (a PDU) rather than the device
WALL_SOURCES = ("pdu", "snmp_pdu", "wall")
ESTIMATED_SOURCES = ("codecarbon",)
PHASE_ORDER = ("idle", "load", "warmup", "prefill", "decode", "generate", "trial_edge", "response", "unload")
PHASE_SYMBOLS = ("circle", "square", "triangle-up", "cross", "x", "star", "hexagon", "pentagon", "triangle-down",
                 "bowtie", "hourglass", "star-square")
PHASE_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d",
                "#bab0ac", "#eeca3b")

# The trials columns the views read (the page may pass them to StoreQuery.trials).
TRIAL_COLUMNS = (
    *CONFIG_KEYS, "trial_id", "status", "error", "energy_j", "energy_source", "energy_scope", "energy_estimated_j",
    "j_per_token", "j_per_request", "j_per_word", "tokens_per_s", "ttft_s", "tpot_s", "duration_s", "window_s",
    "batches", "latency_request_s_mean", "input_tokens", "output_tokens", "output_words", "accuracy",
    "scored_requests", "correct_requests", "co2_g", "co2_g_per_request", "co2_estimated",
    "carbon_intensity_g_per_kwh", "carbon_intensity_source", "roofline_efficiency", "roofline_bandwidth_source",
    "prefill_j", "decode_j", "warmup_j", "load_j", "unload_j", "response_j", "group_trials", "load_id",
    "wall_energy_j", "avg_power_w", "idle_power_w", "params_b", "j_per_step", "s_per_step", "inference_steps",
    "images", "j_per_image", "text_encode_j", "denoise_j", "vae_decode_j",
)


@dataclass
class View:
    id: str
    title: str
    family: str
    fig: go.Figure | None
    note: str | None


class ReportData(Protocol):
    """What dashboard.ReportData holds (defined there); the views read these attributes."""

    trials: pd.DataFrame
    configs: pd.DataFrame
    series: pd.DataFrame
    categories: pd.DataFrame
    external: pd.DataFrame
    projection: dict[str, Any] | None


# -- small helpers -------------------------------------------------------------------------------

def pareto_front(xs: Sequence[Any], ys: Sequence[Any], x: str = "min", y: str = "min") -> list[int]:
    """Indices of the points no other point beats (as good on both axes and better on one), in
    order of x (best first). Points with a null or NaN coordinate are left out; identical points
    are all on the front."""
    sx = 1.0 if x == "min" else -1.0
    sy = 1.0 if y == "min" else -1.0
    pts = []
    for i, (a, b) in enumerate(zip(xs, ys, strict=True)):
        a, b = _norm(a), _norm(b)
        if a is None or b is None or not (math.isfinite(float(a)) and math.isfinite(float(b))):
            continue
        pts.append((sx * float(a), sy * float(b), i))
    pts.sort()
    return _scan_front((i, a, b) for a, b, i in pts)


def _scan_front(points: Iterable[tuple[int, float, float]]) -> list[int]:
    """The front of (index, x, y) points sorted by x then y, both minimised: each point lower
    than every one before it, and any point equal to the last one taken."""
    front: list[int] = []
    best = math.inf
    last: tuple[float, float] | None = None
    for i, a, b in points:
        if b < best:
            front.append(i)
            best, last = b, (a, b)
        elif (a, b) == last:
            front.append(i)
    return front


def _sig(values: Any) -> list[Any]:
    """Floats rounded to 4 significant digits, NaN as None: short JSON."""
    a = _floats(values)
    finite = np.isfinite(a)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mag = np.where(finite & (a != 0), np.floor(np.log10(np.abs(np.where(finite, a, 1.0)))), 0).astype(int)
        # round(v / 10**(m-3)) * 10**(m-3) from m >= 3, else round(v * 10**(3-m)) / 10**(3-m), as Python's
        # round and int powers give them (the powers exact as floats up to 10**22, half to even)
        big = mag >= 3
        p = np.abs(np.where(big, mag - 3, 3 - mag))
        ok = finite & (p <= 22)
        scale = _POW10[np.minimum(p, 22)]
        out = np.where(big, np.round(a / scale) * scale, np.round(a * scale) / scale) + 0.0  # -0.0 as 0.0
    values_out: list[Any] = out.tolist()
    for i in np.flatnonzero(~ok).tolist():
        v, m = float(a[i]), int(mag[i])
        if not finite[i]:
            values_out[i] = None
        elif m >= 3:
            step = 10 ** (m - 3)
            values_out[i] = float(round(v / step) * step)
        else:
            scale_i = 10 ** (3 - m)
            values_out[i] = round(v * scale_i) / scale_i
    return values_out


_POW10 = np.array([float(10 ** k) for k in range(23)])


def _floats(values: Any) -> np.ndarray:
    """`values` as floats, what is not a number as NaN (pd.to_numeric's coerce), without a Series
    where they are already numbers (1,500 calls a page)."""
    if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
        return values.astype(float, copy=False)
    if isinstance(values, pd.Series) and values.dtype.kind in "fiu":
        return values.to_numpy(dtype=float)
    if isinstance(values, list) and all(isinstance(v, (float, int, np.number)) for v in values):
        try:
            return np.array(values, dtype=float)
        except OverflowError:  # an int past float's range: as pd.to_numeric has it
            pass
    return pd.to_numeric(pd.Series(values), errors="coerce").to_numpy(dtype=float)


def _num(df: pd.DataFrame, col: str) -> pd.Series:
    if col not in df:
        return pd.Series(np.nan, index=df.index, dtype=float)
    return pd.to_numeric(df[col], errors="coerce").astype(float)


def _palette(n: int) -> list[str]:
    import plotly.colors as pc

    if n <= 10:
        return list(pc.qualitative.Plotly[:n])
    base = [c for c in dict.fromkeys([*pc.qualitative.Dark24, *pc.qualitative.Alphabet, *pc.qualitative.Light24])
            if _luminance(c) < 0.75]  # pale ones vanish on white
    if n <= len(base):
        return base[:n]
    out = []
    for i in range(n):  # evenly spread hues, three lightness bands
        r, g, b = colorsys.hls_to_rgb((i * 0.61803398875) % 1.0, (0.35, 0.5, 0.65)[i % 3], 0.75)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def _luminance(color: str) -> float:
    h = color.lstrip("#")
    r, g, b = (int(h[i:i + 2], 16) / 255 for i in (0, 2, 4))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def _category_font(n: int) -> dict[str, Any]:
    """Every category labelled, in a font that fits n of them in the chart's height."""
    return {"dtick": 1, "tickfont": {"size": max(7, min(12, int(330 / max(n, 1))))}}


@functools.lru_cache(maxsize=4096)
def _t975(dof: int) -> float:
    from energyray.footprint.project import t975

    return t975(dof)


_TEMPLATE: dict[str, str] = {}


def _figure(traces: list[Any]) -> go.Figure:
    # the template expanded once (a figure's update_layout with it costs ~0.5 s unchecked)
    if not _TEMPLATE:
        _TEMPLATE["json"] = json.dumps(go.Layout(template="plotly_white").to_plotly_json()["template"])
    # plotly deep-copies each trace's properties into the figure: the per-point lists (keys, labels,
    # values) are handed over after, as they are (~1 s of a page of 9,000 configurations)
    heavy = [{k: tr._props.pop(k) for k in _HEAVY if isinstance(tr._props.get(k), (list, dict))} for tr in traces]
    # each figure its own copy of the template (a JSON parse: ~5x faster than copy.deepcopy)
    fig = go.Figure(traces, layout={"template": json.loads(_TEMPLATE["json"])}, _validate=VALIDATE)
    for props, h in zip(fig._data, heavy, strict=True):
        props.update(h)
    for tr, h in zip(traces, heavy, strict=True):
        tr._props.update(h)  # the caller's trace objects as they were
    return fig


_HEAVY = ("x", "y", "text", "meta", "customdata")


def _layout(fig: go.Figure, x: str, y: str, **kw: Any) -> go.Figure:
    # plain nested dicts only: an unchecked figure does not expand "xaxis_title"-style names
    fig.update_layout(height=HEIGHT, margin={"l": 60, "r": 20, "t": 30, "b": 60}, xaxis={"title": {"text": x}},
                      yaxis={"title": {"text": y}}, legend={"font": {"size": 10}, "tracegroupgap": 0}, hovermode="closest", **kw)
    return fig


def _scatter_cls(points: int) -> type:
    return go.Scattergl if points > GL_ABOVE else go.Scatter


# -- configurations ------------------------------------------------------------------------------

@dataclass
class Config:
    index: int
    key: dict[str, Any]
    label: str  # report.labels' short name: the axes that differ among the configurations
    color: str
    full: str = ""  # the whole key, for hover text

    @property
    def group(self) -> str:
        return f"cfg{self.index}"

    @property
    def filter_key(self) -> list[str]:
        return ["" if self.key.get(k) is None else str(self.key[k]) for k in FILTER_KEYS]


class Trials:
    """The trials with a configuration index (`_cfg`, in report.summary's order), each row's kind
    of energy (`_kind`) and its energy figure (`_energy`: measured or estimated, J)."""

    def __init__(self, trials: pd.DataFrame) -> None:
        wanted = set(TRIAL_COLUMNS)
        df = trials[[c for c in trials.columns if c in wanted]].reset_index(drop=True)
        self.configs: list[Config] = []
        if df.empty:
            df["_cfg"] = pd.Series(dtype=int)
        else:
            df["_cfg"], self.configs = _configs(df)
        src = df["energy_source"].astype(object) if "energy_source" in df else pd.Series(None, index=df.index,
                                                                                          dtype=object)
        energy, est = _num(df, "energy_j"), _num(df, "energy_estimated_j")
        measured = src.isin(MEASURED_SOURCES) & energy.notna()
        estimated = ~measured & (((src == "estimated") & energy.notna()) | (energy.isna() & est.notna()))
        kind = pd.Series(None, index=df.index, dtype=object)
        kind[estimated] = ESTIMATED
        kind[measured] = MEASURED
        df["_kind"] = kind
        df["_energy"] = energy.where(energy.notna(), est)
        df["_flops"] = energy.isna() & est.notna()  # a FLOPs estimate of a remote model
        df["_requests"] = _num(df, "requests").fillna(_num(df, "batch_size"))
        # each row's (kind, source, scope, FLOPs) combination as a code: energy_words reads the few
        # distinct ones, not every row
        scope = df["energy_scope"].astype(object) if "energy_scope" in df else pd.Series(None, index=df.index,
                                                                                          dtype=object)
        sig = pd.DataFrame({"_kind": kind, "energy_source": src, "energy_scope": scope, "_flops": df["_flops"]})
        df["_esig"] = sig.groupby(list(sig.columns), dropna=False, sort=False).ngroup().to_numpy()
        self._esig_rows = sig.iloc[pd.Series(np.arange(len(df))).groupby(df["_esig"].to_numpy()).first().to_numpy()] \
            if len(df) else sig
        self.df = df
        self.ok = df[df["status"] == "ok"] if "status" in df else df.iloc[0:0]
        self.keys = [c.filter_key for c in self.configs]
        # many configurations: point charts draw one trace per value of this axis, coloured by it
        self.grouped = len(self.configs) > MAX_TRACES
        self.group_axis = next((a for a in ("model", "hardware", "sweep") if len({_value(c.key.get(a))
                                for c in self.configs}) > 1), "model")
        groups = sorted({_value(c.key.get(self.group_axis)) for c in self.configs})
        self.group_color = dict(zip(groups, _palette(len(groups)), strict=True))
        self.group_of = np.array([_value(c.key.get(self.group_axis)) for c in self.configs] or [""], dtype=object)
        self._cost: pd.Series | None = None

    def cost(self) -> pd.Series:
        """Per configuration: mean energy per request over its ok trials (J), the order drawn() picks by."""
        if self._cost is None:
            self._cost = self.stats(self.ok, self.energy_per(self.ok, "request"))["mean"]
        return self._cost

    def drawn(self, cfgs: Any, what: str = "configurations") -> tuple[list[int], str]:
        """The configurations a per-configuration chart draws, in summary order: all of `cfgs`, or
        past MAX_CONFIGS the cheapest by mean J per request; and a note sentence when capped."""
        cfgs = sorted({int(c) for c in cfgs})
        if len(cfgs) <= MAX_CONFIGS:
            return cfgs, ""
        cost = self.cost().reindex(cfgs).fillna(math.inf).to_numpy(dtype=float)
        ranked = [cfgs[i] for i in np.lexsort((np.asarray(cfgs), cost))]
        return sorted(ranked[:MAX_CONFIGS]), (
            f" {MAX_CONFIGS} of {len(cfgs):,} {what} drawn: those with the lowest mean energy per request; "
            "narrow with report --sweep or the filters to see others.")

    def energy_words(self, df: pd.DataFrame) -> str:
        """_energy_words of `df` (rows of self.df) from its distinct energy combinations."""
        if df.empty or "_esig" not in df:
            return _energy_words(df)
        return _energy_words(self._esig_rows.iloc[np.unique(df["_esig"].to_numpy())])

    def energy_per(self, df: pd.DataFrame, what: str) -> pd.Series:
        """J per token / request / word / 1k tokens, from the row's column or its estimate."""
        col = {"token": "j_per_token", "request": "j_per_request", "word": "j_per_word"}.get(what)
        den = {"token": _num(df, "output_tokens"), "request": df["_requests"], "word": _num(df, "output_words"),
               "1k": _num(df, "output_tokens") / 1000}[what]
        derived = df["_energy"] / den.where(den > 0)
        if col is None:
            return derived
        return _num(df, col).where(~df["_flops"], np.nan).fillna(derived)

    def stats(self, df: pd.DataFrame, values: pd.Series) -> pd.DataFrame:
        """Per configuration: mean, std, n and the 95 % t half-width of `values` (NaN left out)."""
        g = values.groupby(df["_cfg"])
        out = pd.DataFrame({"mean": g.mean(), "std": g.std(), "n": g.count()})
        out = out[out["n"] > 0]
        out["ci95"] = [(_t975(int(n) - 1) * s / math.sqrt(n)) if n > 1 and s == s else np.nan
                       for s, n in zip(out["std"], out["n"], strict=True)]
        return out

    def kind_of(self, df: pd.DataFrame) -> pd.Series:
        """Per configuration: measured if any row is, else estimated if any is, else None."""
        measured = (df["_kind"] == MEASURED).groupby(df["_cfg"]).any()
        estimated = (df["_kind"] == ESTIMATED).groupby(df["_cfg"]).any()
        out = pd.Series(None, index=measured.index, dtype=object)
        out[estimated.to_numpy()] = ESTIMATED
        out[measured.to_numpy()] = MEASURED
        return out

    def cap(self, df: pd.DataFrame, limit: int | None = None) -> tuple[pd.DataFrame, bool]:
        """At most `limit` rows (MAX_POINTS; half that where the configurations are grouped, each point
        then carrying its label): each configuration keeps its share (at least one row), at random
        with a fixed seed."""
        if limit is None:
            limit = MAX_POINTS // 2 if self.grouped else MAX_POINTS
        if len(df) <= limit:
            return df, False
        counts = df["_cfg"].value_counts()
        quota = np.maximum(1, np.floor(counts * limit / len(df))).astype(int)
        rng = np.random.default_rng(0)
        rank = pd.Series(rng.random(len(df)), index=df.index).groupby(df["_cfg"]).rank(method="first")
        out = df[rank <= df["_cfg"].map(quota)]
        if len(out) > limit:  # more configurations than points: one trial of `limit` of them, at random
            out = out.iloc[np.sort(rng.choice(len(out), size=limit, replace=False))]
        return out, True


def _configs(df: pd.DataFrame) -> tuple[np.ndarray, list[Config]]:
    """Each row's configuration index, in report.summary's order (nulls of a key together; the later
    axes' defaults applied as summary.configurations does), without a Python loop over rows."""
    codes = np.empty((len(df), len(CONFIG_KEYS)), dtype=np.int64)
    values: list[list[Any]] = []
    for j, k in enumerate(CONFIG_KEYS):
        # each column in its own type (factorized faster than as objects), its distinct values normalised
        col = df[k] if k in df else pd.Series(None, index=df.index, dtype=object)
        if k == "requests" and "batch_size" in df:
            col = col.where(col.notna(), df["batch_size"])
        c, uniques = pd.factorize(col, use_na_sentinel=True)
        normed = [_norm(u) for u in uniques]
        if k == "chat_template" and (c < 0).any():  # no template: the default, auto
            normed.append("auto")
            c = np.where(c < 0, len(normed) - 1, c)
        canon: dict[Any, int] = {}
        remap = np.array([canon.setdefault((type(v) is str, v), len(canon)) for v in normed] or [0], dtype=np.int64)
        vals: list[Any] = [None] * (len(canon) + 1)
        for v in normed:
            vals[canon[(type(v) is str, v)]] = v
        codes[:, j] = np.where(c < 0, len(canon), remap[np.maximum(c, 0)])
        values.append(vals)
    # one id per distinct row of codes: fold the columns in one at a time, re-factorizing (hashing,
    # not sorting) so the combined number stays small
    combined = np.zeros(len(df), dtype=np.int64)
    for j in range(len(CONFIG_KEYS)):
        combined, _ = pd.factorize(combined * (len(values[j]) + 1) + codes[:, j])
        combined = combined.astype(np.int64)
    inverse = combined
    first = pd.Series(np.arange(len(df))).groupby(inverse).first().to_numpy()
    uniq = codes[first]  # one row of value codes per configuration
    # summary's order (_order of the key tuple): each column's values ranked once, then a stable
    # lexsort of the ranks; ties keep the order of first appearance, as sorted() does
    ranks = []
    for vals in values:
        orders = [_order((v,)) for v in vals]
        dense = {o: i for i, o in enumerate(sorted(set(orders)))}
        ranks.append(np.array([dense[o] for o in orders], dtype=np.int64))
    order = np.lexsort([ranks[j][uniq[:, j]] for j in reversed(range(len(CONFIG_KEYS)))]) if len(uniq) else \
        np.zeros(0, dtype=np.int64)
    rank = np.empty(len(uniq), dtype=np.int64)
    rank[order] = np.arange(len(uniq))
    uniq = uniq[order]
    cols = [[values[j][c] for c in uniq[:, j].tolist()] for j in range(len(CONFIG_KEYS))]
    sorted_keys = [dict(zip(CONFIG_KEYS, row, strict=True)) for row in zip(*cols, strict=True)]
    # each axis's words (a name's, the full name's) per distinct value, not per configuration
    fulls = []
    for j, k in enumerate(CONFIG_KEYS):
        f = [full_name({k: v}) for v in values[j]]
        fulls.append([f[c] for c in uniq[:, j].tolist()])
    all_parts = naming.parts_columns(dict(zip(CONFIG_KEYS, cols, strict=True)), len(uniq))
    full = [" · ".join(w for w in row if w) for row in zip(*fulls, strict=True)]
    colors = _palette(len(sorted_keys))
    configs = [Config(i, key, name, colors[i], full[i])
               for i, (key, name) in enumerate(zip(sorted_keys, naming.names(all_parts), strict=True))]
    return rank[np.asarray(inverse).reshape(-1)], configs


def _energy_words(df: pd.DataFrame) -> str:
    """What the energy of these rows is: measured or estimated, and over what."""
    if df.empty:
        return "no energy figures"
    parts = []
    src = df["energy_source"].astype(object) if "energy_source" in df else pd.Series(None, index=df.index)
    scope = df["energy_scope"].astype(object) if "energy_scope" in df else pd.Series(None, index=df.index)
    pairs = pd.DataFrame({"k": df["_kind"], "src": src, "scope": scope, "flops": df["_flops"]}).drop_duplicates()
    for kind in (MEASURED, ESTIMATED):
        sel = pairs[pairs["k"] == kind]
        if sel.empty:
            continue
        scopes = sorted({str(s).split(":")[0] for s in sel["scope"] if _norm(s) is not None})
        what = ", ".join(scopes)
        if kind == ESTIMATED and sel["flops"].any():
            what = ", ".join([*scopes, "an API model's FLOPs estimate"])
        if kind == ESTIMATED and (sel["src"] == "estimated").any():
            what += ": CodeCarbon's model of load, not a reading"
        parts.append(f"{kind} ({what})" if what else kind)
    return " and ".join(parts) or "not measured"


ENERGY_COVERS = ("the trial's window (every batch's generation) on its device, not idle-subtracted, without model "
                 "load, warmup or the wall's overhead")


def _cap_note(capped: bool, df: pd.DataFrame, total: int) -> str:
    return (f" Drawn: a sample of {len(df):,} of {total:,} trials, each configuration in proportion."
            if capped else "")


# -- trace builders ------------------------------------------------------------------------------

def _point_traces(t: Trials, df: pd.DataFrame, x: pd.Series, y: pd.Series, hover: str,
                  error_x: pd.Series | None = None, error_y: pd.Series | None = None,
                  per_point_keys: bool = False, kinds: pd.Series | None = None,
                  mode: str = "markers", error_y_minus: pd.Series | None = None) -> list[Any]:
    """One trace per (configuration, kind), coloured by configuration, filled or hollow by kind."""
    kinds = df["_kind"] if kinds is None else kinds
    keep = x.notna() & y.notna() & kinds.notna()
    cls = _scatter_cls(int(keep.sum()))
    traces = []
    sub = pd.DataFrame({"cfg": df["_cfg"], "kind": kinds, "x": x, "y": y,
                        "ex": error_x if error_x is not None else np.nan,
                        "ey": error_y if error_y is not None else np.nan,
                        "eym": error_y_minus if error_y_minus is not None else np.nan})[keep]
    if t.grouped:
        return _grouped_point_traces(t, sub, hover, cls, mode, error_x is not None, error_y is not None)
    for (cfg, kind), g in sub.groupby(["cfg", "kind"], sort=True):
        c = t.configs[int(cfg)]
        meta: dict[str, Any] = {"kind": kind}
        if per_point_keys:
            meta["keys"] = [c.filter_key] * len(g)
        else:
            meta["key"] = c.filter_key
        kw: dict[str, Any] = {}
        if error_x is not None and g["ex"].notna().any():
            kw["error_x"] = {"type": "data", "array": _sig(g["ex"]), "thickness": 1, "width": 2}
        if error_y is not None and g["ey"].notna().any():
            kw["error_y"] = {"type": "data", "array": _sig(g["ey"]), "thickness": 1, "width": 2}
            if g["eym"].notna().any():  # an asymmetric interval (Wilson's, for accuracy)
                kw["error_y"]["arrayminus"] = _sig(g["eym"])
            if error_y_minus is not None:  # an asymmetric interval (Wilson's)
                kw["error_y"].update(symmetric=False, arrayminus=_sig(g["eym"]))
        traces.append(cls(
            _validate=VALIDATE,
            x=_sig(g["x"]), y=_sig(g["y"]), mode=mode, name=c.label + ("" if kind == MEASURED else f" ({kind})"),
            legendgroup=c.group, meta=meta,
            marker={"color": c.color, "symbol": SYMBOL[kind], "size": 8 if len(g) < 50 else 6,
                    "line": {"color": c.color, "width": 1.5}},
            hovertemplate=f"{c.full} ({kind})<br>{hover}<extra></extra>", **kw))
    return traces


def _grouped_point_traces(t: Trials, sub: pd.DataFrame, hover: str, cls: type, mode: str, ex: bool,
                          ey: bool) -> list[Any]:
    """One trace per (model or hardware, kind): many configurations in a few traces, each point with
    its configuration's filter keys (meta.keys) and label (hover)."""
    traces = []
    sub = sub.assign(grp=t.group_of[sub["cfg"].to_numpy(dtype=int)])
    for (grp, kind), g in sub.groupby(["grp", "kind"], sort=True):
        cfgs = g["cfg"].to_numpy(dtype=int).tolist()
        color = t.group_color[grp]
        kw: dict[str, Any] = {}
        if ex and g["ex"].notna().any():
            kw["error_x"] = {"type": "data", "array": _sig(g["ex"]), "thickness": 1, "width": 2}
        if ey and g["ey"].notna().any():
            kw["error_y"] = {"type": "data", "array": _sig(g["ey"]), "thickness": 1, "width": 2}
            if g["eym"].notna().any():  # an asymmetric interval (Wilson's, for accuracy)
                kw["error_y"]["arrayminus"] = _sig(g["eym"])
        traces.append(cls(
            _validate=VALIDATE, x=_sig(g["x"]), y=_sig(g["y"]), mode=mode,
            name=f"{grp}" + ("" if kind == MEASURED else f" ({kind})"), legendgroup=str(grp),
            text=[t.configs[i].label for i in cfgs], meta={"kind": kind, "keys": [t.keys[i] for i in cfgs]},
            marker={"color": color, "symbol": SYMBOL[kind], "size": 7 if len(g) < 50 else 5,
                    "line": {"color": color, "width": 1}},
            hovertemplate=f"%{{text}} ({kind})<br>{hover}<extra></extra>", **kw))
    return traces


def _grouped_note(t: Trials) -> str:
    return (f" {len(t.configs):,} configurations: coloured by {t.group_axis}, one legend entry each; hover a "
            "point for its configuration." if t.grouped else "")


def _external_traces(points: pd.DataFrame, hover: str) -> list[Any]:
    """External rows (x, y, label, source columns) as open diamonds named 'external: <source>'."""
    traces = []
    for source, g in points.groupby("source", sort=True):
        numeric = pd.api.types.is_numeric_dtype(g["x"])
        traces.append(go.Scatter(_validate=VALIDATE,
            x=_sig(g["x"]) if numeric else [str(v) for v in g["x"]], y=_sig(g["y"]), mode="markers",
            name=f"external: {source}",
            text=list(g["label"]), meta={"kind": EXTERNAL, "source": str(source)},
            marker={"symbol": SYMBOL[EXTERNAL], "size": 10, "color": "#333333", "line": {"width": 1.5}},
            hovertemplate=f"%{{text}}<br>{hover}<br>external: {source}<extra></extra>"))
    return traces


def _frontier_trace(traces: list[Any], x: str, y: str) -> Any:
    xs: list[Any] = []
    ys: list[Any] = []
    for tr in traces:
        if isinstance(tr.meta, dict) and tr.meta.get("kind") in (MEASURED, ESTIMATED):
            xs += list(tr.x)
            ys += list(tr.y)
    idx = pareto_front(xs, ys, x=x, y=y)
    return go.Scatter(_validate=VALIDATE, x=[xs[i] for i in idx], y=[ys[i] for i in idx], mode="lines", name="Pareto frontier",
                      meta={"role": "frontier"}, line={"color": "#222222", "width": 2, "shape": "linear"},
                      hoverinfo="skip")


# -- external rows -------------------------------------------------------------------------------

_UNIT_SCALE = {("j", "kwh"): 3.6e6, ("j", "wh"): 3600.0, ("j", "kj"): 1000.0, ("g", "kg"): 1000.0,
               ("s", "ms"): 1e-3}
# metric names external files may use, mapped to the views' (with the base unit of the name)
_EXT_METRICS = {"j_per_token": "j_per_token", "energy_per_token_j": "j_per_token",
                "j_per_request": "j_per_request", "energy_per_request_j": "j_per_request", "energy_j": "j_per_request",
                "energy_kwh": "j_per_request", "tpot_s": "tpot_s", "s_per_token": "tpot_s", "latency_s": "latency_s",
                "accuracy": "accuracy", "co2_g_per_request": "co2_g_per_request", "co2_kg": "co2_g_per_request",
                "co2_g": "co2_g_per_request", "tokens_per_s": "tokens_per_s"}


def _external_wide(external: pd.DataFrame) -> pd.DataFrame:
    """External rows pivoted to one row per (source, model, hardware, precision, batch_size), a
    column per metric the views know, in the views' units (kWh -> J, kg -> g)."""
    if external is None or external.empty or not {"metric", "value"} <= set(external.columns):
        return pd.DataFrame()
    ext = external.copy()
    for c in ("model", "hardware", "precision", "batch_size", "source", "unit"):
        if c not in ext:
            ext[c] = None
    rows = []
    for _, r in ext.iterrows():
        metric = _EXT_METRICS.get(str(r["metric"]).strip().lower())
        value = pd.to_numeric(pd.Series([r["value"]]), errors="coerce").iloc[0]
        if metric is None or pd.isna(value):
            continue
        unit = str(r["unit"] or "").strip().lower()
        name = str(r["metric"]).strip().lower()
        base = "j" if metric.startswith("j_") else "g" if metric.startswith("co2") else "s" if metric.endswith(
            "_s") else ""
        for u in (unit, name.rsplit("_", 1)[-1]):
            if (base, u) in _UNIT_SCALE:
                value *= _UNIT_SCALE[(base, u)]
                break
        if metric == "accuracy" and value > 1:
            value /= 100  # given in percent
        rows.append({"source": str(r["source"] or "external"), "model": _value(r["model"]),
                     "hardware": _value(r["hardware"]), "precision": _value(r["precision"]),
                     "batch_size": _value(r["batch_size"]), "metric": metric, "value": float(value)})
    if not rows:
        return pd.DataFrame()
    long = pd.DataFrame(rows)
    wide = long.pivot_table(index=["source", "model", "hardware", "precision", "batch_size"], columns="metric",
                            values="value", aggfunc="mean").reset_index()
    wide["label"] = [f"{m} · {h} · {p} · batch {b}" for m, h, p, b in
                     zip(wide["model"], wide["hardware"], wide["precision"], wide["batch_size"], strict=True)]
    return wide


def _ext_points(wide: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    if wide.empty or x not in wide or y not in wide:
        return pd.DataFrame(columns=["x", "y", "label", "source"])
    sel = wide[wide[x].notna() & wide[y].notna()]
    return pd.DataFrame({"x": sel[x], "y": sel[y], "label": sel["label"], "source": sel["source"]})


# -- the views -----------------------------------------------------------------------------------

def _empty(vid: str, title: str, family: str, why: str) -> View:
    return View(vid, title, family, None, why)


NO_TRIALS = "no trials in the store: run a sweep first (python -m energyray sweep=smoke)"
NO_ENERGY = ("no ok trial has an energy figure: run on a device with a sampler (NVML on a GPU, RAPL or CodeCarbon "
             "on a CPU); energy_reason in the trials says why it is null")


def _latency(df: pd.DataFrame) -> pd.Series:
    """Seconds per request: the API's mean request latency, else each batch's generation time."""
    per_batch = _num(df, "duration_s") / _num(df, "batches").where(_num(df, "batches") > 0).fillna(1)
    return _num(df, "latency_request_s_mean").fillna(per_batch)


LATENCY_WORDS = ("latency: the mean request latency where the backend times requests, else each batch's "
                 "generation time (duration_s / batches; the requests of a batch share it)")


def v_energy_vs_input_tokens(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "energy_vs_input_tokens", "Energy vs input tokens", "Energy and latency"
    ok = t.ok[t.ok["_energy"].notna() & _num(t.ok, "input_tokens").notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_ENERGY)
    df, capped = t.cap(ok)
    fig = _figure(_point_traces(t, df, _num(df, "input_tokens"), df["_energy"],
                                  "input tokens %{x}<br>energy %{y} J"))
    _layout(fig, "Input tokens per trial (prompt tokens of all its requests)", "Energy per trial (J)")
    note = (f"Each point is one trial: its energy over {ENERGY_COVERS}, against the prompt tokens it sent. "
            f"Energy here: {t.energy_words(ok)}.{_cap_note(capped, df, len(ok))}{_grouped_note(t)}")
    return View(vid, title, fam, fig, note)


def v_latency_vs_j_per_1k(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "latency_vs_j_per_1k_tokens", "Latency vs energy per 1,000 tokens", "Energy and latency"
    ok = t.ok.assign(_y=t.energy_per(t.ok, "1k"), _x=_latency(t.ok))
    ok = ok[ok["_y"].notna() & ok["_x"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_ENERGY)
    df, capped = t.cap(ok)
    traces = _point_traces(t, df, df["_x"], df["_y"], "latency %{x} s<br>%{y} J per 1,000 output tokens")
    e = _ext_points(ext, "latency_s", "j_per_token")
    e["y"] = e["y"] * 1000
    traces += _external_traces(e, "latency %{x} s<br>%{y} J per 1,000 tokens")
    fig = _layout(_figure(traces), "Latency per request (s)", "Energy per 1,000 output tokens (J)")
    note = (f"Each point is one trial; {LATENCY_WORDS}. Energy: {t.energy_words(ok)} over {ENERGY_COVERS}, "
            f"per 1,000 output tokens.{_cap_note(capped, df, len(ok))}{_grouped_note(t)}")
    return View(vid, title, fam, fig, note)


def _accuracy(df: pd.DataFrame) -> pd.Series:
    return _num(df, "accuracy")


def v_energy_accuracy(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "energy_accuracy_frontier", "Energy–accuracy frontier (trials)", "Quality"
    ok = t.ok.assign(_x=t.energy_per(t.ok, "request"), _y=_accuracy(t.ok))
    ok = ok[ok["_x"].notna() & ok["_y"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      "no trial has both an energy figure and an accuracy: score a task with gold answers on real "
                      "weights (weights=real, e.g. task=qa); accuracy_reason in the trials says why it is null")
    df, capped = t.cap(ok)
    traces = _point_traces(t, df, df["_x"], df["_y"], "%{x} J per request<br>accuracy %{y}", per_point_keys=True)
    fig = _figure([*traces, _frontier_trace(traces, "min", "max")])
    _layout(fig, "Energy per request (J)", "Accuracy (share of scored requests correct)")
    fig.layout.meta = {"pareto": {"x": "min", "y": "max", "deadline": None, "budget": "x"}}
    note = (f"Each point is one trial; the line joins the trials no other trial beats on both energy per request "
            f"and accuracy. Energy: {t.energy_words(ok)} over {ENERGY_COVERS}.{_cap_note(capped, df, len(ok))}"
            f"{_grouped_note(t)}")
    return View(vid, title, fam, fig, note)


def v_latency_distribution(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "latency_distribution", "Latency distribution", "Energy and latency"
    ok = t.ok.assign(_x=_latency(t.ok))
    ok = ok[ok["_x"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else "no ok trial has a duration: the trials failed")
    cfgs, capped = t.drawn(ok["_cfg"].unique())
    ok = ok[ok["_cfg"].isin(cfgs)]
    traces = []
    for cfg, g in ok.groupby("_cfg", sort=True):
        c = t.configs[int(cfg)]
        v = g["_x"].to_numpy(dtype=float)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        iqr = q3 - q1
        lo = v[v >= q1 - 1.5 * iqr].min()
        hi = v[v <= q3 + 1.5 * iqr].max()
        traces.append(go.Box(_validate=VALIDATE,
            y=[c.label], q1=_sig([q1]), median=_sig([med]), q3=_sig([q3]), lowerfence=_sig([lo]),
            upperfence=_sig([hi]), mean=_sig([v.mean()]), boxmean=True, orientation="h", name=c.label,
            marker_color=c.color,
            meta={"key": c.filter_key, "kind": MEASURED}, hovertext=f"{len(v)} trials"))
    fig = _layout(_figure(traces), "Latency per request (s)", "", showlegend=False)
    fig.update_yaxes(autorange="reversed", type="category", automargin=True, **_category_font(len(traces)))
    note = (f"Per configuration: the quartiles of its trials' latency (box), the median, the mean (dashed) and "
            f"the range within 1.5 x the interquartile range; {LATENCY_WORDS}. Time only: no energy.{capped}")
    return View(vid, title, fam, fig, note)


def v_emissions_vs_latency(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "emissions_vs_latency", "Emissions vs latency", "Energy and latency"
    co2 = _num(t.ok, "co2_g_per_request").fillna(_num(t.ok, "co2_g") / t.ok["_requests"])
    ok = t.ok.assign(_x=_latency(t.ok), _y=co2)
    ok = ok[ok["_x"].notna() & ok["_y"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      "no trial has a CO2 figure: co2_g needs a measured energy and a carbon intensity "
                      "(footprint.region or footprint.carbon_intensity_g_per_kwh); co2_reason says why it is null")
    est = ok["co2_estimated"].astype(object) if "co2_estimated" in ok else pd.Series(None, index=ok.index)
    kinds = pd.Series(np.where(est.eq(True), ESTIMATED, MEASURED), index=ok.index)
    df, capped = t.cap(ok)
    traces = _point_traces(t, df, df["_x"], df["_y"], "latency %{x} s<br>%{y} g CO2e per request",
                           kinds=kinds.loc[df.index])
    traces += _external_traces(_ext_points(ext, "latency_s", "co2_g_per_request"),
                               "latency %{x} s<br>%{y} g CO2e per request")
    fig = _layout(_figure(traces), "Latency per request (s)", "Emissions per request (g CO2e)")
    sources = sorted({str(s) for s in ok.get("carbon_intensity_source", pd.Series(dtype=object)).dropna().unique()})
    note = (f"Each point is one trial: co2_g per request, the CO2 of its energy ({t.energy_words(ok)} over "
            f"{ENERGY_COVERS}) at the grid's carbon intensity"
            + (f" ({'; '.join(sources[:3])})" if sources else "") + f"; {LATENCY_WORDS}."
            + _cap_note(capped, df, len(ok)) + _grouped_note(t))
    return View(vid, title, fam, fig, note)


# -- the series views --------------------------------------------------------------------------

def _series(t: Trials, series: pd.DataFrame) -> pd.DataFrame:
    """The downsampled samples with each trial's configuration, sorted, at most MAX_POINTS rows."""
    if series is None or series.empty or "trial_id" not in series or "trial_id" not in t.df:
        return pd.DataFrame()
    s = series.merge(t.df[["trial_id", "_cfg"]].drop_duplicates("trial_id"), on="trial_id", how="inner")
    if s.empty:
        return s
    for c in ("source", "phase"):
        if c not in s:
            s[c] = None
    s["source"] = s["source"].astype(object).where(s["source"].notna(), "?")
    s = s.sort_values(["_cfg", "trial_id", "source", "t_s"], kind="stable").reset_index(drop=True)
    if len(s) > MAX_POINTS:  # every k-th point of each series
        k = math.ceil(len(s) / MAX_POINTS)
        s = s[s.groupby(["trial_id", "source"]).cumcount() % k == 0]
        s.attrs["capped"] = k
    return s


def _series_kind(source: Any) -> str:
    return ESTIMATED if str(source).lower() in ESTIMATED_SOURCES else MEASURED


def _is_wall(source: Any) -> bool:
    s = str(source).lower()
    return any(w in s for w in WALL_SOURCES)


def _phase_rank(p: Any) -> tuple[int, str]:
    p = str(p)
    return (PHASE_ORDER.index(p) if p in PHASE_ORDER else len(PHASE_ORDER), p)


def _series_note(s: pd.DataFrame) -> str:
    n = s["trial_id"].nunique()
    k = s.attrs.get("capped")
    return (f" {n} representative trial(s); each series averaged into time buckets"
            + (f", then every {k}th bucket kept" if k else "") + ".")


NO_SERIES = ("no power readings in the samples of the trials shown (none stored, or a sampler that reads no power, "
             "such as CodeCarbon): run with a sampler that polls power (NVML on a GPU, RAPL on a CPU)")


def v_power_by_phase(t: Trials, series: pd.DataFrame) -> View:
    vid, title, fam = "power_by_phase", "Power over time, by phase", "Power over time"
    s = _series(t, series)
    if s.empty or _num(s, "power_w").isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_SERIES)
    phases = sorted({str(p) for p in s["phase"].dropna()}, key=_phase_rank)
    sym = {p: PHASE_SYMBOLS[i % len(PHASE_SYMBOLS)] for i, p in enumerate(phases)}
    traces: list[Any] = []
    seen: set[int] = set()
    walls = 0
    for (cfg, _tid, src), g in s.groupby(["_cfg", "trial_id", "source"], sort=False):
        g = g[_num(g, "power_w").notna()]  # a sampler without power (CodeCarbon) draws nothing
        if g.empty:
            continue
        c = t.configs[int(cfg)]
        kind = _series_kind(src)
        wall = _is_wall(src)
        walls += wall
        what = "wall (PDU)" if wall else str(src)
        ph = [str(p) if _norm(p) is not None else "-" for p in g["phase"]]
        symbols = [sym.get(p, "circle") + ("-open" if kind == ESTIMATED else "") for p in ph]
        traces.append(go.Scatter(_validate=VALIDATE,
            x=_sig(g["t_s"]), y=_sig(g["power_w"]), mode="lines+markers", name=_series_name(c, kind),
            showlegend=_first_of(c, seen), legendgroup=c.group, text=ph, meta={"key": c.filter_key, "kind": kind},
            line={"color": c.color, "dash": DASH[kind], "width": 4 if wall else 1.5}, opacity=0.5 if wall else 1.0,
            marker={"symbol": symbols, "size": 5, "color": c.color},
            hovertemplate=f"{c.full} · {what} ({kind})<br>%{{x}} s: %{{y}} W<br>phase %{{text}}<extra></extra>"))
    if not traces:
        return _empty(vid, title, fam, NO_SERIES)
    traces += _wall_legend(walls)
    for p in phases:  # a legend of the phase markers
        traces.append(go.Scatter(_validate=VALIDATE, x=[None], y=[None], mode="markers", name=f"phase: {p}", meta={"role": "legend"},
                                 marker={"symbol": sym[p], "color": "#555555", "size": 7}, hoverinfo="skip"))
    fig = _layout(_figure(traces), "Time since the trial's first sample (s)", "Power (W)")
    note = ("Power of each sampled device over the trial's life (idle baseline, model load, warmup, prefill, decode, "
            "response, unload), the marker showing the phase; the mean power in each bucket. A wall (PDU) series "
            "(thick, pale) is the whole node; CodeCarbon's samples hold no power (its energy is an estimate per "
            "trial) and are not drawn." + _series_note(s))
    return View(vid, title, fam, fig, note)


def _first_of(c: Config, seen: set[int]) -> bool:
    """True the first time a configuration comes: one legend entry for all its series."""
    first = c.index not in seen
    seen.add(c.index)
    return first


def _series_name(c: Config, kind: str) -> str:
    return c.label + ("" if kind == MEASURED else f" ({kind})")


def _wall_legend(walls: int) -> list[Any]:
    """Legend entries saying which line is the device and which the wall, where walls are drawn."""
    if not walls:
        return []
    return [go.Scatter(_validate=VALIDATE, x=[None], y=[None], mode="lines", name=name, meta={"role": "legend"},
                       line={"color": "#777777", "width": width}, opacity=opacity, hoverinfo="skip")
            for name, width, opacity in (("thin: the device", 1.5, 1.0), ("thick, pale: the wall (PDU)", 4, 0.5))]


def v_cumulative_energy(t: Trials, series: pd.DataFrame) -> View:
    vid, title, fam = "cumulative_energy_gpu_wall", "Cumulative energy: device beside wall (PDU)", "Power over time"
    s = _series(t, series)
    if s.empty or _num(s, "energy_j").isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_SERIES)
    traces: list[Any] = []
    seen: set[int] = set()
    walls = 0
    for (cfg, _tid, src), g in s.groupby(["_cfg", "trial_id", "source"], sort=False):
        c = t.configs[int(cfg)]
        kind = _series_kind(src)
        g = g[_num(g, "energy_j").notna()]
        if g.empty:
            continue
        e = _num(g, "energy_j")
        wall = _is_wall(src)
        walls += wall
        what = "wall (PDU)" if wall else str(src)
        traces.append(go.Scatter(_validate=VALIDATE,
            x=_sig(g["t_s"]), y=_sig(e - e.iloc[0]), mode="lines", name=_series_name(c, kind),
            showlegend=_first_of(c, seen), legendgroup=c.group, meta={"key": c.filter_key, "kind": kind},
            line={"color": c.color, "dash": DASH[kind], "width": 4 if wall else 1.5},
            opacity=0.55 if wall else 1.0,
            hovertemplate=f"{c.full} · {what} ({kind})<br>%{{x}} s: %{{y}} J<extra></extra>"))
    traces += _wall_legend(walls)
    if not traces:
        return _empty(vid, title, fam, NO_SERIES)
    fig = _layout(_figure(traces), "Time since the trial's first sample (s)", "Energy since the first sample (J)")
    note = ("Energy accumulated over each trial's samples: the device (thin: a GPU's board from NVML, or a CPU) "
            "and, where a PDU node sampler ran, the whole node at the wall (thick, pale): the gap is the rest of "
            "the host. A wall series is read with the PDU's configured OID and unit (watts, not amps)."
            + ("" if walls else " No wall series here: add a PDU node sampler (docs/measurement.md) to compare.")
            + _series_note(s))
    return View(vid, title, fam, fig, note)


def v_temperature(t: Trials, series: pd.DataFrame) -> View:
    vid, title, fam = "temperature", "Device temperature over time", "Power over time"
    s = _series(t, series)
    if s.empty or _num(s, "temperature_c").isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      "no temperature in the samples: the sampler reads none (NVML on a GPU does; CodeCarbon and "
                      "RAPL do not)")
    traces = []
    seen: set[int] = set()
    for (cfg, _tid, src), g in s.groupby(["_cfg", "trial_id", "source"], sort=False):
        g = g[_num(g, "temperature_c").notna()]
        if g.empty:
            continue
        temp = _num(g, "temperature_c")
        c = t.configs[int(cfg)]
        traces.append(go.Scatter(_validate=VALIDATE,
            x=_sig(g["t_s"]), y=_sig(temp), mode="lines", name=c.label, legendgroup=c.group,
            showlegend=_first_of(c, seen),
            meta={"key": c.filter_key, "kind": MEASURED}, line={"color": c.color, "width": 1.5},
            hovertemplate=f"{c.full} · {src}<br>%{{x}} s: %{{y}} °C<extra></extra>"))
    fig = _layout(_figure(traces), "Time since the trial's first sample (s)", "Device temperature (°C)")
    note = ("The device's temperature over each trial's life as its sampler read it; heat carries over between "
            "trials (temperature_start_c records it at each start)." + _series_note(s))
    return View(vid, title, fam, fig, note)


# -- per-configuration bars ----------------------------------------------------------------------

def _bars(t: Trials, df: pd.DataFrame, values: pd.Series, hover_unit: str,
          kinds: pd.Series | None = None) -> tuple[list[Any], str]:
    """One bar per configuration (mean, 95 % CI error bar), filled for measured, hollow for estimated;
    at most MAX_CONFIGS of them, and the note sentence saying which when capped."""
    df = df.assign(_v=values)
    df = df[df["_v"].notna()]
    cfgs, capped = t.drawn(df["_cfg"].unique())
    if capped:
        df = df[df["_cfg"].isin(cfgs)]
    st = t.stats(df, df["_v"])
    kind = t.kind_of(df) if kinds is None else kinds.groupby(df["_cfg"]).first()
    traces = []
    for cfg, r in st.iterrows():
        c = t.configs[int(cfg)]
        k = kind.get(cfg) or MEASURED
        marker: dict[str, Any] = {"color": c.color, "line": {"color": c.color, "width": 2}}
        if k == ESTIMATED:
            marker = {"color": "rgba(255,255,255,0)", "line": {"color": c.color, "width": 2},
                      "pattern": {"shape": "/", "fgcolor": c.color, "size": 6}}
        traces.append(go.Bar(_validate=VALIDATE,
            y=[c.label], x=_sig([r["mean"]]), orientation="h", name=c.label + ("" if k == MEASURED else f" ({k})"),
            marker=marker, meta={"key": c.filter_key, "kind": k},
            error_x={"type": "data", "array": _sig([r["ci95"]]), "visible": bool(r["ci95"] == r["ci95"])},
            hovertemplate=f"{c.full} ({k})<br>%{{x}} {hover_unit}<br>n={int(r['n'])} trials<extra></extra>"))
    return traces, capped


def _bar_layout(fig: go.Figure, x: str, n: int | None = None, **kw: Any) -> go.Figure:
    """Horizontal bars, one row per configuration in order, each labelled."""
    n = len({str(y) for tr in fig.data for y in (tr.y or ())}) if n is None else n
    _layout(fig, x, "", showlegend=False, bargap=0.25, **kw)
    fig.update_yaxes(type="category", autorange="reversed", automargin=True, **_category_font(n))
    return fig


def v_energy_per_word(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "energy_per_word", "Energy per output word", "Words"
    v = t.energy_per(t.ok, "word")
    if v.isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      NO_ENERGY if t.ok["_energy"].isna().all() else "no trial counted its output words")
    traces, capped = _bars(t, t.ok, v, "J per word")
    fig = _bar_layout(_figure(traces), "Energy per output word (J)")
    note = (f"Mean over each configuration's trials of energy / words generated (95 % CI bars); hollow bars are "
            f"estimates. Energy: {t.energy_words(t.ok[v.notna()])} over {ENERGY_COVERS}.{capped}")
    return View(vid, title, fam, fig, note)


def v_words_per_model(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "words_per_model", "Words generated per request", "Words"
    v = _num(t.ok, "output_words") / t.ok["_requests"].where(t.ok["_requests"] > 0)
    if v.isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else "no trial counted its output words")
    kinds = pd.Series(MEASURED, index=t.ok.index)
    traces, capped = _bars(t, t.ok, v, "words per request", kinds=kinds)
    fig = _bar_layout(_figure(traces), "Words generated per request")
    note = ("Mean words of text generated per request (output_words / requests) per configuration, 95 % CI bars; "
            "a count, not an energy. Longer answers cost more energy per request at the same J per word." + capped)
    return View(vid, title, fam, fig, note)


def _config_of_rows(t: Trials, df: pd.DataFrame) -> pd.Series:
    """The configuration index of rows keyed by CONFIG_KEYS (e.g. responses_by_category), by key."""
    if not t.configs:
        return pd.Series(np.nan, index=df.index)
    # a `requests` column there may be a count of requests, not the axis: match without it where the
    # whole key finds nothing (the first configuration in order where several differ only by it)
    rest = [k for k in CONFIG_KEYS if k != "requests"]
    lookup = {tuple(c.key[k] for k in CONFIG_KEYS): c.index for c in t.configs}
    loose: dict[tuple[Any, ...], int] = {}
    for c in t.configs:
        loose.setdefault(tuple(c.key[k] for k in rest), c.index)
    keyed = df.reindex(columns=list(CONFIG_KEYS))  # the columns' own types: grouped faster than objects
    keyed["chat_template"] = keyed["chat_template"].where(keyed["chat_template"].notna(), "auto")
    keyed["requests"] = keyed["requests"].where(keyed["requests"].notna(), keyed["batch_size"])
    # each distinct key looked up once (many rows share one: a row per category)
    codes = keyed.groupby(list(CONFIG_KEYS), dropna=False, sort=False).ngroup().to_numpy()
    first = pd.Series(np.arange(len(keyed))).groupby(codes).first()
    uniq = keyed.iloc[first.to_numpy()]
    cols = []
    for k in CONFIG_KEYS:  # each column's distinct values normalised once
        c, uniques = pd.factorize(uniq[k], use_na_sentinel=True)
        normed = [_norm(u) for u in uniques] + [None]
        cols.append([normed[i] for i in c.tolist()])
    skip = CONFIG_KEYS.index("requests")
    out = []
    for full in zip(*cols, strict=True):
        found = lookup.get(full)
        out.append(found if found is not None else loose.get(full[:skip] + full[skip + 1:], np.nan))
    per_code = pd.Series(out, index=first.index, dtype=float)
    return pd.Series(per_code.reindex(codes).to_numpy(), index=df.index, dtype=float)


def v_accuracy_per_category(t: Trials, categories: pd.DataFrame) -> View:
    vid, title, fam = "accuracy_per_category", "Accuracy per category", "Quality"
    why = ("no scored responses with a category: run a task whose items have categories and gold answers on real "
           "weights (e.g. task=hle or task=qa, weights=real)")
    if categories is None or categories.empty or "category" not in categories:
        return _empty(vid, title, fam, why)
    cat = categories.copy()
    cat["_cfg"] = _config_of_rows(t, cat)
    # the count of scored responses ("requests" in the query's rows is the configuration's axis)
    count = next((c for c in ("scored", "responses") if c in cat.columns), None)
    acc = _num(cat, "accuracy")
    if acc.isna().all() and count and "correct" in cat.columns:
        acc = _num(cat, "correct") / _num(cat, count).where(_num(cat, count) > 0)
    cat["_acc"] = acc
    cat = cat[cat["_acc"].notna() & cat["_cfg"].notna() & cat["category"].notna()]
    if cat.empty:
        return _empty(vid, title, fam, why)
    cfgs, capped = t.drawn(cat["_cfg"].unique())
    cat = cat[cat["_cfg"].isin(cfgs)]
    cats = sorted({str(c) for c in cat["category"]})
    traces = []
    # one grouping for all configurations (a named aggregation each costs ~10 ms)
    per = cat.assign(category=cat["category"].astype(str)).groupby(["_cfg", "category"]).agg(
        acc=("_acc", "mean"), n=(count, "sum") if count else ("_acc", "size"))
    for cfg, g in per.groupby(level=0, sort=True):
        c = t.configs[int(cfg)]
        g = g.droplevel(0).reindex(cats)
        traces.append(go.Bar(_validate=VALIDATE, x=cats, y=_sig(g["acc"]), name=c.label, marker_color=c.color,
                             meta={"key": c.filter_key, "kind": MEASURED}, customdata=_sig(g["n"]),
                             hovertemplate=f"{c.full}<br>%{{x}}: %{{y}} (%{{customdata}} scored responses)<extra></extra>"))
    fig = _layout(_figure(traces), "Category", "Accuracy (share of scored requests correct)", barmode="group")
    fig.update_xaxes(type="category", tickangle=-30 if len(cats) > 6 else 0, automargin=True)
    note = ("Accuracy per item category (correct / scored requests) for each configuration: where a small "
            "model is enough and where a large one earns its energy. Unscored requests are left out." + capped)
    return View(vid, title, fam, fig, note)


def v_daily_projection(t: Trials, projection: dict[str, Any] | None) -> View:
    vid, title, fam = "daily_projection", "Daily-scale projection", "Scale"
    from energyray.footprint.project import J_PER_KWH, Estimate, fixed_10s, per_trial

    p = dict(projection or {})
    n = float(p.get("queries_per_day") or 1e9)
    u = float(p.get("utilization") or 1.0)
    pue = p.get("pue")
    cols = [c for c in dict.fromkeys(("trial_id", "status", "energy_j", "energy_estimated_j", "requests", "batch_size", "window_s",
                        "duration_s", "avg_power_w", "idle_power_w", "params_b", *CONFIG_KEYS)) if c in t.ok]
    ok = t.ok[t.ok["_energy"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_ENERGY)
    drawn, capped = t.drawn(ok["_cfg"].unique())
    ok = ok[ok["_cfg"].isin(drawn)]
    # table6's steps per configuration (per_trial, Estimate, fixed_10s), grouped by the index here
    rows = per_trial(ok[cols].assign(trial_id=ok["_cfg"].to_numpy()), u)
    rows = rows[rows["total_j_per_request"].notna()]
    if rows.empty:
        return _empty(vid, title, fam, NO_ENERGY)
    kinds = t.kind_of(ok)
    traces = []
    for cfg, g in rows.groupby("trial_id", sort=True):
        day = Estimate.of(g["total_j_per_request"]).scaled((pue or 1.0) * n / J_PER_KWH)
        ten = fixed_10s(g, n)
        r = {"_cfg": cfg, "kwh_per_day": day.mean, "kwh_per_day_high": day.high, "n": day.n,
             "fixed_10s_kwh_per_day": ten.get("kwh_per_day", math.nan)}
        c = t.configs[int(r["_cfg"])]
        k = kinds.get(r["_cfg"]) or MEASURED
        err = None if _norm(r["kwh_per_day_high"]) is None else r["kwh_per_day_high"] - r["kwh_per_day"]
        marker: dict[str, Any] = {"color": c.color, "line": {"color": c.color, "width": 2}}
        if k == ESTIMATED:
            marker = {"color": "rgba(255,255,255,0)", "line": {"color": c.color, "width": 2},
                      "pattern": {"shape": "/", "fgcolor": c.color, "size": 6}}
        traces.append(go.Bar(_validate=VALIDATE,
            y=[c.label], x=_sig([r["kwh_per_day"]]), orientation="h", name=c.label, marker=marker,
            offsetgroup="measured",
            meta={"key": c.filter_key, "kind": k},
            error_x={"type": "data", "array": _sig([err]), "visible": err is not None},
            hovertemplate=f"{c.full} ({k})<br>%{{x}} kWh a day (n={int(r['n'])})<extra></extra>"))
        traces.append(go.Bar(_validate=VALIDATE,
            y=[c.label], x=_sig([r["fixed_10s_kwh_per_day"]]), orientation="h",
            name=f"{c.label}: thesis' 10-s method",
            offsetgroup="ten", meta={"key": c.filter_key, "kind": ESTIMATED},
            marker={"color": "rgba(255,255,255,0)", "line": {"color": "#777777", "width": 1.5},
                    "pattern": {"shape": ".", "fgcolor": "#777777", "size": 5}},
            hovertemplate=f"{c.full}<br>10-s method: %{{x}} kWh a day<extra></extra>"))
    fig = _bar_layout(_figure(traces), "Energy a day (kWh)", barmode="group")
    given = "given" if projection and projection.get("queries_per_day") else "the thesis' figure; --queries-per-day sets it"
    note = (f"Measured J per request x {n:,.0f} queries a day ({given}), utilisation {u:g}, "
            f"{'no PUE' if pue is None else f'PUE {pue:g}'}: the device's energy only ({t.energy_words(ok)}), 95 % "
            "CI bars over the trials; beside it (dotted, grey) the thesis' method, average power x an assumed 10 s "
            "per query, which counts idle power and ignores batching. python -m energyray project gives CO2 and cost."
            + capped)
    return View(vid, title, fam, fig, note)


# -- Pareto, cross-hardware, roofline, phases ----------------------------------------------------

def _config_points(t: Trials, ok: pd.DataFrame, x: pd.Series, y: pd.Series) -> tuple[pd.DataFrame, pd.DataFrame]:
    sx, sy = t.stats(ok, x), t.stats(ok, y)
    both = sx.join(sy, lsuffix="_x", rsuffix="_y", how="inner")
    return both[both["mean_x"].notna() & both["mean_y"].notna()], sx


def _pareto_keep(t: Trials, pts: pd.DataFrame, xmode: str, ymode: str, limit: int = MAX_POINTS) -> pd.DataFrame:
    """At most `limit` configuration points: the frontier of all of them and of each filter key's
    configurations first (so a filtered chart's frontier is right), then those nearest the corner."""
    if len(pts) <= limit:
        return pts
    keep: dict[int, None] = {}
    idx = pts.index.to_numpy()
    x = pts["mean_x"].to_numpy(dtype=float) * (1.0 if xmode == "min" else -1.0)
    y = pts["mean_y"].to_numpy(dtype=float) * (1.0 if ymode == "min" else -1.0)
    for i in _front(x, y, np.arange(len(x))):
        keep[int(idx[i])] = None
    names = pd.Series(["\x1f".join(t.keys[int(c)]) for c in idx])
    for members in names.groupby(names).indices.values():
        for i in _front(x, y, members):
            keep[int(idx[i])] = None
    rx = pts["mean_x"].rank(ascending=xmode == "min")
    ry = pts["mean_y"].rank(ascending=ymode == "min")
    for c in (rx + ry).sort_values(kind="stable").index:
        if len(keep) >= limit:
            break
        keep[int(c)] = None
    chosen = sorted(list(keep)[:limit])  # the fronts first, in the order found
    out = pts.loc[chosen]
    out.attrs["capped"] = len(pts)
    return out


def _front(x: np.ndarray, y: np.ndarray, members: np.ndarray) -> list[int]:
    """pareto_front (both axes minimised, finite values) of the points `members`, for many points."""
    order = members[np.lexsort((y[members], x[members]))]
    return _scan_front(zip(order.tolist(), x[order].tolist(), y[order].tolist(), strict=True))


def _pareto_capped(pts: pd.DataFrame) -> str:
    n = pts.attrs.get("capped")
    return (f" {len(pts):,} of {n:,} configurations drawn: each filter value's frontier, then those nearest the "
            "best corner; narrow with report --sweep or the filters." if n else "")


def _pareto_view(t: Trials, ok: pd.DataFrame, x: pd.Series, y: pd.Series, ymode: str,
                 pareto: dict[str, Any], hover: str) -> tuple[list[Any], pd.DataFrame]:
    pts, _ = _config_points(t, ok, x, y)
    pts = _pareto_keep(t, pts, pareto["x"], ymode)
    kinds = t.kind_of(ok)
    frame = pd.DataFrame({"_cfg": pts.index.astype(int), "_kind": [kinds.get(i) or MEASURED for i in pts.index]},
                         index=pts.index)
    traces = _point_traces(t, frame, pts["mean_x"], pts["mean_y"], hover, error_x=pts["ci95_x"],
                           error_y=pts["ci95_y"], per_point_keys=True, kinds=frame["_kind"])
    return traces, pts


def v_pareto_time_energy(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "pareto_time_energy", "Pareto: time vs energy per token", "Pareto"
    ok = t.ok
    pareto = {"x": "min", "y": "min", "deadline": "x", "budget": "y"}
    traces, pts = _pareto_view(t, ok, _num(ok, "tpot_s"), t.energy_per(ok, "token"), "min", pareto,
                               "%{x} s per token<br>%{y} J per token")
    if pts.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      NO_ENERGY + " (and a time per output token, tpot_s)")
    traces.append(_frontier_trace(traces, "min", "min"))
    traces += _external_traces(_ext_points(ext, "tpot_s", "j_per_token"), "%{x} s per token<br>%{y} J per token")
    fig = _layout(_figure(traces), "Time per output token (s)", "Energy per output token (J)")
    fig.layout.meta = {"pareto": pareto}
    note = (f"Each point is a configuration's mean over its trials (95 % CI bars); the line joins those no other "
            f"configuration beats on both time and energy per token (external figures are not on it). Set a "
            f"latency deadline or an energy budget to hide what misses it. Energy: {t.energy_words(ok)} over "
            f"{ENERGY_COVERS}.{_pareto_capped(pts)}{_grouped_note(t)}")
    return View(vid, title, fam, fig, note)


def _pooled_accuracy(t: Trials, ok: pd.DataFrame) -> pd.DataFrame:
    """Per configuration: accuracy as correct / scored requests pooled over its trials, with the
    Wilson 95 % interval (lo, hi); where the counts are missing, the trials' mean accuracy with its
    t interval cut to 0..1."""
    scored, correct = _num(ok, "scored_requests"), _num(ok, "correct_requests")
    has = (scored > 0) & correct.notna()
    k = correct.where(has).groupby(ok["_cfg"]).sum(min_count=1)
    n = scored.where(has).groupby(ok["_cfg"]).sum(min_count=1)
    st = t.stats(ok, _accuracy(ok))
    idx = sorted(set(st.index) | set(n.dropna().index))
    kk, nn = k.reindex(idx).astype(float), n.reindex(idx).astype(float)
    pooled = nn.notna() & (nn > 0)
    nn = nn.where(pooled)
    # Wilson's interval (dashboard.wilson), for every configuration at once
    z = 1.96
    p, d = kk / nn, 1 + z * z / nn
    centre = (p + z * z / (2 * nn)) / d
    half = z * np.sqrt(p * (1 - p) / nn + z * z / (4 * nn * nn)) / d
    m, h = st["mean"].reindex(idx).astype(float), st["ci95"].reindex(idx).astype(float)
    return pd.DataFrame({"mean": p.where(pooled, m),
                         "lo": (centre - half).clip(lower=0.0).where(pooled, (m - h).clip(lower=0.0)),
                         "hi": (centre + half).clip(upper=1.0).where(pooled, (m + h).clip(upper=1.0))}, index=idx)


def v_pareto_energy_accuracy(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "pareto_energy_accuracy", "Pareto: energy per request vs accuracy", "Pareto"
    ok = t.ok
    pareto = {"x": "min", "y": "max", "deadline": None, "budget": "x"}
    sx = t.stats(ok, t.energy_per(ok, "request"))
    acc = _pooled_accuracy(t, ok).rename(columns={"mean": "mean_y"})
    pts = sx.join(acc, how="inner")
    pts = pts[pts["mean"].notna() & pts["mean_y"].notna()] if "mean_y" in pts else pts.iloc[0:0]
    if pts.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      "no configuration has both an energy figure and an accuracy: score a task with gold answers "
                      "on real weights (weights=real, e.g. task=qa)")
    kinds = t.kind_of(ok)
    frame = pd.DataFrame({"_cfg": pts.index.astype(int), "_kind": [kinds.get(i) or MEASURED for i in pts.index]},
                         index=pts.index)
    traces = _point_traces(t, frame, pts["mean"], pts["mean_y"], "%{x} J per request<br>accuracy %{y}",
                           error_x=pts["ci95"], error_y=pts["hi"] - pts["mean_y"],
                           error_y_minus=pts["mean_y"] - pts["lo"], per_point_keys=True, kinds=frame["_kind"])
    traces.append(_frontier_trace(traces, "min", "max"))
    traces += _external_traces(_ext_points(ext, "j_per_request", "accuracy"), "%{x} J per request<br>accuracy %{y}")
    fig = _layout(_figure(traces), "Energy per request (J)", "Accuracy (share of scored requests correct)")
    fig.update_yaxes(range=[-0.03, 1.03])
    fig.layout.meta = {"pareto": pareto}
    note = (f"Each point is a configuration: its mean energy per request over its trials (95 % t interval) and its "
            f"accuracy, correct / scored requests pooled over its trials (Wilson 95 % interval, within 0..1); the "
            f"line joins those no other configuration beats on both: the cheapest for each level of quality. "
            f"Energy: {t.energy_words(ok)} over {ENERGY_COVERS}.{_pareto_capped(pts)}{_grouped_note(t)}")
    return View(vid, title, fam, fig, note)


def v_cross_hardware(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "cross_hardware", "The same configuration across hardware", "Hardware"
    ok = t.ok
    st = t.stats(ok, t.energy_per(ok, "token"))
    if st.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_ENERGY)
    kinds = t.kind_of(ok)
    rest = [k for k in CONFIG_KEYS if k != "hardware"]
    groups: dict[tuple[Any, ...], list[int]] = {}
    for cfg in st.index:
        groups.setdefault(tuple(t.configs[int(cfg)].key[k] for k in rest), []).append(int(cfg))
    multi = {k: v for k, v in groups.items() if len({t.configs[i].key["hardware"] for i in v}) > 1}
    shown = multi or groups
    limit = 40
    hardware = sorted({_value(t.configs[i].key["hardware"]) for v in shown.values() for i in v})
    keys = [{**dict(zip(rest, key, strict=True)), "hardware": None} for key in shown]
    names = dict(zip(shown, config_names(keys), strict=True))
    traces = []
    for key, cfgs in list(shown.items())[:limit]:
        cfgs = sorted(cfgs, key=lambda i: hardware.index(_value(t.configs[i].key["hardware"])))
        first = t.configs[cfgs[0]]
        label = names[key]
        k = MEASURED if all((kinds.get(i) or MEASURED) == MEASURED for i in cfgs) else ESTIMATED
        traces.append(go.Scatter(_validate=VALIDATE,
            x=[_value(t.configs[i].key["hardware"]) for i in cfgs], y=_sig([st.loc[i, "mean"] for i in cfgs]),
            error_y={"type": "data", "array": _sig([st.loc[i, "ci95"] for i in cfgs]), "thickness": 1},
            mode="lines+markers", name=label + ("" if k == MEASURED else " (estimated)" if all(
                kinds.get(i) == ESTIMATED for i in cfgs) else " (estimated on some: hollow)"),
            meta={"keys": [t.configs[i].filter_key for i in cfgs], "kind": k},
            line={"color": first.color, "dash": DASH[k]},
            marker={"symbol": [SYMBOL[kinds.get(i) or MEASURED] for i in cfgs], "size": 9, "color": first.color,
                    "line": {"color": first.color, "width": 1.5}},
            hovertemplate=f"{full_name({**first.key, 'hardware': None})}<br>%{{x}}: %{{y}} J per token<extra></extra>"))
    e = _ext_points(ext, "hardware", "j_per_token")
    if len(e):
        hardware = sorted({*hardware, *map(str, e["x"])})
        traces += _external_traces(e, "%{x}: %{y} J per token")
    fig = _layout(_figure(traces), "Hardware", "Energy per output token (J)")
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=hardware)
    if multi:
        what = f"{len(multi)} configuration(s) ran on more than one hardware type"
    else:
        what = ("each configuration ran on one hardware type only (run the same sweep with another "
                "hardware= to compare)")
    more = f"; the first {limit} of {len(shown)} shown" if len(shown) > limit else ""
    note = (f"Mean J per output token of the same configuration (every key but the hardware) on each hardware, "
            f"95 % CI bars: {what}{more}. Energy: {t.energy_words(ok)} over {ENERGY_COVERS}: a GPU's board and a "
            f"CPU's package are different scopes. External figures are open diamonds.")
    return View(vid, title, fam, fig, note)


def v_roofline(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "roofline", "Roofline efficiency of decoding", "Hardware"
    v = _num(t.ok, "roofline_efficiency")
    if v.isna().all():
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else
                      "no trial has a roofline efficiency: it needs a GPU's memory bandwidth and the model's size "
                      "(roofline_bandwidth_source says where it comes from) and a time per output token")
    kinds = pd.Series(MEASURED, index=t.ok.index)
    traces, capped = _bars(t, t.ok, v * 100, "% of the memory-bandwidth floor", kinds=kinds)
    fig = _bar_layout(_figure(traces), "Decode speed, % of the memory-bandwidth floor")
    fig.add_vline(x=100, line_dash="dot", line_color="#444444", annotation_text="at the floor")
    src = sorted({str(s) for s in t.ok.get("roofline_bandwidth_source", pd.Series(dtype=object)).dropna().unique()})
    note = ("Per configuration: the memory-bound floor of a decode step (weights and KV cache read once at the "
            "memory bandwidth) over the measured time per step, in % (100 %: as fast as memory allows; low at "
            "batch 1 where launches dominate), 95 % CI bars. Bandwidth: "
            + ("; ".join(src[:3]) if src else "as recorded") + "." + capped)
    return View(vid, title, fam, fig, note)


_PHASES = (("load", "model load (its share)"), ("warmup", "warmup"), ("prefill", "prefill"),
           ("decode", "decode"), ("text_encode", "text encoding (image)"), ("denoise", "denoising (image)"),
           ("vae_decode", "VAE decode (image)"), ("window_rest", "rest of the window"), ("response", "decode to text and score"),
           ("unload", "unload (its share)"))


def v_phase_breakdown(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "phase_breakdown", "Energy by phase", "Phases"
    ok = t.ok[t.ok["_energy"].notna()]
    if ok.empty:
        return _empty(vid, title, fam, NO_TRIALS if t.df.empty else NO_ENERGY)
    group = _num(ok, "group_trials").where(_num(ok, "group_trials") > 0).fillna(1)
    parts = {"load": _num(ok, "load_j") / group, "warmup": _num(ok, "warmup_j"), "prefill": _num(ok, "prefill_j"),
             "decode": _num(ok, "decode_j"), "response": _num(ok, "response_j"),
             "text_encode": _num(ok, "text_encode_j"), "denoise": _num(ok, "denoise_j"),
             "vae_decode": _num(ok, "vae_decode_j")}
    split = sum(parts[p].fillna(0) for p in ("prefill", "decode", "text_encode", "denoise", "vae_decode"))
    parts["window_rest"] = (_num(ok, "energy_j") - split).clip(lower=0)
    parts["window_rest"] = parts["window_rest"].where(_num(ok, "energy_j").notna(), ok["_energy"])
    # unload is on a load's last row only: its per-trial share is the configuration's sum over its rows
    unload = _num(ok, "unload_j").groupby(ok["_cfg"]).sum(min_count=1) / ok.groupby("_cfg").size()
    if all(parts[p].isna().all() for p in ("load", "warmup", "prefill", "decode", "response")) and unload.isna().all():
        return _empty(vid, title, fam, "no phase energies in these trials (written before phases were measured, "
                                       "or without a power series): rerun with a sampler that polls power")
    cfgs, capped = t.drawn(ok["_cfg"].unique())
    ok = ok[ok["_cfg"].isin(cfgs)]
    parts = {p: v[ok.index] for p, v in parts.items()}
    unload = unload.reindex(cfgs)
    kinds = t.kind_of(ok)
    labels = [t.configs[int(i)].label for i in cfgs]
    traces = []
    for i, (p, words) in enumerate(_PHASES):
        means = unload.reindex(cfgs) if p == "unload" else parts[p].groupby(ok["_cfg"]).mean().reindex(cfgs)
        if means.isna().all():
            continue
        for k in (MEASURED, ESTIMATED):
            sel = [j for j, c in enumerate(cfgs) if (kinds.get(c) or MEASURED) == k]
            if not sel:
                continue
            color = PHASE_COLORS[i % len(PHASE_COLORS)]
            marker: dict[str, Any] = {"color": color}
            if k == ESTIMATED:
                marker = {"color": "rgba(255,255,255,0)", "line": {"color": color, "width": 1.5},
                          "pattern": {"shape": "/", "fgcolor": color, "size": 6}}
            traces.append(go.Bar(_validate=VALIDATE,
                y=[labels[j] for j in sel], x=_sig([means.iloc[j] for j in sel]), orientation="h",
                name=words + ("" if k == MEASURED else " (estimated)"), legendgroup=p, marker=marker,
                meta={"keys": [t.configs[int(cfgs[j])].filter_key for j in sel], "kind": k},
                hovertemplate=f"%{{y}}<br>{words}: %{{x}} J per trial<extra></extra>"))
    fig = _layout(_figure(traces), "Energy per trial (J)", "", barmode="stack")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=labels, autorange="reversed",
                     automargin=True, **_category_font(len(labels)))
    note = ("Mean energy per trial by phase, on the device: prefill and decode split the trial's window at the first "
            "token, an image trial's window splits into text encoding, denoising and VAE decode (the rest of the "
            "window: between batches, or not split); model load and unload are per load, "
            "shared over its trials; warmup before the first trial of a shape; after it, decoding to text and "
            "scoring. The idle baseline is not drawn (it is not spent by the trial). Hollow: estimated." + capped)
    return View(vid, title, fam, fig, note)


def v_failures(t: Trials, ext: pd.DataFrame) -> View:
    vid, title, fam = "failures", "Failed trials", "Failures"
    if t.df.empty:
        return _empty(vid, title, fam, NO_TRIALS)
    bad = t.df[t.df["status"] != "ok"] if "status" in t.df else t.df.iloc[0:0]
    if bad.empty:
        return _empty(vid, title, fam, f"no failed trials: all {len(t.df):,} trials completed")
    pairs = bad[["error", "status"]].astype(object) if "error" in bad else bad[["status"]].assign(error=None)
    uniq = pairs.drop_duplicates()
    first = {(e, s): _first_line(e, s) for e, s in zip(uniq["error"], uniq["status"], strict=True)}
    text = pd.Series([first[(e, s)] for e, s in zip(pairs["error"], pairs["status"], strict=True)], index=bad.index)
    top = text.value_counts()
    keep = set(top.index[:20])
    text = text.where(text.isin(keep), "other errors")
    short = text.map(lambda s: s if len(s) <= 90 else s[:89] + "…")
    order = [s if len(s) <= 90 else s[:89] + "…" for s in top.index[:20]] + (["other errors"] if len(top) > 20 else [])
    counts = pd.DataFrame({"cfg": bad["_cfg"], "err": short}).groupby(["cfg", "err"]).size()
    traces = []
    many = counts.index.get_level_values(0).nunique() > MAX_TRACES
    if many:  # one trace per model (or hardware): a bar segment per (configuration, error), keyed per point
        flat = counts.reset_index(name="n")
        flat["grp"] = t.group_of[flat["cfg"].to_numpy(dtype=int)]
        for grp, g in flat.groupby("grp", sort=True):
            cfgs = g["cfg"].to_numpy(dtype=int).tolist()
            traces.append(go.Bar(_validate=VALIDATE,
                y=list(g["err"]), x=list(map(int, g["n"])), orientation="h", name=str(grp),
                marker_color=t.group_color[grp], text=[t.configs[i].label for i in cfgs], textposition="none",
                meta={"keys": [t.keys[i] for i in cfgs], "kind": MEASURED},
                hovertemplate="%{text}<br>%{y}: %{x} trial(s)<extra></extra>"))
    for cfg, g in (() if many else counts.groupby(level=0, sort=True)):
        c = t.configs[int(cfg)]
        traces.append(go.Bar(_validate=VALIDATE,
            y=list(g.index.get_level_values(1)), x=list(map(int, g.to_numpy())), orientation="h", name=c.label,
            marker_color=c.color, meta={"key": c.filter_key, "kind": MEASURED},
            hovertemplate=f"{c.full}<br>%{{y}}: %{{x}} trial(s)<extra></extra>"))
    # the legend names the configurations even where one is drawn (plotly hides a one-trace legend)
    fig = _layout(_figure(traces), "Failed trials", "", barmode="stack", showlegend=True)
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=order[::-1], automargin=True)
    most = int(text.value_counts().max())
    fig.update_xaxes(rangemode="tozero", tickformat="d", **({"dtick": 1} if most <= 10 else {}))  # whole trials
    note = (f"{len(bad):,} of {len(t.df):,} trials did not complete, counted by the first line of their error "
            f"(status: error) and configuration. A rerun of the sweep retries those marked retryable."
            + (f" Coloured by {t.group_axis}; hover a segment for its configuration." if many else ""))
    return View(vid, title, fam, fig, note)


DIFFUSION_WINDOW = ("text_encode", "denoise", "vae_decode", "generate")


def v_diffusion_step_power(t: Trials, series: pd.DataFrame) -> View:
    vid, title, fam = "diffusion_step_power", "Diffusion: power over the denoising steps", "Diffusion"
    diff = t.df[(t.df["backend"].astype(str) == "diffusers")] if "backend" in t.df else t.df.iloc[0:0]
    if diff.empty:
        return _empty(vid, title, fam, "no diffusion trials: run an image model (backend=diffusers, e.g. "
                                       "python -m energyray sweep=diffusion on a GPU)")
    s = _series(t, series[series["trial_id"].isin(set(diff["trial_id"]))]
                if series is not None and "trial_id" in series else pd.DataFrame())
    if s.empty or _num(s, "power_w").isna().all():
        return _empty(vid, title, fam, "no power samples for the diffusion trials shown: run them with a sampler "
                                       "that polls power (sampler.interval_s 0.01-0.1 resolves the steps)")
    # the trial's window only (its idle, load and warmup would squeeze the steps into a sliver), from its start
    in_window = s["phase"].astype(str).isin(DIFFUSION_WINDOW)
    if in_window.any():
        s = s[in_window].copy()
        s["t_s"] = s["t_s"] - s.groupby("trial_id")["t_s"].transform("min")
    phases = sorted({str(p) for p in s["phase"].dropna()}, key=_phase_rank)
    pcolor = {p: PHASE_COLORS[i % len(PHASE_COLORS)] for i, p in enumerate(phases)}
    traces = []
    seen: set[int] = set()
    for (cfg, _tid, src), g in s.groupby(["_cfg", "trial_id", "source"], sort=False):
        g = g[_num(g, "power_w").notna()]
        if g.empty:
            continue
        c = t.configs[int(cfg)]
        kind = _series_kind(src)
        ph = [str(p) if _norm(p) is not None else "-" for p in g["phase"]]
        traces.append(go.Scatter(_validate=VALIDATE,
            x=_sig(g["t_s"]), y=_sig(g["power_w"]), mode="lines+markers", name=_series_name(c, kind),
            showlegend=_first_of(c, seen), legendgroup=c.group, text=ph, meta={"key": c.filter_key, "kind": kind},
            line={"color": c.color, "dash": DASH[kind], "width": 1.5},
            marker={"color": [pcolor.get(p, "#999999") for p in ph], "size": 5,
                    "symbol": "circle-open" if kind == ESTIMATED else "circle"},
            hovertemplate=f"{c.full}<br>%{{x}} s: %{{y}} W (mean)<br>phase %{{text}}<extra></extra>"))
        if "power_max_w" in g and _num(g, "power_max_w").notna().any():
            traces.append(go.Scatter(_validate=VALIDATE,
                x=_sig(g["t_s"]), y=_sig(g["power_max_w"]), mode="lines", name=f"{c.label} · {src} peak",
                showlegend=False, legendgroup=c.group, meta={"key": c.filter_key, "kind": kind}, opacity=0.4,
                line={"color": c.color, "width": 1, "dash": DASH[kind]},
                hovertemplate=f"{c.full}<br>%{{x}} s: %{{y}} W (peak in bucket)<extra></extra>"))
    for p in phases:
        traces.append(go.Scatter(_validate=VALIDATE, x=[None], y=[None], mode="markers", name=f"phase: {p}", meta={"role": "legend"},
                                 marker={"color": pcolor[p], "size": 8}, hoverinfo="skip"))
    fig = _layout(_figure(traces), "Time since the trial's window opened (s)", "Power (W)")
    ok = t.ok[t.ok["backend"].astype(str) == "diffusers"] if "backend" in t.ok else t.ok.iloc[0:0]
    jps = _num(ok, "j_per_step").dropna()
    sps = _num(ok, "s_per_step").dropna()
    per = (f" Over the stored diffusion trials: {jps.mean():.3g} J and {sps.mean():.3g} s per denoising step "
           "(mean)." if len(jps) and len(sps) else "")
    note = ("Power of diffusion trials over their window, the marker colour showing the phase (text encoding, the "
            "denoising loop, VAE decoding); the pale line is each bucket's peak, where the per-step spikes show."
            + per + _series_note(s))
    return View(vid, title, fam, fig, note)


# -- all of them ---------------------------------------------------------------------------------

VIEW_IDS = ("energy_vs_input_tokens", "latency_vs_j_per_1k_tokens", "energy_accuracy_frontier",
            "latency_distribution", "emissions_vs_latency", "power_by_phase", "cumulative_energy_gpu_wall",
            "temperature", "energy_per_word", "words_per_model", "accuracy_per_category", "daily_projection",
            "pareto_time_energy", "pareto_energy_accuracy", "cross_hardware", "roofline", "phase_breakdown",
            "failures", "diffusion_step_power")


@paused
def build_views(data: ReportData) -> list[View]:
    """Every view, in VIEW_IDS order; a view without data has fig None and a note saying why and
    how to get it. One view that fails to build becomes such a note, never an exception."""
    trials = data.trials if data.trials is not None else pd.DataFrame()
    t = Trials(trials)
    ext = _external_wide(data.external)
    series = data.series if data.series is not None else pd.DataFrame()
    builders = [
        lambda: v_energy_vs_input_tokens(t, ext), lambda: v_latency_vs_j_per_1k(t, ext),
        lambda: v_energy_accuracy(t, ext), lambda: v_latency_distribution(t, ext),
        lambda: v_emissions_vs_latency(t, ext), lambda: v_power_by_phase(t, series),
        lambda: v_cumulative_energy(t, series), lambda: v_temperature(t, series),
        lambda: v_energy_per_word(t, ext), lambda: v_words_per_model(t, ext),
        lambda: v_accuracy_per_category(t, data.categories), lambda: v_daily_projection(t, data.projection),
        lambda: v_pareto_time_energy(t, ext), lambda: v_pareto_energy_accuracy(t, ext),
        lambda: v_cross_hardware(t, ext), lambda: v_roofline(t, ext), lambda: v_phase_breakdown(t, ext),
        lambda: v_failures(t, ext), lambda: v_diffusion_step_power(t, series),
    ]
    views = []
    for vid, build in zip(VIEW_IDS, builders, strict=True):
        try:
            views.append(build())
        except Exception as e:  # one broken view must not take the page down; say what broke
            views.append(View(vid, vid.replace("_", " "), "Other", None,
                              f"this view could not be drawn ({type(e).__name__}: {e}); please report it"))
    return views
