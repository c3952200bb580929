"""The demo's model of the bridge: one lock around what MQTT, the link logs and the daemons'
log lines said, and the snapshot (`DemoView`) the renderers draw.

Three feeds, each read by its own part:

- **MQTT** (`mqtt_message` -> `bridge_model.BridgeModel`): what Home Assistant would see.
- **Link-quality logs** (`link_line` -> `link_facts.LinkFacts`): handshakes, auto-tune steps,
  link state and radio settings, from the daemons' JSON-lines link logs.
- **Log lines** (`log_line` -> `events.EventLog`): shown in the event list, never interpreted.

paho's thread and the main loop both feed it, hence the lock; `view()` copies everything out
under it, so rendering works on a consistent snapshot.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.tools.demo.bridge_model import BridgeModel
from p1lora.tools.demo.events import EventLog
from p1lora.tools.demo.link_facts import LinkFacts
from p1lora.tools.demo.text import settings_label
from p1lora.tools.demo.views import DemoInfo, DemoView, DeviceView, LogEvent

__all__ = ["DemoState"]


def _opt_str(value: object) -> str | None:
    return None if value is None else str(value)


class DemoState:
    """The demo's model of the bridge; thread-safe.

    `started` and every `now` are on the same monotonic clock; event times are shown relative
    to `started`.
    """

    def __init__(self, settings: DiscoverySettings, info: DemoInfo, started: float) -> None:
        self.settings = settings
        self.info = info
        self.started = started
        self._lock = threading.Lock()
        self._bridge = BridgeModel(settings, started)
        self._link = LinkFacts()
        self._events = EventLog(started)
        self._restarts: dict[str, int] = {}
        self._mqtt_connected = False

    # ------------------------------------------------------------------ MQTT

    def is_config_topic(self, topic: str) -> bool:
        return self._bridge.is_config_topic(topic)

    def mqtt_connected(self, connected: bool) -> None:
        with self._lock:
            self._mqtt_connected = connected

    def mqtt_message(self, topic: str, payload: bytes, now: float, *, retained: bool) -> None:
        """Take one message of the subscriptions (discovery configs and the base topic)."""
        with self._lock:
            self._bridge.message(topic, payload, now, retained=retained)

    def retained_topics(self) -> list[str]:
        """What a clean-up on an external broker removes (see `BridgeModel.retained_topics`)."""
        with self._lock:
            return self._bridge.retained_topics()

    def take_new_devices(self) -> list[DeviceView]:
        """Devices discovered since the last call (for the plain-line output)."""
        with self._lock:
            new, self._bridge.new_devices = self._bridge.new_devices, []
            devices = {d.identifier: d for d in self._bridge.devices()}
        return [devices[i] for i in new if i in devices]

    # ------------------------------------------------------------------ link logs

    def link_line(self, source: str, line: str) -> None:
        """One line of the `tx` or `rx` link-quality log."""
        with self._lock:
            self._link.line(source, line)

    def process_restarted(self, source: str, name: str) -> None:
        """The `source` daemon (program `name`) is started again after asking for it."""
        with self._lock:
            self._link.process_restarted(source)
            self._restarts[name] = self._restarts.get(name, 0) + 1

    # ------------------------------------------------------------------ events

    def log_line(self, source: str, line: str, now: float) -> LogEvent | None:
        """Take one log line of a daemon; returns the event it became, if any."""
        with self._lock:
            return self._events.log_line(source, line, now)

    def note(self, text: str, now: float, *, level: int = logging.INFO) -> LogEvent:
        """An event of the demo itself (a restart, a broker choice, a problem)."""
        with self._lock:
            return self._events.note(text, now, level)

    # ------------------------------------------------------------------ snapshot

    def view(self, now: float) -> DemoView:
        with self._lock:
            bridge_model, link = self._bridge, self._link
            bridge: dict[str, Any] = bridge_model.bridge_values()
            first, last = bridge_model.first_telegram, bridge_model.last_telegram
            return DemoView(
                info=self.info,
                elapsed=max(0.0, now - self.started),
                availability=bridge_model.availability,
                bridge=bridge,
                devices=bridge_model.devices(),
                events=tuple(self._events.events),
                telegrams=bridge_model.telegrams,
                first_telegram_at=None if first is None else first - self.started,
                last_telegram_at=None if last is None else last - self.started,
                handshakes=link.handshakes,
                radio_changes=link.radio_changes,
                last_radio=link.last_radio,
                link_state=_opt_str(link.state or bridge.get("link_state")),
                settings=_opt_str(link.settings or settings_label(bridge)),
                tx_power_dbm=bridge.get("tx_power") if link.tx_power is None else link.tx_power,
                restarts=dict(self._restarts),
                warnings=self._events.warnings,
                offline_seen=bridge_model.offline_seen,
                mqtt_connected=self._mqtt_connected,
            )
