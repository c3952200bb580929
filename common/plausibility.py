"""Plausibility gate for telegrams without a CRC (DSMR 2.2/3): is this reading physically possible?

DSMR 4/5 telegrams carry a CRC-16: a flipped bit fails it and the telegram is dropped. DSMR 2.2
and 3 telegrams carry none. Their 7E1 UART parity (`serial_source.enable_parity_check`) catches
an odd number of flipped bits per byte, but not an even number, and not noise on a port whose
driver cannot check parity. Without another check, `1-0:1.8.1(00000.000*kWh)` with one bit
flipped arrives as `(10000.000*kWh)` and is sent on as a real reading: Home Assistant's energy
dashboard then shows 10 MWh used in ten seconds, for good.

The gate compares each telegram without CRC with the one held before it and the last one it
let through:

* the same lines in the same order, the same meter identifiers (a bit error in an OBIS code or
  an identifier changes them; a real meter prints the same lines every time);
* nothing that was readable before is unreadable now;
* every cumulative register (the OBIS table's `total_increasing` energy and volume rows, M-Bus
  readings included) never goes down and rises no faster than a generous physical bound allows
  over the time since then (`PlausibilityLimits`: 3 x 230 V x 100 A for electricity, a G25 gas
  meter's 40 m3/h for gas and water), plus one step of the register's last printed digit;
  an M-Bus reading may also rise by what the bound allows over the time its capture timestamp
  moved (hourly gas values jump once an hour);
* the same units, and an M-Bus reading that changes only with a new capture time;
* no power value above the electricity bound.

Every telegram without CRC is held until the next one agrees with it, and only then sent: a
flipped last digit (`0.000` -> `0.002` kWh) is within any rate bound, and only the meter's
next telegram shows it was wrong. Values of these meters therefore arrive one telegram (10 s)
late, and the first after start waits for the second. After `resync_after` rejections in a row
(a replaced meter, a real jump) the gate starts over from the next two telegrams that agree,
so it cannot lock itself out for good.

Telegrams whose CRC is valid bypass the gate; a telegram whose CRC fails is rejected (the
serial source never hands one on). Sans-I/O: time is the `now` the caller passes (when the
telegram arrived); the caller counts and logs what is rejected (`transmitter.runtime`).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType

from p1lora.common.framing import check_crc, excerpt
from p1lora.common.obis import SensorSpec, ValueKind
from p1lora.common.parser import TelegramParseError, parse_telegram
from p1lora.common.telegram import Telegram

__all__ = [
    "GateResult",
    "PlausibilityGate",
    "PlausibilityLimits",
    "Verdict",
]


@dataclass(frozen=True, slots=True)
class PlausibilityLimits:
    """How fast registers can physically move; generous, so that no real reading is refused."""

    #: Electricity: 3 phases x 230 V x 100 A, above any household connection (W).
    max_power_w: float = 3 * 230 * 100
    #: Gas and water (m3/h): the 40 m3/h of a G25 gas meter, far above any domestic water meter.
    max_volume_m3_per_h: float = 40.0
    #: Heat and cooling (GJ/h): about 280 kW.
    max_heat_gj_per_h: float = 1.0
    #: Rejections in a row after which the gate starts over (holds the next telegram until one
    #: agrees with it): a replaced meter must not be refused forever.
    resync_after: int = 6
    #: An M-Bus reading's capture time may move ahead by at most this (s) more than the time
    #: since the last telegram sent (hourly readings jump by an hour); a garbled capture
    #: time must not open the gate wide.
    max_capture_step_s: float = 7200.0

    def __post_init__(self) -> None:
        if min(self.max_power_w, self.max_volume_m3_per_h, self.max_heat_gj_per_h) <= 0:
            raise ValueError("plausibility bounds must be positive")
        if self.resync_after < 1:
            raise ValueError("resync_after must be at least 1")


class Verdict(enum.StrEnum):
    """What the gate did with a telegram."""

    #: It had a valid CRC: send it now.
    BYPASS = "bypass"
    #: It agrees with the telegram held before it (and the last one sent): send the held one,
    #: hold this one until the next telegram confirms it.
    CONFIRM = "confirm"
    #: Held until the next telegram decides (the first one, or after the held one was given up).
    HOLD = "hold"
    #: Implausible: never sent.
    REJECT = "reject"


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's answer for one telegram.

    `release` is the telegram to send now, with the time it arrived: the telegram itself for
    a valid CRC, else the one held before it, now confirmed (None: send nothing). `rejected`
    is how many telegrams this call gave up as implausible (0 or 1: this one, or the held one
    when this one shows that it was wrong). `reason` says why, for the log.
    """

    verdict: Verdict
    release: tuple[bytes, float] | None = None
    rejected: int = 0
    reason: str | None = None


# Unit -> (quantity, factor to the base unit: Wh, m3, GJ). Energy in var-hours counts as energy.
_UNITS: Mapping[str, tuple[str, Decimal]] = MappingProxyType(
    {
        "Wh": ("energy", Decimal(1)),
        "kWh": ("energy", Decimal(1000)),
        "MWh": ("energy", Decimal(1000000)),
        "varh": ("energy", Decimal(1)),
        "kvarh": ("energy", Decimal(1000)),
        "Mvarh": ("energy", Decimal(1000000)),
        "m3": ("volume", Decimal(1)),
        "dm3": ("volume", Decimal("0.001")),
        "l": ("volume", Decimal("0.001")),
        "GJ": ("heat", Decimal(1)),
        "MJ": ("heat", Decimal("0.001")),
    }
)
_BASE_UNITS: Mapping[str, str] = MappingProxyType({"energy": "Wh", "volume": "m3", "heat": "GJ"})
_POWER_UNITS: Mapping[str, Decimal] = MappingProxyType(
    {"W": Decimal(1), "kW": Decimal(1000), "MW": Decimal(1000000)}
)
_REGISTER_KINDS = frozenset({ValueKind.NUMBER, ValueKind.TIMESTAMPED_NUMBER, ValueKind.LEGACY_MBUS})
#: Keys whose value identifies a meter: they never change between two telegrams.
_IDENTITY_KEYS = frozenset(
    {
        "equipment_identifier",
        "luxembourg_equipment_identifier",
        "equipment_serial_number",
        "q3d_equipment_serialnumber",
        "q3d_equipment_identifier",
        "mbus_equipment_identifier",
        "mbus_device_type",
    }
)


@dataclass(frozen=True, slots=True)
class _Register:
    """A cumulative register in its base unit, with its resolution and capture time."""

    name: str
    quantity: str | None
    value: Decimal
    resolution: Decimal
    #: When an M-Bus sub-meter's reading was captured (its reading only changes with it).
    captured: float | None


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the gate remembers of a telegram."""

    at: float
    header: str
    layout: tuple[str, ...]
    #: Every line's unit: units never change, a flipped bit in one (`kWi`) does.
    units: tuple[str | None, ...]
    identity: tuple[tuple[str, object], ...]
    readable: frozenset[str]
    registers: Mapping[str, _Register]
    max_power_w: Decimal


def _is_register(spec: SensorSpec | None) -> bool:
    return (
        spec is not None and spec.state_class == "total_increasing" and spec.kind in _REGISTER_KINDS
    )


def _is_power(spec: SensorSpec | None) -> bool:
    """A measured power (not a setting such as the breaker threshold, which may say 999 kW)."""
    return (
        spec is not None
        and spec.device_class == "power"
        and spec.state_class == "measurement"
        and spec.entity_category is None
    )


def _reading(telegram: Telegram, at: float) -> _Reading:
    layout: list[str] = []
    units: list[str | None] = []
    identity: list[tuple[str, object]] = []
    readable: set[str] = set()
    registers: dict[str, _Register] = {}
    max_power = Decimal(0)
    for index, obj in enumerate(telegram.objects):
        name = f"{obj.obis}#{index}"
        layout.append(obj.obis)
        units.append(obj.unit)
        value = obj.value
        if value is not None and value != []:
            readable.add(name)
        spec = obj.spec
        if obj.key in _IDENTITY_KEYS:
            identity.append((name, value))
        elif spec is not None and spec.kind is ValueKind.LEGACY_MBUS:
            # `(TST)(00)(60)(1)(0-1:24.2.1)(m3)`: all but the capture time is fixed.
            first_line = obj.raw.split("\r\n", 1)[0]
            identity.append((name, first_line.partition(")")[2]))
        unit = obj.unit or (spec.unit if spec is not None else None)
        if not isinstance(value, Decimal) or not value.is_finite():
            continue
        if _is_register(spec):
            quantity, factor = _UNITS.get(unit or "", (None, Decimal(1)))
            exponent = value.as_tuple().exponent
            step = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
            registers[name] = _Register(
                name=obj.obis,
                quantity=quantity,
                value=value * factor,
                resolution=step * factor,
                captured=None if obj.timestamp is None else obj.timestamp.timestamp(),
            )
        elif _is_power(spec) and unit in _POWER_UNITS:
            max_power = max(max_power, abs(value) * _POWER_UNITS[unit or ""])
    return _Reading(
        at=at,
        header=telegram.header,
        layout=tuple(layout),
        units=tuple(units),
        identity=tuple(identity),
        readable=frozenset(readable),
        registers=MappingProxyType(registers),
        max_power_w=max_power,
    )


class PlausibilityGate:
    """Decides which telegrams may be sent (see the module docstring).

    A telegram without CRC is held until the next one arrives, and sent only if that one
    agrees with it (and it agreed with the last one sent). Waiting one telegram is what makes
    a flipped low digit catchable: `0.000` -> `0.002` kWh is within any rate bound, but the
    meter's next `0.000` shows it was wrong; sending it at once would later make the register
    look like it went down, which Home Assistant counts as a meter reset. DSMR 2.2/3 meters
    send every 10 s, so their values arrive 10 s later. When a telegram contradicts both the
    held and the last sent one, it is the one rejected.

    Not thread-safe: one gate per telegram stream, called from one thread.
    """

    def __init__(self, limits: PlausibilityLimits | None = None) -> None:
        self.limits = limits if limits is not None else PlausibilityLimits()
        per_second = {
            "energy": Decimal(str(self.limits.max_power_w)) / 3600,
            "volume": Decimal(str(self.limits.max_volume_m3_per_h)) / 3600,
            "heat": Decimal(str(self.limits.max_heat_gj_per_h)) / 3600,
        }
        self._per_second: Mapping[str, Decimal] = MappingProxyType(per_second)
        self._max_power = Decimal(str(self.limits.max_power_w))
        #: The last telegram released (None: none yet, or starting over).
        self._sent: _Reading | None = None
        #: The telegram waiting for the next one to confirm it, with its bytes.
        self._held: tuple[_Reading, bytes] | None = None
        self._rejected_in_a_row = 0
        #: Counters since the gate was made.
        self.bypassed = 0
        self.released = 0
        self.rejected = 0

    @property
    def holding(self) -> bool:
        """Whether a telegram is held waiting for the next one."""
        return self._held is not None

    def check(self, raw: bytes, now: float) -> GateResult:
        """What to do with telegram `raw` (`/` .. `!` [CRC]) that arrived at `now` (seconds)."""
        crc = check_crc(raw)
        if crc is not None and crc.valid:
            self.bypassed += 1
            return GateResult(Verdict.BYPASS, release=(raw, now))
        if crc is None:
            return self._reject("not a complete telegram")
        if crc.valid is False:
            return self._reject(f"CRC mismatch (says {crc.expected}, computed {crc.computed})")
        try:
            telegram = parse_telegram(raw, crc)
        except TelegramParseError as exc:  # pragma: no cover - check_crc found `/` and `!`
            return self._reject(str(exc))
        reading = _reading(telegram, now)
        if reading.max_power_w > self._max_power:
            return self._reject(
                f"a power of {reading.max_power_w / 1000:f} kW is above the "
                f"{self._max_power / 1000:f} kW any connection can draw"
            )
        sent, held = self._sent, self._held
        against_sent = None if sent is None else self._compare(sent, reading)
        if held is None:
            if against_sent is None:
                self._held = (reading, raw)
                return GateResult(Verdict.HOLD)
            return self._reject_in_a_row(against_sent, reading, raw)
        against_held = self._compare(held[0], reading)
        if against_held is None and against_sent is None:
            self._sent = held[0]
            self._held = (reading, raw)
            self._rejected_in_a_row = 0
            self.released += 1
            return GateResult(Verdict.CONFIRM, release=(held[1], held[0].at))
        if against_held is not None and against_sent is None:
            # This one fits what was sent; the held one does not fit this one: it was wrong.
            self._held = (reading, raw)
            self.rejected += 1
            return GateResult(
                Verdict.HOLD,
                rejected=1,
                reason=f"the telegram held before this one was given up: {against_held}",
            )
        return self._reject_in_a_row(against_sent or against_held or "", reading, raw)

    def reset(self) -> None:
        """Forget everything (e.g. after the serial port was reopened on another meter)."""
        self._sent = None
        self._held = None
        self._rejected_in_a_row = 0

    # -- internals ------------------------------------------------------------------------

    def _reject(self, reason: str) -> GateResult:
        self.rejected += 1
        return GateResult(Verdict.REJECT, rejected=1, reason=reason)

    def _reject_in_a_row(self, problem: str, reading: _Reading, raw: bytes) -> GateResult:
        self._rejected_in_a_row += 1
        if self._rejected_in_a_row >= self.limits.resync_after:
            # Many in a row: maybe what was sent is what is wrong (a new meter, a real jump).
            # Start over: hold this one until the next agrees with it.
            self._sent = None
            self._held = (reading, raw)
            self._rejected_in_a_row = 0
            problem += (
                f"; {self.limits.resync_after} telegrams in a row disagreed with the last "
                "one sent: starting over from the next two that agree"
            )
        return self._reject(problem)

    def _compare(self, old: _Reading, new: _Reading) -> str | None:
        """Why `new` cannot follow `old`, or None when it can."""
        if new.header != old.header:
            return f"header changed from {excerpt(old.header)} to {excerpt(new.header)}"
        if new.layout != old.layout:
            return "its lines differ from the telegram before"
        if new.units != old.units:
            return "a unit changed"
        if new.identity != old.identity:
            return "a meter identifier changed"
        lost = old.readable - new.readable
        if lost:
            name = min(lost).split("#")[0]
            return f"{excerpt(name)} is no longer readable"
        elapsed = Decimal(str(max(0.0, new.at - old.at)))
        for name, register in new.registers.items():
            before = old.registers.get(name)
            if before is None:
                if name in old.readable:
                    return f"{excerpt(register.name)} changed its form"
                continue
            problem = self._register_problem(before, register, elapsed)
            if problem is not None:
                return problem
        return None

    def _register_problem(
        self, before: _Register, after: _Register, elapsed: Decimal
    ) -> str | None:
        rise = after.value - before.value
        if rise < 0:
            return f"{excerpt(after.name)} went down by {-rise:f}"
        if after.quantity is None:
            return None  # a unit without a known rate bound: only "never down" applies
        seconds = elapsed
        if before.captured is not None and after.captured is not None:
            moved = after.captured - before.captured
            if moved < 0:
                return f"{excerpt(after.name)} capture time went back"
            if moved == 0 and rise:
                return f"{excerpt(after.name)} changed without a new capture time"
            if moved > float(elapsed) + self.limits.max_capture_step_s:
                return f"{excerpt(after.name)} capture time jumped ahead by {moved:.0f} s"
            seconds += Decimal(str(min(moved, self.limits.max_capture_step_s)))
        allowed = self._per_second[after.quantity] * seconds + max(
            before.resolution, after.resolution
        )
        if rise > allowed:
            unit = _BASE_UNITS[after.quantity]
            return (
                f"{excerpt(after.name)} rose by {rise:f} {unit} in {seconds:.0f} s, more than "
                f"the {allowed:.3f} {unit} the physical bound allows"
            )
        return None
