"""TrialRunner without Ray: the real transformers backend on the tiny Llama, a fake sampler.

The fake sampler returns a known energy for every window and shares it among the window's
named parts by duration, so every derived figure in the row (J/token, J/request, the
prefill/decode split, the idle-subtracted energy, ...) can be checked exactly. A sampler
that breaks gives a row with null energy and the reason, never a failed trial; a trial
that breaks gives a row, never an exception.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest

from energyray import roofline
from energyray.backends.base import Generation, LoadInfo
from energyray.backends.transformers import build_tiny_llama
from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec, expand
from energyray.samplers.base import WindowReading
from energyray.trial import TrialResult, TrialRunner
from energyray.trial.baseline import Baseline

ENERGY_J = 12.5
START_TEMP_C = 40.0  # the fake's temperature at a window's start, and latest()'s default
CPU_BANDWIDTH_GBS = 20.0  # what the (patched) CPU copy-bandwidth measurement returns
GROUP_PHASES = ("idle", "load", "warmup", "response", "unload")


class FakeSampler:
    """The Sampler protocol (begin/end/latest/describe) returning ENERGY_J for every window.

    `end(label, parts)` shares the window's energy among the parts by duration (constant
    power) with source "counter_apportioned", like PollingSampler with a counter. `latest()`
    returns the temperatures given, one per call, the last one repeating.
    """

    def __init__(self, energy_j: float | None = ENERGY_J, reason: str | None = None, fail_end: bool = False,
                 fail_begin: bool = False, as_dict: bool = False, temperatures: list[float] | None = None,
                 samples_in_parts: bool = False) -> None:
        self.energy_j = energy_j
        self.reason = reason
        self.fail_end = fail_end
        self.fail_begin = fail_begin
        self.as_dict = as_dict
        self.temperatures = list(temperatures or [START_TEMP_C])
        self.samples_in_parts = samples_in_parts  # a sample in the middle of prefill and of decode
        self.open: dict[str, int] = {}
        self.labels: list[str] = []
        self.readings: dict[str, WindowReading] = {}
        self.parts_asked: dict[str, dict[str, tuple[int, int]] | None] = {}
        self.latest_calls = 0

    def describe(self) -> dict[str, Any]:
        return {"sampler": "fake", "scope": "cpu", "interval_s": 0.1}

    def latest(self) -> dict[str, Any]:
        self.latest_calls += 1
        temp = self.temperatures.pop(0) if len(self.temperatures) > 1 else self.temperatures[0]
        return {"t_ns": time.monotonic_ns(), "power_w": 10.0, "temperature_c": temp}

    def begin(self, label: str) -> int:
        if self.fail_begin:
            raise RuntimeError("no counter today")
        t = time.monotonic_ns()
        self.open[label] = t
        self.labels.append(label)
        return t

    def share(self, t0: int, t1: int, part: tuple[int, int]) -> float | None:
        """This fake's energy of a sub-window: ENERGY_J × its share of the window's duration."""
        if self.energy_j is None:
            return None
        a, b = max(part[0], t0), min(part[1], t1)
        return self.energy_j * max(0, b - a) / (t1 - t0)

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None, at_ns: int | None = None,
            from_ns: int | None = None) -> Any:
        t0 = self.open.pop(label)
        if self.fail_end:
            raise OSError("counter vanished")
        t1 = time.monotonic_ns()
        samples = [{"t_ns": t0, "power_w": 10.0, "temperature_c": START_TEMP_C},
                   {"t_ns": t1, "power_w": 20.0, "temperature_c": 45.0}]
        if self.samples_in_parts and parts:
            middles = [{"t_ns": (a + b) // 2, "power_w": 15.0, "temperature_c": 42.0}
                       for name, (a, b) in parts.items() if name in ("prefill", "decode")]
            samples = [samples[0], *middles, samples[1]]
        reading = WindowReading(
            label=label, source="counter", scope="cpu", start_ns=t0, end_ns=t1, energy_j=self.energy_j,
            reason=self.reason, avg_power_w=10.0, peak_power_w=20.0, samples=samples,
            extras={"co2_kg": 1e-6, "cpu_energy_j": 4.0, "not_a_column": 1},
            parts={name: {"energy_j": self.share(t0, t1, p), "source": "counter_apportioned",
                          "reason": self.reason if self.energy_j is None else None}
                   for name, p in (parts or {}).items()},
        )
        self.readings[label] = reading
        self.parts_asked[label] = parts
        return asdict(reading) if self.as_dict else reading


@pytest.fixture(autouse=True)
def cpu_bandwidth(monkeypatch) -> list[int]:
    """The CPU copy-bandwidth measurement (~0.4 s per runner) replaced by a known figure."""
    calls: list[int] = []

    def fake() -> float:
        calls.append(1)
        return CPU_BANDWIDTH_GBS

    monkeypatch.setattr(roofline, "measure_copy_bandwidth_gbs", fake)
    return calls


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


def make_runner(sampler: Any, tmp_path: Path, measurement: MeasurementConfig | None = None, **gen: Any) -> TrialRunner:
    generation = GenerationConfig(**{"ignore_eos": True, "warmup_runs": 1, "warmup_new_tokens": 2, **gen})
    return TrialRunner(sampler, generation, str(tmp_path), device="cpu", seed=0, node="test-node",
                       env={"hostname": "test-node"}, measurement=measurement)


def run_one(runner: TrialRunner, spec: TrialSpec, model: ModelConfig) -> TrialResult:
    runner.load(spec, model)
    try:
        return runner.run(spec, model, CONFIG)
    finally:
        runner.unload()


def trial_samples(result: TrialResult) -> list[dict[str, Any]]:
    """The samples of the trial's own window (not those of the group phases queued with it)."""
    return [s for s in result.samples if s["phase"] not in GROUP_PHASES]


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
    assert row["decode_steps"] == 4
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
    assert row["temperature_start_c"] == START_TEMP_C and row["temperature_max_c"] == 45.0
    assert row["samples_n"] == 2
    assert row["window_s"] == pytest.approx(sampler.readings[f"trial:{spec.trial_id}"].duration_s)
    assert row["short_window"] is False
    # only the known extras are copied into the row
    assert row["co2_kg"] == 1e-6 and row["cpu_energy_j"] == 4.0
    assert "not_a_column" not in row
    # no duplicate or prose columns: duration_s and ttft_s say it, the column docs the group rule
    assert not {"latency_s", "prefill_s", "group_rule"} & set(row)


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
    assert env["architecture"]["weight_bytes"] > 0


def test_load_and_warmup_windows_are_measured(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path)
    spec = make_spec()
    row = run_one(runner, spec, model).row
    # no idle window by default (measurement.idle_s=0); unload after the trial, by run_one
    assert sampler.labels == ["load", "warmup", f"trial:{spec.trial_id}", "response", "unload"]
    assert sampler.open == {}
    assert row["load_j"] == ENERGY_J and row["load_energy_reason"] is None
    assert row["load_source"] == "counter"
    assert row["warmup_j"] == ENERGY_J
    assert row["load_s"] > 0 and row["warmup_s"] > 0
    assert row["response_j"] == ENERGY_J and row["response_source"] == "counter"
    assert row["prepare_s"] >= 0


def test_no_warmup_runs_means_no_warmup_window(model, tmp_path):
    sampler = FakeSampler()
    row = run_one(make_runner(sampler, tmp_path, warmup_runs=0), make_spec(), model).row
    assert "warmup" not in sampler.labels
    assert row["warmup_runs"] == 0 and row["warmup_j"] == 0.0  # none ran: exactly 0 J, not unknown
    assert row["status"] == "ok"


def test_samples_are_tagged_and_phased(model, tmp_path):
    spec = make_spec()
    result = run_one(make_runner(FakeSampler(samples_in_parts=True), tmp_path), spec, model)
    assert all(s["trial_id"] == spec.trial_id and s["source"] == "fake" for s in result.samples)
    # the window's edges (the sampler's own calls, tokenising) lie outside generate; the
    # sample in the middle of prefill is before the first token, the one in decode after it
    assert [s["phase"] for s in trial_samples(result)] == ["trial_edge", "prefill", "decode", "trial_edge"]
    assert result.row["samples_n"] == 4


def test_sampler_returning_a_dict_is_accepted(model, tmp_path):
    """What RemoteSampler hands back across Ray: asdict(WindowReading)."""
    row = run_one(make_runner(FakeSampler(as_dict=True), tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] == ENERGY_J
    assert row["j_per_token"] == pytest.approx(ENERGY_J / row["output_tokens"])
    assert row["prefill_j"] is not None and row["decode_j"] is not None  # parts survive asdict


def test_cpu_max_new_tokens_applies_when_the_spec_has_none(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path, cpu_max_new_tokens=3), make_spec(max_new_tokens=None), model).row
    assert row["max_new_tokens_used"] == 3
    assert row["output_tokens"] == 2 * 3


@pytest.mark.extra("quant")
def test_nf4_precision_is_resolved(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(precision="nf4"), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["precision_requested"] == "nf4"
    assert row["precision"] == "nf4"
    assert (row["quant_method"], row["quant_type"], row["double_quant"]) == ("bitsandbytes", "nf4", False)


@pytest.mark.extra("quant")
def test_double_quantisation_is_its_own_trial_and_recorded_on_the_row(model, tmp_path):
    plain, dq = make_spec(precision="nf4"), make_spec(precision="nf4-dq")
    assert plain.trial_id != dq.trial_id and plain.load_key != dq.load_key
    row = run_one(make_runner(FakeSampler(), tmp_path), dq, model).row
    assert row["status"] == "ok", row.get("error")
    assert row["precision_requested"] == row["precision"] == "nf4-dq"
    assert (row["quant_method"], row["quant_type"], row["double_quant"]) == ("bitsandbytes", "nf4", True)


def test_unquantised_rows_say_so(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(), model).row
    assert (row["quant_method"], row["quant_type"], row["double_quant"]) == (None, None, None)


def test_the_transformers_section_reaches_the_backend_and_rows_say_which_attention(model, tmp_path):
    from energyray.config import TransformersConfig

    runner = make_runner(FakeSampler(), tmp_path)
    runner.backend_settings = {"transformers": TransformersConfig(cudnn_attention=None)}
    runner.load(make_spec(), model)
    assert runner.backend.options.cudnn_attention is None
    row = runner.run(make_spec(), model, CONFIG, last=True).row
    assert row["cudnn_attention"] is None  # on a CPU: no cuDNN attention to speak of
    assert row["attention_implementation"] in ("sdpa", "eager")
    assert row["process_reusable"] is True and row["unload_memory_left_mb"] is None  # CPU: nothing on a GPU
    assert row["worker_group_index"] == 0


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
    assert row.get("prefill_j") is None and row.get("decode_j") is None


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
    assert row["temperature_start_c"] is None


def test_reading_without_energy_is_not_measurable(model, tmp_path):
    sampler = FakeSampler(energy_j=None, reason="counter wrapped twice")
    row = run_one(make_runner(sampler, tmp_path), make_spec(), model).row
    assert row["status"] == "ok"
    assert row["energy_j"] is None
    assert row["energy_source"] == "not_measurable"
    assert row["energy_reason"] == "counter wrapped twice"
    assert row["j_per_token"] is None
    # the parts of an unknown window are unknown too, with its reason
    for part in ("prefill", "decode"):
        assert row[f"{part}_j"] is None
        assert row[f"{part}_source"] == "not_measurable"
        assert row[f"{part}_energy_reason"] == "counter wrapped twice"
    assert row["energy_idle_subtracted_j"] is None


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
        t = time.monotonic_ns()
        return Generation(input_tokens=10, output_tokens=0, start_ns=t, end_ns=t + 500_000_000,
                          lengths=[0] * len(prompts), step_ns=[])

    def decode(self, gen: Generation) -> list[str | None]:
        return ["Paris", "8"]

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
    assert sampler.parts_asked[f"trial:{spec.trial_id}"] is None  # no generation: no parts


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


def test_warmup_length_defaults_to_16_tokens_capped_at_the_trials(model, tmp_path):
    """generation.warmup_new_tokens (16 by default) is the warmup's length, never longer than the
    trial's own; null is the trial's length. The row says how long the warmup before it was."""
    assert GenerationConfig().warmup_new_tokens == 16
    lengths: list[int] = []
    runner = TrialRunner(FakeSampler(), GenerationConfig(ignore_eos=True), str(tmp_path), device="cpu", seed=0,
                         node="test-node", env={"hostname": "test-node"})
    short, long = make_spec(max_new_tokens=4), make_spec(max_new_tokens=24)
    runner.load(short, model)
    real = runner.backend.generate

    def counting(prompts: Any, new_tokens: int, *a: Any, **kw: Any) -> Any:
        lengths.append(new_tokens)
        return real(prompts, new_tokens, *a, **kw)

    runner.backend.generate = counting
    try:
        rows = [runner.run(s, model, CONFIG).row for s in (short, long, long)]
        runner.generation.warmup_new_tokens = None  # the trial's own length
        rows.append(runner.run(make_spec(max_new_tokens=24, batch_size=3), model, CONFIG).row)
    finally:
        runner.unload()
    assert [r["status"] for r in rows] == ["ok"] * 4, [r["error"] for r in rows]
    assert lengths == [4, 4, 16, 24, 24, 24, 24]  # warmup, trial; warmup, trial, trial; warmup, trial
    assert [r["warmup_new_tokens"] for r in rows] == [4, 16, 0, 24]  # 0: no warmup before that trial


def test_load_records_how_long_it_waited_for_the_backend_import(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(), model).row
    assert row["import_s"] is not None and 0 <= row["import_s"] < 60  # imported already: about 0


# -- measurement phases ------------------------------------------------------------------------
def test_idle_is_measured_and_subtracted(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path, MeasurementConfig(idle_s=0.05, idle_settle_s=0.0))
    spec = make_spec()
    row = run_one(runner, spec, model).row
    assert row["status"] == "ok", row.get("error")
    assert sampler.labels[:2] == ["idle", "load"]  # before the load: model not loaded
    assert row["idle_j"] == ENERGY_J and row["idle_source"] == "counter"
    assert row["idle_s"] >= 0.05
    # the sampler's mean power over its own idle window (not the runner's timing of the sleep)
    assert row["idle_power_w"] == sampler.readings["idle"].avg_power_w
    assert row["idle_temperature_c"] == START_TEMP_C  # the coolest idle sample
    assert "0.05 s window" in row["idle_method"]
    assert row["energy_idle_subtracted_j"] == pytest.approx(row["energy_j"] - row["idle_power_w"] * row["window_s"])


def test_no_idle_by_default(model, tmp_path):
    sampler = FakeSampler()
    runner = TrialRunner(sampler, GenerationConfig(ignore_eos=True, warmup_runs=0), str(tmp_path), device="cpu")
    row = run_one(runner, make_spec(), model).row
    assert row["status"] == "ok", row.get("error")
    assert "idle" not in sampler.labels
    assert row["idle_j"] is None and row["idle_power_w"] is None
    assert row["idle_source"] == "not_measurable"
    assert "idle_s=0" in row["idle_energy_reason"]
    assert row["energy_idle_subtracted_j"] is None  # no baseline: not subtracted, not 0


def test_group_phases_are_shared_and_unload_is_on_the_last_row(model, tmp_path):
    sampler = FakeSampler()
    runner = make_runner(sampler, tmp_path, MeasurementConfig(idle_s=0.02, idle_settle_s=0.0))
    first, last = make_spec(), make_spec(batch_size=1)
    runner.load(first, model)
    results = [runner.run(first, model, CONFIG), runner.run(last, model, CONFIG, last=True)]
    rows = [r.row for r in results]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert runner.backend is None  # unloaded by run(last=True)
    assert sampler.labels.count("unload") == 1 and sampler.labels[-1] == "unload"
    # idle and load: measured once, repeated on each row of the group
    assert sampler.labels.count("idle") == 1 and sampler.labels.count("load") == 1
    for row in rows:
        assert row["idle_j"] == ENERGY_J and row["load_j"] == ENERGY_J
        assert "group_rule" not in row  # the rule is in the column docs, not on every row
    # unload: on the last row only
    assert rows[0]["unload_j"] is None
    assert "last trial" in rows[0]["unload_energy_reason"]
    assert rows[1]["unload_j"] == ENERGY_J and rows[1]["unload_source"] == "counter"
    assert rows[1]["unload_s"] > 0
    # the group phases' samples come with the first trial (unload's with the last), labelled
    phases = [{s["phase"] for s in r.samples} for r in results]
    assert {"idle", "load", "warmup", "response"} <= phases[0]
    assert phases[0] & {"idle", "load"} and not phases[1] & {"idle", "load"}
    assert "unload" in phases[1] and "unload" not in phases[0]
    idle = [s for s in results[0].samples if s["phase"] == "idle"]
    assert len(idle) == 2 and all(s["trial_id"] == first.trial_id and s["source"] == "fake" for s in idle)
    assert all(s["trial_id"] == last.trial_id for s in results[1].samples)


def test_prefill_and_decode_share_the_window(model, tmp_path):
    sampler = FakeSampler()
    spec = make_spec(batch_size=1)
    row = run_one(make_runner(sampler, tmp_path), spec, model).row
    assert row["status"] == "ok", row.get("error")
    label = f"trial:{spec.trial_id}"
    parts, reading = sampler.parts_asked[label], sampler.readings[label]
    assert parts is not None and set(parts) == {"prefill", "decode"}  # batch 1: no steady window
    (p0, p1), (d0, d1) = parts["prefill"], parts["decode"]
    assert reading.start_ns <= p0 < p1 == d0 < d1 <= reading.end_ns  # split at the first token
    assert (p1 - p0) / 1e9 == pytest.approx(row["ttft_s"]) and (d1 - d0) / 1e9 == pytest.approx(row["decode_s"])
    assert row["prefill_j"] == pytest.approx(sampler.share(reading.start_ns, reading.end_ns, parts["prefill"]))
    assert row["decode_j"] == pytest.approx(sampler.share(reading.start_ns, reading.end_ns, parts["decode"]))
    assert row["prefill_j"] + row["decode_j"] == pytest.approx(
        ENERGY_J * (d1 - p0) / (reading.end_ns - reading.start_ns))
    assert row["prefill_j"] + row["decode_j"] <= ENERGY_J
    assert row["prefill_source"] == "counter_apportioned" and row["decode_source"] == "counter_apportioned"
    assert "prefill_energy_reason" not in row and "decode_energy_reason" not in row
    assert row["decode_avg_power_w"] == pytest.approx(row["decode_j"] / row["decode_s"])
    assert row["j_per_output_token_decode"] == pytest.approx(row["decode_j"] / (row["output_tokens"] - 1))
    assert "steady_j" not in row and "steady_s" not in row


def test_steady_window_of_a_batch_with_ignore_eos(model, tmp_path):
    sampler = FakeSampler()
    spec = make_spec(batch_size=3, max_new_tokens=4)
    row = run_one(make_runner(sampler, tmp_path, ignore_eos=True), spec, model).row
    assert row["status"] == "ok", row.get("error")
    label = f"trial:{spec.trial_id}"
    parts, reading = sampler.parts_asked[label], sampler.readings[label]
    assert parts is not None and set(parts) == {"prefill", "decode", "steady"}
    s0, s1 = parts["steady"]
    assert s0 == parts["decode"][0] and s0 < s1 <= parts["decode"][1]
    assert row["steady_tokens"] == 3 * (4 - 1)
    assert row["steady_s"] == pytest.approx((s1 - s0) / 1e9)
    assert row["steady_j"] == pytest.approx(sampler.share(reading.start_ns, reading.end_ns, parts["steady"]))
    assert row["steady_source"] == "counter_apportioned"
    assert row["steady_j_per_token"] == pytest.approx(row["steady_j"] / row["steady_tokens"])


def test_cooldown_waits_for_the_idle_temperature(model, tmp_path):
    # idle samples are at 40 °C: within 2 °C means at most 42 °C; two hot readings, then cool
    sampler = FakeSampler(temperatures=[60.0, 55.0, 41.0])
    m = MeasurementConfig(idle_s=0.01, idle_settle_s=0.0, cooldown_to_idle_c=2.0, cooldown_max_s=30.0)
    row = run_one(make_runner(sampler, tmp_path, m, warmup_runs=0), make_spec(), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["cooldown_reached"] is True
    assert sampler.latest_calls >= 3  # polled until the third reading (then temperature_start_c)
    assert row["temperature_start_c"] == 41.0
    assert 0 < row["cooldown_s"] < 30.0


def test_cooldown_gives_up_at_its_maximum(model, tmp_path):
    sampler = FakeSampler(temperatures=[80.0])  # never cools down
    m = MeasurementConfig(idle_s=0.01, idle_settle_s=0.0, cooldown_to_idle_c=2.0, cooldown_max_s=0.05)
    row = run_one(make_runner(sampler, tmp_path, m, warmup_runs=0), make_spec(), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["cooldown_reached"] is False
    assert row["cooldown_s"] >= 0.05
    assert row["temperature_start_c"] == 80.0


def test_cooldown_without_idle_temperature_is_not_judged(model, tmp_path):
    """No idle window, no baseline temperature: the wait is skipped and says so (None)."""
    sampler = FakeSampler(temperatures=[80.0])
    m = MeasurementConfig(idle_s=0.0, cooldown_to_idle_c=2.0, cooldown_max_s=30.0)
    row = run_one(make_runner(sampler, tmp_path, m, warmup_runs=0), make_spec(), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["cooldown_reached"] is None
    assert row["cooldown_s"] < 1.0


@pytest.mark.parametrize("spin", [False, True])
def test_cooldown_spin_keeps_the_thread_busy_through_the_pause(spin):
    """measurement.cooldown_spin: the pause is spent on the CPU (a vCPU that idled runs a launch-bound
    decode slower), not asleep; the recorded cooldown_s is the same either way."""
    baseline = Baseline(MeasurementConfig(idle_s=0.0, cooldown_s=0.3, cooldown_spin=spin), windows=None)
    cpu0 = time.thread_time()
    fields = baseline.cooldown()
    cpu_s = time.thread_time() - cpu0
    assert 0.3 <= fields["cooldown_s"] < 0.6 and fields["cooldown_reached"] is None
    assert (cpu_s > 0.5 * fields["cooldown_s"]) if spin else (cpu_s < 0.05)  # busy, or asleep


def _expected_roofline_s_per_token(row: dict[str, Any], batch: int, gbs: float) -> float:
    arch = json.loads(row["env_json"])["architecture"]
    kv = arch["kv_bytes_per_position"] * batch * (row["input_tokens"] / batch + row["decode_steps"] / 2)
    return (arch["weight_bytes"] + kv) / (gbs * 1e9) / batch


def test_roofline_with_configured_bandwidth(model, tmp_path, cpu_bandwidth):
    m = MeasurementConfig(idle_s=0.0, memory_bandwidth_gbs=50.0)
    spec = make_spec()
    row = run_one(make_runner(FakeSampler(), tmp_path, m), spec, model).row
    assert row["status"] == "ok", row.get("error")
    assert cpu_bandwidth == []  # configured: the CPU copy bandwidth is not measured
    assert row["roofline_bandwidth_gbs"] == 50.0
    assert row["roofline_bandwidth_source"] == "config measurement.memory_bandwidth_gbs"
    assert row["roofline_s_per_token"] > 0
    assert row["roofline_s_per_token"] == pytest.approx(_expected_roofline_s_per_token(row, spec.batch_size, 50.0))
    assert row["roofline_s_per_step"] == pytest.approx(row["roofline_s_per_token"] * spec.batch_size)
    assert row["roofline_efficiency"] == pytest.approx(row["roofline_s_per_step"] / row["tpot_s"])
    assert row["roofline_j_per_token"] == pytest.approx(row["roofline_s_per_token"] * row["decode_avg_power_w"])


def test_roofline_on_cpu_measures_bandwidth_once_per_runner(model, tmp_path, cpu_bandwidth):
    runner = make_runner(FakeSampler(), tmp_path)
    spec = make_spec()
    runner.load(spec, model)
    rows = [runner.run(spec, model, CONFIG).row, runner.run(spec, model, CONFIG, last=True).row]
    runner.load(spec, model)  # a second group on the same worker
    rows.append(runner.run(spec, model, CONFIG, last=True).row)
    assert len(cpu_bandwidth) == 1
    for row in rows:
        assert row["status"] == "ok", row.get("error")
        assert row["roofline_bandwidth_gbs"] == CPU_BANDWIDTH_GBS
        assert row["roofline_bandwidth_source"].startswith("measured")
        assert row["roofline_s_per_token"] == pytest.approx(
            _expected_roofline_s_per_token(row, spec.batch_size, CPU_BANDWIDTH_GBS))


def test_roofline_without_known_bandwidth_says_why(model, tmp_path):
    row = run_one(make_runner(FakeSampler(), tmp_path), make_spec(hardware="mystery-gpu"), model).row
    assert row["status"] == "ok", row.get("error")
    assert row["roofline_bandwidth_gbs"] is None
    assert "memory_bandwidth_gbs" in row["roofline_bandwidth_source"]
    assert row["roofline_s_per_token"] is None and row["roofline_efficiency"] is None


def test_roofline_without_a_sampler(model, tmp_path):
    m = MeasurementConfig(idle_s=0.0, memory_bandwidth_gbs=50.0)
    row = run_one(make_runner(None, tmp_path, m), make_spec(), model).row
    assert row["status"] == "ok", row.get("error")
    assert row.get("roofline_bandwidth_source") == "config measurement.memory_bandwidth_gbs"
    assert row.get("roofline_s_per_token") is not None and row["roofline_s_per_token"] > 0


class _PowerCurve:
    """latest() follows power_at(seconds since creation); nothing else is needed to settle."""

    def __init__(self, power_at: Any) -> None:
        self.t0 = time.monotonic()
        self.power_at = power_at

    def latest(self) -> dict[str, Any]:
        return {"power_w": self.power_at(time.monotonic() - self.t0)}


def _settle(tmp_path: Path, power_at: Any, max_s: float) -> tuple[float, bool | None]:
    runner = make_runner(_PowerCurve(power_at), tmp_path,
                         MeasurementConfig(idle_s=1.0, idle_settle_s=0.2, idle_settle_max_s=max_s))
    return runner.baseline.settle()


def test_settle_waits_while_power_falls_then_stops(tmp_path):
    # 120 W falling to 80 W over the first 2.5 s, then flat: settles after it levels off
    waited, settled = _settle(tmp_path, lambda t: max(80.0, 120.0 - 16.0 * t), max_s=10.0)
    assert settled is True
    assert 2.5 <= waited < 6.0


def test_settle_gives_up_at_the_limit_when_power_keeps_falling(tmp_path):
    waited, settled = _settle(tmp_path, lambda t: 200.0 * 0.9 ** t, max_s=3.0)
    assert settled is False
    assert 3.0 <= waited < 4.5


def test_settle_without_a_power_series_is_unknown(tmp_path):
    waited, settled = _settle(tmp_path, lambda t: None, max_s=5.0)
    assert settled is None
    assert waited < 2.0


@pytest.mark.parametrize("scope, idles", [("slot", 1), ("group", 2)])
def test_idle_scope_slot_measures_the_baseline_once_per_device(model, tmp_path, scope, idles):
    """idle_scope=slot: the device's first group measures idle; a later group (a fresh runner
    on the same sampler, as the next worker on a slot is) reuses it, and says so."""
    class Remembering(FakeSampler):  # the sampler actor's memory, which outlives workers
        def __init__(self):
            super().__init__()
            self.memory = {}

        def recall(self, key):
            return self.memory.get(key)

        def remember(self, key, value):
            self.memory[key] = value

    sampler = Remembering()
    m = MeasurementConfig(idle_s=0.02, idle_settle_s=0.0, idle_scope=scope)
    rows = [run_one(make_runner(sampler, tmp_path, m), make_spec(), model).row for _ in range(2)]
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert sampler.labels.count("idle") == idles
    assert [r["idle_reused"] for r in rows] == ([False, True] if scope == "slot" else [False, False])
    assert rows[1]["idle_j"] == rows[0]["idle_j"] == ENERGY_J
    assert rows[1]["idle_power_w"] == rows[0]["idle_power_w"] is not None
    if scope == "slot":
        assert rows[1]["idle_measured_at"] == rows[0]["idle_measured_at"]
        assert "measured once per device" in rows[1]["idle_method"]
