"""Telegram framing: serial bytes in arbitrary chunks -> complete, CRC-checked P1 telegrams.

A P1 port is a one-way UART that never stops talking. A reader joins mid-telegram when the cable
is plugged in, a loose cable cuts a telegram off half-way (and the next header begins), bit
errors flip bytes, and a port opened with the wrong settings yields noise. The framer therefore
never trusts anything but its own rules:

* A telegram starts with `/` at the start of a line (start of input, after CR/LF, or after
  bytes that cannot be text, such as the noise of a cable being plugged in). A `/` inside a
  line is data, not a header, unless it reads like one (`/XXX5`, as when printable junk is
  glued to the first header): then it is a tentative start, kept only if a complete telegram
  follows (that passes its CRC, when it has one).
* It ends with `!` at the start of a line, 0-4 hex digits of CRC (either case) and a line end.
  `!` followed by anything else is a broken end: the fragment is dropped.
* A new header at a line start before the end means the previous telegram was cut off.
* At most `max_telegram_bytes` are buffered: runaway input without `!` cannot eat memory.
* CRC-16/ARC over `/` .. `!` must match when the telegram carries one. DSMR 2.2/3 telegrams
  carry none; those are accepted unless they contain bytes that cannot be telegram text (the
  only check there is for them).
* When a telegram fails its CRC because it was cut off mid-line and a new one started inside
  it, the embedded telegram is rescued if *its* CRC passes.

Problems are counted in `stats` and logged at debug level, never raised: this runs in the serial
reading loop. Every byte fed is accounted for: it either leaves in a good telegram or is counted
in `stats.bytes_discarded`. Telegrams that failed are handed out only to callers who ask
(`feed(chunk, include_bad=True)`), each with `problem` saying why.

The CRC is `p1lora.common.crc16.crc16_arc` (two bytes per step), which matters on a Pi Zero
doing this every second next to the parser and the codec.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass

from p1lora.common.crc16 import crc16_arc

__all__ = [
    "DEFAULT_MAX_TELEGRAM_BYTES",
    "PROBLEM_CRC",
    "PROBLEM_NON_ASCII",
    "CrcCheck",
    "FramedTelegram",
    "FramerStats",
    "TelegramFramer",
    "check_crc",
    "crc_check_at",
    "excerpt",
]

logger = logging.getLogger(__name__)

#: Real telegrams are 400-1500 bytes; e-MUCS with a long peak history stays under 3 kB.
DEFAULT_MAX_TELEGRAM_BYTES = 8192

PROBLEM_CRC = "CRC mismatch"
PROBLEM_NON_ASCII = "bytes that are not telegram text in a telegram without CRC"

_LF = 0x0A
_CR = 0x0D
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")
# Bytes a telegram may consist of: printable ASCII plus CR and LF.
_TEXT_BYTES = bytes(range(0x20, 0x7F)) + b"\r\n"
# A header-looking `/XXX5` inside a line: where a cut-off telegram was followed by a new one.
_EMBEDDED_HEADER = re.compile(rb"/[A-Za-z]{3}\d")
_HEADER_PROBE = 5


#: How much of the meter's text a log line quotes (`excerpt`).
EXCERPT_CHARS = 40


def excerpt(data: bytes | str, limit: int = EXCERPT_CHARS) -> str:
    """Meter bytes made safe for a log line: escaped like `repr` and cut to `limit` characters.

    Whatever arrives on a P1 port (or in a file given to `p1-lora parse`) may be noise: control
    characters that move a terminal's cursor, kilobytes without a line end. A log line quotes at
    most `limit` characters of it, escaped (`\\x00`, `\\r`, non-ASCII as `\\xe9`), and says how
    long the rest was.
    """
    text = data.decode("latin-1") if isinstance(data, bytes | bytearray) else data
    shown = ascii(text[:limit])[1:-1]
    if len(text) > limit:
        shown += f"... ({len(text)} characters)"
    return shown


@dataclass(frozen=True, slots=True)
class CrcCheck:
    """The telegram's CRC as printed, as computed, and whether they agree.

    `expected` is None (and `valid` None) for telegrams without a CRC (DSMR 2.2/3). It keeps
    the meter's digits, upper-cased: a meter that prints `!B9F` has expected `B9F` and
    computed `0B9F`, and that is valid.
    """

    expected: str | None
    computed: str
    valid: bool | None

    def as_dict(self) -> dict[str, str | bool | None]:
        return {"expected": self.expected, "computed": self.computed, "valid": self.valid}


def _make_check(body: bytes | bytearray | memoryview, digits: bytes) -> CrcCheck:
    crc = crc16_arc(body)
    if not digits:
        return CrcCheck(None, f"{crc:04X}", None)
    expected = digits.decode("ascii").upper()
    return CrcCheck(expected, f"{crc:04X}", int(expected, 16) == crc)


_CRC_DIGITS = re.compile(rb"[0-9A-Fa-f]{0,4}")


def crc_check_at(raw: bytes, start: int, bang: int) -> CrcCheck:
    """CRC check of the telegram in raw[start:] whose end marker `!` is at index `bang`."""
    match = _CRC_DIGITS.match(raw, bang + 1)
    digits = match.group() if match is not None else b""
    return _make_check(memoryview(raw)[start : bang + 1], digits)


def check_crc(raw: bytes) -> CrcCheck | None:
    """Check the CRC of one complete telegram (`/` .. `!` [CRC] [line end]).

    Returns None when `raw` has no `/` header or no `!` end marker (not a telegram at all).
    Leading bytes before the first `/` are ignored.
    """
    start = raw.find(b"/")
    if start < 0:
        return None
    bang = raw.rfind(b"\n!", start)
    if bang < 0:
        return None
    return crc_check_at(raw, start, bang + 1)


@dataclass(frozen=True, slots=True)
class FramedTelegram:
    """One telegram as it came off the wire.

    `raw` runs from `/` through `!`, the CRC digits and the line end, byte-exact as sent.
    `problem` is None for a good telegram; otherwise it says why it is bad (only handed out
    with `include_bad=True`).
    """

    raw: bytes
    crc: CrcCheck
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass(slots=True)
class FramerStats:
    """Counters since the framer was made. `framing_errors` is the sum of the four reasons."""

    telegrams_ok: int = 0
    crc_errors: int = 0
    framing_errors: int = 0
    #: A new header at a line start before the end marker (or input ended mid-telegram).
    cut_off: int = 0
    #: More than `max_telegram_bytes` without an end marker.
    oversize: int = 0
    #: A telegram without CRC that contains bytes that cannot be telegram text.
    non_ascii: int = 0
    #: `!` followed by something that is not 0-4 hex digits and a line end.
    bad_end: int = 0
    #: Bytes that did not become a good telegram (junk, fragments, failed telegrams).
    bytes_discarded: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class TelegramFramer:
    """Incremental framer: `feed(chunk)` returns the telegrams that chunk completed.

    Sans-I/O: it holds no port and no clock; the serial source runs
    `framer.feed(port.read(...))` in its loop. At the end of a finite input (a capture file),
    call `flush()` so that a last telegram whose line end never came is not lost.
    """

    def __init__(self, max_telegram_bytes: int = DEFAULT_MAX_TELEGRAM_BYTES) -> None:
        if max_telegram_bytes < 16:
            raise ValueError(f"max_telegram_bytes must be at least 16, not {max_telegram_bytes}")
        self.max_telegram_bytes = max_telegram_bytes
        self.stats = FramerStats()
        # Unfinished telegram, starting with b"/" (empty while hunting for a header).
        self._pending = b""
        self._pending_tentative = False
        # Last byte seen while hunting: decides whether a `/` at the start of the next chunk
        # is at a line start. The start of input counts as one.
        self._prev = _LF

    @property
    def buffered_bytes(self) -> int:
        """Bytes held for an unfinished telegram (never more than `max_telegram_bytes`)."""
        return len(self._pending)

    def reset(self) -> None:
        """Forget an unfinished telegram (e.g. after the port was reopened); keep the counters."""
        if self._pending:
            self.stats.bytes_discarded += len(self._pending)
        self._pending = b""
        self._pending_tentative = False
        self._prev = _LF

    def feed(self, chunk: bytes, include_bad: bool = False) -> list[FramedTelegram]:
        """Take the next bytes from the port; return telegrams completed by them.

        Good telegrams only, unless `include_bad`: then telegrams that failed their CRC (or
        hold non-text bytes without a CRC) are returned too, in order, with `problem` set.
        """
        if not chunk:
            return []
        if self._pending:
            data = self._pending + chunk
            return self._process(data, 0, self._pending_tentative, include_bad, eof=False)
        return self._process(bytes(chunk), -1, False, include_bad, eof=False)

    def flush(self, include_bad: bool = False) -> list[FramedTelegram]:
        """End of input: finish a telegram that lacks only its final line end.

        An unfinished telegram without its `!` is counted as cut off and dropped.
        """
        if not self._pending:
            return []
        return self._process(self._pending, 0, self._pending_tentative, include_bad, eof=True)

    # -- internals ------------------------------------------------------------------------

    def _find_start(self, data: bytes, pos: int) -> tuple[int, bool]:
        """(index of the next header in data[pos:], whether it is tentative), or (-1, False).

        A `/` at a line start is a header. A `/` inside a line is one only if it looks like a
        header (`/XXX5`): printable junk glued to the first header after a cable is plugged
        in must not cost that telegram. Such a tentative start is checked again once enough
        bytes are there, and it still has to pass its CRC.
        """
        while True:
            k = data.find(b"/", pos)
            if k < 0:
                return -1, False
            prev = data[k - 1] if k > 0 else self._prev
            if prev in (_LF, _CR) or not 0x20 <= prev <= 0x7E:
                return k, False
            if len(data) - k < _HEADER_PROBE or _EMBEDDED_HEADER.match(data, k):
                return k, True
            pos = k + 1

    def _keep(self, data: bytes, start: int, tentative: bool) -> None:
        self._pending = data[start:]
        self._pending_tentative = tentative

    def _process(  # noqa: C901, PLR0912 - the framer's hot loop: one pass over the buffer, its cursor in locals
        self, data: bytes, start: int, tentative: bool, include_bad: bool, eof: bool
    ) -> list[FramedTelegram]:
        out: list[FramedTelegram] = []
        stats = self.stats
        n = len(data)
        pos = 0
        self._pending = b""
        # `start` is the index of the current telegram's `/`, or -1 while hunting.
        while True:
            if start < 0:
                start, tentative = self._find_start(data, pos)
                if start < 0:
                    stats.bytes_discarded += n - pos
                    self._prev = data[-1] if n else self._prev
                    return out
                stats.bytes_discarded += start - pos
            decidable = n - start >= _HEADER_PROBE or eof
            if tentative and decidable and not _EMBEDDED_HEADER.match(data, start):
                # Not a header after all: one byte of junk; hunt on.
                stats.bytes_discarded += 1
                start, pos = -1, start + 1
                continue
            end_marker = data.find(b"\n!", start)
            restart = data.find(b"\n/", start, end_marker if end_marker >= 0 else n)
            if restart >= 0:
                self._framing_error(
                    "cut_off", restart + 1 - start, "telegram cut off by a new header"
                )
                start, pos, tentative = restart + 1, restart + 1, False
                continue
            if end_marker < 0:
                if n - start > self.max_telegram_bytes:
                    self._framing_error(
                        "oversize", n - start, "no end marker within the size limit"
                    )
                    self._prev = data[-1]
                    return out
                if eof:
                    self._framing_error("cut_off", n - start, "input ended inside a telegram")
                    return out
                self._keep(data, start, tentative)
                return out
            bang = end_marker + 1
            j = bang + 1
            limit = min(n, j + 4)
            while j < limit and data[j] in _HEX_DIGITS:
                j += 1
            if j == n or (data[j] == _CR and j + 1 == n):
                if not eof:
                    # The rest of the CRC line is still on its way.
                    if j - start > self.max_telegram_bytes:
                        self._framing_error("oversize", j - start, "telegram over the size limit")
                        return out
                    self._keep(data, start, tentative)
                    return out
                end = n
            elif data[j] == _LF:
                end = j + 1
            elif data[j] == _CR and data[j + 1] == _LF:
                end = j + 2
            else:
                self._framing_error("bad_end", j - start, "end marker not followed by a CRC line")
                start, pos = -1, j
                continue
            if end - start > self.max_telegram_bytes:
                self._framing_error("oversize", end - start, "telegram over the size limit")
            else:
                self._finish(
                    data,
                    start=start,
                    bang=bang,
                    digits_end=j,
                    end=end,
                    include_bad=include_bad,
                    out=out,
                )
            start, pos = -1, end

    def _finish(
        self,
        data: bytes,
        *,
        start: int,
        bang: int,
        digits_end: int,
        end: int,
        include_bad: bool,
        out: list[FramedTelegram],
    ) -> None:
        stats = self.stats
        view = memoryview(data)
        digits = data[bang + 1 : digits_end]
        check = _make_check(view[start : bang + 1], digits)
        problem: str | None = None
        if check.valid is False:
            rescued = self._rescue(data, start, bang, digits)
            if rescued is not None:
                self._framing_error("cut_off", rescued - start, "telegram cut off mid-line")
                start = rescued
                check = _make_check(view[start : bang + 1], digits)
            else:
                problem = PROBLEM_CRC
        elif check.valid is None:
            embedded = self._last_embedded_header(data, start, bang)
            if embedded is not None:
                self._framing_error("cut_off", embedded - start, "telegram cut off mid-line")
                start = embedded
                check = _make_check(view[start : bang + 1], digits)
            if data[start:end].translate(None, _TEXT_BYTES):
                problem = PROBLEM_NON_ASCII
        raw = data[start:end]
        if problem is None:
            stats.telegrams_ok += 1
            out.append(FramedTelegram(raw, check))
            return
        stats.bytes_discarded += len(raw)
        if problem is PROBLEM_CRC:
            stats.crc_errors += 1
            logger.debug(
                "telegram failed its CRC: it says %s, computed %s", check.expected, check.computed
            )
        else:
            stats.non_ascii += 1
            stats.framing_errors += 1
            logger.debug("telegram without CRC contains non-text bytes")
        if include_bad:
            out.append(FramedTelegram(raw, check, problem))

    @staticmethod
    def _rescue(data: bytes, start: int, bang: int, digits: bytes) -> int | None:
        """Start of a telegram embedded mid-line whose own CRC passes, if there is one."""
        view = memoryview(data)
        for match in _EMBEDDED_HEADER.finditer(data, start + 1, bang):
            candidate = match.start()
            if _make_check(view[candidate : bang + 1], digits).valid:
                return candidate
        return None

    @staticmethod
    def _last_embedded_header(data: bytes, start: int, bang: int) -> int | None:
        last = None
        for match in _EMBEDDED_HEADER.finditer(data, start + 1, bang):
            if data[match.start() - 1] not in (_LF, _CR):
                last = match.start()
        return last

    def _framing_error(self, reason: str, size: int, message: str) -> None:
        stats = self.stats
        setattr(stats, reason, getattr(stats, reason) + 1)
        stats.framing_errors += 1
        stats.bytes_discarded += size
        logger.debug("framing error (%s): %s, %d bytes dropped", reason, message, size)
