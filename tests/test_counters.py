"""Counters persisted in reserved blocks: rare writes, and never a value reused after a crash."""

from __future__ import annotations

import random

import pytest

from p1lora.common.counters import CounterExhaustedError, CounterState, FrameCounter


def test_first_use_reserves_a_block_before_the_value_is_used():
    counter = FrameCounter(None, block=1000)
    value, persist = counter.take()
    assert value == 0
    assert persist == CounterState(1000)
    for expected in range(1, 1000):
        value, persist = counter.take()
        assert value == expected
        assert persist is None  # no SD-card write inside the block
    value, persist = counter.take()
    assert value == 1000
    assert persist == CounterState(2000)


def test_restart_resumes_from_the_reservation():
    counter = FrameCounter(None, block=10)
    persisted = None
    for _ in range(25):
        _, new = counter.take()
        persisted = new or persisted
    assert persisted == CounterState(30)
    resumed = FrameCounter(persisted, block=10)
    value, persist = resumed.take()
    assert value == 30  # skips at most one block
    assert persist == CounterState(40)


def test_crash_at_any_point_never_reuses_a_value():
    rng = random.Random(4)
    used: set[int] = set()
    stored: CounterState | None = None
    for _ in range(200):  # 200 boots, each crashing after a random number of frames
        counter = FrameCounter(stored, block=7)
        for _ in range(rng.randrange(0, 20)):
            value, persist = counter.take()
            if persist is not None:
                stored = persist  # the runtime writes this before sending `value`
            assert value not in used
            assert stored is not None and value < stored.reserved_until
            used.add(value)


def test_state_dict_round_trip_and_damage():
    state = CounterState(12345)
    assert CounterState.from_dict(state.as_dict()) == state
    for bad in ({}, {"reserved_until": "12"}, {"reserved_until": True}, {"reserved_until": -1}):
        with pytest.raises(ValueError, match=r"reserved_until|range"):
            CounterState.from_dict(bad)


def test_exhaustion_is_an_error_not_a_wrap():
    counter = FrameCounter(CounterState(2**32 - 1), block=1000)
    value, persist = counter.take()
    assert value == 2**32 - 1
    assert persist == CounterState(2**32)
    with pytest.raises(CounterExhaustedError, match="new pre-shared key"):
        counter.take()


def test_block_must_be_positive():
    with pytest.raises(ValueError):
        FrameCounter(None, block=0)
