"""The receiver's MQTT connection: publish, subscribe, survive broker outages.

Everything `p1-lora-rx` says to Home Assistant goes through one `MqttPublisher`. It owns a
paho-mqtt 2.x client running its own network thread (`connect_async` + `loop_start`), and adds
what a bridge that must run unattended for years needs on top of paho:

- **Never dies.** paho's network thread ends silently when a user callback raises, after which
  nothing is published again while the process looks healthy. Every callback registered with
  paho, and every handler and hook called from it, is wrapped: an exception is logged with its
  traceback and counted, and the thread carries on.
- **Broker down is a state, not an error.** `start()` returns at once; the client connects when
  the broker is reachable and reconnects forever with exponential backoff and jitter
  (`common.backoff.Backoff`, fed into paho's reconnect delay before each wait). State changes
  are logged once (connected, lost, unreachable, refused), repeats only at debug level, so an
  overnight broker outage is two log lines, not thousands.
- **Availability.** The last will is a retained `offline` on `<base>/bridge/availability`; every
  successful connect publishes a retained `online`; `stop()` publishes `offline` itself before
  disconnecting, because a clean DISCONNECT discards the will.
- **Bounded memory while disconnected.** Non-retained messages wait in a queue of
  `config.queue_size` messages; when it is full the oldest is dropped and counted (`dropped`).
  Retained messages never wait in that queue: the newest retained payload per topic is
  remembered and republished on every connect, which is also what restores state after a broker
  restart without persistence. Retained payloads are therefore bounded by the number of topics
  the application uses, not by the length of the outage. An empty retained payload (a delete)
  is remembered like any other, so a delete issued during an outage still happens.
- **Retained messages go out at QoS 0.** paho resends QoS 1 messages that were in flight when a
  connection dropped, and it does so *after* `on_connect` has run. A retained payload in flight
  at the moment of the drop would therefore overwrite the newer one republished on connect, and
  Home Assistant would show a stale state (or a deleted entity would come back). Sending
  retained messages at QoS 0 avoids that, and loses nothing: TCP delivers them while the
  connection lives, and when it dies the newest payload is republished on the next connect.
  Non-retained messages use the QoS the caller asks for.
- **Subscriptions survive reconnects.** `subscribe(filter, handler)` is remembered and renewed
  on every connect (the session is clean, so the broker forgets them).
- **Hooks for the Home Assistant layer.** `add_connect_hook` runs after each connect (after the
  availability, retained state and subscriptions went out), on paho's thread; the discovery
  layer subscribes to `homeassistant/status` with `subscribe()` and republishes its configs when
  Home Assistant says `online`.

Thread safety: every public method may be called from any thread, including from handlers and
hooks (which run on paho's network thread). One lock guards the publisher's state; it is held
while handing messages to paho so that the order of publishes is the order of calls, and never
while user code runs. paho calls `on_publish` with its own message lock held, which is why this
class does not use `on_publish` at all: `published` counts messages handed to a connected
client.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from p1lora.common.backoff import Backoff
from p1lora.receiver.mqtt_config import MqttConfig

__all__ = [
    "ConnectHook",
    "MessageHandler",
    "MqttPublisher",
    "PublisherStats",
    "validate_topic",
    "validate_topic_filter",
]

logger = logging.getLogger(__name__)

#: A subscription handler: called with the topic and the raw payload of each matching message.
MessageHandler = Callable[[str, bytes], None]
#: Called (without arguments) on paho's thread after every successful connect.
ConnectHook = Callable[[], None]

ONLINE = b"online"
OFFLINE = b"offline"
#: QoS for the availability messages: they must not be lost silently.
_AVAILABILITY_QOS = 1


def validate_topic(topic: str) -> None:
    """Raise ValueError for a topic nobody can publish to (empty, wildcards, NUL, too long)."""
    if not isinstance(topic, str) or not topic:
        raise ValueError("MQTT topic must be a non-empty string")
    if "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"MQTT topic {topic!r} must not contain wildcards or NUL")
    if len(topic.encode("utf-8")) > 65535:
        raise ValueError("MQTT topic is longer than 65535 bytes")


def validate_topic_filter(topic_filter: str) -> None:
    """Raise ValueError unless `topic_filter` is a valid MQTT subscription filter."""
    if not isinstance(topic_filter, str) or not topic_filter or "\x00" in topic_filter:
        raise ValueError("MQTT topic filter must be a non-empty string without NUL")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ValueError(f"MQTT topic filter {topic_filter!r}: '#' must be the last level")
        if "+" in level and level != "+":
            raise ValueError(f"MQTT topic filter {topic_filter!r}: '+' must be a whole level")


@dataclass(frozen=True, slots=True)
class PublisherStats:
    """A consistent snapshot of the publisher's state, for diagnostics entities and logs."""

    connected: bool
    #: Messages handed to a connected client (including republished retained state).
    published: int
    #: Non-retained messages dropped because the queue was full while disconnected.
    dropped: int
    #: Non-retained messages waiting for the broker right now.
    queued: int
    #: Successful connects after the first one.
    reconnects: int
    #: Connection attempts that failed (unreachable, TLS failure, refused).
    connect_failures: int
    #: Exceptions caught in callbacks, handlers and hooks.
    callback_errors: int
    #: Topics whose newest retained payload is remembered for republishing.
    retained_topics: int


@dataclass(frozen=True, slots=True)
class _Pending:
    topic: str
    payload: bytes
    qos: int


class _Client(mqtt.Client):
    """paho's client, remembering why the last connection attempt failed.

    paho's `on_connect_fail` carries no error, but "certificate verify failed" or "connection
    refused" is exactly what a user needs to read in the log; `reconnect()` is where paho's own
    loop sees that exception, so it is recorded there.
    """

    last_connect_error: BaseException | None = None
    #: True from a socket being opened until the broker's CONNACK: a close in between is a
    #: failed attempt (TLS 1.3 reports a missing client certificate only then).
    awaiting_connack: bool = False

    def reconnect(self) -> MQTTErrorCode:
        try:
            result = super().reconnect()
        except OSError as exc:
            self.last_connect_error = exc
            self.awaiting_connack = False
            raise
        self.last_connect_error = None
        self.awaiting_connack = True
        return result

    def network_thread_alive(self) -> bool:
        """Whether paho's network thread (started by `loop_start`) is still running.

        paho keeps that thread in `_thread` and clears it when `loop_forever` ends; it ends on
        `disconnect()`, and otherwise only if something inside it failed. A broker outage does
        not end it: the reconnect loop runs inside the thread.
        """
        thread: threading.Thread | None = getattr(self, "_thread", None)
        return thread is not None and thread.is_alive()


def _payload_bytes(payload: bytes | bytearray | memoryview | str) -> bytes:
    if isinstance(payload, str):
        return payload.encode("utf-8")
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    raise TypeError(f"MQTT payload must be bytes or str, not {type(payload).__name__}")


class MqttPublisher:
    """A long-lived, self-healing MQTT connection for the receiver (see the module docstring).

    Typical use::

        publisher = MqttPublisher(config)
        publisher.subscribe("homeassistant/status", on_ha_status)
        publisher.add_connect_hook(publish_discovery)
        publisher.start()
        publisher.publish("p1lora/meter/state", json_bytes, retain=True)
        ...
        publisher.stop()

    `backoff` may be injected (tests, or a daemon that wants other limits); by default it is built
    from `config.reconnect_min` / `config.reconnect_max`.
    """

    def __init__(self, config: MqttConfig, *, backoff: Backoff | None = None) -> None:
        config.check_files()
        self._config = config
        self._backoff = backoff or Backoff(config.reconnect_min, config.reconnect_max)
        self._lock = threading.Lock()
        self._state_changed = threading.Condition(self._lock)
        self._queue: deque[_Pending] = deque()
        self._retained: dict[str, bytes] = {}
        self._handlers: dict[str, list[tuple[MessageHandler, int]]] = {}
        self._subscribe_mids: dict[int, list[str]] = {}
        self._connect_hooks: list[ConnectHook] = []
        self._connected = False
        self._started = False
        self._stopping = False
        self._stopped = False
        self._ever_connected = False
        self._log_state = ""
        self._published = 0
        self._dropped = 0
        self._reconnects = 0
        self._connect_failures = 0
        self._callback_errors = 0
        self._client = self._make_client()

    # ------------------------------------------------------------------ set-up

    def _make_client(self) -> _Client:
        config = self._config
        client = _Client(
            CallbackAPIVersion.VERSION2,
            client_id=config.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        # A second line of defence behind the guards below: paho swallows what escapes anyway.
        client.suppress_exceptions = True
        client.connect_timeout = config.connect_timeout
        if config.username:
            client.username_pw_set(config.username, config.password)
        if config.tls:
            client.tls_set(
                ca_certs=str(config.ca_file) if config.ca_file else None,
                certfile=str(config.cert_file) if config.cert_file else None,
                keyfile=str(config.key_file) if config.key_file else None,
            )
            if config.tls_insecure:
                client.tls_insecure_set(True)
        client.will_set(config.availability_topic, OFFLINE, qos=_AVAILABILITY_QOS, retain=True)
        self._set_reconnect_delay(client, self._backoff.initial)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        return client

    @staticmethod
    def _set_reconnect_delay(client: mqtt.Client, delay: float) -> None:
        # paho annotates the delays as int but only ever compares and sleeps with them, so a
        # jittered float is honoured exactly. Setting min == max makes paho wait exactly `delay`
        # before its next attempt; our Backoff supplies the growth and the jitter.
        client.reconnect_delay_set(delay, delay)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ properties

    @property
    def config(self) -> MqttConfig:
        return self._config

    @property
    def availability_topic(self) -> str:
        return self._config.availability_topic

    @property
    def connected(self) -> bool:
        """True between a successful CONNACK and the loss of that connection."""
        with self._lock:
            return self._connected

    @property
    def published(self) -> int:
        with self._lock:
            return self._published

    @property
    def dropped(self) -> int:
        with self._lock:
            return self._dropped

    @property
    def reconnects(self) -> int:
        with self._lock:
            return self._reconnects

    def stats(self) -> PublisherStats:
        """All counters at one instant."""
        with self._lock:
            return PublisherStats(
                connected=self._connected,
                published=self._published,
                dropped=self._dropped,
                queued=len(self._queue),
                reconnects=self._reconnects,
                connect_failures=self._connect_failures,
                callback_errors=self._callback_errors,
                retained_topics=len(self._retained),
            )

    def topic(self, *levels: str) -> str:
        """A topic under the configured base topic."""
        return self._config.topic(*levels)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in the background; returns immediately, broker up or not."""
        with self._lock:
            if self._started or self._stopped:
                raise RuntimeError("MqttPublisher.start() called twice or after stop()")
            self._started = True
        logger.info("MQTT: connecting to %s", self._config.describe())
        self._client.connect_async(
            self._config.host, self._config.effective_port, keepalive=self._config.keepalive
        )
        self._client.loop_start()

    def stop(self, timeout: float = 5.0) -> None:
        """Say `offline`, disconnect cleanly and end the network thread.

        The explicit `offline` is needed because a clean disconnect discards the last will.
        Waits up to `timeout` seconds for the broker to acknowledge it. While the broker is
        unreachable, stopping takes up to about a second (paho checks for it between naps of its
        reconnect wait). Idempotent; a stopped publisher cannot be started again.
        """
        with self._lock:
            if not self._started or self._stopped:
                self._stopped = True
                return
            self._stopping = True
            connected = self._connected
        if connected:
            info = self._client.publish(
                self.availability_topic, OFFLINE, qos=_AVAILABILITY_QOS, retain=True
            )
            try:
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as exc:
                logger.warning("MQTT: could not publish 'offline' before disconnecting: %s", exc)
            if not info.is_published():
                logger.warning(
                    "MQTT: broker did not acknowledge 'offline' within %.1f s; the last will "
                    "will not mark the bridge offline after a clean disconnect",
                    timeout,
                )
        self._client.disconnect()
        self._client.loop_stop()
        with self._lock:
            self._connected = False
            self._stopped = True
            self._state_changed.notify_all()
        logger.info("MQTT: stopped (%s:%d)", self._config.host, self._config.effective_port)

    def __enter__(self) -> MqttPublisher:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def problem(self) -> str | None:
        """Why this publisher can no longer publish anything, for the watchdog; else None.

        Only the death of the network thread counts: an unreachable broker is a state the
        thread recovers from by itself (it keeps reconnecting), so it is not a problem here.
        """
        with self._lock:
            running = self._started and not self._stopping and not self._stopped
        if running and not self._client.network_thread_alive():
            return "the MQTT network thread is not running (nothing is published)"
        return None

    def wait_connected(self, timeout: float) -> bool:
        """Block until connected (True) or `timeout` seconds passed (False)."""
        with self._state_changed:
            return self._state_changed.wait_for(lambda: self._connected, timeout)

    # ------------------------------------------------------------------ publishing

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool:
        """Publish now if connected, else keep it for the next connection.

        Returns True when the message was handed to the connected client, False when it was kept
        for later (retained: remembered; others: queued, possibly dropping the oldest) or the
        publisher is stopped. Never blocks on the network. Raises ValueError only for a
        programming error (bad topic or QoS). Retained messages are sent at QoS 0 whatever
        `qos` says (see the module docstring for why that is more reliable here).
        """
        validate_topic(topic)
        if qos not in (0, 1):
            raise ValueError(f"QoS must be 0 or 1, got {qos!r}")
        data = _payload_bytes(payload)
        with self._lock:
            if self._stopped:
                logger.debug("MQTT: publish to %s after stop() ignored", topic)
                return False
            if retain:
                if topic != self.availability_topic:  # that one is managed here
                    self._retained[topic] = data
                return self._connected and self._send(topic, data, 0, True)
            if self._connected and self._send(topic, data, qos, False):
                return True
            self._enqueue(_Pending(topic, data, qos))
            return False

    def _enqueue(self, message: _Pending) -> None:
        """Queue for the next connection; drop the oldest when full (caller holds the lock)."""
        if len(self._queue) >= self._config.queue_size:
            dropped = self._queue.popleft()
            self._dropped += 1
            if self._dropped == 1 or self._dropped % 1000 == 0:
                logger.warning(
                    "MQTT: broker unavailable and queue full (%d messages); dropping the oldest "
                    "(%s); %d dropped so far",
                    self._config.queue_size,
                    dropped.topic,
                    self._dropped,
                )
        self._queue.append(message)

    def _send(self, topic: str, data: bytes, qos: int, retain: bool) -> bool:
        """Hand one message to paho (caller holds the lock); False if the link just went away."""
        info = self._client.publish(topic, data, qos=qos, retain=retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            self._published += 1
            return True
        # NO_CONN: the socket died and paho knows before our on_disconnect ran.
        logger.debug("MQTT: publish to %s not sent (%s)", topic, mqtt.error_string(info.rc))
        return False

    # ------------------------------------------------------------------ subscriptions

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 0) -> None:
        """Call `handler(topic, payload)` for every message matching `topic_filter`.

        Renewed on every connect. Handlers run on paho's network thread, must be quick, and may
        call `publish()`; an exception in a handler is logged and does not affect others.
        """
        validate_topic_filter(topic_filter)
        if qos not in (0, 1):
            raise ValueError(f"QoS must be 0 or 1, got {qos!r}")
        with self._lock:
            entries = self._handlers.setdefault(topic_filter, [])
            entries.append((handler, qos))
            if self._connected:
                self._subscribe_locked([topic_filter])

    def unsubscribe(self, topic_filter: str, handler: MessageHandler | None = None) -> None:
        """Remove one handler (or all) for `topic_filter`; unsubscribes when none are left."""
        with self._lock:
            entries = self._handlers.get(topic_filter)
            if entries is None:
                return
            if handler is not None:
                entries[:] = [entry for entry in entries if entry[0] is not handler]
            if handler is None or not entries:
                del self._handlers[topic_filter]
                if self._connected:
                    self._client.unsubscribe(topic_filter)

    def _subscribe_locked(self, filters: list[str]) -> None:
        if not filters:
            return
        request = [
            (topic_filter, max(qos for _, qos in self._handlers[topic_filter]))
            for topic_filter in filters
        ]
        result, mid = self._client.subscribe(request)
        if result == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
            self._subscribe_mids[mid] = filters
        else:
            logger.debug("MQTT: subscribe to %s not sent (%s)", filters, mqtt.error_string(result))

    def add_connect_hook(self, hook: ConnectHook) -> None:
        """Run `hook()` after every successful connect (on paho's thread, guarded)."""
        with self._lock:
            self._connect_hooks.append(hook)

    # ------------------------------------------------------------------ paho callbacks

    def _guard(self, what: str, function: Callable[..., None], *args: Any) -> None:
        """Run user or callback code so that nothing escapes into paho's thread."""
        try:
            function(*args)
        except Exception:
            with self._lock:
                self._callback_errors += 1
            logger.exception("MQTT: %s raised; continuing", what)

    def _log_transition(self, state: str, level: int, message: str, *args: object) -> None:
        """Log `message` when the connection state changes; repeats go to debug."""
        if state == self._log_state:
            logger.debug(message, *args)
            return
        self._log_state = state
        logger.log(level, message, *args)

    def _on_connect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.ConnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._guard("on_connect", self._handle_connect, reason_code)

    def _handle_connect(self, reason_code: ReasonCode) -> None:
        config = self._config
        self._client.awaiting_connack = False
        if reason_code.is_failure:
            with self._lock:
                self._connect_failures += 1
            self._log_transition(
                f"refused:{reason_code}",
                logging.ERROR,
                "MQTT: broker %s:%d refused the connection: %s (check username/password and "
                "the broker's ACL); retrying",
                config.host,
                config.effective_port,
                reason_code,
            )
            return
        with self._lock:
            if self._stopping:
                return
            self._backoff.reset()
            self._set_reconnect_delay(self._client, self._backoff.initial)
            if self._ever_connected:
                self._reconnects += 1
            self._ever_connected = True
            self._send(config.availability_topic, ONLINE, _AVAILABILITY_QOS, True)
            for topic, payload in self._retained.items():
                self._send(topic, payload, 0, True)
            self._subscribe_locked(list(self._handlers))
            flushed = 0
            while self._queue:
                message = self._queue[0]
                if not self._send(message.topic, message.payload, message.qos, False):
                    break
                self._queue.popleft()
                flushed += 1
            self._connected = True
            self._state_changed.notify_all()
            hooks = list(self._connect_hooks)
            retained_count = len(self._retained)
        self._log_transition(
            "connected",
            logging.INFO,
            "MQTT: connected to %s:%d (%d retained topics republished, %d queued messages sent)",
            config.host,
            config.effective_port,
            retained_count,
            flushed,
        )
        for hook in hooks:
            self._guard(f"connect hook {getattr(hook, '__qualname__', hook)!r}", hook)

    def _on_connect_fail(self, client: mqtt.Client, userdata: Any) -> None:
        self._guard("on_connect_fail", self._handle_connect_fail)

    def _handle_connect_fail(self) -> None:
        config = self._config
        error = self._client.last_connect_error
        detail = f"{type(error).__name__}: {error}" if error else "unknown error"
        with self._lock:
            self._connect_failures += 1
            stopping = self._stopping
            delay = self._backoff.next_delay()
            self._set_reconnect_delay(self._client, delay)
        if stopping:
            return
        self._log_transition(
            f"unreachable:{type(error).__name__}",
            logging.WARNING,
            "MQTT: cannot connect to %s:%d (%s); retrying with backoff, messages are kept",
            config.host,
            config.effective_port,
            detail,
        )
        logger.debug("MQTT: next connection attempt in %.1f s", delay)

    def _on_disconnect(
        self,
        client: mqtt.Client,
        userdata: Any,
        flags: mqtt.DisconnectFlags,
        reason_code: ReasonCode,
        properties: Any,
    ) -> None:
        self._guard("on_disconnect", self._handle_disconnect, reason_code)

    def _handle_disconnect(self, reason_code: ReasonCode) -> None:
        closed_early = self._client.awaiting_connack
        self._client.awaiting_connack = False
        with self._lock:
            if closed_early:
                self._connect_failures += 1
            was_connected = self._connected
            self._connected = False
            self._state_changed.notify_all()
            stopping = self._stopping
            delay = self._backoff.next_delay()
            if not stopping:
                self._set_reconnect_delay(self._client, delay)
        if not stopping and closed_early:
            self._log_transition(
                "closed-early",
                logging.WARNING,
                "MQTT: %s:%d closed the connection before accepting it (%s); with TLS this "
                "usually means the broker requires a client certificate it did not get or "
                "trust; retrying with backoff",
                self._config.host,
                self._config.effective_port,
                reason_code,
            )
        if not stopping and was_connected:
            self._log_transition(
                "lost",
                logging.WARNING,
                "MQTT: lost connection to %s:%d (%s); reconnecting with backoff",
                self._config.host,
                self._config.effective_port,
                reason_code,
            )

    def _on_subscribe(
        self,
        client: mqtt.Client,
        userdata: Any,
        mid: int,
        reason_codes: list[ReasonCode],
        properties: Any,
    ) -> None:
        self._guard("on_subscribe", self._handle_suback, mid, reason_codes)

    def _handle_suback(self, mid: int, reason_codes: list[ReasonCode]) -> None:
        with self._lock:
            filters = self._subscribe_mids.pop(mid, [])
        for topic_filter, code in zip(filters, reason_codes, strict=False):
            if code.is_failure:
                logger.error(
                    "MQTT: broker refused the subscription to %r (%s); check the broker's ACL",
                    topic_filter,
                    code,
                )

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._guard("on_message", self._dispatch, message)

    def _dispatch(self, message: mqtt.MQTTMessage) -> None:
        # Inside the guard: `topic` decodes UTF-8 and raises for a malformed one.
        topic = message.topic
        payload = bytes(message.payload)
        with self._lock:
            matching = [
                handler
                for topic_filter, entries in self._handlers.items()
                if mqtt.topic_matches_sub(topic_filter, topic)
                for handler, _ in entries
            ]
        if not matching:
            logger.debug("MQTT: message on %s matches no handler", topic)
        for handler in matching:
            self._guard(
                f"handler {getattr(handler, '__qualname__', handler)!r} for {topic!r}",
                handler,
                topic,
                payload,
            )
