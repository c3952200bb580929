"""Process supervision for `p1-lora demo`: the programs run as children, as systemd would run
them on the two Pis.

- **Isolated.** A child gets this environment without P1LORA_* and systemd variables
  (`child_environment`), runs in its own session (Ctrl-C reaches only the demo, which stops the
  children in order) and asks the kernel for SIGTERM when the demo dies (PR_SET_PDEATHSIG, in
  `_LAUNCHER`), so nothing is left running.
- **Ready like a systemd service.** A daemon child gets its own `$NOTIFY_SOCKET`
  (`NotifySocket`): the daemons send `READY=1` there once they run (`p1lora.service.systemd`),
  which is when the demo starts the next one. Its log line saying so is only shown.
- **Logged to a file.** A child's stderr goes to a log file that `LogTail` follows; the link
  logs (`--link-log`) are followed the same way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Final

__all__ = [
    "LOOPBACK",
    "START_TIMEOUT_S",
    "STOP_TIMEOUT_S",
    "Child",
    "LogTail",
    "NotifySocket",
    "StartError",
    "child_environment",
    "free_port",
    "python_child",
]

logger = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 15.0
STOP_TIMEOUT_S: Final = 15.0
#: Lines of a child's log kept for the error report when it fails.
LOG_TAIL_LINES: Final = 15
#: The module whose `main` each program runs (what its console script calls).
MODULES: Final = {
    "p1-lora-tx": "p1lora.transmitter.cli",
    "p1-lora-rx": "p1lora.receiver.cli",
    "p1-lora": "p1lora.tools.cli",
}
#: Variables of the calling shell that would change how a child behaves.
_HOST_ONLY: Final = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "LISTEN_FDS",
    "LISTEN_PID",
)

#: Runs first in every child: ask the kernel for SIGTERM when this command dies (so a killed
#: demo leaves nothing running), give up if that already happened, then exec the program.
_LAUNCHER: Final = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(143)
os.execv(sys.argv[2], sys.argv[2:])
"""


class StartError(Exception):
    """A part of the demo could not be started; the message says which and why."""


def free_port(kind: socket.SocketKind) -> int:
    """A loopback port (TCP or UDP) that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def child_environment() -> dict[str, str]:
    """This environment without p1-lora and systemd variables; unbuffered Python output."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("P1LORA_") and k not in _HOST_ONLY
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LogTail:
    """Follows a log file a child writes: complete new lines since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.recent: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(1 << 20)
        except OSError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        out = [line.decode("utf-8", "replace").rstrip("\r") for line in complete]
        self.recent.extend(out)
        return out


class NotifySocket:
    """The receiving end of systemd's notify protocol for one child: one datagram per message,
    `KEY=value` lines (sd_notify(3)); `ready()` once a `READY=1` arrived.

    The socket has a unique abstract name (`@p1lora-demo-...` in `$NOTIFY_SOCKET`, as systemd
    itself may use): no file to clean up, and no limit of 108 bytes on a long $TMPDIR path."""

    def __init__(self, label: str) -> None:
        name = f"p1lora-demo-{os.getpid()}-{label}-{uuid.uuid4().hex[:8]}"
        self.address = f"@{name}"
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(b"\0" + name.encode())
        self._socket.setblocking(False)
        self._ready = False

    def ready(self) -> bool:
        """Whether the child said `READY=1` (reads what it sent so far)."""
        while True:
            try:
                message = self._socket.recv(4096)
            except (BlockingIOError, OSError):
                return self._ready
            if b"READY=1" in message.split(b"\n"):
                self._ready = True

    def reset(self) -> None:
        """A new process: not ready until it says so again."""
        self.ready()
        self._ready = False

    def close(self) -> None:
        self._socket.close()


class Child:
    """One program of the demo in its own session, its stderr in a log file; with `notify`,
    told about it in `$NOTIFY_SOCKET` (a daemon, started like a `Type=notify` service)."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        log_path: Path,
        env: dict[str, str],
        cwd: Path,
        *,
        notify: NotifySocket | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env if notify is None else {**env, "NOTIFY_SOCKET": notify.address}
        self.cwd = cwd
        self.tail = LogTail(log_path)
        self.notify = notify
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: deque[float] = deque()

    def ready(self) -> bool:
        """Whether the running process said it is ready (False without a notify socket)."""
        return self.notify is not None and self.notify.ready()

    def start(self) -> None:
        """Start (again); from the main thread only (PR_SET_PDEATHSIG follows the thread)."""
        if self.notify is not None:
            self.notify.reset()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float, hurry: Callable[[], bool]) -> int | None:
        """SIGTERM, wait up to `timeout` (less when `hurry()` turns true), then SIGKILL."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.05)
            if process.poll() is None:
                if not hurry():
                    logger.warning("%s did not stop within %g s: killing it", self.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        try:
            return process.wait(5)
        except subprocess.TimeoutExpired:
            return None

    def close(self) -> None:
        """Release the notify socket (after `stop`)."""
        if self.notify is not None:
            self.notify.close()


def python_child(
    name: str,
    program: str,
    args: list[str],
    *,
    log_path: Path,
    env: dict[str, str],
    cwd: Path,
    notify: NotifySocket | None = None,
) -> Child:
    """A p1-lora program run with this Python, as its console script does (independent of PATH
    and of where the venv's bin is; `-m` would name the module's logger `__main__`)."""
    code = f"import sys; from {MODULES[program]} import main; sys.exit(main())"
    return Child(name, [sys.executable, "-c", code, *args], log_path, env, cwd, notify=notify)
