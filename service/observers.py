"""Runtime observers the daemons hang off `TxRuntime`/`RxRuntime`: the link-quality log writer
and the radio health tracker the systemd watchdog consults.

Both only watch: they see every frame, settings change, link event and radio fault the runtime
handles (`service.link_runtime.RuntimeObserver`), on the runtime's thread, and must be quick.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from p1lora.common.airtime import time_on_air_for
from p1lora.common.crypto import RANDOM_SIZE
from p1lora.common.frames import STATIC_HEADER_SIZE, FrameType
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
    "BATCH": "telegrams",
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
#: Frames the transmitter sends and the receiver answers with an ACK (every uplink session
#: frame: the transmitter waits for each one's ACK before sending the next).
_ACK_EXPECTED: Final = frozenset(
    {
        FrameType.DATA.name,
        FrameType.BATCH.name,
        FrameType.FRAGMENT.name,
        FrameType.PROBE.name,
        FrameType.SWITCH.name,
        FrameType.STATUS.name,
        FrameType.REPLY.name,
    }
)
#: The random of a static-key frame: the last field of its header (`common.frames`).
_RANDOM = slice(STATIC_HEADER_SIZE - RANDOM_SIZE, STATIC_HEADER_SIZE)
#: The transmitter's link event for an ACK that did not answer its outstanding frame.
_LATE_ACK: Final = "late_ack"


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


@dataclass
class _HeldAck:
    """An accepted ACK whose row waits for the link's verdict (see `LinkLogObserver`)."""

    wall: float
    frame: ReceivedFrame
    fields: dict[str, Any]
    acked: int | None


class LinkLogObserver(RuntimeObserver):
    """Writes every frame, settings change and link event to a `LinkLog` (JSON lines).

    Times in the log are wall-clock (the runtime's are monotonic): the observer runs inside the
    step that handles the event, so "now" on the wall clock is the event's time to within the
    step's duration.

    What `p1-lora linkreport` needs to count loss honestly (`p1lora.service.link_log`):

    - ``session`` on sent frames marks this daemon run; on received frames it names the peer's
      current handshake: the hex of the random in the last authenticated static-key frame
      heard (DISCOVER on the receiver; CHALLENGE or RESYNC on the transmitter). A restarted
      peer skips ahead to its next reserved counter block and handshakes again, so a new
      session starts a new counter sequence and that jump is not counted as loss. Before the
      first handshake heard it is ``peer@<this run>``.
    - ``ack_expected`` on every uplink session frame the transmitter sends (each one waits for
      its ACK), and ``acked`` on an accepted ACK: the counter of the frame it answered. The
      observer cannot read the encrypted ACK; it knows the transmitter waits for one frame at a
      time, so an ACK answers the last frame sent with ``ack_expected``, unless the link says
      `late_ack` for it (it came after the wait ended). That verdict arrives right after the
      frame callback, so an accepted ACK's row is held until the next callback (or the log's
      close) and written with or without ``acked`` then.
    - ``tx_power`` on received frames: the sender's power as its last status report said
      (forgotten at a new handshake: a restarted transmitter may start at another power).
    """

    def __init__(self, log: LinkLog, *, wall_clock: Callable[[], float] = time.time) -> None:
        self._log = log
        self._wall = wall_clock
        self._session = f"{int(wall_clock())}"
        self._peer_session = f"peer@{self._session}"
        self._peer_power: int | None = None
        self._awaiting_ack: int | None = None
        self._held: _HeldAck | None = None
        self._last_ack = b""
        self._peer = _CounterTracker()
        self._own = _CounterTracker()
        log.add_close_hook(self.flush)

    def flush(self) -> None:
        """Write a held ACK row now (called before every other record and when the log
        closes, so nothing is lost and the order of the log is the order of events)."""
        held, self._held = self._held, None
        if held is None:
            return
        fields = held.fields
        if held.acked is not None:
            fields = {**fields, "acked": held.acked}
        self._write_received(held.wall, held.frame, None, fields)

    def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
        self.flush()
        counter = self._own.full(transmit.frame_type, transmit.payload)
        extra: dict[str, Any] = {"counter": counter, "session": self._session}
        if transmit.frame_type in _ACK_EXPECTED and counter is not None:
            extra["ack_expected"] = True
            self._awaiting_ack = counter
        self._log.sent(
            self._wall(),
            transmit.settings,
            frame_type=_log_type(transmit.frame_type),
            nbytes=len(transmit.payload),
            airtime=airtime_s,
            **extra,
        )

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        self.flush()
        name = frame_type_name(frame.payload)
        wall = self._wall()
        if rejected is not None:
            self._write_received(wall, frame, rejected, {})
            return
        # Only authenticated frames say anything true about the peer's counter and session.
        if name in _STATIC and len(frame.payload) >= _RANDOM.stop:
            self._peer_session = frame.payload[_RANDOM].hex()
            self._peer_power = None
        fields: dict[str, Any] = {
            "counter": self._peer.full(name, frame.payload),
            "session": self._peer_session,
        }
        if name == FrameType.ACK.name:
            # The same ACK heard twice (the link ignores the repeat) answers nothing new.
            repeat = frame.payload == self._last_ack
            self._last_ack = frame.payload
            self._held = _HeldAck(wall, frame, fields, None if repeat else self._awaiting_ack)
            if not repeat:
                self._awaiting_ack = None
            return
        self._write_received(wall, frame, None, fields)

    def _write_received(
        self, wall: float, frame: ReceivedFrame, rejected: str | None, fields: dict[str, Any]
    ) -> None:
        name = frame_type_name(frame.payload)
        self._log.received(
            wall,
            frame,
            frame_type=_log_type(name),
            airtime=time_on_air_for(frame.settings, len(frame.payload)),
            ok=rejected is None,
            reason=rejected,
            tx_power=self._peer_power,
            **fields,
        )

    def configured(self, now: float, settings: RadioSettings, reason: str) -> None:
        self.flush()
        self._log.settings_changed(self._wall(), settings, reason=reason)

    def link_event(self, now: float, event: LinkEventAction) -> None:
        held = self._held
        if event.kind == _LATE_ACK and held is not None and held.acked is not None:
            # The ACK answered a frame the link had given up on, not the one still waiting.
            self._awaiting_ack, held.acked = held.acked, None
        self.flush()
        if event.kind == "status":
            power = event.fields.get("tx_power_dbm")
            if isinstance(power, int) and not isinstance(power, bool):
                self._peer_power = power
        self._log.event(self._wall(), event.kind, **{str(k): v for k, v in event.fields.items()})

    def radio_fault(self, now: float, fault: RadioFault) -> None:
        self.flush()
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
