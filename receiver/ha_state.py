"""Home Assistant state: one retained JSON object per device, in the units discovery declared.

Every delivered telegram becomes one JSON message per device (the meter, each M-Bus
sub-meter) on `<base>/<device>/state`, retained, so Home Assistant has the latest values the
moment it subscribes (after its own restart, or ours). Each entity's `value_template` picks its
field; `json_attributes_template` picks `attributes.<key>`. One topic per device rather than one
per value keeps a DSMR 5 meter at one message a second instead of forty, and lets every
entity's `expire_after` restart with every telegram, including a gas meter that only changes
once an hour.

Rules:

- Values are converted exactly (`Decimal`) to the unit the entity declared
  (`ha_discovery.declared_unit`) and written with their digits (`p1lora.common.telegram.dumps`):
  `0.000` kWh stays `0.000`, a Sagemcom's `006545766*Wh` becomes `6545.766` kWh.
- Every entity ever announced for a device has its field in every message (null when this
  telegram lacks it), because a template reading a missing field makes Home Assistant log a
  warning for each message. Null shows as "unknown".
- A `total_increasing` register that suddenly reads 0 after a non-zero value is published as
  null: Home Assistant would book the drop as a meter reset and the jump back as the whole
  register consumed in one go (its DSMR integration does the same for every zero; here a
  register that really is zero, export without solar panels, still shows 0).
- Text is cut to Home Assistant's 255-character state limit; the full text is an attribute.
- Timestamps are ISO 8601 with their UTC offset, as `timestamp` sensors require.

The bridge's own state (diagnostics, transmitter status, last command) goes through
`bridge_state` from the `ha_entities` table.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Collection, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from p1lora.common.dsmr_time import eu_offset_for_local
from p1lora.common.obis import ValueKind
from p1lora.common.telegram import DataObject, ProfileEntry, dumps
from p1lora.receiver.ha_discovery import (
    MAX_STATE_CHARS,
    SensorEntity,
    TelegramPlan,
    convert_value,
    tariff_name,
)
from p1lora.receiver.ha_entities import BRIDGE_ENTITIES, BridgeView

__all__ = ["MeterStateBuilder", "bridge_state", "encode_state", "render_value"]

logger = logging.getLogger(__name__)

#: What one object renders to: the state value and the entity's attributes (or None).
Rendered = tuple[object, dict[str, object] | None]
_Renderer = Callable[[DataObject, SensorEntity, bool], Rendered]

_WARN_LIMIT = 256
_warned: set[tuple[str, str]] = set()


def _warn_once(key: str, problem: str, message: str, *args: object) -> None:
    if (key, problem) in _warned or len(_warned) >= _WARN_LIMIT:
        logger.debug(message, *args)
        return
    _warned.add((key, problem))
    logger.warning(message, *args)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _cut(text: str) -> str:
    return text if len(text) <= MAX_STATE_CHARS else text[: MAX_STATE_CHARS - 3] + "..."


def _number(value: object, unit: str | None, entity: SensorEntity) -> Decimal | int | None:
    """A number in the entity's declared unit, or None (logged once) when it cannot be."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, Decimal) or not value.is_finite():
        return None
    converted = convert_value(value, unit, entity.unit)
    if converted is None:
        _warn_once(
            entity.key,
            f"unit:{unit}",
            "Home Assistant: %s arrived in %s, which does not convert to the declared %s; "
            "published as unknown",
            entity.key,
            unit,
            entity.unit,
        )
    return converted


def _render_number(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    """A number; limits also say whether the meter means "no limit" (`no_limit_from`)."""
    value = _number(obj.value, obj.unit, entity)
    threshold = None if obj.spec is None else obj.spec.no_limit_from
    if threshold is None:
        return value, None
    raw = obj.value
    no_limit = isinstance(raw, Decimal) and raw.is_finite() and raw >= threshold
    return value, {"no_limit": no_limit if raw is not None else None}


def _render_integer(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    """A count, or a code's name when the line is a state (`SensorSpec.options`)."""
    value = obj.value
    names = None if obj.spec is None else obj.spec.options
    if names is not None:
        name = names.get(value) if isinstance(value, int) and not isinstance(value, bool) else None
        if name is None and value is not None:
            _warn_once(
                entity.key,
                f"option:{value}",
                "Home Assistant: %s %r is not a code the standards name; published as unknown",
                entity.key,
                value,
            )
        return name, None
    if isinstance(value, int) and not isinstance(value, bool):
        return value, None
    return _number(value, obj.unit, entity), None


def _render_string(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    value = obj.value
    if entity.options is not None:
        name = tariff_name(value, belgian)
        if name is None and value is not None:
            _warn_once(
                entity.key,
                f"option:{value}",
                "Home Assistant: %s %r has no name",
                entity.key,
                value,
            )
        return (name if name in entity.options else None), None
    return (None if value is None else _cut(str(value))), None


def _render_text(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    value = obj.value
    text = None if value is None else str(value)
    return (None if text is None else _cut(text)), {"text": text}


def _render_timestamp(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    value = obj.value
    return (_iso(value) if isinstance(value, datetime) else None), None


def _render_timestamped(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    return _number(obj.value, obj.unit, entity), {"timestamp": _iso(obj.timestamp)}


def _entries(obj: DataObject) -> list[ProfileEntry]:
    value = obj.value
    if not isinstance(value, list):
        return []
    return [entry for entry in value if isinstance(entry, ProfileEntry)]


def _render_event_log(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    """State: when the most recent long power failure ended; attributes: the whole log."""
    entries = _entries(obj)
    ends = [entry.timestamp for entry in entries if entry.timestamp is not None]
    failures = [
        {"end": _iso(entry.timestamp), "duration_s": entry.value, "unit": entry.unit}
        for entry in entries
    ]
    return (_iso(max(ends)) if ends else None), {"count": len(entries), "failures": failures}


def _previous_month_start(period_end: datetime | None) -> datetime | None:
    """The start of the billing month that `period_end` closes, or None when it is not a month
    boundary (garbage such as `632525252525W`, or a meter that closes periods elsewhere).

    The start has its own summer/winter offset (a period closed on 1 April began on 1 March in
    winter time), from the EU rule the meter follows (`eu_offset_for_local`).
    """
    if period_end is None:
        return None
    local = period_end.replace(tzinfo=None)
    if local.day != 1 or local.time() != datetime.min.time():
        return None
    year, month = (local.year, local.month - 1) if local.month > 1 else (local.year - 1, 12)
    start = local.replace(year=year, month=month)
    return start.replace(tzinfo=eu_offset_for_local(start))


def _render_history(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    """State: the highest monthly peak of the history (Belgian meters), or the number of entries
    for histories that are not power peaks (the Hungarian snapshot); attributes: every entry.

    e-MUCS (Fluvius' P1 companion specification, object `0-0:98.1.0` "maximum demand of the
    last 13 months") lists each closed month as `(time)(time of the peak)(peak*kW)`. The first
    time *closes* the billing period, 00:00 on the 1st of the next month: in every telegram we
    have the peak happened before it (`FLUVIUS_V171.txt`: `(200501000000S)(200423192538S)` is
    April's peak; `FLUVIUS_V171_ALT.txt`: `(230901000000S)(230831181500S)` August's). The parser
    keeps it as `ProfileEntry.period_start`; here it becomes `period_end`, and `period_start`
    the month before. The capacity tariff bills the mean of these monthly peaks and the
    highest one is what a user compares this month's peak with, so the highest is the
    state (the latest month's peak is the first entry of the attribute).
    """
    entries = _entries(obj)
    history = [
        {
            "period_start": _iso(_previous_month_start(entry.period_start)),
            "period_end": _iso(entry.period_start),
            "timestamp": _iso(entry.timestamp),
            "value": entry.value,
            "unit": entry.unit,
        }
        for entry in entries
    ]
    if entity.device_class != "power":
        return len(entries), {"history": history}
    peaks = [
        peak
        for peak in (_number(entry.value, entry.unit, entity) for entry in entries)
        if peak is not None
    ]
    return (max(peaks) if peaks else None), {"history": history}


def _render_list(obj: DataObject, entity: SensorEntity, belgian: bool) -> Rendered:
    value = obj.value
    items = list(value) if isinstance(value, list) else []
    first = items[0] if items else None
    return _number(first, obj.unit, entity), {"values": items}


#: Value kind -> how it becomes a state value (and attributes).
_RENDERERS: Mapping[ValueKind, _Renderer] = {
    ValueKind.NUMBER: _render_number,
    ValueKind.INTEGER: _render_integer,
    ValueKind.STRING: _render_string,
    ValueKind.TEXT: _render_text,
    ValueKind.TIMESTAMP: _render_timestamp,
    ValueKind.TIMESTAMPED_NUMBER: _render_timestamped,
    ValueKind.LEGACY_MBUS: _render_timestamped,
    ValueKind.EVENT_LOG: _render_event_log,
    ValueKind.BILLING_HISTORY: _render_history,
    ValueKind.NUMBER_LIST: _render_list,
}


def render_value(obj: DataObject, entity: SensorEntity, belgian: bool = False) -> Rendered:
    """The state value and attributes of one entity from its telegram object."""
    return _RENDERERS[entity.kind](obj, entity, belgian)


def _empty_attributes(entity: SensorEntity) -> dict[str, object]:
    return {}


class MeterStateBuilder:
    """Builds the state messages of a telegram's devices, remembering what the drop-to-zero
    rule needs (the last value of each `total_increasing` register)."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], Decimal | int] = {}

    def build(
        self,
        plan: TelegramPlan,
        announced: Mapping[str, Collection[SensorEntity]] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """Device slug -> its state object, for every device of the plan.

        `announced` lists the entities discovery has published per device: their fields are
        present (null) even when this telegram lacks them.
        """
        states: dict[str, dict[str, Any]] = {
            device.slug: {"attributes": {}} for device in plan.devices
        }
        for slug, entities in (announced or {}).items():
            state = states.get(slug)
            if state is None:
                continue
            for entity in entities:
                state.setdefault(entity.key, None)
                if entity.attributes:
                    state["attributes"].setdefault(entity.key, _empty_attributes(entity))
        for planned in plan.values:
            entity = planned.entity
            value, attributes = render_value(planned.obj, entity, plan.belgian)
            value = self._guard_drop(entity, value)
            state = states[entity.device]
            state[entity.key] = value
            if entity.attributes:
                state["attributes"][entity.key] = attributes or {}
        return states

    def _guard_drop(self, entity: SensorEntity, value: object) -> object:
        if entity.state_class != "total_increasing" or isinstance(value, bool):
            return value
        if not isinstance(value, Decimal | int):
            return value
        key = (entity.device, entity.key)
        if value == 0:
            previous = self._last.get(key)
            if previous is not None and previous != 0:
                _warn_once(
                    entity.key,
                    "drop",
                    "Home Assistant: %s dropped from %s to 0; published as unknown so the "
                    "energy statistics do not count a meter reset",
                    entity.key,
                    previous,
                )
                return None
        self._last[key] = value
        return value


def _plain(value: object) -> object:
    """Floats that JSON cannot carry (NaN, infinity) become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def bridge_state(view: BridgeView) -> dict[str, Any]:
    """The bridge device's state object, from the `ha_entities` table."""
    state: dict[str, Any] = {}
    attributes: dict[str, object] = {}
    for row in BRIDGE_ENTITIES:
        if row.value is None:
            continue  # a button: nothing to show
        state[row.key] = _plain(row.value(view))
        if row.attributes is not None:
            attributes[row.key] = dict(row.attributes(view) or {})
    state["attributes"] = attributes
    return state


def encode_state(state: Mapping[str, Any]) -> str:
    """JSON text of a state object, numbers with exactly their digits."""
    return dumps(dict(state))
