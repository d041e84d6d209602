"""The PDU sampler's configuration without a network: units to watts, and refusals that name the fix.

The sampler against a real SNMP agent is tested in tests/integration/test_snmp_pdu.py.
"""

from __future__ import annotations

import pytest

from energyray.config import PduConfig, PduCounterConfig, PduOidConfig, SamplerConfig
from energyray.errors import ConfigError
from energyray.samplers import make_node_samplers
from energyray.samplers.snmp_pdu import check_config, energy_counter, power_oids

APC_LOAD = "1.3.6.1.4.1.318.1.1.12.2.3.1.1.2.1"  # rPDULoadStatusLoad.1: tenths of amps
APC_WATTS = "1.3.6.1.4.1.318.1.1.12.1.16.0"  # rPDUIdentDevicePowerWatts.0


def cfg(*oids: PduOidConfig, **kw) -> PduConfig:
    return PduConfig(host="127.0.0.1", oids=list(oids), **kw)


@pytest.mark.parametrize(("oid", "raw", "watts"), [
    (PduOidConfig(oid=APC_WATTS, unit="W"), 250, 250.0),
    (PduOidConfig(oid=APC_LOAD, unit="dA", volts=230, power_factor=0.9), 52, 5.2 * 230 * 0.9),
    (PduOidConfig(oid=APC_LOAD, unit="A", scale=0.1, volts=230, power_factor=0.9), 52, 5.2 * 230 * 0.9),
    (PduOidConfig(oid="1.3.6.1.4.1.318.1.1.26.4.3.1.5.1", unit="kW", scale=0.01), 185, 1850.0),
    (PduOidConfig(oid="1.3.6.1.4.1.1", unit="kVA", power_factor=0.8), 2, 1600.0),
    (PduOidConfig(oid="1.3.6.1.4.1.1", unit="mA", volts=120, power_factor=1.0), 500, 60.0),
])
def test_units_to_watts(oid, raw, watts):
    (p,) = power_oids(cfg(oid))
    assert p.watts(raw) == pytest.approx(watts)
    assert p.derived == (oid.unit not in ("W", "kW"))


def test_thesis_oid_in_tenths_of_amps_without_volts_is_refused_with_the_fix():
    with pytest.raises(ConfigError) as e:
        check_config(cfg(PduOidConfig(oid=APC_LOAD, unit="dA")))
    msg = str(e.value)
    assert "not watts" in msg
    assert "sampler.pdu.oids[0].volts" in msg and "power_factor" in msg
    assert APC_WATTS in msg  # the alternative: a watts OID


@pytest.mark.parametrize(("oid", "match"), [
    (PduOidConfig(oid=APC_LOAD, unit="dA", volts=230), "power_factor"),
    (PduOidConfig(oid=APC_WATTS, unit="VA"), "power_factor"),
    (PduOidConfig(oid=APC_WATTS, unit="W", volts=230), "remove its volts"),
    (PduOidConfig(oid=APC_WATTS, unit="watts"), "not one of: W, kW"),
    (PduOidConfig(oid=APC_LOAD, unit="dA", volts=230, power_factor=1.5), r"in \(0, 1\]"),
    (PduOidConfig(oid="PowerNet-MIB::rPDULoadStatusLoad.1", unit="dA"), "not a numeric OID"),
    (PduOidConfig(oid=APC_WATTS, scale=0), "must be positive"),
])
def test_bad_oid_configs_are_refused(oid, match):
    with pytest.raises(ConfigError, match=match):
        check_config(cfg(oid))


def test_missing_host_and_empty_oids_are_refused():
    with pytest.raises(ConfigError, match="sampler.pdu.host"):
        check_config(PduConfig(oids=[PduOidConfig(oid=APC_WATTS)]))
    with pytest.raises(ConfigError, match="oids is empty"):
        check_config(PduConfig(host="10.0.0.5"))


def test_v3_needs_a_user_and_names_of_password_variables():
    watts = PduOidConfig(oid=APC_WATTS)
    with pytest.raises(ConfigError, match="sampler.pdu.user"):
        check_config(cfg(watts, version="3"))
    with pytest.raises(ConfigError, match="auth_password_env"):
        check_config(cfg(watts, version="3", user="u"))
    with pytest.raises(ConfigError, match="priv_password_env"):
        check_config(cfg(watts, version="3", user="u", auth_password_env="A"))
    check_config(cfg(watts, version="3", user="u", auth_protocol="none", priv_protocol="none"))
    with pytest.raises(ConfigError, match="auth_protocol='SHA1'"):
        check_config(cfg(watts, version="3", user="u", auth_protocol="SHA1"))


def test_energy_counter_steps():
    c = energy_counter(cfg(PduOidConfig(oid=APC_WATTS),
                           energy_counter=PduCounterConfig(oid="1.3.6.1.4.1.318.1.1.26.4.3.1.9.1", scale=0.1)))
    assert c is not None and c.step_j == pytest.approx(360_000.0)  # a tenth of a kWh
    with pytest.raises(ConfigError, match="not one of: J, Wh, kWh"):
        energy_counter(cfg(PduOidConfig(oid=APC_WATTS), energy_counter=PduCounterConfig(oid="1.3.6.1", unit="MWh")))


def test_no_pdu_and_no_node_cpu_give_no_node_samplers():
    assert make_node_samplers(SamplerConfig(), node="n1") == {}
    other_node = SamplerConfig(pdu=cfg(PduOidConfig(oid=APC_WATTS), node="n2"))
    assert make_node_samplers(other_node, node="n1") == {}  # that PDU reads another node
    with pytest.raises(ConfigError, match="node_cpu"):
        make_node_samplers(SamplerConfig(node_cpu="yes"), node="n1")


def test_pysnmp_is_imported_by_snmp_pdu_only_and_only_when_a_sampler_is_built():
    import re
    import subprocess
    import sys
    from pathlib import Path

    import energyray

    pkg = Path(energyray.__file__).parent
    importing = re.compile(r"^\s*(import|from) pysnmp\b", re.M)
    importers = sorted(p.relative_to(pkg).as_posix() for p in pkg.rglob("*.py") if importing.search(p.read_text()))
    assert importers == ["samplers/snmp_pdu.py"]
    code = ("import sys, energyray.samplers, energyray.samplers.snmp_pdu, energyray.samplers.node; "
            "print('pysnmp' in ' '.join(sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=pkg.parent)
    assert out.stdout.strip() == "False", out.stderr
