"""`HomeAssistantBridge`: the receiver output that makes the meter appear in Home Assistant.

It is an `RxSink` (`p1lora.receiver.runtime`): the runtime hands it every delivered telegram,
the transmitter's status reports, command replies, link events and a diagnostics snapshot every
few seconds; it talks MQTT through an `MqttPublisher`. What it does:

- **Telegrams.** Each one is parsed and its CRC checked *again*: the link already proved the
  rebuilt telegram end to end, but a value from a telegram whose CRC fails is never published,
  whatever the reason (`telegrams_refused` counts them). Then discovery is published for any
  entity that is new or whose config changed (`ha_discovery`), and one retained state message
  per device (`ha_state`).
- **Discovery lifecycle.** Configs are retained, re-published when Home Assistant says
  `online` on `homeassistant/status` (its birth message after a restart), and re-sent by the
  publisher after every reconnect. To remove what the bridge no longer has, it subscribes to
  its own discovery topics: the broker hands over every retained config of this bridge, and
  those that belong to a device whose full set the bridge knows (the bridge itself at once; a
  meter once it has been heard for `removal_grace_s`, and that meter's M-Bus devices) but that
  the bridge does not publish any more get an empty retained config, which deletes them in
  Home Assistant. Devices the bridge has not heard this run (an old meter) are left alone.
- **Diagnostics.** The bridge's state (link quality, transmitter status, last command) is
  published on every diagnostics snapshot (at most every `bridge_interval_s`), and at once on
  status reports, command results and link events (at most once a second).
- **Commands.** Buttons, the radio-mode select and users publish JSON on `<base>/command`
  (`ha_commands`); valid ones are queued on the runtime (`queue_command`, thread-safe), and
  every step of their life (`queued`, then the transmitter's answer, a timeout or `unknown`)
  is published on `<base>/command/reply` and shown by the "Last command" sensor. A retained
  command would run again at every reconnect, so the bridge clears the topic's retained
  message whenever it connects.

Threads: the sink methods run on the runtime's thread (inside `step`), MQTT handlers on paho's.
One lock guards this object; it is never held while calling the runtime (`queue_command` takes
the runtime's lock, and the runtime holds it while calling this sink), and paho's thread never
holds the publisher's lock while calling handlers, so the lock order is always
runtime -> bridge -> publisher. Nothing here raises into either thread: failures are logged
(first one with its traceback, then counted).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from p1lora.common.link.commands import Command
from p1lora.common.link.events import CommandReply, LinkEventAction, LinkReport
from p1lora.common.link.messages import StatusMessage
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_commands import (
    QUEUED,
    REJECTED,
    REPLY_LEVEL,
    STATUS_NAMES,
    CommandRejected,
    CommandRequest,
    CommandResult,
    parse_command_payload,
)
from p1lora.receiver.ha_discovery import (
    DeviceInfo,
    DiscoveryMessage,
    DiscoverySettings,
    SensorEntity,
    bridge_configs,
    bridge_device,
    sensor_config,
)
from p1lora.receiver.ha_discovery import plan_telegram as _plan_telegram
from p1lora.receiver.ha_entities import BridgeView, LinkEventView
from p1lora.receiver.ha_state import MeterStateBuilder, bridge_state, encode_state
from p1lora.receiver.mqtt_publisher import MessageHandler
from p1lora.receiver.runtime import BaseSink, RxSnapshot

__all__ = ["BridgeStats", "CommandPort", "HomeAssistantBridge", "MqttPort"]

logger = logging.getLogger(__name__)

#: Commands waiting for the transmitter at once; more are refused (a stuck automation must not
#: fill the link's queue).
DEFAULT_MAX_PENDING = 8
DEFAULT_BRIDGE_INTERVAL_S = 10.0
#: Link events publish the bridge state at once, but not more often than this.
EVENT_MIN_GAP_S = 1.0
#: A pending command is forgotten after this long without any answer (the link answers every
#: command within its command timeout, 600 s by default; this only guards against bugs).
PENDING_FORGET_S = 3600.0
_ORPHANS = 16
#: A reply counts as the answer to a request whose `queue_command` had not returned yet only
#: within this many seconds (command ids wrap at 255, so an old reply must never match).
ORPHAN_MATCH_S = 10.0
#: Devices (meters and M-Bus devices) the bridge announces in one run. One installation has one
#: meter with a few M-Bus devices, a meter swap adds a second; far more means something feeds
#: the bridge telegrams that are not one household's, and announcing them all would flood
#: Home Assistant's device registry.
MAX_DEVICES = 32


class MqttPort(Protocol):
    """What the bridge needs from `MqttPublisher` (tests may pass a fake)."""

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool: ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 0) -> None: ...


class CommandPort(Protocol):
    """What the bridge needs from `RxRuntime`: queue a command, get its id back."""

    def queue_command(self, command: Command | str, now: float | None = None) -> int: ...


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


@dataclass(slots=True)
class _Pending:
    result: CommandResult
    queued_at: float


def _encode_config(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False)


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
        self._commands = commands
        self._bridge_interval_s = bridge_interval_s
        self._max_pending = max_pending_commands
        self._wall = wall_clock
        self._monotonic = monotonic
        self._lock = threading.RLock()
        self._bridge = bridge_device(settings)
        self._started = False
        #: Topic -> JSON text of every config this bridge currently wants retained.
        self._configs: OrderedDict[str, str] = OrderedDict()
        #: Device slug -> the entities announced for it (grows while the bridge runs).
        self._entities: dict[str, dict[str, SensorEntity]] = {}
        #: (device slug, key) -> what its published config was built from.
        self._announced: dict[tuple[str, str], tuple[DeviceInfo, SensorEntity, int]] = {}
        self._devices: dict[str, DeviceInfo] = {}
        #: Meter identifier -> when it was first heard (monotonic), for the removal grace.
        self._meters: dict[str, float] = {}
        #: Retained configs of this bridge on the broker: topic -> (device id, via_device).
        self._retained: dict[str, tuple[str | None, str | None]] = {}
        self._states: OrderedDict[str, str] = OrderedDict()
        self._builder = MeterStateBuilder()
        self._expire_after = settings.expire_after_s
        self._unmapped_logged: set[str] = set()
        # The bridge's view.
        self._snapshot: RxSnapshot | None = None
        self._event_pending = False
        self._transmitter: StatusMessage | None = None
        self._transmitter_wall: float | None = None
        self._last_telegram_wall: float | None = None
        self._command_result: CommandResult | None = None
        self._last_event: LinkEventView | None = None
        self._bridge_published_at: float | None = None
        # Commands.
        self._pending: dict[int, _Pending] = {}
        self._orphans: OrderedDict[int, tuple[CommandReply, float]] = OrderedDict()
        # Counters.
        self._published = 0
        self._refused = 0
        self._configs_published = 0
        self._configs_removed = 0
        self._commands_queued = 0
        self._commands_rejected = 0
        self._errors = 0

    # ------------------------------------------------------------------ set-up

    @property
    def bridge(self) -> DeviceInfo:
        return self._bridge

    @property
    def reply_topic(self) -> str:
        return f"{self.settings.base_topic}/{REPLY_LEVEL}"

    def attach_commands(self, commands: CommandPort) -> None:
        """Where commands go (the `RxRuntime`), when it was built after this sink."""
        with self._lock:
            self._commands = commands

    def start(self) -> None:
        """Subscribe (Home Assistant's status, our retained configs, the command topic) and
        publish the bridge's discovery and state. Works before or after the publisher connects:
        subscriptions and retained messages are kept and sent on every connect."""
        with self._lock:
            if self._started:
                return
            self._started = True
        settings = self.settings
        # Clears a command someone published with the retain flag: it would run again at every
        # reconnect. The publisher repeats this (retained, empty) on every connect, before it
        # subscribes, so a retained command is gone before the bridge could receive it.
        self._mqtt.publish(settings.command_topic, b"", retain=True)
        self._mqtt.subscribe(settings.config_filter, self._guarded(self._on_retained_config))
        for topic in settings.status_topics:
            self._mqtt.subscribe(topic, self._guarded(self._on_ha_status))
        self._mqtt.subscribe(settings.command_topic, self._guarded(self._on_command), qos=1)
        with self._lock:
            for message in bridge_configs(settings):
                self._want(message)
            self._publish_bridge_locked(force=True)
            self._sweep_locked()
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

    # ------------------------------------------------------------------ publishing helpers

    def _publish(self, topic: str, payload: str | bytes, *, retain: bool) -> None:
        self._mqtt.publish(topic, payload, retain=retain)

    def _want(self, message: DiscoveryMessage, *, force: bool = False) -> bool:
        """Make `message` the retained config of its topic; publish when new or changed."""
        text = _encode_config(message.payload)
        if not force and self._configs.get(message.topic) == text:
            return False
        self._configs[message.topic] = text
        self._publish(message.topic, text, retain=True)
        self._configs_published += 1
        return True

    def _announce(self, device: DeviceInfo, entity: SensorEntity) -> None:
        """Publish the entity's config if anything it is built from changed (a DSMR 5 meter
        sends a telegram a second; building and encoding forty configs each time is waste)."""
        inputs = (device, entity, self._expire_after)
        slot = (device.slug, entity.key)
        if self._announced.get(slot) == inputs:
            return
        self._announced[slot] = inputs
        self._want(sensor_config(self.settings, device, entity, expire_after=self._expire_after))

    def _remove_config(self, topic: str) -> None:
        self._configs.pop(topic, None)
        self._retained.pop(topic, None)
        self._publish(topic, b"", retain=True)
        self._configs_removed += 1
        logger.info("Home Assistant: removed %s (the bridge no longer has this entity)", topic)

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
        self._log_unmapped(plan.unmapped)
        now = self._monotonic()
        with self._lock:
            new = [d for d in plan.devices if d.slug not in self._devices]
            if new and len(self._devices) + len(new) > MAX_DEVICES:
                self._refuse(
                    "it would add %s to the %d devices already announced (at most %d)",
                    ", ".join(d.name for d in new),
                    len(self._devices),
                    MAX_DEVICES,
                )
                return
            self._last_telegram_wall = self._wall()
            self._meters.setdefault(plan.meter.identifier, now)
            for device in plan.devices:
                self._devices[device.slug] = device
            for planned in plan.values:
                entity = planned.entity
                self._entities.setdefault(entity.device, {})[entity.key] = entity
            for device in plan.devices:
                for entity in self._entities.get(device.slug, {}).values():
                    self._announce(device, entity)
            announced = {
                device.slug: list(self._entities.get(device.slug, {}).values())
                for device in plan.devices
            }
            states = self._builder.build(plan, announced)
            for device in plan.devices:
                topic = device.state_topic(self.settings)
                text = encode_state(states[device.slug])
                self._states[topic] = text
                self._publish(topic, text, retain=True)
            self._published += 1
            self._sweep_locked()
            if self._bridge_published_at is None or self._published == 1:
                self._publish_bridge_locked(force=True)

    def _log_unmapped(self, codes: Iterable[str]) -> None:
        for code in codes:
            if code in self._unmapped_logged or len(self._unmapped_logged) >= 256:
                continue
            self._unmapped_logged.add(code)
            logger.info(
                "Home Assistant: line %s is not in the OBIS table; it is kept in the raw "
                "telegram but has no entity",
                code,
            )

    # ------------------------------------------------------------------ removal of stale configs

    def _owner(self, device_id: str | None, via: str | None) -> str | None:
        """Whose telegrams decide about a device: the bridge, a meter, or None (unknown)."""
        if device_id is None:
            return None
        if device_id == self._bridge.identifier:
            return device_id
        if device_id in self._meters:
            return device_id
        if via is not None and via in self._meters:
            return via
        return None

    def _settled(self, owner: str) -> bool:
        if owner == self._bridge.identifier:
            return self._started
        first = self._meters.get(owner)
        return first is not None and self._monotonic() - first >= self.settings.removal_grace_s

    def _sweep_locked(self) -> None:
        """Delete retained configs of settled devices that the bridge no longer publishes."""
        for topic, (device_id, via) in list(self._retained.items()):
            if topic in self._configs:
                continue
            owner = self._owner(device_id, via)
            if owner is not None and self._settled(owner):
                self._remove_config(topic)

    def _on_retained_config(self, topic: str, payload: bytes) -> None:
        if not payload:
            with self._lock:
                self._retained.pop(topic, None)
            return
        try:
            config = json.loads(payload)
            device = config.get("device", {}) if isinstance(config, dict) else {}
            identifiers = device.get("identifiers") if isinstance(device, dict) else None
            if isinstance(identifiers, str):
                identifiers = [identifiers]
            device_id = identifiers[0] if isinstance(identifiers, list) and identifiers else None
            via = device.get("via_device") if isinstance(device, dict) else None
        except ValueError:
            device_id, via = None, None
        with self._lock:
            self._retained[topic] = (
                device_id if isinstance(device_id, str) else None,
                via if isinstance(via, str) else None,
            )
            self._sweep_locked()

    def remove_all(self) -> int:
        """Delete every discovery config of this bridge (what it publishes and what the broker
        still holds from earlier runs); returns how many. For `p1-lora-rx --remove-discovery`
        style clean-ups: Home Assistant then removes the devices and entities."""
        with self._lock:
            topics = list(dict.fromkeys([*self._configs, *self._retained]))
            for topic in topics:
                self._publish(topic, b"", retain=True)
            self._configs.clear()
            self._retained.clear()
            self._announced.clear()
            self._configs_removed += len(topics)
            return len(topics)

    # ------------------------------------------------------------------ Home Assistant status

    def _on_ha_status(self, topic: str, payload: bytes) -> None:
        if payload.strip().lower() != b"online":
            return
        logger.info("Home Assistant is online: publishing discovery and state again")
        self.republish()

    def republish(self) -> None:
        """Publish every config and the latest state of every device again."""
        with self._lock:
            for topic, text in self._configs.items():
                self._publish(topic, text, retain=True)
                self._configs_published += 1
            for topic, text in self._states.items():
                self._publish(topic, text, retain=True)
            self._publish_bridge_locked(force=True)

    # ------------------------------------------------------------------ RxSink: the rest

    def status(self, status: StatusMessage, received_at: float, report: LinkReport) -> None:
        self._guard("publishing a status report", self._on_status, status)

    def _on_status(self, status: StatusMessage) -> None:
        with self._lock:
            self._transmitter = status
            self._transmitter_wall = self._wall()
            expire = self.settings.effective_expire_after(status.interval_s)
            if expire != self._expire_after:
                logger.info(
                    "Home Assistant: the transmitter sends every %g s; meter values now "
                    "expire after %d s",
                    status.interval_s,
                    expire,
                )
                self._expire_after = expire
                self._republish_meter_configs_locked()
            self._publish_bridge_locked(force=True)

    def _republish_meter_configs_locked(self) -> None:
        for slug, entities in self._entities.items():
            device = self._devices.get(slug)
            if device is None:
                continue
            for entity in entities.values():
                self._announce(device, entity)

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        self._guard("publishing diagnostics", self._on_diagnostics, snapshot)

    def _on_diagnostics(self, snapshot: RxSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot
            self._forget_stale_pending()
            published = self._bridge_published_at
            urgent = self._event_pending and (
                published is None or self._monotonic() - published >= EVENT_MIN_GAP_S
            )
            self._publish_bridge_locked(force=urgent)

    def link_event(self, event: LinkEventAction, at: float) -> None:
        self._guard("publishing a link event", self._on_link_event, event)

    def _on_link_event(self, event: LinkEventAction) -> None:
        # Not published here: the snapshot in hand predates the event (a switch would show the
        # old SF for seconds). The runtime follows every burst of events with fresh diagnostics
        # in the same step, and those go out at once (at most one a second).
        with self._lock:
            self._last_event = LinkEventView(event.kind, dict(event.fields), self._wall())
            self._event_pending = True

    def _view(self) -> BridgeView:
        return BridgeView(
            snapshot=self._snapshot,
            transmitter=self._transmitter,
            transmitter_at_wall=self._transmitter_wall,
            last_telegram_wall=self._last_telegram_wall,
            command=self._command_result,
            last_event=self._last_event,
            telegrams_published=self._published,
            telegrams_refused=self._refused,
        )

    def _publish_bridge_locked(self, *, force: bool) -> None:
        now = self._monotonic()
        last = self._bridge_published_at
        if not force and last is not None and now - last < self._bridge_interval_s:
            return
        self._event_pending = False
        topic = self._bridge.state_topic(self.settings)
        text = encode_state(bridge_state(self._view()))
        self._states[topic] = text
        self._states.move_to_end(topic, last=False)
        self._publish(topic, text, retain=True)
        self._bridge_published_at = now

    # ------------------------------------------------------------------ commands

    def _reply(self, result: CommandResult) -> None:
        """Publish a result on the reply topic and in the "Last command" sensor (lock held)."""
        self._command_result = result
        self._publish(
            self.reply_topic, json.dumps(result.reply(), ensure_ascii=False), retain=False
        )
        self._publish_bridge_locked(force=True)

    def _reject(
        self,
        message: str,
        request_id: object = None,
        cmd: str | None = None,
        source: str | None = None,
    ) -> None:
        rid = (
            request_id
            if isinstance(request_id, str | int) and not isinstance(request_id, bool)
            else None
        )
        logger.warning("Home Assistant: command refused: %s", message)
        with self._lock:
            self._commands_rejected += 1
            self._reply(
                CommandResult(REJECTED, cmd, None, message, rid, source, None, self._wall())
            )

    def _on_command(self, topic: str, payload: bytes) -> None:
        if not payload.strip():
            return  # the bridge's own clean-up of the retained command (see `start`)
        try:
            request = parse_command_payload(payload, self.settings.link)
        except CommandRejected as exc:
            self._reject(str(exc), exc.request_id)
            return
        self.submit(request)

    def submit(self, request: CommandRequest) -> int | None:
        """Queue a validated request on the runtime; returns the link's command id, or None
        when it was refused (the refusal is published like any other result)."""
        with self._lock:
            port = self._commands
            self._forget_stale_pending()
            busy = len(self._pending) >= self._max_pending
        if port is None:
            self._reject(
                "the bridge has no link to the transmitter yet",
                request.request_id,
                request.cmd,
                request.source,
            )
            return None
        if busy:
            self._reject(
                f"{self._max_pending} commands are already waiting for the transmitter; "
                "try again when they are answered",
                request.request_id,
                request.cmd,
                request.source,
            )
            return None
        try:
            # Never under our lock: the runtime takes its own lock here, and holds it while
            # it calls this sink.
            command_id = port.queue_command(request.command)
        except Exception as exc:  # noqa: BLE001 - whatever the runtime says, the user reads it
            self._reject(
                f"the link refused the command: {exc}",
                request.request_id,
                request.cmd,
                request.source,
            )
            return None
        logger.info(
            "Home Assistant: command %r queued as %d (id %r, from %s)",
            str(request.command),
            command_id,
            request.request_id,
            request.source or "mqtt",
        )
        with self._lock:
            self._commands_queued += 1
            result = CommandResult(
                QUEUED,
                request.cmd,
                str(request.command),
                "waiting for the next chance to send it",
                request.request_id,
                request.source,
                command_id,
                self._wall(),
            )
            self._reply(result)
            orphan = self._orphans.pop(command_id, None)
            if (
                orphan is not None
                and orphan[0].command == request.command
                and self._monotonic() - orphan[1] <= ORPHAN_MATCH_S
            ):
                self._finish(result, orphan[0])
            else:
                self._pending[command_id] = _Pending(result, self._monotonic())
        return command_id

    def _finish(self, queued: CommandResult, reply: CommandReply) -> None:
        status = STATUS_NAMES.get(reply.status, reply.status.name.lower())
        self._reply(replace(queued, status=status, text=reply.text, at=self._wall()))

    def command_reply(self, reply: CommandReply) -> None:
        self._guard("publishing a command reply", self._on_command_reply, reply)

    def _on_command_reply(self, reply: CommandReply) -> None:
        with self._lock:
            pending = self._pending.pop(reply.command_id, None)
            if pending is not None:
                self._finish(pending.result, reply)
                return
            # Not ours (queued elsewhere), or its `queue_command` has not returned yet:
            # show it, and keep it for `submit` to match.
            self._orphans[reply.command_id] = (reply, self._monotonic())
            while len(self._orphans) > _ORPHANS:
                self._orphans.popitem(last=False)
            anonymous = CommandResult(
                QUEUED, None, str(reply.command), "", None, None, reply.command_id, self._wall()
            )
            self._finish(anonymous, reply)

    def _forget_stale_pending(self) -> None:
        now = self._monotonic()
        for command_id, pending in list(self._pending.items()):
            if now - pending.queued_at > PENDING_FORGET_S:
                del self._pending[command_id]
                logger.warning(
                    "Home Assistant: no outcome for command %d (%s) after %.0f s; forgotten",
                    command_id,
                    pending.result.command,
                    PENDING_FORGET_S,
                )

    # ------------------------------------------------------------------ introspection

    def stats(self) -> BridgeStats:
        with self._lock:
            return BridgeStats(
                telegrams_published=self._published,
                telegrams_refused=self._refused,
                configs_published=self._configs_published,
                configs_removed=self._configs_removed,
                commands_queued=self._commands_queued,
                commands_rejected=self._commands_rejected,
                pending_commands=len(self._pending),
                errors=self._errors,
            )

    def config_topics(self) -> list[str]:
        """Topics of every config the bridge currently publishes (for tests and tools)."""
        with self._lock:
            return list(self._configs)

    def entities(self, device_slug: str) -> list[SensorEntity]:
        with self._lock:
            return list(self._entities.get(device_slug, {}).values())
