"""`p1-lora linkreport LOGFILE [LOGFILE...]`: summarise (and plot) a link-quality log.

The analysis is in `p1lora.receiver.linkreport` (pure functions); this module reads the files,
prints the report and draws the plot. Exit codes: 0 report printed, 1 the plot could not be
written, 2 bad arguments (missing or unreadable file, matplotlib not installed for `--plot`).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from p1lora.receiver.linkreport import (
    DEFAULT_ACK_GRACE_S,
    DEFAULT_MAX_GAP,
    ParsedLog,
    Report,
    analyse,
    format_report,
    parse_lines,
    report_to_dict,
    setting_label,
)

__all__ = ["configure", "rotated_siblings", "run"]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: SNR each SF needs to demodulate (design notes), drawn under the SNR points for orientation.
_SNR_FLOOR_DB = {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
#: Label each settings change in the SF panel unless there are so many that labels would overlap.
_MAX_ANNOTATIONS = 30

_EPILOG = """\
The log is what p1-lora-tx/p1-lora-rx write with --link-log: one JSON object per line (fields
time, kind, type, direction, sf, bw, freq, tx_power, bytes, airtime, rssi, snr, ok, reason; for
loss also counter, session, ack_expected, acked). Pass one node's log: its rotated files with
--rotated, or several files of the same node by name. Loss is computed from the sender's frame
counters (uplink) and from acknowledged frames (acks); see the p1lora.receiver.linkreport
documentation for the exact definitions.
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Summarise a link-quality log per radio setting: frames, loss, RSSI/SNR\n"
        "percentiles, airtime, settings changes and rejected frames."
    )
    parser.epilog = _EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "logfiles", nargs="+", type=Path, metavar="LOGFILE", help="link log file(s) to read"
    )
    parser.add_argument(
        "--rotated",
        action="store_true",
        help="also read the rotated siblings LOGFILE.1, LOGFILE.2, ... of each LOGFILE",
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="OUT.png",
        help="draw RSSI, SNR and SF over time to this image (needs the 'plot' extra: matplotlib)",
    )
    parser.add_argument(
        "--max-gap",
        type=int,
        default=DEFAULT_MAX_GAP,
        metavar="N",
        help="a counter jump larger than this is a sender restart, not loss "
        f"(default {DEFAULT_MAX_GAP})",
    )
    parser.add_argument(
        "--ack-grace",
        type=float,
        default=DEFAULT_ACK_GRACE_S,
        metavar="SECONDS",
        help="frames sent this close to the end of the log are not yet counted as unacknowledged "
        f"(default {DEFAULT_ACK_GRACE_S:g})",
    )


def rotated_siblings(path: Path) -> list[Path]:
    """`path.N` files next to `path`, oldest (highest N) first."""
    pattern = re.compile(re.escape(path.name) + r"\.(\d+)$")
    found: list[tuple[int, Path]] = []
    try:
        candidates = list(path.parent.iterdir())
    except OSError:
        return []
    for candidate in candidates:
        match = pattern.match(candidate.name)
        if match and candidate.is_file():
            found.append((int(match.group(1)), candidate))
    return [p for _, p in sorted(found, reverse=True)]


def _files(args: argparse.Namespace) -> list[Path] | None:
    files: list[Path] = []
    for path in args.logfiles:
        if args.rotated:
            files.extend(rotated_siblings(path))
        files.append(path)
    for path in files:
        if not path.is_file():
            logger.error("linkreport: %s does not exist or is not a file", path)
            return None
    return files


def _lines(files: Sequence[Path]) -> Iterator[tuple[str, int, str]]:
    for path in files:
        with path.open("rb") as handle:
            for number, raw in enumerate(handle, start=1):
                # Undecodable bytes become U+FFFD, and such a line fails as "not JSON".
                yield str(path), number, raw.decode("utf-8", errors="replace")


def _check_plot_target(target: Path) -> bool:
    try:
        import matplotlib  # noqa: F401, PLC0415 - optional extra, only for --plot
    except ImportError:
        logger.error(
            "linkreport: --plot needs matplotlib, which is not installed; install the plot "
            "extra (pip install 'p1-lora[plot]') or leave out --plot"
        )
        return False
    if not target.parent.is_dir():
        logger.error(
            "linkreport: cannot write %s: directory %s does not exist", target, target.parent
        )
        return False
    return True


def _print(text: str) -> None:
    """Write to stdout; a reader that went away (`linkreport ... | head`) is not an error."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null so the interpreter's final flush does not fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def run(args: argparse.Namespace) -> int:
    if args.max_gap < 1:
        logger.error("linkreport: --max-gap must be at least 1, got %d", args.max_gap)
        return EXIT_USAGE
    if args.ack_grace < 0:
        logger.error("linkreport: --ack-grace must not be negative, got %g", args.ack_grace)
        return EXIT_USAGE
    if args.plot is not None and not _check_plot_target(args.plot):
        return EXIT_USAGE
    files = _files(args)
    if files is None:
        return EXIT_USAGE
    try:
        parsed = parse_lines(_lines(files))
    except OSError as exc:
        logger.error("linkreport: cannot read %s: %s", exc.filename, exc.strerror or exc)
        return EXIT_USAGE
    if parsed.bad_lines:
        logger.warning(
            "linkreport: skipped %d bad lines (%s ...)", parsed.bad_lines, parsed.bad_examples[0]
        )
    report = analyse(parsed, max_gap=args.max_gap, ack_grace=args.ack_grace)
    if args.json:
        _print(json.dumps(report_to_dict(report), indent=2) + "\n")
    else:
        _print(format_report(report))
    if args.plot is not None:
        try:
            plot(parsed, report, args.plot)
        except (OSError, ValueError) as exc:
            logger.error("linkreport: could not write the plot to %s: %s", args.plot, exc)
            return EXIT_FAILED
        logger.info("linkreport: plot written to %s", args.plot)
    return EXIT_OK


def plot(parsed: ParsedLog, report: Report, target: Path) -> None:
    """RSSI, SNR (with the SF's demodulation floor) and SF over time, as an image file."""
    import matplotlib  # noqa: PLC0415 - optional extra

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt  # noqa: PLC0415

    def when(seconds: float) -> dt.datetime:
        return dt.datetime.fromtimestamp(seconds, tz=dt.UTC)

    heard = [r for r in parsed.records if r.kind == "frame" and r.direction == "rx"]
    figure, (ax_rssi, ax_snr, ax_sf) = plt.subplots(3, 1, sharex=True, figsize=(11, 8))
    for accepted, style in (
        (True, {"s": 6, "label": "accepted"}),
        (False, {"s": 14, "marker": "x", "color": "tab:red", "label": "rejected"}),
    ):
        subset = [r for r in heard if r.ok is accepted]
        points_rssi = [(when(r.time), r.rssi) for r in subset if r.rssi is not None]
        points_snr = [(when(r.time), r.snr) for r in subset if r.snr is not None]
        options: dict[str, Any] = dict(style)
        if points_rssi:
            ax_rssi.scatter(*zip(*points_rssi, strict=True), **options)
        if points_snr:
            ax_snr.scatter(*zip(*points_snr, strict=True), **options)
    steps_t: list[dt.datetime] = []
    steps_sf: list[int] = []
    steps_floor: list[float] = []
    for change in report.timeline:
        steps_t.append(when(change.time))
        steps_sf.append(change.sf)
        steps_floor.append(_SNR_FLOOR_DB.get(change.sf, float("nan")))
    if steps_t and report.last is not None:
        steps_t.append(when(report.last))
        steps_sf.append(steps_sf[-1])
        steps_floor.append(steps_floor[-1])
        ax_sf.step(steps_t, steps_sf, where="post", color="tab:green")
        ax_snr.step(
            steps_t, steps_floor, where="post", color="tab:gray", linestyle="--", label="SF floor"
        )
        if len(report.timeline) <= _MAX_ANNOTATIONS:
            for change in report.timeline:
                ax_sf.annotate(
                    setting_label((change.sf, change.bw)),
                    (when(change.time), change.sf),
                    textcoords="offset points",
                    xytext=(3, 4),
                    fontsize="x-small",
                )
    ax_rssi.set_ylabel("RSSI (dBm)")
    ax_snr.set_ylabel("SNR (dB)")
    ax_sf.set_ylabel("SF")
    ax_sf.set_yticks(range(6, 13))
    ax_sf.set_ylim(5.5, 12.5)
    ax_sf.set_xlabel("time (UTC)")
    for axis in (ax_rssi, ax_snr):
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="best", fontsize="small")
    ax_sf.grid(alpha=0.3)
    figure.suptitle("p1-lora link quality")
    figure.autofmt_xdate()
    try:
        figure.savefig(target, dpi=110)
    finally:
        plt.close(figure)
