"""The OBIS table is consistent and carries what Home Assistant discovery will need."""

from __future__ import annotations

import re

import pytest

from p1lora.common.manufacturers import MANUFACTURERS, identify_meter, manufacturer_for
from p1lora.common.obis import (
    KNOWN_CODES,
    MBUS_CHANNELS,
    MBUS_DEVICE_TYPES,
    OBIS_TABLE,
    Device,
    ValueKind,
    lookup_code,
    reading_spec,
    spec_by_key,
)

# Home Assistant's vocabulary (sensor device classes and state classes the table may use).
HA_DEVICE_CLASSES = {
    None,
    "energy",
    "power",
    "voltage",
    "current",
    "gas",
    "water",
    "timestamp",
    "frequency",
    "power_factor",
    "reactive_power",
    "apparent_power",
}
HA_STATE_CLASSES = {None, "measurement", "total", "total_increasing"}
#: Units Home Assistant accepts per device class (the meter's own unit is what gets published).
UNITS_FOR_CLASS = {
    "energy": {"kWh", "Wh", "MWh", "GJ"},
    "power": {"kW", "W"},
    "voltage": {"V"},
    "current": {"A"},
    "gas": {"m3"},
    "water": {"m3"},
    "frequency": {"Hz"},
    "reactive_power": {"kvar", "var"},
    "apparent_power": {"kVA", "VA"},
    "power_factor": {None},
    "timestamp": {None},
}

#: Keys Home Assistant's DSMR integration uses for the same sensors (homeassistant/components/
#: dsmr/sensor.py): users moving over recognise their entities.
HA_DSMR_KEYS = {
    "timestamp",
    "current_electricity_usage",
    "current_electricity_delivery",
    "electricity_active_tariff",
    "electricity_used_tariff_1",
    "electricity_used_tariff_2",
    "electricity_used_tariff_3",
    "electricity_used_tariff_4",
    "electricity_delivered_tariff_1",
    "electricity_delivered_tariff_2",
    "electricity_delivered_tariff_3",
    "electricity_delivered_tariff_4",
    "instantaneous_active_power_l1_positive",
    "instantaneous_active_power_l2_positive",
    "instantaneous_active_power_l3_positive",
    "instantaneous_active_power_l1_negative",
    "instantaneous_active_power_l2_negative",
    "instantaneous_active_power_l3_negative",
    "short_power_failure_count",
    "long_power_failure_count",
    "voltage_sag_l1_count",
    "voltage_sag_l2_count",
    "voltage_sag_l3_count",
    "voltage_swell_l1_count",
    "voltage_swell_l2_count",
    "voltage_swell_l3_count",
    "instantaneous_voltage_l1",
    "instantaneous_voltage_l2",
    "instantaneous_voltage_l3",
    "instantaneous_current_l1",
    "instantaneous_current_l2",
    "instantaneous_current_l3",
    "electricity_imported_total",
    "electricity_exported_total",
    "belgium_current_average_demand",
    "belgium_maximum_demand_current_month",
    "gas_meter_reading",
    "actual_threshold_electricity",
    "eon_hu_electricity_combined",
    "eon_hu_instantaneous_power_factor_total",
    "eon_hu_instantaneous_power_factor_l1",
    "eon_hu_instantaneous_power_factor_l2",
    "eon_hu_instantaneous_power_factor_l3",
    "eon_hu_frequency",
    "fuse_threshold_l1",
    "fuse_threshold_l2",
    "fuse_threshold_l3",
    "text_message",
}
HA_MBUS_KEYS = {3: "gas_reading", 4: "heat_reading", 7: "water_reading", 12: "heat_reading"}

ROWS = list(OBIS_TABLE.values())


@pytest.mark.parametrize("spec", ROWS, ids=lambda spec: spec.code)
def test_row_is_well_formed(spec):
    assert spec.code is not None
    assert re.fullmatch(r"\d-(\d|n):\d+\.\d+\.\d+", spec.code)
    assert re.fullmatch(r"[a-z][a-z0-9]*(_[a-z0-9]+)*", spec.key)
    assert spec.description and spec.description[0].isupper()
    assert isinstance(spec.kind, ValueKind)
    assert spec.device_class in HA_DEVICE_CLASSES
    assert spec.state_class in HA_STATE_CLASSES
    assert spec.entity_category in {None, "diagnostic"}
    if spec.device_class is not None:
        assert spec.unit in UNITS_FOR_CLASS[spec.device_class]
    if spec.state_class is not None:
        assert spec.kind in {
            ValueKind.NUMBER,
            ValueKind.INTEGER,
            ValueKind.TIMESTAMPED_NUMBER,
            ValueKind.LEGACY_MBUS,
        }
    # M-Bus rows are exactly the channel-wildcard rows.
    assert (spec.device is Device.MBUS) == spec.code.startswith("0-n:")


def test_keys_home_assistants_dsmr_integration_uses_are_all_there():
    keys = {spec.key for spec in ROWS}
    assert keys >= HA_DSMR_KEYS
    for code, key in HA_MBUS_KEYS.items():
        assert MBUS_DEVICE_TYPES[code].reading_key == key


def test_each_key_has_one_meaning():
    seen: dict[str, tuple[ValueKind, Device]] = {}
    for spec in ROWS:
        shape = (spec.kind, spec.device)
        assert seen.setdefault(spec.key, shape) == shape, spec.key


def test_energy_registers_are_ready_for_the_energy_dashboard():
    for code in ("1-0:1.8.1", "1-0:1.8.2", "1-0:2.8.1", "1-0:2.8.2", "1-0:1.8.0", "1-0:2.8.0"):
        spec = OBIS_TABLE[code]
        assert (spec.device_class, spec.state_class, spec.enabled_by_default) == (
            "energy",
            "total_increasing",
            True,
        )
    gas = reading_spec(OBIS_TABLE["0-n:24.2.1"], 3)
    assert (gas.key, gas.device_class, gas.state_class, gas.unit) == (
        "gas_reading",
        "gas",
        "total_increasing",
        "m3",
    )
    water = reading_spec(OBIS_TABLE["0-n:24.2.3"], 7)
    assert (water.key, water.device_class) == ("water_reading", "water")
    assert reading_spec(OBIS_TABLE["0-n:24.2.1"], None).key == "mbus_meter_reading"
    assert reading_spec(OBIS_TABLE["0-n:24.2.1"], 250).key == "mbus_meter_reading"


def test_lookup_code_forms():
    assert lookup_code("1-0:1.8.1").spec.key == "electricity_used_tariff_1"
    info = lookup_code("0-3:24.2.1")
    assert (info.spec.key, info.channel, info.normalized) == ("mbus_meter_reading", 3, "0-3:24.2.1")
    star = lookup_code("1-0:1.8.0*255")
    assert (star.spec.key, star.channel, star.normalized) == (
        "electricity_imported_total",
        None,
        "1-0:1.8.0",
    )
    assert lookup_code("1-0:1.8.0.255").spec.key == "electricity_imported_total"
    unknown = lookup_code("0-2:99.1.0")
    assert (unknown.spec, unknown.channel, unknown.normalized) == (None, 2, "0-2:99.1.0")
    # A-group 1 with a B-group is not an M-Bus channel (the version line is 1-3:0.2.8).
    assert lookup_code("1-3:0.2.8").channel is None
    assert lookup_code("1-2:99.1.0").channel is None
    garbage = lookup_code("not an obis code")
    assert (garbage.spec, garbage.channel) == (None, None)


def test_every_concrete_code_is_precomputed():
    for code, spec in OBIS_TABLE.items():
        if code.startswith("0-n:"):
            for channel in MBUS_CHANNELS:
                assert KNOWN_CODES[f"0-{channel}:{code[4:]}"].spec is spec
        else:
            assert KNOWN_CODES[code].spec is spec


def test_spec_by_key():
    assert spec_by_key("electricity_used_tariff_1").code == "1-0:1.8.1"
    assert spec_by_key("mbus_equipment_identifier").code == "0-n:96.1.0"
    assert spec_by_key("water_reading").device_class == "water"
    assert spec_by_key("no_such_key") is None


def test_mbus_device_types():
    for code, device_type in MBUS_DEVICE_TYPES.items():
        assert device_type.code == code
        assert device_type.device_class in {"gas", "water", "energy"}
        assert device_type.unit in UNITS_FOR_CLASS[device_type.device_class]


@pytest.mark.parametrize(
    ("header", "flag", "manufacturer", "model"),
    [
        ("ISk5\\2MT382-1000", "ISK", "Iskraemeco", "MT382-1000"),
        ("/KFM5KAIFA-METER", "KFM", "Kaifa", "KAIFA-METER"),
        ("XMX5LGBBFG10", "XMX", "Landis+Gyr", "LGBBFG10"),
        ("FLU5\\253769484_A", "FLU", "Fluvius", "53769484_A"),
        ("ESY5Q3DA1004 V3.04", "ESY", "EasyMeter", "Q3DA1004 V3.04"),
        ("Ene5\\T211 ESMR 5.0", "ENE", "Sagemcom (Enexis)", "T211 ESMR 5.0"),
        ("ABC5XYZ", "ABC", None, "XYZ"),
        ("NWA-WARMTELINK", None, None, "NWA-WARMTELINK"),
    ],
)
def test_identify_meter(header, flag, manufacturer, model):
    identity = identify_meter(header)
    assert (identity.flag_id, identity.manufacturer, identity.model) == (flag, manufacturer, model)


def test_manufacturer_table():
    assert all(re.fullmatch(r"[A-Z]{3}", flag) for flag in MANUFACTURERS)
    assert manufacturer_for("sag") == "Sagemcom"
    assert manufacturer_for("LGZ") == manufacturer_for("LGB") == "Landis+Gyr"


def test_billing_snapshot_spec_is_found_by_key():
    from p1lora.common.obis import BILLING_SNAPSHOT_SPEC, spec_by_key

    assert spec_by_key("billing_snapshot") is BILLING_SNAPSHOT_SPEC
    assert BILLING_SNAPSHOT_SPEC.code == "0-0:98.1.0"
    assert BILLING_SNAPSHOT_SPEC.unit is None
    assert spec_by_key("belgium_maximum_demand_13_months").unit == "kW"
