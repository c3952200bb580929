"""`p1-lora survey --role tx|rx [CONFIG]`: measure the link at every setting before mounting.

Run it on both Pis at once with the same key (stop the daemons first: the survey needs the
radio): one with `--role tx`, one with `--role rx`. They meet at the rendezvous as the link
does and visit every setting of the link's ladder (see `p1lora.common.survey`). The
transmitter prints a row per setting (frames sent and answered, probes the receiver heard,
RSSI and SNR both ways, the margin over the demodulation floor, updates per hour each
sub-band allows), then the setting the link would choose and its margin. The receiver prints
what it heard. `--watch` keeps probing at the chosen setting and prints a line a second, for
moving the antenna. Every frame passes the sub-band's duty-cycle budget.

`--simulate DB` runs both sides in this process on a virtual clock with DB of path loss
between them (no hardware, no waiting): what a survey at that loss would print.

Exit codes: 0 the survey completed, 1 the other side was never met (or was lost), 2 a bad
config or flag.
"""

from __future__ import annotations

import argparse
import logging
import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Final

from p1lora.common.clock import VirtualClock
from p1lora.common.link.config import LinkConfig
from p1lora.common.regions import REGIONS, RegionError, get_region
from p1lora.common.survey import PROBES_PER_SETTING, SurveyRx, SurveyTx
from p1lora.hardware.boards import BoardPins
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.factory import open_radio
from p1lora.hardware.radio import RadioError
from p1lora.hardware.udp_channel import UdpSimOptions
from p1lora.service.config import ConfigError, load_config
from p1lora.service.keyfile import KeyFileError, load_key
from p1lora.service.options import (
    LinkSection,
    RadioSection,
    board_pins,
    link_config,
    sim_options,
)
from p1lora.tools.config_command import table_for
from p1lora.tools.doctor.setup import flag_pins
from p1lora.tools.survey.report import SurveyPrinter, rx_line
from p1lora.tools.survey.runtime import SurveyStation, run_realtime, run_virtual

__all__ = ["configure", "run"]

logger = logging.getLogger(__name__)

EPILOG: Final = """\
examples:
  p1-lora survey --role rx /etc/p1-lora/rx.toml      (on the receiver's Pi)
  p1-lora survey --role tx /etc/p1-lora/tx.toml      (on the transmitter's Pi, same time)
  p1-lora survey --role tx /etc/p1-lora/tx.toml --watch
  p1-lora survey --role tx --key-file key --simulate 135

Stop both daemons first (sudo systemctl stop p1-lora-tx / p1-lora-rx): the survey uses the radio.
Exit codes: 0 completed, 1 the other side was not met, 2 bad config or flags."""

#: Virtual seconds a `--simulate` run may take (the ladder at SF12 in a 1 % sub-band is slow).
_SIMULATE_LIMIT_S: Final = 6 * 3600.0


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = EPILOG
    parser.add_argument("config_file", nargs="?", type=Path, metavar="CONFIG")
    parser.add_argument("--config", type=Path, metavar="FILE", help="same as CONFIG")
    parser.add_argument("--role", choices=("tx", "rx"), required=True, help="this Pi's side")
    parser.add_argument("--radio", choices=("sx127x", "sim"), help="override radio.backend")
    parser.add_argument("--board", metavar="NAME", help="override radio.board")
    parser.add_argument("--pins", metavar="SPEC", help="override the pins")
    parser.add_argument("--key-file", type=Path, metavar="FILE", help="override link.key_file")
    parser.add_argument("--region", choices=sorted(REGIONS), help="override radio.region")
    parser.add_argument("--frequency", type=float, metavar="MHZ", help="override the channel")
    parser.add_argument(
        "--probes",
        type=int,
        default=PROBES_PER_SETTING,
        metavar="N",
        help=f"probes per setting (default {PROBES_PER_SETTING})",
    )
    parser.add_argument(
        "--watch", action="store_true", help="tx: keep measuring, a line a second (Ctrl-C ends)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=0.0,
        metavar="S",
        help="give up when the other side is not met within S seconds (default: never)",
    )
    parser.add_argument(
        "--simulate",
        type=float,
        metavar="DB",
        help="run both sides here on a virtual clock with DB path loss (no hardware)",
    )
    parser.add_argument(
        "--sim-path-loss", type=float, metavar="DB", help="radio sim: path loss to the peer"
    )


@dataclass(frozen=True, slots=True)
class _Setup:
    """What a survey runs with: the link's rules, the key, and the radio to open."""

    link: LinkConfig
    psk: bytes
    backend: str
    pins: BoardPins | None
    sim: UdpSimOptions


def _load(args: argparse.Namespace) -> _Setup:
    """ConfigError/KeyFileError/ValueError naming the problem."""
    path: Path | None = args.config_file or args.config
    pins = flag_pins(args)
    if path is None:
        region = get_region(args.region or "EU868")
        frequency = round(args.frequency * 1e6) if args.frequency is not None else None
        link = LinkConfig(region=region, frequency_hz=frequency)
        key = load_key(args.key_file)
        backend = args.radio or "sx127x"
        sim = UdpSimOptions(path_loss_db=args.sim_path_loss)
    else:
        config = load_config(table_for(args.role), None, path=path.expanduser())
        link = link_config(config, args.role)
        if args.region or args.frequency is not None:
            mhz = args.frequency
            link = replace(
                link,
                region=get_region(args.region or link.region.name),
                frequency_hz=round(mhz * 1e6) if mhz is not None else link.frequency_hz,
            )
        key = load_key(args.key_file or LinkSection.of(config).key_file)
        backend = args.radio or RadioSection.of(config).backend
        pins = pins or board_pins(config)
        sim = sim_options(config)
        if args.sim_path_loss is not None:
            sim = replace(sim, path_loss_db=args.sim_path_loss)
    sim = replace(sim, network_id=bytes.fromhex(key.network_id))  # the daemons' default port
    if args.simulate is not None:
        backend = "sim"
    if backend == "sx127x" and pins is None:
        raise ValueError("choose the board (--board NAME or radio.board in the config)")
    return _Setup(link, key.material, backend, pins, sim)


def _printer(write: Callable[[str], None], tx: SurveyTx, start: float) -> Callable[[], None]:
    printer = SurveyPrinter(write, tx.config, start)
    return lambda: printer.tx(tx.take_finished(), tx.choice, tx.take_samples())


def _rx_printer(write: Callable[[str], None], rx: SurveyRx) -> Callable[[], None]:
    state = {"met": False, "done": False}

    def show() -> None:
        if rx.met and not state["met"]:
            state["met"] = True
            write("met the transmitter at the rendezvous; following it through the settings")
        if rx.finished and not state["done"]:
            state["done"] = True
            for step, measurement in sorted(rx.results.items()):
                if step < len(rx.table):
                    write(rx_line(rx.table[step].label(), measurement))
            write("survey done (the transmitter prints the link's choice)")

    return show


def _simulate(args: argparse.Namespace, setup: _Setup, write: Callable[[str], None]) -> int:
    clock = VirtualClock()
    channel = SimChannel(clock, seed=0)
    tx_radio = open_radio("sim", channel=channel, name="tx")
    rx_radio = open_radio("sim", channel=channel, name="rx")
    channel.set_path_loss("tx", "rx", args.simulate)
    rng = random.Random(0)
    tx = SurveyTx(setup.link, setup.psk, rng.randbytes, probes=args.probes)
    rx = SurveyRx(setup.link, setup.psk, rng.randbytes)
    rx_quiet = SurveyStation(rx, rx_radio, clock)
    stations = [SurveyStation(tx, tx_radio, clock, _printer(write, tx, clock.now())), rx_quiet]
    write(f"simulated survey: {args.simulate:g} dB path loss, {setup.link.region.name}")
    run_virtual(stations, clock, lambda: tx.finished and rx.finished, _SIMULATE_LIMIT_S)
    for radio in (tx_radio, rx_radio):
        radio.close()
    return 0 if tx.finished else 1


def _checked_setup(args: argparse.Namespace) -> _Setup | None:
    """The flags checked and the config loaded, or None after logging why not (exit 2)."""
    if args.probes < 1 or args.probes > 50:
        logger.error("--probes must be within 1..50")
        return None
    if args.watch and args.role != "tx":
        logger.error("--watch is for the transmitter's side (--role tx)")
        return None
    try:
        return _load(args)
    except ConfigError as exc:
        for problem in exc.problems:
            logger.error("%s", problem)
        return None
    except (KeyFileError, ValueError, RegionError) as exc:
        logger.error("%s", exc)
        return None


def run(args: argparse.Namespace) -> int:
    setup = _checked_setup(args)
    if setup is None:
        return 2

    def write(line: str) -> None:
        print(line, flush=True)

    if args.simulate is not None:
        return _simulate(args, setup, write)
    try:
        radio = open_radio(
            setup.backend, pins=setup.pins, sim=setup.sim, name=f"survey-{args.role}"
        )
    except RadioError as exc:
        logger.error("cannot open the radio: %s", exc)
        return 2
    clock = radio._clock
    machine: SurveyTx | SurveyRx
    if args.role == "tx":
        machine = SurveyTx(
            setup.link, setup.psk, secrets.token_bytes, probes=args.probes, watch=args.watch
        )
        show = _printer(write, machine, clock.now())
    else:
        machine = SurveyRx(setup.link, setup.psk, secrets.token_bytes)
        show = _rx_printer(write, machine)
    station = SurveyStation(machine, radio, clock, show)
    started = clock.now()

    def until() -> bool:
        if args.timeout and not machine.met and clock.now() - started > args.timeout:
            return True
        return machine.finished and not args.watch

    write(f"{args.role}: waiting for the other side at {setup.link.rendezvous().label()}")
    try:
        run_realtime(station, until)
    except KeyboardInterrupt:
        write("stopped")
    finally:
        radio.close()
    if not machine.met:
        logger.error(
            "the other side was never heard: is `p1-lora survey --role %s` running "
            "there with the same key, region and channel?",
            "rx" if args.role == "tx" else "tx",
        )
        return 1
    return 0 if machine.finished else 1
