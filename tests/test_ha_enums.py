"""States printed as codes become enum sensors with names; limits say when they mean "none";
M-Bus devices get a maker, a model and a serial number from what the telegram offers."""

from __future__ import annotations

import json

import pytest

from p1lora.common.obis import BREAKER_STATES, MBUS_DEVICE_TYPE_NAMES, VALVE_STATES
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_discovery import (
    DiscoverySettings,
    mbus_manufacturer,
    plan_telegram,
    sensor_config,
)
from p1lora.receiver.ha_state import MeterStateBuilder, encode_state
from tests.helpers_ha import entity_value
from tests.helpers_telegrams import build_telegram, fixture

SETTINGS = DiscoverySettings()
HEADER = "FLU5\\253769484_A"


def _telegram(*lines: str) -> bytes:
    return build_telegram(
        HEADER,
        [
            "0-0:96.1.4(50217)",
            "0-0:96.1.1(3153414733313031303231363035)",
            "0-0:1.0.0(200512135409S)",
            "1-0:1.8.1(000000.034*kWh)",
            *lines,
        ],
    )


def _entity_and_value(raw: bytes, key: str) -> tuple[dict, object]:
    """The discovery config of `key` and its state as Home Assistant's template reads it."""
    plan = plan_telegram(parse_telegram(raw), SETTINGS)
    planned = next(p for p in plan.values if p.entity.key == key)
    device = plan.device(planned.entity.device)
    assert device is not None
    config = sensor_config(SETTINGS, device, planned.entity).payload
    state = encode_state(MeterStateBuilder().build(plan)[device.slug])
    return dict(config), entity_value(config, state)


TABLES = [
    ("0-0:96.3.10({code})", "actual_switch_position", BREAKER_STATES),
    ("0-1:96.3.10({code})", "mbus_switch_position", BREAKER_STATES),
    ("0-1:24.4.0({code})", "mbus_valve_position", VALVE_STATES),
    ("0-1:24.1.0({code:03d})", "mbus_device_type", MBUS_DEVICE_TYPE_NAMES),
]
CASES = [(line, key, code, name) for line, key, table in TABLES for code, name in table.items()]


@pytest.mark.parametrize(("line", "key", "code", "name"), CASES)
def test_every_code_the_standards_list_is_an_option_with_its_name(line, key, code, name):
    mbus = ["0-1:96.1.1(37464C4F32313139303333373333)", "0-1:24.2.3(200512134558S)(00112.384*m3)"]
    extra = [] if "24.1.0" in line else ["0-1:24.1.0(003)"]
    raw = _telegram(*extra, *mbus, line.format(code=code))
    config, value = _entity_and_value(raw, key)
    assert config["device_class"] == "enum"
    assert "unit_of_measurement" not in config and "state_class" not in config
    assert value == name
    assert name in config["options"]
    assert len(set(config["options"])) == len(config["options"])


def test_known_option_names():
    # The names users see (and automate on), spelled once here so a rename is deliberate.
    assert BREAKER_STATES == {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}
    assert VALVE_STATES == {0: "closed", 1: "open", 2: "ready_to_open"}
    assert (MBUS_DEVICE_TYPE_NAMES[3], MBUS_DEVICE_TYPE_NAMES[7]) == ("gas", "water")
    assert MBUS_DEVICE_TYPE_NAMES[0x16] == "cold_water"
    assert "unknown" not in MBUS_DEVICE_TYPE_NAMES.values()  # Home Assistant's own state


@pytest.mark.parametrize(("line", "key"), [("0-0:96.3.10(7)", "actual_switch_position")])
def test_a_code_no_standard_names_is_unknown_not_a_refused_state(line, key):
    _, value = _entity_and_value(_telegram(line), key)
    assert value is None  # Home Assistant refuses an enum state outside its options


def test_mbus_device_type_reserved_code_is_unknown():
    raw = _telegram(
        "0-1:24.1.0(016)",
        "0-1:96.1.1(37464C4F32313139303333373333)",
        "0-1:24.2.1(200512134558S)(00112.384*m3)",
    )
    _, value = _entity_and_value(raw, "mbus_device_type")
    assert value is None


@pytest.mark.parametrize(
    ("name", "key", "value", "no_limit"),
    [
        ("FLUVIUS_V171.txt", "actual_threshold_electricity", 999.9, True),
        ("FLUVIUS_V171.txt", "fuse_threshold_l1", 999, True),
        ("V2_2.txt", "actual_threshold_electricity", 999.00, True),
        ("V3.txt", "actual_threshold_electricity", 16, False),
        ("V5_EON_HU.txt", "actual_threshold_electricity", 90.000, False),
        ("V5_EON_HU.txt", "fuse_threshold_l1", 200.00, False),
    ],
)
def test_limits_say_when_they_mean_no_limit(name, key, value, no_limit):
    raw = fixture(name)
    plan = plan_telegram(parse_telegram(raw), SETTINGS)
    planned = next(p for p in plan.values if p.entity.key == key)
    device = plan.device(planned.entity.device)
    assert device is not None
    config = sensor_config(SETTINGS, device, planned.entity).payload
    state = json.loads(encode_state(MeterStateBuilder().build(plan)[device.slug]))
    assert state[key] == pytest.approx(value)
    assert state["attributes"][key] == {"no_limit": no_limit}
    assert config["json_attributes_template"] == (
        "{{ value_json['attributes']['" + key + "'] | tojson }}"
    )


@pytest.mark.parametrize(
    ("serial", "maker"),
    [
        ("7FLO2119033733", "Flonidan"),
        ("8SAG1234567890", "Sagemcom"),
        ("1ITR0012345678", "Itron"),
        ("8SET0000961173", "SET"),  # a FLAG id we have no name for: shown as printed
        ("G0039001936990619", None),  # Dutch ids carry no FLAG id
        ("2222ABCD123456789", None),
        (None, None),
    ],
)
def test_mbus_manufacturer_from_the_equipment_id(serial, maker):
    assert mbus_manufacturer(serial) == maker


def test_mbus_devices_have_maker_model_and_serial_like_the_dsmr_integration():
    plan = plan_telegram(parse_telegram(fixture("FLUVIUS_V171.txt")), SETTINGS)
    blocks = {d.name: d.block() for d in plan.devices if d.kind == "mbus"}
    assert blocks["Gas meter"]["manufacturer"] == "Flonidan"
    assert blocks["Gas meter"]["model"] == "Gas meter, M-Bus type 3"
    assert blocks["Gas meter"]["serial_number"] == "7FLO2119033733"
    assert blocks["Water meter"]["model"] == "Water meter, M-Bus type 7"
    assert blocks["Water meter"]["model"] != blocks["Water meter"]["name"]
