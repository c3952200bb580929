"""The link state machines: TxLink (meter closet) and RxLink (home), sans-I/O.

Events go in (telegram ready, frame received, transmission done, time passed), actions come
out (transmit this payload with these settings, apply settings, deliver this telegram, persist
a counter reservation, report a link event). See docs/protocol.md for the wire format, the
state machines and the timing rules.

Modules: `config` (LinkConfig), `events` (actions and event kinds), `states` (both machines'
states and transition tables), `messages` (frame bodies), `commands` (downlink commands),
`fragments` (multi-frame updates), `tuning` (SNR-margin target choice), `timing` (every timeout
as a formula), `pacing` (spacing updates by the budget actually left), `session` (frame
security), `persist` (restart state), `diagnostics` (counters and snapshots), `base` (what both
sides share), `rx` (RxLink, with its command queue in `rx_commands`), and `tx` (TxLink), which coordinates one object per concern:
`handshake`, `switching` (on the pure `switch_plan`), `autotune`, `delivery`, `reports` and
`command_exec`, with their shared bookkeeping in `tx_types`.
"""

from p1lora.common.link.commands import Command, CommandCode, ReplyStatus, parse_command
from p1lora.common.link.config import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.diagnostics import LinkDiagnostics
from p1lora.common.link.events import (
    Action,
    CommandReply,
    Configure,
    Deliver,
    LinkEvent,
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
from p1lora.common.link.states import RxState, TxState
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
    "LinkEvent",
    "LinkEventAction",
    "LinkReport",
    "PersistCounters",
    "PersistState",
    "RadioMode",
    "ReplyStatus",
    "RunCommand",
    "RxLink",
    "RxPersistentState",
    "RxState",
    "SerialState",
    "StatusMessage",
    "StatusReport",
    "Transmit",
    "TxLink",
    "TxPersistentState",
    "TxState",
    "TxStatus",
    "parse_command",
]
