"""Ray lives here and only here: starting or joining a cluster (cluster.py), the scheduler's
decisions (policy.py, pure), its event loop (scheduler.py) over typed calls (calls.py), and
the actors it runs (actors.py). It runs an `energyray.plan.Plan`, the driver's plain data.

`run_sweep` takes the driver's plan (groups of TrialSpecs) and calls back with each trial's
result as it arrives; the driver writes it to the store.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from energyray.orchestrator.cluster import check_cluster
    from energyray.orchestrator.scheduler import run_sweep

__all__ = ["check_cluster", "run_sweep"]

# imported on first use, so that policy.py can be imported without Ray
_WHERE = {"check_cluster": "cluster", "run_sweep": "scheduler"}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
