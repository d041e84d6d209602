"""TrialRunner with node-level samplers (roles "wall" and "cpu"), on the tiny Llama, without Ray.

The wall source is a SharedNodeSampler over a real-time replay of a constant 300 W series (so
its energy over any window is 300 W × the window); the CPU source a node sampler whose
readings carry CPU/RAM/CO2 extras as CodeCarbon's do. The real PDU over SNMP goes through the
same runner in tests/integration/test_snmp_pdu.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from energyray.config import GenerationConfig, MeasurementConfig, ModelConfig
from energyray.grid import expand
from energyray.samplers.base import PollingSampler, WindowReading, now_ns
from energyray.samplers.node import SharedNodeSampler
from energyray.samplers.replay import ReplaySampler
from energyray.trial import TrialRunner
from energyray.trial.windows import Windows

WALL_W = 300.0
CPU_W = 40.0
DEVICE_W = 50.0


class CpuNode:
    """A node CPU sampler reporting CPU_W, 80 % CPU and 20 % RAM, like CodeCarbon's extras."""

    name = "codecarbon"

    def __init__(self) -> None:
        self.open: dict[str, int] = {}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        self.open[label] = at_ns if at_ns is not None else now_ns()
        return self.open[label]

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        t0, t1 = self.open.pop(label), at_ns if at_ns is not None else now_ns()
        t0 = t0 if from_ns is None else from_ns
        e = CPU_W * (t1 - t0) / 1e9
        return WindowReading(label=label, source="estimated", scope="cpu+ram", start_ns=t0, end_ns=t1, energy_j=e,
                             avg_power_w=CPU_W, extras={"cpu_energy_j": 0.8 * e, "ram_energy_j": 0.2 * e,
                                                        "co2_kg": 1e-7 * e, "carbon_intensity_g_per_kwh": 400.0})

    def latest(self) -> dict[str, Any]:
        return {}

    def describe(self) -> dict[str, Any]:
        return {"sampler": "codecarbon", "scope": "cpu+ram"}


class BrokenNode(CpuNode):
    def begin(self, label: str, at_ns: int | None = None) -> int:
        raise OSError("PDU unplugged")


class RealClockReplay(ReplaySampler):
    """A replay of a trace laid on real CLOCK_MONOTONIC times, its clock the real one."""

    def _tick(self) -> None:
        self.advance_to(max(self.clock_ns, now_ns()))


def wall_node() -> SharedNodeSampler:
    t0 = now_ns()
    trace = [{"t_ns": t0 + i * 5_000_000, "power_w": WALL_W, "energy_j": None} for i in range(24_000)]  # 200 Hz, 2 min
    inner = RealClockReplay(trace, has_counter=False, scope="wall:test")
    inner.start()
    return SharedNodeSampler(inner)


pytestmark = pytest.mark.usefixtures("no_bandwidth_probe")


@pytest.fixture(scope="module")
def model(tiny_model: ModelConfig) -> ModelConfig:
    return tiny_model


def run(model: ModelConfig, tmp_path, nodes: dict[str, Any]):
    (spec,) = expand("unit", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                      batch_size=1, task="qa", prompt_variant="default", hardware="cpu", max_new_tokens=24))
    runner = TrialRunner(None, GenerationConfig(ignore_eos=True, warmup_runs=1, warmup_new_tokens=2), str(tmp_path),
                         device="cpu", measurement=MeasurementConfig(idle_s=0.2, idle_settle_s=0.0, idle_settle_max_s=0.0),
                         node_samplers=nodes)
    runner.load(spec, model)
    return runner.run(spec, model, {}, last=True)


def test_wall_and_cpu_node_columns(model, tmp_path):
    result = run(model, tmp_path, {"wall": wall_node(), "cpu": SharedNodeSampler(CpuNode(), role="cpu")})
    row = result.row
    assert row["status"] == "ok", row["error"]
    assert row["wall_energy_source"] == "polled" and row["wall_energy_scope"] == "wall:test"
    assert row["wall_avg_power_w"] == pytest.approx(WALL_W, rel=1e-6)
    assert row["wall_energy_j"] == pytest.approx(row["wall_energy_node_j"]) and row["wall_energy_share"] == 1.0
    assert row["wall_idle_power_w"] == pytest.approx(WALL_W, rel=1e-6)  # measured in the runner's idle window
    assert row["wall_energy_idle_subtracted_j"] == pytest.approx(0.0, abs=1e-6)
    total = row["cpu_energy_total_j"]
    assert total == pytest.approx(CPU_W * row["wall_energy_j"] / WALL_W, rel=1e-3)  # the same window
    assert row["cpu_energy_j"] == pytest.approx(0.8 * total) and row["ram_energy_j"] == pytest.approx(0.2 * total)
    assert row["cpu_energy_source"] == "estimated" and row["co2_kg"] == pytest.approx(1e-7 * total)
    assert row["cpu_idle_power_w"] == pytest.approx(CPU_W)
    assert row["wall_window_s"] == row["cpu_window_s"] >= row["duration_s"]  # one window, around generate
    assert row["wall_energy_j"] == pytest.approx(WALL_W * row["wall_window_s"], rel=1e-6)
    for phase in ("idle", "load", "warmup", "response", "unload"):
        assert row[f"{phase}_wall_j"] > 0 and row[f"{phase}_cpu_j"] > 0, phase
        # each phase's node window is the phase as the runner timed it, no sampler call inside
        window = row[f"{phase}_wall_window_s"]
        assert window == row[f"{phase}_cpu_window_s"] and window >= row[f"{phase}_s"] - 1e-6, phase
        assert row[f"{phase}_wall_j"] == pytest.approx(WALL_W * window, rel=1e-6), phase
    assert row["response_wall_j"] < 1.0  # decoding a few ids: well under a millisecond at 300 W
    wall_samples = [s for s in result.samples if s["source"] == "replay"]  # the wall sampler's own name
    # (24 tokens: a trial window of tens of ms, so that the 200 Hz wall series has samples inside it)
    assert wall_samples and all(s["power_w"] == WALL_W for s in wall_samples)
    env = json.loads(row["env_json"])["node_samplers"]
    assert env["wall"]["shared_by_node"] is True and env["cpu"]["sampler"] == "codecarbon"


class SlowCalls(PollingSampler):
    """A device at a constant DEVICE_W whose begin and end calls take 100 ms each (NVML's counter
    read is ~4 ms, a Ray call ~1 ms): they must stay outside the window."""

    name = "slow"
    scope = "device"

    def _read_sample(self) -> dict[str, Any]:
        return {"power_w": DEVICE_W, "energy_j": None}

    def begin(self, label: str, at_ns: int | None = None) -> int:
        time.sleep(0.1)
        return super().begin(label, at_ns)

    def end(self, label: str, parts: Any = None, at_ns: int | None = None, from_ns: int | None = None) -> WindowReading:
        time.sleep(0.1)
        return super().end(label, parts, at_ns, from_ns)


@pytest.mark.parametrize("seconds", [0.0, 0.2])
def test_device_and_node_windows_share_the_workers_edges_with_no_sampler_call_inside(seconds):
    device = SlowCalls(interval_s=0.005)
    device.start()
    wall = wall_node()
    try:
        windows = Windows(device, {"wall": wall})
        err = windows.begin("response")
        if seconds:
            time.sleep(seconds)
        r = windows.end("response", err)
        (w,) = windows.node_readings("response").values()
    finally:
        device.close()
        wall.close()
    assert isinstance(r, WindowReading) and isinstance(w, WindowReading)
    assert (w.start_ns, w.end_ns) == (r.start_ns, r.end_ns)
    assert seconds <= r.duration_s < seconds + 0.1  # neither 100 ms call is inside
    assert r.energy_j == pytest.approx(DEVICE_W * r.duration_s, rel=1e-6)
    assert w.energy_j == pytest.approx(WALL_W * w.duration_s, rel=1e-6)
    if not seconds:
        assert w.energy_j < 1.0  # an empty phase: sub-joule at 300 W, though each call took 100 ms


def test_a_broken_node_sampler_gives_null_with_the_reason_not_a_failed_trial(model, tmp_path):
    row = run(model, tmp_path, {"wall": SharedNodeSampler(BrokenNode())}).row
    assert row["status"] == "ok"
    assert row["wall_energy_j"] is None and row["wall_energy_source"] == "not_measurable"
    assert "PDU unplugged" in row["wall_energy_reason"]
    assert row["load_wall_j"] is None


def test_without_node_samplers_the_row_has_no_node_columns(model, tmp_path):
    row = run(model, tmp_path, {}).row
    assert not [k for k in row if k.startswith(("wall_", "cpu_energy_")) or k.endswith(("_wall_j", "_cpu_j"))]
