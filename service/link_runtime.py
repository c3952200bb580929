"""What `TxRuntime` and `RxRuntime` share: executing link actions on a radio, one step at a time.

A runtime is the thin, non-blocking shell between a sans-I/O link (`TxLink`/`RxLink`) and the
devices. `step(now)` drains what arrived (radio events; the subclasses add telegrams and
commands), feeds the link, executes the actions it returns **in order** and says when it next
needs to run. The daemons loop `deadline = rt.step(clock.now()); clock.wait(rt.wakeup, ...)`
(`service.run_loop.run_forever`), the simulator steps several runtimes on one `VirtualClock`.

What the runtime guarantees the link (docs/protocol.md, section 8):

- `Configure` reaches the radio at once. If the radio refuses, the settings are retried with
  a growing delay, and a transmission cut short by a reconfiguration is reported as ended.
- `Transmit` is started at once. If the radio refuses (busy, broken), the refusal is logged and
  the transmission is reported as ended a little later (never from inside the same step: a
  broken radio must not turn into a tight send-refuse loop, on real or virtual time).
- Listen before talk (the transmitter, with `AirPolicy.listen_before_talk` and a radio that can
  CAD: `service.listen_before_talk`): a `Transmit` is held until a CAD finds the channel free,
  at most `max_hold` (inside the link's transmit watchdog), and sent only if it fits the duty
  cycle at its real start; a frame that cannot go is reported as ended unsent (to the link it
  went unanswered). Otherwise, or for the receiver, `Transmit` is started at once.
- `tx_done` is reported with the radio's own airtime; a `RadioFault` while a frame was on air
  (the chip was reset, the frame is lost) is reported as the end of that transmission too, so
  the link never waits for a `TxDone` that cannot come.
- `PersistCounters` / `PersistState` are written to the `StateStore` *before* the next action
  is executed (a counter reservation is on disk before the frame that needs it is on air). A
  write that fails is logged by the store and retried periodically; the link carries on.
- Received frames carry RSSI, SNR and the settings they were heard on (the radio provides them).

Observers (`RuntimeObserver`) see every frame sent and received, every settings change and
every link event: the daemons' link-quality log and the simulator's metrics hang off them. A
callback that raises (an observer, a sink, a daemon callback) is logged with its traceback the
first time, counted, and never breaks the loop.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from p1lora.common.backoff import Backoff
from p1lora.common.frames import TYPE_MASK, VERSION, FrameType
from p1lora.common.link import (
    Action,
    Configure,
    LinkEventAction,
    PersistCounters,
    PersistState,
    RxLink,
    Transmit,
    TxLink,
)
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.radio import (
    CadDone,
    CadRadio,
    FrameReceived,
    Radio,
    RadioError,
    RadioFault,
    TxDone,
)
from p1lora.service.listen_before_talk import (
    ChannelRssi,
    ContentionWindow,
    LbtStats,
    energy_threshold_dbm,
    max_hold,
)
from p1lora.service.state_store import StateStore

__all__ = [
    "CallbackGuard",
    "LinkRuntime",
    "RuntimeObserver",
    "RuntimeStats",
    "frame_type_name",
]

logger = logging.getLogger(__name__)

#: First delay before a refused transmission is reported as ended / a refused configure is
#: retried; doubles per consecutive refusal up to the maximum.
RETRY_INITIAL_S = 0.5
RETRY_MAX_S = 30.0
#: A state write that failed is tried again this often.
STORE_RETRY_S = 60.0
#: A stale link deadline (already past after ticking) is pushed this far ahead so that a loop
#: cannot spin on it; this only happens if the link has a bug, and it is counted.
STALE_DEADLINE_S = 0.001
#: How often `tick` may be called in one step while the link's deadline stays due.
_MAX_TICKS_PER_STEP = 4


def frame_type_name(payload: bytes) -> str:
    """The p1-lora frame type of a raw frame from its first byte ("unknown" if none)."""
    if not payload or payload[0] >> 5 != VERSION:
        return "unknown"
    try:
        return FrameType(payload[0] & TYPE_MASK).name
    except ValueError:
        return "unknown"


class RuntimeObserver:
    """Hooks into a runtime; every method is optional (the defaults do nothing).

    Called on the runtime's thread, in the order things happen. Keep them short: they run inside
    `step`. An observer that raises is logged and counted, never fatal.
    """

    def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
        """The radio started sending `transmit.payload`; `airtime_s` is the radio's figure."""

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        """A frame passed the radio's CRC; `rejected` is the link's reason if it refused it."""

    def configured(self, now: float, settings: RadioSettings, reason: str) -> None:
        """The radio now uses `settings` (the link asked for it because of `reason`)."""

    def link_event(self, now: float, event: LinkEventAction) -> None:
        """A link event for the link-quality log (handshake steps, switches, rejections...)."""

    def radio_fault(self, now: float, fault: RadioFault) -> None:
        """The radio reported trouble (already logged by the driver)."""


class CallbackGuard:
    """Run callbacks that must not break the loop: log the first failure of each label with its
    traceback, then one warning per 100 failures (a broken sink called every second must not
    flood the journal)."""

    def __init__(self, log: logging.Logger, what: str) -> None:
        self._log = log
        self._what = what
        self.failures: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.failures.values())

    def call(self, label: str, function: Callable[..., object], *args: object) -> bool:
        """Call `function(*args)`; False (logged, counted) if it raised."""
        try:
            function(*args)
        except Exception:  # noqa: BLE001 - logged below (traceback on the first failure)
            count = self.failures.get(label, 0) + 1
            self.failures[label] = count
            if count == 1:
                self._log.exception(
                    "%s %s failed (further failures are counted)", self._what, label
                )
            elif count % 100 == 0:
                self._log.warning("%s %s has failed %d times", self._what, label, count)
            return False
        return True


@dataclass
class RuntimeStats:
    """What a runtime counted since it started (diagnostics, tests)."""

    steps: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    frames_rejected: int = 0
    send_refused: int = 0
    configure_failed: int = 0
    radio_faults: int = 0
    persist_failed: int = 0
    stale_deadlines: int = 0
    callback_errors: int = 0
    unknown_actions: int = 0
    airtime_s: float = 0.0


class LinkRuntime:
    """Shared machinery of `TxRuntime` and `RxRuntime` (see the module docstring)."""

    ROLE: ClassVar[str] = "link"

    def __init__(
        self,
        radio: Radio,
        link: TxLink | RxLink,
        store: StateStore,
        *,
        now: float,
        observers: Iterable[RuntimeObserver] = (),
        link_log: Callable[[float, LinkEventAction], None] | None = None,
    ) -> None:
        self.radio = radio
        #: Set by the radio when it has news and by the runtime's thread-safe entry points.
        self.wakeup: threading.Event = radio.wakeup
        self.store = store
        self.stats = RuntimeStats()
        self._link = link
        self._observers: list[RuntimeObserver] = list(observers)
        self._link_log = link_log
        self._lock = threading.RLock()
        self._now = now
        self._guard = CallbackGuard(logger, f"{self.ROLE} runtime:")
        self._in_flight: Transmit | None = None
        self._refused_report_at: float | None = None
        self._refusal_backoff = _retry_backoff()
        self._wanted: RadioSettings | None = None
        self._configure_retry_at: float | None = None
        self._configure_backoff = _retry_backoff()
        self._store_retry_at: float | None = None
        #: Listen before talk (the transmitter, when its link asks for it and the radio can
        #: CAD): the frame waiting for a free channel, since when, and the next CAD's time.
        self._lbt: ContentionWindow | None = None
        if (
            isinstance(link, TxLink)
            and link.config.air.listen_before_talk
            and isinstance(radio, CadRadio)
        ):
            # The link's injected randomness: seeded in the simulator, os.urandom in a daemon.
            self._lbt = ContentionWindow(link._rng)
        self._held: Transmit | None = None
        self._held_since = 0.0
        self._hold_until = 0.0
        self._cad_at: float | None = None
        self._cad_running = False
        self._handlers: dict[type[Any], Callable[[float, Any], Sequence[Action] | None]] = {
            Configure: self._do_configure,
            Transmit: self._do_transmit,
            PersistCounters: self._do_persist_counters,
            PersistState: self._do_persist_state,
            LinkEventAction: self._do_link_event,
            **self._extra_handlers(),
        }
        self._events: dict[type[Any], Callable[[float, Any], None]] = {
            TxDone: self._on_tx_done,
            CadDone: self._on_cad_done,
            FrameReceived: self._on_frame,
            RadioFault: self._on_fault,
        }
        # What the link queued at construction (its first Configure): the radio listens at once.
        # Subclasses set up their own state before calling this constructor.
        self._execute(now, link.actions())

    # ------------------------------------------------------------------ public

    @property
    def now(self) -> float:
        """The time of the last step (what thread-safe entry points use as `now`)."""
        return self._now

    @property
    def link_settings(self) -> RadioSettings:
        """The radio settings the link uses now; right after construction, where it started
        (the rendezvous, or the last good setting a restart resumed at)."""
        return self._link.settings

    @property
    def listen_before_talk(self) -> LbtStats | None:
        """What listening before talking did (None when this runtime does not)."""
        return None if self._lbt is None else self._lbt.stats

    def add_observer(self, observer: RuntimeObserver) -> None:
        with self._lock:
            self._observers.append(observer)

    def step(self, now: float) -> float | None:
        """Drain, feed, execute; return when the runtime next needs to run (None: only when
        `wakeup` is set)."""
        with self._lock:
            self._now = now
            self.stats.steps += 1
            self._execute(now, self._link.actions())
            self._poll_radio(now)
            self._listen(now)
            self._before_tick(now)
            self._retry_radio(now)
            self._tick(now)
            self._after_tick(now)
            self._retry_store(now)
            return self._next_deadline(now)

    # ------------------------------------------------------------------ subclass hooks

    def _extra_handlers(self) -> dict[type[Any], Callable[[float, Any], Sequence[Action] | None]]:
        return {}

    def _before_tick(self, now: float) -> None:
        """Feed the link what arrived from outside (telegrams, commands)."""

    def _after_tick(self, now: float) -> None:
        """Periodic work after the link ran (diagnostics)."""

    def _own_deadlines(self) -> list[float | None]:
        return []

    def _on_link_event(self, now: float, event: LinkEventAction) -> None:
        """Subclasses forward link events further (the receiver's sinks)."""

    # ------------------------------------------------------------------ executing actions

    def _execute(self, now: float, actions: Iterable[Action]) -> None:
        """Execute actions in order; actions a handler causes (a link event it had to report)
        are executed after the ones already queued, as the link emitted them later."""
        queue: deque[Action] = deque(actions)
        while queue:
            action = queue.popleft()
            handler = self._handlers.get(type(action))
            if handler is None:
                self.stats.unknown_actions += 1
                logger.warning("%s runtime: no handler for %r", self.ROLE, action)
                continue
            more = handler(now, action)
            if more:
                queue.extend(more)

    def _notify(self, method: str, *args: object) -> None:
        for observer in self._observers:
            if not self._guard.call(f"observer {method}", getattr(observer, method), *args):
                self.stats.callback_errors += 1

    def _do_configure(self, now: float, action: Configure) -> Sequence[Action] | None:
        self._wanted = action.settings
        aborted = self._in_flight is not None and self._radio_busy()
        held = self._drop_held()
        if not self._apply(now, action.settings, action.reason):
            return None
        if aborted or held:
            # The driver aborted the frame on air to change settings: it will not report it.
            self._in_flight = None
            return self._link.tx_done(now, None)
        return None

    def _radio_busy(self) -> bool:
        try:
            return self.radio.busy()
        except Exception:  # noqa: BLE001 - a radio that cannot say is treated as idle
            return False

    def _apply(self, now: float, settings: RadioSettings, reason: str) -> bool:
        try:
            self.radio.configure(settings)
        except RadioError as exc:
            self.stats.configure_failed += 1
            delay = self._configure_backoff.next_delay()
            self._configure_retry_at = now + delay
            logger.error(
                "%s runtime: the radio refused settings %s (%s); retrying in %.1f s",
                self.ROLE,
                settings.label(),
                exc,
                delay,
            )
            return False
        self._configure_backoff.reset()
        self._configure_retry_at = None
        self._notify("configured", now, settings, reason)
        return True

    def _do_transmit(self, now: float, action: Transmit) -> Sequence[Action] | None:
        # A new transmission means the link considers any earlier one over.
        self._refused_report_at = None
        if self.radio.settings != action.settings and not self._apply(
            now, action.settings, "transmit"
        ):
            self._refuse(now, "the radio could not be configured for it")
            return None
        if self._lbt is not None:
            exchange = 2 * action.airtime_s
            self._held, self._held_since = action, now
            self._hold_until = now + max_hold(action.airtime_s)
            first = (
                0.0 if action.slotted else self._lbt.first_wait(exchange, self._hold_until - now)
            )
            self._cad_at = now + first
            self._listen(now)
            return None
        self._send_now(now, action)
        return None

    def _send_now(self, now: float, action: Transmit) -> None:
        try:
            airtime = self.radio.send(action.payload)
        except RadioError as exc:
            self._refuse(now, str(exc))
            return
        self._in_flight = action
        self._refusal_backoff.reset()
        self.stats.frames_sent += 1
        self.stats.airtime_s += airtime
        self._notify("frame_sent", now, action, airtime)

    # ------------------------------------------------------------------ listen before talk

    def _listen(self, now: float) -> None:
        """Start the CAD for the held frame when it is due; past its hold, give it up."""
        held, lbt = self._held, self._lbt
        if held is None or lbt is None or self._cad_running:
            return
        if self._cad_at is None or now < self._cad_at:
            return
        self._cad_at = None
        if now >= self._hold_until:
            lbt.stats.given_up += 1
            lbt.stats.deferred_s += now - self._held_since
            self._drop_held()
            # Not sent: to the link it went unanswered (it backs off and resends).
            self._execute(now, self._link.tx_done(now, None))
            return
        assert isinstance(self.radio, CadRadio)
        try:
            self.radio.start_cad()
        except RadioError as exc:
            logger.debug("%s runtime: no CAD (%s); sending without listening", self.ROLE, exc)
            self._release(now)
            return
        self._cad_running = True

    def _on_cad_done(self, now: float, event: CadDone) -> None:
        self._cad_running = False
        held, lbt = self._held, self._lbt
        if held is None or lbt is None:
            return
        busy = event.detected or self._energy_busy(held)
        lbt.heard(busy)
        if not busy:
            self._release(now)
            return
        backoff = lbt.backoff(2 * held.airtime_s, slotted=held.slotted)
        self._cad_at = min(now + backoff, self._hold_until)

    def _energy_busy(self, held: Transmit) -> bool:
        """Whether the channel's power says another frame is on it (any SF)."""
        if not isinstance(self.radio, ChannelRssi):
            return False
        try:
            power = self.radio.channel_rssi()
        except RadioError:
            return False
        return power > energy_threshold_dbm(held.settings.bw_hz)

    def _release(self, now: float) -> None:
        """Send the held frame now, if the duty cycle still allows it at its real start."""
        held, lbt = self._held, self._lbt
        if held is None or lbt is None:
            return
        lbt.stats.deferred_s += now - self._held_since
        self._held = None
        self._cad_at = None
        # The link counted the frame when it asked for it; it starts later. Every frame that
        # goes must fit the budget at its real start, or a window could hold too much: move
        # it in the link's own budget (its only window, which the budget store persists).
        if not self._link.budget.start_later(held.airtime_s, now):
            lbt.stats.given_up += 1
            self._execute(now, self._link.tx_done(now, None))
            return
        self._send_now(now, held)

    def _drop_held(self) -> bool:
        """Forget a frame waiting for the channel (the link moved on); True if there was one."""
        if self._held is None:
            return False
        self._held = None
        self._cad_at = None
        return True

    def _refuse(self, now: float, reason: str) -> None:
        self.stats.send_refused += 1
        self._in_flight = None
        first = self._refusal_backoff.attempts == 0
        self._refused_report_at = now + self._refusal_backoff.next_delay()
        level = logging.WARNING if first else logging.DEBUG
        logger.log(level, "%s runtime: the radio refused a frame: %s", self.ROLE, reason)

    def _do_persist_counters(self, now: float, action: PersistCounters) -> None:
        if not self._persist(lambda: self.store.save_counters(action.state)):
            self._schedule_store_retry(now)

    def _do_persist_state(self, now: float, action: PersistState) -> None:
        if not self._persist(lambda: self.store.save_link_state(action.state)):
            self._schedule_store_retry(now)

    def _persist(self, write: Callable[[], bool]) -> bool:
        try:
            ok = write()
        except Exception:  # the store logs I/O problems itself; anything else is a bug
            logger.exception("%s runtime: saving state failed", self.ROLE)
            ok = False
        if not ok:
            self.stats.persist_failed += 1
        return ok

    def _schedule_store_retry(self, now: float) -> None:
        if self._store_retry_at is None:
            self._store_retry_at = now + STORE_RETRY_S

    def _do_link_event(self, now: float, event: LinkEventAction) -> None:
        logger.debug("%s event %s %s", self.ROLE, event.kind, dict(event.fields))
        if self._link_log is not None and not self._guard.call(
            "link log", self._link_log, now, event
        ):
            self.stats.callback_errors += 1
        self._notify("link_event", now, event)
        self._on_link_event(now, event)

    # ------------------------------------------------------------------ radio events

    def _poll_radio(self, now: float) -> None:
        try:
            events = self.radio.poll()
        except Exception:  # the contract says never; a broken backend must not stop the loop
            logger.exception("%s runtime: polling the radio failed", self.ROLE)
            return
        for event in events:
            handler = self._events.get(type(event))
            if handler is not None:
                handler(now, event)

    def _on_tx_done(self, now: float, event: TxDone) -> None:
        self._in_flight = None
        self._execute(now, self._link.tx_done(min(event.at, now), event.airtime))

    def _on_frame(self, now: float, event: FrameReceived) -> None:
        self.stats.frames_received += 1
        actions = self._link.frame_received(event.frame)
        rejected = next(
            (
                str(a.fields.get("reason", "unknown"))
                for a in actions
                if isinstance(a, LinkEventAction) and a.kind == "frame_rejected"
            ),
            None,
        )
        if rejected is not None:
            self.stats.frames_rejected += 1
        self._notify("frame_received", event.frame, rejected)
        self._execute(now, actions)

    def _on_fault(self, now: float, fault: RadioFault) -> None:
        self.stats.radio_faults += 1
        self._notify("radio_fault", now, fault)
        if not fault.recovered:
            logger.error("%s runtime: the radio is not working (%s)", self.ROLE, fault.reason)
        self._cad_running = False
        if self._in_flight is not None or self._drop_held():
            # The frame on air was lost with the chip reset: no TxDone will come for it.
            self._in_flight = None
            self._execute(now, self._link.tx_done(now, None))

    # ------------------------------------------------------------------ retries and time

    def _retry_radio(self, now: float) -> None:
        if (
            self._configure_retry_at is not None
            and now >= self._configure_retry_at
            and self._wanted is not None
        ):
            self._configure_retry_at = None
            self._apply(now, self._wanted, "retry")
        if self._refused_report_at is not None and now >= self._refused_report_at:
            self._refused_report_at = None
            self._execute(now, self._link.tx_done(now, None))

    def _tick(self, now: float) -> None:
        for _ in range(_MAX_TICKS_PER_STEP):
            deadline = self._link.next_deadline()
            if deadline is None or deadline > now:
                return
            self._execute(now, self._link.tick(now))

    def _retry_store(self, now: float) -> None:
        if self._store_retry_at is None or now < self._store_retry_at:
            return
        self._store_retry_at = None
        try:
            done = self.store.retry()
        except Exception:
            logger.exception("%s runtime: retrying a state write failed", self.ROLE)
            done = False
        if not done:
            self._schedule_store_retry(now)

    def _next_deadline(self, now: float) -> float | None:
        candidates = [
            self._link.next_deadline(),
            self._refused_report_at,
            self._configure_retry_at,
            self._store_retry_at,
            None if self._held is None or self._cad_running else self._cad_at,
            *self._own_deadlines(),
        ]
        times = [t for t in candidates if t is not None]
        if not times:
            return None
        deadline = min(times)
        if deadline <= now:
            self.stats.stale_deadlines += 1
            deadline = now + STALE_DEADLINE_S
        return deadline


def _retry_backoff() -> Backoff:
    """Exact doubling (no jitter): one radio, no herd of clients to spread out."""
    return Backoff(RETRY_INITIAL_S, RETRY_MAX_S, jitter=0.0)
