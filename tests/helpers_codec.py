"""Helpers for the codec tests: evolving telegram streams from the fixtures and a lossy link model.

The streams are built with plain regular expressions on the telegram text, independently of the
codec's own tokenizer, so that a tokenizer bug cannot hide itself by generating only what it
understands.
"""

from __future__ import annotations

import random
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from p1lora.common.codec import CodecError, decode_update, encode_update, telegram_id
from p1lora.common.crc16 import crc16_arc

from .conftest import telegram_bytes

# A bracketed decimal number followed by a unit: "(001581.123*kWh)".
_NUMBER = re.compile(rb"\((\d+)(?:\.(\d+))?(?=\*)")
_LINE_OBIS = re.compile(rb"^(\d+)-(\d+):(\d+)\.(\d+)\.(\d+)")
_STAMP = re.compile(rb"\((\d{12})([SW])\)")
_CRC_TAIL = re.compile(rb"!([0-9A-Fa-f]{0,4})(\r\n)?\Z")


def crc_style(telegram: bytes) -> tuple[bool, bool] | None:
    """(lower case, without leading zeros) as the telegram prints its CRC; None: no CRC."""
    match = _CRC_TAIL.search(telegram)
    if match is None or not match.group(1):
        return None
    digits = match.group(1)
    return digits != digits.upper(), len(digits) < 4


def recrc(telegram: bytes, style: tuple[bool, bool] | None = None) -> bytes:
    """Recompute the printed CRC in the meter's style (default: as printed); no CRC: unchanged."""
    match = _CRC_TAIL.search(telegram)
    if match is None or not match.group(1):
        return telegram
    lower, short = style or crc_style(telegram) or (False, False)
    body = telegram[: match.start() + 1]
    crc = crc16_arc(body)
    spec = ("x" if lower else "X") if short else ("04x" if lower else "04X")
    return body + format(crc, spec).encode() + (match.group(2) or b"")


def _number(match: re.Match[bytes], value: int) -> bytes:
    whole, frac = match.group(1), match.group(2) or b""
    width = len(whole) + len(frac)
    value = max(0, min(value, 10**width - 1))
    digits = b"%0*d" % (width, value)
    if frac:
        return b"(" + digits[: len(whole)] + b"." + digits[len(whole) :]
    return b"(" + digits


def _int_of(match: re.Match[bytes]) -> int:
    return int(match.group(1) + (match.group(2) or b""))


def _shift_stamp(stamp: bytes, seconds: int) -> bytes:
    when = datetime.strptime(stamp.decode(), "%y%m%d%H%M%S") + timedelta(seconds=seconds)
    return when.strftime("%y%m%d%H%M%S").encode()


@dataclass
class FixtureStream:
    """An evolving stream grown from one fixture telegram.

    Each `step(seconds)` advances the meter clock, lets instantaneous values (OBIS D = 7)
    wander, makes energy registers (D = 8) grow now and then, refreshes M-Bus readings every
    five minutes, and reprints the CRC in the meter's style (telegrams without CRC stay so).
    """

    telegram: bytes
    seed: int = 0
    elapsed: int = 0
    rng: random.Random = field(init=False)
    style: tuple[bool, bool] | None = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.style = crc_style(self.telegram)

    def step(self, seconds: int = 1) -> bytes:
        self.elapsed += seconds
        lines = self.telegram.split(b"\n")
        evolved = b"\n".join(self._evolve(line, seconds) for line in lines)
        self.telegram = recrc(evolved, self.style)
        return self.telegram

    def take(self, count: int, seconds: int = 1) -> list[bytes]:
        return [self.step(seconds) for _ in range(count)]

    def _evolve(self, line: bytes, seconds: int) -> bytes:
        obis = _LINE_OBIS.match(line)
        if obis is None:
            return line
        medium, group_c, group_d = int(obis.group(1)), int(obis.group(3)), int(obis.group(4))
        rng = self.rng
        if line.startswith(b"0-0:1.0.0("):
            return _STAMP.sub(
                lambda m: b"(" + _shift_stamp(m.group(1), seconds) + m.group(2) + b")", line
            )
        if medium == 1 and group_d == 7 and rng.random() < 0.7:
            return _NUMBER.sub(
                lambda m: _number(m, _int_of(m) + rng.randint(-12, 12)), line, count=1
            )
        if medium == 1 and group_d == 8 and rng.random() < 0.15 * seconds:
            return _NUMBER.sub(lambda m: _number(m, _int_of(m) + rng.randint(1, 3)), line, count=1)
        if group_c == 24 and self.elapsed % 300 < seconds:
            line = _STAMP.sub(
                lambda m: b"(" + _shift_stamp(m.group(1), 300) + m.group(2) + b")", line
            )
            return _NUMBER.sub(lambda m: _number(m, _int_of(m) + rng.randint(0, 40)), line)
        return line


def fixture_stream(name: str, count: int, *, seed: int = 0, seconds: int = 1) -> list[bytes]:
    """`count` telegrams evolving from fixture `name`, starting with the fixture itself."""
    stream = FixtureStream(telegram_bytes(name), seed=seed)
    return [telegram_bytes(name), *stream.take(count - 1, seconds)]


def with_text_message(telegram: bytes, message: str) -> bytes:
    """The telegram with a text message in `0-0:96.13.0`, CRC reprinted."""
    text = b"0-0:96.13.0(" + message.encode().hex().upper().encode() + b")"
    assert b"0-0:96.13.0()" in telegram
    return recrc(telegram.replace(b"0-0:96.13.0()", text, 1))


@dataclass
class LinkResult:
    """What a lossy link run produced (see `run_lossy_link`)."""

    delivered: int = 0
    wrong: int = 0
    key_requests: int = 0
    payload_sizes: list[int] = field(default_factory=list)


def run_lossy_link(
    telegrams: list[bytes],
    rng: random.Random,
    *,
    frame_loss: float,
    ack_loss: float,
    keep: int = 4,
) -> LinkResult:
    """The link's use of the codec with random loss, as the link layer will do it.

    The transmitter encodes against the last telegram whose ack it received; the receiver keeps
    the last `keep` telegrams it delivered (a newer telegram with an id it already holds
    replaces the older one), acks each delivered telegram, and when it cannot decode it asks
    for a key (the transmitter then forgets its reference).
    """
    result = LinkResult()
    held: OrderedDict[int, bytes] = OrderedDict()
    reference: bytes | None = None
    for telegram in telegrams:
        payload = encode_update(telegram, reference)
        result.payload_sizes.append(len(payload))
        if rng.random() < frame_loss:
            continue
        try:
            rebuilt = decode_update(payload, held.get)
        except CodecError:
            result.key_requests += 1
            reference = None
            continue
        if rebuilt != telegram:
            result.wrong += 1
            continue
        result.delivered += 1
        ident = telegram_id(rebuilt)
        held.pop(ident, None)
        held[ident] = rebuilt
        while len(held) > keep:
            held.popitem(last=False)
        if rng.random() >= ack_loss:
            reference = telegram
    return result
