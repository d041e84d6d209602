"""TrialRunner: runs one group's trials on one device, measuring every phase's energy.

Plain Python, testable without Ray (the orchestrator wraps it in an actor). Phases, after
the thesis seed (§3.1.2, §7.2):

- per group: `idle` (model not loaded, device settled: the baseline power), `load`, and,
  after its last trial, `unload`;
- per trial: `warmup` (before the first trial of each shape; not counted), the trial's
  window split at the first token into `prefill` and `decode` (plus a `steady` window for
  batches: every sequence decoding, no ramp-up or drain), then `response` (decoding the
  ids to text, scoring).

Each phase gets `<phase>_j`, `<phase>_s`, `<phase>_source` (and power where measured) in
the trial's row, and its samples are labelled with the phase. A failure inside a trial
becomes a row with a status and the error; the runner goes on.
"""

from __future__ import annotations

import dataclasses
import json
import time
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from energyray import roofline, tasks
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec
from energyray.registry import BACKENDS, resolve
from energyray.samplers.base import WindowReading, now_ns

GROUP_RULE = (
    "idle_*: measured once per device, before its first group, and reused by its later groups "
    "(measurement.idle_scope=slot; idle_reused says which) or before every group (idle_scope=group); "
    "load_*: measured once per load, before its first trial; idle_* and load_* are repeated on "
    "each row of that load, which share a load_id (divide load_* by their count to share it; group_trials "
    "is that count as planned when the row was written: ray.steal_work can later move trials of a group "
    "to another worker, which loads the model itself); unload_*: measured once, after the "
    "load's last trial, on that trial's row only; warmup_*: the uncounted warmup run just "
    "before this trial (the first of its shape). None of these is in energy_j. backend=server: "
    "load_* is the local server's startup (launch until it answers) and unload_* its shutdown "
    "(signal until the process exits), as load_label/unload_label say. backend=openai: the "
    "model runs remotely, so every energy column is null (not_measurable)."
)


@dataclass
class TrialResult:
    row: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _is_oom(e: BaseException) -> bool:
    """CUDA's "out of memory", or the CPU allocator's "not enough memory"/"can't allocate memory"."""
    text = str(e).lower()
    return any(m in text for m in ("out of memory", "not enough memory", "can't allocate memory"))


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class TrialRunner:
    """Runs the trials of one load group. `sampler` follows samplers.base.Sampler, or is None.

    `node_samplers` (role -> samplers.node.NodeSampler, e.g. a SharedNodeSampler the node's
    workers share) add node-level figures: role "wall" (a PDU) gives the trial's
    ``wall_energy_*`` columns, role "cpu" (RAPL/CodeCarbon on a GPU node) ``cpu_energy_*``,
    ``ram_energy_j`` and ``co2_kg``; each phase gets ``<phase>_<role>_j``. Their samples go to
    the samples table under the node sampler's own source name.
    """

    def __init__(self, sampler: Any, generation: Any, cache_dir: str, device: str = "auto",
                 seed: int = 0, node: str | None = None, env: dict[str, Any] | None = None,
                 measurement: Any = None, hardware: str = "cpu",
                 backend_settings: dict[str, Any] | None = None,
                 node_samplers: dict[str, Any] | None = None) -> None:
        from energyray.config import MeasurementConfig

        self.sampler = sampler
        self.generation = generation
        self.measurement = measurement or MeasurementConfig(idle_s=0.0, idle_settle_s=0.0)
        self.cache_dir = cache_dir
        self.device = device
        self.seed = seed
        self.node = node
        self.hardware = hardware
        self.env = env or {}
        self.backend_settings = backend_settings or {}  # RunConfig sections a backend asks for by name
        self.backend: Any = None
        self.load_info: Any = None
        self.group: dict[str, Any] = {}
        self.sampler_info: dict[str, Any] = {}
        self.arch: dict[str, Any] = {}
        self._warmed: set[tuple[Any, ...]] = set()  # shapes already warmed up in this group
        self._pending: list[dict[str, Any]] = []  # samples of group phases, for the next row
        self._idle_temp_c: float | None = None
        self._slot_idle: dict[str, Any] | None = None  # idle_scope=slot: the device's baseline, once
        self._cpu_bandwidth_gbs: float | None = None
        self._groups = 0  # groups loaded in this process so far
        self.node_samplers: dict[str, Any] = dict(node_samplers or {})
        self.node_info: dict[str, Any] = {}
        # node windows are labelled "<node_tag>:<label>": unique on the node; the orchestrator may
        # set its own tag, to drop a dead worker's windows (SharedNodeSampler.discard)
        self.node_tag = uuid.uuid4().hex[:8]
        self._node_open: dict[tuple[str, str], str | None] = {}  # (role, label) -> begin error
        self._node_readings: dict[str, dict[str, WindowReading | str]] = {}  # label -> role -> reading

    # -- windows: a broken sampler never kills a trial; it gives null energy with the reason
    def _begin(self, label: str) -> str | None:
        if not self._local():
            return str(getattr(self.backend, "energy_reason", "the model does not run on this machine"))
        if self.node_samplers:  # first, so that the device's window does not hold the node's call
            self._node_begin(label, now_ns())
        return self._device_begin(label)

    def _end(self, label: str, begin_error: str | None,
             parts: dict[str, tuple[int, int]] | None = None) -> WindowReading | str:
        reading = self._device_end(label, begin_error, parts)
        if self.node_samplers and self._local():
            self._node_end(label, reading)
        return reading

    def _device_begin(self, label: str) -> str | None:
        if self.sampler is None:
            return "no energy sampler for this device (sampler.cpu=none?)"
        try:
            self.sampler.begin(label)
            return None
        except Exception as e:
            return f"sampler failed at window start: {type(e).__name__}: {e}"

    def _device_end(self, label: str, begin_error: str | None,
                    parts: dict[str, tuple[int, int]] | None = None) -> WindowReading | str:
        if begin_error is not None:
            return begin_error
        try:
            reading = self.sampler.end(label, parts) if parts else self.sampler.end(label)
            reading = reading if isinstance(reading, WindowReading) else WindowReading(**reading)
        except Exception as e:
            return f"sampler failed at window end: {type(e).__name__}: {e}"
        return self._anchored(reading)

    def _anchored(self, reading: WindowReading) -> WindowReading:
        """A window too short for the counter (integrated from polled power, flagged short_window)
        gets the counter's delta over a span of >= 10 counter periods around it, shared by the
        power series' shape (PollingSampler.anchor; source counter_apportioned). On bursty
        work NVML's 10 Hz power alone was 17 % under the counter (benchmarks/README.md). The
        span reaches back into what ran before the window, so this needs no waiting. Where
        the counter cannot anchor it, the polled figure stays, with the reason."""
        if not (reading.short_window and reading.source == "polled" and self.measurement.anchor_short_windows):
            return reading
        anchor = getattr(self.sampler, "anchor", None)
        if anchor is None:
            return reading
        try:
            (out,) = anchor([reading])
            return out if isinstance(out, WindowReading) else WindowReading(**out)
        except Exception as e:  # the polled figure stands, and says why it was not anchored
            return dataclasses.replace(reading, reason=reading.reason or f"not counter-anchored: {type(e).__name__}: {e}")

    # -- node-level windows: around the device's (they end at its end), labelled uniquely on the node
    def _node_begin(self, label: str, at: int) -> None:
        for role, ns in self.node_samplers.items():
            try:
                ns.begin(f"{self.node_tag}:{label}", at_ns=at, gpu=self.sampler, idle=label == "idle")
                self._node_open[(role, label)] = None
            except Exception as e:
                self._node_open[(role, label)] = f"node sampler failed at window start: {type(e).__name__}: {e}"

    def _node_end(self, label: str, device: WindowReading | str) -> None:
        at = device.end_ns if isinstance(device, WindowReading) else now_ns()
        out: dict[str, WindowReading | str] = {}
        for role, ns in self.node_samplers.items():
            err = self._node_open.pop((role, label), "node window was never begun")
            if err is not None:
                out[role] = err
                continue
            try:
                r = ns.end(f"{self.node_tag}:{label}", at_ns=at)
                out[role] = r if isinstance(r, WindowReading) else WindowReading(**r)
            except Exception as e:
                out[role] = f"node sampler failed at window end: {type(e).__name__}: {e}"
        self._node_readings[label] = out

    def _node_fields(self, label: str, phase: str | None = None) -> dict[str, Any]:
        """Row fields of the node windows of `label`: the trial's columns, or `<phase>_<role>_j`."""
        out: dict[str, Any] = {}
        for role, r in self._node_readings.pop(label, {}).items():
            if phase is not None:
                out[f"{phase}_{role}_j"] = r.energy_j if isinstance(r, WindowReading) else None
                continue
            p = f"{role}_energy"
            if isinstance(r, str):
                out.update({f"{p}_j": None, f"{p}_source": "not_measurable", f"{p}_reason": r})
                continue
            x = r.extras
            out.update({
                f"{p}_j": r.energy_j, f"{p}_source": r.source if r.energy_j is not None else "not_measurable",
                f"{p}_scope": r.scope, f"{p}_reason": r.reason, f"{p}_attribution": x.get("attribution"),
                f"{p}_node_j": x.get("node_energy_j"), f"{p}_share": x.get("share"),
                f"{p}_idle_subtracted_j": x.get("idle_subtracted_j"), f"{role}_idle_power_w": x.get("node_idle_power_w"),
                f"{role}_avg_power_w": r.avg_power_w,
            })
            if role == "cpu":  # RAPL and CodeCarbon split CPU and RAM where they can
                out["cpu_energy_total_j"] = r.energy_j
                out.update({k: x[k] for k in ("cpu_energy_j", "ram_energy_j", "co2_kg", "carbon_intensity_g_per_kwh")
                            if k in x})
        return out

    def _phase(self, phase: str, reading: WindowReading | str, duration_s: float | None = None) -> dict[str, Any]:
        """Row fields of one measured phase, and its samples queued for the next row."""
        if isinstance(reading, str):
            return {f"{phase}_j": None, f"{phase}_s": duration_s, f"{phase}_source": "not_measurable",
                    f"{phase}_energy_reason": reading}
        self._pending.extend({**s, "phase": phase} for s in reading.samples)
        return {
            f"{phase}_j": reading.energy_j,
            f"{phase}_s": duration_s if duration_s is not None else reading.duration_s,
            f"{phase}_source": reading.source if reading.energy_j is not None else "not_measurable",
            f"{phase}_energy_reason": reading.reason,
            f"{phase}_avg_power_w": reading.avg_power_w,
            f"{phase}_peak_power_w": reading.peak_power_w,
        }

    def _measure(self, phase: str, fn: Any) -> tuple[Any, dict[str, Any]]:
        err = self._begin(phase)
        t0 = time.monotonic()
        try:
            value = fn()
        finally:
            elapsed = time.monotonic() - t0
            reading = self._end(phase, err)
        fields = self._phase(phase, reading, elapsed)
        if self.node_samplers:
            fields.update(self._node_fields(phase, phase))
        return value, fields

    def _local(self) -> bool:
        """Whether this machine's sampler measures the model (False for a hosted API)."""
        return bool(getattr(self.backend, "measures_local_energy", True))

    def _latest(self) -> dict[str, Any]:
        try:
            return dict(self.sampler.latest() or {}) if self.sampler is not None else {}
        except Exception:
            return {}

    # -- group phases ---------------------------------------------------------------------
    def load(self, spec: TrialSpec, model: Any) -> dict[str, Any]:
        """Prepare (unmeasured), measure `idle`, then `load`. Raises if the model cannot load."""
        t_import = time.monotonic()
        cls = resolve("backend", BACKENDS, spec.backend)  # waits for a preload of it (WorkerHost)
        import_s = time.monotonic() - t_import
        self.backend = cls(**{k: self.backend_settings[k] for k in getattr(cls, "settings", ())
                              if k in self.backend_settings})
        self.hardware = spec.hardware
        if spec.precision not in self.backend.precisions:
            raise TrialFailed(f"Backend {spec.backend!r} does not support precision {spec.precision!r}. "
                              f"Valid choices: {', '.join(self.backend.precisions)}.")
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
        self._pending = []
        # import_s: how long load waited for the backend's module (0 once imported in this process)
        # index 0: the process's first group; load_id: unique per load, shared by the rows it served
        self.group = {"worker_group_index": self._groups, "import_s": import_s, "load_id": uuid.uuid4().hex[:16]}
        self._groups += 1
        m = self.measurement
        cached = self._recall_idle() if m.idle_s > 0 and self._local() and m.idle_scope == "slot" else None
        if cached:
            self.group.update(cached, idle_reused=True)
            self._idle_temp_c = cached.get("idle_temperature_c")
        elif m.idle_s > 0 and self._local():  # before prepare, which may use the device (building random weights)
            settled_s, settled = self._settle()
            _, idle = self._measure("idle", lambda: time.sleep(m.idle_s))
            self.group.update(idle)
            # the sampler's own window (energy / its duration), not the runner's timing of the sleep
            self.group["idle_power_w"] = idle.get("idle_avg_power_w")
            temps = [s["temperature_c"] for s in self._pending if s.get("temperature_c") is not None]
            self._idle_temp_c = min(temps) if temps else None
            self.group.update(idle_temperature_c=self._idle_temp_c, idle_settle_s=settled_s, idle_settled=settled)
            self.group["idle_method"] = (
                f"{m.idle_s:g} s window before the group's model is prepared and loaded, after "
                f"{settled_s:.1f} s settling ({'power stable' if settled else 'power still falling at the limit' if settled is False else 'no power series'}); "
                "a GPU idles higher for a while after work (123 W vs 80 W seen on an H200)"
                + ("; measured once per device, before its first group, and reused by its later groups "
                   "(measurement.idle_scope=slot)" if m.idle_scope == "slot" else ""))
            self.group.update(idle_reused=False, idle_measured_at=_utc())
            self._remember_idle({k: v for k, v in self.group.items() if k.startswith("idle")})
        else:
            self.group.update(idle_j=None, idle_power_w=None, idle_source="not_measurable",
                              idle_energy_reason="measurement.idle_s=0: no idle baseline" if self._local()
                              else "the model does not run on this machine: no idle baseline")
        t0 = time.monotonic()
        self.backend.prepare(model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed)
        self.group["prepare_s"] = time.monotonic() - t0
        self.load_info, fields = self._measure("load", lambda: self.backend.load(
            model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed))
        self.group.update(fields)
        for phase in ("load", "unload"):
            if getattr(self.backend, f"{phase}_label", None):
                self.group[f"{phase}_label"] = getattr(self.backend, f"{phase}_label")
        self._warmed = set()
        self.arch = self.backend.architecture() if hasattr(self.backend, "architecture") else {}
        if self.load_info.device == "cpu" and self._cpu_bandwidth_gbs is None and not m.memory_bandwidth_gbs:
            self._cpu_bandwidth_gbs = roofline.measure_copy_bandwidth_gbs()
        return {"load_s": self.group.get("load_s"), "precision": self.load_info.precision,
                "device": self.load_info.device}

    def _recall_idle(self) -> dict[str, Any] | None:
        """This device's idle baseline, if one was measured before (here, or by an earlier
        worker on the same slot: the sampler actor outlives workers and keeps it)."""
        if self._slot_idle:
            return self._slot_idle
        try:
            return self.sampler.recall("idle") if hasattr(self.sampler, "recall") else None
        except Exception:
            return None

    def _remember_idle(self, fields: dict[str, Any]) -> None:
        self._slot_idle = dict(fields)
        try:
            if hasattr(self.sampler, "remember"):
                self.sampler.remember("idle", dict(fields))
        except Exception:
            pass

    def _settle(self) -> tuple[float, bool | None]:
        """Wait `idle_settle_s`, then until power stops falling (two 1 s means within 2 %),
        at most `idle_settle_max_s` in all. Returns (seconds waited, settled or None)."""
        m = self.measurement
        t0 = time.monotonic()
        time.sleep(m.idle_settle_s)

        def mean_power(seconds: float) -> float | None:
            readings, end = [], time.monotonic() + seconds
            while time.monotonic() < end:
                p = self._latest().get("power_w")
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

    def unload(self) -> dict[str, Any]:
        """Measure `unload` (freeing the model); returns its row fields."""
        if self.backend is None:
            return {"unload_j": None, "unload_energy_reason": "no model was loaded"}
        _, fields = self._measure("unload", self.backend.unload)
        fields.update(getattr(self.backend, "unload_extras", None) or {})  # e.g. a server's exit code
        # whether this process can take the slot's next group (ray.reuse_workers=auto decides)
        left = getattr(self.backend, "memory_in_use_mb", None)
        fields["unload_memory_left_mb"] = left() if callable(left) else None
        fields["process_reusable"] = bool(getattr(self.backend, "reusable_process", True))
        self.backend = None
        return fields

    def unload_after(self, result: TrialResult) -> TrialResult:
        """Measure `unload` after a trial that ran without `last` (its group's next trial was
        taken by another worker meanwhile, ray.steal_work): its fields and samples join that
        trial's result, as `run(last=True)` would have put them."""
        result.row.update(self._unload_fields())
        result.samples += self._with_pending(str(result.row.get("trial_id")), [])
        return result

    def _unload_fields(self) -> dict[str, Any]:
        """`unload`'s row fields, or null with the reason where it raised."""
        try:
            return self.unload()
        except Exception as e:
            return {"unload_j": None, "unload_energy_reason": f"unload failed: {type(e).__name__}: {e}"}

    def _with_pending(self, trial_id: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The group's samples not yet stored (idle, load, warmup, unload), then `samples`, each
        tagged with the trial they are stored with and the sampler's name."""
        pending = [{**s, "trial_id": trial_id} for s in self._pending]
        self._pending = []
        source = self.sampler_info.get("sampler")
        return [{"trial_id": trial_id, "source": source, **s} for s in [*pending, *samples]]

    def warmup(self, spec: TrialSpec) -> dict[str, Any]:
        """Before the first trial of each shape (batch, prompts, length): `warmup_runs`
        generations of that shape, not counted in the trial's energy, each of
        `warmup_new_tokens` (at most the trial's length). The first call of a new shape ran
        2-3x slower on an H200 with cuDNN attention, which builds a plan per shape; without
        it, 16 tokens are enough (benchmarks/README.md). Returns the row fields of the warmup
        that ran just before this trial (none: 0 runs, 0 J).
        """
        length = self.max_new_tokens(spec)
        shape = (spec.batch_size, spec.task, spec.prompt_variant, length)
        own = getattr(self.backend, "warmup_runs", None)  # a paid API's own setting
        runs = max(0, int(self.generation.warmup_runs if own is None else own))
        if shape in self._warmed or not runs:
            if not self._local():  # nothing of the model's was measured here, not even a 0
                return {"warmup_runs": 0, "warmup_new_tokens": 0, "warmup_s": 0.0, "warmup_j": None,
                        "warmup_energy_reason": None}
            return {"warmup_runs": 0, "warmup_new_tokens": 0, "warmup_s": 0.0, "warmup_j": 0.0,
                    "warmup_energy_reason": None}
        self._warmed.add(shape)
        prompts = [p.text for p in tasks.prompts(spec.task, spec.prompt_variant, spec.batch_size)]
        new_tokens = min(int(self.generation.warmup_new_tokens or length), length)

        def go() -> None:
            for _ in range(runs):
                self.backend.generate(prompts, new_tokens, ignore_eos=True)

        _, fields = self._measure("warmup", go)
        return {"warmup_runs": runs, "warmup_new_tokens": new_tokens, **fields}

    def cooldown(self) -> dict[str, Any]:
        """A fixed pause and/or a wait until within N °C of the idle temperature."""
        m = self.measurement
        t0 = time.monotonic()
        if m.cooldown_s > 0:
            time.sleep(m.cooldown_s)
        reached = None
        if m.cooldown_to_idle_c is not None and self._idle_temp_c is not None:
            target = self._idle_temp_c + m.cooldown_to_idle_c
            deadline = time.monotonic() + m.cooldown_max_s  # the temperature wait alone
            reached = False
            while True:
                temp = self._latest().get("temperature_c")
                if temp is not None and temp <= target:
                    reached = True
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(0.5, left))
        return {"cooldown_s": time.monotonic() - t0, "cooldown_reached": reached}

    def max_new_tokens(self, spec: TrialSpec) -> int:
        if spec.max_new_tokens is not None:
            return spec.max_new_tokens
        on_cpu = self.load_info is None or self.load_info.device == "cpu"  # a GPU, or a remote API
        return int(self.generation.cpu_max_new_tokens if on_cpu else self.generation.max_new_tokens)

    def ignore_eos(self, spec: TrialSpec) -> bool:
        flag = self.generation.ignore_eos
        return spec.weights == "dummy" if flag is None else bool(flag)

    # -- one trial -------------------------------------------------------------------------
    def run(self, spec: TrialSpec, model: Any, config: dict[str, Any], last: bool = False) -> TrialResult:
        """One trial: a row whatever happens (status ok | failed | oom). With `last`, the
        group's `unload` is measured after it and recorded on its row."""
        row = self._base_row(spec, model, config)
        row["started_at"] = _utc()
        samples: list[dict[str, Any]] = []
        reading: WindowReading | str | None = None
        try:
            if self.backend is None or self.load_info is None:
                raise TrialFailed("model not loaded")
            row.update(self.cooldown())
            row.update(self.warmup(spec))
            row["temperature_start_c"] = self._latest().get("temperature_c")
            items = tasks.prompts(spec.task, spec.prompt_variant, spec.batch_size)
            new_tokens = self.max_new_tokens(spec)
            label = f"trial:{spec.trial_id}"
            err = self._begin(label)
            gen = None
            try:
                gen = self.backend.generate([p.text for p in items], new_tokens, self.ignore_eos(spec))
            finally:
                reading = self._end(label, err, self._parts(gen))
            texts, response = self._measure("response", lambda: self.backend.decode(gen))
            row.update(response)
            row.update(self._measured(spec, gen, reading, items, texts, new_tokens))
            if isinstance(reading, WindowReading):
                samples = [{**s, "phase": self._phase_of(s["t_ns"], gen)} for s in reading.samples]
            if self.node_samplers:
                samples += [{**s, "source": name, "phase": self._phase_of(s["t_ns"], gen)}
                            for name, r in self._node_trial_readings(label) for s in r.samples]
                row.update(self._node_fields(label))
            row["status"] = "ok"
        except TrialFailed as e:
            row.update(status=e.status, error=str(e))
        except Exception as e:  # a trial's failure is data: the sweep goes on
            status = "oom" if _is_oom(e) else "failed"
            row.update(status=status, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
        if row["status"] != "ok":  # no figure for a trial that did not complete; what the attempt cost, apart
            row.update(energy_j=None, energy_source="not_measurable",
                       energy_reason=f"trial {row['status']}: no energy for an incomplete trial "
                                     "(failed_window_j: what its window used up to the failure)",
                       failed_window_j=reading.energy_j if isinstance(reading, WindowReading) else None)
        self._node_readings.pop(f"trial:{spec.trial_id}", None)  # a trial that failed before its fields
        if last:
            row.update(self._unload_fields())
        else:
            row.update(unload_j=None, unload_energy_reason="measured once per group, on its last trial")
        row["finished_at"] = _utc()
        return TrialResult(row=row, samples=self._with_pending(spec.trial_id, samples))

    def _node_trial_readings(self, label: str) -> list[tuple[str, WindowReading]]:
        """(source name, reading) of the trial's node windows that were measured."""
        out = []
        for role, r in self._node_readings.get(label, {}).items():
            if isinstance(r, WindowReading):
                out.append((str(self.node_info.get(role, {}).get("sampler") or role), r))
        return out

    @staticmethod
    def _parts(gen: Any) -> dict[str, tuple[int, int]] | None:
        if gen is None or gen.first_token_ns is None:
            return None
        parts = {"prefill": (gen.start_ns, gen.first_token_ns), "decode": (gen.first_token_ns, gen.end_ns)}
        steady = gen.steady_window_ns()
        if steady is not None:
            parts["steady"] = steady
        return parts

    @staticmethod
    def _phase_of(t_ns: int, gen: Any) -> str:
        if gen is None or t_ns < gen.start_ns or t_ns > gen.end_ns:
            return "trial_edge"  # inside the window, outside generate (the sampler calls)
        if gen.first_token_ns is None:
            return "generate"
        return "prefill" if t_ns < gen.first_token_ns else "decode"

    def _base_row(self, spec: TrialSpec, model: Any, config: dict[str, Any]) -> dict[str, Any]:
        info = self.load_info
        return {
            **{k: v for k, v in spec.to_dict().items() if k not in ("hardware",)},
            "status": "failed", "error": None,
            "precision_requested": spec.precision,
            "precision": info.precision if info else spec.precision,
            "device": info.device if info else None,
            "params_b": (info.params_b if info and info.params_b else None) or getattr(model, "params_b", None),
            "node": self.node,
            "gpu_name": self.sampler_info.get("gpu_name"),
            "gpu_uuid": self.sampler_info.get("gpu_uuid"),
            "group_rule": GROUP_RULE,
            **(getattr(info, "columns", None) or {}),
            **self.group,
            "config_json": json.dumps(config, sort_keys=True, default=str),
            "env_json": json.dumps({**self.env, "sampler": self.sampler_info, "architecture": self.arch,
                                    "load": asdict(info) if info else None,
                                    **({"node_samplers": self.node_info} if self.node_info else {})},
                                   sort_keys=True, default=str),
        }

    def _measured(self, spec: TrialSpec, gen: Any, reading: WindowReading | str,
                  items: list[tasks.Prompt], texts: list[str | None], new_tokens: int) -> dict[str, Any]:
        words = None if any(t is None for t in texts) else sum(tasks.count_words(t or "") for t in texts)
        scores = [tasks.score(t, p.answer) for t, p in zip(texts, items, strict=True) if t is not None]
        scored = [s for s in scores if s is not None]
        accuracy = sum(scored) / len(scored) if scored else None
        ttft, tpot = gen.ttft_s, gen.tpot_s
        out: dict[str, Any] = {
            "input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens,
            "output_words": words, "max_new_tokens_used": new_tokens, "decode_steps": gen.steps,
            "duration_s": gen.duration_s, "latency_s": gen.duration_s, "ttft_s": ttft, "tpot_s": tpot,
            "prefill_s": ttft, "decode_s": None if ttft is None else gen.duration_s - ttft,
            "tokens_per_s": _div(gen.output_tokens, gen.duration_s),
            "peak_memory_mb": gen.peak_memory_mb, "accuracy": accuracy,
            "sample_output": texts[0][:500] if texts and texts[0] is not None else None,
        }
        steady = gen.steady_window_ns()
        if steady is not None:
            steady_tokens = len(gen.lengths) * (min(gen.lengths) - 1)
            out.update(steady_s=(steady[1] - steady[0]) / 1e9, steady_tokens=steady_tokens)
        bw, bw_source = roofline.bandwidth(self.hardware, self.measurement.memory_bandwidth_gbs, self._cpu_bandwidth_gbs)
        out["roofline_bandwidth_gbs"], out["roofline_bandwidth_source"] = bw, bw_source
        out.update(roofline.floor(self.arch, spec.batch_size, (gen.input_tokens or 0) / max(1, spec.batch_size),
                                  gen.steps, bw, tpot, None))
        out.update(gen.extras)  # backend-specific fields: cost, retries, request timings
        if isinstance(reading, str):
            out.update(energy_j=None, energy_source="not_measurable", energy_scope=None, energy_reason=reading)
            return out
        energy = reading.energy_j
        idle_w = self.group.get("idle_power_w")
        temps = [s["temperature_c"] for s in reading.samples if s.get("temperature_c") is not None]
        out.update(
            energy_j=energy, energy_source=reading.source if energy is not None else "not_measurable",
            energy_scope=reading.scope, energy_reason=reading.reason, short_window=reading.short_window,
            window_s=reading.duration_s, avg_power_w=reading.avg_power_w, peak_power_w=reading.peak_power_w,
            energy_idle_subtracted_j=None if energy is None or idle_w is None else energy - idle_w * reading.duration_s,
            j_per_token=_div(energy, gen.output_tokens), j_per_word=_div(energy, words),
            j_per_request=_div(energy, spec.batch_size),
            j_per_correct=_div(energy, None if accuracy is None else accuracy * len(scored)),
            temperature_max_c=max(temps) if temps else None,
            samples_n=len(reading.samples),
            energy_polled_j=reading.extras.get("polled_j"), energy_anchor_scale=reading.extras.get("anchor_scale"),
            energy_anchor_span_s=None if "anchor_span_start_ns" not in reading.extras else
            (reading.extras["anchor_span_end_ns"] - reading.extras["anchor_span_start_ns"]) / 1e9,
            **{k: v for k, v in reading.extras.items() if k in (
                "cpu_energy_j", "ram_energy_j", "co2_kg", "carbon_intensity_g_per_kwh")},
        )
        for name, part in reading.parts.items():
            out[f"{name}_j"] = part["energy_j"]
            out[f"{name}_source"] = part["source"] if part["energy_j"] is not None else "not_measurable"
            if part.get("reason"):
                out[f"{name}_energy_reason"] = part["reason"]
        if out.get("steady_j") is not None:
            out["steady_j_per_token"] = _div(out["steady_j"], out.get("steady_tokens"))
        decode_w = _div(out.get("decode_j"), out.get("decode_s"))
        out["decode_avg_power_w"] = decode_w
        out["j_per_output_token_decode"] = _div(out.get("decode_j"), None if gen.output_tokens is None
                                                else gen.output_tokens - len(gen.lengths))
        if out.get("roofline_s_per_token") is not None and decode_w is not None:
            out["roofline_j_per_token"] = out["roofline_s_per_token"] * decode_w
        return out
