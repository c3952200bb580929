"""Home Assistant MQTT discovery: devices and entities for what a telegram actually contains.

Home Assistant learns about an entity from a retained JSON config on
`<discovery_prefix>/<component>/<node_id>/<object_id>/config`. Everything here is computed from
two declarative tables, the OBIS table (`p1lora.common.obis`: name, icon, device class, state
class, unit, category, enabled by default, which device) and the bridge's own (`ha_entities`,
with a component column), so a new meter line or a new diagnostic is a row, never a branch
here.

Devices (what Home Assistant groups entities under):

- **the bridge** (`p1-lora-rx` itself): link diagnostics, transmitter status, the controls;
- **one per meter**: identifiers from its equipment id, manufacturer from the header's flag
  (`/ISK5...` -> Iskraemeco), model from the rest of the header, serial number decoded from the
  hex id, `via_device` the bridge;
- **one per M-Bus sub-meter** (gas, water, heat ...) with its own identifiers, so a gas meter
  keeps its entities and history when the grid operator swaps the electricity meter; its
  `via_device` is the meter. Empty M-Bus slots (no id, no reading) are not devices.

Entities follow Home Assistant's own DSMR integration (its keys are the OBIS table's keys, and
its choices of what is disabled by default are the table's), plus net power and net energy and
the bridge's diagnostics. Rules that Home Assistant enforces are applied here so no entity is
ever refused or mis-used:

- **Units**: each entity declares one unit and the state carries values converted to it, exactly
  (`Decimal` scaling): the table's unit where the meter's is convertible (a Sagemcom's Wh
  becomes kWh, an EasyMeter's W kW), Home Assistant's spelling (`m3` -> `m³`), and `var`/`VA`
  for reactive/apparent power (the units every Home Assistant version accepts). A unit that
  cannot be converted (a DSMR 3 breaker limit printed in A) is declared as the meter prints it,
  with a device class that accepts it.
- **Energy dashboard**: energy registers are `energy` + `total_increasing` in kWh, gas `gas`
  in m³, water `water` in m³ (tested against every fixture).
- **Stale data**: meter entities carry `expire_after` (default 600 s, more than the slowest
  legal delivery interval), so a dead link shows "unavailable", never an old value as current.
- **Availability** is the bridge's online/offline topic (retained, last will `offline`).
- **Identity**: `unique_id`s are `<device identifier>_<key>`, stable across restarts, base topic
  changes and meter swaps (a gas meter's entities follow the gas meter).
- The active tariff is an `enum` sensor (`low`/`normal`, swapped on Belgian meters, as Home
  Assistant's DSMR integration does); text messages are cut to Home Assistant's 255-character
  state limit with the full text as an attribute; M-Bus readings and the Belgian month peak
  carry their capture time as an attribute (`json_attributes_*`).

All state of one device goes to one retained JSON topic (`<base>/<device>/state`); each entity's
`value_template` picks its field (`ha_state` writes them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from importlib import metadata
from types import MappingProxyType
from typing import Any, Protocol

from p1lora.common.derived import DERIVED_SPECS
from p1lora.common.link.config import LinkConfig
from p1lora.common.manufacturers import manufacturer_for
from p1lora.common.obis import (
    MBUS_DEVICE_TYPE_NAMES,
    MBUS_DEVICE_TYPES,
    OBIS_TABLE,
    SensorSpec,
    ValueKind,
    spec_by_key,
)
from p1lora.common.telegram import DataObject, MbusDevice, Telegram
from p1lora.receiver.ha_commands import COMMAND_LEVEL, MAX_STATE_CHARS
from p1lora.receiver.ha_entities import (
    BRIDGE_ENTITIES,
    BridgeEntity,
    Component,
    radio_mode_options,
)
from p1lora.receiver.mqtt_config import MqttConfig

__all__ = [
    "ATTRIBUTE_KINDS",
    "DEFAULT_EXPIRE_AFTER_S",
    "DEFAULT_STATE_INTERVAL_S",
    "MAX_STATE_CHARS",
    "MAX_STATE_INTERVAL_S",
    "MIN_EXPIRE_AFTER_S",
    "NAMES",
    "NUMERIC_KINDS",
    "TARIFF_OPTIONS",
    "DeviceInfo",
    "DiscoveryError",
    "DiscoveryMessage",
    "DiscoverySettings",
    "PlannedValue",
    "SensorEntity",
    "TelegramPlan",
    "bridge_configs",
    "bridge_device",
    "config_topic",
    "convert_value",
    "declared_unit",
    "decode_identifier",
    "entity_name",
    "is_belgian",
    "mbus_manufacturer",
    "meter_device",
    "package_version",
    "plan_telegram",
    "sensor_config",
    "tariff_name",
]

logger = logging.getLogger(__name__)

#: Seconds without a new state before Home Assistant shows a meter value as unavailable.
DEFAULT_EXPIRE_AFTER_S = 600
#: expire_after below this would flap on every slow link; 0 switches it off.
MIN_EXPIRE_AFTER_S = 60
#: At most one state message per meter device this often, by default: see `ha_publisher`
#: (Home Assistant's DSMR integration throttles to 30 s; 5 s keeps power lively for about a
#: quarter of the database rows of every telegram, measured by `p1-lora bench ha`).
DEFAULT_STATE_INTERVAL_S = 5.0
#: A longer state interval would need a longer keep-alive than `expire_after` allows.
MAX_STATE_INTERVAL_S = 300.0
ORIGIN_NAME = "p1-lora"
_PACKAGE = "p1-lora"
#: Characters Home Assistant allows in node ids and object ids of discovery topics.
_TOPIC_ID_RE = re.compile(r"[^A-Za-z0-9_-]")
_SLUG_RE = re.compile(r"[^a-z0-9]+")
_MAX_ID_SLUG = 48


def package_version() -> str:
    """The installed p1-lora version (for `origin` and the bridge's `sw_version`)."""
    try:
        return metadata.version(_PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


class DiscoveryError(ValueError):
    """A discovery setting that cannot work; the message names it."""


@dataclass(frozen=True, slots=True)
class DiscoverySettings:
    """Where discovery and state go, and the knobs users may want to change.

    `node_id` (the discovery topic level that keeps two bridges on one broker apart) defaults to
    the base topic with anything Home Assistant does not allow replaced by `_`.
    `state_interval_s` paces the meter devices' state messages (`ha_publisher`; 0 publishes every
    telegram). `expire_after_s` is raised automatically to three send intervals when the transmitter
    reports a longer interval (`effective_expire_after`). `removal_grace_s` is how long a meter
    must have been heard before retained configs of its entities that it no longer sends are
    removed (a meter that prints a line only now and then must not lose the entity).
    """

    discovery_prefix: str = "homeassistant"
    base_topic: str = "p1lora"
    node_id: str = ""
    expire_after_s: int = DEFAULT_EXPIRE_AFTER_S
    state_interval_s: float = DEFAULT_STATE_INTERVAL_S
    removal_grace_s: float = 1800.0
    bridge_name: str = "P1-LoRa bridge"
    link: LinkConfig | None = None
    sw_version: str = field(default_factory=package_version)

    def __post_init__(self) -> None:
        if not self.node_id:
            object.__setattr__(self, "node_id", _TOPIC_ID_RE.sub("_", self.base_topic))
        if _TOPIC_ID_RE.search(self.node_id):
            raise DiscoveryError(
                f"discovery node_id {self.node_id!r} may only contain letters, digits, _ and -"
            )
        if isinstance(self.expire_after_s, bool) or not isinstance(self.expire_after_s, int):
            raise DiscoveryError("expire_after must be a whole number of seconds")
        if self.expire_after_s != 0 and self.expire_after_s < MIN_EXPIRE_AFTER_S:
            raise DiscoveryError(
                f"expire_after {self.expire_after_s} s is too short: use 0 (off) or at least "
                f"{MIN_EXPIRE_AFTER_S} s (more than the slowest delivery interval, 600 s is safe)"
            )
        if not 0 <= self.state_interval_s <= MAX_STATE_INTERVAL_S:
            raise DiscoveryError(
                f"state_interval {self.state_interval_s:g} s must be within "
                f"0..{MAX_STATE_INTERVAL_S:g} s (0: every telegram)"
            )
        if not 0 <= self.removal_grace_s <= 7 * 86400:
            raise DiscoveryError("removal_grace must be within 0..604800 seconds")
        if not self.bridge_name.strip():
            raise DiscoveryError("bridge name must not be empty")

    @classmethod
    def from_mqtt(cls, mqtt: MqttConfig, **overrides: Any) -> DiscoverySettings:
        """Settings that follow the MQTT configuration's base topic and discovery prefix."""
        values: dict[str, Any] = {
            "discovery_prefix": mqtt.discovery_prefix,
            "base_topic": mqtt.base_topic,
        }
        values.update(overrides)
        return cls(**values)

    @property
    def availability_topic(self) -> str:
        return f"{self.base_topic}/bridge/availability"

    @property
    def command_topic(self) -> str:
        return f"{self.base_topic}/{COMMAND_LEVEL}"

    @property
    def status_topics(self) -> tuple[str, ...]:
        """Where Home Assistant says `online` after it (re)started.

        Its birth message goes to `homeassistant/status` unless the user changed it, and
        that default does not follow a changed discovery prefix; users who change one usually
        change both. Listening on both covers either.
        """
        return tuple(dict.fromkeys((f"{self.discovery_prefix}/status", "homeassistant/status")))

    @property
    def config_filter(self) -> str:
        """Subscription filter matching every discovery config of this bridge."""
        return f"{self.discovery_prefix}/+/{self.node_id}/+/config"

    def effective_expire_after(self, interval_s: float | None) -> int:
        """`expire_after` for meter entities, at least three send intervals when known."""
        if self.expire_after_s == 0:
            return 0
        if interval_s is None or interval_s <= 0:
            return self.expire_after_s
        return max(self.expire_after_s, int(3 * interval_s + 0.999))

    def origin(self) -> dict[str, str]:
        return {"name": ORIGIN_NAME, "sw_version": self.sw_version}


# ---------------------------------------------------------------------------- devices


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A Home Assistant device. `slug` names it in topics (unique per bridge), `identifier` in
    Home Assistant (unique everywhere). `owner` is the identifier of the meter whose telegrams
    describe this device (itself for a meter, its meter for an M-Bus device)."""

    slug: str
    identifier: str
    name: str
    kind: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None
    via_device: str | None = None
    owner: str | None = None

    def block(self) -> dict[str, Any]:
        """The `device` object of a discovery config."""
        out: dict[str, Any] = {"identifiers": [self.identifier], "name": self.name}
        for key in ("manufacturer", "model", "sw_version", "serial_number", "via_device"):
            value = getattr(self, key)
            if value:
                out[key] = value
        return out

    def state_topic(self, settings: DiscoverySettings) -> str:
        return f"{settings.base_topic}/{self.slug}/state"


def _slug(text: str) -> str:
    """Lower-case letters and digits joined by `_`: safe in topics and unique ids.

    Bounded; a longer id keeps its start and gets a hash of the whole instead of its end
    (serial numbers differ at the end, so cutting alone could make two meters one).
    """
    slug = _SLUG_RE.sub("_", text.lower()).strip("_")
    if len(slug) <= _MAX_ID_SLUG:
        return slug
    digest = hashlib.sha256(slug.encode()).hexdigest()[:8]
    return f"{slug[: _MAX_ID_SLUG - 9].rstrip('_')}_{digest}"


def _usable_id(value: object) -> str | None:
    """An equipment id that identifies something: not empty and not all zeros."""
    if not isinstance(value, str):
        return None
    text = value.strip()
    if not text or set(text) <= {"0"}:
        return None
    return text


def decode_identifier(value: str) -> str:
    """The printable serial inside a hex-encoded equipment id (`4B3845...` -> `K8EG...`).

    Meters print their id as hex of ASCII; anything that does not decode to printable text is
    returned as printed.
    """
    if len(value) % 2 == 0 and re.fullmatch(r"[0-9A-Fa-f]+", value):
        try:
            text = bytes.fromhex(value).decode("ascii")
        except (ValueError, UnicodeDecodeError):
            return value
        if text.isprintable() and text.strip():
            return text.strip()
    return value


def bridge_device(settings: DiscoverySettings) -> DeviceInfo:
    identifier = f"p1lora_{settings.node_id}_bridge"
    return DeviceInfo(
        slug="bridge",
        identifier=identifier,
        name=settings.bridge_name,
        kind="bridge",
        manufacturer="p1-lora",
        model="LoRa P1 receiver",
        sw_version=settings.sw_version,
        owner=identifier,
    )


def _p1_version(telegram: Telegram) -> str | None:
    version = telegram.value("p1_version")
    if isinstance(version, str) and version.isdigit() and len(version) == 2:
        return f"DSMR {version[0]}.{version[1]}"
    belgian = telegram.value("belgium_version_information")
    if isinstance(belgian, str) and belgian:
        return f"e-MUCS {belgian}"
    return None if not isinstance(version, str) or not version else f"P1 {version}"


def meter_device(telegram: Telegram, settings: DiscoverySettings) -> DeviceInfo:
    """The electricity meter (the device with the P1 port)."""
    identity = telegram.identity
    equipment = _usable_id(telegram.equipment_id)
    slug = f"meter_{_slug(equipment)}" if equipment else f"meter_{_slug(settings.node_id)}"
    identifier = f"p1lora_{slug}"
    has_electricity = any(
        obj.channel is None
        and obj.spec is not None
        and obj.spec.device_class in ("energy", "power")
        for obj in telegram.objects
    )
    return DeviceInfo(
        slug=slug,
        identifier=identifier,
        name="Electricity meter" if has_electricity else "P1 meter",
        kind="meter",
        manufacturer=identity.manufacturer or identity.flag_id,
        model=identity.model or None,
        sw_version=_p1_version(telegram),
        serial_number=decode_identifier(equipment) if equipment else None,
        via_device=bridge_device(settings).identifier,
        owner=identifier,
    )


#: M-Bus device type name (`MbusDeviceType.name`) -> device name in Home Assistant.
_MBUS_NAMES: Mapping[str, str] = {
    "electricity": "Electricity sub-meter",
    "gas": "Gas meter",
    "heat": "Heat meter",
    "warm_water": "Warm water meter",
    "water": "Water meter",
    "cooling": "Cooling meter",
    "heat_cooling": "Heat/cooling meter",
    "hot_water": "Hot water meter",
    "cold_water": "Cold water meter",
}


# fmt: off
#: Makers of gas and water meters by their three-letter FLAG id (the manufacturer code of
#: EN 13757-3, as the DLMS User Association assigns it), for the ids the electricity-meter
#: table (`p1lora.common.manufacturers`) does not have.
_MBUS_MANUFACTURERS: Mapping[str, str] = {
    "FLO": "Flonidan",
    "HYD": "Diehl Metering",
    "ITR": "Itron",
    "PIP": "Pipersberg",
    "SEN": "Sensus",
    "ZRI": "Zenner",
}
# fmt: on
#: e-MUCS equipment ids of M-Bus devices: one digit, the maker's FLAG id, the serial number
#: (`7FLO2119033733`, `8SAG1234567890`). Dutch ids (`G0039001936990619`) carry no FLAG id.
_FLAG_IN_ID_RE = re.compile(r"\d([A-Z]{3})\d")


def mbus_manufacturer(serial: str | None) -> str | None:
    """The maker of an M-Bus device, from the FLAG id inside its (decoded) equipment id."""
    match = _FLAG_IN_ID_RE.match(serial or "")
    if match is None:
        return None
    flag = match.group(1)
    return _MBUS_MANUFACTURERS.get(flag) or manufacturer_for(flag) or flag


def _mbus_model(mbus: MbusDevice) -> str | None:
    """What Home Assistant shows as the model: the device type the meter reports."""
    if mbus.device_type is None:
        return None
    described = mbus.type_info.description if mbus.type_info is not None else None
    named = described or MBUS_DEVICE_TYPE_NAMES.get(mbus.device_type, "device").replace("_", " ")
    return f"{named[0].upper()}{named[1:]}, M-Bus type {mbus.device_type}"


def _empty_slot(mbus: MbusDevice) -> bool:
    """A channel the meter lists without a device behind it (no id, no or a zero reading)."""
    if _usable_id(mbus.equipment_id) is not None:
        return False
    reading = mbus.reading
    return reading is None or reading.value is None or reading.value == 0


def _mbus_devices(telegram: Telegram, meter: DeviceInfo) -> dict[int, DeviceInfo]:
    found: dict[int, DeviceInfo] = {}
    names: list[str] = []
    candidates = [m for m in telegram.mbus_devices() if not _empty_slot(m)]
    for mbus in candidates:
        type_info = mbus.type_info
        names.append(
            _MBUS_NAMES.get(type_info.name, type_info.description)
            if type_info is not None
            else "M-Bus device"
        )
    for mbus, type_name in zip(candidates, names, strict=True):
        equipment = _usable_id(mbus.equipment_id)
        slug = f"mbus_{_slug(equipment)}" if equipment else f"{meter.slug}_mbus{mbus.channel}"
        name = type_name
        if names.count(type_name) > 1 or mbus.type_info is None:
            name = f"{type_name} {mbus.channel}"
        serial = decode_identifier(equipment) if equipment else None
        found[mbus.channel] = DeviceInfo(
            slug=slug,
            identifier=f"p1lora_{slug}",
            name=name,
            kind="mbus",
            manufacturer=mbus_manufacturer(serial),
            model=_mbus_model(mbus),
            serial_number=serial,
            via_device=meter.identifier,
            owner=meter.identifier,
        )
    return found


# ---------------------------------------------------------------------------- units

#: Unit -> (family, power of ten to the family's base). Conversions inside a family are exact.
_UNIT_SCALE: Mapping[str, tuple[str, int]] = {
    "Wh": ("Wh", 0),
    "kWh": ("Wh", 3),
    "MWh": ("Wh", 6),
    "W": ("W", 0),
    "kW": ("W", 3),
    "MW": ("W", 6),
    "var": ("var", 0),
    "kvar": ("var", 3),
    "varh": ("varh", 0),
    "kvarh": ("varh", 3),
    "VA": ("VA", 0),
    "kVA": ("VA", 3),
    "V": ("V", 0),
    "A": ("A", 0),
    "m3": ("m3", 0),
    "m³": ("m3", 0),
    "J": ("J", 0),
    "kJ": ("J", 3),
    "MJ": ("J", 6),
    "GJ": ("J", 9),
    "Hz": ("Hz", 0),
    "s": ("s", 0),
}
#: The unit Home Assistant is told, for a unit from the OBIS table or a meter.
_HA_UNITS: Mapping[str, str] = {"m3": "m³", "kvar": "var", "kVA": "VA"}
#: Units each device class accepts (the ones a P1 meter can produce).
_CLASS_UNITS: Mapping[str, frozenset[str]] = {
    "energy": frozenset({"Wh", "kWh", "MWh", "J", "kJ", "MJ", "GJ"}),
    "power": frozenset({"W", "kW", "MW"}),
    "voltage": frozenset({"V"}),
    "current": frozenset({"A"}),
    "gas": frozenset({"m³"}),
    "water": frozenset({"m³"}),
    "reactive_power": frozenset({"var"}),
    "apparent_power": frozenset({"VA"}),
    "frequency": frozenset({"Hz"}),
    "duration": frozenset({"s"}),
}
#: A device class for a unit, when the table's class does not accept the meter's unit.
_UNIT_CLASSES: Mapping[str, str] = {
    unit: device_class
    for device_class, units in _CLASS_UNITS.items()
    if device_class not in ("gas", "water")
    for unit in units
}


def declared_unit(table_unit: str | None, meter_unit: str | None) -> str | None:
    """The unit an entity declares: the table's (in Home Assistant's spelling) when the meter's
    converts to it exactly, otherwise the meter's own."""
    target = _HA_UNITS.get(table_unit, table_unit) if table_unit else None
    if not meter_unit:
        return target
    if target is None:
        return _HA_UNITS.get(meter_unit, meter_unit)
    if convert_value(Decimal(0), meter_unit, target) is not None:
        return target
    return _HA_UNITS.get(meter_unit, meter_unit)


def convert_value(value: Decimal, unit: str | None, target: str | None) -> Decimal | None:
    """`value` in `unit` expressed in `target`, exactly; None when the units do not convert.

    A value without a unit is taken to be in the declared one (meters omit units they consider
    obvious, and DSMR 2.2 prints them on another line).
    """
    if not unit or unit == target or target is None:
        return value
    source = _UNIT_SCALE.get(unit)
    goal = _UNIT_SCALE.get(target)
    if source is None or goal is None or source[0] != goal[0]:
        return None
    return value.scaleb(source[1] - goal[1])


def _device_class_for(table_class: str | None, unit: str | None) -> str | None:
    """Keep the table's device class when it accepts the unit; else the unit's natural one."""
    if table_class is None or unit is None:
        return table_class
    accepted = _CLASS_UNITS.get(table_class)
    if accepted is None or unit in accepted:
        return table_class
    return _UNIT_CLASSES.get(unit)


# ---------------------------------------------------------------------------- tariffs

#: Tariff code -> Home Assistant's name, as its DSMR integration translates it. Belgian meters
#: count the other way round (code 1 is the normal, day tariff).
_TARIFFS: Mapping[bool, Mapping[str, str]] = {
    False: {"0001": "low", "0002": "normal", "0003": "tariff_3", "0004": "tariff_4"},
    True: {"0001": "normal", "0002": "low", "0003": "tariff_3", "0004": "tariff_4"},
}
TARIFF_OPTIONS: tuple[str, ...] = ("low", "normal")


def is_belgian(telegram: Telegram) -> bool:
    """Belgian (e-MUCS) meters swap the meaning of tariff 1 and 2."""
    return telegram.get("belgium_version_information") is not None or (
        telegram.identity.flag_id == "FLU"
    )


def tariff_name(code: object, belgian: bool) -> str | None:
    """`0001` -> `low` (or `normal` in Belgium); None for codes Home Assistant cannot show."""
    if not isinstance(code, str):
        return None
    return _TARIFFS[belgian].get(code.strip())


def _tariff_options(telegram: Telegram) -> tuple[str, ...]:
    extra = tuple(
        f"tariff_{n}"
        for n in (3, 4)
        if telegram.get(f"electricity_used_tariff_{n}") is not None
        or telegram.get(f"electricity_delivered_tariff_{n}") is not None
    )
    return TARIFF_OPTIONS + extra


# ---------------------------------------------------------------------------- names

#: Entity names by key, as the OBIS table's rows (`name=`), its M-Bus device types
#: (`reading_name=`) and the derived values say. A view for tools and tests: the rows are the
#: one place a name is written.
NAMES: Mapping[str, str] = MappingProxyType(
    {
        **{spec.key: spec.name for spec in OBIS_TABLE.values() if spec.name},
        **{t.reading_key: t.reading_name for t in MBUS_DEVICE_TYPES.values()},
        **{spec.key: spec.name for spec in DERIVED_SPECS.values() if spec.name},
    }
)


def entity_name(key: str, spec: SensorSpec | None) -> str:
    """The entity's name: the row's, else the table's for the key, else the OBIS description,
    else the key."""
    name = (spec.name if spec is not None else None) or NAMES.get(key)
    if name is not None:
        return name
    if spec is not None:
        return spec.description.split(" (")[0].split(",")[0]
    return key.replace("_", " ").capitalize()


# ---------------------------------------------------------------------------- entities

#: Value kinds whose entity carries extra attributes (`ha_state` writes them).
ATTRIBUTE_KINDS: frozenset[ValueKind] = frozenset(
    {
        ValueKind.TIMESTAMPED_NUMBER,
        ValueKind.LEGACY_MBUS,
        ValueKind.EVENT_LOG,
        ValueKind.BILLING_HISTORY,
        ValueKind.NUMBER_LIST,
        ValueKind.TEXT,
    }
)
#: Value kinds that are numbers (get a unit, a precision and a state class).
NUMERIC_KINDS: frozenset[ValueKind] = frozenset(
    {
        ValueKind.NUMBER,
        ValueKind.INTEGER,
        ValueKind.TIMESTAMPED_NUMBER,
        ValueKind.LEGACY_MBUS,
        ValueKind.NUMBER_LIST,
        ValueKind.BILLING_HISTORY,
    }
)
_MAX_PRECISION = 7


@dataclass(frozen=True, slots=True)
class SensorEntity:
    """One sensor as Home Assistant sees it (metadata only; the value comes per telegram)."""

    device: str
    key: str
    name: str
    kind: ValueKind
    unit: str | None
    device_class: str | None
    state_class: str | None
    entity_category: str | None
    enabled_by_default: bool
    icon: str | None = None
    precision: int | None = None
    options: tuple[str, ...] | None = None
    attributes: bool = False
    expires: bool = True


@dataclass(frozen=True, slots=True)
class PlannedValue:
    """An entity of this telegram and the object its value comes from."""

    entity: SensorEntity
    obj: DataObject


@dataclass(frozen=True, slots=True)
class TelegramPlan:
    """What one telegram means for Home Assistant: its devices and their entities."""

    meter: DeviceInfo
    devices: tuple[DeviceInfo, ...]
    values: tuple[PlannedValue, ...]
    belgian: bool
    unmapped: tuple[str, ...] = ()

    def device(self, slug: str) -> DeviceInfo | None:
        return next((device for device in self.devices if device.slug == slug), None)


def _precision(value: object, unit: str | None, declared: str | None) -> int | None:
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        return None
    if isinstance(value, int):
        return 0
    converted = convert_value(value, unit, declared)
    if converted is None or not converted.is_finite():
        return None
    exponent = converted.as_tuple().exponent
    if not isinstance(exponent, int):
        return None
    return min(_MAX_PRECISION, max(0, -exponent))


def _numeric_sample(obj: DataObject) -> object:
    """A representative number of the object (for precision): lists use their first value."""
    value = obj.value
    if isinstance(value, list) and value:
        first = value[0]
        return getattr(first, "value", first)
    return value


def _sensor_entity(
    device: DeviceInfo, spec: SensorSpec, obj: DataObject, telegram: Telegram
) -> SensorEntity:
    """The entity for one object, with Home Assistant's rules applied (see the module doc)."""
    kind = spec.kind
    name = entity_name(spec.key, spec)
    options: tuple[str, ...] | None = None
    unit: str | None
    device_class: str | None
    state_class: str | None
    precision: int | None
    if spec.options is not None:
        # A state printed as a code (breaker, valve, M-Bus device type): an enum of its names.
        device_class, options = "enum", tuple(spec.options.values())
        unit = state_class = None
        precision = None
    elif kind not in NUMERIC_KINDS:
        device_class = spec.device_class if kind is ValueKind.TIMESTAMP else None
        unit = None
        state_class = None
        precision = None
        if spec.key == "electricity_active_tariff":
            device_class, options = "enum", _tariff_options(telegram)
        if kind is ValueKind.EVENT_LOG:
            device_class = "timestamp"
    else:
        meter_unit = obj.unit
        if kind is ValueKind.BILLING_HISTORY or kind is ValueKind.NUMBER_LIST:
            sample = _numeric_sample(obj)
            entries = obj.value if isinstance(obj.value, list) else []
            meter_unit = next((getattr(e, "unit", None) for e in entries), None) or obj.unit
        else:
            sample = obj.value
        unit = declared_unit(spec.unit, meter_unit)
        device_class = _device_class_for(spec.device_class, unit)
        state_class = spec.state_class
        precision = _precision(sample, meter_unit, unit)
        if kind is ValueKind.BILLING_HISTORY:
            # Belgian meters list monthly peaks (kW): the state is the highest one. Other
            # meters put a snapshot of several registers here (Hungary): the state is the
            # number of entries, the entries are the attributes.
            state_class = None
            device_class = "power" if _UNIT_CLASSES.get(unit or "") == "power" else None
            if device_class is None:
                unit, precision = None, 0
        if kind is ValueKind.NUMBER_LIST and device_class is None:
            device_class = _UNIT_CLASSES.get(unit or "")
    return SensorEntity(
        device=device.slug,
        key=spec.key,
        name=name,
        kind=kind,
        unit=unit,
        device_class=device_class,
        state_class=state_class,
        entity_category=spec.entity_category,
        enabled_by_default=spec.enabled_by_default,
        icon=spec.icon,
        precision=precision,
        options=options,
        attributes=kind in ATTRIBUTE_KINDS or spec.no_limit_from is not None,
        expires=True,
    )


def _derived_objects(telegram: Telegram) -> list[DataObject]:
    """The derived values as data objects, so they are planned and rendered like the rest."""
    derived = telegram.derived
    out: list[DataObject] = []
    for key, spec in DERIVED_SPECS.items():
        value = getattr(derived, key)
        if value is None:
            continue
        unit = derived.power_unit if key == "net_power" else derived.energy_unit
        out.append(DataObject("", key, value, unit, None, None, "", spec))
    return out


def plan_telegram(telegram: Telegram, settings: DiscoverySettings) -> TelegramPlan:
    """Devices and entities for what this telegram contains (plus the derived values).

    Lines the OBIS table does not know are listed in `unmapped` (the caller logs them once);
    M-Bus lines of empty slots are ignored; when a key appears twice on one device (the
    two equipment-id codes of M-Bus devices) the first line wins.
    """
    meter = meter_device(telegram, settings)
    mbus = _mbus_devices(telegram, meter)
    values: list[PlannedValue] = []
    seen: set[tuple[str, str]] = set()
    unmapped: list[str] = []
    for obj in [*telegram.objects, *_derived_objects(telegram)]:
        spec = obj.spec if obj.spec is not None else (spec_by_key(obj.key) if obj.key else None)
        if obj.key is None or spec is None:
            unmapped.append(obj.obis)
            continue
        if obj.channel is None:
            device = meter
        else:
            found = mbus.get(obj.channel)
            if found is None:
                continue
            device = found
        if (device.slug, spec.key) in seen:
            continue
        seen.add((device.slug, spec.key))
        values.append(PlannedValue(_sensor_entity(device, spec, obj, telegram), obj))
    return TelegramPlan(
        meter=meter,
        devices=(meter, *mbus.values()),
        values=tuple(values),
        belgian=is_belgian(telegram),
        unmapped=tuple(unmapped),
    )


# ---------------------------------------------------------------------------- configs


@dataclass(frozen=True, slots=True)
class DiscoveryMessage:
    """One retained discovery config: where it goes and what it says."""

    topic: str
    payload: Mapping[str, Any]
    device: str
    key: str
    component: str


def config_topic(settings: DiscoverySettings, component: str, device_slug: str, key: str) -> str:
    object_id = _TOPIC_ID_RE.sub("_", f"{device_slug}_{key}")
    return f"{settings.discovery_prefix}/{component}/{settings.node_id}/{object_id}/config"


def value_template(key: str) -> str:
    """The template that reads one entity's field from its device's state JSON."""
    return "{{ value_json['" + key + "'] }}"


def attributes_template(key: str) -> str:
    return "{{ value_json['attributes']['" + key + "'] | tojson }}"


def _common(settings: DiscoverySettings, device: DeviceInfo, key: str, name: str) -> dict[str, Any]:
    return {
        "name": name,
        "unique_id": f"{device.identifier}_{key}",
        "availability_topic": settings.availability_topic,
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": device.block(),
        "origin": settings.origin(),
    }


class _SensorRow(Protocol):
    """What a sensor's config is built from: a meter entity (`SensorEntity`) or a row of the
    bridge's table (`BridgeEntity`) alike."""

    @property
    def key(self) -> str: ...
    @property
    def name(self) -> str: ...
    @property
    def unit(self) -> str | None: ...
    @property
    def device_class(self) -> str | None: ...
    @property
    def state_class(self) -> str | None: ...
    @property
    def entity_category(self) -> str | None: ...
    @property
    def enabled_by_default(self) -> bool: ...
    @property
    def icon(self) -> str | None: ...
    @property
    def precision(self) -> int | None: ...
    @property
    def options(self) -> tuple[str, ...] | None: ...


def _sensor_payload(
    settings: DiscoverySettings,
    device: DeviceInfo,
    row: _SensorRow,
    *,
    attributes: bool,
    expire_after: int,
) -> dict[str, Any]:
    key = row.key
    payload = _common(settings, device, key, row.name)
    state_topic = device.state_topic(settings)
    payload["state_topic"] = state_topic
    payload["value_template"] = value_template(key)
    optional: dict[str, Any] = {
        "device_class": row.device_class,
        "state_class": row.state_class,
        "unit_of_measurement": row.unit,
        "entity_category": row.entity_category,
        "icon": row.icon,
        "suggested_display_precision": row.precision,
        "options": list(row.options) if row.options else None,
        "expire_after": expire_after or None,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    if not row.enabled_by_default:
        payload["enabled_by_default"] = False
    if attributes:
        payload["json_attributes_topic"] = state_topic
        payload["json_attributes_template"] = attributes_template(key)
    return payload


def sensor_config(
    settings: DiscoverySettings,
    device: DeviceInfo,
    entity: SensorEntity,
    *,
    expire_after: int | None = None,
) -> DiscoveryMessage:
    """The discovery config of one meter (or M-Bus) sensor."""
    expires = settings.expire_after_s if expire_after is None else expire_after
    payload = _sensor_payload(
        settings,
        device,
        entity,
        attributes=entity.attributes,
        expire_after=expires if entity.expires else 0,
    )
    return DiscoveryMessage(
        config_topic(settings, "sensor", device.slug, entity.key),
        payload,
        device.slug,
        entity.key,
        "sensor",
    )


#: The JSON source Home Assistant's button and select send with every press or choice.
_SOURCE = "home_assistant"
#: Home Assistant's template for the option a user picked in a select, as a JSON string.
_SELECTED_OPTION = "{{ value | tojson }}"


def _bridge_sensor(
    settings: DiscoverySettings, device: DeviceInfo, row: BridgeEntity
) -> dict[str, Any]:
    return _sensor_payload(
        settings, device, row, attributes=row.attributes is not None, expire_after=0
    )


def _bridge_button(
    settings: DiscoverySettings, device: DeviceInfo, row: BridgeEntity
) -> dict[str, Any]:
    payload = _common(settings, device, row.key, row.name)
    payload["command_topic"] = settings.command_topic
    payload["payload_press"] = json.dumps({"cmd": row.cmd, "source": _SOURCE, "id": row.key})
    optional = {
        "icon": row.icon,
        "device_class": row.device_class,
        "entity_category": row.entity_category,
    }
    payload.update({k: v for k, v in optional.items() if v is not None})
    if not row.enabled_by_default:
        payload["enabled_by_default"] = False
    return payload


def _bridge_select(
    settings: DiscoverySettings, device: DeviceInfo, row: BridgeEntity
) -> dict[str, Any]:
    # The command is JSON with the picked option as a string: json.dumps writes the object with
    # a placeholder, which then becomes Home Assistant's template (JSON-quoted by `tojson`).
    command = {"cmd": row.cmd, "option": _SELECTED_OPTION, "source": _SOURCE, "id": row.key}
    template = json.dumps(command).replace(json.dumps(_SELECTED_OPTION), _SELECTED_OPTION)
    payload = _common(settings, device, row.key, row.name)
    payload.update(
        {
            "command_topic": settings.command_topic,
            "command_template": template,
            "state_topic": device.state_topic(settings),
            "value_template": value_template(row.key),
            "options": list(radio_mode_options(settings.link)),
        }
    )
    optional = {"icon": row.icon, "entity_category": row.entity_category}
    payload.update({k: v for k, v in optional.items() if v})
    return payload


_BridgePayload = Callable[[DiscoverySettings, DeviceInfo, BridgeEntity], dict[str, Any]]
#: How each component's config is built from a bridge entity row.
_BRIDGE_PAYLOADS: Mapping[Component, _BridgePayload] = {
    Component.SENSOR: _bridge_sensor,
    Component.BUTTON: _bridge_button,
    Component.SELECT: _bridge_select,
}


def bridge_configs(settings: DiscoverySettings) -> list[DiscoveryMessage]:
    """Every config of the bridge device: its sensors, buttons and the radio-mode select."""
    device = bridge_device(settings)
    return [
        DiscoveryMessage(
            config_topic(settings, row.component, device.slug, row.key),
            _BRIDGE_PAYLOADS[row.component](settings, device, row),
            device.slug,
            row.key,
            row.component,
        )
        for row in BRIDGE_ENTITIES
    ]
