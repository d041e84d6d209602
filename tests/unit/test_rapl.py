"""RaplSampler against a fake powercap tree: zone selection, wrap unwrapping, errors."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from energyray.errors import SamplerError
from energyray.samplers.rapl import RaplSampler, zones

WRAP_UJ = 262_143_328_850  # a real package zone's max_energy_range_uj


def _zone(
    root: Path, dirname: str, name: str, energy_uj: int | str, wrap_uj: int = WRAP_UJ
) -> Path:
    z = root / dirname
    z.mkdir()
    (z / "name").write_text(f"{name}\n")
    (z / "energy_uj").write_text(f"{energy_uj}\n")
    (z / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
    return z


def _set(zone: Path, energy_uj: int) -> None:
    (zone / "energy_uj").write_text(f"{energy_uj}\n")


@pytest.fixture
def tree(tmp_path):
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", WRAP_UJ - 1_000_000)  # 1 J before the wrap
    dram = _zone(tmp_path, "intel-rapl:0:0", "dram", 5_000_000)
    core = _zone(tmp_path, "intel-rapl:0:1", "core", 7_000_000)
    return tmp_path, pkg, dram, core


def test_zones_keeps_package_and_dram_only(tree):
    root, pkg, dram, core = tree
    _zone(root, "intel-rapl:1", "psys", 1)
    _zone(root, "intel-rapl:2", "package-1", "not-a-number")  # unreadable: skipped
    found = zones(root)
    assert found == [pkg, dram]


def test_describe_lists_zones(tree):
    root, *_ = tree
    s = RaplSampler(root=root)
    d = s.describe()
    assert d["sampler"] == "rapl"
    assert d["scope"] == "cpu_package+dram"
    assert d["rapl_zones"] == ["intel-rapl:0", "intel-rapl:0:0"]


def test_counter_wrap_between_begin_and_end_is_unwrapped(tree):
    root, pkg, dram, core = tree
    s = RaplSampler(interval_s=0.01, root=root)
    s.begin("w")
    time.sleep(0.012)  # at least ten RAPL refresh periods: the counter, not the power series
    _set(pkg, 500_000)  # wrapped: 1 J to the top + 0.5 J after = 1.5 J
    _set(dram, 7_000_000)  # +2 J
    _set(core, 999_000_000)  # ignored zone: must not count
    r = s.end("w")
    assert r.source == "counter"
    assert r.scope == "cpu_package+dram"
    assert r.reason is None
    assert r.energy_j is not None and r.energy_j > 0
    assert r.energy_j == pytest.approx(3.5)


def test_counter_wrap_across_background_polls(tree):
    """Polls read the counter too (no thread here: deterministic); a wrap they see counts once."""
    root, pkg, dram, _ = tree
    s = RaplSampler(interval_s=0.01, root=root)
    s.begin("w")
    time.sleep(0.012)
    s._poll_once()
    _set(pkg, 250_000)  # +1.25 J across the wrap
    s._poll_once()
    _set(pkg, 1_250_000)  # +1 J
    s._poll_once()
    r = s.end("w")
    assert r.energy_j == pytest.approx(2.25)
    powers = [x["power_w"] for x in r.samples if x["power_w"] is not None]
    assert powers and all(p >= 0 for p in powers)


def test_read_counter_is_cumulative_and_monotonic(tree):
    root, pkg, dram, _ = tree
    s = RaplSampler(root=root)
    assert s._read_counter_j() == pytest.approx(0.0)
    _set(dram, 6_000_000)
    assert s._read_counter_j() == pytest.approx(1.0)
    _set(pkg, 0)  # wrap on the package: +1 J
    assert s._read_counter_j() == pytest.approx(2.0)


def test_empty_root_raises_with_fix(tmp_path):
    with pytest.raises(SamplerError) as e:
        RaplSampler(root=tmp_path)
    msg = str(e.value)
    assert str(tmp_path) in msg
    assert "chmod" in msg
    assert "sampler.cpu=codecarbon" in msg


def test_root_with_only_ignored_zones_raises(tmp_path):
    _zone(tmp_path, "intel-rapl:0:1", "core", 1)
    with pytest.raises(SamplerError, match="No readable RAPL zone"):
        RaplSampler(root=tmp_path)


def test_window_splits_into_cpu_package_and_dram(tree):
    """The window's energy split by the zones' deltas: cpu_energy_j (package), ram_energy_j (dram)."""
    root, pkg, dram, _ = tree
    s = RaplSampler(interval_s=0.01, root=root)
    s.begin("w")
    time.sleep(0.012)
    _set(pkg, 2_000_000)  # across the wrap: 1 J + 2 J = 3 J
    _set(dram, 6_000_000)  # +1 J
    r = s.end("w")
    assert r.energy_j == pytest.approx(4.0)
    assert r.extras["cpu_energy_j"] == pytest.approx(3.0)
    assert r.extras["ram_energy_j"] == pytest.approx(1.0)


def test_no_dram_zone_gives_no_ram_figure(tmp_path):
    pkg = _zone(tmp_path, "intel-rapl:0", "package-0", 1_000_000)
    s = RaplSampler(interval_s=0.01, root=tmp_path)
    s.begin("w")
    time.sleep(0.012)
    _set(pkg, 3_000_000)
    r = s.end("w")
    assert r.extras["cpu_energy_j"] == pytest.approx(2.0)
    assert r.extras["ram_energy_j"] is None
    assert "dram" in r.extras["ram_energy_reason"]


def test_codecarbon_missing_on_a_node_raises_with_fix(monkeypatch):
    """sampler.node_cpu=auto falls back to CodeCarbon where RAPL is unreadable; on a node whose
    install lacks it (seen on a GPU machine) the rows' reason names the fix, not an import trace."""
    from energyray.samplers.codecarbon import CodeCarbonSampler

    monkeypatch.setitem(sys.modules, "codecarbon", None)  # import codecarbon -> ImportError
    with pytest.raises(SamplerError) as e:
        CodeCarbonSampler()
    msg = str(e.value)
    assert "CodeCarbon cannot be imported" in msg and "scripts/install.sh" in msg and "none" in msg
