"""Closer to the physics at any setting (pacing share) and a fading link that settles."""

from __future__ import annotations

import pytest

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link import LinkConfig, timing
from p1lora.common.link.tuning import SnrEstimate
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


def test_the_estimate_averages_its_first_samples_and_measures_their_spread():
    estimate = SnrEstimate()
    for snr in (-8.0, -12.0, -10.0):
        estimate.add(snr, 125_000)
    assert estimate.value == pytest.approx(-10.0)  # a plain mean of the first samples
    assert estimate.sd > 1.0
    steady = SnrEstimate()
    for _ in range(10):
        steady.add(-10.0, 125_000)
    assert steady.sd == 0.0 and steady.planning() == pytest.approx(-10.0)
    assert estimate.planning() < estimate.value  # a spread beyond the reading scatter


def test_a_channel_that_changes_restarts_the_estimate_in_two_samples():
    estimate = SnrEstimate()
    for snr in (-16.0, -15.5, -16.0, -16.5, -16.0, -16.0):
        estimate.add(snr, 125_000)
    estimate.add(26.0, 125_000)  # one outlier is not a change
    assert estimate.value is not None and estimate.value < 0
    estimate.add(26.0, 125_000)
    assert estimate.value == pytest.approx(26.0)
    assert estimate.count == 2


@pytest.mark.parametrize("seed", [1, 2])
def test_a_merely_noisy_link_settles_within_a_minute_and_stays(seed):
    """Virtual time: 4 dB per-frame fading at 140 dB in the 10 % band (the SNR of issue 15's
    141 dB scenario, which was stated for the old 6 dB noise figure; the channel has 7 dB now).
    A handshake sample that was optimistic is corrected once, in seconds."""
    metrics = Simulation(
        SimOptions(duration_s=600.0, path_loss_db=140.0, fading_db=4.0, seed=seed)
    ).run()
    assert metrics.convergence_s is not None and metrics.convergence_s <= 60.0
    assert [row for row in metrics.settings_timeline if row[0] > 60.0] == []
    assert not metrics.budget_exceeded


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_a_fading_link_at_141_db_settles_within_two_minutes_where_its_mean_snr_carries_it(seed):
    """Virtual time: 4 dB per-frame fading at 141 dB (7 dB noise figure). Without fading the
    link runs SF12/BW250 there; fading, it must not give half its throughput away on
    SF12/BW125 (the slower of the two rungs a few samples' scatter or the survivors of the
    fades used to suggest), and must settle within two minutes and stay."""
    metrics = Simulation(
        SimOptions(duration_s=600.0, path_loss_db=141.0, fading_db=4.0, seed=seed)
    ).run()
    assert metrics.convergence_s is not None and metrics.convergence_s <= 120.0
    assert [row for row in metrics.settings_timeline if row[0] > 120.0] == []
    assert (metrics.final_sf, metrics.final_bw) != (12, 125.0)
    assert not metrics.budget_exceeded


def test_lost_round_trips_counted_at_the_floor_never_restart_the_estimate():
    estimate = SnrEstimate()
    for snr in (-7.0, -9.0, -6.0, -8.5, -7.5, -7.0):
        estimate.add(snr, 125_000)
    for _ in range(2):  # two fades in a row at SF10's floor: no changed channel
        estimate.add(-15.0, 125_000, censored=True)
    assert estimate.count == 8
    assert estimate.value is not None and estimate.value > -10.0


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5, 6])
def test_a_fading_link_in_the_one_percent_band_settles_within_two_minutes(seed):
    """Virtual time: 4 dB fading at 141 dB pinned to 868.1 MHz, where the budget spaces the
    updates minutes apart. Waiting for six samples to settle moved seeds 3-5 after 11-22
    minutes; a lost commit proof (seed 2) left the receiver at the old setting until the link
    was declared lost after 15 minutes."""
    metrics = Simulation(
        SimOptions(
            duration_s=1500.0,
            path_loss_db=141.0,
            fading_db=4.0,
            seed=seed,
            frequency_hz=868_100_000,
        )
    ).run()
    assert metrics.convergence_s is not None and metrics.convergence_s <= 120.0
    assert [row for row in metrics.settings_timeline if row[0] > 120.0] == []
    assert metrics.number("link_lost") == 0
    assert not metrics.budget_exceeded
