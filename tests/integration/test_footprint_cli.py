"""CO2 of every trial through the CLI: the default sweep (CodeCarbon's CPU estimate) pinned to
one trial of the tiny model stores non-null CO2 with its intensity, source, date and region,
labelled an estimate; a region the table lacks is refused before anything runs."""

from __future__ import annotations

import pandas as pd
import pytest

from energyray.store import Store


@pytest.fixture(scope="module")
def default_cpu_run(tmp_path_factory, shared_cache, cli):
    root = tmp_path_factory.mktemp("footprint")
    store = root / "store"
    # the default sweep (quantization), every axis pinned to one value: one trial, a few seconds
    args = ["model=tiny-llama", "precision=baseline", "batch_size=1", "task=qa", "sweep.repeats=1", "device=cpu",
            f"store.path={store}", f"cache_dir={shared_cache}"]
    return cli(args, root / "hydra"), Store(store)


def test_the_default_cpu_sweep_stores_labelled_co2(default_cpu_run):
    r, store = default_cpu_run
    assert r.returncode == 0, r.explain()
    t = store.read("trials")
    assert len(t) == 1 and (t["status"] == "ok").all(), t[["status", "error"]]
    row = t.iloc[0]
    assert row["energy_source"] == "estimated"  # CodeCarbon's CPU model
    assert row["co2_g"] > 0 and pd.isna(row["co2_reason"])
    assert bool(row["co2_estimated"]) is True
    assert row["carbon_region"] == "USA"  # footprint.region=auto: sampler.country_iso_code
    assert row["carbon_intensity_g_per_kwh"] > 0
    assert "global_energy_mix.json" in row["carbon_intensity_source"] and row["carbon_intensity_as_of"]
    assert row["co2_g"] == pytest.approx(row["energy_j"] / 3.6e6 * row["carbon_intensity_g_per_kwh"])
    assert row["co2_g_per_request"] == pytest.approx(row["co2_g"] / row["requests"])
    assert row["co2_g_per_1k_tokens"] == pytest.approx(row["co2_g"] / row["output_tokens"] * 1000)
    assert pd.isna(row["embodied_co2_g"])  # off by default: null, with the reason
    assert "footprint.embodied=false" in row["embodied_reason"]
    # CodeCarbon's own figure used the same country's intensity: the same grams
    assert row["co2_kg"] * 1000 == pytest.approx(row["co2_g"], rel=0.02)
    # and its cost: the energy at the region's dated electricity price; a CPU worker has no GPU time
    assert row["energy_cost_usd"] == pytest.approx(row["energy_j"] / 3.6e6 * row["electricity_usd_per_kwh"])
    assert row["electricity_price_source"] and row["electricity_price_as_of"] and bool(row["energy_cost_estimated"])
    assert pd.isna(row["gpu_time_cost_usd"]) and row["gpu_time_cost_reason"]
    assert row["cost_basis"] == "energy" and row["cost_usd_per_request"] == pytest.approx(
        row["energy_cost_usd"] / row["requests"])


def test_an_unknown_region_is_refused_before_anything_runs(energyray):
    r = energyray("sweep=smoke", "footprint.region=USA-TXX", "dry_run=true")
    assert r.returncode == 2, r.explain()
    assert "Traceback" not in r.output, r.explain()
    assert "footprint.region='USA-TXX'" in r.stderr and "Did you mean USA-TX" in r.stderr, r.explain()
    assert "footprint.carbon_intensity_g_per_kwh" in r.stderr and len(r.stderr.strip().splitlines()) == 1
