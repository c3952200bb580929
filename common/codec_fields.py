"""Field tokenizer for the telegram codec: a telegram as fixed text plus numeric fields.

A P1 telegram second by second is the same text with a few numbers changed: the clock, the
instantaneous power, voltages and currents, now and then an energy register. The codec
(`p1lora.common.codec`) sends only the changed numbers, so it needs a *lossless* split of a
telegram into

* the **layout**: the text between numbers (OBIS codes, units, brackets, line ends) plus the
  exact printed format of every number (digit count, decimals, timestamp style), and
* the **values**: one integer per field.

`render(layout, values)` gives back the original bytes exactly. That is guaranteed by
construction: a value in brackets only becomes a field when its canonical rendering (zero padded
to the same width) reproduces it; anything else (hex ids, garbage timestamps such as
`632525252525W`, OBIS references, signs) stays text. Two telegrams can be coded as a field delta
exactly when their layouts are equal.

Field kinds (the domain is a table, so is the code):

| kind        | printed as            | value                                          |
|-------------|-----------------------|------------------------------------------------|
| NUMBER      | `001581.123`, `0002`  | the digits without the dot as an integer       |
| TIME_SW     | `170102192002W`       | 2 x seconds since 2000-01-01 00:00 + (1 if S)  |
| TIME_PLAIN  | `211122210000`        | seconds since 2000-01-01 00:00 (DSMR 2.2 gas)  |

Timestamps are numbers of seconds rather than digit strings so that one second later is a
delta of +2 (or +1), not +1 with carries through minutes, hours and days.

Each field also gets a *rank* from the OBIS code of its line, so that the codec's changed-field
bitmap lists the fields that change every second first (and can stop early): the meter clock
and instantaneous values (OBIS value group D = 7) first, registers and M-Bus readings next,
everything else last.

Pure functions, no I/O; `p1lora.common` rules apply.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import IntEnum
from typing import NamedTuple

__all__ = [
    "MAX_FIELD_DIGITS",
    "UNITS_PER_SECOND",
    "FieldFormat",
    "FieldKind",
    "Layout",
    "RenderError",
    "Tokens",
    "has_meter_clock",
    "render",
    "render_field",
    "tokenize",
]

#: Longer digit runs (all-digit equipment ids, for example) stay text: they never change and
#: keeping values below 10**18 bounds every delta to a 64-bit varint.
MAX_FIELD_DIGITS = 18

_EPOCH = datetime(2000, 1, 1)
_LAST_SECOND = int((datetime(2100, 1, 1) - _EPOCH).total_seconds())


class RenderError(ValueError):
    """A value does not fit its field's printed format (only forged or buggy input does this)."""


class FieldKind(IntEnum):
    """How a field's integer value maps onto its printed digits (see the module table)."""

    NUMBER = 0
    TIME_SW = 1
    TIME_PLAIN = 2


class FieldFormat(NamedTuple):
    """Exact printed shape of one field: kind, digits before and after the decimal point.

    A NamedTuple rather than a dataclass: layouts are compared on every update, and tuple
    equality is the fastest comparison Python has.
    """

    kind: FieldKind
    int_digits: int
    frac_digits: int = 0


#: Value step of one second per field kind (0: plain numbers have no time step).
UNITS_PER_SECOND = {FieldKind.NUMBER: 0, FieldKind.TIME_SW: 2, FieldKind.TIME_PLAIN: 1}


@dataclass(frozen=True, slots=True)
class Layout:
    """Everything but the values: `texts[i]` precedes field i, `texts[-1]` follows the last.

    `order` lists field indices most-volatile first (the codec's bitmap order) and `clock` is
    the index of the meter clock (`0-0:1.0.0`), whose expected change is one interval, or None.
    Both are derived from `texts` and `formats`, so equal layouts have equal orders.
    """

    texts: tuple[bytes, ...]
    formats: tuple[FieldFormat, ...]
    order: tuple[int, ...]
    clock: int | None


@dataclass(frozen=True, slots=True)
class Tokens:
    """A telegram (or its CRC-covered part) split into layout and values."""

    layout: Layout
    values: tuple[int, ...]


# A bracketed value that may be a field: a 12-digit timestamp with S/W, or digits with an
# optional decimal part; it must fill the bracket up to ')' or the unit's '*'.
_FIELD_RE = re.compile(rb"\((?:(\d{12})([SW])|(\d+)(?:\.(\d+))?)(?=[*)])")
_OBIS_RE = re.compile(rb"(\d+)-\d+:(\d+)\.(\d+)\.\d+")
_CLOCK_OBIS = b"0-0:1.0.0("
_MEDIUM_ELECTRICITY = 1

# Electricity (OBIS medium A = 1) ranks by value group D: 7 instantaneous values, 8 registers,
# 4 average demand, 6 maximum demand. Other media rank by value group C: 24 is an M-Bus reading
# (gas, water, heat). Everything else (ids, tariff, counters, logs) ranks last.
_RANK_BY_D = {7: 0, 4: 1, 6: 1, 8: 1}
_RANK_BY_C = {24: 1}
_RANK_CLOCK = -1
_RANK_OTHER = 2


def has_meter_clock(telegram: bytes) -> bool:
    """Whether the telegram carries the meter's timestamp (DSMR 4+, e-MUCS), which a meter never
    repeats: two identical telegrams with a clock are one telegram sent twice. (Both link ends
    decide this the same way: the transmitter does not resend such a copy, the receiver does
    not deliver it twice.)"""
    return b"\n" + _CLOCK_OBIS in telegram


def _line_rank(text: bytes, start: int) -> int:
    """Volatility rank of the fields on the line at `start`, from the OBIS code that opens it."""
    if text.startswith(_CLOCK_OBIS, start):
        return _RANK_CLOCK
    match = _OBIS_RE.match(text, start)
    if match is None:
        return _RANK_OTHER
    medium, group_c, group_d = (int(group) for group in match.groups())
    if medium == _MEDIUM_ELECTRICITY:
        return _RANK_BY_D.get(group_d, _RANK_OTHER)
    return _RANK_BY_C.get(group_c, _RANK_OTHER)


def _seconds(digits: bytes) -> int | None:
    """Seconds since 2000-01-01 of a YYMMDDhhmmss timestamp, or None when it is not a date."""
    try:
        stamp = datetime(
            2000 + int(digits[0:2]),
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
        )
    except ValueError:
        return None
    return int((stamp - _EPOCH).total_seconds())


def _timestamp_digits(seconds: int) -> bytes:
    if not 0 <= seconds < _LAST_SECOND:
        raise RenderError(f"timestamp {seconds} s is outside 2000-2099")
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%y%m%d%H%M%S").encode("ascii")


def tokenize(text: bytes) -> Tokens:
    """Split `text` into layout and values; `render(tokens.layout, tokens.values) == text`."""
    texts: list[bytes] = []
    formats: list[FieldFormat] = []
    values: list[int] = []
    ranks: list[int] = []
    clock: int | None = None
    cursor = 0
    line_start = -1
    line_rank = _RANK_OTHER
    for match in _FIELD_RE.finditer(text):
        parsed = _parse_field(match)
        if parsed is None:
            continue
        start = match.start()
        this_line = text.rfind(b"\n", 0, start) + 1
        if this_line != line_start:
            line_start = this_line
            if text.startswith(b"(", line_start) and ranks:
                # DSMR 2.2/3 print the gas reading on a continuation line: it keeps the rank of
                # the line before.
                line_rank = ranks[-1]
            else:
                line_rank = _line_rank(text, line_start)
        fmt, value = parsed
        texts.append(text[cursor : start + 1])
        cursor = match.end()
        rank = line_rank
        if rank == _RANK_CLOCK:
            if clock is None and fmt.kind is not FieldKind.NUMBER:
                clock = len(formats)
            else:
                rank = 0
        formats.append(fmt)
        values.append(value)
        ranks.append(rank)
    texts.append(text[cursor:])
    order = tuple(sorted(range(len(formats)), key=ranks.__getitem__))
    layout = Layout(texts=tuple(texts), formats=tuple(formats), order=order, clock=clock)
    return Tokens(layout=layout, values=tuple(values))


def _parse_field(match: re.Match[bytes]) -> tuple[FieldFormat, int] | None:
    """The format and value of a bracketed candidate, or None when it must stay text."""
    stamp, suffix, integer, fraction = match.groups()
    if stamp is not None:
        seconds = _seconds(stamp)
        if seconds is None:
            return None
        return FieldFormat(FieldKind.TIME_SW, 12), seconds * 2 + (suffix == b"S")
    assert integer is not None
    frac = fraction or b""
    if len(integer) + len(frac) > MAX_FIELD_DIGITS:
        return None
    if fraction is None and len(integer) == 12:
        seconds = _seconds(integer)
        if seconds is not None:
            return FieldFormat(FieldKind.TIME_PLAIN, 12), seconds
    return FieldFormat(FieldKind.NUMBER, len(integer), len(frac)), int(integer + frac)


def render_field(fmt: FieldFormat, value: int) -> bytes:
    """The printed digits of one field; RenderError when `value` cannot be printed in `fmt`."""
    if fmt.kind is FieldKind.NUMBER:
        width = fmt.int_digits + fmt.frac_digits
        if not 0 <= value < _POWERS_OF_TEN[width]:
            raise RenderError(f"value {value} does not fit {width} digits")
        digits = b"%0*d" % (width, value)
        if fmt.frac_digits:
            return digits[: fmt.int_digits] + b"." + digits[fmt.int_digits :]
        return digits
    if fmt.kind is FieldKind.TIME_SW:
        if value < 0:
            raise RenderError(f"timestamp value {value} is negative")
        return _timestamp_digits(value >> 1) + (b"S" if value & 1 else b"W")
    return _timestamp_digits(value)


_POWERS_OF_TEN = tuple(10**n for n in range(MAX_FIELD_DIGITS + 1))


def render(layout: Layout, values: tuple[int, ...] | list[int]) -> bytes:
    """Rebuild the bytes from a layout and one value per field (RenderError if one cannot fit)."""
    if len(values) != len(layout.formats):
        raise RenderError(f"{len(values)} values for {len(layout.formats)} fields")
    texts = layout.texts
    parts: list[bytes] = []
    for index, (fmt, value) in enumerate(zip(layout.formats, values, strict=True)):
        parts.append(texts[index])
        parts.append(render_field(fmt, value))
    parts.append(texts[-1])
    return b"".join(parts)
