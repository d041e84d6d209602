"""benchmarks/sampler_priority.py end to end, without the load: both arms run, started at nice
15, and the shipped one polls at nice 0 where this process may raise its priority."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "sampler_priority.py"


def test_both_arms_poll_and_answer_and_say_at_which_priority(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, str(BENCH), "--busy", "0", "--rounds", "1", "--round-s", "1",
                          "--json-out", str(tmp_path / "r.json")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(next(line for line in out.stdout.splitlines() if line.startswith("RESULT "))[7:])
    shipped, nice15 = result["summary"]["shipped"], result["summary"]["nice15"]
    assert shipped["poll_nice"] == [0 if os.geteuid() == 0 else 15] and nice15["poll_nice"] == [15]
    for arm in (shipped, nice15):
        assert arm["samples"] >= 10 and arm["requests"] >= 10 and arm["windows"] > 0  # 2 s of 0.1-s polls
    assert shipped["windows_unknown_share"] == 0.0  # nothing else runs: its series covers every window
    assert len(json.loads((tmp_path / "r.json").read_text())["runs"]["shipped"]) == 2  # ABBA: each arm twice
