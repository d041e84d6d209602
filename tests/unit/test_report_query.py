"""StoreQuery: DuckDB reads of loose files and segments with their precedence, old stores,
damaged files, per-configuration statistics equal to the summary's, downsampled series."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from energyray.report.query import StoreQuery, spaced_sql, words_sql
from energyray.report.summary import summarize
from energyray.store import Damaged, Store, to_arrow

OLD_STORE = Path(__file__).resolve().parents[1] / "data" / "store-0.1.0"


def trial(tid: str, **kw) -> dict:
    row = {"trial_id": tid, "model": "tiny-llama", "backend": "transformers", "weights": "real", "precision": "fp32",
           "batch_size": 2, "task": "qa", "prompt_variant": "default", "max_new_tokens": 16, "status": "ok",
           "energy_j": 10.0, "j_per_token": 0.1, "tokens_per_s": 50.0, "output_tokens": 100,
           "energy_source": "counter", "energy_scope": "gpu"}
    return {**row, **kw}


def segment(store: Path, table: str, rows: list[dict], sweep: str, hardware: str, stamp: str) -> Path:
    """A segment as `store compact` writes it: many trials' rows, the declared schema."""
    path = store / table / f"sweep={sweep}" / f"hardware={hardware}" / f"segment-{stamp}-0123abcd.parquet"
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(to_arrow(table, rows, strict=True), path)
    return path


def samples(tid: str, n: int, energy: float = 0.0) -> list[dict]:
    return [{"trial_id": tid, "source": "nvml:0", "phase": "decode", "t_ns": i * 10**8, "power_w": 100.0,
             "energy_j": energy + i} for i in range(n)]


def test_a_loose_file_beats_segments_and_a_later_segment_beats_an_earlier(tmp_path):
    store = Store(tmp_path)
    segment(tmp_path, "trials", [trial("a", energy_j=1.0), trial("b", energy_j=1.0), trial("c", energy_j=1.0)],
            "s", "cpu", "20261201T000000000000")
    segment(tmp_path, "trials", [trial("a", energy_j=2.0), trial("b", energy_j=2.0)], "s", "cpu",
            "20261202T000000000000")
    segment(tmp_path, "samples", [*samples("a", 5), *samples("c", 7)], "s", "cpu", "20261201T000000000000")
    segment(tmp_path, "samples", samples("a", 6), "s", "cpu", "20261202T000000000000")
    store.write("trials", [trial("a", energy_j=3.0)], "s", "cpu", "a")
    store.write("samples", samples("a", 3), "s", "cpu", "a")
    # c: its loose samples file is written before its trials file (a rerun mid-write): the
    # trials row still comes from the segment, so its samples do too
    store.write("samples", samples("c", 2), "s", "cpu", "c")
    q = StoreQuery(tmp_path)
    t = q.trials(["energy_j"]).set_index("trial_id")
    assert t["energy_j"].to_dict() == {"a": 3.0, "b": 2.0, "c": 1.0}
    assert list(t["sweep"]) == ["s"] * 3 and list(t["hardware"]) == ["cpu"] * 3
    s = q.samples(["a", "c"], max_points=1000)
    assert s.groupby("trial_id")["n"].sum().to_dict() == {"a": 3, "c": 7}
    assert q.damaged == []


def test_precedence_applies_to_trials_in_several_files_while_the_rest_keep_their_only_row(tmp_path):
    store = Store(tmp_path)
    # a: in a segment and loose; b: twice in one segment (one row kept); c, d: in one segment only
    segment(tmp_path, "trials", [trial("a", energy_j=1.0), trial("b", energy_j=1.0), trial("b", energy_j=1.0),
                                 trial("c", energy_j=4.0, precision="nf4")], "s", "cpu", "20261201T000000000000")
    segment(tmp_path, "trials", [trial("d", energy_j=5.0)], "s", "h100", "20261201T000000000000")
    resp = [{"trial_id": t, "request_index": i, "category": "math", "correct": True, "energy_j": 1.0,
             "response": "one two"} for t in ("a", "c", "d") for i in range(2)]
    segment(tmp_path, "responses", resp, "s", "cpu", "20261201T000000000000")
    store.write("trials", [trial("a", energy_j=3.0)], "s", "cpu", "a")
    store.write("responses", [{"trial_id": "a", "request_index": 0, "category": "math", "correct": False,
                               "energy_j": 7.0, "response": "one two three"}], "s", "cpu", "a")
    q = StoreQuery(tmp_path)
    t = q.trials(["energy_j"])
    assert list(t["trial_id"]) == ["a", "b", "c", "d"]
    assert t.set_index("trial_id")["energy_j"].to_dict() == {"a": 3.0, "b": 1.0, "c": 4.0, "d": 5.0}
    r = q.responses_by_category().set_index(["hardware", "precision"])
    # a's responses come from its loose file only (its trials row's), c's and d's from the segment
    assert r.loc[("cpu", "fp32"), ["responses", "correct", "energy_j", "output_words"]].tolist() == [1, 0, 7.0, 3]
    assert r.loc[("cpu", "nf4"), ["responses", "correct", "output_words"]].tolist() == [2, 2, 4]
    assert list(r.index) == [("cpu", "fp32"), ("h100", "fp32"), ("cpu", "nf4")]  # CONFIG_KEYS order: precision first
    _same_as_summary(q, q.trials())


def test_an_old_store_reads_and_its_stats_equal_the_summary():
    q = StoreQuery(OLD_STORE)
    t = q.trials(["model", "j_per_token", "ttft_s", "no_such_column"])
    assert len(t) == 3 and set(t["status"]) == {"ok", "failed"} and t["no_such_column"].isna().all()
    assert t["ttft_s"].notna().sum() == 2  # a legacy file's prefill_s or ttft_s, whichever it has
    _same_as_summary(q, Store(OLD_STORE).read("trials"))
    assert len(q.systems()) == 2 and q.damaged == []
    assert q.responses_by_category().empty  # the table came later: no folder


def test_a_damaged_file_is_skipped_and_listed(tmp_path):
    store = Store(tmp_path)
    for tid in ("a", "b", "c", "d"):
        store.write("trials", [trial(tid)], "s", "cpu", tid)
    folder = tmp_path / "trials" / "sweep=s" / "hardware=cpu"
    (folder / "b.parquet").write_bytes(b"not parquet at all")
    good = (folder / "c.parquet").read_bytes()
    (folder / "c.parquet").write_bytes(good[: len(good) // 2])  # truncated
    (folder / "d.parquet").write_bytes(b"PAR1" + b"\x00" * 200 + b"PAR1")  # magic bytes, no footer
    q = StoreQuery(tmp_path)
    assert list(q.trials()["trial_id"]) == ["a"]
    assert {d.path.name for d in q.damaged} == {"b.parquet", "c.parquet", "d.parquet"}
    assert all(isinstance(d, Damaged) and d.reason for d in q.damaged)
    assert (folder / "b.parquet").exists()  # a reader leaves them in place


def _store_with_failures(path: Path) -> Store:
    store = Store(path)
    rng = np.random.default_rng(1)
    n = 0
    for sweep, hardware in (("s1", "h100"), ("s1", "cpu"), ("s2", "h100")):
        for precision in ("fp32", "nf4"):
            for rep in range(4):
                n += 1
                if rep == 3 and precision == "nf4":
                    row = trial(f"t{n}", precision=precision, status="failed", error="ValueError: boom",
                                energy_j=None, j_per_token=None, tokens_per_s=None, energy_source="not_measurable")
                else:
                    source = ("counter", "gpu") if hardware == "h100" else ("estimated", "cpu+ram")
                    row = trial(f"t{n}", precision=precision, j_per_token=float(rng.uniform(0.05, 0.2)),
                                tokens_per_s=float(rng.uniform(10, 90)), energy_source=source[0],
                                energy_scope=source[1], requests=None if rep == 0 else 2)
                store.write("trials", [row], sweep, hardware, row["trial_id"])
    return store


def _same_as_summary(q: StoreQuery, trials: pd.DataFrame) -> None:
    want = summarize(trials)
    got = q.config_stats(["j_per_token", "tokens_per_s"])
    assert len(got) == len(want)
    for col in ("sweep", "hardware", "precision", "requests", "trials", "ok", "failed"):
        assert [None if pd.isna(v) else v for v in got[col]] == [None if pd.isna(v) else v for v in want[col]], col
    for col in ("j_per_token", "j_per_token_std", "tokens_per_s", "tokens_per_s_std"):
        np.testing.assert_allclose(got[col].astype(float), want[col].astype(float), rtol=1e-9, err_msg=col)
    assert list(got["energy_sources"]) == list(want["energy_source"])
    assert list(got["energy"]) == list(want["energy"])


def test_config_stats_equal_the_summary_with_failures_and_two_sweeps_and_hardware(tmp_path):
    store = _store_with_failures(tmp_path)
    q = StoreQuery(tmp_path)
    _same_as_summary(q, store.read("trials"))
    stats = q.config_stats(["j_per_token"])
    assert stats["failed"].sum() == 3 and (stats["trials"] == 4).all()
    row = stats.iloc[0]  # s1, cpu, fp32: four ok trials
    assert row["j_per_token_n"] == 4
    assert row["j_per_token_ci95"] == pytest.approx(3.182 * row["j_per_token_std"] / math.sqrt(4))
    assert StoreQuery(tmp_path, sweeps=["s2"]).config_stats(["j_per_token"])["sweep"].tolist() == ["s2", "s2"]


def test_samples_are_downsampled_within_phases_and_energy_accumulates_to_the_total(tmp_path):
    store = Store(tmp_path)
    phases = ["idle"] * 500 + ["load"] * 300 + (["prefill"] * 20 + ["decode"] * 180) * 5 + ["unload"] * 200
    t = np.cumsum(np.random.default_rng(2).uniform(0.05, 0.15, len(phases)))
    power = 100 + 50 * np.sin(t)
    rows = [{"trial_id": "x", "source": "nvml:0", "phase": p, "t_ns": int(ti * 1e9), "power_w": float(w),
             "energy_j": 1000.0 + 2 * i, "temperature_c": 40.0} for i, (p, ti, w) in enumerate(zip(phases, t, power, strict=True))]
    rows += [{"trial_id": "x", "source": "pdu", "phase": p, "t_ns": int(ti * 1e9), "power_w": float(w) + 80}
             for p, ti, w in zip(phases, t, power, strict=True)]
    store.write("trials", [trial("x")], "s", "h100", "x")
    store.write("samples", rows, "s", "h100", "x")
    s = StoreQuery(tmp_path).samples(["x"], max_points=50)
    assert set(s["source"]) == {"nvml:0", "pdu"}
    for _, g in s.groupby("source"):
        assert len(g) <= 50
        assert g["t_s"].is_monotonic_increasing and 0 <= g["t_s"].iloc[0] < g["t_s"].iloc[-1] <= t[-1] - t[0]
        # no bucket spans two phases: each phase's raw count is its buckets' sum
        assert g.groupby("phase")["n"].sum().to_dict() == pd.Series(phases).value_counts().to_dict()
        assert g["energy_j"].is_monotonic_increasing
    gpu, wall = s[s["source"] == "nvml:0"], s[s["source"] == "pdu"]
    assert gpu["energy_j"].iloc[-1] == pytest.approx(2 * (len(phases) - 1))  # the counter's last less its first
    trapezoid = float(np.sum(np.diff(t) * (power[1:] + power[:-1] + 160) / 2))
    assert wall["energy_j"].iloc[-1] == pytest.approx(trapezoid, rel=1e-6)  # no counter: power integrated
    assert (gpu["power_max_w"] >= gpu["power_w"] - 1e-9).all()
    assert StoreQuery(tmp_path).samples(["nope"]).empty


def test_responses_by_category_counts(tmp_path):
    store = Store(tmp_path)
    for tid, precision in (("a", "fp32"), ("b", "fp32"), ("c", "nf4")):
        store.write("trials", [trial(tid, precision=precision)], "s", "cpu", tid)
        store.write("responses", [
            {"trial_id": tid, "request_index": 0, "category": "math", "correct": True, "energy_j": 1.0,
             "response": "four apples"},
            {"trial_id": tid, "request_index": 1, "category": "math", "correct": False, "energy_j": 2.0,
             "response": "three"},
            {"trial_id": tid, "request_index": 2, "category": "law", "correct": None, "energy_j": 0.5,
             "response": None},
        ], "s", "cpu", tid)
    r = StoreQuery(tmp_path).responses_by_category()
    assert list(zip(r["precision"], r["category"], strict=True)) == [
        ("fp32", "law"), ("fp32", "math"), ("nf4", "law"), ("nf4", "math")]
    math_fp32 = r[(r["precision"] == "fp32") & (r["category"] == "math")].iloc[0]
    assert (math_fp32["responses"], math_fp32["correct"], math_fp32["scored"]) == (4, 2, 4)
    assert math_fp32["accuracy"] == 0.5 and math_fp32["energy_j"] == 6.0 and math_fp32["output_words"] == 6
    law_nf4 = r[(r["precision"] == "nf4") & (r["category"] == "law")].iloc[0]
    assert law_nf4["scored"] == 0 and pd.isna(law_nf4["accuracy"]) and law_nf4["responses"] == 1


def test_an_empty_or_missing_store_gives_empty_frames(tmp_path):
    shutil.rmtree(tmp_path, ignore_errors=True)
    q = StoreQuery(tmp_path)
    assert q.trials().empty and q.config_stats(["j_per_token"]).empty and q.samples(["a"]).empty
    assert q.responses_by_category().empty and q.systems().empty


@pytest.mark.parametrize("text", ["  a  b\nc ", "", "   ", "one", "x\u00a0y\u3000z", "a" + " " * 40 + "b",
                                  "tab\tsep\r\nline", None])
def test_words_count_as_str_split_does(text):
    import duckdb

    sql = f"SELECT {words_sql('w')} FROM (SELECT {spaced_sql('s')} AS w FROM (SELECT ?::VARCHAR AS s))"
    assert duckdb.connect().execute(sql, [text]).fetchone()[0] == (None if text is None else len(text.split()))


def test_a_file_with_a_sound_footer_and_damaged_pages_is_found_by_the_query_and_skipped(tmp_path):
    store = Store(tmp_path)
    for tid in ("a", "b"):
        store.write("trials", [trial(tid)], "s", "cpu", tid)
        store.write("samples", samples(tid, 3000), "s", "cpu", tid)
    bad = tmp_path / "samples" / "sweep=s" / "hardware=cpu" / "b.parquet"
    data = bytearray(bad.read_bytes())
    data[8: len(data) // 2] = b"\xff" * (len(data) // 2 - 8)  # the pages, not the footer
    bad.write_bytes(bytes(data))
    q = StoreQuery(tmp_path)
    assert q.samples(["a", "b"]).groupby("trial_id")["n"].sum().to_dict() == {"a": 3000}
    assert [d.path for d in q.damaged] == [bad] and str(bad) not in q.damaged[0].reason
    assert list(q.trials()["trial_id"]) == ["a", "b"]  # its trials row reads: the trial shows, without a series
