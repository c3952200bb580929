"""Differential test: for every fixture, our values agree with dsmr_parser's, line by line.

dsmr_parser is the ecosystem's parser (Home Assistant uses it), so it is the oracle. It is
driven the way its own TelegramParser drives itself: each object of the right specification
finds its lines with its regex and parses them with its value parser. Every line it parses must
give the same value, unit, timestamp(s) and (after a documented name mapping) the same key in
our parse of the same telegram. The full TelegramParser (with its CRC check) must accept every
fixture too, so the specifications chosen are the right ones.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest
from dsmr_parser import telegram_specifications as specs
from dsmr_parser.objects import (
    CosemObject,
    MBusObject,
    MBusObjectPeak,
    ProfileGenericObject,
)
from dsmr_parser.parsers import TelegramParser

from p1lora.common.dsmr_time import eu_offset_for_local
from p1lora.common.parser import parse_telegram
from p1lora.common.telegram import DataObject, ProfileEntry, Telegram

from .helpers_telegrams import FIXTURES, fixture

#: Fixture -> the dsmr_parser specification for that meter.
SPEC_FOR: dict[str, str] = {
    "DSMR22_ISKRA_MT382_REAL.txt": "V2_2",
    "V2_2.txt": "V2_2",
    "V3.txt": "V3",
    "V4_2.txt": "V4",
    "V5.txt": "V5",
    "V5_TWO_MBUS.txt": "V5",
    "FLUVIUS_V171.txt": "BELGIUM_FLUVIUS",
    "FLUVIUS_V171_ALT.txt": "BELGIUM_FLUVIUS",
    "SAGEMCOM_T210_D_R.txt": "SAGEMCOM_T210_D_R",
    "UNPADDED_CRC.txt": "V5",
    "V5_EON_HU.txt": "EON_HUNGARY",
    "ESY5Q3DA1004_V304.txt": "Q3D",
}

#: dsmr_parser value names whose key is spelled differently here (HA's spelling, or the
#: meaning of the line on that channel). A callable picks by our object.
KEY_ALIASES: dict[str, Any] = {
    "P1_MESSAGE_HEADER": "p1_version",
    "P1_MESSAGE_TIMESTAMP": "timestamp",
    "ACTUAL_TRESHOLD_ELECTRICITY": "actual_threshold_electricity",
    "BELGIUM_MAXIMUM_DEMAND_MONTH": "belgium_maximum_demand_current_month",
    "BELGIUM_EQUIPMENT_IDENTIFIER": "equipment_identifier",
    "COSEM_LOGICAL_DEVICE_NAME": "luxembourg_equipment_identifier",
    "ELECTRICITY_COMBINED": "eon_hu_electricity_combined",
    "INSTANTANEOUS_POWER_FACTOR_TOTAL": "eon_hu_instantaneous_power_factor_total",
    "INSTANTANEOUS_POWER_FACTOR_L1": "eon_hu_instantaneous_power_factor_l1",
    "INSTANTANEOUS_POWER_FACTOR_L2": "eon_hu_instantaneous_power_factor_l2",
    "INSTANTANEOUS_POWER_FACTOR_L3": "eon_hu_instantaneous_power_factor_l3",
    "FREQUENCY": "eon_hu_frequency",
    "DEVICE_TYPE": "mbus_device_type",
    "VALVE_POSITION_GAS": "mbus_valve_position",
    # 96.1.0/96.1.1 on an M-Bus channel identify the sub-meter, on channel 0 the meter.
    "EQUIPMENT_IDENTIFIER_GAS": lambda obj: (
        "mbus_equipment_identifier" if obj.channel else "equipment_serial_number"
    ),
    "EQUIPMENT_IDENTIFIER": lambda obj: (
        "mbus_equipment_identifier" if obj.channel else "equipment_identifier"
    ),
    # M-Bus readings are named after the channel's device type, as Home Assistant does.
    "HOURLY_GAS_METER_READING": lambda obj: obj.spec.key,
    "MBUS_METER_READING": lambda obj: obj.spec.key,
}


def oracle_parser(spec_name: str, **kwargs: Any) -> TelegramParser:
    spec = getattr(specs, spec_name)
    if spec.get("general_global_cipher"):
        # The Sagemcom fixture is the decrypted plain text.
        spec = copy.deepcopy(spec)
        spec["general_global_cipher"] = False
    return TelegramParser(spec, **kwargs)


def oracle_lines(spec_name: str, text: str) -> list[tuple[str, str, Any]]:
    """(value name, matched line text, dsmr_parser object) for every line the spec parses."""
    parser = oracle_parser(spec_name)
    found = []
    for entry in parser.telegram_specification["objects"]:
        pattern = parser.telegram_specification_regexes[entry["obis_reference"]]
        for match in pattern.findall(text):
            # Parsers are stateful (ProfileGenericParser grows); use a copy per line.
            value_parser = copy.deepcopy(entry["value_parser"])
            found.append((entry["value_name"], match, value_parser.parse(match)))
    return found


def ours_for_line(telegram: Telegram, line: str) -> DataObject:
    wanted = line.rstrip("\r\n")
    matches = [obj for obj in telegram.objects if obj.raw == wanted]
    assert len(matches) == 1, f"no single object for line {wanted!r}"
    return matches[0]


def same_scalar(ours: Any, theirs: Any, obj: DataObject) -> bool:
    if obj.spec is not None and obj.spec.kind == "text" and theirs is not None:
        # dsmr_parser keeps text messages hex-encoded (or as an int); we decode them.
        return ours.encode("latin-1").hex().upper() == str(theirs).upper()
    if isinstance(ours, int) and isinstance(theirs, str):
        return ours == int(theirs)
    if isinstance(ours, Decimal) and isinstance(theirs, Decimal):
        # Same digits, not merely the same number.
        return str(ours) == str(theirs)
    return ours == theirs


def same_time(ours: datetime | None, theirs: datetime | None) -> bool:
    """Same instant; or the documented difference when a meter's S/W flag is off.

    FLUVIUS_V171 marks two March (winter) times with S. We take the flag as the UTC offset,
    as the DSMR spec defines it; dsmr_parser ignores the flag outside the repeated October
    hour and uses the calendar. Both then agree on the wall-clock time.
    """
    if ours == theirs:
        return True
    if ours is None or theirs is None:
        return False
    wall = ours.replace(tzinfo=None)
    calendar = eu_offset_for_local(wall)
    flag_contradicts_calendar = ours.utcoffset() != calendar.utcoffset(None)
    return flag_contradicts_calendar and theirs == wall.replace(tzinfo=calendar)


def compare(obj: DataObject, theirs: Any) -> None:
    if isinstance(theirs, list):  # MaxDemandParser: 13-month peak history
        entries = obj.value
        assert isinstance(entries, list)
        assert len(entries) == len(theirs)
        for ours_entry, peak in zip(entries, theirs, strict=True):
            assert isinstance(peak, MBusObjectPeak)
            assert same_time(ours_entry.period_start, peak.datetime)
            assert same_time(ours_entry.timestamp, peak.occurred)
            assert same_scalar(ours_entry.value, peak.value, obj)
            assert ours_entry.unit == peak.unit
    elif isinstance(theirs, ProfileGenericObject):  # power-failure log
        entries = obj.value
        assert isinstance(entries, list)
        assert len(entries) == theirs.buffer_length
        for ours_entry, event in zip(entries, theirs.buffer, strict=True):
            assert isinstance(ours_entry, ProfileEntry)
            assert same_time(ours_entry.timestamp, event.datetime)
            assert ours_entry.value == event.value
            assert ours_entry.unit == event.unit
    elif isinstance(theirs, MBusObject):  # timestamped value (M-Bus, month peak, 2.2 gas)
        assert same_time(obj.timestamp, theirs.datetime)
        assert same_scalar(obj.value, theirs.value, obj)
        assert obj.unit == theirs.unit
    else:
        assert isinstance(theirs, CosemObject)
        assert same_scalar(obj.value, theirs.value, obj), (obj.value, theirs.value)
        assert obj.unit == theirs.unit


def expected_key(value_name: str, obj: DataObject) -> str:
    alias = KEY_ALIASES.get(value_name, value_name.lower())
    return alias(obj) if callable(alias) else alias


@pytest.mark.parametrize("name", FIXTURES)
def test_full_oracle_accepts_the_fixture(name):
    text = fixture(name).decode("ascii")
    result = oracle_parser(SPEC_FOR[name]).parse(text)
    assert len(result) > 0


@pytest.mark.parametrize("name", FIXTURES)
def test_values_agree_with_dsmr_parser(name):
    raw = fixture(name)
    ours = parse_telegram(raw)
    lines = oracle_lines(SPEC_FOR[name], raw.decode("ascii"))
    assert len(lines) >= 5, "the oracle should read most of the telegram"
    for value_name, line, theirs in lines:
        obj = ours_for_line(ours, line)
        compare(obj, theirs)
        assert obj.key == expected_key(value_name, obj), line


@pytest.mark.parametrize("name", FIXTURES)
def test_we_read_every_line_the_oracle_reads_and_more(name):
    raw = fixture(name)
    ours = parse_telegram(raw)
    oracle_raws = {line.rstrip("\r\n") for _, line, _ in oracle_lines(SPEC_FOR[name], raw.decode())}
    ours_known = {obj.raw for obj in ours.objects if obj.key is not None}
    assert oracle_raws <= ours_known
    # Lines dsmr_parser has no spec entry for are still known to our table.
    assert not ours.unknown_objects()


def test_oracle_is_not_vacuous():
    """The comparison can fail: a changed digit is noticed."""
    raw = fixture("V5.txt").replace(b"000004.426", b"000004.427")
    ours = parse_telegram(raw)
    lines = oracle_lines("V5", fixture("V5.txt").decode())
    mismatches = 0
    for _, line, theirs in lines:
        if "1.8.1" in line:
            obj = next(o for o in ours.objects if o.obis == "1-0:1.8.1")
            with pytest.raises(AssertionError):
                compare(obj, theirs)
            mismatches += 1
    assert mismatches == 1


def test_digits_are_compared_not_just_numbers():
    obj = parse_telegram(fixture("V5.txt")).get("electricity_delivered_tariff_2")
    assert obj is not None
    assert not same_scalar(Decimal("0"), Decimal("0.000"), obj)
    assert same_scalar(obj.value, Decimal("000000.000"), obj)
    assert re.fullmatch(r"0\.000", str(obj.value))


def test_time_comparison_only_forgives_a_contradicting_flag():
    from p1lora.common.dsmr_time import SUMMER, WINTER

    july = datetime(2020, 7, 1, 12, 0, tzinfo=SUMMER)
    assert same_time(july, july)
    # An hour off with a flag that matches the calendar is a real disagreement.
    assert not same_time(july, datetime(2020, 7, 1, 12, 0, tzinfo=WINTER))
    # March 1 printed with S: wall clock agrees, offsets differ; allowed.
    march = datetime(2020, 3, 1, 0, 0, tzinfo=SUMMER)
    assert same_time(march, datetime(2020, 3, 1, 0, 0, tzinfo=WINTER))
    assert not same_time(march, None)
