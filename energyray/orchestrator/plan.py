"""What the driver hands the orchestrator: the sweep's load groups and what runs them.
Plain data, no Ray."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from energyray.grid import TrialSpec


@dataclass
class Plan:
    """What the driver hands the orchestrator."""

    groups: list[list[TrialSpec]]
    models: dict[str, Any]  # model name -> ModelConfig
    configs: dict[str, dict[str, Any]]  # trial_id -> resolved config (config_json)
    cfg: Any  # RunConfig, with cache_dir resolved by the driver
    hardware: dict[str, Any] = field(default_factory=dict)  # name -> HardwareConfig of every target
    local_hardware: str = "cpu"  # what the driver's machine is (hardware=auto resolved to it)
