"""CO2 of a trial's energy (energyray/footprint): every formula by hand, the intensity's choice
(the table's for the region, or the user's), the region checked before anything runs, the
estimate label, embodied carbon, and the wall-versus-GPU view per phase."""

from __future__ import annotations

import pytest

from energyray import footprint, plan, schema
from energyray.config import FootprintConfig, RunConfig
from energyray.errors import ConfigError
from energyray.footprint import carbon
from energyray.store import to_arrow

TABLES = {
    "intensity": {"USA": carbon.Intensity("USA", 400.0, "2023", "test table"),
                  "USA-CA": carbon.Intensity("USA-CA", 200.0, "2023", "test table, California")},
    "embodied": {"h100": carbon.Embodied("h100", 164.0, "2025-10-09", "test figure")},
}


def fp(**kw) -> FootprintConfig:
    return FootprintConfig(**{"region": "USA", **kw})


def ok_row(**kw) -> dict:
    return {"trial_id": "t", "status": "ok", "device": "cpu", "energy_j": 3.6e6, "energy_source": "estimated",
            "requests": 4, "output_tokens": 2000, "window_s": 10.0, **kw}


def gpu_row(**kw) -> dict:
    return ok_row(**{"device": "cuda", "gpu_name": "NVIDIA H100 80GB HBM3", "energy_source": "counter", **kw})


# -- formulas ------------------------------------------------------------------------------------
def test_one_kwh_at_400_g_per_kwh_is_400_g():
    assert carbon.co2_g(3.6e6, 400.0, None) == pytest.approx(400.0)
    assert carbon.co2_g(1.8e6, 400.0, None) == pytest.approx(200.0)
    assert carbon.co2_g(None, 400.0, None) is None


def test_pue_multiplies_the_energy():
    assert carbon.co2_g(3.6e6, 400.0, 1.5) == pytest.approx(600.0)
    assert carbon.co2_g(3.6e6, 400.0, 1.0) == pytest.approx(400.0)


def test_embodied_is_spread_over_the_busy_seconds_of_the_gpus_life():
    # 164 kg over 5 years busy half the time: 164000 g / (5 x 365.25 x 86400 x 0.5 s) per GPU-second
    per_s = 164000 / (5 * 365.25 * 86400 * 0.5)
    assert carbon.embodied_g(164.0, 3600.0, 5.0, 0.5) == pytest.approx(3600 * per_s)
    assert carbon.embodied_g(164.0, 3600.0, 5.0, 0.5) == pytest.approx(7.483458, rel=1e-6)
    # twice the utilisation: half the share
    assert carbon.embodied_g(164.0, 3600.0, 5.0, 1.0) == pytest.approx(7.483458 / 2, rel=1e-6)


def test_wall_over_gpu_and_the_non_gpu_share():
    assert carbon.wall_over_gpu(150.0, 100.0) == pytest.approx((1.5, 1 / 3))
    assert carbon.wall_over_gpu(None, 100.0) == (None, None)
    assert carbon.wall_over_gpu(150.0, None) == (None, None)
    assert carbon.wall_over_gpu(150.0, 0.0) == (None, 1.0)  # no GPU energy: no ratio; all of the wall's is not the GPU's


# -- a row's columns -------------------------------------------------------------------------------
def test_a_cpu_row_gets_co2_its_intensity_source_date_region_and_the_estimate_label():
    out = carbon.carbon_fields(ok_row(), fp(), TABLES)
    assert out["co2_g"] == pytest.approx(400.0)
    assert out["carbon_intensity_g_per_kwh"] == 400.0
    assert out["carbon_intensity_source"] == "test table" and out["carbon_intensity_as_of"] == "2023"
    assert out["carbon_region"] == "USA" and out["pue"] is None and out["co2_reason"] is None
    assert out["co2_estimated"] is True  # CodeCarbon's CPU model: an estimate, labelled
    assert out["co2_g_per_request"] == pytest.approx(100.0)
    assert out["co2_g_per_1k_tokens"] == pytest.approx(200.0)
    assert out["wall_co2_g"] is None and out["cpu_co2_g"] is None  # no wall or node CPU sampler
    assert out["wall_over_gpu"] is None  # not a GPU worker
    to_arrow("trials", [{**ok_row(), **out}], strict=True)  # every column declared, of its type


def test_measured_energy_is_not_labelled_an_estimate():
    out = carbon.carbon_fields(gpu_row(), fp(), TABLES)
    assert out["co2_estimated"] is False


def test_every_measured_energy_gets_its_co2_with_the_pue():
    row = gpu_row(wall_energy_j=7.2e6, cpu_energy_total_j=1.8e6)
    out = carbon.carbon_fields(row, fp(pue=1.25), TABLES)
    assert out["co2_g"] == pytest.approx(400 * 1.25)
    assert out["wall_co2_g"] == pytest.approx(800 * 1.25)
    assert out["cpu_co2_g"] == pytest.approx(200 * 1.25)
    assert out["pue"] == 1.25


def test_a_region_of_the_table_gives_its_own_intensity():
    out = carbon.carbon_fields(ok_row(), fp(region="USA-CA"), TABLES)
    assert out["co2_g"] == pytest.approx(200.0) and out["carbon_region"] == "USA-CA"
    assert out["carbon_intensity_source"] == "test table, California"


def test_the_users_intensity_wins_with_source_user():
    out = carbon.carbon_fields(ok_row(), fp(region="USA-CA", carbon_intensity_g_per_kwh=50.0), TABLES)
    assert out["co2_g"] == pytest.approx(50.0)
    assert out["carbon_intensity_g_per_kwh"] == 50.0
    assert out["carbon_intensity_source"] == "user" and out["carbon_intensity_as_of"] is None


def test_no_energy_means_no_co2_with_the_reason():
    out = carbon.carbon_fields(ok_row(energy_j=None, energy_source="not_measurable",
                                      energy_reason="the model runs remotely"), fp(), TABLES)
    assert out["co2_g"] is None and out["co2_estimated"] is None and out["co2_g_per_request"] is None
    assert "the model runs remotely" in out["co2_reason"]


@pytest.mark.parametrize("status", ["failed", "oom"])
def test_a_trial_that_did_not_complete_gets_nulls_with_the_reason(status):
    out = carbon.carbon_fields({"trial_id": "t", "status": status, "energy_j": None,
                                "wall_energy_j": 5.0}, fp(embodied=True), TABLES)
    assert set(out) == set(carbon.columns())
    assert all(v is None for k, v in out.items() if k != "co2_reason")
    assert out["co2_reason"].startswith(f"trial {status}")
    to_arrow("trials", [{"trial_id": "t", "status": status, **out}], strict=True)


# -- embodied ----------------------------------------------------------------------------------------
def test_embodied_is_off_by_default_and_says_so():
    out = carbon.carbon_fields(gpu_row(), fp(), TABLES)
    assert out["embodied_co2_g"] is None and "footprint.embodied=false" in out["embodied_reason"]


def test_embodied_on_a_gpu_with_a_figure():
    out = carbon.carbon_fields(gpu_row(window_s=3600.0), fp(embodied=True), TABLES)
    assert out["embodied_co2_g"] == pytest.approx(7.483458, rel=1e-6)
    assert "164 kgCO2e per h100" in out["embodied_source"] and "test figure" in out["embodied_source"]
    assert "5 years x 0.5 utilisation" in out["embodied_source"]
    assert out["embodied_as_of"] == "2025-10-09" and out["embodied_reason"] is None


def test_embodied_for_a_gpu_without_a_figure_is_null_never_a_guess():
    out = carbon.carbon_fields(gpu_row(gpu_name="NVIDIA L4"), fp(embodied=True), TABLES)
    assert out["embodied_co2_g"] is None and out["embodied_source"] is None
    assert out["embodied_reason"].startswith("no embodied figure for l4")


def test_embodied_is_for_gpu_workers_only():
    out = carbon.carbon_fields(ok_row(), fp(embodied=True), TABLES)
    assert out["embodied_co2_g"] is None and "GPU" in out["embodied_reason"]


# -- wall over GPU, per phase --------------------------------------------------------------------------
def test_wall_over_gpu_per_phase_where_both_exist():
    row = gpu_row(energy_j=100.0, wall_energy_j=160.0, load_j=50.0, load_wall_j=100.0, idle_j=20.0,
                  idle_wall_j=None, response_j=0.0, response_wall_j=3.0)
    out = carbon.ratio_fields(row)
    assert out["wall_over_gpu"] == pytest.approx(1.6) and out["non_gpu_share"] == pytest.approx(0.375)
    assert out["load_wall_over_gpu"] == pytest.approx(2.0) and out["load_non_gpu_share"] == pytest.approx(0.5)
    assert out["idle_wall_over_gpu"] is None and out["idle_non_gpu_share"] is None  # no wall figure
    assert out["response_wall_over_gpu"] is None  # 0 J on the GPU: no ratio
    assert out["unload_wall_over_gpu"] is None  # neither measured
    for phase in schema.PHASES:
        assert f"{phase}_wall_over_gpu" in out and f"{phase}_non_gpu_share" in out


def test_no_wall_over_gpu_on_a_cpu_worker():
    out = carbon.ratio_fields(ok_row(energy_j=100.0, wall_energy_j=160.0, load_j=5.0, load_wall_j=9.0))
    assert all(v is None for v in out.values())


# -- the region: resolved and checked before anything runs ----------------------------------------------
def test_auto_is_the_samplers_country_and_case_does_not_matter():
    f = fp(region="auto")
    carbon.check(f, "usa", TABLES["intensity"])
    assert f.region == "USA"
    f = fp(region="usa-ca")
    carbon.check(f, "DEU", TABLES["intensity"])
    assert f.region == "USA-CA"


def test_an_unknown_region_is_refused_with_a_suggestion():
    with pytest.raises(ConfigError, match=r"footprint.region='USA-CX'.*Did you mean USA-CA.*carbon_intensity_g_per_kwh"):
        carbon.check(fp(region="USA-CX"), "USA", TABLES["intensity"])


def test_a_regions_name_is_suggested_by_its_code():
    table = {**TABLES["intensity"], "USA-CA": carbon.Intensity("USA-CA", 200.0, "2023", "t", "California")}
    with pytest.raises(ConfigError, match=r"Did you mean USA-CA \(California\)"):
        carbon.check(fp(region="california"), "USA", table)


def test_auto_with_an_unknown_sampler_country_names_that_key():
    with pytest.raises(ConfigError, match=r"sampler.country_iso_code='XYZ'.*auto"):
        carbon.check(fp(region="auto"), "XYZ", TABLES["intensity"])


def test_a_users_intensity_makes_the_region_a_label():
    f = fp(region="my-lab", carbon_intensity_g_per_kwh=12.0)
    carbon.check(f, "USA", TABLES["intensity"])
    assert carbon.carbon_fields(ok_row(), f, TABLES)["carbon_region"] == "MY-LAB"


def test_the_planner_refuses_an_unknown_region_before_anything_runs():
    cfg = RunConfig()
    cfg.footprint.region = "Atlantis"
    with pytest.raises(ConfigError, match="footprint.region='Atlantis'"):
        plan.check_knobs(cfg)
    cfg = RunConfig()  # the default: auto, the sampler's USA
    plan.check_knobs(cfg)
    assert cfg.footprint.region == "USA"


# -- the shipped tables and the glue ---------------------------------------------------------------------
def test_the_shipped_tables_load_and_have_the_regions_the_docs_name():
    tables = footprint.load_tables()
    for region in ("USA", "DEU", "FRA", "USA-CA", "USA-TX", "CAN-QC", "SWE-SE3", "CHN-BJ"):
        assert region in tables["intensity"], region
        assert tables["intensity"][region].g_per_kwh > 0
    assert set(tables["embodied"]) <= {"a6000", "l4", "a10g", "h100", "h200", "a100"}


def test_footprint_fields_passes_the_co2_columns_to_the_cost_part(monkeypatch):
    seen = {}

    def cost_fields(row, cfg, tables):
        seen.update(row)
        return {"energy_cost_usd": 1.0}

    monkeypatch.setattr(footprint.cost, "cost_fields", cost_fields)
    out = footprint.footprint_fields(ok_row(), fp(), {**TABLES, "cost": None})
    assert out["co2_g"] == pytest.approx(400.0) and out["energy_cost_usd"] == 1.0
    assert seen["co2_g"] == pytest.approx(400.0) and seen["trial_id"] == "t"


def test_footprint_fields_are_carbon_and_cost_columns():
    out = footprint.footprint_fields(ok_row(), fp(), {**TABLES, "cost": footprint.cost.load_cost_tables()})
    assert set(out) == set(carbon.columns()) | set(footprint.cost.COST_COLUMNS)
    assert out["energy_cost_usd"] is not None and out["gpu_time_cost_usd"] is None  # a CPU row: no GPU time

def test_a_footprint_bug_keeps_the_row_with_the_reason(monkeypatch):
    def broken(row, cfg, tables):
        raise KeyError("boom")

    monkeypatch.setattr(footprint.carbon, "carbon_fields", broken)
    out = footprint.footprint_fields(ok_row(), fp(), {**TABLES, "cost": None})
    assert out["co2_reason"].startswith("the footprint could not be computed: KeyError")
    assert out["energy_cost_reason"] == out["co2_reason"]
