"""vLLM's offline `LLM` API: the only module that imports vllm, lazily, inside methods.

A group loads one `vllm.LLM` (one engine per worker process: the scheduler gives every group
a fresh worker) and each trial is one `LLM.generate` call over the batch's prompts, so a
batch runs as one (`max_num_seqs` is the sweep's largest batch size). Precisions map to a
dtype (fp32, fp16, bf16) or to vLLM's quantisation (fp8 in flight; awq and gptq need a
checkpoint quantised that way, e.g. a catalogue entry whose hub_id is an AWQ repository;
nf4-dq is vLLM's in-flight bitsandbytes, which quantises to NF4 with double quantisation).
`weights=dummy` writes the architecture's config.json and lets vLLM make random weights
(`load_format="dummy"`), except for bitsandbytes, which quantises while reading a checkpoint:
for it a random checkpoint is saved once, as the transformers backend does. Dummy weights
have no tokenizer, so their prompts are random token ids (~4 per 3 words). `prompts()` builds
a trial's requests before its window as token ids (TokensPrompt), with the chat template and
exact lengths through the engine's own tokenizer (`LLM.get_tokenizer()`: backends/prompting.py);
`generate` takes those ids or plain text. Time to first
token and per-token times come from each request's metrics (`RequestOutput.metrics`,
filled only with `disable_log_stats=False`, which is always set here).

The pure functions (`llm_kwargs`, `sampling_kwargs`, `dummy_prompts`, `request_times`,
`parse_outputs`, `estimate_architecture`) hold the logic and are unit-tested against fakes
shaped like vLLM's classes (`energyray.backends.vllm_fake`) and, where vLLM is importable,
against vLLM's own classes.

What has NOT run (vLLM cannot be installed beside energyray's CPU torch, nor on the offline
GPU host: vLLM 0.33 pins torch 2.14.0 and transformers < 5.21): vLLM itself. Untested against
a real engine: that it accepts these keyword arguments, the fp8 / awq / gptq / bitsandbytes
paths, dummy loading from the written config, random-id prompts with skip_tokenizer_init,
the timestamps' clock (engine-core `time.monotonic()`, taken to be this process's clock on
one host: checked per request, see `request_times`), `LLM.get_tokenizer()` returning a Hugging
Face tokenizer with `apply_chat_template`, and `unload()` freeing the GPU.
"""

from __future__ import annotations

import gc
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from energyray.backends import PRECISIONS as _ALL_PRECISIONS
from energyray.backends.base import (
    Generation,
    LoadInfo,
    Prompts,
    check_chat_template,
    estimate_tokens,
)
from energyray.backends.prompting import (
    random_ids,
    random_prompts,
    template_source,
    tokenizer_prompts,
)
from energyray.errors import BackendError, ConfigError, TrialFailed

PRECISIONS = _ALL_PRECISIONS["vllm"]
INSTALL_HINT = (
    "The vLLM backend needs vLLM on the worker: pip install 'energyray[vllm]' (vllm>=0.11), on a "
    "machine with a CUDA GPU and the torch version vLLM pins (vLLM 0.33 pins torch 2.14.0 and "
    "transformers<5.21: give it its own environment if yours differ)."
)
_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}
# precision -> (vLLM quantization, dtype of the unquantised parts and activations)
_QUANTIZATION = {
    "fp8": ("fp8", "bfloat16"),
    "awq": ("awq", "float16"),  # vLLM's AWQ kernels take fp16 activations only
    "gptq": ("gptq", "float16"),
    "nf4-dq": ("bitsandbytes", "bfloat16"),  # in flight: NF4 with double quantisation
}
_BYTES = {"float32": 4.0, "float16": 2.0, "bfloat16": 2.0, "fp8": 1.0, "awq": 0.5, "gptq": 0.5, "bitsandbytes": 0.5}
DEFAULT_MAX_MODEL_LEN = 4096  # the prompts and answers measured here are far shorter
CLOCK_SLACK_NS = 1_000_000  # an engine timestamp this far outside the generate call is not our clock


def resolve_precision(precision: str) -> tuple[str, str, str | None]:
    """(precision as resolved, vLLM dtype, vLLM quantization or None). baseline is bf16."""
    if precision not in PRECISIONS:
        raise ConfigError(f"Precision {precision!r} is not supported by the vllm backend. "
                          f"Valid choices: {', '.join(PRECISIONS)}.")
    name = "bf16" if precision == "baseline" else precision
    if name in _QUANTIZATION:
        quant, dtype = _QUANTIZATION[name]
        return name, dtype, quant
    return name, _DTYPES[name], None


def quantization_columns(precision: str) -> dict[str, Any]:
    """Row columns for a resolved precision, named as the transformers backend names them."""
    _, _, quant = resolve_precision(precision)
    return {"quant_method": quant,
            "quant_type": {"bitsandbytes": "nf4", "fp8": "fp8"}.get(quant or ""),  # awq/gptq: the checkpoint's
            "double_quant": True if quant == "bitsandbytes" else None}


def llm_kwargs(model: Any, weights: str, precision: str, seed: int, options: Any, source: str) -> dict[str, Any]:
    """Keyword arguments for `vllm.LLM(...)`: the model at `source` (a path or Hub id) at a
    precision, with the `vllm:` config section's options. `options.engine_args` win."""
    if options.tensor_parallel_size != 1:
        raise ConfigError(f"vllm.tensor_parallel_size={options.tensor_parallel_size}: energyray gives each "
                          "worker one GPU, so only 1 runs for now. Use a quantised precision (fp8, nf4-dq) "
                          "to fit a large model on one GPU.")
    _, dtype, quant = resolve_precision(precision)
    kw: dict[str, Any] = {
        "model": source,
        "dtype": dtype,
        "seed": seed,
        "gpu_memory_utilization": options.gpu_memory_utilization,
        "enforce_eager": options.enforce_eager,
        "enable_prefix_caching": options.enable_prefix_caching,
        "kv_cache_dtype": options.kv_cache_dtype,
        "tensor_parallel_size": 1,
        "trust_remote_code": bool(getattr(model, "trust_remote_code", False)),
        # Per-request timings (RequestOutput.metrics) exist only with stats on (vLLM >= 0.11).
        "disable_log_stats": False,
    }
    if quant is not None:
        kw["quantization"] = quant
    if options.max_num_seqs:
        kw["max_num_seqs"] = options.max_num_seqs
    if options.max_num_batched_tokens:
        kw["max_num_batched_tokens"] = options.max_num_batched_tokens
    context = (getattr(model, "architecture", None) or {}).get("max_position_embeddings")
    max_len = options.max_model_len or (min(DEFAULT_MAX_MODEL_LEN, int(context)) if context else None)
    if max_len:
        kw["max_model_len"] = max_len
    if weights == "dummy":
        kw["skip_tokenizer_init"] = True  # no tokenizer: prompts are token ids
        if quant != "bitsandbytes":  # bitsandbytes reads (and quantises) a saved random checkpoint
            kw["load_format"] = "dummy"
    elif getattr(model, "gguf_file", None) and not getattr(model, "gguf_package", None) and model.hub_id:
        kw["tokenizer"] = model.hub_id  # vLLM takes a GGUF's tokenizer from its original repository
    kw.update(dict(options.engine_args or {}))
    return kw


def sampling_kwargs(max_new_tokens: int, ignore_eos: bool, seed: int, detokenize: bool) -> dict[str, Any]:
    """Keyword arguments for `vllm.SamplingParams(...)`: greedy, one completion per prompt."""
    kw: dict[str, Any] = {"n": 1, "temperature": 0.0, "max_tokens": max_new_tokens, "ignore_eos": ignore_eos,
                          "seed": seed, "detokenize": detokenize}
    if ignore_eos:
        kw["min_tokens"] = max_new_tokens  # no stop token (the generation config's included) ends it early
    return kw


def dummy_prompts(texts: list[str], vocab_size: int, seed: int) -> list[dict[str, list[int]]]:
    """Random token-id prompts (vLLM's TokensPrompt) as long as the texts would be."""
    return [{"prompt_token_ids": ids} for ids in random_ids([estimate_tokens(t) for t in texts], vocab_size, seed)]


def request_times(metrics: Any, start_ns: int, end_ns: int, wall_minus_mono_ns: int) -> tuple[int | None, int | None, str | None]:
    """(first token, last token) of one request on this process's monotonic clock (ns), and
    why not where they are unknown.

    vLLM >= 0.11 (V1) attaches `RequestStateStats`: `first_token_ts`, `last_token_ts` are the
    engine core's `time.monotonic()` (vllm/v1/metrics/stats.py, vllm/v1/engine/__init__.py),
    the same clock as ours on one host; a time outside the generate call means another clock,
    and then only `first_token_latency` (since arrival) is used. vLLM V0 attached
    `RequestMetrics` with wall-clock `first_token_time`, `finished_time` (vllm/sequence.py).
    """
    if metrics is None:
        return None, None, ("vLLM returned no request metrics (RequestOutput.metrics is None: vLLM < 0.11, "
                            "or disable_log_stats=True in vllm.engine_args)")
    if hasattr(metrics, "first_token_ts"):
        first_s, last_s = float(metrics.first_token_ts or 0.0), float(getattr(metrics, "last_token_ts", 0.0) or 0.0)
        if first_s <= 0:
            return None, None, "vLLM recorded no first-token time for this request"
        first, last = int(first_s * 1e9), int(last_s * 1e9) if last_s > 0 else None
        if start_ns - CLOCK_SLACK_NS <= first <= end_ns + CLOCK_SLACK_NS:
            return first, last, None
        latency = float(getattr(metrics, "first_token_latency", 0.0) or 0.0)
        reason = "the engine's timestamps are not on this process's monotonic clock"
        if latency > 0:
            return start_ns + int(latency * 1e9), None, reason + ": first token from first_token_latency, no last token"
        return None, None, reason
    if hasattr(metrics, "first_token_time"):  # V0: wall clock
        first_w = metrics.first_token_time
        last_w = getattr(metrics, "finished_time", None) or getattr(metrics, "last_token_time", None)
        if not first_w:
            return None, None, "vLLM recorded no first-token time for this request"
        first = int(first_w * 1e9) - wall_minus_mono_ns
        last = int(last_w * 1e9) - wall_minus_mono_ns if last_w else None
        return first, last, None
    return None, None, f"unknown vLLM metrics type {type(metrics).__name__}"


@dataclass
class Completions:
    """What `parse_outputs` keeps of vLLM's outputs for decode(): ids and text per sequence."""

    token_ids: list[list[int]] = field(default_factory=list)
    texts: list[str | None] = field(default_factory=list)


def parse_outputs(outputs: list[Any], start_ns: int, end_ns: int, wall_minus_mono_ns: int,
                  detokenized: bool = True) -> Generation:
    """`LLM.generate`'s RequestOutputs (in prompt order) -> a Generation.

    Tokens: `len(prompt_token_ids)` and `len(outputs[0].token_ids)` per request (EOS included,
    as vLLM keeps it in token_ids). Times: each request's first and last token
    (`request_times`); when any request lacks them, none are used and `timing_reason` says why.
    """
    lengths, prompt_tokens, firsts, lasts, cached = [], 0, [], [], 0
    seq_in: list[int] = []
    finish: list[str | None] = []
    done = Completions()
    reasons: list[str] = []
    for out in outputs:
        completion = out.outputs[0]
        ids = list(completion.token_ids)
        lengths.append(len(ids))
        seq_in.append(len(out.prompt_token_ids or []))
        prompt_tokens += seq_in[-1]
        finish.append(getattr(completion, "finish_reason", None))
        cached += int(getattr(out, "num_cached_tokens", 0) or 0)
        done.token_ids.append(ids)
        done.texts.append(completion.text if detokenized else None)
        first, last, reason = request_times(getattr(out, "metrics", None), start_ns, end_ns, wall_minus_mono_ns)
        firsts.append(first)
        lasts.append(last)
        if reason:
            reasons.append(reason)
    have_first = all(f is not None for f in firsts) and bool(firsts)
    have_last = have_first and all(x is not None for x in lasts)
    seq_first = [int(f) for f in firsts if f is not None] if have_first else []
    seq_last = [int(x) for x in lasts if x is not None] if have_last else []
    columns: dict[str, Any] = {
        "ttft_source": "vllm_request_metrics" if have_first else None,
        "ttft_mean_s": sum(f - start_ns for f in seq_first) / len(seq_first) / 1e9 if seq_first else None,
        "timing_reason": "; ".join(sorted(set(reasons))) or None,
        "cached_prompt_tokens": cached,  # prefix-cache hits: prefill skipped for these
    }
    return Generation(
        input_tokens=prompt_tokens, output_tokens=sum(lengths), start_ns=start_ns, end_ns=end_ns,
        lengths=lengths, seq_first_ns=seq_first, seq_last_ns=seq_last,
        peak_memory_mb=None, new_ids=done, extras=columns,
        seq_input_tokens=seq_in, seq_output_tokens=list(lengths), seq_finish_reasons=finish,
    )


def estimate_architecture(model: Any, precision: str) -> dict[str, Any]:
    """The roofline's figures from the catalogue (vLLM does not expose its weights' bytes):
    weights read per decode step (the input embedding only for its looked-up rows) and KV
    bytes per position. An estimate: quantised layers at their nominal bits, scales ignored."""
    arch = dict(getattr(model, "architecture", None) or {})
    _, dtype, quant = resolve_precision(precision)
    params_b = getattr(model, "params_b", None)
    out: dict[str, Any] = {"weight_bytes": None, "kv_bytes_per_position": None,
                           "model_type": arch.get("model_type"), "source": "estimated from the catalogue"}
    if not params_b or not arch.get("hidden_size") or not arch.get("vocab_size"):
        return out
    act = _BYTES[dtype]
    body_b = _BYTES[quant] if quant else act
    emb = int(arch["vocab_size"]) * int(arch["hidden_size"])
    tied = bool(arch.get("tie_word_embeddings", False))
    head = 0 if tied else emb
    body = params_b * 1e9 - emb - head
    # The output head is read whole each step (the tied embedding is that head); it stays unquantised.
    out["weight_bytes"] = int(body * body_b + emb * act)
    layers, heads = arch.get("num_hidden_layers"), arch.get("num_attention_heads")
    kv_heads = arch.get("num_key_value_heads") or heads
    head_dim = arch.get("head_dim") or (int(arch["hidden_size"]) // int(heads) if heads else None)
    if layers and kv_heads and head_dim and arch.get("model_type") not in ("mamba", "mamba2"):
        out["kv_bytes_per_position"] = int(2 * layers * kv_heads * head_dim * act)
    return out


def _import_vllm() -> Any:
    try:
        import vllm
    except ImportError as e:
        raise BackendError(f"{INSTALL_HINT} (import vllm: {type(e).__name__}: {e})") from e
    return vllm


def _is_oom(e: BaseException) -> bool:
    text = f"{type(e).__name__} {e}".lower()
    return "out of memory" in text or "outofmemory" in text


class VllmBackend:
    name = "vllm"
    precisions = PRECISIONS

    settings = ("vllm",)  # the RunConfig section it is given (trial.TrialRunner)
    # vLLM's engine does not reliably give the GPU back in-process (worker processes, NCCL,
    # CUDA graphs): the next group gets a fresh worker process
    reusable_process = False

    def __init__(self, vllm: Any = None) -> None:
        from energyray.config import VllmConfig

        self.options = vllm if vllm is not None else VllmConfig()
        self.llm: Any = None
        self.model: Any = None
        self.precision = "bf16"
        self.kwargs: dict[str, Any] = {}
        self._source: str | None = None
        self._text = True  # prompts are text (a tokenizer) or random ids (dummy weights)
        self._vocab = 0
        self._seed = 0

    # -- loading -----------------------------------------------------------------------------
    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """Refuse early where vLLM is missing or the device is a CPU; then the one-time work:
        the dummy model's config directory (or random checkpoint), the GGUF package's copy."""
        _import_vllm()
        if device == "cpu":
            raise ConfigError("The vllm backend runs on CUDA GPUs: use device=auto or device=cuda on a GPU worker.")
        if weights not in ("real", "dummy"):
            raise ConfigError(f"weights={weights!r} is not one of: real, dummy.")
        _, _, quant = resolve_precision(precision)
        # transformers (and torch) write the configs and random checkpoints; vLLM depends on both.
        from energyray.backends import transformers as hf

        if weights == "dummy":
            if quant == "bitsandbytes":
                self._source = str(hf.dummy_checkpoint(model, "bf16", cache_dir, seed, device="auto"))
            else:
                self._source = str(hf.dummy_config_dir(model, cache_dir))
        else:
            source = hf.real_source(model, cache_dir)
            if model.gguf_file and not model.gguf_package and model.path:
                source = str(Path(source) / model.gguf_file)
            self._source = source

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        vllm = _import_vllm()
        if self._source is None:
            self.prepare(model, weights, precision, device, cache_dir, seed)
        assert self._source is not None
        resolved, dtype, _ = resolve_precision(precision)
        self.kwargs = llm_kwargs(model, weights, precision, seed, self.options, self._source)
        self.model, self.precision, self._seed = model, resolved, seed
        self._text = not self.kwargs.get("skip_tokenizer_init", False)
        self._vocab = int((model.architecture or {}).get("vocab_size") or 0)
        try:
            self.llm = vllm.LLM(**self.kwargs)
        except Exception as e:
            if _is_oom(e):
                raise TrialFailed(f"vLLM ran out of GPU memory loading {model.name}: {e}", status="oom") from e
            raise BackendError(f"vLLM could not load {model.name} ({self._source}): {type(e).__name__}: {e}") from e
        return LoadInfo(
            precision=resolved, device="cuda", params_b=getattr(model, "params_b", None),
            columns={**quantization_columns(resolved), "vllm_max_num_seqs": self.kwargs.get("max_num_seqs")},
            details={"source": self._source, "dtype": dtype, "llm_kwargs": self.kwargs,
                     "vllm": getattr(vllm, "__version__", None), "params_b_source": "catalogue",
                     "tokenizer": "the model's" if self._text else "none: random token ids"},
        )

    # -- prompts -----------------------------------------------------------------------------
    def prompts(self, texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                seed: int = 0) -> Prompts:
        """The trial's requests as token ids, through the engine's tokenizer (its chat template
        per `chat_template`, exactly `prompt_tokens` long where set); random ids for dummy weights."""
        if self.llm is None:
            raise BackendError("prompts() before load()")
        check_chat_template(chat_template)
        if not self._text:
            why = ("random weights (weights=dummy) with prompt_tokens: random token ids" if prompt_tokens is not None
                   else "random weights without a tokenizer: random token ids")
            return random_prompts(texts, vocab_size=self._vocab, seed=seed, prompt_tokens=prompt_tokens,
                                  chat_template=chat_template, why=why)
        get = getattr(self.llm, "get_tokenizer", None)
        if not callable(get):
            raise BackendError("this vLLM's LLM has no get_tokenizer(): cannot apply chat templates or prompt_tokens")
        source = str(self.kwargs.get("tokenizer") or self._source)
        context = self.kwargs.get("max_model_len")
        return tokenizer_prompts(texts, get(), model=self.model, prompt_tokens=prompt_tokens,
                                 chat_template=chat_template, source=f"{template_source(source)}, through vLLM",
                                 context=int(context) if context else None)

    # -- generation --------------------------------------------------------------------------
    def concurrent_feed(self, batch_size: int) -> str | None:
        """None where the engine keeps batch_size sequences in flight over all of a trial's
        requests (its max_num_seqs is batch_size); else why the requests go in static batches."""
        seqs = self.kwargs.get("max_num_seqs")
        if seqs == batch_size:
            return None
        return (f"vllm.max_num_seqs={seqs} (fixed when the engine loads) is not batch_size={batch_size}: "
                "static batches of batch_size")

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool,
                 concurrency: int | None = None) -> Generation:
        """One `LLM.generate` call: `prompts` are texts or token-id lists (Prompts.inputs)."""
        if self.llm is None:
            raise BackendError("generate() before load()")
        vllm = _import_vllm()
        params = vllm.SamplingParams(**sampling_kwargs(max_new_tokens, ignore_eos, self._seed, self._text))
        if prompts and not isinstance(prompts[0], str):  # token ids from prompts()
            inputs: list[Any] = [{"prompt_token_ids": list(p)} for p in prompts]
        else:
            inputs = list(prompts) if self._text else dummy_prompts(prompts, self._vocab, self._seed)
        wall_minus_mono_ns = time.time_ns() - time.monotonic_ns()
        t0 = time.monotonic_ns()
        try:
            outputs = self.llm.generate(inputs, params, use_tqdm=False)
        except Exception as e:
            if _is_oom(e):
                raise TrialFailed(f"vLLM ran out of GPU memory: {e}", status="oom") from e
            raise
        t1 = time.monotonic_ns()
        return parse_outputs(list(outputs), t0, t1, wall_minus_mono_ns, detokenized=self._text)

    def decode(self, gen: Generation) -> list[str | None]:
        """The text vLLM detokenised while generating (None per sequence for dummy weights)."""
        done = gen.new_ids
        if not isinstance(done, Completions):
            return [None] * len(gen.lengths)
        return list(done.texts)

    def architecture(self) -> dict[str, Any]:
        return estimate_architecture(self.model, self.precision) if self.model is not None else {}

    def unload(self) -> None:
        """Shut the engine down where vLLM offers a way; the worker process ends with its group anyway."""
        llm, self.llm = self.llm, None
        engine_core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
        shutdown = getattr(llm, "shutdown", None) or getattr(engine_core, "shutdown", None)
        if callable(shutdown):
            try:
                shutdown()
            except Exception:
                pass  # the engine is being dropped either way
        del llm, engine_core, shutdown
        gc.collect()
