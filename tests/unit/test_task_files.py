"""Tasks read from files (energyray/tasks/files.py): JSONL, CSV and Parquet with a field mapping,
HLE's schema (rows with an image skipped and counted), the `datasets` library for local files
and the Hub, and each bad file's one-line fix."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from energyray.config import TaskFileConfig, TasksConfig
from energyray.errors import ConfigError
from energyray.tasks import get, load
from energyray.tasks.hle_style_items import RESPONSE_FORMAT, RESPONSE_FORMAT_BRIEF

ROWS = [
    {"qid": "a1", "text": "What is 6 times 7?", "gold": "42", "kind": "numeric", "topic": "math"},
    {"qid": "a2", "text": "Capital of Italy?", "gold": "Rome", "kind": "exact_match", "topic": "geo"},
    {"qid": "a3", "text": "Which is a mammal?", "gold": "Whale", "kind": "multiple_choice", "topic": "bio",
     "opts": ["Shark", "Whale", "Trout"]},
]
MAPPING = {"id": "qid", "prompt": "text", "answer": "gold", "answer_type": "kind", "category": "topic",
           "choices": "opts"}


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _opts(name="mine", **cfg):
    return TasksConfig(files={name: TaskFileConfig(**cfg)})


def _check_mapped(items):
    assert [i.id for i in items] == ["a1", "a2", "a3"]
    assert [i.category for i in items] == ["math", "geo", "bio"]
    assert [i.answer_type for i in items] == ["numeric", "exact_match", "multiple_choice"]
    assert items[0].prompt == "What is 6 times 7?"
    mc = items[2]
    assert mc.choices == ("Shark", "Whale", "Trout")
    assert mc.gold == "B"  # the choice's text given as the answer becomes its letter
    assert mc.prompt == "Which is a mammal?\n\nAnswer Choices:\nA. Shark\nB. Whale\nC. Trout"


def test_jsonl_with_field_mapping_and_scoring(tmp_path):
    opts = _opts(path=str(_jsonl(tmp_path / "q.jsonl", ROWS)), fields=MAPPING)
    got = load("mine", "default", opts)
    _check_mapped(got.items)
    assert got.source == str(tmp_path / "q.jsonl") and got.skipped == {}
    task = get("mine", opts)
    i42, rome, mc = got.items
    assert task.score(i42, "6 x 7 = 42, so the answer is 42.").correct is True
    assert task.score(rome, "Answer: rome").correct is True
    assert task.score(mc, "I think B is right").correct is True
    assert task.score(mc, "Answer: A").correct is False


def test_csv_with_field_mapping(tmp_path):
    path = tmp_path / "q.csv"
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=["qid", "text", "gold", "kind", "topic", "opts"])
        w.writeheader()
        for r in ROWS:
            w.writerow({**r, "opts": "|".join(r.get("opts", []))})  # choices in a cell: "|"-separated
    _check_mapped(load("mine", "default", _opts(path=str(path), fields=MAPPING)).items)


def test_parquet_with_field_mapping(tmp_path):
    path = tmp_path / "q.parquet"
    pq.write_table(pa.Table.from_pylist([{**r, "opts": r.get("opts")} for r in ROWS]), path)
    _check_mapped(load("mine", "default", _opts(path=str(path), fields=MAPPING)).items)


def test_usual_column_names_need_no_mapping_and_a_path_is_a_task(tmp_path):
    path = _jsonl(tmp_path / "plain.jsonl", [{"question": "2+2?", "answer": 4}, {"question": "3+3?", "answer": 6.0},
                                             {"question": "pi?", "answer": 3.14}])
    items = load(str(path), "default", TasksConfig()).items  # the path itself on the task axis
    assert [(i.id, i.prompt, i.gold, i.answer_type) for i in items] == [
        ("plain-0", "2+2?", "4", None), ("plain-1", "3+3?", "6", None), ("plain-2", "pi?", "3.14", None)]
    task = get(str(path), TasksConfig())
    assert task.score(items[0], "4").correct is True and task.score(items[0], "5").correct is False


def test_prompt_template_brief_variant_and_scorer_override(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", ROWS)
    opts = _opts(path=str(path), fields=MAPPING, prompt_template="Q: {prompt}\n{choices}\nA:", scorer="regex")
    items = load("mine", "default", opts).items
    assert items[0].prompt == "Q: What is 6 times 7?\n\nA:"
    assert items[2].prompt == "Q: Which is a mammal?\nAnswer Choices:\nA. Shark\nB. Whale\nC. Trout\nA:"
    assert all(i.answer_type == "regex" for i in items)  # the scorer replaces the file's answer_type
    assert get("mine", opts).score(items[1], "It is Rome.").scorer == "regex"
    brief = load("mine", "brief", opts).items
    assert brief[0].prompt == "Answer briefly.\n\nQ: What is 6 times 7?\n\nA:"
    none = _opts(path=str(path), fields=MAPPING, scorer="none")
    assert get("mine", none).score(load("mine", "default", none).items[0], "42").correct is None


def _hle_rows():
    """HLE's schema: a text exact-match row, a multiple-choice row, and a row with an image."""
    return [
        {"id": "h1", "question": "What is 2^10?", "image": "", "answer": "1024", "answer_type": "exactMatch",
         "category": "Math", "raw_subject": "Arithmetic", "rationale": "2^10 = 1024"},
        {"id": "h2", "question": "Which is a noble gas?\n\nAnswer Choices:\nA. Neon\nB. Sodium",
         "image": "", "answer": "A", "answer_type": "multipleChoice", "category": "Chemistry",
         "raw_subject": "Chemistry", "rationale": ""},
        {"id": "h3", "question": "What does the figure show?", "image": "data:image/png;base64,iVBORw0KGgo=",
         "answer": "A cat", "answer_type": "exactMatch", "category": "Other", "raw_subject": "Trivia",
         "rationale": ""},
    ]


def test_hle_preset_parquet_skips_and_counts_image_rows(tmp_path):
    path = tmp_path / "hle.parquet"
    pq.write_table(pa.Table.from_pylist(_hle_rows()), path)
    opts = _opts("hle", path=str(path), preset="hle")
    got = load("hle", "default", opts)
    assert got.skipped == {"has an image": 1}
    assert [(i.id, i.gold, i.answer_type, i.category) for i in got.items] == [
        ("h1", "1024", "exact_match", "Math"), ("h2", "A", "multiple_choice", "Chemistry")]
    assert got.items[0].prompt == RESPONSE_FORMAT + "\n\nWhat is 2^10?"
    assert load("hle", "brief", opts).items[0].prompt == RESPONSE_FORMAT_BRIEF + "\n\nWhat is 2^10?"
    task = get("hle", opts)
    s = task.score(got.items[1], "Explanation: neon is inert.\nAnswer: A\nConfidence: 95%")
    assert (s.correct, s.scorer, s.confidence) == (True, "multiple_choice", pytest.approx(0.95))
    s = task.score(got.items[0], "Explanation: doubling ten times.\nExact Answer: 1,024\nConfidence: 80%")
    assert (s.correct, s.scorer) == (True, "exact_match")


def test_file_limit_and_seed(tmp_path):
    rows = [{"id": f"r{n}", "prompt": f"Say {n}.", "answer": str(n)} for n in range(20)]
    path = str(_jsonl(tmp_path / "many.jsonl", rows))
    ids = lambda **kw: [i.id for i in load("many", "default", _opts("many", path=path) if not kw else  # noqa: E731
                                           TasksConfig(files={"many": TaskFileConfig(path=path)}, **kw)).items]
    assert ids() == [f"r{n}" for n in range(20)]
    assert ids(limit=3) == ["r0", "r1", "r2"]
    assert ids(limit=4, sample_seed=7) == ids(limit=4, sample_seed=7) != ids(limit=4, sample_seed=8)
    assert set(ids(limit=4, sample_seed=7)) <= set(ids())


def test_path_task_errors_name_the_path(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"body": "hi"}])
    with pytest.raises(ConfigError) as e:
        load(str(path), "default")
    assert str(e.value).startswith(f"task {str(path)!r}: no prompt column")
    assert "tasks.files.NAME.fields.prompt" in str(e.value)


def test_changed_file_is_read_again(tmp_path):
    path = _jsonl(tmp_path / "q.jsonl", [{"prompt": "one"}])
    assert [i.prompt for i in load(str(path), "default").items] == ["one"]
    _jsonl(path, [{"prompt": "one"}, {"prompt": "two, longer"}])
    assert [i.prompt for i in load(str(path), "default").items] == ["one", "two, longer"]


@pytest.mark.parametrize(("cfg", "expect"), [
    ({"fields": {"prompt": "body"}}, "column(s) 'body' named in tasks.files.bad.fields are not in"),
    ({"fields": {"answr": "gold"}}, "unknown field(s) 'answr'"),
    ({"format": "xlsx"}, "format='xlsx': use one of auto, jsonl, csv, parquet, hf"),
    ({"preset": "mmlu"}, "preset='mmlu': valid presets are hle"),
    ({"scorer": "bleu"}, "scorer='bleu': use one of"),
])
def test_bad_settings_name_the_fix(tmp_path, cfg, expect):
    path = _jsonl(tmp_path / "q.jsonl", ROWS)
    with pytest.raises(ConfigError) as e:
        load("bad", "default", _opts("bad", path=str(path), **cfg))
    assert expect in str(e.value)
    if "its columns" in str(e.value):
        assert "its columns: qid, text, gold, kind, topic, opts" in str(e.value)


def test_bad_files_name_the_fix(tmp_path):
    def err(path, **cfg):
        with pytest.raises(ConfigError) as e:
            load("f", "default", _opts("f", path=str(path), **cfg))
        return str(e.value)

    assert "cannot tell the format of" in err(tmp_path / "q.txt") and ".parquet" in err(tmp_path / "q.txt")
    assert "does not exist" in err(tmp_path / "missing.jsonl")
    (tmp_path / "broken.jsonl").write_text('{"prompt": "ok"}\n{not json\n')
    assert "line 2 of" in err(tmp_path / "broken.jsonl")
    (tmp_path / "noprompt.jsonl").write_text('{"body": "hi"}\n')
    assert "no prompt column" in err(tmp_path / "noprompt.jsonl") and "fields.prompt" in err(
        tmp_path / "noprompt.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    assert "has no rows" in err(tmp_path / "empty.jsonl")
    (tmp_path / "bad.parquet").write_text("not parquet")
    assert "cannot read" in err(tmp_path / "bad.parquet")
    assert "path is not set" in err("???")
    images = tmp_path / "images.parquet"
    pq.write_table(pa.Table.from_pylist([r for r in _hle_rows() if r["image"]]), images)
    msg = err(images, preset="hle")
    assert "no usable items" in msg and "has an image: 1" in msg
    odd = _jsonl(tmp_path / "odd.jsonl", [{"prompt": "x", "answer": "y", "answer_type": "essay"}])
    assert "answer_type 'essay'" in err(odd) and ".scorer" in err(odd)


def test_missing_datasets_library_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # import datasets -> ImportError
    for path in ("hf:cais/hle", str(_jsonl(tmp_path / "q.jsonl", ROWS))):
        with pytest.raises(ConfigError, match="needs the Hugging Face datasets library: pip install datasets"):
            load("h", "default", _opts("h", path=path, format="hf"))


needs_datasets = pytest.mark.skipif(importlib.util.find_spec("datasets") is None,
                                    reason="the datasets library is not installed: pip install datasets")


@needs_datasets
def test_datasets_library_reads_a_local_file_and_a_saved_dataset(tmp_path):
    import datasets

    path = _jsonl(tmp_path / "q.jsonl", ROWS)
    _check_mapped(load("h", "default", _opts("h", path=str(path), format="hf", fields=MAPPING)).items)
    saved = tmp_path / "saved"
    datasets.DatasetDict({"test": datasets.Dataset.from_list(_hle_rows())}).save_to_disk(str(saved))
    got = load("h", "default", _opts("h", path=f"hf:{saved}", preset="hle"))
    assert [i.id for i in got.items] == ["h1", "h2"] and got.skipped == {"has an image": 1}


@needs_datasets
def test_unreachable_hub_is_a_config_error(monkeypatch):
    import datasets
    import huggingface_hub.constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # no network: what an air-gapped node sees
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(ConfigError) as e:
        load("hub", "default", _opts("hub", path="hf:energyray-test/no-such-dataset:test"))
    msg = str(e.value)
    assert "cannot load 'hf:energyray-test/no-such-dataset:test'" in msg and "split 'test'" in msg
    assert "HF_TOKEN" in msg and "local .parquet" in msg


def test_file_task_from_command_line_overrides(tmp_path):
    """`+tasks.files.NAME.KEY=...` as Hydra composes it, through to the items."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from energyray import paths, plan

    path = tmp_path / "hle.parquet"
    pq.write_table(pa.Table.from_pylist(_hle_rows()), path)
    plan.register_configs()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        cfg = compose(config_name="config", overrides=[f"+tasks.files.hle.path={path}", "+tasks.files.hle.preset=hle",
                                                       f"+tasks.files.plain={tmp_path / 'q.jsonl'}",
                                                       "tasks.limit=1"])
    opts = OmegaConf.to_object(cfg).tasks
    _jsonl(tmp_path / "q.jsonl", [{"question": "What is 6 times 7?", "answer": "42"}])
    got = load("hle", "default", opts)
    assert [i.id for i in got.items] == ["h1"] and got.skipped == {"has an image": 1}
    assert [i.prompt for i in load("plain", "default", opts).items] == ["What is 6 times 7?"]


def test_file_config_checks_each_entry():
    with pytest.raises(ConfigError, match=r"tasks.files.x: unknown key\(s\) 'pth'; valid: path, format"):
        load("x", "default", TasksConfig(files={"x": {"pth": "a.jsonl"}}))
    with pytest.raises(ConfigError, match="tasks.files.x.fields: map energyray's fields"):
        load("x", "default", TasksConfig(files={"x": {"path": "a.jsonl", "fields": ["prompt"]}}))
    with pytest.raises(ConfigError, match="tasks.files.x: give a path, or a mapping"):
        load("x", "default", TasksConfig(files={"x": 3}))
