"""Pacing from the budget that is actually left, not from a rate that assumes no other traffic.

A fixed pacing gap (`timing.pacing_gap`: our frame over `f * u`) fills exactly `u` of the
allowance in the long run *if nothing else is sent*. Handshakes, probes and key frames are
not paced, so after a busy start the sliding window holds more than `u` of the allowance, and
near the end of the first hour the budget runs dry: in the 1 % band nothing could be sent for
four minutes, legal but a bad experience.

The pacer instead asks: at what steady rate can airtime be spent from now on so that the
window never holds more than the cap `C = u * allowance`? Sending at rate `r` for `H` seconds
adds `r * H`, while `E(H)` (the airtime of our frames that leave the window within `H`) goes
away, so for every horizon

    used(now) - E(H) + r * H <= C      =>      r <= (C - used(now) + E(H)) / H

`E` steps up when a frame leaves; between steps the bound falls with `H`, so the minimum is
found just before each frame leaves (and at `H = window`, where it is `C / window`, the steady
rate). Horizons shorter than `min_horizon_s` are left to the hard budget: over a few frames
the bound only reflects where the next frame leaves, not how much budget there is.

The result spreads a burst over the time until it leaves the window: gaps stay even.
"""

from __future__ import annotations

from collections.abc import Iterable

from p1lora.common.budget import AirtimeBudget, Transmission

__all__ = ["Pacer", "sustainable_rate"]

#: The rate is recomputed at most this often (a scan of the window), or after `invalidate`.
REFRESH_S = 15.0


def sustainable_rate(
    sent: Iterable[Transmission], now: float, window_s: float, cap_s: float, min_horizon_s: float
) -> float:
    """Airtime per second that can be spent evenly from `now` without the window ever holding
    more than `cap_s`, given the transmissions still in it (0.0 when it already holds more)."""
    frames = sorted(sent, key=lambda t: t.end)
    used = sum(t.airtime for t in frames)
    room = cap_s - used
    rate = cap_s / window_s
    leaving = 0.0
    for frame in frames:
        horizon = frame.end + window_s - now
        if horizon > min_horizon_s:
            rate = min(rate, (room + leaving) / horizon)
        leaving += frame.airtime
    return max(rate, 0.0)


class Pacer:
    """The sustainable rate of one node's budget, cached for `REFRESH_S`.

    `gap(now, airtime, steady_gap)` is the pause after a frame of `airtime` (the longer of our
    frame and the peer's answer): never shorter than `steady_gap` (the fixed-rate pacing) and
    never longer than the one at `floor` times the steady rate, so a window that is already
    over the cap slows updates down instead of stopping them (the hard budget still applies).
    """

    def __init__(self, budget: AirtimeBudget, utilisation: float, floor: float) -> None:
        self._budget = budget
        self._utilisation = utilisation
        self._floor = floor
        self._rate: float | None = None
        self._computed_at = 0.0

    def invalidate(self) -> None:
        """Unpaced traffic was sent (a handshake, probes): recompute on the next gap."""
        self._rate = None

    def rate(self, now: float, min_horizon_s: float) -> float:
        """The sustainable airtime per second (cached; see `sustainable_rate`)."""
        budget = self._budget
        if budget.unlimited:
            return 1.0
        if self._rate is None or now >= self._computed_at + REFRESH_S or now < self._computed_at:
            cap = self._utilisation * budget.allowance_s
            self._rate = sustainable_rate(
                budget.transmissions(now), now, budget.window_s, cap, min_horizon_s
            )
            self._computed_at = now
        return self._rate

    def gap(self, now: float, airtime: float, steady_gap: float) -> float:
        """Seconds until the next paced frame may start."""
        budget = self._budget
        if budget.unlimited or steady_gap <= 0.0:
            return steady_gap
        steady_rate = budget.fraction * self._utilisation
        min_horizon = min(budget.window_s, max(60.0, 4.0 * steady_gap))
        rate = max(self.rate(now, min_horizon), self._floor * steady_rate)
        return max(steady_gap, airtime / rate)
