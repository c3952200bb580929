"""The demo's snapshots: frozen values the renderers turn into text.

`DemoState.view()` (`p1lora.tools.demo.model`) builds a `DemoView` under its lock; everything
that draws (`text`, `screen`, `summary`) reads only these, so rendering never races the MQTT
thread and is easy to test with hand-made values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["DemoInfo", "DemoView", "DeviceView", "EntityView", "LogEvent"]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the event list: `at` seconds after the demo started, from `source`."""

    at: float
    source: str
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class DemoInfo:
    """What the demo set up (for the header and the summary)."""

    broker: str
    meter: str = "dsmr5"
    path_loss_db: float = 100.0
    sim_port: int | None = None
    external_broker: bool = False
    workdir: str | None = None


@dataclass(frozen=True, slots=True)
class EntityView:
    """One Home Assistant entity as discovery announced it, with its current value."""

    config_topic: str
    component: str
    name: str
    unique_id: str
    device_id: str
    state_topic: str | None
    value_key: str | None
    unit: str | None
    device_class: str | None
    entity_category: str | None
    enabled: bool
    value: object = None
    has_value: bool = False
    changed_at: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceView:
    """One Home Assistant device and its entities (in the order they were announced)."""

    identifier: str
    name: str
    manufacturer: str | None
    model: str | None
    sw_version: str | None
    serial_number: str | None
    via_device: str | None
    is_bridge: bool
    entities: tuple[EntityView, ...]

    @property
    def enabled_entities(self) -> tuple[EntityView, ...]:
        return tuple(e for e in self.entities if e.enabled)

    def label(self) -> str:
        """`Electricity meter (Iskraemeco M550T-1012, DSMR 5.0)`."""
        details = [
            x for x in (self.manufacturer, self.model, self.sw_version) if x and x != self.name
        ]
        if not details and self.serial_number:
            details = [self.serial_number]
        return f"{self.name} ({', '.join(details)})" if details else self.name


@dataclass(frozen=True, slots=True)
class DemoView:
    """A consistent snapshot of everything the demo knows (see `DemoState.view`)."""

    info: DemoInfo
    elapsed: float
    availability: str | None
    bridge: Mapping[str, Any]
    devices: tuple[DeviceView, ...]
    events: tuple[LogEvent, ...]
    telegrams: int
    first_telegram_at: float | None
    last_telegram_at: float | None
    handshakes: int
    radio_changes: int
    last_radio: str | None
    link_state: str | None
    settings: str | None
    tx_power_dbm: object
    restarts: Mapping[str, int]
    warnings: int
    offline_seen: bool
    mqtt_connected: bool

    @property
    def entity_count(self) -> int:
        return sum(len(d.entities) for d in self.devices)

    @property
    def enabled_count(self) -> int:
        return sum(len(d.enabled_entities) for d in self.devices)
