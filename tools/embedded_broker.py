"""The demo's embedded MQTT broker on amqtt (the optional `demo` extra), in a thread.

`p1-lora demo` and `p1-lora bench e2e` need a broker on loopback when Mosquitto is not
installed. amqtt (https://github.com/Yakifo/amqtt, MIT) is a maintained pure-Python MQTT 3.1.1
broker; it replaced a 700-line broker written by hand for the demo. This adapter runs it on
its own event loop in a daemon thread. What the demo needs from it is checked by
`tests/test_embedded_broker.py` (retained messages, last will on a dropped connection, QoS 1,
wildcards, reconnects of the bridge's publisher), and what amqtt 0.12 does not do is listed
there (keepalive-expiry wills, client-id takeover, persistent sessions: the demo uses none).

Configuration: one TCP listener on the given address (port 0 picks a free one; `port` is the
real one after `start()`), anonymous clients, and none of amqtt's default logging and `$SYS`
plugins (the demo's log stays readable and no topic appears that a user did not publish).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Any

__all__ = ["BrokerUnavailableError", "EmbeddedBrokerThread", "amqtt_available"]

logger = logging.getLogger(__name__)

_LISTENER = "default"
#: amqtt logs every connection and packet at INFO, and warns "N messages not broadcasted" at
#: every shutdown; the demo shows its own story, so only its errors are logged.
_CHATTY_LOGGERS = ("amqtt", "transitions")


class BrokerUnavailableError(OSError):
    """amqtt is not installed. An OSError, so callers that handle a port they cannot bind
    (the demo) report it the same way: with the message, which says what to install."""


_INSTALL_HINT = (
    "the embedded MQTT broker needs the demo extra (pip install 'p1-lora[demo]'); "
    "or install Mosquitto"
)


def amqtt_available() -> bool:
    """Whether the `demo` extra (amqtt) is installed."""
    try:
        import amqtt.broker  # noqa: F401, PLC0415 - optional dependency
    except ImportError:
        return False
    return True


def _config(host: str, port: int) -> dict[str, Any]:
    return {
        "listeners": {_LISTENER: {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


class EmbeddedBrokerThread:
    """amqtt's broker in a daemon thread (see the module docstring).

    `start()` returns once the port is bound and raises the bind error (OSError) otherwise;
    `stop()` closes every connection and waits for the thread.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._port

    def start(self, timeout: float = 10.0) -> None:
        if self._thread is not None:
            raise RuntimeError("EmbeddedBrokerThread.start() called twice")
        if not amqtt_available():
            raise BrokerUnavailableError(_INSTALL_HINT)
        for name in _CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._run, name="amqtt-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the embedded MQTT broker did not start")
        if self._error is not None:
            raise self._error

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        from amqtt.broker import Broker  # noqa: PLC0415 - optional dependency (`demo` extra)
        from amqtt.errors import BrokerError  # noqa: PLC0415

        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        broker = Broker(_config(self._host, self._port))
        try:
            await broker.start()
        except (BrokerError, OSError) as exc:
            cause = exc.__cause__ if isinstance(exc.__cause__, OSError) else None
            self._error = cause or (exc if isinstance(exc, OSError) else OSError(str(exc)))
            self._ready.set()
            return
        self._port = self._bound_port(broker) or self._port
        self._ready.set()
        await self._stopped.wait()
        await broker.shutdown()

    @staticmethod
    def _bound_port(broker: Any) -> int | None:
        """The port the listener really bound (amqtt does not say; its server object does)."""
        server = getattr(broker, "_servers", {}).get(_LISTENER)
        sockets = getattr(getattr(server, "instance", None), "sockets", None) or ()
        for sock in sockets:
            port = sock.getsockname()[1]
            if isinstance(port, int):
                return port
        return None

    def stop(self, timeout: float = 10.0) -> None:
        loop, stopped, thread = self._loop, self._stopped, self._thread
        if loop is None or stopped is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # loop already closed
            loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> EmbeddedBrokerThread:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
