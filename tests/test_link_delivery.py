"""Delivery policy: budgets, latest wins, fragments, NAKs, duplicates, commands and status."""

from __future__ import annotations

import bisect
import dataclasses
import itertools

import pytest

from p1lora.common.link import (
    LinkConfig,
    ReplyStatus,
    SerialState,
    TxStatus,
    parse_command,
    timing,
)
from p1lora.common.link.events import LinkEventAction
from p1lora.common.link.messages import Ack, AckKind, Batch, MessageError, Report
from p1lora.common.radio_types import ReceivedFrame
from p1lora.common.regions import Region, RegionError, SubBand
from tests.conftest import telegram_bytes
from tests.helpers_link import (
    Channel,
    Harness,
    budget_allowance,
    max_window_airtime,
    max_window_airtime_fast,
)

ONE_PERCENT = LinkConfig(frequency_hz=868_100_000)


def _assert_budget(h: Harness, config: LinkConfig) -> None:
    allowance = budget_allowance(config)
    for node in (h.tx, h.rx):
        used = max_window_airtime_fast(node.sent)
        assert used <= allowance + 1e-6, f"{node.name} used {used:.3f} s > {allowance} s"


def test_window_check_helpers_agree():
    h = Harness(channel=Channel(path_loss_db=110.0), tx_config=ONE_PERCENT, rx_config=ONE_PERCENT)
    h.run_until(900.0)
    assert max_window_airtime(h.tx.sent, 300.0) == pytest.approx(
        max_window_airtime_fast(h.tx.sent, 300.0)
    )


def test_budget_never_exceeded_in_any_hour_at_one_percent():
    h = Harness(channel=Channel(path_loss_db=112.0), tx_config=ONE_PERCENT, rx_config=ONE_PERCENT)
    h.run_until(2 * 3600.0)
    _assert_budget(h, ONE_PERCENT)
    # The budget is the limit, and it is used: the transmitter sends at the sustainable rate.
    assert max_window_airtime_fast(h.tx.sent) >= 0.8 * budget_allowance(ONE_PERCENT)
    assert h.delivered_ok()


def test_budget_holds_through_repeated_link_loss_and_handshakes():
    def loss(t: float) -> float:
        return 150.0 if int(t // 600) % 2 else 112.0  # ten minutes good, ten minutes nearly dead

    h = Harness(channel=Channel(path_loss_db=loss), tx_config=ONE_PERCENT, rx_config=ONE_PERCENT)
    h.run_until(2 * 3600.0)
    _assert_budget(h, ONE_PERCENT)
    assert h.tx.kinds().count("session_established") >= 2
    assert h.delivered_ok()


def test_every_telegram_at_sf7_bw250_fits_the_ten_percent_band():
    config = LinkConfig()
    h = Harness(channel=Channel(path_loss_db=108.0), seed=11)
    h.run_until(3600.0)
    _assert_budget(h, config)
    delivered = len(h.rx.delivered)
    assert delivered >= 0.97 * len(h.read)  # every 1 Hz DSMR 5 telegram, minus the handshake
    # About 31 ms per update: a third of the 10 % allowance, room for handshakes and retries.
    assert max_window_airtime_fast(h.tx.sent) < 0.4 * budget_allowance(config)


def test_latest_wins_under_a_one_percent_budget():
    latest = dataclasses.replace(ONE_PERCENT, batch_max=1)  # the first design: no batches
    h = Harness(channel=Channel(path_loss_db=110.0), tx_config=latest, rx_config=latest)
    h.run_until(1800.0)
    read_times = [t for t, _ in h.read]
    index = {raw: i for i, (_, raw) in enumerate(h.read)}
    positions = [index[raw] for _, raw in h.rx.delivered]
    assert positions == sorted(positions)  # never an older telegram after a newer one
    # Updates travel in DATA frames, or in STATUS frames when a status report rides along.
    sends = [a.start for a in h.tx.sent if a.frame_type in ("DATA", "STATUS")]
    assert not [a for a in h.tx.sent if a.frame_type == "BATCH"]
    for (received_at, _raw), pos in zip(h.rx.delivered, positions, strict=True):
        sent_at = sends[bisect.bisect_right(sends, received_at) - 1]
        # When its frame left, no newer telegram had been read: it was the newest one.
        newer = bisect.bisect_right(read_times, sent_at + 1e-9)
        assert newer == pos + 1, f"telegram {pos} sent at {sent_at} while {newer - 1} existed"
    # ... and at the fastest rate both budgets sustain (pacing of our frame and the ack).
    settings = h.tx_link.settings
    gap = timing.pacing_gap(latest, settings, 25)
    steady = [t for t, _ in h.rx.delivered if t > 300.0]
    assert len(steady) >= 0.8 * (1800.0 - 300.0) / gap
    assert len(steady) < (1800.0 - 300.0) / 3.0  # far fewer than the 1 Hz telegrams
    assert h.tx_link.diagnostics(h.clock.now()).telegrams["superseded"] > 1000


def test_a_one_percent_budget_carries_the_newest_telegrams_in_batches():
    h = Harness(channel=Channel(path_loss_db=110.0), tx_config=ONE_PERCENT, rx_config=ONE_PERCENT)
    h.run_until(1800.0)
    read_times = [t for t, _ in h.read]
    index = {raw: i for i, (_, raw) in enumerate(h.read)}
    positions = [index[raw] for _, raw in h.rx.delivered]
    assert positions == sorted(positions)  # in order, none twice
    assert len(set(positions)) == len(positions)
    frames = [a for a in h.tx.sent if a.frame_type in ("DATA", "BATCH", "STATUS")]
    assert sum(a.frame_type == "BATCH" for a in frames) > 0.8 * len(frames)
    # Each frame carried the newest `batch_max` telegrams read before it left.
    by_frame: dict[float, list[int]] = {}
    sends = [a.start for a in frames]
    for (received_at, _raw), pos in zip(h.rx.delivered, positions, strict=True):
        by_frame.setdefault(sends[bisect.bisect_right(sends, received_at) - 1], []).append(pos)
    for sent_at, carried in list(by_frame.items())[5:]:
        newest = bisect.bisect_right(read_times, sent_at + 1e-9) - 1
        assert carried == list(range(newest - ONE_PERCENT.batch_max + 1, newest + 1)), sent_at
    # Three telegrams cost far less than three frames: 1.5 times the latest-wins rate.
    gap = timing.pacing_gap(ONE_PERCENT, h.tx_link.settings, 25)
    steady = [t for t, _ in h.rx.delivered if t > 300.0]
    assert len(steady) >= 1.4 * (1800.0 - 300.0) / gap
    _assert_budget(h, ONE_PERCENT)


def _dwell_config() -> LinkConfig:
    region = Region(
        name="TESTDWELL",
        description="a 10 % band with a 50 ms dwell cap, to force fragmentation",
        sub_bands=(
            SubBand("test", 869_400_000, 869_650_000, 0.10, 500, 20, 250_000, max_dwell_s=0.05),
        ),
        default_frequency_hz=869_525_000,
        rendezvous_sf=7,
        rendezvous_bw_hz=250_000,
    )
    return LinkConfig(region=region)


def test_key_updates_fragment_and_reassemble_resending_only_lost_fragments():
    config = _dwell_config()
    h = Harness(
        channel=Channel(path_loss_db=105.0, uplink_loss=0.2),
        tx_config=config,
        rx_config=config,
        seed=4,
    )
    h.run_until(30.0)
    for t in (40.0, 80.0, 120.0):  # the receiver forgets its references: key updates follow
        h.run_until(t)
        h.rx_link._references.clear()
    h.run_until(160.0)
    fragmented = [f for _, kind, f in h.tx.events if kind == "fragmented"]
    assert len(fragmented) >= 3
    assert all(int(f["fragments"]) >= 3 for f in fragmented)  # type: ignore[call-overload]
    fragments = [a for a in h.tx.sent if a.frame_type == "FRAGMENT"]
    needed = sum(int(f["fragments"]) for f in fragmented)  # type: ignore[call-overload]
    lost = sum(1 for a in fragments if not a.heard)
    assert lost > 0
    # Every extra fragment frame replaced one that was lost: nothing else was resent.
    assert len(fragments) <= needed + lost
    assert all(len(a.payload) and a.airtime <= 0.05 for a in h.tx.sent)
    assert h.delivered_ok()
    assert len(h.rx.delivered) > 100


def test_dwell_limit_too_short_for_the_handshake_is_a_config_error():
    region = Region(
        name="TOOSHORT",
        description="",
        sub_bands=(SubBand("x", 869_400_000, 869_650_000, 0.1, 500, 20, max_dwell_s=0.01),),
        default_frequency_hz=869_525_000,
    )
    with pytest.raises(RegionError, match="dwell"):
        LinkConfig(region=region)


def test_missing_reference_is_nakked_and_healed_by_a_key_update():
    h = Harness(channel=Channel(path_loss_db=108.0))
    h.run_until(60.0)
    h.rx_link._references.clear()
    h.run_until(90.0)
    assert h.tx_link.diagnostics(h.clock.now()).telegrams["nak"] >= 1
    assert h.rx_link.diagnostics(h.clock.now()).telegrams["decode_failed"] >= 1
    recent = [t for t, _ in h.rx.delivered if t > 62.0]
    assert len(recent) >= 25
    assert h.delivered_ok()


def test_lost_acks_cause_exact_resends_and_no_double_delivery():
    h = Harness(channel=Channel(path_loss_db=108.0, downlink_loss=0.3), seed=8)
    h.run_until(600.0)
    telegrams = [raw for _, raw in h.rx.delivered]
    assert len(telegrams) == len(set(telegrams))
    assert h.rx_link.diagnostics(h.clock.now()).telegrams["duplicate_frames"] > 10
    assert h.delivered_ok()
    # Resends are byte-identical frames, so the receiver never saw a replay.
    assert "replay" not in h.rx_link.rejected


def test_commands_round_trip_and_take_effect():
    h = Harness(channel=Channel(path_loss_db=108.0))
    h.run_until(30.0)

    def command(text: str, wait: float = 20.0):
        cid = h.rx_link.queue_command(parse_command(text), h.clock.now())
        h.run_for(wait)
        replies = [r for r in h.rx.replies if r.command_id == cid]
        assert len(replies) == 1, text
        return replies[0]

    info = command("info")
    assert info.status is ReplyStatus.OK and "SF7/BW250" in info.text
    assert command("set interval 5").status is ReplyStatus.OK
    assert h.tx_link.interval_s == 5.0
    start = len(h.rx.delivered)
    h.run_for(60.0)
    assert 10 <= len(h.rx.delivered) - start <= 13  # one telegram per 5 s now
    fixed = command("set radio fixed 9 125", wait=40.0)
    assert fixed.status is ReplyStatus.OK
    assert (h.tx_link.settings.sf, h.tx_link.settings.bw_hz) == (9, 125_000)
    assert (h.rx_link.settings.sf, h.rx_link.settings.bw_hz) == (9, 125_000)
    refused = command("set radio fixed 7 500")
    assert refused.status is ReplyStatus.ERROR and "500 kHz" in refused.text
    assert command("log level debug").status is ReplyStatus.OK
    assert [r.argument for r in h.tx.runs if r.name == "log_level"] == ["debug"]
    assert command("set radio auto", wait=60.0).status is ReplyStatus.OK
    assert (h.tx_link.settings.sf, h.tx_link.settings.bw_hz) == (7, 250_000)
    restart = command("restart")
    assert restart.status is ReplyStatus.OK
    assert [r.name for r in h.tx.runs].count("restart") == 1  # after the reply was acked
    # The mode and interval set by command survive the restart the runtime performs.
    h.restart_tx(keep_state=True)
    assert h.tx_link.interval_s == 5.0


def test_commands_survive_lost_acks_and_replies_are_executed_once():
    h = Harness(channel=Channel(path_loss_db=108.0, downlink_loss=0.4, uplink_loss=0.3), seed=2)
    h.run_until(60.0)
    cid = h.rx_link.queue_command(parse_command("log level info"), h.clock.now())
    h.run_for(120.0)
    replies = [r for r in h.rx.replies if r.command_id == cid]
    assert [r.status for r in replies] == [ReplyStatus.OK]
    assert [r.argument for r in h.tx.runs] == ["info"]  # executed exactly once


def test_command_times_out_when_the_link_is_down():
    config = LinkConfig(command_timeout_s=120.0)
    h = Harness(
        channel=Channel(path_loss_db=lambda t: 200.0 if t > 40.0 else 108.0),
        tx_config=config,
        rx_config=config,
    )
    h.run_until(50.0)
    cid = h.rx_link.queue_command(parse_command("info"), h.clock.now())
    h.run_for(130.0)
    replies = [r for r in h.rx.replies if r.command_id == cid]
    assert [r.status for r in replies] == [ReplyStatus.TIMEOUT]


def test_status_reports_reach_the_receiver():
    config = LinkConfig(status_interval_s=60.0)
    h = Harness(channel=Channel(path_loss_db=108.0), tx_config=config, rx_config=config)
    h.tx_link.update_status(TxStatus(SerialState.OK, 1234, 2, 1, 99.0))
    h.run_until(200.0)
    assert len(h.rx.statuses) >= 3
    status = h.rx.statuses[-1].status
    assert status.serial_state is SerialState.OK
    assert (status.telegrams_read, status.crc_errors, status.other_errors) == (1234, 2, 1)
    assert status.updates_acked > 100
    assert 0 < status.airtime_used < 0.3
    diagnostics = h.rx_link.diagnostics(h.clock.now())  # both directions known at home too
    assert diagnostics.downlink_snr_db == status.downlink_snr_db is not None
    assert diagnostics.uplink_snr_db is not None
    assert any(kind == "status" for _, kind, _ in h.rx.events)


def test_idle_transmitter_keeps_the_link_alive_with_keepalives_and_status_reports():
    h = Harness(channel=Channel(path_loss_db=108.0), telegram_interval=None)
    h.run_until(1000.0)
    assert h.rx_link.state == "running"  # keepalives stop the silence timeout
    assert h.rx.delivered == []
    # Keepalives are the smallest acknowledged frame: a PROBE without padding (14 bytes).
    interval = timing.keepalive_interval(LinkConfig(), h.tx_link.settings)
    keepalives = [a for a in h.tx.sent if a.frame_type == "PROBE" and len(a.payload) == 14]
    assert len(keepalives) >= 0.8 * 1000.0 / interval
    # Never silent for longer than the slowest legal send interval the receiver assumes.
    starts = [a.start for a in h.tx.sent if a.start > 20.0]
    longest = max(b - a for a, b in itertools.pairwise(starts))
    assert longest <= timing.max_send_interval(LinkConfig(), h.tx_link.settings)
    # Full status reports still reach home, at the status interval.
    assert 1000.0 / LinkConfig().status_interval_s - 1 <= len(h.rx.statuses) <= 6


def test_identical_telegrams_of_a_meter_without_clock_are_all_delivered():
    # DSMR 2.2/3 meters print no timestamp: an unchanged reading is the same telegram every
    # 10 s, and each one must reach Home Assistant (or expire_after marks it unavailable).
    same = telegram_bytes("DSMR22_ISKRA_MT382_REAL.txt")
    h = Harness(channel=Channel(path_loss_db=108.0), telegram_interval=10.0, telegrams=lambda: same)
    h.run_until(300.0)
    read_after_start = [t for t, _ in h.read if t > 30.0]
    delivered_after_start = [t for t, _ in h.rx.delivered if t > 30.0]
    assert len(read_after_start) >= 25
    assert len(delivered_after_start) >= len(read_after_start) - 1
    assert h.delivered_ok()


def test_a_late_ack_is_reported_before_the_command_it_carries():
    """An observer pairing ACKs with the frames they answer (the link log) decides from the
    link's next event: the `late_ack` verdict must come before the events of a command the
    ACK carried, or the ACK is credited to the frame still waiting for its own."""
    h = Harness(channel=Channel(path_loss_db=108.0))
    h.run_until(30.0)
    tx_link = h.tx_link
    out = tx_link._outstanding  # the frame in flight, if any
    counter_low = ((out.counter + 1) if out is not None else 0) & 0xFFFF  # answers nothing
    ack = Ack(AckKind.DATA, counter_low, 0, Report(-80.0, 5.0), 7, parse_command("info"))
    frame = ReceivedFrame(b"", -80.0, 5.0, tx_link.settings, h.clock.now())
    tx_link.actions()  # what the harness has not collected yet is not this ACK's
    tx_link._on_ack(h.clock.now(), ack, frame)  # an authentic but late ACK
    kinds = [a.kind for a in tx_link.actions() if isinstance(a, LinkEventAction)]
    assert "late_ack" in kinds and "command" in kinds, kinds
    assert kinds.index("late_ack") < kinds.index("command"), kinds


def test_batches_survive_lost_acks_without_a_telegram_twice_or_out_of_order():
    # Every third ack lost: the transmitter resends a batch, or encodes its telegrams again
    # with newer ones; the receiver must deliver each telegram once, in order, and never
    # lose the reference the transmitter encodes against.
    # No resends of the same body: a lost ack always has the telegrams encoded again.
    config = dataclasses.replace(ONE_PERCENT, max_retries=0)
    channel = Channel(path_loss_db=110.0, downlink_loss=0.33, uplink_loss=0.1)
    h = Harness(channel=channel, tx_config=config, rx_config=ONE_PERCENT, seed=5)
    h.run_until(1200.0)
    index = {raw: i for i, (_, raw) in enumerate(h.read)}
    positions = [index[raw] for _, raw in h.rx.delivered]
    assert len(positions) > 100
    assert positions == sorted(positions)
    assert len(set(positions)) == len(positions)
    assert any(a.frame_type == "BATCH" for a in h.tx.sent)
    telegrams = h.rx_link.diagnostics(h.clock.now()).telegrams
    assert telegrams.get("decode_failed", 0) == 0  # the reference was always held
    assert h.delivered_ok()


def test_a_batch_body_round_trips_and_refuses_what_does_not_parse():
    updates = (b"\x31\x00\x01first", b"\x32second", bytes(255))
    body = Batch(updates).encode()
    assert len(body) == Batch.size_of(list(updates))
    assert Batch.decode(body) == Batch(updates)
    for bad in (body[:-1], b"\x05abc", b"\x03abc"):  # cut short; one update only
        with pytest.raises(MessageError):
            Batch.decode(bad)
    with pytest.raises(MessageError):
        Batch((b"only one",))
    with pytest.raises(MessageError):
        Batch((b"a", b""))
