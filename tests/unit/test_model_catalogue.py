"""Every model in conf/model/ with an architecture builds in transformers (on the meta
device: no memory, no download) and its parameter count matches the catalogue's params_b."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoConfig, AutoModelForCausalLM

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# Hosted models (conf/model/gpt-*.yaml: provider + api_model) have no architecture to build;
# tests/unit/test_openai_backend.py checks those.
MODELS = sorted(p.stem for p in CONF.glob("*.yaml") if "architecture" in OmegaConf.load(p))


@pytest.mark.parametrize("name", MODELS)
def test_architecture_builds_with_the_stated_size(name: str) -> None:
    spec = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(spec, dict) and spec["name"] == name
    arch = dict(spec["architecture"])
    cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    assert params_b == pytest.approx(spec["params_b"], rel=0.05), f"{name}: built {params_b:.4f} B"
