"""One side's frame security: its counter, the static keys, the current and pending session.

Shared by `TxLink` and `RxLink` so that both seal and check frames the same way:

- every frame sent takes the next value of this side's persisted counter;
- static-key frames (discover, challenge, resync) use the static direction key and a fresh
  8-byte random in the nonce;
- session frames use the session's direction key and nonce prefix with the full counter;
- a received session frame is authenticated under the current session, or else one of the
  pending ones (handshakes in progress: the first authentic frame under one *confirms* it), and
  must carry a counter above the last one accepted in that session (replay protection; the
  nonce uses the reconstructed full counter, so a wrong reconstruction cannot authenticate).

Pending sessions prove nothing: a replayed DISCOVER makes one as easily as the transmitter's
own. So a receiver keeps the last few (a replay arriving between the real CHALLENGE and the
transmitter's first session frame cannot displace the real one), and a frame that opens under
none of them while no session is confirmed is classified exactly as if none were pending
(`no_session`, which makes the receiver send a RESYNC), never as a forgery.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from p1lora.common.counters import CounterState, FrameCounter
from p1lora.common.crypto import RANDOM_SIZE, Direction, LinkKeys, SessionKeys
from p1lora.common.frames import (
    FrameError,
    FrameType,
    RejectReason,
    SealedFrame,
    build_frame,
    open_frame,
    parse_frame,
    reconstruct_counter,
)

__all__ = ["PENDING_LIMIT", "LinkSecurity", "OutgoingFrame", "Session"]

#: Handshakes a receiver keeps pending at once, newest first tried. Each costs one challenge
#: token, whose burst is 3: displacing the real one takes more CHALLENGEs than a flood can
#: draw in the seconds between the real CHALLENGE and the transmitter's first session frame.
PENDING_LIMIT = 4


@dataclass
class Session:
    """Keys of one handshake and the last counter accepted from the peer in it."""

    keys: SessionKeys
    peer_last: int
    tx_random: bytes
    rx_random: bytes


@dataclass(frozen=True, slots=True)
class OutgoingFrame:
    """A sealed frame ready to send, and the counter reservation to persist first (if any)."""

    frame: bytes
    frame_type: FrameType
    counter: int
    persist: CounterState | None


class LinkSecurity:
    """Seals this side's frames and authenticates the peer's (see the module docstring)."""

    def __init__(
        self,
        psk: bytes,
        sending: Direction,
        counter_state: CounterState | None,
        counter_block: int,
        rng: Callable[[int], bytes],
    ) -> None:
        self.keys = LinkKeys(psk)
        self.sending = sending
        self.receiving = sending.other
        self.counter = FrameCounter(counter_state, counter_block)
        self._rng = rng
        self.session: Session | None = None
        #: Unconfirmed handshakes, oldest first (at most `PENDING_LIMIT`).
        self.pending: list[Session] = []
        #: The confirmed session the current one replaced (or the last one dropped, until a
        #: new one is confirmed): a fresh frame under it means a second sender with our key.
        self.replaced: Session | None = None
        self._dropped: Session | None = None
        #: Fresh frames that opened only under `replaced` (see `second_sender`).
        self.second_sender_frames = 0

    @property
    def network_id(self) -> bytes:
        return self.keys.network_id

    def random(self) -> bytes:
        value = self._rng(RANDOM_SIZE)
        if len(value) != RANDOM_SIZE:
            raise ValueError("the random source returned the wrong number of bytes")
        return value

    # -- sending ----------------------------------------------------------------------------

    def seal_static(
        self, frame_type: FrameType, body: bytes, random: bytes, extra_associated: bytes = b""
    ) -> OutgoingFrame:
        counter, persist = self.counter.take()
        nonce = self.keys.static_nonce(self.sending, random, counter)
        frame = build_frame(
            frame_type,
            self.network_id,
            counter,
            body,
            cipher=self.keys.static(self.sending),
            nonce=nonce,
            random=random,
            extra_associated=extra_associated,
        )
        return OutgoingFrame(frame, frame_type, counter, persist)

    def seal_session(
        self, frame_type: FrameType, body: bytes, *, resend: bool = False
    ) -> OutgoingFrame:
        """Seal a session frame under the next counter; `resend`: the body repeats our
        previous frame of this type (its answer was lost), flagged in the header."""
        session = self.session
        if session is None:
            raise RuntimeError(f"cannot send {frame_type.name} without a session")
        counter, persist = self.counter.take()
        nonce = session.keys.nonce(self.sending, counter)
        frame = build_frame(
            frame_type,
            self.network_id,
            counter,
            body,
            cipher=session.keys.cipher(self.sending),
            nonce=nonce,
            resend=resend,
        )
        return OutgoingFrame(frame, frame_type, counter, persist)

    # -- receiving --------------------------------------------------------------------------

    def parse(self, frame: bytes) -> SealedFrame:
        return parse_frame(frame, self.network_id, self.receiving)

    def open_static(self, sealed: SealedFrame, extra_associated: bytes = b"") -> tuple[int, bytes]:
        """Authenticate a static-key frame; returns (full counter, body)."""
        header = sealed.header
        counter = header.full_counter
        assert counter is not None and header.random is not None  # parse_frame guarantees
        nonce = self.keys.static_nonce(self.receiving, header.random, counter)
        body = open_frame(sealed, self.keys.static(self.receiving), nonce, extra_associated)
        return counter, body

    def open_session(self, sealed: SealedFrame) -> tuple[int, bytes, bool]:
        """Authenticate a session frame; returns (counter, body, confirmed_pending).

        Tries the current session first, then the pending ones, newest first; accepting a
        frame under a pending session promotes it (the handshake is confirmed) and drops the
        other pending ones. FrameError otherwise: `auth_failed` while a session is confirmed,
        `no_session` while none is, whether or not handshakes are pending (see the module
        docstring: a pending session must never hide the real transmitter's frames).
        """
        frame_type = sealed.header.frame_type.name
        candidates = [(s, False) for s in (self.session,) if s is not None]
        candidates += [(s, True) for s in reversed(self.pending)]
        low = sealed.header.counter_low
        for session, is_pending in candidates:
            counter = reconstruct_counter(session.peer_last, low)
            nonce = session.keys.nonce(self.receiving, counter)
            try:
                body = open_frame(sealed, session.keys.cipher(self.receiving), nonce)
            except FrameError:
                continue
            if counter <= session.peer_last:
                raise FrameError(
                    RejectReason.REPLAY,
                    f"{frame_type} counter {counter} is not above {session.peer_last}",
                )
            session.peer_last = counter
            if is_pending:
                self.replaced = self.session or self._dropped
                self.session, self.pending, self._dropped = session, [], None
            return counter, body, is_pending
        self._second_sender(sealed)
        if self.session is None:
            detail = f" (nor under {len(self.pending)} pending)" if self.pending else ""
            raise FrameError(
                RejectReason.NO_SESSION, f"{frame_type} while no session exists{detail}"
            )
        raise FrameError(RejectReason.AUTH_FAILED, f"{frame_type} did not authenticate")

    def _second_sender(self, sealed: SealedFrame) -> None:
        """Count a fresh frame that opens only under the session the current one replaced.

        One transmitter never sends under a session after it started another (its frame under
        the new keys is what confirmed the new one), and nobody else can seal one: it is a
        second transmitter with this key (a cloned SD card) that still talks in the session
        the other one took over. The frame is rejected all the same."""
        replaced = self.replaced
        if replaced is None:
            return
        counter = reconstruct_counter(replaced.peer_last, sealed.header.counter_low)
        nonce = replaced.keys.nonce(self.receiving, counter)
        try:
            open_frame(sealed, replaced.keys.cipher(self.receiving), nonce)
        except FrameError:
            return
        if counter > replaced.peer_last:
            replaced.peer_last = counter
            self.second_sender_frames += 1

    # -- sessions ---------------------------------------------------------------------------

    def start_session(
        self, tx_random: bytes, rx_random: bytes, peer_counter: int, *, pending: bool
    ) -> Session:
        """Derive a session from the handshake randoms; the receiver keeps it pending until the
        transmitter's first session frame proves it holds the same keys (the oldest pending
        one gives way beyond `PENDING_LIMIT`)."""
        session = Session(
            self.keys.session(tx_random, rx_random), peer_counter, tx_random, rx_random
        )
        if pending:
            self.pending = [*self.pending, session][-PENDING_LIMIT:]
        else:
            self.session, self.pending = session, []
        return session

    def drop_pending(self) -> None:
        """Forget the unconfirmed handshakes (they expired)."""
        self.pending = []

    def drop_sessions(self) -> None:
        self._dropped = self.session or self._dropped
        self.session = None
        self.pending = []
