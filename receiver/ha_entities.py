"""The bridge's own Home Assistant entities, as one declarative table.

The meter's entities come from the OBIS table (`p1lora.common.obis`); this module is the same
thing for what only the bridge knows: how the radio link is doing (RSSI, SNR, spreading factor,
bandwidth, TX power, airtime used of the duty-cycle allowance on both nodes, packet loss,
frames rejected for security reasons, link state, when the last telegram arrived), what the
transmitter reports about itself (its P1 serial port, telegram errors, when it started), the result of
the last command, and the controls: buttons (retune, restart the transmitter, request info) and
the radio-mode select (auto, or one of the fixed settings legal in the configured region and
sub-band).

Each row names its Home Assistant component (sensor, button, select), says how Home Assistant
should show it and, for sensors and the select, how to read its value from a `BridgeView` (a
snapshot of everything the bridge knows at one moment). Discovery (`ha_discovery`) reads the
metadata and builds each component's config from one function per component, state
(`ha_state`) calls the readers; a new diagnostic or button is one row. Everything here is a diagnostic except the controls (`config`), in the style of
Home Assistant's own integrations; the ones people rarely look at are disabled by default.

Percentages are 0-100 with `%` (Home Assistant's convention), not the link's 0-1 fractions.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from p1lora.common.link.config import LinkConfig
from p1lora.common.link.diagnostics import LinkDiagnostics
from p1lora.common.link.messages import SerialState, StatusMessage
from p1lora.receiver.ha_commands import (
    AUTO_OPTION,
    CommandResult,
    legal_fixed_settings,
    radio_option_label,
)
from p1lora.receiver.runtime import RxSnapshot

__all__ = [
    "AT_ONCE_KEYS",
    "BRIDGE_BUTTONS",
    "BRIDGE_ENTITIES",
    "BRIDGE_SENSORS",
    "LINK_STATES",
    "NOT_SECURITY_REJECTIONS",
    "RADIO_MODE_SELECT",
    "SERIAL_STATES",
    "BridgeEntity",
    "BridgeView",
    "Component",
    "LinkEventView",
    "iso_timestamp",
    "radio_mode_options",
    "radio_mode_state",
]

_DIAG = "diagnostic"
_CONFIG = "config"
_MEASUREMENT = "measurement"
_TOTAL_INCREASING = "total_increasing"

#: The receiver link's states (`RxLink.state`), as the "Link state" sensor shows them.
LINK_STATES: tuple[str, ...] = (
    "rendezvous",
    "resume",
    "handshake",
    "running",
    "probing",
    "fallback",
)
#: The transmitter's serial port states, lower case, as the enum sensor's options.
SERIAL_STATES: tuple[str, ...] = tuple(state.name.lower() for state in SerialState)


@dataclass(frozen=True, slots=True)
class LinkEventView:
    """The most recent link event (handshake step, switch, rejection ...)."""

    kind: str
    fields: Mapping[str, object]
    at_wall: float


@dataclass(frozen=True, slots=True)
class BridgeView:
    """Everything the bridge knows at one moment; the readers below take values from here.

    Times ending in `_wall` are Unix seconds (for Home Assistant timestamps); the snapshot's
    own times are on the runtime's monotonic clock.
    """

    snapshot: RxSnapshot | None = None
    transmitter: StatusMessage | None = None
    transmitter_at_wall: float | None = None
    transmitter_started_wall: float | None = None
    last_telegram_wall: float | None = None
    command: CommandResult | None = None
    last_event: LinkEventView | None = None
    telegrams_published: int = 0
    telegrams_refused: int = 0

    @property
    def link(self) -> LinkDiagnostics | None:
        return None if self.snapshot is None else self.snapshot.link

    @property
    def status(self) -> StatusMessage | None:
        """The transmitter's latest status report (from the snapshot or as it arrived)."""
        if self.transmitter is not None:
            return self.transmitter
        return None if self.snapshot is None else self.snapshot.transmitter


Reader = Callable[[BridgeView], object]
AttributeReader = Callable[[BridgeView], Mapping[str, object] | None]


class Component(StrEnum):
    """Home Assistant's MQTT platforms the bridge uses (the `<component>` level of a discovery
    topic)."""

    SENSOR = "sensor"
    BUTTON = "button"
    SELECT = "select"


@dataclass(frozen=True, slots=True)
class BridgeEntity:
    """One bridge entity: its component, Home Assistant metadata, and what it needs.

    `value` reads the state (sensors and the select; buttons have none), `attributes` a
    sensor's attributes, `cmd` is the `cmd` of the JSON contract a button or the select sends.
    `at_once` marks settings and states a user acts on (radio setting, TX power, link and
    serial state, mode, when the transmitter started): a change goes out with the next
    diagnostics snapshot instead of waiting for the bridge's publish interval.
    The select's options depend on the link's region (`radio_mode_options`).
    """

    component: Component
    key: str
    name: str
    value: Reader | None = None
    unit: str | None = None
    device_class: str | None = None
    state_class: str | None = None
    entity_category: str | None = _DIAG
    enabled_by_default: bool = True
    icon: str | None = None
    precision: int | None = None
    options: tuple[str, ...] | None = None
    attributes: AttributeReader | None = None
    cmd: str | None = None
    at_once: bool = False


# ---------------------------------------------------------------------------- readers


def iso_timestamp(unix_seconds: float | None) -> str | None:
    """A Unix time as the timezone-aware ISO 8601 text Home Assistant timestamps need."""
    if unix_seconds is None:
        return None
    return datetime.fromtimestamp(unix_seconds, UTC).isoformat(timespec="seconds")


def _percent(fraction: float | None) -> float | None:
    return None if fraction is None else round(fraction * 100.0, 2)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def _from_link(read: Callable[[LinkDiagnostics], object]) -> Reader:
    def reader(view: BridgeView) -> object:
        link = view.link
        return None if link is None else read(link)

    return reader


def _from_status(read: Callable[[StatusMessage], object]) -> Reader:
    def reader(view: BridgeView) -> object:
        status = view.status
        return None if status is None else read(status)

    return reader


def _link_state(view: BridgeView) -> object:
    link = view.link
    return None if link is None else link.state


#: Rejection reasons that are ordinary operation, not a security concern: a session frame that
#: arrives while this side has no session is what a restart of either side looks like until the
#: next handshake. "Frames rejected" leaves them out (they stay in the link log and in the
#: sensor's `no_session` attribute), so the entity only rises for replays, forgeries, other
#: networks and garbage.
NOT_SECURITY_REJECTIONS: frozenset[str] = frozenset({"no_session"})


def _rejected(link: LinkDiagnostics) -> int:
    return sum(n for reason, n in link.rejected.items() if reason not in NOT_SECURITY_REJECTIONS)


def _rejected_reasons(view: BridgeView) -> Mapping[str, object] | None:
    link = view.link
    if link is None:
        return None
    security = {r: n for r, n in link.rejected.items() if r not in NOT_SECURITY_REJECTIONS}
    return {
        "reasons": dict(sorted(security.items())),
        "no_session": link.rejected.get("no_session", 0),
    }


def _telegram_age(view: BridgeView) -> object:
    snapshot = view.snapshot
    age = None if snapshot is None else snapshot.seconds_since_last_telegram
    return None if age is None else round(age)


def _telegrams_delivered(view: BridgeView) -> object:
    return None if view.snapshot is None else view.snapshot.telegrams_delivered


def _telegram_errors(status: StatusMessage) -> int:
    return status.crc_errors + status.other_errors


def _telegram_error_kinds(view: BridgeView) -> Mapping[str, object] | None:
    status = view.status
    if status is None:
        return None
    return {
        "crc_errors": status.crc_errors,
        "other_errors": status.other_errors,
        "telegrams_read": status.telegrams_read,
    }


def _serial_state(status: StatusMessage) -> str:
    return status.serial_state.name.lower()


def _transmitter_started(view: BridgeView) -> object:
    return iso_timestamp(view.transmitter_started_wall)


def _transmitter_uptime(view: BridgeView) -> Mapping[str, object] | None:
    status = view.status
    if status is None:
        return None
    return {"uptime_s": status.uptime_s, "reported_at": iso_timestamp(view.transmitter_at_wall)}


def _command_summary(view: BridgeView) -> object:
    return None if view.command is None else view.command.summary()


def _command_attributes(view: BridgeView) -> Mapping[str, object] | None:
    result = view.command
    if result is None:
        return None
    attributes = result.reply()
    attributes["at"] = iso_timestamp(result.at)
    return attributes


def _last_event(view: BridgeView) -> object:
    return None if view.last_event is None else view.last_event.kind


def _last_event_attributes(view: BridgeView) -> Mapping[str, object] | None:
    event = view.last_event
    if event is None:
        return None
    return {"at": iso_timestamp(event.at_wall), **event.fields}


def radio_mode_state(view: BridgeView) -> str | None:
    """The select's current option: `auto`, or the fixed setting the link is on.

    Known from the transmitter's status reports; None (unknown) before the first one.
    """
    status = view.status
    if status is None:
        return None
    if not status.fixed_mode:
        return AUTO_OPTION
    link = view.link
    if link is None:
        return None
    return radio_option_label(link.settings.sf, link.settings.bw_hz)


def radio_mode_options(config: LinkConfig | None) -> tuple[str, ...]:
    """`auto` plus every fixed setting legal in the link's region and sub-band, fastest first.

    Without a link configuration only `auto` can be offered honestly.
    """
    if config is None:
        return (AUTO_OPTION,)
    return (AUTO_OPTION, *(radio_option_label(sf, bw) for sf, bw in legal_fixed_settings(config)))


# ---------------------------------------------------------------------------- the table

_SENSOR = Component.SENSOR
_BUTTON = Component.BUTTON
_SELECT = Component.SELECT

# fmt: off
#: Every entity of the bridge device, in the order their configs are published.
#: ("Transmitter started" replaced a "Transmitter uptime" duration that only moved with each
#: status report, minutes apart: a start time is right between reports, as Home Assistant
#: recommends for uptimes.)
BRIDGE_ENTITIES: tuple[BridgeEntity, ...] = (
    # -- how the receiver hears the transmitter --------------------------------------------
    BridgeEntity(_SENSOR, "rssi", "RSSI", _from_link(lambda d: _round(d.uplink_rssi_dbm, 1)), "dBm", "signal_strength", _MEASUREMENT, precision=0),
    BridgeEntity(_SENSOR, "snr", "SNR", _from_link(lambda d: _round(d.uplink_snr_db, 2)), "dB", None, _MEASUREMENT, precision=1, icon="mdi:signal-variant"),
    # -- how the transmitter hears the receiver (from its status reports) --------------------
    BridgeEntity(_SENSOR, "downlink_rssi", "Downlink RSSI", _from_link(lambda d: _round(d.downlink_rssi_dbm, 1)), "dBm", "signal_strength", _MEASUREMENT, enabled_by_default=False, precision=0),
    BridgeEntity(_SENSOR, "downlink_snr", "Downlink SNR", _from_link(lambda d: _round(d.downlink_snr_db, 2)), "dB", None, _MEASUREMENT, enabled_by_default=False, precision=1, icon="mdi:signal-variant"),
    # -- the radio setting in use ----------------------------------------------------------
    BridgeEntity(_SENSOR, "spreading_factor", "Spreading factor", _from_link(lambda d: d.settings.sf), None, None, _MEASUREMENT, icon="mdi:sine-wave", at_once=True),
    BridgeEntity(_SENSOR, "bandwidth", "Bandwidth", _from_link(lambda d: d.settings.bw_hz / 1000), "kHz", "frequency", _MEASUREMENT, icon="mdi:arrow-expand-horizontal", at_once=True),
    BridgeEntity(_SENSOR, "frequency", "Frequency", _from_link(lambda d: d.settings.frequency_hz / 1e6), "MHz", "frequency", None, enabled_by_default=False, precision=3, at_once=True),
    BridgeEntity(_SENSOR, "tx_power", "TX power", _from_status(lambda s: s.tx_power_dbm), "dBm", None, _MEASUREMENT, icon="mdi:antenna", at_once=True),
    BridgeEntity(_SENSOR, "receiver_tx_power", "Receiver TX power", _from_link(lambda d: d.tx_power_dbm), "dBm", None, _MEASUREMENT, enabled_by_default=False, icon="mdi:antenna", at_once=True),
    # -- duty cycle and loss ---------------------------------------------------------------
    BridgeEntity(_SENSOR, "airtime_used", "Airtime used (receiver)", _from_link(lambda d: _percent(d.airtime_used)), "%", None, _MEASUREMENT, precision=1, icon="mdi:timer-sand"),
    BridgeEntity(_SENSOR, "transmitter_airtime_used", "Airtime used (transmitter)", _from_status(lambda s: _percent(s.airtime_used)), "%", None, _MEASUREMENT, precision=1, icon="mdi:timer-sand"),
    BridgeEntity(_SENSOR, "packet_loss", "Packet loss", _from_link(lambda d: _percent(d.loss_rate)), "%", None, _MEASUREMENT, precision=0, icon="mdi:package-variant-remove"),
    BridgeEntity(_SENSOR, "transmitter_packet_loss", "Packet loss (transmitter)", _from_status(lambda s: _percent(s.loss_rate)), "%", None, _MEASUREMENT, precision=0, icon="mdi:package-variant-remove"),
    BridgeEntity(_SENSOR, "frames_rejected", "Frames rejected", _from_link(_rejected), None, None, _TOTAL_INCREASING, icon="mdi:shield-alert-outline", attributes=_rejected_reasons),
    BridgeEntity(_SENSOR, "second_transmitter_frames", "Frames from a second transmitter (same key)", _from_link(lambda d: d.second_transmitter_frames), None, None, _TOTAL_INCREASING, icon="mdi:content-copy"),
    # -- link and delivery -----------------------------------------------------------------
    BridgeEntity(_SENSOR, "link_state", "Link state", _link_state, icon="mdi:lan-connect", at_once=True),
    BridgeEntity(_SENSOR, "last_telegram", "Last telegram", lambda v: iso_timestamp(v.last_telegram_wall), None, "timestamp"),
    BridgeEntity(_SENSOR, "last_telegram_age", "Last telegram age", _telegram_age, "s", "duration", _MEASUREMENT, icon="mdi:timer-outline"),
    BridgeEntity(_SENSOR, "telegrams_received", "Telegrams received", _telegrams_delivered, None, None, _TOTAL_INCREASING, enabled_by_default=False, icon="mdi:counter"),
    BridgeEntity(_SENSOR, "telegrams_refused", "Telegrams refused", lambda v: v.telegrams_refused, None, None, _TOTAL_INCREASING, enabled_by_default=False, icon="mdi:alert-circle-outline"),
    BridgeEntity(_SENSOR, "last_link_event", "Last link event", _last_event, enabled_by_default=False, icon="mdi:transit-connection-variant", attributes=_last_event_attributes),
    # -- the transmitter, from its status reports ------------------------------------------
    BridgeEntity(_SENSOR, "serial_state", "Meter serial port", _from_status(_serial_state), None, "enum", options=SERIAL_STATES, icon="mdi:serial-port", at_once=True),
    BridgeEntity(_SENSOR, "telegram_errors", "Telegram errors", _from_status(_telegram_errors), None, None, _TOTAL_INCREASING, icon="mdi:alert-outline", attributes=_telegram_error_kinds),
    BridgeEntity(_SENSOR, "transmitter_started", "Transmitter started", _transmitter_started, None, "timestamp", icon="mdi:restart", attributes=_transmitter_uptime, at_once=True),
    BridgeEntity(_SENSOR, "send_interval", "Send interval", _from_status(lambda s: s.interval_s), "s", "duration", None, enabled_by_default=False, icon="mdi:timer-cog-outline", at_once=True),
    # -- commands --------------------------------------------------------------------------
    BridgeEntity(_SENSOR, "last_command", "Last command", _command_summary, icon="mdi:console-line", attributes=_command_attributes),
    # -- controls --------------------------------------------------------------------------
    BridgeEntity(_BUTTON, "retune", "Retune link", cmd="retune", icon="mdi:radio-tower", entity_category=_CONFIG),
    BridgeEntity(_BUTTON, "restart_transmitter", "Restart transmitter", cmd="restart", device_class="restart", entity_category=_CONFIG),
    BridgeEntity(_BUTTON, "request_info", "Request transmitter info", cmd="info", icon="mdi:information-outline"),
    BridgeEntity(_SELECT, "radio_mode", "Radio mode", radio_mode_state, cmd="radio", icon="mdi:tune-variant", entity_category=_CONFIG, at_once=True),
)
# fmt: on

BRIDGE_SENSORS: tuple[BridgeEntity, ...] = tuple(
    r for r in BRIDGE_ENTITIES if r.component is _SENSOR
)
BRIDGE_BUTTONS: tuple[BridgeEntity, ...] = tuple(
    r for r in BRIDGE_ENTITIES if r.component is _BUTTON
)
RADIO_MODE_SELECT: BridgeEntity = next(r for r in BRIDGE_ENTITIES if r.component is _SELECT)
#: Keys of the bridge state whose change is published with the next snapshot (`at_once`).
AT_ONCE_KEYS: frozenset[str] = frozenset(r.key for r in BRIDGE_ENTITIES if r.at_once)
