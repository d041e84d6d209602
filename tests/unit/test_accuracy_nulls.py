"""Random weights never report accuracy: weights=dummy, and a catalogue model energyray builds
as random init (ModelConfig.builtin, e.g. tiny-llama) even with weights=real. Their accuracy is
null with the reason, never 0, and their responses are not scored; a trained model's are.
Through the TrialRunner with an in-process fake backend that answers "Paris" (right for qa-01).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from energyray.backends.base import Generation, LoadInfo
from energyray.config import GenerationConfig, ModelConfig, TasksConfig
from energyray.grid import expand
from energyray.tasks.base import Item, Score
from energyray.trial import TrialRunner, record

TINY = ModelConfig(name="tiny-llama", builtin="tiny-llama")
TRAINED = ModelConfig(name="trained", path="/nonexistent/checkpoint")
PARIS = [Item(id="qa-01", prompt="Question: What is the capital of France?\nAnswer:", gold="Paris")]
RIGHT = [Score(value=1.0, correct=True, scorer="exact_match")]


class ParisBackend:
    """Every request answers "Paris" in two tokens."""

    name = "fake"
    precisions = ("baseline",)

    def generate(self, prompts: list[Any], max_new_tokens: int, ignore_eos: bool) -> Generation:
        start = time.monotonic_ns()
        steps = [start + 1_000, start + 2_000]
        return Generation(input_tokens=len(prompts) * 8, output_tokens=2 * len(prompts), start_ns=start,
                          end_ns=start + 3_000, lengths=[2] * len(prompts), step_ns=steps,
                          new_ids=["Paris"] * len(prompts))

    def decode(self, gen: Generation) -> list[str | None]:
        return list(gen.new_ids)


def spec(**over: Any):
    point = dict(model="tiny-llama", backend="fake", weights="real", precision="baseline", batch_size=1, task="qa",
                 prompt_variant="default", hardware="cpu", max_new_tokens=4)
    point.update(over)
    (s,) = expand("unit", {}, point)
    return s


def run(model: ModelConfig | None, **over: Any) -> Any:
    r = TrialRunner(None, GenerationConfig(ignore_eos=False, warmup_runs=0), "/nonexistent", device="cpu",
                    tasks=TasksConfig(limit=1))
    r.backend, r.load_info = ParisBackend(), LoadInfo(precision="fp32", device="cpu")
    result = r.run(spec(**over), model, {})
    assert result.row["status"] == "ok", result.row["error"]
    return result


def test_a_builtin_random_init_model_has_null_accuracy_with_the_reason_even_with_real_weights():
    result = run(TINY)
    row = result.row
    assert row["accuracy"] is None  # null, never 0 (nor 1: "Paris" is right, by chance or not)
    assert row["accuracy_reason"] == "random weights (tiny-llama is built random): the text is noise"
    assert row["scored_requests"] == 0 and row["correct_requests"] is None and row.get("j_per_correct") is None
    assert [(r["response"], r["gold"]) for r in result.responses] == [("Paris", "Paris")]  # kept, not scored
    assert all(r["correct"] is None and r["score"] is None and r["scorer"] is None for r in result.responses)


def test_dummy_weights_keep_their_own_reason():
    row = run(TINY, weights="dummy").row
    assert row["accuracy"] is None and row["accuracy_reason"] == "random weights: the text is noise"
    row = run(TRAINED, weights="dummy").row
    assert row["accuracy"] is None and row["accuracy_reason"] == record.RANDOM_WEIGHTS


@pytest.mark.parametrize("model", [TRAINED, None], ids=["trained", "no-model"])
def test_a_trained_model_is_scored(model):
    result = run(model)
    assert result.row["accuracy"] == 1.0 and result.row["accuracy_reason"] is None
    assert result.row["scored_requests"] == 1 and result.row["correct_requests"] == 1
    assert [r["correct"] for r in result.responses] == [True]


def test_accuracy_fields_ignores_scores_of_random_weights():
    """A score that reached a random model's request anyway (a judge's verdict) is not counted."""
    for s, model in ((spec(), TINY), (spec(weights="dummy"), TRAINED)):
        got = record.accuracy_fields(s, PARIS, RIGHT, model)
        assert got == {"scored_requests": 0, "correct_requests": None, "accuracy": None,
                       "accuracy_reason": record.random_weights(s, model)}
        assert got["accuracy_reason"] and "the text is noise" in got["accuracy_reason"]
    assert record.accuracy_fields(spec(), PARIS, RIGHT, TRAINED)["accuracy"] == 1.0
    assert record.accuracy_fields(spec(), PARIS, RIGHT)["accuracy"] == 1.0  # no model given: by the spec alone
