"""On a real NVIDIA GPU: the NVML sampler's counter windows, power series and CUDA/NVML binding."""

from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.gpu


def _burn(seconds: float) -> None:
    import torch

    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    t = time.monotonic()
    while time.monotonic() - t < seconds:
        a @ a
    torch.cuda.synchronize()


def test_sampler_binds_to_the_gpu_cuda_sees() -> None:
    from energyray.env import visible_gpu_uuid
    from energyray.samplers.nvml import NvmlSampler, gpus

    uuid = visible_gpu_uuid()
    assert uuid and uuid.startswith("GPU-")
    assert uuid in {g["uuid"] for g in gpus()}
    s = NvmlSampler(uuid)
    assert s.describe()["gpu_uuid"] == uuid
    s.close()


def test_counter_window_matches_polled_integration_under_load() -> None:
    from energyray.env import visible_gpu_uuid
    from energyray.samplers.energy import trapezoid
    from energyray.samplers.nvml import NvmlSampler

    s = NvmlSampler(visible_gpu_uuid() or 0, interval_s=0.05)
    s.start()
    time.sleep(0.3)
    s.begin("burst")
    _burn(2.0)
    r = s.end("burst")
    s.close()
    assert r.source == "counter" and r.scope == "gpu"
    assert r.energy_j is not None and r.energy_j > 0
    assert r.avg_power_w is not None and r.avg_power_w > 100  # a bf16 matmul loop draws well over idle
    assert len(r.samples) >= 20
    ts = [x["t_ns"] / 1e9 for x in r.samples if x["power_w"] is not None]
    ps = [x["power_w"] for x in r.samples if x["power_w"] is not None]
    polled = trapezoid(ts, ps, ts[0], ts[-1]).energy_j
    assert polled is not None
    # polled instant power over the covered span vs the counter's mean power: within 15 %
    assert abs(polled / (ts[-1] - ts[0]) - r.energy_j / r.duration_s) / (r.energy_j / r.duration_s) < 0.15
    assert max(x["temperature_c"] for x in r.samples) > 0
