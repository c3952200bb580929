"""Bounds on the receiver's answers to frames anyone can replay: DISCOVERs.

A DISCOVER is a static-key frame: it can be recorded and replayed, and only the transmitter's
first session frame under the keys a CHALLENGE creates proves it live. Every CHALLENGE costs
a response token and airtime, and replayed DISCOVERs took all of them from a returning
transmitter. `RxLink` applies these rules; refused frames are counted as `replay`.

(Session frames need no such bound: the transmitter resends a frame's body under a fresh
counter, so an exact copy of any session frame is a replay and is never answered.)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

from p1lora.common.link.persist import DiscoverBinding

__all__ = ["ANSWERED_DISCOVER_MEMORY", "BINDINGS_KEPT", "DiscoverFilter"]

#: DISCOVERs remembered as answered. A transmitter sends at most about 30 an hour (discovery
#: backoff capped at 120 s), so this covers hours of discovery at 16 bytes each.
ANSWERED_DISCOVER_MEMORY = 64
#: Bindings kept: the last confirmed session's and the one before it.
BINDINGS_KEPT = 2


class DiscoverFilter:
    """Which DISCOVERs the receiver answers at the full response rate (docs/protocol.md, 2).

    - **Bound and above the floor: full rate.** The transmitter seals its DISCOVERs with the
      receiver's random of its last confirmed session in the associated data (not sent). The
      receiver keeps that random (the newest binding) with the highest DISCOVER counter seen
      sealed under it (its floor, raised by every such DISCOVER, answered or not). A DISCOVER
      above it is new: a replay of one the receiver heard is at or below the floor, and one
      from before the last confirmed session is under an older binding or none. The binding
      and floor are persisted, so this holds after any reboot. (The binding before is kept
      too, `BINDINGS_KEPT`, so that a transmitter that never heard an ack of the newest
      session still authenticates, slowed.)
    - **Anything else is slowed**, never answered at the full rate: a replay, or a transmitter
      that lost its state (a new SD card, an old backup of everything). It draws on its own
      token bucket at a quarter of the response rate and never on the full-rate tokens, so
      any number of replays cannot starve the real transmitter. While a session is
      confirmed, a slowed DISCOVER at or below the session's uplink counter is not answered
      at all (the transmitter is here and talking; its counter is above that).
    - **Answered before**: the transmitter never sends the same DISCOVER twice (each carries a
      new random and counter), so one answered already (among the last `memory`) is a replay.

    A receiver without a binding (before its first handshake, a lost or old state file) treats
    unbound DISCOVERs as bound to "nothing yet", with a floor as above (the transmitter sends
    every second DISCOVER unbound for such a receiver).
    """

    def __init__(
        self, bindings: Iterable[DiscoverBinding] = (), memory: int = ANSWERED_DISCOVER_MEMORY
    ) -> None:
        if memory < 1:
            raise ValueError("memory must be >= 1")
        kept = list(bindings)[:BINDINGS_KEPT]
        self.bindings: list[DiscoverBinding] = kept or [DiscoverBinding(b"")]
        #: The highest uplink counter accepted in the confirmed session (this boot only).
        self.session_floor = -1
        self._memory = memory
        self._answered: OrderedDict[tuple[int, bytes], None] = OrderedDict()

    def candidates(self) -> list[bytes]:
        """The associated data to try a DISCOVER under: each binding, newest first, then
        none (an unbound DISCOVER authenticates too, but is only ever slowed)."""
        out = [entry.binding for entry in self.bindings]
        return out if b"" in out else [*out, b""]

    def fresh(self, binding: bytes, counter: int) -> bool:
        """Whether a DISCOVER that authenticated under `binding` is new (full rate): sealed
        under the newest binding and above its floor, which then rises to it (the receiver
        persists the change)."""
        newest = self.bindings[0]
        if binding != newest.binding or counter <= newest.floor:
            return False
        self.bindings[0] = DiscoverBinding(binding, counter)
        return True

    def answered_before(self, counter: int, random: bytes) -> bool:
        return (counter, random) in self._answered

    def below_session(self, counter: int) -> bool:
        return counter <= self.session_floor

    def answered(self, counter: int, random: bytes) -> None:
        """A CHALLENGE answered this DISCOVER."""
        self._answered[(counter, random)] = None
        while len(self._answered) > self._memory:
            self._answered.popitem(last=False)

    def confirmed(self, rx_random: bytes, counter: int) -> None:
        """A handshake was confirmed by a session frame with this counter: its random is the
        binding from now on (the previous one is kept: the transmitter learns the new one
        only from our first ack), and the session floor follows the current transmitter."""
        self.bindings = [DiscoverBinding(rx_random), self.bindings[0]][:BINDINGS_KEPT]
        self.session_floor = counter

    def accepted(self, counter: int) -> None:
        """A frame of the confirmed session carried this counter."""
        self.session_floor = max(self.session_floor, counter)
