"""sd_notify against a real AF_UNIX datagram socket: READY, STATUS, WATCHDOG (only while the
main loop makes progress and the daemon is healthy) and STOPPING."""

from __future__ import annotations

import itertools
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

import pytest

from p1lora.common.backoff import Backoff
from p1lora.common.clock import VirtualClock
from p1lora.service.run_loop import run_forever
from p1lora.service.systemd import Notifier, Watchdog, watchdog_interval


class NotifySocket:
    """What systemd does: bind a datagram socket and read what the service sends."""

    def __init__(self, path: Path | None = None) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        if path is None:
            name = f"p1lora-test-{uuid.uuid4().hex}"
            self.sock.bind(b"\0" + name.encode())
            self.address = "@" + name
        else:
            self.sock.bind(str(path))
            self.address = str(path)
        self.sock.settimeout(0.0)

    def messages(self) -> list[str]:
        out = []
        while True:
            try:
                out.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return out

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def notify_socket(tmp_path):
    server = NotifySocket(tmp_path / "notify")
    yield server
    server.close()


def test_ready_status_stopping(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
    assert notifier.enabled
    assert notifier.ready("link running at SF7/BW250")
    assert notifier.status("  two\nlines  ")
    assert notifier.stopping("stopping")
    assert notifier.extend_timeout(2.5)
    assert notify_socket.messages() == [
        "READY=1\nSTATUS=link running at SF7/BW250",
        "STATUS=two lines",
        "STOPPING=1\nSTATUS=stopping",
        "EXTEND_TIMEOUT_USEC=2500000",
    ]
    assert notifier.sent == 4
    notifier.close()


def test_abstract_socket_address():
    server = NotifySocket()
    try:
        notifier = Notifier({"NOTIFY_SOCKET": server.address})
        assert notifier.ready()
        assert server.messages() == ["READY=1"]
    finally:
        server.close()


def test_disabled_outside_systemd():
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready("x")
    assert not notifier.watchdog()
    watchdog = Watchdog(notifier, 1.0)
    assert not watchdog.enabled  # no socket: nothing to ping
    assert watchdog.beat(0.0) is None


def test_a_vanished_socket_is_logged_once_and_never_raises(tmp_path, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    with caplog.at_level(logging.WARNING, logger="p1lora.service.systemd"):
        assert not notifier.ready()
        assert not notifier.watchdog()
    assert [r.getMessage() for r in caplog.records] == [
        "cannot notify systemd: No such file or directory"
    ]


def test_unsupported_address_is_reported():
    notifier = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})
    assert not notifier.enabled


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, None),
        ({"WATCHDOG_USEC": "60000000"}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": str(os.getpid())}, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, None),  # another process's
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
    ],
)
def test_watchdog_interval_is_half_of_watchdog_sec(environ, expected):
    assert watchdog_interval(environ) == expected


def test_watchdog_pings_at_the_interval_and_only_while_healthy(notify_socket, caplog):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
    problem: list[str | None] = [None]
    watchdog = Watchdog(notifier, 5.0, lambda: problem[0])
    with caplog.at_level(logging.WARNING, logger="p1lora.service.systemd"):
        assert watchdog.beat(0.0) is None
        watchdog.beat(1.0)
        watchdog.beat(4.9)
        assert notify_socket.messages() == ["WATCHDOG=1"]
        watchdog.beat(5.0)
        assert notify_socket.messages() == ["WATCHDOG=1"]
        problem[0] = "the radio has not worked for 300 s (SPI)"
        assert watchdog.beat(10.0) == problem[0]
        assert watchdog.beat(11.0) == problem[0]
        assert notify_socket.messages() == []
        problem[0] = None
        assert watchdog.beat(12.0) is None
        assert notify_socket.messages() == ["WATCHDOG=1"]
    assert watchdog.pings == 3
    assert watchdog.withheld == 2
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2  # stopped once, resumed once: no flood
    assert messages[0].startswith("not pinging the systemd watchdog: the radio has not worked")
    assert messages[1] == "the daemon is healthy again; watchdog pings resumed"


def test_a_failing_health_check_counts_as_unhealthy(notify_socket):
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})

    def broken() -> str | None:
        raise RuntimeError("boom")

    watchdog = Watchdog(notifier, 1.0, broken)
    assert watchdog.beat(0.0) == "health check failed: boom"
    assert notify_socket.messages() == []


class _Runtime:
    """A steppable whose steps succeed or fail on demand (a hung loop makes no progress)."""

    def __init__(
        self, clock: VirtualClock, stop: threading.Event, fail_between: tuple[float, float]
    ) -> None:
        self.wakeup = threading.Event()
        self.clock = clock
        self.stop = stop
        self.fail_between = fail_between
        self.steps = 0

    def step(self, now: float) -> float | None:
        if now >= 60.0:
            self.stop.set()
        low, high = self.fail_between
        if low <= now < high:
            raise RuntimeError("stuck")
        self.steps += 1
        return now + 1.0


def test_watchdog_pings_only_while_the_main_loop_makes_progress(notify_socket, caplog):
    """Wired as the daemons wire it: the loop's heartbeat pings. Between t=20 and t=40 every
    step fails, so no heartbeat runs and no WATCHDOG=1 is sent: systemd would restart us."""
    clock = VirtualClock()
    stop = threading.Event()
    notifier = Notifier({"NOTIFY_SOCKET": notify_socket.address})
    watchdog = Watchdog(notifier, 5.0)
    pings: list[float] = []

    def heartbeat() -> None:
        before = watchdog.pings
        watchdog.beat(clock.now())
        if watchdog.pings > before:
            pings.append(clock.now())

    runtime = _Runtime(clock, stop, (20.0, 40.0))
    with caplog.at_level(logging.CRITICAL):
        run_forever(
            runtime,
            clock,
            stop,
            heartbeat=heartbeat,
            max_failures=1000,
            backoff=Backoff(0.5, 2.0, jitter=0.0),
        )
    assert pings, "no ping at all"
    assert all(not 20.0 <= t < 40.0 for t in pings), pings
    assert min(t for t in pings if t >= 40.0) <= 42.0  # resumes once steps succeed again
    gaps = [b - a for a, b in itertools.pairwise(pings) if b < 20.0 or a >= 40.0]
    assert all(g >= 5.0 for g in gaps)  # never more often than the interval
    assert len(notify_socket.messages()) == len(pings)
