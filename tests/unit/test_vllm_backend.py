"""The vLLM backend without vLLM (which cannot be installed here: see energyray/backends/vllm.py).

What runs: precision mapping, `vllm.LLM` and `SamplingParams` keyword building, random-id
prompts for dummy weights, request-metrics timing on both of vLLM's metric shapes, output
parsing, the roofline estimate (checked against the transformers backend's own figures),
the error when vLLM is missing, and the whole backend through TrialRunner with
`energyray.backends.vllm_fake` standing in for the `vllm` module. Tests marked `real vllm`
use vLLM's own classes and are skipped where it is not importable.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from energyray.backends import PRECISIONS
from energyray.backends import vllm as vb
from energyray.backends import vllm_fake as fake
from energyray.backends.base import Generation
from energyray.backends.transformers import TransformersBackend, build_tiny_llama
from energyray.config import GenerationConfig, ModelConfig, VllmConfig
from energyray.errors import BackendError, ConfigError
from energyray.grid import expand
from energyray.registry import BACKENDS, resolve
from energyray.trial import TrialRunner

REPO_ROOT = Path(__file__).resolve().parents[2]


def catalogue(name: str) -> ModelConfig:
    node = OmegaConf.merge(OmegaConf.structured(ModelConfig), OmegaConf.load(REPO_ROOT / "conf" / "model" / f"{name}.yaml"))
    model = OmegaConf.to_object(node)
    assert isinstance(model, ModelConfig)
    return model


@pytest.fixture
def fake_vllm(monkeypatch):
    mod = fake.module()
    monkeypatch.setattr(vb, "_import_vllm", lambda: mod)
    return mod


# -- precision ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("precision", "expected"),
    [
        ("baseline", ("bf16", "bfloat16", None)),
        ("fp32", ("fp32", "float32", None)),
        ("fp16", ("fp16", "float16", None)),
        ("bf16", ("bf16", "bfloat16", None)),
        ("fp8", ("fp8", "bfloat16", "fp8")),
        ("awq", ("awq", "float16", "awq")),
        ("gptq", ("gptq", "float16", "gptq")),
        ("nf4-dq", ("nf4-dq", "bfloat16", "bitsandbytes")),
    ],
)
def test_precision_maps_to_dtype_and_quantization(precision, expected):
    assert vb.resolve_precision(precision) == expected


def test_every_registered_precision_resolves():
    assert set(PRECISIONS["vllm"]) == set(vb.PRECISIONS)
    for p in PRECISIONS["vllm"]:
        vb.resolve_precision(p)


def test_unknown_precision_lists_the_choices():
    with pytest.raises(ConfigError) as e:
        vb.resolve_precision("int8")  # bitsandbytes int8 in flight is not vLLM's
    for p in PRECISIONS["vllm"]:
        assert p in str(e.value)


def test_quantization_columns():
    assert vb.quantization_columns("nf4-dq") == {"quant_method": "bitsandbytes", "quant_type": "nf4", "double_quant": True}
    assert vb.quantization_columns("fp8") == {"quant_method": "fp8", "quant_type": "fp8", "double_quant": None}
    assert vb.quantization_columns("awq")["quant_type"] is None  # the checkpoint says
    assert vb.quantization_columns("baseline") == {"quant_method": None, "quant_type": None, "double_quant": None}


# -- LLM(...) keywords --------------------------------------------------------------------------
def test_real_weights_keywords():
    model = catalogue("qwen2-7b")
    kw = vb.llm_kwargs(model, "real", "baseline", 7, VllmConfig(max_num_seqs=8), "Qwen/Qwen2-7B-Instruct")
    assert kw["model"] == "Qwen/Qwen2-7B-Instruct"
    assert kw["dtype"] == "bfloat16" and "quantization" not in kw
    assert kw["seed"] == 7 and kw["max_num_seqs"] == 8
    assert kw["disable_log_stats"] is False  # else vLLM attaches no request metrics
    assert kw["enable_prefix_caching"] is False  # else repeated prompts skip their prefill
    assert kw["max_model_len"] == 4096  # the model's 32768 capped: short prompts, less KV cache
    assert "load_format" not in kw and "skip_tokenizer_init" not in kw
    assert "max_num_batched_tokens" not in kw  # vLLM's default


def test_dummy_weights_keywords():
    kw = vb.llm_kwargs(catalogue("tiny-llama"), "dummy", "fp16", 0, VllmConfig(), "/cache/dummy/tiny-llama-config")
    assert kw["load_format"] == "dummy"
    assert kw["skip_tokenizer_init"] is True
    assert kw["dtype"] == "float16"
    assert kw["max_model_len"] == 512  # the model's own context, under the cap


@pytest.mark.parametrize(("precision", "quant", "dtype"), [("fp8", "fp8", "bfloat16"), ("awq", "awq", "float16"),
                                                         ("gptq", "gptq", "float16")])
def test_quantised_keywords(precision, quant, dtype):
    kw = vb.llm_kwargs(catalogue("mistral-7b"), "dummy", precision, 0, VllmConfig(), "/d")
    assert (kw["quantization"], kw["dtype"], kw["load_format"]) == (quant, dtype, "dummy")


def test_bitsandbytes_dummy_reads_a_saved_checkpoint():
    kw = vb.llm_kwargs(catalogue("mistral-7b"), "dummy", "nf4-dq", 0, VllmConfig(), "/cache/dummy/mistral-7b-bfloat16-seed0")
    assert kw["quantization"] == "bitsandbytes"
    assert "load_format" not in kw  # vLLM reads (and quantises) the random checkpoint
    assert kw["skip_tokenizer_init"] is True


def test_options_and_engine_args():
    opts = VllmConfig(gpu_memory_utilization=0.5, max_model_len=1024, enforce_eager=True, max_num_batched_tokens=2048,
                      kv_cache_dtype="fp8", engine_args={"swap_space": 0, "enforce_eager": False})
    kw = vb.llm_kwargs(catalogue("llama3-8b"), "real", "bf16", 0, opts, "x")
    assert kw["gpu_memory_utilization"] == 0.5 and kw["max_model_len"] == 1024
    assert kw["max_num_batched_tokens"] == 2048 and kw["kv_cache_dtype"] == "fp8"
    assert kw["swap_space"] == 0 and kw["enforce_eager"] is False  # engine_args win


def test_tensor_parallel_is_refused_with_why():
    with pytest.raises(ConfigError, match="one GPU"):
        vb.llm_kwargs(catalogue("llama3-70b"), "dummy", "fp8", 0, VllmConfig(tensor_parallel_size=2), "x")


def test_gguf_file_takes_its_tokenizer_from_the_hub_id():
    model = ModelConfig(name="m", path="/models/m", gguf_file="m.Q4_K_M.gguf", hub_id="org/m")
    assert vb.llm_kwargs(model, "real", "bf16", 0, VllmConfig(), "/models/m/m.Q4_K_M.gguf")["tokenizer"] == "org/m"


def test_keywords_are_vllm_llm_keywords_in_the_fake():
    for precision in vb.PRECISIONS:
        for weights in ("real", "dummy"):
            kw = vb.llm_kwargs(catalogue("gemma3-270m"), weights, precision, 0, VllmConfig(max_num_seqs=4), "x")
            assert fake.FakeLLM.create(**kw).kwargs == kw


def test_keywords_are_engine_args_of_the_real_vllm():
    vllm = pytest.importorskip("vllm")
    for precision in vb.PRECISIONS:
        for weights in ("real", "dummy"):
            kw = vb.llm_kwargs(catalogue("gemma3-270m"), weights, precision, 0, VllmConfig(max_num_seqs=4), "x")
            vllm.EngineArgs(**kw)  # a dataclass: an unknown or misspelt keyword raises TypeError


# -- SamplingParams(...) -------------------------------------------------------------------------
def test_sampling_is_greedy_and_fixed_length_when_ignoring_eos():
    kw = vb.sampling_kwargs(16, True, 3, detokenize=False)
    assert kw == {"n": 1, "temperature": 0.0, "max_tokens": 16, "ignore_eos": True, "seed": 3,
                  "detokenize": False, "min_tokens": 16}
    assert "min_tokens" not in vb.sampling_kwargs(16, False, 3, detokenize=True)
    fake.SamplingParams(**kw)


def test_sampling_params_of_the_real_vllm():
    vllm = pytest.importorskip("vllm")
    params = vllm.SamplingParams(**vb.sampling_kwargs(8, True, 0, detokenize=False))
    assert params.max_tokens == 8 and params.ignore_eos and params.temperature == 0.0


# -- prompts for dummy weights ------------------------------------------------------------------
def test_dummy_prompts_are_token_ids_as_long_as_the_text():
    texts = ["one two three", "a " * 30]
    prompts = vb.dummy_prompts(texts, vocab_size=1000, seed=1)
    assert [len(p["prompt_token_ids"]) for p in prompts] == [4, 40]
    assert all(10 <= t < 1000 for p in prompts for t in p["prompt_token_ids"])
    assert prompts == vb.dummy_prompts(texts, 1000, 1) != vb.dummy_prompts(texts, 1000, 2)


# -- request timings ----------------------------------------------------------------------------
T0 = 1_000_000_000_000  # ns on the monotonic clock
WALL_MINUS_MONO = 1_700_000_000_000_000_000


def v1(first_s: float, last_s: float, latency_s: float = 0.0) -> fake.RequestStateStats:
    return fake.RequestStateStats(num_generation_tokens=4, first_token_ts=first_s, last_token_ts=last_s,
                                  first_token_latency=latency_s)


def test_v1_engine_timestamps_are_this_clock():
    first, last, reason = vb.request_times(v1(T0 / 1e9 + 0.010, T0 / 1e9 + 0.040), T0, T0 + 50_000_000, 0)
    assert reason is None
    assert first == pytest.approx(T0 + 10_000_000, abs=1_000) and last == pytest.approx(T0 + 40_000_000, abs=1_000)


def test_v1_timestamps_on_another_clock_fall_back_to_the_latency():
    first, last, reason = vb.request_times(v1(5.0, 6.0, latency_s=0.012), T0, T0 + 50_000_000, 0)
    assert first == T0 + 12_000_000 and last is None
    assert "not on this process's monotonic clock" in reason


def test_v1_without_a_first_token_time():
    assert vb.request_times(v1(0.0, 0.0), T0, T0 + 1, 0)[:2] == (None, None)


def test_v0_wall_clock_metrics_are_converted():
    wall0 = (T0 + WALL_MINUS_MONO) / 1e9
    m = fake.RequestMetrics(arrival_time=wall0, last_token_time=wall0, first_scheduled_time=wall0,
                            first_token_time=wall0 + 0.010, time_in_queue=0.0, finished_time=wall0 + 0.030)
    first, last, reason = vb.request_times(m, T0, T0 + 50_000_000, WALL_MINUS_MONO)
    assert reason is None
    assert first == pytest.approx(T0 + 10_000_000, abs=1_000)
    assert last == pytest.approx(T0 + 30_000_000, abs=1_000)  # finished_time: V0 left last_token_time at arrival


def test_no_metrics_says_why():
    assert vb.request_times(None, T0, T0 + 1, 0)[2].startswith("vLLM returned no request metrics")
    assert "unknown vLLM metrics type" in vb.request_times(object(), T0, T0 + 1, 0)[2]


# -- parsing outputs ----------------------------------------------------------------------------
def request(i: int, prompt_ids: list[int], new: list[int], metrics=None, text="x") -> fake.RequestOutput:
    return fake.RequestOutput(request_id=str(i), prompt="p", prompt_token_ids=prompt_ids, prompt_logprobs=None,
                              outputs=[fake.CompletionOutput(0, text, new, finish_reason="length")], finished=True,
                              metrics=metrics, num_cached_tokens=0)


def ms(x: float) -> float:
    return T0 / 1e9 + x / 1e3


def test_parse_counts_tokens_and_times_per_sequence():
    outputs = [
        request(0, [1, 2, 3], [7, 8, 2], v1(ms(10), ms(30))),  # EOS (2) counted, as vLLM keeps it
        request(1, [1, 2, 3, 4, 5], [7, 8, 9, 9, 9], v1(ms(12), ms(52))),
    ]
    gen = vb.parse_outputs(outputs, T0, T0 + 60_000_000, 0)
    assert gen.input_tokens == 8 and gen.output_tokens == 8 and gen.lengths == [3, 5]
    assert gen.ttft_s == pytest.approx(0.012, abs=1e-6)  # the batch's prefill ends with the last first token
    assert gen.tpot_s == pytest.approx((0.010 + 0.010) / 2, abs=1e-6)  # per sequence: 20 ms / 2, 40 ms / 4
    assert gen.steady_window_ns() == pytest.approx((T0 + 12_000_000, T0 + 30_000_000), abs=1_000)
    assert gen.extras["ttft_source"] == "vllm_request_metrics"
    assert gen.extras["ttft_mean_s"] == pytest.approx(0.011, abs=1e-6)
    assert gen.extras["timing_reason"] is None and gen.extras["cached_prompt_tokens"] == 0
    assert gen.peak_memory_mb is None
    assert gen.new_ids.token_ids == [[7, 8, 2], [7, 8, 9, 9, 9]]
    # per request: its prompt tokens, output tokens, finish reason and times
    assert gen.seq_input_tokens == [3, 5] and gen.seq_output_tokens == [3, 5]
    assert gen.seq_finish_reasons == ["length", "length"]
    assert [(r["ttft_s"], r["latency_s"]) for r in gen.per_request()] == [
        pytest.approx((0.010, 0.030), abs=1e-6), pytest.approx((0.012, 0.052), abs=1e-6)]


def test_parse_without_metrics_has_counts_and_no_times():
    gen = vb.parse_outputs([request(0, [1, 2], [5, 6, 7])], T0, T0 + 1_000, 0)
    assert gen.output_tokens == 3 and gen.ttft_s is None and gen.tpot_s is None and gen.first_token_ns is None
    assert gen.steady_window_ns() is None
    assert gen.extras["ttft_source"] is None
    assert gen.extras["timing_reason"].startswith("vLLM returned no request metrics")


def test_parse_uses_no_times_when_one_request_lacks_them():
    outputs = [request(0, [1], [5, 6], v1(ms(1), ms(2))), request(1, [1], [5, 6], None)]
    gen = vb.parse_outputs(outputs, T0, T0 + 5_000_000, 0)
    assert gen.seq_first_ns == [] and gen.ttft_s is None


def test_parse_of_vllms_own_classes():
    pytest.importorskip("vllm")
    from vllm.outputs import CompletionOutput, RequestOutput
    from vllm.v1.metrics.stats import RequestStateStats

    stats = RequestStateStats(num_generation_tokens=3, first_token_ts=ms(10), last_token_ts=ms(30))
    out = RequestOutput(request_id="0", prompt="p", prompt_token_ids=[1, 2], prompt_logprobs=None,
                        outputs=[CompletionOutput(index=0, text="abc", token_ids=[4, 5, 6], cumulative_logprob=None,
                                                  logprobs=None, finish_reason="length")],
                        finished=True, metrics=stats)
    gen = vb.parse_outputs([out], T0, T0 + 40_000_000, 0)
    assert (gen.input_tokens, gen.output_tokens) == (2, 3)
    assert gen.ttft_s == pytest.approx(0.010, abs=1e-6) and gen.tpot_s == pytest.approx(0.010, abs=1e-6)


# -- Generation's timings from per-sequence times -----------------------------------------------
def test_step_times_win_over_sequence_times():
    gen = Generation(input_tokens=1, output_tokens=4, start_ns=0, end_ns=80, lengths=[2, 2], step_ns=[20, 80],
                     seq_first_ns=[50, 50], seq_last_ns=[60, 60])
    assert gen.first_token_ns == 20 and gen.tpot_s == pytest.approx(60e-9)
    assert gen.steady_window_ns() == (20, 80)


@pytest.mark.parametrize(
    ("lengths", "firsts", "lasts", "steady"),
    [
        ([4, 4], [10, 12], [40, 44], (12, 40)),
        ([4], [10], [40], None),  # batch 1
        ([4, 1], [10, 12], [40, 12], None),  # a one-token sequence never decodes
        ([4, 4], [10, 50], [40, 80], None),  # never all decoding at once
    ],
)
def test_steady_window_from_sequence_times(lengths, firsts, lasts, steady):
    gen = Generation(input_tokens=1, output_tokens=sum(lengths), start_ns=0, end_ns=100, lengths=lengths,
                     seq_first_ns=firsts, seq_last_ns=lasts)
    assert gen.steady_window_ns() == steady


# -- roofline estimate --------------------------------------------------------------------------
def test_estimate_matches_the_transformers_backends_own_count(tmp_path):
    """fp32, untied: weights read per step = all but the input embedding, as transformers measures."""
    path = build_tiny_llama(tmp_path / "tiny")
    hf = TransformersBackend()
    hf.load(ModelConfig(name="tiny-llama", path=str(path)), "real", "fp32", "cpu", str(tmp_path), 0)
    try:
        measured = hf.architecture()
        params_b = hf.model.num_parameters() / 1e9
    finally:
        hf.unload()
    tiny = catalogue("tiny-llama")
    tiny.params_b = params_b
    est = vb.estimate_architecture(tiny, "fp32")
    assert est["weight_bytes"] == pytest.approx(measured["weight_bytes"], rel=1e-6)
    assert est["kv_bytes_per_position"] == measured["kv_bytes_per_position"] == 512
    assert est["source"] == "estimated from the catalogue"


def test_estimate_at_lower_precisions():
    llama = catalogue("llama3-8b")
    emb = 128256 * 4096
    bf16 = vb.estimate_architecture(llama, "bf16")
    fp8 = vb.estimate_architecture(llama, "fp8")
    body = 8.03e9 - 2 * emb
    assert bf16["weight_bytes"] == pytest.approx(body * 2 + emb * 2, rel=1e-6)
    assert fp8["weight_bytes"] == pytest.approx(body * 1 + emb * 2, rel=1e-6)
    assert bf16["kv_bytes_per_position"] == fp8["kv_bytes_per_position"] == 2 * 32 * 8 * 128 * 2
    assert vb.estimate_architecture(catalogue("mamba-codestral-7b"), "bf16")["kv_bytes_per_position"] is None
    assert vb.estimate_architecture(ModelConfig(name="x"), "bf16")["weight_bytes"] is None


# -- the backend, with the fake standing in for vllm ---------------------------------------------
def test_dummy_weights_end_to_end_with_the_fake(fake_vllm, tmp_path):
    b = vb.VllmBackend(VllmConfig(max_num_seqs=4))
    model = catalogue("tiny-llama")
    b.prepare(model, "dummy", "baseline", "auto", str(tmp_path), 0)
    info = b.load(model, "dummy", "baseline", "auto", str(tmp_path), 0)
    (llm,) = fake_vllm.created
    config_dir = Path(llm.kwargs["model"])
    assert json.loads((config_dir / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    assert llm.kwargs["load_format"] == "dummy" and llm.kwargs["max_num_seqs"] == 4
    assert info.precision == "bf16" and info.device == "cuda"
    assert info.columns["vllm_max_num_seqs"] == 4 and info.details["tokenizer"] == "none: random token ids"
    gen = b.generate(["a b c", "d e f g h i"], 5, ignore_eos=True)
    prompts, params = llm.calls[0]
    assert [len(p["prompt_token_ids"]) for p in prompts] == [4, 8]
    assert params.ignore_eos and params.min_tokens == 5 and params.detokenize is False
    assert gen.lengths == [5, 5] and gen.output_tokens == 10 and gen.input_tokens == 12
    assert gen.start_ns < gen.first_token_ns < gen.end_ns and gen.tpot_s > 0
    assert b.decode(gen) == [None, None]
    # the engine keeps max_num_seqs sequences in flight: a trial at that batch size is fed all at once
    assert b.concurrent_feed(4) is None
    assert "max_num_seqs=4" in b.concurrent_feed(2) and "static batches" in b.concurrent_feed(2)
    b.unload()
    assert llm.shut_down and b.llm is None


def test_real_builtin_model_with_text_prompts(fake_vllm, tmp_path):
    b = vb.VllmBackend()
    model = catalogue("tiny-llama")
    info = b.load(model, "real", "fp16", "auto", str(tmp_path), 0)  # prepare() run by load()
    llm = fake_vllm.created[0]
    assert llm.kwargs["model"] == str(tmp_path / "models" / "tiny-llama")
    assert "skip_tokenizer_init" not in llm.kwargs and info.details["tokenizer"] == "the model's"
    gen = b.generate(["hello there", "hi"], 4, ignore_eos=False)
    assert llm.calls[0][0] == ["hello there", "hi"]
    assert gen.lengths == [2, 4]  # the fake's first request stopped at EOS
    assert all(isinstance(t, str) and t for t in b.decode(gen))


def test_nf4_dq_dummy_saves_a_random_checkpoint_for_bitsandbytes(fake_vllm, tmp_path):
    b = vb.VllmBackend()
    b.prepare(catalogue("tiny-llama"), "dummy", "nf4-dq", "auto", str(tmp_path), 0)
    source = Path(b._source)
    assert source.name == "tiny-llama-bfloat16-seed0" and list(source.glob("*.safetensors"))
    b.load(catalogue("tiny-llama"), "dummy", "nf4-dq", "auto", str(tmp_path), 0)
    assert fake_vllm.created[0].kwargs["quantization"] == "bitsandbytes"


def test_cpu_device_is_refused(fake_vllm, tmp_path):
    with pytest.raises(ConfigError, match="CUDA GPUs"):
        vb.VllmBackend().prepare(catalogue("tiny-llama"), "dummy", "bf16", "cpu", str(tmp_path), 0)


def test_generate_before_load():
    with pytest.raises(BackendError, match="before load"):
        vb.VllmBackend().generate(["x"], 1, True)


def test_a_trial_row_through_the_runner_with_the_fake(fake_vllm, tmp_path):
    runner = TrialRunner(None, GenerationConfig(ignore_eos=None, warmup_runs=1), str(tmp_path), device="auto",
                         backend_settings={"vllm": VllmConfig(max_num_seqs=2)})
    (spec,) = expand("unit", {}, dict(model="tiny-llama", backend="vllm", weights="dummy", precision="fp8",
                                      batch_size=2, task="qa", prompt_variant="default", hardware="h100",
                                      max_new_tokens=6))
    model = catalogue("tiny-llama")
    runner.load(spec, model)
    row = runner.run(spec, model, {"trial": spec.to_dict()}, last=True).row
    assert row["status"] == "ok", row.get("error")
    assert row["backend"] == "vllm" and row["precision"] == "fp8" and row["quant_method"] == "fp8"
    assert row["output_tokens"] == 12 and row["decode_steps"] == 6
    assert row["ttft_source"] == "vllm_request_metrics" and 0 < row["ttft_s"] < row["duration_s"]
    assert row["tpot_s"] > 0 and row["steady_s"] > 0
    assert row["vllm_max_num_seqs"] == 2 and row["cached_prompt_tokens"] == 0
    assert row["roofline_s_per_token"] is not None  # h100's bandwidth and the catalogue estimate
    assert fake_vllm.created[0].shut_down  # the group's last trial unloaded it


# -- when vLLM is not installed -----------------------------------------------------------------
def test_missing_vllm_names_the_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError
    with pytest.raises(BackendError) as e:
        vb.VllmBackend().prepare(catalogue("tiny-llama"), "dummy", "bf16", "auto", str(tmp_path), 0)
    msg = str(e.value)
    assert "pip install 'energyray[vllm]'" in msg and "CUDA GPU" in msg and "torch" in msg


def test_missing_vllm_fails_the_groups_load_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "vllm", None)
    runner = TrialRunner(None, GenerationConfig(), str(tmp_path), device="auto")
    (spec,) = expand("unit", {}, dict(model="tiny-llama", backend="vllm", weights="dummy", precision="bf16",
                                      batch_size=1, task="qa", prompt_variant="default", hardware="cpu",
                                      max_new_tokens=2))
    with pytest.raises(BackendError, match="energyray\\[vllm\\]"):
        runner.load(spec, catalogue("tiny-llama"))
    assert not (tmp_path / "dummy").exists()  # nothing prepared


def test_registered_and_lazy():
    assert resolve("backend", BACKENDS, "vllm") is vb.VllmBackend
    code = ("import sys, energyray.backends.vllm, energyray.registry as r; r.resolve('backend', r.BACKENDS, 'vllm'); "
            "print(sorted(m for m in ('vllm', 'torch', 'transformers') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_fake_mirrors_vllms_rule_for_metrics():
    """vLLM attaches request metrics only with disable_log_stats=False: so must the fake."""
    on = fake.FakeLLM.create(model="m", disable_log_stats=False).generate(["a"], fake.SamplingParams(max_tokens=2))
    off = fake.FakeLLM.create(model="m").generate(["a"], fake.SamplingParams(max_tokens=2))
    assert on[0].metrics is not None and off[0].metrics is None
    assert on[0].metrics.first_token_ts <= on[0].metrics.last_token_ts <= time.monotonic()
