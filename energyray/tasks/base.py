"""The task extension point: items to send, and how to score what comes back.

A task is a named set of items (a prompt, an optional gold answer and category) per prompt
variant, and a scorer. Built-in tasks are registered in energyray.registry.TASKS; tasks read
from files are configured under `tasks.files` (tasks/files.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class Item:
    """One request's content. `gold` None: the item is not scored."""

    id: str
    prompt: str  # the user's message (the variant applied); chat templates and length shaping come later
    gold: str | None = None  # the reference answer (text; a letter for multiple choice; a number)
    category: str | None = None
    answer_type: str | None = None  # exact_match | multiple_choice | numeric | summary | regex | None
    choices: tuple[str, ...] = ()  # multiple choice options, lettered A, B, ... in order
    aliases: tuple[str, ...] = ()  # other accepted answers (exact match): "8" also as "eight"


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one response. `correct` None: not scored (no gold, or unscorable)."""

    correct: bool | None
    value: float | None = None  # the scorer's number: 1/0, ROUGE-L F1, ...
    scorer: str | None = None  # exact_match | multiple_choice | numeric | rouge_l | regex | judge
    extracted: str | None = None  # what the scorer read as the answer
    confidence: float | None = None  # the model's own stated confidence (0-1), where the response gives one


@dataclass
class TaskItems:
    """A task's items for one variant, after the file's skips, the seeded sample and the limit."""

    items: list[Item]
    source: str  # builtin, or the file / dataset the items came from
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> items left out (e.g. has an image)


class Task(Protocol):
    name: str
    variants: tuple[str, ...]

    def items(self, variant: str) -> TaskItems: ...
    def score(self, item: Item, response: str) -> Score: ...
