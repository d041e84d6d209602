"""A task workload through `python -m energyray`: the tiny model (offline) answers four QA
requests in batches of two, with real and with random weights, on a real local Ray; the
trials rows, the `responses` table, accuracy and the summary. The tiny model is built random
either way: its accuracy is null with the reason (scored accuracy on the real default model:
test_tasks_real_model.py)."""

from __future__ import annotations

import pandas as pd
import pytest

from energyray.store import Store


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, shared_cache, cli):
    root = tmp_path_factory.mktemp("tasks-cli")
    store = root / "store"
    args = ["sweep=smoke", "precision=baseline", "sweep.repeats=1", "+sweep.grid.weights=[real,dummy]", "task=qa",
            "requests=4", "batch_size=2", "generation.cpu_max_new_tokens=4", f"store.path={store}", f"cache_dir={shared_cache}",
            "sampler.interval_s=0.01"]
    return store, cli(args, root / "hydra")


def test_a_workload_of_four_requests_in_two_batches(qa_run):
    store, r = qa_run
    assert r.returncode == 0, r.explain()
    trials = Store(store).read("trials").set_index("weights")
    assert sorted(trials.index) == ["dummy", "real"] and (trials["status"] == "ok").all(), r.explain()
    assert (trials["requests"] == 4).all() and (trials["batches"] == 2).all()
    assert trials.loc["dummy", "output_tokens"] == 4 * 4  # random weights: ignore_eos, every request 4 tokens
    assert 4 <= trials.loc["real", "output_tokens"] <= 4 * 4
    for _, t in trials.iterrows():
        assert t["energy_j"] > 0 and t["j_per_request"] == pytest.approx(t["energy_j"] / 4)
    real, dummy = trials.loc["real"], trials.loc["dummy"]
    assert pd.isna(real["accuracy"]) and pd.isna(dummy["accuracy"])  # null, never 0
    assert real["accuracy_reason"] == "random weights (tiny-llama is built random): the text is noise"
    assert dummy["accuracy_reason"] == "random weights: the text is noise"
    assert (trials["scored_requests"] == 0).all()
    assert (trials["task_items"] >= 24).all() and (trials["task_source"] == "builtin").all()


def test_every_request_has_a_responses_row_whose_energy_sums_to_the_trials(qa_run):
    store, r = qa_run
    assert r.returncode == 0, r.explain()
    trials = Store(store).read("trials").set_index("trial_id")
    responses = Store(store).read("responses")
    assert len(responses) == 8 and set(responses["trial_id"]) == set(trials.index)
    assert set(responses["sweep"]) == {"smoke"}
    for tid, g in responses.groupby("trial_id"):
        g = g.sort_values("request_index")
        assert g["request_index"].tolist() == [0, 1, 2, 3] and g["batch_index"].tolist() == [0, 0, 1, 1]
        assert g["item_id"].tolist() == ["qa-01", "qa-02", "qa-03", "qa-04"]
        random_ids = trials.loc[tid, "weights"] == "dummy"  # the prompt as sent: random ids, no text
        assert g["prompt"].str.contains("random token ids" if random_ids else "Question:").all(), g["prompt"]
        assert g["gold"].notna().all() and (g["output_tokens"] >= 1).all() and (g["input_tokens"] > 0).all()
        assert g["energy_j"].sum() == pytest.approx(trials.loc[tid, "energy_j"], rel=1e-6)
        assert g["energy_share_rule"].str.contains("prefill=prompt_tokens").all()
    real = responses[responses["trial_id"] == trials.index[trials["weights"] == "real"][0]]
    assert real["response"].notna().all()  # random weights have no tokenizer here: no text, null
    assert real["correct"].isna().all() and real["scorer"].isna().all()  # random init: kept, not scored
    assert real["category"].notna().all()


def test_the_summary_has_no_accuracy_column_where_nothing_was_scored(qa_run):
    _, r = qa_run
    assert r.returncode == 0, r.explain()
    assert "J/token" in r.stdout and "-: not scored" not in r.stdout, r.stdout


def test_requests_out_of_range_is_refused_naming_the_choices(energyray, tmp_path):
    r = energyray("sweep=smoke", "requests=0", f"store.path={tmp_path / 'store'}", "dry_run=true")
    assert r.returncode == 2, r.explain()
    assert "requests=0" in r.stderr and "all" in r.stderr and "Traceback" not in r.output


def test_an_enabled_judge_without_its_key_is_refused_before_anything_runs(energyray, tmp_path):
    r = energyray("sweep=smoke", "tasks.judge.enabled=true", "tasks.judge.api_key_env=ENERGYRAY_TEST_NO_SUCH_KEY",
                  f"store.path={tmp_path / 'store'}", "dry_run=true")
    assert r.returncode == 2, r.explain()
    assert "ENERGYRAY_TEST_NO_SUCH_KEY" in r.stderr and "Traceback" not in r.output
