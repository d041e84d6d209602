"""benchmarks/parity.py's parts that need no GPU: the ratio statistics and the goal's verdict,
the pairing of bare runs with sweep trials in a counterbalanced order, the schedule, and
spotting a worker asleep in its cooldown (a real child process with a worker's title)."""

from __future__ import annotations

import importlib
import math
import random
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def par() -> Any:
    sys.path.insert(0, str(BENCH))
    try:
        return importlib.import_module("parity")
    finally:
        sys.path.remove(str(BENCH))


def test_ratio_ci_recovers_a_known_ratio_and_covers_it(par: Any) -> None:
    rng = random.Random(0)
    ratios = [0.95 * math.exp(rng.gauss(0, 0.02)) for _ in range(200)]
    r = par.ratio_ci(ratios, boot=1000)
    assert r["n"] == 200 and r["ratio"] == pytest.approx(0.95, abs=0.005)
    assert r["ci"][0] <= 0.95 <= r["ci"][1] and r["ci"][1] - r["ci"][0] < 0.01
    assert par.verdict(r) == "MISS"  # resolved, and outside 0.98-1.02


def test_verdict_needs_the_whole_ci_inside_and_the_point_inside(par: Any) -> None:
    assert par.verdict({"ratio": 1.0, "ci": (0.975, 1.025)}) == "PASS"
    assert par.verdict({"ratio": 1.0, "ci": (0.96, 1.04)}) == "NOT RESOLVED"  # too wide to tell
    assert par.verdict({"ratio": 1.025, "ci": (1.021, 1.029)}) == "MISS"  # tight, but the point is off
    assert par.verdict({"ratio": None, "ci": None}) == "NOT RESOLVED"


def test_too_few_pairs_give_no_interval(par: Any) -> None:
    assert par.ratio_ci([1.0])["ci"] is None
    assert par.ratio_ci([])["ratio"] is None


def test_variants_parse(par: Any) -> None:
    v = par.parse_variant("nice0:env:RAY_worker_niceness=0,X=1:arg:sampler.interval_s=1.0")
    assert v.name == "nice0" and v.env == {"RAY_worker_niceness": "0", "X": "1"}
    assert v.args == ["sampler.interval_s=1.0"]
    assert par.parse_variant("default").env == {} and par.parse_variant("default").args == []
    with pytest.raises(ValueError):
        par.parse_variant("x:bogus:1")
    assert par.parse_variant("g1:gap:1.0").gap_s(None) == 1.0
    assert par.parse_variant("even:gap:auto").gap_s(1.0) is None  # auto: each side the same idle
    assert par.parse_variant("default").gap_s(1.0) == 1.0  # none of its own: --bare-gap-s
    with pytest.raises(ValueError, match="gap takes seconds or auto"):
        par.parse_variant("x:gap:soon")


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds")


def test_each_bare_run_pairs_with_the_trial_whose_cooldown_it_ran_in(par: Any) -> None:
    t0 = 1_800_000_000.0
    rows = [{"started_at": _iso(t0 + 5 * k), "status": "ok", "tokens_per_s": 20.0 + k, "j_per_token": 5.0,
             "duration_s": 3.0} for k in range(3)]
    runs = [{"wall_start": t0 + 5 * k + 0.02, "clear": k != 1, "tokens": 64, "s": 3.2, "energy_j": 320.0}
            for k in range(3)]
    pairs = par.pair(rows, runs, cooldown_s=1.8, order="fixed")  # cooldowns overlap the next trial's start margin
    assert [p["trial"] for p in pairs] == [0, 2]  # run 1 overlapped its trial: dropped
    assert pairs[1]["tps_ratio"] == pytest.approx(22.0 / 20.0) and pairs[1]["jpt_ratio"] == pytest.approx(1.0)


def test_a_worker_asleep_in_its_cooldown_is_spotted(par: Any) -> None:
    """ray.trial_process=actor: the actor runs the trials itself."""
    child = subprocess.Popen(["bash", "-c", 'exec -a "ray::WorkerHost.run" sleep 30'])
    try:
        deadline = time.monotonic() + 10
        while par.find_worker(par.os.getpid(), True) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert par.find_worker(par.os.getpid(), True) == (child.pid, child.pid)
        while not par.in_cooldown(child.pid, child.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert par.in_cooldown(child.pid, child.pid)  # sleep(1) waits in clock_nanosleep, as time.sleep does
        assert par.threads(child.pid)  # the census reads its threads
    finally:
        child.kill()
        child.wait()
    assert not par.in_cooldown(child.pid, child.pid)  # gone


def test_a_trial_process_asleep_in_its_cooldown_is_spotted_under_its_actor(par: Any) -> None:
    """ray.trial_process=child: the trials run in the actor's plain child process; its sleep and
    the actor's title (`ray::WorkerHost.run`) together make the cooldown."""
    actor = subprocess.Popen(["bash", "-c", 'exec -a "ray::WorkerHost.run" bash -c '
                              '"(exec -a \\"python -m energyray.trial.process\\" sleep 30) & wait"'],
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while par.find_worker(par.os.getpid(), False) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        found = par.find_worker(par.os.getpid(), False)
        assert found is not None and found[0] == actor.pid and found[1] != actor.pid
        assert "energyray.trial.process" in par.cmdline(found[1])
        while not par.in_cooldown(found[1], found[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert par.in_cooldown(found[1], found[0])
        assert not par.in_cooldown(found[0], found[0])  # the actor itself waits on its child, not asleep
    finally:
        par.os.killpg(actor.pid, 9)  # the group this test started
        actor.wait()


def test_an_aa_pair_is_the_second_process_over_the_first(par: Any) -> None:
    first = {"tokens": 64, "s": 2.0, "energy_j": 320.0}
    second = {"tokens": 64, "s": 2.5, "energy_j": 352.0}
    p = par.aa_pair(first, second)
    assert p["tps_ratio"] == pytest.approx(0.8) and p["jpt_ratio"] == pytest.approx(1.1)
    assert par.aa_pair(first, {**second, "energy_j": None})["jpt_ratio"] is None  # no counter: unknown, not 0
    pairs = [par.aa_pair({"tokens": 64, "s": 2.0 + 0.1 * k, "energy_j": None}, {"tokens": 64, "s": 2.0, "energy_j": None})
             for k in range(5)]
    assert par.pairing(pairs, "second")["sd_log_bare_pct"] > 0 and "sd_log_second_pct" in par.pairing(pairs, "second")


def test_ci_width_is_one_measure_for_every_interval(par: Any) -> None:
    assert par.ci_width_pct({"ci": (0.9, 1.08)}) == pytest.approx(20.0)
    assert par.ci_width_pct({"ci": None}) is None


def _runs(rng: random.Random, n_runs: int, steps: int, step_sd: float, run_sd: float) -> list[list[int]]:
    out = []
    for _ in range(n_runs):
        base = 30e6 * math.exp(rng.gauss(0, run_sd))  # a run's own speed
        t, ns = 0.0, []
        for _ in range(steps + 1):
            t += base * math.exp(rng.gauss(0, step_sd))
            ns.append(int(t))
        out.append(ns)
    return out


def test_step_noise_tells_fast_noise_from_slow(par: Any) -> None:
    rng = random.Random(1)
    fast = par.step_noise(_runs(rng, 30, 64, 0.2, 0.0))  # independent from step to step
    w1, w16 = fast["within"]["1"]["sd_log_pct"], fast["within"]["16"]["sd_log_pct"]
    assert w1 == pytest.approx(20, rel=0.15) and w16 == pytest.approx(w1 / 4, rel=0.3)
    assert fast["between_pct"] < 6  # 20 % / sqrt(64) ~ 2.5 %
    slow = par.step_noise(_runs(rng, 30, 64, 0.02, 0.2))  # each run at its own speed
    assert slow["within"]["1"]["sd_log_pct"] < 3 and slow["between_pct"] == pytest.approx(20, rel=0.35)
    assert par.step_noise([[0, 10, 20]])["within"] == {}  # too few windows: nothing claimed


def test_abba_alternates_which_side_runs_first_in_disjoint_pairs(par: Any) -> None:
    assert [par.order_at(i, "abba") for i in range(8)] == ["ab", "ba", "ba", "ab"] * 2
    assert {par.order_at(i, "fixed") for i in range(8)} == {"ab"}
    pairs = par.abba_pairs([True] * 10, [True] * 10, "abba")
    # (order, reference slot, side slot): ab = (ref k, side k), ba = (side k, ref k+1)
    assert pairs == [("ab", 0, 0), ("ba", 2, 1), ("ba", 3, 2), ("ab", 4, 4),
                     ("ab", 5, 5), ("ba", 7, 6), ("ba", 8, 7), ("ab", 9, 9)]
    assert len({r for _, r, _ in pairs}) == len({s for _, _, s in pairs}) == 8  # no run in two pairs
    assert all(s + 1 == r for o, r, s in pairs if o == "ba") and all(s == r for o, r, s in pairs if o == "ab")
    assert par.slots_for(8, "abba") == 10 and par.slots_for(8, "fixed") == 8 and par.slots_for(1, "abba") == 1
    assert par.abba_pairs([True] * 3, [True] * 3, "fixed") == [("ab", 0, 0), ("ab", 1, 1), ("ab", 2, 2)]
    with pytest.raises(ValueError):
        par.order_at(0, "random")


def test_a_dropped_run_moves_its_pair_on_keeping_the_order(par: Any) -> None:
    ref_ok = [True, True, False, True, True, True, True]  # the reference run of slot 2 dropped
    pairs = par.abba_pairs(ref_ok, [True] * 7, "abba")
    # (side 1, ref 2) impossible: the ba pair moves to the next slot, and the orders go on
    assert pairs == [("ab", 0, 0), ("ba", 3, 2), ("ba", 4, 3), ("ab", 5, 5), ("ab", 6, 6)]
    assert par.abba_pairs([False] * 4, [True] * 4, "abba") == []


def test_the_balanced_ratio_cancels_an_order_effect_and_shows_it(par: Any) -> None:
    rng = random.Random(2)
    true, second = 0.97, 0.88  # the side's true ratio; running second costs 12 %
    pairs = [{"order": "ab", "r": true * second * math.exp(rng.gauss(0, 0.01))} for _ in range(12)]
    pairs += [{"order": "ba", "r": true / second * math.exp(rng.gauss(0, 0.01))} for _ in range(4)]
    b = par.balanced_ratio(pairs, "r", boot=1000)
    assert b["balanced"] and b["n"] == 16
    assert b["ratio"] == pytest.approx(true, rel=0.01) and b["ci"][0] < true < b["ci"][1]
    assert b["order_effect"] == pytest.approx(second, rel=0.01)
    assert b["order_effect_ci"][0] < second < b["order_effect_ci"][1] < 1
    assert b["by_order"]["ab"]["ratio"] == pytest.approx(true * second, rel=0.01)
    assert b["by_order"]["ba"]["n"] == 4
    naive = par.ratio_ci([p["r"] for p in pairs], boot=0)  # unbalanced orders bias the plain mean
    assert naive["ratio"] < 0.93
    one = par.balanced_ratio([p for p in pairs if p["order"] == "ab"], "r", boot=0)
    assert not one["balanced"] and one["order_effect"] is None  # one order: nothing to cancel
    assert par.balanced_ratio([{"order": "ab", "r": 1.0}, {"order": "ba", "r": None}], "r")["ci"] is None
    assert par.balanced_ratio([{"order": "ab", "r": 1.0}, {"order": "ba", "r": 1.0}], "r")["ci"] is None  # df 0


def test_sweep_pairs_follow_the_order(par: Any) -> None:
    t0 = 1_800_000_000.0
    rows = [{"started_at": _iso(t0 + 10 * k), "status": "ok", "tokens_per_s": 20.0, "j_per_token": 5.0,
             "duration_s": 3.2} for k in range(5)]
    runs = [{"wall_start": t0 + 10 * k + 2.0, "clear": True, "tokens": 64, "s": 3.2 * (1 + k / 10),
             "energy_j": 320.0} for k in range(5)]
    pairs = par.pair(rows, runs, cooldown_s=6.0)
    assert [(p["order"], p["bare_slot"], p["trial"]) for p in pairs] == [("ab", 0, 0), ("ba", 2, 1), ("ba", 3, 2),
                                                                         ("ab", 4, 4)]
    assert pairs[1]["tps_ratio"] == pytest.approx(1.2)  # always sweep / bare: 20 against 64 / 3.84
    rows[2]["status"] = "failed"
    assert [(p["order"], p["bare_slot"], p["trial"]) for p in par.pair(rows, runs, 6.0)] == [
        ("ab", 0, 0), ("ba", 2, 1), ("ba", 4, 3)]


def test_aa_pairs_are_second_over_first_in_either_order(par: Any) -> None:
    firsts = [{"tokens": 64, "s": 2.0, "energy_j": 300.0, "clear": True} for _ in range(5)]
    seconds = [{"tokens": 64, "s": 2.5, "energy_j": 300.0} for _ in range(5)]
    pairs = par.aa_pairs(firsts, seconds, "abba")
    assert [p["order"] for p in pairs] == ["ab", "ba", "ba", "ab"]
    assert all(p["tps_ratio"] == pytest.approx(0.8) for p in pairs)
    firsts[0]["clear"] = False  # it outlasted its cooldown: dropped, as a bare run overlapping its trial
    assert par.aa_pairs(firsts, seconds, "fixed")[0]["slot"] == 1


def test_the_schedule_gives_each_side_the_same_idle_before_it(par: Any) -> None:
    cooldown, gap = par.schedule(2.0)
    assert cooldown - gap - 2.0 == pytest.approx(gap)  # the trial's idle after an average bare run
    assert cooldown - gap >= 1.8 * 2.0 + 0.5  # room for a slow bare run
    assert par.schedule(2.0, gap_s=0.0) == (pytest.approx(4.1), 0.0)  # the earlier design
    assert par.schedule(2.0, cooldown_s=8.0) == (8.0, 3.0)
    assert par.schedule(2.0, cooldown_s=8.0, gap_s=1.0) == (8.0, 1.0)
    # a cooldown too short for a slow run is raised: dropping the runs that outlast it would
    # keep the fast ones only (the bare side biased fast)
    assert par.schedule(2.9, cooldown_s=4.0, gap_s=1.0) == (pytest.approx(1.0 + 1.8 * 2.9 + 0.5), 1.0)
    assert par.schedule(2.0, cooldown_s=6.0) == (pytest.approx(2 * 4.1 - 2.0), pytest.approx(2.1))


def test_pinning_puts_a_childs_main_thread_on_one_cpu_and_reads_it_back(par: Any) -> None:
    """--pin-cpu: the sweep's worker is pinned from outside, by its pid; a real child here."""
    import os

    cpu = max(os.sched_getaffinity(0))
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert par.pin_thread(child.pid, cpu) == [cpu]
        assert os.sched_getaffinity(child.pid) == {cpu}
    finally:
        child.kill()  # our own child
        child.wait()
    assert par.pin_thread(child.pid, cpu) is None  # gone: said, not raised


def test_a_running_worker_or_another_sleeper_is_not_in_its_cooldown(par: Any) -> None:
    """The sleep is read first and the title only then: a worker that runs (a trial decoding)
    is not in its cooldown, nor is a process asleep under another title."""
    busy = subprocess.Popen(["bash", "-c", 'exec -a "ray::WorkerHost.run" python3 -c "while True: pass"'])
    other = subprocess.Popen(["bash", "-c", 'exec -a "ray::SamplerHost" sleep 30'])
    try:
        time.sleep(0.5)
        assert par.cmdline(busy.pid).startswith("ray::WorkerHost.run")
        assert not any(par.in_cooldown(busy.pid, busy.pid) for _ in range(20))
        assert not par.in_cooldown(other.pid, other.pid)
    finally:
        for p in (busy, other):
            p.kill()  # our own children
            p.wait()


def test_the_census_counts_interrupts_and_page_faults(par: Any) -> None:
    """--diag's census: /proc/interrupts parsed by kind (per CPU or summed), and a process's
    page faults, which grow when it touches new memory."""
    import os

    every = par.interrupts(None)
    assert every and all(isinstance(v, int) for v in every.values())
    cpu = max(os.sched_getaffinity(0))
    assert set(par.interrupts(cpu)) <= set(every)
    assert all(par.interrupts(cpu)[k] <= every[k] for k in par.interrupts(cpu))
    before = par.faults(os.getpid())
    block = bytearray(32 * 2**20)  # zero pages, faulted in as they are written
    for i in range(0, len(block), 4096):
        block[i] = 1
    after = par.faults(os.getpid())
    assert after[0] - before[0] >= 16  # one a 4 KiB page, or one a 2 MiB huge page at least
    assert par.faults(2**22 + 12345) == (0, 0)  # no such process: nothing, not an error


def test_the_backend_flavour_runs_energyrays_backend_and_the_plain_one_none_of_it(par: Any) -> None:
    """--aa-flavour backend: the bare process loads and generates through energyray's
    TransformersBackend (a real tiny model on the CPU), with the same fixed length and step
    times as the plain process, which imports nothing of energyray."""
    arch = par.model_cfg("tiny-llama")["architecture"]
    out = {}
    for flavour in ("plain", "backend"):
        b = par.BareProc(flavour)
        try:
            b.call("load", arch=arch, precision="fp32", checkpoint=None, seed=0, device="cpu")
            env = b.call("env")
            run = b.call("run", batch=2, prompt_len=12, new_tokens=8)
        finally:
            b.close()
        out[flavour] = (env["energyray_modules"], run)
    assert out["plain"][0] == 0
    assert out["backend"][0] > 0
    for _, run in out.values():
        assert run["tokens"] == 2 * 8
        assert len(run["step_ns"]) == 8
        assert 0 < run["step_ns"][0] <= run["step_ns"][-1] <= run["t1_ns"] - run["t0_ns"]
        assert run["energy_j"] is None  # no counter on a CPU: unknown, not 0
