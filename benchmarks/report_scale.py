"""The report's queries at scale: a generated store of 100,000 trials and 10,000,000 samples.

Generates (pyarrow, vectorised) a compacted store: segments (`segment-<UTC>-<hex>.parquet`,
as `store compact` writes them) of trials, samples and responses over several sweeps and
hardware classes (GPUs on the energy counter, a CPU on CodeCarbon's estimate), with failures,
phases idle/load/warmup/prefill/decode/response/unload, and a few hundred loose trials (half of
them newer versions of segment trials, which win). Then times, each in a fresh process (its
wall time and peak RSS), what the dashboard loads through `StoreQuery`: trials with ~40
columns, per-configuration statistics, the series of 40 representative trials, accuracy per
category, and the full page (`dashboard.load_report_data`, `views.build_views`,
`dashboard.write_report`, each timed, and the page's size). Last, the
same trials query over N loose files (one per trial, as before compaction), extrapolated to
100,000. Targets (issue 18): under 10 s and 2 GB.

    python benchmarks/report_scale.py                      # ~2-4 min on 2 cores
    python benchmarks/report_scale.py --trials 10000 --samples-per-trial 100 --loose-compare 1000
    python benchmarks/report_scale.py --keep /tmp/scale   # keep the generated stores there (a second
                                                          # run with the same --keep measures them again)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from energyray import schema  # noqa: E402

# (sweep, hardware, share of the trials)
PARTITIONS = [("quantization", "h100", 0.20), ("quantization", "h200", 0.15), ("quantization", "cpu", 0.05),
              ("batching", "h100", 0.15), ("batching", "h200", 0.15), ("tasks", "h100", 0.15),
              ("tasks", "cpu", 0.05), ("prompts", "h200", 0.10)]
MODELS = {"gemma3-270m": 0.27, "gemma3-1b": 1.0, "llama3-8b": 8.0, "mistral-7b": 7.2, "qwen2-7b": 7.6,
          "tiny-llama": 0.0002}
PRECISIONS = {"fp32": 1.6, "bf16": 1.0, "int8": 1.4, "nf4": 1.2}
BATCHES = np.array([1, 4, 16])
TASKS = {"qa": ["history", "science", "geography"], "mmlu_style": ["law", "medicine", "physics", "maths"],
         "hle_style": ["biology", "chemistry", "humanities"], "longform": [None]}
NEW_TOKENS = np.array([64, 256])
# J/token of a 1 B model at bf16, batch 1, and the power it draws, per hardware
HARDWARE = {"h100": (0.09, 330.0, "NVIDIA H100 80GB HBM3"), "h200": (0.08, 360.0, "NVIDIA H200"),
            "cpu": (2.5, 45.0, None)}
# the phase of each of a trial's samples: two batches, so prefill and decode come twice
PHASE_RUNS = [("idle", 10), ("load", 15), ("warmup", 10), ("prefill", 3), ("decode", 25), ("prefill", 2),
              ("decode", 25), ("response", 5), ("unload", 5)]
PHASE_POWER = {"idle": 0.2, "load": 0.45, "warmup": 0.8, "prefill": 1.3, "decode": 1.0, "response": 0.3,
               "unload": 0.25}
ERRORS = ["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB",
          "ValueError: max_new_tokens must be greater than 0", "TimeoutError: the trial ran past its timeout (600 s)"]
RESPONSES_PER_TRIAL = 8
TRIAL_COLUMNS = ["trial_id", "sweep", "hardware", "model", "backend", "weights", "precision", "batch_size", "task",
                 "prompt_variant", "max_new_tokens", "requests", "prompt_tokens", "chat_template", "status", "error",
                 "gpu_name", "started_at", "input_tokens", "output_tokens", "output_words", "duration_s", "ttft_s",
                 "tpot_s", "tokens_per_s", "accuracy", "scored_requests", "correct_requests", "energy_j",
                 "energy_source", "energy_scope", "energy_estimated_j", "avg_power_w", "j_per_token", "j_per_word",
                 "j_per_request", "prefill_j", "decode_j", "co2_g", "roofline_efficiency"]
STAT_METRICS = ["j_per_token", "tokens_per_s", "ttft_s", "j_per_request", "accuracy", "co2_g"]
GB = 1024 ** 3


def _stamp(i: int) -> str:
    t = datetime(2026, 12, 1, tzinfo=UTC) + timedelta(seconds=i)
    return f"{t:%Y%m%dT%H%M%S%f}-{secrets.token_hex(4)}"


def _table(name: str, data: dict[str, Any], n: int) -> pa.Table:
    """`data` as `name`'s declared file schema: the columns not given are typed nulls."""
    target = schema.arrow_schema(name)
    cols = []
    for f in target:
        v = data.get(f.name)
        if f.name == "schema_version":
            v = np.full(n, schema.SCHEMA_VERSION)
        if v is None:
            cols.append(pa.nulls(n, f.type))
        elif np.isscalar(v):  # one value on every row
            cols.append(pa.array([v] * n, type=f.type))
        else:
            cols.append(pa.array(v, type=f.type, from_pandas=True))
    return pa.Table.from_arrays(cols, schema=target)


def trials_chunk(rng: np.random.Generator, ids: np.ndarray, hardware: str, t0_s: float) -> pa.Table:
    n = len(ids)
    base, watts, gpu = HARDWARE[hardware]
    models = np.array(list(MODELS))
    mi = rng.integers(0, len(models), n)
    params = np.array(list(MODELS.values()))[mi]
    precisions = np.array(list(PRECISIONS))
    pi = rng.integers(0, len(precisions), n)
    batch = BATCHES[rng.integers(0, len(BATCHES), n)]
    tasks = np.array(list(TASKS))
    ti = rng.integers(0, len(tasks), n)
    new = NEW_TOKENS[rng.integers(0, len(NEW_TOKENS), n)]
    requests = batch * 2
    failed = rng.random(n) < 0.02
    jpt = (base * np.maximum(params, 0.05) ** 0.7 * np.array(list(PRECISIONS.values()))[pi] / np.sqrt(batch)
           * rng.lognormal(0, 0.05, n))
    out_tokens = (requests * new * rng.uniform(0.6, 1.0, n)).astype(np.int64)
    in_tokens = requests * rng.integers(40, 400, n)
    energy = jpt * out_tokens
    power = watts * rng.uniform(0.85, 1.1, n)
    tps = power / jpt
    duration = out_tokens / tps
    words = (out_tokens * 0.75).astype(np.int64)
    scored = np.where(tasks[ti] == "longform", 0, requests)
    acc_base = 0.25 + 0.08 * np.log10(np.maximum(params, 0.01) * 100) - 0.03 * (precisions[pi] == "nf4")
    correct = rng.binomial(scored, np.clip(acc_base, 0.01, 0.99))
    estimated = hardware == "cpu"

    def ok(v: np.ndarray) -> np.ndarray:  # a failed trial has no figures: null, never 0
        return np.where(failed, np.nan, np.asarray(v, dtype=float))

    status = np.where(failed, np.where(rng.random(n) < 0.5, "oom", "failed"), "ok")
    error = np.where(failed, np.array(ERRORS)[rng.integers(0, len(ERRORS), n)], None)
    start = t0_s + np.arange(n) * 30.0
    accuracy = np.where(scored > 0, correct / np.maximum(scored, 1), np.nan)
    data = {
        "trial_id": ids, "repeat": rng.integers(0, 5, n), "model": models[mi], "backend": "transformers",
        "weights": "real", "precision": precisions[pi], "batch_size": batch, "task": tasks[ti],
        "prompt_variant": np.where(rng.random(n) < 0.5, "default", "brief"), "max_new_tokens": new,
        "requests": requests, "chat_template": None, "status": status, "error": error, "device": "cuda:0" if gpu else "cpu",
        "params_b": params, "node": f"node-{hardware}", "gpu_name": gpu,
        "started_at": [datetime.fromtimestamp(s, UTC).isoformat() for s in start],
        "input_tokens": np.where(failed, None, in_tokens), "output_tokens": np.where(failed, None, out_tokens),
        "output_words": np.where(failed, None, words), "duration_s": ok(duration),
        "ttft_s": ok(0.01 + 0.004 * params * rng.uniform(0.8, 1.2, n)), "tpot_s": ok(duration / new),
        "tokens_per_s": ok(tps), "accuracy": ok(accuracy),
        "scored_requests": np.where(failed, None, scored), "correct_requests": np.where(failed | (scored == 0), None, correct),
        "energy_j": ok(energy), "energy_source": np.where(failed, "not_measurable", "estimated" if estimated else "counter"),
        "energy_scope": None if estimated else "gpu", "energy_reason": np.where(failed, "the trial failed", None),
        "avg_power_w": ok(power), "peak_power_w": ok(power * 1.3), "j_per_token": ok(jpt), "j_per_word": ok(energy / words),
        "j_per_request": ok(energy / requests), "prefill_j": ok(energy * 0.08), "decode_j": ok(energy * 0.92),
        "idle_j": ok(watts * 0.2 * 5), "load_j": ok(watts * 0.45 * 20), "warmup_j": ok(energy * 0.1),
        "co2_g": ok(energy / 3.6e6 * 380), "carbon_intensity_g_per_kwh": 380.0,
        "roofline_efficiency": None if estimated else ok(rng.uniform(0.2, 0.8, n)),
        "temperature_max_c": ok(rng.uniform(40, 75, n)), "samples_n": 100, "window_s": ok(duration),
    }
    return _table("trials", data, n)


def samples_chunk(rng: np.random.Generator, ids: np.ndarray, hardware: str, per_trial: int) -> pa.Table:
    """`per_trial` samples per trial in the phases of PHASE_RUNS (stretched to fit)."""
    n = len(ids)
    runs = np.array([k for _, k in PHASE_RUNS], dtype=float)
    counts = np.maximum(np.round(runs * per_trial / runs.sum()).astype(int), 1)
    counts[4] += per_trial - counts.sum()  # the first decode run takes the rounding
    phase_one = np.repeat(np.array([p for p, _ in PHASE_RUNS]), counts)
    watts = HARDWARE[hardware][1]
    power_one = watts * np.array([PHASE_POWER[p] for p in phase_one])
    rows = n * per_trial
    dt = rng.uniform(0.09, 0.11, rows).reshape(n, per_trial)
    t = np.cumsum(dt, axis=1)
    t_ns = (rng.integers(10**12, 10**13, n)[:, None] + t * 1e9).astype(np.int64)
    power = power_one[None, :] * rng.normal(1, 0.05, (n, per_trial))
    gpu = hardware != "cpu"
    data: dict[str, Any] = {
        "trial_id": np.repeat(ids, per_trial), "source": "nvml:0" if gpu else "codecarbon",
        "phase": np.tile(phase_one, n), "t_ns": t_ns.ravel(), "power_w": power.ravel(),
        "temperature_c": (35 + 30 * t / t[:, -1:]).ravel() if gpu else None,
    }
    if gpu:
        data["energy_j"] = (np.cumsum(power * dt, axis=1) + rng.uniform(1e6, 1e8, n)[:, None]).ravel()
        data["sm_clock_mhz"] = np.where(power.ravel() > watts * 0.5, 1980.0, 345.0)
        data["utilization_pct"] = np.clip(power.ravel() / watts * 80, 0, 100)
        data["memory_used_mb"] = np.full(rows, 18000.0)
    return _table("samples", data, rows)


WORDS = ["the", "answer", "is", "paris", "because", "energy", "per", "token", "falls", "with", "batch", "size"]


def responses_chunk(rng: np.random.Generator, trials: pa.Table) -> pa.Table:
    ok = trials.filter(pa.compute.equal(trials["status"], "ok"))
    ids = np.array(ok["trial_id"].to_pylist())
    tasks = np.array(ok["task"].to_pylist())
    energy = np.array(ok["energy_j"].to_pylist(), dtype=float)
    k = RESPONSES_PER_TRIAL
    n = len(ids) * k
    task_r = np.repeat(tasks, k)
    category = np.empty(n, dtype=object)
    for task, cats in TASKS.items():
        m = task_r == task
        category[m] = np.array(cats, dtype=object)[rng.integers(0, len(cats), int(m.sum()))]
    scored = task_r != "longform"
    correct = np.where(scored, rng.random(n) < 0.45, None)
    pool = np.array([" ".join(rng.choice(WORDS, size=int(w))) for w in rng.integers(3, 40, 256)], dtype=object)
    data = {
        "trial_id": np.repeat(ids, k), "request_index": np.tile(np.arange(k), len(ids)),
        "batch_index": np.tile(np.arange(k) // 4, len(ids)), "item_id": rng.integers(0, 500, n).astype(str),
        "category": category, "response": pool[rng.integers(0, len(pool), n)],
        "gold": np.where(scored, "paris", None), "correct": correct, "score": np.where(scored, correct, None),
        "scorer": np.where(scored, "exact_match", None), "input_tokens": rng.integers(40, 400, n),
        "output_tokens": rng.integers(20, 256, n), "latency_s": rng.uniform(0.5, 8, n), "ttft_s": rng.uniform(0.01, 0.2, n),
        "energy_j": np.repeat(energy / k, k), "energy_source": "counter", "energy_share_rule": "weight=duration",
    }
    return _table("responses", data, n)


def generate(store: Path, trials: int, per_trial: int, loose: int, seed: int = 0) -> dict[str, int]:
    """The compacted store with `loose` loose trials; returns counts."""
    rng = np.random.default_rng(seed)
    chunk = 10_000
    seg = 0
    counts = {"trials": 0, "samples": 0, "responses": 0, "segments": 0, "loose_files": 0}
    loose_ids: list[tuple[str, str, pa.Table]] = []
    for p, (sweep, hardware, share) in enumerate(PARTITIONS):
        want = int(round(trials * share)) if p < len(PARTITIONS) - 1 else trials - counts["trials"]
        folder = f"sweep={sweep}/hardware={hardware}"
        for start in range(0, want, chunk):
            m = min(chunk, want - start)
            ids = np.array([f"{p:x}{i:015x}" for i in range(counts["trials"], counts["trials"] + m)])
            t = trials_chunk(rng, ids, hardware, 1.7e9 + counts["trials"] * 30)
            s = samples_chunk(rng, ids, hardware, per_trial)
            r = responses_chunk(rng, t)
            for name, table in (("trials", t), ("samples", s), ("responses", r)):
                path = store / name / folder / f"segment-{_stamp(seg)}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path)
                if name != "trials":  # counted below
                    counts[name] += table.num_rows
                counts["segments"] += 1
            seg += 1
            counts["trials"] += m
            if len(loose_ids) < loose // 2:  # the first ids of each chunk get a newer loose version
                loose_ids += [(folder, hardware, t.slice(i, 1)) for i in range(min(loose // 2 // len(PARTITIONS) + 1, m))]
        systems = {"system_id": [f"{hardware}-0"], "node": [f"node-{hardware}"], "kind": ["gpu" if hardware != "cpu"
                   else "cpu"], "gpu_name": [HARDWARE[hardware][2]], "sampler": ["nvml" if hardware != "cpu" else
                                                                                 "codecarbon"]}
        path = store / "systems" / folder / "node.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(_table("systems", systems, 1), path)
    # loose files: newer versions of segment trials, and new trials (written after compaction)
    loose_ids = loose_ids[: loose // 2]
    extra = loose - len(loose_ids)
    for j in range(extra):
        folder, hardware = f"sweep={PARTITIONS[j % 3][0]}/hardware={PARTITIONS[j % 3][1]}", PARTITIONS[j % 3][1]
        tid = f"f{j:015x}"
        loose_ids.append((folder, hardware, trials_chunk(rng, np.array([tid]), hardware, 1.8e9 + j)))
        counts["trials"] += 1
    for folder, hardware, row in loose_ids:
        tid = row["trial_id"][0].as_py()
        row = trials_chunk(rng, np.array([tid]), hardware, 1.9e9)  # a rerun: other figures
        for name, table in (("trials", row), ("samples", samples_chunk(rng, np.array([tid]), hardware, per_trial)),
                            ("responses", responses_chunk(rng, row))):
            if table.num_rows:
                path = store / name / folder / f"{tid}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pq.write_table(table, path)
                counts["loose_files"] += 1
    return counts


def generate_loose(store: Path, n: int, seed: int = 1) -> None:
    """`n` trials as one loose trials file each (a store before compaction)."""
    rng = np.random.default_rng(seed)
    t = trials_chunk(rng, np.array([f"{i:016x}" for i in range(n)]), "h100", 1.7e9)
    folder = store / "trials" / "sweep=quantization" / "hardware=h100"
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        pq.write_table(t.slice(i, 1), folder / f"{i:016x}.parquet")


# -- measuring: each load in a fresh process --------------------------------------------------
def measure(store: str, what: str) -> dict[str, Any]:
    """Run in a child: time `what` ('queries', 'trials' or 'page') on `store`."""
    from energyray.report.query import StoreQuery

    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    q = StoreQuery(store)
    if what in ("queries", "trials"):
        t = time.perf_counter()
        trials = q.trials(TRIAL_COLUMNS)
        out["trials_s"], out["trials_rows"], out["trials_columns"] = time.perf_counter() - t, len(trials), trials.shape[1]
    if what == "queries":
        t = time.perf_counter()
        stats = q.config_stats(STAT_METRICS)
        out["config_stats_s"], out["configs"] = time.perf_counter() - t, len(stats)
        ok = trials[trials["status"] == "ok"]
        ids = list(ok.groupby(["sweep", "hardware", "model"], sort=True)["trial_id"].first())[:40]
        t = time.perf_counter()
        series = q.samples(ids, max_points=400)
        out["samples_s"], out["series_trials"], out["series_points"] = time.perf_counter() - t, len(ids), len(series)
        t = time.perf_counter()
        cats = q.responses_by_category()
        out["responses_by_category_s"], out["category_rows"] = time.perf_counter() - t, len(cats)
        t = time.perf_counter()
        out["systems_rows"] = len(q.systems())
        out["systems_s"] = time.perf_counter() - t
        out["damaged"] = len(q.damaged)
    if what == "page":
        from energyray.report import dashboard  # type: ignore[attr-defined]
        from energyray.report.views import build_views

        page = Path(tempfile.mkdtemp()) / "report.html"
        t, c = time.perf_counter(), time.process_time()
        data = dashboard.load_report_data(store)  # read the store, draw the views, write the page
        out["load_s"], out["configs"] = time.perf_counter() - t, len(data.configs)
        out["load_cpu_s"] = time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        views = build_views(data)
        out["views_s"] = time.perf_counter() - t
        out["views_cpu_s"] = time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        dashboard.write_report(data, page, views=views)
        out["write_s"] = time.perf_counter() - t
        out["write_cpu_s"] = time.process_time() - c
        out["page_s"] = out["load_s"] + out["views_s"] + out["write_s"]
        out["page_mb"] = page.stat().st_size / 1e6
        shutil.rmtree(page.parent, ignore_errors=True)
    out["total_s"] = time.perf_counter() - t0
    out["total_cpu_s"] = time.process_time() - c0  # every thread's CPU time: less sensitive to a loaded machine
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB
    return out


def child(store: Path, what: str) -> dict[str, Any]:
    t = time.perf_counter()
    r = subprocess.run([sys.executable, __file__, "--measure", str(store), what], capture_output=True, text=True,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"measuring {what} failed:\n{r.stderr[-3000:]}")
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    out["process_wall_s"] = wall  # with Python's start and the imports
    return out


def have_page() -> bool:
    try:
        from energyray.report import dashboard  # type: ignore[attr-defined]
    except ImportError:
        return False
    return hasattr(dashboard, "write_report")


def du(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / GB


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--samples-per-trial", type=int, default=100)
    ap.add_argument("--loose", type=int, default=200, help="loose trials beside the segments (3 files each)")
    ap.add_argument("--loose-compare", type=int, default=5000, help="loose trials files for the before-compaction query")
    ap.add_argument("--runs", type=int, default=3, help="measurements of each load (the median is printed)")
    ap.add_argument("--keep", help="generate into this folder and keep it (default: a temp folder, removed)")
    ap.add_argument("--measure", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.measure:
        print(json.dumps(measure(*args.measure)))
        return 0
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="report-scale-"))
    try:
        return run(args, work)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return float(np.median([r[key] for r in runs]))


def run(args: argparse.Namespace, work: Path) -> int:
    store, loose = work / "store", work / "loose"
    t = time.perf_counter()
    if args.keep and store.exists():  # generated by an earlier run with --keep: measured again as it is
        counts = {"trials": args.trials, "samples": 0, "responses": 0, "segments": 0, "loose_files": 0}
        print(f"reusing {store} ({du(store):.2f} GB)")
    else:
        counts = generate(store, args.trials, args.samples_per_trial, args.loose)
        print(f"generated {counts['trials']:,} trials, {counts['samples']:,} samples, {counts['responses']:,} responses "
              f"in {counts['segments']} segments + {counts['loose_files']} loose files, {du(store):.2f} GB, "
              f"{time.perf_counter() - t:.0f} s")
    runs = [child(store, "queries") for _ in range(args.runs)]
    r0 = runs[0]
    print(f"\nStoreQuery over the compacted store (median of {args.runs} fresh processes; the files in the page cache):")
    for key, label in (("trials_s", f"trials: {r0['trials_rows']:,} rows x {r0['trials_columns']} columns"),
                       ("config_stats_s", f"config_stats: {r0['configs']:,} configurations x {len(STAT_METRICS)} "
                                          "metrics"),
                       ("samples_s", f"samples: {r0['series_trials']} trials -> {r0['series_points']:,} points"),
                       ("responses_by_category_s", f"responses_by_category: {r0['category_rows']:,} rows"),
                       ("systems_s", f"systems: {r0['systems_rows']} rows"),
                       ("total_s", "all of them, from StoreQuery(store)"),
                       ("total_cpu_s", "their CPU time (all threads; 2 cores: wall >= CPU / 2)"),
                       ("process_wall_s", "the process, with Python's start and imports")):
        print(f"  {_median(runs, key):7.2f} s  {label}")
    rss = max(r["peak_rss_gb"] for r in runs)
    total = _median(runs, "total_s")
    print(f"  peak RSS {rss:.2f} GB; damaged files: {r0['damaged']}")
    result: dict[str, Any] = {"counts": counts, "queries": runs}
    if have_page():
        pages = [child(store, "page") for _ in range(args.runs)]
        page_s, page_rss = _median(pages, "total_s"), max(p["peak_rss_gb"] for p in pages)
        print(f"\nthe full page, {pages[0]['configs']:,} configurations (median of {args.runs} fresh processes; "
              f"load average {os.getloadavg()[0]:.1f} after them):")
        for key, label in (("load_s", "dashboard.load_report_data: the queries"),
                           ("load_cpu_s", "  its CPU time"),
                           ("views_s", "views.build_views: the figures"),
                           ("views_cpu_s", "  its CPU time"),
                           ("write_s", "dashboard.write_report: JSON and HTML"),
                           ("write_cpu_s", "  its CPU time"),
                           ("total_s", "all three, from StoreQuery(store)"),
                           ("total_cpu_s", "their CPU time (all threads)"),
                           ("process_wall_s", "the process, with Python's start and imports")):
            print(f"  {_median(pages, key):7.2f} s  {label}")
        print(f"  peak RSS {page_rss:.2f} GB; the page {pages[0]['page_mb']:.1f} MB "
              "(per run: " + ", ".join(f"{p['total_s']:.2f}" for p in pages) + " s)")
        result["page"] = pages
        total, rss = page_s, page_rss
    else:
        print("\nfull page: not timed (energyray.report.dashboard.write_report does not exist in this checkout); "
              "the figures above are the queries only")
    print(f"load average after the runs: {' '.join(f'{x:.1f}' for x in os.getloadavg())} (2 cores: above ~1.5 other "
          "work shares them, and wall times stretch; CPU times less so)")
    print(f"GOAL {'PASS' if total < 10 else 'MISS'} time < 10 s: {total:.2f} s")
    print(f"GOAL {'PASS' if rss < 2 else 'MISS'} peak RSS < 2 GB: {rss:.2f} GB")
    if args.loose_compare:
        t = time.perf_counter()
        reused = loose.exists()
        if not reused:
            generate_loose(loose, args.loose_compare)
        gen = "reused" if reused else f"written in {time.perf_counter() - t:.0f} s"
        lr = [child(loose, "trials") for _ in range(args.runs)]
        ls = _median(lr, "trials_s")
        seg = _median(runs, "trials_s")
        per = ls / args.loose_compare
        print(f"\nbefore compaction: the trials query over {args.loose_compare:,} loose files ({gen}): "
              f"{ls:.2f} s ({1000 * per:.2f} ms a file), peak RSS {max(x['peak_rss_gb'] for x in lr):.2f} GB; "
              f"{args.trials:,} loose files at that rate: ~{per * args.trials:.0f} s, "
              f"{per * args.trials / seg:.0f}x the compacted store's {seg:.2f} s")
        result["loose"] = {"files": args.loose_compare, "runs": lr}
    print("RESULT " + json.dumps(result, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
