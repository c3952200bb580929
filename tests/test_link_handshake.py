"""Handshake, auto-tune and recovery, in virtual time over the harness channel."""

from __future__ import annotations

import itertools
import statistics

import pytest

from p1lora.common.link import FixedRadio, LinkConfig, RadioMode, timing
from p1lora.common.link.messages import Discover
from p1lora.common.link.tuning import candidate_table, choose_target
from tests.helpers_link import (
    Channel,
    Harness,
    noise_floor_dbm,
    path_loss_for_snr,
    record_nonces,
)

EU = LinkConfig()


def _rung(settings) -> tuple[int, int]:
    return (settings.sf, settings.bw_hz)


def _rank(rung: tuple[int, int]) -> int:
    return [c.key for c in candidate_table(EU)].index(rung)


def test_cold_start_converges_to_sf7_bw250_within_a_minute():
    h = Harness(channel=Channel(path_loss_db=105.0))
    reached = h.run_until_state("running", 60.0, (7, 250_000))
    assert reached <= 60.0
    h.run_until(300.0)
    tx, rx = h.tx_link, h.rx_link
    assert _rung(tx.settings) == _rung(rx.settings) == (7, 250_000)
    assert tx.state == rx.state == "running"
    assert tx.last_known_good.sf == 7
    assert isinstance(h.tx.link_state, object) and h.tx.link_state is not None
    # Byte-exact delivery of (nearly) every 1 Hz telegram, small frames.
    assert h.delivered_ok()
    assert len(h.rx.delivered) >= 0.95 * len(h.read)
    data = [len(a.payload) for a in h.tx.sent if a.frame_type == "DATA"]
    assert statistics.median(data) <= 40
    assert h.tx.persist_order_ok and h.rx.persist_order_ok
    # Large margin at the fastest rung: the transmitter turned its power down (keeping margin).
    assert tx.settings.tx_power_dbm < EU.max_tx_power()
    assert tx.rejected == {} and rx.rejected == {}


def test_weak_link_settles_on_the_fastest_rung_that_holds():
    snr_125 = -4.0  # needs about SF9 at 250 kHz with a 5 dB margin
    h = Harness(channel=Channel(path_loss_db=path_loss_for_snr(snr_125)), seed=3)
    h.run_until(900.0)
    table = candidate_table(EU)
    expected = choose_target(table, snr_125, snr_125, EU.snr_margin_db).key
    final = _rung(h.tx_link.settings)
    assert abs(_rank(final) - _rank(expected)) <= 1, (final, expected)
    assert _rung(h.rx_link.settings) == final
    # It holds: in the last 5 minutes nearly every update frame was acknowledged.
    recent = [t for t, _ in h.rx.delivered if t > 600.0]
    sent = [a for a in h.tx.sent if a.frame_type == "DATA" and a.start > 600.0]
    assert sent and len(recent) >= 0.9 * len(sent)
    assert h.delivered_ok()


def test_degradation_mid_run_and_recovery():
    def loss(t: float) -> float:
        return 142.0 if 300.0 <= t < 900.0 else 108.0

    h = Harness(channel=Channel(path_loss_db=loss), seed=5)
    h.run_until(299.0)
    assert _rung(h.tx_link.settings) == (7, 250_000)
    h.run_until(899.0)
    degraded = _rung(h.tx_link.settings)
    assert _rank(degraded) >= _rank((10, 250_000))  # much slower, but the link holds
    during = [t for t, _ in h.rx.delivered if 600.0 < t < 899.0]
    assert during, "telegrams must still arrive on the degraded link"
    h.run_until(1300.0)
    assert _rung(h.tx_link.settings) == (7, 250_000)  # moved back up on margin
    assert h.rx_link.state == "running"
    assert h.delivered_ok()


def test_partial_degradation_steps_down_without_losing_the_link():
    snr_at_250 = -7.5  # right at SF7's floor: about half the frames get through
    pl = 14 - noise_floor_dbm(250_000) - snr_at_250

    h = Harness(channel=Channel(path_loss_db=lambda t: pl if t >= 200.0 else 105.0), seed=7)
    h.run_until(600.0)
    assert _rank(_rung(h.tx_link.settings)) > _rank((7, 250_000))
    assert h.tx_link.state == "running"
    kinds = [k for t, k, _ in h.tx.events if t > 200.0]
    assert "switch_committed" in kinds and "link_lost" not in kinds
    # Settled: every update the new rung's budget sustains arrives (SF9/BW250 has exactly the
    # 5 dB margin at this loss, SF10/BW250 7.5 dB; either is a correct choice).
    assert _rank(_rung(h.tx_link.settings)) <= _rank((10, 250_000))
    gap = timing.pacing_gap(EU, h.tx_link.settings, 27)
    late = [t for t, _ in h.rx.delivered if t > 400.0]
    assert len(late) >= 0.9 * 200.0 / gap


def test_receiver_reboot_without_state_goes_back_to_the_rendezvous():
    h = Harness(channel=Channel(path_loss_db=110.0))
    h.run_until(100.0)
    before = len(h.rx.delivered)
    h.restart_rx(keep_state=False)
    assert _rung(h.rx_link.settings) == (12, 125_000)
    h.run_until(250.0)
    assert "link_lost" in h.tx.kinds()
    assert _rung(h.tx_link.settings) == _rung(h.rx_link.settings) == (7, 250_000)
    assert h.rx_link.state == "running"
    after = [t for t, _ in h.rx.delivered[before:]]
    assert after and after[0] < 100.0 + 90.0  # back within about a minute and a half
    assert h.delivered_ok()


def test_receiver_reboot_with_state_resynchronises_without_the_rendezvous():
    h = Harness(channel=Channel(path_loss_db=110.0))
    h.run_until(100.0)
    h.restart_rx(keep_state=True)
    assert h.rx_link.state == "resume"
    assert _rung(h.rx_link.settings) == (7, 250_000)
    h.run_until(130.0)
    assert "resync_sent" in h.rx.kinds()
    assert "resync" in h.tx.kinds()
    assert "link_lost" not in h.tx.kinds()
    assert h.rx_link.state == "running" and h.rx_link.session_active
    assert any(t > 105.0 for t, _ in h.rx.delivered[-5:])


def test_transmitter_reboot_continues_counters_without_replays_or_nonce_reuse(monkeypatch):
    nonces = record_nonces(monkeypatch)
    h = Harness(channel=Channel(path_loss_db=110.0))
    h.run_until(100.0)
    reservation = h.tx.counter_state
    assert reservation is not None
    h.restart_tx(keep_state=True)
    assert h.tx_link.state == "handshake"  # resumes at the last known good setting
    assert _rung(h.tx_link.settings) == (7, 250_000)
    assert h.tx_link._security.counter.next_value == reservation.reserved_until
    h.run_until(200.0)
    assert h.tx_link.state == "running"
    assert "link_lost" not in h.tx.kinds() and h.rx_link.state == "running"
    assert h.rx_link.rejected == {}  # no legitimate frame was taken for a replay
    assert any(t > 101.0 for t, _ in h.rx.delivered)
    assert len(nonces) > 100
    assert len(set(nonces)) == len(nonces), "a (key, nonce) pair was used twice"


def test_transmitter_losing_its_counter_store_still_never_reuses_a_nonce(monkeypatch):
    nonces = record_nonces(monkeypatch)
    h = Harness(channel=Channel(path_loss_db=110.0))
    h.run_until(100.0)
    h.restart_tx(keep_state=False)  # counters start at 0 again
    h.run_until(600.0)
    assert h.tx_link.state == "running" and h.rx_link.state == "running"
    assert any(t > 400.0 for t, _ in h.rx.delivered)
    assert len(set(nonces)) == len(nonces)


def test_restart_at_last_known_good_falls_back_to_the_rendezvous():
    h = Harness(channel=Channel(path_loss_db=110.0))
    h.run_until(60.0)
    h.restart_rx(keep_state=False)
    h.restart_tx(keep_state=True)
    assert h.tx_link.state == "handshake"
    h.run_until(200.0)
    discovers = [a for a in h.tx.sent if a.frame_type == "DISCOVER" and a.start >= 60.0]
    assert _rung(discovers[0].settings) == (7, 250_000)
    assert any(_rung(a.settings) == (12, 125_000) for a in discovers)
    assert h.tx_link.state == "running" and _rung(h.tx_link.settings) == (7, 250_000)


def test_downlink_failure_sends_the_transmitter_back_to_the_rendezvous():
    h = Harness(channel=Channel(path_loss_db=110.0, downlink_blocked=lambda t: t >= 100.0))
    h.run_until(100.0)
    h.run_until(100.0 + EU.link_lost_min_s + 15.0)
    assert h.tx_link.state in ("rendezvous", "handshake")
    assert "link_lost" in h.tx.kinds()
    # The receiver still heard data until the transmitter left; then it times out as well.
    silence = timing.silence_timeout(EU, EU.settings(7, 250_000))
    h.run_until(100.0 + EU.link_lost_min_s + 15.0 + silence)
    assert h.rx_link.state in ("rendezvous", "handshake")


def test_uplink_failure_makes_the_receiver_time_out_after_the_legal_silence():
    h = Harness(channel=Channel(path_loss_db=110.0, uplink_blocked=lambda t: t >= 100.0))
    h.run_until(100.0)
    silence = timing.silence_timeout(EU, h.rx_link.settings)
    h.run_until(100.0 + silence - 5.0)
    assert h.rx_link.state == "running"  # never before the slowest legal send interval...
    h.run_until(100.0 + silence + 5.0)
    assert h.rx_link.state == "rendezvous"  # ...but then it goes to meet the transmitter
    assert _rung(h.rx_link.settings) == (12, 125_000)
    assert h.tx_link.state in ("rendezvous", "handshake")


def test_fixed_mode_uses_the_given_settings():
    fixed = LinkConfig(mode=RadioMode.FIXED, fixed=FixedRadio(9, 125_000, 10))
    h = Harness(channel=Channel(path_loss_db=100.0), tx_config=fixed)
    h.run_until(300.0)
    assert _rung(h.tx_link.settings) == _rung(h.rx_link.settings) == (9, 125_000)
    assert h.tx_link.settings.tx_power_dbm == 10
    assert h.tx_link.mode is RadioMode.FIXED
    assert "power" not in h.tx.kinds()  # no power control in fixed mode
    assert len(h.rx.delivered) > 50


@pytest.mark.parametrize("frequency", [869_525_000, 868_100_000])
def test_never_wider_or_louder_than_the_sub_band_allows(frequency):
    config = LinkConfig(frequency_hz=frequency)
    h = Harness(channel=Channel(path_loss_db=95.0), tx_config=config, rx_config=config)
    h.run_until(600.0)
    band = config.sub_band()
    for air in h.air:
        assert air.settings.bw_hz <= band.max_bw_hz
        assert band.contains(air.settings.frequency_hz, air.settings.bw_hz)
        assert air.settings.tx_power_dbm <= band.max_tx_power_dbm


def test_an_unanswered_discover_meets_the_receiver_at_the_fast_rendezvous():
    # The first CHALLENGE dies (as under a neighbour's frame in a meter room): the next
    # DISCOVER asks the receiver to follow, and the handshake completes at SF7/BW250 with a
    # CHALLENGE of milliseconds, without a SWITCH from the SF12 rendezvous.
    config = LinkConfig()
    fast = timing.fast_rendezvous(config)
    assert fast is not None and (fast.sf, fast.bw_hz) == (7, 250_000)
    channel = Channel(path_loss_db=110.0, downlink_blocked=lambda t: t < 3.0)
    h = Harness(channel=channel)
    h.run_until(60.0)
    challenges = [a for a in h.rx.sent if a.frame_type == "CHALLENGE"]
    assert [a.settings.sf for a in challenges] == [12, 7]
    discovers = [(a.settings.sf, a.start) for a in h.tx.sent if a.frame_type == "DISCOVER"]
    assert [sf for sf, _ in discovers] == [12, 12, 7]
    established = [f for _, kind, f in h.tx.events if kind == "session_established"]
    assert established and established[0]["settings"] == "SF7/BW250"
    assert not [a for a in h.tx.sent if a.frame_type == "SWITCH"]
    assert h.delivered_ok() and h.rx.delivered


def test_a_receiver_that_hears_the_discover_too_weakly_answers_at_the_rendezvous():
    # 145 dB: SF7/BW250 would not carry; the receiver answers the follow request at SF12.
    channel = Channel(path_loss_db=145.0, downlink_blocked=lambda t: t < 3.0)
    h = Harness(channel=channel)
    h.run_until(120.0)
    challenges = [a.settings.sf for a in h.rx.sent if a.frame_type == "CHALLENGE"]
    assert challenges == [12, 12]
    follows = [a for a in h.tx.sent if a.frame_type == "DISCOVER" and a.settings.sf == 7]
    assert not follows  # the answer came at the rendezvous: no need to try the fast one
    established = [f for _, kind, f in h.tx.events if kind == "session_established"]
    assert established and established[0]["settings"] == "SF12/BW125"


def test_the_discover_follow_flag_round_trips():
    for resume, follow in itertools.product((False, True), repeat=2):
        discover = Discover(resume, -3, follow)
        assert Discover.decode(discover.encode()) == discover
    assert Discover.decode(bytes((0x01, 14))) == Discover(True, 14, False)  # older senders
