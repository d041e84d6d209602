"""Every dated table energyray ships (each YAML under conf/footprint/ and conf/prices/): every row
carries `as_of` (when the figure holds) and `source` (where it comes from), its own or one its
table (or a group above it) gives for all its rows, as energyray.prices reads them. A row is a
mapping with a number in it; mappings of mappings are groups of rows."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from energyray import paths

DIRS = ("footprint", "prices")
REQUIRED = ("as_of", "source")


def tables() -> list[Path]:
    return sorted(p for d in DIRS for p in (paths.conf_dir() / d).glob("*.yaml"))


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def problems(path: Path) -> tuple[int, list[str]]:
    """(rows found, one line per row missing as_of or source)."""
    data = yaml.safe_load(path.read_text())
    if not isinstance(data, dict):
        return 0, [f"{path.name}: not a mapping"]
    found, bad = 0, []

    def walk(node: Any, where: str, inherited: dict[str, Any]) -> None:
        nonlocal found
        if isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, f"{where}[{i}]", inherited)
            return
        if not isinstance(node, dict):
            return
        here = {**inherited, **{k: node[k] for k in REQUIRED if node.get(k) not in (None, "")}}
        if any(_is_number(v) for v in node.values()):  # a row
            found += 1
            missing = [k for k in REQUIRED if not here.get(k)]
            if missing:
                bad.append(f"{path.name}: {where} has no {' or '.join(missing)}")
            return
        for k, v in node.items():
            walk(v, f"{where}.{k}" if where else str(k), here)

    top = {k: data[k] for k in REQUIRED if data.get(k)}
    for key, value in data.items():
        if isinstance(value, (dict, list)):
            walk(value, str(key), top)
    return found, bad


def test_there_are_tables_to_check():
    names = {p.relative_to(paths.conf_dir()).as_posix() for p in tables()}
    assert {"footprint/intensity.yaml", "footprint/embodied_gpu.yaml", "prices/openai.yaml"} <= names


@pytest.mark.parametrize("path", tables(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_row_has_as_of_and_source(path):
    found, bad = problems(path)
    assert not bad, "\n".join(bad)
    if path.name != "embodied_gpu.yaml":  # may be empty where no figure can be cited
        assert found, f"{path}: no rows found (a row is a mapping with a number: value, price, ...)"


def test_a_row_without_as_of_or_source_fails(tmp_path):
    t = tmp_path / "t.yaml"
    t.write_text("source: the table's\nregions:\n  A: {value: 1, as_of: '2024'}\n  B: {value: 2}\n"
                 "  C: {value: 3, as_of: '2024', source: its own}\n")
    assert problems(t) == (3, ["t.yaml: regions.B has no as_of"])
    t.write_text("gpus:\n  h100: {value: 1, as_of: '2024'}\n  groups:\n    x: {usd: 2, source: s}\n"
                 "list:\n  - {value: 1, as_of: '1', source: s}\n  - {value: 2}\n")
    assert problems(t) == (4, ["t.yaml: gpus.h100 has no source", "t.yaml: gpus.groups.x has no as_of",
                               "t.yaml: list[1] has no as_of or source"])


def test_the_intensity_table_is_what_its_script_generates():
    """conf/footprint/intensity.yaml is generated from the installed CodeCarbon's data: the
    script, run again, writes the same file."""
    root = Path(__file__).resolve().parents[2]
    r = subprocess.run([sys.executable, str(root / "scripts" / "footprint_intensity.py"), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
