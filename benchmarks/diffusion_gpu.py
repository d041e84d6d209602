#!/usr/bin/env python
"""Text-to-image energy on one GPU through energyray's own trial path: an SD-1.5-sized
random-init pipeline (UNet ~0.86 B, CLIP ViT-L, VAE; nothing downloaded), the thesis' image
prompt, NVML measuring every phase.

    python benchmarks/diffusion_gpu.py [--model sd-1.5] [--precision fp16] [--steps 20,50]
                                       [--resolution 512] [--batch 1] [--repeats 3]
                                       [--interval 0.01] [--store DIR] [--json-out F]

In ONE process, no Ray: TrialRunner (energyray/trial/runner.py) with the diffusers backend and
an in-process NvmlSampler, as a worker runs a group: idle baseline, load, then per steps value
`--repeats` trials (the first of each shape after an uncounted 2-step warmup). Each trial is one
pipeline call of `--batch` images; its window is split into text_encode, denoise and vae_decode
(the counter anchors the short ones), and each denoising step gets its share of the denoise
energy from the power series. Printed per steps value: s/step, J/step, J/image, images/s, each
phase's J, average and peak power, peak memory; then, for the last trial, the power samples by
denoising step (the per-step pattern the thesis saw as spikes: NVML's power readings update
about every 100 ms, so steps shorter than that blur together). Images go to --store's
artifacts/ folder (noise: random weights).

Needs torch (CUDA), transformers, diffusers, nvidia-ml-py, pandas, pyarrow (no Ray, no Hydra).
`--device cpu --model sd-tiny` runs it on a CPU (no NVML: energy null, the timings only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml  # PyYAML: a dependency of transformers
from _common import ROOT  # puts the repository on sys.path

from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig  # noqa: E402
from energyray.grid import expand  # noqa: E402
from energyray.trial import TrialRunner  # noqa: E402

SHOWN = ("s_per_step", "j_per_step", "j_per_image", "images_per_s", "text_encode_j", "denoise_j", "vae_decode_j",
         "energy_j", "avg_power_w", "peak_power_w", "peak_memory_mb")


def sampler(device: str, interval_s: float) -> Any:
    """NVML on GPU 0 (started), or None on a CPU or without NVML (energy null, with the reason)."""
    if device != "cuda":
        return None
    from energyray.samplers.nvml import NvmlSampler

    s = NvmlSampler(0, interval_s=interval_s)
    s.start()
    return s


def mean(values: list[Any]) -> float | None:
    known = [float(v) for v in values if v is not None]
    return statistics.fmean(known) if known else None


def step_pattern(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Power samples of one trial's denoising loop by step: mean and max W, and how many."""
    by_step: dict[int, list[float]] = {}
    for s in samples:
        if s.get("phase") == "denoise" and s.get("denoise_step") is not None and s.get("power_w") is not None:
            by_step.setdefault(int(s["denoise_step"]), []).append(float(s["power_w"]))
    return [{"step": k, "n": len(v), "mean_w": statistics.fmean(v), "max_w": max(v)} for k, v in sorted(by_step.items())]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="sd-1.5", help="a conf/model/ entry with an architecture.pipeline")
    ap.add_argument("--precision", default="fp16", choices=("fp32", "fp16", "bf16", "baseline"))
    ap.add_argument("--steps", default="20,50", help="denoising steps, comma-separated")
    ap.add_argument("--resolution", type=int, default=None, help="pixels (square); default: the pipeline's native")
    ap.add_argument("--batch", type=int, default=1, help="images per prompt")
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--interval", type=float, default=0.01, help="NVML power polling period, s")
    ap.add_argument("--idle", type=float, default=3.0, help="idle baseline, s (0: none)")
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--store", default=None, help="where artifacts/ (the images) go; default: a temp dir")
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)

    import diffusers
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA GPU: run with --device cpu --model sd-tiny for a CPU smoke run", file=sys.stderr)
        return 2
    model = ModelConfig(**yaml.safe_load((ROOT / "conf" / "model" / f"{args.model}.yaml").read_text()))
    store = Path(args.store or tempfile.mkdtemp(prefix="energyray-diffusion-"))
    steps = [int(s) for s in args.steps.split(",") if s.strip()]
    runner = TrialRunner(sampler(args.device, args.interval), GenerationConfig(warmup_runs=1),
                         str(store / "cache"), device=args.device, seed=0,
                         measurement=MeasurementConfig(idle_s=args.idle, idle_settle_s=min(args.idle, 2.0)),
                         backend_settings={"store_path": str(store.resolve())},
                         hardware="gpu" if args.device == "cuda" else "cpu")
    runner.windows.describe()
    specs = expand("diffusion-gpu", {"inference_steps": steps}, dict(
        model=args.model, backend="diffusers", weights="dummy", precision=args.precision, batch_size=args.batch,
        task="image", prompt_variant="default", hardware=runner.hardware, max_new_tokens=None, requests=None,
        resolution=args.resolution, guidance_scale=args.guidance), repeats=args.repeats)
    t0 = time.monotonic()
    loaded = runner.load(specs[0], model)
    print(f"{args.model} random init, {loaded['precision']} on {loaded['device']}: load {loaded['load_s']:.1f} s, "
          f"{runner.load_info.params_b} B parameters; idle {runner.group.get('idle_power_w')} W; "
          f"gpu {runner.sampler_info.get('gpu_name')}")
    rows, last_samples = [], []
    for i, spec in enumerate(specs):
        result = runner.run(spec, model, {"benchmark": "diffusion_gpu"}, last=i == len(specs) - 1)
        row = result.row
        if row["status"] != "ok":
            print(f"trial {spec.trial_id} ({spec.inference_steps} steps): {row['status']}: {row['error']}")
            continue
        rows.append(row)
        last_samples = result.samples
        print(f"  steps={spec.inference_steps} repeat={spec.repeat}: {row['duration_s']:.2f} s, "
              f"{row['energy_j']} J ({row['energy_source']}), {row['s_per_step']:.4f} s/step")
    print(f"\n{'steps':>5} " + " ".join(f"{c:>14}" for c in SHOWN))
    summary: dict[str, Any] = {}
    for n in steps:
        mine = [r for r in rows if r["inference_steps"] == n]
        figures = {c: mean([r.get(c) for r in mine]) for c in SHOWN}
        summary[str(n)] = {**figures, "trials": len(mine)}
        print(f"{n:>5} " + " ".join(f"{v:>14.4g}" if v is not None else f"{'null':>14}" for v in figures.values()))
    pattern = step_pattern(last_samples)
    if pattern:
        print("\npower by denoising step (last trial): step n mean_W max_W")
        for p in pattern:
            print(f"  {p['step']:>3} {p['n']:>3} {p['mean_w']:8.1f} {p['max_w']:8.1f}")
    if rows:
        print(f"\nimages (noise: random weights): {store / rows[-1]['image_dir']}")
    out = {"model": args.model, "precision": args.precision, "resolution": rows[0]["image_width_px"] if rows else None,
           "batch": args.batch, "guidance": args.guidance, "repeats": args.repeats, "interval_s": args.interval,
           "device": args.device, "gpu": runner.sampler_info.get("gpu_name"),
           "idle_power_w": runner.group.get("idle_power_w"), "load_s": loaded["load_s"],
           "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__},
           "by_steps": summary, "step_pattern_last_trial": pattern, "wall_s": time.monotonic() - t0,
           "rows": [{k: r.get(k) for k in ("trial_id", "inference_steps", "repeat", "duration_s", "energy_source",
                                           "denoise_step_s_json", "denoise_step_j_json", *SHOWN)} for r in rows]}
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(out, indent=1, default=str))
        print(f"wrote {args.json_out}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
