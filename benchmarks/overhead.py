#!/usr/bin/env python
"""Overhead: what energyray's sampler costs a launch-bound inference loop, in throughput.

Needs one NVIDIA GPU. From the repository root (about 1.5 min on an H200):

    python benchmarks/overhead.py [--workload decode|ops] [--pairs 7] [--json-out PATH]

The workload is batch-1 greedy decoding of the random-init ~0.9 B Llama of fidelity.py part b
(`decode`, the default: tokens/s), or a loop of small GPU ops that mimics it (`ops`: 16 tiny
matmul+SiLU layers and one host sync per step, steps/s). One run lasts ~RUN_S seconds (the
token count is calibrated once, then fixed).

Variants, each as PAIRS interleaved pairs (none, with, none, with, ...):
  out  energyray's NvmlSampler in a SEPARATE process (multiprocessing 'spawn'), as the sampler
       actor runs it: it polls the same GPU (by UUID) at 10 Hz and opens and closes a window
       every WINDOW_S seconds, as a trial would. Between "with" runs it is idle (blocked on a pipe).
  in   the same sampler in THIS process: its polling thread runs beside the inference thread,
       and a window is opened before and closed after the run (outside the timing).

Reports each pair's with/without throughput ratio and their median. Goal: the out-of-process
median >= 0.995. Prints tables, GOAL PASS/MISS lines and one line `RESULT {json}`; exits 0
whether or not the goal is met (1 if a variant crashed, 2 with no GPU).
"""

from __future__ import annotations

import argparse
import importlib
import multiprocessing as mp
import os
import statistics
import time
import traceback
from collections.abc import Callable
from typing import Any

import _common as C

GOAL_RATIO = 0.995


# -- the sampler ------------------------------------------------------------------------------------
def sampler_class(spec: str) -> Any:
    """A registry name (energyray.registry.SAMPLERS, e.g. "nvml") or "module:Class"."""
    if ":" in spec:
        module, _, attr = spec.partition(":")
        return getattr(importlib.import_module(module), attr)
    from energyray.registry import SAMPLERS, resolve

    return resolve("sampler", SAMPLERS, spec)


def _sampler_child(conn: Any, spec: str, device: str | int, interval_s: float, window_s: float) -> None:
    """The sampler process: idle until "on"; then poll and open/close a window every window_s
    until "off" (answered with what it did); "quit" ends it. Imports no torch."""
    try:
        cls = sampler_class(spec)
        conn.send(("ready", os.getpid()))
        while True:
            cmd = conn.recv()
            if cmd == "quit":
                return
            if cmd != "on":
                continue
            s = cls(device=device, interval_s=interval_s)
            s.start()
            conn.send(("on", None))
            readings, k = [], 0
            s.begin(f"w{k}")
            deadline = time.monotonic() + window_s
            while True:
                if conn.poll(max(0.0, deadline - time.monotonic())):
                    cmd = conn.recv()
                    readings.append(s.end(f"w{k}"))
                    break
                readings.append(s.end(f"w{k}"))
                k += 1
                s.begin(f"w{k}")
                deadline += window_s
            with s._lock:
                n_samples = len(s._series)
            s.close()
            conn.send(("off", {
                "windows": len(readings), "samples": n_samples,
                "energy_j": sum(r.energy_j for r in readings if r.energy_j is not None),
                "sources": sorted({r.source for r in readings}),
            }))
            if cmd == "quit":
                return
    except Exception:
        conn.send(("error", traceback.format_exc()))


class SamplerProcess:
    """energyray's sampler in its own process (spawned), switched on and off through a pipe."""

    def __init__(self, spec: str, device: str | int, interval_s: float, window_s: float) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sampler_child, args=(child, spec, device, interval_s, window_s),
                                name="energyray-sampler", daemon=True)
        self.proc.start()
        child.close()
        self.pid = self._expect("ready", timeout=120)

    def _expect(self, tag: str, timeout: float = 30) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the sampler process did not answer {tag!r} within {timeout} s")
        got, payload = self.conn.recv()
        if got == "error":
            raise RuntimeError(f"the sampler process failed:\n{payload}")
        if got != tag:
            raise RuntimeError(f"the sampler process answered {got!r}, expected {tag!r}")
        return payload

    def on(self) -> None:
        self.conn.send("on")
        self._expect("on")

    def off(self) -> dict[str, Any]:
        self.conn.send("off")
        return self._expect("off")

    def close(self) -> None:
        try:
            self.conn.send("quit")
        except (BrokenPipeError, OSError):
            pass
        self.proc.join(timeout=10)
        if self.proc.is_alive():
            self.proc.terminate()  # this process only, by its handle
            self.proc.join(timeout=5)


# -- workloads ------------------------------------------------------------------------------------------
def decode_workload(prompt_len: int) -> tuple[Callable[[int], int], str, int]:
    """(run(n) -> tokens, unit, a first n): greedy batch-1 generate of exactly n new tokens."""
    import torch

    model = C.build_llama()
    ids = C.random_prompt(prompt_len)
    mask = torch.ones_like(ids)

    def run(n: int) -> int:
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, **C.greedy_kwargs(n))
        return int(out.shape[1] - prompt_len)

    return run, "tokens", 32


def ops_workload(layers: int = 16, hidden: int = 2048) -> tuple[Callable[[int], int], str, int]:
    """(run(n) -> steps, unit, a first n): n steps of `layers` tiny bf16 matmul+SiLU+add on a
    1 x hidden vector and one host sync per step, like a decoder's per-token stopping check."""
    import torch

    gen = torch.Generator().manual_seed(0)
    ws = [(torch.randn(hidden, hidden, generator=gen) * hidden**-0.5).to(C.DEVICE, torch.bfloat16)
          for _ in range(layers)]
    x0 = torch.randn(1, hidden, generator=gen).to(C.DEVICE, torch.bfloat16)

    def run(n: int) -> int:
        with torch.inference_mode():
            for _ in range(n):
                h = x0
                for w in ws:
                    h = torch.nn.functional.silu(h @ w) + h
                float(h.sum())
        return n

    return run, "steps", 200


def measure(run: Callable[[int], int], n: int) -> dict[str, float]:
    C.sync()
    t = time.perf_counter()
    units = run(n)
    C.sync()
    dt = time.perf_counter() - t
    return {"units": units, "seconds": dt, "rate": units / dt}


def calibrate(run: Callable[[int], int], n: int, run_s: float) -> tuple[int, float]:
    """The n for which one run takes about run_s (two passes), and its measured rate."""
    rate = 0.0
    for _ in range(2):
        run(n)  # warm up at this size first: the first run of a new shape is 2-3x slower
        m = measure(run, n)
        rate = m["rate"]
        n = int(min(1_000_000, max(8, round(n * run_s / max(m["seconds"], 1e-6)))))
    return n, rate


# -- variants ---------------------------------------------------------------------------------------------
def run_variant(variant: str, run: Callable[[int], int], n: int, args: argparse.Namespace,
                device: str | int) -> dict[str, Any]:
    pairs = []
    proc = SamplerProcess(args.sampler, device, args.interval_s, args.window_s) if variant == "out" else None
    cls = sampler_class(args.sampler)
    try:
        for i in range(args.pairs):
            time.sleep(args.settle_s)
            none = measure(run, n)
            if proc is not None:
                proc.on()
                time.sleep(args.settle_s)
                with_ = measure(run, n)
                stats = proc.off()
            else:
                s = cls(device=device, interval_s=args.interval_s)
                s.start()
                time.sleep(args.settle_s)
                s.begin("trial")
                with_ = measure(run, n)
                r = s.end("trial")
                with s._lock:
                    n_samples = len(s._series)
                s.close()
                stats = {"windows": 1, "samples": n_samples, "energy_j": r.energy_j, "sources": [r.source]}
            ratio = with_["rate"] / none["rate"]
            pairs.append({"none": none, "with": with_, "ratio": ratio, "sampler": stats})
            print(f"  {variant} pair {i + 1}/{args.pairs}: none {none['rate']:.2f}, with {with_['rate']:.2f} "
                  f"-> {ratio:.4f} (sampler: {stats['windows']} window(s), {stats['samples']} samples)", flush=True)
    finally:
        if proc is not None:
            proc.close()
    ratios = [p["ratio"] for p in pairs]
    nones = [p["none"]["rate"] for p in pairs]
    withs = [p["with"]["rate"] for p in pairs]
    med_none = statistics.median(nones)
    return {
        "variant": variant, "pairs": pairs, "median_ratio": statistics.median(ratios),
        "min_ratio": min(ratios), "max_ratio": max(ratios),
        "median_none": med_none, "median_with": statistics.median(withs),
        # run-to-run noise of the baseline alone, for judging a 0.5 % goal
        "none_mad_pct": 100 * statistics.median(abs(x / med_none - 1) for x in nones),
        "child_pid": proc.pid if proc is not None else None,
    }


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=("decode", "ops"), default="decode",
                   help="decode: HF generate of the random-init Llama (default); ops: small-op loop")
    p.add_argument("--variants", default="out,in", help="comma-separated: out (separate process), in (default: out,in)")
    p.add_argument("--pairs", type=int, default=7, help="interleaved (none, with) pairs per variant (default 7)")
    p.add_argument("--run-s", type=float, default=2.0, help="seconds per run (default 2)")
    p.add_argument("--settle-s", type=float, default=0.3, help="pause before every run (default 0.3)")
    p.add_argument("--interval-s", type=float, default=0.1, help="sampler polling interval (default 0.1 = 10 Hz)")
    p.add_argument("--window-s", type=float, default=2.0, help="out: the sampler opens/closes a window this often (default 2)")
    p.add_argument("--prompt-len", type=int, default=256, help="decode: prompt tokens (default 256)")
    p.add_argument("--sampler", default="nvml",
                   help='sampler: an energyray registry name or "module:Class" taking (device, interval_s) (default nvml)')
    p.add_argument("--device", default=None, help="GPU UUID or NVML index (default: the GPU CUDA sees first)")
    p.add_argument("--json-out", default=None, help="also write the RESULT json to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    opened = C.open_gpu("overhead.py", args.device)
    if opened is None:
        return 2
    device, info = opened
    print(f"GPU {info.get('name')} {info.get('uuid')} driver {info.get('driver')}; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs")
    result: dict[str, Any] = {"benchmark": "overhead", "gpu": info, "args": vars(args), "variants": {},
                              "goals": {}, "errors": {}}
    t_start = time.monotonic()
    C.section(f"workload: {args.workload}")
    if args.workload == "decode":
        run, unit, n0 = decode_workload(args.prompt_len)
    else:
        run, unit, n0 = ops_workload()
    n, rate = calibrate(run, n0, args.run_s)
    run(n)  # one more warm-up at the final size
    print(f"{n} {unit} per run (~{n / rate:.2f} s at {rate:.2f} {unit}/s)")
    result.update(unit=unit, units_per_run=n, calibrated_rate=rate)

    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant not in ("out", "in"):
            print(f"unknown variant {variant!r} (out, in)")
            continue
        where = "a separate process (spawn)" if variant == "out" else "this process (polling thread)"
        C.section(f"{variant}: sampler ({args.sampler}, {1 / args.interval_s:g} Hz) in {where}")
        try:
            res = run_variant(variant, run, n, args, device)
        except Exception as e:
            traceback.print_exc()
            result["errors"][variant] = f"{type(e).__name__}: {e}"
            continue
        result["variants"][variant] = res
        rows = [[i + 1, f"{p['none']['rate']:.2f}", f"{p['with']['rate']:.2f}", f"{p['ratio']:.4f}",
                 p["sampler"]["windows"], p["sampler"]["samples"]] for i, p in enumerate(res["pairs"])]
        print(C.table(["pair", f"none {unit}/s", f"with {unit}/s", "with/none", "windows", "samples"], rows))
        print(f"median ratio {res['median_ratio']:.4f} (min {res['min_ratio']:.4f}, max {res['max_ratio']:.4f}); "
              f"baseline run-to-run noise (median |dev|) {res['none_mad_pct']:.2f} %")

    C.section("summary")
    rows = [[v, f"{r['median_none']:.2f}", f"{r['median_with']:.2f}", f"{r['median_ratio']:.4f}",
             f"{100 * (r['median_ratio'] - 1):+.2f}"] for v, r in result["variants"].items()]
    print(C.table(["variant", f"median none {unit}/s", f"median with {unit}/s", "median ratio", "cost %"], rows))
    out = result["variants"].get("out")
    if out:
        ok = out["median_ratio"] >= GOAL_RATIO
        print(C.goal_line(f"out-of-process sampler: median with/none >= {GOAL_RATIO}", f"{out['median_ratio']:.4f}", ok))
        result["goals"]["out_of_process_ratio"] = {"pass": ok, "median_ratio": out["median_ratio"], "limit": GOAL_RATIO}
    inproc = result["variants"].get("in")
    if inproc:
        print(f"INFO in-process sampler (no goal; for comparison): median with/none {inproc['median_ratio']:.4f}")
    for variant, err in result["errors"].items():
        print(f"ERROR variant {variant}: {err}")
    result["wall_s"] = time.monotonic() - t_start
    C.emit_result(result, args.json_out)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
