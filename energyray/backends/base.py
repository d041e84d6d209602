"""The backend protocol: load a model once per group, generate batches, unload.

A backend is plain Python (no Ray); the orchestrator runs it inside a worker actor. Its
`generate` returns token counts and timings measured around the engine's own call; energy
is the sampler's business, not the backend's.

Optional class attributes the runner reads (absent: the defaults in brackets):
`measures_local_energy` [True] -- False where the model runs elsewhere (a hosted API), so
this machine's sampler says nothing about it (`energy_reason` says why); `settings` [()] --
RunConfig sections the constructor takes by name (e.g. ("api",)); `warmup_runs` [None: the
generation config's]; `load_label`/`unload_label` [none] -- what the group's load and
unload phases are; `unload_extras` [none] -- row fields about the last unload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass
class LoadInfo:
    """What a backend actually loaded (the requested precision resolved for the device)."""

    precision: str  # as resolved: "fp32", "bf16", "int8", "nf4", ...
    device: str  # "cuda" or "cpu"
    params_b: float | None = None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Generation:
    """The outcome of one batched generate call. Times are on the shared monotonic clock (ns)."""

    input_tokens: int | None  # prompt tokens over the batch, padding excluded (None: not reported)
    output_tokens: int | None  # generated tokens over the batch, up to and including EOS
    start_ns: int
    end_ns: int
    lengths: list[int] = field(default_factory=list)  # generated tokens per sequence
    step_ns: list[int] = field(default_factory=list)  # when each decode step's tokens came
    peak_memory_mb: float | None = None
    new_ids: Any = None  # the generated ids, for decode()
    extras: dict[str, Any] = field(default_factory=dict)  # backend-specific row fields (cost, retries)

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    @property
    def steps(self) -> int:
        return max(self.lengths, default=0)

    @property
    def first_token_ns(self) -> int | None:
        return self.step_ns[0] if self.step_ns else None

    @property
    def ttft_s(self) -> float | None:
        return None if not self.step_ns else (self.step_ns[0] - self.start_ns) / 1e9

    @property
    def tpot_s(self) -> float | None:
        """Mean time per decode step after the first token."""
        if len(self.step_ns) < 2:
            return None
        return (self.end_ns - self.step_ns[0]) / 1e9 / (len(self.step_ns) - 1)

    def steady_window_ns(self) -> tuple[int, int] | None:
        """From the first token to the step where the first sequence finished: every
        sequence of the batch is decoding (no ramp-up, no drain). None for batch 1."""
        if len(self.lengths) < 2 or not self.step_ns:
            return None
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
