"""CRC-16/ARC: the check value of the catalogue and the fixtures' printed CRCs."""

from __future__ import annotations

from p1lora.common.crc16 import crc16_arc, crc16_arc_bytewise
from tests.conftest import telegram_bytes


def test_catalogue_check_value():
    # reveng's CRC catalogue: CRC-16/ARC check ("123456789") = 0xBB3D.
    assert crc16_arc(b"123456789") == 0xBB3D
    assert crc16_arc_bytewise(b"123456789") == 0xBB3D
    assert crc16_arc(b"") == 0


def test_fixture_crc_matches_printed_value():
    raw = telegram_bytes("V5.txt")
    bang = raw.index(b"!")
    assert f"{crc16_arc(raw[: bang + 1]):04X}" == raw[bang + 1 : bang + 5].decode()
