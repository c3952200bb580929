"""`p1-lora meter`: a virtual smart meter on a new pty (or stdout), for tests, demos and setup.

Without hardware there is no P1 port to point `p1-lora-tx` at; this command makes one. It
prints the path of a fresh pseudo-terminal and writes a realistic, evolving telegram stream to
it at the meter's interval and baud rate until Ctrl-C or SIGTERM. `--link` keeps a stable
symlink to the pty, like /dev/serial/by-id/..., so a configuration need not change when the
meter restarts. `--stdout` writes the stream to standard output instead (with `--count` and
`--speed max` it makes capture files). Fault flags make the line misbehave on purpose,
`--replay` plays back a real meter's capture instead of the simulation, and `--template`
simulates any meter in the exact style of one of its telegrams (`meter_template`).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import math
import os
import signal
import sys
import threading
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from types import FrameType

from p1lora.hardware.realtime import SystemClock
from p1lora.transmitter.capture_replay import CaptureReplay, ReplayError
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_profiles import PROFILES, SerialSettings, get_profile
from p1lora.transmitter.meter_template import load_template
from p1lora.transmitter.meter_writer import (
    FdSink,
    LineSink,
    MeterWriter,
    PtyPort,
    StableLink,
    WriterStats,
)
from p1lora.transmitter.virtual_meter import VirtualMeter

__all__ = ["configure", "run"]

logger = logging.getLogger(__name__)

EPILOG = """\
examples:
  p1-lora meter                           DSMR 5 meter on a new pty; prints e.g. /dev/pts/7
  p1-lora meter --link /tmp/p1 --speed 10 stable path /tmp/p1, ten times real time
  p1-lora meter --profile dsmr4 --bit-errors 0.1 --junk 0.05
  p1-lora meter --stdout --count 3600 --speed max > capture.txt
  p1-lora meter --replay capture.txt --loop --link /tmp/p1
  p1-lora meter --template my-meter.txt   any meter, in the exact style of one telegram

profiles:
{profiles}

The stream is paced like the real line: each telegram leaves at the meter's interval (divided
by --speed) and its bytes at the profile's baud rate. Fault probabilities are per telegram.
Replayed telegrams are byte-exact (timestamps are not rewritten; with --loop the registers
restart at each pass).

--template FILE takes the first telegram in FILE (any P1 meter: DSMR 2.2-5, e-MUCS, Smarty,
Sagemcom, EasyMeter ...) and keeps its header, line order, OBIS codes, units and digit counts,
starting from its values: the clock, energy registers (per tariff and totals), power per phase,
voltages, currents, tariff, quarter-hour demand and gas/water readings (with their own capture
times) evolve; every other line is kept verbatim; the CRC is recomputed when the template has
one. Interval and serial line follow its version line (DSMR 5 and e-MUCS: every 1 s, 115200
8N1; DSMR 4: 10 s, 115200 7E1; no CRC: 10 s, 9600 7E1; other meters with a CRC: 10 s, 115200
8N1); --profile NAME takes that profile's behaviour instead and --interval sets the interval.
Exit codes: 0 done or stopped, 1 no pty available, 2 bad arguments
or unreadable input.
"""


def _probability(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a probability between 0 and 1")
    return value


def _speed(text: str) -> float:
    if text.lower() in ("max", "inf", "unlimited"):
        return math.inf
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number or 'max'") from None
    if not 0.0 < value <= 10_000.0:
        raise argparse.ArgumentTypeError(f"speed {text} is outside 0..10000 (or 'max')")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _start(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date-time such as 2024-03-31T01:59:00+01:00"
        ) from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} has no UTC offset; write it like 2024-03-31T01:59:00+01:00 or ...Z"
        )
    return moment


def _seconds_range(text: str) -> tuple[float, float]:
    parts = text.replace("-", ",").split(",")
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not SECONDS or MIN,MAX") from None
    low, high = (values[0], values[0]) if len(values) == 1 else (values[0], values[-1])
    if len(values) > 2 or not 0.0 < low <= high:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid range of seconds")
    return low, high


def _solar(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 <= value <= 50.0:
        raise argparse.ArgumentTypeError(f"{text} kWp is outside 0..50")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `p1-lora meter` arguments."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Run a virtual smart meter: print the path of a new pty and write a realistic P1 "
        "telegram stream to it until Ctrl-C/SIGTERM (or to stdout with --stdout)."
    )
    width = max(len(name) for name in PROFILES)
    parser.epilog = EPILOG.format(
        profiles="\n".join(
            f"  {name:<{width}}  {p.description}; {p.serial.label}, every {p.interval} s"
            for name, p in PROFILES.items()
        )
    )
    out = parser.add_argument_group("output")
    where = out.add_mutually_exclusive_group()
    where.add_argument(
        "--stdout", action="store_true", help="write the stream to standard output, not a pty"
    )
    where.add_argument(
        "--link",
        metavar="PATH",
        help="keep a symlink at PATH pointing to the pty (replaced atomically, removed on exit)",
    )
    out.add_argument(
        "--count", type=_positive_int, metavar="N", help="stop after N telegrams were written"
    )
    out.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="run time X times faster (intervals and byte pacing); 'max' = no pacing, "
        "--stdout only (default: 1). Without a CRC (dsmr22, or such a template) a real "
        "p1-lora-tx checks that registers rise no faster than physically possible in the "
        "time it measures between telegrams (at least 10 s): above 1 the meter's clock runs "
        "faster than that, so high loads can be refused as implausible; test that check "
        "at --speed 1",
    )
    meter = parser.add_argument_group("meter")
    meter.add_argument(
        "--profile",
        choices=list(PROFILES),
        default=None,
        help="meter style (default: dsmr5; with --replay: the capture's own serial settings; "
        "with --template: its serial line, interval, tariffs and gas cadence)",
    )
    meter.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    meter.add_argument(
        "--start",
        type=_start,
        metavar="ISO",
        help="meter time of the first telegram, with UTC offset (default: now)",
    )
    meter.add_argument(
        "--solar",
        type=_solar,
        metavar="KWP",
        help="rooftop solar size in kWp (default: the profile's; 0 for none)",
    )
    source = meter.add_mutually_exclusive_group()
    source.add_argument(
        "--replay",
        metavar="FILE",
        help="replay the telegrams of a capture file instead of simulating (byte-exact)",
    )
    source.add_argument(
        "--template",
        metavar="FILE",
        help="simulate the meter whose telegram is in FILE, in its exact style (see below)",
    )
    meter.add_argument(
        "--interval",
        type=_positive_int,
        metavar="S",
        help="seconds between telegrams (default: the profile's or the template's)",
    )
    meter.add_argument("--loop", action="store_true", help="with --replay: start over at the end")
    faults = parser.add_argument_group("fault injection (probability per telegram, 0..1)")
    faults.add_argument(
        "--bit-errors",
        type=_probability,
        default=0.0,
        metavar="P",
        help=(
            "flip 1-3 bits of a telegram with probability P; with a CRC (DSMR 4/5) it then "
            "fails it, without one (dsmr22) only p1-lora-tx's plausibility check can catch it"
        ),
    )
    faults.add_argument(
        "--truncate",
        type=_probability,
        default=0.0,
        metavar="P",
        help="cut the telegram off part-way; the next one follows at once",
    )
    faults.add_argument(
        "--junk", type=_probability, default=0.0, metavar="P", help="noise before the telegram"
    )
    faults.add_argument(
        "--silence",
        type=_probability,
        default=0.0,
        metavar="P",
        help="the meter goes quiet for a while (see --silence-seconds)",
    )
    faults.add_argument(
        "--silence-seconds",
        type=_seconds_range,
        default=(5.0, 60.0),
        metavar="MIN,MAX",
        help="length of a silent period in meter seconds (default: 5,60)",
    )
    faults.add_argument(
        "--fault-seed", type=int, default=None, help="seed of the fault injector (default: --seed)"
    )


def _speed_label(speed: float) -> str:
    if math.isinf(speed):
        return ", no pacing"
    return "" if speed == 1 else f", {speed:g}x speed"


def _usage_error(message: str) -> int:
    logger.error("%s", message)
    return 2


def _events(
    args: argparse.Namespace,
) -> tuple[Iterable[tuple[float, bytes]], SerialSettings, str]:
    """The stream to write, its serial line, and a description for the log."""
    if args.replay:
        replay = CaptureReplay.from_file(args.replay, loop=args.loop)
        serial = get_profile(args.profile).serial if args.profile else replay.serial_settings
        what = f"replay of {args.replay}: {len(replay)} telegram(s) every {replay.interval:g} s" + (
            ", looping" if args.loop else ""
        )
        return replay, serial, what
    start = args.start or datetime.now(UTC)
    if args.template:
        template = load_template(args.template, profile=args.profile, interval=args.interval)
        meter = template.meter(seed=args.seed, start=start, solar_kwp=args.solar)
        style = (
            f"meter in the style of {args.template} ({template.live_lines} live line(s), "
            f"{template.verbatim_lines} verbatim)"
        )
    else:
        profile = get_profile(args.profile or "dsmr5")
        if args.interval is not None:
            profile = dataclasses.replace(profile, interval=args.interval)
        meter = VirtualMeter(profile, seed=args.seed, start=start, solar_kwp=args.solar)
        style = f"{meter.profile.name} meter"
    what = (
        f"virtual {style} (seed {args.seed}, solar {meter.solar_kwp:g} kWp) "
        f"from {meter.start.isoformat()}, every {meter.interval:g} s"
    )
    return meter, meter.serial_settings, what


def _with_faults(
    events: Iterable[tuple[float, bytes]], args: argparse.Namespace, serial: SerialSettings
) -> tuple[Iterable[tuple[float, bytes]], FaultInjector | None]:
    config = FaultConfig(
        bit_errors=args.bit_errors,
        truncate=args.truncate,
        junk=args.junk,
        silence=args.silence,
        silence_seconds=args.silence_seconds,
    )
    if not config.enabled:
        return events, None
    seed = args.seed if args.fault_seed is None else args.fault_seed
    injector = FaultInjector(config, seed=seed, data_bits=serial.bytesize)
    return inject(events, injector), injector


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT end the run cleanly (links removed, pty closed, stats logged)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run(args: argparse.Namespace) -> int:
    """Run the meter until done or stopped.

    Exit codes: 0 on a clean end (also after Ctrl-C or SIGTERM), 1 when no pty can be made,
    2 on bad arguments or unreadable input.
    """
    if args.loop and not args.replay:
        return _usage_error("--loop only applies to --replay")
    if args.replay and (
        args.start is not None or args.solar is not None or args.interval is not None
    ):
        return _usage_error(
            "--start, --solar and --interval apply to the virtual meter, not to --replay"
        )
    if math.isinf(args.speed) and not args.stdout:
        return _usage_error(
            "--speed max needs --stdout: a pty reader needs a paced meter (try --speed 100)"
        )
    try:
        events, serial, what = _events(args)
    except (ReplayError, ValueError) as exc:
        return _usage_error(str(exc))
    events, injector = _with_faults(events, args, serial)

    stop = threading.Event()
    with _stop_on_signals(stop):
        return _serve(args, events=events, serial=serial, what=what, injector=injector, stop=stop)


def _serve(
    args: argparse.Namespace,
    *,
    events: Iterable[tuple[float, bytes]],
    serial: SerialSettings,
    what: str,
    injector: FaultInjector | None,
    stop: threading.Event,
) -> int:
    """Open the output, write until done or stopped, and always clean up the pty and link."""
    clock = SystemClock()
    port: PtyPort | None = None
    link: StableLink | None = None
    sink: LineSink
    try:
        if args.stdout:
            sys.stdout.flush()
            sink = FdSink(sys.stdout.fileno())
        else:
            try:
                link = StableLink(args.link) if args.link else None
            except OSError as exc:
                return _usage_error(f"--link: {exc}")
            try:
                port = PtyPort()
            except OSError as exc:
                logger.error("cannot create a pseudo-terminal: %s", exc.strerror or exc)
                return 1
            if link is not None:
                try:
                    link.point_to(port.path)
                except OSError as exc:
                    link = None
                    return _usage_error(f"--link: cannot create {args.link}: {exc.strerror}")
            sink = port
            print(port.path, flush=True)
        logger.info(
            "%s; %s at %s%s",
            what,
            "stdout" if port is None else port.path,
            serial.label,
            _speed_label(args.speed),
        )
        writer = MeterWriter(sink, serial, clock, speed=args.speed)
        stats = writer.run(events, stop, count=args.count)
        if port is not None and args.count is not None and not stop.is_set():
            # Give the reader the tail of the last telegram before the cable "goes away".
            port.drain(clock, stop)
        _log_summary(stats, injector, port)
    except BrokenPipeError:
        # The consumer of --stdout went away (e.g. `| head`): that ends the run, quietly.
        with contextlib.suppress(OSError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        logger.debug("stdout closed by the reader")
    finally:
        if link is not None:
            link.remove()
        if port is not None:
            port.close()
    return 0


def _log_summary(stats: WriterStats, injector: FaultInjector | None, port: PtyPort | None) -> None:
    parts = [f"{stats.telegrams} telegram(s), {stats.bytes_written} bytes written"]
    if stats.bytes_dropped:
        parts.append(f"{stats.bytes_dropped} bytes dropped (nobody reading)")
    if port is not None and port.flushes:
        parts.append(f"stale data flushed {port.flushes} time(s)")
    if injector is not None:
        injected = {k: v for k, v in injector.stats.as_dict().items() if v and k != "telegrams"}
        parts.append(f"faults injected: {injected or 'none'}")
    logger.info("meter stopped: %s", "; ".join(parts))
