"""On a real GPU: the transformers backend's defaults that the scheduler and the warmups rely on."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu

QWEN_05B = {"model_type": "qwen2", "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864,
            "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
            "max_position_embeddings": 32768, "tie_word_embeddings": True}


def test_a_new_shapes_first_run_is_not_slow_and_unload_gives_the_memory_back(tmp_path) -> None:
    """With cuDNN attention off (transformers.cudnn_attention=false, the default) a new
    (batch, length) shape's first run is about as fast as its second: with cuDNN's per-shape
    plans it was 3-4x slower on an H200. After unload, at most cuBLAS's workspaces stay
    allocated, under ray.reuse_max_left_mb, so ray.reuse_workers=auto keeps the process."""
    from energyray.backends.transformers import TransformersBackend
    from energyray.config import ModelConfig, RayConfig
    from energyray.tasks import prompts

    b = TransformersBackend()
    info = b.load(ModelConfig(name="qwen-0.5b", architecture=QWEN_05B), "dummy", "baseline", "cuda", str(tmp_path), 0)
    assert info.columns["cudnn_attention"] is False
    b.generate([p.text for p in prompts("longform", "default", 1)], 64, ignore_eos=True)  # the process's first run
    texts = [p.text for p in prompts("longform", "default", 4)]
    first = b.generate(texts, 128, ignore_eos=True).duration_s  # a shape not seen before
    second = b.generate(texts, 128, ignore_eos=True).duration_s
    assert first < 1.5 * second, (first, second)
    b.unload()
    assert b.memory_in_use_mb() < RayConfig().reuse_max_left_mb
