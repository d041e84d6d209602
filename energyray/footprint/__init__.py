"""The footprint of a finished trial row: CO2 of its measured energy (footprint.carbon) and its
cost (footprint.cost). The driver calls `footprint_fields` once per row, just before the row is
stored, with the tables `load_tables` read once; the planner calls `check` before anything runs,
so a region the table lacks, or an unknown cloud offering, fails there, not at a row.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from energyray.config import FootprintConfig, RunConfig
from energyray.footprint import carbon, cost

log = logging.getLogger(__name__)


@functools.cache
def load_tables() -> dict[str, Any]:
    """Every footprint table, read once per process: `intensity` (region -> carbon.Intensity),
    `embodied` (GPU -> carbon.Embodied), `cost` (cost.CostTables: electricity and GPU-hour prices)."""
    return {"intensity": carbon.load_intensity(), "embodied": carbon.load_embodied(),
            "cost": cost.load_cost_tables()}


def check(cfg: RunConfig) -> None:
    """Before anything runs: resolve footprint.region (auto: sampler.country_iso_code) in place,
    refuse a region the intensity table lacks (did-you-mean), and check the cost settings."""
    tables = load_tables()
    carbon.check(cfg.footprint, cfg.sampler.country_iso_code, tables["intensity"])
    cost.check_config(cfg.footprint, tables["cost"])


def footprint_fields(row: dict[str, Any], cfg: FootprintConfig, tables: dict[str, Any]) -> dict[str, Any]:
    """The footprint columns of a finished trial row (ok or not: a failed row's are null with the
    reason): CO2 (carbon.carbon_fields), then cost (cost.cost_fields, which sees the CO2 columns)."""
    try:
        out = carbon.carbon_fields(row, cfg, tables)
        out.update(cost.cost_fields({**row, **out}, cfg, tables["cost"]))
    except Exception as e:  # a bug here must not lose the measured row: nulls, saying why
        why = f"the footprint could not be computed: {type(e).__name__}: {e}"
        log.warning("trial %s: %s", row.get("trial_id"), why)
        return {"co2_reason": why, "energy_cost_reason": why}
    return out


__all__ = ["check", "footprint_fields", "load_tables"]
