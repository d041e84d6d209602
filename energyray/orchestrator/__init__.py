"""Ray lives here and only here: actors for workers and samplers, placement, the scheduler loop.

`run_sweep` takes the driver's plan (groups of TrialSpecs) and calls back with each trial's
result as it arrives; the driver writes it to the store.
"""

from energyray.orchestrator.scheduler import Plan, check_cluster, run_sweep

__all__ = ["Plan", "check_cluster", "run_sweep"]
