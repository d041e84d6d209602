"""energyray/report/ and analysis/compare.py: one definition of a configuration (the sweep and
every grid axis), the end-of-sweep table at 100 columns, the whole sweep after a resume."""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from energyray.grid import AXES
from energyray.report.main import report_main
from energyray.report.summary import (
    CONFIG_KEYS,
    configurations,
    print_summary,
    print_sweep_summary,
    summarize,
)
from energyray.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))
from compare import by_config  # noqa: E402

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"
BASE: dict[str, Any] = {"sweep": "s", "model": "gemma3-270m", "backend": "transformers", "weights": "real",
                        "precision": "fp32", "batch_size": 1, "task": "qa", "prompt_variant": "default",
                        "hardware": "cpu", "max_new_tokens": None, "requests": 1, "prompt_tokens": None,
                        "chat_template": "auto", "inference_steps": None, "resolution": None,
                        "guidance_scale": None}
# for each key, a value other than BASE's
OTHER: dict[str, Any] = {"sweep": "s2", "model": "qwen2.5-72b", "backend": "vllm", "weights": "dummy",
                         "precision": "nf4", "batch_size": 8, "task": "longform", "prompt_variant": "brief",
                         "hardware": "h200", "max_new_tokens": 64, "requests": 4, "prompt_tokens": 128,
                         "chat_template": "off", "inference_steps": 20, "resolution": 512, "guidance_scale": 5.5}


def row(n: int = 0, **kw: Any) -> dict[str, Any]:
    return {**BASE, "trial_id": f"t{n}", "repeat": 0, "status": "ok", "j_per_token": 1.0, "tokens_per_s": 100.0,
            "energy_source": "counter", "energy_scope": "gpu", "error": None, **kw}


def render(trials: pd.DataFrame, width: int = 100) -> list[str]:
    console = Console(width=width, record=True)
    print_summary(trials, console)
    return console.export_text().splitlines()


def test_the_configuration_is_the_sweep_and_every_grid_axis():
    assert ("sweep", *AXES) == CONFIG_KEYS
    assert set(OTHER) == set(BASE) == set(CONFIG_KEYS)


@pytest.mark.parametrize("axis", CONFIG_KEYS)
def test_rows_that_differ_in_one_axis_are_separate_lines(axis):
    """A transformers row at 1.0 J/token and a vLLM one at 3.0 are two lines, not '2.0 ± 1.41';
    likewise for every other axis, in the summary, the printed table and analysis/compare."""
    df = pd.DataFrame([row(0, j_per_token=1.0), row(1, j_per_token=3.0, **{axis: OTHER[axis]})])
    summary = summarize(df)
    assert len(summary) == 2
    assert sorted(summary["j_per_token"]) == [1.0, 3.0] and summary["j_per_token_std"].isna().all()
    analysis = by_config(df, "j_per_token")
    assert len(analysis) == 2 and sorted(analysis["mean"]) == [1.0, 3.0]
    lines = render(df)
    assert sum("1/1" in line for line in lines) == 2
    shown = "-" if BASE[axis] is None else str(BASE[axis])
    assert any(str(OTHER[axis]) in line and "3" in line for line in lines if "1/1" in line)
    assert any(f" {shown} " in f" {line} " for line in lines if "1/1" in line)


def test_nulls_group_together_and_a_missing_axis_counts_as_null():
    """max_new_tokens is None where the sweep does not set it: None and NaN are one value, and a
    store written before an axis existed (no column) still groups; no row is dropped."""
    df = pd.DataFrame([row(0, max_new_tokens=None, j_per_token=1.0), row(1, max_new_tokens=math.nan, j_per_token=3.0),
                       row(2, max_new_tokens=64.0, j_per_token=5.0)])
    summary = summarize(df)
    assert len(summary) == 2 and summary["trials"].sum() == 3
    assert sorted(summary["j_per_token"]) == [2.0, 5.0]
    assert len(by_config(df, "j_per_token")) == 2
    old = df.drop(columns=["prompt_variant", "weights"])
    assert [len(g) for _, g in configurations(old)] == [1, 2]  # 64 first, nulls last


def test_the_store_written_by_0_1_0_summarises(capsys):
    trials = Store(FIXTURE).read("trials")
    summary = summarize(trials)
    assert summary["trials"].sum() == len(trials) == 3
    assert set(summary["sweep"]) == {"smoke", "smoke_failed"}
    assert len(by_config(trials, "j_per_token")) == 2  # the failed trial's configuration has no ok row
    assert report_main(["--store", str(FIXTURE)]) == 0
    out = capsys.readouterr().out
    assert "smoke_failed" in out and "0/1" in out and "estimated (cpu+ram)" in out
    assert "1 x failed: ValueError: `max_new_tokens` must be greater than 0" in out
    assert max(map(len, out.splitlines())) <= 100


LONG = ["mamba-codestral-7b-instruct-v0.1", "deepseek-r1-distill-llama-70b", "gemma3-270m-it-qat-q4_0-unquantized"]


def test_the_table_fits_100_columns_and_cuts_no_name():
    rows, n = [], 0
    for model in LONG:
        for precision, source, scope in (("bf16", "counter", "gpu"), ("nf4", "estimated", "cpu+ram")):
            for batch in (1, 16):
                for task in ("qa", "longform"):
                    for rep in range(2):
                        n += 1
                        rows.append(row(n, model=model, precision=precision, batch_size=batch, task=task,
                                        repeat=rep, j_per_token=0.0123 * (1 + rep / 10), tokens_per_s=1234.5 + rep,
                                        energy_source=source, energy_scope=scope, hardware="h200", sweep="quantization"))
    rows.append(row(n + 1, model=LONG[0], precision="bf16", batch_size=16, task="qa", repeat=2, status="failed",
                    hardware="h200", sweep="quantization", j_per_token=None,
                    error="torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                          "capacity of 139.80 GiB of which 1.2 GiB is free.\nTraceback ..."))
    lines = render(pd.DataFrame(rows))
    text = "\n".join(lines)
    assert max(map(len, lines)) <= 100, text
    table_lines = [line for line in lines if "/2" in line or "/3" in line]
    assert len(table_lines) == len(LONG) * 2 * 2 * 2
    for model in LONG:
        assert sum(model in line for line in table_lines) == 8, text
    assert "…" not in "\n".join(table_lines)
    assert lines[0].startswith("sweep quantization") and "transformers" in lines[0] and "h200" in lines[0]
    assert "measured (gpu)" in text and "estimated (cpu+ram)" in text
    assert any(line.startswith("measured:") for line in lines) and any(line.startswith("estimated (cpu+ram):") for line in lines)
    assert any(line.startswith("1 x failed: torch.OutOfMemoryError") for line in lines)
    assert "Traceback" not in text and "2/3" in text


def test_energy_labels_say_measured_or_estimated():
    df = pd.DataFrame([row(0, energy_source="counter_apportioned", energy_scope="gpu"),
                       row(1, energy_source="polled", energy_scope="gpu"),
                       row(2, model="m2", energy_source="estimated", energy_scope="cpu+ram"),
                       row(3, model="m3", energy_source="pdu", energy_scope="wall:pdu1:1,2"),
                       row(4, model="m4", backend="openai", energy_source="not_measurable", energy_scope=None,
                           j_per_token=None, energy_estimated_j=2.0, output_tokens=4),
                       row(5, model="m5", energy_source="not_measurable", energy_scope=None, j_per_token=None)])
    s = summarize(df).set_index("model")["energy"].to_dict()
    assert s == {"gemma3-270m": "measured (gpu)", "m2": "estimated (cpu+ram)", "m3": "measured (wall)",
                 "m4": "estimated (flops)", "m5": "not measured"}
    assert summarize(df).set_index("model").loc["m4", "j_per_token"] == 0.5
    text = "\n".join(render(df))
    for note in ("measured:", "estimated (cpu+ram):", "estimated (flops):", "not measured:"):
        assert note in text


def test_a_constant_energy_label_goes_to_the_title():
    lines = render(pd.DataFrame([row(0), row(1, precision="nf4")]))
    title = " ".join(lines[:2])
    assert "energy measured (gpu)" in title and "energy" not in lines[3]  # not a column
    assert title.startswith("sweep s · gemma3-270m · transformers · cpu")


def test_print_sweep_summary_reads_the_whole_sweep_after_a_resume(tmp_path):
    """A 2-repeat configuration whose repeats two runs stored reads 2/2, not the last run's 1/1;
    other sweeps in the store are left out."""
    store = Store(tmp_path / "store")
    for rep in (0, 1):  # run 1 stored repeat 0; the resumed run 2 stored repeat 1
        r = row(rep, repeat=rep, j_per_token=1.0 + rep)
        store.write("trials", [r], "s", "cpu", r["trial_id"])
    other = row(9, sweep="elsewhere", model="qwen2.5-72b")
    store.write("trials", [other], "elsewhere", "cpu", "t9")
    console = Console(width=100, record=True)
    print_sweep_summary(store, "s", console)
    text = console.export_text()
    assert "2/2" in text and "1/1" not in text and "qwen2.5-72b" not in text
    assert text.startswith("sweep s · gemma3-270m")
    console = Console(width=100, record=True)
    print_sweep_summary(store, "never-ran", console)
    assert "No trials of sweep 'never-ran'" in console.export_text()


def test_report_skips_a_damaged_file_says_so_and_leaves_the_store_as_it_was(tmp_path, capsys):
    store = Store(tmp_path / "store")
    for n in range(3):
        r = row(n, repeat=n)
        store.write("trials", [r], "s", "cpu", r["trial_id"])
    other = row(9, sweep="s2")
    store.write("trials", [other], "s2", "cpu", "t9")
    bad = store.file("trials", "s", "cpu", "t1")
    bad.write_bytes(bad.read_bytes()[:100])
    files = sorted(p for p in store.path.rglob("*") if p.is_file())
    assert report_main(["--store", str(store.path)]) == 0
    out = capsys.readouterr().out
    assert "3 trials" in out and "2/2" in out and "1/1" in out  # the two sweeps' summary, t1 left out
    assert "skipped 1 damaged file(s):" in out and f"{bad}: Parquet magic bytes not found" in out
    assert f"moves them to {store.path / '_quarantine'}" in out
    assert sorted(p for p in store.path.rglob("*") if p.is_file()) == files  # a reader moves nothing
    assert report_main(["--store", str(store.path), "--sweep", "s2"]) == 0  # the damaged file is not read
    assert "skipped" not in capsys.readouterr().out
    bad.write_bytes(b"")
    for n in (0, 2):
        store.file("trials", "s", "cpu", f"t{n}").write_bytes(b"")
    assert report_main(["--store", str(store.path), "--sweep", "s"]) == 1
    err = capsys.readouterr().err
    assert "No trials in" in err and "skipped 3 damaged file(s)" in err and "Parquet file size is 0 bytes" in err


@pytest.mark.extra("report")
def test_report_out_writes_the_dashboard(tmp_path, capsys):
    """--out: the terminal summary as before, and the page, its table labelled by the axes that vary."""
    pytest.importorskip("energyray.report.query")
    pytest.importorskip("energyray.report.views")
    store = Store(tmp_path / "store")
    for n, backend in enumerate(("transformers", "vllm")):
        r = row(n, backend=backend, output_tokens=4, energy_j=4.0 * (n + 1))
        store.write("trials", [r], "s", "cpu", r["trial_id"])
    out = tmp_path / "html" / "d.html"
    assert report_main(["--store", str(store.path), "--out", str(out), "--title", "Backends"]) == 0
    assert f"dashboard: {out}" in capsys.readouterr().out
    html = out.read_text()
    assert "<h1>Backends</h1>" in html and "<th>backend</th>" in html
    assert "transformers" in html and "vllm" in html


def test_report_options_that_cannot_work_fail_in_one_line(tmp_path, capsys):
    store = Store(tmp_path / "store")
    r = row(0)
    store.write("trials", [r], "s", "cpu", r["trial_id"])
    cases = [(["--store", str(tmp_path / "nowhere")], "no store at"),
             (["--store", str(store.path), "--out", str(tmp_path / "r.html"), "--external", str(tmp_path / "x.csv")],
              "--external"),
             (["--store", str(store.path), "--external", __file__], "add --out"),
             (["--store", str(store.path), "--out", str(tmp_path)], "is a directory"),
             (["--store", str(store.path), "--queries-per-day", "-3"], "positive number"),
             (["--store", str(store.path), "--bogus"], "unrecognized arguments")]
    for argv, text in cases:
        try:
            code = report_main(argv)
        except SystemExit as e:  # argparse's errors
            code = e.code
        err = capsys.readouterr().err
        assert code == 2 and text in err and len(err.strip().splitlines()) == 1, (argv, err)


def test_a_sweep_that_matches_nothing_exits_1_naming_the_sweeps_there(tmp_path, capsys):
    store = Store(tmp_path / "store")
    for n, sweep in enumerate(("s", "s2")):
        r = row(n, sweep=sweep)
        store.write("trials", [r], sweep, "cpu", r["trial_id"])
    assert report_main(["--store", str(store.path), "--sweep", "nope"]) == 1
    err = capsys.readouterr().err
    assert "No trials in" in err and "'nope'" in err and "sweeps there: s, s2" in err
    assert report_main(["--store", str(store.path), "--sweep", "s", "--sweep", "nope"]) == 1
    assert "No trials of sweep 'nope'" in capsys.readouterr().err
    assert report_main(["--store", str(store.path), "--sweep", "s", "--sweep", "s2"]) == 0
    assert "2 trials" in capsys.readouterr().out


def test_rows_written_before_the_later_axes_are_the_same_configuration():
    """A store's rows from before requests/chat_template existed (null) are one batch and template
    auto: the same configuration as new rows at those defaults (their trial ids are the same too)."""
    df = pd.DataFrame([row(0, j_per_token=1.0, requests=None, chat_template=None), row(1, j_per_token=3.0)])
    summary = summarize(df)
    assert len(summary) == 1 and summary["trials"].iloc[0] == 2
    title = " ".join(render(df)[:2])
    assert "template" not in title and "requests" not in title  # defaults add nothing to the title


def test_accuracy_is_pooled_over_the_scored_requests_and_shown_where_scored():
    df = pd.DataFrame([row(0, scored_requests=4, correct_requests=1, accuracy=0.25),
                       row(1, scored_requests=4, correct_requests=3, accuracy=0.75),
                       row(2, weights="dummy", scored_requests=0, correct_requests=None, accuracy=None,
                           accuracy_reason="random weights: the text is noise")])
    summary = summarize(df).set_index("weights")
    assert summary.loc["real", "accuracy"] == pytest.approx(0.5) and math.isnan(summary.loc["dummy", "accuracy"])
    lines = render(df)
    assert any("accuracy" in line for line in lines[:4])
    assert any("real" in line and "50%" in line for line in lines)
    assert any("dummy" in line and line.rstrip().endswith("-") for line in lines)
    assert not any("accuracy" in line for line in render(pd.DataFrame([row(0)])))  # nothing scored: no column


def test_report_exports_a_view_as_png_and_refuses_views_without_export(tmp_path, capsys):
    assert report_main(["--store", str(FIXTURE), "--views", "failures"]) == 2
    assert "add --export png" in capsys.readouterr().err
    pytest.importorskip("kaleido", reason="needs the report extra: pip install 'energyray[report]'")
    from energyray.report.export import find_chromium

    if find_chromium() is None:
        pytest.skip("no Chromium for kaleido: apt-get install chromium")
    code = report_main(["--store", str(FIXTURE), "--export", "png", "--views", "failures",
                        "--export-dir", str(tmp_path / "fig")])
    assert code == 0, capsys.readouterr().err
    png = tmp_path / "fig" / "failures.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and f"figure: {png}" in capsys.readouterr().out
