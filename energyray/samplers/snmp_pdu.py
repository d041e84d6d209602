"""A node's wall power from its PDU over SNMP: the only module that imports pysnmp.

The user says what each OID means (`sampler.pdu.oids`: OID, unit, scale; volts and power
factor where the PDU reports current): many PDUs report amps, not watts. The thesis seed read
APC's `rPDULoadStatusLoad` (tenths of amps) and called it watts; here a current is turned
into watts only with the volts and power factor the user gives, and the scope says the watts
are derived. A node's power is the sum of its OIDs (e.g. the two outlets of a dual-PSU server).

Polled power is integrated with the trapezoid rule (source ``pdu``). PDUs refresh their
readings about once a second, so the default period is 1 s. Where a cumulative energy meter
is configured (e.g. APC's `rPDU2DeviceStatusEnergy`, tenths of kWh) and the window's energy
is at least 100 of its steps, the meter's delta is the figure (source ``pdu_counter``). A read
that fails is a gap in the series, never a zero; readings further apart than `max_gap_s`
inside a window, or an agent that never answers, give no energy figure, with the reason.

Errors name the part that failed: SNMPv3 authentication, privacy, the user, its security level,
access to the OIDs, or no answer; those that a config change fixes stop the sampler at `start`.
An agent cannot decrypt a request under a wrong privacy password or protocol, so it does not
answer, like a dead agent: where the first read times out with privacy on, `start` asks again
without privacy, and an answer means privacy is what failed.

Secrets: SNMPv3 passwords come from the environment variables the config names, are held only
by the SNMP engine, and appear in no row, sample or `describe()`.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any

from energyray.errors import ConfigError, SamplerError
from energyray.samplers.base import PollingSampler, WindowReading, now_ns

# unit -> (factor to the base quantity, kind); kind decides what else is needed for watts
UNITS: dict[str, tuple[float, str]] = {
    "W": (1.0, "power"), "kW": (1e3, "power"),
    "A": (1.0, "current"), "dA": (0.1, "current"), "cA": (0.01, "current"), "mA": (1e-3, "current"),
    "VA": (1.0, "apparent"), "kVA": (1e3, "apparent"),
}
ENERGY_UNITS: dict[str, float] = {"J": 1.0, "Wh": 3600.0, "kWh": 3.6e6}
AUTH_PROTOCOLS = ("none", "MD5", "SHA", "SHA224", "SHA256", "SHA384", "SHA512")
PRIV_PROTOCOLS = ("none", "DES", "3DES", "AES", "AES192", "AES256")
# A counter delta is the window's figure only where it spans this many of the meter's steps
# (quantisation under 1 %); below that the polled power is integrated instead.
COUNTER_MIN_STEPS = 100
WATTS_OID_HINT = "or read a watts OID instead, e.g. APC rPDUIdentDevicePowerWatts 1.3.6.1.4.1.318.1.1.12.1.16.0"


@dataclass(frozen=True)
class PowerOid:
    """One configured reading and how its raw value becomes watts."""

    oid: str
    unit: str
    scale: float
    volts: float | None
    power_factor: float | None
    label: str

    @property
    def derived(self) -> bool:
        return UNITS[self.unit][1] != "power"

    def watts(self, raw: float) -> float:
        factor, kind = UNITS[self.unit]
        value = raw * self.scale * factor
        if kind == "current":
            return value * (self.volts or 0.0) * (self.power_factor or 0.0)
        if kind == "apparent":
            return value * (self.power_factor or 0.0)
        return value

    def formula(self) -> str:
        """How watts are computed, for the scope and describe()."""
        factor, kind = UNITS[self.unit]
        raw = "raw" if self.scale == 1 else f"raw*{self.scale:g}"
        if kind == "current":
            return f"{raw} {self.unit} -> A * {self.volts:g} V * pf {self.power_factor:g}"
        if kind == "apparent":
            return f"{raw} {self.unit} * pf {self.power_factor:g}"
        return f"{raw} {self.unit}"


@dataclass(frozen=True)
class EnergyCounterOid:
    oid: str
    unit: str
    scale: float

    @property
    def step_j(self) -> float:
        """The meter's resolution: one step of its raw value, in joules."""
        return self.scale * ENERGY_UNITS[self.unit]

    def joules(self, raw: float) -> float:
        return raw * self.step_j


def _field(cfg: Any, name: str, default: Any = None) -> Any:
    return cfg.get(name, default) if isinstance(cfg, dict) else getattr(cfg, name, default)


def _oid(text: Any, where: str) -> str:
    oid = str(text or "").strip().lstrip(".")
    parts = oid.split(".")
    if not oid or oid == "???" or not all(p.isdigit() for p in parts) or len(parts) < 2:
        raise ConfigError(f"{where}: {text!r} is not a numeric OID; write it like 1.3.6.1.4.1.318.1.1.12.1.16.0 "
                          "(MIB names are not resolved).")
    return oid


def power_oids(cfg: Any) -> list[PowerOid]:
    """The configured power OIDs, checked: each error names the fix."""
    oids = _field(cfg, "oids") or []
    if not oids:
        raise ConfigError("sampler.pdu.oids is empty: give at least one power OID with its unit, e.g. "
                          "`oids: [{oid: 1.3.6.1.4.1.318.1.1.12.1.16.0, unit: W}]` (see conf/sampler/pdu/apc-rpdu.yaml).")
    out = []
    for i, o in enumerate(oids):
        where = f"sampler.pdu.oids[{i}]"
        oid = _oid(_field(o, "oid"), where)
        unit = str(_field(o, "unit", "W"))
        if unit not in UNITS:
            raise ConfigError(f"{where}.unit={unit!r} is not one of: {', '.join(UNITS)} (dA: tenths of amps).")
        scale = float(_field(o, "scale", 1.0))
        if scale <= 0:
            raise ConfigError(f"{where}.scale={scale} must be positive (e.g. 0.1 for tenths).")
        volts, pf = _field(o, "volts"), _field(o, "power_factor")
        kind = UNITS[unit][1]
        if kind == "current" and (volts is None or pf is None):
            raise ConfigError(
                f"{where} ({oid}) reads current in {unit}, not watts: watts need the supply voltage and the "
                f"load's power factor. Set {where}.volts (e.g. 230) and {where}.power_factor (e.g. 0.95; read "
                f"them from the PDU or measure them), {WATTS_OID_HINT}.")
        if kind == "apparent" and pf is None:
            raise ConfigError(f"{where} ({oid}) reads apparent power in {unit}: set {where}.power_factor "
                              f"(e.g. 0.95) to get watts, {WATTS_OID_HINT}.")
        if kind == "power" and (volts is not None or pf is not None):
            raise ConfigError(f"{where} ({oid}) is already in {unit}: remove its volts/power_factor "
                              "(they apply to current and apparent-power units only).")
        if volts is not None and float(volts) <= 0:
            raise ConfigError(f"{where}.volts={volts} must be positive.")
        if pf is not None and not 0 < float(pf) <= 1:
            raise ConfigError(f"{where}.power_factor={pf} must be in (0, 1].")
        out.append(PowerOid(oid, unit, scale, None if volts is None else float(volts),
                            None if pf is None else float(pf), str(_field(o, "label", "") or "")))
    return out


def energy_counter(cfg: Any) -> EnergyCounterOid | None:
    c = _field(cfg, "energy_counter")
    if c is None:
        return None
    where = "sampler.pdu.energy_counter"
    unit = str(_field(c, "unit", "kWh"))
    if unit not in ENERGY_UNITS:
        raise ConfigError(f"{where}.unit={unit!r} is not one of: {', '.join(ENERGY_UNITS)}.")
    scale = float(_field(c, "scale", 1.0))
    if scale <= 0:
        raise ConfigError(f"{where}.scale={scale} must be positive (tenths of kWh: unit kWh, scale 0.1).")
    return EnergyCounterOid(_oid(_field(c, "oid"), where), unit, scale)


def _env(name: Any, what: str) -> str:
    if not name:
        raise ConfigError(f"sampler.pdu.{what}_env is not set: name the environment variable that holds the "
                          f"{what.replace('_', ' ')} (passwords are never written in the config).")
    value = os.environ.get(str(name))
    if not value:
        raise ConfigError(f"${name} (sampler.pdu.{what}_env) is empty or unset on this node: export it where "
                          f"the PDU is polled (for Ray: in the environment of `ray start` on that node).")
    return value


def check_config(cfg: Any) -> None:
    """Everything about a PDU config that can be checked without the network or the secrets.

    The driver can call this before a sweep starts; PduSampler calls it too.
    """
    host = _field(cfg, "host")
    if not host or host == "???":
        raise ConfigError("sampler.pdu.host is not set: give the PDU's address, e.g. sampler.pdu.host=10.0.0.5.")
    power_oids(cfg)
    energy_counter(cfg)
    version = str(_field(cfg, "version", "2c")).lower().lstrip("v")
    if version not in ("2c", "3"):
        raise ConfigError(f"sampler.pdu.version={_field(cfg, 'version')!r} is not one of: 2c, 3.")
    if version == "3":
        if not _field(cfg, "user"):
            raise ConfigError("sampler.pdu.version=3 needs sampler.pdu.user (the SNMPv3 user name).")
        auth, priv = str(_field(cfg, "auth_protocol", "SHA")), str(_field(cfg, "priv_protocol", "AES"))
        if auth not in AUTH_PROTOCOLS:
            raise ConfigError(f"sampler.pdu.auth_protocol={auth!r} is not one of: {', '.join(AUTH_PROTOCOLS)}.")
        if priv not in PRIV_PROTOCOLS:
            raise ConfigError(f"sampler.pdu.priv_protocol={priv!r} is not one of: {', '.join(PRIV_PROTOCOLS)}.")
        if auth == "none" and priv != "none":
            raise ConfigError("sampler.pdu.priv_protocol needs authentication: set auth_protocol too, or priv_protocol=none.")
        if auth != "none" and not _field(cfg, "auth_password_env"):
            raise ConfigError("sampler.pdu.auth_password_env is not set: name the environment variable that holds "
                              "the SNMPv3 auth password (passwords are never written in the config).")
        if priv != "none" and not _field(cfg, "priv_password_env"):
            raise ConfigError("sampler.pdu.priv_password_env is not set: name the environment variable that holds "
                              "the SNMPv3 privacy password.")
    for name in ("interval_s", "timeout_s", "max_gap_s"):
        if float(_field(cfg, name, 1.0)) <= 0:
            raise ConfigError(f"sampler.pdu.{name} must be positive.")


class _Refused(SamplerError):
    """The agent answered but refused us (v3 authentication, privacy, user, access): a config
    error, not a gap."""


class _NoAnswer(SamplerError):
    """The agent did not answer in time (or answered nothing pysnmp could read)."""


# pysnmp's error indications (class names) that say which part of an SNMPv3 login failed
_AUTH_ERRORS = ("WrongDigest", "AuthenticationError", "AuthenticationFailure", "UnsupportedAuthProtocol")
_PRIV_ERRORS = ("DecryptionError", "UnsupportedPrivProtocol")
_USER_ERRORS = ("UnknownUserName", "UnknownSecurityName")
_LEVEL_ERRORS = ("UnsupportedSecurityLevel",)
# what the agent answers in a response's error-status when the user or community may not read an OID
_ACCESS_STATUS = {6: "noAccess", 16: "authorizationError"}
_PYSNMP_TICK_S = 0.1  # pysnmp's transport dispatcher timer resolution (carrier/base.py)


class _Snmp:
    """pysnmp's asyncio API driven from plain threads: one event loop on its own thread."""

    def __init__(self, cfg: Any) -> None:
        self.host, self.port = str(_field(cfg, "host")), int(_field(cfg, "port", 161))
        self.timeout_s = float(_field(cfg, "timeout_s", 1.0))
        self.retries = int(_field(cfg, "retries", 0))
        self.version = str(_field(cfg, "version", "2c")).lower().lstrip("v")
        self.user = str(_field(cfg, "user")) if self.version == "3" else None
        self.auth_protocol = str(_field(cfg, "auth_protocol", "SHA")) if self.version == "3" else None
        self.priv_protocol = str(_field(cfg, "priv_protocol", "AES")) if self.version == "3" else None
        self._cfg = cfg
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pdu-snmp", daemon=True)
        self._thread.start()
        self._plain_auth: Any = None  # the same user without privacy, to tell a privacy failure apart
        try:
            self._engine, self._auth, self._target = self._call(self._setup(), 10.0 + self.timeout_s)
        except Exception:
            self.close()
            raise

    @property
    def where(self) -> str:
        return f"PDU {self.host}:{self.port}"

    @property
    def level(self) -> str:
        """The SNMPv3 security level asked for (noAuthNoPriv, authNoPriv, authPriv)."""
        if self.auth_protocol == "none":
            return "noAuthNoPriv"
        return "authNoPriv" if self.priv_protocol == "none" else "authPriv"

    @property
    def privacy(self) -> bool:
        return self.version == "3" and self.level == "authPriv"

    def _call(self, coro: Any, timeout_s: float) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout_s)

    async def _setup(self) -> tuple[Any, Any, Any]:
        from pysnmp.hlapi.v3arch import asyncio as hl

        cfg = self._cfg
        if self.version == "3":
            protos = {
                "none": hl.USM_AUTH_NONE, "MD5": hl.USM_AUTH_HMAC96_MD5, "SHA": hl.USM_AUTH_HMAC96_SHA,
                "SHA224": hl.USM_AUTH_HMAC128_SHA224, "SHA256": hl.USM_AUTH_HMAC192_SHA256,
                "SHA384": hl.USM_AUTH_HMAC256_SHA384, "SHA512": hl.USM_AUTH_HMAC384_SHA512,
            }
            privs = {
                "none": hl.USM_PRIV_NONE, "DES": hl.USM_PRIV_CBC56_DES, "3DES": hl.USM_PRIV_CBC168_3DES,
                "AES": hl.USM_PRIV_CFB128_AES, "AES192": hl.USM_PRIV_CFB192_AES, "AES256": hl.USM_PRIV_CFB256_AES,
            }
            auth_p, priv_p = str(self.auth_protocol), str(self.priv_protocol)
            auth_key = None if auth_p == "none" else _env(_field(cfg, "auth_password_env"), "auth_password")
            auth = hl.UsmUserData(
                str(self.user), authKey=auth_key,
                privKey=None if priv_p == "none" else _env(_field(cfg, "priv_password_env"), "priv_password"),
                authProtocol=protos[auth_p], privProtocol=privs[priv_p])
            if self.privacy:
                self._plain_auth = hl.UsmUserData(str(self.user), authKey=auth_key, authProtocol=protos[auth_p],
                                                  privProtocol=hl.USM_PRIV_NONE)
        else:
            env_name = _field(cfg, "community_env")
            community = _env(env_name, "community") if env_name else str(_field(cfg, "community", "public"))
            auth = hl.CommunityData(community, mpModel=1)
        engine = hl.SnmpEngine()
        # pysnmp counts a timeout in ticks of its timer (0.1 s) from the tick before the request: one tick
        # more keeps every try at least timeout_s (a 0.1 s timeout otherwise fails reads after 2 ms)
        target = await hl.UdpTransportTarget.create((self.host, self.port), timeout=self.timeout_s + _PYSNMP_TICK_S,
                                                    retries=self.retries)
        return engine, auth, target

    def _env_name(self, what: str) -> str:
        return f"${_field(self._cfg, f'{what}_password_env')}"

    def explain(self, kind: str, err: Any) -> tuple[type[SamplerError], str]:
        """An error indication of pysnmp's as (the error to raise: _Refused for a config error,
        _NoAnswer for silence; the message, naming the part that failed and what to check)."""
        where, v = self.where, self.version
        if v == "3" and kind in _AUTH_ERRORS:
            return _Refused, (f"SNMPv3 authentication failed at {where} ({kind}: {err}): the agent rejected the "
                          f"password's digest: check sampler.pdu.auth_protocol ({self.auth_protocol}) and the "
                          f"auth password in {self._env_name('auth')} (and sampler.pdu.user={self.user!r}).")
        if v == "3" and kind in _PRIV_ERRORS:
            return _Refused, (f"SNMPv3 privacy failed at {where} ({kind}: {err}): check sampler.pdu.priv_protocol "
                          f"({self.priv_protocol}) and the privacy password in {self._env_name('priv')}.")
        if v == "3" and kind in _USER_ERRORS:
            return _Refused, (f"SNMPv3: the agent at {where} has no user {self.user!r} ({kind}: {err}): check "
                          "sampler.pdu.user against the agent's SNMPv3 users.")
        if v == "3" and kind in _LEVEL_ERRORS:
            return _Refused, (f"SNMPv3: user {self.user!r} at {where} does not support security level {self.level} "
                          f"({kind}: {err}): the agent's user has no {'privacy' if self.privacy else 'authentication'} "
                          "key; set sampler.pdu.priv_protocol=none (or auth_protocol=none) to the user's level, "
                          "or give the user that key on the agent.")
        if v == "3" and kind == "NotInTimeWindow":
            return SamplerError, (f"SNMPv3: {where} says the request was outside its time window ({kind}: {err}): its "
                           "engine time or boots changed (an agent restart?); pysnmp resynchronises on the next "
                           "read. If it persists, two agents may share one engine ID.")
        if v == "3" and kind == "UnknownEngineID":
            return _Refused, (f"SNMPv3: engine ID discovery failed at {where} ({kind}: {err}): check that "
                          "host/port is the SNMPv3 agent.")
        hint = (" An agent ignores a wrong community without answering: check sampler.pdu.community."
                if v == "2c" else "")
        if self.privacy:
            hint = (f" With SNMPv3 privacy on ({self.priv_protocol}), a wrong privacy password or protocol looks "
                    "the same: the agent drops what it cannot decrypt without answering (check "
                    f"sampler.pdu.priv_protocol and {self._env_name('priv')}).")
        return _NoAnswer, (f"no answer from {where} within {self.timeout_s:g} s × {self.retries + 1} tries "
                       f"({kind}: {err}): is the agent up and the host/port right?{hint}")

    def _access(self, status: str, oid: Any) -> str:
        if self.version == "3":
            return (f"{self.where} refused user {self.user!r} at security level {self.level} access to {oid} "
                    f"({status}): the agent may require privacy for this user (set sampler.pdu.priv_protocol and "
                    "priv_password_env), or its view for the user does not include sampler.pdu.oids.")
        return (f"{self.where} refused the community access to {oid} ({status}): its view for that community "
                "does not include sampler.pdu.oids.")

    async def _get(self, oids: list[str]) -> list[float]:
        from pysnmp.hlapi.v3arch import asyncio as hl

        err, status, index, binds = await hl.get_cmd(
            self._engine, self._auth, self._target, hl.ContextData(), *[hl.ObjectType(hl.ObjectIdentity(o)) for o in oids])
        where = self.where
        if err:
            error, message = self.explain(type(err).__name__, err)
            raise error(message)
        if status:
            bad = binds[int(index) - 1][0] if index and int(index) <= len(binds) else ", ".join(oids)
            if int(status) in _ACCESS_STATUS:
                raise _Refused(self._access(_ACCESS_STATUS[int(status)], bad))
            raise SamplerError(f"{where} answered {status.prettyPrint()} for {bad}: check sampler.pdu.oids.")
        values = []
        for name, value in binds:
            if isinstance(value, (hl.NoSuchObject, hl.NoSuchInstance, hl.EndOfMibView)):
                raise SamplerError(f"{where} has no value at OID {name} ({value.prettyPrint()}): check sampler.pdu.oids "
                                   "(`snmpwalk` the PDU to see what it serves).")
            try:
                values.append(float(value))
            except (TypeError, ValueError):
                try:
                    values.append(float(value.prettyPrint()))
                except ValueError:
                    raise SamplerError(f"{where}: OID {name} holds {value.prettyPrint()!r}, not a number.") from None
        return values

    async def _answers_without_privacy(self, oid: str) -> bool:
        from pysnmp.hlapi.v3arch import asyncio as hl

        err, _, _, _ = await hl.get_cmd(self._engine, self._plain_auth, self._target, hl.ContextData(),
                                        hl.ObjectType(hl.ObjectIdentity(oid)))
        return not err  # a value, or an error-status (e.g. authorizationError): the agent answered

    def privacy_failed(self, oid: str) -> str | None:
        """After a timeout with privacy on: ask again, same user and password, without privacy.
        Where the agent answers that, it is up and the user authenticates, so the privacy
        password or protocol is what failed: the message saying so; else None."""
        if not self.privacy or self._plain_auth is None:
            return None
        try:
            answered = self._call(self._answers_without_privacy(oid), self.timeout_s * (self.retries + 1) + 5.0)
        except Exception:
            return None
        if not answered:
            return None
        return (f"SNMPv3 privacy failed at {self.where}: the agent answers user {self.user!r} without privacy "
                f"(authNoPriv) but not with it ({self.priv_protocol}): check sampler.pdu.priv_protocol and the "
                f"privacy password in {self._env_name('priv')}.")

    def get(self, oids: list[str]) -> list[float]:
        """Read numbers at `oids` in one GET; raises SamplerError saying what went wrong."""
        return list(self._call(self._get(oids), self.timeout_s * (self.retries + 1) + 5.0))

    async def _shutdown(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.close_dispatcher()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def close(self) -> None:
        if self._loop.is_running():
            try:
                self._call(self._shutdown(), 5.0)
            except Exception:
                pass
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=2)
        if not self._loop.is_running() and not self._loop.is_closed():
            self._loop.close()


class PduSampler(PollingSampler):
    """Wall power of one node from its PDU: the sum of the configured OIDs, in watts."""

    name = "pdu"
    scope = "wall"

    def __init__(self, cfg: Any, interval_s: float | None = None, keep_s: float = 3600.0) -> None:
        check_config(cfg)
        self._oids = power_oids(cfg)
        self._counter = energy_counter(cfg)
        super().__init__(interval_s=float(interval_s or _field(cfg, "interval_s", 1.0)), keep_s=keep_s)
        self.host, self.port = str(_field(cfg, "host")), int(_field(cfg, "port", 161))
        self.version = str(_field(cfg, "version", "2c")).lower().lstrip("v")
        self.max_gap_s = float(_field(cfg, "max_gap_s", 5.0))
        self.user = _field(cfg, "user") if self.version == "3" else None
        self._community_env = _field(cfg, "community_env")
        self._auth_env = _field(cfg, "auth_password_env") if self.version == "3" else None
        self._priv_env = _field(cfg, "priv_password_env") if self.version == "3" else None
        readings = "+".join(o.label or o.oid for o in self._oids)
        derived = [o for o in self._oids if o.derived]
        self.scope = f"wall:{self.host}:{readings}"
        if derived:
            self.scope += " (watts derived: " + "; ".join(f"{o.label or o.oid}={o.formula()}" for o in derived) + ")"
        self._failures: deque[tuple[int, str]] = deque(maxlen=10_000)  # (t_ns, error) of failed reads
        self._reads = 0
        self._answering = True  # did the last read succeed
        self._last_ok_ns = 0  # when a read last succeeded (now_ns)
        self._client = _Snmp(cfg)

    # -- PollingSampler's hooks ---------------------------------------------------------------
    def _read_sample(self) -> dict[str, Any]:
        oids = [o.oid for o in self._oids] + ([self._counter.oid] if self._counter else [])
        self._reads += 1
        try:
            values = self._client.get(oids)
        except Exception as e:
            self._failures.append((now_ns(), str(e) if isinstance(e, SamplerError) else f"{type(e).__name__}: {e}"))
            self._answering = False
            raise
        self._answering = True
        self._last_ok_ns = now_ns()
        power = sum(o.watts(v) for o, v in zip(self._oids, values, strict=False))
        energy = self._counter.joules(values[-1]) if self._counter else None
        return {"power_w": power, "energy_j": energy, "temperature_c": None, "sm_clock_mhz": None,
                "utilization_pct": None, "memory_used_mb": None}

    def _edge_poll(self) -> None:
        """A reading at a window's edge, unless the PDU is not answering: then the poll thread
        keeps trying, and the caller is not held up for a timeout at every edge. Where it answered
        within max_gap_s (one lost read, not a PDU down), the poll thread's next answer is awaited
        for up to max_gap_s, so a window is not left uncovered by one failed read at its end."""
        if self._answering:
            super()._edge_poll()
            return
        since = now_ns()
        while not self._stop.is_set() and now_ns() - self._last_ok_ns <= self.max_gap_s * 1e9:
            with self._lock:
                if self._series and self._series[-1]["t_ns"] >= since:
                    return
            time.sleep(min(0.01, self.interval_s / 4))

    def _window(self, t0: int, t1: int) -> list[dict[str, Any]]:
        """The series around [t0, t1]: one reading either side within max_gap_s (a gap in the
        PDU's answers is bridged by interpolation up to that long; longer gaps fail in end())."""
        margin = max(self.interval_s * 1.5, self.max_gap_s) * 1e9
        with self._lock:
            return [s for s in self._series if t0 - margin <= s["t_ns"] <= t1 + margin]

    # -- protocol ---------------------------------------------------------------------------
    def start(self) -> None:
        """First read, then the poll thread. A refused login raises (a config error, with the
        fix); an agent that does not answer does not: its windows get no energy, with the reason."""
        if self._thread is None:
            try:
                self._poll_once()
            except _Refused:
                self.close()
                raise
            except _NoAnswer as e:  # recorded in _failures; the poll thread keeps trying
                why = self._client.privacy_failed(self._oids[0].oid)
                if why is not None:
                    self.close()
                    raise _Refused(why) from e
            except SamplerError:
                pass
            self._thread = threading.Thread(target=self._run, name="pdu-poll", daemon=True)
            self._thread.start()

    def begin(self, label: str, at_ns: int | None = None) -> int:
        t = super().begin(label, at_ns)
        self._edge_poll()  # a reading at the window's start (and the meter's value there)
        return t

    def end(self, label: str, parts: dict[str, tuple[int, int]] | None = None,
            at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        reading = super().end(label, parts, at_ns, from_ns)
        t0, t1 = reading.start_ns, reading.end_ns
        reading.source = "pdu"
        for part in reading.parts.values():
            part["source"] = "pdu"
        failed = [(t, e) for t, e in list(self._failures) if t0 - self.max_gap_s * 1e9 <= t <= t1 + self.max_gap_s * 1e9]
        reading.extras["pdu_failed_reads"] = len(failed)
        series = sorted(s["t_ns"] for s in self._window(t0, t1) if s.get("power_w") is not None)
        around = [t for t in series if t <= t0][-1:] + [t for t in series if t0 < t < t1] + [t for t in series if t >= t1][:1]
        gap_s = max(((b - a) / 1e9 for a, b in zip(around, around[1:], strict=False)), default=None)
        reading.extras["pdu_max_gap_s"] = gap_s
        if reading.energy_j is not None and gap_s is not None and gap_s > self.max_gap_s:
            reading.energy_j, reading.avg_power_w = None, None
            reading.reason = (f"PDU readings {gap_s:.1f} s apart inside the window (more than sampler.pdu.max_gap_s="
                              f"{self.max_gap_s:g} s)" + (f"; last error: {failed[-1][1]}" if failed else ""))
        elif reading.energy_j is None and failed:
            reading.reason = f"{reading.reason}; the PDU failed {len(failed)} reads, last: {failed[-1][1]}"
        if reading.energy_j is None:
            for part in reading.parts.values():
                part.update(energy_j=None, reason=reading.reason)
        if self._counter is not None:
            self._use_counter(reading)
        return reading

    def _use_counter(self, reading: WindowReading) -> None:
        """The meter's delta between the readings at the window's edges, where it resolves it."""
        assert self._counter is not None
        t0, t1 = reading.start_ns, reading.end_ns
        known = [s for s in self._window(t0, t1) if s.get("energy_j") is not None]
        first = next((s for s in known if s["t_ns"] >= t0), None)
        last = next((s for s in known if s["t_ns"] >= t1), None)
        step_j = self._counter.step_j
        reading.extras["pdu_counter_step_j"] = step_j
        if first is None or last is None:
            reading.extras["pdu_counter_note"] = "energy meter not read at both edges of the window"
            return
        delta = last["energy_j"] - first["energy_j"]
        reading.extras["pdu_counter_j"] = delta if delta >= 0 else None
        if delta < 0:
            reading.extras["pdu_counter_note"] = "energy meter went backwards (reset): polled power used"
        elif delta >= COUNTER_MIN_STEPS * step_j:
            polled = reading.energy_j
            reading.extras["pdu_polled_j"] = polled
            reading.energy_j, reading.source, reading.reason = delta, "pdu_counter", None
            if reading.duration_s > 0:
                reading.avg_power_w = delta / reading.duration_s
            for part in reading.parts.values():  # parts keep the polled shape, scaled to the meter
                if part["energy_j"] is not None and polled:
                    part.update(energy_j=part["energy_j"] * delta / polled, source="pdu_counter_apportioned")
        else:
            reading.extras["pdu_counter_note"] = (
                f"meter delta {delta:.0f} J is under {COUNTER_MIN_STEPS} of its {step_j:.0f} J steps: polled power used")

    def describe(self) -> dict[str, Any]:
        if self.version == "3":
            auth = {"snmp_version": "3", "user": self.user, "auth_password": f"from ${self._auth_env}" if self._auth_env else None,
                    "priv_password": f"from ${self._priv_env}" if self._priv_env else None}
        else:
            auth = {"snmp_version": "2c",
                    "community": f"from ${self._community_env}" if self._community_env else "from the config"}
        return {
            **super().describe(), **auth, "host": self.host, "port": self.port,
            "oids": [{"oid": o.oid, "unit": o.unit, "scale": o.scale, "volts": o.volts,
                      "power_factor": o.power_factor, "label": o.label, "watts": o.formula()} for o in self._oids],
            "derived_watts": any(o.derived for o in self._oids),
            "energy_counter": None if self._counter is None else {
                "oid": self._counter.oid, "unit": self._counter.unit, "scale": self._counter.scale,
                "step_j": self._counter.step_j},
            "max_gap_s": self.max_gap_s, "reads": self._reads, "failed_reads": len(self._failures),
            "note": "PDUs refresh their readings about once a second; the node's whole draw, idle included",
        }

    def close(self) -> None:
        super().close()
        self._client.close()
