"""The classes that run inside Ray actors: a sampler host per device, a node sampler host
per node (PDU, CPU/RAM: shared by that node's workers), a worker per group.

All are plain classes; `ray.remote(...)` wraps them in scheduler.py, never here on the
class definition, so they stay testable without Ray.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict
from typing import Any

import ray

from energyray import env
from energyray.samplers import make_device_sampler, make_node_sampler, node_sampler_roles
from energyray.samplers.base import WindowReading
from energyray.trial import TrialRunner
from energyray.trial.process import TrialProcess, preload_backend

SAMPLER_CALL_TIMEOUT_S = 60.0
# a node sampler weighing overlapping windows asks each one's device sampler for its energy;
# one that does not answer in time counts as unknown (an equal split), not as a failed window
DEVICE_ENERGY_TIMEOUT_S = 10.0


def _process_age_s() -> float | None:
    """Seconds since this process started (Linux: /proc), at the worker's __init__: how long
    the process took to come up and import energyray before the worker's own code ran."""
    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return uptime_s - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


class SamplerHost:
    """Owns one device's sampler in its own process, beside the worker that uses the device."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.sampler: Any = None
        self.bound: tuple[str, str | None] | None = None
        self.error: str | None = None
        self.memory: dict[str, Any] = {}
        self.nice: int | None = None  # the poll thread's niceness, once bound

    def bind(self, kind: str, device: str | None) -> dict[str, Any]:
        """(Re)bind to a device: kind "gpu" with its UUID, or "cpu". Returns describe()."""
        if self.bound != (kind, device):
            # before the poll thread starts, which inherits it: a starved poller leaves gaps
            self.nice = raise_priority()[1]
            if self.sampler is not None:
                self.sampler.close()
            self.sampler, self.error = None, None
            try:
                self.sampler = make_device_sampler(kind, device, self.cfg)
                if self.sampler is not None:
                    self.sampler.start()
            except Exception as e:  # a trial without energy is still a row, with the reason
                self.error = f"{type(e).__name__}: {e}"
            self.bound = (kind, device)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        if self.sampler is None:
            return {"sampler": None, "error": self.error or "no sampler for this device", "sampler_pid": os.getpid()}
        return {**self.sampler.describe(), "sampler_pid": os.getpid(), "sampler_nice": self.nice}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        if self.sampler is None:
            raise RuntimeError(self.error or "no sampler for this device")
        return int(self.sampler.begin(label, at_ns))

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> dict[str, Any]:
        """Close a window; `at_ns`/`from_ns` are the worker's edges (the same node's CLOCK_MONOTONIC)."""
        if self.sampler is None:
            raise RuntimeError(self.error or "no sampler for this device")
        return asdict(self.sampler.end(label, parts, at_ns, from_ns))

    def anchor(self, readings: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """PollingSampler.anchor over readings `end` returned (as dicts); unchanged where the
        sampler has no counter to anchor them to."""
        fn = getattr(self.sampler, "anchor", None)
        if fn is None:
            return readings
        return [asdict(r) for r in fn([WindowReading(**r) for r in readings])]

    def latest(self) -> dict[str, Any] | None:
        return None if self.sampler is None else self.sampler.latest()

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        """The device's energy over [t0_ns, t1_ns] (polled power integrated), or None: what a
        node sampler weighs overlapping windows by."""
        fn = getattr(self.sampler, "energy_between", None)
        return None if fn is None else fn(t0_ns, t1_ns)

    def recall(self, key: str) -> Any:
        """What an earlier worker on this device left here (its idle baseline): the sampler
        actor lives as long as the slot, workers one group each."""
        return self.memory.get(key)

    def remember(self, key: str, value: Any) -> None:
        self.memory[key] = value

    def close(self) -> None:
        if self.sampler is not None:
            self.sampler.close()


class RemoteSampler:
    """The Sampler protocol over a SamplerHost actor handle (blocking calls, with timeouts)."""

    def __init__(self, handle: Any, info: dict[str, Any]) -> None:
        self._h = handle
        self._info = info

    def begin(self, label: str, at_ns: int | None = None) -> int:
        return int(ray.get(self._h.begin.remote(label, at_ns), timeout=SAMPLER_CALL_TIMEOUT_S))

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> dict[str, Any]:
        return dict(ray.get(self._h.end.remote(label, parts, at_ns, from_ns), timeout=SAMPLER_CALL_TIMEOUT_S))

    def latest(self) -> dict[str, Any] | None:
        return ray.get(self._h.latest.remote(), timeout=SAMPLER_CALL_TIMEOUT_S)

    def anchor(self, readings: list[WindowReading]) -> list[WindowReading]:
        out = ray.get(self._h.anchor.remote([asdict(r) for r in readings]), timeout=SAMPLER_CALL_TIMEOUT_S)
        return [WindowReading(**r) for r in out]

    def recall(self, key: str) -> Any:
        return ray.get(self._h.recall.remote(key), timeout=SAMPLER_CALL_TIMEOUT_S)

    def remember(self, key: str, value: Any) -> None:
        ray.get(self._h.remember.remote(key, value), timeout=SAMPLER_CALL_TIMEOUT_S)

    def describe(self) -> dict[str, Any]:
        return self._info


class _RemoteMeter:
    """A worker's device sampler as a node sampler sees it: energy_between over its SamplerHost.
    Safe from the node sampler's actor: a SamplerHost never calls a node sampler host."""

    def __init__(self, handle: Any) -> None:
        self._h = handle
        self._error: str | None = None

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        if self._error is not None:  # gone or hung once: not asked again (every call would wait)
            raise RuntimeError(self._error)
        try:
            value = ray.get(self._h.energy_between.remote(t0_ns, t1_ns), timeout=DEVICE_ENERGY_TIMEOUT_S)
        except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError) as e:
            self._error = f"device sampler unavailable: {type(e).__name__}"
            raise
        return None if value is None else float(value)


class NodeSamplerHost:
    """The node-level samplers of one node, by role ("wall": its PDU, "cpu": CPU/RAM), each a
    SharedNodeSampler that every worker on the node opens its windows on, so overlapping
    trials share the node's energy by samplers.node.RULE. One actor per node, pinned there.

    A role that cannot be built or started keeps its error: that role's windows fail with it,
    and the trials' rows carry it as the reason. SNMPv3 passwords are read here, from this
    process's environment: that of `ray start` on the node (the driver's, for a local Ray).
    """

    def __init__(self, cfg: Any, cpu: bool = True) -> None:
        self.node = socket.gethostname()
        self.nice = raise_priority()[1]  # before the samplers' poll threads start (they inherit it)
        self.samplers: dict[str, Any] = {}
        self.errors: dict[str, str] = {}
        self.gone: set[str] = set()  # prefixes of workers that are gone (discard)
        for role in node_sampler_roles(cfg, node=self.node, cpu=cpu):
            try:
                sampler = make_node_sampler(role, cfg)
                if sampler is None:
                    continue
                sampler.start()
                self.samplers[role] = sampler
            except Exception as e:  # a trial without this figure is still a row, with the reason
                self.errors[role] = f"{type(e).__name__}: {e}"

    def _sampler(self, role: str) -> Any:
        if role not in self.samplers:
            raise RuntimeError(self.errors.get(role) or f"no {role} sampler on node {self.node}")
        return self.samplers[role]

    def begin(self, role: str, label: str, at_ns: int | None = None, gpu: Any = None, idle: bool = False) -> int:
        """Open a window; `gpu` (the worker's SamplerHost handle, or None) weighs it when it overlaps others."""
        if any(label.startswith(p) for p in self.gone):  # sent by a worker before it was killed
            raise RuntimeError(f"window {label!r} belongs to a worker that is gone")
        meter = None if gpu is None else _RemoteMeter(gpu)
        return int(self._sampler(role).begin(label, at_ns, gpu=meter, idle=idle))

    def end(self, role: str, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> dict[str, Any]:
        """Close a window on the worker's edges (`from_ns` to `at_ns`): this actor is pinned to the
        worker's node, so both read the same CLOCK_MONOTONIC."""
        return asdict(self._sampler(role).end(label, parts, at_ns, from_ns))

    def latest(self, role: str) -> dict[str, Any] | None:
        return self._sampler(role).latest()

    def discard(self, prefix: str) -> list[str]:
        """A worker is gone (killed, died, or done): close its open windows unmeasured, so they
        stop taking shares, and refuse any window of its that arrives later."""
        self.gone.add(prefix)
        return [label for s in self.samplers.values() for label in s.discard(prefix)]

    def describe(self) -> dict[str, Any]:
        """Role -> the sampler's describe() (or its error), with this node and process."""
        out: dict[str, Any] = {role: {"error": e} for role, e in self.errors.items()}
        out.update({role: s.describe() for role, s in self.samplers.items()})
        return {role: {**info, "node": self.node, "node_sampler_pid": os.getpid(), "node_sampler_nice": self.nice}
                for role, info in out.items()}

    def close(self) -> None:
        for s in self.samplers.values():
            s.close()


class RemoteNodeSampler:
    """samplers.node.NodeSampler over a NodeSamplerHost: one role of the node's samplers, for
    one worker. It weighs this worker's windows by its own device sampler (`gpu_handle`, a
    SamplerHost; None on CPU-only workers: equal shares) and ignores the runner's `gpu`."""

    def __init__(self, handle: Any, role: str, info: dict[str, Any], gpu_handle: Any = None) -> None:
        self._h = handle
        self.role = role
        self._info = info
        self._gpu = gpu_handle
        self.name = str(info.get("sampler") or role)

    def begin(self, label: str, at_ns: int | None = None, gpu: Any = None, idle: bool = False) -> int:
        if self._info.get("error"):  # it could not be built on this node: say why, without a call
            raise RuntimeError(self._info["error"])
        return int(ray.get(self._h.begin.remote(self.role, label, at_ns, self._gpu, idle),
                           timeout=SAMPLER_CALL_TIMEOUT_S))

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        value = ray.get(self._h.end.remote(self.role, label, parts, at_ns, from_ns), timeout=SAMPLER_CALL_TIMEOUT_S)
        return WindowReading(**value)

    def latest(self) -> dict[str, Any] | None:
        return ray.get(self._h.latest.remote(self.role), timeout=SAMPLER_CALL_TIMEOUT_S)

    def describe(self) -> dict[str, Any]:
        return self._info


def remote_node_samplers(host: Any, sampler_cfg: Any, node: str, gpu: bool, gpu_handle: Any = None) -> dict[str, Any]:
    """A worker's node samplers by role (node_sampler_roles: "cpu" only on a GPU worker), over
    the node's NodeSamplerHost. A host that does not answer gives each role its error."""
    roles = node_sampler_roles(sampler_cfg, node=node, cpu=gpu)
    if host is None or not roles:
        return {}
    try:
        info = ray.get(host.describe.remote(), timeout=SAMPLER_CALL_TIMEOUT_S)
    except Exception as e:
        why = f"the node sampler actor is unavailable: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        info = {role: {"error": why} for role in roles}
    return {role: RemoteNodeSampler(host, role, info.get(role) or {"error": f"no {role} sampler on node {node}"},
                                    gpu_handle) for role in roles}


def raise_priority() -> tuple[int, int]:
    """Set the calling thread to nice 0 where this process may raise its priority (root,
    CAP_SYS_NICE, RLIMIT_NICE); returns its niceness before and after.

    Ray starts its worker processes at nice 15 (RAY_worker_niceness), a user's own process runs
    at 0. Where the machine's CPUs are busy, a nice-15 thread gets a small share of a shared
    core: a launch-bound decode loop slows, a sampler's poll thread leaves gaps in its series.
    On Linux the call applies to the calling thread: threads started afterwards inherit it."""
    at_start = os.getpriority(os.PRIO_PROCESS, 0)
    if at_start > 0:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, 0)
        except OSError:  # unprivileged: stays as Ray set it; the systems row says so
            pass
    return at_start, os.getpriority(os.PRIO_PROCESS, 0)


def worker_priority() -> dict[str, int]:
    """raise_priority for the worker's main thread (the one that runs the model), as its
    systems row records it."""
    at_start, now = raise_priority()
    return {"worker_nice_at_start": at_start, "worker_nice": now}


class WorkerHost:
    """Loads one group's model on its device and runs that group's trials, one call each: in a
    plain child process it starts (trial/process.py, ray.trial_process=child) or in this one."""

    def __init__(self, sampler: Any, generation: Any, cache_dir: str, device: str, seed: int,
                 measurement: Any = None, backend_settings: dict[str, Any] | None = None,
                 node_host: Any = None, node_tag: str | None = None, sampler_cfg: Any = None,
                 preload: str | None = None, bytecode_cache: str = "auto", trial_process: str = "child") -> None:
        entered_at, t0 = time.time(), time.monotonic()
        priority = worker_priority()  # first: the preload thread and the trial process inherit it
        # CUDA reads this when it starts, so this process counts GPUs in NVML's (PCI) order, as
        # Ray does. Set here, not in a runtime_env: that makes Ray start a new process for the
        # actor instead of taking one it has ready (its __init__ began ~2 s later).
        os.environ["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"
        child: TrialProcess | None = None
        if trial_process == "child":  # it imports torch and starts CUDA while this one goes on
            child = TrialProcess(device, cache_dir, bytecode_cache, preload)
        else:
            bytecode = env.bytecode_cache(bytecode_cache, cache_dir)  # before torch and the backend are imported
            preload_backend(preload)
        self.node_id = ray.get_runtime_context().get_node_id()
        ctx = ray.get_runtime_context()
        self.env = {**env.snapshot(), "ray_node_id": self.node_id,
                    "ray_assigned_resources": {k: v for k, v in ctx.get_assigned_resources().items()
                                               if not k.startswith("bundle_group")}}
        try:
            if child is not None:
                ready = child.ready()
                gpu_uuid, bytecode = ready["gpu_uuid"], ready["bytecode"]
            else:
                gpu_uuid = env.visible_gpu_uuid() if device != "cpu" else None
            t_device = time.monotonic()
            self.kind = "gpu" if gpu_uuid else "cpu"
            info = ray.get(sampler.bind.remote(self.kind, gpu_uuid), timeout=SAMPLER_CALL_TIMEOUT_S)
            t_bind = time.monotonic()
            remote = None if info.get("sampler") is None else RemoteSampler(sampler, info)
            node_samplers = {} if node_host is None else remote_node_samplers(
                node_host, sampler_cfg, self.env["hostname"], gpu=self.kind == "gpu",
                gpu_handle=sampler if self.kind == "gpu" and remote is not None else None)
            settings = {"generation": generation, "cache_dir": cache_dir, "device": device, "seed": seed,
                        "node": self.env["hostname"], "env": self.env, "measurement": measurement,
                        "backend_settings": backend_settings}
            if child is not None:
                child.start(remote, node_samplers, **settings)
                self.runner: TrialRunner | TrialProcess = child
            else:
                self.runner = TrialRunner(remote, node_samplers=node_samplers, **settings)
        except BaseException:
            if child is not None:
                child.close()
            raise
        if node_tag:  # the scheduler's name for this worker: it discards the worker's windows when it goes
            self.runner.node_tag = node_tag
        if remote is None:
            self.runner.sampler_info = info
        self.trial_pid = os.getpid() if child is None else child.pid
        self.system = {"node": self.env["hostname"], "ray_node_id": self.node_id, "kind": self.kind,
                       "gpu_uuid": gpu_uuid, "pid": os.getpid(), **{k: v for k, v in info.items() if k != "error"},
                       "sampler_error": info.get("error"), "cpu_model": self.env["cpu_model"],
                       "cpu_count": self.env["cpu_count"], "cpu_affinity": self.env["cpu_affinity"],
                       "ray_assigned_resources": json.dumps(self.env["ray_assigned_resources"], sort_keys=True),
                       # where a worker's start goes (the first group of a sweep waits for all of it)
                       "worker_init_entered_at": entered_at, "worker_process_age_s": _process_age_s(),
                       "worker_device_s": t_device - t0, "worker_bind_s": t_bind - t_device,
                       "worker_init_s": time.monotonic() - t0, "worker_preload": preload or "off",
                       "worker_bytecode_cache": bytecode, "trial_process": trial_process,
                       "trial_pid": self.trial_pid,
                       "trial_process_start_s": None if child is None else ready.get("start_s"), **priority}
        if node_samplers:
            nodes = {role: ns.describe() for role, ns in node_samplers.items()}
            self.system.update(node_tag=self.runner.node_tag, node_samplers=json.dumps(nodes, sort_keys=True, default=str),
                               node_sampler_pid=next((i.get("node_sampler_pid") for i in nodes.values()
                                                      if i.get("node_sampler_pid")), None))

    def describe(self) -> dict[str, Any]:
        return self.system

    def load(self, spec: Any, model: Any) -> dict[str, Any]:
        return self.runner.load(spec, model)

    def run(self, spec: Any, model: Any, config: dict[str, Any], last: bool = False) -> Any:
        result = self.runner.run(spec, model, config, last=last)
        result.row.update(worker_pid=os.getpid(), trial_pid=self.trial_pid, ray_node_id=self.node_id)
        return result

    def unload(self) -> None:
        self.runner.unload()

    def unload_after(self, result: Any) -> Any:
        """The group's unload, measured after `result`'s trial and recorded on its row."""
        return self.runner.unload_after(result)
