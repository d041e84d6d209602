"""Tasks read from files: JSONL, CSV, Parquet, or a Hugging Face dataset (`tasks.files.NAME`,
or a path / hf:ORG/NAME[:split] given as the task itself).

Each row becomes an Item through the field mapping (energyray field -> the file's column).
A field not mapped is looked for under its usual column names; a column named in the mapping
must exist. Preset `hle` maps Humanity's Last Exam's schema (id, question, image, answer,
answer_type, category) and puts HLE's response format before each question. Rows with a
non-empty image are skipped and counted (the backends send text only); so are rows with no
prompt. The rows a file yields are cached by path, size and modification time.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energyray.config import TaskFileConfig
from energyray.errors import ConfigError
from energyray.tasks import scoring
from energyray.tasks.base import Item, Score, TaskItems
from energyray.tasks.builtin import choices_text
from energyray.tasks.hle_style_items import RESPONSE_FORMAT, RESPONSE_FORMAT_BRIEF

FORMATS = ("auto", "jsonl", "csv", "parquet", "hf")
FIELDS = ("id", "prompt", "answer", "category", "answer_type", "choices", "image")
# a field not in the mapping is read from the first of these columns the file has
USUAL_COLUMNS: dict[str, tuple[str, ...]] = {
    "id": ("id",), "prompt": ("prompt", "question", "input"), "answer": ("answer", "gold", "target"),
    "category": ("category",), "answer_type": ("answer_type",), "choices": ("choices",), "image": ("image",),
}
PRESETS: dict[str, dict[str, str]] = {
    "hle": {"id": "id", "prompt": "question", "answer": "answer", "answer_type": "answer_type",
            "category": "category", "image": "image"},
}
# the file's answer_type values (HLE's and energyray's) -> Item.answer_type
ANSWER_TYPES = {"exactmatch": "exact_match", "exact_match": "exact_match", "multiplechoice": "multiple_choice",
                "multiple_choice": "multiple_choice", "numeric": "numeric", "summary": "summary",
                "rouge_l": "summary", "regex": "regex"}
FILE_SCORERS = ("auto", "exact_match", "multiple_choice", "numeric", "rouge_l", "regex", "none")
BRIEF_PREFIX = "Answer briefly.\n\n"
_SUFFIXES = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}
_ROWS: dict[tuple[Any, ...], tuple[list[dict[str, Any]], list[str], str]] = {}  # key -> rows, columns, source


@dataclass(frozen=True)
class Where:
    """How errors name a file task: `label` starts the message, `key` is its settings' prefix."""

    label: str
    key: str


def file_config(name: str, value: Any) -> TaskFileConfig:
    """tasks.files.NAME as a TaskFileConfig: one already, a mapping of its keys, or a path alone."""
    if isinstance(value, TaskFileConfig):
        return value
    if isinstance(value, str):
        return TaskFileConfig(path=value)
    valid = [f.name for f in dataclasses.fields(TaskFileConfig)]
    if not isinstance(value, Mapping):
        raise ConfigError(f"tasks.files.{name}: give a path, or a mapping of {', '.join(valid)}.")
    bad = [k for k in value if k not in valid]
    if bad:
        raise ConfigError(f"tasks.files.{name}: unknown key(s) {', '.join(map(repr, bad))}; valid: "
                          f"{', '.join(valid)}.")
    if not isinstance(value.get("fields", {}), Mapping):
        raise ConfigError(f"tasks.files.{name}.fields: map energyray's fields ({', '.join(FIELDS)}) to "
                          "your file's columns, e.g. {prompt: question, answer: gold}.")
    cfg = TaskFileConfig(**{k: value[k] for k in value})
    cfg.fields = {str(k): str(v) for k, v in cfg.fields.items()}
    cfg.path = str(cfg.path)
    return cfg


def is_file_task(name: str) -> bool:
    """Whether a task name is a file path or a Hugging Face dataset rather than a registered name."""
    return name.startswith("hf:") or Path(name).suffix.lower() in _SUFFIXES


def _format(w: Where, cfg: TaskFileConfig) -> str:
    if cfg.format not in FORMATS:
        raise ConfigError(f"{w.key}.format={cfg.format!r}: use one of {', '.join(FORMATS)}.")
    if cfg.format != "auto":
        return cfg.format
    if cfg.path.startswith("hf:"):
        return "hf"
    fmt = _SUFFIXES.get(Path(cfg.path).suffix.lower())
    if fmt is None:
        raise ConfigError(f"{w.label}: cannot tell the format of {cfg.path!r}: name it .jsonl, .csv or "
                          f".parquet, write hf:ORG/NAME for a Hugging Face dataset, or set "
                          f"{w.key}.format ({', '.join(FORMATS[1:])}).")
    return fmt


def _local(w: Where, path: str) -> Path:
    p = Path(path).expanduser()
    if not p.exists():
        raise ConfigError(f"{w.label}: {path!r} does not exist (relative paths start at "
                          f"{Path.cwd()}). Give the file's path.")
    return p


def _read_jsonl(w: Where, p: Path) -> tuple[list[dict[str, Any]], list[str]]:
    rows, columns = [], {}
    with p.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{w.label}: line {n} of {p} is not JSON ({e.msg}). Write one JSON "
                                  "object per line.") from e
            if not isinstance(row, dict):
                raise ConfigError(f"{w.label}: line {n} of {p} is not a JSON object. Write one "
                                  "object per line.")
            rows.append(row)
            columns.update(dict.fromkeys(row))
    return rows, list(columns)


def _read_csv(w: Where, p: Path) -> tuple[list[dict[str, Any]], list[str]]:
    with p.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.DictReader(f)
        rows = [{k: (v if v != "" else None) for k, v in r.items() if k is not None} for r in reader]
        return rows, list(reader.fieldnames or [])


def _read_parquet(w: Where, p: Path, wanted: list[str]) -> tuple[list[dict[str, Any]], list[str]]:
    import pyarrow.parquet as pq

    try:
        columns = pq.read_schema(p).names
        table = pq.read_table(p, columns=[c for c in wanted if c in columns])
    except Exception as e:  # a damaged or non-Parquet file
        raise ConfigError(f"{w.label}: cannot read {p} as Parquet ({type(e).__name__}: {e}).") from e
    return table.to_pylist(), columns


def _read_hf(w: Where, cfg: TaskFileConfig, wanted: list[str]) -> tuple[list[dict[str, Any]], list[str], str]:
    """Rows through the `datasets` library: a local file or saved dataset, or ORG/NAME[:split] on the Hub."""
    try:
        import datasets
    except ImportError as e:
        raise ConfigError(f"{w.label}: reading {cfg.path!r} needs the Hugging Face datasets library: "
                          "pip install datasets (or give a local .jsonl, .csv or .parquet file).") from e
    spec = cfg.path[3:] if cfg.path.startswith("hf:") else cfg.path
    local = Path(spec).expanduser()
    split = cfg.split
    try:
        if local.is_dir():
            ds = datasets.load_from_disk(str(local))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds[split]
            source = str(local)
        elif local.is_file():
            builder = {"jsonl": "json", "csv": "csv", "parquet": "parquet"}.get(
                _SUFFIXES.get(local.suffix.lower(), ""), "json")
            ds = datasets.load_dataset(builder, data_files=str(local), split="train")
            source = str(local)
        else:
            repo, _, from_path = spec.partition(":")
            split = from_path or split
            ds = datasets.load_dataset(repo, cfg.hf_config, split=split)
            source = f"hf:{repo}:{split}"
    except Exception as e:
        raise ConfigError(f"{w.label}: the datasets library cannot load {cfg.path!r} (split {split!r}): "
                          f"{type(e).__name__}: {str(e)[:300]}. Check the name and split, the network "
                          "(HF_HUB_OFFLINE), HF_TOKEN for a gated dataset (HLE is gated: accept its terms on "
                          "the Hub), or download it and give the local .parquet file.") from e
    columns = list(ds.column_names)
    keep = [c for c in wanted if c in columns]
    return ds.select_columns(keep).to_list(), columns, source


def _fields(w: Where, cfg: TaskFileConfig) -> tuple[dict[str, str], set[str]]:
    """The mapping (energyray field -> column) and which of its columns must exist (named by the user)."""
    if cfg.preset is not None and cfg.preset not in PRESETS:
        raise ConfigError(f"{w.key}.preset={cfg.preset!r}: valid presets are "
                          f"{', '.join(PRESETS)} (or null).")
    bad = [k for k in cfg.fields if k not in FIELDS]
    if bad:
        raise ConfigError(f"{w.key}.fields: unknown field(s) {', '.join(map(repr, bad))}; map any of "
                          f"{', '.join(FIELDS)} to your file's columns.")
    mapping = dict(PRESETS.get(cfg.preset or "", {}))
    mapping.update({k: str(v) for k, v in cfg.fields.items()})
    return mapping, {str(v) for v in cfg.fields.values()}


def _rows(w: Where, cfg: TaskFileConfig) -> tuple[list[dict[str, Any]], dict[str, str], str]:
    """The file's rows, the resolved mapping (only columns it has), and the source's description."""
    fmt = _format(w, cfg)
    mapping, required = _fields(w, cfg)
    wanted = sorted({*mapping.values(), *(c for cs in USUAL_COLUMNS.values() for c in cs)})
    if fmt == "hf":
        key: tuple[Any, ...] = ("hf", cfg.path, cfg.split, cfg.hf_config, tuple(wanted))
        local = Path(cfg.path[3:] if cfg.path.startswith("hf:") else cfg.path).expanduser()
        if local.exists():
            st = local.stat()
            key += (st.st_size, st.st_mtime_ns)
    else:
        p = _local(w, cfg.path)
        st = p.stat()
        key = (fmt, str(p.resolve()), st.st_size, st.st_mtime_ns, tuple(wanted))
    if key not in _ROWS:
        if fmt == "hf":
            rows, columns, source = _read_hf(w, cfg, wanted)
        elif fmt == "jsonl":
            rows, columns, source = (*_read_jsonl(w, p), str(p))
        elif fmt == "csv":
            rows, columns, source = (*_read_csv(w, p), str(p))
        else:
            rows, columns, source = (*_read_parquet(w, p, wanted), str(p))
        for col in {mapping.get("image", "image"), "image"} & set(columns):  # keep whether, not the image
            for row in rows:
                row[col] = _has_image(row.get(col))
        _ROWS[key] = (rows, columns, source)
    rows, columns, source = _ROWS[key]
    if not rows:
        raise ConfigError(f"{w.label}: {source} has no rows. Give a file with one item per row.")
    missing = sorted(c for c in required if c not in columns)
    if missing:
        raise ConfigError(f"{w.label}: column(s) {', '.join(map(repr, missing))} named in "
                          f"{w.key}.fields are not in {source}; its columns: "
                          f"{', '.join(columns) or '(none)'}. Map each field to one of them.")
    resolved = {f: c for f, c in mapping.items() if c in columns}
    for f, usual in USUAL_COLUMNS.items():
        if f not in mapping:
            found = next((c for c in usual if c in columns), None)
            if found:
                resolved[f] = found
    if "prompt" not in resolved:
        raise ConfigError(f"{w.label}: no prompt column in {source} (looked for "
                          f"{', '.join(USUAL_COLUMNS['prompt'])}); its columns: {', '.join(columns) or '(none)'}. "
                          f"Set {w.key}.fields.prompt to the column holding the question.")
    return rows, resolved, source


def _text(v: Any) -> str | None:
    """A cell as text; None for a missing or empty one (a whole float prints without '.0')."""
    if v is None:
        return None
    if isinstance(v, float):
        if v != v:  # NaN: an empty cell
            return None
        return str(int(v)) if v.is_integer() else repr(v)
    s = str(v).strip()
    return s or None


def _choices(v: Any) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        s = v.strip()
        if s.startswith("["):
            try:
                v = json.loads(s)
            except json.JSONDecodeError:
                v = s.strip("[]").split("|")
        else:
            v = s.split("|") if s else []
    return tuple(t for t in (_text(c) for c in v) if t is not None)


def _has_image(v: Any) -> bool:
    if v is None or isinstance(v, bool):
        return bool(v)
    if isinstance(v, str | bytes):
        return bool(v.strip())
    if isinstance(v, dict):  # a datasets Image feature not decoded: {"bytes": ..., "path": ...}
        return any(v.values())
    return True


def _answer_type(w: Where, cfg: TaskFileConfig, raw: Any) -> str | None:
    if cfg.scorer != "auto":
        return None if cfg.scorer == "none" else scoring.BY_SCORER_TYPE[cfg.scorer]
    t = _text(raw)
    if t is None:
        return None
    out = ANSWER_TYPES.get(t.replace(" ", "").replace("-", "_").lower())
    if out is None:
        raise ConfigError(f"{w.label}: answer_type {t!r} is not one energyray scores (valid: exactMatch, "
                          f"multipleChoice, {', '.join(sorted(scoring.BY_ANSWER_TYPE))}). Set "
                          f"{w.key}.scorer to score every item one way.")
    return out


class FileTask:
    """A task read from a file or a dataset; variants `default` and `brief`."""

    variants: tuple[str, ...] = ("default", "brief")

    def __init__(self, name: str, cfg: TaskFileConfig, configured: bool = True) -> None:
        """`configured`: the task is tasks.files.NAME; else `name` is the path itself."""
        w = self.w = Where(f"tasks.files.{name}", f"tasks.files.{name}") if configured else \
            Where(f"task {name!r}", "tasks.files.NAME")
        if cfg.scorer not in FILE_SCORERS:
            raise ConfigError(f"{w.key}.scorer={cfg.scorer!r}: use one of {', '.join(FILE_SCORERS)}.")
        if not cfg.path or cfg.path == "???":
            raise ConfigError(f"{w.key}.path is not set: give a .jsonl, .csv or .parquet file, or "
                              "hf:ORG/NAME.")
        self.name, self.cfg = name, cfg
        self.id_prefix = name if configured else Path(name.split(":", 1)[-1]).stem  # ids of rows without one

    def _prompt(self, text: str, choices: tuple[str, ...], variant: str) -> str:
        template = self.cfg.prompt_template
        listed = choices_text(choices) if choices else ""
        if self.cfg.preset == "hle" and template == "{prompt}":
            fmt = RESPONSE_FORMAT_BRIEF if variant == "brief" else RESPONSE_FORMAT
            template, variant = fmt + "\n\n{prompt}", "default"
        out = template.replace("{prompt}", text).replace("{choices}", listed)
        if listed and "{choices}" not in template:
            out += "\n\n" + listed
        return BRIEF_PREFIX + out if variant == "brief" else out

    def items(self, variant: str) -> TaskItems:
        if variant not in self.variants:
            raise ConfigError(f"Task {self.name!r} has no prompt variant {variant!r}. "
                              f"Valid: {', '.join(self.variants)}.")
        rows, col, source = _rows(self.w, self.cfg)
        items: list[Item] = []
        skipped: dict[str, int] = {}
        for i, row in enumerate(rows):
            if "image" in col and _has_image(row.get(col["image"])):
                skipped["has an image"] = skipped.get("has an image", 0) + 1
                continue
            text = _text(row.get(col["prompt"]))
            if text is None:
                skipped["no prompt"] = skipped.get("no prompt", 0) + 1
                continue
            choices = _choices(row.get(col["choices"])) if "choices" in col else ()
            gold = _text(row.get(col["answer"])) if "answer" in col else None
            atype = _answer_type(self.w, self.cfg, row.get(col["answer_type"]) if "answer_type" in col else None)
            if atype == "multiple_choice" and gold is not None and choices and len(gold) > 1:
                by_text = [chr(65 + j) for j, c in enumerate(choices) if scoring.normalise(c) == scoring.normalise(gold)]
                gold = by_text[0] if by_text else gold  # the choice's text given as the answer: its letter
            ident = _text(row.get(col["id"])) if "id" in col else None
            items.append(Item(id=ident or f"{self.id_prefix}-{i}", prompt=self._prompt(text, choices, variant), gold=gold,
                              category=_text(row.get(col["category"])) if "category" in col else None,
                              answer_type=atype, choices=choices))
        if not items:
            why = ", ".join(f"{k}: {v}" for k, v in skipped.items()) or "the file has no rows"
            raise ConfigError(f"{self.w.label}: no usable items in {source} ({why}). Give a file with "
                              "text-only rows, or map fields.prompt to the column holding the question.")
        return TaskItems(items, source=source, skipped=skipped)

    def score(self, item: Item, response: str) -> Score:
        return scoring.score_item(item, response, "auto" if self.cfg.scorer == "auto" else self.cfg.scorer)
