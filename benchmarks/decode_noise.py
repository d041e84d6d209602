"""Where a batch-1 decode's run-to-run noise comes from: one bare process, nothing of energyray imported.

The same 64-token `generate` (plain transformers, as `_parity_bare.Bare` runs it) is repeated in
blocks, each run recording what the operating system and the GPU say about it:

- the main thread's CPU time (`time.thread_time`) against the run's wall time, its run-queue
  wait (`/proc/thread-self/schedstat`), its voluntary and involuntary context switches, and the
  CPUs it ran on at the run's start and end;
- the machine's steal time over the run (`/proc/stat`: time the hypervisor gave this VM's vCPUs
  to someone else), for all CPUs and for the one the thread ended on;
- the GPU's SM clock, performance state and clock-event reasons at the run's end (NVML, read only).

Blocks: `unpinned` (the scheduler places the thread, as a user's process runs), `percore` (the
process pinned to each CPU in turn, `--per-core` runs each), `pinned` (pinned to the CPU that was
fastest in `percore`), and each of `unpinned`/`pinned` again with `--gap-s` of idle between runs
(the parity benchmark's schedule). It prints, per block, the spread of the runs' speeds and how
speed relates to each reading, so that the cause of the noise is named by a measurement.

    python benchmarks/decode_noise.py --runs 30 --per-core 2 --gap-s 2 --json-out noise.json
    python benchmarks/decode_noise.py --design interleave --cycles 3 --per-kind 4 --pin 2 --json-out noise.json

`--design interleave` tells the idle before a run apart from the machine's drift: the gap kinds
`none` (back to back), `sleep`, `spin` (the thread busy through the gap) and `idle-spinner`
(asleep, but a SCHED_IDLE process keeps its CPU from halting) alternate within each cycle, and a
pure-Python probe shows whether the CPU itself runs slower after a sleep. `--design cpu-only`
runs that probe alone after each gap kind (no model, no GPU: any machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import IdleSpinner  # noqa: E402
from _parity_bare import Bare  # noqa: E402  (no energyray import: the bare side's own class)

ROOT = Path(__file__).resolve().parent.parent


def _stat_cpus() -> dict[str, list[int]]:
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu"):
            f = line.split()
            out[f[0]] = [int(x) for x in f[1:]]
    return out


def _thread() -> dict[str, int]:
    s = Path("/proc/thread-self/stat").read_text()
    cpu = int(s[s.rindex(")") + 2:].split()[36])  # field 39: the CPU it last ran on
    run_ns, wait_ns, slices = (int(x) for x in Path("/proc/thread-self/schedstat").read_text().split())
    sw = {}
    for line in Path("/proc/thread-self/status").read_text().splitlines():
        if line.endswith("ctxt_switches:") or "ctxt_switches" in line:
            k, v = line.split(":")
            sw[k.strip()] = int(v)
    return {"cpu": cpu, "run_ns": run_ns, "wait_ns": wait_ns, "slices": slices,
            "vol": sw.get("voluntary_ctxt_switches", 0), "invol": sw.get("nonvoluntary_ctxt_switches", 0)}


def _gpu(b: Bare) -> dict[str, Any]:
    if b.nvml is None:
        return {}
    import pynvml

    out: dict[str, Any] = {}
    for key, fn in (("sm_mhz", lambda: pynvml.nvmlDeviceGetClockInfo(b.nvml, pynvml.NVML_CLOCK_SM)),
                    ("pstate", lambda: pynvml.nvmlDeviceGetPerformanceState(b.nvml)),
                    ("reasons", lambda: pynvml.nvmlDeviceGetCurrentClocksEventReasons(b.nvml)),
                    ("power_w", lambda: pynvml.nvmlDeviceGetPowerUsage(b.nvml) / 1000.0)):
        try:
            out[key] = fn()
        except Exception:  # a reading this driver lacks stays absent
            pass
    return out


def one_run(b: Bare, args: argparse.Namespace, block: str) -> dict[str, Any]:
    st0, th0, ct0 = _stat_cpus(), _thread(), time.thread_time()
    r = b.run(args.batch, args.prompt_len, args.new_tokens)
    ct1, th1, st1 = time.thread_time(), _thread(), _stat_cpus()
    steal_all = st1["cpu"][7] - st0["cpu"][7]
    cpu_key = f"cpu{th1['cpu']}"
    steal_own = st1.get(cpu_key, [0] * 8)[7] - st0.get(cpu_key, [0] * 8)[7]
    steps = [(b2 - a) / 1e6 for a, b2 in zip(r["step_ns"], r["step_ns"][1:], strict=False)]
    return {"block": block, "tps": r["tokens"] / r["s"], "s": r["s"], "energy_j": r["energy_j"],
            "cpu_s": ct1 - ct0, "wait_ms": (th1["wait_ns"] - th0["wait_ns"]) / 1e6,
            "invol": th1["invol"] - th0["invol"], "vol": th1["vol"] - th0["vol"],
            "cpu_start": th0["cpu"], "cpu_end": th1["cpu"], "steal_all_ms": steal_all * 10.0,
            "steal_own_ms": steal_own * 10.0, "step_ms_median": statistics.median(steps) if steps else None,
            "step_ms": [round(x, 2) for x in steps], **_gpu(b)}


def corr(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3 or statistics.pstdev(xs) == 0 or statistics.pstdev(ys) == 0:
        return None
    return statistics.correlation(xs, ys)


def summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    tps = [r["tps"] for r in runs]
    logs = [math.log(x) for x in tps]
    out: dict[str, Any] = {"runs": len(runs), "tps_median": statistics.median(tps), "tps_min": min(tps),
                           "tps_max": max(tps), "sd_log_pct": 100 * statistics.pstdev(logs) if len(logs) > 1 else None}
    for key in ("cpu_s", "wait_ms", "invol", "steal_all_ms", "steal_own_ms", "sm_mhz"):
        vals = [r.get(key) for r in runs]
        if all(v is not None for v in vals):
            out[f"corr_tps_{key}"] = corr(tps, [float(v) for v in vals])  # type: ignore[arg-type]
            out[f"{key}_median"] = statistics.median(vals)  # type: ignore[type-var]
    out["cpu_over_wall"] = statistics.median(r["cpu_s"] / r["s"] for r in runs)
    out["cpus_seen"] = sorted({r["cpu_end"] for r in runs})
    out["migrated_runs"] = sum(r["cpu_start"] != r["cpu_end"] for r in runs)
    return out


def block(b: Bare, args: argparse.Namespace, name: str, n: int, cpus: set[int] | None, gap_s: float,
          runs: list[dict[str, Any]]) -> None:
    """`n` runs with the main thread on `cpus` (None: wherever the scheduler puts it), appended to `runs`."""
    os.sched_setaffinity(0, cpus or ALL)
    try:
        for _ in range(n):
            if gap_s:
                time.sleep(gap_s)
            runs.append(one_run(b, args, name))
    finally:
        os.sched_setaffinity(0, ALL)


ALL: set[int] = set()
GAPS = ("none", "sleep", "spin", "idle-spinner")


def wait_gap(kind: str, seconds: float) -> None:
    """The idle before a run: none, asleep, or busy on this thread (`spin`); `idle-spinner`
    sleeps while an IdleSpinner keeps the CPU awake."""
    if kind == "spin":
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass
    elif kind in ("sleep", "idle-spinner"):
        time.sleep(seconds)


def cpu_probe(seconds: float, iters: int = 20000) -> dict[str, Any]:
    """Pure Python, no GPU: how long each chunk of `iters` loop steps takes over `seconds`."""
    chunks = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        t0 = time.perf_counter_ns()
        x = 0
        for i in range(iters):
            x += i
        chunks.append((time.perf_counter_ns() - t0) / 1e6)
    head = chunks[:max(1, len(chunks) // 10)]
    return {"chunk_ms_median": statistics.median(chunks), "chunk_ms_p90": sorted(chunks)[int(0.9 * len(chunks))],
            "first_tenth_ms_median": statistics.median(head),
            "sd_log_pct": 100 * statistics.pstdev(math.log(c) for c in chunks), "chunks": len(chunks)}


def each_gap(args: argparse.Namespace, pin: int, cycle: int, body: Callable[[int, str], None]) -> None:
    """body(cycle, kind) --per-kind times for every gap kind, each after its gap, the kinds'
    order rotated by `cycle` (so a drift of the machine over time falls on all of them); an
    `idle-spinner` kind's spinner lives through its runs and is gone after them."""
    for kind in GAPS[cycle % len(GAPS):] + GAPS[:cycle % len(GAPS)]:
        spinner = IdleSpinner(pin) if kind == "idle-spinner" else None
        try:
            for _ in range(args.per_kind):
                wait_gap(kind, args.gap_s)
                body(cycle, kind)
        finally:
            if spinner is not None:
                spinner.close()


def cpu_only(args: argparse.Namespace, pin: int, res: dict[str, Any]) -> None:
    """No model, no GPU: the pure-Python probe after each gap kind, rotated as in interleave()."""
    os.sched_setaffinity(0, {pin})
    probes: list[dict[str, Any]] = res.setdefault("cpu_probes", [])

    def probe(cycle: int, kind: str) -> None:
        probes.append({"gap": kind, "cycle": cycle, **cpu_probe(args.probe_s)})

    try:
        for cycle in range(args.cycles):
            each_gap(args, pin, cycle, probe)
    finally:
        os.sched_setaffinity(0, ALL)


def interleave(b: Bare, args: argparse.Namespace, pin: int, res: dict[str, Any], runs: list[dict[str, Any]]) -> None:
    """Every gap kind in every cycle (the kinds' order rotated from cycle to cycle, so a drift
    of the machine over time falls on all of them), the main thread on `pin` throughout;
    then, per cycle, the pure-Python probe after no gap and after a sleep."""
    os.sched_setaffinity(0, {pin})
    probes: list[dict[str, Any]] = res.setdefault("cpu_probes", [])

    def run(cycle: int, kind: str) -> None:
        runs.append({**one_run(b, args, kind), "cycle": cycle})

    try:
        for cycle in range(args.cycles):
            each_gap(args, pin, cycle, run)
            for kind in ("none", "sleep"):
                for _ in range(2):
                    wait_gap(kind, args.gap_s)
                    probes.append({"gap": kind, "cycle": cycle, **cpu_probe(1.0)})
    finally:
        os.sched_setaffinity(0, ALL)


def summarise_probes(res: dict[str, Any], kinds: tuple[str, ...]) -> None:
    for kind in kinds:
        ps = [q for q in res.get("cpu_probes", []) if q["gap"] == kind]
        if ps:
            res.setdefault("cpu_probe", {})[kind] = s = {
                "runs": len(ps), "chunk_ms_median": statistics.median(q["chunk_ms_median"] for q in ps),
                "chunk_ms_min": min(q["chunk_ms_median"] for q in ps), "chunk_ms_max": max(q["chunk_ms_median"] for q in ps),
                "first_tenth_ms_median": statistics.median(q["first_tenth_ms_median"] for q in ps),
                "within_sd_log_pct": statistics.median(q["sd_log_pct"] for q in ps)}
            print(f"  cpu probe after gap {kind:>12}: {s['runs']} probes, chunk ms median {s['chunk_ms_median']:.3f} "
                  f"({s['chunk_ms_min']:.3f}-{s['chunk_ms_max']:.3f}), first tenth {s['first_tenth_ms_median']:.3f}, "
                  f"within-probe sd {s['within_sd_log_pct']:.1f} %", flush=True)


def main(argv: list[str] | None = None) -> int:
    global ALL
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="gemma3-1b")
    p.add_argument("--precision", default="bf16", choices=("bf16", "int8", "nf4"))
    p.add_argument("--checkpoint", default=None, help="a saved checkpoint for int8/nf4 (parity.py builds one)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--prompt-len", type=int, default=41)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--runs", type=int, default=30, help="runs in each unpinned/pinned block")
    p.add_argument("--per-core", type=int, default=2, help="runs pinned to each CPU (0: skip)")
    p.add_argument("--gap-s", type=float, default=2.0, help="idle before each run of the gapped blocks (0: skip them)")
    p.add_argument("--pin", type=int, default=None, help="the CPU of the pinned blocks (default: fastest in percore)")
    p.add_argument("--design", choices=("blocks", "interleave", "cpu-only"), default="blocks",
                   help="blocks: unpinned, per core, pinned, then gapped (one after the other); interleave: the gap "
                        "kinds none/sleep/spin/idle-spinner in rotated order, --cycles times, pinned to --pin; "
                        "cpu-only: the same with the pure-Python probe alone (no model, no GPU)")
    p.add_argument("--probe-s", type=float, default=1.0, help="cpu-only: each probe's length (default 1 s)")
    p.add_argument("--cycles", type=int, default=3, help="interleave: cycles over the gap kinds")
    p.add_argument("--per-kind", type=int, default=4, help="interleave: runs of each gap kind per cycle")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)

    import yaml

    ALL = set(os.sched_getaffinity(0))
    if args.design == "cpu-only":
        res0: dict[str, Any] = {"argv": sys.argv[1:], "cpus": sorted(ALL)}
        pin0 = sorted(ALL)[-1] if args.pin is None else args.pin
        try:
            cpu_only(args, pin0, res0)
        except KeyboardInterrupt:
            res0["interrupted"] = True
        res0["pin"] = pin0
        summarise_probes(res0, GAPS)
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(res0, indent=1))
        return 0
    arch = yaml.safe_load((ROOT / "conf" / "model" / f"{args.model}.yaml").read_text())["architecture"]
    b = Bare()
    print(json.dumps(b.load(arch, args.precision, args.checkpoint, device=args.device)), flush=True)
    for _ in range(3):  # warm: kernels chosen, allocator grown
        b.run(args.batch, args.prompt_len, args.new_tokens)
    res: dict[str, Any] = {"argv": sys.argv[1:], "cpus": sorted(ALL), "env": b.env(), "blocks": {}}
    runs: list[dict[str, Any]] = []
    pin = args.pin
    try:  # SIGINT (a time limit) ends the blocks early; what ran is still summarised
        if args.design == "interleave":
            pin = sorted(ALL)[-1] if pin is None else pin
            interleave(b, args, pin, res, runs)
            raise StopIteration
        block(b, args, "unpinned", args.runs, None, 0.0, runs)
        if args.per_core:
            for c in sorted(ALL):
                block(b, args, f"cpu{c}", args.per_core, {c}, 0.0, runs)
            per = {c: statistics.median(r["tps"] for r in runs if r["block"] == f"cpu{c}") for c in sorted(ALL)}
            res["per_core_tps"] = per
            pin = max(per, key=lambda c: per[c]) if pin is None else pin
            print("per-core median tokens/s: " + ", ".join(f"{c}:{v:.1f}" for c, v in per.items()), flush=True)
        pin = sorted(ALL)[-1] if pin is None else pin
        block(b, args, "pinned", args.runs, {pin}, 0.0, runs)
        if args.gap_s:
            block(b, args, "unpinned_gap", args.runs // 2, None, args.gap_s, runs)
            block(b, args, "pinned_gap", args.runs // 2, {pin}, args.gap_s, runs)
    except StopIteration:
        pass
    except KeyboardInterrupt:
        res["interrupted"] = True
        print("interrupted: summarising the runs so far", flush=True)
    res["pin"] = pin
    names = list(dict.fromkeys(r["block"] for r in runs))
    for n in names:
        if n.startswith("cpu") and n[3:].isdigit():
            continue
        s = summary([r for r in runs if r["block"] == n])
        res["blocks"][n] = s
        print(f"{n:>13}: {s['runs']} runs, tokens/s median {s['tps_median']:.1f} ({s['tps_min']:.1f}-{s['tps_max']:.1f}), "
              f"sd {s['sd_log_pct'] or 0:.1f} %, cpu/wall {s['cpu_over_wall']:.3f}, migrated {s['migrated_runs']}, cpus {s['cpus_seen']}; "
              + ", ".join(f"{k[9:]} r={v:+.2f}" for k, v in s.items() if k.startswith("corr_") and v is not None)
              + "; " + ", ".join(f"{k[:-7]}={v}" for k, v in s.items() if k.endswith("_median") and k != "tps_median"),
              flush=True)
    summarise_probes(res, ("none", "sleep"))
    res["runs"] = runs
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
