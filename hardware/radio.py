"""The `Radio` interface every backend provides, and the events it reports.

One non-blocking shape serves the daemons and the simulator alike: a runtime calls `send` and
`configure` when its link says so, and otherwise sleeps on `wakeup` until the radio may have
something new, then drains `poll()`. Nothing here waits, so the same runtime code runs on real
time with a real chip and on a `VirtualClock` with emulated chips.

A backend must provide:

- `wakeup`: a `threading.Event`, set whenever `poll()` may return something new. The consumer
  clears it by calling `poll()` (the backend clears it there, before draining).
- `settings`: the `RadioSettings` applied now, None before the first `configure`.
- `configure(settings)`: apply them (aborting a transmission in progress) and return to
  continuous receive.
- `send(payload) -> float`: start a transmission, return its time on air in seconds. The radio is
  busy until it reports `TxDone`; afterwards it is back in continuous receive by itself. Raises
  `RadioError` while busy, before `configure`, or for payloads outside 1..255 bytes.
- `busy()`: True while transmitting.
- `poll() -> list[RadioEvent]`: what happened since the last poll. Never blocks and never raises
  for a chip problem: those come back as `RadioFault` events.
- `close()`: release the hardware; idempotent.

Optional: Channel Activity Detection (`CadRadio`). `start_cad()` leaves receive for a CAD of
about two symbols (RegOpMode mode 7) and returns at once; a later `poll()` reports
`CadDone(detected)` and the radio is back in continuous receive. CAD transmits nothing and costs
no airtime: it is how a node listens before it talks.

A `RadioFault` with `recovered=True` means the backend reset the chip and re-applied the
settings; a transmission in progress at the time is lost (no `TxDone` follows for it).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from p1lora.common.radio_types import RadioSettings, ReceivedFrame

__all__ = [
    "CadDone",
    "CadRadio",
    "FrameReceived",
    "Radio",
    "RadioCounters",
    "RadioError",
    "RadioEvent",
    "RadioFault",
    "TxDone",
]


class RadioError(RuntimeError):
    """A radio cannot do what was asked: wrong wiring, busy, bad payload, missing driver."""


@dataclass(frozen=True, slots=True)
class TxDone:
    """A transmission finished at `at` (backend clock) after `airtime` seconds on air."""

    at: float
    airtime: float


@dataclass(frozen=True, slots=True)
class FrameReceived:
    """A frame that passed the payload CRC (frames failing it are counted, never reported)."""

    frame: ReceivedFrame


@dataclass(frozen=True, slots=True)
class RadioFault:
    """The chip misbehaved: `reason` says how; `recovered` says whether it works again."""

    reason: str
    recovered: bool


@dataclass(frozen=True, slots=True)
class CadDone:
    """A channel activity detection finished at `at`: `detected` says a LoRa preamble of the
    radio's settings was on the air (CadDetected)."""

    at: float
    detected: bool


RadioEvent = TxDone | FrameReceived | RadioFault | CadDone


@dataclass(slots=True)
class RadioCounters:
    """What a backend counted since it was opened (diagnostics for the link-quality log)."""

    frames_received: int = 0
    crc_errors: int = 0
    no_crc_frames: int = 0
    tx_frames: int = 0
    tx_timeouts: int = 0
    recoveries: int = 0
    spi_errors: int = 0


@runtime_checkable
class Radio(Protocol):
    """A LoRa radio as the runtimes see it (see the module docstring for the contract)."""

    wakeup: threading.Event
    settings: RadioSettings | None

    def configure(self, settings: RadioSettings) -> None:
        """Apply `settings` and return to continuous receive."""

    def send(self, payload: bytes) -> float:
        """Start transmitting `payload`; return its time on air in seconds."""

    def busy(self) -> bool:
        """True while a transmission is in progress."""

    def poll(self) -> list[RadioEvent]:
        """Events since the last poll; never blocks."""

    def close(self) -> None:
        """Release the hardware (idempotent)."""


@runtime_checkable
class CadRadio(Radio, Protocol):
    """A `Radio` that can also listen before it talks (Channel Activity Detection)."""

    def start_cad(self) -> float:
        """Start a CAD with the current settings; return how long it takes (seconds).
        `CadDone` follows in `poll()`. RadioError while transmitting or before `configure`."""
