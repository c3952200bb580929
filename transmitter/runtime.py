"""`TxRuntime`: the meter-closet side's event loop step around `TxLink` and a radio.

`p1-lora-tx` is a thin shell around this: the P1 serial source's reader thread calls
`submit_telegram(raw, received_at)` (thread-safe; it also sets `wakeup`), and the main loop runs
`deadline = runtime.step(clock.now()); clock.wait(runtime.wakeup, deadline - clock.now())`
(`p1lora.service.run_loop.run_forever`). The simulator does the same on a `VirtualClock`.

Each step (see `p1lora.service.link_runtime` for what all runtimes share):

1. radio events: `TxDone` -> `link.tx_done`, frames -> `link.frame_received`, faults;
2. telegrams submitted since the last step -> the plausibility gate -> `link.telegram_ready`
   (the link keeps the newest: latest wins, so a short queue is enough; overflow drops the
   oldest and is counted). Telegrams with a valid CRC pass the gate at once; DSMR 2.2/3
   telegrams (no CRC) are checked against the ones before them
   (`p1lora.common.plausibility`), sent one telegram late, and never sent when implausible:
   those are counted as telegram errors (in the STATUS frame's `other_errors`) and logged,
   the first at once and then a summary at most every `REJECTED_LOG_INTERVAL_S`. A held
   telegram the next one arrives too late for (the meter's data stopped in between) is
   dropped, not sent as current, and counted in `telegrams_expired`; telegrams the gate lets
   through unchecked while failing open (it logs an ERROR) in `telegrams_unchecked`;
3. every `status_update_s`, the serial source's counters -> `link.update_status` (the link sends
   them in its STATUS frames so the receiver can show the closet's health in Home Assistant);
4. `link.tick` when due; every returned action executed in order, `RunCommand` included: the
   daemon passes `on_restart` / `on_log_level` (without `on_log_level` the root logger's level
   is changed, which is what a user asking for `log level debug` wants).

Restart: a runtime built on the same `StateStore` resumes the frame counter from the persisted
reservation (so the receiver never mistakes the new frames for replays) and hands the link its
last known good settings, radio mode and interval (the link decides whether they still apply).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from p1lora.common.link import (
    Action,
    LinkConfig,
    LinkDiagnostics,
    LinkEventAction,
    RunCommand,
    SerialState,
    TxLink,
    TxStatus,
)
from p1lora.common.plausibility import PlausibilityGate, Verdict
from p1lora.hardware.radio import Radio
from p1lora.service.link_runtime import LinkRuntime, RuntimeObserver, RuntimeStats
from p1lora.service.state_store import StateStore
from p1lora.transmitter.serial_source import SourceState, SourceStats

__all__ = ["TxRuntime", "TxSnapshot", "tx_status_from_source"]

logger = logging.getLogger(__name__)

#: Telegrams waiting for the next step; the link only ever wants the newest, so a few suffice.
DEFAULT_QUEUE = 8
#: How often the serial source's counters are handed to the link.
DEFAULT_STATUS_UPDATE_S = 10.0
#: Implausible telegrams are summarised in the log at most this often (seconds).
REJECTED_LOG_INTERVAL_S = 60.0
#: Without a serial source, no telegram for this long means "no data".
_NO_DATA_AFTER_S = 30.0

#: Serial source state -> what the STATUS frame says about it.
_SERIAL_STATES: dict[str, SerialState] = {
    SourceState.STOPPED.value: SerialState.DISCONNECTED,
    SourceState.WAITING.value: SerialState.DISCONNECTED,
    SourceState.DETECTING.value: SerialState.UNKNOWN,
    SourceState.CONNECTED.value: SerialState.OK,
    SourceState.NO_DATA.value: SerialState.NO_DATA,
}


def tx_status_from_source(
    stats: SourceStats, uptime_s: float, *, previous: SourceStats | None = None
) -> TxStatus:
    """The STATUS-frame view of the serial source.

    "Connected" with CRC errors but no good telegram since the `previous` snapshot is reported
    as ERROR: bytes arrive but do not make telegrams (a wrong cable or a failing meter port).
    """
    state = _SERIAL_STATES.get(stats.state, SerialState.UNKNOWN)
    if (
        state is SerialState.OK
        and previous is not None
        and stats.crc_errors > previous.crc_errors
        and stats.telegrams_ok == previous.telegrams_ok
    ):
        state = SerialState.ERROR
    return TxStatus(
        serial_state=state,
        telegrams_read=stats.telegrams_ok,
        crc_errors=stats.crc_errors,
        other_errors=stats.framing_errors + stats.callback_errors,
        uptime_s=max(0.0, uptime_s),
    )


@dataclass(frozen=True, slots=True)
class TxSnapshot:
    """The transmitter's diagnostics: the link's view plus what the runtime counted."""

    at: float
    link: LinkDiagnostics
    telegrams_submitted: int
    telegrams_dropped: int
    last_telegram_at: float | None
    runtime: RuntimeStats
    #: Telegrams without CRC the plausibility gate refused (never sent).
    telegrams_rejected: int = 0
    #: Telegrams without CRC held for confirmation and dropped: the next came too late.
    telegrams_expired: int = 0
    #: Telegrams without CRC sent unchecked while the gate failed open.
    telegrams_unchecked: int = 0


class TxRuntime(LinkRuntime):
    """The transmitter's runtime (see the module docstring)."""

    ROLE = "tx"

    def __init__(  # noqa: PLR0913 - optional parts after `*`, all keyword-only
        self,
        radio: Radio,
        config: LinkConfig,
        psk: bytes,
        now: float,
        *,
        store: StateStore | None = None,
        rng: Callable[[int], bytes] = os.urandom,
        source_stats: Callable[[float], SourceStats] | None = None,
        on_restart: Callable[[], None] | None = None,
        on_log_level: Callable[[str], None] | None = None,
        observers: Iterable[RuntimeObserver] = (),
        link_log: Callable[[float, LinkEventAction], None] | None = None,
        status_update_s: float = DEFAULT_STATUS_UPDATE_S,
        max_queued: int = DEFAULT_QUEUE,
        plausibility: PlausibilityGate | None = None,
    ) -> None:
        if max_queued < 1:
            raise ValueError("max_queued must be at least 1")
        if not status_update_s > 0:
            raise ValueError("status_update_s must be positive")
        store = store if store is not None else StateStore.memory("tx")
        if store.role != "tx":
            raise ValueError("TxRuntime needs the transmitter's state store (role 'tx')")
        link = TxLink(
            config,
            psk,
            store.load_counters(),
            rng,
            now,
            persisted=store.load_tx_state(),
        )
        self._started_at = now
        self._source_stats = source_stats
        self._previous_source: SourceStats | None = None
        self._on_restart = on_restart
        self._on_log_level = on_log_level
        self._status_update_s = status_update_s
        self._next_status_at = now
        self._submit_lock = threading.Lock()
        self._queue: deque[tuple[bytes, float]] = deque()
        self._max_queued = max_queued
        self._submitted = 0
        self._dropped = 0
        self._last_telegram_at: float | None = None
        self._gate = plausibility if plausibility is not None else PlausibilityGate()
        self._rejected = 0
        self._expired = 0
        self._unchecked = 0
        # Rejections already logged, and when the next summary may be (None: none logged).
        self._rejected_logged = 0
        self._rejected_log_at: float | None = None
        self._last_rejection = ""
        self.tx_link = link
        super().__init__(radio, link, store, now=now, observers=observers, link_log=link_log)

    # ------------------------------------------------------------------ thread-safe entry

    def submit_telegram(self, raw: bytes, received_at: float) -> None:
        """A telegram from the meter (any thread). The next step hands it to the link."""
        with self._submit_lock:
            if len(self._queue) >= self._max_queued:
                self._queue.popleft()
                self._dropped += 1
            self._queue.append((bytes(raw), received_at))
            self._submitted += 1
        self.wakeup.set()

    def diagnostics(self, now: float | None = None) -> TxSnapshot:
        """A snapshot for logs, status pages and tests (any thread)."""
        with self._lock:
            at = self._now if now is None else now
            with self._submit_lock:
                submitted, dropped = self._submitted, self._dropped
            return TxSnapshot(
                at=at,
                link=self.tx_link.diagnostics(at),
                telegrams_submitted=submitted,
                telegrams_dropped=dropped,
                last_telegram_at=self._last_telegram_at,
                runtime=replace(self.stats),
                telegrams_rejected=self._rejected,
                telegrams_expired=self._expired,
                telegrams_unchecked=self._unchecked,
            )

    # ------------------------------------------------------------------ hooks

    def _extra_handlers(self) -> dict[type[Any], Callable[[float, Any], Sequence[Action] | None]]:
        return {RunCommand: self._do_run_command}

    def _before_tick(self, now: float) -> None:
        with self._submit_lock:
            telegrams = list(self._queue)
            self._queue.clear()
        for raw, received_at in telegrams:
            self._last_telegram_at = received_at
            verdict = self._gate.check(raw, received_at)
            if verdict.expired:
                self._expired += verdict.expired
                logger.info(
                    "a P1 telegram without CRC held for confirmation was dropped: the next one "
                    "came after a gap in the meter's data (over %g s), so it would have gone "
                    "out as a current reading",
                    self._gate.limits.max_hold_s,
                )
            if verdict.rejected:
                self._rejected += verdict.rejected
                self._last_rejection = verdict.reason or "implausible"
            if verdict.verdict is Verdict.UNCHECKED:
                self._unchecked += 1
            if verdict.release is not None:
                self._execute(now, self.tx_link.telegram_ready(now, verdict.release))
        self._log_rejected(now)
        if now >= self._next_status_at:
            self._next_status_at = now + self._status_update_s
            self.tx_link.update_status(self._status(now))

    def _log_rejected(self, now: float) -> None:
        """Say that implausible telegrams were dropped: the first at once, then at most one
        summary every REJECTED_LOG_INTERVAL_S (a noisy line must not flood the journal)."""
        new = self._rejected - self._rejected_logged
        if not new or (self._rejected_log_at is not None and now < self._rejected_log_at):
            return
        first = self._rejected_log_at is None
        self._rejected_log_at = now + REJECTED_LOG_INTERVAL_S
        self._rejected_logged = self._rejected
        logger.warning(
            "P1 telegram(s) without CRC rejected as implausible: %d%s (last: %s); nothing from "
            "them is sent%s",
            new,
            "" if first else " since the last report",
            self._last_rejection,
            f"; further ones are summarised at most every {REJECTED_LOG_INTERVAL_S:g} s"
            if first
            else "",
        )

    def _own_deadlines(self) -> list[float | None]:
        return [self._next_status_at]

    def _status(self, now: float) -> TxStatus:
        uptime = now - self._started_at
        if self._source_stats is not None:
            try:
                stats = self._source_stats(now)
            except Exception:
                logger.exception("tx runtime: reading the serial source's counters failed")
                return TxStatus(serial_state=SerialState.UNKNOWN, uptime_s=uptime)
            status = tx_status_from_source(stats, uptime, previous=self._previous_source)
            self._previous_source = stats
            return replace(status, other_errors=status.other_errors + self._rejected)
        # No serial source (simulator, replay): the runtime's own view of the telegram feed.
        with self._submit_lock:
            submitted = self._submitted
        last = self._last_telegram_at
        if last is None:
            state = SerialState.UNKNOWN
        elif now - last > _NO_DATA_AFTER_S:
            state = SerialState.NO_DATA
        else:
            state = SerialState.OK
        return TxStatus(
            serial_state=state,
            telegrams_read=submitted,
            other_errors=self._rejected,
            uptime_s=uptime,
        )

    def _do_run_command(self, now: float, action: RunCommand) -> None:
        if action.name == "restart":
            if self._on_restart is None:
                logger.warning("tx runtime: restart requested, but this runtime cannot restart")
                return
            logger.warning("tx runtime: restart requested over the link")
            self._guard.call("restart callback", self._on_restart)
            return
        if action.name == "log_level":
            level = (action.argument or "info").lower()
            logger.info("tx runtime: log level %s requested over the link", level)
            callback = self._on_log_level or _set_root_level
            self._guard.call("log level callback", callback, level)
            return
        logger.warning("tx runtime: unknown command %r from the link ignored", action.name)


def _set_root_level(level: str) -> None:
    logging.getLogger().setLevel(level.upper())
