"""Energy and power sources. `make_device_sampler` picks the right one for a worker's device,
`make_node_samplers` the node-level ones (PDU, CPU/RAM) that a node's workers share.

Vendor libraries are imported only by their own module (nvml.py: pynvml; codecarbon.py:
codecarbon; snmp_pdu.py: pysnmp), and only when that sampler is chosen.
"""

from __future__ import annotations

from typing import Any

from energyray.errors import ConfigError, SamplerError
from energyray.registry import SAMPLERS, resolve


def make_device_sampler(kind: str, device: str | None, cfg: Any) -> Any:
    """The sampler for one worker's device.

    kind is "gpu" (device: the GPU's UUID) or "cpu". cfg is a SamplerConfig. For the CPU,
    "auto" takes RAPL where this process can read it, else CodeCarbon's estimate.
    """
    if kind == "gpu":
        return resolve("sampler", SAMPLERS, cfg.gpu)(device=device, interval_s=cfg.interval_s)
    choice = cfg.cpu
    if choice == "none":
        return None
    if choice in ("auto", "rapl"):
        try:
            return resolve("sampler", SAMPLERS, "rapl")(interval_s=cfg.interval_s)
        except SamplerError:
            if choice == "rapl":
                raise
    if choice in ("auto", "codecarbon"):
        return resolve("sampler", SAMPLERS, "codecarbon")(
            interval_s=cfg.interval_s, country_iso_code=cfg.country_iso_code
        )
    raise ConfigError(f"sampler.cpu={choice!r} is not one of: auto, rapl, codecarbon, none.")


def node_sampler_roles(cfg: Any, node: str | None = None, cpu: bool = True) -> list[str]:
    """The node-level roles configured for the node named `node` (its hostname).

    "wall": the PDU of `sampler.pdu` where it is set and its `node` is unset or this node.
    "cpu": `sampler.node_cpu` (auto | rapl | codecarbon) where `cpu` is true (GPU nodes: on
    a CPU-only worker the device sampler is the CPU's already). cfg is a SamplerConfig.
    """
    roles = []
    pdu = getattr(cfg, "pdu", None)
    if pdu is not None and getattr(pdu, "node", None) in (None, "", node):
        roles.append("wall")
    choice = getattr(cfg, "node_cpu", "none")
    if choice not in ("none", "auto", "rapl", "codecarbon"):
        raise ConfigError(f"sampler.node_cpu={choice!r} is not one of: none, auto, rapl, codecarbon.")
    if cpu and choice != "none":
        roles.append("cpu")
    return roles


def make_node_sampler(role: str, cfg: Any) -> Any:
    """One node-level sampler (a SharedNodeSampler, not started), or None where `sampler.node_cpu`
    resolves to none. Raises ConfigError/SamplerError where it cannot be built: the caller
    records the reason on the trials' rows."""
    from types import SimpleNamespace

    from energyray.samplers.node import SharedNodeSampler

    if role == "wall":
        from energyray.samplers.snmp_pdu import PduSampler

        return SharedNodeSampler(PduSampler(cfg.pdu), role="wall")
    if role == "cpu":
        sampler = make_device_sampler("cpu", None, SimpleNamespace(
            cpu=cfg.node_cpu, interval_s=cfg.interval_s, country_iso_code=cfg.country_iso_code))
        return None if sampler is None else SharedNodeSampler(sampler, role="cpu")
    raise ValueError(f"unknown node sampler role {role!r}: wall | cpu")


def make_node_samplers(cfg: Any, node: str | None = None, cpu: bool = True) -> dict[str, Any]:
    """The node-level samplers of one node, by role (node_sampler_roles), each a
    SharedNodeSampler (not started). Raises where one cannot be built."""
    out = {role: make_node_sampler(role, cfg) for role in node_sampler_roles(cfg, node, cpu)}
    return {role: s for role, s in out.items() if s is not None}
