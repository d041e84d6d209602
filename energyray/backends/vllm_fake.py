"""A stand-in for the far side of the vLLM boundary, which cannot be installed here.

Classes shaped like vLLM's, with its field names, checked against its source:
`CompletionOutput` and `RequestOutput` (vllm/outputs.py, commit 003d3ee2 of
vllm-project/vllm), `RequestStateStats` (vllm/v1/metrics/stats.py, commit 28ed1fb8: engine
timestamps from the engine core's `time.monotonic()`), V0's `RequestMetrics` (vllm/sequence.py,
wall-clock times). `FakeLLM` mimics `vllm.LLM`: it records its keyword arguments, refuses
unknown ones, and its `generate` returns outputs in prompt order with metrics only when
`disable_log_stats=False` (as vLLM >= 0.11 does, vllm-project/vllm#24947); its `get_tokenizer`
loads the model's Hugging Face tokenizer, as vLLM's does for a Hugging Face model. `module()` is a
stand-in for `import vllm`. Used by tests; it measures nothing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


@dataclass
class CompletionOutput:
    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: Any = None
    finish_reason: str | None = None
    stop_reason: int | str | None = None


@dataclass
class RequestStateStats:
    """vLLM V1: engine-core timestamps are `time.monotonic()`; arrival_time is wall clock."""

    num_generation_tokens: int = 0
    arrival_time: float = 0.0
    queued_ts: float = 0.0
    scheduled_ts: float = 0.0
    first_token_ts: float = 0.0
    last_token_ts: float = 0.0
    first_token_latency: float = 0.0
    is_corrupted: bool = False


@dataclass
class RequestMetrics:
    """vLLM V0: every time is wall clock (`time.time()`)."""

    arrival_time: float
    last_token_time: float
    first_scheduled_time: float | None
    first_token_time: float | None
    time_in_queue: float | None
    finished_time: float | None = None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int] | None
    prompt_logprobs: Any
    outputs: list[CompletionOutput]
    finished: bool
    metrics: Any = None
    num_cached_tokens: int | None = None


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int | None = 16
    min_tokens: int = 0
    ignore_eos: bool = False
    seed: int | None = None
    detokenize: bool = True


# vllm.LLM's keywords that energyray may pass (EngineArgs fields of the same names).
LLM_KEYWORDS = {
    "model", "tokenizer", "skip_tokenizer_init", "trust_remote_code", "tensor_parallel_size", "dtype",
    "quantization", "seed", "gpu_memory_utilization", "enforce_eager", "max_model_len", "max_num_seqs",
    "max_num_batched_tokens", "load_format", "disable_log_stats", "enable_prefix_caching", "kv_cache_dtype",
    "swap_space", "cpu_offload_gb",
}


@dataclass
class FakeLLM:
    """`vllm.LLM` as far as energyray uses it; `step_s` is the time each fake decode step takes."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    step_s: float = 0.002
    eos_token_id: int = 2
    calls: list[tuple[list[Any], Any]] = field(default_factory=list)
    shut_down: bool = False

    @classmethod
    def create(cls, **kwargs: Any) -> FakeLLM:
        unknown = set(kwargs) - LLM_KEYWORDS
        if unknown:
            raise TypeError(f"LLM got unexpected keyword arguments {sorted(unknown)}")
        return cls(kwargs=kwargs)

    def generate(self, prompts: list[Any], sampling_params: Any = None, *, use_tqdm: bool = True) -> list[RequestOutput]:
        self.calls.append((list(prompts), sampling_params))
        params = sampling_params or SamplingParams()
        arrival, arrival_mono = time.time(), time.monotonic()
        ids_in = [p["prompt_token_ids"] if isinstance(p, dict) else [1, *(3 + len(w) for w in p.split())]
                  for p in prompts]
        n = int(params.max_tokens or 16)
        steps = []  # when each engine step's tokens came (the first step is the prefill)
        for _ in range(n):
            time.sleep(self.step_s)
            steps.append(time.monotonic())
        outputs = []
        for i, (p, ids) in enumerate(zip(prompts, ids_in, strict=True)):
            new = [5 + (i + k) % 7 for k in range(n)]
            if not params.ignore_eos and i == 0 and n > 2:  # the first request stops at EOS early
                new = [*new[:1], self.eos_token_id]
            stats = None
            if self.kwargs.get("disable_log_stats", True) is False:
                stats = RequestStateStats(num_generation_tokens=len(new), arrival_time=arrival,
                                          first_token_ts=steps[0], last_token_ts=steps[len(new) - 1],
                                          first_token_latency=steps[0] - arrival_mono)
            text = " ".join(f"w{t}" for t in new) if params.detokenize else ""
            outputs.append(RequestOutput(
                request_id=str(i), prompt=None if isinstance(p, dict) else p, prompt_token_ids=list(ids),
                prompt_logprobs=None, outputs=[CompletionOutput(0, text, new, finish_reason="stop" if len(new) < n else "length")],
                finished=True, metrics=stats, num_cached_tokens=0))
        return outputs

    def get_tokenizer(self) -> Any:
        """The model's Hugging Face tokenizer, as vLLM's engine holds it (none with skip_tokenizer_init)."""
        if self.kwargs.get("skip_tokenizer_init"):
            raise ValueError("Unable to get tokenizer because skip_tokenizer_init is True")
        from energyray.backends.transformers import load_tokenizer

        return load_tokenizer(str(self.kwargs.get("tokenizer") or self.kwargs["model"]))

    def shutdown(self) -> None:
        self.shut_down = True


def module(version: str = "0.0-fake") -> Any:
    """A stand-in for the `vllm` module: `LLM`, `SamplingParams`, `__version__`."""
    created: list[FakeLLM] = []

    def make_llm(**kwargs: Any) -> FakeLLM:
        llm = FakeLLM.create(**kwargs)
        created.append(llm)
        return llm

    return SimpleNamespace(LLM=make_llm, SamplingParams=SamplingParams, __version__=version, created=created)
