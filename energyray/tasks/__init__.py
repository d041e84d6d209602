"""Built-in prompt sets (tasks) and their scoring.

`longform` is the thesis seed's standard prompt (a long, structured answer: decode-heavy);
`qa` is a few short questions with known answers, scored by whether the answer appears in
the output. Each task has a `default` and a `brief` prompt variant (the practicum's "prompt
brevity", after Green Prompt Engineering: a concise prompt that asks for a concise answer).
`longform` splits brevity in two, so that a sweep can tell which half saves the energy:

    variant    prompt                      answer asked for
    default    the thesis prompt (40 w)    a detailed analysis
    short      terse (15 w), same request  a detailed analysis     -> fewer input tokens only
    concise    the thesis prompt + limit   at most three sentences -> fewer output tokens only
    brief      terse (8 w)                 brief                   -> both

Fewer output tokens show only with real weights (random weights never stop early). A batch
of size b takes the task's prompts in order, cycling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from energyray.errors import ConfigError

THESIS_PROMPT = (
    "Write a detailed analysis of the impact of artificial intelligence on modern healthcare, "
    "focusing on both benefits and challenges. Include specific examples of AI applications in "
    "diagnosis, treatment, and patient care."
)
THESIS_PROMPT_BRIEF = "Briefly: AI in healthcare, main benefits and challenges."
THESIS_PROMPT_SHORT = ("Detailed analysis: AI in healthcare, benefits and challenges, examples in diagnosis, "
                       "treatment, patient care.")
THESIS_PROMPT_CONCISE = THESIS_PROMPT + " Answer in at most three sentences."

QA: list[tuple[str, str]] = [
    ("What is the capital of France?", "Paris"),
    ("How many legs does a spider have?", "8|eight"),
    ("What is 12 multiplied by 3?", "36|thirty-six"),
    ("Which planet is known as the Red Planet?", "Mars"),
    ("What gas do plants absorb from the air for photosynthesis?", "carbon dioxide|CO2"),
    ("Who wrote the play Romeo and Juliet?", "Shakespeare"),
    ("What is the chemical symbol for gold?", "Au"),
    ("How many days are there in a leap year?", "366"),
]


@dataclass(frozen=True)
class Prompt:
    text: str
    answer: str | None = None  # a regex alternation of accepted answers; None: not scored


def _qa_text(question: str, variant: str) -> str:
    if variant == "brief":
        return f"Answer in one word.\nQuestion: {question}\nAnswer:"
    return f"Question: {question}\nAnswer:"


TASKS = {
    "longform": {
        "default": [Prompt(THESIS_PROMPT)],
        "short": [Prompt(THESIS_PROMPT_SHORT)],
        "concise": [Prompt(THESIS_PROMPT_CONCISE)],
        "brief": [Prompt(THESIS_PROMPT_BRIEF)],
    },
    "qa": {
        variant: [Prompt(_qa_text(q, variant), a) for q, a in QA] for variant in ("default", "brief")
    },
}


def prompts(task: str, variant: str, n: int) -> list[Prompt]:
    """n prompts of the task's variant (cycling through the set)."""
    if task not in TASKS:
        raise ConfigError(f"Unknown task {task!r}. Valid tasks: {', '.join(sorted(TASKS))}.")
    variants = TASKS[task]
    if variant not in variants:
        raise ConfigError(f"Task {task!r} has no prompt variant {variant!r}. Valid: {', '.join(variants)}.")
    items = variants[variant]
    return [items[i % len(items)] for i in range(n)]


def score(output: str, answer: str | None) -> bool | None:
    """Whether an accepted answer appears as a word in the output; None when not scored."""
    if answer is None:
        return None
    return re.search(rf"\b(?:{answer})\b", output, flags=re.IGNORECASE) is not None


def count_words(text: str) -> int:
    return len(text.split())
