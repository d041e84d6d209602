"""Joining a Ray cluster that is already running on this machine (`ray.address=auto`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.ray_head import ray_head

from energyray.store import Store


def test_a_sweep_runs_on_a_running_cluster(cli_process, shared_cache, tmp_path: Path):
    energyray, cwd, env = cli_process
    with ray_head(env, num_cpus=2) as head:
        # auto: the cluster Ray's current-cluster file names, under this RAY_TMPDIR
        r = subprocess.run(
            [
                *energyray,
                "ray.address=auto",
                "sweep=smoke",
                "sweep.repeats=1",
                f"store.path={tmp_path / 'store'}",
                f"cache_dir={shared_cache}",
                f"hydra.run.dir={tmp_path / 'hydra'}",
            ],
            cwd=cwd,
            env={**env, "RAY_TMPDIR": str(head.tmpdir)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        assert head.drivers()  # the sweep's driver joined it
    t = Store(tmp_path / "store").read("trials")
    assert len(t) == 2 and (t["status"] == "ok").all()
    assert set(t["ray_node_id"]) == {head.node_id}
    systems = Store(tmp_path / "store").read("systems")
    assert len(systems) >= 1 and systems["ray_node_id"].notna().all()
