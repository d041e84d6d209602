"""PduSampler against a real SNMP agent: Debian's `snmpd` on loopback, serving values the test
writes (support/snmp_agent.py). So the sampler's whole path runs:
pysnmp over UDP, units to watts, the polled series, the trapezoid over a window, gaps, an
agent that is not there, a refused login, and a trial of the tiny model through TrialRunner.

Needs `snmpd` (apt-get install snmpd; `scripts/install.sh --dev` installs it where it can):
skipped with that reason where it is missing.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from dataclasses import asdict

import pytest
from support.overlap import assert_split_one_to_three, overlapping
from support.snmp_agent import (
    AUTH_PASS,
    ENERGY,
    LOAD_DA,
    PRIV_PASS,
    RPDU2_KW,
    SKIP_NO_SNMPD,
    V3_AUTH_ONLY_USER,
    V3_USER,
    WATTS,
    Agent,
    free_udp_port,
    pdu,
)

from energyray.config import (
    GenerationConfig,
    MeasurementConfig,
    ModelConfig,
    PduConfig,
    PduCounterConfig,
    PduOidConfig,
)
from energyray.errors import ConfigError, SamplerError
from energyray.samplers.base import PollingSampler, WindowReading, now_ns
from energyray.samplers.node import SharedNodeSampler
from energyray.samplers.snmp_pdu import PduSampler
from energyray.trial.windows import Windows

pytestmark = SKIP_NO_SNMPD


@pytest.fixture(scope="module")
def agent(tmp_path_factory):
    a = Agent(tmp_path_factory.mktemp("snmpd"))
    a.start()
    yield a
    a.stop()


@pytest.fixture
def sampler_of():
    """sampler_of(cfg) -> a started PduSampler, closed after the test."""
    made: list[PduSampler] = []

    def make(cfg: PduConfig) -> PduSampler:
        s = PduSampler(cfg)
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.close()


def window(s, seconds: float, label: str = "w", during=None):
    t0 = now_ns()
    s.begin(label, at_ns=t0)
    if during is not None:
        during()
    time.sleep(max(0.0, seconds - (now_ns() - t0) / 1e9))
    return s.end(label, at_ns=now_ns())


# -- readings and units -----------------------------------------------------------------------
def test_reads_a_watts_oid(agent, sampler_of):
    agent.set(WATTS, 250)
    s = sampler_of(pdu(agent))
    assert s.latest()["power_w"] == 250.0
    assert s.scope == f"wall:127.0.0.1:{WATTS}"
    assert s.describe()["derived_watts"] is False


def test_tenths_of_amps_become_watts_with_volts_and_power_factor(agent, sampler_of):
    agent.set(LOAD_DA, 52)  # 5.2 A
    s = sampler_of(pdu(agent, PduOidConfig(oid=LOAD_DA, unit="dA", volts=230, power_factor=0.9, label="phase 1")))
    assert s.latest()["power_w"] == pytest.approx(5.2 * 230 * 0.9)
    assert "watts derived" in s.scope and "230 V" in s.scope and "phase 1" in s.scope
    assert s.describe()["derived_watts"] is True


def test_scaled_oids_are_summed(agent, sampler_of):
    agent.set(RPDU2_KW, 185)  # 1.85 kW
    agent.set(WATTS, 100)
    s = sampler_of(pdu(agent, PduOidConfig(oid=RPDU2_KW, unit="kW", scale=0.01, label="rpdu2"),
                       PduOidConfig(oid=WATTS, unit="W", label="outlet")))
    assert s.latest()["power_w"] == pytest.approx(1950.0)
    assert s.scope == "wall:127.0.0.1:rpdu2+outlet"


def test_an_oid_the_agent_does_not_serve_is_a_gap_with_the_oid_named(agent, sampler_of):
    s = sampler_of(pdu(agent, PduOidConfig(oid="1.3.6.1.4.1.318.9.9.9.0", unit="W")))
    r = window(s, 0.3)
    assert r.energy_j is None
    assert "1.3.6.1.4.1.318.9.9.9.0" in r.reason and "check sampler.pdu.oids" in r.reason


# -- energy over windows --------------------------------------------------------------------
def test_constant_power_integrates_exactly(agent, sampler_of):
    agent.set(WATTS, 400)
    s = sampler_of(pdu(agent))
    r = window(s, 0.6)
    assert r.source == "pdu"
    assert r.energy_j == pytest.approx(400.0 * r.duration_s, rel=1e-9)
    assert r.avg_power_w == pytest.approx(400.0)
    assert len(r.samples) >= 5 and all(x["power_w"] == 400.0 for x in r.samples)


def test_trapezoid_energy_follows_a_change_of_power(agent, sampler_of):
    """100 W, then 300 W from a moment the test records: the integral is 100·a + 300·b, up to
    the polling: the change is seen one poll (plus a read) late or early at most."""
    agent.set(WATTS, 100)
    interval_s = 0.05
    s = sampler_of(pdu(agent, interval_s=interval_s))
    switch: list[int] = []

    def later() -> None:
        time.sleep(0.5)
        agent.set(WATTS, 300)
        switch.append(now_ns())

    r = window(s, 1.2, during=lambda: threading.Thread(target=later).start())
    ts = switch[0]
    expected = 100.0 * (ts - r.start_ns) / 1e9 + 300.0 * (r.end_ns - ts) / 1e9
    bound = 200.0 * (interval_s + 0.05)  # ΔP × (one poll + one read of the agent)
    assert r.energy_j is not None
    assert abs(r.energy_j - expected) <= bound, (r.energy_j, expected)
    # and the bound is tight enough to tell the change from either level alone
    assert abs(r.energy_j - 100.0 * r.duration_s) > 2 * bound
    assert abs(r.energy_j - 300.0 * r.duration_s) > 2 * bound


def test_a_short_gap_is_bridged_not_zero(agent, sampler_of):
    agent.set(WATTS, 200)
    s = sampler_of(pdu(agent, max_gap_s=1.0))

    def gap() -> None:
        time.sleep(0.2)
        agent.drop(WATTS)
        time.sleep(0.3)
        agent.set(WATTS, 200)

    r = window(s, 0.9, during=gap)
    assert r.extras["pdu_failed_reads"] >= 2
    assert 0.25 <= r.extras["pdu_max_gap_s"] <= 1.0
    assert r.energy_j == pytest.approx(200.0 * r.duration_s, rel=1e-9)  # interpolated over the gap


def test_a_gap_longer_than_max_gap_gives_no_figure(agent, sampler_of):
    agent.set(WATTS, 200)
    s = sampler_of(pdu(agent, max_gap_s=0.2))

    def gap() -> None:
        time.sleep(0.1)
        agent.drop(WATTS)
        time.sleep(0.5)
        agent.set(WATTS, 200)

    r = window(s, 0.9, during=gap)
    assert r.energy_j is None
    assert "max_gap_s=0.2" in r.reason and "no value at OID" in r.reason


def test_agent_that_never_answers_gives_null_energy_with_the_reason(sampler_of):
    cfg = PduConfig(host="127.0.0.1", port=free_udp_port(), oids=[PduOidConfig(oid=WATTS)],
                    interval_s=0.05, timeout_s=0.5)
    s = sampler_of(cfg)  # starting does not raise: the PDU may come back
    t = time.monotonic()
    s.begin("w")
    time.sleep(0.3)
    r = s.end("w")
    assert time.monotonic() - t < 0.3 + 0.4  # edges do not wait for a timeout of a silent agent
    assert r.energy_j is None and r.energy_j != 0
    assert "no answer from PDU 127.0.0.1" in r.reason
    assert s.describe()["failed_reads"] >= 1


def test_agent_stopping_mid_run_gives_null_with_reason_then_recovers(tmp_path, sampler_of):
    a = Agent(tmp_path)
    a.start()
    try:
        a.set(WATTS, 150)
        s = sampler_of(pdu(a, timeout_s=0.1, max_gap_s=0.3))
        r = window(s, 0.3)
        assert r.energy_j == pytest.approx(150.0 * r.duration_s, rel=1e-9)
        a.stop()
        r = window(s, 0.6)
        assert r.energy_j is None and "no answer" in r.reason
        a.start()
        a.set(WATTS, 150)
        deadline = time.monotonic() + 10  # the poll thread's own reads answer again (not at once on a loaded VM)
        while time.monotonic() < deadline:
            last = s.latest()
            if last and last["power_w"] == 150.0 and now_ns() - last["t_ns"] < 0.1e9:
                break
            time.sleep(0.02)
        r = window(s, 0.3)
        assert r.energy_j is not None and r.avg_power_w == pytest.approx(150.0)
    finally:
        a.stop()


def test_a_read_waits_its_whole_timeout_before_it_fails(agent):
    """pysnmp counts a timeout in 0.1 s ticks from the tick before the request: asked for 0.1 s
    as is, a read failed after 0-100 ms, so ~6 % of reads of an answering agent failed."""
    s = PduSampler(pdu(agent, timeout_s=0.1))
    assert agent.proc is not None
    os.kill(agent.proc.pid, signal.SIGSTOP)
    took = []
    try:
        for i in range(6):
            time.sleep(0.017 * i)  # start the reads at different points of pysnmp's tick
            t = time.monotonic()
            with pytest.raises(SamplerError, match="no answer"):
                s._read_sample()
            took.append(time.monotonic() - t)
    finally:
        os.kill(agent.proc.pid, signal.SIGCONT)
        s.close()
    assert min(took) >= 0.1 and max(took) < 0.6, took


def test_a_read_lost_at_a_windows_end_is_bridged_by_the_next_answer(agent, sampler_of):
    """snmpd paused (SIGSTOP, our own agent) across the window's end: the reads then fail, the
    next one after it resumes covers the end, inside max_gap_s: a figure, not a null."""
    agent.set(WATTS, 200)
    s = sampler_of(pdu(agent, timeout_s=0.1, max_gap_s=0.8))
    assert agent.proc is not None
    pause = threading.Timer(0.25, os.kill, (agent.proc.pid, signal.SIGSTOP))
    resume = threading.Timer(0.6, os.kill, (agent.proc.pid, signal.SIGCONT))
    try:
        pause.start()
        resume.start()
        r = window(s, 0.4)
    finally:
        pause.join()
        resume.join()
        os.kill(agent.proc.pid, signal.SIGCONT)
    assert r.extras["pdu_failed_reads"] >= 1
    assert r.energy_j == pytest.approx(200.0 * r.duration_s, rel=1e-9), r.reason
    assert r.extras["pdu_max_gap_s"] <= 0.8


# -- the energy meter ---------------------------------------------------------------------------
def counter_cfg(agent: Agent) -> PduConfig:
    return pdu(agent, energy_counter=PduCounterConfig(oid=ENERGY, unit="Wh", scale=1.0))


def test_energy_meter_is_the_figure_where_it_resolves_the_window(agent, sampler_of):
    agent.set(WATTS, 100)
    agent.set(ENERGY, 1000)
    s = sampler_of(counter_cfg(agent))
    r = window(s, 0.4, during=lambda: (time.sleep(0.2), agent.set(ENERGY, 1100)))
    assert r.source == "pdu_counter"
    assert r.energy_j == pytest.approx(100 * 3600.0)  # 100 Wh = 100 steps of 1 Wh
    assert r.extras["pdu_polled_j"] == pytest.approx(100.0 * r.duration_s, rel=1e-9)
    assert r.extras["pdu_counter_step_j"] == 3600.0


def test_energy_meter_too_coarse_for_the_window_falls_back_to_polled(agent, sampler_of):
    agent.set(WATTS, 100)
    agent.set(ENERGY, 2000)
    s = sampler_of(counter_cfg(agent))
    r = window(s, 0.4, during=lambda: (time.sleep(0.2), agent.set(ENERGY, 2005)))
    assert r.source == "pdu"
    assert r.energy_j == pytest.approx(100.0 * r.duration_s, rel=1e-9)
    assert r.extras["pdu_counter_j"] == pytest.approx(5 * 3600.0)
    assert "under 100" in r.extras["pdu_counter_note"]


def test_energy_meter_reset_falls_back_to_polled(agent, sampler_of):
    agent.set(WATTS, 100)
    agent.set(ENERGY, 5000)
    s = sampler_of(counter_cfg(agent))
    r = window(s, 0.4, during=lambda: (time.sleep(0.2), agent.set(ENERGY, 3)))
    assert r.source == "pdu" and r.energy_j == pytest.approx(100.0 * r.duration_s, rel=1e-9)
    assert "reset" in r.extras["pdu_counter_note"]


# -- SNMPv3 and secrets -------------------------------------------------------------------------
def v3(agent: Agent, **kw) -> PduConfig:
    return pdu(agent, version="3", user=V3_USER, auth_protocol="SHA", priv_protocol="AES",
               auth_password_env="TEST_PDU_AUTH", priv_password_env="TEST_PDU_PRIV", **kw)


def test_v3_reads_with_passwords_from_the_environment_and_never_shows_them(agent, sampler_of, monkeypatch):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    agent.set(WATTS, 321)
    s = sampler_of(v3(agent))
    assert s.latest()["power_w"] == 321.0
    r = window(s, 0.3)
    assert r.energy_j == pytest.approx(321.0 * r.duration_s, rel=1e-9)
    shown = json.dumps([s.describe(), asdict(r), repr(s)], default=str)
    assert AUTH_PASS not in shown and PRIV_PASS not in shown
    assert "from $TEST_PDU_AUTH" in shown


def test_v3_wrong_password_is_a_clear_error_at_start(agent, monkeypatch):
    monkeypatch.setenv("TEST_PDU_AUTH", "not-the-password")
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    s = PduSampler(v3(agent))
    with pytest.raises(SamplerError) as e:
        s.start()
    msg = str(e.value)
    assert "SNMPv3 authentication failed" in msg and f"127.0.0.1:{agent.port}" in msg
    assert "$TEST_PDU_AUTH" in msg  # where to fix it
    assert "not-the-password" not in msg


def _refusal(cfg: PduConfig) -> str:
    s = PduSampler(cfg)
    with pytest.raises(SamplerError) as e:
        s.start()
    return str(e.value)


def test_v3_wrong_privacy_password_says_privacy_not_is_the_agent_up(agent, monkeypatch):
    """snmpd drops a request it cannot decrypt without answering (pysnmp: RequestTimedOut, as for
    an agent that is down); asked again without privacy it answers, so privacy is what failed."""
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", "not-the-privacy-password")
    msg = _refusal(v3(agent, timeout_s=0.3))
    assert msg.startswith("SNMPv3 privacy failed at PDU 127.0.0.1") and "$TEST_PDU_PRIV" in msg
    assert "sampler.pdu.priv_protocol" in msg and "is the agent up" not in msg
    assert "not-the-privacy-password" not in msg


def test_v3_wrong_privacy_protocol_says_privacy(agent, monkeypatch):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    cfg = v3(agent, timeout_s=0.3)
    cfg.priv_protocol = "DES"  # the agent's user has AES
    assert _refusal(cfg).startswith("SNMPv3 privacy failed")


def test_v3_unknown_user_names_the_user(agent, monkeypatch):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    cfg = v3(agent)
    cfg.user = "nobody"
    msg = _refusal(cfg)
    assert "has no user 'nobody'" in msg and "UnknownUserName" in msg and "sampler.pdu.user" in msg


def test_v3_privacy_asked_of_a_user_without_it_names_the_security_level(agent, monkeypatch):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    cfg = v3(agent)
    cfg.user = V3_AUTH_ONLY_USER
    msg = _refusal(cfg)
    assert "does not support security level authPriv" in msg and "priv_protocol=none" in msg


def test_v3_without_privacy_where_the_agent_requires_it_says_so(agent, monkeypatch, sampler_of):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    cfg = v3(agent)
    cfg.priv_protocol, cfg.priv_password_env = "none", None
    msg = _refusal(cfg)  # the agent answers with an error status, not silence
    assert "authorizationError" in msg and "security level authNoPriv" in msg and "may require privacy" in msg
    cfg.user = V3_AUTH_ONLY_USER  # the user that has no privacy password reads without it
    agent.set(WATTS, 77)
    assert sampler_of(cfg).latest()["power_w"] == 77.0


def test_v3_agent_down_with_privacy_on_says_what_a_timeout_cannot_tell_apart(monkeypatch, sampler_of):
    monkeypatch.setenv("TEST_PDU_AUTH", AUTH_PASS)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    cfg = PduConfig(host="127.0.0.1", port=free_udp_port(), oids=[PduOidConfig(oid=WATTS)], interval_s=0.05,
                    timeout_s=0.2, version="3", user=V3_USER, auth_password_env="TEST_PDU_AUTH",
                    priv_password_env="TEST_PDU_PRIV")
    s = sampler_of(cfg)  # nothing answers, with or without privacy: not refused, a gap
    r = window(s, 0.3)
    assert r.energy_j is None
    assert "no answer from PDU 127.0.0.1" in r.reason and "is the agent up" in r.reason
    assert "a wrong privacy password or protocol looks the same" in r.reason and "$TEST_PDU_PRIV" in r.reason


def test_v3_password_variable_unset_is_refused_with_its_name(agent, monkeypatch):
    monkeypatch.delenv("TEST_PDU_AUTH", raising=False)
    monkeypatch.setenv("TEST_PDU_PRIV", PRIV_PASS)
    with pytest.raises(ConfigError, match=r"\$TEST_PDU_AUTH"):
        PduSampler(v3(agent))


# -- node windows on the worker's edges ------------------------------------------------------------
class ConstantDevice(PollingSampler):
    """A worker's device at a constant 100 W whose begin and end calls take 20 ms each, as a
    sampler in another process can (a Ray call, NVML's ~4 ms counter read)."""

    name = "constant-device"
    scope = "device"

    def _read_sample(self) -> dict:
        return {"power_w": 100.0, "energy_j": None}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        time.sleep(0.02)
        return super().begin(label, at_ns)

    def end(self, label: str, parts=None, at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        time.sleep(0.02)
        return super().end(label, parts, at_ns, from_ns)


def test_wall_windows_are_the_workers_windows_at_a_constant_250_w(agent):
    """Windows (the runner's) open the PDU's window and the device's on the same edges, with
    no sampler call inside: the wall figure is 250 W × the window, and an empty phase gets a
    few microseconds of it. Before, the PDU's window opened before the device's call and the
    ratio ran up to 2 on 10 ms windows."""
    agent.set(WATTS, 250)
    device, wall = ConstantDevice(interval_s=0.01), SharedNodeSampler(PduSampler(pdu(agent)))
    device.start()
    wall.start()
    windows = Windows(device, {"wall": wall})
    got = {}
    try:
        for label, seconds in (("empty", 0.0), ("short", 0.03), ("tenth", 0.1), ("long", 0.5)):
            err = windows.begin(label)
            if seconds:
                time.sleep(seconds)
            got[label] = (windows.end(label, err), windows.node_readings(label)["wall"])
    finally:
        device.close()
        wall.close()
    for label, (r, w) in got.items():
        assert isinstance(r, WindowReading) and isinstance(w, WindowReading), (label, r, w)
        assert (w.start_ns, w.end_ns) == (r.start_ns, r.end_ns), label
        assert w.source == "pdu" and w.energy_j / (250.0 * r.duration_s) == pytest.approx(1.0, abs=0.005), label
        assert w.energy_j == pytest.approx(250.0 * r.duration_s, rel=1e-6), label
    assert got["long"][0].duration_s >= 0.5
    assert got["empty"][1].energy_j < 1.0  # each 20 ms device call would have been 5 J


# -- shared by a node's workers -------------------------------------------------------------------
class _Gpu:
    """A worker's device as the node sampler sees it: a constant power."""

    def __init__(self, power_w: float) -> None:
        self.power_w = power_w

    def energy_between(self, t0_ns: int, t1_ns: int) -> float:
        return self.power_w * (t1_ns - t0_ns) / 1e9


def test_two_overlapping_trials_share_the_pdu_energy_by_gpu_share(agent):
    agent.set(WATTS, 600)
    shared = SharedNodeSampler(PduSampler(pdu(agent)))
    shared.start()
    try:
        t, a, b = overlapping(lambda at: shared.begin("w1:trial", at_ns=at, gpu=_Gpu(100.0)),
                              lambda at: shared.begin("w2:trial", at_ns=at, gpu=_Gpu(300.0)),
                              lambda at: shared.end("w1:trial", at_ns=at), lambda at: shared.end("w2:trial", at_ns=at))
    finally:
        shared.close()
    assert_split_one_to_three(600, t, a, b)
    assert a.extras["node_energy_j"] == pytest.approx(600 * (t[2] - t[0]) / 1e9, rel=1e-6)


# -- through TrialRunner on the tiny model ------------------------------------------------------------
def test_trial_runner_records_wall_energy_from_the_pdu(agent, tmp_path, monkeypatch):
    from energyray import roofline
    from energyray.backends.transformers import build_tiny_llama
    from energyray.grid import expand
    from energyray.trial import TrialRunner

    monkeypatch.setattr(roofline, "measure_copy_bandwidth_gbs", lambda: 20.0)
    agent.set(WATTS, 120)
    node = SharedNodeSampler(PduSampler(pdu(agent)))
    node.start()
    model = ModelConfig(name="tiny-llama", path=str(build_tiny_llama(tmp_path / "tiny")), params_b=0.0002)
    (spec,) = expand("pdu", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                     batch_size=1, task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=4))
    runner = TrialRunner(None, GenerationConfig(ignore_eos=True, warmup_runs=1, warmup_new_tokens=2), str(tmp_path),
                         device="cpu", node="test-node",
                         measurement=MeasurementConfig(idle_s=0.3, idle_settle_s=0.0, idle_settle_max_s=0.0),
                         node_samplers={"wall": node})
    try:
        runner.load(spec, model)
        result = runner.run(spec, model, {"note": "pdu"}, last=True)
    finally:
        node.close()
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert row["energy_j"] is None  # no device sampler here: only the node's figure
    assert row["wall_energy_j"] is not None and row["wall_energy_j"] > 0
    assert row["wall_energy_source"] == "pdu"
    assert row["wall_energy_scope"] == f"wall:127.0.0.1:{WATTS}"
    assert row["wall_avg_power_w"] == pytest.approx(120.0)
    assert row["wall_energy_share"] == 1.0 and row["wall_energy_attribution"].startswith("whole node")
    assert row["wall_idle_power_w"] == pytest.approx(120.0)  # from the runner's idle window
    assert row["wall_energy_idle_subtracted_j"] == pytest.approx(0.0, abs=1e-6)
    for phase in ("idle", "load", "warmup", "response", "unload"):
        assert row[f"{phase}_wall_j"] is not None and row[f"{phase}_wall_j"] > 0, phase
    # the samples polled inside the trial's window (those just outside its edges, used to
    # interpolate them, are not stored with it): none where the window is shorter than a poll
    pdu_samples = [s for s in result.samples if s["source"] == "pdu"]
    assert all(s["power_w"] == 120.0 and s["trial_id"] == spec.trial_id for s in pdu_samples)
    if row["wall_window_s"] > 2 * pdu(agent).interval_s:
        assert pdu_samples, row["wall_window_s"]
    assert {s["phase"] for s in pdu_samples} <= {"prefill", "decode", "generate", "trial_edge"}
    assert json.loads(row["env_json"])["node_samplers"]["wall"]["sampler"] == "pdu"


def test_trial_runner_wall_figures_cover_its_own_windows_at_a_constant_250_w(agent, tmp_path, monkeypatch):
    """A trial of the tiny model with a device sampler and the PDU: the row's wall window is its
    window_s, and every phase's wall figure is 250 W × its own window, response's under 1 J."""
    from energyray import roofline
    from energyray.backends.transformers import build_tiny_llama
    from energyray.grid import expand
    from energyray.trial import TrialRunner

    monkeypatch.setattr(roofline, "measure_copy_bandwidth_gbs", lambda: 20.0)
    agent.set(WATTS, 250)
    device, node = ConstantDevice(interval_s=0.01), SharedNodeSampler(PduSampler(pdu(agent)))
    device.start()
    node.start()
    model = ModelConfig(name="tiny-llama", path=str(build_tiny_llama(tmp_path / "tiny")), params_b=0.0002)
    (spec,) = expand("pdu", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                     batch_size=1, task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=8))
    runner = TrialRunner(device, GenerationConfig(ignore_eos=True, warmup_runs=1, warmup_new_tokens=2), str(tmp_path),
                         device="cpu", measurement=MeasurementConfig(idle_s=0.3, idle_settle_s=0.0, idle_settle_max_s=0.0),
                         node_samplers={"wall": node})
    try:
        runner.load(spec, model)
        row = runner.run(spec, model, {}, last=True).row
    finally:
        device.close()
        node.close()
    assert row["status"] == "ok", row["error"]
    assert row["wall_window_s"] == pytest.approx(row["window_s"], abs=1e-9) and row["window_s"] >= row["duration_s"]
    assert row["wall_energy_j"] / (250.0 * row["window_s"]) == pytest.approx(1.0, abs=0.005)
    assert row["energy_j"] == pytest.approx(100.0 * row["window_s"], rel=1e-6)  # the device: the same window
    for phase in ("idle", "load", "warmup", "response", "unload"):
        window = row[f"{phase}_wall_window_s"]
        assert window >= row[f"{phase}_s"] - 1e-6, phase  # it holds the phase, and no 20 ms sampler call
        assert row[f"{phase}_wall_j"] / (250.0 * window) == pytest.approx(1.0, abs=0.005), phase
    assert row["idle_wall_window_s"] >= 0.3
    if row["response_s"] < 1e-3:  # decoding 8 ids: ~0.2 ms
        assert row["response_wall_j"] < 1.0
