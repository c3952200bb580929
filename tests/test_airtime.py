"""Time on air against Semtech's published values and design.md's table."""

from __future__ import annotations

import pytest

from p1lora.common.airtime import low_data_rate_optimize, symbol_time, time_on_air, time_on_air_for
from p1lora.common.radio_types import RadioSettings


@pytest.mark.parametrize(
    ("payload", "sf", "bw", "expected_ms"),
    [
        (13, 7, 125_000, 46.336),  # Semtech LoRa calculator reference
        (51, 12, 125_000, 2465.792),  # Semtech reference (LDRO on)
        (40, 7, 250_000, 41.088),  # design.md table
        (40, 9, 125_000, 287.744),
        (40, 12, 125_000, 1974.272),
        (255, 12, 125_000, 9019.392),
        (1, 7, 125_000, 25.856),  # 8 + ceil(... ) floor: tiny frames still pay the header
    ],
)
def test_reference_values(payload, sf, bw, expected_ms):
    assert time_on_air(payload, sf, bw) * 1000 == pytest.approx(expected_ms, abs=0.001)


def test_ldro_rule_matches_design():
    on = {(sf, bw) for sf in range(6, 13) for bw in (125_000, 250_000, 500_000)}
    on = {pair for pair in on if low_data_rate_optimize(*pair)}
    assert on == {(11, 125_000), (12, 125_000), (12, 250_000)}


def test_symbol_time_doubles_per_sf():
    assert symbol_time(8, 125_000) == pytest.approx(2 * symbol_time(7, 125_000))


def test_settings_helper_and_coding_rate():
    s = RadioSettings(frequency_hz=869_525_000, sf=7, bw_hz=250_000)
    assert time_on_air_for(s, 40) == pytest.approx(0.041088)
    assert time_on_air(40, 7, 250_000, cr=8) > time_on_air(40, 7, 250_000, cr=5)


def test_bounds():
    with pytest.raises(ValueError, match="outside"):
        time_on_air(256, 7, 125_000)
    with pytest.raises(ValueError, match="coding rate"):
        time_on_air(10, 7, 125_000, cr=4)


def test_airtime_grows_with_payload_and_sf():
    for sf in range(7, 13):
        times = [time_on_air(n, sf, 125_000) for n in range(0, 256, 5)]
        assert times == sorted(times)
    assert time_on_air(40, 12, 125_000) > time_on_air(40, 11, 125_000)
