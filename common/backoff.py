"""Exponential backoff with jitter, for anything that retries a resource that went away.

The MQTT broker, the serial port and a TCP peer all fail the same way: the thing is gone for a
while and comes back. Retrying at a fixed short interval floods the log and the network;
retrying at a fixed long interval makes recovery slow. Doubling the delay up to a cap gives quick
recovery from a blip and quiet waiting during an outage. Jitter matters because a broker restart
disconnects every client at the same instant: without it they all come back in lock-step.

The randomness is injected (`rng`, returning floats in [0, 1)) so tests get exact delays; the
helper never sleeps or reads a clock, it only says how long to wait. With `jitter=0` it is the
plain doubling that a single local resource (a serial port, one radio) needs: there is no herd
to spread out, and the delays stay exact.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["Backoff"]


class Backoff:
    """Delays `initial`, `initial*factor`, ... capped at `maximum`, each shortened by jitter.

    With `jitter` j the delay is drawn from `[base * (1 - j), base]`: never longer than the
    un-jittered schedule (so `maximum` is a real upper bound a user can rely on), and never shorter
    than `base * (1 - j)` (so a tight loop is impossible). `reset()` after a success starts again
    at `initial`.

    Not thread-safe on its own; each retrying component owns one.
    """

    def __init__(
        self,
        initial: float = 1.0,
        maximum: float = 60.0,
        *,
        factor: float = 2.0,
        jitter: float = 0.25,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if not initial > 0:
            raise ValueError(f"initial backoff must be positive, got {initial!r}")
        if not maximum >= initial:
            raise ValueError(f"maximum backoff {maximum!r} is below the initial delay {initial!r}")
        if not factor >= 1:
            raise ValueError(f"backoff factor must be at least 1, got {factor!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"jitter must be in [0, 1), got {jitter!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self._rng = rng
        self._attempts = 0

    @property
    def attempts(self) -> int:
        """How many delays were handed out since the last `reset()`."""
        return self._attempts

    def peek_base(self) -> float:
        """The un-jittered delay the next call to `next_delay()` is based on."""
        # min() before the power would overflow for a long outage; cap the exponent instead.
        base = self.initial
        for _ in range(self._attempts):
            base *= self.factor
            if base >= self.maximum:
                return self.maximum
        return min(base, self.maximum)

    def next_delay(self) -> float:
        """The delay to wait before the next attempt; advances the schedule."""
        base = self.peek_base()
        self._attempts += 1
        if not self.jitter:
            return base  # a plain doubling: no draw, so a shared `rng` is left untouched
        draw = min(max(self._rng(), 0.0), 1.0)
        return base * (1.0 - self.jitter * draw)

    def reset(self) -> None:
        """Call after a success: the next failure waits `initial` again."""
        self._attempts = 0
