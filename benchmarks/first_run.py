#!/usr/bin/env python
"""Where a fresh process's first run of a shape loses its time, and what unload leaves behind.

    python benchmarks/first_run.py [--models qwen2.5-0.5b,gemma-3-1b] [--new-tokens 128] [--json-out F]

For each model (random-init weights, busy.py's architectures, on CUDA) in ONE process, through
energyray's TransformersBackend: load, then for batch 1 and 4 three generations of the same
shape, printing each one's wall time, its first step (prefill) and the median later step; the
slowest steps of the first run (where the extra time sits); whether torch.compile ran
(torch._dynamo counters) and how many device segments torch's allocator took
(each a cudaMalloc); then unload, and torch's allocated / reserved memory afterwards with
the live CUDA tensors still referenced (what keeps memory from being given back).
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from typing import Any

from _common import ROOT  # noqa: F401  (puts the repository on sys.path)
from busy import MODELS, _models


def live_cuda_tensors() -> list[tuple[str, int]]:
    import torch

    out = []
    for o in gc.get_objects():
        try:
            if isinstance(o, torch.Tensor) and o.is_cuda:
                out.append((f"{tuple(o.shape)} {o.dtype}", o.numel() * o.element_size()))
        except Exception:
            pass
    return sorted(out, key=lambda x: -x[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="qwen2.5-0.5b,gemma-3-1b")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--json-out")
    ap.add_argument("--alloc-conf", help="PYTORCH_CUDA_ALLOC_CONF for this process, e.g. expandable_segments:True")
    ap.add_argument("--no-cudnn-sdp", action="store_true", help="torch.backends.cuda.enable_cudnn_sdp(False)")
    ap.add_argument("--profile", action="store_true",
                    help="after the runs: profile a 16-token generate of a new shape (batch 2), top ops by CPU time")
    args = ap.parse_args()
    if args.alloc_conf:
        import os

        os.environ["PYTORCH_CUDA_ALLOC_CONF"] = args.alloc_conf
    import torch

    if args.no_cudnn_sdp:
        torch.backends.cuda.enable_cudnn_sdp(False)
    from energyray.backends.transformers import TransformersBackend
    from energyray.tasks import prompts

    report: dict[str, Any] = {}
    for name in args.models.split(","):
        assert name in MODELS, name
        model = _models([name])[name]
        b = TransformersBackend()
        t0 = time.monotonic()
        b.load(model, "dummy", "baseline", "cuda", "/tmp/erc", 0)
        load_s = time.monotonic() - t0
        runs = []
        for batch in (1, 4):
            texts = [p.text for p in prompts("longform", "default", batch)]
            for k in range(3):
                g = b.generate(texts, args.new_tokens, ignore_eos=True)
                steps = [(y - x) / 1e6 for x, y in zip(g.step_ns, g.step_ns[1:], strict=False)]
                slow = sorted(((s, i) for i, s in enumerate(steps)), reverse=True)[:5]
                runs.append({"batch": batch, "run": k, "s": g.duration_s, "ttft_ms": (g.ttft_s or 0) * 1e3,
                             "median_step_ms": statistics.median(steps) if steps else None,
                             "slowest_steps_ms_at": [(round(s, 1), i) for s, i in slow]})
                print(f"{name} b={batch} run {k}: {g.duration_s:.2f} s, ttft {runs[-1]['ttft_ms']:.0f} ms, "
                      f"median step {runs[-1]['median_step_ms']:.1f} ms, slowest {runs[-1]['slowest_steps_ms_at']}",
                      flush=True)
                del g
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            texts = [p.text for p in prompts("longform", "default", 2)]
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                b.generate(texts, 16, ignore_eos=True)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15), flush=True)
            with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
                b.generate(texts, 16, ignore_eos=True)
            print("same shape again:\n" + prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=8), flush=True)
        try:
            from torch._dynamo.utils import counters

            dynamo: dict[str, Any] = {k: dict(v) for k, v in counters.items() if v}
        except Exception as e:
            dynamo = {"error": str(e)}
        b.unload()
        gc.collect()
        torch.cuda.empty_cache()
        live = live_cuda_tensors()
        stats = torch.cuda.memory_stats()
        rep = {"cuda_malloc_retries": stats.get("num_alloc_retries"), "segments_allocated": stats.get("segment.all.allocated"),
               "load_s": load_s, "runs": runs, "dynamo_counters": dynamo,
               "allocated_mb_after_unload": torch.cuda.memory_allocated() / 2**20,
               "reserved_mb_after_unload": torch.cuda.memory_reserved() / 2**20,
               "live_cuda_tensors": len(live), "live_cuda_mb": sum(x[1] for x in live) / 2**20, "largest_live": live[:8]}
        print(f"{name}: load {load_s:.1f} s; allocator segments {rep['segments_allocated']}; torch.compile counters {dynamo}; after unload allocated "
              f"{rep['allocated_mb_after_unload']:.0f} MB, reserved {rep['reserved_mb_after_unload']:.0f} MB, "
              f"{len(live)} live CUDA tensors ({rep['live_cuda_mb']:.0f} MB): {live[:8]}", flush=True)
        report[name] = rep
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(report, f, indent=2, default=str)


if __name__ == "__main__":
    main()
