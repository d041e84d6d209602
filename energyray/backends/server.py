"""backend=server: launch a local OpenAI-compatible server, measure its startup and shutdown.

Once per group the server command (`server.command`, default `transformers serve
{model_dir} --host {host} --port {port} --device {device}`, plus `server.precision_args`
for the precision) is started as a child of the worker. The thesis' phases map onto the
runner's group phases, measured by this machine's sampler (the server runs here, so its
energy is measurable, unlike backend=openai's):

- `load` = the server's **startup**: from launching the process until `server.ready_path`
  answers 200 (`transformers serve MODEL` and `vllm serve` load the model before they
  listen, so this includes loading it). Rows say `load_label: server_startup`.
- `unload` = its **shutdown**: from SIGTERM to the process group until every process has
  exited (SIGKILL after `server.shutdown_timeout_s`; `server_shutdown_forced` says so).
  Rows say `unload_label: server_shutdown`.

Trials go through the OpenAI client backend (openai_api.py) at `http://{host}:{port}/v1`,
on `server.endpoint` (default `completions`: the raw prompt, as the transformers backend
feeds it; the default model and the tiny one have no chat template, so `chat` answers 500).
The user's API key is never sent to, nor put in the environment of, a server launched here.
Chat templates follow the endpoint: `chat` has the server apply the model's template,
`completions` sends raw text; prompt_tokens is refused (openai_api.api_prompts).

Conversion of the default model's GGUF into a transformers directory (transformers.py) is
`prepare`: cached, not measured. `transformers serve` needs `HF_HOME` to hold a `hub/`
folder or /v1/models answers 500 (FACTS): `server.hf_home`, else $HF_HOME or
~/.cache/huggingface, gets one. The child gets PR_SET_PDEATHSIG, so a worker killed by the
orchestrator does not leave a server holding the GPU.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from energyray.backends import PRECISIONS as _ALL_PRECISIONS
from energyray.backends.base import Generation, LoadInfo, Prompts
from energyray.backends.openai_api import OpenAIBackend, api_prompts, with_base_url
from energyray.errors import BackendError, ConfigError, TrialFailed

RE_ERROR = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception)\b: ")  # a traceback's last line


def _server_default() -> Any:
    from energyray.config import ServerConfig

    return ServerConfig()


def free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the worker that launched it dies (Linux)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def model_dir(model: Any, cache_dir: str) -> str:
    """What the server loads: what the transformers backend would load (a local path as is, the
    default model's GGUF converted once into the cache, the built-in tiny model), a Hub id
    fetched into the HF cache first (unmeasured, in prepare)."""
    from energyray.backends.transformers import model_source

    source = model_source(model, cache_dir, download=True)
    gguf = getattr(model, "gguf_file", None)
    if gguf and not getattr(model, "gguf_package", None):
        return f"{source}:{gguf}"  # transformers serve's name for GGUF weights
    return source


class ServerBackend:
    """A local server per group; generation through the OpenAI client backend."""

    name = "server"
    precisions = _ALL_PRECISIONS["server"]
    measures_local_energy = True
    settings = ("api", "server")
    load_label = "server_startup"
    unload_label = "server_shutdown"

    def __init__(self, api: Any = None, server: Any = None) -> None:
        from energyray.backends.openai_api import _api_default

        self.api = api if api is not None else _api_default()
        self.server = server if server is not None else _server_default()
        self.client: OpenAIBackend | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.command: list[str] = []
        self.port = 0
        self.device = "cpu"
        self.model_dir = ""
        self.resolved = ""  # the precision as resolved for the device (baseline: bf16 on a GPU, fp32 on a CPU)
        self.log_path: Path | None = None
        self.unload_extras: dict[str, Any] = {}
        self._log: Any = None
        atexit.register(self._kill)

    # -- group phases ----------------------------------------------------------------------
    def prepare(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> None:
        """Unmeasured: find (or convert) the model directory, pick the port, build the client."""
        if weights != "real":
            raise ConfigError(f"backend=server serves a model directory: weights={weights} is not supported "
                              f"(model {model.name!r}). Use weights=real, or backend=transformers for dummy weights.")
        if precision not in self.server.precision_args:
            raise ConfigError(f"backend=server has no server.precision_args entry for precision {precision!r}. "
                              f"Valid choices: {', '.join(self.server.precision_args)}.")
        self.device = self._device(device)
        self.resolved = ("bf16" if self.device == "cuda" else "fp32") if precision == "baseline" else precision
        self.model_dir = model_dir(model, cache_dir)
        self.port = int(self.server.port) or free_port(self.server.host)
        served = (self.server.served_model or "{model_dir}").format(model_dir=self.model_dir)
        fields = {"python": sys.executable, "model_dir": self.model_dir, "served_model": served,
                  "host": self.server.host, "port": self.port, "device": self.device,
                  "baseline_dtype": "bfloat16" if self.device == "cuda" else "float32"}
        try:
            self.command = [str(a).format(**fields) for a in
                            [*self.server.command, *self.server.precision_args[precision]]]
        except (KeyError, IndexError) as e:
            raise ConfigError(f"server.command or server.precision_args has an unknown placeholder {e}; valid: "
                              f"{', '.join('{' + k + '}' for k in fields)}.") from e
        base_url = f"http://{self.server.host}:{self.port}/v1"
        self.client = OpenAIBackend(with_base_url(self.api, base_url, self.server.endpoint), send_key=False)
        view = dataclasses.replace(model, api_model=served, provider=None, api_params={},
                                   api_max_output_tokens=None, api_endpoint=self.server.endpoint)
        self.client.load(view, "real", precision, device, cache_dir, seed)  # builds the client; no request
        self.log_path = Path(cache_dir) / "server-logs" / f"{model.name}-{precision}-{self.port}.log"

    def load(self, model: Any, weights: str, precision: str, device: str, cache_dir: str, seed: int) -> LoadInfo:
        """The measured startup: launch, then wait until the server answers."""
        if self.client is None or self.log_path is None:
            raise BackendError("load() before prepare()")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (held by the server process until unload)
        t0 = time.monotonic()
        try:
            self.proc = subprocess.Popen(self.command, stdin=subprocess.DEVNULL, stdout=self._log,
                                         stderr=subprocess.STDOUT, env=self._env(), start_new_session=True,
                                         preexec_fn=_die_with_parent)
        except OSError as e:
            raise BackendError(f"Cannot start the server {self.command[0]!r}: {e}. Check server.command.") from e
        ready_s = self._wait_ready(t0)
        return LoadInfo(precision=self.resolved, device=self.device, params_b=getattr(model, "params_b", None), details={
            "server_command": " ".join(self.command), "server_pid": self.proc.pid, "server_port": self.port,
            "server_startup_s": ready_s, "server_log": str(self.log_path), "model_dir": self.model_dir,
            "endpoint": self.server.endpoint,
        })

    def unload(self) -> None:
        """The measured shutdown: SIGTERM to the server's process group until it has exited."""
        if self.client is not None:
            self.client.unload()
        forced, code, t0 = False, None, time.monotonic()
        if self.proc is not None:
            self._signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=self.server.shutdown_timeout_s)
            except subprocess.TimeoutExpired:
                forced = True
                self._signal(signal.SIGKILL)
                code = self.proc.wait(timeout=30)
        self.unload_extras = {"server_shutdown_s": time.monotonic() - t0, "server_shutdown_forced": forced,
                              "server_exit_code": code}
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- generation: the client's --------------------------------------------------------------
    def prompts(self, texts: list[str], *, prompt_tokens: int | None = None, chat_template: str = "auto",
                seed: int = 0) -> Prompts:
        return api_prompts(texts, endpoint=self.server.endpoint, backend=self.name, setting="server.endpoint",
                           prompt_tokens=prompt_tokens, chat_template=chat_template)

    def concurrent_feed(self, batch_size: int) -> str | None:
        """A trial's requests all go to one generate call, batch_size of them in flight at once."""
        return None

    def generate(self, prompts: list[str], max_new_tokens: int, ignore_eos: bool,
                 concurrency: int | None = None) -> Generation:
        if self.client is None or self.proc is None:
            raise BackendError("generate() before load()")
        if self.proc.poll() is not None:
            raise BackendError(f"the server exited (code {self.proc.returncode}); see {self.log_path}")
        try:
            gen = self.client.generate(prompts, max_new_tokens, ignore_eos, concurrency)
        except TrialFailed as e:  # the client saw a status or a dropped connection: the log says why
            why = self._log_error()
            raise TrialFailed(f"{e}; the server's log ({self.log_path}) ends with: {why}" if why else str(e),
                              e.status) from e
        gen.extras.update(cost_reason="a local server: no API price")
        return gen

    def _log_error(self) -> str | None:
        """The last exception line of the server's log (an error inside a streamed response
        reaches the client as a 500 or, once streaming began, as a dropped connection)."""
        _, tail = self._log_tail(200)
        lines = [x for x in tail.splitlines() if RE_ERROR.match(x)]
        return lines[-1].strip()[:500] if lines else None

    def decode(self, gen: Generation) -> list[str | None]:
        return self.client.decode(gen) if self.client is not None else [None] * len(gen.lengths)

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _device(device: str) -> str:
        if device in ("cpu", "cuda"):
            return device
        from energyray.env import visible_gpu_uuid

        return "cuda" if visible_gpu_uuid() else "cpu"

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != self.api.api_key_env}
        hf_home = Path(self.server.hf_home or env.get("HF_HOME") or "~/.cache/huggingface").expanduser()
        (hf_home / "hub").mkdir(parents=True, exist_ok=True)
        env.update(HF_HOME=str(hf_home), HF_HUB_DISABLE_UPDATE_CHECK="1", PYTHONUNBUFFERED="1")
        env.update({str(k): str(v) for k, v in (self.server.env or {}).items()})
        return env

    def _wait_ready(self, t0: float) -> float:
        assert self.proc is not None
        url = f"http://{self.server.host}:{self.port}{self.server.ready_path}"
        deadline = t0 + self.server.startup_timeout_s
        while True:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                self.proc = None
                raise BackendError(f"The server exited during startup (code {tail[0]}): {' '.join(self.command)}\n"
                                   f"last lines of {self.log_path}:\n{tail[1]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as resp:
                    if resp.status == 200:
                        return time.monotonic() - t0
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self._kill()
                raise BackendError(f"The server did not answer {url} within server.startup_timeout_s="
                                   f"{self.server.startup_timeout_s:g} s; see {self.log_path}.")
            time.sleep(0.1)

    def _log_tail(self, lines: int = 15) -> tuple[int | None, str]:
        code = self.proc.returncode if self.proc is not None else None
        try:
            text = Path(str(self.log_path)).read_text(errors="replace").splitlines()[-lines:]
        except OSError:
            text = []
        return code, "\n".join(text)

    def _signal(self, sig: int) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)  # the whole group: servers spawn engine processes
        except ProcessLookupError:
            pass

    def _kill(self) -> None:
        """Last resort (startup timeout, interpreter exit): no server outlives its worker."""
        if self.proc is not None and self.proc.poll() is None:
            self._signal(signal.SIGKILL)
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=10)
