"""The sampler protocol: what every energy/power source offers the trial runner.

A sampler runs in its own process (the orchestrator's sampler actor), polls its source into
a time series, and measures windows that the runner opens and closes by label. Every
reading says where its energy came from (`source`) and what it covers (`scope`); an energy
that cannot be known is None with a `reason`, never 0.

Sources: ``counter`` (a hardware energy counter read at the window's edges), ``polled``
(polled power integrated), ``pdu`` (wall power), ``estimated`` (a model, e.g. CodeCarbon's
load × TDP), ``not_measurable``.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from energyray.samplers.energy import Energy, apportion, counter_delta, power_stats, trapezoid

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
    # True when the window was shorter than the counter can resolve and its energy comes
    # from the power series instead (source "polled")
    short_window: bool = False
    # sub-windows asked for at end(): name -> {energy_j, source, reason}
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


class Sampler(Protocol):
    """One energy source. `begin`/`end` bracket a window; labels may nest or overlap."""

    name: str

    def start(self) -> None: ...
    def begin(self, label: str, at_ns: int | None = None) -> int: ...
    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None) -> WindowReading: ...
    def latest(self) -> dict[str, Any] | None: ...
    def describe(self) -> dict[str, Any]: ...
    def close(self) -> None: ...


def now_ns() -> int:
    """The clock every sampler and runner shares: CLOCK_MONOTONIC is system-wide on Linux."""
    return time.monotonic_ns()


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

    def __init__(self, interval_s: float = 0.1, keep_s: float = 3600.0) -> None:
        self.interval_s = interval_s
        self._keep_ns = int(keep_s * 1e9)
        self._series: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open: dict[str, tuple[int, float | None]] = {}

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
        sample = {"t_ns": now_ns(), **self._read_sample()}
        with self._lock:
            # the poll thread and end()'s edge poll race: keep the series in time order
            bisect.insort(self._series, sample, key=lambda x: x["t_ns"])
            cutoff = sample["t_ns"] - self._keep_ns
            while self._series and self._series[0]["t_ns"] < cutoff and not self._open:
                self._series.pop(0)

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
        counter = self._read_counter_j() if self.has_counter else None
        t = self._now_ns() if at_ns is None else int(at_ns)
        self._open[label] = (t, counter)
        return t

    def latest(self) -> dict[str, Any] | None:
        """The most recent sample (for cooldown decisions), or None."""
        self._tick()
        with self._lock:
            return dict(self._series[-1]) if self._series else None

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None) -> WindowReading:
        """Close a window (at `at_ns`, the caller's clock, if given). `parts` (name ->
        (start_ns, end_ns) inside it) get the window's energy shared by the power series'
        shape (samplers.energy.apportion)."""
        self._tick()
        t1 = self._now_ns() if at_ns is None else int(at_ns)
        c1 = self._read_counter_j() if self.has_counter else None
        if label not in self._open:
            raise KeyError(f"window {label!r} was never begun")
        t0, c0 = self._open.pop(label)
        self._edge_poll()
        window = self._window(t0, t1)
        inside = [s for s in window if t0 <= s["t_ns"] <= t1]
        avg_w, peak_w = power_stats([s.get("power_w") for s in inside])
        pts = [(s["t_ns"] / 1e9, s["power_w"]) for s in window if s.get("power_w") is not None]
        ts, ps = [p[0] for p in pts], [p[1] for p in pts]
        polled = trapezoid(ts, ps, t0 / 1e9, t1 / 1e9)
        short = self.has_counter and (t1 - t0) / 1e9 < 10 * self.counter_period_s
        if self.has_counter and not short:
            energy, source = counter_delta(c0, c1, self.counter_wrap_j), "counter"
        elif short and polled.energy_j is None:  # the counter cannot resolve it: no figure, not a stale one
            energy = Energy(None, f"window of {(t1 - t0) / 1e6:.1f} ms is shorter than the counter resolves "
                                  f"and the power series does not cover it ({polled.reason})")
            source = "polled"
        else:
            energy, source = polled, "polled"
        if energy.energy_j is not None and t1 > t0:
            avg_w = energy.energy_j / ((t1 - t0) / 1e9)  # over the whole window, not just the samples
        shares = apportion(energy, ts, ps, (t0 / 1e9, t1 / 1e9),
                           {k: (a / 1e9, b / 1e9) for k, (a, b) in (parts or {}).items()})
        part_source = "counter_apportioned" if source == "counter" else source
        return WindowReading(
            label=label, source=source, scope=self.scope, start_ns=t0, end_ns=t1,
            energy_j=energy.energy_j, reason=energy.reason, avg_power_w=avg_w, peak_power_w=peak_w,
            samples=inside, short_window=short,
            parts={k: {"energy_j": e.energy_j, "source": part_source, "reason": e.reason} for k, e in shares.items()},
        )

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        """Polled power integrated over [t0_ns, t1_ns], or None where the series does not cover
        it. A node sampler (samplers.node) weighs overlapping windows by their devices' figures."""
        self._tick()
        with self._lock:
            last = self._series[-1]["t_ns"] if self._series else None
        if last is None or last < t1_ns:
            self._edge_poll()
        pts = [(s["t_ns"] / 1e9, s["power_w"]) for s in self._window(t0_ns, t1_ns) if s.get("power_w") is not None]
        return trapezoid([p[0] for p in pts], [p[1] for p in pts], t0_ns / 1e9, t1_ns / 1e9).energy_j

    def describe(self) -> dict[str, Any]:
        return {"sampler": self.name, "scope": self.scope, "interval_s": self.interval_s}

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)

