"""Work stealing (ray.steal_work) as the scheduler applies it: cutting the victim's queue, the
load sizes its rows will carry, the late unload, and steal_work=false. The decisions themselves
are tested on plain data in test_policy.py; tests/integration/test_faults.py runs it through Ray."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from energyray.config import RunConfig
from energyray.grid import TrialSpec, expand
from energyray.orchestrator.scheduler import Scheduler, Slot, Trial
from energyray.plan import Plan


def _specs(batches: list[int], repeats: int) -> list[TrialSpec]:
    return expand("steal", {"batch_size": batches}, {
        "model": "m", "backend": "transformers", "weights": "real", "precision": "baseline", "batch_size": 1,
        "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 8}, repeats=repeats)


def _scheduler(tmp_path: Path, steal: bool = True) -> Scheduler:
    cfg = RunConfig(device="cpu", cache_dir=str(tmp_path))
    cfg.ray.steal_work = steal
    return Scheduler(Plan(groups=[], models={}, configs={}, cfg=cfg), lambda r: None)


def _slots(sched: Scheduler, queues: list[list[TrialSpec]]) -> list[Slot]:
    sched.slots = []
    for i, q in enumerate(queues):
        slot = Slot(index=i, pg=None, bundle={"CPU": 1}, hardware="cpu", queue=deque(q),
                     state="busy" if q else "idle")
        slot.group_size = len(q)
        sched.slots.append(slot)
    return sched.slots


def test_an_idle_slot_takes_half_of_a_group_cut_between_grid_points(tmp_path):
    sched = _scheduler(tmp_path)
    specs = _specs([1, 2, 4, 8], repeats=3)  # 12 trials, 4 grid points of 3 repeats
    victim, thief = _slots(sched, [specs, []])
    assert sched._victim(thief) == (victim, 6)
    piece = sched._take(thief)  # what _steal starts the thief's worker on
    assert piece is not None
    assert [s.batch_size for s in victim.queue] == [1, 1, 1, 2, 2, 2]
    assert [s.batch_size for s in piece] == [4, 4, 4, 8, 8, 8]
    assert victim.group_size == 6
    assert {sched.group_size[s.trial_id] for s in specs} == {6}  # group_trials on the rows to come


def test_slots_waiting_at_the_start_split_a_group_evenly(tmp_path):
    sched = _scheduler(tmp_path)
    specs = _specs([1], repeats=24)
    a, b, c = _slots(sched, [specs, [], []])
    for thief in (b, c):  # b and c are waiting: b takes a third; then c, alone, half of what a has left
        piece = sched._take(thief)
        assert piece is not None
        thief.queue, thief.state = deque(piece), "busy"
    assert [len(s.queue) for s in (a, b, c)] == [8, 8, 8]
    assert sorted(t.trial_id for s in (a, b, c) for t in s.queue) == sorted(t.trial_id for t in specs)


def test_the_thiefs_start_cost_is_the_median_start_of_its_kind(tmp_path):
    sched = _scheduler(tmp_path)
    victim, thief = _slots(sched, [_specs([1], repeats=8), []])
    victim.trial_s = [3.6] * 4  # 3.6 s a trial: it keeps 4, i.e. 14.4 s
    sched.start_times.fresh = [15.0]  # a fresh worker took 15 s to load
    assert sched._victim(thief) is None
    sched.start_times.kept = [1.5]  # a kept process loads in 1.5 s
    thief.worker = object()
    assert sched._victim(thief) == (victim, 4)


def test_steal_work_false_never_robs(tmp_path):
    off = _scheduler(tmp_path, steal=False)
    _, thief = _slots(off, [_specs([1], repeats=8), []])
    assert off._victim(thief) is None


def test_taking_the_last_queued_trial_of_a_running_trial_asks_for_a_late_unload(tmp_path):
    """The victim's trial in flight was sent as not its group's last: once the rest is taken,
    the scheduler must measure the group's unload after it (an Unload call, Scheduler._on_trial)."""
    sched = _scheduler(tmp_path)
    victim, thief = _slots(sched, [_specs([1], repeats=2), []])
    sched.pending = {}
    assert sched._take(thief) is not None and not victim.unload_late  # still loading: its trial will be the last
    victim.queue = deque(_specs([1], repeats=2))
    sched.pending = {"ref": Trial(victim, victim.queue[0])}
    assert sched._take(thief) is not None and victim.unload_late and len(victim.queue) == 1
