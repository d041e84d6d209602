"""energyray/footprint/project.py and `python -m energyray project`: measured J per request to N
queries a day, with hand-computed numbers: the interval carried through, the idle share below
full utilisation, a missing intensity as null with its reason, the thesis' 10-second figure
beside the measured one, Table 6 from measured rows, and the command on a real store."""

from __future__ import annotations

import importlib
import math
from typing import Any

import pandas as pd
import pytest

from energyray import cli
from energyray.errors import ConfigError
from energyray.footprint.project import (
    Estimate,
    load_equivalents,
    projection,
    table6,
    to_frame,
)
from energyray.store import Store

N = 1e9
KEY: dict[str, Any] = {"sweep": "s", "model": "gemma3-270m", "backend": "transformers", "weights": "real",
                       "precision": "bf16", "batch_size": 8, "task": "qa", "prompt_variant": "default",
                       "hardware": "h100", "max_new_tokens": 64, "requests": 8, "prompt_tokens": None,
                       "chat_template": "auto"}
# one of each unit the command knows, with round values
EQUIV = {"home": {"what": "homes", "value": 3650, "unit": "kWh/year", "as_of": "2020", "source": "s1"},
         "car": {"what": "charges", "value": 50, "unit": "kWh", "as_of": "2020", "source": "s2"},
         "km": {"what": "km", "value": 20, "unit": "kWh/100 km", "as_of": "2020", "source": "s3"},
         "phone": {"what": "phones", "value": 10, "unit": "Wh", "as_of": "2020", "source": "s4"}}


def trial(n: int, j_per_request: float = 1000.0, s_per_request: float = 2.0, idle_w: float | None = 50.0,
          **kw: Any) -> dict[str, Any]:
    """An ok trial of 8 requests (batch 8) whose energy_j / requests is `j_per_request`."""
    energy = j_per_request * 8
    window = s_per_request * 8
    return {**KEY, "trial_id": f"t{n}", "repeat": n, "status": "ok", "energy_j": energy, "window_s": window,
            "avg_power_w": energy / window, "idle_power_w": idle_w, "params_b": 0.268, "energy_source": "counter",
            "energy_scope": "gpu", "output_tokens": 512, **kw}


def frame(*rows: dict[str, Any]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_one_trial_1000_j_per_request_at_a_billion_queries_is_277778_kwh_a_day_without_an_interval():
    p = projection(frame(trial(0)), N, equivalents_table=EQUIV)
    assert p["j_per_request"] == Estimate(1000.0, None, None, 1)
    day, year = p["per_day"]["kwh"], p["per_year"]["kwh"]
    assert day.mean == pytest.approx(1e12 / 3.6e6) == pytest.approx(277_777.78)
    assert year.mean == pytest.approx(day.mean * 365)
    assert day.low is None and day.high is None and day.n == 1
    assert p["batch_size"] == 8 and p["idle_share"] == 0 and p["pue"] is None


def test_the_95_percent_interval_over_trials_is_carried_into_every_figure():
    """900, 1000, 1100 J: mean 1000, std 100, t(2 dof) = 4.303: half-width 248.43 J; kWh, CO2 at
    400 g/kWh and cost at 0.10 USD/kWh are the same interval times their constants."""
    p = projection(frame(trial(0, 900), trial(1, 1000), trial(2, 1100)), N, intensity_g_per_kwh=400,
                   price_usd_per_kwh=0.10, equivalents_table=EQUIV)
    half = 4.303 * 100 / math.sqrt(3)
    j = p["j_per_request"]
    assert (j.mean, j.n) == (pytest.approx(1000), 3)
    assert j.low == pytest.approx(1000 - half) and j.high == pytest.approx(1000 + half)
    k = N / 3.6e6
    day = p["per_day"]
    assert (day["kwh"].low, day["kwh"].high) == (pytest.approx((1000 - half) * k), pytest.approx((1000 + half) * k))
    assert day["co2_kg"].mean == pytest.approx(1000 * k * 0.4) and day["co2_kg"].low == pytest.approx(day["kwh"].low * 0.4)
    assert day["cost_usd"].high == pytest.approx(day["kwh"].high * 0.10)
    assert p["per_year"]["co2_kg"].low == pytest.approx(day["co2_kg"].low * 365)
    frame_ = to_frame(p)
    row = frame_[(frame_["quantity"] == "cost_usd") & (frame_["period"] == "year")].iloc[0]
    assert row["mean"] == pytest.approx(1000 * k * 0.1 * 365) and row["n"] == 3


@pytest.mark.parametrize(("u", "idle_j"), [(0.5, 100.0), (0.25, 300.0)])
def test_below_full_utilisation_the_idle_power_over_the_idle_time_is_added(u, idle_j):
    """2 device-s per request at 50 W idle: busy a share u of the time, each request brings
    2 x (1 - u) / u s of idle: 100 J at u=0.5, 300 J at u=0.25."""
    p = projection(frame(trial(0)), N, utilization=u, equivalents_table=EQUIV)
    assert p["idle_j_per_request"].mean == pytest.approx(idle_j)
    assert p["total_j_per_request"].mean == pytest.approx(1000 + idle_j)
    assert p["idle_share"] == pytest.approx(idle_j / (1000 + idle_j))
    assert p["per_day"]["kwh"].mean == pytest.approx((1000 + idle_j) * N / 3.6e6)


def test_pue_multiplies_every_energy_figure_and_keeps_the_idle_share():
    p = projection(frame(trial(0)), N, utilization=0.5, pue=1.5, equivalents_table=EQUIV)
    assert p["per_day"]["kwh"].mean == pytest.approx(1100 * 1.5 * N / 3.6e6)
    assert p["idle_share"] == pytest.approx(100 / 1100)


def test_below_full_utilisation_without_an_idle_power_the_energy_is_null_with_the_reason():
    p = projection(frame(trial(0, idle_w=None)), N, utilization=0.5, equivalents_table=EQUIV)
    assert p["per_day"]["kwh"] is None and p["per_year"]["co2_kg"] is None
    assert "idle_power_w" in p["reasons"]["energy"] and "--utilization 1" in p["reasons"]["energy"]
    assert p["j_per_request"].mean == 1000  # the measured figure itself stays


def test_a_missing_intensity_or_price_is_null_with_the_reason_never_zero():
    p = projection(frame(trial(0)), N, equivalents_table=EQUIV)
    assert p["intensity"].value is None and p["price"].value is None
    assert p["per_day"]["co2_kg"] is None and p["per_day"]["cost_usd"] is None
    assert "--intensity" in p["reasons"]["co2_kg"] and "--price" in p["reasons"]["cost_usd"]
    assert p["per_day"]["kwh"] is not None
    assert to_frame(p).set_index(["quantity", "period"]).loc[("co2_kg", "day"), "reason"] == p["reasons"]["co2_kg"]


def test_intensity_and_price_come_from_the_trials_columns_with_their_source_unless_given():
    rows = frame(trial(0, carbon_intensity_g_per_kwh=380.0, electricity_usd_per_kwh=0.12),
                 trial(1, carbon_intensity_g_per_kwh=380.0, electricity_usd_per_kwh=0.12))
    p = projection(rows, N, equivalents_table=EQUIV)
    assert p["intensity"].value == 380 and "carbon_intensity_g_per_kwh" in p["intensity"].source
    assert p["price"].value == 0.12
    assert p["per_day"]["co2_kg"].mean == pytest.approx(1000 * N / 3.6e6 * 0.38)
    given = projection(rows, N, intensity_g_per_kwh=50, equivalents_table=EQUIV)
    assert given["intensity"].value == 50 and given["intensity"].source == "given: --intensity"


def test_equivalents_by_unit_and_a_phone_battery_per_query():
    """277,777.8 kWh a day: / (3650/365) = 27,778 homes, / 50 = 5,556 charges, / 0.2 = 1,388,889 km,
    / 0.01 = 27.8 M phone charges; one 1000 J query is 1000 / (10 x 3600) = 2.78 % of a 10 Wh battery."""
    p = projection(frame(trial(0)), N, equivalents_table=EQUIV)
    got = {e["name"]: e for e in p["equivalents"]}
    kwh = 1e12 / 3.6e6
    assert got["home"]["per_day"].mean == pytest.approx(kwh / 10)
    assert got["car"]["per_day"].mean == pytest.approx(kwh / 50)
    assert got["km"]["per_day"].mean == pytest.approx(kwh / 0.2)
    assert got["phone"]["per_day"].mean == pytest.approx(kwh / 0.01)
    assert got["phone"]["percent_per_query"].mean == pytest.approx(100 * 1000 / 36000)
    assert all(e["as_of"] and e["source"] for e in p["equivalents"])


def test_the_shipped_equivalents_are_dated_and_sourced():
    table = load_equivalents()
    assert {"household_us", "ev_charge", "phone_charge"} <= set(table)
    for e in table.values():
        assert e["value"] > 0 and e["as_of"] and len(e["source"]) > 20


def test_the_fixed_10_second_method_beside_the_measured_figure():
    """The thesis' 270M case: 40 W x 10 s x 1e9 = 111,111 kWh a day (its Table 6: 111,200). Measured
    here: 20 J per request (batch 8, 0.5 device-s each) -> 5,556 kWh; the 10-s figure is 20x; 30 W of
    the 40 W is the idle floor."""
    p = projection(frame(trial(0, j_per_request=20.0, s_per_request=0.5, idle_w=30.0)), N, equivalents_table=EQUIV)
    f = p["fixed_10s"]
    assert f["avg_power_w"] == pytest.approx(40.0)
    assert f["kwh_per_day"] == pytest.approx(40 * 10 * N / 3.6e6) == pytest.approx(111_111.1)
    assert f["measured_kwh_per_day"] == pytest.approx(20 * N / 3.6e6)
    assert f["over_measured"] == pytest.approx(20.0)
    assert f["idle_share_of_power"] == pytest.approx(0.75)


def test_table6_one_row_per_configuration_with_relative_efficiency_and_the_10_s_column():
    small = trial(0, j_per_request=20.0, s_per_request=0.5)
    big = trial(1, j_per_request=300.0, s_per_request=1.0, model="llama-8b", params_b=8.0)
    t = table6(frame(small, big), N).set_index("model")
    assert list(t["model_size"]) == ["gemma3-270m (268M)", "llama-8b (8B)"]
    assert t.loc["gemma3-270m", "power_kw"] == pytest.approx(0.04)
    assert t.loc["llama-8b", "time_s"] == pytest.approx(1.0)
    assert t.loc["llama-8b", "kwh_per_day"] == pytest.approx(300 * N / 3.6e6)
    assert t.loc["llama-8b", "relative"] == pytest.approx(15.0) and t.loc["gemma3-270m", "relative"] == 1
    # 10-s method: 40 W and 300 W x 10 s: 7.5x apart, where the measured figures are 15x apart
    assert t.loc["llama-8b", "fixed_10s_relative"] == pytest.approx(7.5)


def test_several_configurations_are_refused_naming_the_filter_that_picks_one():
    with pytest.raises(ConfigError, match="2 configurations in the trials") as e:
        projection(frame(trial(0), trial(1, batch_size=1, requests=1)), N)
    assert "--where batch_size=1" in str(e.value) and "--where batch_size=8" in str(e.value)


@pytest.mark.parametrize(("kw", "said"), [({"utilization": 0}, "--utilization"), ({"utilization": 1.5}, "--utilization"),
                                          ({"pue": 0.9}, "--pue"), ({"queries_per_day": 0}, "--queries-per-day")])
def test_out_of_range_assumptions_are_refused(kw, said):
    args = {"queries_per_day": N, **kw}
    with pytest.raises(ConfigError, match=said):
        projection(frame(trial(0)), **args)


# -- the command on a store written by Store.write ----------------------------------------------------

@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(tmp_path / "store")
    rows = [trial(0, 900), trial(1, 1000), trial(2, 1100),
            trial(3, j_per_request=300.0, s_per_request=1.0, model="llama-8b", params_b=8.0)]
    for r in rows:
        s.write("trials", [r], sweep="s", hardware="h100", name=r["trial_id"])
    return s


def run(argv: list[str], capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        cli.main(["project", *argv])
    out = capsys.readouterr()
    return int(e.value.code or 0), out.out, out.err


def test_the_command_projects_the_chosen_configuration(store, capsys):
    code, out, err = run(["--store", str(store.path), "--where", "model=gemma3-270m", "--queries-per-day", "1e9",
                          "--intensity", "400", "--utilization", "0.5"], capsys)
    assert code == 0, err
    assert "J per request (energy_j / requests, per trial): 1,000 J (95 % CI 752 to 1,248; n=3)" in out
    assert "batch size: 8" in out and "PUE: none" in out and "given: --intensity" in out
    assert "idle power share at utilisation 0.5: 9.1 %" in out and "idle_power_w 50 W x (1 - 0.5)" in out
    assert "energy a day:" in out and "305,556 kWh" in out  # 1100 J x 1e9 / 3.6e6
    assert "electricity price: null (the trials carry no electricity_usd_per_kwh" in out
    assert "cost a day:" in out and "null (" in out
    assert "iPhone 15" in out and "U.S. EIA" in out
    assert "Model Size" in out and "Relative Efficiency" in out and "the 10-s method is" in out


def test_the_command_lists_the_configurations_when_the_filters_match_several(store, capsys):
    code, _, err = run(["--store", str(store.path), "--queries-per-day", "1e9"], capsys)
    assert code == 2
    assert "2 configurations in the trials" in err and "--where model=gemma3-270m" in err and "--where model=llama-8b" in err


def test_the_command_prints_table6_over_the_matching_configurations(store, capsys):
    code, out, err = run(["--store", str(store.path), "--queries-per-day", "1e9", "--table"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split()[:2] == ["Model", "Size"]
    # 1000 J vs 300 J per request: the lowest is the baseline; the 10-s method, 500 W vs 300 W: 1.67x
    assert any(line.startswith("gemma3-270m (268M)") and "277,778 [208,768, 346,787]" in line and "3.33x" in line
               and "1,388,889" in line and "1.67x" in line for line in lines)
    assert any(line.startswith("llama-8b (8B)") and "83,333" in line and "1.0x (baseline)" in line for line in lines)


@pytest.mark.parametrize(("argv", "said"), [(["--where", "colour=red"], "not a configuration key"),
                                            (["--where", "model=nope"], "no configuration matches"),
                                            (["--where", "model=gemma3-270m", "--utilization", "0"], "--utilization")])
def test_the_command_refuses_bad_input_with_exit_2(store, capsys, argv, said):
    code, _, err = run(["--store", str(store.path), "--queries-per-day", "1e9", *argv], capsys)
    assert code == 2 and said in err and "Traceback" not in err


def test_region_uses_the_footprint_tables_or_says_to_give_the_intensity(store, capsys):
    footprint = importlib.import_module("energyray.footprint")
    code, out, err = run(["--store", str(store.path), "--where", "model=llama-8b", "--queries-per-day", "1e9",
                          "--region", "USA"], capsys)
    if hasattr(footprint, "footprint_fields"):
        assert code == 0, err
        assert "carbon intensity: null" not in out and "USA:" in out
    else:
        assert code == 2 and "--intensity" in err
