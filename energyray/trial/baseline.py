"""The device's idle baseline (settle, measure, remember for the slot) and the cooldown
before each trial (a pause, or a wait until the device is back near its idle temperature).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from energyray.trial import record
from energyray.trial.windows import Windows

# measure(phase, fn) -> (fn's value, the phase's fields, the device's reading or why none)
Measure = Callable[[str, Callable[[], Any]], tuple[Any, dict[str, Any], Any]]


class Baseline:
    """Idle and cooldown for one worker, after `measurement` (config.MeasurementConfig)."""

    def __init__(self, measurement: Any, windows: Windows) -> None:
        self.measurement = measurement
        self.windows = windows
        self.temperature_c: float | None = None  # the coolest idle sample: cooldown's target
        self._slot: dict[str, Any] | None = None  # idle_scope=slot: the device's baseline, once

    def idle(self, local: bool, measure: Measure) -> dict[str, Any]:
        """The group's idle fields: recalled (idle_scope=slot, measured before on this device),
        measured now (before the model is prepared, which may use the device), or null with why."""
        m = self.measurement
        if m.idle_s <= 0 or not local:
            return record.no_idle_fields("measurement.idle_s=0: no idle baseline" if local
                                         else "the model does not run on this machine: no idle baseline")
        cached = self.recall() if m.idle_scope == "slot" else None
        if cached:
            self.temperature_c = cached.get("idle_temperature_c")
            return {**cached, "idle_reused": True}
        settled_s, settled = self.settle()
        _, fields, reading = measure("idle", lambda: time.sleep(m.idle_s))
        samples = reading.samples if not isinstance(reading, str) else []
        temps = [s["temperature_c"] for s in samples if s.get("temperature_c") is not None]
        self.temperature_c = min(temps) if temps else None
        state = ("power stable" if settled else "power still falling at the limit" if settled is False
                 else "no power series")
        method = (f"{m.idle_s:g} s window before the group's model is prepared and loaded, after "
                  f"{settled_s:.1f} s settling ({state}); "
                  "a GPU idles higher for a while after work (123 W vs 80 W seen on an H200)"
                  + ("; measured once per device, before its first group, and reused by its later groups "
                     "(measurement.idle_scope=slot)" if m.idle_scope == "slot" else ""))
        fields = record.idle_fields(fields, self.temperature_c, settled_s, settled, method)
        self.remember({k: v for k, v in fields.items() if k.startswith("idle")})
        return fields

    def recall(self) -> dict[str, Any] | None:
        """This device's idle baseline, if one was measured before (here, or by an earlier
        worker on the same slot: the sampler actor outlives workers and keeps it)."""
        if self._slot:
            return self._slot
        sampler = self.windows.sampler
        try:
            return sampler.recall("idle") if hasattr(sampler, "recall") else None
        except Exception:
            return None

    def remember(self, fields: dict[str, Any]) -> None:
        self._slot = dict(fields)
        sampler = self.windows.sampler
        try:
            if hasattr(sampler, "remember"):
                sampler.remember("idle", dict(fields))
        except Exception:
            pass

    def settle(self) -> tuple[float, bool | None]:
        """Wait `idle_settle_s`, then until power stops falling (two 1 s means within 2 %),
        at most `idle_settle_max_s` in all. Returns (seconds waited, settled or None)."""
        m = self.measurement
        t0 = time.monotonic()
        time.sleep(m.idle_settle_s)

        def mean_power(seconds: float) -> float | None:
            readings, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                p = self.windows.latest().get("power_w")
                if p is not None:
                    readings.append(p)
                time.sleep(0.1)
            return sum(readings) / len(readings) if readings else None

        if m.idle_settle_max_s <= m.idle_settle_s:
            return time.monotonic() - t0, None
        prev = mean_power(1.0)
        while prev is not None and time.monotonic() - t0 < m.idle_settle_max_s:
            cur = mean_power(1.0)
            if cur is None:
                break
            if cur >= prev * 0.98:
                return time.monotonic() - t0, True
            prev = cur
        return time.monotonic() - t0, (None if prev is None else False)

    def cooldown(self) -> dict[str, Any]:
        """A fixed pause and/or a wait until within N °C of the idle temperature."""
        m = self.measurement
        wait = spin if m.cooldown_spin else time.sleep
        t0 = time.monotonic()
        if m.cooldown_s > 0:
            wait(m.cooldown_s)
        reached = None
        if m.cooldown_to_idle_c is not None and self.temperature_c is not None:
            target = self.temperature_c + m.cooldown_to_idle_c
            deadline = time.monotonic() + m.cooldown_max_s  # the temperature wait alone
            reached = False
            while True:
                temp = self.windows.latest().get("temperature_c")
                if temp is not None and temp <= target:
                    reached = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                wait(min(0.5, left))
        return record.cooldown_fields(time.monotonic() - t0, reached)


def spin(seconds: float) -> None:
    """Busy on this thread for `seconds`; the interpreter still hands the GIL to other threads
    every switch interval (5 ms), so the worker's other threads go on."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass
