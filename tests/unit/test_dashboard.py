"""The dashboard page (energyray/report/dashboard.py and assets/): one self-contained file with
run info, a table per configuration, the cheapest-per-quality answer, filters and the failures;
its script is valid and its cheapest answer says what the Python one says."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from energyray.report.dashboard import (
    COUNTS,
    FILTER_KEYS,
    METRICS,
    ReportData,
    cheapest_answer,
    config_records,
    energy_kind,
    fmt,
    run_info,
    write_report,
)
from energyray.report.summary import CONFIG_KEYS, configurations
from energyray.store import Store

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"
JS = Path(__file__).resolve().parents[2] / "energyray" / "report" / "assets" / "dashboard.js"
BASE: dict[str, Any] = {"sweep": "s", "model": "gemma3-270m", "backend": "transformers", "weights": "real",
                        "precision": "bf16", "batch_size": 1, "task": "qa", "prompt_variant": "default",
                        "hardware": "h100", "max_new_tokens": None, "requests": 1, "prompt_tokens": None,
                        "chat_template": "auto"}


def row(n: int, **kw: Any) -> dict[str, Any]:
    return {**BASE, "trial_id": f"t{n}", "repeat": 0, "status": "ok", "error": None, "j_per_token": 0.1,
            "j_per_request": 1.0, "tokens_per_s": 100.0, "ttft_s": 0.05, "accuracy": 0.5, "co2_g_per_request": 0.01,
            "energy_source": "counter", "energy_scope": "gpu", "schema_version": 3,
            "started_at": f"2026-12-0{1 + n % 5}T10:00:00+00:00",
            "env_json": json.dumps({"versions": {"energyray": "0.1.0"}}), **kw}


def stats(trials: pd.DataFrame) -> pd.DataFrame:
    """A stand-in for StoreQuery.config_stats: the same columns, from pandas."""
    out = []
    for key, g in configurations(trials):
        good = g[g["status"] == "ok"]
        r: dict[str, Any] = {**key, "trials": len(g), "ok": len(good), "failed": len(g) - len(good),
                             "energy_sources": ", ".join(sorted({f"{s} ({c})" for s, c in
                                                                 zip(good["energy_source"], good["energy_scope"],
                                                                     strict=True) if isinstance(s, str)}))}
        for m in [*(m for m, _ in METRICS), *COUNTS]:
            v = pd.to_numeric(good[m], errors="coerce").dropna() if m in good else pd.Series(dtype=float)
            n = len(v)
            r[m] = v.mean() if n else math.nan
            r[m + "_std"] = v.std() if n > 1 else math.nan
            r[m + "_ci95"] = 2.0 * v.std() / math.sqrt(n) if n > 1 else math.nan
            r[m + "_n"] = n
        out.append(r)
    return pd.DataFrame(out)


def data_of(rows: list[dict[str, Any]]) -> ReportData:
    trials = pd.DataFrame(rows)
    return ReportData(trials=trials, configs=stats(trials), series=pd.DataFrame(), categories=pd.DataFrame(),
                      external=pd.DataFrame(), projection=None)


@dataclass
class View:
    id: str
    title: str
    family: str
    fig: Any
    note: str | None


def stub_views(trials: pd.DataFrame) -> list[View]:
    """Views as report.views makes them: per-point keys, a Pareto figure with a frontier, an empty one."""
    go = pytest.importorskip("plotly.graph_objects")
    ok = trials[trials["status"] == "ok"]
    keys = [[str(r[k]) for k in FILTER_KEYS] for _, r in ok.iterrows()]
    scatter = go.Figure(go.Scatter(x=ok["ttft_s"].to_numpy(), y=ok["j_per_token"].to_numpy(), mode="markers",
                                   marker={"color": list(range(len(ok)))}, meta={"keys": keys, "kind": "measured"}))
    scatter.update_layout(xaxis_title="Time to first token (s)", yaxis_title="Energy per output token (J)")
    pareto = go.Figure([go.Scatter(x=ok["ttft_s"].to_numpy(), y=ok["j_per_token"].to_numpy(), mode="markers",
                                   meta={"keys": keys, "kind": "measured"}),
                        go.Scatter(x=[], y=[], mode="lines", meta={"role": "frontier"}, name="frontier")])
    pareto.update_layout(meta={"pareto": {"x": "min", "y": "min", "deadline": "x", "budget": "y"}},
                         xaxis_title="Time per token (s)", yaxis_title="Energy per output token (J)")
    return [View("latency_vs_j_per_1k_tokens", "Latency and energy", "latency", scatter, "One point per trial."),
            View("pareto_time_energy", "Time-energy frontier", "pareto", pareto, "The frontier: no point beats it."),
            View("power_by_phase", "Power by phase", "time series", None, "No samples: run with a power sampler.")]


ROWS = [row(0, model="m-big", precision="bf16", accuracy=0.62, j_per_request=1.27),
        row(1, model="m-big", precision="bf16", accuracy=0.62, j_per_request=1.31, repeat=1),
        row(2, model="m-big", precision="nf4", accuracy=0.61, j_per_request=0.41),
        row(3, model="m-small", precision="bf16", accuracy=0.40, j_per_request=0.10, hardware="cpu",
            energy_source="estimated", energy_scope="cpu+ram", schema_version=None, env_json=None),
        row(4, model="m-small", precision="nf4", status="failed", j_per_request=None, accuracy=None,
            error="torch.OutOfMemoryError: CUDA out of memory.\nTraceback ...")]


@pytest.fixture
def page(tmp_path: Path) -> str:
    pytest.importorskip("plotly")
    data = data_of(ROWS)
    out = write_report(data, tmp_path / "sub" / "r.html", title="Quantization study",
                       views=stub_views(data.trials))
    return out.read_text()


def test_the_page_is_self_contained(page):
    """No script, style, image or link is fetched: every src/href is inline (or a page anchor)."""
    from plotly.offline import get_plotlyjs

    plotly_js = get_plotlyjs()
    assert page.count(plotly_js) == 1  # inlined once
    ours = page.replace(plotly_js, "")  # plotly.js holds URLs as text (its links), never fetched
    assert "<script src" not in ours.lower() and "<link" not in ours.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", ours, re.I)
    assert not re.search(r"""(fetch|XMLHttpRequest|import)\s*\(""", ours)
    assert ours.count("<script>") == 2  # plotly.js, then the page's script
    assert 3e6 < len(page.encode()) < 6.5e6  # plotly.js is most of it


def test_the_dom_has_what_the_browser_test_reads(page):
    assert "<h1>Quantization study</h1>" in page
    for id_ in ("run-info", "filters", "cheapest", "summary-table", "failures", "view-latency_vs_j_per_1k_tokens",
                "view-pareto_time_energy", "view-power_by_phase"):
        assert f'id="{id_}"' in page, id_
    for key in FILTER_KEYS:
        select = re.search(rf'<select multiple[^>]*data-key="{key}">(.*?)</select>', page)
        assert select, key
        options = re.findall(r"<option [^>]*>", select.group(1))
        assert options and all("selected" in o for o in options)
    assert re.search(r'<div class="er-chart er-nodata" id="view-power_by_phase"><p class="er-empty">No samples', page)
    assert page.index("<h2>Latency</h2>") < page.index("<h2>Pareto</h2>") < page.index("<h2>Time series</h2>")
    assert "One point per trial." in page  # the note under its chart


def test_the_table_has_a_row_per_configuration_with_intervals(page):
    body = page[page.index('<table id="summary-table">'):]
    body = body[:body.index("</table>")]
    rows = re.findall(r'<tr data-keys="([^"]*)">(.*?)</tr>', body)
    assert len(rows) == 4  # m-big bf16 (2 trials), m-big nf4, m-small bf16 on cpu, m-small nf4 (failed)
    keys = [json.loads(k.replace("&quot;", '"')) for k, _ in rows]
    assert keys[0] == ["s", "h100", "m-big", "bf16", "transformers", "qa"]
    big = rows[0][1]
    assert "1.29 ± " in big and "2/2" in big  # J/request mean of 1.27 and 1.31, its CI
    assert re.search(r'title="mean 1.29, n 2, std 0.0283, 95 % CI ± [0-9.]+"', big)
    assert "62.0 %" in big
    assert 'title="mean 0.41, n 1, std – (one value), 95 % CI – (fewer than 2 values)"' in rows[1][1]
    assert 'class="er-energy er-measured">measured (gpu)' in big
    assert 'class="er-energy er-estimated">estimated (cpu+ram)' in rows[2][1]
    assert "0/1" in rows[3][1] and "er-not-measured" in rows[3][1]
    head = body[:body.index("</thead>")]
    for h in ("hardware", "model", "precision", "J/token", "J/request", "tokens/s", "TTFT (s)", "accuracy",
              "gCO2e/request", "energy"):
        assert f"<th>{h}</th>" in head
    assert "<th>backend</th>" not in head  # constant: not a column


def test_run_info_lists_sweeps_hardware_dates_and_versions(page):
    info = dict(run_info(data_of(ROWS)))
    assert info["sweeps"] == "s (5 trials)"
    assert info["hardware"] == "cpu (1 trial), h100 (4 trials)"
    assert info["dates"] == "2026-12-01 10:00 to 2026-12-05 10:00 UTC"
    assert info["energyray"] == "0.1.0"
    assert info["schema versions"] == "3, none (energyray 0.1.0)"
    assert info["trials"] == "5: 4 ok, 1 not ok (1 failed)"
    section = page[page.index('id="run-info"'):page.index('id="filters"')]
    for text in ("s (5 trials)", "h100 (4 trials)", "2026-12-01 10:00", "0.1.0", "none (energyray 0.1.0)"):
        assert text in section


def test_failures_are_listed_by_error(page):
    section = page[page.index('<section id="failures">'):]
    assert "1 of 5 trials did not complete" in section
    assert "failed: torch.OutOfMemoryError: CUDA out of memory." in section and "Traceback" not in section
    assert "m-small, nf4" in section and "t4" in section


def test_a_store_without_failures_says_so(tmp_path):
    pytest.importorskip("plotly")
    data = data_of(ROWS[:3])
    text = write_report(data, tmp_path / "r.html", views=[]).read_text()
    assert '<section id="failures"><h2>Failures</h2><p class="er-none">No failed trials.</p>' in text
    assert "<h1>energyray report: s</h1>" in text


def test_the_old_schema_fixture_renders(tmp_path):
    """A store written by energyray 0.1.0 (no schema_version, a failure, CPU estimates)."""
    pytest.importorskip("plotly")
    trials = Store(FIXTURE).read("trials")
    data = ReportData(trials=trials, configs=stats(trials.reindex(columns=list(dict.fromkeys(
        [*trials.columns, *(m for m, _ in METRICS)])))), series=pd.DataFrame(), categories=pd.DataFrame(),
        external=pd.DataFrame(), projection=None)
    text = write_report(data, tmp_path / "r.html", views=[]).read_text()
    assert "smoke_failed" in text and "none (energyray 0.1.0)" in text
    assert "failed: ValueError: `max_new_tokens` must be greater than 0" in text
    assert "er-estimated" in text


# -- the cheapest answer ------------------------------------------------------------------------

def rec(label: str, accuracy: float | None, jpr: float | None, energy: str = "measured (gpu)",
        ok: int = 1, failed: int = 0, task: str = "t") -> dict[str, Any]:
    return {"keys": ["s", "h", label, "p", "b", task], "label": label, "accuracy": accuracy, "j_per_request": jpr,
            "ok": ok, "failed": failed, "energy": energy, "energy_kind": energy.split(" (")[0]}


CASES = {
    "scored": [rec("X", 0.62, 1.27), rec("Y", 0.61, 0.41), rec("Z", 0.50, 0.05)],
    "best is cheapest": [rec("X", 0.62, 0.3), rec("Y", 0.61, 0.41)],
    "ties": [rec("A", 0.7, 0.5), rec("B", 0.7, 0.5), rec("C", 0.7, 0.6)],
    "not scored": [rec("X", None, 2.0), rec("Y", None, 0.5, "estimated (cpu+ram)")],
    "failures only": [rec("X", None, None, ok=0, failed=3), rec("Y", None, None, ok=0, failed=1)],
    "no energy": [rec("X", 0.5, None, "not measured")],
    "mixed kinds": [rec("X", 0.62, 1.27), rec("Y", 0.61, 0.2, "estimated (cpu+ram)"), rec("W", None, 0.01)],
    "none": [],
    # an image beside text answers: each task compared on its own, never an image's J against a text's
    "two tasks": [rec("SD", None, 160.0, task="image"), rec("X", 0.62, 1.27, task="qa"), rec("Y", 0.61, 0.41, task="qa")],
    # the page's records, filtered to m-big: named by the one axis left that differs (precision)
    "filtered records": [r for r in config_records(data_of(ROWS).configs) if r["keys"][2] == "m-big"],
    # two that read the same by the axes that differ (a null weights beside real): told apart
    "told apart": config_records(data_of([row(0, accuracy=0.61, j_per_request=1.0),
                                          row(1, weights=None, accuracy=0.6, j_per_request=0.5),
                                          row(2, precision="nf4", accuracy=0.3, j_per_request=0.2)]).configs),
}


def test_cheapest_answer_when_configurations_are_scored():
    text = cheapest_answer(CASES["scored"])
    assert text == ("Highest accuracy measured: 62 % (X), at 1.27 J/request (measured (gpu)). Cheapest configuration "
                    "within 2 points of it: Y (61 %) at 0.41 J/request (measured (gpu)), 3.1× less energy than X.")
    assert "also the cheapest" in cheapest_answer(CASES["best is cheapest"])


def test_cheapest_answer_ties_go_to_the_earlier_configuration():
    assert cheapest_answer(CASES["ties"]).startswith("Highest accuracy measured: 70 % (A), at 0.5 J/request")


def test_cheapest_answer_without_accuracy_says_why_and_gives_the_cheapest():
    text = cheapest_answer(CASES["not scored"])
    assert text.startswith("No configuration was scored for accuracy")
    assert "Cheapest by energy: Y at 0.5 J/request (estimated (cpu+ram)), 4.0× less than X." in text


def test_cheapest_answer_compares_each_task_on_its_own():
    text = cheapest_answer(CASES["two tasks"])
    assert text.startswith("2 tasks, each compared on its own")
    image, qa = text.split("Task image: ")[1].split(" Task qa: ")
    assert "Cheapest by energy: SD at 160 J/request" in image and "X" not in image
    assert "Cheapest configuration within 2 points of it: Y" in qa and "SD" not in qa


def test_cheapest_answer_with_failures_only_or_no_energy():
    assert cheapest_answer(CASES["failures only"]).startswith("No trial completed (4 failed)")
    assert cheapest_answer(CASES["no energy"]).startswith("No configuration has an energy per request")
    assert cheapest_answer(CASES["none"]) == "No configuration selected."
    text = cheapest_answer(CASES["mixed kinds"])
    assert "Careful: one figure is measured, the other estimated." in text and "1 configuration(s) without" in text


def test_cheapest_answer_names_configurations_by_the_axes_that_differ_among_those_shown():
    assert cheapest_answer(CASES["filtered records"]) == (
        "Highest accuracy measured: 62 % (bf16), at 1.29 J/request (measured (gpu)). Cheapest configuration within "
        "2 points of it: nf4 (61 %) at 0.41 J/request (measured (gpu)), 3.1× less energy than bf16.")
    one = cheapest_answer(CASES["filtered records"][:1])
    assert one.startswith("Highest accuracy measured: 62 % (m-big, bf16, h100)")


def test_cheapest_answer_from_config_stats():
    data = data_of(ROWS)
    text = cheapest_answer(data.configs)
    assert text.startswith("Highest accuracy measured: 62 % (m-big, bf16, h100), at 1.29 J/request (measured (gpu)).")
    assert "m-big, nf4, h100 (61 %) at 0.41 J/request" in text and "3.1× less energy than m-big, bf16, h100" in text


def test_energy_kinds_read_differently():
    assert energy_kind("counter (gpu)") == ("measured", "measured (gpu)")
    assert energy_kind("estimated (cpu+ram)") == ("estimated", "estimated (cpu+ram)")
    assert energy_kind("pdu (wall:pdu1:1,2), estimated (cpu+ram)") == ("measured + estimated",
                                                                       "measured (wall) + estimated (cpu+ram)")
    assert energy_kind(None) == ("not measured", "not measured")
    assert energy_kind("not_measurable") == ("not measured", "not measured")


def test_fmt():
    assert [fmt(v) for v in (0.41, 0.4100001, 1234.4, 12.345, 0.000123, 3.0, 0)] == [
        "0.41", "0.41", "1234", "12.3", "0.000123", "3", "0"]


# -- the page's script ----------------------------------------------------------------------------

NODE = shutil.which("node")


@pytest.mark.skipif(NODE is None, reason="needs node to check the page's script")
def test_the_script_is_valid_javascript():
    subprocess.run([NODE, "--check", str(JS)], check=True, capture_output=True)


@pytest.mark.skipif(NODE is None, reason="needs node to run the page's script")
def test_the_script_answers_as_python_does_and_recomputes_frontiers():
    """The page recomputes the answer when a filter changes: its text is Python's for every case."""
    script = (f"const d = require({json.dumps(str(JS))}); const cases = {json.dumps(CASES)};"
              "const out = {}; for (const k in cases) out[k] = d.cheapestAnswer(cases[k]);"
              "out.fmt = [0.41, 0.4100001, 1234.4, 12.345, 0.000123, 3.0, 0].map(d.fmt);"
              "out.front = d.paretoFront([1, 2, 3, 4, 2], [5, 3, 4, 1, 2], 'min', 'min');"
              "out.frontMax = d.paretoFront([1, 2, 3, 4], [0.2, 0.1, 0.5, 0.6], 'min', 'max');"
              "console.log(JSON.stringify(out));")
    got = json.loads(subprocess.run([NODE, "-e", script], check=True, capture_output=True, text=True).stdout)
    for name, recs in CASES.items():
        assert got[name] == cheapest_answer(recs), name
    assert got["fmt"] == ["0.41", "0.41", "1234", "12.3", "0.000123", "3", "0"]
    assert got["front"] == [0, 4, 3]
    assert got["frontMax"] == [0, 2, 3]


@pytest.mark.skipif(NODE is None, reason="needs node to run the page's script")
def test_a_filter_drops_a_points_every_array_and_leaves_the_rest():
    """plotly's JSON (base64 arrays, nested marker and error arrays, 2-D customdata) sliced by a
    mask as the page does: every attribute as long as the points loses the same points."""
    go = pytest.importorskip("plotly.graph_objects")
    import numpy as np

    fig = go.Figure(go.Scatter(x=np.array([1.0, 2.0, 3.0]), y=np.array([4, 5, 6]), text=["a", "b", "c"],
                               customdata=np.array([[1, 2], [3, 4], [5, 6]]), marker={"color": ["red", "green", "blue"],
                               "size": np.array([7.0, 8.0, 9.0])}, error_y={"array": [0.1, 0.2, 0.3]},
                               line={"dash": "dot"}, meta={"keys": [["s"] * 6] * 3}))
    script = (f"const d = require({json.dumps(str(JS))}); const t = d.decode({fig.to_json()}).data[0];"
              "console.log(JSON.stringify(d.sliceArrays(t, [true, false, true], 3, 0)));")
    got = json.loads(subprocess.run([NODE, "-e", script], check=True, capture_output=True, text=True).stdout)
    assert got["x"] == [1, 3] and got["y"] == [4, 6] and got["text"] == ["a", "c"]
    assert got["customdata"] == [[1, 2], [5, 6]]
    assert got["marker"] == {"color": ["red", "blue"], "size": [7, 9]} and got["error_y"]["array"] == [0.1, 0.3]
    assert got["line"] == {"dash": "dot"} and len(got["meta"]["keys"]) == 3  # meta kept whole


def test_config_records_carry_filter_keys_in_order():
    recs = config_records(data_of(ROWS).configs)
    assert [r["keys"] for r in recs][2] == ["s", "cpu", "m-small", "bf16", "transformers", "qa"]
    assert recs[2]["energy_kind"] == "estimated" and recs[3]["ok"] == 0 and recs[3]["failed"] == 1
    assert set(CONFIG_KEYS) >= set(FILTER_KEYS)


def test_configurations_read_the_same_in_the_answer_the_charts_and_the_failures():
    """report.labels names them everywhere: nulls and defaults left out, the axes that differ shown."""
    text = cheapest_answer(CASES["told apart"])
    assert "(weights real, bf16)" in text and "bf16 (60 %)" in text and " - " not in text
    recs = config_records(data_of(ROWS).configs)
    assert [r["label"] for r in recs] == ["m-big, bf16, h100", "m-big, nf4, h100", "m-small, bf16, cpu",
                                          "m-small, nf4, h100"]


def test_the_failures_chart_is_in_the_failures_section_under_one_heading(tmp_path):
    pytest.importorskip("plotly")
    from energyray.report.views import build_views

    data = data_of(ROWS)
    text = write_report(data, tmp_path / "r.html", views=build_views(data)).read_text()
    assert text.count("<h2>Failures</h2>") == 1
    section = text[text.index('<section id="failures">'):]
    assert section.index('id="view-failures"') < section.index('<table class="er-failures">')
    assert "m-small, nf4, h100" in section and "1 of 5 trials did not complete" in section
    # none failed: the view's note is the section
    calm = data_of(ROWS[:3])
    text = write_report(calm, tmp_path / "c.html", views=build_views(calm)).read_text()
    section = text[text.index('<section id="failures">'):]
    assert "no failed trials: all 3 trials completed" in section and "er-failures" not in section
    assert text.count("<h2>Failures</h2>") == 1


def test_accuracy_in_the_table_is_pooled_with_a_wilson_interval(tmp_path):
    """Two trials of 2 scored requests each, 3 correct: 75 %, an interval inside 0-100 % (a t interval
    over the trials' 100 % and 50 % would run past 100 %)."""
    pytest.importorskip("plotly")
    rows = [row(0, accuracy=1.0, scored_requests=2, correct_requests=2),
            row(1, accuracy=0.5, scored_requests=2, correct_requests=1, repeat=1)]
    data = data_of(rows)
    text = write_report(data, tmp_path / "r.html", views=[]).read_text()
    body = text[text.index('<table id="summary-table">'):]
    cell = re.search(r'<td class="num" title="([^"]*)"[^>]*>(75.0 %[^<]*)</td>', body)
    assert cell, body[:2000]
    assert cell.group(2) == "75.0 % (30–95 %)" and "3 of 4 scored requests correct over 2 trials" in cell.group(1)
    assert config_records(data.configs)[0]["accuracy"] == 0.75
