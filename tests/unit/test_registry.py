"""The lazy registry: did-you-mean errors, lazy import, and a light `import energyray`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from energyray.errors import ConfigError
from energyray.registry import BACKENDS, SAMPLERS, resolve

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_unknown_name_near_miss_suggests():
    with pytest.raises(ConfigError) as e:
        resolve("backend", BACKENDS, "transformer")
    msg = str(e.value)
    assert "Did you mean 'transformers'?" in msg
    assert "backend" in msg and "'transformer'" in msg
    for name in BACKENDS:
        assert name in msg


def test_unknown_sampler_near_miss_suggests():
    with pytest.raises(ConfigError, match="Did you mean 'nvml'"):
        resolve("sampler", SAMPLERS, "nvlm")


def test_unknown_name_far_miss_lists_choices_without_suggestion():
    with pytest.raises(ConfigError) as e:
        resolve("sampler", SAMPLERS, "zzzzzz")
    msg = str(e.value)
    assert "Did you mean" not in msg
    assert "Valid choices: codecarbon, nvml, rapl, replay." in msg


def test_resolve_imports_the_class():
    from energyray.samplers.rapl import RaplSampler

    assert resolve("sampler", SAMPLERS, "rapl") is RaplSampler


def test_import_does_not_pull_heavy_modules():
    code = (
        "import json, sys\n"
        "import energyray, energyray.registry, energyray.grid, energyray.store\n"
        "print(json.dumps(sorted(m for m in ('torch', 'ray', 'transformers', 'vllm') if m in sys.modules)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert heavy == []
