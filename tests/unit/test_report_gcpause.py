import gc

import pytest

from energyray.report.gcpause import paused


def test_the_collector_is_off_during_the_call_and_on_after_it_even_on_an_error():
    @paused
    def inside() -> bool:
        return gc.isenabled()

    @paused
    def boom() -> None:
        raise ValueError("x")

    assert gc.isenabled()
    assert inside() is False and gc.isenabled()
    with pytest.raises(ValueError):
        boom()
    assert gc.isenabled()


def test_a_collector_turned_off_by_the_caller_stays_off():
    gc.disable()
    try:
        assert paused(gc.isenabled)() is False
        assert not gc.isenabled()
    finally:
        gc.enable()
