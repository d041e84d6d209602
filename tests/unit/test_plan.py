"""Planning without Hydra or Ray: counts by axis, per-trial configs, and the layering rule
that nothing below the CLI imports it."""

from __future__ import annotations

import ast
import functools
import json
import re
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


# -- every knob checked before anything runs --------------------------------------------------------
def _numeric_keys(cls: type, prefix: str = "") -> list[str]:
    """Dotted keys of every int or float field of a config dataclass, sections walked."""
    import dataclasses

    from energyray import config

    out = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        section = next((getattr(config, n) for n in str(f.type).replace("|", " ").split()
                        if n.endswith("Config") and hasattr(config, n)), None)
        if key in config.LIMITS_ELSEWHERE:
            continue
        if section is not None and not str(f.type).startswith("list"):
            out += _numeric_keys(section, key + ".")
        elif {"int", "float"} & set(str(f.type).replace("|", " ").split()):
            out.append(key)
    return out


def test_every_numeric_knob_has_a_range():
    from energyray.config import LIMITS

    keys = _numeric_keys(RunConfig)
    assert "generation.max_new_tokens" in keys and "sampler.pdu.port" in keys  # the walk reaches sections
    assert [k for k in keys if k not in LIMITS] == []
    assert [k for k in LIMITS if k not in keys] == []  # and names no knob that is gone


@pytest.mark.parametrize(("key", "bad", "says"), [
    ("generation.max_new_tokens", 0, "at least 1"),  # lengths
    ("generation.warmup_new_tokens", 0, "at least 1 (or null)"),
    ("sweep.repeats", 0, "at least 1"),  # repeats
    ("generation.warmup_runs", -1, "at least 0"),  # warmups
    ("sampler.interval_s", 0.0, "at least 0.001 and at most 60"),  # intervals
    ("sampler.interval_s", 3600.0, "at most 60"),
    ("ray.trial_timeout_s", 0.0, "greater than 0"),  # timeouts
    ("api.timeout_s", float("nan"), "greater than 0"),
    ("ray.max_retries", -1, "at least 0"),  # retries
    ("ray.num_cpus", 0, "at least 1 (or null)"),  # workers
    ("ray.cpu_workers", 0, "at least 1"),
    ("vllm.gpu_memory_utilization", 1.5, "greater than 0 and at most 1"),  # fractions
    ("measurement.idle_s", -1.0, "at least 0"),
    ("seed", -1, "at least 0"),
])
def test_a_knob_out_of_range_is_refused_with_its_name_value_and_range(key, bad, says):
    cfg = RunConfig()
    *path, name = key.split(".")
    setattr(functools.reduce(getattr, path, cfg), name, bad)
    with pytest.raises(ConfigError) as e:
        plan.check_knobs(cfg)
    assert f"{key}={bad!r}" in str(e.value) and says in str(e.value), str(e.value)


def test_defaults_and_nulls_where_allowed_pass():
    cfg = RunConfig()
    cfg.ray.num_cpus, cfg.generation.warmup_new_tokens, cfg.measurement.idle_s = None, None, 0.0
    plan.check_knobs(cfg)


def test_pdu_knobs_are_checked_only_where_a_pdu_is_set():
    from energyray.config import PduConfig, PduOidConfig

    cfg = RunConfig()
    plan.check_knobs(cfg)  # sampler.pdu: null
    cfg.sampler.pdu = PduConfig(host="10.0.0.5", port=70000, oids=[PduOidConfig(oid="1.3.6.1")])
    with pytest.raises(ConfigError, match=r"sampler.pdu.port=70000 .*at most 65535"):
        plan.check_knobs(cfg)


def test_a_model_of_the_grid_is_checked_and_named():
    from energyray.config import check_limits

    with pytest.raises(ConfigError, match=r"model.params_b=-1.0 \(conf/model/x.yaml\)"):
        check_limits(ModelConfig(name="x", params_b=-1.0), "model", "conf/model/x.yaml")


@pytest.mark.parametrize(("value", "guess"), [("gpu", "cuda"), ("GPU", "cuda"), ("cuda:0", "cuda"), ("CUDA", "cuda"),
                                              ("nvidia", "cuda"), ("CPU", "cpu"), ("cpus", "cpu"), ("Auto", "auto")])
def test_device_names_the_likely_meaning(value, guess):
    with pytest.raises(ConfigError, match=f"device='{value}' is not one of: auto .*cpu, cuda. Did you mean '{guess}'"):
        plan.check_knobs(RunConfig(device=value))


def test_device_without_a_likely_meaning_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        plan.check_knobs(RunConfig(device="tpu"))
    assert "Did you mean" not in str(e.value) and "auto" in str(e.value)


@pytest.mark.parametrize("device", ["auto", "cpu", "cuda"])
def test_devices_pass(device):
    plan.check_knobs(RunConfig(device=device))


@pytest.mark.parametrize(("key", "value"), [("sampler.cpu", "intel"), ("sampler.node_cpu", "rapll")])
def test_sampler_choices_are_checked_upfront(key, value):
    cfg = RunConfig()
    setattr(cfg.sampler, key.split(".")[1], value)
    with pytest.raises(ConfigError, match=f"{key}='{value}' is not one of: .*codecarbon"):
        plan.check_knobs(cfg)


@pytest.mark.parametrize(("grid", "pinned", "says"), [
    ({"max_new_tokens": [16, 0]}, {}, "sweep.grid.max_new_tokens: 0 is out of range"),
    ({"batch_size": [1.5]}, {}, "sweep.grid.batch_size: 1.5 is out of range: each value must be a whole number"),
    ({"batch_size": [True]}, {}, "sweep.grid.batch_size: True"),
    ({"batch_size": ["8"]}, {}, "sweep.grid.batch_size: '8'"),
    ({}, {"batch_size": 0}, "batch_size: 0 is out of range"),
])
def test_the_grids_numbers_are_whole_and_positive(grid, pinned, says):
    with pytest.raises(ConfigError, match=re.escape(says)):
        plan.check_grid(grid, pinned)


def test_the_grids_default_length_is_null():
    plan.check_grid({"max_new_tokens": [None, 8], "batch_size": [1, 64]}, {})


def test_validate_refuses_a_length_of_zero():
    specs = expand("s", {"max_new_tokens": [0]}, DEFAULTS)
    with pytest.raises(ConfigError, match="max_new_tokens must be at least 1"):
        plan.validate(specs, {"tiny-llama": ModelConfig(name="tiny-llama", builtin="tiny-llama")})


# -- sweep files and the store -----------------------------------------------------------------------
BROKEN = "name: mine\ngrid:\n  batch_size: [1, 2\n  task: qa\n"


def test_a_broken_sweep_file_is_left_out_and_the_others_still_register(tmp_path, monkeypatch):
    from hydra.core.config_store import ConfigStore

    (tmp_path / "broken_one.yaml").write_text(BROKEN)
    (tmp_path / "fine_one.yaml").write_text("grid:\n  batch_size: [1]\n")
    monkeypatch.setenv("ENERGYRAY_SWEEPS", str(tmp_path))
    skipped = plan.register_configs("smoke")
    assert len(skipped) == 1 and "broken_one.yaml: YAML error at line 4" in skipped[0], skipped
    assert "sweep 'broken_one' is left out" in skipped[0]
    names = ConfigStore.instance().list("sweep")
    assert "fine_one.yaml" in names and "smoke.yaml" in names and "broken_one.yaml" not in names


def test_the_requested_sweep_broken_is_an_error_naming_file_line_and_problem(tmp_path, monkeypatch):
    (tmp_path / "broken_two.yaml").write_text(BROKEN)
    monkeypatch.setenv("ENERGYRAY_SWEEPS", str(tmp_path))
    with pytest.raises(ConfigError) as e:
        plan.register_configs("broken_two")
    text = str(e.value)
    assert f"{tmp_path / 'broken_two.yaml'}: YAML error at line 4: expected ',' or ']'" in text, text
    assert "Fix the file, or move it out of" in text


def test_a_sweep_file_that_is_a_list_is_refused(tmp_path):
    (tmp_path / "l.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must be a mapping of keys"):
        plan.load_yaml(tmp_path / "l.yaml", "a sweep")


@pytest.mark.parametrize(("argv", "sweep"), [([], "quantization"), (["sweep=smoke"], "smoke"),
                                             (["sweep=smoke", "+sweep=mine", "dry_run=true"], "mine")])
def test_requested_sweep(argv, sweep):
    assert plan.requested_sweep(argv) == sweep


def test_an_unwritable_store_is_refused_naming_the_path(tmp_path):
    from energyray.errors import StoreError

    (tmp_path / "file").write_text("")
    for path in ("/proc/energyray", str(tmp_path / "file" / "store")):
        with pytest.raises(StoreError, match=f"store.path={re.escape(path)}: cannot write there .*store.path=DIR"):
            plan.check_store_writable(path)
    plan.check_store_writable(str(tmp_path / "new" / "store"))
    assert list((tmp_path / "new" / "store").iterdir()) == []  # the probe is gone


@pytest.mark.parametrize(("value", "says"), [("rapl", "reads the CPU, not a GPU: keep sampler.gpu=nvml and add the "
                                                      "CPU with sampler.node_cpu=rapl"),
                                             ("codecarbon", "sampler.node_cpu=codecarbon"),
                                             ("nvlm", "is not one of: nvml, replay, or an importable "
                                                      "'package.module:Class'. Did you mean 'nvml'?")])
def test_sampler_gpu_takes_a_gpu_source_only(value, says):
    cfg = RunConfig()
    cfg.sampler.gpu = value
    with pytest.raises(ConfigError, match=re.escape(says)):
        plan.check_knobs(cfg)
    cfg.sampler.gpu = "pkg.mod:MySampler"  # a plugin is imported only where a worker builds it
    plan.check_knobs(cfg)
