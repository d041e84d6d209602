"""Starting or joining Ray, and what the cluster offers the sweep: how many worker slots per
hardware target and each slot's bundle. The only module that calls `ray.init`."""

from __future__ import annotations

from typing import Any

import ray

from energyray.errors import ConfigError
from energyray.plan import Plan


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
