"""`p1-lora sim`: a whole link on a virtual clock, and a report of how well it carried the meter.

Runs `tools.sim.Simulation`: the virtual meter (`--profile`) or a capture (`--meter FILE`)
feeds a complete transmitter and receiver (real codec, crypto and link state machines, the real
SX127x driver on the emulator) over the simulated channel. An hour of link time takes seconds.
`--baseline NAME` also runs the ESP32 firmware p1-lora descends from (`tools.esp32_baseline`,
ported from its source) on an identical channel with the same meter, so both can be compared in
one report: `esp32` as shipped (868.0 MHz, 17 dBm, every bug of its newest source) and
`esp32-same-channel` (p1-lora's channel and TX power: like for like).

`--json` prints one JSON object: p1-lora's metrics at the top level and each baseline's under
`baselines` (keyed by name). Every run has the fields of `tools.sim_metrics.SimMetrics`:

| key | meaning |
|-----|---------|
| delivers | "telegrams" (byte-exact, p1-lora) or "readings" (the firmware's values) |
| telegrams_read | telegrams the meter produced while the transmitter ran |
| delivered, delivered_per_hour | what the receiver handed on correctly (telegrams or readings) |
| delivered_corrupt | handed on, not what was sent (flipped bits); not counted in delivered |
| first_delivery_s, max_gap_s | first delivery; longest time without one after it (end included) |
| convergence_s | when the transmitter arrived at the SF/BW it kept to the end |
| latency_ms_p50 / _p95 | meter telegram time -> delivery |
| frame_bytes_median / _p95 | on-air size of the frames carrying meter data |
| airtime_s_tx / _rx | total airtime of each side, every frame counted |
| duty_cycle_max_tx / _rx | largest airtime in any sliding hour / 3600 s, from the frame log |
| budget_exceeded | either side above the sub-band's duty cycle in some hour |
| handshake_airtime_s | all airtime of both sides before the first delivery (whole run without one) |
| final_sf, final_bw (kHz), final_tx_power_dbm, final_state | where the transmitter ended |
| settings_timeline | [[t, SF, BW kHz, TX power dBm], ...] of the transmitter |

p1-lora adds telegrams_delivered / _corrupt / _duplicate / _out_of_order / _unchanged (identical
to the one the receiver already had: not sent), delivery_ratio(_after_convergence),
update_frames, tuning_airtime_s (SWITCH + PROBE), frames_rejected(_tx/_rx) by reason,
link_lost, switches_committed / _failed and the channel's counters; the firmware adds
readings_sent, calibration_frames, values_per_reading, values_wrong_fraction, resyncs by
cause, receiver_sync_requests, receiver_silence_timeouts and readings_acked_not_published.

Exit codes: 0 done, 2 bad input (with a message on stderr).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from typing import TextIO

from p1lora.common.link import FixedRadio
from p1lora.common.radio_types import BANDWIDTHS_HZ
from p1lora.common.regions import REGIONS, RegionError
from p1lora.hardware.background import BACKGROUND_CHOICES
from p1lora.hardware.channel import DEFAULT_NOISE_FIGURE_DB
from p1lora.tools.esp32_baseline import BASELINES, Esp32Simulation
from p1lora.tools.sim import SimOptions, Simulation
from p1lora.tools.sim_building import PHASES, Building, BuildingOptions
from p1lora.tools.sim_metrics import Delivers, SimMetrics
from p1lora.transmitter.meter_profiles import PROFILES

__all__ = ["configure", "render_text", "run", "run_simulations"]

logger = logging.getLogger(__name__)

MAX_DURATION_S = 7 * 24 * 3600.0


# ---------------------------------------------------------------------- argument types


def _number(what: str, low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{what} {value:g} is outside {low:g}..{high:g}")
        return value

    return parse


def _seconds(text: str, what: str) -> float:
    """Seconds, or with a unit: 90s, 30m, 2h."""
    units = {"s": 1.0, "m": 60.0, "h": 3600.0}
    raw = text.strip().lower()
    factor = units.get(raw[-1:], 1.0)
    number = raw[:-1] if raw[-1:] in units else raw
    try:
        value = float(number) * factor
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{what} {text!r} is not a number of seconds (or 30m, 2h)"
        ) from None
    if not (math.isfinite(value) and 0 <= value <= MAX_DURATION_S):
        raise argparse.ArgumentTypeError(f"{what} {text!r} is outside 0 s..7 days")
    return value


def _duration(text: str) -> float:
    value = _seconds(text, "duration")
    if value <= 0:
        raise argparse.ArgumentTypeError("duration must be more than 0 s")
    return value


def _frequency(text: str) -> int:
    value = _number("frequency", 137.0, 1020.0)(text)
    return round(value * 1_000_000)


def _region(text: str) -> str:
    name = text.strip().upper()
    if name not in REGIONS:
        raise argparse.ArgumentTypeError(
            f"unknown region {text!r}; choose one of {', '.join(REGIONS)}"
        )
    return name


def _profile(text: str) -> str:
    if text not in PROFILES:
        raise argparse.ArgumentTypeError(
            f"unknown meter profile {text!r}; choose one of {', '.join(PROFILES)}"
        )
    return text


def _int_range(what: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} {text!r} is not an integer") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be within {low}..{high}")
        return value

    return parse


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None


def _degrade(text: str) -> tuple[float, float]:
    at, sep, loss = text.partition(":")
    if not sep:
        raise argparse.ArgumentTypeError(
            f"path-loss change {text!r} must be AT:DB, e.g. 1800:135 (at 30 min, 135 dB)"
        )
    return _seconds(at, "time"), _number("path loss", 0.0, 250.0)(loss)


def _fixed(text: str) -> FixedRadio:
    parts = text.strip().upper().removeprefix("SF").replace("BW", "").split("/")
    if len(parts) not in (2, 3) or not all(p.strip().lstrip("-").isdigit() for p in parts):
        raise argparse.ArgumentTypeError(
            f"fixed settings {text!r} must be SF/BW[/POWER] in kHz and dBm, e.g. 7/250 or 9/125/10"
        )
    sf, bw_khz = int(parts[0]), int(parts[1])
    power = int(parts[2]) if len(parts) == 3 else None
    if bw_khz * 1000 not in BANDWIDTHS_HZ:
        raise argparse.ArgumentTypeError(f"bandwidth {bw_khz} kHz is not an SX127x bandwidth")
    try:
        return FixedRadio(sf, bw_khz * 1000, power)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def configure(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Simulate a whole p1-lora link (virtual meter or capture -> transmitter -> radio channel "
        "-> receiver) on a virtual clock and report delivery, frame sizes, airtime, duty cycle, "
        "latency and the settings the link chose. An hour of link time takes seconds."
    )
    channel = parser.add_argument_group("channel")
    where = channel.add_mutually_exclusive_group()
    where.add_argument(
        "--path-loss",
        type=_number("path loss", 0.0, 250.0),
        metavar="DB",
        help="path loss between the radios in dB (default 100: a few walls; about 141 dB gives "
        "SF10, 147 dB is near the SF12 limit at 14 dBm)",
    )
    where.add_argument(
        "--distance",
        type=_number("distance", 0.001, 1_000_000.0),
        metavar="M",
        help="distance between the radios in metres (log-distance path loss instead)",
    )
    channel.add_argument(
        "--path-loss-exponent",
        type=_number("path loss exponent", 1.5, 6.0),
        default=3.0,
        metavar="N",
        help="exponent of the log-distance model for --distance (default %(default)s)",
    )
    channel.add_argument(
        "--frame-loss",
        type=_number("frame loss", 0.0, 1.0),
        default=0.0,
        metavar="P",
        help="extra random loss probability of every frame, 0..1 (default %(default)s)",
    )
    channel.add_argument(
        "--fading",
        type=_number("fading", 0.0, 30.0),
        default=0.0,
        metavar="DB",
        help="per-frame Gaussian fading, standard deviation in dB (default %(default)s)",
    )
    channel.add_argument(
        "--noise-figure",
        type=_number("noise figure", 0.0, 30.0),
        default=DEFAULT_NOISE_FIGURE_DB,
        metavar="DB",
        help="receiver noise figure in dB (default %(default)s)",
    )
    channel.add_argument(
        "--background",
        choices=BACKGROUND_CHOICES,
        default="none",
        help="LoRaWAN traffic on the air: uplinks on 868.1/868.3/868.5 MHz and gateway "
        "downlinks on 869.525 MHz, as in a city or the countryside (default none)",
    )
    channel.add_argument(
        "--degrade",
        type=_degrade,
        action="append",
        default=[],
        metavar="AT:DB",
        help="change the path loss to DB at time AT (seconds, or 30m / 2h); repeatable, "
        "e.g. --degrade 20m:140 --degrade 40m:100",
    )
    radio = parser.add_argument_group("radio and regulations")
    radio.add_argument(
        "--region",
        type=_region,
        default="EU868",
        help=f"regulatory region: {', '.join(REGIONS)} (default %(default)s)",
    )
    where_on_air = radio.add_mutually_exclusive_group()
    where_on_air.add_argument(
        "--frequency",
        type=_frequency,
        metavar="MHZ",
        help="a pinned channel in MHz (default: the region's, 869.525 in EU868); the duty-cycle "
        "budget follows the sub-band it falls in (868.1: 1 %%, 869.525: 10 %%)",
    )
    where_on_air.add_argument(
        "--channel",
        metavar="SUB-BAND",
        help="a sub-band instead of a frequency, as `p1-lora airtime` names it (868.0-868.6 or "
        "h1.4): the link chooses centre and bandwidth inside it from the measured margin",
    )
    radio.add_argument(
        "--tx-power",
        type=int,
        metavar="DBM",
        help="maximum TX power in dBm (default: the region's, 14 in EU868)",
    )
    radio.add_argument(
        "--fixed",
        type=_fixed,
        metavar="SF/BW[/POWER]",
        help="fixed radio settings instead of auto-tuning, e.g. 7/250",
    )
    radio.add_argument(
        "--interval",
        type=_number("interval", 0.0, 3600.0),
        default=0.0,
        metavar="S",
        help="at least S seconds between telegrams sent (default %(default)s: every telegram)",
    )
    meter = parser.add_argument_group("meter")
    source = meter.add_mutually_exclusive_group()
    source.add_argument(
        "--profile",
        type=_profile,
        default="dsmr5",
        help=f"virtual meter profile: {', '.join(PROFILES)} (default %(default)s)",
    )
    source.add_argument(
        "--meter",
        metavar="FILE",
        help="replay a telegram capture (looped) instead of the virtual meter",
    )
    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--duration",
        type=_duration,
        default=3600.0,
        metavar="S",
        help="link time to simulate, seconds or 30m / 2h (default 3600)",
    )
    run_group.add_argument("--seed", type=_seed, default=1, help="random seed (default 1)")
    run_group.add_argument(
        "--baseline",
        choices=sorted(BASELINES),
        action="append",
        default=[],
        help="also run the ESP32 firmware p1-lora descends from (ported from its source) on an "
        "identical channel with the same meter; repeatable. "
        + "; ".join(f"{v.name}: {v.description}" for v in BASELINES.values()),
    )
    run_group.add_argument("--json", action="store_true", help="print one JSON object")
    building = parser.add_argument_group(
        "building", "several links in one meter room (tools.sim_building)"
    )
    building.add_argument(
        "--links",
        type=_int_range("links", 1, 64),
        default=None,
        metavar="N",
        help="simulate N independent links sharing one meter room: own keys, meters and "
        "seeds, drawn path losses (the channel options apply to all; --path-loss, --distance, "
        "--degrade, --meter and --baseline do not)",
    )
    building.add_argument(
        "--phase",
        choices=PHASES,
        default="aligned",
        help="whether the building's meters send on the same second (default %(default)s)",
    )
    building.add_argument(
        "--legacy-air",
        action="store_true",
        help="links as before 'Sharing the air': each telegram sent as it comes and resent at "
        "once, no listen before talk (for comparisons)",
    )
    run_group.add_argument(
        "--timeline",
        action="store_true",
        help="list every settings change in the text report (default: the first 10)",
    )


def options_from_args(args: argparse.Namespace) -> SimOptions:
    return SimOptions(
        duration_s=args.duration,
        path_loss_db=args.path_loss,
        distance_m=args.distance,
        path_loss_exponent=args.path_loss_exponent,
        frame_loss=args.frame_loss,
        fading_db=args.fading,
        noise_figure_db=args.noise_figure,
        background=args.background,
        region=args.region,
        frequency_hz=args.frequency,
        channel=args.channel,
        tx_power_dbm=args.tx_power,
        profile=args.profile,
        meter_file=args.meter,
        seed=args.seed,
        degrade=tuple(sorted(args.degrade)),
        fixed=args.fixed,
        interval_s=args.interval,
    )


def run_simulations(
    options: SimOptions, baselines: Sequence[str] = ()
) -> tuple[SimMetrics, dict[str, SimMetrics]]:
    """Run p1-lora and the requested baselines with the same options."""
    main = Simulation(options, keep_telegrams=16).run()  # metrics need no telegram bodies
    others = {name: Esp32Simulation(options, BASELINES[name]).run() for name in baselines}
    return main, others


def run(args: argparse.Namespace) -> int:
    if args.log_level is None and not os.environ.get("P1LORA_LOG_LEVEL"):
        # A simulated hour holds thousands of link events the daemons log at INFO: noise
        # here. Warnings (rejected frames, faults) still show; --log-level info shows all.
        logging.getLogger().setLevel(logging.WARNING)
    if args.links is not None:
        return run_building(args)
    try:
        options = options_from_args(args)
        if args.legacy_air:
            raise ValueError("--legacy-air compares buildings: give --links N")
        options.link_config()  # region/frequency/power problems are reported before running
        main, baselines = run_simulations(options, list(dict.fromkeys(args.baseline)))
    except (ValueError, RegionError) as exc:  # also ReplayError (a ValueError)
        print(f"p1-lora sim: {exc}", file=sys.stderr)
        return 2
    if args.json:
        document = main.as_dict()
        if baselines:
            document["baselines"] = {name: m.as_dict() for name, m in baselines.items()}
        json.dump(document, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_text(main, baselines, sys.stdout, timeline_rows=None if args.timeline else 10)
    return 0


def run_building(args: argparse.Namespace) -> int:
    """`--links N`: the building simulator; `--json` prints its one object."""
    try:
        if args.baseline or args.meter or args.degrade or args.distance is not None:
            raise ValueError(
                "--links draws its own building: no --baseline, --meter, --degrade or --distance"
            )
        options = BuildingOptions(
            links=args.links,
            phase=args.phase,
            base=options_from_args(args),
            legacy_air=args.legacy_air,
        )
        options.link_config()
        result = Building(options).run()
    except (ValueError, RegionError) as exc:
        print(f"p1-lora sim: {exc}", file=sys.stderr)
        return 2
    if args.json:
        json.dump(result, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        render_building(result, sys.stdout)
    return 0


def render_building(result: dict[str, object], out: TextIO) -> None:
    """One row per link, then the shared channel."""
    links = result["links"]
    assert isinstance(links, list)
    out.write(
        f"p1-lora sim: a building of {result['link_count']} links, meters {result['phase']}, "
        f"{'legacy air' if result['legacy_air'] else 'sharing the air'}, "
        f"{result['duration_s']} s in {result['wall_time_s']} s, seed {result['seed']}\n\n"
        "link  path loss  delivered/h  ratio     duty tx / rx       final       lost  first\n"
    )
    for link in links:
        out.write(
            f"{link['link']:>4}  {link['own_path_loss_db']:>6.1f} dB  "
            f"{_num(link['delivered_per_hour']):>11}  {_pct(link['delivery_ratio']):>8}  "
            f"{_pct(link['duty_cycle_max_tx']):>7} / {_pct(link['duty_cycle_max_rx']):<7}  "
            f"SF{link['final_sf']}/BW{link['final_bw']:g}  {link['link_lost']:>4}  "
            f"{_num(link['first_delivery_s'], ' s')}\n"
        )
    out.write(f"\nchannel: {json.dumps(result['channel'])}\n")
    out.write(f"duty cycle limit: {_pct(result['duty_cycle_limit'])}\n")


# ---------------------------------------------------------------------- text report


def _pct(value: object) -> str:
    return "-" if not isinstance(value, int | float) else f"{value * 100:.2f} %"


def _num(value: object, unit: str = "", digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value}{unit}"
    if isinstance(value, float):
        return f"{value:.{digits}f}{unit}"
    return str(value)


def _pair(a: object, b: object, unit: str = "", digits: int = 1) -> str:
    return f"{_num(a, '', digits)} / {_num(b, '', digits)}{unit}"


def _delivered(m: SimMetrics) -> str:
    if m.delivers is Delivers.TELEGRAMS:
        return f"{m.delivered} telegrams (byte-exact)"
    values = m["values_per_reading"]
    return f"{m.delivered} readings ({values} values)"


def _final(m: SimMetrics) -> str:
    return f"SF{m.final_sf}/BW{m.final_bw:g}, {m.final_tx_power_dbm} dBm ({m.final_state})"


def _detail(key: str) -> Callable[[SimMetrics], str]:
    """A protocol's own figure ("-" where the other protocol has none)."""
    return lambda m: _num(m.details.get(key))


#: (label, formatter) per report row; a formatter gets one run's metrics.
_ROWS: tuple[tuple[str, Callable[[SimMetrics], str]], ...] = (
    ("telegrams read", lambda m: _num(m.telegrams_read)),
    ("delivered", _delivered),
    ("delivered per hour", lambda m: _num(m.delivered_per_hour)),
    ("delivery ratio", lambda m: _pct(m.details.get("delivery_ratio"))),
    ("corrupt", lambda m: _num(m.delivered_corrupt)),
    ("unchanged, not sent", _detail("telegrams_unchanged")),
    ("frame bytes median / p95", lambda m: _pair(m.frame_bytes_median, m.frame_bytes_p95)),
    ("airtime tx / rx", lambda m: _pair(m.airtime_s_tx, m.airtime_s_rx, " s")),
    (
        "duty cycle max tx / rx",
        lambda m: f"{_pct(m.duty_cycle_max_tx)} / {_pct(m.duty_cycle_max_rx)}",
    ),
    ("over the legal limit", lambda m: _num(m.budget_exceeded)),
    ("airtime before 1st delivery", lambda m: _num(m.handshake_airtime_s, " s")),
    ("latency p50 / p95", lambda m: _pair(m.latency_ms_p50, m.latency_ms_p95, " ms", 0)),
    ("first delivery", lambda m: _num(m.first_delivery_s, " s")),
    ("longest gap", lambda m: _num(m.max_gap_s, " s")),
    ("converged after", lambda m: _num(m.convergence_s, " s")),
    ("final settings", _final),
    ("frames rejected", _detail("frames_rejected")),
    ("re-syncs the receiver asked for", _detail("receiver_sync_requests")),
)


def render_text(
    main: SimMetrics,
    baselines: dict[str, SimMetrics],
    out: TextIO,
    *,
    timeline_rows: int | None = 10,
) -> None:
    """The human report: a header, one column per run, the settings timeline."""
    hours = main.duration_s / 3600
    wall = main.wall_time_s
    loss = main.path_loss_db
    where = f"path loss {loss:g} dB" if loss is not None else f"distance {main.distance_m} m"
    out.write(
        f"p1-lora sim: {hours:g} h of link time in {wall:.1f} s "
        f"({wall / hours if hours else 0:.1f} s per simulated hour)\n"
        f"  {main.region} {main.frequency_mhz:g} MHz, sub-band {main.sub_band} "
        f"({_pct(main.duty_cycle_limit)} duty cycle), {where}, seed {main.seed}\n\n"
    )
    columns = [("p1-lora", main), *baselines.items()]
    width = max(len(label) for label, _ in _ROWS) + 2
    cells = [[fmt(run) for _, run in columns] for _, fmt in _ROWS]
    col_width = max(len(name) for name, _ in columns)
    col_width = max(col_width, *(len(c) for row in cells for c in row)) + 2
    out.write(" " * width + "".join(name.ljust(col_width) for name, _ in columns).rstrip() + "\n")
    for (label, _), row in zip(_ROWS, cells, strict=True):
        out.write(label.ljust(width) + "".join(c.ljust(col_width) for c in row).rstrip() + "\n")
    for name, run in columns:
        timeline = run.settings_timeline
        shown = timeline if timeline_rows is None else timeline[:timeline_rows]
        out.write(f"\n{name} settings (transmitter):\n")
        for t, sf, bw, power in shown:
            out.write(f"  {t:10.1f} s  SF{sf}/BW{bw:g}  {power} dBm\n")
        if len(shown) < len(timeline):
            out.write(f"  ... {len(timeline) - len(shown)} more (--timeline lists all)\n")
    for name, run in baselines.items():
        out.write(
            f"\n{name}: the ESP32 firmware, {run['variant']}, at {run.frequency_mhz:g} MHz "
            f"(sub-band {run.sub_band}, {_pct(run.duty_cycle_limit)}); it delivers readings of "
            "a few values in thousandths, not telegrams, and has no duty-cycle budget.\n"
        )
