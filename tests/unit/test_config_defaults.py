"""One source of defaults: the dataclasses in config.py. conf/config.yaml only picks the
catalogue entries (model, hardware, sweep, sampler/pdu), so a RunConfig built in code (tests,
benchmarks) runs what the CLI runs."""

from __future__ import annotations

import dataclasses

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from energyray import paths, plan
from energyray.config import RunConfig


def composed(*overrides: str) -> RunConfig:
    plan.register_configs()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=list(overrides))
    out = OmegaConf.to_object(cfg)
    assert isinstance(out, RunConfig)
    return out


def test_runconfig_in_code_equals_the_composed_default():
    cli = composed()
    code = RunConfig()
    # the sections the config groups choose (a catalogue entry, not a default of the schema)
    code = dataclasses.replace(code, model=cli.model, hardware=cli.hardware, sweep=cli.sweep,
                               sampler=dataclasses.replace(code.sampler, pdu=cli.sampler.pdu))
    assert dataclasses.asdict(cli) == dataclasses.asdict(code)
    assert cli == code


def test_the_groups_pick_the_default_catalogue_entries():
    cli = composed()
    assert (cli.model.name, cli.hardware.name, cli.sweep.name, cli.sampler.pdu) == (
        "gemma3-270m", "auto", "quantization", None)
    assert cli.generation.max_new_tokens == RunConfig().generation.max_new_tokens == 128


def test_config_yaml_sets_no_value_of_its_own():
    """Only the defaults list and Hydra's section: a value here would be a second source."""
    raw = OmegaConf.load(paths.conf_dir() / "config.yaml")
    assert set(raw) == {"defaults", "hydra"}


def test_catalogue_entries_load_as_hydra_composes_them():
    """plan.load_group reads conf/<group>/<name>.yaml onto its schema instead of composing the
    whole config once per name: the same result, for every entry of the catalogue."""
    plan.register_configs()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        for group_name in ("model", "hardware"):
            names = paths.group_names(group_name)
            current = OmegaConf.to_object(compose(config_name="config")[group_name])
            loaded = plan.load_group(group_name, set(names), current)
            assert sorted(loaded) == names
            for name in names:
                hydra = OmegaConf.to_object(compose(config_name="config", overrides=[f"{group_name}={name}"])[group_name])
                assert loaded[name] == hydra, name
