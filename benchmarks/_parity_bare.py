"""The bare side of benchmarks/parity.py: plain transformers, nothing of energyray imported.

One model in one process, driven by JSON lines on stdin (one answer per line on stdout):

    {"cmd": "load", "arch": {...}, "precision": "bf16|int8|nf4", "checkpoint": PATH|null, "seed": 0}
    {"cmd": "run", "batch": 1, "prompt_len": 41, "new_tokens": 64}     -> one generate, timed
    {"cmd": "env"}                                                      -> this process's settings
    {"cmd": "pin", "cpus": [3]}                                         -> main thread on these CPUs
    {"cmd": "quit"}

A run is what a user's script does: the inputs on the GPU, a device sync, the GPU's energy
counter read (NVML), `model.generate`, a sync, the counter again. The model, its weights and
the inputs are built as energyray's transformers backend builds them for `weights=dummy`
(random init of the architecture with the same seed; bitsandbytes quantising the same saved
checkpoint; random token ids from the same generator), greedy, exactly `new_tokens` tokens,
cuDNN attention off (energyray's default), bitsandbytes' per-matmul int8 warning silenced (as the
backend does), under `torch.inference_mode()` as the backend runs,
with a streamer that records when each step's tokens come out (the backend's, copied: a sync
after the prefill, then generate's own per-step sync), returned as `step_ns`.

`--ray` runs the same class inside a plain Ray actor (no energyray) and relays the lines to
it: what a Ray worker process does to the same code, without energyray's own parts.
`--ray-driver` starts a local Ray (ray.init) and runs the class here, in the driver's main thread;
`--ray-child` runs it in a plain child process of a Ray actor (the actor relays the lines).
With PARITY_ENERGYRAY_ROOT set (parity.py's energyray and ray-energyray flavours), the process
or actor imports the modules a sweep's worker has loaded before its model, and nothing else of
energyray runs. With PARITY_BACKEND=1 as well (the backend and ray-backend flavours), the model
is loaded and run by energyray's `TransformersBackend` (load, generate) instead of the code
here; the counter is read around it the same way, the time is the backend's own (as a trial
row's).
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
import threading
import time
from typing import Any

# what a sweep's worker process imports (orchestrator/actors.py, the runner, the backend, the store)
WORKER_MODULES = ("energyray.orchestrator.actors", "energyray.trial.runner", "energyray.backends.transformers",
                  "energyray.store")


def step_streamer(sync: Any) -> Any:
    """energyray's `_StepTimes` (backends/transformers.py), rebuilt here without importing it."""
    from transformers.generation.streamers import BaseStreamer

    class StepTimes(BaseStreamer):  # type: ignore[misc]
        def __init__(self) -> None:
            self.puts = 0
            self.step_ns: list[int] = []

        def put(self, value: Any) -> None:
            self.puts += 1
            if self.puts == 2:
                sync()
            if self.puts >= 2:
                self.step_ns.append(time.monotonic_ns())

        def end(self) -> None:
            pass

    return StepTimes()


class Bare:
    def __init__(self) -> None:
        self.model: Any = None
        self.vocab = 0
        self.seed = 0
        self.device = "cuda"
        self.nvml: Any = None
        self.backend: Any = None  # energyray's TransformersBackend (PARITY_BACKEND=1)

    def load(self, arch: dict[str, Any], precision: str, checkpoint: str | None, seed: int = 0,
             device: str = "cuda") -> dict[str, Any]:
        import torch

        t0 = time.monotonic()
        root = os.environ.get("PARITY_ENERGYRAY_ROOT")
        if root:  # the energyray flavours: what a sweep's worker has imported before its model
            sys.path.insert(0, root)
            for name in WORKER_MODULES:
                importlib.import_module(name)
        torch.backends.cuda.enable_cudnn_sdp(False)
        # as energyray's backend does: bitsandbytes' int8 matmul logs a warning on every call
        logging.getLogger("bitsandbytes.autograd._functions").setLevel(logging.ERROR)
        self.seed, self.device = seed, device
        if os.environ.get("PARITY_BACKEND") == "1":
            self._load_backend(arch, precision, checkpoint, seed, device)
        else:
            self._load_bare(arch, precision, checkpoint, seed, device)
        self.model.eval()
        self.vocab = int(getattr(self.model.config, "vocab_size", 0) or 0)
        if device == "cuda":
            import pynvml

            pynvml.nvmlInit()
            uuid = str(torch.cuda.get_device_properties(0).uuid)
            self.nvml = pynvml.nvmlDeviceGetHandleByUUID(uuid if uuid.startswith("GPU-") else f"GPU-{uuid}")
        return {"load_s": time.monotonic() - t0, "pid": os.getpid()}

    def _load_backend(self, arch: dict[str, Any], precision: str, checkpoint: str | None, seed: int,
                      device: str) -> None:
        """energyray's backend loads it as a sweep's worker does for weights=dummy; its random-weights
        checkpoint (bitsandbytes) is the one given, the one both sides quantise."""
        from pathlib import Path
        from types import SimpleNamespace

        from energyray.backends.transformers import TransformersBackend

        be = TransformersBackend()
        if checkpoint:
            be._dummy_checkpoint = lambda *a, **k: Path(checkpoint)  # type: ignore[method-assign]
        model = SimpleNamespace(name="parity", architecture=arch, hub_id=None, path=None, gguf_package=None,
                                gguf_file=None, builtin=None)
        be.load(model, "dummy", precision, device, os.environ.get("ENERGYRAY_CACHE", "/tmp"), seed)
        self.backend, self.model = be, be.model

    def _load_bare(self, arch: dict[str, Any], precision: str, checkpoint: str | None, seed: int,
                   device: str) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, BitsAndBytesConfig

        arch = dict(arch)
        cfg = AutoConfig.for_model(arch.pop("model_type"), **arch)
        torch.manual_seed(seed)
        if precision in ("bf16", "fp32"):
            with torch.device(device):
                self.model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, {"bf16": "bfloat16"}.get(
                    precision, "float32")))
        else:
            if precision == "int8":
                quant = BitsAndBytesConfig(load_in_8bit=True)
            else:
                quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=precision,
                                           bnb_4bit_compute_dtype=torch.bfloat16, bnb_4bit_use_double_quant=False)
            self.model = AutoModelForCausalLM.from_pretrained(checkpoint, dtype=torch.bfloat16, device_map="cuda",
                                                              quantization_config=quant)

    def _counter_j(self) -> float | None:
        if self.nvml is None:  # a CPU smoke run: no counter
            return None
        import pynvml

        return pynvml.nvmlDeviceGetTotalEnergyConsumption(self.nvml) / 1000.0

    def _sync(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def run(self, batch: int, prompt_len: int, new_tokens: int) -> dict[str, Any]:
        import torch

        gen = torch.Generator().manual_seed(self.seed)
        ids = torch.randint(10, max(11, self.vocab), (batch, prompt_len), generator=gen)
        if self.backend is not None:
            return self._run_backend(ids.tolist(), new_tokens)
        ids = ids.to(self.device)
        mask = torch.ones_like(ids)
        pad = self.model.generation_config.pad_token_id
        kwargs = {"max_new_tokens": new_tokens, "min_new_tokens": new_tokens, "do_sample": False,
                  "pad_token_id": pad if pad is not None else 0}
        streamer = step_streamer(self._sync)
        self._sync()
        e0 = self._counter_j()
        t0 = time.monotonic_ns()
        with torch.inference_mode():
            out = self.model.generate(input_ids=ids, attention_mask=mask, streamer=streamer, **kwargs)
        self._sync()
        t1 = time.monotonic_ns()
        e1 = self._counter_j()
        tokens = int(out.shape[0] * (out.shape[1] - prompt_len))
        energy = None if e0 is None or e1 is None else e1 - e0
        return {"t0_ns": t0, "t1_ns": t1, "tokens": tokens, "energy_j": energy, "s": (t1 - t0) / 1e9,
                "step_ns": [t - t0 for t in streamer.step_ns]}

    def _run_backend(self, prompts: list[list[int]], new_tokens: int) -> dict[str, Any]:
        """The backend's generate as a trial calls it (token ids, a fixed length), the counter around it."""
        self._sync()
        e0 = self._counter_j()
        g = self.backend.generate(prompts, new_tokens, ignore_eos=True)
        self._sync()
        e1 = self._counter_j()
        t0, t1 = g.start_ns, g.end_ns
        energy = None if e0 is None or e1 is None else e1 - e0
        return {"t0_ns": t0, "t1_ns": t1, "tokens": g.output_tokens, "energy_j": energy, "s": (t1 - t0) / 1e9,
                "step_ns": [t - t0 for t in g.step_ns]}

    def pin(self, cpus: list[int]) -> dict[str, Any]:
        """The calling (main) thread on `cpus`; threads it starts later inherit them."""
        os.sched_setaffinity(0, set(cpus))
        return {"affinity": sorted(os.sched_getaffinity(0))}

    def env(self) -> dict[str, Any]:
        try:
            import torch

            torch_threads = torch.get_num_threads()
        except ImportError:
            torch_threads = None
        return {"pid": os.getpid(), "nice": os.getpriority(os.PRIO_PROCESS, 0),
                "affinity": len(os.sched_getaffinity(0)), "switch_interval_s": sys.getswitchinterval(),
                "threads": [t.name for t in threading.enumerate()], "torch_threads": torch_threads,
                "main_thread": threading.current_thread() is threading.main_thread(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "energyray_modules": sum(1 for m in sys.modules if m.split(".")[0] == "energyray")}


def serve(handle: Any, call: Any) -> None:
    for line in sys.stdin:
        msg = json.loads(line)
        cmd = msg.pop("cmd")
        if cmd == "quit":
            return
        try:
            out = {"ok": True, **call(handle, cmd, msg)}
        except Exception as e:  # the harness reports it and stops this configuration
            out = {"ok": False, "error": f"{type(e).__name__}: {e}"}
        print(json.dumps(out), flush=True)


def _local(b: Bare, cmd: str, msg: dict[str, Any]) -> dict[str, Any]:
    return dict(getattr(b, cmd)(**msg))


class Child:
    """In a Ray actor: the bare code in a plain child process of the actor (which inherits the
    environment Ray gave the actor), its lines relayed; the actor waits on the pipe meanwhile."""

    def __init__(self, script: str) -> None:
        import subprocess

        self.proc = subprocess.Popen([sys.executable, script], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)

    def call(self, cmd: str, msg: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"cmd": cmd, **msg}) + "\n")
        self.proc.stdin.flush()
        out = json.loads(self.proc.stdout.readline())
        if not out.pop("ok"):
            raise RuntimeError(out["error"])
        return dict(out)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write('{"cmd": "quit"}\n')
        self.proc.stdin.flush()
        self.proc.wait(timeout=60)


def main() -> None:
    mode = next((flag for flag in ("--ray-child", "--ray-driver", "--ray") if flag in sys.argv), None)
    if mode is None:
        serve(Bare(), _local)
        return
    import ray

    ray.init(include_dashboard=False, log_to_driver=True, configure_logging=False)
    try:
        if mode == "--ray-driver":  # a core worker in this process, the code in its main thread
            serve(Bare(), _local)
            return
        opts = {"num_cpus": 1, "num_gpus": 1 if ray.cluster_resources().get("GPU") else 0}
        if mode == "--ray-child":  # a Ray actor whose plain child process runs the code
            host = ray.remote(Child).options(**opts).remote(os.path.abspath(__file__))
            try:
                serve(host, lambda a, cmd, msg: dict(ray.get(a.call.remote(cmd, msg))))
            finally:
                ray.get(host.close.remote())
            return
        actor = ray.remote(Bare).options(**opts).remote()
        serve(actor, lambda a, cmd, msg: dict(ray.get(getattr(a, cmd).remote(**msg))))
    finally:
        ray.shutdown()


if __name__ == "__main__":
    main()
