"""constraints.txt pins every dependency that scripts/install.sh installs, so a fresh install
(and CI) gets the versions the tests passed with."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
# Installed by install.sh: the core dependencies and these extras (vllm needs a CUDA GPU).
EXTRAS = ("quant", "report", "pdu", "api", "serve", "dev", "diffusion")


def _name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"constraints.txt: {line!r} is not an exact pin (name==version)"
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_every_installed_dependency_is_pinned():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in EXTRAS:
        wanted += project["optional-dependencies"][extra]
    missing = sorted({_name(r) for r in wanted} - set(_pins()))
    assert not missing, f"not in constraints.txt: {missing}; install them and run scripts/lock.sh"


def test_torch_is_left_to_install_sh():
    assert "torch" not in _pins(), "install.sh chooses torch per machine (CPU or CUDA build)"


def test_install_script_uses_the_constraints():
    script = (ROOT / "scripts" / "install.sh").read_text()
    assert "-c constraints.txt" in script and "--latest" in script
    assert "bash scripts/install.sh --dev && python -m pytest" in (ROOT / ".ci" / "run").read_text()
