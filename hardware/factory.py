"""`open_radio`: one call that builds a working `Radio`, on a Pi or in a simulation.

- `"sx127x"`: the driver on real SPI/GPIO for a named board or custom pins. The Pi libraries
  are imported here and only here, so only this backend fails on a machine without them, with a
  message naming the `pi` extra.
- `"sim"`: the same driver on an emulated chip. Given an in-process `SimChannel` (usually on a
  `VirtualClock`), the chip joins it; otherwise the chip joins the loopback-UDP channel in real
  time, so two processes started with `--radio sim` hear each other with no further flags.

The daemons' options (`--radio`, `--board`, `--pins`, `--sim-*`) live in the declarative option
table of `p1lora.service.options`, which calls `open_radio`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

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
    "open_radio",
    "resolve_pins",
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
