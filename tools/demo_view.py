"""What `p1-lora demo` shows: a model fed by MQTT messages and daemon log lines, and renderers.

The demo watches the bridge from the outside, the way Home Assistant does, so that what it
shows is what a user would get:

- **MQTT** (`DemoState.mqtt_message`): the retained discovery configs of this bridge (devices
  and entities, exactly what Home Assistant would create), the state topics the configs point
  at (the values), the bridge's availability and its diagnostics (link state, RSSI/SNR, SF/BW,
  TX power, airtime, packet loss, telegrams received).
- **Logs** (`DemoState.log_line`): the daemons' stderr lines (`LEVEL logger: message`, the
  format of `p1lora.common.logging_setup`). Link state changes and radio settings changes
  (handshake, auto-tune steps, power control), the P1 port, the broker connection and every
  warning become the event list; `EVENT_SOURCES` says which loggers count.

"Telegrams delivered end to end" counts the meter state messages the bridge published: each
one is a telegram that went meter -> pty -> p1-lora-tx -> simulated LoRa -> p1-lora-rx -> MQTT
and passed the meter's CRC on the way out (the bridge never publishes a telegram that fails
it). Retained copies (delivered again on subscribe or reconnect) and repeats of the same meter
timestamp are not counted twice.

Rendering is pure: `DemoState.view()` takes a consistent snapshot (`DemoView`) under the lock,
and `render_screen` (the live ANSI view), `status_line` / `event_line` (plain lines when stdout
is not a terminal) and `summary_lines` / `summary_dict` (the end of a run) turn a snapshot into
text. No curses: a screen is a list of lines, redrawn from the top.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Final

from p1lora.receiver.ha_discovery import DiscoverySettings, bridge_device

__all__ = [
    "EVENT_SOURCES",
    "DemoInfo",
    "DemoResult",
    "DemoState",
    "DemoView",
    "DeviceView",
    "EntityView",
    "LogEvent",
    "discovery_line",
    "event_line",
    "format_value",
    "meter_words",
    "parse_log_line",
    "render_screen",
    "status_line",
    "summary_dict",
    "summary_lines",
]

#: Logger name prefix -> the lowest level that becomes an event in the view. Anything else is
#: shown from WARNING up. The link's INFO lines are its state changes and radio settings
#: changes: the handshake and every auto-tune step.
EVENT_SOURCES: Final[tuple[tuple[str, int], ...]] = (
    ("p1lora.common.link", logging.INFO),
    ("p1lora.transmitter.serial_source", logging.INFO),
    ("p1lora.receiver.cli", logging.INFO),
    ("p1lora.receiver.mqtt_publisher", logging.INFO),
)
DEFAULT_EVENT_LEVEL: Final = logging.WARNING
#: Events kept for the view (the screen shows as many as fit).
MAX_EVENTS: Final = 200
#: A value that changed this recently is highlighted.
CHANGED_HIGHLIGHT_S: Final = 1.5

_LOG_LINE = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
_LEVELS: Final = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}
#: Link log messages the view counts (see `p1lora.common.link.base`): the handshake completing,
#: and a change of radio settings with its reason (switch, fallback, power, ...).
_HANDSHAKE = re.compile(r"\(handshake complete\)$")
_RADIO_CHANGE = re.compile(r"^(tx|rx): radio (\S+) (-?\d+) dBm -> (\S+) (-?\d+) dBm \((.+)\)$")
_STATE_CHANGE = re.compile(r"^(tx|rx): (\w+) -> (\w+) \((.+)\)$")


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One line of the event list: `at` seconds after the demo started, from `source`."""

    at: float
    source: str
    level: int
    text: str


def parse_log_line(line: str) -> tuple[int, str, str] | None:
    """(level, logger, message) of a daemon log line, or None for anything else (tracebacks)."""
    match = _LOG_LINE.match(line.rstrip("\r\n"))
    if match is None:
        return None
    return _LEVELS[match.group(1)], match.group(2), match.group(3)


def _event_level(logger_name: str) -> int:
    for prefix, level in EVENT_SOURCES:
        if logger_name == prefix or logger_name.startswith(prefix + "."):
            return level
    return DEFAULT_EVENT_LEVEL


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


@dataclass(slots=True)
class _Entity:
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


_VALUE_KEY = re.compile(r"""value_json\[['"]([^'"]+)['"]\]|value_json\.(\w+)""")


def _value_key(template: object) -> str | None:
    """The state field a `value_template` reads (`{{ value_json['key'] }}`)."""
    if not isinstance(template, str):
        return None
    match = _VALUE_KEY.search(template)
    if match is None:
        return None
    return match.group(1) or match.group(2)


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


class DemoState:
    """The demo's model of the bridge; thread-safe (paho's thread and the main loop feed it).

    `started` and every `now` are on the same monotonic clock; event times are shown relative
    to `started`.
    """

    def __init__(self, settings: DiscoverySettings, info: DemoInfo, started: float) -> None:
        self.settings = settings
        self.info = info
        self.started = started
        self._lock = threading.Lock()
        bridge = bridge_device(settings)
        self.bridge_id = bridge.identifier
        self.bridge_state_topic = bridge.state_topic(settings)
        self._config_prefix = f"{settings.discovery_prefix}/"
        self._config_node = settings.node_id
        self._base = f"{settings.base_topic}/"
        self._entities: dict[str, _Entity] = {}
        self._devices: dict[str, _Device] = {}
        self._states: dict[str, _State] = {}
        self._availability: str | None = None
        self._offline_seen = False
        self._retained_topics: dict[str, None] = {}
        self._events: deque[LogEvent] = deque(maxlen=MAX_EVENTS)
        self._last_stamp: dict[str, object] = {}
        self._telegrams = 0
        self._first_telegram: float | None = None
        self._last_telegram: float | None = None
        self._handshakes = 0
        self._radio_changes = 0
        self._last_radio: str | None = None
        #: What the logs said last about the link ("state", "settings", "tx_power"). The link
        #: logs every change the moment it happens, while the bridge's diagnostics come every
        #: 5-10 s (and may carry an older snapshot), so the logs win once they said something.
        self._from_logs: dict[str, object] = {}
        self._restarts: dict[str, int] = {}
        self._warnings = 0
        self._mqtt_connected = False
        self._new_devices: list[str] = []

    # ------------------------------------------------------------------ MQTT

    def is_config_topic(self, topic: str) -> bool:
        parts = topic.split("/")
        return (
            topic.startswith(self._config_prefix)
            and len(parts) == len(self.settings.discovery_prefix.split("/")) + 4
            and parts[-1] == "config"
            and parts[-3] == self._config_node
        )

    def mqtt_connected(self, connected: bool) -> None:
        with self._lock:
            self._mqtt_connected = connected

    def mqtt_message(self, topic: str, payload: bytes, now: float, *, retained: bool) -> None:
        """Take one message of the subscriptions (discovery configs and the base topic).

        Malformed payloads are ignored (what a broker holds is not ours to trust)."""
        with self._lock:
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
                self._availability = text
                if text == "offline":
                    self._offline_seen = True
            elif topic.startswith(self._base) and topic.endswith("/state"):
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
            self._new_devices.append(device_id)
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
        self._entities[topic] = _Entity(
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
        self._telegrams += 1
        if self._first_telegram is None:
            self._first_telegram = now
        self._last_telegram = now

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
        with self._lock:
            topics = list(self._retained_topics)
        configs = [t for t in topics if self.is_config_topic(t)]
        others = [
            t
            for t in topics
            if not self.is_config_topic(t)
            and (t == self.settings.availability_topic or t.endswith("/state"))
        ]
        return configs + others

    def take_new_devices(self) -> list[DeviceView]:
        """Devices discovered since the last call (for the plain-line output)."""
        with self._lock:
            new, self._new_devices = self._new_devices, []
        view = {d.identifier: d for d in self.view(self.started).devices}
        return [view[i] for i in new if i in view]

    # ------------------------------------------------------------------ logs and notes

    def log_line(self, source: str, line: str, now: float) -> LogEvent | None:
        """Take one log line of a daemon; returns the event it became, if any."""
        parsed = parse_log_line(line)
        if parsed is None:
            return None
        level, logger_name, message = parsed
        with self._lock:
            if logger_name.startswith("p1lora.common.link"):
                self._link_line(source, message)
            if level < _event_level(logger_name):
                return None
            if level >= logging.WARNING:
                self._warnings += 1
            for prefix in (f"{source}: ", f"{source} "):
                if message.startswith(prefix):
                    message = message[len(prefix) :]
                    break
            event = LogEvent(max(0.0, now - self.started), source, level, message)
            self._events.append(event)
            return event

    def _link_line(self, source: str, message: str) -> None:
        """Handshakes, auto-tune steps, the link state (the receiver's, as the bridge shows
        it) and the radio settings (the transmitter's: it decides) from the link's log."""
        radio = _RADIO_CHANGE.match(message)
        if radio is not None and radio.group(1) == source == "tx":
            self._radio_changes += 1
            self._last_radio = f"{radio.group(4)} {radio.group(5)} dBm ({radio.group(6)})"
            self._from_logs["settings"] = radio.group(4)
            self._from_logs["tx_power"] = int(radio.group(5))
            return
        state = _STATE_CHANGE.match(message)
        if state is None or state.group(1) != source:
            return
        if source == "tx" and _HANDSHAKE.search(message):
            self._handshakes += 1
        if source == "rx":
            self._from_logs["state"] = state.group(3)

    def _link_value(self, key: str, from_bridge: object) -> object:
        return self._from_logs.get(key, from_bridge)

    def note(self, text: str, now: float, *, level: int = logging.INFO) -> LogEvent:
        """An event of the demo itself (a restart, a broker choice, a problem)."""
        with self._lock:
            if level >= logging.WARNING:
                self._warnings += 1
            event = LogEvent(max(0.0, now - self.started), "demo", level, text)
            self._events.append(event)
            return event

    def restarted(self, name: str) -> None:
        with self._lock:
            self._restarts[name] = self._restarts.get(name, 0) + 1

    # ------------------------------------------------------------------ snapshot

    def view(self, now: float) -> DemoView:
        with self._lock:
            devices = [self._device_view(d, now) for d in self._devices.values()]
            devices = [d for d in devices if d.entities]
            # The bridge first, then meters, each followed by the devices connected via it.
            ordered: list[DeviceView] = [d for d in devices if d.is_bridge]
            roots = [d for d in devices if self._is_meter(d.identifier, d.via_device)]
            for root in roots:
                ordered.append(root)
                ordered.extend(d for d in devices if d.via_device == root.identifier)
            ordered.extend(d for d in devices if d not in ordered)
            bridge_state = self._states.get(self.bridge_state_topic)
            bridge = dict(bridge_state.values) if bridge_state is not None else {}
            return DemoView(
                info=self.info,
                elapsed=max(0.0, now - self.started),
                availability=self._availability,
                bridge=bridge,
                devices=tuple(ordered),
                events=tuple(self._events),
                telegrams=self._telegrams,
                first_telegram_at=None
                if self._first_telegram is None
                else self._first_telegram - self.started,
                last_telegram_at=None
                if self._last_telegram is None
                else self._last_telegram - self.started,
                handshakes=self._handshakes,
                radio_changes=self._radio_changes,
                last_radio=self._last_radio,
                link_state=_opt_str(self._link_value("state", bridge.get("link_state"))),
                settings=_opt_str(self._link_value("settings", _settings_label(bridge))),
                tx_power_dbm=self._link_value("tx_power", bridge.get("tx_power")),
                restarts=dict(self._restarts),
                warnings=self._warnings,
                offline_seen=self._offline_seen,
                mqtt_connected=self._mqtt_connected,
            )

    def _device_view(self, device: _Device, now: float) -> DeviceView:
        entities = []
        for entity in self._entities.values():
            if entity.device_id != device.identifier:
                continue
            state = self._states.get(entity.state_topic or "")
            key = entity.value_key
            has_value = state is not None and key is not None and key in state.values
            changed = state.changed_at.get(key) if state is not None and key else None
            entities.append(
                EntityView(
                    config_topic=entity.config_topic,
                    component=entity.component,
                    name=entity.name,
                    unique_id=entity.unique_id,
                    device_id=entity.device_id,
                    state_topic=entity.state_topic,
                    value_key=key,
                    unit=entity.unit,
                    device_class=entity.device_class,
                    entity_category=entity.entity_category,
                    enabled=entity.enabled,
                    value=state.values.get(key) if state is not None and key else None,
                    has_value=has_value,
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


# ---------------------------------------------------------------------------------- formatting


def _fmt_number(value: object, digits: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if digits is None:
        return str(value)
    return f"{float(value):.{digits}f}"


def format_value(entity: EntityView, availability: str | None) -> str:
    """An entity's state as Home Assistant would show it (`unavailable`, `unknown`, `1.2 kW`)."""
    if availability == "offline":
        return "unavailable"
    if entity.component == "button":
        return "(button)"
    if not entity.has_value or entity.value is None:
        return "unknown"
    value = entity.value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:40]
    text = _fmt_number(value) or str(value)
    return f"{text} {entity.unit}" if entity.unit else text


def _get(bridge: Mapping[str, Any], key: str) -> object:
    return bridge.get(key)


def _num(bridge: Mapping[str, Any], key: str, digits: int, unit: str, missing: str = "-") -> str:
    text = _fmt_number(_get(bridge, key), digits)
    return missing if text is None else f"{text} {unit}".rstrip()


def _settings_label(bridge: Mapping[str, Any]) -> str | None:
    """`SF7/BW250` from the bridge's state (the label the link's own log uses)."""
    sf, bw = _get(bridge, "spreading_factor"), _get(bridge, "bandwidth")
    if sf is None or bw is None:
        return None
    bw_text = _fmt_number(bw, 0) or str(bw)
    return f"SF{sf}/BW{bw_text}"


def _link_words(view: DemoView) -> dict[str, str]:
    b = view.bridge
    return {
        "state": view.link_state or "starting",
        "settings": view.settings or "-",
        "power": _num({"p": view.tx_power_dbm}, "p", 0, "dBm"),
        "rssi": _num(b, "rssi", 0, "dBm"),
        "snr": _num(b, "snr", 1, "dB"),
        "air_rx": _num(b, "airtime_used", 1, "%"),
        "air_tx": _num(b, "transmitter_airtime_used", 1, "%"),
        "loss_rx": _num(b, "packet_loss", 0, "%"),
        "loss_tx": _num(b, "transmitter_packet_loss", 0, "%"),
        "rejected": str(_get(b, "frames_rejected") or 0),
        "serial": str(_get(b, "serial_state") or "-"),
    }


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def _clock(seconds: float) -> str:
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60:02d}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def event_line(event: LogEvent) -> str:
    """A plain line for one event: `[+  3.2s] tx      rendezvous -> running (handshake complete)`."""
    level = "" if event.level < logging.WARNING else logging.getLevelName(event.level) + " "
    return f"[+{event.at:6.1f}s] {event.source:<6} {level}{event.text}"


def status_line(view: DemoView) -> str:
    """One plain line with the link, delivery and meter state (non-terminal output).

    Made to show progress from one line to the next: the telegram count and the age of the
    last one, the meter's own clock, power in both directions (the virtual meter's solar panels
    export while the import reads 0.000 kW), and the energy registers with every digit the
    meter sends (they move by a few watt-hours, which rounding would hide).
    """
    w = _link_words(view)
    parts = [
        f"[{_clock(view.elapsed)}] link {w['state']} {w['settings']} {w['power']}",
        f"RSSI {w['rssi']}, SNR {w['snr']}",
        f"airtime {w['air_rx']} (rx) / {w['air_tx']} (tx) of the hourly allowance",
        f"loss {w['loss_rx']}",
        _delivery_words(view),
    ]
    meter = meter_words(view)
    if meter is not None:
        parts.append(meter)
    return "; ".join(parts)


def _delivery_words(view: DemoView) -> str:
    text = f"{view.telegrams} telegram(s) end to end"
    if view.telegrams and view.last_telegram_at is not None:
        text += f" (last {max(0.0, view.elapsed - view.last_telegram_at):.0f} s ago)"
    return text


_CLOCK_TIME: Final = re.compile(r"T(\d\d:\d\d:\d\d)")


def _meter_entities(view: DemoView) -> dict[str, EntityView]:
    """The meters' entities by value key (the bridge's own are left out)."""
    found: dict[str, EntityView] = {}
    for device in view.devices:
        if device.is_bridge:
            continue
        for entity in device.entities:
            if entity.value_key is not None and entity.has_value:
                found.setdefault(entity.value_key, entity)
    return found


def meter_words(view: DemoView) -> str | None:
    """`meter 12:00:01: import 0.000 kW, export 1.651 kW, energy in 13920.164 kWh, out
    3731.876 kWh`; None before the first meter values."""
    entities = _meter_entities(view)
    if not entities:
        return None
    if view.availability == "offline":
        return "meter unavailable (bridge offline)"
    stamp = entities.get("timestamp")
    clock = _CLOCK_TIME.search(str(stamp.value)) if stamp is not None else None
    words: list[str] = []
    for label, key in (
        ("import", "current_electricity_usage"),
        ("export", "current_electricity_delivery"),
    ):
        entity = entities.get(key)
        if entity is not None:
            words.append(f"{label} {format_value(entity, view.availability)}")
    # The bridge's own totals (all tariffs): unknown, like in Home Assistant, when a register
    # could not be read, never a partial sum.
    energy = [
        f"{direction} {format_value(entity, view.availability)}"
        for direction, key in (("in", "total_energy_import"), ("out", "total_energy_export"))
        if (entity := entities.get(key)) is not None
    ]
    if energy:
        words.append("energy " + ", ".join(energy))
    head = f"meter {clock.group(1)}" if clock is not None else "meter"
    return f"{head}: {', '.join(words)}" if words else None


def discovery_line(device: DeviceView) -> str:
    """A plain line for a newly discovered device."""
    return (
        f"Home Assistant would discover {device.label()}: {len(device.entities)} entities, "
        f"{len(device.enabled_entities)} enabled by default"
    )


# ---------------------------------------------------------------------------------- the screen

_STYLES: Final = {
    "": "",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "cyan": "\x1b[36m",
    "reverse": "\x1b[7m",
}
_RESET: Final = "\x1b[0m"

Segment = tuple[str, str]
Line = list[Segment]


def _finish(line: Line, width: int, color: bool) -> str:
    """Cut a line of styled segments to `width` visible characters and apply the styles."""
    out: list[str] = []
    room = width
    for text, style in line:
        if room <= 0:
            break
        piece = text[:room]
        room -= len(piece)
        if color and style:
            codes = "".join(_STYLES[s] for s in style.split())
            out.append(f"{codes}{piece}{_RESET}")
        else:
            out.append(piece)
    return "".join(out)


def _state_style(state: str) -> str:
    if state == "running":
        return "green bold"
    if state in ("probing", "handshake", "resume", "switching"):
        return "yellow bold"
    return "red bold" if state in ("fallback", "rendezvous") else "bold"


def _header(view: DemoView) -> list[Line]:
    info = view.info
    title: Line = [
        ("p1-lora demo", "bold reverse"),
        (f"  {_clock(view.elapsed)}  ", "bold"),
        (f"broker {info.broker}", ""),
        ("  Ctrl-C stops", "dim"),
    ]
    pipeline: Line = [
        (
            f"{info.meter} meter -> p1-lora-tx -> LoRa (simulated, {info.path_loss_db:g} dB) "
            "-> p1-lora-rx -> MQTT",
            "dim",
        )
    ]
    return [title, pipeline]


_INDENT: Final = "      "


def _link_block(view: DemoView) -> list[Line]:
    w = _link_words(view)
    availability = view.availability or "unknown"
    last = f" (last: {view.last_radio})" if view.last_radio else ""
    lines: list[Line] = [
        [
            ("LINK  ", "bold cyan"),
            (f"{w['state']:<9}", _state_style(w["state"])),
            (f" {w['settings']} {w['power']}", "bold"),
            (f"  RSSI {w['rssi']}  SNR {w['snr']}", ""),
            (f"  bridge {availability}", "green" if availability == "online" else "yellow"),
        ],
        [
            (_INDENT, ""),
            (
                f"airtime {w['air_rx']} rx, {w['air_tx']} tx of the allowance  "
                f"loss {w['loss_rx']} rx, {w['loss_tx']} tx  rejected {w['rejected']}",
                "",
            ),
        ],
        [
            (_INDENT, ""),
            (f"handshakes {view.handshakes}, auto-tune steps {view.radio_changes}{last}", ""),
        ],
    ]
    if view.telegrams:
        first = view.first_telegram_at or 0.0
        ago = view.elapsed - (view.last_telegram_at or 0.0)
        delivery = (
            f"{_plural(view.telegrams, 'telegram')} end to end (first after {first:.1f} s, "
            f"last {ago:.0f} s ago)"
        )
        if w["serial"] != "-":
            delivery += f"  P1 port {w['serial']}"
        style = "green"
    else:
        delivery = "no telegram end to end yet (the first handshake at SF12 takes a few seconds)"
        style = "yellow"
    lines.append([(_INDENT, ""), (delivery, style)])
    restarts = ", ".join(f"{name} {n}x" for name, n in sorted(view.restarts.items()))
    if restarts:
        lines.append([(_INDENT, ""), (f"restarted after exit code 4: {restarts}", "")])
    return lines


def _entity_cell(entity: EntityView, view: DemoView, name_w: int, value_w: int) -> Line:
    """`name  value unit` in a cell of `name_w + value_w + 3` characters."""
    value = format_value(entity, view.availability)
    changed = (
        entity.changed_at is not None and view.elapsed - entity.changed_at < CHANGED_HIGHLIGHT_S
    )
    name = entity.name if len(entity.name) <= name_w else entity.name[: name_w - 1] + "…"
    value = value if len(value) <= value_w else value[: value_w - 1] + "…"
    style = "bold green" if changed else ("dim" if value in ("unknown", "unavailable") else "")
    return [(name.ljust(name_w + 1), ""), (value.ljust(value_w + 2), style)]


def _shares(wanted: list[int], room: int) -> list[int]:
    """Split `room` rows among devices wanting `wanted` rows: everyone gets rows in turn, so a
    short terminal still shows a few values of every device."""
    given = [0] * len(wanted)
    while room > 0 and any(g < w for g, w in zip(given, wanted, strict=True)):
        for index, want in enumerate(wanted):
            if room > 0 and given[index] < want:
                given[index] += 1
                room -= 1
    return given


def _device_lines(view: DemoView, width: int, budget: int) -> list[Line]:
    """Devices with their enabled sensors, in columns, within `budget` lines."""
    if not view.devices:
        return [[("HOME ASSISTANT  ", "bold cyan"), ("waiting for discovery configs …", "yellow")]]
    lines: list[Line] = [
        [
            ("HOME ASSISTANT  ", "bold cyan"),
            (
                f"would discover {len(view.devices)} devices, {view.entity_count} entities "
                f"({view.enabled_count} enabled by default)",
                "",
            ),
        ]
    ]
    shown = {
        d.identifier: [e for e in d.enabled_entities if e.component == "sensor"]
        for d in view.devices
        if not d.is_bridge  # the bridge's diagnostics are the LINK block
    }
    every = [e for entities in shown.values() for e in entities]
    values = [len(format_value(e, view.availability)) for e in every]
    name_w = min(max((len(e.name) for e in every), default=10), 32, width - 16)
    value_w = min(max(values, default=8), 18)
    columns = max(1, min(3, (width - 4) // (name_w + value_w + 3)))
    rows = [-(-len(shown.get(d.identifier, [])) // columns) for d in view.devices]
    given = _shares(rows, budget - 1 - len(view.devices))
    for device, allowed in zip(view.devices, given, strict=True):
        entities = shown.get(device.identifier, [])
        hidden = len(entities) - allowed * columns
        lines.append(
            [
                ("  ", ""),
                (device.label(), "bold"),
                (f"  {len(device.enabled_entities)} of {len(device.entities)} enabled", "dim"),
                (f", {hidden} not shown" if hidden > 0 else "", "dim"),
            ]
        )
        for row in range(allowed):
            line: Line = [("    ", "")]
            for entity in entities[row * columns : (row + 1) * columns]:
                line.extend(_entity_cell(entity, view, name_w, value_w))
            lines.append(line)
    return lines[:budget]


def _event_lines(view: DemoView, budget: int) -> list[Line]:
    if budget <= 1:
        return []
    lines: list[Line] = [[("EVENTS", "bold cyan"), ("  handshake, auto-tune, warnings", "dim")]]
    for event in list(view.events)[-(budget - 1) :]:
        style = "red" if event.level >= logging.ERROR else "yellow" if event.level >= 30 else ""
        lines.append(
            [
                (f"  +{event.at:6.1f}s ", "dim"),
                (f"{event.source:<6} ", "bold"),
                (event.text, style),
            ]
        )
    return lines


def render_screen(view: DemoView, width: int, height: int, *, color: bool = True) -> list[str]:
    """The live view as at most `height` lines of at most `width` visible characters."""
    cut = max(1, width)
    width = max(40, width)  # the layout's minimum; lines are still cut to the real width
    height = max(1, height)
    top = [*_header(view), [], *_link_block(view), []]
    footer: list[Line] = []
    if view.info.workdir:
        footer = [[(f"logs: {view.info.workdir}", "dim")]]
    room = height - len(top) - len(footer)
    events_wanted = min(len(view.events) + 1, max(4, room // 3))
    device_budget = max(1, room - events_wanted - 1)
    devices = _device_lines(view, width, device_budget)
    events = _event_lines(view, room - len(devices) - 1)
    body = [*top, *devices, *([[]] if events else []), *events, *footer]
    return [_finish(line, cut, color) for line in body[:height]]


# ---------------------------------------------------------------------------------- the summary


@dataclass(frozen=True, slots=True)
class DemoResult:
    """How the run ended: its problems (a component that failed) and how it was stopped."""

    stopped_by: str
    problems: tuple[str, ...] = ()
    cleaned_up: int | None = None

    def ok(self, view: DemoView) -> bool:
        """Success: telegrams went end to end and nothing failed."""
        return view.telegrams > 0 and not self.problems


def summary_dict(view: DemoView, result: DemoResult) -> dict[str, Any]:
    """The run's outcome as plain JSON types (`p1-lora demo --json`)."""
    b = view.bridge

    def plain(value: object) -> object:
        return float(value) if isinstance(value, Decimal) else value

    return {
        "ok": result.ok(view),
        "stopped_by": result.stopped_by,
        "duration_s": round(view.elapsed, 1),
        "broker": view.info.broker,
        "meter": view.info.meter,
        "path_loss_db": view.info.path_loss_db,
        "telegrams_delivered": view.telegrams,
        "first_telegram_after_s": None
        if view.first_telegram_at is None
        else round(view.first_telegram_at, 1),
        "link": {
            "state": view.link_state,
            "settings": view.settings,
            "tx_power_dbm": plain(view.tx_power_dbm),
            "rssi_dbm": plain(b.get("rssi")),
            "snr_db": plain(b.get("snr")),
            "airtime_used_percent": plain(b.get("airtime_used")),
            "transmitter_airtime_used_percent": plain(b.get("transmitter_airtime_used")),
            "packet_loss_percent": plain(b.get("packet_loss")),
            "frames_rejected": plain(b.get("frames_rejected")),
            "handshakes": view.handshakes,
            "auto_tune_steps": view.radio_changes,
        },
        "home_assistant": {
            "devices": [
                {
                    "name": d.name,
                    "label": d.label(),
                    "entities": len(d.entities),
                    "enabled": len(d.enabled_entities),
                }
                for d in view.devices
            ],
            "entities": view.entity_count,
        },
        "receiver_marked_offline": view.offline_seen,
        "restarts": dict(view.restarts),
        "warnings": view.warnings,
        "problems": list(result.problems),
        "retained_topics_removed": result.cleaned_up,
    }


def summary_lines(view: DemoView, result: DemoResult) -> list[str]:
    """The run's outcome for people."""
    w = _link_words(view)
    first = (
        ""
        if view.first_telegram_at is None
        else f" (the first after {view.first_telegram_at:.1f} s)"
    )
    lines = [
        f"p1-lora demo: {view.elapsed:.0f} s, broker {view.info.broker}, stopped by "
        f"{result.stopped_by}",
        f"  telegrams delivered end to end: {view.telegrams}{first}",
        f"  link: {w['state']} at {w['settings']} {w['power']}, RSSI {w['rssi']}, "
        f"SNR {w['snr']}; {view.handshakes} handshake(s), {view.radio_changes} auto-tune step(s)",
        f"  airtime used: {w['air_rx']} (receiver), {w['air_tx']} (transmitter) of the hourly "
        f"allowance; packet loss {w['loss_rx']}; frames rejected {w['rejected']}",
        f"  Home Assistant would discover: {len(view.devices)} device(s), "
        f"{view.entity_count} entities ({view.enabled_count} enabled by default)",
    ]
    lines.extend(f"    {d.label()}: {len(d.entities)} entities" for d in view.devices)
    lines.append(
        "  receiver marked itself offline at the end: "
        + ("yes" if view.offline_seen else "not seen")
    )
    if view.restarts:
        restarts = ", ".join(f"{n} x {name}" for name, n in sorted(view.restarts.items()))
        lines.append(f"  restarted after exit code 4: {restarts}")
    if result.cleaned_up is not None:
        lines.append(f"  removed {result.cleaned_up} retained topic(s) from the broker")
    lines.extend(f"  problem: {p}" for p in result.problems)
    lines.append(
        "  result: OK, telegrams went end to end"
        if result.ok(view)
        else "  result: FAILED, "
        + ("see the problems above" if result.problems else "no telegram arrived end to end")
    )
    return lines
