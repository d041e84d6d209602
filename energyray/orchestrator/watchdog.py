"""Stops a driver's private local Ray when the driver exits by any path, SIGKILL included.

Run as `python -I -S watchdog.py DRIVER_PID TEMP_DIR` (standard library only: it starts in
milliseconds) with a pipe on stdin whose write end only the driver holds; it says "watching"
on stdout once it knows the driver's children from before Ray. Until the driver
writes "ready" (ray.init returned), every child the driver starts is taken as a Ray process;
from then on, the processes of those trees are tracked (a raylet's workers and agents).
When the pipe reaches EOF (the driver exited, or closed it after ray.shutdown), every tracked
process still alive and its descendants are stopped (SIGSTOP, so that none starts another),
then killed (SIGKILL: Ray's agents ignore SIGTERM), and TEMP_DIR is removed unless the driver
wrote "keep" (a failed start whose logs the error names). Linux only: it reads /proc.

Only the processes that appeared under the driver after the watchdog started are touched, each
recognised by its pid and start time (a reused pid is not the same process).
"""

from __future__ import annotations

import os
import select
import shutil
import signal
import sys
import time

# how often the trees are walked (~3 ms of CPU each); a worker younger than this when the
# driver dies is not seen, and exits on its own when its raylet goes
POLL_S = 0.5
POLL_STARTING_S = 0.1  # while ray.init starts Ray's processes
GONE_WITHIN_S = 5.0


def _table() -> dict[int, tuple[int, str]]:
    """Every live process: pid -> (parent pid, start time in clock ticks since boot). A zombie
    (dead, not yet reaped by its new parent) does not count."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                # the fields after "(comm)", which may hold spaces and parentheses
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != b"Z":
            out[int(name)] = (int(fields[1]), fields[19].decode())  # ppid, starttime
    return out


def _descendants(roots: dict[int, str], table: dict[int, tuple[int, str]]) -> dict[int, str]:
    """`roots` still alive (same start time) and all their descendants: pid -> start time."""
    found = {pid: start for pid, start in roots.items() if table.get(pid, (0, ""))[1] == start}
    grew = True
    while grew:
        grew = False
        for pid, (ppid, start) in table.items():
            if ppid in found and pid not in found:
                found[pid] = start
                grew = True
    return found


def _stop(tracked: dict[int, str]) -> None:
    """Freeze the tracked trees until no new member appears, then SIGKILL them all."""
    stopped: dict[int, str] = {}
    for _ in range(20):
        alive = _descendants({**tracked, **stopped}, _table())
        new = {p: s for p, s in alive.items() if p not in stopped}
        if not new:
            break
        for pid in new:
            try:
                os.kill(pid, signal.SIGSTOP)
            except OSError:
                pass
        stopped.update(new)
    for pid in stopped:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    deadline = time.monotonic() + GONE_WITHIN_S
    while time.monotonic() < deadline:
        table = _table()
        if not any(table.get(p, (0, ""))[1] == s for p, s in stopped.items()):
            return
        time.sleep(0.05)


def main(driver: int, temp_dir: str) -> None:
    # a terminal's Ctrl-C is for the driver; this process cleans up after it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    me = os.getpid()
    before = {(pid, start) for pid, (ppid, start) in _table().items() if ppid == driver}
    # the driver starts Ray only after this line: none of Ray's processes is in `before`
    os.write(1, b"watching\n")
    os.close(1)
    tracked: dict[int, str] = {}
    ready = keep = False
    buf = b""
    while True:
        r, _, _ = select.select([0], [], [], POLL_S if ready else POLL_STARTING_S)
        if r:
            chunk = os.read(0, 4096)
            if not chunk:
                break
            buf += chunk
        table = _table()
        if not ready:  # read after "ready" arrived: the last of ray.init's children are in it
            tracked.update(
                {
                    pid: start
                    for pid, (ppid, start) in table.items()
                    if ppid == driver and pid != me and (pid, start) not in before
                }
            )
        tracked.update(_descendants(tracked, table))
        ready = ready or b"ready" in buf
        keep = keep or b"keep" in buf
    _stop(tracked)
    if not keep:
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
