"""CPU and RAM energy and CO2 from CodeCarbon: the only module that imports codecarbon.

Where the CPU's RAPL counters cannot be read, CodeCarbon's CPU figure is a model (load ×
TDP) and its RAM figure a fixed power per GB: this sampler labels such energy
``estimated``, never as measured. It runs offline (`OfflineEmissionsTracker`) with a
country code for the grid's carbon intensity.

CodeCarbon measures one task at a time (a second `start_task` is ignored, and its
`stop_task` returns None). Windows here may overlap (a node's CPU sampler is shared by the
workers of every GPU on the node) or nest, so this sampler runs one task at a time and cuts
it at every window edge: CodeCarbon's figures are kept per interval between edges, and a
window's energy is the sum of the intervals it spans. The same intervals answer
`energy_between`, the node sampler's series for splitting overlapping windows.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from typing import Any

import psutil

from energyray.errors import SamplerError
from energyray.samplers.base import PollingSampler, WindowReading, now_ns

KWH_TO_J = 3.6e6
# an interval between two edges: (start_ns, end_ns, (cpu_j, ram_j, co2_kg, energy_kwh) or None)
Interval = tuple[int, int, tuple[float, float, float, float] | None]


class CodeCarbonSampler(PollingSampler):
    name = "codecarbon"
    scope = "cpu+ram"

    def __init__(self, interval_s: float = 0.1, country_iso_code: str = "USA") -> None:
        super().__init__(interval_s=interval_s)
        logging.getLogger("codecarbon").setLevel(logging.ERROR)
        try:
            from codecarbon import OfflineEmissionsTracker
        except ImportError as e:  # a dependency of energyray's: an incomplete install on this node
            raise SamplerError(
                f"CodeCarbon cannot be imported on this node ({e}); it is one of energyray's dependencies: "
                "reinstall there (bash scripts/install.sh), or set sampler.cpu / sampler.node_cpu to rapl "
                "(where RAPL is readable) or none") from e

        self._tracker = OfflineEmissionsTracker(
            country_iso_code=country_iso_code, save_to_file=False, log_level="error",
            measure_power_secs=max(1, int(interval_s * 10)), gpu_ids=[],
        )
        self._country = country_iso_code
        psutil.cpu_percent(interval=None)
        self._tracker.start_task("_init")  # the first task detects hardware (~1.5 s): not in a trial
        self._tracker.stop_task("_init")
        modes = [str(getattr(h, "_mode", "")) for h in getattr(self._tracker, "_hardware", [])]
        self._cpu_mode = next((m for m in modes if m and m != "None"), "unknown")
        self._cc_lock = threading.RLock()
        self._task: str | None = None  # the running task, begun at self._task_ns
        self._task_ns = 0
        self._tasks = 0
        self._intervals: deque[Interval] = deque(maxlen=20000)
        self._cuts: dict[str, int] = {}  # open window -> the cut that began it

    def _cut(self, keep_running: bool) -> int:
        """Stop the running task, keeping its figures as one interval, and start the next one
        if a window is still open. Returns the cut's time."""
        t = now_ns()
        if self._task is not None:
            data = self._tracker.stop_task(self._task)
            figures = None if data is None else (
                float(data.cpu_energy) * KWH_TO_J, float(data.ram_energy) * KWH_TO_J, float(data.emissions),
                float(data.energy_consumed))
            self._intervals.append((self._task_ns, t, figures))
            self._task = None
        if keep_running:
            self._tasks += 1
            self._task, self._task_ns = f"energyray-{self._tasks}", t
            self._tracker.start_task(self._task)
        return t

    def _sum(self, t0: int, t1: int) -> tuple[tuple[float, float, float, float] | None, str | None]:
        """CodeCarbon's figures over [t0, t1], an interval cut off by it counted pro rata by time;
        None with the reason where part of it has no figure."""
        if self._task is not None and t1 > self._task_ns:
            self._cut(keep_running=True)  # the running task's figures up to now
        total = [0.0, 0.0, 0.0, 0.0]
        covered = 0
        for a, b, fig in self._intervals:
            lo, hi = max(a, t0), min(b, t1)
            if hi <= lo:
                continue
            if fig is None:
                return None, "CodeCarbon gave no figure for part of this window (stop_task returned None)"
            covered += hi - lo
            for i, v in enumerate(fig):
                total[i] += v * (hi - lo) / (b - a)
        if t1 > t0 and covered < 0.99 * (t1 - t0):
            return None, f"CodeCarbon measured {covered / (t1 - t0):.0%} of this window"
        return (total[0], total[1], total[2], total[3]), None

    def _read_sample(self) -> dict[str, Any]:
        return {"power_w": None, "energy_j": None, "temperature_c": None, "sm_clock_mhz": None,
                "utilization_pct": psutil.cpu_percent(interval=None),
                "memory_used_mb": psutil.virtual_memory().used / 2**20}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        with self._cc_lock:
            t = super().begin(label, at_ns)
            self._cuts[label] = self._cut(keep_running=True)
            return t

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        """The window's figures over its own edges (the caller's, where given), CodeCarbon's
        tasks cut at the begin and end calls pro rata by time."""
        with self._cc_lock:
            reading = super().end(label, at_ns=at_ns, from_ns=from_ns)
            c0 = self._cuts.pop(label)
            c1 = self._cut(keep_running=bool(self._cuts))
            figures, why = self._sum(reading.start_ns, reading.end_ns)
            cut = self._sum(c0, c1)[0] if figures is None and c1 > c0 else None
            if cut is not None:
                # edges outside the calls' cuts (given before the begin call ran): CodeCarbon's
                # mean power between its cuts, over the window's duration
                scale = (reading.end_ns - reading.start_ns) / (c1 - c0)
                figures = (cut[0] * scale, cut[1] * scale, cut[2] * scale, cut[3] * scale)
        # Even where CodeCarbon reads RAPL for the CPU, its RAM figure is a model: the sum is
        # an estimate. (energyray's own RaplSampler is the measured path.)
        reading.source = "estimated"
        reading.peak_power_w = None
        reading.short_window = False
        if figures is None:
            reading.energy_j, reading.reason, reading.avg_power_w = None, why, None
            reading.parts = {k: {"energy_j": None, "source": "estimated", "reason": why} for k in (parts or {})}
            return reading
        cpu_j, ram_j, co2_kg, kwh = figures
        reading.energy_j = cpu_j + ram_j
        reading.reason = None
        if reading.duration_s > 0:
            reading.avg_power_w = reading.energy_j / reading.duration_s
        span = reading.end_ns - reading.start_ns
        reading.parts = {  # no power series: shared by duration, still an estimate
            k: {"energy_j": reading.energy_j * max(0, min(b, reading.end_ns) - max(a, reading.start_ns)) / span if span else None,
                "source": "estimated", "reason": "shared by duration: no power series"}
            for k, (a, b) in (parts or {}).items()
        }
        reading.extras = {
            **reading.extras,  # the sampler's own cost (PollingSampler)
            "cpu_energy_j": cpu_j, "ram_energy_j": ram_j, "co2_kg": co2_kg,
            "carbon_intensity_g_per_kwh": co2_kg / kwh * 1000 if kwh else None, "country_iso_code": self._country,
        }
        return reading

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        """CPU + RAM joules over [t0_ns, t1_ns] from the intervals (None where not measured)."""
        with self._cc_lock:
            figures, _ = self._sum(t0_ns, t1_ns)
        return None if figures is None else figures[0] + figures[1]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "country_iso_code": self._country,
                "method": f"codecarbon cpu_mode={self._cpu_mode}; ram=fixed W per GB"}

    def close(self) -> None:
        super().close()
        try:
            with self._cc_lock:
                if self._task is not None:
                    self._tracker.stop_task(self._task)
                    self._task = None
            self._tracker.stop()
        except Exception:
            pass
