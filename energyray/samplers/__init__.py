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


def make_node_samplers(cfg: Any, node: str | None = None, cpu: bool = True) -> dict[str, Any]:
    """The node-level samplers of one node, by role, each a SharedNodeSampler (not started).

    cfg is a SamplerConfig. "wall": the PDU of `sampler.pdu` where it is set and its `node`
    is unset or this node's hostname. "cpu": `sampler.node_cpu` (auto | rapl | codecarbon)
    where `cpu` is true (GPU nodes: on a CPU-only worker the device sampler is the CPU's
    already). Raises ConfigError/SamplerError where one cannot be built: the caller records
    the reason on the trials' rows.
    """
    from types import SimpleNamespace

    from energyray.samplers.node import SharedNodeSampler

    out: dict[str, Any] = {}
    pdu = getattr(cfg, "pdu", None)
    if pdu is not None and getattr(pdu, "node", None) in (None, "", node):
        from energyray.samplers.snmp_pdu import PduSampler

        out["wall"] = SharedNodeSampler(PduSampler(pdu), role="wall")
    choice = getattr(cfg, "node_cpu", "none")
    if choice not in ("none", "auto", "rapl", "codecarbon"):
        raise ConfigError(f"sampler.node_cpu={choice!r} is not one of: none, auto, rapl, codecarbon.")
    if cpu and choice != "none":
        sampler = make_device_sampler("cpu", None, SimpleNamespace(
            cpu=choice, interval_s=cfg.interval_s, country_iso_code=cfg.country_iso_code))
        if sampler is not None:
            out["cpu"] = SharedNodeSampler(sampler, role="cpu")
    return out
