"""Scorers (energyray/tasks/scoring.py): what each one reads as the answer and when it counts,
on the responses models really give (sentences, HLE's format, base-model run-ons)."""

from __future__ import annotations

import pytest

from energyray.tasks.base import Item
from energyray.tasks.scoring import (
    confidence,
    exact_match,
    extract_choice,
    lcs_length,
    multiple_choice,
    normalise,
    numeric,
    parse_number,
    regex,
    rouge_l,
    rouge_l_f1,
    score_item,
)


@pytest.mark.parametrize(("response", "gold", "correct", "extracted"), [
    ("The answer is 42.", "42", True, "42"),
    ("42", "42", True, "42"),
    ("Answer: 1,000", "1000", True, "1,000"),
    ("**Answer:** 0.25", "1/4", True, "0.25"),  # a numeric gold compares as a number
    ("Answer: \\boxed{1/4}", "1/4", True, "1/4"),
    ("It ended in 1945.", "1945", True, "It ended in 1945"),  # one number, the gold's
    ("There are 8 legs and 2 eyes.", "8", False, None),  # two numbers: not one answer
    ("Answer: forty-two", "42", False, "forty-two"),  # number words are not parsed (aliases say them)
    ("PARIS!", "Paris", True, "PARIS"),
    ("The capital is Paris.", "Paris", False, "The capital is Paris"),  # a sentence is not the answer
    ("Explanation: it is the largest.\nExact Answer: The Pacific Ocean\nConfidence: 80%", "Pacific Ocean",
     True, "The Pacific Ocean"),  # HLE's exact-match line, article dropped
    ("Paris\n\nQuestion: What is 2 + 2?\nAnswer: 4", "Paris", True, "Paris"),  # a base model's run-on is cut
    ("Answer: Paris. It is also the largest city.", "Paris", True, "Paris"),  # the first sentence of the line
    ("O(log(n))", "O(log n)", True, "O(log(n))"),  # brackets are punctuation
    ("O(n log n)", "O(log n)", False, "O(n log n)"),
    ("", "Paris", False, None),
    ("   \n ", "Paris", False, None),
])
def test_exact_match(response, gold, correct, extracted):
    s = exact_match(response, gold)
    assert s.correct is correct
    assert s.value == (1.0 if correct else 0.0)
    assert s.scorer == "exact_match"
    if extracted is not None:
        assert s.extracted == extracted


def test_exact_match_aliases_and_normalisation():
    assert exact_match("eight", "8", ("eight",)).correct is True
    assert exact_match("Answer: log n", "O(log n)", ("log n",)).correct is True
    assert exact_match("H₂O", "H2O").correct is True  # Unicode subscripts fold (NFKC)
    assert exact_match("the  Carbon-Dioxide", "carbon dioxide").correct is True
    assert exact_match("a", "").correct is False  # an empty gold matches nothing
    assert normalise("  The Quick, brown FOX! ") == "quick brown fox"


@pytest.mark.parametrize(("response", "letter"), [
    ("Answer: (C)", "C"),
    ("Answer: C. Mitochondrial matrix", "C"),
    ("I think C is right", "C"),  # "I" is the pronoun, C the choice
    ("The answer is (B).", "B"),
    ("C", "C"),
    ("c.", "C"),
    ("A is correct", "A"),
    ("A good choice is D", "D"),  # "A" is the article
    ("Explanation: option B is wrong because...\nAnswer: D\nConfidence: 70%", "D"),  # the answer line wins
    ("Answer: **B**", "B"),
    ("Both A and B", None),  # two letters: undecided
    ("(A) or (C), hard to say", None),
    ("I am not sure.", None),
    ("", None),
    ("Answer: E", None),  # not one of the four choices
])
def test_extract_choice_from_letters(response, letter):
    assert extract_choice(response, ("Cytosol", "Nucleus", "Mitochondrial matrix", "Ribosome")) == letter


def test_extract_choice_from_choice_text():
    choices = ("Cytosol", "Mitochondrial matrix", "Nucleus", "Ribosome")
    assert extract_choice("Answer: Mitochondrial matrix", choices) == "B"
    assert extract_choice("It happens in the mitochondrial matrix.", choices) == "B"
    assert extract_choice("The cytosol or the nucleus.", choices) is None  # two choices named
    assert extract_choice("Answer: 12", ("4", "12", "13", "16")) == "B"


def test_extract_choice_without_the_list():
    """A file's multiple-choice items may carry their choices only in the question's text."""
    assert extract_choice("Answer: F") == "F"
    assert extract_choice("I think so") is None  # a bare "I" is the pronoun when the choices are unknown
    assert extract_choice("Answer: I") == "I"  # on the answer line it is a letter


def test_multiple_choice_score():
    s = multiple_choice("Answer: (c)", "C")
    assert (s.correct, s.value, s.scorer, s.extracted) == (True, 1.0, "multiple_choice", "C")
    s = multiple_choice("no idea", "C", ("x", "y", "z"))
    assert (s.correct, s.value, s.extracted) == (False, 0.0, None)
    assert multiple_choice("Answer: B", "C").correct is False
    assert multiple_choice("Answer: C", "(C)").correct is True


@pytest.mark.parametrize(("response", "gold", "correct"), [
    ("3/4", "0.75", True),
    ("The answer is 3/4.", "0.75", True),
    ("\\frac{3}{4}", "0.75", True),
    ("Answer: 0.75", "3/4", True),
    ("50%", "0.5", True),
    ("50%", "50", True),  # a percent reads as written or as a fraction
    ("0.5", "50%", True),
    ("It costs 1,000 dollars", "1000", True),
    ("Answer: 12 apples. Before that we had 5.", "12", True),  # the answer line's first number
    ("First 5, then 7, so the total is 12", "12", True),  # else the last number
    ("x = -3", "-3", True),
    ("3-4", "-4", False),  # a range's dash is not a minus
    ("0.7500001", "0.75", True),  # within 1e-6 relative
    ("0.75001", "0.75", False),
    ("2.52 m", "2.52", True),
    ("1.5e3", "1500", True),
    ("no number here", "3", False),
    ("Answer: 7\n\nProblem: next one... Answer: 9", "7", True),
])
def test_numeric(response, gold, correct):
    s = numeric(response, gold)
    assert s.correct is correct
    assert s.scorer == "numeric"


def test_numeric_extracted_and_tolerance():
    assert numeric("no number here", "3").extracted is None
    assert numeric("Answer: 3/4", "0.75").extracted == "0.75"
    assert numeric("101", "100", rel_tol=0.02).correct is True
    assert numeric("0", "0").correct is True  # zero compares absolutely


def test_parse_number():
    assert parse_number("1,000") == 1000
    assert parse_number("3/4") == 0.75
    assert parse_number("50%") == 0.5
    assert parse_number("-2.5e3") == -2500
    assert parse_number("$40") == 40
    assert parse_number("O(log n)") is None
    assert parse_number("12 apples") is None
    assert parse_number("1/0") is None


def test_lcs_length():
    assert lcs_length("abcbdab", "bdcaba") == 4  # the textbook example (CLRS): "bcba"
    assert lcs_length([], ["a"]) == 0
    assert lcs_length("abc", "abc") == 3


@pytest.mark.parametrize(("candidate", "reference", "f1"), [
    # Lin (2004), ROUGE's paper: LCS 3 of 4 words each way -> 0.75; "the gunman" only -> 0.5
    ("police kill the gunman", "police killed the gunman", 0.75),
    ("the gunman kill police", "police killed the gunman", 0.5),
    ("the cat sat on the mat", "the cat is on the mat", 5 / 6),  # LCS 5 of 6 and 6
    ("a b c d e", "a c e", 0.75),  # LCS 3: P 3/5, R 1 -> 2*0.6/1.6
    ("The CAT, sat.", "the cat sat", 1.0),  # case and punctuation do not count
    ("", "the cat sat", 0.0),
    ("dogs bark", "the cat sat", 0.0),
])
def test_rouge_l_f1_hand_computed(candidate, reference, f1):
    assert rouge_l_f1(candidate, reference) == pytest.approx(f1)


def test_rouge_l_score_threshold_and_label():
    ref = "the council voted to keep the library open later"
    s = rouge_l("Summary: The council voted to keep the library open later.", ref)
    assert (s.correct, s.scorer) == (True, "rouge_l") and s.value == pytest.approx(1.0)
    s = rouge_l("the library", ref)  # LCS 2: P 1, R 2/9 -> F1 4/11 = 0.36
    assert s.value == pytest.approx(4 / 11) and s.correct is True
    s = rouge_l("library", ref)  # P 1, R 1/9 -> F1 0.2
    assert s.value == pytest.approx(0.2) and s.correct is False


def test_regex_is_the_earlier_qa_rule():
    assert regex("A spider has 8 legs.", "8|eight").correct is True
    assert regex("its weight", "8|eight").correct is False
    assert regex("Symbol: AU", "Au").extracted == "AU"


@pytest.mark.parametrize(("response", "conf"), [
    ("Explanation: ...\nAnswer: B\nConfidence: 85%", 0.85),
    ("Confidence: 100%", 1.0),
    ("confidence: 0.4", 0.4),
    ("**Confidence:** 70", 0.7),
    ("Confidence level: 5%", 0.05),
    ("Confidence: 250%", None),
    ("I am confident.", None),
    ("", None),
])
def test_confidence(response, conf):
    got = confidence(response)
    assert got == (None if conf is None else pytest.approx(conf))


def test_score_item_dispatch_and_confidence():
    mc = Item("m", "q", gold="B", answer_type="multiple_choice", choices=("x", "y"))
    s = score_item(mc, "Explanation: y.\nAnswer: B\nConfidence: 60%")
    assert (s.correct, s.scorer, s.extracted, s.confidence) == (True, "multiple_choice", "B", pytest.approx(0.6))
    assert score_item(Item("n", "q", gold="0.75", answer_type="numeric"), "3/4").scorer == "numeric"
    assert score_item(Item("s", "q", gold="the cat sat", answer_type="summary"), "the cat sat").scorer == "rouge_l"
    assert score_item(Item("r", "q", gold="8|eight", answer_type="regex"), "eight").correct is True
    assert score_item(Item("e", "q", gold="Paris"), "Paris").scorer == "exact_match"  # no answer_type
    s = score_item(Item("x", "q"), "Anything. Confidence: 20%")  # no gold: not scored, confidence kept
    assert (s.correct, s.value, s.scorer, s.confidence) == (None, None, None, pytest.approx(0.2))
    assert score_item(Item("e", "q", gold="Paris"), "Paris", scorer="none").correct is None
    with pytest.raises(ValueError, match="unknown scorer"):
        score_item(Item("e", "q", gold="Paris"), "Paris", scorer="bleu")
