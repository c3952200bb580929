"""DSMR/e-MUCS/ESMR telegram parsing: bytes -> `Telegram`, driven by the OBIS table.

The parser knows line *shapes* (value kinds), not meters: which shape a line has comes from
`p1lora.common.obis.OBIS_TABLE`. That is how one parser reads Dutch DSMR 2.2-5, Belgian
e-MUCS, Luxembourg Smarty, Swedish, Austrian, Hungarian and German (EasyMeter) telegrams.

Rules, in the order a user would ask about them:

* Nothing is dropped. A line the table does not know is kept with its OBIS code and raw text
  (and a best-effort value); a known line whose value cannot be read keeps its key, gets value
  None and a warning (once per code and problem, not every second).
* Values keep the meter's digits: numbers are `Decimal`s straight from the text.
* Timestamps become timezone-aware (`p1lora.common.dsmr_time`); garbage becomes None.
* M-Bus readings get their key from their channel's device type (`gas_reading`,
  `water_reading` ...), as Home Assistant's DSMR integration names them.

It is fast because it runs on a Pi every second next to the link: one dict look-up per line
finds its table row, the common numeric shape is a single precompiled regex match, and the CRC
(when the framer has not already checked it) uses the two-bytes-per-step table. The benchmark
(`p1-lora bench parse`) compares it with dsmr_parser.
"""

from __future__ import annotations

import logging
import re
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from p1lora.common.dsmr_time import parse_timestamp
from p1lora.common.framing import CrcCheck, crc_check_at, excerpt
from p1lora.common.obis import (
    BILLING_SNAPSHOT_SPEC,
    KNOWN_CODES,
    OBIS_TABLE,
    SensorSpec,
    ValueKind,
    lookup_code,
    reading_spec,
)
from p1lora.common.telegram import DataObject, ProfileEntry, Telegram, Value
from p1lora.common.warn_once import WarnOnce

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

__all__ = ["TelegramParseError", "decode_text", "parse_telegram"]

logger = logging.getLogger(__name__)


class TelegramParseError(ValueError):
    """The input is not a P1 telegram at all (no `/` header or no `!` end marker)."""


# A number with an optional unit, the whole value part of a line: `(000123.456*kWh)`.
_NUMBER_RE = re.compile(r"\((-?\d+(?:\.\d+)?)(?:\*([^()]*))?\)")
_INTEGER_RE = re.compile(r"\((-?\d+)(?:\*([^()]*))?\)")
_SINGLE_RE = re.compile(r"\(([^()]*)\)")
_GROUP_RE = re.compile(r"\(([^()]*)\)")
# `(TST)(value*unit)`: M-Bus readings and the Belgian month peak. The value may be empty.
_TIMESTAMPED_RE = re.compile(r"\(([^()]*)\)\((-?\d+(?:\.\d+)?)?(?:\*([^()]*))?\)")
_NUMBER_TEXT_RE = re.compile(r"(-?\d+(?:\.\d+)?)(?:\*(.*))?")
_DIGITS_AND_POINT = "0123456789."
_DEVICE_TYPE_SPEC = OBIS_TABLE["0-n:24.1.0"]
# Code as written -> (row, channel, key, kind): the parse loop's one look-up per line.
_FAST_CODES: dict[str, tuple[SensorSpec, int | None, str, ValueKind]] = {
    code: (info.spec, info.channel, info.spec.key, info.spec.kind)
    for code, info in KNOWN_CODES.items()
    if info.spec is not None
}
_HEX_RE = re.compile(r"(?:[0-9A-Fa-f]{2})+")

# Warn once per (code, problem); bounded so that arbitrary input cannot grow memory.
_WARN_LIMIT = 256
_warned = WarnOnce(logger, _WARN_LIMIT)


def _warn(code: str, problem: str, line: str) -> None:
    # The line is meter text, maybe noise: quoted escaped and cut short (`excerpt`).
    _warned(
        (code, problem),
        "%s: %s in '%s'; value kept as null with its raw text",
        excerpt(code),
        problem,
        excerpt(line, 80),
    )


class _UnreadableError(Exception):
    """A value part that does not have the shape its table row says (internal)."""


def decode_text(text: str) -> str:
    """Decode a hex-encoded text message; text that is not hex is returned as it is.

    Messages are UTF-8 when they decode as such, else Latin-1 (every byte maps to one
    character, so nothing is lost).
    """
    if not _HEX_RE.fullmatch(text):
        return text
    data = bytes.fromhex(text)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def _number(text: str) -> tuple[Decimal | None, str | None]:
    if not text:
        return None, None
    match = _NUMBER_TEXT_RE.fullmatch(text)
    if match is None:
        raise _UnreadableError("not a number")
    value, unit = match.groups()
    return Decimal(value), unit or None


# -- one reader per value kind: (line, index of '(') -> (value, unit, timestamp) -------------

_Read = tuple[Value, "str | None", "datetime | None"]


def _read_number(line: str, p: int) -> _Read:
    match = _NUMBER_RE.fullmatch(line, p)
    if match is None:
        if line.endswith("()"):
            return None, None, None
        raise _UnreadableError("not a number")
    value, unit = match.groups()
    return Decimal(value), unit or None, None


def _read_integer(line: str, p: int) -> _Read:
    match = _INTEGER_RE.fullmatch(line, p)
    if match is None:
        if line.endswith("()"):
            return None, None, None
        raise _UnreadableError("not a whole number")
    value, unit = match.groups()
    return int(value), unit or None, None


def _single(line: str, p: int) -> str:
    match = _SINGLE_RE.fullmatch(line, p)
    if match is None:
        raise _UnreadableError("not one value in parentheses")
    return match.group(1)


def _read_string(line: str, p: int) -> _Read:
    match = _SINGLE_RE.fullmatch(line, p)
    # Identifiers are kept as printed; anything odd is still text, so keep all of it.
    value = line[p + 1 : -1] if match is None else match.group(1)
    return value or None, None, None


def _read_text(line: str, p: int) -> _Read:
    value = _single(line, p)
    return (decode_text(value) if value else None), None, None


def _read_timestamp(line: str, p: int) -> _Read:
    return parse_timestamp(_single(line, p)), None, None


def _read_timestamped(line: str, p: int) -> _Read:
    match = _TIMESTAMPED_RE.fullmatch(line, p)
    if match is None:
        raise _UnreadableError("not (timestamp)(value*unit)")
    stamp, value, unit = match.groups()
    return (
        None if value is None else Decimal(value),
        unit or None,
        parse_timestamp(stamp),
    )


def _read_event_log(line: str, p: int) -> _Read:
    groups = _GROUP_RE.findall(line, p)
    if not groups or groups == [""]:
        return [], None, None
    count_text = groups[0]
    if not count_text.isdigit():
        raise _UnreadableError("event log without an entry count")
    pairs = groups[2:]
    entries: list[ProfileEntry] = []
    unit = None
    for index in range(0, len(pairs) - 1, 2):
        stamp, value_text = pairs[index], pairs[index + 1]
        value_part, _, unit_part = value_text.partition("*")
        value: int | str | None
        value = int(value_part) if value_part.isdigit() else (value_part or None)
        unit = unit_part or unit
        entries.append(ProfileEntry(parse_timestamp(stamp), value, unit_part or None))
    if int(count_text) != len(entries) or len(pairs) % 2:
        _warn(
            line[:p], f"event log says {int(count_text)} entries but has {len(pairs) / 2:g}", line
        )
    return entries, unit, None


def _read_billing_history(line: str, p: int) -> _Read:
    groups = _GROUP_RE.findall(line, p)
    if not groups or groups == [""]:
        return [], None, None
    entries: list[ProfileEntry] = []
    unit = None
    head = groups[0]
    if head.isdigit() and len(head) <= 2:
        # Belgian peak history: (count)(id)(id) then (month)(when)(value*unit) per month.
        triples = groups[3:]
        count = int(head)
        for index in range(0, len(triples) - 2, 3):
            value, entry_unit = _number(triples[index + 2])
            unit = unit or entry_unit
            entries.append(
                ProfileEntry(
                    parse_timestamp(triples[index + 1]),
                    value,
                    entry_unit,
                    period_start=parse_timestamp(triples[index]),
                )
            )
        if count != len(entries) or len(triples) % 3:
            _warn(line[:p], f"history says {count} months but has {len(triples) / 3:g}", line)
        return entries, unit, None
    # Hungarian snapshot: (time of the snapshot)(register*unit)(register*unit)...
    snapshot = parse_timestamp(head)
    for text in groups[1:]:
        value, entry_unit = _number(text)
        entries.append(ProfileEntry(None, value, entry_unit, period_start=snapshot))
    return entries, None, snapshot


def _is_snapshot(line: str, p: int) -> bool:
    """Whether a `0-0:98.1.0` line is the Hungarian snapshot (it starts with a timestamp, the
    Belgian peak history with a month count of one or two digits)."""
    match = _GROUP_RE.match(line, p)
    if match is None:
        return False
    head = match.group(1)
    return bool(head) and not (head.isdigit() and len(head) <= 2)


def _read_number_list(line: str, p: int) -> _Read:
    values: list[Decimal] = []
    unit = None
    for text in _GROUP_RE.findall(line, p):
        value, entry_unit = _number(text)
        if value is not None:
            values.append(value)
        unit = unit or entry_unit
    return values, unit, None


def _read_unknown(line: str, p: int) -> _Read:
    """Best effort for lines the table does not know: one number, one string, or all groups."""
    groups = _GROUP_RE.findall(line, p)
    if len(groups) == 1:
        text = groups[0]
        match = _NUMBER_TEXT_RE.fullmatch(text)
        if match is not None:
            value, unit = match.groups()
            return Decimal(value), unit or None, None
        return text or None, None, None
    if not groups:
        return line[p:] or None, None, None
    return list(groups), None, None


#: Value kind -> reader. NUMBER is also inlined in the parse loop (it is most lines).
_READERS: dict[ValueKind, Callable[[str, int], _Read]] = {
    ValueKind.NUMBER: _read_number,
    ValueKind.INTEGER: _read_integer,
    ValueKind.STRING: _read_string,
    ValueKind.TEXT: _read_text,
    ValueKind.TIMESTAMP: _read_timestamp,
    ValueKind.TIMESTAMPED_NUMBER: _read_timestamped,
    ValueKind.EVENT_LOG: _read_event_log,
    ValueKind.BILLING_HISTORY: _read_billing_history,
    ValueKind.NUMBER_LIST: _read_number_list,
}


def _read_legacy_mbus(line: str, p: int) -> _Read:
    """DSMR 2.2/3 gas: `(TST)(00)(60)(1)(0-n:24.2.1)(m3)`, then `(reading)` on the next line.

    The parser hands both lines joined by CRLF (see `_join_continuations`).
    """
    first, _, continuation = line.partition("\r\n")
    groups = _GROUP_RE.findall(first, p)
    if len(groups) < 6:
        raise _UnreadableError("not the six-field DSMR 2.2 form")
    unit = groups[5] or None
    value = None
    if continuation:
        value, continued_unit = _number(_single(continuation.split("\r\n")[0], 0))
        unit = continued_unit or unit
    return value, unit, parse_timestamp(groups[0])


_READERS[ValueKind.LEGACY_MBUS] = _read_legacy_mbus

_BAD_VALUE = (_UnreadableError, ArithmeticError, ValueError)


def _read_value(kind: ValueKind, code: str, line: str, p: int) -> _Read:
    """Read the value of a known line; None (with a warning) when it has another shape."""
    try:
        return _READERS[kind](line, p)
    except _BAD_VALUE as exc:
        problem = str(exc) or type(exc).__name__
    stripped = line.rstrip()
    if stripped != line:
        # Trailing blanks are a harmless quirk of some meters.
        try:
            return _READERS[kind](stripped, p)
        except _BAD_VALUE:
            pass
    _warn(code, problem, line)
    return None, None, None


def _join_continuations(lines: list[str]) -> list[str]:
    """Glue lines that start with `(` to the line before (the DSMR 2.2 gas reading)."""
    joined: list[str] = []
    for line in lines:
        if line.startswith("(") and joined and joined[-1]:
            joined[-1] = f"{joined[-1]}\r\n{line}"
        else:
            joined.append(line)
    return joined


def _split_lines(body: str) -> list[str]:
    # CRLF is the norm; LF-only text (copied from a web page) is accepted too.
    lines = body.split("\r\n")
    if body.count("\n") == len(lines) - 1:
        return lines
    return body.replace("\r\n", "\n").split("\n")


def parse_telegram(raw: bytes, crc: CrcCheck | None = None) -> Telegram:  # noqa: C901, PLR0912, PLR0915 - the parser's hot loop: the common line shapes are inlined fast paths (BENCHMARKS.md section 1)
    """Parse one telegram (`/` .. `!` [CRC]), e.g. `FramedTelegram.raw`.

    Pass the framer's `crc` to skip computing it again. The CRC result is reported in
    `Telegram.crc`; a failing CRC does not stop parsing (callers decide what to trust).
    Bytes before the `/` are ignored. Raises `TelegramParseError` only when there is no
    telegram at all (no `/` header, or no `!` end marker); a bad line never raises.
    """
    start = raw.find(b"/")
    if start < 0:
        raise TelegramParseError("no '/' header: this is not a P1 telegram")
    text = raw.decode("latin-1")
    bang = text.rfind("\n!", start)
    if bang < 0:
        raise TelegramParseError("no '!' end marker: the telegram is incomplete")
    if crc is None:
        crc = crc_check_at(raw, start, bang + 1)
    header_end = text.find("\n", start, bang + 1)
    header = text[start + 1 : header_end].rstrip("\r")
    body = text[header_end + 1 : bang + 1]
    lines = _split_lines(body)
    if "\n(" in body:
        lines = _join_continuations(lines)

    objects: list[DataObject] = []
    append = objects.append
    known = _FAST_CODES.get
    number_kind = ValueKind.NUMBER
    integer_kind = ValueKind.INTEGER
    string_kind = ValueKind.STRING
    timestamp_kind = ValueKind.TIMESTAMP
    text_kind = ValueKind.TEXT
    device_type_spec = _DEVICE_TYPE_SPEC
    device_types: dict[int | None, int] = {}
    readings: list[DataObject] = []
    for line in lines:
        p = line.find("(")
        if p <= 0:
            if line:
                # No OBIS code: a stray line; keep it whole.
                append(DataObject("", None, line, None, None, None, line))
            continue
        code = line[:p]
        row = known(code)
        if row is None:
            spec, channel, _ = lookup_code(code)
            if spec is None:
                value, unit, stamp = _read_unknown(line, p)
                append(DataObject(code, None, value, unit, channel, stamp, line))
                continue
            key, kind = spec.key, spec.kind
        else:
            spec, channel, key, kind = row
        # Fast paths for the two shapes most lines have; anything unusual (negative numbers,
        # units on counters, blanks) falls through to the general readers below.
        if line[-1] == ")":
            inner = line[p + 1 : -1]
            if kind is number_kind:
                value_text, _, unit = inner.partition("*")
                if not value_text.strip(_DIGITS_AND_POINT) and ")" not in unit:
                    try:
                        number = Decimal(value_text)
                    except InvalidOperation:
                        pass
                    else:
                        append(
                            DataObject(code, key, number, unit or None, channel, None, line, spec)
                        )
                        continue
            elif "(" not in inner and ")" not in inner:
                # One group: counters, identifiers, the meter's clock, text messages.
                if kind is integer_kind:
                    if inner.isdigit():
                        try:
                            integer = int(inner)
                        except ValueError:
                            pass
                        else:
                            append(DataObject(code, key, integer, None, channel, None, line, spec))
                            if spec is device_type_spec:
                                device_types.setdefault(channel, integer)
                            continue
                elif kind is string_kind:
                    append(DataObject(code, key, inner or None, None, channel, None, line, spec))
                    continue
                elif kind is timestamp_kind:
                    stamp = parse_timestamp(inner)
                    append(DataObject(code, key, stamp, None, channel, None, line, spec))
                    continue
                elif kind is text_kind:
                    text_value = decode_text(inner) if inner else None
                    append(DataObject(code, key, text_value, None, channel, None, line, spec))
                    continue
        if kind is ValueKind.BILLING_HISTORY and _is_snapshot(line, p):
            spec, key = BILLING_SNAPSHOT_SPEC, BILLING_SNAPSHOT_SPEC.key
        value, unit, stamp = _read_value(kind, code, line, p)
        obj = DataObject(code, key, value, unit, channel, stamp, line, spec)
        append(obj)
        if key == "mbus_meter_reading":
            readings.append(obj)
        elif spec is device_type_spec and isinstance(value, int):
            device_types.setdefault(channel, value)
    for obj in readings:
        # Name each M-Bus reading after its channel's device type (`gas_reading` ...).
        resolved = reading_spec(_spec_of(obj), device_types.get(obj.channel))
        obj.spec = resolved
        obj.key = resolved.key
    return Telegram(header, crc, objects)


def _spec_of(obj: DataObject) -> SensorSpec:
    """The table row of a known object (internal: readings always have one)."""
    assert obj.spec is not None
    return obj.spec
