"""Two trials' node windows overlapping on one node, the GPUs of the two drawing 1:3: the
timeline and the split the node-level attribution rule must give (samplers.node), shared by
the PDU tests straight on a SharedNodeSampler and through the Ray node sampler actor."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from energyray.samplers.base import now_ns

S = 1e9


def overlapping(begin_a: Callable[[int], Any], begin_b: Callable[[int], Any], end_a: Callable[[int], Any],
                end_b: Callable[[int], Any]) -> tuple[list[int], Any, Any]:
    """a opens; 0.3 s later b opens; 0.4 s later a closes; 0.3 s later b closes. Each callable
    takes the edge's time (at_ns). Returns ([t0, t1, t2, t3], a's reading, b's reading)."""
    t0 = now_ns()
    begin_a(t0)
    time.sleep(0.3)
    t1 = now_ns()
    begin_b(t1)
    time.sleep(0.4)
    t2 = now_ns()
    ra = end_a(t2)
    time.sleep(0.3)
    t3 = now_ns()
    rb = end_b(t3)
    return [t0, t1, t2, t3], ra, rb


def assert_split_one_to_three(watts: float, t: list[int], ra: Any, rb: Any) -> None:
    """At a constant node power: each window has the node alone while it is alone, and while both
    are open a's GPU takes 1/4 (b's 3/4); together they are the node's energy over their union."""
    t0, t1, t2, t3 = t
    assert ra.source == rb.source == "pdu; shared with 1 other window on the node, split by GPU-energy share"
    assert ra.energy_j == pytest.approx(watts * ((t1 - t0) / S + (t2 - t1) / S * 0.25), rel=1e-6)
    assert rb.energy_j == pytest.approx(watts * ((t2 - t1) / S * 0.75 + (t3 - t2) / S), rel=1e-6)
    assert ra.energy_j + rb.energy_j == pytest.approx(watts * (t3 - t0) / S, rel=1e-6)  # the union
