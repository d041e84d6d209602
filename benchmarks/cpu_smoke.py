#!/usr/bin/env python
"""CPU smoke test of fidelity.py and overhead.py: no GPU, no NVML. Checks the plumbing only.

    python benchmarks/cpu_smoke.py [fidelity|overhead|both]     (~1-2 min on 2 cores)

energyray's NvmlSampler is replaced by FakeNvml (a PollingSampler whose energy counter is
the exact integral of a synthetic power curve, updated every 100 ms and costing ~3.9 ms per
read, like NVML's), torch runs on the CPU and the Llama is shrunk to a toy. Every part runs
end to end with small sizes and prints its tables, goals and RESULT line; the figures mean
nothing (CPU timings on a shared machine; a made-up power curve).
"""

from __future__ import annotations

import math
import sys
import time
from typing import Any

import _common as C

from energyray.samplers.base import PollingSampler

PERIOD_S = 1.7


def _power(t: float) -> float:
    return 200 + 100 * math.sin(2 * math.pi * t / PERIOD_S)


def _energy(t: float) -> float:
    return 1e6 + 200 * t - 100 * PERIOD_S / (2 * math.pi) * math.cos(2 * math.pi * t / PERIOD_S)


class FakeNvml(PollingSampler):
    """NvmlSampler's interface on a synthetic GPU."""

    name = "nvml"
    scope = "gpu"

    def __init__(self, device: Any = 0, interval_s: float = 0.1) -> None:
        super().__init__(interval_s=interval_s)
        self.has_counter = True
        self.device = device

    def _read_counter_j(self) -> float | None:
        time.sleep(0.0039)
        return _energy(math.floor(time.monotonic() / 0.1) * 0.1)

    def _read_sample(self) -> dict[str, Any]:
        return {"power_w": _power(time.monotonic()),
                "energy_j": self._read_counter_j() if self.has_counter else None,
                "temperature_c": 40, "sm_clock_mhz": 1000, "utilization_pct": 50, "memory_used_mb": 1.0}


def install() -> None:
    import energyray.env
    import energyray.samplers.nvml as nvml

    nvml.NvmlSampler = FakeNvml  # type: ignore[misc, assignment]
    nvml.gpus = lambda: [{"index": 0, "name": "Fake GPU", "uuid": "GPU-fake", "driver": "0",
                          "power_limit_w": 700}]
    energyray.env.visible_gpu_uuid = lambda: "GPU-fake"
    C.DEVICE = "cpu"
    C.LLAMA.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                   intermediate_size=128, vocab_size=1000)


def main() -> int:
    which = sys.argv[1] if len(sys.argv) > 1 else "both"
    install()
    rcs = []
    if which in ("fidelity", "both"):
        import fidelity

        rcs.append(fidelity.main(["--cycles", "2", "--on-s", "1.0", "--off-s", "0.5", "--matmul-n", "256",
                                  "--decode-windows", "2", "--new-tokens", "8", "--prompt-len", "16",
                                  "--short-windows", "20", "--target-ms", "10"]))
    if which in ("overhead", "both"):
        import overhead

        rcs.append(overhead.main(["--workload", "ops", "--duration-s", "6", "--in-duration-s", "3", "--warmup-s", "1",
                                  "--bootstrap", "200", "--sampler", "cpu_smoke:FakeNvml"]))
        rcs.append(overhead.main(["--workload", "decode", "--variants", "in", "--in-duration-s", "3", "--warmup-s", "1",
                                  "--prompt-len", "16", "--new-tokens", "16", "--bootstrap", "200",
                                  "--sampler", "cpu_smoke:FakeNvml"]))
    print(f"cpu_smoke: exit codes {rcs}")
    return max(rcs, default=0)


if __name__ == "__main__":
    raise SystemExit(main())
