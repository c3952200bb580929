"""Real time: the `Clock` and `Scheduler` of `p1lora.common.clock` on the system's monotonic clock.

The daemons and the loopback-UDP simulator run on these; tests and the in-process simulator use
`VirtualClock` instead. `SystemClock.wait` is a plain `Event.wait`, so a daemon sleeping on its
radio's `wakeup` is woken the moment a DIO0 interrupt queues an event. `ThreadScheduler` runs
`call_at` callbacks on one background thread, in time order, which is what the emulator and the
simulated channel need to complete transmissions "after the time on air" in real time.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

from p1lora.common.clock import ScheduledCallback, TimerHandle

__all__ = ["SystemClock", "ThreadScheduler"]

logger = logging.getLogger(__name__)


class SystemClock:
    """`time.monotonic` seconds; waiting is `threading.Event.wait`."""

    def now(self) -> float:
        return time.monotonic()

    def wait(self, event: threading.Event, timeout: float) -> bool:
        if timeout <= 0:
            return event.is_set()
        return event.wait(timeout)

    def sleep(self, seconds: float) -> None:
        """Pause the calling thread (for shells that want a plain pause)."""
        if seconds > 0:
            time.sleep(seconds)


class ThreadScheduler(SystemClock):
    """A `Scheduler` on real time: callbacks run on one daemon thread, in time order.

    The thread starts with the first `call_at` and stops on `close()`. A callback that raises is
    logged and does not stop the thread (a dead timer thread would silently freeze every
    emulated radio). Callbacks run without the scheduler's lock held, so they may schedule more.
    """

    def __init__(self, name: str = "p1lora-scheduler") -> None:
        self._name = name
        self._queue: list[tuple[float, int, ScheduledCallback]] = []
        self._sequence = itertools.count()
        self._condition = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def call_at(self, when: float, callback: Callable[[], None]) -> TimerHandle:
        timer = ScheduledCallback(float(when), callback)
        with self._condition:
            if self._closed:
                timer.cancelled = True
                return timer
            heapq.heappush(self._queue, (timer.when, next(self._sequence), timer))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            self._condition.notify()
        return timer

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        return self.call_at(self.now() + max(0.0, delay), callback)

    def next_event_time(self) -> float | None:
        """Time of the earliest pending callback, or None."""
        with self._condition:
            while self._queue and self._queue[0][2].cancelled:
                heapq.heappop(self._queue)
            return self._queue[0][0] if self._queue else None

    def close(self, timeout: float = 2.0) -> None:
        """Stop the thread; pending callbacks are dropped. Idempotent."""
        with self._condition:
            self._closed = True
            self._queue.clear()
            self._condition.notify()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        return self._closed

    def _next_due(self) -> ScheduledCallback | None:
        """Block until a timer is due (returned) or the scheduler closes (None)."""
        with self._condition:
            while not self._closed:
                while self._queue and self._queue[0][2].cancelled:
                    heapq.heappop(self._queue)
                if not self._queue:
                    self._condition.wait()
                    continue
                delay = self._queue[0][0] - time.monotonic()
                if delay <= 0:
                    return heapq.heappop(self._queue)[2]
                self._condition.wait(delay)
            return None

    def _run(self) -> None:
        while (timer := self._next_due()) is not None:
            try:
                timer.callback()
            except Exception:
                logger.exception("scheduled callback %r failed", timer.callback)
