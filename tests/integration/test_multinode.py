"""Several Ray nodes on this machine (`ray.cluster_utils.Cluster`: a head and worker nodes,
each its own raylet), each declaring the logical hardware of a different machine type.

- every trial runs on a node of the hardware it asked for;
- a node lost mid-sweep: its group is rescheduled onto the node that is left, and every
  trial is stored exactly once.
"""

from __future__ import annotations

import threading
from collections import Counter

import pytest
import ray
from ray.cluster_utils import Cluster
from support.plans import cpu_config, plan

from energyray.orchestrator import run_sweep
from energyray.plan import Plan


@pytest.fixture()
def cluster():
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    yield c
    ray.shutdown()
    c.shutdown()


def _plan(cache, grid, repeats, hardware, new_tokens=8, node_wait_s=120.0) -> Plan:
    return plan("multinode", grid, cpu_config(cache, node_wait_s=node_wait_s), repeats, hardware="l4",
                new_tokens=new_tokens, targets=tuple(hardware))


def test_each_trial_runs_on_a_node_of_its_hardware(cluster, shared_cache):
    a6000 = cluster.add_node(num_cpus=1, num_gpus=1, resources={"hw_a6000": 1})
    l4 = cluster.add_node(num_cpus=1, num_gpus=1, resources={"hw_l4": 1})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    plan = _plan(shared_cache, {"hardware": ["a6000", "l4"]}, 2, ["a6000", "l4"])
    rows: list[dict] = []
    run_sweep(plan, lambda r: rows.append(r.row))
    specs = {s.trial_id: s for g in plan.groups for s in g}
    assert Counter(r["trial_id"] for r in rows) == Counter(list(specs))
    node_of = {"a6000": a6000.node_id, "l4": l4.node_id}
    for r in rows:
        assert r["status"] == "ok", r["error"]
        assert r["ray_node_id"] == node_of[specs[r["trial_id"]].hardware], r


def test_a_node_lost_mid_sweep_has_its_group_rescheduled(cluster, shared_cache):
    nodes = [cluster.add_node(num_cpus=1, num_gpus=1, resources={"hw_l4": 1}) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, configure_logging=False)
    plan = _plan(shared_cache, {"precision": ["baseline", "bf16"]}, 3, ["l4"], new_tokens=300, node_wait_s=5.0)
    rows: list[dict] = []
    lost: list[str] = []

    def on_result(result):
        rows.append(result.row)
        if not lost:  # the first node to finish a trial is lost while it runs its next one
            node = next(n for n in nodes if n.node_id == result.row["ray_node_id"])
            lost.append(node.node_id)
            threading.Timer(0.3, cluster.remove_node, args=(node,)).start()

    run_sweep(plan, on_result)
    specs = {s.trial_id for g in plan.groups for s in g}
    assert Counter(r["trial_id"] for r in rows) == Counter(specs)  # all of them, once
    assert all(r["status"] == "ok" for r in rows), [(r["status"], r["error"]) for r in rows]
    survivor = next(n.node_id for n in nodes if n.node_id != lost[0])
    after = rows[[r["ray_node_id"] for r in rows].index(lost[0]) + 1:]
    assert after and all(r["ray_node_id"] == survivor for r in after)
    assert any(r["attempts"] == 2 and "Actor" in r["retried_errors"] for r in rows)
