"""CRC-16/ARC as used by DSMR 4+ telegrams.

DSMR prints CRC-16/ARC (polynomial 0x8005 reflected = 0xA001, init 0, no final xor) over every
byte from '/' up to and including '!'. A 256-entry table makes it cheap enough to run on every
telegram in the reading loop and in the codec's end-to-end check.
"""

from __future__ import annotations

__all__ = ["crc16_arc"]


def _make_table() -> tuple[int, ...]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
        table.append(crc)
    return tuple(table)


_TABLE = _make_table()


def crc16_arc(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """Return the CRC-16/ARC of `data`; pass a previous result as `crc` to continue a running CRC."""
    table = _TABLE
    for byte in data:
        crc = (crc >> 8) ^ table[(crc ^ byte) & 0xFF]
    return crc
