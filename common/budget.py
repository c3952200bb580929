"""Sliding-window airtime budget: "may I send this now, and if not, when?".

Duty-cycle rules (1 % or 10 % in Europe) and single-channel dwell rules (US915: 0.4 s in any
20 s) are both "at most X seconds on air in any window of W seconds". Every frame a node sends
counts: discovery, probes, acks, commands. The budget keeps the transmissions of the last window
and answers exactly, so the link can plan (latest telegram wins) instead of guessing.

A transmission is counted in full for as long as any part of it lies inside the window, which
errs on the legal side. Time is handed in (`now`), never read.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from p1lora.common.regions import SubBand

__all__ = ["AirtimeBudget", "Transmission"]


@dataclass(frozen=True, slots=True)
class Transmission:
    start: float
    airtime: float

    @property
    def end(self) -> float:
        return self.start + self.airtime


def _delay_until(now: float, moment: float) -> float:
    """A delay that, added to `now` in floating point, lands at or after `moment`.

    `moment - now` can round so that `now + delay` falls one ulp short, and at that instant the
    transmission would still count: step up until the sum really reaches the moment.
    """
    delay = max(0.0, moment - now)
    while now + delay < moment:
        delay = math.nextafter(delay, math.inf)
    return delay


class AirtimeBudget:
    """At most `fraction * window_s` seconds of airtime in any `window_s` seconds.

    `max_frame_s` additionally caps a single frame (dwell time). A `fraction` of 1.0 or more
    means no duty-cycle limit (but a dwell cap may still apply).
    """

    def __init__(
        self, fraction: float, window_s: float = 3600.0, max_frame_s: float | None = None
    ) -> None:
        if fraction <= 0:
            raise ValueError("duty-cycle fraction must be positive")
        if window_s <= 0:
            raise ValueError("window must be positive")
        self.fraction = fraction
        self.window_s = window_s
        self.max_frame_s = max_frame_s
        self._sent: deque[Transmission] = deque()
        self._used = 0.0
        self.total_airtime = 0.0
        self.frames = 0

    @classmethod
    def for_sub_band(cls, band: SubBand) -> AirtimeBudget:
        return cls(band.duty_cycle, band.window_s, band.max_dwell_s)

    @property
    def unlimited(self) -> bool:
        return self.fraction >= 1.0

    @property
    def allowance_s(self) -> float:
        """Seconds of airtime allowed per window."""
        return self.fraction * self.window_s

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        sent = self._sent
        while sent and sent[0].end <= horizon:
            self._used -= sent.popleft().airtime
        if not sent:
            self._used = 0.0  # no float drift once the window is empty

    def used(self, now: float) -> float:
        """Airtime counted in the window ending at `now`."""
        self._expire(now)
        return max(0.0, self._used)

    def fraction_used(self, now: float) -> float:
        """Share of the allowance in use (0.0 .. 1.0); 0.0 when there is no limit."""
        return 0.0 if self.unlimited else self.used(now) / self.allowance_s

    def frame_fits(self, airtime: float) -> bool:
        """Whether a single frame of this airtime is legal at all (dwell time, allowance)."""
        if self.max_frame_s is not None and airtime > self.max_frame_s:
            return False
        return self.unlimited or airtime <= self.allowance_s

    def wait_time(self, now: float, airtime: float) -> float:
        """Seconds from `now` until a frame of `airtime` may start; `math.inf` if never."""
        if not self.frame_fits(airtime):
            return math.inf
        return self._wait_for_room(now, airtime)

    def sequence_fits(self, frames: Iterable[float]) -> bool:
        """Whether a short sequence of frames (a switch and its probes) can be sent within one
        window at all: every frame within the per-frame (dwell) cap, the *sum* within the
        allowance. The dwell cap limits single frames, never the sum of several."""
        airtimes = list(frames)
        if not all(self.frame_fits(a) for a in airtimes):
            return False
        return self.unlimited or sum(airtimes) <= self.allowance_s

    def sequence_wait(self, now: float, frames: Iterable[float]) -> float:
        """Seconds from `now` until the window has room for all of `frames` (sent one after
        the other, shortly); `math.inf` if it never will (`sequence_fits` is false)."""
        airtimes = list(frames)
        if not self.sequence_fits(airtimes):
            return math.inf
        return self._wait_for_room(now, sum(airtimes))

    def _wait_for_room(self, now: float, airtime: float) -> float:
        """Seconds until `airtime` more fits the allowance (no per-frame check)."""
        if self.unlimited:
            return 0.0
        excess = self.used(now) + airtime - self.allowance_s
        if excess <= 1e-12:
            return 0.0
        # Transmissions leave the window in order of their end; wait until enough has left.
        freed = 0.0
        for sent in self._sent:
            freed += sent.airtime
            if freed >= excess - 1e-12:
                return _delay_until(now, sent.end + self.window_s)
        return math.inf  # unreachable: everything expires eventually

    def may_send(self, now: float, airtime: float) -> bool:
        return self.wait_time(now, airtime) == 0.0

    def record(self, now: float, airtime: float) -> None:
        """Count a transmission that starts at `now`."""
        if airtime < 0:
            raise ValueError("airtime cannot be negative")
        self._expire(now)
        self._sent.append(Transmission(now, airtime))
        self._used += airtime
        self.total_airtime += airtime
        self.frames += 1

    def start_later(self, airtime: float, now: float) -> bool:
        """Move the latest transmission (of `airtime`) to its real start `now`.

        A frame can be counted when it is asked for and go out later (listen before talk holds
        it for a free channel). Counted at the earlier time it would leave the window too
        early, so it is moved, and at its real start it must still fit the allowance together
        with everything else in the window. True if it was moved (send it); False if it does
        not fit at `now` (do not send it): then it stays counted where it was, which errs on
        the legal side. Moving it in place, rather than keeping a second window of real start
        times, keeps one hour of transmissions in memory, not two. If the latest transmission
        is not that frame (nothing should come between), the frame is counted again at `now`
        when it fits: double counting errs on the legal side too.
        """
        self._expire(now)
        sent = self._sent
        if not sent or sent[-1].airtime != airtime or sent[-1].start > now:
            if not self.may_send(now, airtime):
                return False
            self._sent.append(Transmission(now, airtime))
            self._used += airtime
            return True
        held = sent.pop()
        self._used -= held.airtime
        fits = self.wait_time(now, held.airtime) == 0.0
        sent.append(Transmission(now, held.airtime) if fits else held)
        self._used += held.airtime
        return fits

    def sustainable_interval(self, airtime: float) -> float:
        """The shortest steady interval between frames of `airtime` the budget can carry."""
        return 0.0 if self.unlimited else airtime / self.fraction

    def transmissions(self, now: float) -> list[Transmission]:
        """The transmissions still counted at `now` (for persistence across restarts)."""
        self._expire(now)
        return list(self._sent)

    def restore(self, sent: Iterable[Transmission]) -> None:
        """Re-count transmissions from before a restart (times on this budget's clock)."""
        for item in sorted(sent, key=lambda t: t.start):
            self._sent.append(item)
            self._used += item.airtime
