"""The watchdog of a driver's private Ray (orchestrator/watchdog.py), without Ray: a stand-in
driver starts it, then a tree of processes (one ignoring SIGTERM, one its grandchild), says
"ready" and is SIGKILLed. Everything it started after the watchdog goes, with the temp dir;
a process it started before the watchdog, and the driver's own parent, are left alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from energyray.orchestrator import watchdog

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the watchdog reads /proc"
)

DRIVER = textwrap.dedent("""
    import subprocess, sys, time
    py = sys.executable
    earlier = subprocess.Popen([py, "-c", "import time; time.sleep(60)"])  # not Ray's: started before
    dog = subprocess.Popen([py, "-I", "-S", sys.argv[1], str(__import__("os").getpid()), sys.argv[2]],
                           stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)
    dog.stdout.readline()
    # a "raylet" that ignores SIGTERM and starts a "worker" in a session of its own
    subprocess.Popen([py, "-c", "import signal, subprocess, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                      "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
                      "time.sleep(60)"])
    time.sleep(0.5)
    dog.stdin.write(b"ready\\n"); dog.stdin.flush()
    print(earlier.pid, dog.pid, flush=True)
    time.sleep(60)
""")


def _alive(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_sigkilled_driver_leaves_nothing_it_started_after_the_watchdog(tmp_path):
    temp_dir = Path(tempfile.mkdtemp(prefix="energyray-ray-test-"))
    (temp_dir / "session").mkdir()
    driver = subprocess.Popen(
        [sys.executable, "-c", DRIVER, watchdog.__file__, str(temp_dir)],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    earlier, started = None, []
    try:
        assert driver.stdout is not None
        earlier_pid, dog_pid = map(int, driver.stdout.readline().split())
        earlier = psutil.Process(earlier_pid)
        dog = psutil.Process(dog_pid)
        time.sleep(0.7)  # the watchdog walks the trees every 0.5 s once the driver is ready
        started = [
            p
            for p in psutil.Process(driver.pid).children(recursive=True)
            if p.pid not in (earlier_pid, dog_pid)
        ]
        assert len(started) == 2, started  # the "raylet" and its "worker"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=10)
        deadline = time.monotonic() + 10
        while (_alive(dog) or any(map(_alive, started))) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(map(_alive, started)), [p.pid for p in started if _alive(p)]
        assert not _alive(dog)
        assert not temp_dir.exists()
        assert _alive(earlier)  # it existed before the watchdog: not the driver's Ray
        assert _alive(psutil.Process())
    finally:
        for p in [*started, *([earlier] if earlier else [])]:
            if _alive(p):
                p.kill()
        try:
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
