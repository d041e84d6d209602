"""Tasks: the built-in sets (sizes, formats, every gold scored correct), the registry's
did-you-mean, load's limit and seeded sample; and the earlier prompts()/score() interface."""

from __future__ import annotations

import pytest

from energyray.config import TaskFileConfig, TasksConfig
from energyray.errors import ConfigError
from energyray.tasks import (
    QA,
    TASKS,
    THESIS_PROMPT,
    THESIS_PROMPT_BRIEF,
    THESIS_PROMPT_CONCISE,
    THESIS_PROMPT_SHORT,
    count_words,
    get,
    load,
    names,
    prompts,
    score,
)
from energyray.tasks.scoring import normalise, parse_number


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


# --- the task extension point: registry, load/get, the built-in sets ---------------------------

BUILTIN = ("longform", "qa", "summarization", "reasoning", "hle_style", "image")
SCORED = ("qa", "summarization", "reasoning", "hle_style")  # the tasks with gold answers
HLE_CATEGORIES = {"Math", "Physics", "Biology/Medicine", "Chemistry", "Engineering", "Computer Science/AI",
                  "Humanities/Social Science", "Other"}


def test_registry_lists_the_builtin_tasks_and_each_resolves():
    from energyray.registry import TASKS as REGISTERED

    assert set(REGISTERED) == set(BUILTIN)
    for name in BUILTIN:
        task = get(name)
        assert task.name == name
        assert {"default", "brief"} <= set(task.variants)
    assert get("longform").variants == ("default", "short", "concise", "brief")


@pytest.mark.parametrize(("typo", "suggestion"), [("reasonin", "reasoning"), ("hle-style", "hle_style"),
                                                   ("sumarization", "summarization")])
def test_unknown_task_did_you_mean(typo, suggestion):
    with pytest.raises(ConfigError) as e:
        get(typo)
    msg = str(e.value)
    assert f"Did you mean {suggestion!r}?" in msg
    assert all(name in msg for name in BUILTIN)
    assert "tasks.files" in msg and ".jsonl" in msg


def test_did_you_mean_covers_file_tasks():
    opts = TasksConfig(files={"my_exam": TaskFileConfig(path="exam.jsonl")})
    with pytest.raises(ConfigError, match="Did you mean 'my_exam'"):
        get("my_exm", opts)
    assert names(opts) == sorted([*BUILTIN, "my_exam"])


def test_custom_task_class_by_import_path():
    task = get("energyray.tasks.builtin:QaTask")
    assert task.name == "qa"
    with pytest.raises(ConfigError, match="Cannot import task"):
        get("energyray.tasks.builtin:NoSuchTask")


def test_load_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ConfigError) as e:
        load("reasoning", "short", TasksConfig())
    assert "short" in str(e.value) and "default, brief" in str(e.value)


def test_builtin_set_sizes_and_shapes():
    qa = load("qa", "default").items
    assert len(qa) >= 24 and all(i.answer_type == "exact_match" and i.gold for i in qa)
    summ = load("summarization", "default").items
    assert len(summ) >= 8 and all(i.answer_type == "summary" for i in summ)
    for i in summ:  # the passage alone is 80-200 words
        passage = i.prompt.split("Passage: ", 1)[1].rsplit("\n\nSummary:", 1)[0]
        assert 80 <= count_words(passage) <= 200, i.id
    reasoning = load("reasoning", "default").items
    assert len(reasoning) >= 16 and all(i.answer_type == "numeric" for i in reasoning)
    assert all(parse_number(i.gold or "") is not None for i in reasoning)
    longform = load("longform", "default")
    assert [(i.prompt, i.gold) for i in longform.items] == [(THESIS_PROMPT, None)]
    assert longform.source == "builtin" and longform.skipped == {}


def test_hle_style_has_every_category_both_answer_types_and_the_format():
    items = load("hle_style", "default").items
    by_cat: dict[str, set[str]] = {}
    for i in items:
        by_cat.setdefault(i.category or "", set()).add(i.answer_type or "")
    assert set(by_cat) == HLE_CATEGORIES
    assert all(sum(i.category == c for i in items) >= 3 for c in HLE_CATEGORIES)
    assert {t for ts in by_cat.values() for t in ts} == {"exact_match", "multiple_choice"}
    for i in items:
        assert i.prompt.startswith("Your response should be in the following format:\nExplanation: ")
        assert "\nAnswer: {your succinct, final answer}\nConfidence: {your confidence score" in i.prompt
        if i.answer_type == "multiple_choice":
            assert len(i.choices) >= 3 and i.gold in "ABCDEFGH"[:len(i.choices)]
            assert "\n\nAnswer Choices:\nA. " in i.prompt
            assert f"\n{i.gold}. {i.choices[ord(i.gold) - 65]}" in i.prompt
        else:
            assert not i.choices and "Answer Choices" not in i.prompt


@pytest.mark.parametrize("name", BUILTIN)
def test_ids_unique_and_the_same_across_variants(name):
    task = get(name)
    ids = {v: [i.id for i in task.items(v).items] for v in task.variants}
    first = ids["default"]
    assert len(set(first)) == len(first)
    assert all(v == first for v in ids.values())


@pytest.mark.parametrize("name", SCORED)
def test_brief_variant_asks_for_a_short_answer(name):
    default, brief = load(name, "default").items, load(name, "brief").items
    for d, b in zip(default, brief, strict=True):
        assert d.prompt != b.prompt and (d.gold, d.category) == (b.gold, b.category)
    assert any(w in brief[0].prompt.lower() for w in ("short", "few words", "only"))


def _wrong(item, others):
    """A plausible wrong answer: another item's gold (a different number, letter or summary)."""
    if item.answer_type == "multiple_choice":
        return "Answer: " + next(c for c in "ABCD" if c != item.gold)
    if item.answer_type == "numeric":
        return f"Answer: {float(parse_number(item.gold)) + 1:g}"
    return next(o.gold for o in others if normalise(o.gold) != normalise(item.gold)
                and normalise(o.gold) not in {normalise(a) for a in item.aliases})


@pytest.mark.parametrize("name", SCORED)
@pytest.mark.parametrize("variant", ["default", "brief"])
def test_every_gold_scores_correct_and_a_wrong_answer_does_not(name, variant):
    """A wrong gold or a scorer that cannot read the gold is a bug in the set."""
    task = get(name)
    items = task.items(variant).items
    for n, item in enumerate(items):
        assert item.gold is not None
        as_given = task.score(item, item.gold)
        assert as_given.correct is True, (item.id, item.gold, as_given)
        hle_line = task.score(item, f"Explanation: because.\nAnswer: {item.gold}\nConfidence: 90%")
        assert hle_line.correct is True and hle_line.confidence == pytest.approx(0.9), item.id
        others = items[n + 1:] + items[:n]
        wrong = task.score(item, _wrong(item, others))
        assert wrong.correct is False, (item.id, _wrong(item, others), wrong)


def test_longform_is_not_scored():
    task = get("longform")
    item = task.items("default").items[0]
    s = task.score(item, "A long essay. Confidence: 50%")
    assert s.correct is None and s.confidence == pytest.approx(0.5)


@pytest.mark.parametrize("name", ["qa", "reasoning", "hle_style"])
def test_limit_and_sample_seed(name):
    everything = [i.id for i in load(name, "default").items]
    first5 = load(name, "default", TasksConfig(limit=5))
    assert [i.id for i in first5.items] == everything[:5]  # no seed: the task's order
    a = [i.id for i in load(name, "default", TasksConfig(limit=5, sample_seed=1)).items]
    again = [i.id for i in load(name, "default", TasksConfig(limit=5, sample_seed=1)).items]
    other = [i.id for i in load(name, "default", TasksConfig(limit=5, sample_seed=2)).items]
    assert a == again and a != other and len(a) == 5 and set(a) <= set(everything)
    brief = [i.id for i in load(name, "brief", TasksConfig(limit=5, sample_seed=1)).items]
    assert brief == a  # one seed draws the same items in every variant
    shuffled = [i.id for i in load(name, "default", TasksConfig(sample_seed=3)).items]
    assert sorted(shuffled) == sorted(everything) and shuffled != everything
    assert len(load(name, "default", TasksConfig(limit=10_000)).items) == len(everything)
