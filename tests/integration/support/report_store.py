"""A store for report tests, as a real user's would hold after a few studies: the 0.1.0 store of
tests/data (old schema, a failure) plus rows written with Store.write: two sweeps, three hardware
classes, several models, precisions and batch sizes, repeats, failures, samples with phases
(GPU board and wall; CodeCarbon's load-only samples on the CPU, whose energy is estimated),
and scored responses with categories. Values are plausible, fixed (seeded)."""

from __future__ import annotations

import hashlib
import random
import shutil
from pathlib import Path
from typing import Any

from energyray import schema
from energyray.store import Store

OLD_STORE = Path(__file__).resolve().parents[2] / "data" / "store-0.1.0"
CATEGORIES = ("math", "history", "biology")
PHASES = (("idle", 2, 70.0), ("load", 3, 110.0), ("warmup", 2, 260.0), ("prefill", 2, 340.0),
          ("decode", 8, 300.0), ("response", 1, 120.0))  # (phase, samples at 10 Hz, mean power W)

# (sweep, hardware, model, backend, precision, batch_size, task, params_b, J/token at batch 1, s/token)
POINTS: list[tuple[str, str, str, str, str, int, str, float, float, float]] = [
    *[("quantization", hw, model, "transformers", precision, 1, task, params, jpt, spt)
      for hw, scale in (("h100", 1.0), ("l4", 1.9))
      for model, params, base in (("mistral-7b", 7.25, 2.4), ("qwen2-7b", 7.6, 2.7))
      for precision, factor in (("baseline", 1.0), ("int8", 1.45), ("nf4", 0.8))
      for task in ("qa", "longform")
      for jpt, spt in [(base * scale * factor, 0.022 * scale * factor)]],
    *[("batching", "cpu", "gemma3-270m", "transformers", "baseline", batch, "qa", 0.27, 0.9 / batch, 0.05 / batch ** 0.5)
      for batch in (1, 4)],
]
FAILURES = [
    ("quantization", "l4", "qwen2-7b", "transformers", "baseline", 8, "longform",
     "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"),
    ("batching", "cpu", "gemma3-270m", "transformers", "baseline", 16, "qa",
     "TrialTimeout: the trial ran past its 600 s limit"),
]


def _tid(*parts: object) -> str:
    return hashlib.sha1("|".join(map(str, parts)).encode()).hexdigest()[:16]


def _declared(table: str, row: dict[str, Any]) -> dict[str, Any]:
    names = set(schema.names(table))
    return {k: v for k, v in row.items() if k in names}


def _samples(tid: str, hw: str, rng: random.Random) -> list[dict[str, Any]]:
    rows, t_ns = [], 1_000_000_000
    if hw == "cpu":
        # CodeCarbon's samples hold no power, energy or temperature (its figures are per window,
        # estimated): only the CPU's load and the memory used, as a real CPU trial stores them
        t = t_ns
        for phase, n, watts in PHASES:
            for _ in range(n):
                rows.append({"trial_id": tid, "source": "codecarbon", "phase": phase, "t_ns": t, "power_w": None,
                             "energy_j": None, "temperature_c": None,
                             "utilization_pct": min(100.0, watts / 3.5 * rng.uniform(0.9, 1.1)),
                             "memory_used_mb": 1200.0 + rng.uniform(0, 50)})
                t += 100_000_000
        return rows
    for source in ("nvml", "pdu"):
        energy, t, temp = 0.0, t_ns, 38.0
        for phase, n, watts in PHASES:
            for _ in range(n):
                p = watts * (1.6 if source == "pdu" else 1.0) * rng.uniform(0.93, 1.07)
                energy += p * 0.1
                temp += (p - 150) / 400
                rows.append({"trial_id": tid, "source": source, "phase": phase, "t_ns": t, "power_w": p,
                             "energy_j": energy, "temperature_c": None if source == "pdu" else temp})
                t += 100_000_000
    return rows


def build(path: Path, seed: int = 7) -> dict[str, Any]:
    """Write the store at `path`; returns what it holds (models, sweeps, trial ids, failures)."""
    shutil.copytree(OLD_STORE, path)
    store = Store(path)
    rng = random.Random(seed)
    ok_ids, failed_ids = [], []
    for sweep, hw, model, backend, precision, batch, task, params, jpt, spt in POINTS:
        for repeat in range(3):
            tid = _tid(sweep, hw, model, precision, batch, task, repeat)
            requests = 8
            out_tokens = requests * (32 if task == "qa" else 128)
            in_tokens = requests * (rng.randint(35, 90) if task == "qa" else rng.randint(150, 400))
            duration = out_tokens * spt * rng.uniform(0.95, 1.05) / batch
            # decode per output token, plus a prefill share that grows with the prompt
            energy = jpt * rng.uniform(0.94, 1.06) * out_tokens + jpt * 0.02 * in_tokens
            j_per_token = energy / out_tokens
            correct = rng.randint(3, 7) if task == "qa" else None
            row = {
                "trial_id": tid, "sweep": sweep, "hardware": hw, "model": model, "backend": backend,
                "weights": "real", "precision": precision, "batch_size": batch, "task": task,
                "prompt_variant": "default", "repeat": repeat, "status": "ok", "requests": requests,
                "params_b": params, "device": "cpu" if hw == "cpu" else "cuda",
                "started_at": f"2026-12-0{1 + repeat}T10:{10 + len(ok_ids) % 40:02d}:00Z",
                "finished_at": f"2026-12-0{1 + repeat}T10:{11 + len(ok_ids) % 40:02d}:00Z",
                "input_tokens": in_tokens, "output_tokens": out_tokens, "output_words": int(out_tokens * 0.75),
                "duration_s": duration, "ttft_s": 0.08 * spt / 0.022, "tpot_s": spt,
                "tokens_per_s": out_tokens / duration, "energy_j": energy,
                # a CPU's energy from CodeCarbon: estimated, over CPU and RAM, no peak (samplers/codecarbon.py)
                "energy_source": "estimated" if hw == "cpu" else "counter",
                "energy_scope": "cpu+ram" if hw == "cpu" else "gpu",
                "avg_power_w": energy / duration, "peak_power_w": None if hw == "cpu" else energy / duration * 1.2,
                "j_per_token": j_per_token, "j_per_word": energy / (out_tokens * 0.75), "j_per_request": energy / requests,
                "temperature_max_c": None if hw == "cpu" else 40 + rng.uniform(0, 25),
                "scored_requests": requests if task == "qa" else 0,
                "correct_requests": correct, "accuracy": correct / requests if correct is not None else None,
                "co2_g": energy / 3.6e6 * 380, "co2_g_per_request": energy / 3.6e6 * 380 / requests,
                "co2_estimated": hw == "cpu",
                "carbon_intensity_g_per_kwh": 380.0, "prefill_j": energy * 0.15, "decode_j": energy * 0.85,
                "idle_j": 14.0, "load_j": 33.0, "warmup_j": 52.0, "response_j": 12.0,
                "roofline_efficiency": rng.uniform(0.3, 0.8), "wall_energy_j": energy * 1.6 if hw != "cpu" else None,
                "schema_version": schema.SCHEMA_VERSION,
            }
            responses = [{"trial_id": tid, "request_index": i, "batch_index": i // batch, "item_id": f"item-{i}",
                          "category": CATEGORIES[i % 3] if task == "qa" else None,
                          "correct": (i < correct) if correct is not None else None,
                          "input_tokens": in_tokens // requests, "output_tokens": out_tokens // requests,
                          "energy_j": energy / requests, "energy_source": row["energy_source"],
                          "response": "an answer"} for i in range(requests)]
            store.write_trial(_declared("trials", row), [_declared("samples", s) for s in _samples(tid, hw, rng)],
                              [_declared("responses", r) for r in responses], sweep, hw)
            ok_ids.append(tid)
    for sweep, hw, model, backend, precision, batch, task, error in FAILURES:
        tid = _tid(sweep, hw, model, precision, batch, task, "failed")
        row = {"trial_id": tid, "sweep": sweep, "hardware": hw, "model": model, "backend": backend,
               "precision": precision, "batch_size": batch, "task": task, "repeat": 0, "status": "failed",
               "error": error, "started_at": "2026-12-04T09:00:00Z", "schema_version": schema.SCHEMA_VERSION}
        store.write_trial(_declared("trials", row), [], [], sweep, hw)
        failed_ids.append(tid)
    return {"ok": ok_ids, "failed": failed_ids, "errors": [f[-1] for f in FAILURES],
            "models": sorted({p[2] for p in POINTS} | {"tiny-llama"}),
            "sweeps": sorted({p[0] for p in POINTS} | {"smoke", "smoke_failed"})}
