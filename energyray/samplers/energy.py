"""Energy of a window from counters and power series: the maths, with no hardware.

A cumulative energy counter (NVML's, RAPL's) gives a window's energy as the delta at its
edges; a wrap is undone when the counter's range is known, and a reset (negative delta)
gives no figure, with a reason, never a negative or zero one. Without a counter, polled
power is integrated with the trapezoid rule, interpolated at the window's edges.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Energy:
    """An energy figure, or None with the reason it is unknown."""

    energy_j: float | None
    reason: str | None = None


def counter_delta(start_j: float | None, end_j: float | None, wrap_j: float | None = None) -> Energy:
    """Energy between two readings of a cumulative counter (joules).

    `wrap_j` is the counter's range where it wraps (RAPL's max_energy_range_uj); without it
    a negative delta is a reset and the window's energy is unknown.
    """
    if start_j is None or end_j is None:
        return Energy(None, "counter not read at both edges of the window")
    delta = end_j - start_j
    if delta < 0:
        if wrap_j:
            return Energy(delta + wrap_j)
        return Energy(None, f"energy counter went backwards ({start_j:.3f} J -> {end_j:.3f} J): reset")
    return Energy(delta)


def interpolate(ts: Sequence[float], ys: Sequence[float], t: float) -> float:
    """Linear interpolation of the series (ts sorted) at t, clamped to its ends."""
    if not ts:
        raise ValueError("empty series")
    if t <= ts[0]:
        return ys[0]
    if t >= ts[-1]:
        return ys[-1]
    i = bisect_right(ts, t)
    t0, t1, y0, y1 = ts[i - 1], ts[i], ys[i - 1], ys[i]
    return y0 if t1 == t0 else y0 + (y1 - y0) * (t - t0) / (t1 - t0)


def trapezoid(ts_s: Sequence[float], power_w: Sequence[float], t0_s: float, t1_s: float) -> Energy:
    """Integrate polled power over [t0_s, t1_s] (seconds), interpolating at the edges.

    Unknown when the series does not cover the window (a sample at or before t0 and one at
    or after t1 are needed): extrapolating power is a guess, not a measurement.
    """
    if t1_s < t0_s:
        raise ValueError(f"window ends before it starts: {t0_s} > {t1_s}")
    if len(ts_s) < 2:
        return Energy(None, "fewer than two power samples")
    if ts_s[0] > t0_s or ts_s[-1] < t1_s:
        return Energy(None, "power samples do not cover the window")
    lo, hi = bisect_right(ts_s, t0_s), bisect_left(ts_s, t1_s)
    xs = [t0_s, *ts_s[lo:hi], t1_s]
    ys = [interpolate(ts_s, power_w, t0_s), *power_w[lo:hi], interpolate(ts_s, power_w, t1_s)]
    total = sum((xs[i + 1] - xs[i]) * (ys[i] + ys[i + 1]) / 2 for i in range(len(xs) - 1))
    return Energy(total)


def power_stats(power_w: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and peak of the known power readings (None when there are none)."""
    known = [p for p in power_w if p is not None]
    if not known:
        return None, None
    return sum(known) / len(known), max(known)


def apportion(
    total: Energy,
    ts_s: Sequence[float],
    power_w: Sequence[float],
    window: tuple[float, float],
    parts: dict[str, tuple[float, float]],
) -> dict[str, Energy]:
    """Share a window's energy among sub-windows by the shape of the power series.

    Each part gets `total × P(part) / P(window)`, P being the trapezoid integral of polled
    power, so parts that tile the window sum exactly to its (counter) total. Where power
    was not polled over the window, parts are shared by duration instead (constant power
    assumed) and say so in their reason.
    """
    t0, t1 = window
    if total.energy_j is None:
        return {name: Energy(None, total.reason) for name in parts}
    whole = trapezoid(ts_s, power_w, t0, t1)
    out: dict[str, Energy] = {}
    for name, (a, b) in parts.items():
        a, b = max(a, t0), min(b, t1)
        if b <= a:
            out[name] = Energy(None, "part lies outside the window")
            continue
        part = trapezoid(ts_s, power_w, a, b)
        if whole.energy_j and part.energy_j is not None:
            out[name] = Energy(total.energy_j * part.energy_j / whole.energy_j)
        elif t1 > t0:
            out[name] = Energy(total.energy_j * (b - a) / (t1 - t0), "shared by duration: no power series")
        else:
            out[name] = Energy(None, "empty window")
    return out
