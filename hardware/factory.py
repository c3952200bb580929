"""`open_radio`: one call that builds a working `Radio`, on a Pi or in a simulation.

- `"sx127x"`: the driver on real SPI/GPIO for a named board or custom pins. The Pi libraries
  are imported here and only here, so only this backend fails on a machine without them, with a
  message naming the `pi` extra.
- `"sim"`: the same driver on an emulated chip. Given an in-process `SimChannel` (usually on a
  `VirtualClock`), the chip joins it; otherwise the chip joins the loopback-UDP channel in real
  time, so two processes started with `--radio sim` hear each other with no further flags.

`add_radio_arguments` / `radio_from_args` give the daemons the same command-line options
(`--radio`, `--board`, `--pins`, `--sim-path-loss` ...) with validation and clear messages.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Sequence

from p1lora.common.clock import Clock, Scheduler
from p1lora.hardware.boards import BOARD_ALIASES, BOARDS, BoardPins, get_board, parse_pins
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AntennaPort, SX127xEmulator
from p1lora.hardware.radio import RadioError
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.sx127x import SX127x
from p1lora.hardware.udp_channel import UdpChannel, UdpSimOptions

__all__ = [
    "BACKENDS",
    "DEFAULT_POLL_INTERVAL_S",
    "add_radio_arguments",
    "open_radio",
    "radio_from_args",
    "resolve_pins",
    "sim_options_from_args",
]

logger = logging.getLogger(__name__)

BACKENDS = ("sx127x", "sim")
#: Real-time radios re-read RegIrqFlags this often even without a DIO0 edge.
DEFAULT_POLL_INTERVAL_S = 1.0


def resolve_pins(board: str | None, pins: BoardPins | str | None) -> BoardPins:
    """The pin map from a board name and/or custom pins (custom pins win)."""
    if isinstance(pins, BoardPins):
        return pins
    try:
        if pins:
            return parse_pins(pins)
        if board:
            return get_board(board)
    except ValueError as exc:
        raise RadioError(str(exc)) from exc
    raise RadioError(
        "choose the radio board (--board " + "|".join(BOARDS) + ") or give custom pins "
        "(--pins 'spi=0.1,reset=25,dio0=22')"
    )


def open_radio(
    backend: str,
    *,
    clock: Clock | None = None,
    scheduler: Scheduler | None = None,
    board: str | None = None,
    pins: BoardPins | str | None = None,
    channel: SimChannel | UdpChannel | None = None,
    sim: UdpSimOptions | None = None,
    name: str = "radio",
    position: Sequence[float] | None = None,
    freq_offset_hz: float = 0.0,
    poll_interval: float | None = None,
    spi_speed_hz: int | None = None,
) -> SX127x:
    """Build a ready `Radio` (an `SX127x` driver) for `backend` ("sx127x" or "sim").

    `scheduler` (a `Scheduler`, e.g. `ThreadScheduler`) drives the TX watchdog and the polling
    ticker; without one a `ThreadScheduler` is created (and closed with the radio). `clock`
    defaults to the scheduler. For "sim" with an in-process `channel` the channel's scheduler
    is used and there is no ticker unless `poll_interval` is given.
    """
    if backend == "sx127x":
        return _open_real(
            clock=clock,
            scheduler=scheduler,
            pins=resolve_pins(board, pins),
            name=name,
            poll_interval=poll_interval,
            spi_speed_hz=spi_speed_hz,
        )
    if backend == "sim":
        board_pins = resolve_pins(board, pins) if (board or pins) else None
        return _open_sim(
            clock=clock,
            scheduler=scheduler,
            board=board_pins,
            channel=channel,
            sim=sim,
            name=name,
            position=position,
            freq_offset_hz=freq_offset_hz,
            poll_interval=poll_interval,
        )
    raise RadioError(f"unknown radio backend {backend!r}; choose one of {', '.join(BACKENDS)}")


def _open_real(
    *,
    clock: Clock | None,
    scheduler: Scheduler | None,
    pins: BoardPins,
    name: str,
    poll_interval: float | None,
    spi_speed_hz: int | None,
) -> SX127x:
    from p1lora.hardware import pi_adapters  # noqa: PLC0415 - the Pi libraries stay optional

    owned: list[Callable[[], None]] = []
    if scheduler is None:
        thread_scheduler = ThreadScheduler(f"p1lora-{name}")
        owned.append(thread_scheduler.close)
        scheduler = thread_scheduler
    speed = spi_speed_hz or pi_adapters.DEFAULT_SPI_SPEED_HZ
    try:
        hardware = pi_adapters.open_board(pins, speed_hz=speed)
    except BaseException:
        _run_all(owned)
        raise
    try:
        return SX127x(
            hardware.spi,
            clock=clock or scheduler,
            reset=hardware.reset,
            dio0=hardware.dio0,
            pa_boost=pins.pa_boost,
            scheduler=scheduler,
            poll_interval=poll_interval or DEFAULT_POLL_INTERVAL_S,
            name=name,
            wiring=pins.wiring(),
            on_close=owned,
        )
    except BaseException:
        closers: list[Callable[[], None]] = []
        if hardware.dio0 is not None:
            closers.append(hardware.dio0.close)
        if hardware.reset is not None:
            closers.append(hardware.reset.close)
        _run_all([*closers, hardware.spi.close, *owned])
        raise


def _open_sim(
    *,
    clock: Clock | None,
    scheduler: Scheduler | None,
    board: BoardPins | None,
    channel: SimChannel | UdpChannel | None,
    sim: UdpSimOptions | None,
    name: str,
    position: Sequence[float] | None,
    freq_offset_hz: float,
    poll_interval: float | None,
) -> SX127x:
    antenna: AntennaPort = "both"
    if board is not None:
        antenna = "pa_boost" if board.pa_boost else "rfo"
    owned: list[Callable[[], None]] = []
    chip: SX127xEmulator
    if isinstance(channel, SimChannel):
        sim_channel = channel
        scheduler = channel.scheduler
        chip = channel.add_radio(
            name, position=position, freq_offset_hz=freq_offset_hz, antenna=antenna
        )
        owned.append(lambda: sim_channel.remove_radio(name))
    else:
        udp = channel
        if udp is None:
            if scheduler is None:
                thread_scheduler = ThreadScheduler(f"p1lora-sim-{name}")
                owned.append(thread_scheduler.close)
                scheduler = thread_scheduler
            try:
                udp = UdpChannel(scheduler, sim)
            except (OSError, ValueError) as exc:
                _run_all(owned)
                raise RadioError(f"cannot join the simulated radio channel: {exc}") from exc
            owned.insert(0, udp.close)
        scheduler = udp.scheduler
        chip = udp.add_radio(name, freq_offset_hz=freq_offset_hz, antenna=antenna)
        poll_interval = poll_interval or DEFAULT_POLL_INTERVAL_S
    try:
        return SX127x(
            chip.spi,
            clock=clock or scheduler,
            reset=chip.reset_pin,
            dio0=chip.dio0,
            pa_boost=board.pa_boost if board is not None else True,
            scheduler=scheduler,
            poll_interval=poll_interval,
            name=name,
            wiring=f"emulated SX1276 {name!r}",
            on_close=owned,
        )
    except BaseException:
        _run_all(owned)
        raise


def _run_all(closers: Sequence[Callable[[], None]]) -> None:
    for close in closers:
        try:
            close()
        except Exception:
            logger.exception("error while cleaning up after a failed radio open")


# ---------------------------------------------------------------------- command line


def _board_name(text: str) -> str:
    try:
        return get_board(text).name
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _pins(text: str) -> BoardPins:
    try:
        return parse_pins(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _bounded(low: float, high: float, what: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, not {text!r}") from None
        if not (math.isfinite(value) and low <= value <= high):
            raise argparse.ArgumentTypeError(f"{what} {value:g} is outside {low:g}..{high:g}")
        return value

    return parse


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"port {text!r} is not 1..65535")
    return int(text)


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed {text!r} is not an integer") from None


def add_radio_arguments(parser: argparse.ArgumentParser, *, default: str = "sx127x") -> None:
    """Add --radio, --board, --pins and the --sim-* options to a daemon's parser."""
    boards = ", ".join([*BOARDS, *BOARD_ALIASES])
    group = parser.add_argument_group("radio")
    group.add_argument(
        "--radio",
        choices=BACKENDS,
        default=default,
        help="sx127x: the LoRa HAT on this Pi; sim: an emulated radio on a simulated channel "
        "shared with other local processes over loopback UDP (default: %(default)s)",
    )
    group.add_argument("--board", type=_board_name, help=f"the radio HAT: {boards}")
    group.add_argument(
        "--pins",
        type=_pins,
        help="custom wiring instead of --board, e.g. 'spi=0.0,cs=25,reset=17,dio0=4,pa_boost=yes'",
    )
    group.add_argument(
        "--sim-path-loss",
        type=_bounded(0, 250, "path loss"),
        metavar="DB",
        help="sim: path loss to the other processes' radios in dB (default 100; the larger of "
        "both sides' settings applies)",
    )
    group.add_argument(
        "--sim-noise-figure",
        type=_bounded(0, 30, "noise figure"),
        metavar="DB",
        default=6.0,
        help="sim: receiver noise figure in dB (default %(default)s)",
    )
    group.add_argument(
        "--sim-fading",
        type=_bounded(0, 30, "fading"),
        metavar="DB",
        default=0.0,
        help="sim: per-frame Gaussian fading standard deviation in dB (default %(default)s)",
    )
    group.add_argument(
        "--sim-loss",
        type=_bounded(0, 1, "loss probability"),
        metavar="P",
        default=0.0,
        help="sim: extra random frame loss probability 0..1 (default %(default)s)",
    )
    group.add_argument("--sim-seed", type=_seed, metavar="N", help="sim: random seed")
    group.add_argument(
        "--sim-port",
        type=_port,
        metavar="PORT",
        help="sim: loopback UDP port where simulated radios meet (default $P1LORA_SIM_PORT "
        "or 47868)",
    )


def sim_options_from_args(args: argparse.Namespace) -> UdpSimOptions:
    return UdpSimOptions(
        port=args.sim_port,
        path_loss_db=args.sim_path_loss,
        noise_figure_db=args.sim_noise_figure,
        fading_sigma_db=args.sim_fading,
        loss_probability=args.sim_loss,
        seed=args.sim_seed,
    )


def radio_from_args(
    args: argparse.Namespace, *, name: str = "radio", scheduler: Scheduler | None = None
) -> SX127x:
    """Open the radio the command line asked for (RadioError with a clear message if not)."""
    return open_radio(
        args.radio,
        scheduler=scheduler,
        board=args.board,
        pins=args.pins,
        sim=sim_options_from_args(args) if args.radio == "sim" else None,
        name=name,
    )
