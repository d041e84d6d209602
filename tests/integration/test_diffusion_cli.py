"""The diffusion sweep through the CLI on a CPU: the tiny random-init pipeline (model=sd-tiny),
a real local Ray, the real CPU sampler; its rows, samples with the image phases, and the PNG
images saved under the store."""

from __future__ import annotations

import time

import pytest

from energyray.store import Store

pytest.importorskip("diffusers", reason="needs the diffusion extra: pip install 'energyray[diffusion]'")

TINY = ["sweep=diffusion", "model=sd-tiny", "precision=fp32", "resolution=32", "inference_steps=2",
        "sweep.repeats=1", "requests=1", "batch_size=2", "generation.warmup_runs=0", "measurement.idle_s=0", "sampler.interval_s=0.01"]


def test_a_tiny_diffusion_sweep_runs_end_to_end(cli, tmp_path, shared_cache):
    store = tmp_path / "store"
    t0 = time.monotonic()
    r = cli([*TINY, f"store.path={store}", f"cache_dir={shared_cache}"], tmp_path / "hydra")
    took = time.monotonic() - t0
    assert r.returncode == 0, r.explain()
    assert "Traceback" not in r.output, r.explain()
    trials = Store(store).read("trials")
    assert len(trials) == 1, trials
    row = trials.iloc[0]
    assert row["status"] == "ok", row["error"]
    assert (row["backend"], row["model"], row["task"]) == ("diffusers", "sd-tiny", "image")
    assert row["images"] == 2 and row["denoise_steps"] == 2 and row["image_width_px"] == 32
    for col in ("j_per_image", "j_per_request", "images_per_s", "s_per_step", "denoise_s", "peak_memory_mb"):
        assert row[col] > 0, col
    assert row["image_note"] == "random weights: the images are noise"
    images = sorted(p.name for p in (store / row["image_dir"]).glob("*.png"))
    assert images == ["img-0-0.png", "img-0-1.png"]
    samples = Store(store).read("samples")
    phases = set(samples["phase"])
    assert {"denoise", "load"} <= phases, phases
    assert samples.loc[samples["phase"] == "denoise", "denoise_step"].notna().all()
    print(f"tiny diffusion sweep through the CLI: {took:.1f} s")
