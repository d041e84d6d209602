"""Short names of configurations, the same in every chart, the failures table and the cheapest answer.

A configuration is named by the axes whose value differs among the configurations named together
(the model, precision and hardware where none does); a null value, and an axis at its default
(chat template auto, requests as one batch), is left out. Values read as the summary's title
writes them: bare for model, backend, precision and hardware ("nf4"), named otherwise
("batch 8", "task qa"). Where two configurations would read the same, the axes that tell them
apart are added to their names. assets/dashboard.js has the same rule (relabel): keep both alike.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from energyray.report.summary import CONFIG_KEYS, _at_default, _constant, _norm

# the axes that name a configuration where no axis differs
NAMING: tuple[str, ...] = ("model", "precision", "hardware")


def part(axis: str, key: Mapping[str, Any]) -> str:
    """How `axis` of `key` reads in a name: '' where null or at its default."""
    v = _norm(key.get(axis))
    if v is None:
        return ""
    b = _norm(key.get("batch_size")) if axis == "requests" else None  # requests at one batch: the default
    try:
        return _part(axis, type(v).__name__, v, type(b).__name__, b)
    except TypeError:  # an unhashable value
        return _part.__wrapped__(axis, type(v).__name__, v, type(b).__name__, b)


@functools.lru_cache(maxsize=65536)
def _part(axis: str, _vtype: str, v: Any, _btype: str, b: Any) -> str:
    # each (axis, value) worded once: a page names thousands of configurations of few distinct
    # values; the types are in the cache key so that True, 1 and 1.0 stay apart
    return "" if _at_default(axis, {"batch_size": b, axis: v}) else _constant(axis, v)


def parts(key: Mapping[str, Any]) -> list[str]:
    """Every axis of CONFIG_KEYS as a name shows it ('' where left out)."""
    return [part(a, key) for a in CONFIG_KEYS]


def parts_columns(columns: Mapping[str, Sequence[Any]], n: int) -> list[list[str]]:
    """`parts` of n keys given by column (axis -> its n values; an axis not given is null), each
    distinct value of an axis worded once: thousands of configurations share a few values."""
    cols = [column_parts(a, columns[a], columns.get("batch_size")) if a in columns else [""] * n
            for a in CONFIG_KEYS]
    return [list(p) for p in zip(*cols, strict=True)] if cols else [[] for _ in range(n)]


def column_parts(axis: str, values: Sequence[Any], batch: Sequence[Any] | None = None) -> list[str]:
    """part(axis, ...) of each value; for requests against the same row's batch_size in `batch`."""
    if axis == "requests":
        bs = batch if batch is not None else [None] * len(values)
        return [part(axis, {axis: v, "batch_size": b}) for v, b in zip(values, bs, strict=True)]
    seen: dict[tuple[type, Any], str] = {}
    out = []
    for v in values:
        v = _norm(v)
        try:
            word = seen.get((type(v), v))
            if word is None:
                word = seen[(type(v), v)] = part(axis, {axis: v})
        except TypeError:  # an unhashable value
            word = part(axis, {axis: v})
        out.append(word)
    return out


def names(all_parts: Sequence[Sequence[str]], sep: str = " · ") -> list[str]:
    """A name per configuration from their `parts` (in CONFIG_KEYS order): see the module's rule."""
    n = len(CONFIG_KEYS)
    differ = [i for i in range(n) if len({p[i] for p in all_parts} - {""}) > 1]
    idx = differ or [CONFIG_KEYS.index(a) for a in NAMING]
    out = [sep.join(p[i] for i in idx if p[i]) for p in all_parts]
    # configurations that read the same but differ: add the axes that tell them apart
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(out):
        groups.setdefault(name, []).append(j)
    for members in groups.values():
        if len({tuple(all_parts[j]) for j in members}) < 2:
            continue
        extra = [i for i in range(n) if i not in idx and len({all_parts[j][i] for j in members}) > 1]
        for j in members:
            out[j] = sep.join(all_parts[j][i] for i in sorted({*idx, *extra}) if all_parts[j][i])
    return [name or "(no axes)" for name in out]


def config_names(keys: Sequence[Mapping[str, Any]], sep: str = " · ") -> list[str]:
    """The name of each configuration key (a mapping of CONFIG_KEYS), named together."""
    return names([parts(k) for k in keys], sep)


def full_name(key: Mapping[str, Any], sep: str = " · ") -> str:
    """Every axis with a value (defaults too), for hover text: the whole key."""
    values = [(a, _norm(key.get(a))) for a in CONFIG_KEYS]
    return sep.join(_word(a, v) for a, v in values if v is not None)


def _word(axis: str, v: Any) -> str:
    try:
        return _constant_cached(axis, type(v).__name__, v)
    except TypeError:  # an unhashable value
        return _constant(axis, v)


@functools.lru_cache(maxsize=65536)
def _constant_cached(axis: str, _vtype: str, v: Any) -> str:
    return _constant(axis, v)
