"""A real SNMP agent for tests: Debian's `snmpd` on loopback, serving values the test writes.

The agent answers GETs under APC's enterprise OID through a `pass_persist` script that prints
the number in `<values>/.<OID>.value` (no file: no such instance), for SNMPv2c (community
`public`), an SNMPv3 user with SHA/AES passwords (privacy required) and one with an SHA
password only. Used by test_snmp_pdu.py (the sampler alone) and test_node_samplers_ray.py
(through the orchestrator); `SKIP_NO_SNMPD` skips a module where snmpd is missing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from energyray.config import PduConfig, PduOidConfig
from energyray.errors import SamplerError
from energyray.samplers.snmp_pdu import PduSampler

SNMPD = shutil.which("snmpd") or ("/usr/sbin/snmpd" if os.path.exists("/usr/sbin/snmpd") else None)
SKIP_NO_SNMPD = pytest.mark.skipif(
    SNMPD is None, reason="needs Debian's snmpd for a real SNMP agent on loopback: `apt-get install snmpd` "
                          "(scripts/install.sh --dev does it where apt and root/sudo are available)")
pytest.importorskip("pysnmp", reason="needs pysnmp: pip install -e '.[pdu]'")

WATTS = "1.3.6.1.4.1.318.1.1.12.1.16.0"  # rPDUIdentDevicePowerWatts.0
LOAD_DA = "1.3.6.1.4.1.318.1.1.12.2.3.1.1.2.1"  # rPDULoadStatusLoad.1: tenths of amps
RPDU2_KW = "1.3.6.1.4.1.318.1.1.26.4.3.1.5.1"  # rPDU2DeviceStatusPower.1: hundredths of kW
ENERGY = "1.3.6.1.4.1.318.1.1.26.4.3.1.9.1"  # rPDU2DeviceStatusEnergy.1 (here in Wh, scale 1)
V3_USER, AUTH_PASS, PRIV_PASS = "energyray", "auth-secret-3141", "priv-secret-2718"
V3_AUTH_ONLY_USER = "energyray-authonly"  # a user with an auth password and no privacy one

# snmpd `pass_persist` handler: GET of .OID -> the number in {values}/.OID.value (no file: no such
# instance). Not `pass`: snmpd caches a `pass` script's answer, so a changed value is not seen.
PASS_SCRIPT = """#!/bin/sh
while read -r cmd; do
  case "$cmd" in
    PING) echo PONG ;;
    get) read -r oid; v=$(cat "{values}/$oid.value" 2>/dev/null)  # one read: no check-then-read race
         if [ -n "$v" ]; then echo "$oid"; echo gauge; echo "$v"; else echo NONE; fi ;;
    getnext) read -r oid; echo NONE ;;
    set) read -r oid; read -r value; echo not-writable ;;
    *) exit 0 ;;
  esac
done
"""


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    """A running snmpd and the directory of values it serves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.values = root / "values"
        self.values.mkdir()
        (root / "persist").mkdir()
        self.port = free_udp_port()
        script = root / "pass.sh"
        script.write_text(PASS_SCRIPT.format(values=self.values))
        self.conf = root / "snmpd.conf"
        self.conf.write_text(
            f"agentAddress udp:127.0.0.1:{self.port}\n"
            "rocommunity public 127.0.0.1\n"
            f"createUser {V3_USER} SHA {AUTH_PASS} AES {PRIV_PASS}\n"
            f"rouser {V3_USER} priv\n"
            f"createUser {V3_AUTH_ONLY_USER} SHA {AUTH_PASS}\n"
            f"rouser {V3_AUTH_ONLY_USER} auth\n"
            f"pass_persist .1.3.6.1.4.1.318 /bin/sh {script}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    def _file(self, oid: str) -> Path:
        return self.values / f".{oid.lstrip('.')}.value"  # snmpd passes the OID with a leading dot

    def set(self, oid: str, value: int) -> None:
        """Serve `value` at `oid` from now on (atomically: the agent never reads half a file)."""
        tmp = self.values / "tmp"
        tmp.write_text(f"{int(value)}\n")
        os.replace(tmp, self._file(oid))

    def drop(self, oid: str) -> None:
        self._file(oid).unlink(missing_ok=True)

    def start(self) -> None:
        env = {**os.environ, "SNMP_PERSISTENT_DIR": str(self.root / "persist"), "MIBS": ""}
        log = self.root / "snmpd.log"
        assert SNMPD is not None
        # -I -smux: no SMUX listener on the fixed port 199 (several agents may run at once)
        self.proc = subprocess.Popen([SNMPD, "-f", "-Lf", str(log), "-C", "-c", str(self.conf), "-I", "-smux",
                                      "-p", str(self.root / "snmpd.pid")], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            self._wait_ready(log)
        except Exception:
            self.stop()
            raise

    def _wait_ready(self, log: Path) -> None:
        assert self.proc is not None
        self.set(WATTS, 1)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:  # until it answers a v2c GET
            try:
                s = PduSampler(pdu(self, interval_s=1.0, timeout_s=0.2))
                try:
                    if s._read_sample()["power_w"] == 1.0:
                        return
                finally:
                    s.close()
            except SamplerError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"snmpd exited ({self.proc.returncode}): {log.read_text()[-2000:]}")
        raise RuntimeError(f"snmpd did not answer on 127.0.0.1:{self.port} within 15 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def pdu(agent: Agent, *oids: PduOidConfig, **kw) -> PduConfig:
    kw.setdefault("interval_s", 0.05)
    kw.setdefault("timeout_s", 0.5)
    return PduConfig(host="127.0.0.1", port=agent.port, oids=list(oids) or [PduOidConfig(oid=WATTS, unit="W")], **kw)
