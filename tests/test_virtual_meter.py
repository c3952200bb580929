"""The virtual meter (`p1lora.transmitter.virtual_meter`) and its fault injector.

The meter is the test data source of the whole project, so its realism claims are checked
here against the printed telegrams themselves: CRCs, energy registers equal to the integrated
printed power, tariff hours, gas cadence, DST suffixes, and agreement with both our parser and
dsmr_parser.
"""

from __future__ import annotations

import calendar
import dataclasses
import itertools
import re
import time
import zoneinfo
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from dsmr_parser import obis_references as obis
from dsmr_parser import telegram_specifications
from dsmr_parser.parsers import TelegramParser

from p1lora.common.crc16 import crc16_arc
from p1lora.common.dsmr_time import format_timestamp
from p1lora.common.framing import TelegramFramer
from p1lora.common.parser import parse_telegram
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_profiles import (
    BE_TARIFFS,
    NL_TARIFFS,
    PROFILES,
    SERIAL_SETTINGS,
    get_profile,
)
from p1lora.transmitter.virtual_meter import (
    DEFAULT_START,
    MeterRegisters,
    VirtualMeter,
    eu_summer_time,
    meter_timestamp,
)

ALL_PROFILES = list(PROFILES)
_LINE = re.compile(r"(\d+-\d+:\d+\.\d+\.\d+)(\(.*\))")


def lines(raw: bytes) -> dict[str, str]:
    """OBIS code -> everything after it on its line (first occurrence)."""
    out: dict[str, str] = {}
    for line in raw.decode("ascii").split("\r\n"):
        match = _LINE.fullmatch(line)
        if match:
            out.setdefault(match.group(1), match.group(2))
    return out


def number(field: str) -> Decimal:
    """'(001234.567*kWh)' -> Decimal('1234.567'); the last (...) group of a line."""
    inner = field.rsplit("(", 1)[1].rstrip(")")
    return Decimal(inner.split("*")[0])


def wh(field: str) -> int:
    return int(number(field) * 1000)


def local(year: int, month: int, day: int, hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(
        year, month, day, hour, minute, second, tzinfo=zoneinfo.ZoneInfo("Europe/Amsterdam")
    )


# -- shape and determinism ---------------------------------------------------------------------


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_same_seed_same_bytes_other_seed_other_bytes(profile: str) -> None:
    one, two, other = VirtualMeter(profile, 7), VirtualMeter(profile, 7), VirtualMeter(profile, 8)
    first = [one.next_telegram() for _ in range(300)]
    assert first == [two.next_telegram() for _ in range(300)]
    assert [raw for _, raw in first] != [other.next_telegram()[1] for _ in range(300)]


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_every_telegram_frames_cleanly_with_a_valid_crc(profile: str) -> None:
    meter = VirtualMeter(profile, seed=1)
    telegrams = [raw for _, raw in (meter.next_telegram() for _ in range(400))]
    framer = TelegramFramer()
    framed = framer.feed(b"".join(telegrams))
    assert [t.raw for t in framed] == telegrams
    assert framer.stats.crc_errors == 0
    assert framer.stats.framing_errors == 0
    for raw in telegrams[:50]:
        assert raw.startswith(meter.profile.header.encode() + b"\r\n")
        body, _, tail = raw.rpartition(b"!")
        if meter.profile.has_crc:
            assert tail == f"{crc16_arc(body + b'!'):04X}\r\n".encode()
        else:
            assert tail == b"\r\n"


def test_times_and_intervals() -> None:
    meter = VirtualMeter("dsmr4", seed=0)
    assert meter.interval == 10.0
    assert meter.serial_settings == SERIAL_SETTINGS["4"]
    assert meter.next_time == 0.0
    assert [t for t, _ in meter.telegrams_until(35.0)] == [0.0, 10.0, 20.0, 30.0]
    assert meter.telegrams_until(35.0) == []
    assert meter.next_time == 40.0
    raw = meter.telegram_at(59.9)
    assert meter.reading.t == 50.0
    assert meter.telegram_at(55.0) == raw, "same interval, same telegram"
    with pytest.raises(ValueError, match="cannot go back"):
        meter.telegram_at(20.0)
    with pytest.raises(ValueError, match=">= 0"):
        meter.telegram_at(-1.0)
    five = VirtualMeter("dsmr5")
    assert five.interval == 1.0 and five.serial_settings.label == "115200 8N1"
    assert VirtualMeter("dsmr22").serial_settings.label == "9600 7E1"


def test_bad_construction_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match=r"unknown meter profile 'dsmr6'.*dsmr5, fluvius"):
        VirtualMeter("dsmr6")
    with pytest.raises(ValueError, match="timezone-aware"):
        VirtualMeter(start=datetime(2024, 1, 1, 12, 0))
    with pytest.raises(ValueError, match="kWp"):
        VirtualMeter(solar_kwp=-1)
    with pytest.raises(RuntimeError, match="no telegram"):
        _ = VirtualMeter().reading


def test_timestamp_advances_with_the_interval() -> None:
    start = datetime(2024, 5, 6, 10, 0, 3, 500_000, tzinfo=UTC)
    meter = VirtualMeter("dsmr5", start=start)
    stamps = [lines(meter.next_telegram()[1])["0-0:1.0.0"] for _ in range(3)]
    assert stamps == ["(240506120003S)", "(240506120004S)", "(240506120005S)"]


def test_generating_a_telegram_is_cheap() -> None:
    """The simulator generates an hour of DSMR 5 telegrams per simulated hour: keep it fast."""
    meter = VirtualMeter("fluvius", seed=2)  # the largest telegram
    meter.next_telegram()
    count = 2000
    started = time.process_time()
    for _ in range(count):
        meter.next_telegram()
    per_telegram = (time.process_time() - started) / count
    assert per_telegram < 1e-3, f"{per_telegram * 1e6:.0f} us per telegram"


# -- energy --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "start", "hours"),
    [
        ("dsmr5", datetime(2024, 6, 14, 8, 0, tzinfo=UTC), 3),  # summer day: solar export
        ("dsmr5", datetime(2024, 1, 12, 21, 30, tzinfo=UTC), 2),  # across the 23:00 tariff switch
        ("fluvius", datetime(2024, 3, 4, 5, 30, tzinfo=UTC), 2),
        ("dsmr4", datetime(2024, 2, 2, 16, 0, tzinfo=UTC), 8),
        ("dsmr22", datetime(2024, 2, 2, 16, 0, tzinfo=UTC), 8),
    ],
)
def test_registers_equal_the_integral_of_the_printed_power(
    profile: str, start: datetime, hours: int
) -> None:
    meter = VirtualMeter(profile, seed=11, start=start)
    dt = int(meter.interval)
    registers = ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2")
    first = lines(meter.next_telegram()[1])
    before = [wh(first[code]) for code in registers]
    previous = list(before)
    integral = [0, 0, 0, 0]  # joules per register, from printed values only
    tariffs_seen = set()
    for _ in range(hours * 3600 // dt):
        _, raw = meter.next_telegram()
        values = lines(raw)
        tariff = int(values["0-0:96.14.0"].strip("()"))
        tariffs_seen.add(tariff)
        power_in = wh(values["1-0:1.7.0"])  # kW with 3 (or 2) decimals -> W
        power_out = wh(values["1-0:2.7.0"])
        assert power_in == 0 or power_out == 0
        integral[tariff - 1] += power_in * dt
        integral[tariff + 1] += power_out * dt
        now = [wh(values[code]) for code in registers]
        assert all(b >= a for a, b in zip(previous, now, strict=True)), "registers never go back"
        previous = now
        reading = meter.reading
        assert list(reading.registers_wh) == [j // 3600 for j in reading.joules] == now
        assert (reading.import_w, reading.export_w) == (power_in, power_out)
    for index, code in enumerate(registers):
        grown_j = (previous[index] - before[index]) * 3600
        # Only the sub-Wh remainder kept inside the meter may differ, in either direction.
        assert abs(grown_j - integral[index]) < 3600, code
    assert sum(integral) > 0
    if profile == "dsmr5" and start.month == 6:
        assert sum(integral[2:]) > 3600 * 1000, "a June morning with 3.2 kWp exports kWh"
    if start.hour == 21:
        assert tariffs_seen == {1, 2}


def test_phase_values_add_up_and_currents_follow_power() -> None:
    meter = VirtualMeter("fluvius", seed=5, start=datetime(2024, 1, 10, 16, 0, tzinfo=UTC))
    checked = 0
    previous_volts: list[Decimal] | None = None
    for _ in range(3600):
        values = lines(meter.next_telegram()[1])
        net = sum(
            wh(values[f"1-0:{a}.7.0"]) - wh(values[f"1-0:{b}.7.0"])
            for a, b in (("21", "22"), ("41", "42"), ("61", "62"))
        )
        assert net == wh(values["1-0:1.7.0"]) - wh(values["1-0:2.7.0"])
        volts = [number(values[f"1-0:{c}.7.0"]) for c in ("32", "52", "72")]
        for phase, (p_in, p_out, amps) in enumerate(
            [("21", "22", "31"), ("41", "42", "51"), ("61", "62", "71")]
        ):
            watts = wh(values[f"1-0:{p_in}.7.0"]) + wh(values[f"1-0:{p_out}.7.0"])
            current = number(values[f"1-0:{amps}.7.0"])
            assert abs(current - Decimal(watts) / volts[phase]) <= Decimal("0.011")
            assert Decimal("215") <= volts[phase] <= Decimal("250")
        if previous_volts is not None:
            steps = [abs(a - b) for a, b in zip(volts, previous_volts, strict=True)]
            checked += sum(1 for s in steps if s <= Decimal("0.1"))
        previous_volts = volts
    assert checked > 0.9 * 3 * 3599, "voltages mostly move by tenths"


# -- tariffs ------------------------------------------------------------------------------------


def _expected_register(schedule_name: str, hour: int, weekday: int) -> int:
    low = weekday >= 5 or hour >= (23 if schedule_name == "nl" else 22) or hour < 7
    if schedule_name == "nl":
        return 1 if low else 2
    return 2 if low else 1


@pytest.mark.parametrize(("name", "schedule"), [("nl", NL_TARIFFS), ("be", BE_TARIFFS)])
def test_tariff_schedule_for_every_hour_of_the_week(name: str, schedule: object) -> None:
    for weekday in range(7):
        for hour in range(24):
            assert schedule.register_at(hour, weekday) == _expected_register(name, hour, weekday)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("profile", "start", "before", "after"),
    [
        ("dsmr5", local(2024, 1, 15, 6, 59, 58), "0001", "0002"),  # NL Monday 07:00: normal
        ("dsmr5", local(2024, 7, 17, 22, 59, 58), "0002", "0001"),  # NL 23:00 in summer: low
        ("dsmr5", local(2024, 1, 19, 22, 59, 58), "0002", "0001"),  # Friday night into weekend
        ("fluvius", local(2024, 1, 15, 21, 59, 58), "0001", "0002"),  # BE 22:00: night (2)
        ("fluvius", local(2024, 1, 15, 6, 59, 58), "0002", "0001"),  # BE 07:00: day (1)
    ],
)
def test_tariff_switches_at_the_right_local_hour(
    profile: str, start: datetime, before: str, after: str
) -> None:
    meter = VirtualMeter(profile, seed=3, start=start)
    seen = []
    for _ in range(4):
        values = lines(meter.next_telegram()[1])
        seen.append((values["0-0:1.0.0"][7:13], values["0-0:96.14.0"].strip("()")))
    hour = f"{start.hour + 1:02d}"
    assert seen == [
        (f"{start.hour:02d}5958", before),
        (f"{start.hour:02d}5959", before),
        (f"{hour}0000", after),
        (f"{hour}0001", after),
    ]


def test_weekend_is_low_tariff_all_day() -> None:
    meter = VirtualMeter("dsmr4", start=local(2024, 1, 20, 12, 0))  # Saturday noon
    assert lines(meter.next_telegram()[1])["0-0:96.14.0"] == "(0001)"
    meter = VirtualMeter("fluvius", start=local(2024, 1, 21, 12, 0))  # Sunday noon
    assert lines(meter.next_telegram()[1])["0-0:96.14.0"] == "(0002)"


# -- gas and water -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("profile", "code", "period", "hours"),
    [
        ("dsmr5", "0-1:24.2.1", 300, 1),
        ("fluvius", "0-1:24.2.3", 300, 1),
        ("dsmr4", "0-1:24.2.1", 3600, 6),
    ],
)
def test_gas_updates_on_its_own_cadence_with_its_own_timestamp(
    profile: str, code: str, period: int, hours: int
) -> None:
    start = datetime(2024, 1, 16, 5, 2, 17, tzinfo=UTC)  # winter morning: heating runs
    meter = VirtualMeter(profile, seed=4, start=start)
    changes = []
    previous = None
    for _ in range(int(hours * 3600 / meter.interval)):
        _, raw = meter.next_telegram()
        stamp, reading = re.findall(r"\(([^)]*)\)", lines(raw)[code])
        if (stamp, reading) != previous:
            changes.append((meter.reading.epoch, stamp, Decimal(reading.split("*")[0])))
            previous = (stamp, reading)
    # One change per period on the clock (plus the first telegram).
    assert len(changes) == hours * 3600 // period + 1
    for epoch, stamp, _ in changes[1:]:
        boundary = epoch - epoch % period
        assert epoch - boundary < meter.interval, "refreshes on the first telegram of a period"
        assert stamp == meter_timestamp(boundary)
    volumes = [volume for _, _, volume in changes]
    assert volumes == sorted(volumes)
    assert volumes[-1] > volumes[0], "a winter morning burns gas"


def test_dsmr22_gas_uses_the_two_line_form_without_suffix() -> None:
    meter = VirtualMeter("dsmr22", seed=1, start=local(2024, 7, 1, 10, 15))
    text = meter.next_telegram()[1].decode("ascii")
    match = re.search(
        r"0-1:24\.3\.0\((\d{12})\)\(00\)\(60\)\(1\)\(0-1:24\.2\.1\)\(m3\)\r\n\((\d{5}\.\d{3})\)\r\n",
        text,
    )
    assert match is not None
    assert match.group(1) == "240701100000"
    assert "0-0:1.0.0" not in text, "DSMR 2.2 telegrams carry no timestamp line"


# -- meter time --------------------------------------------------------------------------------


def test_eu_summer_time_matches_the_tz_database() -> None:
    amsterdam = zoneinfo.ZoneInfo("Europe/Amsterdam")
    epochs = []
    for year in range(1997, 2038):
        for month, day in ((3, 25), (10, 25)):
            base = calendar.timegm((year, month, day, 0, 0, 0))
            epochs += [base + h * 1800 + s for h in range(0, 8 * 48) for s in (-1, 0, 1)]
        epochs += [calendar.timegm((year, m, 15, 12, 0, 0)) for m in range(1, 13)]
    for epoch in epochs:
        moment = datetime.fromtimestamp(epoch, UTC).astimezone(amsterdam)
        assert eu_summer_time(epoch) == bool(moment.dst()), moment
        assert meter_timestamp(epoch) == format_timestamp(moment)


@pytest.mark.parametrize(
    ("start", "expected"),
    [
        (
            datetime(2024, 3, 31, 0, 59, 58, tzinfo=UTC),
            ["240331015958W", "240331015959W", "240331030000S", "240331030001S"],
        ),
        (
            datetime(2024, 10, 27, 0, 59, 58, tzinfo=UTC),
            ["241027025958S", "241027025959S", "241027020000W", "241027020001W"],
        ),
    ],
)
def test_dst_suffix_at_the_transitions(start: datetime, expected: list[str]) -> None:
    meter = VirtualMeter("dsmr5", start=start)
    stamps = [lines(meter.next_telegram()[1])["0-0:1.0.0"].strip("()") for _ in range(4)]
    assert stamps == expected
    parsed = [parse_telegram(meter.next_telegram()[1]).meter_timestamp for _ in range(2)]
    assert parsed[1] - parsed[0] == timedelta(seconds=1)  # type: ignore[operator]


# -- Belgian capacity tariff ---------------------------------------------------------------------


def test_fluvius_average_demand_and_month_peak_rollover() -> None:
    start = local(2024, 1, 31, 23, 40)
    meter = VirtualMeter("fluvius", seed=9, start=start)
    quarter_joules = 0
    quarter = None
    history_before = None
    for _ in range(40 * 60):
        _, raw = meter.next_telegram()
        values = lines(raw)
        epoch = meter.reading.epoch
        interval_quarter = (epoch - 1) // 900
        if interval_quarter != quarter:
            quarter, quarter_joules = interval_quarter, 0
        quarter_joules += wh(values["1-0:1.7.0"])
        elapsed = epoch - interval_quarter * 900
        assert wh(values["1-0:1.4.0"]) == quarter_joules // elapsed
        stamp = values["0-0:1.0.0"].strip("()")
        if stamp == "240131235959W":
            history_before = values["0-0:98.1.0"]
        if stamp == "240201000001W":
            history = values["0-0:98.1.0"]
            assert history_before is not None
            assert history.startswith("(13)(1-0:1.6.0)(1-0:1.6.0)(240201000000W)(")
            # The old newest month is now second; the oldest fell off (13 stay).
            assert history_before[len("(13)(1-0:1.6.0)(1-0:1.6.0)") :][:40] in history
            assert values["1-0:1.6.0"] == "(240201000000W)(00.000*kW)"
    telegram = parse_telegram(raw)
    peak = telegram.get("belgium_maximum_demand_current_month")
    assert peak is not None and peak.value and peak.value > 0, "a February quarter set a peak"


# -- parsers agree --------------------------------------------------------------------------------

_DSMR_SPECS = {
    "dsmr5": telegram_specifications.V5,
    "fluvius": telegram_specifications.BELGIUM_FLUVIUS,
    "dsmr4": telegram_specifications.V4,
    "dsmr22": telegram_specifications.V2_2,
}


@pytest.mark.parametrize("profile", ALL_PROFILES)
def test_every_profile_parses_with_our_parser_and_dsmr_parser(profile: str) -> None:
    meter = VirtualMeter(profile, seed=21, start=datetime(2024, 6, 3, 10, 0, tzinfo=UTC))
    oracle = TelegramParser(_DSMR_SPECS[profile])
    for _ in range(30):
        meter.next_telegram()
    raw = meter.next_telegram()[1]
    truth = meter.reading
    ours = parse_telegram(raw)
    theirs = oracle.parse(raw.decode("ascii"))

    assert ours.crc.valid is (True if get_profile(profile).has_crc else None)
    assert not ours.unknown_objects(), [o.raw for o in ours.unknown_objects()]
    registers = [
        ("electricity_used_tariff_1", obis.ELECTRICITY_USED_TARIFF_1, truth.registers_wh[0]),
        ("electricity_used_tariff_2", obis.ELECTRICITY_USED_TARIFF_2, truth.registers_wh[1]),
        (
            "electricity_delivered_tariff_1",
            obis.ELECTRICITY_DELIVERED_TARIFF_1,
            truth.registers_wh[2],
        ),
        (
            "electricity_delivered_tariff_2",
            obis.ELECTRICITY_DELIVERED_TARIFF_2,
            truth.registers_wh[3],
        ),
        ("current_electricity_usage", obis.CURRENT_ELECTRICITY_USAGE, truth.import_w),
        ("current_electricity_delivery", obis.CURRENT_ELECTRICITY_DELIVERY, truth.export_w),
    ]
    for key, reference, expected in registers:
        value = ours.value(key)
        assert isinstance(value, Decimal)
        assert int(value * 1000) == expected, key
        assert theirs[reference].value == value, key
    assert ours.value("electricity_active_tariff") == f"{truth.tariff:04d}"
    assert theirs[obis.ELECTRICITY_ACTIVE_TARIFF].value == f"{truth.tariff:04d}"
    gas = next(d.reading for d in ours.mbus_devices() if d.device_type == 3)
    assert gas is not None and isinstance(gas.value, Decimal)
    assert int(gas.value * 1000) == truth.gas_shown_liters
    if profile != "dsmr22":
        assert ours.meter_timestamp == theirs[obis.P1_MESSAGE_TIMESTAMP].value
        assert ours.meter_timestamp is not None
        assert ours.meter_timestamp.timestamp() == truth.epoch
    if profile in ("dsmr5", "fluvius"):
        references = (
            obis.INSTANTANEOUS_VOLTAGE_L1,
            obis.INSTANTANEOUS_VOLTAGE_L2,
            obis.INSTANTANEOUS_VOLTAGE_L3,
        )
        for n, reference in enumerate(references):
            volts = ours.value(f"instantaneous_voltage_l{n + 1}")
            assert volts == Decimal(truth.voltages_dv[n]) / 10
            assert theirs[reference].value == volts


@pytest.mark.parametrize("profile", ["dsmr5", "dsmr4"])
def test_power_failure_log_matches_its_count(profile: str) -> None:
    for seed in range(12):
        raw = VirtualMeter(profile, seed=seed).next_telegram()[1]
        telegram = parse_telegram(raw)
        log = telegram.value("power_event_failure_log")
        assert isinstance(log, list)
        long_failures = telegram.value("long_power_failure_count")
        assert isinstance(long_failures, int) and long_failures >= len(log)
        assert all(entry.unit == "s" and entry.timestamp is not None for entry in log)
        assert [e.timestamp for e in log] == sorted(e.timestamp for e in log)  # type: ignore[type-var]


# -- fault injection ------------------------------------------------------------------------------


def _stream(profile: str, count: int, seed: int = 1) -> list[tuple[float, bytes]]:
    meter = VirtualMeter(profile, seed=seed)
    return [meter.next_telegram() for _ in range(count)]


def test_faults_damage_exactly_the_telegrams_they_hit() -> None:
    events = _stream("dsmr5", 600)
    config = FaultConfig(bit_errors=0.08, truncate=0.05, junk=0.1)
    injector = FaultInjector(config, seed=5)
    clean = []
    wire = bytearray()
    for t, raw in events:
        data = injector.apply(t, raw)
        wire += data
        if not {"bit_errors", "truncate"} & set(injector.last_faults):
            clean.append(raw)
    stats = injector.stats
    assert stats.bit_errors > 20 and stats.truncated > 15 and stats.junk > 30
    framer = TelegramFramer()
    got = [t.raw for t in framer.feed(bytes(wire))]
    assert got == clean
    assert framer.stats.crc_errors + framer.stats.framing_errors >= stats.bit_errors


def test_faults_are_deterministic_per_seed() -> None:
    events = _stream("dsmr4", 200)
    config = FaultConfig(bit_errors=0.1, truncate=0.1, junk=0.1, silence=0.02)

    def run(seed: int) -> list[tuple[float, bytes]]:
        return list(inject(events, FaultInjector(config, seed=seed, data_bits=7)))

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_seven_bit_lines_get_seven_bit_errors() -> None:
    events = _stream("dsmr4", 300)
    injector = FaultInjector(FaultConfig(bit_errors=1.0, junk=0.0), seed=2, data_bits=7)
    for t, raw in events:
        damaged = injector.apply(t, raw)
        assert damaged != raw
        assert max(damaged) < 0x80


def test_silence_drops_whole_periods() -> None:
    events = _stream("dsmr5", 2000)
    config = FaultConfig(silence=0.01, silence_seconds=(10.0, 20.0))
    injector = FaultInjector(config, seed=8)
    sent = [t for t, _ in inject(events, injector)]
    gaps = [b - a for a, b in itertools.pairwise(sent) if b - a > 1.0]
    stats = injector.stats
    assert stats.silences >= len(gaps) > 5
    # A gap is one silence, or several back to back; never shorter than the configured minimum.
    assert all(gap >= 10.0 for gap in gaps)
    assert stats.silenced == 2000 - len(sent)
    assert 10 * stats.silences - 20 <= stats.silenced <= 21 * stats.silences


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"bit_errors": 1.5}, "bit_errors probability"),
        ({"junk": -0.1}, "junk probability"),
        ({"silence_seconds": (5.0, 1.0)}, "silence length"),
    ],
)
def test_fault_config_is_validated(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultConfig(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="data_bits"):
        FaultInjector(FaultConfig(), data_bits=6)


def test_default_start_is_fixed() -> None:
    assert VirtualMeter().start == DEFAULT_START
    assert VirtualMeter().next_telegram() == VirtualMeter().next_telegram()


# -- registers kept across restarts -------------------------------------------------------------


def _registers_in(raw: bytes) -> list[Decimal]:
    telegram = parse_telegram(raw)
    keys = (
        "electricity_used_tariff_1",
        "electricity_used_tariff_2",
        "electricity_delivered_tariff_1",
        "electricity_delivered_tariff_2",
    )
    return [telegram.value(k) for k in keys] + [telegram.value("gas_reading", 1)]


def test_restored_meter_continues_its_registers_instead_of_restarting_from_the_seed():
    first = VirtualMeter("dsmr5", seed=4, start=datetime(2024, 6, 1, 10, 0, tzinfo=UTC))
    for _ in range(600):
        _, last = first.next_telegram()
    saved = MeterRegisters.from_json(first.registers().to_json())
    assert saved == first.registers()
    # Restarted (same seed, a later start): without the saved registers it goes backwards ...
    later = datetime(2024, 6, 1, 10, 15, tzinfo=UTC)
    fresh = VirtualMeter("dsmr5", seed=4, start=later)
    _, again = fresh.next_telegram()
    assert any(a < b for a, b in zip(_registers_in(again), _registers_in(last), strict=True))
    # ... with them, every register is at least where it was.
    restored = VirtualMeter("dsmr5", seed=4, start=later)
    restored.restore(saved)
    _, resumed = restored.next_telegram()
    assert all(a >= b for a, b in zip(_registers_in(resumed), _registers_in(last), strict=True))
    assert restored.registers().short_failures >= first.registers().short_failures


def test_restore_refuses_another_meters_registers_and_late_calls():
    saved = VirtualMeter("dsmr5", seed=4).registers()
    with pytest.raises(ValueError, match="belong to meter"):
        VirtualMeter("dsmr5", seed=5).restore(saved)
    meter = VirtualMeter("dsmr5", seed=4)
    meter.next_telegram()
    with pytest.raises(RuntimeError, match="before the first telegram"):
        meter.restore(saved)


def test_restore_never_lowers_a_register():
    meter = VirtualMeter("dsmr5", seed=4)
    before = meter.registers()
    lower = dataclasses.replace(before, joules=(0, 0, 0, 0), gas_ls=0)
    meter.restore(lower)
    assert meter.registers() == before


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("{", "not JSON"),
        ('{"format": 2}', "not format 1"),
        ('{"format": 1}', "equipment_id"),
        (
            '{"format": 1, "equipment_id": "x", "joules": [1, 2, 3], "gas_ls": 0, "water_ls": 0,'
            ' "short_failures": 0, "long_failures": 0, "sags": [0, 0, 0], "swells": [0, 0, 0]}',
            "joules",
        ),
        (
            '{"format": 1, "equipment_id": "x", "joules": [1, 2, 3, 4], "gas_ls": -1,'
            ' "water_ls": 0, "short_failures": 0, "long_failures": 0, "sags": [0, 0, 0],'
            ' "swells": [0, 0, 0]}',
            "gas_ls",
        ),
    ],
)
def test_bad_saved_registers_are_a_clear_error(text, problem):
    with pytest.raises(ValueError, match=problem):
        MeterRegisters.from_json(text)
