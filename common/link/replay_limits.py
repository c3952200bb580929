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

__all__ = ["ANSWERED_DISCOVER_MEMORY", "DiscoverFilter"]

#: DISCOVERs remembered as answered. A transmitter sends at most about 30 an hour (discovery
#: backoff capped at 120 s), so this covers hours of discovery at 16 bytes each.
ANSWERED_DISCOVER_MEMORY = 64


class DiscoverFilter:
    """What the receiver knows about DISCOVERs: the ones it answered, and a counter floor.

    - **Answered before**: the transmitter never sends the same DISCOVER twice (each carries a
      new random and counter), so one answered already (among the last `memory`) is a replay
      and must not spend a response token again.
    - **The floor**: the highest uplink counter accepted in the confirmed sessions of the
      current transmitter, in this boot only. While a session is confirmed, a DISCOVER at or
      below it is a replay and gets no answer at all. Once the session has ended such a
      DISCOVER is a replay *or* a transmitter that lost its counter store (a new SD card, a
      read-only or full disk) and restarted lower: `RxLink` still answers those, at a quarter
      of the response rate, so they never starve the transmitter's genuine DISCOVERs and a
      transmitter with a lost counter still gets its handshake. The floor is never persisted:
      after a reboot it starts empty (availability beats the marginal cost of a replayed
      DISCOVER, which the response rate and the challenge-response already bound).
    """

    def __init__(self, memory: int = ANSWERED_DISCOVER_MEMORY) -> None:
        if memory < 1:
            raise ValueError("memory must be >= 1")
        self.floor = -1
        self._memory = memory
        self._answered: OrderedDict[tuple[int, bytes], None] = OrderedDict()

    def answered_before(self, counter: int, random: bytes) -> bool:
        return (counter, random) in self._answered

    def below_floor(self, counter: int) -> bool:
        return counter <= self.floor

    def answered(self, counter: int, random: bytes) -> None:
        """A CHALLENGE answered this DISCOVER."""
        self._answered[(counter, random)] = None
        while len(self._answered) > self._memory:
            self._answered.popitem(last=False)

    def confirmed(self, counter: int) -> None:
        """A handshake was confirmed by a session frame with this counter. It is the current
        transmitter's counter from now on, even if lower than before (a lost counter store)."""
        self.floor = counter

    def accepted(self, counter: int) -> None:
        """A frame of the confirmed session carried this counter."""
        self.floor = max(self.floor, counter)
