"""A device sampler that cannot start (NVML without a driver, as on a machine with no NVIDIA
GPU) is a reason the slot carries, not a failure: trials still run, with null energy."""

from __future__ import annotations

import pytest

from energyray.config import SamplerConfig
from energyray.orchestrator.actors import SamplerHost
from energyray.samplers import nvml


def test_nvml_missing_leaves_the_slot_without_a_sampler_and_says_why(monkeypatch):
    def no_driver() -> None:
        raise nvml.pynvml.NVMLError(nvml.pynvml.NVML_ERROR_DRIVER_NOT_LOADED)

    monkeypatch.setattr(nvml, "_initialised", False)
    monkeypatch.setattr(nvml.pynvml, "nvmlInit", no_driver)
    host = SamplerHost(SamplerConfig())
    info = host.bind("gpu", "GPU-00000000-0000-0000-0000-000000000000")
    assert info["sampler"] is None
    # what the worker's systems row gives as sampler_error
    assert "NVML is not available" in info["error"] and "driver" in info["error"]
    with pytest.raises(RuntimeError, match="NVML is not available"):
        host.begin("trial")
    assert host.latest() is None and host.energy_between(0, 1) is None


def test_the_rows_reason_carries_why_the_sampler_could_not_start():
    from energyray.trial.windows import Windows

    windows = Windows(None)
    windows.sampler_info = {"sampler": None, "error": "NVMLError: NVML is not available (driver not loaded)"}
    assert windows.begin("trial") == "no energy sampler for this device: NVMLError: NVML is not available (driver not loaded)"
