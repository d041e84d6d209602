"""The node-energy attribution rule (samplers/node.py) on constructed overlapping windows.

Node and device power are constant per source here, so every share can be computed by hand:
in an interval where windows A and B are open, A gets node energy × P_A / (P_A + P_B). The
checks that matter: a lone window gets all of the node's energy, shares sum to the node's
energy over the union of the windows, the online ledger (windows closing one by one) gives
what the offline rule gives, and the source column says when a figure was shared.
"""

from __future__ import annotations

import random

import pytest

from energyray.samplers.base import WindowReading
from energyray.samplers.node import (
    RULE,
    Ledger,
    SharedNodeSampler,
    attribute,
    overlap_intervals,
    split,
)
from energyray.samplers.replay import ReplaySampler

S = 1_000_000_000  # ns per second
NODE_W = 500.0


def node_energy(a: int, b: int) -> float:
    return NODE_W * (b - a) / S


def device_energy_of(power_w: dict[str, float | None]):
    def fn(wid: str, a: int, b: int) -> float | None:
        p = power_w.get(wid)
        return None if p is None else p * (b - a) / S
    return fn


def union_energy(windows: dict[str, tuple[int, int]]) -> float:
    """The node's energy over the union of the windows, computed independently of node.py."""
    spans = sorted(windows.values())
    total, cur = 0.0, None
    for a, b in spans:
        if cur is None or a > cur[1]:
            if cur is not None:
                total += node_energy(*cur)
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur is not None:
        total += node_energy(*cur)
    return total


# -- pure functions ---------------------------------------------------------------------------
def test_overlap_intervals_cut_at_every_edge():
    got = overlap_intervals({"a": (0, 10), "b": (5, 20), "c": (30, 40)})
    assert got == [(0, 5, ("a",)), (5, 10, ("a", "b")), (10, 20, ("b",)), (20, 30, ()), (30, 40, ("c",))]


def test_overlap_intervals_within_a_span_include_empty_pieces():
    assert overlap_intervals({"a": (10, 20)}, span=(0, 30)) == [(0, 10, ()), (10, 20, ("a",)), (20, 30, ())]


def test_split_alone_by_share_and_equal():
    assert split(["a"], {}) == ({"a": 1.0}, "alone")
    fr, how = split(["a", "b"], {"a": 100.0, "b": 300.0})
    assert how == "device_share" and fr == pytest.approx({"a": 0.25, "b": 0.75})
    assert split(["a", "b"], {"a": 100.0, "b": None}) == ({"a": 0.5, "b": 0.5}, "equal")
    assert split(["a", "b"], {"a": 0.0, "b": 0.0}) == ({"a": 0.5, "b": 0.5}, "equal")
    assert split(["a", "b"], {"a": -1.0, "b": 3.0})[1] == "equal"


def test_a_lone_window_gets_all_of_the_node_energy():
    shares, nobody = attribute({"a": (2 * S, 7 * S)}, node_energy, device_energy_of({"a": 100.0}))
    assert shares["a"].energy_j == pytest.approx(NODE_W * 5)
    assert shares["a"].fraction == pytest.approx(1.0)
    assert shares["a"].others == set() and shares["a"].how == {"alone"}
    assert nobody.energy_j == 0


def test_two_overlapping_windows_split_by_gpu_energy_share():
    # A: 0-10 s, B: 4-12 s; GPUs draw 100 W (A) and 300 W (B)
    windows = {"a": (0, 10 * S), "b": (4 * S, 12 * S)}
    shares, _ = attribute(windows, node_energy, device_energy_of({"a": 100.0, "b": 300.0}))
    overlap_j = NODE_W * 6
    assert shares["a"].energy_j == pytest.approx(NODE_W * 4 + overlap_j * 0.25)
    assert shares["b"].energy_j == pytest.approx(overlap_j * 0.75 + NODE_W * 2)
    assert shares["a"].energy_j + shares["b"].energy_j == pytest.approx(union_energy(windows))
    assert shares["a"].node_j == pytest.approx(NODE_W * 10)  # the node's energy over A's window
    assert shares["a"].seconds == pytest.approx(4 + 6 * 0.25)
    assert shares["a"].how == {"alone", "device_share"} and shares["a"].others == {"b"}


def test_unknown_device_energy_splits_equally():
    windows = {"a": (0, 10 * S), "b": (0, 10 * S)}
    shares, _ = attribute(windows, node_energy, device_energy_of({"a": 100.0, "b": None}))
    assert shares["a"].energy_j == pytest.approx(NODE_W * 5) == shares["b"].energy_j
    assert shares["a"].how == {"equal"}


def test_without_a_node_power_series_shares_are_by_time():
    windows = {"a": (0, 10 * S), "b": (5 * S, 10 * S)}
    shares, _ = attribute(windows, lambda a, b: None, device_energy_of({"a": 1.0, "b": 1.0}))
    assert shares["a"].fraction == pytest.approx((5 + 2.5) / 10)
    assert "duration" in shares["a"].how


def test_energy_while_no_window_is_open_is_nobodys():
    windows = {"a": (0, 2 * S), "b": (5 * S, 6 * S)}
    shares, nobody = attribute(windows, node_energy)
    assert nobody.energy_j == pytest.approx(NODE_W * 3) and nobody.seconds == pytest.approx(3)
    assert sum(s.energy_j for s in shares.values()) == pytest.approx(union_energy(windows))


@pytest.mark.parametrize("seed", range(5))
def test_ledger_closing_one_by_one_equals_the_offline_rule_and_conserves_energy(seed):
    rng = random.Random(seed)
    windows, gpu = {}, {}
    for i in range(8):
        a = rng.randrange(0, 60) * S // 4
        windows[f"w{i}"] = (a, a + rng.randrange(1, 40) * S // 4)
        gpu[f"w{i}"] = rng.choice([None, 50.0, 120.0, 300.0])
    offline, _ = attribute(windows, node_energy, device_energy_of(gpu))
    ledger = Ledger(node_energy, device_energy_of(gpu))
    events = sorted([(a, 1, k) for k, (a, _) in windows.items()] + [(b, 0, k) for k, (_, b) in windows.items()])
    online = {}
    for t, kind, k in events:  # closes before opens at the same instant
        if kind == 1:
            ledger.open(k, t)
        else:
            online[k] = ledger.close(k, t)
    for k in windows:
        assert online[k].energy_j == pytest.approx(offline[k].energy_j, abs=1e-6)
        assert online[k].node_j == pytest.approx(NODE_W * (windows[k][1] - windows[k][0]) / S)
    assert sum(s.energy_j for s in online.values()) == pytest.approx(union_energy(windows))


def test_a_window_begun_ahead_of_its_start_is_shared_from_the_callers_start():
    """Windows open when their begin call runs; closing with the caller's own start (t0_ns)
    moves it later, so the ledger's edges are the reading's: a's caller started at 3 s, not 2 s."""
    ledger = Ledger(node_energy, device_energy_of({"a": 100.0, "b": 300.0}))
    ledger.open("a", 2 * S)
    ledger.open("b", 5 * S)
    a = ledger.close("a", 6 * S, 3 * S)
    b = ledger.close("b", 8 * S, 5 * S)
    assert a.node_j == pytest.approx(NODE_W * 3)  # 3-6 s
    assert a.energy_j == pytest.approx(NODE_W * (2 + 1 * 0.25))  # alone 3-5 s, with b 5-6 s
    assert b.energy_j == pytest.approx(NODE_W * (1 * 0.75 + 2))  # with a 5-6 s, alone 6-8 s
    assert ledger.first_ns == 3 * S and ledger.unattributed.energy_j == 0  # nothing before 3 s was given out
    assert a.energy_j + b.energy_j == pytest.approx(union_energy({"a": (3 * S, 6 * S), "b": (5 * S, 8 * S)}))


def test_what_was_shared_out_before_a_windows_own_start_goes_to_nobody():
    """b's begin call ran at 4 s, its caller's window started at 5 s, and a closed at 6 s in
    between: the ledger had shared 4-5 s with b in it. At b's close that part goes to nobody, so
    b's share covers its own edges and everything still adds up to the node's energy."""
    ledger = Ledger(node_energy, device_energy_of({"a": 100.0, "b": 300.0}))
    ledger.open("a", 2 * S)
    ledger.open("b", 4 * S)
    a = ledger.close("a", 6 * S, 3 * S)
    b = ledger.close("b", 8 * S, 5 * S)
    assert a.energy_j == pytest.approx(NODE_W * (1 + 2 * 0.25))  # 4-5 s with b: the sliver's cost to a
    assert b.energy_j == pytest.approx(NODE_W * (1 * 0.75 + 2)) and b.node_j == pytest.approx(NODE_W * 3)
    assert ledger.unattributed.energy_j == pytest.approx(NODE_W * 1 * 0.75)
    assert a.energy_j + b.energy_j + ledger.unattributed.energy_j == pytest.approx(NODE_W * 5)  # 3-8 s


# -- SharedNodeSampler on the real PollingSampler maths (ReplaySampler, virtual clock) --------
def constant_trace(power_w: float, seconds: float, step_s: float = 0.1) -> list[dict]:
    """A polled power series at a constant level, starting at t=1 s."""
    n = int(seconds / step_s) + 1
    return [{"t_ns": S + int(i * step_s * S), "power_w": power_w, "energy_j": None} for i in range(n)]


@pytest.fixture
def node():
    """A 500 W node (its sampler a replay of a polled power series), and two GPUs at 100 W and 300 W."""
    inner = ReplaySampler(constant_trace(NODE_W, 30), has_counter=False, scope="wall:test")
    gpus = {"a": ReplaySampler(constant_trace(100.0, 30), has_counter=False),
            "b": ReplaySampler(constant_trace(300.0, 30), has_counter=False)}
    shared = SharedNodeSampler(inner)

    def advance(t_s: float) -> None:
        for s in (inner, *gpus.values()):
            s.advance_to(int(t_s * S))

    return shared, gpus, advance


def test_shared_lone_window_keeps_the_node_figure_and_source(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", at_ns=2 * S, gpu=gpus["a"])
    advance(6)
    r = shared.end("a", at_ns=6 * S)
    assert r.source == "polled"  # the node sampler's own source, not marked shared
    assert r.energy_j == pytest.approx(NODE_W * 4)
    assert r.extras["share"] == 1.0 and r.extras["overlapping_windows"] == 0
    assert r.extras["attribution"].startswith("whole node")
    assert r.extras["idle_subtracted_j"] is None  # no idle baseline yet


def test_shared_overlapping_windows_split_by_gpu_share_and_say_so(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", at_ns=2 * S, gpu=gpus["a"])
    advance(4)
    shared.begin("b", at_ns=4 * S, gpu=gpus["b"])
    advance(10)
    ra = shared.end("a", at_ns=10 * S)
    advance(12)
    rb = shared.end("b", at_ns=12 * S)
    assert ra.energy_j == pytest.approx(NODE_W * 2 + NODE_W * 6 * 0.25, rel=1e-6)
    assert rb.energy_j == pytest.approx(NODE_W * 6 * 0.75 + NODE_W * 2, rel=1e-6)
    assert ra.energy_j + rb.energy_j == pytest.approx(NODE_W * 10, rel=1e-6)  # the union: 2-12 s
    assert ra.extras["node_energy_j"] == pytest.approx(NODE_W * 8)
    assert ra.source == "polled; shared with 1 other window on the node, split by GPU-energy share"
    assert RULE in ra.extras["attribution"]
    d = shared.describe()
    assert d["attribution_rule"] == RULE
    # the totals a sweep reports per node: over 2-12 s everything went to a window
    assert d["windows_closed"] == 2 and d["ledger_span_s"] == pytest.approx(10)
    assert d["attributed_j"] == pytest.approx(ra.energy_j + rb.energy_j) and d["unattributed_j"] == 0


def test_shared_window_on_the_callers_edges(node):
    """Begun (at the call's moment) ahead of the caller's window, closed with both of the
    caller's edges: the reading, the node's figure and the ledger cover exactly those."""
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", gpu=gpus["a"])  # the call runs at 2 s; the caller's window starts at 3 s
    advance(7)
    r = shared.end("a", at_ns=6 * S, from_ns=3 * S)  # and ends at 6 s; the end call runs at 7 s
    assert (r.start_ns, r.end_ns) == (3 * S, 6 * S) and r.duration_s == 3
    assert r.energy_j == pytest.approx(NODE_W * 3) and r.extras["share"] == 1.0
    d = shared.describe()
    assert d["ledger_span_s"] == pytest.approx(3) and d["attributed_j"] == pytest.approx(NODE_W * 3)


def test_shared_idle_window_on_the_callers_edges(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("idle", idle=True)
    advance(5)
    idle = shared.end("idle", at_ns=4 * S, from_ns=3 * S)
    assert idle.duration_s == 1 and idle.energy_j == pytest.approx(NODE_W)
    assert shared.idle_power_w == pytest.approx(NODE_W) and shared.idle_window_s == 1


def test_shared_window_with_a_device_that_cannot_say_splits_equally(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", at_ns=2 * S, gpu=gpus["a"])
    shared.begin("b", at_ns=2 * S, gpu=object())  # no energy_between
    advance(6)
    ra = shared.end("a", at_ns=6 * S)
    rb = shared.end("b", at_ns=6 * S)
    assert ra.energy_j == pytest.approx(NODE_W * 2) == rb.energy_j
    assert "split equally (device energy unknown)" in ra.source


def test_idle_window_measures_node_idle_power_and_gives_idle_subtracted_figures(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("idle", at_ns=2 * S, idle=True)
    advance(4)
    idle = shared.end("idle", at_ns=4 * S)
    assert idle.energy_j == pytest.approx(NODE_W * 2)
    assert "node idle baseline" in idle.extras["attribution"]
    assert shared.idle_power_w == pytest.approx(NODE_W)
    shared.begin("a", at_ns=5 * S, gpu=gpus["a"])
    advance(8)
    r = shared.end("a", at_ns=8 * S)
    assert r.extras["node_idle_power_w"] == pytest.approx(NODE_W)
    assert r.extras["idle_subtracted_j"] == pytest.approx(0.0, abs=1e-6)  # the node drew only its idle power


def test_idle_window_overlapped_by_a_trial_is_not_a_baseline(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", at_ns=2 * S, gpu=gpus["a"])
    shared.begin("idle", at_ns=2 * S, idle=True)
    advance(4)
    idle = shared.end("idle", at_ns=4 * S)
    a = shared.end("a", at_ns=4 * S)
    assert "not a node idle baseline" in idle.extras["attribution"]
    assert shared.idle_power_w is None
    assert a.energy_j == pytest.approx(NODE_W * 2)  # an idle window takes no share


class _NodeWithExtras:
    """A node sampler whose readings carry CPU/RAM/CO2 extras (as CodeCarbon's do) and no power series."""

    name = "codecarbon"

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        self.open[label] = int(at_ns or 0)
        return self.open[label]

    def end(self, label: str, parts=None, at_ns: int | None = None) -> WindowReading:
        t0, t1 = self.open.pop(label), int(at_ns or 0)
        e = 10.0 * (t1 - t0) / S
        return WindowReading(label=label, source="estimated", scope="cpu+ram", start_ns=t0, end_ns=t1, energy_j=e,
                             extras={"cpu_energy_j": 0.8 * e, "ram_energy_j": 0.2 * e, "co2_kg": 1e-6 * e})


def test_extras_are_scaled_with_the_share_and_time_stands_in_for_a_missing_series():
    shared = SharedNodeSampler(_NodeWithExtras(), role="cpu")
    shared.begin("a", at_ns=0, gpu=None)
    shared.begin("b", at_ns=0, gpu=None)
    ra = shared.end("a", at_ns=4 * S)
    rb = shared.end("b", at_ns=4 * S)
    assert ra.energy_j == pytest.approx(20.0) == rb.energy_j
    assert ra.extras["cpu_energy_j"] == pytest.approx(16.0) and ra.extras["co2_kg"] == pytest.approx(2e-5)
    assert "by time where the node had no power series" in ra.source


def test_a_dead_workers_windows_are_discarded_and_stop_taking_shares(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("w1:trial", at_ns=2 * S, gpu=gpus["a"])
    shared.begin("w2:trial", at_ns=2 * S, gpu=gpus["b"])
    advance(3)
    assert shared.discard("w2:", at_ns=3 * S) == ["w2:trial"]  # w2 died at 3 s
    advance(6)
    r = shared.end("w1:trial", at_ns=6 * S)
    # 2-3 s shared with w2 (100 W vs 300 W: a quarter), 3-6 s alone
    assert r.energy_j == pytest.approx(NODE_W * 1 * 0.25 + NODE_W * 3)


def test_a_failing_node_end_does_not_leave_a_ghost_window(node):
    shared, gpus, advance = node
    advance(2)
    shared.begin("a", at_ns=2 * S, gpu=gpus["a"])
    shared.begin("b", at_ns=2 * S, gpu=gpus["b"])
    shared.sampler._open.pop("b")  # the node sampler lost b's window
    advance(3)
    with pytest.raises(KeyError):
        shared.end("b", at_ns=3 * S)
    advance(6)
    r = shared.end("a", at_ns=6 * S)
    assert r.energy_j == pytest.approx(NODE_W * 1 * 0.25 + NODE_W * 3)
