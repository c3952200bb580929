"""Every fixture telegram parses to the values tests/data/telegrams/README.md lists for it."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from p1lora.common import dsmr_time
from p1lora.common.framing import TelegramFramer
from p1lora.common.parser import parse_telegram
from p1lora.common.telegram import ProfileEntry, Telegram

from .helpers_telegrams import CRC_FIXTURES, FIXTURES, fixture, telegram_part

D = Decimal
CET = timezone(timedelta(hours=1))
CEST = timezone(timedelta(hours=2))


def parsed(name: str) -> Telegram:
    return parse_telegram(fixture(name))


def values(telegram: Telegram, *keys: str) -> list[object]:
    return [telegram.value(key) for key in keys]


@pytest.mark.parametrize("name", FIXTURES)
def test_every_fixture_frames_as_one_good_telegram(name):
    framer = TelegramFramer()
    framed = framer.feed(fixture(name)) + framer.flush()
    assert len(framed) == 1
    assert framed[0].raw == telegram_part(name)
    assert framer.stats.crc_errors == 0
    assert framer.stats.framing_errors == 0


@pytest.mark.parametrize("name", CRC_FIXTURES)
def test_crc_fixtures_pass_their_crc(name):
    telegram = parsed(name)
    assert telegram.crc.valid is True
    assert telegram.crc.expected is not None
    assert int(telegram.crc.expected, 16) == int(telegram.crc.computed, 16)


@pytest.mark.parametrize("name", sorted(set(FIXTURES) - set(CRC_FIXTURES)))
def test_fixtures_without_crc_report_none(name):
    telegram = parsed(name)
    assert telegram.crc.expected is None
    assert telegram.crc.valid is None
    assert len(telegram.crc.computed) == 4


@pytest.mark.parametrize("name", FIXTURES)
def test_no_line_is_dropped(name):
    raw = telegram_part(name).decode("ascii")
    body = raw.split("\r\n")[1:]
    data_lines = [line for line in body if line and not line.startswith(("!", "("))]
    assert len(parsed(name).objects) == len(data_lines)


def test_dsmr22_iskra_real():
    t = parsed("DSMR22_ISKRA_MT382_REAL.txt")
    assert t.header == "ISk5\\2MT382-1003"
    assert values(
        t,
        "electricity_used_tariff_1",
        "electricity_used_tariff_2",
        "electricity_delivered_tariff_1",
        "electricity_delivered_tariff_2",
    ) == [D("16719.940"), D("19403.220"), D("859.681"), D("1817.057")]
    assert t.value("current_electricity_usage") == D("0.89")
    assert t.value("current_electricity_delivery") == D("0")
    assert t.value("electricity_active_tariff") == "0002"
    gas = t.get("gas_meter_reading")
    assert gas is not None
    assert gas.channel == 2
    assert gas.value == D("13368.864")
    assert gas.unit == "m3"
    # Read at 2021-11-22 21:00 Dutch local time (winter).
    assert gas.timestamp == datetime(2021, 11, 22, 21, 0, tzinfo=CET)
    assert gas.raw == "0-2:24.3.0(211122210000)(00)(60)(1)(0-2:24.2.1)(m3)\r\n(13368.864)"
    assert t.get("gas_meter_reading", channel=1) is None
    assert t.value("mbus_device_type", channel=2) == 3


def test_v2_2_two_line_gas():
    t = parsed("V2_2.txt")
    for key in (
        "electricity_used_tariff_1",
        "electricity_used_tariff_2",
        "electricity_delivered_tariff_1",
        "electricity_delivered_tariff_2",
    ):
        assert t.value(key) == D("1.001")
    gas = t.get("gas_meter_reading", channel=1)
    assert gas is not None
    assert gas.value == D("1.001")
    assert gas.timestamp == datetime(2016, 11, 7, 19, 0, tzinfo=CET)


def test_v3():
    t = parsed("V3.txt")
    for key in (
        "electricity_used_tariff_1",
        "electricity_used_tariff_2",
        "electricity_delivered_tariff_1",
        "electricity_delivered_tariff_2",
    ):
        assert t.value(key) == D("12345.678")
    assert t.value("electricity_active_tariff") == "0002"
    assert t.value("current_electricity_usage") == D("1.19")
    assert t.value("gas_meter_reading") == D("1.001")
    # DSMR 3 prints the breaker limit in A, and the unit is kept as sent.
    assert t.get("actual_threshold_electricity").unit == "A"
    assert t.value("text_message_code") == "012345678"
    assert t.value("text_message") == "0123456789:;<=>?" * 5


def test_v4_2():
    t = parsed("V4_2.txt")
    assert t.header == "KFM5KAIFA-METER"
    assert t.value("p1_version") == "42"
    assert t.meter_timestamp == datetime(2016, 11, 13, 19, 57, 57, tzinfo=UTC)
    assert t.meter_timestamp.utcoffset() == timedelta(hours=1)
    assert values(t, "electricity_used_tariff_1", "electricity_used_tariff_2") == [
        D("1581.123"),
        D("1435.706"),
    ]
    assert values(t, "electricity_delivered_tariff_1", "electricity_delivered_tariff_2") == [
        D("0"),
        D("0"),
    ]
    assert t.value("current_electricity_usage") == D("2.027")
    assert values(t, "short_power_failure_count", "long_power_failure_count") == [15, 7]
    assert values(
        t, "instantaneous_current_l1", "instantaneous_current_l2", "instantaneous_current_l3"
    ) == [D(0), D(6), D(2)]
    assert values(
        t,
        "instantaneous_active_power_l1_positive",
        "instantaneous_active_power_l2_positive",
        "instantaneous_active_power_l3_positive",
    ) == [D("0.170"), D("1.247"), D("0.209")]
    gas = t.get("gas_reading", channel=1)
    assert gas is not None
    assert gas.value == D("981.443")
    assert gas.unit == "m3"
    assert gas.timestamp == datetime(2016, 11, 29, 20, 0, tzinfo=CET)
    log = t.value("power_event_failure_log")
    assert isinstance(log, list)
    assert len(log) == 3
    assert log[0] == ProfileEntry(datetime(2000, 1, 4, 18, 3, 20, tzinfo=CET), 237126, "s")
    assert [entry.value for entry in log] == [237126, 2147583646, 2317482647]


def test_v5():
    t = parsed("V5.txt")
    assert t.meter_timestamp == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)
    assert values(t, "electricity_used_tariff_1", "electricity_used_tariff_2") == [
        D("4.426"),
        D("2.399"),
    ]
    assert values(t, "electricity_delivered_tariff_1", "electricity_delivered_tariff_2") == [
        D("2.444"),
        D("0"),
    ]
    assert t.value("current_electricity_usage") == D("0.244")
    assert values(t, "long_power_failure_count", "short_power_failure_count") == [0, 13]
    assert values(
        t, "instantaneous_voltage_l1", "instantaneous_voltage_l2", "instantaneous_voltage_l3"
    ) == [D("230.0"), D("230.0"), D("229.0")]
    assert values(
        t, "instantaneous_current_l1", "instantaneous_current_l2", "instantaneous_current_l3"
    ) == [D("0.48"), D("0.44"), D("0.86")]
    assert t.value("gas_reading", channel=1) == D("0.107")
    assert t.value("power_event_failure_log") == []
    # Channel 2 is announced (device type 3) with an empty id and no reading.
    assert t.value("mbus_device_type", channel=2) == 3
    assert t.get("mbus_equipment_identifier", channel=2).value is None


def test_v5_two_mbus():
    t = parsed("V5_TWO_MBUS.txt")
    assert values(t, "electricity_used_tariff_1", "electricity_used_tariff_2") == [
        D("2130.115"),
        D("245.467"),
    ]
    assert t.value("current_electricity_usage") == D("0.111")
    empty = t.get("gas_reading", channel=1)
    assert empty is not None
    assert empty.value == D(0)
    assert empty.unit is None
    gas = t.get("gas_reading", channel=2)
    assert gas.value == D("246.138")
    assert gas.unit == "m3"
    assert gas.timestamp == datetime(2020, 4, 26, 22, 30, 1, tzinfo=CEST)
    devices = t.mbus_devices()
    assert [(d.channel, d.device_type, d.equipment_id) for d in devices] == [
        (1, 3, None),
        (2, 3, "4730303339303031393336393930363139"),
    ]
    assert devices[1].reading is gas


def test_fluvius_v171():
    t = parsed("FLUVIUS_V171.txt")
    assert t.value("belgium_version_information") == "50217"
    assert values(t, "electricity_used_tariff_1", "electricity_used_tariff_2") == [
        D("0.034"),
        D("15.758"),
    ]
    assert values(t, "electricity_delivered_tariff_1", "electricity_delivered_tariff_2") == [
        D("0"),
        D("0.011"),
    ]
    assert t.value("electricity_active_tariff") == "0001"
    assert t.value("belgium_current_average_demand") == D("2.351")
    peak = t.get("belgium_maximum_demand_current_month")
    assert peak.value == D("2.589")
    assert peak.unit == "kW"
    assert peak.timestamp == datetime(2020, 5, 9, 13, 45, 58, tzinfo=CEST)
    history = t.value("belgium_maximum_demand_13_months")
    assert [entry.value for entry in history] == [D("3.695"), D("5.980"), D("4.318")]
    assert history[0].period_start == datetime(2020, 5, 1, 0, 0, tzinfo=CEST)
    assert history[0].timestamp == datetime(2020, 4, 23, 19, 25, 38, tzinfo=CEST)
    assert history[2].timestamp == datetime(2020, 2, 10, 3, 54, 21, tzinfo=CET)
    gas = t.get("gas_reading", channel=1)
    assert gas.obis == "0-1:24.2.3"
    assert gas.value == D("112.384")
    assert gas.unit == "m3"
    water = t.get("water_reading", channel=2)
    assert water.value == D("872.234")
    assert t.value("mbus_device_type", channel=2) == 7
    assert water.spec is not None
    assert water.spec.device_class == "water"


def test_fluvius_alt_garbage_timestamp_is_null_with_a_warning(caplog):
    dsmr_time._reset_for_tests()
    with caplog.at_level(logging.WARNING):
        t = parsed("FLUVIUS_V171_ALT.txt")
    history = t.value("belgium_maximum_demand_13_months")
    assert len(history) == 4
    assert history[0].timestamp is None
    assert history[0].period_start == datetime(2023, 8, 1, tzinfo=CEST)
    assert history[0].value == D("0.000")
    assert history[1].timestamp == datetime(2023, 8, 31, 18, 15, tzinfo=CEST)
    assert "632525252525W" in caplog.text
    # Everything else is still there.
    assert t.value("electricity_used_tariff_1") == D("301.548")
    assert t.value("water_reading", channel=2) == D("8.579")


def test_sagemcom_t210_keeps_wh_and_w():
    t = parsed("SAGEMCOM_T210_D_R.txt")
    total = t.get("electricity_imported_total")
    assert (total.value, total.unit) == (D("6545766"), "Wh")
    power = t.get("current_electricity_usage")
    assert (power.value, power.unit) == (D("286"), "W")
    assert t.get("electricity_exported_total").value == D("58")
    assert t.get("electricity_reactive_imported_total").unit == "varh"
    assert t.value("electricity_reactive_exported_total") == D("3897726")
    assert t.value("current_reactive_exported") == D("166")
    assert t.derived.energy_unit == "Wh"
    assert t.derived.total_energy_import == D("6545766")


def test_unpadded_crc_and_heat_meter():
    t = parsed("UNPADDED_CRC.txt")
    assert t.crc.expected == "B9F"
    assert t.crc.computed == "0B9F"
    assert t.crc.valid is True
    heat = t.get("heat_reading", channel=1)
    assert (heat.value, heat.unit) == (D("240.860"), "GJ")
    assert heat.spec.device_class == "energy"


def test_eon_hungary():
    t = parsed("V5_EON_HU.txt")
    assert values(
        t,
        "electricity_used_tariff_1",
        "electricity_used_tariff_2",
        "electricity_used_tariff_3",
        "electricity_used_tariff_4",
    ) == [D("47.719"), D("125.921"), D("0"), D("0")]
    assert t.value("electricity_delivered_tariff_1") == D("401.829")
    assert t.value("eon_hu_instantaneous_power_factor_total") == D("4.556")
    assert t.get("eon_hu_frequency").unit == "Hz"
    assert t.value("eon_hu_frequency") == D("50.00")
    assert t.value("fuse_threshold_l3") == D("200.00")
    # The Hungarian 0-0:98.1.0 is a register snapshot, not the Belgian kW peak history.
    assert t.get("belgium_maximum_demand_13_months") is None
    snapshot = t.get("billing_snapshot")
    assert snapshot.unit is None and snapshot.spec.unit is None
    assert snapshot.timestamp == datetime(2023, 7, 1, tzinfo=CEST)
    assert len(snapshot.value) == 19
    assert snapshot.value[0] == ProfileEntry(
        None, D("40.777"), "kWh", datetime(2023, 7, 1, tzinfo=CEST)
    )
    assert t.equipment_id == "53414733303832323030303032313630"
    # Hungarian meters print totals and tariffs: derived totals use the tariffs only.
    assert t.derived.total_energy_import == D("173.640")


def test_easymeter_q3d_star_255_codes():
    t = parsed("ESY5Q3DA1004_V304.txt")
    total = t.get("electricity_imported_total")
    assert total.obis == "1-0:1.8.0*255"
    assert (total.value, total.unit) == (D("32549.5061662"), "kWh")
    assert t.get("current_electricity_usage").unit == "W"
    assert t.value("instantaneous_active_power_l3_positive") == D("609.30")
    assert t.value("q3d_equipment_serialnumber") == "1ESY1336001560"
    assert t.manufacturer == "EasyMeter"
