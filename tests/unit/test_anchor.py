"""Short windows anchored to the energy counter (PollingSampler.anchor), with no hardware.

A window shorter than ~10 counter updates is integrated from the polled power series at
`end` and flagged short_window. On bursty, launch-bound work NVML's 10 Hz power misses part
of the energy (on an H200, 100 back-to-back 20 ms passes summed to −17 % of the counter), so
`anchor` shares the counter's delta over a span around the run by the series' shape.

The traces here are synthetic and say what they model: a device whose true power bursts
(400 W / 150 W within every 30 ms) while its polled power reads a steady 250 W (−21 %), and
whose counter is the exact integral of the true power, either read as current (ReplaySampler)
or, NVML-like, refreshed only every 100 ms so that every read is stale by up to 100 ms.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from energyray.samplers import base
from energyray.samplers.base import PollingSampler, WindowReading
from energyray.samplers.energy import (
    counter_points,
    counter_span,
    largest_gap_s,
    span_delta,
    trapezoid,
)
from energyray.samplers.replay import ReplaySampler, load_trace

S = 1_000_000_000
MS = 1_000_000
IDLE_W, ON_W, OFF_W, POLLED_W = 100.0, 400.0, 150.0, 250.0
CYCLE_S, ON_S = 0.030, 0.020
OFFSET_J = 1000.0


class Bursts:
    """True power: IDLE_W outside [r0, r1); inside, ON_W for the first ON_S of every CYCLE_S
    from r0 and OFF_W for the rest (mean 316.7 W). The polled power reads POLLED_W inside."""

    def __init__(self, r0_s: float, r1_s: float) -> None:
        self.r0, self.r1 = r0_s, r1_s

    def energy_j(self, t_s: float) -> float:
        """The exact integral of the true power from 0 to t_s, plus OFFSET_J."""
        e = IDLE_W * min(t_s, self.r0)
        if t_s > self.r0:
            x = min(t_s, self.r1) - self.r0
            cycles, rest = divmod(x, CYCLE_S)
            e += cycles * (ON_W * ON_S + OFF_W * (CYCLE_S - ON_S))
            e += ON_W * min(rest, ON_S) + OFF_W * max(0.0, rest - ON_S)
        if t_s > self.r1:
            e += IDLE_W * (t_s - self.r1)
        return OFFSET_J + e

    def polled_w(self, t_s: float) -> float:
        return POLLED_W if self.r0 <= t_s < self.r1 else IDLE_W


def burst_rows(dev: Bursts, until_s: float = 7.0) -> list[dict]:
    """10 Hz rows: polled power that misses the bursts, and an exact counter."""
    out = []
    for k in range(int(round(until_s * 10)) + 1):
        t = k / 10
        out.append({"t_ns": round(t * S), "power_w": dev.polled_w(t), "energy_j": dev.energy_j(t)})
    return out


def run_windows(s: ReplaySampler, edges_ns: list[int]) -> list[WindowReading]:
    """Back-to-back windows between consecutive edges, on the replay's clock."""
    readings = []
    for i, (a, b) in enumerate(zip(edges_ns, edges_ns[1:], strict=False)):
        s.advance_to(a)
        s.begin(f"c{i}")
        s.advance_to(b)
        readings.append(s.end(f"c{i}"))
    return readings


R0_S = 2.017  # the run starts between two rows
N = 100


@pytest.fixture
def dev() -> Bursts:
    return Bursts(R0_S, R0_S + N * CYCLE_S)


def edges(dev: Bursts) -> list[int]:
    return [round((dev.r0 + i * CYCLE_S) * S) for i in range(N + 1)]


def total(readings: list[WindowReading]) -> float:
    return sum(r.energy_j for r in readings if r.energy_j is not None)


# -- the maths -----------------------------------------------------------------------------------


def test_counter_points_date_each_value_by_the_reads_around_it():
    stale = 100 * MS
    # an isolated read: somewhere in the period before it, so its middle, give or take half
    assert counter_points([(1000 * MS, 1004 * MS, 5.0)], stale) == [(952 * MS, 5.0, 52 * MS)]
    # a read that sees a new value 30 ms after one that saw the old: the update lies between
    pts = counter_points([(0, 4 * MS, 5.0), (30 * MS, 34 * MS, 6.0)], stale)
    assert pts[1] == (17 * MS, 6.0, 17 * MS)
    # several reads of one value collapse into one point; the last of them bounds it from below
    pts = counter_points([(0, 4 * MS, 5.0), (30 * MS, 34 * MS, 6.0), (120 * MS, 124 * MS, 6.0)], stale)
    assert [v for _, v, _ in pts] == [5.0, 6.0] and pts[1][:2] == ((20 * MS + 34 * MS) // 2, 6.0)
    assert pts[1][2] == 7 * MS
    # a counter read as current (stale 0): the read's own time, exactly
    assert counter_points([(7, 7, 1.0), (9, 9, 2.0)], 0) == [(7, 1.0, 0), (9, 2.0, 0)]
    # a value seen for longer than one period (a stalled counter): dated at its first read
    assert counter_points([(0, 0, 1.0), (500 * MS, 500 * MS, 1.0)], stale)[0][0] == 0


def test_counter_points_on_an_nvml_like_counter_are_within_the_read_spacing():
    """Updates every 100 ms at phase 37 ms; reads every 17 ms: each value is dated within
    half a read spacing of the update that produced it, and says so."""
    def update_before(t_ns: int) -> int:
        return 37 * MS + (t_ns - 37 * MS) // (100 * MS) * (100 * MS)

    reads = [(t, t + 4 * MS, float(update_before(t))) for t in range(200 * MS, 2000 * MS, 17 * MS)]
    pts = counter_points(reads, 100 * MS)
    assert len(pts) == 19
    for t_est, value, unc in pts[1:]:  # the first has no earlier read to bound it
        assert abs(t_est - value) <= unc <= 11 * MS
    assert pts[0][2] > 11 * MS  # its update could lie anywhere in the period before its last read


def test_counter_span_takes_the_readings_nearest_the_run_and_widens_to_the_resolution():
    times = [0, 500, 1000, 1500, 2000, 2500, 3000]
    assert counter_span(times, 1020, 2480, min_span_ns=1000, tol_ns=100) == (2, 5)
    # the nearest may lie slightly inside the run (a stale last read), within tol
    assert counter_span(times, 1020, 2560, min_span_ns=1000, tol_ns=100) == (2, 5)
    # a run shorter than the counter resolves: widened, the closer neighbour first
    assert counter_span(times, 1100, 1200, min_span_ns=1000, tol_ns=100) == (1, 3)  # a tie goes left
    # a well-dated point a little further away beats a badly dated one at the edge
    assert counter_span(times, 1020, 2480, 1000, 600, uncertainty_ns=[0, 0, 200, 0, 0, 0, 0]) == (3, 5)
    assert counter_span(times, 1020, 2480, 500, 600, uncertainty_ns=[0, 0, 200, 0, 0, 200, 0]) == (3, 4)
    assert counter_span(times, 1020, 2480, 500, 600, uncertainty_ns=[0, 0, 100, 0, 0, 0, 0]) == (2, 5)
    assert isinstance(counter_span(times, 1100, 1200, min_span_ns=10_000, tol_ns=100), str)
    assert "before" in counter_span([5000, 6000], 1000, 7000, 1000, 100)
    assert "after" in counter_span([0, 1000], 0, 7000, 1000, 100)


def test_span_delta_sums_steps_and_a_reset_anywhere_is_unknown():
    assert span_delta([1.0, 3.0, 6.0], [0, 1, 2]).energy_j == pytest.approx(5.0)
    # back past the start after a reset: the end-to-end delta would be +1 J, but it is unknown
    r = span_delta([10.0, 20.0, 0.5, 11.0], [0, 1, 2, 3])
    assert r.energy_j is None and "reset" in r.reason and "t_ns=2" in r.reason
    assert span_delta([8.0, 9.5, 1.0], [0, 1, 2], wrap_j=10.0).energy_j == pytest.approx(3.0)


def test_largest_gap_covers_the_span_edges():
    ts = [0.0, 0.1, 0.2, 0.8, 0.9]
    assert largest_gap_s(ts, 0.05, 0.85) == pytest.approx(0.6)
    assert largest_gap_s(ts, 0.0, 0.15) == pytest.approx(0.1)


# -- a replayed run of short windows -------------------------------------------------------------


def test_raw_sum_misses_the_bursts_and_the_anchored_sum_follows_the_counter(dev):
    s = ReplaySampler(burst_rows(dev), counter_period_s=0.1)
    e = edges(dev)
    readings = run_windows(s, e)
    truth = dev.energy_j(dev.r1) - dev.energy_j(dev.r0)
    assert truth == pytest.approx(N * (ON_W * ON_S + OFF_W * (CYCLE_S - ON_S)))
    assert all(r.short_window and r.source == "polled" for r in readings)
    raw = total(readings)
    assert raw / truth - 1 < -0.10  # the power series misses a fifth of the energy

    s.advance_to(7 * S)  # later rows (and counter reads) come in: the span still hugs the run
    anchored = s.anchor(readings)
    got = total(anchored)
    print(f"raw {raw:.1f} J ({100 * (raw / truth - 1):+.2f} %), anchored {got:.1f} J "
          f"({100 * (got / truth - 1):+.2f} %), counter {truth:.1f} J")
    assert got == pytest.approx(truth, rel=0.005)
    assert len(anchored) == N and [r.label for r in anchored] == [r.label for r in readings]
    for a, r in zip(anchored, readings, strict=True):
        assert a.source == "counter_apportioned" and a.short_window and a.reason is None
        assert a.energy_j is not None and a.energy_j >= 0
        assert (a.start_ns, a.end_ns) == (r.start_ns, r.end_ns)
        assert a.avg_power_w == pytest.approx(a.energy_j / a.duration_s)
        assert a.extras["polled_j"] == pytest.approx(r.energy_j)
    info = anchored[0].extras
    # the counter rows nearest the run's edges: 2.0 s and 5.0 s (the run is 2.017–5.017 s)
    assert (info["anchor_span_start_ns"], info["anchor_span_end_ns"]) == (2 * S, 5 * S)
    assert info["anchor_counter_j"] == pytest.approx(dev.energy_j(5.0) - dev.energy_j(2.0))
    assert info["anchor_scale"] == pytest.approx(info["anchor_counter_j"] / info["anchor_polled_j"])
    assert info["anchor_scale"] > 1.2 and info["anchor_windows"] == N
    assert 0.99 < info["anchor_coverage"] <= 1.0
    # the originals are untouched
    assert all(r.source == "polled" and "anchor_scale" not in r.extras for r in readings)


def test_windows_and_gaps_that_tile_the_span_sum_to_its_counter_delta_exactly(dev):
    """Windows from counter row to counter row, with holes between some of them: the windows
    plus the holes, at the span's scale, are the counter's delta by construction."""
    s = ReplaySampler(burst_rows(dev), counter_period_s=0.1)
    readings = []
    for i, t in enumerate(range(20, 50, 2)):  # rows 2.0 … 4.8 s; each 150 ms window leaves a 50 ms hole
        a, b = t * S // 10, t * S // 10 + 150 * MS
        s.advance_to(a)
        s.begin(f"w{i}")
        s.advance_to(b)
        readings.append(s.end(f"w{i}"))
    s.advance_to(6 * S)
    anchored = s.anchor(readings)
    info = anchored[0].extras
    a0, b0 = info["anchor_span_start_ns"], info["anchor_span_end_ns"]
    assert (a0, b0) == (2 * S, 5 * S)
    scale = info["anchor_scale"]
    holes = [(r.end_ns, nxt.start_ns) for r, nxt in zip(readings, readings[1:], strict=False)]
    holes.append((readings[-1].end_ns, b0))
    ts, ps = [x["t_ns"] / 1e9 for x in s.trace], [x["power_w"] for x in s.trace]
    hole_j = sum(trapezoid(ts, ps, a / 1e9, b / 1e9).energy_j for a, b in holes)
    assert total(anchored) + scale * hole_j == pytest.approx(dev.energy_j(5.0) - dev.energy_j(2.0), rel=1e-12)


def test_parts_of_a_short_window_are_rescaled_with_it(dev):
    s = ReplaySampler(burst_rows(dev), counter_period_s=0.1)
    e = edges(dev)
    readings = run_windows(s, e[:50])
    mid = (e[50] + e[51]) // 2
    s.advance_to(e[50])
    s.begin("split")
    s.advance_to(e[51])
    split = s.end("split", parts={"first": (e[50], mid), "second": (mid, e[51])})
    anchored = s.anchor([*readings, split])[-1]
    assert anchored.source == "counter_apportioned"
    first, second = anchored.parts["first"], anchored.parts["second"]
    assert first["source"] == second["source"] == "counter_apportioned"
    assert first["energy_j"] + second["energy_j"] == pytest.approx(anchored.energy_j, rel=1e-12)
    assert first["energy_j"] / anchored.energy_j == pytest.approx(
        split.parts["first"]["energy_j"] / split.energy_j, rel=1e-12)


def test_a_reset_inside_the_span_makes_the_run_unknown_with_the_reason(dev):
    rows = burst_rows(dev)
    base_j = next(r["energy_j"] for r in rows if r["t_ns"] == 4 * S) - 0.5
    for r in rows:
        if r["t_ns"] >= 4 * S:
            r["energy_j"] -= base_j  # a driver reload restarts NVML's total energy
    s = ReplaySampler(rows, counter_period_s=0.1)
    readings = run_windows(s, edges(dev))
    s.advance_to(7 * S)
    anchored = s.anchor(readings)
    for a in anchored:
        assert a.energy_j is None and a.short_window
        assert a.reason and "reset" in a.reason and "anchor" in a.reason


def test_a_gap_in_the_power_series_falls_back_to_the_polled_figure_with_a_reason(dev):
    """Synthetic: the device was not polled for 0.6 s in the middle of the run."""
    rows = [r for r in burst_rows(dev) if not 3 * S <= r["t_ns"] < 3 * S + 600 * MS]
    s = ReplaySampler(rows, counter_period_s=0.1)
    readings = run_windows(s, edges(dev))
    s.advance_to(7 * S)
    anchored = s.anchor(readings)
    for a, r in zip(anchored, readings, strict=True):
        assert a.source == "polled" and a.energy_j == r.energy_j
        assert a.reason and ("gap" in a.reason or a.reason == r.reason)
    assert sum(1 for a in anchored if a.reason and "gap" in a.reason) > N // 2


def test_long_windows_and_counterless_samplers_are_left_alone(dev):
    s = ReplaySampler(burst_rows(dev), counter_period_s=0.1)
    long = run_windows(s, [2 * S, 4 * S])
    assert long[0].source == "counter"
    assert s.anchor(long) == long
    polled_only = ReplaySampler([{**r, "energy_j": None} for r in burst_rows(dev)], counter_period_s=0.1)
    readings = run_windows(polled_only, edges(dev)[:20])
    assert polled_only.anchor(readings) == readings


def test_one_short_window_is_anchored_over_a_span_of_at_least_the_counters_resolution(dev):
    s = ReplaySampler(burst_rows(dev), counter_period_s=0.1)
    e = edges(dev)
    [r] = run_windows(s, e[40:42])
    s.advance_to(7 * S)
    [a] = s.anchor([r])
    span_s = (a.extras["anchor_span_end_ns"] - a.extras["anchor_span_start_ns"]) / 1e9
    assert span_s >= 1.0 and a.extras["anchor_windows"] == 1
    truth = dev.energy_j(e[41] / S) - dev.energy_j(e[40] / S)
    assert a.energy_j == pytest.approx(truth, rel=0.02)  # inside the burst run: its ratio applies
    assert r.energy_j / truth - 1 < -0.10


def test_the_recorded_h200_trace_anchored_between_counter_rows_is_the_counter_delta():
    """Real data (tests/data/h200_decode_trace.csv, see test_replay_traces.py): short windows
    that tile exactly the span between two counter rows sum to that counter delta."""
    rows = load_trace(Path(__file__).resolve().parents[1] / "data" / "h200_decode_trace.csv",
                      trial_id="c27ca7653c405e8e")
    s = ReplaySampler(rows, counter_period_s=0.1)
    t0, t1 = rows[10]["t_ns"], rows[60]["t_ns"]
    step = (t1 - t0) // 16
    e = [t0 + k * step for k in range(16)] + [t1]
    readings = run_windows(s, e)
    anchored = s.anchor(readings)
    delta = rows[60]["energy_j"] - rows[10]["energy_j"]
    assert total(anchored) == pytest.approx(delta, rel=1e-9)
    raw = total(readings)
    print(f"int8 decode, 16 windows of {step / 1e6:.0f} ms: polled {raw:.1f} J, counter {delta:.1f} J")
    assert raw / delta == pytest.approx(1.0, abs=0.03)  # flat decode power: the two agree here


# -- the real PollingSampler against an NVML-like stale counter ------------------------------------


class NvmlLike(PollingSampler):
    """The real base class on a patched clock: the counter is refreshed every 100 ms (phase
    37 ms) and each read takes 4 ms; the series polls power (and the counter once a second)."""

    name, scope, has_counter, counter_period_s = "nvml-like", "gpu", True, 0.1

    def __init__(self, dev: Bursts, clock: dict) -> None:
        super().__init__(interval_s=0.1)
        self.dev, self.clock = dev, clock
        self.last_series_counter = -S

    def _counter_now(self) -> float:
        t = self.clock["t"]
        update = 37 * MS + (t - 37 * MS) // (100 * MS) * (100 * MS)
        return self.dev.energy_j(update / S)

    def _read_counter_j(self) -> float:
        value = self._counter_now()
        self.clock["t"] += 4 * MS  # the read's cost, as NVML's
        return value

    def _read_sample(self) -> dict:
        t = self.clock["t"]
        energy = None
        if t - self.last_series_counter >= S:
            energy, self.last_series_counter = self._counter_now(), t
        return {"power_w": self.dev.polled_w(t / S), "energy_j": energy}


def test_anchoring_with_an_nvml_like_stale_counter_and_call_costs(monkeypatch):
    clock = {"t": 0}
    monkeypatch.setattr(base, "now_ns", lambda: clock["t"])
    n, work_ns = 100, 30 * MS
    dev = Bursts(2.017, 2.017 + n * 0.038)  # each window: the end read, the begin read, 30 ms of work
    s = NvmlLike(dev, clock)
    next_poll = [0]

    def advance(t_ns: int) -> None:
        while next_poll[0] <= t_ns:
            clock["t"] = max(clock["t"], next_poll[0])
            s._poll_once()
            next_poll[0] += 100 * MS
        clock["t"] = max(clock["t"], t_ns)

    advance(round(dev.r0 * S))
    edge, first = clock["t"], clock["t"]
    readings = []
    for i in range(n):
        s.begin(f"c{i}", at_ns=edge)
        advance(clock["t"] + work_ns)
        edge = clock["t"]
        readings.append(s.end(f"c{i}", at_ns=edge))
        advance(clock["t"])
    advance(clock["t"] + 2 * S)
    truth = dev.energy_j(edge / S) - dev.energy_j(first / S)
    raw = total(readings)
    anchored = s.anchor(readings)
    got = total(anchored)
    print(f"NVML-like: raw {100 * (raw / truth - 1):+.2f} %, anchored {100 * (got / truth - 1):+.2f} % "
          f"(span {anchored[0].extras['anchor_span_start_ns'] / 1e6:.1f}–"
          f"{anchored[0].extras['anchor_span_end_ns'] / 1e6:.1f} ms, run {first / 1e6:.1f}–{edge / 1e6:.1f} ms)")
    assert raw / truth - 1 < -0.10
    assert all(a.source == "counter_apportioned" and a.energy_j >= 0 for a in anchored)
    assert got == pytest.approx(truth, rel=0.005)
    # the span's ends are the counter updates nearest the run's edges (the last one up to
    # 100 ms before the run's end: the counter's staleness), each dated to within ~half the
    # 38 ms between reads of the update that produced it
    info = anchored[0].extras
    updates = {dev.energy_j((37 * MS + k * 100 * MS) / S): 37 * MS + k * 100 * MS for k in range(80)}
    dated = {t: v for t, v, _ in counter_points(s._counter_log, 100 * MS)}
    for key, near in (("start", first), ("end", edge)):
        t_est = info[f"anchor_span_{key}_ns"]
        assert abs(t_est - updates[dated[t_est]]) <= 20 * MS
        assert abs(t_est - near) <= 100 * MS
    assert info["anchor_counter_j"] == pytest.approx(dated[info["anchor_span_end_ns"]] - dated[
        info["anchor_span_start_ns"]])
