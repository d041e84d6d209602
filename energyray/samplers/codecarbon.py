"""CPU and RAM energy and CO2 from CodeCarbon: the only module that imports codecarbon.

Where the CPU's RAPL counters cannot be read, CodeCarbon's CPU figure is a model (load ×
TDP) and its RAM figure a fixed power per GB: this sampler labels such energy
``estimated``, never as measured. It runs offline (`OfflineEmissionsTracker`) with a
country code for the grid's carbon intensity.
"""

from __future__ import annotations

import logging
from typing import Any

import psutil

from energyray.errors import SamplerError
from energyray.samplers.base import PollingSampler, WindowReading

KWH_TO_J = 3.6e6


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

    def _read_sample(self) -> dict[str, Any]:
        return {"power_w": None, "energy_j": None, "temperature_c": None, "sm_clock_mhz": None,
                "utilization_pct": psutil.cpu_percent(interval=None),
                "memory_used_mb": psutil.virtual_memory().used / 2**20}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        t = super().begin(label, at_ns)
        self._tracker.start_task(label)
        return t

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None) -> WindowReading:
        data = self._tracker.stop_task(label)
        reading = super().end(label, at_ns=at_ns)
        cpu_j = float(data.cpu_energy) * KWH_TO_J
        ram_j = float(data.ram_energy) * KWH_TO_J
        reading.energy_j = cpu_j + ram_j
        reading.reason = None
        # Even where CodeCarbon reads RAPL for the CPU, its RAM figure is a model: the sum is
        # an estimate. (energyray's own RaplSampler is the measured path.)
        reading.source = "estimated"
        if reading.duration_s > 0:
            reading.avg_power_w = reading.energy_j / reading.duration_s
        reading.peak_power_w = None
        reading.short_window = False
        span = reading.end_ns - reading.start_ns
        reading.parts = {  # no power series: shared by duration, still an estimate
            k: {"energy_j": reading.energy_j * max(0, min(b, reading.end_ns) - max(a, reading.start_ns)) / span if span else None,
                "source": "estimated", "reason": "shared by duration: no power series"}
            for k, (a, b) in (parts or {}).items()
        }
        intensity = float(data.emissions) / float(data.energy_consumed) * 1000 if data.energy_consumed else None
        reading.extras = {
            "cpu_energy_j": cpu_j, "ram_energy_j": ram_j, "co2_kg": float(data.emissions),
            "carbon_intensity_g_per_kwh": intensity, "country_iso_code": self._country,
        }
        return reading

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "country_iso_code": self._country,
                "method": f"codecarbon cpu_mode={self._cpu_mode}; ram=fixed W per GB"}

    def close(self) -> None:
        super().close()
        try:
            self._tracker.stop()
        except Exception:
            pass
