"""The CodeCarbon sampler with the real CodeCarbon (offline, on this machine's CPU): windows that
overlap or nest, as a node's CPU sampler sees when the workers of two GPUs share it. CodeCarbon
measures one task at a time; before the sampler cut one running task at every window edge, the
second of two overlapping windows got nothing (its stop_task returned None: an AttributeError on
a two-GPU H200 machine)."""

from __future__ import annotations

import time

import pytest

from energyray.samplers.codecarbon import CodeCarbonSampler
from energyray.samplers.node import SharedNodeSampler


@pytest.fixture(scope="module")
def cc():
    s = CodeCarbonSampler(interval_s=0.1)
    s.start()
    yield s
    s.close()


def _busy(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(1000))


def _overlapping(begin, end):
    """a opens; 0.3 s later b; 0.4 s later a closes; 0.3 s later b: the CPU busy throughout."""
    begin("a")
    _busy(0.3)
    begin("b")
    _busy(0.4)
    ra = end("a")
    _busy(0.3)
    return ra, end("b")


def test_overlapping_windows_each_get_an_estimate(cc):
    ra, rb = _overlapping(cc.begin, cc.end)
    for r in (ra, rb):
        assert r.energy_j is not None and r.energy_j > 0, r.reason
        assert r.source == "estimated" and r.scope == "cpu+ram"
        assert r.extras["cpu_energy_j"] + r.extras["ram_energy_j"] == pytest.approx(r.energy_j)
        assert r.extras["co2_kg"] > 0 and r.extras["carbon_intensity_g_per_kwh"] > 0
    # each window is the sum of the intervals between edges it spans: a and b share the middle one
    union = cc.energy_between(ra.start_ns, rb.end_ns)
    middle = cc.energy_between(rb.start_ns, ra.end_ns)
    assert union is not None and middle is not None and middle > 0
    assert ra.energy_j + rb.energy_j == pytest.approx(union + middle, rel=0.02)


def test_a_nested_window_and_its_parts(cc):
    cc.begin("outer")
    _busy(0.2)
    t0 = cc.begin("inner")
    _busy(0.4)
    inner = cc.end("inner", parts={"first_half": (t0, t0 + 200_000_000)})
    _busy(0.2)
    outer = cc.end("outer")
    assert 0 < inner.energy_j < outer.energy_j
    assert inner.parts["first_half"]["energy_j"] == pytest.approx(inner.energy_j / 2, rel=0.05)
    assert inner.parts["first_half"]["reason"] == "shared by duration: no power series"


def test_two_gpus_windows_on_one_node_share_its_cpu_energy_by_gpu_energy(cc):
    """Through the node sampler (samplers.node), as on a machine with two GPUs: while both windows
    are open, the CPU+RAM estimate of each interval is split by the GPUs' energy (1:3 here)."""

    class Gpu:
        def __init__(self, watts: float) -> None:
            self.watts = watts

        def energy_between(self, a: int, b: int) -> float:
            return self.watts * (b - a) / 1e9

    node = SharedNodeSampler(cc, role="cpu")
    gpus = {"a": Gpu(100.0), "b": Gpu(300.0)}
    ra, rb = _overlapping(lambda w: node.begin(w, gpu=gpus[w]), node.end)
    for r in (ra, rb):
        assert r.energy_j is not None and r.energy_j > 0, r.reason
        assert r.source == "estimated; shared with 1 other window on the node, split by GPU-energy share"
    # together the two are the node's estimate over their union, whatever the split
    union = cc.energy_between(ra.start_ns, rb.end_ns)
    assert ra.energy_j + rb.energy_j == pytest.approx(union, rel=0.02)
    # b, which drew 3/4 of the GPU energy while both were open, has the larger share of the middle
    middle = cc.energy_between(rb.start_ns, ra.end_ns)
    assert ra.energy_j == pytest.approx(cc.energy_between(ra.start_ns, rb.start_ns) + 0.25 * middle, rel=0.05)
