"""The backend protocol: load a model once per group, generate batches, unload.

A backend is plain Python (no Ray); the orchestrator runs it inside a worker actor. Its
`generate` returns token counts and timings measured around the engine's own call; energy
is the sampler's business, not the backend's.
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
    """The outcome of one batched generate call."""

    texts: list[str | None]  # decoded outputs (None: nothing meaningful to decode, e.g. dummy ids)
    input_tokens: int  # prompt tokens over the batch, padding excluded
    output_tokens: int  # generated tokens over the batch, up to and including EOS
    duration_s: float
    steps: int = 0  # decode steps: the longest row's generated tokens
    ttft_s: float | None = None  # time to the first generated token of the batch
    first_token_ns: int | None = None  # when it came, on the shared monotonic clock
    peak_memory_mb: float | None = None


class Backend(Protocol):
    name: str
    precisions: tuple[str, ...]

    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """One-time, cached work that is not part of a load (conversion, downloads); unmeasured."""
        ...

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo: ...
    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Generation: ...
    def unload(self) -> None: ...
