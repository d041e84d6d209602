"""The record builder (energyray.trial.record) on its own: readings in, row fields out, no model."""

from __future__ import annotations

from energyray.errors import TrialFailed
from energyray.grid import expand
from energyray.samplers.base import WindowReading
from energyray.trial import record


def reading(energy_j: float | None = 10.0, **extras: object) -> WindowReading:
    return WindowReading(label="x", source="estimated", scope="cpu+ram", start_ns=0, end_ns=2_000_000_000,
                         energy_j=energy_j, avg_power_w=5.0, extras=dict(extras))


def spec():
    (s,) = expand("unit", {}, dict(model="tiny-llama", backend="transformers", weights="real", precision="baseline",
                                   batch_size=1, task="qa", prompt_variant="default", hardware="cpu",
                                   max_new_tokens=4))
    return s


def test_node_cpu_energy_j_is_the_cpu_package_alone_never_the_cpu_plus_ram_total():
    split = record.node_fields({"cpu": reading(cpu_energy_j=8.0, ram_energy_j=2.0, co2_kg=1e-6)})
    assert split["cpu_energy_total_j"] == 10.0 and split["cpu_energy_j"] == 8.0 and split["ram_energy_j"] == 2.0
    unsplit = record.node_fields({"cpu": reading()})  # a sampler that cannot split CPU from RAM
    assert unsplit["cpu_energy_total_j"] == 10.0 and unsplit["cpu_energy_j"] is None
    broken = record.node_fields({"cpu": "node sampler failed at window start: OSError: gone"})
    assert broken["cpu_energy_total_j"] is None and broken["cpu_energy_j"] is None
    assert broken["cpu_energy_source"] == "not_measurable" and "gone" in broken["cpu_energy_reason"]


def test_every_built_column_is_among_the_patterned_names():
    names = record.patterned_columns()
    for phase in record.PHASES:
        assert set(record.phase_fields(phase, reading())) <= names
        assert set(record.phase_fields(phase, "why")) <= names
        assert set(record.node_phase_fields(phase, {r: reading() for r in record.NODE_ROLES})) <= names
    full = record.node_fields({"wall": reading(), "cpu": reading(cpu_energy_j=1.0, ram_energy_j=1.0, co2_kg=0.0,
                                                                  carbon_intensity_g_per_kwh=400.0)})
    assert set(full) == {c for role in record.NODE_ROLES for c in record.node_columns(role)}
    assert "group_rule" not in names and "latency_s" not in names and "prefill_s" not in names


def test_failed_row_and_finish():
    s = spec()
    row = record.failed_row(s, "worker died 3 times", attempts=3)
    assert row["trial_id"] == s.trial_id and row["status"] == "failed" and row["attempts"] == 3
    assert row["energy_j"] is None and row["energy_source"] == "not_measurable"
    assert row["energy_reason"] == "trial did not run" and row["precision_requested"] == s.precision
    assert record.failed_row(s, "killed", "oom")["status"] == "oom"
    out = record.finish(row, attempts=1, group_trials=4, retried_errors=["a", "b"])
    assert out is row and row["attempts"] == 3  # what the row says already stands
    assert row["group_trials"] == 4 and row["retried_errors"] == "a\nb"
    assert "retried_errors" not in record.finish({}, attempts=1, group_trials=None)


def test_retryable_says_whether_a_rerun_may_fix_a_failed_row():
    s = spec()
    died = record.finish(record.failed_row(s, "worker died 3 times", retryable=True), attempts=3, group_trials=1)
    assert died["retryable"] is True
    bad = record.finish(record.failed_row(s, "load failed: no such path"), attempts=1, group_trials=1)
    assert bad["retryable"] is False  # not said: a rerun is not promised
    assert record.finish({"status": "ok"}, attempts=1, group_trials=1)["retryable"] is None
    assert record.finish(record.failed_row(s, "killed", "oom"), attempts=1, group_trials=1)["retryable"] is None
    assert record.error_fields(TrialFailed("429 after 4 retries", retryable=True))["retryable"] is True
    assert record.error_fields(ValueError("bad"))["retryable"] is False
