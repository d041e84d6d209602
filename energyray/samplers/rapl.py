"""CPU package and DRAM energy from Linux's RAPL counters (/sys/class/powercap).

Measured, not estimated: the counters are the CPU's own. Usually readable only by root
(since CVE-2020-8694). Each zone wraps at its `max_energy_range_uj`; the sampler unwraps
every zone on each read, so its total never goes backwards.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from energyray.errors import SamplerError
from energyray.samplers.base import PollingSampler, WindowReading, now_ns

POWERCAP = Path("/sys/class/powercap")


def zones(root: Path = POWERCAP) -> list[Path]:
    """Package and DRAM zones whose counters this process can read."""
    found = []
    for z in sorted(root.glob("intel-rapl:*")):
        try:
            name = (z / "name").read_text().strip()
            int((z / "energy_uj").read_text())
        except (OSError, ValueError):
            continue
        if name.startswith("package") or name == "dram":
            found.append(z)
    return found


class RaplSampler(PollingSampler):
    name = "rapl"
    scope = "cpu_package+dram"
    has_counter = True
    counter_period_s = 0.001  # RAPL counters refresh about every millisecond

    def __init__(self, interval_s: float = 0.1, root: Path = POWERCAP) -> None:
        super().__init__(interval_s=interval_s)
        self._zones = zones(root)
        if not self._zones:
            raise SamplerError(
                f"No readable RAPL zone under {root}. Run as root, or `chmod a+r "
                f"{root}/intel-rapl:*/energy_uj`, or use sampler.cpu=codecarbon (an estimate)."
            )
        self._wrap_uj = [int((z / "max_energy_range_uj").read_text()) for z in self._zones]
        self._last_uj = [int((z / "energy_uj").read_text()) for z in self._zones]
        self._total_uj = 0
        # the same total by kind: package zones are the CPU, dram zones the RAM
        self._kinds = ["ram" if (z / "name").read_text().strip() == "dram" else "cpu" for z in self._zones]
        self._kind_uj = {"cpu": 0, "ram": 0}
        self._kind_at: dict[str, dict[str, int]] = {}
        self._count_lock = threading.Lock()
        self._prev: tuple[int, float] | None = None

    def _read_counter_j(self) -> float:
        with self._count_lock:
            for i, z in enumerate(self._zones):
                v = int((z / "energy_uj").read_text())
                d = v - self._last_uj[i]
                d = d if d >= 0 else d + self._wrap_uj[i]
                self._total_uj += d
                self._kind_uj[self._kinds[i]] += d
                self._last_uj[i] = v
            return self._total_uj / 1e6

    def begin(self, label: str, at_ns: int | None = None) -> int:
        t = super().begin(label, at_ns)
        with self._count_lock:
            self._kind_at[label] = dict(self._kind_uj)
        return t

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        """The window's energy, and in extras its split into CPU package and DRAM (by the zones' deltas)."""
        reading = super().end(label, parts, at_ns, from_ns)
        with self._count_lock:
            now, then = dict(self._kind_uj), self._kind_at.pop(label, None)
        if then is not None and reading.energy_j is not None:
            cpu, ram = now["cpu"] - then["cpu"], now["ram"] - then["ram"]
            share = cpu / (cpu + ram) if cpu + ram > 0 else None
            has_ram = "ram" in self._kinds
            reading.extras.update(
                cpu_energy_j=None if share is None else reading.energy_j * share,
                ram_energy_j=None if share is None or not has_ram else reading.energy_j * (1 - share))
            if not has_ram:
                reading.extras["ram_energy_reason"] = "no readable RAPL dram zone on this CPU"
        return reading

    def _read_sample(self) -> dict[str, Any]:
        t, e = now_ns(), self._read_counter_j()
        power = None
        if self._prev is not None and t > self._prev[0]:
            power = (e - self._prev[1]) / ((t - self._prev[0]) / 1e9)
        self._prev = (t, e)
        return {"power_w": power, "energy_j": e, "temperature_c": None, "sm_clock_mhz": None,
                "utilization_pct": None, "memory_used_mb": None}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "rapl_zones": [z.name for z in self._zones]}
