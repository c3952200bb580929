"""Raspberry Pi HAT pin maps (BCM numbering) as a table, plus fully custom pins.

A board is which SPI device the radio sits on, whether its NSS is a hardware chip-enable or a
plain GPIO the driver toggles itself (the Dragino HAT wires NSS to GPIO25), where RESET and DIO0
go, and which PA output the module wires to the antenna. Every HAT listed here carries a HopeRF
RFM95/96/98-style module, which only connects PA_BOOST.

The Uputronics LoRa expansion boards do not connect the module's RESET pin; the driver recovers
a stuck chip there with a sleep-mode restart instead of a reset pulse.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Final

__all__ = [
    "BOARDS",
    "BOARD_ALIASES",
    "BoardPins",
    "get_board",
    "parse_pins",
]

#: The 40-pin header's user GPIOs (BCM numbers).
_GPIO_RANGE = range(28)

#: SPI bus -> (SCLK, MOSI, MISO) GPIOs and the hardware chip-enable GPIO of each device.
_SPI_PINS: Final = MappingProxyType(
    {
        0: ((11, 10, 9), {0: 8, 1: 7}),
        1: ((21, 20, 19), {0: 18, 1: 17, 2: 16}),
    }
)


@dataclass(frozen=True, slots=True)
class BoardPins:
    """Where an SX127x module is wired on the Pi (validated on construction).

    `spi_device` selects /dev/spidev{bus}.{device}. With `cs_gpio` set, NSS is that GPIO,
    driven low around each transfer by p1-lora, and the device's hardware CE line is not used.
    `reset_gpio` or `dio0_gpio` None means not connected (DIO0 missing: polling only).
    """

    name: str
    description: str
    spi_bus: int = 0
    spi_device: int = 0
    cs_gpio: int | None = None
    reset_gpio: int | None = None
    dio0_gpio: int | None = None
    pa_boost: bool = True

    def __post_init__(self) -> None:
        if self.spi_bus not in _SPI_PINS:
            raise ValueError(f"SPI bus {self.spi_bus} is not one of {sorted(_SPI_PINS)}")
        bus_pins, ce_pins = _SPI_PINS[self.spi_bus]
        if self.spi_device not in ce_pins:
            raise ValueError(
                f"SPI{self.spi_bus} has chip-enable devices {sorted(ce_pins)}, "
                f"not {self.spi_device}"
            )
        roles = {"cs": self.cs_gpio, "reset": self.reset_gpio, "dio0": self.dio0_gpio}
        used: dict[int, str] = {}
        for role, pin in roles.items():
            if pin is None:
                continue
            if pin not in _GPIO_RANGE:
                raise ValueError(f"{role} GPIO{pin} is not a header GPIO (BCM 0..27)")
            if pin in bus_pins:
                raise ValueError(
                    f"{role} GPIO{pin} is an SPI{self.spi_bus} data/clock line "
                    f"(SCLK/MOSI/MISO are GPIO{bus_pins[0]}/{bus_pins[1]}/{bus_pins[2]})"
                )
            if pin in used:
                raise ValueError(f"GPIO{pin} is used twice ({used[pin]} and {role})")
            used[pin] = role
        hardware_ce = ce_pins[self.spi_device]
        if self.cs_gpio is None and hardware_ce in used:
            raise ValueError(
                f"{used[hardware_ce]} GPIO{hardware_ce} is the chip enable of "
                f"/dev/spidev{self.spi_bus}.{self.spi_device}"
            )

    @property
    def spi_path(self) -> str:
        return f"/dev/spidev{self.spi_bus}.{self.spi_device}"

    def wiring(self) -> str:
        """The wiring in words, for error messages: what to check when the chip is silent."""
        if self.cs_gpio is not None:
            cs = f"NSS on GPIO{self.cs_gpio} driven as a GPIO (via {self.spi_path})"
        else:
            ce = _SPI_PINS[self.spi_bus][1][self.spi_device]
            cs = f"NSS on CE{self.spi_device} (GPIO{ce}, {self.spi_path})"
        reset = f"RESET on GPIO{self.reset_gpio}" if self.reset_gpio is not None else "no RESET"
        dio0 = f"DIO0 on GPIO{self.dio0_gpio}" if self.dio0_gpio is not None else "no DIO0"
        return f"{self.description}: {cs}, {reset}, {dio0}"


#: The HATs p1-lora knows by name.
BOARDS: Final = MappingProxyType(
    {
        "dragino": BoardPins(
            "dragino",
            "Dragino LoRa/GPS HAT",
            spi_device=0,
            cs_gpio=25,
            reset_gpio=17,
            dio0_gpio=4,
        ),
        "adafruit-rfm95w": BoardPins(
            "adafruit-rfm95w",
            "Adafruit RFM95W LoRa Radio Bonnet",
            spi_device=1,
            reset_gpio=25,
            dio0_gpio=22,
        ),
        "uputronics-ce0": BoardPins(
            "uputronics-ce0",
            "Uputronics LoRa expansion board on CE0",
            spi_device=0,
            dio0_gpio=25,
        ),
        "uputronics-ce1": BoardPins(
            "uputronics-ce1",
            "Uputronics LoRa expansion board on CE1",
            spi_device=1,
            dio0_gpio=16,
        ),
    }
)

#: Other names people use for the same boards.
BOARD_ALIASES: Final = MappingProxyType(
    {
        "dragino-lora-gps-hat": "dragino",
        "adafruit": "adafruit-rfm95w",
        "adafruit-bonnet": "adafruit-rfm95w",
        "rfm95w-bonnet": "adafruit-rfm95w",
        "uputronics": "uputronics-ce0",
    }
)


def get_board(name: str) -> BoardPins:
    """A board by name or alias (case-insensitive); ValueError listing the known ones."""
    key = name.strip().lower().replace("_", "-")
    key = BOARD_ALIASES.get(key, key)
    board = BOARDS.get(key)
    if board is None:
        raise ValueError(
            f"unknown board {name!r}; known boards: {', '.join(BOARDS)} "
            "(or give custom pins, e.g. 'spi=0.1,reset=25,dio0=22')"
        )
    return board


_TRUE = frozenset({"1", "yes", "true", "on"})
_FALSE = frozenset({"0", "no", "false", "off"})
_NONE = frozenset({"none", "-", ""})


def _pin(key: str, value: str) -> int | None:
    if value.lower() in _NONE:
        return None
    text = value.lower().removeprefix("gpio")
    if not text.isdigit():
        raise ValueError(f"{key}={value!r}: expected a BCM GPIO number or 'none'")
    return int(text)


def parse_pins(spec: str, *, name: str = "custom") -> BoardPins:
    """Custom pins from text such as 'spi=0.1,cs=25,reset=17,dio0=4,pa_boost=yes'.

    Keys: `spi` (BUS.DEVICE, default 0.0), `cs` (NSS as a GPIO; omit for the hardware CE),
    `reset`, `dio0` (GPIO numbers or 'none'), `pa_boost` (yes/no; no selects the RFO output).
    A bare board name is accepted too.
    """
    text = spec.strip()
    if "=" not in text:
        return get_board(text)
    fields: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        key, sep, value = part.partition("=")
        key = key.strip().lower().replace("-", "_")
        if not sep:
            raise ValueError(f"{part.strip()!r}: expected KEY=VALUE")
        if key in fields:
            raise ValueError(f"{key} is given twice")
        fields[key] = value.strip()
    unknown = set(fields) - {"spi", "cs", "reset", "dio0", "pa_boost"}
    if unknown:
        raise ValueError(
            f"unknown pin setting(s) {', '.join(sorted(unknown))}; "
            "use spi=BUS.DEVICE, cs=, reset=, dio0=, pa_boost=yes|no"
        )
    bus, device = 0, 0
    if "spi" in fields:
        bus_text, _, device_text = fields["spi"].partition(".")
        if not (bus_text.isdigit() and device_text.isdigit()):
            raise ValueError(f"spi={fields['spi']!r}: expected BUS.DEVICE such as 0.1")
        bus, device = int(bus_text), int(device_text)
    pa_text = fields.get("pa_boost", "yes").lower()
    if pa_text not in _TRUE | _FALSE:
        raise ValueError(f"pa_boost={pa_text!r}: expected yes or no")
    return BoardPins(
        name,
        "custom wiring",
        spi_bus=bus,
        spi_device=device,
        cs_gpio=_pin("cs", fields.get("cs", "none")),
        reset_gpio=_pin("reset", fields.get("reset", "none")),
        dio0_gpio=_pin("dio0", fields.get("dio0", "none")),
        pa_boost=pa_text in _TRUE,
    )
