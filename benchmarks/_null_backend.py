"""A backend that does no work, for measuring what the orchestration itself costs
(benchmarks/scheduler.py). It loads nothing and returns one token per request at once."""

from __future__ import annotations

import time
from typing import Any

from energyray.backends.base import Generation, LoadInfo


class NullBackend:
    name = "null"

    def __init__(self) -> None:
        self.precisions: tuple[str, ...] = tuple(f"p{i}" for i in range(1000))

    def prepare(self, *args: Any) -> None:
        return None

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        return LoadInfo(precision=precision, device="cpu")

    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Generation:
        t = time.monotonic_ns()
        return Generation(input_tokens=len(prompts), output_tokens=len(prompts), start_ns=t, end_ns=t + 1,
                          lengths=[1] * len(prompts), step_ns=[t + 1])

    def decode(self, gen: Generation) -> list[str | None]:
        return [None] * len(gen.lengths)

    def unload(self) -> None:
        return None
