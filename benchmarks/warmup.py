#!/usr/bin/env python
"""How long must a warmup be? The first trial of a new shape after a warmup of W tokens,
against the same shape's later trials, with energyray's defaults (cuDNN attention off).

    python benchmarks/warmup.py [--models qwen2.5-0.5b,llama-3.2-1b] [--batches 1-12]
                                [--new-tokens 128] [--arms 0,16,full] [--json-out F]

In ONE process, as a reused worker runs its groups: for each model (random-init weights of
busy.py's architectures, through TransformersBackend), each batch size is a new shape (the
thesis' long-form prompt). Each shape is given one arm, assigned in a shuffled, balanced order:
a warmup generation of W new tokens (0: none, `full`: the trial's own length), then --runs
generations of the trial's length. The figure per shape is run 0's tokens/s over the mean of the
later runs' (1.00: the first trial is as fast as the rest: the warmup did its job). Per arm: the
mean over its shapes with a 95 % t-interval, and the mean of |1 - ratio|. Each model's first
shape is the process's (or the model's) first generation, so it is reported apart, and always
gets the smallest non-zero arm (what a short-warmup default would give it).

What the arms cost is printed too: the warmup's seconds against one trial's.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from typing import Any

from _common import ROOT  # noqa: F401  (puts the repository on sys.path)
from busy import _models

from analysis.compare import t975


def summarise(ratios: list[float]) -> dict[str, Any]:
    n = len(ratios)
    mean = statistics.fmean(ratios) if ratios else None
    half = t975(n - 1) * statistics.stdev(ratios) / n**0.5 if n > 1 else None
    return {"n": n, "mean": mean, "ci": [mean - half, mean + half] if half is not None and mean is not None else None,
            "mean_abs_dev": statistics.fmean(abs(1 - r) for r in ratios) if ratios else None,
            "min": min(ratios) if ratios else None, "max": max(ratios) if ratios else None}


def batches(text: str) -> list[int]:
    if "-" in text:
        a, b = text.split("-")
        return list(range(int(a), int(b) + 1))
    return [int(x) for x in text.split(",")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="qwen2.5-0.5b,llama-3.2-1b")
    ap.add_argument("--batches", default="1-12", help="batch sizes, each a new shape: 1-12 or 1,2,4")
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--arms", default="0,16,full", help="warmup lengths: tokens, or full (the trial's own)")
    ap.add_argument("--runs", type=int, default=3, help="trial-length generations after the warmup (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json-out")
    args = ap.parse_args()
    import torch

    from energyray.backends.transformers import TransformersBackend
    from energyray.config import TransformersConfig
    from energyray.tasks import prompts

    arms = [a.strip() for a in args.arms.split(",")]
    short = min((a for a in arms if a not in ("0", "full")), key=int, default="full")
    rng = random.Random(args.seed)
    results: list[dict[str, Any]] = []
    for name in args.models.split(","):
        model = _models([name])[name]
        backend = TransformersBackend(transformers=TransformersConfig())  # the defaults: cuDNN attention off
        backend.load(model, "dummy", "baseline", args.device, "/tmp/erc", 0)
        shapes = batches(args.batches)
        order = [short] + [arms[i % len(arms)] for i in range(len(shapes) - 1)]
        rest = order[1:]
        rng.shuffle(rest)
        for k, (batch, arm) in enumerate(zip(shapes, [order[0], *rest], strict=True)):
            texts = [p.text for p in prompts("longform", "default", batch)]
            w = args.new_tokens if arm == "full" else int(arm)
            t0 = time.monotonic()
            if w:
                backend.generate(texts, w, ignore_eos=True)
            if args.device != "cpu":
                torch.cuda.synchronize()
            warm_s = time.monotonic() - t0
            rates = []
            for _ in range(args.runs):
                g = backend.generate(texts, args.new_tokens, ignore_eos=True)
                rates.append(batch * args.new_tokens / g.duration_s)
            ratio = rates[0] / statistics.fmean(rates[1:])
            results.append({"model": name, "batch": batch, "arm": arm, "first_of_model": k == 0, "warmup_s": warm_s,
                            "trial_s": batch * args.new_tokens / statistics.fmean(rates[1:]), "tokens_per_s": rates,
                            "ratio": ratio})
            print(f"{name} b={batch:2d} warmup {arm:>4} ({warm_s:5.2f} s): runs {' '.join(f'{r:7.1f}' for r in rates)} "
                  f"tokens/s, first/later {ratio:.3f}" + ("  (the model's first shape)" if k == 0 else ""), flush=True)
        backend.unload()

    print("\nfirst trial after the warmup ÷ later trials, tokens/s (1.00: no first-run penalty left)")
    summary: dict[str, Any] = {}
    for arm in arms:
        rs = [r["ratio"] for r in results if r["arm"] == arm and not r["first_of_model"]]
        s = summarise(rs)
        cost = [r["warmup_s"] / r["trial_s"] for r in results if r["arm"] == arm]
        s["warmup_cost_of_trial"] = statistics.fmean(cost) if cost else None
        summary[arm] = s
        if s["n"]:
            ci = f"{s['ci'][0]:.3f}-{s['ci'][1]:.3f}" if s["ci"] else "n/a"
            print(f"  warmup {arm:>4}: {s['n']} shapes, mean {s['mean']:.3f} (95 % CI {ci}), mean |1-r| "
                  f"{s['mean_abs_dev']:.3f}, range {s['min']:.3f}-{s['max']:.3f}; warmup costs "
                  f"{s['warmup_cost_of_trial']:.2f} trial")
    firsts = [r for r in results if r["first_of_model"]]
    for r in firsts:
        print(f"  {r['model']}'s first shape (b={r['batch']}, warmup {r['arm']}): first/later {r['ratio']:.3f}")
    summary["first_of_model"] = [{"model": r["model"], "arm": r["arm"], "ratio": r["ratio"]} for r in firsts]
    print("RESULT " + json.dumps(summary))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({"summary": summary, "shapes": results, "args": vars(args)}, f, indent=2)


if __name__ == "__main__":
    main()
