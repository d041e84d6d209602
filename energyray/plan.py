"""Planning: from a composed config to the trials a sweep will run, before anything runs.

Checks every knob (naming the valid choices), resolves `hardware=auto`, loads the models and
hardware targets the grid names, expands the grid, runs the preflight checks (API keys,
prices), and leaves out trials already in the store. The result, a `Plan`, is plain data;
no Ray here, and nothing here imports the CLI.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from energyray import env, paths
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
    check_limits,
    device_mode,
    dry_run_mode,
    reuse_mode,
    trial_process_mode,
)
from energyray.errors import ConfigError, StoreError
from energyray.grid import AXES, TrialSpec, chat_template_value, expand, group, requests_value
from energyray.registry import SAMPLERS, did_you_mean

_SECTIONS = {c.__name__: c for c in (ModelConfig, HardwareConfig, GenerationConfig, MeasurementConfig, RayConfig,
                                      SamplerConfig, StoreConfig, SweepConfig, TransformersConfig, VllmConfig,
                                      ApiConfig, ServerConfig)}
# Mappings whose keys are the user's own (grid: only the axes; the others: anything).
_OPEN_MAPS: dict[tuple[str, str], list[str] | None] = {
    ("sweep", "grid"): list(AXES), ("model", "architecture"): None, ("model", "api_params"): None,
    ("api", "extra_body"): None, ("server", "env"): None, ("server", "precision_args"): None,
    ("vllm", "engine_args"): None}
CPU_SAMPLERS = ("auto", "rapl", "codecarbon", "none")  # sampler.cpu; node_cpu: none or one of the first three
GPU_SAMPLERS = tuple(n for n in SAMPLERS if n not in CPU_SAMPLERS)  # sampler.gpu, besides a plugin


@dataclass
class Plan:
    """What a sweep will run, decided before anything runs; the orchestrator runs `groups`."""

    cfg: RunConfig  # every knob checked and normalised; cache_dir resolved
    groups: list[list[TrialSpec]]  # the trials to run by load key (one model load each), in run order
    models: dict[str, ModelConfig]  # name -> model, every model the grid names
    # trial_id -> the resolved configuration saved with its row (config_json); empty in a dry run
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    hardware: dict[str, HardwareConfig] = field(default_factory=dict)  # name -> every target the grid names
    local_hardware: str = "cpu"  # this machine's family (what hardware=auto means here)
    skipped: int = 0  # trials of the grid already in the store
    damaged: list[Any] = field(default_factory=list)  # store.Damaged: unreadable files found (moved aside in a real run)

    @property
    def todo(self) -> list[TrialSpec]:
        """Every trial to run, in run order."""
        return [s for g in self.groups for s in g]


# -- Hydra: the schema and the sweeps ---------------------------------------------------------------
def register_configs(requested: str | None = None) -> list[str]:
    """Put the schema and every sweep file into Hydra's ConfigStore (group `sweep`).

    A sweep file that cannot be read (a YAML error) is left out, so the others still run;
    the return value says which, one line each. Only where it is the `requested` sweep is
    that an error."""
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="base_config", node=RunConfig)
    skipped: dict[str, str] = {}
    for d in paths.sweep_dirs():
        for path in sorted(d.glob("*.yaml")):
            try:
                node = load_yaml(path, "a sweep")
            except ConfigError as e:
                skipped[path.stem] = str(e)
                continue
            skipped.pop(path.stem, None)  # a later directory's good file wins
            if "name" not in node:
                node.name = path.stem
            cs.store(group="sweep", name=path.stem, node=node)
    if requested in skipped:
        raise ConfigError(skipped[requested])
    return [f"{why.rstrip('.')}; until then sweep {name!r} is left out." for name, why in skipped.items()]


def load_yaml(path: Path, what: str) -> DictConfig:
    """A YAML mapping from `path`; a file that is not one is a ConfigError naming the file,
    the line and the problem."""
    import yaml

    try:
        node = OmegaConf.load(path)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {yaml_problem(e)}. Fix the file, or move it out of {path.parent}.") from e
    except OSError as e:
        raise ConfigError(f"{path}: cannot read it ({e.strerror or e}).") from e
    if not isinstance(node, DictConfig):
        raise ConfigError(f"{path}: {what} file must be a mapping of keys, not a list.")
    return node


def yaml_problem(e: Exception) -> str:
    """'YAML error at line 4: expected ',' or ']', but got ':' (while parsing a flow sequence)'."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    where = f" at line {mark.line + 1}" if mark is not None else ""
    problem, context = getattr(e, "problem", None), getattr(e, "context", None)
    text = f"{problem} ({context})" if problem and context else problem or context or str(e)
    return f"YAML error{where}: {text}"


def requested_sweep(overrides: list[str]) -> str | None:
    """The sweep a command line runs: its last `sweep=NAME`, else conf/config.yaml's default."""
    for override in reversed(overrides):
        key, _, value = override.partition("=")
        if key.lstrip("+") == "sweep":
            return value
    try:
        root: Any = OmegaConf.load(paths.conf_dir() / "config.yaml")
        defaults = root.get("defaults", [])
        return next((str(d["sweep"]) for d in defaults if isinstance(d, DictConfig) and "sweep" in d), None)
    except Exception:  # Hydra reports a broken root config itself
        return None


def check_override_keys(overrides: list[str]) -> None:
    """Refuse an override whose key energyray does not know, naming the valid keys.

    Hydra refuses most unknown keys itself, but without listing the choices, and accepts
    `+misspelt=...` (its own error message suggests it), which nothing would then read.
    """
    for override in overrides:
        if "=" not in override:
            continue
        key = override.split("=", 1)[0].lstrip("+~")
        parts = key.split(".")
        if parts[0] == "hydra" or key in ("sweep", "model", "hardware", "sampler/pdu"):
            continue
        cls: Any = RunConfig
        for depth, part in enumerate(parts):
            known = {f.name: f for f in dataclasses.fields(cls)}
            if part not in known:
                close = difflib.get_close_matches(part, known, n=1)
                where = ".".join(parts[:depth]) or "the top level"
                hint = f" Did you mean {'.'.join([*parts[:depth], close[0]])!r}?" if close else ""
                raise ConfigError(f"Unknown key {key!r} in override {override!r}.{hint} "
                                  f"Valid keys at {where}: {', '.join(sorted(known))}.")
            sub = tuple(parts[depth:depth + 2])
            if sub in _OPEN_MAPS:
                axes = _OPEN_MAPS[sub]  # type: ignore[index]
                if axes is not None and len(parts) > depth + 2 and parts[depth + 2] not in axes:
                    raise ConfigError(f"Unknown grid axis {parts[depth + 2]!r} in {override!r}. "
                                      f"Valid axes: {', '.join(axes)}.")
                break
            cls = _SECTIONS.get(str(known[part].type))
            if cls is None:
                break


def pinned_axes(cfg: DictConfig, overrides: list[str]) -> dict[str, Any]:
    """Axes set on the command line (`model=qwen2-7b`, `precision=int8`): they pin the grid."""
    pinned: dict[str, Any] = {}
    for override in overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        if key in ("model", "hardware"):
            pinned[key] = cfg[key].name
        elif key in AXES:
            value = OmegaConf.select(cfg, key)
            pinned[key] = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
    return pinned


def load_group(group_name: str, names: set[str], current: Any) -> dict[str, Any]:
    """`<group>=<name>` (model, hardware) for each name the grid uses; the current one is reused.

    A catalogue file without a defaults list is merged onto its schema directly (what Hydra's
    compose would give, without composing the whole config once per name)."""
    schema = {"model": ModelConfig, "hardware": HardwareConfig}[group_name]
    found = {current.name: current}
    for name in sorted(names - {current.name}):
        path = paths.conf_dir() / group_name / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"Unknown {group_name} {name!r} in the sweep's grid. Choices in conf/{group_name}/: "
                              f"{', '.join(paths.group_names(group_name))}.")
        node = load_yaml(path, f"a {group_name}")
        if "defaults" in node:
            from hydra import compose

            node = compose(config_name="config", overrides=[f"{group_name}={name}"])[group_name]
        try:
            found[name] = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(schema), node))
        except Exception as e:  # a wrong key or type in the catalogue file
            raise ConfigError(f"conf/{group_name}/{name}.yaml does not fit the schema: {e}") from e
    return found


def load_hardware(names: set[str], current: HardwareConfig, local: str) -> dict[str, HardwareConfig]:
    """The hardware targets the trials name. The locally detected family needs no catalogue
    entry (an unlisted GPU runs here as itself, with no node resource)."""
    known = set(paths.group_names("hardware"))
    extra = {n: HardwareConfig(name=n, description="detected on this machine") for n in names
             if n == local and n not in known}
    return {**load_group("hardware", names - set(extra), current), **extra}


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


# -- checks -----------------------------------------------------------------------------------------
def check_knobs(cfg: RunConfig) -> None:
    """The settings outside the grid that can be known wrong before anything runs; normalised in place."""
    cfg.device = device_mode(cfg.device)
    check_limits(cfg)
    if cfg.sampler.pdu is not None:  # a PDU config that cannot work is refused before anything runs
        from energyray.samplers.snmp_pdu import check_config

        check_config(cfg.sampler.pdu)
    if cfg.measurement.idle_scope not in ("slot", "group"):
        raise ConfigError(f"measurement.idle_scope={cfg.measurement.idle_scope!r}: use slot (the idle baseline "
                          "once per GPU, before its first group) or group (before every group).")
    for key, value, choices in (("sampler.cpu", cfg.sampler.cpu, CPU_SAMPLERS),
                                ("sampler.node_cpu", cfg.sampler.node_cpu, ("none", *CPU_SAMPLERS[:-1]))):
        if value not in choices:
            raise ConfigError(f"{key}={value!r} is not one of: {', '.join(choices)}.{did_you_mean(str(value), choices)}")
    gpu = str(cfg.sampler.gpu)
    if gpu in ("rapl", "codecarbon"):  # CPU sources: on a GPU worker they would measure the wrong device
        raise ConfigError(f"sampler.gpu={gpu} reads the CPU, not a GPU: keep sampler.gpu=nvml and add the CPU with "
                          f"sampler.node_cpu={gpu} (or sampler.cpu={gpu} for CPU workers).")
    if ":" not in gpu and gpu not in SAMPLERS:
        raise ConfigError(f"sampler.gpu={gpu!r} is not one of: {', '.join(GPU_SAMPLERS)}, or an importable "
                          f"'package.module:Class'.{did_you_mean(gpu, GPU_SAMPLERS)}")
    if not str(cfg.store.path).strip():
        raise ConfigError("store.path is empty: give the store's directory, e.g. store.path=outputs/store.")
    cfg.ray.reuse_workers = reuse_mode(cfg.ray.reuse_workers)
    cfg.ray.bytecode_cache = bytecode_mode(cfg.ray.bytecode_cache)
    cfg.ray.trial_process = trial_process_mode(cfg.ray.trial_process)
    cfg.dry_run = dry_run_mode(cfg.dry_run)
    from energyray import footprint

    footprint.check(cfg)  # footprint.region resolved (auto: the sampler's country); one the table lacks fails here


# The grid's numeric axes: whole numbers of at least 1 (max_new_tokens, prompt_tokens: or null, the default).
_WHOLE_AXES = {"batch_size": "prompts generated together", "max_new_tokens": "new tokens per request",
               "prompt_tokens": "tokens of each prompt", "inference_steps": "denoising steps per image",
               "resolution": "image size in pixels"}


def check_grid(grid: dict[str, Any], pinned: dict[str, Any]) -> None:
    """The grid's values, before they become trials (where 1.5 would silently be 1)."""
    for source, axes in (("sweep.grid", grid), ("", pinned)):
        for axis, check in (("requests", requests_value), ("chat_template", chat_template_value)):
            for v in _values(axes.get(axis, [])):
                check(v, f"{source}.{axis}" if source else axis)
        for axis, what in _WHOLE_AXES.items():
            if axis not in axes:
                continue
            for v in _values(axes[axis]):
                if v is None and axis in ("max_new_tokens", "prompt_tokens", "inference_steps", "resolution"):
                    continue
                if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                    key = f"{source}.{axis}" if source else axis
                    raise ConfigError(f"{key}: {v!r} is out of range: each value must be a whole number, "
                                      f"at least 1 ({what}).")
        if "guidance_scale" in axes:
            for v in _values(axes["guidance_scale"]):
                if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0):
                    key = f"{source}.guidance_scale" if source else "guidance_scale"
                    raise ConfigError(f"{key}: {v!r} is out of range: each value must be a number of at least 0 "
                                      "(classifier-free guidance scale) or null.")


def validate(specs: list[TrialSpec], models: dict[str, ModelConfig], tasks: Any = None) -> None:
    """Everything that can be known wrong before a trial runs, each with the valid choices.
    `tasks`: the config's tasks section (file tasks by name)."""
    from energyray.backends import PRECISIONS
    from energyray.registry import BACKENDS
    from energyray.trial.workload import check_task

    seen: set[tuple[Any, ...]] = set()
    for s in specs:
        if s.point in seen:  # repeats of one grid point: checked once
            continue
        seen.add(s.point)
        if s.backend not in BACKENDS:
            raise ConfigError(f"Unknown backend {s.backend!r}. Valid choices: {', '.join(sorted(BACKENDS))}.")
        valid = PRECISIONS.get(s.backend, ())
        if s.precision not in valid:
            raise ConfigError(f"Backend {s.backend!r} does not support precision {s.precision!r}. "
                              f"Valid choices: {', '.join(valid)}.")
        if s.weights not in ("real", "dummy"):
            raise ConfigError(f"weights={s.weights!r}: valid choices are real, dummy.")
        check_task(s.task, s.prompt_variant, tasks)
        if s.batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {s.batch_size}.")
        if s.max_new_tokens is not None and s.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be at least 1 (new tokens per request), got {s.max_new_tokens}.")
        m = models[s.model]
        image_axes = [a for a in ("inference_steps", "resolution", "guidance_scale") if getattr(s, a) is not None]
        if image_axes and s.backend != "diffusers":
            raise ConfigError(f"{', '.join(image_axes)} apply to text-to-image models (backend=diffusers), not "
                              f"backend={s.backend}. Leave them unset for language models.")
        if s.backend not in ("diffusers",) and (m.architecture or {}).get("pipeline"):
            raise ConfigError(f"Model {s.model!r} is a text-to-image pipeline: run it with backend=diffusers "
                              f"(pip install 'energyray[diffusion]'), not backend={s.backend}.")
        if s.backend == "diffusers" and s.weights == "dummy" and not (m.architecture or {}).get("pipeline"):
            raise ConfigError(f"Model {s.model!r} is not a text-to-image pipeline: backend=diffusers with "
                              f"weights=dummy needs `architecture.pipeline` in conf/model/{s.model}.yaml "
                              "(the sd-* models have one).")
        if s.weights == "dummy" and not m.architecture:
            raise ConfigError(f"Model {s.model!r} has no `architecture` in conf/model/{s.model}.yaml, "
                              "so weights=dummy cannot build it.")
        if s.backend == "openai":
            continue  # a served model: checked by openai_api.preflight
        if s.weights == "real" and not (m.path or m.gguf_package or m.builtin or m.hub_id or m.gguf_file):
            raise ConfigError(f"Model {s.model!r} has no source for weights=real (path, gguf_package, "
                              "builtin or hub_id). Add one, or use weights=dummy.")


# -- the resolved configuration of each trial -------------------------------------------------------
def trial_configs(specs: list[TrialSpec], cfg: RunConfig, models: dict[str, ModelConfig]) -> dict[str, dict[str, Any]]:
    """trial_id -> the resolved configuration saved with the trial's row (config_json).

    Everything but the trial itself depends on the model and backend only: built once per pair."""
    shared: dict[tuple[str, str], dict[str, Any]] = {}
    common = {"generation": asdict(cfg.generation), "measurement": asdict(cfg.measurement),
              "sampler": asdict(cfg.sampler), "tasks": asdict(cfg.tasks), "device": cfg.device, "seed": cfg.seed,
              "sweep": {"name": cfg.sweep.name, "repeats": cfg.sweep.repeats, "grid": cfg.sweep.grid}}
    out = {}
    for s in specs:
        key = (s.model, s.backend)
        if key not in shared:
            shared[key] = _backend_config(s.backend, cfg, models[s.model], common)
        out[s.trial_id] = {"trial": s.to_dict(), **shared[key]}
    return out


def trial_config(spec: TrialSpec, cfg: RunConfig, model: ModelConfig) -> dict[str, Any]:
    """The resolved configuration of one trial (see trial_configs)."""
    return trial_configs([spec], cfg, {spec.model: model})[spec.trial_id]


def _backend_config(backend: str, cfg: RunConfig, model: ModelConfig, common: dict[str, Any]) -> dict[str, Any]:
    out = {"model": asdict(model), **common}
    options = getattr(cfg, backend, None)  # the backend's own section (vllm), where it has one
    if dataclasses.is_dataclass(options) and not isinstance(options, type):
        out[backend] = asdict(options)
    if backend in ("openai", "server"):  # the key's variable name only, never the key
        out["api"] = asdict(cfg.api)
    if backend == "server":
        out["server"] = asdict(cfg.server)
    return out


# -- the plan ---------------------------------------------------------------------------------------
def _values(v: Any) -> list[Any]:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def make_plan(cfg_node: DictConfig, overrides: list[str]) -> Plan:
    """The composed config (and the command line's overrides, which pin axes) -> a Plan."""
    cfg: RunConfig = OmegaConf.to_object(cfg_node)  # type: ignore[assignment]
    cfg.cache_dir = paths.cache_dir(cfg.cache_dir)
    check_knobs(cfg)
    pinned = pinned_axes(cfg_node, overrides)
    defaults = {a: getattr(cfg, a, None) for a in AXES if a not in ("model", "max_new_tokens")}
    defaults.update(model=cfg.model.name, hardware=cfg.hardware.name, max_new_tokens=None)
    grid = dict(cfg.sweep.grid)
    local_hw = detect_hardware(cfg)
    if any(v == "auto" for v in _values(pinned.get("hardware", grid.get("hardware", defaults["hardware"])))):
        # `auto` wherever it is given: the same trial ids as when left out
        defaults["hardware"] = local_hw if defaults["hardware"] == "auto" else defaults["hardware"]
        for axes in (pinned, grid):
            if "hardware" in axes:
                axes["hardware"] = [local_hw if v == "auto" else v for v in _values(axes["hardware"])]
    check_grid(grid, pinned)
    specs = expand(cfg.sweep.name, grid, defaults, cfg.sweep.repeats, pinned, cfg.sweep.exclude,
                   sample={"task_limit": cfg.tasks.limit, "task_sample_seed": cfg.tasks.sample_seed})
    vllm_batches = [s.batch_size for s in specs if s.backend == "vllm"]
    if vllm_batches and cfg.vllm.max_num_seqs is None:  # one engine per group runs each batch as one
        cfg.vllm.max_num_seqs = max(vllm_batches)
    models = load_group("model", {s.model for s in specs}, cfg.model)
    for name, m in models.items():
        check_limits(m, "model", f"conf/model/{name}.yaml")
    if any(s.backend == "openai" or models[s.model].provider for s in specs):
        from energyray.backends.openai_api import preflight

        preflight(specs, models, cfg.api, running=cfg.dry_run == "false")  # a missing API key stops it here
    validate(specs, models, cfg.tasks)
    from energyray.trial.workload import judge_check

    problem = judge_check(cfg.tasks.judge)  # e.g. no API key: refused before anything runs
    if problem:
        raise ConfigError(problem)
    hardware = load_hardware({s.hardware for s in specs}, cfg.hardware, local_hw)
    done, damaged = _done_ids(cfg) if cfg.store.resume else (set(), [])
    todo = [s for s in specs if s.trial_id not in done]
    if todo and cfg.dry_run == "false":  # only a run that writes needs a writable store
        check_store_writable(cfg.store.path)
    configs = trial_configs(todo, cfg, models) if cfg.dry_run == "false" else {}
    return Plan(cfg=cfg, groups=group(todo), models=models, configs=configs, hardware=hardware,
                local_hardware=local_hw, skipped=len(specs) - len(todo), damaged=damaged)


def _done_ids(cfg: RunConfig) -> tuple[set[str], list[Any]]:
    """Trials of the sweep already stored, and the store's damaged files (a real run moves them
    and their trial's other files to <store>/_quarantine/, so those trials run again)."""
    if not Path(cfg.store.path).exists():  # nothing done (and no need to import the store's pyarrow)
        return set(), []
    from energyray.store import Store

    store = Store(cfg.store.path, log_damaged=False)  # the CLI prints `damaged`
    try:
        done = store.done_ids(cfg.sweep.name, quarantine=cfg.dry_run == "false")
    except OSError as e:
        raise StoreError(f"Cannot read the store at {cfg.store.path} ({e.strerror or e}). "
                         "Check its permissions, or choose another store.path.") from e
    return done, store.damaged


def check_store_writable(path: str) -> None:
    """Create the store's directory and a file in it (then remove the file), before Ray
    starts: a store that cannot be written is refused here, not after the first trial ran."""
    store = Path(path)
    probe = store / f".write-check.{os.getpid()}.tmp"  # the store's temp-file pattern: swept if left
    try:
        store.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"energyray")
        probe.unlink()
    except OSError as e:
        raise StoreError(f"store.path={path}: cannot write there ({e.strerror or e}). "
                         "Choose a writable directory: store.path=DIR.") from e


def axis_counts(specs: list[TrialSpec]) -> dict[str, Counter[Any]]:
    """Each axis (and the repeat): its values, with the number of trials of each, in first-seen order."""
    return {axis: Counter(getattr(s, axis) for s in specs) for axis in (*AXES, "repeat")}
