"""Raspberry Pi HAT pin maps (BCM numbering) as a table, plus fully custom pins.

A board is which SPI device the radio sits on, whether its NSS is a hardware chip-enable or a
plain GPIO the driver toggles itself (the Dragino HAT wires NSS to GPIO25), where RESET and DIO0
go, which PA output the module wires to the antenna, and which radio module it carries.

The module matters because RegVersion reads 0x12 on every SX1276/77/78/79, so software cannot
tell them apart, yet they differ (datasheet table 1 and HopeRF's RFM95/96/97/98 datasheets):
the module's RF matching fixes its band (a 433 MHz RFM96/98 on an 868 MHz channel loses tens
of dB), and the SX1277 inside an RFM97 demodulates only SF6-SF9. `MODULES` says what each
supports; a board entry names its module where the product has only one, and `module_problem`
turns a mismatch into a message. Every module here only connects PA_BOOST to the antenna.

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
    "MODULES",
    "BoardPins",
    "RadioModule",
    "get_board",
    "get_module",
    "module_problem",
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
class RadioModule:
    """A LoRa module: the chip inside, the band its RF matching is built for, and its SFs."""

    name: str
    chip: str
    band_hz: tuple[int, int]
    sf_range: tuple[int, int] = (6, 12)

    def supports_frequency(self, frequency_hz: int) -> bool:
        return self.band_hz[0] <= frequency_hz <= self.band_hz[1]

    def supports_sf(self, sf: int) -> bool:
        return self.sf_range[0] <= sf <= self.sf_range[1]

    def describe(self) -> str:
        low, high = (f / 1e6 for f in self.band_hz)
        return (
            f"{self.name} ({self.chip}, {low:g}-{high:g} MHz, "
            f"SF{self.sf_range[0]}-SF{self.sf_range[1]})"
        )


#: HopeRF modules (RFM9xW datasheets; chips per the SX1276/77/78/79 datasheet table 1). The band
#: is what the module's matching network is built for: the RFM95/97 carry the 868/915 MHz
#: matching on the HF port, the RFM96/98 the 433/470 MHz matching on the LF port.
MODULES: Final = MappingProxyType(
    {
        "rfm95w": RadioModule("RFM95W", "SX1276", (862_000_000, 1_020_000_000)),
        "rfm96w": RadioModule("RFM96W", "SX1276", (410_000_000, 525_000_000)),
        "rfm97w": RadioModule("RFM97W", "SX1277", (862_000_000, 1_020_000_000), (6, 9)),
        "rfm98w": RadioModule("RFM98W", "SX1278", (410_000_000, 525_000_000)),
    }
)


def get_module(name: str) -> RadioModule:
    """A module by name (case-insensitive, the trailing W optional); ValueError otherwise."""
    key = name.strip().lower()
    module = MODULES.get(key) or MODULES.get(key + "w")
    if module is None:
        raise ValueError(f"unknown radio module {name!r}; known modules: {', '.join(MODULES)}")
    return module


def module_problem(module: RadioModule, frequency_hz: int, sfs: tuple[int, ...]) -> str | None:
    """Why `module` cannot serve a link on `frequency_hz` using spreading factors `sfs`."""
    if not module.supports_frequency(frequency_hz):
        low, high = (f / 1e6 for f in module.band_hz)
        return (
            f"the {module.name} is built for {low:g}-{high:g} MHz, but the channel is "
            f"{frequency_hz / 1e6:.3f} MHz: use a module for this band (RFM95W for 868/915 MHz, "
            "RFM96W/RFM98W for 433 MHz), or the region and channel of this module"
        )
    unsupported = sorted(sf for sf in set(sfs) if not module.supports_sf(sf))
    if unsupported:
        return (
            f"the {module.name} ({module.chip}) supports only SF{module.sf_range[0]}-"
            f"SF{module.sf_range[1]}, but the link needs "
            + ", ".join(f"SF{sf}" for sf in unsupported)
            + " (the rendezvous is the region's most robust setting): use an RFM95W"
        )
    return None


@dataclass(frozen=True, slots=True)
class BoardPins:
    """Where an SX127x module is wired on the Pi (validated on construction).

    `spi_device` selects /dev/spidev{bus}.{device}. With `cs_gpio` set, NSS is that GPIO,
    driven low around each transfer by p1-lora, and the device's hardware CE line is not used.
    `reset_gpio` or `dio0_gpio` None means not connected (DIO0 missing: polling only).
    `module` names the radio module (a `MODULES` key) when the board has only one; None when
    the product comes in several bands and the board name cannot say which.
    """

    name: str
    description: str
    spi_bus: int = 0
    spi_device: int = 0
    cs_gpio: int | None = None
    reset_gpio: int | None = None
    dio0_gpio: int | None = None
    pa_boost: bool = True
    module: str | None = None

    def __post_init__(self) -> None:
        if self.module is not None and self.module not in MODULES:
            raise ValueError(f"unknown radio module {self.module!r}; known: {', '.join(MODULES)}")
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
    def radio_module(self) -> RadioModule | None:
        return MODULES[self.module] if self.module is not None else None

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
            "Dragino LoRa/GPS HAT (868/915 MHz version)",
            spi_device=0,
            cs_gpio=25,
            reset_gpio=17,
            dio0_gpio=4,
            module="rfm95w",
        ),
        "dragino-433": BoardPins(
            "dragino-433",
            "Dragino LoRa/GPS HAT (433 MHz version)",
            spi_device=0,
            cs_gpio=25,
            reset_gpio=17,
            dio0_gpio=4,
            module="rfm98w",
        ),
        "adafruit-rfm95w": BoardPins(
            "adafruit-rfm95w",
            "Adafruit RFM95W LoRa Radio Bonnet (868/915 MHz)",
            spi_device=1,
            reset_gpio=25,
            dio0_gpio=22,
            module="rfm95w",
        ),
        "adafruit-rfm96w": BoardPins(
            "adafruit-rfm96w",
            "Adafruit RFM96W LoRa Radio Bonnet (433 MHz)",
            spi_device=1,
            reset_gpio=25,
            dio0_gpio=22,
            module="rfm96w",
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
    `reset`, `dio0` (GPIO numbers or 'none'), `pa_boost` (yes/no; no selects the RFO output),
    `module` (rfm95w, rfm96w, rfm97w, rfm98w: lets p1-lora check band and SFs).
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
    unknown = set(fields) - {"spi", "cs", "reset", "dio0", "pa_boost", "module"}
    if unknown:
        raise ValueError(
            f"unknown pin setting(s) {', '.join(sorted(unknown))}; "
            "use spi=BUS.DEVICE, cs=, reset=, dio0=, pa_boost=yes|no, module="
        )
    module = get_module(fields["module"]).name.lower() if "module" in fields else None
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
        module=module,
    )
