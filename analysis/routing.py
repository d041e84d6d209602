"""Routing (model cascades): what answering with a small model, and escalating to a larger one
by a stated rule, would have cost and scored, from the responses the models gave on the same
items.

A system is one configuration: a model with its backend, weights, precision, batch size,
prompt variant, hardware and lengths (every grid axis but the task); a model at two precisions
is two systems, labelled `model@value` by the values that tell them apart. Items match across
systems by (task, item_id); a system's repeated answers to one item (repeats, or a workload
that cycles its items) are averaged: its correctness (a share in [0, 1]), energy_j, stated
confidence and whether an answer was extracted.

A cascade asks the first system; where the rule says so it asks the next one as well, and so
on; the last system's answer is final. Rules, applied to the system that just answered:
  confidence  escalate when its stated confidence is below the threshold, or it stated none
  format      escalate when no answer could be extracted from its response (most repeats)
  oracle      escalate exactly when it is wrong (most repeats): the upper bound of any rule
Energy of an item: every system asked, summed. Per rule: accuracy, J per request (per item),
J per correct answer, and the share escalated; beside each system alone on the same items.

    python -m energyray route --store outputs/store --sweep accuracy --models gemma3-4b,llama3-70b@nf4
"""

from __future__ import annotations

import argparse
import math
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from energyray.errors import EnergyRayError
from energyray.grid import AXES
from energyray.store import Store, _safe

RULES = ("confidence", "format", "oracle")
# every grid axis but the task: what makes two sets of answers two systems
SYSTEM_KEYS = tuple(a for a in AXES if a != "task")
WIDTH = 100  # the printed table fits this many columns


class RoutingError(EnergyRayError):
    """Routing cannot be computed from these rows; the message says why and what to run."""


@dataclass
class Row:
    name: str
    rule: str | None  # None: a system alone
    items: int
    accuracy: float
    j_per_request: float | None  # None: some energy unknown
    j_per_correct: float | None
    escalated: float | None  # share of items asked of more than the first system; None for a system alone


@dataclass
class Routing:
    systems: list[str]  # the cascade's order, small first
    items: int  # items every system answered (and that are scored)
    tasks: list[str]
    threshold: float
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _label_keys(systems: pd.DataFrame) -> list[str]:
    return [k for k in SYSTEM_KEYS if k != "model" and k in systems and systems[k].astype(str).nunique() > 1]


def _text(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "default"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def systems_of(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per system among the ok trials: its keys, label, weights, params_b and trial ids."""
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    ok = ok.reindex(columns=list(dict.fromkeys(["trial_id", *SYSTEM_KEYS, "params_b", *ok.columns])))
    keys = ok[list(SYSTEM_KEYS)].astype(object).map(_text)
    ok = ok.assign(_key=[tuple(r) for r in keys.itertuples(index=False, name=None)])
    rows = []
    for key, g in ok.groupby("_key", sort=False):
        params = pd.to_numeric(g["params_b"], errors="coerce").dropna()
        rows.append({**dict(zip(SYSTEM_KEYS, key, strict=True)), "_key": key,
                     "params_b": float(params.iloc[0]) if len(params) else math.nan,
                     "trial_ids": set(g["trial_id"].astype(str))})
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    varying = _label_keys(out)
    out["label"] = ["@".join([str(r["model"]), *(str(r[k]) for k in varying)]) for _, r in out.iterrows()]
    return out


def _pick(systems: pd.DataFrame, entry: str) -> pd.Series:
    model, *values = entry.split("@")
    hits = systems[systems["model"] == model]
    for v in values:
        hits = hits[[v in [str(r[k]) for k in SYSTEM_KEYS] for _, r in hits.iterrows()]]
    if hits.empty:
        raise RoutingError(f"--models: no system {entry!r} among the real-weights ok trials; "
                           f"choose from: {', '.join(systems['label'])}.")
    if len(hits) > 1:
        raise RoutingError(f"--models: {entry!r} matches {len(hits)} systems ({', '.join(hits['label'])}); "
                           "name one as MODEL@VALUE (e.g. the precision).")
    return hits.iloc[0]


def _correct(v: Any) -> float:
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return math.nan
    return float(bool(v))


def per_item(responses: pd.DataFrame, trials: pd.DataFrame, systems: pd.DataFrame) -> pd.DataFrame:
    """Each system's answers averaged per item: label, task, item_id, correct (share of scored
    answers), scored, energy_j (null if any answer's energy is unknown), confidence, answered.
    `systems`: systems_of(trials), or some of its rows."""
    owner = {tid: r["label"] for _, r in systems.iterrows() for tid in r["trial_ids"]}
    task_of = dict(zip(trials["trial_id"].astype(str), trials["task"].astype(str), strict=True))
    r = responses.reindex(columns=["trial_id", "item_id", "correct", "energy_j", "confidence",
                                   "extracted_answer"]).copy()
    r["trial_id"] = r["trial_id"].astype(str)
    r = r[r["trial_id"].isin(owner)]
    r["label"] = r["trial_id"].map(owner)
    r["task"] = r["trial_id"].map(task_of)
    r["item_id"] = r["item_id"].astype(str)
    r["correct"] = [_correct(v) for v in r["correct"].astype(object)]
    r["energy_j"] = pd.to_numeric(r["energy_j"], errors="coerce")
    r["confidence"] = pd.to_numeric(r["confidence"], errors="coerce")
    extracted = r["extracted_answer"]
    r["answered"] = (extracted.notna() & (extracted.astype(str).str.strip() != "")).astype(float)
    g = r.groupby(["label", "task", "item_id"], sort=False)
    out = g.agg(correct=("correct", "mean"), scored=("correct", "count"), confidence=("confidence", "mean"),
                answered=("answered", "mean"), answers=("trial_id", "size"))
    out["energy_j"] = g["energy_j"].apply(lambda e: e.mean() if e.notna().all() else math.nan)
    return out.reset_index()


def _escalate(rule: str, threshold: float, correct: float, confidence: float, answered: float) -> bool:
    if rule == "oracle":
        return correct < 0.5
    if rule == "format":
        return answered < 0.5
    return bool(math.isnan(confidence) or confidence < threshold)


def _metrics(name: str, rule: str | None, acc: list[float], energy: list[float], escalated: list[bool] | None) -> Row:
    n = len(acc)
    correct = sum(acc)
    total = math.nan if any(math.isnan(e) for e in energy) else sum(energy)
    return Row(name=name, rule=rule, items=n, accuracy=correct / n,
               j_per_request=None if math.isnan(total) else total / n,
               j_per_correct=None if math.isnan(total) or correct == 0 else total / correct,
               escalated=None if escalated is None else sum(escalated) / n)


def route(responses: pd.DataFrame, trials: pd.DataFrame, models: Sequence[str] | None = None,
          rules: Sequence[str] = RULES, threshold: float = 0.5, task: str | None = None) -> Routing:
    """The cascade of `models` (labels or model names, small first) under each rule, and each
    system alone, over the scored items they all answered. See the module's docstring."""
    if not 0 <= threshold <= 1:
        raise RoutingError(f"--threshold {threshold}: a stated confidence is a share from 0 to 1 "
                           "(0.5 for 50 %).")
    bad = [r for r in rules if r not in RULES]
    if bad:
        raise RoutingError(f"unknown rule {bad[0]!r}; rules: {', '.join(RULES)} (or all).")
    if responses.empty or trials.empty:
        raise RoutingError("no responses: routing needs the `responses` table of a scored sweep.")
    if task is not None:
        trials = trials[trials["task"].astype(str) == task]
    notes: list[str] = []
    # random weights: weights=dummy, or a model built random (its accuracy_reason says so)
    random = trials["weights"].astype(str) == "dummy" if "weights" in trials else pd.Series(False, trials.index)
    if "accuracy_reason" in trials:
        random = random | trials["accuracy_reason"].fillna("").astype(str).str.startswith("random weights")
    systems, dummy = systems_of(trials[~random]), systems_of(trials[random])
    if systems.empty and dummy.empty:
        raise RoutingError("no ok trials" + (f" of task {task!r}" if task else "") + " to route between.")
    if systems.empty:
        raise RoutingError("only random-weights answers (weights=dummy): their accuracy is null, the text is "
                           "noise. Routing needs real weights: run the sweep with weights=real.")
    if models:
        for entry in models:
            model = entry.split("@")[0]
            if (systems["model"] != model).all() and len(dummy) and (dummy["model"] == model).any():
                raise RoutingError(f"{model} has only random-weights answers (weights=dummy): their accuracy is "
                                   "null, the text is noise. Routing needs real weights: run its sweep with "
                                   "weights=real.")
        chosen = [_pick(systems, m) for m in models]
        labels = [str(c["label"]) for c in chosen]
        if len(set(labels)) < len(labels):
            raise RoutingError(f"--models names one system twice: {', '.join(labels)}.")
    else:
        if len(systems) != 2:
            what = ("fewer than two" if len(systems) < 2 else f"{len(systems)}")
            raise RoutingError(f"{what} real-weights systems with answers"
                               + (f" ({', '.join(systems['label'])})" if len(systems) else "")
                               + ("; choose the cascade, small first: --models A,B" if len(systems) > 2 else
                                  "; routing needs two or more models on the same items"))
        labels = list(systems.sort_values("params_b", na_position="last")["label"])
    if len(labels) < 2:
        raise RoutingError("--models needs two or more systems, small first (e.g. --models gemma3-1b,llama3-8b).")
    if len(dummy):
        notes.append(f"left out, random weights (accuracy null: the text is noise): {', '.join(dummy['label'])}")

    items = per_item(responses, trials, systems[systems["label"].isin(labels)])
    have = {lab: set(zip(g["task"], g["item_id"], strict=True)) for lab, g in items.groupby("label")}
    if len(have) < len(labels):
        none = [lab for lab in labels if lab not in have]
        raise RoutingError(f"no responses of {', '.join(none)}: fewer than two models share items.")
    every = set.union(*have.values())
    shared = set.intersection(*have.values())
    for lab in labels:
        missing = sorted(every - have[lab])
        if missing:
            shown = ", ".join(f"{t}/{i}" for t, i in missing[:4]) + (", ..." if len(missing) > 4 else "")
            notes.append(f"{lab} has no answer to {len(missing)} of the {len(every)} items ({shown}): "
                         "those items are left out of every row")
    if not shared:
        raise RoutingError(f"fewer than two models share items: {', '.join(labels)} answered no item in common.")
    table = {lab: g.set_index(["task", "item_id"]) for lab, g in items.groupby("label")}
    unscored = sorted(k for k in shared if any(table[lab].loc[k, "scored"] == 0 for lab in labels))
    if unscored:
        notes.append(f"{len(unscored)} shared item(s) not scored (no gold answer), left out: "
                     + ", ".join(f"{t}/{i}" for t, i in unscored[:4]) + (", ..." if len(unscored) > 4 else ""))
    keys = sorted(shared - set(unscored))
    if not keys:
        raise RoutingError(f"none of the {len(shared)} items {', '.join(labels)} share is scored: "
                           "routing needs a task with gold answers.")

    col = {lab: {c: table[lab].loc[keys, c].astype(float).tolist() for c in
                 ("correct", "energy_j", "confidence", "answered")} for lab in labels}
    result = Routing(systems=labels, items=len(keys), tasks=sorted({t for t, _ in keys}), threshold=threshold,
                     notes=notes)
    for lab in labels:
        result.rows.append(_metrics(lab, None, col[lab]["correct"], col[lab]["energy_j"], None))
        if "confidence" in rules and all(math.isnan(c) for c in col[lab]["confidence"]) and lab != labels[-1]:
            notes.append(f"no answer of {lab} states a confidence: the confidence rule escalates every item")
        if any(math.isnan(e) for e in col[lab]["energy_j"]):
            notes.append(f"energy unknown for some answers of {lab} (energy_j null: see the trials' "
                         "energy_reason): its J figures, and the cascades', are left blank")
    for rule in rules:
        acc, energy, escalated = [], [], []
        for i in range(len(keys)):
            level, e = 0, col[labels[0]]["energy_j"][i]
            while level < len(labels) - 1:
                c = col[labels[level]]
                if not _escalate(rule, threshold, c["correct"][i], c["confidence"][i], c["answered"][i]):
                    break
                level += 1
                e += col[labels[level]]["energy_j"][i]
            acc.append(col[labels[level]]["correct"][i])
            energy.append(e)
            escalated.append(level > 0)
        result.rows.append(_metrics(" -> ".join(labels), rule, acc, energy, escalated))
    return result


# -- the printed table ------------------------------------------------------------------------------
def _num(v: float | None) -> str:
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _pct(v: float | None) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.1f}%"


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_table(r: Routing, width: int = WIDTH) -> str:
    rule_text = {"confidence": f"confidence < {r.threshold:g}", "format": "format", "oracle": "oracle (bound)"}
    last = next(row for row in r.rows if row.rule is None and row.name == r.systems[-1])
    heads = ["accuracy", "J/request", "J/correct", "escalated", "J vs last"]
    widths = [9, 10, 10, 10, 10]
    name_w = width - sum(w + 1 for w in widths)
    lines = [_cut(f"routing over {r.items} item(s) ({', '.join(r.tasks)}); cascade, small first: "
                  + " -> ".join(r.systems), width)]
    lines.append(" " * name_w + "".join(" " + h.rjust(w) for h, w in zip(heads, widths, strict=True)))
    for row in r.rows:
        name = f"alone: {row.name}" if row.rule is None else f"cascade, {rule_text[row.rule]}"
        vs = None
        if row.j_per_request is not None and last.j_per_request:
            vs = row.j_per_request / last.j_per_request
        cells = [_pct(row.accuracy), _num(row.j_per_request), _num(row.j_per_correct), _pct(row.escalated),
                 _pct(vs)]
        lines.append(_cut(name, name_w).ljust(name_w)
                     + "".join(" " + c.rjust(w) for c, w in zip(cells, widths, strict=True)))
    said = {"confidence": f"confidence, a stated confidence below {r.threshold:g} or none",
            "format": "format, no answer extracted", "oracle": "oracle, a wrong answer (the upper bound)"}
    rules = [said[row.rule] for row in r.rows if row.rule is not None]
    lines.append(textwrap.fill(
        "A cascade's energy: the first model's on every item plus each next model's on the items escalated "
        f"to it. J/request: per item; J/correct: over the correct answers; J vs last: J/request against "
        f"{r.systems[-1]} alone. Escalate on {'; '.join(rules)}. An item's repeated answers are averaged "
        "(correct: a share; a rule follows the majority).", width))
    lines += [textwrap.fill(f"note: {n}", width, subsequent_indent="  ") for n in r.notes]
    return "\n".join(lines)


def route_main(argv: list[str] | None = None) -> int:
    """`python -m energyray route --store PATH [...]`: the table, or RoutingError (exit 2)."""
    ap = argparse.ArgumentParser(prog="python -m energyray route",
                                 description="Energy and accuracy of a model cascade (small model first, escalate "
                                             "to a larger one by a rule) from the responses of a scored sweep.")
    ap.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    ap.add_argument("--sweep", help="only this sweep's trials")
    ap.add_argument("--task", help="only this task's items")
    ap.add_argument("--models", help="the cascade, small first: model names or MODEL@VALUE labels, comma-separated "
                                     "(default: the two systems in the store, smaller first)")
    ap.add_argument("--rule", default="all", choices=[*RULES, "all"], help="when to escalate (default: all rules)")
    ap.add_argument("--threshold", type=float, default=0.5,
                    help="confidence rule: escalate below this stated confidence, 0-1 (default: 0.5)")
    args = ap.parse_args(argv)
    store = Store(args.store)
    where = f"{args.store}" + (f" for sweep {args.sweep!r}" if args.sweep else "")
    responses = store.read("responses", sweep=args.sweep)
    trials = store.read("trials", sweep=args.sweep)
    if args.sweep and not trials.empty:
        trials = trials[trials["sweep"].astype(str).isin({args.sweep, _safe(args.sweep)})]
    if responses.empty or trials.empty:
        raise RoutingError(f"no responses in {where}: run a scored sweep first "
                           "(e.g. python -m energyray sweep=accuracy), then route its store.")
    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    rules = RULES if args.rule == "all" else (args.rule,)
    print(format_table(route(responses, trials, models, rules, args.threshold, args.task)))
    return 0


if __name__ == "__main__":
    sys.exit(route_main())
