"""Run `python -m energyray` as a user would: a subprocess from the repository root.

Each call gets its own Hydra run directory (so nothing lands in the checkout's outputs/),
a wide COLUMNS (so rich never cuts model names or trial ids), and no Ray usage reporting.
Real runs take their own `store.path=` and share one `cache_dir=` per session, so the tiny
model is built once.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

# A real sweep starts a local Ray (~10 s on 2 cores) and runs a few tiny trials.
RUN_TIMEOUT_S = 300
# Dry runs and refused input: Hydra + grid expansion only.
FAST_TIMEOUT_S = 120


@dataclass
class CliResult:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def explain(self) -> str:
        return (f"energyray {' '.join(self.args)} -> exit {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-6000:]}\n--- stderr ---\n{self.stderr[-6000:]}")


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    for var in ("HYDRA_FULL_ERROR", "ENERGYRAY_CONF", "ENERGYRAY_SWEEPS", "ENERGYRAY_CACHE", "RAY_ADDRESS"):
        env.pop(var, None)
    env.update(RAY_USAGE_STATS_ENABLED="0", COLUMNS="250", PYTHONUNBUFFERED="1", TERM="dumb")
    return env


def run_energyray(args: list[str], hydra_dir: Path, timeout: float = RUN_TIMEOUT_S) -> CliResult:
    argv = [*args, f"hydra.run.dir={hydra_dir}"]
    proc = subprocess.run([sys.executable, "-m", "energyray", *argv], cwd=REPO_ROOT, env=cli_env(),
                          capture_output=True, text=True, timeout=timeout)
    return CliResult(args, proc.returncode, proc.stdout, proc.stderr)


@pytest.fixture(scope="session")
def cli():
    """run_energyray itself, for module-scoped runs: cli(args, hydra_dir, timeout=RUN_TIMEOUT_S)."""
    return run_energyray


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """One energyray cache_dir for the session: the tiny model is built into it once."""
    return tmp_path_factory.mktemp("energyray-cache")


@pytest.fixture
def energyray(tmp_path):
    """energyray(*args, timeout=...) -> CliResult, with this test's own Hydra run dir."""
    calls = [0]

    def call(*args: str, timeout: float = FAST_TIMEOUT_S) -> CliResult:
        calls[0] += 1
        return run_energyray(list(args), tmp_path / f"hydra-{calls[0]}", timeout)

    return call


@pytest.fixture(scope="session")
def cli_process():
    """(argv prefix, cwd, env) to start `python -m energyray` as a process of one's own."""
    return [sys.executable, "-m", "energyray"], REPO_ROOT, cli_env()
