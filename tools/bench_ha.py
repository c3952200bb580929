"""`p1-lora bench ha`: how much each `homeassistant.state_interval` writes to Home Assistant.

Home Assistant's recorder stores a row in its `states` table whenever an entity's state or
attributes change (an MQTT message that repeats the last values writes none: Home Assistant
only updates the time it was last reported). So the database cost of a publish policy is the
number of entity *changes* it lets through, not the number of telegrams.

How it is measured: for each setting, a fresh virtual meter (same profile, seed and start, so
every setting sees the same household) produces `--hours` of telegrams on a virtual clock; the
real `HomeAssistantBridge` publishes them into a counting MQTT port, and the table counts, from
the published messages only:

- **messages**: state messages of the meter devices (the meter and its M-Bus devices);
- **rows**: entity changes in those messages, read the way Home Assistant reads them (each
  discovery config's `value_template` field and its `json_attributes_template` object), for the
  entities enabled by default ("all" counts every entity, as if a user enabled all of them).

The bridge device's own diagnostics are paced separately (at most every 10 s) and not counted.
Per day and per year are the hourly figures times 24 and 8760.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from p1lora.common.link.events import LinkReport
from p1lora.common.radio_types import RadioSettings
from p1lora.receiver.ha_discovery import (
    DEFAULT_STATE_INTERVAL_S,
    MAX_STATE_INTERVAL_S,
    DiscoverySettings,
)
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.receiver.mqtt_publisher import MessageHandler
from p1lora.transmitter.meter_profiles import PROFILES
from p1lora.transmitter.virtual_meter import VirtualMeter

__all__ = ["DEFAULT_SETTINGS", "Growth", "configure", "measure", "run"]

#: Settings the table compares: every telegram, the default, Home Assistant DSMR's 30 s ...
DEFAULT_SETTINGS: tuple[float, ...] = (0.0, 1.0, DEFAULT_STATE_INTERVAL_S, 10.0, 30.0, 60.0)
_REPORT = LinkReport(-97.0, 7.5, RadioSettings(869_525_000, sf=7, bw_hz=250_000), 40)
_BASE = "bench"


@dataclass(frozen=True, slots=True)
class Growth:
    """What one setting published in the measured time."""

    state_interval_s: float
    hours: float
    telegrams: int
    messages: int
    rows: int
    rows_all_entities: int

    def per_hour(self, count: int) -> float:
        return count / self.hours


class _Entity:
    """One sensor as Home Assistant would hold it: where its value is, and its last state."""

    __slots__ = ("enabled", "key", "last")

    def __init__(self, key: str, enabled: bool) -> None:
        self.key = key
        self.enabled = enabled
        self.last: tuple[str, str] | None = None


class _CountingMqtt:
    """An `MqttPort` that keeps the configs and counts what Home Assistant would record."""

    def __init__(self) -> None:
        self.entities: dict[str, dict[str, _Entity]] = {}  # state topic -> unique id -> entity
        self.messages = 0
        self.rows = 0
        self.rows_all = 0

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 0) -> None:
        return None

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool:
        text = payload if isinstance(payload, str) else bytes(payload).decode()
        if not text:
            return True
        if topic.endswith("/config"):
            self._config(json.loads(text))
        elif topic.endswith("/state") and not topic.startswith(f"{_BASE}/bridge/"):
            self._state(topic, json.loads(text))
        return True

    def _config(self, config: dict[str, Any]) -> None:
        template = config.get("value_template", "")
        if "state_topic" not in config or not template.startswith("{{ value_json['"):
            return
        key = template.split("'")[1]
        enabled = config.get("enabled_by_default", True)
        self.entities.setdefault(config["state_topic"], {})[config["unique_id"]] = _Entity(
            key, enabled
        )

    def _state(self, topic: str, state: dict[str, Any]) -> None:
        self.messages += 1
        attributes = state.get("attributes", {})
        for entity in self.entities.get(topic, {}).values():
            seen = (
                json.dumps(state.get(entity.key)),
                json.dumps(attributes.get(entity.key), sort_keys=True),
            )
            if seen != entity.last:
                entity.last = seen
                self.rows_all += 1
                self.rows += entity.enabled


class _VirtualClock:
    def __init__(self, start: float) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


def measure(
    state_interval_s: float, *, profile: str = "dsmr5", seed: int = 1, hours: float = 1.0
) -> Growth:
    """Publish `hours` of one virtual meter's telegrams with one setting; count (see above)."""
    meter = VirtualMeter(profile, seed=seed)
    start = meter.start.timestamp()
    clock = _VirtualClock(start)
    mqtt = _CountingMqtt()
    settings = DiscoverySettings(base_topic=_BASE, state_interval_s=state_interval_s)
    bridge = HomeAssistantBridge(mqtt, settings, wall_clock=clock, monotonic=clock)
    bridge.start()
    telegrams = 0
    for t, raw in meter.telegrams_until(hours * 3600.0 - meter.interval):
        clock.now = start + t
        bridge.telegram(raw, clock.now, _REPORT)
        telegrams += 1
    if bridge.stats().errors:
        raise RuntimeError("the bridge failed while publishing (see the log)")
    return Growth(state_interval_s, hours, telegrams, mqtt.messages, mqtt.rows, mqtt.rows_all)


def _setting(value: float) -> str:
    return "every telegram (0)" if value == 0 else f"{value:g} s"


def table(results: Sequence[Growth], *, profile: str, seed: int) -> str:
    """The results as a Markdown table, with how they were measured."""
    hours = results[0].hours
    lines = [
        f"Home Assistant state per `homeassistant.state_interval`: virtual meter `{profile}` "
        f"(seed {seed}), {hours:g} h on a virtual clock, {results[0].telegrams} telegrams;",
        "counted from the published messages (rows: entity changes Home Assistant's recorder "
        "stores; enabled by default, and with every entity enabled).",
        "",
        "| state_interval | messages/h | rows/h | rows/day | rows/year | rows/h (all enabled) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for g in results:
        rows_h = g.per_hour(g.rows)
        default = " (default)" if g.state_interval_s == DEFAULT_STATE_INTERVAL_S else ""
        lines.append(
            f"| {_setting(g.state_interval_s)}{default} | {g.per_hour(g.messages):,.0f} "
            f"| {rows_h:,.0f} | {rows_h * 24:,.0f} | {rows_h * 8760:,.0f} "
            f"| {g.per_hour(g.rows_all_entities):,.0f} |"
        )
    return "\n".join(lines)


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 <= value <= MAX_STATE_INTERVAL_S:
        raise argparse.ArgumentTypeError(f"{value:g} is outside 0..{MAX_STATE_INTERVAL_S:g} s")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (__doc__ or "").split("\n\n")[0]
    parser.add_argument(
        "--profile",
        choices=sorted(PROFILES),
        default="dsmr5",
        help="virtual meter profile (default: dsmr5, a telegram every second)",
    )
    parser.add_argument("--seed", type=int, default=1, help="virtual meter seed (default: 1)")
    parser.add_argument(
        "--hours", type=float, default=1.0, help="meter time to publish (default: 1 hour)"
    )
    parser.add_argument(
        "--interval",
        type=_interval,
        action="append",
        metavar="SECONDS",
        help="a state_interval to measure (repeatable; default: "
        + ", ".join(f"{v:g}" for v in DEFAULT_SETTINGS)
        + ")",
    )


def run(args: argparse.Namespace) -> int:
    if not 0 < args.hours <= 24 * 7:
        print("p1-lora bench ha: --hours must be within 0..168", file=sys.stderr)
        return 2
    settings = args.interval or list(DEFAULT_SETTINGS)
    # One "discovery under ..." line per setting says nothing here (level put back after).
    receiver = logging.getLogger("p1lora.receiver")
    level = receiver.level
    receiver.setLevel(logging.WARNING)
    try:
        results = [
            measure(value, profile=args.profile, seed=args.seed, hours=args.hours)
            for value in settings
        ]
    finally:
        receiver.setLevel(level)
    print(table(results, profile=args.profile, seed=args.seed))
    return 0
