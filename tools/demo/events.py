"""The demo's event list: the daemons' log lines, shown as they are, and the demo's own notes.

A log line is only ever shown, never interpreted: its level and logger name (the line format of
`p1lora.common.logging_setup`: `LEVEL logger: message`) decide whether it is shown, and the
message is passed through untouched (less the `tx: ` / `rx: ` its source already says). No
count or state comes from what a message says, so rewording a log line cannot break the demo;
the link's facts come from its link-quality log instead (`p1lora.tools.demo.link_facts`).
"""

from __future__ import annotations

import logging
import re
from collections import deque
from typing import Final

from p1lora.tools.demo.views import LogEvent

__all__ = ["DEFAULT_EVENT_LEVEL", "EVENT_SOURCES", "EventLog", "parse_log_line"]

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

_LOG_LINE: Final = re.compile(r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL) ([\w.]+): (.*)$")
_LEVELS: Final = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}


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


class EventLog:
    """The newest `MAX_EVENTS` events and the count of warnings; not thread-safe (`DemoState`
    holds the lock). Times are seconds after `started` (a monotonic clock reading)."""

    def __init__(self, started: float) -> None:
        self.started = started
        self.events: deque[LogEvent] = deque(maxlen=MAX_EVENTS)
        self.warnings = 0

    def log_line(self, source: str, line: str, now: float) -> LogEvent | None:
        """Show one log line of a daemon if its logger and level say so; the event, if any."""
        parsed = parse_log_line(line)
        if parsed is None:
            return None
        level, logger_name, message = parsed
        if level < _event_level(logger_name):
            return None
        for prefix in (f"{source}: ", f"{source} "):
            if message.startswith(prefix):
                message = message[len(prefix) :]
                break
        return self._add(source, level, message, now)

    def note(self, text: str, now: float, level: int = logging.INFO) -> LogEvent:
        """An event of the demo itself (a restart, a broker choice, a problem)."""
        return self._add("demo", level, text, now)

    def _add(self, source: str, level: int, text: str, now: float) -> LogEvent:
        if level >= logging.WARNING:
            self.warnings += 1
        event = LogEvent(max(0.0, now - self.started), source, level, text)
        self.events.append(event)
        return event
