"""The crowded cadence: neighbours heard, and the slot a crowded transmitter sends in.

In a meter room every DSMR 5 meter sends on the whole second. A link that sends each telegram
as it comes starts within milliseconds of its neighbours; random jitter only spreads the crowd
over a fraction of the second, and then listen before talk spends the frames' holds waiting
for each other (measured: 10 links in phase gave up 29 % of their frames on a busy channel
while the channel was free for half of every second; `p1-lora bench building`).

So while other p1-lora networks are heard, a transmitter sends one update frame per *period*
(the telegrams read since the last, as one BATCH) at its own *phase* within the period, and
keeps a phase that works, as reservation ALOHA does (Crowther et al. 1973, "A system for
broadcast communication: reservation-ALOHA"; the same idea as AIS's self-organised TDMA,
ITU-R M.1371, Annex 2, SOTDMA): after an acknowledged frame the phase becomes the instant
that frame actually went on air (listen before talk may have moved it past a neighbour), so the
next period finds that place free again; after an unanswered one it is drawn anew. Neighbours
with the same period settle into places of their own and stop meeting at all. The meter's
seconds need no common clock: every link's period is a whole number of seconds, so the pattern
of the others repeats at each transmitter whatever its meter's phase.

The period grows with the crowd: `AirPolicy.slot_period_s` for up to
`AirPolicy.networks_per_period` networks (ours included), doubled for each doubling beyond,
at most `MAX_PERIOD_S`. Doubling keeps every period a multiple of the smaller ones, so links
that count a different crowd still repeat together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Final

from p1lora.common.link.air import AirPolicy, random_delay

__all__ = ["MAX_PERIOD_S", "Neighbours", "SendSlot"]

#: Longest crowded period: a frame then carries up to 9 one-second telegrams (about 150
#: bytes of DSMR 5 changes), still one frame at SF7.
MAX_PERIOD_S: Final = 8.0


class Neighbours:
    """Other p1-lora networks heard lately (their frames are rejected as `wrong_network`), by
    network id.

    A network counts once `FRAMES_TO_COUNT` of its frames were heard within the memory: a
    neighbour sends every few seconds, while a frame whose header a bit error or a jammer
    garbled names a random id once. Counted at once, such frames would slow a lone link to
    the crowded cadence, and a stream of them would stretch its period to the longest.
    """

    FRAMES_TO_COUNT: Final = 3

    def __init__(self, memory_s: float) -> None:
        self._memory_s = memory_s
        #: Per network id, when its last `FRAMES_TO_COUNT` frames were heard.
        self._heard: dict[bytes, deque[float]] = {}

    def heard(self, network_id: bytes, now: float) -> None:
        times = self._heard.setdefault(bytes(network_id), deque(maxlen=self.FRAMES_TO_COUNT))
        times.append(now)

    def count(self, now: float) -> int:
        """Networks heard often enough within the memory (forgetting the silent ones)."""
        old = [key for key, times in self._heard.items() if now - times[-1] >= self._memory_s]
        for key in old:
            del self._heard[key]
        return sum(
            1
            for times in self._heard.values()
            if len(times) == self.FRAMES_TO_COUNT and now - times[0] < self._memory_s
        )


class SendSlot:
    """When a crowded transmitter sends its next update frame (see the module docstring)."""

    def __init__(self, policy: AirPolicy, rng: Callable[[int], bytes]) -> None:
        self._policy = policy
        self._rng = rng
        self.period_s = policy.slot_period_s
        #: Where in the period this link sends (seconds; taken modulo the period). None until
        #: the link first sends while crowded.
        self.phase: float | None = None

    def set_crowd(self, networks: int) -> None:
        """The period for `networks` networks on the channel, ours included."""
        base, per = self._policy.slot_period_s, self._policy.networks_per_period
        doublings = max(0, math.ceil(math.log2(max(networks, 1) / per)))
        self.period_s = min(MAX_PERIOD_S, max(base, base * 2**doublings))

    def next_at(self, now: float, interval_s: float = 0.0) -> float:
        """The next slot at or after `now` (a phase is drawn the first time); with a send
        interval set (`set interval`) the period is at least that interval."""
        if self.phase is None:
            self.redraw()
        assert self.phase is not None
        period = max(self.period_s, interval_s)
        return self.phase + math.ceil((now - self.phase) / period - 1e-9) * period

    def keep(self, aired_at: float) -> None:
        """A frame that started at `aired_at` was acknowledged: its place is ours (kept
        unreduced: with a send interval longer than the period, the interval is the period)."""
        self.phase = aired_at

    def redraw(self) -> None:
        """A frame went unanswered (or this is the first): try another place."""
        self.phase = random_delay(self._rng, self.period_s)

    def telegrams_per_frame(self) -> int:
        """How many one-second telegrams a frame must carry to keep up, plus one so that a
        lost frame's telegrams still fit the next."""
        return math.ceil(self.period_s) + 1
