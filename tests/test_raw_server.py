"""The raw telegram server, read by dsmr_parser's own clients and by misbehaving ones."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import threading
import time

import pytest
from dsmr_parser import obis_references as obis
from dsmr_parser import telegram_specifications
from dsmr_parser.clients.protocol import create_tcp_dsmr_reader
from dsmr_parser.clients.socket_ import SocketReader

from p1lora.common.crc16 import crc16_arc
from p1lora.receiver.raw_server import RawTelegramServer
from tests.conftest import telegram_bytes
from tests.helpers_mqtt import wait_until

#: Fixtures that carry a CRC and that dsmr_parser's V5 specification parses.
CRC_FIXTURES = [
    "V5.txt",
    "V4_2.txt",
    "V5_TWO_MBUS.txt",
    "FLUVIUS_V171.txt",
    "FLUVIUS_V171_ALT.txt",
    "UNPADDED_CRC.txt",
    "V5_EON_HU.txt",
]


def with_power(template: bytes, watts: int) -> bytes:
    """The V5 fixture with another instantaneous power and a correct new CRC."""
    body = template[: template.index(b"!") + 1]
    kw = f"{watts / 1000:06.3f}".encode()
    body = re.sub(rb"1-0:1\.7\.0\(\d\d\.\d\d\d\*kW\)", b"1-0:1.7.0(" + kw + b"*kW)", body)
    return body + f"{crc16_arc(body):04X}\r\n".encode()


def evolving_stream(count: int) -> list[bytes]:
    template = telegram_bytes("V5.txt")
    return [with_power(template, 100 + i) for i in range(count)]


def recv_exactly(sock: socket.socket, size: int, timeout: float = 10.0) -> bytes:
    sock.settimeout(timeout)
    chunks = bytearray()
    while len(chunks) < size:
        data = sock.recv(size - len(chunks))
        if not data:
            break
        chunks += data
    return bytes(chunks)


@pytest.fixture
def server():
    with RawTelegramServer("127.0.0.1", 0) as srv:
        yield srv


def test_evolving_stream_helper_makes_valid_distinct_telegrams():
    stream = evolving_stream(3)
    assert len(set(stream)) == 3
    for telegram in stream:
        body, crc = telegram.rsplit(b"!", 1)
        assert int(crc.strip(), 16) == crc16_arc(body + b"!")


# ---------------------------------------------------------------- a real client we did not write


def test_dsmr_parser_socket_reader_gets_every_telegram_crc_valid(server: RawTelegramServer):
    """dsmr_parser's SocketReader drops telegrams whose CRC fails; we must get all of them."""
    fixtures = [telegram_bytes(name) for name in CRC_FIXTURES]
    stream = fixtures + evolving_stream(100) + fixtures
    reader = SocketReader("127.0.0.1", server.port, telegram_specifications.V5)
    parsed: list[object] = []
    done = threading.Event()

    def consume() -> None:
        for telegram in reader.read():
            parsed.append(telegram)
            if len(parsed) == len(stream):
                break
        done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    assert server.wait_for_clients(1, 10)
    for index, telegram in enumerate(stream):
        server.broadcast(telegram)
        # A meter sends one telegram a second; keep the burst within the server's queue.
        assert wait_until(lambda: len(parsed) >= index - 8 or done.is_set())  # noqa: B023
    assert done.wait(20), f"dsmr_parser read {len(parsed)} of {len(stream)} telegrams"
    assert len(parsed) == len(stream)
    # Values survive the trip: the evolving power readings, in order.
    powers = [
        t[obis.CURRENT_ELECTRICITY_USAGE].value for t in parsed[len(fixtures) : -len(fixtures)]
    ]
    assert [int(p * 1000) for p in powers] == list(range(100, 200))


def test_home_assistant_asyncio_tcp_reader(server: RawTelegramServer):
    """create_tcp_dsmr_reader is what Home Assistant's DSMR integration uses in network mode."""
    stream = evolving_stream(20)
    received: list[object] = []

    async def main() -> None:
        got_all = asyncio.Event()

        def callback(telegram: object) -> None:
            received.append(telegram)
            if len(received) == len(stream):
                got_all.set()

        transport, _protocol = await create_tcp_dsmr_reader("127.0.0.1", server.port, "5", callback)
        try:
            connected = await asyncio.to_thread(server.wait_for_clients, 1, 10)
            assert connected
            for index, telegram in enumerate(stream):
                server.broadcast(telegram)
                while len(received) < index - 8:  # paced like a meter, see above
                    await asyncio.sleep(0.001)
            await asyncio.wait_for(got_all.wait(), 20)
        finally:
            transport.close()

    asyncio.run(main())
    assert len(received) == len(stream)
    assert received[5][obis.CURRENT_ELECTRICITY_USAGE].value * 1000 == 105


# ---------------------------------------------------------------- stream semantics


def test_byte_exact_stream_to_several_clients():
    stream = [telegram_bytes(name) for name in CRC_FIXTURES] + evolving_stream(30)
    expected = b"".join(stream)
    # A burst far faster than any meter: the queue must hold it while clients read later.
    server = RawTelegramServer("127.0.0.1", 0, max_queued=len(stream))
    server.start()
    clients = [socket.create_connection(("127.0.0.1", server.port)) for _ in range(3)]
    try:
        assert server.wait_for_clients(3, 10)
        for telegram in stream:
            server.broadcast(telegram)
        for client in clients:
            assert recv_exactly(client, len(expected)) == expected
        for client in clients:
            client.close()
        assert wait_until(lambda: server.client_count == 0)
        stats = server.stats()
        assert stats.telegrams == len(stream)
        assert stats.bytes_sent == 3 * len(expected)
        assert (stats.accepted, stats.lagging_disconnects) == (3, 0)
    finally:
        for client in clients:
            client.close()
        server.close()


def test_new_client_starts_at_the_next_whole_telegram(server: RawTelegramServer):
    first, second = evolving_stream(2)
    with socket.create_connection(("127.0.0.1", server.port)) as early:
        assert server.wait_for_clients(1, 10)
        server.broadcast(first)
        assert recv_exactly(early, len(first)) == first
        with socket.create_connection(("127.0.0.1", server.port)) as late:
            assert server.wait_for_clients(2, 10)
            server.broadcast(second)
            assert recv_exactly(late, len(second)) == second
            assert recv_exactly(early, len(second)) == second


def test_stuck_client_is_disconnected_and_never_blocks_the_others(caplog):
    caplog.set_level(logging.INFO, logger="p1lora.receiver.raw_server")
    stream = evolving_stream(120)
    with RawTelegramServer("127.0.0.1", 0, max_queued=8, send_buffer=4096) as server:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stuck.connect(("127.0.0.1", server.port))
        healthy = socket.create_connection(("127.0.0.1", server.port))
        try:
            assert server.wait_for_clients(2, 10)
            slowest = 0.0
            for telegram in stream:
                started = time.perf_counter()
                server.broadcast(telegram)
                slowest = max(slowest, time.perf_counter() - started)
                # The healthy client keeps up (reads each telegram as it comes).
                assert recv_exactly(healthy, len(telegram)) == telegram
            assert wait_until(lambda: server.stats().lagging_disconnects == 1)
            assert server.client_count == 1
            # Not a speed test: a broadcast that waited on the stuck socket would block until
            # the 60 s stall timeout; anything far below that proves it never waits on a client.
            assert slowest < 5.0, f"broadcast blocked for {slowest:.3f} s"
            # The stuck client got whole telegrams only, then its connection was closed.
            stuck.settimeout(10)
            data = bytearray()
            while chunk := stuck.recv(65536):
                data += chunk
            assert 0 < len(data) < len(b"".join(stream))
            assert b"".join(stream).startswith(bytes(data))
        finally:
            stuck.close()
            healthy.close()
    assert "behind" in caplog.text


def test_stalled_client_is_disconnected_after_the_stall_timeout():
    big = evolving_stream(1)[0] * 40  # far more than the socket buffers hold
    with RawTelegramServer("127.0.0.1", 0, stall_timeout=0.2, send_buffer=4096) as server:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        stuck.connect(("127.0.0.1", server.port))
        try:
            assert server.wait_for_clients(1, 10)
            server.broadcast(big)
            assert wait_until(lambda: server.stats().lagging_disconnects == 1, timeout=10)
            assert server.client_count == 0
        finally:
            stuck.close()


def test_client_leaving_is_noticed_without_traffic(server: RawTelegramServer):
    client = socket.create_connection(("127.0.0.1", server.port))
    assert server.wait_for_clients(1, 10)
    client.sendall(b"clients may talk; it is ignored\r\n")
    client.close()
    assert wait_until(lambda: server.client_count == 0)
    server.broadcast(evolving_stream(1)[0])  # nobody to send to: fine
    assert server.stats().lagging_disconnects == 0


def test_client_limit_refuses_extra_connections(caplog):
    with RawTelegramServer("127.0.0.1", 0, max_clients=1) as server:
        first = socket.create_connection(("127.0.0.1", server.port))
        assert server.wait_for_clients(1, 10)
        second = socket.create_connection(("127.0.0.1", server.port))
        try:
            second.settimeout(10)
            assert second.recv(10) == b""  # closed by the server
            assert wait_until(lambda: server.stats().refused == 1)
            telegram = evolving_stream(1)[0]
            server.broadcast(telegram)
            assert recv_exactly(first, len(telegram)) == telegram
        finally:
            first.close()
            second.close()
    assert "refusing" in caplog.text


def test_close_flushes_queued_telegrams_then_ends_the_stream():
    stream = evolving_stream(10)
    server = RawTelegramServer("127.0.0.1", 0)
    server.start()
    client = socket.create_connection(("127.0.0.1", server.port))
    try:
        assert server.wait_for_clients(1, 10)
        for telegram in stream:
            server.broadcast(telegram)
        server.close()
        expected = b"".join(stream)
        assert recv_exactly(client, len(expected) + 1) == expected  # then EOF
        server.broadcast(stream[0])  # after close: ignored, no error
        server.close()  # idempotent
    finally:
        client.close()


def test_port_in_use_gives_a_clear_error():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        server = RawTelegramServer("127.0.0.1", port)
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.start()


def test_bad_arguments():
    with pytest.raises(ValueError, match="port"):
        RawTelegramServer("127.0.0.1", 70000)
    with pytest.raises(ValueError):
        RawTelegramServer("127.0.0.1", 0, max_queued=0)
