"""A device sampler standing in for a GPU's NVML sampler where no GPU is: constant power, set
by the device name it is bound to ("watts-300" draws 300 W). Named to energyray as
`sampler.gpu="constant_gpu:ConstantGpu"`, so a SamplerHost can weigh node energy by it."""

from __future__ import annotations

from typing import Any

from energyray.samplers.base import PollingSampler


class ConstantGpu(PollingSampler):
    name = "constant_gpu"
    scope = "device"

    def __init__(self, device: str | None = None, interval_s: float = 0.01) -> None:
        super().__init__(interval_s=interval_s)
        self.device = device
        self.power_w = float(str(device).rsplit("-", 1)[-1])

    def _read_sample(self) -> dict[str, Any]:
        return {"power_w": self.power_w, "energy_j": None, "temperature_c": None, "sm_clock_mhz": None,
                "utilization_pct": None, "memory_used_mb": None}

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "gpu_uuid": self.device}
