"""The event loop: a `ray.wait` loop over a work queue of load groups.

The orchestrator's modules: `plan.py` (what the driver hands over), `cluster.py` (starting or
joining Ray, the slots each hardware target gets), `policy.py` (the decisions: stealing,
keeping a worker, retries; no Ray), `calls.py` (the slots, the calls in flight and their
outcomes), this loop, and `actors.py` (what runs inside the actors).

One slot per GPU (or `ray.cpu_workers` slots on a cluster without GPUs), each a STRICT_PACK
placement group holding a long-lived sampler actor and, one group at a time, a fresh worker
actor: a worker loads its group's model once, runs its trials, and is then killed (a new
process is the reliable way to free GPU memory). Each call in flight is a typed `Call` (one
class per kind, each with its own timeout); when it returns, fails or passes its deadline,
`_handle` gives its outcome (`Done`, `Failed`, `TimedOut`) to that kind's handler. Every
`ray.get` has a timeout.

Faults (each leaves exactly one row per trial, and the sweep goes on):

- a worker that dies mid-trial (killed, crashed, its node lost): the trial and the rest of
  its group go back on the queue for a fresh worker, up to `ray.max_retries` times per
  trial; then the trial is a `failed` row saying how often it died. A worker that dies
  while loading counts against every trial of its group (`policy.Retries`).
- a trial past `ray.trial_timeout_s`: a `failed` row (retried only with `ray.retry_timeouts`);
  the worker is killed and the rest of its group goes to a fresh one.
- out of memory (CUDA, or Ray's memory monitor killing the worker): an `oom` row, no retry.
- a sampler that dies: the trial in flight keeps its row, with null energy and the reason
  (the runner records it); the slot gets a new sampler and the rest of the group a fresh
  worker, so later trials are measured again.
- a lost node: its slots' placement groups are rescheduled by Ray where the cluster still
  has room; a slot whose placement group cannot be placed within `ray.node_wait_s` is
  retired, and its hardware's groups run on the remaining slots, or fail with the reason
  when none is left.

Work stealing (`ray.steal_work`, default true; the decision is `policy.victim`): a slot with
nothing queued for its hardware takes the back part of a running group's queue and loads that
model itself. It takes 1/(w+1) of it, w being the slots then waiting for work, so a group
shared at the start splits evenly; later it steals only where that pays: its measured start
(a fresh process, or a load and warmup in a kept one) shorter than what the victim keeps
(trials × the victim's measured seconds a trial). So one model on two GPUs uses both, and the
last group of a sweep does not leave the other GPUs idle. The cut falls between grid points
where one is near (a point's repeats stay on one GPU). The victim keeps at least its trial in
flight; where that one was sent as not the group's last, the loop asks for the group's unload
after it (an `Unload` call) and puts it on that trial's row, as usual. Each load's rows share
a `load_id`; `group_trials` is the count planned for that load when the row was written (the
load's last row has the final count).

Node-level samplers (`sampler.pdu`, `sampler.node_cpu`): one node sampler host per node that
runs workers, started when a slot is first placed there and pinned to it; every worker on the
node opens its windows on it, so overlapping trials share the node's energy by a stated rule
(samplers/node.py). Each worker has a tag (`slot<i>-<n>`); when the worker goes, its open
node windows are discarded. A host that dies (with its node, or alone) gives the rows of the
workers still using it null node figures with the reason; the node's next worker gets a new
one. None is started where no node-level sampler is configured.
"""

from __future__ import annotations

import json
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from energyray.config import bytecode_mode, reuse_mode, trial_process_mode
from energyray.grid import TrialSpec
from energyray.orchestrator import policy
from energyray.orchestrator.actors import NodeSamplerHost, SamplerHost, WorkerHost
from energyray.orchestrator.calls import (
    Call,
    Describe,
    Discard,
    Done,
    Failed,
    Load,
    Outcome,
    Ping,
    Ready,
    Slot,
    TimedOut,
    Trial,
    Unload,
)
from energyray.orchestrator.cluster import init_ray, pools
from energyray.orchestrator.policy import Retries, StartTimes
from energyray.plan import Plan
from energyray.registry import BACKEND_SETTINGS
from energyray.trial import TrialResult, record
from energyray.trial.process import TrialProcessDied

GET_TIMEOUT_S = 60.0
PING_TIMEOUT_S = 15.0


def backend_settings(cfg: Any) -> dict[str, Any]:
    """The RunConfig sections backends may ask for (their `settings`), by name, and `tasks`,
    which the trial runner reads (the items' limit and sample, file tasks, the judge)."""
    out = {name: getattr(cfg, name) for name in BACKEND_SETTINGS if hasattr(cfg, name)}
    if hasattr(cfg, "tasks"):
        out["tasks"] = cfg.tasks
    if hasattr(cfg, "store"):  # image trials save their images under it (absolute: a worker's cwd may differ)
        out["store_path"] = str(Path(cfg.store.path).resolve())
    return out


def _failed(spec: TrialSpec, error: str, status: str = "failed", **extra: Any) -> TrialResult:
    return TrialResult(row=record.failed_row(spec, error, status, **extra))


def _cause(e: BaseException) -> BaseException:
    return e.cause if getattr(e, "cause", None) is not None else e  # type: ignore[attr-defined]


def _first_line(e: BaseException) -> str:
    return (str(e).splitlines() or [""])[0]


class Scheduler:
    """One sweep's run: slots, the queue of groups, the calls in flight, retry counts."""

    def __init__(self, plan: Plan, on_result: Callable[[TrialResult], None],
                 on_system: Callable[[dict[str, Any]], None] | None = None, progress: Any = None) -> None:
        self.plan = plan
        self.cfg = plan.cfg
        self.on_result = on_result
        self.on_system = on_system
        self.progress = progress
        self.Sampler = ray.remote(SamplerHost)
        self.Worker = ray.remote(WorkerHost)
        self.NodeHost = ray.remote(NodeSamplerHost)
        self.node_hosts: dict[str, Any] = {}  # Ray node id -> its NodeSamplerHost
        self.node_hardware: dict[str, str] = {}
        self.work: dict[str, deque[list[TrialSpec]]] = {}
        self.slots: list[Slot] = []
        self.pending: dict[Any, Call] = {}
        self.emitted: set[str] = set()
        self.group_size: dict[str, int] = {}  # trial_id -> trials in its load group (GROUP_RULE)
        ray_cfg = self.cfg.ray
        self.retries = Retries(int(getattr(ray_cfg, "max_retries", 2)), bool(getattr(ray_cfg, "retry_timeouts", False)))
        self.node_wait_s = float(getattr(ray_cfg, "node_wait_s", 120.0))
        self.reuse = reuse_mode(getattr(ray_cfg, "reuse_workers", "auto"))
        self.bytecode = bytecode_mode(getattr(ray_cfg, "bytecode_cache", "auto"))
        self.trial_process = trial_process_mode(getattr(ray_cfg, "trial_process", "child"))
        self.reuse_max_left_mb = float(getattr(ray_cfg, "reuse_max_left_mb", 256.0))
        self.steal = bool(getattr(ray_cfg, "steal_work", True))
        self.start_times = StartTimes()

    # -- setup --------------------------------------------------------------------------------
    def start(self) -> None:
        shapes = pools(self.plan, init_ray(self.cfg))  # raises before anything starts
        self.work = {hw: deque() for hw in shapes}
        for g in self.plan.groups:
            self.work[g[0].hardware].append(list(g))
            self.group_size.update({s.trial_id: len(g) for s in g})
        for hw, (count, bundle) in shapes.items():
            # with stealing, a group of n trials can keep n slots busy (a victim keeps one)
            wanted = sum(len(g) for g in self.work[hw]) if self.steal else len(self.work[hw])
            for _ in range(min(count, wanted)):
                slot = Slot(index=len(self.slots), hardware=hw, bundle=bundle,
                             pg=placement_group([bundle], strategy="STRICT_PACK"))
                self.slots.append(slot)
                self._place(slot)

    def _strategy(self, slot: Slot) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(slot.pg, placement_group_bundle_index=0)

    def _place(self, slot: Slot) -> None:
        """Wait (in the loop, not blocking) for the slot's placement group, then start its sampler."""
        slot.state = "placing"
        self._submit(Ready(slot), slot.pg.ready())
        self._show(slot, "waiting for a node")

    def _new_sampler(self, slot: Slot) -> None:
        if slot.sampler is not None:
            ray.kill(slot.sampler, no_restart=True)
        slot.sampler = self.Sampler.options(num_cpus=0, scheduling_strategy=self._strategy(slot)).remote(self.cfg.sampler)

    def _node_host(self, slot: Slot) -> Any:
        """The node sampler host of the slot's node, started on first use; None where no
        node-level sampler is configured for this slot (node_cpu counts beside a GPU only)."""
        s, gpu = self.cfg.sampler, bool(slot.bundle.get("GPU"))
        if slot.node_id is None or (s.pdu is None and (not gpu or s.node_cpu == "none")):
            return None
        if slot.node_id not in self.node_hosts:
            pin = NodeAffinitySchedulingStrategy(slot.node_id, soft=False)
            # max_concurrency 1: its calls are short, and it calls only SamplerHosts, which never call it
            self.node_hosts[slot.node_id] = self.NodeHost.options(
                num_cpus=0, scheduling_strategy=pin, max_restarts=0).remote(s, gpu)
            self.node_hardware[slot.node_id] = slot.hardware
        return self.node_hosts[slot.node_id]

    def _check_node(self, slot: Slot) -> None:
        """A node sampler call failed: if its host is gone (or hangs), the node's next worker
        gets a new one; the rest of this group goes on, its rows saying why they lack the figure."""
        host: Any = self.node_hosts.get(slot.node_id or "")
        if host is None or host is not slot.node_host:  # none, or already replaced
            return
        try:
            ray.get(host.describe.remote(), timeout=PING_TIMEOUT_S)
        except Exception:
            ray.kill(host, no_restart=True)
            self.node_hosts.pop(slot.node_id or "", None)

    # -- calls ----------------------------------------------------------------------------------
    def _timeout_s(self, call: Call) -> float:
        """Each kind's deadline, counted from when the call is sent."""
        r = self.cfg.ray
        return {Ready: self.node_wait_s, Describe: GET_TIMEOUT_S, Ping: PING_TIMEOUT_S, Discard: GET_TIMEOUT_S,
                Load: r.load_timeout_s, Unload: r.load_timeout_s, Trial: r.trial_timeout_s}[type(call)]

    def _submit(self, call: Call, ref: Any) -> None:
        call.deadline = time.monotonic() + self._timeout_s(call)
        self.pending[ref] = call

    def _describe(self, slot: Slot) -> None:
        self._submit(Describe(slot), slot.worker.describe.remote())

    def _ping(self, slot: Slot) -> None:
        self._submit(Ping(slot), slot.sampler.describe.remote())

    def _load(self, slot: Slot) -> None:
        spec = slot.queue[0]
        self._submit(Load(slot, spec), slot.worker.load.remote(spec, self.plan.models[spec.model]))

    def _send_trial(self, slot: Slot) -> None:
        spec = slot.queue[0]
        ref = slot.worker.run.remote(spec, self.plan.models[spec.model], self.plan.configs[spec.trial_id],
                                     len(slot.queue) == 1)
        slot.trial_sent_at = time.monotonic()
        self._submit(Trial(slot, spec), ref)
        self._show(slot, f"{spec.model} {spec.precision} b={spec.batch_size} {spec.task}",
                   slot.done_in_group, slot.group_size)

    def _trial_in_flight(self, slot: Slot) -> bool:
        return any(isinstance(c, Trial) and c.slot is slot for c in self.pending.values())

    def _start_group(self, slot: Slot, group: list[TrialSpec]) -> None:
        slot.queue = deque(group)
        slot.state, slot.done_in_group, slot.group_size = "busy", 0, len(group)
        slot.group_started_at, slot.trial_s, slot.fresh = time.monotonic(), [], slot.worker is None
        slot.unload_late = False
        if slot.worker is not None:  # ray.reuse_workers: the last group's process, its model unloaded
            self._load(slot)
            self._show(slot, f"loading {group[0].model} {group[0].precision} (same process)", 0, len(group))
            return
        extra = {k: v for k, v in slot.bundle.items() if k not in ("CPU", "GPU")}
        opts: dict[str, Any] = {"num_cpus": slot.bundle.get("CPU", 1), "num_gpus": slot.bundle.get("GPU", 0),
                                "scheduling_strategy": self._strategy(slot), "max_restarts": 0}
        if extra:
            opts["resources"] = extra
        c = self.cfg
        slot.node_host = self._node_host(slot)
        slot.workers += 1
        slot.tag = f"slot{slot.index}-{slot.workers}"
        slot.worker = self.Worker.options(**opts).remote(slot.sampler, c.generation, c.cache_dir, c.device, c.seed,
                                                         c.measurement, backend_settings(c),
                                                         slot.node_host, slot.tag, c.sampler,
                                                         group[0].backend if c.ray.preload_backend else None,
                                                         self.bytecode, self.trial_process)
        self._describe(slot)
        self._show(slot, f"loading {group[0].model} {group[0].precision}", 0, len(group))

    def _release(self, slot: Slot) -> None:
        if slot.worker is not None:
            ray.kill(slot.worker, no_restart=True)
            if slot.node_host is not None:  # its open node windows would take shares for ever
                self._submit(Discard(slot), slot.node_host.discard.remote(f"{slot.tag}:"))
        slot.worker = None
        slot.queue = deque()
        if slot.state == "busy":
            slot.state = "idle"
            self._show(slot, "idle")

    # -- results --------------------------------------------------------------------------------
    def _emit(self, result: TrialResult) -> None:
        tid = result.row["trial_id"]
        if tid in self.emitted:  # never twice, whatever a retry raced with
            return
        self.emitted.add(tid)
        errors = self.retries.of(tid)
        record.finish(result.row, attempts=len(errors) + 1, group_trials=self.group_size.get(tid),
                      retried_errors=errors)
        self.on_result(result)
        if self.progress is not None:
            self.progress.advance(result.row)

    def _requeue(self, slot: Slot, rest: list[TrialSpec]) -> None:
        if rest:
            self.work[slot.hardware].appendleft(rest)

    def _worker_lost(self, call: Call, msg: str) -> None:
        """The worker died (killed, crashed, node lost): count an attempt against the trial in
        flight (or, during load, against every trial of the group), retry on a fresh worker."""
        slot = call.slot
        rest = list(slot.queue)
        gave_up = self.retries.worker_died([call.spec] if isinstance(call, Trial) else rest, msg)
        for spec in gave_up:
            n = len(self.retries.of(spec.trial_id))
            self._emit(_failed(spec, f"worker died {n} times (ray.max_retries={self.retries.max_retries}); "
                                     f"last: {msg}", attempts=n, retryable=True))
        self._release(slot)
        self._requeue(slot, [s for s in rest if s not in gave_up])
        self._check_slot(slot)

    def _check_slot(self, slot: Slot) -> None:
        """After a death: is the slot's sampler still there? If not, wait for the placement
        group (Ray moves it off a dead node where it can) and start a new sampler."""
        try:
            ray.get(slot.sampler.describe.remote(), timeout=PING_TIMEOUT_S)
        except Exception:
            slot.sampler = None
            self._place(slot)

    # -- the handlers: one per kind of call -------------------------------------------------------
    def _handle(self, ref: Any, call: Call, ready: bool) -> None:
        """A call that returned or passed its deadline: its outcome to its kind's handler."""
        out = self._outcome(ref, ready)
        match call:
            case Ready():
                self._on_ready(call, out)
            case Describe():
                self._on_describe(call, out)
            case Load():
                self._on_load(call, out)
            case Trial():
                self._on_trial(call, out)
            case Ping():
                self._on_ping(call, out)
            case Unload():
                self._on_unload(call, out)
            case Discard():
                pass  # best effort: a node sampler host that is gone has nothing to discard

    @staticmethod
    def _outcome(ref: Any, ready: bool) -> Outcome:
        if not ready:
            return TimedOut()
        try:
            return Done(ray.get(ref, timeout=GET_TIMEOUT_S))
        except Exception as e:
            return Failed(e)

    def _timed_out(self, call: Call) -> str:
        return f"timed out after {self._timeout_s(call):.0f} s ({call.kind})"

    def _on_ready(self, call: Ready, out: Outcome) -> None:
        slot = call.slot
        match out:
            case TimedOut():
                self._retire(slot, f"no node could hold this slot's bundle {slot.bundle} for {self.node_wait_s:.0f} s "
                                   "(a node lost?)")
            case Failed(error=e):  # the check itself may have landed on a node that was dying: ask again
                slot.place_tries += 1
                if slot.place_tries > 5:
                    self._retire(slot, f"its placement group kept failing: {type(e).__name__}")
                else:
                    self._submit(Ready(slot), slot.pg.ready())
            case Done():
                slot.place_tries = 0
                slot.node_id = (ray.util.placement_group_table(slot.pg).get("bundles_to_node_id") or {}).get(0)
                self._new_sampler(slot)
                self._node_host(slot)  # starts the node's samplers while the slot waits for work
                slot.state = "idle"
                self._show(slot, "idle")

    def _on_describe(self, call: Describe, out: Outcome) -> None:
        slot = call.slot
        match out:
            case Done(value=info):
                slot.system = {**info, "hardware": slot.hardware, "slot": slot.index}
                if self.on_system is not None:
                    self.on_system(slot.system)
                self._load(slot)
            case TimedOut():  # the worker never started (its node gone, or no room): a fresh one
                self._worker_lost(call, f"the worker did not start within {GET_TIMEOUT_S:.0f} s")
            case Failed(error=e):
                self._call_failed(call, e)

    def _on_load(self, call: Load, out: Outcome) -> None:
        match out:
            case Done():
                self._send_trial(call.slot)
            case TimedOut():
                msg = self._timed_out(call)
                self._fail(call, msg, load_msg=f"load {msg}", retryable=True)
            case Failed(error=e):
                self._call_failed(call, e)

    def _on_trial(self, call: Trial, out: Outcome) -> None:
        match out:
            case Done(value=result):
                self._trial_returned(call, result)
            case TimedOut():
                msg = self._timed_out(call)
                if self.retries.timed_out(call.spec.trial_id, msg):
                    rest = list(call.slot.queue)  # this trial first again, on a fresh worker
                    self._release(call.slot)
                    self._requeue(call.slot, rest)
                else:
                    self._fail(call, msg, retryable=True)
            case Failed(error=e):
                self._call_failed(call, e)

    def _on_ping(self, call: Ping, out: Outcome) -> None:
        match out:
            case Done():  # the sampler answered: go on with the group
                self._next(call.slot)
            case TimedOut():
                self._sampler_lost(call.slot, "the sampler stopped answering")
            case Failed(error=e):
                self._call_failed(call, e)

    def _on_unload(self, call: Unload, out: Outcome) -> None:
        """The late unload (see _take): the held trial's row gets its fields."""
        match out:
            case Done(value=result):
                self._trial_done(call.slot, result)
            case TimedOut():
                self._unload_failed(call, self._timed_out(call))
            case Failed(error=e):
                cause = _cause(e)
                self._unload_failed(call, f"{type(cause).__name__}: {_first_line(cause)}")

    def _call_failed(self, call: Describe | Load | Trial | Ping, e: Exception) -> None:
        """A call to the slot's worker (a ping: to its sampler) raised."""
        match e:
            case ray.exceptions.OutOfMemoryError():  # Ray's memory monitor killed the worker
                self._fail(call, f"host out of memory: Ray killed the worker: {str(e).splitlines()[0]}", "oom")
            case ray.exceptions.RayActorError() if isinstance(call, Ping):
                self._sampler_lost(call.slot, f"the sampler died: {type(e).__name__}")
            case ray.exceptions.RayActorError():
                self._worker_lost(call, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            case ray.exceptions.RayTaskError() if isinstance(_cause(e), TrialProcessDied):  # as a worker death
                self._worker_lost(call, f"{type(_cause(e)).__name__}: {_cause(e)}")
            case ray.exceptions.RayTaskError():
                cause = _cause(e)
                msg = f"{type(cause).__name__}: {cause}"
                status = getattr(cause, "status", "oom" if "out of memory" in msg.lower() else "failed")
                self._fail(call, msg, status, load_msg=f"load failed: {msg}",
                           retryable=bool(getattr(cause, "retryable", False)))
            case _:
                raise e

    def _trial_returned(self, call: Trial, result: TrialResult) -> None:
        slot = call.slot
        slot.queue.popleft()
        slot.done_in_group += 1
        slot.trial_s.append(time.monotonic() - slot.trial_sent_at)
        if slot.done_in_group == 1 and result.row.get("status") == "ok":
            window = float(result.row.get("window_s") or 0.0)
            self.start_times.add(slot.fresh, time.monotonic() - slot.group_started_at - window)
        if slot.unload_late and not slot.queue:
            slot.unload_late = False
            self._submit(Unload(slot, result), slot.worker.unload_after.remote(result))
            self._show(slot, "unloading (its last queued trial went to another slot)",
                       slot.done_in_group, slot.group_size)
            return
        self._trial_done(slot, result)

    def _trial_done(self, slot: Slot, value: TrialResult) -> None:
        """A trial's result (with its group's unload where it was the last): emit it, go on."""
        self._emit(value)
        reason = str(value.row.get("energy_reason") or "")
        if any(str(value.row.get(f"{role}_energy_reason") or "").startswith("node sampler failed")
               for role in ("wall", "cpu")):
            self._check_node(slot)
        if reason.startswith("sampler failed") and slot.queue:
            self._ping(slot)  # is the sampler gone? then the rest deserve a new one
        else:
            self._next(slot, value.row)

    def _unload_failed(self, call: Unload, msg: str) -> None:
        """The late unload failed (the worker died, or it timed out): the held trial's row is
        kept, without unload figures and saying why; the worker is not kept."""
        slot, held = call.slot, call.held
        held.row.update(unload_j=None, unload_energy_reason=f"unload failed: {msg}")
        self._emit(held)
        self._release(slot)
        self._check_slot(slot)

    def _fail(self, call: Call, msg: str, status: str = "failed", load_msg: str | None = None,
              retryable: bool = False) -> None:
        """A call that ended in failure. A trial: its own row, and the rest of its group goes to
        a fresh worker. Anything before the trials (the model could not be loaded): a row for
        every trial of the group, saying why."""
        slot = call.slot
        if isinstance(call, Trial):
            self._emit(_failed(call.spec, msg, status, retryable=retryable))
            rest = list(slot.queue)[1:]
        else:
            for s in list(slot.queue):
                self._emit(_failed(s, load_msg or msg, status, retryable=retryable))
            rest = []
        self._release(slot)
        self._requeue(slot, rest)

    def _next(self, slot: Slot, last: dict[str, Any] | None = None) -> None:
        if slot.queue:
            self._send_trial(slot)
        elif (self.work[slot.hardware] or self._victim(slot)) and self._keep(slot, last):
            slot.state = "idle"  # keep the process (imports, CUDA context) for the next group
            self._show(slot, "idle (worker kept)")
        else:
            self._release(slot)

    def _keep(self, slot: Slot, last: dict[str, Any] | None) -> bool:
        """policy.keep_worker for the group that just ended; a node sampler host replaced since
        the worker started means it holds the dead one's handle."""
        replaced = slot.node_host is not None and slot.node_host is not self.node_hosts.get(slot.node_id or "")
        return policy.keep_worker(self.reuse, last, self.reuse_max_left_mb, host_replaced=replaced)

    # -- work stealing ----------------------------------------------------------------------------
    def _victim(self, thief: Slot) -> tuple[Slot, int] | None:
        """policy.victim over this sweep's slots; None where stealing is off."""
        if not self.steal:
            return None
        return policy.victim(thief, self.slots, self.start_times.cost(fresh=thief.worker is None))

    def _take(self, thief: Slot) -> list[TrialSpec] | None:
        """Cut the back part off a running group's queue for `thief` (None: nothing worth taking)."""
        found = self._victim(thief)
        if found is None:
            return None
        victim, cut = found
        rest = list(victim.queue)
        victim.queue, piece = deque(rest[:cut]), rest[cut:]
        if cut == 1 and self._trial_in_flight(victim):
            victim.unload_late = True  # its trial in flight was sent as not the last: unload after it
        victim.group_size = victim.done_in_group + cut
        self.group_size.update({s.trial_id: victim.group_size for s in rest[:cut]})
        self.group_size.update({s.trial_id: len(piece) for s in piece})
        self._show(victim, f"{len(piece)} of its trials taken by slot {thief.index}", victim.done_in_group,
                   victim.group_size)
        return piece

    def _steal(self, thief: Slot) -> bool:
        """Start `thief` on part of a running group; whether it got any."""
        piece = self._take(thief)
        if piece is not None:
            self._start_group(thief, piece)
        return piece is not None

    def _sampler_lost(self, slot: Slot, why: str) -> None:
        """The rest of the group goes to a fresh worker beside a new sampler."""
        rest = list(slot.queue)
        self._release(slot)
        self._requeue(slot, rest)
        if slot.sampler is not None:
            ray.kill(slot.sampler, no_restart=True)
        slot.sampler = None
        self._place(slot)
        self._show(slot, f"replacing its sampler ({why})")

    def _retire(self, slot: Slot, why: str) -> None:
        slot.state = "retired"
        self._show(slot, f"retired: {why}")
        try:
            remove_placement_group(slot.pg)
        except Exception:
            pass
        if not any(s.state != "retired" for s in self.slots if s.hardware == slot.hardware):
            while self.work[slot.hardware]:
                for s in self.work[slot.hardware].popleft():
                    self._emit(_failed(s, f"no slot left for hardware {slot.hardware!r}: {why}", retryable=True))

    def _show(self, slot: Slot, text: str, done: int | None = None, total: int | None = None) -> None:
        if self.progress is not None and hasattr(self.progress, "worker"):
            self.progress.worker(slot.index, slot.hardware, text, done, total)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.start()
            # a slot still waiting for a node is not a reason to wait once the work is done
            while any(self.work.values()) or any(not isinstance(c, Ready) for c in self.pending.values()):
                for slot in self.slots:
                    if slot.state == "idle" and self.work[slot.hardware]:
                        self._start_group(slot, self.work[slot.hardware].popleft())
                    elif slot.state == "idle" and not self._steal(slot) and slot.worker is not None:
                        self._release(slot)  # kept for work that is no longer there
                ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=0.5)
                now = time.monotonic()
                for ref in list(self.pending):
                    call = self.pending[ref]
                    if ref in ready or now > call.deadline:
                        del self.pending[ref]
                        self._handle(ref, call, ref in ready)
        finally:
            self.close()

    def close(self) -> None:
        for slot in self.slots:
            if slot.worker is not None:
                ray.kill(slot.worker, no_restart=True)
                slot.worker = None
            if slot.sampler is not None:
                try:
                    ray.get(slot.sampler.close.remote(), timeout=10)
                except Exception:
                    pass
                ray.kill(slot.sampler, no_restart=True)
            if slot.state != "retired":
                try:
                    remove_placement_group(slot.pg)
                except Exception:
                    pass
        self._close_node_hosts()

    def _close_node_hosts(self) -> None:
        """Report each node sampler's totals (a `systems` row per node and role: the energy no
        window was open for, idle power, failed reads), then stop it. A host that is gone
        reports nothing; its rows said why they lack the figure."""
        for node_id, host in self.node_hosts.items():
            try:
                info = ray.get(host.describe.remote(), timeout=10)
            except Exception:
                info = {}
            for role, d in info.items():
                if self.on_system is not None:
                    self.on_system({
                        "kind": "node_sampler", "role": role, "node": d.get("node"), "ray_node_id": node_id,
                        "hardware": self.node_hardware.get(node_id), "system_id": f"{d.get('node')}-node-{role}",
                        **{k: json.dumps(v, sort_keys=True, default=str) if isinstance(v, (dict, list)) else v
                           for k, v in d.items() if k not in ("node", "role")}})
            try:
                ray.get(host.close.remote(), timeout=10)
            except Exception:
                pass
            ray.kill(host, no_restart=True)
        self.node_hosts = {}


def run_sweep(plan: Plan, on_result: Callable[[TrialResult], None],
              on_system: Callable[[dict[str, Any]], None] | None = None,
              progress: Any = None) -> None:
    """Run every group of the plan; call on_result exactly once per trial, in completion order."""
    Scheduler(plan, on_result, on_system, progress).run()
