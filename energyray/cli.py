"""`python -m energyray [report] ...`: the one driver process.

Hydra composes `conf/config.yaml` + `sweeps/<name>.yaml` + the shell's overrides against the
typed schema; the driver expands the grid itself, skips trials already in the store, hands
the rest to the orchestrator (Ray), writes each result atomically, and prints a summary.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from energyray import env
from energyray.config import (
    ApiConfig,
    GenerationConfig,
    HardwareConfig,
    MeasurementConfig,
    ModelConfig,
    RayConfig,
    RunConfig,
    SamplerConfig,
    ServerConfig,
    StoreConfig,
    SweepConfig,
    TransformersConfig,
    VllmConfig,
    bytecode_mode,
    reuse_mode,
)
from energyray.errors import ConfigError, EnergyRayError
from energyray.grid import AXES, TrialSpec, expand, group

_PKG = Path(__file__).resolve().parent
_SECTIONS = (ModelConfig, HardwareConfig, GenerationConfig, MeasurementConfig, RayConfig, SamplerConfig, StoreConfig,
             SweepConfig, TransformersConfig, VllmConfig, ApiConfig, ServerConfig)


def conf_dir() -> Path:
    """conf/: $ENERGYRAY_CONF, else the checkout's, else the copy shipped in the package."""
    if os.environ.get("ENERGYRAY_CONF"):
        return Path(os.environ["ENERGYRAY_CONF"]).resolve()
    for candidate in (_PKG.parent / "conf", _PKG / "_conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise ConfigError("Cannot find energyray's conf/ directory; set ENERGYRAY_CONF to it.")


def sweep_dirs() -> list[Path]:
    """Where sweeps are found; later ones win: shipped, the checkout's, ./sweeps, $ENERGYRAY_SWEEPS."""
    dirs = [_PKG / "_sweeps", _PKG.parent / "sweeps", Path.cwd() / "sweeps"]
    if os.environ.get("ENERGYRAY_SWEEPS"):
        dirs.append(Path(os.environ["ENERGYRAY_SWEEPS"]))
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def register_configs() -> None:
    """Put the schema and every sweep file into Hydra's ConfigStore (group `sweep`)."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    for d in sweep_dirs():
        for path in sorted(d.glob("*.yaml")):
            node = OmegaConf.load(path)
            if "name" not in node:
                node.name = path.stem
            cs.store(group="sweep", name=path.stem, node=node)


def cache_dir(cfg: RunConfig) -> str:
    return str(Path(cfg.cache_dir or os.environ.get("ENERGYRAY_CACHE") or "~/.cache/energyray").expanduser())


def pinned_axes(cfg: DictConfig) -> dict[str, Any]:
    """Axes set on the command line (`model=qwen2-7b`, `precision=int8`): they pin the grid."""
    from hydra.core.hydra_config import HydraConfig

    pinned: dict[str, Any] = {}
    for override in HydraConfig.get().overrides.task:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("model", "hardware"):
            pinned[key] = cfg[key].name
        elif key in AXES:
            value = OmegaConf.select(cfg, key)
            pinned[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return pinned


def _values(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def check_override_keys(overrides: list[str]) -> None:
    """Refuse an override whose key energyray does not know, naming the valid keys.

    Hydra refuses most unknown keys itself, but without listing the choices, and accepts
    `+misspelt=...` (its own error message suggests it), which nothing would then read.
    """
    import dataclasses
    import difflib

    def fields(cls: Any) -> dict[str, Any]:
        return {f.name: f for f in dataclasses.fields(cls)}

    open_maps = {("sweep", "grid"): list(AXES), ("model", "architecture"): None, ("model", "api_params"): None,
                 ("api", "extra_body"): None, ("server", "env"): None, ("server", "precision_args"): None,
                 ("vllm", "engine_args"): None}
    for override in overrides:
        if "=" not in override:
            continue
        key = override.split("=", 1)[0].lstrip("+~")
        parts = key.split(".")
        if parts[0] == "hydra" or key in ("sweep", "model", "hardware", "sampler/pdu"):
            continue
        cls: Any = RunConfig
        for depth, part in enumerate(parts):
            known = fields(cls)
            if part not in known:
                close = difflib.get_close_matches(part, known, n=1)
                where = ".".join(parts[:depth]) or "the top level"
                hint = f" Did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
                raise ConfigError(f"Unknown key {key!r} in override {override!r}.{hint} "
                                  f"Valid keys at {where}: {', '.join(sorted(known))}.")
            sub = tuple(parts[depth:depth + 2])
            if sub in open_maps:
                axes = open_maps[sub]
                if axes is not None and len(parts) > depth + 2 and parts[depth + 2] not in axes:
                    raise ConfigError(f"Unknown grid axis {parts[depth + 2]!r} in {override!r}. "
                                      f"Valid axes: {', '.join(axes)}.")
                break
            ftype = known[part].type
            cls = {c.__name__: c for c in _SECTIONS}.get(str(ftype))
            if cls is None:
                break


def group_names(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def compose_group(group: str, names: set[str], current: Any) -> dict[str, Any]:
    """Compose `<group>=<name>` (model, hardware) for each name the grid uses; the composed
    current one is reused."""
    from hydra import compose

    found = {current.name: current}
    for name in sorted(names - {current.name}):
        try:
            composed = compose(config_name="config", overrides=[f"{group}={name}"])
        except Exception as e:
            raise ConfigError(f"Unknown {group} {name!r} in the sweep's grid. Choices in conf/{group}/: "
                              f"{', '.join(group_names(group))}.") from e
        found[name] = OmegaConf.to_object(composed[group])
    return found


def load_hardware(names: set[str], current: HardwareConfig, local: str) -> dict[str, HardwareConfig]:
    """The hardware targets the trials name. The locally detected family needs no catalogue
    entry (an unlisted GPU runs here as itself, with no node resource)."""
    known = set(group_names("hardware"))
    extra = {n: HardwareConfig(name=n, description="detected on this machine") for n in names
             if n == local and n not in known}
    return {**compose_group("hardware", names - set(extra), current), **extra}


def detect_hardware(cfg: RunConfig) -> str:
    """hardware=auto: the local GPU's family (nvml), or cpu."""
    if cfg.device == "cpu":
        return "cpu"
    try:
        from energyray.samplers.nvml import gpus

        found = gpus()
    except Exception:
        found = []
    return env.hardware_name(found[0]["name"]) if found else "cpu"


def validate(specs: list[TrialSpec], models: dict[str, ModelConfig]) -> None:
    """Everything that can be known wrong before a trial runs, each with the valid choices."""
    from energyray.backends import PRECISIONS
    from energyray.registry import BACKENDS
    from energyray.tasks import TASKS

    for s in specs:
        if s.backend not in BACKENDS:
            raise ConfigError(f"Unknown backend {s.backend!r}. Valid choices: {', '.join(sorted(BACKENDS))}.")
        valid = PRECISIONS.get(s.backend, ())
        if s.precision not in valid:
            raise ConfigError(f"Backend {s.backend!r} does not support precision {s.precision!r}. "
                              f"Valid choices: {', '.join(valid)}.")
        if s.weights not in ("real", "dummy"):
            raise ConfigError(f"weights={s.weights!r}: valid choices are real, dummy.")
        if s.task not in TASKS:
            raise ConfigError(f"Unknown task {s.task!r}. Valid choices: {', '.join(sorted(TASKS))}.")
        if s.prompt_variant not in TASKS[s.task]:
            raise ConfigError(f"Task {s.task!r} has no prompt_variant {s.prompt_variant!r}. "
                              f"Valid choices: {', '.join(TASKS[s.task])}.")
        if s.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {s.batch_size}.")
        m = models[s.model]
        if s.weights == "dummy" and not m.architecture:
            raise ConfigError(f"Model {s.model!r} has no `architecture` in conf/model/{s.model}.yaml, "
                              "so weights=dummy cannot build it.")
        if s.backend == "openai":
            continue  # a served model: checked by openai_api.preflight
        if s.weights == "real" and not (m.path or m.gguf_package or m.builtin or m.hub_id or m.gguf_file):
            raise ConfigError(f"Model {s.model!r} has no source for weights=real (path, gguf_package, "
                              "builtin or hub_id). Add one, or use weights=dummy.")


def trial_config(spec: TrialSpec, cfg: RunConfig, model: ModelConfig) -> dict[str, Any]:
    """The resolved configuration saved with the trial's row (config_json)."""
    out = {"trial": spec.to_dict(), "model": asdict(model), "generation": asdict(cfg.generation),
           "measurement": asdict(cfg.measurement),
           "sampler": asdict(cfg.sampler), "device": cfg.device, "seed": cfg.seed,
           "sweep": {"name": cfg.sweep.name, "repeats": cfg.sweep.repeats, "grid": cfg.sweep.grid}}
    options = getattr(cfg, spec.backend, None)  # the backend's own section (vllm), where it has one
    if is_dataclass(options) and not isinstance(options, type):
        out[spec.backend] = asdict(options)
    if spec.backend in ("openai", "server"):  # the key's variable name only, never the key
        out["api"] = asdict(cfg.api)
    if spec.backend == "server":
        out["server"] = asdict(cfg.server)
    return out


def _console() -> Any:
    """Rich console; wide when output is not a terminal (logs, CI), so tables stay readable."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def print_dry_run(specs: list[TrialSpec], skipped: int) -> None:
    from rich.table import Table

    table = Table(title=f"{len(specs)} trials to run" + (f" ({skipped} already in the store)" if skipped else ""))
    cols = ["trial_id", "repeat", "model", "backend", "weights", "precision", "batch_size", "task",
            "prompt_variant", "hardware", "max_new_tokens"]
    for c in cols:
        table.add_column(c)
    for s in specs:
        table.add_row(*[str(getattr(s, c)) for c in cols])
    _console().print(table)
    print(f"trials: {len(specs)}")


def run(cfg_node: DictConfig) -> int:
    cfg: RunConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    cfg.cache_dir = cache_dir(cfg)
    if cfg.sampler.pdu is not None:  # a PDU config that cannot work is refused before anything runs
        from energyray.samplers.snmp_pdu import check_config

        check_config(cfg.sampler.pdu)
    if cfg.measurement.idle_scope not in ("slot", "group"):
        raise ConfigError(f"measurement.idle_scope={cfg.measurement.idle_scope!r}: use slot (the idle baseline "
                          "once per GPU, before its first group) or group (before every group).")
    cfg.ray.reuse_workers = reuse_mode(cfg.ray.reuse_workers)
    cfg.ray.bytecode_cache = bytecode_mode(cfg.ray.bytecode_cache)
    console = _console()
    pinned = pinned_axes(cfg_node)
    defaults = {a: getattr(cfg, a, None) for a in AXES if a not in ("model", "max_new_tokens")}
    defaults.update(model=cfg.model.name, hardware=cfg.hardware.name, max_new_tokens=None)
    grid = dict(cfg.sweep.grid)
    if any(v == "auto" for v in _values(pinned.get("hardware", grid.get("hardware", defaults["hardware"])))):
        local = detect_hardware(cfg)  # `auto` wherever it is given: the same ids as when left out
        defaults["hardware"] = local if defaults["hardware"] == "auto" else defaults["hardware"]
        for axes in (pinned, grid):
            if "hardware" in axes:
                axes["hardware"] = [local if v == "auto" else v for v in _values(axes["hardware"])]
    specs = expand(cfg.sweep.name, grid, defaults, cfg.sweep.repeats, pinned, cfg.sweep.exclude)
    vllm_batches = [s.batch_size for s in specs if s.backend == "vllm"]
    if vllm_batches and cfg.vllm.max_num_seqs is None:  # one engine per group runs each batch as one
        cfg.vllm.max_num_seqs = max(vllm_batches)
    models = compose_group("model", {s.model for s in specs}, cfg.model)
    if any(s.backend == "openai" or models[s.model].provider for s in specs):
        from energyray.backends.openai_api import preflight

        preflight(specs, models, cfg.api, running=not cfg.dry_run)  # a missing API key stops it here
    validate(specs, models)
    local_hw = detect_hardware(cfg)
    hardware = load_hardware({s.hardware for s in specs}, cfg.hardware, local_hw)

    from energyray.store import Store

    store = Store(cfg.store.path)
    done = store.done_ids(cfg.sweep.name) if cfg.store.resume else set()
    todo = [s for s in specs if s.trial_id not in done]
    if cfg.dry_run:
        print_dry_run(todo, len(specs) - len(todo))
        return 0
    if not todo:
        console.print(f"All {len(specs)} trials of sweep {cfg.sweep.name!r} are already in {store.path} "
                      "(store.resume=false reruns them).")
        return 0

    from energyray.orchestrator import Plan, check_cluster, run_sweep
    from energyray.progress import SweepProgress
    from energyray.report import print_summary
    from energyray.trial import TrialResult

    driver_env = env.snapshot()
    plan = Plan(groups=group(todo), models=models, hardware=hardware, local_hardware=local_hw,
                configs={s.trial_id: trial_config(s, cfg, models[s.model]) for s in todo}, cfg=cfg)
    by_id = {s.trial_id: s for s in todo}
    rows: list[dict[str, Any]] = []

    def on_result(result: TrialResult) -> None:
        row = dict(result.row)
        spec = by_id[row["trial_id"]]
        row.setdefault("config_json", json.dumps(plan.configs[spec.trial_id], default=str))
        row["driver_env_json"] = json.dumps(driver_env, default=str)
        # samples first: the trials file is what marks a trial done (resume), so a driver
        # killed between the two writes reruns the trial instead of losing its samples
        store.write("samples", result.samples, spec.sweep, spec.hardware, spec.trial_id)
        store.write("trials", [row], spec.sweep, spec.hardware, spec.trial_id)
        rows.append({**row, "sweep": spec.sweep, "hardware": spec.hardware})

    def on_system(system: dict[str, Any]) -> None:
        name = system.get("system_id") or f"{system.get('node')}-{system.get('gpu_uuid') or 'cpu'}"
        hw = system.get("hardware") or todo[0].hardware
        store.write("systems", [{**system, "seen_at": driver_env.get("hostname")}], cfg.sweep.name, hw, name)

    stale = store.clean_partial()
    if stale:
        console.print(f"energyray: removed {len(stale)} partial file(s) a killed run left in {store.path}")
    console.print(f"energyray: sweep [bold]{cfg.sweep.name}[/]: {len(todo)} trials in "
                  f"{len(plan.groups)} groups ({len(specs) - len(todo)} already in the store) -> {store.path}")
    check_cluster(plan)  # before the progress bar: a sweep the cluster cannot run fails here
    with SweepProgress(len(todo), console) as progress:
        run_sweep(plan, on_result, on_system, progress)
    import pandas as pd

    print_summary(pd.DataFrame(rows), console, title=f"sweep {cfg.sweep.name}: this run")
    failed = sum(r.get("status") != "ok" for r in rows)
    console.print(f"{len(rows) - failed} ok, {failed} failed; store: {store.path}")
    return 0


def _hydra_entry(cfg_node: DictConfig) -> None:
    try:
        code = run(cfg_node)
    except EnergyRayError as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        code = 2
    if code:
        sys.exit(code)


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "report":
        from energyray.report import report_main

        sys.exit(report_main(argv[1:]))
    if argv and argv[0] == "store":
        from energyray.store import store_main

        sys.exit(store_main(argv[1:]))
    import hydra

    try:
        check_override_keys(argv)
        register_configs()
        path = conf_dir()
    except EnergyRayError as e:
        print(f"energyray: error: {e}", file=sys.stderr)
        sys.exit(2)
    sys.argv = [sys.argv[0], *argv]
    hydra.main(config_path=str(path), config_name="config", version_base="1.3")(_hydra_entry)()
