"""Built-in tasks: prompt cycling, unknown task/variant errors, answer scoring."""

from __future__ import annotations

import pytest

from energyray.errors import ConfigError
from energyray.tasks import (
    QA,
    TASKS,
    THESIS_PROMPT,
    THESIS_PROMPT_BRIEF,
    THESIS_PROMPT_CONCISE,
    THESIS_PROMPT_SHORT,
    count_words,
    prompts,
    score,
)


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 20])
def test_qa_prompts_cycle_to_n(n):
    ps = prompts("qa", "default", n)
    assert len(ps) == n
    base = TASKS["qa"]["default"]
    assert ps == [base[i % len(QA)] for i in range(n)]


def test_qa_cycle_wraps_to_first():
    ps = prompts("qa", "brief", len(QA) + 2)
    assert ps[len(QA)] == ps[0]
    assert ps[len(QA) + 1] == ps[1]
    assert ps[0] != ps[1]
    assert ps[0].text.startswith("Answer in one word.")
    assert ps[0].answer == "Paris"


def test_longform_prompts():
    assert [p.text for p in prompts("longform", "default", 3)] == [THESIS_PROMPT] * 3
    assert [p.text for p in prompts("longform", "brief", 2)] == [THESIS_PROMPT_BRIEF] * 2
    assert all(p.answer is None for p in prompts("longform", "default", 2))


def test_longform_brevity_variants_separate_input_and_output_length():
    """short: fewer prompt words, same request; concise: same prompt, a length limit; brief: both."""
    words = {v: count_words(prompts("longform", v, 1)[0].text) for v in ("default", "short", "concise", "brief")}
    assert words["brief"] < words["short"] < words["default"] < words["concise"]
    assert words["short"] <= words["default"] / 2
    assert THESIS_PROMPT_CONCISE.startswith(THESIS_PROMPT) and "three sentences" in THESIS_PROMPT_CONCISE
    assert "Detailed analysis" in THESIS_PROMPT_SHORT and "brief" not in THESIS_PROMPT_SHORT.lower()
    for topic in ("diagnosis", "treatment", "patient care"):  # the short prompt asks for the same content
        assert topic in THESIS_PROMPT_SHORT
    assert set(TASKS["longform"]) == {"default", "short", "concise", "brief"}
    assert set(TASKS["qa"]) == {"default", "brief"}


def test_unknown_task_lists_valid_tasks():
    with pytest.raises(ConfigError) as e:
        prompts("trivia", "default", 1)
    msg = str(e.value)
    assert "trivia" in msg
    assert "longform" in msg and "qa" in msg


def test_unknown_variant_lists_valid_variants():
    with pytest.raises(ConfigError) as e:
        prompts("qa", "terse", 1)
    msg = str(e.value)
    assert "terse" in msg
    assert "default" in msg and "brief" in msg


@pytest.mark.parametrize(
    ("output", "answer", "expected"),
    [
        ("The capital is Paris.", "Paris", True),
        ("the capital is PARIS", "Paris", True),
        ("Parisian cafes", "Paris", False),
        ("A spider has 8 legs.", "8|eight", True),
        ("Eight.", "8|eight", True),
        ("18 legs", "8|eight", False),
        ("its weight", "8|eight", False),  # alternation stays inside the word boundaries
        ("eighty", "8|eight", False),
        ("thirty-six", "36|thirty-six", True),
        ("It absorbs co2.", "carbon dioxide|CO2", True),
        ("Carbon Dioxide", "carbon dioxide|CO2", True),
        ("Because of gold", "Au", False),
        ("Symbol: AU", "Au", True),
        ("", "Mars", False),
    ],
)
def test_score_whole_word_case_insensitive(output, answer, expected):
    assert score(output, answer) is expected


def test_score_none_answer_is_not_scored():
    assert score("anything at all", None) is None
    assert score("", None) is None


def test_every_qa_answer_scores_its_own_text():
    for _, answer in QA:
        first = answer.split("|")[0]
        assert score(f"I think it is {first}.", answer) is True


def test_count_words():
    assert count_words("  one two\nthree\t four ") == 4
    assert count_words("") == 0
