"""Meter timestamps: `YYMMDDhhmmssX` to timezone-aware datetimes.

DSMR 4/5, e-MUCS and their relatives print local time with a DST flag: `S` (summer, UTC+2) or
`W` (winter, UTC+1). The flag *is* the UTC offset the meter used, so it is trusted as such; no
timezone database is consulted (none is needed, and this stays pure). DSMR 2.2/3 gas readings
print 12 digits without a flag: those are Dutch local time, and the offset follows the EU
summer-time rule (last Sunday of March 01:00 UTC to last Sunday of October 01:00 UTC).

Two-digit years follow the POSIX `%y` convention (69-99 -> 1900s), so the empty M-Bus slot
`700101010000W` some meters send reads as 1970, as in dsmr_parser.

Some Fluvius meters put garbage such as `632525252525W` into history lines. That becomes None
with a warning, never an exception: one bad field must not cost the rest of the telegram.
A meter that sends the same garbage every second is warned about once, not every second.
"""

from __future__ import annotations

import logging
from datetime import UTC, date, datetime, timedelta, timezone

from p1lora.common.warn_once import WarnOnce

__all__ = ["SUMMER", "WINTER", "eu_offset_for_local", "format_timestamp", "parse_timestamp"]

logger = logging.getLogger(__name__)

#: The two offsets Dutch/Belgian meters use.
WINTER = timezone(timedelta(hours=1))
SUMMER = timezone(timedelta(hours=2))

#: DST flag -> offset. Lower case is accepted; some meters print it.
_FLAG_OFFSETS: dict[str, timezone] = {"W": WINTER, "S": SUMMER, "w": WINTER, "s": SUMMER}

# Parsed timestamps repeat a lot (M-Bus capture times, failure logs, peak histories are the same
# every telegram), so recent results are kept. Bounded: cleared when full.
_CACHE_LIMIT = 512
_cache: dict[str, datetime | None] = {}

# Garbage already warned about (bounded: see `WarnOnce`).
_WARN_LIMIT = 64
_warned = WarnOnce(logger, _WARN_LIMIT)


def _last_sunday(year: int, month: int) -> date:
    last = date(year, month, 31)
    return last - timedelta(days=(last.weekday() + 1) % 7)


def eu_offset_for_local(local: datetime) -> timezone:
    """UTC offset (+1 or +2) of a naive Dutch local time under the EU summer-time rule.

    In the repeated hour at the end of October the summer offset is chosen (the first of the
    two instants), as `zoneinfo` does with fold=0.
    """
    year = local.year
    start = datetime.combine(_last_sunday(year, 3), datetime.min.time()) + timedelta(hours=2)
    end = datetime.combine(_last_sunday(year, 10), datetime.min.time()) + timedelta(hours=3)
    return SUMMER if start <= local < end else WINTER


def _warn_garbage(text: str) -> None:
    _warned(text, "unreadable meter timestamp %r (expected YYMMDDhhmmss + S/W); using null", text)


def _parse(text: str) -> datetime | None:
    n = len(text)
    digits = text[:12]
    if n not in (12, 13) or not (digits.isascii() and digits.isdigit()):
        return None
    yy = int(digits[0:2])
    try:
        naive = datetime(
            (1900 if yy >= 69 else 2000) + yy,
            int(digits[2:4]),
            int(digits[4:6]),
            int(digits[6:8]),
            int(digits[8:10]),
            int(digits[10:12]),
        )
    except ValueError:
        return None
    if n == 13:
        offset = _FLAG_OFFSETS.get(text[12])
        if offset is None:
            return None
    else:
        offset = eu_offset_for_local(naive)
    return naive.replace(tzinfo=offset)


def parse_timestamp(text: str | None) -> datetime | None:
    """Parse a meter timestamp; None (with a warning) when it is not a real date and time.

    An empty field (`()`) is None without a warning: meters send that on purpose.
    """
    if not text:
        return None
    try:
        return _cache[text]
    except KeyError:
        pass
    result = _parse(text)
    if result is None:
        _warn_garbage(text)
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[text] = result
    return result


def format_timestamp(moment: datetime) -> str:
    """The inverse: an aware datetime as `YYMMDDhhmmssX` in the meter's own offset.

    Times not at UTC+1/+2 are converted to Dutch local time first, so the result is always
    something a meter could have printed.
    """
    offset = moment.utcoffset()
    if offset == timedelta(hours=2):
        flag = "S"
    elif offset == timedelta(hours=1):
        flag = "W"
    else:
        utc = moment.astimezone(UTC).replace(tzinfo=None)
        year = utc.year
        start = datetime.combine(_last_sunday(year, 3), datetime.min.time()) + timedelta(hours=1)
        end = datetime.combine(_last_sunday(year, 10), datetime.min.time()) + timedelta(hours=1)
        if start <= utc < end:
            moment, flag = utc + timedelta(hours=2), "S"
        else:
            moment, flag = utc + timedelta(hours=1), "W"
    return moment.strftime("%y%m%d%H%M%S") + flag


def _reset_for_tests() -> None:
    """Forget cached results and which garbage was already warned about."""
    _cache.clear()
    _warned.clear()
