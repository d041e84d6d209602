"""A transformers backend whose `generate` first waits until N trials are generating, so that
trials on concurrent workers surely overlap: the node-sampler tests need overlapping windows.
Named to energyray as `backend="rendezvous_backend:RendezvousBackend"`; each call leaves a
file in $ENERGYRAY_TEST_RENDEZVOUS and waits (at most 60 s) until N files are there
($ENERGYRAY_TEST_RENDEZVOUS_N, default 2). The test empties the folder before each sweep.
"""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

from energyray.backends.transformers import TransformersBackend


class RendezvousBackend(TransformersBackend):
    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool) -> Any:
        folder = Path(os.environ["ENERGYRAY_TEST_RENDEZVOUS"])
        n = int(os.environ.get("ENERGYRAY_TEST_RENDEZVOUS_N", "2"))
        (folder / f"{os.getpid()}-{uuid.uuid4().hex}").touch()
        deadline = time.monotonic() + 60
        while len(list(folder.iterdir())) < n and time.monotonic() < deadline:
            time.sleep(0.005)
        return super().generate(prompts, max_new_tokens, ignore_eos)
