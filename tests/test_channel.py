"""Channel physics: who hears what, how reception falls off with path loss, collisions."""

from __future__ import annotations

import statistics

import pytest

from p1lora.hardware.channel import (
    DEMODULATION_FLOOR_DB,
    LogDistance,
    header_success_probability,
    noise_floor_dbm,
    payload_success_probability,
)
from p1lora.hardware.radio import FrameReceived

from .helpers_radio import EU_CHANNEL, SF7, SF12, Bench, bench, pair, received


def _rate(setup: Bench, loss: float, frames: int) -> float:
    setup.channel.set_path_loss("a", "b", loss)
    got = 0
    for i in range(frames):
        setup.send_and_settle("a", i.to_bytes(2, "big") * 4)
        got += len(setup.frames("b"))
    return got / frames


def _fifty_percent_loss(settings, centre: float, seed: int = 7, frames: int = 40) -> float:
    """Path loss where the delivery rate crosses 50 % (linear interpolation of a sweep)."""
    setup = pair(settings, seed=seed)
    losses = [centre + step / 2 for step in range(-8, 9)]
    rates = [_rate(setup, loss, frames) for loss in losses]
    assert rates[0] >= 0.95, rates
    assert rates[-1] <= 0.05, rates
    for (l1, r1), (l2, r2) in zip(
        zip(losses, rates, strict=True), zip(losses[1:], rates[1:], strict=True), strict=True
    ):
        if r1 >= 0.5 > r2:
            return l1 + (r1 - 0.5) / (r1 - r2) * (l2 - l1)
    raise AssertionError(f"no 50 % crossing in {rates}")


def _theory(settings) -> float:
    """Path loss at which the SNR equals the SF's demodulation floor."""
    return (
        settings.tx_power_dbm - noise_floor_dbm(settings.bw_hz) - DEMODULATION_FLOOR_DB[settings.sf]
    )


def test_decode_probability_falls_from_one_to_zero_around_the_floor():
    for sf, floor in DEMODULATION_FLOOR_DB.items():
        assert payload_success_probability(floor, sf) == pytest.approx(0.5)
        assert payload_success_probability(floor + 3, sf) > 0.99
        assert payload_success_probability(floor - 3, sf) < 0.01
        snrs = [floor + x / 4 for x in range(-20, 21)]
        probabilities = [payload_success_probability(s, sf) for s in snrs]
        assert probabilities == sorted(probabilities)
        # The header survives a little lower: frames in the transition arrive with CRC errors.
        assert header_success_probability(floor - 1, sf) > payload_success_probability(
            floor - 1, sf
        )
    width = 0.0
    while payload_success_probability(-7.5 + width, 7) < 0.9:
        width += 0.01
    assert 1.0 < 2 * width < 5.0  # 10-90 % over a few dB


def test_noise_floor():
    # -174 dBm/Hz + 51 dB (125 kHz) + the SX1276's 7 dB noise figure at 868/915 MHz (datasheet
    # Table 38, LNA gain G1, band 1). It was 6 dB (Semtech's driver constant) until issue 16.
    assert noise_floor_dbm(125_000) == pytest.approx(-116.03, abs=0.01)
    assert noise_floor_dbm(125_000, 6.0) == pytest.approx(-117.03, abs=0.01)
    assert noise_floor_dbm(250_000) - noise_floor_dbm(125_000) == pytest.approx(3.01, abs=0.01)


def test_sf12_reaches_about_13_db_further_than_sf7():
    sf7 = _fifty_percent_loss(SF7, _theory(SF7))
    sf12 = _fifty_percent_loss(SF12, _theory(SF12))
    assert sf7 == pytest.approx(_theory(SF7), abs=0.75)
    assert sf12 == pytest.approx(_theory(SF12), abs=0.75)
    assert 11.5 <= sf12 - sf7 <= 14.0


def test_doubling_the_bandwidth_costs_about_3_db():
    bw125 = _fifty_percent_loss(SF7, _theory(SF7), seed=11)
    wide = SF7.replace(bw_hz=250_000)
    bw250 = _fifty_percent_loss(wide, _theory(wide), seed=11)
    assert bw125 - bw250 == pytest.approx(3.0, abs=1.0)


def test_frames_in_the_transition_arrive_with_crc_errors():
    setup = pair(SF7, seed=5)
    _rate(setup, _theory(SF7) + 0.5, 200)  # just below the floor
    b = setup.radios["b"]
    assert b.counters.crc_errors > 0
    assert b.counters.frames_received > 0
    strong = pair(SF7, seed=5)
    _rate(strong, _theory(SF7) - 6, 100)
    assert strong.radios["b"].counters.crc_errors == 0
    assert strong.radios["b"].counters.frames_received == 100


@pytest.mark.parametrize(
    "change",
    [
        {"frequency_hz": 868_100_000},
        {"frequency_hz": EU_CHANNEL + 200},  # a different Frf register value
        {"sf": 8},
        {"bw_hz": 250_000},
        {"sync_word": 0x34},
    ],
    ids=lambda c: next(iter(c)),
)
def test_settings_mismatch_never_delivers(change):
    setup = bench(seed=1)
    setup.add("a", SF7.replace(**change))
    setup.add("b", SF7)
    for i in range(20):
        setup.send_and_settle("a", bytes([i]) * 10)
    assert setup.frames("b") == []
    assert setup.chips["b"].counters.rx_delivered == 0
    assert setup.channel.stats.settings_mismatch == 20


def test_coding_rate_and_preamble_are_in_the_header_so_they_may_differ():
    setup = bench(seed=1)
    setup.add("a", SF7.replace(cr=8, preamble=12))
    setup.add("b", SF7)
    setup.send_and_settle("a", b"explicit header")
    assert setup.frames("b") == [b"explicit header"]


def test_half_duplex_a_transmitting_radio_hears_nothing():
    setup = pair(SF7)
    a, b = setup.radios["a"], setup.radios["b"]
    a.send(b"from a" * 5)
    setup.clock.advance(0.005)
    b.send(b"from b")  # b starts talking in the middle of a's frame
    setup.clock.advance(1)
    assert setup.frames("a") == []
    assert setup.frames("b") == []
    assert setup.channel.stats.half_duplex >= 2


def test_receiver_must_be_listening_when_the_frame_starts():
    setup = bench()
    a = setup.add("a", SF7)
    b = setup.add("b")  # not configured: standby, not receiving
    a.send(b"too early" * 4)
    setup.clock.advance(0.005)
    b.configure(SF7)  # now receiving, but the preamble has passed
    setup.clock.advance(1)
    assert setup.frames("b") == []


def test_reconfiguring_mid_frame_loses_it():
    setup = pair(SF7)
    setup.radios["a"].send(b"moving target" * 4)
    setup.clock.advance(0.01)
    setup.radios["b"].configure(SF7)  # re-applied, even unchanged: the demodulator restarts
    setup.clock.advance(1)
    assert setup.frames("b") == []
    assert setup.channel.stats.left_receive == 1


def _three(capture: bool = True, loss_ab: float = 100, loss_cb: float = 100) -> Bench:
    setup = bench(seed=2, capture=capture)
    for name in "abc":
        setup.add(name, SF7)
    setup.channel.set_path_loss("a", "b", loss_ab)
    setup.channel.set_path_loss("c", "b", loss_cb)
    setup.channel.set_path_loss("a", "c", 200)  # a and c cannot hear each other
    return setup


def test_overlapping_frames_of_equal_power_collide():
    setup = _three()
    setup.radios["a"].send(b"A" * 20)
    setup.clock.advance(0.01)
    setup.radios["c"].send(b"C" * 20)
    setup.clock.advance(1)
    assert setup.frames("b") == []
    assert setup.radios["b"].counters.crc_errors == 1  # the locked frame was destroyed
    assert setup.channel.stats.collisions == 1


def test_capture_keeps_the_first_frame_when_it_is_6_db_stronger():
    setup = _three(loss_ab=100, loss_cb=107)
    setup.radios["a"].send(b"A" * 20)
    setup.clock.advance(0.01)
    setup.radios["c"].send(b"C" * 20)
    setup.clock.advance(1)
    assert setup.frames("b") == [b"A" * 20]


def test_without_capture_even_a_strong_frame_is_lost():
    setup = _three(capture=False, loss_ab=100, loss_cb=120)
    setup.radios["a"].send(b"A" * 20)
    setup.clock.advance(0.01)
    setup.radios["c"].send(b"C" * 20)
    setup.clock.advance(1)
    assert setup.frames("b") == []


def test_a_stronger_latecomer_destroys_the_locked_frame_and_is_not_heard_either():
    setup = _three(loss_ab=120, loss_cb=100)
    setup.radios["a"].send(b"A" * 20)
    setup.clock.advance(0.01)
    setup.radios["c"].send(b"C" * 20)
    setup.clock.advance(1)
    assert setup.frames("b") == []


def test_frames_back_to_back_do_not_collide():
    setup = _three()
    airtime = setup.radios["a"].send(b"A" * 20)
    setup.clock.advance(airtime)
    setup.radios["c"].send(b"C" * 20)
    setup.clock.advance(1)
    assert setup.frames("b") == [b"A" * 20, b"C" * 20]


def test_different_spreading_factors_do_not_collide():
    setup = bench(seed=2)
    setup.add("a", SF7)
    setup.add("c", SF7.replace(sf=9))
    setup.add("b7", SF7)
    setup.add("b9", SF7.replace(sf=9))
    setup.radios["a"].send(b"seven" * 4)
    setup.radios["c"].send(b"nine" * 4)
    setup.clock.advance(1)
    assert setup.frames("b7") == [b"seven" * 4]
    assert setup.frames("b9") == [b"nine" * 4]


def _outcomes(seed: int, **kwargs) -> list[bool]:
    setup = pair(SF7, seed=seed, **kwargs)
    result = []
    for i in range(100):
        setup.send_and_settle("a", bytes([i]))
        result.append(bool(setup.frames("b")))
    return result


def test_random_loss_is_seeded_and_deterministic():
    first = _outcomes(4, loss_probability=0.3)
    assert 50 <= sum(first) <= 90
    assert _outcomes(4, loss_probability=0.3) == first
    assert _outcomes(5, loss_probability=0.3) != first
    assert not any(_outcomes(4, loss_probability=1.0))


def test_fading_spreads_the_rssi():
    setup = pair(SF7, seed=9, path_loss_db=100, fading_sigma_db=6.0)
    rssi = []
    for i in range(200):
        setup.send_and_settle("a", bytes([i]))
        rssi += [e.frame.rssi_dbm for e in received(setup.radios["b"].poll())]
    assert len(rssi) == 200
    assert statistics.mean(rssi) == pytest.approx(-86, abs=1.5)
    assert statistics.stdev(rssi) == pytest.approx(6.0, abs=1.5)


def test_path_loss_can_change_mid_run():
    setup = pair(SF7)
    setup.send_and_settle("a", b"one")
    assert setup.frames("b") == [b"one"]
    setup.channel.set_path_loss("a", "b", 170)
    setup.send_and_settle("a", b"two")
    assert setup.frames("b") == []
    setup.channel.set_path_loss("a", "b", None)  # back to the default
    setup.send_and_settle("a", b"three")
    assert setup.frames("b") == [b"three"]


def test_log_distance_model_from_positions():
    model = LogDistance(exponent=3.0)
    assert model.loss_db(1.0, 868e6) == pytest.approx(31.2, abs=0.1)
    setup = bench(model=model)
    setup.add("a", SF7, position=(0.0, 0.0))
    setup.add("near", SF7, position=(10.0, 0.0))
    setup.add("far", SF7, position=(0.0, 100.0))
    setup.send_and_settle("a", b"where are you")
    (near,) = received(setup.radios["near"].poll())
    (far,) = received(setup.radios["far"].poll())
    assert near.frame.rssi_dbm - far.frame.rssi_dbm == pytest.approx(30, abs=1)
    setup.channel.set_position("far", (0.0, 100_000.0))  # 100 km: out of reach
    setup.send_and_settle("a", b"again")
    assert received(setup.radios["far"].poll()) == []


def test_injected_remote_frames_are_heard_like_local_ones():
    setup = pair(SF7)
    params = setup.chips["a"].air_params()
    setup.channel.inject(
        "remote", params, b"from afar", tx_power_dbm=14, airtime=0.05, path_loss_db=110
    )
    setup.clock.advance(0.06)
    events = setup.radios["b"].poll()
    assert [e.frame.payload for e in events if isinstance(e, FrameReceived)] == [b"from afar"]
    assert received(events)[0].frame.rssi_dbm == pytest.approx(-96, abs=0.75)
