"""DuckDB queries over a store, for the dashboard: trials, per-configuration statistics,
downsampled time series, accuracy per category, systems.

Reads loose files (`<trial_id>.parquet`, one trial each) and segments (`segment-<UTC>-<hex>.parquet`,
many trials, written by `store compact`). A trial's rows come from one file per table: a loose
file beats any segment, and among segments the later name wins; for samples and responses the
winning file is, where it can be, of the same kind (loose or segment) as the trial's trials row.
Files of every schema version read (columns a file lacks are null, legacy names fill their
replacement). A file that cannot be read is skipped and listed in `damaged`, never raised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from energyray import schema
from energyray.footprint.project import t975
from energyray.report.summary import _LATER_DEFAULTS, CONFIG_KEYS, _order, _scope, energy_label
from energyray.store import PARTITIONS, TRIAL_TABLES, Damaged, _safe

SEGMENT = re.compile(r"^segment-.*\.parquet$")
_DUCK = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.float64(): "DOUBLE", pa.bool_(): "BOOLEAN"}
_MAGIC = b"PAR1"
# the trials columns every query needs (configuration keys, grouping, energy labels)
_BASE_ORDER = ("trial_id", "status", *CONFIG_KEYS, "energy_source", "energy_scope", "energy_estimated_j",
               "output_tokens")
_BASE = frozenset(_BASE_ORDER)


def ci95(std: float, n: int) -> float:
    """Half width of the 95 % t-interval of a mean of `n` values with sample std `std` (NaN for n < 2)."""
    return t975(n - 1) * std / math.sqrt(n) if n > 1 and not pd.isna(std) else math.nan


def is_data_file(name: str) -> bool:
    """A loose file or a segment; other `_`/`.` names (temp files, markers) are not data."""
    return name.endswith(".parquet") and (SEGMENT.match(name) is not None or name[0] not in "._")


# what str.split() splits on besides the space: replaced by spaces, then runs collapsed (runs
# up to 2**_COLLAPSE spaces; a longer run counts extra words), then spaces counted: no regex
# or translate, which cost DuckDB 20-100x more on a million responses
_WHITESPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200b))) + \
    "\u2028\u2029\u202f\u205f\u3000"
_COLLAPSE = 10


def spaced_sql(col: str) -> str:
    """SQL: text `col` with its whitespace as single spaces, trimmed (for `words_sql`)."""
    text = col
    for c in _WHITESPACE:
        text = f"replace({text}, {_q(c)}, ' ')"
    for _ in range(_COLLAPSE):
        text = f"replace({text}, '  ', ' ')"
    return f"trim({text})"


def words_sql(spaced: str) -> str:
    """SQL: the number of words of `spaced` (a `spaced_sql` column) as len(text.split()) counts
    them; NULL for NULL."""
    return f"(CASE WHEN {spaced} = '' THEN 0 ELSE length({spaced}) - length(replace({spaced}, ' ', '')) + 1 END)"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _footer_ok(path: Path) -> str | None:
    """Why `path` is not a Parquet file (no magic bytes at either end, too short), or None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0, 2)
            size = f.tell()
            if size < 12:
                return f"not a Parquet file ({size} bytes)"
            f.seek(size - 4)
            tail = f.read(4)
    except OSError as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    if head != _MAGIC or tail != _MAGIC:
        return "not a Parquet file (magic bytes missing: truncated or overwritten)"
    return None


class StoreQuery:
    """Read-only queries over the store at `store` (optionally only `sweeps`)."""

    def __init__(self, store: str | Path, sweeps: Sequence[str] | None = None) -> None:
        self.path = Path(store)
        self.sweeps = None if sweeps is None else list(sweeps)
        self.damaged: list[Damaged] = []
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET enable_progress_bar = false")  # no bar drawn over the report's output
        # every query reads the same files' footers (describe, then read): parsed once, in memory;
        # an entry is dropped when its file's modification time changes
        self._con.execute("SET parquet_metadata_cache = true")
        self._files: dict[str, list[str]] = {}
        self._columns: dict[str, dict[str, str]] = {}  # table -> column -> DuckDB type, over its files
        self._trials_cols: set[str] | None = None  # the columns of the temporary table _trials

    # -- files ------------------------------------------------------------------------------------
    def files(self, table: str) -> list[str]:
        """The table's readable data files (loose and segments), each checked once."""
        if table not in self._files:
            root = self.path / table
            roots = [root] if self.sweeps is None else [root / f"sweep={_safe(s)}" for s in self.sweeps]
            found: list[str] = []
            for r in roots:
                if not r.is_dir():
                    continue
                for p in sorted(r.rglob("*.parquet")):
                    if not is_data_file(p.name) or any(part[0] in "._" for part in p.relative_to(root).parts[:-1]):
                        continue
                    why = _footer_ok(p)
                    if why is None:
                        found.append(p.as_posix())
                    else:
                        self._damage(p, why)
            self._files[table] = found
        return self._files[table]

    def _damage(self, path: Path, reason: str) -> None:
        if not any(d.path == path for d in self.damaged):
            self.damaged.append(Damaged(path, reason))
        for files in self._files.values():
            if path.as_posix() in files:
                files.remove(path.as_posix())
        self._columns.clear()
        self._trials_cols = None  # built from the files before this one was found

    def _source(self, table: str) -> str:
        files = self.files(table)
        return (f"read_parquet([{', '.join(map(_q, files))}], union_by_name=true, hive_partitioning=true, "
                "hive_types_autocast=false, filename=true)")

    def _sql(self, build: Any, tables: Sequence[str]) -> pd.DataFrame:
        """Run the query `build()` makes; where a file breaks it, skip that file and run it again."""
        return self._run(lambda: self._con.execute(build()).df(), tables)

    def _run(self, call: Any, tables: Sequence[str]) -> Any:
        """`call()` (DuckDB reads in it); where a file breaks it, skip that file and call it again."""
        while True:
            try:
                return call()
            except duckdb.Error as e:
                bad = self._culprit(str(e), tables)
                if bad is None:
                    raise
                reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                self._damage(Path(bad), reason.replace(f" in file '{bad}'", "").replace(bad, "the file"))

    def _culprit(self, message: str, tables: Sequence[str]) -> str | None:
        """The file an error names, else the first of `tables`' files that DuckDB cannot read whole."""
        candidates = [f for t in tables for f in self.files(t)]
        for f in candidates:
            if f in message:
                return f
        for f in candidates:
            try:
                self._con.execute(f"SELECT * FROM read_parquet({_q(f)})").fetchall()
            except duckdb.Error:
                return f
        return None

    def columns(self, table: str) -> dict[str, str]:
        """Column -> DuckDB type over the union of the table's files (partition columns included)."""
        if table not in self._columns:
            if not self.files(table):
                return {}

            def build() -> str:
                return f"DESCRIBE SELECT * FROM {self._source(table)}"
            d = self._sql(build, [table])
            self._columns[table] = dict(zip(d["column_name"], d["column_type"], strict=True))
        return self._columns[table]

    def _select(self, table: str, wanted: Sequence[str]) -> str:
        """Select expressions for `wanted`: declared types cast, a legacy name filling its
        replacement, a column no file has as a typed null."""
        have = self.columns(table)
        declared = {c.name: _DUCK.get(c.type, "VARCHAR") for c in schema.columns(table)}
        legacy = {new: old for old, (new, _) in schema.LEGACY.get(table, {}).items() if new and old in have}
        out = []
        for name in wanted:
            type_ = "VARCHAR" if name in PARTITIONS else declared.get(name, have.get(name, "VARCHAR"))
            parts = [_ident(n) for n in (name, legacy.get(name)) if n is not None and n in have]
            value = "NULL" if not parts else parts[0] if len(parts) == 1 else f"coalesce({', '.join(parts)})"
            out.append(f"TRY_CAST({value} AS {type_}) AS {_ident(name)}")
        return ", ".join(out)

    @staticmethod
    def _rank() -> str:
        # a loose file ('1') beats any segment ('0' + its name, later names greater)
        return ("CASE WHEN regexp_matches(filename, '/segment-[^/]*$') "
                "THEN '0' || regexp_extract(filename, '[^/]*$') ELSE '1' || filename END")

    def _trials_sql(self, wanted: Sequence[str]) -> str:
        """Every file's trials rows with `_rank` (precedence not applied: `_trials_table` does)."""
        return f"SELECT {self._select('trials', wanted)}, {self._rank()} AS _rank FROM {self._source('trials')}"

    def _trial_rows_sql(self, table: str, wanted: Sequence[str], where: str = "",
                        per_file: tuple[Sequence[str], str] | None = None) -> str:
        """`table`'s rows (samples, responses) of each trial's winning file: of the kind of its
        trials row's file where it has one of that kind, then by precedence. `per_file`
        (group columns with trial_id, aggregate expressions over `wanted`): the rows aggregated
        per file first, so precedence works on few rows."""
        assert table in TRIAL_TABLES
        kinds = (f"SELECT trial_id, left(_rank, 1) AS _kind FROM {self._trials_table(['trial_id'])}"
                 if self.files("trials") else "SELECT NULL::VARCHAR AS trial_id, NULL::VARCHAR AS _kind WHERE false")
        rows = f"SELECT {self._select(table, wanted)}, {self._rank()} AS _rank FROM {self._source(table)} {where}"
        if per_file is not None:
            group = ", ".join([*map(_ident, per_file[0]), "_rank"])
            rows = f"SELECT {group}, {per_file[1]} FROM ({rows}) GROUP BY {group}"
        return (f"WITH r AS MATERIALIZED ({rows}), "
                f"k AS ({kinds}), "
                # only a trial with rows from several files ranks them; nearly all have one file
                "d AS (SELECT trial_id FROM r GROUP BY trial_id HAVING min(_rank) <> max(_rank)), "
                "w AS (SELECT r.trial_id, max((left(r._rank, 1) = coalesce(k._kind, left(r._rank, 1)))::INT || r._rank)"
                " AS _best FROM r SEMI JOIN d USING (trial_id) LEFT JOIN k USING (trial_id) GROUP BY r.trial_id) "
                "SELECT r.* EXCLUDE (_rank) FROM r LEFT JOIN w USING (trial_id) "
                "WHERE w._best IS NULL OR substr(w._best, 2) = r._rank")

    def _trials_table(self, cols: Sequence[str]) -> str:
        """The name of a temporary table of the winning trials rows with at least `cols` (and the
        configuration keys, the energy columns and `_rank`): the store's trials are read once
        for all queries, again only for columns not yet in it."""
        need = set(cols) | _BASE
        if self._trials_cols is None or not need <= self._trials_cols:
            have = self._trials_cols or set()
            keep = list(dict.fromkeys([*_BASE_ORDER, *sorted(have | need)]))
            self._run(lambda: self._con.execute(f"CREATE OR REPLACE TEMP TABLE _trials AS {self._trials_sql(keep)}"),
                      ["trials"])
            # precedence: only trial ids read from more than one file (or twice from one) rank, the
            # rest (nearly all in a compacted store) keep their only row without a window over all
            self._con.execute(
                "DELETE FROM _trials WHERE rowid IN (SELECT rowid FROM _trials WHERE trial_id IS NULL OR trial_id IN "
                "(SELECT trial_id FROM _trials GROUP BY trial_id HAVING count(*) > 1) "
                "QUALIFY row_number() OVER (PARTITION BY trial_id ORDER BY _rank DESC) > 1)")
            self._trials_cols = need | have
        return "_trials"

    # -- queries ----------------------------------------------------------------------------------
    def trials(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per trial (every status), precedence applied. `columns`: these (a column no
        file has is null), with trial_id, status, sweep and hardware always included; None: all."""
        if not self.files("trials"):
            return pd.DataFrame(columns=list(columns or ()))
        if columns is None:
            wanted = [c for c in self.columns("trials") if c != "filename"]
        else:
            wanted = list(dict.fromkeys([*columns, "trial_id", "status", "sweep", "hardware"]))
        df = self._run(lambda: _frame(self._con.sql(
            f"SELECT {', '.join(map(_ident, wanted))} FROM {self._trials_table(wanted)} ORDER BY trial_id")),
            ["trials"])
        return df[[c for c in wanted if c in df.columns]] if columns is not None else df

    def _keyed_trials(self, extra: Sequence[str]) -> str:
        """SQL of the trials with their configuration keys normalised as summary.configurations does."""
        cols = list(dict.fromkeys([*CONFIG_KEYS, "trial_id", "status", *extra]))
        keys = []
        for k in CONFIG_KEYS:
            if k in _LATER_DEFAULTS:
                keys.append(f"coalesce({_ident(k)}, {_q(str(_LATER_DEFAULTS[k]))}) AS {_ident(k)}")
            elif k == "requests":
                keys.append("coalesce(requests, batch_size) AS requests")
            else:
                keys.append(_ident(k))
        rest = [_ident(c) for c in cols if c not in CONFIG_KEYS]
        return f"SELECT {', '.join(keys + rest)} FROM {self._trials_table(cols)}"

    def config_stats(self, metrics: Sequence[str]) -> pd.DataFrame:
        """One row per configuration (CONFIG_KEYS, summary's order): trials, ok, failed,
        energy_sources, energy (summary.energy_label) and per metric m over the ok trials:
        m (mean), m_std, m_ci95 (t-interval half width), m_n. J/token falls back to the API
        models' FLOPs estimate per output token where no ok trial has one, as the summary does."""
        key_cols = list(CONFIG_KEYS)
        if not self.files("trials"):
            return pd.DataFrame(columns=[*key_cols, "trials", "ok", "failed", "energy_sources", "energy",
                                         *[f"{m}{s}" for m in metrics for s in ("", "_std", "_ci95", "_n")]])
        fallback = "j_per_token" in metrics
        extra = [*metrics, "energy_source", "energy_scope", "energy_estimated_j", "output_tokens"]
        keys = ", ".join(map(_ident, key_cols))
        aggs = ["count(*) AS trials", "count(*) FILTER (status = 'ok') AS ok",
                "count(*) FILTER (status IS DISTINCT FROM 'ok') AS failed",
                "list(DISTINCT [energy_source, energy_scope, (energy_estimated_j IS NOT NULL)::VARCHAR]) "
                "FILTER (status = 'ok') AS _sources"]
        for i, m in enumerate(metrics):
            x = f"TRY_CAST({_ident(m)} AS DOUBLE)"
            aggs += [f"avg({x}) FILTER (status = 'ok') AS _m{i}", f"stddev_samp({x}) FILTER (status = 'ok') AS _s{i}",
                     f"count({x}) FILTER (status = 'ok') AS _n{i}"]
        if fallback:
            x = "TRY_CAST(energy_estimated_j AS DOUBLE) / TRY_CAST(output_tokens AS DOUBLE)"
            aggs += [f"avg({x}) FILTER (status = 'ok') AS _fm", f"stddev_samp({x}) FILTER (status = 'ok') AS _fs",
                     f"count({x}) FILTER (status = 'ok') AS _fn"]
        df = self._sql(lambda: f"SELECT {keys}, {', '.join(aggs)} FROM ({self._keyed_trials(extra)}) GROUP BY {keys}",
                       ["trials"])
        df = df.iloc[_order_index(df, key_cols)].reset_index(drop=True)  # summary's order
        # column by column (a Python loop per row and metric cost ~0.5 s at 9,000 configurations); the
        # rows are then built from these lists so that the frame's types come out as before
        cols: dict[str, list[Any]] = {k: _plain_column(df[k]) for k in key_cols}
        ok = df["ok"].to_numpy(dtype=np.int64)
        cols.update(trials=df["trials"].astype(int).tolist(), ok=ok.tolist(), failed=df["failed"].astype(int).tolist())
        labels: dict[tuple[Any, ...], tuple[str, str]] = {}
        sources, energy = [], []
        for r_sources, r_ok in zip(df["_sources"].tolist(), ok.tolist(), strict=True):
            seen = tuple(sorted((tuple(s) for s in ([] if _plain_null(r_sources) else r_sources)),
                                key=lambda s: tuple(str(v) for v in s)))
            if seen not in labels:  # few distinct sets: the summary's labels computed once each
                srcs = pd.DataFrame([{"energy_source": s[0], "energy_scope": s[1],
                                      "energy_estimated_j": 1.0 if s[2] == "true" else None} for s in seen],
                                    columns=["energy_source", "energy_scope", "energy_estimated_j"])
                names = sorted({f"{s[0]} ({_scope(s[1])})" if _scope(s[1]) else str(s[0])
                                for s in seen if s[0] is not None})
                labels[seen] = (", ".join(names) or "-", energy_label(srcs) if seen else "-")
            sources.append(labels[seen][0])
            energy.append(labels[seen][1] if r_ok else "-")
        cols.update(energy_sources=sources, energy=energy)
        for i, m in enumerate(metrics):
            mean, std = df[f"_m{i}"].to_numpy(dtype=float), df[f"_s{i}"].to_numpy(dtype=float)
            n = df[f"_n{i}"].to_numpy(dtype=np.int64)
            if m == "j_per_token" and fallback:
                use = n == 0
                mean = np.where(use, df["_fm"].to_numpy(dtype=float), mean)
                std = np.where(use, df["_fs"].to_numpy(dtype=float), std)
                n = np.where(use, df["_fn"].to_numpy(dtype=np.int64), n)
            mean = np.where((n == 0) | np.isnan(mean), np.nan, mean)
            std = np.where((n < 2) | np.isnan(std), np.nan, std)
            cols.update({m: mean.tolist(), f"{m}_std": std.tolist(), f"{m}_ci95": _ci95s(std, n).tolist(),
                         f"{m}_n": n.tolist()})
        order = list(cols)
        return pd.DataFrame([dict(zip(order, row, strict=True)) for row in zip(*cols.values(), strict=True)])

    def samples(self, trial_ids: Sequence[str], max_points: int = 400) -> pd.DataFrame:
        """The trials' power series, downsampled per (trial_id, source) to at most about
        `max_points` points: time buckets that never span two phases (a series with more
        phase runs than `max_points` keeps one point per run). Columns: trial_id, source,
        phase, t_s (bucket's mean time, s since the trial's first sample), power_w (mean),
        power_max_w, temperature_c (mean), energy_j (cumulative at the bucket's last sample:
        the energy counter's reading less its first where every sample has one, else power
        integrated by the trapezoid rule), n (raw samples in the bucket)."""
        cols = ["trial_id", "source", "phase", "t_s", "power_w", "power_max_w", "temperature_c", "energy_j", "n"]
        ids = [str(t) for t in dict.fromkeys(trial_ids)]
        if not ids or not self.files("samples"):
            return pd.DataFrame(columns=cols)
        where = f"WHERE trial_id IN ({', '.join(map(_q, ids))})"
        wanted = ["trial_id", "source", "phase", "t_ns", "power_w", "energy_j", "temperature_c"]

        def build() -> str:
            return f"""
WITH raw AS ({self._trial_rows_sql('samples', wanted, where)}),
s AS (SELECT *, (t_ns - min(t_ns) OVER (PARTITION BY trial_id)) / 1e9 AS t,
        count(*) OVER w AS series_n, count(energy_j) OVER w AS counter_n, count(power_w) OVER w AS power_n,
        lag(phase) OVER o AS prev_phase, lag(t_ns) OVER o AS prev_t, lag(power_w) OVER o AS prev_p
      FROM raw WHERE t_ns IS NOT NULL
      WINDOW w AS (PARTITION BY trial_id, source), o AS (PARTITION BY trial_id, source ORDER BY t_ns)),
c AS (SELECT *,
        sum(CASE WHEN prev_t IS NULL OR phase IS NOT DISTINCT FROM prev_phase THEN 0 ELSE 1 END) OVER o AS run,
        CASE WHEN counter_n = series_n THEN energy_j - first_value(energy_j) OVER o WHEN power_n = 0 THEN NULL
             ELSE coalesce(sum(coalesce((t_ns - prev_t) / 1e9 * (power_w + prev_p) / 2, 0)) OVER o, 0) END AS cum
      FROM s WINDOW o AS (PARTITION BY trial_id, source ORDER BY t_ns ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)),
b AS (SELECT *, max(run) OVER (PARTITION BY trial_id, source) + 1 AS runs,
        min(t) OVER (PARTITION BY trial_id, source) AS t0, max(t) OVER (PARTITION BY trial_id, source) AS t1
      FROM c),
k AS (SELECT *, CASE WHEN t1 > t0 THEN least(floor((t - t0) / (t1 - t0) * greatest({max_points} - runs + 1, 1)),
                                              greatest({max_points} - runs + 1, 1) - 1) ELSE 0 END AS bucket FROM b)
SELECT trial_id, source, any_value(phase) AS phase, avg(t) AS t_s, avg(power_w) AS power_w,
       max(power_w) AS power_max_w, avg(temperature_c) AS temperature_c, arg_max(cum, t_ns) AS energy_j,
       count(*) AS n
FROM k GROUP BY trial_id, source, run, bucket ORDER BY trial_id, source, t_s"""
        df = self._sql(build, ["trials", "samples"])
        return df[cols]

    def responses_by_category(self) -> pd.DataFrame:
        """Per (CONFIG_KEYS..., category) (task is a key): responses (requests answered; `requests` is
        the workload axis), correct (scored correct), scored,
        accuracy (correct / scored; null: none scored), energy_j (sum of the requests'
        shares), output_words (words of the responses)."""
        cols = [*CONFIG_KEYS, "category", "responses", "correct", "scored", "accuracy", "energy_j", "output_words"]
        if not self.files("responses") or not self.files("trials"):
            return pd.DataFrame(columns=cols)
        keys = ", ".join(f"t.{_ident(k)}" for k in CONFIG_KEYS)

        # per trial and file first (few rows for the precedence), then per configuration
        per_file = (["trial_id", "category"],
                    "count(*) AS n, sum(correct::INT) AS c, count(correct) AS s, sum(energy_j) AS e, "
                    f"sum({words_sql(spaced_sql('response'))}) AS w")

        def build() -> str:
            r = self._trial_rows_sql("responses", ["trial_id", "category", "correct", "energy_j", "response"],
                                     per_file=per_file)
            return (f"SELECT {keys}, r.category, sum(r.n) AS responses, sum(r.c) AS correct, sum(r.s) AS scored, "
                    "sum(r.c) / nullif(sum(r.s), 0) AS accuracy, sum(r.e) AS energy_j, sum(r.w) AS output_words "
                    f"FROM ({r}) r JOIN ({self._keyed_trials([])}) t USING (trial_id) GROUP BY {keys}, r.category")
        df = self._sql(build, ["trials", "responses"])
        if df.empty:
            return pd.DataFrame(columns=cols)
        df = df[cols]
        for c in ("responses", "correct", "scored", "output_words"):
            df[c] = pd.array(df[c], dtype="Int64")
        return df.iloc[_order_index(df, [*CONFIG_KEYS, "category"])].reset_index(drop=True)

    def systems(self) -> pd.DataFrame:
        """Every systems row (one per node and device, per sweep and hardware)."""
        if not self.files("systems"):
            return pd.DataFrame()
        return self._sql(lambda: f"SELECT * EXCLUDE (filename) FROM {self._source('systems')}", ["systems"])


_ARROW_KINDS = ("BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN")


def _frame(rel: duckdb.DuckDBPyRelation) -> pd.DataFrame:
    """The relation's rows as its .df() gives them (an int or bool column with nulls nullable, a text
    column of nulls only as objects), through Arrow: half the time on 100,000 rows of 70 columns."""
    if any(str(t) not in _ARROW_KINDS for t in rel.types):
        return rel.df()  # other types: as DuckDB converts them
    table = rel.to_arrow_table()
    if not table.num_rows:
        return rel.df()
    nullable = {pa.int64(): pd.Int64Dtype(), pa.bool_(): pd.BooleanDtype()}
    out = {}
    for name, col in zip(table.column_names, table.columns, strict=True):
        nulls = col.null_count
        if col.type in nullable and nulls:
            out[name] = col.to_pandas(types_mapper=nullable.get)
        elif col.type == pa.string() and nulls == len(col):
            out[name] = pd.Series([None] * len(col), dtype=object)
        else:
            out[name] = col.to_pandas()
    return pd.DataFrame(out, copy=False)


def _order_index(df: pd.DataFrame, cols: Sequence[str]) -> list[int]:
    """The positions of `df`'s rows sorted as summary's `_order` sorts their `cols` values (stable):
    each column's few distinct values ranked once, then the rows sorted by those ranks."""
    ranks = {}
    for c in cols:
        codes, uniques = pd.factorize(df[c], use_na_sentinel=False)
        keys = [_order((_plain(u),)) for u in uniques]
        dense = {k: i for i, k in enumerate(sorted(set(keys)))}
        ranks[c] = pd.Series(codes).map(dict(enumerate(dense[k] for k in keys)))
    return list(pd.DataFrame(ranks).sort_values(list(cols), kind="stable").index)


def _plain_column(values: pd.Series) -> list[Any]:
    """_plain of every value of a column, each distinct value converted once."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    plain = [_plain(u) for u in uniques] + [None]
    return [plain[c] for c in codes.tolist()]


def _ci95s(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """ci95 of each (std, n): the t quantile looked up once per distinct n."""
    t = pd.Series(n).map({k: t975(k - 1) if k > 1 else math.nan for k in np.unique(n).tolist()}).to_numpy(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = t * std / np.sqrt(n.astype(float))
    return np.where((n > 1) & ~np.isnan(std), out, np.nan)


def _plain_null(v: Any) -> bool:
    """A null of any kind (None, NA, NaN); a list is not one."""
    return v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v))


def _plain(v: Any) -> Any:
    """A key value as summary.configurations has it: nulls as None, numpy scalars as Python's."""
    if v is None or v is pd.NA:
        return None
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        v = v.item()
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v.is_integer():
            return int(v)
    return v
