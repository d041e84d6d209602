"""How busy energyray keeps the GPUs: (a) against a process per trial, (b) on 2 GPUs against 1.

    python benchmarks/busy.py energyray [--gpus N] [--json-out F]   # the work queue, Ray actors
    python benchmarks/busy.py per-process [--json-out F]            # each trial in its own process
    python benchmarks/busy.py both --limit 5 [...]                   # (a) side by side in one VM, warmed
    python benchmarks/busy.py scaling --groups4 [--order 1,2,2,1]    # (b) 1 GPU vs 2 in ABBA order, warmed

The sweep: 3 models × batch 1 and 4 × 4 repeats = 24 trials, 128 new tokens each (`--new-tokens`),
the thesis' long-form prompt, random-init weights (no download) of real architectures:
`--workload small` (default) Qwen2.5-0.5B, Llama-3.2-1B, Gemma-3-1B; `--workload 7b` the
practicum's class of model, from conf/model: Mistral-7B, Qwen2-7B, Llama-3-8B; `--workload one`
a single model (Llama-3.2-1B) × batch 1 and 4 × 12 repeats, the 24 trials as one group.

GPU-busy fraction = the sum of the measured trial windows ÷ (wall time × GPUs), the issue's
definition. Two more figures say where the rest goes: the protocol fraction (trial windows plus
everything else the measurement protocol runs on the GPU: warmups, loads, unloads, idle
baselines, ÷ wall × GPUs), i.e. 1 − the time lost to orchestration; and the bound the protocol
puts on the busy fraction, trial windows ÷ (trial windows + warmups): with `--full-warmup`
(a warmup per shape as long as the trial) a group of n trials of
one shape is capped at n / (n + 1), 0.80 for this sweep's 4 repeats per shape. The timeline of
the first worker (when it was placed, started, imported, loaded) says where the fixed start goes.

- `energyray`: `run_sweep` as the CLI runs it: one worker per GPU, a model loaded once per
  (model, precision) group, warmup per shape, idle baseline per group (`--idle-s`).
- `per-process`: what a launcher that starts a process per job does (the hydra-ray-launcher
  plugin): each trial is a fresh Python process that imports torch, loads its model,
  warms up once, runs the one trial with the same TrialRunner and NVML sampler, and exits.
  No Ray in it at all (which flatters it: no actor start-up).

`both` and `scaling` first run a one-trial sweep on every GPU and discard it: the first sweep in a
fresh VM imports torch and transformers from a cold page cache, 3-8 s slower on the GPU VMs
measured, which would flatter whichever arm ran second. `both` then runs `energyray` and
`per-process --limit N` and prints both goals of (a); `scaling` runs the GPU counts of `--order`
(default 1,2,2,1, so that drift over the call falls on both arms) and prints the ratio of mean walls.

(b) is `energyray --gpus 1` against `energyray --gpus 2` on a two-GPU machine, with
`--groups4` (4 models × 6 trials: 4 equal groups, so that two GPUs can split them evenly), or
`--workload one` (one group, which only work stealing, `ray.steal_work`, spreads over two GPUs;
`--no-steal` turns it off).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from typing import Any

from _common import ROOT

MODELS: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
                     "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
                     "max_position_embeddings": 32768, "tie_word_embeddings": True},
    "llama-3.2-1b": {"model_type": "llama", "vocab_size": 128256, "hidden_size": 2048, "intermediate_size": 8192,
                     "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8,
                     "head_dim": 64, "max_position_embeddings": 131072, "tie_word_embeddings": True},
    "gemma-3-1b": {"model_type": "gemma3_text", "vocab_size": 262144, "hidden_size": 1152,
                   "intermediate_size": 6912, "num_hidden_layers": 26, "num_attention_heads": 4,
                   "num_key_value_heads": 1, "head_dim": 256, "sliding_window": 512,
                   "max_position_embeddings": 32768},
    "qwen2.5-1.5b": {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 1536, "intermediate_size": 8960,
                     "num_hidden_layers": 28, "num_attention_heads": 12, "num_key_value_heads": 2,
                     "max_position_embeddings": 32768, "tie_word_embeddings": True},
}


KEEP = ("trial_id", "import_s", "model", "batch_size", "repeat", "status", "error", "window_s", "duration_s", "energy_j",
        "prepare_s", "load_s", "warmup_s", "warmup_runs", "idle_s", "idle_reused", "unload_s", "j_per_token",
        "tokens_per_s", "started_at", "finished_at", "worker_pid", "worker_group_index", "unload_memory_left_mb",
        "energy_source", "load_id", "group_trials", "process_reusable")
LARGE = ("mistral-7b", "qwen2-7b", "llama3-8b")  # --workload 7b, from conf/model


def _models(names: list[str]) -> dict[str, Any]:
    from omegaconf import OmegaConf

    from energyray.config import ModelConfig

    out = {}
    for n in names:
        if n in MODELS:
            out[n] = ModelConfig(name=n, params_b=None, architecture=MODELS[n])
        else:
            raw = OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "model" / f"{n}.yaml"))
            out[n] = ModelConfig(**{k: v for k, v in raw.items() if k in ModelConfig.__dataclass_fields__})  # type: ignore[union-attr]
    return out


def _cfg(args: argparse.Namespace) -> Any:
    from energyray.config import MeasurementConfig, RunConfig

    cfg = RunConfig(device=args.device, cache_dir=os.environ.get("ENERGYRAY_CACHE", "/tmp/erc"),
                    measurement=MeasurementConfig(idle_s=args.idle_s, idle_settle_s=min(2.0, args.idle_s),
                                                  idle_settle_max_s=10.0 if args.idle_s else 0.0))
    cfg.generation.max_new_tokens = cfg.generation.cpu_max_new_tokens = args.new_tokens
    if args.full_warmup:
        cfg.generation.warmup_new_tokens = None  # the trial's own length
    elif args.warmup_new_tokens is not None:
        cfg.generation.warmup_new_tokens = args.warmup_new_tokens
    cfg.ray.num_gpus = args.gpus
    cfg.ray.cpu_workers = max(1, args.gpus)  # --device cpu: as many CPU slots (a functional check)
    cfg.ray.reuse_workers = args.reuse_workers
    cfg.ray.preload_backend = not args.no_preload
    cfg.ray.steal_work = not args.no_steal
    cfg.ray.bytecode_cache = args.bytecode_cache
    return cfg


def _specs(args: argparse.Namespace, hardware: str) -> list[Any]:
    from energyray.grid import expand

    names = (args.models.split(",") if args.models else list(LARGE) if args.workload == "7b"
             else ["llama-3.2-1b"] if args.workload == "one" else list(MODELS)[:4] if args.groups4
             else list(MODELS)[:3])
    grid = {"model": names, "batch_size": [4] if args.groups4 else [1, 4]}
    return expand("busy", grid, {
        "model": names[0], "backend": "transformers", "weights": "dummy", "precision": "baseline", "batch_size": 1,
        "task": "longform", "prompt_variant": "default", "hardware": hardware, "max_new_tokens": None},
        repeats=getattr(args, "repeats", None) or (6 if args.groups4 else 12 if args.workload == "one" else 4))


def run_energyray(args: argparse.Namespace) -> dict[str, Any]:
    import ray

    from energyray.grid import group
    from energyray.orchestrator import run_sweep
    from energyray.plan import Plan, detect_hardware

    cfg = _cfg(args)
    hw = detect_hardware(cfg)
    specs = _specs(args, hw)
    models = _models(sorted({s.model for s in specs}))
    plan = Plan(groups=group(specs), models=models, configs={s.trial_id: {} for s in specs}, cfg=cfg,
                local_hardware=hw)
    rows: list[dict[str, Any]] = []
    systems: list[dict[str, Any]] = []
    t0 = time.monotonic()
    ray.init(num_gpus=args.gpus, include_dashboard=False, log_to_driver=False, configure_logging=False)
    t_ray = time.monotonic() - t0
    events = Events()  # its clock starts now, with the wall time's
    t1 = time.monotonic()
    run_sweep(plan, lambda r: rows.append(r.row), lambda s: systems.append({**s, "seen_at": time.time()}), events)
    wall = time.monotonic() - t1
    ray.shutdown()
    out = _summary("energyray", rows, wall, args.gpus, extra={"ray_init_s": t_ray, "groups": len(plan.groups)})
    out["first_worker"] = first_worker(events, systems, rows)
    out["steals"] = [(round(t, 2), slot, text) for t, slot, text in events.log if "taken by" in text or "unloading" in text]
    for t, slot, text in out["steals"]:
        print(f"  steal at {t:.2f} s: slot {slot} {text}")
    loads: dict[Any, list[dict[str, Any]]] = {}
    for r in rows:
        loads.setdefault(r.get("load_id"), []).append(r)
    once = sum(1 for g in loads.values() if sum(x.get("process_reusable") is not None for x in g) == 1)
    print(f"  loads with their unload on exactly one row: {once} of {len(loads)}")
    return out


class Events:
    """The scheduler's progress calls, timed from the Events' creation: when each slot was placed,
    started a group, ran a trial."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.log: list[tuple[float, int, str]] = []

    def worker(self, slot: int, hardware: str, text: str, done: int | None = None, total: int | None = None) -> None:
        self.log.append((time.time() - self.t0, slot, text))

    def advance(self, row: dict[str, Any]) -> None:
        pass


def first_worker(events: Events, systems: list[dict[str, Any]], rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Where slot 0's time went before its first trial window opened (s after run_sweep began)."""
    def at(prefix: str) -> float | None:
        return next((t for t, slot, text in events.log if slot == 0 and text.startswith(prefix)), None)

    sys0 = next((x for x in systems if x.get("slot") == 0), {})
    mine = sorted((r for r in rows if r.get("worker_pid") == sys0.get("pid") and r.get("started_at")),
                  key=lambda r: str(r["started_at"]))
    first = mine[0] if mine else {}
    out: dict[str, Any] = {"placed_s": at("idle"), "group_started_s": at("loading")}
    entered = sys0.get("worker_init_entered_at")
    if entered is not None:
        out["worker_init_entered_s"] = entered - events.t0
        out["worker_process_age_at_init_s"] = sys0.get("worker_process_age_s")
        out.update({k: sys0.get(k) for k in ("worker_device_s", "worker_bind_s", "worker_init_s", "worker_preload")})
        out["describe_seen_s"] = sys0["seen_at"] - events.t0
    out.update({k: first.get(k) for k in ("import_s", "prepare_s", "load_s", "warmup_s")})
    out["first_trial_started_s"] = at(str(first.get("model") or "\0"))
    print("  first worker (s after the sweep began): " + ", ".join(
        f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in out.items()))
    return out


def spread(items: list[Any], n: int) -> list[Any]:
    """`n` of `items` evenly spaced from the first: a sample with every model of the sweep in it (the
    first n would all be the first model's, whose process start and load need not be the others')."""
    if n >= len(items):
        return list(items)
    return [items[round(i * len(items) / n)] for i in range(n)]


def run_per_process(args: argparse.Namespace) -> dict[str, Any]:
    from energyray.plan import detect_hardware

    cfg = _cfg(args)
    specs = _specs(args, detect_hardware(cfg))
    rows = []
    t0 = time.monotonic()
    for s in spread(specs, args.limit) if args.limit else specs:
        out = subprocess.run([sys.executable, __file__, "one", json.dumps(s.to_dict()),
                              "--idle-s", str(args.idle_s), "--new-tokens", str(args.new_tokens),
                              "--device", args.device, "--workload", args.workload]
                             + (["--warmup-new-tokens", str(args.warmup_new_tokens)] if args.warmup_new_tokens else [])
                             + (["--full-warmup"] if args.full_warmup else [])
                             + (["--bytecode-cache", "true"] if args.per_process_bytecode else []),
                             capture_output=True, text=True, cwd=ROOT, timeout=600)
        line = next((x for x in out.stdout.splitlines() if x.startswith("ROW ")), None)
        if line is None:
            raise SystemExit(f"trial process failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}")
        rows.append(json.loads(line[4:]))
        if args.progress_out:  # each trial as it ends: a run cut short still has its figures
            with open(args.progress_out, "a") as f:
                f.write(json.dumps({**rows[-1], "elapsed_s": time.monotonic() - t0}) + "\n")
    wall = time.monotonic() - t0
    return _summary("per-process", rows, wall, 1)


def warm_up(args: argparse.Namespace) -> None:
    """A one-trial sweep on every GPU, discarded: imports from a warm page cache afterwards."""
    model = args.models.split(",")[0] if args.models else "qwen2.5-0.5b"
    quick = argparse.Namespace(**{**vars(args), "models": model, "workload": "small", "groups4": True,  # batch 4 only
                                  "repeats": args.gpus_max, "gpus": args.gpus_max, "new_tokens": 16})
    print(f"warm-up: {quick.repeats} trial(s) on {quick.gpus} GPU(s), discarded", flush=True)
    run_energyray(quick)


def run_both(args: argparse.Namespace) -> dict[str, Any]:
    """(a) side by side: energyray's sweep, then a process per trial for --limit trials spread over it."""
    warm_up(args)
    ours = run_energyray(args)
    theirs = run_per_process(args)
    outside = ours["outside_s"]  # F
    per_trial = theirs["overhead_per_trial_s"]  # S
    n = ours["trials"]
    est = n * per_trial + ours["trial_windows_s"]  # a process per trial for all n trials
    speedup = est / ours["wall_s"]
    print(f"RESULT both: GPU-busy {ours['busy_fraction']:.3f} (goal >= 0.90: {'PASS' if ours['busy_fraction'] >= 0.9 else 'MISS'}); "
          f"a process per trial: {per_trial:.2f} s outside its window each (S), {est:.0f} s for {n} (est.); "
          f"speed-up {speedup:.2f}x (goal >= 3: {'PASS' if speedup >= 3 else 'MISS'}); F = {outside:.1f} s, F/S = "
          f"{outside / per_trial:.2f} (both goals need <= 1.14)")
    return {"energyray": ours, "per_process": theirs, "speedup_est": speedup, "F_s": outside, "S_s": per_trial}


def run_scaling(args: argparse.Namespace) -> dict[str, Any]:
    """(b) 1 GPU vs 2 in the order of --order, after a warm-up; the ratio of the mean walls."""
    warm_up(args)
    runs = []
    for g in (int(x) for x in args.order.split(",")):
        r = run_energyray(argparse.Namespace(**{**vars(args), "gpus": g}))
        runs.append({"gpus": g, "wall_s": r["wall_s"], "trial_windows_s": r["trial_windows_s"],
                     "trials_per_worker": r["trials_per_worker"], "steals": r["steals"]})
    walls: dict[int, list[float]] = {}
    for r in runs:
        walls.setdefault(r["gpus"], []).append(r["wall_s"])
    mean = {g: sum(w) / len(w) for g, w in walls.items()}
    lo, hi = min(mean), max(mean)
    ratio = mean[hi] / mean[lo] if lo != hi else None
    print("RESULT scaling: " + "; ".join(f"{g} GPU(s) {', '.join(f'{w:.1f}' for w in walls[g])} s" for g in sorted(walls))
          + (f"; ratio of mean walls {ratio:.3f} (goal <= 0.53: {'PASS' if ratio <= 0.53 else 'MISS'})"
             if ratio is not None else ""))
    return {"runs": runs, "ratio": ratio}


def run_one(args: argparse.Namespace) -> None:
    """One trial in this process (the per-process baseline's child)."""
    from energyray import env
    from energyray.grid import TrialSpec
    from energyray.samplers import make_device_sampler
    from energyray.trial import TrialRunner

    cfg = _cfg(args)
    if args.bytecode_cache == "true":  # --per-process-bytecode: as energyray's workers would (env.bytecode_cache)
        env.bytecode_cache("true", cfg.cache_dir or "/tmp/erc")
    spec = TrialSpec(**json.loads(args.spec))
    model = _models([spec.model])[spec.model]
    sampler = make_device_sampler("gpu", env.visible_gpu_uuid(), cfg.sampler) if args.device == "cuda" else None
    if sampler is not None:
        sampler.start()
    try:
        runner = TrialRunner(sampler, cfg.generation, cfg.cache_dir, device=args.device, measurement=cfg.measurement,
                             hardware=spec.hardware)
        runner.load(spec, model)
        row = runner.run(spec, model, {}, last=True).row
    finally:
        if sampler is not None:
            sampler.close()
    row["worker_pid"] = os.getpid()  # a process per trial
    print("ROW " + json.dumps({k: row.get(k) for k in KEEP}, default=str))


def _summary(mode: str, rows: list[dict[str, Any]], wall: float, gpus: int, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    rows = [{k: r.get(k) for k in KEEP} for r in rows]
    ok = [r for r in rows if r.get("status") == "ok"]
    busy = sum(r.get("window_s") or r.get("duration_s") or 0.0 for r in ok)
    out = {"mode": mode, "trials": len(rows), "ok": len(ok), "wall_s": wall, "gpus": gpus,
           "trial_windows_s": busy, "busy_fraction": busy / (wall * max(1, gpus)) if wall else None,
           "mean_j_per_token": (sum(r["j_per_token"] for r in ok) / len(ok)
                                if ok and all(r["j_per_token"] is not None for r in ok) else None), **(extra or {}),
           "rows": rows}
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in ok:
        groups.setdefault((r["model"], r.get("worker_pid")), []).append(r)  # one load group each
    per = [(sum(x["window_s"] or x["duration_s"] or 0 for x in g), sum(x["warmup_s"] or 0 for x in g), g[0]["load_s"] or 0,
            g[0]["prepare_s"] or 0) for g in groups.values()]
    idles = sum(g[0].get("idle_s") or 0 for g in groups.values() if not g[0].get("idle_reused"))
    unloads = sum(x.get("unload_s") or 0 for x in ok)
    out["breakdown_s"] = {"trial_windows": sum(p[0] for p in per), "warmups": sum(p[1] for p in per),
                          "loads": sum(p[2] for p in per), "unloads": unloads, "idle_baselines": idles,
                          "prepares": sum(p[3] for p in per)}
    on_gpu = sum(v for k, v in out["breakdown_s"].items() if k != "prepares")
    out["protocol_fraction"] = on_gpu / (wall * max(1, gpus)) if wall else None
    warm = out["breakdown_s"]["warmups"]
    out["busy_bound_from_warmups"] = busy / (busy + warm) if busy + warm else None
    out["processes"] = len({r.get("worker_pid") for r in rows})
    out["loads"] = len({r.get("load_id") for r in ok}) if mode == "energyray" else len(ok)
    per_worker: dict[Any, int] = {}
    for r in ok:
        per_worker[r.get("worker_pid")] = per_worker.get(r.get("worker_pid"), 0) + 1
    out["trials_per_worker"] = sorted(per_worker.values(), reverse=True)
    out["breakdown_s"]["rest (process start, imports, scheduling)"] = wall * max(1, gpus) - sum(
        out["breakdown_s"].values())
    first = [r for r in ok if r.get("repeat") == 0]
    later = [r for r in ok if r.get("repeat") not in (0, None)]
    if first and later:  # is the first trial of a shape still slow after its warmup?
        out["first_vs_later_tokens_per_s"] = (sum(r["tokens_per_s"] for r in first) / len(first)) / (
            sum(r["tokens_per_s"] for r in later) / len(later))
    outside = wall * max(1, gpus) - busy  # F: everything the sweep spent outside trial windows
    out["outside_s"] = outside
    out["overhead_per_trial_s"] = outside / len(rows) if rows else None
    print(f"RESULT {mode}: {len(ok)}/{len(rows)} ok, wall {wall:.1f} s on {gpus} GPU(s), trial windows "
          f"{busy:.1f} s, GPU-busy fraction {out['busy_fraction']:.3f}; wall × GPUs − trial windows per trial "
          f"{out['overhead_per_trial_s']:.2f} s (what a process per trial adds to each: with --limit, "
          "24 × this + the full sweep's trial windows estimates its wall)")
    print("  breakdown (s): " + ", ".join(f"{k} {v:.1f}" for k, v in out["breakdown_s"].items()))
    print(f"  protocol fraction (trial windows, warmups, loads, unloads, idle ÷ wall × GPUs) "
          f"{out['protocol_fraction']:.3f}; busy bound from warmups {out['busy_bound_from_warmups']:.3f}; "
          f"{out['processes']} worker process(es), {out['loads']} model loads, trials per worker "
          f"{out['trials_per_worker'] if mode == 'energyray' else '1 each'}")
    # the trial windows a 0.90 busy fraction needs, given this sweep's fixed cost F
    if mode == "energyray" and outside > 0:
        print(f"  outside trial windows F = {outside:.1f} s: GPU-busy >= 0.90 needs trial windows >= 9 F = "
              f"{9 * outside:.0f} s (these took {busy:.0f} s); >= 3x over a process per trial with S s of "
              f"overhead each needs trial windows <= 12 S - 1.5 F")
    if "first_vs_later_tokens_per_s" in out:
        print(f"  first repeat vs later repeats, tokens/s: {out['first_vs_later_tokens_per_s']:.3f}")
    for r in rows:
        if r.get("status") != "ok":
            print(f"  {r.get('trial_id')} {r.get('status')}: {str(r.get('error'))[:300]}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["energyray", "per-process", "both", "scaling", "one"])
    ap.add_argument("spec", nargs="?")
    ap.add_argument("--gpus", type=int, default=1)
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--new-tokens", type=int, default=128)
    ap.add_argument("--groups4", action="store_true")
    ap.add_argument("--reuse-workers", default="auto", choices=["auto", "true", "false"],
                    help="ray.reuse_workers (auto: the default, keep a slot's process where the model frees in-process)")
    ap.add_argument("--no-preload", action="store_true", help="ray.preload_backend=false (import at load, not meanwhile)")
    ap.add_argument("--no-steal", action="store_true", help="ray.steal_work=false (groups are never shared)")
    ap.add_argument("--bytecode-cache", default="auto", choices=["auto", "true", "false"],
                    help="ray.bytecode_cache for energyray's workers")
    ap.add_argument("--per-process-bytecode", action="store_true",
                    help="per-process: each trial's process keeps bytecode as energyray's workers do (not what a "
                         "launcher does: without it, the baseline compiles what this Python compiles)")
    ap.add_argument("--workload", default="small", choices=["small", "7b", "one"])
    ap.add_argument("--limit", type=int, help="per-process: run only N trials, evenly spread over the sweep (every model in the sample)")
    ap.add_argument("--warmup-new-tokens", type=int, default=None,
                    help="generation.warmup_new_tokens (default: the config's, 16)")
    ap.add_argument("--full-warmup", action="store_true", help="warmups of the trial's own length")
    ap.add_argument("--models", help="comma-separated subset of MODELS (a quick check)")
    ap.add_argument("--device", default="cuda", help="cpu: a functional check only, no energy")
    ap.add_argument("--json-out")
    ap.add_argument("--progress-out", help="per-process: append each trial's row (and elapsed_s) here")
    ap.add_argument("--order", default="1,2,2,1", help="scaling: the GPU counts to run, in this order")
    args = ap.parse_args()
    args.gpus_max = max([args.gpus, *(int(x) for x in args.order.split(","))] if args.mode == "scaling" else [args.gpus])
    if args.mode == "one":
        run_one(args)
        return
    modes = {"energyray": run_energyray, "per-process": run_per_process, "both": run_both, "scaling": run_scaling}
    result = modes[args.mode](args)
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(result, f, indent=2, default=str)


if __name__ == "__main__":
    main()
