"""backend=openai against the fake OpenAI-compatible server shipped in energyray.testing.

The fake stands in for OpenAI's servers (the far side we cannot reach in a test); the same
backend runs against a real `transformers serve` in tests/integration/test_server_backend.py.
Covered here: the three endpoints, usage and cost, TTFT and delta timings, concurrency,
retries with backoff (429 with Retry-After, 500, timeouts, dropped streams), what is not
retried (4xx, error events, malformed streams), null energy with the reason, the optional
labelled estimate, and the API key: required for OpenAI, never in a row, a log or an error.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from typing import Any

import pytest

from energyray import prices
from energyray.backends.openai_api import (
    NOT_LOCAL_REASON,
    OpenAIBackend,
    lockstep_steps,
    preflight,
    read_key,
)
from energyray.config import ApiConfig, GenerationConfig, MeasurementConfig, ModelConfig
from energyray.errors import ConfigError, TrialFailed
from energyray.grid import expand
from energyray.testing.fake_openai import DEFAULT_TEXT, FakeOpenAI, Reply, tokens_of
from energyray.trial import TrialRunner

KEY = "sk-test-ThisIsNotARealKey0123456789abcdef"
GPT = ModelConfig(name="gpt-4.1-mini", provider="openai", api_model="gpt-4.1-mini", estimate_active_params_b=20.0,
                  estimate_note="test assumption")
OPEN = ModelConfig(name="some-open-model", api_model="org/model")  # no provider: a compatible server, unpriced


def backend(fake: FakeOpenAI, model: ModelConfig = GPT, **api: Any) -> OpenAIBackend:
    cfg = ApiConfig(**{"base_url": fake.base_url, "backoff_s": 0.01, "backoff_max_s": 0.5, "timeout_s": 5.0, **api})
    b = OpenAIBackend(cfg)
    b.load(model, "real", "baseline", "auto", "/unused", 0)
    return b


def n_tokens(text: str = DEFAULT_TEXT, cap: int | None = None) -> int:
    n = len(tokens_of(text))
    return n if cap is None else min(n, cap)


# -- the three endpoints ----------------------------------------------------------------------
@pytest.mark.extra("api")
@pytest.mark.parametrize("endpoint", ["chat", "completions", "responses"])
def test_endpoint_streams_text_usage_cost_and_timings(endpoint):
    delay = 0.02
    with FakeOpenAI(default=Reply(first_token_delay_s=0.05, token_delay_s=delay)) as fake:
        b = backend(fake, endpoint=endpoint)
        gen = b.generate(["What is the capital of France?", "Name the capital of France."], 64, False)
        req = fake.requests[-1]
    assert req["kind"] == endpoint
    assert b.decode(gen) == [DEFAULT_TEXT, DEFAULT_TEXT]
    out = n_tokens()
    assert gen.output_tokens == 2 * out
    assert gen.input_tokens == len(tokens_of("What is the capital of France?")) + len(tokens_of("Name the capital of France."))
    assert gen.lengths == [out, out]
    assert len(gen.step_ns) == out and gen.step_ns == sorted(gen.step_ns)
    assert gen.ttft_s is not None and gen.ttft_s >= 0.05
    assert gen.tpot_s is not None and delay * 0.8 <= gen.tpot_s < delay * 3
    x = gen.extras
    assert x["api_endpoint"] == endpoint and x["api_requests"] == 2 and x["api_retries"] == 0
    assert x["tokens_source"] == "server usage report" and x["tokens_reason"] is None
    assert x["ttft_request_s_mean"] >= 0.05
    price = prices.lookup("openai", "gpt-4.1-mini")
    assert price is not None
    assert x["cost_input_usd"] == pytest.approx(gen.input_tokens * price.input_usd_per_1m / 1e6)
    assert x["cost_output_usd"] == pytest.approx(gen.output_tokens * price.output_usd_per_1m / 1e6)
    assert x["cost_usd"] == pytest.approx(x["cost_input_usd"] + x["cost_output_usd"])
    assert x["price_table_date"] == price.as_of and x["price_table_date"]


@pytest.mark.extra("api")
def test_request_fields_per_endpoint():
    with FakeOpenAI() as fake:
        for endpoint in ("chat", "completions", "responses"):
            backend(fake, endpoint=endpoint).generate(["hi"], 7, False)
        chat, comp, resp = (r["body"] for r in fake.requests)
    assert chat["messages"] == [{"role": "user", "content": "hi"}] and chat["stream"] is True
    assert chat["stream_options"] == {"include_usage": True} and chat["max_completion_tokens"] == 7
    assert comp["prompt"] == "hi" and comp["max_tokens"] == 7 and comp["stream_options"] == {"include_usage": True}
    assert resp["input"] == "hi" and resp["max_output_tokens"] == 7 and resp["store"] is False
    assert chat["temperature"] == 0.0


@pytest.mark.extra("api")
def test_model_params_override_and_null_drops_a_field():
    model = replace(GPT, api_endpoint="responses", api_max_output_tokens=99,
                    api_params={"temperature": None, "reasoning": {"effort": "high"}})
    with FakeOpenAI(default=Reply(reasoning_tokens=40)) as fake:
        gen = backend(fake, model).generate(["hi"], 7, False)
        body = fake.requests[-1]["body"]
    assert "temperature" not in body and body["reasoning"] == {"effort": "high"}
    assert body["max_output_tokens"] == 99  # the model's budget replaces the trial's 7
    assert gen.extras["reasoning_tokens"] == 40
    assert gen.output_tokens == n_tokens() + 40  # reasoning is billed as output
    assert gen.extras["api_max_output_tokens"] == 99


@pytest.mark.extra("api")
def test_length_cap_and_finish_reason():
    with FakeOpenAI() as fake:
        gen = backend(fake).generate(["hi"], 3, False)
    assert gen.output_tokens == 3 and gen.extras["api_finish_reasons"] == "length"


@pytest.mark.extra("api")
def test_per_request_tokens_times_and_finish_reasons():
    """Each request's own counts (the server's usage), its first and last text delta, and the
    time it was sent: with concurrency 1 the second waits for the first."""
    short, long = "What is the capital of France?", "Name the capital of France, please."
    with FakeOpenAI(default=Reply(token_delay_s=0.005)) as fake:
        b = backend(fake, endpoint="completions", concurrency=1)
        p = b.prompts([short, long], prompt_tokens=None, chat_template="auto", seed=0)
        gen = b.generate(p.inputs, 64, False)
        capped = b.generate(p.inputs, 3, False)
    assert gen.seq_input_tokens == [len(tokens_of(short)), len(tokens_of(long))]
    assert sum(gen.seq_input_tokens) == gen.input_tokens and gen.seq_output_tokens == [n_tokens()] * 2
    assert gen.seq_finish_reasons == ["stop", "stop"] and capped.seq_finish_reasons == ["length", "length"]
    assert all(s <= f <= last <= gen.end_ns for s, f, last
               in zip(gen.seq_start_ns, gen.seq_first_ns, gen.seq_last_ns, strict=True))
    assert gen.seq_start_ns[1] >= gen.seq_last_ns[0]  # sent after the first finished
    reqs = gen.per_request()
    assert all(0 < r["ttft_s"] <= r["latency_s"] < gen.duration_s for r in reqs)


def test_lockstep_steps_take_the_slowest_stream():
    assert lockstep_steps([[10, 20, 30], [15, 18]]) == [15, 20, 30]
    assert lockstep_steps([[10, 50], [40, 45, 60]]) == [40, 50, 60]
    assert lockstep_steps([[], []]) == []


# -- concurrency --------------------------------------------------------------------------------
@pytest.mark.extra("api")
@pytest.mark.parametrize("limit", [1, 3])
def test_concurrency_limit_holds(limit):
    with FakeOpenAI(default=Reply(token_delay_s=0.02)) as fake:
        gen = backend(fake, concurrency=limit).generate(["q"] * 6, 16, False)
        seen = fake.max_in_flight
    assert seen == limit
    assert gen.extras["api_concurrency"] == limit and len(gen.lengths) == 6


@pytest.mark.extra("api")
def test_a_trials_batch_size_sets_the_requests_in_flight_over_api_concurrency():
    """The runner feeds an API all of a trial's requests in one call with concurrency=batch_size."""
    with FakeOpenAI(default=Reply(token_delay_s=0.02)) as fake:
        b = backend(fake, concurrency=8)
        assert b.concurrent_feed(2) is None
        gen = b.generate(["q"] * 6, 16, False, concurrency=2)
        seen = fake.max_in_flight
    assert seen == 2 and gen.extras["api_concurrency"] == 2 and len(gen.lengths) == 6


# -- retries ------------------------------------------------------------------------------------
@pytest.mark.extra("api")
def test_429_then_ok_honours_retry_after():
    with FakeOpenAI([Reply(status=429, retry_after_s=0.3), Reply(status=429, retry_after_s=0.3)]) as fake:
        gen = backend(fake).generate(["hi"], 16, False)
        times = [r["t"] for r in fake.requests]
    assert gen.extras["api_retries"] == 2
    assert gen.extras["api_retry_wait_s"] == pytest.approx(0.6)
    assert times[1] - times[0] >= 0.28 and times[2] - times[1] >= 0.28
    assert gen.output_tokens == n_tokens()
    assert gen.duration_s >= 0.6  # the batch's latency includes the waits


@pytest.mark.extra("api")
def test_500_is_retried_with_backoff():
    with FakeOpenAI([Reply(status=500), Reply(status=503)]) as fake:
        gen = backend(fake).generate(["hi"], 16, False)
        assert len(fake.requests) == 3
    assert gen.extras["api_retries"] == 2 and gen.extras["api_failed_requests"] == 0


@pytest.mark.extra("api")
def test_persistent_500_fails_after_max_retries():
    with FakeOpenAI(default=Reply(status=500)) as fake:
        b = backend(fake, max_retries=2)
        with pytest.raises(TrialFailed, match=r"1 of 1 API requests failed.*after 2 retries") as e:
            b.generate(["hi"], 16, False)
        assert len(fake.requests) == 3
    assert e.value.retryable  # a server error: a later run may pass


@pytest.mark.extra("api")
@pytest.mark.parametrize("status", [400, 404, 422])
def test_client_errors_are_not_retried(status):
    with FakeOpenAI(default=Reply(status=status)) as fake:
        with pytest.raises(TrialFailed, match=str(status)) as e:
            backend(fake).generate(["hi"], 16, False)
        assert len(fake.requests) == 1
    assert f"fake {status}" in str(e.value)  # the server's reason, from the error's body
    assert not e.value.retryable  # the same request fails the same way again


@pytest.mark.extra("api")
def test_a_servers_reason_in_a_detail_body_reaches_the_error():
    """FastAPI servers (transformers serve) put the reason in {"detail": ...}, which the SDK's
    message leaves out."""
    with (FakeOpenAI(default=Reply(status=400, detail="chat_template is not set")) as fake,
          pytest.raises(TrialFailed, match="BadRequestError: Error code: 400.*chat_template is not set")):
        backend(fake).generate(["hi"], 16, False)


@pytest.mark.extra("api")
def test_hang_past_the_timeout_is_retried_then_fails():
    with FakeOpenAI(default=Reply(hang_s=30)) as fake:
        b = backend(fake, timeout_s=0.3, max_retries=1)
        t0 = time.monotonic()
        with pytest.raises(TrialFailed, match="Timeout"):
            b.generate(["hi"], 16, False)
        assert time.monotonic() - t0 < 5
        assert len(fake.requests) == 2


@pytest.mark.extra("api")
def test_stall_mid_stream_times_out_and_the_retry_starts_afresh():
    with FakeOpenAI([Reply(stall_after_tokens=2, stall_s=30)]) as fake:
        gen = backend(fake, timeout_s=0.3).generate(["hi"], 16, False)
    assert gen.extras["api_retries"] == 1
    assert gen.new_ids == [DEFAULT_TEXT]  # not the first attempt's two tokens again
    assert gen.lengths == [n_tokens()]


@pytest.mark.extra("api")
def test_dropped_stream_is_retried():
    with FakeOpenAI([Reply(drop_after_tokens=3)]) as fake:
        gen = backend(fake).generate(["hi"], 16, False)
        assert len(fake.requests) == 2
    assert gen.extras["api_retries"] == 1 and gen.new_ids == [DEFAULT_TEXT]


@pytest.mark.extra("api")
def test_raw_transport_errors_of_older_sdks_count_as_retryable():
    from energyray.backends.openai_api import _transport_error

    raw = type("ReadTimeout", (Exception,), {"__module__": "httpx._exceptions"})
    assert _transport_error(raw()) and not _transport_error(ValueError("ReadTimeout"))
    assert OpenAIBackend(ApiConfig(backoff_s=0.0))._retry_wait(raw(), 0) == 0.0


@pytest.mark.parametrize("reply, pattern", [
    (Reply(malformed_after_tokens=2), "JSON|Expecting|decode"),
    (Reply(error_after_tokens=2), "fake error mid-stream"),
])
@pytest.mark.extra("api")
def test_broken_streams_fail_without_retry(reply, pattern):
    with FakeOpenAI(default=reply) as fake:
        with pytest.raises(TrialFailed, match=pattern):
            backend(fake).generate(["hi"], 16, False)
        assert len(fake.requests) == 1


@pytest.mark.extra("api")
def test_one_failed_request_fails_the_batch_and_says_so():
    with FakeOpenAI([Reply(status=400)]) as fake, pytest.raises(TrialFailed, match=r"1 of 3 API requests failed"):
        backend(fake, concurrency=1).generate(["a", "b", "c"], 8, False)


# -- usage, cost, energy ----------------------------------------------------------------------------
@pytest.mark.extra("api")
def test_no_usage_gives_null_tokens_and_cost_with_reasons():
    with FakeOpenAI(default=Reply(usage=False)) as fake:
        gen = backend(fake, energy_estimate="flops").generate(["hi", "ho"], 16, False)
    assert gen.input_tokens is None and gen.output_tokens is None
    x = gen.extras
    assert "no usage for 2 of 2" in x["tokens_reason"]
    assert x["cost_usd"] is None and "no token usage" in x["cost_reason"]
    assert x["energy_estimated_j"] is None and x["energy_estimate_reason"]
    assert gen.lengths == [n_tokens()] * 2  # the deltas still arrived: timings stay


@pytest.mark.extra("api")
def test_unpriced_model_has_null_cost_with_reason():
    with FakeOpenAI() as fake:
        gen = backend(fake, OPEN).generate(["hi"], 16, False)
    assert gen.extras["cost_usd"] is None and "provider" in gen.extras["cost_reason"]
    assert fake.requests[-1]["body"]["model"] == "org/model"


@pytest.mark.extra("api")
def test_flops_estimate_follows_the_documented_formula():
    with FakeOpenAI() as fake:
        b = backend(fake, energy_estimate="flops")
        gen = b.generate(["hi"], 16, False)
    a = b.api
    expected = 2 * 20e9 * gen.output_tokens / (a.estimate_gpu_peak_flops * a.estimate_utilization) * a.estimate_gpu_power_w
    x = gen.extras
    assert x["energy_estimated_j"] == pytest.approx(expected) and x["energy_estimated_j"] > 0
    assert x["energy_estimated_source"] == "estimated"
    assert "Epoch AI" in x["energy_estimate_method"] and "test assumption" in x["energy_estimate_method"]


@pytest.mark.extra("api")
def test_estimate_is_never_zero():
    with FakeOpenAI(default=Reply(text="")) as fake:
        gen = backend(fake, energy_estimate="flops").generate(["hi"], 16, False)
    assert gen.output_tokens == 0
    assert gen.extras["energy_estimated_j"] is None and "no output tokens" in gen.extras["energy_estimate_reason"]
    assert gen.step_ns == [] and gen.ttft_s is None


@pytest.mark.extra("api")
def test_estimate_without_an_assumed_size_says_why():
    with FakeOpenAI() as fake:
        gen = backend(fake, replace(GPT, estimate_active_params_b=None), energy_estimate="flops").generate(["hi"], 8, False)
    assert gen.extras["energy_estimated_j"] is None
    assert "estimate_active_params_b" in gen.extras["energy_estimate_reason"]


# -- the key ---------------------------------------------------------------------------------------
@pytest.mark.extra("api")
def test_missing_key_for_openai_names_the_variable(monkeypatch):
    monkeypatch.delenv("MY_OPENAI_KEY", raising=False)
    api = ApiConfig(api_key_env="MY_OPENAI_KEY")
    with pytest.raises(ConfigError, match="MY_OPENAI_KEY"):
        OpenAIBackend(api).load(GPT, "real", "baseline", "auto", "/unused", 0)
    with pytest.raises(ConfigError, match="MY_OPENAI_KEY"):
        read_key(api, required=True)


@pytest.mark.extra("api")
def test_compatible_server_without_key_gets_a_placeholder(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with FakeOpenAI() as fake:
        backend(fake).generate(["hi"], 4, False)
        assert fake.requests[-1]["headers"]["authorization"] == "Bearer unused"


@pytest.mark.extra("api")
def test_key_is_sent_and_never_recorded(monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI(api_key=KEY) as fake:
        runner = TrialRunner(RecordingSampler(), GenerationConfig(warmup_runs=0), str(tmp_path),
                             measurement=MeasurementConfig(idle_s=0.0),
                             backend_settings={"api": ApiConfig(base_url=fake.base_url)})
        spec = expand("t", {"backend": ["openai"], "model": ["gpt-4.1-mini"]}, DEFAULTS)[0]
        runner.load(spec, GPT)
        result = runner.run(spec, GPT, {"api": {"api_key_env": "OPENAI_API_KEY"}}, last=True)
        assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {KEY}"
    assert result.row["status"] == "ok", result.row["error"]
    assert KEY not in json.dumps(result.row, default=str)
    assert KEY not in json.dumps(result.samples, default=str)
    assert KEY not in caplog.text


@pytest.mark.extra("api")
def test_key_is_scrubbed_from_errors_a_server_echoes(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    with FakeOpenAI(default=Reply(status=401, echo_auth=True)) as fake, pytest.raises(TrialFailed) as e:
        backend(fake).generate(["hi"], 4, False)
    assert "you sent Bearer" in str(e.value) and KEY not in str(e.value)


# -- preflight (the driver, before the sweep starts) ------------------------------------------------------
DEFAULTS = {"model": "gpt-4.1-mini", "backend": "openai", "weights": "real", "precision": "baseline",
            "batch_size": 2, "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": 8}


def specs(**axes: Any) -> list[Any]:
    return expand("t", {k: [v] for k, v in axes.items()}, DEFAULTS)


def test_preflight_needs_the_key_only_to_run(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    models = {"gpt-4.1-mini": GPT}
    preflight(specs(), models, ApiConfig(), running=False)  # a dry run needs no key
    with pytest.raises(ConfigError, match="OPENAI_API_KEY"):
        preflight(specs(), models, ApiConfig(), running=True)
    preflight(specs(), models, ApiConfig(base_url="http://127.0.0.1:9/v1"), running=True)  # a local server


def test_preflight_refuses_hosted_models_on_local_backends():
    with pytest.raises(ConfigError, match="only backend=openai"):
        preflight(specs(backend="transformers"), {"gpt-4.1-mini": GPT}, ApiConfig(), running=False)


def test_preflight_refuses_a_model_without_a_price(tmp_path):
    table = tmp_path / "p.yaml"
    table.write_text("models:\n  other: {input_usd_per_1m: 1, output_usd_per_1m: 2}\n")
    with pytest.raises(ConfigError, match="No price for 'gpt-4.1-mini'"):
        preflight(specs(), {"gpt-4.1-mini": GPT}, ApiConfig(price_table=str(table)), running=False)


def test_preflight_refuses_dummy_weights_and_unknown_endpoints():
    with pytest.raises(ConfigError, match="weights=dummy"):
        preflight(specs(weights="dummy"), {"gpt-4.1-mini": GPT}, ApiConfig(), running=False)
    with pytest.raises(ConfigError, match="chat, responses, completions"):
        preflight(specs(), {"gpt-4.1-mini": GPT}, ApiConfig(endpoint="nope"), running=False)


# -- the runner: energy is not this machine's ---------------------------------------------------------
class RecordingSampler:
    """A sampler that must not be used for a hosted model: it records every call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def describe(self) -> dict[str, Any]:
        return {"sampler": "recording"}

    def latest(self) -> dict[str, Any]:
        return {}

    def begin(self, label: str) -> int:
        self.calls.append(f"begin {label}")
        return time.monotonic_ns()

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> Any:
        self.calls.append(f"end {label}")
        raise AssertionError("a hosted model's window was measured")


def run_group(fake: FakeOpenAI, tmp_path, n: int = 2, batch_size: int = 2,
              **api: Any) -> tuple[RecordingSampler, list[dict[str, Any]]]:
    sampler = RecordingSampler()
    runner = TrialRunner(sampler, GenerationConfig(warmup_runs=1), str(tmp_path),
                         measurement=MeasurementConfig(idle_s=3.0, idle_settle_s=0.0, idle_settle_max_s=0.0),
                         backend_settings={"api": ApiConfig(base_url=fake.base_url, backoff_s=0.01, **api)})
    group = expand("t", {"backend": ["openai"], "model": ["gpt-4.1-mini"], "prompt_variant": ["default", "brief"]},
                   {**DEFAULTS, "batch_size": batch_size})[:n]
    t0 = time.monotonic()
    runner.load(group[0], GPT)
    assert time.monotonic() - t0 < 2.5  # no idle window for a model that is not here
    rows = [runner.run(s, GPT, {}, last=i == len(group) - 1).row for i, s in enumerate(group)]
    return sampler, rows


@pytest.mark.extra("api", "ecologits")
def test_runner_rows_with_both_estimates_keep_energy_null(tmp_path):
    with FakeOpenAI() as fake:
        _, rows = run_group(fake, tmp_path, n=1, energy_estimate="both")
    row = rows[0]
    assert row["status"] == "ok", row["error"]
    assert row["energy_j"] is None and row["energy_source"] == "not_measurable"
    assert row["energy_estimated_j"] > 0 and row["energy_estimated_source"] == "estimated"
    assert 0 < row["energy_estimated_ecologits_min_j"] <= row["energy_estimated_ecologits_max_j"]
    assert row["energy_estimated_ecologits_source"] == "estimated"
    assert "ecologits" in row["energy_estimate_ecologits_method"]


@pytest.mark.extra("api")
def test_runner_rows_have_null_energy_with_reason_and_never_touch_the_sampler(tmp_path):
    with FakeOpenAI() as fake:
        sampler, rows = run_group(fake, tmp_path)
    assert sampler.calls == []
    for row in rows:
        assert row["status"] == "ok", row["error"]
        assert row["energy_j"] is None and row["energy_source"] == "not_measurable"
        assert row["energy_reason"] == NOT_LOCAL_REASON
        for phase in ("idle", "load", "response"):
            assert row[f"{phase}_j"] is None and row[f"{phase}_source"] == "not_measurable"
        assert row["precision"] == "api" and row["device"] == "remote"
        assert row["cost_usd"] > 0 and row["price_table_date"]
        assert row["output_tokens"] > 0 and row["ttft_s"] is not None
        assert row["warmup_runs"] == 0  # api.warmup_runs=0 wins over generation.warmup_runs=1
        assert row["warmup_j"] is None  # not a measured 0
        assert row["max_new_tokens_used"] == 8
    assert rows[-1]["unload_j"] is None and rows[-1]["unload_source"] == "not_measurable"
    assert "api" in rows[0]["env_json"]


@pytest.mark.extra("api")
def test_runner_failed_request_is_a_failed_row_and_the_group_goes_on(tmp_path):
    with FakeOpenAI([Reply(status=500)] * 3) as fake:
        _, rows = run_group(fake, tmp_path, batch_size=1, max_retries=2)
    assert rows[0]["status"] == "failed" and "after 2 retries" in rows[0]["error"] and rows[0]["retryable"] is True
    assert rows[1]["status"] == "ok"


@pytest.mark.extra("api")
def test_runner_uses_the_gpu_token_budget_for_a_remote_model(tmp_path):
    with FakeOpenAI() as fake:
        runner = TrialRunner(None, GenerationConfig(max_new_tokens=50, cpu_max_new_tokens=4, warmup_runs=0),
                             str(tmp_path), backend_settings={"api": ApiConfig(base_url=fake.base_url)})
        spec = expand("t", {}, {**DEFAULTS, "max_new_tokens": None})[0]
        runner.load(spec, GPT)
        row = runner.run(spec, GPT, {}, last=True).row
        body = fake.requests[-1]["body"]
    assert row["max_new_tokens_used"] == 50 and body["max_completion_tokens"] == 50
    assert row["energy_reason"] == NOT_LOCAL_REASON  # not "no sampler": the reason that matters


# -- configuration ---------------------------------------------------------------------------------
def test_api_and_server_override_keys_are_checked():
    from energyray.plan import check_override_keys

    check_override_keys(["api.timeout_s=3", "api.extra_body.ignore_eos=true", "server.env.CUDA_LAUNCH_BLOCKING=1",
                         "model.api_params.reasoning={effort:low}", "server.startup_timeout_s=60"])
    with pytest.raises(ConfigError, match="Did you mean 'api.timeout_s'"):
        check_override_keys(["api.timout_s=3"])
    with pytest.raises(ConfigError, match="Did you mean 'server.startup_timeout_s'"):
        check_override_keys(["server.startup_timeout=3"])


def test_the_schema_composes_with_conf():
    from omegaconf import OmegaConf

    from energyray.config import RunConfig
    from energyray.paths import conf_dir

    # the defaults live in the schema (config.yaml only picks catalogue entries): compose them
    raw = OmegaConf.load(conf_dir() / "config.yaml")
    merged = OmegaConf.merge(OmegaConf.structured(RunConfig), {k: v for k, v in raw.items() if k not in ("defaults", "hydra")})
    cfg = RunConfig(api=OmegaConf.to_object(merged.api), server=OmegaConf.to_object(merged.server))  # type: ignore[arg-type]
    assert cfg.api.api_key_env == "OPENAI_API_KEY" and cfg.api.base_url is None and cfg.api.energy_estimate == "none"
    assert cfg.server.precision_args["nf4"] == ["--quantization", "bnb-4bit"] and "{device}" in cfg.server.command
    from energyray.backends import PRECISIONS

    assert set(cfg.server.precision_args) == set(PRECISIONS["server"])


# -- the catalogue and the price table ------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gpt-4.1-mini", "gpt-5-pro"])
def test_closed_models_in_the_catalogue_have_an_api_id_and_a_dated_price(name):
    from omegaconf import OmegaConf

    from energyray.paths import conf_dir

    m = OmegaConf.structured(ModelConfig)
    m = OmegaConf.to_object(OmegaConf.merge(m, OmegaConf.load(conf_dir() / "model" / f"{name}.yaml")))
    assert m.provider == "openai" and m.api_model == name and not m.architecture
    price = prices.lookup("openai", m.api_model)
    assert price is not None and price.input_usd_per_1m > 0 and price.output_usd_per_1m > price.input_usd_per_1m
    assert len(price.as_of) == 10 and price.source.startswith("https://")
    assert m.estimate_active_params_b and m.estimate_note


def test_gpt_5_pro_goes_through_the_responses_api_without_temperature():
    from omegaconf import OmegaConf

    from energyray.paths import conf_dir

    spec = OmegaConf.to_container(OmegaConf.load(conf_dir() / "model" / "gpt-5-pro.yaml"))
    assert isinstance(spec, dict)
    assert spec["api_endpoint"] == "responses" and spec["api_params"]["temperature"] is None


def test_cost_with_cached_input_and_dated_snapshot_ids():
    price = prices.lookup("openai", "gpt-4.1-mini-2025-04-14")
    assert price is not None and price.model == "gpt-4.1-mini-2025-04-14"
    c = prices.cost(price, 1_000_000, 1_000_000, cached_input_tokens=400_000)
    assert c["cost_input_usd"] == pytest.approx(0.6 * 0.40 + 0.4 * 0.10)
    assert c["cost_output_usd"] == pytest.approx(1.60)
    assert prices.cost(None, 1, 1)["cost_usd"] is None
    assert prices.lookup("openai", "no-such-model") is None


def test_missing_price_table_names_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="No price table"):
        prices.lookup("openai", "gpt-4.1-mini", str(tmp_path / "nope.yaml"))
