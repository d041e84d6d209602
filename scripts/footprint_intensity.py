"""Regenerate conf/footprint/intensity.yaml from the offline data the installed CodeCarbon ships.

    python scripts/footprint_intensity.py            # writes conf/footprint/intensity.yaml
    python scripts/footprint_intensity.py --check    # exit 1 if the file differs from what it would write

Every figure comes from a file under codecarbon/data/ (named, with its own year, in each row's
`source`); nothing is typed in by hand. Regions are `<ISO alpha-3>` for a country and
`<ISO alpha-3>-<code>` for a part of one (USA-CA, CAN-QC, CHN-BJ, SWE-SE3, NOR-NO4).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "conf" / "footprint" / "intensity.yaml"
LB_PER_MWH_TO_G_PER_KWH = 0.45359237  # 1 lb = 0.45359237 kg; lb/MWh -> g/kWh (CodeCarbon's units.py)
# canada_energy_mix.json's source names -> carbon_intensity_per_source.json's
CANADA_SOURCES = {"naturalGas": "natural_gas", "petroleum": "petroleum", "coal": "coal", "biomass": "biomass",
                  "hydro": "hydroelectricity", "nuclear": "nuclear", "wind": "wind", "solar": "solar"}
CANADA_CODES = {"alberta": "AB", "british columbia": "BC", "manitoba": "MB", "new brunswick": "NB",
                "newfoundland and labrador": "NL", "northwest territories": "NT", "nova scotia": "NS",
                "nunavut": "NU", "ontario": "ON", "prince edward island": "PE", "quebec": "QC",
                "saskatchewan": "SK", "yukon": "YT"}
NORDIC_COUNTRY = {"SE": "SWE", "NO": "NOR"}


def data_dir() -> Path:
    spec = importlib.util.find_spec("codecarbon")  # locates the package without importing it
    if spec is None or not spec.submodule_search_locations:
        sys.exit("codecarbon is not installed in this environment (it is one of energyray's dependencies)")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def _load(path: Path) -> Any:
    return json.loads(path.read_text())


def rows(data: Path, cc: str) -> dict[str, dict[str, Any]]:
    """region -> {value, as_of, name, source}, every figure read from `data`."""
    out: dict[str, dict[str, Any]] = {}
    pi = data / "private_infra"
    rel = "codecarbon/data/private_infra/"

    for iso, c in sorted(_load(pi / "global_energy_mix.json").items()):
        out[iso] = {"value": round(float(c["carbon_intensity"]), 3), "as_of": str(c["year"]),
                    "name": c["country_name"],
                    "source": f"CodeCarbon {cc} {rel}global_energy_mix.json, field carbon_intensity for {iso} "
                              f"(its year: {c['year']}); the figure CodeCarbon itself uses for this country"}

    usa = _load(pi / "2023" / "usa_emissions.json")
    meta = usa["_source"]
    for state, s in sorted(usa.items()):
        if state.startswith("_") or state == "usa":
            continue
        g = round(float(s["emissions"]) * LB_PER_MWH_TO_G_PER_KWH, 3)
        out[f"USA-{s['regionCode']}"] = {
            "value": g, "as_of": str(meta["year"]), "name": state.title(),
            "source": f"CodeCarbon {cc} {rel}2023/usa_emissions.json: {meta['name']} ({meta['field']}, "
                      f"{meta['year']}; {meta['url']}), {s['emissions']} lb/MWh x 0.45359237"}

    factors = _load(pi / "carbon_intensity_per_source.json")
    per_source = ", ".join(f"{f} {factors[f]}" for f in CANADA_SOURCES.values())
    for prov, mix in sorted(_load(pi / "2023" / "canada_energy_mix.json").items()):
        total = float(mix["total"])
        missing = [k for k, v in mix.items() if k != "total" and float(v) and k not in CANADA_SOURCES]
        if missing or not total:  # a source with no factor: no complete figure
            continue
        g = sum(float(mix[k]) / total * float(factors[f]) for k, f in CANADA_SOURCES.items() if k in mix)
        out[f"CAN-{CANADA_CODES[prov]}"] = {
            "value": round(g, 3), "as_of": "2023", "name": prov.title(),
            "source": f"derived: CodeCarbon {cc} {rel}2023/canada_energy_mix.json (the province's generation "
                      f"shares, in its 2023 folder) x {rel}carbon_intensity_per_source.json (lifecycle gCO2eq/kWh "
                      f"per source: {per_source}), summed"}

    nordic = _load(pi / "nordic_emissions.json")
    nmeta = nordic["metadata"]
    zones_source = nmeta["source"].split(" FI:")[0]  # the Finnish row is a country figure, left out
    for zone, z in sorted(nordic["data"].items()):
        country = NORDIC_COUNTRY.get(zone[:2])
        if country is None or len(zone) != 3:  # FI: a whole country, already in the country rows
            continue
        out[f"{country}-{zone}"] = {
            "value": float(z["emission_factor"]), "as_of": str(z["year"]), "name": z["description"],
            "source": f"CodeCarbon {cc} {rel}nordic_emissions.json ({zones_source} Coverage {z['coverage']}; "
                      f"updated {nmeta['last_updated']})"}

    china = _load(pi / "2023" / "china_provincial_emissions.json")
    cmeta = china["metadata"]
    for code, p in sorted(china["data"].items()):
        out[f"CHN-{code.split('-', 1)[1]}"] = {
            "value": float(p["emission_factor"]), "as_of": str(p["year"]), "name": p["description"],
            "source": f"CodeCarbon {cc} {rel}2023/china_provincial_emissions.json: MEE/NBS announcement "
                      f"{cmeta['announcement']}, {cmeta['year']} provincial factors ({cmeta['source_url']}); "
                      "CO2 only, not CO2e"}
    return out


def render(regions: dict[str, dict[str, Any]], cc: str) -> str:
    lines = [
        "# Grid carbon intensity (gCO2e/kWh) by country and sub-national region, with each figure's",
        "# year (as_of) and source. GENERATED by scripts/footprint_intensity.py from the offline data",
        f"# files of the installed CodeCarbon ({cc}); do not edit by hand: rerun the script to refresh.",
        "# Regions: a country's ISO 3166 alpha-3 code (USA, DEU, FRA); a part of one: <country>-<code>",
        "# (US states USA-CA; Canadian provinces CAN-QC; Chinese provinces CHN-BJ; Nordic bidding zones",
        "# SWE-SE3, NOR-NO4). Set footprint.region to one, or footprint.carbon_intensity_g_per_kwh to your own.",
        "# Figures are annual averages of the grid's generation (location-based), not of a given hour.",
        "unit: gCO2e/kWh",
        f"generated_by: scripts/footprint_intensity.py (codecarbon {cc})",
        "regions:",
    ]
    for region, r in regions.items():
        lines.append(f"  {region}: {{value: {r['value']}, as_of: {json.dumps(r['as_of'])}, "
                     f"name: {json.dumps(r['name'])}, source: {json.dumps(r['source'])}}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the file instead of writing it")
    args = ap.parse_args(argv)
    cc = importlib.metadata.version("codecarbon")
    text = render(rows(data_dir(), cc), cc)
    if args.check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'current' if same else 'differs from the installed CodeCarbon data'}")
        return 0 if same else 1
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)
    print(f"wrote {OUT} ({text.count(chr(10)) - 10} regions)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
