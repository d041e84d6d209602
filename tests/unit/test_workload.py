"""A trial's workload (energyray.trial.workload) through the TrialRunner, with an in-process fake
backend and a constant-power fake sampler: requests in batches under one window, one
`responses` row per request, each request's share of the energy (summing to energy_j, more
for a longer sequence), and accuracy null with its reason where it cannot be known.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from energyray.backends.base import Generation, LoadInfo, Prompts
from energyray.config import GenerationConfig, TasksConfig
from energyray.grid import expand
from energyray.samplers.base import WindowReading
from energyray.store import Store
from energyray.trial import TrialRunner, workload
from energyray.trial.windows import flatten_parts, merge_parts

POWER_W = 10.0
STEP_S = 0.002


class ConstantSampler:
    """The Sampler protocol at a constant POWER_W: a window's (and each part's) energy is that
    power times its duration; its samples are the window's two edges."""

    def __init__(self) -> None:
        self.open: dict[str, int] = {}
        self.labels: list[str] = []
        self.parts_asked: dict[str, Any] = {}

    def describe(self) -> dict[str, Any]:
        return {"sampler": "constant", "scope": "cpu"}

    def latest(self) -> dict[str, Any]:
        return {"t_ns": time.monotonic_ns(), "power_w": POWER_W, "temperature_c": 40.0}

    def begin(self, label: str) -> None:
        self.open[label] = time.monotonic_ns()
        self.labels.append(label)

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None, at_ns: int | None = None,
            from_ns: int | None = None) -> WindowReading:
        self.open.pop(label)
        t0, t1 = int(from_ns or 0), int(at_ns or time.monotonic_ns())
        self.parts_asked[label] = parts
        return WindowReading(
            label=label, source="counter", scope="cpu", start_ns=t0, end_ns=t1, energy_j=POWER_W * (t1 - t0) / 1e9,
            avg_power_w=POWER_W, peak_power_w=POWER_W,
            samples=[{"t_ns": t0, "power_w": POWER_W}, {"t_ns": t1, "power_w": POWER_W}],
            parts={n: {"energy_j": POWER_W * (b - a) / 1e9, "source": "counter_apportioned", "reason": None}
                   for n, (a, b) in (parts or {}).items()})


class FakeBackend:
    """Generates, for the k-th prompt it is sent (over all calls), `lengths[k % len]` tokens, one
    decode step every STEP_S, and answers `answers[k % len]`."""

    name = "fake"
    precisions = ("baseline",)

    def __init__(self, lengths: list[int] | None = None, answers: list[str] | None = None,
                 fail_on_call: int | None = None) -> None:
        self.lengths = lengths or [3]
        self.answers = answers or ["no idea"]
        self.fail_on_call = fail_on_call
        self.calls: list[list[Any]] = []
        self.sent = 0

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool) -> Generation:
        self.calls.append(list(prompts))
        if self.fail_on_call == len(self.calls):
            raise RuntimeError("batch blew up")
        ks = range(self.sent, self.sent + len(prompts))
        self.sent += len(prompts)
        lengths = [min(self.lengths[k % len(self.lengths)], max_new_tokens) for k in ks]
        start = time.monotonic_ns()
        steps = []
        for _ in range(max(lengths)):
            time.sleep(STEP_S)
            steps.append(time.monotonic_ns())
        return Generation(input_tokens=sum(len(str(p).split()) for p in prompts), output_tokens=sum(lengths),
                          start_ns=start, end_ns=time.monotonic_ns(), lengths=lengths, step_ns=steps,
                          new_ids=[self.answers[k % len(self.answers)] for k in ks])

    def decode(self, gen: Generation) -> list[str | None]:
        return list(gen.new_ids)


class TemplatedBackend(FakeBackend):
    """A backend with prompts(): a chat template of its own, and each prompt's token count."""

    def prompts(self, texts: list[str], *, prompt_tokens: int | None, chat_template: str, seed: int) -> Any:
        sent = [f"<user>{t}</user>" for t in texts]
        return Prompts(inputs=sent, texts=sent, input_tokens=[len(t.split()) + 2 for t in texts],
                             chat_template="applied", chat_template_source="the fake's own")


def spec(**over: Any):
    point = dict(model="m", backend="fake", weights="real", precision="baseline", batch_size=2, task="qa",
                 prompt_variant="default", hardware="cpu", max_new_tokens=8)
    point.update(over)
    (s,) = expand("unit", {}, point)
    return s


def runner(backend: FakeBackend, sampler: Any = None, tasks: TasksConfig | None = None, **gen: Any) -> TrialRunner:
    r = TrialRunner(sampler, GenerationConfig(**{"ignore_eos": False, "warmup_runs": 0, **gen}), "/nonexistent",
                    device="cpu", tasks=tasks or TasksConfig())
    r.backend, r.load_info = backend, LoadInfo(precision="fp32", device="cpu")
    return r


# -- batches, one window --------------------------------------------------------------------------
def test_five_requests_in_batches_of_two_run_three_batches_in_one_window():
    sampler, backend = ConstantSampler(), FakeBackend(lengths=[4, 2, 3])
    s = spec(requests=5)
    result = runner(backend, sampler).run(s, None, {})
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert [len(c) for c in backend.calls] == [2, 2, 1]
    assert row["requests"] == 5 and row["batches"] == 3 and row["requests_all"] is False
    assert [x for x in sampler.labels if x.startswith("trial:")] == [f"trial:{s.trial_id}"]  # one window
    parts = sampler.parts_asked[f"trial:{s.trial_id}"]
    assert {"prefill", "prefill#1", "prefill#2", "decode", "decode#1", "decode#2"} <= set(parts)
    assert row["prefill_j"] == pytest.approx(sum(POWER_W * (b - a) / 1e9 for n, (a, b) in parts.items()
                                                 if n.startswith("prefill")))
    assert row["output_tokens"] == 4 + 2 + 3 + 4 + 2
    assert row["decode_steps"] == 4 + 4 + 2  # each batch's longest sequence
    assert row["j_per_request"] == pytest.approx(row["energy_j"] / 5)
    assert row["task_items"] == len(workload.load_items("qa", "default", None).items) and row["task_source"] == "builtin"
    rows = result.responses
    assert [r["request_index"] for r in rows] == [0, 1, 2, 3, 4]
    assert [r["batch_index"] for r in rows] == [0, 0, 1, 1, 2]
    assert [r["item_id"] for r in rows] == [f"qa-0{i}" for i in range(1, 6)]
    assert [r["output_tokens"] for r in rows] == [4, 2, 3, 4, 2]
    assert all(r["trial_id"] == s.trial_id and r["prompt"].startswith("Question:") for r in rows)
    assert all(0 < r["ttft_s"] <= r["latency_s"] for r in rows)


class ConcurrentBackend(FakeBackend):
    """A backend that keeps `concurrency` requests in flight over all it is sent (a server, an
    API): one generate call per trial, each sequence timed on its own."""

    name = "concurrent"

    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.concurrency: list[int | None] = []

    def concurrent_feed(self, batch_size: int) -> str | None:
        return None

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool,
                 concurrency: int | None = None) -> Generation:
        self.concurrency.append(concurrency)
        gen = super().generate(prompts, max_new_tokens, ignore_eos)
        first = gen.step_ns[0]
        gen.seq_first_ns = [first] * len(prompts)
        gen.seq_last_ns = [gen.step_ns[n - 1] for n in gen.lengths]
        gen.step_ns = []
        return gen


def test_a_concurrent_backend_gets_every_request_in_one_call_with_batch_size_in_flight():
    backend = ConcurrentBackend(lengths=[4, 2, 3])
    result = runner(backend, ConstantSampler()).run(spec(requests=5, batch_size=2), None, {})
    row, rows = result.row, result.responses
    assert row["status"] == "ok", row["error"]
    assert [len(c) for c in backend.calls] == [5] and backend.concurrency == [2]
    assert row["batching"] == "concurrent" and row["batching_reason"] is None and row["batches"] == 1
    assert [r["batch_index"] for r in rows] == [0] * 5
    assert sum(r["energy_j"] for r in rows) == pytest.approx(row["energy_j"], rel=1e-9)
    assert "times=seq_times" in rows[0]["energy_share_rule"]


def test_a_static_backend_says_why_it_batches():
    row = runner(FakeBackend(), ConstantSampler()).run(spec(requests=3), None, {}).row
    assert row["batching"] == "static" and row["batches"] == 2
    assert row["batching_reason"] == "fake generates static batches"


def test_requests_cycle_through_the_items_and_all_means_each_once():
    tasks = TasksConfig(limit=3)
    result = runner(FakeBackend(), ConstantSampler(), tasks).run(spec(requests=7), None, {})
    assert [r["item_id"] for r in result.responses] == ["qa-01", "qa-02", "qa-03"] * 2 + ["qa-01"]
    assert result.row["task_items"] == 3
    every = runner(FakeBackend(), ConstantSampler(), tasks).run(spec(requests="all"), None, {})
    assert every.row["requests"] == 3 and every.row["requests_all"] is True and every.row["batches"] == 2


def test_warmup_runs_the_first_batchs_prompts():
    backend = FakeBackend()
    r = runner(backend, ConstantSampler(), warmup_runs=1, warmup_new_tokens=1)
    row = r.run(spec(requests=3), None, {}).row
    assert row["warmup_runs"] == 1
    assert backend.calls[0] == backend.calls[1] and len(backend.calls) == 1 + 2


def test_a_batch_that_fails_fails_the_trial_closes_the_window_and_keeps_no_responses():
    sampler = ConstantSampler()
    result = runner(FakeBackend(fail_on_call=2), sampler).run(spec(requests=5), None, {})
    assert result.row["status"] == "failed" and "batch blew up" in result.row["error"]
    assert sampler.open == {} and result.responses == []
    assert result.row["energy_j"] is None and result.row["failed_window_j"] is not None


# -- the energy shares -----------------------------------------------------------------------------
def test_shares_sum_to_the_trials_energy_and_a_long_sequence_gets_more():
    result = runner(FakeBackend(lengths=[8, 2]), ConstantSampler()).run(spec(requests=4), None, {})
    row, rows = result.row, result.responses
    assert row["status"] == "ok", row["error"]
    shares = [r["energy_j"] for r in rows]
    assert sum(shares) == pytest.approx(row["energy_j"], rel=1e-9)
    assert shares[0] > shares[1] and shares[2] > shares[3]  # 8 tokens against 2, in each batch
    assert all(r["energy_source"] == "counter" for r in rows)
    assert rows[0]["energy_share_rule"].startswith("prefill=prompt_tokens; decode=per_step;")
    assert "times=step_times; weight=power" in rows[0]["energy_share_rule"]
    assert [r["hit_max_new_tokens"] for r in rows] == [True, False, True, False]  # max_new_tokens 8
    assert row["hit_max_new_tokens"] == 2


def _gen(start: int, first: int, steps: list[int], lengths: list[int], end: int, **kw: Any) -> Generation:
    return Generation(input_tokens=None, output_tokens=sum(lengths), start_ns=start, end_ns=end, lengths=lengths,
                      step_ns=steps, **kw)


def _reading(parts: dict[str, list[float]], energy_j: float, t1: int) -> WindowReading:
    return WindowReading(label="t", source="counter", scope="gpu", start_ns=0, end_ns=t1, energy_j=energy_j,
                         samples=[{"t_ns": 0, "power_w": 100.0}, {"t_ns": t1, "power_w": 100.0}],
                         parts={n: {"energy_j": sum(v), "source": "counter", "intervals_j": v}
                                for n, v in parts.items()})


def test_the_share_rule_exactly():
    """One batch: prefill 6 J by prompt tokens 1:2, decode 8 J over 4 equal steps (steps 1-4 after
    the first token): the short sequence (2 tokens) is in step 1 only, the long one (5) in all
    four; the window's other 2 J spread by the same weights."""
    ms = 1_000_000
    gen = _gen(0, 10 * ms, [10 * ms, 20 * ms, 30 * ms, 40 * ms, 50 * ms], [5, 2], 50 * ms)
    sent = Prompts(inputs=["a", "b"], texts=["a", "b"], input_tokens=[10, 20], chat_template="none")
    batches = workload.Batches([gen], [[0, 1]])
    shares, rule = workload.energy_shares(batches, _reading({"prefill": [6.0], "decode": [8.0]}, 16.0, 60 * ms),
                                          16.0, sent)
    raw = [2.0 + 1.0 + 2.0 * 3, 4.0 + 1.0]  # prefill 2|4; step 1 (2 J) halved; steps 2-4 (6 J) the long one's
    assert shares == pytest.approx([16.0 * r / 14.0 for r in raw])
    assert sum(shares) == pytest.approx(16.0)
    assert "times=step_times" in rule
    none, _ = workload.energy_shares(batches, "no sampler", None, sent)
    assert none == [None, None]


def test_shares_from_sequence_times_and_from_equal_steps():
    ms = 1_000_000
    sent = Prompts(inputs=["a", "b"], texts=["a", "b"], input_tokens=[None, None], chat_template="none")
    reading = _reading({"prefill": [2.0], "decode": [8.0]}, 10.0, 50 * ms)
    # continuous batching: the short sequence ends at 20 ms, the long one at 50 ms
    vllm = _gen(0, 10 * ms, [], [2, 5], 50 * ms, seq_first_ns=[10 * ms, 10 * ms], seq_last_ns=[20 * ms, 50 * ms])
    shares, rule = workload.energy_shares(workload.Batches([vllm], [[0, 1]]), reading, 10.0, sent)
    assert shares == pytest.approx([1.0 + 8.0 / 4 / 2, 1.0 + 8.0 / 4 / 2 + 8.0 * 3 / 4])
    assert "times=seq_times" in rule and "prefill=equal" in rule
    bare = _gen(0, 10 * ms, [], [2, 5], 50 * ms)  # no times at all: first_token_ns unknown -> no parts
    shares, rule = workload.energy_shares(workload.Batches([bare], [[0, 1]]), "x", 10.0, sent)
    assert sum(shares) == pytest.approx(10.0) and shares[0] == shares[1]  # tokens unknown: equal
    assert "no_parts" in rule


def test_prefill_follows_the_prompts_token_counts_and_the_template_is_recorded():
    result = runner(TemplatedBackend(lengths=[1]), ConstantSampler()).run(spec(requests=2), None, {})
    row, rows = result.row, result.responses
    assert row["chat_template_applied"] is True and row["chat_template_source"] == "the fake's own"
    assert rows[0]["prompt"].startswith("<user>Question:")
    assert [r["input_tokens"] for r in rows] == [len(it.prompt.split()) + 2 for it in workload.load_items(
        "qa", "default", None).items[:2]]
    # one token each: no decode step, so the shares go by prompt tokens (but for the moment between
    # the last step and the end of generate, shared equally; test_the_share_rule_exactly is exact)
    a, b = rows[0], rows[1]
    assert a["input_tokens"] < b["input_tokens"] and a["energy_j"] < b["energy_j"]


def test_a_backend_without_prompts_cannot_shape_prompt_length_or_force_a_template():
    r = runner(FakeBackend(), ConstantSampler())
    row = r.run(spec(prompt_tokens=128), None, {}).row
    assert row["status"] == "failed" and "prompt_tokens=128" in row["error"]
    row = r.run(spec(chat_template="on"), None, {}).row
    assert row["status"] == "failed" and "chat_template=on" in row["error"]
    row = r.run(spec(), None, {}).row
    assert row["chat_template_applied"] is False and "applies no chat template" in row["chat_template_reason"]


# -- accuracy and nulls -----------------------------------------------------------------------------
def test_accuracy_is_over_every_request_and_j_per_correct_follows():
    answers = ["Paris", "six", "36", "Mars", "no"]  # the first five QA items: 3 right
    result = runner(FakeBackend(answers=answers), ConstantSampler()).run(spec(requests=5), None, {})
    row, rows = result.row, result.responses
    assert row["scored_requests"] == 5 and row["correct_requests"] == 3 and row["accuracy"] == pytest.approx(0.6)
    assert row["accuracy_reason"] is None
    assert row["j_per_correct"] == pytest.approx(row["energy_j"] / 3)
    assert [r["correct"] for r in rows] == [True, False, True, True, False]
    assert all(r["scorer"] == "exact_match" and r["gold"] for r in rows)
    assert row["judge_reason"].startswith("off")


def test_random_weights_never_report_accuracy():
    result = runner(FakeBackend(answers=["Paris"]), ConstantSampler()).run(spec(weights="dummy"), None, {})
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert row["accuracy"] is None and row["accuracy_reason"] == "random weights: the text is noise"
    assert row["scored_requests"] == 0 and row["correct_requests"] is None and row["j_per_correct"] is None
    assert all(r["correct"] is None and r["score"] is None for r in result.responses)


def test_a_task_without_gold_answers_has_no_accuracy():
    row = runner(FakeBackend(), ConstantSampler()).run(spec(task="longform"), None, {}).row
    assert row["accuracy"] is None and row["accuracy_reason"] == "the task has no gold answers"


def test_no_energy_gives_null_shares_with_the_source_saying_so():
    result = runner(FakeBackend(), None).run(spec(requests=3), None, {})
    assert result.row["status"] == "ok" and result.row["energy_j"] is None
    assert all(r["energy_j"] is None and r["energy_source"] == "not_measurable" for r in result.responses)


# -- parts as lists of intervals, and the store ------------------------------------------------------
def test_parts_as_lists_of_intervals_are_asked_one_by_one_and_summed():
    flat, names = flatten_parts({"prefill": (0, 1), "decode": [(1, 5), (6, 9)], "steady": []})
    assert flat == {"prefill": (0, 1), "decode": (1, 5), "decode#1": (6, 9)}
    reading = WindowReading(label="t", source="counter", scope="gpu", start_ns=0, end_ns=10, energy_j=10.0,
                            parts={n: {"energy_j": float(b - a), "source": "counter_apportioned", "reason": None}
                                   for n, (a, b) in flat.items()})
    merged = merge_parts(reading, names).parts
    assert merged["decode"]["energy_j"] == 7.0 and merged["decode"]["intervals_j"] == [4.0, 3.0]
    assert merged["prefill"] == {"energy_j": 1.0, "source": "counter_apportioned", "reason": None,
                                 "intervals_j": [1.0]}
    assert "steady" not in merged


def test_the_store_keeps_responses_and_a_failed_rerun_drops_the_old_ones(tmp_path):
    ok = runner(FakeBackend(), ConstantSampler()).run(spec(requests=3), None, {})
    store = Store(tmp_path / "store")
    assert store.read("responses").empty  # no responses folder yet
    store.write_trial(ok.row, ok.samples, ok.responses, "unit", "cpu")
    got = store.read("responses")
    assert len(got) == 3 and set(got["trial_id"]) == {ok.row["trial_id"]} and set(got["sweep"]) == {"unit"}
    assert store.done_ids("unit") == {ok.row["trial_id"]}
    failed = runner(FakeBackend(fail_on_call=1), ConstantSampler()).run(spec(requests=3), None, {})
    store.write_trial(failed.row, failed.samples, failed.responses, "unit", "cpu")
    assert store.read("responses").empty and store.read("trials")["status"].tolist() == ["failed"]


# -- the judge ---------------------------------------------------------------------------------------
@pytest.mark.extra("api")
def test_an_enabled_judge_scores_the_responses_and_its_cost_stays_apart():
    """The judge (tasks/judge.py, against the shipped fake OpenAI server) gives each request its
    verdict, which is then its score; its tokens and cost are in the judge_* columns, never in
    energy_j."""
    from energyray.testing.fake_openai import FakeOpenAI

    tasks = TasksConfig()
    with FakeOpenAI() as fake:
        tasks.judge.enabled, tasks.judge.base_url = True, fake.base_url
        backend = FakeBackend(answers=["Answer: Rome", "Answer: 8", "Answer: 36"])
        result = runner(backend, ConstantSampler(), tasks).run(spec(requests=3), None, {})
    row, rows = result.row, result.responses
    assert row["status"] == "ok", row["error"]
    assert len(fake.requests) == 3 and row["judge_requests"] == 3 and row["judge_model"] == tasks.judge.model
    assert [r["judge_verdict"] for r in rows] == [False, True, True]
    assert [r["correct"] for r in rows] == [False, True, True] and {r["scorer"] for r in rows} == {"judge"}
    assert row["correct_requests"] == 2 and row["accuracy"] == pytest.approx(2 / 3)
    assert all(r["judge_input_tokens"] > 0 for r in rows) and row["judge_input_tokens"] == sum(
        r["judge_input_tokens"] for r in rows)
    assert row["energy_j"] == pytest.approx(sum(r["energy_j"] for r in rows))  # the judge's wait is not in it


def test_an_enabled_judge_is_never_sent_random_weights_text():
    from energyray.testing.fake_openai import FakeOpenAI

    tasks = TasksConfig()
    with FakeOpenAI() as fake:
        tasks.judge.enabled, tasks.judge.base_url = True, fake.base_url
        result = runner(FakeBackend(answers=["Answer: Paris"]), ConstantSampler(), tasks).run(
            spec(requests=2, weights="dummy"), None, {})
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert fake.requests == [] and row["judge_requests"] is None
    assert row["judge_reason"].startswith("not sent: random weights") and row["accuracy"] is None
    assert all(r.get("judge_verdict") is None and r["correct"] is None for r in result.responses)
