"""Make the repository root importable however pytest is started (energyray has no installed dist)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))


# after the path insertion above: energyray is imported from this checkout
import pytest  # noqa: E402

from energyray import roofline  # noqa: E402
from energyray.config import ModelConfig  # noqa: E402


@pytest.fixture
def no_bandwidth_probe(monkeypatch):
    """The roofline's CPU copy-bandwidth probe (~1 s) replaced by a fixed 20 GB/s."""
    monkeypatch.setattr(roofline, "measure_copy_bandwidth_gbs", lambda: 20.0)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> ModelConfig:
    """The built-in tiny Llama written to disk once per module, as a ModelConfig with a path."""
    from energyray.backends.transformers import build_tiny_llama

    path = build_tiny_llama(tmp_path_factory.getbasetemp() / "shared-tiny-llama")
    return ModelConfig(name="tiny-llama", path=str(path), params_b=0.0002)


@pytest.fixture(autouse=True)
def rows_follow_the_schema(monkeypatch):
    """Every row a TrialRunner returns in these tests must fit energyray/schema.py: each column
    declared, each value of its declared type (the store's strict check, without a store)."""
    from energyray.store import to_arrow
    from energyray.trial import TrialRunner

    def checked(method):
        def wrapper(self, *args, **kwargs):
            result = method(self, *args, **kwargs)
            if getattr(result, "row", None) is not None:
                to_arrow("trials", [result.row], strict=True)
                to_arrow("samples", result.samples, strict=True)
                to_arrow("responses", getattr(result, "responses", []), strict=True)
            return result
        return wrapper

    monkeypatch.setattr(TrialRunner, "run", checked(TrialRunner.run))
    monkeypatch.setattr(TrialRunner, "unload_after", checked(TrialRunner.unload_after))
