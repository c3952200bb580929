"""The transmitter's shared bookkeeping: the frame in flight, what it awaits, its wake-ups.

Used by `TxLink` and the concern objects it coordinates (`handshake`, `autotune`,
`command_exec`), so they live apart from all of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from p1lora.common.frames import FrameType
from p1lora.common.radio_types import RadioSettings

__all__ = ["Awaiting", "Outstanding", "Timer"]


class Awaiting(Enum):
    """What the one frame in flight waits for an answer to: decides how its ack and its
    timeout are handled (`_ACK_HANDLERS`, `_TIMEOUT_HANDLERS`)."""

    DISCOVER = "discover"
    SWITCH = "switch"
    PROBE = "probe"
    DATA = "data"
    FRAGMENT = "fragment"
    STATUS = "status"
    KEEPALIVE = "keepalive"
    REPLY = "reply"


class Timer(Enum):
    """The transmitter's wake-ups (each at most once; `next_deadline` is the earliest)."""

    #: The next DISCOVER (backoff, or a moment the receiver may reach the rendezvous).
    DISCOVER = "discover"
    #: When a lost link may go to the rendezvous (`timing.rendezvous_window`).
    LOST = "lost"
    #: The airtime budget has room again.
    BUDGET = "budget"
    #: The first probe after a switch (the receiver listens at the target by then).
    PROBE = "probe"
    #: The receiver has surely reverted after a failed switch.
    HOLDOFF = "holdoff"
    #: A switch put off for a short budget wait.
    DEFERRED = "deferred"
    #: A status report or keepalive falls due.
    STATUS = "status"
    #: The pacing or interval gate opens.
    SEND = "send"


@dataclass
class Outstanding:
    """The one frame in flight that expects an answer."""

    kind: Awaiting
    frame: bytes
    frame_type: FrameType
    counter: int
    settings: RadioSettings
    sent_at: float
    reply_bytes: int
    deadline: float | None = None
    attempts: int = 1
    random: bytes = b""
    #: Every telegram an update frame carries, oldest first.
    telegrams: list[bytes] = field(default_factory=list)
    expect: int = -1
    #: The plaintext body (a resend seals it again under a fresh counter).
    body: bytes = b""
    #: When it went on air (its reported end minus its airtime; listen before talk may have
    #: held it): a crowded transmitter keeps this place for its next update (`slots`). None
    #: until the radio reports it done, and for good when it never went on air.
    aired_at: float | None = None

    @property
    def aired(self) -> bool:
        """Whether it went on air (read once the radio reported it done: its timeout runs
        from then); False when listen before talk gave it up."""
        return self.aired_at is not None

    @property
    def telegram(self) -> bytes | None:
        """The newest telegram an update frame carries (the ack names it)."""
        return self.telegrams[-1] if self.telegrams else None
