"""benchmarks/decode_noise.py without a GPU: the CPU-only design runs every gap kind, keeps the
CPU awake where asked, and leaves no spinner behind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


def test_cpu_only_probes_every_gap_kind(tmp_path: Path) -> None:
    out = tmp_path / "noise.json"
    subprocess.run([sys.executable, str(BENCH / "decode_noise.py"), "--design", "cpu-only", "--cycles", "2",
                    "--per-kind", "1", "--gap-s", "0.05", "--probe-s", "0.05", "--json-out", str(out)],
                   check=True, capture_output=True, text=True, timeout=120)
    res = json.loads(out.read_text())
    assert set(res["cpu_probe"]) == {"none", "sleep", "spin", "idle-spinner"}
    assert all(p["chunks"] >= 1 and p["chunk_ms_median"] > 0 for p in res["cpu_probes"])
    # rotated: the two cycles start with different kinds
    firsts = [next(p["gap"] for p in res["cpu_probes"] if p["cycle"] == c) for c in (0, 1)]
    assert firsts[0] != firsts[1]


def test_the_idle_spinner_runs_at_sched_idle_on_its_cpu_and_goes(tmp_path: Path) -> None:
    sys.path.insert(0, str(BENCH))
    try:
        from _common import IdleSpinner
    finally:
        sys.path.remove(str(BENCH))
    cpu = max(os.sched_getaffinity(0))
    spinner = IdleSpinner(cpu)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.sched_getscheduler(spinner.proc.pid) != os.SCHED_IDLE:
            time.sleep(0.05)
        assert os.sched_getscheduler(spinner.proc.pid) == os.SCHED_IDLE
        assert os.sched_getaffinity(spinner.proc.pid) == {cpu}
    finally:
        spinner.close()
    assert spinner.proc.poll() is not None
