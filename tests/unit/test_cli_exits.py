"""The driver's exits without Hydra or Ray: each kind of error becomes its exit status and a
short message (a traceback only with ENERGYRAY_DEBUG=1), and the last line of a run counts
what it stored and says what a rerun does."""

from __future__ import annotations

import pytest

from energyray import cli
from energyray.config import RunConfig, SweepConfig
from energyray.errors import ConfigError
from energyray.grid import expand
from energyray.plan import Plan

DEFAULTS = {"model": "tiny-llama", "backend": "transformers", "weights": "real", "precision": "baseline",
            "batch_size": 1, "task": "qa", "prompt_variant": "default", "hardware": "cpu", "max_new_tokens": None}


def _raise(e: BaseException):
    def body() -> int:
        raise e

    return body


@pytest.fixture(autouse=True)
def _no_debug(monkeypatch):
    monkeypatch.delenv("ENERGYRAY_DEBUG", raising=False)
    monkeypatch.delenv("HYDRA_FULL_ERROR", raising=False)


def test_an_energyray_error_is_one_line_and_exit_2(capsys):
    assert cli.guarded(_raise(ConfigError("device='gpu' is not one of: auto, cpu, cuda."))) == cli.EXIT_ERROR == 2
    err = capsys.readouterr().err
    assert err == "energyray: error: device='gpu' is not one of: auto, cpu, cuda.\n"


def test_a_bug_is_one_line_naming_the_debug_switch_and_exit_3(capsys):
    assert cli.guarded(_raise(KeyError("x\nmore"))) == cli.EXIT_BUG == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.splitlines()) == 2
    assert err.startswith("energyray: internal error: KeyError: 'x") and "ENERGYRAY_DEBUG=1" in err


@pytest.mark.parametrize("switch", ["ENERGYRAY_DEBUG", "HYDRA_FULL_ERROR"])
def test_the_debug_switch_adds_the_traceback_and_keeps_the_exit_status(capsys, monkeypatch, switch):
    monkeypatch.setenv(switch, "1")
    assert cli.guarded(_raise(ValueError("boom"))) == 3
    assert cli.guarded(_raise(ConfigError("bad"))) == 2
    err = capsys.readouterr().err
    assert err.count("Traceback") == 2 and "ValueError: boom" in err and "energyray: error: bad" in err


def test_ctrl_c_is_exit_130_with_the_callers_message(capsys):
    import signal

    before = signal.getsignal(signal.SIGINT)
    try:
        assert cli.guarded(_raise(KeyboardInterrupt()), lambda: "stored 3") == cli.EXIT_INTERRUPTED == 130
    finally:
        signal.signal(signal.SIGINT, before)
    assert capsys.readouterr().err == "stored 3\n"


def _tally(n: int = 4, skipped: int = 2) -> cli.Tally:
    specs = expand("smoke", {"batch_size": [1, 2]}, DEFAULTS, repeats=n // 2)
    plan = Plan(cfg=RunConfig(sweep=SweepConfig(name="smoke")), groups=[specs], models={}, skipped=skipped)
    return cli.Tally(plan=plan, store_path="outputs/store")


def _rows(tally: cli.Tally, *rows: tuple[str, bool | None]) -> cli.Tally:
    for status, retryable in rows:
        tally.add({"status": status, "retryable": retryable})
    return tally


def test_all_ok_exits_0_and_counts():
    t = _rows(_tally(), ("ok", None), ("ok", None))
    assert t.exit_code() == 0
    assert t.last_line() == "sweep smoke: 2 ok, 0 failed, 2 skipped; store outputs/store"


def test_a_failure_a_rerun_repeats_exits_1_and_promises_no_retry():
    t = _rows(_tally(), ("ok", None), ("failed", False))
    assert t.exit_code() == cli.EXIT_TRIALS_FAILED == 1
    line = t.last_line()
    assert line.startswith("sweep smoke: 1 ok, 1 failed, 2 skipped; store outputs/store; ")
    assert "fail again until their error (above) is fixed" in line and "retry" not in line


def test_a_failure_a_rerun_may_fix_says_the_same_command_retries_it():
    t = _rows(_tally(), ("failed", True), ("failed", True))
    assert t.exit_code() == 1
    line = t.last_line()
    assert "0 ok, 2 failed" in line and "rerun the same command to retry the 2 failed" in line
    assert "fail again" not in line


def test_mixed_failures_say_which_part_a_rerun_may_fix():
    line = _rows(_tally(), ("failed", True), ("failed", False)).last_line()
    assert "retry 1 of the 2 failed" in line and "the other 1 failed will fail again" in line


def test_oom_is_counted_apart_and_is_not_a_clean_exit():
    t = _rows(_tally(), ("ok", None), ("oom", None))
    assert t.exit_code() == 1
    assert t.last_line() == "sweep smoke: 1 ok, 0 failed, 1 oom, 2 skipped; store outputs/store"


def test_interrupted_says_what_is_stored_and_that_the_same_command_resumes():
    t = _rows(_tally(), ("ok", None), ("failed", True))
    text = t.interrupted()
    assert "This run stored 2 trial(s) (1 ok)" in text
    assert "has 3 of the 6 trials of sweep 'smoke' done" in text  # 2 skipped + 1 ok; the failed one reruns
    assert "The same command resumes" in text
    assert "before any trial" in cli.Tally().interrupted()
