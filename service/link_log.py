"""The link-quality log: one JSON object per line for every frame and every link event.

Tuning a LoRa link means looking back at what happened: which setting the link ran at, how
strong frames arrived, what was lost or rejected and why. The daemons write that history here,
and `p1-lora linkreport` (`p1lora.receiver.linkreport`) turns it into a summary and a plot.

Record schema (the contract between the daemons and `linkreport`)
-----------------------------------------------------------------
Every record has:

- ``time``: ISO 8601 UTC with milliseconds (``2024-05-01T12:00:00.123Z``), from the wall-clock
  value the caller hands in (the link itself runs on a monotonic clock and never reads a wall
  clock).
- ``kind``: ``"frame"`` or ``"event"``.
- ``type``: the frame type (``"telegram"``, ``"ack"``, ``"discovery"``, ``"probe"`` ...) or the
  event name.

Frame records (`LinkLog.frame`, `LinkLog.sent`, `LinkLog.received`) add:

- ``direction``: ``"rx"`` (heard by this node) or ``"tx"`` (sent by this node).
- ``sf``, ``bw`` (Hz), ``freq`` (Hz), ``tx_power`` (dBm, the sender's power when known: on
  received frames, the power the transmitter's last status report gave, else null).
- ``bytes``: payload length on air; ``airtime``: seconds on air.
- ``rssi`` (dBm), ``snr`` (dB): for received frames, else null.
- ``ok``: true when the frame was accepted; ``reason``: why it was rejected (``"auth"``,
  ``"replay"``, ``"malformed"`` ...), else null.
- Loss accounting (optional, used by `linkreport`):

  - ``counter``: the authenticated frame counter of the sender. On received frames that were
    accepted, gaps between consecutive counters of one sender are frames that never arrived.
  - ``session``: identifies one run of the sender's counter; when it changes, the counter
    sequence starts over and no gap is counted across the change. The daemons write their own
    run on sent frames, and on received frames the peer's handshake (the hex of the random in
    the last authenticated DISCOVER, CHALLENGE or RESYNC heard), so a restarted peer's jump to
    its next counter block is not loss (`p1lora.service.observers.LinkLogObserver`).
  - ``ack_expected``: on sent frames that the peer should acknowledge, true (with ``counter``).
    A repeated frame carries the same counter again.
  - ``acked``: on received acknowledgements, the ``counter`` of the frame they acknowledge
    (absent on an ack that came too late for the frame it answered, or was heard twice).

Event records carry free-form fields. ``type: "settings"`` with ``sf``, ``bw``, ``freq``,
``tx_power`` (and optionally ``reason``) marks a change of radio settings; `linkreport` builds
its settings timeline from these and from the settings seen on frames.

Behaviour
---------
- **Flushed per line, never fsynced.** A line is written and flushed to the kernel at once:
  frames come at most a few per second, a flush is one small `write()` into the page cache
  (microseconds), and a crash or power cut then loses at most what the kernel had not yet
  written back, not a user-space buffer of minutes. No fsync: it would block on the SD card
  and wear it out. Writing happens on the caller's thread; nothing here waits for a device.
- **Rotated by size**: when a line would take the file over `max_bytes`, the file becomes
  ``NAME.1``, older ones shift up to ``NAME.<backups>``, and the oldest is deleted.
- **Never raises into the caller.** A full disk, a read-only file system or a missing directory
  is logged once as a warning; lines are kept in memory (the newest `max_pending`, the rest
  counted as dropped) and the file is retried every `retry_interval` seconds. When it works
  again the kept lines are written first and recovery is logged.
- **Off** when constructed with ``path=None``: every call is a cheap no-op.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import io
import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from p1lora.common.radio_types import RadioSettings, ReceivedFrame

__all__ = ["LinkLog", "LinkLogStats", "format_time"]

logger = logging.getLogger(__name__)


def format_time(wall_time: float) -> str:
    """`wall_time` (seconds since the epoch) as ISO 8601 UTC with milliseconds and a `Z`."""
    stamp = dt.datetime.fromtimestamp(wall_time, tz=dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _clean(value: Any) -> Any:
    """JSON-safe values: NaN/inf become null (JSON has no such numbers), containers recurse."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


@dataclass(frozen=True, slots=True)
class LinkLogStats:
    """What the log did so far (for diagnostics)."""

    written: int
    #: Lines lost because the file could not be written and the memory buffer was full.
    dropped: int
    #: Lines waiting in memory for the file to become writable again.
    pending: int
    rotations: int
    #: Separate periods during which the file could not be written.
    failures: int


class LinkLog:
    """Append-only JSON-lines link log with size rotation (see the module docstring)."""

    def __init__(
        self,
        path: Path | str | None,
        *,
        max_bytes: int = 5_000_000,
        backups: int = 5,
        retry_interval: float = 60.0,
        max_pending: int = 1000,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 1024:
            raise ValueError(f"link log max_bytes {max_bytes} is below 1024")
        if not 0 <= backups <= 1000:
            raise ValueError(f"link log backups {backups} is outside 0..1000")
        if max_pending < 0 or retry_interval < 0:
            raise ValueError("link log max_pending and retry_interval must not be negative")
        self.path = Path(path) if path is not None else None
        self.max_bytes = max_bytes
        self.backups = backups
        self.retry_interval = retry_interval
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._file: io.FileIO | None = None
        self._size = 0
        self._pending: deque[bytes] = deque(maxlen=max_pending)
        self._failing = False
        self._retry_at = 0.0
        self._dropped_before_failure = 0
        self._written = 0
        self._dropped = 0
        self._rotations = 0
        self._failures = 0
        self._close_hooks: list[Callable[[], None]] = []

    @property
    def enabled(self) -> bool:
        return self.path is not None

    def stats(self) -> LinkLogStats:
        with self._lock:
            return LinkLogStats(
                written=self._written,
                dropped=self._dropped,
                pending=len(self._pending),
                rotations=self._rotations,
                failures=self._failures,
            )

    # ------------------------------------------------------------------ record builders

    def frame(  # noqa: PLR0913 - one keyword per column of the frame log line
        self,
        wall_time: float,
        *,
        direction: str,
        frame_type: str,
        sf: int | None,
        bw: int | None,
        freq: int | None,
        tx_power: int | None,
        nbytes: int,
        airtime: float | None,
        rssi: float | None = None,
        snr: float | None = None,
        ok: bool = True,
        reason: str | None = None,
        **extra: Any,
    ) -> None:
        """Log one frame (see the module docstring for the fields and `extra`'s known keys)."""
        if self.path is None:
            return
        if direction not in ("rx", "tx"):
            logger.warning("link log: frame with direction %r not logged", direction)
            return
        stamp = self._stamp(wall_time)
        if stamp is None:
            return
        record: dict[str, Any] = {
            "time": stamp,
            "kind": "frame",
            "direction": direction,
            "type": frame_type,
            "sf": sf,
            "bw": bw,
            "freq": freq,
            "tx_power": tx_power,
            "bytes": nbytes,
            "airtime": None if airtime is None else round(airtime, 6),
            "rssi": rssi,
            "snr": snr,
            "ok": bool(ok),
            "reason": reason,
        }
        for key, value in extra.items():
            record.setdefault(key, value)  # the schema's own fields cannot be overridden
        self._write_record(record)

    def sent(
        self,
        wall_time: float,
        settings: RadioSettings,
        *,
        frame_type: str,
        nbytes: int,
        airtime: float,
        **extra: Any,
    ) -> None:
        """Log a frame this node transmitted with `settings`."""
        self.frame(
            wall_time,
            direction="tx",
            frame_type=frame_type,
            sf=settings.sf,
            bw=settings.bw_hz,
            freq=settings.frequency_hz,
            tx_power=settings.tx_power_dbm,
            nbytes=nbytes,
            airtime=airtime,
            **extra,
        )

    def received(
        self,
        wall_time: float,
        frame: ReceivedFrame,
        *,
        frame_type: str,
        airtime: float | None,
        ok: bool = True,
        reason: str | None = None,
        tx_power: int | None = None,
        **extra: Any,
    ) -> None:
        """Log a frame this node heard; `tx_power` is the sender's, when the frame says it."""
        self.frame(
            wall_time,
            direction="rx",
            frame_type=frame_type,
            sf=frame.settings.sf,
            bw=frame.settings.bw_hz,
            freq=frame.settings.frequency_hz,
            tx_power=tx_power,
            nbytes=len(frame.payload),
            airtime=airtime,
            rssi=frame.rssi_dbm,
            snr=frame.snr_db,
            ok=ok,
            reason=reason,
            **extra,
        )

    def event(self, wall_time: float, name: str, **fields: Any) -> None:
        """Log a link event (handshake step, settings change, budget state ...)."""
        if self.path is None:
            return
        stamp = self._stamp(wall_time)
        if stamp is None:
            return
        record: dict[str, Any] = {"time": stamp, "kind": "event", "type": name}
        for key, value in fields.items():
            record.setdefault(key, value)
        self._write_record(record)

    def settings_changed(
        self, wall_time: float, settings: RadioSettings, *, reason: str | None = None, **extra: Any
    ) -> None:
        """Log that the link now runs at `settings` (the `linkreport` timeline uses this)."""
        self.event(
            wall_time,
            "settings",
            sf=settings.sf,
            bw=settings.bw_hz,
            freq=settings.frequency_hz,
            tx_power=settings.tx_power_dbm,
            reason=reason,
            **extra,
        )

    # ------------------------------------------------------------------ writing

    def _stamp(self, wall_time: float) -> str | None:
        try:
            return format_time(wall_time)
        except (ValueError, OverflowError, OSError, TypeError):
            with self._lock:
                self._dropped += 1
            logger.warning("link log: record with unusable time %r not logged", wall_time)
            return None

    def _write_record(self, record: dict[str, Any]) -> None:
        try:
            text = json.dumps(_clean(record), separators=(",", ":"), default=str, allow_nan=False)
        except (TypeError, ValueError) as exc:
            logger.warning(
                "link log: record of type %r not serialisable: %s", record.get("type"), exc
            )
            return
        self.write_line(text.encode("utf-8") + b"\n")

    def write_line(self, line: bytes) -> None:
        """Append one complete line (ending in a newline); never raises."""
        if self.path is None:
            return
        with self._lock:
            if self._failing and self._monotonic() < self._retry_at:
                self._keep(line)
                return
            try:
                while self._pending:  # only after a failure: oldest first
                    self._append(self._pending[0])
                    self._pending.popleft()
                self._append(line)
            except OSError as exc:
                self._keep(line)
                self._fail(exc)
                return
            if self._failing:
                self._failing = False
                logger.info(
                    "link log %s is writable again (%d lines lost while it was not)",
                    self.path,
                    self._dropped - self._dropped_before_failure,
                )

    def _keep(self, line: bytes) -> None:
        """Hold a line for the next attempt; the oldest goes when the buffer is full."""
        if self._pending.maxlen == 0:
            self._dropped += 1
            return
        if len(self._pending) == self._pending.maxlen:
            self._dropped += 1
        self._pending.append(line)

    def _append(self, line: bytes) -> None:
        if self._file is None:
            self._open()
        assert self._file is not None
        if self._size > 0 and self._size + len(line) > self.max_bytes:
            self._rotate()
            assert self._file is not None
        # Unbuffered: a failure leaves nothing half-written in a user-space buffer that a later
        # close() might still flush, so a kept line is never written twice.
        view = memoryview(line)
        while view:
            count = self._file.write(view)
            if not count:
                raise OSError(errno.EIO, "short write")
            self._size += count
            view = view[count:]
        self._written += 1

    def _open(self) -> None:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = io.FileIO(self.path, "ab")
        self._size = self._file.seek(0, os.SEEK_END)
        if self._size and not self._ends_with_newline():
            # A line cut short by a crash or a full disk: end it, so the next line stays whole.
            self._size += self._file.write(b"\n") or 0

    def _ends_with_newline(self) -> bool:
        assert self.path is not None
        with self.path.open("rb") as existing:
            existing.seek(-1, os.SEEK_END)
            return existing.read(1) == b"\n"

    def _rotate(self) -> None:
        assert self.path is not None
        self._close_file()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            oldest = self.rotated_path(self.backups)
            oldest.unlink(missing_ok=True)
            for index in range(self.backups - 1, 0, -1):
                source = self.rotated_path(index)
                if source.exists():
                    source.rename(self.rotated_path(index + 1))
            if self.path.exists():
                self.path.rename(self.rotated_path(1))
        self._rotations += 1
        self._open()

    def rotated_path(self, index: int) -> Path:
        """`NAME.<index>`: where rotation number `index` (1 = newest) lives."""
        assert self.path is not None
        return self.path.with_name(f"{self.path.name}.{index}")

    def _fail(self, exc: OSError) -> None:
        self._close_file()
        self._retry_at = self._monotonic() + self.retry_interval
        if self._failing:
            logger.debug("link log %s still not writable: %s", self.path, exc)
            return
        self._failing = True
        self._failures += 1
        self._dropped_before_failure = self._dropped
        logger.warning(
            "link log %s cannot be written (%s); keeping up to %d lines in memory and retrying "
            "every %g s",
            self.path,
            exc.strerror or exc,
            self._pending.maxlen or 0,
            self.retry_interval,
        )

    def _close_file(self) -> None:
        if self._file is not None:
            # A failing close loses only what the failed write already counted as kept.
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def add_close_hook(self, hook: Callable[[], None]) -> None:
        """Call `hook` first thing in `close()`: a writer that holds a record back (the
        observer's ACK row waiting for the link's verdict) writes it before the file closes."""
        self._close_hooks.append(hook)

    def close(self) -> None:
        """Write what writers still hold and what is pending, then close the file."""
        for hook in list(self._close_hooks):
            try:
                hook()
            except Exception:  # closing must go on; the hook's bug is logged
                logger.exception("link log: a writer failed to flush before closing")
        with self._lock:
            try:
                while self._pending:
                    self._append(self._pending[0])
                    self._pending.popleft()
            except OSError as exc:
                self._dropped += len(self._pending)
                logger.warning(
                    "link log %s: %d lines could not be written before closing: %s",
                    self.path,
                    len(self._pending),
                    exc.strerror or exc,
                )
                self._pending.clear()
            self._close_file()

    def __enter__(self) -> LinkLog:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
