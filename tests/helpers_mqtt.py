"""Test helpers for MQTT: a collecting subscriber, a TCP gate, and a condition poller.

`MqttCollector` is an independent paho client that records every message it receives and lets a
test wait for a specific one with a timeout (no fixed sleeps). It re-subscribes after a broker
restart. `TcpGate` is a loopback TCP forwarder in front of a broker that a test can close
(connections refused), open again on the same port, or cut (drop live connections without an
MQTT DISCONNECT, so the broker fires last wills): it makes "the broker is unreachable" a
deterministic state for the client under test while the collector stays connected.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DEFAULT_TIMEOUT = 10.0


def wait_until(predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT) -> bool:
    """Poll `predicate` until it is true or `timeout` passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return predicate()
        time.sleep(0.005)


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int


class MqttCollector:
    """Subscribe to filters and collect messages; `wait_for` blocks until a match or timeout."""

    def __init__(
        self,
        host: str,
        port: int,
        filters: Iterable[str] = ("#",),
        *,
        qos: int = 1,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.filters = list(filters)
        self.qos = qos
        self.messages: list[Received] = []
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"collector-{uuid.uuid4().hex[:8]}"
        )
        if username:
            self._client.username_pw_set(username, password)
        self._client.reconnect_delay_set(0.05, 0.2)  # type: ignore[arg-type]
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.on_disconnect = self._on_disconnect
        self._client.connect_async(host, port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(DEFAULT_TIMEOUT):
            self.close()
            raise TimeoutError(f"collector could not subscribe at {host}:{port}")

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if not reason_code.is_failure:
            client.subscribe([(f, self.qos) for f in self.filters])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self._subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._subscribed.clear()

    def _on_message(self, client, userdata, message) -> None:
        with self._cond:
            self.messages.append(
                Received(message.topic, bytes(message.payload), bool(message.retain), message.qos)
            )
            self._cond.notify_all()

    def wait_subscribed(self, timeout: float = DEFAULT_TIMEOUT) -> bool:
        return self._subscribed.wait(timeout)

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def payloads(self, topic: str) -> list[bytes]:
        return [m.payload for m in self.on(topic)]

    def wait_for(
        self,
        topic: str,
        payload: bytes | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retain: bool | None = None,
    ) -> Received:
        """The first message (already received or arriving) on `topic` matching the criteria."""

        def find() -> Received | None:
            for message in self.messages:
                if message.topic != topic:
                    continue
                if payload is not None and message.payload != payload:
                    continue
                if retain is not None and message.retain != retain:
                    continue
                return message
            return None

        with self._cond:
            self._cond.wait_for(lambda: find() is not None, timeout)
            found = find()
            if found is None:
                seen = [(m.topic, m.payload[:60]) for m in self.messages][-20:]
                raise AssertionError(
                    f"no message on {topic!r} with payload {payload!r} within {timeout} s; "
                    f"last received: {seen}"
                )
            return found

    def wait_count(self, topic: str, count: int, timeout: float = DEFAULT_TIMEOUT) -> list[bytes]:
        with self._cond:
            if not self._cond.wait_for(
                lambda: sum(1 for m in self.messages if m.topic == topic) >= count, timeout
            ):
                got = sum(1 for m in self.messages if m.topic == topic)
                raise AssertionError(f"{got} of {count} messages on {topic!r} within {timeout} s")
            return [m.payload for m in self.messages if m.topic == topic]

    def publish(
        self, topic: str, payload: bytes | str, *, retain: bool = False, qos: int = 1
    ) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(DEFAULT_TIMEOUT)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def __enter__(self) -> MqttCollector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class TcpGate:
    """A loopback TCP forwarder to `target` that can be closed, reopened and cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._connections: list[socket.socket] = []
        self.accepted = 0

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._accept_thread = threading.Thread(
            target=self._accept_loop, args=(listener,), daemon=True, name="tcp-gate"
        )
        self._accept_thread.start()

    def close(self) -> None:
        """Refuse new connections and cut the live ones."""
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        if self._accept_thread is not None:
            self._accept_thread.join(5)
            self._accept_thread = None
        self.cut()

    def cut(self) -> None:
        """Drop every live connection abruptly (both sides see the socket close)."""
        with self._lock:
            connections, self._connections = self._connections, []
        for sock in connections:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _accept_loop(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._connections += [client, upstream]
                self.accepted += 1
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> TcpGate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
