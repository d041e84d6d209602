#!/usr/bin/env python
"""Overhead: what energyray's sampler costs a launch-bound inference loop, in throughput.

Needs one NVIDIA GPU. From the repository root (about 3.5 min on an H200 with the defaults):

    python benchmarks/overhead.py [--workload decode|steady|ops] [--precision bf16|nf4|int8] [--gc off]
        [--duration-s 150] [--json-out PATH]

The workload runs without a break for the whole measurement and stamps the time of every
unit it completes: `decode` (default) is batch-1 greedy decoding of the random-init ~0.9 B
Llama of fidelity.py part b (repeated generate calls of --new-tokens; one stamp per token),
`steady` that Llama's decode steps at a fixed KV length (the cache cropped back after each
step, cuDNN attention off: every step the same work; one stamp per token), `ops` a loop of small GPU ops that mimics it (16 tiny matmul+SiLU layers and one host sync per
step; one stamp per step). `--precision nf4` (or int8) quantises that Llama with bitsandbytes
for decode and steady: batch-1 nf4 decoding is the worst case found for anything that takes
the CPU or the GIL from the decode loop (its steps are mostly Python). Meanwhile the sampler is switched on and off on a fixed schedule
of short blocks (--block-s, 0.35 s): quads ON OFF OFF ON or OFF ON ON OFF, drawn at random,
so that a linear drift cancels inside each quad and no periodic disturbance lines up with
the arms. The workload process never waits on the sampler: the schedule is carried out by
the sampler's side (its own process, or a thread for `in`), on the system-wide monotonic
clock both sides stamp with.

Each block's throughput is the units completed over [block start + --settle-s, block end]
(the stamps' cumulative count, interpolated between stamps); the first --settle-s of every
block, ON or OFF, is discarded: switching (starting or stopping the polling thread, the first
window's begin) happens there. ON time after the settle margin holds what a running sampler
does: polls at 1/--interval-s (the polling thread's own schedule), the energy counter read at
most once a second of ON time (NvmlSampler's own cadence), and a window closed and the next
one opened every --window-s of ON time, as a trial would. A block whose switch took longer
than the settle margin is dropped with its pair.

Adjacent blocks form pairs (one ON, one OFF). The estimate is sum(ON)/sum(OFF) over the
pairs; its 95 % CI is the wider of a delta-method interval (standard error of the paired
residuals ON - R*OFF, autocorrelation-robust: Newey-West) and a moving-block bootstrap of
the pairs. Also printed: a robust estimate (exp of the 10 % trimmed mean of the pairs' log
ratios), the blocks' noise, and the ratio in each fifth of the run.

Variants:
  out  energyray's sampler (registry name or module:Class, default NvmlSampler for the same
       GPU UUID) in a SEPARATE process (multiprocessing 'spawn'), as the sampler actor runs it.
  in   the same sampler in THIS process: its polling thread beside the inference thread
       (INFO only: why energyray keeps the sampler out of process).

Goal: out-of-process ON/OFF >= 0.995: GOAL PASS if the CI's lower bound >= 0.995, GOAL MISS
if its upper bound < 0.995, else GOAL NOT RESOLVED. Prints tables, the goal line and one line
`RESULT {json}`; exits 0 whether or not the goal is met (1 if a variant crashed, 2 with no GPU).

CPU smoke test (plumbing only, figures mean nothing): --device cpu --sampler
overhead:CpuBurnSampler (a stand-in that burns ~1 ms of CPU per poll, 4 ms per counter read).
"""

from __future__ import annotations

import argparse
import array
import bisect
import contextlib
import gc
import math
import multiprocessing as mp
import os
import random
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import _common as C

from energyray.samplers.base import PollingSampler

GOAL_RATIO = 0.995
Z95 = statistics.NormalDist().inv_cdf(0.975)

# the workload: run until a monotonic_ns deadline, appending monotonic_ns() per unit done
Workload = Callable[[int, "array.array[int]"], None]


# -- the sampler ------------------------------------------------------------------------------------
def sampler_class(spec: str) -> Any:
    """A registry name (energyray.registry.SAMPLERS, e.g. "nvml") or "module:Class" (the registry
    imports that form itself)."""
    from energyray.registry import SAMPLERS, resolve

    return resolve("sampler", SAMPLERS, spec)


def _burn(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


class CpuBurnSampler(PollingSampler):
    """A stand-in for the CPU smoke test: NvmlSampler's shape, with CPU time instead of NVML
    calls (~1 ms per poll, ~4 ms per counter read, as NVML's energy counter costs)."""

    name = "cpu-burn"
    scope = "none"

    def __init__(self, device: Any = "cpu", interval_s: float = 0.1) -> None:
        super().__init__(interval_s=interval_s)
        self.has_counter = True
        self.device = device
        self._t0 = time.monotonic()

    def _read_counter_j(self) -> float | None:
        _burn(0.004)
        return 100.0 * (time.monotonic() - self._t0)

    def _read_sample(self) -> dict[str, Any]:
        _burn(0.001)
        return {"power_w": 100.0, "energy_j": None}


def _pausable(s: Any) -> bool:
    return isinstance(s, PollingSampler)


def _resume(s: PollingSampler, paused_ns: int) -> None:
    """Start the polling thread (again). PollingSampler has no pause: close() stops its thread,
    and start() starts one only where none is set, so both are reset here. NvmlSampler reads
    its counter in the series once a second: that cadence is moved on by the time spent paused,
    so that it runs on ON time."""
    if s._thread is not None:
        s._stop.clear()
        s._thread = None
        if hasattr(s, "_counter_polled_ns"):
            s._counter_polled_ns += paused_ns
    s.start()


def _record_activity(s: PollingSampler) -> list[tuple[int, int, str]]:
    """Log (start ns, end ns, kind) of every device read the sampler makes from now on: each
    poll's `_read_sample` ("sample") and each energy-counter read ("counter"), on whichever
    thread makes it. Everything the sampler does to the device happens inside these (and the
    window edges drive() logs itself); the event-locked estimate looks at the workload there."""
    log: list[tuple[int, int, str]] = []
    for name, kind in (("_read_sample", "sample"), ("_read_counter_j", "counter")):
        fn = getattr(type(s), name)

        def timed(*a: Any, _fn: Any = fn, _kind: str = kind, **k: Any) -> Any:
            t = time.monotonic_ns()
            try:
                return _fn(s, *a, **k)
            finally:
                log.append((t, time.monotonic_ns(), _kind))

        setattr(s, name, timed)
    return log


def _stop_recording(s: PollingSampler) -> None:
    for name in ("_read_sample", "_read_counter_j"):
        s.__dict__.pop(name, None)


def _sleep_until(t_ns: int) -> None:
    d = (t_ns - time.monotonic_ns()) / 1e9
    if d > 0:
        time.sleep(d)


def drive(s: PollingSampler, plan: dict[str, Any]) -> dict[str, Any]:
    """Carry out `plan` (make_plan) on sampler `s`: at each block's start switch its polling on
    or off; in ON blocks, close the open window and open the next every window_ns of ON time
    (counted over the blocks' measured parts only, so that every edge falls inside one).
    Returns the log: switches (planned, begun, done ns), edges (ns, took ns), the series'
    sample times and the counter reads' times (for the rates actually reached), windows."""
    t0, block, settle = plan["t0_ns"], plan["block_ns"], plan["settle_ns"]
    measured = block - settle
    window_ns = plan["window_ns"]
    busy = _record_activity(s)
    switches: list[tuple[int, int, int]] = []
    edges: list[tuple[int, int]] = []
    running, opened, wk = False, False, 0
    paused_at = time.monotonic_ns()
    on_ns, next_edge = 0, window_ns
    for i, on in enumerate(plan["states"]):
        start = t0 + i * block
        _sleep_until(start)
        a = time.monotonic_ns()
        if on and not running:
            _resume(s, a - paused_at)
            if not opened:
                s.begin(f"w{wk}")
                opened = True
            running = True
        elif not on and running:
            s.close()
            paused_at = time.monotonic_ns()
            running = False
        switches.append((start, a, time.monotonic_ns()))
        if on:
            base = start + settle
            while next_edge < on_ns + measured:
                _sleep_until(base + next_edge - on_ns)
                e = time.monotonic_ns()
                s.end(f"w{wk}")
                wk += 1
                s.begin(f"w{wk}")
                edges.append((e, time.monotonic_ns() - e))
                next_edge += window_ns
            on_ns += measured
    _sleep_until(t0 + len(plan["states"]) * block)
    if running:
        s.close()
    if opened:
        s.end(f"w{wk}")
    with s._lock:
        polls = [int(x["t_ns"]) for x in s._series]
        counter = [int(c[0]) for c in s._counter_log]
    _stop_recording(s)
    return {"switches": switches, "edges": edges, "poll_ns": polls, "counter_ns": counter,
            "windows": wk + 1 if opened else 0,
            "busy": busy + [(e, e + d, "edge") for e, d in edges]}


def _sampler_child(conn: Any, spec: str, device: str | int, interval_s: float, cpus: list[int] | None = None) -> None:
    """The sampler process: build the sampler, then carry out one plan per "run" message,
    answering with drive()'s log; "quit" ends it. Imports no torch. `cpus`: pin it there."""
    try:
        if cpus:
            os.sched_setaffinity(0, cpus)
        cls = sampler_class(spec)
        s = cls(device=device, interval_s=interval_s)
        if not _pausable(s):
            raise TypeError(f"{spec} is not a PollingSampler: overhead.py switches a PollingSampler's polling "
                            "thread on and off")
        conn.send(("ready", os.getpid()))
        while True:
            msg = conn.recv()
            if msg == "quit":
                return
            conn.send(("armed", None))
            conn.send(("done", drive(s, msg)))
    except Exception:
        conn.send(("error", traceback.format_exc()))


class SamplerProcess:
    """energyray's sampler in its own process (spawned), driven through a pipe."""

    def __init__(self, spec: str, device: str | int, interval_s: float, cpus: list[int] | None = None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_sampler_child, args=(child, spec, device, interval_s, cpus),
                                name="energyray-sampler", daemon=True)
        self.proc.start()
        child.close()
        self.pid = self.expect("ready", timeout=120)

    def expect(self, tag: str, timeout: float = 30) -> Any:
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the sampler process did not answer {tag!r} within {timeout} s")
        got, payload = self.conn.recv()
        if got == "error":
            raise RuntimeError(f"the sampler process failed:\n{payload}")
        if got != tag:
            raise RuntimeError(f"the sampler process answered {got!r}, expected {tag!r}")
        return payload

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
def decode_workload(prompt_len: int, new_tokens: int, precision: str = "bf16") -> tuple[Workload, str]:
    """Greedy batch-1 generate calls of exactly new_tokens, one after another until the
    deadline; a stopping criterion that never stops stamps each token (it runs once per
    step, after the host has waited for the previous one: the loop syncs every step)."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    model = C.build_llama(precision=precision)
    ids = C.random_prompt(prompt_len)
    mask = torch.ones_like(ids)
    never = torch.zeros(1, dtype=torch.bool, device=C.DEVICE)

    class Stamp(StoppingCriteria):
        stamps: array.array[int] = array.array("q")

        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            self.stamps.append(time.monotonic_ns())
            return never

    stamp = Stamp()
    criteria = StoppingCriteriaList([stamp])

    def go(until_ns: int, stamps: array.array[int]) -> None:
        stamp.stamps = stamps
        with torch.inference_mode():
            while time.monotonic_ns() < until_ns:
                model.generate(input_ids=ids, attention_mask=mask, stopping_criteria=criteria,
                               **C.greedy_kwargs(new_tokens))

    return go, "tokens"


def steady_workload(prompt_len: int, precision: str = "bf16") -> tuple[Workload, str]:
    """Batch-1 greedy decode steps of the same Llama, one forward each, every one at the same
    KV length: the prompt's cache is built once, and after each step the cache is cropped back
    to the prompt, so each step attends over prompt_len + 1 positions. Every step is the same
    work: no generate call boundaries (a prefill and generate's set-up every --new-tokens, which
    land in some blocks and not others), no new shapes, cuDNN attention off (energyray's
    default: its per-shape plans), and one host sync per token, as generate does."""
    import torch
    from transformers import DynamicCache

    if C.DEVICE != "cpu":
        torch.backends.cuda.enable_cudnn_sdp(False)
    model = C.build_llama(precision=precision)
    ids = C.random_prompt(prompt_len)
    cache = DynamicCache()
    with torch.inference_mode():
        out = model(input_ids=ids, past_key_values=cache, use_cache=True)
    state = {"tok": out.logits[:, -1:].argmax(-1)}
    pos = torch.tensor([[prompt_len]], device=C.DEVICE)

    def go(until_ns: int, stamps: array.array[int]) -> None:
        tok = state["tok"]
        with torch.inference_mode():
            while True:
                out = model(input_ids=tok, past_key_values=cache, use_cache=True, position_ids=pos)
                cache.crop(-1)  # back to the prompt (negative: tokens to drop, in every version)
                tok = out.logits[:, -1:].argmax(-1)
                int(tok[0, 0])  # the host waits for the token, as a decoder's stopping check does
                t = time.monotonic_ns()
                stamps.append(t)
                if t >= until_ns:
                    state["tok"] = tok
                    return

    return go, "tokens"


def ops_workload(hidden: int, layers: int = 16) -> tuple[Workload, str]:
    """Steps of `layers` tiny matmul+SiLU+add on a 1 x hidden vector (bf16 on the GPU, fp32
    on the CPU) and one host sync per step, like a decoder's per-token stopping check."""
    import torch

    dtype = torch.float32 if C.DEVICE == "cpu" else torch.bfloat16
    gen = torch.Generator().manual_seed(0)
    ws = [(torch.randn(hidden, hidden, generator=gen) * hidden**-0.5).to(C.DEVICE, dtype) for _ in range(layers)]
    x0 = torch.randn(1, hidden, generator=gen).to(C.DEVICE, dtype)

    def go(until_ns: int, stamps: array.array[int]) -> None:
        with torch.inference_mode():
            while True:
                h = x0
                for w in ws:
                    h = torch.nn.functional.silu(h @ w) + h
                float(h.sum())
                t = time.monotonic_ns()
                stamps.append(t)
                if t >= until_ns:
                    return

    return go, "steps"


# -- the plan and the throughputs --------------------------------------------------------------------
def make_states(n_blocks: int, rng: random.Random) -> list[bool]:
    """ON/OFF per block: quads ON OFF OFF ON or OFF ON ON OFF at random (n_blocks rounded
    down to quads). Adjacent blocks (0,1), (2,3), ... are the pairs."""
    states: list[bool] = []
    for _ in range(n_blocks // 4):
        first = rng.random() < 0.5
        states += [first, not first, not first, first]
    return states


def make_plan(t0_ns: int, duration_s: float, block_s: float, settle_s: float, window_s: float,
              seed: int) -> dict[str, Any]:
    n = max(4, 4 * round(duration_s / (4 * block_s)))
    return {"t0_ns": t0_ns, "block_ns": int(block_s * 1e9), "settle_ns": int(settle_s * 1e9),
            "window_ns": int(window_s * 1e9), "states": make_states(n, random.Random(seed))}


def count_at(stamps: Sequence[int], t_ns: int) -> float | None:
    """Units completed by t_ns: the stamps' count, linear between stamps (None outside them)."""
    j = bisect.bisect_right(stamps, t_ns)
    if j == 0 or j == len(stamps):
        return None
    a, b = stamps[j - 1], stamps[j]
    return j + (t_ns - a) / (b - a) if b > a else float(j)


def rate_between(stamps: Sequence[int], a_ns: int, b_ns: int) -> float | None:
    """Units per second over [a_ns, b_ns]."""
    ca, cb = count_at(stamps, a_ns), count_at(stamps, b_ns)
    if ca is None or cb is None or b_ns <= a_ns:
        return None
    return (cb - ca) / ((b_ns - a_ns) / 1e9)


def block_rates(stamps: Sequence[int], plan: dict[str, Any],
                switches: Sequence[tuple[int, int, int]]) -> list[float | None]:
    """Each block's throughput over its measured part; None where its switch finished after
    the settle margin (or the stamps do not cover it)."""
    block, settle = plan["block_ns"], plan["settle_ns"]
    out: list[float | None] = []
    for i, (planned, _, done) in enumerate(switches):
        start = plan["t0_ns"] + i * block
        if done > planned + settle:
            out.append(None)
            continue
        out.append(rate_between(stamps, start + settle, start + block))
    return out


def pair_up(states: Sequence[bool], rates: Sequence[float | None]) -> tuple[list[float], list[float], int]:
    """(ON rates, OFF rates, pairs dropped) over the adjacent pairs (0,1), (2,3), ..."""
    on: list[float] = []
    off: list[float] = []
    dropped = 0
    for k in range(0, min(len(states), len(rates)) - 1, 2):
        r0, r1 = rates[k], rates[k + 1]
        if r0 is None or r1 is None or states[k] == states[k + 1]:
            dropped += 1
            continue
        on.append(r0 if states[k] else r1)
        off.append(r1 if states[k] else r0)
    return on, off, dropped


# -- event-locked estimate ---------------------------------------------------------------------------------
_RANK = {"sample": 0, "counter": 1, "edge": 2}


def clusters(busy: Sequence[tuple[int, int, str]], join_ns: int) -> list[tuple[int, int, str]]:
    """The sampler's activity intervals merged where less than join_ns apart: (start, end,
    kind); kind "edge" if a window edge (end + begin) is in it, else "counter" if an energy
    counter read is, else "sample" (a poll of instant power)."""
    out: list[list[Any]] = []
    for a, b, kind in sorted(busy):
        if out and a - out[-1][1] < join_ns:
            out[-1][1] = max(out[-1][1], b)
            if _RANK[kind] > _RANK[out[-1][2]]:
                out[-1][2] = kind
        else:
            out.append([a, b, kind])
    return [(a, b, k) for a, b, k in out]


def event_locked(stamps: Sequence[int], plan: dict[str, Any], busy: Sequence[tuple[int, int, str]],
                 pre_s: float = 0.04, tail_s: float = 0.015, boot: int = 2000, seed: int = 0) -> dict[str, Any]:
    """The sampler's cost measured where it can only occur: around each of its device reads.

    For every cluster of sampler activity inside an ON block's measured part: the window from
    the workload's last completed unit before the cluster starts to its first completed unit
    at least tail_s after the cluster ends (whole units, so a unit delayed by the read is all
    inside). Time lost there = the window's length - its units / the workload's own rate
    over the pre_s just before the window. The same is done at the same offsets in the paired
    OFF block, where the sampler is not running: this placebo measures the method's own bias
    (a window that starts at a unit boundary holds a longer unit than average, the rate
    drifts, ...). Cost = (mean loss ON - mean loss placebo) x clusters per ON second, as a
    fraction of time; ON/OFF throughput = 1 - cost. A cluster is used only where its
    reference window is clear of the previous cluster's tail and everything lies in the
    measured part.

    Far less noisy than the block ratio (the reference is tens of ms away, not a block), but
    it sees only costs that fall within tail_s of a read: a cost spread over the whole ON time
    (none is expected: between reads the sampler's process sleeps) is the block ratio's to
    find. `tail_s` can be raised to check that nothing comes later."""
    block, settle, t0 = plan["block_ns"], plan["settle_ns"], plan["t0_ns"]
    pre, tail = int(pre_s * 1e9), int(tail_s * 1e9)
    events = clusters(busy, tail)
    starts = [e[0] for e in events]
    states = plan["states"]

    def window(a: int, b: int) -> tuple[int, int, int] | None:
        """(start, end, units) of the whole units around [a, b + tail]."""
        j = bisect.bisect_right(stamps, a) - 1
        k = bisect.bisect_left(stamps, b + tail)
        if j < 0 or k >= len(stamps):
            return None
        return stamps[j], stamps[k], k - j

    def loss(w: tuple[int, int, int]) -> float | None:
        start, end, units = w
        c0, c1 = count_at(stamps, start - pre), count_at(stamps, start)
        if c0 is None or c1 is None or c1 <= c0:
            return None
        per_unit = pre / (c1 - c0)  # ns per unit just before
        return (end - start - units * per_unit) / 1e9

    on_loss: dict[str, list[float]] = {}
    placebo: list[float] = []
    n_on_events, on_ns = 0, 0
    for k in range(0, len(states) - 1, 2):
        if states[k] == states[k + 1]:
            continue
        i_on, i_off = (k, k + 1) if states[k] else (k + 1, k)
        on_a, on_b = t0 + i_on * block + settle, t0 + (i_on + 1) * block
        shift = (i_off - i_on) * block  # the same offsets in the OFF block
        on_ns += on_b - on_a
        j0, j1 = bisect.bisect_left(starts, on_a), bisect.bisect_left(starts, on_b)
        n_on_events += j1 - j0
        prev_end = events[j0 - 1][1] if j0 > 0 else None
        for j in range(j0, j1):
            a, b, kind = events[j]
            w = window(a, b)
            prev, prev_end = prev_end, b
            if w is None or w[0] - pre < on_a or w[1] > on_b or (prev is not None and prev + tail >= w[0] - pre):
                continue
            x = loss(w)
            wp = window(a + shift, b + shift)
            if x is None or wp is None or wp[0] - pre < on_a + shift or wp[1] > on_b + shift:
                continue
            y = loss(wp)
            if y is None:
                continue
            on_loss.setdefault(kind, []).append(x)
            placebo.append(y)
    on_all = [x for xs in on_loss.values() for x in xs]
    if len(on_all) < 10 or not on_ns:
        return {"events_used": len(on_all), "error": "too few sampler reads inside measured ON time"}
    per_s = n_on_events / (on_ns / 1e9)  # clusters per ON second
    diff = statistics.fmean(on_all) - statistics.fmean(placebo)
    se = math.sqrt(statistics.variance(on_all) / len(on_all) + statistics.variance(placebo) / len(placebo))
    cost, cost_se = diff * per_s, se * per_s
    rng = random.Random(seed)
    draws = []
    for _ in range(boot):
        a_ = [rng.choice(on_all) for _ in on_all]
        b_ = [rng.choice(placebo) for _ in placebo]
        draws.append(1 - (statistics.fmean(a_) - statistics.fmean(b_)) * per_s)
    draws.sort()
    ci_delta = (1 - cost - Z95 * cost_se, 1 - cost + Z95 * cost_se)
    ci_boot = (_percentile(draws, 0.025), _percentile(draws, 0.975)) if draws else ci_delta
    ci = (min(ci_delta[0], ci_boot[0]), max(ci_delta[1], ci_boot[1]))
    base = statistics.fmean(placebo)
    by_kind = {k: {"n": len(v), "loss_ms": 1e3 * (statistics.fmean(v) - base), "per_on_s": len(v) / (on_ns / 1e9)}
               for k, v in on_loss.items()}
    dur = {k: statistics.median([(b - a) / 1e6 for a, b, kk in events if kk == k]) for k in on_loss}
    return {"ratio": 1 - cost, "ci": list(ci), "ci_delta": list(ci_delta), "ci_boot": list(ci_boot),
            "cost_pct": 100 * cost, "events_used": len(on_all), "placebo_used": len(placebo),
            "events_per_on_s": per_s, "loss_ms_on": 1e3 * statistics.fmean(on_all), "loss_ms_placebo": 1e3 * base,
            "by_kind": by_kind, "read_ms_median": dur, "pre_s": pre_s, "tail_s": tail_s}


# -- statistics -----------------------------------------------------------------------------------------
def _hac_var(z: Sequence[float], lag: int) -> float:
    """Newey-West (Bartlett) long-run variance of z: its variance plus its autocovariances up
    to `lag`, so that a standard error from it holds when neighbouring pairs are correlated."""
    n = len(z)
    m = sum(z) / n
    d = [x - m for x in z]
    v = sum(x * x for x in d) / n
    for k in range(1, min(lag, n - 1) + 1):
        v += 2 * (1 - k / (lag + 1)) * sum(d[i] * d[i - k] for i in range(k, n)) / n
    return v * n / (n - 1)


def trimmed_mean(xs: Sequence[float], trim: float) -> float:
    s = sorted(xs)
    k = int(len(s) * trim)
    s = s[k:len(s) - k] or s
    return sum(s) / len(s)


def _percentile(s: Sequence[float], q: float) -> float:
    """q-quantile of sorted s, linear between order statistics."""
    x = q * (len(s) - 1)
    i = min(int(x), len(s) - 2)
    return s[i] + (x - i) * (s[i + 1] - s[i]) if len(s) > 1 else s[0]


def _autocorr1(xs: Sequence[float]) -> float | None:
    n = len(xs)
    m = sum(xs) / n
    v = sum((x - m) ** 2 for x in xs)
    if n < 3 or v == 0:
        return None
    return sum((xs[i] - m) * (xs[i - 1] - m) for i in range(1, n)) / v


def analyse(on: Sequence[float], off: Sequence[float], boot: int = 2000, seed: int = 0,
            trim: float = 0.1, goal: float = GOAL_RATIO) -> dict[str, Any]:
    """The ON/OFF throughput ratio of paired blocks, its 95 % CI, a robust variant and the noise.

    ratio = sum(ON)/sum(OFF). ci_delta: ratio ± 1.96 SE, SE = sqrt(HAC var(ON - ratio*OFF) / n)
    / mean(OFF), the HAC lag being the bootstrap's block length. ci_boot: percentile interval
    of the ratio over `boot` moving-block bootstrap resamples of the pairs (blocks of
    ~n^(1/3) pairs, for the same reason). ci: the wider of the two, on which the verdict rests.
    robust: exp(trimmed mean of log(ON/OFF)), `trim` cut at each end, with its bootstrap CI."""
    n = len(on)
    if n < 4 or len(off) != n:
        raise ValueError(f"need at least 4 pairs of equal length, got {n} ON and {len(off)} OFF")
    ratio = sum(on) / sum(off)
    mean_off = sum(off) / n
    b = max(1, round(n ** (1 / 3)))
    z = [a - ratio * c for a, c in zip(on, off, strict=True)]
    se = math.sqrt(max(_hac_var(z, b), 0.0) / n) / mean_off
    ci_delta = (ratio - Z95 * se, ratio + Z95 * se)
    logs = [math.log(a / c) for a, c in zip(on, off, strict=True)]
    robust = math.exp(trimmed_mean(logs, trim))
    ci_boot: tuple[float, float] | None = None
    ci_robust: tuple[float, float] | None = None
    if boot > 0:
        rng = random.Random(seed)
        rs, ts = [], []
        for _ in range(boot):
            idx: list[int] = []
            while len(idx) < n:
                s = rng.randrange(n - b + 1)
                idx.extend(range(s, s + b))
            idx = idx[:n]
            rs.append(sum(on[i] for i in idx) / sum(off[i] for i in idx))
            ts.append(math.exp(trimmed_mean([logs[i] for i in idx], trim)))
        rs.sort()
        ts.sort()
        ci_boot = (_percentile(rs, 0.025), _percentile(rs, 0.975))
        ci_robust = (_percentile(ts, 0.025), _percentile(ts, 0.975))
    ci = ci_delta if ci_boot is None else (min(ci_delta[0], ci_boot[0]), max(ci_delta[1], ci_boot[1]))
    sd_log = statistics.stdev(logs)
    fifths = [(k * n // 5, (k + 1) * n // 5) for k in range(5)]
    return {
        "pairs": n, "ratio": ratio, "se": se, "ci_delta": list(ci_delta),
        "ci_boot": list(ci_boot) if ci_boot else None, "ci": list(ci), "boot_block_pairs": b,
        "robust_ratio": robust, "robust_ci": list(ci_robust) if ci_robust else None, "trim": trim,
        "verdict": verdict(ci[0], ci[1], goal)[0],
        "mean_on": sum(on) / n, "mean_off": mean_off,
        # noise: of the OFF blocks alone (drift included), and within a pair (drift cancelled)
        "off_cv_pct": 100 * statistics.stdev(off) / mean_off,
        "pair_log_sd_pct": 100 * sd_log,
        "block_noise_pct": 100 * sd_log / math.sqrt(2),
        "pair_lag1_autocorr": _autocorr1(logs),
        # the CI's half-width were the pairs independent: 1.96 * sd / sqrt(n)
        "white_half_width_pct": 100 * Z95 * sd_log / math.sqrt(n),
        "fifths": [sum(on[a:c]) / sum(off[a:c]) for a, c in fifths if c > a],
    }


def verdict(lo: float, hi: float, goal: float = GOAL_RATIO) -> tuple[str, bool | None]:
    """PASS where the whole CI is >= goal, MISS where it is all below, else NOT RESOLVED."""
    if lo >= goal:
        return "PASS", True
    if hi < goal:
        return "MISS", False
    return "NOT RESOLVED", None


def goal(name: str, ratio: float, ci: Sequence[float], n: str) -> dict[str, Any]:
    """Print the goal line of one estimate and return its record."""
    word, ok = verdict(ci[0], ci[1])
    what = f"{name}: ON/OFF throughput >= {GOAL_RATIO}"
    measured = f"{ratio:.5f} (95 % CI {ci[0]:.5f}-{ci[1]:.5f}, {n})"
    if ok is None:
        print(f"GOAL NOT RESOLVED (CI {ci[0]:.5f}-{ci[1]:.5f})  {what}: {measured}")
    else:
        print(C.goal_line(what, measured, ok))
    return {"pass": ok, "verdict": word, "ratio": ratio, "ci": list(ci), "limit": GOAL_RATIO}


def activity(plan: dict[str, Any], log: dict[str, Any]) -> dict[str, Any]:
    """What the sampler did inside the measured parts of ON blocks (per second of them), that
    nothing leaked into OFF blocks' measured parts, and how long switching took."""
    block, settle = plan["block_ns"], plan["settle_ns"]
    spans = {True: [], False: []}  # type: dict[bool, list[tuple[int, int]]]
    for i, on in enumerate(plan["states"]):
        a = plan["t0_ns"] + i * block
        spans[on].append((a + settle, a + block))

    def hits(times: Sequence[int], on: bool) -> int:
        ts = sorted(times)
        return sum(bisect.bisect_left(ts, b) - bisect.bisect_left(ts, a) for a, b in spans[on])

    on_s = len(spans[True]) * (block - settle) / 1e9
    took = [(done - planned) / 1e6 for planned, _, done in log["switches"]]
    late = [(begun - planned) / 1e6 for planned, begun, _ in log["switches"]]
    edges = [e for e, _ in log["edges"]]
    return {
        "on_measured_s": on_s,
        "polls_per_on_s": hits(log["poll_ns"], True) / on_s if on_s else None,
        "counter_reads_per_on_s": hits(log["counter_ns"], True) / on_s if on_s else None,
        "edges_per_on_s": hits(edges, True) / on_s if on_s else None,
        "polls_in_off": hits(log["poll_ns"], False), "counter_reads_in_off": hits(log["counter_ns"], False),
        "windows": log["windows"],
        "edge_ms_max": max((d / 1e6 for _, d in log["edges"]), default=None),
        "switch_ms_median": statistics.median(took) if took else None,
        "switch_ms_max": max(took, default=None),
        "wake_late_ms_max": max(late, default=None),
    }


# -- variants ---------------------------------------------------------------------------------------------
def cpu_times() -> list[int] | None:
    """The machine's CPU time so far (/proc/stat's first line, in ticks): user nice system idle
    iowait irq softirq steal ...; None where there is no /proc."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None


def cpu_share(a: list[int] | None, b: list[int] | None) -> dict[str, float | None]:
    """Between two cpu_times(): the share of all CPUs' time that was busy, and that the
    hypervisor gave to someone else (steal): a VM's noise that no benchmark design removes."""
    if not a or not b or len(a) < 8 or len(b) < 8:
        return {"busy_pct": None, "steal_pct": None}
    d = [y - x for x, y in zip(a, b, strict=False)]
    total = sum(d[:8])
    if total <= 0:
        return {"busy_pct": None, "steal_pct": None}
    return {"busy_pct": 100 * (total - d[3] - d[4]) / total, "steal_pct": 100 * d[7] / total}


@contextlib.contextmanager
def _gc_paused(pause: bool) -> Iterator[None]:
    """--gc off: no cyclic garbage collection in the workload's process while it is measured. A
    collection pauses the loop for milliseconds at moments unrelated to the sampler, which only
    adds noise to the blocks (reference counting still frees almost everything)."""
    if not pause:
        yield
        return
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def run_variant(variant: str, go: Workload, args: argparse.Namespace, device: str | int) -> dict[str, Any]:
    duration = args.duration_s if variant == "out" else args.in_duration_s
    stamps: array.array[int] = array.array("q")
    proc: SamplerProcess | None = None
    box: dict[str, Any] = {}
    try:
        if variant == "out":
            proc = SamplerProcess(args.sampler, device, args.interval_s, args.pin_sampler)
        else:
            s = sampler_class(args.sampler)(device=device, interval_s=args.interval_s)
            if not _pausable(s):
                raise TypeError(f"{args.sampler} is not a PollingSampler")
        plan = make_plan(time.monotonic_ns() + int(args.lead_s * 1e9), duration, args.block_s, args.settle_s,
                         args.window_s, args.seed)
        end_ns = plan["t0_ns"] + len(plan["states"]) * plan["block_ns"] + int(0.2e9)
        print(f"  {len(plan['states'])} blocks of {args.block_s:g} s ({len(plan['states']) // 2} pairs, "
              f"{duration:g} s), first {args.settle_s:g} s of each discarded", flush=True)
        cpu0 = cpu_times()
        if proc is not None:
            proc.conn.send(plan)
            proc.expect("armed")
            with _gc_paused(args.gc == "off"):
                go(end_ns, stamps)
            log = proc.expect("done", timeout=60)
        else:
            def target() -> None:
                try:
                    box["log"] = drive(s, plan)
                except Exception:
                    box["error"] = traceback.format_exc()

            th = threading.Thread(target=target, name="overhead-driver", daemon=True)
            th.start()
            with _gc_paused(args.gc == "off"):
                go(end_ns, stamps)
            th.join(timeout=60)
            if "log" not in box:
                raise RuntimeError(f"the in-process driver failed:\n{box.get('error', 'no answer')}")
            log = box["log"]
    finally:
        if proc is not None:
            proc.close()
    cpu = cpu_share(cpu0, cpu_times())
    rates = block_rates(stamps, plan, log["switches"])
    on, off, dropped = pair_up(plan["states"], rates)
    stats = analyse(on, off, boot=args.bootstrap, seed=args.seed)
    locked = event_locked(stamps, plan, log.get("busy", []), boot=args.bootstrap, seed=args.seed)
    if "ratio" in locked:  # does any cost come later than the default tail? (then this one is lower)
        longer = event_locked(stamps, plan, log.get("busy", []), tail_s=0.05, boot=0)
        locked["tail_50ms"] = {k: longer.get(k) for k in ("ratio", "ci", "events_used", "error")}
    return {
        "variant": variant, **stats, "pairs_dropped": dropped, "blocks": len(plan["states"]),
        "units_stamped": len(stamps), "sampler": activity(plan, log), "cpu": cpu, "event_locked": locked,
        "child_pid": proc.pid if proc is not None else None,
        # the per-block series, for the json file only
        "series": {"states": plan["states"], "rates": rates},
    }


def report(r: dict[str, Any], unit: str, interval_s: float) -> None:
    a = r["sampler"]
    rb = r["robust_ci"] or [None, None]
    print(C.table(["", "value"], [
        ["pairs used (dropped)", f"{r['pairs']} ({r['pairs_dropped']})"],
        [f"mean OFF {unit}/s", f"{r['mean_off']:.2f}"],
        [f"mean ON {unit}/s", f"{r['mean_on']:.2f}"],
        ["ON/OFF ratio", f"{r['ratio']:.5f}"],
        ["95 % CI, delta (HAC)", f"{r['ci_delta'][0]:.5f} - {r['ci_delta'][1]:.5f}"],
        ["95 % CI, block bootstrap", "-" if r["ci_boot"] is None else f"{r['ci_boot'][0]:.5f} - {r['ci_boot'][1]:.5f}"],
        ["95 % CI used (the wider)", f"{r['ci'][0]:.5f} - {r['ci'][1]:.5f}"],
        [f"robust ({100 * r['trim']:g} % trimmed log ratio)", f"{r['robust_ratio']:.5f} ({C.fmt(rb[0], '.5f')} - {C.fmt(rb[1], '.5f')})"],
        ["ratio by fifth of the run", " ".join(f"{x:.4f}" for x in r["fifths"])],
        ["OFF blocks' CV (drift included)", f"{r['off_cv_pct']:.2f} %"],
        ["per-block noise within pairs", f"{r['block_noise_pct']:.2f} %"],
        ["machine's CPU time during the run: busy, stolen by the host",
         f"{C.fmt(r['cpu'].get('busy_pct'), '.1f')} %, {C.fmt(r['cpu'].get('steal_pct'), '.2f')} %"],
        ["pairs' lag-1 autocorrelation", C.fmt(r["pair_lag1_autocorr"], ".3f")],
        ["CI half-width if pairs independent", f"{r['white_half_width_pct']:.3f} %"],
        [f"sampler polls per ON s (target {1 / interval_s:g})", C.fmt(a["polls_per_on_s"])],
        ["counter reads per ON s", C.fmt(a["counter_reads_per_on_s"])],
        ["window edges per ON s", C.fmt(a["edges_per_on_s"], ".3f")],
        ["polls / counter reads in OFF (expect 0)", f"{a['polls_in_off']} / {a['counter_reads_in_off']}"],
        ["switch took ms (median, max)", f"{C.fmt(a['switch_ms_median'])}, {C.fmt(a['switch_ms_max'])}"],
    ]))
    e = r.get("event_locked") or {}
    if "ratio" not in e:
        print(f"  event-locked estimate: {e.get('error', 'not computed')}")
        return
    rows = [
        ["ON/OFF, event-locked (1 - cost)", f"{e['ratio']:.5f}"],
        ["95 % CI (the wider of delta and bootstrap)", f"{e['ci'][0]:.5f} - {e['ci'][1]:.5f}"],
        ["sampler reads used (placebo positions)", f"{e['events_used']} ({e['placebo_used']})"],
        ["read clusters per ON s", f"{e['events_per_on_s']:.2f}"],
        ["work lost per read, ms: ON, placebo", f"{e['loss_ms_on']:.4f}, {e['loss_ms_placebo']:.4f}"],
    ]
    for kind, k in sorted(e["by_kind"].items()):
        rows.append([f"  {kind}: n, per ON s, read ms (median), lost ms per read (- placebo)",
                     f"{k['n']}, {k['per_on_s']:.2f}, {e['read_ms_median'].get(kind, float('nan')):.2f}, "
                     f"{k['loss_ms']:+.4f}"])
    t50 = e.get("tail_50ms") or {}
    if t50.get("ratio") is not None:
        rows.append(["with a 50 ms tail (fewer reads usable): ON/OFF, 95 % CI",
                     f"{t50['ratio']:.5f}, {t50['ci'][0]:.5f} - {t50['ci'][1]:.5f} ({t50['events_used']} reads)"])
    print(C.table([f"event-locked (the workload around each sampler read, against the {1e3 * e['pre_s']:.0f} ms "
                   f"before it; tail {1e3 * e['tail_s']:.0f} ms)", "value"], rows))


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workload", choices=("decode", "steady", "ops"), default="decode",
                   help="decode: HF generate of the random-init Llama (default); steady: its decode steps at a "
                        "fixed KV length (the cache cropped back each step), every step the same work; ops: "
                        "small-op loop")
    p.add_argument("--precision", choices=C.PRECISIONS, default="bf16",
                   help="decode and steady: the Llama in bf16 (default), or quantised by bitsandbytes: nf4 "
                        "(4-bit; at batch 1 the most Python per token, so the most sensitive to anything that "
                        "takes the CPU or the GIL from the decode loop) or int8")
    p.add_argument("--variants", default="out,in", help="comma-separated: out (separate process), in (default: out,in)")
    p.add_argument("--duration-s", type=float, default=150.0, help="measured time of the out variant (default 150)")
    p.add_argument("--in-duration-s", type=float, default=30.0, help="measured time of the in variant (default 30)")
    p.add_argument("--block-s", type=float, default=0.35,
                   help="block length (default 0.35 = settle + 3 poll intervals: the measured part holds 3 polls)")
    p.add_argument("--settle-s", type=float, default=0.05, help="discarded start of every block (default 0.05)")
    p.add_argument("--lead-s", type=float, default=1.0, help="workload time before the first block (default 1)")
    p.add_argument("--warmup-s", type=float, default=5.0, help="workload warm-up before the variants (default 5)")
    p.add_argument("--interval-s", type=float, default=0.1, help="sampler polling interval (default 0.1 = 10 Hz)")
    p.add_argument("--window-s", type=float, default=2.0, help="a window is closed and the next opened every this "
                   "many seconds of ON time (default 2)")
    p.add_argument("--prompt-len", type=int, default=256, help="decode: prompt tokens (default 256)")
    p.add_argument("--new-tokens", type=int, default=256, help="decode: tokens per generate call (default 256)")
    p.add_argument("--hidden", type=int, default=None, help="ops: vector width (default 2048; 256 on --device cpu)")
    p.add_argument("--gc", choices=("on", "off"), default="on",
                   help="off: the workload's process collects no cyclic garbage while measured (less noise; "
                        "default on)")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000; 0: delta CI only)")
    p.add_argument("--seed", type=int, default=0, help="seed of the ON/OFF order and the bootstrap (default 0)")
    p.add_argument("--sampler", default="nvml",
                   help='sampler: an energyray registry name or "module:Class" taking (device, interval_s), a '
                        "PollingSampler (default nvml)")
    p.add_argument("--device", default=None, help='GPU UUID or NVML index (default: the GPU CUDA sees first), or "cpu" '
                   "(a smoke test: torch on the CPU, the Llama shrunk; needs a stand-in --sampler)")
    p.add_argument("--json-out", default=None, help="also write the full result, with every block, to this file")
    p.add_argument("--pin", type=_cpus, default=None,
                   help="CPUs for this (the workload's) process, e.g. 2 or 2,3: less OS-scheduling noise; "
                        "the out-of-process sampler goes on --pin-sampler")
    p.add_argument("--pin-sampler", type=_cpus, default=None, help="CPUs for the sampler's process (variant out)")
    args = p.parse_args(argv)
    if not 0 <= args.settle_s < args.block_s:
        p.error("--settle-s must be >= 0 and shorter than --block-s")
    if args.precision != "bf16" and (args.workload == "ops" or args.device == "cpu"):
        p.error("--precision nf4/int8 quantises the Llama with bitsandbytes: --workload decode or steady, on a GPU")
    return args


def _cpus(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.pin:
        os.sched_setaffinity(0, args.pin)
    import torch

    if args.device == "cpu":
        if args.sampler == "nvml":
            print('overhead.py --device cpu needs a stand-in sampler: --sampler overhead:CpuBurnSampler')
            return 2
        C.DEVICE = "cpu"
        C.LLAMA.update(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       intermediate_size=128, vocab_size=1000)
        device: str | int = "cpu"
        info: dict[str, Any] = {"device": "cpu"}
    else:
        opened = C.open_gpu("overhead.py", args.device)
        if opened is None:
            return 2
        device, info = opened
    where = ("CPU (a smoke test: the figures mean nothing)" if device == "cpu"
             else f"GPU {info.get('name')} {info.get('uuid')} driver {info.get('driver')}")
    print(f"{where}; torch {torch.__version__}; {os.cpu_count()} CPUs")
    result: dict[str, Any] = {"benchmark": "overhead", "gpu": info, "args": vars(args), "variants": {},
                              "goals": {}, "errors": {}}
    t_start = time.monotonic()
    C.section(f"workload: {args.workload}")
    if args.workload == "decode":
        go, unit = decode_workload(args.prompt_len, args.new_tokens, args.precision)
    elif args.workload == "steady":
        go, unit = steady_workload(args.prompt_len, args.precision)
    else:
        go, unit = ops_workload(args.hidden or (256 if C.DEVICE == "cpu" else 2048))
    warm: array.array[int] = array.array("q")
    go(time.monotonic_ns() + int(args.warmup_s * 1e9), warm)
    if len(warm) >= 2:
        rate = (len(warm) - 1) / ((warm[-1] - warm[0]) / 1e9)
        print(f"warm-up {args.warmup_s:g} s: {rate:.2f} {unit}/s, ~{rate * (args.block_s - args.settle_s):.1f} "
              f"{unit} per measured block part")
    result["unit"] = unit

    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        if variant not in ("out", "in"):
            print(f"unknown variant {variant!r} (out, in)")
            continue
        where = "a separate process (spawn)" if variant == "out" else "this process (polling thread)"
        C.section(f"{variant}: sampler ({args.sampler}, {1 / args.interval_s:g} Hz) in {where}")
        try:
            res = run_variant(variant, go, args, device)
        except Exception as e:
            traceback.print_exc()
            result["errors"][variant] = f"{type(e).__name__}: {e}"
            continue
        result["variants"][variant] = res
        report(res, unit, args.interval_s)

    C.section("summary")
    rows = [[v, r["pairs"], f"{r['mean_off']:.2f}", f"{r['mean_on']:.2f}", f"{r['ratio']:.5f}",
             f"{r['ci'][0]:.5f} - {r['ci'][1]:.5f}", f"{100 * (r['ratio'] - 1):+.3f}"]
            for v, r in result["variants"].items()]
    print(C.table(["variant", "pairs", f"OFF {unit}/s", f"ON {unit}/s", "ON/OFF", "95 % CI", "cost %"], rows))
    out = result["variants"].get("out")
    if out:
        result["goals"]["out_of_process_ratio"] = goal("out-of-process sampler", out["ratio"], out["ci"],
                                                       f"{out['pairs']} pairs")
        locked = out.get("event_locked") or {}
        if "ratio" in locked:
            result["goals"]["out_of_process_event_locked"] = goal(
                "out-of-process sampler, event-locked", locked["ratio"], locked["ci"], f"{locked['events_used']} reads")
    inproc = result["variants"].get("in")
    if inproc:
        print(f"INFO in-process sampler (no goal; for comparison): ON/OFF {inproc['ratio']:.5f} "
              f"(95 % CI {inproc['ci'][0]:.5f}-{inproc['ci'][1]:.5f})")
    for variant, err in result["errors"].items():
        print(f"ERROR variant {variant}: {err}")
    result["wall_s"] = time.monotonic() - t_start
    line = {**result, "variants": {v: {k: x for k, x in r.items() if k != "series"}
                                   for v, r in result["variants"].items()}}
    C.emit_result(line, args.json_out, full=result)
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
