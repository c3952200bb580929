"""The contention window of listen before talk (`service.listen_before_talk`)."""

from __future__ import annotations

import random

import pytest

from p1lora.service.listen_before_talk import (
    CW_MAX,
    CW_MIN,
    SLOT_SHARE,
    ContentionWindow,
    max_hold,
)


def _window(seed: int = 1) -> ContentionWindow:
    return ContentionWindow(random.Random(seed).randbytes)


def test_a_quiet_channel_costs_no_wait_and_the_smallest_window() -> None:
    window = _window()
    for _ in range(50):
        window.heard(busy=False)
    assert window.exponent() == CW_MIN
    assert window.first_wait(0.06, max_hold(0.03)) == 0.0


def test_the_window_grows_with_busy_detections_and_shrinks_when_the_channel_clears() -> None:
    window = _window()
    sizes = []
    for _ in range(8):
        window.heard(busy=True)
        sizes.append(window.exponent())
    assert sizes == sorted(sizes)
    assert sizes[-1] == CW_MAX
    window.heard(busy=False)
    assert window.busy_in_row == 0
    assert window.exponent() < CW_MAX
    assert window.stats.cads == 9 and window.stats.busy == 8


def test_a_backoff_waits_one_exchange_plus_at_most_the_window() -> None:
    window = _window()
    window.heard(busy=True)
    exchange = 0.06
    draws = [window.backoff(exchange) for _ in range(200)]
    top = exchange * (1 + (1 << window.exponent()) * SLOT_SHARE)
    assert all(exchange <= d <= top for d in draws)
    assert max(draws) - min(draws) > 0.5 * (top - exchange)  # spread, not lock-step


def test_a_busy_channel_spreads_the_first_cad_within_half_the_hold() -> None:
    window = _window()
    for _ in range(10):
        window.heard(busy=True)
    hold = max_hold(0.03)
    waits = [window.first_wait(0.06, hold) for _ in range(100)]
    assert all(0 <= w <= hold / 2 for w in waits)
    assert len(set(waits)) > 50


@pytest.mark.parametrize("airtime", [0.03, 1.5])
def test_a_held_frame_still_ends_inside_the_links_transmit_watchdog(airtime: float) -> None:
    # The link's watchdog fires 1 s + 1.5 airtimes after it asked for the frame.
    assert max_hold(airtime) + airtime < 1.0 + 1.5 * airtime
