"""Replay a capture of a real meter: its telegrams, byte for byte, at its own interval.

A capture (`cat /dev/ttyUSB0 > capture.txt`, or a file a user attaches to a bug report) is the
best test data there is: it holds the exact layout, digits and quirks of one meter. Replay
takes the telegrams out with the project's framer (junk, cut-off and CRC-failing telegrams in
between are skipped and counted) and hands them out as the same (t, telegram) stream the
virtual meter produces, so `p1-lora meter --replay` and the fault injector work on it unchanged.

Telegrams are replayed **byte-exact**; timestamps are not rewritten. Rewriting only the clock
line would produce telegrams no meter ever sent while the energy registers still jump back at
each loop, and the meter's own CRC over the original bytes is what makes a capture
trustworthy. With `loop=True` the registers therefore restart at each pass (a consumer sees a
meter reset); for an endless, consistent stream use the virtual meter instead.

The interval is taken from the capture's own timestamps when it has them (the median step),
otherwise from the DSMR version line (5.x and e-MUCS every second, older every 10 s).
"""

from __future__ import annotations

import itertools
import logging
import re
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from p1lora.common.dsmr_time import parse_timestamp
from p1lora.common.framing import (
    PROBLEM_CRC,
    FramedTelegram,
    FramerStats,
    TelegramFramer,
    check_crc,
)
from p1lora.transmitter.meter_profiles import SERIAL_SETTINGS, SerialSettings

__all__ = ["CaptureReplay", "ReplayError", "guess_generation", "guess_interval"]

logger = logging.getLogger(__name__)

_TIMESTAMP = re.compile(rb"^0-0:1\.0\.0\((\d{12}[SWsw])\)", re.MULTILINE)
_VERSION = re.compile(rb"^1-3:0\.2\.8\((\d+)\)", re.MULTILINE)
_BELGIAN_VERSION = re.compile(rb"^0-0:96\.1\.4\(", re.MULTILINE)
_NO_CRC_END = re.compile(rb"\n!\r?\n?$")

#: Seconds between telegrams a capture without timestamps is assumed to have, per generation.
_GENERATION_INTERVAL: dict[str, float] = {"5": 1.0, "4": 10.0, "2.2": 10.0}


class ReplayError(ValueError):
    """The capture cannot be replayed (unreadable, or no good telegram in it)."""


def guess_generation(telegram: bytes) -> str:
    """DSMR generation key of `SERIAL_SETTINGS` ('5', '4' or '2.2') for one telegram."""
    version = _VERSION.search(telegram)
    if version is not None:
        return "5" if version.group(1).startswith(b"5") else "4"
    if _BELGIAN_VERSION.search(telegram):
        return "5"
    if _NO_CRC_END.search(telegram):
        return "2.2"
    return "4"


def guess_interval(telegrams: Sequence[bytes]) -> float:
    """The send interval: the median step between meter timestamps, else by generation."""
    moments = []
    for raw in telegrams:
        match = _TIMESTAMP.search(raw)
        moment = parse_timestamp(match.group(1).decode("ascii")) if match else None
        if moment is not None:
            moments.append(moment.timestamp())
    steps = [b - a for a, b in itertools.pairwise(moments) if b > a]
    if steps:
        return float(max(1, round(statistics.median(steps))))
    return _GENERATION_INTERVAL[guess_generation(telegrams[0])] if telegrams else 10.0


def _restore_crlf(telegram: FramedTelegram) -> bytes | None:
    """The telegram with CR LF restored, if it had LF-only line ends and its CRC allows it."""
    raw = telegram.raw
    if b"\r\n" in raw or telegram.problem not in (None, PROBLEM_CRC):
        return None
    fixed = raw.replace(b"\n", b"\r\n")
    check = check_crc(fixed)
    if check is None or check.valid is False:
        return None
    return fixed


@dataclass(frozen=True, slots=True)
class CaptureReplay:
    """Telegrams from a capture, replayed every `interval` seconds (t = 0, interval, ...)."""

    telegrams: tuple[bytes, ...]
    interval: float
    loop: bool = False
    #: What the framer found in the capture besides good telegrams.
    framing: FramerStats | None = None

    def __post_init__(self) -> None:
        if not self.telegrams:
            raise ReplayError("the capture holds no telegram to replay")
        if not self.interval > 0:
            raise ReplayError(f"interval must be positive, got {self.interval!r}")

    @classmethod
    def from_bytes(
        cls, data: bytes, *, interval: float | None = None, loop: bool = False
    ) -> CaptureReplay:
        """Frame `data`; keep the telegrams that pass their CRC (or have none).

        A capture saved with LF line endings (copied from a web page, or through a text-mode
        tool) gets its CR LF back when the CRC then passes: the meter always sent CR LF.
        """
        framer = TelegramFramer()
        framed = framer.feed(data, include_bad=True) + framer.flush(include_bad=True)
        good: list[bytes] = []
        restored = failed = 0
        for telegram in framed:
            fixed = _restore_crlf(telegram)
            if fixed is not None:
                good.append(fixed)
                restored += 1
            elif telegram.ok:
                good.append(telegram.raw)
            else:
                failed += 1
        stats = framer.stats
        if restored:
            logger.warning(
                "capture: %d telegram(s) had LF-only line endings; restored CR LF", restored
            )
        if failed or stats.framing_errors:
            logger.info(
                "capture: skipped %d telegram(s) failing their check and %d broken fragment(s)",
                failed,
                stats.framing_errors,
            )
        if not good:
            raise ReplayError(
                f"no valid telegram found in {len(data)} bytes "
                f"({failed} failed their check, {stats.framing_errors} were broken)"
            )
        chosen = guess_interval(good) if interval is None else interval
        return cls(tuple(good), chosen, loop, stats)

    @classmethod
    def from_file(
        cls, path: str | Path, *, interval: float | None = None, loop: bool = False
    ) -> CaptureReplay:
        """Read and frame a capture file (binary: the CR LF line ends must survive)."""
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ReplayError(f"cannot read capture {path}: {exc.strerror or exc}") from None
        try:
            return cls.from_bytes(data, interval=interval, loop=loop)
        except ReplayError as exc:
            raise ReplayError(f"{path}: {exc}") from None

    @property
    def generation(self) -> str:
        """DSMR generation of the first telegram ('5', '4' or '2.2')."""
        return guess_generation(self.telegrams[0])

    @property
    def serial_settings(self) -> SerialSettings:
        """The serial line the captured meter uses (by its DSMR generation)."""
        return SERIAL_SETTINGS[self.generation]

    def __len__(self) -> int:
        return len(self.telegrams)

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        """(t, telegram) in capture order; endless when `loop` is set."""
        k = 0
        while True:
            for raw in self.telegrams:
                yield k * self.interval, raw
                k += 1
            if not self.loop:
                return
