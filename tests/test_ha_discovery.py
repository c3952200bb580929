"""Home Assistant discovery: every fixture meter through a real Mosquitto, field by field; the
Energy dashboard rules; units, names and settings; and the discovery lifecycle (what is
published when, birth message, removal of entities the bridge no longer has)."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pytest

from p1lora.common.backoff import Backoff
from p1lora.common.derived import DERIVED_SPECS
from p1lora.common.link import LinkConfig
from p1lora.common.link.events import LinkReport
from p1lora.common.obis import MBUS_DEVICE_TYPES, OBIS_TABLE
from p1lora.common.parser import parse_telegram
from p1lora.common.regions import get_region
from p1lora.receiver.ha_discovery import (
    NAMES,
    DiscoveryError,
    DiscoverySettings,
    bridge_configs,
    convert_value,
    declared_unit,
    decode_identifier,
    plan_telegram,
)
from p1lora.receiver.ha_entities import BRIDGE_BUTTONS, BRIDGE_SENSORS, radio_mode_options
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.receiver.mqtt_config import MqttConfig
from p1lora.receiver.mqtt_publisher import MqttPublisher
from tests.helpers_ha import (
    SETTINGS,
    FakeMqtt,
    ManualClock,
    entity_attributes,
    entity_value,
    status,
)
from tests.helpers_mqtt import MqttCollector, wait_until
from tests.helpers_telegrams import FIXTURES, build_telegram, fixture

REPORT = LinkReport(-97.0, 7.5, SETTINGS, 40)
HEADER_ISK = "ISK5\\2M550T-1012"
OBJECT_ID_RE = re.compile(r"^[A-Za-z0-9_-]+$")


# ============================================================================ through a broker


@dataclass
class Published:
    """What one bridge published for one fixture, as a fresh subscriber sees it."""

    settings: DiscoverySettings
    configs: dict[str, tuple[str, dict[str, Any]]]  # unique_id -> (topic, config)
    states: dict[str, bytes]  # state topic -> payload
    bridge: HomeAssistantBridge

    def config(self, key: str, device: str = "meter") -> dict[str, Any]:
        matches = [
            c
            for uid, (_, c) in self.configs.items()
            if uid.endswith(f"_{key}") and uid.startswith(f"p1lora_{device}")
        ]
        assert len(matches) == 1, f"{len(matches)} configs for {device} {key}"
        return matches[0]

    def value(self, config: dict[str, Any]) -> Any:
        return entity_value(config, self.states[config["state_topic"]])


def _publish_fixture(broker: Any, name: str) -> Published:
    base = f"t{uuid.uuid4().hex[:10]}"
    prefix = f"{base}-ha"
    mqtt_config = broker.mqtt_config(base_topic=base, discovery_prefix=prefix)
    settings = DiscoverySettings.from_mqtt(mqtt_config, sw_version="9.9.9")
    publisher = MqttPublisher(mqtt_config, backoff=Backoff(0.05, 0.3, rng=lambda: 0.5))
    bridge = HomeAssistantBridge(publisher, settings)
    bridge.start()
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        filters = [f"{prefix}/#", f"{base}/#"]
        with MqttCollector(broker.host, broker.port, filters) as live:
            bridge.telegram(fixture(name), 1.0, REPORT)
            expected = set(bridge.config_topics())
            assert wait_until(lambda: expected <= {m.topic for m in live.messages})
            state_topics = {
                json.loads(m.payload).get("state_topic")
                for m in list(live.messages)
                if m.topic in expected
            } - {None}
            assert wait_until(lambda: state_topics <= {m.topic for m in live.messages})
        # A fresh subscriber sees exactly what the broker retains.
        with MqttCollector(broker.host, broker.port, filters) as fresh:

            def retained() -> list[Any]:
                return [m for m in list(fresh.messages) if m.retain]

            assert wait_until(lambda: expected | state_topics <= {m.topic for m in retained()})
            messages = retained()
    finally:
        publisher.stop()
    configs: dict[str, tuple[str, dict[str, Any]]] = {}
    states: dict[str, bytes] = {}
    for message in messages:
        if message.topic.startswith(prefix):
            config = json.loads(message.payload)
            assert config["unique_id"] not in configs, f"duplicate unique_id {config['unique_id']}"
            configs[config["unique_id"]] = (message.topic, config)
        elif message.topic.endswith("/state"):
            states[message.topic] = message.payload
    return Published(settings, configs, states, bridge)


@pytest.fixture(scope="module")
def published(mqtt_broker_session: Any) -> dict[str, Published]:
    return {name: _publish_fixture(mqtt_broker_session, name) for name in FIXTURES}


@dataclass(frozen=True)
class Device:
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True)
class Expect:
    """What a fixture must produce: device blocks and entities (class, state class, unit, value)."""

    meter: Device
    entities: dict[str, tuple[str | None, str | None, str | None, Any]]
    mbus: dict[
        str, tuple[Device, dict[str, tuple[str | None, str | None, str | None, Any]], str]
    ] = field(default_factory=dict)
    absent: tuple[str, ...] = ()


E, P, G, W = "energy", "power", "gas", "water"
TI, M = "total_increasing", "measurement"

# Values from tests/data/telegrams/README.md, in the units the entities declare.
EXPECTED: dict[str, Expect] = {
    "V4_2.txt": Expect(
        Device(
            "Electricity meter",
            "Kaifa",
            "KAIFA-METER",
            "DSMR 4.2",
            "3960221976967177082151037881335713",
        ),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 1581.123),
            "electricity_used_tariff_2": (E, TI, "kWh", 1435.706),
            "electricity_delivered_tariff_1": (E, TI, "kWh", 0.0),
            "current_electricity_usage": (P, M, "kW", 2.027),
            "current_electricity_delivery": (P, M, "kW", 0.0),
            "short_power_failure_count": (None, TI, None, 15),
            "long_power_failure_count": (None, TI, None, 7),
            "instantaneous_current_l2": ("current", M, "A", 6),
            "instantaneous_active_power_l2_positive": (P, M, "kW", 1.247),
            "electricity_active_tariff": ("enum", None, None, "normal"),
            "timestamp": ("timestamp", None, None, "2016-11-13T20:57:57+01:00"),
            "net_power": (P, M, "kW", 2.027),
        },
        {
            "Gas meter": (
                Device(
                    "Gas meter",
                    None,
                    "Gas meter, M-Bus type 3",
                    None,
                    "4819243993373755377509728609491464",
                ),
                {"gas_reading": (G, TI, "m³", 981.443)},
                "2016-11-29T20:00:00+01:00",
            )
        },
    ),
    "V5.txt": Expect(
        Device("Electricity meter", "Iskraemeco", "MT382-1000", "DSMR 5.0", "K8EG004046395507"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 4.426),
            "electricity_used_tariff_2": (E, TI, "kWh", 2.399),
            "electricity_delivered_tariff_1": (E, TI, "kWh", 2.444),
            "current_electricity_usage": (P, M, "kW", 0.244),
            "instantaneous_voltage_l1": ("voltage", M, "V", 230.0),
            "instantaneous_voltage_l3": ("voltage", M, "V", 229.0),
            "instantaneous_current_l3": ("current", M, "A", 0.86),
            "long_power_failure_count": (None, TI, None, 0),
            "short_power_failure_count": (None, TI, None, 13),
            "electricity_active_tariff": ("enum", None, None, "normal"),
            "net_energy": (E, "total", "kWh", 4.381),
        },
        {
            "Gas meter": (
                Device("Gas meter", None, "Gas meter, M-Bus type 3", None, "2222ABCD123456789"),
                {"gas_reading": (G, TI, "m³", 0.107)},
                "2017-01-02T16:10:05+01:00",
            )
        },
    ),
    "V5_TWO_MBUS.txt": Expect(
        Device("Electricity meter", "Iskraemeco", "M550T-1012", "DSMR 5.0", "E0044007382246019"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 2130.115),
            "electricity_used_tariff_2": (E, TI, "kWh", 245.467),
            "current_electricity_usage": (P, M, "kW", 0.111),
            "voltage_sag_l3_count": (None, TI, None, 192),
            "power_event_failure_log": ("timestamp", None, None, "2019-03-26T09:50:15+01:00"),
        },
        # Channel 1 is an empty gas slot: no device for it.
        {
            "Gas meter": (
                Device("Gas meter", None, "Gas meter, M-Bus type 3", None, "G0039001936990619"),
                {"gas_reading": (G, TI, "m³", 246.138)},
                "2020-04-26T22:30:01+02:00",
            )
        },
    ),
    "FLUVIUS_V171.txt": Expect(
        Device("Electricity meter", "Fluvius", "53769484_A", "e-MUCS 50217", "1SAG3101021605"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 0.034),
            "electricity_used_tariff_2": (E, TI, "kWh", 15.758),
            "electricity_delivered_tariff_2": (E, TI, "kWh", 0.011),
            "belgium_current_average_demand": (P, M, "kW", 2.351),
            "belgium_maximum_demand_current_month": (P, M, "kW", 2.589),
            # Belgian meters count the other way round: tariff 1 is the normal (day) tariff.
            "electricity_active_tariff": ("enum", None, None, "normal"),
            "belgium_maximum_demand_13_months": (P, None, "kW", 5.980),
        },
        {
            "Gas meter": (
                Device("Gas meter", "Flonidan", "Gas meter, M-Bus type 3", None, "7FLO2119033733"),
                {"gas_reading": (G, TI, "m³", 112.384)},
                "2020-05-12T13:45:58+02:00",
            ),
            "Water meter": (
                Device(
                    "Water meter", "Sagemcom", "Water meter, M-Bus type 7", None, "8SAG1234567890"
                ),
                {"water_reading": (W, TI, "m³", 872.234)},
                "2020-05-12T13:45:58+02:00",
            ),
        },
    ),
    "FLUVIUS_V171_ALT.txt": Expect(
        Device("Electricity meter", "Fluvius", "53769484_A", "e-MUCS 50217", "1SAG3100721326"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 301.548),
            "belgium_maximum_demand_current_month": (P, M, "kW", 3.064),
            "electricity_active_tariff": ("enum", None, None, "normal"),
        },
        {
            "Gas meter": (
                Device("Gas meter", "Flonidan", "Gas meter, M-Bus type 3", None, "7FLO2123088027"),
                {"gas_reading": (G, TI, "m³", 92.287)},
                "2023-11-02T12:10:02+01:00",
            ),
            "Water meter": (
                Device("Water meter", "SET", "Water meter, M-Bus type 7", None, "8SET0000961173"),
                {"water_reading": (W, TI, "m³", 8.579)},
                "2023-11-02T12:15:32+01:00",
            ),
        },
    ),
    "SAGEMCOM_T210_D_R.txt": Expect(
        # No equipment id in the telegram: identified by the bridge (one meter per bridge).
        Device(
            "Electricity meter",
            "Sagemcom (Energienetze Steiermark)",
            "53710000_A",
            "DSMR 5.0",
            None,
        ),
        {
            # The meter prints Wh and W: published in the declared kWh and kW, exactly.
            "electricity_imported_total": (E, TI, "kWh", 6545.766),
            "electricity_used_tariff_1": (E, TI, "kWh", 5017.12),
            "electricity_exported_total": (E, TI, "kWh", 0.058),
            "current_electricity_usage": (P, M, "kW", 0.286),
            "current_reactive_exported": ("reactive_power", M, "var", 166),
            "electricity_reactive_exported_total": (None, TI, "kvarh", 3897.726),
        },
    ),
    "UNPADDED_CRC.txt": Expect(
        Device("P1 meter", None, "NWA-WARMTELINK", "DSMR 5.0", "ADC3100000158491"),
        {"timestamp": ("timestamp", None, None, "2026-02-15T20:05:23+01:00")},
        {
            "Heat meter": (
                Device(
                    "Heat meter",
                    None,
                    "Heat meter (outlet), M-Bus type 4",
                    None,
                    "621848012D2C0B0C",
                ),
                {"heat_reading": (E, TI, "GJ", 240.86)},
                "2026-02-15T20:05:23+01:00",
            )
        },
        absent=("electricity_used_tariff_1",),
    ),
    "V5_EON_HU.txt": Expect(
        Device("Electricity meter", "Sagemcom", "SAG-METER", None, "SAG3082200002160"),
        {
            "electricity_imported_total": (E, TI, "kWh", 173.64),
            "electricity_used_tariff_3": (E, TI, "kWh", 0.0),
            "eon_hu_electricity_combined": (E, "total", "kWh", 800.817),
            "eon_hu_frequency": ("frequency", M, "Hz", 50.0),
            "eon_hu_instantaneous_power_factor_total": ("power_factor", M, None, 4.556),
            "current_electricity_delivery": (P, M, "kW", 2.601),
            "instantaneous_reactive_power_q3": ("reactive_power", M, "var", 504),
            "electricity_active_tariff": ("enum", None, None, "low"),
        },
    ),
    "ESY5Q3DA1004_V304.txt": Expect(
        Device("Electricity meter", "EasyMeter", "Q3DA1004 V3.04", None, "1ESY1336001560"),
        {
            "electricity_imported_total": (E, TI, "kWh", 32549.5061662),
            "current_electricity_usage": (P, M, "kW", 1.68821),
            "instantaneous_active_power_l1_positive": (P, M, "kW", 0.55729),
        },
    ),
    "DSMR22_ISKRA_MT382_REAL.txt": Expect(
        Device("Electricity meter", "Iskraemeco", "MT382-1003", None, "ZBEV005106844912"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 16719.94),
            "electricity_used_tariff_2": (E, TI, "kWh", 19403.22),
            "electricity_delivered_tariff_1": (E, TI, "kWh", 859.681),
            "electricity_delivered_tariff_2": (E, TI, "kWh", 1817.057),
            "current_electricity_usage": (P, M, "kW", 0.89),
            "electricity_active_tariff": ("enum", None, None, "normal"),
        },
        {
            "Gas meter": (
                Device("Gas meter", None, "Gas meter, M-Bus type 3", None, "28011008306429013"),
                {"gas_meter_reading": (G, TI, "m³", 13368.864)},
                "2021-11-22T21:00:00+01:00",
            )
        },
    ),
    "V2_2.txt": Expect(
        Device("Electricity meter", "Iskraemeco", "MT382-1004"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 1.001),
            "current_electricity_usage": (P, M, "kW", 1.01),
            "electricity_active_tariff": ("enum", None, None, "low"),
        },
        {
            "Gas meter": (
                Device("Gas meter", None, "Gas meter, M-Bus type 3"),
                {"gas_meter_reading": (G, TI, "m³", 1.001)},
                "2016-11-07T19:00:00+01:00",
            )
        },
    ),
    "V3.txt": Expect(
        Device("Electricity meter", "Iskraemeco", "MT382-1000", None, "K8EG004046395507"),
        {
            "electricity_used_tariff_1": (E, TI, "kWh", 12345.678),
            "current_electricity_usage": (P, M, "kW", 1.19),
            # DSMR 3 prints the breaker limit in A: declared as current, not as a wrong kW.
            "actual_threshold_electricity": ("current", M, "A", 16),
        },
        {
            "Gas meter": (
                Device("Gas meter", None, "Gas meter, M-Bus type 3", None, "2222ABCD123456789"),
                {"gas_meter_reading": (G, TI, "m³", 1.001)},
                "2009-02-12T16:00:00+01:00",
            )
        },
    ),
}


def test_every_fixture_has_expectations():
    assert set(EXPECTED) == set(FIXTURES)


def _device_configs(pub: Published, kind: str) -> dict[str, list[dict[str, Any]]]:
    by_device: dict[str, list[dict[str, Any]]] = {}
    for _, config in pub.configs.values():
        identifier = config["device"]["identifiers"][0]
        if identifier.startswith(f"p1lora_{kind}"):
            by_device.setdefault(identifier, []).append(config)
    return by_device


@pytest.mark.parametrize("name", FIXTURES)
def test_meter_device_and_entities(published, name):
    pub, expect = published[name], EXPECTED[name]
    meters = _device_configs(pub, "meter")
    meter_ids = [i for i in meters if "_mbus" not in i.removeprefix("p1lora_meter_")]
    assert len(meter_ids) == 1, meters.keys()
    device = meters[meter_ids[0]][0]["device"]
    bridge = next(
        c for _, c in pub.configs.values() if c["device"]["identifiers"][0].endswith("_bridge")
    )
    assert device == {
        k: v
        for k, v in {
            "identifiers": meter_ids[:1],
            "name": expect.meter.name,
            "manufacturer": expect.meter.manufacturer,
            "model": expect.meter.model,
            "sw_version": expect.meter.sw_version,
            "serial_number": expect.meter.serial_number,
            "via_device": bridge["device"]["identifiers"][0],
        }.items()
        if v is not None
    }
    for key, (device_class, state_class, unit, value) in expect.entities.items():
        config = pub.config(key)
        assert config.get("device_class") == device_class, key
        assert config.get("state_class") == state_class, key
        assert config.get("unit_of_measurement") == unit, key
        assert config["unique_id"] == f"{meter_ids[0]}_{key}"
        got = pub.value(config)
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, (key, got)
    for key in expect.absent:
        with pytest.raises(AssertionError):
            pub.config(key)


@pytest.mark.parametrize("name", FIXTURES)
def test_mbus_devices(published, name):
    pub, expect = published[name], EXPECTED[name]
    meter_id = next(
        i for i in _device_configs(pub, "meter") if "_mbus" not in i.removeprefix("p1lora_meter_")
    )
    mbus = {
        configs[0]["device"]["name"]: configs
        for identifier, configs in {
            **_device_configs(pub, "mbus"),
            **{
                i: c
                for i, c in _device_configs(pub, "meter").items()
                if "_mbus" in i.removeprefix("p1lora_meter_")
            },
        }.items()
    }
    assert set(mbus) == set(expect.mbus)
    for device_name, (device, entities, captured) in expect.mbus.items():
        configs = {
            c["unique_id"].removeprefix(c["device"]["identifiers"][0] + "_"): c
            for c in mbus[device_name]
        }
        block = next(iter(configs.values()))["device"]
        assert block["name"] == device.name
        assert block.get("model") == device.model
        assert block.get("serial_number") == device.serial_number
        assert block["via_device"] == meter_id
        for key, (device_class, state_class, unit, value) in entities.items():
            config = configs[key]
            assert (
                config.get("device_class"),
                config.get("state_class"),
                config.get("unit_of_measurement"),
            ) == (device_class, state_class, unit)
            assert pub.value(config) == pytest.approx(value)
            state = pub.states[config["state_topic"]]
            assert entity_attributes(config, state) == {"timestamp": captured}
            assert config["expire_after"] == 600
            assert config.get("enabled_by_default", True)


@pytest.mark.parametrize("name", FIXTURES)
def test_every_config_follows_the_rules(published, name):
    """Topics, unique ids, availability, origin, device blocks, templates, expiry."""
    pub = published[name]
    settings = pub.settings
    identifiers = {c["device"]["identifiers"][0]: c["device"] for _, c in pub.configs.values()}
    bridge_id = f"p1lora_{settings.node_id}_bridge"
    assert bridge_id in identifiers
    for unique_id, (topic, config) in pub.configs.items():
        component, node, object_id, last = topic.removeprefix(
            settings.discovery_prefix + "/"
        ).split("/")
        assert (node, last) == (settings.node_id, "config")
        assert component in ("sensor", "button", "select")
        assert OBJECT_ID_RE.match(object_id)
        device = config["device"]
        identifier = device["identifiers"][0]
        assert unique_id.startswith(identifier + "_")
        assert config["availability_topic"] == f"{settings.base_topic}/bridge/availability"
        assert (config["payload_available"], config["payload_not_available"]) == (
            "online",
            "offline",
        )
        assert config["origin"] == {"name": "p1-lora", "sw_version": "9.9.9"}
        assert config["name"] and config["name"] == config["name"].strip()
        via = device.get("via_device")
        if identifier == bridge_id:
            assert via is None
            assert "expire_after" not in config
        else:
            assert via in identifiers, f"{identifier} points at an unknown device {via}"
            assert config["expire_after"] == 600, unique_id
        if component == "button":
            assert config["command_topic"] == f"{settings.base_topic}/command"
            assert json.loads(config["payload_press"])["cmd"] in {"retune", "restart", "info"}
            continue
        state = pub.states[config["state_topic"]]
        entity_value(config, state)  # the field exists in the state
        if "json_attributes_template" in config:
            assert config["json_attributes_topic"] == config["state_topic"]
            entity_attributes(config, state)
        if "options" in config and component == "sensor":
            assert config["device_class"] == "enum"
            assert "unit_of_measurement" not in config and "state_class" not in config
            value = entity_value(config, state)
            assert value is None or value in config["options"]


# Home Assistant's DSMR integration: which entities are enabled by default (tested against
# homeassistant/components/dsmr/sensor.py's `entity_registry_enabled_default`).
HA_DSMR_ENABLED = {
    "current_electricity_usage",
    "current_electricity_delivery",
    "electricity_active_tariff",
    "electricity_used_tariff_1",
    "electricity_used_tariff_2",
    "electricity_delivered_tariff_1",
    "electricity_delivered_tariff_2",
    "electricity_imported_total",
    "electricity_exported_total",
    "belgium_current_average_demand",
    "belgium_maximum_demand_current_month",
    "gas_reading",
    "water_reading",
    "heat_reading",
    "gas_meter_reading",
}
HA_DSMR_DISABLED_DIAGNOSTIC = {
    "timestamp",
    "short_power_failure_count",
    "long_power_failure_count",
    "voltage_sag_l1_count",
    "voltage_swell_l3_count",
    "instantaneous_voltage_l1",
    "instantaneous_voltage_l3",
    "instantaneous_current_l1",
    "instantaneous_current_l2",
    "actual_threshold_electricity",
    "fuse_threshold_l1",
}
HA_DSMR_DISABLED = {
    "instantaneous_active_power_l1_positive",
    "instantaneous_active_power_l2_negative",
}


@pytest.mark.parametrize("name", FIXTURES)
def test_enabled_by_default_like_home_assistants_dsmr(published, name):
    pub = published[name]
    seen = 0
    for unique_id, (_, config) in pub.configs.items():
        key = unique_id.removeprefix(config["device"]["identifiers"][0] + "_")
        enabled = config.get("enabled_by_default", True)
        if key in HA_DSMR_ENABLED:
            assert enabled, key
            assert "entity_category" not in config, key
            seen += 1
        elif key in HA_DSMR_DISABLED_DIAGNOSTIC:
            assert not enabled and config["entity_category"] == "diagnostic", key
        elif key in HA_DSMR_DISABLED:
            assert not enabled, key
    assert seen or name == "UNPADDED_CRC.txt"


# ---------------------------------------------------------------------------- Energy dashboard

#: device class -> (units the Energy dashboard accepts, state classes it accepts).
ENERGY_DASHBOARD = {
    "energy": ({"Wh", "kWh", "MWh", "MJ", "GJ"}, {"total_increasing", "total"}),
    "gas": ({"m³"}, {"total_increasing", "total"}),
    "water": ({"m³"}, {"total_increasing", "total"}),
}
#: Keys that must be usable in the Energy dashboard (grid import/export, gas, water).
ENERGY_KEYS = {
    "electricity_used_tariff_1": "energy",
    "electricity_used_tariff_2": "energy",
    "electricity_used_tariff_3": "energy",
    "electricity_used_tariff_4": "energy",
    "electricity_delivered_tariff_1": "energy",
    "electricity_delivered_tariff_2": "energy",
    "electricity_delivered_tariff_3": "energy",
    "electricity_delivered_tariff_4": "energy",
    "electricity_imported_total": "energy",
    "electricity_exported_total": "energy",
    "gas_reading": "gas",
    "gas_meter_reading": "gas",
    "water_reading": "water",
    "heat_reading": "energy",
}


def _energy_rows() -> list[tuple[str, str]]:
    return [(name, device_class) for name in FIXTURES for device_class in ENERGY_DASHBOARD]


@pytest.mark.parametrize(("name", "device_class"), _energy_rows())
def test_energy_dashboard_rules(published, name, device_class):
    units, state_classes = ENERGY_DASHBOARD[device_class]
    pub = published[name]
    for unique_id, (_, config) in pub.configs.items():
        key = unique_id.removeprefix(config["device"]["identifiers"][0] + "_")
        if ENERGY_KEYS.get(key) == device_class:
            assert config.get("device_class") == device_class, unique_id
        if config.get("device_class") != device_class:
            continue
        assert config["unit_of_measurement"] in units, unique_id
        assert config["state_class"] in state_classes, unique_id
        value = pub.value(config)
        assert value is None or isinstance(value, int | float)
        if config["state_class"] == "total_increasing" and key in ENERGY_KEYS:
            assert value is not None and value >= 0


def test_energy_dashboard_covers_every_register_fixture(published):
    """Every fixture with an import register offers it to the Energy dashboard."""
    for name, pub in published.items():
        keys = {
            uid.removeprefix(c["device"]["identifiers"][0] + "_")
            for uid, (_, c) in pub.configs.items()
        }
        if name != "UNPADDED_CRC.txt":
            assert keys & {"electricity_used_tariff_1", "electricity_imported_total"}, name


# ============================================================================ pure parts


def test_bridge_configs_buttons_and_select():
    config = LinkConfig(region=get_region("EU868"), frequency_hz=869_525_000)
    settings = DiscoverySettings(base_topic="home/p1", discovery_prefix="ha", link=config)
    assert settings.node_id == "home_p1"
    messages = {m.key: m for m in bridge_configs(settings)}
    assert set(messages) == {r.key for r in BRIDGE_SENSORS} | {b.key for b in BRIDGE_BUTTONS} | {
        "radio_mode"
    }
    restart = messages["restart_transmitter"]
    assert restart.topic == "ha/button/home_p1/bridge_restart_transmitter/config"
    assert restart.payload["device_class"] == "restart"
    assert json.loads(restart.payload["payload_press"]) == {
        "cmd": "restart",
        "source": "home_assistant",
        "id": "restart_transmitter",
    }
    select = messages["radio_mode"].payload
    assert select["command_topic"] == "home/p1/command"
    assert select["options"][0] == "auto"
    assert "SF7/BW250" in select["options"] and "SF12/BW125" in select["options"]
    assert "SF7/BW500" not in select["options"]  # 500 kHz does not fit the 10 % sub-band
    rssi = messages["rssi"].payload
    assert (rssi["device_class"], rssi["unit_of_measurement"], rssi["entity_category"]) == (
        "signal_strength",
        "dBm",
        "diagnostic",
    )
    assert "device_class" not in messages["snr"].payload
    assert messages["snr"].payload["unit_of_measurement"] == "dB"
    serial = messages["serial_state"].payload
    assert (
        serial["device_class"] == "enum"
        and "ok" in serial["options"]
        and "disconnected" in serial["options"]
    )


@pytest.mark.parametrize(
    ("region", "frequency", "present", "absent"),
    [
        ("EU868", 869_525_000, {"SF7/BW250", "SF12/BW125", "SF7/BW125"}, {"SF7/BW500"}),
        # 868.1 MHz: only 125 kHz fits inside 868.0-868.6 around the channel.
        ("EU868", 868_100_000, {"SF7/BW125", "SF12/BW125"}, {"SF7/BW250"}),
        # US915: a 400 ms dwell limit rules out the slow settings.
        ("US915", 915_000_000, {"SF7/BW500", "SF7/BW125"}, {"SF12/BW125", "SF11/BW125"}),
    ],
)
def test_radio_mode_options_follow_the_region(region, frequency, present, absent):
    options = radio_mode_options(LinkConfig(region=get_region(region), frequency_hz=frequency))
    assert options[0] == "auto"
    assert present <= set(options)
    assert not absent & set(options)
    assert radio_mode_options(None) == ("auto",)


def test_every_obis_key_has_a_name():
    keys = {spec.key for spec in OBIS_TABLE.values()} | set(DERIVED_SPECS)
    keys |= {t.reading_key for t in MBUS_DEVICE_TYPES.values()}
    missing = sorted(k for k in keys if k not in NAMES)
    assert not missing


@pytest.mark.parametrize(
    ("table", "meter", "declared"),
    [
        ("kWh", "Wh", "kWh"),
        ("kW", "W", "kW"),
        ("m3", "m3", "m³"),
        ("kvar", "kvar", "var"),
        ("kVA", None, "VA"),
        ("kW", "A", "A"),  # DSMR 3 breaker limit: not convertible, declared as printed
        ("GJ", "kWh", "kWh"),  # heat in kWh: J and Wh are not exactly convertible
        (None, None, None),
    ],
)
def test_declared_unit(table, meter, declared):
    assert declared_unit(table, meter) == declared


def test_convert_value_is_exact():
    assert convert_value(Decimal("006545766"), "Wh", "kWh") == Decimal("6545.766")
    assert str(convert_value(Decimal("0"), "Wh", "kWh")) == "0.000"
    assert convert_value(Decimal("1.5"), "kvar", "var") == Decimal("1500")
    assert convert_value(Decimal("2"), "kW", "kWh") is None
    assert convert_value(Decimal("2"), None, "kWh") == Decimal("2")


def test_decode_identifier():
    assert decode_identifier("4B384547303034303436333935353037") == "K8EG004046395507"
    assert (
        decode_identifier("3960221976967177082151037881335713")
        == "3960221976967177082151037881335713"
    )
    assert decode_identifier("ADC3100000158491") == "ADC3100000158491"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"expire_after_s": 30}, "too short"),
        ({"expire_after_s": True}, "whole number"),
        ({"node_id": "a/b"}, "node_id"),
        ({"removal_grace_s": -1}, "removal_grace"),
        ({"bridge_name": " "}, "bridge name"),
    ],
)
def test_settings_are_validated(overrides, message):
    with pytest.raises(DiscoveryError, match=message):
        DiscoverySettings(**overrides)


def test_settings_follow_the_mqtt_configuration():
    settings = DiscoverySettings.from_mqtt(
        MqttConfig(base_topic="p1/house", discovery_prefix="hass")
    )
    assert (settings.base_topic, settings.discovery_prefix, settings.node_id) == (
        "p1/house",
        "hass",
        "p1_house",
    )
    assert settings.config_filter == "hass/+/p1_house/+/config"
    # Home Assistant's birth topic does not follow a changed discovery prefix by itself.
    assert settings.status_topics == ("hass/status", "homeassistant/status")
    assert DiscoverySettings().status_topics == ("homeassistant/status",)
    assert settings.effective_expire_after(None) == 600
    assert settings.effective_expire_after(300.0) == 900  # three intervals
    assert DiscoverySettings(expire_after_s=0).effective_expire_after(900) == 0


def test_unique_ids_are_stable_and_follow_the_device():
    settings = DiscoverySettings()
    a = plan_telegram(parse_telegram(fixture("FLUVIUS_V171.txt")), settings)
    b = plan_telegram(
        parse_telegram(fixture("FLUVIUS_V171.txt")), DiscoverySettings(base_topic="other")
    )
    assert [(v.entity.device, v.entity.key) for v in a.values] == [
        (v.entity.device, v.entity.key) for v in b.values
    ]
    gas = next(d for d in a.devices if d.name == "Gas meter")
    # Identified by the gas meter's own id: a new electricity meter keeps the gas history.
    assert gas.identifier == "p1lora_mbus_37464c4f32313139303333373333"
    assert gas.via_device == a.meter.identifier


# ============================================================================ lifecycle (fakes)


def _bridge(
    mqtt: FakeMqtt, clock: ManualClock | None = None, **settings: Any
) -> HomeAssistantBridge:
    values: dict[str, Any] = {"base_topic": "p1", "sw_version": "1"}
    values.update(settings)
    clock = clock or ManualClock()
    bridge = HomeAssistantBridge(
        mqtt, DiscoverySettings(**values), monotonic=clock, wall_clock=clock
    )
    bridge.start()
    return bridge


def _v5_without_voltages() -> bytes:
    raw = fixture("V5.txt").decode("ascii")
    header, _, rest = raw.partition("\r\n\r\n")
    lines = [
        line
        for line in rest.split("\r\n")
        if line and not line.startswith("!") and ":32.7.0" not in line
    ]
    return build_telegram(header.lstrip("/"), lines)


def test_config_published_once_until_it_changes():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    topic = "homeassistant/sensor/p1/meter_4b384547303034303436333935353037_electricity_used_tariff_1/config"
    assert len(mqtt.on(topic)) == 1
    bridge.telegram(fixture("V5.txt"), 2.0, REPORT)
    assert len(mqtt.on(topic)) == 1  # unchanged: not again
    state = "p1/meter_4b384547303034303436333935353037/state"
    assert len(mqtt.on(state)) == 1  # the same values: no new state message either
    assert all(p.retain for p in mqtt.published if p.payload)


def test_birth_message_republishes_everything():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    count = len(bridge.config_topics())
    mqtt.clear()
    mqtt.deliver("homeassistant/status", b"offline")
    assert not mqtt.published
    mqtt.deliver("homeassistant/status", b"online")
    assert {p.topic for p in mqtt.published if p.topic.endswith("/config")} == set(
        bridge.config_topics()
    )
    assert len(bridge.config_topics()) == count
    assert mqtt.on("p1/meter_4b384547303034303436333935353037/state")
    assert mqtt.on("p1/bridge/state")


def test_entity_missing_from_a_telegram_keeps_its_field_and_config():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt, state_interval_s=0)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    bridge.telegram(_v5_without_voltages(), 2.0, REPORT)
    state = mqtt.last("p1/meter_4b384547303034303436333935353037/state").json()
    assert state["instantaneous_voltage_l1"] is None
    assert state["instantaneous_voltage_l2"] == 230.0


def test_stale_configs_removed_after_the_grace_period_only():
    clock = ManualClock()
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt, clock, removal_grace_s=600.0)
    meter = "p1lora_meter_4b384547303034303436333935353037"
    old = "homeassistant/sensor/p1/meter_4b384547303034303436333935353037_instantaneous_voltage_l1/config"
    other = "homeassistant/sensor/p1/meter_ffff_electricity_used_tariff_1/config"
    stale_bridge = "homeassistant/sensor/p1/bridge_old_diagnostic/config"
    # What the broker still holds from an earlier run.
    mqtt.deliver(old, json.dumps({"device": {"identifiers": [meter]}}))
    mqtt.deliver(other, json.dumps({"device": {"identifiers": ["p1lora_meter_ffff"]}}))
    mqtt.deliver(stale_bridge, json.dumps({"device": {"identifiers": ["p1lora_p1_bridge"]}}))
    # The bridge's own set is known at once: its stale entity goes immediately.
    assert mqtt.last(stale_bridge).payload == b""
    bridge.telegram(_v5_without_voltages(), 1.0, REPORT)
    assert not mqtt.on(old)  # the meter was only just heard
    clock.advance(601)
    bridge.telegram(_v5_without_voltages(), 2.0, REPORT)
    assert mqtt.last(old).payload == b"" and mqtt.last(old).retain
    assert not mqtt.on(other)  # a meter not heard this run is left alone
    assert bridge.stats().configs_removed == 2


def test_mbus_device_gone_from_its_meter_is_removed():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt, removal_grace_s=0.0)
    meter = "p1lora_meter_4b384547303034303436333935353037"
    topic = "homeassistant/sensor/p1/mbus_0011_gas_reading/config"
    mqtt.deliver(
        topic, json.dumps({"device": {"identifiers": ["p1lora_mbus_0011"], "via_device": meter}})
    )
    assert not mqtt.on(topic)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    assert mqtt.last(topic).payload == b""


def test_transmitter_interval_raises_expire_after():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    topic = "homeassistant/sensor/p1/meter_4b384547303034303436333935353037_electricity_used_tariff_1/config"
    assert mqtt.last(topic).json()["expire_after"] == 600
    bridge.status(status(interval_s=400.0), 2.0, REPORT)
    assert mqtt.last(topic).json()["expire_after"] == 1200
    bridge_topic = "homeassistant/sensor/p1/bridge_rssi/config"
    assert "expire_after" not in mqtt.last(bridge_topic).json()


def test_remove_all_clears_everything_of_this_bridge():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    bridge.telegram(fixture("V5.txt"), 1.0, REPORT)
    old = "homeassistant/sensor/p1/meter_1234_old/config"
    mqtt.deliver(old, json.dumps({"device": {"identifiers": ["p1lora_meter_1234"]}}))
    count = bridge.remove_all()
    assert count == len({*mqtt.topics("homeassistant/")})
    assert not [t for t in mqtt.retained if t.startswith("homeassistant/")]


def test_unknown_lines_get_no_entity_and_bad_telegrams_nothing():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    raw = build_telegram(
        "ISK5\\2M550T-1012", ["0-0:96.1.1(4530)", "1-0:1.8.1(000001.000*kWh)", "1-0:99.1.0(12)"]
    )
    bridge.telegram(raw, 1.0, REPORT)
    keys = {e.key for e in bridge.entities("meter_4530")}
    assert "electricity_used_tariff_1" in keys and len(keys) == 3  # id, register, derived total
    mqtt.clear()
    bridge.telegram(b"garbage without a telegram", 2.0, REPORT)
    bridge.telegram(raw.replace(b"000001.000", b"000001.001"), 3.0, REPORT)
    assert not [p for p in mqtt.published if not p.topic.startswith("p1/bridge")]
    assert bridge.stats().telegrams_refused == 2


def test_devices_are_bounded(monkeypatch):
    """Telegrams from ever new meters (not one household's) must not flood the registry."""
    monkeypatch.setattr("p1lora.receiver.home_assistant.MAX_DEVICES", 2)
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    for n in range(4):
        bridge.telegram(
            build_telegram(HEADER_ISK, [f"0-0:96.1.1(45{n:02d})", "1-0:1.8.1(000001.000*kWh)"]),
            1.0,
            REPORT,
        )
    assert bridge.entities("meter_4500") and bridge.entities("meter_4501")
    assert not bridge.entities("meter_4502")
    assert bridge.stats().telegrams_refused == 2
    assert not mqtt.topics("p1/meter_4502")


def test_configs_are_not_rebuilt_for_every_telegram():
    mqtt = FakeMqtt()
    bridge = _bridge(mqtt)
    for _ in range(5):
        bridge.telegram(fixture("V5_TWO_MBUS.txt"), 1.0, REPORT)
    configs = [p for p in mqtt.published if p.topic.endswith("/config")]
    assert len(configs) == len({p.topic for p in configs}) == len(bridge.config_topics())


def test_long_equipment_ids_stay_distinct():
    ids = ["41" * 47 + "31", "41" * 47 + "32"]
    slugs = []
    for equipment in ids:
        raw = build_telegram(HEADER_ISK, [f"0-0:96.1.1({equipment})", "1-0:1.8.1(000001.000*kWh)"])
        slugs.append(plan_telegram(parse_telegram(raw), DiscoverySettings()).meter.slug)
    assert slugs[0] != slugs[1]
    assert all(len(slug) <= len("meter_") + 48 for slug in slugs)
