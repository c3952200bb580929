"""The lossless telegram codec: each telegram as the change from one the receiver already holds.

A raw DSMR 5 telegram every second does not fit any legal airtime budget, but from one second to
the next only the clock, a few power/voltage/current digits and now and then an energy register
change. The transmitter therefore sends the *change* against the last telegram the receiver
acknowledged (both name it by its `telegram_id`), and the receiver rebuilds the new telegram byte
for byte. The meter's own CRC then proves the reconstruction end to end: it is carried, never
recomputed into the text, so it checks the rebuilt text against what the meter printed. Telegrams without a usable meter CRC
(DSMR 2.2/3, or anything that is not a CRC-valid telegram) carry an added CRC-16/ARC of all
their bytes instead. When there is no shared reference (start, after loss, after a reboot) a
*key* update compresses the whole telegram with the help of a preset dictionary of typical P1
text; it may be longer than one radio frame, and the link layer fragments it.

CRC-16/ARC is linear and starts from zero, so two different references with the same id (a
16-bit collision in the receiver's store) can rebuild a wrong telegram whose CRC still matches,
and leading NUL bytes never change it. Every payload therefore also carries a one-byte `tag`,
the low byte of the CRC-32 of the whole telegram: an independent check that such structured
errors pass only once in 256 times, for one byte of airtime.

How the encoder chooses (deterministically; same inputs, same bytes):

1. no usable reference: the smallest key: KEY_FIELDS (the telegram with every number zeroed,
   deflated with the preset dictionary, then the numbers as varints), KEY_DEFLATE or KEY_STORED;
2. reference with the same layout (`p1lora.common.codec_fields`: same text between the numbers,
   same number widths) and the same check mode: DELTA_FIELDS, a bitmap of the fields whose value
   differs from its prediction (unchanged; the meter clock one interval later) and a zig-zag
   varint delta for each; when that is unusually long, the other forms compete with it;
3. otherwise (a text message appeared, the power-failure log grew, a number gained a digit): the
   smallest of DELTA_DEFLATE (raw deflate with the preset dictionary plus the reference as
   `zdict`) and the keys; a key wins ties because it needs no reference.

Deflate output is tried with zlib's default and filtered strategies and the shorter kept; both
are plain raw deflate streams (wbits -15: no zlib header or Adler-32, the codec carries its own
checks), so the receiver does not need to know which.

Wire format, version 1 (a later version takes new kind numbers, so old receivers refuse it
cleanly instead of misreading it). Integers are big-endian; `varint` is unsigned LEB128 (7 bits per byte,
least significant group first, high bit set = more bytes follow); `zigzag` maps 0, -1, 1, -2 ...
to 0, 1, 2, 3 ... Every payload starts with a header:

| field  | size | present                               | meaning                               |
|--------|------|---------------------------------------|---------------------------------------|
| kind   | 1    | always                                | high nibble: kind; low nibble: flags  |
| ref_id | 2    | kinds 0x3, 0x4                        | `telegram_id` of the reference        |
| check  | 2    | kind 0x3; others with ADDED_CHECK     | see ADDED_CHECK                       |
| tag    | 1    | always                                | CRC-32 (zlib) of the telegram & 0xFF  |

followed by the body of its kind:

| kind | name          | body                                                                |
|------|---------------|---------------------------------------------------------------------|
| 0x1  | KEY_DEFLATE   | raw deflate of the telegram, preset dictionary `P1_DICTIONARY`     |
| 0x2  | KEY_STORED    | the telegram bytes                                                  |
| 0x3  | DELTA_FIELDS  | changed-field bitmap as one varint (bit i = field `order[i]` of the |
|      |               | reference's layout), then one zigzag varint per set bit, in bit     |
|      |               | order: new value - reference value - prediction                     |
| 0x4  | DELTA_DEFLATE | raw deflate of the telegram, zdict = P1_DICTIONARY + reference      |
| 0x5  | KEY_FIELDS    | raw deflate (preset dictionary) of the skeleton (the telegram with  |
|      |               | every field's value 0), then one varint per skeleton field in text  |
|      |               | order: numbers as is, timestamps zigzag(value - previous timestamp) |
| 0x0, 0x6-0xF | reserved: rejected (a newer format takes a new kind number)                 |

| flag bit | name        | meaning                                                            |
|----------|-------------|--------------------------------------------------------------------|
| 0 (0x01) | ADDED_CHECK | no usable meter CRC: `check` = CRC-16/ARC of the whole telegram;    |
|          |             | clear: the telegram ends `!XXXX` CRLF and that CRC proves it        |
| 1 (0x02) | CRC_LOWER   | DELTA_FIELDS with meter CRC: the meter prints its CRC in lower case |
| 2 (0x04) | CRC_SHORT   | DELTA_FIELDS with meter CRC: printed without leading zeros          |
| 3 (0x08) | STEP_10S    | DELTA_FIELDS: the clock's predicted step is 10 s instead of 1 s     |

Flags not listed for a kind must be zero. In DELTA_FIELDS `check` is the new telegram's
`telegram_id`. With a meter CRC the fields are those of the text through the `!`, and the rebuilt
telegram is that text, the carried CRC printed in the flagged style, and CRLF; the CRC is then
verified against the text. With ADDED_CHECK the fields are those of the whole telegram and
`check` is its CRC-16/ARC. The bitmap lists the meter clock first, then instantaneous values,
registers and the rest, so a typical DSMR 5 second needs one or two bitmap bytes.

Decoding is bounded: at most `MAX_TELEGRAM_BYTES` of output, inflate stops there, and every
failure (unknown kind or reference, truncation, trailing bytes, out-of-range value, check or tag
mismatch) raises `CodecError` and nothing else.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from functools import lru_cache

from p1lora.common.codec_dictionary import P1_DICTIONARY
from p1lora.common.codec_fields import (
    UNITS_PER_SECOND,
    FieldKind,
    RenderError,
    Tokens,
    render,
    tokenize,
)
from p1lora.common.crc16 import crc16_arc

__all__ = [
    "MAX_TELEGRAM_BYTES",
    "CodecError",
    "PayloadKind",
    "decode_update",
    "encode_update",
    "is_key_update",
    "payload_kind",
    "reference_id",
    "telegram_id",
]

logger = logging.getLogger(__name__)

#: Largest telegram the codec encodes or rebuilds. Real telegrams are 200-1500 bytes; the cap
#: bounds what a forged-but-authenticated or buggy payload can make the receiver inflate.
MAX_TELEGRAM_BYTES = 8192


class CodecError(ValueError):
    """Encoding or decoding failed: unknown reference, malformed payload, check mismatch.

    The message says what was wrong with the payload; it never contains telegram text.
    """


class PayloadKind(IntEnum):
    """The high nibble of a payload's first byte (see the module docstring's table)."""

    KEY_DEFLATE = 0x1
    KEY_STORED = 0x2
    DELTA_FIELDS = 0x3
    DELTA_DEFLATE = 0x4
    KEY_FIELDS = 0x5


_KEY_KINDS = frozenset({PayloadKind.KEY_DEFLATE, PayloadKind.KEY_STORED, PayloadKind.KEY_FIELDS})

_ADDED_CHECK = 0x01
_CRC_LOWER = 0x02
_CRC_SHORT = 0x04
_STEP_10S = 0x08

#: Which flags each kind may carry; anything else is rejected.
_ALLOWED_FLAGS = {
    PayloadKind.KEY_DEFLATE: _ADDED_CHECK,
    PayloadKind.KEY_STORED: _ADDED_CHECK,
    PayloadKind.DELTA_FIELDS: _ADDED_CHECK | _CRC_LOWER | _CRC_SHORT | _STEP_10S,
    PayloadKind.DELTA_DEFLATE: _ADDED_CHECK,
    PayloadKind.KEY_FIELDS: _ADDED_CHECK,
}

#: The clock's predicted step in seconds, by the STEP_10S flag (DSMR 5: 1 s; DSMR 4 and 2.2: 10 s).
_CLOCK_STEP_S = {0: 1, _STEP_10S: 10}

#: How meters print their CRC: style flags -> format spec of the 16-bit value.
_CRC_STYLES = {0: "04X", _CRC_LOWER: "04x", _CRC_SHORT: "X", _CRC_LOWER | _CRC_SHORT: "x"}

_METER_CRC_RE = re.compile(rb"!([0-9A-Fa-f]{1,4})\r\n\Z")
_CRLF = b"\r\n"

#: A DELTA_FIELDS payload longer than this (a long outage: many large deltas) also competes
#: with the deflate forms and the keys.
_FIELDS_WORTH_COMPARING = 40

_MAX_VARINT_BYTES = 10
_DEFLATE_LEVEL = 9
_DEFLATE_MEMLEVEL = 9
_DEFLATE_STRATEGIES = (zlib.Z_DEFAULT_STRATEGY, zlib.Z_FILTERED)


@dataclass(frozen=True, slots=True)
class _Analysis:
    """What the codec needs to know about one telegram (cached: references recur)."""

    ident: int
    #: True when the telegram ends `!XXXX` CRLF and that CRC is right: it proves the telegram.
    meter_crc: bool
    #: DELTA_FIELDS flags that reproduce how the CRC is printed (0 without a meter CRC).
    crc_style: int
    #: Low byte of the CRC-32 of the whole telegram.
    tag: int
    #: Tokens of what a delta rebuilds: through the '!' with a meter CRC, else everything.
    tokens: Tokens


def _crc_style(printed: bytes, value: int) -> int | None:
    """The style flags that reproduce `printed` from `value`, or None when none does."""
    text = printed.decode("ascii")
    for style, spec in _CRC_STYLES.items():
        if format(value, spec) == text:
            return style
    return None


def _tag(telegram: bytes) -> int:
    return zlib.crc32(telegram) & 0xFF


@lru_cache(maxsize=16)
def _analyse(telegram: bytes) -> _Analysis:
    match = _METER_CRC_RE.search(telegram)
    if match is not None and telegram.startswith(b"/"):
        body = telegram[: match.start() + 1]
        printed = int(match.group(1), 16)
        style = _crc_style(match.group(1), printed)
        if style is not None and crc16_arc(body) == printed:
            return _Analysis(printed, True, style, _tag(telegram), tokenize(body))
    return _Analysis(crc16_arc(telegram), False, 0, _tag(telegram), tokenize(telegram))


def telegram_id(telegram: bytes) -> int:
    """16-bit identity of a telegram: the meter's own CRC when it prints one, else CRC-16/ARC of
    the whole telegram. Both sides name references by this.

    "Prints one" means a complete P1 telegram, `/` ... `!XXXX` CRLF, whose CRC is right (1-4
    hex digits, either case). A telegram with a wrong CRC is named by the CRC of all its bytes,
    so the id always equals the check its payloads carry.
    """
    return _analyse(bytes(telegram)).ident


def payload_kind(payload: bytes) -> PayloadKind | None:
    """The kind of a payload, or None when it is empty or its kind byte is not valid."""
    if not payload:
        return None
    try:
        kind = PayloadKind(payload[0] >> 4)
    except ValueError:
        return None
    if payload[0] & 0x0F & ~_ALLOWED_FLAGS[kind]:
        return None
    return kind


def is_key_update(payload: bytes) -> bool:
    """True when the payload needs no reference (a key update).

    False for deltas and for payloads that are not well formed (`decode_update` rejects those).
    """
    return payload_kind(payload) in _KEY_KINDS


def reference_id(payload: bytes) -> int | None:
    """The `telegram_id` of the reference a delta needs; None for keys and malformed payloads."""
    kind = payload_kind(payload)
    if kind is None or kind in _KEY_KINDS or len(payload) < 3:
        return None
    return int.from_bytes(payload[1:3], "big")


# --- encoding -----------------------------------------------------------------------------


def _put_varint(out: bytearray, number: int) -> None:
    while number > 0x7F:
        out.append((number & 0x7F) | 0x80)
        number >>= 7
    out.append(number)


def _zigzag(number: int) -> int:
    return number << 1 if number >= 0 else ((-number) << 1) - 1


def _deflate(data: bytes, zdict: bytes) -> bytes:
    """Raw deflate with a preset dictionary: the shorter of the strategies tried."""
    outputs = []
    for strategy in _DEFLATE_STRATEGIES:
        compressor = zlib.compressobj(
            _DEFLATE_LEVEL, zlib.DEFLATED, -15, _DEFLATE_MEMLEVEL, strategy, zdict
        )
        outputs.append(compressor.compress(data) + compressor.flush())
    return min(outputs, key=len)


def _header(
    kind: PayloadKind, analysis: _Analysis, flags: int = 0, ref_id: int | None = None
) -> bytearray:
    """Kind byte, reference id (deltas), check (when carried) and tag of `analysis`."""
    if not analysis.meter_crc:
        flags |= _ADDED_CHECK
    out = bytearray(((kind << 4) | flags,))
    if ref_id is not None:
        out += ref_id.to_bytes(2, "big")
    if flags & _ADDED_CHECK or kind is PayloadKind.DELTA_FIELDS:
        out += analysis.ident.to_bytes(2, "big")
    out.append(analysis.tag)
    return out


def _key_values(tokens: Tokens) -> bytes:
    """KEY_FIELDS values: numbers as is, timestamps relative to the timestamp before them."""
    out = bytearray()
    previous_time = 0
    for fmt, value in zip(tokens.layout.formats, tokens.values, strict=True):
        if fmt.kind is FieldKind.NUMBER:
            _put_varint(out, value)
        else:
            _put_varint(out, _zigzag(value - previous_time))
            previous_time = value
    return bytes(out)


def _key_fields_body(telegram: bytes) -> bytes | None:
    """The KEY_FIELDS body, or None if the skeleton would not tokenize back to the same layout
    (by construction it always does; the check keeps a future tokenizer change honest)."""
    tokens = tokenize(telegram)
    skeleton = render(tokens.layout, [0] * len(tokens.values))
    if tokenize(skeleton).layout != tokens.layout:
        return None
    return _deflate(skeleton, P1_DICTIONARY) + _key_values(tokens)


def _keys(telegram: bytes, analysis: _Analysis) -> list[bytes]:
    """Every key form of `telegram`, the preferred first (min() keeps the first of equals)."""
    candidates = []
    fields = _key_fields_body(telegram)
    if fields is not None:
        candidates.append(bytes(_header(PayloadKind.KEY_FIELDS, analysis) + fields))
    deflated = _deflate(telegram, P1_DICTIONARY)
    candidates.append(bytes(_header(PayloadKind.KEY_DEFLATE, analysis) + deflated))
    candidates.append(bytes(_header(PayloadKind.KEY_STORED, analysis) + telegram))
    return candidates


def _delta_deflate(telegram: bytes, new: _Analysis, reference: bytes, ref: _Analysis) -> bytes:
    out = _header(PayloadKind.DELTA_DEFLATE, new, ref_id=ref.ident)
    out += _deflate(telegram, P1_DICTIONARY + reference)
    return bytes(out)


def _delta_fields(new: _Analysis, ref: _Analysis) -> bytes:
    """DELTA_FIELDS between two telegrams with equal layouts and check modes."""
    layout = ref.tokens.layout
    old_values, new_values = ref.tokens.values, new.tokens.values
    flags = new.crc_style
    predicted = [0] * len(old_values)
    if layout.clock is not None:
        units = UNITS_PER_SECOND[layout.formats[layout.clock].kind]
        if new_values[layout.clock] - old_values[layout.clock] == 10 * units:
            flags |= _STEP_10S
        predicted[layout.clock] = _CLOCK_STEP_S[flags & _STEP_10S] * units
    bits = 0
    deltas = bytearray()
    for position, field in enumerate(layout.order):
        delta = new_values[field] - old_values[field] - predicted[field]
        if delta:
            bits |= 1 << position
            _put_varint(deltas, _zigzag(delta))
    out = _header(PayloadKind.DELTA_FIELDS, new, flags, ref_id=ref.ident)
    _put_varint(out, bits)
    out += deltas
    return bytes(out)


def encode_update(telegram: bytes, reference: bytes | None) -> bytes:
    """The change from `reference` (the last telegram the receiver acknowledged) to `telegram`,
    or a compressed key telegram when reference is None. Deterministic.

    A reference longer than `MAX_TELEGRAM_BYTES` is ignored (a key is sent). Raises CodecError
    only for a telegram longer than `MAX_TELEGRAM_BYTES`, which no receiver would rebuild.
    """
    telegram = bytes(telegram)
    if len(telegram) > MAX_TELEGRAM_BYTES:
        raise CodecError(
            f"telegram of {len(telegram)} bytes exceeds the codec limit of {MAX_TELEGRAM_BYTES}"
        )
    new = _analyse(telegram)
    if reference is None or len(reference) > MAX_TELEGRAM_BYTES:
        return min(_keys(telegram, new), key=len)
    reference = bytes(reference)
    ref = _analyse(reference)
    candidates: list[bytes] = []
    if new.meter_crc == ref.meter_crc and new.tokens.layout == ref.tokens.layout:
        fields = _delta_fields(new, ref)
        if len(fields) <= _FIELDS_WORTH_COMPARING:
            return fields
        candidates.append(fields)
    else:
        logger.debug("layout differs from the reference: deflate update")
    # Keys first: on a tie the update that needs no reference wins (min keeps the first).
    candidates[:0] = _keys(telegram, new)
    candidates.append(_delta_deflate(telegram, new, reference, ref))
    return min(candidates, key=len)


# --- decoding -----------------------------------------------------------------------------


class _Reader:
    """Bounds-checked cursor over a payload; every shortfall is a CodecError."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    def uint(self, size: int, what: str) -> int:
        end = self.pos + size
        if end > len(self.data):
            raise CodecError(f"update truncated in its {what}")
        value = int.from_bytes(self.data[self.pos : end], "big")
        self.pos = end
        return value

    def varint(self, what: str, max_bytes: int = _MAX_VARINT_BYTES) -> int:
        data, pos = self.data, self.pos
        value = shift = 0
        for count in range(max_bytes):
            if pos >= len(data):
                raise CodecError(f"update truncated in a {what}")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                if byte == 0 and count > 0:
                    raise CodecError(f"over-long {what}")
                self.pos = pos
                return value
        raise CodecError(f"{what} longer than {max_bytes} bytes")

    def rest(self) -> bytes:
        return self.data[self.pos :]

    def expect_end(self) -> None:
        if self.pos != len(self.data):
            raise CodecError(f"{len(self.data) - self.pos} unexpected bytes after the update")


@dataclass(frozen=True, slots=True)
class _Header:
    kind: PayloadKind
    flags: int
    ref_id: int | None
    check: int | None
    tag: int


def _read_header(reader: _Reader) -> _Header:
    payload = reader.data
    kind = payload_kind(payload)
    if kind is None:
        if not payload:
            raise CodecError("empty update")
        raise CodecError(f"unknown update kind byte 0x{payload[0]:02X} (newer transmitter?)")
    flags = payload[0] & 0x0F
    reader.pos = 1
    ref_id = None if kind in _KEY_KINDS else reader.uint(2, "reference id")
    check = None
    if flags & _ADDED_CHECK or kind is PayloadKind.DELTA_FIELDS:
        check = reader.uint(2, "check")
    return _Header(kind, flags, ref_id, check, reader.uint(1, "tag"))


def _unzigzag(number: int) -> int:
    return -(number >> 1) - 1 if number & 1 else number >> 1


def _inflate(data: bytes, zdict: bytes, *, trailing: bool = False) -> tuple[bytes, bytes]:
    """Raw inflate that stops at MAX_TELEGRAM_BYTES and insists on one complete stream.

    Returns the output and the bytes after the stream, which must be empty unless `trailing`.
    """
    try:
        inflater = zlib.decompressobj(-15, zdict=zdict)
        out = inflater.decompress(data, MAX_TELEGRAM_BYTES + 1)
    except zlib.error as error:
        raise CodecError(f"corrupt deflate data: {error}") from None
    if len(out) > MAX_TELEGRAM_BYTES or inflater.unconsumed_tail:
        raise CodecError(f"update inflates beyond {MAX_TELEGRAM_BYTES} bytes")
    if not inflater.eof:
        raise CodecError("deflate data truncated")
    if inflater.unused_data and not trailing:
        raise CodecError(f"{len(inflater.unused_data)} unexpected bytes after the deflate data")
    return out, inflater.unused_data


def _verified(telegram: bytes, header: _Header) -> bytes:
    """Return `telegram` if every check holds: meter CRC or added check, and the tag."""
    if len(telegram) > MAX_TELEGRAM_BYTES:
        raise CodecError(f"rebuilt telegram exceeds {MAX_TELEGRAM_BYTES} bytes")
    analysis = _analyse(telegram)
    if not header.flags & _ADDED_CHECK:
        if not analysis.meter_crc:
            raise CodecError("rebuilt telegram fails its meter CRC")
    elif analysis.meter_crc or analysis.ident != header.check:
        raise CodecError("rebuilt telegram fails the end-to-end check")
    if header.check is not None and analysis.ident != header.check:
        raise CodecError("rebuilt telegram is not the one the transmitter named")
    if analysis.tag != header.tag:
        raise CodecError("rebuilt telegram fails its tag")
    return telegram


def _reference(ref_id: int, lookup: Callable[[int], bytes | None]) -> bytes:
    """The reference the receiver holds under `ref_id`, checked to really have that id."""
    held = lookup(ref_id)
    if held is None:
        raise CodecError(f"reference {ref_id:04X} is not held by the receiver")
    held = bytes(held)
    if len(held) > MAX_TELEGRAM_BYTES or _analyse(held).ident != ref_id:
        raise CodecError(f"the telegram held as reference {ref_id:04X} has a different id")
    return held


def _decode_fields(reader: _Reader, header: _Header, ref: _Analysis) -> bytes:
    """Rebuild a DELTA_FIELDS telegram (before its checks) from the reference's tokens."""
    meter_crc = not header.flags & _ADDED_CHECK
    if meter_crc != ref.meter_crc:
        raise CodecError("check mode differs from the reference's")
    if not meter_crc and header.flags & (_CRC_LOWER | _CRC_SHORT):
        raise CodecError("CRC style flags on a telegram without meter CRC")
    layout = ref.tokens.layout
    count = len(layout.order)
    bits = reader.varint("field bitmap", max(1, -(-count // 7)))
    if bits >> count:
        raise CodecError("field bitmap names fields the reference does not have")
    values = list(ref.tokens.values)
    if layout.clock is not None:
        units = UNITS_PER_SECOND[layout.formats[layout.clock].kind]
        values[layout.clock] += _CLOCK_STEP_S[header.flags & _STEP_10S] * units
    elif header.flags & _STEP_10S:
        raise CodecError("clock step flag on a reference without a clock")
    position = 0
    while bits:
        if bits & 1:
            values[layout.order[position]] += _unzigzag(reader.varint("field delta"))
        bits >>= 1
        position += 1
    reader.expect_end()
    try:
        content = render(layout, values)
    except RenderError as error:
        raise CodecError(f"field delta out of range: {error}") from None
    if not meter_crc:
        return content
    # The carried meter CRC goes back where the meter printed it; _verified then proves the
    # rebuilt text against it (the CRC is never computed into the text).
    assert header.check is not None
    style = _CRC_STYLES[header.flags & (_CRC_LOWER | _CRC_SHORT)]
    return content + format(header.check, style).encode("ascii") + _CRLF


def _decode_key_fields(data: bytes) -> bytes:
    """Rebuild a KEY_FIELDS telegram (before its checks): skeleton, then the values."""
    skeleton, rest = _inflate(data, P1_DICTIONARY, trailing=True)
    tokens = tokenize(skeleton)
    if any(tokens.values):
        raise CodecError("key skeleton carries values")
    reader = _Reader(rest)
    values = []
    previous_time = 0
    for fmt in tokens.layout.formats:
        if fmt.kind is FieldKind.NUMBER:
            values.append(reader.varint("field value"))
        else:
            previous_time += _unzigzag(reader.varint("timestamp"))
            values.append(previous_time)
    reader.expect_end()
    try:
        return render(tokens.layout, values)
    except RenderError as error:
        raise CodecError(f"key field out of range: {error}") from None


def decode_update(payload: bytes, lookup: Callable[[int], bytes | None]) -> bytes:
    """Rebuild the telegram byte for byte. `lookup(ref_id)` returns a reference telegram the
    receiver still holds (it keeps a few recent ones) or None. Raises CodecError when the
    reference is unknown or the end-to-end check fails; never returns a wrong telegram.

    `lookup` is called at most once, and only for deltas; its own exceptions propagate.
    """
    reader = _Reader(bytes(payload))
    header = _read_header(reader)
    kind = header.kind
    if kind is PayloadKind.KEY_STORED:
        telegram = reader.rest()
    elif kind is PayloadKind.KEY_DEFLATE:
        telegram = _inflate(reader.rest(), P1_DICTIONARY)[0]
    elif kind is PayloadKind.KEY_FIELDS:
        telegram = _decode_key_fields(reader.rest())
    else:
        assert header.ref_id is not None
        reference = _reference(header.ref_id, lookup)
        if kind is PayloadKind.DELTA_FIELDS:
            telegram = _decode_fields(reader, header, _analyse(reference))
        else:
            telegram = _inflate(reader.rest(), P1_DICTIONARY + reference)[0]
    return _verified(telegram, header)
