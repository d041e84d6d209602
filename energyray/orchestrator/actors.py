"""The classes that run inside Ray actors: a sampler host per device, a worker per group.

Both are plain classes; `ray.remote(...)` wraps them in scheduler.py, never here on the
class definition, so they stay testable without Ray.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import Any

import ray

from energyray import env
from energyray.samplers import make_device_sampler
from energyray.trial import TrialRunner

SAMPLER_CALL_TIMEOUT_S = 60.0


class SamplerHost:
    """Owns one device's sampler in its own process, beside the worker that uses the device."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.sampler: Any = None
        self.bound: tuple[str, str | None] | None = None
        self.error: str | None = None
        self.memory: dict[str, Any] = {}

    def bind(self, kind: str, device: str | None) -> dict[str, Any]:
        """(Re)bind to a device: kind "gpu" with its UUID, or "cpu". Returns describe()."""
        if self.bound != (kind, device):
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
        return {**self.sampler.describe(), "sampler_pid": os.getpid()}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        if self.sampler is None:
            raise RuntimeError(self.error or "no sampler for this device")
        return int(self.sampler.begin(label, at_ns))

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None) -> dict[str, Any]:
        if self.sampler is None:
            raise RuntimeError(self.error or "no sampler for this device")
        return asdict(self.sampler.end(label, parts, at_ns))

    def latest(self) -> dict[str, Any] | None:
        return None if self.sampler is None else self.sampler.latest()

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
            at_ns: int | None = None) -> dict[str, Any]:
        return dict(ray.get(self._h.end.remote(label, parts, at_ns), timeout=SAMPLER_CALL_TIMEOUT_S))

    def latest(self) -> dict[str, Any] | None:
        return ray.get(self._h.latest.remote(), timeout=SAMPLER_CALL_TIMEOUT_S)

    def recall(self, key: str) -> Any:
        return ray.get(self._h.recall.remote(key), timeout=SAMPLER_CALL_TIMEOUT_S)

    def remember(self, key: str, value: Any) -> None:
        ray.get(self._h.remember.remote(key, value), timeout=SAMPLER_CALL_TIMEOUT_S)

    def describe(self) -> dict[str, Any]:
        return self._info


class WorkerHost:
    """Loads one group's model on its device and runs that group's trials, one call each."""

    def __init__(self, sampler: Any, generation: Any, cache_dir: str, device: str, seed: int,
                 measurement: Any = None, backend_settings: dict[str, Any] | None = None) -> None:
        gpu_uuid = env.visible_gpu_uuid() if device != "cpu" else None
        self.kind = "gpu" if gpu_uuid else "cpu"
        info = ray.get(sampler.bind.remote(self.kind, gpu_uuid), timeout=SAMPLER_CALL_TIMEOUT_S)
        self.node_id = ray.get_runtime_context().get_node_id()
        ctx = ray.get_runtime_context()
        self.env = {**env.snapshot(), "ray_node_id": self.node_id,
                    "ray_assigned_resources": {k: v for k, v in ctx.get_assigned_resources().items()
                                               if not k.startswith("bundle_group")}}
        remote = None if info.get("sampler") is None else RemoteSampler(sampler, info)
        self.runner = TrialRunner(remote, generation, cache_dir, device=device, seed=seed,
                                  node=self.env["hostname"], env=self.env, measurement=measurement,
                                  backend_settings=backend_settings)
        if remote is None:
            self.runner.sampler_info = info
        self.system = {"node": self.env["hostname"], "ray_node_id": self.node_id, "kind": self.kind,
                       "gpu_uuid": gpu_uuid, "pid": os.getpid(), **{k: v for k, v in info.items() if k != "error"},
                       "sampler_error": info.get("error"), "cpu_model": self.env["cpu_model"],
                       "cpu_count": self.env["cpu_count"], "cpu_affinity": self.env["cpu_affinity"],
                       "ray_assigned_resources": json.dumps(self.env["ray_assigned_resources"], sort_keys=True)}

    def describe(self) -> dict[str, Any]:
        return self.system

    def load(self, spec: Any, model: Any) -> dict[str, Any]:
        return self.runner.load(spec, model)

    def run(self, spec: Any, model: Any, config: dict[str, Any], last: bool = False) -> Any:
        result = self.runner.run(spec, model, config, last=last)
        result.row.update(worker_pid=os.getpid(), ray_node_id=self.node_id)
        return result

    def unload(self) -> None:
        self.runner.unload()
