"""The ESP32 "P1-LoRa" firmware's frames and meter values, ported from its source.

What travels over the air between the firmware's transmitter and receiver (`tools.esp32_firmware`
runs their state machines): a 4-byte header (network, message type, counter, payload length)
and a payload, sent with no payload CRC, no MAC and no encryption except for meter values. The
values are the transmitter's `meterData` array, filled line by line from each P1 telegram,
sent as little-endian thousandths and encrypted with AES-256-CBC under a fixed key and an
all-zero IV. Sources and their commits: see `tools.esp32_firmware`'s docstring (TX = the
transmitter's repository, RX = the receiver's).
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from enum import IntEnum

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

__all__ = [
    "MESSAGE_BYTES",
    "METER_KINDS",
    "NETWORK_NUM",
    "Header",
    "Kind",
    "MeterData",
    "Phases",
    "check_crc",
    "decrypt",
    "encrypt",
    "firmware_value",
    "frame",
    "reading_frame_bytes",
    "value_count",
]


class Phases(IntEnum):
    """`delayType` (TX DSMRtelegram.ino 3a12344:137-138): 1 once a telegram had 1-0:52.7.0."""

    SINGLE = 0
    THREE = 1


#: `networkNum` (TX .ino f2e5d06:13, RX .ino e0df6f8:38): frames for another network are dropped.
NETWORK_NUM = 125
#: Values per reading: 12 for single-phase/calibration frames, 24 for three-phase
#: (TX LoRaFuncs.ino f2e5d06:123-125); AES works on a 96-byte buffer (TX .ino f2e5d06:79).
SINGLE_PHASE_VALUES = 12
THREE_PHASE_VALUES = 24
AES_BUFFER_BYTES = 96
#: The key and IV: SHA-256 of the default `plaintextKey` (TX .ino f2e5d06:14, 107-116); the IV
#: is `iv2`, a global never written, so all zeros (TX LoRaFuncs.ino f2e5d06:145, RX LoRaFuncs.ino
#: e0df6f8:147).
_AES_KEY = hashlib.sha256(b"abcdefghijklmnop").digest()
_AES_IV = bytes(16)


class Kind(IntEnum):
    """Message types: the second byte of every frame."""

    CALIBRATION = 0  # TX LoRaFuncs.ino f2e5d06:284 (also every single-phase reading, see MeterData)
    SINGLE_PHASE = 1  # accepted by RX LoRaFuncs.ino e0df6f8:125, never sent by this transmitter
    THREE_PHASE = 3  # TX DSMRtelegram.ino 3a12344:139
    THREE_PHASE_GAS = 31  # :140
    THREE_PHASE_WATER = 32  # :141
    THREE_PHASE_GAS_WATER = 33  # :142
    CRC_ACK = 8  # RX LoRaFuncs.ino e0df6f8:268
    RESYNC = 24  # "restart sync ACK", TX LoRaFuncs.ino f2e5d06:207
    SYNC_REQUEST = 231  # "restart sync request", RX LoRaFuncs.ino e0df6f8:114
    STOP_SYNC = 85  # TX LoRaFuncs.ino f2e5d06:96
    STOP_SYNC_ACK = 93  # RX LoRaFuncs.ino e0df6f8:86
    START_SYNC = 170  # TX LoRaFuncs.ino f2e5d06:95
    START_SYNC_ACK = 178  # RX LoRaFuncs.ino e0df6f8:85


METER_KINDS = frozenset(
    {
        Kind.CALIBRATION,
        Kind.SINGLE_PHASE,
        Kind.THREE_PHASE,
        Kind.THREE_PHASE_GAS,
        Kind.THREE_PHASE_WATER,
        Kind.THREE_PHASE_GAS_WATER,
    }
)
#: Bytes on air per frame: 4 header bytes (network, type, counter, length) + payload.
MESSAGE_BYTES: dict[str, int] = {
    "START_SYNC": 4 + 4,  # TX LoRaFuncs.ino f2e5d06:92-107
    "STOP_SYNC": 4 + 3,
    "SYNC_ACK": 4 + 3,  # RX LoRaFuncs.ino e0df6f8:83-94 (no forced settings)
    "CRC_ACK": 4 + 4,  # RX LoRaFuncs.ino e0df6f8:266-280
    "RESYNC": 4,  # TX LoRaFuncs.ino f2e5d06:204-211
    "SYNC_REQUEST": 4,  # RX LoRaFuncs.ino e0df6f8:112-117
    "SINGLE_PHASE": 4 + 4 * SINGLE_PHASE_VALUES,  # 52 (calibration frames too)
    "THREE_PHASE": 4 + 4 * THREE_PHASE_VALUES,  # 100
}


# ---------------------------------------------------------------------------- meter values

#: `splitTelegram` (TX DSMRtelegram.ino 3a12344:22-135): OBIS key -> index in `meterData`.
_VALUE_INDEX: dict[str, int] = {
    "1-0:1.8.1": 0,
    "1-0:1.8.2": 1,
    "1-0:2.8.1": 2,
    "1-0:2.8.2": 3,
    "1-0:1.7.0": 4,
    "1-0:2.7.0": 5,
    "1-0:1.4.0": 6,
    "1-0:1.6.0": 7,  # timestamped: the value after the timestamp (lines 57-61)
    "1-0:32.7.0": 8,
    "1-0:31.7.0": 9,
    "1-0:21.7.0": 12,
    "1-0:41.7.0": 13,
    "1-0:61.7.0": 14,
    "1-0:22.7.0": 15,
    "1-0:42.7.0": 16,
    "1-0:62.7.0": 17,
    "1-0:52.7.0": 18,
    "1-0:72.7.0": 19,
    "1-0:51.7.0": 20,
    "1-0:71.7.0": 21,
}
#: Only seen, never parsed ("temporary implementation", DSMRtelegram.ino 3a12344:72-83).
_GAS_KEY = "0-1:24.2.3"
_WATER_KEY = "0-2:24.2.1"
#: Seen once, the meter is three-phase for good (DSMRtelegram.ino 3a12344:115-118).
_THREE_PHASE_KEY = "1-0:52.7.0"
#: `meterData` before any telegram (TX .ino f2e5d06:39-64).
_TEMPLATE = (
    (999999.999,) * 4
    + (99.999, 99.999, 999999.999, 999999.999, 999.99, 999.99, 999999.999, 999999.999)
    + (99.999, 999999.999, 999999.999, 99.999, 999999.999, 999999.999)
    + (999.99,) * 4
    + (0.0, 0.0)
)


def _f32(value: float) -> float:
    (out,) = struct.unpack("<f", struct.pack("<f", value))
    return float(out)


def _wire_value(value: float) -> int:
    """`unsigned long tempVar = meterData[i]*1000` (TX LoRaFuncs.ino f2e5d06:128): a float
    truncated to an integer of thousandths (negative values wrap, as the C conversion does
    on the ESP32)."""
    product = _f32(_f32(value) * 1000.0)
    return int(product) & 0xFFFFFFFF


def firmware_value(value: float) -> float:
    """What the receiver makes of `value`: thousandths back to a float
    (`recVar/1000.0` into a float, RX LoRaFuncs.ino e0df6f8:162-170)."""
    return _f32(_wire_value(value) / 1000.0)


@dataclass
class MeterData:
    """The transmitter's `meterData` array and meter-type flags, updated per telegram.

    The flags are globals that are only ever set (DSMRtelegram.ino 3a12344:76, 82, 118), so
    `kind` and `phases` follow the first telegram that had the key.
    """

    values: list[float] = field(default_factory=lambda: [_f32(v) for v in _TEMPLATE])
    #: The meter's own digits for the keys the last telegram had (index -> value).
    exact: dict[int, Decimal] = field(default_factory=dict)
    three_phase: bool = False
    gas: bool = False
    water: bool = False

    @property
    def phases(self) -> Phases:
        return Phases.THREE if self.three_phase else Phases.SINGLE

    @property
    def kind(self) -> Kind:
        """`meterType` (DSMRtelegram.ino 3a12344:137-143): only set for three-phase meters; a
        single-phase meter keeps the global's initial 0, the calibration type."""
        if not self.three_phase:
            return Kind.CALIBRATION
        if self.gas and self.water:
            return Kind.THREE_PHASE_GAS_WATER
        if self.gas:
            return Kind.THREE_PHASE_GAS
        if self.water:
            return Kind.THREE_PHASE_WATER
        return Kind.THREE_PHASE

    def split(self, raw: bytes) -> None:
        """`splitTelegram`: each line's key is the text before the first '(', its value the
        text between that '(' and the last ')'; a timestamped value keeps what follows the
        inner '(' (splitWithTimeAndUnit); the number is what precedes '*' (splitWithUnit)."""
        self.exact = {}
        for line in raw.decode("ascii", "replace").split("\n"):
            start, end = line.find("("), line.rfind(")")
            if start < 0:
                continue
            key, value = line[:start], line[start + 1 : end]
            self.gas |= key == _GAS_KEY
            self.water |= key == _WATER_KEY
            self.three_phase |= key == _THREE_PHASE_KEY
            index = _VALUE_INDEX.get(key)
            if index is None:
                continue
            if ")(" in value:
                value = value[value.index("(") + 1 :]
            number = value.split("*", 1)[0]
            try:
                exact = Decimal(number)
            except InvalidOperation:
                continue  # toFloat() would give 0.0: a line we cannot read counts as absent
            self.values[index] = _f32(float(exact))
            self.exact[index] = exact

    def plaintext(self, count: int) -> bytes:
        """The first `count` values as little-endian thousandths, zero-padded to the AES
        buffer (TX LoRaFuncs.ino f2e5d06:119-135)."""
        body = b"".join(_wire_value(v).to_bytes(4, "little") for v in self.values[:count])
        return body.ljust(AES_BUFFER_BYTES, b"\0")


def _cipher() -> Cipher[modes.CBC]:
    return Cipher(algorithms.AES(_AES_KEY), modes.CBC(_AES_IV))


def encrypt(plain: bytes) -> bytes:
    """AES-256-CBC over the whole 96-byte buffer (TX LoRaFuncs.ino f2e5d06:145-154)."""
    encryptor = _cipher().encryptor()
    return encryptor.update(plain) + encryptor.finalize()


def decrypt(cipher: bytes) -> bytes:
    """The receiver decrypts what it got (a multiple of 16 bytes: 48 or 96)."""
    decryptor = _cipher().decryptor()
    usable = len(cipher) - len(cipher) % 16
    return decryptor.update(cipher[:usable]) + decryptor.finalize()


def check_crc(plain: bytes) -> int:
    """`romCRC`: a CRC-32 of the first 8 plaintext bytes (TX LoRaFuncs.ino f2e5d06:156,
    RX LoRaFuncs.ino e0df6f8:176); any 32-bit check of those bytes behaves the same here."""
    return zlib.crc32(plain[:8])


def value_count(kind: Kind) -> int:
    """Values in a frame of `kind` (TX LoRaFuncs.ino f2e5d06:123-124, RX LoRaFuncs.ino
    e0df6f8:134-135)."""
    if kind in (Kind.CALIBRATION, Kind.SINGLE_PHASE):
        return SINGLE_PHASE_VALUES
    return THREE_PHASE_VALUES


def reading_frame_bytes(telegram: bytes) -> int:
    """Bytes on air of the reading the firmware sends for a meter that produced `telegram`."""
    meter = MeterData()
    meter.split(telegram)
    return 4 + 4 * value_count(meter.kind)


def frame(kind: Kind, counter: int, payload: bytes) -> bytes:
    """Header (network, type, counter, payload length) + payload."""
    return bytes((NETWORK_NUM, int(kind), counter & 0xFF, len(payload) & 0xFF)) + payload


@dataclass(frozen=True, slots=True)
class Header:
    network: int
    kind: int
    counter: int
    size: int
    payload: bytes

    @classmethod
    def parse(cls, data: bytes) -> Header | None:
        """The four header bytes and `size` payload bytes; `LoRa.read()` past the end gives
        -1, stored as 0xFF (TX .ino f2e5d06:176-204, RX .ino e0df6f8:290-335)."""
        if len(data) < 4:
            return None
        size = data[3]
        payload = data[4 : 4 + size].ljust(size, b"\xff")
        return cls(data[0], data[1], data[2], size, payload)
