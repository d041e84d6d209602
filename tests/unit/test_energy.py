"""Energy maths (counters, trapezoid, interpolation) and the PollingSampler base class."""

from __future__ import annotations

import time

import pytest

from energyray.samplers.base import PollingSampler
from energyray.samplers.energy import Energy, counter_delta, interpolate, power_stats, trapezoid

# -- counter_delta -----------------------------------------------------------------------------


def test_counter_delta_normal():
    e = counter_delta(100.0, 160.5)
    assert e == Energy(60.5, None)


def test_counter_delta_zero_is_zero_not_unknown():
    e = counter_delta(42.0, 42.0)
    assert e.energy_j == 0.0
    assert e.reason is None


def test_counter_delta_reset_is_unknown_with_reason():
    e = counter_delta(100.0, 5.0)
    assert e.energy_j is None
    assert e.reason is not None
    assert "reset" in e.reason


def test_counter_delta_wrap_is_unwrapped():
    wrap = 1000.0
    e = counter_delta(990.0, 5.0, wrap_j=wrap)
    assert e.energy_j == pytest.approx(15.0)
    assert e.reason is None


def test_counter_delta_wrap_range_ignored_without_wrap():
    assert counter_delta(10.0, 25.0, wrap_j=1000.0).energy_j == pytest.approx(15.0)


@pytest.mark.parametrize(("start", "end"), [(None, 5.0), (5.0, None), (None, None)])
def test_counter_delta_missing_edge(start, end):
    e = counter_delta(start, end)
    assert e.energy_j is None
    assert e.reason and "both edges" in e.reason


# -- trapezoid ---------------------------------------------------------------------------------


def test_trapezoid_constant_power_is_exact():
    ts = [0.0, 1.0, 2.0, 3.0, 4.0]
    e = trapezoid(ts, [50.0] * 5, 0.5, 3.5)
    assert e.energy_j == 150.0  # 50 W × 3 s, exactly
    assert e.reason is None
    assert trapezoid(ts, [50.0] * 5, 0.0, 4.0).energy_j == 200.0


def test_trapezoid_ramp_is_exact_triangle():
    ts = [0.0, 1.0, 2.0, 3.0, 4.0]
    power = [10.0 * t for t in ts]  # 0 → 40 W over 4 s
    assert trapezoid(ts, power, 0.0, 4.0).energy_j == pytest.approx(0.5 * 4.0 * 40.0)


def test_trapezoid_interpolates_edges_between_samples():
    # a ramp cut at non-sample edges: ∫_{0.5}^{2.5} 10t dt = 5 (2.5² - 0.5²) = 30
    ts = [0.0, 1.0, 2.0, 3.0]
    assert trapezoid(ts, [0.0, 10.0, 20.0, 30.0], 0.5, 2.5).energy_j == pytest.approx(30.0)
    # a peak: edges at 50 W (interpolated), not 0 W or 100 W (nearest sample)
    assert trapezoid([0.0, 1.0, 2.0], [0.0, 100.0, 0.0], 0.5, 1.5).energy_j == pytest.approx(75.0)


def test_trapezoid_edges_on_samples_not_double_counted():
    ts = [0.0, 1.0, 2.0, 3.0]
    assert trapezoid(ts, [0.0, 10.0, 20.0, 30.0], 1.0, 2.0).energy_j == pytest.approx(15.0)


def test_trapezoid_window_inside_one_interval():
    assert trapezoid([0.0, 10.0], [0.0, 100.0], 2.0, 4.0).energy_j == pytest.approx(2.0 * 30.0)


def test_trapezoid_zero_width_window():
    assert trapezoid([0.0, 1.0], [5.0, 5.0], 0.5, 0.5).energy_j == 0.0


@pytest.mark.parametrize(("t0", "t1"), [(-0.5, 2.0), (0.5, 3.5), (-1.0, 4.0)])
def test_trapezoid_window_not_covered_is_unknown(t0, t1):
    e = trapezoid([0.0, 1.0, 2.0, 3.0], [10.0] * 4, t0, t1)
    assert e.energy_j is None
    assert e.reason and "cover" in e.reason


@pytest.mark.parametrize(("ts", "ps"), [([], []), ([0.0], [10.0])])
def test_trapezoid_fewer_than_two_samples(ts, ps):
    e = trapezoid(ts, ps, 0.0, 0.0)
    assert e.energy_j is None
    assert e.reason and "two" in e.reason


def test_trapezoid_reversed_window_raises():
    with pytest.raises(ValueError):
        trapezoid([0.0, 1.0], [1.0, 1.0], 0.8, 0.2)


# -- interpolate / power_stats -----------------------------------------------------------------


def test_interpolate_clamps_and_interpolates():
    ts, ys = [1.0, 2.0, 4.0], [10.0, 20.0, 0.0]
    assert interpolate(ts, ys, 0.0) == 10.0
    assert interpolate(ts, ys, 1.0) == 10.0
    assert interpolate(ts, ys, 5.0) == 0.0
    assert interpolate(ts, ys, 4.0) == 0.0
    assert interpolate(ts, ys, 1.5) == pytest.approx(15.0)
    assert interpolate(ts, ys, 3.0) == pytest.approx(10.0)
    assert interpolate(ts, ys, 2.0) == pytest.approx(20.0)


def test_interpolate_empty_raises():
    with pytest.raises(ValueError):
        interpolate([], [], 1.0)


def test_power_stats_ignores_none():
    assert power_stats([None, 10.0, None, 30.0]) == (20.0, 30.0)
    assert power_stats([None, None]) == (None, None)
    assert power_stats([]) == (None, None)
    assert power_stats([0.0]) == (0.0, 0.0)


# -- PollingSampler ----------------------------------------------------------------------------


class ConstantPower(PollingSampler):
    name = "fake-polled"

    def __init__(self, watts: float = 100.0, **kw) -> None:
        super().__init__(**kw)
        self.watts = watts
        self.reads = 0

    def _read_sample(self):
        self.reads += 1
        return {"power_w": self.watts, "energy_j": None, "temperature_c": 40.0}


class FakeCounter(ConstantPower):
    name = "fake-counter"
    has_counter = True
    counter_period_s = 0.0  # an ideal counter: every window of these tests is long enough

    def __init__(self, **kw) -> None:
        super().__init__(**kw)
        self.counter_j: float | None = 1000.0

    def _read_counter_j(self):
        return self.counter_j


@pytest.fixture
def polled():
    s = ConstantPower(watts=100.0, interval_s=0.01)
    s.start()
    yield s
    s.close()


@pytest.fixture
def counted():
    s = FakeCounter(watts=80.0, interval_s=0.01)
    s.start()
    yield s
    s.close()


def test_polling_sampler_polls_in_background(polled):
    time.sleep(0.08)
    assert polled.reads >= 3
    assert polled._thread is not None and polled._thread.is_alive()


def test_polling_sampler_close_stops_thread():
    s = ConstantPower(interval_s=0.01)
    s.start()
    time.sleep(0.03)
    s.close()
    assert not s._thread.is_alive()
    n = s.reads
    time.sleep(0.05)
    assert s.reads == n


def test_polling_sampler_polled_source_and_samples(polled):
    time.sleep(0.03)
    t0 = polled.begin("w")
    time.sleep(0.1)
    r = polled.end("w")
    assert r.label == "w"
    assert r.source == "polled"
    assert r.scope == "device"
    assert r.start_ns == t0 and r.end_ns > t0
    assert r.duration_s == pytest.approx(0.1, abs=0.08)
    assert len(r.samples) >= 2
    assert all(r.start_ns <= s["t_ns"] <= r.end_ns for s in r.samples)
    assert all(s["power_w"] == 100.0 and s["temperature_c"] == 40.0 for s in r.samples)
    assert r.avg_power_w == pytest.approx(100.0)
    assert r.peak_power_w == pytest.approx(100.0)


def test_polling_sampler_polled_energy_is_power_times_time(polled):
    time.sleep(0.03)
    polled.begin("w")
    time.sleep(0.1)
    r = polled.end("w")
    assert r.reason is None
    assert r.energy_j == pytest.approx(100.0 * r.duration_s, rel=1e-6)


def test_polling_sampler_counter_source(counted):
    time.sleep(0.02)
    t0 = counted.begin("w")
    time.sleep(0.1)
    counted.counter_j = 1000.0 + 8.0
    r = counted.end("w")
    assert r.source == "counter"
    assert r.energy_j == pytest.approx(8.0)
    assert r.reason is None
    assert r.start_ns == t0
    # the counter's mean power, not the samples' 80 W
    assert r.avg_power_w == pytest.approx(8.0 / r.duration_s)
    assert r.peak_power_w == pytest.approx(80.0)
    assert len(r.samples) >= 2
    assert all(r.start_ns <= s["t_ns"] <= r.end_ns for s in r.samples)


def test_polling_sampler_counter_reset_gives_none_with_reason(counted):
    counted.begin("w")
    time.sleep(0.03)
    counted.counter_j = 3.0  # went backwards: a reset
    r = counted.end("w")
    assert r.source == "counter"
    assert r.energy_j is None
    assert r.reason and "reset" in r.reason
    assert r.avg_power_w == pytest.approx(80.0)  # falls back to the samples' mean


def test_polling_sampler_counter_wrap_is_unwrapped(counted):
    counted.counter_wrap_j = 1010.0
    counted.begin("w")
    time.sleep(0.02)
    counted.counter_j = 4.0  # 1000 → wrap at 1010 → 4: 14 J
    r = counted.end("w")
    assert r.energy_j == pytest.approx(14.0)
    assert r.reason is None


def test_polling_sampler_counter_unreadable_edge(counted):
    counted.begin("w")
    counted.counter_j = None
    r = counted.end("w")
    assert r.energy_j is None
    assert r.reason


def test_polling_sampler_overlapping_windows(counted):
    counted.begin("outer")
    counted.counter_j = 1005.0
    counted.begin("inner")
    counted.counter_j = 1007.0
    inner = counted.end("inner")
    counted.counter_j = 1010.0
    outer = counted.end("outer")
    assert inner.energy_j == pytest.approx(2.0)
    assert outer.energy_j == pytest.approx(10.0)
    assert outer.start_ns <= inner.start_ns and inner.end_ns <= outer.end_ns


def test_polling_sampler_end_unknown_label_raises(polled):
    with pytest.raises(KeyError):
        polled.end("never")


def test_polling_sampler_describe():
    s = ConstantPower(interval_s=0.25)
    assert s.describe() == {"sampler": "fake-polled", "scope": "device", "interval_s": 0.25}


class SlowCounter(FakeCounter):
    """An NVML-like counter refreshed every 100 ms: windows under 1 s come from the power series."""

    counter_period_s = 0.1


def test_short_window_on_a_slow_counter_is_polled_and_flagged():
    s = SlowCounter(watts=50.0, interval_s=0.01)
    s.start()
    try:
        time.sleep(0.03)
        s.begin("w")
        time.sleep(0.1)
        s.counter_j = 1e6  # a counter jump the short window must not use
        r = s.end("w")
    finally:
        s.close()
    assert r.short_window is True and r.source == "polled"
    assert r.energy_j == pytest.approx(50.0 * r.duration_s, rel=1e-6)


def test_parts_share_the_counter_total_and_tile_it(counted):
    time.sleep(0.03)
    t0 = counted.begin("w")
    time.sleep(0.05)
    tm = counted.latest()["t_ns"]
    time.sleep(0.05)
    counted.counter_j = 1014.0
    r = counted.end("w", parts={"a": (t0, tm), "b": (tm, 2**62)})
    assert r.source == "counter" and r.energy_j == pytest.approx(14.0)
    a, b = r.parts["a"], r.parts["b"]
    assert a["source"] == b["source"] == "counter_apportioned"
    assert a["energy_j"] + b["energy_j"] == pytest.approx(14.0)  # constant power: shares by time
    assert a["energy_j"] / 14.0 == pytest.approx((tm - t0) / (r.end_ns - t0), abs=0.02)


def test_caller_edges_tile_time_whatever_the_calls_cost():
    """Back-to-back windows with the caller's own edges (at_ns) cover the span exactly, even
    though each begin/end call takes time: their polled energies sum to power × span."""
    s = SlowCounter(watts=50.0, interval_s=0.005)
    s.start()
    try:
        time.sleep(0.02)
        first = edge = time.monotonic_ns()
        total = 0.0
        for i in range(5):
            s.begin(f"w{i}", at_ns=edge)
            time.sleep(0.01)
            edge = time.monotonic_ns()
            r = s.end(f"w{i}", at_ns=edge)
            assert r.start_ns <= r.end_ns == edge and r.short_window
            total += r.energy_j
            time.sleep(0.004)  # the caller's bookkeeping between windows: inside the next one
        span_s = (edge - first) / 1e9
    finally:
        s.close()
    assert total == pytest.approx(50.0 * span_s, rel=1e-6)


class LinearCounter(ConstantPower):
    """A counter that is exactly watts × CLOCK_MONOTONIC at the moment it is read (RAPL-like)."""

    name = "linear-counter"
    has_counter = True
    counter_period_s = 0.001

    def _read_counter_j(self):
        return self.watts * time.monotonic_ns() / 1e9


def test_a_counter_read_away_from_the_callers_edges_is_corrected_to_them():
    """The caller begins ahead of its window and closes it before the end call (from_ns, at_ns):
    the counter, read at the calls, spans 0.1 s more than the window; the slivers between each
    read and its edge come off by the power series, so the figure is the window's own."""
    s = LinearCounter(watts=40.0, interval_s=0.005)
    s.start()
    try:
        time.sleep(0.02)
        s.begin("w")
        time.sleep(0.05)  # the begin call's cost, as the caller sees it
        t0 = time.monotonic_ns()
        time.sleep(0.2)
        t1 = time.monotonic_ns()
        time.sleep(0.05)  # the end call's cost
        r = s.end("w", at_ns=t1, from_ns=t0)
    finally:
        s.close()
    assert (r.start_ns, r.end_ns) == (t0, t1) and r.source == "counter"
    assert r.energy_j == pytest.approx(40.0 * (t1 - t0) / 1e9, rel=1e-3)
    assert r.extras["counter_edge_j"] == pytest.approx(-40.0 * 0.1, rel=0.2)  # the two slivers, taken off


def test_without_caller_edges_the_counter_delta_stands(counted):
    counted.begin("w")
    time.sleep(0.05)
    counted.counter_j = 1000.0 + 3.0
    r = counted.end("w")
    assert r.energy_j == pytest.approx(3.0, abs=1e-12) and "counter_edge_j" not in r.extras


def test_a_microsecond_window_is_exact_however_long_the_machine_has_been_up(monkeypatch):
    """Times since boot as float seconds round a window's edges (at ~4 months, steps of ~2 ns:
    ~1e-4 of a 10 µs window); integrated from offsets, a constant 250 W gives exactly 250 W ×
    the window, as the PDU's empty phases need."""
    from energyray.samplers import base

    real = base.now_ns
    monkeypatch.setattr(base, "now_ns", lambda: real() + 10**16)  # ~116 days of uptime
    s = ConstantPower(watts=250.0, interval_s=0.01)
    s.start()
    try:
        time.sleep(0.03)
        for _ in range(20):
            s.begin("w")
            r = s.end("w")
            assert 0 < r.duration_s < 0.01
            assert r.energy_j == pytest.approx(250.0 * r.duration_s, rel=1e-9)
            t0 = base.now_ns()
            assert s.energy_between(t0 - 3_000, t0) == pytest.approx(250.0 * 3e-6, rel=1e-9)
    finally:
        s.close()
