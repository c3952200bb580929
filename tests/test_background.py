"""The LoRaWAN background traffic generator: rates, channels, SF mix, seeding, presets."""

from __future__ import annotations

import argparse

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.hardware.background import (
    BACKGROUND_CHOICES,
    BACKGROUND_PRESETS,
    RX2_FREQUENCY_HZ,
    UPLINK_CHANNELS_HZ,
    BackgroundPreset,
    BackgroundTraffic,
    start_background,
)
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AirFrame
from p1lora.tools.sim import SimOptions, build_channel
from p1lora.tools.sim_command import configure, options_from_args

from .helpers_radio import SF7, bench


def _run(preset: BackgroundPreset, hours: float = 1.0, seed: int = 1):
    clock = VirtualClock()
    channel = SimChannel(clock, seed=seed)
    seen: list[AirFrame] = []
    original = channel.inject

    def spy(*args, **kwargs) -> AirFrame:
        frame = original(*args, **kwargs)
        seen.append(frame)
        return frame

    channel.inject = spy  # type: ignore[method-assign]
    traffic = BackgroundTraffic(channel, preset, seed=seed).start()
    clock.advance(hours * 3600)
    return traffic, channel, seen


def test_city_rates_channels_and_sf_mix():
    traffic, channel, frames = _run(BACKGROUND_PRESETS["city"])
    stats = traffic.stats
    # Poisson counts: 2000 uplinks and 40 downlinks expected in the hour (5 sigma bounds).
    assert 1776 <= stats.uplinks <= 2224
    assert 10 <= stats.downlinks <= 72
    assert channel.stats.background_frames == stats.uplinks + stats.downlinks == len(frames)
    uplinks = [f for f in frames if not f.params.invert_iq]
    downlinks = [f for f in frames if f.params.invert_iq]
    assert {round(f.params.frequency_hz, -3) for f in uplinks} == set(UPLINK_CHANNELS_HZ)
    assert {round(f.params.frequency_hz, -3) for f in downlinks} == {RX2_FREQUENCY_HZ}
    assert {f.params.sf for f in downlinks} == {9}
    assert all(f.params.sync_word == 0x34 and f.params.bw_hz == 125_000 for f in frames)
    assert all(not f.params.crc_on for f in downlinks)
    assert {f.tx_power_dbm for f in uplinks} == {14.0}
    assert {f.tx_power_dbm for f in downlinks} == {27.0}
    sf7_share = stats.uplinks_by_sf[7] / stats.uplinks
    assert 0.50 <= sf7_share <= 0.60
    assert set(stats.uplinks_by_sf) == set(range(7, 13))
    # SF12 frames last about 30 times as long as SF7 ones.
    longest = max(f.end - f.start for f in uplinks)
    assert 1.0 < longest < 2.0


def test_countryside_is_quiet_and_uses_sf12_downlinks():
    traffic, _, frames = _run(BACKGROUND_PRESETS["countryside"], hours=4)
    assert 170 <= traffic.stats.uplinks <= 320  # 60/h expected
    assert {f.params.sf for f in frames if f.params.invert_iq} <= {12}


def test_seeded_and_repeatable():
    first = _run(BACKGROUND_PRESETS["city"], hours=0.2, seed=7)[2]
    again = _run(BACKGROUND_PRESETS["city"], hours=0.2, seed=7)[2]
    other = _run(BACKGROUND_PRESETS["city"], hours=0.2, seed=8)[2]
    assert [(f.start, f.params.sf) for f in first] == [(f.start, f.params.sf) for f in again]
    assert [(f.start, f.params.sf) for f in first] != [(f.start, f.params.sf) for f in other]


def test_stop_and_named_start():
    clock = VirtualClock()
    channel = SimChannel(clock)
    assert start_background(channel, "none", seed=1) is None
    traffic = start_background(channel, "city", seed=1)
    assert traffic is not None
    clock.advance(60)
    traffic.stop()
    sent = channel.stats.background_frames
    clock.advance(600)
    assert channel.stats.background_frames == sent
    with pytest.raises(ValueError, match="not one of none, city, countryside"):
        start_background(channel, "village", seed=1)
    assert BACKGROUND_CHOICES == ("none", "city", "countryside")


def test_preset_validation():
    with pytest.raises(ValueError, match="27 dBm"):
        BackgroundPreset("loud", 1, 1.0, 120, 5, 1.0, 100, downlink_power_dbm=30)
    with pytest.raises(ValueError, match="SF mix"):
        BackgroundPreset("odd", 1, 1.0, 120, 5, 1.0, 100, uplink_sf_mix={13: 1.0})


def test_a_p1lora_link_on_the_rx2_channel_survives_a_city_hour_mostly():
    """The city's RX2 downlinks land on our default channel; the uplinks are elsewhere."""
    setup = bench(seed=2)
    setup.add("b", SF7)
    setup.add("a", SF7)
    traffic = start_background(setup.channel, "city", seed=3)
    assert traffic is not None
    sent = 600
    got = 0
    for i in range(sent):
        setup.send_and_settle("a", i.to_bytes(2, "big") * 8)
        got += len(setup.frames("b"))
        setup.clock.advance(0.5)
    stats = setup.channel.stats
    assert stats.background_frames > 0
    # -78 dBm of SF9 against our -86 dBm SF7: 8 dB below, within the 9 dB SF7 tolerates.
    assert got == sent - stats.background_lost
    assert got >= sent * 0.97


def test_p1lora_sim_switches_it_on():
    parser = argparse.ArgumentParser()
    configure(parser)
    options = options_from_args(parser.parse_args(["--background", "countryside"]))
    assert options.background == "countryside"
    assert options_from_args(parser.parse_args([])).background == "none"
    clock = VirtualClock()
    channel = build_channel(SimOptions(background="city"), clock)
    clock.advance(60)
    assert channel.stats.background_frames > 0
    quiet = build_channel(SimOptions(), clock)
    clock.advance(60)
    assert quiet.stats.background_frames == 0
    with pytest.raises(ValueError, match="background must be one of none, city, countryside"):
        SimOptions(background="village")
