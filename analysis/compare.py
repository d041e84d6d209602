"""Per-configuration statistics over the store: mean, std and 95 % CI of a metric across repeats.

A configuration is `energyray.report.CONFIG_KEYS`: the sweep and every grid axis.
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from energyray.report.summary import CONFIG_KEYS, configurations
from energyray.store import Store

CONFIG = list(CONFIG_KEYS)
# two-sided 97.5 % quantiles of Student's t for n-1 = 1..30 degrees of freedom
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]


def load_trials(path: str) -> pd.DataFrame:
    return Store(path).read("trials")


def t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


def by_config(trials: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std, n and the 95 % CI half-width of `metric` over the ok trials of each config.

    One row per configuration (CONFIG columns, nulls as None), in the summary's order.
    """
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials.iloc[0:0]
    rows = []
    for key, g in configurations(ok):
        x = pd.to_numeric(g[metric], errors="coerce").dropna()
        n = len(x)
        std = float(x.std()) if n > 1 else math.nan
        half = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
        rows.append({**key, "n": n, "mean": x.mean() if n else math.nan, "std": std, "ci95": half})
    return pd.DataFrame(rows)


if __name__ == "__main__":
    args = sys.argv[1:]
    store = args[0] if args else "outputs/store"
    metric = args[1] if len(args) > 1 else "j_per_token"
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(by_config(load_trials(store), metric).to_string(index=False))
