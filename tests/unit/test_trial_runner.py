"""TrialRunner without Ray: the real transformers backend on the tiny Llama, a fake sampler.

The fake sampler returns a known energy for every window, so every derived figure in the
row (J/token, J/request, ...) can be checked exactly. A sampler that breaks gives a row with
null energy and the reason, never a failed trial; a trial that breaks gives a row, never an
exception.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from energyray.backends.base import Generation, LoadInfo
from energyray.backends.transformers import build_tiny_llama
from energyray.config import GenerationConfig, ModelConfig
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec, expand
from energyray.samplers.base import WindowReading
from energyray.trial import TrialResult, TrialRunner

ENERGY_J = 12.5


class FakeSampler:
    """The Sampler protocol's begin/end/describe, returning ENERGY_J for every window."""

    def __init__(self, energy_j: float | None = ENERGY_J, reason: str | None = None, fail_end: bool = False,
                 fail_begin: bool = False, as_dict: bool = False) -> None:
        self.energy_j = energy_j
        self.reason = reason
        self.fail_end = fail_end
        self.fail_begin = fail_begin
        self.as_dict = as_dict
        self.open: dict[str, int] = {}
        self.labels: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"sampler": "fake", "scope": "cpu", "interval_s": 0.1}

    def begin(self, label: str) -> int:
        if self.fail_begin:
            raise RuntimeError("no counter today")
        t = time.monotonic_ns()
        self.open[label] = t
        self.labels.append(label)
        return t

    def end(self, label: str) -> Any:
        t0 = self.open.pop(label)
        if self.fail_end:
            raise OSError("counter vanished")
        t1 = time.monotonic_ns()
        reading = WindowReading(
            label=label, source="counter", scope="cpu", start_ns=t0, end_ns=t1, energy_j=self.energy_j,
            reason=self.reason, avg_power_w=10.0, peak_power_w=20.0,
            samples=[{"t_ns": t0, "power_w": 10.0, "temperature_c": 40.0},
                     {"t_ns": t1, "power_w": 20.0, "temperature_c": 45.0}],
            extras={"co2_kg": 1e-6, "cpu_energy_j": 4.0, "not_a_column": 1},
        )
        return asdict(reading) if self.as_dict else reading


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    # Same path as test_transformers_backend's fixture: whichever runs first builds it.
    return build_tiny_llama(tmp_path_factory.getbasetemp() / "shared-tiny-llama")


@pytest.fixture
def model(tiny_llama_dir) -> ModelConfig:
    return ModelConfig(name="tiny-llama", path=str(tiny_llama_dir), params_b=0.000204)


def make_spec(**over: Any) -> TrialSpec:
    point = dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline", batch_size=2,
                 task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=4)
    point.update(over)
    (spec,) = expand("unit", {}, point)
    return spec


CONFIG = {"trial": {"note": "anything JSON"}, "model": {"name": "tiny-llama"}}


def make_runner(sampler: Any, tmp_path: Path, **gen: Any) -> TrialRunner:
    generation = GenerationConfig(**{"ignore_eos": True, "warmup_runs": 1, "warmup_new_tokens": 2, **gen})
    return TrialRunner(sampler, generation, str(tmp_path), device="cpu", seed=0, node="test-node",
                       env={"hostname": "test-node"})


def run_one(runner: TrialRunner, spec: TrialSpec, model: ModelConfig) -> TrialResult:
    runner.load(spec, model)
    try:
        return runner.run(spec, model, CONFIG)
    finally:
        runner.unload()


# -- a measured trial --------------------------------------------------------------------------
def test_known_energy_gives_exact_derived_figures(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path)
    spec = make_spec()
    result = run_one(runner, spec, model)
    row = result.row
    assert row["status"] == "ok", row.get("error")
    assert row["error"] is None
    assert row["trial_id"] == spec.trial_id
    assert row["output_tokens"] == spec.batch_size * 4
    assert row["max_new_tokens_used"] == 4
    assert row["input_tokens"] > 0
    assert row["energy_j"] == ENERGY_J
    assert row["energy_source"] == "counter"
    assert row["energy_scope"] == "cpu"
    assert row["energy_reason"] is None
    assert row["j_per_token"] == pytest.approx(ENERGY_J / row["output_tokens"])
    assert row["j_per_request"] == pytest.approx(ENERGY_J / spec.batch_size)
    assert row["tokens_per_s"] == pytest.approx(row["output_tokens"] / row["duration_s"])
    assert row["ttft_s"] is not None and 0 < row["ttft_s"] < row["duration_s"]
    assert row["tpot_s"] == pytest.approx((row["duration_s"] - row["ttft_s"]) / 3)
    assert row["avg_power_w"] == 10.0 and row["peak_power_w"] == 20.0
    assert row["temperature_start_c"] == 40.0 and row["temperature_max_c"] == 45.0
    assert row["samples_n"] == 2
    # only the known extras are copied into the row
    assert row["co2_kg"] == 1e-6 and row["cpu_energy_j"] == 4.0
    assert "not_a_column" not in row


def test_precision_and_device_are_resolved(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(), model).row
    assert row["precision_requested"] == "baseline"
    assert row["precision"] == "fp32"
    assert row["device"] == "cpu"
    assert row["params_b"] is not None and row["params_b"] > 0
    assert row["node"] == "test-node"
    assert "hardware" not in row  # a partition column of the store


def test_config_and_env_are_json(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(), model).row
    assert json.loads(row["config_json"]) == CONFIG
    env = json.loads(row["env_json"])
    assert env["hostname"] == "test-node"
    assert env["sampler"]["sampler"] == "fake"
    assert env["load"]["precision"] == "fp32"


def test_load_and_warmup_windows_are_measured(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path)
    spec = make_spec()
    row = run_one(runner, spec, model).row
    assert sampler.labels == ["load", "warmup", f"trial:{spec.trial_id}"]
    assert sampler.open == {}
    assert row["load_j"] == ENERGY_J and row["load_energy_reason"] is None
    assert row["warmup_j"] == ENERGY_J
    assert row["load_s"] > 0 and row["warmup_s"] > 0


def test_no_warmup_runs_means_no_warmup_window(model, tmp_path):
    sampler = FakeSampler()
    row = run_one(make_runner(sampler, tmp_path, warmup_runs=0), make_spec(), model).row
    assert "warmup" not in sampler.labels
    assert row["warmup_runs"] == 0 and row["warmup_j"] == 0.0  # none ran: exactly 0 J, not unknown
    assert row["status"] == "ok"


def test_samples_are_tagged_and_phased(model, tmp_path):
    spec = make_spec()
    result = run_one(make_runner(FakeSampler(), tmp_path), spec, model)
    assert len(result.samples) == 2
    assert all(s["trial_id"] == spec.trial_id and s["source"] == "fake" for s in result.samples)
    # the first sample is at the window's start (before the first token), the last at its end
    assert [s["phase"] for s in result.samples] == ["prefill", "decode"]


def test_sampler_returning_a_dict_is_accepted(model, tmp_path):
    """What RemoteSampler hands back across Ray: asdict(WindowReading)."""
    row = run_one(make_runner(FakeSampler(as_dict=True), tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] == ENERGY_J
    assert row["j_per_token"] == pytest.approx(ENERGY_J / row["output_tokens"])


def test_cpu_max_new_tokens_applies_when_the_spec_has_none(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path, cpu_max_new_tokens=3), make_spec(max_new_tokens=None), model).row
    assert row["max_new_tokens_used"] == 3
    assert row["output_tokens"] == 2 * 3


def test_nf4_precision_is_resolved(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(precision="nf4"), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["precision_requested"] == "nf4"
    assert row["precision"] == "nf4"


# -- energy that cannot be known ---------------------------------------------------------------
def test_sampler_failing_at_end_gives_null_energy_not_a_failure(model, tmp_path):
    sampler = FakeSampler(fail_end=True)
    row = run_one(make_runner(sampler, tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] is None
    assert row["energy_source"] == "not_measurable"
    assert "window end" in row["energy_reason"] and "counter vanished" in row["energy_reason"]
    assert row.get("j_per_token") is None
    assert row["output_tokens"] == 2 * 4  # the generation itself still counted
    assert row["load_j"] is None and "counter vanished" in row["load_energy_reason"]


def test_sampler_failing_at_begin_gives_null_energy(model, tmp_path):
    row = run_one(make_runner(FakeSampler(fail_begin=True), tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] is None
    assert row["energy_source"] == "not_measurable"
    assert "window start" in row["energy_reason"]


def test_no_sampler_gives_null_energy_with_reason(model, tmp_path):
    row = run_one(make_runner(None, tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] is None
    assert row["energy_source"] == "not_measurable"
    assert "no energy sampler" in row["energy_reason"]


def test_reading_without_energy_is_not_measurable(model, tmp_path):
    sampler = FakeSampler(energy_j=None, reason="counter wrapped twice")
    row = run_one(make_runner(sampler, tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] is None
    assert row["energy_source"] == "not_measurable"
    assert row["energy_reason"] == "counter wrapped twice"
    assert row["j_per_token"] is None


# -- failures are rows -------------------------------------------------------------------------
def test_run_before_load_is_a_failed_row(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path)
    spec = make_spec()
    result = runner.run(spec, model, CONFIG)
    assert result.row["status"] == "failed"
    assert "not loaded" in result.row["error"]
    assert result.row["trial_id"] == spec.trial_id
    assert result.row["started_at"] and result.row["finished_at"]
    assert result.samples == []
    assert sampler.labels == []  # no window was opened


def test_unsupported_precision_fails_load_with_choices(model, tmp_path):
    runner = make_runner(FakeSampler(), tmp_path)
    with pytest.raises(TrialFailed, match="nf4"):
        runner.load(make_spec(precision="int3"), model)


class _StubBackend:
    precisions = ("baseline",)

    def __init__(self, exc: Exception | None = None) -> None:
        self.exc = exc

    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Generation:
        if self.exc is not None:
            raise self.exc
        return Generation(texts=["Paris", "8"], input_tokens=10, output_tokens=0, duration_s=0.5, steps=0)

    def unload(self) -> None:
        pass


def _stub_runner(sampler: Any, tmp_path: Path, backend: _StubBackend) -> TrialRunner:
    runner = make_runner(sampler, tmp_path, warmup_runs=0)
    runner.backend = backend
    runner.load_info = LoadInfo(precision="fp32", device="cpu")
    return runner


@pytest.mark.parametrize(("exc", "status"), [
    (RuntimeError("CUDA out of memory. Tried to allocate 2 GiB"), "oom"),
    (ValueError("shapes do not match"), "failed"),
    (TrialFailed("backend gave up", status="oom"), "oom"),
])
def test_generate_error_is_a_row_and_the_window_is_closed(tmp_path, model, exc, status):
    sampler = FakeSampler()
    spec = make_spec()
    result = _stub_runner(sampler, tmp_path, _StubBackend(exc)).run(spec, model, CONFIG)
    assert result.row["status"] == status
    assert str(exc) in result.row["error"]
    assert sampler.open == {}  # the trial's window was ended despite the error
    assert sampler.labels == [f"trial:{spec.trial_id}"]


def test_zero_output_tokens_gives_no_rate_not_a_crash(tmp_path, model):
    """Scored outputs, no tokens: per-token figures are None, accuracy and J/correct known."""
    result = _stub_runner(FakeSampler(), tmp_path, _StubBackend()).run(make_spec(), model, CONFIG)
    row = result.row
    assert row["status"] == "ok", row.get("error")
    assert row["j_per_token"] is None
    assert row["tokens_per_s"] == 0
    assert row["tpot_s"] is None
    assert row["accuracy"] == 1.0  # "Paris" and "8" answer the first two QA prompts
    assert row["j_per_correct"] == pytest.approx(ENERGY_J / 2)
    assert row["output_words"] == 2
    assert row["j_per_word"] == pytest.approx(ENERGY_J / 2)


def test_failing_warmup_is_a_row_and_closes_its_window(tmp_path, model):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path, warmup_runs=1)
    runner.backend = _StubBackend(ValueError("warmup blew up"))
    runner.load_info = LoadInfo(precision="fp32", device="cpu")
    result = runner.run(make_spec(), model, CONFIG)
    assert result.row["status"] == "failed"
    assert "warmup blew up" in result.row["error"]
    assert sampler.open == {}
    assert sampler.labels == ["warmup"]


def test_warmup_runs_once_per_shape(model, tmp_path):
    """Each new shape (batch, task, variant, length) is warmed up before its first trial only."""
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path, warmup_runs=1)
    first, again, wider = make_spec(), make_spec(), make_spec(batch_size=3)
    runner.load(first, model)
    try:
        rows = [runner.run(s, model, CONFIG).row for s in (first, again, wider)]
    finally:
        runner.unload()
    assert [r["status"] for r in rows] == ["ok", "ok", "ok"]
    assert sampler.labels.count("warmup") == 2
    assert rows[0]["warmup_j"] == ENERGY_J
    assert not rows[1]["warmup_j"]  # same shape: no warmup before it
    assert rows[2]["warmup_j"] == ENERGY_J
