"""The scheduler: a `ray.wait` loop over a work queue of load groups.

One slot per GPU (or `ray.cpu_workers` slots on a cluster without GPUs), each a STRICT_PACK
placement group holding a long-lived sampler actor and, one group at a time, a fresh worker
actor: a worker loads its group's model once, runs its trials, and is then killed (a new
process is the reliable way to free GPU memory). Every `ray.get` has a timeout.

Faults (each leaves exactly one row per trial, and the sweep goes on):

- a worker that dies mid-trial (killed, crashed, its node lost): the trial and the rest of
  its group go back on the queue for a fresh worker, up to `ray.max_retries` times per
  trial; then the trial is a `failed` row saying how often it died. A worker that dies
  while loading counts against every trial of its group.
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

Work stealing (`ray.steal_work`, default true): a slot with nothing queued for its hardware
takes the back part of a running group's queue and loads that model itself. It takes 1/(w+1)
of it, w being the slots then waiting for work, so a group shared at the start splits evenly;
later it steals only where that pays: its measured start (a fresh process, or a load and
warmup in a kept one) shorter than what the victim keeps (trials × the victim's measured
seconds a trial). So one model on two GPUs uses both, and the last group of a sweep does not
leave the other GPUs idle. The cut falls between grid points where one is near (a point's
repeats stay on one GPU). The victim keeps at least its trial in flight; where that one was
sent as not the group's last, the scheduler asks for the group's unload after it and puts it
on that trial's row, as usual. Each load's rows share a `load_id`; `group_trials` is the count
planned for that load when the row was written (the load's last row has the final count).

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
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)

from energyray.config import bytecode_mode, reuse_mode
from energyray.errors import ConfigError
from energyray.grid import TrialSpec
from energyray.orchestrator.actors import NodeSamplerHost, SamplerHost, WorkerHost
from energyray.registry import BACKEND_SETTINGS
from energyray.trial import TrialResult

GET_TIMEOUT_S = 60.0
PING_TIMEOUT_S = 15.0


@dataclass
class Plan:
    """What the driver hands the orchestrator."""

    groups: list[list[TrialSpec]]
    models: dict[str, Any]  # model name -> ModelConfig
    configs: dict[str, dict[str, Any]]  # trial_id -> resolved config (config_json)
    cfg: Any  # RunConfig, with cache_dir resolved by the driver
    hardware: dict[str, Any] = field(default_factory=dict)  # name -> HardwareConfig of every target
    local_hardware: str = "cpu"  # what the driver's machine is (hardware=auto resolved to it)


def backend_settings(cfg: Any) -> dict[str, Any]:
    """The RunConfig sections backends may ask for (their `settings`), by name."""
    return {name: getattr(cfg, name) for name in BACKEND_SETTINGS if hasattr(cfg, name)}


def _loopback_only() -> None:
    """Make a local Ray listen on 127.0.0.1 only. On Linux, Ray 2.60 replaces
    `_node_ip_address="127.0.0.1"` with the machine's routable address and binds its gRPC
    servers on all interfaces; with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 it runs as it does on
    macOS/Windows, single-node, every server on loopback (checked with `ss -ltnp`). Set here,
    not at import, so that a run joining a cluster (ray.address) is untouched; the variable
    reaches the processes ray.init starts."""
    import os

    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


def init_ray(cfg: Any) -> dict[str, float]:
    """Start a local Ray (loopback only, no dashboard) or join `ray.address`; return its resources."""
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": cfg.ray.include_dashboard,
                                  "log_to_driver": cfg.ray.log_to_driver, "configure_logging": False}
        if cfg.ray.address:
            ray.init(address=cfg.ray.address, **kwargs)
        else:
            _loopback_only()
            ray.init(num_cpus=cfg.ray.num_cpus, num_gpus=cfg.ray.num_gpus, _node_ip_address="127.0.0.1", **kwargs)
    return dict(ray.cluster_resources())


def slot_shape(cfg: Any, resources: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Worker slots on any node (no hardware targeting), and each slot's bundle."""
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if cfg.device == "cuda" and gpus == 0:
        raise ConfigError(f"device=cuda, but the Ray cluster has no GPU (resources: {resources}). "
                          "Use device=auto or device=cpu, or join a cluster with GPUs (ray.address=auto).")
    if gpus and cfg.device != "cpu":
        return gpus, {"GPU": 1, "CPU": min(1, cpus / gpus)}
    n = max(1, min(cfg.ray.cpu_workers, cpus))
    return n, {"CPU": max(1, cpus // n)}


def pools(plan: Plan, resources: dict[str, float]) -> dict[str, tuple[int, dict[str, float]]]:
    """Per hardware target the trials name: how many slots, and each slot's bundle.

    A target whose node resource (`hw_<name>`) the cluster advertises gets one slot per unit,
    with that resource in its bundle, so Ray places its workers only on such nodes. The
    driver's own hardware without such a resource runs on any node (a local Ray). Anything
    else cannot run: say so before anything starts, with what the sweep needs and what the
    cluster has.
    """
    out: dict[str, tuple[int, dict[str, float]]] = {}
    missing = []
    for name in sorted({s.hardware for g in plan.groups for s in g}):
        hw = plan.hardware.get(name)
        resource = getattr(hw, "resource", None)
        if resource and resources.get(resource, 0) >= 1:
            gpu = getattr(hw, "gpu", None)
            if gpu and resources.get("GPU", 0) < 1:
                missing.append(f"{name}: nodes with {resource} but no GPU")
                continue
            bundle = {"GPU": 1.0, "CPU": 1.0} if gpu else {"CPU": 1.0}
            out[name] = (int(resources[resource]), {**bundle, resource: 1.0})
        elif name == plan.local_hardware:
            out[name] = slot_shape(plan.cfg, resources)
        else:
            missing.append(f"{name}: needs node resource {resource or 'hw_' + name!r}")
    if missing:
        have = {k: v for k, v in resources.items() if not k.startswith(("node:", "memory", "object_store"))}
        raise ConfigError(
            "The sweep asks for hardware this Ray cluster does not have: " + "; ".join(missing)
            + f". The cluster has {have}. Start such nodes with e.g. `ray start --address=HEAD:6379 "
            "--resources='{\"hw_h100\": 4}'` (see README, multi-node), or drop those hardware values.")
    return out


def check_cluster(plan: Plan) -> dict[str, tuple[int, dict[str, float]]]:
    """Start or join Ray and check that it can run every hardware target of the plan."""
    return pools(plan, init_ray(plan.cfg))


@dataclass
class _Slot:
    index: int
    pg: Any
    bundle: dict[str, float]
    hardware: str
    sampler: Any = None
    worker: Any = None
    queue: deque[TrialSpec] = field(default_factory=deque)
    system: dict[str, Any] | None = None
    state: str = "idle"  # idle | busy | placing (waiting for its placement group) | retired
    done_in_group: int = 0
    group_size: int = 0
    place_tries: int = 0
    group_started_at: float = 0.0  # monotonic, when its current group (or piece) was started
    trial_s: list[float] = field(default_factory=list)  # its current group's trials, submit to result
    trial_sent_at: float = 0.0
    fresh: bool = True  # its current group started a new worker process
    unload_late: bool = False  # its trial in flight became the group's last after it was sent (stolen)
    node_id: str | None = None  # the Ray node its placement group is on
    node_host: Any = None  # the NodeSamplerHost its current worker uses (None: no node samplers)
    workers: int = 0  # workers started on this slot, for their tags
    tag: str = ""  # the current worker's name on its node's samplers: slot<index>-<n>


@dataclass
class _Call:
    slot: _Slot
    kind: str  # ready | describe | load | trial | ping | unload | discard
    spec: TrialSpec | None
    deadline: float
    held: TrialResult | None = None  # unload: the trial's result that waits for it (see _take)


def _failed(spec: TrialSpec, error: str, status: str = "failed", **extra: Any) -> TrialResult:
    return TrialResult(row={**spec.to_dict(), "status": status, "error": error,
                            "precision_requested": spec.precision, "energy_j": None,
                            "energy_source": "not_measurable", "energy_reason": "trial did not run",
                            **extra})


def _cause(e: BaseException) -> BaseException:
    return e.cause if getattr(e, "cause", None) is not None else e  # type: ignore[attr-defined]


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
        self.slots: list[_Slot] = []
        self.pending: dict[Any, _Call] = {}
        self.attempts: dict[str, list[str]] = {}  # trial_id -> errors of attempts that died
        self.emitted: set[str] = set()
        self.group_size: dict[str, int] = {}  # trial_id -> trials in its load group (GROUP_RULE)
        self.max_retries = int(getattr(self.cfg.ray, "max_retries", 2))
        self.retry_timeouts = bool(getattr(self.cfg.ray, "retry_timeouts", False))
        self.node_wait_s = float(getattr(self.cfg.ray, "node_wait_s", 120.0))
        self.reuse = reuse_mode(getattr(self.cfg.ray, "reuse_workers", "auto"))
        self.bytecode = bytecode_mode(getattr(self.cfg.ray, "bytecode_cache", "auto"))
        self.reuse_max_left_mb = float(getattr(self.cfg.ray, "reuse_max_left_mb", 256.0))
        self.steal = bool(getattr(self.cfg.ray, "steal_work", True))
        # seconds from a group's start to its first trial's window (start, load, the warmup before
        # it): in a fresh process, in a kept one
        self.start_s: dict[str, list[float]] = {"fresh": [], "kept": []}

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
                slot = _Slot(len(self.slots), placement_group([bundle], strategy="STRICT_PACK"), bundle, hw)
                self.slots.append(slot)
                self._place(slot)

    def _strategy(self, slot: _Slot) -> PlacementGroupSchedulingStrategy:
        return PlacementGroupSchedulingStrategy(slot.pg, placement_group_bundle_index=0)

    def _place(self, slot: _Slot) -> None:
        """Wait (in the loop, not blocking) for the slot's placement group, then start its sampler."""
        slot.state = "placing"
        self._submit(slot, "ready", None, slot.pg.ready(), self.node_wait_s)
        self._show(slot, "waiting for a node")

    def _new_sampler(self, slot: _Slot) -> None:
        if slot.sampler is not None:
            ray.kill(slot.sampler, no_restart=True)
        slot.sampler = self.Sampler.options(num_cpus=0, scheduling_strategy=self._strategy(slot)).remote(self.cfg.sampler)

    def _node_host(self, slot: _Slot) -> Any:
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

    def _check_node(self, slot: _Slot) -> None:
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
    def _submit(self, slot: _Slot, kind: str, spec: TrialSpec | None, ref: Any, timeout: float,
                held: TrialResult | None = None) -> None:
        self.pending[ref] = _Call(slot, kind, spec, time.monotonic() + timeout, held)

    def _call(self, slot: _Slot, kind: str) -> None:
        w, spec = slot.worker, (slot.queue[0] if slot.queue else None)
        if kind == "describe":
            self._submit(slot, kind, None, w.describe.remote(), GET_TIMEOUT_S)
        elif kind == "ping":
            self._submit(slot, kind, None, slot.sampler.describe.remote(), PING_TIMEOUT_S)
        elif kind == "load":
            assert spec is not None
            self._submit(slot, kind, spec, w.load.remote(spec, self.plan.models[spec.model]), self.cfg.ray.load_timeout_s)
        else:
            assert spec is not None
            ref = w.run.remote(spec, self.plan.models[spec.model], self.plan.configs[spec.trial_id], len(slot.queue) == 1)
            slot.trial_sent_at = time.monotonic()
            self._submit(slot, kind, spec, ref, self.cfg.ray.trial_timeout_s)
            self._show(slot, f"{spec.model} {spec.precision} b={spec.batch_size} {spec.task}",
                       slot.done_in_group, slot.group_size)

    def _start_group(self, slot: _Slot, group: list[TrialSpec]) -> None:
        slot.queue = deque(group)
        slot.state, slot.done_in_group, slot.group_size = "busy", 0, len(group)
        slot.group_started_at, slot.trial_s, slot.fresh = time.monotonic(), [], slot.worker is None
        slot.unload_late = False
        if slot.worker is not None:  # ray.reuse_workers: the last group's process, its model unloaded
            self._call(slot, "load")
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
                                                         self.bytecode)
        self._call(slot, "describe")
        self._show(slot, f"loading {group[0].model} {group[0].precision}", 0, len(group))

    def _release(self, slot: _Slot) -> None:
        if slot.worker is not None:
            ray.kill(slot.worker, no_restart=True)
            if slot.node_host is not None:  # its open node windows would take shares for ever
                self._submit(slot, "discard", None, slot.node_host.discard.remote(f"{slot.tag}:"), GET_TIMEOUT_S)
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
        result.row.setdefault("group_trials", self.group_size.get(tid))
        errors = self.attempts.get(tid, [])
        result.row.setdefault("attempts", len(errors) + 1)
        if errors:
            result.row.setdefault("retried_errors", "\n".join(errors))
        self.on_result(result)
        if self.progress is not None:
            self.progress.advance(result.row)

    def _requeue(self, slot: _Slot, rest: list[TrialSpec]) -> None:
        if rest:
            self.work[slot.hardware].appendleft(rest)

    def _worker_lost(self, slot: _Slot, call: _Call, msg: str) -> None:
        """The worker died (killed, crashed, node lost): count an attempt against the trial in
        flight (or, during load, against every trial of the group), retry on a fresh worker."""
        charged = [call.spec] if call.kind == "trial" and call.spec is not None else list(slot.queue)
        rest = list(slot.queue)
        for spec in charged:
            self.attempts.setdefault(spec.trial_id, []).append(msg)
        gave_up = [s for s in charged if len(self.attempts[s.trial_id]) > self.max_retries]
        for spec in gave_up:
            n = len(self.attempts[spec.trial_id])
            self._emit(_failed(spec, f"worker died {n} times (ray.max_retries={self.max_retries}); last: {msg}",
                               attempts=n))
        self._release(slot)
        self._requeue(slot, [s for s in rest if s not in gave_up])
        self._check_slot(slot)

    def _check_slot(self, slot: _Slot) -> None:
        """After a death: is the slot's sampler still there? If not, wait for the placement
        group (Ray moves it off a dead node where it can) and start a new sampler."""
        try:
            ray.get(slot.sampler.describe.remote(), timeout=PING_TIMEOUT_S)
        except Exception:
            slot.sampler = None
            self._place(slot)

    def _handle(self, ref: Any, call: _Call, ready: bool) -> None:
        slot, kind, spec = call.slot, call.kind, call.spec
        if kind == "discard":  # best effort: a node sampler host that is gone has nothing to discard
            try:
                if ready:
                    ray.get(ref, timeout=GET_TIMEOUT_S)
            except Exception:
                pass
            return
        if kind == "ready":
            if not ready:
                self._retire(slot, f"no node could hold this slot's bundle {slot.bundle} for {self.node_wait_s:.0f} s "
                                   "(a node lost?)")
                return
            try:  # the check itself may have landed on a node that was dying: ask again
                ray.get(ref, timeout=GET_TIMEOUT_S)
            except Exception as e:
                slot.place_tries += 1
                if slot.place_tries > 5:
                    self._retire(slot, f"its placement group kept failing: {type(e).__name__}")
                else:
                    self._submit(slot, "ready", None, slot.pg.ready(), self.node_wait_s)
                return
            slot.place_tries = 0
            slot.node_id = (ray.util.placement_group_table(slot.pg).get("bundles_to_node_id") or {}).get(0)
            self._new_sampler(slot)
            self._node_host(slot)  # starts the node's samplers while the slot waits for work
            slot.state = "idle"
            self._show(slot, "idle")
            return
        if not ready:  # over its deadline
            timeout = self.cfg.ray.trial_timeout_s if kind == "trial" else self.cfg.ray.load_timeout_s
            msg = f"timed out after {timeout:.0f} s ({kind})"
            if kind == "unload":
                self._unload_failed(call, msg)
            elif kind == "ping":
                self._sampler_lost(slot, "the sampler stopped answering")
            elif kind == "describe":  # the worker never started (its node gone, or no room): a fresh one
                self._worker_lost(slot, call, f"the worker did not start within {GET_TIMEOUT_S:.0f} s")
            elif kind == "trial" and spec is not None:
                if self.retry_timeouts:
                    self.attempts.setdefault(spec.trial_id, []).append(msg)
                if self.retry_timeouts and len(self.attempts[spec.trial_id]) <= self.max_retries:
                    rest = list(slot.queue)  # this trial first again, on a fresh worker
                    self._release(slot)
                    self._requeue(slot, rest)
                else:
                    self._fail(slot, call, msg)
            else:
                self._fail(slot, call, msg, load_msg=f"load {msg}")
            return
        if kind == "unload":  # the late unload (see _take): the held trial's row gets its fields
            try:
                value = ray.get(ref, timeout=GET_TIMEOUT_S)
            except Exception as e:
                cause = _cause(e)
                self._unload_failed(call, f"{type(cause).__name__}: {(str(cause).splitlines() or [''])[0]}")
                return
            self._trial_done(slot, value)
            return
        try:
            value = ray.get(ref, timeout=GET_TIMEOUT_S)
        except ray.exceptions.OutOfMemoryError as e:  # Ray's memory monitor killed the worker
            self._fail(slot, call, f"host out of memory: Ray killed the worker: {str(e).splitlines()[0]}", "oom")
            return
        except ray.exceptions.RayActorError as e:
            if kind == "ping":
                self._sampler_lost(slot, f"the sampler died: {type(e).__name__}")
            else:
                self._worker_lost(slot, call, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            return
        except ray.exceptions.RayTaskError as e:
            cause = _cause(e)
            msg = f"{type(cause).__name__}: {cause}"
            status = getattr(cause, "status", "oom" if "out of memory" in msg.lower() else "failed")
            self._fail(slot, call, msg, status, load_msg=f"load failed: {msg}")
            return
        if kind == "describe":
            slot.system = {**value, "hardware": slot.hardware, "slot": slot.index}
            if self.on_system is not None:
                self.on_system(slot.system)
            self._call(slot, "load")
        elif kind == "load":
            self._call(slot, "trial")
        elif kind == "ping":  # the sampler answered: go on with the group
            self._next(slot)
        else:
            slot.queue.popleft()
            slot.done_in_group += 1
            slot.trial_s.append(time.monotonic() - slot.trial_sent_at)
            if slot.done_in_group == 1 and value.row.get("status") == "ok":
                window = float(value.row.get("window_s") or 0.0)
                self.start_s["fresh" if slot.fresh else "kept"].append(
                    time.monotonic() - slot.group_started_at - window)
            if slot.unload_late and not slot.queue:
                slot.unload_late = False
                self._submit(slot, "unload", spec, slot.worker.unload_after.remote(value), self.cfg.ray.load_timeout_s,
                             value)
                self._show(slot, "unloading (its last queued trial went to another slot)",
                           slot.done_in_group, slot.group_size)
                return
            self._trial_done(slot, value)

    def _trial_done(self, slot: _Slot, value: TrialResult) -> None:
        """A trial's result (with its group's unload where it was the last): emit it, go on."""
        self._emit(value)
        reason = str(value.row.get("energy_reason") or "")
        if any(str(value.row.get(f"{role}_energy_reason") or "").startswith("node sampler failed")
               for role in ("wall", "cpu")):
            self._check_node(slot)
        if reason.startswith("sampler failed") and slot.queue:
            self._call(slot, "ping")  # is the sampler gone? then the rest deserve a new one
        else:
            self._next(slot, value.row)

    def _unload_failed(self, call: _Call, msg: str) -> None:
        """The late unload failed (the worker died, or it timed out): the held trial's row is
        kept, without unload figures and saying why; the worker is not kept."""
        slot, held = call.slot, call.held
        assert held is not None
        held.row.update(unload_j=None, unload_energy_reason=f"unload failed: {msg}")
        self._emit(held)
        self._release(slot)
        self._check_slot(slot)

    def _fail(self, slot: _Slot, call: _Call, msg: str, status: str = "failed", load_msg: str | None = None) -> None:
        """A call that ended in failure. A trial: its own row, and the rest of its group goes to
        a fresh worker. Anything before the trials (the model could not be loaded): a row for
        every trial of the group, saying why."""
        if call.kind == "trial" and call.spec is not None:
            self._emit(_failed(call.spec, msg, status))
            rest = list(slot.queue)[1:]
        else:
            for s in list(slot.queue):
                self._emit(_failed(s, load_msg or msg, status))
            rest = []
        self._release(slot)
        self._requeue(slot, rest)

    def _next(self, slot: _Slot, last: dict[str, Any] | None = None) -> None:
        if slot.queue:
            self._call(slot, "trial")
        elif (self.work[slot.hardware] or self._victim(slot)) and self._keep(slot, last):
            slot.state = "idle"  # keep the process (imports, CUDA context) for the next group
            self._show(slot, "idle (worker kept)")
        else:
            self._release(slot)

    def _keep(self, slot: _Slot, last: dict[str, Any] | None) -> bool:
        """ray.reuse_workers: whether the group that just ended (`last`: its last row, which
        carries the unload's fields) leaves a process fit for the slot's next group. Never one
        whose node sampler host was replaced (it holds the dead one's handle)."""
        if self.reuse == "false" or last is None or last.get("status") != "ok":
            return False
        if slot.node_host is not None and slot.node_host is not self.node_hosts.get(slot.node_id or ""):
            return False
        if self.reuse == "true":
            return True
        left = last.get("unload_memory_left_mb")
        return bool(last.get("process_reusable")) and (left is None or left <= self.reuse_max_left_mb)

    # -- work stealing ----------------------------------------------------------------------------
    def _victim(self, thief: _Slot) -> tuple[_Slot, int] | None:
        """The running group `thief` should take part of, and where to cut its queue (the victim
        keeps queue[:cut]); None where stealing is off or would not pay (module docstring)."""
        if not self.steal:
            return None
        waiting = 1 + sum(1 for s in self.slots if s is not thief and s.hardware == thief.hardware
                          and s.state == "idle" and not s.queue)
        cost = self._start_cost(fresh=thief.worker is None)
        best: tuple[float, _Slot, int] | None = None
        for v in self.slots:
            n = len(v.queue)
            if v is thief or v.hardware != thief.hardware or v.state != "busy" or n < 2:
                continue  # the victim keeps at least its trial in flight (queue[0])
            keep = max(1, n - n // (waiting + 1))
            per_trial = sum(v.trial_s) / len(v.trial_s) if v.trial_s else None
            if per_trial is not None and cost is not None and cost >= keep * per_trial:
                continue  # the victim would finish what it keeps before the thief got going
            left = n * (per_trial if per_trial is not None else 1.0)
            if best is None or left > best[0]:
                best = (left, v, keep)
        return None if best is None else (best[1], self._cut(list(best[1].queue), best[2]))

    @staticmethod
    def _cut(queue: list[TrialSpec], at: int) -> int:
        """`at`, or the nearest boundary between grid points (a point's repeats stay on one GPU)
        within a quarter of the queue of it; never before index 1 nor at the end."""
        n = len(queue)
        bounds = [i for i in range(1, n) if queue[i].point != queue[i - 1].point]
        near = min(bounds, key=lambda i: (abs(i - at), i), default=None)
        return near if near is not None and abs(near - at) <= n / 4 else at

    def _start_cost(self, fresh: bool) -> float | None:
        seen = sorted(self.start_s["fresh" if fresh else "kept"])
        return seen[len(seen) // 2] if seen else None

    def _take(self, thief: _Slot) -> list[TrialSpec] | None:
        """Cut the back part off a running group's queue for `thief` (None: nothing worth taking)."""
        found = self._victim(thief)
        if found is None:
            return None
        victim, cut = found
        rest = list(victim.queue)
        victim.queue, piece = deque(rest[:cut]), rest[cut:]
        if cut == 1 and any(c.slot is victim and c.kind == "trial" for c in self.pending.values()):
            victim.unload_late = True  # its trial in flight was sent as not the last: unload after it
        victim.group_size = victim.done_in_group + cut
        self.group_size.update({s.trial_id: victim.group_size for s in rest[:cut]})
        self.group_size.update({s.trial_id: len(piece) for s in piece})
        self._show(victim, f"{len(piece)} of its trials taken by slot {thief.index}", victim.done_in_group,
                   victim.group_size)
        return piece

    def _steal(self, thief: _Slot) -> bool:
        """Start `thief` on part of a running group; whether it got any."""
        piece = self._take(thief)
        if piece is not None:
            self._start_group(thief, piece)
        return piece is not None

    def _sampler_lost(self, slot: _Slot, why: str) -> None:
        """The rest of the group goes to a fresh worker beside a new sampler."""
        rest = list(slot.queue)
        self._release(slot)
        self._requeue(slot, rest)
        if slot.sampler is not None:
            ray.kill(slot.sampler, no_restart=True)
        slot.sampler = None
        self._place(slot)
        self._show(slot, f"replacing its sampler ({why})")

    def _retire(self, slot: _Slot, why: str) -> None:
        slot.state = "retired"
        self._show(slot, f"retired: {why}")
        try:
            remove_placement_group(slot.pg)
        except Exception:
            pass
        if not any(s.state != "retired" for s in self.slots if s.hardware == slot.hardware):
            while self.work[slot.hardware]:
                for s in self.work[slot.hardware].popleft():
                    self._emit(_failed(s, f"no slot left for hardware {slot.hardware!r}: {why}"))

    def _show(self, slot: _Slot, text: str, done: int | None = None, total: int | None = None) -> None:
        if self.progress is not None and hasattr(self.progress, "worker"):
            self.progress.worker(slot.index, slot.hardware, text, done, total)

    # -- the loop -------------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.start()
            # a slot still waiting for a node is not a reason to wait once the work is done
            while any(self.work.values()) or any(c.kind != "ready" for c in self.pending.values()):
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
