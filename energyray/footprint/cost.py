"""The dollar cost of a trial, and one bill setting local and API models side by side.

A local trial costs what its measured energy costs at the region's electricity price
(conf/prices/electricity.yaml) and what renting its GPU for the trial's window costs at a cloud
on-demand price (conf/prices/cloud_gpu.yaml). An API trial costs its token price (the backend's
`cost_usd`, conf/prices/<provider>.yaml). Every figure carries its price, that price's source and
date, or is null with the reason. `cost_fields` runs in the driver on each finished row; `bill`
and `python -m energyray bill` read the stored rows.
"""

from __future__ import annotations

import argparse
import json
import math
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from energyray import env, paths
from energyray.config import FootprintConfig
from energyray.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

J_PER_KWH = 3.6e6
USER = "user"  # the source of a price given in footprint.*
REMOTE = "remote API: the model runs on the provider's servers; its cost is the token price (cost_usd)"


@dataclass(frozen=True)
class ElectricityPrice:
    region: str
    usd_per_kwh: float
    as_of: str
    source: str


@dataclass(frozen=True)
class Offering:
    name: str
    gpu: str | None
    gpus: int
    instance_usd_per_hour: float
    as_of: str
    source: str

    @property
    def gpu_hour_usd(self) -> float:
        """The instance's price shared evenly among its GPUs."""
        return self.instance_usd_per_hour / self.gpus


@dataclass(frozen=True)
class CostTables:
    electricity: dict[str, ElectricityPrice] = field(default_factory=dict)  # REGION (upper case) -> price
    offerings: dict[str, Offering] = field(default_factory=dict)
    hardware: dict[str, str | None] = field(default_factory=dict)  # hardware name -> offering (None: none)
    no_offering: dict[str, str] = field(default_factory=dict)  # hardware name -> why it has none
    electricity_path: str = ""
    cloud_path: str = ""


def _yaml(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if not path.is_file():
        raise ConfigError(f"No price table at {path}: energyray's conf/prices/ ships it; restore it from the "
                          "repository, or point ENERGYRAY_CONF at a conf/ directory that has it.")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict):
        raise ConfigError(f"Price table {path} is not a mapping.")
    return {str(k): v for k, v in data.items()}


def _dated(path: Path, name: str, entry: Any) -> tuple[str, str]:
    if not isinstance(entry, dict) or not entry.get("as_of") or not entry.get("source"):
        raise ConfigError(f"Price table {path}: {name!r} needs `as_of` and `source` (every price is dated and sourced).")
    return str(entry["as_of"]), str(entry["source"])


def load_cost_tables(conf: Path | None = None) -> CostTables:
    """conf/prices/electricity.yaml and cloud_gpu.yaml (of `conf`, else energyray's conf/), checked."""
    base = (conf or paths.conf_dir()) / "prices"
    epath, cpath = base / "electricity.yaml", base / "cloud_gpu.yaml"
    e, c = _yaml(epath), _yaml(cpath)
    rates = e.get("exchange_rates") or {}
    electricity = {}
    for region, entry in (e.get("regions") or {}).items():
        as_of, source = _dated(epath, region, entry)
        try:
            if entry.get("usd_per_kwh") is not None:
                usd = float(entry["usd_per_kwh"])
            else:
                currency = str(entry["currency"])
                rate = rates.get(currency) or {}
                r_as_of, r_source = _dated(epath, f"exchange_rates.{currency}", rate)
                usd = float(entry["price_per_kwh"]) * float(rate["usd"])
                source = f"{source}; converted at {float(rate['usd'])} USD/{currency} ({r_source}, {r_as_of})"
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"Price table {epath}: region {region!r} needs usd_per_kwh, or price_per_kwh and a "
                              f"currency listed under exchange_rates ({type(err).__name__}: {err}).") from err
        electricity[str(region).upper()] = ElectricityPrice(str(region).upper(), usd, as_of, source)
    offerings = {}
    for name, entry in (c.get("offerings") or {}).items():
        as_of, source = _dated(cpath, name, entry)
        try:
            offerings[str(name)] = Offering(str(name), entry.get("gpu"), int(entry["gpus"]),
                                            float(entry["instance_usd_per_hour"]), as_of, source)
        except (KeyError, TypeError, ValueError) as err:
            raise ConfigError(f"Price table {cpath}: offering {name!r} needs gpus and instance_usd_per_hour "
                              f"({type(err).__name__}: {err}).") from err
        if offerings[str(name)].gpus < 1:
            raise ConfigError(f"Price table {cpath}: offering {name!r} has gpus < 1.")
    hardware = {str(k).lower(): (None if v is None else str(v)) for k, v in (c.get("hardware") or {}).items()}
    for hw, name in hardware.items():
        if name is not None and name not in offerings:
            raise ConfigError(f"Price table {cpath}: hardware {hw!r} names offering {name!r}, which is not under "
                              f"offerings ({', '.join(offerings)}).")
    no_offering = {str(k).lower(): str(v) for k, v in (c.get("no_offering") or {}).items()}
    return CostTables(electricity, offerings, hardware, no_offering, str(epath), str(cpath))


_cached: CostTables | None = None


def _tables(tables: CostTables | None) -> CostTables:
    global _cached
    if tables is not None:
        return tables
    if _cached is None:
        _cached = load_cost_tables()
    return _cached


def check_config(cfg: FootprintConfig, tables: CostTables | None = None) -> None:
    """Refuse, before anything runs, a footprint section whose cost settings cannot be used."""
    t = _tables(tables)
    for key in ("electricity_usd_per_kwh", "gpu_hour_usd"):
        v = getattr(cfg, key)
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise ConfigError(f"footprint.{key}={v!r}: give a price of 0 or more (USD), or null for the table's.")
    if cfg.cloud_offering and cfg.cloud_offering not in t.offerings:
        raise ConfigError(f"footprint.cloud_offering={cfg.cloud_offering!r} is not in {t.cloud_path}: use one of "
                          f"{', '.join(t.offerings)}, or add it there (with as_of and source).")


# -- one row -----------------------------------------------------------------------------------
def _num(v: Any) -> float | None:
    """A finite number, or None (None, NaN, text)."""
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def _config(row: dict[str, Any]) -> dict[str, Any]:
    try:
        c = json.loads(row.get("config_json") or "{}")
    except (TypeError, ValueError):
        return {}
    return c if isinstance(c, dict) else {}


def is_api(row: dict[str, Any]) -> bool:
    """A remote API model (backend=openai): nothing of it runs or is measured here."""
    return row.get("backend") == "openai" or row.get("device") == "remote"


def region_of(row: dict[str, Any], cfg: FootprintConfig) -> str | None:
    """footprint.region, or with region=auto the sampler's country (sampler.country_iso_code)."""
    if cfg.region and str(cfg.region).lower() != "auto":
        return str(cfg.region).upper()
    country = (_config(row).get("sampler") or {}).get("country_iso_code") or row.get("country_iso_code")
    return str(country).upper() if country else None


def hardware_of(row: dict[str, Any]) -> str:
    """The trial's hardware class: the row's, its config's, or the family of its GPU (cpu without one)."""
    hw = row.get("hardware") or (_config(row).get("trial") or {}).get("hardware")
    if hw and str(hw) != "auto":
        return str(hw).lower()
    return env.hardware_name(row.get("gpu_name"))


def on_gpu(row: dict[str, Any]) -> bool:
    if row.get("device") in ("cuda", "cpu"):
        return row.get("device") == "cuda"
    return bool(row.get("gpu_name")) or hardware_of(row) != "cpu"


def _electricity(row: dict[str, Any], cfg: FootprintConfig, t: CostTables) -> tuple[ElectricityPrice | None, str]:
    if cfg.electricity_usd_per_kwh is not None:
        return ElectricityPrice(region_of(row, cfg) or "", float(cfg.electricity_usd_per_kwh),
                                str(row.get("started_at") or "")[:10], USER), ""
    region = region_of(row, cfg)
    if not region:
        return None, ("no region: footprint.region=auto and the trial's config has no sampler.country_iso_code; "
                      "set footprint.region or footprint.electricity_usd_per_kwh")
    for candidate in (region, region.split("-")[0]):  # USA-OH -> USA
        if candidate in t.electricity:
            return t.electricity[candidate], ""
    return None, (f"no electricity price for region {region} in {t.electricity_path}: add it (with as_of and "
                  "source), or set footprint.electricity_usd_per_kwh")


def _gpu_hour(row: dict[str, Any], cfg: FootprintConfig, t: CostTables) -> tuple[dict[str, Any] | None, str]:
    """The GPU-hour price: {usd, source, as_of, offering}, or None and why."""
    if cfg.gpu_hour_usd is not None:
        return {"usd": float(cfg.gpu_hour_usd), "source": USER, "as_of": str(row.get("started_at") or "")[:10],
                "offering": cfg.cloud_offering}, ""
    name = cfg.cloud_offering
    if name is None:
        hw = hardware_of(row)
        if hw not in t.hardware:
            return None, (f"no cloud offering for hardware {hw!r} in {t.cloud_path}: set footprint.cloud_offering "
                          f"({', '.join(t.offerings)}) or footprint.gpu_hour_usd")
        name = t.hardware[hw]
        if name is None:
            return None, t.no_offering.get(hw) or f"no cloud offering for hardware {hw!r} in {t.cloud_path}"
    o = t.offerings.get(name)
    if o is None:
        return None, f"footprint.cloud_offering={name!r} is not in {t.cloud_path}"
    per_gpu = f"; per GPU: the instance's price / {o.gpus}" if o.gpus > 1 else ""
    return {"usd": o.gpu_hour_usd, "source": o.source + per_gpu,
            "as_of": o.as_of, "offering": o.name}, ""


def _requests(row: dict[str, Any]) -> float | None:
    for key in ("requests", "api_requests", "batch_size"):
        n = _num(row.get(key))
        if n:
            return n
    return None


def cost_fields(row: dict[str, Any], cfg: FootprintConfig, tables: CostTables | None = None) -> dict[str, Any]:
    """The cost columns of one finished trial row (schema.py, "# -- cost"); `tables`: load_cost_tables()
    (None: the shipped tables, loaded once). Pure: reads the row, never changes it."""
    t = _tables(tables)
    out: dict[str, Any] = dict.fromkeys(COST_COLUMNS)
    requests, tokens = _requests(row), _num(row.get("output_tokens"))
    ok = row.get("status") == "ok"

    if is_api(row):
        out.update(energy_cost_reason=REMOTE, gpu_time_cost_reason=REMOTE)
        total, basis = _num(row.get("cost_usd")), "api_tokens"
        why = None if total is not None else f"no token cost: {row.get('cost_reason') or 'cost_usd is null'}"
    else:
        energy_part, energy_why = _energy_cost(row, cfg, t, out)
        gpu_part, gpu_why = _gpu_time_cost(row, cfg, t, out)
        if not on_gpu(row):
            total, basis, why = energy_part, "energy", energy_why or None
        elif energy_part is not None and gpu_part is not None:
            total, basis, why = energy_part + gpu_part, "energy+gpu_time", None
        else:
            total, basis = None, None
            why = "; ".join(w for w in (energy_why and f"energy: {energy_why}", gpu_why and f"GPU time: {gpu_why}") if w)
    if not ok:
        total, why = None, f"status {row.get('status')}: no cost per request of an unfinished trial"
    if total is not None and requests:
        out.update(cost_usd_per_request=total / requests, cost_basis=basis,
                   cost_usd_per_1k_tokens=total / tokens * 1000 if tokens else None)
    else:
        out["cost_per_request_reason"] = why or "no request count on the row"
    return out


def _energy_cost(row: dict[str, Any], cfg: FootprintConfig, t: CostTables, out: dict[str, Any]) -> tuple[float | None, str]:
    """energy_j x PUE x price: fills the energy_cost_* and electricity_* columns; (cost, why null)."""
    price, why = _electricity(row, cfg, t)
    if price is not None:
        out.update(electricity_usd_per_kwh=price.usd_per_kwh, electricity_price_source=price.source,
                   electricity_price_as_of=price.as_of or None, electricity_price_region=price.region or None)
    energy = _num(row.get("energy_j"))
    if price is None or energy is None:
        why = why or f"energy_j is null ({row.get('energy_reason') or 'not measured'})"
        out["energy_cost_reason"] = why
        return None, why
    pue = _num(cfg.pue)
    cost = energy * (pue or 1.0) / J_PER_KWH * price.usd_per_kwh
    scope = row.get("energy_scope") or "the device"
    out.update(energy_cost_usd=cost, energy_cost_estimated=row.get("energy_source") == "estimated",
               energy_cost_reason=f"energy_j ({scope}) only: the rest of the machine is not counted; "
                                  + (f"x PUE {pue:g}" if pue else "no PUE applied"))
    return cost, ""


def _gpu_time_cost(row: dict[str, Any], cfg: FootprintConfig, t: CostTables, out: dict[str, Any]) -> tuple[float | None, str]:
    """window_s x 1 GPU x GPU-hour price / 3600: fills gpu_time_* and gpu_hour_*; (cost, why null)."""
    if not on_gpu(row):
        why = "CPU worker: no GPU time (the CPU machine's own hourly price is not counted)"
        out["gpu_time_cost_reason"] = why
        return None, why
    price, why = _gpu_hour(row, cfg, t)
    if price is not None:
        out.update(gpu_hour_usd=price["usd"], gpu_hour_source=price["source"], gpu_hour_as_of=price["as_of"] or None,
                   cloud_offering=price["offering"])
    window = _num(row.get("window_s"))
    if price is None or window is None:
        why = why or "window_s is null: the trial's window was not timed"
        out["gpu_time_cost_reason"] = why
        return None, why
    cost = window * 1 * price["usd"] / 3600  # energyray gives each worker one GPU
    out.update(gpu_time_cost_usd=cost,
               gpu_time_cost_reason="the trial's window on 1 GPU; loading, idle and warmup time are not counted")
    return cost, ""


# The cost columns (declared in schema.py); cost_fields returns every one of them.
COST_COLUMNS = (
    "energy_cost_usd", "energy_cost_estimated", "energy_cost_reason", "electricity_usd_per_kwh",
    "electricity_price_source", "electricity_price_as_of", "electricity_price_region",
    "gpu_time_cost_usd", "gpu_time_cost_reason", "gpu_hour_usd", "gpu_hour_source", "gpu_hour_as_of",
    "cloud_offering", "cost_usd_per_request", "cost_usd_per_1k_tokens", "cost_basis", "cost_per_request_reason",
)


# -- the bill ----------------------------------------------------------------------------------
BASIS_TEXT = {"energy+gpu_time": "energy+GPU", "energy": "energy only", "api_tokens": "API tokens"}


def bill(trials: pd.DataFrame) -> pd.DataFrame:
    """One line per configuration of the ok trials: local and API models side by side in USD,
    grams CO2e and seconds per request (means over the configuration's trials).

    Columns: the configuration (report.CONFIG_KEYS), kind (local | api), trials, usd_per_request,
    usd_per_1k_tokens, co2_g_per_request (co2_g_per_request, else co2_g / requests; null where the
    rows have no CO2), s_per_request (duration_s / requests: generation time, amortised over a
    batch's or the API's concurrent requests), cost_basis, estimated (some energy behind the cost
    or CO2 is an estimate), reasons (why a figure is null, distinct)."""
    import pandas as pd

    from energyray.report.summary import _norm, configurations

    if trials.empty or "status" not in trials:
        return pd.DataFrame()
    ok = trials[trials["status"] == "ok"]
    rows = []
    for key, g in configurations(ok):
        recs = g.to_dict("records")
        per_req = [_num(r.get("cost_usd_per_request")) for r in recs]
        per_tok = [_num(r.get("cost_usd_per_1k_tokens")) for r in recs]
        co2 = []
        for r in recs:
            c, total, n = _num(r.get("co2_g_per_request")), _num(r.get("co2_g")), _requests(r)
            co2.append(c if c is not None else total / n if total is not None and n else None)
        secs = [(_num(r.get("duration_s")) or math.nan) / (_requests(r) or math.nan) for r in recs]
        bases = {BASIS_TEXT.get(str(_norm(r.get("cost_basis"))), str(_norm(r.get("cost_basis"))))
                 for r in recs if _norm(r.get("cost_basis")) is not None}
        reasons = {str(r.get("cost_per_request_reason")) for r in recs if _norm(r.get("cost_per_request_reason"))}
        if any(_norm(r.get("cost_basis")) is None and _norm(r.get("cost_per_request_reason")) is None for r in recs):
            reasons.add("no cost columns: stored before energyray priced its trials")
        rows.append({
            **key, "kind": "api" if any(is_api(r) for r in recs) else "local", "trials": len(recs),
            "usd_per_request": _mean(per_req), "usd_per_1k_tokens": _mean(per_tok), "co2_g_per_request": _mean(co2),
            "s_per_request": _mean([None if math.isnan(s) else s for s in secs]),
            "cost_basis": " + ".join(sorted(bases)) or None,
            "estimated": any(bool(_norm(r.get("energy_cost_estimated"))) or bool(_norm(r.get("co2_estimated")))
                             for r in recs),
            "reasons": sorted(reasons),
        })
    return pd.DataFrame(rows)


def _mean(values: list[float | None]) -> float | None:
    got = [v for v in values if v is not None]
    return sum(got) / len(got) if got else None


def _fmt(v: Any) -> str:
    v = _num(v)
    if v is None:
        return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.3g}"


WIDTH = 100


def format_bill(b: pd.DataFrame, trials: pd.DataFrame, title: str, width: int = WIDTH) -> str:
    """The bill as text, at most `width` columns. The configuration keys that vary are columns where
    they fit beside the figures; else each line's configuration is on a line of its own above them."""
    from energyray.report.summary import _HEADERS, CONFIG_KEYS, _norm

    varying = [k for k in CONFIG_KEYS if len({_norm(v) for v in b[k]}) > 1] or ["model"]
    constant = [f"{k} {_norm(b.iloc[0][k])}" for k in ("sweep", "model", "hardware", "backend", "precision")
                if k not in varying and _norm(b.iloc[0][k]) is not None]
    heads = ["kind", "n", "USD/req", "USD/1k tok", "gCO2e/req", "s/req", "basis"]
    widths = [5, 3, 9, 10, 9, 7, 11]
    figures_w = sum(w + 1 for w in widths)
    values = [[_value(r[k]) for k in varying] for _, r in b.iterrows()]
    key_ws = [max(len(_HEADERS.get(k, k)), *(len(v[i]) for v in values)) for i, k in enumerate(varying)]
    stacked = sum(w + 2 for w in key_ws) - 2 + figures_w > width
    lead = 2 if stacked else sum(w + 2 for w in key_ws) - 2

    def line(left: str, cells: list[str]) -> str:
        return (left.ljust(lead) + "".join(" " + (c.ljust(w) if i == len(cells) - 1 else c.rjust(w))
                                           for i, (c, w) in enumerate(zip(cells, widths, strict=True)))).rstrip()

    keys_head = " · ".join(_HEADERS.get(k, k) for k in varying)
    out = [textwrap.fill(" · ".join([title, *constant]), width, subsequent_indent="  ")]
    out += [_cut(keys_head, width), line("", heads)] if stacked else \
        [line("  ".join(_HEADERS.get(k, k).ljust(w) for k, w in zip(varying, key_ws, strict=True)), heads)]
    for (_, r), vals in zip(b.iterrows(), values, strict=True):
        usd = _fmt(r["usd_per_request"]) + ("*" if r["estimated"] and _num(r["usd_per_request"]) is not None else "")
        cells = [str(r["kind"]), str(r["trials"]), usd, _fmt(r["usd_per_1k_tokens"]), _fmt(r["co2_g_per_request"]),
                 _fmt(r["s_per_request"]), _cut(str(_norm(r["cost_basis"]) or "-"), widths[-1])]
        if stacked:
            out += [_cut(" · ".join(vals), width), line("", cells)]
        else:
            out.append(line("  ".join(v.ljust(w) for v, w in zip(vals, key_ws, strict=True)), cells))
    notes = [
        "USD/req: a local model's energy at the electricity price plus its GPU's time (the trial's window) "
        "at a cloud GPU-hour price; an API model's token price. Per request and per 1,000 output tokens; "
        "means over the configuration's trials. s/req: generation time / requests (less than one "
        "request's latency where requests run together). * the energy is an estimate.",
        *_prices(trials),
    ]
    missing: dict[str, list[str]] = {}  # why -> the configurations without a cost for it
    for _, r in b.iterrows():
        if _num(r["usd_per_request"]) is None:
            for why in r["reasons"]:
                missing.setdefault(why, []).append(_label(r, varying))
    notes += [f"{', '.join(labels)}: {why}" for why, labels in sorted(missing.items())]
    if b["co2_g_per_request"].isna().all():
        notes.append("gCO2e: none of these rows has CO2 columns (co2_g).")
    out += [textwrap.fill(n, width, subsequent_indent="  ") for n in notes]
    return "\n".join(out)


def _value(v: Any) -> str:
    from energyray.report.summary import _norm

    return "-" if _norm(v) is None else str(_norm(v))


def _label(r: Any, keys: list[str]) -> str:
    from energyray.report.summary import _norm

    return " · ".join("-" if _norm(r[k]) is None else str(_norm(r[k])) for k in keys)


def _prices(trials: pd.DataFrame) -> list[str]:
    """One line per distinct price the bill's rows used: value, what, date, source."""
    from energyray.report.summary import _norm

    seen: dict[str, None] = {}
    for r in trials[trials["status"] == "ok"].to_dict("records"):
        if _norm(r.get("electricity_usd_per_kwh")) is not None:
            seen[f"electricity {r.get('electricity_price_region')}: {_fmt(r['electricity_usd_per_kwh'])} USD/kWh "
                 f"({r.get('electricity_price_as_of')}; {r.get('electricity_price_source')})"] = None
        if _norm(r.get("gpu_hour_usd")) is not None:
            seen[f"GPU-hour {r.get('cloud_offering') or ''}: {_fmt(r['gpu_hour_usd'])} USD "
                 f"({r.get('gpu_hour_as_of')}; {r.get('gpu_hour_source')})"] = None
        if _norm(r.get("price_table_date")) is not None:
            seen[f"tokens {r.get('api_model') or r.get('model')}: price table of {r.get('price_table_date')}"] = None
    return list(seen)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def bill_main(argv: list[str] | None = None) -> int:
    """`python -m energyray bill --store PATH [--sweep S]`: the bill, or ConfigError (exit 2)."""
    from energyray.store import Store, _safe

    ap = argparse.ArgumentParser(prog="python -m energyray bill",
                                 description="Local and API models on one bill: USD, grams CO2e and seconds "
                                             "per request, one line per configuration.")
    ap.add_argument("--store", default="outputs/store", help="store directory (default: outputs/store)")
    ap.add_argument("--sweep", help="only this sweep's trials")
    args = ap.parse_args(argv)
    trials = Store(args.store, log_damaged=False).read("trials", sweep=args.sweep)
    if args.sweep and not trials.empty:
        trials = trials[trials["sweep"].astype(str).isin({args.sweep, _safe(args.sweep)})]
    where = f"{args.store}" + (f" for sweep {args.sweep!r}" if args.sweep else "")
    b = bill(trials)
    if b.empty:
        raise ConfigError(f"no finished trials in {where}: run a sweep first (python -m energyray sweep=smoke), "
                          "then bill its store.")
    print(format_bill(b, trials, f"bill: {where}: {len(b)} configuration(s)"))
    return 0
