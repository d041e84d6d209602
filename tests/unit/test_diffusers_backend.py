"""The diffusers backend without Ray: the real tiny random-init pipeline (conf/model/sd-tiny.yaml)
through TrialRunner with a fake sampler that shares a known energy among the window's parts by
duration and gives a sample in the middle of every part, so that the image row's figures (J per
image, per step, per phase), the samples' phases and denoising steps, and the saved images can be
checked. The catalogue's full-size pipelines are built on the meta device (no memory, no
download) and their parameter counts compared with the catalogue's."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
import yaml

from energyray import paths, plan, schema
from energyray.config import GenerationConfig, ModelConfig
from energyray.errors import ConfigError
from energyray.grid import TrialSpec, expand
from energyray.samplers.base import WindowReading
from energyray.trial import TrialRunner

diffusers_backend = pytest.importorskip("energyray.backends.diffusers", reason="needs diffusers")
ENERGY_J = 30.0


class PartsSampler:
    """ENERGY_J per window, shared among its parts by duration; a sample at each edge and in
    the middle of every part."""

    def describe(self) -> dict[str, Any]:
        return {"sampler": "fake", "scope": "cpu"}

    def latest(self) -> dict[str, Any]:
        return {"t_ns": time.monotonic_ns(), "power_w": 10.0, "temperature_c": 40.0}

    def begin(self, label: str) -> int:
        self.t0 = time.monotonic_ns()
        return self.t0

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None, at_ns: int | None = None,
            from_ns: int | None = None) -> WindowReading:
        t0, t1 = from_ns or self.t0, at_ns or time.monotonic_ns()
        mids = [{"t_ns": (a + b) // 2, "power_w": 15.0} for a, b in (parts or {}).values()]
        samples = [{"t_ns": t0, "power_w": 10.0}, *sorted(mids, key=lambda s: s["t_ns"]), {"t_ns": t1, "power_w": 12.0}]
        return WindowReading(label=label, source="counter", scope="cpu", start_ns=t0, end_ns=t1, energy_j=ENERGY_J,
                             avg_power_w=12.0, peak_power_w=15.0, samples=samples, parts={
                                 name: {"energy_j": ENERGY_J * (b - a) / (t1 - t0), "source": "counter_apportioned"}
                                 for name, (a, b) in (parts or {}).items()})


def catalogue(name: str) -> ModelConfig:
    return ModelConfig(**yaml.safe_load((paths.conf_dir() / "model" / f"{name}.yaml").read_text()))


def image_spec(**over: Any) -> TrialSpec:
    point = dict(model="sd-tiny", backend="diffusers", weights="dummy", precision="fp32", batch_size=2, task="image",
                 prompt_variant="default", hardware="cpu", max_new_tokens=None, requests=2, inference_steps=3,
                 resolution=32, guidance_scale=None)
    point.update(over)
    (spec,) = expand("diffusion", {}, point)
    return spec


@pytest.fixture(scope="module")
def result(tmp_path_factory) -> Any:
    store = tmp_path_factory.mktemp("store")
    runner = TrialRunner(PartsSampler(), GenerationConfig(warmup_runs=1), str(store / "cache"), device="cpu",
                         backend_settings={"store_path": str(store)})
    model, spec = catalogue("sd-tiny"), image_spec()
    runner.load(spec, model)
    try:
        return runner.run(spec, model, {}, last=True), spec, store
    finally:
        runner.unload()


def test_an_image_trial_has_its_phases_energy_and_images(result):
    res, spec, store = result
    row = res.row
    assert row["status"] == "ok", row.get("error")
    assert row["backend"] == "diffusers" and row["inference_steps"] == 3 and row["resolution"] == 32
    assert row["images"] == 4 and row["requests"] == 2  # 2 prompts x batch_size 2
    assert row["denoise_steps"] == 3 and row["image_width_px"] == row["image_height_px"] == 32
    assert row["guidance_scale_used"] == 7.5  # generation.guidance_scale, the grid set none
    assert row["energy_j"] == ENERGY_J
    assert row["j_per_image"] == pytest.approx(ENERGY_J / 4)
    assert row["j_per_request"] == pytest.approx(ENERGY_J / 2)
    for part in ("text_encode", "denoise", "vae_decode"):
        assert row[f"{part}_j"] > 0 and row[f"{part}_s"] > 0 and row[f"{part}_source"] == "counter_apportioned"
    assert row["text_encode_j"] + row["denoise_j"] + row["vae_decode_j"] <= ENERGY_J + 1e-9
    assert row["j_per_step"] == pytest.approx(row["denoise_j"] / 6)  # 3 steps x 2 prompts
    assert row["s_per_step"] == pytest.approx(row["denoise_s"] / 6)
    assert row["images_per_s"] == pytest.approx(4 / row["duration_s"])
    steps_s = json.loads(row["denoise_step_s_json"])
    steps_j = json.loads(row["denoise_step_j_json"])
    assert [len(p) for p in steps_s] == [len(p) for p in steps_j] == [3, 3]
    assert sum(map(sum, steps_j)) == pytest.approx(row["denoise_j"], rel=1e-4)
    assert row["warmup_runs"] == 1 and row["warmup_j"] is not None
    assert row["image_note"] == "random weights: the images are noise"
    assert row["accuracy"] is None and row["accuracy_reason"].startswith("random weights")
    assert row["unload_j"] is not None
    assert not set(row) - set(schema.names("trials")), set(row) - set(schema.names("trials"))


def test_images_are_saved_under_the_store(result):
    res, spec, store = result
    assert res.row["image_dir"] == f"artifacts/diffusion/{spec.trial_id}"
    files = sorted(p.name for p in (store / res.row["image_dir"]).iterdir())
    assert files == ["img-0-0.png", "img-0-1.png", "img-1-0.png", "img-1-1.png"]
    from PIL import Image

    assert Image.open(store / res.row["image_dir"] / files[0]).size == (32, 32)


def test_samples_carry_the_image_phases_and_steps(result):
    res, _, _ = result
    trial = [s for s in res.samples if s["phase"] not in ("idle", "load", "warmup", "response", "unload")]
    assert {"text_encode", "denoise", "vae_decode", "trial_edge"} <= {s["phase"] for s in trial}
    steps = {s["denoise_step"] for s in trial if s["phase"] == "denoise"}
    assert steps and steps <= {0, 1, 2}
    assert all(s.get("denoise_step") is None for s in trial if s["phase"] != "denoise")
    assert not {k for s in res.samples for k in s} - set(schema.names("samples"))


def test_image_axes_at_their_defaults_keep_trial_ids():
    point = dict(model="m", backend="transformers", weights="dummy", precision="baseline", batch_size=1,
                 task="longform", prompt_variant="default", hardware="cpu", max_new_tokens=None)
    (old,) = expand("s", {}, point)
    (same,) = expand("s", {}, {**point, "inference_steps": None, "resolution": None, "guidance_scale": None})
    (other,) = expand("s", {}, {**point, "inference_steps": 20})
    assert old.trial_id == same.trial_id != other.trial_id


@pytest.mark.parametrize("precision", ["fp8", "int8"])
def test_fp8_and_int8_are_refused_with_the_choices(precision):
    with pytest.raises(ConfigError, match="fp32, fp16 or bf16"):
        diffusers_backend.resolve_precision(precision, "cuda")


def test_precisions_resolve():
    assert diffusers_backend.resolve_precision("baseline", "cuda")[0] == "fp16"
    assert diffusers_backend.resolve_precision("baseline", "cpu")[0] == "fp32"
    assert diffusers_backend.resolve_precision("bf16", "cpu")[0] == "bf16"


def test_image_axes_on_a_language_model_are_refused():
    spec = image_spec(backend="transformers", model="tiny-llama", precision="baseline")
    with pytest.raises(ConfigError, match="backend=diffusers"):
        plan.validate([spec], {"tiny-llama": catalogue("tiny-llama")})
    with pytest.raises(ConfigError, match="run it with backend=diffusers"):
        plan.validate([image_spec(backend="transformers", precision="baseline", inference_steps=None,
                                  resolution=None)], {"sd-tiny": catalogue("sd-tiny")})


PIPELINES = ["sd-1.5", "sd-2.1", "sdxl", "sd-3.5-large", "sd-tiny"]


@pytest.mark.parametrize("name", PIPELINES)
def test_catalogue_pipeline_keys_are_config_keys(name):
    """No key is a typo that diffusers or transformers would keep as a stray attribute."""
    import diffusers
    import transformers

    arch = dict(catalogue(name).architecture)
    for key in ("unet", "transformer", "vae", "text_encoder", "text_encoder_2", "text_encoder_3", "scheduler"):
        if key not in arch:
            continue
        spec = dict(arch[key])
        cls_name = spec.pop("_class_name")
        if key in ("unet", "transformer", "vae", "scheduler"):
            known = set(getattr(diffusers, cls_name).extract_init_dict(spec)[0])
        else:
            known = set(getattr(transformers, cls_name).config_class().to_dict())
        assert not set(spec) - known, f"{name}.{key}: unknown keys {sorted(set(spec) - known)}"


@pytest.mark.parametrize("name", PIPELINES)
def test_catalogue_pipelines_build_from_their_architecture(name):
    import torch

    model = catalogue(name)
    pipe, tokenizers = diffusers_backend.dummy_pipeline(model, torch.float16, "meta", 0)
    params = sum(p.numel() for c in pipe.components.values() if isinstance(c, torch.nn.Module)
                 for p in c.parameters()) / 1e9
    assert params == pytest.approx(model.params_b, rel=0.03)
    assert "tokenizer" in tokenizers

