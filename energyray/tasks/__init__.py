"""Tasks: the items a trial sends, and how to score what comes back.

`load(name, variant, options)` gives a task's items for one prompt variant (after a file's
skips, the seeded shuffle `tasks.sample_seed` and `tasks.limit`); `get(name, options)` gives
the task, whose `score(item, response)` scores one response. A name is a built-in task
(energyray.registry.TASKS), a name under `tasks.files`, a .jsonl/.csv/.parquet path, hf:ORG/NAME
[:split], or your own "package.module:Class". docs/tasks.md lists them.

Built-in: `longform` (the thesis seed's standard prompt: a long, structured answer,
decode-heavy, not scored), `qa`, `summarization`, `reasoning`, `hle_style`. Every task has a
`default` and a `brief` prompt variant (the practicum's "prompt brevity", after Green Prompt
Engineering: a concise prompt that asks for a concise answer). `longform` splits brevity in
two, so that a sweep can tell which half saves the energy:

    variant    prompt                      answer asked for
    default    the thesis prompt (40 w)    a detailed analysis
    short      terse (15 w), same request  a detailed analysis     -> fewer input tokens only
    concise    the thesis prompt + limit   at most three sentences -> fewer output tokens only
    brief      terse (8 w)                 brief                   -> both

Fewer output tokens show only with real weights (random weights never stop early).

`prompts`, `score` and `TASKS` below are the earlier interface (the first eight qa questions,
scored by a regex), kept while the trial runner still uses them.
"""

from __future__ import annotations

import difflib
import random
import re
from dataclasses import dataclass

from energyray.config import TaskFileConfig, TasksConfig
from energyray.errors import ConfigError
from energyray.tasks.base import Item, Score, Task, TaskItems
from energyray.tasks.builtin import (
    LONGFORM_TEXTS,
    THESIS_IMAGE_PROMPT,
    THESIS_PROMPT,
    THESIS_PROMPT_BRIEF,
    THESIS_PROMPT_CONCISE,
    THESIS_PROMPT_SHORT,
)

__all__ = ["Item", "Score", "Task", "TaskItems", "get", "load", "names", "count_words", "prompts", "score",
           "LONGFORM_TEXTS", "QA", "TASKS", "THESIS_IMAGE_PROMPT", "THESIS_PROMPT", "THESIS_PROMPT_BRIEF", "THESIS_PROMPT_CONCISE",
           "THESIS_PROMPT_SHORT"]


def names(options: TasksConfig | None = None) -> list[str]:
    """The task names `get` knows without a path: the built-in ones and those under tasks.files."""
    from energyray.registry import TASKS as REGISTERED

    return sorted({*REGISTERED, *(options.files if options else {})})


def get(name: str, options: TasksConfig | None = None) -> Task:
    """The task called `name`: one under options.files, a built-in one, a .jsonl/.csv/.parquet path,
    hf:ORG/NAME[:split], or "package.module:Class" (constructed with no arguments)."""
    from energyray.registry import TASKS as REGISTERED
    from energyray.registry import resolve
    from energyray.tasks.files import FileTask, file_config, is_file_task

    options = options or TasksConfig()
    if name in options.files:
        return FileTask(name, file_config(name, options.files[name]))
    if name in REGISTERED:
        return resolve("task", REGISTERED, name)()
    if is_file_task(name):
        return FileTask(name, TaskFileConfig(path=name), configured=False)
    if ":" in name:
        return resolve("task", REGISTERED, name)()
    known = names(options)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(f"Unknown task {name!r}.{hint} Valid tasks: {', '.join(known)}; or a .jsonl, .csv or "
                      ".parquet file, hf:ORG/NAME, or a name you define under tasks.files.")


def load(name: str, variant: str, options: TasksConfig | None = None) -> TaskItems:
    """The items of task `name`'s `variant`: shuffled with options.sample_seed (when set), then the
    first options.limit of them (when set). The same seed gives the same items in every variant."""
    options = options or TasksConfig()
    task = get(name, options)
    if variant not in task.variants:
        raise ConfigError(f"Task {name!r} has no prompt variant {variant!r}. Valid: {', '.join(task.variants)}.")
    got = task.items(variant)
    items = list(got.items)
    if options.sample_seed is not None:
        random.Random(options.sample_seed).shuffle(items)
    if options.limit is not None:
        items = items[:options.limit]
    return TaskItems(items, source=got.source, skipped=dict(got.skipped))


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
