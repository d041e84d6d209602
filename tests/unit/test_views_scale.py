"""The dashboard over many configurations (energyray/report/views.py, dashboard.py): with 2,000
configurations every chart stays under the trace and point caps, every point keeps its filter keys
and its configuration's label, the notes say what was capped, the Pareto charts keep each filter
value's frontier, and the page's table is capped while the cheapest answer considers them all."""

from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("plotly")

from energyray.report import dashboard  # noqa: E402
from energyray.report import views as views_module  # noqa: E402
from energyray.report.summary import CONFIG_KEYS, configurations  # noqa: E402
from energyray.report.views import (  # noqa: E402
    MAX_CONFIGS,
    MAX_POINTS,
    MAX_TRACES,
    Trials,
    build_views,
    pareto_front,
)

pytestmark = pytest.mark.extra("report")
MODELS = ("gemma3-270m", "gemma3-1b", "llama3-8b", "mistral-7b", "qwen2-7b")
# configurations drawn as their own traces past which a chart must have grouped them
TRACE_CAP = 2 * MAX_CONFIGS + 20  # daily projection: two bars a configuration; legend-only traces on top


def many_trials(repeats: int = 2, seed: int = 0) -> pd.DataFrame:
    """2,000 configurations (5 models x 4 precisions x 5 batches x 4 output lengths x 5 tasks) on an
    H100, `repeats` trials each, every 23rd failed."""
    rng = np.random.default_rng(seed)
    combos = list(itertools.product(MODELS, ("fp32", "bf16", "int8", "nf4"), (1, 2, 4, 8, 16), (32, 64, 128, 256),
                                    ("qa", "mmlu", "hle", "longform", "chat")))
    rows = []
    for i, (model, prec, batch, new, task) in enumerate(combos * repeats):
        failed = i % 23 == 7
        size = MODELS.index(model) + 1
        out_tok = batch * new
        dur = out_tok / (batch * 40.0) * rng.uniform(0.9, 1.1)
        energy = dur * 60 * size * rng.uniform(0.8, 1.2)
        scored = task != "longform"
        rows.append({
            "sweep": "big", "hardware": "h100", "model": model, "backend": "transformers", "weights": "real",
            "precision": prec, "batch_size": batch, "task": task, "prompt_variant": "default",
            "max_new_tokens": new, "requests": batch, "prompt_tokens": None, "chat_template": "auto",
            "trial_id": f"t{i:06d}", "repeat": i // len(combos), "status": "failed" if failed else "ok",
            "error": f"RuntimeError: failure {i % 3}" if failed else None,
            "energy_source": "not_measurable" if failed else "counter", "energy_scope": None if failed else "gpu",
            "energy_j": None if failed else energy, "input_tokens": batch * 40, "output_tokens": out_tok,
            "output_words": int(out_tok * 0.75), "duration_s": dur, "window_s": dur, "batches": 1,
            "ttft_s": 0.05 * dur, "tpot_s": dur / new, "tokens_per_s": out_tok / dur,
            "accuracy": rng.uniform(0.2, 0.9) if scored else None, "scored_requests": batch if scored else 0,
            "correct_requests": int(batch * rng.uniform(0.2, 0.9)) if scored else None,
            "co2_g": energy / 3.6e6 * 400e3 / 1000, "co2_estimated": False, "roofline_efficiency": rng.uniform(0, 1),
            "prefill_j": energy * 0.1, "decode_j": energy * 0.8, "load_j": 500.0, "group_trials": 4,
            "avg_power_w": energy / dur, "idle_power_w": 70.0, "params_b": float(size),
            "started_at": "2026-12-06T10:00:00+00:00", "schema_version": 3,
        })
    df = pd.DataFrame(rows)
    energy = pd.to_numeric(df["energy_j"], errors="coerce")
    df.loc[df["status"] != "ok", ["output_tokens", "output_words", "duration_s", "tpot_s", "accuracy"]] = None
    df["j_per_token"] = energy / df["output_tokens"]
    df["j_per_request"] = energy / df["requests"]
    df["j_per_word"] = energy / df["output_words"]
    df["co2_g_per_request"] = df["co2_g"] / df["requests"]
    return df


def categories(trials: pd.DataFrame) -> pd.DataFrame:
    ok = trials[(trials["status"] == "ok") & (trials["task"] == "qa")].drop_duplicates([k for k in CONFIG_KEYS if k in trials])
    keys = ok.reindex(columns=list(CONFIG_KEYS))
    return pd.concat([keys.assign(category=c, requests=10, correct=3 + j, accuracy=(3 + j) / 10)
                      for j, c in enumerate(("Math", "Physics", "History"))], ignore_index=True)


def series(trials: pd.DataFrame) -> pd.DataFrame:
    ids = list(trials[trials["status"] == "ok"]["trial_id"][:40])
    t = np.arange(50) * 0.1
    return pd.concat([pd.DataFrame({"trial_id": tid, "source": "nvml", "phase": np.where(t < 2, "load", "decode"),
                                    "t_s": t, "power_w": 200.0 + t, "power_max_w": 220.0, "temperature_c": 50.0,
                                    "energy_j": np.cumsum(np.full(50, 20.0)), "n": 1}) for tid in ids],
                     ignore_index=True)


def config_stats(trials: pd.DataFrame) -> pd.DataFrame:
    """A stand-in for StoreQuery.config_stats (summary order, its columns)."""
    out = []
    for key, g in configurations(trials):
        good = g[g["status"] == "ok"]
        r: dict[str, Any] = {**key, "trials": len(g), "ok": len(good), "failed": len(g) - len(good),
                             "energy_sources": "counter (gpu)" if len(good) else ""}
        for m, _ in dashboard.METRICS:
            v = pd.to_numeric(good[m], errors="coerce").dropna()
            r[m], r[m + "_std"] = (v.mean() if len(v) else math.nan), (v.std() if len(v) > 1 else math.nan)
            r[m + "_ci95"], r[m + "_n"] = (2 * v.std() / math.sqrt(len(v)) if len(v) > 1 else math.nan), len(v)
        out.append(r)
    return pd.DataFrame(out)


@pytest.fixture(scope="module")
def data() -> dashboard.ReportData:
    trials = many_trials()
    return dashboard.ReportData(trials=trials, configs=config_stats(trials), series=series(trials),
                                categories=categories(trials), external=pd.DataFrame(), projection=None)


@pytest.fixture(scope="module")
def views(data):
    return {v.id: v for v in build_views(data)}


def points(tr: Any) -> int:
    return len(tr.x) if tr.x is not None else len(tr.y) if tr.y is not None else 0


def test_every_chart_stays_under_the_caps_and_keys_every_point(data, views):
    t = Trials(data.trials)
    assert len(t.configs) == 2000 and t.grouped and t.group_axis == "model"
    labels = {c.label for c in t.configs}
    drawn = [v for v in views.values() if v.fig is not None]
    assert len(drawn) >= 15, [v.id for v in views.values() if v.fig is None]
    for v in drawn:
        assert "could not be drawn" not in (v.note or ""), (v.id, v.note)
        assert len(v.fig.data) <= TRACE_CAP, (v.id, len(v.fig.data))
        assert sum(points(tr) for tr in v.fig.data) <= MAX_POINTS + 200, v.id
        for tr in v.fig.data:
            meta = tr.meta
            assert isinstance(meta, dict), (v.id, tr.name)
            if meta.get("role") in ("frontier", "legend"):
                continue
            if "keys" in meta:
                assert len(meta["keys"]) == points(tr), (v.id, tr.name)
                assert all(len(k) == 6 and all(isinstance(s, str) for s in k) for k in meta["keys"])
            else:
                assert len(meta["key"]) == 6, (v.id, tr.name)
    # the point charts: one trace per model (and kind), each point named by its configuration
    for vid in ("energy_vs_input_tokens", "latency_vs_j_per_1k_tokens", "energy_accuracy_frontier",
                "emissions_vs_latency", "pareto_time_energy", "pareto_energy_accuracy"):
        v = views[vid]
        groups = [tr for tr in v.fig.data if "keys" in (tr.meta or {})]
        assert len(groups) <= len(MODELS) * 2, vid
        assert {tr.name for tr in groups} <= set(MODELS), vid
        for tr in groups:
            assert len(tr.text) == points(tr) and set(tr.text) <= labels, vid
            assert all(k[2] == tr.name for k in tr.meta["keys"]), vid  # coloured by model: its points' model
        assert "2,000 configurations: coloured by model" in v.note, vid
    assert len(views["pareto_time_energy"].fig.data[0].x) > 1  # configuration means, not one point a trace


def test_per_configuration_charts_draw_the_cheapest_and_say_so(data, views):
    t = Trials(data.trials)
    cheapest = set(t.cost().sort_values(kind="stable").index[:MAX_CONFIGS].astype(int))
    for vid in ("energy_per_word", "words_per_model", "roofline", "latency_distribution", "daily_projection",
                "phase_breakdown", "accuracy_per_category"):
        v = views[vid]
        assert re.search(rf"{MAX_CONFIGS} of [\d,]+ configurations drawn: those with the lowest mean energy per "
                         "request", v.note), (vid, v.note)
        assert "report --sweep" in v.note
        shown = {y for tr in v.fig.data for y in (tr.y or ())} if vid != "accuracy_per_category" else \
            {tr.name for tr in v.fig.data}
        assert len(shown) <= MAX_CONFIGS, vid
    bars = {tr.name for tr in views["energy_per_word"].fig.data}
    assert bars == {t.configs[i].label for i in cheapest}


def test_failures_group_by_model_with_each_segment_keyed(views):
    v = views["failures"]
    assert len(v.fig.data) <= len(MODELS)
    assert "Coloured by model" in v.note
    assert sum(sum(tr.x) for tr in v.fig.data) == sum(1 for i in range(4000) if i % 23 == 7)


def test_pareto_keeps_every_filter_values_front_under_a_cap(data):
    t = Trials(data.trials)
    ok = t.ok
    pts, _ = views_module._config_points(t, ok, views_module._num(ok, "tpot_s"), t.energy_per(ok, "token"))
    kept = views_module._pareto_keep(t, pts, "min", "min", limit=1000)
    assert len(kept) == 1000 and kept.attrs["capped"] == len(pts)
    front = pareto_front(list(pts["mean_x"]), list(pts["mean_y"]))
    assert {int(pts.index[i]) for i in front} <= set(kept.index)
    for model in MODELS:  # filtering to one model keeps that model's frontier
        sub = pts[[t.configs[int(c)].key["model"] == model for c in pts.index]]
        f = pareto_front(list(sub["mean_x"]), list(sub["mean_y"]))
        assert {int(sub.index[i]) for i in f} <= set(kept.index), model
    assert "1,000 of 2,000 configurations drawn" in views_module._pareto_capped(kept)


def test_the_fast_front_equals_pareto_front():
    rng = np.random.default_rng(3)
    for _ in range(50):
        x, y = rng.integers(0, 8, 40).astype(float), rng.integers(0, 8, 40).astype(float)
        for xm, ym in (("min", "min"), ("min", "max")):
            fast = views_module._front(x, y * (1 if ym == "min" else -1), np.arange(40))
            assert sorted(fast) == sorted(pareto_front(list(x), list(y), xm, ym))


def test_the_page_caps_the_table_and_answers_over_every_configuration(data, views, tmp_path: Path, monkeypatch):
    # the cheapest configuration last in summary order: beyond the table's rows
    trials = data.trials.copy()
    last = (trials["model"] == "qwen2-7b") & (trials["precision"] == "nf4") & (trials["batch_size"] == 16) & (
        trials["max_new_tokens"] == 256) & (trials["task"] == "qa")
    trials.loc[last, ["j_per_request", "energy_j"]] = 1e-6
    trials.loc[last, "accuracy"] = 0.99
    cheap = dashboard.ReportData(trials=trials, configs=config_stats(trials), series=pd.DataFrame(),
                                 categories=pd.DataFrame(), external=pd.DataFrame(), projection=None)
    out = dashboard.write_report(cheap, tmp_path / "r.html", views=list(views.values()))
    page = out.read_text()
    assert page.count("<tr data-keys=") == dashboard.MAX_TABLE_ROWS
    assert f"The first {dashboard.MAX_TABLE_ROWS} of 2,000 configurations" in page
    assert "python -m energyray report prints them all" in page
    configs = json.loads(re.search(r'id="er-configs">(.*?)</script>', page, re.S).group(1))
    assert len(configs) == 2000
    answer = re.search(r'<p id="cheapest">(.*?)</p>', page, re.S).group(1)
    assert "qwen2-7b" in answer and "nf4" in answer and "99" in answer
    assert len(page) < 15e6
    assert MAX_TRACES < 2000


def test_up_to_the_trace_cap_each_configuration_is_its_own_trace():
    trials = many_trials(repeats=1)
    few = trials[(trials["model"] == "gemma3-1b") & (trials["task"] == "qa") & (trials["max_new_tokens"] == 64)]
    few = pd.concat([few, trials[(trials["model"] == "llama3-8b") & (trials["task"] == "qa") & (
        trials["max_new_tokens"] == 64)]])
    t = Trials(few)
    assert len(t.configs) == 40 <= MAX_TRACES and not t.grouped
    data = dashboard.ReportData(trials=few, configs=pd.DataFrame(), series=pd.DataFrame(), categories=pd.DataFrame(),
                                external=pd.DataFrame(), projection=None)
    v = {x.id: x for x in build_views(data)}["energy_vs_input_tokens"]
    assert {tr.name for tr in v.fig.data} <= {c.label for c in t.configs}
    assert "coloured by" not in v.note
