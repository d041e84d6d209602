"""EcoLogits' range for closed models (energyray.footprint.ecologits_estimate), with the real
installed `ecologits` and its bundled model repository (offline), and through backend=openai
against the shipped fake OpenAI server (the far side we cannot reach in a test); `both` through
the trial runner is in test_openai_backend.py."""

from __future__ import annotations

import builtins
from typing import Any

import pytest

from energyray.backends.openai_api import OpenAIBackend
from energyray.config import ApiConfig, ModelConfig
from energyray.footprint import ecologits_estimate as eco
from energyray.testing.fake_openai import FakeOpenAI

MODEL = "gpt-4.1-mini"


@pytest.mark.extra("ecologits")
def test_range_is_positive_ordered_labelled_and_in_joules():
    x = eco.estimate("openai", MODEL, [(100, 2.0)])
    lo, hi = x["energy_estimated_ecologits_min_j"], x["energy_estimated_ecologits_max_j"]
    assert 0 < lo <= hi and 0 < x["ecologits_min_co2_g"] <= x["ecologits_max_co2_g"]
    assert x["energy_estimated_ecologits_source"] == "estimated" and x["energy_estimate_ecologits_reason"] is None
    # joules, not kWh: 100 tokens of a mid-size model is tens to hundreds of J per request
    assert 1 < lo < 1e4
    import ecologits

    assert f"ecologits {ecologits.__version__}" in x["energy_estimate_ecologits_method"]
    assert "PUE" in x["energy_estimate_ecologits_method"]


@pytest.mark.extra("ecologits")
def test_more_output_tokens_cost_more_and_requests_sum():
    one = eco.estimate("openai", MODEL, [(100, 30.0)])
    double = eco.estimate("openai", MODEL, [(200, 30.0)])
    two = eco.estimate("openai", MODEL, [(100, 30.0), (100, 30.0)])
    for k in ("energy_estimated_ecologits_min_j", "energy_estimated_ecologits_max_j"):
        assert double[k] > one[k]
        assert two[k] == pytest.approx(2 * one[k])


@pytest.mark.extra("ecologits")
def test_unknown_model_or_provider_or_counts_give_null_with_reason():
    x = eco.estimate("openai", "no-such-model-xyz", [(100, 1.0)])
    assert all(x[c] is None for c in eco.COLUMNS) and x["energy_estimated_ecologits_source"] is None
    assert "no-such-model-xyz" in x["energy_estimate_ecologits_reason"]
    assert "provider" in eco.estimate(None, MODEL, [(100, 1.0)])["energy_estimate_ecologits_reason"]
    assert "no output tokens" in eco.estimate("openai", MODEL, [(None, 1.0)])["energy_estimate_ecologits_reason"]


def test_missing_package_names_the_install(monkeypatch):
    real = builtins.__import__

    def no_ecologits(name: str, *a: Any, **k: Any) -> Any:
        if name == "ecologits" or name.startswith("ecologits."):
            raise ImportError(f"No module named {name!r}")
        return real(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_ecologits)
    x = eco.estimate("openai", MODEL, [(100, 1.0)])
    assert all(x[c] is None for c in eco.COLUMNS)
    assert "pip install 'energyray[ecologits]'" in x["energy_estimate_ecologits_reason"]


@pytest.mark.extra("api", "ecologits")
def test_backend_ecologits_alone_leaves_flops_off():
    model = ModelConfig(name=MODEL, provider="openai", api_model=MODEL)
    with FakeOpenAI() as fake:
        b = OpenAIBackend(ApiConfig(base_url=fake.base_url, energy_estimate="ecologits", timeout_s=5.0))
        b.load(model, "real", "baseline", "auto", "/unused", 0)
        x = b.generate(["hi"], 16, False).extras
    assert x["energy_estimated_j"] is None and "ecologits" in x["energy_estimate_reason"]
    assert x["energy_estimated_ecologits_min_j"] > 0
