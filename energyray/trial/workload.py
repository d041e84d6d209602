"""A trial's workload: the task's items, its requests in batches, the prompts as sent, and each
request's share of the trial's energy.

A trial runs `requests` items (None: one batch of batch_size; "all": every item once), the
task's items in order, cycling, fed `batch_size` at a time (the last batch may be smaller).
One window covers every batch; `Batches` makes the batches' generations one for the row
(token counts summed, the window's parts as lists of intervals, one per batch).

This module is the one place the trial calls the task and judge modules: `load_items`,
`scorer`, `check_task`, `judge_check` and `run_judge`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from energyray import tasks
from energyray.backends.base import Prompts, plain_prompts
from energyray.errors import ConfigError, TrialFailed
from energyray.samplers.base import WindowReading
from energyray.samplers.energy import seconds_from, trapezoid
from energyray.tasks.base import Item, Score, TaskItems

Interval = tuple[int, int]


# -- the task and the judge: the one caller ------------------------------------------------------
def load_items(task: str, variant: str, options: Any) -> TaskItems:
    """The task's items for `variant` after the file's skips, the seeded sample and the limit
    (`options`: config.TasksConfig, or None for the defaults)."""
    return tasks.load(task, variant, options)


def scorer(task: str, options: Any) -> Callable[[Item, str], Score]:
    """The task's scorer: (item, response) -> Score."""
    return tasks.get(task, options).score


def check_task(task: str, variant: str, options: Any) -> None:
    """A ConfigError naming the choices where `task` or its `variant` is unknown."""
    variants = tuple(tasks.get(task, options).variants)
    if variant not in variants:
        raise ConfigError(f"Task {task!r} has no prompt_variant {variant!r}. Valid choices: {', '.join(variants)}.")


def judge_check(cfg: Any) -> str | None:
    """What stops the enabled LLM judge from running (a missing API key...), or None."""
    from energyray.tasks.judge import check

    return check(cfg)


@dataclass
class Judged:
    """The judge's outcome on a trial: per response its judge_* fields and its Score (None where
    the judge gave no verdict), and the trial's judge_* fields."""

    rows: list[dict[str, Any]]
    scores: list[Score | None]
    trial: dict[str, Any]


def judge_off(cfg: Any, random: str | None) -> dict[str, Any]:
    """The trial's judge_* fields where the judge did not run, with why."""
    if random and cfg is not None and getattr(cfg, "enabled", False):
        return {**JUDGE_OFF, "judge_reason": f"not sent: {random}"}
    return dict(JUDGE_OFF)


JUDGE_OFF = {"judge_requests": None, "judge_input_tokens": None, "judge_output_tokens": None, "judge_cost_usd": None,
             "judge_model": None, "judge_reason": "off (tasks.judge.enabled=false)"}


def run_judge(pairs: list[tuple[Item, str | None]], cfg: Any) -> Judged | None:
    """The LLM judge on each (item, response) where tasks.judge is enabled; None where it is off.
    A response with no text is not sent."""
    if cfg is None or not getattr(cfg, "enabled", False):
        return None
    from energyray.tasks.judge import judge

    sent = [i for i, (_, text) in enumerate(pairs) if text is not None]
    report = judge([(pairs[i][0], str(pairs[i][1])) for i in sent], cfg)
    rows: list[dict[str, Any]] = [{"judge_error": "no response text"} for _ in pairs]
    scores: list[Score | None] = [None] * len(pairs)
    for i, result in zip(sent, report.results, strict=True):
        rows[i] = result.row()
        scores[i] = result.score() if result.verdict is not None else None
    return Judged(rows, scores, report.row())


# -- the prompts as sent ------------------------------------------------------------------------------
def build_prompts(backend: Any, backend_name: str, texts: list[str], *, prompt_tokens: int | None,
                  chat_template: str, seed: int) -> Prompts:
    """The requests' prompts as the backend sends them (backends.base.Prompts): its `prompts()`,
    or the raw text where it has none (plain_prompts)."""
    build = getattr(backend, "prompts", None)
    if build is not None:
        return build(texts, prompt_tokens=prompt_tokens, chat_template=chat_template, seed=seed)  # type: ignore[no-any-return]
    return plain_prompts(texts, prompt_tokens=prompt_tokens, chat_template=chat_template, seed=seed,
                         backend=backend_name)


# -- the requests and their batches --------------------------------------------------------------------
def request_count(requests: int | str | None, batch_size: int, items: int) -> int:
    """How many requests a trial runs: None -> one batch, "all" -> every item once."""
    if requests is None:
        return batch_size
    if requests == "all":
        return items
    return int(requests)


def feed(backend: Any, batch_size: int) -> tuple[str, str | None]:
    """How the trial's requests reach the engine: ("concurrent", None) where the backend keeps
    batch_size requests in flight over all of them (servers, APIs, vLLM at max_num_seqs ==
    batch_size), else ("static", why): batches of batch_size, each finished before the next."""
    check = getattr(backend, "concurrent_feed", None)
    if check is None:
        return "static", f"{getattr(backend, 'name', 'this backend')} generates static batches"
    why = check(batch_size)
    return ("concurrent", None) if why is None else ("static", str(why))


def batch_members(n: int, batch_size: int) -> list[list[int]]:
    """Request indices of each batch: [0..b), [b..2b), ...; the last may be smaller."""
    return [list(range(i, min(i + batch_size, n))) for i in range(0, n, batch_size)]


@dataclass
class Workload:
    """A trial's requests: the items sent (cycling through the task's), their prompts, their batches."""

    task: TaskItems
    requests: list[Item]
    sent: Prompts
    members: list[list[int]]
    batching: str = "static"  # static | concurrent (see feed)
    batching_reason: str | None = None
    concurrency: int | None = None  # requests in flight where concurrent

    @property
    def n(self) -> int:
        return len(self.requests)

    def inputs(self, batch: int) -> list[Any]:
        return [self.sent.inputs[i] for i in self.members[batch]]

    def generate_kwargs(self) -> dict[str, Any]:
        """generate()'s extra arguments: the requests in flight where the feed is concurrent."""
        return {} if self.concurrency is None else {"concurrency": self.concurrency}


def prepare(spec: Any, options: Any, backend: Any, seed: int) -> Workload:
    """The trial's items, requests, prompts (as the backend sends them) and batches."""
    task = load_items(spec.task, spec.prompt_variant, options)
    if not task.items:
        skipped = ", ".join(f"{why}: {k}" for why, k in task.skipped.items())
        raise TrialFailed(f"task {spec.task!r} ({spec.prompt_variant}) has no items to send"
                          + (f" (skipped: {skipped})" if skipped else ""))
    n = request_count(spec.requests, spec.batch_size, len(task.items))
    requests = [task.items[i % len(task.items)] for i in range(n)]
    sent = build_prompts(backend, spec.backend, [it.prompt for it in requests], prompt_tokens=spec.prompt_tokens,
                         chat_template=spec.chat_template, seed=seed)
    batching, why = feed(backend, spec.batch_size)
    if batching == "concurrent":
        return Workload(task, requests, sent, [list(range(n))], batching, why, spec.batch_size)
    return Workload(task, requests, sent, batch_members(n, spec.batch_size), batching, why)


# -- the batches' generations as one -----------------------------------------------------------------
def _sum(values: Sequence[int | float | None]) -> Any:
    return None if any(v is None for v in values) else sum(values)  # type: ignore[arg-type]


# backend extras (Generation.extras) over several batches: summed, the largest, a mean weighted
# by the batch's requests; any other keeps the first batch's value (settings: the same in all)
_EXTRA_SUM = ("api_requests", "api_retries", "api_retry_wait_s", "api_failed_requests", "output_deltas",
              "cached_input_tokens", "reasoning_tokens", "cost_usd", "cost_input_usd", "cost_output_usd",
              "cached_prompt_tokens", "energy_estimated_j", "energy_estimated_ecologits_min_j",
              "energy_estimated_ecologits_max_j", "ecologits_min_co2_g", "ecologits_max_co2_g")
_EXTRA_MAX = ("ttft_request_s_max",)
_EXTRA_MEAN = ("ttft_request_s_mean", "latency_request_s_mean", "ttft_mean_s")
_EXTRA_JOIN = ("api_finish_reasons", "timing_reason", "tokens_reason", "cost_reason", "energy_estimate_reason",
               "energy_estimate_ecologits_method", "energy_estimate_ecologits_reason")


def merge_extras(extras: list[dict[str, Any]], weights: list[int]) -> dict[str, Any]:
    if len(extras) == 1:
        return dict(extras[0])
    out: dict[str, Any] = {}
    for key in dict.fromkeys(k for e in extras for k in e):
        values = [e.get(key) for e in extras]
        if key in _EXTRA_SUM:
            out[key] = _sum(values)
        elif key in _EXTRA_MAX:
            known = [v for v in values if v is not None]
            out[key] = max(known) if known else None
        elif key in _EXTRA_MEAN:
            pairs = [(v, w) for v, w in zip(values, weights, strict=True) if v is not None]
            out[key] = sum(v * w for v, w in pairs) / sum(w for _, w in pairs) if pairs and sum(
                w for _, w in pairs) else None
        elif key in _EXTRA_JOIN:
            parts = [p for v in values if v for p in str(v).split(",")] if key == "api_finish_reasons" else \
                [str(v) for v in values if v]
            out[key] = (",".join(sorted(set(parts))) if key == "api_finish_reasons"
                        else "; ".join(dict.fromkeys(parts))) or None
        else:
            out[key] = next((v for v in values if v is not None), None)
    return out


class Batches:
    """The generations of a trial's batches, one per batch (`members`: each batch's request
    indices), as the row sees them. One batch gives exactly its Generation's figures."""

    def __init__(self, gens: list[Any], members: list[list[int]]) -> None:
        self.gens = gens
        self.members = members[:len(gens)]

    @property
    def input_tokens(self) -> int | None:
        return _sum([g.input_tokens for g in self.gens])  # type: ignore[no-any-return]

    @property
    def output_tokens(self) -> int | None:
        return _sum([g.output_tokens for g in self.gens])  # type: ignore[no-any-return]

    @property
    def lengths(self) -> list[int]:
        return [n for g in self.gens for n in g.lengths]

    @property
    def decode_steps(self) -> int:
        """Decoding steps over the batches (each batch's: its longest sequence's tokens)."""
        return sum(g.steps for g in self.gens)

    @property
    def batch_steps(self) -> int:
        """The longest batch's steps (the roofline's decode length)."""
        return max((g.steps for g in self.gens), default=0)

    @property
    def duration_s(self) -> float:
        """The batches' generate calls, summed (the gaps between them are in the window only)."""
        return sum(g.duration_s for g in self.gens)

    @property
    def ttft_s(self) -> float | None:
        """Time to first token: one batch's; over several, their mean."""
        known = [g.ttft_s for g in self.gens if g.ttft_s is not None]
        return sum(known) / len(known) if known and len(known) == len(self.gens) else None

    @property
    def decode_s(self) -> float | None:
        """From each batch's first token to its end, summed."""
        ttfts = [g.ttft_s for g in self.gens]
        return None if any(t is None for t in ttfts) else sum(g.duration_s - t for g, t in zip(self.gens, ttfts, strict=True))

    @property
    def tpot_s(self) -> float | None:
        """Time per decode step after the first token: one batch's; over several, their mean
        weighted by each batch's decode steps."""
        if len(self.gens) == 1:
            return self.gens[0].tpot_s  # type: ignore[no-any-return]
        pairs = [(g.tpot_s, max(g.steps - 1, 0)) for g in self.gens if g.tpot_s is not None]
        weight = sum(w for _, w in pairs)
        return sum(t * w for t, w in pairs) / weight if weight else None

    @property
    def peak_memory_mb(self) -> float | None:
        known = [g.peak_memory_mb for g in self.gens if g.peak_memory_mb is not None]
        return max(known) if known else None

    @property
    def extras(self) -> dict[str, Any]:
        return merge_extras([g.extras for g in self.gens], [len(m) for m in self.members])

    def steady(self) -> list[tuple[Interval, int]]:
        """Each batch's steady window (every sequence decoding) and the tokens in it."""
        out = []
        for g in self.gens:
            w = g.steady_window_ns()
            if w is not None:
                out.append((w, len(g.lengths) * (min(g.lengths) - 1)))
        return out

    def parts(self) -> dict[str, list[Interval]] | None:
        """The window's parts (record.WINDOW_PARTS), one interval per batch; None where a batch
        has no first-token time (no parts at all, as for one such batch)."""
        if not self.gens or any(g.first_token_ns is None for g in self.gens):
            return None
        parts: dict[str, list[Interval]] = {
            "prefill": [(g.start_ns, g.first_token_ns) for g in self.gens],
            "decode": [(g.first_token_ns, g.end_ns) for g in self.gens]}
        steady = [w for w, _ in self.steady()]
        if steady:
            parts["steady"] = steady
        return parts

    def phase_of(self, t_ns: int) -> str:
        """A trial sample's phase: prefill or decode of the batch it falls in; trial_edge outside
        every generate call (the sampler calls, between batches)."""
        for g in self.gens:
            if g.start_ns <= t_ns <= g.end_ns:
                if g.first_token_ns is None:
                    return "generate"
                return "prefill" if t_ns < g.first_token_ns else "decode"
        return "trial_edge"


# -- per request: timings and the energy share ------------------------------------------------------
def _has_seq_times(gen: Any) -> bool:
    m = len(gen.lengths)
    return m > 0 and len(gen.seq_first_ns) == m and len(gen.seq_last_ns) == m


def _engine_steps(gen: Any) -> bool:
    """Whether step_ns are the engine's steps of the whole batch (an API's are stream arrivals)."""
    return bool(gen.step_ns) and "step_ns_meaning" not in gen.extras


def _step_timings(gen: Any, j: int) -> tuple[float | None, float | None]:
    """(ttft_s, latency_s) of sequence j from the engine's step times, from its batch's start."""
    if _engine_steps(gen) and j < len(gen.lengths) and gen.lengths[j] >= 1:
        last = gen.step_ns[min(gen.lengths[j], len(gen.step_ns)) - 1]
        return (gen.step_ns[0] - gen.start_ns) / 1e9, (last - gen.start_ns) / 1e9
    return None, None


def request_fields(gen: Any, sent: Any, members: list[int], new_tokens: int) -> list[dict[str, Any]]:
    """Each request of a batch: its prompt and output tokens, TTFT and latency (from when it was
    sent), and whether it stopped at the new-token limit; None where unknown. The backend's own
    per-request figures (Generation.per_request) first."""
    known = len(gen.lengths) == len(members)
    reported = gen.per_request() if known and hasattr(gen, "per_request") else [{} for _ in members]
    prompt_tokens = seq_input_tokens(gen, sent, members)
    out = []
    for j, r in enumerate(reported):
        ttft, latency = r.get("ttft_s"), r.get("latency_s")
        if ttft is None and latency is None:
            ttft, latency = _step_timings(gen, j)
        tokens = r.get("output_tokens")
        if tokens is None and known and "step_ns_meaning" not in gen.extras:  # an API's lengths count deltas
            tokens = gen.lengths[j]
        finish = r.get("finish_reason")
        hit = (finish == "length") if finish is not None else None if tokens is None else tokens >= new_tokens
        out.append({"input_tokens": prompt_tokens[j], "output_tokens": tokens, "ttft_s": ttft, "latency_s": latency,
                    "hit_max_new_tokens": hit})
    return out


def seq_input_tokens(gen: Any, sent: Any, members: list[int]) -> list[int | None]:
    """Each request's prompt tokens: the engine's count where it gives one, else the prompts'."""
    counts = getattr(gen, "seq_input_tokens", None) or []
    if len(counts) == len(members):
        return [int(c) for c in counts]
    known = list(getattr(sent, "input_tokens", None) or [])
    return [known[i] if i < len(known) else None for i in members]


@dataclass
class _Power:
    """The window's power series, for weighing sub-intervals (by duration without one)."""

    ts_s: list[float] = field(default_factory=list)  # seconds from ref_ns (offsets keep short spans exact)
    power_w: list[float] = field(default_factory=list)
    ref_ns: int = 0

    @classmethod
    def of(cls, reading: Any) -> _Power:
        samples = reading.samples if isinstance(reading, WindowReading) else []
        pts = sorted((int(s["t_ns"]), float(s["power_w"])) for s in samples
                     if s.get("t_ns") is not None and s.get("power_w") is not None)
        ref = pts[0][0] if pts else 0
        return cls([seconds_from(t, ref) for t, _ in pts], [p for _, p in pts], ref)

    def covers(self, a_ns: int, b_ns: int) -> bool:
        return (len(self.ts_s) >= 2 and self.ts_s[0] <= seconds_from(a_ns, self.ref_ns)
                and self.ts_s[-1] >= seconds_from(b_ns, self.ref_ns))

    def weight(self, a_ns: int, b_ns: int, by_power: bool) -> float:
        if b_ns <= a_ns:
            return 0.0
        if by_power:
            span = seconds_from(a_ns, self.ref_ns), seconds_from(b_ns, self.ref_ns)
            e = trapezoid(self.ts_s, self.power_w, *span).energy_j
            if e is not None:
                return e
        return (b_ns - a_ns) / 1e9


def _decode_steps(gen: Any, power: _Power) -> tuple[list[tuple[float, list[int]]], str, bool]:
    """A batch's decode steps as (weight, sequences generating in it), how they were timed, and
    whether the weights are power-series energies."""
    lengths = list(gen.lengths)
    if _engine_steps(gen) and len(gen.step_ns) >= 2:
        by_power = power.covers(gen.step_ns[0], gen.step_ns[-1])
        steps = [(power.weight(gen.step_ns[k - 1], gen.step_ns[k], by_power),
                  [j for j, n in enumerate(lengths) if n > k]) for k in range(1, len(gen.step_ns))]
        return steps, "the engine's step times", by_power
    if _has_seq_times(gen) and gen.first_token_ns is not None:
        # continuous batching: between any two of the sequences' first/last token times, the
        # sequences whose own decode spans that segment are the ones generating
        edges = sorted({t for t in (*gen.seq_first_ns, *gen.seq_last_ns, gen.first_token_ns)
                        if t >= gen.first_token_ns})
        by_power = len(edges) >= 2 and power.covers(edges[0], edges[-1])
        steps = [(power.weight(a, b, by_power),
                  [j for j in range(len(lengths)) if gen.seq_first_ns[j] <= a and gen.seq_last_ns[j] >= b])
                 for a, b in zip(edges, edges[1:], strict=False)]
        return steps, "each sequence's first and last token times", by_power
    steps = [(1.0, [j for j, n in enumerate(lengths) if n > k]) for k in range(1, max(lengths, default=0))]
    return steps, "equal steps (no step times)", False


# energy_share_rule's codes (docs/measurement.md says what each means): how prefill and decode
# energy were split, what timed the decode steps, and what weighed each step
SHARE_RULE = "prefill=prompt_tokens; decode=per_step"
TIMES = {"the engine's step times": "step_times", "each sequence's first and last token times": "seq_times",
         "equal steps (no step times)": "no_times"}


def energy_shares(batches: Batches, reading: Any, energy_j: float | None, sent: Any) -> tuple[list[float | None], str]:
    """Each request's share of `energy_j` (by request index) and the rule, in words, as applied."""
    n = sum(len(m) for m in batches.members)
    notes: dict[str, None] = {}
    times_seen: dict[str, None] = {}
    weights_seen: dict[str, None] = {}
    raw = [0.0] * n
    parts = reading.parts if isinstance(reading, WindowReading) else {}
    pre = (parts.get("prefill") or {}).get("intervals_j") or []
    dec = (parts.get("decode") or {}).get("intervals_j") or []
    by_parts = (len(pre) == len(dec) == len(batches.gens) and all(e is not None for e in (*pre, *dec)))
    power = _Power.of(reading)
    for b, (gen, members) in enumerate(zip(batches.gens, batches.members, strict=True)):
        tokens = seq_input_tokens(gen, sent, members)
        if not by_parts:
            # no prefill/decode split: the batch's generate call weighed by power (or duration),
            # shared by each request's tokens in and out
            whole = power.weight(gen.start_ns, gen.end_ns, power.covers(gen.start_ns, gen.end_ns))
            out_tokens = list(gen.lengths) if len(gen.lengths) == len(members) else [None] * len(members)
            weights = [None if t is None or o is None else t + o for t, o in zip(tokens, out_tokens, strict=True)]
            _split(raw, members, whole, weights)
            notes["no_parts: batch=generate, split by input+output tokens"] = None
            continue
        if not _split(raw, members, pre[b], tokens):
            notes["prefill=equal (prompt tokens unknown)"] = None
        steps, timed, by_power = _decode_steps(gen, power)
        times_seen[TIMES[timed]] = None
        weights_seen["power" if by_power else "equal" if timed == "equal steps (no step times)" else "duration"] = None
        steps = [(w, active) for w, active in steps if active]
        total = sum(w for w, _ in steps)
        if not steps:
            _split(raw, members, dec[b], [None] * len(members))
            continue
        for w, active in steps:
            share = dec[b] * (w / total if total > 0 else 1 / len(steps)) / len(active)
            for j in active:
                raw[members[j]] += share
    if times_seen:  # over several batches, each code used (e.g. weight=power,duration)
        notes[f"times={','.join(times_seen)}; weight={','.join(weights_seen)}"] = None
    rule = "; ".join([SHARE_RULE, *notes])
    if energy_j is None:
        return [None] * n, rule
    whole = sum(raw)
    if whole <= 0:
        return [energy_j / n] * n if n else [], rule + "; no weights: equal"
    return [energy_j * r / whole for r in raw], rule


def _split(raw: list[float], members: list[int], energy: float, weights: Sequence[int | float | None]) -> bool:
    """Add `energy` to the members' shares by `weights` (equally where any is unknown); whether
    the weights were used."""
    known = all(w is not None for w in weights) and sum(w for w in weights if w is not None) > 0
    total = sum(w for w in weights if w is not None) if known else len(members)
    for j, i in enumerate(members):
        raw[i] += energy * (float(weights[j]) if known else 1.0) / total  # type: ignore[arg-type]
    return known


# -- text-to-image trials --------------------------------------------------------------------------
def prepare_images(spec: Any, options: Any, backend: Any, seed: int) -> Workload:
    """An image trial's prompts: `requests` prompts (None: one), the task's items cycling, one
    pipeline call each making batch_size images."""
    task = load_items(spec.task, spec.prompt_variant, options)
    if not task.items:
        raise TrialFailed(f"task {spec.task!r} ({spec.prompt_variant}) has no items to send")
    n = request_count(spec.requests, 1, len(task.items))
    requests = [task.items[i % len(task.items)] for i in range(n)]
    sent = build_prompts(backend, spec.backend, [it.prompt for it in requests], prompt_tokens=spec.prompt_tokens,
                         chat_template=spec.chat_template, seed=seed)
    return Workload(task, requests, sent, [[i] for i in range(n)], "static",
                    "one pipeline call per prompt, batch_size images from each")


class ImageRun:
    """The pipeline calls of an image trial (backends.base.ImageGeneration, one per prompt) as
    the row sees them: the window's parts, each sample's phase and denoising step."""

    PARTS = ("text_encode", "denoise", "vae_decode")

    def __init__(self, gens: list[Any]) -> None:
        self.gens = gens

    @property
    def images(self) -> int:
        return sum(len(g.images) for g in self.gens)

    @property
    def steps(self) -> int:
        """Denoising steps over the prompts (each step makes all of a prompt's images)."""
        return sum(len(g.step_ns) for g in self.gens)

    @property
    def steps_per_image(self) -> int | None:
        return len(self.gens[0].step_ns) if self.gens else None

    @property
    def width(self) -> int | None:
        return self.gens[0].width if self.gens else None

    @property
    def height(self) -> int | None:
        return self.gens[0].height if self.gens else None

    @property
    def guidance_scale(self) -> float | None:
        return self.gens[0].guidance_scale if self.gens else None

    @property
    def duration_s(self) -> float:
        return sum(g.duration_s for g in self.gens)

    @property
    def peak_memory_mb(self) -> float | None:
        known = [g.peak_memory_mb for g in self.gens if g.peak_memory_mb is not None]
        return max(known) if known else None

    def part_s(self, part: str) -> float | None:
        """A part's time summed over the prompts; None where a call did not time it."""
        spans = [g.parts().get(part) for g in self.gens]
        return None if not spans or None in spans else sum((b - a) for a, b in spans) / 1e9  # type: ignore[misc]

    def parts(self) -> dict[str, list[Interval]] | None:
        """The window's parts, one interval per prompt; a part some call did not time is left out."""
        out: dict[str, list[Interval]] = {}
        for part in self.PARTS:
            spans = [g.parts().get(part) for g in self.gens]
            if spans and None not in spans:
                out[part] = spans  # type: ignore[assignment]
        return out or None

    def phase_of(self, t_ns: int) -> str:
        """A sample's phase: the part of the call it falls in; generate for the rest of a call
        (latents, postprocessing), trial_edge outside every call."""
        for g in self.gens:
            if g.start_ns <= t_ns <= g.end_ns:
                for part, (a, b) in g.parts().items():
                    if a <= t_ns <= b:
                        return str(part)
                return "generate"
        return "trial_edge"

    def step_of(self, t_ns: int) -> int | None:
        """The denoising step running at `t_ns` (0-based), or None outside the loop."""
        for g in self.gens:
            for k, (a, b) in enumerate(g.step_intervals()):
                if a <= t_ns <= b:
                    return k
        return None

    def step_energies(self, reading: Any) -> list[list[float]] | None:
        """Per prompt, each step's share of its denoise energy: by the power series over the
        step, by duration where the series does not cover it; None without per-prompt energies."""
        parts = reading.parts if isinstance(reading, WindowReading) else {}
        per_prompt = (parts.get("denoise") or {}).get("intervals_j") or []
        if len(per_prompt) != len(self.gens) or any(e is None for e in per_prompt):
            return None
        power = _Power.of(reading)
        out = []
        for g, energy in zip(self.gens, per_prompt, strict=True):
            spans = g.step_intervals()
            window = g.denoise_ns
            by_power = window is not None and power.covers(*window)
            weights = [power.weight(a, b, by_power) for a, b in spans]
            total = sum(weights)
            out.append([energy * w / total if total > 0 else energy / len(spans) for w in weights])
        return out
