"""Dated API price tables (`conf/prices/<provider>.yaml`) and the cost of a request's usage.

A table gives USD per 1M input, cached-input and output tokens per model, with the date the
price was seen (`as_of`) and whether someone checked it against the provider's own page
(`verified`). Every cost carries that date, so a later price change never rewrites history.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from energyray import paths
from energyray.errors import ConfigError


@dataclass(frozen=True)
class Price:
    model: str
    input_usd_per_1m: float
    output_usd_per_1m: float
    cached_input_usd_per_1m: float | None
    as_of: str
    source: str
    verified: bool
    table: str  # the file it came from


def table_path(provider: str, override: str | None = None) -> Path:
    """`override`, else conf/prices/<provider>.yaml of energyray's conf directory."""
    if override:
        return Path(override).expanduser()
    return paths.conf_dir() / "prices" / f"{provider}.yaml"


def load_table(path: Path) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if not path.is_file():
        raise ConfigError(f"No price table at {path}. Add one (see conf/prices/openai.yaml) or point "
                          "api.price_table at yours.")
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(data, dict) or not isinstance(data.get("models"), dict):
        raise ConfigError(f"Price table {path} has no `models:` mapping of model -> prices.")
    return {str(k): v for k, v in data.items()}


def lookup(provider: str, api_model: str, override: str | None = None) -> Price | None:
    """The price of `api_model` (a dated snapshot id falls back to its base id), or None."""
    path = table_path(provider, override)
    data = load_table(path)
    models = data["models"]
    entry = models.get(api_model)
    if entry is None:  # gpt-4.1-mini-2025-04-14 -> gpt-4.1-mini
        entry = models.get(re.sub(r"-\d{4}-\d{2}-\d{2}$", "", api_model))
    if entry is None:
        return None
    try:
        return Price(
            model=api_model,
            input_usd_per_1m=float(entry["input_usd_per_1m"]),
            output_usd_per_1m=float(entry["output_usd_per_1m"]),
            cached_input_usd_per_1m=(None if entry.get("cached_input_usd_per_1m") is None
                                     else float(entry["cached_input_usd_per_1m"])),
            as_of=str(entry.get("as_of") or data.get("as_of") or ""),
            source=str(entry.get("source") or data.get("source") or ""),
            verified=bool(entry.get("verified", data.get("verified", False))),
            table=str(path),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise ConfigError(f"Price table {path}: model {api_model!r} needs numeric input_usd_per_1m and "
                          f"output_usd_per_1m ({type(e).__name__}: {e}).") from e


def cost(price: Price | None, input_tokens: int | None, output_tokens: int | None,
         cached_input_tokens: int | None = None) -> dict[str, Any]:
    """Row fields: cost_usd, cost_input_usd, cost_output_usd, price_table_date (null with
    `cost_reason` when the price or the token counts are unknown)."""
    if price is None:
        return {"cost_usd": None, "cost_input_usd": None, "cost_output_usd": None,
                "price_table_date": None, "cost_reason": "no price for this model in the price table"}
    base = {"price_table_date": price.as_of, "price_source": price.source,
            "price_verified": price.verified, "price_input_usd_per_1m": price.input_usd_per_1m,
            "price_output_usd_per_1m": price.output_usd_per_1m}
    if input_tokens is None or output_tokens is None:
        return {**base, "cost_usd": None, "cost_input_usd": None, "cost_output_usd": None,
                "cost_reason": "the server reported no token usage"}
    cached = min(cached_input_tokens or 0, input_tokens)
    cached_rate = price.cached_input_usd_per_1m if price.cached_input_usd_per_1m is not None else price.input_usd_per_1m
    cost_in = ((input_tokens - cached) * price.input_usd_per_1m + cached * cached_rate) / 1e6
    cost_out = output_tokens * price.output_usd_per_1m / 1e6
    return {**base, "cost_usd": cost_in + cost_out, "cost_input_usd": cost_in, "cost_output_usd": cost_out,
            "cost_reason": None}
