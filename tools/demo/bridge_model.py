"""What Home Assistant would see of the bridge: its MQTT discovery configs, states and
availability, as the demo's observer receives them.

- the retained discovery configs of this bridge (devices and entities, exactly what Home
  Assistant would create);
- the state topics the configs point at (the values), including the bridge's own diagnostics
  (link state, RSSI/SNR, SF/BW, TX power, airtime, packet loss, telegrams received);
- the bridge's availability.

"Telegrams delivered end to end" counts the meter state messages the bridge published: each
one is a telegram that went meter -> pty -> p1-lora-tx -> simulated LoRa -> p1-lora-rx -> MQTT
and passed the meter's CRC on the way out (the bridge never publishes a telegram that fails
it). Retained copies (delivered again on subscribe or reconnect) and repeats of the same meter
timestamp are not counted twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any, Final

from p1lora.receiver.ha_discovery import DiscoverySettings, bridge_device
from p1lora.tools.demo.views import DeviceView, EntityView

__all__ = ["BridgeModel"]

_VALUE_KEY: Final = re.compile(r"""value_json\[['"]([^'"]+)['"]\]|value_json\.(\w+)""")


@dataclass(slots=True)
class _Device:
    identifier: str
    name: str
    manufacturer: str | None = None
    model: str | None = None
    sw_version: str | None = None
    serial_number: str | None = None
    via_device: str | None = None


@dataclass(slots=True)
class _State:
    values: dict[str, Any] = field(default_factory=dict)
    changed_at: dict[str, float] = field(default_factory=dict)


def _value_key(template: object) -> str | None:
    """The state field a `value_template` reads (`{{ value_json['key'] }}`)."""
    if not isinstance(template, str):
        return None
    match = _VALUE_KEY.search(template)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class BridgeModel:
    """The bridge as its MQTT messages describe it; not thread-safe (`DemoState` holds the
    lock). Times are on the caller's monotonic clock; views give them relative to `started`."""

    def __init__(self, settings: DiscoverySettings, started: float) -> None:
        self.settings = settings
        self.started = started
        bridge = bridge_device(settings)
        self.bridge_id = bridge.identifier
        self.bridge_state_topic = bridge.state_topic(settings)
        self._config_prefix = f"{settings.discovery_prefix}/"
        self._config_node = settings.node_id
        self._base = f"{settings.base_topic}/"
        #: Entities as announced (no value yet: views add it from `_states`).
        self._entities: dict[str, EntityView] = {}
        self._devices: dict[str, _Device] = {}
        self._states: dict[str, _State] = {}
        self.availability: str | None = None
        self.offline_seen = False
        self._retained_topics: dict[str, None] = {}
        self._last_stamp: dict[str, object] = {}
        self.telegrams = 0
        self.first_telegram: float | None = None
        self.last_telegram: float | None = None
        self.new_devices: list[str] = []

    def is_config_topic(self, topic: str) -> bool:
        parts = topic.split("/")
        return (
            topic.startswith(self._config_prefix)
            and len(parts) == len(self.settings.discovery_prefix.split("/")) + 4
            and parts[-1] == "config"
            and parts[-3] == self._config_node
        )

    def message(self, topic: str, payload: bytes, now: float, *, retained: bool) -> None:
        """Take one message of the subscriptions (discovery configs and the base topic).

        Malformed payloads are ignored (what a broker holds is not ours to trust)."""
        if not (self.is_config_topic(topic) or topic.startswith(self._base)):
            return  # not this bridge's (the subscriptions should not even deliver it)
        if payload:
            self._retained_topics[topic] = None
        else:
            self._retained_topics.pop(topic, None)
        if self.is_config_topic(topic):
            self._on_config(topic, payload)
        elif topic == self.settings.availability_topic:
            text = payload.decode("utf-8", "replace").strip() or None
            self.availability = text
            if text == "offline":
                self.offline_seen = True
        elif topic.endswith("/state"):
            self._on_state(topic, payload, now, retained=retained)

    def _on_config(self, topic: str, payload: bytes) -> None:
        if not payload:
            self._entities.pop(topic, None)
            return
        try:
            config = json.loads(payload)
        except ValueError:
            return
        if not isinstance(config, dict):
            return
        device = config.get("device")
        if not isinstance(device, dict):
            return
        identifiers = device.get("identifiers")
        if isinstance(identifiers, str):
            identifiers = [identifiers]
        if not isinstance(identifiers, list) or not identifiers:
            return
        device_id = str(identifiers[0])
        if device_id not in self._devices:
            self.new_devices.append(device_id)
        self._devices[device_id] = _Device(
            identifier=device_id,
            name=_text(device.get("name")) or device_id,
            manufacturer=_text(device.get("manufacturer")),
            model=_text(device.get("model")),
            sw_version=_text(device.get("sw_version")),
            serial_number=_text(device.get("serial_number")),
            via_device=_text(device.get("via_device")),
        )
        component = topic.split("/")[-4]
        state_topic = _text(config.get("state_topic"))
        self._entities[topic] = EntityView(
            config_topic=topic,
            component=component,
            name=_text(config.get("name")) or topic.split("/")[-2],
            unique_id=_text(config.get("unique_id")) or topic,
            device_id=device_id,
            state_topic=state_topic,
            value_key=_value_key(config.get("value_template")) if state_topic else None,
            unit=_text(config.get("unit_of_measurement")),
            device_class=_text(config.get("device_class")),
            entity_category=_text(config.get("entity_category")),
            enabled=config.get("enabled_by_default", True) is not False,
        )

    def _on_state(self, topic: str, payload: bytes, now: float, *, retained: bool) -> None:
        if not payload:
            self._states.pop(topic, None)
            return
        try:
            # Decimal keeps the meter's digits: 0.000 kWh stays 0.000.
            values = json.loads(payload, parse_float=Decimal)
        except ValueError:
            return
        if not isinstance(values, dict):
            return
        state = self._states.setdefault(topic, _State())
        for key, value in values.items():
            if key in state.values and state.values[key] != value:
                state.changed_at[key] = now
            state.values[key] = value
        if retained or topic == self.bridge_state_topic or not self._is_meter_topic(topic):
            return
        stamp = values.get("timestamp")
        if stamp is not None and self._last_stamp.get(topic) == stamp:
            return  # the same telegram again (the publisher re-sends state after a reconnect)
        self._last_stamp[topic] = stamp
        self.telegrams += 1
        if self.first_telegram is None:
            self.first_telegram = now
        self.last_telegram = now

    def _is_meter_topic(self, topic: str) -> bool:
        """A state topic of a meter: a device other than the bridge that hangs off the bridge
        (`via_device`) or off nothing; M-Bus devices hang off their meter."""
        for entity in self._entities.values():
            if entity.state_topic == topic:
                device = self._devices.get(entity.device_id)
                return device is not None and self._is_meter(device.identifier, device.via_device)
        return False

    def _is_meter(self, identifier: str, via_device: str | None) -> bool:
        return identifier != self.bridge_id and via_device in (None, self.bridge_id)

    def retained_topics(self) -> list[str]:
        """Topics of this bridge that hold (or held) a non-empty message: what a clean-up on an
        external broker removes. Discovery configs first, so Home Assistant removes the
        entities before their state goes."""
        topics = list(self._retained_topics)
        configs = [t for t in topics if self.is_config_topic(t)]
        others = [
            t
            for t in topics
            if not self.is_config_topic(t)
            and (t == self.settings.availability_topic or t.endswith("/state"))
        ]
        return configs + others

    def bridge_values(self) -> dict[str, Any]:
        """The bridge's own diagnostics (its state topic), as last published."""
        state = self._states.get(self.bridge_state_topic)
        return dict(state.values) if state is not None else {}

    def devices(self) -> tuple[DeviceView, ...]:
        """The bridge first, then meters, each followed by the devices connected via it."""
        devices = [self._device_view(d) for d in self._devices.values()]
        devices = [d for d in devices if d.entities]
        ordered: list[DeviceView] = [d for d in devices if d.is_bridge]
        roots = [d for d in devices if self._is_meter(d.identifier, d.via_device)]
        for root in roots:
            ordered.append(root)
            ordered.extend(d for d in devices if d.via_device == root.identifier)
        ordered.extend(d for d in devices if d not in ordered)
        return tuple(ordered)

    def _device_view(self, device: _Device) -> DeviceView:
        entities = []
        for entity in self._entities.values():
            if entity.device_id != device.identifier:
                continue
            state = self._states.get(entity.state_topic or "")
            key = entity.value_key
            if state is None or key is None:
                entities.append(entity)
                continue
            changed = state.changed_at.get(key)
            entities.append(
                replace(
                    entity,
                    value=state.values.get(key),
                    has_value=key in state.values,
                    changed_at=None if changed is None else changed - self.started,
                )
            )
        return DeviceView(
            identifier=device.identifier,
            name=device.name,
            manufacturer=device.manufacturer,
            model=device.model,
            sw_version=device.sw_version,
            serial_number=device.serial_number,
            via_device=device.via_device,
            is_bridge=device.identifier == self.bridge_id,
            entities=tuple(entities),
        )
