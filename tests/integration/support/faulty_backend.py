"""A transformers backend with faults a CPU cannot produce on demand, for the scheduler's
fault tests. Named to energyray as `backend="faulty_backend:FaultyBackend"` (registry's
module:Class form); tests put this folder on the Ray workers' PYTHONPATH.

- batch_size >= 8: the model's generate raises torch.OutOfMemoryError, as CUDA does for a
  batch too large, so TransformersBackend's own handling (free memory, status oom) runs;
- batch_size == 3: the worker process exits hard (os._exit), as a crashing CUDA kernel or
  a segfault would: every attempt of that trial kills its worker.
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
