"""Per-configuration statistics over the store: mean, std and 95 % CI of a metric across repeats.

A configuration is `energyray.report.CONFIG_KEYS`: the sweep and every grid axis.
"""

from __future__ import annotations

import math
import sys

import pandas as pd

from energyray.footprint.project import t975
from energyray.report.summary import CONFIG_KEYS, configurations
from energyray.store import Store

CONFIG = list(CONFIG_KEYS)


def load_trials(path: str) -> pd.DataFrame:
    return Store(path).read("trials")


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
