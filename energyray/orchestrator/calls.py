"""The event loop's data: a worker slot with its Ray handles, the calls in flight (one class
per kind; `kind` names it in messages) and how a call ended (`Done`, `Failed`, `TimedOut`).
Plain data: the loop (scheduler.py) makes the calls and handles their outcomes."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from energyray.grid import TrialSpec
from energyray.orchestrator.policy import SlotState
from energyray.trial import TrialResult


@dataclass(kw_only=True)
class Slot(SlotState):
    """A slot as the loop holds it: the policy's view plus its Ray handles and bookkeeping."""

    pg: Any
    bundle: dict[str, float]
    sampler: Any = None
    worker: Any = None
    system: dict[str, Any] | None = None
    place_tries: int = 0
    group_started_at: float = 0.0  # monotonic, when its current group (or piece) was started
    trial_sent_at: float = 0.0
    fresh: bool = True  # its current group started a new worker process
    unload_late: bool = False  # its trial in flight became the group's last after it was sent (stolen)
    node_id: str | None = None  # the Ray node its placement group is on
    node_host: Any = None  # the NodeSamplerHost its current worker uses (None: no node samplers)
    workers: int = 0  # workers started on this slot, for their tags
    tag: str = ""  # the current worker's name on its node's samplers: slot<index>-<n>


# -- the calls in flight: one class per kind ------------------------------------------------------
@dataclass
class Call:
    """A Ray call the loop waits for on behalf of a slot; `deadline` is set when it is sent."""

    kind: ClassVar[str]
    slot: Slot
    deadline: float = field(default=0.0, kw_only=True)


@dataclass
class Ready(Call):
    """The slot's placement group is placed (within ray.node_wait_s)."""

    kind: ClassVar[str] = "ready"


@dataclass
class Describe(Call):
    """A new worker's describe(): its process has started and bound its sampler."""

    kind: ClassVar[str] = "describe"


@dataclass
class Load(Call):
    """The worker loads the model of the trial at the head of its queue."""

    kind: ClassVar[str] = "load"
    spec: TrialSpec


@dataclass
class Trial(Call):
    """The worker runs one trial (the head of the slot's queue)."""

    kind: ClassVar[str] = "trial"
    spec: TrialSpec


@dataclass
class Ping(Call):
    """Is the slot's sampler still there (after a trial whose sampler failed)?"""

    kind: ClassVar[str] = "ping"


@dataclass
class Unload(Call):
    """The group's unload, measured after `held`'s trial, which became the last once stolen from."""

    kind: ClassVar[str] = "unload"
    held: TrialResult


@dataclass
class Discard(Call):
    """A gone worker's open node windows, discarded (best effort)."""

    kind: ClassVar[str] = "discard"


# -- how a call ended -----------------------------------------------------------------------------
@dataclass
class Done:
    value: Any


@dataclass
class Failed:
    error: Exception


@dataclass
class TimedOut:
    pass


Outcome = Done | Failed | TimedOut
