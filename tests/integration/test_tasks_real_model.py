"""Every built-in task on the real default model (Gemma 3 270M, real weights, CPU) through
`python -m energyray`: one sweep, two seeded items of each task in one batch of two, 16 new
tokens. The trials' accuracy (scored tasks: a share; longform: null, no gold), one `responses`
row per request with its text, gold, verdict and energy share, and the per-category table of
the accuracy sweep's header, computed with DuckDB over the store. The GGUF conversion is cached
in ~/.cache/energyray (or $ENERGYRAY_CACHE), shared with test_default_sweep.py; about 1.5 minutes
once converted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from energyray import tasks
from energyray.config import TasksConfig
from energyray.store import Store
from energyray.tasks.base import Item

pytestmark = pytest.mark.slow

TASKS = ("qa", "summarization", "reasoning", "hle_style", "longform")
LIMIT, SEED = 2, 18  # seed 18's two hle_style items: Math (exact match) and Chemistry (multiple choice)
NEW_TOKENS = 16
# the scorer each task's items get (hle_style: by the item's answer type)
SCORERS = {"qa": {"exact_match"}, "summarization": {"rouge_l"}, "reasoning": {"numeric"},
           "hle_style": {"exact_match", "multiple_choice"}}
PER_CATEGORY = """
SELECT t.task, r.category, count(*) AS requests, avg(r.correct::int) AS accuracy,
       sum(r.energy_j) AS energy_j, sum(r.energy_j) / nullif(sum(r.correct::int), 0) AS j_per_correct,
       sum(r.hit_max_new_tokens::int) AS hit_max_new_tokens
FROM read_parquet('{store}/responses/**/*.parquet', hive_partitioning=true, union_by_name=true) r
JOIN read_parquet('{store}/trials/**/*.parquet', hive_partitioning=true, union_by_name=true) t
USING (trial_id) WHERE t.sweep = 'smoke' AND r.correct IS NOT NULL GROUP BY ALL ORDER BY ALL
"""


def sampled(task: str) -> list[Item]:
    return list(tasks.load(task, "default", TasksConfig(limit=LIMIT, sample_seed=SEED)).items)


@pytest.fixture(scope="module")
def real_run(cli, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tasks-real")
    cache = os.environ.get("ENERGYRAY_CACHE") or str(Path.home() / ".cache" / "energyray")
    args = ["sweep=smoke", "model=gemma3-270m", "weights=real", "precision=baseline", "sweep.repeats=1",
            f"sweep.grid.task=[{','.join(TASKS)}]", "requests=all", "batch_size=2",
            f"+sweep.grid.max_new_tokens=[{NEW_TOKENS}]", f"tasks.limit={LIMIT}", f"tasks.sample_seed={SEED}",
            "measurement.idle_s=0", f"store.path={tmp / 'store'}", f"cache_dir={cache}"]
    r = cli(args, tmp / "hydra", timeout=900)  # the first run converts the GGUF (~1 min)
    store = Store(tmp / "store")
    return r, tmp / "store", store.read("trials"), store.read("responses")


def test_the_seed_samples_two_categories_and_both_hle_answer_types():
    hle = sampled("hle_style")
    assert len({it.category for it in hle}) == 2
    assert {it.answer_type for it in hle} == {"exact_match", "multiple_choice"}


def test_every_task_runs_and_the_scored_ones_have_accuracy(real_run):
    r, _, trials, _ = real_run
    assert r.returncode == 0, r.explain()
    t = trials.set_index("task")
    assert sorted(t.index) == sorted(TASKS) and (t["status"] == "ok").all(), t["error"].tolist()
    assert (t["model"] == "gemma3-270m").all() and (t["weights"] == "real").all()
    assert (t["max_new_tokens_used"] == NEW_TOKENS).all() and (t["energy_j"] > 0).all()
    for task in TASKS:
        row = t.loc[task]
        assert row["requests"] == row["task_items"] == len(sampled(task)) and row["batches"] == 1
        if task == "longform":
            assert pd.isna(row["accuracy"]) and row["accuracy_reason"] == "the task has no gold answers"
            assert row["scored_requests"] == 0
            continue
        assert isinstance(row["accuracy"], float) and 0.0 <= row["accuracy"] <= 1.0, (task, row["accuracy"])
        assert pd.isna(row["accuracy_reason"]) and row["scored_requests"] == LIMIT
        assert row["correct_requests"] == round(row["accuracy"] * LIMIT)


def test_every_request_has_its_response_gold_verdict_and_energy_share(real_run):
    r, _, trials, responses = real_run
    assert r.returncode == 0, r.explain()
    t = trials.set_index("trial_id")
    assert set(responses["trial_id"]) == set(t.index)
    for tid, g in responses.groupby("trial_id"):
        task, g = t.loc[tid, "task"], g.sort_values("request_index")
        items = sampled(task)
        assert g["item_id"].tolist() == [it.id for it in items] and g["request_index"].tolist() == list(range(len(items)))
        assert g["response"].map(lambda x: isinstance(x, str) and len(x) > 0).all(), g["response"]
        assert g["response"].iloc[0][:500] == t.loc[tid, "sample_output"]  # the row keeps 500 characters, not this
        assert (g["output_tokens"] >= 1).all() and (g["output_tokens"] <= NEW_TOKENS).all()
        assert g["energy_j"].sum() == pytest.approx(t.loc[tid, "energy_j"], rel=1e-6)
        assert (g["energy_j"] > 0).all()
        # hit_max_new_tokens: each request's, and the trial's count of them
        assert g["hit_max_new_tokens"].tolist() == (g["output_tokens"] == NEW_TOKENS).tolist()
        assert t.loc[tid, "hit_max_new_tokens"] == g["hit_max_new_tokens"].sum()
        if task == "longform":
            assert g["gold"].isna().all() and g["correct"].isna().all() and g["scorer"].isna().all()
            continue
        assert g["gold"].tolist() == [it.gold for it in items]
        assert g["category"].tolist() == [it.category for it in items]
        assert all(isinstance(c, bool) for c in g["correct"]), g["correct"]
        assert set(g["scorer"]) <= SCORERS[task]
        if task == "hle_style":  # each item by its own answer type
            assert g["scorer"].tolist() == [it.answer_type for it in items]
        assert sum(g["correct"]) == t.loc[tid, "correct_requests"]


@pytest.mark.extra("report")
def test_per_category_accuracy_and_energy_per_correct_answer_with_duckdb(real_run):
    import duckdb

    r, store, _, responses = real_run
    assert r.returncode == 0, r.explain()
    table = duckdb.sql(PER_CATEGORY.format(store=store.as_posix())).df()
    assert set(table["task"]) == set(SCORERS)  # every scored task; longform has no verdicts
    assert table["requests"].sum() == LIMIT * len(SCORERS)
    hle = table[table["task"] == "hle_style"]
    assert sorted(hle["category"]) == sorted({it.category for it in sampled("hle_style")}) and len(hle) >= 2
    assert table["accuracy"].between(0, 1).all() and (table["energy_j"] > 0).all()
    no_correct = table["accuracy"] == 0
    assert table.loc[no_correct, "j_per_correct"].isna().all()  # no correct answer: null, not infinite
    some = table[~no_correct]
    assert some["j_per_correct"].to_numpy() == pytest.approx((some["energy_j"] / (some["accuracy"] * some["requests"]))
                                                             .to_numpy())
    scored = responses[responses["correct"].notna()]
    assert table["hit_max_new_tokens"].sum() == scored["hit_max_new_tokens"].sum()


def test_the_summary_shows_accuracy_and_longform_as_not_scored(real_run):
    r, _, trials, _ = real_run
    assert r.returncode == 0, r.explain()
    assert "-: not scored" in r.stdout and "5 ok, 0 failed" in r.stdout, r.stdout
    longform = next(line for line in r.stdout.splitlines() if line.strip().startswith("longform"))
    assert longform.rstrip().endswith("-"), longform
