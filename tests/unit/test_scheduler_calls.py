"""The event loop's dispatch without a Ray cluster: each kind of call has its own timeout, and
a call past its deadline goes to its kind's handler (here a trial's: a failed row, or a retry)."""

from __future__ import annotations

from collections import deque
from pathlib import Path

from energyray.config import RunConfig
from energyray.grid import expand
from energyray.orchestrator.calls import Describe, Discard, Load, Ping, Ready, Slot, Trial, Unload
from energyray.orchestrator.scheduler import GET_TIMEOUT_S, PING_TIMEOUT_S, Scheduler
from energyray.plan import Plan
from energyray.trial import TrialResult


def _scheduler(tmp_path: Path, **ray: object) -> tuple[Scheduler, list[TrialResult]]:
    cfg = RunConfig(device="cpu", cache_dir=str(tmp_path))
    for k, v in ray.items():
        setattr(cfg.ray, k, v)
    rows: list[TrialResult] = []
    sched = Scheduler(Plan(groups=[], models={}, configs={}, cfg=cfg), rows.append)
    sched.work = {"cpu": deque()}
    return sched, rows


def _busy_slot(sched: Scheduler, n: int) -> Slot:
    specs = expand("calls", {}, {
        "model": "m", "backend": "transformers", "weights": "real", "precision": "baseline", "batch_size": 1,
        "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 8}, repeats=n)
    slot = Slot(index=0, pg=None, bundle={"CPU": 1}, hardware="cpu", queue=deque(specs), state="busy")
    sched.slots = [slot]
    return slot


def test_each_kind_of_call_has_its_own_timeout(tmp_path):
    sched, _ = _scheduler(tmp_path, load_timeout_s=111.0, trial_timeout_s=222.0, node_wait_s=33.0)
    slot = _busy_slot(sched, 1)
    spec, held = slot.queue[0], TrialResult(row={})
    assert {type(c).__name__: sched._timeout_s(c) for c in (
        Ready(slot), Describe(slot), Load(slot, spec), Trial(slot, spec), Ping(slot), Unload(slot, held),
        Discard(slot))} == {"Ready": 33.0, "Describe": GET_TIMEOUT_S, "Load": 111.0, "Trial": 222.0,
                            "Ping": PING_TIMEOUT_S, "Unload": 111.0, "Discard": GET_TIMEOUT_S}


def test_a_trial_past_its_deadline_is_a_failed_row_and_the_rest_goes_to_a_fresh_worker(tmp_path):
    sched, rows = _scheduler(tmp_path, trial_timeout_s=5.0)
    slot = _busy_slot(sched, 3)
    first, *rest = list(slot.queue)
    sched._handle("ref", Trial(slot, first), ready=False)
    assert [(r.row["trial_id"], r.row["status"], r.row["error"], r.row["attempts"]) for r in rows] == [
        (first.trial_id, "failed", "timed out after 5 s (trial)", 1)]
    assert list(sched.work["cpu"]) == [rest] and slot.state == "idle" and not slot.queue


def test_with_retry_timeouts_a_trial_past_its_deadline_runs_again_first(tmp_path):
    sched, rows = _scheduler(tmp_path, trial_timeout_s=5.0, retry_timeouts=True, max_retries=1)
    slot = _busy_slot(sched, 2)
    group = list(slot.queue)
    sched._handle("ref", Trial(slot, group[0]), ready=False)
    assert rows == [] and list(sched.work["cpu"]) == [group]
    slot.queue, slot.state = deque(sched.work["cpu"].popleft()), "busy"
    sched._handle("ref", Trial(slot, group[0]), ready=False)  # past max_retries: its row
    # attempts is the timeouts counted plus one, as before the calls were typed (2 ran)
    assert [(r.row["status"], r.row["attempts"]) for r in rows] == [("failed", 3)]
    assert rows[0].row["retried_errors"] == "timed out after 5 s (trial)\ntimed out after 5 s (trial)"


def test_a_load_past_its_deadline_gives_every_trial_of_the_group_a_row(tmp_path):
    sched, rows = _scheduler(tmp_path, load_timeout_s=7.0)
    slot = _busy_slot(sched, 2)
    sched._handle("ref", Load(slot, slot.queue[0]), ready=False)
    assert [r.row["error"] for r in rows] == ["load timed out after 7 s (load)"] * 2
    assert not sched.work["cpu"]


def test_a_discard_past_its_deadline_is_dropped(tmp_path):
    sched, rows = _scheduler(tmp_path)
    slot = _busy_slot(sched, 2)
    sched._handle("ref", Discard(slot), ready=False)
    assert rows == [] and len(slot.queue) == 2 and slot.state == "busy"
