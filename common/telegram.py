"""The parsed telegram: data objects, look-ups, and JSON that keeps the meter's digits.

`p1lora.common.parser.parse_telegram` builds these; everything downstream (the codec, MQTT,
Home Assistant discovery, `p1-lora parse`) reads them. Values are exact: energy registers are
`Decimal`s with the digits the meter printed, so `3808.351` never turns into
`3808.3510000000001`, and `dumps` writes them as JSON numbers with those same digits (`0.000`
stays `0.000`). Use `to_json_dict` + `dumps` wherever a telegram becomes JSON, so every output
of the product agrees.
"""

from __future__ import annotations

import json.encoder
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, TypeAlias

from p1lora.common.derived import DerivedValues, compute_derived
from p1lora.common.framing import CrcCheck
from p1lora.common.manufacturers import MeterIdentity, identify_meter
from p1lora.common.obis import (
    MBUS_DEVICE_TYPES,
    MbusDeviceType,
    SensorSpec,
    ValueKind,
    lookup_code,
)

__all__ = [
    "DataObject",
    "MbusDevice",
    "ProfileEntry",
    "Telegram",
    "Value",
    "dumps",
    "to_json_dict",
]


@dataclass(frozen=True, slots=True)
class ProfileEntry:
    """One entry of a log or history line.

    Power-failure log (`1-0:99.97.0`): `timestamp` is the end of the failure, `value` its
    duration. Belgian peak history (`0-0:98.1.0`): `period_start` is the month, `timestamp`
    when the peak happened, `value` the peak. Hungarian snapshot (same code): `period_start`
    is the snapshot time and each register is one entry.
    """

    timestamp: datetime | None
    value: Decimal | int | str | None
    unit: str | None
    period_start: datetime | None = None


#: What `DataObject.value` can hold.
Value: TypeAlias = (
    Decimal | int | str | datetime | list[ProfileEntry] | list[Decimal] | list[str] | None
)


@dataclass(slots=True)
class DataObject:
    """One line (or, for DSMR 2.2 gas, two lines) of a telegram.

    `obis` is the code as written (`1-0:1.8.1`, `1-0:1.8.0*255`); `key` the table key, or
    None for lines the table does not know (kept with their raw text, never dropped).
    `channel` is the M-Bus channel for sub-meter lines, `timestamp` the capture time of
    M-Bus readings and the time of a peak. `spec` is the table row (M-Bus readings resolved
    by device type), which carries the Home Assistant metadata.
    """

    obis: str
    key: str | None
    value: Value
    unit: str | None
    channel: int | None
    timestamp: datetime | None
    raw: str
    spec: SensorSpec | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class MbusDevice:
    """An M-Bus sub-meter as seen in one telegram: its channel's lines gathered together."""

    channel: int
    device_type: int | None
    type_info: MbusDeviceType | None
    equipment_id: str | None
    reading: DataObject | None
    objects: tuple[DataObject, ...]


#: Keys that identify the electricity meter, best first.
_EQUIPMENT_ID_KEYS = (
    "equipment_identifier",
    "luxembourg_equipment_identifier",
    "equipment_serial_number",
    "q3d_equipment_serialnumber",
    "q3d_equipment_identifier",
)


@dataclass(slots=True)
class Telegram:
    """A parsed telegram. `objects` is in telegram order, unknown lines included."""

    header: str
    crc: CrcCheck
    objects: list[DataObject]
    _derived: DerivedValues | None = field(default=None, repr=False, compare=False)
    _by_key: dict[str, DataObject] | None = field(default=None, repr=False, compare=False)
    _by_key_channel: dict[tuple[str, int | None], DataObject] | None = field(
        default=None, repr=False, compare=False
    )

    @property
    def derived(self) -> DerivedValues:
        """Totals and net values (`p1lora.common.derived`), computed on first use.

        Lazy because the transmitter forwards telegrams without ever looking at them.
        """
        derived = self._derived
        if derived is None:
            derived = self._derived = compute_derived(self.objects)
        return derived

    def _build_index(
        self,
    ) -> tuple[dict[str, DataObject], dict[tuple[str, int | None], DataObject]]:
        by_key: dict[str, DataObject] = {}
        by_key_channel: dict[tuple[str, int | None], DataObject] = {}
        for obj in self.objects:
            key = obj.key
            if key is None:
                continue
            by_key.setdefault(key, obj)
            by_key_channel.setdefault((key, obj.channel), obj)
        self._by_key = by_key
        self._by_key_channel = by_key_channel
        return by_key, by_key_channel

    def get(self, key: str, channel: int | None = None) -> DataObject | None:
        """The first object with this key; with `channel`, the one on that M-Bus channel."""
        if self._by_key is None or self._by_key_channel is None:
            by_key, by_key_channel = self._build_index()
        else:
            by_key, by_key_channel = self._by_key, self._by_key_channel
        if channel is None:
            return by_key.get(key)
        return by_key_channel.get((key, channel))

    def value(self, key: str, channel: int | None = None) -> Value:
        """The value of `get(key, channel)`, or None when there is no such object."""
        obj = self.get(key, channel)
        return None if obj is None else obj.value

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self.get(key) is not None

    def find_obis(self, code: str) -> DataObject | None:
        """The first object with this OBIS code (as written, or in canonical form)."""
        for obj in self.objects:
            if obj.obis == code:
                return obj
        wanted = lookup_code(code).normalized
        for obj in self.objects:
            if lookup_code(obj.obis).normalized == wanted:
                return obj
        return None

    def unknown_objects(self) -> list[DataObject]:
        """Lines the OBIS table does not know, kept with their raw text."""
        return [obj for obj in self.objects if obj.key is None]

    @property
    def meter_timestamp(self) -> datetime | None:
        """When the meter made this telegram (`0-0:1.0.0`), timezone-aware; None if absent."""
        value = self.value("timestamp")
        return value if isinstance(value, datetime) else None

    @property
    def equipment_id(self) -> str | None:
        """The electricity meter's identifier as printed (hex for DSMR meters)."""
        for key in _EQUIPMENT_ID_KEYS:
            value = self.value(key)
            if isinstance(value, str) and value:
                return value
        return None

    @property
    def identity(self) -> MeterIdentity:
        """Flag id, manufacturer and model from the header."""
        return identify_meter(self.header)

    @property
    def manufacturer(self) -> str | None:
        return self.identity.manufacturer

    def mbus_devices(self) -> list[MbusDevice]:
        """The M-Bus sub-meters in this telegram, by channel."""
        channels: dict[int, list[DataObject]] = {}
        for obj in self.objects:
            if obj.channel is not None:
                channels.setdefault(obj.channel, []).append(obj)
        devices = []
        for channel in sorted(channels):
            objs = channels[channel]
            device_type = None
            equipment_id = None
            reading = None
            for obj in objs:
                if obj.key == "mbus_device_type" and isinstance(obj.value, int):
                    device_type = obj.value
                elif obj.key == "mbus_equipment_identifier" and isinstance(obj.value, str):
                    equipment_id = obj.value
                elif obj.spec is not None and obj.spec.kind in _READING_KINDS and reading is None:
                    reading = obj
            devices.append(
                MbusDevice(
                    channel=channel,
                    device_type=device_type,
                    type_info=None if device_type is None else MBUS_DEVICE_TYPES.get(device_type),
                    equipment_id=equipment_id,
                    reading=reading,
                    objects=tuple(objs),
                )
            )
        return devices

    def __iter__(self) -> Iterator[DataObject]:
        return iter(self.objects)


_READING_KINDS = frozenset({ValueKind.TIMESTAMPED_NUMBER, ValueKind.LEGACY_MBUS})


# -- JSON -----------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list):
        return [_json_value(item) for item in value]
    if isinstance(value, ProfileEntry):
        entry: dict[str, Any] = {
            "timestamp": _json_value(value.timestamp),
            "value": value.value,
            "unit": value.unit,
        }
        if value.period_start is not None:
            entry["period_start"] = value.period_start.isoformat()
        return entry
    return value


def _object_dict(obj: DataObject, include_raw: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "obis": obj.obis,
        "key": obj.key,
        "value": _json_value(obj.value),
        "unit": obj.unit,
        "channel": obj.channel,
        "timestamp": None if obj.timestamp is None else obj.timestamp.isoformat(),
    }
    if include_raw or obj.key is None or obj.value is None:
        # A line whose value came out null keeps its raw text: it is what the meter sent and
        # the only way to see why (a garbled digit, an empty register).
        out["raw"] = obj.raw
    return out


def to_json_dict(telegram: Telegram, include_raw: bool = False) -> dict[str, Any]:
    """A telegram as JSON-ready data (Decimals stay Decimals: serialise with `dumps`).

    Unknown lines, and known lines whose value is null (unreadable or empty), always carry
    their `raw` text; `include_raw` adds it to every object.
    """
    identity = telegram.identity
    timestamp = telegram.meter_timestamp
    return {
        "header": telegram.header,
        "manufacturer": identity.manufacturer,
        "crc": telegram.crc.as_dict(),
        "meter_timestamp": None if timestamp is None else timestamp.isoformat(),
        "equipment_id": telegram.equipment_id,
        "objects": [_object_dict(obj, include_raw) for obj in telegram.objects],
        "derived": telegram.derived.as_dict(),
    }


_encode_string = json.encoder.encode_basestring_ascii


def _encode(value: Any, parts: list[str]) -> None:
    if value is None:
        parts.append("null")
    elif value is True:
        parts.append("true")
    elif value is False:
        parts.append("false")
    elif isinstance(value, str):
        parts.append(_encode_string(value))
    elif isinstance(value, Decimal):
        parts.append(_encode_decimal(value))
    elif isinstance(value, int):
        parts.append(int.__repr__(value))
    elif isinstance(value, float):
        parts.append(json.dumps(value))
    elif isinstance(value, datetime):
        parts.append(_encode_string(value.isoformat()))
    elif isinstance(value, dict):
        _encode_object(value, parts)
    elif isinstance(value, (list, tuple)):
        _encode_array(value, parts)
    elif isinstance(value, ProfileEntry):
        _encode(_json_value(value), parts)
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode_decimal(value: Decimal) -> str:
    if not value.is_finite():
        raise ValueError(f"{value} cannot be written as a JSON number")
    # 'f' keeps the meter's digits: 0.000 stays 0.000 (str() would give 0E-8 for 0.00000000).
    return format(value, "f")


def _encode_object(value: dict[Any, Any], parts: list[str]) -> None:
    parts.append("{")
    first = True
    for key, item in value.items():
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be strings, not {type(key).__name__}")
        if not first:
            parts.append(", ")
        first = False
        parts.append(_encode_string(key))
        parts.append(": ")
        _encode(item, parts)
    parts.append("}")


def _encode_array(value: list[Any] | tuple[Any, ...], parts: list[str]) -> None:
    parts.append("[")
    for index, item in enumerate(value):
        if index:
            parts.append(", ")
        _encode(item, parts)
    parts.append("]")


def dumps(value: Any) -> str:
    """JSON text for `value`, writing Decimals as numbers with exactly their digits.

    Handles what `to_json_dict` produces (dicts, lists, str, int, bool, None, Decimal) plus
    datetimes (ISO 8601 strings). One line, ASCII only, so it is safe for logs and MQTT.
    """
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts)
