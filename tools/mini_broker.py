"""A small pure-Python MQTT 3.1.1 broker, so the demo runs where Mosquitto is not installed.

`p1-lora demo` wants a real broker between the receiver and the live view; installing Mosquitto
needs root, and the demo must not. This broker speaks enough MQTT 3.1.1 for the bridge, Home
Assistant-style subscribers and `mosquitto_sub`, with the standard library only (asyncio):

- CONNECT/CONNACK (anonymous; user names and passwords are accepted and ignored), protocol
  levels 4 (3.1.1) and 3 (3.1), client-id takeover, clean and persistent sessions (persistent
  sessions keep their subscriptions and, bounded, their QoS 1 messages while offline);
- PUBLISH at QoS 0 and 1 (PUBACK); QoS 2 from clients is accepted (PUBREC/PUBREL/PUBCOMP) and
  delivered at most at QoS 1, which SUBACK grants as the maximum;
- SUBSCRIBE/SUBACK with `+` and `#`, UNSUBSCRIBE/UNSUBACK, topics starting with `$` hidden from
  leading wildcards;
- retained messages (an empty retained payload deletes), sent with the retain flag on subscribe;
- last will on any end of a connection other than DISCONNECT (socket closed, keepalive
  expired after 1.5 x keepalive, protocol error);
- PINGREQ/PINGRESP, DISCONNECT.

It is **not** a production broker: no authentication, no TLS, no persistence to disk, no MQTT 5.
It listens on loopback by default and warns when told otherwise. A client that stops reading is
disconnected once its unsent output passes `max_backlog` bytes, so one stuck subscriber cannot
make the broker's memory grow.

Use `MiniBroker` inside an asyncio program, `MiniBrokerThread` from threaded code (the demo and
the tests), or run it: `python -m p1lora.tools.mini_broker --port 1883`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import itertools
import logging
import signal
import struct
import sys
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "MiniBroker",
    "MiniBrokerThread",
    "configure",
    "main",
    "run",
    "topic_matches",
    "valid_filter",
]

#: Named explicitly so that `python -m` (where __name__ is "__main__") logs under the same name.
logger = logging.getLogger("p1lora.tools.mini_broker")

# Control packet types (MQTT 3.1.1 section 2.2.1).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14

#: CONNACK return codes.
ACCEPTED, BAD_PROTOCOL, ID_REJECTED = 0, 1, 2
#: SUBACK return code for a refused filter.
SUBSCRIBE_FAILURE = 0x80
#: The highest QoS this broker delivers with.
MAX_QOS = 1
#: A client must send CONNECT within this many seconds of opening the connection.
CONNECT_TIMEOUT_S = 10.0


class ProtocolError(Exception):
    """The peer broke MQTT 3.1.1; the connection is closed (and its will published)."""


def valid_filter(topic_filter: str) -> bool:
    """True when `topic_filter` is a well-formed subscription filter."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def topic_matches(topic_filter: str, topic: str) -> bool:
    """MQTT topic matching; filters starting with a wildcard do not see `$` topics."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True  # also matches the parent level ("a/#" matches "a")
        if index >= len(topic_levels):
            return False
        if level not in ("+", topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)


# ---------------------------------------------------------------------- wire format


def _remaining_length(length: int) -> bytes:
    out = bytearray()
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _packet(packet_type: int, flags: int, body: bytes) -> bytes:
    return bytes([(packet_type << 4) | flags]) + _remaining_length(len(body)) + body


def _string(text: str) -> bytes:
    data = text.encode("utf-8")
    return struct.pack("!H", len(data)) + data


class _Reader:
    """Cursor over one packet's body; every read is bounds-checked."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, count: int) -> bytes:
        if count > self.remaining():
            raise ProtocolError("packet shorter than its fields")
        chunk = self.data[self.pos : self.pos + count]
        self.pos += count
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def uint16(self) -> int:
        value: int = struct.unpack("!H", self.take(2))[0]
        return value

    def binary(self) -> bytes:
        return self.take(self.uint16())

    def string(self) -> str:
        try:
            text = self.binary().decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("string is not UTF-8") from None
        if "\x00" in text:
            raise ProtocolError("string contains NUL")
        return text


# ---------------------------------------------------------------------- broker state


@dataclass(frozen=True, slots=True)
class _Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool = False


@dataclass(eq=False)
class _Session:
    client_id: str
    clean: bool
    subscriptions: dict[str, int] = field(default_factory=dict)
    #: QoS 1 messages sent and not yet acknowledged, by packet id (resent on reconnect).
    inflight: dict[int, _Message] = field(default_factory=dict)
    #: QoS 1 messages for a persistent session whose client is offline.
    offline: deque[_Message] = field(default_factory=deque)
    connection: _Connection | None = None
    _ids: itertools.cycle[int] = field(default_factory=lambda: itertools.cycle(range(1, 65536)))

    def next_packet_id(self) -> int:
        for _ in range(65535):
            packet_id = next(self._ids)
            if packet_id not in self.inflight:
                return packet_id
        raise ProtocolError("no free packet identifier")


@dataclass(eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    peer: str
    session: _Session | None = None
    will: _Message | None = None
    keepalive: int = 0
    clean_exit: bool = False
    #: QoS 2 packet ids received and not yet released (PUBREL).
    qos2_pending: set[int] = field(default_factory=set)
    task: asyncio.Task[None] | None = None


class MiniBroker:
    """An asyncio MQTT 3.1.1 broker (see the module docstring for what it supports)."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        max_packet_size: int = 256 * 1024,
        max_backlog: int = 1024 * 1024,
        max_offline_messages: int = 1000,
        max_retained: int = 10_000,
    ) -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port {port} is outside 0..65535")
        self.host = host
        self._requested_port = port
        self.max_packet_size = max_packet_size
        self.max_backlog = max_backlog
        self.max_offline_messages = max_offline_messages
        self.max_retained = max_retained
        self._server: asyncio.Server | None = None
        self._sessions: dict[str, _Session] = {}
        self._retained: dict[str, _Message] = {}
        self._connections: set[_Connection] = set()
        self._anonymous_ids = itertools.count(1)
        self.messages_received = 0

    @property
    def port(self) -> int:
        """The bound port (after `start()`), else the requested one."""
        if self._server is not None and self._server.sockets:
            return int(self._server.sockets[0].getsockname()[1])
        return self._requested_port

    async def start(self) -> None:
        """Bind and start accepting connections."""
        if not _is_loopback(self.host):
            logger.warning(
                "mini broker listening on %s: anyone who can reach it can read and publish "
                "without a password; it is meant for the local demo",
                self.host,
            )
        self._server = await asyncio.start_server(self._handle, self.host, self._requested_port)
        logger.info("mini broker listening on %s:%d", self.host, self.port)

    async def close(self) -> None:
        """Stop accepting and close every connection (no wills: the broker is going away)."""
        if self._server is not None:
            self._server.close()
        handlers = [c.task for c in self._connections if c.task is not None]
        for connection in list(self._connections):
            connection.clean_exit = True
            connection.writer.transport.abort()
        # Aborted transports end every handler's read at once; cancel only stragglers.
        _, stragglers = await asyncio.wait(handlers, timeout=5) if handlers else (set(), set())
        for task in stragglers:
            task.cancel()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
            self._server = None

    # ------------------------------------------------------------------ connections

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        connection = _Connection(reader, writer, peer, task=asyncio.current_task())
        self._connections.add(connection)
        try:
            await self._serve(connection)
        except ProtocolError as exc:
            logger.info("mini broker: closing %s: %s", self._name(connection), exc)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError) as exc:
            logger.debug("mini broker: %s went away: %r", self._name(connection), exc)
        except asyncio.CancelledError:
            # Only close() cancels a handler. Ending normally keeps asyncio's stream callback
            # from logging the cancellation as an error.
            logger.debug("mini broker: handler for %s cancelled", self._name(connection))
        except Exception:
            logger.exception("mini broker: unexpected error serving %s", self._name(connection))
        finally:
            self._connections.discard(connection)
            self._end(connection)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    @staticmethod
    def _name(connection: _Connection) -> str:
        if connection.session is not None:
            return f"{connection.session.client_id!r} ({connection.peer})"
        return connection.peer

    async def _read_packet(
        self, connection: _Connection, timeout: float | None
    ) -> tuple[int, int, bytes]:
        """The next packet; TimeoutError when none arrives in full within `timeout` seconds."""
        return await asyncio.wait_for(self._read_packet_now(connection), timeout)

    async def _read_packet_now(self, connection: _Connection) -> tuple[int, int, bytes]:
        header = await connection.reader.readexactly(1)
        length = 0
        for shift in range(0, 28, 7):
            byte = (await connection.reader.readexactly(1))[0]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                break
        else:
            raise ProtocolError("malformed remaining length")
        if length > self.max_packet_size:
            raise ProtocolError(f"packet of {length} bytes exceeds {self.max_packet_size}")
        body = await connection.reader.readexactly(length)
        return header[0] >> 4, header[0] & 0x0F, body

    async def _serve(self, connection: _Connection) -> None:
        try:
            packet_type, flags, body = await self._read_packet(connection, CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise ProtocolError(f"no CONNECT within {CONNECT_TIMEOUT_S:g} s") from None
        if packet_type != CONNECT:
            raise ProtocolError("first packet is not CONNECT")
        if not await self._connect(connection, _Reader(body)):
            return
        while True:
            timeout = connection.keepalive * 1.5 if connection.keepalive else None
            try:
                packet_type, flags, body = await self._read_packet(connection, timeout)
            except TimeoutError:
                raise ProtocolError(f"keepalive of {connection.keepalive} s expired") from None
            if packet_type == DISCONNECT:
                connection.clean_exit = True
                connection.will = None
                return
            self._dispatch(connection, packet_type, flags, _Reader(body))

    async def _connect(self, connection: _Connection, body: _Reader) -> bool:  # noqa: C901 - MQTT 3.1.1 CONNECT, field by field in the spec's order
        protocol = body.string()
        level = body.byte()
        if (protocol, level) not in (("MQTT", 4), ("MQIsdp", 3)):
            self._send(connection, _packet(CONNACK, 0, bytes([0, BAD_PROTOCOL])))
            raise ProtocolError(f"unsupported protocol {protocol!r} level {level}")
        flags = body.byte()
        if flags & 0x01:
            raise ProtocolError("reserved CONNECT flag set")
        clean = bool(flags & 0x02)
        connection.keepalive = body.uint16()
        client_id = body.string()
        if flags & 0x04:
            will_qos = (flags >> 3) & 0x03
            if will_qos > 2:
                raise ProtocolError("will QoS 3")
            will_topic = body.string()
            if not will_topic or "+" in will_topic or "#" in will_topic:
                raise ProtocolError("invalid will topic")
            connection.will = _Message(
                will_topic, body.binary(), min(will_qos, MAX_QOS), bool(flags & 0x20)
            )
        if flags & 0x80:
            body.string()  # user name: accepted, not checked
        if flags & 0x40:
            body.binary()  # password: accepted, never stored or logged
        if not client_id:
            if not clean:
                self._send(connection, _packet(CONNACK, 0, bytes([0, ID_REJECTED])))
                return False
            client_id = f"mini-auto-{next(self._anonymous_ids)}"
        existing = self._sessions.get(client_id)
        if existing is not None and existing.connection is not None:
            old = existing.connection
            logger.info("mini broker: %r connected again; closing its old connection", client_id)
            old.clean_exit = True  # a takeover is not a failure of the client
            old.session = None
            old.writer.close()
            existing.connection = None
        if clean or existing is None:
            session = _Session(client_id, clean)
            session_present = False
        else:
            session = existing
            session_present = True
        session.clean = clean
        self._sessions[client_id] = session
        session.connection = connection
        connection.session = session
        self._send(connection, _packet(CONNACK, 0, bytes([int(session_present), ACCEPTED])))
        logger.info(
            "mini broker: %r connected from %s (keepalive %d s%s)",
            client_id,
            connection.peer,
            connection.keepalive,
            ", persistent session" if not clean else "",
        )
        if session_present:
            for packet_id, message in list(session.inflight.items()):
                self._send_publish(connection, message, packet_id=packet_id, dup=True)
            while session.offline:
                self._deliver(session, session.offline.popleft())
        return True

    def _end(self, connection: _Connection) -> None:
        """Connection over: publish the will unless it ended with DISCONNECT; drop clean sessions."""
        session = connection.session
        if session is None:
            return
        if session.connection is connection:
            session.connection = None
            if session.clean:
                self._sessions.pop(session.client_id, None)
        if not connection.clean_exit and connection.will is not None:
            logger.info("mini broker: publishing the last will of %r", session.client_id)
            self._publish(connection.will)
        logger.info("mini broker: %r disconnected", session.client_id)

    # ------------------------------------------------------------------ packets

    def _dispatch(
        self, connection: _Connection, packet_type: int, flags: int, body: _Reader
    ) -> None:
        session = connection.session
        assert session is not None
        if packet_type == PUBLISH:
            self._on_publish(connection, flags, body)
        elif packet_type == PUBACK:
            session.inflight.pop(body.uint16(), None)
        elif packet_type == PUBREL:
            packet_id = body.uint16()
            connection.qos2_pending.discard(packet_id)
            self._send(connection, _packet(PUBCOMP, 0, struct.pack("!H", packet_id)))
        elif packet_type in (PUBREC, PUBCOMP):
            body.uint16()  # never expected: this broker does not send QoS 2
        elif packet_type == SUBSCRIBE:
            if flags != 0x02:
                raise ProtocolError("SUBSCRIBE with wrong flags")
            self._on_subscribe(connection, session, body)
        elif packet_type == UNSUBSCRIBE:
            if flags != 0x02:
                raise ProtocolError("UNSUBSCRIBE with wrong flags")
            packet_id = body.uint16()
            while body.remaining():
                session.subscriptions.pop(body.string(), None)
            self._send(connection, _packet(UNSUBACK, 0, struct.pack("!H", packet_id)))
        elif packet_type == PINGREQ:
            self._send(connection, _packet(PINGRESP, 0, b""))
        else:
            raise ProtocolError(f"unexpected packet type {packet_type}")

    def _on_publish(self, connection: _Connection, flags: int, body: _Reader) -> None:
        qos = (flags >> 1) & 0x03
        if qos == 3:
            raise ProtocolError("PUBLISH with QoS 3")
        topic = body.string()
        if not topic or "+" in topic or "#" in topic:
            raise ProtocolError(f"PUBLISH to invalid topic {topic!r}")
        packet_id = body.uint16() if qos else 0
        message = _Message(
            topic, body.take(body.remaining()), min(qos, MAX_QOS), bool(flags & 0x01)
        )
        if qos == 2:
            self._send(connection, _packet(PUBREC, 0, struct.pack("!H", packet_id)))
            if packet_id in connection.qos2_pending:
                return  # a resend before PUBREL: already delivered
            connection.qos2_pending.add(packet_id)
        self.messages_received += 1
        self._publish(message)
        if qos == 1:
            self._send(connection, _packet(PUBACK, 0, struct.pack("!H", packet_id)))

    def _on_subscribe(self, connection: _Connection, session: _Session, body: _Reader) -> None:
        packet_id = body.uint16()
        granted: list[int] = []
        accepted: list[tuple[str, int]] = []
        if not body.remaining():
            raise ProtocolError("SUBSCRIBE without topic filters")
        while body.remaining():
            topic_filter = body.string()
            requested = body.byte()
            if requested > 2 or not valid_filter(topic_filter):
                granted.append(SUBSCRIBE_FAILURE)
                continue
            qos = min(requested, MAX_QOS)
            session.subscriptions[topic_filter] = qos
            granted.append(qos)
            accepted.append((topic_filter, qos))
        self._send(connection, _packet(SUBACK, 0, struct.pack("!H", packet_id) + bytes(granted)))
        for topic_filter, qos in accepted:
            for message in list(self._retained.values()):
                if topic_matches(topic_filter, message.topic):
                    retained = _Message(message.topic, message.payload, min(qos, message.qos), True)
                    self._deliver(session, retained, keep_retain=True)

    # ------------------------------------------------------------------ routing

    def _publish(self, message: _Message) -> None:
        """Route a message to every matching session; store it when retained."""
        if message.retain:
            if not message.payload:
                self._retained.pop(message.topic, None)
            elif message.topic in self._retained or len(self._retained) < self.max_retained:
                self._retained[message.topic] = message
            else:
                logger.warning(
                    "mini broker: %d retained topics stored; not retaining %s",
                    self.max_retained,
                    message.topic,
                )
        for session in list(self._sessions.values()):
            granted = [
                qos
                for topic_filter, qos in session.subscriptions.items()
                if topic_matches(topic_filter, message.topic)
            ]
            if granted:
                # One copy per client, at the highest QoS any matching subscription granted.
                self._deliver(
                    session,
                    _Message(message.topic, message.payload, min(message.qos, max(granted))),
                )

    def _deliver(self, session: _Session, message: _Message, *, keep_retain: bool = False) -> None:
        connection = session.connection
        if connection is None:
            if message.qos > 0 and not session.clean:
                if len(session.offline) >= self.max_offline_messages:
                    session.offline.popleft()
                session.offline.append(message)
            return
        packet_id = 0
        if message.qos > 0:
            packet_id = session.next_packet_id()
            session.inflight[packet_id] = message
        self._send_publish(
            connection, message, packet_id=packet_id, retain=keep_retain and message.retain
        )

    def _send_publish(
        self,
        connection: _Connection,
        message: _Message,
        *,
        packet_id: int,
        dup: bool = False,
        retain: bool = False,
    ) -> None:
        flags = (message.qos << 1) | (0x08 if dup else 0) | (0x01 if retain else 0)
        body = _string(message.topic)
        if message.qos > 0:
            body += struct.pack("!H", packet_id)
        self._send(connection, _packet(PUBLISH, flags, body + message.payload))

    def _send(self, connection: _Connection, data: bytes) -> None:
        writer = connection.writer
        if writer.is_closing():
            return
        if writer.transport.get_write_buffer_size() > self.max_backlog:
            logger.warning(
                "mini broker: %s does not read its messages (%d bytes waiting); disconnecting",
                self._name(connection),
                writer.transport.get_write_buffer_size(),
            )
            writer.transport.abort()
            return
        writer.write(data)


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# ---------------------------------------------------------------------- threaded wrapper


class MiniBrokerThread:
    """Run a `MiniBroker` on its own event loop in a daemon thread (for threaded programs).

    `start()` returns once the port is bound (and raises the bind error if it is not);
    `port` is then the real port, useful with `port=0`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **options: int) -> None:
        self.broker = MiniBroker(host, port, **options)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self.broker.host

    @property
    def port(self) -> int:
        return self.broker.port

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("MiniBrokerThread.start() called twice")
        self._thread = threading.Thread(target=self._run, name="mini-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("mini broker did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        # asyncio.run cancels and finishes whatever is still pending before closing the loop.
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        try:
            await self.broker.start()
        except OSError as exc:
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        await self._stopped.wait()
        await self.broker.close()

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopped, thread = self._loop, self._stopped, self._thread
        if loop is None or stopped is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> MiniBrokerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# ---------------------------------------------------------------------- command line


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of the stand-alone broker (also usable as a `p1-lora` subcommand)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default: 127.0.0.1, loopback only)",
    )
    parser.add_argument("--port", type=int, default=1883, help="TCP port (default: 1883)")


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted. 0 on Ctrl-C/SIGTERM, 1 when the port cannot be bound, 2 for usage."""
    if not 0 <= args.port <= 65535:
        logger.error("mini broker: --port %d is outside 0..65535", args.port)
        return 2
    broker = MiniBroker(args.host, args.port)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(signum, stop.set)
        await broker.start()
        try:
            await stop.wait()
        finally:
            await broker.close()
            logger.info("mini broker stopped")

    try:
        asyncio.run(serve())
    except OSError as exc:
        logger.error(
            "mini broker: cannot listen on %s:%d: %s", args.host, args.port, exc.strerror or exc
        )
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    from p1lora.common.logging_setup import add_logging_arguments, setup_logging  # noqa: PLC0415

    parser = argparse.ArgumentParser(
        prog="python -m p1lora.tools.mini_broker",
        description="A small MQTT 3.1.1 broker for the p1-lora demo (no authentication, no TLS).",
    )
    add_logging_arguments(parser)
    configure(parser)
    args = parser.parse_args(argv)
    setup_logging(args.log_level)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
