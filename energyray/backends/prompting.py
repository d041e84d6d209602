"""Prompts built with the model's own tokenizer: chat templates and exact token lengths.

No vendor import: the tokenizer is any Hugging Face-style object (the transformers backend's,
or the one vLLM's engine holds) -- called on text, `apply_chat_template`, `chat_template`,
`decode`. Prompts come back as token ids, so the engine is fed exactly what was counted
(nothing is tokenised again inside the measured call).

Exact lengths (`prompt_tokens=N`): every request is exactly N input tokens, the template's
own tokens (or the tokenizer's BOS) included. The rule: the item's text is tokenised in
place (inside the template where one applies); those text tokens are repeated, a blank
line's tokens between copies, and the repetition cut at the token where the total reaches
N; the template's tokens before and after the text are kept whole. The template's tokens
are found as what the prompt shares with the same template around two probe texts. An N
that leaves no room for one text token is a TrialFailed.

Random weights (`weights=dummy`) have no meaningful tokenizer: requests are seeded random
token ids, N each (or as many as the text would have, ~4 per 3 words), drawn one request
after another from one `random.Random(seed)`, as vLLM's random dataset makes fixed-length
prompts; no template.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from energyray.backends.base import Prompts, check_chat_template, estimate_tokens, template_decision
from energyray.errors import TrialFailed

RANDOM_ID_FLOOR = 10  # ids below this are usually special tokens (pad, bos, eos, unk)
PROBES = ("0", "1")  # two texts whose prompts differ only in the text: the rest is the template
SEPARATOR = "\n\n"  # between repeated copies of a text


def random_ids(lengths: list[int], vocab_size: int, seed: int) -> list[list[int]]:
    """Seeded random token ids, `lengths[i]` for request i, in [RANDOM_ID_FLOOR, vocab_size)."""
    rng = random.Random(seed)
    top = max(RANDOM_ID_FLOOR + 1, int(vocab_size))
    return [[rng.randrange(RANDOM_ID_FLOOR, top) for _ in range(n)] for n in lengths]


def random_prompts(texts: list[str], *, vocab_size: int, seed: int, prompt_tokens: int | None,
                   chat_template: str, why: str) -> Prompts:
    """Random token ids for random weights: `prompt_tokens` each, or as many as each text would have."""
    check_chat_template(chat_template)
    if chat_template == "on":
        raise TrialFailed(f"chat_template=on cannot apply to random token ids ({why}). "
                          "Use chat_template=auto or off with weights=dummy.")
    lengths = [int(prompt_tokens)] * len(texts) if prompt_tokens is not None else [estimate_tokens(t) for t in texts]
    return Prompts(inputs=random_ids(lengths, vocab_size, seed), texts=[f"<{n} random token ids>" for n in lengths],
                   input_tokens=list(lengths), chat_template="none", chat_template_reason=why)


def template_source(source: str, gguf_file: str | None = None) -> str:
    """Where a tokenizer loaded from `source` (a directory, a GGUF or a Hub id) got its chat template."""
    path = Path(source)
    if gguf_file or path.suffix == ".gguf":
        return f"the GGUF metadata (tokenizer.chat_template) of {path / gguf_file if gguf_file else path}"
    if path.is_dir():
        for name in ("chat_template.jinja", "chat_template.json"):
            if (path / name).exists():
                return f"{name} of {path}"
        config = path / "tokenizer_config.json"
        if config.exists() and '"chat_template"' in config.read_text(errors="replace"):
            return f"tokenizer_config.json of {path}"
        return f"the tokenizer loaded from {path}"
    return f"the tokenizer of {source} (Hugging Face Hub)"


def _ids(out: Any) -> list[int]:
    """Token ids from a tokenizer's answer (a list, or a BatchEncoding-like mapping)."""
    if hasattr(out, "keys"):
        out = out["input_ids"]
    return [int(i) for i in out]


def _wrap(tokenizer: Any, text: str, template: bool) -> list[int]:
    """`text` as the model receives it: through the chat template (a user turn, then the
    assistant's generation prompt), or as the tokenizer encodes it (its BOS included)."""
    if template:
        return _ids(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=True,
                                                  add_generation_prompt=True, return_dict=False))
    return _ids(tokenizer(text)["input_ids"])


def _rendered(tokenizer: Any, text: str) -> str:
    return str(tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                             add_generation_prompt=True))


def _common_prefix(seqs: list[list[int]]) -> int:
    n = min(len(s) for s in seqs)
    k = 0
    while k < n and all(s[k] == seqs[0][k] for s in seqs):
        k += 1
    return k


def _common_suffix(seqs: list[list[int]], limit: int) -> int:
    k = 0
    while k < limit and all(s[-1 - k] == seqs[0][-1 - k] for s in seqs):
        k += 1
    return k


def fit_length(ids: list[int], probes: list[list[int]], separator: list[int], n: int) -> list[int]:
    """`ids` (one prompt) made exactly `n` tokens long by the module doc's rule: the template's
    tokens (shared with the `probes`) kept, the text's tokens between them repeated and cut."""
    seqs = [ids, *probes]
    pre = _common_prefix(seqs)
    post = _common_suffix(seqs, min(len(s) for s in seqs) - pre)
    body = ids[pre:len(ids) - post]
    room = n - pre - post
    if room < 1:
        raise TrialFailed(f"prompt_tokens={n} leaves no room for the text: the prompt's own tokens (template, "
                          f"BOS) are {pre + post}. Use prompt_tokens > {pre + post}, or chat_template=off.")
    if not body:
        raise TrialFailed("prompt_tokens cannot stretch an empty prompt text")
    filled: list[int] = []
    while len(filled) < room:
        filled += body + separator
    return ids[:pre] + filled[:room] + ids[len(ids) - post:]


def tokenizer_prompts(texts: list[str], tokenizer: Any, *, model: Any, prompt_tokens: int | None, chat_template: str,
                      source: str, context: int | None = None) -> Prompts:
    """Prompts as token ids: through the chat template where `template_decision` says so,
    made exactly `prompt_tokens` long where set. `source` says where the template came from;
    `context` (the model's positions) bounds prompt_tokens."""
    apply, reason = template_decision(chat_template, model, bool(getattr(tokenizer, "chat_template", None)), source)
    if prompt_tokens is None:
        ids = [_wrap(tokenizer, t, apply) for t in texts]
        shown = [_rendered(tokenizer, t) for t in texts] if apply else list(texts)
    else:
        n = int(prompt_tokens)
        if n < 1:
            raise TrialFailed(f"prompt_tokens={n}: a prompt needs at least one token")
        if context and n > context:
            raise TrialFailed(f"prompt_tokens={n} is longer than the model's context ({context} positions).")
        probes = [_wrap(tokenizer, p, apply) for p in PROBES]
        separator = _ids(tokenizer(SEPARATOR, add_special_tokens=False)["input_ids"])
        ids = [fit_length(_wrap(tokenizer, t, apply), probes, separator, n) for t in texts]
        shown = [str(tokenizer.decode(i, skip_special_tokens=False)) for i in ids]
    return Prompts(inputs=ids, texts=shown, input_tokens=[len(i) for i in ids],
                   chat_template="applied" if apply else "none", chat_template_source=source if apply else None,
                   chat_template_reason=reason)
