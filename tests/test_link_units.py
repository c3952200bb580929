"""The link's building blocks: bodies, commands, fragments, tuning table and timing formulas."""

from __future__ import annotations

import contextlib
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link import timing
from p1lora.common.link.command_exec import ReplyQueue
from p1lora.common.link.commands import (
    Command,
    CommandCode,
    CommandSyntaxError,
    ReplyStatus,
    parse_command,
)
from p1lora.common.link.config import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.events import RunCommand
from p1lora.common.link.fragments import Reassembler, split
from p1lora.common.link.messages import (
    Ack,
    AckKind,
    Challenge,
    Discover,
    FragmentHeader,
    MessageError,
    Probe,
    Reply,
    Report,
    Resync,
    SerialState,
    StatusMessage,
    Switch,
)
from p1lora.common.link.persist import (
    DiscoverBinding,
    RxPersistentState,
    TxPersistentState,
    settings_to_dict,
)
from p1lora.common.link.rx_commands import CommandQueue
from p1lora.common.link.tuning import (
    DEMODULATION_FLOOR_DB,
    bw_offset_db,
    candidate_table,
    choose_target,
    margin_db,
)
from p1lora.common.regions import RegionError, get_region

EU = LinkConfig()
EU_1PCT = LinkConfig(frequency_hz=868_100_000)
US = LinkConfig(region=get_region("US915"))


# -- bodies ---------------------------------------------------------------------------------


def test_bodies_round_trip():
    report = Report(-97.0, -3.25, 0.125)
    cases = [
        (Discover(True, 14), Discover.decode),
        (Challenge(report, 14, 0xBEEF), Challenge.decode),
        (Challenge(report, -4, None), Challenge.decode),
        (Resync(bytes(range(8))), Resync.decode),
        (Probe(7, b"\x00" * 20), Probe.decode),
        (Switch(9, 7, 250_000), Switch.decode),
        (Reply(3, ReplyStatus.ERROR, "bad bandwidth", 0xBEEF), Reply.decode),
        (Ack(AckKind.DATA, 0xFFFF, 0x1234, report), Ack.decode),
        (
            Ack(AckKind.PROBE, 1, 2, report, 5, Command(CommandCode.SET_INTERVAL, interval_s=2.5)),
            Ack.decode,
        ),
    ]
    for message, decode in cases:
        assert decode(message.encode()) == message


def test_ack_is_eight_bytes_and_reports_are_compact():
    ack = Ack(AckKind.DATA, 1, 2, Report(-120.0, -17.5, None))
    assert len(ack.encode()) == 8
    decoded = Report.decode(Report(-300.0, 99.0, 7.0).encode())
    assert decoded == Report(-255.0, 31.75, 1.0)  # clamped, never wrapped


def test_status_message_round_trip():
    status = StatusMessage(
        SerialState.ERROR, True, 11, 0.5, 0.015, 86_400 * 30, 10**7, 12, 3, 7.5, 99_999, 99_000, 5
    )
    assert StatusMessage.decode(status.encode()) == status
    heard = StatusMessage(SerialState.OK, False, 2, 0, 0, 1, 2, 3, 4, 0, 5, 6, 7, -101.0, -3.75)
    assert StatusMessage.decode(heard.encode()) == heard
    assert status.as_fields()["serial_state"] == "error"


@pytest.mark.parametrize(
    ("decode", "data"),
    [
        (Discover.decode, b"\x01"),
        (Challenge.decode, b"\x00" * 6),
        (Switch.decode, b"\x01\x07\x0f"),
        (Ack.decode, b"\x09" + b"\x00" * 7),
        (Ack.decode, b"\x01" + b"\x00" * 7 + b"\x01\x7f"),
        (Reply.decode, b"\x01"),
        (StatusMessage.decode, b"\x01" * 12),
        (StatusMessage.decode, bytes(7) + b"\x80" * 8),
        (FragmentHeader.split, b"\x01\x21"),
        (Probe.decode, b""),
    ],
)
def test_malformed_bodies_raise_message_error(decode, data):
    with pytest.raises(MessageError):
        decode(data)


# -- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "info",
        "retune",
        "set interval 5",
        "set interval 0.5",
        "set radio auto",
        "set radio fixed 9 125",
        "set radio fixed 7 250 10",
        "set radio fixed 12 62.5 -2",
        "restart",
        "log level debug",
    ],
)
def test_commands_round_trip_text_and_wire(text):
    command = parse_command(text)
    assert str(command) == text
    assert Command.decode(command.encode()) == command


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("reboot", "unknown command"),
        ("set interval soon", "not a number"),
        ("set interval 4000", "0..3600"),
        ("set interval nan", "finite"),
        ("set radio fixed 13 125", "spreading factor"),
        ("set radio fixed 7 300", "bandwidth must be one of"),
        ("set radio fixed 7 125 30", "TX power"),
        ("log level loud", "log level must be one of"),
    ],
)
def test_bad_commands_explain_themselves(text, message):
    with pytest.raises(CommandSyntaxError, match=message):
        parse_command(text)


def test_command_wire_form_is_validated():
    with pytest.raises(CommandSyntaxError):
        Command.decode(b"")
    with pytest.raises(CommandSyntaxError):
        Command.decode(b"\x63")
    with pytest.raises(CommandSyntaxError):
        Command.decode(b"\x05\x07\x20\x00")  # bandwidth index out of range
    with pytest.raises(CommandSyntaxError):
        Command.decode(b"\x01\x00")  # trailing argument bytes


# -- fragments -----------------------------------------------------------------------------


def test_split_balances_and_limits():
    chunks = split(bytes(range(200)) * 3, 240)
    assert [len(c) for c in chunks] == [200, 200, 200]
    assert b"".join(chunks) == bytes(range(200)) * 3
    with pytest.raises(ValueError, match="at most 16"):
        split(b"x" * 1000, 50)


@given(st.integers(1, 1500), st.integers(20, 240), st.integers(0, 2**32))
def test_reassembly_with_loss_duplicates_and_reordering(size, chunk, seed):
    rnd = random.Random(seed)
    payload = rnd.randbytes(size)
    try:
        chunks = split(payload, chunk)
    except ValueError:
        return
    reassembler = Reassembler()
    pending = list(range(len(chunks)))
    result = None
    while result is None:
        index = rnd.choice(pending)
        if rnd.random() < 0.3:
            continue  # lost on the way: only missing fragments are sent again
        result = reassembler.add(FragmentHeader(9, index, len(chunks)), chunks[index])
        if result is None:
            held = reassembler.bitmap
            pending = [i for i in range(len(chunks)) if not held >> i & 1]
    assert result == payload
    assert reassembler.completed_tag == 9


def test_newer_update_discards_unfinished_one():
    reassembler = Reassembler()
    assert reassembler.add(FragmentHeader(1, 0, 3), b"old0") is None
    assert reassembler.add(FragmentHeader(2, 0, 2), b"new0") is None  # latest wins
    assert reassembler.discarded == 1
    assert reassembler.bitmap == 0b01
    assert reassembler.add(FragmentHeader(2, 1, 2), b"new1") == b"new0new1"
    with pytest.raises(MessageError):
        FragmentHeader(1, 3, 3)
    reassembler.add(FragmentHeader(5, 0, 2), b"a")
    with pytest.raises(MessageError, match="conflicts"):
        reassembler.add(FragmentHeader(5, 0, 2), b"b")


# -- tuning --------------------------------------------------------------------------------


def test_ladder_respects_sub_band_and_dwell():
    eu = candidate_table(EU)
    assert (eu[0].sf, eu[0].bw_hz) == (7, 250_000)  # fastest first
    assert (eu[-1].sf, eu[-1].bw_hz) == (12, 125_000)  # the rendezvous is the bottom
    assert max(c.bw_hz for c in eu) == 250_000  # 869.4-869.65 MHz: never 500 kHz
    one = candidate_table(EU_1PCT)
    assert {c.bw_hz for c in one} == {125_000}  # 250 kHz does not fit around 868.1 MHz
    us = candidate_table(US)
    assert all(c.typical_airtime_s <= 0.4 for c in us)
    airtimes = [c.typical_airtime_s for c in eu]
    assert airtimes == sorted(airtimes)
    # No rung is both slower and less sensitive than another (dominated rungs are gone).
    for a in eu:
        for b in eu:
            assert not (
                b.typical_airtime_s < a.typical_airtime_s and b.required_125_db < a.required_125_db
            )


def test_snr_drops_three_db_per_bandwidth_doubling():
    assert bw_offset_db(250_000) == pytest.approx(3.01, abs=0.01)
    assert bw_offset_db(500_000) == pytest.approx(6.02, abs=0.01)
    sf7_250 = candidate_table(EU)[0]
    assert sf7_250.required_125_db == pytest.approx(DEMODULATION_FLOOR_DB[7] + 3.01, abs=0.01)


def test_target_is_the_fastest_rung_with_margin_in_both_directions():
    table = candidate_table(EU)
    assert (
        choose_target(table, 10.0, 10.0, 5.0).sf,
        choose_target(table, 10.0, 10.0, 5.0).bw_hz,
    ) == (
        7,
        250_000,
    )
    # SF7/250 needs -4.5 dB at 125 kHz: with a 5 dB margin, 0.4 dB is not enough.
    chosen = choose_target(table, 0.4, 10.0, 5.0)
    assert (chosen.sf, chosen.bw_hz) == (8, 250_000)
    # The weaker direction decides.
    assert choose_target(table, 10.0, -12.0, 5.0) == choose_target(table, -12.0, 10.0, 5.0)
    weak = choose_target(table, -12.0, 10.0, 5.0)
    assert margin_db(weak, -12.0, 10.0) >= 5.0
    assert choose_target(table, -30.0, -30.0, 5.0) == table[-1]  # nothing fits: most robust
    assert choose_target(table, None, None, 5.0) == table[-1]
    excluded = {(7, 250_000)}
    assert choose_target(table, 10.0, 10.0, 5.0, excluded).key == (8, 250_000)


def test_power_deficit_lowers_the_uplink_margin():
    rung = candidate_table(EU)[0]
    assert margin_db(rung, 10.0, 20.0, power_deficit_db=6) == pytest.approx(
        margin_db(rung, 4.0, 20.0) or 0.0
    )


# -- timing --------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [EU, EU_1PCT, US], ids=["eu10", "eu1", "us915"])
def test_every_timeout_exceeds_the_slowest_legal_send_interval(config):
    for rung in candidate_table(config):
        settings = config.settings(rung.sf, rung.bw_hz)
        slowest = timing.max_send_interval(config, settings)
        # A keepalive is due after keepalive_interval and may wait one reply timeout.
        keepalive = timing.keepalive_interval(config, settings)
        assert slowest >= keepalive + timing.reply_timeout(config, settings, timing.ACK_MAX_BYTES)
        assert timing.silence_timeout(config, settings) > 2 * slowest  # two lost keepalives
        # The receiver waits longer after a switch than the transmitter's whole probe phase.
        assert timing.switch_timeout(config, settings) > config.probe_attempts * timing.probe_cycle(
            config, settings
        )
        ack_air = time_on_air_for(settings, timing.ACK_MAX_BYTES)
        assert timing.reply_timeout(config, settings, timing.ACK_MAX_BYTES) > ack_air


def test_pacing_keeps_both_budgets():
    settings = EU_1PCT.settings(7, 125_000)
    gap = timing.pacing_gap(EU_1PCT, settings, 25)
    data_air = time_on_air_for(settings, 25)
    ack_air = time_on_air_for(settings, timing.ACK_TYPICAL_BYTES)
    assert data_air / gap <= 0.01
    assert ack_air / gap <= 0.01
    assert timing.pacing_gap(LinkConfig(region=get_region("IN865")), settings, 25) == 0.0


def test_discovery_backoff_grows_and_stays_in_the_handshake_share():
    rendezvous = EU_1PCT.rendezvous()
    delays = [timing.discovery_delay(EU_1PCT, rendezvous, k) for k in range(12)]
    assert delays == sorted(delays)
    discover_air = time_on_air_for(rendezvous, timing.DISCOVER_BYTES)
    assert discover_air / delays[-1] <= 0.01 * EU_1PCT.handshake_share + 1e-9


# -- config and persisted state ---------------------------------------------------------------


def test_config_refuses_illegal_settings_with_clear_messages():
    with pytest.raises(RegionError, match="exceeds"):
        LinkConfig(tx_power_dbm=20, frequency_hz=868_100_000)
    with pytest.raises(RegionError):
        LinkConfig(mode=RadioMode.FIXED, fixed=FixedRadio(7, 500_000))
    with pytest.raises(ValueError, match="fixed radio mode needs"):
        LinkConfig(mode=RadioMode.FIXED)
    with pytest.raises(ValueError, match="probe_count"):
        LinkConfig(probe_count=6, probe_attempts=5)
    # The 500 mW sub-band allows +20 dBm, the chip only +17 dBm at its 10 % duty cycle.
    assert LinkConfig(tx_power_dbm=20).max_tx_power() == 17
    assert EU.max_tx_power() == 14


def test_persisted_state_round_trip_and_damage():
    tx_state = TxPersistentState(
        EU.settings(8, 250_000), RadioMode.FIXED, FixedRadio(8, 250_000, 10), 5.0
    )
    assert TxPersistentState.from_dict(tx_state.as_dict()) == tx_state
    rx_state = RxPersistentState(EU.settings(9, 250_000))
    assert RxPersistentState.from_dict(rx_state.as_dict()) == rx_state
    with pytest.raises(ValueError, match="last_good"):
        TxPersistentState.from_dict({"mode": "auto"})
    with pytest.raises(ValueError, match="radio mode"):
        TxPersistentState.from_dict({**tx_state.as_dict(), "mode": "turbo"})
    with pytest.raises(ValueError, match="sf"):
        RxPersistentState.from_dict({"last_good": {"frequency_hz": 1}})


def test_the_discover_bindings_are_persisted_and_old_state_files_still_load():
    good = EU.settings(9, 250_000)
    rx_state = RxPersistentState(
        good, (DiscoverBinding(b"\x01" * 8, 4711), DiscoverBinding(b"", 3))
    )
    assert RxPersistentState.from_dict(rx_state.as_dict()) == rx_state
    tx_state = TxPersistentState(good, binding=b"\x02" * 8)
    assert TxPersistentState.from_dict(tx_state.as_dict()) == tx_state
    # Written before the bindings existed: no binding, as before the first handshake.
    old_rx = {"last_good": settings_to_dict(good)}
    assert RxPersistentState.from_dict(old_rx) == RxPersistentState(good)
    old_tx = {"last_good": settings_to_dict(good), "mode": "auto", "interval_s": 0.0}
    assert TxPersistentState.from_dict(old_tx).binding == b""
    for damage, message in (
        ({"discover": [{"binding": "zz", "floor": 1}]}, "hex"),
        ({"discover": [{"binding": "0102", "floor": 1}]}, "8 bytes"),
        ({"discover": [{"binding": "", "floor": -2}]}, "out of range"),
        ({"discover": {"binding": ""}}, "list"),
    ):
        with pytest.raises(ValueError, match=message):
            RxPersistentState.from_dict({**old_rx, **damage})


def test_random_reports_never_crash_the_decoder():
    rnd = random.Random(3)
    for _ in range(500):
        data = rnd.randbytes(rnd.randrange(0, 30))
        for decode in (Ack.decode, StatusMessage.decode, Challenge.decode, Reply.decode):
            with contextlib.suppress(MessageError):
                decode(data)


def test_a_reply_answers_only_the_command_it_names_by_id_and_check() -> None:
    info, fixed = parse_command("info"), parse_command("set radio fixed 12 125")
    assert info.check != fixed.check
    queue = CommandQueue()
    command_id = queue.add(fixed, 0.0)
    assert queue.answered(command_id, info.check) is None  # an old reply to another command 1
    assert queue.answered(command_id, fixed.check) is not None

    replies = ReplyQueue()
    replies.add(1, info.check, (ReplyStatus.OK, "info text", None))
    assert replies.repeat(1, info.check)
    assert not replies.repeat(1, fixed.check)  # the same id, another command: runs
    replies.add(2, fixed.check, (ReplyStatus.OK, "restarting", RunCommand("restart")))
    # A new session forgets every id; a restart whose reply never got through still runs.
    assert replies.new_session() == [RunCommand("restart")]
    assert not replies and not replies.repeat(1, info.check)
