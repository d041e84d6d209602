"""TrialRunner: runs one group's trials on one device, measuring each window's energy.

Plain Python, testable without Ray (the orchestrator wraps it in an actor). For a group it
measures the model's `load` once, runs `warmup` generations (not counted), then each
trial's generate call as its own window, and turns what the backend and the sampler saw
into one row per trial plus that trial's samples. A failure inside a trial becomes a row
with a status and the error; the runner goes on.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from energyray import tasks
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec
from energyray.registry import BACKENDS, resolve
from energyray.samplers.base import WindowReading


@dataclass
class TrialResult:
    row: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)


def _utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


class TrialRunner:
    """Runs the trials of one load group. `sampler` follows samplers.base.Sampler, or is None."""

    def __init__(self, sampler: Any, generation: Any, cache_dir: str, device: str = "auto",
                 seed: int = 0, node: str | None = None, env: dict[str, Any] | None = None) -> None:
        self.sampler = sampler
        self.generation = generation
        self.cache_dir = cache_dir
        self.device = device
        self.seed = seed
        self.node = node
        self.env = env or {}
        self.backend: Any = None
        self.load_info: Any = None
        self.group: dict[str, Any] = {}
        self.sampler_info: dict[str, Any] = {}
        self._warmed: set[tuple[Any, ...]] = set()  # shapes already warmed up in this group

    # -- sampler calls never kill a trial: a broken sampler gives null energy with the reason
    def _begin(self, label: str) -> str | None:
        if self.sampler is None:
            return "no energy sampler for this device (sampler.cpu=none?)"
        try:
            self.sampler.begin(label)
            return None
        except Exception as e:
            return f"sampler failed at window start: {type(e).__name__}: {e}"

    def _end(self, label: str, begin_error: str | None) -> WindowReading | str:
        if begin_error is not None:
            return begin_error
        try:
            reading = self.sampler.end(label)
            return reading if isinstance(reading, WindowReading) else WindowReading(**reading)
        except Exception as e:
            return f"sampler failed at window end: {type(e).__name__}: {e}"

    def load(self, spec: TrialSpec, model: Any) -> dict[str, Any]:
        """Load the group's model, measuring `load` and `warmup`. Raises on failure."""
        self.backend = resolve("backend", BACKENDS, spec.backend)()
        if spec.precision not in self.backend.precisions:
            raise TrialFailed(f"Backend {spec.backend!r} does not support precision {spec.precision!r}. "
                              f"Valid choices: {', '.join(self.backend.precisions)}.")
        if self.sampler is not None:
            try:
                self.sampler_info = dict(self.sampler.describe())
            except Exception as e:
                self.sampler_info = {"error": f"{type(e).__name__}: {e}"}
        t0 = time.monotonic()
        self.backend.prepare(model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed)
        prepare_s = time.monotonic() - t0
        err = self._begin("load")
        t0 = time.monotonic()
        self.load_info = self.backend.load(model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed)
        load_s = time.monotonic() - t0
        reading = self._end("load", err)
        self.group = {"prepare_s": prepare_s, "load_s": load_s, **self._energy_fields("load", reading)}
        self._warmed = set()
        return {"load_s": load_s, "precision": self.load_info.precision, "device": self.load_info.device}

    def warmup(self, spec: TrialSpec) -> dict[str, Any]:
        """Before the first trial of each shape (batch, prompts, length): `warmup_runs`
        generations of that shape, not counted in the trial's energy. The first call of a
        new shape ran 2-3x slower on an H200 (benchmarks/README.md). Returns the row fields
        of the warmup that ran just before this trial (none: 0 runs, 0 J).
        """
        shape = (spec.batch_size, spec.task, spec.prompt_variant, self.max_new_tokens(spec))
        runs = max(0, int(self.generation.warmup_runs))
        if shape in self._warmed or not runs:
            return {"warmup_runs": 0, "warmup_s": 0.0, "warmup_j": 0.0, "warmup_energy_reason": None}
        self._warmed.add(shape)
        prompts = [p.text for p in tasks.prompts(spec.task, spec.prompt_variant, spec.batch_size)]
        new_tokens = int(self.generation.warmup_new_tokens or self.max_new_tokens(spec))
        err = self._begin("warmup")
        t0 = time.monotonic()
        try:
            for _ in range(runs):
                self.backend.generate(prompts, new_tokens, ignore_eos=True)
        finally:
            reading = self._end("warmup", err)
        return {"warmup_runs": runs, "warmup_s": time.monotonic() - t0,
                **self._energy_fields("warmup", reading)}

    @staticmethod
    def _energy_fields(phase: str, reading: WindowReading | str) -> dict[str, Any]:
        if isinstance(reading, str):
            return {f"{phase}_j": None, f"{phase}_energy_reason": reading}
        return {f"{phase}_j": reading.energy_j, f"{phase}_energy_reason": reading.reason}

    def max_new_tokens(self, spec: TrialSpec) -> int:
        if spec.max_new_tokens is not None:
            return spec.max_new_tokens
        on_gpu = self.load_info is not None and self.load_info.device == "cuda"
        return int(self.generation.max_new_tokens if on_gpu else self.generation.cpu_max_new_tokens)

    def ignore_eos(self, spec: TrialSpec) -> bool:
        flag = self.generation.ignore_eos
        return spec.weights == "dummy" if flag is None else bool(flag)

    def run(self, spec: TrialSpec, model: Any, config: dict[str, Any]) -> TrialResult:
        """One trial: a row whatever happens (status ok | failed | oom)."""
        row = self._base_row(spec, model, config)
        row["started_at"] = _utc()
        samples: list[dict[str, Any]] = []
        try:
            if self.backend is None or self.load_info is None:
                raise TrialFailed("model not loaded")
            row.update(self.warmup(spec))
            items = tasks.prompts(spec.task, spec.prompt_variant, spec.batch_size)
            new_tokens = self.max_new_tokens(spec)
            label = f"trial:{spec.trial_id}"
            err = self._begin(label)
            try:
                gen = self.backend.generate([p.text for p in items], new_tokens, self.ignore_eos(spec))
            finally:
                reading = self._end(label, err)
            row.update(self._measured(spec, gen, reading, items, new_tokens))
            if isinstance(reading, WindowReading):
                samples = [{"trial_id": spec.trial_id, "source": self.sampler_info.get("sampler"),
                            "phase": "response", **s} for s in reading.samples]
                self._mark_phases(samples, gen.first_token_ns)
            row["status"] = "ok"
        except TrialFailed as e:
            row.update(status=e.status, error=str(e))
        except Exception as e:  # a trial's failure is data: the sweep goes on
            status = "oom" if "out of memory" in str(e).lower() else "failed"
            row.update(status=status, error=f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}")
        row["finished_at"] = _utc()
        return TrialResult(row=row, samples=samples)

    @staticmethod
    def _mark_phases(samples: list[dict[str, Any]], first_token_ns: int | None) -> None:
        """Label each sample prefill or decode by the time of the first token."""
        for s in samples:
            if first_token_ns is None:
                s["phase"] = "generate"
            else:
                s["phase"] = "prefill" if s["t_ns"] < first_token_ns else "decode"

    def _base_row(self, spec: TrialSpec, model: Any, config: dict[str, Any]) -> dict[str, Any]:
        info = self.load_info
        row: dict[str, Any] = {
            **{k: v for k, v in spec.to_dict().items() if k not in ("hardware",)},
            "status": "failed", "error": None,
            "precision_requested": spec.precision,
            "precision": info.precision if info else spec.precision,
            "device": info.device if info else None,
            "params_b": (info.params_b if info and info.params_b else None) or getattr(model, "params_b", None),
            "node": self.node,
            "gpu_name": self.sampler_info.get("gpu_name"),
            "gpu_uuid": self.sampler_info.get("gpu_uuid"),
            "load_rule": "load_j/load_s: the group's whole model load (after one-time cache preparation, "
                         "prepare_s, which is not measured), on each of its trials; "
                         "warmup_j/_s: the uncounted warmup run just before this trial (first of its shape)",
            **self.group,
            "config_json": json.dumps(config, sort_keys=True, default=str),
            "env_json": json.dumps({**self.env, "sampler": self.sampler_info,
                                    "load": asdict(info) if info else None}, sort_keys=True, default=str),
        }
        return row

    def _measured(self, spec: TrialSpec, gen: Any, reading: WindowReading | str,
                  items: list[tasks.Prompt], new_tokens: int) -> dict[str, Any]:
        texts = gen.texts
        words = None if any(t is None for t in texts) else sum(tasks.count_words(t) for t in texts)
        scores = [tasks.score(t, p.answer) for t, p in zip(texts, items, strict=True) if t is not None]
        scored = [s for s in scores if s is not None]
        accuracy = sum(scored) / len(scored) if scored else None
        out: dict[str, Any] = {
            "input_tokens": gen.input_tokens, "output_tokens": gen.output_tokens,
            "output_words": words, "max_new_tokens_used": new_tokens,
            "duration_s": gen.duration_s, "ttft_s": gen.ttft_s,
            "tpot_s": _div(None if gen.ttft_s is None else gen.duration_s - gen.ttft_s, gen.steps - 1 if gen.steps > 1 else None),
            "tokens_per_s": _div(gen.output_tokens, gen.duration_s),
            "peak_memory_mb": gen.peak_memory_mb, "accuracy": accuracy,
            "sample_output": texts[0][:500] if texts and texts[0] is not None else None,
        }
        if isinstance(reading, str):
            out.update(energy_j=None, energy_source="not_measurable", energy_scope=None, energy_reason=reading)
            return out
        energy = reading.energy_j
        temps = [s["temperature_c"] for s in reading.samples if s.get("temperature_c") is not None]
        out.update(
            energy_j=energy, energy_source=reading.source if energy is not None else "not_measurable",
            energy_scope=reading.scope, energy_reason=reading.reason,
            window_s=reading.duration_s, avg_power_w=reading.avg_power_w, peak_power_w=reading.peak_power_w,
            j_per_token=_div(energy, gen.output_tokens), j_per_word=_div(energy, words),
            j_per_request=_div(energy, spec.batch_size),
            j_per_correct=_div(energy, None if accuracy is None else accuracy * len(scored)),
            temperature_start_c=temps[0] if temps else None, temperature_max_c=max(temps) if temps else None,
            samples_n=len(reading.samples),
            **{k: v for k, v in reading.extras.items() if k in (
                "cpu_energy_j", "ram_energy_j", "co2_kg", "carbon_intensity_g_per_kwh")},
        )
        return out

    def unload(self) -> None:
        if self.backend is not None:
            self.backend.unload()
        self.backend = None
