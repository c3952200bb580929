"""The crowded cadence (`link/slots.py`; docs/protocol.md "Sharing the air"): neighbours are
counted by network id, the period follows the crowd, the phase is kept while it works."""

from __future__ import annotations

import random

import pytest

from p1lora.common.link import LinkEvent, TxState
from p1lora.common.link.air import AirPolicy
from p1lora.common.link.slots import MAX_PERIOD_S, Neighbours, SendSlot
from p1lora.service.listen_before_talk import CW_MIN, SLOT_SHARE, ContentionWindow
from tests.helpers_link import Harness


def _rng(seed: int = 1) -> random.Random:
    return random.Random(seed)


def _slot(seed: int = 1) -> SendSlot:
    rng = _rng(seed)
    return SendSlot(AirPolicy(), rng.randbytes)


def test_a_network_counts_after_three_frames_within_the_memory() -> None:
    heard = Neighbours(memory_s=120.0)
    heard.heard(b"\x01\x02", 0.0)
    heard.heard(b"\x01\x02", 10.0)
    assert heard.count(10.0) == 0  # two frames: could be bit errors naming the same id
    heard.heard(b"\x01\x02", 20.0)
    assert heard.count(20.0) == 1
    heard.heard(b"\x09\x09", 21.0)  # another id, once: not a neighbour
    assert heard.count(21.0) == 1
    assert heard.count(119.9) == 1
    assert heard.count(120.0) == 0  # the three frames no longer fall within the memory
    heard.heard(b"\x01\x02", 125.0)
    assert heard.count(125.0) == 1  # a neighbour that keeps sending keeps counting
    assert heard.count(245.0) == 0  # silent for the whole memory: forgotten


def test_three_frames_spread_over_more_than_the_memory_do_not_count() -> None:
    heard = Neighbours(memory_s=120.0)
    for at in (0.0, 100.0, 200.0):
        heard.heard(b"\xaa\xbb", at)
    assert heard.count(200.0) == 0
    heard.heard(b"\xaa\xbb", 210.0)
    assert heard.count(210.0) == 1


@pytest.mark.parametrize(
    ("networks", "period"),
    [(1, 2.0), (2, 2.0), (10, 2.0), (11, 4.0), (20, 4.0), (21, 8.0), (40, 8.0), (200, 8.0)],
)
def test_the_period_doubles_with_each_doubling_of_the_crowd(networks: int, period: float) -> None:
    slot = _slot()
    slot.set_crowd(networks)
    assert slot.period_s == period
    assert slot.period_s <= MAX_PERIOD_S
    # Every period is a multiple of the smallest: neighbours that count differently still
    # repeat together.
    assert slot.period_s % AirPolicy().slot_period_s == 0
    assert slot.telegrams_per_frame() == int(period) + 1


def test_the_next_slot_repeats_at_the_phase_and_is_never_in_the_past() -> None:
    slot = _slot()
    first = slot.next_at(100.0)
    assert slot.phase is not None and 0 <= slot.phase < slot.period_s
    assert 100.0 <= first < 100.0 + slot.period_s
    assert slot.next_at(first) == pytest.approx(first)  # due now: now
    assert slot.next_at(first + 0.001) == pytest.approx(first + slot.period_s)
    # A send interval longer than the period is the period.
    assert slot.next_at(first + 0.001, interval_s=5.0) == pytest.approx(first + 5.0)


def test_an_acknowledged_frame_keeps_its_place_and_a_lost_one_draws_another() -> None:
    slot = _slot(seed=4)
    slot.next_at(0.0)
    slot.keep(aired_at=37.3)  # listen before talk moved it here, and it got through
    assert slot.next_at(38.0) == pytest.approx(39.3)
    assert slot.next_at(39.4) == pytest.approx(41.3)
    places = set()
    for _ in range(20):
        slot.redraw()
        assert slot.phase is not None and 0 <= slot.phase < slot.period_s
        places.add(round(slot.phase, 3))
    assert len(places) > 10  # drawn, not a fixed fallback


def test_a_slotted_frame_backs_off_within_the_smallest_window() -> None:
    exchange = 0.08
    crowded = ContentionWindow(_rng().randbytes)
    for _ in range(40):
        crowded.heard(True)  # a busy channel grows the window of unslotted frames
    waits = [crowded.backoff(exchange, slotted=True) for _ in range(200)]
    assert all(exchange <= w < exchange * (1 + (1 << CW_MIN) * SLOT_SHARE) for w in waits)
    grown = [crowded.backoff(exchange) for _ in range(200)]
    assert max(grown) > 3 * max(waits)


# ----------------------------------------------------------------- the transmitter, slotted


def _neighbour_frame(harness: Harness) -> bytes:
    """One of the receiver's frames, as another network's (its network id changed)."""
    frame = bytearray(harness.rx.sent[-1].payload)
    frame[1] ^= 0x5A
    return bytes(frame)


def _heard_neighbour_every(harness: Harness, seconds: float, until: float) -> None:
    frame = _neighbour_frame(harness)

    def again() -> None:
        if harness.clock.now() < until:
            harness.inject("tx", frame, rssi=-50.0, snr=9.0)
            harness.clock.call_at(harness.clock.now() + seconds, again)

    again()


@pytest.mark.parametrize("neighbours", [True, False], ids=["crowded", "alone"])
def test_slots_that_were_busy_throughout_are_not_counted_as_loss(neighbours: bool) -> None:
    """For 25 s listen before talk finds the channel busy at every frame (nothing goes on
    air). A crowded transmitter takes that for the channel, not the link: nothing counts
    toward a lost link or the tuner, and its next slot after the busy spell delivers what
    was read meanwhile (as much as a batch holds). A lone one (no neighbour heard, no slots)
    counts every frame as unanswered, as before."""
    harness = Harness(seed=3)
    harness.run_until_state(TxState.RUNNING.value, 60.0)
    harness.run_for(5.0)
    if neighbours:
        _heard_neighbour_every(harness, 5.0, until=harness.clock.now() + 200.0)
        harness.run_for(10.0)
        assert harness.tx_link._delivery.slotted(harness.clock.now())
    busy_from = harness.clock.now()
    busy_to = busy_from + 25.0
    harness.channel.tx_unaired = lambda t: busy_from <= t < busy_to
    harness.run_until(busy_to)
    assert harness.tx.unaired >= 8
    failures = harness.tx_link._consecutive_failures
    harness.run_for(10.0)
    assert LinkEvent.LINK_LOST not in harness.tx.kinds()
    assert harness.tx_link.state == TxState.RUNNING.value
    after = [t for t, _ in harness.rx.delivered if busy_to <= t < busy_to + 5.0]
    if neighbours:
        assert failures == 0
        assert len(after) >= 3  # the first slot after the spell carries a batch
    else:
        assert failures >= 8
