"""Scorers: what a response answered, and whether it matches the item's gold.

Every scorer first cuts a base model's run-on (a line starting "Question:", "Problem:" or
"Passage:" after some text: the model writing the next item) and reads the answer from the
last "Answer:" line where there is one (HLE's format; "Exact Answer:" and "**Answer:**" too).

    exact_match      normalised text equality (case, punctuation, articles, whitespace); a
                     numeric gold compares as a number; item.aliases are also accepted
    multiple_choice  the chosen letter: "Answer: (C)", "the answer is C", "I think C is right",
                     or the text of exactly one choice
    numeric          a number within a relative tolerance (1e-6): "1,000", "3/4", "50%", "\\frac{3}{4}"
    rouge_l          ROUGE-L F1 of the words against the reference (correct: F1 >= 0.3)
    regex            a case-insensitive whole-word regex anywhere in the response

An answer that cannot be read is wrong (correct False, extracted None), not unscored.
Score.confidence is the response's own "Confidence: NN%" (0-1), whatever the scorer.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence

from energyray.tasks.base import Item, Score

ROUGE_L_CORRECT = 0.3  # a summary with ROUGE-L F1 at or above this counts as correct
REL_TOL = 1e-6

SCORERS = ("exact_match", "multiple_choice", "numeric", "rouge_l", "regex")
# Item.answer_type -> the scorer that reads it
BY_ANSWER_TYPE = {"exact_match": "exact_match", "multiple_choice": "multiple_choice", "numeric": "numeric",
                  "summary": "rouge_l", "regex": "regex"}
BY_SCORER_TYPE = {v: k for k, v in BY_ANSWER_TYPE.items()}  # scorer -> the answer_type it reads

_CONTINUATION = re.compile(r"^[ \t]*(?:Question|Problem|Passage)[ \t]*:", re.MULTILINE)
_ANSWER_LINE = re.compile(r"(?i)\banswer\s*\**\s*:\s*\**[ \t]*([^\n]*)")
_ANSWER_IS = re.compile(r"(?i)\banswer\s+(?:is|would be|=)\s*:?[ \t]*([^\n]*)")
_LEAD_IN = re.compile(r"(?i)^(?:(?:so|thus|therefore|hence)\b[,\s]*)?(?:(?:the|my)\s+)?(?:final\s+|correct\s+|exact\s+)?"
                      r"answer\s*(?:is|would be|:|=)\s*|^(?:it\s+is|it's|that\s+is)\s+")
_CONFIDENCE = re.compile(r"(?i)\bconfidence(?:\s+(?:score|level))?\s*\**\s*[:=]?\s*\**\s*(\d+(?:\.\d+)?)\s*(%)?")
_BOXED = re.compile(r"\\boxed\s*\{([^{}]*)\}")
_FRAC = re.compile(r"\\d?frac\s*\{\s*([-\d.,]+)\s*\}\s*\{\s*([-\d.,]+)\s*\}")
_NUMBER = re.compile(r"(?<![\w.])(?P<sign>[-−+])?(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
                     r"(?:[eE](?P<exp>[-+]?\d+))?"
                     r"(?:\s*/\s*(?P<den>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?))?(?P<pct>\s*%)?")
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def cut_continuation(response: str) -> str:
    """The response up to a line where a base model starts writing the next item."""
    for m in _CONTINUATION.finditer(response):
        if response[:m.start()].strip():
            return response[:m.start()]
    return response


def answer_line(response: str) -> str | None:
    """The text after the last "Answer:" (to the end of its line), or None where there is none."""
    matches = [m.group(1).strip() for m in _ANSWER_LINE.finditer(response)]
    return matches[-1] if matches else None


def _candidate(response: str) -> str | None:
    """The stated answer: the last "Answer:" line, else "the answer is X", else the first line."""
    text = cut_continuation(response)
    cand = answer_line(text)
    if cand is None:
        found = [m.group(1).strip() for m in _ANSWER_IS.finditer(text)]
        cand = found[-1] if found else next((ln.strip() for ln in text.splitlines() if ln.strip()), None)
    if cand is None:
        return None
    cand = _BOXED.sub(r"\1", cand).strip().strip("*").strip()
    cand = _LEAD_IN.sub("", cand, count=1)
    cand = re.split(r"(?<=[.!?])\s+(?=\S)", cand, maxsplit=1)[0]  # the first sentence
    return cand.strip().rstrip(".!?;:,").strip() or None


def normalise(text: str) -> str:
    """Lower case, punctuation to spaces, articles (a, an, the) dropped, whitespace collapsed."""
    text = unicodedata.normalize("NFKC", text).lower()
    text = "".join(" " if unicodedata.category(c).startswith(("P", "S")) else c for c in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _numbers(text: str) -> list[tuple[float, bool]]:
    """Each number in the text as (value, written as a percent)."""
    text = _FRAC.sub(r"\1/\2", text)
    out = []
    for m in _NUMBER.finditer(text):
        try:
            v = float(m.group("num").replace(",", "") + (f"e{m.group('exp')}" if m.group("exp") else ""))
            if m.group("den"):
                den = float(m.group("den").replace(",", ""))
                if den == 0:
                    continue
                v /= den
        except ValueError:
            continue
        if m.group("sign") in ("-", "−"):
            v = -v
        out.append((v, bool(m.group("pct"))))
    return out


def parse_number(text: str) -> float | None:
    """The text as one number ("1,000", "3/4", "-2.5e3"; "50%" is 0.5), or None if it is not one."""
    t = _FRAC.sub(r"\1/\2", text.strip().strip("$").strip())
    nums = _numbers(t) if _NUMBER.fullmatch(t) else []
    if len(nums) != 1:
        return None
    v, pct = nums[0]
    return v / 100 if pct else v


def _close(a: float, b: float, rel_tol: float) -> bool:
    return math.isclose(a, b, rel_tol=rel_tol, abs_tol=1e-12)


def _numeric_equal(got: tuple[float, bool], gold_text: str, rel_tol: float) -> bool:
    """A percent on either side may be read as written (50) or as a fraction (0.5)."""
    g = _numbers(_FRAC.sub(r"\1/\2", gold_text))
    if len(g) != 1:
        return False
    (gv, gpct), (rv, rpct) = g[0], got
    golds = {gv, gv / 100} if gpct else {gv}
    resps = {rv, rv / 100} if rpct else {rv}
    return any(_close(a, b, rel_tol) for a in golds for b in resps)


def exact_match(response: str, gold: str, aliases: Sequence[str] = ()) -> Score:
    cand = _candidate(response)
    if cand is None:
        return Score(False, 0.0, "exact_match", None)
    for g in (gold, *aliases):
        if parse_number(g) is not None:
            nums = _numbers(cand)
            ok = len(nums) == 1 and _numeric_equal(nums[0], g, 1e-9)
        else:
            ok = normalise(cand) == normalise(g) and bool(normalise(g))
        if ok:
            return Score(True, 1.0, "exact_match", cand)
    return Score(False, 0.0, "exact_match", cand)


def _letters(choices: Sequence[str]) -> str:
    return "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:len(choices)] if choices else "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _choice_by_text(text: str, choices: Sequence[str]) -> str | None:
    """The letter of the one choice whose text the response states (whole words), if exactly one."""
    t = f" {normalise(text)} "
    hits = {chr(65 + i) for i, c in enumerate(choices) if normalise(c) and f" {normalise(c)} " in t}
    return hits.pop() if len(hits) == 1 else None


# words that follow a letter naming a choice ("A is right", "A and B"), not the article "a"
_AFTER_LETTER = {"is", "and", "or", "was", "seems", "looks", "would", "should", "appears", "because", "since",
                 "fits", "matches", "best", "only", "alone", "too", "also", "then"}


def _pronoun_or_article(letter: str, after: str, choices_known: bool) -> bool:
    """Whether a standalone "A" or "I" reads as the article or the pronoun. Without the list of
    choices a bare "I" never counts as one (HLE's lists rarely reach I)."""
    if letter not in "AI":
        return False
    if letter == "I" and not choices_known:
        return True
    word = re.match(r"\s+([a-z]+)", after)
    return word is not None and word.group(1) not in _AFTER_LETTER


def extract_choice(response: str, choices: Sequence[str] = ()) -> str | None:
    """The letter a response chose, or None where it cannot be told (none, or several)."""
    valid = _letters(choices)
    text = cut_continuation(response)
    line = answer_line(text)
    if line is not None:
        line = _BOXED.sub(r"\1", line)
        m = re.match(r"^[\W_]*([A-Z])(?![A-Za-z])", line) or re.fullmatch(r"[\W_]*([a-z])[\W_]*", line)
        if m and m.group(1).upper() in valid:
            return m.group(1).upper()
        if choices and (hit := _choice_by_text(line, choices)):
            return hit
    said = [m.group(1) for m in re.finditer(r"\b(?:[Aa]nswer|[Oo]ption|[Cc]hoice)\s*(?:is|would be|:)?\s*"
                                            r"\(?([A-Z])\)?(?![A-Za-z])", text) if m.group(1) in valid]
    if said:
        return said[-1]
    paren = {m.group(1) for m in re.finditer(r"\(([A-Z])\)", text) if m.group(1) in valid}
    if len(paren) == 1:
        return paren.pop()
    bare = re.fullmatch(r"[\W_]*([A-Za-z])[\W_]*", text.strip())
    if bare and bare.group(1).upper() in valid:
        return bare.group(1).upper()
    alone = {m.group(1) for m in re.finditer(r"(?<![A-Za-z'’])([A-Z])(?![A-Za-z'’])", text)
             if m.group(1) in valid and not _pronoun_or_article(m.group(1), text[m.end():], bool(choices))}
    if len(alone) == 1:
        return alone.pop()
    if choices and not alone:  # no letter at all: the text of one choice
        return _choice_by_text(text, choices)
    return None


def multiple_choice(response: str, gold: str, choices: Sequence[str] = ()) -> Score:
    got = extract_choice(response, choices)
    ok = got is not None and got == gold.strip().strip("()").upper()
    return Score(ok, 1.0 if ok else 0.0, "multiple_choice", got)


def extract_number(response: str) -> tuple[float, bool] | None:
    """The answer's number: the first in the "Answer:" line, else after "the answer is", else the
    last number in the response. (value, written as a percent)."""
    text = cut_continuation(response)
    for part in (answer_line(text), *reversed([m.group(1) for m in _ANSWER_IS.finditer(text)])):
        if part and (nums := _numbers(_BOXED.sub(r"\1", part))):
            return nums[0]
    nums = _numbers(_BOXED.sub(r"\1", text))
    return nums[-1] if nums else None


def numeric(response: str, gold: str, rel_tol: float = REL_TOL) -> Score:
    got = extract_number(response)
    if got is None:
        return Score(False, 0.0, "numeric", None)
    ok = _numeric_equal(got, gold, rel_tol)
    shown = f"{got[0]:g}{'%' if got[1] else ''}"
    return Score(ok, 1.0 if ok else 0.0, "numeric", shown)


def words(text: str) -> list[str]:
    """ROUGE's tokens: lower-case runs of letters and digits."""
    return re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", text).lower())


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence (dynamic programming, two rows)."""
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l_f1(candidate: str, reference: str) -> float:
    """ROUGE-L F1 (beta 1) of the candidate's words against the reference's; 0 when either is empty."""
    c, r = words(candidate), words(reference)
    lcs = lcs_length(c, r)
    if not c or not r or not lcs:
        return 0.0
    p, rec = lcs / len(c), lcs / len(r)
    return 2 * p * rec / (p + rec)


def rouge_l(response: str, reference: str) -> Score:
    text = cut_continuation(response).strip()
    text = re.sub(r"(?i)^\W*summary\s*:\s*", "", text)
    f1 = rouge_l_f1(text, reference)
    return Score(f1 >= ROUGE_L_CORRECT, f1, "rouge_l", None)


def regex(response: str, pattern: str) -> Score:
    m = re.search(rf"\b(?:{pattern})\b", response, flags=re.IGNORECASE)
    return Score(m is not None, 1.0 if m else 0.0, "regex", m.group(0) if m else None)


def confidence(response: str) -> float | None:
    """The response's stated confidence as 0-1 ("Confidence: 85%"; 0.85 and 85 read the same)."""
    found = list(_CONFIDENCE.finditer(response))
    if not found:
        return None
    m = found[-1]
    v = float(m.group(1))
    if m.group(2) or v > 1:
        v /= 100
    return v if 0 <= v <= 1 else None


def score_item(item: Item, response: str, scorer: str = "auto") -> Score:
    """Score one response with `scorer`, or (auto) the scorer of the item's answer_type
    (exact match where it has none); an item without gold is not scored."""
    conf = confidence(response)
    name = BY_ANSWER_TYPE.get(item.answer_type or "", "exact_match") if scorer == "auto" else scorer
    if item.gold is None or name == "none":
        return Score(None, confidence=conf)
    if name == "exact_match":
        s = exact_match(response, item.gold, item.aliases)
    elif name == "multiple_choice":
        s = multiple_choice(response, item.gold, item.choices)
    elif name == "numeric":
        s = numeric(response, item.gold)
    elif name == "rouge_l":
        s = rouge_l(response, item.gold)
    elif name == "regex":
        s = regex(response, item.gold)
    else:
        raise ValueError(f"unknown scorer {name!r}; valid: {', '.join(SCORERS)}, none")
    return Score(s.correct, s.value, s.scorer, s.extracted, conf)
