"""`open_radio`: one call that builds a working `Radio`, on a Pi or in a simulation.

The backends are a table (`BACKENDS`): a name, the options type that backend takes, and the
function that opens it. Each options type is a small frozen dataclass, so a caller states only
what its backend understands and a misspelt or misplaced setting is a type error:

- `"sx127x"` (`ChipOptions`): the driver on real SPI/GPIO for a named board or custom pins. The
  Pi libraries are imported here and only here, so only this backend fails on a machine without
  them, with a message naming the `pi` extra.
- `"sim"` (`SimRadioOptions`): the same driver on an emulated chip. Given an in-process
  `SimChannel` (usually on a `VirtualClock`), the chip joins it; otherwise the chip joins the
  loopback-UDP channel in real time, so two processes started with `--radio sim` hear each
  other with no further flags.

The daemons' options (`--radio`, `--board`, `--pins`, `--sim-*`) live in the declarative option
table of `p1lora.service.options`; `p1lora.service.daemon` builds the options and calls
`open_radio`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from p1lora.common.clock import Clock, Scheduler
from p1lora.hardware.boards import BOARDS, BoardPins, get_board, parse_pins
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AntennaPort, SX127xEmulator
from p1lora.hardware.radio import RadioError
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.sx127x import SX127x
from p1lora.hardware.udp_channel import UdpChannel, UdpSimOptions

__all__ = [
    "BACKENDS",
    "DEFAULT_POLL_INTERVAL_S",
    "Backend",
    "ChipOptions",
    "RadioOptions",
    "SimRadioOptions",
    "open_radio",
    "resolve_pins",
]

logger = logging.getLogger(__name__)

#: Real-time radios re-read RegIrqFlags this often even without a DIO0 edge.
DEFAULT_POLL_INTERVAL_S = 1.0


@dataclass(frozen=True, kw_only=True)
class RadioOptions:
    """What every backend takes.

    `scheduler` (a `Scheduler`, e.g. `ThreadScheduler`) drives the TX watchdog and the polling
    ticker; without one a `ThreadScheduler` is created (and closed with the radio). `clock`
    defaults to the scheduler. `board` names a board, `pins` gives custom wiring (they win).
    """

    name: str = "radio"
    clock: Clock | None = None
    scheduler: Scheduler | None = None
    board: str | None = None
    pins: BoardPins | str | None = None
    poll_interval: float | None = None


@dataclass(frozen=True, kw_only=True)
class ChipOptions(RadioOptions):
    """`"sx127x"`: a real chip on SPI (`spi_speed_hz` None: the Pi adapter's default)."""

    spi_speed_hz: int | None = None


@dataclass(frozen=True, kw_only=True)
class SimRadioOptions(RadioOptions):
    """`"sim"`: an emulated chip on an in-process `SimChannel` (whose scheduler is then used,
    with no ticker unless `poll_interval` is given) or the loopback-UDP channel (`channel`
    None: joined with `sim`'s settings)."""

    channel: SimChannel | UdpChannel | None = None
    sim: UdpSimOptions | None = None
    position: Sequence[float] | None = None
    freq_offset_hz: float = 0.0


OptionsT = TypeVar("OptionsT", bound=RadioOptions)


@dataclass(frozen=True)
class Backend(Generic[OptionsT]):
    """One row of `BACKENDS`: the options type and the function that opens the radio."""

    options: type[OptionsT]
    open: Callable[[OptionsT], SX127x]


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


def open_radio(backend: str, options: RadioOptions | None = None, /, **fields: Any) -> SX127x:
    """Build a ready `Radio` (an `SX127x` driver) for `backend` (a name in `BACKENDS`).

    Give the backend's options object, or its fields as keywords (`open_radio("sim",
    channel=channel, name="tx")`); RadioError for an unknown backend, TypeError for options
    the backend does not take.
    """
    entry = BACKENDS.get(backend)
    if entry is None:
        raise RadioError(f"unknown radio backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if options is None:
        options = entry.options(**fields)
    elif fields or not isinstance(options, entry.options):
        raise TypeError(f"radio backend {backend!r} takes one {entry.options.__name__}")
    return entry.open(options)


def _open_real(options: ChipOptions) -> SX127x:
    pins = resolve_pins(options.board, options.pins)
    clock, scheduler, name = options.clock, options.scheduler, options.name
    from p1lora.hardware import pi_adapters  # noqa: PLC0415 - the Pi libraries stay optional

    owned: list[Callable[[], None]] = []
    if scheduler is None:
        thread_scheduler = ThreadScheduler(f"p1lora-{name}")
        owned.append(thread_scheduler.close)
        scheduler = thread_scheduler
    speed = options.spi_speed_hz or pi_adapters.DEFAULT_SPI_SPEED_HZ
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
            poll_interval=options.poll_interval or DEFAULT_POLL_INTERVAL_S,
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


def _open_sim(options: SimRadioOptions) -> SX127x:
    wired = options.board or options.pins
    board = resolve_pins(options.board, options.pins) if wired else None
    clock, scheduler, name = options.clock, options.scheduler, options.name
    channel, freq_offset_hz = options.channel, options.freq_offset_hz
    poll_interval = options.poll_interval
    antenna: AntennaPort = "both"
    if board is not None:
        antenna = "pa_boost" if board.pa_boost else "rfo"
    owned: list[Callable[[], None]] = []
    chip: SX127xEmulator
    if isinstance(channel, SimChannel):
        sim_channel = channel
        scheduler = channel.scheduler
        chip = channel.add_radio(
            name, position=options.position, freq_offset_hz=freq_offset_hz, antenna=antenna
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
                udp = UdpChannel(scheduler, options.sim)
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


#: Backend name -> its options and opener (`open_radio` looks them up here).
BACKENDS: Final[Mapping[str, Backend[Any]]] = {
    "sx127x": Backend(ChipOptions, _open_real),
    "sim": Backend(SimRadioOptions, _open_sim),
}
