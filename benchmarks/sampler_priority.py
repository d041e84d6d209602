"""What Ray's nice 15 does to a sampler's power series on a busy CPU, and what the sampler
actors' taking nice 0 back restores, side by side in one run.

    python benchmarks/sampler_priority.py [--busy N] [--rounds 3] [--round-s 8] [--interval-s 0.1]
                                          [--read-cpu-ms 0] [--json-out F]

Each round runs two sampler processes in turn, in ABBA order, both started at nice 15 as Ray
starts its workers, each polling a constant-power device every --interval-s, a read spending
--read-cpu-ms of CPU (a cheap read, 0, or one with real work, such as an SNMPv3 request's):

- `shipped`: a SamplerHost bound to the device, as the scheduler uses it: `bind` takes nice 0
  back before the poll thread starts, where the process may (root, CAP_SYS_NICE);
- `nice15`: the same sampler started without it, its poll thread at Ray's nice 15.

Meanwhile --busy processes (default: one per CPU) spin at nice 0: a node whose CPUs are busy
with something else (tokenisation, data loading, another user's job). Per arm: the gaps between
consecutive samples (median, 99th percentile, largest), the share longer than 1.5 intervals
(where a window's edge falls in one, its polled energy is unknown), the share of 0.3-s windows,
one starting every 10 ms, whose energy the series cannot give (`energy_between` None: what a
node sampler then splits equally), and how long the process takes to answer a request for
the last window's energy, asked every 50 ms over a pipe (its main thread serves it, as an
actor's serves a node sampler's call). Needs no GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from _common import ROOT

ARMS = ("shipped", "nice15")

CHILD = """
import json, os, sys, threading, time
from energyray.config import SamplerConfig
from energyray.orchestrator.actors import SamplerHost
from energyray.samplers import make_device_sampler
from energyray.samplers.base import PollingSampler

class Flat(PollingSampler):
    name, scope = "flat", "device"
    def __init__(self, device=None, interval_s=0.1):
        super().__init__(interval_s=interval_s)
    def _read_sample(self):  # marks the poll thread's samples (the requests' edge polls add others)
        end = time.thread_time() + read_cpu_s  # a read's own CPU work (an SNMPv3 request's crypto, say)
        while time.thread_time() < end:
            pass
        return {"power_w": 100.0, "energy_j": None, "poll": threading.current_thread() is self._thread}

arm, interval_s, window_s, read_cpu_s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
cfg = SamplerConfig(gpu="__main__:Flat", interval_s=interval_s)
if arm == "shipped":
    host = SamplerHost(cfg)
    host.bind("gpu", "GPU-flat")
    sampler, nice = host.sampler, host.nice
else:
    sampler = make_device_sampler("gpu", "GPU-flat", cfg)
    sampler.start()
    nice = None
# serve requests as an actor's main thread does: the window that just ended, until "stop"
for line in sys.stdin:
    if line.strip() == "stop":
        break
    t1 = time.monotonic_ns()
    print(json.dumps(sampler.energy_between(t1 - int(window_s * 1e9), t1)), flush=True)
poll_nice = os.getpriority(os.PRIO_PROCESS, sampler._thread.native_id)  # Linux: that thread's own
sampler.close()
sampler._series = [s for s in sampler._series if s["poll"]]  # the poll thread's series alone
ts = [s["t_ns"] for s in sampler._series]
gaps = [(b - a) / 1e9 for a, b in zip(ts, ts[1:])]
step, w = int(0.01e9), int(window_s * 1e9)
starts = range(ts[0] + int(2 * interval_s * 1e9), ts[-1] - w, step)
unknown = sum(sampler.energy_between(t0, t0 + w) is None for t0 in starts)
print(json.dumps({"arm": arm, "nice": nice, "poll_nice": poll_nice, "gaps_s": gaps,
                  "windows": len(starts), "windows_unknown": unknown}))
"""


def run_arm(arm: str, interval_s: float, seconds: float, window_s: float, read_cpu_s: float) -> dict[str, Any]:
    """One sampler process for `seconds`, asked for the last window's energy every 50 ms."""
    p = subprocess.Popen(["nice", "-n", "15", sys.executable, "-c", CHILD, arm, str(interval_s), str(window_s),
                          str(read_cpu_s)],
                         cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdin is not None and p.stdout is not None
    rtts: list[float] = []
    try:
        p.stdin.write("ready?\n")  # the first answer comes once it has imported and started polling
        p.stdin.flush()
        p.stdout.readline()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            t0 = time.perf_counter()
            p.stdin.write("q\n")
            p.stdin.flush()
            if not p.stdout.readline():
                break
            rtts.append(time.perf_counter() - t0)
            time.sleep(0.05)
        out, err = p.communicate("stop\n", timeout=120)
    finally:
        if p.poll() is None:  # only the process this benchmark started
            p.kill()
            p.wait()
    if p.returncode != 0:
        raise SystemExit(f"{arm} failed:\n{err[-2000:]}")
    return {**json.loads(out.strip().splitlines()[-1]), "request_s": rtts}


def summarise(runs: list[dict[str, Any]], interval_s: float) -> dict[str, Any]:
    gaps = sorted(g for r in runs for g in r["gaps_s"])
    windows = sum(r["windows"] for r in runs)
    unknown = sum(r["windows_unknown"] for r in runs)
    rtts = sorted(t for r in runs for t in r["request_s"])
    return {"requests": len(rtts), "request_median_s": statistics.median(rtts),
            "request_p99_s": rtts[min(len(rtts) - 1, int(0.99 * len(rtts)))], "request_max_s": rtts[-1],
            "samples": len(gaps) + len(runs), "gap_median_s": statistics.median(gaps),
            "gap_p99_s": gaps[min(len(gaps) - 1, int(0.99 * len(gaps)))], "gap_max_s": gaps[-1],
            "gaps_over_1_5_intervals": sum(g > 1.5 * interval_s for g in gaps) / len(gaps),
            "windows": windows, "windows_unknown_share": unknown / windows if windows else None,
            "poll_nice": sorted({r["poll_nice"] for r in runs})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--busy", type=int, default=os.cpu_count() or 1, help="spinning processes at nice 0")
    ap.add_argument("--rounds", type=int, default=3, help="ABBA rounds (each runs both arms twice)")
    ap.add_argument("--round-s", type=float, default=8.0, help="seconds each sampler process polls")
    ap.add_argument("--interval-s", type=float, default=0.1, help="the sampler's polling period")
    ap.add_argument("--window-s", type=float, default=0.3, help="length of the windows asked for energy")
    ap.add_argument("--read-cpu-ms", type=float, default=0.0,
                    help="CPU time each read spends (0: a read that costs next to nothing)")
    ap.add_argument("--json-out")
    args = ap.parse_args()

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a timeout's SIGTERM still stops the spinners
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    runs: dict[str, list[dict[str, Any]]] = {a: [] for a in ARMS}
    try:
        for _ in range(args.rounds):
            for arm in (*ARMS, *reversed(ARMS)):
                runs[arm].append(run_arm(arm, args.interval_s, args.round_s, args.window_s, args.read_cpu_ms / 1e3))
    finally:
        for p in busy:  # only the processes this benchmark started
            p.kill()
            p.wait()

    may_raise = os.geteuid() == 0
    print(f"{args.busy} spinning processes at nice 0 on {os.cpu_count()} CPUs; samplers started at nice 15, "
          f"polling every {args.interval_s:g} s, {args.read_cpu_ms:g} ms of CPU a read; this user may raise priority: {'yes' if may_raise else 'no'}")
    summary = {arm: summarise(r, args.interval_s) for arm, r in runs.items()}
    print(f"{'arm':<8} {'poll nice':>9} {'samples':>8} {'gap p50':>8} {'gap p99':>8} {'gap max':>8} "
          f"{'gaps>1.5x':>9} {'windows unknown':>16} {'request p50':>12} {'request p99':>12} {'request max':>12}")
    for arm, s in summary.items():
        print(f"{arm:<8} {','.join(map(str, s['poll_nice'])):>9} {s['samples']:>8} {s['gap_median_s']:>7.3f}s "
              f"{s['gap_p99_s']:>7.3f}s {s['gap_max_s']:>7.3f}s {s['gaps_over_1_5_intervals']:>9.1%} "
              f"{s['windows_unknown_share']:>16.1%} {s['request_median_s'] * 1e3:>10.2f}ms "
              f"{s['request_p99_s'] * 1e3:>10.2f}ms {s['request_max_s'] * 1e3:>10.2f}ms")
    a, b = summary["shipped"], summary["nice15"]
    print(f"nice15 / shipped: gap p99 {b['gap_p99_s'] / a['gap_p99_s']:.2f}x, largest gap "
          f"{b['gap_max_s'] / a['gap_max_s']:.2f}x, request p99 {b['request_p99_s'] / a['request_p99_s']:.2f}x")
    result = {"busy": args.busy, "cpus": os.cpu_count(), "interval_s": args.interval_s,
              "read_cpu_ms": args.read_cpu_ms, "rounds": args.rounds,
              "round_s": args.round_s, "window_s": args.window_s, "may_raise_priority": may_raise,
              "summary": summary}
    print("RESULT " + json.dumps(result))
    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump({**result, "runs": runs}, f, indent=1)


if __name__ == "__main__":
    main()
