"""A crowded channel: capture both ways, the summed interference, imperfect SF orthogonality,
foreign preambles that occupy the receiver, IQ-inverted downlinks, and the CAD query."""

from __future__ import annotations

import dataclasses

import pytest

from p1lora.common.airtime import symbol_time
from p1lora.hardware.background import RX2_FREQUENCY_HZ, lorawan_params
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AirParams
from p1lora.hardware.interference import (
    CO_SF_CAPTURE_DB,
    INTER_SF_SIR_DB,
    NOISE_FIGURE_DB,
    in_band_fraction,
    peak_sum_mw,
    required_sir_db,
)
from p1lora.hardware.udp_channel import UdpSimOptions

from .helpers_radio import EU_CHANNEL, SF7, SF12, Bench, bench

#: SF7/BW125 with the driver's 8-symbol preamble: the takeover window is 8 symbols long.
PREAMBLE_S = 8 * symbol_time(7, 125_000)
PAYLOAD = b"ours" * 10


def _room(losses: dict[str, float], settings: dict[str, object] | None = None) -> Bench:
    """Radios at `losses` dB from the receiver "b" (SF7 unless `settings` says otherwise); the
    senders cannot hear each other."""
    setup = bench(seed=3)
    setup.add("b", SF7)
    for name in losses:
        setup.add(name, (settings or {}).get(name, SF7))  # type: ignore[arg-type]
    for name, loss in losses.items():
        setup.channel.set_path_loss(name, "b", loss)
        for other in losses:
            if other != name:
                setup.channel.set_path_loss(name, other, 200)
    return setup


def _send_at(setup: Bench, offsets: dict[str, float], payload: bytes = PAYLOAD) -> None:
    """Each sender starts at its offset (seconds) from now; the clock runs past all frames."""
    start = setup.clock.now()
    for name, offset in sorted(offsets.items(), key=lambda item: item[1]):
        setup.clock.advance(max(0.0, start + offset - setup.clock.now()))
        setup.radios[name].send(payload + name.encode())
    setup.clock.advance(2.0)


# ---------------------------------------------------------------------- the tables


def test_noise_figure_is_the_datasheet_value_everywhere():
    assert NOISE_FIGURE_DB == 7.0
    channel = SimChannel(bench().clock)
    channel.add_radio("x")
    assert channel.noise_floor_for("x", 125_000) == pytest.approx(-116.03, abs=0.01)
    assert UdpSimOptions().noise_figure_db == 7.0


def test_inter_sf_table_is_croce_and_harsher_for_slower_victims():
    assert required_sir_db(SF7_AIR, SF7_AIR) == CO_SF_CAPTURE_DB
    assert required_sir_db(SF7_AIR, _air(sf=8)) == -8
    assert required_sir_db(_air(sf=12), SF7_AIR) == -25
    assert required_sir_db(_air(sf=9), _air(sf=12)) == -15
    # Another bandwidth at the same SF has no measured entry: the row's harshest one.
    assert required_sir_db(SF7_AIR, _air(bw_hz=250_000)) == -8
    assert len(INTER_SF_SIR_DB) == 30
    for (victim, _), value in INTER_SF_SIR_DB.items():
        assert value < 0  # another SF always needs less than the same SF
        assert value >= {7: -9, 8: -13, 9: -15, 10: -19, 11: -22, 12: -25}[victim]


def test_spectral_overlap():
    assert in_band_fraction(869.525e6, 125_000, 869.525e6, 125_000) == pytest.approx(1.0)
    # A BW250 signal centred on a BW125 channel puts half its power into it.
    assert in_band_fraction(869.525e6, 125_000, 869.525e6, 250_000) == pytest.approx(0.5)
    assert in_band_fraction(869.525e6, 250_000, 869.525e6, 125_000) == pytest.approx(1.0)
    # Half a channel off: half of it.
    assert in_band_fraction(868.1e6, 125_000, 868.1625e6, 125_000) == pytest.approx(0.5)
    # 200 kHz apart: only the adjacent-channel leak (60 dB down).
    assert in_band_fraction(868.1e6, 125_000, 868.3e6, 125_000) == pytest.approx(1e-6)


def test_peak_sum_is_the_worst_instant():
    spans = [(0.0, 1.0, 1.0), (0.5, 2.0, 2.0), (1.0, 3.0, 4.0), (5.0, 6.0, 100.0)]
    assert peak_sum_mw(spans, 0.0, 3.0) == pytest.approx(6.0)  # 2 + 4 in [1, 2)
    assert peak_sum_mw(spans, 0.0, 0.9) == pytest.approx(3.0)
    assert peak_sum_mw(spans, 3.0, 5.0) == 0.0  # touching edges do not overlap


# ---------------------------------------------------------------------- co-SF capture


def test_a_stronger_frame_during_the_preamble_takes_the_receiver_over():
    setup = _room({"weak": 120, "strong": 100})
    _send_at(setup, {"weak": 0.0, "strong": PREAMBLE_S / 2})
    assert setup.frames("b") == [PAYLOAD + b"strong"]
    assert setup.channel.stats.captures == 1
    assert setup.channel.stats.co_sf_lost == 1  # the weak one


def test_a_stronger_frame_after_the_preamble_corrupts_both():
    setup = _room({"weak": 120, "strong": 100})
    _send_at(setup, {"weak": 0.0, "strong": PREAMBLE_S + 0.002})
    assert setup.frames("b") == []
    assert setup.radios["b"].counters.crc_errors == 1  # the locked weak frame, destroyed
    assert setup.channel.stats.co_sf_lost == 1
    assert setup.channel.stats.busy_lost == 1  # the strong one found the receiver busy
    assert setup.channel.stats.captures == 0


def test_capture_needs_the_threshold_in_both_directions():
    # 5 dB is not enough to take over, nor to survive the latecomer.
    setup = _room({"first": 105, "second": 100})
    _send_at(setup, {"first": 0.0, "second": PREAMBLE_S / 2})
    assert setup.frames("b") == []
    assert setup.channel.stats.captures == 0
    # 7 dB weaker latecomer: the first frame survives it.
    setup = _room({"first": 100, "second": 107})
    _send_at(setup, {"first": 0.0, "second": 0.003})
    assert setup.frames("b") == [PAYLOAD + b"first"]


def test_a_weaker_later_frame_is_survived_but_the_sum_of_two_is_not():
    alone = _room({"a": 100, "c": 107})
    _send_at(alone, {"a": 0.0, "c": 0.02})
    assert alone.frames("b") == [PAYLOAD + b"a"]
    # Two interferers 7 dB down each add up to 4 dB down: below the 6 dB capture threshold.
    both = _room({"a": 100, "c": 107, "d": 107})
    _send_at(both, {"a": 0.0, "c": 0.02, "d": 0.025})
    assert both.frames("b") == []
    assert both.channel.stats.co_sf_lost == 1


def test_a_jammer_at_the_same_sf_10_db_stronger_silences_the_link():
    setup = _room({"a": 100, "jammer": 90})
    delivered = 0
    for i in range(10):
        # The jammer sends long frames back to back; ours start at varying points within them.
        jam_airtime = setup.radios["jammer"].send(bytes(200))
        setup.clock.advance(0.003 + 0.02 * i)
        setup.radios["a"].send(PAYLOAD)
        setup.clock.advance(jam_airtime + 0.05)
        delivered += sum(frame == PAYLOAD for frame in setup.frames("b"))
    assert delivered == 0
    stats = setup.channel.stats
    assert stats.busy_lost == 10  # the receiver is locked on the jammer every time
    assert stats.delivered == 10  # ... and decodes the jammer's frames


# ---------------------------------------------------------------------- inter-SF


@pytest.mark.parametrize(
    ("victim_sf", "interferer_sf", "margin_db", "survives"),
    [
        (7, 8, 6, True),  # needs -8 dB: an SF8 frame 6 dB stronger is survived
        (7, 8, 10, False),  # ... 10 dB stronger is not
        (12, 7, 20, True),  # SF12 needs -25 dB against SF7
        (12, 7, 28, False),
    ],
)
def test_inter_sf_interference_follows_the_table(victim_sf, interferer_sf, margin_db, survives):
    victim = SF7.replace(sf=victim_sf)
    setup = bench(seed=4)
    setup.add("b", victim)
    setup.add("a", victim)
    setup.add("j", SF7.replace(sf=interferer_sf))
    setup.channel.set_path_loss("a", "b", 100)
    setup.channel.set_path_loss("j", "b", 100 - margin_db)
    setup.channel.set_path_loss("a", "j", 200)
    airtime = setup.radios["a"].send(PAYLOAD)
    setup.clock.advance(airtime / 4)
    setup.radios["j"].send(bytes(255))  # outlasts the victim
    setup.clock.advance(5.0)
    assert setup.frames("b") == ([PAYLOAD] if survives else [])
    assert setup.channel.stats.inter_sf_lost == (0 if survives else 1)


def test_an_sf12_frame_is_not_lost_to_a_weaker_sf7_neighbour_of_another_bandwidth():
    setup = bench(seed=4)
    setup.add("b", SF12)
    setup.add("a", SF12)
    setup.add("j", SF7.replace(bw_hz=250_000))
    setup.channel.set_path_loss("a", "b", 100)
    setup.channel.set_path_loss("j", "b", 90)  # 10 dB stronger, half of it in band: -7 dB SIR
    setup.channel.set_path_loss("a", "j", 200)
    setup.radios["a"].send(PAYLOAD)
    setup.clock.advance(0.1)
    setup.radios["j"].send(bytes(50))
    setup.clock.advance(5.0)
    assert setup.frames("b") == [PAYLOAD]


# ---------------------------------------------------------------------- foreign traffic


def test_a_foreign_sync_word_keeps_the_receiver_busy_until_its_header_fails():
    foreign = SF7.replace(sync_word=0x34)
    setup = _room({"f": 100, "a": 100}, {"f": foreign})
    _send_at(setup, {"f": 0.0, "a": 0.004}, payload=bytes(60))
    assert setup.frames("b") == []  # ours arrived while b was locked on the foreign preamble
    stats = setup.channel.stats
    assert stats.foreign_preambles == 1
    assert stats.foreign_busy_lost == 1
    header_s = (8 + 4.25 + 8) * symbol_time(7, 125_000)
    assert stats.foreign_busy_s == pytest.approx(header_s, rel=0.01)
    # After the header failed the receiver listens again: a frame of ours 8 dB above the
    # foreign frame's remaining energy gets through.
    setup = _room({"f": 108, "a": 100}, {"f": foreign})
    _send_at(setup, {"f": 0.0, "a": header_s + 0.002}, payload=bytes(60))
    assert setup.frames("b") == [bytes(60) + b"a"]
    assert setup.channel.stats.foreign_busy_lost == 0


def test_an_iq_inverted_gateway_burst_on_869525_is_never_decoded_but_interferes():
    setup = bench(seed=5)
    setup.add("b", SF7)
    setup.add("a", SF7)
    setup.channel.set_path_loss("a", "b", 110)  # -96 dBm at b
    assert EU_CHANNEL == RX2_FREQUENCY_HZ
    downlink = lorawan_params(RX2_FREQUENCY_HZ, 9, downlink=True, payload=17)
    delivered = 0
    for _ in range(5):
        # A gateway 105 dB away at 27 dBm: -78 dBm of SF9 down-chirps, 18 dB above ours.
        setup.channel.inject(
            "gateway",
            downlink,
            bytes(17),
            tx_power_dbm=27,
            airtime=0.2,
            path_loss_db=105,
            background=True,
        )
        setup.clock.advance(0.01)
        setup.radios["a"].send(b"update")
        setup.clock.advance(0.5)
        delivered += len(setup.frames("b"))
    stats = setup.channel.stats
    assert delivered == 0  # SF7 needs -9 dB against SF9: -18 dB is too little
    assert stats.inter_sf_lost == 5
    assert stats.background_lost == 5
    assert stats.background_frames == 5
    assert stats.foreign_preambles == 0  # inverted IQ: b never even locked onto them
    # A distant gateway (130 dB) leaves the link alone.
    setup.channel.inject(
        "gateway", downlink, bytes(17), tx_power_dbm=27, airtime=0.2, path_loss_db=130
    )
    setup.clock.advance(0.01)
    setup.radios["a"].send(b"update")
    setup.clock.advance(0.5)
    assert setup.frames("b") == [b"update"]


def test_an_inverted_downlink_at_our_sf_is_co_sf_interference():
    setup = bench(seed=5)
    setup.add("b", SF7)
    setup.add("a", SF7)
    same_sf = lorawan_params(RX2_FREQUENCY_HZ, 7, downlink=True, payload=17)
    setup.channel.inject(
        "gateway", same_sf, bytes(17), tx_power_dbm=27, airtime=0.2, path_loss_db=110
    )
    setup.clock.advance(0.01)
    setup.radios["a"].send(b"update")  # -86 dBm against -83 dBm
    setup.clock.advance(0.5)
    assert setup.frames("b") == []
    assert setup.channel.stats.co_sf_lost == 1


def test_frames_on_other_channels_leak_only_through_the_adjacent_channel_rejection():
    def hears_ours_next_to(uplink_loss_db: float) -> bool:
        setup = bench(seed=5)
        setup.add("b", SF7)
        setup.add("a", SF7)  # -86 dBm at b
        uplink = lorawan_params(868_100_000, 7, downlink=False, payload=25)
        setup.channel.inject(
            "device", uplink, bytes(25), tx_power_dbm=14, airtime=0.2, path_loss_db=uplink_loss_db
        )
        setup.clock.advance(0.01)
        setup.radios["a"].send(b"update")
        setup.clock.advance(0.5)
        assert setup.channel.stats.foreign_preambles == 0  # another channel: never detected
        return setup.frames("b") == [b"update"]

    assert hears_ours_next_to(60)  # -46 dBm 1.4 MHz away, 60 dB rejected: -106 dBm in band
    assert not hears_ours_next_to(40)  # a device beside the antenna: -86 dBm leaks in


# ---------------------------------------------------------------------- CAD query


def test_activity_reports_preamble_chirps_and_energy():
    setup = bench(seed=6)
    setup.add("b", SF7)
    a = setup.add("a", SF7)
    params = setup.chips["b"].air_params()
    quiet = setup.channel.activity("b", params)
    assert not quiet.preamble_detected and not quiet.chirps_detected
    assert quiet.energy_dbm == pytest.approx(quiet.noise_floor_dbm)
    a.send(PAYLOAD)
    setup.clock.advance(PREAMBLE_S / 2)
    during = setup.channel.activity("b", params)
    assert during.preamble_detected
    assert during.preamble_dbm == pytest.approx(-86.0, abs=0.5)
    assert during.energy_dbm == pytest.approx(-86.0, abs=0.5)
    assert not setup.channel.activity("b", _replace(params, sf=9)).chirps_detected
    assert not setup.channel.activity("b", _replace(params, invert_iq=True)).chirps_detected
    setup.clock.advance(PREAMBLE_S)
    payload = setup.channel.activity("b", params)
    assert payload.chirps_detected and not payload.preamble_detected
    # The past, while the frame is still kept: its preamble was on the air then.
    assert setup.channel.activity("b", params, at=during.at).preamble_detected
    assert setup.channel.channel_busy(setup.chips["b"], params)


# ---------------------------------------------------------------------- helpers


def _air(**changes: object) -> AirParams:
    return _replace(SF7_AIR, **changes)


def _replace(params: AirParams, **changes: object) -> AirParams:
    return dataclasses.replace(params, **changes)  # type: ignore[arg-type]


SF7_AIR = lorawan_params(EU_CHANNEL, 7, downlink=False, payload=10)
