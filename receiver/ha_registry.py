"""`DiscoveryRegistry`: which devices and entities the bridge announces to Home Assistant.

It keeps the retained discovery config of every entity the bridge has (`ha_discovery` builds
them) and publishes one only when it is new or what it is built from changed. It removes what
the bridge no longer has: the bridge subscribes to its own discovery topics, the broker hands
over every retained config of this bridge (`note_retained`), and those that belong to a device
whose full set the registry knows (the bridge itself once started; a meter once it has been
heard for `removal_grace_s`, and that meter's M-Bus devices) but that it does not publish any
more get an empty retained config, which deletes them in Home Assistant. Devices not heard this
run (an old meter) are left alone. `republish` sends every config again (Home Assistant's
birth message after its restart).

Not thread-safe on its own: `HomeAssistantBridge` calls it under its lock.
"""

from __future__ import annotations

import json
import logging
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from p1lora.receiver.ha_discovery import (
    DeviceInfo,
    DiscoveryMessage,
    DiscoverySettings,
    SensorEntity,
    TelegramPlan,
    bridge_configs,
    bridge_device,
    sensor_config,
)
from p1lora.receiver.ha_ports import MqttPort

__all__ = ["DiscoveryRegistry", "RetainedOwner", "retained_owner"]

#: The Home Assistant output logs under one name, the bridge's, which the troubleshooting page
#: tells users to look for.
logger = logging.getLogger("p1lora.receiver.home_assistant")

#: Lines not in the OBIS table are logged once each, up to this many codes.
_UNMAPPED_LOG_LIMIT = 256

#: The device a retained config names: (its first identifier, its via_device); None for each
#: that the config does not carry as a string.
RetainedOwner = tuple[str | None, str | None]


def _encode_config(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


def retained_owner(payload: bytes) -> RetainedOwner | None:
    """Whose a retained config on the broker is; None for an empty payload (deleted)."""
    if not payload:
        return None
    try:
        config = json.loads(payload)
        device = config.get("device", {}) if isinstance(config, dict) else {}
        identifiers = device.get("identifiers") if isinstance(device, dict) else None
        if isinstance(identifiers, str):
            identifiers = [identifiers]
        device_id = identifiers[0] if isinstance(identifiers, list) and identifiers else None
        via = device.get("via_device") if isinstance(device, dict) else None
    except ValueError:
        device_id, via = None, None
    return (
        device_id if isinstance(device_id, str) else None,
        via if isinstance(via, str) else None,
    )


class DiscoveryRegistry:
    """The discovery configs of one bridge (see the module docstring)."""

    def __init__(
        self,
        mqtt: MqttPort,
        settings: DiscoverySettings,
        *,
        max_devices: int,
        monotonic: Callable[[], float],
    ) -> None:
        self._mqtt = mqtt
        self._settings = settings
        self.max_devices = max_devices
        self._monotonic = monotonic
        self.bridge = bridge_device(settings)
        self._bridge_settled = False
        self.expire_after = settings.expire_after_s
        #: Topic -> JSON text of every config this bridge currently wants retained.
        self._configs: OrderedDict[str, str] = OrderedDict()
        #: Device slug -> the entities announced for it (grows while the bridge runs).
        self._entities: dict[str, dict[str, SensorEntity]] = {}
        #: (device slug, key) -> what its published config was built from.
        self._announced: dict[tuple[str, str], tuple[DeviceInfo, SensorEntity, int]] = {}
        self._devices: dict[str, DeviceInfo] = {}
        #: Meter identifier -> when it was first heard (monotonic), for the removal grace.
        self._meters: dict[str, float] = {}
        #: Retained configs of this bridge on the broker: topic -> its owner.
        self._retained: dict[str, RetainedOwner] = {}
        self._unmapped_logged: set[str] = set()
        self.configs_published = 0
        self.configs_removed = 0

    # ------------------------------------------------------------------ announcing

    def announce_bridge(self) -> None:
        """Publish the bridge device's configs (its sensors, buttons and select)."""
        for message in bridge_configs(self._settings):
            self._want(message)

    def settle_bridge(self) -> None:
        """The bridge device's set of configs is complete from now on (the bridge started):
        retained configs of the bridge device it does not have may be removed."""
        self._bridge_settled = True

    def overflow(self, plan: TelegramPlan) -> list[DeviceInfo]:
        """The plan's new devices when announcing them would exceed `max_devices`, else []."""
        new = [d for d in plan.devices if d.slug not in self._devices]
        if new and len(self._devices) + len(new) > self.max_devices:
            return new
        return []

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def learn(self, plan: TelegramPlan, now: float) -> dict[str, list[SensorEntity]]:
        """Take in a telegram's devices and entities and publish what is new or changed;
        returns every entity announced so far per device of the plan (their state fields)."""
        self._meters.setdefault(plan.meter.identifier, now)
        for device in plan.devices:
            self._devices[device.slug] = device
        for planned in plan.values:
            entity = planned.entity
            self._entities.setdefault(entity.device, {})[entity.key] = entity
        for device in plan.devices:
            for entity in self._entities.get(device.slug, {}).values():
                self._announce(device, entity)
        return {
            device.slug: list(self._entities.get(device.slug, {}).values())
            for device in plan.devices
        }

    def note_unmapped(self, codes: Iterable[str]) -> None:
        """Log, once per code, lines the OBIS table does not know (they get no entity)."""
        for code in codes:
            if code in self._unmapped_logged or len(self._unmapped_logged) >= _UNMAPPED_LOG_LIMIT:
                continue
            self._unmapped_logged.add(code)
            logger.info(
                "Home Assistant: line %s is not in the OBIS table; it is kept in the raw "
                "telegram but has no entity",
                code,
            )

    def set_expire_after(self, expire_after: int) -> None:
        """Meter entities' `expire_after` changed: their configs are published again."""
        self.expire_after = expire_after
        for slug, entities in self._entities.items():
            device = self._devices.get(slug)
            if device is None:
                continue
            for entity in entities.values():
                self._announce(device, entity)

    def _want(self, message: DiscoveryMessage) -> None:
        """Make `message` the retained config of its topic; publish when new or changed."""
        text = _encode_config(message.payload)
        if self._configs.get(message.topic) == text:
            return
        self._configs[message.topic] = text
        self._mqtt.publish(message.topic, text, retain=True)
        self.configs_published += 1

    def _announce(self, device: DeviceInfo, entity: SensorEntity) -> None:
        """Publish the entity's config if anything it is built from changed (a DSMR 5 meter
        sends a telegram a second; building and encoding forty configs each time is waste)."""
        inputs = (device, entity, self.expire_after)
        slot = (device.slug, entity.key)
        if self._announced.get(slot) == inputs:
            return
        self._announced[slot] = inputs
        self._want(sensor_config(self._settings, device, entity, expire_after=self.expire_after))

    def republish(self) -> None:
        """Publish every config again."""
        for topic, text in self._configs.items():
            self._mqtt.publish(topic, text, retain=True)
            self.configs_published += 1

    # ------------------------------------------------------------------ removal

    def note_retained(self, topic: str, owner: RetainedOwner | None) -> None:
        """The broker holds (or, with None, no longer holds) a retained config of ours."""
        if owner is None:
            self._retained.pop(topic, None)
            return
        self._retained[topic] = owner
        self.sweep()

    def _owner(self, device_id: str | None, via: str | None) -> str | None:
        """Whose telegrams decide about a device: the bridge, a meter, or None (unknown)."""
        if device_id is None:
            return None
        if device_id == self.bridge.identifier:
            return device_id
        if device_id in self._meters:
            return device_id
        if via is not None and via in self._meters:
            return via
        return None

    def _settled(self, owner: str) -> bool:
        if owner == self.bridge.identifier:
            return self._bridge_settled
        first = self._meters.get(owner)
        return first is not None and self._monotonic() - first >= self._settings.removal_grace_s

    def sweep(self) -> None:
        """Delete retained configs of settled devices that the bridge no longer publishes."""
        for topic, (device_id, via) in list(self._retained.items()):
            if topic in self._configs:
                continue
            owner = self._owner(device_id, via)
            if owner is not None and self._settled(owner):
                self._remove(topic)

    def _remove(self, topic: str) -> None:
        self._configs.pop(topic, None)
        self._retained.pop(topic, None)
        self._mqtt.publish(topic, b"", retain=True)
        self.configs_removed += 1
        logger.info("Home Assistant: removed %s (the bridge no longer has this entity)", topic)

    def remove_all(self) -> int:
        """Delete every config of this bridge (what it publishes and what the broker still
        holds from earlier runs); returns how many."""
        topics = list(dict.fromkeys([*self._configs, *self._retained]))
        for topic in topics:
            self._mqtt.publish(topic, b"", retain=True)
        self._configs.clear()
        self._retained.clear()
        self._announced.clear()
        self.configs_removed += len(topics)
        return len(topics)

    # ------------------------------------------------------------------ introspection

    def topics(self) -> list[str]:
        return list(self._configs)

    def entities(self, device_slug: str) -> list[SensorEntity]:
        return list(self._entities.get(device_slug, {}).values())
