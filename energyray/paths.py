"""Where energyray finds its files: conf/ (catalogue, hardware, prices), sweeps/, the cache.

Works from a checkout and from an installed package (which ships conf/ and sweeps/ as
`energyray._conf` and `energyray._sweeps`); a user's own `./sweeps` is searched too.
Imports nothing of energyray but errors, so any layer may use it.
"""

from __future__ import annotations

import os
from pathlib import Path

from energyray.errors import ConfigError

_PKG = Path(__file__).resolve().parent


def conf_dir() -> Path:
    """conf/: $ENERGYRAY_CONF, else the checkout's, else the copy shipped in the package."""
    if os.environ.get("ENERGYRAY_CONF"):
        return Path(os.environ["ENERGYRAY_CONF"]).resolve()
    for candidate in (_PKG.parent / "conf", _PKG / "_conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise ConfigError("Cannot find energyray's conf/ directory; set ENERGYRAY_CONF to it.")


def sweep_dirs() -> list[Path]:
    """Where sweeps are found; later ones win: shipped, the checkout's, ./sweeps, $ENERGYRAY_SWEEPS."""
    dirs = [_PKG / "_sweeps", _PKG.parent / "sweeps", Path.cwd() / "sweeps"]
    if os.environ.get("ENERGYRAY_SWEEPS"):
        dirs.append(Path(os.environ["ENERGYRAY_SWEEPS"]))
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def group_names(group: str) -> list[str]:
    """The choices of a config group in conf/ (`model`, `hardware`, `sampler/pdu`)."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def cache_dir(configured: str | None = None) -> str:
    """Converted and dummy models: `configured` (cache_dir=), else $ENERGYRAY_CACHE, else ~/.cache/energyray."""
    return str(Path(configured or os.environ.get("ENERGYRAY_CACHE") or "~/.cache/energyray").expanduser())
