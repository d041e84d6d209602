"""energyray/footprint/cost.py: a trial's energy and GPU-time cost worked out by hand from the
shipped price tables, the user's overrides, API rows, nulls with their reasons; bill() on a
hand-built table; and `python -m energyray bill` on a store."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from energyray import cli, schema
from energyray.config import FootprintConfig
from energyray.errors import ConfigError
from energyray.footprint.cost import (
    COST_COLUMNS,
    bill,
    check_config,
    cost_fields,
    format_bill,
    load_cost_tables,
)
from energyray.store import Store

TABLES = load_cost_tables()
TX, USA, H100 = 0.0882, 0.1241, 98.32 / 8  # conf/prices: EIA 2023 Texas, EIA 2022 US (commercial); p5.48xlarge / 8


def _config(country: str | None = "USA", hardware: str = "h100") -> str:
    return json.dumps({"trial": {"hardware": hardware}, "sampler": {"country_iso_code": country}})


def _gpu_row(**kw) -> dict:
    row = {"trial_id": "t-gpu", "status": "ok", "model": "qwen-7b", "backend": "transformers", "device": "cuda",
           "gpu_name": "NVIDIA H100 80GB HBM3", "energy_j": 7200.0, "energy_source": "counter", "energy_scope": "gpu",
           "window_s": 90.0, "duration_s": 88.0, "requests": 4, "output_tokens": 500,
           "started_at": "2026-01-02T03:04:05+00:00", "config_json": _config()}
    return {**row, **kw}


def _cfg(**kw) -> FootprintConfig:
    return FootprintConfig(**kw)


def test_a_gpu_trial_costs_its_energy_and_its_gpu_time():
    out = cost_fields(_gpu_row(), _cfg(region="USA-TX", pue=1.5), TABLES)
    assert set(out) == set(COST_COLUMNS)
    energy = 7200 * 1.5 / 3.6e6 * TX  # J x PUE -> kWh x USD/kWh
    gpu = 90 * 1 * H100 / 3600  # window_s x 1 GPU x USD per GPU-hour
    assert out["energy_cost_usd"] == pytest.approx(energy) and out["gpu_time_cost_usd"] == pytest.approx(gpu)
    assert out["cost_usd_per_request"] == pytest.approx((energy + gpu) / 4)
    assert out["cost_usd_per_1k_tokens"] == pytest.approx((energy + gpu) / 500 * 1000)
    assert out["cost_basis"] == "energy+gpu_time" and out["cost_per_request_reason"] is None
    assert (out["electricity_usd_per_kwh"], out["electricity_price_region"], out["electricity_price_as_of"]) \
        == (TX, "USA-TX", "2023")
    assert "EIA Electric Power Annual 2023" in out["electricity_price_source"]
    assert (out["gpu_hour_usd"], out["cloud_offering"], out["gpu_hour_as_of"]) == (H100, "aws-p5-h100", "2023-07-26")
    assert "instance's price / 8" in out["gpu_hour_source"]
    assert out["energy_cost_estimated"] is False
    assert "energy_j (gpu) only" in out["energy_cost_reason"] and "PUE 1.5" in out["energy_cost_reason"]


def test_region_auto_is_the_samplers_country_and_a_state_falls_back_to_its_country():
    assert cost_fields(_gpu_row(), _cfg(), TABLES)["electricity_usd_per_kwh"] == USA  # auto: USA, no PUE
    assert "no PUE applied" in cost_fields(_gpu_row(), _cfg(), TABLES)["energy_cost_reason"]
    ohio = cost_fields(_gpu_row(), _cfg(region="usa-oh"), TABLES)
    assert (ohio["electricity_usd_per_kwh"], ohio["electricity_price_region"]) == (USA, "USA")
    euro = cost_fields(_gpu_row(config_json=_config("FIN")), _cfg(), TABLES)
    assert euro["electricity_usd_per_kwh"] == pytest.approx(0.089 * 1.0813)  # EUR at the table's rate
    assert "USD/EUR" in euro["electricity_price_source"]


def test_a_region_without_a_price_is_null_with_the_fix():
    out = cost_fields(_gpu_row(config_json=_config("JPN")), _cfg(), TABLES)
    assert out["energy_cost_usd"] is None and out["electricity_usd_per_kwh"] is None
    assert "no electricity price for region JPN" in out["energy_cost_reason"]
    assert "footprint.electricity_usd_per_kwh" in out["energy_cost_reason"]
    assert out["gpu_time_cost_usd"] == pytest.approx(90 * H100 / 3600)  # still priced
    assert out["cost_usd_per_request"] is None and out["cost_basis"] is None
    assert out["cost_per_request_reason"].startswith("energy: no electricity price")
    nowhere = cost_fields(_gpu_row(config_json=_config(None)), _cfg(), TABLES)
    assert "footprint.region=auto" in nowhere["energy_cost_reason"]


def test_the_users_prices_override_the_tables_and_say_so():
    out = cost_fields(_gpu_row(), _cfg(electricity_usd_per_kwh=0.30, gpu_hour_usd=2.0), TABLES)
    assert (out["electricity_usd_per_kwh"], out["electricity_price_source"], out["electricity_price_as_of"]) \
        == (0.30, "user", "2026-01-02")
    assert (out["gpu_hour_usd"], out["gpu_hour_source"], out["gpu_hour_as_of"]) == (2.0, "user", "2026-01-02")
    assert out["energy_cost_usd"] == pytest.approx(7200 / 3.6e6 * 0.30)
    assert out["gpu_time_cost_usd"] == pytest.approx(90 * 2.0 / 3600)
    l4 = cost_fields(_gpu_row(), _cfg(cloud_offering="aws-g6-l4"), TABLES)  # another offering than the hardware's
    assert (l4["gpu_hour_usd"], l4["cloud_offering"]) == (0.8048, "aws-g6-l4")


@pytest.mark.parametrize(("hardware", "gpu_name", "reason"), [
    ("a6000", "NVIDIA RTX A6000", "no AWS instance has the RTX A6000"),
    ("h200", "NVIDIA H200", "no on-demand H200 price"),
    ("v100", "Tesla V100-SXM2-16GB", "no cloud offering for hardware 'v100'"),
])
def test_hardware_without_a_gpu_hour_price_is_null_with_the_reason(hardware, gpu_name, reason):
    out = cost_fields(_gpu_row(gpu_name=gpu_name, config_json=_config(hardware=hardware)), _cfg(), TABLES)
    assert out["gpu_time_cost_usd"] is None and out["gpu_hour_usd"] is None and out["cloud_offering"] is None
    assert reason in out["gpu_time_cost_reason"]
    assert out["energy_cost_usd"] == pytest.approx(7200 / 3.6e6 * USA)  # the energy still has its price
    assert out["cost_usd_per_request"] is None and reason in out["cost_per_request_reason"]


def test_the_hardware_comes_from_the_gpu_where_the_row_names_none():
    out = cost_fields(_gpu_row(gpu_name="NVIDIA A10G", config_json="{}", country_iso_code="USA"), _cfg(), TABLES)
    assert (out["cloud_offering"], out["gpu_hour_usd"]) == ("aws-g5-a10g", 1.006)


def test_a_cpu_trial_costs_its_estimated_energy_only():
    row = _gpu_row(device="cpu", gpu_name=None, config_json=_config(hardware="cpu"), energy_source="estimated",
                   energy_scope="cpu+ram", energy_j=36.0)
    out = cost_fields(row, _cfg(), TABLES)
    assert out["energy_cost_usd"] == pytest.approx(36 / 3.6e6 * USA) and out["energy_cost_estimated"] is True
    assert out["gpu_time_cost_usd"] is None and out["gpu_time_cost_reason"].startswith("CPU worker")
    assert out["cost_usd_per_request"] == pytest.approx(36 / 3.6e6 * USA / 4) and out["cost_basis"] == "energy"


def test_an_api_trial_keeps_its_token_cost():
    row = {"status": "ok", "backend": "openai", "device": "remote", "model": "gpt-4.1-mini", "cost_usd": 0.053,
           "requests": 2, "output_tokens": 400, "energy_j": None, "window_s": 12.0, "config_json": _config()}
    out = cost_fields(row, _cfg(gpu_hour_usd=5.0), TABLES)
    assert out["cost_usd_per_request"] == pytest.approx(0.0265) and out["cost_basis"] == "api_tokens"
    assert out["cost_usd_per_1k_tokens"] == pytest.approx(0.053 / 400 * 1000)
    for k in ("energy_cost_usd", "gpu_time_cost_usd", "gpu_hour_usd", "electricity_usd_per_kwh"):
        assert out[k] is None, k
    assert out["energy_cost_reason"].startswith("remote API") and out["gpu_time_cost_reason"].startswith("remote API")
    unpriced = cost_fields({**row, "cost_usd": None, "cost_reason": "no price for this model in the price table"},
                           _cfg(), TABLES)
    assert unpriced["cost_usd_per_request"] is None
    assert unpriced["cost_per_request_reason"] == "no token cost: no price for this model in the price table"


def test_no_energy_or_an_unfinished_trial_has_no_cost_per_request():
    out = cost_fields(_gpu_row(energy_j=None, energy_reason="no sampler on this device"), _cfg(), TABLES)
    assert out["energy_cost_usd"] is None and "no sampler on this device" in out["energy_cost_reason"]
    failed = cost_fields(_gpu_row(status="failed"), _cfg(), TABLES)
    assert failed["cost_usd_per_request"] is None and failed["cost_per_request_reason"].startswith("status failed")
    assert failed["energy_cost_usd"] is not None  # what it used is still priced


def test_every_cost_column_is_declared_and_the_tables_are_dated(tmp_path):
    declared = set(schema.names("trials"))
    assert set(COST_COLUMNS) <= declared
    assert all(p.as_of and p.source for p in TABLES.electricity.values())
    assert all(o.as_of and o.source for o in TABLES.offerings.values())
    (tmp_path / "prices").mkdir()
    (tmp_path / "prices" / "electricity.yaml").write_text("regions:\n  USA:\n    usd_per_kwh: 0.1\n    as_of: '2024'\n")
    (tmp_path / "prices" / "cloud_gpu.yaml").write_text("offerings: {}\n")
    with pytest.raises(ConfigError, match="'USA' needs `as_of` and `source`"):
        load_cost_tables(tmp_path)


def test_check_config_refuses_what_cannot_be_priced():
    check_config(_cfg(cloud_offering="aws-p5-h100", gpu_hour_usd=1.0), TABLES)
    with pytest.raises(ConfigError, match="footprint.cloud_offering='aws-x' is not in .*aws-g6-l4"):
        check_config(_cfg(cloud_offering="aws-x"), TABLES)
    with pytest.raises(ConfigError, match="footprint.electricity_usd_per_kwh=-1"):
        check_config(_cfg(electricity_usd_per_kwh=-1), TABLES)


# -- the bill ---------------------------------------------------------------------------------------
AXES = {"sweep": "s", "weights": "real", "precision": "baseline", "batch_size": 2, "task": "qa",
        "prompt_variant": "default", "max_new_tokens": 64, "requests": 2, "status": "ok"}


def _local(tid: str, usd: float, co2_g: float, duration_s: float) -> dict:
    return {**AXES, "trial_id": tid, "model": "qwen-7b", "backend": "transformers", "hardware": "l4",
            "device": "cuda", "cost_usd_per_request": usd, "cost_usd_per_1k_tokens": usd * 10,
            "cost_basis": "energy+gpu_time", "energy_cost_estimated": False, "co2_g": co2_g,
            "duration_s": duration_s}


def _api(tid: str = "t-api") -> dict:
    return {**AXES, "trial_id": tid, "model": "gpt-4.1-mini", "backend": "openai", "hardware": "l4", "device": "remote",
            "precision": "api", "cost_usd_per_request": 0.0265, "cost_usd_per_1k_tokens": 0.05,
            "cost_basis": "api_tokens", "co2_g_per_request": 1.5, "duration_s": 3.0, "api_requests": 2}


def test_bill_sets_local_and_api_side_by_side():
    trials = pd.DataFrame([_local("a", 0.001, 4.0, 10.0), _local("b", 0.003, 8.0, 14.0), _api(),
                           {**_local("c", 9.0, 9.0, 9.0), "status": "failed"}])
    b = bill(trials).set_index("model")
    local, api = b.loc["qwen-7b"], b.loc["gpt-4.1-mini"]
    assert (local["kind"], local["trials"], api["kind"], api["trials"]) == ("local", 2, "api", 1)  # failed left out
    assert local["usd_per_request"] == pytest.approx(0.002) and local["usd_per_1k_tokens"] == pytest.approx(0.02)
    assert local["co2_g_per_request"] == pytest.approx((4 / 2 + 8 / 2) / 2)  # co2_g / requests, mean
    assert local["s_per_request"] == pytest.approx((10 / 2 + 14 / 2) / 2)
    assert api["usd_per_request"] == 0.0265 and api["co2_g_per_request"] == 1.5 and api["s_per_request"] == 1.5
    assert (local["cost_basis"], api["cost_basis"]) == ("energy+GPU", "API tokens")
    text = format_bill(bill(trials), trials, "bill: test")
    assert max(map(len, text.splitlines())) <= 100
    assert "qwen-7b" in text and "gpt-4.1-mini" in text and "0.0265" in text


def test_bill_without_co2_or_cost_says_so():
    row = {**_local("a", math.nan, math.nan, 10.0), "cost_basis": None,
           "cost_per_request_reason": "GPU time: no AWS instance has the RTX A6000"}
    del row["co2_g"]
    trials = pd.DataFrame([row])
    b = bill(trials)
    assert b.iloc[0]["usd_per_request"] is None and b.iloc[0]["co2_g_per_request"] is None
    text = format_bill(b, trials, "bill: test")
    assert "no AWS instance has the RTX A6000" in text and "none of these rows has CO2" in text


# -- the command ------------------------------------------------------------------------------------
def _main(*argv: str) -> int:
    with pytest.raises(SystemExit) as e:
        cli.main(["bill", *argv])
    return int(e.value.code)


def test_bill_on_an_empty_store_is_one_line_and_exit_2(tmp_path, capsys):
    assert _main("--store", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert err.startswith("energyray: error: no finished trials in ") and len(err.splitlines()) == 1


def test_bill_prints_the_table_from_a_store(tmp_path, capsys):
    store = Store(tmp_path)
    gpu = {**_gpu_row(trial_id="t-l4", gpu_name="NVIDIA L4", config_json=_config(hardware="l4")), **AXES}
    gpu.update(cost_fields(gpu, _cfg(), TABLES))
    api = {**AXES, "trial_id": "t-api", "model": "gpt-4.1-mini", "backend": "openai", "device": "remote",
           "precision": "api", "cost_usd": 0.053, "duration_s": 3.0, "output_tokens": 400,
           "price_table_date": "2025-04-14", "api_model": "gpt-4.1-mini", "config_json": _config()}
    api.update(cost_fields(api, _cfg(), TABLES))
    for row in (gpu, api):
        store.write("trials", [row], "s", "l4", row["trial_id"])
    assert _main("--store", str(tmp_path), "--sweep", "s") == 0
    out = capsys.readouterr().out
    assert max(map(len, out.splitlines())) <= 100
    assert "qwen-7b" in out and "gpt-4.1-mini" in out and "0.0265" in out  # 0.053 USD over 2 requests
    assert "electricity USA: 0.124 USD/kWh (2022" in out and "GPU-hour aws-g6-l4: 0.805 USD" in out
    assert "tokens gpt-4.1-mini: price table of 2025-04-14" in out
    assert _main("--store", str(tmp_path), "--sweep", "other") == 2


def test_bill_of_rows_stored_before_costs_says_so():
    trials = pd.DataFrame([{**AXES, "trial_id": t, "model": "m", "backend": "transformers", "hardware": "cpu",
                            "precision": p, "duration_s": 1.0} for t, p in (("a", "fp32"), ("b", "nf4"))])
    text = format_bill(bill(trials), trials, "bill: old")
    assert "fp32, nf4: no cost columns: stored before energyray priced its trials" in text
