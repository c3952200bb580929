"""Region rules are data; these pin the legal facts design.md lists."""

from __future__ import annotations

import pytest

from p1lora.common.radio_types import RadioSettings
from p1lora.common.regions import REGIONS, RegionError, get_region


def test_eu868_default_channel_is_the_10_percent_band():
    eu = get_region("eu868")
    band = eu.sub_band_for(eu.default_frequency_hz, 250_000)
    assert eu.default_frequency_hz == 869_525_000
    assert band.duty_cycle == 0.10
    assert band.airtime_per_window_s == pytest.approx(360.0)
    assert band.max_bw_hz == 250_000


def test_eu868_g1_band_is_one_percent():
    band = get_region("EU868").sub_band_for(868_100_000, 125_000)
    assert band.duty_cycle == 0.01
    assert band.airtime_per_window_s == pytest.approx(36.0)
    assert band.max_tx_power_dbm == 14


def test_sub_band_edges_count_the_bandwidth():
    eu = get_region("EU868")
    # 868.0 MHz is the lower edge of g1: a 125 kHz signal centred there spills out of the band.
    with pytest.raises(RegionError, match="does not fit"):
        eu.sub_band_for(868_000_000, 125_000)
    # BW500 does not fit 869.4-869.65 at all.
    with pytest.raises(RegionError):
        eu.check(RadioSettings(frequency_hz=869_525_000, sf=7, bw_hz=500_000))


def test_power_above_sub_band_limit_is_refused():
    eu = get_region("EU868")
    with pytest.raises(RegionError, match="exceeds"):
        eu.check(RadioSettings(frequency_hz=868_100_000, sf=9, tx_power_dbm=17))
    assert (
        eu.check(RadioSettings(frequency_hz=869_525_000, sf=9, tx_power_dbm=20)).duty_cycle == 0.1
    )


def test_us915_dwell_time():
    band = get_region("US915").sub_band_for(915_000_000, 125_000)
    assert band.max_dwell_s == 0.4


def test_every_region_rendezvous_is_legal():
    for region in REGIONS.values():
        settings = region.rendezvous()
        region.check(settings)


def test_unknown_region_lists_known_ones():
    with pytest.raises(RegionError, match="EU868"):
        get_region("mars")
