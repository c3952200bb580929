"""What `TxLink` and `RxLink` share: actions, the budget gate, radio-busy tracking, rejections.

Invariants kept here for both sides:

- a `Transmit` is emitted only when the link believes the radio idle (after the `tx_done` of
  the previous one, or a watchdog if the runtime never reports it) and only when the
  sub-band's `AirtimeBudget` allows the frame *now*; the frame is counted at emission;
- a frame's counter reservation (`PersistCounters`) is emitted before its `Transmit`;
- public event methods never raise: an unexpected exception is logged with its traceback and
  counted, and the link carries on (a reading loop must not die of one bad frame).
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Generic, TypeVar

from p1lora.common.airtime import MAX_PAYLOAD, time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.counters import CounterState
from p1lora.common.crypto import Direction
from p1lora.common.fatal import FatalError
from p1lora.common.frames import FrameError, FrameType, RejectReason, overhead
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.diagnostics import LinkDiagnostics, LossWindow, RejectionLog
from p1lora.common.link.events import (
    Action,
    Configure,
    LinkEvent,
    LinkEventAction,
    PersistCounters,
    Transmit,
)
from p1lora.common.link.messages import MessageError
from p1lora.common.link.session import LinkSecurity, OutgoingFrame
from p1lora.common.link.states import RxState, TxState, check_transition
from p1lora.common.radio_types import RadioSettings, ReceivedFrame

__all__ = ["LinkBase", "decode_body"]

logger = logging.getLogger("p1lora.common.link")

_S = TypeVar("_S", TxState, RxState)
_T = TypeVar("_T")


class LinkBase(Generic[_S]):
    """Shared machinery; see the module docstring. Not used on its own."""

    ROLE: ClassVar[str] = "link"
    SENDING: ClassVar[Direction] = Direction.UPLINK
    #: The machine's legal transitions (`states.TX_TRANSITIONS` / `RX_TRANSITIONS`).
    TRANSITIONS: ClassVar[Mapping[Any, frozenset[Any]]]
    #: Set by the subclass before its first event (its start state depends on what it restored).
    _state: _S
    #: Recent frames answered or not (each side sizes its own window).
    _loss: LossWindow

    def __init__(
        self,
        config: LinkConfig,
        psk: bytes,
        counter_state: CounterState | None,
        rng: Callable[[int], bytes],
        now: float,
    ) -> None:
        self.config = config
        self._security = LinkSecurity(psk, self.SENDING, counter_state, config.counter_block, rng)
        self._rng = rng
        self._budget = AirtimeBudget.for_sub_band(config.sub_band())
        self._actions: list[Action] = []
        self._now = now
        rendezvous = config.rendezvous()
        self._settings: RadioSettings = rendezvous
        self._last_good: RadioSettings = rendezvous
        self._radio_busy = False
        #: Whether the last frame the radio finished actually went on air (`tx_done`).
        self._frame_aired = True
        self._tx_watchdog: float | None = None
        self._rejections = RejectionLog(logger, self.ROLE)
        self._frames_sent: Counter[str] = Counter()
        self._frames_received = 0
        #: What happened to telegrams (read, sent, acked, delivered, ...), for diagnostics.
        self._telegrams: Counter[str] = Counter()
        self._internal_errors = 0
        self._max_body_cache: dict[tuple[RadioSettings, FrameType], int] = {}
        #: The last authentic frame accepted (exact duplicates are answered, not re-processed).
        self._last_accepted_raw: bytes | None = None

    # -- public read-only state ------------------------------------------------------------

    @property
    def state(self) -> _S:
        """Protocol state name (rendezvous, handshake, switching, probing, running, fallback...)."""
        return self._state

    @property
    def settings(self) -> RadioSettings:
        """The radio settings this side uses now."""
        return self._settings

    @property
    def last_known_good(self) -> RadioSettings:
        """The setting this side reverts to when a new one fails."""
        return self._last_good

    @property
    def budget(self) -> AirtimeBudget:
        """This node's airtime budget. Read it; never record into it. A runtime may save
        `budget.transmissions(now)` and, right after constructing the link on restart,
        `budget.restore(saved)` (times on the same clock), so a reboot cannot reset the hour."""
        return self._budget

    @property
    def network_id(self) -> bytes:
        return self._security.network_id

    @property
    def session_active(self) -> bool:
        return self._security.session is not None

    @property
    def internal_errors(self) -> int:
        """Unexpected exceptions caught in event handlers (a bug if ever non-zero)."""
        return self._internal_errors

    @property
    def rejected(self) -> dict[str, int]:
        """Rejected frames per reason since start."""
        return dict(self._rejections.counts)

    def diagnostics(self, now: float) -> LinkDiagnostics:
        """A snapshot for the runtime's diagnostics (both sides report the same fields)."""
        up_rssi, up_snr, down_rssi, down_snr = self._readings()
        return LinkDiagnostics(
            role=self.ROLE,
            state=self._state.value,
            settings=self._settings,
            last_known_good=self._last_good,
            tx_power_dbm=self._settings.tx_power_dbm,
            mode=self._mode_label(),
            session=self.session_active,
            uplink_rssi_dbm=up_rssi,
            uplink_snr_db=up_snr,
            downlink_rssi_dbm=down_rssi,
            downlink_snr_db=down_snr,
            loss_rate=self._loss.rate,
            airtime_used=self._airtime_used(now),
            airtime_total_s=self._budget.total_airtime,
            frames_sent=dict(self._frames_sent),
            frames_received=self._frames_received,
            rejected=self.rejected,
            telegrams=dict(self._telegrams),
            second_transmitter_frames=self._security.second_sender_frames,
        )

    def actions(self) -> list[Action]:
        """Drain the actions queued so far (event methods return them too)."""
        out, self._actions = self._actions, []
        return out

    def next_deadline(self) -> float | None:
        """When `tick` must next be called (None: only events can change anything)."""
        candidates = [self._tx_watchdog, self._rejections.next_deadline, *self._deadlines()]
        times = [t for t in candidates if t is not None]
        return min(times) if times else None

    def tick(self, now: float) -> list[Action]:
        """Time passed: fire due timers and send what became possible."""
        self._guarded(now, self._on_tick)
        return self.actions()

    def tx_done(self, now: float, airtime_s: float | None = None) -> list[Action]:
        """The radio finished sending (runtime guarantee: reported with the real airtime).
        The budget counts the airtime computed when the frame was emitted; `airtime_s` None
        means the frame never went on air (listen before talk gave it up, or it was aborted):
        `_frame_aired` tells the subclass."""

        def done(at: float) -> None:
            self._frame_aired = airtime_s is not None
            self._radio_busy = False
            self._tx_watchdog = None
            self._on_tx_done(at)
            self._on_tick(at)

        self._guarded(now, done)
        return self.actions()

    def frame_received(self, frame: ReceivedFrame) -> list[Action]:
        """A frame arrived (it passed the radio's CRC; everything else is checked here)."""

        def received(at: float) -> None:
            self._frames_received += 1
            self._on_frame(at, frame)
            self._on_tick(at)

        self._guarded(frame.received_at, received)
        return self.actions()

    # -- subclass hooks ---------------------------------------------------------------------

    def _on_tick(self, now: float) -> None:
        raise NotImplementedError

    def _on_tx_done(self, now: float) -> None:
        raise NotImplementedError

    def _on_frame(self, now: float, frame: ReceivedFrame) -> None:
        raise NotImplementedError

    def _deadlines(self) -> list[float | None]:
        raise NotImplementedError

    def _slotted(self, now: float) -> bool:
        """Whether a frame sent now goes in the link's own slot (`Transmit.slotted`)."""
        return False

    def _mode_label(self) -> str:
        """The radio mode diagnostics show ("-" where the side has none)."""
        return "-"

    def _readings(self) -> tuple[float | None, float | None, float | None, float | None]:
        """The last (uplink RSSI, uplink SNR, downlink RSSI, downlink SNR) this side knows."""
        raise NotImplementedError

    # -- helpers ----------------------------------------------------------------------------

    def _guarded(self, now: float, step: Callable[[float], None]) -> None:
        """Run one event step; an unexpected exception is logged and counted, never raised."""
        self._now = max(self._now, now)
        if self._tx_watchdog is not None and now >= self._tx_watchdog:
            self._radio_busy = False
            self._tx_watchdog = None
            self._event(LinkEvent.TX_DONE_MISSING)
        try:
            step(now)
        except FatalError:  # no retry can cure it (e.g. counters used up): the daemon stops
            raise
        except Exception:  # a protocol bug must not kill the runtime's reading loop
            self._internal_errors += 1
            logger.exception("%s: internal error while handling an event", self.ROLE)
        self._rejections.flush(now)

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _event(self, kind: LinkEvent, **fields: object) -> None:
        logger.debug("%s %s %s", self.ROLE, kind, fields)
        self._emit(LinkEventAction(kind, {"role": self.ROLE, "state": self._state.value, **fields}))

    def _set_state(self, state: _S, reason: str) -> None:
        """Move to `state` (staying put is no move); a move outside `TRANSITIONS` is a bug
        and raises `IllegalTransitionError`."""
        if state != self._state:
            previous = self._state
            check_transition(self.TRANSITIONS, previous, state)
            self._state = state
            logger.info("%s: %s -> %s (%s)", self.ROLE, previous, state, reason)
            self._event(LinkEvent.STATE, previous=previous.value, reason=reason)

    def _configure(self, settings: RadioSettings, reason: str) -> None:
        if settings != self._settings:
            logger.info(
                "%s: radio %s %d dBm -> %s %d dBm (%s)",
                self.ROLE,
                self._settings.label(),
                self._settings.tx_power_dbm,
                settings.label(),
                settings.tx_power_dbm,
                reason,
            )
        self._settings = settings
        self._emit(Configure(settings, reason))
        self._event(
            LinkEvent.CONFIGURE,
            settings=settings.label(),
            power=settings.tx_power_dbm,
            reason=reason,
        )

    def _max_body(self, frame_type: FrameType) -> int:
        """Largest body of this type that fits one frame at the current settings (255 bytes,
        and the sub-band's dwell-time cap where there is one)."""
        key = (self._settings, frame_type)
        cached = self._max_body_cache.get(key)
        if cached is not None:
            return cached
        limit = MAX_PAYLOAD
        dwell = self.config.sub_band().max_dwell_s
        if dwell is not None:
            while (
                limit > overhead(frame_type) + 1 and time_on_air_for(self._settings, limit) > dwell
            ):
                limit -= 1
        size = limit - overhead(frame_type)
        self._max_body_cache[key] = size
        return size

    def _airtime(self, size: int) -> float:
        return time_on_air_for(self._settings, size)

    def _budget_wait(self, now: float, size: int) -> float:
        """Seconds until a frame of `size` bytes may start (inf if it never may)."""
        return self._budget.wait_time(now, self._airtime(size))

    def _send(
        self, now: float, size: int, seal: Callable[[], OutgoingFrame]
    ) -> OutgoingFrame | None:
        """Seal and emit a frame if the radio is idle and the budget allows it now."""
        if self._radio_busy:
            return None
        airtime = self._airtime(size)
        if not self._budget.may_send(now, airtime):
            return None
        out = seal()
        if len(out.frame) != size:
            raise AssertionError(f"{out.frame_type.name}: sealed {len(out.frame)} != {size}")
        if out.persist is not None:
            self._emit(PersistCounters(out.persist))
        self._transmit(now, out.frame, out.frame_type.name, airtime)
        return out

    def _resend(self, now: float, frame: bytes, name: str) -> bool:
        """Send exactly these bytes again (no new counter, no new nonce) if allowed now."""
        if self._radio_busy:
            return False
        airtime = self._airtime(len(frame))
        if not self._budget.may_send(now, airtime):
            return False
        self._transmit(now, frame, name, airtime)
        return True

    def _transmit(self, now: float, frame: bytes, name: str, airtime: float) -> None:
        self._budget.record(now, airtime)
        self._radio_busy = True
        self._tx_watchdog = now + 1.5 * airtime + 1.0
        self._frames_sent[name] += 1
        self._emit(Transmit(frame, self._settings, name, airtime, self._slotted(now)))

    def _reject(self, now: float, error: FrameError, frame: ReceivedFrame) -> None:
        reason = error.reason.value
        self._rejections.record(now, reason, str(error))
        self._emit(
            LinkEventAction(
                LinkEvent.FRAME_REJECTED,
                {
                    "role": self.ROLE,
                    "state": self._state.value,
                    "reason": reason,
                    "bytes": len(frame.payload),
                    "rssi": frame.rssi_dbm,
                    "snr": frame.snr_db,
                },
            )
        )

    def _jitter(self) -> float:
        """A factor in [0.8, 1.2) from the injected randomness (avoids lock-step retries)."""
        value = int.from_bytes(self._rng(2), "big") / 65536
        return 0.8 + 0.4 * value

    def _airtime_used(self, now: float) -> float:
        return self._budget.fraction_used(now)

    @staticmethod
    def _finite(value: float) -> float | None:
        return value if math.isfinite(value) else None


def decode_body(parse: Callable[[bytes], _T], body: bytes) -> _T:
    """Parse an authentic frame's body; a body that does not parse rejects the frame as
    malformed (a `FrameError`, counted and logged like any rejection)."""
    try:
        return parse(body)
    except MessageError as exc:
        raise FrameError(RejectReason.MALFORMED, str(exc)) from None
