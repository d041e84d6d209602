"""The memory-bandwidth floor of decoding, which no other tool reports.

Each decode step reads every weight once and the KV cache of every sequence, so
`bytes per step / memory bandwidth` is a floor on the time of a step; a trial's measured
time per step against it (`roofline_efficiency`, at most 1) says how far decoding is from
the hardware's limit. Bandwidths are the vendors' spec-sheet figures; on a CPU the worker
measures a copy bandwidth itself.
"""

from __future__ import annotations

import time
from typing import Any

# Peak memory bandwidth, GB/s (vendor spec sheets; SXM parts for H100/H200/A100 80 GB).
GPU_BANDWIDTH_GBS: dict[str, float] = {
    "h200": 4800.0,
    "h100": 3350.0,
    "a100": 2039.0,
    "a6000": 768.0,
    "l40s": 864.0,
    "a10g": 600.0,
    "a10": 600.0,
    "l4": 300.0,
    "v100": 900.0,
    "t4": 320.0,
}


def measure_copy_bandwidth_gbs(size_mb: int = 256, repeats: int = 3) -> float:
    """Best of a few large array copies (read + write bytes / time): a CPU's practical bandwidth."""
    import numpy as np

    src = np.ones(size_mb * 2**20 // 8, dtype=np.float64)
    dst = np.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t)
    return 2 * src.nbytes / best / 1e9


def bandwidth(hardware: str, override_gbs: float | None, measured_cpu_gbs: float | None) -> tuple[float | None, str]:
    """(GB/s, where it came from) for a worker's device."""
    if override_gbs:
        return float(override_gbs), "config measurement.memory_bandwidth_gbs"
    if hardware in GPU_BANDWIDTH_GBS:
        return GPU_BANDWIDTH_GBS[hardware], f"spec sheet ({hardware})"
    if hardware == "cpu" and measured_cpu_gbs:
        return measured_cpu_gbs, "measured: numpy copy on the worker"
    return None, f"no bandwidth known for {hardware!r}: set measurement.memory_bandwidth_gbs"


def mean_attended(prompt: float, steps: int, window: int | None) -> float:
    """The mean number of cached positions a layer reads per decode step while the context
    grows from `prompt` to `prompt + steps` (taken as continuous), capped at `window`."""
    end = prompt + steps
    if window is None or end <= window:
        return prompt + steps / 2
    if prompt >= window or steps == 0:
        return float(min(prompt, window))
    # below the window the length grows, above it the layer reads the window
    return ((window**2 - prompt**2) / 2 + window * (end - window)) / steps


def floor(arch: dict[str, Any], batch_size: int, input_tokens_per_seq: float, steps: int,
          bandwidth_gbs: float | None, tpot_s: float | None, decode_power_w: float | None) -> dict[str, Any]:
    """Roofline figures for one decode trial.

    Bytes per step = weights read once + the KV cache of every sequence at its mean length
    over the decode (prompt + steps/2); layers with sliding-window attention (the
    architecture's `sliding_layers` of `num_layers`) read at most `sliding_window` positions.
    `roofline_j_per_token` is the energy per token if the decode ran at the floor at the
    power it actually drew.
    """
    weight_b = arch.get("weight_bytes")
    if not weight_b or not bandwidth_gbs:
        return {"roofline_s_per_token": None, "roofline_efficiency": None}
    kv_per_pos = arch.get("kv_bytes_per_position") or 0
    layers, sliding, window = arch.get("num_layers"), arch.get("sliding_layers") or 0, arch.get("sliding_window")
    full_len = mean_attended(input_tokens_per_seq, steps, None)
    if layers and sliding and window:
        per_layer = kv_per_pos / layers
        kv_b = per_layer * batch_size * ((layers - sliding) * full_len
                                         + sliding * mean_attended(input_tokens_per_seq, steps, window))
    else:
        kv_b = kv_per_pos * batch_size * full_len
    step_bytes = weight_b + kv_b
    step_s = step_bytes / (bandwidth_gbs * 1e9)
    out: dict[str, Any] = {
        "roofline_bytes_per_step": step_bytes,
        "roofline_kv_bytes_per_step": kv_b,
        "roofline_s_per_step": step_s,
        "roofline_s_per_token": step_s / batch_size,
        "roofline_efficiency": None if not tpot_s else step_s / tpot_s,  # > 1 would mean the byte count is wrong
        "roofline_j_per_token": None if decode_power_w is None else step_s / batch_size * decode_power_w,
    }
    return out
