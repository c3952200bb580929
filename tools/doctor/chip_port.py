"""The three lines to the chip (SPI, RESET, DIO0) and a clock, for the chip checks.

On a Pi they come from `pi_adapters.open_board`, on real time. With `--radio sim` they are an
emulated SX1276 on a simulated channel, on a virtual clock, with the wiring faults asked for
by `--sim-fault` injected at the register level (`SIM_FAULTS`): the same checks then see what
they would see on a Pi with that wiring mistake.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from p1lora.common.clock import Scheduler, VirtualClock
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AntennaPort, EmulatorFaults
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.spi_gpio import DigitalInput, DigitalOutput, EdgeCallback, SpiDevice
from p1lora.tools.doctor.setup import DoctorSetup

__all__ = ["SIM_FAULTS", "ChipPort", "EdgeCounter", "open_chip_port"]


def _version(value: int) -> Callable[[EmulatorFaults], None]:
    def apply(faults: EmulatorFaults) -> None:
        faults.version = value

    return apply


def _reset_floating(faults: EmulatorFaults) -> None:
    faults.reset_floating = True


def _dio0_unconnected(faults: EmulatorFaults) -> None:
    faults.dio0_unconnected = True


#: `--sim-fault` name -> how the emulated chip is miswired.
SIM_FAULTS: Final = MappingProxyType(
    {
        "chip-00": _version(0x00),  # MISO stuck low, chip unpowered
        "chip-ff": _version(0xFF),  # MISO floating high, NSS not reaching the chip
        "reset-floating": _reset_floating,
        "dio0-unconnected": _dio0_unconnected,
    }
)


class EdgeCounter:
    """Wraps DIO0 and counts the rising edges it delivers (did DIO0 reach the Pi?)."""

    def __init__(self, pin: DigitalInput) -> None:
        self.pin = pin
        self.edges = 0

    def read(self) -> bool:
        return self.pin.read()

    def watch_rising(self, callback: EdgeCallback | None) -> None:
        if callback is None:
            self.pin.watch_rising(None)
            return

        def counted() -> None:
            self.edges += 1
            callback()

        self.pin.watch_rising(counted)

    def close(self) -> None:
        self.pin.close()


@dataclass(slots=True)
class ChipPort:
    spi: SpiDevice
    reset: DigitalOutput | None
    dio0: DigitalInput | None
    scheduler: Scheduler
    closers: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        for close in self.closers:
            with contextlib.suppress(Exception):
                close()


def open_chip_port(setup: DoctorSetup) -> ChipPort:
    """The chip's lines for `setup` (RadioError naming the `pi` extra off a Pi)."""
    if setup.backend == "sim":
        return _open_sim(setup)
    from p1lora.hardware import pi_adapters  # noqa: PLC0415 - the Pi libraries stay optional

    assert setup.pins is not None
    hardware = pi_adapters.open_board(setup.pins)
    scheduler = ThreadScheduler("p1lora-doctor")
    closers: list[Callable[[], None]] = [hardware.spi.close, scheduler.close]
    for pin in (hardware.reset, hardware.dio0):
        if pin is not None:
            closers.append(pin.close)
    return ChipPort(hardware.spi, hardware.reset, hardware.dio0, scheduler, closers)


def _open_sim(setup: DoctorSetup) -> ChipPort:
    clock = VirtualClock()
    channel = SimChannel(clock)
    pins = setup.pins
    antenna: AntennaPort = "both" if pins is None else ("pa_boost" if pins.pa_boost else "rfo")
    chip = channel.add_radio("doctor", antenna=antenna)
    for name in sorted(setup.sim_faults):
        SIM_FAULTS[name](chip.faults)
    reset = chip.reset_pin if pins is None or pins.reset_gpio is not None else None
    dio0 = chip.dio0 if pins is None or pins.dio0_gpio is not None else None
    return ChipPort(chip.spi, reset, dio0, clock)
