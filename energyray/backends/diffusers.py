"""Hugging Face diffusers: the only module that imports diffusers.

Text-to-image pipelines (Stable Diffusion 1.5 / 2.1, SDXL, SD 3.5) loaded once per group at
fp32, fp16 or bf16, from a local directory or a Hub id (`weights=real`), or built with random
weights from the catalogue entry's `architecture` (`weights=dummy`: every component from its
config, nothing downloaded). A random-weights pipeline gets the model's own tokenizer where it
is in the local Hugging Face cache, else a byte-level BPE tokenizer energyray trains offline on
a few sentences: prompts are padded or cut to the text encoder's length (77 for CLIP), so the
encoders do the same work as with the real tokenizer.

`generate_images` times the pipeline's phases on the shared monotonic clock: the text encoders
(around the pipeline's `encode_prompt`), each denoising step (the `callback_on_step_end`
callback, after a device sync) and the VAE decode (around `vae.decode`).
"""

from __future__ import annotations

import copy
import os
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import diffusers
import torch
import transformers

from energyray.backends import PRECISIONS as _ALL_PRECISIONS
from energyray.backends.base import ImageGeneration, LoadInfo, Prompts, plain_prompts
from energyray.backends.transformers import free_memory, memory_in_use_mb, torch_device
from energyray.errors import BackendError, ConfigError, TrialFailed

PRECISIONS = _ALL_PRECISIONS["diffusers"]
_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# The components a pipeline is built from, by the key in the catalogue's `architecture`.
_DIFFUSERS_PARTS = ("unet", "transformer", "vae")
_TEXT_PARTS = ("text_encoder", "text_encoder_2", "text_encoder_3")
_TOKENIZERS = {"text_encoder": "tokenizer", "text_encoder_2": "tokenizer_2", "text_encoder_3": "tokenizer_3"}

warnings.filterwarnings("ignore", message=".*invalid value encountered in cast.*")  # NaN pixels of random weights


def resolve_precision(precision: str, device: str) -> tuple[str, torch.dtype]:
    """The precision used and its dtype. `baseline`: fp16 on a GPU (how SD pipelines are run), fp32
    on a CPU. fp8 and int8 are refused: diffusers has no simple in-flight path for them here."""
    if precision not in PRECISIONS:
        extra = (" diffusers has no simple in-flight fp8/int8 path (it needs torchao or a quantised "
                 "checkpoint): use fp32, fp16 or bf16." if precision in ("fp8", "int8") else "")
        raise ConfigError(f"Precision {precision!r} is not supported by the diffusers backend. "
                          f"Valid choices: {', '.join(PRECISIONS)}.{extra}")
    name = ("fp16" if device == "cuda" else "fp32") if precision == "baseline" else precision
    return name, _DTYPES[name]


def build_tokenizer(max_length: int, vocab_size: int = 1000) -> Any:
    """A byte-level BPE tokenizer trained offline on the thesis' prompts (~0.1 s): for random
    weights, where the model's own tokenizer is not in the local cache."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    from energyray.tasks import QA, THESIS_IMAGE_PROMPT, THESIS_PROMPT

    bpe = Tokenizer(models.BPE(unk_token="<|endoftext|>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [THESIS_IMAGE_PROMPT, THESIS_PROMPT, *(q + " " + a for q, a in QA)] * 4
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|startoftext|>", "<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    bpe.train_from_iterator(corpus, trainer)
    bpe.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A <|endoftext|>", special_tokens=[("<|startoftext|>", 0), ("<|endoftext|>", 1)])
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|startoftext|>", eos_token="<|endoftext|>", unk_token="<|endoftext|>",
        pad_token="<|endoftext|>", model_max_length=max_length)


def _part(key: str, spec: dict[str, Any], device: str, dtype: torch.dtype) -> Any:
    """One random-init component from its config (`_class_name` names the class)."""
    spec = copy.deepcopy(dict(spec))
    name = spec.pop("_class_name", None)
    if not name:
        raise ConfigError(f"architecture.{key} has no `_class_name` (e.g. UNet2DConditionModel, CLIPTextModel).")
    with torch.device(device):
        if key in _DIFFUSERS_PARTS:
            return getattr(diffusers, name).from_config(spec).to(dtype)
        cls = getattr(transformers, name)
        return cls(cls.config_class(**spec)).to(dtype)


def dummy_pipeline(model: Any, dtype: torch.dtype, device: str, seed: int) -> tuple[Any, str]:
    """A random-init pipeline of the catalogue model's `architecture`, and what its tokenizers are."""
    arch = dict(model.architecture or {})
    if not arch.get("pipeline"):
        raise ConfigError(f"Model {model.name!r} has no `architecture.pipeline` (e.g. StableDiffusionPipeline) "
                          "in conf/model/, so weights=dummy cannot build it with the diffusers backend.")
    torch.manual_seed(seed)
    parts: dict[str, Any] = {}
    kinds = []
    for enc, tok in _TOKENIZERS.items():
        if enc not in arch:
            continue
        length = int((arch.get(tok) or {}).get("model_max_length", 77))
        parts[tok], kind, own = _tokenizer(model, tok, length)
        kinds.append(f"{tok}: {kind}")
        if not own:  # the encoder pools at its tokenizer's end-of-text id: the built one's
            ids = {"bos_token_id": parts[tok].bos_token_id, "eos_token_id": parts[tok].eos_token_id,
                   "pad_token_id": parts[tok].pad_token_id}
            arch[enc] = {**dict(arch[enc]), **ids}
    for key in (*_DIFFUSERS_PARTS, *_TEXT_PARTS):
        if key in arch:
            parts[key] = _part(key, arch[key], device, dtype)
    sched = dict(arch.get("scheduler") or {})
    if not sched.get("_class_name"):
        raise ConfigError(f"Model {model.name!r}: architecture.scheduler needs a `_class_name`.")
    parts["scheduler"] = getattr(diffusers, sched.pop("_class_name")).from_config(sched)
    pipe = getattr(diffusers, arch["pipeline"])(**parts, **dict(arch.get("pipeline_args") or {}))
    return pipe, "; ".join(kinds)


def _tokenizer(model: Any, sub: str, length: int) -> tuple[Any, str, bool]:
    """The model's own tokenizer from the local Hugging Face cache, else one built offline; what
    it is; whether it is the model's own."""
    if model.hub_id:
        try:
            tok = transformers.AutoTokenizer.from_pretrained(model.hub_id, subfolder=sub, local_files_only=True)
            return tok, f"{model.hub_id} (local cache)", True
        except Exception:
            pass
    return build_tokenizer(length), f"byte-level BPE built offline, padded to {length} tokens", False


class DiffusersBackend:
    """Text-to-image generation: each request is one prompt, `images_per_prompt` images from it."""

    name = "diffusers"
    precisions = PRECISIONS
    modality = "image"  # the runner takes the image path (TrialRunner._run_images)

    def __init__(self) -> None:
        self.pipe: Any = None
        self.device = "cpu"
        self.weights = "real"
        self._seed = 0

    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """Nothing to convert: random weights are built in load, real ones read by from_pretrained."""
        resolve_precision(precision, torch_device(device))

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        self.device = torch_device(device)
        resolved, dtype = resolve_precision(precision, self.device)
        self._seed, self.weights = seed, weights
        if weights == "dummy" or (weights == "real" and model.builtin == "sd-tiny"):  # sd-tiny is built random
            self.pipe, tokenizers = dummy_pipeline(model, dtype, self.device, seed)
            source = f"random init of {model.name} ({model.architecture.get('pipeline')}), seed {seed}"
        elif weights == "real":
            source = self._real_source(model)
            try:
                self.pipe = diffusers.DiffusionPipeline.from_pretrained(source, torch_dtype=dtype)
            except (OSError, ValueError) as e:
                raise BackendError(f"Cannot load {source!r}: {e}. Offline? Give the model a local `path`, "
                                   "or use weights=dummy.") from e
            self.pipe.to(self.device)
            tokenizers = "the model's own"
        else:
            raise ConfigError(f"weights={weights!r} is not one of: real, dummy.")
        if getattr(self.pipe, "safety_checker", None) is not None:
            self.pipe.safety_checker = None  # an image classifier outside the measured generation
        self.pipe.set_progress_bar_config(disable=True)
        if self.device == "cpu":
            torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
        params = sum(p.numel() for c in self.pipe.components.values() if isinstance(c, torch.nn.Module)
                     for p in c.parameters()) / 1e9
        return LoadInfo(precision=resolved, device=self.device, params_b=round(params, 4), details={
            "source": source, "pipeline": type(self.pipe).__name__, "dtype": str(dtype).removeprefix("torch."),
            "tokenizers": tokenizers, "scheduler": type(self.pipe.scheduler).__name__,
            "diffusers": diffusers.__version__, "transformers": transformers.__version__, "torch": torch.__version__,
            "cuda": torch.version.cuda})

    @staticmethod
    def _real_source(model: Any) -> str:
        if model.path:
            if not Path(model.path).exists():
                raise BackendError(f"Model {model.name!r}: path {model.path} does not exist.")
            return str(model.path)
        if model.hub_id:
            return str(model.hub_id)
        raise ConfigError(f"Model {model.name!r} has no path or hub_id for weights=real. Give one, or run it "
                          "with weights=dummy.")

    def default_resolution(self) -> int:
        """The pipeline's native image size (its default height)."""
        pipe = self.pipe
        net = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        size = getattr(net.config, "sample_size", 64) if net is not None else 64
        return int(size) * int(getattr(pipe, "vae_scale_factor", 8))

    def prompts(self, texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                seed: int = 0) -> Prompts:
        return plain_prompts(texts, prompt_tokens=prompt_tokens, chat_template=chat_template, seed=seed,
                             backend=self.name)

    def _sync(self) -> None:
        if self.device == "cuda":
            torch.cuda.synchronize()

    def generate_images(self, prompt: str, *, steps: int, resolution: int, guidance_scale: float | None,
                        images_per_prompt: int, seed: int) -> ImageGeneration:
        """One pipeline call: `images_per_prompt` images of `prompt`, each phase timed."""
        if self.pipe is None:
            raise BackendError("generate_images() before load()")
        pipe, marks = self.pipe, dict[str, int]()
        encode, decode = pipe.encode_prompt, pipe.vae.decode
        step_ns: list[int] = []

        def timed(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self._sync()
                marks.setdefault(f"{name}_start", time.monotonic_ns())
                out = fn(*args, **kwargs)
                self._sync()
                marks[f"{name}_end"] = time.monotonic_ns()
                return out
            return wrapper

        def on_step(_pipe: Any, _i: int, _t: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            self._sync()
            step_ns.append(time.monotonic_ns())
            return kwargs

        kwargs: dict[str, Any] = {"num_inference_steps": steps, "height": resolution, "width": resolution,
                                  "num_images_per_prompt": images_per_prompt, "callback_on_step_end": on_step,
                                  "generator": torch.Generator(device=self.device).manual_seed(seed)}
        if guidance_scale is not None:
            kwargs["guidance_scale"] = guidance_scale
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        pipe.encode_prompt = timed("encode", encode)
        pipe.vae.decode = timed("decode", decode)
        try:
            self._sync()
            t0 = time.monotonic_ns()
            with torch.inference_mode():
                out = pipe(prompt, **kwargs)
            self._sync()
            t1 = time.monotonic_ns()
        except torch.OutOfMemoryError as e:
            self._free()
            raise TrialFailed(f"CUDA out of memory: {e}", status="oom") from e
        finally:
            del pipe.encode_prompt, pipe.vae.decode  # the class's methods again
        peak = (torch.cuda.max_memory_allocated() / 2**20 if self.device == "cuda"
                else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
        return ImageGeneration(
            start_ns=t0, end_ns=t1, encode_ns=(marks.get("encode_start"), marks.get("encode_end")),
            step_ns=step_ns, decode_ns=(marks.get("decode_start"), marks.get("decode_end")),
            images=list(out.images), width=resolution, height=resolution, peak_memory_mb=peak,
            guidance_scale=getattr(pipe, "guidance_scale", guidance_scale))

    @staticmethod
    def save_images(gen: ImageGeneration, folder: Path, prefix: str) -> list[str]:
        """The call's images as PNG files `<prefix>-<k>.png` in `folder`; their names."""
        names = []
        for k, image in enumerate(gen.images):
            name = f"{prefix}-{k}.png"
            image.save(folder / name)
            names.append(name)
        return names

    def unload(self) -> None:
        self.pipe = None
        self._free()

    def memory_in_use_mb(self) -> float | None:
        return memory_in_use_mb(self.device)

    @staticmethod
    def _free() -> None:
        free_memory()
