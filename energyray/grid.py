"""Grid expansion: a sweep's axes × repeats → the list of TrialSpecs, with stable ids.

Done once, in the driver (not Hydra's multirun, not one process per trial). A trial id
hashes everything that identifies the measurement, so rerunning a sweep finds the trials
already in the store. Axes added later (requests, prompt_tokens, chat_template) and the task
sample's settings go into the hash only where they differ from their defaults, so the trials
of stores written before them keep their ids.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from energyray.errors import ConfigError

# The axes a sweep may vary; each has a top-level key in RunConfig giving its value when the
# sweep does not list it (max_new_tokens: None means the generation config's, by device).
AXES: tuple[str, ...] = (
    "model",
    "backend",
    "weights",
    "precision",
    "batch_size",
    "task",
    "prompt_variant",
    "hardware",
    "max_new_tokens",
    "requests",
    "prompt_tokens",
    "chat_template",
    # text-to-image backends (diffusers): denoising steps, image size (square, pixels), guidance
    "inference_steps",
    "resolution",
    "guidance_scale",
)
# Axes whose default value leaves the trial id as it was before the axis existed.
LATER_AXES: dict[str, Any] = {"requests": None, "prompt_tokens": None, "chat_template": "auto",
                              "inference_steps": None, "resolution": None, "guidance_scale": None}
CHAT_TEMPLATES = ("auto", "on", "off")
# What a worker loads once and keeps for every trial of the group.
LOAD_KEY: tuple[str, ...] = ("backend", "model", "weights", "precision", "hardware")


@dataclass(frozen=True)
class TrialSpec:
    """One repetition of one grid point: what to run, with its stable id."""

    trial_id: str
    sweep: str
    repeat: int
    model: str
    backend: str
    weights: str
    precision: str
    batch_size: int
    task: str
    prompt_variant: str
    hardware: str
    max_new_tokens: int | None
    requests: int | str | None = None  # a whole number, "all" (every item of the task), None: one batch
    prompt_tokens: int | None = None  # tokens of each prompt; None: the task's text as written
    chat_template: str = "auto"  # auto | on | off
    # image backends: denoising steps, square image size in pixels, classifier-free guidance scale;
    # None: the generation config's (steps, guidance) or the pipeline's native size
    inference_steps: int | None = None
    resolution: int | None = None
    guidance_scale: float | None = None
    # the task sample's settings (tasks.limit, tasks.sample_seed): not axes, but they change the items
    task_limit: int | None = None
    task_sample_seed: int | None = None

    @property
    def load_key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, k) for k in LOAD_KEY)

    @property
    def point(self) -> tuple[Any, ...]:
        """The grid point: every axis, not the repeat."""
        return tuple(getattr(self, k) for k in AXES)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def trial_id(sweep: str, point: Mapping[str, Any], repeat: int, sample: Mapping[str, Any] | None = None) -> str:
    """A short hash of the sweep name, the grid point and the repeat index, and of the task
    sample's settings (`sample`: task_limit, task_sample_seed). The LATER_AXES at their
    defaults and sample settings that are None are left out."""
    ident = {"sweep": sweep, "repeat": repeat, **{k: point[k] for k in AXES if k not in LATER_AXES}}
    ident.update({k: point[k] for k, default in LATER_AXES.items() if point.get(k, default) != default})
    ident.update({k: v for k, v in (sample or {}).items() if v is not None})
    blob = json.dumps(ident, sort_keys=True, default=str).encode()
    return hashlib.sha1(blob).hexdigest()[:16]


def requests_value(value: Any, key: str = "requests") -> int | str | None:
    """`requests` as a whole number >= 1, "all" or None; anything else is a ConfigError."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().lower() == "all":
        return "all"
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r}: use a whole number of at least 1 (requests per trial, fed batch_size "
                          "at a time), all (every item of the task once) or null (one batch: batch_size requests).")
    return value


def chat_template_value(value: Any, key: str = "chat_template") -> str:
    """`chat_template` as auto | on | off (YAML may read on/off as booleans)."""
    text = {True: "on", False: "off"}.get(value, value) if isinstance(value, bool) else str(value).strip().lower()
    if text not in CHAT_TEMPLATES:
        raise ConfigError(f"{key}={value!r}: use auto (the model's chat template where it is an instruct or chat "
                          "model), on (always; a model without one fails) or off (the raw text).")
    return text


def _as_list(axis: str, values: Any) -> list[Any]:
    if isinstance(values, (list, tuple)):
        if not values:
            raise ConfigError(f"Grid axis {axis!r} is empty: give it at least one value.")
        return list(values)
    return [values]


def expand(
    sweep: str,
    grid: Mapping[str, Any],
    defaults: Mapping[str, Any],
    repeats: int = 1,
    pinned: Mapping[str, Any] | None = None,
    exclude: Iterable[Mapping[str, Any]] = (),
    sample: Mapping[str, Any] | None = None,
) -> list[TrialSpec]:
    """Expand `grid` (axis -> values) into trial specs.

    `defaults` gives every axis's value where the grid does not list it; `pinned` (axes set
    on the command line, e.g. ``model=qwen2-7b``) replaces the grid's values for that axis.
    Trials are ordered so that a load key's trials are contiguous, repeats innermost.
    `sample` (task_limit, task_sample_seed) goes on every spec and into its id where set.
    """
    unknown = sorted(set(grid) - set(AXES))
    if unknown:
        raise ConfigError(
            f"Unknown grid axis {', '.join(map(repr, unknown))} in sweep {sweep!r}. "
            f"Valid axes: {', '.join(AXES)}."
        )
    if repeats < 1:
        raise ConfigError(f"sweep.repeats must be at least 1, got {repeats}.")
    axes: dict[str, list[Any]] = {}
    for axis in AXES:
        if pinned and axis in pinned:
            axes[axis] = _as_list(axis, pinned[axis])
        elif axis in grid:
            axes[axis] = _as_list(axis, grid[axis])
        else:
            axes[axis] = [defaults.get(axis, LATER_AXES.get(axis))]
    axes["requests"] = [requests_value(v) for v in axes["requests"]]
    axes["chat_template"] = [chat_template_value(v) for v in axes["chat_template"]]
    sample = {k: v for k, v in (sample or {}).items() if k in ("task_limit", "task_sample_seed")}
    excludes = [dict(e) for e in exclude]
    for e in excludes:
        bad = sorted(set(e) - set(AXES))
        if bad:
            raise ConfigError(f"sweep.exclude names unknown axes {bad}. Valid axes: {', '.join(AXES)}.")
    specs: list[TrialSpec] = []
    for values in itertools.product(*(axes[a] for a in AXES)):
        point = dict(zip(AXES, values, strict=True))
        if any(all(point.get(k) == v for k, v in e.items()) for e in excludes):
            continue
        for repeat in range(repeats):
            specs.append(
                TrialSpec(
                    trial_id=trial_id(sweep, point, repeat, sample),
                    sweep=sweep,
                    repeat=repeat,
                    model=str(point["model"]),
                    backend=str(point["backend"]),
                    weights=str(point["weights"]),
                    precision=str(point["precision"]),
                    batch_size=int(point["batch_size"]),
                    task=str(point["task"]),
                    prompt_variant=str(point["prompt_variant"]),
                    hardware=str(point["hardware"]),
                    max_new_tokens=None if point["max_new_tokens"] is None else int(point["max_new_tokens"]),
                    requests=point["requests"],
                    prompt_tokens=None if point["prompt_tokens"] is None else int(point["prompt_tokens"]),
                    chat_template=str(point["chat_template"]),
                    inference_steps=None if point["inference_steps"] is None else int(point["inference_steps"]),
                    resolution=None if point["resolution"] is None else int(point["resolution"]),
                    guidance_scale=None if point["guidance_scale"] is None else float(point["guidance_scale"]),
                    task_limit=sample.get("task_limit"),
                    task_sample_seed=sample.get("task_sample_seed"),
                )
            )
    # Keep each load key's trials together (a worker loads once per group), first-seen order.
    order: dict[tuple[Any, ...], int] = {}
    for s in specs:
        order.setdefault(s.load_key, len(order))
    specs.sort(key=lambda s: order[s.load_key])
    return specs


def group(specs: Iterable[TrialSpec]) -> list[list[TrialSpec]]:
    """Trials grouped by load key, in first-seen order."""
    groups: dict[tuple[Any, ...], list[TrialSpec]] = {}
    for s in specs:
        groups.setdefault(s.load_key, []).append(s)
    return list(groups.values())
