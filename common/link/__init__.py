"""The link state machines: TxLink (meter closet) and RxLink (home), sans-I/O.

Events go in (telegram ready, frame received, transmission done, time passed), actions come
out (transmit this payload with these settings, apply settings, deliver this telegram, persist
a counter reservation, report a link event). See docs/protocol.md for the wire format, the
state machines and the timing rules.

Modules: `config` (LinkConfig), `events` (actions), `messages` (frame bodies), `commands`
(downlink commands), `fragments` (multi-frame updates), `tuning` (SNR-margin target choice),
`timing` (every timeout as a formula), `pacing` (spacing updates by the budget actually left),
`session` (frame security), `persist` (restart state),
`diagnostics` (counters and snapshots), `tx` (TxLink), `rx` (RxLink).
"""

from p1lora.common.link.commands import Command, CommandCode, ReplyStatus, parse_command
from p1lora.common.link.config import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.diagnostics import LinkDiagnostics
from p1lora.common.link.events import (
    Action,
    CommandReply,
    Configure,
    Deliver,
    LinkEventAction,
    LinkReport,
    PersistCounters,
    PersistState,
    RunCommand,
    StatusReport,
    Transmit,
)
from p1lora.common.link.messages import SerialState, StatusMessage, TxStatus
from p1lora.common.link.persist import RxPersistentState, TxPersistentState
from p1lora.common.link.rx import RxLink
from p1lora.common.link.tx import TxLink

__all__ = [
    "Action",
    "Command",
    "CommandCode",
    "CommandReply",
    "Configure",
    "Deliver",
    "FixedRadio",
    "LinkConfig",
    "LinkDiagnostics",
    "LinkEventAction",
    "LinkReport",
    "PersistCounters",
    "PersistState",
    "RadioMode",
    "ReplyStatus",
    "RunCommand",
    "RxLink",
    "RxPersistentState",
    "SerialState",
    "StatusMessage",
    "StatusReport",
    "Transmit",
    "TxLink",
    "TxPersistentState",
    "TxStatus",
    "parse_command",
]
