"""energyray/report/views.py: every dashboard view from a realistic small data set and from a real
(old) store; the page contract (filter keys on every trace, kinds drawn differently, Pareto meta
and frontier, axis titles in words); Pareto fronts by hand; empty data gives notes; the point cap
at 100,000 trials."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("plotly")

from energyray import schema  # noqa: E402
from energyray.report import views as views_module  # noqa: E402
from energyray.report.dashboard import ReportData
from energyray.report.summary import CONFIG_KEYS, configurations  # noqa: E402
from energyray.report.views import (  # noqa: E402
    EXTERNAL,
    MAX_POINTS,
    VIEW_IDS,
    View,
    build_views,
    pareto_front,
)
from energyray.store import Store  # noqa: E402

pytestmark = pytest.mark.extra("report")
FIXTURE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"
ALL_COLUMNS = set(schema.names("trials")) | set(schema.names("samples"))


Data = ReportData  # the dashboard's own container of what the views read


def make_trials(n: int = 120, seed: int = 0) -> pd.DataFrame:
    """Trials of two sweeps on an H100 (measured by the counter), a CPU (CodeCarbon's estimate) and an
    API model (a FLOPs estimate), several models/precisions/batches/tasks, repeats, and failures."""
    rng = np.random.default_rng(seed)
    rows = []
    combos = [(sweep, hw, model, prec, batch, task)
              for sweep in ("quantization", "batching") for hw in ("h100", "cpu")
              for model, prec in (("mistral-7b", "bf16"), ("mistral-7b", "nf4"), ("gemma3-270m", "fp32"))
              for batch in (1, 8) for task in ("qa", "longform")]
    for i in range(n):
        sweep, hw, model, prec, batch, task = combos[i % len(combos)]
        gpu = hw == "h100"
        out_tok = int(batch * rng.integers(40, 64))
        dur = out_tok / (batch * (30 if gpu else 8)) * rng.uniform(0.9, 1.1)
        energy = dur * (300 if gpu else 40) * rng.uniform(0.9, 1.1)
        failed = i % 17 == 5
        row = {
            "sweep": sweep, "hardware": hw, "model": model, "backend": "transformers", "weights": "real",
            "precision": prec, "batch_size": batch, "task": task, "prompt_variant": "default",
            "max_new_tokens": 64, "requests": batch, "prompt_tokens": None, "chat_template": "auto",
            "trial_id": f"t{i:05d}", "repeat": i // len(combos), "status": "failed" if failed else "ok",
            "error": ("RuntimeError: CUDA out of memory\nTraceback ..." if i % 2 else "ValueError: bad prompt")
            if failed else None,
            "energy_source": ("counter" if gpu else "estimated") if not failed else "not_measurable",
            "energy_scope": ("gpu" if gpu else "cpu+ram") if not failed else None,
            "energy_j": None if failed else energy, "input_tokens": batch * 45, "output_tokens": out_tok,
            "output_words": int(out_tok * 0.75), "duration_s": dur, "window_s": dur * 1.01, "batches": 1,
            "ttft_s": 0.05 * dur, "tpot_s": dur / out_tok * batch, "tokens_per_s": out_tok / dur,
            "accuracy": rng.uniform(0.3, 0.9) if task == "qa" else None,
            "scored_requests": batch if task == "qa" else 0,
            "correct_requests": int(batch * rng.uniform(0.3, 0.9)) if task == "qa" else None,
            "co2_g": energy / 3.6e6 * 400 * 1000 / 1000, "co2_estimated": not gpu,
            "carbon_intensity_g_per_kwh": 400.0, "carbon_intensity_source": "Ember 2024",
            "roofline_efficiency": rng.uniform(0.05, 0.6) if gpu else None,
            "roofline_bandwidth_source": "H100 datasheet" if gpu else None,
            "prefill_j": energy * 0.1, "decode_j": energy * 0.85, "warmup_j": energy * 0.2 if i < 24 else 0.0,
            "load_j": 900.0 if gpu else 60.0, "group_trials": 4, "unload_j": 30.0 if i % 4 == 3 else None,
            "response_j": energy * 0.01, "avg_power_w": energy / dur, "idle_power_w": 70.0 if gpu else 10.0,
            "params_b": 7.2 if model.startswith("mistral") else 0.27,
            "wall_energy_j": energy * 1.4 if gpu else None,
        }
        if failed:
            for k in ("output_tokens", "output_words", "duration_s", "tpot_s", "accuracy", "co2_g"):
                row[k] = None
        rows.append(row)
    api = {**rows[0], "trial_id": "api0", "hardware": "cpu", "model": "gpt-4.1-mini", "backend": "openai",
           "precision": None, "energy_source": "not_measurable", "energy_scope": None, "energy_j": None,
           "energy_estimated_j": 55.0, "status": "ok", "error": None, "accuracy": 0.95, "scored_requests": 1,
           "correct_requests": 1, "co2_g": None, "roofline_efficiency": None, "prefill_j": None, "decode_j": None,
           "latency_request_s_mean": 2.74, "task": "qa", "requests": 1, "batch_size": 1}
    diff = {**rows[0], "trial_id": "sd0", "model": "sd-turbo", "backend": "diffusers", "task": "images",
            "j_per_step": 12.0, "s_per_step": 0.04, "inference_steps": 20, "accuracy": None}
    df = pd.DataFrame([*rows, api, diff])
    df["co2_g_per_request"] = df["co2_g"] / df["requests"]
    energy = pd.to_numeric(df["energy_j"], errors="coerce")
    df["j_per_token"] = energy / df["output_tokens"]
    df["j_per_request"] = energy / df["requests"]
    df["j_per_word"] = energy / df["output_words"]
    return df


def make_series(trials: pd.DataFrame) -> pd.DataFrame:
    """Downsampled samples (StoreQuery.samples' shape) of three trials: the GPU and the wall, and a
    diffusion trial with its own phases."""
    rows = []
    for tid in ("t00000", "t00001", "sd0"):
        phases = (("text_encode", 5), ("denoise", 40), ("vae_decode", 5)) if tid == "sd0" else (
            ("idle", 10), ("load", 20), ("warmup", 5), ("prefill", 3), ("decode", 30), ("unload", 5))
        for source, scale in (("nvml", 1.0), ("pdu", 1.5)):
            t, e = 0.0, 0.0
            for phase, k in phases:
                for _ in range(k):
                    p = scale * (80 + (250 if phase in ("decode", "denoise", "prefill") else 30))
                    e += p * 0.1
                    rows.append({"trial_id": tid, "source": source, "phase": phase, "t_s": t, "power_w": p,
                                 "power_max_w": p * 1.2, "temperature_c": 40 + t / 2 if source == "nvml" else None,
                                 "energy_j": e, "n": 10})
                    t += 0.1
    return pd.DataFrame(rows)


def make_categories(trials: pd.DataFrame) -> pd.DataFrame:
    ok = trials[(trials["status"] == "ok") & (trials["task"] == "qa")]
    rows = []
    for _, r in ok.drop_duplicates([k for k in CONFIG_KEYS if k in ok]).iterrows():
        for j, cat in enumerate(("Math", "Physics", "Chemistry")):
            rows.append({**{k: r.get(k) for k in CONFIG_KEYS}, "category": cat, "requests": 10, "correct": 3 + j,
                         "accuracy": (3 + j) / 10, "energy_j": 100.0, "output_words": 400})
    return pd.DataFrame(rows)


def make_external() -> pd.DataFrame:
    base = {"precision": "bf16", "date": "2025-10-01"}
    return pd.DataFrame([
        {**base, "model": "Llama-3.1-8B", "hardware": "h100", "batch_size": 8, "metric": "j_per_token",
         "value": 0.455, "unit": "J/token", "source": "ML.ENERGY v3"},
        {**base, "model": "Llama-3.1-8B", "hardware": "h100", "batch_size": 8, "metric": "tpot_s",
         "value": 0.02, "unit": "s", "source": "ML.ENERGY v3"},
        {**base, "model": "Mistral 7B", "hardware": "L4", "precision": "int8", "batch_size": 1,
         "metric": "energy_kwh", "value": 0.037, "unit": "kWh", "source": "practicum"},
        {**base, "model": "Mistral 7B", "hardware": "L4", "precision": "int8", "batch_size": 1,
         "metric": "latency_s", "value": 5.6, "unit": "s", "source": "practicum"},
        {**base, "model": "Mistral 7B", "hardware": "L4", "precision": "int8", "batch_size": 1,
         "metric": "co2_kg", "value": 0.018, "unit": "kg", "source": "practicum"},
    ])


def realistic(n: int = 120) -> Data:
    trials = make_trials(n)
    return Data(trials, pd.DataFrame(), make_series(trials), make_categories(trials), make_external(),
                {"queries_per_day": 1e6})


def from_store() -> Data:
    """The old store's trials and its samples in StoreQuery.samples' shape (one row a sample)."""
    store = Store(FIXTURE, log_damaged=False)
    trials = store.read("trials")
    raw = store.read("samples")
    raw["t_s"] = (raw["t_ns"] - raw.groupby("trial_id")["t_ns"].transform("min")) / 1e9
    series = raw.assign(power_max_w=raw["power_w"], n=1)[
        ["trial_id", "source", "phase", "t_s", "power_w", "power_max_w", "temperature_c", "energy_j", "n"]]
    return Data(trials, pd.DataFrame(), series, pd.DataFrame(), pd.DataFrame(), None)


def by_id(views: list[View]) -> dict[str, View]:
    return {v.id: v for v in views}


def traces_of(views: list[View]) -> list[tuple[str, Any]]:
    return [(v.id, tr) for v in views if v.fig is not None for tr in v.fig.data]


def check_contract(views: list[View]) -> None:
    assert [v.id for v in views] == list(VIEW_IDS)
    for v in views:
        assert v.note and v.note.strip(), v.id
        assert "could not be drawn" not in v.note, (v.id, v.note)
        assert v.title and v.family
        if v.fig is None:
            continue
        assert v.fig.layout.height == 420, v.id
        for axis in (v.fig.layout.xaxis, v.fig.layout.yaxis):
            title = axis.title.text or ""
            assert title not in ALL_COLUMNS and "_" not in title, (v.id, title)
        pareto = (v.fig.layout.meta or {}).get("pareto") if isinstance(v.fig.layout.meta, dict) else None
        if pareto:
            assert set(pareto) == {"x", "y", "deadline", "budget"}
            assert sum(1 for tr in v.fig.data if (tr.meta or {}).get("role") == "frontier") == 1, v.id
    for vid, tr in traces_of(views):
        meta = tr.meta
        assert isinstance(meta, dict), (vid, tr.name)
        if meta.get("role") in ("frontier", "legend"):
            continue
        assert meta.get("kind") in ("measured", "estimated", "external"), (vid, tr.name)
        if meta["kind"] == EXTERNAL:
            assert tr.name.startswith("external: "), (vid, tr.name)
            continue
        if "keys" in meta:
            n = len(tr.y)
            assert len(meta["keys"]) == n, (vid, tr.name)
            assert all(len(k) == 6 and all(isinstance(s, str) for s in k) for k in meta["keys"])
        else:
            key = meta["key"]
            assert len(key) == 6 and all(isinstance(s, str) for s in key), (vid, tr.name)


def look(tr: Any) -> tuple[Any, ...]:
    """How a trace draws: its marker symbol, line dash and bar fill pattern."""
    marker = tr.marker if "marker" in tr else None
    line = tr.line if "line" in tr and tr.type != "bar" else None
    symbol = getattr(marker, "symbol", None) if marker is not None else None
    pattern = marker.pattern.shape if marker is not None and tr.type == "bar" and marker.pattern else None
    return (tuple(symbol) if isinstance(symbol, (list, tuple)) else symbol,
            getattr(line, "dash", None) if line is not None else None, pattern)


def test_every_view_from_a_realistic_data_set(monkeypatch):
    monkeypatch.setattr(views_module, "VALIDATE", True)  # plotly checks every property
    views = build_views(realistic())
    check_contract(views)
    empty = [v.id for v in views if v.fig is None]
    assert empty == [], {v.id: v.note for v in views if v.fig is None}
    v = by_id(views)
    # configurations sorted and distinctly coloured
    names = [tr.name for tr in v["latency_distribution"].fig.data]
    assert len(names) == len(set(names))
    colours = [tr.marker.color for tr in v["latency_distribution"].fig.data]
    assert len(set(colours)) == len(colours)
    # energy covers something, in words, on the energy views
    for vid in ("energy_vs_input_tokens", "latency_vs_j_per_1k_tokens", "pareto_time_energy", "cross_hardware"):
        assert "measured (gpu)" in v[vid].note and "estimated" in v[vid].note, v[vid].note
    # external rows appear marked as external beside the measured ones
    ext = [tr for tr in v["pareto_time_energy"].fig.data if (tr.meta or {}).get("kind") == EXTERNAL]
    assert ext and ext[0].name == "external: ML.ENERGY v3" and ext[0].marker.symbol == "diamond-open"
    prac = [tr for tr in v["emissions_vs_latency"].fig.data if (tr.meta or {}).get("kind") == EXTERNAL]
    assert prac and prac[0].y[0] == pytest.approx(18.0)  # 0.018 kg -> g
    # the wall beside the device
    cum = v["cumulative_energy_gpu_wall"].fig.data
    hovers = [tr.hovertemplate or "" for tr in cum]
    assert any("wall (PDU)" in h for h in hovers) and any("nvml" in h for h in hovers)
    # failures are drawn, counted by error
    fails = v["failures"].fig.data
    assert sum(sum(tr.x) for tr in fails) == (make_trials()["status"] != "ok").sum()
    # the diffusion trial's phases
    assert "denoise" in str(v["diffusion_step_power"].fig.data[0].text)
    assert "1,000,000 queries a day" in v["daily_projection"].note


def test_kinds_are_drawn_differently():
    views = build_views(realistic())
    looks: dict[str, set[tuple[Any, ...]]] = {"measured": set(), "estimated": set(), "external": set()}
    for vid, tr in traces_of(views):
        kind = (tr.meta or {}).get("kind")
        if kind:
            looks[kind].add((vid, tr.type, look(tr)))
    for vid in ("energy_vs_input_tokens", "pareto_time_energy", "energy_per_word", "phase_breakdown",
                "latency_vs_j_per_1k_tokens"):
        m = {lk for v, _, lk in looks["measured"] if v == vid}
        e = {lk for v, _, lk in looks["estimated"] if v == vid}
        assert m and e and not (m & e), (vid, m, e)
    ext = {lk for _, _, lk in looks["external"]}
    assert ext and not ext & {lk for _, _, lk in looks["measured"] | looks["estimated"]}


def test_views_from_a_real_old_store(monkeypatch):
    monkeypatch.setattr(views_module, "VALIDATE", True)
    views = build_views(from_store())
    check_contract(views)
    v = by_id(views)
    assert v["energy_vs_input_tokens"].fig is not None
    assert "estimated (cpu+ram" in v["energy_vs_input_tokens"].note
    assert v["failures"].fig is not None
    # CodeCarbon's samples there carry no power: notes, not charts
    for vid in ("power_by_phase", "accuracy_per_category", "diffusion_step_power"):
        assert v[vid].fig is None and v[vid].note
    print({x.id: (x.fig is not None) for x in views})


@pytest.mark.parametrize("data", [
    Data(pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None),
    Data(pd.DataFrame({"trial_id": ["a"], "status": ["failed"], "error": ["boom"], "model": ["m"]}),
         pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None),
])
def test_empty_data_gives_notes(data):
    views = build_views(data)
    check_contract(views)
    for v in views:
        if v.fig is None:
            assert len(v.note) > 20
    if not data.trials.empty:
        assert by_id(views)["failures"].fig is not None


def test_pareto_front_by_hand():
    #      0       1       2       3       4       5 (dup of 1)  6 (null)
    xs = [1.0, 2.0, 3.0, 2.5, 4.0, 2.0, None]
    ys = [5.0, 3.0, 1.0, 3.5, 1.0, 3.0, 0.1]
    assert pareto_front(xs, ys) == [0, 1, 5, 2]  # 3 beaten by 1, 4 ties y with 2 at a worse x
    assert pareto_front(xs, ys, y="max") == [0]
    accuracy = [0.5, 0.7, 0.9, 0.6, 0.95, 0.7, 1.0]
    assert pareto_front(xs, accuracy, x="min", y="max") == [0, 1, 5, 2, 4]
    assert pareto_front([], []) == []
    assert pareto_front([1, 1], [2, 1]) == [1]  # same x: the lower y only
    assert pareto_front([float("nan"), 1], [0, 1]) == [1]


def test_caps_hold_at_100k_trials():
    base = make_trials(240)
    reps = 100_000 // len(base) + 1
    big = pd.concat([base] * reps, ignore_index=True).iloc[:100_000].copy()
    big["trial_id"] = [f"b{i}" for i in range(len(big))]
    big["energy_j"] = pd.to_numeric(big["energy_j"], errors="coerce") * np.random.default_rng(1).uniform(
        0.9, 1.1, len(big))
    data = Data(big, pd.DataFrame(), make_series(base), make_categories(base), make_external(), None)
    start, cpu = time.perf_counter(), time.process_time()
    views = build_views(data)
    took, cpu = time.perf_counter() - start, time.process_time() - cpu
    print(f"build_views on {len(big):,} trials: {took:.2f} s ({cpu:.2f} s of CPU)")
    check_contract(views)
    for v in views:
        if v.fig is None:
            continue
        points = sum(len(tr.x) for tr in v.fig.data if tr.x is not None)
        assert points <= MAX_POINTS + 200, (v.id, points)  # the frontier and external points come on top
    v = by_id(views)
    assert "a sample of" in v["energy_vs_input_tokens"].note
    assert any(tr.type == "scattergl" for tr in v["energy_vs_input_tokens"].fig.data)
    size = sum(len(x.fig.to_json()) for x in views if x.fig is not None)
    print(f"figures' JSON: {size / 1e6:.2f} MB")
    assert size < 5e6


def test_unchecked_figures_equal_checked_ones(monkeypatch):
    """The views skip plotly's property checks for speed: the figures' JSON must not change."""
    data = realistic()
    fast = [json.loads(v.fig.to_json()) if v.fig is not None else None for v in build_views(data)]
    monkeypatch.setattr(views_module, "VALIDATE", True)
    checked = [json.loads(v.fig.to_json()) if v.fig is not None else None for v in build_views(data)]
    for vid, a, b in zip(VIEW_IDS, fast, checked, strict=True):
        assert a == b, vid
    html = build_views(data)[0].fig.to_html(full_html=False, include_plotlyjs=False)
    assert "Energy per trial (J)" in html


def test_configurations_in_the_summary_order():
    trials = make_trials()
    views = by_id(build_views(Data(trials, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None)))
    ok = trials[(trials["status"] == "ok") & trials["duration_s"].notna()]
    want = [["" if k.get(c) is None else str(k[c]) for c in ("sweep", "hardware", "model", "precision", "backend",
                                                              "task")] for k, _ in configurations(ok)]
    got = [tr.meta["key"] for tr in views["latency_distribution"].fig.data]
    assert got == want
    assert len({tr.marker.color for tr in views["latency_distribution"].fig.data}) == len(got)


def test_rows_written_before_a_later_axis_are_the_same_configuration_as_new_ones():
    trials = make_trials(48)
    old = trials.index % 2 == 0  # half written before chat_template and requests existed: null there
    trials["chat_template"] = trials["chat_template"].where(~old, None)
    trials["requests"] = trials["requests"].astype("Int64").where(~old, pd.NA)
    t = views_module.Trials(trials)
    # summary.configurations groups them (the defaults: template auto, requests one batch) and orders them
    want = [k for k, _ in configurations(trials)]
    assert [c.key for c in t.configs] == want
    assert len(t.configs) == len(configurations(make_trials(48)))
    for key, rows in configurations(trials):
        assert set(t.df.loc[rows.index, "_cfg"]) == {want.index(key)}


# -- names of configurations, accuracy intervals, series axes ------------------------------------

def key(**kw: Any) -> dict[str, Any]:
    base = {k: None for k in CONFIG_KEYS}
    base.update(sweep="s", model="m", backend="transformers", weights="real", precision="bf16", batch_size=1,
                task="qa", prompt_variant="default", hardware="h100", requests=1, chat_template="auto")
    return {**base, **kw}


def test_names_show_the_axes_that_differ_and_leave_out_nulls_and_defaults():
    from energyray.report.labels import config_names, full_name

    keys = [key(), key(precision="nf4", batch_size=8, requests=8), key(weights=None, prompt_variant=None, batch_size=8,
                                                                       requests=8, max_new_tokens=0)]
    # weights, prompt and max tokens take one value where they have one: left out; requests at one batch
    assert config_names(keys) == ["bf16 · batch 1", "nf4 · batch 8", "bf16 · batch 8"]
    assert config_names([key()]) == ["m · bf16 · h100"]  # none differs: model, precision, hardware
    # the same name for two configurations: the axes that tell them apart are added to theirs
    names = config_names([key(), key(requests=8), key(precision="nf4")])
    assert names == ["bf16", "bf16 · requests 8", "nf4"]
    assert len(set(config_names([key(), key(weights=None)]))) == 2
    assert full_name(key(max_new_tokens=None)) == ("sweep s · m · transformers · weights real · bf16 · batch 1 · "
                                                   "task qa · prompt default · h100 · requests 1 · template auto")


def test_chart_names_are_short_and_hover_text_has_the_whole_key():
    trials = make_trials()
    trials.loc[trials.index[:5], "max_new_tokens"] = None  # a null axis on some rows
    views = by_id(build_views(Data(trials, pd.DataFrame(), make_series(trials), pd.DataFrame(), pd.DataFrame(), None)))
    for vid, tr in traces_of(list(views.values())):
        name = tr.name or ""
        # a null shows nothing; max tokens only where it tells two configurations apart (64 beside null)
        assert " - " not in name and "max - " not in name and "weights" not in name, (vid, name)
    tr = views["energy_vs_input_tokens"].fig.data[0]
    assert tr.name == "sweep batching · gemma3-270m · transformers · fp32 · batch 1 · task longform · cpu (estimated)"
    assert "weights real" in tr.hovertemplate and "prompt default" in tr.hovertemplate
    # every ok configuration's bar is labelled by its short name, one per configuration
    ticks = [y for t in views["energy_per_word"].fig.data for y in t.y]
    assert len(ticks) == len(set(ticks))


def test_accuracy_intervals_are_wilson_within_0_and_1():
    from energyray.report.dashboard import wilson

    lo, hi = wilson(7, 8)
    assert 0 < lo < 7 / 8 < hi < 1 and (lo, hi) == pytest.approx((0.529, 0.978), abs=1e-3)
    assert wilson(0, 5)[0] == 0 and wilson(5, 5)[1] == 1 and all(np.isnan(wilson(0, 0)))
    trials = make_trials()
    # few scored requests at a high accuracy: a t interval over the trials would pass 1
    qa = trials["task"] == "qa"
    trials.loc[qa, "scored_requests"] = 2
    trials.loc[qa, "correct_requests"] = [2 if i % 3 else 1 for i in range(int(qa.sum()))]
    v = by_id(build_views(Data(trials, pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), pd.DataFrame(), None)))
    view = v["pareto_energy_accuracy"]
    assert "Wilson 95 % interval" in view.note
    points = [tr for tr in view.fig.data if (tr.meta or {}).get("kind") in ("measured", "estimated")]
    assert points
    for tr in points:
        ey = tr.error_y
        for y, up, down in zip(tr.y, ey.array, ey.arrayminus, strict=True):
            assert y - down >= -1e-3 and y + up <= 1 + 1e-3, (tr.name, y, up, down)  # 4 digits kept


def test_series_axes_end_with_the_data_and_one_legend_entry_per_configuration():
    trials = make_trials()
    series = make_series(trials)
    # a sampler without power (CodeCarbon) over a longer span must not stretch the time axis
    late = pd.DataFrame({"trial_id": "t00002", "source": "codecarbon", "phase": "decode", "t_s": np.arange(0, 30, 0.5),
                         "power_w": None, "power_max_w": None, "temperature_c": None, "energy_j": None, "n": 1})
    v = by_id(build_views(Data(trials, pd.DataFrame(), pd.concat([series, late], ignore_index=True),
                               pd.DataFrame(), pd.DataFrame(), None)))
    for vid in ("power_by_phase", "cumulative_energy_gpu_wall", "temperature"):
        data = v[vid].fig.data
        xs = [x for tr in data for x in (tr.x or ()) if x is not None]
        assert max(xs) < series["t_s"].max() + 0.05, vid
        shown = [tr.name for tr in data if (tr.meta or {}).get("role") != "legend" and tr.showlegend is not False]
        assert len(shown) == len(set(shown)), (vid, shown)
