"""The footprint of a finished trial row: CO2 of its measured energy (footprint.carbon) and, where
that part is installed, its cost (footprint.cost). The driver calls `footprint_fields` once per
row, just before the row is stored, with the tables `load_tables` read once; the planner calls
`check` before anything runs, so a region the table lacks fails there, not at a row.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from types import ModuleType
from typing import Any

from energyray.config import FootprintConfig, RunConfig
from energyray.footprint import carbon

COST_MODULE = "energyray.footprint.cost"


def _cost() -> ModuleType | None:
    """footprint.cost where this tree has it (None otherwise); its own import errors propagate."""
    if importlib.util.find_spec(COST_MODULE) is None:
        return None
    return importlib.import_module(COST_MODULE)


@functools.cache
def load_tables() -> dict[str, Any]:
    """Every footprint table, read once per process: `intensity` (region -> carbon.Intensity),
    `embodied` (GPU -> carbon.Embodied), and `cost` (whatever footprint.cost.load_tables returns)."""
    tables: dict[str, Any] = {"intensity": carbon.load_intensity(), "embodied": carbon.load_embodied()}
    cost = _cost()
    if cost is not None and hasattr(cost, "load_tables"):
        tables["cost"] = cost.load_tables()
    return tables


def check(cfg: RunConfig) -> None:
    """Before anything runs: resolve footprint.region (auto: sampler.country_iso_code) in place
    and refuse a region the intensity table lacks (did-you-mean); the cost part's own check too."""
    tables = load_tables()
    carbon.check(cfg.footprint, cfg.sampler.country_iso_code, tables["intensity"])
    cost = _cost()
    if cost is not None and hasattr(cost, "check"):
        cost.check(cfg, tables)


def footprint_fields(row: dict[str, Any], cfg: FootprintConfig, tables: dict[str, Any]) -> dict[str, Any]:
    """The footprint columns of a finished trial row (ok or not: a failed row's are null with the
    reason): CO2 (carbon.carbon_fields), then cost (footprint.cost.cost_fields, which sees the CO2
    columns too) where installed."""
    out = carbon.carbon_fields(row, cfg, tables)
    cost = _cost()
    if cost is not None:
        out.update(cost.cost_fields({**row, **out}, cfg, tables))
    return out


__all__ = ["check", "footprint_fields", "load_tables"]
