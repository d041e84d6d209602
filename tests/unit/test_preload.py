"""A worker's background import of its first group's backend (ray.preload_backend)."""

from __future__ import annotations

import sys

from energyray.trial.process import preload_backend


def test_preload_imports_the_backend_module_in_a_thread() -> None:
    thread = preload_backend("transformers")
    assert thread is not None and thread.name == "energyray-preload"
    thread.join(timeout=120)
    assert not thread.is_alive()
    assert "energyray.backends.transformers" in sys.modules


def test_preload_of_nothing_starts_nothing() -> None:
    assert preload_backend(None) is None
    assert preload_backend("") is None


def test_a_preload_that_fails_is_left_to_load_to_report() -> None:
    thread = preload_backend("no.such.module:Backend")  # load raises the real error, with the trial's context
    assert thread is not None
    thread.join(timeout=30)
    assert not thread.is_alive()
