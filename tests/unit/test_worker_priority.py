"""A worker, and the sampler actor beside it, take back the priority of a user's process
(nice 0) from the nice 15 Ray starts them at, where the process may; a real child process
started at nice 7 shows what happens."""

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


SAMPLER_HOST = """
import json, os, threading
from energyray.config import SamplerConfig
from energyray.orchestrator.actors import SamplerHost
from energyray.samplers.base import PollingSampler

class Flat(PollingSampler):
    name, scope = "flat", "device"
    def __init__(self, device=None, interval_s=0.01):
        super().__init__(interval_s=interval_s)
    def _read_sample(self):
        return {"power_w": 1.0, "energy_j": None}

host = SamplerHost(SamplerConfig(gpu="__main__:Flat", interval_s=0.01))
info = host.bind("gpu", "GPU-x")
(poll,) = [t for t in threading.enumerate() if t.name == "flat-poll"]
poll_nice = os.getpriority(os.PRIO_PROCESS, poll.native_id)  # Linux: a thread's id gives its own
host.close()
print(json.dumps({"sampler_nice": info["sampler_nice"], "poll_nice": poll_nice}))
"""


def test_sampler_host_polls_at_the_priority_it_could_take_and_says_so() -> None:
    """A starved poll thread leaves gaps in the power series: the sampler actor takes nice 0 too."""
    out = subprocess.run(["nice", "-n", "7", sys.executable, "-c", SAMPLER_HOST], capture_output=True, text=True,
                         timeout=120, check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    expected = 0 if os.geteuid() == 0 else 7
    assert got == {"sampler_nice": expected, "poll_nice": expected}
