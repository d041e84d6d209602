"""Energy maths on recorded traces, replayed through ReplaySampler on a virtual clock.

tests/data/h200_decode_trace.csv is real: the `samples` rows of three trials of two sweeps
run on an NVIDIA H200 on 2026-11-21 (random-init Mistral-7B, ``weights=dummy``, transformers
backend, ``longform`` task), recorded by energyray's NVML sampler at 10 Hz: instant power,
the GPU's cumulative energy counter (NVML's total energy, in J), temperature, SM clock,
utilization, memory. One series per trial, each inside that trial's measured window:

    run   trial_id          precision  batch  rows
    gpu1  bf0878f5046f91d9  bf16       1        78   (~152 W, 7.7 s)
    gpu1  38ccc7da1020830e  nf4        4        78   (~165 W, 7.7 s)
    gpu2  c27ca7653c405e8e  int8       4       150   (~137 W, 14.9 s)

It was cut from the stores of those runs with
``Store(path).read("samples")`` (see tests/data/README.md). The synthetic traces below
(counter reset, gap, power step) are edits of it or built from scratch, and say so.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from energyray.errors import SamplerError
from energyray.samplers import base
from energyray.samplers.base import SAMPLE_COLUMNS, PollingSampler
from energyray.samplers.energy import trapezoid
from energyray.samplers.replay import TRACE_ENV, ReplaySampler, load_trace

TRACE = Path(__file__).resolve().parents[1] / "data" / "h200_decode_trace.csv"
BF16_B1, NF4_B4, INT8_B4 = "bf0878f5046f91d9", "38ccc7da1020830e", "c27ca7653c405e8e"
TRIALS = (BF16_B1, NF4_B4, INT8_B4)
S = 1_000_000_000  # ns per second


@pytest.fixture(scope="module")
def traces() -> dict[str, list[dict]]:
    return {tid: load_trace(TRACE, trial_id=tid) for tid in TRIALS}


def measure(s: ReplaySampler, t0: int, t1: int, label: str = "w", parts=None):
    s.advance_to(t0)
    s.begin(label)
    s.advance_to(t1)
    return s.end(label, parts)


def trap_j(rows: list[dict], t0_ns: int, t1_ns: int) -> float | None:
    """The trapezoid of a trace's own power rows over [t0, t1] (the reference figure)."""
    pts = [(r["t_ns"] / 1e9, r["power_w"]) for r in rows if r["power_w"] is not None]
    return trapezoid([p[0] for p in pts], [p[1] for p in pts], t0_ns / 1e9, t1_ns / 1e9).energy_j


# -- the recorded trace itself -------------------------------------------------------------------


def test_recorded_trace_is_small_real_h200_nvml_data(traces):
    assert TRACE.stat().st_size < 100_000
    assert {len(rows) for rows in traces.values()} == {78, 150}
    for rows in traces.values():
        assert {r["gpu_name"] for r in rows} == {"NVIDIA H200"}
        steps = [b["t_ns"] - a["t_ns"] for a, b in zip(rows, rows[1:], strict=False)]
        assert statistics.median(steps) == pytest.approx(0.1 * S, rel=0.01)  # the 10 Hz sampler
        energies = [r["energy_j"] for r in rows]
        assert None not in energies and energies == sorted(energies)  # a counter that never resets here
        assert all(80.0 < r["power_w"] < 700.0 for r in rows)  # between idle and the H200's 700 W limit


def test_a_file_of_several_series_needs_one_picked():
    with pytest.raises(ValueError, match="trial_id"):
        load_trace(TRACE)
    with pytest.raises(ValueError, match="trial_id"):
        ReplaySampler(str(TRACE))


# -- (a) a long window: counter delta, and the trapezoid within a few % -------------------------


@pytest.mark.parametrize("trial_id", TRIALS)
def test_long_window_counter_is_the_trace_delta_and_trapezoid_agrees(traces, trial_id):
    rows = traces[trial_id]
    s = ReplaySampler(rows, counter_period_s=0.1)
    r = measure(s, rows[0]["t_ns"], rows[-1]["t_ns"])
    delta = rows[-1]["energy_j"] - rows[0]["energy_j"]
    assert r.source == "counter" and r.short_window is False and r.reason is None
    assert r.energy_j == delta  # the same two counter readings, exactly
    assert len(r.samples) == len(rows)
    assert r.avg_power_w == pytest.approx(delta / r.duration_s)
    assert r.peak_power_w == max(x["power_w"] for x in rows)
    polled = trap_j(rows, r.start_ns, r.end_ns)
    print(f"{trial_id}: counter {delta:.1f} J, trapezoid {polled:.1f} J, ratio {polled / delta:.4f}")
    # seen: bf16 b1 1.0108, nf4 b4 1.0095, int8 b4 1.0014 (10 Hz instant power vs the counter)
    assert polled / delta == pytest.approx(1.0, abs=0.02)


def test_counter_at_an_edge_is_the_last_row_at_or_before_it_stale(traces):
    rows = traces[BF16_B1]
    s = ReplaySampler(rows)
    # edges 60 ms after rows 5 and 60: the counter reads as it stood at those rows
    r = measure(s, rows[5]["t_ns"] + 60_000_000, rows[60]["t_ns"] + 60_000_000)
    assert r.source == "counter"
    assert r.energy_j == pytest.approx(rows[60]["energy_j"] - rows[5]["energy_j"], abs=1e-9)
    # not interpolated to the edges: that would differ by ~0.6 × (one 100 ms step) at each end
    assert r.energy_j != pytest.approx(rows[61]["energy_j"] - rows[6]["energy_j"], abs=1.0)


def test_replay_end_is_polling_sampler_end_on_the_same_series(traces, monkeypatch):
    """ReplaySampler.end re-implements PollingSampler.end on the virtual clock; on windows whose
    edges fall on recorded rows both must give the same figures, sources, flags and parts."""
    rows = traces[NF4_B4]
    clock = {"t": rows[0]["t_ns"]}
    monkeypatch.setattr(base, "now_ns", lambda: clock["t"])

    class HandFed(PollingSampler):  # the real base class, polled by hand on the patched clock
        name, scope, has_counter = "replay", "gpu", True

        def __init__(self) -> None:
            super().__init__(interval_s=0.1)
            self.row: dict = rows[0]

        def _read_sample(self):
            return {c: self.row.get(c) for c in SAMPLE_COLUMNS if c != "t_ns"}

        def _read_counter_j(self):
            return self.row["energy_j"]

    ref, rep = HandFed(), ReplaySampler(rows, interval_s=0.1)
    windows = {"long": (3, 70), "short": (20, 27), "parts": (10, 60)}
    events = sorted([(i0, "begin", k) for k, (i0, _) in windows.items()] +
                    [(i1, "end", k) for k, (_, i1) in windows.items()])
    got: dict[str, tuple] = {}
    for i, row in enumerate(rows):
        clock["t"], ref.row = row["t_ns"], row
        ref._poll_once()
        rep.advance_to(row["t_ns"])
        for _, what, k in [e for e in events if e[0] == i]:
            if what == "begin":
                assert ref.begin(k) == rep.begin(k) == row["t_ns"]
            else:
                mid = rows[(windows[k][0] + i) // 2]["t_ns"] + 30_000_000
                parts = {"a": (rows[windows[k][0]]["t_ns"], mid), "b": (mid, row["t_ns"])}
                got[k] = (ref.end(k, parts), rep.end(k, parts))
    assert set(got) == set(windows)
    for k, (a, b) in got.items():
        assert (a.source, a.short_window, a.reason) == (b.source, b.short_window, b.reason), k
        assert b.energy_j == pytest.approx(a.energy_j, rel=1e-12), k
        assert (b.avg_power_w, b.peak_power_w) == pytest.approx((a.avg_power_w, a.peak_power_w), rel=1e-12), k
        assert a.parts.keys() == b.parts.keys() == {"a", "b"}
        for p in a.parts:
            assert b.parts[p]["energy_j"] == pytest.approx(a.parts[p]["energy_j"], rel=1e-12), (k, p)
            assert b.parts[p]["source"] == a.parts[p]["source"]
    assert got["short"][1].short_window and got["long"][1].source == "counter"


# -- (b) a counter reset ------------------------------------------------------------------------


def test_counter_reset_mid_window_is_unknown_with_reason(traces):
    """Synthetic: the real bf16 trace with its counter restarting from ~0 J at row 40 (a driver
    reload resets NVML's total energy)."""
    rows = [dict(r) for r in traces[BF16_B1]]
    base_j = rows[40]["energy_j"] - 0.5
    for r in rows[40:]:
        r["energy_j"] -= base_j
    s = ReplaySampler(rows)
    t0, tm, t1 = rows[10]["t_ns"], rows[40]["t_ns"], rows[70]["t_ns"]
    r = measure(s, t0, t1, parts={"before": (t0, tm), "after": (tm, t1)})
    assert r.source == "counter"
    assert r.energy_j is None  # neither negative, nor 0, nor a silent fallback
    assert r.reason and "reset" in r.reason
    assert r.avg_power_w == pytest.approx(statistics.fmean(x["power_w"] for x in rows[10:71]))
    assert all(p["energy_j"] is None and "reset" in p["reason"] for p in r.parts.values())
    # a window after the reset is measured again
    after = measure(ReplaySampler(rows), rows[45]["t_ns"], rows[75]["t_ns"])
    assert after.reason is None
    assert after.energy_j == pytest.approx(traces[BF16_B1][75]["energy_j"] - traces[BF16_B1][45]["energy_j"])


# -- (c) a gap in the series ----------------------------------------------------------------------


@pytest.fixture
def gapped(traces):
    """Synthetic: the real int8 trace with 2 s of rows (20 polls) missing from row 50 on."""
    rows = traces[INT8_B4]
    tg = rows[50]["t_ns"]
    kept = [r for r in rows if not tg <= r["t_ns"] < tg + 2 * S]
    assert len(rows) - len(kept) == 20
    return rows, kept, tg


def test_polled_energy_is_integrated_across_a_gap(gapped):
    """Assumption: with no counter, power over a gap in the series is the straight line between
    the samples either side of it (the trapezoid does not look at sample spacing)."""
    full, kept, _ = gapped
    no_counter = [{**r, "energy_j": None} for r in kept]
    s = ReplaySampler(no_counter)
    assert s.has_counter is False
    t0, t1 = full[30]["t_ns"], full[90]["t_ns"]
    r = measure(s, t0, t1)
    assert r.source == "polled" and r.reason is None
    assert r.energy_j == pytest.approx(trap_j(kept, t0, t1), rel=1e-12)
    truth = full[90]["energy_j"] - full[30]["energy_j"]  # the counter, which saw the gap
    print(f"across a 2 s gap: polled {r.energy_j:.1f} J, counter {truth:.1f} J, ratio {r.energy_j / truth:.4f}")
    # seen 0.9990: decode power is flat enough here that the straight line is close
    assert r.energy_j / truth == pytest.approx(1.0, abs=0.03)


def test_window_inside_a_gap_is_not_fabricated(gapped):
    full, kept, tg = gapped
    t0, t1 = tg + 300_000_000, tg + 1_600_000_000  # 1.3 s, no sample within 150 ms of either edge
    no_counter = ReplaySampler([{**r, "energy_j": None} for r in kept])
    r = measure(no_counter, t0, t1)
    assert r.source == "polled" and r.energy_j is None and r.reason
    assert r.samples == [] and r.avg_power_w is None
    # with a counter: the device was not being read in the gap, so neither was its counter
    # (a stale read at both edges would give a fabricated 0 J)
    counted = ReplaySampler(kept)
    r = measure(counted, t0, t1)
    assert r.source == "counter" and r.energy_j is None
    assert r.reason and "both edges" in r.reason
    # an edge inside the gap, the other outside: the series does not cover the window either
    half = measure(ReplaySampler([{**r, "energy_j": None} for r in kept]), full[40]["t_ns"], t1)
    assert half.energy_j is None and half.reason and "cover" in half.reason
    # and a counter window across the whole gap is the plain counter delta
    across = measure(ReplaySampler(kept), full[40]["t_ns"], full[80]["t_ns"])
    assert across.source == "counter"
    assert across.energy_j == pytest.approx(full[80]["energy_j"] - full[40]["energy_j"])


# -- (d) short windows ---------------------------------------------------------------------------


def test_short_windows_are_polled_flagged_and_tile_the_trapezoid(traces):
    rows = traces[BF16_B1]
    s = ReplaySampler(rows, counter_period_s=0.1)  # NVML's: windows under 1 s are short
    start = rows[10]["t_ns"] + 50_000_000  # edges between rows, so every edge is interpolated
    edges = [start + i * 370_000_000 for i in range(11)]
    s.advance_to(edges[0])
    readings = []
    for i in range(10):
        s.begin(f"w{i}")
        s.advance_to(edges[i + 1])
        readings.append(s.end(f"w{i}"))
    for r in readings:
        assert r.source == "polled" and r.short_window is True and r.reason is None
        assert r.energy_j is not None and r.energy_j > 0
    total = sum(r.energy_j for r in readings)
    assert total == pytest.approx(trap_j(rows, edges[0], edges[-1]), rel=1e-9)
    # for scale: the stale counter over the union (edges rounded down to a 100 ms row)
    counter = s._row_at(edges[-1])["energy_j"] - s._row_at(edges[0])["energy_j"]
    print(f"10 short windows: {total:.2f} J polled; counter over their union {counter:.2f} J")


def test_a_window_of_ten_counter_periods_uses_the_counter(traces):
    rows = traces[BF16_B1]
    s = ReplaySampler(rows, counter_period_s=0.1)
    r = measure(s, rows[20]["t_ns"], rows[20]["t_ns"] + S)  # exactly 1.0 s: not short
    assert r.source == "counter" and r.short_window is False
    r = measure(s, rows[40]["t_ns"], rows[40]["t_ns"] + S - 1, label="w2")
    assert r.source == "polled" and r.short_window is True


# -- (e) phase boundaries ------------------------------------------------------------------------


def step_trace(tf_s: float = 3.0, low_w: float = 100.0, high_w: float = 300.0) -> list[dict]:
    """Synthetic: 10 Hz rows over 0–6 s of a power step at tf (low before, high from it on),
    with the counter the exact integral of that step."""
    rows = []
    for i in range(61):
        t = i / 10
        e = low_w * min(t, tf_s) + high_w * max(0.0, t - tf_s)
        rows.append({"t_ns": round(t * S), "power_w": low_w if t < tf_s else high_w, "energy_j": 1000.0 + e})
    return rows


def test_parts_at_a_power_step_sum_exactly_and_follow_the_power():
    rows = step_trace()
    s = ReplaySampler(rows, counter_period_s=0.1)
    t0, tf, t1 = 1 * S, 3 * S, 5 * S
    r = measure(s, t0, t1, parts={"prefill": (t0, tf), "decode": (tf, t1)})
    assert r.source == "counter" and r.energy_j == pytest.approx(800.0)  # 100 W × 2 s + 300 W × 2 s
    pre, dec = r.parts["prefill"], r.parts["decode"]
    assert pre["source"] == dec["source"] == "counter_apportioned"
    assert pre["reason"] is None and dec["reason"] is None
    assert pre["energy_j"] + dec["energy_j"] == pytest.approx(r.energy_j, rel=1e-12)
    share = pre["energy_j"] / r.energy_j
    # truly 200/800 = 0.25; the 10 Hz series ramps over the 100 ms before the step, which puts
    # 10 J more in prefill (210/810 = 0.259); time alone would say 0.5
    assert share == pytest.approx(210.0 / 810.0, rel=1e-9)
    assert share == pytest.approx(0.25, abs=0.02)


def test_parts_on_the_real_trace_tile_the_counter_total(traces):
    rows = traces[INT8_B4]
    s = ReplaySampler(rows)
    t0, t1 = rows[0]["t_ns"], rows[-1]["t_ns"]
    tf = next(r["t_ns"] for r in rows if r["phase"] == "decode") - 40_000_000
    r = measure(s, t0, t1, parts={"prefill": (t0, tf), "decode": (tf, t1)})
    assert r.source == "counter"
    pre, dec = r.parts["prefill"]["energy_j"], r.parts["decode"]["energy_j"]
    assert pre + dec == pytest.approx(r.energy_j, rel=1e-12)
    assert pre / r.energy_j == pytest.approx(trap_j(rows, t0, tf) / trap_j(rows, t0, t1), rel=1e-9)


# -- the sampler's own contract ------------------------------------------------------------------


def test_virtual_clock_feeds_rows_and_never_goes_back(traces):
    rows = traces[BF16_B1]
    s = ReplaySampler(rows)
    s.start()
    assert s._thread is None and s.latest() is None  # no thread, nothing polled yet
    s.advance_to(rows[9]["t_ns"] + 1)
    assert [x["t_ns"] for x in s._series] == [r["t_ns"] for r in rows[:10]]
    assert s.latest() == {c: rows[9].get(c) for c in SAMPLE_COLUMNS}
    with pytest.raises(ValueError):
        s.advance_to(rows[5]["t_ns"])
    with pytest.raises(KeyError):
        s.end("never")
    s.close()


def test_from_samples_picks_one_series_of_a_samples_table(traces):
    import pandas as pd

    frame = pd.read_csv(TRACE, dtype={"trial_id": str}).assign(source="nvml")
    with pytest.raises(ValueError, match="trial_id"):
        ReplaySampler.from_samples(frame)
    s = ReplaySampler.from_samples(frame, trial_id=INT8_B4, source="nvml")
    assert [r["t_ns"] for r in s.trace] == [r["t_ns"] for r in traces[INT8_B4]]
    assert s.has_counter and s.interval_s == pytest.approx(0.1, rel=0.01)
    no_counter = ReplaySampler.from_samples(frame[frame.trial_id == BF16_B1].assign(energy_j=float("nan")))
    assert no_counter.has_counter is False


def test_registry_builds_a_realtime_replay_from_the_env(tmp_path, traces, monkeypatch):
    from energyray.registry import SAMPLERS, resolve

    cls = resolve("sampler", SAMPLERS, "replay")
    assert cls is ReplaySampler
    monkeypatch.delenv(TRACE_ENV, raising=False)
    with pytest.raises(SamplerError, match=TRACE_ENV):
        cls(device="GPU-0000", interval_s=0.1)
    path = tmp_path / "one.csv"
    path.write_text(os.linesep.join(
        ["t_ns,power_w,energy_j"] + [f"{r['t_ns']},{r['power_w']},{r['energy_j']}" for r in traces[BF16_B1]]
    ))
    monkeypatch.setenv(TRACE_ENV, str(path))
    s = cls(device="GPU-0000", interval_s=0.1)
    assert s.realtime and s.describe()["trace_rows"] == 78
    s.start()
    s.begin("w")
    time.sleep(0.25)
    r = s.end("w")
    assert 0.2 < r.duration_s < 2.0
    assert r.source == "polled" and r.short_window and r.energy_j == pytest.approx(
        trap_j(traces[BF16_B1], r.start_ns, r.end_ns), rel=1e-9)


def test_a_realtime_replay_takes_the_callers_edges_on_its_own_clock(traces):
    """A worker hands every sampler its CLOCK_MONOTONIC edges (Windows): a realtime replay
    lays them on its virtual clock (trace start + time since `start`)."""
    s = ReplaySampler(traces[BF16_B1], realtime=True)
    s.start()
    s.begin("w")
    t0 = time.monotonic_ns()
    time.sleep(0.25)
    t1 = time.monotonic_ns()
    r = s.end("w", at_ns=t1, from_ns=t0)
    assert r.duration_s == pytest.approx((t1 - t0) / 1e9, abs=1e-9)
    assert r.start_ns == s.trace[0]["t_ns"] + t0 - s._wall0_ns
    assert r.energy_j == pytest.approx(trap_j(traces[BF16_B1], r.start_ns, r.end_ns), rel=1e-9)
