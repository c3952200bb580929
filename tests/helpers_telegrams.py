"""Helpers for the framing/parsing tests: fixture telegrams, a telegram builder, synthetic meters.

The fixtures in tests/data/telegrams are byte-exact copies of public reference telegrams (see
that folder's README). The builder makes new telegrams with a correct CRC so that tests can
cover meters without a fixture (Luxembourg Smarty, Swedish Aidon) and odd corners (garbage
values, long logs, text messages) without hand-computing CRCs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from p1lora.common.crc16 import crc16_arc
from p1lora.common.framing import FramedTelegram, TelegramFramer

TELEGRAM_DIR = Path(__file__).resolve().parent / "data" / "telegrams"
FIXTURES: tuple[str, ...] = tuple(sorted(path.name for path in TELEGRAM_DIR.glob("*.txt")))

#: Fixtures that carry a CRC (DSMR 4+, e-MUCS ...).
CRC_FIXTURES: tuple[str, ...] = tuple(
    name
    for name in FIXTURES
    if name not in {"DSMR22_ISKRA_MT382_REAL.txt", "V2_2.txt", "V3.txt", "ESY5Q3DA1004_V304.txt"}
)


def fixture(name: str) -> bytes:
    """A fixture telegram file, byte-exact."""
    return (TELEGRAM_DIR / name).read_bytes()


def telegram_part(name: str) -> bytes:
    """The telegram in a fixture, without trailing bytes after its CRC line (EasyMeter has some)."""
    data = fixture(name)
    bang = data.rfind(b"\r\n!") + 2
    end = data.index(b"\r\n", bang) + 2
    return data[:end]


def build_telegram(
    header: str,
    lines: Iterable[str],
    *,
    crc: bool = True,
    lowercase: bool = False,
    unpadded: bool = False,
    newline: str = "\r\n",
    blank_lines: int = 1,
) -> bytes:
    """A telegram from its header (without '/') and data lines, with a correct CRC.

    `lowercase` prints the CRC in lower case, `unpadded` without leading zeros; `crc=False`
    makes a DSMR 2.2-style telegram without one.
    """
    body = f"/{header}{newline}" + newline * blank_lines
    body += "".join(f"{line}{newline}" for line in lines)
    text = (body + "!").encode("latin-1")
    if not crc:
        return text + newline.encode()
    value = crc16_arc(text)
    digits = f"{value:X}" if unpadded else f"{value:04X}"
    if lowercase:
        digits = digits.lower()
    return text + digits.encode() + newline.encode()


def feed_chunks(
    framer: TelegramFramer, chunks: Iterable[bytes], include_bad: bool = False
) -> list[FramedTelegram]:
    """Feed every chunk and flush; all telegrams in order."""
    out: list[FramedTelegram] = []
    for chunk in chunks:
        out.extend(framer.feed(chunk, include_bad=include_bad))
    out.extend(framer.flush(include_bad=include_bad))
    return out


def split_at(data: bytes, cuts: Sequence[int]) -> list[bytes]:
    """`data` cut at the given positions (any order, out-of-range positions clipped)."""
    points = sorted({min(max(cut, 0), len(data)) for cut in cuts})
    pieces = []
    previous = 0
    for point in [*points, len(data)]:
        pieces.append(data[previous:point])
        previous = point
    return [piece for piece in pieces if piece]


# -- synthetic meters (values invented; line layout as those meters send it) -----------------

#: Luxembourg Smarty (Sagemcom T210-D for Luxmetering): totals only, id on 42.0.0.
SMARTY_HEADER = "Lux5\\253663629_D"
SMARTY_LINES: tuple[str, ...] = (
    "1-3:0.2.8(42)",
    "0-0:1.0.0(240612101530S)",
    "0-0:42.0.0(53414731303330373030303132373031)",
    "1-0:1.8.0(004512.871*kWh)",
    "1-0:2.8.0(001207.440*kWh)",
    "1-0:3.8.0(000312.002*kvarh)",
    "1-0:4.8.0(000981.356*kvarh)",
    "1-0:1.7.0(00.412*kW)",
    "1-0:2.7.0(00.000*kW)",
    "1-0:3.7.0(00.000*kvar)",
    "1-0:4.7.0(00.121*kvar)",
    "0-0:17.0.0(027.6*kVA)",
    "1-0:9.7.0(00.431*kVA)",
    "1-0:10.7.0(00.000*kVA)",
    "1-1:31.4.0(040*A)(-040*A)",
    "0-0:96.3.10(1)",
    "0-1:96.3.10(0)",
    "0-0:96.7.21(00012)",
    "1-0:32.32.0(00003)",
    "1-0:32.36.0(00000)",
    "0-0:96.13.0()",
    "0-0:96.13.2()",
    "1-0:32.7.0(231.4*V)",
    "1-0:31.7.0(002*A)",
    "1-0:21.7.0(00.412*kW)",
    "1-0:22.7.0(00.000*kW)",
    "0-1:24.1.0(003)",
    "0-1:96.1.0(3232323241424344313233343536373839)",
    "0-1:24.2.1(240612101500S)(01234.567*m3)",
)

#: Swedish Aidon 6534: totals, reactive energy and power, everything per phase.
AIDON_HEADER = "ADN9 6534"
AIDON_LINES: tuple[str, ...] = (
    "0-0:1.0.0(240115183012W)",
    "1-0:1.8.0(00006678.394*kWh)",
    "1-0:2.8.0(00000000.000*kWh)",
    "1-0:3.8.0(00000021.988*kvarh)",
    "1-0:4.8.0(00001020.971*kvarh)",
    "1-0:1.7.0(0001.727*kW)",
    "1-0:2.7.0(0000.000*kW)",
    "1-0:3.7.0(0000.000*kvar)",
    "1-0:4.7.0(0000.309*kvar)",
    "1-0:21.7.0(0001.023*kW)",
    "1-0:41.7.0(0000.350*kW)",
    "1-0:61.7.0(0000.353*kW)",
    "1-0:22.7.0(0000.000*kW)",
    "1-0:42.7.0(0000.000*kW)",
    "1-0:62.7.0(0000.000*kW)",
    "1-0:23.7.0(0000.000*kvar)",
    "1-0:43.7.0(0000.000*kvar)",
    "1-0:63.7.0(0000.000*kvar)",
    "1-0:24.7.0(0000.009*kvar)",
    "1-0:44.7.0(0000.161*kvar)",
    "1-0:64.7.0(0000.138*kvar)",
    "1-0:32.7.0(240.3*V)",
    "1-0:52.7.0(240.1*V)",
    "1-0:72.7.0(241.3*V)",
    "1-0:31.7.0(004.2*A)",
    "1-0:51.7.0(001.6*A)",
    "1-0:71.7.0(001.7*A)",
)

#: The reference telegram of the Python P1 client whose net values `derived` reproduces.
P1_CLIENT_HEADER = "XMX5LGBBFG10"
P1_CLIENT_LINES: tuple[str, ...] = (
    "1-3:0.2.8(42)",
    "0-0:1.0.0(181225103211W)",
    "0-0:96.1.1(4530303331303033313034393833373135)",
    "1-0:1.8.1(002640.860*kWh)",
    "1-0:1.8.2(001164.335*kWh)",
    "1-0:2.8.1(001076.832*kWh)",
    "1-0:2.8.2(002684.048*kWh)",
    "0-0:96.14.0(0001)",
    "1-0:1.7.0(00.006*kW)",
    "1-0:2.7.0(00.000*kW)",
    "0-0:96.7.21(00008)",
    "0-0:96.7.9(00003)",
    "1-0:99.97.0(3)(0-0:96.7.19)(170214183908W)(0000006810*s)(161018133550S)(0000005875*s)"
    "(160604162916S)(0000011017*s)",
    "1-0:32.32.0(00000)",
    "1-0:32.36.0(00000)",
    "0-0:96.13.1()",
    "0-0:96.13.0()",
    "1-0:31.7.0(002*A)",
    "1-0:21.7.0(00.006*kW)",
    "1-0:22.7.0(00.000*kW)",
)


def smarty_telegram() -> bytes:
    return build_telegram(SMARTY_HEADER, SMARTY_LINES)


def aidon_telegram() -> bytes:
    return build_telegram(AIDON_HEADER, AIDON_LINES)


def p1_client_telegram() -> bytes:
    return build_telegram(P1_CLIENT_HEADER, P1_CLIENT_LINES)
