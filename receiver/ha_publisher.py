"""`StatePublisher`: when the Home Assistant state messages go out, and what was last sent.

Two kinds of retained state message (`ha_state` builds both):

- **meter devices**: one per device (the meter, each M-Bus sub-meter), paced by the publish
  policy below;
- **the bridge device**: its diagnostics, at most every `interval_s` on diagnostics snapshots,
  at once (`force`) on status reports, command results and the first telegram, on a snapshot
  that changes a setting or state a user acts on (`ha_entities.AT_ONCE_KEYS`: radio setting,
  TX power, link and serial state ...), and on the first snapshot after a link event if the
  last one is at least `EVENT_MIN_GAP_S` old (the snapshot that comes with an event is older
  than the event, so events only mark the state stale).

**Publish policy (meter devices).** Home Assistant's recorder writes a database row for every
entity whose state or attributes changed in a message; a DSMR 5 meter's power, voltage and
current change every second, so publishing every telegram writes about 77 000 rows a day with
the default entities (`p1-lora bench ha` measures it) for values nobody looks at at that
resolution. `state_interval_s` (N, default 5 s; 0 publishes every
telegram) decides per *kind* of entity (`Pace`, from `pace_of`) when a change is sent:

- `SAMPLE` (measurements: power, voltage, current, average demand, the meter's clock): at most
  every N seconds, the latest value;
- `CHANGE` (energy and volume registers, counters, identifiers, texts, histories): when they
  change, with the device's next message (at most every N seconds), never repeated while they
  stand still, so a gas meter's device publishes when its reading moves, not every second;
- `AT_ONCE` (states people automate on: the active tariff, breaker state, valve position):
  the telegram that changes them is published at once.

A device whose values did not change is published again only as a keep-alive, every half
`expire_after` (so Home Assistant does not show it as unavailable; an unchanged message writes
no row). The latest built state is kept even when it is not sent, so `republish` (Home
Assistant restarted) always sends current values.

It keeps the latest text of every topic (the bridge's first) so `republish` can send them all
again when Home Assistant restarts. This is the one place that decides when a state message is
published.

Not thread-safe on its own: `HomeAssistantBridge` calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping
from enum import StrEnum
from typing import Any

from p1lora.receiver.ha_discovery import (
    DeviceInfo,
    DiscoverySettings,
    SensorEntity,
    TelegramPlan,
)
from p1lora.receiver.ha_entities import AT_ONCE_KEYS, BridgeView
from p1lora.receiver.ha_ports import MqttPort
from p1lora.receiver.ha_state import MeterStateBuilder, bridge_state, encode_state

__all__ = ["EVENT_MIN_GAP_S", "Pace", "StatePublisher", "pace_of"]

#: Link events publish the bridge state at once, but not more often than this.
EVENT_MIN_GAP_S = 1.0


class Pace(StrEnum):
    """How a change of an entity's value makes its device's state message due."""

    #: A measurement: the latest value, at most every `state_interval_s`.
    SAMPLE = "sample"
    #: A register or a description: when it changed, with the next message.
    CHANGE = "change"
    #: A state automations act on: the telegram that changes it goes out at once.
    AT_ONCE = "at_once"


#: State classes and device classes -> pace (anything else is `CHANGE`).
_PACE_BY_STATE_CLASS: Mapping[str, Pace] = {"measurement": Pace.SAMPLE}
_PACE_BY_DEVICE_CLASS: Mapping[str, Pace] = {"enum": Pace.AT_ONCE}
#: The meter's own clock changes with every telegram like a measurement.
_PACE_BY_KEY: Mapping[str, Pace] = {"timestamp": Pace.SAMPLE}


def pace_of(entity: SensorEntity) -> Pace:
    """The publish pace of a meter entity (see the module docstring)."""
    return (
        _PACE_BY_KEY.get(entity.key)
        or _PACE_BY_DEVICE_CLASS.get(entity.device_class or "")
        or _PACE_BY_STATE_CLASS.get(entity.state_class or "")
        or Pace.CHANGE
    )


class StatePublisher:
    """The state messages of one bridge (see the module docstring)."""

    def __init__(
        self,
        mqtt: MqttPort,
        settings: DiscoverySettings,
        bridge: DeviceInfo,
        view: Callable[[], BridgeView],
        *,
        interval_s: float,
        monotonic: Callable[[], float],
        expire_after: Callable[[], int] = lambda: 0,
    ) -> None:
        self._mqtt = mqtt
        self._settings = settings
        self._bridge_topic = bridge.state_topic(settings)
        self._view = view
        self._interval_s = interval_s
        self._monotonic = monotonic
        #: Topic -> JSON text of the latest state of every device (the bridge's first).
        self._states: OrderedDict[str, str] = OrderedDict()
        self._builder = MeterStateBuilder()
        self._event_pending = False
        self._bridge_published_at: float | None = None
        self._bridge_sent: dict[str, Any] | None = None
        self._state_interval_s = settings.state_interval_s
        self._expire_after = expire_after
        #: Topic -> (state last sent, when) of every meter device.
        self._sent: dict[str, tuple[dict[str, Any], float]] = {}
        #: Topic -> the latest state built for every meter device (sent or held).
        self._latest: dict[str, dict[str, Any]] = {}
        #: (device slug, key) -> pace, of every entity planned so far.
        self._paces: dict[tuple[str, str], Pace] = {}

    @property
    def bridge_published(self) -> bool:
        return self._bridge_published_at is not None

    def publish_meters(
        self, plan: TelegramPlan, announced: Mapping[str, Collection[SensorEntity]]
    ) -> int:
        """The retained state message of each device of the telegram that is due under the
        publish policy (see the module docstring); returns how many went out."""
        now = self._monotonic()
        for planned in plan.values:
            entity = planned.entity
            self._paces[entity.device, entity.key] = pace_of(entity)
        states = self._builder.build(plan, announced)
        sent = 0
        for device in plan.devices:
            topic = device.state_topic(self._settings)
            state = states[device.slug]
            text = encode_state(state)
            self._states[topic] = text  # the latest, for republish, sent or not
            self._latest[topic] = state
            if self._due(topic, device.slug, state, now):
                self._sent[topic] = (state, now)
                self._mqtt.publish(topic, text, retain=True)
                sent += 1
        return sent

    def _due(self, topic: str, slug: str, state: Mapping[str, Any], now: float) -> bool:
        last = self._sent.get(topic)
        if last is None or self._state_interval_s == 0:
            return True
        previous, at = last
        elapsed = now - at
        changed = [
            key for key in state.keys() | previous.keys() if state.get(key) != previous.get(key)
        ]
        if not changed:
            keep_alive = self._expire_after() / 2
            return keep_alive > 0 and elapsed >= max(keep_alive, self._state_interval_s)
        if any(self._paces.get((slug, key)) is Pace.AT_ONCE for key in changed):
            return True
        return elapsed >= self._state_interval_s

    def publish_bridge(self, *, force: bool) -> None:
        """The bridge's state, unless it went out less than `interval_s` ago (or `force`)."""
        now = self._monotonic()
        last = self._bridge_published_at
        if not force and last is not None and now - last < self._interval_s:
            return
        self._event_pending = False
        state = bridge_state(self._view())
        self._bridge_sent = state
        text = encode_state(state)
        self._states[self._bridge_topic] = text
        self._states.move_to_end(self._bridge_topic, last=False)
        self._mqtt.publish(self._bridge_topic, text, retain=True)
        self._bridge_published_at = now

    def event(self) -> None:
        """A link event happened: the next snapshot goes out soon (see the module docstring)."""
        self._event_pending = True

    def snapshot(self) -> None:
        """A diagnostics snapshot arrived: publish the bridge's state if it is due, or at once
        when a setting or state a user acts on changed (`ha_entities.AT_ONCE_KEYS`)."""
        published = self._bridge_published_at
        urgent = self._event_pending and (
            published is None or self._monotonic() - published >= EVENT_MIN_GAP_S
        )
        sent = self._bridge_sent
        if not urgent and sent is not None:
            state = bridge_state(self._view())
            urgent = any(state.get(key) != sent.get(key) for key in AT_ONCE_KEYS)
        self.publish_bridge(force=urgent)

    def republish(self) -> None:
        """Every device's latest state again (held ones too), then a fresh one of the bridge."""
        now = self._monotonic()
        for topic, text in self._states.items():
            self._mqtt.publish(topic, text, retain=True)
            latest = self._latest.get(topic)
            if latest is not None:
                self._sent[topic] = (latest, now)
        self.publish_bridge(force=True)
