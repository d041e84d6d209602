"""Joining a Ray cluster that is already running on this machine (`ray.address=auto`)."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from energyray.store import Store


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture()
def ray_head():
    port = _free_port()
    ray = [sys.executable, "-m", "ray.scripts.scripts"]
    start = subprocess.run([*ray, "start", "--head", f"--port={port}", "--num-cpus=2",
                            "--node-ip-address=127.0.0.1", "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    yield "auto"  # the address the head wrote to /tmp/ray/ray_current_cluster
    subprocess.run([*ray, "stop", "--force"], capture_output=True, timeout=120)


def test_a_sweep_runs_on_a_running_cluster(ray_head, cli, shared_cache, tmp_path: Path):
    r = cli([f"ray.address={ray_head}", "sweep=smoke", "sweep.repeats=1", f"store.path={tmp_path / 'store'}",
             f"cache_dir={shared_cache}"], tmp_path / "hydra", timeout=300)
    assert r.returncode == 0, r.explain()
    t = Store(tmp_path / "store").read("trials")
    assert len(t) == 2 and (t["status"] == "ok").all()
    systems = Store(tmp_path / "store").read("systems")
    assert len(systems) >= 1 and systems["ray_node_id"].notna().all()
