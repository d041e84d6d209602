"""The roofline's KV-cache bytes per decode step, with sliding-window attention.

A layer with sliding-window attention (Gemma 2/3 interleave them with global layers) keeps
and reads only the last `sliding_window` positions, so its KV bytes per step stop growing
there; the layout comes from the model's config (backends.transformers.attention_layout).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from energyray import roofline
from energyray.backends.transformers import TransformersBackend, attention_layout

REPO_ROOT = Path(__file__).resolve().parents[2]


# -- the mean attended length ---------------------------------------------------------------------


def brute_mean(prompt: int, steps: int, window: int | None, n: int = 200_000) -> float:
    """The mean of min(length, window) over the decode, summed finely (the continuous mean)."""
    total = 0.0
    for k in range(n):
        length = prompt + steps * (k + 0.5) / n
        total += length if window is None else min(length, window)
    return total / n


@pytest.mark.parametrize(("prompt", "steps", "window"), [
    (256, 128, None),    # no window: prompt + steps / 2
    (256, 128, 4096),    # the whole decode below the window
    (4000, 128, 512),    # the prompt already past it: the window throughout
    (400, 256, 512),     # crosses the window mid-decode
    (0, 1000, 100),
])
def test_mean_attended_is_the_mean_capped_length(prompt, steps, window):
    assert roofline.mean_attended(prompt, steps, window) == pytest.approx(brute_mean(prompt, steps, window), rel=1e-6)


def test_mean_attended_without_steps_is_the_capped_prompt():
    assert roofline.mean_attended(700, 0, 512) == 512
    assert roofline.mean_attended(300, 0, 512) == 300
    assert roofline.mean_attended(300, 0, None) == 300


# -- floor -------------------------------------------------------------------------------------------


def test_floor_caps_the_kv_of_sliding_layers_only():
    # Gemma 3 270M's layout: 18 layers, 15 local (window 512) and 3 global
    arch = {"weight_bytes": 500e6, "kv_bytes_per_position": 18 * 2 * 256 * 2,
            "num_layers": 18, "sliding_layers": 15, "sliding_window": 512}
    out = roofline.floor(arch, batch_size=4, input_tokens_per_seq=4000, steps=128,
                         bandwidth_gbs=1000.0, tpot_s=0.01, decode_power_w=None)
    per_layer = 2 * 256 * 2
    expected_kv = per_layer * 4 * (3 * (4000 + 64) + 15 * 512)
    assert out["roofline_kv_bytes_per_step"] == pytest.approx(expected_kv)
    assert out["roofline_bytes_per_step"] == pytest.approx(500e6 + expected_kv)
    assert out["roofline_s_per_step"] == pytest.approx((500e6 + expected_kv) / 1e12)
    # every layer as global: 3.7x the KV bytes
    uncapped = roofline.floor({**arch, "sliding_layers": 0}, 4, 4000, 128, 1000.0, 0.01, None)
    assert uncapped["roofline_kv_bytes_per_step"] == pytest.approx(per_layer * 4 * 18 * 4064)
    assert uncapped["roofline_kv_bytes_per_step"] > 3.5 * out["roofline_kv_bytes_per_step"]


def test_floor_without_a_layout_reads_every_layer_at_full_length():
    arch = {"weight_bytes": 1e9, "kv_bytes_per_position": 131072}  # an older architecture dict
    out = roofline.floor(arch, 2, 256, 128, 1000.0, None, None)
    assert out["roofline_kv_bytes_per_step"] == pytest.approx(131072 * 2 * (256 + 64))
    # a short context inside the window: the cap changes nothing
    capped = roofline.floor({**arch, "num_layers": 32, "sliding_layers": 32, "sliding_window": 4096},
                            2, 256, 128, 1000.0, None, None)
    assert capped["roofline_kv_bytes_per_step"] == pytest.approx(out["roofline_kv_bytes_per_step"])


# -- the layout from a model's config ----------------------------------------------------------


def configs():
    from transformers import Gemma3TextConfig, LlamaConfig, MistralConfig, Qwen2Config

    return {
        "gemma3": Gemma3TextConfig(num_hidden_layers=18, sliding_window=512),
        "mistral-v0.3": MistralConfig(sliding_window=None),
        "mistral-v0.1": MistralConfig(sliding_window=4096),
        "qwen2": Qwen2Config(num_hidden_layers=28),
        "qwen2-swa": Qwen2Config(num_hidden_layers=28, use_sliding_window=True, sliding_window=4096,
                                 max_window_layers=28),
        "llama": LlamaConfig(),
    }


@pytest.mark.parametrize(("name", "layers", "sliding", "window"), [
    ("gemma3", 18, 15, 512),           # every sixth layer global
    ("mistral-v0.3", 32, 0, None),     # no sliding window
    ("mistral-v0.1", 32, 32, 4096),    # a window on every layer, no layer_types
    ("qwen2", 28, 0, None),            # use_sliding_window=False
    ("qwen2-swa", 28, 0, None),        # windows only past max_window_layers=28: none of 28
    ("llama", 32, 0, None),
])
def test_attention_layout_of_configs(name, layers, sliding, window):
    got = attention_layout(configs()[name])
    assert got == {"num_layers": layers, "sliding_layers": sliding, "sliding_window": window}


def test_attention_layout_follows_layer_types():
    from transformers import Qwen2Config

    cfg = Qwen2Config(num_hidden_layers=32, use_sliding_window=True, sliding_window=4096, max_window_layers=28)
    assert attention_layout(cfg) == {"num_layers": 32, "sliding_layers": 4, "sliding_window": 4096}


def test_attention_layout_of_the_catalogues_models():
    from transformers import AutoConfig

    layouts = {}
    for name in ("gemma3-270m", "mistral-7b"):
        arch = dict(OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{name}.yaml").architecture))
        layouts[name] = attention_layout(AutoConfig.for_model(arch.pop("model_type"), **arch))
    assert layouts["gemma3-270m"] == {"num_layers": 18, "sliding_layers": 15, "sliding_window": 512}
    assert layouts["mistral-7b"] == {"num_layers": 32, "sliding_layers": 0, "sliding_window": None}


def test_architecture_of_a_tiny_gemma3_has_its_layout():
    import torch
    from transformers import AutoModelForCausalLM, Gemma3TextConfig

    cfg = Gemma3TextConfig(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=6,
                           num_attention_heads=2, num_key_value_heads=1, head_dim=32, sliding_window=16)
    b = TransformersBackend()
    b.model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
    arch = b.architecture()
    assert arch["model_type"] == "gemma3_text"
    assert (arch["num_layers"], arch["sliding_layers"], arch["sliding_window"]) == (6, 5, 16)
    assert arch["kv_bytes_per_position"] == 2 * 6 * 1 * 32 * 4
    out = roofline.floor(arch, 1, 100, 20, 100.0, None, None)
    assert out["roofline_kv_bytes_per_step"] == pytest.approx(2 * 1 * 32 * 4 * (1 * 110 + 5 * 16))
