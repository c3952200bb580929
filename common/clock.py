"""Injected time: the `Clock` and `Scheduler` interfaces and the virtual implementation.

Protocol code never reads a clock; it is handed `now`. The shells around it (radio driver,
emulator, runtimes, simulator) need a clock they can *wait* on, and the emulator needs to
schedule "TX done" and "frame arrives" at computed times. Both come through these small
interfaces so that a `VirtualClock` can replace real time: waiting on it runs the scheduled
events up to the deadline instantly, which is how the simulator runs an hour of link time
in seconds and how tests stay free of timing flakiness.

The real-time implementations (monotonic clock, a scheduler thread) live in
`p1lora.hardware.realtime`, because reading the wall clock is I/O.
"""

from __future__ import annotations

import heapq
import itertools
import threading
from collections.abc import Callable
from typing import Protocol

__all__ = ["Clock", "ScheduledCallback", "Scheduler", "TimerHandle", "VirtualClock"]


class TimerHandle(Protocol):
    """What `call_at` returns: something that can be cancelled before it fires."""

    def cancel(self) -> None:
        """Prevent the callback from running; harmless if it already ran."""


class Clock(Protocol):
    """A monotonic time source (seconds, float) that can also be waited on."""

    def now(self) -> float:
        """Current time in seconds on this clock's monotonic timeline."""

    def wait(self, event: threading.Event, timeout: float) -> bool:
        """Block until `event` is set or `timeout` seconds passed; return whether it is set.

        On a virtual clock this advances time, running scheduled callbacks, instead of blocking.
        """


class Scheduler(Clock, Protocol):
    """A clock that can also run callbacks at given times (used by the emulator and channel)."""

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` once at time `when` (immediately-due callbacks run on the next step)."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run `callback` once after `delay` seconds."""


class ScheduledCallback:
    """A callback due at `when`; `cancel()` marks it so the scheduler skips it (shared by the
    virtual clock here and the real-time scheduler in `p1lora.hardware.realtime`)."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callable[[], None]) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class VirtualClock:
    """Discrete-event time: nothing happens until someone advances or waits.

    Callbacks run in time order (ties in scheduling order) on the caller's thread. A callback
    must not itself wait on the clock; it may schedule further callbacks. `wait` is how a
    blocking driver call "spends" virtual time: it runs events until the awaited event is set
    or the deadline passes.
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._queue: list[tuple[float, int, ScheduledCallback]] = []
        self._sequence = itertools.count()
        self._lock = threading.RLock()

    def now(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        timer = ScheduledCallback(max(float(when), self._now), callback)
        with self._lock:
            heapq.heappush(self._queue, (timer.when, next(self._sequence), timer))
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self._now + max(0.0, delay), callback)

    def next_event_time(self) -> float | None:
        """Time of the earliest pending callback, or None when nothing is scheduled."""
        with self._lock:
            while self._queue and self._queue[0][2].cancelled:
                heapq.heappop(self._queue)
            return self._queue[0][0] if self._queue else None

    def _run_next(self, limit: float) -> bool:
        """Run the earliest callback due at or before `limit`; return False if there is none."""
        with self._lock:
            when = self.next_event_time()
            if when is None or when > limit:
                return False
            _, _, timer = heapq.heappop(self._queue)
            self._now = max(self._now, when)
        timer.callback()
        return True

    def advance_to(self, when: float) -> None:
        """Run every callback due up to `when`, then set the clock to `when`."""
        while self._run_next(when):
            pass
        self._now = max(self._now, float(when))

    def advance(self, seconds: float) -> None:
        """Move time forward by `seconds`, running what falls due on the way."""
        self.advance_to(self._now + seconds)

    def wait(self, event: threading.Event, timeout: float) -> bool:
        deadline = self._now + max(0.0, timeout)
        while not event.is_set():
            if not self._run_next(deadline):
                self._now = max(self._now, deadline)
                break
        return event.is_set()

    def sleep(self, seconds: float) -> None:
        """Advance by `seconds` (convenience for shells that want a plain pause)."""
        self.advance(seconds)
