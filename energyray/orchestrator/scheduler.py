"""The scheduler: a `ray.wait` loop over a work queue of load groups.

One slot per GPU (or `ray.cpu_workers` slots on a cluster without GPUs), each a STRICT_PACK
placement group holding a long-lived sampler actor and, one group at a time, a fresh worker
actor: a worker loads its group's model once, runs its trials, and is then killed (a new
process is the reliable way to free GPU memory). Every `ray.get` has a timeout. A worker
that dies or hangs fails its current trial (a row with the error) and the rest of its group
goes back on the queue for a fresh worker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from energyray.errors import ConfigError
from energyray.grid import TrialSpec
from energyray.orchestrator.actors import SamplerHost, WorkerHost
from energyray.trial import TrialResult

GET_TIMEOUT_S = 60.0


@dataclass
class Plan:
    """What the driver hands the orchestrator."""

    groups: list[list[TrialSpec]]
    models: dict[str, Any]  # model name -> ModelConfig
    configs: dict[str, dict[str, Any]]  # trial_id -> resolved config (config_json)
    cfg: Any  # RunConfig, with cache_dir resolved by the driver
    hardware: dict[str, Any] = field(default_factory=dict)  # name -> HardwareConfig of every target
    local_hardware: str = "cpu"  # what the driver's machine is (hardware=auto resolved to it)


def init_ray(cfg: Any) -> dict[str, float]:
    """Start a local Ray (loopback only, no dashboard) or join `ray.address`; return its resources."""
    if not ray.is_initialized():
        kwargs: dict[str, Any] = {"include_dashboard": cfg.ray.include_dashboard,
                                  "log_to_driver": cfg.ray.log_to_driver, "configure_logging": False}
        if cfg.ray.address:
            ray.init(address=cfg.ray.address, **kwargs)
        else:
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


@dataclass
class _Slot:
    index: int
    pg: Any
    bundle: dict[str, float]
    sampler: Any
    hardware: str = ""
    worker: Any = None
    queue: deque[TrialSpec] = field(default_factory=deque)
    system: dict[str, Any] | None = None


def _failed(spec: TrialSpec, error: str, status: str = "failed") -> TrialResult:
    return TrialResult(row={**spec.to_dict(), "status": status, "error": error,
                            "precision_requested": spec.precision, "energy_j": None,
                            "energy_source": "not_measurable", "energy_reason": "trial did not run"})


def check_cluster(plan: Plan) -> dict[str, tuple[int, dict[str, float]]]:
    """Start or join Ray and check that it can run every hardware target of the plan."""
    return pools(plan, init_ray(plan.cfg))


def run_sweep(plan: Plan, on_result: Callable[[TrialResult], None],
              on_system: Callable[[dict[str, Any]], None] | None = None,
              progress: Any = None) -> None:
    """Run every group of the plan; call on_result once per trial, in completion order."""
    cfg = plan.cfg
    resources = init_ray(cfg)
    shapes = pools(plan, resources)  # raises before anything starts when the cluster cannot
    Sampler = ray.remote(SamplerHost)
    Worker = ray.remote(WorkerHost)
    work: dict[str, deque[list[TrialSpec]]] = {hw: deque() for hw in shapes}
    for g in plan.groups:
        work[g[0].hardware].append(g)
    slots: list[_Slot] = []
    for hw, (count, bundle) in shapes.items():
        for _ in range(min(count, len(work[hw]))):
            pg = placement_group([bundle], strategy="STRICT_PACK")
            ray.get(pg.ready(), timeout=GET_TIMEOUT_S)
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0)
            sampler = Sampler.options(num_cpus=0, scheduling_strategy=strategy).remote(cfg.sampler)
            slots.append(_Slot(len(slots), pg, bundle, sampler, hardware=hw))

    pending: dict[Any, tuple[_Slot, str, TrialSpec | None, float]] = {}

    def submit(slot: _Slot, kind: str, spec: TrialSpec | None) -> None:
        w = slot.worker
        if kind == "load":
            assert spec is not None
            ref = w.load.remote(spec, plan.models[spec.model])
            timeout = cfg.ray.load_timeout_s
        elif kind == "describe":
            ref, timeout = w.describe.remote(), GET_TIMEOUT_S
        else:
            assert spec is not None
            ref = w.run.remote(spec, plan.models[spec.model], plan.configs[spec.trial_id], len(slot.queue) == 1)
            timeout = cfg.ray.trial_timeout_s
        pending[ref] = (slot, kind, spec, time.monotonic() + timeout)

    def start_group(slot: _Slot, group: list[TrialSpec]) -> None:
        slot.queue = deque(group)
        strategy = PlacementGroupSchedulingStrategy(slot.pg, placement_group_bundle_index=0)
        extra = {k: v for k, v in slot.bundle.items() if k not in ("CPU", "GPU")}
        opts: dict[str, Any] = {"num_cpus": slot.bundle.get("CPU", 1), "num_gpus": slot.bundle.get("GPU", 0),
                                "scheduling_strategy": strategy, "max_restarts": 0}
        if extra:
            opts["resources"] = extra
        if slot.bundle.get("GPU"):
            opts["runtime_env"] = {"env_vars": {"CUDA_DEVICE_ORDER": "PCI_BUS_ID"}}
        slot.worker = Worker.options(**opts).remote(
            slot.sampler, cfg.generation, cfg.cache_dir, cfg.device, cfg.seed, cfg.measurement,
            {k: getattr(cfg, k) for k in ("api", "server") if hasattr(cfg, k)})  # backends' own sections
        submit(slot, "describe", None)

    def release(slot: _Slot) -> None:
        if slot.worker is not None:
            ray.kill(slot.worker, no_restart=True)
        slot.worker = None
        slot.queue = deque()

    def emit(result: TrialResult) -> None:
        on_result(result)
        if progress is not None:
            progress.advance(result.row)

    def fail_rest(slot: _Slot, error: str, requeue: bool) -> None:
        rest = list(slot.queue)
        release(slot)
        if requeue and rest:
            work[slot.hardware].appendleft(rest)
        else:
            for s in rest:
                emit(_failed(s, error))

    try:
        while any(work.values()) or pending:
            for slot in slots:
                if slot.worker is None and work[slot.hardware]:
                    start_group(slot, work[slot.hardware].popleft())
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            now = time.monotonic()
            for ref in list(pending):
                slot, kind, spec, deadline = pending[ref]
                if ref not in ready and now <= deadline:
                    continue
                del pending[ref]
                if ref not in ready:  # over its deadline: fail this one; fail_rest kills the worker
                    msg = f"timed out after {cfg.ray.trial_timeout_s if kind == 'trial' else cfg.ray.load_timeout_s:.0f} s ({kind})"
                    if kind == "trial" and spec is not None:
                        emit(_failed(spec, msg))
                        slot.queue.popleft()  # this one is done (failed); the rest go to a fresh worker
                        fail_rest(slot, msg, requeue=True)
                    else:
                        fail_rest(slot, msg, requeue=False)
                    continue
                try:
                    value = ray.get(ref, timeout=GET_TIMEOUT_S)
                except ray.exceptions.RayActorError as e:
                    msg = f"worker died: {e}"
                    if kind == "trial" and spec is not None:
                        emit(_failed(spec, msg))
                        slot.queue.popleft()
                        fail_rest(slot, msg, requeue=True)
                    else:
                        fail_rest(slot, msg, requeue=False)
                    continue
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    msg = f"{type(cause).__name__}: {cause}"
                    status = getattr(cause, "status", "oom" if "out of memory" in msg.lower() else "failed")
                    if kind == "trial" and spec is not None:
                        emit(_failed(spec, msg, status))
                        slot.queue.popleft()
                        fail_rest(slot, msg, requeue=True)
                    else:  # the model could not be loaded: every trial of the group fails with why
                        for s in list(slot.queue):
                            emit(_failed(s, f"load failed: {msg}", status))
                        release(slot)
                    continue
                if kind == "describe":
                    slot.system = value
                    if on_system is not None:
                        on_system(value)
                    submit(slot, "load", slot.queue[0])
                elif kind == "load":
                    submit(slot, "trial", slot.queue[0])
                else:
                    slot.queue.popleft()
                    emit(value)
                    if slot.queue:
                        submit(slot, "trial", slot.queue[0])
                    else:
                        release(slot)
    finally:
        for slot in slots:
            release(slot)
            try:
                ray.get(slot.sampler.close.remote(), timeout=10)
            except Exception:
                pass
            ray.kill(slot.sampler, no_restart=True)
            remove_placement_group(slot.pg)

