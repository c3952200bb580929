"""Real SPI and GPIO on a Raspberry Pi: `spidev` and the `RPi.GPIO` API (from rpi-lgpio).

Both libraries are imported only when a real radio is opened, so p1-lora installs, imports and
runs its simulator and tests on any machine. On a machine without them the error names the
extra to install. `rpi-lgpio` is used rather than classic RPi.GPIO because the latter cannot add
edge detection on kernel 6.6 (Raspberry Pi OS Bookworm) and does not run on a Pi 5 at all;
rpi-lgpio provides the same `RPi.GPIO` module on lgpio.
"""

from __future__ import annotations

import importlib
import logging
import threading
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from p1lora.hardware.boards import BoardPins
from p1lora.hardware.radio import RadioError
from p1lora.hardware.spi_gpio import DigitalInput, DigitalOutput, EdgeCallback, SpiDevice

__all__ = [
    "DEFAULT_SPI_SPEED_HZ",
    "PI_EXTRA_HINT",
    "GpioInput",
    "GpioOutput",
    "PiHardware",
    "SpidevDevice",
    "open_board",
]

logger = logging.getLogger(__name__)

PI_EXTRA_HINT = "install the Raspberry Pi extra: pip install 'p1-lora[pi]' (spidev and rpi-lgpio)"
#: The SX127x accepts up to 10 MHz; 5 MHz leaves margin for jumper wires and long HAT traces.
DEFAULT_SPI_SPEED_HZ = 5_000_000

_gpio_lock = threading.Lock()
_gpio_module: Any = None


def _import(module: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise RadioError(
            f"the real SX127x radio needs the {module} module, which is not available "
            f"({exc}); {PI_EXTRA_HINT}"
        ) from exc


def _gpio() -> Any:
    """The RPi.GPIO module, set to BCM numbering once per process."""
    global _gpio_module
    with _gpio_lock:
        if _gpio_module is None:
            module = _import("RPi.GPIO")
            module.setwarnings(False)
            module.setmode(module.BCM)
            _gpio_module = module
        return _gpio_module


class GpioOutput:
    """A GPIO driven by p1-lora (RESET, or NSS on boards where it is not a hardware CE)."""

    def __init__(self, pin: int, *, initial: bool = True) -> None:
        self._gpio = _gpio()
        self.pin = pin
        self._closed = False
        try:
            self._gpio.setup(pin, self._gpio.OUT, initial=self._gpio.HIGH if initial else 0)
        except (RuntimeError, OSError, ValueError) as exc:
            raise RadioError(f"cannot use GPIO{pin} as an output: {exc}") from exc

    def write(self, high: bool) -> None:
        self._gpio.output(self.pin, self._gpio.HIGH if high else self._gpio.LOW)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._gpio.cleanup(self.pin)
            except (RuntimeError, OSError, ValueError) as exc:
                logger.debug("GPIO%d cleanup: %s", self.pin, exc)


class GpioInput:
    """DIO0: an input with rising-edge callbacks on RPi.GPIO's callback thread."""

    def __init__(self, pin: int) -> None:
        self._gpio = _gpio()
        self.pin = pin
        self._watching = False
        self._closed = False
        try:
            self._gpio.setup(pin, self._gpio.IN, pull_up_down=self._gpio.PUD_DOWN)
        except (RuntimeError, OSError, ValueError) as exc:
            raise RadioError(f"cannot use GPIO{pin} as an input: {exc}") from exc

    def read(self) -> bool:
        return bool(self._gpio.input(self.pin))

    def watch_rising(self, callback: EdgeCallback | None) -> None:
        if self._watching:
            self._gpio.remove_event_detect(self.pin)
            self._watching = False
        if callback is None:
            return

        def on_edge(_channel: int) -> None:
            callback()

        try:
            self._gpio.add_event_detect(self.pin, self._gpio.RISING, callback=on_edge)
        except RuntimeError as exc:
            raise RadioError(
                f"cannot watch GPIO{self.pin} (DIO0) for edges: {exc}. The classic RPi.GPIO "
                "package cannot do this on Raspberry Pi OS Bookworm or a Pi 5: uninstall it "
                f"and use rpi-lgpio; {PI_EXTRA_HINT}"
            ) from exc
        self._watching = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.watch_rising(None)
            self._gpio.cleanup(self.pin)
        except (RuntimeError, OSError, ValueError) as exc:
            logger.debug("GPIO%d cleanup: %s", self.pin, exc)


class SpidevDevice:
    """/dev/spidevB.D in mode 0; NSS optionally a GPIO toggled around each transfer."""

    def __init__(
        self,
        bus: int,
        device: int,
        *,
        speed_hz: int = DEFAULT_SPI_SPEED_HZ,
        chip_select: DigitalOutput | None = None,
    ) -> None:
        spidev = _import("spidev")
        self._dev = spidev.SpiDev()
        path = f"/dev/spidev{bus}.{device}"
        try:
            self._dev.open(bus, device)
        except FileNotFoundError as exc:
            raise RadioError(
                f"{path} does not exist: enable SPI (raspi-config > Interface Options > SPI, "
                "or dtparam=spi=on in /boot/firmware/config.txt) and reboot"
            ) from exc
        except PermissionError as exc:
            raise RadioError(
                f"no permission to open {path}: add the user to the 'spi' and 'gpio' groups "
                "(sudo usermod -aG spi,gpio $USER) and log in again"
            ) from exc
        except OSError as exc:
            raise RadioError(f"cannot open {path}: {exc}") from exc
        self._dev.max_speed_hz = speed_hz
        self._dev.mode = 0
        self._chip_select = chip_select
        if chip_select is not None:
            try:
                self._dev.no_cs = True  # leave the hardware CE alone; NSS is our GPIO
            except (OSError, AttributeError) as exc:
                logger.debug("%s: no_cs not supported (%s); CE toggles harmlessly", path, exc)
        self._lock = threading.Lock()
        self._closed = False

    def transfer(self, data: bytes) -> bytes:
        with self._lock:
            chip_select = self._chip_select
            if chip_select is not None:
                chip_select.write(False)
            try:
                result = self._dev.xfer2(list(data))
            finally:
                if chip_select is not None:
                    chip_select.write(True)
        return bytes(result)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._dev.close()
        if self._chip_select is not None:
            self._chip_select.close()


@dataclass(slots=True)
class PiHardware:
    """The SPI device and pins for one board, ready for the driver."""

    spi: SpiDevice
    reset: DigitalOutput | None
    dio0: DigitalInput | None


def open_board(pins: BoardPins, *, speed_hz: int = DEFAULT_SPI_SPEED_HZ) -> PiHardware:
    """Open SPI and GPIO for `pins`; RadioError (naming the `pi` extra) without the libraries."""
    opened: list[SpiDevice | DigitalOutput | DigitalInput] = []
    try:
        chip_select = GpioOutput(pins.cs_gpio) if pins.cs_gpio is not None else None
        if chip_select is not None:
            opened.append(chip_select)  # closing twice is harmless
        spi = SpidevDevice(
            pins.spi_bus, pins.spi_device, speed_hz=speed_hz, chip_select=chip_select
        )
        opened.append(spi)
        reset = GpioOutput(pins.reset_gpio) if pins.reset_gpio is not None else None
        if reset is not None:
            opened.append(reset)
        dio0 = GpioInput(pins.dio0_gpio) if pins.dio0_gpio is not None else None
    except BaseException:
        for item in opened:
            item.close()
        raise
    return PiHardware(spi, reset, dio0)
