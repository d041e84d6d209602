"""The scheduler's decisions (orchestrator/policy.py) on plain data, without Ray: which running
group an idle slot takes part of and where its queue is cut, whether a worker process is kept
for the next group, and how often a trial is tried again."""

from __future__ import annotations

import sys
from collections import deque

import pytest

from energyray.grid import TrialSpec, expand
from energyray.orchestrator import policy
from energyray.orchestrator.policy import Retries, SlotState, StartTimes


def _specs(batches: list[int], repeats: int) -> list[TrialSpec]:
    return expand("steal", {"batch_size": batches}, {
        "model": "m", "backend": "transformers", "weights": "real", "precision": "baseline", "batch_size": 1,
        "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 8}, repeats=repeats)


def _slots(queues: list[list[TrialSpec]]) -> list[SlotState]:
    return [SlotState(index=i, hardware="cpu", queue=deque(q), state="busy" if q else "idle", group_size=len(q))
            for i, q in enumerate(queues)]


def _steal(thief: SlotState, slots: list[SlotState], cost: float | None = None) -> list[TrialSpec]:
    """What the scheduler does with the answer: the victim keeps queue[:cut], the thief runs the rest."""
    found = policy.victim(thief, slots, cost)
    assert found is not None
    victim, cut = found
    rest = list(victim.queue)
    victim.queue = deque(rest[:cut])
    thief.queue, thief.state = deque(rest[cut:]), "busy"
    return rest[cut:]


def test_the_policy_module_imports_no_ray():
    import subprocess

    code = "import energyray.orchestrator.policy, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_an_idle_slot_takes_half_of_a_group_cut_between_grid_points():
    specs = _specs([1, 2, 4, 8], repeats=3)  # 12 trials, 4 grid points of 3 repeats
    victim, thief = _slots([specs, []])
    assert policy.victim(thief, [victim, thief], None) == (victim, 6)
    piece = _steal(thief, [victim, thief])
    assert [s.batch_size for s in victim.queue] == [1, 1, 1, 2, 2, 2]
    assert [s.batch_size for s in piece] == [4, 4, 4, 8, 8, 8]


def test_slots_waiting_at_the_start_split_a_group_evenly():
    specs = _specs([1], repeats=24)
    slots = _slots([specs, [], []])
    a, b, c = slots
    assert policy.victim(b, slots, None) == (a, 16)  # b and c are waiting: b takes a third
    _steal(b, slots)
    assert policy.victim(c, slots, None) == (a, 8)  # then c, alone, half of what a (the most left) has
    _steal(c, slots)
    assert [len(s.queue) for s in (a, b, c)] == [8, 8, 8]
    assert sorted(t.trial_id for s in slots for t in s.queue) == sorted(t.trial_id for t in specs)


def test_repeats_of_one_point_stay_together_where_a_boundary_is_near():
    specs = _specs([1, 2], repeats=5)  # 10 trials: the middle cut (5) is a boundary
    assert policy.cut(specs, 5) == 5
    specs = _specs([1, 2, 4], repeats=4)  # 12 trials: a cut at 6 moves to the boundary at 4 or 8
    assert policy.cut(specs, 6) in (4, 8)
    one = _specs([1], repeats=8)  # no boundary: cut where asked
    assert policy.cut(one, 4) == 4


def test_a_cut_moves_only_to_a_boundary_within_a_quarter_of_the_queue():
    specs = _specs([1, 2], repeats=6)  # 12 trials, one boundary at 6
    assert policy.cut(specs, 4) == 6  # 2 away, within 12 / 4 = 3
    assert policy.cut(specs, 3) == 6  # 3 away: still within
    assert policy.cut(specs, 2) == 2  # 4 away: too far, cut where asked
    assert policy.cut(specs, 10) == 10
    ties = _specs([1, 2, 4], repeats=4)  # boundaries at 4 and 8, equally near 6: the earlier one
    assert policy.cut(ties, 6) == 4


def test_a_cut_never_falls_before_index_1_nor_at_the_end():
    for n in range(2, 12):
        for batches, repeats in (([1, 2], n), ([1] * 1, n), ([1, 2, 4, 8], 1)):
            q = _specs(batches, repeats)
            for at in range(1, len(q)):
                assert 1 <= policy.cut(q, at) < len(q)
    slots = _slots([_specs([1, 2], repeats=1), []])  # two points, one trial each: keep 1, give 1
    assert policy.victim(slots[1], slots, None) == (slots[0], 1)


def test_no_steal_where_the_thiefs_start_outlasts_what_the_victim_keeps():
    slots = _slots([_specs([1], repeats=8), []])
    victim, thief = slots
    victim.trial_s = [3.6] * 4  # 3.6 s a trial: it keeps 4, i.e. 14.4 s
    assert policy.victim(thief, slots, 15.0) is None  # a fresh worker took 15 s to load
    assert policy.victim(thief, slots, 14.4) is None  # no gain at all: not worth it either
    assert policy.victim(thief, slots, 1.5) == (victim, 4)  # a kept process loads in 1.5 s
    assert policy.victim(thief, slots, None) == (victim, 4)  # no start measured yet: steal


def test_start_cost_is_the_median_start_of_its_kind():
    times = StartTimes()
    assert times.cost(fresh=True) is None and times.cost(fresh=False) is None
    for s in (15.0, 3.0, 9.0):
        times.add(True, s)
    times.add(False, 1.5)
    assert times.cost(fresh=True) == 9.0 and times.cost(fresh=False) == 1.5
    times.add(True, 20.0)  # an even count: the upper of the two middle ones
    assert times.cost(fresh=True) == 15.0


def test_the_victim_with_the_most_work_left_is_chosen():
    slots = _slots([_specs([1], repeats=10), _specs([2], repeats=6), []])
    short, long_, thief = slots
    short.trial_s, long_.trial_s = [1.0], [5.0]  # 10 s left against 30 s
    assert policy.victim(thief, slots, None) == (long_, 3)
    short.trial_s = long_.trial_s = []  # none measured: the longest queue
    assert policy.victim(thief, slots, None) == (short, 5)


@pytest.mark.parametrize("queue_len", [0, 1, 2])
def test_a_victim_keeps_its_trial_in_flight(queue_len):
    slots = _slots([_specs([1], repeats=3)[:queue_len], []])
    victim, thief = slots
    victim.state = "busy"
    assert policy.victim(thief, slots, None) == (None if queue_len < 2 else (victim, 1))


def test_other_hardware_and_slots_not_busy_are_never_robbed():
    slots = _slots([_specs([1], repeats=8), []])
    victim, thief = slots
    victim.hardware = "h100"
    assert policy.victim(thief, slots, None) is None
    victim.hardware = "cpu"
    for state in ("placing", "retired", "idle"):
        victim.state = state
        assert policy.victim(thief, slots, None) is None
    victim.state = "busy"
    assert policy.victim(thief, slots, None) == (victim, 4)
    assert policy.victim(victim, slots, None) is None  # never from itself


def test_waiting_slots_of_other_hardware_do_not_shrink_the_piece():
    slots = _slots([_specs([1], repeats=12), [], []])
    slots[2].hardware = "h100"
    assert policy.victim(slots[1], slots, None) == (slots[0], 6)


# -- keeping a worker process ---------------------------------------------------------------------
OK = {"status": "ok", "process_reusable": True, "unload_memory_left_mb": 100.0}


@pytest.mark.parametrize("reuse", ["auto", "true", True])
def test_a_process_is_kept_after_an_ok_group(reuse):
    assert policy.keep_worker(reuse, OK, 256.0)


@pytest.mark.parametrize("reuse", ["false", False])
def test_reuse_false_never_keeps(reuse):
    assert not policy.keep_worker(reuse, OK, 256.0)


@pytest.mark.parametrize("reuse", ["auto", "true"])
def test_never_kept_after_a_failed_row_no_row_or_a_replaced_node_host(reuse):
    assert not policy.keep_worker(reuse, {**OK, "status": "failed"}, 256.0)
    assert not policy.keep_worker(reuse, None, 256.0)
    assert not policy.keep_worker(reuse, OK, 256.0, host_replaced=True)


def test_auto_keeps_only_a_reusable_process_with_little_memory_left():
    assert not policy.keep_worker("auto", {**OK, "process_reusable": False}, 256.0)
    assert not policy.keep_worker("auto", {**OK, "unload_memory_left_mb": 300.0}, 256.0)
    assert policy.keep_worker("auto", {**OK, "unload_memory_left_mb": 256.0}, 256.0)
    assert policy.keep_worker("auto", {**OK, "unload_memory_left_mb": None}, 256.0)  # not measured
    assert policy.keep_worker("true", {**OK, "process_reusable": False, "unload_memory_left_mb": 9e9}, 256.0)


# -- retries --------------------------------------------------------------------------------------
def test_a_trial_whose_worker_dies_is_given_up_after_max_retries():
    specs = _specs([1, 2], repeats=1)
    r = Retries(max_retries=2)
    assert r.worker_died(specs, "died 1") == []  # both charged (it died while loading)
    assert r.worker_died(specs[:1], "died 2") == []
    assert r.worker_died(specs[:1], "died 3") == [specs[0]]  # a third death: given up
    assert r.of(specs[0].trial_id) == ["died 1", "died 2", "died 3"]
    assert r.of(specs[1].trial_id) == ["died 1"]
    assert r.of("never-ran") == []
    assert Retries(max_retries=0).worker_died(specs, "x") == specs


def test_a_timeout_is_retried_only_with_retry_timeouts():
    tid = _specs([1], repeats=1)[0].trial_id
    off = Retries(max_retries=2)
    assert not off.timed_out(tid, "timed out") and off.of(tid) == []  # a failed row at once, 1 attempt
    on = Retries(max_retries=1, retry_timeouts=True)
    assert on.timed_out(tid, "t1")
    assert not on.timed_out(tid, "t2")  # past max_retries: a failed row, with both attempts counted
    assert on.of(tid) == ["t1", "t2"]
