"""The sliding one-hour airtime budget refuses what would exceed 1 % or 10 %, with the right wait."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1lora.common.budget import AirtimeBudget
from p1lora.common.regions import get_region


@pytest.mark.parametrize(("fraction", "allowance"), [(0.01, 36.0), (0.10, 360.0)])
def test_sender_that_tries_to_exceed_is_refused_with_wait(fraction, allowance):
    budget = AirtimeBudget(fraction)
    now = 0.0
    frames = 0
    while budget.may_send(now, 1.0):
        budget.record(now, 1.0)
        now += 1.0
        frames += 1
    assert frames == allowance
    # The first frame (0..1 s) leaves the window at 3601 s: that is when one more may start.
    assert budget.wait_time(now, 1.0) == pytest.approx(3601.0 - now)
    assert not budget.may_send(3600.5, 1.0)
    assert budget.may_send(3601.0, 1.0)


def test_wait_for_a_larger_frame_frees_several():
    budget = AirtimeBudget(0.01)
    for i in range(36):
        budget.record(i * 10.0, 1.0)
    # Needs 3 s freed: the third frame (20..21 s) must have left the window.
    assert budget.wait_time(400.0, 3.0) == pytest.approx(21.0 + 3600.0 - 400.0)


def test_dwell_cap_and_impossible_frames():
    budget = AirtimeBudget.for_sub_band(get_region("US915").sub_band_for(915_000_000))
    assert budget.wait_time(0.0, 0.5) == math.inf
    assert budget.may_send(0.0, 0.3)
    budget.record(0.0, 0.3)
    assert budget.wait_time(0.1, 0.3) == pytest.approx(20.3 - 0.1)
    assert AirtimeBudget(0.01).wait_time(0.0, 37.0) == math.inf


def test_fraction_used_and_unlimited():
    budget = AirtimeBudget(0.1)
    budget.record(0.0, 36.0)
    assert budget.fraction_used(36.0) == pytest.approx(0.1)
    free = AirtimeBudget(1.0)
    free.record(0.0, 100.0)
    assert free.may_send(0.0, 100.0)
    assert free.fraction_used(10.0) == 0.0


def test_restore_counts_earlier_transmissions():
    first = AirtimeBudget(0.01)
    for i in range(30):
        first.record(i * 2.0, 1.0)
    second = AirtimeBudget(0.01)
    second.restore(first.transmissions(100.0))
    assert second.used(100.0) == pytest.approx(30.0)
    assert not second.may_send(100.0, 7.0)


@settings(max_examples=200, deadline=None)
@given(
    st.floats(0.01, 0.2),
    st.lists(st.tuples(st.floats(0.0, 50.0), st.floats(0.01, 3.0)), min_size=1, max_size=200),
)
def test_a_sender_that_obeys_never_exceeds_in_any_window(fraction, attempts):
    window = 600.0
    budget = AirtimeBudget(fraction, window_s=window)
    now = 0.0
    sent: list[tuple[float, float]] = []
    for gap, airtime in attempts:
        now += gap
        wait = budget.wait_time(now, airtime)
        if math.isinf(wait):
            continue
        now += wait
        budget.record(now, airtime)
        sent.append((now, airtime))
        now += airtime
    # Check every window that starts at a transmission's start.
    for start, _ in sent:
        inside = sum(a for s, a in sent if start <= s < start + window)
        assert inside <= fraction * window + 1e-6


def test_wait_time_lands_exactly_where_the_frame_has_left_the_window():
    # (start, airtime, now) triples where end + window - now rounds so that now + wait falls
    # one ulp short of the moment the frame leaves the window.
    for start, airtime, now in [
        (311.6997389732101, 0.4257140064837623, 1749.447761686327),
        (357.573254097544, 2.542729276452894, 843.454619438284),
        (377.28263192224665, 2.922414904219814, 1065.8547742674457),
    ]:
        budget = AirtimeBudget(airtime / 3600.0)
        budget.record(start, airtime)
        wait = budget.wait_time(now, airtime)
        assert budget.may_send(now + wait, airtime)
        assert budget.used(now + wait) == 0.0


def test_a_frame_that_starts_later_is_moved_to_its_real_start_and_must_still_fit():
    # 36 s an hour; 35 s counted at t=0, then a 1 s frame counted at t=100 and held.
    budget = AirtimeBudget(0.01)
    budget.record(0.0, 35.0)
    budget.record(100.0, 1.0)
    # Released at t=200: moved, one window of two frames, the held one counted from 200.
    assert budget.start_later(1.0, 200.0)
    assert [(t.start, t.airtime) for t in budget.transmissions(200.0)] == [
        (0.0, 35.0),
        (200.0, 1.0),
    ]
    assert budget.used(3600.0 + 200.5) == 1.0  # counted from its real start, not from 100
    # A held frame that no longer fits at its real start stays where it was counted.
    full = AirtimeBudget(0.01)
    full.record(0.0, 35.0)
    full.record(10.0, 1.0)
    full.record(3599.0, 1.0)
    # At 3634 the first frame is still in the window: 35 + 1 + 1 > 36 there.
    assert not full.start_later(1.0, 3634.0)
    assert full.transmissions(3634.0)[-1].start == 3599.0
