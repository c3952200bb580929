"""Runtime observers the daemons hang off `TxRuntime`/`RxRuntime`: the link-quality log writer
and the radio health tracker the systemd watchdog consults.

Both only watch: they see every frame, settings change, link event and radio fault the runtime
handles (`service.link_runtime.RuntimeObserver`), on the runtime's thread, and must be quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

from p1lora.common.airtime import time_on_air_for
from p1lora.common.frames import FrameType
from p1lora.common.link import LinkEventAction, Transmit
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.radio import RadioFault
from p1lora.service.link_log import LinkLog
from p1lora.service.link_runtime import RuntimeObserver, frame_type_name

__all__ = ["LinkLogObserver", "RadioHealth"]

#: Frame type -> the name the link-quality log (and `p1-lora linkreport`) uses.
LOG_FRAME_TYPES: Final[dict[str, str]] = {
    "DISCOVER": "discovery",
    "CHALLENGE": "challenge",
    "RESYNC": "resync",
    "DATA": "telegram",
    "FRAGMENT": "fragment",
    "PROBE": "probe",
    "SWITCH": "switch",
    "STATUS": "status",
    "REPLY": "reply",
    "ACK": "ack",
}
#: Frame types whose header carries the counter's high 16 bits too (static-key frames).
_STATIC: Final = frozenset(
    {FrameType.DISCOVER.name, FrameType.CHALLENGE.name, FrameType.RESYNC.name}
)


def _log_type(name: str) -> str:
    return LOG_FRAME_TYPES.get(name, name.lower())


class _CounterTracker:
    """The sender's full 32-bit frame counter from frame headers: static-key frames carry all
    of it, session frames the low 16 bits, which are unwrapped next to the last known value
    (the receiver's own rule, docs/protocol.md 1.4)."""

    def __init__(self) -> None:
        self._last: int | None = None

    def full(self, name: str, payload: bytes) -> int | None:
        if len(payload) < 5:
            return None
        low = int.from_bytes(payload[3:5], "big")
        if name in _STATIC and len(payload) >= 7:
            value = int.from_bytes(payload[5:7], "big") << 16 | low
        elif self._last is None:
            value = low
        else:
            last = self._last
            base = last & ~0xFFFF
            candidates = [
                c
                for c in (base - 0x10000 + low, base + low, base + 0x10000 + low)
                if 0 <= c <= 0xFFFF_FFFF
            ]
            value = min(candidates, key=lambda c: abs(c - last))
        self._last = value
        return value


class LinkLogObserver(RuntimeObserver):
    """Writes every frame, settings change and link event to a `LinkLog` (JSON lines).

    Times in the log are wall-clock (the runtime's are monotonic): the observer runs inside the
    step that handles the event, so "now" on the wall clock is the event's time to within the
    step's duration. `session` marks this daemon run: counters start a new sequence after a
    restart (the jump to the next reserved block is not loss).
    """

    def __init__(self, log: LinkLog, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._wall = wall_clock
        self._session = f"{int(wall_clock())}"
        self._peer = _CounterTracker()
        self._own = _CounterTracker()

    def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
        counter = self._own.full(transmit.frame_type, transmit.payload)
        self._log.sent(
            self._wall(),
            transmit.settings,
            frame_type=_log_type(transmit.frame_type),
            nbytes=len(transmit.payload),
            airtime=airtime_s,
            counter=counter,
            session=self._session,
        )

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        name = frame_type_name(frame.payload)
        extra: dict[str, Any] = {}
        if rejected is None:
            # Only authenticated frames say anything true about the peer's counter.
            extra = {"counter": self._peer.full(name, frame.payload), "session": "peer"}
        self._log.received(
            self._wall(),
            frame,
            frame_type=_log_type(name),
            airtime=time_on_air_for(frame.settings, len(frame.payload)),
            ok=rejected is None,
            reason=rejected,
            **extra,
        )

    def configured(self, now: float, settings: RadioSettings, reason: str) -> None:
        self._log.settings_changed(self._wall(), settings, reason=reason)

    def link_event(self, now: float, event: LinkEventAction) -> None:
        self._log.event(self._wall(), event.kind, **{str(k): v for k, v in event.fields.items()})

    def radio_fault(self, now: float, fault: RadioFault) -> None:
        self._log.event(self._wall(), "radio_fault", reason=fault.reason, recovered=fault.recovered)


class RadioHealth(RuntimeObserver):
    """Is the radio working? A fault it did not recover from starts a clock; any frame sent or
    received, or a recovery, stops it. `problem(now)` reports a radio broken for longer than
    `grace_s` (the driver keeps retrying meanwhile; a restart re-opens SPI and GPIO, which is
    the next thing to try)."""

    def __init__(self, grace_s: float = 300.0) -> None:
        self.grace_s = grace_s
        self.broken_since: float | None = None
        self.reason = ""

    def radio_fault(self, now: float, fault: RadioFault) -> None:
        if fault.recovered:
            self.broken_since = None
            return
        if self.broken_since is None:
            self.broken_since = now
        self.reason = fault.reason

    def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
        self.broken_since = None

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        self.broken_since = None

    def problem(self, now: float) -> str | None:
        if self.broken_since is None or now - self.broken_since < self.grace_s:
            return None
        return f"the radio has not worked for {now - self.broken_since:.0f} s ({self.reason})"
