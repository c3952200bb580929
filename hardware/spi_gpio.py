"""The three tiny hardware interfaces the SX127x driver needs: an SPI device and two pin kinds.

Keeping them this small is what lets the test suite run the real driver: the emulator implements
them in a few lines, and so do the spidev/RPi.GPIO adapters in `pi_adapters`. The driver never
sees a bus number or a BCM pin; it sees "transfer these bytes", "drive RESET", "tell me when DIO0
rises".
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

__all__ = ["DigitalInput", "DigitalOutput", "EdgeCallback", "SpiDevice"]

EdgeCallback = Callable[[], None]


class SpiDevice(Protocol):
    """A full-duplex SPI device with its chip select handled for each transfer."""

    def transfer(self, data: bytes) -> bytes:
        """Clock `data` out with chip select asserted throughout; return the bytes clocked in.

        For the SX127x the first byte is the address (bit 7 set for a write) and the rest are
        data; the result has the same length, its first byte meaningless.
        """

    def close(self) -> None:
        """Release the device (idempotent)."""


class DigitalOutput(Protocol):
    """A pin the driver drives (the SX127x RESET line)."""

    def write(self, high: bool) -> None:
        """Drive the pin high (True) or low (False)."""

    def close(self) -> None:
        """Release the pin (idempotent)."""


class DigitalInput(Protocol):
    """A pin the driver reads and watches for rising edges (DIO0)."""

    def read(self) -> bool:
        """The current level."""

    def watch_rising(self, callback: EdgeCallback | None) -> None:
        """Call `callback` on each rising edge (possibly on another thread); None stops it."""

    def close(self) -> None:
        """Stop watching and release the pin (idempotent)."""
