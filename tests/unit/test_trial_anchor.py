"""TrialRunner anchors windows too short for the energy counter (measurement.anchor_short_windows).

The device is a real-time replay of a trace whose polled power reads a steady 200 W while its
counter climbs at 250 W (polled power 20 % under the truth, as NVML's 10 Hz power is on bursty
launch-bound work). The tiny Llama's CPU trials last tens of ms, far under the counter's 1 s, so
`end` integrates the polled power (200 W × window) and flags the window short; anchoring must
give 250 W × window, from the counter's delta over a >= 1 s span reaching back before the trial.
"""

from __future__ import annotations

import pytest

from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig
from energyray.grid import expand
from energyray.samplers.base import now_ns
from energyray.samplers.replay import ReplaySampler
from energyray.trial import TrialRunner

POLLED_W, TRUE_W = 200.0, 250.0


class RealClockReplay(ReplaySampler):
    def _tick(self) -> None:
        self.advance_to(max(self.clock_ns, now_ns()))


def device() -> RealClockReplay:
    t0 = now_ns() - 3_000_000_000  # 3 s of history before the runner starts
    rows = [{"t_ns": t0 + i * 50_000_000, "power_w": POLLED_W, "energy_j": 1e6 + TRUE_W * i * 0.05}
            for i in range(2400)]  # 20 Hz, 2 min
    s = RealClockReplay(rows, counter_period_s=0.1)
    s.start()
    return s


pytestmark = pytest.mark.usefixtures("no_bandwidth_probe")


@pytest.fixture(scope="module")
def model(tiny_model: ModelConfig) -> ModelConfig:
    return tiny_model


def run(model: ModelConfig, tmp_path, anchor: bool) -> dict:
    (spec,) = expand("unit", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                      batch_size=1, task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=4))
    m = MeasurementConfig(idle_s=0.0, idle_settle_s=0.0, idle_settle_max_s=0.0, anchor_short_windows=anchor)
    runner = TrialRunner(device(), GenerationConfig(ignore_eos=True, warmup_runs=1), str(tmp_path),
                         device="cpu", measurement=m)
    runner.load(spec, model)
    return runner.run(spec, model, {}, last=True).row


def test_a_short_trial_window_gets_the_counters_energy_over_a_span_around_it(model, tmp_path):
    row = run(model, tmp_path, anchor=True)
    assert row["status"] == "ok", row["error"]
    assert row["short_window"] is True and row["window_s"] < 1.0
    assert row["energy_source"] == "counter_apportioned" and row["energy_reason"] is None
    assert row["energy_j"] == pytest.approx(TRUE_W * row["window_s"], rel=0.02)
    assert row["energy_polled_j"] == pytest.approx(POLLED_W * row["window_s"], rel=0.02)
    assert row["energy_anchor_scale"] == pytest.approx(TRUE_W / POLLED_W, rel=0.02)
    assert row["energy_anchor_span_s"] >= 1.0
    # the phases inside the window are rescaled with it, and so are the short group phases
    assert row["prefill_source"] == row["decode_source"] == "counter_apportioned"
    assert row["prefill_j"] + row["decode_j"] == pytest.approx(TRUE_W * row["duration_s"], rel=0.02)
    assert row["load_source"] == "counter_apportioned"
    assert row["load_j"] == pytest.approx(TRUE_W * row["load_s"], rel=0.1)


def test_off_keeps_the_polled_figure(model, tmp_path):
    row = run(model, tmp_path, anchor=False)
    assert row["status"] == "ok", row["error"]
    assert row["energy_source"] == "polled" and row["short_window"] is True
    assert row["energy_j"] == pytest.approx(POLLED_W * row["window_s"], rel=0.02)
    assert row["energy_anchor_scale"] is None


def test_the_sampler_actor_anchors_readings_passed_as_dicts():
    from energyray.orchestrator.actors import SamplerHost

    host = SamplerHost(cfg=None)
    host.sampler = device()
    host.sampler.begin("w")
    reading = host.end("w")  # a dict, as it crosses Ray
    assert reading["short_window"] and reading["source"] == "polled"
    (out,) = host.anchor([reading])
    assert out["source"] == "counter_apportioned" and out["extras"]["anchor_scale"] == pytest.approx(TRUE_W / POLLED_W, rel=0.02)
    host.sampler = None  # no sampler: readings come back as they went
    assert host.anchor([reading]) == [reading]
