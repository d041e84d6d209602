"""Shared pytest setup: tests marked `gpu` run only where NVML sees an NVIDIA GPU; tests marked
`extra(name)` only where that optional extra is installed; fixtures that unit and integration
tests both use. The whole suite, and the CLI subprocesses it starts, write stores in strict
mode: a column not declared in energyray/schema.py is an error."""

from __future__ import annotations

import importlib.util
import os
import time
from collections.abc import Callable

import pytest

os.environ["ENERGYRAY_STRICT_SCHEMA"] = "1"  # energyray.store.STRICT_ENV; inherited by subprocesses


def _have_gpu() -> bool:
    try:
        from energyray.samplers.nvml import gpus

        return bool(gpus())
    except Exception:
        return False


# The optional extras of pyproject.toml and the modules each one installs.
EXTRAS: dict[str, tuple[str, ...]] = {
    "api": ("openai",),
    "quant": ("bitsandbytes",),
    "pdu": ("pysnmp",),
    "report": ("plotly", "duckdb"),
    "ecologits": ("ecologits",),
    "diffusion": ("diffusers",),
}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"extra(name): needs an optional extra ({', '.join(EXTRAS)}); "
                                       "skipped where it is not installed")


def _missing_extra(name: str) -> str | None:
    """Why a test needing extra `name` cannot run here, or None when it can."""
    if name not in EXTRAS:
        raise pytest.UsageError(f"unknown extra {name!r} in @pytest.mark.extra; known: {', '.join(EXTRAS)}")
    missing = [m for m in EXTRAS[name] if importlib.util.find_spec(m) is None]
    if not missing:
        return None
    return f"needs the {name} extra ({', '.join(missing)} not installed): pip install 'energyray[{name}]'"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        for mark in item.iter_markers("extra"):
            why = next(filter(None, map(_missing_extra, mark.args)), None)
            if why:
                item.add_marker(pytest.mark.skip(reason=why))
    if _have_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (run on a GPU machine: benchmarks/README.md says how)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """Whether process `pid` has exited within `within_s` (a zombie child of ours counts: reaped here)."""
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return True
        except ChildProcessError:
            pass
        time.sleep(0.05)
    return False


@pytest.fixture
def gone() -> Callable[..., bool]:
    """gone(pid, within_s=10.0) -> bool: has the process exited (a server, after unload)?"""
    return _gone
