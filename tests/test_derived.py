"""Derived totals never silently leave out an unreadable register (a partial sum published as
`total_increasing` looks like a meter reset to Home Assistant)."""

from __future__ import annotations

import logging
from decimal import Decimal

import pytest

from p1lora.common import derived, parser
from p1lora.common.crc16 import crc16_arc
from p1lora.common.parser import parse_telegram
from p1lora.common.telegram import to_json_dict
from p1lora.common.warn_once import WarnOnce

from .helpers_telegrams import build_telegram, fixture, telegram_part

D = Decimal
HEADER = "ISK5\\2M550T-1012"

GOOD = (
    "1-0:1.8.1(000100.000*kWh)",
    "1-0:1.8.2(000200.000*kWh)",
    "1-0:2.8.1(000010.000*kWh)",
    "1-0:2.8.2(000020.000*kWh)",
    "1-0:1.7.0(01.500*kW)",
    "1-0:2.7.0(00.000*kW)",
)


@pytest.fixture(autouse=True)
def _fresh_warning_memory():
    derived._warned.clear()
    parser._warned.clear()


def _derived(*lines: str) -> derived.DerivedValues:
    # A valid CRC: the damage is in what the meter printed, not on the line.
    return parse_telegram(build_telegram(HEADER, lines, crc=True)).derived


def _replace(line: str) -> tuple[str, ...]:
    code = line.split("(", maxsplit=1)[0]
    return tuple(line if old.startswith(code + "(") else old for old in GOOD)


def test_all_readable_gives_every_value():
    values = _derived(*GOOD)
    assert values.total_energy_import == D("300.000")
    assert values.total_energy_export == D("30.000")
    assert values.net_energy == D("270.000")
    assert values.net_power == D("1.500")


def test_unreadable_import_tariff_nulls_import_total_and_net_energy(caplog):
    with caplog.at_level(logging.WARNING):
        values = _derived(*_replace("1-0:1.8.2(abc*kWh)"))
    assert values.total_energy_import is None  # not tariff 1 alone (100.000)
    assert values.net_energy is None
    assert values.total_energy_export == D("30.000")
    assert values.net_power == D("1.500")
    ours = [r for r in caplog.records if r.name == derived.logger.name]
    assert len(ours) == 1
    assert "total_energy_import" in ours[0].getMessage()
    assert "electricity_used_tariff_2" in ours[0].getMessage()


def test_the_warning_is_given_once_not_every_telegram(caplog):
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            _derived(*_replace("1-0:1.8.2(abc*kWh)"))
    assert len([r for r in caplog.records if r.name == derived.logger.name]) == 1


def test_empty_export_register_nulls_export_total_and_net_energy():
    values = _derived(*_replace("1-0:2.8.1()"))
    assert values.total_energy_export is None
    assert values.net_energy is None
    assert values.total_energy_import == D("300.000")


def test_unreadable_power_nulls_net_power_only():
    values = _derived(*_replace("1-0:2.7.0(x.000*kW)"))
    assert values.net_power is None
    assert values.net_energy == D("270.000")


def test_unreadable_total_register_next_to_readable_tariffs_does_not_matter():
    # Hungarian/Austrian meters print 1.8.0 and the tariffs; the totals come from the tariffs.
    values = _derived(*GOOD, "1-0:1.8.0(zzz*kWh)")
    assert values.total_energy_import == D("300.000")
    assert values.net_energy == D("270.000")


def test_unreadable_total_register_on_a_total_only_meter():
    values = _derived("1-0:1.8.0(00123.4x*kWh)", "1-0:2.8.0(000001.000*kWh)")
    assert values.total_energy_import is None
    assert values.net_energy is None
    assert values.total_energy_export == D("1.000")


def test_unreadable_register_on_an_mbus_channel_is_ignored():
    values = _derived(*GOOD, "0-1:24.2.1(200512134558S)(abc*m3)")
    assert values.total_energy_import == D("300.000")


def test_json_shows_null_totals():
    t = parse_telegram(build_telegram(HEADER, _replace("1-0:1.8.2(abc*kWh)"), crc=True))
    out = to_json_dict(t)["derived"]
    assert out["total_energy_import"]["value"] is None
    assert out["net_energy"]["value"] is None


def _eon_hu_with(*changes: tuple[bytes, bytes]) -> bytes:
    """The Hungarian E.ON fixture (1.8.0 *and* tariffs 1-4) with lines changed, CRC
    recomputed: the meter printed it so."""
    body = telegram_part("V5_EON_HU.txt")
    body = body[: body.rindex(b"!") + 1]
    for old, new in changes:
        assert body.count(old) == 1
        body = body.replace(old, new)
    return body + b"%04X\r\n" % crc16_arc(body)


GARBLED_T3 = (b"1-0:1.8.3(000000.000*kWh)", b"1-0:1.8.3(ab.cd*kWh)")


def test_an_unreadable_tariff_falls_back_to_the_meters_own_total(caplog):
    """V5_EON_HU prints 1-0:1.8.0 next to 1.8.1..1.8.4: with 1.8.3 garbled, the meter's own
    readable total is the import total (not None, not the sum of the other tariffs)."""
    good = parse_telegram(fixture("V5_EON_HU.txt")).derived
    assert good.total_energy_import == D("173.640")
    raw = _eon_hu_with(GARBLED_T3)
    telegram = parse_telegram(raw)
    assert telegram.crc is not None and telegram.crc.valid
    assert telegram.find_obis("1-0:1.8.3").value is None  # type: ignore[union-attr]
    with caplog.at_level(logging.WARNING):
        values = telegram.derived
    assert values.total_energy_import == D("173.640")  # 1-0:1.8.0
    assert values.total_energy_export == D("627.177")
    assert values.net_energy == D("173.640") - D("627.177")
    assert values.energy_unit == "kWh"
    assert not [r for r in caplog.records if r.name == derived.logger.name]


def test_an_unreadable_export_tariff_falls_back_to_the_meters_own_total():
    raw = _eon_hu_with((b"1-0:2.8.2(000225.348*kWh)", b"1-0:2.8.2()"))
    values = parse_telegram(raw).derived
    assert values.total_energy_export == D("627.177")  # 1-0:2.8.0
    assert values.net_energy == D("173.640") - D("627.177")


def test_no_fallback_when_the_meters_total_is_unreadable_too(caplog):
    raw = _eon_hu_with(GARBLED_T3, (b"1-0:1.8.0(000173.640*kWh)", b"1-0:1.8.0(0001x3.640*kWh)"))
    with caplog.at_level(logging.WARNING):
        values = parse_telegram(raw).derived
    assert values.total_energy_import is None  # not tariffs 1, 2 and 4 alone
    assert values.net_energy is None
    assert values.total_energy_export == D("627.177")
    ours = [r.getMessage() for r in caplog.records if r.name == derived.logger.name]
    assert len(ours) == 1 and "electricity_used_tariff_3" in ours[0]


def test_parser_and_derived_share_one_warn_once_helper():
    assert isinstance(derived._warned, WarnOnce) and isinstance(parser._warned, WarnOnce)


def test_warn_once_warns_first_then_debugs_and_stays_bounded(caplog):
    log = logging.getLogger("tests.warn_once")
    warn = WarnOnce(log, limit=2)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        for key in ("a", "a", "b", "c", "c"):
            warn(key, "problem %s", key)
    levels = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == log.name]
    assert levels == [
        (logging.WARNING, "problem a"),
        (logging.DEBUG, "problem a"),
        (logging.WARNING, "problem b"),
        (logging.WARNING, "problem c"),  # beyond the limit: not remembered (bounded memory)
        (logging.WARNING, "problem c"),
    ]
    assert len(warn) == 2 and "a" in warn and "c" not in warn
    warn.clear()
    assert len(warn) == 0
    with pytest.raises(ValueError, match="limit"):
        WarnOnce(log, limit=0)
