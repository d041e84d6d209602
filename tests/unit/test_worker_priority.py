"""A worker takes back the priority of a user's process (nice 0) from the nice 15 Ray starts it
at, where the process may; a real child process started at nice 7 shows what happens."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_worker_priority_resets_niceness_where_allowed_and_says_what_it_found() -> None:
    code = ("import json; from energyray.orchestrator.actors import worker_priority; "
            "print(json.dumps(worker_priority()))")
    out = subprocess.run(["nice", "-n", "7", sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["worker_nice_at_start"] == 7
    # root (or CAP_SYS_NICE) may raise its priority; anyone else keeps what Ray gave
    assert got["worker_nice"] == (0 if os.geteuid() == 0 else 7)


def test_worker_priority_leaves_a_process_at_nice_0_alone() -> None:
    from energyray.orchestrator.actors import worker_priority

    if os.getpriority(os.PRIO_PROCESS, 0) == 0:
        assert worker_priority() == {"worker_nice_at_start": 0, "worker_nice": 0}
