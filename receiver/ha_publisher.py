"""`StatePublisher`: when the Home Assistant state messages go out, and what was last sent.

Two kinds of retained state message (`ha_state` builds both):

- **meter devices**: one per device (the meter, each M-Bus sub-meter) with every telegram;
- **the bridge device**: its diagnostics, at most every `interval_s` on diagnostics snapshots,
  at once (`force`) on status reports, command results and the first telegram, and on the first
  snapshot after a link event if the last one is at least `EVENT_MIN_GAP_S` old (the snapshot
  that comes with an event is older than the event, so events only mark the state stale).

It keeps the latest text of every topic (the bridge's first) so `republish` can send them all
again when Home Assistant restarts. This is the one place that decides when a state message is
published, so a publishing policy (fewer messages per device) belongs here.

Not thread-safe on its own: `HomeAssistantBridge` calls it under its lock.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Collection, Mapping

from p1lora.receiver.ha_discovery import DeviceInfo, DiscoverySettings, SensorEntity, TelegramPlan
from p1lora.receiver.ha_entities import BridgeView
from p1lora.receiver.ha_ports import MqttPort
from p1lora.receiver.ha_state import MeterStateBuilder, bridge_state, encode_state

__all__ = ["EVENT_MIN_GAP_S", "StatePublisher"]

#: Link events publish the bridge state at once, but not more often than this.
EVENT_MIN_GAP_S = 1.0


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

    @property
    def bridge_published(self) -> bool:
        return self._bridge_published_at is not None

    def publish_meters(
        self, plan: TelegramPlan, announced: Mapping[str, Collection[SensorEntity]]
    ) -> None:
        """One retained state message per device of the telegram."""
        states = self._builder.build(plan, announced)
        for device in plan.devices:
            self._publish(device.state_topic(self._settings), encode_state(states[device.slug]))

    def publish_bridge(self, *, force: bool) -> None:
        """The bridge's state, unless it went out less than `interval_s` ago (or `force`)."""
        now = self._monotonic()
        last = self._bridge_published_at
        if not force and last is not None and now - last < self._interval_s:
            return
        self._event_pending = False
        text = encode_state(bridge_state(self._view()))
        self._states[self._bridge_topic] = text
        self._states.move_to_end(self._bridge_topic, last=False)
        self._mqtt.publish(self._bridge_topic, text, retain=True)
        self._bridge_published_at = now

    def event(self) -> None:
        """A link event happened: the next snapshot goes out soon (see the module docstring)."""
        self._event_pending = True

    def snapshot(self) -> None:
        """A diagnostics snapshot arrived: publish the bridge's state if it is due."""
        published = self._bridge_published_at
        urgent = self._event_pending and (
            published is None or self._monotonic() - published >= EVENT_MIN_GAP_S
        )
        self.publish_bridge(force=urgent)

    def republish(self) -> None:
        """Every device's latest state again, then a fresh one of the bridge."""
        for topic, text in self._states.items():
            self._mqtt.publish(topic, text, retain=True)
        self.publish_bridge(force=True)

    def _publish(self, topic: str, text: str) -> None:
        self._states[topic] = text
        self._mqtt.publish(topic, text, retain=True)
