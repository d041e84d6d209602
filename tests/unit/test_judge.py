"""The LLM judge (energyray.tasks.judge) over real HTTP against the shipped fake OpenAI server.

The fake answers judge-shaped prompts deterministically (yes iff the response's final answer
equals the correct answer shown, normalised) and counts usage as words, so verdicts, tokens
and cost are asserted exactly. Covered: right, wrong and unparseable verdicts; items without
gold (not sent); token and cost totals from the price table, or null with the reason; failing,
unreachable and hanging servers (per-item errors, never a raise); retries; check()'s messages.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from energyray import prices
from energyray.config import JudgeConfig
from energyray.tasks.base import Item
from energyray.tasks.judge import FAILED, NO_GOLD, check, judge, judge_prompt, off_row, parse_reply
from energyray.testing.fake_openai import FakeOpenAI, Reply, judge_answer, tokens_of

KEY = "sk-test-ThisIsNotARealKey0123456789abcdef"
PARIS = Item("capital", "What is the capital of France?", gold="Paris", category="Other", answer_type="exact_match")
CHOICE = Item("gas", "Which gas do plants take in?\nA. Oxygen\nB. Carbon dioxide", gold="B",
              category="Biology/Medicine", answer_type="multiple_choice", choices=("Oxygen", "Carbon dioxide"))
NUMBER = Item("sum", "What is 19 + 23?", gold="42", answer_type="numeric")
NO_ANSWER = Item("essay", "Write about the sea.")


def cfg_for(fake: FakeOpenAI | None = None, **kw) -> JudgeConfig:
    base = {"enabled": True, "base_url": fake.base_url if fake else None, "timeout_s": 10.0,
            "backoff_s": 0.01, "backoff_max_s": 0.05}
    return JudgeConfig(**{**base, **kw})


def expected_tokens(item: Item, response: str) -> tuple[int, int]:
    prompt = judge_prompt(item, response)
    return len(tokens_of(prompt)), len(tokens_of(judge_answer(prompt) or ""))


@pytest.mark.extra("api")
def test_verdicts_tokens_and_cost_against_the_fake():
    pairs = [(PARIS, "Explanation: it is the seat of government.\nAnswer: Paris.\nConfidence: 90%"),
             (PARIS, "Answer: Lyon"), (CHOICE, "Plants absorb it in photosynthesis.\nAnswer: B"),
             (NUMBER, "19 + 23 = 42\nAnswer: 42"), (NO_ANSWER, "The sea is wide.")]
    with FakeOpenAI() as fake:
        report = judge(pairs, cfg_for(fake, concurrency=2))
    assert [r.verdict for r in report.results] == [True, False, True, True, None]
    assert [r.item_id for r in report.results] == ["capital", "capital", "gas", "sum", "essay"]
    assert [r.extracted for r in report.results[:4]] == ["Paris.", "Lyon", "B", "42"]
    assert report.results[4].reason == NO_GOLD and not report.results[4].requested
    # four requests, not five (no gold: not sent), two in flight at most, the config's fields sent
    assert report.requests == 4 and len(fake.requests) == 4 and fake.max_in_flight <= 2
    body = fake.requests[0]["body"]
    assert body["model"] == "gpt-4.1-mini" and body["max_completion_tokens"] == 256 and body["temperature"] == 0.0
    assert not body.get("stream")
    price = prices.lookup("openai", "gpt-4.1-mini")
    assert price is not None
    for (item, response), r in zip(pairs[:4], report.results[:4], strict=True):
        n_in, n_out = expected_tokens(item, response)
        assert (r.input_tokens, r.output_tokens) == (n_in, n_out)
        assert r.cost_usd == pytest.approx((n_in * price.input_usd_per_1m + n_out * price.output_usd_per_1m) / 1e6)
        assert r.error is None and r.reason is None and r.reply and r.reply.endswith(("correct: yes", "correct: no"))
    assert report.input_tokens == sum(r.input_tokens or 0 for r in report.results)
    assert report.output_tokens == sum(r.output_tokens or 0 for r in report.results)
    assert report.cost_usd == pytest.approx(sum(r.cost_usd or 0 for r in report.results)) and report.cost_usd > 0
    assert report.price_table_date == price.as_of and report.reason is None and report.failed_requests == 0
    assert report.row() == {"judge_requests": 4, "judge_input_tokens": report.input_tokens,
                            "judge_output_tokens": report.output_tokens, "judge_cost_usd": report.cost_usd,
                            "judge_model": "gpt-4.1-mini", "judge_reason": None}
    assert report.results[1].row() == {"judge_verdict": False, "judge_input_tokens": report.results[1].input_tokens,
                                       "judge_output_tokens": report.results[1].output_tokens,
                                       "judge_cost_usd": report.results[1].cost_usd, "judge_error": None}
    s = report.results[0].score()
    assert (s.correct, s.value, s.scorer, s.extracted) == (True, 1.0, "judge", "Paris.")
    assert off_row()["judge_reason"] == "off (tasks.judge.enabled=false)" and off_row()["judge_requests"] is None


@pytest.mark.extra("api")
@pytest.mark.parametrize("reply, reason", [
    ("The response looks right to me.", "does not end with 'correct: yes' or 'correct: no'"),
    ("extracted_final_answer: Paris\ncorrect: maybe", "does not end with"),
    ("correct: yes\nreasoning: on second thought\ncorrect: no", "more than one 'correct:' line"),
    ("correct: yes\nreasoning: it matches", "does not end with"),
    ("", "the judge's reply is empty"),
])
def test_an_unparseable_reply_gives_no_verdict_but_its_tokens_and_cost(reply, reason):
    with FakeOpenAI(default=Reply(text=reply)) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake))
    r = report.results[0]
    assert r.verdict is None and reason in (r.reason or "") and r.error is None
    assert r.input_tokens == len(tokens_of(judge_prompt(PARIS, "Answer: Paris"))) and r.cost_usd is not None
    assert r.row()["judge_error"] == r.reason
    assert report.input_tokens == r.input_tokens and report.cost_usd == r.cost_usd
    assert report.reason == "1 judge replies gave no verdict"


@pytest.mark.extra("api")
def test_a_reply_cut_at_max_output_tokens_says_so():
    with FakeOpenAI() as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, max_output_tokens=3))
    r = report.results[0]
    assert fake.requests[0]["body"]["max_completion_tokens"] == 3
    assert r.verdict is None and r.output_tokens == 3
    assert r.reason is not None and "cut at tasks.judge.max_output_tokens=3" in r.reason


def test_parse_reply_is_strict_but_tolerates_case_period_and_emphasis():
    assert parse_reply("extracted_final_answer: 42\nreasoning: same.\ncorrect: yes") == (True, "42", None)
    assert parse_reply("**extracted_final_answer:** B\n**reasoning:** no.\n**correct:** No.\n\n") == (False, "B", None)
    assert parse_reply("Correct: YES")[0] is True
    for text in ("correct: yes, mostly", "I would say correct: yes", "correct:", "yes", "correct - yes"):
        verdict, _, reason = parse_reply(text)
        assert verdict is None and reason, text


@pytest.mark.extra("api")
def test_a_failing_server_gives_per_item_errors_never_a_raise():
    pairs = [(PARIS, "Answer: Paris"), (NUMBER, "Answer: 42"), (NO_ANSWER, "waves")]
    with FakeOpenAI(default=Reply(status=500)) as fake:
        report = judge(pairs, cfg_for(fake, max_retries=1))
    assert len(fake.requests) == 4  # two requests, each tried twice
    for r in report.results[:2]:
        assert r.verdict is None and r.reason == FAILED and r.retries == 1
        assert r.error is not None and "500" in r.error and "after 1 retries" in r.error
        assert r.input_tokens is None and r.cost_usd is None and r.row()["judge_error"] == r.error
    assert report.results[2].reason == NO_GOLD
    assert (report.requests, report.failed_requests, report.retries) == (2, 2, 2)
    assert report.input_tokens is None and report.output_tokens is None and report.cost_usd is None
    assert report.reason is not None and "2 of 2 judge requests failed" in report.reason
    assert "tokens and cost are unknown" in report.reason


@pytest.mark.extra("api")
def test_one_failed_request_leaves_the_others_judged_and_counted():
    pairs = [(PARIS, "Answer: Paris"), (NUMBER, "Answer: 41"), (CHOICE, "Answer: B")]
    with FakeOpenAI([Reply(status=400, detail="bad request")]) as fake:  # a 4xx: not retried
        report = judge(pairs, cfg_for(fake, concurrency=1))
    assert len(fake.requests) == 3
    first, *rest = report.results
    assert first.verdict is None and first.error is not None and "bad request" in first.error and first.retries == 0
    assert [r.verdict for r in rest] == [False, True]
    assert report.input_tokens == sum(expected_tokens(i, t)[0] for i, t in pairs[1:])
    assert report.cost_usd is not None and report.cost_usd > 0
    assert report.reason is not None and "1 of 3 judge requests failed" in report.reason
    assert "the totals cover the answered ones only" in report.reason


@pytest.mark.extra("api")
def test_a_rate_limit_is_retried_after_retry_after():
    with FakeOpenAI([Reply(status=429, retry_after_s=0.05)]) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake))
    r = report.results[0]
    assert len(fake.requests) == 2 and r.retries == 1 and r.verdict is True and r.error is None
    assert report.retries == 1 and report.reason is None


@pytest.mark.extra("api")
def test_unreachable_and_hanging_servers_are_errors():
    report = judge([(PARIS, "Answer: Paris")], cfg_for(None, base_url="http://127.0.0.1:1/v1", max_retries=0))
    assert report.results[0].verdict is None and "Connection" in (report.results[0].error or "")
    with FakeOpenAI(default=Reply(hang_s=30)) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, timeout_s=0.5, max_retries=0))
    assert report.results[0].verdict is None and "Timeout" in (report.results[0].error or "")


@pytest.mark.extra("api")
def test_no_usage_or_no_price_gives_null_totals_with_the_reason(tmp_path):
    with FakeOpenAI(default=Reply(usage=False)) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake))
    assert report.results[0].verdict is True and report.results[0].input_tokens is None
    assert report.input_tokens is None and report.cost_usd is None
    assert "reported no usage for 1 of 1" in (report.reason or "")
    with FakeOpenAI() as fake:  # a self-hosted judge: tokens known, no price
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, model="local-judge"))
    r = report.results[0]
    assert r.verdict is True and r.input_tokens and r.cost_usd is None
    assert r.cost_reason is not None and "no price for 'local-judge'" in r.cost_reason
    assert report.input_tokens == r.input_tokens and report.cost_usd is None and report.price_table_date is None
    assert "cost unknown: no price for 'local-judge'" in (report.reason or "")
    table = tmp_path / "judge_prices.yaml"
    table.write_text("models:\n  local-judge:\n    input_usd_per_1m: 1.0\n    output_usd_per_1m: 2.0\n"
                     "    as_of: '2026-01-01'\n")
    with FakeOpenAI() as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, model="local-judge", price_table=str(table)))
    n_in, n_out = expected_tokens(PARIS, "Answer: Paris")
    assert report.cost_usd == pytest.approx((n_in * 1.0 + n_out * 2.0) / 1e6)
    assert report.price_table_date == "2026-01-01" and report.reason is None


@pytest.mark.extra("api")
def test_the_key_is_sent_and_never_in_an_error(monkeypatch):
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    with FakeOpenAI(api_key=KEY) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, api_key_env="JUDGE_TEST_KEY"))
    assert report.results[0].verdict is True
    assert fake.requests[0]["headers"]["authorization"] == f"Bearer {KEY}"
    with FakeOpenAI(default=Reply(status=401, echo_auth=True)) as fake:
        report = judge([(PARIS, "Answer: Paris")], cfg_for(fake, api_key_env="JUDGE_TEST_KEY"))
    error = report.results[0].error or ""
    assert "401" in error and KEY not in error and KEY not in (report.reason or "")


@pytest.mark.extra("api")
def test_check_names_the_problem_before_a_sweep(monkeypatch, tmp_path):
    monkeypatch.delenv("JUDGE_TEST_KEY", raising=False)
    assert check(JudgeConfig()) is None  # off: nothing to check
    at_openai = JudgeConfig(enabled=True, api_key_env="JUDGE_TEST_KEY")
    problem = check(at_openai)
    assert problem is not None and "JUDGE_TEST_KEY" in problem and "export JUDGE_TEST_KEY=" in problem
    assert "\n" not in problem
    # judge() itself, run anyway: every item says so, and nothing is sent
    report = judge([(PARIS, "Answer: Paris")], at_openai)
    assert report.results[0].verdict is None and report.results[0].error == problem
    monkeypatch.setenv("JUDGE_TEST_KEY", KEY)
    assert check(at_openai) is None
    monkeypatch.delenv("JUDGE_TEST_KEY")
    assert check(replace(at_openai, base_url="http://127.0.0.1:8000/v1")) is None  # a local server needs no key
    assert check(replace(at_openai, base_url="http://x/v1", model="no-such-priced-model")) is None  # price: not an error
    problem = check(replace(at_openai, base_url="http://x/v1", price_table=str(tmp_path / "missing.yaml")))
    assert problem is not None and "tasks.judge.price_table" in problem and "missing.yaml" in problem
    problem = check(replace(at_openai, base_url="http://x/v1", model=" "))
    assert problem is not None and "tasks.judge.model" in problem
