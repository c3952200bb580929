"""Helpers for the Home Assistant tests: fakes for MQTT and the runtime, snapshots, and a
reader that resolves an entity's state the way Home Assistant's templates do.

- `FakeMqtt`: records every publish and subscription; `deliver()` calls matching handlers as
  paho's thread would. `retained` is what a broker would hold (empty payload deletes).
- `FakeCommands`: a `CommandPort` that records commands and returns ids like `RxLink` does.
- `ManualClock`: a settable time source for the bridge's monotonic and wall clocks.
- `snapshot()` / `status()`: `RxSnapshot` and `StatusMessage` values with sensible defaults.
- `entity_value()` / `entity_attributes()`: evaluate our two template shapes
  (`{{ value_json['key'] }}`, `{{ value_json['attributes']['key'] | tojson }}`) on a state
  payload, so tests check the contract Home Assistant relies on, not our dicts.
- `corrupt_digit()`: a telegram with one value changed and its CRC left as it was.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt

from p1lora.common.link.diagnostics import LinkDiagnostics
from p1lora.common.link.messages import SerialState, StatusMessage
from p1lora.common.radio_types import RadioSettings
from p1lora.receiver.runtime import RxSnapshot
from p1lora.service.link_runtime import RuntimeStats

_VALUE_RE = re.compile(r"^\{\{ value_json\['([a-z0-9_]+)'\] \}\}$")
_ATTR_RE = re.compile(r"^\{\{ value_json\['attributes'\]\['([a-z0-9_]+)'\] \| tojson \}\}$")


@dataclass(frozen=True)
class Published:
    topic: str
    payload: bytes
    retain: bool
    qos: int

    def json(self) -> Any:
        return json.loads(self.payload)


class FakeMqtt:
    """Records publishes; `deliver` dispatches to subscribed handlers (see module docstring)."""

    def __init__(self) -> None:
        self.published: list[Published] = []
        self.handlers: list[tuple[str, Callable[[str, bytes], None], int]] = []
        self.retained: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        with self._lock:
            self.published.append(Published(topic, data, retain, qos))
            if retain:
                if data:
                    self.retained[topic] = data
                else:
                    self.retained.pop(topic, None)
        return True

    def subscribe(
        self, topic_filter: str, handler: Callable[[str, bytes], None], *, qos: int = 0
    ) -> None:
        self.handlers.append((topic_filter, handler, qos))

    def deliver(self, topic: str, payload: bytes | str) -> None:
        data = payload.encode() if isinstance(payload, str) else payload
        for topic_filter, handler, _ in list(self.handlers):
            if mqtt.topic_matches_sub(topic_filter, topic):
                handler(topic, data)

    def on(self, topic: str) -> list[Published]:
        with self._lock:
            return [p for p in self.published if p.topic == topic]

    def last(self, topic: str) -> Published:
        messages = self.on(topic)
        assert messages, f"nothing published on {topic}"
        return messages[-1]

    def topics(self, prefix: str = "") -> list[str]:
        with self._lock:
            return sorted({p.topic for p in self.published if p.topic.startswith(prefix)})

    def clear(self) -> None:
        with self._lock:
            self.published.clear()


class FakeCommands:
    """Queues commands like `RxRuntime.queue_command` (ids 1..255, wrapping)."""

    def __init__(self, *, fail: str | None = None) -> None:
        self.queued: list[tuple[int, object]] = []
        self.fail = fail
        self._next = 0

    def queue_command(self, command: object, now: float | None = None) -> int:
        if self.fail:
            raise ValueError(self.fail)
        self._next = self._next % 255 + 1
        self.queued.append((self._next, command))
        return self._next


class ManualClock:
    """A time source tests move by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


SETTINGS = RadioSettings(869_525_000, sf=7, bw_hz=250_000, tx_power_dbm=14)


def link_diagnostics(**overrides: Any) -> LinkDiagnostics:
    values: dict[str, Any] = {
        "role": "rx",
        "state": "running",
        "settings": SETTINGS,
        "last_known_good": SETTINGS,
        "tx_power_dbm": 14,
        "mode": "-",
        "session": True,
        "uplink_rssi_dbm": -97.5,
        "uplink_snr_db": 7.25,
        "downlink_rssi_dbm": -99.0,
        "downlink_snr_db": 6.5,
        "loss_rate": 0.05,
        "airtime_used": 0.1234,
        "airtime_total_s": 12.0,
        "frames_sent": {"ACK": 10},
        "frames_received": 11,
        "rejected": {"replay": 2, "bad_tag": 1},
        "telegrams": {"delivered": 10},
    }
    values.update(overrides)
    return LinkDiagnostics(**values)


def status(**overrides: Any) -> StatusMessage:
    values: dict[str, Any] = {
        "serial_state": SerialState.OK,
        "fixed_mode": False,
        "tx_power_dbm": 11,
        "airtime_used": 0.25,
        "loss_rate": 0.02,
        "uptime_s": 3600,
        "telegrams_read": 3600,
        "crc_errors": 2,
        "other_errors": 1,
        "interval_s": 0.0,
        "updates_sent": 100,
        "updates_acked": 98,
        "superseded": 3,
    }
    values.update(overrides)
    return StatusMessage(**values)


def snapshot(
    *,
    at: float = 500.0,
    last_telegram_at: float | None = 490.0,
    transmitter: StatusMessage | None = None,
    **link: Any,
) -> RxSnapshot:
    return RxSnapshot(
        at=at,
        link=link_diagnostics(**link),
        telegrams_delivered=10,
        last_telegram_at=last_telegram_at,
        transmitter=transmitter,
        transmitter_status_at=None,
        radio=None,
        runtime=RuntimeStats(),
        sink_errors=0,
    )


def entity_value(config: dict[str, Any], state_payload: bytes | str) -> Any:
    """The value Home Assistant's `value_template` extracts from a state payload."""
    match = _VALUE_RE.match(config["value_template"])
    assert match, f"unexpected value_template {config['value_template']!r}"
    state = json.loads(state_payload)
    key = match.group(1)
    assert key in state, f"state has no field {key!r} (Home Assistant would warn)"
    return state[key]


def entity_attributes(config: dict[str, Any], state_payload: bytes | str) -> Any:
    match = _ATTR_RE.match(config["json_attributes_template"])
    assert match, f"unexpected json_attributes_template {config['json_attributes_template']!r}"
    state = json.loads(state_payload)
    attributes = state["attributes"][match.group(1)]
    assert isinstance(attributes, dict), "Home Assistant needs a JSON object for attributes"
    return attributes


def corrupt_digit(raw: bytes, old: bytes, new: bytes) -> bytes:
    """The telegram with `old` replaced by `new` and the CRC left untouched (now wrong)."""
    assert raw.count(old) == 1, f"{old!r} must appear exactly once"
    return raw.replace(old, new)
