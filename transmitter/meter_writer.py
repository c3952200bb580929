"""Put a telegram stream on a line the way a meter does: on its interval, at its baud rate.

A reader's timing behaviour (when a telegram is complete, how chunks arrive, what a 9600-baud
DSMR 2.2 line feels like) only shows if the bytes arrive at the pace of a real UART, so the
writer meters them out in small chunks at `baudrate / bits per character`. `speed` compresses
time for demos and tests: at speed 10 a DSMR 4 meter sends every second and each byte takes a
tenth of its real time.

Targets are small: `PtyPort` is a new pseudo-terminal whose slave side looks like a P1 cable's
serial port (raw mode, so CR LF survive), `FdSink` is any file descriptor such as stdout, and
`StableLink` keeps a fixed path (like /dev/serial/by-id/...) pointing at the current pty.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import math
import os
import struct
import termios
import threading
import tty
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Protocol

from p1lora.common.clock import Clock
from p1lora.transmitter.meter_profiles import SerialSettings

__all__ = ["FdSink", "LineSink", "MeterWriter", "PtyPort", "StableLink", "WriterStats"]

logger = logging.getLogger(__name__)


class LineSink(Protocol):
    """Where the writer puts bytes. `write` may accept fewer bytes than offered (drop)."""

    def write(self, data: bytes) -> int:
        """Send `data`; return how many bytes went out (the rest is dropped)."""

    def telegram_boundary(self, now: float) -> None:
        """Called before each telegram; a chance to drop stale data nobody read."""


@dataclass(slots=True)
class WriterStats:
    telegrams: int = 0
    bytes_written: int = 0
    bytes_dropped: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


class FdSink:
    """Blocking writes to a file descriptor (stdout, a pipe, a file)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        return len(data)

    def telegram_boundary(self, now: float) -> None:
        """Nothing goes stale in a pipe: the consumer sets the pace."""


class PtyPort:
    """A fresh pseudo-terminal standing in for the meter end of a P1 cable.

    The slave side (`path`, e.g. /dev/pts/7) is what a reader opens. It is put in raw mode at
    once so that readers which do not configure the tty (`cat`, a plain `open()`) see CR LF
    unchanged. This process keeps a slave descriptor open as well: otherwise the first reader
    that closes would hang the line up, and the meter would not survive a reader restarting.

    A meter does not wait for its reader, so the master is non-blocking: a full buffer drops
    bytes instead of stalling the meter, and data nobody consumed for `stale_after` seconds is
    flushed so that a reader connecting later starts on fresh telegrams, as on a real cable.
    """

    def __init__(self, stale_after: float = 2.0) -> None:
        self.master, self.slave = os.openpty()
        try:
            tty.setraw(self.slave)
            os.set_blocking(self.master, False)
            self.path = os.ttyname(self.slave)
        except OSError:
            self.close()
            raise
        self.stale_after = stale_after
        self.flushes = 0
        # Unread bytes there would be if nobody read since the last boundary.
        self._expected = 0
        # Since when unread data has waited without anyone reading (None: nothing waits).
        self._stale_since: float | None = None
        self._closed = False

    def pending(self) -> int:
        """Bytes written but not yet read by anyone on the slave side."""
        buf = fcntl.ioctl(self.slave, termios.FIONREAD, b"\0\0\0\0")
        count: int = struct.unpack("i", buf)[0]
        return count

    def write(self, data: bytes) -> int:
        try:
            written = os.write(self.master, data)
        except BlockingIOError:
            # Nobody is reading and the line buffer is full: drop the stale backlog, retry once.
            self._flush()
            try:
                written = os.write(self.master, data)
            except BlockingIOError:
                return 0
        self._expected += written
        return written

    def telegram_boundary(self, now: float) -> None:
        pending = self.pending()
        if pending == 0:
            self._stale_since = None
        elif pending < self._expected:
            self._stale_since = now  # a reader took something: it is alive
        elif self._stale_since is None:
            self._stale_since = now
        elif now - self._stale_since >= self.stale_after:
            self._flush()
            pending = 0
        self._expected = pending

    def drain(self, clock: Clock, stop: threading.Event, timeout: float = 2.0) -> bool:
        """Wait until a reader has taken everything written (or `timeout`); True if it did."""
        deadline = clock.now() + timeout
        while self.pending() > 0:
            if stop.is_set() or clock.now() >= deadline:
                return False
            clock.wait(stop, 0.02)
        return True

    def _flush(self) -> None:
        with contextlib.suppress(OSError):
            termios.tcflush(self.slave, termios.TCIFLUSH)
        self.flushes += 1
        self._expected = 0
        self._stale_since = None

    def close(self) -> None:
        """Close both ends: a reader sees the cable unplugged."""
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for fd in (self.master, self.slave):
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> PtyPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StableLink:
    """A symlink at a fixed path that follows the current pty (like /dev/serial/by-id/...).

    Re-pointing is atomic (a temporary link renamed over the old one), so a reader polling the
    path never sees it missing while the target changes. Only symlinks are ever replaced or
    removed: a regular file at the path is an error, not something to overwrite.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.target: str | None = None
        if self.path.exists() and not self.path.is_symlink():
            raise FileExistsError(
                f"{self.path} exists and is not a symlink; refusing to replace it"
            )
        if not self.path.parent.is_dir():
            raise FileNotFoundError(f"directory {self.path.parent} does not exist")

    def point_to(self, target: str) -> None:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        temporary.symlink_to(target)
        temporary.replace(self.path)
        self.target = target

    def remove(self) -> None:
        """Remove the link if it still points where we set it (someone may have re-pointed it)."""
        if self.target is None:
            return
        try:
            if self.path.is_symlink() and str(self.path.readlink()) == self.target:
                self.path.unlink()
        except OSError as exc:
            logger.warning("could not remove the link %s: %s", self.path, exc)
        self.target = None


class MeterWriter:
    """Writes (t, bytes) events at `start + t / speed`, paced at the serial line's byte rate.

    The line is modelled as a UART: a telegram cannot leave faster than its baud rate allows,
    and a telegram due while the previous one is still on the wire waits for it. `speed` may
    be `math.inf` to disable all pacing (writing to a pipe as fast as it is read).
    """

    def __init__(
        self,
        sink: LineSink,
        serial: SerialSettings,
        clock: Clock,
        *,
        speed: float = 1.0,
        chunk_seconds: float = 0.005,
    ) -> None:
        if not speed > 0:
            raise ValueError(f"speed must be positive, got {speed!r}")
        self.sink = sink
        self.serial = serial
        self.clock = clock
        self.speed = speed
        self.stats = WriterStats()
        self._byte_seconds = serial.char_seconds / speed
        self._chunk = (
            1 << 30 if math.isinf(speed) else max(16, int(chunk_seconds / self._byte_seconds))
        )

    def run(
        self,
        events: Iterable[tuple[float, bytes]],
        stop: threading.Event,
        count: int | None = None,
    ) -> WriterStats:
        """Write events until they run out, `count` telegrams were written, or `stop` is set."""
        clock, stats = self.clock, self.stats
        anchor: float | None = None
        line_free = -math.inf
        for t, data in events:
            if stop.is_set():
                break
            if not data:
                continue
            if anchor is None:
                anchor = clock.now() - (0.0 if math.isinf(self.speed) else t / self.speed)
            due = anchor + (0.0 if math.isinf(self.speed) else t / self.speed)
            if not self._wait_until(due, stop):
                break
            self.sink.telegram_boundary(clock.now())
            line_free = max(line_free, due)
            for offset in range(0, len(data), self._chunk):
                if not self._wait_until(line_free, stop):
                    return stats
                chunk = data[offset : offset + self._chunk]
                written = self.sink.write(chunk)
                stats.bytes_written += written
                if written < len(chunk):
                    if stats.bytes_dropped == 0:
                        logger.info("nobody is reading the line; dropping what does not fit")
                    stats.bytes_dropped += len(chunk) - written
                line_free += len(chunk) * self._byte_seconds
            stats.telegrams += 1
            if count is not None and stats.telegrams >= count:
                break
        return stats

    def _wait_until(self, when: float, stop: threading.Event) -> bool:
        """Wait for the clock to reach `when`; False if `stop` was set meanwhile."""
        remaining = when - self.clock.now()
        if remaining > 0:
            return not self.clock.wait(stop, remaining)
        return not stop.is_set()
