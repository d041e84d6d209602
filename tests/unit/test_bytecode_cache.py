"""ray.bytecode_cache: a worker keeps compiled bytecode under the cache directory where Python
writes none (env.bytecode_cache). Each case runs in a fresh interpreter: the setting is process-wide."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from energyray.config import bytecode_mode
from energyray.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import sys
from energyray import env
print(env.bytecode_cache(sys.argv[1], sys.argv[2]))
import probe_mod
print(probe_mod.__cached__)
"""


def _run(tmp_path: Path, mode: str, no_bytecode: bool, prefix: str | None = None) -> list[str]:
    src = tmp_path / "src"
    if not src.exists():  # written once: a rewrite in a later second would make the bytecode stale
        src.mkdir()
        (src / "probe_mod.py").write_text("VALUE = 42\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "PYTHONPYCACHEPREFIX")}
    env["PYTHONPATH"] = os.pathsep.join([str(src), str(REPO)])
    if no_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    if prefix:
        env["PYTHONPYCACHEPREFIX"] = prefix
    out = subprocess.run([sys.executable, "-c", PROBE, mode, str(tmp_path / "cache")], env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_auto_keeps_bytecode_under_the_cache_where_python_writes_none(tmp_path):
    where, cached = _run(tmp_path, "auto", no_bytecode=True)
    assert where == str(tmp_path / "cache" / "pycache")
    assert Path(cached).is_file() and Path(cached).is_relative_to(Path(where))
    assert not (tmp_path / "src" / "__pycache__").exists()  # the package's own directory is left alone
    first = Path(cached).stat().st_mtime_ns
    assert _run(tmp_path, "auto", no_bytecode=True)[1] == cached
    assert Path(cached).stat().st_mtime_ns == first  # the next process read it instead of compiling again


def test_auto_changes_nothing_where_python_writes_bytecode(tmp_path):
    where, cached = _run(tmp_path, "auto", no_bytecode=False)
    assert where.startswith("off (not needed")
    assert not (tmp_path / "cache").exists()
    assert Path(cached).parent == tmp_path / "src" / "__pycache__"


def test_false_leaves_a_no_bytecode_python_as_it_is(tmp_path):
    where, _ = _run(tmp_path, "false", no_bytecode=True)
    assert where == "off (ray.bytecode_cache=false)"
    assert not (tmp_path / "cache").exists() and not (tmp_path / "src" / "__pycache__").exists()


def test_true_keeps_a_prefix_the_user_set(tmp_path):
    mine = str(tmp_path / "mine")
    where, cached = _run(tmp_path, "true", no_bytecode=True, prefix=mine)
    assert where == mine and Path(cached).is_file() and Path(cached).is_relative_to(Path(mine))


def test_the_setting_is_checked_with_the_fix_named():
    assert bytecode_mode(True) == "true" and bytecode_mode("Auto") == "auto"
    with pytest.raises(ConfigError, match=r"ray.bytecode_cache='sometimes': use auto .*true .*false"):
        bytecode_mode("sometimes")
