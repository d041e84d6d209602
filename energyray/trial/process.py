"""The trial process: a worker's trials run in a plain child process that the worker starts,
not in the Ray worker process itself (ray.trial_process=child, the default).

A launch-bound decode (a 1B model at batch 1) ran 4-6 % slower inside a Ray worker process
than in a plain process, with the same code, settings and CPU; in a plain child of the same
actor, with the environment Ray gave it, it ran as fast as a user's own process
(docs/measurement.md, "Parity"). So Ray schedules and the measured loop leaves Ray's process.

The child runs a TrialRunner whose samplers are relays: each call goes back over the socket
to the parent, which makes it on the real sampler (a Ray actor handle) and answers. Both
read the same CLOCK_MONOTONIC, so a window's edges stay the child's. Nothing here imports Ray.

The parent (`TrialProcess`) and the child (`main`) speak pickled tuples over a socketpair:
parent -> child ("init" | "call" | "get" | "set", args, kwargs) | ("quit",); child -> parent ("ready", info) | ("relay", target, method, args, kwargs) |
("ok", value) | ("err", exception, traceback text); a relay is answered ("ok" | "err", ...).
"""

from __future__ import annotations

import ctypes
import os
import pickle
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

# how long the parent waits for the child to start (torch's import, CUDA) before giving up
START_TIMEOUT_S = 600.0
PR_SET_PDEATHSIG = 1


class TrialProcessDied(RuntimeError):
    """The trial process exited while the worker waited on it (killed, crashed, out of memory)."""


def _portable(e: BaseException) -> BaseException:
    """`e` if it survives pickling (its type and attributes: status, retryable), else a
    RuntimeError that names its type and says what it was."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:
        return RuntimeError(f"{type(e).__name__}: {e}")


# -- the parent's side ------------------------------------------------------------------------

class TrialProcess:
    """Starts the child and stands in for its TrialRunner: `load`, `run`, `unload`,
    `unload_after`, `node_tag` and `sampler_info` as TrialRunner has them.

    Start it first (`__init__` returns at once: the child imports torch and starts CUDA while
    the worker binds its samplers), then `ready()` for the child's GPU, then `start(...)` with
    the samplers the child's relays call. `preload` is a backend name the child imports in a
    background thread as soon as it runs (ray.preload_backend)."""

    def __init__(self, device: str, cache_dir: str, bytecode_mode: str = "auto",
                 preload: str | None = None) -> None:
        mine, theirs = socket.socketpair()
        fd = theirs.fileno()
        cmd = [sys.executable, "-m", "energyray.trial.process", str(fd), str(os.getpid()),
               device, cache_dir, bytecode_mode, preload or ""]
        # stdout and stderr are the worker's (Ray's log files); the child is this actor's alone
        self.proc = subprocess.Popen(cmd, pass_fds=(fd,))
        theirs.close()
        self.pid = self.proc.pid
        self.conn = Connection(mine.detach())
        self.targets: dict[str, Any] = {}
        self._ready: dict[str, Any] | None = None
        self._node_tag: str | None = None

    def ready(self) -> dict[str, Any]:
        """The child's start: its pid, the GPU it sees (NVML's UUID, or None), its bytecode
        cache and how long its start took. Raises TrialProcessDied if it exited instead."""
        if self._ready is None:
            if not self.conn.poll(START_TIMEOUT_S):
                self.close()
                raise TrialProcessDied(f"the trial process did not start in {START_TIMEOUT_S:.0f} s")
            kind, info = self._recv()
            if kind != "ready":
                raise TrialProcessDied(f"the trial process sent {kind!r} before it was ready")
            self._ready = dict(info)
        return self._ready

    def start(self, sampler: Any, node_samplers: dict[str, Any], **runner_kwargs: Any) -> None:
        """Build the child's TrialRunner: `sampler` (or None) and `node_samplers` (role -> a
        node sampler) stay here and are called for the child; `runner_kwargs` go to it."""
        self.ready()
        self.targets = {"sampler": sampler, **{f"node:{role}": ns for role, ns in node_samplers.items()}}
        nodes = {role: {"name": ns.name, "info": ns.describe()} for role, ns in node_samplers.items()}
        self._call("init", sampler=None if sampler is None else sampler.describe(), node_samplers=nodes,
                   **runner_kwargs)

    # TrialRunner's surface, as the worker uses it
    def load(self, spec: Any, model: Any) -> dict[str, Any]:
        return dict(self._call("call", "load", spec, model))

    def run(self, spec: Any, model: Any, config: dict[str, Any], last: bool = False) -> Any:
        return self._call("call", "run", spec, model, config, last=last)

    def unload(self) -> Any:
        return self._call("call", "unload")

    def unload_after(self, result: Any) -> Any:
        return self._call("call", "unload_after", result)

    @property
    def node_tag(self) -> str:
        if self._node_tag is None:
            self._node_tag = str(self._call("get", "node_tag"))
        return self._node_tag

    @node_tag.setter
    def node_tag(self, tag: str) -> None:
        self._node_tag = tag
        self._call("set", "node_tag", tag)

    @property
    def sampler_info(self) -> dict[str, Any]:
        return dict(self._call("get", "sampler_info"))

    @sampler_info.setter
    def sampler_info(self, info: dict[str, Any]) -> None:
        self._call("set", "sampler_info", info)

    def close(self) -> None:
        """Ask the child to quit (it frees its model as it exits); kill it if it does not."""
        try:
            self.conn.send(("quit",))
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # the child this worker started, by its pid
            self.proc.wait()
        self.conn.close()

    # -- the wire -----------------------------------------------------------------------------
    def _recv(self) -> tuple[Any, ...]:
        try:
            msg: tuple[Any, ...] = self.conn.recv()
        except (EOFError, OSError):
            code = self.proc.wait()
            how = f"signal {-code}" if code < 0 else f"exit status {code}"
            raise TrialProcessDied(f"the trial process (pid {self.pid}) ended: {how}") from None
        return msg

    def _call(self, kind: str, *args: Any, **kwargs: Any) -> Any:
        """Send one request; serve the child's relays until its answer comes."""
        self.conn.send((kind, args, kwargs))
        while True:
            msg = self._recv()
            if msg[0] == "ok":
                return msg[1]
            if msg[0] == "err":
                e = msg[1]
                if hasattr(e, "add_note"):  # Python >= 3.11: the child's traceback travels with it
                    e.add_note(f"in the trial process (pid {self.pid}):\n{msg[2]}")
                raise e
            if msg[0] == "relay":
                _, target, method, a, k = msg
                try:
                    reply: tuple[Any, ...] = ("ok", getattr(self.targets[target], method)(*a, **k))
                except Exception as e:  # the child's caller handles it as it would the sampler's own
                    reply = ("err", _portable(e))
                self.conn.send(reply)
            else:
                raise TrialProcessDied(f"the trial process sent an unknown message {msg[0]!r}")


# -- the child's side -------------------------------------------------------------------------

class _Link:
    """The child's end: a relay sends its call and waits for the parent's answer."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def relay(self, target: str, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        self.conn.send(("relay", target, method, args, kwargs))
        kind, value = self.conn.recv()
        if kind == "err":
            raise value
        return value


class SamplerRelay:
    """The worker's device sampler (samplers.base.Sampler), as the child's runner calls it: each
    call is passed on as made; describe() is answered here, from what the parent sent."""

    def __init__(self, link: _Link, info: dict[str, Any]) -> None:
        self._link, self._info = link, info

    def begin(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.relay("sampler", "begin", args, kwargs)

    def end(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.relay("sampler", "end", args, kwargs)

    def latest(self) -> Any:
        return self._link.relay("sampler", "latest", (), {})

    def anchor(self, readings: list[Any]) -> list[Any]:
        return list(self._link.relay("sampler", "anchor", (readings,), {}))

    def recall(self, key: str) -> Any:
        return self._link.relay("sampler", "recall", (key,), {})

    def remember(self, key: str, value: Any) -> None:
        self._link.relay("sampler", "remember", (key, value), {})

    def describe(self) -> dict[str, Any]:
        return self._info


class NodeRelay:
    """One role of the node's samplers (samplers.node.NodeSampler), as the child's runner calls
    it. The parent's node sampler weighs windows by its own device sampler: `gpu` stays here."""

    def __init__(self, link: _Link, role: str, name: str, info: dict[str, Any]) -> None:
        self._link, self.role, self.name, self._info = link, role, name, info

    def begin(self, label: str, at_ns: int | None = None, gpu: Any = None, idle: bool = False) -> int:
        return int(self._link.relay(f"node:{self.role}", "begin", (label, at_ns), {"idle": idle}))

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> Any:
        return self._link.relay(f"node:{self.role}", "end", (label, parts, at_ns, from_ns), {})

    def latest(self) -> Any:
        return self._link.relay(f"node:{self.role}", "latest", (), {})

    def describe(self) -> dict[str, Any]:
        return self._info


def _die_with_parent(parent_pid: int) -> None:
    """Linux: the kernel kills this process when the worker that started it dies (ray.kill,
    a crash), so a model never outlives its worker. Elsewhere the closed socket ends it, once
    its current call returns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent_pid:  # the worker died before the call above
        os._exit(1)


def preload_backend(name: str | None) -> threading.Thread | None:
    """Import a backend's module (torch, transformers, ...: seconds) in a background thread, so
    that it overlaps the worker's start (CUDA, binding its sampler, the round trip to the
    driver) instead of following it. `TrialRunner.load` imports the same module: Python's
    import lock makes it wait for this import to finish, never import twice. An error here is
    ignored: load imports again and reports it in the group's rows."""
    if not name:
        return None
    from energyray.registry import BACKENDS, resolve

    def go() -> None:
        try:
            resolve("backend", BACKENDS, name)
        except BaseException:  # noqa: BLE001  (load raises it again, with the trial's context)
            pass

    thread = threading.Thread(target=go, name="energyray-preload", daemon=True)
    thread.start()
    return thread


def serve(conn: Connection, runner_factory: Any) -> None:
    """Answer the parent's requests until it says quit or goes away."""
    link = _Link(conn)
    runner: Any = None
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg[0] == "quit":
            return
        kind, args, kwargs = msg
        try:
            if kind == "init":
                sampler = kwargs.pop("sampler")
                nodes = kwargs.pop("node_samplers")
                runner = runner_factory(
                    None if sampler is None else SamplerRelay(link, sampler),
                    node_samplers={role: NodeRelay(link, role, n["name"], n["info"]) for role, n in nodes.items()},
                    **kwargs)
                value = None
            elif kind == "set":
                setattr(runner, args[0], args[1])
                value = None
            elif kind == "get":
                value = getattr(runner, args[0])
            else:
                value = getattr(runner, args[0])(*args[1:], **kwargs)
            reply: tuple[Any, ...] = ("ok", value)
        except Exception as e:
            reply = ("err", _portable(e), traceback.format_exc())
        conn.send(reply)


def main(argv: list[str]) -> None:
    fd, parent_pid, device, cache_dir, bytecode_mode, preload = argv
    t0 = time.monotonic()
    _die_with_parent(int(parent_pid))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver stops a sweep; this process ends with its worker
    from energyray import env

    bytecode = env.bytecode_cache(bytecode_mode, cache_dir)  # before torch and the backend
    if preload:
        preload_backend(preload)
    conn = Connection(int(fd))
    gpu_uuid = env.visible_gpu_uuid() if device != "cpu" else None  # imports torch, starts CUDA
    conn.send(("ready", {"pid": os.getpid(), "gpu_uuid": gpu_uuid, "bytecode": bytecode,
                         "start_s": time.monotonic() - t0}))
    from energyray.trial.runner import TrialRunner

    serve(conn, TrialRunner)


if __name__ == "__main__":
    main(sys.argv[1:])
