"""The parser beyond the fixtures: other countries, odd lines, look-ups, derived values, JSON."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from p1lora.common import dsmr_time, parser
from p1lora.common.derived import DERIVED_SPECS, DerivedValues, compute_derived
from p1lora.common.framing import CrcCheck
from p1lora.common.parser import TelegramParseError, decode_text, parse_telegram
from p1lora.common.telegram import DataObject, ProfileEntry, dumps, to_json_dict

from .helpers_telegrams import (
    aidon_telegram,
    build_telegram,
    fixture,
    p1_client_telegram,
    smarty_telegram,
)

D = Decimal
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))
HEADER = "ISK5\\2M550T-1012"


def parse_lines(*lines: str, crc: bool = True):
    return parse_telegram(build_telegram(HEADER, lines, crc=crc))


@pytest.fixture(autouse=True)
def _fresh_warning_memory():
    # Warnings are given once per problem; each test starts from a clean slate.
    dsmr_time._reset_for_tests()
    parser._warned.clear()


# -- countries without a fixture ---------------------------------------------------------------


def test_luxembourg_smarty():
    t = parse_telegram(smarty_telegram())
    assert t.crc.valid is True
    assert t.manufacturer == "Luxmetering (Smarty)"
    assert t.equipment_id == "53414731303330373030303132373031"
    assert t.value("electricity_imported_total") == D("4512.871")
    assert t.value("electricity_exported_total") == D("1207.440")
    assert t.get("electricity_reactive_imported_total").unit == "kvarh"
    assert t.value("electricity_reactive_exported_total") == D("981.356")
    assert t.get("actual_threshold_electricity").unit == "kVA"
    assert t.value("instantaneous_apparent_power_positive") == D("0.431")
    limits = t.get("current_limit_import_export")
    assert (limits.value, limits.unit) == ([D("40"), D("-40")], "A")
    assert t.value("actual_switch_position") == 1
    assert t.value("mbus_switch_position", channel=1) == 0
    assert t.value("gas_reading", channel=1) == D("1234.567")
    assert t.value("text_message_2") is None
    # Only totals: derived values use them.
    assert t.derived.total_energy_import == D("4512.871")
    assert t.derived.net_energy == D("3305.431")
    assert not t.unknown_objects()


def test_swedish_aidon():
    t = parse_telegram(aidon_telegram())
    assert t.manufacturer == "Aidon"
    assert t.meter_timestamp == datetime(2024, 1, 15, 18, 30, 12, tzinfo=CET)
    assert t.value("electricity_imported_total") == D("6678.394")
    assert t.value("electricity_reactive_exported_total") == D("1020.971")
    assert t.value("current_reactive_exported") == D("0.309")
    assert [t.value(f"instantaneous_reactive_power_l{phase}_negative") for phase in (1, 2, 3)] == [
        D("0.009"),
        D("0.161"),
        D("0.138"),
    ]
    assert t.value("instantaneous_current_l1") == D("4.2")
    assert t.get("instantaneous_reactive_power_l1_positive").spec.device_class == "reactive_power"
    assert not t.unknown_objects()
    assert t.derived.net_power == D("1.727")


# -- lines nobody planned for --------------------------------------------------------------------


def test_unknown_lines_are_kept_with_code_and_raw_text():
    t = parse_lines(
        "1-0:1.8.1(000001.000*kWh)",
        "1-0:99.1.0(000123.456*kWh)",
        "0-0:96.50.68(ON)",
        "1-0:0.9.1(1)(2)(3)",
        "0-3:24.2.1(240101000000W)(00012.000*m3)",
    )
    unknown = t.unknown_objects()
    assert [obj.obis for obj in unknown] == [
        "1-0:99.1.0",
        "0-0:96.50.68",
        "1-0:0.9.1",
        # An M-Bus reading on channel 3 is known (0-n:24.2.1); none of these are.
    ]
    number, text, groups = unknown
    assert (number.value, number.unit, number.raw) == (
        D("123.456"),
        "kWh",
        "1-0:99.1.0(000123.456*kWh)",
    )
    assert text.value == "ON"
    assert groups.value == ["1", "2", "3"]
    reading = t.get("mbus_meter_reading", channel=3)
    assert reading is not None
    assert reading.value == D("12.000")


def test_line_without_obis_code_is_kept_whole():
    t = parse_lines("1-0:1.8.1(000001.000*kWh)", "this is not an OBIS line")
    stray = t.objects[-1]
    assert (stray.obis, stray.key, stray.value, stray.raw) == (
        "",
        None,
        "this is not an OBIS line",
        "this is not an OBIS line",
    )


def test_unreadable_value_keeps_key_and_raw_text_and_warns_once(caplog):
    with caplog.at_level(logging.WARNING):
        t = parse_lines("1-0:1.8.1(00ab01.000*kWh)", "0-0:96.7.21(lots)")
        parse_lines("1-0:1.8.1(00ab01.000*kWh)")
    energy = t.get("electricity_used_tariff_1")
    assert (energy.value, energy.raw) == (None, "1-0:1.8.1(00ab01.000*kWh)")
    assert t.get("short_power_failure_count").value is None
    warnings = [r for r in caplog.records if "1-0:1.8.1" in r.getMessage()]
    assert len(warnings) == 1
    assert "00ab01.000" in warnings[0].getMessage()


def test_trailing_blanks_and_odd_numbers_are_tolerated():
    t = parse_lines("1-0:1.8.1(000001.500*kWh)  ", "1-0:2.7.0(-00.120*kW)", "1-0:1.7.0()")
    assert t.value("electricity_used_tariff_1") == D("1.500")
    assert t.value("current_electricity_delivery") == D("-0.120")
    assert t.value("current_electricity_usage") is None


def test_values_keep_the_meters_digits():
    t = parse_lines(
        "1-0:1.8.1(003808.351*kWh)", "1-0:2.8.1(000000.000*kWh)", "1-0:1.7.0(00.00000000*kW)"
    )
    assert str(t.value("electricity_used_tariff_1")) == "3808.351"
    assert str(t.value("electricity_delivered_tariff_1")) == "0.000"
    text = dumps(to_json_dict(t))
    assert '"value": 3808.351,' in text
    assert '"value": 0.000,' in text
    assert '"value": 0.00000000,' in text


def test_power_failure_log_of_any_length():
    entries = "".join(f"(2301{day:02d}120000W)({day * 100:010d}*s)" for day in range(1, 11))
    t = parse_lines(f"1-0:99.97.0(10)(0-0:96.7.19){entries}")
    log = t.value("power_event_failure_log")
    assert len(log) == 10
    assert log[9] == ProfileEntry(datetime(2023, 1, 10, 12, 0, tzinfo=CET), 1000, "s")


def test_power_failure_log_with_a_wrong_count_keeps_what_is_there(caplog):
    with caplog.at_level(logging.WARNING):
        t = parse_lines("1-0:99.97.0(3)(0-0:96.7.19)(230101120000W)(0000000100*s)")
    assert [entry.value for entry in t.value("power_event_failure_log")] == [100]
    assert "3 entries but has 1" in caplog.text


def test_empty_power_failure_log():
    assert parse_lines("1-0:99.97.0()").value("power_event_failure_log") == []


def test_text_messages_are_hex_decoded():
    message = "Storing morgen 10:00 €".encode().hex().upper()
    t = parse_lines(f"0-0:96.13.0({message})", "0-0:96.13.1(3031)")
    assert t.value("text_message") == "Storing morgen 10:00 €"
    assert t.value("text_message_code") == "01"


def test_decode_text():
    assert decode_text("48656C6C6F") == "Hello"
    assert decode_text("plain text") == "plain text"
    assert decode_text("ABC") == "ABC"  # odd length: not hex
    assert decode_text("E9") == "é"  # not UTF-8: Latin-1, nothing lost


def test_garbage_meter_timestamp_is_null_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING):
        t = parse_lines("0-0:1.0.0(632525252525W)", "1-0:1.8.1(000001.000*kWh)")
        parse_lines("0-0:1.0.0(632525252525W)")
    assert t.meter_timestamp is None
    assert t.get("timestamp").raw == "0-0:1.0.0(632525252525W)"
    assert t.value("electricity_used_tariff_1") == D("1.000")
    assert caplog.text.count("632525252525W") == 1


def test_timestamps_take_their_offset_from_the_flag():
    assert dsmr_time.parse_timestamp("240701120000S") == datetime(2024, 7, 1, 10, 0, tzinfo=UTC)
    assert dsmr_time.parse_timestamp("240101120000W") == datetime(2024, 1, 1, 11, 0, tzinfo=UTC)
    assert dsmr_time.parse_timestamp("240101120000w").utcoffset() == timedelta(hours=1)
    # The repeated hour at the end of October: the flag tells them apart.
    first = dsmr_time.parse_timestamp("241027023000S")
    second = dsmr_time.parse_timestamp("241027023000W")
    assert second - first == timedelta(hours=1)


def test_timestamps_without_flag_use_the_eu_summer_time_rule():
    assert dsmr_time.parse_timestamp("240701120000").utcoffset() == timedelta(hours=2)
    assert dsmr_time.parse_timestamp("240101120000").utcoffset() == timedelta(hours=1)
    assert dsmr_time.parse_timestamp("240331015959").utcoffset() == timedelta(hours=1)
    assert dsmr_time.parse_timestamp("240331030000").utcoffset() == timedelta(hours=2)
    assert dsmr_time.parse_timestamp("241027035959").utcoffset() == timedelta(hours=1)


@pytest.mark.parametrize(
    "text", ["", "2401011200", "24010112000X", "240132120000W", "24013112006XW", "２40101120000W"]
)
def test_not_a_timestamp(text):
    assert dsmr_time.parse_timestamp(text) is None


def test_format_timestamp_round_trips():
    for text in ("240701120000S", "240101120000W", "241027023000S", "241027023000W"):
        moment = dsmr_time.parse_timestamp(text)
        assert dsmr_time.format_timestamp(moment) == text
        assert dsmr_time.format_timestamp(moment.astimezone(UTC)) == text


def test_mbus_channels_one_to_four_by_device_type():
    t = parse_lines(
        "0-1:24.1.0(003)",
        "0-1:24.2.1(240101120000W)(00100.000*m3)",
        "0-2:24.1.0(007)",
        "0-2:24.2.1(240101120000W)(00020.000*m3)",
        "0-3:24.1.0(004)",
        "0-3:24.2.1(240101120000W)(00003.000*GJ)",
        "0-4:24.1.0(099)",
        "0-4:24.2.1(240101120000W)(00004.000)",
    )
    assert [(obj.key, obj.channel) for obj in t.objects if "24.2.1" in obj.obis] == [
        ("gas_reading", 1),
        ("water_reading", 2),
        ("heat_reading", 3),
        ("mbus_meter_reading", 4),
    ]
    devices = t.mbus_devices()
    assert [(d.channel, d.type_info and d.type_info.name) for d in devices] == [
        (1, "gas"),
        (2, "water"),
        (3, "heat"),
        (4, None),
    ]
    assert devices[0].reading.timestamp == datetime(2024, 1, 1, 12, tzinfo=CET)
    assert t.get("gas_reading", channel=1).spec.device_class == "gas"
    assert t.get("water_reading").channel == 2


def test_reading_before_its_device_type_line_is_still_named():
    t = parse_lines("0-1:24.2.1(240101120000W)(00100.000*m3)", "0-1:24.1.0(003)")
    assert t.get("gas_reading", channel=1) is not None


def test_lookups():
    t = parse_telegram(fixture("V5_TWO_MBUS.txt"))
    assert t.get("nothing") is None
    assert t.value("nothing") is None
    assert "electricity_used_tariff_1" in t
    assert "nothing" not in t
    assert t.find_obis("1-0:1.8.1").key == "electricity_used_tariff_1"
    assert t.find_obis("1-0:1.8.1*255").key == "electricity_used_tariff_1"
    assert t.find_obis("1-0:9.9.9") is None
    assert t.get("gas_reading").channel == 1
    assert t.get("gas_reading", channel=2).value == D("246.138")
    assert len(list(t)) == len(t.objects)
    assert t.identity.flag_id == "ISK"
    assert t.identity.model == "M550T-1012"


def test_lf_only_text_parses_to_the_same_values():
    crlf = parse_telegram(fixture("V4_2.txt"))
    lf = parse_telegram(fixture("V4_2.txt").replace(b"\r\n", b"\n"))
    assert [(o.key, o.value) for o in lf.objects] == [(o.key, o.value) for o in crlf.objects]
    assert lf.crc.valid is False


def test_framer_crc_is_reused():
    crc = CrcCheck("ABCD", "ABCD", True)
    assert parse_telegram(fixture("V5.txt"), crc).crc is crc


def test_leading_junk_is_ignored():
    assert parse_telegram(b"junk\r\n" + fixture("V5.txt")).header == "ISk5\\2MT382-1000"


@pytest.mark.parametrize(
    "raw", [b"", b"1-0:1.8.1(1*kWh)\r\n!\r\n", b"/ISK5 no end\r\n1-0:1.8.1(1)\r\n"]
)
def test_not_a_telegram_raises_a_clear_error(raw):
    with pytest.raises(TelegramParseError):
        parse_telegram(raw)


# -- derived values ------------------------------------------------------------------------------


def test_derived_values_of_the_p1_client_reference_telegram():
    t = parse_telegram(p1_client_telegram())
    assert t.derived == DerivedValues(
        total_energy_import=D("3805.195"),
        total_energy_export=D("3760.880"),
        net_energy=D("44.315"),
        energy_unit="kWh",
        net_power=D("0.006"),
        power_unit="kW",
    )


def test_derived_values_in_wh_and_mixed_scales():
    t = parse_lines(
        "1-0:1.8.1(001000*Wh)",
        "1-0:1.8.2(000002.500*kWh)",
        "1-0:2.8.1(000500*Wh)",
        "1-0:1.7.0(1500*W)",
        "1-0:2.7.0(0.500*kW)",
    )
    assert t.derived.total_energy_import == D("3500.000")
    assert t.derived.energy_unit == "Wh"
    assert t.derived.net_energy == D("3000.000")
    assert t.derived.net_power == D("1000.000")
    assert t.derived.power_unit == "W"


def test_derived_values_missing_registers_are_null():
    t = parse_lines("1-0:1.8.0(000012.000*kWh)", "1-0:1.7.0(00.100*kW)")
    assert t.derived.total_energy_import == D("12.000")
    assert t.derived.total_energy_export is None
    assert t.derived.net_energy is None
    assert t.derived.net_power is None
    assert compute_derived([]) == DerivedValues()


def test_derived_values_refuse_to_mix_units(caplog):
    objs = [
        DataObject("1-0:1.8.1", "electricity_used_tariff_1", D(1), "kWh", None, None, ""),
        DataObject("1-0:1.8.2", "electricity_used_tariff_2", D(1), "m3", None, None, ""),
    ]
    assert compute_derived(objs).total_energy_import is None
    assert "cannot combine" in caplog.text


def test_derived_specs_are_home_assistant_ready():
    assert DERIVED_SPECS["net_energy"].state_class == "total"
    assert DERIVED_SPECS["net_power"].device_class == "power"
    assert set(DERIVED_SPECS) == set(DerivedValues().as_dict())


# -- JSON ----------------------------------------------------------------------------------------


def test_json_round_trip_keeps_decimals_exact():
    t = parse_telegram(fixture("FLUVIUS_V171.txt"))
    text = dumps(to_json_dict(t))
    assert "\n" not in text
    data = json.loads(text, parse_float=Decimal)
    assert data["crc"] == {"expected": "3AD7", "computed": "3AD7", "valid": True}
    assert data["meter_timestamp"] == "2020-05-12T13:54:09+02:00"
    by_key = {(o["key"], o["channel"]): o for o in data["objects"]}
    assert str(by_key["electricity_delivered_tariff_1", None]["value"]) == "0.000"
    water = by_key["water_reading", 2]
    assert water["value"] == D("872.234")
    assert water["timestamp"] == "2020-05-12T13:45:58+02:00"
    history = by_key["belgium_maximum_demand_13_months", None]["value"]
    assert history[0] == {
        "timestamp": "2020-04-23T19:25:38+02:00",
        "value": D("3.695"),
        "unit": "kW",
        "period_start": "2020-05-01T00:00:00+02:00",
    }
    assert data["derived"]["net_energy"] == {"value": D("15.781"), "unit": "kWh"}


def test_json_carries_raw_text_for_unknown_lines_and_on_request():
    t = parse_lines("1-0:1.8.1(000001.000*kWh)", "1-0:99.1.0(5)")
    plain = to_json_dict(t)
    assert "raw" not in plain["objects"][0]
    assert plain["objects"][1]["raw"] == "1-0:99.1.0(5)"
    assert to_json_dict(t, include_raw=True)["objects"][0]["raw"] == "1-0:1.8.1(000001.000*kWh)"


def test_dumps_types():
    moment = datetime(2024, 1, 1, tzinfo=CET)
    assert dumps({"a": [1, True, None, "é", D("1E+3"), 0.5, moment, False]}) == (
        '{"a": [1, true, null, "\\u00e9", 1000, 0.5, "2024-01-01T00:00:00+01:00", false]}'
    )
    with pytest.raises(ValueError, match="JSON number"):
        dumps(D("NaN"))
    with pytest.raises(TypeError):
        dumps(object())
    with pytest.raises(TypeError):
        dumps({1: 2})


def test_json_carries_raw_text_for_known_lines_whose_value_is_null():
    t = parse_lines("1-0:1.8.1(000001.000*kWh)", "1-0:1.8.2(abc*kWh)", "0-0:96.13.0()")
    objects = to_json_dict(t)["objects"]
    assert "raw" not in objects[0]
    assert objects[1]["value"] is None and objects[1]["raw"] == "1-0:1.8.2(abc*kWh)"
    assert objects[2]["value"] is None and objects[2]["raw"] == "0-0:96.13.0()"


def test_hungarian_billing_snapshot_has_its_own_key_and_no_kw_unit():
    t = parse_telegram(fixture("V5_EON_HU.txt"))
    snapshot = t.find_obis("0-0:98.1.0")
    assert snapshot is not None
    assert snapshot.key == "billing_snapshot"
    assert snapshot.spec is not None and snapshot.spec.unit is None
    assert "Hungary" in snapshot.spec.description
    assert isinstance(snapshot.value, list) and len(snapshot.value) == 19
    units = {entry.unit for entry in snapshot.value}
    assert units == {"kWh", "kvarh", "kW"}
    assert t.get("belgium_maximum_demand_13_months") is None
    # The Belgian history keeps the Belgian key, in kW.
    belgian = parse_telegram(fixture("FLUVIUS_V171.txt")).find_obis("0-0:98.1.0")
    assert belgian is not None and belgian.key == "belgium_maximum_demand_13_months"
    assert belgian.unit == "kW" and belgian.spec is not None and belgian.spec.unit == "kW"


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ("0-0:98.1.0(230701000000S)(000040.777*kWh)", "billing_snapshot"),
        ("0-0:98.1.0(1)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)", None),
        ("0-0:98.1.0()", None),
    ],
)
def test_billing_line_shape_picks_the_key(line, key):
    obj = parse_lines(line).find_obis("0-0:98.1.0")
    assert obj is not None
    assert obj.key == (key or "belgium_maximum_demand_13_months")


def test_warnings_quote_meter_text_escaped_and_short(caplog):
    noise = "1-0:1.8.1(\x1b[2J" + "x" * 3000 + "*kWh)"
    with caplog.at_level(logging.WARNING):
        t = parse_lines(noise)
    assert t.value("electricity_used_tariff_1") is None
    (record,) = [r for r in caplog.records if r.name == parser.logger.name]
    message = record.getMessage()
    assert "\x1b" not in message and "\\x1b" in message
    assert len(message) < 250 and "characters)" in message
