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


def seconds_from(t_ns: int, ref_ns: int) -> float:
    """Seconds from `ref_ns`: the power series and a window's edges go to the trapezoid as offsets,
    which keep a microsecond window exact where seconds since boot as floats round its edges."""
    return (t_ns - ref_ns) / 1e9


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


# -- anchoring short windows to the counter ---------------------------------------------------


def counter_points(reads: Sequence[tuple[int, int, float]], stale_ns: int) -> list[tuple[int, float, int]]:
    """The distinct values of a counter's reads: (the time, ns, each is estimated to count up to,
    the value, how far off that time can be, ns).

    `reads` are (start_ns, end_ns, value) of each read call. A counter refreshed every
    `stale_ns` (NVML's: ~100 ms) returns a value produced at some moment u before the read:
    u is after the start of the last read that saw the previous value, at or before the end
    of the first read that saw this one, and within `stale_ns` of the last read that saw it.
    The estimate is the middle of that bracket, so reads close together (a run of short
    windows reads the counter at every edge) pin it down to a few ms; an isolated read is
    placed `stale_ns / 2` before it, give or take `stale_ns / 2`. `stale_ns=0` takes each read
    as current.
    """
    ordered = sorted(reads, key=lambda r: (r[1], r[0]))
    points: list[tuple[int, float, int]] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1][2] == ordered[i][2]:
            j += 1
        hi = ordered[i][1]
        lo = ordered[j][0] - stale_ns
        if i > 0:
            lo = max(lo, ordered[i - 1][0])
        lo = min(lo, hi)  # a value seen for longer than stale_ns (a stalled counter): its first read
        points.append(((lo + hi) // 2, ordered[i][2], (hi - lo + 1) // 2))
        i = j + 1
    return points


def counter_span(times_ns: Sequence[int], lo_ns: int, hi_ns: int, min_span_ns: int, tol_ns: int,
                 uncertainty_ns: Sequence[int] | None = None) -> tuple[int, int] | str:
    """Which two counter points (indices into the sorted `times_ns`) anchor a run [lo_ns, hi_ns].

    The best point near each of the run's edges, at most `tol_ns` inside it (a stale last
    read leaves the run's last moments outside the span; they are extrapolated at the span's
    ratio), widened outward, by the closer neighbour first, until they are `min_span_ns`
    apart (the counter's own resolution). A reason instead where no such pair exists.

    "Best": the least dating uncertainty (`uncertainty_ns`, from counter_points) plus a
    quarter of the distance from the edge. A ms of misdating puts a ms of the device's whole
    power on the wrong side of the span's edge; a ms of distance only moves a ms between the
    run and its surroundings, which differ by the power series' bias there against in the run
    (NVML's 10 Hz power: −17 to −21 % on bursts, ~1 % steady), taken as at most a quarter.
    """
    n = len(times_ns)
    unc = list(uncertainty_ns) if uncertainty_ns is not None else [0] * n
    starts = [k for k in range(n) if times_ns[k] <= lo_ns + tol_ns]
    ends = [k for k in range(n) if times_ns[k] >= hi_ns - tol_ns]
    if not starts:
        return "no counter reading at or before the windows' start"
    if not ends:
        return "no counter reading at or after the windows' end"
    i = min(starts, key=lambda k: (unc[k] + abs(times_ns[k] - lo_ns) / 4, k))
    j = min(ends, key=lambda k: (unc[k] + abs(times_ns[k] - hi_ns) / 4, -k))
    while j <= i or times_ns[j] - times_ns[i] < min_span_ns:
        left = times_ns[i] - times_ns[i - 1] if i > 0 else None
        right = times_ns[j + 1] - times_ns[j] if j + 1 < n else None
        if left is None and right is None:
            return (f"the counter readings around the windows span less than "
                    f"{min_span_ns / 1e9:g} s (the counter's resolution)")
        if right is None or (left is not None and left <= right):
            i -= 1
        else:
            j += 1
    return i, j


def span_delta(values_j: Sequence[float], times_ns: Sequence[int], wrap_j: float | None = None) -> Energy:
    """The counter's energy over consecutive readings, step by step: a reset anywhere inside
    (a step backwards that no wrap explains) makes it unknown, even if the counter has since
    climbed past where it started."""
    total = 0.0
    for k in range(1, len(values_j)):
        step = counter_delta(values_j[k - 1], values_j[k], wrap_j)
        if step.energy_j is None:
            return Energy(None, f"{step.reason} at t_ns={times_ns[k]}, inside the anchoring span")
        total += step.energy_j
    return Energy(total)


def largest_gap_s(ts_s: Sequence[float], t0_s: float, t1_s: float) -> float:
    """The longest step between consecutive samples (ts_s sorted) that covers part of [t0_s, t1_s]."""
    lo, hi = max(0, bisect_right(ts_s, t0_s) - 1), bisect_left(ts_s, t1_s)
    xs = ts_s[lo:hi + 1]
    return max((b - a for a, b in zip(xs, xs[1:], strict=False)), default=0.0)
