"""systemd integration without libsystemd: readiness, status, stopping and the watchdog.

The units are ``Type=notify`` with ``WatchdogSec=``. systemd then waits for ``READY=1`` before
it considers the service started (so `systemctl start` returns once the radio is open and the
link runs, and a failing start is reported as failed), shows our ``STATUS=`` line in
`systemctl status`, and kills and restarts the service when ``WATCHDOG=1`` pings stop.

The protocol is one datagram per message on the AF_UNIX socket named in ``$NOTIFY_SOCKET``
(a path, or ``@name`` for the abstract namespace); the stdlib `socket` module is all it takes.
Outside systemd ``$NOTIFY_SOCKET`` is unset and every call is a cheap no-op. Sending never
raises: a daemon must not die because its supervisor's socket went away.

**The watchdog only pings while the daemon makes real progress.** A thread that pings on a
timer proves only that the timer thread lives; a daemon whose main loop is stuck, or whose radio
stopped answering, or whose P1 reader died, would be kept alive forever. Here the main loop's
heartbeat (called after every completed step) is what pings, at most every half
``WatchdogSec`` (systemd's recommendation), and only while a health check says the devices are
alive. When the loop hangs or the health check fails, the pings stop and systemd restarts the
service, which is the cure for a wedged SPI bus or a dead thread.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from typing import Final

__all__ = ["Notifier", "Watchdog", "watchdog_interval"]

logger = logging.getLogger(__name__)

NOTIFY_SOCKET_ENV: Final = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV: Final = "WATCHDOG_USEC"
WATCHDOG_PID_ENV: Final = "WATCHDOG_PID"
#: systemd accepts status lines of any length, but `systemctl status` shows one line.
_MAX_STATUS = 200


def _address(value: str) -> str | bytes | None:
    """The socket address in $NOTIFY_SOCKET: a path or an abstract name (leading '@')."""
    if value.startswith("/"):
        return value
    if value.startswith("@") and len(value) > 1:
        return b"\0" + value[1:].encode()
    return None


class Notifier:
    """Sends sd_notify messages; a no-op when not started by systemd with a notify socket."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        raw = env.get(NOTIFY_SOCKET_ENV, "")
        self._address = _address(raw) if raw else None
        if raw and self._address is None:
            logger.warning(
                "NOTIFY_SOCKET %r is not a unix socket address; systemd will not hear from us",
                raw,
            )
        self._socket: socket.socket | None = None
        self._failed = False
        #: Messages sent successfully (diagnostics, tests).
        self.sent = 0

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, *fields: str) -> bool:
        """Send one message of `KEY=value` fields; False when disabled or it failed (logged)."""
        if self._address is None:
            return False
        message = "\n".join(fields).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.sendto(message, self._address)
        except OSError as exc:
            if not self._failed:
                logger.warning("cannot notify systemd: %s", exc.strerror or exc)
            self._failed = True
            return False
        if self._failed:
            logger.info("notifying systemd works again")
            self._failed = False
        self.sent += 1
        return True

    def ready(self, status: str | None = None) -> bool:
        """The service is up (systemd's start job completes)."""
        return self.notify("READY=1", *_status_field(status))

    def status(self, status: str) -> bool:
        """The one-line status `systemctl status` shows."""
        return self.notify(*_status_field(status))

    def stopping(self, status: str | None = None) -> bool:
        """An orderly shutdown began."""
        return self.notify("STOPPING=1", *_status_field(status))

    def watchdog(self) -> bool:
        """Keep-alive ping (see `Watchdog` for when to send it)."""
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for more time to start or stop (a slow radio reset, a flush)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _status_field(status: str | None) -> tuple[str, ...]:
    if status is None:
        return ()
    line = " ".join(status.split())[:_MAX_STATUS]
    return (f"STATUS={line}",)


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between pings (half of WatchdogSec), or None when no watchdog is armed for us."""
    env = os.environ if environ is None else environ
    usec = env.get(WATCHDOG_USEC_ENV, "").strip()
    if not usec:
        return None
    pid = env.get(WATCHDOG_PID_ENV, "").strip()
    if pid and pid != str(os.getpid()):
        return None  # the watchdog belongs to another process (we were started by a wrapper)
    try:
        value = int(usec)
    except ValueError:
        logger.warning("WATCHDOG_USEC=%r is not a number; no watchdog pings", usec)
        return None
    if value <= 0:
        return None
    return value / 1_000_000 / 2


class Watchdog:
    """Pings systemd's watchdog from the main loop's heartbeat while the daemon is healthy.

    Call `beat(now)` after every completed step of the main loop. It pings when `interval`
    seconds passed since the last ping **and** `health()` returns None (healthy); otherwise
    it returns the reason (logged once as a warning when the pings stop, and once when they
    resume). `interval` None disables it.
    """

    def __init__(
        self,
        notifier: Notifier,
        interval: float | None,
        health: Callable[[], str | None] = lambda: None,
    ) -> None:
        if interval is not None and not interval > 0:
            raise ValueError("watchdog interval must be positive")
        self._notifier = notifier
        self.interval = interval if notifier.enabled else None
        self._health = health
        self._next_ping: float | None = None
        self._withheld: str | None = None
        #: Pings sent and pings withheld because of a health problem (diagnostics, tests).
        self.pings = 0
        self.withheld = 0

    @classmethod
    def from_environment(
        cls,
        notifier: Notifier,
        health: Callable[[], str | None] = lambda: None,
        environ: Mapping[str, str] | None = None,
    ) -> Watchdog:
        return cls(notifier, watchdog_interval(environ), health)

    @property
    def enabled(self) -> bool:
        return self.interval is not None

    def beat(self, now: float) -> str | None:
        """A step of the main loop completed at `now`; ping if due and healthy.

        Returns the health problem that withheld a ping, else None.
        """
        if self.interval is None:
            return None
        if self._next_ping is not None and now < self._next_ping:
            return None
        try:
            problem = self._health()
        except Exception as exc:  # noqa: BLE001 - a broken health check must not look healthy
            problem = f"health check failed: {exc}"
        if problem is not None:
            self.withheld += 1
            if self._withheld is None:
                logger.error(
                    "not pinging the systemd watchdog: %s; systemd will restart the service "
                    "unless this clears",
                    problem,
                )
            self._withheld = problem
            return problem
        if self._withheld is not None:
            logger.warning("the daemon is healthy again; watchdog pings resumed")
            self._withheld = None
        if self._notifier.watchdog():
            self.pings += 1
        self._next_ping = now + self.interval
        return None
