"""Shared pytest setup: tests marked `gpu` run only where NVML sees an NVIDIA GPU."""

from __future__ import annotations

import pytest


def _have_gpu() -> bool:
    try:
        from energyray.samplers.nvml import gpus

        return bool(gpus())
    except Exception:
        return False


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _have_gpu():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (run on the device machine: see benchmarks/README.md)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
