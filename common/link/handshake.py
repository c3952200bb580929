"""Discovery, handshake and resync: how the transmitter finds the receiver and (re)builds the session.

`Handshake` owns the discovery backoff (`attempts`, `meet_times`) and what a RESYNC is checked
against (`recent_tags`, `receiver_floor`). It moves the link between the rendezvous, the
handshake and running: a CHALLENGE completes the handshake, a RESYNC (the receiver lost its
session) starts a new one at the current setting, and total silence (`check_lost`) sends the
link to the rendezvous once the receiver is surely there too.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from p1lora.common.crypto import TAG_SIZE
from p1lora.common.frames import FrameError, FrameType, RejectReason, SealedFrame
from p1lora.common.link import timing
from p1lora.common.link.air import random_delay
from p1lora.common.link.base import decode_body
from p1lora.common.link.config import RadioMode
from p1lora.common.link.events import LinkEvent
from p1lora.common.link.messages import Challenge, Discover, Resync
from p1lora.common.link.session import OutgoingFrame
from p1lora.common.link.states import TxState
from p1lora.common.link.switch_plan import same_rung
from p1lora.common.link.tx_types import Awaiting, Outstanding, Timer
from p1lora.common.radio_types import ReceivedFrame

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["UNAIRED_RETRIES", "UNAIRED_RETRY_S", "Handshake"]

#: A DISCOVER that never went on air (the channel stayed busy) is tried again within this,
#: up to `UNAIRED_RETRIES` times in a row before it counts as an unanswered attempt.
UNAIRED_RETRY_S = 2.0
UNAIRED_RETRIES = 3


class Handshake:
    """The transmitter's discovery and session (re)establishment (one per `TxLink`)."""

    def __init__(self, link: TxLink) -> None:
        self._link = link
        #: DISCOVERs unanswered since the backoff last started over.
        self.attempts = 0
        #: DISCOVERs sent since the last session began: every second one goes unbound (a
        #: receiver that lost its state, a new SD card, cannot open bound ones).
        self.discovers_sent = 0
        #: Moments a receiver that lost us may arrive at the rendezvous (a DISCOVER goes out
        #: right after each, and the backoff starts over).
        self.meet_times: list[float] = []
        #: (CCM tag, sent at) of our recent session frames: a RESYNC must name one of them.
        self.recent_tags: deque[tuple[bytes, float]] = deque(maxlen=32)
        #: The highest counter of any authentic receiver frame (CHALLENGE, ACK, RESYNC): the
        #: receiver has one counter for all its frames, so a RESYNC at or below it is older
        #: than a frame we already accepted (a harvested one) and is refused as a replay.
        self.receiver_floor = -1
        #: The DISCOVER in flight asked the receiver to follow to the fast rendezvous.
        self.following = False
        #: DISCOVERs in a row that never went on air (`discover_failed`).
        self.unaired_in_row = 0

    def sent_session_frame(self, sent: OutgoingFrame, now: float) -> None:
        """A session frame left: a RESYNC may name it (by its tag) from now on."""
        self.recent_tags.append((sent.frame[-TAG_SIZE:], now))

    def heard_receiver(self, counter: int) -> None:
        """An authentic receiver frame carried this counter (raises the RESYNC floor)."""
        self.receiver_floor = max(self.receiver_floor, counter)

    def sent_discover(self, now: float) -> bool:
        link = self._link
        due = link._timers.get(Timer.DISCOVER, now)
        if now < due:
            link._timers[Timer.DISCOVER] = due
            return False
        size = timing.DISCOVER_BYTES
        wait = link._budget_wait(now, size)
        if wait > 0:
            link._wait(Timer.DISCOVER, now + wait)
            return False
        random = link._security.random()
        binding = link._binding if self.discovers_sent % 2 == 0 else b""
        follow = self._asks_to_follow(now)
        body = Discover(
            link._state is TxState.HANDSHAKE, link._settings.tx_power_dbm, follow
        ).encode()
        sent = link._send(
            now,
            size,
            lambda: link._security.seal_static(
                FrameType.DISCOVER, body, random, extra_associated=binding
            ),
        )
        if sent is None:
            return False
        self.following = follow
        self.discovers_sent += 1
        link._timers.pop(Timer.DISCOVER, None)
        link._pacer.invalidate()
        link._outstanding = Outstanding(
            Awaiting.DISCOVER,
            sent.frame,
            FrameType.DISCOVER,
            sent.counter,
            link._settings,
            now,
            timing.CHALLENGE_BYTES,
            random=random,
        )
        link._event(LinkEvent.DISCOVER, attempt=self.attempts + 1, settings=link._settings.label())
        return True

    @property
    def at_fast(self) -> bool:
        """At the fast rendezvous: a DISCOVER there is due or in flight (the receiver may wait
        there). The rendezvous state has no other reason to leave the rendezvous setting."""
        link = self._link
        return link._state is TxState.RENDEZVOUS and not same_rung(
            link._settings, link.config.rendezvous()
        )

    def _asks_to_follow(self, now: float) -> bool:
        """Every other DISCOVER from the rendezvous asks the receiver to follow to the fast
        rendezvous: there the CHALLENGE lasts milliseconds, not 1.5 s, and the neighbours'
        listen before talk hears it (docs/protocol.md, "Sharing the air"). The first one
        does while neighbours are heard; otherwise the first asks nothing (a link alone
        keeps its handshake) and the second does (an unanswered DISCOVER: at SF12 we hear no
        neighbour running at SF7, but their frames may have killed the answer). A receiver
        whose DISCOVER was too weak for the fast setting answers at the rendezvous."""
        link = self._link
        if (
            not link.config.air.fast_rendezvous
            or link._mode is not RadioMode.AUTO  # fixed mode goes where it was told
            or link._state is not TxState.RENDEZVOUS
            or self.at_fast
            or timing.fast_rendezvous(link.config) is None
        ):
            return False
        first = 0 if link._delivery.crowded(now) else 1
        return self.attempts % 2 == first

    def discover_failed(self, now: float, out: Outstanding) -> None:
        link = self._link
        if not out.aired:
            self.following = False  # it asked nobody
            if self.unaired_in_row < UNAIRED_RETRIES:
                # The channel was busy: no attempt was made, so no backoff step; listen again
                # soon (at the same setting: the receiver may wait at the fast rendezvous). A
                # few times only: the budget counted each one, and a radio that keeps refusing
                # (busy receiving a jammer) must not drain it.
                self.unaired_in_row += 1
                link._timers[Timer.DISCOVER] = now + random_delay(link._rng, UNAIRED_RETRY_S)
                return
        self.unaired_in_row = 0
        if self.following:
            # No answer here: the receiver went to the fast rendezvous. One DISCOVER there.
            self.following = False
            fast = timing.fast_rendezvous(link.config)
            assert fast is not None
            link._configure(fast, "meeting at the fast rendezvous")
            link._timers[Timer.DISCOVER] = now
            return
        if self.at_fast:
            link._configure(link.config.rendezvous(), "no answer at the fast rendezvous")
        self.attempts += 1
        if link._state is TxState.HANDSHAKE and self.attempts >= link.config.resume_attempts:
            self.go_rendezvous(now, "no answer at the last known good setting")
            return
        delay = timing.discovery_delay(link.config, link._settings, self.attempts - 1)
        due = now + delay * link._jitter()
        passed = [t for t in self.meet_times if t <= now]
        if passed:
            # The receiver may be listening at the rendezvous by now: the backoff starts over,
            # so a lost DISCOVER or CHALLENGE costs seconds, not minutes.
            self.meet_times = [t for t in self.meet_times if t > now]
            self.attempts = 0
            due = now + timing.discovery_delay(link.config, link._settings, 0) * link._jitter()
        if self.meet_times:
            due = min(due, self.meet_times[0])
        link._timers[Timer.DISCOVER] = due

    def go_rendezvous(self, now: float, reason: str, meet_times: tuple[float, ...] = ()) -> None:
        """Back to the rendezvous; `meet_times`: when the receiver may arrive there too (a
        DISCOVER is sent right after each, and the backoff starts over)."""
        link = self._link
        link._security.drop_sessions()
        link._reset_traffic()
        rendezvous = link.config.rendezvous()
        link._last_good = rendezvous
        link._set_state(TxState.RENDEZVOUS, reason)
        link._configure(rendezvous, reason)
        self.attempts = 0
        self.following = False
        link._timers.clear()
        link._timers[Timer.DISCOVER] = now
        self.meet_times = sorted(t for t in set(meet_times) if t > now)
        link._event(LinkEvent.LINK_LOST, reason=reason)

    def go_handshake(self, now: float, reason: str) -> None:
        link = self._link
        link._security.drop_sessions()
        link._reset_traffic()
        link._set_state(TxState.HANDSHAKE, reason)
        self.attempts = 0
        self.following = False
        self.meet_times = []
        link._timers.clear()
        link._timers[Timer.DISCOVER] = now

    def on_challenge(self, now: float, sealed: SealedFrame, frame: ReceivedFrame) -> None:
        link = self._link
        out = link._outstanding
        if out is None or out.kind is not Awaiting.DISCOVER:
            raise FrameError(RejectReason.STALE, "CHALLENGE without a DISCOVER in flight")
        counter, body = link._security.open_static(sealed, extra_associated=out.random)
        self.heard_receiver(counter)
        link._peer_sent(frame)
        challenge = decode_body(Challenge.decode, body)
        rx_random = sealed.header.random
        assert rx_random is not None
        link._security.start_session(out.random, rx_random, counter, pending=False)
        for then_run in link._replies.new_session():
            link._emit(then_run)
        link._last_accepted_raw = sealed.raw
        link._outstanding = None
        link._tuner.new_session()
        link._tuner.measure(challenge.report, out.settings, frame)
        if challenge.reference_id is None:
            # The receiver holds no reference (it restarted): the next update must be a key.
            # Otherwise keep ours: the receiver keeps several, and a NAK corrects a miss.
            link._delivery.reference = None
        link._last_good = link._settings
        link._last_ack_at = now
        link._consecutive_failures = 0
        link._loss.clear()
        self.attempts = 0
        self.discovers_sent = 0
        self.following = False
        self.meet_times = []
        link._timers.pop(Timer.DISCOVER, None)
        link._event(
            LinkEvent.SESSION_ESTABLISHED,
            settings=link._settings.label(),
            uplink_snr=challenge.report.snr_db,
            downlink_snr=frame.snr_db,
        )
        link._set_state(TxState.RUNNING, "handshake complete")
        # The receiver's session is pending until our first frame; any frame proves it, so
        # the status rides on the first update (or goes alone when there is none).
        link._reports.want(now)
        link._gate_at = now
        link._data_gate_at = now
        link._pacer.invalidate()
        target = link._tuner.desired_target(now)
        if target is not None and not same_rung(target, link._settings):
            link._start_switch(now, target, "handshake")

    def on_resync(self, now: float, sealed: SealedFrame) -> None:
        link = self._link
        counter, body = link._security.open_static(sealed)
        if counter <= self.receiver_floor:
            raise FrameError(
                RejectReason.REPLAY,
                f"RESYNC counter {counter} is not above {self.receiver_floor} of the receiver",
            )
        resync = decode_body(Resync.decode, body)
        horizon = now - max(link.config.link_lost_min_s, 60.0)
        if not any(tag == resync.tag and t >= horizon for tag, t in self.recent_tags):
            raise FrameError(RejectReason.STALE, "RESYNC names no recent frame of ours")
        self.heard_receiver(counter)
        link._last_accepted_raw = sealed.raw
        if link._state in (TxState.RENDEZVOUS, TxState.HANDSHAKE):
            return
        link._event(LinkEvent.RESYNC, settings=link._settings.label())
        if link._state in (TxState.PROBING, TxState.FALLBACK, TxState.SWITCHING):
            link._configure(link._last_good, "resync")
        self.go_handshake(now, "receiver lost its session")

    def check_lost(self, now: float) -> None:
        """Total silence for `link_lost_after` frames and `link_lost_min_s`: the link is lost.

        The way back is the rendezvous, but only once the receiver is there: it returns after
        its silence timeout, which restarts with every frame it hears. Until it has given up
        on us (`timing.rendezvous_window`), stay here at full power (a fade that ends resumes
        the link without a handshake); at the rendezvous, make sure a DISCOVER goes out right
        after the latest moment it can arrive (it kept hearing us while its acks were lost).
        """
        link = self._link
        if (
            link._consecutive_failures < link.config.link_lost_after
            or now - link._last_ack_at < link.config.link_lost_min_s
        ):
            return
        first, latest = timing.rendezvous_window(
            link.config,
            link._settings,
            link._last_ack_at,
            link._last_sent_end,
        )
        if now < first:
            link._timers[Timer.LOST] = first
            return
        meet = [latest]
        if link._switching.revert_anchor > link._last_ack_at:
            # A failed switch: the receiver, if it had followed, restarted its silence timer
            # when it reverted.
            meet.append(link._switching.revert_anchor + first - link._last_ack_at)
        self.go_rendezvous(
            now,
            f"{link._consecutive_failures} frames unanswered for {now - link._last_ack_at:.0f} s",
            tuple(meet),
        )
