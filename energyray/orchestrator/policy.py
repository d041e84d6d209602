"""The scheduler's decisions, as plain functions of plain data (no Ray): which running group
an idle slot takes part of and where its queue is cut, whether a worker process is kept for
the slot's next group, and how often a trial whose worker died is tried again.

The event loop (scheduler.py) asks; it owns the Ray handles and acts on the answers.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from energyray.config import reuse_mode
from energyray.grid import TrialSpec


@dataclass(kw_only=True)
class SlotState:
    """What the policy sees of a worker slot: its hardware, its state and its current group."""

    index: int
    hardware: str
    state: str = "idle"  # idle | busy | placing (waiting for its placement group) | retired
    queue: deque[TrialSpec] = field(default_factory=deque)  # queue[0]: the trial in flight, or next
    done_in_group: int = 0
    group_size: int = 0
    trial_s: list[float] = field(default_factory=list)  # its current group's trials, submit to result


S = TypeVar("S", bound=SlotState)


@dataclass
class StartTimes:
    """Seconds from a group's start to its first trial's window (the process's start, the load,
    the warmup before it): in a fresh process, and in a kept one."""

    fresh: list[float] = field(default_factory=list)
    kept: list[float] = field(default_factory=list)

    def add(self, fresh: bool, seconds: float) -> None:
        (self.fresh if fresh else self.kept).append(seconds)

    def cost(self, fresh: bool) -> float | None:
        """The median start seen so far (the upper one of an even count); None before any."""
        seen = sorted(self.fresh if fresh else self.kept)
        return seen[len(seen) // 2] if seen else None


# -- work stealing ------------------------------------------------------------------------------
def victim(thief: S, slots: Sequence[S], start_cost_s: float | None) -> tuple[S, int] | None:
    """The running group `thief` should take part of, and where to cut its queue (the victim
    keeps queue[:cut]); None where it would not pay.

    The thief takes 1/(w+1) of a queue, w being the slots of its hardware waiting for work
    (itself included), so a group shared at the start splits evenly. Where the thief's start
    (`start_cost_s`) outlasts what the victim keeps (trials × its measured seconds a trial),
    that victim is skipped. Of the rest, the one with the most work left (seconds, or trials
    where none is measured yet) is chosen.
    """
    waiting = 1 + sum(1 for s in slots if s is not thief and s.hardware == thief.hardware
                      and s.state == "idle" and not s.queue)
    best: tuple[float, S, int] | None = None
    for v in slots:
        n = len(v.queue)
        if v is thief or v.hardware != thief.hardware or v.state != "busy" or n < 2:
            continue  # the victim keeps at least its trial in flight (queue[0])
        keep = max(1, n - n // (waiting + 1))
        per_trial = sum(v.trial_s) / len(v.trial_s) if v.trial_s else None
        if per_trial is not None and start_cost_s is not None and start_cost_s >= keep * per_trial:
            continue  # the victim would finish what it keeps before the thief got going
        left = n * (per_trial if per_trial is not None else 1.0)
        if best is None or left > best[0]:
            best = (left, v, keep)
    return None if best is None else (best[1], cut(list(best[1].queue), best[2]))


def cut(queue: Sequence[TrialSpec], at: int) -> int:
    """`at`, or the nearest boundary between grid points (a point's repeats stay on one GPU)
    within a quarter of the queue of it; never before index 1 nor at the end."""
    n = len(queue)
    bounds = [i for i in range(1, n) if queue[i].point != queue[i - 1].point]
    near = min(bounds, key=lambda i: (abs(i - at), i), default=None)
    return near if near is not None and abs(near - at) <= n / 4 else at


# -- keeping a worker process -------------------------------------------------------------------
def keep_worker(reuse: str, last: dict[str, Any] | None, max_left_mb: float, host_replaced: bool = False) -> bool:
    """ray.reuse_workers ("auto" | "true" | "false"): whether the group that just ended (`last`:
    its last row, which carries the unload's fields) leaves a process fit for the slot's next
    group. Never after a row that is not ok, nor where the slot's node sampler host was
    replaced (the process holds the dead one's handle). "auto": where the backend says its
    process is reusable and at most `max_left_mb` of memory stayed allocated after the unload."""
    mode = reuse_mode(reuse)
    if mode == "false" or last is None or last.get("status") != "ok" or host_replaced:
        return False
    if mode == "true":
        return True
    left = last.get("unload_memory_left_mb")
    return bool(last.get("process_reusable")) and (left is None or left <= max_left_mb)


# -- retries ------------------------------------------------------------------------------------
@dataclass
class Retries:
    """The errors of each trial's attempts that did not give it a row (its worker died, or it
    timed out with `retry_timeouts`), and whether it gets another one."""

    max_retries: int = 2
    retry_timeouts: bool = False
    errors: dict[str, list[str]] = field(default_factory=dict)  # trial_id -> one error per attempt

    def of(self, trial_id: str) -> list[str]:
        return self.errors.get(trial_id, [])

    def worker_died(self, charged: Sequence[TrialSpec], msg: str) -> list[TrialSpec]:
        """Count an attempt against each charged trial; those past `max_retries` (given up)."""
        for spec in charged:
            self.errors.setdefault(spec.trial_id, []).append(msg)
        return [s for s in charged if len(self.errors[s.trial_id]) > self.max_retries]

    def timed_out(self, trial_id: str, msg: str) -> bool:
        """A trial past its timeout: whether it runs again (only with `retry_timeouts`, which
        also counts the attempt; otherwise it is a failed row at once)."""
        if not self.retry_timeouts:
            return False
        self.errors.setdefault(trial_id, []).append(msg)
        return len(self.errors[trial_id]) <= self.max_retries
