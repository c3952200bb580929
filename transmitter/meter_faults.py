"""Seeded fault injection for a telegram stream: what a real P1 cable does on a bad day.

Readers must survive bit errors (a CRC failure), a telegram cut off part-way with the next one
starting right after (a loose connector, a meter reboot), junk between telegrams (noise after
plugging in), and silence (a meter that stops sending for a while). The injector works on the
(t, telegram bytes) stream that `VirtualMeter` and `CaptureReplay` produce, so the same faults
reach a pty, stdout, the simulator or a unit test; it is seeded so a failing test replays
exactly.

Faults are chosen per telegram: `bit_errors=0.05` means about one telegram in twenty carries
one to three flipped bits. Flips land between '/' and '!' and junk never
contains '/' or '!', so every injected fault damages exactly the telegram it was applied to and
nothing else: tests can count precisely what a reader must reject.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields

__all__ = ["FaultConfig", "FaultInjector", "FaultStats", "inject"]


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """Probabilities per telegram (0..1) and the length range of a silence, in seconds."""

    bit_errors: float = 0.0
    truncate: float = 0.0
    junk: float = 0.0
    silence: float = 0.0
    silence_seconds: tuple[float, float] = (5.0, 60.0)

    def __post_init__(self) -> None:
        for name in ("bit_errors", "truncate", "junk", "silence"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} probability {value!r} is outside 0..1")
        low, high = self.silence_seconds
        if not 0.0 < low <= high:
            raise ValueError(f"silence length range {low!r}..{high!r} s is not a valid range")

    @property
    def enabled(self) -> bool:
        """True when any fault can happen."""
        return any((self.bit_errors, self.truncate, self.junk, self.silence))


@dataclass(slots=True)
class FaultStats:
    """How many of each fault were injected (a telegram may carry several)."""

    telegrams: int = 0
    bit_errors: int = 0
    truncated: int = 0
    junk: int = 0
    silenced: int = 0
    silences: int = 0
    junk_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


#: Bytes junk is drawn from: anything but '/' and '!', so junk never opens or closes a telegram.
#: Junk ends with CR LF: a reader cannot tell a header glued to printable noise from a '/' in
#: the middle of a line, and the point of this fault is junk *between* telegrams.
_JUNK_ALPHABET = bytes(b for b in range(256) if b not in b"/!")


@dataclass(slots=True)
class FaultInjector:
    """Applies `config` to telegrams one at a time; deterministic for a given seed.

    `data_bits` is 7 for 7E1 lines: a UART there cannot deliver the 8th bit, so flips stay in
    bits 0-6. `last_faults` names what was done to the most recent telegram.
    """

    config: FaultConfig
    seed: int = 0
    data_bits: int = 8
    stats: FaultStats = field(default_factory=FaultStats)
    last_faults: tuple[str, ...] = ()
    _rng: random.Random = field(init=False, repr=False)
    _silent_until: float = field(init=False, default=float("-inf"), repr=False)

    def __post_init__(self) -> None:
        if self.data_bits not in (7, 8):
            raise ValueError(f"data_bits must be 7 or 8, got {self.data_bits!r}")
        self._rng = random.Random(f"p1lora-meter-faults:{self.seed}")

    def apply(self, t: float, telegram: bytes) -> bytes:
        """The bytes to put on the line for the telegram due at `t` (b"" while silent)."""
        cfg, rng, stats = self.config, self._rng, self.stats
        stats.telegrams += 1
        faults: list[str] = []
        if t < self._silent_until:
            stats.silenced += 1
            self.last_faults = ("silence",)
            return b""
        if cfg.silence and rng.random() < cfg.silence:
            self._silent_until = t + rng.uniform(*cfg.silence_seconds)
            stats.silences += 1
            stats.silenced += 1
            self.last_faults = ("silence",)
            return b""
        data = telegram
        end = telegram.rfind(b"!")
        if cfg.bit_errors and rng.random() < cfg.bit_errors and end > 0:
            data = self._flip_bits(data, end)
            stats.bit_errors += 1
            faults.append("bit_errors")
        if cfg.truncate and rng.random() < cfg.truncate and end > 1:
            # Keep at least '/' and never the '!', so the remains can never pass as a telegram.
            data = data[: rng.randint(1, end - 1)]
            stats.truncated += 1
            faults.append("truncate")
        if cfg.junk and rng.random() < cfg.junk:
            noise = bytes(rng.choice(_JUNK_ALPHABET) for _ in range(rng.randint(1, 62)))
            junk = noise + b"\r\n"
            data = junk + data
            stats.junk += 1
            stats.junk_bytes += len(junk)
            faults.append("junk")
        self.last_faults = tuple(faults)
        return data

    def _flip_bits(self, telegram: bytes, end: int) -> bytes:
        """Flip 1-3 distinct bits between '/' and '!' (both included).

        CRC-16/ARC detects every error of up to three bits in a telegram this short, so a
        flipped telegram with a CRC is always rejected; DSMR 2.2/3 telegrams cannot be checked.
        The CRC digits themselves are left alone: a flipped case bit turns 'A' into 'a', which
        a reader rightly accepts as the same CRC.
        """
        rng = self._rng
        data = bytearray(telegram)
        spots: set[tuple[int, int]] = set()
        wanted = rng.randint(1, 3)
        while len(spots) < wanted:
            spots.add((rng.randint(0, end), rng.randrange(self.data_bits)))
        for position, bit in sorted(spots):
            data[position] ^= 1 << bit
        return bytes(data)


def inject(
    events: Iterable[tuple[float, bytes]], injector: FaultInjector
) -> Iterator[tuple[float, bytes]]:
    """Apply `injector` to a (t, telegram) stream; silenced telegrams are left out."""
    for t, telegram in events:
        data = injector.apply(t, telegram)
        if data:
            yield t, data
