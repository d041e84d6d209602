"""A local run's Ray is its own (`ray.address` null, the default): it never joins another cluster
on the machine, found through RAY_ADDRESS or Ray's current-cluster file; two runs at once each
have theirs; a SIGKILLed driver leaves none of its Ray's processes behind; a wrong address fails
fast with a message instead of hanging; a local Ray that cannot start says so in a line."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from support.ray_head import ray_head

from energyray.store import Store

RUN_TIMEOUT_S = 300
NOTICE = "is ignored: ray.address is null, so this run starts its own Ray"


def _sweep(store: Path, cache: Path, hydra: Path, *extra: str) -> list[str]:
    return [
        "sweep=smoke",
        "sweep.grid.precision=[baseline]",
        "sweep.repeats=2",
        f"store.path={store}",
        f"cache_dir={cache}",
        f"hydra.run.dir={hydra}",
        *extra,
    ]


@pytest.fixture(scope="module")
def beside_a_foreign_cluster(tmp_path_factory, shared_cache, cli_process):
    """Two sweeps started at once while another Ray cluster runs here: one with RAY_ADDRESS
    naming that cluster, both with RAY_TMPDIR under which Ray finds it as the current one."""
    energyray, cwd, cli_env = cli_process
    root = tmp_path_factory.mktemp("private")
    with ray_head(cli_env) as head:
        env = {**cli_env, "RAY_TMPDIR": str(head.tmpdir)}
        runs = {}
        for name, extra_env in (
            ("with_ray_address", {"RAY_ADDRESS": head.address}),
            ("with_cluster_file", {}),
        ):
            proc = subprocess.Popen(
                [*energyray, *_sweep(root / name, shared_cache, root / f"hydra-{name}")],
                cwd=cwd,
                env={**env, **extra_env},
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                start_new_session=True,
            )
            runs[name] = proc
        out = {name: p.communicate(timeout=RUN_TIMEOUT_S)[0] for name, p in runs.items()}
        yield {
            "head": head,
            "drivers": head.drivers(),
            "root": root,
            "runs": {name: (p.returncode, out[name]) for name, p in runs.items()},
        }


def test_a_local_sweep_never_joins_a_cluster_named_by_RAY_ADDRESS_or_the_current_cluster_file(
    beside_a_foreign_cluster,
):
    head, root = beside_a_foreign_cluster["head"], beside_a_foreign_cluster["root"]
    nodes = {}
    for name, (code, out) in beside_a_foreign_cluster["runs"].items():
        assert code == 0, out[-4000:]
        rows = Store(root / name).read("trials")
        assert head.node_id not in set(rows["ray_node_id"]), name
        nodes[name] = set(rows["ray_node_id"])
        assert len(nodes[name]) == 1
    assert nodes["with_ray_address"] != nodes["with_cluster_file"]  # each its own Ray
    # no driver ever connected to the other cluster
    assert beside_a_foreign_cluster["drivers"] == []
    with_env = beside_a_foreign_cluster["runs"]["with_ray_address"][1]
    assert f"RAY_ADDRESS={head.address} {NOTICE}" in with_env and "ray.address=auto" in with_env
    assert NOTICE not in beside_a_foreign_cluster["runs"]["with_cluster_file"][1]


def test_two_sweeps_at_once_into_two_stores_both_complete(beside_a_foreign_cluster):
    for name, (code, out) in beside_a_foreign_cluster["runs"].items():
        assert code == 0, out[-4000:]
        rows = Store(beside_a_foreign_cluster["root"] / name).read("trials")
        assert len(rows) == 2 and rows["trial_id"].is_unique
        assert (rows["status"] == "ok").all(), rows["error"].tolist()


def _alive(procs: list[psutil.Process]) -> list[str]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(f"{p.pid} {p.name()}")
        except psutil.NoSuchProcess:
            pass
    return out


def test_sigkill_of_the_driver_leaves_no_process_of_its_ray(tmp_path, shared_cache, cli_process):
    energyray, cwd, env = cli_process
    argv = _sweep(
        tmp_path / "store",
        shared_cache,
        tmp_path / "hydra",
        "sweep.repeats=6",
        "generation.ignore_eos=true",
        "generation.cpu_max_new_tokens=400",
    )
    proc = subprocess.Popen(
        [*energyray, *argv],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    driver = psutil.Process(proc.pid)
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        tree: list[psutil.Process] = []
        while time.monotonic() < deadline and proc.poll() is None:  # until a worker runs a model
            tree = driver.children(recursive=True)
            if any(p.name().startswith("ray::WorkerHost") for p in tree if p.is_running()):
                break
            time.sleep(0.1)
        assert proc.poll() is None, "the sweep ended before it could be killed"
        tree = driver.children(recursive=True)
        names = {p.name() for p in tree}
        assert {"gcs_server", "raylet"} <= names, names
        temp_dirs = {
            a.split("=", 1)[1]
            for p in tree
            if p.name() == "raylet"
            for a in p.cmdline()
            if a.startswith("--temp_dir=")
        }
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while _alive(tree) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(tree), _alive(tree)
        assert temp_dirs and all(d.startswith("/tmp/energyray-ray-") for d in temp_dirs), temp_dirs
        assert not any(Path(d).exists() for d in temp_dirs)  # its private temp dir is gone too
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.parametrize(
    "address,env",
    [("127.0.0.1:1", {}), ("auto", {"RAY_ADDRESS": "127.0.0.1:1"})],
    ids=["ray.address", "RAY_ADDRESS"],
)
def test_an_unreachable_address_fails_fast_naming_it(tmp_path, cli_process, address, env):
    energyray, cwd, cli_env = cli_process
    t = time.monotonic()
    r = subprocess.run(
        [
            *energyray,
            "sweep=smoke",
            f"ray.address={address}",
            f"store.path={tmp_path / 'store'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=cwd,
        env={**cli_env, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    took = time.monotonic() - t
    out = r.stdout + r.stderr
    assert r.returncode != 0, out
    assert "127.0.0.1:1" in out and "ray start --head" in out and "firewall" in out, out
    assert "Traceback" not in out, out
    assert took < 30, f"{took:.0f} s"


def test_a_local_ray_that_does_not_start_in_time_is_a_short_error(tmp_path, cli_process):
    energyray, cwd, env = cli_process
    # no time at all for Ray's GCS to publish its port: the start fails as on a very busy machine
    r = subprocess.run(
        [
            *energyray,
            "sweep=smoke",
            f"store.path={tmp_path / 'store'}",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
        cwd=cwd,
        env={**env, "RAY_gcs_server_port_wait_time_s": "0"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    out = r.stdout + r.stderr
    assert r.returncode != 0 and "Traceback" not in out, out
    assert "The local Ray did not start" in out and "run the same command again" in out, out
    logs = out.split("Ray's logs: ", 1)[1].split()[0]
    try:
        # kept, since the error names it; but none of its processes
        assert logs.startswith("/tmp/energyray-ray-") and Path(logs).is_dir()
        assert not [
            p for p in psutil.process_iter(["cmdline"]) if logs in " ".join(p.info["cmdline"] or [])
        ]
    finally:
        shutil.rmtree(logs, ignore_errors=True)
