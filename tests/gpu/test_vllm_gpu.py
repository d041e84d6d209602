"""vLLM for real, on a GPU machine where `pip install 'energyray[vllm]'` worked (skipped
elsewhere). Not run yet by anyone: vLLM cannot be installed on the machines energyray has
been developed on (see energyray/backends/vllm.py). Gemma 3 270M's architecture with random
weights (no download), through TrialRunner with the NVML sampler.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.gpu
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("precision", ["baseline", "fp8"])
def test_vllm_dummy_gemma_trial_on_gpu(tmp_path, precision) -> None:
    pytest.importorskip("vllm")
    from omegaconf import OmegaConf

    from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig, VllmConfig
    from energyray.env import hardware_name, visible_gpu_uuid
    from energyray.grid import expand
    from energyray.samplers.nvml import NvmlSampler, gpus
    from energyray.trial import TrialRunner

    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(REPO_ROOT / "conf/model/gemma3-270m.yaml"))
    model = OmegaConf.to_object(node)
    uuid = visible_gpu_uuid()
    hw = hardware_name(next(g["name"] for g in gpus() if g["uuid"] == uuid))
    [spec] = expand("gpu-vllm", {}, {
        "model": "gemma3-270m", "backend": "vllm", "weights": "dummy", "precision": precision,
        "batch_size": 4, "task": "longform", "prompt_variant": "default", "hardware": hw, "max_new_tokens": 64})
    sampler = NvmlSampler(uuid)
    sampler.start()
    runner = TrialRunner(sampler, GenerationConfig(), str(tmp_path), device="cuda",
                         measurement=MeasurementConfig(idle_s=1.0, idle_settle_s=0.5, idle_settle_max_s=5.0),
                         backend_settings={"vllm": VllmConfig(max_num_seqs=4, gpu_memory_utilization=0.5)})
    try:
        runner.load(spec, model)
        row = runner.run(spec, model, {}, last=True).row
    finally:
        sampler.close()
    assert row["status"] == "ok", row["error"]
    assert row["output_tokens"] == 4 * 64  # dummy weights ignore EOS
    assert row["ttft_source"] == "vllm_request_metrics", row.get("timing_reason")
    assert 0 < row["ttft_s"] < row["duration_s"] and row["tpot_s"] > 0
    assert row["cached_prompt_tokens"] == 0
    assert row["energy_source"] in ("counter", "polled") and row["energy_j"] > 0
    assert row["prefill_j"] is not None and row["decode_j"] is not None
