"""A transformers backend with faults a CPU cannot produce on demand, for the scheduler's
fault tests. Named to energyray as `backend="faulty_backend:FaultyBackend"` (registry's
module:Class form); tests put this folder on the Ray workers' PYTHONPATH.

- batch_size >= 8: the model's generate raises torch.OutOfMemoryError, as CUDA does for a
  batch too large, so TransformersBackend's own handling (free memory, status oom) runs;
- batch_size == 3: the worker process exits hard (os._exit), as a crashing CUDA kernel or
  a segfault would: every attempt of that trial kills its worker.

And two backends for ray.reuse_workers=auto: `NotReusable` (its unload does not free the device
in-process, as vLLM says of its own) and `HoldsMemory` (512 MB still allocated after unload).
"""

from __future__ import annotations

import os
from typing import Any

import torch

from energyray.backends.transformers import TransformersBackend


class FaultyBackend(TransformersBackend):
    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Any:
        if len(prompts) == 3:
            os._exit(17)
        if len(prompts) >= 8:
            real = self.model

            class _Oom:
                generation_config = real.generation_config

                def generate(self, *a: Any, **k: Any) -> Any:
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 40.00 GiB (injected)")

            self.model = _Oom()
            try:
                return super().generate(prompts, max_new_tokens, ignore_eos)
            finally:
                self.model = real
        return super().generate(prompts, max_new_tokens, ignore_eos)


class NotReusable(TransformersBackend):
    """Says its unload does not give the device back in-process, as vLLM's does."""

    reusable_process = False


class HoldsMemory(TransformersBackend):
    """Reports 512 MB of device memory still allocated after unload (over reuse_max_left_mb's 256)."""

    def memory_in_use_mb(self) -> float | None:
        return 512.0
