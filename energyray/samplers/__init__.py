"""Energy and power sources. `make_device_sampler` picks the right one for a worker's device.

Vendor libraries are imported only by their own module (nvml.py: pynvml; codecarbon.py:
codecarbon), and only when that sampler is chosen.
"""

from __future__ import annotations

from typing import Any

from energyray.errors import ConfigError, SamplerError
from energyray.registry import SAMPLERS, resolve


def make_device_sampler(kind: str, device: str | None, cfg: Any) -> Any:
    """The sampler for one worker's device.

    kind is "gpu" (device: the GPU's UUID) or "cpu". cfg is a SamplerConfig. For the CPU,
    "auto" takes RAPL where this process can read it, else CodeCarbon's estimate.
    """
    if kind == "gpu":
        return resolve("sampler", SAMPLERS, cfg.gpu)(device=device, interval_s=cfg.interval_s)
    choice = cfg.cpu
    if choice == "none":
        return None
    if choice in ("auto", "rapl"):
        try:
            return resolve("sampler", SAMPLERS, "rapl")(interval_s=cfg.interval_s)
        except SamplerError:
            if choice == "rapl":
                raise
    if choice in ("auto", "codecarbon"):
        return resolve("sampler", SAMPLERS, "codecarbon")(
            interval_s=cfg.interval_s, country_iso_code=cfg.country_iso_code
        )
    raise ConfigError(f"sampler.cpu={choice!r} is not one of: auto, rapl, codecarbon, none.")
