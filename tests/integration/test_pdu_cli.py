"""`sampler/pdu=...` through the CLI: the group composes, and a PDU config that cannot work is
refused before anything runs, with the fix (dry runs: Hydra and the checks only, no agent)."""

from __future__ import annotations


def test_apc_example_without_a_host_is_refused_with_the_fix(energyray):
    r = energyray("dry_run=true", "sampler/pdu=apc-rpdu")
    assert r.returncode == 2, r.explain()
    assert "sampler.pdu.host is not set" in r.stderr


def test_thesis_oid_in_tenths_of_amps_needs_volts_and_power_factor(energyray):
    r = energyray("dry_run=true", "sampler/pdu=apc-rpdu", "sampler.pdu.host=10.0.0.5",
                  "sampler.pdu.oids=[{oid: 1.3.6.1.4.1.318.1.1.12.2.3.1.1.2.1, unit: dA}]")
    assert r.returncode == 2, r.explain()
    assert "not watts" in r.stderr and "sampler.pdu.oids[0].volts" in r.stderr


def test_apc_example_with_a_host_composes(energyray):
    r = energyray("dry_run=true", "sampler/pdu=apc-rpdu", "sampler.pdu.host=10.0.0.5")
    assert r.returncode == 0, r.explain()
    assert "trials:" in r.stdout
