"""A local Ray (the default, `ray.address=null`) listens on loopback only, dashboard off."""

from __future__ import annotations

import ipaddress

import psutil
import ray

from energyray.config import RunConfig
from energyray.orchestrator.cluster import init_ray


def test_a_local_ray_listens_on_loopback_only():
    if ray.is_initialized():
        ray.shutdown()
    cfg = RunConfig()
    cfg.ray.num_cpus = 1
    try:
        init_ray(cfg)
        ours = {p.pid for p in psutil.Process().children(recursive=True)}
        names = {p.name() for p in psutil.Process().children(recursive=True)}
        assert {"gcs_server", "raylet"} <= names, names
        listening = [c for c in psutil.net_connections(kind="inet")
                     if c.status == psutil.CONN_LISTEN and c.pid in ours]
        assert len(listening) >= 3  # GCS, raylet, object manager at least
        for c in listening:
            ip = ipaddress.ip_address(c.laddr.ip)
            ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
            assert ip.is_loopback, f"{psutil.Process(c.pid).name()} listens on {c.laddr}"
        assert not any(n.startswith("ray::Dashboard") and "Agent" not in n for n in names)
    finally:
        ray.shutdown()
