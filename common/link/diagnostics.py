"""Counting and rate-limited reporting: rejections, loss, response tokens, the public snapshot.

A neighbour's link, a noisy channel or an attacker can make a receiver reject thousands of
frames an hour. Each rejection is counted by reason (diagnostics show the totals), but only
the first of each reason is logged as a warning (as INFO when it is `expected`, as the
transmitter's old session is right after the receiver starts); after that a one-line summary
per minute says how many of each arrived, so the log stays readable and the SD card is spared.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Mapping
from dataclasses import dataclass

from p1lora.common.radio_types import RadioSettings

__all__ = ["LinkDiagnostics", "LossWindow", "RejectionLog", "TokenBucket"]

SUMMARY_INTERVAL_S = 60.0


class RejectionLog:
    """Counts rejected frames per reason; logs the first of each, then a summary per minute."""

    def __init__(self, logger: logging.Logger, role: str) -> None:
        self._logger = logger
        self._role = role
        self.counts: Counter[str] = Counter()
        self._pending: Counter[str] = Counter()
        self._summary_due: float | None = None
        #: Reasons whose first rejection is expected now, with why (logged as INFO, not as a
        #: warning): a receiver that just started hears the transmitter's old session.
        self.expected: dict[str, str] = {}

    def record(self, now: float, reason: str, detail: str) -> None:
        first = self.counts[reason] == 0
        self.counts[reason] += 1
        if first:
            why = self.expected.get(reason)
            if why is None:
                self._logger.warning("%s rejected a frame (%s): %s", self._role, reason, detail)
            else:
                self._logger.info(
                    "%s rejected a frame (%s): %s (%s)", self._role, reason, detail, why
                )
            return
        self._pending[reason] += 1
        if self._summary_due is None:
            self._summary_due = now + SUMMARY_INTERVAL_S
        self.flush(now)

    def flush(self, now: float) -> None:
        """Log the summary if a minute has passed since the first unsummarised rejection."""
        if self._summary_due is None or now < self._summary_due:
            return
        parts = ", ".join(f"{reason}={n}" for reason, n in sorted(self._pending.items()))
        self._logger.info("%s rejected frames in the last minute: %s", self._role, parts)
        self._pending.clear()
        self._summary_due = None

    @property
    def next_deadline(self) -> float | None:
        return self._summary_due


class LossWindow:
    """Outcome of the last N frames that expected an answer (True: answered)."""

    def __init__(self, size: int) -> None:
        self._outcomes: deque[bool] = deque(maxlen=size)

    def record(self, answered: bool) -> None:
        self._outcomes.append(answered)

    def clear(self) -> None:
        self._outcomes.clear()

    def __len__(self) -> int:
        return len(self._outcomes)

    @property
    def rate(self) -> float | None:
        """Share of unanswered frames, None before the first sample."""
        if not self._outcomes:
            return None
        return self._outcomes.count(False) / len(self._outcomes)

    @property
    def full(self) -> bool:
        return len(self._outcomes) == self._outcomes.maxlen


class TokenBucket:
    """At most `capacity` responses at once, refilled at `rate_per_s`: bounds what a flood of
    (replayed) discovery requests can make a node transmit."""

    def __init__(self, capacity: float, rate_per_s: float, now: float) -> None:
        self.capacity = capacity
        self.rate_per_s = rate_per_s
        self._tokens = capacity
        self._at = now

    def _refill(self, now: float) -> None:
        if now > self._at:
            self._tokens = min(self.capacity, self._tokens + (now - self._at) * self.rate_per_s)
            self._at = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False

    def set_rate(self, rate_per_s: float, now: float) -> None:
        self._refill(now)
        self.rate_per_s = rate_per_s


@dataclass(frozen=True, slots=True)
class LinkDiagnostics:
    """A read-only snapshot of one side of the link, for logs, MQTT diagnostics and tests.

    `uplink_*` is how the receiver hears the transmitter, `downlink_*` the reverse; each side
    fills what it knows (the transmitter learns the uplink values from ack reports).
    `airtime_used` is the share of this node's duty-cycle allowance used in the window ending
    now; `loss_rate` the share of unanswered frames among the last few (transmitter) or of
    undecodable updates (receiver). `second_transmitter_frames` above 0 means two transmitters
    share the key (each link needs its own key; never clone a transmitter's SD card).
    """

    role: str
    state: str
    settings: RadioSettings
    last_known_good: RadioSettings
    tx_power_dbm: int
    mode: str
    session: bool
    uplink_rssi_dbm: float | None
    uplink_snr_db: float | None
    downlink_rssi_dbm: float | None
    downlink_snr_db: float | None
    loss_rate: float | None
    airtime_used: float
    airtime_total_s: float
    frames_sent: Mapping[str, int]
    frames_received: int
    rejected: Mapping[str, int]
    telegrams: Mapping[str, int]
    #: Fresh frames under a session another one took over: a second transmitter with this
    #: link's key (a cloned SD card); 0 unless that happens (receiver only).
    second_transmitter_frames: int = 0
