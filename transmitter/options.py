"""The options only `p1-lora-tx` has: `[serial]` (the P1 port) and `[meter]` (the built-in
virtual meter or a capture replay), its option table, and the typed sections its code reads
them through. The shared rows and checks (radio, link, state) come from
`p1lora.service.options`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar, Final

from p1lora.service.config import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    PATH,
    STRING,
    Config,
    Exclusive,
    Option,
    choice,
    in_range,
)
from p1lora.service.options import Section, daemon_table
from p1lora.transmitter.meter_profiles import PROFILES
from p1lora.transmitter.meter_template import load_template
from p1lora.transmitter.serial_source import MODES as SERIAL_MODES

__all__ = ["TX_OPTIONS", "VIRTUAL_METER", "MeterSection", "SerialSection"]

#: `meter.source` value selecting the built-in virtual meter.
VIRTUAL_METER: Final = "virtual"


def _meter_source(value: str) -> str | None:
    if not value.strip():
        return f'must be "{VIRTUAL_METER}" or the path of a capture file'
    return None


def _meter_template(value: Path) -> str | None:
    """The template must be a telegram the virtual meter can write in the style of (read
    here, so that a missing or bad file stops the start with exit code 2, radio untouched)."""
    try:
        load_template(value)
    except ValueError as exc:  # TemplateError, and a profile the template cannot use
        return str(exc)
    return None


_SOURCE_TX: Final = (
    Option(
        "serial",
        "port",
        PATH,
        None,
        "the P1 cable's serial port (a /dev/serial/by-id/... path survives replugging)",
        flag="--serial",
        metavar="PATH",
        example=Path("/dev/ttyUSB0"),
    ),
    Option(
        "serial",
        "mode",
        choice(*SERIAL_MODES),
        "auto",
        "serial settings by DSMR version: auto detects them; 5 = 115200 8N1, 4 = 115200 7E1, "
        "2.2 and 3 = 9600 7E1",
    ),
    Option(
        "meter",
        "source",
        STRING,
        None,
        'instead of a serial port: "virtual" for the built-in virtual meter, or the path of '
        "a capture file to replay (testing and demos)",
        check=_meter_source,
        flag="--meter",
        metavar="virtual|FILE",
        sample=VIRTUAL_METER,
    ),
    Option(
        "meter",
        "profile",
        choice(*PROFILES),
        "dsmr5",
        f"meter = virtual: which meter to simulate ({', '.join(PROFILES)})",
        metavar="PROFILE",
    ),
    Option(
        "meter",
        "template",
        PATH,
        None,
        "meter = virtual: simulate any meter in the exact style of the first telegram in FILE "
        "(as `p1-lora meter --template`; its serial line, interval, tariffs and devices)",
        check=_meter_template,
        metavar="FILE",
        sample=Path("/etc/p1-lora/meter-template.txt"),
    ),
    Option("meter", "seed", INTEGER, 0, "meter = virtual: random seed", metavar="N"),
    Option(
        "meter",
        "solar",
        NUMBER,
        None,
        "meter = virtual: rooftop solar size in kWp (default: the profile's; 0 for none)",
        check=in_range(0, 50, "kWp"),
        metavar="KWP",
        sample=4.0,
    ),
    Option(
        "meter",
        "loop",
        BOOLEAN,
        True,
        "meter = FILE: start the capture over at its end (otherwise the source stops)",
    ),
)


@dataclasses.dataclass(frozen=True, slots=True)
class SerialSection(Section):
    """`[serial]`."""

    SECTION: ClassVar[str] = "serial"
    port: Path | None = None
    mode: str = "auto"


@dataclasses.dataclass(frozen=True, slots=True)
class MeterSection(Section):
    """`[meter]`."""

    SECTION: ClassVar[str] = "meter"
    source: str | None = None
    profile: str = "dsmr5"
    seed: int = 0
    solar: float | None = None
    loop: bool = True
    template: Path | None = None


def _source_problems(config: Config) -> Iterator[str]:
    meter = MeterSection.of(config)
    if SerialSection.of(config).port is None and meter.source is None:
        yield (
            "serial.port: no P1 source: set serial.port (--serial PATH) to the P1 cable, or "
            "meter.source (--meter virtual, or --meter FILE) for a simulated meter"
        )
    if meter.template is not None and (meter.source or "").strip().lower() != VIRTUAL_METER:
        yield (
            "meter.template: a template styles the virtual meter: set meter.source = "
            f'"{VIRTUAL_METER}" (--meter {VIRTUAL_METER}) too'
        )


TX_OPTIONS: Final = daemon_table(
    program="p1-lora-tx",
    role="tx",
    options=_SOURCE_TX,
    sections={
        "serial": "The smart meter's P1 port.",
        "meter": "A simulated meter instead of the P1 port (testing, demos).",
    },
    exclusive=(
        Exclusive(
            (("serial.port",), ("meter.source",)),
            "the transmitter reads either the serial port or a simulated meter",
        ),
    ),
    checks=(_source_problems,),
    intro="p1-lora-tx: the meter-closet side. Reads the smart meter's P1 port and sends every "
    "reading over LoRa to p1-lora-rx. Default location: /etc/p1-lora/tx.toml",
)
