"""Faults during a sweep, made real where this machine can make them: a worker SIGKILLed
mid-trial, a worker that crashes every time, an out-of-memory trial, a sampler SIGKILLed
mid-trial. Each test asserts that nothing is lost and nothing duplicated: one result per
trial, every trial accounted for, with its status and the reason."""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from pathlib import Path

import pytest
import ray
from support.plans import cpu_config, plan, run_collect, specs_of

from energyray.config import RunConfig

SUPPORT = Path(__file__).parent / "support"


@pytest.fixture(scope="module")
def local_ray():
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), *([old] if old else [])])  # for the workers
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


def _sweep(cfg: RunConfig, grid: dict, repeats: int = 1, backend: str = "transformers", new_tokens: int = 8,
           on_system=None, on_result=None):
    p = plan("faults", grid, cfg, repeats, backend=backend, new_tokens=new_tokens)
    rows, systems = run_collect(p, on_result, on_system)
    return specs_of(p), rows, systems


def _once_each(specs, rows) -> dict[str, dict]:
    counts = Counter(r["trial_id"] for r in rows)
    assert counts == Counter(s.trial_id for s in specs), counts  # every trial, exactly once
    return {r["trial_id"]: r for r in rows}


def _kill_later(pid: int, delay_s: float) -> None:
    threading.Timer(delay_s, lambda: os.kill(pid, signal.SIGKILL)).start()


def test_a_worker_killed_mid_trial_is_retried_on_a_fresh_worker(local_ray, shared_cache):
    killed: list[int] = []

    def on_result(row, systems):  # after the first trial, SIGKILL the worker while it runs the second
        if not killed:
            killed.append(systems[-1]["pid"])
            _kill_later(killed[0], 0.4)

    specs, rows, systems = _sweep(cpu_config(shared_cache), {}, repeats=4, new_tokens=400, on_result=on_result)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    retried = [r for r in rows if r["attempts"] == 2]
    assert len(retried) == 1, [(r["trial_id"], r["attempts"]) for r in rows]
    assert "Actor" in retried[0]["retried_errors"]
    assert len({s["pid"] for s in systems}) == 2  # the group finished on a second, fresh worker
    assert killed[0] not in {r.get("worker_pid") for r in rows if r["trial_id"] == retried[0]["trial_id"]}


def test_a_trial_that_kills_its_worker_every_time_fails_after_the_retries(local_ray, shared_cache):
    cfg = cpu_config(shared_cache, max_retries=1)
    specs, rows, systems = _sweep(cfg, {"batch_size": [1, 3, 2]}, backend="faulty_backend:FaultyBackend")
    by_id = _once_each(specs, rows)
    crash = next(r for r in by_id.values() if r["batch_size"] == 3)
    assert crash["status"] == "failed" and "worker died 2 times" in crash["error"], crash["error"]
    assert crash["attempts"] == 2
    others = [r for r in by_id.values() if r["batch_size"] != 3]
    assert [r["status"] for r in others] == ["ok", "ok"], [r["error"] for r in others]
    assert all(r["energy_source"] == "not_measurable" for r in rows)  # sampler.cpu=none: labelled, not 0


def test_out_of_memory_is_an_oom_row_and_the_group_goes_on(local_ray, shared_cache):
    specs, rows, systems = _sweep(cpu_config(shared_cache), {"batch_size": [8, 1, 16, 2]}, backend="faulty_backend:FaultyBackend")
    by_id = _once_each(specs, rows)
    status = {r["batch_size"]: r["status"] for r in by_id.values()}
    assert status == {8: "oom", 16: "oom", 1: "ok", 2: "ok"}, status
    oom = next(r for r in rows if r["batch_size"] == 8)
    assert "out of memory" in oom["error"] and oom["energy_j"] is None
    assert len({s["pid"] for s in systems}) == 1  # one worker: an OOM does not cost the group its model


def test_a_sampler_killed_mid_trial_gives_null_energy_with_the_reason_and_a_new_sampler(local_ray, shared_cache):
    killed: list[int] = []

    def on_result(row, systems):
        if not killed:
            killed.append(systems[-1]["sampler_pid"])
            _kill_later(killed[0], 0.4)

    specs, rows, systems = _sweep(cpu_config(shared_cache, sampler="codecarbon"), {}, repeats=4, new_tokens=400,
                                  on_result=on_result)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    lost = [r for r in rows if r["energy_j"] is None]
    assert len(lost) == 1, [(r["energy_j"], r.get("energy_reason")) for r in rows]
    assert lost[0]["energy_reason"].startswith("sampler failed") and lost[0]["energy_source"] == "not_measurable"
    after = rows[rows.index(lost[0]) + 1:]
    assert after and all(r["energy_j"] is not None and r["energy_j"] > 0 for r in after)  # a new sampler
    assert len({s["sampler_pid"] for s in systems}) == 2


@pytest.mark.parametrize("reuse, backend, processes", [
    (False, "transformers", 2), (True, "transformers", 1), ("auto", "transformers", 1),
    ("auto", "faulty_backend:NotReusable", 2), ("auto", "faulty_backend:HoldsMemory", 2),
    (True, "faulty_backend:HoldsMemory", 1)])
def test_reuse_workers_keeps_one_process_across_groups(local_ray, shared_cache, reuse, backend, processes):
    """ray.reuse_workers: the slot's next group loads into the same process (model unloaded in
    between); with auto (the default) only where the backend frees its model in-process and
    holds at most reuse_max_left_mb of device memory after unload; false: a fresh one each group."""
    specs, rows, systems = _sweep(cpu_config(shared_cache, reuse_workers=reuse), {"precision": ["baseline", "bf16"]},
                                  repeats=2, backend=backend)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    assert len({r["worker_pid"] for r in rows}) == processes
    assert len(systems) == processes  # one systems row per worker process
    # a reused process says so on its rows: the second group is its group 1
    assert sorted({r["worker_group_index"] for r in rows}) == ([0, 1] if processes == 1 else [0])
    last = [r for r in rows if r.get("process_reusable") is not None]
    assert len(last) == 2 and all(r["process_reusable"] == (backend != "faulty_backend:NotReusable") for r in last)
    assert sorted(r["precision"] for r in rows) == ["bf16", "bf16", "fp32", "fp32"]
    assert sum(r["unload_j"] is not None or r.get("unload_s") is not None for r in rows) == 2  # each group unloads


@pytest.mark.parametrize("steal", [True, False])
def test_one_group_on_two_slots_is_shared_by_work_stealing(local_ray, shared_cache, steal):
    """ray.steal_work: with one model and two slots, the idle slot takes half of the group (cut
    between grid points) and loads the model itself (and either may take the other's last trial
    later); each load's rows share a load_id, and its last row says how many shared it. Off: one
    slot runs the whole group."""
    specs, rows, systems = _sweep(cpu_config(shared_cache, cpu_workers=2, steal_work=steal), {"batch_size": [1, 2]},
                                  repeats=3)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    loads = Counter(r["load_id"] for r in rows)
    assert len({r["worker_pid"] for r in rows}) == (2 if steal else 1) and len(loads) >= (2 if steal else 1)
    for load_id, n in loads.items():
        mine = [r for r in rows if r["load_id"] == load_id]
        last = [r for r in mine if r.get("process_reusable") is not None]  # the row with the load's unload
        assert len(last) == 1 and last[0]["group_trials"] == n  # the count to share the load's energy by
        if steal and mine[0]["worker_group_index"] == 0:  # the first split: a grid point's repeats on one worker
            assert len({r["batch_size"] for r in mine}) == 1


def test_a_worker_killed_in_a_shared_group_is_retried_and_nothing_is_lost(local_ray, shared_cache):
    killed: list[int] = []

    def on_result(row, systems):  # the first worker to finish a trial is killed while it runs its next
        if not killed:
            killed.append(row["worker_pid"])
            _kill_later(killed[0], 0.4)

    specs, rows, systems = _sweep(cpu_config(shared_cache, cpu_workers=2), {"batch_size": [1, 2]}, repeats=3,
                                  new_tokens=400, on_result=on_result)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    retried = [r for r in rows if r["attempts"] == 2]
    assert len(retried) == 1 and "Actor" in retried[0]["retried_errors"]
    assert killed[0] not in {r["worker_pid"] for r in retried}
    assert killed[0] in {s["pid"] for s in systems} and len({r["worker_pid"] for r in rows}) >= 2  # both shared it


def test_a_group_whose_last_queued_trial_is_stolen_still_measures_its_unload(local_ray, shared_cache, monkeypatch):
    """Slot A runs a group of two long trials, slot B a one-trial group: B, done first, takes A's
    second trial while A's first is running (sent as not the last). The scheduler then asks A's
    worker for the group's unload after that trial: every load has exactly one row with its
    unload, as without stealing. On two cores A's worker can start seconds after B's, and B would
    then take A's second trial before A sent its first (the ordinary path, no late unload): a
    victim here is one with a trial in flight, so that the test always takes the late path."""
    from support.plans import TINY

    from energyray.grid import expand, group
    from energyray.orchestrator import scheduler
    from energyray.plan import Plan

    kinds: list[str] = []
    submit, victim = scheduler.Scheduler._submit, scheduler.Scheduler._victim
    monkeypatch.setattr(scheduler.Scheduler, "_submit", lambda self, call, ref: (kinds.append(call.kind),
                                                                                 submit(self, call, ref)))

    def running(self, thief):
        found = victim(self, thief)
        return found if found and self._trial_in_flight(found[0]) else None

    monkeypatch.setattr(scheduler.Scheduler, "_victim", running)
    base = {"model": "tiny-llama", "backend": "transformers", "weights": "real", "batch_size": 1, "task": "qa",
            "prompt_variant": "default", "hardware": "cpu"}
    long_ = expand("late", {}, {**base, "precision": "baseline", "max_new_tokens": 1500}, repeats=2)
    short = expand("late", {}, {**base, "precision": "bf16", "max_new_tokens": 2})
    cfg = cpu_config(shared_cache, cpu_workers=2)
    specs = long_ + short
    p = Plan(groups=group(specs), models={"tiny-llama": TINY}, configs={s.trial_id: {} for s in specs}, cfg=cfg,
             local_hardware="cpu")
    rows, _ = run_collect(p)
    by_id = _once_each(specs, rows)
    assert all(r["status"] == "ok" for r in by_id.values()), [r["error"] for r in rows]
    assert "unload" in kinds  # the late unload ran
    assert len({by_id[s.trial_id]["load_id"] for s in long_}) == 2  # the long group was shared
    for load_id in {r["load_id"] for r in rows}:
        mine = [r for r in rows if r["load_id"] == load_id]
        assert sum(r.get("process_reusable") is not None for r in mine) == 1, mine  # its unload, once
        assert all(r["unload_s"] is not None for r in mine if r.get("process_reusable") is not None)
