"""`RxLink`: the home side of the link as a sans-I/O state machine.

States (the `state` property):

| state      | radio at                  | leaves when                                           |
|------------|---------------------------|-------------------------------------------------------|
| rendezvous | region rendezvous         | an authentic DISCOVER is answered -> handshake         |
| resume     | last known good (restart) | a frame confirms a session -> running; silence ->      |
|            |                           | rendezvous. Session frames it cannot open get a RESYNC |
| handshake  | where DISCOVER was heard  | the transmitter's first session frame confirms the     |
|            |                           | pending session -> running; expiry -> back; from       |
|            |                           | resume also its silence deadline (+ one handshake      |
|            |                           | grace after the last CHALLENGE) -> rendezvous          |
| running    | committed setting         | SWITCH -> probing; silence -> rendezvous               |
| probing    | switch target             | a non-probe frame proves the transmitter committed ->  |
|            |                           | running; `switch_timeout` (which covers the SWITCH     |
|            |                           | repeats and the probe phase) without frames -> fallback|
| fallback   | setting before the switch | any authentic frame -> running; silence -> rendezvous  |

Security rules: a DISCOVER is answered only when authentic and not answered before; at the
full response rate (a token bucket refilled so challenges use at most `handshake_share` of
the budget) only when sealed under the binding of the last confirmed session and above that
binding's persisted floor, otherwise slowed (its own bucket, a quarter of the rate; not at all
at or below the counters of a confirmed session), and always within the budget
(`replay_limits.DiscoverFilter`). The CHALLENGE binds the discovery's random, and the session
it creates stays *pending* until the transmitter proves it holds the same keys, so a replayed
discovery never establishes anything; nor does it hide the real transmitter: a session frame
that opens under no pending session is `no_session` as without one and earns a RESYNC, and an
answered DISCOVER holds a resumed receiver away from the rendezvous for one
`timing.handshake_grace` only. Every session frame must carry a counter above the last
accepted, so an exact copy of any frame is a replay and gets no answer: the transmitter
resends a frame whose ack was lost as the same body under a fresh counter with the resend
flag, and that resend gets the same answer again (a new ack) without being processed twice.

Delivery: a DATA update is decoded against the references this side holds (the last few
delivered telegrams by id, and always the one the transmitter's latest update used); a rebuilt
telegram is delivered once (`Deliver`) and acknowledged with its id; a BATCH's updates are
decoded in order, each later one against the telegram before it, delivered, and acknowledged
once with the last one's id; an update that cannot be decoded is answered with a NAK so the transmitter sends
a key update, and nothing wrong is ever delivered (the codec's end-to-end check). A STATUS
frame may carry an update after the report: the report is surfaced (`StatusReport`) and the
update handled exactly like DATA, with one ack for both.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from p1lora.common import codec
from p1lora.common.codec_fields import has_meter_clock
from p1lora.common.counters import CounterState
from p1lora.common.crc16 import crc16_arc
from p1lora.common.crypto import TAG_SIZE, Direction
from p1lora.common.frames import (
    HEADER_SIZE,
    FrameError,
    FrameType,
    RejectReason,
    SealedFrame,
    overhead,
)
from p1lora.common.link import timing
from p1lora.common.link.base import LinkBase, decode_body
from p1lora.common.link.commands import Command, ReplyStatus
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.diagnostics import LossWindow, TokenBucket
from p1lora.common.link.events import (
    CommandReply,
    Deliver,
    LinkEvent,
    LinkReport,
    PersistState,
    StatusReport,
)
from p1lora.common.link.fragments import Reassembler
from p1lora.common.link.messages import (
    Ack,
    AckKind,
    Batch,
    Challenge,
    Discover,
    FragmentHeader,
    Reply,
    Report,
    Resync,
    StatusMessage,
    Switch,
)
from p1lora.common.link.persist import RxPersistentState
from p1lora.common.link.replay_limits import DiscoverFilter
from p1lora.common.link.rx_commands import CommandQueue, QueuedCommand
from p1lora.common.link.states import RX_TRANSITIONS, RxState
from p1lora.common.link.tuning import (
    bw_offset_db,
    candidate_table,
    effective_snr_db,
    find,
    margin_db,
)
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.regions import RegionError

__all__ = ["RxLink"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Acked:
    """The last frame acknowledged (or that we tried to): its type, body and what the ack
    said, so that the transmitter's resend of it (same body, fresh counter, resend flag) is
    answered again without being processed twice."""

    frame_type: FrameType
    body: bytes
    answer: tuple[AckKind, int]


class RxLink(LinkBase[RxState]):
    """The receiver's link state machine (see the module docstring)."""

    ROLE = "rx"
    SENDING = Direction.DOWNLINK
    TRANSITIONS = RX_TRANSITIONS

    def __init__(
        self,
        config: LinkConfig,
        psk: bytes,
        counter_state: CounterState | None,
        rng: Callable[[int], bytes],
        now: float,
        *,
        persisted: RxPersistentState | None = None,
    ) -> None:
        super().__init__(config, psk, counter_state, rng, now)
        self._rejections.expected[RejectReason.NO_SESSION.value] = (
            "expected right after a start: the transmitter still uses its old session until "
            "our RESYNC or its silence timeout"
        )
        rendezvous = config.rendezvous()
        start = rendezvous
        if persisted is not None:
            try:
                good = persisted.last_good
                good = config.settings(good.sf, good.bw_hz)
                if persisted.last_good.frequency_hz == good.frequency_hz:
                    config.region.check(good)
                    start = good
            except (RegionError, ValueError) as exc:
                logger.warning("rx: ignoring saved link state: %s", exc)
        self._settings = start
        self._last_good = start
        self._persisted_good: RadioSettings | None = start if persisted is not None else None
        self._previous: RadioSettings | None = None
        self._state = RxState.RENDEZVOUS if start == rendezvous else RxState.RESUME
        self._configure(start, "start")
        self._last_heard = now
        self._switched_at = now
        self._pending_expires: float | None = None
        #: When the last CHALLENGE left (a resumed receiver's handshake grace runs from it).
        self._answered_at: float | None = None
        #: Waiting at the fast rendezvous for a transmitter that asked us to follow, until.
        self._follow_until: float | None = None
        self._after_tx: RadioSettings | None = None
        self._discovers = DiscoverFilter(persisted.discover if persisted is not None else ())
        self._last_counter: int | None = None
        self._loss = LossWindow(max(config.loss_window, 50))
        self._references: OrderedDict[int, bytes] = OrderedDict()
        self._last_delivered: bytes | None = None
        self._reassembler = Reassembler()
        self._commands = CommandQueue()
        self._last_ack: _Acked | None = None
        #: (type, body) of the session frame being handled (what an ack answers).
        self._handling: tuple[FrameType, bytes] = (FrameType.DATA, b"")
        self._challenges = TokenBucket(3.0, self._refill(timing.CHALLENGE_BYTES), now)
        #: DISCOVERs that are not new under the bindings we keep: a quarter of the response
        #: rate, from their own tokens (`DiscoverFilter`).
        self._slowed = TokenBucket(2.0, self._refill(timing.CHALLENGE_BYTES) / 4, now)
        self._resyncs = TokenBucket(1.0, self._refill(timing.CHALLENGE_BYTES), now)
        #: When a second transmitter with our key was last logged (`_second_transmitter`).
        self._clone_logged_at: float | None = None
        self._up_rssi: float | None = None
        self._up_snr: float | None = None
        self._down_rssi: float | None = None  # as the transmitter reports hearing our acks
        self._down_snr: float | None = None

    # -- public ---------------------------------------------------------------------------

    def queue_command(self, command: Command, now: float) -> int:
        """Queue a command for the transmitter; returns its id (the `CommandReply` carries it).

        It rides in every ack until the reply arrives or `command_timeout_s` passes.
        """
        command_id = self._commands.add(command, now)
        self._event(LinkEvent.COMMAND_QUEUED, command=str(command), command_id=command_id)
        return command_id

    @property
    def pending_commands(self) -> list[tuple[int, Command]]:
        return [(q.command_id, q.command) for q in self._commands]

    def references(self) -> list[int]:
        """Ids of the telegrams held as references (oldest first)."""
        return list(self._references)

    def _readings(self) -> tuple[float | None, float | None, float | None, float | None]:
        return self._up_rssi, self._up_snr, self._down_rssi, self._down_snr

    # -- timers -----------------------------------------------------------------------------

    def _silence_deadline(self) -> float | None:
        if self._state is RxState.PROBING:
            return max(self._last_heard, self._switched_at) + timing.switch_timeout(
                self.config, self._settings, self._previous
            )
        if self._state in (RxState.RUNNING, RxState.RESUME, RxState.FALLBACK):
            return self._last_heard + timing.silence_timeout(self.config, self._settings)
        if self._state is RxState.HANDSHAKE and self._idle_state() is RxState.RESUME:
            # An answered DISCOVER may be a replay: it holds a resumed receiver here only
            # while its handshake can complete, not until the pending session expires.
            deadline = self._last_heard + timing.silence_timeout(self.config, self._settings)
            if self._answered_at is not None:
                grace = timing.handshake_grace(self.config, self._settings)
                deadline = max(deadline, self._answered_at + grace)
            return deadline
        return None

    def _idle_state(self) -> RxState:
        """The state without a session or handshake at the current setting: a receiver in a
        handshake came from it and returns to it when the handshake expires."""
        return RxState.RENDEZVOUS if self._settings == self.config.rendezvous() else RxState.RESUME

    def _deadlines(self) -> list[float | None]:
        command = self._commands.deadline(self.config.command_timeout_s)
        return [self._silence_deadline(), self._pending_expires, command, self._follow_until]

    def _on_tick(self, now: float) -> None:
        if self._follow_until is not None and now >= self._follow_until:
            self._stop_following()
        deadline = self._silence_deadline()
        if deadline is not None and now >= deadline:
            if self._state is RxState.PROBING and self._previous is not None:
                self._configure(self._previous, "no proof at the new setting")
                self._last_heard = now
                self._set_state(RxState.FALLBACK, "switch not confirmed")
                self._event(LinkEvent.SWITCH_REVERTED, settings=self._settings.label())
            elif (
                self._settings != self.config.rendezvous() or self._state is not RxState.RENDEZVOUS
            ):
                self._go_rendezvous(now)
        if self._pending_expires is not None and now >= self._pending_expires:
            self._pending_expires = None
            self._security.drop_pending()
            if self._state is RxState.HANDSHAKE:
                self._set_state(self._idle_state(), "handshake expired")
        for queued in self._commands.expired(now, self.config.command_timeout_s):
            self._finish_command(queued, ReplyStatus.TIMEOUT, "no reply from the transmitter", now)

    def _stop_following(self) -> None:
        """The transmitter we followed to the fast rendezvous did not confirm a session there
        in time: back to the rendezvous (a pending handshake there is dropped)."""
        self._follow_until = None
        if self._state not in (RxState.RENDEZVOUS, RxState.HANDSHAKE):
            return
        self._drop_handshake("no session at the fast rendezvous")
        self._configure(self.config.rendezvous(), "no session at the fast rendezvous")

    def _drop_handshake(self, reason: str) -> None:
        """Forget a handshake in progress (its pending session) and wait at the rendezvous
        state again; nothing to do outside a handshake."""
        if self._state is not RxState.HANDSHAKE:
            return
        self._pending_expires = None
        self._answered_at = None
        self._security.drop_pending()
        self._set_state(RxState.RENDEZVOUS, reason)

    def _go_rendezvous(self, now: float) -> None:
        self._security.drop_sessions()
        self._pending_expires = None
        self._answered_at = None
        self._reassembler.reset()
        self._last_ack = None
        self._fail_sent_commands(now, "link lost before a reply arrived")
        rendezvous = self.config.rendezvous()
        self._set_state(RxState.RENDEZVOUS, "silence")
        self._configure(rendezvous, "silence")
        self._event(LinkEvent.LINK_LOST, reason="silence")

    def _on_tx_done(self, now: float) -> None:
        target, self._after_tx = self._after_tx, None
        if target is not None:
            self._apply_switch(now, target)

    def _apply_switch(self, now: float, target: RadioSettings) -> None:
        self._previous = self._settings
        self._switched_at = now
        self._last_heard = now
        self._configure(target, "switch")
        self._set_state(RxState.PROBING, "switch requested")

    # -- frames -----------------------------------------------------------------------------

    def _on_frame(self, now: float, frame: ReceivedFrame) -> None:
        clones = self._security.second_sender_frames
        try:
            sealed = self._security.parse(frame.payload)
            if sealed.header.frame_type is FrameType.DISCOVER:
                self._on_discover(now, sealed, frame)
            else:
                self._on_session_frame(now, sealed, frame)
        except FrameError as error:
            self._reject(now, error, frame)
            if error.reason is RejectReason.NO_SESSION:
                self._maybe_resync(now, frame)
            if self._security.second_sender_frames > clones:
                self._second_transmitter(now)

    def _second_transmitter(self, now: float) -> None:
        """Say it (once, then at most hourly) when a second transmitter uses our key: two
        transmitters with one key cause no nonce reuse (sessions are fresh), but they take the
        session from each other and the clone silently takes over."""
        if self._clone_logged_at is not None and now < self._clone_logged_at + 3600.0:
            return
        self._clone_logged_at = now
        logger.warning(
            "rx: a second transmitter is using this link's key (%d frames under a session "
            "another one took over): a cloned SD card? Give every link its own key "
            "(p1-lora keygen) and never copy a transmitter's key to another device",
            self._security.second_sender_frames,
        )

    def _open_discover(self, sealed: SealedFrame) -> tuple[int, bytes, bytes]:
        """Authenticate a DISCOVER under each binding we keep, then unbound; returns (counter,
        body, the binding it was sealed under)."""
        error: FrameError | None = None
        for binding in self._discovers.candidates():
            try:
                counter, body = self._security.open_static(sealed, extra_associated=binding)
            except FrameError as exc:
                error = exc
                continue
            return counter, body, binding
        assert error is not None
        raise error

    def _on_discover(self, now: float, sealed: SealedFrame, frame: ReceivedFrame) -> None:
        counter, body, binding = self._open_discover(sealed)
        tx_random = sealed.header.random
        assert tx_random is not None
        discovers = self._discovers
        if discovers.answered_before(counter, tx_random):
            raise FrameError(RejectReason.REPLAY, f"DISCOVER counter {counter} was answered")
        fresh = discovers.fresh(binding, counter)
        if fresh:
            self._persist()
        in_session = self._security.session is not None
        if not fresh and in_session and discovers.below_session(counter):
            raise FrameError(
                RejectReason.REPLAY,
                f"DISCOVER counter {counter} is not above {discovers.session_floor} of the session",
            )
        discover = decode_body(Discover.decode, body)
        fast = self._may_follow(discover, frame)
        refill = self._refill(timing.CHALLENGE_BYTES)
        self._challenges.set_rate(refill, now)
        self._slowed.set_rate(refill / 4, now)
        if not fresh and not self._slowed.take(now):
            # A replay, or a transmitter that lost its state: these take a quarter of the
            # response rate from their own tokens, so they never starve the real transmitter.
            raise FrameError(
                RejectReason.REPLAY,
                f"DISCOVER counter {counter} is not new under the last sessions (such "
                "DISCOVERs are answered at a quarter of the response rate)",
            )
        if fast is not None:
            # Meet the transmitter at the fast rendezvous instead of answering here. It sends
            # nothing, so it takes no response token (at SF12 in the 1 % band one is worth
            # ten minutes); a copy of this DISCOVER is a replay from now on.
            discovers.answered(counter, tx_random)
            # A handshake begun here is over (its CHALLENGE died on the way: that is why the
            # transmitter asks). Kept, it would read the fast setting as a resumed session's
            # and time out on silence before the transmitter came.
            self._drop_handshake("following to the fast rendezvous")
            self._follow_until = now + timing.follow_window(self.config, fast)
            self._configure(fast, "a crowded transmitter asked to meet at the fast rendezvous")
            logger.debug("rx: following to the fast rendezvous %s", fast.label())
            return
        if fresh and not self._challenges.take(now):
            self._telegrams["challenges_rate_limited"] += 1
            self._event(LinkEvent.CHALLENGE_SUPPRESSED, reason="rate")
            return
        reference = next(reversed(self._references)) if self._references else None
        reply = Challenge(
            Report(frame.rssi_dbm, frame.snr_db, self._airtime_used(now)),
            self._settings.tx_power_dbm,
            reference,
        ).encode()
        rx_random = self._security.random()
        sent = self._send(
            now,
            timing.CHALLENGE_BYTES,
            lambda: self._security.seal_static(
                FrameType.CHALLENGE, reply, rx_random, extra_associated=tx_random
            ),
        )
        if sent is None:
            self._telegrams["challenges_suppressed"] += 1
            self._event(LinkEvent.CHALLENGE_SUPPRESSED, reason="budget")
            return
        discovers.answered(counter, tx_random)
        self._security.start_session(tx_random, rx_random, counter, pending=True)
        # Not `_last_heard`: the DISCOVER may be a replay, only a confirmation proves a
        # transmitter (a resumed receiver's grace runs from `_answered_at`).
        self._pending_expires = now + timing.silence_timeout(self.config, self._settings)
        self._answered_at = now
        if not in_session:
            self._set_state(RxState.HANDSHAKE, "discovery answered")
        self._event(
            LinkEvent.DISCOVER_ANSWERED,
            settings=self._settings.label(),
            rssi=frame.rssi_dbm,
            snr=frame.snr_db,
            resume=discover.resume,
            slowed=not fresh,
        )

    def _may_follow(self, discover: Discover, frame: ReceivedFrame) -> RadioSettings | None:
        """The fast rendezvous, when the DISCOVER asks us to follow, we listen at the
        rendezvous (waiting, or in a handshake begun there: an earlier CHALLENGE that died on
        the way is why the transmitter asks) and the DISCOVER was heard with `snr_margin_db`
        to spare at the fast setting in both directions (the downlink from our power and the
        transmitter's: the CHALLENGE goes there)."""
        listening = self._state in (RxState.RENDEZVOUS, RxState.HANDSHAKE)
        if not discover.follow or not listening or self._idle_state() is not RxState.RENDEZVOUS:
            return None
        fast = timing.fast_rendezvous(self.config)
        if fast is None:
            return None
        rung = find(candidate_table(self.config), fast)
        heard = frame.settings.bw_hz
        uplink = effective_snr_db(frame.snr_db, frame.rssi_dbm, heard) + bw_offset_db(heard)
        downlink = uplink + self._settings.tx_power_dbm - discover.tx_power_dbm
        margin = margin_db(rung, uplink, downlink) if rung is not None else None
        return fast if margin is not None and margin >= self.config.snr_margin_db else None

    def _maybe_resync(self, now: float, frame: ReceivedFrame) -> None:
        """Tell a transmitter that talks to a session we lost (our restart) to re-handshake.

        A pending handshake changes nothing here: it may stem from a replayed DISCOVER, and
        the frame that opened under none of them is the real transmitter's as much as without
        one, so the state the handshake came from decides."""
        state = self._idle_state() if self._state is RxState.HANDSHAKE else self._state
        if (
            state not in (RxState.RESUME, RxState.RUNNING, RxState.FALLBACK)
            or len(frame.payload) < HEADER_SIZE + TAG_SIZE
        ):
            return
        self._resyncs.set_rate(self._refill(timing.CHALLENGE_BYTES) / 4, now)
        if not self._resyncs.take(now):
            return
        body = Resync(frame.payload[-TAG_SIZE:]).encode()
        random = self._security.random()
        size = len(body) + overhead(FrameType.RESYNC)
        sent = self._send(
            now, size, lambda: self._security.seal_static(FrameType.RESYNC, body, random)
        )
        if sent is not None:
            self._event(LinkEvent.RESYNC_SENT, settings=self._settings.label())

    def _on_session_frame(self, now: float, sealed: SealedFrame, frame: ReceivedFrame) -> None:
        counter, body, confirmed = self._security.open_session(sealed)
        frame_type = sealed.header.frame_type
        if confirmed:
            session = self._security.session
            assert session is not None
            self._discovers.confirmed(session.rx_random, counter)
            self._persist()
            self._session_confirmed(now)
        else:
            self._discovers.accepted(counter)
        self._count_gap(counter)
        self._last_heard = now
        self._up_rssi, self._up_snr = frame.rssi_dbm, frame.snr_db
        if self._state is RxState.PROBING and frame_type is not FrameType.PROBE:
            self._commit(now)
        elif self._state in (RxState.RESUME, RxState.FALLBACK, RxState.HANDSHAKE):
            self._set_state(RxState.RUNNING, f"{frame_type.name} received")
            self._remember_good(self._settings)
        last = self._last_ack
        self._handling = (frame_type, body)
        if (
            sealed.header.resend
            and last is not None
            and (last.frame_type, last.body) == self._handling
        ):
            # The transmitter did not hear our ack: the same answer again, nothing twice.
            self._telegrams["duplicate_frames"] += 1
            kind, value = last.answer
            self._ack(now, frame, (kind, counter, value))
            return
        handler = _HANDLERS[frame_type]
        handler(self, now, sealed, counter, body, frame)

    def _count_gap(self, counter: int) -> None:
        last = self._last_counter
        if last is not None and counter > last:
            for _ in range(min(counter - last - 1, 50)):
                self._loss.record(False)
        self._loss.record(True)
        self._last_counter = counter

    def _session_confirmed(self, now: float) -> None:
        self._follow_until = None
        self._pending_expires = None
        self._answered_at = None
        self._reassembler.reset()
        self._last_ack = None
        self._last_counter = None
        self._fail_sent_commands(now, "the link was re-established before a reply arrived")
        self._event(LinkEvent.SESSION_ESTABLISHED, settings=self._settings.label())
        self._rejections.expected.clear()  # from now on a no_session is news

    def _commit(self, now: float) -> None:
        self._previous = None
        self._set_state(RxState.RUNNING, "transmitter committed")
        self._event(LinkEvent.SWITCH_COMMITTED, settings=self._settings.label())
        self._remember_good(self._settings)

    def _remember_good(self, settings: RadioSettings) -> None:
        self._last_good = settings
        if settings != self._persisted_good:
            self._persisted_good = settings
            self._persist()

    def _persist(self) -> None:
        """Save the last good setting persisted so far and the DISCOVER bindings."""
        good = self._persisted_good or self._last_good
        self._emit(PersistState(RxPersistentState(good, tuple(self._discovers.bindings))))

    # -- handlers -----------------------------------------------------------------------------

    def _report(self, frame: ReceivedFrame) -> LinkReport:
        return LinkReport(frame.rssi_dbm, frame.snr_db, frame.settings, len(frame.payload))

    def _ack(
        self,
        now: float,
        frame: ReceivedFrame,
        ack: tuple[AckKind, int, int],
    ) -> bool:
        """Acknowledge a frame with (kind, counter, value); False if it could not be sent.
        What it said is kept: the transmitter's resend of this frame gets the same answer."""
        kind, counter, value = ack
        frame_type, body_acked = self._handling
        self._last_ack = _Acked(frame_type, body_acked, (kind, value))
        queued = self._commands.first()
        body = Ack(
            kind,
            counter & 0xFFFF,
            value,
            Report(frame.rssi_dbm, frame.snr_db, self._airtime_used(now)),
            queued.command_id if queued else None,
            queued.command if queued else None,
        ).encode()
        size = len(body) + overhead(FrameType.ACK)
        sent = self._send(now, size, lambda: self._security.seal_session(FrameType.ACK, body))
        if sent is None:
            self._telegrams["ack_suppressed"] += 1
            self._event(LinkEvent.ACK_SUPPRESSED, reason="busy" if self._radio_busy else "budget")
            return False
        if queued is not None:
            queued.sent += 1
        return True

    def _on_data(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        self._deliver_updates(now, counter, [body], frame)

    def _on_batch(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        batch = decode_body(Batch.decode, body)
        self._deliver_updates(now, counter, list(batch.updates), frame)

    def _deliver_updates(
        self, now: float, counter: int, payloads: list[bytes], frame: ReceivedFrame
    ) -> None:
        """Rebuild and deliver the updates of one frame in order (each later one is encoded
        against the one before it), then answer once: the last telegram's id, or a NAK at the
        first update that does not rebuild (those before it were delivered)."""
        try:
            pinned: int | None = codec.reference_id(payloads[0])
        except codec.CodecError:
            pinned = None
        telegram_id = 0
        for payload in payloads:
            try:
                telegram = codec.decode_update(payload, self._lookup)
            except codec.CodecError as exc:
                self._reject_update(now, counter, payload, frame, exc)
                return
            telegram_id = codec.telegram_id(telegram)
            self._hand_over(telegram, telegram_id, frame, pinned)
        self._ack(now, frame, (AckKind.DATA, counter, telegram_id))

    def _reject_update(
        self,
        now: float,
        counter: int,
        payload: bytes,
        frame: ReceivedFrame,
        exc: codec.CodecError,
    ) -> None:
        """An update that does not rebuild: a NAK naming the missing reference (0xFFFF when
        the update itself was bad), so the transmitter sends a key update."""
        self._telegrams["decode_failed"] += 1
        try:
            missing = codec.reference_id(payload)
        except codec.CodecError:
            missing = None
        value = missing if missing is not None and missing not in self._references else 0xFFFF
        self._event(LinkEvent.UPDATE_REJECTED, error=str(exc))
        logger.info("rx: update not decoded (%s); asking for a key update", exc)
        self._ack(now, frame, (AckKind.NAK, counter, value))

    def _hand_over(
        self, telegram: bytes, telegram_id: int, frame: ReceivedFrame, pinned: int | None
    ) -> None:
        """Deliver a rebuilt telegram once and hold it as a reference."""
        held = self._references.get(telegram_id)
        if telegram in (self._last_delivered, held) and has_meter_clock(telegram):
            # The transmitter re-encoded a telegram whose ack was lost. Only a meter with a
            # clock proves that: DSMR 2.2/3 meters have none and send identical telegrams
            # whenever nothing changed, and each of those must reach Home Assistant.
            self._telegrams["duplicates"] += 1
            return
        self._telegrams["delivered"] += 1
        self._last_delivered = telegram
        self._remember(telegram_id, telegram, pinned=pinned)
        self._emit(Deliver(telegram, frame.received_at, self._report(frame)))

    def _remember(self, telegram_id: int, telegram: bytes, pinned: int | None) -> None:
        """Hold `telegram` as a reference, dropping the oldest beyond `reference_cache` but
        never `pinned`: the reference the transmitter's latest update was encoded against.
        The transmitter keeps encoding against it until one of our acks reaches it; when acks
        die in a crowded meter room while updates get through, dropping it would leave the
        two sides on different telegrams (a NAK and a key update for every lost ack run)."""
        self._references.pop(telegram_id, None)
        self._references[telegram_id] = telegram
        while len(self._references) > self.config.reference_cache:
            oldest = next(key for key in self._references if key != pinned)
            del self._references[oldest]

    def _lookup(self, reference_id: int) -> bytes | None:
        return self._references.get(reference_id)

    def _on_fragment(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        header, chunk = decode_body(FragmentHeader.split, body)
        if header.tag == self._reassembler.completed_tag and self._last_delivered is not None:
            value = codec.telegram_id(self._last_delivered)
            self._ack(now, frame, (AckKind.DATA, counter, value))
            return
        payload = decode_body(lambda _: self._reassembler.add(header, chunk), body)
        if payload is None:
            self._ack(now, frame, (AckKind.FRAGMENT, counter, self._reassembler.bitmap))
            return
        self._deliver_updates(now, counter, [payload], frame)

    def _on_probe(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        self._ack(now, frame, (AckKind.PROBE, counter, crc16_arc(body)))

    def _on_switch(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        switch = decode_body(Switch.decode, body)
        try:
            target = self.config.settings(switch.sf, switch.bw_hz)
            self.config.region.check(target)
        except (RegionError, ValueError) as exc:
            self._event(LinkEvent.SWITCH_REFUSED, reason=str(exc))
            self._ack(now, frame, (AckKind.SWITCH, counter, 0x100 | switch.switch_id))
            return
        self._event(LinkEvent.SWITCH_REQUESTED, target=target.label())
        if self._ack(now, frame, (AckKind.SWITCH, counter, switch.switch_id)):
            self._after_tx = target  # change only after our ack has left at the old setting
        else:
            self._apply_switch(now, target)  # the transmitter goes there without our ack too

    def _on_status(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        status, update = decode_body(StatusMessage.decode_with_update, body)
        self._down_rssi, self._down_snr = status.downlink_rssi_dbm, status.downlink_snr_db
        self._emit(StatusReport(status, frame.received_at, self._report(frame)))
        self._event(LinkEvent.STATUS, **status.as_fields())
        if update is not None:  # telegram updates ride on the report: ack them like DATA
            self._deliver_updates(now, counter, update, frame)
            return
        self._ack(now, frame, (AckKind.FRAME, counter, 0))

    def _on_reply(
        self, now: float, sealed: SealedFrame, counter: int, body: bytes, frame: ReceivedFrame
    ) -> None:
        reply = decode_body(Reply.decode, body)
        queued = self._commands.answered(reply.command_id, reply.check)
        if queued is not None:
            self._finish_command(queued, reply.status, reply.text, now)
        else:  # acked all the same, so the transmitter stops sending it
            self._telegrams["replies_unmatched"] += 1
        self._ack(now, frame, (AckKind.FRAME, counter, 0))

    def _finish_command(
        self, queued: QueuedCommand, status: ReplyStatus, text: str, now: float
    ) -> None:
        self._emit(CommandReply(queued.command_id, queued.command, status, text, now))
        self._event(
            LinkEvent.COMMAND_REPLY,
            command=str(queued.command),
            command_id=queued.command_id,
            status=status.name,
            text=text,
        )

    def _fail_sent_commands(self, now: float, text: str) -> None:
        """Commands already sent when the session changed: their outcome is unknown (a restart
        command ends exactly like this), and re-sending them could repeat them."""
        for queued in self._commands.take_sent():
            self._finish_command(queued, ReplyStatus.UNKNOWN, text, now)

    def _refill(self, frame_bytes: int) -> float:
        return timing.responder_refill_per_s(self.config, self._settings, frame_bytes)


_Handler = Callable[[RxLink, float, SealedFrame, int, bytes, ReceivedFrame], None]

_HANDLERS: dict[FrameType, _Handler] = {
    FrameType.DATA: RxLink._on_data,
    FrameType.BATCH: RxLink._on_batch,
    FrameType.FRAGMENT: RxLink._on_fragment,
    FrameType.PROBE: RxLink._on_probe,
    FrameType.SWITCH: RxLink._on_switch,
    FrameType.STATUS: RxLink._on_status,
    FrameType.REPLY: RxLink._on_reply,
}
