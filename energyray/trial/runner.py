"""TrialRunner: runs one load group's trials on one device, measuring every phase's energy.

Plain Python, testable without Ray (the orchestrator wraps it in an actor). The sequence:

- per group: `idle` (model not loaded, device settled: the baseline power), prepare
  (unmeasured), `load`, and, after its last trial, `unload`;
- per trial: cooldown, the workload (the task's items, the requests' prompts as sent, their
  batches: trial/workload.py; unmeasured), `warmup` (before the first trial of each shape, with
  the first batch's prompts; not counted), the trial's window over every batch, its parts per
  batch split at the first token into `prefill` and `decode` (plus `steady` for batches: every
  sequence decoding, no ramp-up or drain), then `response` (decoding the ids to text, scoring);
  then the LLM judge where it is enabled (after the response phase: its wait is not measured).

An image backend (diffusers: `modality = "image"`) takes `_run_images` instead: per prompt one
pipeline call of batch_size images, the window's parts `text_encode`, `denoise`, `vae_decode`
(each sample also tagged with its denoising step), and the images saved as PNG under the store
in the `response` phase (docs/diffusion.md).

Windows are in windows.py, the idle baseline and cooldown in baseline.py, and every column
of the row in record.py. A failure inside a trial becomes a row with a status and the
error; the runner goes on.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from energyray import roofline
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec
from energyray.registry import BACKENDS, resolve
from energyray.samplers.base import WindowReading
from energyray.trial import record, workload
from energyray.trial.baseline import Baseline
from energyray.trial.record import TrialResult
from energyray.trial.windows import Windows
from energyray.trial.workload import Batches, Workload


class TrialRunner:
    """Runs the trials of one load group. `sampler` follows samplers.base.Sampler, or is None.

    `generation` and `measurement` are the config sections of those names; `cache_dir`,
    `device` and `seed` go to the backend's prepare/load; `node` and `env` to the row;
    `backend_settings` are the RunConfig sections a backend asks for by name. `node_samplers`
    (role -> samplers.node.SharedNodeSampler, shared by the node's workers) add node-level
    figures (record.NODE_ROLES); their samples go to the samples table under their own source
    name. `hardware` is the spec's, set again at each load. `tasks` is the config's tasks section
    (items' limit and sample, file tasks, the judge); default: backend_settings["tasks"].
    """

    def __init__(self, sampler: Any, generation: Any, cache_dir: str, *, device: str = "auto",
                 seed: int = 0, node: str | None = None, env: dict[str, Any] | None = None,
                 measurement: Any = None, backend_settings: dict[str, Any] | None = None,
                 node_samplers: dict[str, Any] | None = None, hardware: str = "cpu", tasks: Any = None) -> None:
        from energyray.config import MeasurementConfig, TasksConfig

        self.generation = generation
        self.measurement = measurement or MeasurementConfig(idle_s=0.0, idle_settle_s=0.0)
        self.cache_dir, self.device, self.seed = cache_dir, device, seed
        self.node, self.env = node, env or {}
        self.backend_settings = backend_settings or {}
        self.tasks = tasks or self.backend_settings.get("tasks") or TasksConfig()
        self.hardware = hardware
        self.windows = Windows(sampler, node_samplers, self.measurement)
        self.baseline = Baseline(self.measurement, self.windows)
        self.backend: Any = None
        self.load_info: Any = None
        self.group: dict[str, Any] = {}  # the load's fields, repeated on each of its rows
        self.arch: dict[str, Any] = {}
        self._warmed: set[tuple[Any, ...]] = set()  # shapes already warmed up in this group
        self._pending: list[dict[str, Any]] = []  # samples of group phases, for the next row
        self._cpu_bandwidth_gbs: float | None = None
        self._groups = 0  # groups loaded in this process so far

    # the orchestrator names the worker's node windows, and gives the sampler's description
    # where the device has no sampler here
    @property
    def node_tag(self) -> str:
        return self.windows.node_tag

    @node_tag.setter
    def node_tag(self, tag: str) -> None:
        self.windows.node_tag = tag

    @property
    def sampler_info(self) -> dict[str, Any]:
        return self.windows.sampler_info

    @sampler_info.setter
    def sampler_info(self, info: dict[str, Any]) -> None:
        self.windows.sampler_info = info

    # -- measuring one phase ---------------------------------------------------------------
    def _not_here(self) -> str | None:
        """Why this machine's samplers do not measure the model (a hosted API), or None."""
        if getattr(self.backend, "measures_local_energy", True):
            return None
        return str(getattr(self.backend, "energy_reason", "the model does not run on this machine"))

    def _measure(self, phase: str, fn: Callable[[], Any]) -> tuple[Any, dict[str, Any], WindowReading | str]:
        """Run `fn` in the window `phase`: its value, the phase's fields, the device's reading
        (its samples queued for the next row)."""
        not_here = self._not_here()
        err = self.windows.begin(phase, not_here)
        t0 = time.monotonic()
        try:
            value = fn()
        finally:
            elapsed = time.monotonic() - t0
            reading = self.windows.end(phase, err, local=not_here is None)
        fields = record.phase_fields(phase, reading, elapsed)
        if not isinstance(reading, str):
            self._pending.extend({**s, "phase": phase} for s in reading.samples)
        if self.windows.node_samplers:
            fields.update(record.node_phase_fields(phase, self.windows.node_readings(phase)))
        return value, fields, reading

    # -- group phases ---------------------------------------------------------------------
    def load(self, spec: TrialSpec, model: Any) -> dict[str, Any]:
        """Measure `idle`, prepare (unmeasured), then measure `load`. Raises if the model cannot load."""
        t_import = time.monotonic()
        cls = resolve("backend", BACKENDS, spec.backend)  # waits for a preload of it (WorkerHost)
        import_s = time.monotonic() - t_import
        self.backend = cls(**{k: self.backend_settings[k] for k in getattr(cls, "settings", ())
                              if k in self.backend_settings})
        self.hardware = spec.hardware
        if spec.precision not in self.backend.precisions:
            raise TrialFailed(f"Backend {spec.backend!r} does not support precision {spec.precision!r}. "
                              f"Valid choices: {', '.join(self.backend.precisions)}.")
        self.windows.describe()
        self._pending = []
        self.group = record.group_fields(self._groups, import_s)
        self._groups += 1
        self.group.update(self.baseline.idle(self._not_here() is None, self._measure))
        t0 = time.monotonic()
        self.backend.prepare(model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed)
        self.group["prepare_s"] = time.monotonic() - t0
        self.load_info, fields, _ = self._measure("load", lambda: self.backend.load(
            model, spec.weights, spec.precision, self.device, self.cache_dir, self.seed))
        self.group.update(fields)
        self.group.update(record.label_fields(self.backend))
        self._warmed = set()
        self.arch = self.backend.architecture() if hasattr(self.backend, "architecture") else {}
        if (self.load_info.device == "cpu" and self._cpu_bandwidth_gbs is None
                and not self.measurement.memory_bandwidth_gbs):
            self._cpu_bandwidth_gbs = roofline.measure_copy_bandwidth_gbs()
        return {"load_s": self.group.get("load_s"), "precision": self.load_info.precision,
                "device": self.load_info.device}

    def unload(self) -> dict[str, Any]:
        """Measure `unload` (freeing the model); returns its row fields."""
        if self.backend is None:
            return record.unload_missing("no model was loaded")
        _, fields, _ = self._measure("unload", self.backend.unload)
        left = getattr(self.backend, "memory_in_use_mb", None)
        fields = record.unload_fields(fields, getattr(self.backend, "unload_extras", None) or {},  # e.g. an exit code
                                      left() if callable(left) else None,
                                      bool(getattr(self.backend, "reusable_process", True)))
        self.backend = None
        return fields

    def unload_after(self, result: TrialResult) -> TrialResult:
        """Measure `unload` after a trial that ran without `last` (its group's next trial was
        taken by another worker meanwhile, ray.steal_work): its fields and samples join that
        trial's result, as `run(last=True)` would have put them."""
        result.row.update(self._unload_fields())
        result.samples += self._samples(str(result.row.get("trial_id")), [])
        return result

    def _unload_fields(self) -> dict[str, Any]:
        """`unload`'s row fields, or null with the reason where it raised."""
        try:
            return self.unload()
        except Exception as e:
            return record.unload_missing(f"unload failed: {type(e).__name__}: {e}")

    def _samples(self, trial_id: str, samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
        pending, self._pending = self._pending, []
        return record.sample_rows(trial_id, self.sampler_info.get("sampler"), pending, samples)

    # -- per trial ------------------------------------------------------------------------
    def warmup(self, spec: TrialSpec, inputs: list[Any]) -> dict[str, Any]:
        """Before the first trial of each shape (batch, prompts, length): `warmup_runs`
        generations of `inputs` (the first batch's prompts), not counted in the trial's energy,
        each of `warmup_new_tokens` (at most the trial's length). The first call of a new shape
        can run 2-3x slower (cuDNN attention builds a plan per shape). Returns the row fields of
        the warmup that ran just before this trial (none: 0 runs, 0 J).
        """
        length = self.max_new_tokens(spec)
        shape = (spec.batch_size, spec.task, spec.prompt_variant, length, spec.prompt_tokens, spec.chat_template)
        own = getattr(self.backend, "warmup_runs", None)  # a paid API's own setting
        runs = max(0, int(self.generation.warmup_runs if own is None else own))
        if shape in self._warmed or not runs:  # where the model is remote, not even a 0 was measured
            return record.warmup_fields(0, 0, None, local=self._not_here() is None)
        self._warmed.add(shape)
        new_tokens = min(int(self.generation.warmup_new_tokens or length), length)

        def go() -> None:
            for _ in range(runs):
                self.backend.generate(inputs, new_tokens, ignore_eos=True)

        _, fields, _ = self._measure("warmup", go)
        return record.warmup_fields(runs, new_tokens, fields, local=True)

    def cooldown(self) -> dict[str, Any]:
        return self.baseline.cooldown()

    def max_new_tokens(self, spec: TrialSpec) -> int:
        if spec.max_new_tokens is not None:
            return spec.max_new_tokens
        on_cpu = self.load_info is None or self.load_info.device == "cpu"  # a GPU, or a remote API
        return int(self.generation.cpu_max_new_tokens if on_cpu else self.generation.max_new_tokens)

    def ignore_eos(self, spec: TrialSpec) -> bool:
        flag = self.generation.ignore_eos
        return spec.weights == "dummy" if flag is None else bool(flag)

    def _open_row(self, spec: TrialSpec, model: Any, config: dict[str, Any]) -> dict[str, Any]:
        """The row every trial, text or image, starts with, stamped with its start."""
        row = record.base_row(spec, model, config, info=self.load_info, node=self.node,
                              sampler_info=self.sampler_info, group=self.group, env=self.env, arch=self.arch,
                              node_info=self.windows.node_info)
        row["started_at"] = record.utc()
        return row

    def _ready(self) -> dict[str, Any]:
        """A loaded model (else the trial fails), then the cooldown before the trial: its fields."""
        if self.backend is None or self.load_info is None:
            raise TrialFailed("model not loaded")
        return self.cooldown()

    def run(self, spec: TrialSpec, model: Any, config: dict[str, Any], last: bool = False) -> TrialResult:
        """One trial: a row whatever happens (status ok | failed | oom). With `last`, the
        group's `unload` is measured after it and recorded on its row."""
        if getattr(self.backend, "modality", "text") == "image":
            return self._run_images(spec, model, config, last)
        row = self._open_row(spec, model, config)
        samples: list[dict[str, Any]] = []
        responses: list[dict[str, Any]] = []
        reading: WindowReading | str | None = None
        label = f"trial:{spec.trial_id}"
        try:
            row.update(self._ready())
            work = workload.prepare(spec, self.tasks, self.backend, self.seed)
            row.update(record.workload_fields(work))
            row.update(self.warmup(spec, work.inputs(0)))
            row["temperature_start_c"] = self.windows.latest().get("temperature_c")
            new_tokens = self.max_new_tokens(spec)
            not_here = self._not_here()
            err = self.windows.begin(label, not_here)
            gens: list[Any] = []
            try:
                for batch in range(len(work.members)):
                    gens.append(self.backend.generate(work.inputs(batch), new_tokens, self.ignore_eos(spec),
                                                      **work.generate_kwargs()))
            finally:
                run = Batches(gens, work.members)
                reading = self.windows.end(label, err, run.parts(), local=not_here is None)
            (texts, scores), response, _ = self._measure("response", lambda: self._respond(spec, model, work, run))
            row.update(response)
            random = record.random_weights(spec, model)  # noise is never sent to a paid judge
            judged = None if random else workload.run_judge(list(zip(work.requests, texts, strict=True)),
                                                            self.tasks.judge)
            if judged is not None:  # its verdict, where it gave one, is the request's score
                scores = [j or s for j, s in zip(judged.scores, scores, strict=True)]
            row.update(judged.trial if judged is not None else workload.judge_off(self.tasks.judge, random))
            accuracy = record.accuracy_fields(spec, work.requests, scores, model)
            row.update(accuracy)
            row["sample_output"] = texts[0][:500] if texts and texts[0] is not None else None
            words = None if any(t is None for t in texts) else sum(len(str(t).split()) for t in texts)
            row.update(record.measured_fields(spec, run, reading, new_tokens, requests=work.n, words=words,
                                              correct=accuracy["correct_requests"], arch=self.arch,
                                              bandwidth=self._bandwidth(), idle_power_w=self.group.get("idle_power_w")))
            responses = self._responses(spec, work, run, reading, row, texts, scores, new_tokens,
                                        judged.rows if judged is not None else None)
            if isinstance(reading, WindowReading):
                samples = [{**s, "phase": run.phase_of(s["t_ns"])} for s in reading.samples]
            if self.windows.node_samplers:
                nodes = self.windows.node_readings(label)
                samples += [{**s, "source": self.windows.source_name(role), "phase": run.phase_of(s["t_ns"])}
                            for role, r in nodes.items() if isinstance(r, WindowReading) for s in r.samples]
                row.update(record.node_fields(nodes))
            row["status"] = "ok"
        except Exception as e:  # a trial's failure is data: the sweep goes on
            row.update(record.error_fields(e))
            responses = []
        return self._close(spec, row, reading, label, last, samples, responses)

    def _close(self, spec: TrialSpec, row: dict[str, Any], reading: WindowReading | str | None, label: str,
               last: bool, samples: list[dict[str, Any]], responses: list[dict[str, Any]]) -> TrialResult:
        """A trial's end: an incomplete one's fields, the group's unload where `last`, the result."""
        if row["status"] != "ok":
            row.update(record.incomplete_fields(row["status"], reading))
        self.windows.node_readings(label)  # a trial that failed before its fields
        if last:
            row.update(self._unload_fields())
        else:
            row.update(record.unload_missing("measured once per group, on its last trial"))
        row["finished_at"] = record.utc()
        return TrialResult(row=row, samples=self._samples(spec.trial_id, samples), responses=responses)

    # -- image trials (backend modality "image": diffusers) ------------------------------------
    def image_settings(self, spec: TrialSpec) -> dict[str, Any]:
        """Steps, image size and guidance of an image trial: the grid's, else the generation
        config's (the size: the pipeline's native one)."""
        return {"steps": int(spec.inference_steps or self.generation.inference_steps),
                "resolution": int(spec.resolution or self.backend.default_resolution()),
                "guidance_scale": (self.generation.guidance_scale if spec.guidance_scale is None
                                   else float(spec.guidance_scale))}

    def _image_warmup(self, spec: TrialSpec, prompt: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Before the first trial of each image shape: `warmup_runs` pipeline calls of
        warmup_inference_steps steps (at most the trial's), not counted."""
        shape = ("image", spec.batch_size, settings["resolution"], settings["guidance_scale"], spec.task)
        runs = max(0, int(self.generation.warmup_runs))
        if shape in self._warmed or not runs:
            return record.warmup_fields(0, 0, None, local=True)
        self._warmed.add(shape)
        steps = min(int(self.generation.warmup_inference_steps), settings["steps"])

        def go() -> None:
            for _ in range(runs):
                self.backend.generate_images(prompt, **{**settings, "steps": steps},
                                             images_per_prompt=spec.batch_size, seed=self.seed)

        _, fields, _ = self._measure("warmup", go)
        return record.warmup_fields(runs, 0, fields, local=True)

    def _save_images(self, spec: TrialSpec, run: workload.ImageRun) -> dict[str, Any]:
        """The response phase of an image trial: its images as PNG under
        <store>/artifacts/<sweep>/<trial_id>/ (replaced on a rerun); the folder, store-relative."""
        store = self.backend_settings.get("store_path")
        if not store:
            return {"image_dir": None}
        rel = Path("artifacts") / spec.sweep / spec.trial_id
        folder = Path(store) / rel
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for i, gen in enumerate(run.gens):
            self.backend.save_images(gen, folder, f"img-{i}")
        return {"image_dir": str(rel)}

    def _run_images(self, spec: TrialSpec, model: Any, config: dict[str, Any], last: bool) -> TrialResult:
        """One image trial: per prompt a pipeline call of batch_size images in the trial's window,
        split into text_encode, denoise and vae_decode; the images saved in the response phase."""
        row = self._open_row(spec, model, config)
        samples: list[dict[str, Any]] = []
        reading: WindowReading | str | None = None
        label = f"trial:{spec.trial_id}"
        try:
            row.update(self._ready())
            work = workload.prepare_images(spec, self.tasks, self.backend, self.seed)
            row.update(record.workload_fields(work))
            settings = self.image_settings(spec)
            row.update(self._image_warmup(spec, work.inputs(0)[0], settings))
            row["temperature_start_c"] = self.windows.latest().get("temperature_c")
            err = self.windows.begin(label)
            gens: list[Any] = []
            try:
                for i in range(work.n):
                    gens.append(self.backend.generate_images(work.inputs(i)[0], **settings,
                                                             images_per_prompt=spec.batch_size, seed=self.seed + i))
            finally:
                run = workload.ImageRun(gens)
                reading = self.windows.end(label, err, run.parts())
            saved, response, _ = self._measure("response", lambda: self._save_images(spec, run))
            row.update(response)
            row.update(saved)
            random = record.random_weights(spec, model)
            row.update(workload.judge_off(self.tasks.judge, random))
            row.update(record.accuracy_fields(spec, work.requests, [None] * work.n, model))
            row.update(record.image_fields(run, reading, prompts=work.n, idle_power_w=self.group.get("idle_power_w"),
                                           random=random))
            if isinstance(reading, WindowReading):
                samples = [{**s, "phase": run.phase_of(s["t_ns"]), "denoise_step": run.step_of(s["t_ns"])}
                           for s in reading.samples]
            if self.windows.node_samplers:
                nodes = self.windows.node_readings(label)
                samples += [{**s, "source": self.windows.source_name(role), "phase": run.phase_of(s["t_ns"])}
                            for role, r in nodes.items() if isinstance(r, WindowReading) for s in r.samples]
                row.update(record.node_fields(nodes))
            row["status"] = "ok"
        except Exception as e:  # a trial's failure is data: the sweep goes on
            row.update(record.error_fields(e))
        return self._close(spec, row, reading, label, last, samples, [])

    def _respond(self, spec: TrialSpec, model: Any, work: Workload, run: Batches) -> tuple[list[str | None], list[Any]]:
        """The response phase: each batch's ids to text, and each request scored (random
        weights are not, nor a built-in random-init model: their text is noise)."""
        texts: list[str | None] = [t for g in run.gens for t in self.backend.decode(g)]
        if len(texts) != work.n:
            raise TrialFailed(f"the backend decoded {len(texts)} texts for {work.n} requests")
        if record.random_weights(spec, model):
            return texts, [None] * work.n
        score = workload.scorer(spec.task, self.tasks)
        return texts, [None if t is None else score(item, t) for item, t in zip(work.requests, texts, strict=True)]

    def _responses(self, spec: TrialSpec, work: Workload, run: Batches, reading: WindowReading | str,
                   row: dict[str, Any], texts: list[str | None], scores: list[Any], new_tokens: int,
                   judge: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
        """The `responses` rows: each request's text, score, tokens, timings and energy share."""
        per_request: list[dict[str, Any]] = [{} for _ in range(work.n)]
        batch_of = [0] * work.n
        for b, (gen, members) in enumerate(zip(run.gens, run.members, strict=True)):
            for i, fields in zip(members, workload.request_fields(gen, work.sent, members, new_tokens), strict=True):
                batch_of[i], per_request[i] = b, fields
        hits = [r["hit_max_new_tokens"] for r in per_request]
        row["hit_max_new_tokens"] = None if None in hits else sum(hits)
        shares, rule = workload.energy_shares(run, reading, row.get("energy_j"), work.sent)
        return record.response_rows(spec.trial_id, batch_of=batch_of, items=work.requests, prompts=list(work.sent.texts),
                                    texts=texts, scores=scores, per_request=per_request, energy_j=shares,
                                    energy_source=row.get("energy_source"), rule=rule, judge=judge)

    def _bandwidth(self) -> tuple[float | None, str | None]:
        return roofline.bandwidth(self.hardware, self.measurement.memory_bandwidth_gbs, self._cpu_bandwidth_gbs)

