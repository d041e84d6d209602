"""`python -m energyray project`: one configuration's measured J per request projected to N
queries a day: kWh, CO2 and cost a day and a year, everyday equivalents, and the thesis'
Table 6 (power x an assumed 10 s per query) beside the measured figure.

J per request is each trial's energy_j / requests; its mean and 95 % t interval over the
trials carry through every figure (each is the J per request times a positive constant).
At a utilisation U < 1 the device also idles: serving N requests takes N x s/request busy
seconds, so N x s/request / U seconds provisioned, of which a share 1 - U idle at the
measured idle power; per request that adds idle_power_w x s/request x (1 - U) / U.
"""

from __future__ import annotations

import argparse
import importlib
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from energyray import paths
from energyray.errors import ConfigError
from energyray.report.summary import CONFIG_KEYS, _norm, configurations, energy_label, skipped_lines
from energyray.store import Store, _safe

J_PER_KWH = 3.6e6
DAYS_PER_YEAR = 365
THESIS_SECONDS = 10.0  # the thesis' fixed inference time per query (Table 6)
# two-sided 97.5 % quantiles of Student's t for 1..30 degrees of freedom (as analysis/compare.py)
_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
         2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
         2.052, 2.048, 2.045, 2.042]
NO_INTERVAL = "one trial: no interval (run the configuration with sweep.repeats >= 2)"
# what an equivalent's unit means in kWh per counted thing
_KWH_PER_THING = {"kWh/year": lambda v: v / DAYS_PER_YEAR, "kWh": lambda v: v, "Wh": lambda v: v / 1000,
                  "kWh/100 km": lambda v: v / 100}


def t975(dof: int) -> float:
    return _T975[dof - 1] if dof <= len(_T975) else 1.96


@dataclass(frozen=True)
class Estimate:
    """A mean with its 95 % t interval over `n` trials (low/high None where n is 1)."""

    mean: float
    low: float | None
    high: float | None
    n: int

    @classmethod
    def of(cls, values: pd.Series) -> Estimate:
        x = pd.to_numeric(values, errors="coerce").dropna().astype(float)
        n = len(x)
        if n == 0:
            raise ValueError("no values")
        if n == 1:
            return cls(float(x.iloc[0]), None, None, 1)
        half = t975(n - 1) * float(x.std()) / math.sqrt(n)
        return cls(float(x.mean()), float(x.mean()) - half, float(x.mean()) + half, n)

    def scaled(self, k: float) -> Estimate:
        """Times a positive constant: the interval scales with it."""
        return Estimate(self.mean * k, None if self.low is None else self.low * k,
                        None if self.high is None else self.high * k, self.n)

    def text(self, unit: str = "") -> str:
        u = f" {unit}" if unit else ""
        if self.low is None or self.high is None:
            return f"{fmt(self.mean)}{u} (n=1, no interval)"
        return f"{fmt(self.mean)}{u} (95 % CI {fmt(self.low)} to {fmt(self.high)}; n={self.n})"


def fmt(x: float | None) -> str:
    """1,234,567 / 12.3 / 0.0123: thousands separated, three significant digits below 100."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


# -- selecting one configuration ------------------------------------------------------------------

def parse_where(items: list[str]) -> dict[str, str]:
    """['model=gemma3-270m', 'batch_size=8'] -> a dict; keys must be configuration keys."""
    where: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--where {item!r}: write KEY=VALUE, e.g. --where model=gemma3-270m")
        if key not in CONFIG_KEYS:
            raise ConfigError(f"--where {key}: not a configuration key; one of {', '.join(CONFIG_KEYS)}")
        where[key] = value
    return where


def _matches(key: dict[str, Any], where: dict[str, str]) -> bool:
    for k, want in where.items():
        v = _norm(key.get(k))
        if v is None:
            if want.lower() not in ("null", "none", "-"):
                return False
        elif str(v) != want and _safe(str(v)) != want:
            return False
    return True


def _describe(keys: list[dict[str, Any]]) -> list[str]:
    """One line per configuration: the keys that differ among them, as --where arguments."""
    varying = [k for k in CONFIG_KEYS if len({_norm(key.get(k)) for key in keys}) > 1] or ["model"]
    return [" ".join(f"--where {k}={'null' if _norm(key.get(k)) is None else _norm(key.get(k))}" for k in varying)
            for key in keys]


def select(trials: pd.DataFrame, where: dict[str, str] | None = None) -> list[tuple[dict[str, Any], pd.DataFrame]]:
    """The configurations (report.CONFIG_KEYS) of `trials` that `where` matches."""
    return [(k, g) for k, g in configurations(trials) if _matches(k, where or {})]


def one_configuration(trials: pd.DataFrame, where: dict[str, str] | None = None) -> tuple[dict[str, Any],
                                                                                         pd.DataFrame]:
    """The one configuration `where` selects; none or several: ConfigError listing them."""
    found = select(trials, where)
    if len(found) == 1:
        return found[0]
    said = " ".join(f"--where {k}={v}" for k, v in (where or {}).items())
    if not found:
        every = _describe([k for k, _ in configurations(trials)])
        raise ConfigError(f"no configuration matches {said or 'the trials'}; the trials hold:\n  " + "\n  ".join(every))
    lines = _describe([k for k, _ in found])
    raise ConfigError(f"{len(found)} configurations {f'match {said}' if said else 'in the trials'}; pick one with "
                      "--where:\n  " + "\n  ".join(lines))


# -- per trial --------------------------------------------------------------------------------------

def _col(df: pd.DataFrame, name: str) -> pd.Series:
    return pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(math.nan, index=df.index)


def per_trial(trials: pd.DataFrame, utilization: float = 1.0) -> pd.DataFrame:
    """One row per ok trial with energy: requests, J and device-seconds per request, idle power,
    the idle J per request at `utilization`, their sum, and the average power."""
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials.iloc[0:0]
    energy = _col(ok, "energy_j")
    if energy.isna().all():  # an API model: the labelled FLOPs estimate
        energy = _col(ok, "energy_estimated_j")
    requests = _col(ok, "requests").fillna(_col(ok, "batch_size"))
    window = _col(ok, "window_s").fillna(_col(ok, "duration_s"))
    avg = _col(ok, "avg_power_w").fillna(energy / window)
    out = pd.DataFrame({
        "trial_id": ok["trial_id"] if "trial_id" in ok else range(len(ok)),
        "requests": requests, "energy_j": energy, "j_per_request": energy / requests,
        "s_per_request": window / requests, "avg_power_w": avg, "idle_power_w": _col(ok, "idle_power_w"),
    })
    out["idle_j_per_request"] = out["idle_power_w"] * out["s_per_request"] * (1 - utilization) / utilization
    if utilization == 1.0:
        out["idle_j_per_request"] = 0.0  # none, whatever the rows know of idle power
    out["total_j_per_request"] = out["j_per_request"] + out["idle_j_per_request"]
    return out[out["j_per_request"].notna() & (out["requests"] > 0)].reset_index(drop=True)


# -- the factors: intensity, price, equivalents --------------------------------------------------------

@dataclass(frozen=True)
class Factor:
    """A figure used in the projection, with where it came from; value None: `reason` says why."""

    value: float | None
    source: str | None = None
    as_of: str | None = None
    reason: str | None = None

    def text(self, unit: str) -> str:
        if self.value is None:
            return f"null ({self.reason})"
        when = f", as of {self.as_of}" if self.as_of else ""
        return f"{self.value:,.6g} {unit} ({self.source}{when})"


def _from_rows(ok: pd.DataFrame, column: str, source_col: str, as_of_col: str, default_source: str) -> Factor | None:
    if column not in ok:
        return None
    values = pd.to_numeric(ok[column], errors="coerce").dropna()
    if values.empty:
        return None
    sources = sorted({str(s) for s in ok.get(source_col, pd.Series(dtype=object)).dropna()})
    dates = sorted({str(s) for s in ok.get(as_of_col, pd.Series(dtype=object)).dropna()})
    source = f"the trials' {column}" + (f": {'; '.join(sources)}" if sources else f" ({default_source})")
    if values.nunique() > 1:
        source += f"; it varies over the trials ({fmt(values.min())} to {fmt(values.max())}): their mean"
    return Factor(float(values.mean()), source, ", ".join(dates) or None)


def region_factors(row: dict[str, Any], region: str) -> dict[str, Any]:
    """The intensity (and price, where the cost tables exist) energyray.footprint gives a row in `region`."""
    try:
        footprint = importlib.import_module("energyray.footprint")
        fields, load_tables = footprint.footprint_fields, footprint.load_tables
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"--region {region}: this version has no carbon intensity table "
                          "(energyray.footprint); give the intensity instead: --intensity G (gCO2e/kWh)") from e
    from energyray.config import FootprintConfig

    out: dict[str, Any] = fields(row, FootprintConfig(region=region), load_tables())
    if _norm(out.get("carbon_intensity_g_per_kwh")) is None:
        raise ConfigError(f"--region {region}: no carbon intensity for it in conf/footprint/intensity.yaml "
                          "(the region codes are listed there); or give --intensity G")
    return out


def intensity(ok: pd.DataFrame, given: float | None = None, region: str | None = None) -> Factor:
    """--intensity, else --region's table entry, else the trials' own column, else null with the reason."""
    if given is not None:
        return Factor(given, "given: --intensity")
    if region:
        f = region_factors(_first_row(ok), region)
        return Factor(float(f["carbon_intensity_g_per_kwh"]), f"{region}: {f.get('carbon_intensity_source')}",
                      _norm(f.get("carbon_intensity_as_of")))
    return _from_rows(ok, "carbon_intensity_g_per_kwh", "carbon_intensity_source", "carbon_intensity_as_of",
                      "CodeCarbon's figure for the run's country") or Factor(
        None, reason="the trials carry no carbon_intensity_g_per_kwh and none was given: pass --intensity G "
                     "(gCO2e/kWh) or --region R")


def price(ok: pd.DataFrame, given: float | None = None, region: str | None = None) -> Factor:
    """--price, else --region's price where the cost tables have one, else the trials' column, else null."""
    if given is not None:
        return Factor(given, "given: --price")
    if region:
        f = region_factors(_first_row(ok), region)
        if _norm(f.get("electricity_usd_per_kwh")) is not None:
            return Factor(float(f["electricity_usd_per_kwh"]), f"{region}: {f.get('electricity_price_source')}",
                          _norm(f.get("electricity_price_as_of")))
    return _from_rows(ok, "electricity_usd_per_kwh", "electricity_price_source", "electricity_price_as_of",
                      "the run's price table") or Factor(
        None, reason="the trials carry no electricity_usd_per_kwh and none was given: pass --price USD_PER_KWH")


def _first_row(ok: pd.DataFrame) -> dict[str, Any]:
    return {k: _norm(v) for k, v in ok.iloc[0].items()} if len(ok) else {}


def load_equivalents(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """conf/footprint/equivalents.yaml: name -> value, unit, what, as_of, source."""
    from omegaconf import OmegaConf

    path = path or paths.conf_dir() / "footprint" / "equivalents.yaml"
    if not path.is_file():
        raise ConfigError(f"no equivalents table at {path}")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    table = data.get("equivalents") if isinstance(data, dict) else None
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: no `equivalents:` mapping of name -> value, unit, as_of, source")
    for name, e in table.items():
        if not isinstance(e, dict) or e.get("unit") not in _KWH_PER_THING or not e.get("as_of") or not e.get("source"):
            raise ConfigError(f"{path}: equivalent {name!r} needs value, unit (one of {', '.join(_KWH_PER_THING)}), "
                              "as_of and source")
    return {str(k): dict(v) for k, v in table.items()}


def equivalents(kwh_per_day: Estimate, j_per_request: Estimate,
                table: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """How many of each equivalent a day's energy is (with its interval); a phone battery also per query."""
    out = []
    for name, e in table.items():
        kwh_each = _KWH_PER_THING[e["unit"]](float(e["value"]))
        entry = {"name": name, "what": e.get("what", name), "per_day": kwh_per_day.scaled(1 / kwh_each),
                 "value": float(e["value"]), "unit": e["unit"], "as_of": str(e["as_of"]), "source": e["source"]}
        if e["unit"] == "Wh":  # the thesis' edge case: one query's share of a battery, in %
            entry["percent_per_query"] = j_per_request.scaled(100 / (float(e["value"]) * 3600))
        out.append(entry)
    return out


# -- the projection -------------------------------------------------------------------------------------

def _check(queries_per_day: float, utilization: float, pue: float | None) -> None:
    if not queries_per_day > 0:
        raise ConfigError(f"--queries-per-day {queries_per_day}: give a positive number, e.g. 1e9")
    if not 0 < utilization <= 1:
        raise ConfigError(f"--utilization {utilization}: a share of time busy, above 0 and at most 1 (default 1)")
    if pue is not None and not pue >= 1:
        raise ConfigError(f"--pue {pue}: a data centre's PUE is 1 or more (1.1-1.6 is usual); leave it out for none")


def projection(trials: pd.DataFrame, queries_per_day: float, utilization: float = 1.0, pue: float | None = None,
               intensity_g_per_kwh: float | None = None, price_usd_per_kwh: float | None = None,
               region: str | None = None, equivalents_table: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """One configuration's trials projected to `queries_per_day`.

    Returns a dict: `config`, `energy` (measured/estimated label), `batch_size`, `trials` (per
    trial, see per_trial), the Estimates `j_per_request` (measured), `idle_j_per_request`,
    `total_j_per_request` (with idle and PUE), `s_per_request`; `idle_power_w`, `idle_share`
    (of the total, at this utilisation); `intensity` and `price` (Factors); `per_day` and
    `per_year` (kwh, co2_kg, cost_usd: Estimates, None where the factor is null); `reasons`
    (why a figure is null); `equivalents`; `fixed_10s` (the thesis' method on these rows).
    """
    _check(queries_per_day, utilization, pue)
    key, group = one_configuration(trials)
    ok = group[group["status"] == "ok"] if "status" in group else group.iloc[0:0]
    rows = per_trial(group, utilization)
    if rows.empty:
        why = sorted({str(r) for r in ok.get("energy_reason", pd.Series(dtype=object)).dropna()})
        raise ConfigError(f"no ok trial with an energy figure in this configuration ({len(group)} stored, {len(ok)} ok)"
                          + (f": {'; '.join(why)}" if why else ""))
    reasons: dict[str, str] = {}
    measured = Estimate.of(rows["j_per_request"])
    busy = rows
    if utilization < 1:
        busy = rows[rows["idle_j_per_request"].notna()]
        if busy.empty:
            reason = (f"utilisation {utilization:g} needs the device's idle power and these trials have no "
                      "idle_power_w: project at --utilization 1, or rerun with an idle baseline")
            return _result(key, ok, rows, measured, None, None, utilization, pue, queries_per_day,
                           intensity(ok, intensity_g_per_kwh, region), price(ok, price_usd_per_kwh, region),
                           {"energy": reason}, equivalents_table)
        if len(busy) < len(rows):
            reasons["idle"] = f"{len(rows) - len(busy)} of {len(rows)} trials have no idle_power_w: left out"
    idle = Estimate.of(busy["idle_j_per_request"])
    total = Estimate.of(busy["total_j_per_request"]).scaled(pue or 1.0)
    return _result(key, ok, rows, measured, idle, total, utilization, pue, queries_per_day,
                   intensity(ok, intensity_g_per_kwh, region), price(ok, price_usd_per_kwh, region), reasons,
                   equivalents_table)


def _result(key: dict[str, Any], ok: pd.DataFrame, rows: pd.DataFrame, measured: Estimate, idle: Estimate | None,
            total: Estimate | None, utilization: float, pue: float | None, n_per_day: float, ci: Factor, usd: Factor,
            reasons: dict[str, str], equivalents_table: dict[str, dict[str, Any]] | None) -> dict[str, Any]:
    per_day: dict[str, Estimate | None] = {"kwh": None, "co2_kg": None, "cost_usd": None}
    if total is not None:
        per_day["kwh"] = kwh = total.scaled(n_per_day / J_PER_KWH)
        per_day["co2_kg"] = kwh.scaled(ci.value / 1000) if ci.value is not None else None
        per_day["cost_usd"] = kwh.scaled(usd.value) if usd.value is not None else None
    if ci.value is None:
        reasons["co2_kg"] = str(ci.reason)
    if usd.value is None:
        reasons["cost_usd"] = str(usd.reason)
    idle_w = rows["idle_power_w"].dropna()
    s_req = Estimate.of(rows["s_per_request"]) if rows["s_per_request"].notna().any() else None
    result: dict[str, Any] = {
        "config": key, "energy": energy_label(ok), "batch_size": _norm(key.get("batch_size")),
        "queries_per_day": n_per_day, "utilization": utilization, "pue": pue, "trials": rows,
        "j_per_request": measured, "idle_j_per_request": idle, "total_j_per_request": total,
        "s_per_request": s_req, "idle_power_w": float(idle_w.mean()) if len(idle_w) else None,
        "idle_share": (idle.mean * (pue or 1.0) / total.mean) if idle is not None and total and total.mean else None,
        "intensity": ci, "price": usd, "per_day": per_day,
        "per_year": {k: None if v is None else v.scaled(DAYS_PER_YEAR) for k, v in per_day.items()},
        "reasons": reasons, "equivalents": [], "fixed_10s": fixed_10s(rows, n_per_day),
    }
    if per_day["kwh"] is not None:
        result["equivalents"] = equivalents(per_day["kwh"], measured,
                                            equivalents_table if equivalents_table is not None else load_equivalents())
    return result


def fixed_10s(rows: pd.DataFrame, queries_per_day: float) -> dict[str, Any]:
    """The thesis' method on these rows: the average power x 10 s per query, every query at
    batch 1, beside the measured J per request (device only, utilisation 1, no PUE)."""
    power = rows["avg_power_w"].dropna()
    if power.empty:
        return {"reason": "no average power (energy_j / window_s) on these trials"}
    p = float(power.mean())
    measured = float(rows["j_per_request"].mean())
    idle_w = rows["idle_power_w"].dropna()
    j10 = p * THESIS_SECONDS
    return {"avg_power_w": p, "j_per_request": j10, "kwh_per_day": j10 * queries_per_day / J_PER_KWH,
            "measured_j_per_request": measured, "measured_kwh_per_day": measured * queries_per_day / J_PER_KWH,
            "over_measured": j10 / measured if measured else None,
            "s_per_request": float(rows["s_per_request"].mean()) if rows["s_per_request"].notna().any() else None,
            "idle_power_w": float(idle_w.mean()) if len(idle_w) else None,
            "idle_share_of_power": float(idle_w.mean()) / p if len(idle_w) and p else None}


def to_frame(result: dict[str, Any]) -> pd.DataFrame:
    """A projection as rows: quantity, period, mean, ci95_low, ci95_high, n (null figures with their reason)."""
    out = []
    units = {"kwh": "kwh", "co2_kg": "co2_kg", "cost_usd": "cost_usd"}
    for period in ("per_day", "per_year"):
        for k, est in result[period].items():
            out.append({"quantity": units[k], "period": period.removeprefix("per_"),
                        "mean": None if est is None else est.mean, "ci95_low": None if est is None else est.low,
                        "ci95_high": None if est is None else est.high, "n": None if est is None else est.n,
                        "reason": result["reasons"].get(k) or (result["reasons"].get("energy") if est is None else None)})
    return pd.DataFrame(out)


# -- Table 6 ------------------------------------------------------------------------------------------------

def _size(params_b: Any) -> str:
    p = _norm(params_b)
    if p is None:
        return "?"
    return f"{p * 1000:.3g}M" if p < 1 else f"{p:.3g}B"


def table6(trials: pd.DataFrame, queries_per_day: float, utilization: float = 1.0,
           pue: float | None = None) -> pd.DataFrame:
    """The thesis' Table 6 from measured rows, one row per configuration: model size, power
    (kW, the trials' average), time (device-seconds per request), daily energy (kWh, measured
    J per request, with its interval) and relative efficiency (to the lowest), with the figure
    the fixed-10-second method gives beside it."""
    _check(queries_per_day, utilization, pue)
    found = configurations(trials)
    varying = [k for k in CONFIG_KEYS if len({_norm(key.get(k)) for key, _ in found}) > 1 and k != "model"]
    out = []
    for key, g in found:
        rows = per_trial(g, utilization)
        rows = rows[rows["total_j_per_request"].notna()]
        if rows.empty:
            continue
        day = Estimate.of(rows["total_j_per_request"]).scaled((pue or 1.0) * queries_per_day / J_PER_KWH)
        ten = fixed_10s(rows, queries_per_day)
        params = pd.to_numeric(g.get("params_b", pd.Series(dtype=float)), errors="coerce").dropna()
        label = f"{key['model']} ({_size(params.iloc[0] if len(params) else None)})"
        label += "".join(f" {k}={'null' if _norm(key[k]) is None else _norm(key[k])}" for k in varying)
        out.append({"model_size": label, **key,
                    "power_kw": ten.get("avg_power_w", math.nan) / 1000,
                    "time_s": ten.get("s_per_request") or math.nan, "kwh_per_day": day.mean,
                    "kwh_per_day_low": day.low, "kwh_per_day_high": day.high, "n": day.n,
                    "fixed_10s_kwh_per_day": ten.get("kwh_per_day", math.nan)})
    df = pd.DataFrame(out)
    if not df.empty:
        df["relative"] = df["kwh_per_day"] / df["kwh_per_day"].min()
        df["fixed_10s_relative"] = df["fixed_10s_kwh_per_day"] / df["fixed_10s_kwh_per_day"].min()
    return df


def _g(x: Any, suffix: str = "") -> str:
    return "-" if _norm(x) is None else f"{float(x):.3g}{suffix}"


def table6_lines(df: pd.DataFrame, queries_per_day: float) -> list[str]:
    header = ["Model Size", "Power (kW)", "Time (s)", "Daily Energy (kWh)", "Relative Efficiency",
              "10-s method (kWh)", "10-s relative"]
    cells = []
    for _, r in df.iterrows():
        day = fmt(r["kwh_per_day"]) + ("" if _norm(r["kwh_per_day_low"]) is None else
                                       f" [{fmt(r['kwh_per_day_low'])}, {fmt(r['kwh_per_day_high'])}]")
        rel = "1.0x (baseline)" if r["relative"] == 1 else f"{r['relative']:.3g}x"
        cells.append([str(r["model_size"]), _g(r["power_kw"]), _g(r["time_s"]), day, rel,
                      fmt(r["fixed_10s_kwh_per_day"]), _g(r["fixed_10s_relative"], "x")])
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(header)]

    def line(cs: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cs, widths, strict=True)))

    return [line(header), *map(line, cells),
            f"Table 6, from measured rows: {fmt(queries_per_day)} queries a day. Power: the trials' mean device power "
            "(energy_j / window_s); Time: device-seconds per request (window_s / requests, batching included); "
            "Daily Energy: measured J per request x queries (95 % CI in brackets over the trials); the 10-s method: "
            "Power x 10 s x queries, as the thesis computed it."]


# -- printing ---------------------------------------------------------------------------------------------------

def report_lines(p: dict[str, Any]) -> list[str]:
    """The projection in words and figures, for the terminal."""
    key = p["config"]
    cfg = " ".join(f"{k}={_norm(key[k])}" for k in CONFIG_KEYS if _norm(key.get(k)) is not None)
    m: Estimate = p["j_per_request"]
    lines = [f"configuration: {cfg}",
             f"energy: {p['energy']}: energy_j over each trial's window (the device alone: a GPU's board, or "
             "a CPU worker's CPU and RAM; not the rest of the host, not cooling)",
             f"J per request (energy_j / requests, per trial): {m.text('J')}"]
    if m.n == 1:
        lines.append(f"  {NO_INTERVAL}")
    n = p["queries_per_day"]
    u = p["utilization"]
    idle = p["idle_j_per_request"]
    lines += ["", "assumptions:", f"  queries a day: {fmt(n)}",
              f"  batch size: {p['batch_size']} (the trials', as measured; the requests share each batch's window)"]
    s_req = p["s_per_request"]
    lines.append(f"  utilisation: {u:g} ({'fully busy serving: no idle time' if u == 1 else 'share of time busy'})")
    idle_w = p["idle_power_w"]
    if u < 1:
        if idle is None:
            lines.append(f"  idle: null ({p['reasons'].get('energy')})")
        else:
            lines.append(f"  idle power share at utilisation {u:g}: {100 * (p['idle_share'] or 0):.1f} % of the energy "
                         f"(+{fmt(idle.mean)} J per request)")
            lines.append(f"    = idle_power_w {fmt(idle_w)} W x (1 - {u:g}) x the provisioned time; serving takes "
                         f"{fmt(s_req.mean if s_req else None)} device-s per request, busy {u:g} of the time, so each "
                         f"request brings {fmt(s_req.mean if s_req else None)} x (1 - {u:g}) / {u:g} s of idle")
    pue = "none (device energy only)" if p["pue"] is None else f"{p['pue']:g} (every energy figure x PUE)"
    lines.append(f"  PUE: {pue}")
    lines.append(f"  carbon intensity: {p['intensity'].text('gCO2e/kWh')}")
    lines.append(f"  electricity price: {p['price'].text('USD/kWh')}")
    if "idle" in p["reasons"]:
        lines.append(f"  note: {p['reasons']['idle']}")
    total = p["total_j_per_request"]
    if total is not None and (u < 1 or p["pue"] is not None):
        lines.append(f"  J per request with idle and PUE: {total.text('J')}")
    lines += ["", "projection:"]
    names = {"kwh": ("energy", "kWh"), "co2_kg": ("CO2", "kg CO2e"), "cost_usd": ("cost", "USD")}
    for k, (what, unit) in names.items():
        for period in ("per_day", "per_year"):
            est = p[period][k]
            label = f"  {what} {'a day' if period == 'per_day' else 'a year'}:"
            reason = p["reasons"].get(k) or p["reasons"].get("energy")
            lines.append(f"{label:<22}{est.text(unit) if est is not None else f'null ({reason})'}")
    if p["equivalents"]:
        lines += ["", "equivalents of a day's energy:"]
        for e in p["equivalents"]:
            d: Estimate = e["per_day"]
            rng = "" if d.low is None else f" [{fmt(d.low)}, {fmt(d.high)}]"
            lines.append(f"  {fmt(d.mean)}{rng} {e['what']}: {e['value']:,g} {e['unit']}, as of {e['as_of']}; "
                         f"{e['source']}")
            if "percent_per_query" in e:
                q: Estimate = e["percent_per_query"]
                lines.append(f"    one query's share of that battery: {q.mean:.3g} %"
                             + ("" if q.low is None else f" [{q.low:.3g}, {q.high:.3g}]")
                             + " (the measured device's J per request, not the phone running the model)")
    lines += ["", *fixed_10s_paragraph(p["fixed_10s"], n, p["batch_size"])]
    return lines


def fixed_10s_paragraph(f: dict[str, Any], queries_per_day: float, batch_size: Any) -> list[str]:
    text = ("The thesis' Table 6 multiplied one power reading by an assumed 10 s per query, at batch 1, for every "
            "model size (E = P x 10 s x N), so its energy scales with power alone; its 270M model's \"40 W\" is "
            "mostly the idle GPU. Here each trial's measured energy is divided by the requests it served, which "
            "replaces both the assumed time and the batch: the measured window gives the time, and the requests "
            "of a batch share it.")
    if "reason" in f:
        return [text, f"The 10-s figure for these rows: null ({f['reason']})."]
    idle = ""
    if f.get("idle_share_of_power") is not None:
        idle = (f" Of the {fmt(f['avg_power_w'])} W, {fmt(f['idle_power_w'])} W "
                f"({100 * f['idle_share_of_power']:.0f} %) is the device's idle power (idle_power_w), which the "
                "10-s method counts as inference.")
    ratio = f["over_measured"]
    return [text, f"With these rows (batch {batch_size}): the 10-s method gives {fmt(f['avg_power_w'])} W x 10 s = "
            f"{fmt(f['j_per_request'])} J per query, {fmt(f['kwh_per_day'])} kWh a day for {fmt(queries_per_day)} "
            f"queries; measured: {fmt(f['measured_j_per_request'])} J per request "
            f"({fmt(f['s_per_request'])} device-s each), {fmt(f['measured_kwh_per_day'])} kWh a day "
            f"(device only, utilisation 1, no PUE): the 10-s method is "
            f"{'-' if ratio is None else f'{ratio:.3g}x'} the measured figure.{idle}"]


# -- the command -------------------------------------------------------------------------------------------------

def _number(text: str) -> float:
    try:
        return float(text.replace("_", "").replace(",", ""))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from e


def project_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m energyray project",
        description="Project one configuration's measured J per request to N queries a day: kWh, CO2 and cost "
                    "a day and a year, everyday equivalents, and the thesis' Table 6 beside its 10-second method.")
    parser.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    parser.add_argument("--sweep", help="only this sweep")
    parser.add_argument("--where", action="append", default=[], metavar="KEY=VALUE",
                        help=f"pick the configuration (repeatable); keys: {', '.join(CONFIG_KEYS)}")
    parser.add_argument("--queries-per-day", type=_number, required=True, metavar="N", help="e.g. 1e9")
    parser.add_argument("--utilization", type=_number, default=1.0, metavar="U",
                        help="share of time the devices are busy serving (default 1: fully busy, no idle)")
    parser.add_argument("--pue", type=_number, metavar="P", help="data-centre PUE (default: none applied)")
    where_ci = parser.add_mutually_exclusive_group()
    where_ci.add_argument("--region", metavar="R", help="carbon intensity (and price) of a region of "
                          "conf/footprint/intensity.yaml (e.g. USA, DEU)")
    where_ci.add_argument("--intensity", type=_number, metavar="G", help="carbon intensity, gCO2e/kWh")
    parser.add_argument("--price", type=_number, metavar="USD_PER_KWH", help="electricity price, USD/kWh")
    parser.add_argument("--table", action="store_true",
                        help="Table 6 over every configuration the filters match (e.g. one row per model)")
    args = parser.parse_args(argv)
    where = parse_where(args.where)
    store = Store(args.store, log_damaged=False)
    trials = store.read("trials", sweep=args.sweep)
    if not trials.empty and args.sweep:
        trials = trials[trials["sweep"].astype(str).isin({args.sweep, _safe(args.sweep)})]
    if trials.empty:
        raise ConfigError(f"no trials in {args.store}{f' for sweep {args.sweep!r}' if args.sweep else ''}: "
                          "run a sweep first (python -m energyray sweep=smoke)")
    for line in skipped_lines(store.damaged, store.path):
        print(line, file=sys.stderr)
    if args.table:
        found = select(trials, where)
        if not found:
            one_configuration(trials, where)  # raises, listing what there is
        chosen = pd.concat([g for _, g in found])
        t6 = table6(chosen, args.queries_per_day, args.utilization, args.pue)
        if t6.empty:
            raise ConfigError("none of the matching configurations has an ok trial with an energy figure")
        print("\n".join(table6_lines(t6, args.queries_per_day)))
        return 0
    _, group = one_configuration(trials, where)
    p = projection(group, args.queries_per_day, args.utilization, args.pue, args.intensity, args.price, args.region)
    if p["per_day"]["kwh"] is None:
        raise ConfigError(p["reasons"]["energy"])
    print("\n".join(report_lines(p)))
    print()
    print("\n".join(table6_lines(table6(group, args.queries_per_day, args.utilization, args.pue),
                                 args.queries_per_day)))
    return 0
