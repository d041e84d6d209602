"""NVIDIA GPUs through NVML: the only module that imports pynvml.

Window energy is the GPU's cumulative energy counter (`nvmlDeviceGetTotalEnergyConsumption`,
mJ, Volta and newer) read at the window's edges; where a GPU has no counter, instant power
polled at 10 Hz is integrated instead. The series also records temperature, SM clock,
utilization and memory. A GPU is identified by UUID: CUDA's device order can differ from
NVML's.
"""

from __future__ import annotations

import time
from typing import Any

import pynvml

from energyray.errors import SamplerError
from energyray.samplers.base import PollingSampler

_initialised = False
COUNTER_POLL_NS = 1_000_000_000


def _init() -> None:
    global _initialised
    if not _initialised:
        try:
            pynvml.nvmlInit()
        except pynvml.NVMLError as e:
            raise SamplerError(f"NVML is not available ({e}); is the NVIDIA driver loaded?") from e
        _initialised = True


def _str(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def gpus() -> list[dict[str, Any]]:
    """Every GPU NVML sees, in NVML order: index, name, UUID, memory, driver. [] without NVML."""
    try:
        _init()
    except SamplerError:
        return []
    out = []
    driver = _str(pynvml.nvmlSystemGetDriverVersion())
    for i in range(pynvml.nvmlDeviceGetCount()):
        h = pynvml.nvmlDeviceGetHandleByIndex(i)
        mem = pynvml.nvmlDeviceGetMemoryInfo(h)
        out.append({
            "index": i,
            "name": _str(pynvml.nvmlDeviceGetName(h)),
            "uuid": _str(pynvml.nvmlDeviceGetUUID(h)),
            "memory_total_mb": mem.total / 2**20,
            "driver": driver,
            "power_limit_w": _safe(lambda h=h: pynvml.nvmlDeviceGetEnforcedPowerLimit(h) / 1000),
        })
    return out


def _safe(fn: Any) -> Any:
    try:
        return fn()
    except pynvml.NVMLError:
        return None


class NvmlSampler(PollingSampler):
    """One GPU, by UUID (``GPU-…``) or NVML index."""

    name = "nvml"
    scope = "gpu"
    counts_device_calls = True

    def __init__(self, device: str | int = 0, interval_s: float = 0.1) -> None:
        super().__init__(interval_s=interval_s)
        _init()
        try:
            if isinstance(device, str) and not device.isdigit():
                uuid = device if device.startswith(("GPU-", "MIG-")) else f"GPU-{device}"
                self._h = pynvml.nvmlDeviceGetHandleByUUID(uuid)
            else:
                self._h = pynvml.nvmlDeviceGetHandleByIndex(int(device))
        except pynvml.NVMLError as e:
            raise SamplerError(f"No GPU {device!r} in NVML ({e}). GPUs seen: {[g['uuid'] for g in gpus()]}") from e
        self.has_counter = _safe(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h)) is not None
        self._instant = self._instant_power_w() is not None
        self._counter_polled_ns = 0

    def _nvml(self, fn: Any) -> Any:
        """One NVML call, counted in device_calls (the sampler's own cost); None on an NVML error."""
        self.device_calls += 1
        return _safe(fn)

    def _instant_power_w(self) -> float | None:
        self.device_calls += 1
        try:
            [fv] = pynvml.nvmlDeviceGetFieldValues(self._h, [pynvml.NVML_FI_DEV_POWER_INSTANT])
        except (pynvml.NVMLError, AttributeError):
            return None
        if fv.nvmlReturn != pynvml.NVML_SUCCESS:
            return None
        return float(fv.value.uiVal) / 1000.0

    def _read_counter_j(self) -> float | None:
        return self._nvml(lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(self._h) / 1000.0)

    def _read_sample(self) -> dict[str, Any]:
        h = self._h
        power_w = self._instant_power_w() if self._instant else None
        if power_w is None:  # a 1 s moving average on Ampere+: worse, but better than nothing
            power_w = self._nvml(lambda: pynvml.nvmlDeviceGetPowerUsage(h) / 1000.0)
        util = self._nvml(lambda: pynvml.nvmlDeviceGetUtilizationRates(h))
        mem = self._nvml(lambda: pynvml.nvmlDeviceGetMemoryInfo(h))
        # The counter costs ~4 ms a read: in the series, at most once a second (window edges
        # read it every time). Between reads the series' energy_j is None.
        energy_j = None
        now = time.monotonic_ns()
        if self.has_counter and now - self._counter_polled_ns >= COUNTER_POLL_NS:
            energy_j, self._counter_polled_ns = self._read_counter_j(), now
        return {
            "power_w": power_w,
            "energy_j": energy_j,
            "temperature_c": self._nvml(lambda: pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)),
            "sm_clock_mhz": self._nvml(lambda: pynvml.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)),
            "utilization_pct": None if util is None else util.gpu,
            "memory_used_mb": None if mem is None else mem.used / 2**20,
        }

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "gpu_name": _str(pynvml.nvmlDeviceGetName(self._h)),
            "gpu_uuid": _str(pynvml.nvmlDeviceGetUUID(self._h)),
            "energy_counter": self.has_counter,
            "instant_power": self._instant,
            "power_limit_w": _safe(lambda: pynvml.nvmlDeviceGetEnforcedPowerLimit(self._h) / 1000),
        }
