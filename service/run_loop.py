"""`run_forever`: the daemons' main loop around a runtime's non-blocking `step`.

    deadline = runtime.step(clock.now())
    clock.wait(runtime.wakeup, deadline - clock.now())

That is the whole loop; this module adds what a daemon that must run for months needs:

- **Stopping**: the loop ends when `stop` is set. Waits are capped at `max_wait_s`, so a stop
  request is seen within that time even if nobody sets `runtime.wakeup`; `request_stop` sets
  both events for an immediate stop.
- **Tolerance**: a step that raises is logged with its traceback, counted and retried after an
  exponential backoff (0.1 s doubling to 30 s, with jitter) instead of killing the daemon. Only
  `max_failures` *consecutive* failures give up, by raising `RunLoopError` (systemd then
  restarts the service, which is the right cure for a state that keeps failing). A
  `FatalError` (e.g. the frame counters are used up) is not retried: it ends the loop at once.
- **Liveness**: `heartbeat` is called after every successful step (a systemd watchdog ping).

It runs on a `VirtualClock` too (waiting advances virtual time), which is how it is tested.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from p1lora.common.backoff import Backoff
from p1lora.common.clock import Clock
from p1lora.common.fatal import FatalError

__all__ = ["LoopStats", "RunLoopError", "Steppable", "request_stop", "run_forever"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_WAIT_S = 1.0
DEFAULT_MAX_FAILURES = 10


class Steppable(Protocol):
    """What the loop drives: `TxRuntime`, `RxRuntime`, or anything shaped like them."""

    wakeup: threading.Event

    def step(self, now: float) -> float | None:
        """Do what is due; return when to run next (None: when `wakeup` is set)."""


class RunLoopError(RuntimeError):
    """The runtime failed `max_failures` times in a row: the daemon should exit and be
    restarted."""


@dataclass
class LoopStats:
    """What `run_forever` counted (pass one in to read it afterwards)."""

    steps: int = 0
    failures: int = 0
    consecutive_failures: int = 0


def request_stop(stop: threading.Event, runtime: Steppable) -> None:
    """Ask a running loop to end now (safe from any thread and from signal handlers)."""
    stop.set()
    runtime.wakeup.set()


def run_forever(
    runtime: Steppable,
    clock: Clock,
    stop: threading.Event,
    *,
    max_wait_s: float = DEFAULT_MAX_WAIT_S,
    max_failures: int = DEFAULT_MAX_FAILURES,
    heartbeat: Callable[[], None] | None = None,
    stats: LoopStats | None = None,
    backoff: Backoff | None = None,
) -> None:
    """Step `runtime` until `stop` is set (see the module docstring)."""
    if not max_wait_s > 0:
        raise ValueError("max_wait_s must be positive")
    if max_failures < 1:
        raise ValueError("max_failures must be at least 1")
    counts = stats if stats is not None else LoopStats()
    delays = backoff if backoff is not None else Backoff(0.1, 30.0)
    heartbeat_failed = False  # log a failing heartbeat once, not on every step
    while not stop.is_set():
        try:
            deadline = runtime.step(clock.now())
        except FatalError:
            raise  # retrying cannot cure it: the daemon reports it and stops
        except Exception as exc:
            counts.failures += 1
            counts.consecutive_failures += 1
            if counts.consecutive_failures >= max_failures:
                logger.critical(
                    "the main loop failed %d times in a row; giving up", counts.consecutive_failures
                )
                raise RunLoopError(
                    f"the runtime failed {counts.consecutive_failures} times in a row: {exc}"
                ) from exc
            delay = delays.next_delay()
            logger.exception(
                "a step of the main loop failed (%d in a row); retrying in %.1f s",
                counts.consecutive_failures,
                delay,
            )
            clock.wait(stop, delay)
            continue
        counts.steps += 1
        if counts.consecutive_failures:
            logger.info("the main loop recovered after %d failures", counts.consecutive_failures)
            counts.consecutive_failures = 0
            delays.reset()
        if heartbeat is not None:
            try:
                heartbeat()
            except Exception:
                if not heartbeat_failed:
                    logger.exception("the main loop's heartbeat callback failed")
                heartbeat_failed = True
        timeout = max_wait_s if deadline is None else min(max_wait_s, deadline - clock.now())
        if timeout > 0 and not stop.is_set():
            clock.wait(runtime.wakeup, timeout)
