"""Helpers for the runtime, state store and simulator tests.

- `FakeRadio`: a scripted `Radio` (records configure/send, returns queued events, can refuse)
  for runtime unit tests that need to provoke what the emulator never does.
- `frame_counter`: the full counter of a static-key frame (DISCOVER) from its header.
- `record_nonces`: every (key, nonce) the AEAD is asked to use.
- `window_fraction`: the largest sliding-hour airtime fraction of a frame log, computed here
  independently of `tools.sim.max_window_airtime` (a brute-force cross-check).
- `RecordingSink`: an `RxSink` that keeps everything it is given.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from p1lora.common.airtime import time_on_air_for
from p1lora.common.clock import VirtualClock
from p1lora.common.crypto import FrameCipher
from p1lora.common.link import CommandReply, LinkEventAction, LinkReport, StatusMessage
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.radio import RadioError, RadioEvent, RadioFault, TxDone
from p1lora.receiver.runtime import BaseSink, RxSnapshot
from p1lora.tools.sim import SendRecord

PSK = bytes(range(32))


class FakeRadio:
    """A `Radio` whose behaviour the test scripts (see the module docstring)."""

    def __init__(self, clock: VirtualClock, *, auto_complete: bool = False) -> None:
        self.clock = clock
        #: Finish each transmission after its airtime (a TxDone on the clock), as a chip does.
        self.auto_complete = auto_complete
        self.wakeup = threading.Event()
        self.settings: RadioSettings | None = None
        self.configured: list[RadioSettings] = []
        self.sent: list[tuple[float, bytes]] = []
        self.send_attempts = 0
        self.refuse_send: str | None = None
        self.refuse_configure: str | None = None
        self.on_send: Callable[[bytes], None] | None = None
        self._busy = False
        self._events: list[RadioEvent] = []
        self.closed = False

    def configure(self, settings: RadioSettings) -> None:
        if self.refuse_configure:
            raise RadioError(self.refuse_configure)
        self.settings = settings
        self.configured.append(settings)
        self._busy = False

    def send(self, payload: bytes) -> float:
        self.send_attempts += 1
        if self.refuse_send:
            raise RadioError(self.refuse_send)
        if self._busy:
            raise RadioError("busy")
        assert self.settings is not None
        if self.on_send is not None:
            self.on_send(payload)
        self._busy = True
        self.sent.append((self.clock.now(), bytes(payload)))
        airtime = time_on_air_for(self.settings, len(payload))
        if self.auto_complete:
            count = len(self.sent)
            self.clock.call_later(airtime, lambda: self._complete(count))
        return airtime

    def _complete(self, count: int) -> None:
        if self._busy and len(self.sent) == count:
            self.finish_tx()

    def busy(self) -> bool:
        return self._busy

    def poll(self) -> list[RadioEvent]:
        events, self._events = self._events, []
        self.wakeup.clear()
        return events

    def close(self) -> None:
        self.closed = True

    # -- scripting ----------------------------------------------------------------------------

    def push(self, *events: RadioEvent) -> None:
        self._events.extend(events)
        self.wakeup.set()

    def finish_tx(self) -> None:
        """The frame on air ends now."""
        assert self._busy and self.settings is not None
        self._busy = False
        airtime = time_on_air_for(self.settings, len(self.sent[-1][1]))
        self.push(TxDone(self.clock.now(), airtime))

    def fault(self, *, recovered: bool = True) -> None:
        """The chip was reset: whatever was on air is gone."""
        self._busy = False
        self.push(RadioFault("emulated chip reset", recovered))


def frame_counter(frame: bytes) -> int:
    """Full counter of a static-key frame: low 16 bits at 3..5, high 16 bits at 5..7."""
    return int.from_bytes(frame[5:7], "big") << 16 | int.from_bytes(frame[3:5], "big")


def frame_type_code(frame: bytes) -> int:
    return frame[0] & 0x0F  # bits 3-0 (bit 4 is the resend flag)


def record_nonces(monkeypatch: object) -> list[tuple[bytes, bytes]]:
    """Record (key, nonce) of every encryption (monkeypatches FrameCipher.seal)."""
    used: list[tuple[bytes, bytes]] = []
    original = FrameCipher.seal

    def seal(self: FrameCipher, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        used.append((self._key, nonce))
        return original(self, nonce, plaintext, associated)

    monkeypatch.setattr(FrameCipher, "seal", seal)  # type: ignore[attr-defined]
    return used


def window_fraction(sent: list[SendRecord], window: float = 3600.0) -> float:
    """Brute force: for every frame start s, the airtime of frames overlapping (s - window, s]
    (a frame ending exactly at s - window, up to float rounding, is outside)."""
    best = 0.0
    for frame in sent:
        horizon = frame.start - window + 1e-9
        total = sum(o.airtime for o in sent if o.start <= frame.start and o.end > horizon)
        best = max(best, total)
    return best / window


@dataclass
class RecordingSink(BaseSink):
    """Keeps everything a receiver runtime hands its sinks."""

    telegrams: list[tuple[bytes, float, LinkReport]] = field(default_factory=list)
    statuses: list[StatusMessage] = field(default_factory=list)
    replies: list[CommandReply] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    snapshots: list[RxSnapshot] = field(default_factory=list)

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.telegrams.append((raw, received_at, report))

    def status(self, status: StatusMessage, received_at: float, report: LinkReport) -> None:
        self.statuses.append(status)

    def command_reply(self, reply: CommandReply) -> None:
        self.replies.append(reply)

    def link_event(self, event: LinkEventAction, at: float) -> None:
        self.events.append(event.kind)

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        self.snapshots.append(snapshot)


class BrokenSink(BaseSink):
    """A sink whose every method raises (a crashed output)."""

    calls = 0

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        BrokenSink.calls += 1
        raise RuntimeError("sink is broken")

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        raise RuntimeError("sink is broken")

    def link_event(self, event: LinkEventAction, at: float) -> None:
        raise RuntimeError("sink is broken")
