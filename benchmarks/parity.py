#!/usr/bin/env python
"""Parity: does a sweep measure a workload as a bare process would? Tokens/s and J/token of the
same model, precision and batch run (A) through plain transformers in a bare process and (B)
through `python -m energyray sweep=...`, interleaved trial by trial on the same GPU.

Needs one NVIDIA GPU. From the repository root:

    python benchmarks/parity.py --config gemma3-1b:nf4:1 --config mistral-7b:nf4:1 --pairs 20 \
        [--aa 20] [--variant default --variant 'nice0:env:RAY_worker_niceness=0'] [--diag] \
        [--budget-s 400] [--json-out PATH]

Design. Per configuration (model:precision:batch, random weights, greedy, exactly
--new-tokens tokens of the long-form prompt): one bare process (benchmarks/_parity_bare.py,
which imports nothing of energyray: the NVML counter read at the edges of `generate`) loads
the model and runs one 16-token warmup, as the sweep's worker does before its first trial of
a shape. Then one sweep per --variant runs the same configuration, with as many trials as
--pairs needs and `measurement.cooldown_s` long enough for one bare run and two idle gaps.
This script watches the sweep's worker process: each time its main thread sleeps in that
cooldown (between trials, no window open), the bare process waits --bare-gap-s and runs one
generate; it must end before the cooldown does (else it is dropped). The gap is by default
as long as the idle the trial then gets before its own start, on average: neither side alone
runs after an idle GPU. Slot k is bare run k and the sweep's trial k, seconds apart on the
same GPU: a drift of the machine (clocks, heat, a noisy neighbour) falls on both.

Order (--order abba, the default): pairs alternate which side runs first, ab, ba, ba, ab, ...:
an "ab" pair is (bare run k, trial k), a "ba" pair (trial k, bare run k+1, in the next
cooldown); about 5 slots give 4 pairs. Whatever running second does to a run (the GPU's or
CPU's state after the other side, a drift within the pair) multiplies one order's ratio and
divides the other's: each order's ratio is reported, their geometric mean is the estimate
(the effect cancels), and half their log distance is "second/first", the effect itself.
--order fixed: every pair (bare run k, trial k), the design before (then --bare-gap-s 0 gives
its schedule: the bare run at once after a trial, the trial after the idle rest). A variant's
own gap (`--variant g1:gap:1.0 --variant even:gap:auto`) gives that sweep its own schedule, so
one run can tell whether the bare run's place in the cooldown moves the ratio.
One sweep per variant rather than one per pair: a sweep's start (Ray, the model's load, the
idle baseline) costs tens of seconds, a pair a few.

The bare runs happen while the sweep's Ray and its sampler actor are alive (the sampler keeps
polling NVML at 10 Hz in its own process); --solo runs of the bare process before the first
sweep and after the last, with no Ray on the machine, measure what that costs the bare side
(reported as "bare in sweep / bare solo"; not paired).

--aa N: the control. Before the sweeps, a second bare process, identical to the first, takes
the sweep's place for N pairs on the same schedule and order (slot k: the gap, run of the
first, the rest of a cooldown idle, run of the second; paired as the trials are): bare' /
bare, an A/A ratio whose interval is what the machine alone gives. An A/B interval as wide as
it is the machine's noise, not energyray's; an A/A "second/first" away from 1 is an order
effect of the schedule itself.

Both bare processes record each step's time (energyray's backend does too); "step noise"
is the spread of the decode's speed timed over windows of 1, 2, 4 ... steps inside runs and
over whole runs: a spread falling as 1/sqrt(steps) is fast noise (longer runs cut it),
one that stays is slow (longer runs do not).

Per pair: ratio = sweep / bare of tokens/s (the row's tokens_per_s: generate's duration) and of
J/token (the row's j_per_token: the trial window's counter energy), whichever ran first. Each
ratio's estimate is the geometric mean of the two orders' geometric means over pairs; its
95 % CI the wider of a t interval on the log ratios (the spread pooled within orders) and a
bootstrap resampling pairs within each order. Goal: for every configuration, CI inside 0.97-1.03 and point inside
0.98-1.02 (GOAL PASS / MISS / NOT RESOLVED, as overhead.py).

--diag: a thread census of the worker process and the bare process (from /proc, by this
script: nothing runs inside them) over each sweep trial and each bare run: the main thread's
CPU seconds and involuntary context switches, each other thread's CPU, the machine's busy and
stolen CPU, and the processes that used the most CPU while trials ran. Before the sweeps it
also runs --solo runs of the bare code in other settings (`--bare-flavours`): `nice15` (nice 15
and OMP_NUM_THREADS=1, the settings a Ray worker process gets), `ray` (the bare code inside a
plain Ray actor, no energyray), round robin with the plain bare process. `--aa N --aa-flavour F`
puts flavour F in the A/A's second place instead: an interleaved, paired A/B of what that
setting alone does to the bare code. F: nice15; ray; energyray (a plain process that first
imports a sweep worker's modules, with their warnings filters and logger settings);
ray-energyray (the same in a plain Ray actor); backend (energyray's TransformersBackend loads
and generates, in a plain process, as a trial calls it); ray-backend (the same in a Ray actor);
ray-env (a plain process with the environment variables Ray gives a one-GPU worker:
OMP_NUM_THREADS=1, CUDA_VISIBLE_DEVICES); ray-driver (a plain process that starts a local Ray
with ray.init, so its own core worker's threads live beside the decode, and runs the code in
its main thread, not as an actor's task); ray-child (a plain Ray actor that starts the bare code
in a plain child process, with the environment Ray gave the actor, and relays to it).
Repeated (`--aa-flavour plain --aa-flavour ray --aa-flavour ray-energyray`), the blocks run one
after another, each with a fresh second process, before the sweeps.

--pin-cpu N: the main thread of each bare process and of the process that runs the sweep's
trials (the worker's trial process; the worker itself with ray.trial_process=actor) run on CPU N (and
the threads they start after: CUDA's); this script and all it starts (the sweep's driver, Ray's
daemons, the sampler) keep off it, so nothing but the measured decode loops (and, with
--keep-awake, a SCHED_IDLE spinner) runs there.

--budget-s: a whole-run time limit. A configuration starts only with --config-min-s left, each
sweep is stopped (SIGINT, keeping its trials) in time to end inside it, and the JSON is
rewritten after each block, so a run stopped by an outer limit keeps what it did.

Exits 0 whether or not the goals are met (1 if a configuration crashed, 2 with no GPU).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import _common as C

BARE = Path(__file__).resolve().parent / "_parity_bare.py"
SLEEP_SYSCALLS = {35, 230}  # x86-64 nanosleep, clock_nanosleep (what time.sleep() waits in)
GOAL_CI = (0.97, 1.03)
GOAL_POINT = (0.98, 1.02)
# a pair's order: the reference (the bare run; in the A/A the first process) ran first or second
ORDER_NAMES = {"ab": "ref first", "ba": "ref second"}
TICK = os.sysconf("SC_CLK_TCK")


# -- /proc ---------------------------------------------------------------------------------------------
def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def descendants(root: int) -> list[int]:
    """Every live process below `root` (by parent pid)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read(f"/proc/{name}/stat")
            if stat:
                children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    out, todo = [], [root]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def cmdline(pid: int) -> str:
    raw = _read(f"/proc/{pid}/cmdline")
    return "" if raw is None else raw.replace("\0", " ").strip()


def find_worker(root: int, in_actor: bool) -> tuple[int, int] | None:
    """The sweep's worker actor (its process title is `ray::WorkerHost[.method]`) and the process
    that runs its trials: the actor's plain child (`-m energyray.trial.process`), or with
    `in_actor` (ray.trial_process=actor) the actor itself. None until both are there."""
    actor = next((pid for pid in descendants(root) if cmdline(pid).startswith("ray::WorkerHost")), None)
    if actor is None or in_actor:
        return None if actor is None else (actor, actor)
    child = next((pid for pid in descendants(actor) if "energyray.trial.process" in cmdline(pid)), None)
    return None if child is None else (actor, child)


def pin_thread(tid: int, cpu: int) -> list[int] | None:
    """The sweep's worker's main thread (its tid is the pid) on `cpu`, as the bare side's is:
    done when the worker appears, before its model loads. Returns its CPUs read back."""
    try:
        os.sched_setaffinity(tid, {cpu})
        return sorted(os.sched_getaffinity(tid))
    except OSError as e:  # gone already: the next worker found is pinned instead
        print(f"    could not pin the worker {tid} to CPU {cpu}: {e}", flush=True)
        return None


# how often the sweep's worker is looked at: a cooldown is seen at most this late
WATCH_S = 0.01


def in_cooldown(pid: int, actor: int) -> bool:
    """The worker runs a trial (its actor's title is `ray::WorkerHost.run`) and the main thread of
    the process that runs it (`pid`) sleeps: the cooldown, the only sleep inside a trial call (with
    measurement.cooldown_to_idle_c unset). The sleep is read first: while the trial decodes, only
    its syscall is read (the title, in cmdline, is read from the actor's memory)."""
    sc = _read(f"/proc/{pid}/syscall")
    if sc is None:  # not readable: fall back on the kernel's wait channel
        asleep = (_read(f"/proc/{pid}/wchan") or "").endswith("nanosleep")
    else:
        first = sc.split()[0] if sc.split() else ""
        asleep = first.isdigit() and int(first) in SLEEP_SYSCALLS
    return asleep and cmdline(actor).startswith("ray::WorkerHost.run")


def threads(pid: int) -> dict[int, tuple[str, float, int, int, int]]:
    """tid -> (name, CPU s, nice, voluntary, involuntary context switches)."""
    out: dict[int, tuple[str, float, int, int, int]] = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for t in tids:
        stat, status = _read(f"/proc/{pid}/task/{t}/stat"), _read(f"/proc/{pid}/task/{t}/status")
        if not stat or not status:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        f = stat.rsplit(")", 1)[1].split()
        ctx = {k: int(v) for k, v in (ln.split(":") for ln in status.splitlines() if "ctxt_switches" in ln)}
        out[int(t)] = (name, (int(f[11]) + int(f[12])) / TICK, int(f[16]),
                       ctx.get("voluntary_ctxt_switches", 0), ctx.get("nonvoluntary_ctxt_switches", 0))
    return out


def processes() -> dict[int, tuple[str, float]]:
    """pid -> (name, CPU s) of every process."""
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            stat = _read(f"/proc/{name}/stat")
            if stat:
                f = stat.rsplit(")", 1)[1].split()
                out[int(name)] = (cmdline(int(name))[:40] or stat[stat.index("(") + 1:stat.rindex(")")],
                                  (int(f[11]) + int(f[12])) / TICK)
    return out


def machine() -> list[int]:
    line = (_read("/proc/stat") or "cpu 0").splitlines()[0]
    return [int(x) for x in line.split()[1:]]


# the CPU whose interrupts snap() counts: --pin-cpu's, where the measured threads run
IRQ_CPU: int | None = None


def interrupts(cpu: int | None) -> dict[str, int]:
    """Interrupts by kind (/proc/interrupts: LOC timer, RES rescheduling, CAL function-call and
    TLB shoot-down IPIs, devices') taken on `cpu`, or on all CPUs with None."""
    text = _read("/proc/interrupts") or ""
    lines = text.splitlines()
    if not lines:
        return {}
    ncpu = len(lines[0].split())
    out = {}
    for ln in lines[1:]:
        name, _, rest = ln.partition(":")
        counts = [int(x) for x in rest.split()[:ncpu] if x.isdigit()]
        if counts:
            out[name.strip()] = counts[cpu] if cpu is not None and cpu < len(counts) else sum(counts)
    return out


def faults(pid: int) -> tuple[int, int]:
    """The process's minor and major page faults so far (all its threads)."""
    stat = _read(f"/proc/{pid}/stat")
    if not stat:
        return 0, 0
    f = stat.rsplit(")", 1)[1].split()
    return int(f[7]), int(f[9])


@dataclass
class Snap:
    t: float
    threads: dict[int, tuple[str, float, int, int, int]]
    procs: dict[int, tuple[str, float]]
    cpu: list[int]
    irq: dict[str, int]
    faults: tuple[int, int]


def snap(pid: int | None, diag: bool) -> Snap | None:
    if not diag or pid is None:
        return None
    return Snap(time.monotonic(), threads(pid), processes(), machine(), interrupts(IRQ_CPU), faults(pid))


def census(a: Snap | None, b: Snap | None, main: int, idle_until: float | None = None) -> dict[str, Any] | None:
    """What the process's threads (and the machine) did between two snapshots; `idle_until`:
    the process slept until then (its cooldown), so its active time starts there."""
    if a is None or b is None:
        return None
    wall = b.t - max(a.t, idle_until or a.t)
    per = {}
    for tid, (name, cpu, nice, v, nv) in b.threads.items():
        _, cpu0, _, v0, nv0 = a.threads.get(tid, (name, 0.0, nice, 0, 0))
        per[tid] = {"name": name, "cpu_s": cpu - cpu0, "nice": nice, "vcs": v - v0, "nvcs": nv - nv0}
    m = per.pop(main, None) or {}
    d = [y - x for x, y in zip(a.cpu, b.cpu, strict=False)]
    total = sum(d[:8]) or 1
    used = sorted(((n, c - a.procs.get(p, (n, c))[1]) for p, (n, c) in b.procs.items()), key=lambda x: -x[1])[:6]
    return {"wall_s": wall, "span_s": b.t - a.t, "main_cpu_s": m.get("cpu_s"), "main_nice": m.get("nice"), "main_vcs": m.get("vcs"),
            "main_nvcs": m.get("nvcs"), "others_cpu_s": sum(x["cpu_s"] for x in per.values()),
            "others": sorted(([x["name"], round(x["cpu_s"], 3), x["vcs"]] for x in per.values() if x["cpu_s"] or x["vcs"]),
                             key=lambda r: (-r[1], -r[2]))[:8],
            "machine_busy_pct": 100 * (total - d[3] - d[4]) / total, "machine_steal_pct": 100 * d[7] / total,
            "top_processes": [[n, round(c, 3)] for n, c in used if c > 0],
            "irq": {k: v - a.irq.get(k, 0) for k, v in b.irq.items() if v - a.irq.get(k, 0)},
            "minflt": b.faults[0] - a.faults[0], "majflt": b.faults[1] - a.faults[1]}


# -- the bare process ---------------------------------------------------------------------------------
FLAVOURS = ("plain", "nice15", "ray", "energyray", "ray-energyray", "backend", "ray-backend", "ray-env", "ray-driver",
            "ray-child")
# the flavours that start a local Ray, and how _parity_bare.py is told to
RAY_FLAGS = {"ray": "--ray", "ray-energyray": "--ray", "ray-backend": "--ray", "ray-driver": "--ray-driver",
             "ray-child": "--ray-child"}


class BareProc:
    """_parity_bare.py in a subprocess, one JSON line per call."""

    def __init__(self, flavour: str = "plain") -> None:
        env = dict(os.environ)
        cmd = [sys.executable, str(BARE)]
        if flavour == "nice15":
            cmd = ["nice", "-n", "15", *cmd]
            env["OMP_NUM_THREADS"] = "1"
        elif flavour not in FLAVOURS:
            raise ValueError(f"unknown bare flavour {flavour!r} ({', '.join(FLAVOURS)})")
        if flavour in RAY_FLAGS:
            cmd.append(RAY_FLAGS[flavour])
            env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
            env.setdefault("RAY_worker_niceness", "0")  # as a sweep's local Ray starts its workers
        if flavour == "ray-env":  # what Ray sets in a one-GPU worker's environment, and nothing else of Ray
            env["OMP_NUM_THREADS"] = "1"
            env["CUDA_VISIBLE_DEVICES"] = env.get("CUDA_VISIBLE_DEVICES") or "0"
        if flavour.removeprefix("ray-") in ("energyray", "backend"):  # a sweep worker's modules first
            env["PARITY_ENERGYRAY_ROOT"] = str(C.ROOT)
        if flavour.endswith("backend"):  # energyray's TransformersBackend loads and generates
            env["PARITY_BACKEND"] = "1"
        # no energyray on its path: the bare side must not import it, even by accident
        env["PYTHONPATH"] = os.pathsep.join(p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                            if p and Path(p).resolve() != C.ROOT)
        self.flavour = flavour
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
                                     cwd=tempfile.gettempdir())
        self.pid: int | None = None

    def call(self, cmd: str, **kw: Any) -> dict[str, Any]:
        self.send(cmd, **kw)
        return self.recv()

    def send(self, cmd: str, **kw: Any) -> None:
        """Ask without waiting (processes load their models at once)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"bare process ({self.flavour}) ended (exit {self.proc.wait()})")
        out = json.loads(line)
        if not out.pop("ok"):
            raise RuntimeError(f"bare process ({self.flavour}): {out['error']}")
        return dict(out)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"cmd": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()  # this child only, by its handle
                self.proc.wait()


# -- statistics -------------------------------------------------------------------------------------------
def t975(df: int) -> float:
    """Student's t 97.5 % quantile (table for small df, normal beyond)."""
    table = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
             10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042, 40: 2.021, 60: 2.000}
    if df in table:
        return table[df]
    below = [k for k in table if k < df]
    return table[max(below)] if df < 60 else 1.96 + 2.4 / df


def ratio_ci(ratios: list[float], boot: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Geometric mean of per-pair ratios and its 95 % CI: the wider of a t interval on the logs
    and a percentile bootstrap of the pairs."""
    logs = [math.log(r) for r in ratios if r and r > 0 and math.isfinite(r)]
    n = len(logs)
    if n < 2:
        return {"n": n, "ratio": math.exp(logs[0]) if logs else None, "ci": None}
    mean, sd = statistics.fmean(logs), statistics.stdev(logs)
    half = t975(n - 1) * sd / math.sqrt(n)
    ci_t = (math.exp(mean - half), math.exp(mean + half))
    rng = random.Random(seed)
    means = sorted(statistics.fmean(rng.choices(logs, k=n)) for _ in range(boot)) if boot else []
    ci_b = (math.exp(means[int(0.025 * boot)]), math.exp(means[int(0.975 * boot) - 1])) if boot else ci_t
    ci = (min(ci_t[0], ci_b[0]), max(ci_t[1], ci_b[1]))
    return {"n": n, "ratio": math.exp(mean), "ci": ci, "ci_t": ci_t, "ci_boot": ci_b, "sd_log_pct": 100 * sd}


def verdict(r: dict[str, Any]) -> str:
    if r.get("ci") is None:
        return "NOT RESOLVED"
    lo, hi = r["ci"]
    if GOAL_CI[0] <= lo and hi <= GOAL_CI[1] and GOAL_POINT[0] <= r["ratio"] <= GOAL_POINT[1]:
        return "PASS"
    if hi < GOAL_POINT[0] or lo > GOAL_POINT[1]:
        return "MISS"
    return "NOT RESOLVED"


def order_at(i: int, order: str) -> str:
    """The order of the i-th pair: "ab" (the reference, bare or the first process, runs first)
    or "ba" (the other side first). "abba": ab, ba, ba, ab, ab, ba, ...; "fixed": always ab."""
    if order == "fixed":
        return "ab"
    if order != "abba":
        raise ValueError(f"unknown order {order!r} (abba, fixed)")
    return "ab" if i % 4 in (0, 3) else "ba"


def abba_pairs(ref_ok: list[bool], side_ok: list[bool], order: str) -> list[tuple[str, int, int]]:
    """Disjoint pairs over slots 0..n-1, slot k being a reference run then the side's run (the
    bare run in trial k's cooldown, then trial k): an "ab" pair at k is (ref k, side k), a "ba"
    pair (side k, ref k+1). Returns (order, ref slot, side slot) in time order. A pair that
    cannot be formed (a run missing or dropped) is sought at the next slots in the same order,
    so the orders stay balanced; "abba" uses about 5 slots for 4 pairs."""
    n = len(ref_ok)
    used_ref: set[int] = set()
    used_side: set[int] = set()
    out: list[tuple[str, int, int]] = []
    k = 0
    while k < n:
        o = order_at(len(out), order)
        for j in range(k, n):
            r = j if o == "ab" else j + 1
            if r < n and ref_ok[r] and side_ok[j] and r not in used_ref and j not in used_side:
                out.append((o, r, j))
                used_ref.add(r)
                used_side.add(j)
                k = j + 1
                break
        else:
            break
    return out


def slots_for(pairs: int, order: str) -> int:
    """How many slots (sweep trials) give `pairs` pairs when every run is kept."""
    n = pairs
    while len(abba_pairs([True] * n, [True] * n, order)) < pairs:
        n += 1
    return n


def balanced_ratio(pairs: list[dict[str, Any]], key: str, boot: int = 4000, seed: int = 0) -> dict[str, Any]:
    """ratio_ci over pairs of both orders, weighting the orders equally: the geometric mean of the
    two orders' geometric means (an effect of running first or second cancels, however many
    pairs each order has), a t interval on the pooled within-order spread and a bootstrap
    resampling within each order, the wider kept. Also each order's own ratio_ci, and the
    order effect: how much running second (after the other side) multiplies a ratio."""
    logs: dict[str, list[float]] = {"ab": [], "ba": []}
    for p in pairs:
        r = p.get(key)
        if r and r > 0 and math.isfinite(r):
            logs[p.get("order", "ab")].append(math.log(r))
    by = {o: ratio_ci([math.exp(x) for x in v], boot, seed) for o, v in logs.items() if v}
    if len(by) < 2:  # one order only: nothing to balance
        out = ratio_ci([math.exp(x) for v in logs.values() for x in v], boot, seed)
        return {**out, "balanced": False, "by_order": by, "order_effect": None, "order_effect_ci": None}
    a, b = logs["ab"], logs["ba"]
    n = len(a) + len(b)
    ma, mb = statistics.fmean(a), statistics.fmean(b)
    out = {"n": n, "ratio": math.exp((ma + mb) / 2), "ci": None, "balanced": True, "by_order": by,
           "order_effect": math.exp((ma - mb) / 2), "order_effect_ci": None}
    if n < 3:
        return out
    df = n - 2
    sp = math.sqrt((sum((x - ma) ** 2 for x in a) + sum((x - mb) ** 2 for x in b)) / df)
    half = t975(df) * sp / 2 * math.sqrt(1 / len(a) + 1 / len(b))
    mid, eff = (ma + mb) / 2, (ma - mb) / 2
    ci_t = (math.exp(mid - half), math.exp(mid + half))
    ci_b = ci_t
    if boot:
        rng = random.Random(seed)
        means = sorted((statistics.fmean(rng.choices(a, k=len(a))) + statistics.fmean(rng.choices(b, k=len(b)))) / 2
                       for _ in range(boot))
        ci_b = (math.exp(means[int(0.025 * boot)]), math.exp(means[int(0.975 * boot) - 1]))
    return {**out, "ci": (min(ci_t[0], ci_b[0]), max(ci_t[1], ci_b[1])), "ci_t": ci_t, "ci_boot": ci_b,
            "sd_log_pct": 100 * sp, "order_effect_ci": (math.exp(eff - half), math.exp(eff + half))}


def ci_width_pct(r: dict[str, Any]) -> float | None:
    """A ratio interval's width, hi/lo - 1 in %: the same measure for A/B and A/A."""
    ci = r.get("ci")
    return None if not ci else 100 * (ci[1] / ci[0] - 1)


def aa_pair(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One A/A pair: the second bare process's run over the first's (as pair() does sweep/bare)."""
    tps1, tps2 = first["tokens"] / first["s"], second["tokens"] / second["s"]
    jpt1 = None if first["energy_j"] is None else first["energy_j"] / first["tokens"]
    jpt2 = None if second["energy_j"] is None else second["energy_j"] / second["tokens"]
    return {"second_tps": tps2, "bare_tps": tps1, "second_jpt": jpt2, "bare_jpt": jpt1, "tps_ratio": tps2 / tps1,
            "jpt_ratio": jpt2 / jpt1 if jpt1 and jpt2 else None, "second_s": second["s"], "bare_s": first["s"]}


def aa_pairs(firsts: list[dict[str, Any]], seconds: list[dict[str, Any]], order: str) -> list[dict[str, Any]]:
    """The A/A's pairs, as pair() forms the sweep's: slot k is the first process's run k (kept
    where `clear`: it ended inside its cooldown) then the second's run k; "ab" pairs (first k,
    second k), "ba" (second k, first k+1). Each ratio is second / first, whichever ran first."""
    return [{"order": o, "slot": k, **aa_pair(firsts[r], seconds[k])}
            for o, r, k in abba_pairs([bool(f.get("clear", True)) for f in firsts], [True] * len(seconds), order)]


def step_noise(step_lists: list[list[int]], sizes: tuple[int, ...] = (1, 2, 4, 8, 16, 32)) -> dict[str, Any]:
    """How fast the decode's speed wanders. Each list: one run's step times (the first is after
    the prefill and is left out). "within": for windows of w steps inside runs (non-overlapping),
    the spread (sd, %) of log(the window's mean step / its run's mean step), beside what noise
    independent from step to step gives (the 1-step spread / sqrt(w)); "between": the spread of
    log(a run's mean step) over runs. A between-run spread far above within-run noise: the speed
    changes from run to run, not inside one, and a longer run cuts little of it."""
    steps = [d for d in ([b - a for a, b in zip(ns, ns[1:], strict=False)] for ns in step_lists)
             if len(d) >= 2 and all(x > 0 for x in d)]
    out: dict[str, Any] = {"runs": len(steps), "within": {}, "between_pct": None}
    if len(steps) >= 3:
        out["between_pct"] = 100 * statistics.stdev(math.log(statistics.fmean(d)) for d in steps)
    sd1 = None
    for w in sizes:
        devs = [math.log(statistics.fmean(d[i:i + w]) / statistics.fmean(d))
                for d in steps for i in range(0, len(d) - w + 1, w) if len(d) >= 2 * w]
        if len(devs) < 3:
            continue
        sd = 100 * statistics.pstdev(devs)
        sd1 = sd if w == 1 else sd1
        out["within"][str(w)] = {"windows": len(devs), "sd_log_pct": sd,
                                 "independent_pct": None if sd1 is None else sd1 / math.sqrt(w)}
    if steps:
        out["steps_per_run"] = statistics.fmean(len(d) for d in steps)
    return out


# -- one configuration ---------------------------------------------------------------------------------------
@dataclass
class Config:
    model: str
    precision: str
    batch: int

    @property
    def name(self) -> str:
        return f"{self.model}:{self.precision}:{self.batch}"


@dataclass
class Variant:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)
    gap: str | None = None  # the bare run's gap for this sweep: seconds, "auto", or None (--bare-gap-s)

    def gap_s(self, default: float | None) -> float | None:
        """The gap schedule() takes: None gives each side the same idle before it."""
        if self.gap is None:
            return default
        return None if self.gap == "auto" else float(self.gap)


def parse_variant(text: str) -> Variant:
    """name[:env:K=V,K=V][:arg:o1,o2][:gap:SECONDS|auto]"""
    parts = text.split(":")
    v = Variant(parts[0])
    for kind, value in zip(parts[1::2], parts[2::2], strict=False):
        if kind == "env":
            v.env.update(kv.split("=", 1) for kv in value.split(",") if kv)
        elif kind == "arg":
            v.args += [a for a in value.split(",") if a]
        elif kind == "gap":
            if value != "auto":
                try:
                    float(value)
                except ValueError:
                    raise ValueError(f"--variant {text!r}: gap takes seconds or auto, not {value!r}") from None
            v.gap = value
        else:
            raise ValueError(f"--variant {text!r}: {kind!r} is none of env, arg, gap")
    return v


def model_cfg(name: str) -> dict[str, Any]:
    import yaml

    return dict(yaml.safe_load((C.ROOT / "conf" / "model" / f"{name}.yaml").read_text()))


def prompt_len(batch: int, task: str) -> int:
    from energyray.backends.base import estimate_tokens
    from energyray.tasks import prompts

    return max(estimate_tokens(p.text) for p in prompts(task, "default", batch))


def checkpoint(model: str, cache: Path, seed: int) -> str:
    """energyray's own random-weights checkpoint (built once, in a child process so that this
    one never holds a CUDA context): what both sides' bitsandbytes quantises."""
    code = ("import sys; from types import SimpleNamespace as N; from energyray.backends.transformers import "
            "dummy_checkpoint; import yaml; m = yaml.safe_load(open(sys.argv[1])); "
            "print(dummy_checkpoint(N(name=m['name'], architecture=m['architecture']), 'bf16', sys.argv[2], "
            "int(sys.argv[3]), 'cuda'))")
    out = subprocess.run([sys.executable, "-c", code, str(C.ROOT / "conf" / "model" / f"{model}.yaml"), str(cache),
                          str(seed)], capture_output=True, text=True, cwd=C.ROOT, check=True)
    return out.stdout.strip().splitlines()[-1]


def schedule(est: float, cooldown_s: float | None = None, gap_s: float | None = None) -> tuple[float, float]:
    """The cooldown each bare run lies in, and how far into it the run starts. A run can take
    ~1.8x the median on a noisy VM (one that outlasts its cooldown is dropped): it gets 1.8 x
    `est` + 0.5 s. By default (`gap_s` None) the run starts as long after the previous trial as
    the next trial starts after it, on average, so neither side alone follows an idle GPU.

    A `cooldown_s` asked for is raised to make that room: in a shorter one, the runs that outlast
    it are the slow ones, and dropping them biases the bare side fast (sweep / bare low; a slow
    H100 VM read 0.88 so, with 17 of 38 bare runs dropped)."""
    room = max(1.0, 1.8 * est + 0.5)
    if gap_s is None:
        if cooldown_s:
            cooldown = max(cooldown_s, 2 * room - est)
            return cooldown, max(0.0, (cooldown - est) / 2)
        return 2 * room - est, room - est
    return max(cooldown_s or 0.0, gap_s + room), gap_s


def bare_runs(b: BareProc, cfg: Config, n: int, plen: int, args: argparse.Namespace, label: str) -> list[dict[str, Any]]:
    out = []
    for _ in range(n):
        r = b.call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.new_tokens)
        out.append({**r, "label": label, "flavour": b.flavour})
    return out


def run_sweep(cfg: Config, v: Variant, bare: BareProc, plen: int, cooldown_s: float, gap_s: float, trials: int,
              work: Path, args: argparse.Namespace, timeout_s: float, quiet_s: float = 0.0) -> dict[str, Any]:
    """One sweep of `trials` trials, with a bare run in each trial's cooldown, `gap_s` into it.
    Once a trial starts, the worker is not looked at for `quiet_s` (most of a run): this script
    is as still during a trial as it is during a bare run, which it waits on."""
    tag = f"{cfg.name.replace(':', '-')}-{v.name}"  # each configuration its own store and log
    store = work / f"store-{tag}"
    cmd = [sys.executable, "-m", "energyray", "sweep=quantization", f"model={cfg.model}", "weights=dummy",
           f"sweep.grid.precision=[{cfg.precision}]", f"sweep.grid.batch_size=[{cfg.batch}]",
           f"sweep.grid.task=[{args.task}]", f"sweep.repeats={trials}",
           f"generation.max_new_tokens={args.new_tokens}", f"measurement.cooldown_s={cooldown_s:.2f}",
           f"measurement.idle_settle_max_s={args.idle_settle_max_s}", f"seed={args.seed}",
           # asleep, so that in_cooldown() sees the cooldown; --keep-awake keeps the CPU busy for both sides
           "measurement.cooldown_spin=false",
           f"store.path={store}", f"cache_dir={args.cache_dir}", f"hydra.run.dir={work / ('hydra-' + tag)}",
           f"device={args.device}", *v.args]
    if args.device == "cpu":  # the smoke test: a CPU worker's own length setting, no energy
        cmd += [f"generation.cpu_max_new_tokens={args.new_tokens}", "sampler.cpu=none"]
    env = {**os.environ, **v.env}
    t_start = time.monotonic()
    log = open(work / f"sweep-{tag}.log", "w")  # noqa: SIM115  (closed below, after the child)
    proc = subprocess.Popen(cmd, cwd=C.ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    runs: list[dict[str, Any]] = []
    worker: int | None = None  # the process that runs the trials
    actor = 0
    in_actor = "ray.trial_process=actor" in cmd
    pinned: list[int] | None = None
    served = False
    cooldown_end: float | None = None
    last_after: Snap | None = None
    trials_census: list[dict[str, Any]] = []
    try:
        while proc.poll() is None:
            if time.monotonic() - t_start > timeout_s:
                proc.send_signal(2)  # SIGINT to the sweep's driver (it stops, keeping what it stored)
                proc.wait(timeout=120)
                break
            if worker is None or not os.path.exists(f"/proc/{worker}"):
                found = find_worker(proc.pid, in_actor)
                actor, worker = found if found is not None else (0, None)
                if worker is not None and args.pin_cpu is not None:
                    pinned = pin_thread(worker, args.pin_cpu)
            if worker is None:
                time.sleep(0.05)
                continue
            sleeping = in_cooldown(worker, actor)
            if sleeping and not served:
                served = True
                before = snap(worker, args.diag)
                if last_after is not None and before is not None:
                    c = census(last_after, before, worker, idle_until=cooldown_end)
                    if c:
                        trials_census.append(c)
                cooldown_end = time.monotonic() + cooldown_s
                time.sleep(gap_s)  # idle after the trial, as the trial has idle before it
                bsnap0 = snap(bare.pid, args.diag)
                wall0 = time.time()
                r = bare.call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.new_tokens)
                ok = in_cooldown(worker, actor)  # still asleep: the bare run did not overlap the trial
                bsnap1 = snap(bare.pid, args.diag)
                last_after = snap(worker, args.diag)
                runs.append({**r, "label": "in_sweep", "flavour": "plain", "wall_start": wall0, "clear": ok,
                             "census": census(bsnap0, bsnap1, bare.pid or 0)})
            elif not sleeping:
                if served:  # the trial has just started
                    time.sleep(max(0.0, min(quiet_s, timeout_s - (time.monotonic() - t_start))))
                served = False
            time.sleep(WATCH_S)
    finally:
        if proc.poll() is None:
            proc.kill()  # our own child only
            proc.wait()
        log.close()
    rows = read_trials(store)
    return {"variant": v.name, "cmd": cmd, "env": v.env, "exit": proc.returncode, "runs": runs, "rows": rows,
            "worker_cpus": pinned,
            "wall_s": time.monotonic() - t_start, "trial_census": trials_census,
            "log_tail": (work / f"sweep-{tag}.log").read_text()[-3000:]}


def read_trials(store: Path) -> list[dict[str, Any]]:
    from energyray.store import Store

    if not store.exists():
        return []
    df = Store(store).read("trials")
    if df.empty:
        return []
    keep = ["trial_id", "status", "started_at", "tokens_per_s", "j_per_token", "energy_j", "energy_source",
            "duration_s", "window_s", "output_tokens", "input_tokens", "warmup_runs", "cooldown_s",
            "sampler_cpu_s", "sampler_device_calls_per_s", "ttft_s", "tpot_s", "error"]
    df = df.sort_values("started_at")
    return [{k: (None if k not in df.columns or _isnan(r.get(k)) else r.get(k)) for k in keep}
            for r in df.to_dict("records")]


def _isnan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def pair(rows: list[dict[str, Any]], runs: list[dict[str, Any]], cooldown_s: float,
         order: str = "abba") -> list[dict[str, Any]]:
    """Slot k: the bare run in trial k's cooldown (the trial started, by its row, at most the
    cooldown before the run; a run that overlapped the trial is dropped) and trial k. Pairs over
    the slots by abba_pairs: "ab" (bare run k, trial k), "ba" (trial k, bare run k+1)."""
    from datetime import datetime

    starts = [datetime.fromisoformat(str(r["started_at"]).replace("Z", "+00:00")).timestamp() for r in rows]
    bare: list[dict[str, Any] | None] = [None] * len(rows)
    for run in runs:
        # started_at is stamped before the cooldown: the trial is the last one begun before the run
        k = [i for i, s in enumerate(starts) if s - 0.05 <= run["wall_start"] <= s + cooldown_s]
        if k and run["clear"]:
            bare[max(k, key=lambda i: starts[i])] = run
    trial_ok = [r["status"] == "ok" and bool(r["tokens_per_s"]) for r in rows]
    out = []
    for o, b, t in abba_pairs([r is not None for r in bare], trial_ok, order):
        run, row = bare[b], rows[t]
        assert run is not None
        bare_tps = run["tokens"] / run["s"]
        bare_jpt = None if run["energy_j"] is None else run["energy_j"] / run["tokens"]
        jpt_ratio = row["j_per_token"] / bare_jpt if row["j_per_token"] and bare_jpt else None
        out.append({"order": o, "trial": t, "bare_slot": b, "sweep_tps": row["tokens_per_s"], "bare_tps": bare_tps,
                    "sweep_jpt": row["j_per_token"], "bare_jpt": bare_jpt,
                    "tps_ratio": row["tokens_per_s"] / bare_tps, "jpt_ratio": jpt_ratio,
                    "sweep_s": row["duration_s"], "bare_s": run["s"]})
    return out


def pairing(pairs: list[dict[str, Any]], side: str = "sweep") -> dict[str, Any]:
    """Does pairing help on this machine? The correlation of the two sides' log tokens/s within
    pairs (near 0: the noise is faster than a pair), each side's spread, and how many pairs a
    95 % CI of +-3 % on the ratio would need at the spread seen."""
    if len(pairs) < 3:
        return {}
    xs = [math.log(p[f"{side}_tps"]) for p in pairs]
    ys = [math.log(p["bare_tps"]) for p in pairs]
    sd = statistics.stdev([x - y for x, y in zip(xs, ys, strict=True)])
    try:
        corr: float | None = statistics.correlation(xs, ys)
    except statistics.StatisticsError:
        corr = None
    return {"corr": corr, f"sd_log_{side}_pct": 100 * statistics.stdev(xs), "sd_log_bare_pct": 100 * statistics.stdev(ys),
            "pairs_for_3pct": math.ceil((1.96 * sd / math.log(1.03)) ** 2)}


def summarize_census(cs: list[dict[str, Any] | None]) -> dict[str, Any] | None:
    cs = [c for c in cs if c]
    if not cs:
        return None
    wall = sum(c["wall_s"] for c in cs)  # the main thread's active time
    span = sum(c.get("span_s", c["wall_s"]) for c in cs)  # the whole intervals: other threads' rates
    others: dict[str, list[float]] = {}
    procs: dict[str, float] = {}
    irq: dict[str, int] = {}
    for c in cs:
        for k, n in c.get("irq", {}).items():
            irq[k] = irq.get(k, 0) + n
        for name, cpu, wakes in c["others"]:  # threads of one name summed (client.poll0 x 4 ...)
            o = others.setdefault(name, [0.0, 0.0])
            o[0] += cpu
            o[1] += wakes
        for name, cpu in c["top_processes"]:
            procs[name] = procs.get(name, 0.0) + cpu
    return {"wall_s": wall, "span_s": span, "main_cpu_share": sum(c["main_cpu_s"] or 0 for c in cs) / wall,
            "main_nvcs_per_s": sum(c["main_nvcs"] or 0 for c in cs) / wall,
            "main_vcs_per_s": sum(c["main_vcs"] or 0 for c in cs) / wall,
            "main_nice": cs[-1]["main_nice"], "others_cpu_share": sum(c["others_cpu_s"] for c in cs) / span,
            # [name, CPU share of one core, voluntary wake-ups per second]
            "top_other_threads": sorted(([k, round(v[0] / span, 4), round(v[1] / span, 1)] for k, v in others.items()),
                                        key=lambda x: -x[2])[:8],
            "machine_busy_pct": statistics.fmean(c["machine_busy_pct"] for c in cs),
            "machine_steal_pct": statistics.fmean(c["machine_steal_pct"] for c in cs),
            "top_processes_cpu_share": sorted(([k, round(v / span, 4)] for k, v in procs.items()),
                                              key=lambda x: -x[1])[:8],
            # on the measured CPU (--pin-cpu) over the whole intervals; the process's page faults
            "irq_per_s": {k: round(n / span, 1) for k, n in sorted(irq.items(), key=lambda x: -x[1])[:10]},
            "minflt_per_s": sum(c.get("minflt", 0) for c in cs) / span,
            "majflt": sum(c.get("majflt", 0) for c in cs)}


def run_config(cfg: Config, args: argparse.Namespace, variants: list[Variant], work: Path,
               save: Any = None) -> dict[str, Any]:
    m = model_cfg(cfg.model)
    plen = prompt_len(cfg.batch, args.task)
    ckpt = checkpoint(cfg.model, Path(args.cache_dir), args.seed) if cfg.precision not in ("bf16", "fp32") else None
    flavours = ["plain"] + ([f for f in args.bare_flavours.split(",") if f and f != "plain"] if args.diag else [])
    bares = {f: BareProc(f) for f in flavours}
    res: dict[str, Any] = {"config": cfg.name, "prompt_len": plen, "new_tokens": args.new_tokens, "runs": [],
                           "sweeps": {}, "bare_env": {}, "aa": []}

    def start(named: dict[str, BareProc]) -> None:
        """Pin, load (all at once) and warm up bare processes, recording each one's settings."""
        if args.pin_cpu is not None:  # before the load: CUDA's threads inherit the main thread's CPU
            for f, b in named.items():
                res.setdefault("bare_cpus", {})[f] = b.call("pin", cpus=[args.pin_cpu])["affinity"]
        for b in named.values():
            b.send("load", arch=m["architecture"], precision=cfg.precision, checkpoint=ckpt, seed=args.seed,
                   device=args.device)
        for f, b in named.items():
            info = b.recv()
            b.pid = info["pid"]  # the ray flavour's: its actor's process
            res["bare_env"][f] = {**b.call("env"), "load_s": info["load_s"]}
            w = b.call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.warmup_tokens)  # as the sweep's warmup
            res["bare_env"][f]["warmup_s"] = w["s"]

    try:
        start(bares)
        plain = bares["plain"]
        for _ in range(args.solo):  # round robin over the flavours, no Ray on the machine
            for f in flavours:
                s0 = snap(bares[f].pid, args.diag)
                r = bares[f].call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.new_tokens)
                res["runs"].append({**r, "label": "solo_before", "flavour": f,
                                    "census": census(s0, snap(bares[f].pid, args.diag), bares[f].pid or 0)})
        # one run's length, from warm runs where there are any (the first generate after a load
        # is slow: estimated from the warmup alone, the cooldown came out 4x too long)
        warm = [r["s"] for r in res["runs"] if r["flavour"] == "plain"]
        est = (statistics.median(warm) if warm else
               res["bare_env"]["plain"]["warmup_s"] * args.new_tokens / args.warmup_tokens)
        cooldown, gap = schedule(est, args.cooldown_s, args.bare_gap_s)
        if args.cooldown_s and cooldown > args.cooldown_s:
            print(f"  --cooldown-s {args.cooldown_s:g} raised to {cooldown:.1f} s: room for a slow bare run "
                  f"(1.8 x {est:.2f} s + 0.5 s after its gap)", flush=True)
        trials = slots_for(args.pairs, args.order)
        res.update(cooldown_s=cooldown, bare_gap_s=gap, run_estimate_s=est, order=args.order, slots=trials)
        # each sweep's (cooldown, gap): a variant's own gap (`:gap:`) changes its schedule
        plans = {v.name: schedule(est, args.cooldown_s, v.gap_s(args.bare_gap_s)) for v in variants}

        def sweep_limit(cool: float) -> float:
            return args.sweep_timeout_s or args.sweep_start_s + trials * (cool + 1.5 * est + 1.0)

        timeout = sweep_limit(max(c for c, _ in plans.values()))
        for f in flavours:
            if f != "plain":  # a second local Ray beside the sweep's could be joined by it
                bares[f].close()
        # one block per --aa-flavour, one after another: a Ray flavour's local Ray would join another's
        for f in (args.aa_flavour or ["plain"]) if args.aa else []:
            second = BareProc(f)
            try:
                start({f"second:{f}": second})
            except BaseException:
                second.close()
                raise
            res["aa"].append(aa_block(cfg, plain, second, plen, cooldown, gap, args))
            if save is not None:
                save(res)
        if args.deadline is not None:  # end the sweep in time: its stop and the last solo runs take a while
            timeout = min(timeout, args.deadline - time.monotonic() - 20 - args.solo * 2 * est)
        for v in (variants if args.pairs > 0 else []):
            if timeout < args.sweep_start_s:  # too little left for its start and a few trials
                print(f"  {cfg.name} sweep variant {v.name}: skipped, {timeout:.0f} s left", flush=True)
                res["skipped_sweeps"] = [*res.get("skipped_sweeps", []), v.name]
                continue
            v_cool, v_gap = plans[v.name]
            v_timeout = min(timeout, sweep_limit(v_cool))
            print(f"  {cfg.name} sweep variant {v.name}: {trials} trials for {args.pairs} pairs (order {args.order}), "
                  f"cooldown {v_cool:.1f} s, bare run {v_gap:.1f} s into it", flush=True)
            s = run_sweep(cfg, v, plain, plen, v_cool, v_gap, trials, work, args, v_timeout, quiet_s=0.9 * est)
            s.update(cooldown_s=v_cool, bare_gap_s=v_gap)
            s["pairs"] = pair(s["rows"], s["runs"], v_cool, args.order)
            s["tps"] = balanced_ratio(s["pairs"], "tps_ratio", args.bootstrap, args.seed)
            s["jpt"] = balanced_ratio(s["pairs"], "jpt_ratio", args.bootstrap, args.seed)
            s["pairing"] = pairing(s["pairs"])
            s["census_sweep"] = summarize_census(s["trial_census"])
            s["census_bare"] = summarize_census([r.get("census") for r in s["runs"]])
            res["sweeps"][v.name] = s
            if s["exit"] not in (0, None) and not s["rows"]:
                print(s["log_tail"])
            print("    " + ratio_line(s), flush=True)
            if save is not None:  # a run stopped at its time limit keeps the sweeps done
                save(res)
            if args.deadline is not None:
                timeout = min(timeout, args.deadline - time.monotonic() - 20 - args.solo * 2 * est)
        res["runs"] += bare_runs(plain, cfg, args.solo, plen, args, "solo_after")
    finally:
        for b in bares.values():
            b.close()
    solo = [r["tokens"] / r["s"] for r in res["runs"] if r["label"].startswith("solo") and r["flavour"] == "plain"]
    res["solo_plain_tps"] = solo
    res["solo_by_flavour"] = {f: statistics.fmean(r["tokens"] / r["s"] for r in res["runs"]
                                                  if r["flavour"] == f and r["label"] == "solo_before")
                              for f in flavours if any(r["flavour"] == f for r in res["runs"])}
    res["solo_census"] = {f: summarize_census([r.get("census") for r in res["runs"] if r["flavour"] == f])
                          for f in flavours}
    every = [r for r in res["runs"] if r["flavour"] == "plain"] + [r for a in res["aa"] for r in a["runs"]] + [
        r for s in res["sweeps"].values() for r in s["runs"]]
    res["step_noise"] = step_noise([r["step_ns"] for r in every if r.get("step_ns")])
    return res


def aa_block(cfg: Config, first: BareProc, second: BareProc, plen: int, cooldown: float, gap: float,
             args: argparse.Namespace) -> dict[str, Any]:
    """The A/A control: `second` in the sweep's place, on its schedule (slot k: `gap` idle, the
    first's run, the rest of the cooldown idle, the second's run), paired as the sweep's trials
    are; closes `second`."""
    firsts: list[dict[str, Any]] = []
    seconds: list[dict[str, Any]] = []
    slots = slots_for(args.aa, args.order)
    try:
        what = "two identical bare processes" if second.flavour == "plain" else f"bare, then bare as {second.flavour}"
        print(f"  {cfg.name} A/A: {args.aa} pairs ({slots} slots, order {args.order}) of {what}, "
              f"cooldown {cooldown:.1f} s, first run {gap:.1f} s into it", flush=True)
        for _ in range(slots):
            if args.deadline is not None and args.deadline - time.monotonic() < 0.75 * args.config_min_s:
                print("    A/A stopped: out of time", flush=True)
                break
            time.sleep(gap)
            a = first.call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.new_tokens)
            time.sleep(max(0.0, cooldown - gap - a["s"]))
            b = second.call("run", batch=cfg.batch, prompt_len=plen, new_tokens=args.new_tokens)
            # a first run past its cooldown is dropped, as a bare run that overlaps its trial is
            firsts.append({**a, "label": "aa_first", "flavour": "plain", "clear": gap + a["s"] <= cooldown})
            seconds.append({**b, "label": "aa_second", "flavour": f"second:{second.flavour}"})
    finally:
        second.close()
    pairs = aa_pairs(firsts, seconds, args.order)
    runs = [r for ab in zip(firsts, seconds, strict=True) for r in ab]
    out: dict[str, Any] = {"runs": runs, "pairs": pairs, "slots": len(firsts), "flavour": second.flavour,
                           "tps": balanced_ratio(pairs, "tps_ratio", args.bootstrap, args.seed),
                           "jpt": balanced_ratio(pairs, "jpt_ratio", args.bootstrap, args.seed),
                           "pairing": pairing(pairs, "second")}
    print("    A/A " + ratio_line(out), flush=True)
    return out


def fmt_ci(ci: Any) -> str:
    return "-" if not ci else f"{ci[0]:.4f}-{ci[1]:.4f}"


def ratio_line(r: dict[str, Any]) -> str:
    """One line of a block's ratios: pooled, and by order where both ran."""
    parts = []
    for what, name in (("tps", "tokens/s"), ("jpt", "J/token")):
        x = r[what]
        line = f"{name} {C.fmt(x['ratio'], '.4f')} over {x['n']} pairs, CI {fmt_ci(x.get('ci'))}"
        if x.get("balanced"):
            line += "; " + ", ".join(f"{ORDER_NAMES[o]} {C.fmt(v['ratio'], '.4f')} ({v['n']})"
                                     for o, v in x["by_order"].items())
            line += f"; second / first {C.fmt(x['order_effect'], '.4f')}"
        parts.append(line)
    return " | ".join(parts)


def aa_name(flavour: str) -> str:
    return "A/A: bare' / bare" if flavour == "plain" else f"bare as {flavour} / bare"


def report(res: dict[str, Any]) -> list[list[Any]]:
    rows = []
    solo = res["solo_plain_tps"]
    blocks = [(aa_name(a["flavour"]), a, None) for a in res.get("aa") or []] + [
        (name, s, [r["tokens"] / r["s"] for r in s["runs"] if r["clear"]]) for name, s in res["sweeps"].items()]
    for name, blk, insweep in blocks:
        bvs = statistics.fmean(insweep) / statistics.fmean(solo) if insweep and solo else None
        for what in ("tps", "jpt"):
            r = blk[what]
            label = f"{res['config']} [{name}] {'tokens/s' if what == 'tps' else 'J/token'}"
            need = (blk.get("pairing") or {}).get("pairs_for_3pct") if what == "tps" else None
            rows.append([label, r["n"], C.fmt(r["ratio"], ".4f"), fmt_ci(r.get("ci")), C.fmt(ci_width_pct(r), ".1f"),
                         C.fmt(r.get("sd_log_pct"), ".1f"), verdict(r), C.fmt(r.get("order_effect"), ".4f"),
                         C.fmt(bvs, ".4f") if what == "tps" else "", C.fmt(need, "d")])
            if r.get("balanced"):  # each order alone: an order effect shows as the two apart
                for o, x in r["by_order"].items():
                    rows.append([f"  {ORDER_NAMES[o]}", x["n"], C.fmt(x["ratio"], ".4f"), fmt_ci(x.get("ci")),
                                 C.fmt(ci_width_pct(x), ".1f"), C.fmt(x.get("sd_log_pct"), ".1f"), "", "", "", ""])
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", action="append", default=None,
                   help="model:precision:batch, repeatable (default gemma3-1b:nf4:1)")
    p.add_argument("--pairs", type=int, default=20,
                   help="interleaved pairs per configuration and variant (default 20; 0: no sweeps)")
    p.add_argument("--order", choices=("abba", "fixed"), default="abba",
                   help="abba: pairs alternate which side runs first (ab, ba, ba, ab, ...); fixed: the bare run "
                        "always first (default abba)")
    p.add_argument("--aa", type=int, default=0,
                   help="A/A control pairs per configuration: a second identical bare process in the sweep's place "
                        "(default 0: none)")
    p.add_argument("--aa-flavour", choices=FLAVOURS, action="append", default=None,
                   help="the --aa block's second process: plain (the A/A control, default), or the bare code in "
                        "another setting (nice15, ray: inside a plain Ray actor, ray-backend: energyray's backend "
                        "there, ray-child: a plain child of a Ray actor, ...; each described above): an interleaved "
                        "A/B of that setting alone; repeatable, a block each")
    p.add_argument("--budget-s", type=float, default=None,
                   help="whole-run time limit: configurations and sweeps are cut to end inside it (default none)")
    p.add_argument("--config-min-s", type=float, default=120.0,
                   help="with --budget-s, a configuration starts only with this much left (default 120)")
    p.add_argument("--variant", action="append", default=None,
                   help="a sweep variant: name[:env:K=V,...][:arg:override,...][:gap:SECONDS|auto] (default: "
                        "'default', no changes; gap: this sweep's bare gap, auto as --bare-gap-s unset)")
    p.add_argument("--new-tokens", type=int, default=64, help="tokens per request (default 64)")
    p.add_argument("--warmup-tokens", type=int, default=16, help="the bare warmup's tokens (the sweep's default, 16)")
    p.add_argument("--task", default="longform")
    p.add_argument("--solo", type=int, default=3, help="bare runs with no Ray on the machine, before and after (default 3)")
    p.add_argument("--diag", action="store_true", help="thread census and the bare flavours (see above)")
    p.add_argument("--bare-flavours", default="plain,nice15,ray", help="with --diag (default plain,nice15,ray)")
    p.add_argument("--pin-cpu", type=int, default=None,
                   help="the main thread of every bare process and of the sweep's worker on this CPU, so that both "
                        "sides run where the other ran (default: unpinned, as a user's process runs)")
    p.add_argument("--keep-awake", action="store_true",
                   help="with --pin-cpu: a SCHED_IDLE spinner on that CPU, so that it never halts between runs "
                        "(an idle vCPU comes back slower on the VMs measured; see decode_noise.py)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bootstrap", type=int, default=4000)
    p.add_argument("--idle-settle-max-s", type=float, default=5.0,
                   help="the sweeps' measurement.idle_settle_max_s (the idle baseline is not compared; default 5)")
    p.add_argument("--cooldown-s", type=float, default=None,
                   help="the sweeps' measurement.cooldown_s, in which each bare run happens (default, and at least: "
                        "room for a bare run, 1.8 x the median warm run + 0.5 s, plus --bare-gap-s)")
    p.add_argument("--bare-gap-s", type=float, default=None,
                   help="how long into the cooldown the bare run starts (default: as long after the previous trial "
                        "as the next trial starts after it, on average; 0: at once, the earlier design)")
    p.add_argument("--sweep-start-s", type=float, default=150.0,
                   help="allowance for a sweep's start (Ray, idle baseline, load) in its time limit (default 150)")
    p.add_argument("--sweep-timeout-s", type=float, default=None,
                   help="a sweep past this is stopped with SIGINT, keeping the trials it stored (default: the "
                        "start allowance + pairs x (cooldown + 1.5 x a run + 1 s))")
    p.add_argument("--cache-dir", default=os.environ.get("ENERGYRAY_CACHE", str(Path(tempfile.gettempdir()) / "erc")))
    p.add_argument("--work-dir", default=None, help="stores and logs (default: a temp dir)")
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda",
                   help="cpu: a smoke test of the plumbing (tiny-llama:fp32:1; no energy, figures mean nothing)")
    p.add_argument("--json-out", default=None)
    args = p.parse_args(argv)
    args.deadline = None if args.budget_s is None else time.monotonic() + args.budget_s
    if args.keep_awake and args.pin_cpu is None:
        p.error("--keep-awake needs --pin-cpu N: the spinner keeps that CPU awake")
    configs = []
    for text in args.config or ["gemma3-1b:nf4:1"]:
        model, precision, batch = text.split(":")
        configs.append(Config(model, precision, int(batch)))
    variants = [parse_variant(v) for v in (args.variant or ["default"])]
    if args.device == "cpu":
        info: dict[str, Any] = {"name": "cpu (a smoke test: the figures mean nothing)"}
    else:
        # NVML only: this process never holds a CUDA context
        from energyray.samplers.nvml import gpus

        found = gpus()
        if not found:
            print("parity.py needs an NVIDIA GPU (NVML sees none).")
            return 2
        info = found[0]

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="parity-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"GPU {info.get('name')} driver {info.get('driver')}; {os.cpu_count()} CPUs; work {work}", flush=True)
    result: dict[str, Any] = {"benchmark": "parity", "gpu": info, "args": vars(args), "configs": {}, "errors": {}}
    t0 = time.monotonic()
    global IRQ_CPU
    IRQ_CPU = args.pin_cpu
    if args.pin_cpu is not None:
        # this script and all it starts (the sweep's Ray, driver and sampler) keep off the measured
        # CPU; only the measured main threads are moved onto it (and the threads they start after)
        os.sched_setaffinity(0, (os.sched_getaffinity(0) - {args.pin_cpu}) or {args.pin_cpu})
    spinner = C.IdleSpinner(args.pin_cpu) if args.keep_awake else None
    try:
        for cfg in configs:
            run_one(cfg, args, variants, work, result)
    finally:
        if spinner is not None:
            spinner.close()
    result["wall_s"] = time.monotonic() - t0
    summarise(result, args, info)
    return 1 if result["errors"] else 0


def run_one(cfg: Config, args: argparse.Namespace, variants: list[Variant], work: Path, result: dict[str, Any]) -> None:
    """One configuration into `result` (its error there, not raised); the JSON rewritten after it."""
    C.section(cfg.name)
    if args.deadline is not None and args.deadline - time.monotonic() < args.config_min_s:
        print(f"skipped: {args.deadline - time.monotonic():.0f} s of --budget-s left", flush=True)
        result.setdefault("skipped", []).append(cfg.name)
        return

    def save(partial: dict[str, Any], name: str = cfg.name) -> None:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(C.clean({**result, "configs": {
                **result["configs"], name: partial}}), indent=1, default=str))

    try:
        result["configs"][cfg.name] = run_config(cfg, args, variants, work, save)
    except Exception as e:
        traceback.print_exc()
        result["errors"][cfg.name] = f"{type(e).__name__}: {e}"
    if args.json_out:  # after each configuration: a run stopped at its time limit keeps what it did
        Path(args.json_out).write_text(json.dumps(C.clean(result), indent=1, default=str))


def summarise(result: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> None:
    C.section("census (--diag): main thread's CPU share and involuntary switches/s; machine busy %")
    for name, res in result["configs"].items():
        for f, c in (res.get("solo_census") or {}).items():
            if c:
                print(f"  {name} bare-{f} solo: main {c['main_cpu_share']:.3f} nvcs/s {c['main_nvcs_per_s']:.1f} "
                      f"nice {c['main_nice']} busy {c['machine_busy_pct']:.1f}%")
        for v, s in res["sweeps"].items():
            for side in ("census_sweep", "census_bare"):
                c = s.get(side)
                if c:
                    print(f"  {name} [{v}] {side}: main {c['main_cpu_share']:.3f} nvcs/s {c['main_nvcs_per_s']:.1f} "
                          f"vcs/s {c['main_vcs_per_s']:.1f} nice {c['main_nice']} others {c['others_cpu_share']:.3f} "
                          f"busy {c['machine_busy_pct']:.1f}% steal {c['machine_steal_pct']:.2f}%")
                    print(f"      other threads [name, CPU share, wake-ups/s]: {c['top_other_threads']}")
                    print(f"      procs {c['top_processes_cpu_share'][:5]}")
                    print(f"      interrupts/s on CPU {args.pin_cpu if args.pin_cpu is not None else '(all)'} "
                          f"{c.get('irq_per_s')}; page faults/s {C.fmt(c.get('minflt_per_s'), '.1f')}")
        print(f"  {name} solo tokens/s by flavour: " + ", ".join(f"{k} {v:.2f}" for k, v in res["solo_by_flavour"].items()))
    C.section("parity: sweep / bare, geometric mean over pairs (both orders weighted equally), 95 % CI")
    rows = [r for res in result["configs"].values() for r in report(res)]
    print(C.table(["configuration [variant] ratio", "pairs", "ratio", "95 % CI", "CI width %", "sd %", "goal",
                   "second/first", "bare in sweep/solo", "pairs for ±3 %"], rows))
    C.section("step noise of the bare decode: sd % of log speed over windows of w steps inside runs (measured / if "
              "independent step to step), and between whole runs")
    for name, res in result["configs"].items():
        sn = res.get("step_noise") or {}
        print(f"  {name}: within runs " + "; ".join(
            f"w={k} {v['sd_log_pct']:.1f} / {C.fmt(v['independent_pct'], '.1f')}" for k, v in sn.get("within", {}).items())
            + f"; between {sn.get('runs')} runs {C.fmt(sn.get('between_pct'), '.1f')}")
    for name, err in result["errors"].items():
        print(f"ERROR {name}: {err}")
    short = {k: {**{v: {"tps": s["tps"], "jpt": s["jpt"]} for v, s in r["sweeps"].items()},
                 **{("A/A" if a["flavour"] == "plain" else f"bare as {a['flavour']}"): {"tps": a["tps"], "jpt": a["jpt"]}
                    for a in r.get("aa") or []}}
             for k, r in result["configs"].items()}
    C.emit_result({"benchmark": "parity", "gpu": info.get("name"), "ratios": short, "errors": result["errors"]},
                  None)
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(C.clean(result), indent=1, default=str))


if __name__ == "__main__":
    raise SystemExit(main())
