"""Replay a recorded power/energy trace through the PollingSampler maths, with no hardware.

A trace is a list of rows, one per poll, as the `samples` table stores them: ``t_ns``
(CLOCK_MONOTONIC), ``power_w``, ``energy_j`` (the device's cumulative energy counter in
joules, or None where it has none) and optionally the other SAMPLE_COLUMNS. The sampler runs
on a virtual clock, ``clock_ns``, that only `advance_to` moves (or, with ``realtime``, the
wall clock since `start`), so tests and users can check window energies on real data
without a GPU and without sleeping:

    s = ReplaySampler(load_trace("tests/data/h200_decode_trace.csv", trial_id="..."))
    s.advance_to(t0); s.begin("w"); s.advance_to(t1); reading = s.end("w")

What the replay assumes about the device the trace was recorded from:

* every row at or before the clock has been polled into the series (no background thread);
* the counter read at a window edge is the last row's ``energy_j`` at or before the clock:
  stale, as a real counter is between its refreshes. Where that row is older than 1.5 poll
  intervals the device was not being read then (a gap in the recording, or past its end),
  so the read fails (None) rather than reporting a counter that would fake 0 J;
* the sample PollingSampler.end takes at the window's edge is the trace's next row, if it
  comes within 1.5 poll intervals of the edge (else that poll failed: a gap);
* a row's ``energy_j`` is the counter as it stood at that row's ``t_ns`` (the counter log
  that `anchor` dates its readings from holds the rows' own times: ``counter_stale_s = 0``).

`end` is PollingSampler.end on the virtual clock: the same short-window rule, sources,
reasons and apportioning of `parts`, through the same functions of samplers.energy.
"""

from __future__ import annotations

import math
import os
import statistics
from bisect import bisect_right
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from energyray.errors import SamplerError
from energyray.samplers.base import SAMPLE_COLUMNS, PollingSampler, now_ns

# Where a ReplaySampler built by name (the registry: sampler.gpu=replay) finds its trace
TRACE_ENV = "ENERGYRAY_REPLAY_TRACE"


def _plain(value: Any) -> Any:
    """A numpy/pandas scalar as a Python one; NaN (a missing value in a frame) as None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _records(data: Any) -> list[dict[str, Any]]:
    if hasattr(data, "to_dict"):  # a pandas DataFrame
        return [dict(r) for r in data.to_dict("records")]
    return [dict(r) for r in data]


def trace_rows(data: Any) -> list[dict[str, Any]]:
    """Rows (a DataFrame or an iterable of mappings) as a trace: plain values, sorted by t_ns.

    Each row needs ``t_ns``; ``power_w`` and ``energy_j`` are None where missing.
    """
    rows = []
    for i, r in enumerate(_records(data)):
        row = {k: _plain(v) for k, v in r.items()}
        if row.get("t_ns") is None:
            raise ValueError(f"trace row {i} has no t_ns: {r!r}")
        row["t_ns"] = int(row["t_ns"])
        for col in ("power_w", "energy_j"):
            row[col] = None if row.get(col) is None else float(row[col])
        rows.append(row)
    rows.sort(key=lambda r: r["t_ns"])
    return rows


def _select(rows: list[dict[str, Any]], where: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The rows matching every column=value of `where`; one series only (by trial and source)."""
    rows = [r for r in rows if all(r.get(k) == v for k, v in where.items())]
    for key in ("trial_id", "source", "run"):
        values = sorted({str(r[key]) for r in rows if r.get(key) is not None})
        if len(values) > 1:
            raise ValueError(
                f"the trace holds {len(values)} series by {key} ({', '.join(values)}): pick one, "
                f"e.g. {key}={values[0]!r}"
            )
    return rows


def load_trace(path: str | os.PathLike[str], **where: Any) -> list[dict[str, Any]]:
    """A trace from a CSV or Parquet file (columns as the `samples` table's).

    `where` keeps the rows whose columns equal the given values (``trial_id="…"``); a file
    holding several series (trial_id, source or run) needs it, since their clocks interleave.
    """
    import pandas as pd

    p = Path(path)
    if p.suffix == ".parquet":
        frame = pd.read_parquet(p)
    elif ".csv" in p.suffixes:  # .csv, .csv.gz
        frame = pd.read_csv(p, dtype={"trial_id": str})
    else:
        raise ValueError(f"{p}: a trace is a .csv or .parquet file")
    return _select(trace_rows(frame), where)


def _median_step_s(ts_ns: list[int]) -> float | None:
    steps = [b - a for a, b in zip(ts_ns, ts_ns[1:], strict=False) if b > a]
    return statistics.median(steps) / 1e9 if steps else None


class ReplaySampler(PollingSampler):
    """A PollingSampler fed from a recorded trace, on a virtual clock (`clock_ns`).

    `trace`: rows, a DataFrame, or a CSV/Parquet path (see `load_trace`). Without one (as
    the registry builds it: ``sampler.gpu=replay``) the trace is `device` where that is a
    file, else the file named by $ENERGYRAY_REPLAY_TRACE, and the clock follows the wall
    clock from `start` (``realtime``). `interval_s` is the trace's poll interval (default:
    its median step); `has_counter` defaults to whether any row has an ``energy_j``.
    """

    name = "replay"
    scope = "gpu"
    counter_stale_s = 0.0  # the trace's energy_j is the counter at its row's t_ns

    def __init__(
        self,
        trace: Any = None,
        *,
        device: str | int | None = None,
        interval_s: float | None = None,
        has_counter: bool | None = None,
        counter_period_s: float | None = None,
        counter_wrap_j: float | None = None,
        scope: str | None = None,
        realtime: bool | None = None,
        keep_s: float = 3600.0,
    ) -> None:
        if trace is None:
            trace = device if device is not None and Path(str(device)).is_file() else os.environ.get(TRACE_ENV)
            if not trace:
                raise SamplerError(f"ReplaySampler needs a trace: pass one, or a file as device, or set ${TRACE_ENV}.")
            realtime = True if realtime is None else realtime
        rows = load_trace(trace) if isinstance(trace, (str, os.PathLike)) else _select(trace_rows(trace), {})
        if not rows:
            raise SamplerError("ReplaySampler: the trace has no rows")
        self.trace = rows
        self._ts = [r["t_ns"] for r in rows]
        super().__init__(interval_s=interval_s or _median_step_s(self._ts) or 0.1, keep_s=keep_s)
        self.has_counter = any(r["energy_j"] is not None for r in rows) if has_counter is None else has_counter
        if counter_period_s is not None:
            self.counter_period_s = counter_period_s
        if counter_wrap_j is not None:
            self.counter_wrap_j = counter_wrap_j
        if scope is not None:
            self.scope = scope
        self.realtime = bool(realtime)
        self.clock_ns = self._ts[0]
        self.started = False
        self._fed = 0  # trace rows polled into the series so far
        self._wall0_ns = 0

    @classmethod
    def from_samples(cls, samples: Any, trial_id: str | None = None, source: str | None = None,
                     **kwargs: Any) -> ReplaySampler:
        """A replay of one trial's series from energyray's `samples` table (Store.read("samples"),
        a DataFrame or its rows); `trial_id`/`source` pick the series where it holds several."""
        where = {k: v for k, v in (("trial_id", trial_id), ("source", source)) if v is not None}
        return cls(_select(trace_rows(samples), where), **kwargs)

    # -- the virtual clock ------------------------------------------------------------------
    @property
    def margin_ns(self) -> float:
        """How far from an edge a sample still counts as its neighbour (PollingSampler.end's)."""
        return self.interval_s * 1.5e9

    def advance_to(self, t_ns: int) -> None:
        """Move the clock to `t_ns` (never back), polling every trace row up to it."""
        t_ns = int(t_ns)
        if t_ns < self.clock_ns:
            raise ValueError(f"the virtual clock only moves forward ({self.clock_ns} -> {t_ns})")
        self.clock_ns = t_ns
        self._poll_once()

    def _sync(self) -> None:
        if self.realtime and self.started:
            self.advance_to(max(self.clock_ns, self._ts[0] + now_ns() - self._wall0_ns))

    # -- PollingSampler's hooks, on the trace ----------------------------------------------
    def _row_at(self, t_ns: int) -> dict[str, Any] | None:
        """The last row at or before t_ns, or None where the device was not read then."""
        i = bisect_right(self._ts, t_ns)
        if i == 0 or t_ns - self._ts[i - 1] > self.margin_ns:
            return None
        return self.trace[i - 1]

    def _read_sample(self) -> dict[str, Any]:
        row = self._row_at(self.clock_ns)
        if row is None:
            raise SamplerError(f"no trace row at t_ns={self.clock_ns}")
        return {c: row.get(c) for c in SAMPLE_COLUMNS if c != "t_ns"}

    def _read_counter_j(self) -> float | None:
        row = self._row_at(self.clock_ns)
        return None if row is None else row["energy_j"]

    def _counter_read_at(self) -> tuple[float | None, int]:
        """An edge read: the last row's counter, at the virtual clock. Not logged again:
        _poll_once logged that row, at its own time, when the clock reached it."""
        return self._read_counter_j(), self.clock_ns

    def _caller_ns(self, t_ns: int) -> int:
        """A caller's CLOCK_MONOTONIC reading on the virtual clock: with ``realtime``, the
        trace's start plus the time since `start`; else the caller's value is taken as virtual."""
        if self.realtime and self.started:
            return self._ts[0] + int(t_ns) - self._wall0_ns
        return int(t_ns)

    def _poll_once(self) -> None:
        """Poll every trace row due by the clock into the series (trimmed as the base does)."""
        with self._lock:
            while self._fed < len(self.trace) and self._ts[self._fed] <= self.clock_ns:
                row = self.trace[self._fed]
                self._series.append({c: row.get(c) for c in SAMPLE_COLUMNS})
                if self.has_counter and row["energy_j"] is not None:
                    self._log_counter(row["t_ns"], row["t_ns"], row["energy_j"])
                self._fed += 1
            self._trim(self.clock_ns - self._keep_ns)

    # -- protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        """No thread: the clock moves by `advance_to` (or with the wall clock if realtime)."""
        if not self.started:
            self.started = True
            self._wall0_ns = now_ns()

    # -- PollingSampler's clock hooks: the same begin/end/latest, on the virtual clock -------
    def _tick(self) -> None:
        self._sync()

    def _now_ns(self) -> int:
        return self.clock_ns

    def _edge_poll(self) -> None:
        """The edge poll is the trace's next row (see _window): nothing is made up here."""

    def _window(self, t0: int, t1: int) -> list[dict[str, Any]]:
        """The series around [t0, t1] as PollingSampler.end sees it: polled samples within the
        margin before t0, and the poll at the edge, which here is the trace's next row."""
        with self._lock:
            window = [s for s in self._series if t0 - self.margin_ns <= s["t_ns"] <= t1]
        nxt = bisect_right(self._ts, t1)
        if nxt < len(self._ts) and self._ts[nxt] - t1 <= self.margin_ns:
            window.append({c: self.trace[nxt].get(c) for c in SAMPLE_COLUMNS})
        return window

    def describe(self) -> dict[str, Any]:
        return {
            **super().describe(),
            "energy_counter": self.has_counter,
            "trace_rows": len(self.trace),
            "trace_start_ns": self._ts[0],
            "trace_end_ns": self._ts[-1],
            "realtime": self.realtime,
        }

