"""Bounds on the receiver's answers to frames anyone can replay: exact copies and DISCOVERs.

Two kinds of authentic frame make the receiver transmit although they prove nothing new:

- an **exact copy of the last frame it acknowledged**. The transmitter resends a frame byte
  for byte when its ack was lost, and the receiver answers with the same ack bytes (no new
  nonce, nothing processed twice). Anyone who recorded the frame can send the copy too: with
  no bound but the budget, six copies per telegram emptied the receiver's 10 % budget in half
  an hour and the link was lost (`tests/test_attacks.py`).
- a **DISCOVER**. Static-key frames can be recorded and replayed; only the transmitter's first
  session frame under the keys a CHALLENGE creates proves it live. Every CHALLENGE costs a
  response token, and replayed DISCOVERs took all of them from a returning transmitter.

Airtime is what a receiver runs out of, so both answers are bounded by what a real transmitter
can ever need. `RxLink` applies these rules; refused frames are counted as `replay`.
"""

from __future__ import annotations

from collections import OrderedDict

__all__ = ["ANSWERED_DISCOVER_MEMORY", "DiscoverFilter", "DuplicateAnswers"]

#: DISCOVERs remembered as answered. A transmitter sends at most about 30 an hour (discovery
#: backoff capped at 120 s), so this covers hours of discovery at 16 bytes each.
ANSWERED_DISCOVER_MEMORY = 64


class DuplicateAnswers:
    """How often an exact copy of the last acknowledged frame is answered again.

    - At most `per_frame` times per frame: the transmitter resends one frame at most that often
      (`LinkConfig.max_retries`, a SWITCH `switch_attempts - 1`), so any further copy is a
      replay.
    - In the long run at most once per new frame: each frame acknowledged for the first time
      earns one answer, and at most `saved` are kept. A transmitter whose acks are lost with
      probability q needs q + q^2 answers per frame (with two resends), less than one while
      fewer than 60 % of the acks are lost (beyond 30 % loss it steps down, unless the
      margin shows interference, where slower settings would not help).
      An attacker can therefore at most double the receiver's ack airtime, never empty the
      budget with copies; `RxLink` also keeps a reserve for the acks of new frames.
    """

    def __init__(self, per_frame: int, saved: int) -> None:
        if per_frame < 0 or saved < 1:
            raise ValueError("per_frame must be >= 0 and saved >= 1")
        self.per_frame = per_frame
        self.saved = saved
        self._repeats = 0
        self._credit = saved

    @property
    def repeats(self) -> int:
        """Copies of the current frame answered so far."""
        return self._repeats

    def new_frame(self) -> None:
        """A frame was acknowledged for the first time: its copies may be answered anew."""
        self._repeats = 0
        self._credit = min(self.saved, self._credit + 1)

    def refusal(self) -> str | None:
        """Why the next copy must not be answered (None: it may be)."""
        if self._repeats >= self.per_frame:
            return (
                f"exact copy of the last frame, answered {self._repeats} times already "
                f"(the transmitter resends a frame at most {self.per_frame} times)"
            )
        if self._credit < 1:
            return "exact copies arrive faster than new frames (one answer per new frame)"
        return None

    def answered(self) -> None:
        """A copy was answered."""
        self._repeats += 1
        self._credit -= 1


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
