"""Who made the meter: the P1 header's flag id as a table.

A telegram starts with `/XXXZ<identification>` (IEC 62056-21): `XXX` is the manufacturer's
three-letter flag id, `Z` the baud-rate character (`5` on every DSMR meter) and the rest the
meter model. The third letter is lower case on meters that support a shorter reaction time
(`/ISk5...`), so look-ups ignore case. Grid operators sometimes brand the meters they buy
(`/FLU5` on Belgian Fluvius meters, `/Ene5` on Enexis' Sagemcom T211), so those are listed
too: the name is what Home Assistant shows as the device's manufacturer.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

__all__ = ["MANUFACTURERS", "MeterIdentity", "identify_meter", "manufacturer_for"]

# fmt: off
#: Flag id (upper case) -> manufacturer name as users know it.
MANUFACTURERS: Mapping[str, str] = MappingProxyType({
    "ADN": "Aidon",
    "DZG": "DZG Metering",
    "EBZ": "eBZ",
    "ELS": "Elster",
    "EMH": "EMH metering",
    "ENE": "Sagemcom (Enexis)",
    "ESY": "EasyMeter",
    "EST": "Sagemcom (Energienetze Steiermark)",
    "FLU": "Fluvius",
    "HAG": "Hager",
    "ISK": "Iskraemeco",
    "ITR": "Itron",
    "KAM": "Kamstrup",
    "KFM": "Kaifa",
    "KMP": "Kamstrup",
    "LGB": "Landis+Gyr",
    "LGZ": "Landis+Gyr",
    "LUX": "Luxmetering (Smarty)",
    "SAG": "Sagemcom",
    "XMX": "Landis+Gyr",
    "ZPA": "ZPA Smart Energy",
    "ZIV": "ZIV",
})
# fmt: on

_HEADER_RE = re.compile(r"/?([A-Za-z]{3})(\d)(.*)")


@dataclass(frozen=True, slots=True)
class MeterIdentity:
    """The parts of a P1 header line."""

    flag_id: str | None
    manufacturer: str | None
    baud_rate_character: str | None
    model: str


def manufacturer_for(flag_id: str) -> str | None:
    """Manufacturer for a flag id (`ISK`, `isk`, `KFM` ...), or None when not in the table."""
    return MANUFACTURERS.get(flag_id.upper())


def identify_meter(header: str) -> MeterIdentity:
    """Split a header (with or without its leading `/`) into flag id, manufacturer and model.

    Headers that do not follow the IEC layout (`/NWA-WARMTELINK`) keep everything as the model.
    The `\\2` or `\\` that marks enhanced identification on DSMR 5 meters is not part of the model.
    """
    match = _HEADER_RE.fullmatch(header.strip())
    if match is None:
        return MeterIdentity(None, None, None, header.lstrip("/").strip())
    flag, baud, rest = match.groups()
    model = rest.removeprefix("\\2").removeprefix("\\").strip()
    return MeterIdentity(flag.upper(), manufacturer_for(flag), baud, model)
