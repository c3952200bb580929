"""The simulated channel across processes over loopback UDP (real time, generous timeouts)."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from p1lora.hardware.factory import open_radio
from p1lora.hardware.radio import FrameReceived
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.sx127x import SX127x
from p1lora.hardware.udp_channel import (
    SIM_PORT_ENV,
    UdpChannel,
    UdpSimOptions,
    default_sim_port,
)

from .helpers_radio import FAST, eventually, free_udp_port, wait_for

ROOT = Path(__file__).resolve().parent.parent


def _payload_is(payload: bytes):
    return lambda event: isinstance(event, FrameReceived) and event.frame.payload == payload


class Node:
    """A UdpChannel with one driven radio, like one daemon process."""

    def __init__(self, port: int, name: str, **options) -> None:
        self.scheduler = ThreadScheduler(f"test-{name}")
        self.udp = UdpChannel(self.scheduler, UdpSimOptions(port=port, **options))
        chip = self.udp.add_radio(name)
        self.radio = SX127x(
            chip.spi,
            clock=self.scheduler,
            reset=chip.reset_pin,
            dio0=chip.dio0,
            scheduler=self.scheduler,
            poll_interval=0.2,
            name=name,
        )
        self.radio.configure(FAST)

    def close(self) -> None:
        self.radio.close()
        self.udp.close()
        self.scheduler.close()


@pytest.fixture
def nodes():
    made: list[Node] = []
    port = free_udp_port()

    def make(name: str, **options) -> Node:
        node = Node(port, name, **options)
        made.append(node)
        return node

    yield make
    for node in made:
        node.close()


def _joined(hub: Node, members: int) -> None:
    eventually(lambda: hub.udp.member_count == members, timeout=5)


def test_two_channels_over_loopback_hear_each_other(nodes):
    a, b = nodes("a"), nodes("b")
    assert (a.udp.role, b.udp.role) == ("hub", "member")
    _joined(a, 1)
    a.radio.send(b"to the member")
    events = wait_for(b.radio, _payload_is(b"to the member"))
    frame = next(e.frame for e in events if isinstance(e, FrameReceived))
    assert frame.rssi_dbm == pytest.approx(14 - 100, abs=0.75)  # default path loss
    b.radio.send(b"to the hub")
    wait_for(a.radio, _payload_is(b"to the hub"))


def test_hub_relays_between_members(nodes):
    hub, b, c = nodes("hub"), nodes("b"), nodes("c")
    _joined(hub, 2)
    b.radio.send(b"via the hub")
    wait_for(c.radio, _payload_is(b"via the hub"))
    wait_for(hub.radio, _payload_is(b"via the hub"))
    assert hub.udp.stats.relayed >= 1


def test_path_loss_per_process_and_at_run_time(nodes):
    a, b = nodes("a"), nodes("b", path_loss_db=200.0)
    _joined(a, 1)
    a.radio.send(b"lost in the noise")
    time.sleep(0.3)
    assert [e for e in b.radio.poll() if isinstance(e, FrameReceived)] == []
    b.udp.set_path_loss(120.0)  # the larger of both sides' settings applies
    a.radio.send(b"now audible")
    events = wait_for(b.radio, _payload_is(b"now audible"))
    frame = next(e.frame for e in events if isinstance(e, FrameReceived))
    assert frame.rssi_dbm == pytest.approx(14 - 120, abs=0.75)


def test_a_new_hub_is_elected_when_the_hub_leaves(nodes):
    hub, b, c = nodes("hub"), nodes("b"), nodes("c")
    _joined(hub, 2)
    hub.close()
    eventually(lambda: "hub" in (b.udp.role, c.udp.role), timeout=6)
    assert sorted((b.udp.role, c.udp.role)) == ["hub", "member"]
    new_hub = b if b.udp.role == "hub" else c
    other = c if new_hub is b else b
    _joined(new_hub, 1)
    other.radio.send(b"after the election")
    wait_for(new_hub.radio, _payload_is(b"after the election"))


def test_garbage_on_the_port_is_ignored(nodes):
    a, b = nodes("a"), nodes("b")
    _joined(a, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for junk in (b"\xff\x00junk", b'{"m":"p1lora-sim/1","t":"frame","params":{}}', b"[]"):
            sock.sendto(junk, ("127.0.0.1", a.udp.port))
    eventually(lambda: a.udp.stats.malformed >= 3, timeout=3)
    b.radio.send(b"still fine")
    wait_for(a.radio, _payload_is(b"still fine"))


def test_default_port_comes_from_the_environment(monkeypatch):
    monkeypatch.delenv(SIM_PORT_ENV, raising=False)
    assert default_sim_port() == 47_868
    monkeypatch.setenv(SIM_PORT_ENV, "40001")
    assert default_sim_port() == 40_001
    monkeypatch.setenv(SIM_PORT_ENV, "http")
    with pytest.raises(ValueError, match=SIM_PORT_ENV):
        default_sim_port()


class FakeMonotonic:
    """The network housekeeping's clock, stepped by the test (no waiting out 5 s for real)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def _next_hello(sock: socket.socket) -> None:
    """Wait for the member's next `hello`: proof its housekeeping ran at the current fake time."""
    while True:
        data, _ = sock.recvfrom(4096)
        if b'"t":"hello"' in data:
            return


def _records(caplog, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "p1lora.hardware.udp_channel" and r.levelno == level
    ]


def test_a_port_held_by_another_program_is_reported_then_the_join_is_logged(caplog):
    port = free_udp_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # not a p1-lora hub
    blocker.bind(("127.0.0.1", port))
    blocker.settimeout(5)
    fake = FakeMonotonic()
    scheduler = ThreadScheduler("test-blocked")
    hub_scheduler = ThreadScheduler("test-late-hub")
    hub: UdpChannel | None = None
    caplog.set_level(logging.INFO, logger="p1lora.hardware.udp_channel")
    udp = UdpChannel(scheduler, UdpSimOptions(port=port), monotonic=fake)
    try:
        assert udp.role == "member"
        _next_hello(blocker)
        fake.now += 4.9
        _next_hello(blocker)
        assert _records(caplog, logging.WARNING) == []  # not yet: 4.9 s without a welcome
        fake.now += 0.6
        _next_hello(blocker)
        (warning,) = _records(caplog, logging.WARNING)
        assert f"127.0.0.1:{port}" in warning and "no p1-lora hub has answered" in warning
        assert "--sim-port" in warning and SIM_PORT_ENV in warning
        fake.now += 0.6
        _next_hello(blocker)
        assert len(_records(caplog, logging.WARNING)) == 1  # said once, not every loop

        # The other program goes away and a real hub takes the port: the member joins it.
        blocker.close()
        hub = UdpChannel(hub_scheduler, UdpSimOptions(port=port))
        assert hub.role == "hub"
        fake.now += 0.6
        eventually(lambda: hub is not None and hub.member_count == 1, timeout=5)
        eventually(lambda: any("after all" in m for m in _records(caplog, logging.INFO)), 5)
        assert udp.role == "member"
        # Steady welcomes keep it quiet, well past another 5 s.
        for _ in range(12):
            fake.now += 0.6
            eventually(lambda: udp._last_welcome == fake.now, timeout=5)
        assert len(_records(caplog, logging.WARNING)) == 1
    finally:
        blocker.close()
        udp.close()
        if hub is not None:
            hub.close()
        scheduler.close()
        hub_scheduler.close()


def test_the_warned_member_that_wins_the_freed_port_says_so(caplog):
    port = free_udp_port()
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", port))
    blocker.settimeout(5)
    fake = FakeMonotonic()
    scheduler = ThreadScheduler("test-freed")
    caplog.set_level(logging.INFO, logger="p1lora.hardware.udp_channel")
    udp = UdpChannel(scheduler, UdpSimOptions(port=port), monotonic=fake)
    try:
        _next_hello(blocker)
        fake.now += 5.5
        _next_hello(blocker)
        assert len(_records(caplog, logging.WARNING)) == 1
        blocker.close()
        fake.now += 3.0  # past the hub timeout: it tries the port again and gets it
        eventually(lambda: udp.role == "hub", timeout=5)
        assert any(f"port {port} is free now" in m for m in _records(caplog, logging.INFO))
    finally:
        blocker.close()
        udp.close()
        scheduler.close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from p1lora.common.radio_types import RadioSettings
    from p1lora.hardware.factory import open_radio
    from p1lora.hardware.radio import FrameReceived

    radio = open_radio("sim", name="child")  # no options: the port comes from the environment
    radio.configure(RadioSettings(frequency_hz=869_525_000, sf=7, bw_hz=500_000))
    deadline = time.monotonic() + 20
    next_ping = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_ping and not radio.busy():
            radio.send(b"ping from the child")  # then listen: the radio is half-duplex
            next_ping = time.monotonic() + 0.5
        radio.wakeup.wait(0.05)
        for event in radio.poll():
            if isinstance(event, FrameReceived) and event.frame.payload == b"stop":
                radio.close()
                sys.exit(0)
    sys.exit(3)
    """
)


def test_two_processes_find_each_other_with_no_flags(monkeypatch):
    port = free_udp_port()
    monkeypatch.setenv(SIM_PORT_ENV, str(port))
    env = {**os.environ, SIM_PORT_ENV: str(port)}
    child = subprocess.Popen([sys.executable, "-c", CHILD], env=env, cwd=ROOT)
    radio = open_radio("sim", name="parent")
    try:
        radio.configure(FAST)
        wait_for(radio, _payload_is(b"ping from the child"), timeout=20)
        deadline = time.monotonic() + 10
        while child.poll() is None and time.monotonic() < deadline:
            if not radio.busy():
                radio.send(b"stop")
            time.sleep(0.13)  # not a multiple of the child's ping period
            radio.poll()
        assert child.wait(timeout=5) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        radio.close()


# ---------------------------------------------------------------------- real-time clock


def test_thread_scheduler_runs_callbacks_in_time_order_and_survives_errors():
    scheduler = ThreadScheduler("test-order")
    try:
        ran: list[str] = []
        start = scheduler.now()
        scheduler.call_at(start + 0.06, lambda: ran.append("late"))
        scheduler.call_at(start + 0.02, lambda: ran.append("early"))
        cancelled = scheduler.call_later(0.04, lambda: ran.append("cancelled"))
        cancelled.cancel()

        def boom() -> None:
            raise RuntimeError("a failing callback")

        scheduler.call_later(0.01, boom)
        eventually(lambda: len(ran) == 2, timeout=5)
        assert ran == ["early", "late"]
        assert scheduler.now() - start >= 0.06
        assert scheduler.next_event_time() is None
    finally:
        scheduler.close()
    assert scheduler.closed
    scheduler.call_later(0, lambda: ran.append("after close"))  # ignored, no thread restarts
    time.sleep(0.05)
    assert "after close" not in ran


def test_system_clock_wait_returns_when_the_event_is_set():
    clock = ThreadScheduler("test-wait")
    try:
        event = threading.Event()
        clock.call_later(0.02, event.set)
        started = clock.now()
        assert clock.wait(event, 5.0)
        assert clock.now() - started < 2.0
        assert not clock.wait(threading.Event(), 0.01)
        assert not clock.wait(threading.Event(), 0)
    finally:
        clock.close()
