"""The record builder: the one place that turns a trial's readings into its row.

Every column the trial runner writes is named here: the base row (the spec, where it ran,
the config and environment), the measured trial, its workload (items, batches, accuracy) and
its `responses` rows, each phase's columns, the node samplers' columns, and the rows of
trials that failed or never ran. Phase- and role-patterned names
come from the functions below over the module constants, so a declared schema can be
checked against them.
"""

from __future__ import annotations

import json
import traceback
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from energyray import roofline, schema
from energyray.errors import TrialFailed
from energyray.grid import TrialSpec
from energyray.samplers.base import WindowReading
from energyray.tasks.base import Item, Score

# What the group columns mean, for the column docs (no longer written on every row).
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

# The phases measured in their own window, the parts of the trial's window and the node sampler
# roles: declared once, with their meanings, in the result contract.
PHASES = tuple(schema.PHASES)
WINDOW_PARTS = tuple(schema.WINDOW_PARTS)
NODE_ROLES = tuple(schema.NODE_ROLES)
# Extras of a CPU sampler's reading that become columns as they are: the CPU package's and
# the RAM's part of its energy, and CodeCarbon's CO2 figures.
CPU_EXTRAS = ("cpu_energy_j", "ram_energy_j", "co2_kg", "carbon_intensity_g_per_kwh")

NOT_MEASURABLE = "not_measurable"


@dataclass
class TrialResult:
    row: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    responses: list[dict[str, Any]] = field(default_factory=list)  # one row per request (table `responses`)


def utc() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def is_oom(e: BaseException) -> bool:
    """CUDA's "out of memory", or the CPU allocator's "not enough memory"/"can't allocate memory"."""
    text = str(e).lower()
    return any(m in text for m in ("out of memory", "not enough memory", "can't allocate memory"))


def div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _source(reading: WindowReading) -> str:
    return reading.source if reading.energy_j is not None else NOT_MEASURABLE


# -- column names of the patterns -------------------------------------------------------------
def phase_columns(phase: str) -> tuple[str, ...]:
    """The columns of one measured phase (PHASES)."""
    return (f"{phase}_j", f"{phase}_s", f"{phase}_source", f"{phase}_energy_reason",
            f"{phase}_avg_power_w", f"{phase}_peak_power_w")


def part_columns(part: str) -> tuple[str, ...]:
    """The columns of one part of the trial's window (WINDOW_PARTS)."""
    return f"{part}_j", f"{part}_source", f"{part}_energy_reason"


def node_energy_column(role: str) -> str:
    """A node sampler's energy over the trial. Role "cpu" is CPU+RAM, so it is not `cpu_energy_j`
    (the CPU package alone, CPU_EXTRAS) but `cpu_energy_total_j`."""
    return "cpu_energy_total_j" if role == "cpu" else f"{role}_energy_j"


def node_columns(role: str) -> tuple[str, ...]:
    """The trial's columns of one node sampler (NODE_ROLES); all but the CPU_EXTRAS describe
    the sampler's whole reading (node_energy_column)."""
    p = f"{role}_energy"
    return (node_energy_column(role), f"{p}_source", f"{p}_scope", f"{p}_reason", f"{p}_attribution",
            f"{p}_node_j", f"{p}_share", f"{p}_idle_subtracted_j", f"{role}_idle_power_w",
            f"{role}_avg_power_w", f"{role}_window_s", *(CPU_EXTRAS if role == "cpu" else ()))


def node_phase_column(phase: str, role: str) -> str:
    """A node sampler's energy over one phase."""
    return f"{phase}_{role}_j"


def node_phase_window_column(phase: str, role: str) -> str:
    """How long a node sampler's window over one phase was."""
    return f"{phase}_{role}_window_s"


def patterned_columns() -> set[str]:
    """Every column name built from a pattern, for checking a declared schema."""
    names = {c for phase in PHASES for c in phase_columns(phase)}
    names |= {c for part in WINDOW_PARTS for c in part_columns(part)}
    names |= {c for role in NODE_ROLES for c in node_columns(role)}
    names |= {node_phase_column(phase, role) for phase in PHASES for role in NODE_ROLES}
    names |= {node_phase_window_column(phase, role) for phase in PHASES for role in NODE_ROLES}
    return names


# -- the load group ----------------------------------------------------------------------------
def group_fields(index: int, import_s: float) -> dict[str, Any]:
    """A new load's own fields. import_s: how long load waited for the backend's module (0 once
    imported in this process); index 0: the process's first group; load_id: unique per load,
    shared by the rows it served."""
    return {"worker_group_index": index, "import_s": import_s, "load_id": uuid.uuid4().hex[:16]}


def label_fields(backend: Any) -> dict[str, Any]:
    """What a backend's load and unload are, where it says (a server's startup and shutdown)."""
    return {f"{phase}_label": getattr(backend, f"{phase}_label") for phase in ("load", "unload")
            if getattr(backend, f"{phase}_label", None)}


# -- phases --------------------------------------------------------------------------------------
def phase_fields(phase: str, reading: WindowReading | str, duration_s: float | None = None) -> dict[str, Any]:
    """One measured phase; `reading` a string is why it was not measured."""
    j, s, source, reason, avg_w, peak_w = phase_columns(phase)
    if isinstance(reading, str):
        return {j: None, s: duration_s, source: NOT_MEASURABLE, reason: reading}
    return {j: reading.energy_j, s: duration_s if duration_s is not None else reading.duration_s,
            source: _source(reading), reason: reading.reason, avg_w: reading.avg_power_w,
            peak_w: reading.peak_power_w}


def node_phase_fields(phase: str, readings: dict[str, WindowReading | str]) -> dict[str, Any]:
    """The node samplers' energy over one phase and how long their window was (null where a
    sampler failed)."""
    out: dict[str, Any] = {}
    for role, r in readings.items():
        energy, seconds = (r.energy_j, r.duration_s) if isinstance(r, WindowReading) else (None, None)
        out[node_phase_column(phase, role)] = energy
        out[node_phase_window_column(phase, role)] = seconds
    return out


def node_fields(readings: dict[str, WindowReading | str]) -> dict[str, Any]:
    """The node samplers' columns of the trial's window, by role; a string is why it failed."""
    out: dict[str, Any] = {}
    for role, r in readings.items():
        energy, source, scope, reason, attribution, node_j, share, idle_sub, idle_w, avg_w, window = \
            node_columns(role)[:11]
        if isinstance(r, str):
            out.update({energy: None, source: NOT_MEASURABLE, reason: r, window: None})
            if role == "cpu":
                out["cpu_energy_j"] = None
            continue
        x = r.extras
        out.update({
            energy: r.energy_j, source: _source(r), scope: r.scope, reason: r.reason,
            attribution: x.get("attribution"), node_j: x.get("node_energy_j"), share: x.get("share"),
            idle_sub: x.get("idle_subtracted_j"), idle_w: x.get("node_idle_power_w"), avg_w: r.avg_power_w,
            window: r.duration_s,
        })
        if role == "cpu":  # RAPL and CodeCarbon split CPU and RAM where they can; null where not
            out["cpu_energy_j"] = x.get("cpu_energy_j")
            out.update({k: x[k] for k in CPU_EXTRAS[1:] if k in x})
    return out


def warmup_fields(runs: int, new_tokens: int, measured: dict[str, Any] | None, local: bool) -> dict[str, Any]:
    """The warmup run just before this trial; `measured` its phase fields, None where none ran
    (0 J, or null where the model does not run on this machine)."""
    if measured is None:
        return {"warmup_runs": 0, "warmup_new_tokens": 0, "warmup_s": 0.0, "warmup_j": 0.0 if local else None,
                "warmup_energy_reason": None}
    return {"warmup_runs": runs, "warmup_new_tokens": new_tokens, **measured}


def cooldown_fields(seconds: float, reached: bool | None) -> dict[str, Any]:
    return {"cooldown_s": seconds, "cooldown_reached": reached}


def idle_fields(measured: dict[str, Any], temperature_c: float | None, settle_s: float, settled: bool | None,
                method: str) -> dict[str, Any]:
    """A freshly measured idle baseline: its phase fields, and its power from the sampler's own
    window (energy / its duration), not the runner's timing of the sleep."""
    return {**measured, "idle_power_w": measured.get("idle_avg_power_w"), "idle_temperature_c": temperature_c,
            "idle_settle_s": settle_s, "idle_settled": settled, "idle_method": method,
            "idle_reused": False, "idle_measured_at": utc()}


def no_idle_fields(reason: str) -> dict[str, Any]:
    return {"idle_j": None, "idle_power_w": None, "idle_source": NOT_MEASURABLE, "idle_energy_reason": reason}


def unload_fields(measured: dict[str, Any], extras: dict[str, Any], memory_left_mb: float | None,
                  reusable: bool) -> dict[str, Any]:
    """`unload`'s fields, with what tells whether this process can take the slot's next group."""
    return {**measured, **extras, "unload_memory_left_mb": memory_left_mb, "process_reusable": reusable}


def unload_missing(reason: str) -> dict[str, Any]:
    return {"unload_j": None, "unload_energy_reason": reason}


# -- the trial's row -----------------------------------------------------------------------------
RANDOM_WEIGHTS = "random weights: the text is noise"
# a catalogue model energyray builds itself (ModelConfig.builtin, e.g. tiny-llama) is random init
RANDOM_BUILTIN = "random weights ({name} is built random): the text is noise"
NO_GOLD = "the task has no gold answers"


def random_weights(spec: TrialSpec, model: Any) -> str | None:
    """Why the model's text is noise (weights=dummy, or a built-in random-init model), or None."""
    if spec.weights == "dummy":
        return RANDOM_WEIGHTS
    builtin = getattr(model, "builtin", None)
    return RANDOM_BUILTIN.format(name=getattr(model, "name", None) or builtin) if builtin else None


def spec_fields(spec: TrialSpec) -> dict[str, Any]:
    """The spec as row fields: `requests` the number the trial runs (null for "all" until the
    task's items are counted; requests_all says it was asked)."""
    out = spec.to_dict()
    out["requests_all"] = spec.requests == "all"
    out["requests"] = spec.batch_size if spec.requests is None else None if spec.requests == "all" else spec.requests
    return out


def base_row(spec: TrialSpec, model: Any, config: dict[str, Any], *, info: Any, node: str | None,
             sampler_info: dict[str, Any], group: dict[str, Any], env: dict[str, Any], arch: dict[str, Any],
             node_info: dict[str, Any]) -> dict[str, Any]:
    """What the row says before the trial runs: the spec, where it ran, the group, the config."""
    return {
        **{k: v for k, v in spec_fields(spec).items() if k not in ("hardware",)},
        "status": "failed", "error": None,
        "precision_requested": spec.precision,
        "precision": info.precision if info else spec.precision,
        "device": info.device if info else None,
        "params_b": (info.params_b if info and info.params_b else None) or getattr(model, "params_b", None),
        "node": node,
        "gpu_name": sampler_info.get("gpu_name"),
        "gpu_uuid": sampler_info.get("gpu_uuid"),
        **(getattr(info, "columns", None) or {}),
        **group,
        "config_json": json.dumps(config, sort_keys=True, default=str),
        "env_json": json.dumps({**env, "sampler": sampler_info, "architecture": arch,
                                "load": asdict(info) if info else None,
                                **({"node_samplers": node_info} if node_info else {})},
                               sort_keys=True, default=str),
    }


def measured_fields(spec: TrialSpec, run: Any, reading: WindowReading | str, new_tokens: int, *, requests: int,
                    words: int | None, correct: int | None, arch: dict[str, Any],
                    bandwidth: tuple[float | None, str | None], idle_power_w: float | None) -> dict[str, Any]:
    """The trial's own figures: tokens, timings, roofline, and its window's energy. `run` is the
    workload's generations as one (trial.workload.Batches); `requests` how many it sent,
    `words` the words of their text (None: a text is missing), `correct` the requests scored
    correct (None: not scored)."""
    ttft, tpot = run.ttft_s, run.tpot_s
    lengths = run.lengths
    out: dict[str, Any] = {
        "input_tokens": run.input_tokens, "output_tokens": run.output_tokens,
        "output_words": words, "max_new_tokens_used": new_tokens, "decode_steps": run.decode_steps,
        "duration_s": run.duration_s, "ttft_s": ttft, "tpot_s": tpot, "decode_s": run.decode_s,
        "tokens_per_s": div(run.output_tokens, run.duration_s),
        "peak_memory_mb": run.peak_memory_mb,
    }
    steady = run.steady()
    if steady:
        out.update(steady_s=sum(b - a for (a, b), _ in steady) / 1e9, steady_tokens=sum(t for _, t in steady))
    bw, bw_source = bandwidth
    out["roofline_bandwidth_gbs"], out["roofline_bandwidth_source"] = bw, bw_source
    out.update(roofline.floor(arch, spec.batch_size, (run.input_tokens or 0) / max(1, requests),
                              run.batch_steps, bw, tpot, None))
    out.update(run.extras)  # backend-specific fields: cost, retries, request timings
    out.update(window_fields(reading, idle_power_w))
    if isinstance(reading, str):
        return out
    energy = reading.energy_j
    out.update(j_per_token=div(energy, run.output_tokens), j_per_word=div(energy, words),
               j_per_request=div(energy, requests), j_per_correct=div(energy, correct))
    if out.get("steady_j") is not None:
        out["steady_j_per_token"] = div(out["steady_j"], out.get("steady_tokens"))
    decode_w = div(out.get("decode_j"), out.get("decode_s"))
    out["decode_avg_power_w"] = decode_w
    out["j_per_output_token_decode"] = div(out.get("decode_j"), None if run.output_tokens is None
                                           else run.output_tokens - len(lengths))
    if out.get("roofline_s_per_token") is not None and decode_w is not None:
        out["roofline_j_per_token"] = out["roofline_s_per_token"] * decode_w
    return out


def window_fields(reading: WindowReading | str, idle_power_w: float | None) -> dict[str, Any]:
    """The trial window's energy columns and its parts' (text and image trials alike); `reading`
    a string is why there is no figure."""
    if isinstance(reading, str):
        return {"energy_j": None, "energy_source": NOT_MEASURABLE, "energy_scope": None, "energy_reason": reading}
    energy = reading.energy_j
    x = reading.extras
    temps = [s["temperature_c"] for s in reading.samples if s.get("temperature_c") is not None]
    out: dict[str, Any] = dict(
        energy_j=energy, energy_source=_source(reading),
        energy_scope=reading.scope, energy_reason=reading.reason, short_window=reading.short_window,
        window_s=reading.duration_s, avg_power_w=reading.avg_power_w, peak_power_w=reading.peak_power_w,
        energy_idle_subtracted_j=None if energy is None or idle_power_w is None
        else energy - idle_power_w * reading.duration_s,
        temperature_max_c=max(temps) if temps else None,
        samples_n=len(reading.samples),
        energy_polled_j=x.get("polled_j"), energy_anchor_scale=x.get("anchor_scale"),
        energy_anchor_span_s=None if "anchor_span_start_ns" not in x else
        (x["anchor_span_end_ns"] - x["anchor_span_start_ns"]) / 1e9,
        # the observer's own cost over the window (null where the sampler does not report it)
        sampler_cpu_s=x.get("sampler_cpu_s"),
        sampler_device_calls_per_s=div(x.get("sampler_device_calls"), reading.duration_s or None),
        # a CPU worker's device sampler: energy_j is CPU+RAM, these its parts (and CO2)
        **{k: v for k, v in x.items() if k in CPU_EXTRAS},
    )
    for name, part in reading.parts.items():
        j, source, reason = part_columns(name)
        out[j] = part["energy_j"]
        out[source] = part["source"] if part["energy_j"] is not None else NOT_MEASURABLE
        if part.get("reason"):
            out[reason] = part["reason"]
    return out


IMAGES_NOISE = "random weights: the images are noise"


def image_fields(run: Any, reading: WindowReading | str, *, prompts: int, idle_power_w: float | None,
                 random: str | None) -> dict[str, Any]:
    """An image trial's own figures (`run`: trial.workload.ImageRun, one pipeline call per prompt):
    images, each phase's time, per-step and per-image energy, and its window's energy."""
    steps = run.steps
    out: dict[str, Any] = {
        "images": run.images, "image_width_px": run.width, "image_height_px": run.height,
        "denoise_steps": run.steps_per_image, "guidance_scale_used": run.guidance_scale,
        "duration_s": run.duration_s, "peak_memory_mb": run.peak_memory_mb,
        "text_encode_s": run.part_s("text_encode"), "denoise_s": run.part_s("denoise"),
        "vae_decode_s": run.part_s("vae_decode"), "images_per_s": div(run.images, run.duration_s),
        "denoise_step_s_json": json.dumps([[round((b - a) / 1e9, 6) for a, b in g.step_intervals()]
                                           for g in run.gens]),
        "image_note": (IMAGES_NOISE if random else None),
    }
    out["s_per_step"] = div(out["denoise_s"], steps)
    out.update(window_fields(reading, idle_power_w))
    if isinstance(reading, str):
        return out
    energy = reading.energy_j
    out.update(j_per_request=div(energy, prompts), j_per_image=div(energy, run.images),
               j_per_step=div(out.get("denoise_j"), steps))
    per_step = run.step_energies(reading)
    out["denoise_step_j_json"] = None if per_step is None else json.dumps(
        [[round(e, 6) for e in prompt] for prompt in per_step])
    return out


def workload_fields(work: Any) -> dict[str, Any]:
    """What the trial sent (trial.workload.Workload): its requests and batches, the task's items,
    and the prompts' chat template."""
    task, sent = work.task, work.sent
    skipped = dict(task.skipped or {})
    return {
        "requests": work.n, "batches": len(work.members), "batching": work.batching,
        "batching_reason": work.batching_reason, "task_items": len(task.items), "task_source": task.source,
        "task_items_skipped": sum(skipped.values()),
        "task_items_skipped_reason": "; ".join(f"{why}: {n}" for why, n in skipped.items()) or None,
        "chat_template_applied": sent.chat_template == "applied",
        "chat_template_source": sent.chat_template_source, "chat_template_reason": sent.chat_template_reason,
    }


def accuracy_fields(spec: TrialSpec, items: list[Item], scores: list[Score | None],
                    model: Any = None) -> dict[str, Any]:
    """Accuracy over the requests scored (Score.correct not None), or null with the reason:
    random weights (weights=dummy, or a built-in random-init `model`) are never scored (their
    text is noise, whatever a judge said), nor items without a gold answer."""
    reason = random_weights(spec, model)
    scored = [] if reason else [s for s in scores if s is not None and s.correct is not None]
    correct = sum(bool(s.correct) for s in scored)
    if reason is None and not any(it.gold is not None for it in items):
        reason = NO_GOLD
    elif reason is None and not scored:
        reason = "no response could be scored (no text came back)"
    return {"scored_requests": len(scored), "correct_requests": correct if scored else None,
            "accuracy": correct / len(scored) if scored else None, "accuracy_reason": reason}


def response_rows(trial_id: str, *, batch_of: list[int], items: list[Item], prompts: list[str],
                  texts: list[str | None], scores: list[Score | None], per_request: list[dict[str, Any]],
                  energy_j: list[float | None], energy_source: str | None, rule: str,
                  judge: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The `responses` table's rows: one per request, in request order."""
    rows = []
    for i, item in enumerate(items):
        s = scores[i]
        rows.append({
            "trial_id": trial_id, "request_index": i, "batch_index": batch_of[i], "item_id": item.id,
            "category": item.category, "prompt": prompts[i], "response": texts[i], "gold": item.gold,
            "correct": None if s is None else s.correct, "score": None if s is None else s.value,
            "scorer": None if s is None else s.scorer, "extracted_answer": None if s is None else s.extracted,
            "confidence": None if s is None else s.confidence,
            **per_request[i], "energy_j": energy_j[i],
            "energy_source": energy_source if energy_j[i] is not None else NOT_MEASURABLE,
            "energy_share_rule": rule, **(judge[i] if judge else {}),
        })
    return rows


def error_fields(e: BaseException) -> dict[str, Any]:
    """A trial's failure as data: its status (TrialFailed's own, oom, failed) and the error."""
    if isinstance(e, TrialFailed):
        return {"status": e.status, "error": str(e), "retryable": e.retryable}
    return {"status": "oom" if is_oom(e) else "failed",
            "error": f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=6)}", "retryable": False}


def incomplete_fields(status: str, reading: WindowReading | str | None) -> dict[str, Any]:
    """A trial that did not complete has no energy figure; what its window used up to the
    failure stands apart."""
    return {"energy_j": None, "energy_source": NOT_MEASURABLE,
            "energy_reason": f"trial {status}: no energy for an incomplete trial "
                             "(failed_window_j: what its window used up to the failure)",
            "failed_window_j": reading.energy_j if isinstance(reading, WindowReading) else None}


def failed_row(spec: TrialSpec, error: str, status: str = "failed", retryable: bool = False,
               **extra: Any) -> dict[str, Any]:
    """The row of a trial that never ran (its worker died, its load failed, the sweep gave up);
    `retryable`: the cause is not the trial's own, so a rerun may succeed."""
    return {**spec_fields(spec), "status": status, "error": error, "precision_requested": spec.precision,
            "energy_j": None, "energy_source": NOT_MEASURABLE, "energy_reason": "trial did not run",
            "retryable": retryable, **extra}


def finish(row: dict[str, Any], *, attempts: int, group_trials: int | None,
           retried_errors: list[str] | None = None) -> dict[str, Any]:
    """What the orchestrator knows of a row when it is emitted: how many attempts it took (and
    the errors of those that died), how many trials its load group had as planned, and for a
    failed row whether a rerun may fix it (false unless its failure said so). Fields already on
    the row stand."""
    row.setdefault("group_trials", group_trials)
    row.setdefault("attempts", attempts)
    if row.get("status") != "failed":
        row["retryable"] = None  # ok, or oom: done, a rerun skips it
    else:
        row.setdefault("retryable", False)
    if retried_errors:
        row.setdefault("retried_errors", "\n".join(retried_errors))
    return row


# -- samples -------------------------------------------------------------------------------------
def sample_rows(trial_id: str, source: str | None, pending: list[dict[str, Any]],
                samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples stored with a trial: the group's not yet stored (`pending`), then its own,
    each tagged with the trial and, where it has none, the device sampler's name."""
    tagged = [{**s, "trial_id": trial_id} for s in pending]
    return [{"trial_id": trial_id, "source": source, **s} for s in [*tagged, *samples]]
