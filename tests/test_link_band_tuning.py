"""Closer to the physics at any setting (pacing share) and a fading link that settles."""

from __future__ import annotations

import pytest

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link import LinkConfig, timing
from p1lora.common.regions import get_region
from p1lora.tools.sim import SimOptions, Simulation


def test_pacing_keeps_room_for_one_handshake_and_no_more():
    config = LinkConfig(frequency_hz=868_100_000)
    rendezvous = config.rendezvous()
    handshake = time_on_air_for(rendezvous, timing.DISCOVER_BYTES) + time_on_air_for(
        rendezvous, timing.SWITCH_BYTES
    )
    assert timing.pacing_share(config) == pytest.approx(1 - handshake / 36.0)
    assert 0.92 < timing.pacing_share(config) < 0.93
    assert timing.pacing_share(LinkConfig()) == pytest.approx(0.99)  # 10 %: the cap
    # A 20 s window (US915) refills quickly: never below the first design's 90 %.
    assert timing.pacing_share(LinkConfig(region=get_region("US915"))) == pytest.approx(0.9)


def test_a_duty_limited_link_spends_its_allowance_on_updates_legally():
    """Virtual time, one hour pinned to 868.1 MHz (1 %): the transmitter's busiest hour holds
    the pacing share (not the old 90 %), never more than the law allows."""
    metrics = Simulation(
        SimOptions(duration_s=3600.0, path_loss_db=100.0, frequency_hz=868_100_000)
    ).run()
    assert not metrics.budget_exceeded
    assert 0.0091 < metrics.duty_cycle_max_tx <= 0.01
    assert metrics.delivered_corrupt == 0
