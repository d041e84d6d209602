"""Helpers shared by benchmarks/fidelity.py and benchmarks/overhead.py.

Importing this module needs no GPU and imports neither torch nor pynvml; it puts the
repository root on sys.path so that `python benchmarks/X.py` finds energyray from a checkout.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# The random-init Llama both benchmarks decode with (~0.9 B parameters; no download).
LLAMA: dict[str, Any] = {
    "hidden_size": 2048,
    "num_hidden_layers": 16,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "intermediate_size": 5632,
    "vocab_size": 32000,
}
DEVICE = "cuda"
VERSIONS = ("energyray", "torch", "transformers", "nvidia-ml-py")


def sync() -> None:
    """Wait for the GPU: GPU work is asynchronous, so a window closes only after this."""
    import torch

    if DEVICE == "cuda":
        torch.cuda.synchronize()


PRECISIONS = ("bf16", "nf4", "int8")


def quant_config(precision: str) -> Any:
    """transformers' BitsAndBytesConfig for nf4 or int8 (bf16 compute), as energyray's backend
    builds it; None for bf16."""
    if precision == "bf16":
        return None
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r}: one of {', '.join(PRECISIONS)}")
    import torch
    from transformers import BitsAndBytesConfig

    if precision == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                              bnb_4bit_use_double_quant=False)


def build_llama(seed: int = 0, max_positions: int = 32768, precision: str = "bf16") -> Any:
    """The random-init Llama of LLAMA, built on the GPU with AutoModelForCausalLM.from_config.

    bf16 as built; nf4 or int8 (bitsandbytes, which quantises while loading a checkpoint): the
    bf16 weights saved to a temporary directory and loaded back quantised, as energyray's
    backend does for `weights=dummy`. max_position_embeddings only sets RoPE's nominal range
    (no weights depend on it): it is raised so that the long prompts of fidelity.py part c
    are within it.
    """
    import tempfile

    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig

    quant = quant_config(precision)
    cfg = LlamaConfig(**LLAMA, max_position_embeddings=max_positions)
    torch.manual_seed(seed)
    with torch.device(DEVICE):
        model = AutoModelForCausalLM.from_config(cfg, dtype=torch.bfloat16)
    if quant is not None:
        with tempfile.TemporaryDirectory(prefix="energyray-bench-") as tmp:
            model.save_pretrained(tmp)
            del model
            torch.cuda.empty_cache()
            model = AutoModelForCausalLM.from_pretrained(tmp, dtype=torch.bfloat16, device_map=DEVICE,
                                                         quantization_config=quant)
    model.eval()
    return model


def random_prompt(length: int, seed: int = 0, batch: int = 1) -> Any:
    """Random token ids (batch, length) on the device: dummy weights need no tokenizer."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(10, LLAMA["vocab_size"], (batch, length), generator=gen).to(DEVICE)


def greedy_kwargs(new_tokens: int) -> dict[str, Any]:
    """generate() arguments for exactly `new_tokens` greedy tokens (EOS cannot stop it early)."""
    return {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "pad_token_id": 0}


def gpu_info(device: str | int) -> dict[str, Any]:
    """NVML's description of the GPU (by UUID or index), with the library versions."""
    from energyray.env import versions
    from energyray.samplers.nvml import gpus

    found = gpus()
    match = [g for g in found if device in (g["uuid"], g["index"], str(g["index"]))]
    info: dict[str, Any] = dict(match[0]) if match else {"uuid": str(device), "note": "not in gpus()"}
    info["versions"] = {k: v for k, v in versions().items() if v and k in VERSIONS}
    try:
        import torch

        info["torch_cuda"] = torch.version.cuda
    except ImportError:
        pass
    return info


def fmt(x: Any, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, (int, float)) and not isinstance(x, bool):
        return format(x, spec)
    return str(x)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]

    def line(r: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))

    out = [line(cells[0]), "  ".join("-" * w for w in widths)]
    out += [line(r) for r in cells[1:]]
    return "\n".join(out)


def goal_line(name: str, measured: str, ok: bool | None) -> str:
    verdict = "PASS" if ok else ("MISS" if ok is not None else "N/A ")
    return f"GOAL {verdict}  {name}: {measured}"


def clean(x: Any, sig: int | None = None) -> Any:
    """JSON-safe copy: NaN/inf become null, tuples lists, unknown objects strings; floats
    rounded to `sig` significant digits when given."""
    if isinstance(x, dict):
        return {str(k): clean(v, sig) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [clean(v, sig) for v in x]
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        return float(f"{x:.{sig}g}") if sig else x
    if x is None or isinstance(x, (bool, int, str)):
        return x
    return str(x)


def emit_result(line: dict[str, Any], json_out: str | None, full: dict[str, Any] | None = None) -> None:
    """Print `RESULT {json}` on one line (floats to 6 significant digits); write `full` (or
    the same object), unrounded, to json_out when given."""
    print("RESULT " + json.dumps(clean(line, 6), separators=(",", ":"), allow_nan=False), flush=True)
    if json_out:
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(json_out).write_text(json.dumps(clean(full if full is not None else line), indent=1) + "\n")


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


def open_gpu(script: str, device_arg: str | None) -> tuple[str | int, dict[str, Any]] | None:
    """The GPU a benchmark measures (`--device`, else the one CUDA sees first) and its info;
    None, after saying why, where CUDA is not available."""
    import torch

    if DEVICE == "cuda" and not torch.cuda.is_available():
        print(f"{script} needs an NVIDIA GPU with CUDA (torch.cuda.is_available() is False).")
        return None
    from energyray.env import visible_gpu_uuid

    device: str | int = device_arg or visible_gpu_uuid() or 0
    return device, gpu_info(device)


_SPIN = ("import os, sys; os.sched_setaffinity(0, {int(sys.argv[1])}); "
         "os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))\nwhile True: pass")


class IdleSpinner:
    """A process on `cpu` at SCHED_IDLE: it runs only when nothing else wants that CPU, so the
    vCPU never halts while the work on it waits, and it yields the CPU to any other thread at once."""

    def __init__(self, cpu: int) -> None:
        self.cpu = cpu
        self.proc = subprocess.Popen([sys.executable, "-c", _SPIN, str(cpu)])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # our own child, by its handle
        self.proc.wait()
