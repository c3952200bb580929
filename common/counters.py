"""Frame counters that survive restarts without writing the SD card for every frame.

Each side numbers every frame it sends with one 32-bit counter. The receiver of those frames
rejects anything not newer than what it accepted last, so after a reboot the counter must
continue *above* every value used before, or legitimate frames are thrown away as replays.
Writing the counter to storage on every frame would wear out a Pi's SD card within months,
so the counter is persisted in reserved blocks:

- the persisted value `reserved_until` promises "no value at or above this was ever used";
- before using a value at or above the reservation, the counter asks for a new reservation
  (`reserved_until = value + block`) to be persisted *first*; the link emits that
  `PersistCounters` action before the `Transmit` of the frame that needs it, and the runtime
  executes actions in order;
- on start the counter resumes from the persisted reservation, skipping at most one block.

With the default block of 1000 and one frame per second, storage is written about every
17 minutes. Losing the store entirely does not reuse a nonce either (session keys are fresh
per handshake, static-key frames carry a random); it only costs a slower re-handshake.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from p1lora.common.crypto import COUNTER_MAX
from p1lora.common.fatal import FatalError

__all__ = ["DEFAULT_BLOCK", "CounterExhaustedError", "CounterState", "FrameCounter"]

DEFAULT_BLOCK = 1000
_EXHAUSTED = (
    "all 2^32 frame counter values of this key are used up: generate a new pre-shared key "
    "with `p1-lora keygen`, install it on both sides, and remove the counter state files "
    "(<state dir>/tx_counters.json and rx_counters.json)"
)


class CounterExhaustedError(FatalError):
    """All 2^32 counter values are used up: the PSK must be replaced (not reachable in practice:
    one frame per second lasts 136 years, but a damaged or planted state file can say so).

    A `FatalError`: retrying cannot help (a nonce must never repeat), so the daemon stops with
    this message instead of failing on every frame."""


@dataclass(frozen=True, slots=True)
class CounterState:
    """What is persisted: every counter value below `reserved_until` may have been used."""

    reserved_until: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.reserved_until <= COUNTER_MAX + 1:
            raise ValueError(f"counter reservation {self.reserved_until} is out of range")

    def as_dict(self) -> dict[str, int]:
        """JSON-friendly form for the runtime's state file."""
        return {"reserved_until": self.reserved_until}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> CounterState:
        """Read the state file form back; ValueError with a clear message when it is damaged."""
        value = data.get("reserved_until")
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError("counter state needs an integer 'reserved_until'")
        return cls(value)


class FrameCounter:
    """The next frame counter value, reserving blocks ahead (see the module docstring)."""

    def __init__(self, state: CounterState | None = None, block: int = DEFAULT_BLOCK) -> None:
        if block < 1:
            raise ValueError("counter block must be at least 1")
        self._block = block
        self._reserved = (state or CounterState()).reserved_until
        self._next = self._reserved
        if self._next > COUNTER_MAX:
            raise CounterExhaustedError(_EXHAUSTED)

    @property
    def next_value(self) -> int:
        """The value the next `take()` returns."""
        return self._next

    @property
    def reserved_until(self) -> int:
        return self._reserved

    def take(self) -> tuple[int, CounterState | None]:
        """Use one value. Returns it and, when it crosses the reservation, the new state that
        must be persisted *before* the frame carrying the value is sent (else None)."""
        value = self._next
        if value > COUNTER_MAX:
            raise CounterExhaustedError(_EXHAUSTED)
        persist: CounterState | None = None
        if value >= self._reserved:
            self._reserved = min(value + self._block, COUNTER_MAX + 1)
            persist = CounterState(self._reserved)
        self._next = value + 1
        return value, persist
