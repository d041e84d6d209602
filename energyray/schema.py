"""The result contract: every column of the `trials`, `samples`, `systems` and `responses` tables.

Each column has a name (its unit in the name: `_j`, `_s`, `_w`, ...), an Arrow type, a
unit, a one-line meaning and the part of energyray that fills it. The store writes every
file with exactly these columns (typed nulls where a row has no value); `docs/columns.md`
is generated from here: `python -m energyray.schema --write`.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

# Bump when a column is added, removed, renamed or retyped. Files written before the declared
# schema (energyray 0.1.0) have no `schema_version` column: it reads as null there.
SCHEMA_VERSION = 5

# Who fills a column (the `filled_by` vocabulary).
FILLERS = {
    "grid": "the trial's grid point (grid.TrialSpec)",
    "trial.record": "the trial runner's row (trial.TrialRunner)",
    "trial.phase": "a measured phase of the trial runner (idle, load, warmup, response, unload)",
    "backend": "the inference backend (energyray/backends/)",
    "sampler": "the device's energy sampler (energyray/samplers/)",
    "node sampler": "a node-level sampler shared by the node's workers (samplers/node.py)",
    "worker": "the Ray worker that ran the trial (orchestrator/actors.py)",
    "orchestrator": "the scheduler (orchestrator/scheduler.py)",
    "driver": "the sweep's driver process (cli.py)",
    "footprint": "the driver's footprint step (energyray/footprint/): the finished row's energy and the dated "
                 "tables of conf/footprint/, just before the row is stored",
    "store": "the Parquet store, on write (store.py)",
}

# Unit implied by a name's last part(s): a column whose name ends in `_<suffix>` (or is the
# suffix) has this unit; a column with a unit has a name that says it (tests check both).
UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("j_per_image", "J/image"),
    ("j_per_step", "J/step"),
    ("images_per_s", "images/s"),
    ("j_per_output_token_decode", "J/token"),
    ("j_per_token", "J/token"),
    ("j_per_word", "J/word"),
    ("j_per_request", "J/request"),
    ("j_per_correct", "J/correct answer"),
    ("s_per_token", "s/token"),
    ("s_per_step", "s/step"),
    ("bytes_per_step", "B/step"),
    ("tokens_per_s", "tokens/s"),
    ("calls_per_s", "calls/s"),
    ("g_per_kwh", "gCO2e/kWh"),
    ("g_per_request", "gCO2e/request"),
    ("g_per_1k_tokens", "gCO2e/1k tokens"),
    ("co2_g", "gCO2e"),
    ("usd_per_1m", "USD/1M tokens"),
    ("usd_per_1k_tokens", "USD/1k tokens"),
    ("usd_per_request", "USD/request"),
    ("usd_per_kwh", "USD/kWh"),
    ("gpu_hour_usd", "USD/GPU-hour"),
    ("j", "J"),
    ("s", "s"),
    ("ns", "ns"),
    ("w", "W"),
    ("c", "°C"),
    ("mb", "MiB"),
    ("kg", "kg CO2e"),
    ("usd", "USD"),
    ("gbs", "GB/s"),
    ("pct", "%"),
    ("px", "px"),
    ("mhz", "MHz"),
    ("b", "1e9 parameters"),
)

# Columns whose unit their name does not end with (named before the rule; to rename).
UNIT_NOT_IN_NAME = {"ttft_request_s_mean", "ttft_request_s_max", "latency_request_s_mean",
                    "worker_init_entered_at"}

TYPES = {"str": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_()}


def unit_of_name(name: str) -> str | None:
    """The unit a column's name implies (its suffix), or None."""
    for suffix, unit in UNIT_SUFFIXES:
        if name == suffix or name.endswith("_" + suffix):
            return unit
    return None


@dataclass(frozen=True)
class Column:
    name: str
    type: pa.DataType
    unit: str | None
    meaning: str
    filled_by: str
    partition: bool = False  # a hive partition: in the path, never inside the files


def _col(name: str, type_: str, meaning: str, filled_by: str, unit: str | None = "auto",
         partition: bool = False) -> Column:
    return Column(name, TYPES[type_], unit_of_name(name) if unit == "auto" else unit, meaning, filled_by, partition)


# -- patterned columns, generated from these lists --------------------------------------------
# Phases the runner measures in their own window: each gets the six columns of `_phase_columns`.
# Per load (idle, load, unload) and per trial (warmup, response); none of them is in energy_j.
PHASES = {
    "idle": "idle baseline: the device with no model loaded, settled, once per device (idle_scope=slot) "
            "or per load (idle_scope=group); repeated on every row of the load (see load_id)",
    "load": "loading the model (backend=server: the server's startup until it answers); once per load, "
            "repeated on every row of the load (divide by the load's row count to share it)",
    "warmup": "the uncounted warmup run(s) just before this trial (the first of its shape; 0 J otherwise)",
    "response": "decoding the generated ids to text and scoring them, after the trial's window",
    "unload": "freeing the model (backend=server: its shutdown until the process exits); once per load, "
              "on the load's last trial row only (null with the reason on the others)",
}
# Parts of the trial's own window (split at the first token), from the same power series.
# Over several batches, each part is the sum of its batches' intervals.
WINDOW_PARTS = {
    "prefill": "each batch's generation up to its first token, summed over the batches",
    "decode": "each batch's generation from its first token to its end, summed over the batches",
    "steady": "the part of each batch's decode in which every sequence of the batch is decoding (batches of 2 "
              "or more), summed",
    # text-to-image trials (backend=diffusers), one interval per prompt
    "text_encode": "image trials: the pipeline's text encoders (encode_prompt), summed over the prompts",
    "denoise": "image trials: the denoising loop, from the text encoders' end to the last step's end, summed "
               "over the prompts",
    "vae_decode": "image trials: the VAE decoding the latents to pixels, summed over the prompts",
}
# Node-level sampler roles (samplers.node): a PDU for the whole node, RAPL/CodeCarbon for CPU+RAM.
NODE_ROLES = {
    "wall": "the node's wall power (a PDU), shared among the node's overlapping windows",
    "cpu": "the node's CPU and RAM (RAPL or CodeCarbon) on a GPU node, shared among overlapping windows",
}

_SOURCE = ("how the energy was obtained: counter, polled, counter_apportioned, estimated, not_measurable, "
           "...; not_measurable when there is no figure")


def _phase_columns(phase: str, what: str) -> list[Column]:
    return [
        _col(f"{phase}_j", "float", f"{phase} energy: {what}", "trial.phase"),
        _col(f"{phase}_s", "float", f"{phase} duration", "trial.phase"),
        _col(f"{phase}_source", "str", f"{phase}: {_SOURCE}", "trial.phase"),
        _col(f"{phase}_energy_reason", "str", f"why {phase}_j is null or how it is qualified", "trial.phase"),
        _col(f"{phase}_avg_power_w", "float", f"{phase} mean power (energy / window)", "trial.phase"),
        _col(f"{phase}_peak_power_w", "float", f"{phase} highest polled power", "trial.phase"),
    ] + [_col(f"{phase}_{role}_j", "float", f"{phase} energy of the node role {role!r} (this window's share)",
              "node sampler") for role in NODE_ROLES] \
      + [_col(f"{phase}_{role}_window_s", "float", f"how long the node role {role!r}'s window over {phase} was: "
              f"{phase}_{role}_j covers exactly this (the worker's edges, which the device's window shares)",
              "node sampler") for role in NODE_ROLES]


def _part_columns(part: str, what: str) -> list[Column]:
    return [
        _col(f"{part}_j", "float", f"energy of {what}", "trial.record"),
        _col(f"{part}_source", "str", f"{part}: {_SOURCE}", "trial.record"),
        _col(f"{part}_energy_reason", "str", f"why {part}_j is null or how it is qualified", "trial.record"),
    ]


def _role_columns(role: str, what: str) -> list[Column]:
    p = f"{role}_energy"
    return [
        _col(f"{p}_j", "float", f"trial-window energy of {what}"
             + ("; the CPU part alone where RAPL/CodeCarbon split CPU and RAM (cpu_energy_total_j: both); "
                "on a CPU-only node, the device sampler's CPU part" if role == "cpu" else ""),
             "node sampler"),
        _col(f"{p}_source", "str", f"{role}: {_SOURCE}", "node sampler"),
        _col(f"{p}_scope", "str", f"what {p}_j covers (node, package, ...)", "node sampler"),
        _col(f"{p}_reason", "str", f"why {p}_j is null or how it is qualified", "node sampler"),
        _col(f"{p}_attribution", "str", "how the node's energy over the window was shared among overlapping windows",
             "node sampler"),
        _col(f"{p}_node_j", "float", f"the whole node's {role} energy over the trial's window, before sharing",
             "node sampler"),
        _col(f"{p}_share", "float", f"this trial's fraction of {p}_node_j (0-1)", "node sampler"),
        _col(f"{p}_idle_subtracted_j", "float", f"{p}_j minus the node's idle power over the window",
             "node sampler"),
        _col(f"{role}_idle_power_w", "float", f"the node's {role} idle power, measured with no window open",
             "node sampler"),
        _col(f"{role}_avg_power_w", "float", f"{p}_j over the trial's window", "node sampler"),
        _col(f"{role}_window_s", "float", f"how long the {role} sampler's window over the trial was: {p}_j covers "
             "exactly this (the worker's edges; equal to window_s where the device has a sampler)", "node sampler"),
    ]


# The footprint of the trial's energy (energyray/footprint/, docs/footprint.md).
_CO2_OF = "at carbon_intensity_g_per_kwh, times pue where one is given"
_FOOTPRINT: list[Column] = [
    _col("co2_g", "float", f"CO2 of energy_j (the device's: GPU board on a GPU worker, CPU+RAM on a CPU one), {_CO2_OF}; "
         "null with co2_reason", "footprint"),
    _col("wall_co2_g", "float", f"CO2 of wall_energy_j, {_CO2_OF}", "footprint"),
    _col("cpu_co2_g", "float", f"CO2 of cpu_energy_total_j (a GPU node's CPU+RAM), {_CO2_OF}", "footprint"),
    _col("co2_reason", "str", "why co2_g is null (the trial did not complete, no measured energy)", "footprint"),
    _col("co2_estimated", "bool", "whether co2_g rests on an estimated energy (energy_source estimated, e.g. "
         "CodeCarbon's CPU model); wall_energy_source and cpu_energy_source say it for the others", "footprint"),
    _col("co2_g_per_request", "float", "co2_g / requests", "footprint"),
    _col("co2_g_per_1k_tokens", "float", "co2_g per 1000 output tokens", "footprint"),
    _col("carbon_intensity_g_per_kwh", "float", "the grid carbon intensity every *co2_g of the row uses: "
         "footprint.carbon_intensity_g_per_kwh, else conf/footprint/intensity.yaml's for carbon_region",
         "footprint"),
    _col("carbon_intensity_source", "str", "where carbon_intensity_g_per_kwh comes from (the table row's source, "
         "or user)", "footprint"),
    _col("carbon_intensity_as_of", "str", "the year or date carbon_intensity_g_per_kwh is for (null: the user's)",
         "footprint"),
    _col("carbon_region", "str", "the grid region of the intensity: a country (ISO alpha-3) or a region "
         "(USA-CA, CAN-QC, ...); footprint.region, auto: sampler.country_iso_code", "footprint"),
    _col("pue", "float", "the data centre's power usage effectiveness applied to every *co2_g (null: none applied)",
         "footprint"),
    _col("embodied_co2_g", "float", "the GPU's manufacturing carbon for the trial window's GPU-seconds: kgCO2e "
         "x 1000 x window_s / (gpu_lifetime_years x utilisation); null with embodied_reason (off by default)",
         "footprint"),
    _col("embodied_source", "str", "the GPU's figure, its source and the lifetime and utilisation it is spread "
         "over", "footprint"),
    _col("embodied_as_of", "str", "the date of the embodied figure", "footprint"),
    _col("embodied_reason", "str", "why embodied_co2_g is null (footprint.embodied=false, not a GPU, no figure "
         "for the GPU)", "footprint"),
    _col("wall_over_gpu", "float", "wall_energy_j / energy_j over the trial's window (GPU workers; null where "
         "either is missing)", "footprint"),
    _col("non_gpu_share", "float", "1 - energy_j / wall_energy_j: the share of the wall's energy not drawn by the "
         "GPU over the trial's window", "footprint"),
    *[c for p in PHASES for c in (
        _col(f"{p}_wall_over_gpu", "float", f"{p}_wall_j / {p}_j (GPU workers; null where either is missing)",
             "footprint"),
        _col(f"{p}_non_gpu_share", "float", f"1 - {p}_j / {p}_wall_j: the share of the wall's energy over {p} not "
             "drawn by the GPU", "footprint"))],
]

SCHEMA_VERSION_COLUMN = _col("schema_version", "int", "version of this contract the file was written with "
                             "(energyray.schema.SCHEMA_VERSION); null: written by energyray 0.1.0", "store")
EXTRA_JSON_COLUMN = _col("extra_json", "str", "fields a row carried that this schema does not declare, as a "
                         "JSON object (null: none); a developer declares them in energyray/schema.py", "store")
PARTITION_COLUMNS = (
    _col("sweep", "str", "the sweep's name (hive partition `sweep=`)", "driver", partition=True),
    _col("hardware", "str", "the hardware class the trial ran on (hive partition `hardware=`)", "driver",
         partition=True),
)

_TRIALS: list[Column] = [
    # -- the grid point
    _col("trial_id", "str", "stable id of the trial (grid point + repeat): a rerun overwrites its file", "grid"),
    _col("repeat", "int", "repetition index of the grid point (0-based)", "grid"),
    _col("model", "str", "model name (conf/model/)", "grid"),
    _col("backend", "str", "inference backend: transformers, vllm, openai, server, ...", "grid"),
    _col("weights", "str", "real (downloaded) or dummy (random-init) weights", "grid"),
    _col("precision", "str", "precision the backend actually loaded (may differ from precision_requested)",
         "trial.record"),
    _col("batch_size", "int", "prompts generated together", "grid"),
    _col("task", "str", "prompt set (energyray/tasks/)", "grid"),
    _col("prompt_variant", "str", "variant of the task's prompts (e.g. brief)", "grid"),
    _col("max_new_tokens", "int", "new-token limit set by the grid (null: the generation config's default)",
         "grid"),
    _col("requests", "int", "requests the trial sent, fed batch_size at a time: the grid's requests (null there: one "
         "batch, batch_size; all: every item of the task once); null on a row that never ran with requests=all",
         "grid"),
    _col("requests_all", "bool", "whether the grid asked for every item of the task (requests=all)", "grid"),
    _col("prompt_tokens", "int", "tokens of each prompt, chat template included, set by the grid (null: the task's "
         "text as written)", "grid"),
    _col("chat_template", "str", "auto (the model's chat template where it is an instruct or chat model), on or off, "
         "as the grid set it", "grid"),
    _col("inference_steps", "int", "image trials: denoising steps per image set by the grid (null: "
         "generation.inference_steps; see denoise_steps for what ran)", "grid"),
    _col("resolution", "int", "image trials: image width and height in pixels set by the grid (null: the "
         "pipeline's native size; see image_width_px)", "grid"),
    _col("guidance_scale", "float", "image trials: classifier-free guidance scale set by the grid (null: "
         "generation.guidance_scale)", "grid", unit=None),
    _col("task_limit", "int", "tasks.limit: items kept of the task (null: all)", "grid"),
    _col("task_sample_seed", "int", "tasks.sample_seed: seed of the items' shuffle before the limit (null: the "
         "task's order)", "grid"),
    # -- outcome and placement
    _col("status", "str", "ok, failed or oom", "trial.record"),
    _col("error", "str", "the error and its traceback where status is not ok", "trial.record"),
    _col("precision_requested", "str", "precision the grid asked for", "trial.record"),
    _col("device", "str", "where the model ran: cuda, cpu, remote", "trial.record"),
    _col("params_b", "float", "model parameters", "trial.record"),
    _col("node", "str", "host name of the node that ran the trial", "trial.record"),
    _col("gpu_name", "str", "GPU name from NVML (null on CPU)", "sampler"),
    _col("gpu_uuid", "str", "GPU UUID from NVML (null on CPU)", "sampler"),
    _col("started_at", "str", "trial start, ISO 8601 UTC", "trial.record"),
    _col("finished_at", "str", "trial end, ISO 8601 UTC", "trial.record"),
    _col("worker_pid", "int", "process id of the Ray worker", "worker"),
    _col("trial_pid", "int", "process id of the process that ran the model: the worker's plain child process "
         "(ray.trial_process=child), or the Ray worker itself (actor)", "worker"),
    _col("ray_node_id", "str", "Ray node id of the worker", "worker"),
    _col("group_trials", "int", "trials in this row's load (as planned when written; work stealing can move some "
         "to another worker, which loads the model itself): divide load_* and idle_* by it to share them",
         "orchestrator"),
    _col("attempts", "int", "attempts this trial took (a worker that died is retried)", "orchestrator"),
    _col("retried_errors", "str", "errors of earlier attempts whose worker died, one per line", "orchestrator"),
    _col("retryable", "bool", "status failed: whether rerunning the same command may fix it (the worker died, a "
         "timeout, no free slot, a transient API error) or not (the error repeats until its cause is fixed); "
         "null where status is ok or oom (a rerun skips those)", "orchestrator"),
    _col("config_json", "str", "the trial's resolved configuration, JSON", "driver"),
    _col("env_json", "str", "the worker's environment: versions, sampler, architecture, load details, JSON",
         "trial.record"),
    _col("driver_env_json", "str", "the driver's environment snapshot, JSON", "driver"),
    # -- what the backend loaded
    _col("quant_method", "str", "quantisation library or method (bitsandbytes, fp8, awq, ...; null: none)",
         "backend"),
    _col("quant_type", "str", "quantised type (int8, nf4, fp4, fp8; null: none)", "backend"),
    _col("double_quant", "bool", "bitsandbytes double quantisation", "backend"),
    _col("attention_implementation", "str", "transformers attention implementation (sdpa, eager, ...)",
         "backend"),
    _col("cudnn_attention", "bool", "whether cuDNN scaled-dot-product attention was enabled (null on CPU)",
         "backend"),
    _col("vllm_max_num_seqs", "int", "vLLM max_num_seqs the engine ran with", "backend"),
    _col("load_label", "str", "what load_* measured where it is not a model load (server_startup)", "backend"),
    _col("unload_label", "str", "what unload_* measured where it is not a model unload (server_shutdown)",
         "backend"),
    # -- the load group
    _col("worker_group_index", "int", "index of this load among the worker process's loads (0: its first)",
         "trial.record"),
    _col("import_s", "float", "time the load waited for the backend's module import (0 once imported)",
         "trial.record"),
    _col("load_id", "str", "id of the load that served this row: rows of one load share idle_* and load_*",
         "trial.record"),
    _col("prepare_s", "float", "unmeasured preparation before load (download, conversion, random weights)",
         "trial.record"),
    _col("idle_power_w", "float", "the idle baseline's mean power (idle_j / idle_s)", "trial.record"),
    _col("idle_temperature_c", "float", "lowest device temperature during the idle window", "trial.record"),
    _col("idle_settle_s", "float", "time waited for the device's power to settle before the idle window",
         "trial.record"),
    _col("idle_settled", "bool", "whether power stopped falling before the idle window (null: no series)",
         "trial.record"),
    _col("idle_method", "str", "how the idle baseline was taken, in words", "trial.record"),
    _col("idle_reused", "bool", "whether idle_* was measured before an earlier load on this device and reused",
         "trial.record"),
    _col("idle_measured_at", "str", "when the idle baseline was measured, ISO 8601 UTC", "trial.record"),
    *[c for phase, what in PHASES.items() for c in _phase_columns(phase, what)],
    _col("cooldown_s", "float", "pause before the trial (measurement.cooldown_s and the wait for temperature)",
         "trial.record"),
    _col("cooldown_reached", "bool", "whether the device got within cooldown_to_idle_c of its idle temperature "
         "(null: not asked)", "trial.record"),
    _col("warmup_runs", "int", "warmup generations run just before this trial (0: shape already warm)",
         "trial.record"),
    _col("warmup_new_tokens", "int", "new tokens per warmup generation", "trial.record"),
    _col("temperature_start_c", "float", "device temperature at the trial's start", "sampler"),
    _col("unload_memory_left_mb", "float", "device memory still allocated after unload", "backend"),
    _col("process_reusable", "bool", "whether the worker process can take the slot's next load", "backend"),
    _col("server_shutdown_s", "float", "backend=server: time from the signal until the server exited", "backend"),
    _col("server_shutdown_forced", "bool", "backend=server: whether the server had to be killed", "backend"),
    _col("server_exit_code", "int", "backend=server: the server's exit code", "backend"),
    # -- the workload
    _col("batches", "int", "generate calls the requests were fed in: static batches (the last may be smaller than "
         "batch_size), or 1 where the feed is concurrent", "trial.record"),
    _col("batching", "str", "static (batches of batch_size, each finished before the next: transformers) or "
         "concurrent (all requests in one call, batch_size in flight: servers, APIs, vLLM at max_num_seqs = "
         "batch_size)", "trial.record"),
    _col("batching_reason", "str", "why the feed is static where the backend can run concurrently", "trial.record"),
    _col("task_items", "int", "items the task has (after tasks.limit); the requests cycle through them",
         "trial.record"),
    _col("task_source", "str", "where the task's items come from: builtin, or the file or dataset", "trial.record"),
    _col("task_items_skipped", "int", "items of the task's file left out (e.g. with an image)", "trial.record"),
    _col("task_items_skipped_reason", "str", "why items were left out, with their counts", "trial.record"),
    _col("chat_template_applied", "bool", "whether the prompts went through the model's chat template",
         "backend"),
    _col("chat_template_source", "str", "where the applied chat template comes from (the tokenizer's config, the "
         "server); null: none applied", "backend"),
    _col("chat_template_reason", "str", "why no chat template was applied", "backend"),
    _col("scored_requests", "int", "requests scored against a gold answer (0 for random weights)", "trial.record"),
    _col("correct_requests", "int", "requests scored correct (null: none scored)", "trial.record"),
    _col("accuracy_reason", "str", "why accuracy is null (random weights: the text is noise; the task has no gold "
         "answers)", "trial.record"),
    _col("hit_max_new_tokens", "int", "responses that stopped at max_new_tokens_used (cut short, unless "
         "ignore_eos)", "trial.record"),
    _col("judge_requests", "int", "requests sent to the LLM judge (tasks.judge; null: off)", "trial.record"),
    _col("judge_input_tokens", "int", "the judge's input tokens over the trial (never in energy_j)", "trial.record"),
    _col("judge_output_tokens", "int", "the judge's output tokens over the trial", "trial.record"),
    _col("judge_cost_usd", "float", "price of the judge's requests (apart from cost_usd)", "trial.record"),
    _col("judge_model", "str", "the judge model", "trial.record"),
    _col("judge_reason", "str", "why the judge's figures are null (off) or what they leave out", "trial.record"),
    # -- generation
    _col("input_tokens", "int", "prompt tokens of all the trial's requests", "backend"),
    _col("output_tokens", "int", "generated tokens of all the trial's requests", "backend"),
    _col("output_words", "int", "words of the generated text", "trial.record"),
    _col("max_new_tokens_used", "int", "new-token limit the trial ran with", "trial.record"),
    _col("decode_steps", "int", "decoding steps (each batch's: tokens of its longest sequence), summed over the "
         "batches", "backend"),
    _col("duration_s", "float", "generation time (each batch's first call to its last token), summed over the "
         "batches", "trial.record"),
    _col("ttft_s", "float", "time to first token: the prefill time (over several batches, their mean)",
         "trial.record"),
    _col("tpot_s", "float", "time per output token after the first (per decoding step; over several batches, "
         "weighted by their steps)", "trial.record"),
    _col("decode_s", "float", "from each batch's first token to its end, summed (one batch: duration_s minus ttft_s)",
         "trial.record"),
    _col("tokens_per_s", "float", "output_tokens / duration_s", "trial.record"),
    _col("peak_memory_mb", "float", "peak device memory allocated during generation", "backend"),
    _col("accuracy", "float", "correct_requests / scored_requests (null: none scored, accuracy_reason says why; "
         "never 0 for random weights)", "trial.record"),
    _col("sample_output", "str", "first 500 characters of the first request's text (every text: table responses)",
         "trial.record"),
    _col("steady_s", "float", "duration of the steady window (every sequence decoding)", "trial.record"),
    _col("steady_tokens", "int", "tokens generated in the steady window", "trial.record"),
    _col("ttft_source", "str", "where ttft_s comes from where not the client's clock (vllm_request_metrics)",
         "backend"),
    _col("ttft_mean_s", "float", "mean time to first token over the batch's sequences", "backend"),
    _col("timing_reason", "str", "why per-request timings are missing", "backend"),
    _col("cached_prompt_tokens", "int", "prompt tokens served from the prefix cache (prefill skipped)", "backend"),
    # -- roofline
    _col("roofline_bandwidth_gbs", "float", "memory bandwidth the roofline assumes", "trial.record"),
    _col("roofline_bandwidth_source", "str", "where roofline_bandwidth_gbs comes from", "trial.record"),
    _col("roofline_bytes_per_step", "float", "bytes one decode step must read (weights + KV cache)",
         "trial.record"),
    _col("roofline_kv_bytes_per_step", "float", "KV-cache bytes one decode step reads", "trial.record"),
    _col("roofline_s_per_step", "float", "memory-bound floor of one decode step", "trial.record"),
    _col("roofline_s_per_token", "float", "memory-bound floor per output token", "trial.record"),
    _col("roofline_efficiency", "float", "roofline_s_per_step / tpot_s (1: at the floor)", "trial.record"),
    _col("roofline_j_per_token", "float", "energy per token at the floor, at the decode's power", "trial.record"),
    # -- the trial's energy
    _col("energy_j", "float", "device energy of the trial's window (every batch's generation); not idle-subtracted; "
         "no load, warmup or unload", "trial.record"),
    _col("energy_source", "str", f"energy_j: {_SOURCE}", "trial.record"),
    _col("energy_scope", "str", "what energy_j covers (gpu board, cpu package, ...)", "sampler"),
    _col("energy_reason", "str", "why energy_j is null or how it is qualified", "trial.record"),
    _col("short_window", "bool", "whether the window was too short for the counter alone", "sampler"),
    _col("window_s", "float", "the trial's window: from after the samplers' begin calls to before their end calls, "
         "on the worker's clock (the device's and the node samplers' figures all cover it)", "sampler"),
    _col("avg_power_w", "float", "energy_j / window_s", "sampler"),
    _col("peak_power_w", "float", "highest polled power in the window", "sampler"),
    _col("energy_idle_subtracted_j", "float", "energy_j minus idle_power_w over the window", "trial.record"),
    _col("j_per_token", "float", "energy_j / output_tokens", "trial.record"),
    _col("j_per_word", "float", "energy_j / output_words", "trial.record"),
    _col("j_per_request", "float", "energy_j / requests", "trial.record"),
    _col("j_per_correct", "float", "energy_j / correct_requests (null: none correct or not scored)", "trial.record"),
    _col("temperature_max_c", "float", "highest device temperature in the window", "sampler"),
    _col("samples_n", "int", "power samples in the window", "sampler"),
    _col("energy_polled_j", "float", "the window's energy from polled power, before counter anchoring", "sampler"),
    _col("energy_anchor_scale", "float", "counter / polled energy over the anchoring span", "sampler"),
    _col("energy_anchor_span_s", "float", "span of the counter reading a short window was anchored to", "sampler"),
    _col("sampler_cpu_s", "float", "CPU time the device sampler's process used during the trial's window (all its "
         "threads: polling, edge reads, the calls it serves); null: the sampler does not report it", "sampler"),
    _col("sampler_device_calls_per_s", "float", "the device sampler's calls into the device's library (NVML) per "
         "second of the trial's window, polls and edge reads; null: the sampler does not count them", "sampler"),
    _col("cpu_energy_total_j", "float", "node role cpu: CPU + RAM energy of the trial's window", "node sampler"),
    _col("ram_energy_j", "float", "RAM energy of the trial's window (CodeCarbon: an estimate; RAPL: dram zone)",
         "sampler"),
    _col("co2_kg", "float", "CodeCarbon's own CO2 figure for its CPU+RAM energy of the window, at its own "
         "intensity (the country sampler.country_iso_code); superseded by co2_g / cpu_co2_g", "sampler"),
    *_FOOTPRINT,
    _col("failed_window_j", "float", "a trial that did not complete: what its window used up to the failure",
         "trial.record"),
    *[c for part, what in WINDOW_PARTS.items() for c in _part_columns(part, what)],
    _col("steady_j_per_token", "float", "steady_j / steady_tokens", "trial.record"),
    # -- text-to-image trials (backend=diffusers; docs/diffusion.md)
    _col("images", "int", "image trials: images generated (prompts x batch_size, batch_size being images per "
         "prompt)", "trial.record"),
    _col("image_width_px", "int", "image trials: width of each image as generated", "backend"),
    _col("image_height_px", "int", "image trials: height of each image as generated", "backend"),
    _col("denoise_steps", "int", "image trials: denoising steps each image went through (the step callbacks seen)",
         "backend"),
    _col("guidance_scale_used", "float", "image trials: the guidance scale the pipeline applied", "backend",
         unit=None),
    _col("text_encode_s", "float", "image trials: time in the text encoders, summed over the prompts", "backend"),
    _col("denoise_s", "float", "image trials: time in the denoising loop, summed over the prompts", "backend"),
    _col("vae_decode_s", "float", "image trials: time in the VAE decode, summed over the prompts", "backend"),
    _col("s_per_step", "float", "image trials: mean time of a denoising step (denoise_s / steps, over all prompts)",
         "trial.record"),
    _col("j_per_step", "float", "image trials: denoise_j per denoising step (each step makes all of a prompt's "
         "images at once)", "trial.record"),
    _col("j_per_image", "float", "image trials: energy_j / images", "trial.record"),
    _col("images_per_s", "float", "image trials: images / duration_s", "trial.record"),
    _col("denoise_step_s_json", "str", "image trials: JSON list, per prompt, of each denoising step's duration (s)",
         "trial.record"),
    _col("denoise_step_j_json", "str", "image trials: JSON list, per prompt, of each denoising step's energy (J): "
         "the prompt's denoise energy shared by the power series over its steps (by duration where the series "
         "does not cover them)", "trial.record"),
    _col("image_dir", "str", "image trials: the folder of the trial's PNG images, relative to the store's root "
         "(artifacts/<sweep>/<trial_id>); null: none saved", "trial.record"),
    _col("image_note", "str", "image trials: what the images are worth: 'random weights: the images are noise', "
         "or null for real weights", "trial.record"),
    _col("decode_avg_power_w", "float", "decode_j / decode_s", "trial.record"),
    _col("j_per_output_token_decode", "float", "decode_j per token generated after the first", "trial.record"),
    *[c for role, what in NODE_ROLES.items() for c in _role_columns(role, what)],
    # -- cost (energyray/footprint/cost.py, in the driver; docs/footprint.md)
    _col("energy_cost_usd", "float", "price of energy_j (x PUE where footprint.pue is set) at electricity_usd_per_kwh; "
         "null on API rows and where either is unknown", "driver"),
    _col("energy_cost_estimated", "bool", "whether energy_cost_usd rests on an estimated energy_j (energy_source "
         "estimated: CodeCarbon)", "driver"),
    _col("energy_cost_reason", "str", "why energy_cost_usd is null, or what it covers (energy_j's scope only, PUE)",
         "driver"),
    _col("electricity_usd_per_kwh", "float", "the electricity price used (conf/prices/electricity.yaml, or "
         "footprint.electricity_usd_per_kwh)", "driver"),
    _col("electricity_price_source", "str", "where the electricity price comes from (user: footprint.*)", "driver"),
    _col("electricity_price_as_of", "str", "the date or period of the electricity price (user: the trial's date)",
         "driver"),
    _col("electricity_price_region", "str", "the region whose price was used (a region missing from the table: its "
         "country)", "driver"),
    _col("gpu_time_cost_usd", "float", "renting the trial's GPU for its window: window_s x 1 GPU x gpu_hour_usd / 3600; "
         "null on CPU workers and API rows", "driver"),
    _col("gpu_time_cost_reason", "str", "why gpu_time_cost_usd is null, or what it covers", "driver"),
    _col("gpu_hour_usd", "float", "the per-GPU hourly price used: a cloud instance's on-demand price / its GPUs "
         "(conf/prices/cloud_gpu.yaml), or footprint.gpu_hour_usd", "driver"),
    _col("gpu_hour_source", "str", "where the GPU-hour price comes from (user: footprint.gpu_hour_usd)", "driver"),
    _col("gpu_hour_as_of", "str", "the date of the GPU-hour price (user: the trial's date)", "driver"),
    _col("cloud_offering", "str", "the cloud offering priced (footprint.cloud_offering, else the hardware's default)",
         "driver"),
    _col("cost_usd_per_request", "float", "the trial's cost per request: local, energy_cost_usd + gpu_time_cost_usd "
         "(CPU workers: energy only); API, cost_usd (cost_basis says which)", "driver"),
    _col("cost_usd_per_1k_tokens", "float", "the same cost per 1,000 output tokens", "driver"),
    _col("cost_basis", "str", "what cost_usd_per_request counts: energy+gpu_time, energy (a CPU worker) or api_tokens",
         "driver"),
    _col("cost_per_request_reason", "str", "why cost_usd_per_request is null", "driver"),
    # -- remote APIs (backend=openai, server)
    _col("api_base_url", "str", "API base URL", "backend"),
    _col("api_model", "str", "model name sent to the API", "backend"),
    _col("api_endpoint", "str", "chat or completions", "backend"),
    _col("api_requests", "int", "requests sent (one per prompt)", "backend"),
    _col("api_concurrency", "int", "requests in flight at once", "backend"),
    _col("api_max_output_tokens", "int", "output-token limit sent to the API", "backend"),
    _col("api_retries", "int", "retries over all requests", "backend"),
    _col("api_retry_wait_s", "float", "time spent waiting before retries", "backend"),
    _col("api_failed_requests", "int", "requests that failed after their retries", "backend"),
    _col("api_finish_reasons", "str", "distinct finish reasons, comma-separated", "backend"),
    _col("ttft_request_s_mean", "float", "mean time to first streamed delta per request", "backend", unit="s"),
    _col("ttft_request_s_max", "float", "longest time to first streamed delta", "backend", unit="s"),
    _col("latency_request_s_mean", "float", "mean request latency", "backend", unit="s"),
    _col("output_deltas", "int", "streamed text deltas received", "backend"),
    _col("step_ns_meaning", "str", "what the per-step times mean for this backend", "backend"),
    _col("tokens_source", "str", "where the token counts come from (server usage report)", "backend"),
    _col("tokens_reason", "str", "why token counts are missing", "backend"),
    _col("cached_input_tokens", "int", "input tokens the API served from its cache", "backend"),
    _col("reasoning_tokens", "int", "reasoning tokens the API reported", "backend"),
    _col("cost_usd", "float", "price of the trial's requests", "backend"),
    _col("cost_input_usd", "float", "price of the input tokens", "backend"),
    _col("cost_output_usd", "float", "price of the output tokens", "backend"),
    _col("cost_reason", "str", "why cost_usd is null", "backend"),
    _col("price_table_date", "str", "date of the price table used", "backend"),
    _col("price_source", "str", "where the price comes from", "backend"),
    _col("price_verified", "bool", "whether the price was checked against the provider's page", "backend"),
    _col("price_input_usd_per_1m", "float", "input price", "backend"),
    _col("price_output_usd_per_1m", "float", "output price", "backend"),
    _col("energy_estimated_j", "float", "estimated energy of a remote model's generation (not measured)", "backend"),
    _col("energy_estimated_source", "str", "estimated, or null", "backend"),
    _col("energy_estimate_method", "str", "how energy_estimated_j was computed, with its assumptions", "backend"),
    _col("energy_estimate_reason", "str", "why energy_estimated_j is null", "backend"),
    _col("energy_estimated_ecologits_min_j", "float", "EcoLogits' estimate of a remote model's energy (not measured): "
         "low end of its range, summed over requests (api.energy_estimate=ecologits or both)", "backend"),
    _col("energy_estimated_ecologits_max_j", "float", "EcoLogits' estimate: high end of its range", "backend"),
    _col("ecologits_min_co2_g", "float", "EcoLogits' estimate of the usage-phase CO2 of that energy at the provider's "
         "datacenter mix (its own, not carbon_intensity_g_per_kwh): low end", "backend"),
    _col("ecologits_max_co2_g", "float", "EcoLogits' usage-phase CO2 estimate: high end", "backend"),
    _col("energy_estimated_ecologits_source", "str", "estimated, or null", "backend"),
    _col("energy_estimate_ecologits_method", "str", "EcoLogits' version and assumptions behind the ecologits columns",
         "backend"),
    _col("energy_estimate_ecologits_reason", "str", "why the ecologits estimate is null (model or provider unknown "
         "to EcoLogits, package not installed, no token counts)", "backend"),
    EXTRA_JSON_COLUMN,
    SCHEMA_VERSION_COLUMN,
]

# The sampler's name and settings, in both samples-table provenance and systems rows.
_SAMPLER_DESCRIBE: list[Column] = [
    _col("sampler", "str", "the sampler's name (nvml, rapl, codecarbon, snmp_pdu, replay; null: none)", "sampler"),
    _col("scope", "str", "what the sampler measures (gpu board, cpu package, node, ...)", "sampler"),
    _col("interval_s", "float", "the sampler's polling period", "sampler"),
    _col("gpu_name", "str", "GPU name from NVML", "sampler"),
    _col("energy_counter", "str", "whether the sampler reads an energy counter (true/false), or a PDU's energy "
         "meter settings as JSON", "sampler"),
    _col("instant_power", "bool", "whether NVML's instant power field is read", "sampler"),
    _col("power_limit_w", "float", "the GPU's enforced power limit", "sampler"),
    _col("rapl_zones", "str", "RAPL zones read, JSON list", "sampler"),
    _col("country_iso_code", "str", "country CodeCarbon takes the carbon intensity of", "sampler"),
    _col("method", "str", "how the sampler estimates energy, in words", "sampler"),
    _col("trace_rows", "int", "replay sampler: rows in the trace", "sampler"),
    _col("trace_start_ns", "int", "replay sampler: first timestamp of the trace", "sampler"),
    _col("trace_end_ns", "int", "replay sampler: last timestamp of the trace", "sampler"),
    _col("realtime", "bool", "replay sampler: whether the trace is replayed at its own pace", "sampler"),
    _col("snmp_version", "str", "PDU: SNMP version (2c or 3)", "sampler"),
    _col("user", "str", "PDU: SNMPv3 user", "sampler"),
    _col("auth_password", "str", "PDU: where the SNMPv3 auth password is read from (never the password)",
         "sampler"),
    _col("priv_password", "str", "PDU: where the SNMPv3 privacy password is read from (never the password)",
         "sampler"),
    _col("community", "str", "PDU: where the SNMP community is read from (never the community)", "sampler"),
    _col("host", "str", "PDU: host", "sampler"),
    _col("port", "int", "PDU: UDP port", "sampler"),
    _col("oids", "str", "PDU: the OIDs read and how they become watts, JSON", "sampler"),
    _col("derived_watts", "bool", "PDU: whether watts are derived from amps (volts x power factor)", "sampler"),
    _col("max_gap_s", "float", "PDU: longest gap between readings allowed in a window", "sampler"),
    _col("reads", "int", "PDU: readings taken", "sampler"),
    _col("failed_reads", "int", "PDU: readings that failed", "sampler"),
    _col("note", "str", "the sampler's caveat, in words", "sampler"),
]

_SYSTEMS: list[Column] = [
    _col("system_id", "str", "node sampler rows: <node>-node-<role> (also the file's name)", "orchestrator"),
    _col("node", "str", "host name", "worker"),
    _col("ray_node_id", "str", "Ray node id", "worker"),
    _col("kind", "str", "gpu or cpu (a worker's device), or node_sampler", "worker"),
    _col("role", "str", "node sampler rows: wall or cpu", "orchestrator"),
    _col("gpu_uuid", "str", "the worker's GPU UUID (null on CPU)", "worker"),
    _col("pid", "int", "the worker's process id", "worker"),
    *_SAMPLER_DESCRIBE,
    _col("sampler_pid", "int", "process id of the device's sampler actor", "worker"),
    _col("sampler_nice", "int", "niceness of the device sampler's poll thread: 0 where its actor may raise its "
         "priority (root, CAP_SYS_NICE), else as Ray started it (15 by default)", "worker"),
    _col("sampler_error", "str", "why the device has no sampler", "worker"),
    _col("cpu_model", "str", "CPU model name", "worker"),
    _col("cpu_count", "int", "logical CPUs of the node", "worker"),
    _col("cpu_affinity", "int", "CPUs the worker may run on", "worker"),
    _col("ray_assigned_resources", "str", "Ray resources assigned to the worker, JSON", "worker"),
    _col("worker_init_entered_at", "float", "when the worker's __init__ began, Unix time", "worker", unit="s"),
    _col("worker_process_age_s", "float", "age of the worker's process when __init__ began", "worker"),
    _col("worker_device_s", "float", "worker start: time to find its device", "worker"),
    _col("worker_bind_s", "float", "worker start: time to bind the sampler to the device", "worker"),
    _col("worker_init_s", "float", "worker start: the whole __init__", "worker"),
    _col("worker_preload", "str", "the backend module preloaded in the worker (off: none)", "worker"),
    _col("worker_bytecode_cache", "str", "where the worker's bytecode cache is (ray.bytecode_cache)", "worker"),
    _col("trial_process", "str", "where the worker runs its trials (ray.trial_process): child (a plain child "
         "process it started) or actor (the Ray worker process)", "worker"),
    _col("trial_pid", "int", "process id of the process that runs the model", "worker"),
    _col("trial_process_start_s", "float", "worker start: time for its trial process to start (import torch, "
         "start CUDA; null with ray.trial_process=actor)", "worker"),
    _col("worker_nice_at_start", "int", "niceness of the worker's main thread (the one that runs the model) as Ray "
         "started it (RAY_worker_niceness, 15 by default)", "worker"),
    _col("worker_nice", "int", "that niceness once the worker started: 0 where it may raise its priority (root, "
         "CAP_SYS_NICE), else as Ray set it", "worker"),
    _col("node_tag", "str", "the worker's tag on its node sampler windows", "worker"),
    _col("node_samplers", "str", "the node samplers the worker used, described, JSON", "worker"),
    _col("node_sampler_pid", "int", "process id of the node's sampler actor", "node sampler"),
    _col("node_sampler_nice", "int", "niceness of the node samplers' poll threads (as sampler_nice)", "node sampler"),
    _col("slot", "int", "the scheduler's slot index of the worker", "orchestrator"),
    _col("seen_at", "str", "host name of the driver that wrote the row", "driver"),
    _col("error", "str", "node sampler rows: why the role's sampler could not start", "node sampler"),
    _col("shared_by_node", "bool", "node sampler rows: whether the node's workers share the sampler", "node sampler"),
    _col("attribution_rule", "str", "node sampler rows: how overlapping windows share the node's energy",
         "node sampler"),
    _col("node_idle_power_w", "float", "node sampler rows: the node's idle power", "node sampler"),
    _col("unattributed_j", "float", "node sampler rows: node energy while no window was open", "node sampler"),
    _col("unattributed_s", "float", "node sampler rows: time no window was open", "node sampler"),
    _col("attributed_j", "float", "node sampler rows: node energy shared among windows", "node sampler"),
    _col("windows_closed", "int", "node sampler rows: windows measured", "node sampler"),
    _col("ledger_span_s", "float", "node sampler rows: first window's start to last window's end", "node sampler"),
    EXTRA_JSON_COLUMN,
    SCHEMA_VERSION_COLUMN,
]

_SAMPLES: list[Column] = [
    _col("trial_id", "str", "the trial whose row these samples are stored with", "trial.record"),
    _col("source", "str", "the sampler that took the sample (its name; a node sampler's for node samples)",
         "trial.record"),
    _col("phase", "str", "phase the sample belongs to: idle, load, warmup, prefill, decode, generate, "
         "trial_edge, response, unload; image trials: text_encode, denoise, vae_decode (generate: the rest of a "
         "pipeline call)", "trial.record"),
    _col("denoise_step", "int", "image trials: the denoising step (0-based) running when the sample was taken; "
         "null outside the denoising loop", "trial.record"),
    _col("t_ns", "int", "monotonic clock of the sampler's node (compare within a trial, not across nodes)",
         "sampler"),
    _col("power_w", "float", "power", "sampler"),
    _col("energy_j", "float", "the energy counter's reading (cumulative; null: no counter)", "sampler"),
    _col("temperature_c", "float", "device temperature", "sampler"),
    _col("sm_clock_mhz", "float", "GPU SM clock", "sampler"),
    _col("utilization_pct", "float", "device (or CPU) utilization", "sampler"),
    _col("memory_used_mb", "float", "device (or host) memory in use", "sampler"),
    EXTRA_JSON_COLUMN,
    SCHEMA_VERSION_COLUMN,
]

_RESPONSES: list[Column] = [
    _col("trial_id", "str", "the trial that sent the request (join with trials)", "trial.record"),
    _col("request_index", "int", "the request's place in the trial's workload (0-based)", "trial.record"),
    _col("batch_index", "int", "the batch it was sent in (0-based)", "trial.record"),
    _col("item_id", "str", "the task item's id (requests cycle through the items: one item may repeat)",
         "trial.record"),
    _col("category", "str", "the item's category (null: none)", "trial.record"),
    _col("prompt", "str", "the prompt as sent, after the chat template", "trial.record"),
    _col("response", "str", "the whole generated text (null: none came back)", "trial.record"),
    _col("gold", "str", "the item's reference answer (null: not scored)", "trial.record"),
    _col("correct", "bool", "whether the response was scored correct (null: not scored: no gold answer, random "
         "weights, no text)", "trial.record"),
    _col("score", "float", "the scorer's value (1/0, ROUGE-L F1, ...)", "trial.record"),
    _col("scorer", "str", "how it was scored: exact_match, multiple_choice, numeric, rouge_l, regex, judge",
         "trial.record"),
    _col("extracted_answer", "str", "what the scorer read as the answer", "trial.record"),
    _col("confidence", "float", "the model's own stated confidence (0-1), where the response states one",
         "trial.record"),
    _col("input_tokens", "int", "the request's prompt tokens", "backend"),
    _col("output_tokens", "int", "tokens generated for the request", "backend"),
    _col("hit_max_new_tokens", "bool", "whether the response stopped at the new-token limit (the backend's finish "
         "reason where it gives one, else its tokens reached the limit)", "trial.record"),
    _col("latency_s", "float", "from when the request was sent (its batch's start where the backend does not say) "
         "to its last token (null: the backend does not time requests)", "backend"),
    _col("ttft_s", "float", "from when the request was sent to its first token", "backend"),
    _col("energy_j", "float", "this request's share of the trial's energy_j, by energy_share_rule (the shares of a "
         "trial sum to its energy_j; null where that is null)", "trial.record"),
    _col("energy_source", "str", "the trial's energy_source (not_measurable: no share)", "trial.record"),
    _col("energy_share_rule", "str", "how the trial's energy was shared among its requests, as codes: "
         "prefill=prompt_tokens; decode=per_step; times=step_times|seq_times|no_times; weight=power|duration|equal "
         "(docs/measurement.md, 'Each request's share')", "trial.record"),
    _col("judge_verdict", "bool", "the LLM judge's verdict (null: not judged)", "trial.record"),
    _col("judge_input_tokens", "int", "the judge's input tokens for this response", "trial.record"),
    _col("judge_output_tokens", "int", "the judge's output tokens for this response", "trial.record"),
    _col("judge_cost_usd", "float", "price of the judge's request", "trial.record"),
    _col("judge_error", "str", "why there is no verdict (the request failed, no gold answer)", "trial.record"),
    EXTRA_JSON_COLUMN,
    SCHEMA_VERSION_COLUMN,
]

TABLES: dict[str, tuple[Column, ...]] = {
    "trials": (*_TRIALS, *PARTITION_COLUMNS),
    "samples": (*_SAMPLES, *PARTITION_COLUMNS),
    "systems": (*_SYSTEMS, *PARTITION_COLUMNS),
    "responses": (*_RESPONSES, *PARTITION_COLUMNS),
}

# Columns older versions wrote: old name -> (replacement or None, why). Store.read keeps them
# readable on old files; `energyray store upgrade` renames or drops them.
LEGACY: dict[str, dict[str, tuple[str | None, str]]] = {
    "trials": {
        "latency_s": ("duration_s", "a copy of duration_s"),
        "prefill_s": ("ttft_s", "a copy of ttft_s"),
        "group_rule": (None, "the same prose on every row; the meaning of idle_*, load_*, unload_*, warmup_*, "
                             "load_id and group_trials is in docs/columns.md"),
    },
    "samples": {},
    "systems": {},
    "responses": {},
}


def columns(table: str, partitions: bool = True) -> tuple[Column, ...]:
    """The declared columns of `table` (with its hive partition columns unless `partitions=False`)."""
    if table not in TABLES:
        raise ValueError(f"unknown table {table!r}; tables: {', '.join(TABLES)}")
    return tuple(c for c in TABLES[table] if partitions or not c.partition)


def names(table: str, partitions: bool = True) -> tuple[str, ...]:
    return tuple(c.name for c in columns(table, partitions))


def arrow_schema(table: str, partitions: bool = False) -> pa.Schema:
    """The Arrow schema of one file of `table` (partition columns live in the path: left out)."""
    return pa.schema([pa.field(c.name, c.type) for c in columns(table, partitions)])


# -- docs/columns.md -------------------------------------------------------------------------
DOCS_PATH = Path(__file__).resolve().parents[1] / "docs" / "columns.md"
REGENERATE = "python -m energyray.schema --write"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown() -> str:
    """docs/columns.md: one table per store table."""
    out = [
        "# Columns",
        "",
        f"<!-- generated from energyray/schema.py by `{REGENERATE}`; do not edit -->",
        "",
        "A store holds four tables, each a folder of Parquet files partitioned by `sweep=` and "
        "`hardware=` (hive style): `trials` (one row per trial repetition), `samples` (the power "
        "time series), `systems` (one row per worker and node sampler) and `responses` (one row per request "
        "of a trial; stores written before it have no `responses` folder). "
        f"Schema version {SCHEMA_VERSION}.",
        "",
        "Columns ending in `_j` are joules, `_s` seconds, `_w` watts, `_c` degrees Celsius, `_mb` MiB. "
        "Phases: `idle_*` and `load_*` are measured once per load and repeated on every row of that load "
        "(they share `load_id`; divide by `group_trials` to share them), `unload_*` once, on the load's last "
        "row, `warmup_*` just before the first trial of each shape. None of these is in `energy_j`. "
        "backend=server: `load_*` is the local server's startup and `unload_*` its shutdown (`load_label`, "
        "`unload_label`). backend=openai: the model runs remotely, so every measured energy column is null "
        "(not_measurable); `energy_estimated_j` is an estimate.",
        "",
        "Filled by: " + "; ".join(f"**{k}**: {v}" for k, v in FILLERS.items()) + ".",
        "",
    ]
    for table in TABLES:
        out += [f"## {table}", "", "| column | type | unit | meaning | filled by |", "| --- | --- | --- | --- | --- |"]
        for c in TABLES[table]:
            out.append(f"| `{c.name}` | {c.type} | {_cell(c.unit or '')} | {_cell(c.meaning)} | {c.filled_by} |")
        out.append("")
        legacy = LEGACY.get(table) or {}
        if legacy:
            out += ["Written by older versions (`Store.read` still reads them; `python -m energyray store upgrade "
                    "--store PATH` renames or drops them):", "",
                    "| old column | now | why |", "| --- | --- | --- |"]
            out += [f"| `{old}` | {f'`{new}`' if new else 'dropped'} | {_cell(why)} |"
                    for old, (new, why) in legacy.items()]
            out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m energyray.schema",
                                 description="Print docs/columns.md (generated from the declared schema).")
    ap.add_argument("--write", action="store_true", help=f"write it to {DOCS_PATH}")
    args = ap.parse_args(argv)
    text = markdown()
    if args.write:
        DOCS_PATH.parent.mkdir(parents=True, exist_ok=True)
        DOCS_PATH.write_text(text)
        print(f"wrote {DOCS_PATH}")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
