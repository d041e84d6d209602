"""Lazy name → ``"module:Class"`` registry for the extension points (backends, samplers, tasks).

Nothing is imported until a name is used, so ``import energyray`` pulls in neither torch
nor vllm nor ray. One mapping per extension point is the single source of truth.
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Iterable
from typing import Any

from energyray.errors import ConfigError

BACKENDS: dict[str, str] = {
    "transformers": "energyray.backends.transformers:TransformersBackend",
    "vllm": "energyray.backends.vllm:VllmBackend",
    "openai": "energyray.backends.openai_api:OpenAIBackend",
    "server": "energyray.backends.server:ServerBackend",
    "diffusers": "energyray.backends.diffusers:DiffusersBackend",
}

# RunConfig sections a backend may name in its `settings` (it gets them as keyword arguments)
BACKEND_SETTINGS: tuple[str, ...] = ("transformers", "vllm", "api", "server")

SAMPLERS: dict[str, str] = {
    "nvml": "energyray.samplers.nvml:NvmlSampler",
    "rapl": "energyray.samplers.rapl:RaplSampler",
    "codecarbon": "energyray.samplers.codecarbon:CodeCarbonSampler",
    "replay": "energyray.samplers.replay:ReplaySampler",
}

# built-in tasks (energyray/tasks); a task class takes no arguments (the Task protocol in tasks/base.py)
TASKS: dict[str, str] = {
    "longform": "energyray.tasks.builtin:LongformTask",
    "qa": "energyray.tasks.builtin:QaTask",
    "summarization": "energyray.tasks.builtin:SummarizationTask",
    "reasoning": "energyray.tasks.builtin:ReasoningTask",
    "hle_style": "energyray.tasks.builtin:HleStyleTask",
    "image": "energyray.tasks.builtin:ImageTask",
}


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """The sentence " Did you mean 'x'?" for the closest of `choices` to a mistyped `name`, or ""."""
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def resolve(kind: str, table: dict[str, str], name: str) -> Any:
    """Import and return the class registered as `name`; a typo gets "did you mean".

    A name of the form ``"package.module:Class"`` is imported as given: your own backend or
    sampler without registering it here (it must be importable on every Ray node)."""
    if ":" in name and name not in table:
        module_name, _, attr = name.partition(":")
        try:
            return getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as e:
            raise ConfigError(f"Cannot import {kind} {name!r}: {type(e).__name__}: {e}. Give an importable "
                              "'package.module:Class' (on every node), or one of: "
                              f"{', '.join(sorted(table))}.") from e
    if name not in table:
        raise ConfigError(f"Unknown {kind} {name!r}.{did_you_mean(name, table)} Valid choices: "
                          f"{', '.join(sorted(table))}.")
    module_name, _, attr = table[name].partition(":")
    return getattr(importlib.import_module(module_name), attr)
