"""The demo's MQTT broker: Mosquitto when it is installed, else the embedded one (amqtt, the
`demo` extra, in a thread: `p1lora.tools.embedded_broker`, so the demo never needs root), or
the user's own (`--mqtt-host`).

Mosquitto is found like the test suite finds it ($P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto)
and runs on a free loopback port with a generated config.
"""

from __future__ import annotations

import getpass
import logging
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from p1lora.tools.demo.options import DemoOptions
from p1lora.tools.demo.processes import (
    LOOPBACK,
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Child,
    StartError,
    free_port,
)
from p1lora.tools.embedded_broker import EmbeddedBrokerThread

__all__ = ["Broker", "choose_broker", "find_mosquitto", "start_embedded", "start_mosquitto"]

logger = logging.getLogger(__name__)


def find_mosquitto() -> str | None:
    """The mosquitto binary: $P1LORA_MOSQUITTO when set (an explicit choice: a path that is not
    there means "no Mosquitto", which is how `scripts/demo` and its checks hide an installed
    one), else PATH, then /usr/sbin/mosquitto (as the tests)."""
    chosen = os.environ.get("P1LORA_MOSQUITTO")
    candidates = (chosen,) if chosen else (shutil.which("mosquitto"), "/usr/sbin/mosquitto")
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


@dataclass
class Broker:
    """Where the MQTT broker is, and how to stop it (nothing to stop for the user's own)."""

    host: str
    port: int
    label: str
    child: Child | None = None
    thread: EmbeddedBrokerThread | None = None

    def problem(self) -> str | None:
        if self.child is not None:
            code = self.child.exit_code()
            if code is not None:
                return f"mosquitto stopped (exit code {code})"
        return None

    def stop(self, hurry: Callable[[], bool]) -> None:
        if self.child is not None:
            self.child.stop(STOP_TIMEOUT_S, hurry)
        if self.thread is not None:
            self.thread.stop()


def start_mosquitto(executable: str, workdir: Path) -> Broker:
    """Mosquitto on a free loopback port with a generated config (a few tries: the free port
    may be taken in the meantime)."""
    log_path = workdir / "mosquitto.log"
    last = "it did not start"
    for _attempt in range(3):
        port = free_port(socket.SOCK_STREAM)
        lines = [
            "persistence false",
            f"log_dest file {log_path}",
            "connection_messages true",
            f"listener {port} {LOOPBACK}",
            "allow_anonymous true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto switches to the user "mosquitto", which cannot read our 0700
            # temporary directory.
            lines.append(f"user {getpass.getuser()}")
        config = workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        child = Child(
            "mosquitto", [executable, "-c", str(config)], log_path, os.environ.copy(), workdir
        )
        child.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if child.exit_code() is not None:
                last = f"it exited with code {child.exit_code()}: " + " | ".join(
                    child.tail.lines()[-3:]
                )
                break
            if _accepts(LOOPBACK, port):
                return Broker(LOOPBACK, port, f"mosquitto on {LOOPBACK}:{port}", child=child)
            time.sleep(0.05)
        else:
            child.stop(2.0, lambda: True)
            last = f"it did not listen on port {port} within {START_TIMEOUT_S:g} s"
    raise StartError(f"mosquitto ({executable}) could not be started: {last}")


def start_embedded() -> Broker:
    """amqtt on a free loopback port; `StartError` saying what to install without it."""
    thread = EmbeddedBrokerThread(LOOPBACK, 0)
    try:
        thread.start()
    except (OSError, TimeoutError) as exc:  # BrokerUnavailableError (no amqtt) is an OSError
        raise StartError(f"the embedded MQTT broker could not start: {exc}") from None
    return Broker(
        LOOPBACK, thread.port, f"embedded (amqtt) on {LOOPBACK}:{thread.port}", thread=thread
    )


def choose_broker(options: DemoOptions, workdir: Path) -> Broker:
    """The user's broker (`--mqtt-host`), or start the demo's own as `--broker` says: `auto`
    falls back to the embedded one when mosquitto is missing or does not start."""
    if options.mqtt_host is not None:
        label = f"{options.mqtt_host}:{options.mqtt_port} (yours)"
        return Broker(options.mqtt_host, options.mqtt_port, label)
    if options.broker == "embedded":
        return start_embedded()
    executable = find_mosquitto()
    if executable is None:
        if options.broker == "mosquitto":
            raise StartError(
                "mosquitto not found ($P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto): "
                "install it (sudo apt install mosquitto) or use --broker embedded"
            )
        return start_embedded()
    try:
        return start_mosquitto(executable, workdir)
    except StartError as exc:
        if options.broker == "mosquitto":
            raise
        logger.warning("%s; using the embedded broker instead", exc)
        return start_embedded()
