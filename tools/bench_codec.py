"""`p1-lora bench codec`: what the lossless telegram codec costs on the air, per meter profile.

The link's budget is decided by the bytes of a typical update, so this benchmark runs the real
codec over realistic streams (the virtual meter's profiles, or capture files) and prints a table:
telegram size, encoded update bytes (median, p95, max), the whole on-air frame (update plus the
frame's header, counter and tag), key-telegram bytes, how updates were coded, and the encode and
decode time per update. Every update is decoded again and compared byte for byte with the
original; a mismatch makes the command fail (exit code 1), so the numbers are only ever those of
a correct codec.

The transmitter's reference is the last *acknowledged* telegram; `--ack-loss P` drops each
acknowledgement with probability P (seeded), so deltas then span several seconds, as on a lossy
link. The receiver keeps the last few delivered telegrams, like the real one.

Other engineers register this module in `p1lora.tools.bench_command`; `run_codec_benchmark()` is
the callable behind it and returns the rows for programmatic use.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from p1lora.common.codec import (
    CodecError,
    PayloadKind,
    decode_update,
    encode_update,
    payload_kind,
    reference_id,
    telegram_id,
)

__all__ = [
    "DEFAULT_PROFILES",
    "FRAME_OVERHEAD_BYTES",
    "CodecBenchRow",
    "configure",
    "format_table",
    "run",
    "run_codec_benchmark",
    "stream_stats",
]

logger = logging.getLogger(__name__)

#: Bytes a radio frame adds around a codec payload: header, counter and the 8-byte CCM tag.
FRAME_OVERHEAD_BYTES = 15
DEFAULT_PROFILES = ("dsmr5", "fluvius", "dsmr4", "dsmr22")
#: Telegrams the receiver keeps as possible references (the link layer's choice; 4 is typical).
RECEIVER_REFERENCES = 4
#: A key is measured for every this-many telegrams (keys are rare on the air; this samples them).
KEY_SAMPLE_EVERY = 60


@dataclass(frozen=True, slots=True)
class CodecBenchRow:
    """One line of the table: a stream's sizes, mixes and timings."""

    source: str
    telegrams: int
    telegram_bytes_median: float
    update_bytes_median: float
    update_bytes_p95: int
    update_bytes_max: int
    frame_bytes_median: float
    key_bytes_median: float
    key_bytes_max: int
    field_deltas_percent: float
    deflate_deltas_percent: float
    keys_sent: int
    key_requests: int
    encode_us_median: float
    decode_us_median: float
    wrong: int


def _p95(sorted_values: Sequence[int]) -> int:
    return sorted_values[min(len(sorted_values) - 1, int(0.95 * len(sorted_values)))]


def _holding(reference: bytes | None) -> Callable[[int], bytes | None]:
    """A receiver lookup that holds just `reference` (what the timed decode needs)."""

    def lookup(_ident: int) -> bytes | None:
        return reference

    return lookup


class _Receiver:
    """The receiver's side of the link model: decode, keep the last few telegrams."""

    def __init__(self) -> None:
        self.held: OrderedDict[int, bytes] = OrderedDict()

    def deliver(self, payload: bytes) -> bytes:
        rebuilt = decode_update(payload, self.held.get)
        ident = telegram_id(rebuilt)
        self.held.pop(ident, None)
        self.held[ident] = rebuilt
        while len(self.held) > RECEIVER_REFERENCES:
            self.held.popitem(last=False)
        return rebuilt


def stream_stats(
    source: str,
    telegrams: Sequence[bytes],
    *,
    ack_loss: float = 0.0,
    seed: int = 0,
    overhead: int = FRAME_OVERHEAD_BYTES,
) -> CodecBenchRow:
    """Run a telegram stream through the link's use of the codec and summarise it.

    The transmitter encodes against the last acknowledged telegram (acks are lost with
    probability `ack_loss`); the receiver decodes with the last few delivered telegrams; when
    it does not hold the reference it asks for a key, as the link does. Timing runs as separate
    encode-only and decode-only passes over the recorded updates, so each side has only its own
    caches warm, as in two processes on two Pis.
    """
    if len(telegrams) < 2:
        raise ValueError(f"{source}: a stream needs at least two telegrams")
    rng = random.Random(f"bench-codec:{seed}")
    receiver = _Receiver()
    steps: list[tuple[bytes, bytes | None, bytes, bytes | None]] = []
    reference: bytes | None = None
    wrong = key_requests = 0
    for telegram in telegrams:
        payload = encode_update(telegram, reference)
        ref_id = reference_id(payload)
        held_ref = None if ref_id is None else receiver.held.get(ref_id)
        try:
            rebuilt = receiver.deliver(payload)
        except CodecError as error:
            logger.debug("%s: receiver asks for a key: %s", source, error)
            key_requests += 1
            reference = None
            continue
        if rebuilt != telegram:
            wrong += 1
            continue
        steps.append((telegram, reference, payload, held_ref))
        if rng.random() >= ack_loss:
            reference = telegram

    encode_s = []
    for telegram, ref_used, _, _ in steps:
        start = time.perf_counter()
        encode_update(telegram, ref_used)
        encode_s.append(time.perf_counter() - start)
    decode_s = []
    for _, _, payload, held_ref in steps:
        start = time.perf_counter()
        decode_update(payload, _holding(held_ref))
        decode_s.append(time.perf_counter() - start)

    payloads = [payload for _, _, payload, _ in steps[1:]]
    if not payloads:
        raise ValueError(f"{source}: no update after the first was delivered")
    kinds = Counter(payload_kind(payload) for payload in payloads)
    updates = sorted(len(payload) for payload in payloads)
    keys = sorted(len(encode_update(telegram, None)) for telegram in telegrams[::KEY_SAMPLE_EVERY])
    count = len(updates)
    key_kinds = (PayloadKind.KEY_FIELDS, PayloadKind.KEY_DEFLATE, PayloadKind.KEY_STORED)
    return CodecBenchRow(
        source=source,
        telegrams=len(telegrams),
        telegram_bytes_median=statistics.median(len(t) for t in telegrams),
        update_bytes_median=statistics.median(updates),
        update_bytes_p95=_p95(updates),
        update_bytes_max=updates[-1],
        frame_bytes_median=statistics.median(updates) + overhead,
        key_bytes_median=statistics.median(keys),
        key_bytes_max=keys[-1],
        field_deltas_percent=100.0 * kinds[PayloadKind.DELTA_FIELDS] / count,
        deflate_deltas_percent=100.0 * kinds[PayloadKind.DELTA_DEFLATE] / count,
        keys_sent=sum(kinds[kind] for kind in key_kinds),
        key_requests=key_requests,
        encode_us_median=statistics.median(encode_s) * 1e6,
        decode_us_median=statistics.median(decode_s) * 1e6,
        wrong=wrong,
    )


def _profile_stream(
    profile: str, seed: int, duration_s: float, start: datetime | None
) -> list[bytes]:
    # Imported here: the transmitter package is only needed when a profile is benchmarked.
    from p1lora.transmitter.virtual_meter import VirtualMeter  # noqa: PLC0415

    meter = VirtualMeter(profile, seed=seed, start=start)
    return [telegram for _, telegram in meter.telegrams_until(duration_s)]


def _capture_stream(path: Path) -> list[bytes]:
    from p1lora.common.framing import TelegramFramer  # noqa: PLC0415

    framer = TelegramFramer()
    framed = framer.feed(path.read_bytes()) + framer.flush()
    return [telegram.raw for telegram in framed]


def run_codec_benchmark(
    profiles: Iterable[str] = DEFAULT_PROFILES,
    *,
    captures: Iterable[Path] = (),
    duration_s: float = 3600.0,
    seed: int = 0,
    ack_loss: float = 0.0,
    start: datetime | None = None,
    overhead: int = FRAME_OVERHEAD_BYTES,
) -> list[CodecBenchRow]:
    """Benchmark each virtual-meter profile (over `duration_s` of meter time) and capture file."""
    rows = []
    for profile in profiles:
        telegrams = _profile_stream(profile, seed, duration_s, start)
        rows.append(
            stream_stats(profile, telegrams, ack_loss=ack_loss, seed=seed, overhead=overhead)
        )
    for path in captures:
        telegrams = _capture_stream(path)
        rows.append(
            stream_stats(path.name, telegrams, ack_loss=ack_loss, seed=seed, overhead=overhead)
        )
    return rows


_COLUMNS = (
    ("source", "source", "{}"),
    ("telegrams", "n", "{}"),
    ("telegram_bytes_median", "telegram B", "{:.0f}"),
    ("update_bytes_median", "update B med", "{:.1f}"),
    ("update_bytes_p95", "p95", "{}"),
    ("update_bytes_max", "max", "{}"),
    ("frame_bytes_median", "frame B med", "{:.1f}"),
    ("key_bytes_median", "key B med", "{:.0f}"),
    ("key_bytes_max", "key B max", "{}"),
    ("field_deltas_percent", "fields %", "{:.1f}"),
    ("deflate_deltas_percent", "deflate %", "{:.1f}"),
    ("keys_sent", "keys", "{}"),
    ("key_requests", "key req", "{}"),
    ("encode_us_median", "enc us", "{:.0f}"),
    ("decode_us_median", "dec us", "{:.0f}"),
    ("wrong", "wrong", "{}"),
)


def format_table(rows: Sequence[CodecBenchRow]) -> str:
    """A plain-text table, one row per stream, columns right-aligned."""
    header = [title for _, title, _ in _COLUMNS]
    body = [[spec.format(getattr(row, name)) for name, _, spec in _COLUMNS] for row in rows]
    widths = [max(len(cell) for cell in column) for column in zip(header, *body, strict=True)]
    lines = [
        "  ".join(
            cell.ljust(width) if index == 0 else cell.rjust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        for cells in [header, *body]
    ]
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Arguments of `p1-lora bench codec`."""
    parser.description = (
        "Encode realistic telegram streams with the lossless codec, decode them again, and "
        "print update and key sizes, on-air frame size and timings per meter profile."
    )
    parser.add_argument(
        "--profile",
        action="append",
        dest="profiles",
        metavar="NAME",
        help=f"virtual meter profile (repeatable; default: {', '.join(DEFAULT_PROFILES)})",
    )
    parser.add_argument(
        "--capture",
        action="append",
        type=Path,
        default=[],
        metavar="FILE",
        help="benchmark the telegrams in a capture file (repeatable); without --profile, "
        "only the captures are run",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=3600.0,
        metavar="S",
        help="seconds of meter time per profile (default: 3600)",
    )
    parser.add_argument("--seed", type=int, default=0, help="meter and loss seed (default: 0)")
    parser.add_argument(
        "--ack-loss",
        type=float,
        default=0.0,
        metavar="P",
        help="probability that an acknowledgement is lost, 0 <= P < 1 (default: 0)",
    )
    parser.add_argument(
        "--start",
        metavar="ISO",
        help="meter start time, timezone-aware ISO 8601 (default: the virtual meter's)",
    )
    parser.add_argument(
        "--overhead",
        type=int,
        default=FRAME_OVERHEAD_BYTES,
        metavar="B",
        help=f"frame bytes around each update (default: {FRAME_OVERHEAD_BYTES})",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object per line")


def _validate(args: argparse.Namespace) -> str | None:
    """A message for the first invalid argument, or None."""
    from p1lora.transmitter.meter_profiles import PROFILES  # noqa: PLC0415

    for profile in args.profiles or ():
        if profile not in PROFILES:
            return f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}"
    if not args.duration > 0:
        return f"--duration must be positive, not {args.duration:g}"
    if not 0.0 <= args.ack_loss < 1.0:
        return f"--ack-loss must be at least 0 and below 1, not {args.ack_loss:g}"
    if args.overhead < 0:
        return f"--overhead must not be negative, not {args.overhead}"
    for path in args.capture:
        if not path.is_file():
            return f"capture file {path} does not exist or is not a file"
    if args.start is not None:
        try:
            start = datetime.fromisoformat(args.start)
        except ValueError:
            return f"--start {args.start!r} is not an ISO 8601 time"
        if start.tzinfo is None:
            return f"--start {args.start!r} needs a timezone, e.g. {args.start}+01:00"
    return None


def run(args: argparse.Namespace) -> int:
    """Run the benchmark; 0 when every update decoded exactly, 1 otherwise, 2 for bad input."""
    problem = _validate(args)
    if problem is not None:
        logger.error("%s", problem)
        return 2
    profiles = tuple(args.profiles) if args.profiles else DEFAULT_PROFILES
    if args.capture and not args.profiles:
        profiles = ()
    start = datetime.fromisoformat(args.start) if args.start else None
    try:
        rows = run_codec_benchmark(
            profiles,
            captures=args.capture,
            duration_s=args.duration,
            seed=args.seed,
            ack_loss=args.ack_loss,
            start=start,
            overhead=args.overhead,
        )
    except (OSError, ValueError) as error:
        logger.error("%s", error)
        return 2
    if args.json:
        for row in rows:
            print(json.dumps(asdict(row)))
    else:
        print(format_table(rows))
    wrong = sum(row.wrong for row in rows)
    if wrong:
        logger.error("%d updates did not decode to their telegram", wrong)
        return 1
    return 0
