"""The chip itself: does it answer, is RESET wired, is DIO0 wired, is the pin map plausible.

Each check proves one wire without transmitting:

- RegVersion reads 0x12: SPI (MOSI, MISO, SCK, NSS) and power work. 0x00 or 0xFF is a bus
  where nothing answers; the message names this board's pins.
- RESET: write RegPaRamp (reset value 0x09) to 0x08, pulse RESET, read it again: 0x09 proves
  the pulse reached the chip.
- DIO0: the real driver maps DIO0 to CadDone and runs a Channel Activity Detection (it listens,
  it does not transmit): the rising edge must reach the Pi's GPIO. The driver's polling fallback
  finds CadDone either way, so a missing edge is a wiring finding, not a dead radio.
"""

from __future__ import annotations

import threading
from typing import Final

from p1lora.hardware.boards import BOARDS, BoardPins
from p1lora.hardware.radio import CadDone, RadioError
from p1lora.hardware.sx127x import RESET_PULSE_S, RESET_SETTLE_S, SX127x
from p1lora.hardware.sx127x_registers import CHIP_VERSION, KNOWN_VERSIONS, SHARED_RESET_VALUES, Reg
from p1lora.tools.doctor.chip_port import ChipPort, EdgeCounter
from p1lora.tools.doctor.findings import Finding, failed, passed, skipped, warned
from p1lora.tools.doctor.setup import DoctorSetup

__all__ = ["check_chip"]

#: A register with a known reset value that nothing else uses while the doctor runs.
_PROBE_REGISTER: Final = Reg.PA_RAMP
_PROBE_VALUE: Final = 0x08
#: How long to wait for CadDone (two symbols at SF12/BW125 are 66 ms).
_CAD_WAIT_S: Final = 0.5


def _read(port: ChipPort, register: int) -> int:
    return port.spi.transfer(bytes((register & 0x7F, 0)))[1]


def _write(port: ChipPort, register: int, value: int) -> None:
    port.spi.transfer(bytes((register | 0x80, value & 0xFF)))


def _pause(port: ChipPort, seconds: float) -> None:
    port.scheduler.wait(threading.Event(), seconds)


def _wiring(setup: DoctorSetup) -> str:
    return setup.pins.wiring() if setup.pins is not None else "emulated SX1276"


def _silent_bus_fix(setup: DoctorSetup, version: int) -> str:
    pins = setup.pins
    stuck = (
        "low (0x00): MISO (GPIO9) not connected or the module has no power"
        if not version
        else "high (0xFF): the chip is not selected (NSS) or MISO floats"
    )
    text = (
        f"the bus reads all {stuck}. Check {_wiring(setup)}; MOSI GPIO10, MISO GPIO9, "
        "SCK GPIO11, 3.3 V and GND"
    )
    if pins is not None:
        others = [b.name for b in BOARDS.values() if b.spi_device != pins.spi_device]
        if others and pins.name in BOARDS:
            text += (
                f"; if your HAT is not the {pins.name}, set the board that matches it "
                f"(boards on the other chip select: {', '.join(others)})"
            )
    return text


def check_version(setup: DoctorSetup, port: ChipPort) -> Finding:
    version = _read(port, Reg.VERSION)
    if version == CHIP_VERSION:
        return passed("chip", f"RegVersion reads {version:#04x}: an SX1276/77/78/79 answers")
    if version in (0x00, 0xFF):
        return failed(
            "chip",
            f"RegVersion reads {version:#04x}: nothing answers on the SPI bus",
            _silent_bus_fix(setup, version),
            "chip-not-found",
        )
    return failed(
        "chip",
        f"RegVersion reads {version:#04x} ({KNOWN_VERSIONS.get(version, 'an unknown chip')})",
        "p1-lora needs an SX1276/77/78/79 module (RFM95W/96W/97W/98W); replace the module",
        "chip-not-found",
    )


def check_reset(setup: DoctorSetup, port: ChipPort) -> Finding:
    pins = setup.pins
    if port.reset is None:
        note = (
            "this board does not connect RESET"
            if pins and pins.name in BOARDS
            else ("no RESET pin in the pin map")
        )
        return passed("reset", f"{note}: a hung chip is recovered with a sleep-mode restart")
    reset_value = SHARED_RESET_VALUES[_PROBE_REGISTER]
    _write(port, _PROBE_REGISTER, _PROBE_VALUE)
    written = _read(port, _PROBE_REGISTER)
    if written != _PROBE_VALUE:
        return failed(
            "reset",
            f"wrote {_PROBE_VALUE:#04x} to RegPaRamp, it reads {written:#04x}: SPI writes do "
            "not reach the chip",
            f"check MOSI (GPIO10) and the chip select ({_wiring(setup)})",
            "reset",
        )
    port.reset.write(False)
    _pause(port, RESET_PULSE_S)
    port.reset.write(True)
    _pause(port, RESET_SETTLE_S)
    after = _read(port, _PROBE_REGISTER)
    where = f"GPIO{pins.reset_gpio}" if pins and pins.reset_gpio is not None else "RESET"
    if after == reset_value:
        return passed("reset", f"a pulse on {where} brought RegPaRamp back to {reset_value:#04x}")
    return failed(
        "reset",
        f"after a pulse on {where} RegPaRamp still reads {after:#04x} (reset value "
        f"{reset_value:#04x}): RESET does not reach the chip",
        f"connect the module's RESET pin to {where} (or set reset to none in the pins if the "
        "board does not wire it); without it a hung chip cannot be reset",
        "reset",
    )


def check_dio0(setup: DoctorSetup, port: ChipPort) -> Finding:
    counter = EdgeCounter(port.dio0) if port.dio0 is not None else None
    radio = SX127x(
        port.spi,
        clock=port.scheduler,
        reset=port.reset,
        dio0=counter,
        pa_boost=setup.pins.pa_boost if setup.pins is not None else True,
        scheduler=port.scheduler,
        name="doctor",
        wiring=_wiring(setup),
    )
    try:
        radio.configure(setup.region.rendezvous(setup.frequency_hz))
        radio.start_cad()
        port.scheduler.wait(radio.wakeup, _CAD_WAIT_S)
        done = [e for e in radio.poll() if isinstance(e, CadDone)]
    finally:
        radio.close()
    if not done:
        return failed(
            "dio0",
            "the chip never finished a channel activity detection",
            "the chip does not work as an SX127x: check power and the module",
            "dio0",
        )
    pins = setup.pins
    if counter is None:
        return warned(
            "dio0",
            "no DIO0 pin in the pin map: the daemon polls the chip every second instead",
            "wire DIO0 to a free GPIO and add it to the pins (dio0=N) for quicker reactions",
            "dio0",
        )
    where = f"GPIO{pins.dio0_gpio}" if pins and pins.dio0_gpio is not None else "DIO0"
    if counter.edges == 0:
        return failed(
            "dio0",
            f"the chip finished a CAD but no rising edge arrived on {where}",
            f"connect the module's DIO0 to {where} (the daemon still works by polling once a "
            "second, but reacts late and wastes airtime)",
            "dio0",
        )
    return passed("dio0", f"CadDone raised DIO0 and the edge arrived on {where}")


def check_pin_map(setup: DoctorSetup) -> Finding:
    pins = setup.pins
    if pins is None:
        return passed("pins", "emulated SX1276: every line connected")
    same = [b.name for b in BOARDS.values() if b.name != pins.name and _same_wiring(b, pins)]
    text = pins.wiring()
    if pins.name not in BOARDS and same:
        text += f" (the wiring of: {', '.join(same)})"
    return passed("pins", text)


def _same_wiring(a: BoardPins, b: BoardPins) -> bool:
    fields = ("spi_bus", "spi_device", "cs_gpio", "reset_gpio", "dio0_gpio")
    return all(getattr(a, f) == getattr(b, f) for f in fields)


def check_chip(setup: DoctorSetup, port: ChipPort) -> list[Finding]:
    """Findings "chip", "reset", "dio0" in that order (the later ones skipped when the chip
    does not answer)."""
    findings: list[Finding] = []
    version = check_version(setup, port)
    findings.append(version)
    if version.failed:
        findings += [skipped(c, "skipped: the chip does not answer") for c in ("reset", "dio0")]
        return findings
    findings.append(check_reset(setup, port))
    try:
        findings.append(check_dio0(setup, port))
    except RadioError as exc:
        findings.append(failed("dio0", str(exc), "check the wiring above", "chip-not-found"))
    return findings
