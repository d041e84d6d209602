"""Plans for `run_sweep` straight from a test (no CLI): a CPU run's config and the trials of
a small grid on the built-in tiny model, shared by the scheduler's integration tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from energyray.config import HardwareConfig, MeasurementConfig, ModelConfig, RunConfig
from energyray.grid import TrialSpec, expand, group
from energyray.orchestrator import run_sweep
from energyray.plan import Plan

TINY = ModelConfig(name="tiny-llama", builtin="tiny-llama")


def cpu_config(cache: Path, sampler: str = "none", **ray_opts: Any) -> RunConfig:
    """Workers on the CPU, no idle baseline, no warmup, fixed lengths; `ray_opts` set cfg.ray."""
    cfg = RunConfig(device="cpu", cache_dir=str(cache), measurement=MeasurementConfig(idle_s=0.0))
    cfg.sampler.cpu = sampler
    cfg.generation.ignore_eos = True
    cfg.generation.warmup_runs = 0
    for k, v in ray_opts.items():
        setattr(cfg.ray, k, v)
    return cfg


def plan(sweep: str, grid: dict, cfg: RunConfig, repeats: int = 1, *, models: dict[str, Any] | None = None,
         model: str = "tiny-llama", backend: str = "transformers", hardware: str = "cpu", new_tokens: int = 8,
         targets: tuple[str, ...] = ()) -> Plan:
    """The plan of `grid` × `repeats`; `targets`: hardware names given a `hw_<name>` GPU resource."""
    specs = expand(sweep, grid, {
        "model": model, "backend": backend, "weights": "real", "precision": "baseline", "batch_size": 1,
        "task": "qa", "prompt_variant": "default", "hardware": hardware, "max_new_tokens": new_tokens}, repeats=repeats)
    return Plan(groups=group(specs), models=models or {"tiny-llama": TINY}, configs={s.trial_id: {} for s in specs},
                cfg=cfg, local_hardware="cpu",
                hardware={n: HardwareConfig(name=n, gpu=True, resource=f"hw_{n}") for n in targets})


def specs_of(p: Plan) -> list[TrialSpec]:
    return [s for g in p.groups for s in g]


def run_collect(p: Plan, on_result: Callable[[dict, list[dict]], None] | None = None,
                on_system: Callable[[dict], None] | None = None) -> tuple[list[dict], list[dict]]:
    """run_sweep(p), returning its trial rows and systems rows; on_result(row, systems so far)
    and on_system(system) see each as it comes (a test's fault injection)."""
    rows: list[dict] = []
    systems: list[dict] = []

    def result(r: Any) -> None:
        rows.append(r.row)
        if on_result is not None:
            on_result(r.row, systems)

    def system(s: dict) -> None:
        systems.append(s)
        if on_system is not None:
            on_system(s)

    run_sweep(p, result, system)
    return rows, systems
