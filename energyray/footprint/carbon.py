"""CO2 of a trial's measured energy, its GPU's embodied carbon, and the wall-versus-GPU view.

Pure functions over a finished trial row and two dated tables, conf/footprint/intensity.yaml
(grid gCO2e/kWh by region) and conf/footprint/embodied_gpu.yaml (kgCO2e per GPU); each figure
goes into the row with the factor used, its source and date. docs/footprint.md has the formulas.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energyray import paths, schema
from energyray.config import FootprintConfig
from energyray.env import hardware_name
from energyray.errors import ConfigError

J_PER_KWH = 3.6e6
S_PER_YEAR = 365.25 * 24 * 3600
USER = "user"  # carbon_intensity_source of footprint.carbon_intensity_g_per_kwh
# The energies that get a CO2 figure: energy column -> its CO2 column.
CO2_OF = {"energy_j": "co2_g", "wall_energy_j": "wall_co2_g", "cpu_energy_total_j": "cpu_co2_g"}
PHASES = tuple(schema.PHASES)


@dataclass(frozen=True)
class Intensity:
    region: str
    g_per_kwh: float
    as_of: str | None
    source: str
    name: str = ""  # the region's name (California), for suggestions


@dataclass(frozen=True)
class Embodied:
    gpu: str
    kg: float
    as_of: str
    source: str


# -- the tables -----------------------------------------------------------------------------------
def table_path(name: str) -> Path:
    return paths.conf_dir() / "footprint" / f"{name}.yaml"


def read_yaml(path: Path) -> Any:
    """A YAML file as plain data (PyYAML's C loader where built: ~20x OmegaConf on a 300-row table)."""
    import yaml

    try:
        return yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e}). Fix the file.") from e


def _rows(path: Path, key: str) -> dict[str, dict[str, Any]]:
    if not path.is_file():
        raise ConfigError(f"No table at {path}: it ships with energyray (conf/footprint/); restore it.")
    data = read_yaml(path)
    rows = data.get(key) if isinstance(data, dict) else None
    if not isinstance(rows, dict):
        raise ConfigError(f"{path} has no `{key}:` mapping.")
    for name, row in rows.items():
        if not isinstance(row, dict) or not isinstance(row.get("value"), (int, float)) \
                or not row.get("as_of") or not row.get("source"):
            raise ConfigError(f"{path}: row {name!r} needs a numeric value, as_of and source.")
    return {str(k): v for k, v in rows.items()}


def load_intensity(path: Path | None = None) -> dict[str, Intensity]:
    """Region (USA, USA-CA, ...) -> its grid carbon intensity."""
    rows = _rows(path or table_path("intensity"), "regions")
    return {k.upper(): Intensity(k.upper(), float(r["value"]), str(r["as_of"]), str(r["source"]),
                                 str(r.get("name") or "")) for k, r in rows.items()}


def load_embodied(path: Path | None = None) -> dict[str, Embodied]:
    """Hardware name (h100, a100, ...) -> its GPU's manufacturing footprint."""
    rows = _rows(path or table_path("embodied_gpu"), "gpus")
    return {k.lower(): Embodied(k.lower(), float(r["value"]), str(r["as_of"]), str(r["source"]))
            for k, r in rows.items()}


# -- the region, checked before anything runs ----------------------------------------------------------
def resolve_region(region: str, country: str | None) -> str:
    """footprint.region as a table key: auto -> the sampler's country; upper case."""
    text = str(region).strip()
    if text.lower() == "auto":
        text = str(country or "").strip()
    return text.upper()


def check(fp: FootprintConfig, country: str | None, intensity: dict[str, Intensity]) -> None:
    """Resolve footprint.region in place (auto: sampler.country_iso_code) and refuse one the
    table does not have, unless the user gives the intensity (then the region is a label)."""
    given = fp.region
    fp.region = resolve_region(given, country)
    if fp.carbon_intensity_g_per_kwh is not None or fp.region in intensity:
        return
    key = "sampler.country_iso_code" if str(given).strip().lower() == "auto" else "footprint.region"
    shown = country if key.startswith("sampler") else given
    by_name = {i.name.lower(): code for code, i in intensity.items() if i.name}
    close = difflib.get_close_matches(fp.region, list(intensity), n=3, cutoff=0.6)
    named = [f"{by_name[n]} ({intensity[by_name[n]].name})"
             for n in difflib.get_close_matches(str(given).strip().lower(), list(by_name), n=2, cutoff=0.75)]
    hint = f" Did you mean {', '.join(dict.fromkeys(named + close))}?" if close or named else ""
    where = " (footprint.region=auto takes the sampler's country)" if key.startswith("sampler") else ""
    raise ConfigError(
        f"{key}={shown!r}{where}: no grid carbon intensity for {fp.region!r} in {table_path('intensity')}.{hint} "
        "Use a country's ISO 3166 alpha-3 code (USA, DEU, FRA), a region of the table (USA-CA, USA-TX, CAN-QC, "
        "SWE-SE3, CHN-BJ, ...), or give your own figure: footprint.carbon_intensity_g_per_kwh=NUMBER.")


def intensity_for(fp: FootprintConfig, intensity: dict[str, Intensity]) -> Intensity:
    """The intensity a row's CO2 uses: the user's figure, else the table's for the region."""
    if fp.carbon_intensity_g_per_kwh is not None:
        return Intensity(fp.region, float(fp.carbon_intensity_g_per_kwh), None, USER)
    try:
        return intensity[fp.region.upper()]
    except KeyError:
        raise ConfigError(f"footprint.region={fp.region!r} is not in {table_path('intensity')} "
                          "(the planner's check refuses it before anything runs)") from None


# -- formulas -------------------------------------------------------------------------------------------
def co2_g(energy_j: float | None, g_per_kwh: float, pue: float | None) -> float | None:
    """Grams CO2e of `energy_j` at `g_per_kwh`, times the PUE where one is given."""
    if energy_j is None:
        return None
    return energy_j / J_PER_KWH * (pue if pue is not None else 1.0) * g_per_kwh


def embodied_g(kg: float, gpu_s: float, lifetime_years: float, utilization: float) -> float:
    """A GPU's manufacturing kgCO2e spread over its busy seconds (lifetime x utilisation), for
    `gpu_s` of them, in grams."""
    return kg * 1000.0 * gpu_s / (lifetime_years * S_PER_YEAR * utilization)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _num(row: dict[str, Any], key: str) -> float | None:
    v = row.get(key)
    return None if v is None or isinstance(v, bool) or v != v else float(v)  # v != v: NaN


def wall_over_gpu(wall_j: float | None, gpu_j: float | None) -> tuple[float | None, float | None]:
    """Wall energy over GPU energy, and the share of the wall's not drawn by the GPU."""
    ratio = _div(wall_j, gpu_j)
    share = None if gpu_j is None or not wall_j else 1.0 - gpu_j / wall_j
    return ratio, share


def on_gpu(row: dict[str, Any]) -> bool:
    return str(row.get("device") or "").startswith("cuda") or bool(row.get("gpu_name"))


# -- the row's columns ----------------------------------------------------------------------------------
def columns() -> tuple[str, ...]:
    """Every column carbon_fields writes."""
    ratios = ("wall_over_gpu", "non_gpu_share",
              *(f"{p}_{c}" for p in PHASES for c in ("wall_over_gpu", "non_gpu_share")))
    return (*CO2_OF.values(), "co2_reason", "co2_estimated", "co2_g_per_request", "co2_g_per_1k_tokens",
            "carbon_intensity_g_per_kwh", "carbon_intensity_source", "carbon_intensity_as_of", "carbon_region",
            "pue", "embodied_co2_g", "embodied_source", "embodied_as_of", "embodied_reason", *ratios)


def ratio_fields(row: dict[str, Any]) -> dict[str, Any]:
    """Wall ÷ GPU energy and the non-GPU share, for the trial's window and each phase where both
    were measured (GPU workers only: on a CPU worker the device's energy is not a GPU's)."""
    out: dict[str, Any] = {}
    gpu = on_gpu(row)
    for prefix, wall, dev in [("", "wall_energy_j", "energy_j"),
                              *((f"{p}_", f"{p}_wall_j", f"{p}_j") for p in PHASES)]:
        ratio, share = wall_over_gpu(_num(row, wall), _num(row, dev)) if gpu else (None, None)
        out[f"{prefix}wall_over_gpu"], out[f"{prefix}non_gpu_share"] = ratio, share
    return out


def embodied_fields(row: dict[str, Any], fp: FootprintConfig, table: dict[str, Embodied]) -> dict[str, Any]:
    """The GPU's manufacturing carbon for the trial window's GPU-seconds (null with the reason)."""
    none = {"embodied_co2_g": None, "embodied_source": None, "embodied_as_of": None}
    if not fp.embodied:
        return {**none, "embodied_reason": "off (footprint.embodied=false)"}
    if not on_gpu(row):
        return {**none, "embodied_reason": "not a GPU worker: embodied carbon is counted for GPUs only"}
    gpu = hardware_name(row.get("gpu_name")) if row.get("gpu_name") else str(row.get("hardware") or "gpu")
    fig = table.get(gpu)
    if fig is None:
        return {**none, "embodied_reason": f"no embodied figure for {gpu} in {table_path('embodied_gpu')}"}
    seconds = _num(row, "window_s")
    if seconds is None:
        return {**none, "embodied_reason": "no trial window (window_s) to amortise over"}
    return {"embodied_co2_g": embodied_g(fig.kg, seconds, fp.gpu_lifetime_years, fp.gpu_utilization),
            "embodied_source": f"{fig.kg:g} kgCO2e per {gpu} ({fig.source}), amortised over "
                               f"{fp.gpu_lifetime_years:g} years x {fp.gpu_utilization:g} utilisation",
            "embodied_as_of": fig.as_of, "embodied_reason": None}


def carbon_fields(row: dict[str, Any], fp: FootprintConfig, tables: dict[str, Any]) -> dict[str, Any]:
    """The CO2 columns of a finished trial row (docs/footprint.md). A trial that did not complete
    gets them null, with the reason."""
    if row.get("status") != "ok":
        return {**dict.fromkeys(columns()),
                "co2_reason": f"trial {row.get('status') or 'failed'}: no CO2 for a trial that did not complete"}
    used = intensity_for(fp, tables["intensity"])
    out: dict[str, Any] = {"carbon_intensity_g_per_kwh": used.g_per_kwh, "carbon_intensity_source": used.source,
                           "carbon_intensity_as_of": used.as_of, "carbon_region": used.region or None,
                           "pue": fp.pue}
    for energy, co2 in CO2_OF.items():
        out[co2] = co2_g(_num(row, energy), used.g_per_kwh, fp.pue)
    device = out["co2_g"]
    out["co2_reason"] = None if device is not None else \
        f"energy_j is null ({row.get('energy_reason') or row.get('energy_source') or 'not measured'})"
    out["co2_estimated"] = None if device is None else row.get("energy_source") == "estimated"
    out["co2_g_per_request"] = _div(device, _num(row, "requests"))
    tokens = _num(row, "output_tokens")
    out["co2_g_per_1k_tokens"] = _div(device, tokens / 1000 if tokens else None)
    out.update(embodied_fields(row, fp, tables["embodied"]))
    out.update(ratio_fields(row))
    return out
