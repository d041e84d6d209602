"""Node-level samplers shared by the workers of one node, and the rule that splits their energy.

A PDU outlet, RAPL's counters and CodeCarbon's estimate each cover a whole node: every process
on it, fans and power-supply losses (for the PDU), and the node's idle draw. One
`SharedNodeSampler` per node (the orchestrator hosts it in one actor) measures every worker's
windows on that node. When trials overlap, the node's energy is attributed by this rule
(`RULE`, also in each reading's ``attribution``):

    Time is cut at every window edge into intervals. Each interval's node energy goes to the
    windows open in it, in proportion to each window's device (GPU) energy over that same
    interval, or equally where any of those device energies is unknown. A window open alone
    gets all of it. Node energy while no window is open is nobody's (describe() reports it).

So the windows' shares sum to the node's energy over the union of the windows, and a lone
window's figure is the node sampler's own. A shared window says so in its source
(``"pdu; shared with 1 other window on the node, split by GPU-energy share"``).

Idle: node energy includes the node's idle draw. A window begun with ``idle=True`` (the
runner's idle phase) takes no share; where no other window ran during it, it measures the
node's idle power, and later windows also get an idle-subtracted figure: their share minus
idle power × their share of the time.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from energyray.samplers.base import WindowReading, now_ns

RULE = (
    "node energy in each interval between window edges is split among the windows open in it in "
    "proportion to each one's device (GPU) energy in that interval, equally where one of those is "
    "unknown; a window alone gets all of it; node energy while no window is open is not attributed"
)

NodeEnergy = Callable[[int, int], "float | None"]  # (t0_ns, t1_ns) -> joules of the node
DeviceEnergy = Callable[[str, int, int], "float | None"]  # (window, t0_ns, t1_ns) -> joules of its device


class NodeSampler(Protocol):
    """What a TrialRunner needs of a node-level sampler (SharedNodeSampler, or its Ray proxy).

    `gpu` is the worker's device sampler (anything with ``energy_between(t0_ns, t1_ns)``), used
    to weigh overlapping windows; `idle` marks the runner's idle-baseline window.
    """

    name: str

    def begin(self, label: str, at_ns: int | None = None, gpu: Any = None, idle: bool = False) -> int: ...
    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading: ...
    def latest(self) -> dict[str, Any] | None: ...
    def describe(self) -> dict[str, Any]: ...


# -- the rule, as pure functions --------------------------------------------------------------
def overlap_intervals(windows: Mapping[str, tuple[int, int]],
                      span: tuple[int, int] | None = None) -> list[tuple[int, int, tuple[str, ...]]]:
    """Time cut at every window edge: (start, end, ids of the windows open throughout), in order.

    Covers `span` (default: first start to last end); pieces with no window open are included
    with an empty tuple.
    """
    edges = {t for w in windows.values() for t in w}
    if span is not None:
        edges = {t for t in edges if span[0] <= t <= span[1]} | set(span)
    cuts = sorted(edges)
    return [(a, b, tuple(sorted(k for k, (s, e) in windows.items() if s <= a and e >= b)))
            for a, b in zip(cuts, cuts[1:], strict=False) if b > a]


def split(ids: Sequence[str], weights: Mapping[str, float | None]) -> tuple[dict[str, float], str]:
    """Fractions (summing to 1) of one interval's node energy for the windows open in it.

    By weight (their device energy in the interval) where every weight is known, none is
    negative and their sum is positive; else equal. How: ``alone``, ``device_share`` or ``equal``.
    """
    if len(ids) == 1:
        return {ids[0]: 1.0}, "alone"
    w = [weights.get(i) for i in ids]
    known = [x for x in w if x is not None and x >= 0]
    if len(known) == len(ids) and sum(known) > 0:
        total = sum(known)
        return {i: float(x) / total for i, x in zip(ids, known, strict=True)}, "device_share"
    return {i: 1.0 / len(ids) for i in ids}, "equal"


@dataclass
class Share:
    """What one window (or the time with no window) got of the node's energy."""

    energy_j: float = 0.0  # attributed to the window
    node_j: float = 0.0  # the node's energy over the window (the ledger's, from the power series)
    seconds: float = 0.0  # its share of time, by the same fractions (for idle subtraction)
    others: set[str] = field(default_factory=set)  # windows it overlapped
    how: set[str] = field(default_factory=set)  # alone | device_share | equal | duration

    @property
    def fraction(self) -> float | None:
        """Its share of the node's energy over its window."""
        return self.energy_j / self.node_j if self.node_j > 0 else None

    def add(self, other: Share) -> None:
        self.energy_j += other.energy_j
        self.node_j += other.node_j
        self.seconds += other.seconds
        self.others |= other.others
        self.how |= other.how


def attribute(windows: Mapping[str, tuple[int, int]], node_energy: NodeEnergy,
              device_energy: DeviceEnergy | None = None,
              span: tuple[int, int] | None = None) -> tuple[dict[str, Share], Share]:
    """Split the node's energy among `windows` (id -> (start_ns, end_ns)) by RULE.

    Returns each window's Share and the node's energy and time while no window was open. Where
    `node_energy` cannot say (no power series), an interval counts by its duration (constant
    power assumed; ``how`` says ``duration``): the fractions stay meaningful, in seconds.
    """
    shares = {k: Share() for k in windows}
    nobody = Share()
    for a, b, ids in overlap_intervals(windows, span):
        seconds = (b - a) / 1e9
        energy = node_energy(a, b)
        proxy = energy is None
        e = seconds if energy is None else energy
        if not ids:
            nobody.energy_j += energy or 0.0
            nobody.node_j += energy or 0.0
            nobody.seconds += seconds
            continue
        weights = {i: device_energy(i, a, b) for i in ids} if device_energy and len(ids) > 1 else {}
        fractions, how = split(ids, weights)
        for i in ids:
            s = shares[i]
            s.energy_j += e * fractions[i]
            s.node_j += e
            s.seconds += seconds * fractions[i]
            s.others.update(j for j in ids if j != i)
            s.how.add(how)
            if proxy:
                s.how.add("duration")
    return shares, nobody


class Ledger:
    """`attribute` computed as time goes on, for windows whose ends are not known in advance.

    Each `close` shares out the node's energy from the last close up to that window's end
    among the windows open then, so every interval is split once, with the windows (and
    device energies) that were there. A window opened before that point (its begin call
    arrived late) shares only from there on: the part before was already given out.

    A window is opened when its begin call runs and closed at its end's edge; `close` moves
    its start later, to the caller's own start where given (the caller begins a window ahead
    of it, so that the call is outside it). Where the ledger had already shared out some of
    the time between the two (another window closed meanwhile), the window's part of it goes
    to nobody (`unattributed`): every window's share covers its own edges, and the shares and
    the unattributed energy still add up to the node's. The windows that shared that sliver
    with it (the rest of one call, ~1 ms) got a little less than they would have alone.
    """

    def __init__(self, node_energy: NodeEnergy, device_energy: DeviceEnergy | None = None) -> None:
        self.node_energy = node_energy
        self.device_energy = device_energy
        self._open: dict[str, int] = {}
        self._acc: dict[str, list[tuple[int, int, Share]]] = {}  # open window -> its share, per interval
        self.horizon_ns: int | None = None
        self.first_ns: int | None = None  # where the ledger's accounting starts (its first window)
        self.unattributed = Share()  # the node's energy while no window was open
        self.attributed = Share()  # what the closed windows got, summed
        self.closed = 0

    @property
    def open_windows(self) -> dict[str, int]:
        return dict(self._open)

    def open(self, wid: str, t0_ns: int) -> None:
        if wid in self._open:
            raise KeyError(f"window {wid!r} is already open")
        if self.horizon_ns is not None and t0_ns < self.horizon_ns:
            t0_ns = self.horizon_ns
        self._open[wid] = int(t0_ns)
        self._acc[wid] = []
        if self.first_ns is None:
            self.first_ns = int(t0_ns)

    def advance(self, t_ns: int) -> None:
        """Share out the node's energy up to t_ns among the windows open meanwhile."""
        start = self.horizon_ns if self.horizon_ns is not None else min(self._open.values(), default=t_ns)
        if t_ns <= start:
            return
        if self.horizon_ns is None:  # the first window's start may have moved since it opened
            self.first_ns = start
        windows = {k: (max(v, start), t_ns) for k, v in self._open.items() if v < t_ns}
        for a, b, ids in overlap_intervals(windows, span=(start, t_ns)):
            shares, nobody = attribute({k: (a, b) for k in ids}, self.node_energy, self.device_energy, span=(a, b))
            for k, s in shares.items():
                self._acc[k].append((a, b, s))
            self.unattributed.add(nobody)
        self.horizon_ns = t_ns

    def close(self, wid: str, t1_ns: int, t0_ns: int | None = None) -> Share:
        """The window's share, from its start (`t0_ns`, the caller's, where later than where it
        was opened) to t1_ns (or to the last close, if that is later)."""
        if wid not in self._open:
            raise KeyError(f"window {wid!r} was never opened")
        if t0_ns is not None and t0_ns > self._open[wid]:
            self._open[wid] = min(int(t0_ns), int(t1_ns))
        start = self._open[wid]
        self.advance(t1_ns)
        del self._open[wid]
        share = Share()
        for a, b, s in self._acc.pop(wid):
            before = 0.0 if b <= a else min(1.0, max(0.0, (start - a) / (b - a)))
            if before > 0:  # shared out before the caller's start: not this window's after all
                self.unattributed.add(Share(energy_j=s.energy_j * before, node_j=s.energy_j * before,
                                            seconds=s.seconds * before))
            if before < 1:
                share.add(Share(energy_j=s.energy_j * (1 - before), node_j=s.node_j * (1 - before),
                                seconds=s.seconds * (1 - before), others=set(s.others), how=set(s.how)))
        self.attributed.add(share)
        self.closed += 1
        return share


def _how_text(how: set[str]) -> str:
    if how <= {"alone", "device_share"}:
        text = "split by GPU-energy share"
    elif "device_share" in how:
        text = "split by GPU-energy share where known, equally elsewhere"
    else:
        text = "split equally (device energy unknown)"
    if "duration" in how:
        text += ", by time where the node had no power series"
    return text


class SharedNodeSampler:
    """One node-level sampler (PDU, RAPL, CodeCarbon) used by all the workers of a node.

    Each worker opens and closes its own windows, by labels unique on the node. `end` returns
    the node sampler's reading with its energy (and parts, and CPU/RAM/CO2 extras) scaled to
    the window's share by RULE; extras say the node's whole energy over the window
    (``node_energy_j``), the ``share``, the ``attribution`` in words, and, once an idle
    window has measured the node's idle power, ``idle_subtracted_j``.
    """

    SCALED_EXTRAS = ("cpu_energy_j", "ram_energy_j", "co2_kg", "pdu_counter_j", "pdu_polled_j")

    def __init__(self, sampler: Any, role: str = "wall") -> None:
        self.sampler = sampler
        self.role = role
        self.name = str(getattr(sampler, "name", "node"))
        self._lock = threading.RLock()
        self._meters: dict[str, Any] = {}
        self._idle: dict[str, int] = {}
        self._closed: deque[tuple[int, int]] = deque(maxlen=1000)  # recent windows, for the idle check
        self._ledger = Ledger(self._node_energy, self._device_energy)
        self.idle_power_w: float | None = None
        self.idle_window_s: float | None = None

    # -- the ledger's two sources ------------------------------------------------------------
    def _node_energy(self, t0_ns: int, t1_ns: int) -> float | None:
        fn = getattr(self.sampler, "energy_between", None)
        try:
            return None if fn is None else fn(t0_ns, t1_ns)
        except Exception:
            return None

    def _device_energy(self, wid: str, t0_ns: int, t1_ns: int) -> float | None:
        fn = getattr(self._meters.get(wid), "energy_between", None)
        try:
            value = None if fn is None else fn(t0_ns, t1_ns)
        except Exception:  # a device that cannot say gives an equal split, not a failed window
            return None
        return None if value is None else float(value)

    # -- protocol ----------------------------------------------------------------------------
    def start(self) -> None:
        self.sampler.start()

    def begin(self, label: str, at_ns: int | None = None, gpu: Any = None, idle: bool = False) -> int:
        """Open a window; `gpu` (its worker's device sampler) weighs it when windows overlap."""
        with self._lock:
            t = int(self.sampler.begin(label, at_ns))
            if idle:
                self._idle[label] = t
            else:
                self._ledger.open(label, t)
                self._meters[label] = gpu
            return t

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        """Close a window: at `at_ns`, from `from_ns` (the caller's clock) where given, else at
        the begin and end calls' moments. The ledger's edges are the reading's."""
        with self._lock:
            kw: dict[str, Any] = {"at_ns": at_ns}
            if parts:
                kw["parts"] = parts
            if from_ns is not None:
                kw["from_ns"] = from_ns
            try:
                raw = self.sampler.end(label, **kw)
            except Exception:
                self._forget(label, at_ns)  # else it would take a share of every later window
                raise
            reading = raw if isinstance(raw, WindowReading) else WindowReading(**raw)
            if label in self._idle:
                return self._end_idle(label, reading)
            try:
                share = self._ledger.close(label, reading.end_ns, reading.start_ns)
            finally:
                self._meters.pop(label, None)
            self._closed.append((reading.start_ns, reading.end_ns))
            return self._attributed(reading, share)

    def _forget(self, label: str, at_ns: int | None) -> None:
        self._idle.pop(label, None)
        if label in self._ledger.open_windows:  # its share up to now is given (and then dropped)
            self._ledger.close(label, int(at_ns) if at_ns is not None else now_ns())
        self._meters.pop(label, None)

    def discard(self, prefix: str, at_ns: int | None = None) -> list[str]:
        """Close, unmeasured, every open window whose label starts with `prefix` (a dead
        worker's: "<node_tag>:"), so that it stops taking shares. Returns their labels."""
        with self._lock:
            labels = [k for k in [*self._ledger.open_windows, *self._idle] if k.startswith(prefix)]
            for label in labels:
                try:
                    self.sampler.end(label, at_ns=at_ns)
                except Exception:
                    pass
                self._forget(label, at_ns)
            return labels

    def _attributed(self, reading: WindowReading, share: Share) -> WindowReading:
        n = len(share.others)
        whole = reading.energy_j
        if n == 0:
            fraction: float | None = 1.0
            text = "whole node: no other window was open on the node during this one"
        else:
            fraction = share.fraction
            if fraction is None and reading.duration_s > 0:
                fraction = share.seconds / reading.duration_s
            rule = _how_text(share.how)
            reading.source = f"{reading.source}; shared with {n} other window{'s' if n > 1 else ''} on the node, {rule}"
            text = f"{RULE}. This window: {fraction:.1%} of the node's energy over it ({rule})" \
                if fraction is not None else RULE
        reading.energy_j = None if whole is None or fraction is None else whole * fraction
        if reading.energy_j is not None and reading.duration_s > 0:
            reading.avg_power_w = reading.energy_j / reading.duration_s
        if n and reading.energy_j is None and whole is not None:
            reading.reason = "overlapping windows could not be split: no node power series and no duration"
        for part in reading.parts.values():
            if part.get("energy_j") is not None:
                part["energy_j"] = None if fraction is None else part["energy_j"] * fraction
        for key in self.SCALED_EXTRAS:
            if reading.extras.get(key) is not None:
                reading.extras[key] = None if fraction is None else reading.extras[key] * fraction
        seconds = share.seconds if n else reading.duration_s
        idle_sub = None
        if reading.energy_j is not None and self.idle_power_w is not None:
            idle_sub = reading.energy_j - self.idle_power_w * seconds
        reading.extras.update(
            node_energy_j=whole, share=fraction, share_s=seconds, overlapping_windows=n, attribution=text,
            node_idle_power_w=self.idle_power_w, idle_subtracted_j=idle_sub)
        return reading

    def _end_idle(self, label: str, reading: WindowReading) -> WindowReading:
        self._idle.pop(label)
        t0, t1 = reading.start_ns, reading.end_ns
        busy = [w for w in self._closed if w[0] < t1 and w[1] > t0]
        busy += [(s, t1) for s in self._ledger.open_windows.values() if s < t1]
        if busy:
            note = (f"not a node idle baseline: {len(busy)} other window(s) ran on the node meanwhile; "
                    f"idle power kept at {self.idle_power_w}")
        elif reading.energy_j is not None and reading.duration_s > 0:
            self.idle_power_w = reading.energy_j / reading.duration_s
            self.idle_window_s = reading.duration_s
            note = "node idle baseline: no other window was open on the node"
        else:
            note = f"no node idle figure: {reading.reason}"
        reading.extras.update(node_energy_j=reading.energy_j, share=None, overlapping_windows=len(busy),
                              attribution=f"idle window, not shared: {note}", node_idle_power_w=self.idle_power_w)
        return reading

    def latest(self) -> dict[str, Any] | None:
        return self.sampler.latest()

    def energy_between(self, t0_ns: int, t1_ns: int) -> float | None:
        return self._node_energy(t0_ns, t1_ns)

    def describe(self) -> dict[str, Any]:
        with self._lock:
            ledger = self._ledger
            first, last = ledger.first_ns, ledger.horizon_ns
            # over the ledger's span (first window's start to last window's end): attributed_j +
            # unattributed_j is the node's energy; attributed_j includes discarded windows' shares
            return {**self.sampler.describe(), "shared_by_node": True, "role": self.role,
                    "attribution_rule": RULE, "node_idle_power_w": self.idle_power_w,
                    "unattributed_j": ledger.unattributed.energy_j, "unattributed_s": ledger.unattributed.seconds,
                    "attributed_j": ledger.attributed.energy_j, "windows_closed": ledger.closed,
                    "ledger_span_s": None if first is None or last is None else (last - first) / 1e9}

    def close(self) -> None:
        self.sampler.close()
