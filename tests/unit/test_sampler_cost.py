"""The observer measured: each window's reading carries what the sampler's own process spent on
CPU and how many device-library calls it made, and the trial row turns them into
`sampler_cpu_s` and `sampler_device_calls_per_s`. NVML itself is faked (no GPU here); the
counting is NvmlSampler's own code."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any

import pytest

from energyray.backends.base import Generation
from energyray.grid import expand
from energyray.samplers import nvml
from energyray.samplers.base import PollingSampler, WindowReading
from energyray.trial import record
from energyray.trial.workload import Batches


def _burn(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


class Counted(PollingSampler):
    """Three library calls and 10 ms of CPU per poll, one call per counter read."""

    name = "counted"
    has_counter = True
    counts_device_calls = True
    counter_period_s = 0.0

    def _read_sample(self) -> dict[str, Any]:
        self.device_calls += 3
        _burn(0.01)
        return {"power_w": 50.0, "energy_j": None}

    def _read_counter_j(self) -> float | None:
        self.device_calls += 1
        return 100.0


class Uncounted(Counted):
    counts_device_calls = False


def test_a_window_reports_its_samplers_cpu_time_and_library_calls() -> None:
    s = Counted(interval_s=0.01)  # not started: only the window's own reads run, so the count is exact
    s.begin("t")
    reading = s.end("t")  # a counter read at each edge and one poll at the end: 1 + 1 + 3 calls
    assert reading.extras["sampler_device_calls"] == 5
    assert 0.009 <= reading.extras["sampler_cpu_s"] < 5.0  # the poll's 10 ms of CPU, on any machine
    assert "t" not in s._cost  # nothing kept once the window is closed


def test_calls_are_null_where_the_sampler_does_not_count_them() -> None:
    s = Uncounted(interval_s=0.01)
    s.begin("t")
    reading = s.end("t")
    assert reading.extras["sampler_device_calls"] is None
    assert reading.extras["sampler_cpu_s"] >= 0.009


def test_the_poll_thread_between_the_edges_is_counted() -> None:
    s = Counted(interval_s=0.01)
    s.start()
    try:
        s.begin("t")
        time.sleep(0.2)
        reading = s.end("t")
    finally:
        s.close()
    # edges (5 calls) plus the polls in between (3 each): at least a few on a loaded machine
    assert reading.extras["sampler_device_calls"] >= 5 + 3 * 2
    assert (reading.extras["sampler_device_calls"] - 2) % 3 == 0  # whole polls plus the two counter reads


class FakeNvml(SimpleNamespace):
    """The pynvml functions NvmlSampler calls, each counted as it is made."""

    def __init__(self) -> None:
        super().__init__(calls=0)

        class NVMLError(Exception):
            pass

        def counted(value: Any) -> Any:
            def fn(*args: Any) -> Any:
                self.calls += 1
                return value

            return fn

        field = SimpleNamespace(nvmlReturn=0, value=SimpleNamespace(uiVal=120_000))
        self.NVMLError = NVMLError
        self.NVML_SUCCESS = 0
        self.NVML_FI_DEV_POWER_INSTANT = 186
        self.NVML_TEMPERATURE_GPU = 0
        self.NVML_CLOCK_SM = 1
        self.nvmlInit = lambda: None
        self.nvmlDeviceGetHandleByIndex = lambda i: "h"
        self.nvmlDeviceGetTotalEnergyConsumption = counted(5_000_000)
        self.nvmlDeviceGetFieldValues = counted([field])
        self.nvmlDeviceGetPowerUsage = counted(120_000)
        self.nvmlDeviceGetUtilizationRates = counted(SimpleNamespace(gpu=90))
        self.nvmlDeviceGetMemoryInfo = counted(SimpleNamespace(used=2**30, total=2**34))
        self.nvmlDeviceGetTemperature = counted(40)
        self.nvmlDeviceGetClockInfo = counted(1980)


def test_nvml_sampler_counts_every_nvml_call(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml()
    monkeypatch.setattr(nvml, "pynvml", fake)
    monkeypatch.setattr(nvml, "_initialised", True)
    s = nvml.NvmlSampler(0)
    fake.calls = 0  # what the constructor's probing cost is not a window's
    s.begin("t")
    reading = s.end("t")
    # a counter read at each edge; the edge poll: instant power, utilisation, memory, the counter (once a
    # second), temperature, SM clock
    assert reading.extras["sampler_device_calls"] == fake.calls == 8


def _spec() -> Any:
    (s,) = expand("unit", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                   batch_size=1, task="qa", prompt_variant="default", hardware="cpu",
                                   max_new_tokens=4))
    return s


def test_the_trial_row_has_the_samplers_cost_per_second_of_its_window() -> None:
    gen = Generation(input_tokens=10, output_tokens=4, start_ns=0, end_ns=1_000_000_000, lengths=[4])
    reading = WindowReading(label="t", source="counter", scope="gpu", start_ns=0, end_ns=2_000_000_000,
                            energy_j=100.0, extras={"sampler_cpu_s": 0.03, "sampler_device_calls": 130})
    row = record.measured_fields(_spec(), Batches([gen], [[0]]), reading, 4, requests=1, words=None, correct=None,
                                 arch={}, bandwidth=(None, None), idle_power_w=None)
    assert row["sampler_cpu_s"] == 0.03
    assert row["sampler_device_calls_per_s"] == pytest.approx(65.0)
    unknown = WindowReading(label="t", source="counter", scope="gpu", start_ns=0, end_ns=2_000_000_000,
                            energy_j=100.0)  # a sampler that reports neither
    row = record.measured_fields(_spec(), Batches([gen], [[0]]), unknown, 4, requests=1, words=None, correct=None,
                                 arch={}, bandwidth=(None, None), idle_power_w=None)
    assert row["sampler_cpu_s"] is None and row["sampler_device_calls_per_s"] is None
