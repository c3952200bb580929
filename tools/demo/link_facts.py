"""What the link did, read from the daemons' link-quality logs (`--link-log`).

The link logs each of its events as one JSON object per line (the record schema is in
`p1lora.service.link_log`; `p1lora.service.observers.LinkLogObserver` writes the link's
`LinkEventAction`s as ``kind: "event"`` records with the event's fields). The demo counts from
these records, not from the wording of the human log lines:

| role | record `type`          | what the demo takes                                        |
|------|------------------------|------------------------------------------------------------|
| tx   | `session_established`  | a handshake completed                                      |
| tx   | `configure`            | the radio settings (`settings`, `power`, `reason`); one    |
|      |                        | that differs from the run's previous one is an auto-tune   |
|      |                        | step (the transmitter decides; the receiver mirrors it)    |
| rx   | `state`                | the link state (the receiver's, as the bridge shows it)    |

The link logs every change the moment it happens, while the bridge's diagnostics over MQTT
come every 5-10 s (and may carry an older snapshot), so these facts win once there are any.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Final

__all__ = ["LinkFacts"]


class LinkFacts:
    """Handshakes, auto-tune steps, link state and radio settings from link-log records; not
    thread-safe (`DemoState` holds the lock)."""

    def __init__(self) -> None:
        self.handshakes = 0
        self.radio_changes = 0
        self.last_radio: str | None = None
        #: None until a record said something (then the bridge's diagnostics are older news).
        self.state: str | None = None
        self.settings: str | None = None
        self.tx_power: int | None = None
        #: The last (settings, power) the transmitter's current process configured, by role.
        self._configured: dict[str, tuple[object, object]] = {}

    def line(self, source: str, line: str) -> None:
        """One line of `source`'s link log (`tx` or `rx`); anything but a JSON object is
        ignored (a line cut short by a crash, a foreign file)."""
        try:
            record = json.loads(line)
        except ValueError:
            return
        if isinstance(record, dict):
            self.record(source, record)

    def record(self, source: str, record: Mapping[str, Any]) -> None:
        """One decoded link-log record of `source`'s link."""
        if record.get("kind") != "event" or record.get("role") != source:
            return
        handler = _HANDLERS.get((source, str(record.get("type"))))
        if handler is not None:
            handler(self, source, record)

    def process_restarted(self, source: str) -> None:
        """`source`'s daemon starts again: its first configuration is where the new process
        starts, not an auto-tune step (call after reading the old process's last records)."""
        self._configured.pop(source, None)

    def _handshake(self, source: str, record: Mapping[str, Any]) -> None:
        self.handshakes += 1

    def _configure(self, source: str, record: Mapping[str, Any]) -> None:
        settings, power = record.get("settings"), record.get("power")
        previous = self._configured.get(source)
        self._configured[source] = (settings, power)
        if previous is None or previous == (settings, power):
            return
        self.radio_changes += 1
        self.last_radio = f"{settings} {power} dBm ({record.get('reason')})"
        self.settings = None if settings is None else str(settings)
        self.tx_power = power if isinstance(power, int) and not isinstance(power, bool) else None

    def _state(self, source: str, record: Mapping[str, Any]) -> None:
        state = record.get("state")
        if isinstance(state, str):
            self.state = state


_Handler = Callable[[LinkFacts, str, Mapping[str, Any]], None]
#: (role, record type) -> what it tells (the table in the module docstring).
_HANDLERS: Final[dict[tuple[str, str], _Handler]] = {
    ("tx", "session_established"): LinkFacts._handshake,
    ("tx", "configure"): LinkFacts._configure,
    ("rx", "state"): LinkFacts._state,
}
