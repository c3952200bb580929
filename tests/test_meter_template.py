"""`p1-lora meter --template FILE`: a virtual meter in the exact style of any real telegram.

Every fixture in tests/data/telegrams is used as a template: the generated telegrams must
parse, carry a valid CRC when the template has one, keep every line's shape (codes, units,
digit counts, suffixes), advance the clock, and grow the energy registers by exactly the
printed power. Longer runs check the behaviours that need time: tariff switches, gas cadence.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import re
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from p1lora.common.crc16 import crc16_arc
from p1lora.common.framing import TelegramFramer
from p1lora.common.parser import parse_telegram
from p1lora.common.telegram import Telegram
from p1lora.transmitter import meter_command
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_template import (
    MeterTemplate,
    TemplateError,
    load_template,
    parse_template,
)
from tests.helpers_telegrams import CRC_FIXTURES, FIXTURES, TELEGRAM_DIR, telegram_part

#: Fixtures whose reading lines carry per-tariff registers and instantaneous power.
_IMPORT_KEYS = ("electricity_used_tariff_1", "electricity_used_tariff_2")
_EXPORT_KEYS = ("electricity_delivered_tariff_1", "electricity_delivered_tariff_2")
_TO_BASE = {"kwh": 1000, "wh": 1, "kw": 1000, "w": 1}


def _template(name: str, **kwargs: object) -> MeterTemplate:
    return load_template(TELEGRAM_DIR / name, **kwargs)  # type: ignore[arg-type]


def _generate(
    name: str, count: int, interval: int | None = None, **meter_args: object
) -> tuple[MeterTemplate, list[bytes]]:
    template = _template(name, interval=interval)
    meter = template.meter(**meter_args)  # type: ignore[arg-type]
    return template, [meter.next_telegram()[1] for _ in range(count)]


def _base(telegram: Telegram, key: str) -> Decimal | None:
    """A number in Wh or W, whatever unit the meter printed."""
    obj = telegram.get(key)
    if obj is None or not isinstance(obj.value, Decimal):
        return None
    assert obj.unit is not None
    return obj.value * _TO_BASE[obj.unit.lower()]


def _shape(line: str) -> str:
    return re.sub(r"\d", "0", line)


def _lines(raw: bytes) -> list[str]:
    return raw.decode("latin-1").split("\r\n")


# -- every fixture as a template ------------------------------------------------------------------


@pytest.mark.parametrize("name", FIXTURES)
def test_ten_telegrams_parse_with_valid_crc_and_keep_every_line_format(name: str) -> None:
    template, telegrams = _generate(name, 10, seed=3)
    original = _lines(telegram_part(name))
    for raw in telegrams:
        parsed = parse_telegram(raw)
        if name in CRC_FIXTURES:
            assert parsed.crc.valid is True, parsed.crc
        else:
            assert parsed.crc.expected is None
            assert raw.endswith(b"\r\n!\r\n")
        lines = _lines(raw)
        assert len(lines) == len(original)
        assert lines[0] == original[0]  # the header, exactly
        for made, model in zip(lines[1:-2], original[1:-2], strict=True):
            assert _shape(made) == _shape(model), (made, model)
        # The CRC line: same number of hex digits (the unpadded-CRC meter may print fewer).
        crc_line, model_crc = lines[-2], original[-2]
        assert crc_line.startswith("!") and re.fullmatch(r"![0-9A-F]*", crc_line)
        if len(model_crc) == 5:
            assert len(crc_line) == 5
    # Some of each template's lines change, the rest stay exactly as the meter printed them.
    assert template.live_lines > 0
    changed = {i for i, line in enumerate(_lines(telegrams[-1])) if line != original[i]}
    assert changed, "nothing evolved"
    if template.timestamp is not None:
        assert len(set(telegrams)) == len(telegrams)


@pytest.mark.parametrize("name", FIXTURES)
def test_lines_the_model_does_not_know_are_kept_verbatim(name: str) -> None:
    template, telegrams = _generate(name, 3)
    original = _lines(telegram_part(name))
    verbatim = [
        i + 1
        for i, parts in enumerate(template.renderer.lines)
        if all(isinstance(p, str) for p in parts)
    ]
    assert len([i for i in verbatim if original[i]]) == template.verbatim_lines
    for raw in telegrams:
        lines = _lines(raw)
        for i in verbatim:
            assert lines[i] == original[i]
    # Identifiers in particular are the template's own.
    ids = [line for line in original if re.match(r"0-\d:96\.1\.[01]\(|0-0:42\.0\.0\(", line)]
    for line in ids:
        assert line in _lines(telegrams[-1])


@pytest.mark.parametrize("name", FIXTURES)
def test_timestamps_advance_by_the_interval_from_the_template_clock(name: str) -> None:
    template, telegrams = _generate(name, 10)
    stamps = [parse_telegram(raw).meter_timestamp for raw in telegrams]
    if template.timestamp is None:
        assert all(stamp is None for stamp in stamps)
        return
    step = timedelta(seconds=template.profile.interval)
    assert stamps == [template.timestamp + k * step for k in range(10)]


@pytest.mark.parametrize("name", FIXTURES)
def test_energy_registers_are_monotonic_and_follow_the_printed_power(name: str) -> None:
    # Evening (lots of load) and midday (solar export), at the meter's own interval and once a
    # minute so that ten telegrams move the registers by many printed steps.
    moved = Decimal(0)
    for start in ("2024-01-15T18:30:00+01:00", "2024-06-12T12:30:00+02:00"):
        for interval in (None, 60):
            template, telegrams = _generate(
                name, 10, interval, seed=5, start=datetime.fromisoformat(start)
            )
            moved += _check_energy(template, [parse_telegram(raw) for raw in telegrams])
    model = parse_telegram(telegram_part(name))
    if _registers(model, _IMPORT_KEYS, "electricity_imported_total"):
        assert moved > 10  # Wh: the checks above had something to check
    else:
        assert moved == 0  # the heat meter has no electricity registers


def _registers(telegram: Telegram, keys: tuple[str, ...], total: str) -> list[Decimal]:
    values = [_base(telegram, key) for key in keys]
    found = [v for v in values if v is not None]
    if found:
        return found
    value = _base(telegram, total)
    return [] if value is None else [value]


def _step(telegram: Telegram, key: str) -> Decimal:
    """One unit in the last printed digit of a register, in Wh."""
    obj = telegram.get(key)
    assert obj is not None and isinstance(obj.value, Decimal) and obj.unit is not None
    exponent = obj.value.as_tuple().exponent
    assert isinstance(exponent, int)
    return Decimal(10) ** exponent * _TO_BASE[obj.unit.lower()]


def _check_energy(template: MeterTemplate, parsed: list[Telegram]) -> Decimal:
    """Check registers against the printed power; return how far they moved (Wh)."""
    interval = Decimal(template.profile.interval)
    moved = Decimal(0)
    for direction, keys, total, power_key in (
        ("import", _IMPORT_KEYS, "electricity_imported_total", "current_electricity_usage"),
        ("export", _EXPORT_KEYS, "electricity_exported_total", "current_electricity_delivery"),
    ):
        series = [_registers(t, keys, total) for t in parsed]
        if not series[0]:
            continue
        for before, after in itertools.pairwise(series):
            assert all(b <= a for b, a in zip(before, after, strict=True)), direction
        powers = [_base(t, power_key) for t in parsed]
        if powers[0] is None:
            continue
        used = [k for k in (*keys, total) if parsed[0].get(k) is not None]
        resolution = _step(parsed[0], used[0]) * len(series[0])
        # Each telegram's registers grew by its printed power times the interval (to within
        # the truncated last digit), and so did the whole run.
        for k in range(1, len(parsed)):
            step = sum(series[k]) - sum(series[k - 1])
            expected = (powers[k] or Decimal(0)) * interval / 3600
            assert abs(step - expected) <= resolution, (direction, k, step, expected)
        integrated = sum(((p or Decimal(0)) * interval / 3600 for p in powers[1:]), Decimal(0))
        grown = sum(series[-1], Decimal(0)) - sum(series[0], Decimal(0))
        assert abs(grown - integrated) <= resolution, (direction, grown, integrated)
        moved += grown
        # Totals stay the sum of the tariff registers (plus what tariffs 3/4 hold).
        if parsed[0].get(total) is not None and len(series[0]) == 2:
            gaps = {(_base(t, total) or 0) - sum(s) for t, s in zip(parsed, series, strict=True)}
            assert max(gaps) - min(gaps) <= resolution
    return moved


def test_long_run_integrates_power_exactly() -> None:
    # An hour of a DSMR 5 meter in the evening: registers grow by a few kWh, to the Wh.
    template = _template("V5.txt")
    meter = template.meter(seed=8, start=datetime.fromisoformat("2024-01-15T17:30:00+01:00"))
    first = parse_telegram(meter.next_telegram()[1])
    joules_first = meter.reading.joules
    integrated = 0
    for _ in range(3599):
        meter.next_telegram()
        integrated += meter.reading.import_w * 1
    last = parse_telegram(meter.telegram_at(3599))
    joules_last = meter.reading.joules
    assert sum(joules_last[:2]) - sum(joules_first[:2]) == integrated
    grown = sum(_registers(last, _IMPORT_KEYS, "")) - sum(_registers(first, _IMPORT_KEYS, ""))
    assert grown > 300  # Wh: a real evening
    assert abs(grown - Decimal(integrated) / 3600) <= 2


def test_registers_start_at_the_template_values() -> None:
    template, telegrams = _generate("SAGEMCOM_T210_D_R.txt", 1, solar_kwp=0.0)
    first = parse_telegram(telegrams[0])
    model = parse_telegram(telegram_part("SAGEMCOM_T210_D_R.txt"))
    power = _base(first, "current_electricity_usage")
    assert power is not None
    for key in ("electricity_used_tariff_1", "electricity_used_tariff_2"):
        start, now = _base(model, key), _base(first, key)
        assert start is not None and now is not None
        # The first telegram already counts its own interval (at most one Wh more, truncated).
        assert start <= now <= start + power * template.profile.interval / 3600 + 1
    # Reactive registers have no model: kept as printed.
    assert first.value("electricity_reactive_exported_total") == Decimal("3897726")


def test_per_phase_power_adds_up_and_currents_follow_power() -> None:
    _, telegrams = _generate(
        "V5.txt", 30, seed=2, start=datetime.fromisoformat("2024-01-15T18:30:00+01:00")
    )
    for raw in telegrams:
        t = parse_telegram(raw)
        net = (_base(t, "current_electricity_usage") or 0) - (
            _base(t, "current_electricity_delivery") or 0
        )
        phases = Decimal(0)
        for n in (1, 2, 3):
            p_in = _base(t, f"instantaneous_active_power_l{n}_positive") or Decimal(0)
            p_out = _base(t, f"instantaneous_active_power_l{n}_negative") or Decimal(0)
            phases += p_in - p_out
            volts = t.value(f"instantaneous_voltage_l{n}")
            amps = t.value(f"instantaneous_current_l{n}")
            assert isinstance(volts, Decimal) and isinstance(amps, Decimal)
            assert Decimal(220) <= volts <= Decimal(240)
            assert abs(amps - (p_in + p_out) / volts) <= Decimal("0.011")
        assert phases == net


def test_tariff_switches_at_seven_in_the_template_width() -> None:
    # Monday 06:59:50 NL: low tariff 1 until 07:00, then tariff 2 (printed 0001 / 0002).
    start = datetime.fromisoformat("2024-01-15T06:59:50+01:00")
    _, telegrams = _generate("V5.txt", 20, seed=1, start=start)
    parsed = [parse_telegram(raw) for raw in telegrams]
    tariffs = [t.value("electricity_active_tariff") for t in parsed]
    assert tariffs == ["0001"] * 10 + ["0002"] * 10
    t2 = [t.value("electricity_used_tariff_2") for t in parsed]
    assert len(set(t2[:10])) == 1  # tariff 2 does not count before seven


def test_fluvius_template_uses_the_belgian_schedule_and_demand() -> None:
    # Weekday 21:59:50 BE: day tariff 1 until 22:00, then night tariff 2.
    start = datetime.fromisoformat("2024-01-15T21:59:50+01:00")
    template, telegrams = _generate("FLUVIUS_V171.txt", 20, seed=1, start=start)
    parsed = [parse_telegram(raw) for raw in telegrams]
    tariffs = [t.value("electricity_active_tariff") for t in parsed]
    assert tariffs == ["0001"] * 10 + ["0002"] * 10
    assert template.renderer.tracks_demand
    demand = [t.value("belgium_current_average_demand") for t in parsed]
    assert any(isinstance(d, Decimal) and d > 0 for d in demand)


def test_gas_refreshes_every_five_minutes_on_dsmr5() -> None:
    start = datetime.fromisoformat("2024-01-15T17:58:30+01:00")
    _, telegrams = _generate("V5.txt", 1800, seed=4, start=start)
    readings = []
    for raw in telegrams[::30]:
        match = re.search(rb"0-1:24\.2\.1\((\d{12})W\)\((\d{5}\.\d{3})\*m3\)", raw)
        assert match is not None
        readings.append((match.group(1).decode(), Decimal(match.group(2).decode())))
    stamps = sorted({stamp for stamp, _ in readings})
    assert stamps[0] == "240115175500"
    assert all(int(s[8:10]) % 5 == 0 and s[10:] == "00" for s in stamps)
    assert len(stamps) == 7  # 17:55, 18:00 ... 18:25
    values = [value for _, value in readings]
    assert values == sorted(values) and values[-1] > values[0]


def test_gas_refreshes_hourly_on_dsmr4() -> None:
    start = datetime.fromisoformat("2024-01-15T17:30:00+01:00")
    template, telegrams = _generate("V4_2.txt", 600, seed=4, start=start)
    assert template.profile.interval == 10 and template.profile.gas_period == 3600
    stamps = {re.search(rb"0-1:24\.2\.1\((\d{12}W)\)", raw).group(1) for raw in telegrams}  # type: ignore[union-attr]
    assert stamps == {b"240115170000W", b"240115180000W", b"240115190000W"}


def test_dsmr22_gas_keeps_its_two_line_form_and_channel() -> None:
    _, telegrams = _generate("DSMR22_ISKRA_MT382_REAL.txt", 400, seed=1)
    last = _lines(telegrams[-1])
    index = next(i for i, line in enumerate(last) if line.startswith("0-2:24.3.0("))
    assert re.fullmatch(
        r"0-2:24\.3\.0\(\d{12}\)\(00\)\(60\)\(1\)\(0-2:24\.2\.1\)\(m3\)", last[index]
    )
    assert re.fullmatch(r"\(\d{5}\.\d{3}\)", last[index + 1])
    gas = parse_telegram(telegrams[-1]).value("gas_meter_reading", 2)
    assert isinstance(gas, Decimal) and gas >= Decimal("13368.864")


def test_empty_mbus_slot_and_heat_meter_are_not_invented() -> None:
    _, telegrams = _generate("V5_TWO_MBUS.txt", 5)
    assert b"0-1:24.2.1(700101010000W)(00000000)\r\n" in telegrams[-1]
    _, heat = _generate("UNPADDED_CRC.txt", 400)
    # The heat reading has no flow in the model: its value stays, its capture time refreshes.
    assert all(b"(240.860*GJ)" in raw for raw in heat)
    assert b"0-1:24.2.1(260215200500W)" in heat[0]
    assert b"0-1:24.2.1(260215201000W)" in heat[-1]


def test_unpadded_crc_meter_gets_unpadded_crcs() -> None:
    _, telegrams = _generate("UNPADDED_CRC.txt", 50)
    for raw in telegrams:
        bang = raw.rindex(b"!")
        assert raw[bang + 1 : -2] == f"{crc16_arc(raw[: bang + 1]):X}".encode()
    assert parse_telegram(telegrams[0]).crc.valid


def test_behaviour_is_inferred_from_the_version_and_can_be_overridden() -> None:
    expected = {
        "V5.txt": ("115200 8N1", 1),
        "FLUVIUS_V171.txt": ("115200 8N1", 1),
        "V4_2.txt": ("115200 7E1", 10),
        "V2_2.txt": ("9600 7E1", 10),
        "V3.txt": ("9600 7E1", 10),
        "ESY5Q3DA1004_V304.txt": ("9600 7E1", 10),
        "V5_EON_HU.txt": ("115200 8N1", 10),
    }
    for name, (serial, interval) in expected.items():
        profile = _template(name).profile
        assert (profile.serial.label, profile.interval) == (serial, interval), name
    overridden = _template("V5.txt", profile="dsmr4", interval=5).profile
    assert (overridden.serial.label, overridden.interval) == ("115200 7E1", 5)


def test_fluvius_month_peak_starts_from_the_template_in_its_month() -> None:
    template = _template("FLUVIUS_V171.txt")
    own_month = parse_telegram(template.meter().next_telegram()[1])
    peak = own_month.get("belgium_maximum_demand_current_month")
    assert peak is not None and peak.value == Decimal("2.589")
    later = template.meter(start=datetime.fromisoformat("2024-01-15T18:00:00+01:00"))
    peak = parse_telegram(later.next_telegram()[1]).get("belgium_maximum_demand_current_month")
    assert peak is not None and peak.timestamp is not None
    assert (peak.timestamp.year, peak.timestamp.month) == (2024, 1)


def test_command_interval_and_profile_with_template() -> None:
    start = "2024-01-15T18:00:00+01:00"
    fixture = str(TELEGRAM_DIR / "V5.txt")
    events, serial, what = meter_command._events(
        _args("--template", fixture, "--profile", "dsmr4", "--interval", "5", "--start", start)
    )
    assert serial.label == "115200 7E1" and "every 5 s" in what
    t, raw = next(iter(events))
    assert t == 0 and raw.startswith(b"/ISk5\\2MT382-1000\r\n")
    events, serial, what = meter_command._events(_args("--interval", "7", "--start", start))
    assert "dsmr5" in what and "every 7 s" in what


def test_same_seed_same_bytes() -> None:
    start = datetime.fromisoformat("2024-03-31T01:59:00+01:00")
    a = _generate("V5_EON_HU.txt", 5, seed=9, start=start)[1]
    b = _generate("V5_EON_HU.txt", 5, seed=9, start=start)[1]
    c = _generate("V5_EON_HU.txt", 5, seed=10, start=start)[1]
    assert a == b and a != c


def test_lf_only_template_is_accepted() -> None:
    raw = telegram_part("V4_2.txt").replace(b"\r\n", b"\n")
    template = parse_template(raw, name="copied")
    telegram = template.meter().next_telegram()[1]
    assert b"\r\n" in telegram and parse_telegram(telegram).crc.valid


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "no telegram"),
        (b"hello\r\n", "no telegram"),
        (b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n", "no '!' end line"),
        (telegram_part("V4_2.txt").replace(b"!6796", b"!6797"), "CRC mismatch"),
        (b"/X\r\n\r\n0-0:96.13.0()\r\n!\r\n", "no line the virtual meter can update"),
        (b"/\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n!\r\n", "header line is empty"),
    ],
)
def test_bad_templates_are_refused_with_a_clear_message(content: bytes, message: str) -> None:
    with pytest.raises(TemplateError, match=message):
        parse_template(content, name="bad")


def test_unreadable_template(tmp_path: Path) -> None:
    with pytest.raises(TemplateError, match="cannot read template"):
        load_template(tmp_path / "missing.txt")
    with pytest.raises(TemplateError, match="cannot read template"):
        load_template(tmp_path)


# -- the command ----------------------------------------------------------------------------------


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    meter_command.configure(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"no telegram here\n", "no telegram"), (None, "cannot read template")],
)
def test_command_bad_template_exits_2(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes | None, message: str
) -> None:
    path = tmp_path / "template.txt"
    if content is not None:
        path.write_bytes(content)
    with caplog.at_level(logging.ERROR):
        code = meter_command.run(_args("--template", str(path), "--stdout", "--count", "1"))
    assert code == 2
    assert message in caplog.text and str(path) in caplog.text


def test_command_template_excludes_replay() -> None:
    with pytest.raises(SystemExit) as exit_info:
        _args("--template", "a.txt", "--replay", "b.txt")
    assert exit_info.value.code == 2


@pytest.mark.e2e
def test_command_writes_template_stream_with_faults() -> None:
    start = "2024-01-15T18:00:00+01:00"
    fixture = TELEGRAM_DIR / "FLUVIUS_V171.txt"
    args = ("--template", str(fixture), "--start", start, "--seed", "3", "--count", "40")
    faults = ("--bit-errors", "0.2", "--junk", "0.2")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "p1lora.tools.cli",
            "meter",
            *args,
            "--speed",
            "max",
            "--stdout",
            *faults,
        ],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    meter = load_template(fixture).meter(seed=3, start=datetime.fromisoformat(start))
    injector = FaultInjector(FaultConfig(bit_errors=0.2, junk=0.2), seed=3)
    expected = b"".join(
        data for _, data in inject((meter.next_telegram() for _ in range(40)), injector)
    )
    assert result.stdout == expected
    framer = TelegramFramer()
    telegrams = list(framer.feed(result.stdout))
    # A flipped '/' or '!' can hide a telegram from the framer; the rest fail their CRC.
    assert 25 < len(telegrams) <= 40
    assert 0 < framer.stats.crc_errors < len(telegrams)
    assert all(t.raw.startswith(b"/FLU5\\253769484_A\r\n") for t in telegrams)
    assert b"in the style of" in result.stderr


@pytest.mark.e2e
def test_command_help_documents_template() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "p1lora.tools.cli", "meter", "--help"],
        capture_output=True,
        timeout=120,
        check=False,
    )
    text = result.stdout.decode()
    assert "--template FILE" in text and "verbatim" in text and "--interval" in text


@pytest.mark.parametrize(("printed", "low", "high"), [("251.0", 240, 245), ("215.0", 220, 225)])
def test_template_voltages_outside_the_meters_range_wander_inside_it(
    printed: str, low: int, high: int
) -> None:
    """The virtual meter keeps voltages in 220-245 V: a template level outside that is
    clamped inside it, so that voltages still wander instead of sticking to the bound."""
    body = telegram_part("V5.txt").replace(
        b"1-0:32.7.0(0230.0*V)", f"1-0:32.7.0({printed:0>6}*V)".encode()
    )
    body = body[: body.rindex(b"!") + 1]
    body += b"%04X\r\n" % crc16_arc(body)
    meter = parse_template(body).meter(
        seed=1, start=datetime.fromisoformat("2024-01-01T00:00:00+01:00")
    )
    volts: list[Decimal] = []
    for _ in range(300):
        value = parse_telegram(meter.next_telegram()[1]).value("instantaneous_voltage_l1")
        assert isinstance(value, Decimal)
        volts.append(value)
    assert low <= min(volts) and max(volts) <= high, (min(volts), max(volts))
    assert len(set(volts)) > 5  # wandering, not pinned to 245.0 / 220.0
