"""`p1-lora parse`: P1 telegrams from a file, a capture or stdin, as JSON lines.

Users paste telegrams from forum posts, save captures with `cat /dev/ttyUSB0 > capture.txt`, or
pipe a live port in; all of that goes through the same framer the transmitter uses, so what
this command accepts is exactly what p1-lora-tx accepts. Output is one JSON object per telegram
on stdout (flushed per telegram, so a live pipe shows each one as it arrives); diagnostics go
to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from p1lora.common.framing import (
    DEFAULT_MAX_TELEGRAM_BYTES,
    PROBLEM_CRC,
    FramedTelegram,
    TelegramFramer,
    check_crc,
    excerpt,
)
from p1lora.common.parser import TelegramParseError, parse_telegram
from p1lora.common.telegram import dumps, to_json_dict

__all__ = ["configure", "run"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_CRC = 1
EXIT_USAGE = 2

_READ_SIZE = 65536

_DESCRIPTION = """\
Parse P1 smart-meter telegrams and print one JSON object per telegram, one per line:

  {"header": "ISk5\\\\2MT382-1000", "crc": {"expected": "1F28", "computed": "1F28",
   "valid": true}, "objects": [{"obis": "1-0:1.8.1", "key": "electricity_used_tariff_1",
   "value": 3808.351, "unit": "kWh", "channel": null, "timestamp": null}, ...],
   "derived": {...}}

FILE may hold one telegram or a whole capture (many telegrams, junk in between); without
FILE, or with '-', telegrams are read from stdin (a live serial stream works too).

Numbers are JSON numbers with exactly the meter's digits (0.000 stays 0.000). M-Bus readings
(gas, water, heat) carry their channel and the time the sub-meter was read. Lines the OBIS
table does not know, and known lines whose value cannot be read (null), are kept with their
raw text. "derived" holds the import/export totals, net energy and net power; a total is null
when one of its registers is unreadable (never a partial sum).

CRC: DSMR 4/5 telegrams end in a CRC-16. A telegram whose CRC does not match is reported on
stderr with both values (the one in the telegram and the computed one), it is not printed,
and the command exits 1. --no-crc-check prints it anyway (with "valid": false). DSMR 2.2/3
telegrams have no CRC ("expected": null, "valid": null).

Line endings: a telegram saved with LF line endings (copied from a web page) is accepted when
its CRC passes after restoring the CRLF line endings the meter sent; a note says so on stderr.

Exit status: 0 every telegram is good, 1 a telegram failed its CRC (or held bytes that cannot
be telegram text), 2 bad usage, an unreadable file, or no telegram in the input.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `p1-lora parse`."""
    parser.description = _DESCRIPTION
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "file",
        nargs="?",
        default="-",
        metavar="FILE",
        help="telegram or capture file; '-' or nothing reads stdin",
    )
    parser.add_argument(
        "--no-crc-check",
        action="store_true",
        help="print telegrams that fail their CRC too (still reported on stderr; exit 0)",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help=(
            "add each line's raw text to every object (unknown lines and lines whose value "
            "could not be read always have it)"
        ),
    )
    parser.add_argument(
        "--max-telegram-bytes",
        type=int,
        default=DEFAULT_MAX_TELEGRAM_BYTES,
        metavar="N",
        help=f"longest telegram accepted (default {DEFAULT_MAX_TELEGRAM_BYTES})",
    )


class _Session:
    """State of one run: counts, and what to do with each framed telegram."""

    def __init__(self, args: argparse.Namespace, out: TextIO) -> None:
        self.args = args
        self.out = out
        self.number = 0
        self.printed = 0
        self.failed = 0

    def handle(self, framed: FramedTelegram) -> None:
        self.number += 1
        raw, crc, problem = framed.raw, framed.crc, framed.problem
        lf_only = b"\r\n" not in raw
        if lf_only:
            restored = raw.replace(b"\n", b"\r\n")
            restored_crc = check_crc(restored)
            if restored_crc is not None and problem in (None, PROBLEM_CRC):
                if restored_crc.valid:
                    logger.warning(
                        "telegram %d: line endings were LF only (copied from a web page?); "
                        "restored CRLF and the CRC %s now matches",
                        self.number,
                        restored_crc.expected,
                    )
                    raw, crc, problem = restored, restored_crc, None
                elif restored_crc.valid is None and problem is None:
                    logger.warning(
                        "telegram %d: line endings were LF only; restored CRLF "
                        "(this telegram has no CRC to confirm it)",
                        self.number,
                    )
                    raw, crc = restored, restored_crc
        if problem is not None:
            self.failed += 1
            if problem == PROBLEM_CRC:
                logger.error(
                    "telegram %d (%s): CRC mismatch: the telegram says %s, computed %s",
                    self.number,
                    _header_of(raw),
                    crc.expected,
                    crc.computed,
                )
            else:
                logger.error("telegram %d (%s): %s", self.number, _header_of(raw), problem)
            if not self.args.no_crc_check:
                return
        try:
            telegram = parse_telegram(raw, crc)
        except TelegramParseError as exc:  # pragma: no cover - the framer guarantees a telegram
            logger.error("telegram %d: %s", self.number, exc)
            self.failed += 1
            return
        self.out.write(dumps(to_json_dict(telegram, include_raw=self.args.raw)))
        self.out.write("\n")
        self.out.flush()
        self.printed += 1


def _header_of(raw: bytes) -> str:
    """The telegram's first line for an error message: escaped and cut short (`excerpt`),
    because a failed "telegram" may be kilobytes of noise with control characters."""
    line = raw.split(b"\n", 1)[0].rstrip(b"\r")
    return excerpt(line)


def _open(name: str) -> BinaryIO:
    if name == "-":
        return sys.stdin.buffer
    path = Path(name)
    if path.is_dir():
        raise IsADirectoryError(21, "is a directory", name)
    return path.open("rb")


def _feed_all(stream: BinaryIO, framer: TelegramFramer, session: _Session) -> int:
    """Feed the whole input through the framer; returns the number of bytes read."""
    # read1 returns what has arrived, so a live pipe is printed telegram by telegram.
    read = getattr(stream, "read1", None) or stream.read
    total = 0
    while True:
        chunk = read(_READ_SIZE)
        if not chunk:
            break
        total += len(chunk)
        for framed in framer.feed(chunk, include_bad=True):
            session.handle(framed)
    for framed in framer.flush(include_bad=True):
        session.handle(framed)
    return total


def run(args: argparse.Namespace) -> int:
    """Parse the input; see the module description for exit codes."""
    if args.max_telegram_bytes < 16:
        logger.error("--max-telegram-bytes must be at least 16")
        return EXIT_USAGE
    source = "stdin" if args.file == "-" else args.file
    try:
        stream = _open(args.file)
    except OSError as exc:
        logger.error("cannot read %s: %s", source, exc.strerror or exc)
        return EXIT_USAGE
    framer = TelegramFramer(args.max_telegram_bytes)
    session = _Session(args, sys.stdout)
    try:
        total = _feed_all(stream, framer, session)
    except BrokenPipeError:
        # The reader went away (`| head`): not an error of ours.
        _silence_stdout()
        return EXIT_OK
    except OSError as exc:
        logger.error("cannot read %s: %s", source, exc.strerror or exc)
        return EXIT_USAGE
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()
    _report(framer, source)
    if session.number == 0:
        logger.error(
            "no P1 telegram found in %s (%d bytes read; a telegram starts with '/' at the "
            "start of a line and ends with '!')",
            source,
            total,
        )
        return EXIT_USAGE
    if session.failed and not args.no_crc_check:
        return EXIT_CRC
    return EXIT_OK


def _report(framer: TelegramFramer, source: str) -> None:
    stats = framer.stats
    notes = []
    if stats.cut_off:
        notes.append(f"{stats.cut_off} cut-off telegram(s) skipped")
    if stats.oversize:
        notes.append(f"{stats.oversize} over-long fragment(s) without an end skipped")
    if stats.bad_end:
        notes.append(f"{stats.bad_end} telegram(s) with a broken end line skipped")
    if notes:
        logger.warning("%s: %s", source, "; ".join(notes))
    logger.debug(
        "%s: %d good telegrams, %d bytes not part of a good telegram",
        source,
        stats.telegrams_ok,
        stats.bytes_discarded,
    )


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the exit-time flush stays quiet."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
