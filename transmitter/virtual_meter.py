"""A deterministic virtual smart meter: realistic P1 telegrams from a seed and a clock you hand in.

Tests, the simulator and the demo need a meter that behaves like one in a closet: the timestamp
advances with the right summer/winter suffix, a household switches appliances on and off, a
rooftop inverter exports at midday, the energy registers grow by exactly the energy the printed
power implies, the tariff flips at the right local hours, gas refreshes on its own cadence, and
the CRC is right. It must also be cheap (the simulator generates an hour of telegrams in well
under a second) and reproducible (same seed, same bytes), so the generator is sans-I/O: it never
reads a clock, it is asked for "the telegram due at t seconds after start".

Everything is integer arithmetic where the meter would be exact: registers are joules (W*s)
internally, printed as whole Wh at the meter's resolution, so no float rounding can make a
register go backwards or drift from the integrated power. Per-meter layout and behaviour come
from the table in `meter_profiles`; the household behaviour comes from the tables below.
"""

from __future__ import annotations

import calendar
import dataclasses
import json
import math
import random
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar, Final, Protocol

from p1lora.common.crc16 import crc16_arc
from p1lora.transmitter.meter_profiles import (
    MeterProfile,
    NumberFormat,
    SerialSettings,
    get_profile,
)

__all__ = [
    "DEFAULT_START",
    "FIELDS",
    "VOLTAGE_BOUNDS_DV",
    "MeterReading",
    "MeterRegisters",
    "MeterState",
    "TelegramRenderer",
    "VirtualMeter",
    "eu_summer_time",
    "meter_timestamp",
]

#: Start time when none is given: a Monday 06:30 local, winter, just before the tariff switch.
DEFAULT_START = datetime(2024, 1, 15, 5, 30, tzinfo=UTC)

# --------------------------------------------------------------------------------------------
# Meter time: CET/CEST as the EU rule defines it (Directive 2000/84/EC). A meter does not carry
# the tz database; it switches at 01:00 UTC on the last Sundays of March and October, and that
# fixed rule is cheaper and more dependable here than a zoneinfo lookup per telegram.
# --------------------------------------------------------------------------------------------

_DST_CACHE: dict[int, tuple[int, int]] = {}


def _last_sunday_0100_utc(year: int, month: int) -> int:
    last_day = calendar.monthrange(year, month)[1]
    day = last_day - (calendar.weekday(year, month, last_day) + 1) % 7
    return calendar.timegm((year, month, day, 1, 0, 0, 0, 0, 0))


def eu_summer_time(epoch: int) -> bool:
    """True when EU summer time (CEST, the meter's 'S' suffix) is in force at `epoch` (UTC s)."""
    year = time.gmtime(epoch).tm_year
    bounds = _DST_CACHE.get(year)
    if bounds is None:
        bounds = (_last_sunday_0100_utc(year, 3), _last_sunday_0100_utc(year, 10))
        _DST_CACHE[year] = bounds
    return bounds[0] <= epoch < bounds[1]


def _local(epoch: int) -> tuple[time.struct_time, bool]:
    summer = eu_summer_time(epoch)
    return time.gmtime(epoch + (7200 if summer else 3600)), summer


def _stamp(tm: time.struct_time) -> str:
    return (
        f"{tm.tm_year % 100:02d}{tm.tm_mon:02d}{tm.tm_mday:02d}"
        f"{tm.tm_hour:02d}{tm.tm_min:02d}{tm.tm_sec:02d}"
    )


def meter_timestamp(epoch: int, suffix: bool = True) -> str:
    """The meter's `YYMMDDhhmmssX` for a UTC epoch: local CET/CEST time, X = S or W."""
    tm, summer = _local(epoch)
    return _stamp(tm) + (("S" if summer else "W") if suffix else "")


def _local_midnight_epoch(year: int, month: int, day: int) -> int:
    """Epoch of local 00:00 on a date (midnight never falls in a DST transition hour)."""
    naive = calendar.timegm((year, month, day, 0, 0, 0, 0, 0, 0))
    return naive - 7200 if eu_summer_time(naive - 7200) else naive - 3600


def _fixed(value: int, fmt: NumberFormat) -> str:
    """Print an integer in base units (10**-scale of fmt.unit) the way the meter does.

    Digits beyond the printed decimals are truncated, as a register display does; the integer
    part wraps at its width like a real register rolling over.
    """
    if fmt.decimals < fmt.scale:
        value //= 10 ** (fmt.scale - fmt.decimals)
        scale = fmt.decimals
    else:
        value *= 10 ** (fmt.decimals - fmt.scale)
        scale = fmt.decimals
    whole, frac = divmod(value, 10**scale)
    whole %= 10**fmt.int_digits
    if fmt.decimals == 0:
        return f"{whole:0{fmt.int_digits}d}*{fmt.unit}"
    return f"{whole:0{fmt.int_digits}d}.{frac:0{fmt.decimals}d}*{fmt.unit}"


def _fixed_bare(value: int, fmt: NumberFormat) -> str:
    """As `_fixed` without the `*unit` (the DSMR 2.2 gas value line)."""
    return _fixed(value, fmt).partition("*")[0]


# --------------------------------------------------------------------------------------------
# Household model: tables of things that switch on and off.
# --------------------------------------------------------------------------------------------

#: Relative activity per local hour (0..23); each curve is normalised to sum 1 so that a
#: consumer's `starts_per_day` is its expected number of starts per day.
_CURVES_RAW: dict[str, str] = {
    # hour:     00  01  02  03  04  05  06  07  08  09  10  11  12  13  14  15  16  17  18  19  20  21  22  23
    "flat":      "1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1   1",
    "household": ".2  .1  .1  .1  .1  .2  .8 1.6 1.4  .8  .7  .8   1  .8  .7  .7  .9 1.6 2.2   2 1.6 1.3  .8  .4",
    "morning_evening":
                 "0   0   0   0   0  .2 1.5 2.5 1.5  .5  .3  .3  .5  .3  .3  .3  .5   1 1.5 1.5 1.2  .8  .5  .1",
    "evening":   "0   0   0   0   0   0   0  .1  .1  .1  .1  .3  .5  .2  .1  .2  .5   2   3   2 1.5   1  .5  .1",
    "heating":   ".3  .2  .2  .2  .3  .8   2   2 1.5   1  .8  .8  .8  .8  .8  .9 1.2 1.6 1.8 1.8 1.6 1.4   1  .5",
}  # fmt: skip


def _normalise(row: str) -> tuple[float, ...]:
    weights = [float(w) for w in row.split()]
    if len(weights) != 24:
        raise ValueError(f"an hourly curve needs 24 weights, got {len(weights)}")
    return tuple(w / sum(weights) for w in weights)


_CURVES: dict[str, tuple[float, ...]] = {name: _normalise(row) for name, row in _CURVES_RAW.items()}

#: Phase value meaning "spread evenly over all phases" (hobs, heat pumps).
ALL_PHASES = -1


@dataclass(frozen=True, slots=True)
class Consumer:
    """Something that switches on at random (per an hourly curve) and runs for a while.

    `rate` is W for electric appliances and litres per hour for gas and water.
    `seasonal` scales the start rate with the heating season (winter 1, summer ~0.05).
    """

    name: str
    phase: int
    rate: int
    min_on_s: int
    max_on_s: int
    starts_per_day: float
    curve: str = "household"
    seasonal: bool = False


#: About 8 kWh a day for a two-person Dutch household (the national average is ~2700 kWh/year).
APPLIANCES: tuple[Consumer, ...] = (
    Consumer("fridge", 0, 95, 600, 1200, 30.0, "flat"),
    Consumer("freezer", 2, 110, 900, 1500, 18.0, "flat"),
    Consumer("kettle", 1, 2100, 120, 240, 4.0, "morning_evening"),
    Consumer("induction hob", ALL_PHASES, 3300, 900, 2400, 1.0, "evening"),
    Consumer("oven", 2, 2400, 1200, 3000, 0.3, "evening"),
    Consumer("washing machine", 1, 900, 3600, 6000, 0.6, "household"),
    Consumer("dishwasher", 2, 1100, 3600, 5400, 0.7, "evening"),
    Consumer("tv and computer", 0, 160, 3600, 10800, 1.5, "evening"),
    Consumer("lights", 0, 110, 1800, 7200, 2.5, "evening"),
    Consumer("microwave", 1, 1200, 60, 300, 1.5, "morning_evening"),
    Consumer("vacuum cleaner", 2, 1600, 300, 1200, 0.3, "household"),
)

#: Gas in litres per hour (1 m3/h is about 9.8 kW of boiler output).
GAS_CONSUMERS: tuple[Consumer, ...] = (
    Consumer("central heating", 0, 1100, 240, 720, 36.0, "heating", seasonal=True),
    Consumer("shower (combi boiler)", 0, 1600, 300, 720, 1.5, "morning_evening"),
    Consumer("gas hob", 0, 250, 900, 2400, 0.6, "evening"),
)

#: Water in litres per hour.
WATER_CONSUMERS: tuple[Consumer, ...] = (
    Consumer("shower", 0, 540, 300, 720, 1.5, "morning_evening"),
    Consumer("toilet", 0, 360, 50, 70, 8.0, "household"),
    Consumer("tap", 0, 300, 30, 180, 10.0, "household"),
)

_LATITUDE = math.radians(52.1)
_LONGITUDE_HOURS = 5.1 / 15.0
#: Grid impedance per phase (ohm): load pulls the phase voltage down, export pushes it up.
_GRID_OHM = 0.25
_NOMINAL_DV = (2312, 2305, 2318)


def _season(doy: int) -> float:
    """Heating season weight: ~1 in mid January, ~0.05 in mid July."""
    return 0.05 + 0.95 * (0.5 + 0.5 * math.cos(2 * math.pi * (doy - 15) / 365))


def _clear_sky(epoch: int) -> float:
    """Relative PV output under a clear sky at 52 N 5 E (sine of the sun's elevation)."""
    tm = time.gmtime(epoch)
    declination = math.radians(23.44) * math.sin(2 * math.pi * (284 + tm.tm_yday) / 365)
    solar_hours = tm.tm_hour + tm.tm_min / 60 + tm.tm_sec / 3600 + _LONGITUDE_HOURS
    hour_angle = math.radians(15.0 * (solar_hours - 12.0))
    sin_elevation = math.sin(_LATITUDE) * math.sin(declination) + math.cos(_LATITUDE) * math.cos(
        declination
    ) * math.cos(hour_angle)
    return max(0.0, sin_elevation)


class _Running:
    """Live state of one `Consumer`: off, or on until an epoch at a jittered rate."""

    __slots__ = ("consumer", "on_until", "rate")

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.on_until = 0
        self.rate = 0


def _step_consumers(
    running: list[_Running], rng: random.Random, *, epoch: int, hour: int, dt: int, season: float
) -> list[_Running]:
    """Switch consumers on/off for one tick; return those that just started."""
    started = []
    for item in running:
        if item.on_until:
            if epoch >= item.on_until:
                item.on_until = 0
                item.rate = 0
            continue
        c = item.consumer
        chance = c.starts_per_day * _CURVES[c.curve][hour] * dt / 3600.0
        if c.seasonal:
            chance *= season
        if rng.random() < chance:
            item.on_until = epoch + rng.randint(c.min_on_s, c.max_on_s)
            item.rate = round(c.rate * rng.uniform(0.93, 1.07))
            started.append(item)
    return started


# --------------------------------------------------------------------------------------------
# The meter.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MeterReading:
    """The truth behind the last telegram, for tests and the simulator's ground truth.

    Registers are in Wh (what the meter prints, before unit scaling); `joules` are the exact
    internal accumulators (`registers_wh == joules // 3600`). Index order everywhere is
    (import tariff 1, import tariff 2, export tariff 1, export tariff 2).
    """

    t: float
    epoch: int
    timestamp: str
    summer: bool
    tariff: int
    phase_power_w: tuple[int, ...]
    import_w: int
    export_w: int
    registers_wh: tuple[int, int, int, int]
    joules: tuple[int, int, int, int]
    voltages_dv: tuple[int, ...]
    currents_ca: tuple[int, ...]
    gas_liters: int
    gas_shown_liters: int
    gas_timestamp: str
    water_liters: int


class MeterState:
    """Everything the meter prints, as integers in base units (J, W, dV, cA, litre*s).

    Gas and water accumulate in litre*seconds (`gas_ls`); `gas_shown` / `water_shown` are the
    litres the M-Bus reading printed at its last refresh, and `gas_stamp` that refresh time.
    """

    def __init__(self) -> None:
        self.stamp = ""
        self.equipment_id = ""
        self.gas_id = ""
        self.water_id = ""
        #: import T1, import T2, export T1, export T2, in joules (W*s).
        self.joules = [0, 0, 0, 0]
        self.tariff = 1
        self.phase_w = [0, 0, 0]
        self.import_w = 0
        self.export_w = 0
        self.voltage_dv = list(_NOMINAL_DV)
        self.current_ca = [0, 0, 0]
        self.short_failures = 0
        self.long_failures = 0
        self.failure_log: list[tuple[str, int]] = []
        self.sags = [0, 0, 0]
        self.swells = [0, 0, 0]
        self.gas_ls = 0
        self.water_ls = 0
        self.gas_shown = 0
        self.water_shown = 0
        self.gas_stamp = ""
        self.average_demand_w = 0
        self.peak_w = 0
        self.peak_stamp = ""
        #: Newest first: (month-boundary stamp, peak stamp, peak W).
        self.peak_history: list[tuple[str, str, int]] = []


@dataclass(frozen=True, slots=True)
class MeterRegisters:
    """The counters of a virtual meter that must never go backwards, for keeping across
    restarts (`VirtualMeter.registers()` / `restore()`; the caller stores `to_json()`).

    A real meter's energy registers only ever grow; Home Assistant books a drop as a meter
    reset and complains ("not strictly increasing"). A virtual meter restarted from its seed
    would print its seed's registers again, so whoever runs one for longer than a test keeps
    these in its state directory. Energy is in joules (exact, as the meter counts it), gas and
    water in litre-seconds; the counters are the failure, sag and swell counts (Home
    Assistant's `total_increasing` too). `equipment_id` says which meter they belong to.
    """

    equipment_id: str
    joules: tuple[int, int, int, int]
    gas_ls: int
    water_ls: int
    short_failures: int
    long_failures: int
    sags: tuple[int, int, int]
    swells: tuple[int, int, int]

    FORMAT: ClassVar[int] = 1

    def to_json(self) -> str:
        return json.dumps({"format": self.FORMAT, **dataclasses.asdict(self)}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> MeterRegisters:
        """Parse what `to_json` wrote; ValueError naming the problem otherwise."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"saved meter registers are not JSON: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != cls.FORMAT:
            raise ValueError(f"saved meter registers are not format {cls.FORMAT}")

        def count(name: str, size: int | None = None) -> Any:
            value = data.get(name)
            items = value if size is not None and isinstance(value, list) else [value]
            if (size is not None and len(items) != size) or not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items
            ):
                raise ValueError(f"saved meter registers: {name} is not a valid count")
            return tuple(items) if size is not None else value

        equipment = data.get("equipment_id")
        if not isinstance(equipment, str):
            raise ValueError("saved meter registers: equipment_id is missing")
        return cls(
            equipment_id=equipment,
            joules=count("joules", 4),
            gas_ls=count("gas_ls"),
            water_ls=count("water_ls"),
            short_failures=count("short_failures"),
            long_failures=count("long_failures"),
            sags=count("sags", 3),
            swells=count("swells", 3),
        )


_Field = Callable[[MeterState, MeterProfile], str]


def _energy(index: int) -> _Field:
    return lambda s, p: _fixed(s.joules[index] // 3600, p.energy)


def _phase_power(phase: int, sign: int) -> _Field:
    return lambda s, p: _fixed(max(s.phase_w[phase] * sign, 0), p.power)


def _counter(name: str, phase: int) -> _Field:
    return lambda s, p: f"{getattr(s, name)[phase]:05d}"


def _voltage(phase: int) -> _Field:
    return lambda s, p: _fixed(s.voltage_dv[phase], p.voltage)


def _current(phase: int) -> _Field:
    return lambda s, p: _fixed(s.current_ca[phase], p.current)


def _peak_history(s: MeterState, p: MeterProfile) -> str:
    parts = [f"({len(s.peak_history)})(1-0:1.6.0)(1-0:1.6.0)"]
    parts += [f"({month})({at})({_fixed(w, p.power)})" for month, at, w in s.peak_history]
    return "".join(parts)


def _failure_log(s: MeterState, p: MeterProfile) -> str:
    parts = [f"({len(s.failure_log)})(0-0:96.7.19)"]
    parts += [f"({stamp})({seconds:010d}*s)" for stamp, seconds in s.failure_log]
    return "".join(parts)


#: Template placeholder -> how its text is produced. `meter_profiles` lines may use any of these.
FIELDS: dict[str, _Field] = {
    "timestamp": lambda s, p: s.stamp,
    "equipment_id": lambda s, p: s.equipment_id,
    "import_1": _energy(0),
    "import_2": _energy(1),
    "export_1": _energy(2),
    "export_2": _energy(3),
    "tariff": lambda s, p: f"{s.tariff:04d}",
    "power_in": lambda s, p: _fixed(s.import_w, p.power),
    "power_out": lambda s, p: _fixed(s.export_w, p.power),
    "short_failures": lambda s, p: f"{s.short_failures:05d}",
    "long_failures": lambda s, p: f"{s.long_failures:05d}",
    "failure_log": _failure_log,
    **{f"sags_l{n + 1}": _counter("sags", n) for n in range(3)},
    **{f"swells_l{n + 1}": _counter("swells", n) for n in range(3)},
    **{f"voltage_l{n + 1}": _voltage(n) for n in range(3)},
    **{f"current_l{n + 1}": _current(n) for n in range(3)},
    **{f"power_l{n + 1}_in": _phase_power(n, 1) for n in range(3)},
    **{f"power_l{n + 1}_out": _phase_power(n, -1) for n in range(3)},
    "gas_id": lambda s, p: s.gas_id,
    "gas_timestamp": lambda s, p: s.gas_stamp,
    "gas_timestamp_plain": lambda s, p: s.gas_stamp[:12],
    "gas_reading": lambda s, p: _fixed(s.gas_shown, p.volume),
    "gas_number": lambda s, p: _fixed_bare(s.gas_shown, p.volume),
    "water_id": lambda s, p: s.water_id,
    "water_timestamp": lambda s, p: s.gas_stamp,
    "water_reading": lambda s, p: _fixed(s.water_shown, p.volume),
    "average_demand": lambda s, p: _fixed(s.average_demand_w, p.power),
    "peak_timestamp": lambda s, p: s.peak_stamp,
    "peak_demand": lambda s, p: _fixed(s.peak_w, p.power),
    "peak_history": _peak_history,
}


class TelegramRenderer(Protocol):
    """Prints the meter's state in a layout other than a `MeterProfile`'s `{field}` lines.

    `p1lora.transmitter.meter_template` implements it to imitate any real telegram: the
    household, grid and register model stay the virtual meter's, only the text differs.
    """

    @property
    def tracks_demand(self) -> bool:
        """True when the layout shows quarter-hour demand, so the meter must compute it."""
        ...

    def seed(self, state: MeterState) -> None:
        """Overwrite the freshly drawn starting state with the layout's own values."""
        ...

    def render(self, state: MeterState) -> bytes:
        """The complete telegram, `/` through the CRC line's CRLF."""
        ...


def _hex_id(rng: random.Random, prefix: str) -> str:
    """An equipment identifier as DSMR prints it: the ASCII serial number, hex-encoded."""
    serial = prefix + "".join(rng.choice(string.digits) for _ in range(12))
    return serial.encode("ascii").hex().upper()


#: The range (dV) a phase's no-load voltage wanders in: 220-245 V, well inside the 230 V
#: +-10 % a low-voltage grid must keep.
VOLTAGE_BOUNDS_DV: Final = (2200, 2450)


class VirtualMeter:
    """A smart meter that produces the telegram due every `interval` seconds after `start`.

    Time is relative: telegram k is due at `t = k * interval` seconds (the first at 0.0) and
    carries the meter timestamp `start + t`. Ask for telegrams in order with `next_telegram()`,
    all of those due by a time with `telegrams_until(t)`, or the one covering a time with
    `telegram_at(t)`; the meter never goes back in time. Same profile, seed, start and solar
    size always give the same bytes.
    """

    def __init__(
        self,
        profile: str | MeterProfile = "dsmr5",
        seed: int = 0,
        start: datetime | None = None,
        *,
        solar_kwp: float | None = None,
        renderer: TelegramRenderer | None = None,
    ) -> None:
        self.profile = get_profile(profile) if isinstance(profile, str) else profile
        self.seed = seed
        start = DEFAULT_START if start is None else start
        if start.tzinfo is None or start.utcoffset() is None:
            raise ValueError("start must be timezone-aware (e.g. 2024-01-15T06:30:00+01:00)")
        self.start = start.astimezone(UTC).replace(microsecond=0)
        self.interval: float = float(self.profile.interval)
        self.serial_settings: SerialSettings = self.profile.serial
        kwp = self.profile.default_solar_kwp if solar_kwp is None else solar_kwp
        if not 0.0 <= kwp <= 50.0:
            raise ValueError(f"solar peak power {kwp} kWp is outside 0..50 kWp")
        self.solar_kwp = kwp

        self._rng = random.Random(f"p1lora-virtual-meter:{self.profile.name}:{seed}")
        self._start_epoch = calendar.timegm(self.start.utctimetuple())
        self._dt = self.profile.interval
        self._k = -1
        self._last = b""
        self._s = MeterState()
        self._renderer = renderer
        self._nominal_dv: tuple[int, ...] = _NOMINAL_DV
        if renderer is None:
            self._template, self._builders = self._compile_template()
            self._tracks_demand = any(name == "average_demand" for name, _ in self._builders)
        else:
            self._template, self._builders = "", []
            self._tracks_demand = renderer.tracks_demand
        self._init_household()
        self._init_registers()
        if renderer is not None:
            # The layout's registers, readings and grid voltage are the starting point; the
            # voltages then wander around the template's level instead of the default grid's.
            renderer.seed(self._s)
            self._nominal_dv = tuple(self._s.voltage_dv)
            self._free_dv = list(self._s.voltage_dv)

    # -- construction ------------------------------------------------------------------------

    def _compile_template(self) -> tuple[str, list[tuple[str, _Field]]]:
        """One format string per telegram; unknown placeholders fail here, not at run time."""
        body = self.profile.header + "\r\n" + "".join(f"{line}\r\n" for line in self.profile.lines)
        names = {name for _, name, _, _ in string.Formatter().parse(body) if name}
        unknown = names - FIELDS.keys()
        if unknown:
            raise ValueError(f"profile {self.profile.name!r} uses unknown fields {sorted(unknown)}")
        return body + "!", [(name, FIELDS[name]) for name in sorted(names)]

    def _init_household(self) -> None:
        rng = self._rng
        three_phase = self.profile.phases == 3
        self._appliances = [
            _Running(c if three_phase else dataclasses.replace(c, phase=0)) for c in APPLIANCES
        ]
        self._gas = [_Running(c) for c in GAS_CONSUMERS]
        self._water = [_Running(c) for c in WATER_CONSUMERS]
        self._base_w = [rng.uniform(25.0, 55.0) for _ in range(3)]
        self._base_target = list(self._base_w)
        self._cloud = rng.uniform(0.4, 1.0)
        self._free_dv = [n + rng.randint(-30, 30) for n in _NOMINAL_DV]

    def _init_registers(self) -> None:
        rng, s = self._rng, self._s
        s.equipment_id = _hex_id(rng, f"E00{rng.randint(10, 99)}")
        s.gas_id = _hex_id(rng, f"G00{rng.randint(10, 99)}")
        s.water_id = _hex_id(rng, f"W00{rng.randint(10, 99)}")

        def register(low_wh: int, high_wh: int) -> int:
            return rng.randint(low_wh, high_wh) * 3600 + rng.randrange(3600)

        has_export = self.solar_kwp > 0
        s.joules = [
            register(1_500_000, 9_000_000),
            register(1_500_000, 9_000_000),
            register(400_000, 3_000_000) if has_export else 0,
            register(800_000, 5_000_000) if has_export else 0,
        ]
        s.gas_ls = register(300_000, 4_000_000)
        s.water_ls = register(50_000, 900_000)

        s.short_failures = rng.randint(2, 40)
        entries = rng.randint(0, 4)
        s.long_failures = entries + rng.randint(0, 3)
        ends = sorted(
            self._start_epoch - rng.randint(86_400, 3 * 365 * 86_400) for _ in range(entries)
        )
        s.failure_log = [(meter_timestamp(e), rng.randint(181, 60_000)) for e in ends]
        s.sags = [rng.randint(0, 6) for _ in range(3)]
        s.swells = [rng.randint(0, 2) for _ in range(3)]

        # Gas and water refresh on the first tick.
        self._volume_period = -1

        # Belgian capacity tariff: this month's peak so far and thirteen months of history.
        tm, _ = _local(self._start_epoch)
        self._month = (tm.tm_year, tm.tm_mon)
        month_start = _local_midnight_epoch(tm.tm_year, tm.tm_mon, 1)
        if self._start_epoch - month_start > 900:
            s.peak_w = rng.randint(1500, 5500)
            s.peak_stamp = meter_timestamp(rng.randint(month_start + 900, self._start_epoch))
        else:
            s.peak_stamp = meter_timestamp(month_start)
        s.peak_history = self._seed_history(tm.tm_year, tm.tm_mon)
        self._quarter_start = -1
        self._quarter_joules = 0

    def _seed_history(self, year: int, month: int) -> list[tuple[str, str, int]]:
        """Thirteen past months of peaks, newest first, as an installed meter shows them."""
        rng = self._rng
        history = []
        for _ in range(13):
            end = _local_midnight_epoch(year, month, 1)
            year, month = (year, month - 1) if month > 1 else (year - 1, 12)
            peak_at = rng.randint(_local_midnight_epoch(year, month, 1) + 900, end)
            history.append(
                (meter_timestamp(end), meter_timestamp(peak_at), rng.randint(2000, 7500))
            )
        return history

    # -- public API --------------------------------------------------------------------------

    @property
    def next_time(self) -> float:
        """When (seconds after start) the next telegram is due."""
        return (self._k + 1) * self.interval

    def next_telegram(self) -> tuple[float, bytes]:
        """Advance one interval; return (t, raw telegram bytes)."""
        self._tick()
        return self._k * self.interval, self._last

    def telegrams_until(self, t: float) -> list[tuple[float, bytes]]:
        """Every telegram due at or before `t` that was not produced yet, in order."""
        out = []
        while self.next_time <= t + 1e-9:
            out.append(self.next_telegram())
        return out

    def telegram_at(self, t: float) -> bytes:
        """The telegram whose interval contains `t` (generating the ones before it)."""
        if t < 0:
            raise ValueError("t must be >= 0 (seconds after the meter's start)")
        k = math.floor(t / self.interval + 1e-9)
        if k < self._k:
            raise ValueError(
                f"the meter is at t={self._k * self.interval:g} s and cannot go back to t={t:g} s"
            )
        while self._k < k:
            self._tick()
        return self._last

    def __iter__(self) -> Iterator[tuple[float, bytes]]:
        """An endless stream of (t, telegram): the shape `meter_faults` and writers consume."""
        while True:
            yield self.next_telegram()

    @property
    def reading(self) -> MeterReading:
        """The values behind the most recent telegram (see `MeterReading`)."""
        if self._k < 0:
            raise RuntimeError("no telegram has been generated yet")
        s, phases = self._s, self.profile.phases
        j = s.joules
        return MeterReading(
            t=self._k * self.interval,
            epoch=self._start_epoch + self._k * self._dt,
            timestamp=s.stamp,
            summer=s.stamp.endswith("S"),
            tariff=s.tariff,
            phase_power_w=tuple(s.phase_w[:phases]),
            import_w=s.import_w,
            export_w=s.export_w,
            registers_wh=(j[0] // 3600, j[1] // 3600, j[2] // 3600, j[3] // 3600),
            joules=(j[0], j[1], j[2], j[3]),
            voltages_dv=tuple(s.voltage_dv[:phases]),
            currents_ca=tuple(s.current_ca[:phases]),
            gas_liters=s.gas_ls // 3600,
            gas_shown_liters=s.gas_shown,
            gas_timestamp=s.gas_stamp,
            water_liters=s.water_ls // 3600,
        )

    def registers(self) -> MeterRegisters:
        """The registers to keep across a restart (see `MeterRegisters`)."""
        s = self._s
        j = s.joules
        return MeterRegisters(
            equipment_id=s.equipment_id,
            joules=(j[0], j[1], j[2], j[3]),
            gas_ls=s.gas_ls,
            water_ls=s.water_ls,
            short_failures=s.short_failures,
            long_failures=s.long_failures,
            sags=(s.sags[0], s.sags[1], s.sags[2]),
            swells=(s.swells[0], s.swells[1], s.swells[2]),
        )

    def restore(self, saved: MeterRegisters) -> None:
        """Continue from registers saved by an earlier run of this meter.

        Each register becomes the larger of the saved and the current value, so nothing ever
        counts backwards (a meter template may start higher than an old save). Call it before
        the first telegram. Registers of another meter (another equipment id: a different
        seed, profile or template) are refused with ValueError, never mixed in.
        """
        s = self._s
        if saved.equipment_id != s.equipment_id:
            raise ValueError(
                f"the saved registers belong to meter {saved.equipment_id}, not "
                f"{s.equipment_id} (another seed, profile or template)"
            )
        if self._k >= 0:
            raise RuntimeError("restore() must come before the first telegram")
        s.joules = [max(a, b) for a, b in zip(s.joules, saved.joules, strict=True)]
        s.gas_ls = max(s.gas_ls, saved.gas_ls)
        s.water_ls = max(s.water_ls, saved.water_ls)
        s.short_failures = max(s.short_failures, saved.short_failures)
        s.long_failures = max(s.long_failures, saved.long_failures)
        s.sags = [max(a, b) for a, b in zip(s.sags, saved.sags, strict=True)]
        s.swells = [max(a, b) for a, b in zip(s.swells, saved.swells, strict=True)]

    # -- one interval ------------------------------------------------------------------------

    def _tick(self) -> None:
        self._k += 1
        dt, s = self._dt, self._s
        epoch = self._start_epoch + self._k * dt
        tm, summer = _local(epoch)
        s.stamp = _stamp(tm) + ("S" if summer else "W")
        s.tariff = self.profile.tariffs.register_at(tm.tm_hour, tm.tm_wday)
        season = _season(tm.tm_yday)

        self._step_power(epoch, tm.tm_hour, dt, season)
        self._step_voltages(dt)
        # Registers grow by exactly printed power x interval, kept in joules so that nothing
        # is lost below the printed Wh.
        s.joules[s.tariff - 1] += s.import_w * dt
        s.joules[s.tariff + 1] += s.export_w * dt
        self._step_volumes(epoch, tm.tm_hour, dt, season)
        if self._tracks_demand:
            self._step_demand(epoch, dt)
        self._last = self._render()

    def _step_power(self, epoch: int, hour: int, dt: int, season: float) -> None:
        rng, s = self._rng, self._s
        phases = self.profile.phases
        started = _step_consumers(
            self._appliances, rng, epoch=epoch, hour=hour, dt=dt, season=season
        )
        for item in started:
            # A big motor or heater starting can dip the voltage below the sag threshold.
            if item.rate >= 1500 and rng.random() < 0.01:
                s.sags[max(item.consumer.phase, 0)] += 1
        watts = [0.0, 0.0, 0.0]
        for p in range(phases):
            base = self._base_w[p] + rng.uniform(-2.0, 2.0) * math.sqrt(dt)
            base += (self._base_target[p] - base) * min(1.0, 0.02 * dt)
            self._base_w[p] = min(150.0, max(10.0, base))
            watts[p] = self._base_w[p]
        for item in self._appliances:
            if not item.rate:
                continue
            if item.consumer.phase == ALL_PHASES:
                for p in range(3):
                    watts[p] += item.rate / 3
            else:
                watts[item.consumer.phase] += item.rate
        if self.solar_kwp > 0:
            self._cloud += rng.uniform(-0.015, 0.015) * math.sqrt(dt)
            self._cloud = min(1.0, max(0.15, self._cloud))
            pv = self.solar_kwp * 1000.0 * 0.85 * _clear_sky(epoch) * self._cloud
            if phases == 3 and self.solar_kwp > 4.6:
                for p in range(3):
                    watts[p] -= pv / 3
            else:
                watts[0] -= pv
        step = self.profile.power_step_w
        s.phase_w = [round(w / step) * step for w in watts]
        net = sum(s.phase_w)
        s.import_w = max(net, 0)
        s.export_w = max(-net, 0)

    def _step_voltages(self, dt: int) -> None:
        """Voltages wander by tenths; load pulls a phase down, export pushes it up."""
        rng, s = self._rng, self._s
        for p in range(self.profile.phases):
            free = self._free_dv[p] + rng.choice((-1, 0, 0, 1)) * (1 if dt < 5 else 2)
            free += round((self._nominal_dv[p] - free) * min(1.0, 0.01 * dt))
            self._free_dv[p] = min(VOLTAGE_BOUNDS_DV[1], max(VOLTAGE_BOUNDS_DV[0], free))
            volts_dv = self._free_dv[p] - round(s.phase_w[p] / 230.0 * _GRID_OHM * 10)
            s.voltage_dv[p] = volts_dv
            s.current_ca[p] = (1000 * abs(s.phase_w[p]) + volts_dv // 2) // volts_dv

    def _step_volumes(self, epoch: int, hour: int, dt: int, season: float) -> None:
        rng, s = self._rng, self._s
        _step_consumers(self._gas, rng, epoch=epoch, hour=hour, dt=dt, season=season)
        _step_consumers(self._water, rng, epoch=epoch, hour=hour, dt=dt, season=season)
        s.gas_ls += sum(item.rate for item in self._gas) * dt
        s.water_ls += sum(item.rate for item in self._water) * dt
        period = self.profile.gas_period
        index = epoch // period
        if index != self._volume_period:
            # The M-Bus reading (with its own timestamp) refreshes once per period on the clock.
            self._volume_period = index
            s.gas_shown = s.gas_ls // 3600
            s.water_shown = s.water_ls // 3600
            s.gas_stamp = meter_timestamp(index * period)

    def _step_demand(self, epoch: int, dt: int) -> None:
        """Belgian capacity tariff: quarter-hour average demand and the month's peak.

        The interval ending at `epoch` belongs to the quarter it started in. A month always
        starts on a quarter boundary, so the month rolls over right after the last quarter of
        the old month has been settled into the old month's peak.
        """
        s = self._s
        quarter = ((epoch - dt) // 900) * 900
        if quarter != self._quarter_start:
            if self._quarter_start >= 0:
                average = self._quarter_joules // 900
                if average > s.peak_w:
                    s.peak_w = average
                    s.peak_stamp = meter_timestamp(self._quarter_start + 900)
            self._quarter_start = quarter
            self._quarter_joules = 0
            tm, _ = _local(quarter)
            if (tm.tm_year, tm.tm_mon) != self._month:
                month_start = _local_midnight_epoch(tm.tm_year, tm.tm_mon, 1)
                s.peak_history.insert(0, (meter_timestamp(month_start), s.peak_stamp, s.peak_w))
                del s.peak_history[13:]
                self._month = (tm.tm_year, tm.tm_mon)
                s.peak_w = 0
                s.peak_stamp = meter_timestamp(month_start)
        self._quarter_joules += s.import_w * dt
        s.average_demand_w = self._quarter_joules // max(1, epoch - self._quarter_start)

    def _render(self) -> bytes:
        s, p = self._s, self.profile
        if self._renderer is not None:
            return self._renderer.render(s)
        body = self._template.format_map({name: build(s, p) for name, build in self._builders})
        raw = body.encode("ascii")
        if not p.has_crc:
            return raw + b"\r\n"
        return raw + f"{crc16_arc(raw):04X}\r\n".encode("ascii")
