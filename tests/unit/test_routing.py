"""analysis/routing.py: a cascade's accuracy and energy from responses, on tables whose answers
are worked out by hand; and `python -m energyray route` on a store."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from energyray import cli
from energyray.store import Store

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))
from routing import RoutingError, format_table, route  # noqa: E402

AXES = {"backend": "transformers", "weights": "real", "precision": "baseline", "batch_size": 8,
        "task": "qa", "prompt_variant": "default", "hardware": "h100", "max_new_tokens": 64}


def _trial(tid: str, model: str, params_b: float, **axes) -> dict:
    return {"trial_id": tid, "sweep": "s", "status": "ok", "model": model, "params_b": params_b, **AXES, **axes}


def _answers(tid: str, correct: list, energy_j: float | list, confidence: list | None = None,
             extracted: list | None = None, items: list | None = None) -> list[dict]:
    n = len(correct)
    energy = energy_j if isinstance(energy_j, list) else [energy_j] * n
    return [{"trial_id": tid, "item_id": str(i), "correct": c, "energy_j": e,
             "confidence": None if confidence is None else confidence[k],
             "extracted_answer": "x" if extracted is None else extracted[k]}
            for k, (i, c, e) in enumerate(zip(items or range(1, n + 1), correct, energy, strict=True))]


def _by(result, rule=None, name=None) -> dict:
    [row] = [r for r in result.rows if r.rule == rule and (name is None or r.name == name)]
    return vars(row)


@pytest.fixture
def small_large():
    """small right on items 1-3 (1 J each), large right on 1-5 (10 J each). The small model is
    sure of 1-4 (wrong on 4), states no confidence on 5; its answer to 4 cannot be extracted."""
    trials = pd.DataFrame([_trial("t-small", "small", 1.0), _trial("t-large", "large", 70.0)])
    responses = pd.DataFrame(
        _answers("t-small", [True, True, True, False, False], 1.0, confidence=[0.9, 0.9, 0.9, 0.8, None],
                 extracted=["a", "b", "c", "", "e"])
        + _answers("t-large", [True] * 5, 10.0, confidence=[0.9] * 5))
    return responses, trials


def test_each_model_alone_and_the_oracle(small_large):
    r = route(*small_large)
    assert r.systems == ["small", "large"] and r.items == 5 and r.tasks == ["qa"]  # smaller first
    assert _by(r, name="small") == {"name": "small", "rule": None, "items": 5, "accuracy": 3 / 5,
                                    "j_per_request": 1.0, "j_per_correct": 5 / 3, "escalated": None}
    large = _by(r, name="large")
    assert (large["accuracy"], large["j_per_request"], large["j_per_correct"]) == (1.0, 10.0, 10.0)
    oracle = _by(r, "oracle")
    # escalates items 4 and 5: small on all five (5 J) + large on two (20 J)
    assert oracle["accuracy"] == 1.0 and oracle["escalated"] == pytest.approx(2 / 5)
    assert oracle["j_per_request"] == pytest.approx(25 / 5) and oracle["j_per_correct"] == pytest.approx(25 / 5)


def test_the_confidence_rule_escalates_low_or_missing_confidence(small_large):
    c = _by(route(*small_large, rules=["confidence"]), "confidence")
    # only item 5 (no confidence stated); item 4 is wrong but stated 0.8
    assert c["accuracy"] == pytest.approx(4 / 5) and c["escalated"] == pytest.approx(1 / 5)
    assert c["j_per_request"] == pytest.approx(15 / 5) and c["j_per_correct"] == pytest.approx(15 / 4)
    strict = _by(route(*small_large, rules=["confidence"], threshold=0.85), "confidence")
    assert strict["escalated"] == pytest.approx(2 / 5) and strict["accuracy"] == 1.0  # 0.8 < 0.85 too


def test_the_format_rule_escalates_when_no_answer_was_extracted(small_large):
    f = _by(route(*small_large, rules=["format"]), "format")
    assert f["escalated"] == pytest.approx(1 / 5) and f["accuracy"] == pytest.approx(4 / 5)  # item 4
    assert f["j_per_request"] == pytest.approx(15 / 5)


def test_repeats_are_averaged_per_item():
    trials = pd.DataFrame([_trial("s0", "small", 1), _trial("s1", "small", 1), _trial("l0", "large", 8)])
    responses = pd.DataFrame(
        _answers("s0", [True, False], [1.0, 1.0]) + _answers("s1", [True, False], [3.0, 5.0])
        + _answers("l0", [True, True], [10.0, 20.0]))
    r = route(responses, trials, rules=["oracle"])
    small = _by(r, name="small")
    assert small["j_per_request"] == pytest.approx((2.0 + 3.0) / 2) and small["accuracy"] == 0.5
    oracle = _by(r, "oracle")  # item 2 escalated: 2 + 3 + 20
    assert oracle["j_per_request"] == pytest.approx(25 / 2) and oracle["accuracy"] == 1.0


def test_a_chain_of_three_escalates_step_by_step():
    trials = pd.DataFrame([_trial("a", "s", 1), _trial("b", "m", 8), _trial("c", "l", 70)])
    responses = pd.DataFrame(_answers("a", [1, 1, 0, 0, 0], 1.0) + _answers("b", [1, 1, 1, 1, 0], 5.0)
                             + _answers("c", [1] * 5, 20.0))
    o = _by(route(responses, trials, models=["s", "m", "l"], rules=["oracle"]), "oracle")
    # s on 5 items, m on items 3-5, l on item 5
    assert o["accuracy"] == 1.0 and o["j_per_request"] == pytest.approx((5 + 15 + 20) / 5)
    assert o["escalated"] == pytest.approx(3 / 5)


def test_missing_and_unscored_items_are_reported_not_dropped_silently(small_large):
    responses, trials = small_large
    responses = responses[~((responses["trial_id"] == "t-large") & (responses["item_id"] == "5"))]
    responses = responses.astype({"correct": object})
    responses.loc[responses["item_id"] == "1", "correct"] = None  # no gold answer
    r = route(responses, trials)
    assert r.items == 3  # items 2-4
    text = "\n".join(r.notes)
    assert "large has no answer to 1 of the 5 items (qa/5)" in text
    assert "1 shared item(s) not scored (no gold answer), left out: qa/1" in text
    table = format_table(r)
    assert "note: large has no answer to 1 of the 5 items" in table


def test_items_match_on_task_and_item_id():
    trials = pd.DataFrame([_trial("a", "s", 1), _trial("b", "l", 9, task="reasoning")])
    responses = pd.DataFrame(_answers("a", [1, 1], 1.0) + _answers("b", [1, 1], 2.0))
    with pytest.raises(RoutingError, match="fewer than two models share items"):
        route(responses, trials)


def test_random_weights_are_refused_with_the_reason():
    trials = pd.DataFrame([_trial("a", "s", 1, weights="dummy"), _trial("b", "l", 9)])
    responses = pd.DataFrame(_answers("a", [None, None], 1.0) + _answers("b", [1, 1], 2.0))
    with pytest.raises(RoutingError, match=r"s has only random-weights answers \(weights=dummy\).*weights=real"):
        route(responses, trials, models=["s", "l"])
    with pytest.raises(RoutingError, match="fewer than two real-weights systems"):
        route(responses, trials)


def test_one_model_at_two_precisions_is_two_systems():
    trials = pd.DataFrame([_trial("a", "m", 7, precision="nf4"), _trial("b", "m", 7, precision="baseline")])
    responses = pd.DataFrame(_answers("a", [1, 0], 1.0) + _answers("b", [1, 1], 4.0))
    with pytest.raises(RoutingError, match=r"'m' matches 2 systems \(m@nf4, m@baseline\)"):
        route(responses, trials, models=["m", "m@baseline"])
    r = route(responses, trials, models=["m@nf4", "m@baseline"], rules=["oracle"])
    assert r.systems == ["m@nf4", "m@baseline"] and _by(r, "oracle")["j_per_request"] == pytest.approx(3.0)


def test_unknown_energy_leaves_the_j_figures_blank(small_large):
    responses, trials = small_large
    responses.loc[(responses["trial_id"] == "t-large") & (responses["item_id"] == "5"), "energy_j"] = None
    r = route(responses, trials, rules=["oracle", "format"])
    assert _by(r, name="large")["j_per_request"] is None and _by(r, "oracle")["j_per_correct"] is None
    assert _by(r, "format")["j_per_request"] == pytest.approx(15 / 5)  # item 5 never reaches the large model
    assert any("energy unknown for some answers of large" in n for n in r.notes)


def test_the_table_fits_100_columns(small_large):
    responses, trials = small_large
    trials["model"] = ["a-small-model-with-a-rather-long-catalogue-name", "a-large-one-also-long-in-name-72b"]
    table = format_table(route(responses, trials, threshold=0.75))
    lines = table.splitlines()
    assert max(map(len, lines)) <= 100, table
    assert "cascade, confidence < 0.75" in table and "cascade, oracle (bound)" in table
    assert lines[2].split()[-5:] == ["60.0%", "1", "1.67", "-", "10.0%"]  # the small model alone


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"threshold": 50}, "a share from 0 to 1"), ({"rules": ["vibes"]}, "unknown rule 'vibes'"),
    ({"models": ["small"]}, "two or more systems"), ({"models": ["nope", "large"]}, "no system 'nope'")])
def test_bad_arguments_say_what_to_give(small_large, kwargs, match):
    with pytest.raises(RoutingError, match=match):
        route(*small_large, **kwargs)


# -- the command ------------------------------------------------------------------------------------
def _main(*argv: str) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main(["route", *argv])
    return int(e.value.code)


def test_route_on_a_store_without_responses_is_one_line_and_exit_2(tmp_path, capsys):
    Store(tmp_path).write("trials", [_trial("t1", "small", 1.0)], "s", "h100", "t1")
    assert _main("--store", str(tmp_path), "--sweep", "s") == 2
    err = capsys.readouterr().err
    assert err.startswith("energyray: error: no responses in ") and len(err.splitlines()) == 1
    assert "python -m energyray sweep=accuracy" in err


def test_route_prints_the_table_from_a_store(tmp_path, capsys, small_large):
    responses, trials = small_large
    store = Store(tmp_path)
    for row in trials.to_dict("records"):
        store.write("trials", [row], "s", "h100", row["trial_id"])
        mine = responses[responses["trial_id"] == row["trial_id"]].to_dict("records")
        store.write("responses", [{**r, "sweep": "s", "request_index": i} for i, r in enumerate(mine)],
                    "s", "h100", row["trial_id"])
    assert _main("--store", str(tmp_path), "--sweep", "s", "--rule", "oracle") == 0
    out = capsys.readouterr().out
    assert "cascade, small first: small -> large" in out and "cascade, oracle (bound)" in out
    assert max(map(len, out.splitlines())) <= 100
    assert _main("--store", str(tmp_path), "--models", "small") == 2
    assert "two or more systems" in capsys.readouterr().err
