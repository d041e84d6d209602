"""Node-level samplers through the orchestrator: one node sampler host per node, shared by the
node's workers, against a real SNMP agent (support/snmp_agent.py) and the tiny model.

A local Ray declares 2 logical GPUs; the workers run on the CPU (device=cpu, two CPU slots),
so their device sampler cannot weigh overlapping windows: the node's energy is split equally,
and the rows say so. The GPU-energy-share path through Ray (the node sampler host asking each
worker's SamplerHost for its device energy) is tested with a constant-power device sampler in
place of NVML (support/constant_gpu.py).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import ray
from support.overlap import assert_split_one_to_three, overlapping
from support.plans import cpu_config, plan, run_collect, specs_of
from support.snmp_agent import (
    AUTH_PASS,
    PRIV_PASS,
    SKIP_NO_SNMPD,
    V3_USER,
    WATTS,
    Agent,
    free_udp_port,
    pdu,
)

from energyray.config import (
    ModelConfig,
    PduConfig,
    PduOidConfig,
    RunConfig,
    SamplerConfig,
)
from energyray.plan import Plan

pytestmark = SKIP_NO_SNMPD

SUPPORT = Path(__file__).parent / "support"
MODELS = {name: ModelConfig(name=name, builtin="tiny-llama") for name in ("tiny-a", "tiny-b")}
WALL_W = 500
# the secrets reach the node sampler host through the environment Ray was started with
SECRETS = {"TEST_NODE_PDU_AUTH": AUTH_PASS, "TEST_NODE_PDU_PRIV": PRIV_PASS,
           "TEST_NODE_PDU_WRONG_PRIV": "not-the-privacy-password"}


@pytest.fixture(scope="module")
def rendezvous(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("rendezvous")


@pytest.fixture(scope="module")
def local_ray(rendezvous):
    env = {"PYTHONPATH": os.pathsep.join([str(SUPPORT), *([os.environ["PYTHONPATH"]] if "PYTHONPATH" in os.environ else [])]),
           "ENERGYRAY_TEST_RENDEZVOUS": str(rendezvous), **SECRETS}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # before ray.init: Ray's processes inherit the driver's environment
    ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = Agent(tmp_path_factory.mktemp("snmpd"))
    a.start()
    a.set(WATTS, WALL_W)
    yield a
    a.stop()


def v3(agent: Agent) -> PduConfig:
    return pdu(agent, version="3", user=V3_USER, auth_protocol="SHA", priv_protocol="AES",
               auth_password_env="TEST_NODE_PDU_AUTH", priv_password_env="TEST_NODE_PDU_PRIV")


def _cfg(cache: Path, pdu_cfg: PduConfig, workers: int = 2) -> RunConfig:
    cfg = cpu_config(cache, cpu_workers=workers)
    cfg.sampler.pdu = pdu_cfg
    return cfg


def _sweep(cfg: RunConfig, grid: dict, repeats: int = 1, backend: str = "transformers", new_tokens: int = 48,
           on_result=None):
    p = plan("node", grid, cfg, repeats, models=MODELS, model="tiny-a", backend=backend, new_tokens=new_tokens)
    specs = specs_of(p)
    rows, systems = run_collect(p, on_result)
    assert Counter(r["trial_id"] for r in rows) == Counter(s.trial_id for s in specs)  # each once
    return rows, [s for s in systems if s.get("kind") != "node_sampler"], \
        [s for s in systems if s.get("kind") == "node_sampler"]


def _wall_phases(row: dict) -> float:
    """Everything the row's windows got of the node's wall energy (one trial per group: the
    group's load and unload are on its one row)."""
    return row["wall_energy_j"] + sum(row.get(f"{p}_wall_j") or 0.0 for p in ("load", "warmup", "response", "unload"))


def test_cli_sweep_with_a_pdu_stores_wall_energy_and_the_node_samplers_row(cli, agent, shared_cache, tmp_path):
    """Through `python -m energyray` (its own local Ray) and the store."""
    from energyray.store import Store

    store = tmp_path / "store"
    r = cli(["sweep=smoke", "sweep.grid.precision=[baseline]", "sweep.repeats=1", "model=tiny-llama",
             "measurement.idle_s=0", "generation.cpu_max_new_tokens=4", "sampler.cpu=none", "sampler/pdu=apc-rpdu",
             "sampler.pdu.host=127.0.0.1", f"sampler.pdu.port={agent.port}", "sampler.pdu.interval_s=0.05",
             f"store.path={store}", f"cache_dir={shared_cache}"], tmp_path / "hydra")
    assert r.returncode == 0, r.explain()
    trials, systems = Store(store).read("trials"), Store(store).read("systems")
    (row,) = trials.to_dict("records")
    assert row["status"] == "ok" and row["wall_energy_source"] == "pdu", row.get("wall_energy_reason")
    assert row["wall_avg_power_w"] == pytest.approx(WALL_W) and row["wall_energy_share"] == 1.0
    node = systems[systems["kind"] == "node_sampler"]
    assert list(node["role"]) == ["wall"] and list(node["sampler"]) == ["pdu"]
    assert (systems["kind"] == "cpu").sum() == 1  # the worker's own row is still there


def test_two_workers_share_one_node_sampler_and_its_energy(local_ray, agent, shared_cache, rendezvous):
    for f in rendezvous.iterdir():
        f.unlink()
    cfg = _cfg(shared_cache, v3(agent))
    rows, workers, nodes = _sweep(cfg, {"model": ["tiny-a", "tiny-b"]}, backend="rendezvous_backend:RendezvousBackend")

    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert len({w["pid"] for w in workers}) == 2 and len({w["slot"] for w in workers}) == 2  # two workers at once
    # one node sampler host for the node: both workers used it, and one reported its totals
    assert len({w["node_sampler_pid"] for w in workers}) == 1, [w.get("node_sampler_pid") for w in workers]
    assert all(json.loads(w["node_samplers"])["wall"]["sampler"] == "pdu" for w in workers)
    assert [(n["role"], n["sampler"]) for n in nodes] == [("wall", "pdu")]
    (node,) = nodes
    # Ray started its actors at nice 15 here; the node sampler's poll threads take nice 0 where allowed
    assert node["node_sampler_nice"] == (0 if os.geteuid() == 0 else 15)

    for r in rows:
        assert r["wall_energy_j"] is not None and r["wall_energy_j"] > 0, r.get("wall_energy_reason")
        assert r["wall_energy_source"].startswith("pdu"), r["wall_energy_source"]
        # the trials overlapped (the backend waits for both): each says so, and how it was split
        src = r["wall_energy_source"]
        assert "; shared with " in src and " other window" in src, src
        assert src.endswith("split equally (device energy unknown)"), src  # no GPU energy on a CPU worker
        assert 0 < r["wall_energy_share"] < 1
        assert r["wall_energy_j"] == pytest.approx(r["wall_energy_node_j"] * r["wall_energy_share"], rel=1e-9)
        assert r["wall_energy_attribution"].startswith("node energy in each interval")
        assert r["wall_energy_node_j"] == pytest.approx(WALL_W * r["wall_energy_j"] / r["wall_avg_power_w"], rel=1e-6)

    # what the rows got adds up to the node's energy over the span of all their windows: the
    # overlaps were split, not counted twice; the rest (no window open) is nobody's
    assert sum(_wall_phases(r) for r in rows) == pytest.approx(node["attributed_j"], rel=1e-6)
    assert node["attributed_j"] + node["unattributed_j"] == pytest.approx(WALL_W * node["ledger_span_s"], rel=1e-6)
    assert node["windows_closed"] == 2 * 4  # load, trial, response, unload on each worker

    # the v3 passwords came from the environment and are nowhere in what was recorded
    shown = json.dumps([rows, workers, nodes], default=str)
    assert AUTH_PASS not in shown and PRIV_PASS not in shown
    assert "from $TEST_NODE_PDU_AUTH" in shown


def test_a_pdu_that_does_not_answer_gives_null_wall_energy_with_the_reason(local_ray, shared_cache):
    down = PduConfig(host="127.0.0.1", port=free_udp_port(), oids=[PduOidConfig(oid=WATTS)], interval_s=0.05,
                     timeout_s=0.3)
    rows, workers, nodes = _sweep(_cfg(shared_cache, down, workers=1), {"batch_size": [1, 2]})
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    for r in rows:
        assert r["wall_energy_j"] is None and r["wall_energy_source"] == "not_measurable"
        assert "no answer from PDU 127.0.0.1" in r["wall_energy_reason"], r["wall_energy_reason"]
        assert r["response_wall_j"] is None
    assert nodes[0]["failed_reads"] >= 1


def test_a_v3_password_missing_on_the_node_is_the_rows_reason_naming_the_variable(local_ray, agent, shared_cache):
    cfg = v3(agent)
    cfg.auth_password_env = "TEST_NODE_PDU_UNSET"  # not in the environment Ray was started with
    rows, workers, nodes = _sweep(_cfg(shared_cache, cfg, workers=1), {})
    (row,) = rows
    assert row["status"] == "ok" and row["wall_energy_j"] is None, row["error"]
    assert "$TEST_NODE_PDU_UNSET" in row["wall_energy_reason"] and "ray start" in row["wall_energy_reason"]
    assert "$TEST_NODE_PDU_UNSET" in nodes[0]["error"]


def test_a_wrong_v3_privacy_password_is_the_rows_reason_naming_privacy(local_ray, agent, shared_cache):
    cfg = v3(agent)
    cfg.priv_password_env = "TEST_NODE_PDU_WRONG_PRIV"
    rows, workers, nodes = _sweep(_cfg(shared_cache, cfg, workers=1), {})
    (row,) = rows
    assert row["status"] == "ok" and row["wall_energy_j"] is None, row["error"]
    reason = row["wall_energy_reason"]
    assert "SNMPv3 privacy failed" in reason and "$TEST_NODE_PDU_WRONG_PRIV" in reason, reason
    assert "is the agent up" not in reason and "not-the-privacy-password" not in reason


def test_wall_energy_through_ray_is_250_w_times_each_window(local_ray, shared_cache, tmp_path):
    """Through the orchestrator (the worker, its device sampler actor and the node sampler actor,
    three processes on one node): a PDU serving a constant 250 W gives every window, the trial's
    and each phase's, 250 W × that window as the worker timed it. Before, the wall window opened
    a Ray call before the device's: ratios up to 2.06 on a 10 ms window, and the ~0.15 ms
    response phase got 2–11 J."""
    (tmp_path / "snmpd").mkdir()
    a = Agent(tmp_path / "snmpd")
    a.start()
    try:
        a.set(WATTS, 250)
        cfg = cpu_config(shared_cache, sampler="codecarbon", cpu_workers=1)  # a device window: window_s
        cfg.sampler.pdu = pdu(a)
        cfg.generation.warmup_runs = 1
        rows, _, _ = _sweep(cfg, {"max_new_tokens": [2, 400]}, new_tokens=2)  # 400: a window over 0.1 s
    finally:
        a.stop()
    assert [r["status"] for r in rows] == ["ok", "ok"], [r["error"] for r in rows]
    assert max(r["window_s"] for r in rows) >= 0.1
    for r in rows:
        assert r["wall_energy_source"] == "pdu", r["wall_energy_reason"]
        assert r["wall_window_s"] == pytest.approx(r["window_s"], abs=1e-9) and r["window_s"] >= r["duration_s"]
        assert r["wall_energy_j"] / (250.0 * r["window_s"]) == pytest.approx(1.0, abs=0.005)
        for phase in ("load", "warmup", "response", "unload"):
            window = r.get(f"{phase}_wall_window_s")
            if window is None:  # unload: on the group's last row only; warmup: the first of its shape
                continue
            assert window >= r[f"{phase}_s"] - 1e-6, phase
            assert r[f"{phase}_wall_j"] / (250.0 * window) == pytest.approx(1.0, abs=0.005), phase
        if r["response_s"] < 1e-3:
            assert r["response_wall_j"] < 1.0  # a sub-millisecond phase: sub-joule


def test_a_node_sampler_host_that_dies_gives_null_wall_energy_then_a_new_one(local_ray, agent, shared_cache):
    killed: list[int] = []

    def on_result(row, systems):  # after the first trial, SIGKILL the node sampler host
        if not killed:
            killed.append(systems[-1]["node_sampler_pid"])
            os.kill(killed[0], signal.SIGKILL)
            time.sleep(0.5)

    rows, workers, nodes = _sweep(_cfg(shared_cache, pdu(agent), workers=1), {"model": ["tiny-a", "tiny-b"]},
                                  repeats=2, on_result=on_result)
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    first, second = rows[:2], rows[2:]
    assert first[0]["wall_energy_j"] is not None
    lost = first[1]
    assert lost["wall_energy_j"] is None and lost["wall_energy_source"] == "not_measurable"
    assert lost["wall_energy_reason"].startswith("node sampler failed"), lost["wall_energy_reason"]
    # the next group's worker got a new host on the node, and its trials are measured again
    assert [w["node_sampler_pid"] for w in workers][0] == killed[0]
    assert workers[1]["node_sampler_pid"] != killed[0]
    assert all(r["wall_energy_j"] is not None and r["wall_energy_source"] == "pdu" for r in second)
    assert len(nodes) == 1  # the dead one could not report


def test_node_energy_is_split_by_each_workers_device_energy_through_ray(local_ray, agent):
    """NodeSamplerHost asks each window's SamplerHost for its device energy over the overlap."""
    from energyray.orchestrator.actors import NodeSamplerHost, RemoteNodeSampler, SamplerHost

    cfg = SamplerConfig(gpu="constant_gpu:ConstantGpu", interval_s=0.01, pdu=pdu(agent))
    node_id = ray.get_runtime_context().get_node_id()
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    host = ray.remote(NodeSamplerHost).options(
        num_cpus=0, scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False)).remote(cfg, True)
    gpus = [ray.remote(SamplerHost).options(num_cpus=0).remote(cfg) for _ in range(2)]
    for g, watts in zip(gpus, (100, 300), strict=True):
        assert ray.get(g.bind.remote("gpu", f"watts-{watts}"), timeout=60)["sampler"] == "constant_gpu"
    info = ray.get(host.describe.remote(), timeout=60)
    a, b = (RemoteNodeSampler(host, "wall", info["wall"], gpu_handle=g) for g in gpus)
    try:
        t, ra, rb = overlapping(lambda at: a.begin("w1:trial", at_ns=at), lambda at: b.begin("w2:trial", at_ns=at),
                                lambda at: a.end("w1:trial", at_ns=at), lambda at: b.end("w2:trial", at_ns=at))
    finally:
        ray.get(host.close.remote(), timeout=30)
        for h in (host, *gpus):
            ray.kill(h)
    assert_split_one_to_three(WALL_W, t, ra, rb)


def test_without_node_samplers_configured_no_node_host_is_started():
    from energyray.orchestrator.scheduler import Scheduler, Slot

    cfg = RunConfig(device="cpu")
    empty = Plan(groups=[], models={}, configs={}, cfg=cfg)
    sched = Scheduler(empty, lambda r: None)
    cpu_slot = Slot(index=0, pg=None, bundle={"CPU": 1.0}, hardware="cpu", node_id="n1")
    gpu_slot = Slot(index=1, pg=None, bundle={"GPU": 1.0, "CPU": 1.0}, hardware="h200", node_id="n1")
    assert sched._node_host(cpu_slot) is None and sched._node_host(gpu_slot) is None
    cfg.sampler.node_cpu = "codecarbon"  # CPU/RAM beside a GPU only: a CPU worker measures its CPU already
    assert sched._node_host(cpu_slot) is None
    assert sched.node_hosts == {}
