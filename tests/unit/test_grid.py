"""Grid expansion: counts, defaults, pinned axes, excludes, stable ids, grouping, errors."""

from __future__ import annotations

from itertools import groupby

import pytest

from energyray.errors import ConfigError
from energyray.grid import AXES, LATER_AXES, LOAD_KEY, TrialSpec, expand, group, trial_id

DEFAULTS = {
    "model": "m0",
    "backend": "fake",
    "weights": "w0",
    "precision": "fp16",
    "batch_size": 1,
    "task": "qa",
    "prompt_variant": "default",
    "hardware": "cpu",
    "max_new_tokens": None,
}


def _point(spec: TrialSpec) -> tuple:
    return tuple(getattr(spec, a) for a in AXES)


# -- counts and values -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("grid", "repeats", "expected"),
    [
        ({}, 1, 1),
        ({}, 3, 3),
        ({"model": ["a", "b"]}, 1, 2),
        ({"model": ["a", "b"], "batch_size": [1, 2, 4]}, 2, 12),
        (
            {
                "model": ["a", "b"],
                "batch_size": [1, 2, 4],
                "hardware": ["h1", "h2"],
                "precision": ["fp16", "bf16"],
            },
            3,
            72,
        ),
    ],
)
def test_expansion_count_is_product_of_axes_times_repeats(grid, repeats, expected):
    specs = expand("s", grid, DEFAULTS, repeats=repeats)
    assert len(specs) == expected
    # every (point, repeat) exactly once
    assert len({(_point(s), s.repeat) for s in specs}) == expected
    assert {s.repeat for s in specs} == set(range(repeats))


def test_scalar_axis_value_counts_as_one():
    specs = expand("s", {"model": "only", "batch_size": [1, 2]}, DEFAULTS)
    assert len(specs) == 2
    assert {s.model for s in specs} == {"only"}


def test_defaults_fill_axes_not_in_grid():
    specs = expand("s", {"batch_size": [2, 8]}, DEFAULTS)
    assert sorted(s.batch_size for s in specs) == [2, 8]
    for s in specs:
        assert s.model == "m0"
        assert s.backend == "fake"
        assert s.weights == "w0"
        assert s.precision == "fp16"
        assert s.task == "qa"
        assert s.prompt_variant == "default"
        assert s.hardware == "cpu"
        assert s.max_new_tokens is None
        assert s.sweep == "s"


def test_grid_values_override_defaults_and_types_are_normalised():
    specs = expand("s", {"max_new_tokens": [64], "batch_size": ["4"]}, DEFAULTS)
    assert len(specs) == 1
    assert specs[0].max_new_tokens == 64
    assert specs[0].batch_size == 4 and isinstance(specs[0].batch_size, int)


def test_pinned_replaces_grid_axis():
    grid = {"model": ["a", "b", "c"], "batch_size": [1, 2]}
    specs = expand("s", grid, DEFAULTS, pinned={"model": "qwen2-7b"})
    assert len(specs) == 2
    assert {s.model for s in specs} == {"qwen2-7b"}


def test_pinned_list_replaces_grid_axis_and_default():
    specs = expand(
        "s", {"model": ["a", "b", "c"]}, DEFAULTS, pinned={"model": ["x", "y"], "hardware": "gpu"}
    )
    assert sorted(s.model for s in specs) == ["x", "y"]
    assert {s.hardware for s in specs} == {"gpu"}


def test_exclude_drops_matching_combinations():
    grid = {"model": ["a", "b"], "precision": ["fp16", "int8"], "batch_size": [1, 2]}
    specs = expand("s", grid, DEFAULTS, repeats=2, exclude=[{"model": "b", "precision": "int8"}])
    assert len(specs) == (8 - 2) * 2
    assert not any(s.model == "b" and s.precision == "int8" for s in specs)
    # the partial match is kept
    assert any(s.model == "a" and s.precision == "int8" for s in specs)
    assert any(s.model == "b" and s.precision == "fp16" for s in specs)


def test_multiple_excludes_each_drop():
    grid = {"model": ["a", "b"], "batch_size": [1, 2]}
    specs = expand(
        "s",
        grid,
        DEFAULTS,
        exclude=[{"model": "a", "batch_size": 2}, {"model": "b", "batch_size": 1}],
    )
    assert sorted((s.model, s.batch_size) for s in specs) == [("a", 1), ("b", 2)]


def test_exclude_with_unknown_axis_raises():
    with pytest.raises(ConfigError) as e:
        expand("s", {"model": ["a"]}, DEFAULTS, exclude=[{"modle": "a"}])
    msg = str(e.value)
    assert "modle" in msg
    for axis in AXES:
        assert axis in msg


# -- trial ids -----------------------------------------------------------------------------


def test_trial_ids_stable_across_calls():
    grid = {"model": ["a", "b"], "batch_size": [1, 2]}
    a = expand("s", grid, DEFAULTS, repeats=2)
    b = expand("s", dict(reversed(list(grid.items()))), dict(DEFAULTS), repeats=2)
    assert [s.trial_id for s in a] == [s.trial_id for s in b]
    assert a == b


def test_trial_ids_distinct_across_repeats_points_and_sweeps():
    grid = {"model": ["a", "b"], "batch_size": [1, 2]}
    one = expand("s1", grid, DEFAULTS, repeats=3)
    two = expand("s2", grid, DEFAULTS, repeats=3)
    ids1 = [s.trial_id for s in one]
    ids2 = [s.trial_id for s in two]
    assert len(set(ids1)) == len(ids1) == 12
    assert len(set(ids2)) == len(ids2) == 12
    assert not set(ids1) & set(ids2)


def test_trial_id_depends_only_on_its_point():
    """Adding values to an axis (resuming a grown sweep) keeps the existing trials' ids."""
    small = expand("s", {"batch_size": [1, 2]}, DEFAULTS, repeats=2)
    big = expand("s", {"batch_size": [1, 2, 4], "model": ["m0", "m1"]}, DEFAULTS, repeats=3)
    assert {s.trial_id for s in small} <= {s.trial_id for s in big}


def test_trial_id_function_matches_spec_ids():
    specs = expand("s", {"model": ["a", "b"]}, DEFAULTS, repeats=2)
    for s in specs:
        point = {a: DEFAULTS[a] for a in AXES if a in DEFAULTS} | {"model": s.model}  # no later axes: defaults
        assert trial_id("s", point, s.repeat) == s.trial_id
    assert trial_id("s", {**DEFAULTS, "model": "a"}, 0) != trial_id(
        "s", {**DEFAULTS, "model": "a"}, 1
    )
    assert len(specs[0].trial_id) == 16


def test_later_axes_at_their_defaults_keep_the_ids_stores_already_hold():
    """requests, prompt_tokens and chat_template at their defaults, and tasks.limit/sample_seed
    unset, leave the id as it was before they existed (a smoke-sweep trial's stored id)."""
    point = dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline", batch_size=2,
                 task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=None)
    stored = ["e83f28d8683b4084", "d280c3850e586798"]  # computed before these axes existed
    assert [s.trial_id for s in expand("smoke", {}, point, repeats=2)] == stored
    explicit = {**point, **LATER_AXES}
    assert [s.trial_id for s in expand("smoke", {}, explicit, repeats=2,
                                       sample={"task_limit": None, "task_sample_seed": None})] == stored
    s = expand("smoke", {}, point)[0]
    assert (s.requests, s.prompt_tokens, s.chat_template, s.task_limit, s.task_sample_seed) == (
        None, None, "auto", None, None)


@pytest.mark.parametrize("change", [{"requests": 4}, {"requests": "all"}, {"prompt_tokens": 128},
                                    {"chat_template": "off"}, {"chat_template": "on"}])
def test_later_axes_off_their_defaults_change_the_id(change):
    base = expand("s", {}, DEFAULTS)[0]
    other = expand("s", {k: [v] for k, v in change.items()}, DEFAULTS)[0]
    assert other.trial_id != base.trial_id
    for k, v in change.items():
        assert getattr(other, k) == v


def test_task_sample_settings_go_into_the_id_and_on_the_spec():
    base = expand("s", {}, DEFAULTS)[0]
    limited = expand("s", {}, DEFAULTS, sample={"task_limit": 5})[0]
    seeded = expand("s", {}, DEFAULTS, sample={"task_limit": 5, "task_sample_seed": 0})[0]
    assert len({base.trial_id, limited.trial_id, seeded.trial_id}) == 3
    assert (seeded.task_limit, seeded.task_sample_seed) == (5, 0)


def test_requests_and_chat_template_values_are_normalised():
    specs = expand("s", {"requests": [None, 3, "all", "ALL", "7"], "chat_template": [True, False, "Auto"]}, DEFAULTS)
    assert sorted({s.requests for s in specs}, key=str) == sorted([None, 3, "all", 7], key=str)
    assert {s.chat_template for s in specs} == {"on", "off", "auto"}


@pytest.mark.parametrize("bad", [0, -1, 1.5, "some", True, [2]])
def test_bad_requests_is_a_clear_config_error(bad):
    with pytest.raises(ConfigError, match=r"requests=.*whole number of at least 1.*all.*null"):
        expand("s", {"requests": [bad]}, DEFAULTS)


def test_bad_chat_template_is_a_clear_config_error():
    with pytest.raises(ConfigError, match="chat_template='always': use auto .* on .* off"):
        expand("s", {"chat_template": ["always"]}, DEFAULTS)


# -- ordering and grouping ---------------------------------------------------------------------

GROUPING_GRID = {
    # hardware varies after batch_size in AXES order, so a naive product interleaves load keys
    "model": ["a", "b"],
    "batch_size": [1, 2],
    "hardware": ["h1", "h2"],
    "precision": ["fp16", "int8"],
}


def test_load_key_trials_are_contiguous():
    specs = expand("s", GROUPING_GRID, DEFAULTS, repeats=2)
    runs = [k for k, _ in groupby(specs, key=lambda s: s.load_key)]
    assert len(runs) == len(set(runs)) == 2 * 2 * 2  # model × hardware × precision


def test_repeats_are_innermost():
    specs = expand("s", GROUPING_GRID, DEFAULTS, repeats=3)
    for i in range(0, len(specs), 3):
        chunk = specs[i : i + 3]
        assert [s.repeat for s in chunk] == [0, 1, 2]
        assert len({_point(s) for s in chunk}) == 1


def test_group_returns_one_group_per_load_key_in_order():
    specs = expand("s", GROUPING_GRID, DEFAULTS, repeats=2)
    groups = group(specs)
    assert len(groups) == 8
    assert sum(len(g) for g in groups) == len(specs)
    keys = [g[0].load_key for g in groups]
    assert len(set(keys)) == len(keys)
    for g in groups:
        assert len({s.load_key for s in g}) == 1
        assert len(g) == 2 * 2  # batch_size × repeats
    # flattening the groups gives the expansion order back (groups already contiguous)
    assert [s for g in groups for s in g] == specs


def test_group_of_interleaved_specs_collects_by_load_key():
    specs = expand("s", GROUPING_GRID, DEFAULTS)
    shuffled = specs[::2] + specs[1::2]
    groups = group(shuffled)
    assert len(groups) == 8
    for g in groups:
        assert len({s.load_key for s in g}) == 1
    # first-seen order
    seen = list(dict.fromkeys(s.load_key for s in shuffled))
    assert [g[0].load_key for g in groups] == seen


def test_load_key_fields():
    spec = expand("s", {}, DEFAULTS)[0]
    assert spec.load_key == tuple(getattr(spec, k) for k in LOAD_KEY)
    assert spec.load_key == ("fake", "m0", "w0", "fp16", "cpu")
    d = spec.to_dict()
    assert d["trial_id"] == spec.trial_id and set(AXES) <= set(d)


# -- errors ------------------------------------------------------------------------------------


def test_unknown_axis_raises_naming_valid_axes():
    with pytest.raises(ConfigError) as e:
        expand("mysweep", {"modle": ["a"]}, DEFAULTS)
    msg = str(e.value)
    assert "modle" in msg
    assert "mysweep" in msg
    for axis in AXES:
        assert axis in msg


def test_empty_axis_raises():
    with pytest.raises(ConfigError) as e:
        expand("s", {"batch_size": []}, DEFAULTS)
    assert "batch_size" in str(e.value)
    assert "empty" in str(e.value)


def test_empty_pinned_axis_raises():
    with pytest.raises(ConfigError, match="model"):
        expand("s", {"model": ["a"]}, DEFAULTS, pinned={"model": []})


@pytest.mark.parametrize("repeats", [0, -1])
def test_repeats_below_one_raises(repeats):
    with pytest.raises(ConfigError) as e:
        expand("s", {}, DEFAULTS, repeats=repeats)
    assert "repeats" in str(e.value)
    assert str(repeats) in str(e.value)
