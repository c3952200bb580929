"""`HomeAssistantBridge`: the receiver output that makes the meter appear in Home Assistant.

It is an `RxSink` (`p1lora.receiver.runtime`): the runtime hands it every delivered telegram,
the transmitter's status reports, command replies, link events and a diagnostics snapshot every
few seconds; it talks MQTT through an `MqttPublisher`. It keeps what the bridge's own entities
show and wires three parts under one lock: the discovery registry (`ha_registry`: which configs
are announced and removed), the state publisher (`ha_publisher`: when state messages go out)
and the command relay (`ha_relay`: MQTT commands to the link and their results). What it does:

- **Telegrams.** Each one is parsed and its CRC checked *again*: the link already proved the
  rebuilt telegram end to end, but a value from a telegram whose CRC fails is never published,
  whatever the reason (`telegrams_refused` counts them). Then discovery is published for any
  entity that is new or whose config changed (`ha_discovery`), and one retained state message
  per device (`ha_state`). At most `MAX_DEVICES` devices are announced in one run.
- **Discovery lifecycle.** Configs are retained, re-published when Home Assistant says
  `online` on `homeassistant/status` (its birth message after a restart), and re-sent by the
  publisher after every reconnect. To remove what the bridge no longer has, it subscribes to
  its own discovery topics and hands every retained config to the registry, which deletes
  those of settled devices it no longer has (see `ha_registry`).
- **Diagnostics.** The bridge's state (link quality, transmitter status, last command) is
  published on every diagnostics snapshot (at most every `bridge_interval_s`, but at once when
  a setting or state a user acts on changed: radio setting, TX power, link or serial state),
  and at once on status reports, command results and link events (at most once a second).
- **Commands.** Messages on `<base>/command` go to the command relay (`ha_relay`), whose
  results are published on `<base>/command/reply` and shown by the "Last command" sensor. A
  retained command would run again at every reconnect, so the bridge clears the topic's
  retained message whenever it connects.

Threads: the sink methods run on the runtime's thread (inside `step`), MQTT handlers on paho's.
One lock guards this object and its parts; it is never held while calling the runtime
(`queue_command` takes the runtime's lock, and the runtime holds it while calling this sink),
and paho's thread never holds the publisher's lock while calling handlers, so the lock order is
always runtime -> bridge -> publisher. Nothing here raises into either thread: failures are
logged (first one with its traceback, then counted).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from p1lora.common.link.events import CommandReply, LinkEventAction, LinkReport
from p1lora.common.link.messages import StatusMessage
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_commands import CommandRequest
from p1lora.receiver.ha_discovery import DeviceInfo, DiscoverySettings, SensorEntity
from p1lora.receiver.ha_discovery import plan_telegram as _plan_telegram
from p1lora.receiver.ha_entities import BridgeView, LinkEventView
from p1lora.receiver.ha_ports import CommandPort, MqttPort
from p1lora.receiver.ha_publisher import StatePublisher
from p1lora.receiver.ha_registry import DiscoveryRegistry, retained_owner
from p1lora.receiver.ha_relay import DEFAULT_MAX_PENDING, CommandRelay
from p1lora.receiver.mqtt_publisher import MessageHandler
from p1lora.receiver.runtime import BaseSink, RxSnapshot

__all__ = ["BridgeStats", "CommandPort", "HomeAssistantBridge", "MqttPort"]

logger = logging.getLogger(__name__)

DEFAULT_BRIDGE_INTERVAL_S = 10.0
#: Devices (meters and M-Bus devices) the bridge announces in one run. One installation has one
#: meter with a few M-Bus devices, a meter swap adds a second; far more means something feeds
#: the bridge telegrams that are not one household's, and announcing them all would flood
#: Home Assistant's device registry.
MAX_DEVICES = 32
#: A transmitter start computed from a status report (arrival minus uptime) within this of the
#: previous one is the same boot: reports are built before they are sent, at SF12 seconds
#: before they arrive.
STARTED_JITTER_S = 30.0


@dataclass(frozen=True, slots=True)
class BridgeStats:
    """Counters for logs, diagnostics and tests."""

    telegrams_published: int
    telegrams_refused: int
    configs_published: int
    configs_removed: int
    commands_queued: int
    commands_rejected: int
    pending_commands: int
    errors: int


class HomeAssistantBridge(BaseSink):
    """The Home Assistant output of `p1-lora-rx` (see the module docstring)."""

    def __init__(
        self,
        mqtt: MqttPort,
        settings: DiscoverySettings,
        *,
        commands: CommandPort | None = None,
        bridge_interval_s: float = DEFAULT_BRIDGE_INTERVAL_S,
        max_pending_commands: int = DEFAULT_MAX_PENDING,
        wall_clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not bridge_interval_s >= 0:
            raise ValueError("bridge_interval_s must be >= 0")
        if max_pending_commands < 1:
            raise ValueError("max_pending_commands must be at least 1")
        self._mqtt = mqtt
        self.settings = settings
        self._wall = wall_clock
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._registry = DiscoveryRegistry(
            mqtt, settings, max_devices=MAX_DEVICES, monotonic=monotonic
        )
        self._relay = CommandRelay(
            mqtt,
            settings,
            self._lock,
            commands=commands,
            max_pending=max_pending_commands,
            on_result=lambda: self._states.publish_bridge(force=True),
            wall_clock=wall_clock,
            monotonic=monotonic,
        )
        self._states = StatePublisher(
            mqtt,
            settings,
            self._registry.bridge,
            self._view,
            interval_s=bridge_interval_s,
            monotonic=monotonic,
            expire_after=lambda: self._registry.expire_after,
        )
        self._started = False
        # What the bridge's own entities show.
        self._snapshot: RxSnapshot | None = None
        self._transmitter: StatusMessage | None = None
        self._transmitter_wall: float | None = None
        self._transmitter_started: float | None = None
        self._last_telegram_wall: float | None = None
        self._last_event: LinkEventView | None = None
        # Counters.
        self._published = 0
        self._refused = 0
        self._errors = 0

    # ------------------------------------------------------------------ set-up

    @property
    def bridge(self) -> DeviceInfo:
        return self._registry.bridge

    @property
    def reply_topic(self) -> str:
        return self._relay.reply_topic

    def attach_commands(self, commands: CommandPort) -> None:
        """Where commands go (the `RxRuntime`), when it was built after this sink."""
        self._relay.attach(commands)

    def start(self) -> None:
        """Subscribe (Home Assistant's status, our retained configs, the command topic) and
        publish the bridge's discovery and state. Works before or after the publisher connects:
        subscriptions and retained messages are kept and sent on every connect."""
        with self._lock:
            if self._started:
                return
            self._started = True
            self._registry.settle_bridge()
        settings = self.settings
        # Clears a command someone published with the retain flag: it would run again at every
        # reconnect. The publisher repeats this (retained, empty) on every connect, before it
        # subscribes, so a retained command is gone before the bridge could receive it.
        self._mqtt.publish(settings.command_topic, b"", retain=True)
        self._mqtt.subscribe(settings.config_filter, self._guarded(self._on_retained_config))
        for topic in settings.status_topics:
            self._mqtt.subscribe(topic, self._guarded(self._on_ha_status))
        self._mqtt.subscribe(settings.command_topic, self._guarded(self._relay.on_command), qos=1)
        with self._lock:
            self._registry.announce_bridge()
            self._states.publish_bridge(force=True)
            self._registry.sweep()
        logger.info(
            "Home Assistant: discovery under %s/…/%s, state under %s/, commands on %s",
            settings.discovery_prefix,
            settings.node_id,
            settings.base_topic,
            settings.command_topic,
        )

    def _guarded(self, handler: Callable[[str, bytes], None]) -> MessageHandler:
        def run(topic: str, payload: bytes) -> None:
            self._guard(f"handling {topic}", handler, topic, payload)

        return run

    def _guard(self, what: str, function: Callable[..., None], *args: Any) -> None:
        """Run `function`; an exception is logged (traceback the first time) and counted,
        never raised into the runtime's or paho's thread."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - logged by _failed, then counted
            self._failed(what)

    def _failed(self, what: str) -> None:
        with self._lock:
            self._errors += 1
            first = self._errors == 1
        if first:
            logger.exception("Home Assistant: %s failed (further failures are counted)", what)
        else:
            logger.debug("Home Assistant: %s failed", what, exc_info=True)

    # ------------------------------------------------------------------ RxSink: telegrams

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self._guard("publishing a telegram", self._on_telegram, raw)

    def _refuse(self, reason: str, *args: object) -> None:
        with self._lock:
            self._refused += 1
            count = self._refused
        if count == 1 or count % 100 == 0:
            logger.warning(
                "Home Assistant: telegram not published (%d so far): " + reason, count, *args
            )

    def _on_telegram(self, raw: bytes) -> None:
        try:
            telegram = parse_telegram(raw)
        except ValueError as exc:
            self._refuse("%s", exc)
            return
        if telegram.crc.valid is False:
            self._refuse(
                "its CRC %s does not match the computed %s",
                telegram.crc.expected,
                telegram.crc.computed,
            )
            return
        plan = _plan_telegram(telegram, self.settings)
        registry = self._registry
        registry.note_unmapped(plan.unmapped)
        now = self._monotonic()
        with self._lock:
            new = registry.overflow(plan)
            if new:
                self._refuse(
                    "it would add %s to the %d devices already announced (at most %d)",
                    ", ".join(d.name for d in new),
                    registry.device_count,
                    registry.max_devices,
                )
                return
            self._last_telegram_wall = self._wall()
            self._states.publish_meters(plan, registry.learn(plan, now))
            self._published += 1
            registry.sweep()
            if not self._states.bridge_published or self._published == 1:
                self._states.publish_bridge(force=True)

    # ------------------------------------------------------------------ discovery lifecycle

    def _on_retained_config(self, topic: str, payload: bytes) -> None:
        owner = retained_owner(payload)
        with self._lock:
            self._registry.note_retained(topic, owner)

    def remove_all(self) -> int:
        """Delete every discovery config of this bridge (what it publishes and what the broker
        still holds from earlier runs); returns how many. For `p1-lora-rx --remove-discovery`
        style clean-ups: Home Assistant then removes the devices and entities."""
        with self._lock:
            return self._registry.remove_all()

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() != b"online":
            return
        logger.info("Home Assistant is online: publishing discovery and state again")
        self.republish()

    def republish(self) -> None:
        """Publish every config and the latest state of every device again."""
        with self._lock:
            self._registry.republish()
            self._states.republish()

    # ------------------------------------------------------------------ RxSink: the rest

    def status(self, status: StatusMessage, received_at: float, report: LinkReport) -> None:
        self._guard("publishing a status report", self._on_status, status)

    def _on_status(self, status: StatusMessage) -> None:
        with self._lock:
            self._transmitter = status
            self._transmitter_wall = now = self._wall()
            started = now - status.uptime_s
            previous = self._transmitter_started
            # Each report puts the start a little elsewhere (the report is built before it
            # is sent); the same boot keeps the first estimate, so the entity stays put.
            if previous is None or abs(started - previous) > STARTED_JITTER_S:
                self._transmitter_started = started
            expire = self.settings.effective_expire_after(status.interval_s)
            if expire != self._registry.expire_after:
                logger.info(
                    "Home Assistant: the transmitter sends every %g s; meter values now "
                    "expire after %d s",
                    status.interval_s,
                    expire,
                )
                self._registry.set_expire_after(expire)
            self._states.publish_bridge(force=True)

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        self._guard("publishing diagnostics", self._on_diagnostics, snapshot)

    def _on_diagnostics(self, snapshot: RxSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._relay.forget_stale()
            self._states.snapshot()

    def link_event(self, event: LinkEventAction, at: float) -> None:
        self._guard("publishing a link event", self._on_link_event, event)

    def _on_link_event(self, event: LinkEventAction) -> None:
        # Not published here: the snapshot in hand predates the event (a switch would show the
        # old SF for seconds). The runtime follows every burst of events with fresh diagnostics
        # in the same step, and those go out at once (at most one a second).
        with self._lock:
            self._last_event = LinkEventView(event.kind, dict(event.fields), self._wall())
            self._states.event()

    def command_reply(self, reply: CommandReply) -> None:
        self._guard("publishing a command reply", self._relay.on_reply, reply)

    def submit(self, request: CommandRequest) -> int | None:
        """Queue a validated request on the runtime; returns the link's command id, or None
        when it was refused (the refusal is published like any other result)."""
        return self._relay.submit(request)

    # ------------------------------------------------------------------ what the bridge shows

    def _view(self) -> BridgeView:
        return BridgeView(
            snapshot=self._snapshot,
            transmitter=self._transmitter,
            transmitter_at_wall=self._transmitter_wall,
            transmitter_started_wall=self._transmitter_started,
            last_telegram_wall=self._last_telegram_wall,
            command=self._relay.last_result,
            last_event=self._last_event,
            telegrams_published=self._published,
            telegrams_refused=self._refused,
        )

    # ------------------------------------------------------------------ introspection

    def stats(self) -> BridgeStats:
        with self._lock:
            return BridgeStats(
                telegrams_published=self._published,
                telegrams_refused=self._refused,
                configs_published=self._registry.configs_published,
                configs_removed=self._registry.configs_removed,
                commands_queued=self._relay.queued,
                commands_rejected=self._relay.rejected,
                pending_commands=self._relay.pending,
                errors=self._errors,
            )

    def config_topics(self) -> list[str]:
        """Topics of every config the bridge currently publishes (for tests and tools)."""
        with self._lock:
            return self._registry.topics()

    def entities(self, device_slug: str) -> list[SensorEntity]:
        with self._lock:
            return self._registry.entities(device_slug)
