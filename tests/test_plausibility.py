"""The plausibility gate for telegrams without CRC (DSMR 2.2/3), and the transmitter using it."""

from __future__ import annotations

import collections
import logging
import re
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.framing import TelegramFramer
from p1lora.common.link import LinkConfig
from p1lora.common.parser import parse_telegram
from p1lora.common.plausibility import (
    PlausibilityGate,
    PlausibilityLimits,
    Verdict,
)
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector
from p1lora.transmitter.runtime import TxRuntime
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_sim import PSK, FakeRadio

DATA = Path(__file__).resolve().parent / "data" / "telegrams"
REGISTERS = ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2", "0-1:24.3.0")


def _stream(count: int, profile: str = "dsmr22", seed: int = 0) -> list[tuple[float, bytes]]:
    meter = VirtualMeter(profile, seed=seed)
    return [meter.next_telegram() for _ in range(count)]


def _set(raw: bytes, code: str, value: str) -> bytes:
    """`raw` with the value of line `code` replaced (the unit kept)."""
    pattern = re.compile(re.escape(code.encode()) + rb"\(([^*)]*)")
    changed, count = pattern.subn(lambda m: m.group(0)[: -len(m.group(1))] + value.encode(), raw)
    assert count == 1, (code, raw)
    return changed


def _value(raw: bytes, code: str) -> Decimal:
    obj = parse_telegram(raw).find_obis(code)
    assert obj is not None and isinstance(obj.value, Decimal)
    return obj.value


def _run(gate: PlausibilityGate, stream: list[tuple[float, bytes]]) -> list[bytes]:
    released = []
    for t, raw in stream:
        result = gate.check(raw, t)
        if result.release is not None:
            released.append(result.release)
    return released


def test_telegrams_with_a_valid_crc_bypass_the_gate_at_once() -> None:
    gate = PlausibilityGate()
    for t, raw in _stream(3, "dsmr5"):
        result = gate.check(raw, t)
        assert result.verdict is Verdict.BYPASS and result.release == raw
    # Even a jump is not its business: the CRC vouches for what the meter printed.
    assert gate.bypassed == 3 and gate.rejected == 0


def test_a_telegram_whose_crc_fails_is_rejected() -> None:
    ((t, raw),) = _stream(1, "dsmr5")
    damaged = raw.replace(b"1-0:1.8.1(0", b"1-0:1.8.1(1", 1)
    result = PlausibilityGate().check(damaged, t)
    assert result.verdict is Verdict.REJECT and result.release is None
    assert result.reason is not None and "CRC mismatch" in result.reason


def test_the_first_telegram_is_held_until_the_next_agrees_then_each_is_sent_one_late() -> None:
    stream = _stream(30)
    assert b"!\r\n" in stream[0][1] and b"!0" not in stream[0][1]  # no CRC at all
    gate = PlausibilityGate()
    first = gate.check(stream[0][1], stream[0][0])
    assert first.verdict is Verdict.HOLD and first.release is None and first.rejected == 0
    second = gate.check(stream[1][1], stream[1][0])
    assert second.verdict is Verdict.CONFIRM
    assert second.release == stream[0][1]  # the held one
    assert _run(gate, stream[2:]) == [raw for _, raw in stream[1:-1]]
    assert gate.rejected == 0 and gate.holding


@pytest.mark.parametrize(
    ("code", "value", "why"),
    [
        ("1-0:2.8.1", "10000.000", "rose by"),  # the brief's case: 0.000 -> 10000.000
        ("1-0:1.8.2", "00000.000", "1-0:1.8.2 went down by 7021252.000 Wh"),
        ("1-0:1.8.1", "0643x.203", "1-0:1.8.1 is no longer readable"),
        ("1-0:1.7.0", "0099.04", "kW any connection can draw"),
    ],
)
def test_an_implausible_register_is_never_sent(code: str, value: str, why: str) -> None:
    stream = _stream(8)
    t, raw = stream[5]
    bad = _set(raw, code, value)
    stream[5] = (t, bad)
    gate = PlausibilityGate()
    released, reasons = [], []
    for at, telegram in stream:
        result = gate.check(telegram, at)
        if result.release is not None:
            released.append(result.release)
        if result.rejected:
            reasons.append(result.reason)
    assert bad not in released
    assert released == [raw for _, raw in stream[:7] if raw != bad]
    assert gate.rejected == 1
    assert len(reasons) == 1 and reasons[0] is not None and why in reasons[0], reasons


@pytest.mark.parametrize(
    ("old", "new", "why"),
    [
        (b"*kWh)", b"*kWi)", "a unit changed"),
        (b"1-0:2.8.2(", b"1-0:6.8.2(", "lines differ"),
        (b"0-0:96.1.1(45", b"0-0:96.1.1(44", "identifier changed"),
        (b"(00)(60)(1)", b"(00)(62)(1)", "identifier changed"),
        (b"\r\n0-0:96.1.1", b"\r\n2-0:96.1.1", "lines differ"),
        (b"1-0:1.7.0(", b"1-0:1.7.0(x", "no longer readable"),
    ],
)
def test_changed_structure_is_rejected(old: bytes, new: bytes, why: str) -> None:
    stream = _stream(4)
    gate = PlausibilityGate()
    _run(gate, stream[:3])
    t, raw = stream[3]
    result = gate.check(raw.replace(old, new, 1), t)
    assert result.verdict is Verdict.REJECT and result.reason is not None
    assert why in result.reason


def test_a_flipped_low_digit_within_the_rate_bound_is_caught_by_the_next_telegram() -> None:
    """0.000 -> 0.002 kWh is within any rate bound; the meter's next telegram (0.000 again)
    shows it was wrong. Sending it at once would make the register go down afterwards, which
    Home Assistant takes for a meter reset."""
    stream = _stream(8)
    t, raw = stream[4]
    assert _value(raw, "1-0:2.8.1") == 0
    bad = _set(raw, "1-0:2.8.1", "00000.002")
    stream[4] = (t, bad)
    gate = PlausibilityGate()
    released = _run(gate, stream)
    assert bad not in released
    assert gate.rejected == 1
    values = [_value(r, "1-0:2.8.1") for r in released]
    assert values == sorted(values) and set(values) == {Decimal("0.000")}


def test_the_rate_bound_is_physical_power_over_the_time_since_the_last_telegram() -> None:
    # 69 kW for 10 s is 191.7 Wh (+ 1 Wh for the last digit): 150 Wh passes, 250 Wh does not.
    base = _stream(1)[0][1]
    start = _value(base, "1-0:1.8.1")
    gate = PlausibilityGate()
    assert gate.check(base, 0.0).verdict is Verdict.HOLD
    fine = _set(base, "1-0:1.8.1", f"{start + Decimal('0.150'):09.3f}")
    assert gate.check(fine, 10.0).verdict is Verdict.CONFIRM
    too_fast = _set(base, "1-0:1.8.1", f"{start + Decimal('0.400'):09.3f}")
    result = gate.check(too_fast, 20.0)
    assert result.verdict is Verdict.REJECT
    assert result.reason is not None and "rose by" in result.reason
    # An hour later the same rise is nothing (the held `fine` is too old to be sent by then).
    later = gate.check(too_fast, 3600.0)
    assert later.verdict is Verdict.HOLD and later.rejected == 0 and later.expired == 1


def test_an_mbus_reading_changes_only_with_its_capture_time() -> None:
    base = _stream(1)[0][1]
    gas = _value(base, "0-1:24.3.0")
    stamp = re.search(rb"0-1:24\.3\.0\((\d{12})\)", base)
    assert stamp is not None
    gate = PlausibilityGate()
    gate.check(base, 0.0)
    more_gas = base.replace(b"(%09.3f)" % gas, b"(%09.3f)" % (gas + Decimal("1.5")))
    assert more_gas != base
    result = gate.check(more_gas, 10.0)
    assert result.reason is not None and "without a new capture time" in result.reason
    # An hour later, with a new capture time, 1.5 m3 in an hour is plausible.
    hour = int(stamp.group(1)[6:8]) + 1
    later = stamp.group(1)[:6] + b"%02d" % hour + stamp.group(1)[8:]
    next_hour = more_gas.replace(stamp.group(1), later)
    assert gate.check(next_hour, 20.0).verdict is Verdict.CONFIRM
    # A capture time garbled far into the future is refused.
    garbled = next_hour.replace(later, b"29" + later[2:])
    result = gate.check(garbled, 30.0)
    assert result.reason is not None and "jumped ahead" in result.reason


def _with_gas(raw: bytes, stamp: bytes, volume: str) -> bytes:
    """A dsmr22 telegram with its gas capture time and reading replaced."""
    raw = re.sub(rb"0-1:24\.3\.0\(\d{12}[SW]?\)", b"0-1:24.3.0(" + stamp + b")", raw)
    changed, count = re.subn(rb"\r\n\(\d+\.\d+\)\r\n", b"\r\n(" + volume.encode() + b")\r\n", raw)
    assert count == 1
    return changed


@pytest.mark.parametrize(
    ("stamp", "accepted"),
    [
        (b"231029020000", True),  # 02:00 on the night summer time ends: comes twice
        (b"231029023000", True),
        (b"231029010000", False),  # 01:00 comes once: a new reading needs a new time
        (b"231029030000", False),
        (b"231029020000S", False),  # with its flag the time is not ambiguous
        (b"240115060000", False),
    ],
)
def test_a_capture_time_without_flag_may_repeat_in_the_hour_summer_time_ends(
    stamp: bytes, accepted: bool
) -> None:
    """DSMR 2.2/3 print gas capture times without S/W: the reading captured at 02:00 winter
    time carries the same time as the one at 02:00 summer time, an hour before."""
    base = _stream(1)[0][1]
    first = _with_gas(base, stamp, "01569.265")
    gate = PlausibilityGate()
    assert gate.check(first, 0.0).verdict is Verdict.HOLD
    assert gate.check(first, 10.0).verdict is Verdict.CONFIRM
    result = gate.check(_with_gas(base, stamp, "01569.765"), 20.0)
    if accepted:
        assert result.verdict is Verdict.CONFIRM, result.reason
    else:
        assert result.verdict is Verdict.REJECT
        assert result.reason is not None and "without a new capture time" in result.reason


def test_the_night_summer_time_ends_passes_without_rejections() -> None:
    """The reviewer's case: a dsmr22 meter from 2023-10-28 22:30 UTC (seed 0) had 6 telegrams
    rejected at 01:00 UTC (02:00 winter time, printed like 02:00 summer time)."""
    meter = VirtualMeter("dsmr22", seed=0, start=datetime(2023, 10, 28, 22, 30, tzinfo=UTC))
    gate = PlausibilityGate()
    reasons = []
    for _ in range(1000):
        t, raw = meter.next_telegram()
        result = gate.check(raw, t)
        if result.rejected:
            reasons.append((t, result.reason))
    assert reasons == []
    assert gate.released == 999


def test_clearing_a_text_message_is_not_a_lost_value() -> None:
    """The grid operator clears a message by printing `()`: the parser gives None, which
    must not count as a value that is no longer readable."""
    raw = (DATA / "V3.txt").read_bytes()
    cleared = re.sub(rb"0-0:96\.13\.0\([0-9A-F]+\)", b"0-0:96.13.0()", raw)
    cleared = re.sub(rb"0-0:96\.13\.1\([0-9A-F]+\)", b"0-0:96.13.1()", cleared)
    assert cleared.count(b"()") == 2
    stream = [(10.0 * i, raw if i < 3 else cleared) for i in range(10)]
    gate = PlausibilityGate()
    released = _run(gate, stream)
    assert gate.rejected == 0
    assert released == [telegram for _, telegram in stream[:-1]]
    # A number becoming empty is still refused.
    result = gate.check(cleared.replace(b"1-0:1.7.0(001.19*kW)", b"1-0:1.7.0()"), 100.0)
    assert result.verdict is Verdict.REJECT
    assert result.reason == "1-0:1.7.0 is no longer readable"


def test_a_held_telegram_is_dropped_not_sent_when_the_next_comes_after_an_outage() -> None:
    """After two hours without data, the telegram held from before the outage must not go
    out as the current reading when the first one after it arrives."""
    stream = _stream(4)
    gate = PlausibilityGate()
    gate.check(stream[0][1], 0.0)
    assert gate.check(stream[1][1], 10.0).release == stream[0][1]
    after = gate.check(stream[2][1], 7200.0)
    assert after.verdict is Verdict.HOLD and after.release is None
    assert after.expired == 1 and after.rejected == 0 and gate.expired == 1
    assert gate.check(stream[3][1], 7210.0).release == stream[2][1]
    # Within the limit (60 s) the held one is still sent.
    gate = PlausibilityGate()
    gate.check(stream[0][1], 0.0)
    result = gate.check(stream[1][1], 60.0)
    assert result.release == stream[0][1] and result.expired == 0


def test_a_meter_that_sends_less_often_than_the_hold_limit_is_not_locked_out() -> None:
    """`p1-lora meter --profile dsmr22 --speed 0.1` (every 100 s): once the gate has seen the
    meter's interval, a held telegram may wait three of them."""
    stream = [(100.0 * i, raw) for i, (_, raw) in enumerate(_stream(10))]
    gate = PlausibilityGate()
    released = _run(gate, stream)
    assert gate.expired == 1  # the first: the interval was not known yet
    assert released == [raw for _, raw in stream[1:-1]]
    # The gap before an outage is what counts, not the outage itself.
    gate.check(stream[-1][1], 1000.0)
    assert gate.check(stream[-1][1], 9000.0).expired == 1


def test_telegrams_read_in_one_chunk_get_at_least_one_interval() -> None:
    """After a stall, two telegrams arrive with one time: the rise between them is bounded
    by the meter's nominal interval (10 s at 69 kW: 192 Wh), not by zero seconds."""
    base = _stream(1)[0][1]
    start = _value(base, "1-0:1.8.1")
    gate = PlausibilityGate()
    assert gate.check(base, 0.0).verdict is Verdict.HOLD
    same_time = _set(base, "1-0:1.8.1", f"{start + Decimal('0.100'):09.3f}")
    result = gate.check(same_time, 0.0)
    assert result.verdict is Verdict.CONFIRM and result.rejected == 0, result.reason
    too_much = _set(base, "1-0:1.8.1", f"{start + Decimal('0.400'):09.3f}")
    assert gate.check(too_much, 0.0).verdict is Verdict.REJECT


def test_power_rejections_count_towards_starting_over() -> None:
    stream = [(t, _set(raw, "1-0:1.7.0", "0070.00")) for t, raw in _stream(6)]
    gate = PlausibilityGate()
    results = [gate.check(raw, t) for t, raw in stream]
    assert all(r.verdict is Verdict.REJECT for r in results)
    assert results[-1].reason is not None and "starting over" in results[-1].reason
    assert gate.rejected == 6


def test_a_gate_that_refuses_everything_fails_open_with_one_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The reviewer's lock-out: 1-0:1.7.0 at 70.00 kW (above the bound) in every telegram.
    After 3 starts over (18 telegrams) the gate lets telegrams through and says so once."""
    stream = _stream(100)
    high = [(t, _set(raw, "1-0:1.7.0", "0070.00")) for t, raw in stream[:80]]
    gate = PlausibilityGate()
    caplog.set_level(logging.INFO, logger="p1lora.common.plausibility")
    results = [gate.check(raw, t) for t, raw in high]
    assert [r.verdict for r in results[:17]] == [Verdict.REJECT] * 17
    assert all(r.verdict is Verdict.UNCHECKED for r in results[17:])
    assert [r.release for r in results[17:]] == [raw for _, raw in high[17:]]
    assert gate.failing_open and not gate.holding
    assert gate.rejected == 17 and gate.unchecked == 63
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "UNCHECKED" in errors[0].getMessage() and "70.00 kW" in errors[0].getMessage()
    # The power falls back: two telegrams in a row pass, checking resumes (one late again).
    normal = stream[80:]
    assert gate.check(normal[0][1], normal[0][0]).verdict is Verdict.UNCHECKED
    assert gate.check(normal[1][1], normal[1][0]).verdict is Verdict.HOLD
    assert not gate.failing_open
    assert _run(gate, normal[2:]) == [raw for _, raw in normal[1:-1]]
    assert "checking resumed" in caplog.records[-1].getMessage()
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_meter_where_every_pair_disagrees_is_not_locked_out() -> None:
    """A systematic false positive in the comparison (here: a register that alternates by
    1000 kWh, which no check accepts) must not lock the meter out after starting over."""
    stream = _stream(60)
    values = ("06434.202", "05434.202")
    flipping = [(t, _set(raw, "1-0:1.8.1", values[i % 2])) for i, (t, raw) in enumerate(stream)]
    gate = PlausibilityGate()
    results = [gate.check(raw, t) for t, raw in flipping]
    sent = [r.release for r in results if r.release is not None]
    assert gate.failing_open and gate.released == 0  # no pair ever agreed
    assert len(sent) >= 30  # once open, every telegram goes through
    assert all(r.verdict is Verdict.UNCHECKED for r in results[-10:])


def test_a_telegram_broken_on_the_line_is_refused_even_while_failing_open() -> None:
    gate = PlausibilityGate(PlausibilityLimits(resync_after=1, fail_open_after=1))
    stream = _stream(3)
    first = gate.check(_set(stream[0][1], "1-0:1.7.0", "0070.00"), 0.0)
    assert first.verdict is Verdict.UNCHECKED and gate.failing_open
    assert gate.check(stream[1][1][:-5], 10.0).verdict is Verdict.REJECT
    gate.reset()
    assert not gate.failing_open and not gate.holding


def test_after_many_rejections_in_a_row_the_gate_starts_over() -> None:
    """A replaced meter (registers from zero) must not be refused forever."""
    old = _stream(3)
    new_meter = [
        (30.0 + 10 * i, _set(raw, "1-0:1.8.1", f"00000.{i:03d}"))
        for i, (_, raw) in enumerate(_stream(12))
    ]
    gate = PlausibilityGate(PlausibilityLimits(resync_after=4))
    released = _run(gate, old[:2])
    results = [gate.check(raw, t) for t, raw in [old[2], *new_meter[:4]]]
    # The 4th in a row is held; the telegram held before (old[2]) is counted as given up.
    assert results[-1].verdict is Verdict.HOLD and results[-1].rejected == 1
    assert results[-1].reason is not None and "starting over" in results[-1].reason
    released += [r.release for r in results if r.release is not None]
    released += _run(gate, new_meter[4:])
    assert gate.rejected == 4
    assert released[:1] == [old[0][1]]
    # Rejected 4 in a row, the 4th is held, the 5th confirms it: from then on all are sent.
    assert released[2:] == [raw for _, raw in new_meter[3:-1]]


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        PlausibilityLimits(max_power_w=0)
    with pytest.raises(ValueError, match="resync_after"):
        PlausibilityLimits(resync_after=0)
    with pytest.raises(ValueError, match="fail_open_after"):
        PlausibilityLimits(fail_open_after=0)
    with pytest.raises(ValueError, match="max_hold_s"):
        PlausibilityLimits(interval_s=60, max_hold_s=60)


@pytest.mark.parametrize("fault_seed", [3, 4, 5])
def test_bit_errors_on_a_dsmr22_line_never_reach_the_link_as_wrong_registers(
    fault_seed: int,
) -> None:
    """The audit's case: `p1-lora meter --profile dsmr22 --bit-errors ...` through the framer
    let damaged telegrams through, some with energy registers the meter never had. Through the
    gate, every register sent is one the meter really printed, and none ever goes down."""
    meter = VirtualMeter("dsmr22", seed=0)
    injector = FaultInjector(FaultConfig(bit_errors=0.2), seed=fault_seed, data_bits=7)
    framer, gate = TelegramFramer(), PlausibilityGate()
    truth: dict[str, set[Decimal | None]] = collections.defaultdict(set)
    released: list[bytes] = []
    damaged_framed = 0
    sent_by_meter: set[bytes] = set()
    for _ in range(600):
        t, raw = meter.next_telegram()
        sent_by_meter.add(raw)
        for obj in parse_telegram(raw).objects:
            if obj.obis in REGISTERS:
                truth[obj.obis].add(obj.value)  # type: ignore[arg-type]
        for framed in framer.feed(injector.apply(t, raw)):
            damaged_framed += framed.raw not in sent_by_meter
            result = gate.check(framed.raw, t)
            if result.release is not None:
                released.append(result.release)
    assert damaged_framed >= 40  # the framer alone cannot tell
    assert len(released) >= 450  # the good ones still go through
    previous: dict[str, Decimal] = {}
    for raw in released:
        for obj in parse_telegram(raw).objects:
            if obj.obis not in REGISTERS:
                continue
            assert obj.value in truth[obj.obis], f"{obj.obis} = {obj.value}: never sent"
            assert isinstance(obj.value, Decimal)
            assert obj.value >= previous.get(obj.obis, obj.value), f"{obj.obis} went down"
            previous[obj.obis] = obj.value


# ------------------------------------------------------------------ the transmitter runtime


def test_the_transmitter_sends_only_plausible_telegrams_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    clock = VirtualClock()
    runtime = TxRuntime(FakeRadio(clock), LinkConfig(), PSK, clock.now(), rng=bytes)
    handed: list[bytes] = []
    real = runtime.tx_link.telegram_ready

    def spy(now: float, raw: bytes):  # type: ignore[no-untyped-def]
        handed.append(raw)
        return real(now, raw)

    monkeypatch.setattr(runtime.tx_link, "telegram_ready", spy)
    statuses = []
    monkeypatch.setattr(runtime.tx_link, "update_status", statuses.append)
    stream = _stream(10)
    bad_times = {3, 6}
    caplog.set_level(logging.WARNING, logger="p1lora.transmitter.runtime")
    for i, (t, raw) in enumerate(stream):
        sent = _set(raw, "1-0:2.8.1", "10000.000") if i in bad_times else raw
        clock.advance_to(t)
        runtime.submit_telegram(sent, t)
        runtime.step(t)
    good = [raw for i, (_, raw) in enumerate(stream) if i not in bad_times]
    assert handed == good[:-1]  # one late: the last waits for its successor
    assert runtime.diagnostics().telegrams_rejected == 2
    assert statuses[-1].other_errors == 2
    warnings = [r.getMessage() for r in caplog.records]
    # The first at once (t=30), the second (t=60) in the summary a minute later (t=90).
    assert len(warnings) == 2, warnings
    assert "rejected as implausible: 1 (" in warnings[0] and "rose by" in warnings[0]
    assert "1 since the last report" in warnings[1]
    clock.advance_to(100.0)
    runtime.submit_telegram(_set(stream[-1][1], "1-0:2.8.1", "10000.000"), 100.0)
    runtime.step(100.0)
    assert len(caplog.records) == 2  # not before t=150
    clock.advance_to(150.0)
    runtime.step(150.0)
    assert len(caplog.records) == 3
    assert runtime.diagnostics().telegrams_rejected == 3
