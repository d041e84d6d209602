"""Energy windows around one phase: the device sampler's and the node samplers', on one set of edges.

Every window's edges are this worker's own clock readings (CLOCK_MONOTONIC, which the
sampler actors on the same node share): `begin` calls the samplers first and then takes the
start, `end` takes the end before it calls them, and each sampler is handed both edges. So the
device's, the wall's and the CPU's figures all cover the same interval, the phase itself,
with no sampler call inside it.

A broken sampler never kills a trial: its window gives a string, the reason, where a reading
would be, and the row gets null energy with that reason. A window too short for the device's
counter is anchored to the counter over a longer span (`anchored`).

A part of a window (prefill, decode, steady) is one interval or a list of them (one per batch
of a multi-batch workload): the sampler is asked for each interval (`decode`, `decode#1`, ...)
and the part's reading is their sum, with each interval's energy kept in `intervals_j`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from typing import Any

from energyray.samplers.base import WindowReading, now_ns

Interval = tuple[int, int]
Parts = Mapping[str, Interval | list[Interval]]


def _reading(r: Any) -> WindowReading:
    return r if isinstance(r, WindowReading) else WindowReading(**r)


def flatten_parts(parts: Parts | None) -> tuple[dict[str, Interval], dict[str, list[str]]]:
    """The sampler's parts (name -> one interval) and, per part, the names of its intervals: a
    part's first interval keeps its name, the others are `<name>#<i>`."""
    flat: dict[str, Interval] = {}
    names: dict[str, list[str]] = {}
    for name, value in (parts or {}).items():
        intervals = [value] if isinstance(value, tuple) else list(value)
        keys = [name if i == 0 else f"{name}#{i}" for i in range(len(intervals))]
        flat.update(zip(keys, ((int(a), int(b)) for a, b in intervals), strict=True))
        if keys:
            names[name] = keys
    return flat, names


def merge_parts(reading: WindowReading, names: dict[str, list[str]]) -> WindowReading:
    """Each part's intervals summed back into the part (null where any is null), each interval's
    energy in `intervals_j`."""
    merged: dict[str, dict[str, Any]] = {}
    for name, keys in names.items():
        if not any(k in reading.parts for k in keys):
            continue  # the sampler gave no figure for it (as for a single interval)
        got = [reading.parts.get(k) or {"energy_j": None, "source": None, "reason": "not measured"} for k in keys]
        energies = [g.get("energy_j") for g in got]
        sources = list(dict.fromkeys(str(g["source"]) for g in got if g.get("source")))
        reasons = list(dict.fromkeys(str(g["reason"]) for g in got if g.get("reason")))
        merged[name] = {"energy_j": None if any(e is None for e in energies) else sum(energies),
                        "source": ", ".join(sources) or None, "reason": "; ".join(reasons) or None,
                        "intervals_j": energies}
    return dataclasses.replace(reading, parts=merged)


class Windows:
    """The device sampler (samplers.base.Sampler, or None) and the node samplers (role ->
    samplers.node.SharedNodeSampler, shared by the node's workers) of one worker.

    Node windows are labelled "<node_tag>:<label>", unique on the node; the orchestrator may
    set its own tag, to drop a dead worker's windows (SharedNodeSampler.discard). Each
    node window's readings wait, by label, until `node_readings` takes them.
    """

    def __init__(self, sampler: Any, node_samplers: dict[str, Any] | None = None,
                 measurement: Any = None) -> None:
        self.sampler = sampler
        self.node_samplers: dict[str, Any] = dict(node_samplers or {})
        self.measurement = measurement  # anchor_short_windows, read at each window
        self.sampler_info: dict[str, Any] = {}
        self.node_info: dict[str, Any] = {}
        self.node_tag = uuid.uuid4().hex[:8]
        self._node_open: dict[tuple[str, str], str | None] = {}  # (role, label) -> begin error
        self._start: dict[str, int] = {}  # label -> the window's start (now_ns), taken after the begin calls
        self._node_readings: dict[str, dict[str, WindowReading | str]] = {}  # label -> role -> reading

    def describe(self) -> None:
        """Ask each sampler what it is (for the row's env_json); an error says why it could not."""
        if self.sampler is not None:
            try:
                self.sampler_info = dict(self.sampler.describe())
            except Exception as e:
                self.sampler_info = {"error": f"{type(e).__name__}: {e}"}
        for role, ns in self.node_samplers.items():
            try:
                self.node_info[role] = dict(ns.describe())
            except Exception as e:
                self.node_info[role] = {"error": f"{type(e).__name__}: {e}"}

    def latest(self) -> dict[str, Any]:
        """The device's latest sample (power, temperature), or {} where there is none."""
        try:
            return dict(self.sampler.latest() or {}) if self.sampler is not None else {}
        except Exception:
            return {}

    # -- one window ------------------------------------------------------------------------
    def begin(self, label: str, not_here: str | None = None) -> str | None:
        """Open the window `label`; returns why it cannot be measured, or None. `not_here`:
        the model does not run on this machine (a hosted API), and why. The node samplers are
        called first and the device's last (its counter read nearest the edge); the window
        starts once they have returned."""
        if not_here is not None:
            return not_here
        if self.node_samplers:
            self._node_begin(label)
        err = self._device_begin(label)
        self._start[label] = now_ns()
        return err

    def end(self, label: str, begin_error: str | None, parts: Parts | None = None,
            local: bool = True) -> WindowReading | str:
        """Close the window (now, before any sampler call): the device's reading (or why there
        is none); the node samplers' wait for `node_readings(label)`. `local` as at `begin`
        (no not_here). `parts`: name -> an interval or a list of intervals inside the window."""
        t1 = now_ns()
        t0 = self._start.pop(label, None)
        reading = self._device_end(label, begin_error, parts, t0, t1)
        if self.node_samplers and local:
            self._node_end(label, t0, t1)
        return reading

    def node_readings(self, label: str) -> dict[str, WindowReading | str]:
        """The node samplers' readings of `label` by role (a string: why it failed), taken."""
        return self._node_readings.pop(label, {})

    def source_name(self, role: str) -> str:
        """The name a node sampler's samples are stored under."""
        return str(self.node_info.get(role, {}).get("sampler") or role)

    # -- the device ----------------------------------------------------------------------------
    def _device_begin(self, label: str) -> str | None:
        if self.sampler is None:  # the host's reason where its sampler could not start (NVML missing...)
            why = self.sampler_info.get("error")
            return f"no energy sampler for this device: {why}" if why else "no energy sampler for this device"
        try:
            self.sampler.begin(label)
            return None
        except Exception as e:
            return f"sampler failed at window start: {type(e).__name__}: {e}"

    def _device_end(self, label: str, begin_error: str | None, parts: Parts | None,
                    t0: int | None, t1: int) -> WindowReading | str:
        if begin_error is not None:
            return begin_error
        flat, names = flatten_parts(parts)
        try:
            reading = _reading(self.sampler.end(label, flat or None, at_ns=t1, from_ns=t0))
        except Exception as e:
            return f"sampler failed at window end: {type(e).__name__}: {e}"
        return merge_parts(self.anchored(reading), names)

    def anchored(self, reading: WindowReading) -> WindowReading:
        """A window too short for the counter (integrated from polled power, flagged short_window)
        gets the counter's delta over a span of >= 10 counter periods around it, shared by the
        power series' shape (PollingSampler.anchor; source counter_apportioned): on bursty work
        polled power alone read well under the counter. The span reaches back into what ran
        before the window, so this needs no waiting. Where the counter cannot anchor it, the
        polled figure stays, with the reason."""
        anchor_short = getattr(self.measurement, "anchor_short_windows", True)
        if not (reading.short_window and reading.source == "polled" and anchor_short):
            return reading
        anchor = getattr(self.sampler, "anchor", None)
        if anchor is None:
            return reading
        try:
            (out,) = anchor([reading])
            return _reading(out)
        except Exception as e:  # the polled figure stands, and says why it was not anchored
            return dataclasses.replace(reading, reason=reading.reason or f"not counter-anchored: {type(e).__name__}: {e}")

    # -- the node: the same edges as the device's window ----------------------------------------
    def _node_begin(self, label: str) -> None:
        for role, ns in self.node_samplers.items():
            try:
                ns.begin(f"{self.node_tag}:{label}", gpu=self.sampler, idle=label == "idle")
                self._node_open[(role, label)] = None
            except Exception as e:
                self._node_open[(role, label)] = f"node sampler failed at window start: {type(e).__name__}: {e}"

    def _node_end(self, label: str, t0: int | None, t1: int) -> None:
        out: dict[str, WindowReading | str] = {}
        for role, ns in self.node_samplers.items():
            err = self._node_open.pop((role, label), "node window was never begun")
            if err is not None:
                out[role] = err
                continue
            try:
                out[role] = _reading(ns.end(f"{self.node_tag}:{label}", at_ns=t1, from_ns=t0))
            except Exception as e:
                out[role] = f"node sampler failed at window end: {type(e).__name__}: {e}"
        self._node_readings[label] = out
