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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


def estimate_tokens(text: str) -> int:
    """Tokens of an English text without a tokenizer (random weights): ~4 per 3 words, the
    English BPE average."""
    return max(1, round(len(text.split()) * 4 / 3))


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


class Backend(Protocol):
    name: str
    precisions: tuple[str, ...]

    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """One-time, cached work that is not part of a load (conversion, downloads); unmeasured."""
        ...

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo: ...
    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Generation: ...
    def decode(self, gen: Generation) -> list[str | None]: ...
    def unload(self) -> None: ...
