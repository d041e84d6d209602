"""The built-in tasks (registered in energyray.registry.TASKS). Their items are written for
energyray (qa_items.py, summarization_items.py, reasoning_items.py, hle_style_items.py); each
task has the variants `default` and `brief` (the prompt asks for a short answer), and
`longform` also `short` and `concise` (energyray/tasks/__init__.py says what each changes)."""

from __future__ import annotations

from energyray.errors import ConfigError
from energyray.tasks import scoring
from energyray.tasks.base import Item, Score, TaskItems
from energyray.tasks.hle_style_items import HLE_STYLE_ITEMS, RESPONSE_FORMAT, RESPONSE_FORMAT_BRIEF
from energyray.tasks.qa_items import QA_ITEMS
from energyray.tasks.reasoning_items import REASONING_ITEMS
from energyray.tasks.summarization_items import SUMMARIZATION_ITEMS

THESIS_PROMPT = (
    "Write a detailed analysis of the impact of artificial intelligence on modern healthcare, "
    "focusing on both benefits and challenges. Include specific examples of AI applications in "
    "diagnosis, treatment, and patient care."
)
THESIS_PROMPT_BRIEF = "Briefly: AI in healthcare, main benefits and challenges."
THESIS_PROMPT_SHORT = ("Detailed analysis: AI in healthcare, benefits and challenges, examples in diagnosis, "
                       "treatment, patient care.")
THESIS_PROMPT_CONCISE = THESIS_PROMPT + " Answer in at most three sentences."
LONGFORM_TEXTS = {"default": THESIS_PROMPT, "short": THESIS_PROMPT_SHORT, "concise": THESIS_PROMPT_CONCISE,
                  "brief": THESIS_PROMPT_BRIEF}

# The thesis' image-generation prompt (§3, used for SD 1.5, 2.1 and 3.5 Large in §4.7).
THESIS_IMAGE_PROMPT = (
    "A breathtaking sunset over the French Riviera, the beach should have the rocks, highly detailed, 4K "
    "resolution. The sky painted in vivid red and orange tones, reflecting over the calm Mediterranean Sea. "
    "In the foreground, a wooden sign with the word \"NIZZA\" clearly written on it. Warm light, cinematic "
    "atmosphere, photorealistic details."
)


class BuiltinTask:
    """A fixed list of items per variant, scored by each item's answer_type."""

    name = ""
    variants: tuple[str, ...] = ("default", "brief")

    def _items(self, variant: str) -> list[Item]:
        raise NotImplementedError

    def items(self, variant: str) -> TaskItems:
        if variant not in self.variants:
            raise ConfigError(f"Task {self.name!r} has no prompt variant {variant!r}. "
                              f"Valid: {', '.join(self.variants)}.")
        return TaskItems(self._items(variant), source="builtin")

    def score(self, item: Item, response: str) -> Score:
        return scoring.score_item(item, response)


class LongformTask(BuiltinTask):
    """The thesis' long-form prompt (one item, no gold answer: decode-heavy, not scored)."""

    name = "longform"
    variants = ("default", "short", "concise", "brief")

    def _items(self, variant: str) -> list[Item]:
        return [Item(id="longform", prompt=LONGFORM_TEXTS[variant])]


class ImageTask(BuiltinTask):
    """The thesis' image prompt, for text-to-image backends (one item, not scored)."""

    name = "image"
    # brief: the same scene in a few words (the text encoders pad every prompt to their full
    # length, so a shorter prompt costs the same compute)
    PROMPTS = {"default": THESIS_IMAGE_PROMPT,
               "brief": "Sunset over the French Riviera, rocky beach, a wooden sign reading \"NIZZA\", photorealistic."}

    def _items(self, variant: str) -> list[Item]:
        return [Item(id="image-nizza", prompt=self.PROMPTS[variant])]


class QaTask(BuiltinTask):
    """Short factual questions; normalised exact match (other spellings accepted)."""

    name = "qa"
    PROMPTS = {"default": "Question: {q}\nAnswer:",
               "brief": "Answer in as few words as possible.\nQuestion: {q}\nAnswer:"}

    def _items(self, variant: str) -> list[Item]:
        return [Item(id=f"qa-{i + 1:02d}", prompt=self.PROMPTS[variant].replace("{q}", q), gold=gold,
                     category=cat, answer_type="exact_match", aliases=aliases)
                for i, (q, gold, aliases, cat) in enumerate(QA_ITEMS)]


class SummarizationTask(BuiltinTask):
    """Passages to summarise; ROUGE-L F1 against a reference summary (correct: F1 >= 0.3)."""

    name = "summarization"
    PROMPTS = {"default": "Summarize the following passage in one or two sentences.\n\nPassage: {p}\n\nSummary:",
               "brief": "Summarize the following passage in one short sentence.\n\nPassage: {p}\n\nSummary:"}

    def _items(self, variant: str) -> list[Item]:
        return [Item(id=f"summarization-{i + 1:02d}", prompt=self.PROMPTS[variant].replace("{p}", p), gold=ref,
                     category=cat, answer_type="summary")
                for i, (p, ref, cat) in enumerate(SUMMARIZATION_ITEMS)]


class ReasoningTask(BuiltinTask):
    """Multi-step word problems with exact numeric answers (relative tolerance 1e-6)."""

    name = "reasoning"
    PROMPTS = {"default": ("Solve the problem. Show your working, then give the final number on a last line "
                           "of the form \"Answer: <number>\".\n\nProblem: {q}"),
               "brief": "Solve the problem. Reply with the final number only.\n\nProblem: {q}\nAnswer:"}

    def _items(self, variant: str) -> list[Item]:
        return [Item(id=f"reasoning-{i + 1:02d}", prompt=self.PROMPTS[variant].replace("{q}", q), gold=gold,
                     category=cat, answer_type="numeric")
                for i, (q, gold, cat) in enumerate(REASONING_ITEMS)]


def choices_text(choices: tuple[str, ...] | list[str]) -> str:
    """HLE's layout of a multiple-choice question's options."""
    return "Answer Choices:\n" + "\n".join(f"{chr(65 + i)}. {c}" for i, c in enumerate(choices))


class HleStyleTask(BuiltinTask):
    """Humanity's Last Exam's format over its eight categories: exact-match and multiple-choice
    items, the response format asking for Explanation / Answer / Confidence."""

    name = "hle_style"
    FORMATS = {"default": RESPONSE_FORMAT, "brief": RESPONSE_FORMAT_BRIEF}

    def _items(self, variant: str) -> list[Item]:
        out, seen = [], dict.fromkeys([c for c, *_ in HLE_STYLE_ITEMS], 0)
        for cat, question, gold, choices, aliases in HLE_STYLE_ITEMS:
            seen[cat] += 1
            text = f"{question}\n\n{choices_text(choices)}" if choices else question
            slug = cat.split("/")[0].lower().replace(" ", "_")
            out.append(Item(id=f"hle_style-{slug}-{seen[cat]}", prompt=f"{self.FORMATS[variant]}\n\n{text}",
                            gold=gold, category=cat, answer_type="multiple_choice" if choices else "exact_match",
                            choices=choices, aliases=aliases))
        # round robin over the categories, so that tasks.limit=8 keeps one item of each
        rank = {id(it): sum(o.category == it.category for o in out[:i]) for i, it in enumerate(out)}
        cats = list(seen)
        return sorted(out, key=lambda it: (rank[id(it)], cats.index(str(it.category))))
