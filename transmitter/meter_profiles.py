"""The smart meters the virtual meter can imitate, as data.

A real meter is mostly a fixed layout (which OBIS lines, in which order, with how many digits)
plus a few behaviours (send interval, serial line, when the tariff switches, how often the gas
reading refreshes). Keeping those facts in one table means a new meter style is a new row, the
generator in `virtual_meter` has no per-meter branches, and tests can check every row the same
way. Template lines are copied from real telegrams (see tests/data/telegrams) with the changing
values replaced by `{field}` placeholders; `virtual_meter.FIELDS` lists what each one means.

The serial settings per DSMR generation also live here because they are a property of the
meter: the P1 serial source uses the same table to open the port.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "DSMR_GENERATIONS",
    "PROFILES",
    "SERIAL_SETTINGS",
    "MeterProfile",
    "NumberFormat",
    "SerialSettings",
    "TariffSchedule",
    "get_profile",
]


@dataclass(frozen=True, slots=True)
class SerialSettings:
    """One UART configuration, in pyserial's terms.

    `char_bits` (start + data + parity + stop bits) is what paces a writer: at 115200 baud with
    10 bits per character a 900-byte DSMR 5 telegram takes 78 ms on the wire.
    """

    baudrate: int
    bytesize: Literal[7, 8]
    parity: Literal["N", "E", "O"]
    stopbits: Literal[1, 2]

    @property
    def char_bits(self) -> int:
        """Bits on the wire per character, including start, parity and stop bits."""
        return 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits

    @property
    def char_seconds(self) -> float:
        """Time one character occupies the line."""
        return self.char_bits / self.baudrate

    @property
    def label(self) -> str:
        """The usual short form, e.g. '115200 8N1'."""
        return f"{self.baudrate} {self.bytesize}{self.parity}{self.stopbits}"


#: P1 serial line per DSMR generation (DSMR P1 companion standards 2.2 ... 5.0.2).
SERIAL_SETTINGS: dict[str, SerialSettings] = {
    "5": SerialSettings(115_200, 8, "N", 1),
    "4": SerialSettings(115_200, 7, "E", 1),
    "2.2": SerialSettings(9_600, 7, "E", 1),
    "3": SerialSettings(9_600, 7, "E", 1),
}

#: Order in which `auto` detection tries the generations. 8N1 comes first on purpose: ASCII sent
#: as 8N1 reads back unchanged under 7E1 (the UART drops the always-zero 8th bit), so trying 7E1
#: first would mislabel a DSMR 5 meter, while 7E1 data read as 8N1 shows high bits at once.
DSMR_GENERATIONS: tuple[str, ...] = ("5", "4", "2.2")


@dataclass(frozen=True, slots=True)
class NumberFormat:
    """How a meter prints one quantity: zero-padded integer digits, decimals and unit.

    `scale` is the power of ten between the simulator's integer base unit and the printed
    unit (Wh -> kWh is 3, Wh -> Wh is 0), so registers are formatted from integers and never
    suffer float rounding.
    """

    int_digits: int
    decimals: int
    unit: str
    scale: int = 0


@dataclass(frozen=True, slots=True)
class TariffSchedule:
    """When the low ('dal', night) tariff applies, in the meter's local time.

    `low_register` / `high_register` name the register pair index (1 or 2) each period
    counts into: the Netherlands counts the low tariff into 1.8.1, Belgium counts the day
    tariff into 1.8.1, so the same shape covers both. Public holidays are not modelled.
    """

    low_register: int
    high_register: int
    low_from_hour: int
    low_until_hour: int
    low_on_weekends: bool = True

    def register_at(self, hour: int, weekday: int) -> int:
        """Register index for a local hour (0-23) and weekday (Monday 0 ... Sunday 6)."""
        if self.low_on_weekends and weekday >= 5:
            return self.low_register
        if hour >= self.low_from_hour or hour < self.low_until_hour:
            return self.low_register
        return self.high_register


#: Netherlands: low tariff ('tarief 1', dal) 23:00-07:00 on weekdays and all weekend.
NL_TARIFFS = TariffSchedule(low_register=1, high_register=2, low_from_hour=23, low_until_hour=7)
#: Belgium (Fluvius): tariff 1 is day, tariff 2 night: 22:00-07:00 on weekdays and all weekend.
BE_TARIFFS = TariffSchedule(low_register=2, high_register=1, low_from_hour=22, low_until_hour=7)


@dataclass(frozen=True, slots=True)
class MeterProfile:
    """Everything that makes one meter style look and behave like the real thing."""

    name: str
    description: str
    dsmr: str
    header: str
    #: Telegram body lines after the header, CRLF added by the generator. `{field}`
    #: placeholders are filled per telegram; see `virtual_meter.FIELDS`.
    lines: tuple[str, ...]
    interval: int
    tariffs: TariffSchedule
    #: Gas (and water) readings refresh once per this many seconds, on the clock.
    gas_period: int
    energy: NumberFormat
    power: NumberFormat
    voltage: NumberFormat
    current: NumberFormat
    volume: NumberFormat
    has_crc: bool = True
    phases: int = 3
    #: Power is measured in steps of this many watts (10 W when the meter prints 2 decimals kW).
    power_step_w: int = 1
    #: Rooftop solar, in kWp, when the caller does not choose (0 = no solar).
    default_solar_kwp: float = 0.0

    @property
    def serial(self) -> SerialSettings:
        """The P1 serial line this meter uses."""
        return SERIAL_SETTINGS[self.dsmr]


_KWH = NumberFormat(6, 3, "kWh", scale=3)
_KW = NumberFormat(2, 3, "kW", scale=3)
_VOLT = NumberFormat(3, 1, "V", scale=1)
_M3 = NumberFormat(5, 3, "m3", scale=3)

_DSMR5_LINES = (
    "",
    "1-3:0.2.8(50)",
    "0-0:1.0.0({timestamp})",
    "0-0:96.1.1({equipment_id})",
    "1-0:1.8.1({import_1})",
    "1-0:1.8.2({import_2})",
    "1-0:2.8.1({export_1})",
    "1-0:2.8.2({export_2})",
    "0-0:96.14.0({tariff})",
    "1-0:1.7.0({power_in})",
    "1-0:2.7.0({power_out})",
    "0-0:96.7.21({short_failures})",
    "0-0:96.7.9({long_failures})",
    "1-0:99.97.0{failure_log}",
    "1-0:32.32.0({sags_l1})",
    "1-0:52.32.0({sags_l2})",
    "1-0:72.32.0({sags_l3})",
    "1-0:32.36.0({swells_l1})",
    "1-0:52.36.0({swells_l2})",
    "1-0:72.36.0({swells_l3})",
    "0-0:96.13.0()",
    "1-0:32.7.0({voltage_l1})",
    "1-0:52.7.0({voltage_l2})",
    "1-0:72.7.0({voltage_l3})",
    "1-0:31.7.0({current_l1})",
    "1-0:51.7.0({current_l2})",
    "1-0:71.7.0({current_l3})",
    "1-0:21.7.0({power_l1_in})",
    "1-0:41.7.0({power_l2_in})",
    "1-0:61.7.0({power_l3_in})",
    "1-0:22.7.0({power_l1_out})",
    "1-0:42.7.0({power_l2_out})",
    "1-0:62.7.0({power_l3_out})",
    "0-1:24.1.0(003)",
    "0-1:96.1.0({gas_id})",
    "0-1:24.2.1({gas_timestamp})({gas_reading})",
)

_FLUVIUS_LINES = (
    "",
    "0-0:96.1.4(50217)",
    "0-0:96.1.1({equipment_id})",
    "0-0:1.0.0({timestamp})",
    "1-0:1.8.1({import_1})",
    "1-0:1.8.2({import_2})",
    "1-0:2.8.1({export_1})",
    "1-0:2.8.2({export_2})",
    "1-0:1.4.0({average_demand})",
    "1-0:1.6.0({peak_timestamp})({peak_demand})",
    "0-0:98.1.0{peak_history}",
    "0-0:96.14.0({tariff})",
    "1-0:1.7.0({power_in})",
    "1-0:2.7.0({power_out})",
    "1-0:21.7.0({power_l1_in})",
    "1-0:41.7.0({power_l2_in})",
    "1-0:61.7.0({power_l3_in})",
    "1-0:22.7.0({power_l1_out})",
    "1-0:42.7.0({power_l2_out})",
    "1-0:62.7.0({power_l3_out})",
    "1-0:32.7.0({voltage_l1})",
    "1-0:52.7.0({voltage_l2})",
    "1-0:72.7.0({voltage_l3})",
    "1-0:31.7.0({current_l1})",
    "1-0:51.7.0({current_l2})",
    "1-0:71.7.0({current_l3})",
    "0-0:96.3.10(1)",
    "0-0:17.0.0(999.9*kW)",
    "1-0:31.4.0(999*A)",
    "0-0:96.13.0()",
    "0-1:24.1.0(003)",
    "0-1:96.1.1({gas_id})",
    "0-1:24.4.0(1)",
    "0-1:24.2.3({gas_timestamp})({gas_reading})",
    "0-2:24.1.0(007)",
    "0-2:96.1.1({water_id})",
    "0-2:24.2.1({water_timestamp})({water_reading})",
)

_DSMR4_LINES = (
    "",
    "1-3:0.2.8(42)",
    "0-0:1.0.0({timestamp})",
    "0-0:96.1.1({equipment_id})",
    "1-0:1.8.1({import_1})",
    "1-0:1.8.2({import_2})",
    "1-0:2.8.1({export_1})",
    "1-0:2.8.2({export_2})",
    "0-0:96.14.0({tariff})",
    "1-0:1.7.0({power_in})",
    "1-0:2.7.0({power_out})",
    "0-0:96.7.21({short_failures})",
    "0-0:96.7.9({long_failures})",
    "1-0:99.97.0{failure_log}",
    "1-0:32.32.0({sags_l1})",
    "1-0:52.32.0({sags_l2})",
    "1-0:72.32.0({sags_l3})",
    "1-0:32.36.0({swells_l1})",
    "1-0:52.36.0({swells_l2})",
    "1-0:72.36.0({swells_l3})",
    "0-0:96.13.1()",
    "0-0:96.13.0()",
    "1-0:31.7.0({current_l1})",
    "1-0:51.7.0({current_l2})",
    "1-0:71.7.0({current_l3})",
    "1-0:21.7.0({power_l1_in})",
    "1-0:22.7.0({power_l1_out})",
    "1-0:41.7.0({power_l2_in})",
    "1-0:42.7.0({power_l2_out})",
    "1-0:61.7.0({power_l3_in})",
    "1-0:62.7.0({power_l3_out})",
    "0-1:24.1.0(003)",
    "0-1:96.1.0({gas_id})",
    "0-1:24.2.1({gas_timestamp})({gas_reading})",
)

_DSMR22_LINES = (
    "",
    "0-0:96.1.1({equipment_id})",
    "1-0:1.8.1({import_1})",
    "1-0:1.8.2({import_2})",
    "1-0:2.8.1({export_1})",
    "1-0:2.8.2({export_2})",
    "0-0:96.14.0({tariff})",
    "1-0:1.7.0({power_in})",
    "1-0:2.7.0({power_out})",
    "0-0:17.0.0(0999.00*kW)",
    "0-0:96.3.10(1)",
    "0-0:96.13.1()",
    "0-0:96.13.0()",
    "0-1:24.1.0(3)",
    "0-1:96.1.0({gas_id})",
    "0-1:24.3.0({gas_timestamp_plain})(00)(60)(1)(0-1:24.2.1)(m3)",
    "({gas_number})",
    "0-1:24.4.0(1)",
)

#: The meters `VirtualMeter` and `p1-lora meter --profile` know, by name.
PROFILES: dict[str, MeterProfile] = {
    "dsmr5": MeterProfile(
        name="dsmr5",
        description="DSMR 5.0 three-phase (Iskra AM550 style), gas every 5 min, solar on L1",
        dsmr="5",
        header="/ISK5\\2M550T-1012",
        lines=_DSMR5_LINES,
        interval=1,
        tariffs=NL_TARIFFS,
        gas_period=300,
        energy=_KWH,
        power=_KW,
        voltage=_VOLT,
        current=NumberFormat(3, 0, "A", scale=2),
        volume=_M3,
        default_solar_kwp=3.2,
    ),
    "fluvius": MeterProfile(
        name="fluvius",
        description="Belgian e-MUCS 1.7.1 (Fluvius), quarter-hour peak demand, gas and water",
        dsmr="5",
        header="/FLU5\\253769484_A",
        lines=_FLUVIUS_LINES,
        interval=1,
        tariffs=BE_TARIFFS,
        gas_period=300,
        energy=_KWH,
        power=_KW,
        voltage=_VOLT,
        current=NumberFormat(3, 2, "A", scale=2),
        volume=_M3,
        default_solar_kwp=0.0,
    ),
    "dsmr4": MeterProfile(
        name="dsmr4",
        description="DSMR 4.2 three-phase (Kaifa style), every 10 s, hourly gas",
        dsmr="4",
        header="/KFM5KAIFA-METER",
        lines=_DSMR4_LINES,
        interval=10,
        tariffs=NL_TARIFFS,
        gas_period=3600,
        energy=_KWH,
        power=_KW,
        voltage=_VOLT,
        current=NumberFormat(3, 0, "A", scale=2),
        volume=_M3,
    ),
    "dsmr22": MeterProfile(
        name="dsmr22",
        description="DSMR 2.2 single-phase (Iskra MT382 style), 9600 7E1, no CRC, hourly gas",
        dsmr="2.2",
        header="/ISk5\\2MT382-1003",
        lines=_DSMR22_LINES,
        interval=10,
        tariffs=NL_TARIFFS,
        gas_period=3600,
        energy=NumberFormat(5, 3, "kWh", scale=3),
        power=NumberFormat(4, 2, "kW", scale=3),
        voltage=_VOLT,
        current=NumberFormat(3, 0, "A", scale=2),
        volume=_M3,
        has_crc=False,
        phases=1,
        power_step_w=10,
    ),
}


def get_profile(name: str) -> MeterProfile:
    """Look a profile up by name, with an error message that lists the valid names."""
    try:
        return PROFILES[name]
    except KeyError:
        known = ", ".join(PROFILES)
        raise ValueError(f"unknown meter profile {name!r}; choose one of: {known}") from None
