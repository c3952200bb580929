"""The actions a link returns: what the runtime must do. Links never do I/O themselves.

A runtime feeds a link events (`telegram_ready`, `frame_received`, `tx_done`, `tick`) and
executes the returned actions **in order**:

| action            | side | the runtime ...                                                  |
|-------------------|------|------------------------------------------------------------------|
| `Configure`       | both | calls `radio.configure(settings)` (back to continuous RX)        |
| `PersistCounters` | both | writes the counter reservation durably *before* the next action  |
| `Transmit`        | both | calls `radio.send(payload)` now (the link knows the radio is idle)|
|                   |      | and later reports `tx_done(now, airtime)`                         |
| `Deliver`         | rx   | publishes the byte-exact, verified telegram                       |
| `StatusReport`    | rx   | surfaces the transmitter's status (Home Assistant diagnostics)   |
| `CommandReply`    | rx   | surfaces the transmitter's reply to a queued command              |
| `RunCommand`      | tx   | does what only the runtime can: `restart`, `log_level`           |
| `PersistState`    | both | stores last known good settings / mode (restart resumes there)   |
| `LinkEventAction` | both | logs the event (link-quality log, diagnostics); purely informative|
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypeAlias

from p1lora.common.counters import CounterState
from p1lora.common.link.commands import Command, ReplyStatus
from p1lora.common.link.messages import StatusMessage
from p1lora.common.link.persist import RxPersistentState, TxPersistentState
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "Action",
    "CommandReply",
    "Configure",
    "Deliver",
    "LinkEvent",
    "LinkEventAction",
    "LinkReport",
    "PersistCounters",
    "PersistState",
    "RunCommand",
    "StatusReport",
    "Transmit",
]


class LinkEvent(StrEnum):
    """`LinkEventAction.kind`: what happened. A `StrEnum` because the kinds reach the
    link-quality log, the bridge's MQTT state and the simulator's JSON as these exact words."""

    ACK_SUPPRESSED = "ack_suppressed"
    CHALLENGE_SUPPRESSED = "challenge_suppressed"
    COMMAND = "command"
    COMMAND_QUEUED = "command_queued"
    COMMAND_REPLY = "command_reply"
    CONFIGURE = "configure"
    DISCOVER = "discover"
    DISCOVER_ANSWERED = "discover_answered"
    ENCODE_FAILED = "encode_failed"
    FRAGMENTED = "fragmented"
    FRAGMENTS_SUPERSEDED = "fragments_superseded"
    FRAME_REJECTED = "frame_rejected"
    INTERFERENCE = "interference"
    LATE_ACK = "late_ack"
    LINK_LOST = "link_lost"
    POWER = "power"
    RESYNC = "resync"
    RESYNC_SENT = "resync_sent"
    SESSION_ESTABLISHED = "session_established"
    STATE = "state"
    STATUS = "status"
    SWITCH_COMMITTED = "switch_committed"
    SWITCH_DEFERRED = "switch_deferred"
    SWITCH_FAILED = "switch_failed"
    SWITCH_REFUSED = "switch_refused"
    SWITCH_REQUESTED = "switch_requested"
    SWITCH_REVERTED = "switch_reverted"
    SWITCH_START = "switch_start"
    TX_DONE_MISSING = "tx_done_missing"
    UPDATE_REJECTED = "update_rejected"


@dataclass(frozen=True, slots=True)
class LinkReport:
    """How a frame was heard by this side."""

    rssi_dbm: float
    snr_db: float
    settings: RadioSettings
    frame_bytes: int


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `payload` now with `settings` (already configured); `airtime_s` as computed."""

    payload: bytes
    settings: RadioSettings
    frame_type: str
    airtime_s: float
    #: The link timed this frame to its own slot (a crowded transmitter, `slots`): listen
    #: before talk listens at once instead of after a random first wait, which would move
    #: it off the place it keeps.
    slotted: bool = False


@dataclass(frozen=True, slots=True)
class Configure:
    """Apply these radio settings (and listen)."""

    settings: RadioSettings
    reason: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """A telegram rebuilt byte for byte and verified end to end (receiver)."""

    telegram: bytes
    received_at: float
    report: LinkReport


@dataclass(frozen=True, slots=True)
class PersistCounters:
    """Store this counter reservation durably before executing the following actions."""

    state: CounterState


@dataclass(frozen=True, slots=True)
class PersistState:
    """Store the link's restart state (last known good settings, radio mode, interval)."""

    state: TxPersistentState | RxPersistentState


@dataclass(frozen=True, slots=True)
class LinkEventAction:
    """Something worth a log line or a diagnostics update: handshake steps, switches,
    fallbacks, rejections with their reason, status reports. `fields` is JSON-friendly."""

    kind: LinkEvent
    fields: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CommandReply:
    """The transmitter answered (or could not answer) a command queued on the receiver."""

    command_id: int
    command: Command
    status: ReplyStatus
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class RunCommand:
    """Transmitter: something only the runtime can do (`restart`, `log_level` with argument)."""

    name: str
    argument: str | None = None


@dataclass(frozen=True, slots=True)
class StatusReport:
    """Receiver: the transmitter's periodic status report."""

    status: StatusMessage
    received_at: float
    report: LinkReport


Action: TypeAlias = (
    Transmit
    | Configure
    | Deliver
    | PersistCounters
    | PersistState
    | LinkEventAction
    | CommandReply
    | RunCommand
    | StatusReport
)
