"""Planning without Hydra or Ray: counts by axis, per-trial configs, and the layering rule
that nothing below the CLI imports it."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from energyray import plan
from energyray.config import ModelConfig, RunConfig
from energyray.errors import ConfigError
from energyray.grid import expand

PKG = Path(plan.__file__).resolve().parent
DEFAULTS = {"model": "tiny-llama", "backend": "transformers", "weights": "real", "precision": "baseline",
            "batch_size": 1, "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": None}


def test_nothing_below_the_cli_imports_it():
    importers = []
    for path in PKG.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            from_pkg = isinstance(node, ast.ImportFrom) and node.module == "energyray" and any(
                a.name == "cli" for a in node.names)
            if from_pkg or any(n == "energyray.cli" or n.startswith("energyray.cli.") for n in names):
                importers.append(path.relative_to(PKG).as_posix())
    assert importers == ["__main__.py"]


def test_axis_counts_give_each_value_its_trials_in_order():
    specs = expand("s", {"precision": ["nf4", "baseline"], "batch_size": [1, 2, 4]}, DEFAULTS, repeats=2)
    counts = plan.axis_counts(specs)
    assert list(counts["precision"].items()) == [("nf4", 6), ("baseline", 6)]
    assert list(counts["batch_size"].items()) == [(1, 4), (2, 4), (4, 4)]
    assert counts["repeat"] == {0: 6, 1: 6} and counts["model"] == {"tiny-llama": 12}


def test_trial_configs_are_each_trials_own_and_serialise():
    cfg = RunConfig()
    specs = expand("s", {"precision": ["nf4", "baseline"]}, DEFAULTS, repeats=2)
    configs = plan.trial_configs(specs, cfg, {"tiny-llama": ModelConfig(name="tiny-llama", builtin="tiny-llama")})
    assert set(configs) == {s.trial_id for s in specs}
    for s in specs:
        c = json.loads(json.dumps(configs[s.trial_id], default=str))
        assert c["trial"] == json.loads(json.dumps(s.to_dict()))
        assert c["model"]["name"] == "tiny-llama" and c["generation"]["max_new_tokens"] == 128
        assert c["transformers"] == {"cudnn_attention": False} and "api" not in c
    one = plan.trial_config(specs[0], cfg, ModelConfig(name="tiny-llama"))
    assert one["trial"]["trial_id"] == specs[0].trial_id


def test_validate_names_the_choices():
    specs = expand("s", {"precision": ["int3"]}, DEFAULTS)
    with pytest.raises(ConfigError, match="int3.*Valid choices: baseline"):
        plan.validate(specs, {"tiny-llama": ModelConfig(name="tiny-llama", builtin="tiny-llama")})


@pytest.mark.parametrize(("value", "mode"), [(False, "false"), (True, "true"), ("list", "list"), ("LIST", "list")])
def test_dry_run_modes(value, mode):
    cfg = RunConfig(dry_run=value)
    plan.check_knobs(cfg)
    assert cfg.dry_run == mode


def test_dry_run_refuses_anything_else():
    with pytest.raises(ConfigError, match="dry_run='maybe'"):
        plan.check_knobs(RunConfig(dry_run="maybe"))
