"""`RxRuntime`: the home side's event loop step around `RxLink` and a radio, and the sink
interface every receiver output implements.

`p1-lora-rx` is a thin shell around this: its main loop runs `step(now)` / `wait(wakeup)`
(`p1lora.service.run_loop.run_forever`), its outputs (MQTT/Home Assistant, the raw telegram
server, the link-quality log) are `RxSink`s, and MQTT's network thread calls `queue_command`
(thread-safe) when a user sends a command to the transmitter.

What goes to the sinks, in the order the link produced it:

| link action       | sink call                                              |
|-------------------|--------------------------------------------------------|
| `Deliver`         | `telegram(raw, received_at, report)`: byte-exact, verified |
| `StatusReport`    | `status(status, received_at, report)`                  |
| `CommandReply`    | `command_reply(reply)`                                  |
| `LinkEventAction` | `link_event(event, at)`                                 |
| (every few s)     | `diagnostics(snapshot)`: RSSI, SNR, settings, airtime, loss, last seen |

A sink that raises is logged (first failure with its traceback, then counted) and the other
sinks and the loop carry on: a broken MQTT connection must not stop the raw telegram server,
and nothing a sink does can stop the link from acknowledging the transmitter.

Sinks run on the runtime's thread inside `step`: they must not block (queue the work, as the
MQTT publisher and the raw server do).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol, runtime_checkable

from p1lora.common.link import (
    Action,
    Command,
    CommandReply,
    Deliver,
    LinkConfig,
    LinkDiagnostics,
    LinkEventAction,
    LinkReport,
    RxLink,
    StatusMessage,
    StatusReport,
    parse_command,
)
from p1lora.hardware.radio import Radio, RadioCounters
from p1lora.service.link_runtime import LinkRuntime, RuntimeObserver, RuntimeStats
from p1lora.service.state_store import StateStore

__all__ = ["BaseSink", "RxRuntime", "RxSink", "RxSnapshot"]

logger = logging.getLogger(__name__)

#: How often sinks get a diagnostics snapshot.
DEFAULT_DIAGNOSTICS_S = 5.0


@dataclass(frozen=True, slots=True)
class RxSnapshot:
    """The receiver's diagnostics: the link's view, the transmitter's last status, counters."""

    at: float
    link: LinkDiagnostics
    telegrams_delivered: int
    last_telegram_at: float | None
    transmitter: StatusMessage | None
    transmitter_status_at: float | None
    radio: RadioCounters | None
    runtime: RuntimeStats
    sink_errors: int

    @property
    def seconds_since_last_telegram(self) -> float | None:
        return None if self.last_telegram_at is None else max(0.0, self.at - self.last_telegram_at)


@runtime_checkable
class RxSink(Protocol):
    """A receiver output. Subclass `BaseSink` to implement only what you need."""

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        """A telegram rebuilt byte for byte and verified end to end (each delivered once)."""

    def status(self, status: StatusMessage, received_at: float, report: LinkReport) -> None:
        """The transmitter's periodic status report."""

    def command_reply(self, reply: CommandReply) -> None:
        """The transmitter answered a queued command (or it timed out / its fate is unknown)."""

    def link_event(self, event: LinkEventAction, at: float) -> None:
        """A link event (handshake, switch, rejection ...), for logs and diagnostics."""

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        """Periodic link diagnostics (every `diagnostics_interval_s`)."""


class BaseSink:
    """An `RxSink` that ignores everything: subclass it and override what you need."""

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        return None

    def status(self, status: StatusMessage, received_at: float, report: LinkReport) -> None:
        return None

    def command_reply(self, reply: CommandReply) -> None:
        return None

    def link_event(self, event: LinkEventAction, at: float) -> None:
        return None

    def diagnostics(self, snapshot: RxSnapshot) -> None:
        return None


class RxRuntime(LinkRuntime):
    """The receiver's runtime (see the module docstring)."""

    ROLE = "rx"

    def __init__(  # noqa: PLR0913 - optional parts after `*`, all keyword-only
        self,
        radio: Radio,
        config: LinkConfig,
        psk: bytes,
        now: float,
        *,
        store: StateStore | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        sinks: Iterable[RxSink] = (),
        observers: Iterable[RuntimeObserver] = (),
        link_log: Callable[[float, LinkEventAction], None] | None = None,
        diagnostics_interval_s: float = DEFAULT_DIAGNOSTICS_S,
    ) -> None:
        if not diagnostics_interval_s > 0:
            raise ValueError("diagnostics_interval_s must be positive")
        store = store if store is not None else StateStore.memory("rx")
        if store.role != "rx":
            raise ValueError("RxRuntime needs the receiver's state store (role 'rx')")
        link = RxLink(
            config,
            psk,
            store.load_counters(),
            rng,
            now,
            persisted=store.load_rx_state(),
        )
        self.rx_link = link
        self._sinks: list[RxSink] = list(sinks)
        self._diagnostics_interval_s = diagnostics_interval_s
        self._next_diagnostics_at = now + diagnostics_interval_s
        self._events_since_diagnostics = False
        self._delivered = 0
        self._last_telegram_at: float | None = None
        self._transmitter: StatusMessage | None = None
        self._transmitter_at: float | None = None
        self._sink_errors = 0
        super().__init__(radio, link, store, now=now, observers=observers, link_log=link_log)

    # ------------------------------------------------------------------ thread-safe entry

    def add_sink(self, sink: RxSink) -> None:
        with self._lock:
            self._sinks.append(sink)

    def queue_command(self, command: Command | str, now: float | None = None) -> int:
        """Queue a command for the transmitter (any thread); returns its id, which the
        `CommandReply` carries. A text command that does not parse raises `ValueError`
        (`CommandSyntaxError`) with the usage, before anything is queued."""
        parsed = parse_command(command) if isinstance(command, str) else command
        with self._lock:
            command_id = self.rx_link.queue_command(parsed, self._now if now is None else now)
        self.wakeup.set()  # its command_queued event goes out with the next step
        return command_id

    def diagnostics(self, now: float | None = None) -> RxSnapshot:
        """A snapshot of the link and the runtime (any thread)."""
        with self._lock:
            at = self._now if now is None else now
            counters = getattr(self.radio, "counters", None)
            return RxSnapshot(
                at=at,
                link=self.rx_link.diagnostics(at),
                telegrams_delivered=self._delivered,
                last_telegram_at=self._last_telegram_at,
                transmitter=self._transmitter,
                transmitter_status_at=self._transmitter_at,
                radio=counters if isinstance(counters, RadioCounters) else None,
                runtime=replace(self.stats),
                sink_errors=self._sink_errors,
            )

    # ------------------------------------------------------------------ hooks

    def _extra_handlers(self) -> dict[type[Any], Callable[[float, Any], Sequence[Action] | None]]:
        return {
            Deliver: self._do_deliver,
            StatusReport: self._do_status,
            CommandReply: self._do_command_reply,
        }

    def _after_tick(self, now: float) -> None:
        if now >= self._next_diagnostics_at or self._events_since_diagnostics:
            self._next_diagnostics_at = now + self._diagnostics_interval_s
            self._events_since_diagnostics = False
            if self._sinks:
                self._to_sinks("diagnostics", self.diagnostics(now))

    def _own_deadlines(self) -> list[float | None]:
        return [self._next_diagnostics_at] if self._sinks else []

    def _on_link_event(self, now: float, event: LinkEventAction) -> None:
        self._to_sinks("link_event", event, now)
        # Sinks show the state an event leads to (a switch, a lost link): fresh diagnostics
        # follow every burst of events at the end of this step.
        self._events_since_diagnostics = True

    def _to_sinks(self, method: str, *args: object) -> None:
        for sink in self._sinks:
            label = f"sink {type(sink).__name__}.{method}"
            if not self._guard.call(label, getattr(sink, method), *args):
                self._sink_errors += 1

    def _do_deliver(self, now: float, action: Deliver) -> None:
        self._delivered += 1
        self._last_telegram_at = action.received_at
        self._to_sinks("telegram", action.telegram, action.received_at, action.report)

    def _do_status(self, now: float, action: StatusReport) -> None:
        self._transmitter = action.status
        self._transmitter_at = action.received_at
        self._to_sinks("status", action.status, action.received_at, action.report)

    def _do_command_reply(self, now: float, action: CommandReply) -> None:
        logger.info(
            "rx runtime: command %d %r: %s %s",
            action.command_id,
            str(action.command),
            action.status.name,
            action.text,
        )
        self._to_sinks("command_reply", action)
