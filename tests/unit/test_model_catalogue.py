"""Every model in conf/model/ with an architecture builds in transformers (on the meta
device: no memory, no download), its parameter count matches the catalogue's params_b, and
no architecture key is a typo that transformers would silently keep as a stray attribute.
The seeds' open models are all in the catalogue, each with its Hub id."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import CONFIG_MAPPING, AutoConfig, AutoModelForCausalLM

CONF = Path(__file__).resolve().parents[2] / "conf" / "model"
# Hosted models (conf/model/gpt-*.yaml: provider + api_model) have no architecture to build;
# tests/unit/test_openai_backend.py checks those.
# Text-to-image pipelines (architecture.pipeline) are tests/unit/test_diffusers_backend.py's.
MODELS = sorted(p.stem for p in CONF.glob("*.yaml") if "architecture" in OmegaConf.load(p)
                and "pipeline" not in OmegaConf.load(p).architecture)
# The seeds' open models (practicum: Mistral 7B, Mamba 7B, Qwen2 7B; thesis: Llama 3 8B/70B,
# DeepSeek-R1 8B/70B, Qwen 72B, Gemma 3 270M/1B/4B) -> their Hugging Face Hub ids.
SEED_MODELS = {
    "mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3",
    "mamba-codestral-7b": "mistralai/Mamba-Codestral-7B-v0.1",
    "qwen2-7b": "Qwen/Qwen2-7B-Instruct",
    "llama3-8b": "meta-llama/Meta-Llama-3-8B-Instruct",
    "llama3-70b": "meta-llama/Meta-Llama-3-70B-Instruct",
    "deepseek-r1-8b": "deepseek-ai/DeepSeek-R1-Distill-Llama-8B",
    "deepseek-r1-70b": "deepseek-ai/DeepSeek-R1-Distill-Llama-70B",
    "qwen2.5-72b": "Qwen/Qwen2.5-72B-Instruct",
    "gemma3-270m": "google/gemma-3-270m",
    "gemma3-1b": "google/gemma-3-1b-it",
    "gemma3-4b": "google/gemma-3-4b-it",
}
# Keys transformers 5 accepts and folds into `rope_parameters` (the Hub's config.json files use them).
LEGACY_KEYS = {"rope_theta", "rope_scaling"}


def _spec(name: str) -> dict:
    spec = OmegaConf.to_container(OmegaConf.load(CONF / f"{name}.yaml"))
    assert isinstance(spec, dict) and spec["name"] == name
    return spec


@pytest.mark.parametrize("name", MODELS)
def test_architecture_builds_with_the_stated_size(name: str) -> None:
    spec = _spec(name)
    arch = dict(spec["architecture"])
    cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(cfg)
    params_b = sum(p.numel() for p in model.parameters()) / 1e9
    assert params_b == pytest.approx(spec["params_b"], rel=0.01), f"{name}: built {params_b:.4f} B"


@pytest.mark.parametrize("name", MODELS)
def test_architecture_keys_are_config_keys(name: str) -> None:
    arch = dict(_spec(name)["architecture"])
    known = set(CONFIG_MAPPING[arch.pop("model_type")]().to_dict())
    typos = sorted(set(arch) - known - LEGACY_KEYS)
    assert not typos, f"{name}: keys the config class does not have: {typos}"


@pytest.mark.parametrize(("name", "hub_id"), sorted(SEED_MODELS.items()))
def test_the_seeds_models_are_catalogued_with_their_hub_id(name: str, hub_id: str) -> None:
    assert name in MODELS
    spec = _spec(name)
    assert spec["hub_id"] == hub_id
    assert spec["architecture"], f"{name}: no architecture, so weights=dummy cannot build it"


def test_the_catalogue_spans_the_thesis_scaling_study() -> None:
    sizes = {name: _spec(name)["params_b"] for name in SEED_MODELS}
    assert min(sizes.values()) < 0.3 and max(sizes.values()) > 70
