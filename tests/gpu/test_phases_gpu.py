"""On a real GPU, without Ray: a TrialRunner with the NVML sampler measures every phase."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.gpu


def test_phases_counter_split_idle_and_roofline_on_gpu(tmp_path) -> None:
    from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig
    from energyray.env import hardware_name, visible_gpu_uuid
    from energyray.grid import expand
    from energyray.samplers.nvml import NvmlSampler, gpus
    from energyray.trial import TrialRunner

    uuid = visible_gpu_uuid()
    hw = hardware_name(next(g["name"] for g in gpus() if g["uuid"] == uuid))
    model = ModelConfig(name="llama-1b", params_b=1.2, architecture={
        "model_type": "llama", "vocab_size": 32000, "hidden_size": 2048, "intermediate_size": 5632,
        "num_hidden_layers": 16, "num_attention_heads": 16, "num_key_value_heads": 8})
    [spec] = expand("gpu-test", {"batch_size": [4]}, {
        "model": "llama-1b", "backend": "transformers", "weights": "dummy", "precision": "baseline",
        "batch_size": 4, "task": "longform", "prompt_variant": "default", "hardware": hw,
        "max_new_tokens": 256})
    sampler = NvmlSampler(uuid)
    sampler.start()
    runner = TrialRunner(sampler, GenerationConfig(), str(tmp_path), device="cuda",
                         measurement=MeasurementConfig(idle_s=2.0, idle_settle_s=1.0, idle_settle_max_s=20.0))
    try:
        runner.load(spec, model)
        row = runner.run(spec, model, {}, last=True).row
    finally:
        sampler.close()
    assert row["status"] == "ok", row["error"]
    assert row["energy_source"] == "counter" and row["short_window"] is False
    assert 20 < row["idle_power_w"] < 400
    assert row["idle_settled"] in (True, False) and row["idle_settle_s"] >= 1.0
    assert row["energy_idle_subtracted_j"] < row["energy_j"]
    assert row["prefill_source"] == row["decode_source"] == "counter_apportioned"
    # prefill + decode cover generate; the window adds only the sampler calls' few ms
    assert 0.9 * row["energy_j"] < row["prefill_j"] + row["decode_j"] <= row["energy_j"] * 1.0001
    assert row["steady_j"] is not None and row["steady_tokens"] == 4 * 255
    assert 0 < row["roofline_efficiency"] <= 1.0
    assert row["unload_j"] is not None and row["load_j"] > 0
