"""EcoLogits' estimate of a remote model's energy: the only module that imports `ecologits` (lazily).

EcoLogits (GenAI Impact, https://ecologits.ai) estimates a request's energy from the model's
parameter count in its bundled model repository (a range where the architecture is not
published), the output tokens and the request's latency (capped by its own tokens-per-second
figure), times the GPUs a model that size needs, a server's power and the provider's datacenter
PUE; its GWP multiplies that energy by the electricity mix of the provider's datacenter country.
Everything is offline (no network). backend=openai calls `estimate` once per batch with each
request's output tokens and latency and gets the summed range: `energy_estimated_ecologits_min_j`
/ `_max_j` and the usage-phase `ecologits_min_co2_g` / `_max_co2_g`, all estimates (source
`estimated`), never in energy_j; null with `energy_estimate_ecologits_reason` where EcoLogits
does not know the provider or model, a count is missing, or the package is not installed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

KWH_J = 3.6e6
INSTALL_HINT = "pip install 'energyray[ecologits]'"
COLUMNS = ("energy_estimated_ecologits_min_j", "energy_estimated_ecologits_max_j", "ecologits_min_co2_g",
           "ecologits_max_co2_g")


def _null(reason: str, method: str | None = None) -> dict[str, Any]:
    return {**dict.fromkeys(COLUMNS), "energy_estimated_ecologits_source": None, "energy_estimate_ecologits_method": method,
            "energy_estimate_ecologits_reason": reason}


def _range(impact: Any) -> tuple[float, float]:
    """(min, max) of an EcoLogits impact, whose value is a number or a RangeValue."""
    v = impact.value
    return (float(v.min), float(v.max)) if hasattr(v, "min") else (float(v), float(v))


def prime() -> None:
    """Import EcoLogits and load its repositories now (about 0.5 s), not inside a trial's window."""
    try:
        from ecologits.tracers.utils import llm_impacts  # noqa: F401
    except ImportError:
        pass


def estimate(provider: str | None, model_name: str, requests: Sequence[tuple[int | None, float]]) -> dict[str, Any]:
    """The summed EcoLogits range over `requests` ((output tokens, latency in s) each) of
    `model_name` at `provider` (EcoLogits' provider names: openai, anthropic, mistralai, ...)."""
    try:
        import ecologits
        from ecologits.tracers.utils import PROVIDER_CONFIG_MAP, llm_impacts
    except ImportError:
        return _null(f"the ecologits package is not installed: {INSTALL_HINT}")
    version = getattr(ecologits, "__version__", "?")
    if not provider or provider not in PROVIDER_CONFIG_MAP:
        return _null(f"EcoLogits {version} has no provider {provider!r} (it knows: "
                     f"{', '.join(sorted(PROVIDER_CONFIG_MAP))}); set the model's `provider`")
    if not requests:
        return _null("no request succeeded")
    if any(n is None for n, _ in requests):
        return _null("no output tokens reported by the server for some requests")
    cfg = PROVIDER_CONFIG_MAP[provider]
    pue: Any = cfg.datacenter_pue
    pue_text = f"{pue.min:g}-{pue.max:g}" if hasattr(pue, "min") else f"{pue:g}"
    e_min = e_max = g_min = g_max = 0.0
    notes: dict[str, None] = {}
    for tokens, latency_s in requests:
        out = llm_impacts(provider=provider, model_name=model_name, output_token_count=int(tokens or 0),
                          request_latency=float(latency_s))
        if out.has_errors or out.energy is None or out.usage is None:
            why = "; ".join(e.message for e in out.errors or []) or "no energy returned"
            return _null(f"EcoLogits {version}: {why}")
        lo, hi = _range(out.energy)
        e_min, e_max = e_min + lo, e_max + hi
        lo, hi = _range(out.usage.gwp)
        g_min, g_max = g_min + lo, g_max + hi
        notes.update(dict.fromkeys(w.message for w in out.warnings or []))
    method = (f"ecologits {version} (GenAI Impact, ecologits.ai) llm_impacts: model {model_name!r} from its "
              f"model repository, output tokens and request latency per request, summed; {provider} datacenter "
              f"in {cfg.datacenter_location}, PUE {pue_text}; CO2 is the usage phase at that country's mix"
              + (f"; EcoLogits warns: {' '.join(notes)}" if notes else ""))
    return {"energy_estimated_ecologits_min_j": e_min * KWH_J, "energy_estimated_ecologits_max_j": e_max * KWH_J,
            "ecologits_min_co2_g": g_min * 1000.0, "ecologits_max_co2_g": g_max * 1000.0,
            "energy_estimated_ecologits_source": "estimated",
            "energy_estimate_ecologits_method": method, "energy_estimate_ecologits_reason": None}
