"""The house style, enforced where the README's test command runs: ruff and mypy on the package."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("tool", ["ruff", "mypy"])
def test_tool_is_clean(tool: str) -> None:
    if shutil.which(tool) is None and subprocess.run([sys.executable, "-m", tool, "--version"],
                                                     capture_output=True).returncode != 0:
        pytest.skip(f"{tool} not installed (bash scripts/install.sh --dev installs it)")
    args = ["check", "energyray", "tests", "analysis"] if tool == "ruff" else ["energyray"]
    out = subprocess.run([sys.executable, "-m", tool, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stdout + out.stderr
