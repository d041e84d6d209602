"""Two Ray hosts in network namespaces on this machine (issue 4's "welcome" item): a head in one
namespace and a worker node in another, joined over a veth pair as two machines would be over a
network, each declaring the logical hardware of a different machine type, with Ray's token
authentication on. `python -m energyray sweep=smoke '+sweep.grid.hardware=[a6000,l4]'
ray.address=HEAD:PORT` in the head's namespace must run every trial on the host of its
hardware, each host known to Ray by its own address.

Needs root (CAP_NET_ADMIN) and `ip netns`: skipped where they are missing (CI containers may not
grant them)."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

SUPPORT = Path(__file__).parent / "support"
REPO = Path(__file__).resolve().parents[2]


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _netns_usable() -> str | None:
    if shutil.which("ip") is None:
        return "no `ip` command"
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    probe, veth = f"er-probe-{os.getpid()}", f"erp{os.getpid() % 100000}"
    try:
        for args in (("netns", "add", probe), ("link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b"),
                     ("link", "set", f"{veth}a", "netns", probe), ("netns", "exec", probe, "true")):
            r = _ip(*args, check=False)
            if r.returncode != 0:
                return f"`ip {' '.join(args)}` refused: {r.stderr.strip()}"
        return None
    finally:
        _ip("link", "del", f"{veth}b", check=False)
        _ip("netns", "del", probe, check=False)


SKIP = _netns_usable()
pytestmark = pytest.mark.skipif(SKIP is not None, reason=str(SKIP))


def _ns_pids(ns: str) -> list[int]:
    r = _ip("netns", "pids", ns, check=False)
    return [int(x) for x in r.stdout.split()]


@pytest.fixture()
def two_hosts(tmp_path):
    """(head ns, worker ns, head ip, worker ip, port), torn down with everything in them."""
    tag = os.getpid() % 200 + 20
    head, wkr = f"er-head-{os.getpid()}", f"er-wkr-{os.getpid()}"
    head_ip, wkr_ip = f"10.231.{tag}.1", f"10.231.{tag}.2"
    veth = f"erv{os.getpid() % 100000}"
    try:
        for ns in (head, wkr):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", f"{veth}a", "type", "veth", "peer", "name", f"{veth}b")
        for end, ns, addr in ((f"{veth}a", head, head_ip), (f"{veth}b", wkr, wkr_ip)):
            _ip("link", "set", end, "netns", ns)
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", end)
            _ip("-n", ns, "link", "set", end, "up")
        yield head, wkr, head_ip, wkr_ip, 6390
    finally:
        for ns in (head, wkr):  # everything started in the namespaces, not `ray stop` (it would kill every Ray here)
            for sig in (signal.SIGTERM, signal.SIGKILL):
                for pid in _ns_pids(ns):
                    try:
                        os.kill(pid, sig)
                    except ProcessLookupError:
                        pass
                if _ns_pids(ns):
                    time.sleep(2)
            _ip("netns", "del", ns, check=False)


def _run(ns: str, args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *args], capture_output=True, text=True, env=env, timeout=timeout)


def test_a_sweep_over_two_hosts_in_network_namespaces(two_hosts, shared_cache, tmp_path, request):
    head, wkr, head_ip, wkr_ip, port = two_hosts
    ray_bin = str(Path(sys.executable).parent / "ray")
    # Ray's token authentication, as across real machines: one token given to every host and the driver
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT.parent), str(REPO)]), "RAY_USAGE_STATS_ENABLED": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    # a local Ray started earlier in this process (orchestrator's loopback-only mode) set this to 0:
    # Ray's single-node mode, in which a second host cannot join
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)
    # this cluster's own session files, apart from any other Ray here (short: Ray's socket paths)
    temp = Path(tempfile.mkdtemp(prefix="ern", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    r = _run(head, [ray_bin, "start", "--head", f"--node-ip-address={head_ip}", f"--port={port}", "--num-cpus=1",
                    "--num-gpus=1", '--resources={"hw_a6000": 1}', "--include-dashboard=false",
                    f"--temp-dir={temp}"], env)
    assert r.returncode == 0, r.stdout + r.stderr
    r = _run(wkr, [ray_bin, "start", f"--address={head_ip}:{port}", f"--node-ip-address={wkr_ip}", "--num-cpus=1",
                   "--num-gpus=1", '--resources={"hw_l4": 1}'], env)
    assert r.returncode == 0, r.stdout + r.stderr
    address = f"{head_ip}:{port}"
    store = tmp_path / "store"
    r = _run(head, [sys.executable, "-m", "energyray", "sweep=smoke", "+sweep.grid.hardware=[a6000,l4]",
                    "sweep.grid.precision=[baseline]", f"ray.address={address}", "device=cpu",
                    f"cache_dir={shared_cache}", f"store.path={store}", f"hydra.run.dir={tmp_path / 'hydra'}"],
             env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    r = _run(head, [sys.executable, "-c", "import json, ray; ray.init(address=" + repr(address) + ", log_to_driver=False); "
                    "print(json.dumps({n['NodeID']: n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']}))"], env)
    assert r.returncode == 0, r.stderr[-3000:]
    nodes = json.loads(r.stdout.strip().splitlines()[-1])
    assert sorted(nodes.values()) == [head_ip, wkr_ip]
    from energyray.store import Store

    rows = Store(str(store)).read("trials")
    assert len(rows) == 4 and rows["trial_id"].is_unique  # 2 hardware x 2 repeats, each once
    where = {"a6000": head_ip, "l4": wkr_ip}
    for row in rows.to_dict("records"):
        assert row["status"] == "ok", row["error"]
        assert nodes[row["ray_node_id"]] == where[row["hardware"]], row
