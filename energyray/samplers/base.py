"""The sampler protocol: what every energy/power source offers the trial runner.

A sampler runs in its own process (the orchestrator's sampler actor), polls its source into
a time series, and measures windows that the runner opens and closes by label. Every
reading says where its energy came from (`source`) and what it covers (`scope`); an energy
that cannot be known is None with a `reason`, never 0.

Sources: ``counter`` (a hardware energy counter read at the window's edges), ``polled``
(polled power integrated), ``counter_apportioned`` (a counter delta shared among sub-windows
or short windows by the shape of the power series), ``pdu`` (wall power), ``estimated`` (a
model, e.g. CodeCarbon's load × TDP), ``not_measurable``.

Windows shorter than the counter resolves come back from `end` flagged ``short_window``,
their energy integrated from the power series (provisional). `PollingSampler.anchor` later
shares the counter's delta over a span around a run of them by that series' shape, so that
their sum follows the counter instead of the power readings' bias.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from energyray.samplers.energy import (
    Energy,
    apportion,
    counter_delta,
    counter_points,
    counter_span,
    largest_gap_s,
    power_stats,
    seconds_from,
    span_delta,
    trapezoid,
)

SAMPLE_COLUMNS = (
    "t_ns", "power_w", "energy_j", "temperature_c", "sm_clock_mhz", "utilization_pct", "memory_used_mb",
)


@dataclass
class WindowReading:
    """What a sampler measured over one window."""

    label: str
    source: str
    scope: str
    start_ns: int
    end_ns: int
    energy_j: float | None
    reason: str | None = None
    avg_power_w: float | None = None
    peak_power_w: float | None = None
    samples: list[dict[str, Any]] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. co2_kg, cpu_energy_j
    # True when the window was shorter than the counter can resolve: its energy comes from
    # the power series (source "polled"), or, after PollingSampler.anchor, from the counter
    # over a longer span shared by that series' shape (source "counter_apportioned")
    short_window: bool = False
    # sub-windows asked for at end(): name -> {energy_j, source, reason}
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


class Sampler(Protocol):
    """One energy source. `begin`/`end` bracket a window; labels may nest or overlap.

    A window's edges are the caller's clock readings where it gives them (`at_ns` at begin or
    end, `from_ns` at end: the caller called `begin` ahead of its window, so that the call's
    cost is outside it), else the moments the calls run.
    """

    name: str

    def start(self) -> None: ...
    def begin(self, label: str, at_ns: int | None = None) -> int: ...
    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading: ...
    def latest(self) -> dict[str, Any] | None: ...
    def describe(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def now_ns() -> int:
    """The clock every sampler and runner shares: CLOCK_MONOTONIC is system-wide on Linux."""
    return time.monotonic_ns()


def _edge_slivers(ts: Sequence[float], ps: Sequence[float], start: tuple[int | None, int],
                  end: tuple[int, int | None], ref_ns: int) -> float | None:
    """What turns a counter delta between two reads into the window's energy: minus the power
    series' integral from the first read to the window's start and from the window's end to
    the last read, each signed (a read inside the window adds). None where the series cannot
    say (then the delta stands as read); 0 where the reads are at the edges."""
    total = 0.0
    for a, b in (start, end):
        if a is None or b is None or a == b:
            continue
        e = trapezoid(ts, ps, seconds_from(min(a, b), ref_ns), seconds_from(max(a, b), ref_ns)).energy_j
        if e is None:
            return None
        total -= e if b > a else -e
    return total


class PollingSampler:
    """Base for samplers that poll a device into a series and may have an energy counter.

    Subclasses implement `_read_sample()` (a dict of SAMPLE_COLUMNS but t_ns) and, where the
    device has one, `_read_counter_j()`. The counter is read on the caller's thread at each
    window edge; the series is polled on a background thread every `interval_s`.
    """

    name = "polling"
    scope = "device"
    has_counter = False
    counter_wrap_j: float | None = None
    # How often the device refreshes its energy counter. A window shorter than ten of these
    # is measured from the power series instead (the counter read at its edges could be
    # stale by up to one period at each edge) and flagged short_window.
    counter_period_s = 0.1
    # How old the value a counter read returns can be (None: one counter_period_s). anchor()
    # dates each reading from this and from the reads around it (samplers.energy.counter_points).
    counter_stale_s: float | None = None
    # whether _read_sample/_read_counter_j add their library calls to self.device_calls
    counts_device_calls = False
    # anchor() falls back to the power series where the series has a hole inside the span
    # longer than this many poll intervals and than this share of the span: the straight line
    # the trapezoid draws across it would then set much of the split (the sum stays the counter's).
    anchor_max_gap_intervals = 3.0
    anchor_max_gap_share = 0.1

    def __init__(self, interval_s: float = 0.1, keep_s: float = 3600.0) -> None:
        self.interval_s = interval_s
        self._keep_ns = int(keep_s * 1e9)
        self._series: list[dict[str, Any]] = []
        # every counter value read, (read start ns, read end ns, joules), for anchor()
        self._counter_log: list[tuple[int, int, float]] = []
        self._lock = threading.Lock()
        # one device read at a time (edge reads vs the poll thread), so that the counter
        # log's read times are in the order the reads happened
        self._read_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # open window -> (its start, the counter read at begin, when that read ran (ns), whether
        # the start is the caller's own clock reading rather than this call's moment)
        self._open: dict[str, tuple[int, float | None, int | None, bool]] = {}
        # the observer's own cost, per window: calls into the device's library (a subclass that
        # counts them sets counts_device_calls) and its process's CPU time, from begin to end
        self.device_calls = 0
        self._cost: dict[str, tuple[float, int]] = {}

    # -- for subclasses -------------------------------------------------------------------
    def _read_sample(self) -> dict[str, Any]:
        raise NotImplementedError

    def _read_counter_j(self) -> float | None:
        return None

    # -- protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._poll_once()
            self._thread = threading.Thread(target=self._run, name=f"{self.name}-poll", daemon=True)
            self._thread.start()

    def _poll_once(self) -> None:
        with self._read_lock:
            t = now_ns()
            sample = {"t_ns": t, **self._read_sample()}
            t_read = now_ns()
        with self._lock:
            # the poll thread and end()'s edge poll race: keep the series in time order
            bisect.insort(self._series, sample, key=lambda x: x["t_ns"])
            if self.has_counter and sample.get("energy_j") is not None:
                self._log_counter(t, t_read, sample["energy_j"])
            self._trim(sample["t_ns"] - self._keep_ns)

    def _trim(self, cutoff_ns: int) -> None:
        """Drop what is older than cutoff_ns, unless a window is open (holding self._lock)."""
        if self._open:
            return
        while self._series and self._series[0]["t_ns"] < cutoff_ns:
            self._series.pop(0)
        while self._counter_log and self._counter_log[0][1] < cutoff_ns:
            self._counter_log.pop(0)

    def _log_counter(self, start_ns: int, end_ns: int, value_j: float) -> None:
        bisect.insort(self._counter_log, (start_ns, end_ns, float(value_j)), key=lambda x: (x[1], x[0]))

    def _counter_read_at(self) -> tuple[float | None, int]:
        """Read the energy counter (at a window's edge) and log the read for anchor(): its value
        (None where unreadable) and the middle of the read, on this sampler's clock."""
        with self._read_lock:
            t0 = now_ns()
            value = self._read_counter_j()
            t1 = now_ns()
        if value is not None:
            with self._lock:
                self._log_counter(t0, t1, value)
        return value, (t0 + t1) // 2

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self._stop.is_set():
            try:
                self._poll_once()
            except Exception:  # a failed read is a gap in the series, not a dead sampler
                pass
            next_t += self.interval_s
            self._stop.wait(max(0.0, next_t - time.monotonic()))

    # -- clock hooks: real time here; ReplaySampler runs the same code on a virtual clock --
    def _tick(self) -> None:
        """Called first by begin/end/latest (a replay advances its clock here)."""

    def _now_ns(self) -> int:
        return now_ns()

    def _caller_ns(self, t_ns: int) -> int:
        """A time on the callers' clock (CLOCK_MONOTONIC) as this sampler's clock reads it."""
        return int(t_ns)

    def _edge_poll(self) -> None:
        try:
            self._poll_once()  # a sample at the edge, so the series covers the window
        except Exception:  # a failed read is a gap in the series, as in the poll thread
            pass

    def _window(self, t0: int, t1: int) -> list[dict[str, Any]]:
        """The series over [t0, t1] with one sample's margin either side (to interpolate edges)."""
        margin = self.interval_s * 1.5e9
        with self._lock:
            return [s for s in self._series if t0 - margin <= s["t_ns"] <= t1 + margin]

    # -- protocol ---------------------------------------------------------------------------
    def begin(self, label: str, at_ns: int | None = None) -> int:
        """Open a window. `at_ns` (the caller's own clock reading) makes that the window's
        edge instead of the moment this call runs: back-to-back windows then tile time
        exactly, whatever the sampler's calls cost (a counter read is ~4 ms on NVML)."""
        self._tick()
        self._cost[label] = (time.process_time(), self.device_calls)
        counter, read_ns = self._counter_read_at() if self.has_counter else (None, None)
        t = self._now_ns() if at_ns is None else self._caller_ns(at_ns)
        self._open[label] = (t, counter, read_ns, at_ns is not None)
        return t

    def _own_cost(self, label: str) -> dict[str, Any]:
        """What this sampler's process spent on CPU (all its threads: polling, the calls it
        serves) and how many device-library calls it made since `begin(label)`."""
        cpu0, calls0 = self._cost.pop(label, (None, 0))
        if cpu0 is None:
            return {}
        return {"sampler_cpu_s": time.process_time() - cpu0,
                "sampler_device_calls": self.device_calls - calls0 if self.counts_device_calls else None}

    def latest(self) -> dict[str, Any] | None:
        """The most recent sample (for cooldown decisions), or None."""
        self._tick()
        with self._lock:
            return dict(self._series[-1]) if self._series else None

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        """Close a window (at `at_ns`, the caller's clock, if given; `from_ns`, if given, is
        its start instead of begin's). `parts` (name -> (start_ns, end_ns) inside it) get the
        window's energy shared by the power series' shape (samplers.energy.apportion).

        Where the counter was read away from an edge (the caller's edges are not the calls'
        moments), the slivers between each read and its edge are taken from the power series
        (`counter_edge_j` in extras: what that added), so the figure covers the window itself."""
        self._tick()
        t1 = self._now_ns() if at_ns is None else self._caller_ns(at_ns)
        c1, r1 = self._counter_read_at() if self.has_counter else (None, None)
        if label not in self._open:
            raise KeyError(f"window {label!r} was never begun")
        t0, c0, r0, caller_start = self._open.pop(label)
        if from_ns is not None:
            t0, caller_start = self._caller_ns(from_ns), True
        # where an edge is a call's own moment, the counter read there is at the edge
        r0 = r0 if caller_start else None
        r1 = r1 if at_ns is not None else None
        if t1 < t0:
            raise ValueError(f"window {label!r} ends before it starts ({t0} > {t1} ns)")
        self._edge_poll()
        window = self._window(min(t0, r0 or t0), max(t1, r1 or t1))
        inside = [s for s in window if t0 <= s["t_ns"] <= t1]
        avg_w, peak_w = power_stats([s.get("power_w") for s in inside])
        pts = [(seconds_from(s["t_ns"], t0), s["power_w"]) for s in window if s.get("power_w") is not None]
        ts, ps = [p[0] for p in pts], [p[1] for p in pts]
        polled = trapezoid(ts, ps, 0.0, seconds_from(t1, t0))
        short = self.has_counter and (t1 - t0) / 1e9 < 10 * self.counter_period_s
        edge_j: float | None = None
        if self.has_counter and not short:
            energy, source = counter_delta(c0, c1, self.counter_wrap_j), "counter"
            edge_j = None if r0 is None and r1 is None else _edge_slivers(ts, ps, (r0, t0), (t1, r1), t0)
            if energy.energy_j is None or edge_j is None or energy.energy_j + edge_j < 0:
                edge_j = None  # a stale counter against its slivers: the delta stands as read
            else:
                energy = Energy(energy.energy_j + edge_j)
        elif short and polled.energy_j is None:  # the counter cannot resolve it: no figure, not a stale one
            energy = Energy(None, f"window of {(t1 - t0) / 1e6:.1f} ms is shorter than the counter resolves "
                                  f"and the power series does not cover it ({polled.reason})")
            source = "polled"
        else:
            energy, source = polled, "polled"
        if energy.energy_j is not None and t1 > t0:
            avg_w = energy.energy_j / ((t1 - t0) / 1e9)  # over the whole window, not just the samples
        shares = apportion(energy, ts, ps, (0.0, seconds_from(t1, t0)),
                           {k: (seconds_from(a, t0), seconds_from(b, t0)) for k, (a, b) in (parts or {}).items()})
        part_source = "counter_apportioned" if source == "counter" else source
        return WindowReading(
            label=label, source=source, scope=self.scope, start_ns=t0, end_ns=t1,
            energy_j=energy.energy_j, reason=energy.reason, avg_power_w=avg_w, peak_power_w=peak_w,
            samples=inside, short_window=short,
            parts={k: {"energy_j": e.energy_j, "source": part_source, "reason": e.reason} for k, e in shares.items()},
            extras={**self._own_cost(label), **({} if edge_j is None else {"counter_edge_j": edge_j})},
        )

    def anchor(self, readings: Sequence[WindowReading]) -> list[WindowReading]:
        """Counter-anchored energies for a run of short windows (readings from `end`).

        The counter cannot resolve a window shorter than ~10 of its update periods, and the
        power series it is integrated from instead can be far off on bursty work (NVML's
        10 Hz power, on 20 ms launch-bound passes: −17 % against the counter). Here the
        counter's delta over one span around all the short windows is shared among everything
        in that span by the power series' shape: each window gets
        ``counter delta × P(window) / P(span)``, P being the trapezoid of polled power. Windows
        and the gaps between them that tile the span thus sum to the counter's delta; only the
        split between them rests on the power's shape.

        The span's ends are counter readings this sampler took (at every window edge, and in
        its series), each dated to when its value was produced (a counter read is up to
        `counter_stale_s` old: samplers.energy.counter_points): the best-dated ones near the
        run's first start and last end (at most one counter period inside the run: what lies
        beyond is extrapolated at the span's ratio), at least 10 counter periods apart.

        Returns new readings in the same order: short windows with source
        ``counter_apportioned`` (still flagged short_window; their parts rescaled alike) and
        ``extras`` naming the span (``anchor_span_start_ns``/``_end_ns``, ``anchor_counter_j``,
        ``anchor_polled_j``, ``anchor_scale``, ``anchor_coverage``: the share of the span the
        windows cover, ``anchor_span_uncertainty_ns``: how far its ends' dating can be off,
        ``anchor_series_gap_s``, ``polled_j``: the window's own integral); other readings
        unchanged. Where the counter cannot anchor them (no readings far enough apart, a
        hole in the power series over a tenth of the span and 3 poll intervals), the short
        windows keep their polled energy and say why in ``reason``; a counter reset inside
        the span makes them unknown, with the reason. Call it once the run has ended (after
        its last `end`): the last window's own end read can close the span.
        """
        out = list(readings)
        short = [k for k, r in enumerate(out) if r.short_window and r.source == "polled"]
        if not short or not self.has_counter:
            return out
        lo = min(out[k].start_ns for k in short)
        hi = max(out[k].end_ns for k in short)
        period_ns = int(self.counter_period_s * 1e9)
        stale_s = self.counter_period_s if self.counter_stale_s is None else self.counter_stale_s
        with self._lock:
            log = list(self._counter_log)
            powered = [x["t_ns"] for x in self._series if x.get("power_w") is not None]
        # only the counter points the power series covers can bound a span to share out
        points = [p for p in counter_points(log, int(stale_s * 1e9))
                  if powered and powered[0] <= p[0] <= powered[-1]]
        times = [t for t, _, _ in points]
        span = counter_span(times, lo, hi, min_span_ns=10 * period_ns, tol_ns=max(period_ns, int(stale_s * 1e9)),
                            uncertainty_ns=[u for _, _, u in points])
        if isinstance(span, str):
            return self._not_anchored(out, short, span)
        i, j = span
        a_ns, b_ns = times[i], times[j]
        delta = span_delta([v for _, v, _ in points[i:j + 1]], times[i:j + 1], self.counter_wrap_j)
        if delta.energy_j is None:
            for k in short:
                out[k] = dataclasses.replace(out[k], energy_j=None, source="counter_apportioned",
                                             reason=f"not counter-anchored: {delta.reason}",
                                             parts={n: {**p, "energy_j": None, "reason": delta.reason}
                                                    for n, p in out[k].parts.items()})
            return out
        t0_ns, t1_ns = min(a_ns, lo), max(b_ns, hi)
        pts = sorted((seconds_from(s["t_ns"], t0_ns), s["power_w"]) for s in self._window(t0_ns, t1_ns)
                     if s.get("power_w") is not None)
        ts, ps = [p[0] for p in pts], [p[1] for p in pts]
        gap_s = largest_gap_s(ts, 0.0, seconds_from(t1_ns, t0_ns))
        if gap_s > max(self.anchor_max_gap_intervals * self.interval_s, self.anchor_max_gap_share * (t1_ns - t0_ns) / 1e9):
            return self._not_anchored(out, short, f"the power series has a gap of {gap_s:.2f} s in the "
                                                  f"{(b_ns - a_ns) / 1e9:.2f} s span")
        whole = trapezoid(ts, ps, seconds_from(a_ns, t0_ns), seconds_from(b_ns, t0_ns))
        if not whole.energy_j:
            return self._not_anchored(out, short, f"no power integral over the span ({whole.reason or '0 J'})")
        scale = delta.energy_j / whole.energy_j
        covered_ns = sum(max(0, min(out[k].end_ns, b_ns) - max(out[k].start_ns, a_ns)) for k in short)
        info = {"anchor_span_start_ns": a_ns, "anchor_span_end_ns": b_ns, "anchor_counter_j": delta.energy_j,
                "anchor_polled_j": whole.energy_j, "anchor_scale": scale,
                "anchor_coverage": covered_ns / (b_ns - a_ns), "anchor_windows": len(short),
                "anchor_span_uncertainty_ns": points[i][2] + points[j][2], "anchor_series_gap_s": gap_s}
        for k in short:
            r = out[k]
            own = trapezoid(ts, ps, seconds_from(r.start_ns, t0_ns), seconds_from(r.end_ns, t0_ns))
            if own.energy_j is None:  # the series does not cover this one: keep its reason
                continue
            energy = scale * own.energy_j
            ratio = energy / r.energy_j if r.energy_j else (0.0 if energy == 0 else None)
            parts = {n: {**p, "source": "counter_apportioned",
                         "energy_j": None if p["energy_j"] is None or ratio is None else p["energy_j"] * ratio}
                     for n, p in r.parts.items()}
            out[k] = dataclasses.replace(
                r, energy_j=energy, source="counter_apportioned", reason=None, parts=parts,
                avg_power_w=energy / r.duration_s if r.duration_s > 0 else r.avg_power_w,
                extras={**r.extras, **info, "polled_j": own.energy_j},
            )
        return out

    @staticmethod
    def _not_anchored(out: list[WindowReading], short: list[int], why: str) -> list[WindowReading]:
        for k in short:
            r = out[k]
            out[k] = dataclasses.replace(r, reason=r.reason or f"not counter-anchored: {why}")
        return out

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        """Polled power integrated over [t0_ns, t1_ns], or None where the series does not cover
        it. A node sampler (samplers.node) weighs overlapping windows by their devices' figures."""
        self._tick()
        t0_ns, t1_ns = self._caller_ns(t0_ns), self._caller_ns(t1_ns)
        with self._lock:
            last = self._series[-1]["t_ns"] if self._series else None
        if last is None or last < t1_ns:
            self._edge_poll()
        pts = [(seconds_from(s["t_ns"], t0_ns), s["power_w"]) for s in self._window(t0_ns, t1_ns)
               if s.get("power_w") is not None]
        return trapezoid([p[0] for p in pts], [p[1] for p in pts], 0.0, seconds_from(t1_ns, t0_ns)).energy_j

    def describe(self) -> dict[str, Any]:
        return {"sampler": self.name, "scope": self.scope, "interval_s": self.interval_s}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

