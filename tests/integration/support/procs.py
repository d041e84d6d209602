"""The processes of one sweep, read from /proc (Linux): a test's way to find the Ray actors a
CLI subprocess started, and only those, to kill them or to check that none is left."""

from __future__ import annotations

import os
from pathlib import Path


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, session id) of `pid`, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
    return int(fields[1]), int(fields[3])


def cmdline(pid: int) -> str:
    """The process's command line as `ps` shows it ('' when gone); a Ray actor's names its class,
    e.g. `ray::WorkerHost.run`."""
    try:
        return (
            Path(f"/proc/{pid}/cmdline")
            .read_bytes()
            .replace(b"\0", b" ")
            .decode(errors="replace")
            .strip()
        )
    except OSError:
        return ""


def sweep_processes(root: int) -> dict[int, str]:
    """pid -> command line of every live process descended from `root`, or in the session `root`
    leads (a process started with start_new_session=True): a daemon Ray reparents to init stays
    in its session. `root` itself is left out."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (st := _stat(int(entry))) is not None:
            stats[int(entry)] = st
    found = {}
    for pid, (ppid, sid) in stats.items():
        if pid == root:
            continue
        mine, up, seen = sid == root, ppid, set()
        while not mine and up > 1 and up not in seen:
            seen.add(up)
            mine = up == root
            up = stats.get(up, (0, 0))[0]
        if mine and (cmd := cmdline(pid)):
            found[pid] = cmd
    return found


def actors(root: int, cls: str) -> list[int]:
    """Pids of the sweep's Ray actor processes of class `cls` (any method running, or none)."""
    return sorted(
        pid
        for pid, cmd in sweep_processes(root).items()
        if cmd == f"ray::{cls}" or cmd.startswith(f"ray::{cls}.")
    )
