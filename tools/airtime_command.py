"""`p1-lora airtime`: time on air across SF/BW and the send interval each sub-band allows.

Answers the planning questions before anything is deployed: how long does a frame of N bytes
occupy the air at each spreading factor and bandwidth, and how often may a node legally send
it under the region's duty-cycle and dwell rules? Sub-bands with the same rules share a column
(EU868: 0.1 %, 1 %, 10 %); `--frequency` narrows it to the sub-band of one channel.

The numbers come from `common.airtime` (Semtech's formula) and `common.regions` (the rules as
data); this module only validates input and lays out the table.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from dataclasses import dataclass

from p1lora.common.airtime import MAX_PAYLOAD, low_data_rate_optimize, time_on_air
from p1lora.common.budget import AirtimeBudget
from p1lora.common.radio_types import BANDWIDTHS_HZ, CODING_RATES, SPREADING_FACTORS
from p1lora.common.regions import DEFAULT_REGION, REGIONS, Region, RegionError, SubBand

__all__ = ["Column", "Row", "build_table", "configure", "render_json", "render_text", "run"]

logger = logging.getLogger(__name__)

DEFAULT_SFS = (7, 8, 9, 10, 11, 12)
DEFAULT_BWS = (125_000, 250_000, 500_000)


# ---------------------------------------------------------------------- argument types


def _payload(text: str) -> int:
    if not text.strip().isdigit() or not 0 <= int(text) <= MAX_PAYLOAD:
        raise argparse.ArgumentTypeError(
            f"payload must be a byte count 0..{MAX_PAYLOAD} (one LoRa frame), not {text!r}"
        )
    return int(text)


def _sf(text: str) -> int:
    value = text.strip().upper().removeprefix("SF")
    if not value.isdigit() or int(value) not in SPREADING_FACTORS:
        raise argparse.ArgumentTypeError(f"spreading factor {text!r} is not one of 6..12")
    return int(value)


def _hz(text: str, *, scale: int, hz_from: float) -> int:
    """A number in Hz, or in kHz/MHz (`scale`) when below `hz_from`; -1 when not a number.

    `float()` accepts "inf", "nan" and "1e400" (which overflows to inf); rounding those raises
    OverflowError/ValueError, so anything non-finite or non-positive is rejected here as -1 and
    the caller's range check turns it into a clear argparse message (exit 2), not a traceback.
    """
    try:
        number = float(text)
    except ValueError:
        return -1
    if not math.isfinite(number) or number <= 0:
        return -1
    return round(number) if number >= hz_from else round(number * scale)


def _bw(text: str) -> int:
    """Bandwidth in kHz as people write it (125, 62.5, 7.8) or in Hz (125000)."""
    value = text.strip().lower().removesuffix("khz").removesuffix("k")
    hz = _hz(value, scale=1000, hz_from=7_800)
    if hz not in BANDWIDTHS_HZ:
        known = ", ".join(f"{bw / 1000:g}" for bw in BANDWIDTHS_HZ)
        raise argparse.ArgumentTypeError(f"bandwidth {text!r} is not one of {known} kHz")
    return hz


def _cr(text: str) -> int:
    value = text.strip().removeprefix("4/")
    if not value.isdigit() or int(value) not in CODING_RATES:
        raise argparse.ArgumentTypeError(f"coding rate {text!r} is not one of 4/5, 4/6, 4/7, 4/8")
    return int(value)


def _preamble(text: str) -> int:
    if not text.strip().isdigit() or not 6 <= int(text) <= 65_535:
        raise argparse.ArgumentTypeError(f"preamble {text!r} is not 6..65535 symbols")
    return int(text)


def _region(text: str) -> str:
    name = text.strip().upper()
    if name not in REGIONS:
        raise argparse.ArgumentTypeError(
            f"unknown region {text!r}; known regions: {', '.join(REGIONS)}"
        )
    return name


def _frequency(text: str) -> int:
    """MHz (869.525) or Hz (869525000)."""
    hz = _hz(text.strip().lower().removesuffix("mhz"), scale=1_000_000, hz_from=1e6)
    if not 137_000_000 <= hz <= 1_020_000_000:
        raise argparse.ArgumentTypeError(
            f"frequency {text!r} is not an SX127x frequency (137-1020 MHz, e.g. 869.525)"
        )
    return hz


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Print the LoRa time on air of a payload across spreading factors and bandwidths, and "
        "the shortest steady interval between such frames that each sub-band's duty-cycle and "
        "dwell rules allow."
    )
    parser.epilog = (
        "examples: p1-lora airtime --payload 40 | "
        "p1-lora airtime --payload 13 --sf 7 --bw 125 | "
        "p1-lora airtime --payload 60 --frequency 868.1"
    )
    parser.add_argument(
        "--payload",
        type=_payload,
        required=True,
        metavar="BYTES",
        help=f"payload size in bytes (0..{MAX_PAYLOAD})",
    )
    parser.add_argument(
        "--sf",
        type=_sf,
        nargs="+",
        metavar="SF",
        help="spreading factor(s) 6..12 (default: 7..12)",
    )
    parser.add_argument(
        "--bw",
        type=_bw,
        nargs="+",
        metavar="KHZ",
        help="bandwidth(s) in kHz: 7.8 ... 125, 250, 500 (default: 125 250 500)",
    )
    parser.add_argument(
        "--cr", type=_cr, default=5, metavar="4/N", help="coding rate 4/5..4/8 (default: 4/5)"
    )
    parser.add_argument(
        "--preamble",
        type=_preamble,
        default=8,
        metavar="N",
        help="preamble length in symbols (default: 8)",
    )
    parser.add_argument(
        "--region",
        type=_region,
        default=None,
        metavar="REGION",
        help=f"regulatory region: {', '.join(REGIONS)} (default: {DEFAULT_REGION})",
    )
    parser.add_argument(
        "--frequency",
        type=_frequency,
        metavar="MHZ",
        help="show only the sub-band of this channel (e.g. 869.525)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


# ---------------------------------------------------------------------- the table


@dataclass(frozen=True, slots=True)
class Column:
    """Sub-bands sharing one set of rules, shown as one column."""

    label: str
    bands: tuple[SubBand, ...]

    @property
    def rules(self) -> SubBand:
        return self.bands[0]


@dataclass(frozen=True, slots=True)
class Cell:
    """The minimum interval in seconds, or why the frame is not allowed (interval None)."""

    interval_s: float | None
    note: str = ""


@dataclass(frozen=True, slots=True)
class Row:
    sf: int
    bw_hz: int
    ldro: bool
    airtime_s: float
    cells: tuple[Cell, ...]


def _rules_key(band: SubBand) -> tuple[float, float, float | None, int]:
    return (band.duty_cycle, band.window_s, band.max_dwell_s, band.max_bw_hz)


def _label(band: SubBand) -> str:
    if band.duty_cycle >= 1:
        label = "no duty cycle"
    else:
        label = f"{band.duty_cycle * 100:g} %"
        if band.window_s != 3600:
            label += f" per {band.window_s:g} s"
    if band.max_dwell_s is not None:
        label += f", dwell {band.max_dwell_s * 1000:g} ms"
    return label


def columns_for(region: Region, frequency_hz: int | None) -> list[Column]:
    """One column per distinct rule set, or the one sub-band of `frequency_hz`."""
    if frequency_hz is not None:
        band = region.sub_band_for(frequency_hz)
        return [Column(f"{band.name}: {_label(band)}", (band,))]
    groups: dict[tuple[float, float, float | None, int], list[SubBand]] = {}
    for band in region.sub_bands:
        groups.setdefault(_rules_key(band), []).append(band)
    columns = [Column(_label(bands[0]), tuple(bands)) for bands in groups.values()]
    return sorted(columns, key=lambda column: column.rules.duty_cycle)


def _window(seconds: float) -> str:
    return "h" if seconds == 3600 else f"{seconds:g} s"


def _never(budget: AirtimeBudget, airtime: float) -> str:
    """Why no interval at all lets a single frame of `airtime` through the budget."""
    if budget.max_frame_s is not None and airtime > budget.max_frame_s:
        return f"never (dwell {budget.max_frame_s:g} s)"
    return f"never (> {budget.allowance_s:g} s/{_window(budget.window_s)})"


def _cell(column: Column, airtime: float, bw_hz: int, frequency_hz: int | None) -> Cell:
    """Ask the sub-band's `AirtimeBudget` (the one the link obeys) rather than re-deriving rules.

    A frame longer than the dwell cap or than the whole allowance of one window can never be
    sent, whatever the interval: "time on air / duty cycle" would print a number for it (a 9 s
    SF12 frame "every 2.5 h" in a 3.6 s-per-hour band) that no budget would ever grant.
    """
    rules = column.rules
    if frequency_hz is not None:
        fits = rules.contains(frequency_hz, bw_hz)
    else:
        fits = any(band.high_hz - band.low_hz >= bw_hz for band in column.bands)
    if bw_hz > rules.max_bw_hz or not fits:
        return Cell(None, "BW too wide")
    budget = AirtimeBudget.for_sub_band(rules)
    if not budget.frame_fits(airtime):
        return Cell(None, _never(budget, airtime))
    if budget.unlimited:
        return Cell(0.0, "no limit")
    return Cell(budget.sustainable_interval(airtime))


def build_table(
    payload: int,
    sfs: tuple[int, ...],
    bws: tuple[int, ...],
    *,
    cr: int = 5,
    preamble: int = 8,
    region: Region,
    frequency_hz: int | None = None,
) -> tuple[list[Column], list[Row]]:
    """The columns (rule sets) and one row per SF/BW combination, airtime ascending by SF."""
    columns = columns_for(region, frequency_hz)
    rows = []
    for sf in sfs:
        for bw in bws:
            airtime = time_on_air(
                payload, sf, bw, cr=cr, preamble=preamble, implicit_header=sf == 6
            )
            cells = tuple(_cell(column, airtime, bw, frequency_hz) for column in columns)
            rows.append(Row(sf, bw, low_data_rate_optimize(sf, bw), airtime, cells))
    return columns, rows


def _interval(cell: Cell) -> str:
    if cell.interval_s is None or cell.note:
        return cell.note
    seconds = cell.interval_s
    if seconds < 10:
        return f"{seconds:.2f} s"
    if seconds < 100:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{seconds:.0f} s ({seconds / 60:.1f} min)"
    return f"{seconds:.0f} s ({seconds / 3600:.1f} h)"


def _airtime(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def render_text(
    payload: int,
    columns: list[Column],
    rows: list[Row],
    *,
    cr: int,
    preamble: int,
    region: Region,
    frequency_hz: int | None,
) -> str:
    lines = []
    if len(rows) == 1:
        row = rows[0]
        lines.append(
            f"{payload} bytes at SF{row.sf}/BW{row.bw_hz / 1000:g}: "
            f"{_airtime(row.airtime_s)} on air"
        )
        lines.append("")
    where = f"{region.name}"
    if frequency_hz is not None:
        where += f", channel {frequency_hz / 1e6:.4f} MHz"
    lines.append(
        f"Time on air of a {payload}-byte payload (CR 4/{cr}, {preamble}-symbol preamble, "
        "explicit header except SF6, payload CRC on)"
    )
    lines.append(f"and the shortest steady interval between such frames in {where}:")
    lines.append("")
    header = ["SF", "BW kHz", "LDRO", "time on air", *(column.label for column in columns)]
    table = [
        [
            str(row.sf),
            f"{row.bw_hz / 1000:g}",
            "on" if row.ldro else "off",
            _airtime(row.airtime_s),
            *(_interval(cell) for cell in row.cells),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    for line in [header, *table]:
        cells = [
            text.ljust(width) if i == 2 else text.rjust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
    lines.append("")
    lines.append("Sub-bands:")
    for column in columns:
        for band in column.bands:
            lines.append(f"  {band.describe()}")
            if band.note:
                lines.append(f"    ({band.note})")
    lines.append(
        "Interval = time on air / duty cycle: every frame counts (handshake, probes, acks too)."
    )
    lines.append(
        "never = a single frame is longer than the dwell limit or than a whole window's allowance."
    )
    return "\n".join(lines)


def render_json(payload: int, columns: list[Column], rows: list[Row], *, region: Region) -> str:
    data = {
        "payload_bytes": payload,
        "region": region.name,
        "caveat": region.caveat or None,
        "columns": [
            {
                "label": column.label,
                "sub_bands": [band.name for band in column.bands],
                "duty_cycle": column.rules.duty_cycle,
                "window_s": column.rules.window_s,
                "max_dwell_s": column.rules.max_dwell_s,
            }
            for column in columns
        ],
        "rows": [
            {
                "sf": row.sf,
                "bw_hz": row.bw_hz,
                "ldro": row.ldro,
                "airtime_s": round(row.airtime_s, 6),
                "min_interval_s": [
                    None if cell.interval_s is None else round(cell.interval_s, 6)
                    for cell in row.cells
                ],
                "notes": [cell.note for cell in row.cells],
            }
            for row in rows
        ],
    }
    return json.dumps(data, indent=2)


def run(args: argparse.Namespace) -> int:
    region = REGIONS[args.region or DEFAULT_REGION]
    sfs = tuple(dict.fromkeys(args.sf or DEFAULT_SFS))
    bws = tuple(dict.fromkeys(args.bw or DEFAULT_BWS))
    try:
        columns, rows = build_table(
            args.payload,
            sfs,
            bws,
            cr=args.cr,
            preamble=args.preamble,
            region=region,
            frequency_hz=args.frequency,
        )
    except RegionError as exc:
        hint = "" if args.region else " (pass --region for another region)"
        logger.error("%s%s", exc, hint)
        return 2
    if args.json:
        output = render_json(args.payload, columns, rows, region=region)
    else:
        output = render_text(
            args.payload,
            columns,
            rows,
            cr=args.cr,
            preamble=args.preamble,
            region=region,
            frequency_hz=args.frequency,
        )
    if region.caveat:
        logger.warning("%s: %s", region.name, region.caveat)
    sys.stdout.write(output + "\n")
    return 0
