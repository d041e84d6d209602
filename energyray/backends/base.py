"""The backend protocol: load a model once per group, generate batches, unload.

A backend is plain Python (no Ray); the orchestrator runs it inside a worker actor. Its
`generate` returns token counts and timings measured around the engine's own call; energy
is the sampler's business, not the backend's.

Optional class attributes the runner reads (absent: the defaults in brackets):
`measures_local_energy` [True] -- False where the model runs elsewhere (a hosted API), so
this machine's sampler says nothing about it (`energy_reason` says why); `settings` [()] --
RunConfig sections the constructor takes by name (e.g. ("api",)); `warmup_runs` [None: the
generation config's]; `load_label`/`unload_label` [none] -- what the group's load and
unload phases are; `unload_extras` [none] -- row fields about the last unload;
`reusable_process` [True] -- False where unloading does not give the device back in-process
(vLLM's engine), so the orchestrator starts a fresh process for the next group;
`memory_in_use_mb()` [none] -- device memory the framework still holds after `unload`
(ray.reuse_workers=auto keeps the process only where it is small).

Prompts are built before a trial's window opens: `prompts(texts, prompt_tokens=...,
chat_template=..., seed=...)` applies the chat template and shapes exact lengths (tokenising
here, not inside the measured call) and returns `Prompts`, whose `inputs` go to `generate`.
A backend without its own builds them with `plain_prompts` (raw text).

An image backend (diffusers) says `modality = "image"`: the runner then calls, per prompt,
`generate_images(prompt, steps=, resolution=, guidance_scale=, images_per_prompt=, seed=)`,
which returns an `ImageGeneration`, and `save_images(gen, folder, prefix)` in the response
phase; `default_resolution()` gives the image size where the grid sets none. Text backends
need none of this (modality defaults to "text").
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from energyray.errors import ConfigError, TrialFailed

CHAT_TEMPLATES = ("auto", "on", "off")
# Backends that hold the model's tokenizer in this process, so can build prompts of exactly
# prompt_tokens tokens (an API server's tokenizer is unknown here).
PROMPT_TOKENS_BACKENDS = ("transformers", "vllm")
# An instruct/chat model's name or hub id: gemma-3-1b-it, Qwen2-7B-Instruct, llama-2-7b-chat-hf
INSTRUCT_NAME = re.compile(r"(?:^|[-_/.])(?:it|instruct|chat)(?:$|[-_/.])", re.IGNORECASE)


def estimate_tokens(text: str) -> int:
    """Tokens of an English text without a tokenizer (random weights): ~4 per 3 words, the
    English BPE average."""
    return max(1, round(len(text.split()) * 4 / 3))


@dataclass
class Prompts:
    """A trial's requests as the backend sends them, built before the trial's window opens.

    `inputs[i]` is what `generate` takes for request i: a str (raw text, or text an API
    server templates itself) or a list of token ids (the template applied, the length
    shaped). `texts[i]` is the prompt as sent, after the template ("<N random token ids>"
    for random ids); `input_tokens[i]` its tokens where known before sending (None: an API
    counts them). `chat_template` is "applied" or "none", with where the template came from
    or why none was applied.
    """

    inputs: list[Any]
    texts: list[str]
    input_tokens: list[int | None]
    chat_template: str  # "applied" | "none"
    chat_template_source: str | None = None  # e.g. "tokenizer_config.json of <dir>", "the server's ..."
    chat_template_reason: str | None = None  # why no template was applied (None when applied)


def check_chat_template(mode: str) -> None:
    if mode not in CHAT_TEMPLATES:
        raise ConfigError(f"chat_template={mode!r} is not one of: {', '.join(CHAT_TEMPLATES)}.")


def no_prompt_tokens(prompt_tokens: int | None, backend: str) -> None:
    """TrialFailed where `prompt_tokens` is set on a backend that cannot honour it."""
    if prompt_tokens is not None:
        raise TrialFailed(
            f"prompt_tokens={prompt_tokens} needs the model's tokenizer in this process to build prompts of "
            f"exactly that many tokens: backends {' and '.join(PROMPT_TOKENS_BACKENDS)} support it, "
            f"backend={backend} does not. Leave prompt_tokens unset (null) for it.")


def plain_prompts(texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                  seed: int = 0, backend: str = "this backend") -> Prompts:
    """Raw text, for a backend that applies no chat template and counts no tokens itself."""
    check_chat_template(chat_template)
    no_prompt_tokens(prompt_tokens, backend)
    if chat_template == "on":
        raise TrialFailed(f"chat_template=on: backend={backend} applies no chat template. "
                          "Use chat_template=auto or off.")
    return Prompts(inputs=list(texts), texts=list(texts), input_tokens=[None] * len(texts), chat_template="none",
                   chat_template_reason=("chat_template=off" if chat_template == "off"
                                         else f"backend={backend} applies no chat template"))


def template_decision(mode: str, model: Any, has_template: bool, where: str) -> tuple[bool, str | None]:
    """Whether to apply the tokenizer's chat template under chat_template=`mode`, and why not.

    on: apply (TrialFailed without a template); off: never; auto: where the model is an
    instruct/chat model -- the catalogue's `instruct` where set, else its tokenizer has a
    template AND its name, hub id or path says -it/instruct/chat (base models often ship
    a template too: Qwen's do).
    """
    check_chat_template(mode)
    name = getattr(model, "name", None) or "the model"
    if mode == "off":
        return False, "chat_template=off"
    if mode == "on":
        if not has_template:
            raise TrialFailed(f"chat_template=on, but the tokenizer of {name!r} ({where}) has no chat template. "
                              "Use chat_template=auto or off, or a tokenizer with one (tokenizer_config.json's "
                              "chat_template, or chat_template.jinja).")
        return True, None
    instruct = getattr(model, "instruct", None)
    if instruct is False:
        return False, (f"{name!r} is a base model (instruct: false in its catalogue entry)"
                       + ("" if has_template else "; its tokenizer has no chat template either"))
    if not has_template:
        return False, (f"the tokenizer of {name!r} ({where}) has no chat template"
                       + ("; the model is marked instruct: true, so check its tokenizer" if instruct else ""))
    if instruct:
        return True, None
    path = getattr(model, "path", None)
    names = [n for n in (name, getattr(model, "hub_id", None), Path(path).name if path else None) if n]
    if any(INSTRUCT_NAME.search(n) for n in names):
        return True, None
    return False, (f"not known to be an instruct/chat model: no -it, instruct or chat in {', '.join(names)} "
                   "and no `instruct: true` in its catalogue entry (set it, or chat_template=on)")


@dataclass
class LoadInfo:
    """What a backend actually loaded (the requested precision resolved for the device)."""

    precision: str  # as resolved: "fp32", "bf16", "int8", "nf4", ...
    device: str  # "cuda" or "cpu"
    params_b: float | None = None
    details: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, Any] = field(default_factory=dict)  # extra trial-row columns (double_quant, ...)


@dataclass
class Generation:
    """The outcome of one batched generate call. Times are on the shared monotonic clock (ns).

    An engine that steps the whole batch together reports when each step's tokens came
    (`step_ns`); one that schedules requests itself (vLLM) reports each sequence's first and
    last token times instead (`seq_first_ns`, `seq_last_ns`). The derived timings use
    whichever is there; step times win when both are.
    """

    input_tokens: int | None  # prompt tokens over the batch, padding excluded (None: not reported)
    output_tokens: int | None  # generated tokens over the batch, up to and including EOS
    start_ns: int
    end_ns: int
    lengths: list[int] = field(default_factory=list)  # generated tokens per sequence
    step_ns: list[int] = field(default_factory=list)  # when each decode step's tokens came
    peak_memory_mb: float | None = None
    new_ids: Any = None  # the generated ids, for decode()
    seq_first_ns: list[int] = field(default_factory=list)  # per sequence: its first token
    seq_last_ns: list[int] = field(default_factory=list)  # per sequence: its last token
    # Per sequence, where the backend knows them for every sequence (else empty):
    seq_input_tokens: list[int] = field(default_factory=list)  # prompt tokens, padding excluded
    seq_output_tokens: list[int] = field(default_factory=list)  # generated tokens (an API's count; its lengths count text deltas)
    seq_start_ns: list[int] = field(default_factory=list)  # when its request was sent (empty: all at start_ns)
    seq_finish_reasons: list[str | None] = field(default_factory=list)  # "length" (hit max_new_tokens) | "stop" | the server's
    extras: dict[str, Any] = field(default_factory=dict)  # backend-specific row fields (cost, retries, ttft_source)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def steps(self) -> int:
        return max(self.lengths, default=0)

    @property
    def first_token_ns(self) -> int | None:
        """When the batch's prefill was over: its first step, or the last sequence's first token."""
        if self.step_ns:
            return self.step_ns[0]
        return max(self.seq_first_ns) if self.seq_first_ns else None

    @property
    def ttft_s(self) -> float | None:
        first = self.first_token_ns
        return None if first is None else (first - self.start_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """Mean time per decode step after the first token (per sequence, averaged, when
        the engine timed sequences rather than steps)."""
        if self.step_ns:
            if len(self.step_ns) < 2:
                return None
            return (self.end_ns - self.step_ns[0]) / 1e9 / (len(self.step_ns) - 1)
        per_seq = [(last - first) / 1e9 / (n - 1) for first, last, n
                   in zip(self.seq_first_ns, self.seq_last_ns, self.lengths, strict=False) if n >= 2]
        return sum(per_seq) / len(per_seq) if per_seq else None

    def per_request(self) -> list[dict[str, Any]]:
        """One dict per sequence: input/output tokens, TTFT and latency (to its last token, from
        when its request was sent), finish reason; None where the backend did not report it."""
        n = len(self.lengths)

        def at(values: list[Any], i: int) -> Any:
            return values[i] if len(values) == n else None

        out = []
        for i in range(n):
            start = at(self.seq_start_ns, i)
            start = self.start_ns if start is None else start
            first, last = at(self.seq_first_ns, i), at(self.seq_last_ns, i)
            out.append({
                "input_tokens": at(self.seq_input_tokens, i),
                "output_tokens": at(self.seq_output_tokens, i),
                "ttft_s": None if first is None else (first - start) / 1e9,
                "latency_s": None if last is None else (last - start) / 1e9,
                "finish_reason": at(self.seq_finish_reasons, i),
            })
        return out

    def steady_window_ns(self) -> tuple[int, int] | None:
        """From the first token to the step where the first sequence finished: every
        sequence of the batch is decoding (no ramp-up, no drain). None for batch 1."""
        if len(self.lengths) < 2:
            return None
        if not self.step_ns:
            if len(self.seq_first_ns) != len(self.lengths) or len(self.seq_last_ns) != len(self.lengths):
                return None
            start, end = max(self.seq_first_ns), min(self.seq_last_ns)
            return (start, end) if min(self.lengths) >= 2 and end > start else None
        last_full = min(self.lengths) - 1
        if last_full < 1 or last_full >= len(self.step_ns):
            return None
        return self.step_ns[0], self.step_ns[last_full]


@dataclass
class ImageGeneration:
    """One text-to-image pipeline call (one prompt, its images), on the shared monotonic clock (ns).

    `encode_ns` and `decode_ns` are the text encoders' and the VAE decode's (start, end) (None:
    not seen); `step_ns` when each denoising step ended (after a device sync). The denoising
    runs from the encoders' end to the last step's end.
    """

    start_ns: int
    end_ns: int
    encode_ns: tuple[int | None, int | None]
    step_ns: list[int]
    decode_ns: tuple[int | None, int | None]
    images: list[Any]
    width: int
    height: int
    peak_memory_mb: float | None = None
    guidance_scale: float | None = None  # as the pipeline applied it

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def denoise_ns(self) -> tuple[int, int] | None:
        start = self.encode_ns[1] or self.start_ns
        return (start, self.step_ns[-1]) if self.step_ns else None

    def step_intervals(self) -> list[tuple[int, int]]:
        """Each denoising step's (start, end): from the previous step's end (the first: the encoders' end)."""
        window = self.denoise_ns
        if window is None:
            return []
        edges = [window[0], *self.step_ns]
        return list(zip(edges, edges[1:], strict=False))

    def parts(self) -> dict[str, tuple[int, int]]:
        """The call's timed phases: text_encode, denoise, vae_decode (those seen)."""
        out: dict[str, tuple[int, int]] = {}
        a, b = self.encode_ns
        if a is not None and b is not None:
            out["text_encode"] = (a, b)
        if self.denoise_ns is not None:
            out["denoise"] = self.denoise_ns
        a, b = self.decode_ns
        if a is not None and b is not None:
            out["vae_decode"] = (a, b)
        return out


class Backend(Protocol):
    name: str
    precisions: tuple[str, ...]

    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """One-time, cached work that is not part of a load (conversion, downloads); unmeasured."""
        ...

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo: ...
    def prompts(self, texts: list[str], *, prompt_tokens: int | None, chat_template: str, seed: int) -> Prompts:
        """The trial's requests, built after load and before the window (see Prompts)."""
        ...

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool) -> Generation: ...
    def decode(self, gen: Generation) -> list[str | None]: ...
    def unload(self) -> None: ...
