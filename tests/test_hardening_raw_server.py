"""Issue 12 item 6: the raw TCP server under a connection flood.

Real sockets on loopback; Linux routes all of 127.0.0.0/8 to `lo`, so a client can bind
127.0.0.2 as its source to play "another machine on the LAN". Time (the per-minute log
summary) is the server's injected clock, advanced by the test.
"""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator

import pytest

from p1lora.receiver.raw_server import RawTelegramServer
from tests.helpers_mqtt import wait_until
from tests.test_raw_server import evolving_stream, recv_exactly

ATTACKER = "127.0.0.2"
HOME_ASSISTANT = "127.0.0.1"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _connect(server: RawTelegramServer, source: str) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), source_address=(source, 0))


def _served(server: RawTelegramServer, sock: socket.socket, clients: int) -> bool:
    """Whether `sock` gets the next telegram (False: the server closed it)."""
    assert wait_until(lambda: server.client_count >= clients)
    telegram = evolving_stream(1)[0]
    server.broadcast(telegram)
    return recv_exactly(sock, len(telegram)) == telegram


@contextlib.contextmanager
def _sockets() -> Iterator[list[socket.socket]]:
    opened: list[socket.socket] = []
    try:
        yield opened
    finally:
        for sock in opened:
            sock.close()


def test_idle_readers_from_one_address_cannot_lock_home_assistant_out():
    """Before: 16 connections from one host held every slot and Home Assistant was refused."""
    with RawTelegramServer("127.0.0.1", 0) as server, _sockets() as opened:
        opened += [_connect(server, ATTACKER) for _ in range(16)]
        assert wait_until(lambda: server.stats().accepted + server.stats().refused == 16)
        home_assistant = _connect(server, HOME_ASSISTANT)
        opened.append(home_assistant)
        assert wait_until(lambda: server.stats().accepted + server.stats().refused == 17)
        assert server.stats().accepted == 5
        assert _served(server, home_assistant, 5)
        assert server.stats().refused >= 12  # at most 4 per address


def test_a_full_server_makes_room_for_a_new_address_at_the_most_crowded_one(caplog):
    caplog.set_level(logging.INFO, logger="p1lora.receiver.raw_server")
    with RawTelegramServer("127.0.0.1", 0, max_clients=4) as server, _sockets() as opened:
        opened += [_connect(server, ATTACKER) for _ in range(4)]
        assert wait_until(lambda: server.client_count == 4)
        home_assistant = _connect(server, HOME_ASSISTANT)
        opened.append(home_assistant)
        assert wait_until(lambda: server.stats().accepted == 5)
        assert _served(server, home_assistant, 4)
        assert server.stats().evicted == 1
        assert server.client_count == 4
        # The attacker cannot take the slot back from its own crowded address...
        opened.append(_connect(server, ATTACKER))
        assert wait_until(lambda: server.stats().refused == 1)
        assert _served(server, home_assistant, 4)
    assert "to make room for" in caplog.text


def test_equal_shares_are_first_come_first_served():
    """One connection per address everywhere: nobody is evicted, the newcomer is refused."""
    with RawTelegramServer("127.0.0.1", 0, max_clients=2) as server, _sockets() as opened:
        first, second = _connect(server, "127.0.0.3"), _connect(server, "127.0.0.4")
        opened += [first, second]
        assert wait_until(lambda: server.client_count == 2)
        third = _connect(server, "127.0.0.5")
        opened.append(third)
        assert wait_until(lambda: server.stats().refused == 1)
        assert _served(server, first, 2)
        assert _served(server, second, 2)
        assert server.stats().evicted == 0


def test_a_refusal_flood_logs_one_warning_then_a_summary_per_minute(caplog):
    """Before: every refused connection logged a WARNING (86 lines/s from one process)."""
    clock = Clock()
    caplog.set_level(logging.INFO, logger="p1lora.receiver.raw_server")
    with (
        RawTelegramServer("127.0.0.1", 0, max_clients=1, clock=clock) as server,
        _sockets() as opened,
    ):
        opened.append(_connect(server, HOME_ASSISTANT))
        assert wait_until(lambda: server.client_count == 1)
        for _ in range(40):
            extra = _connect(server, ATTACKER)
            opened.append(extra)
        assert wait_until(lambda: server.stats().refused == 40)
        refusing = [r for r in caplog.records if "refus" in r.getMessage()]
        assert len(refusing) == 1
        assert refusing[0].levelno == logging.WARNING
        clock.now += 61.0
        assert wait_until(lambda: "39 more connections" in caplog.text)
        clock.now += 61.0  # a quiet minute: no summary, and the next refusal is news again
        opened.append(_connect(server, ATTACKER))
        assert wait_until(lambda: server.stats().refused == 41)
        assert wait_until(
            lambda: len([r for r in caplog.records if "refusing" in r.getMessage()]) == 2
        )
    summaries = [r for r in caplog.records if "more connections" in r.getMessage()]
    assert len(summaries) == 1


@pytest.mark.parametrize("limit", [0, -1])
def test_the_per_address_limit_must_be_positive(limit):
    with pytest.raises(ValueError, match="max_clients_per_peer"):
        RawTelegramServer("127.0.0.1", 0, max_clients_per_peer=limit)
