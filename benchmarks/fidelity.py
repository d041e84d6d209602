#!/usr/bin/env python
"""Fidelity of energyray's window energy against the NVML energy counter read independently.

Needs one NVIDIA GPU. From the repository root (about 1.5 min on an H200):

    python benchmarks/fidelity.py [--parts abc] [--json-out PATH]

a. Bursty load: CYCLES x [ON_S of bf16 N x N matmuls, OFF_S idle] as one window, and each
   "on" period as its own window (nested inside it).
b. Real decode: a random-init ~0.9 B Llama, greedy generate of 128 new tokens at batch 1 on a
   256-token random prompt; each generate is a window.
c. Many short windows: 100 back-to-back ~30 ms prefills, each its own window. Each window's
   energy from end() is the power series' integral (flagged short_window); the sampler's
   anchor() then shares the counter's delta over a span around the run by that series' shape
   (source counter_apportioned). Both sums are compared with the reference over the run.

Configurations measured on the same windows (a, b): energyray's NvmlSampler as shipped
("default": 10 Hz polling, the counter at the window's edges for windows of 1 s or more), and
the same sampler with the counter switched off, integrating polled power at 10 Hz and at 1 Hz.

Reference: the NVML energy counter read by a SECOND NvmlSampler (never started) on this
thread, just outside the default sampler's begin() and end() (a0 | begin | a1 ... b0 | end | b1).
The counter updates only every ~100 ms, so a0 and b0 are taken just after an update (the
benchmark reads until the value changes, <= ~100 ms, before opening and after synchronizing
at closing; --no-align turns this off): the reference is then current at the window's edges
instead of up to 100 ms stale. The error is against the outer reads (b1 - a0). When the counter
updates during the sampler's own ~4 ms read, the reference is known only to [b0 - a1, b1 - a0]:
"excess" is the distance outside that interval, and the default's goal is judged on it.

Prints tables, one GOAL PASS/MISS line per goal and one line `RESULT {json}`. Exits 0
whether or not goals are met; 1 only if a part crashed (the others still run); 2 with no GPU.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import traceback
from collections import Counter
from typing import Any

import _common as C

POLLED = {"polled_10hz": 0.1, "polled_1hz": 1.0}
CONFIGS = ("default", *POLLED)
GOAL_LONG_PCT = 0.5    # default vs reference, windows >= 1 s
GOAL_SHORT_PCT = 2.0   # sum of short windows vs reference over the sequence


# -- samplers ---------------------------------------------------------------------------------
def nvml_sampler(device: str | int, interval_s: float = 0.1) -> Any:
    from energyray.samplers.nvml import NvmlSampler

    return NvmlSampler(device, interval_s=interval_s)


def polled_only(device: str | int, interval_s: float) -> Any:
    """energyray's NvmlSampler without its energy counter: window energy = polled power integrated."""
    s = nvml_sampler(device, interval_s)
    s.has_counter = False
    return s


def logged_sampler(device: str | int) -> Any:
    """A default NvmlSampler that also logs the counter reads made on the creating thread
    (those of begin() and end()), so that the naive counter-at-the-edges energy of each
    window can be reconstructed. Its measurements are the default sampler's."""
    from energyray.samplers.nvml import NvmlSampler

    class LoggedNvml(NvmlSampler):  # type: ignore[misc, valid-type]
        def __init__(self, *a: Any, **kw: Any) -> None:
            self.bench_owner = threading.get_ident()
            self.bench_counter_log: list[tuple[int, int, float | None]] = []
            super().__init__(*a, **kw)

        def _read_counter_j(self) -> float | None:
            t0 = time.monotonic_ns()
            v = super()._read_counter_j()
            t1 = time.monotonic_ns()
            if threading.get_ident() == self.bench_owner:
                self.bench_counter_log.append((t0, t1, v))
            return v

    return LoggedNvml(device)


class Reference:
    """The NVML energy counter read on the benchmark's own thread by a second, never-started sampler."""

    def __init__(self, device: str | int) -> None:
        self.s = nvml_sampler(device)
        if not self.s.has_counter:
            raise RuntimeError("this GPU has no NVML energy counter: there is no reference to compare with")

    def read(self) -> tuple[float, int]:
        """(joules, the monotonic ns at the middle of the ~4 ms call)."""
        t0 = time.monotonic_ns()
        v = self.s._read_counter_j()
        t1 = time.monotonic_ns()
        if v is None:
            raise RuntimeError("reading the NVML energy counter failed")
        return v, (t0 + t1) // 2

    def read_fresh(self, timeout_s: float = 0.5) -> tuple[float, int]:
        """Read until the counter updates (it does every ~100 ms, idle too) and return the new
        value: current to within one read (~4 ms) instead of up to one update period stale."""
        v0, t = self.read()
        deadline = time.monotonic() + timeout_s
        v = v0
        while v == v0 and time.monotonic() < deadline:
            v, t = self.read()
        return v, t

    def close(self) -> None:
        self.s.close()


def pct(e: float | None, ref: float) -> float | None:
    return None if e is None or ref <= 0 else 100.0 * (e - ref) / ref


def excess_pct(e: float | None, lo: float, hi: float) -> float | None:
    """How far e lies outside the reference interval [lo, hi], in % of hi (0 inside it)."""
    if e is None or hi <= 0:
        return None
    if e > hi:
        return 100.0 * (e - hi) / hi
    if e < lo:
        return 100.0 * (e - lo) / hi
    return 0.0


class Rig:
    """The default sampler, polled-only samplers per window group, and the reference reader.

    Each group of windows gets its own polled-only samplers so that the edge samples that
    end() adds for one group's windows do not help another group's (nested) windows.

    With `align`, each edge waits (up to ~100 ms, before opening and after the GPU is
    synchronized at closing) for the counter to update, so that the reference is current at
    the edges: otherwise it could be stale by up to one update period at each edge, which
    on a 1 s window under load is several % and would be blamed on the polled configurations.
    The default sampler reads the counter within ~4 ms after the reference, so it shares it.
    """

    def __init__(self, device: str | int, groups: tuple[str, ...], align: bool = True) -> None:
        self.align = align
        self.ref = Reference(device)
        self.default = nvml_sampler(device)
        if not self.default.has_counter:
            raise RuntimeError("the default sampler sees no energy counter on this GPU")
        self.polled = {g: {name: polled_only(device, iv) for name, iv in POLLED.items()} for g in groups}
        self._open: dict[str, tuple[str, float, float]] = {}

    def samplers(self) -> list[Any]:
        return [self.default] + [s for g in self.polled.values() for s in g.values()]

    def start(self) -> None:
        for s in self.samplers():
            s.start()

    def edge_read(self) -> float:
        return (self.ref.read_fresh() if self.align else self.ref.read())[0]

    def open(self, label: str, group: str) -> None:
        a0 = self.edge_read()
        for s in self.polled[group].values():
            s.begin(label)
        self.default.begin(label)
        a1, _ = self.ref.read()
        self._open[label] = (group, a0, a1)

    def close(self, label: str) -> dict[str, Any]:
        """Close a window; the caller has synchronized the GPU."""
        group, a0, a1 = self._open.pop(label)
        b0 = self.edge_read()
        readings = {name: s.end(label) for name, s in self.polled[group].items()}
        readings["default"] = self.default.end(label)
        b1, _ = self.ref.read()
        ref, inner = b1 - a0, b0 - a1
        rec: dict[str, Any] = {
            "window": label, "group": group, "duration_s": readings["default"].duration_s,
            "ref_j": ref, "ref_inner_j": inner,
            "counter_updates_in_brackets": int(a1 != a0) + int(b1 != b0),
        }
        for name, r in readings.items():
            rec[name] = {
                "energy_j": r.energy_j, "source": r.source, "short_window": r.short_window,
                "reason": r.reason, "duration_s": r.duration_s, "samples": len(r.samples),
                "err_pct": pct(r.energy_j, ref), "excess_pct": excess_pct(r.energy_j, inner, ref),
            }
        return rec

    def close_all(self) -> None:
        for s in self.samplers():
            s.close()
        self.ref.close()


# -- part a: bursty matmuls -----------------------------------------------------------------------
def burn(a: Any, c: Any, seconds: float, chunk: int = 8) -> int:
    """bf16 matmuls for `seconds`, synchronizing every `chunk` (no queue left to drain at the end)."""
    import torch

    n = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(chunk):
            torch.matmul(a, a, out=c)
        C.sync()
        n += chunk
    return n


def part_a(device: str | int, cycles: int, on_s: float, off_s: float, n: int, align: bool) -> dict[str, Any]:
    import torch

    a = torch.randn(n, n, device=C.DEVICE, dtype=torch.bfloat16)
    c = torch.empty_like(a)
    burn(a, c, min(on_s, 1.0))  # warm-up: cuBLAS, clocks
    rig = Rig(device, ("a_long", "a_on"), align)
    rig.start()
    long_label = f"a_all_{cycles * (on_s + off_s):g}s"
    records, matmuls, on_time = [], 0, 0.0
    try:
        time.sleep(max(off_s, 1.2))  # back to idle; every sampler has polled at least once
        rig.open(long_label, "a_long")
        t_cycles = time.monotonic()
        for i in range(cycles):
            rig.open(f"a_on{i}", "a_on")
            t = time.perf_counter()
            matmuls += burn(a, c, on_s)
            on_time += time.perf_counter() - t
            records.append(rig.close(f"a_on{i}"))
            # idle until the next cycle is due: the edges' waits for the counter come out of it
            time.sleep(max(0.0, t_cycles + (i + 1) * (on_s + off_s) - time.monotonic()))
        records.insert(0, rig.close(long_label))
    finally:
        rig.close_all()
    tflops = matmuls * 2 * n**3 / on_time / 1e12 if on_time else None
    return {"records": records, "matmuls": matmuls, "matmul_tflops": tflops, "n": n,
            "cycles": cycles, "on_s": on_s, "off_s": off_s}


# -- part b: decode ---------------------------------------------------------------------------------
def part_b(device: str | int, model: Any, windows: int, new_tokens: int, prompt_len: int,
           align: bool) -> dict[str, Any]:
    import torch

    ids = C.random_prompt(prompt_len)
    mask = torch.ones_like(ids)
    with torch.inference_mode():  # warm-up (kernels, allocator), not measured
        model.generate(input_ids=ids, attention_mask=mask, **C.greedy_kwargs(16))
    C.sync()
    rig = Rig(device, ("b_decode",), align)
    rig.start()
    records = []
    try:
        time.sleep(0.5)
        for i in range(windows):
            label = f"b_decode{i}"
            rig.open(label, "b_decode")
            t = time.perf_counter()
            with torch.inference_mode():
                out = model.generate(input_ids=ids, attention_mask=mask, **C.greedy_kwargs(new_tokens))
            C.sync()
            dt = time.perf_counter() - t
            rec = rig.close(label)
            tokens = int(out.shape[1] - prompt_len)
            rec.update(tokens=tokens, generate_s=dt, tokens_per_s=tokens / dt,
                       ref_j_per_token=rec["ref_j"] / tokens if tokens else None)
            records.append(rec)
            time.sleep(0.5)
    finally:
        rig.close_all()
    return {"records": records, "new_tokens": new_tokens, "prompt_len": prompt_len}


# -- part c: many short windows -------------------------------------------------------------------
def prefill(model: Any, ids: Any) -> None:
    import torch

    with torch.inference_mode():
        model(input_ids=ids, use_cache=False, logits_to_keep=1)


def time_prefill_ms(model: Any, length: int, reps: int = 3) -> float:
    ids = C.random_prompt(length, seed=1)
    prefill(model, ids)  # warm this shape
    C.sync()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        prefill(model, ids)
        C.sync()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def tune_prompt_len(model: Any, target_ms: float, cap: int = 32768) -> tuple[int, float, dict[int, float]]:
    """The prompt length (a multiple of 64) whose prefill takes closest to target_ms."""
    pts = {L: time_prefill_ms(model, L) for L in (512, 4096)}
    for _ in range(4):
        near = sorted(pts, key=lambda L: abs(pts[L] - target_ms))[:2]
        (l1, t1), (l2, t2) = sorted((L, pts[L]) for L in near)
        slope = (t2 - t1) / (l2 - l1)
        guess = l2 * 2 if slope <= 0 else l1 + (target_ms - t1) / slope
        L = int(min(cap, max(64, round(guess / 64) * 64)))
        if L in pts:
            break
        pts[L] = time_prefill_ms(model, L)
        if abs(pts[L] - target_ms) / target_ms < 0.05:
            break
    best = min(pts, key=lambda L: abs(pts[L] - target_ms))
    return best, pts[best], dict(sorted(pts.items()))


def part_c(device: str | int, model: Any, n_windows: int, target_ms: float, align: bool) -> dict[str, Any]:
    from energyray.samplers.base import now_ns
    from energyray.samplers.energy import trapezoid

    length, tuned_ms, tried = tune_prompt_len(model, target_ms)
    ids = C.random_prompt(length)
    s = logged_sampler(device)
    ref = Reference(device)
    s.start()
    readings, pass_ms = [], []
    try:
        prefill(model, ids)
        C.sync()
        time.sleep(0.3)
        r0, t_r0 = ref.read_fresh() if align else ref.read()
        # Edges are the caller's clock (at_ns): window i ends exactly where window i+1 begins,
        # so the sampler's own calls (counter reads, ~4 ms each) fall inside windows, not between.
        edge = now_ns()
        for i in range(n_windows):
            s.begin(f"c{i}", at_ns=edge)
            t = time.perf_counter()
            prefill(model, ids)
            C.sync()
            pass_ms.append((time.perf_counter() - t) * 1e3)
            edge = now_ns()
            readings.append(s.end(f"c{i}", at_ns=edge))
        r1, t_r1 = ref.read_fresh() if align else ref.read()
        time.sleep(2.5 * s.interval_s)  # let the poller take a sample after the sequence
        anchored = s.anchor(readings)  # energyray's figures for the run: counter-anchored
        with s._lock:
            series = [dict(x) for x in s._series]
    finally:
        s.close()
        ref.close()

    total_ref = r1 - r0
    energies = [r.energy_j for r in readings]
    known = [e for e in energies if e is not None]
    total_er = sum(known)
    anchored_e = [r.energy_j for r in anchored]
    anchored_known = [e for e in anchored_e if e is not None]
    total_anchored = sum(anchored_known)
    first = next((r.extras for r in anchored if "anchor_scale" in r.extras), None)
    anchor_info = None if first is None else {
        "span_s": (first["anchor_span_end_ns"] - first["anchor_span_start_ns"]) / 1e9,
        "span_start_vs_first_window_ms": (first["anchor_span_start_ns"] - readings[0].start_ns) / 1e6,
        "span_end_vs_last_window_ms": (first["anchor_span_end_ns"] - readings[-1].end_ns) / 1e6,
        "counter_j": first["anchor_counter_j"], "polled_j": first["anchor_polled_j"],
        "scale": first["anchor_scale"], "coverage": first["anchor_coverage"], "windows": first["anchor_windows"],
    }
    anchor_reasons = sorted({r.reason for r in anchored if r.reason})

    # the time between windows (begin/end bookkeeping) is in the reference but in no window:
    # integrate it from the same sampler's power series (sorted anyway; out_of_order should be 0)
    out_of_order = sum(1 for i in range(1, len(series)) if series[i]["t_ns"] < series[i - 1]["t_ns"])
    pts = sorted((x["t_ns"] / 1e9, x["power_w"]) for x in series if x.get("power_w") is not None)
    ts, ps = [p[0] for p in pts], [p[1] for p in pts]
    edges = [t_r0] + [x for r in readings for x in (r.start_ns, r.end_ns)] + [t_r1]
    gaps = [(edges[i], edges[i + 1]) for i in range(0, len(edges), 2)]
    gap_e = [trapezoid(ts, ps, a / 1e9, b / 1e9).energy_j if b > a else 0.0 for a, b in gaps]
    gap_j = sum(e for e in gap_e if e is not None)
    inner_gaps_ms = [(b - a) / 1e6 for a, b in gaps[1:-1]]
    covered_s = sum(r.duration_s for r in readings)

    # the naive method: the counter read at each window's own edges (the sampler's own reads)
    log = s.bench_counter_log
    naive: list[float | None] = []
    edge_values = []
    for r in readings:
        before = [v for (_, t1, v) in log if t1 <= r.start_ns]
        after = [v for (t0, _, v) in log if t0 >= r.end_ns]
        c0 = before[-1] if before else None
        c1 = after[0] if after else None
        edge_values += [c0, c1]
        naive.append(None if c0 is None or c1 is None else c1 - c0)
    naive_known = [x for x in naive if x is not None]
    naive_sum = sum(naive_known)

    return {
        "prompt_len": length, "target_ms": target_ms, "tuned_ms": tuned_ms, "tuning_ms_by_len": tried,
        "pass_ms_median": statistics.median(pass_ms), "pass_ms_min": min(pass_ms), "pass_ms_max": max(pass_ms),
        "windows": n_windows, "sources": dict(Counter(r.source for r in readings)),
        "short_windows": sum(1 for r in readings if r.short_window),
        "missing_energy": len(energies) - len(known),
        "sequence_s": (t_r1 - t_r0) / 1e9, "windows_cover_s": covered_s,
        "coverage_pct": 100.0 * covered_s / ((t_r1 - t_r0) / 1e9),
        "gap_ms_median": statistics.median(inner_gaps_ms) if inner_gaps_ms else None,
        "ref_j": total_ref,
        # energyray's figure: the counter-anchored sum (PollingSampler.anchor)
        "anchored_sum_j": total_anchored, "anchored_err_pct": pct(total_anchored, total_ref),
        "anchored_sources": dict(Counter(r.source for r in anchored)),
        "anchored_missing": len(anchored_e) - len(anchored_known),
        "anchored_vs_raw": total_anchored / total_er if total_er else None,
        "anchor": anchor_info, "anchor_reasons": anchor_reasons,
        # the provisional figures end() gives: the power series' integral per window
        "sum_j": total_er, "err_pct": pct(total_er, total_ref),
        "gap_j": gap_j, "gaps_unknown": sum(1 for e in gap_e if e is None),
        "sum_plus_gaps_j": total_er + gap_j, "err_plus_gaps_pct": pct(total_er + gap_j, total_ref),
        "naive_sum_j": naive_sum, "naive_err_pct": pct(naive_sum, total_ref),
        "naive_zero_windows": sum(1 for x in naive_known if x == 0),
        "naive_unknown_windows": len(naive) - len(naive_known),
        "distinct_counter_values_at_edges": len({v for v in edge_values if v is not None}),
        "series_out_of_order": out_of_order,
        "per_window_j": [round(e, 3) if e is not None else None for e in energies],
        "per_window_anchored_j": [round(e, 3) if e is not None else None for e in anchored_e],
        "per_window_naive_j": [round(x, 3) if x is not None else None for x in naive],
        "per_window_ms": [round(x, 2) for x in pass_ms],
    }


# -- report -------------------------------------------------------------------------------------------
def window_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        d = r["default"]
        row = [r["window"], C.fmt(r["duration_s"], ".3f"), C.fmt(r["ref_j"], ".1f"),
               C.fmt(r["ref_j"] - r["ref_inner_j"], ".1f"),
               f"{C.fmt(d['energy_j'], '.1f')} ({d['source']})", C.fmt(d["err_pct"], "+.3f"),
               C.fmt(d["excess_pct"], "+.3f")]
        for name in POLLED:
            row += [C.fmt(r[name]["energy_j"], ".1f"), C.fmt(r[name]["err_pct"], "+.2f")]
        rows.append(row)
    headers = ["window", "dur s", "ref J", "ref ±J", "default J (source)", "err %", "excess %",
               "10 Hz J", "err %", "1 Hz J", "err %"]
    return C.table(headers, rows)


def summarize(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for group in dict.fromkeys(r["group"] for r in records):
        recs = [r for r in records if r["group"] == group]
        for name in CONFIGS:
            errs = [r[name]["err_pct"] for r in recs if r[name]["err_pct"] is not None]
            exc = [r[name]["excess_pct"] for r in recs if r[name]["excess_pct"] is not None]
            known = [r for r in recs if r[name]["energy_j"] is not None]
            tot_ref = sum(r["ref_j"] for r in known)
            out.append({
                "group": group, "config": name, "n": len(recs), "missing": len(recs) - len(known),
                "mean_err_pct": statistics.mean(errs) if errs else None,
                "max_abs_err_pct": max(map(abs, errs)) if errs else None,
                "max_abs_excess_pct": max(map(abs, exc)) if exc else None,
                "total_err_pct": pct(sum(r[name]["energy_j"] for r in known), tot_ref),
                "sources": dict(Counter(r[name]["source"] for r in recs)),
            })
    return out


def summary_table(rows: list[dict[str, Any]]) -> str:
    return C.table(
        ["group", "config", "n", "mean err %", "max |err| %", "max |excess| %", "total err %", "sources"],
        [[r["group"], r["config"], r["n"], C.fmt(r["mean_err_pct"], "+.3f"), C.fmt(r["max_abs_err_pct"], ".3f"),
          C.fmt(r["max_abs_excess_pct"], ".3f"), C.fmt(r["total_err_pct"], "+.3f"),
          ",".join(f"{k}:{v}" for k, v in r["sources"].items())] for r in rows])


def goals(result: dict[str, Any]) -> list[str]:
    lines = []
    long = [r for p in ("a", "b") for r in result["parts"].get(p, {}).get("records", [])
            if r["default"]["duration_s"] >= 1.0]
    if long:
        exc = [r["default"]["excess_pct"] for r in long]
        errs = [r["default"]["err_pct"] for r in long]
        bad_src = [r["window"] for r in long if r["default"]["source"] != "counter"]
        ok = None not in exc and max(map(abs, exc)) <= GOAL_LONG_PCT and not bad_src
        worst_err = max((abs(e) for e in errs if e is not None), default=None)
        updates = sum(1 for r in long if r["counter_updates_in_brackets"])
        measured = (f"max |excess| {C.fmt(max((abs(e) for e in exc if e is not None), default=None), '.3f')} % "
                    f"over {len(long)} windows (max |error| vs the outer reads {C.fmt(worst_err, '.3f')} %; "
                    f"{updates} window(s) with a counter update inside the reference reads"
                    + (f"; NOT counter-sourced: {bad_src}" if bad_src else "") + ")")
        lines.append(C.goal_line(f"a+b default within {GOAL_LONG_PCT} % of the reference, windows >= 1 s",
                                 measured, ok))
        result["goals"]["default_long_windows"] = {"pass": ok, "max_abs_excess_pct": max(
            (abs(e) for e in exc if e is not None), default=None), "max_abs_err_pct": worst_err,
            "windows": len(long), "not_counter": bad_src, "limit_pct": GOAL_LONG_PCT}
    c = result["parts"].get("c")
    if c:
        ok = c["anchored_err_pct"] is not None and abs(c["anchored_err_pct"]) <= GOAL_SHORT_PCT \
            and not c["anchored_missing"]
        lines.append(C.goal_line(
            f"c sum of {c['windows']} counter-anchored short windows vs the reference over the sequence "
            f"(<= {GOAL_SHORT_PCT} %)",
            f"{C.fmt(c['anchored_err_pct'], '+.2f')} % (windows cover {C.fmt(c['coverage_pct'], '.1f')} % of the "
            f"sequence; sources {c['anchored_sources']})", ok))
        ok_raw = c["err_pct"] is not None and abs(c["err_pct"]) <= GOAL_SHORT_PCT and not c["missing_energy"]
        lines.append(C.goal_line(
            f"c (diagnostic) sum of the same windows' power-series integrals, before anchoring (<= {GOAL_SHORT_PCT} %)",
            f"{C.fmt(c['err_pct'], '+.2f')} %", ok_raw))
        ok2 = c["err_plus_gaps_pct"] is not None and abs(c["err_plus_gaps_pct"]) <= GOAL_SHORT_PCT \
            and not c["missing_energy"] and not c["gaps_unknown"]
        lines.append(C.goal_line(
            f"c (diagnostic) sum of short windows + the gaps between them vs the reference (<= {GOAL_SHORT_PCT} %)",
            f"{C.fmt(c['err_plus_gaps_pct'], '+.2f')} %", ok2))
        result["goals"]["short_windows_sum"] = {"pass": ok, "err_pct": c["anchored_err_pct"],
                                                "limit_pct": GOAL_SHORT_PCT, "method": "counter_anchored"}
        result["goals"]["short_windows_sum_raw"] = {"pass": ok_raw, "err_pct": c["err_pct"],
                                                    "limit_pct": GOAL_SHORT_PCT, "diagnostic": True}
        result["goals"]["short_windows_sum_plus_gaps"] = {"pass": ok2, "err_pct": c["err_plus_gaps_pct"],
                                                         "limit_pct": GOAL_SHORT_PCT, "diagnostic": True}
    return lines


def print_c(c: dict[str, Any]) -> None:
    print(f"prompt length {c['prompt_len']} tokens: one prefill {C.fmt(c['tuned_ms'], '.1f')} ms when tuned "
          f"(target {c['target_ms']:g} ms; tried {', '.join(f'{k}:{v:.1f}' for k, v in c['tuning_ms_by_len'].items())}); "
          f"in the sequence median {c['pass_ms_median']:.1f} ms (min {c['pass_ms_min']:.1f}, max {c['pass_ms_max']:.1f})")
    print(f"{c['windows']} windows, sources {c['sources']}, {c['short_windows']} flagged short_window; "
          f"sequence {c['sequence_s']:.2f} s, windows cover {c['coverage_pct']:.1f} % of it; "
          f"median gap between windows (begin/end bookkeeping) {C.fmt(c['gap_ms_median'], '.1f')} ms")
    rows = [
        ["reference: counter before the first begin, after the last end", C.fmt(c["ref_j"], ".1f"), "-"],
        ["energyray: sum of the counter-anchored per-window energies (anchor())", C.fmt(c["anchored_sum_j"], ".1f"),
         C.fmt(c["anchored_err_pct"], "+.2f")],
        ["energyray before anchoring: sum of the power-series integrals (end())", C.fmt(c["sum_j"], ".1f"),
         C.fmt(c["err_pct"], "+.2f")],
        ["energyray sum + gaps between windows (same power series)", C.fmt(c["sum_plus_gaps_j"], ".1f"),
         C.fmt(c["err_plus_gaps_pct"], "+.2f")],
        ["naive: sum of counter deltas at each window's own edges", C.fmt(c["naive_sum_j"], ".1f"),
         C.fmt(c["naive_err_pct"], "+.2f")],
    ]
    print(C.table(["method", "J", "err %"], rows))
    a = c["anchor"]
    if a is None:
        print(f"anchor: not applied ({'; '.join(c['anchor_reasons']) or 'no short window'})")
    else:
        print(f"anchor: counter {a['counter_j']:.1f} J over a {a['span_s']:.3f} s span (starts "
              f"{a['span_start_vs_first_window_ms']:+.1f} ms from the first window's start, ends "
              f"{a['span_end_vs_last_window_ms']:+.1f} ms from the last one's end), power series "
              f"{a['polled_j']:.1f} J there: scale {a['scale']:.4f}; windows cover {100 * a['coverage']:.1f} % of "
              f"the span; anchored / raw sum {C.fmt(c['anchored_vs_raw'], '.4f')}")
    print(f"naive method: {c['naive_zero_windows']} of {c['windows']} windows read the same counter value at both "
          f"edges (0 J); {c['distinct_counter_values_at_edges']} distinct counter values at "
          f"{2 * c['windows']} edges; power-series samples out of time order: {c['series_out_of_order']}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", default="abc", help="which parts to run (default: abc)")
    p.add_argument("--device", default=None, help="GPU UUID or NVML index (default: the GPU CUDA sees first)")
    p.add_argument("--cycles", type=int, default=6, help="a: on/off cycles (default 6)")
    p.add_argument("--on-s", type=float, default=1.0, help="a: seconds of matmuls per cycle (default 1)")
    p.add_argument("--off-s", type=float, default=1.0, help="a: idle seconds per cycle (default 1)")
    p.add_argument("--matmul-n", type=int, default=8192, help="a: square bf16 matmul size (default 8192)")
    p.add_argument("--decode-windows", type=int, default=3, help="b: generate windows (default 3)")
    p.add_argument("--new-tokens", type=int, default=128, help="b: new tokens per generate (default 128)")
    p.add_argument("--prompt-len", type=int, default=256, help="b: prompt tokens (default 256)")
    p.add_argument("--short-windows", type=int, default=100, help="c: number of short windows (default 100)")
    p.add_argument("--target-ms", type=float, default=30.0, help="c: target prefill time in ms (default 30)")
    p.add_argument("--no-align", action="store_true",
                   help="do not wait for a counter update at the reference's edges (see Rig)")
    p.add_argument("--json-out", default=None, help="write the full result (every reading) to this JSON file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    import torch

    opened = C.open_gpu("fidelity.py", args.device)
    if opened is None:
        return 2
    device, info = opened
    print(f"GPU {info.get('name')} {info.get('uuid')} driver {info.get('driver')} "
          f"power limit {info.get('power_limit_w')} W; torch {torch.__version__} (CUDA {info.get('torch_cuda')})")
    result: dict[str, Any] = {"benchmark": "fidelity", "gpu": info, "args": vars(args), "parts": {},
                              "summary": {}, "goals": {}, "errors": {}}
    model = None
    t_start = time.monotonic()
    for part in args.parts:
        t = time.monotonic()
        try:
            if part == "a":
                C.section(f"a. bursty load: {args.cycles} x [{args.on_s:g} s of bf16 {args.matmul_n}^2 matmuls, "
                          f"{args.off_s:g} s idle]")
                res = part_a(device, args.cycles, args.on_s, args.off_s, args.matmul_n, not args.no_align)
                print(f"{res['matmuls']} matmuls, {C.fmt(res['matmul_tflops'], '.0f')} TFLOP/s while on")
            elif part == "b":
                model = model or C.build_llama()
                C.section(f"b. decode: random-init Llama, batch 1, {args.prompt_len}-token prompt, "
                          f"{args.new_tokens} new tokens, {args.decode_windows} windows")
                res = part_b(device, model, args.decode_windows, args.new_tokens, args.prompt_len,
                             not args.no_align)
                for r in res["records"]:
                    print(f"{r['window']}: {r['tokens']} tokens in {r['generate_s']:.2f} s = "
                          f"{r['tokens_per_s']:.1f} tokens/s, {C.fmt(r['ref_j_per_token'], '.2f')} J/token (reference)")
            elif part == "c":
                model = model or C.build_llama()
                C.section(f"c. {args.short_windows} back-to-back short windows (~{args.target_ms:g} ms prefills)")
                res = part_c(device, model, args.short_windows, args.target_ms, not args.no_align)
                print_c(res)
            else:
                print(f"unknown part {part!r} (parts are a, b, c)")
                continue
            if "records" in res:
                print(window_table(res["records"]))
                rows = summarize(res["records"])
                result["summary"][part] = rows
                print()
                print(summary_table(rows))
            result["parts"][part] = res
        except Exception as e:  # one part failing must not lose the others
            traceback.print_exc()
            result["errors"][part] = f"{type(e).__name__}: {e}"
            print(f"part {part} FAILED: {e}")
        print(f"(part {part}: {time.monotonic() - t:.1f} s)", flush=True)
    C.section("goals")
    for line in goals(result):
        print(line)
    for part, err in result["errors"].items():
        print(f"ERROR part {part}: {err}")
    result["wall_s"] = time.monotonic() - t_start
    C.emit_result(compact(result), args.json_out, full=result)
    return 1 if result["errors"] else 0


def compact(result: dict[str, Any]) -> dict[str, Any]:
    """The RESULT line: goals, summaries and one short row per window (the full record,
    with every reading and part c's per-window lists, goes to --json-out)."""
    keep = ("group", "config", "n", "missing", "mean_err_pct", "max_abs_err_pct", "max_abs_excess_pct",
            "total_err_pct")
    out: dict[str, Any] = {k: result[k] for k in ("benchmark", "gpu", "args", "goals", "errors")}
    out["wall_s"] = result.get("wall_s")
    out["summary"] = {p: [{k: r[k] for k in keep} for r in rows] for p, rows in result["summary"].items()}
    out["windows"] = [
        {"window": r["window"], "duration_s": r["duration_s"], "ref_j": r["ref_j"],
         "ref_inner_j": r["ref_inner_j"], "default_source": r["default"]["source"],
         **{f"{name}_j": r[name]["energy_j"] for name in CONFIGS},
         **{f"{name}_err_pct": r[name]["err_pct"] for name in CONFIGS},
         "default_excess_pct": r["default"]["excess_pct"]}
        for p in ("a", "b") for r in result["parts"].get(p, {}).get("records", [])]
    for p in ("a", "b"):
        if p in result["parts"]:
            out[p] = {k: v for k, v in result["parts"][p].items() if k != "records"}
    if "c" in result["parts"]:
        out["c"] = {k: v for k, v in result["parts"]["c"].items() if not k.startswith("per_window")}
    return out


if __name__ == "__main__":
    raise SystemExit(main())
