"""An optional LLM judge: another model, behind an OpenAI-compatible API, decides whether a
response's final answer matches the gold answer (HLE grades its answers this way).

`judge(pairs, cfg)` sends one request per (item, response) pair that has a gold answer, at most
`cfg.concurrency` at once, each retried as backend=openai's requests are (429, 5xx, timeouts,
connection errors; `cfg.max_retries`, `cfg.backoff_s`). The prompt (`judge_prompt`, written for
this project in the spirit of HLE's grader) shows the question, the response and the correct
answer, and asks for three lines: the response's extracted final answer, a short reasoning, and
`correct: yes` or `correct: no`. The reply is parsed strictly: its last non-empty line must be
that verdict (case, a trailing period and markdown emphasis are tolerated); anything else gives
verdict None with the reason, never a guess. A request that still fails gives verdict None and
its `error`; judge() itself never raises for a failed request.

Tokens come from the judge server's usage report; cost from the price table
(`cfg.price_table`, else conf/prices/openai.yaml) by `cfg.model`: null with a reason where the
model has no price there (a self-hosted judge) or the server reported no usage.

How the runner records it (the judge runs in the response phase, after the trial's window, so
none of its time, tokens or cost is in the trial's energy, tokens or cost columns):
- per response row (`responses` table): `JudgeResult.row()` -> judge_verdict, judge_input_tokens,
  judge_output_tokens, judge_cost_usd, judge_error (the failure, else why the verdict is null);
- per trial row: `JudgeReport.row()` -> judge_requests, judge_input_tokens, judge_output_tokens,
  judge_cost_usd, judge_model, judge_reason; `off_row()` when tasks.judge.enabled is false.
- `JudgeResult.score()` is the verdict as a Score (scorer "judge") where the runner lets the
  judge decide `correct`; the task's own scorer still runs beside it.

`check(cfg)` is the planner's: a one-line problem to refuse before a sweep starts (no API key for
OpenAI's endpoint, no openai package, a price table that is not there), else None.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass, field
from typing import Any

from energyray import prices
from energyray.config import JudgeConfig
from energyray.errors import ConfigError
from energyray.tasks.base import Item, Score

PROVIDER = "openai"  # the price table's provider (conf/prices/openai.yaml) where cfg.price_table is unset
NO_GOLD = "the item has no gold answer: not judged"
FAILED = "the judge request failed"

# Written for this project, after the shape of HLE's judge: extract, compare, a fixed verdict line.
JUDGE_PROMPT = """\
You are grading one response to an exam question. Decide only whether the final answer the \
response commits to matches the correct answer given below. Do not solve the question yourself \
and do not grade the reasoning that led to the answer.

[question]:
{question}

[response]:
{response}

[correct_answer]:
{correct_answer}

Reply with exactly these three lines and nothing else:
extracted_final_answer: <the final answer the response commits to, copied from it; None if it \
gives no final answer>
reasoning: <one or two sentences: do the extracted_final_answer and the correct_answer match?>
correct: <yes or no>

They match when they are the same answer: the same option, the same number (a small rounding \
difference is fine for numerical answers), or an equivalent expression or wording. They do not \
match when the response gives a different, incomplete, hedged or vague answer, more than one \
answer, or none.
"""

_VERDICT = re.compile(r"correct\s*:\s*(yes|no)\s*\.?", re.I)
_EXTRACTED = re.compile(r"extracted_final_answer\s*:\s*(.*)", re.I)


def judge_prompt(item: Item, response: str) -> str:
    """The judge's whole prompt for one response (sent as the only user message)."""
    return JUDGE_PROMPT.format(question=item.prompt.strip(), response=(response or "").strip(),
                               correct_answer=(item.gold or "").strip())


def _plain(line: str) -> str:
    return line.replace("*", "").replace("`", "").strip()


def parse_reply(text: str) -> tuple[bool | None, str | None, str | None]:
    """(verdict, extracted final answer, reason the verdict is None) from the judge's reply."""
    lines = [_plain(x) for x in (text or "").splitlines()]
    lines = [x for x in lines if x]
    extracted = next((m.group(1).strip() for x in lines if (m := _EXTRACTED.fullmatch(x))), None)
    if not lines:
        return None, extracted, "the judge's reply is empty"
    verdicts = [m.group(1).lower() for x in lines if (m := _VERDICT.fullmatch(x))]
    if len(verdicts) > 1:
        return None, extracted, "the judge's reply has more than one 'correct:' line"
    last = _VERDICT.fullmatch(lines[-1])
    if last is None:
        return None, extracted, "the judge's reply does not end with 'correct: yes' or 'correct: no'"
    return last.group(1).lower() == "yes", extracted, None


@dataclass
class JudgeResult:
    """The judge on one response. `verdict` None: not judged, failed or unparseable (`reason`)."""

    item_id: str
    verdict: bool | None
    extracted: str | None = None  # the final answer the judge read in the response
    reply: str | None = None  # the judge's whole reply
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    cost_reason: str | None = None
    retries: int = 0
    error: str | None = None  # the request failed after its retries
    reason: str | None = None  # why verdict is None
    requested: bool = True  # False: no request was sent (no gold answer)

    def row(self) -> dict[str, Any]:
        """The responses table's judge_* fields."""
        return {"judge_verdict": self.verdict, "judge_input_tokens": self.input_tokens,
                "judge_output_tokens": self.output_tokens, "judge_cost_usd": self.cost_usd,
                "judge_error": self.error or self.reason}

    def score(self) -> Score:
        value = None if self.verdict is None else float(self.verdict)
        return Score(correct=self.verdict, value=value, scorer="judge", extracted=self.extracted)


@dataclass
class JudgeReport:
    """The judge on a trial's responses: one result per pair, in order, and the totals."""

    model: str
    base_url: str | None
    results: list[JudgeResult] = field(default_factory=list)
    requests: int = 0  # requests attempted (pairs with a gold answer)
    failed_requests: int = 0
    retries: int = 0
    input_tokens: int | None = None  # over the answered requests
    output_tokens: int | None = None
    cost_usd: float | None = None
    price_table_date: str | None = None
    reason: str | None = None  # why a total is null, or what the totals leave out

    def row(self) -> dict[str, Any]:
        """The trials table's judge_* fields."""
        return {"judge_requests": self.requests, "judge_input_tokens": self.input_tokens,
                "judge_output_tokens": self.output_tokens, "judge_cost_usd": self.cost_usd,
                "judge_model": self.model, "judge_reason": self.reason}


def off_row() -> dict[str, Any]:
    """The trials table's judge_* fields when the judge is off."""
    return {"judge_requests": None, "judge_input_tokens": None, "judge_output_tokens": None, "judge_cost_usd": None,
            "judge_model": None, "judge_reason": "off (tasks.judge.enabled=false)"}


def _key_problem(cfg: JudgeConfig) -> str | None:
    if cfg.base_url is None and not os.environ.get(cfg.api_key_env):
        return (f"The LLM judge ({cfg.model} at OpenAI) needs an API key in the environment variable "
                f"{cfg.api_key_env}: `export {cfg.api_key_env}=...` before running (tasks.judge.api_key_env names "
                "another variable; tasks.judge.base_url points the judge at a compatible server).")
    return None


def _price(cfg: JudgeConfig) -> tuple[prices.Price | None, str | None]:
    try:
        price = prices.lookup(PROVIDER, cfg.model, cfg.price_table)
    except ConfigError as e:
        return None, str(e)
    if price is None:
        return None, f"no price for {cfg.model!r} in {prices.table_path(PROVIDER, cfg.price_table)}"
    return price, None


def check(cfg: JudgeConfig) -> str | None:
    """What stops the judge from running, in one line, or None (also when it is off). An
    unknown price is not a problem: the cost is null with its reason."""
    if not cfg.enabled:
        return None
    if importlib.util.find_spec("openai") is None:
        return "The LLM judge (tasks.judge.enabled) needs the openai package: pip install 'energyray[api]'."
    if not str(cfg.model or "").strip():
        return "tasks.judge.model is empty: name the judge model at the endpoint (e.g. gpt-4.1-mini)."
    problem = _key_problem(cfg)
    if problem:
        return problem
    if cfg.price_table is not None:
        try:
            prices.load_table(prices.table_path(PROVIDER, cfg.price_table))
        except ConfigError as e:
            return f"tasks.judge.price_table: {e}"
    return None


def judge(pairs: list[tuple[Item, str]], cfg: JudgeConfig) -> JudgeReport:
    """Judge each (item, response); pairs without a gold answer are not sent. Never raises for
    a request's failure (see the module doc)."""
    from energyray.backends.openai_api import PLACEHOLDER_KEY, chat_requests

    report = JudgeReport(model=cfg.model, base_url=cfg.base_url)
    price, price_reason = _price(cfg)
    report.price_table_date = price.as_of if price else None
    results: list[JudgeResult | None] = [
        None if item.gold is not None and str(item.gold).strip() else
        JudgeResult(item.id, None, reason=NO_GOLD, requested=False) for item, _ in pairs]
    todo = [i for i, r in enumerate(results) if r is None]
    key_problem = _key_problem(cfg)
    if key_problem:
        answers = [{"error": key_problem, "retries": 0} for _ in todo]
    else:
        answers = chat_requests(
            [judge_prompt(*pairs[i]) for i in todo], model=cfg.model, base_url=cfg.base_url,
            api_key=os.environ.get(cfg.api_key_env) or PLACEHOLDER_KEY, max_output_tokens=cfg.max_output_tokens,
            concurrency=cfg.concurrency, timeout_s=cfg.timeout_s, max_retries=cfg.max_retries,
            backoff_s=cfg.backoff_s, backoff_max_s=cfg.backoff_max_s, temperature=cfg.temperature)
    for i, a in zip(todo, answers, strict=True):
        results[i] = _result(pairs[i][0].id, a, price, price_reason, cfg)
    assert all(r is not None for r in results)
    report.results = [r for r in results if r is not None]
    _totals(report, price_reason)
    return report


def _result(item_id: str, a: dict[str, Any], price: prices.Price | None, price_reason: str | None,
            cfg: JudgeConfig) -> JudgeResult:
    if a.get("error"):
        return JudgeResult(item_id, None, retries=int(a.get("retries") or 0), error=a["error"], reason=FAILED,
                           cost_reason="the request failed: its cost, if billed, is unknown")
    text = a.get("text") or ""
    verdict, extracted, reason = parse_reply(text)
    if reason and a.get("finish_reason") == "length":
        reason += f" (cut at tasks.judge.max_output_tokens={cfg.max_output_tokens})"
    c = prices.cost(price, a.get("input_tokens"), a.get("output_tokens"), a.get("cached_input_tokens"))
    cost_reason = price_reason if price is None else c["cost_reason"]
    return JudgeResult(item_id, verdict, extracted=extracted, reply=text, input_tokens=a.get("input_tokens"),
                       output_tokens=a.get("output_tokens"), cost_usd=c["cost_usd"], cost_reason=cost_reason,
                       retries=int(a.get("retries") or 0), reason=reason)


def _totals(report: JudgeReport, price_reason: str | None) -> None:
    sent = [r for r in report.results if r.requested]
    answered = [r for r in sent if r.error is None]
    report.requests = len(sent)
    report.failed_requests = len(sent) - len(answered)
    report.retries = sum(r.retries for r in sent)
    notes: list[str] = []
    if report.failed_requests:
        first = next(r.error for r in sent if r.error)
        notes.append(f"{report.failed_requests} of {len(sent)} judge requests failed (first: {first}); "
                     + ("the totals cover the answered ones only" if answered else "their tokens and cost are unknown"))
    no_usage = sum(r.input_tokens is None or r.output_tokens is None for r in answered)
    if no_usage:
        notes.append(f"the judge server reported no usage for {no_usage} of {len(answered)} answered requests")
    if (sent and not answered) or no_usage:
        _finish(report, notes)
        return
    report.input_tokens = sum(r.input_tokens or 0 for r in answered)
    report.output_tokens = sum(r.output_tokens or 0 for r in answered)
    if price_reason and answered:
        notes.append(f"cost unknown: {price_reason}")
    else:
        report.cost_usd = sum(r.cost_usd or 0.0 for r in answered)
    _finish(report, notes)


def _finish(report: JudgeReport, notes: list[str]) -> None:
    unparsed = sum(r.requested and r.error is None and r.verdict is None for r in report.results)
    if unparsed:
        notes.append(f"{unparsed} judge replies gave no verdict")
    report.reason = "; ".join(notes) or None
