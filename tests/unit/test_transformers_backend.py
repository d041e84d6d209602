"""The transformers backend on CPU, with energyray's built-in tiny Llama (no Ray, no network).

Covers precision resolution (baseline -> fp32 on a CPU; fp16; bitsandbytes nf4, fp4 and both
with double quantisation on a CPU, checked on the quantised weights themselves), batched
generation's token counts and step timings, decoding to text apart from generation, dummy
weights (random init of the architecture, no tokenizer), the roofline's architecture figures,
the unmeasured `prepare`, and the EOS/padding rule of `_generated_length`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from energyray.backends import PRECISIONS
from energyray.backends.base import Generation, LoadInfo
from energyray.backends.transformers import (
    TransformersBackend,
    _generated_length,
    build_tiny_llama,
    dummy_config,
    dummy_config_dir,
    quantization_columns,
    resolve_precision,
)
from energyray.config import ModelConfig
from energyray.errors import BackendError, ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]
PROMPTS = [
    "Question: What is the capital of France?\nAnswer:",
    "Hello",
    "Write a detailed analysis of the impact of artificial intelligence on modern healthcare.",
]
MAX_NEW = 5


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory) -> Path:
    # A fixed name under the session's base temp: every module that builds it shares one copy
    # (build_tiny_llama is a no-op once the directory is complete).
    return build_tiny_llama(tmp_path_factory.getbasetemp() / "shared-tiny-llama")


@pytest.fixture(scope="session")
def tiny_arch() -> dict:
    node = OmegaConf.load(REPO_ROOT / "conf" / "model" / "tiny-llama.yaml")
    arch = OmegaConf.to_container(node.architecture)
    assert isinstance(arch, dict)
    return arch


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("backend-cache"))


def _real(tiny_llama_dir: Path) -> ModelConfig:
    return ModelConfig(name="tiny-llama", path=str(tiny_llama_dir))


@pytest.fixture(scope="module")
def fp32_backend(tiny_llama_dir, cache):
    b = TransformersBackend()
    info = b.load(_real(tiny_llama_dir), "real", "baseline", "auto", cache, 0)
    yield b, info
    b.unload()


@pytest.fixture(scope="module")
def nf4_backend(tiny_llama_dir, cache):
    b = TransformersBackend()
    info = b.load(_real(tiny_llama_dir), "real", "nf4", "cpu", cache, 0)
    yield b, info
    b.unload()


def _check_counts(b: TransformersBackend, gen: Generation, batch: int, max_new: int) -> None:
    assert gen.output_tokens == batch * max_new
    assert gen.lengths == [max_new] * batch
    assert gen.steps == max_new
    assert gen.input_tokens > 0
    assert gen.duration_s > 0
    assert gen.ttft_s is not None
    assert 0 < gen.ttft_s < gen.duration_s
    assert gen.first_token_ns is not None
    # one time per decode step, in order, inside the generate call
    assert len(gen.step_ns) == max_new
    assert gen.start_ns < gen.step_ns[0] and gen.step_ns == sorted(gen.step_ns) and gen.step_ns[-1] <= gen.end_ns
    assert gen.tpot_s == pytest.approx((gen.duration_s - gen.ttft_s) / (max_new - 1))
    assert gen.peak_memory_mb is not None and gen.peak_memory_mb > 0
    assert tuple(gen.new_ids.shape) == (batch, max_new)
    assert len(b.decode(gen)) == batch
    # per sequence: prompt tokens (padding excluded), and first/last token from the steps
    assert len(gen.seq_input_tokens) == batch and sum(gen.seq_input_tokens) == gen.input_tokens
    assert gen.seq_first_ns == [gen.step_ns[0]] * batch and gen.seq_last_ns == [gen.step_ns[-1]] * batch
    assert gen.seq_output_tokens == gen.lengths and gen.seq_finish_reasons == ["length"] * batch


# -- precision ---------------------------------------------------------------------------------
def test_resolve_precision_baseline_is_fp32_on_cpu_bf16_on_gpu():
    assert resolve_precision("baseline", "cpu") == ("fp32", torch.float32)
    assert resolve_precision("baseline", "cuda") == ("bf16", torch.bfloat16)
    assert resolve_precision("fp16", "cpu") == ("fp16", torch.float16)


def test_resolve_precision_quantised_keeps_natural_compute_dtype():
    assert resolve_precision("nf4", "cpu") == ("nf4", torch.float32)
    assert resolve_precision("int8", "cuda") == ("int8", torch.bfloat16)


def test_resolve_precision_unknown_lists_valid_choices():
    with pytest.raises(ConfigError) as exc:
        resolve_precision("int3", "cpu")
    msg = str(exc.value)
    assert "int3" in msg
    for p in PRECISIONS["transformers"]:
        assert p in msg


def test_load_baseline_resolves_to_fp32_on_cpu(fp32_backend, tiny_llama_dir):
    _, info = fp32_backend
    assert isinstance(info, LoadInfo)
    assert info.precision == "fp32"
    assert info.device == "cpu"
    assert info.params_b is not None and 0 < info.params_b < 0.01
    assert info.details["dtype"] == "float32"
    assert info.details["source"] == str(tiny_llama_dir)
    assert info.details["tokenizer"] != "none: random token ids"


@pytest.mark.extra("quant")
def test_load_nf4_on_cpu_with_bitsandbytes(nf4_backend):
    b, info = nf4_backend
    assert info.precision == "nf4"
    assert info.device == "cpu"
    assert getattr(b.model, "is_loaded_in_4bit", False)
    weight = b.model.model.layers[0].mlp.up_proj.weight
    assert (weight.quant_state.quant_type, weight.quant_state.nested) == ("nf4", False)


@pytest.mark.extra("quant")
@pytest.mark.parametrize(
    ("precision", "quant_type", "nested"),
    [("fp4", "fp4", False), ("nf4-dq", "nf4", True), ("fp4-dq", "fp4", True)],
)
def test_4bit_variants_on_cpu_quantise_as_asked(tiny_llama_dir, cache, precision, quant_type, nested):
    """fp4 and double quantisation really reach bitsandbytes: the 4-bit weights' quant state
    has that type, and with -dq its block scales are themselves quantised (nested)."""
    b = TransformersBackend()
    info = b.load(_real(tiny_llama_dir), "real", precision, "cpu", cache, 0)
    try:
        assert info.precision == precision
        assert info.columns == {"quant_method": "bitsandbytes", "quant_type": quant_type, "double_quant": nested,
                                "attention_implementation": b.model.config._attn_implementation, "cudnn_attention": None}
        for layer in b.model.model.layers:
            for weight in (layer.self_attn.q_proj.weight, layer.mlp.down_proj.weight):
                assert type(weight).__name__ == "Params4bit"
                assert weight.quant_state.quant_type == quant_type
                assert weight.quant_state.nested is nested
        assert b.model.config.quantization_config.bnb_4bit_use_double_quant is nested
        gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=True)
        _check_counts(b, gen, len(PROMPTS), MAX_NEW)
    finally:
        b.unload()


@pytest.mark.extra("quant")
def test_int8_generation_logs_nothing_per_matmul(tiny_llama_dir, cache, caplog):
    """bitsandbytes logs a WARNING on every int8 matmul whose input is not fp16 (every layer,
    every step); the backend silences it, so a trial's window holds no logging. The same
    generate with that logger's level reset logs one record a matmul: the test can fail."""
    import logging

    b = TransformersBackend()
    b.load(_real(tiny_llama_dir), "real", "int8", "cpu", cache, 0)
    bnb_log = logging.getLogger("bitsandbytes.autograd._functions")
    try:
        with caplog.at_level(logging.WARNING):
            gen = b.generate(PROMPTS[:1], MAX_NEW, ignore_eos=True)
        _check_counts(b, gen, 1, MAX_NEW)
        assert not [r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]
        level = bnb_log.level
        bnb_log.setLevel(logging.NOTSET)
        try:
            with caplog.at_level(logging.WARNING):
                b.generate(PROMPTS[:1], MAX_NEW, ignore_eos=True)
        finally:
            bnb_log.setLevel(level)
        per_step = 7 * b.model.config.num_hidden_layers  # q, k, v, o, gate, up, down
        assert len([r for r in caplog.records if "MatMul8bitLt" in r.getMessage()]) >= per_step * MAX_NEW
    finally:
        b.unload()


def test_fp16_on_cpu_loads_and_generates_in_half_precision(tiny_llama_dir, cache):
    b = TransformersBackend()
    info = b.load(_real(tiny_llama_dir), "real", "fp16", "cpu", cache, 0)
    try:
        assert (info.precision, info.details["dtype"]) == ("fp16", "float16")
        assert b.model.dtype == torch.float16
        assert info.columns["quant_method"] is None
        gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=True)
        _check_counts(b, gen, len(PROMPTS), MAX_NEW)
    finally:
        b.unload()


def test_quantization_columns():
    assert quantization_columns("int8") == {"quant_method": "bitsandbytes", "quant_type": "int8", "double_quant": False}
    assert quantization_columns("fp4-dq")["double_quant"] is True
    assert quantization_columns("bf16") == {"quant_method": None, "quant_type": None, "double_quant": None}


# -- generation --------------------------------------------------------------------------------
def test_generate_batch_ignore_eos_fp32(fp32_backend):
    b, _ = fp32_backend
    gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=True)
    _check_counts(b, gen, len(PROMPTS), MAX_NEW)
    assert all(isinstance(t, str) for t in b.decode(gen))


@pytest.mark.extra("quant")
def test_generate_batch_ignore_eos_nf4(nf4_backend):
    b, _ = nf4_backend
    gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=True)
    _check_counts(b, gen, len(PROMPTS), MAX_NEW)


def test_input_tokens_exclude_left_padding(fp32_backend):
    b, _ = fp32_backend
    one = [b.generate([p], 1, ignore_eos=True).input_tokens for p in PROMPTS]
    batch = b.generate(PROMPTS, 1, ignore_eos=True).input_tokens
    assert len(set(one)) > 1  # the prompts differ in length, so the batch is padded
    assert batch == sum(one)


def test_generate_is_greedy_and_repeatable(fp32_backend):
    b, _ = fp32_backend
    first, again = b.generate(PROMPTS, MAX_NEW, True), b.generate(PROMPTS, MAX_NEW, True)
    assert first.new_ids.tolist() == again.new_ids.tolist()
    assert b.decode(first) == b.decode(again)


def test_output_tokens_stop_at_eos_and_exclude_padding(fp32_backend, monkeypatch):
    """Without ignore_eos, a row that emits EOS counts up to it; the padding after it does not."""
    b, _ = fp32_backend
    eos = b.model.generation_config.eos_token_id
    eos = eos[0] if isinstance(eos, list) else eos
    pad = b.model.generation_config.pad_token_id
    real_generate = b.model.generate

    def generate_with_early_eos(*args, **kwargs):
        out = real_generate(*args, **kwargs)
        prompt_len = kwargs["input_ids"].shape[1]
        out = out.clone()
        out[0, prompt_len + 1] = eos  # row 0: one token, then EOS, then padding
        out[0, prompt_len + 2:] = pad
        return out

    monkeypatch.setattr(b.model, "generate", generate_with_early_eos)
    gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=False)
    assert gen.output_tokens == 2 + (len(PROMPTS) - 1) * MAX_NEW
    assert gen.lengths == [2, MAX_NEW, MAX_NEW]
    assert gen.steps == MAX_NEW
    # decode() stops each row at its length: row 0's text is its one token (EOS skipped)
    assert b.decode(gen)[0] == b.tokenizer.decode(gen.new_ids[0, :1].tolist(), skip_special_tokens=True)


def test_decode_without_ids_gives_none_per_sequence(fp32_backend):
    b, _ = fp32_backend
    gen = Generation(input_tokens=3, output_tokens=4, start_ns=0, end_ns=10, lengths=[2, 2], step_ns=[5, 10])
    assert b.decode(gen) == [None, None]


def test_generate_before_load_raises():
    with pytest.raises(BackendError, match="before load"):
        TransformersBackend().generate(["hi"], 2, True)


# -- dummy weights -----------------------------------------------------------------------------
def test_dummy_weights_have_no_tokenizer_but_right_counts(tiny_arch, tmp_path):
    model = ModelConfig(name="tiny-llama", architecture=tiny_arch, hub_id=None)
    b = TransformersBackend()
    info = b.load(model, "dummy", "baseline", "cpu", str(tmp_path), 0)
    try:
        assert info.precision == "fp32"
        assert info.details["tokenizer"] == "none: random token ids"
        assert "random init" in info.details["source"]
        gen = b.generate(PROMPTS, MAX_NEW, ignore_eos=True)
        assert b.decode(gen) == [None, None, None]
        _check_counts(b, gen, len(PROMPTS), MAX_NEW)
    finally:
        b.unload()


@pytest.mark.extra("quant")
def test_dummy_weights_nf4_saves_random_checkpoint_once(tiny_arch, tmp_path):
    model = ModelConfig(name="tiny-llama", architecture=tiny_arch, hub_id=None)
    b = TransformersBackend()
    info = b.load(model, "dummy", "nf4", "cpu", str(tmp_path), 0)
    try:
        assert info.precision == "nf4"
        saved = tmp_path / "dummy" / "tiny-llama-float32-seed0"
        assert (saved / ".complete").exists()
        gen = b.generate(PROMPTS[:2], 3, ignore_eos=True)
        assert b.decode(gen) == [None, None]
        _check_counts(b, gen, 2, 3)
    finally:
        b.unload()


@pytest.mark.extra("quant")
def test_dummy_nf4_dq_reuses_the_same_random_checkpoint(tiny_arch, tmp_path):
    """Double quantisation is a load option: nf4 and nf4-dq quantise one saved checkpoint."""
    model = ModelConfig(name="tiny-llama", architecture=tiny_arch, hub_id=None)
    for precision in ("nf4", "nf4-dq"):
        b = TransformersBackend()
        info = b.load(model, "dummy", precision, "cpu", str(tmp_path), 0)
        try:
            assert info.precision == precision
            nested = b.model.model.layers[0].mlp.up_proj.weight.quant_state.nested
            assert nested is precision.endswith("-dq")
        finally:
            b.unload()
    assert [p.name for p in (tmp_path / "dummy").iterdir() if p.is_dir()] == ["tiny-llama-float32-seed0"]


def test_dummy_config_names_the_causal_lm_class(tiny_arch, tmp_path):
    """Engines that load by path (vLLM) choose the model class from `architectures`."""
    model = ModelConfig(name="tiny-llama", architecture=tiny_arch)
    assert dummy_config(model).architectures == ["LlamaForCausalLM"]
    path = dummy_config_dir(model, str(tmp_path))
    saved = json.loads((path / "config.json").read_text())
    assert saved["architectures"] == ["LlamaForCausalLM"]
    assert saved["hidden_size"] == tiny_arch["hidden_size"] and saved["num_hidden_layers"] == 2
    assert not list(path.glob("*.safetensors"))  # the engine makes the random weights itself
    assert dummy_config_dir(model, str(tmp_path)) == path


def test_dummy_without_architecture_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="architecture"):
        TransformersBackend().load(ModelConfig(name="nothing"), "dummy", "baseline", "cpu", str(tmp_path), 0)


# -- architecture (for the roofline) ---------------------------------------------------------
def test_architecture_of_the_tiny_model(fp32_backend, tiny_arch):
    b, _ = fp32_backend
    arch = b.architecture()
    assert arch["model_type"] == "llama"
    assert arch["weight_bytes"] > 0
    # untied input embedding: only its looked-up rows are read per step, so it is left out
    emb = b.model.get_input_embeddings().weight
    assert arch["weight_bytes"] == 4 * (b.model.num_parameters() - emb.numel())
    head_dim = tiny_arch["hidden_size"] // tiny_arch["num_attention_heads"]
    kv = 2 * tiny_arch["num_hidden_layers"] * tiny_arch["num_key_value_heads"] * head_dim * 4  # K and V, fp32
    assert arch["kv_bytes_per_position"] == kv == 512


# -- Generation's derived timings --------------------------------------------------------------
def _gen(lengths: list[int], step_ns: list[int]) -> Generation:
    return Generation(input_tokens=10, output_tokens=sum(lengths), start_ns=0, end_ns=step_ns[-1] if step_ns else 100,
                      lengths=lengths, step_ns=step_ns)


def test_generation_timings():
    gen = _gen([4, 4], [20, 40, 60, 80])
    assert gen.steps == 4 and gen.first_token_ns == 20
    assert gen.duration_s == pytest.approx(80e-9)
    assert gen.ttft_s == pytest.approx(20e-9)
    assert gen.tpot_s == pytest.approx(20e-9)  # (80 - 20) ns over 3 steps after the first


@pytest.mark.parametrize(
    ("lengths", "step_ns", "steady"),
    [
        ([4, 4, 4], [20, 40, 60, 80], (20, 80)),  # same lengths: first token to the last step
        ([4, 2, 3], [20, 40, 60, 80], (20, 40)),  # until the shortest sequence's last token
        ([4], [20, 40, 60, 80], None),  # batch 1: no steady window
        ([4, 1], [20, 40, 60, 80], None),  # a one-token sequence: never all decoding
        ([0, 0], [], None),  # nothing generated
    ],
)
def test_generation_steady_window(lengths, step_ns, steady):
    assert _gen(lengths, step_ns).steady_window_ns() == steady


def test_one_step_has_no_time_per_output_token():
    gen = _gen([1], [20])
    assert gen.ttft_s == pytest.approx(20e-9)
    assert gen.tpot_s is None


# -- sources -----------------------------------------------------------------------------------
def test_builtin_tiny_llama_is_built_into_the_cache(tmp_path):
    b = TransformersBackend()
    info = b.load(ModelConfig(name="tiny-llama", builtin="tiny-llama"), "real", "baseline", "cpu", str(tmp_path), 0)
    try:
        assert info.precision == "fp32"
        assert (tmp_path / "models" / "tiny-llama" / ".complete").exists()
    finally:
        b.unload()


def test_prepare_builds_the_builtin_model_before_load(tmp_path):
    """The one-time build happens in prepare (unmeasured); load then finds it complete."""
    model = ModelConfig(name="tiny-llama", builtin="tiny-llama")
    b = TransformersBackend()
    assert b.prepare(model, "real", "baseline", "cpu", str(tmp_path), 0) is None
    stamp = tmp_path / "models" / "tiny-llama" / ".complete"
    assert stamp.exists()
    assert b.model is None  # prepared, not loaded
    built = stamp.read_text()
    try:
        info = b.load(model, "real", "baseline", "cpu", str(tmp_path), 0)
        assert info.precision == "fp32"
        assert stamp.read_text() == built  # not rebuilt by the load
    finally:
        b.unload()


def test_missing_path_names_the_path(tmp_path):
    with pytest.raises(BackendError, match="/nonexistent/model"):
        TransformersBackend().load(ModelConfig(name="m", path="/nonexistent/model"), "real", "baseline", "cpu",
                                   str(tmp_path), 0)


def test_unknown_weights_lists_choices(tiny_llama_dir, tmp_path):
    with pytest.raises(ConfigError, match="real, dummy"):
        TransformersBackend().load(_real(tiny_llama_dir), "bogus", "baseline", "cpu", str(tmp_path), 0)


def test_build_tiny_llama_is_idempotent(tiny_llama_dir):
    stamp = (tiny_llama_dir / ".complete").read_text()
    assert build_tiny_llama(tiny_llama_dir) == tiny_llama_dir
    assert (tiny_llama_dir / ".complete").read_text() == stamp


# -- _generated_length -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("row", "eos", "expected"),
    [
        ([5, 6, 2, 3, 3], 2, 3),  # EOS counted, padding after it not
        ([2, 3, 3], 2, 1),  # EOS first
        ([5, 6, 7], 2, 3),  # no EOS: the whole row
        ([5, 6, 2, 3], None, 4),  # ignore_eos: no EOS ids at all
        ([5, 9, 6, 2], [2, 9], 2),  # several EOS ids: the first of any
        ([5, 9, 6, 2], (2, 9), 2),
        ([], 2, 0),
    ],
)
def test_generated_length(row, eos, expected):
    assert _generated_length(row, eos) == expected
