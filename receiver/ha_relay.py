"""`CommandRelay`: commands from MQTT to the link, and every step of their life back to MQTT.

Buttons, the radio-mode select and users publish JSON on `<base>/command` (`ha_commands`
validates it); valid requests are queued on the runtime (`CommandPort.queue_command`,
thread-safe), and every step (`queued`, then the transmitter's answer, a timeout or `unknown`;
`rejected` when it never left the receiver) is published on `<base>/command/reply` and kept as
`last_result` for the bridge's "Last command" sensor.

A reply can arrive before `queue_command` has returned its id (the runtime's thread answers
while paho's thread is still queueing): such a reply is shown at once and kept for a few
seconds as an orphan that `submit` matches. Pending commands are bounded (a stuck automation
must not fill the link's queue) and forgotten after an hour without any answer.

Locking: it shares the bridge's lock and never holds it while calling the runtime (the runtime
holds its own lock while it calls the bridge).
"""

from __future__ import annotations

import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from p1lora.common.link.events import CommandReply
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
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.ha_ports import CommandPort, MqttPort

__all__ = [
    "DEFAULT_MAX_PENDING",
    "ORPHAN_MATCH_S",
    "PENDING_FORGET_S",
    "CommandRelay",
]

#: The Home Assistant output logs under one name, the bridge's, which the troubleshooting page
#: tells users to look for.
logger = logging.getLogger("p1lora.receiver.home_assistant")

#: Commands waiting for the transmitter at once; more are refused (a stuck automation must not
#: fill the link's queue).
DEFAULT_MAX_PENDING = 8
#: A pending command is forgotten after this long without any answer (the link answers every
#: command within its command timeout, 600 s by default; this only guards against bugs).
PENDING_FORGET_S = 3600.0
_ORPHANS = 16
#: A reply counts as the answer to a request whose `queue_command` had not returned yet only
#: within this many seconds (command ids wrap at 255, so an old reply must never match).
ORPHAN_MATCH_S = 10.0


@dataclass(slots=True)
class _Pending:
    result: CommandResult
    queued_at: float


class CommandRelay:
    """Commands between MQTT and the link (see the module docstring). `on_result` is called
    (lock held) after every result is published, so the bridge can show it."""

    def __init__(
        self,
        mqtt: MqttPort,
        settings: DiscoverySettings,
        lock: threading.RLock,
        *,
        commands: CommandPort | None,
        max_pending: int,
        on_result: Callable[[], None],
        wall_clock: Callable[[], float],
        monotonic: Callable[[], float],
    ) -> None:
        self._mqtt = mqtt
        self._settings = settings
        self._lock = lock
        self._commands = commands
        self._max_pending = max_pending
        self._on_result = on_result
        self._wall = wall_clock
        self._monotonic = monotonic
        self._pending: dict[int, _Pending] = {}
        self._orphans: OrderedDict[int, tuple[CommandReply, float]] = OrderedDict()
        self.last_result: CommandResult | None = None
        self.queued = 0
        self.rejected = 0

    @property
    def reply_topic(self) -> str:
        return f"{self._settings.base_topic}/{REPLY_LEVEL}"

    @property
    def pending(self) -> int:
        return len(self._pending)

    def attach(self, commands: CommandPort) -> None:
        """Where commands go (the `RxRuntime`), when it was built after the bridge."""
        with self._lock:
            self._commands = commands

    # ------------------------------------------------------------------ results

    def _reply(self, result: CommandResult) -> None:
        """Publish a result on the reply topic and show it (lock held)."""
        self.last_result = result
        self._mqtt.publish(
            self.reply_topic, json.dumps(result.reply(), ensure_ascii=False), retain=False
        )
        self._on_result()

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
            self.rejected += 1
            self._reply(
                CommandResult(REJECTED, cmd, None, message, rid, source, None, self._wall())
            )

    def _finish(self, queued: CommandResult, reply: CommandReply) -> None:
        status = STATUS_NAMES.get(reply.status, reply.status.name.lower())
        self._reply(replace(queued, status=status, text=reply.text, at=self._wall()))

    # ------------------------------------------------------------------ requests

    def on_command(self, topic: str, payload: bytes) -> None:
        """A message on the command topic (paho's thread)."""
        if not payload.strip():
            return  # the bridge's own clean-up of the retained command (see its `start`)
        try:
            request = parse_command_payload(payload, self._settings.link)
        except CommandRejected as exc:
            self._reject(str(exc), exc.request_id)
            return
        self.submit(request)

    def submit(self, request: CommandRequest) -> int | None:
        """Queue a validated request on the runtime; returns the link's command id, or None
        when it was refused (the refusal is published like any other result)."""
        with self._lock:
            port = self._commands
            self.forget_stale()
            busy = len(self._pending) >= self._max_pending
        why = (request.request_id, request.cmd, request.source)
        if port is None:
            self._reject("the bridge has no link to the transmitter yet", *why)
            return None
        if busy:
            self._reject(
                f"{self._max_pending} commands are already waiting for the transmitter; "
                "try again when they are answered",
                *why,
            )
            return None
        try:
            # Never under our lock: the runtime takes its own lock here, and holds it while
            # it calls the bridge.
            command_id = port.queue_command(request.command)
        except Exception as exc:  # noqa: BLE001 - whatever the runtime says, the user reads it
            self._reject(f"the link refused the command: {exc}", *why)
            return None
        logger.info(
            "Home Assistant: command %r queued as %d (id %r, from %s)",
            str(request.command),
            command_id,
            request.request_id,
            request.source or "mqtt",
        )
        with self._lock:
            self.queued += 1
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

    def on_reply(self, reply: CommandReply) -> None:
        """The link's answer to a command (the runtime's thread)."""
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

    def forget_stale(self) -> None:
        """Drop pending commands that never got any answer (lock held)."""
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
