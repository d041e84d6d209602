"""Another Ray cluster on this machine, as `ray start --head` leaves one, but of the test's own:
its temp dir under RAY_TMPDIR=<dir> (where Ray, given that variable, looks for the current-cluster
file), free ports (its agent port too: never another cluster's), its own
process group, stopped by killing exactly its processes (never `ray stop`, which stops every
Ray on the machine)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil

START_WITHIN_S = 120.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RayHead:
    tmpdir: Path  # RAY_TMPDIR for anything that should find this cluster as Ray's current one
    address: str  # the GCS address, as the current-cluster file has it
    node_id: str
    proc: subprocess.Popen
    # its processes, collected while it runs
    seen: dict[int, psutil.Process] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.tmpdir / "ray" / "session_latest" / "logs"

    def drivers(self) -> list[str]:
        """The drivers that ever connected to this cluster (each writes a core-driver log here)."""
        return sorted(p.name for p in self.logs.glob("python-core-driver-*"))

    def processes(self) -> list[psutil.Process]:
        """`ray start` and every process under it seen so far (psutil refuses to signal a reused pid)."""
        try:
            top = psutil.Process(self.proc.pid)
            for p in [top, *top.children(recursive=True)]:
                self.seen.setdefault(p.pid, p)
        except psutil.NoSuchProcess:
            pass
        return list(self.seen.values())


def _raylet_node_id(pid: int) -> str | None:
    for p in psutil.Process(pid).children(recursive=True):
        try:
            for arg in p.cmdline():
                if arg.startswith("--node_id="):
                    return arg.split("=", 1)[1]
        except psutil.Error:
            continue
    return None


@contextmanager
def ray_head(env: dict[str, str], num_cpus: int = 1) -> Iterator[RayHead]:
    tmpdir = Path(tempfile.mkdtemp(prefix="erh", dir="/tmp"))  # short: Ray's Unix socket paths
    env = {**env, "RAY_TMPDIR": str(tmpdir)}
    env.pop("RAY_ADDRESS", None)
    argv = [
        str(Path(sys.executable).parent / "ray"),
        "start",
        "--head",
        "--block",
        f"--port={free_port()}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        "--include-dashboard=false",
        "--disable-usage-stats",
        f"--dashboard-agent-listen-port={free_port()}",
        "--min-worker-port=0",
        "--max-worker-port=0",
    ]
    log = open(tmpdir / "ray-start.log", "w+")  # noqa: SIM115 (closed at teardown)
    proc = subprocess.Popen(
        argv, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    head = None
    try:
        current = tmpdir / "ray" / "ray_current_cluster"
        deadline = time.monotonic() + START_WITHIN_S
        node_id = None
        while time.monotonic() < deadline and proc.poll() is None:
            if current.exists() and current.read_text().strip():
                node_id = node_id or _raylet_node_id(proc.pid)
                if node_id:
                    break
            time.sleep(0.2)
        log.seek(0)
        assert node_id, f"`ray start --head` did not come up:\n{log.read()[-3000:]}"
        head = RayHead(tmpdir, current.read_text().strip(), node_id, proc)
        head.processes()
        yield head
    finally:
        procs = head.processes() if head else []
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # its group (the pid is ours until reaped below)
        except ProcessLookupError:
            pass
        for p in procs:
            try:
                p.terminate()
            except psutil.Error:
                pass
        _, alive = psutil.wait_procs(procs, timeout=2)
        for p in alive:  # Ray's agents ignore SIGTERM
            try:
                p.kill()
            except psutil.Error:
                pass
        psutil.wait_procs(alive, timeout=5)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(tmpdir, ignore_errors=True)
