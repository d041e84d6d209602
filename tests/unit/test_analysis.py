"""analysis/compare.py: per-configuration mean, std and 95 % confidence interval (Student's t)."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))
from compare import by_config, t975  # noqa: E402


def _trials(values: list[float], status: str = "ok", precision: str = "bf16") -> list[dict]:
    return [{"sweep": "s", "hardware": "h200", "model": "m", "precision": precision, "batch_size": 1,
             "task": "qa", "prompt_variant": "default", "status": status, "j_per_token": v} for v in values]


def test_ci_uses_students_t_and_ignores_failed_trials():
    df = pd.DataFrame(_trials([1.0, 2.0, 3.0, 4.0]) + _trials([100.0], status="failed"))
    [row] = by_config(df, "j_per_token").to_dict("records")
    assert row["n"] == 4 and row["mean"] == pytest.approx(2.5)
    std = pd.Series([1.0, 2.0, 3.0, 4.0]).std()
    assert row["std"] == pytest.approx(std)
    assert row["ci95"] == pytest.approx(3.182 * std / 2.0)


def test_single_repeat_has_no_interval_and_configs_stay_apart():
    df = pd.DataFrame(_trials([5.0]) + _trials([1.0, 1.2], precision="nf4"))
    rows = {r["precision"]: r for r in by_config(df, "j_per_token").to_dict("records")}
    assert math.isnan(rows["bf16"]["ci95"]) and rows["bf16"]["mean"] == 5.0
    assert rows["nf4"]["n"] == 2 and rows["nf4"]["ci95"] == pytest.approx(12.706 * pd.Series([1.0, 1.2]).std() / math.sqrt(2))


def test_t_quantiles():
    assert t975(1) == 12.706 and t975(30) == 2.042 and t975(200) == 1.96
