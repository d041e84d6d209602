"""Starting or joining Ray, and what the cluster offers the sweep: how many worker slots per
hardware target and each slot's bundle. The only module that calls `ray.init`."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import ray

from energyray.errors import ClusterError, ConfigError
from energyray.plan import Plan


def _loopback_only() -> None:
    """Make a local Ray listen on 127.0.0.1 only. On Linux, Ray 2.60 replaces
    `_node_ip_address="127.0.0.1"` with the machine's routable address and binds its gRPC
    servers on all interfaces; with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 it runs as it does on
    macOS/Windows, single-node, every server on loopback (checked with `ss -ltnp`). Set here,
    not at import, so that a run joining a cluster (ray.address) is untouched; the variable
    reaches the processes ray.init starts."""
    from ray._private import ray_constants

    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False


# -- a private local Ray ---------------------------------------------------------------------

WATCHDOG = Path(__file__).with_name("watchdog.py")
STOP_WAIT_S = 10.0  # at exit: how long the driver waits for the watchdog to stop its Ray


class LocalRay:
    """This driver's own Ray: a fresh temp dir (its sessions, sockets and port files, apart
    from any other Ray on the machine) and a watchdog process that stops every process this
    Ray started when the driver exits by any path, SIGKILL included (watchdog.py)."""

    def __init__(self) -> None:
        # short: Ray's Unix socket paths (<dir>/session_<date>_<pid>/sockets/...) must fit ~107 chars
        base = "/tmp" if os.path.isdir("/tmp") and os.access("/tmp", os.W_OK) else None
        self.temp_dir = tempfile.mkdtemp(prefix="energyray-ray-", dir=base)
        self.watchdog: subprocess.Popen[bytes] | None = None
        if sys.platform.startswith("linux"):
            # its own session: a terminal's Ctrl-C or a kill of the driver's group leaves it to clean up
            self.watchdog = subprocess.Popen(
                [sys.executable, "-I", "-S", str(WATCHDOG), str(os.getpid()), self.temp_dir],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            assert self.watchdog.stdout is not None
            self.watchdog.stdout.readline()  # "watching": it knows the driver's children from before Ray
            self.watchdog.stdout.close()

    def tell(self, word: str) -> None:
        if self.watchdog is not None and self.watchdog.stdin is not None:
            try:
                self.watchdog.stdin.write(word.encode() + b"\n")
                self.watchdog.stdin.flush()
            except OSError:
                pass

    def close(self, keep: bool = False) -> None:
        """Stop this Ray: ray.shutdown, then the watchdog kills what is left and removes the
        temp dir (kept with `keep`, for the logs of a Ray that failed to start)."""
        ray.shutdown()
        if keep:
            self.tell("keep")
        if self.watchdog is None:
            if not keep:
                shutil.rmtree(self.temp_dir, ignore_errors=True)
            return
        if self.watchdog.stdin is not None:
            try:
                self.watchdog.stdin.close()
            except OSError:
                pass
        try:
            self.watchdog.wait(STOP_WAIT_S)
        except subprocess.TimeoutExpired:
            pass  # it goes on alone; the driver need not wait


_local: LocalRay | None = None


def _close_local() -> None:
    global _local
    if _local is not None:
        local, _local = _local, None
        local.close()


# registered after ray's own atexit shutdown (ray is imported above), so it runs first
atexit.register(_close_local)


def _ensure_auth_token() -> None:
    """A new local Ray turns on token authentication and, where ~/.ray/auth_token is missing,
    writes one; two drivers starting at once could each write their own and their processes
    read the other's. Create it once, atomically (a link fails where the file exists)."""
    if (
        os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled"
        or os.environ.get("RAY_AUTH_TOKEN")
        or os.environ.get("RAY_AUTH_TOKEN_PATH")
    ):
        return
    from ray._private.authentication.authentication_token_generator import (
        generate_new_authentication_token,
    )

    path = Path.home() / ".ray" / "auth_token"
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".auth_token.")
        with os.fdopen(fd, "w") as f:
            f.write(generate_new_authentication_token())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
    except OSError:
        pass  # Ray writes it itself


def start_local(cfg: Any) -> None:
    """Start this driver's own Ray, never joining one found through RAY_ADDRESS or Ray's
    current-cluster file (address="local"), on loopback only, in its own temp dir."""
    global _local
    _close_local()  # an earlier local Ray of this process (ray.shutdown was called since)
    # out of the environment while Ray starts: its processes (and their workers) inherit it
    foreign = os.environ.pop("RAY_ADDRESS", None)
    if foreign:
        print(
            f"energyray: RAY_ADDRESS={foreign} is ignored: ray.address is null, so this run starts its own "
            "Ray (ray.address=auto joins the cluster at RAY_ADDRESS)",
            file=sys.stderr,
            flush=True,
        )
    _local = LocalRay()
    # Ray starts workers at nice 15; a launch-bound decode loop on a contended CPU then runs
    # slower than in the user's own process. A user's own setting wins.
    os.environ.setdefault("RAY_worker_niceness", "0")
    try:
        _loopback_only()
        _ensure_auth_token()
        ray.init(
            address="local",
            num_cpus=cfg.ray.num_cpus,
            num_gpus=cfg.ray.num_gpus,
            _node_ip_address="127.0.0.1",
            _temp_dir=_local.temp_dir,
            include_dashboard=cfg.ray.include_dashboard,
            log_to_driver=cfg.ray.log_to_driver,
            configure_logging=False,
        )
    except Exception as e:
        local, _local = _local, None
        local.close(keep=True)
        raise ClusterError(
            f"The local Ray did not start: {_first_line(e)}. The machine may be busy: run the same command again "
            f"(RAY_gcs_server_port_wait_time_s=120 gives Ray's GCS longer to start); Ray's logs: {local.temp_dir}"
        ) from e
    finally:
        if foreign:
            os.environ["RAY_ADDRESS"] = foreign
    _local.tell("ready")


# -- joining a cluster on purpose ------------------------------------------------------------

TCP_PROBE_S = 5.0
GCS_PROBE_MS = 5000  # Ray's GCS client waits about three times this before giving up
CHECK = "Check that `ray start --head` runs there, on that port (--port, 6379 by default), with no firewall in between."


def _first_line(e: BaseException) -> str:
    return next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)


def resolve_address(address: str) -> tuple[str, str]:
    """The cluster `ray.address` names (HOST:PORT, or ray://...) and where it came from. `auto`
    takes RAY_ADDRESS, else the cluster `ray start` last wrote to Ray's current-cluster file;
    never a Ray found by scanning processes (that could be another driver's private one)."""
    if address != "auto":
        return address, "ray.address"
    env = os.environ.get("RAY_ADDRESS", "")
    if env and env != "auto":
        return env, "RAY_ADDRESS, ray.address=auto"
    from ray._common.utils import get_ray_address_file

    path = get_ray_address_file(None)
    try:
        with open(path) as f:
            found = f.read().strip()
    except OSError:
        found = ""
    if not found:
        raise ClusterError(
            f"ray.address=auto found no Ray cluster: RAY_ADDRESS is unset and {path} does not exist. "
            "Start one with `ray start --head`, or give ray.address=HOST:PORT."
        )
    return found, f"{path}, ray.address=auto"


def probe(address: str, source: str) -> str:
    """Check, within about 20 s, that a Ray cluster answers at `address` before ray.init (which
    retries an unreachable one for minutes); return the address ray.init is to use."""
    if address.startswith(("http://", "https://")):
        raise ClusterError(
            f"{address} ({source}) is a dashboard (job submission) address: ray.address needs the "
            "head's GCS address HOST:PORT (6379 by default), or ray.address=auto inside `ray job submit`."
        )
    client = "://" in address  # ray://HOST:PORT: Ray Client, no GCS to ask
    host, _, port = address.split("://", 1)[-1].rpartition(":")
    host = host.strip("[]")
    if not host or not port.isdigit():
        raise ClusterError(
            f"ray.address: {address!r} ({source}) is not an address. Give HOST:PORT (the head's GCS, "
            "e.g. 10.0.0.5:6379) or auto."
        )
    if not client:
        from ray._private.services import resolve_ip_for_localhost

        # what ray.init connects to: a loopback address becomes the node's
        host = resolve_ip_for_localhost(host)
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    where = (
        f"{address} ({source}"
        + ("" if target in address else f"; Ray connects to it as {target}")
        + ")"
    )
    try:
        socket.create_connection((host, int(port)), timeout=TCP_PROBE_S).close()
    except socket.gaierror as e:
        raise ClusterError(
            f"No Ray cluster at {where}: host {host!r} not found ({e.strerror}). "
            "Check the host name."
        ) from e
    except TimeoutError as e:
        raise ClusterError(
            f"No Ray cluster at {where}: no answer within {TCP_PROBE_S:g} s. {CHECK}"
        ) from e
    except OSError as e:
        raise ClusterError(f"No Ray cluster at {where}: {e.strerror or e}. {CHECK}") from e
    if client:
        return address
    from ray import _raylet
    from ray.exceptions import AuthenticationError

    # Ray's own GCS client, with a timeout (private API: where a Ray lacks it, the TCP probe only)
    standalone = getattr(getattr(_raylet, "InnerGcsClient", None), "standalone", None)
    if standalone is None:
        return target
    try:
        standalone(target, None, GCS_PROBE_MS)
    except AuthenticationError as e:
        raise ClusterError(
            f"The Ray cluster at {where} wants a token: set RAY_AUTH_MODE=token and give the "
            "head's token (RAY_AUTH_TOKEN, or ~/.ray/auth_token)."
        ) from e
    except Exception as e:
        raise ClusterError(
            f"Something listens at {where}, but no Ray GCS answers ({_first_line(e)}). "
            "Give the head's GCS port (`ray start --head --port`, 6379 by default), not the "
            "dashboard's (8265) or Ray Client's (10001)."
        ) from e
    return target


def join(cfg: Any) -> None:
    address, source = resolve_address(str(cfg.ray.address))
    if cfg.ray.address == "auto":
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        # what ray.init does for auto: use the token ~/.ray/auth_token holds, if any
        maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    target = probe(address, source)
    try:
        ray.init(
            address=target,
            include_dashboard=cfg.ray.include_dashboard,
            log_to_driver=cfg.ray.log_to_driver,
            configure_logging=False,
        )
    except Exception as e:
        cause = e.__cause__ or e
        raise ClusterError(
            f"Could not join the Ray cluster at {address} ({source}): {_first_line(cause)}. {CHECK}"
        ) from e


def init_ray(cfg: Any) -> dict[str, float]:
    """Start this driver's own local Ray (ray.address null: loopback only, no dashboard, its own
    temp dir, stopped at exit) or join `ray.address` (auto or HOST:PORT); return its resources."""
    if not ray.is_initialized():
        if cfg.ray.address and cfg.ray.address != "local":  # Ray's own word for a new local one
            join(cfg)
        else:
            start_local(cfg)
    return dict(ray.cluster_resources())


def slot_shape(cfg: Any, resources: dict[str, float]) -> tuple[int, dict[str, float]]:
    """Worker slots on any node (no hardware targeting), and each slot's bundle."""
    gpus = int(resources.get("GPU", 0))
    cpus = int(resources.get("CPU", 1))
    if cfg.device == "cuda" and gpus == 0:
        raise ConfigError(
            f"device=cuda, but the Ray cluster has no GPU (resources: {resources}). "
            "Use device=auto or device=cpu, or join a cluster with GPUs (ray.address=auto)."
        )
    if gpus and cfg.device != "cpu":
        return gpus, {"GPU": 1, "CPU": min(1, cpus / gpus)}
    n = max(1, min(cfg.ray.cpu_workers, cpus))
    return n, {"CPU": max(1, cpus // n)}


def pools(plan: Plan, resources: dict[str, float]) -> dict[str, tuple[int, dict[str, float]]]:
    """Per hardware target the trials name: how many slots, and each slot's bundle.

    A target whose node resource (`hw_<name>`) the cluster advertises gets one slot per unit,
    with that resource in its bundle, so Ray places its workers only on such nodes. The
    driver's own hardware without such a resource runs on any node (a local Ray). Anything
    else cannot run: say so before anything starts, with what the sweep needs and what the
    cluster has.
    """
    out: dict[str, tuple[int, dict[str, float]]] = {}
    missing = []
    for name in sorted({s.hardware for g in plan.groups for s in g}):
        hw = plan.hardware.get(name)
        resource = getattr(hw, "resource", None)
        if resource and resources.get(resource, 0) >= 1:
            gpu = getattr(hw, "gpu", None)
            if gpu and resources.get("GPU", 0) < 1:
                missing.append(f"{name}: nodes with {resource} but no GPU")
                continue
            bundle = {"GPU": 1.0, "CPU": 1.0} if gpu else {"CPU": 1.0}
            out[name] = (int(resources[resource]), {**bundle, resource: 1.0})
        elif name == plan.local_hardware:
            out[name] = slot_shape(plan.cfg, resources)
        else:
            missing.append(f"{name}: needs node resource {resource or 'hw_' + name!r}")
    if missing:
        have = {
            k: v
            for k, v in resources.items()
            if not k.startswith(("node:", "memory", "object_store"))
        }
        raise ConfigError(
            "The sweep asks for hardware this Ray cluster does not have: "
            + "; ".join(missing)
            + f". The cluster has {have}. Start such nodes with e.g. `ray start --address=HEAD:6379 "
            "--resources='{\"hw_h100\": 4}'` (see README, multi-node), or drop those hardware values."
        )
    return out


def check_cluster(plan: Plan) -> dict[str, tuple[int, dict[str, float]]]:
    """Start or join Ray and check that it can run every hardware target of the plan."""
    return pools(plan, init_ray(plan.cfg))
