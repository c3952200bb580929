"""`p1-lora bench parse`: our P1 parser against dsmr_parser, same telegrams, one run.

Two figures matter on a Raspberry Pi that parses a telegram every second for years:

* throughput (telegrams per second), measured on the same telegrams for both parsers,
  interleaved round by round and taking each parser's best round, so background load on the
  machine penalises neither side;
* memory growth over many parses. dsmr_parser's ProfileGenericParser appends to a list on every
  telegram with a power-failure log, so a daemon using it grows without bound; ours must not grow
  at all. Growth is measured as resident set size over `--parses` parses (100 000 by default,
  no overhead) and, precisely, with tracemalloc over `--traced-parses` parses.

Both parsers do the same work per telegram: check the CRC and turn every line into values.
dsmr_parser is a test dependency (the `dev` extra), never a runtime one; this benchmark is the
only command that imports it.

The built-in telegrams are the public reference telegrams from dsmr_parser's test suite and
the DSMR 2.2 telegram from nielsbasjes/dsmr-tools (the same ones the test suite uses).
"""

from __future__ import annotations

import argparse
import copy
import gc
import importlib
import logging
import math
import os
import resource
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from p1lora.common.framing import TelegramFramer, check_crc
from p1lora.common.parser import parse_telegram

__all__ = [
    "BUILTIN_TELEGRAMS",
    "BenchTelegram",
    "check_agreement",
    "configure",
    "dsmr_parser_for",
    "load_oracle",
    "rss_growth",
    "run",
    "throughput",
    "traced_growth",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


@dataclass(frozen=True, slots=True)
class BenchTelegram:
    """A telegram to measure, with the dsmr_parser specification that reads it."""

    label: str
    spec: str
    raw: bytes


# fmt: off
_DSMR5 = (
    b'/ISK5\\2M550T-1012\r\n'
    b'\r\n'
    b'1-3:0.2.8(50)\r\n'
    b'0-0:1.0.0(200426223325S)\r\n'
    b'0-0:96.1.1(4530303434303037333832323436303139)\r\n'
    b'1-0:1.8.1(002130.115*kWh)\r\n'
    b'1-0:1.8.2(000245.467*kWh)\r\n'
    b'1-0:2.8.1(000000.000*kWh)\r\n'
    b'1-0:2.8.2(000000.000*kWh)\r\n'
    b'0-0:96.14.0(0001)\r\n'
    b'1-0:1.7.0(00.111*kW)\r\n'
    b'1-0:2.7.0(00.000*kW)\r\n'
    b'0-0:96.7.21(00005)\r\n'
    b'0-0:96.7.9(00003)\r\n'
    b'1-0:99.97.0(1)(0-0:96.7.19)(190326095015W)(0000002014*s)\r\n'
    b'1-0:32.32.0(00001)\r\n'
    b'1-0:52.32.0(00001)\r\n'
    b'1-0:72.32.0(00192)\r\n'
    b'1-0:32.36.0(00001)\r\n'
    b'1-0:52.36.0(00001)\r\n'
    b'1-0:72.36.0(00001)\r\n'
    b'0-0:96.13.0()\r\n'
    b'1-0:32.7.0(229.9*V)\r\n'
    b'1-0:52.7.0(229.2*V)\r\n'
    b'1-0:72.7.0(222.9*V)\r\n'
    b'1-0:31.7.0(000*A)\r\n'
    b'1-0:51.7.0(000*A)\r\n'
    b'1-0:71.7.0(001*A)\r\n'
    b'1-0:21.7.0(00.056*kW)\r\n'
    b'1-0:41.7.0(00.000*kW)\r\n'
    b'1-0:61.7.0(00.055*kW)\r\n'
    b'1-0:22.7.0(00.000*kW)\r\n'
    b'1-0:42.7.0(00.000*kW)\r\n'
    b'1-0:62.7.0(00.000*kW)\r\n'
    b'0-1:24.1.0(003)\r\n'
    b'0-1:96.1.0()\r\n'
    b'0-1:24.2.1(700101010000W)(00000000)\r\n'
    b'0-2:24.1.0(003)\r\n'
    b'0-2:96.1.0(4730303339303031393336393930363139)\r\n'
    b'0-2:24.2.1(200426223001S)(00246.138*m3)\r\n'
    b'!56DD\r\n'
)
_EMUCS = (
    b'/FLU5\\253769484_A\r\n'
    b'\r\n'
    b'0-0:96.1.4(50217)\r\n'
    b'0-0:96.1.1(3153414733313031303231363035)\r\n'
    b'0-0:1.0.0(200512135409S)\r\n'
    b'1-0:1.8.1(000000.034*kWh)\r\n'
    b'1-0:1.8.2(000015.758*kWh)\r\n'
    b'1-0:2.8.1(000000.000*kWh)\r\n'
    b'1-0:2.8.2(000000.011*kWh)\r\n'
    b'1-0:1.4.0(02.351*kW)\r\n'
    b'1-0:1.6.0(200509134558S)(02.589*kW)\r\n'
    b'0-0:98.1.0(3)(1-0:1.6.0)(1-0:1.6.0)(200501000000S)(200423192538S)(03.695*kW)(200401000000S)(200305122139S)(05.980*kW)(200301000000S)(200210035421W)(04.318*kW)\r\n'
    b'0-0:96.14.0(0001)\r\n'
    b'1-0:1.7.0(00.000*kW)\r\n'
    b'1-0:2.7.0(00.000*kW)\r\n'
    b'1-0:21.7.0(00.000*kW)\r\n'
    b'1-0:41.7.0(00.000*kW)\r\n'
    b'1-0:61.7.0(00.000*kW)\r\n'
    b'1-0:22.7.0(00.000*kW)\r\n'
    b'1-0:42.7.0(00.000*kW)\r\n'
    b'1-0:62.7.0(00.000*kW)\r\n'
    b'1-0:32.7.0(234.7*V)\r\n'
    b'1-0:52.7.0(234.7*V)\r\n'
    b'1-0:72.7.0(234.7*V)\r\n'
    b'1-0:31.7.0(000.00*A)\r\n'
    b'1-0:51.7.0(000.00*A)\r\n'
    b'1-0:71.7.0(000.00*A)\r\n'
    b'0-0:96.3.10(1)\r\n'
    b'0-0:17.0.0(999.9*kW)\r\n'
    b'1-0:31.4.0(999*A)\r\n'
    b'0-0:96.13.0()\r\n'
    b'0-1:24.1.0(003)\r\n'
    b'0-1:96.1.1(37464C4F32313139303333373333)\r\n'
    b'0-1:24.4.0(1)\r\n'
    b'0-1:24.2.3(200512134558S)(00112.384*m3)\r\n'
    b'0-2:24.1.0(007)\r\n'
    b'0-2:96.1.1(3853414731323334353637383930)\r\n'
    b'0-2:24.2.1(200512134558S)(00872.234*m3)\r\n'
    b'!3AD7\r\n'
)
_DSMR42 = (
    b'/KFM5KAIFA-METER\r\n'
    b'\r\n'
    b'1-3:0.2.8(42)\r\n'
    b'0-0:1.0.0(161113205757W)\r\n'
    b'0-0:96.1.1(3960221976967177082151037881335713)\r\n'
    b'1-0:1.8.1(001581.123*kWh)\r\n'
    b'1-0:1.8.2(001435.706*kWh)\r\n'
    b'1-0:2.8.1(000000.000*kWh)\r\n'
    b'1-0:2.8.2(000000.000*kWh)\r\n'
    b'0-0:96.14.0(0002)\r\n'
    b'1-0:1.7.0(02.027*kW)\r\n'
    b'1-0:2.7.0(00.000*kW)\r\n'
    b'0-0:96.7.21(00015)\r\n'
    b'0-0:96.7.9(00007)\r\n'
    b'1-0:99.97.0(3)(0-0:96.7.19)(000104180320W)(0000237126*s)(000101000001W)(2147583646*s)(000102000003W)(2317482647*s)\r\n'
    b'1-0:32.32.0(00000)\r\n'
    b'1-0:52.32.0(00000)\r\n'
    b'1-0:72.32.0(00000)\r\n'
    b'1-0:32.36.0(00000)\r\n'
    b'1-0:52.36.0(00000)\r\n'
    b'1-0:72.36.0(00000)\r\n'
    b'0-0:96.13.1()\r\n'
    b'0-0:96.13.0()\r\n'
    b'1-0:31.7.0(000*A)\r\n'
    b'1-0:51.7.0(006*A)\r\n'
    b'1-0:71.7.0(002*A)\r\n'
    b'1-0:21.7.0(00.170*kW)\r\n'
    b'1-0:22.7.0(00.000*kW)\r\n'
    b'1-0:41.7.0(01.247*kW)\r\n'
    b'1-0:42.7.0(00.000*kW)\r\n'
    b'1-0:61.7.0(00.209*kW)\r\n'
    b'1-0:62.7.0(00.000*kW)\r\n'
    b'0-1:24.1.0(003)\r\n'
    b'0-1:96.1.0(4819243993373755377509728609491464)\r\n'
    b'0-1:24.2.1(161129200000W)(00981.443*m3)\r\n'
    b'!6796\r\n'
)
_DSMR22 = (
    b'/ISk5\\2MT382-1003\r\n'
    b'\r\n'
    b'0-0:96.1.1(5A424556303035313036383434393132)\r\n'
    b'1-0:1.8.1(16719.940*kWh)\r\n'
    b'1-0:1.8.2(19403.220*kWh)\r\n'
    b'1-0:2.8.1(00859.681*kWh)\r\n'
    b'1-0:2.8.2(01817.057*kWh)\r\n'
    b'0-0:96.14.0(0002)\r\n'
    b'1-0:1.7.0(0000.89*kW)\r\n'
    b'1-0:2.7.0(0000.00*kW)\r\n'
    b'0-0:17.0.0(0999.00*kW)\r\n'
    b'0-0:96.3.10(1)\r\n'
    b'0-0:96.13.1()\r\n'
    b'0-0:96.13.0()\r\n'
    b'0-2:24.1.0(3)\r\n'
    b'0-2:96.1.0(3238303131303038333036343239303133)\r\n'
    b'0-2:24.3.0(211122210000)(00)(60)(1)(0-2:24.2.1)(m3)\r\n'
    b'(13368.864)\r\n'
    b'0-2:24.4.0(1)\r\n'
    b'!\r\n'
)
# fmt: on

#: The default set: label, dsmr_parser specification, telegram.
BUILTIN_TELEGRAMS: tuple[BenchTelegram, ...] = (
    BenchTelegram("DSMR 5.0, Iskra AM550, 2 M-Bus", "V5", _DSMR5),
    BenchTelegram("e-MUCS 1.7.1 (Belgium), gas + water", "BELGIUM_FLUVIUS", _EMUCS),
    BenchTelegram("DSMR 4.2, Kaifa, 3 power failures", "V4", _DSMR42),
    BenchTelegram("DSMR 2.2, Iskra MT382 (no CRC)", "V2_2", _DSMR22),
)

#: The telegram the memory figures use: it has a 3-entry power-failure log, the line that
#: makes dsmr_parser grow.
MEMORY_TELEGRAM = 2


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `p1-lora bench parse`."""
    parser.description = (
        "Compare p1-lora's telegram parser with dsmr_parser on the same telegrams in one run: "
        "telegrams per second for each, and memory growth over many parses. Prints a table. "
        "Needs dsmr_parser (pip install 'p1-lora[dev]'). The default run takes about a "
        "couple of minutes, most of it dsmr_parser's 100 000 parses."
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=0.2,
        metavar="S",
        help="length of one timing round per parser and telegram (default 0.2)",
    )
    parser.add_argument(
        "--rounds", type=int, default=5, metavar="N", help="timing rounds; best counts (default 5)"
    )
    parser.add_argument(
        "--parses",
        type=int,
        default=100_000,
        metavar="N",
        help="parses per parser for the RSS growth figure (default 100000; 0 skips it)",
    )
    parser.add_argument(
        "--traced-parses",
        type=int,
        default=10_000,
        metavar="N",
        help="parses per parser for the tracemalloc growth figure (default 10000; 0 skips it)",
    )
    parser.add_argument(
        "--file",
        type=Path,
        metavar="PATH",
        help="measure the first good telegram of this file instead of the built-in set",
    )
    parser.add_argument(
        "--spec",
        default="V5",
        metavar="NAME",
        help="dsmr_parser specification for --file (V2_2, V3, V4, V5, BELGIUM_FLUVIUS, "
        "LUXEMBOURG_SMARTY, SWEDEN, Q3D, SAGEMCOM_T210_D_R, EON_HUNGARY; default V5)",
    )


def load_oracle() -> Any:
    """dsmr_parser's (parsers, telegram_specifications) modules, or None when it is not
    installed: it is the reference we compare against, an optional test dependency only."""
    try:
        return importlib.import_module("dsmr_parser.parsers"), importlib.import_module(
            "dsmr_parser.telegram_specifications"
        )
    except ImportError:
        return None


def dsmr_parser_for(specs: Any, parsers: Any, name: str) -> Any:
    """A dsmr_parser TelegramParser with its own copy of the specification.

    The copy matters: the specification holds the stateful ProfileGenericParser, so every
    measurement starts from a parser that has not grown yet.
    """
    spec = getattr(specs, name, None)
    if not isinstance(spec, dict) or "objects" not in spec:
        raise ValueError(f"dsmr_parser has no telegram specification called {name!r}")
    spec = copy.deepcopy(spec)
    if spec.get("general_global_cipher"):
        # Plain-text telegrams of meters whose specification expects an encrypted frame.
        spec["general_global_cipher"] = False
    return parsers.TelegramParser(spec)


def _timed(fn: Callable[[Any], object], arg: Any, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn(arg)
    return time.perf_counter() - start


def _calibrate(fn: Callable[[Any], object], arg: Any, seconds: float) -> int:
    n = 1
    while True:
        elapsed = _timed(fn, arg, n)
        if elapsed >= 0.02 or n >= 1 << 20:
            return max(1, int(n * seconds / max(elapsed, 1e-9)))
        n *= 2


def throughput(
    pairs: list[tuple[Callable[[Any], object], Any]], seconds: float, rounds: int
) -> list[float]:
    """Best telegrams/second of each (function, argument) over `rounds` rounds of about
    `seconds` each, rounds interleaved so background load penalises no side more than another."""
    counts = [_calibrate(fn, arg, seconds) for fn, arg in pairs]
    best = [math.inf] * len(pairs)
    for _ in range(rounds):
        for index, (fn, arg) in enumerate(pairs):
            per = _timed(fn, arg, counts[index]) / counts[index]
            best[index] = min(best[index], per)
    return [1.0 / per for per in best]


def _rss_bytes() -> int:
    try:
        fields = Path("/proc/self/statm").read_text().split()
        return int(fields[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: peak RSS is the best we have
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _warmup(parses: int) -> int:
    # Enough for caches and lazily built tables to settle; never more than the run itself.
    return min(1000, parses)


def rss_growth(fn: Callable[[Any], object], arg: Any, parses: int) -> int:
    """Resident set size growth in bytes over `parses` calls of `fn(arg)` after a warm-up:
    what a long-running daemon would see, including memory a parser keeps between telegrams
    (dsmr_parser's ProfileGenericParser grows its list of power failures)."""
    _timed(fn, arg, _warmup(parses))
    gc.collect()
    before = _rss_bytes()
    _timed(fn, arg, parses)
    gc.collect()
    return _rss_bytes() - before


def traced_growth(fn: Callable[[Any], object], arg: Any, parses: int) -> int:
    """Python heap growth in bytes (tracemalloc) over `parses` calls of `fn(arg)` after a
    warm-up: finer than `rss_growth` (the allocator's arenas hide small leaks from RSS)."""
    # Tracing starts before the warm-up so that every block the parser keeps (and every
    # reallocation of a growing list) is known to tracemalloc with its real size.
    tracemalloc.start()
    try:
        _timed(fn, arg, _warmup(parses))
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        _timed(fn, arg, parses)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def _size(n: int) -> str:
    """Signed byte count for the table: +0 B, +64.0 KiB, +4.6 MiB."""
    sign = "+" if n >= 0 else "-"
    value = float(abs(n))
    if value < 1024:
        return f"{sign}{value:.0f} B"
    if value < 1024 * 1024:
        return f"{sign}{value / 1024:.1f} KiB"
    return f"{sign}{value / (1024 * 1024):.1f} MiB"


def _from_file(path: Path, spec: str) -> BenchTelegram | None:
    framer = TelegramFramer()
    good = framer.feed(path.read_bytes()) + framer.flush()
    if not good:
        return None
    return BenchTelegram(path.name, spec, good[0].raw)


def _has_no_crc(raw: bytes) -> bool:
    check = check_crc(raw)
    return check is not None and check.expected is None


def check_agreement(item: BenchTelegram, oracle: Any) -> str | None:
    """A reason the two parsers disagree on this telegram, or None (so numbers mean something)."""
    ours = parse_telegram(item.raw)
    theirs = oracle.parse(item.raw.decode("latin-1"))
    if not ours.objects or not len(theirs):
        return "one of the parsers found no objects"
    for key in ("ELECTRICITY_USED_TARIFF_1", "ELECTRICITY_IMPORTED_TOTAL"):
        obj = getattr(theirs, key, None)
        if obj is not None:
            ours_value = ours.value(key.lower())
            if ours_value != obj.value:
                return f"{key}: ours {ours_value}, dsmr_parser {obj.value}"
    return None


def _write_memory_table(
    out: TextIO,
    args: argparse.Namespace,
    items: list[BenchTelegram],
    specs_module: Any,
    parsers_module: Any,
) -> None:
    """The memory growth of both parsers over `--parses` and `--traced-parses` parses."""
    index = MEMORY_TELEGRAM if args.file is None else 0
    item = items[index]
    text = item.raw.decode("latin-1")
    out.write(f"\nMemory growth while parsing the same telegram ({item.label}):\n")

    def fresh_oracle() -> Callable[[Any], object]:
        parse: Callable[[Any], object] = dsmr_parser_for(
            specs_module, parsers_module, item.spec
        ).parse
        return parse

    rows: list[tuple[str, Callable[[], Callable[[Any], object]], Any]] = [
        ("p1-lora", lambda: parse_telegram, item.raw),
        ("dsmr_parser", fresh_oracle, text),
    ]
    for name, make, arg in rows:
        parts = []
        if args.parses:
            logger.info("%s: %d parses for the RSS figure", name, args.parses)
            growth = rss_growth(make(), arg, args.parses)
            parts.append(f"RSS {_size(growth)} over {args.parses:,} parses")
        if args.traced_parses:
            logger.info("%s: %d traced parses", name, args.traced_parses)
            traced = traced_growth(make(), arg, args.traced_parses)
            parts.append(
                f"traced {_size(traced)} over {args.traced_parses:,} parses "
                f"({traced / args.traced_parses:.1f} B per parse)"
            )
        out.write(f"  {name:<12} " + "; ".join(parts) + "\n")
        out.flush()


def _bench_items(args: argparse.Namespace) -> list[BenchTelegram] | None:
    """The telegram of `--file`, or the built-in set; None after logging why the file is unusable."""
    if args.file is None:
        return list(BUILTIN_TELEGRAMS)
    try:
        item = _from_file(args.file, args.spec)
    except OSError as exc:
        logger.error("cannot read %s: %s", args.file, exc.strerror or exc)
        return None
    if item is None:
        logger.error("no good P1 telegram in %s", args.file)
        return None
    return [item]


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table; 2 when dsmr_parser is missing or input is bad."""
    if args.seconds <= 0 or args.rounds < 1 or args.parses < 0 or args.traced_parses < 0:
        logger.error("--seconds must be > 0, --rounds >= 1, --parses and --traced-parses >= 0")
        return EXIT_USAGE
    oracle_modules = load_oracle()
    if oracle_modules is None:
        logger.error(
            "dsmr_parser is not installed; install the dev extra: pip install 'p1-lora[dev]'"
        )
        return EXIT_USAGE
    parsers_module, specs_module = oracle_modules
    items = _bench_items(args)
    if items is None:
        return EXIT_USAGE
    try:
        oracles = [dsmr_parser_for(specs_module, parsers_module, item.spec) for item in items]
    except ValueError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    for item, oracle in zip(items, oracles, strict=True):
        problem = check_agreement(item, oracle)
        if problem is not None:
            logger.error("%s: the parsers disagree (%s); not measuring", item.label, problem)
            return EXIT_FAILED

    out = sys.stdout
    out.write(
        f"P1 telegram parsing, p1-lora vs dsmr_parser (Python {sys.version.split()[0]}; "
        f"best of {args.rounds} rounds of {args.seconds:g} s each)\n\n"
    )
    header = f"{'telegram':<38} {'bytes':>5} {'p1-lora tg/s':>13} {'dsmr_parser tg/s':>17} {'speed-up':>9}"
    out.write(header + "\n" + "-" * len(header) + "\n")
    ratios = []
    for item, oracle in zip(items, oracles, strict=True):
        logger.info("timing %s", item.label)
        ours, theirs = throughput(
            [(parse_telegram, item.raw), (oracle.parse, item.raw.decode("latin-1"))],
            args.seconds,
            args.rounds,
        )
        ratios.append(ours / theirs)
        out.write(
            f"{item.label:<38} {len(item.raw):>5} {ours:>13,.0f} {theirs:>17,.0f} "
            f"{ours / theirs:>8.1f}x\n"
        )
        out.flush()
    if len(ratios) > 1:
        mean = math.exp(sum(math.log(r) for r in ratios) / len(ratios))
        out.write(f"{'geometric mean speed-up':<38} {'':>5} {'':>13} {'':>17} {mean:>8.1f}x\n")
    if any(_has_no_crc(item.raw) for item in items):
        out.write(
            "\nOn telegrams without a CRC (DSMR 2.2/3) dsmr_parser checks nothing and reads only "
            "its 16 DSMR 2.2 objects;\np1-lora still computes the CRC it reports as 'computed' "
            "and reads every line.\n"
        )

    if args.parses or args.traced_parses:
        _write_memory_table(out, args, items, specs_module, parsers_module)
    return EXIT_OK
