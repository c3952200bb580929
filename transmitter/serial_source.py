"""The P1 serial source: telegrams from the meter's port, surviving everything a cable does.

A USB P1 cable in a meter closet gets unplugged, knocked loose and replugged; the port path
vanishes and comes back; a freshly opened port starts mid-telegram; a port opened with the
wrong settings yields noise. This source owns the port on one reader thread and turns all of
that into a steady stream of good telegrams for `on_telegram(raw, received_at)`, plus counters
and a state a daemon can report:

* Opening fails or a read raises: close, log once, reopen with exponential backoff (doubling
  from `backoff_initial` up to `backoff_max`), forever, until `stop()`. The backoff restarts
  after a good telegram, so a flapping port cannot spin.
* Settings per DSMR generation come from `meter_profiles.SERIAL_SETTINGS` (2.2/3: 9600 7E1,
  4: 115200 7E1, 5: 115200 8N1). `mode="auto"` tries them in turn and keeps the one under which
  a telegram passes its CRC: under wrong settings a UART yields bytes with the high bit set
  (7E1 data read as 8N1) or plain noise (wrong baud rate), so "a valid telegram arrived" is the
  proof, and high bits or a pile of garbage are the quick disproof. The detected generation
  is tried first after a reconnect; if it stops producing telegrams while bytes keep coming,
  detection runs again (a meter swap).
* Every state change is logged once: "waiting for port", "detecting settings", "connected",
  "no data" (port open, no good telegram for `no_data_after` seconds). Retries in between log
  at debug level only, so an unplugged cable does not flood the journal.
* 7E1 ports (DSMR 2.2-4) are opened with the UART's input parity check on
  (`enable_parity_check`): a byte with a parity error reads as NUL, so a DSMR 2.2/3 telegram,
  which has no CRC, is dropped as malformed instead of passing on a flipped digit.
* Bad telegrams (CRC failures, telegrams cut off by a new header, malformed ends) are dropped
  and counted; once the settings are known the first is logged at once and later ones in a
  summary at most every `BAD_TELEGRAM_LOG_INTERVAL_S`, so a noisy line is visible in the journal
  without flooding it (while detecting settings, garbage is expected and not reported).
* Nothing raises out of the reading loop: a failing callback is logged and counted, an
  unexpected error is treated like a lost port.

The clock is injected (`p1lora.hardware.realtime.SystemClock` in the daemon) and so is the
serial factory, so tests can put a simulated UART behind a pty (a pty ignores baud rates) and
see detection work.
"""

from __future__ import annotations

import contextlib
import enum
import logging
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass
from errno import EINVAL
from typing import Protocol, TypeVar

import serial

from p1lora.common.backoff import Backoff
from p1lora.common.clock import Clock
from p1lora.common.framing import DEFAULT_MAX_TELEGRAM_BYTES, FramedTelegram, TelegramFramer
from p1lora.transmitter.meter_profiles import DSMR_GENERATIONS, SERIAL_SETTINGS, SerialSettings

__all__ = [
    "MODES",
    "SerialFactory",
    "SerialPort",
    "SerialSource",
    "SourceState",
    "SourceStats",
    "enable_parity_check",
    "open_serial",
]

logger = logging.getLogger(__name__)

#: Valid `mode` values: a DSMR generation key of SERIAL_SETTINGS, or "auto".
MODES: tuple[str, ...] = ("auto", *SERIAL_SETTINGS)

_T = TypeVar("_T")

#: A DSMR telegram is ASCII; this many high-bit bytes under one setting rule it out.
_HIGH_BIT_LIMIT = 64
#: Dropped bad telegrams are summarised in the log at most this often (seconds).
BAD_TELEGRAM_LOG_INTERVAL_S = 60.0


class SourceState(enum.StrEnum):
    STOPPED = "stopped"
    WAITING = "waiting for port"
    DETECTING = "detecting settings"
    CONNECTED = "connected"
    NO_DATA = "no data"


class SerialPort(Protocol):
    """The part of `serial.Serial` the source uses (what a test double must provide)."""

    @property
    def in_waiting(self) -> int:
        """Bytes ready to read without blocking."""

    def read(self, size: int = 1) -> bytes:
        """Up to `size` bytes; returns early (possibly empty) after the port's timeout."""

    def close(self) -> None:
        """Release the port."""


#: Opens `path` with `settings` and a read timeout in seconds; raises OSError/SerialException.
SerialFactory = Callable[[str, SerialSettings, float], SerialPort]


def open_serial(path: str, settings: SerialSettings, timeout: float) -> SerialPort:
    """Open a real port with pyserial; exclusive, so a second reader gets a clear error.

    On ports with a parity bit (7E1: DSMR 2.2-4) the UART is told to check it
    (`enable_parity_check`). The port must not be reconfigured afterwards: pyserial clears
    INPCK whenever it applies settings.
    """
    port = serial.Serial(
        port=path,
        baudrate=settings.baudrate,
        bytesize=settings.bytesize,
        parity=settings.parity,
        stopbits=settings.stopbits,
        timeout=timeout,
        exclusive=True,
    )
    if settings.parity != "N":
        enable_parity_check(port.fileno(), path)
    return port


def enable_parity_check(fd: int, path: str = "") -> bool:
    """Make the tty check input parity: a byte with a parity error then reads as NUL.

    pyserial opens 7E1 ports with INPCK off, so the kernel strips the parity bit unchecked and
    a flipped bit reaches the framer as a plausible character. That is harmless for DSMR 4
    (the CRC catches it) but DSMR 2.2/3 telegrams have no CRC: a `0` turned into `8` in an
    energy register would be sent on as a real reading. With INPCK on, IGNPAR off (do not drop
    the byte silently: the telegram would just be shorter) and PARMRK off (no escape sequences
    in the stream), the kernel delivers a bad byte as NUL, which the framer rejects in a
    telegram without CRC (`PROBLEM_NON_ASCII`). Returns whether the flags were set; a driver
    that refuses them is logged and the port is used as it is.
    """
    try:
        attributes = termios.tcgetattr(fd)
        attributes[0] = (attributes[0] | termios.INPCK) & ~(termios.IGNPAR | termios.PARMRK)
        termios.tcsetattr(fd, termios.TCSANOW, attributes)
    except (termios.error, OSError) as exc:
        logger.warning(
            "P1 port %s: cannot enable the UART's parity check (%s); telegrams without a CRC "
            "then rely on the plausibility check alone",
            path or fd,
            _reason(exc),
        )
        return False
    return True


@dataclass(frozen=True, slots=True)
class SourceStats:
    """A snapshot for status reports and diagnostics."""

    state: str
    port: str
    #: DSMR generation in use or detected ('5', '4', '2.2'...), None while unknown.
    generation: str | None
    settings: str | None
    telegrams_ok: int
    crc_errors: int
    framing_errors: int
    bytes_read: int
    bytes_discarded: int
    reconnects: int
    open_failures: int
    callback_errors: int
    seconds_since_last_good: float | None


class _PortLostError(Exception):
    """The port failed while reading (unplugged cable, I/O error)."""


class SerialSource:
    """Reads P1 telegrams from `port` on a background thread; see the module docstring.

    `on_telegram(raw, received_at)` runs on the reader thread for every telegram that passed
    its CRC (or has none, DSMR 2.2/3); `received_at` is `clock.now()` when its last byte
    arrived. Keep the callback short (queue the telegram, set an event). `on_bad_telegram`,
    if given, receives telegrams that failed their CRC (with `problem` set).
    """

    def __init__(  # noqa: PLR0913 - port settings after `*`, all keyword-only
        self,
        port: str,
        on_telegram: Callable[[bytes, float], None],
        clock: Clock,
        *,
        mode: str = "auto",
        serial_factory: SerialFactory = open_serial,
        on_bad_telegram: Callable[[FramedTelegram, float], None] | None = None,
        read_timeout: float = 0.2,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        no_data_after: float = 30.0,
        detect_seconds: float = 25.0,
        detect_bytes: int = 4096,
        max_telegram_bytes: int = DEFAULT_MAX_TELEGRAM_BYTES,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"serial mode {mode!r} is not one of {', '.join(MODES)}")
        if not 0 < backoff_initial <= backoff_max:
            raise ValueError("backoff must satisfy 0 < backoff_initial <= backoff_max")
        if not read_timeout > 0 or not no_data_after > 0 or not detect_seconds > 0:
            raise ValueError("read_timeout, no_data_after and detect_seconds must be positive")
        self.port = port
        self.mode = mode
        self._on_telegram = on_telegram
        self._on_bad = on_bad_telegram
        self._clock = clock
        self._factory = serial_factory
        self._read_timeout = read_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._no_data_after = no_data_after
        self._detect_seconds = detect_seconds
        self._detect_bytes = detect_bytes
        self._framer = TelegramFramer(max_telegram_bytes)

        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._open_port: SerialPort | None = None
        self._state = SourceState.STOPPED
        self._generation: str | None = None if mode == "auto" else mode
        self._candidate = 0
        self._was_connected = False
        self._last_good: float | None = None
        self._good_since_backoff = False
        self._bytes_read = 0
        self._reconnects = 0
        self._open_failures = 0
        self._callback_errors = 0
        self._last_callback_error = ""
        #: Bad telegrams (CRC failures, framing errors) already logged, and when the next
        #: summary may be logged (None: none logged yet).
        self._bad_logged = (0, 0)
        self._bad_log_at: float | None = None

    # -- control -----------------------------------------------------------------------------

    def start(self) -> None:
        """Start the reader thread (once)."""
        if self._thread is not None:
            raise RuntimeError("the serial source was already started")
        self._thread = threading.Thread(target=self._run, name="p1-serial-source", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop reading, close the port and join the thread (within about `read_timeout`)."""
        self._stop.set()
        with self._lock:
            port = self._open_port
        cancel = getattr(port, "cancel_read", None)
        if callable(cancel):
            with contextlib.suppress(Exception):
                cancel()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                logger.warning("P1 reader thread did not stop within %.1f s", timeout)

    def __enter__(self) -> SerialSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def state(self) -> SourceState:
        return self._state

    @property
    def generation(self) -> str | None:
        """DSMR generation whose settings are in use (detected in auto mode), or None."""
        return self._generation

    def stats(self, now: float | None = None) -> SourceStats:
        """Counters and state; `seconds_since_last_good` is measured against `now`."""
        now = self._clock.now() if now is None else now
        with self._lock:
            framer = self._framer.stats
            generation = self._generation
            return SourceStats(
                state=str(self._state),
                port=self.port,
                generation=generation,
                settings=SERIAL_SETTINGS[generation].label if generation else None,
                telegrams_ok=framer.telegrams_ok,
                crc_errors=framer.crc_errors,
                framing_errors=framer.framing_errors,
                bytes_read=self._bytes_read,
                bytes_discarded=framer.bytes_discarded,
                reconnects=self._reconnects,
                open_failures=self._open_failures,
                callback_errors=self._callback_errors,
                seconds_since_last_good=(
                    None if self._last_good is None else max(0.0, now - self._last_good)
                ),
            )

    # -- reader thread -----------------------------------------------------------------------

    def _set_state(self, state: SourceState, message: str, level: int = logging.INFO) -> None:
        """Change state; log only when it actually changes (once per state change)."""
        if state is self._state:
            logger.debug("P1 port %s: %s", self.port, message)
            return
        with self._lock:
            self._state = state
        logger.log(level, "P1 port %s: %s", self.port, message)

    def _current_generation(self) -> str:
        if self.mode != "auto":
            return self.mode
        return self._generation or DSMR_GENERATIONS[self._candidate % len(DSMR_GENERATIONS)]

    def _run(self) -> None:
        backoff = Backoff(self._backoff_initial, self._backoff_max, jitter=0.0)
        while not self._stop.is_set():
            try:
                outcome = self._cycle(backoff.peek_base())
            except Exception:
                # A bug must not kill the reader for good: log it and carry on after a pause.
                logger.exception("P1 port %s: unexpected error in the reader", self.port)
                outcome = "lost"
            if self._good_since_backoff:
                # The port worked: the next outage starts again with a short delay.
                self._good_since_backoff = False
                backoff.reset()
            if outcome in ("lost", "unavailable"):
                self._clock.wait(self._stop, backoff.next_delay())
        self._set_state(SourceState.STOPPED, "stopped")

    def _cycle(self, backoff: float) -> str:
        """Open the port once and read until it fails; say how it ended."""
        generation = self._current_generation()
        try:
            port = self._factory(self.port, SERIAL_SETTINGS[generation], self._read_timeout)
        except Exception as exc:  # noqa: BLE001 - any open failure means "not there (yet)"
            with self._lock:
                self._open_failures += 1
            if self.mode == "auto" and self._generation is None and _error_code(exc) == EINVAL:
                # The device is there but refuses these settings: try the next generation.
                self._candidate += 1
            self._set_state(
                SourceState.WAITING,
                f"not available ({_reason(exc)}); waiting for it, retrying with backoff up to "
                f"{self._backoff_max:g} s",
                logging.WARNING,
            )
            logger.debug("P1 port %s: next attempt in %.2f s", self.port, backoff)
            return "unavailable"
        with self._lock:
            self._open_port = port
        try:
            if self._stop.is_set():
                return "stopped"
            if self._state is SourceState.WAITING and self._was_connected:
                with self._lock:
                    self._reconnects += 1
            self._framer.reset()
            return self._session(port, generation)
        except _PortLostError as exc:
            self._set_state(
                SourceState.WAITING, f"lost ({exc}); waiting for it to come back", logging.WARNING
            )
            return "lost"
        finally:
            self._close(port)

    def _close(self, port: SerialPort) -> None:
        with self._lock:
            self._open_port = None
        try:
            port.close()
        except Exception as exc:  # noqa: BLE001 - closing a vanished port may fail; it is gone
            logger.debug("P1 port %s: close failed: %s", self.port, exc)

    def _telegrams_arrive(self, generation: str, *, detected: bool) -> None:
        """Good telegrams under `generation`'s settings: connected (the settings `detected`
        if this session was still probing for them)."""
        if detected:
            self._bad_logged = self._bad_counts()  # garbage while detecting is expected
            self._generation = generation
            self._was_connected = True
            self._set_state(
                SourceState.CONNECTED,
                f"connected; detected DSMR {generation} settings "
                f"({SERIAL_SETTINGS[generation].label})",
            )
        elif self._state is not SourceState.CONNECTED:
            self._set_state(SourceState.CONNECTED, "telegrams are arriving again")

    def _session(self, port: SerialPort, generation: str) -> str:
        """Read until the port fails (raises _PortLostError), settings prove wrong, or stop.

        Returns "wrong settings" (try the next generation) or "stopped".
        """
        clock = self._clock
        settings = SERIAL_SETTINGS[generation]
        probing = self.mode == "auto" and self._generation is None
        if probing:
            self._set_state(SourceState.DETECTING, f"open; trying {settings.label}")
        else:
            self._was_connected = True
            self._set_state(SourceState.CONNECTED, f"connected ({settings.label})")
        opened = clock.now()
        quiet_since = opened
        garbage_bytes = 0
        high_bits = 0
        while not self._stop.is_set():
            try:
                waiting = port.in_waiting
                chunk = port.read(min(max(waiting, 1), 65536))
            except Exception as exc:  # a read error means the cable is gone
                raise _PortLostError(_reason(exc)) from exc
            now = clock.now()
            good = self._feed(chunk, now) if chunk else 0
            if not probing:
                self._log_bad_telegrams(now)
            if good:
                quiet_since = now
                garbage_bytes = high_bits = 0
                self._telegrams_arrive(generation, detected=probing)
                probing = False
                continue
            if chunk:
                garbage_bytes += len(chunk)
                high_bits += len(chunk) - len(chunk.translate(None, _HIGH_BYTES))
            silent_for = now - quiet_since
            wrong = high_bits >= _HIGH_BIT_LIMIT or garbage_bytes >= self._detect_bytes
            if probing:
                if wrong or (garbage_bytes and silent_for >= self._detect_seconds):
                    logger.debug(
                        "P1 port %s: no telegram under %s (%d bytes, %d with the high bit)",
                        self.port,
                        settings.label,
                        garbage_bytes,
                        high_bits,
                    )
                    self._candidate += 1
                    return "wrong settings"
            elif self.mode == "auto" and wrong and silent_for >= self._no_data_after:
                # The known settings stopped working while bytes keep arriving: a new meter?
                self._generation = None
                self._candidate = DSMR_GENERATIONS.index(generation) + 1
                self._set_state(
                    SourceState.DETECTING,
                    f"only unreadable data under {settings.label}; detecting settings again",
                    logging.WARNING,
                )
                return "wrong settings"
            if silent_for >= self._no_data_after and self._state is not SourceState.NO_DATA:
                self._set_state(
                    SourceState.NO_DATA,
                    f"no valid telegram for {silent_for:.0f} s ({garbage_bytes} bytes of "
                    "unreadable data); is the meter's P1 port enabled?",
                    logging.WARNING,
                )
        return "stopped"

    def _bad_counts(self) -> tuple[int, int]:
        with self._lock:
            stats = self._framer.stats
            return stats.crc_errors, stats.framing_errors

    def _log_bad_telegrams(self, now: float) -> None:
        """Say that bad telegrams were dropped: the first at once, then at most one summary
        every BAD_TELEGRAM_LOG_INTERVAL_S (a noisy line must not flood the journal)."""
        counts = self._bad_counts()
        crc, framing = (new - old for new, old in zip(counts, self._bad_logged, strict=True))
        if not (crc or framing) or (self._bad_log_at is not None and now < self._bad_log_at):
            return
        first = self._bad_log_at is None
        self._bad_log_at = now + BAD_TELEGRAM_LOG_INTERVAL_S
        self._bad_logged = counts
        logger.warning(
            "P1 port %s: %d bad telegram(s) dropped%s (%d failed the CRC check, %d cut off or "
            "malformed: electrical noise, a loose connector or a meter restart); nothing from "
            "them is sent%s",
            self.port,
            crc + framing,
            "" if first else " since the last report",
            crc,
            framing,
            f"; further ones are summarised at most every {BAD_TELEGRAM_LOG_INTERVAL_S:g} s"
            if first
            else "",
        )

    def _feed(self, chunk: bytes, now: float) -> int:
        """Frame `chunk`; deliver good telegrams; return how many there were."""
        with self._lock:
            self._bytes_read += len(chunk)
            telegrams = self._framer.feed(chunk, include_bad=self._on_bad is not None)
        good = 0
        for telegram in telegrams:
            if telegram.ok:
                good += 1
                with self._lock:
                    self._last_good = now
                self._good_since_backoff = True
                self._deliver(self._on_telegram, telegram.raw, now)
            elif self._on_bad is not None:
                self._deliver(self._on_bad, telegram, now)
        return good

    def _deliver(self, callback: Callable[[_T, float], None], item: _T, now: float) -> None:
        try:
            callback(item, now)
        except Exception as exc:
            with self._lock:
                self._callback_errors += 1
            message = f"{type(exc).__name__}: {exc}"
            if message != self._last_callback_error:
                self._last_callback_error = message
                logger.exception("P1 telegram callback failed (the reader carries on)")
            else:
                logger.debug("P1 telegram callback failed again: %s", message)


_HIGH_BYTES = bytes(range(0x80, 0x100))


def _error_code(exc: BaseException) -> int | None:
    """The errno of an open failure, also for termios.error, which carries it in args."""
    code = getattr(exc, "errno", None)
    if code is None and exc.args and isinstance(exc.args[0], int):
        code = exc.args[0]
    return code if isinstance(code, int) else None


def _reason(exc: BaseException) -> str:
    """A short, secret-free description of an open/read failure."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
    elif len(exc.args) == 2 and isinstance(exc.args[1], str):
        text = exc.args[1]  # termios.error and friends: (errno, message)
    else:
        text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]
