"""Hardware and software snapshot saved beside every result (env_json), and hardware names.

Library versions are read from package metadata, so taking a snapshot imports nothing heavy.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("energyray", "torch", "transformers", "bitsandbytes", "accelerate", "ray", "hydra-core",
            "nvidia-ml-py", "codecarbon", "pandas", "pyarrow", "vllm", "openai")
# GPU families energyray knows by name (hardware partition and conf/hardware/); the first match wins.
KNOWN_GPUS = ("H200", "H100", "A100", "A10G", "A6000", "L40S", "L4", "A10", "V100", "T4")


def hardware_name(gpu_name: str | None) -> str:
    """`NVIDIA H100 80GB HBM3` -> `h100`; no GPU -> `cpu`; an unknown GPU -> a slug of its name."""
    if not gpu_name:
        return "cpu"
    upper = gpu_name.upper()
    for known in KNOWN_GPUS:
        if re.search(rf"(?<![A-Z0-9]){known}(?![0-9])", upper):
            return known.lower()
    return re.sub(r"[^a-z0-9]+", "-", gpu_name.lower().replace("nvidia", "")).strip("-") or "gpu"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_sha(path: str | Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    if found.get("energyray") is None:  # run from a checkout on PYTHONPATH, not installed
        from energyray import __version__

        found["energyray"] = __version__
    return found


def snapshot() -> dict[str, Any]:
    """This process's host, CPU, Python and library versions."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "versions": versions(),
        "git_sha": git_sha(),
    }


def bytecode_cache(mode: str, cache_dir: str) -> str:
    """ray.bytecode_cache, in a worker before it imports torch and its backend: where this process
    now keeps compiled bytecode, or why it keeps none.

    Where Python is told not to write bytecode (PYTHONDONTWRITEBYTECODE=1, `python -B`: common in
    container images) and the installed packages carry none, every process compiles torch and
    transformers from source: a worker started 4-5 s later on an H200 VM. auto: wherever Python writes no bytecode, write and read it under
    `cache_dir`/pycache (sys.pycache_prefix: the installed packages' directories stay untouched),
    so that every later worker on this node reads it. Python then reads bytecode from there only:
    where the packages did carry theirs, the first worker compiles once more, and later ones are
    as fast as before. true: always (a PYTHONPYCACHEPREFIX already set is kept); false: leave the
    interpreter as it is. Modules this process imported already are unaffected."""
    if mode == "false":
        return "off (ray.bytecode_cache=false)"
    if mode == "auto" and not sys.dont_write_bytecode:
        return f"off (not needed: this Python writes bytecode{' under ' + sys.pycache_prefix if sys.pycache_prefix else ''})"
    if sys.pycache_prefix is None:
        sys.pycache_prefix = str(Path(cache_dir).expanduser() / "pycache")
    sys.dont_write_bytecode = False
    return sys.pycache_prefix


def visible_gpu_uuid() -> str | None:
    """UUID (NVML form, `GPU-…`) of the first GPU this process sees through CUDA; None if none.

    Taken from CUDA itself, not from an index: CUDA's order can differ from NVML's.
    """
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    uuid = str(torch.cuda.get_device_properties(0).uuid)
    return uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
