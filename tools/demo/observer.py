"""The demo's MQTT client: it sees what Home Assistant would see (this bridge's discovery
configs and everything under its base topic) and feeds it to the `DemoState`; at the end it
removes the demo's retained messages from a user's broker."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from p1lora.tools.demo.broker import Broker
from p1lora.tools.demo.model import DemoState
from p1lora.tools.demo.options import DemoOptions

__all__ = ["Observer"]

logger = logging.getLogger(__name__)


class Observer:
    """The demo's MQTT client: sees what Home Assistant would see; cleans up at the end."""

    def __init__(self, state: DemoState, broker: Broker, options: DemoOptions) -> None:
        self._state = state
        self._broker = broker
        self.connected = threading.Event()
        self.refused: str | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"p1lora-demo-view-{uuid.uuid4().hex[:8]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.suppress_exceptions = True
        if options.mqtt_username:
            client.username_pw_set(options.mqtt_username, options.mqtt_password)
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._filters = [state.settings.config_filter, f"{state.settings.base_topic}/#"]

    def start(self) -> None:
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=30)
        self._client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                self.refused = str(reason_code)
                return
            self.refused = None
            for topic_filter in self._filters:
                client.subscribe(topic_filter, qos=0)
            self._state.mqtt_connected(True)
            self.connected.set()
        except Exception:  # paho's thread must survive anything
            logger.exception("demo: MQTT connect handler failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        self._state.mqtt_connected(False)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._state.mqtt_message(
                message.topic,
                bytes(message.payload),
                time.monotonic(),
                retained=bool(message.retain),
            )
        except Exception:
            logger.exception("demo: handling %s failed", message.topic)

    def clear_retained(self, topics: list[str], timeout: float = 5.0) -> int:
        """Delete retained messages (an empty retained message each); how many the broker
        acknowledged. Discovery configs go first: Home Assistant removes those entities."""
        infos = []
        for topic in topics:
            try:
                infos.append(self._client.publish(topic, b"", qos=1, retain=True))
            except ValueError:
                continue
        deadline = time.monotonic() + timeout
        done = 0
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if info.is_published():
                done += 1
        return done

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()
