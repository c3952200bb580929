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
* no number, register or meter identifier that was readable before is unreadable now (text
  lines are not checked: the grid operator clears a text message by printing `()`);
* every cumulative register (the OBIS table's `total_increasing` energy and volume rows, M-Bus
  readings included) never goes down and rises no faster than a generous physical bound allows
  over the time since then (`PlausibilityLimits`: 3 x 230 V x 100 A for electricity, a G25 gas
  meter's 40 m3/h for gas and water), plus one step of the register's last printed digit. The
  time is at least the meter's nominal interval: two telegrams read in one chunk after a stall
  arrive with one time. An M-Bus reading may also rise by what the bound allows over the time
  its capture timestamp moved (hourly gas values jump once an hour);
* the same units, and an M-Bus reading that changes only with a new capture time. DSMR 2.2/3
  print capture times without the S/W flag, so when summer time ends the hour from 02:00 to
  03:00 comes twice: a reading captured at 02:00 winter time is taken as the later instant;
* no power value above the electricity bound.

Every telegram without CRC is held until the next one agrees with it, and only then sent: a
flipped last digit (`0.000` -> `0.002` kWh) is within any rate bound, and only the meter's
next telegram shows it was wrong. Values of these meters therefore arrive one telegram (10 s)
late, and the first after start waits for the second. A held telegram is dropped, not sent,
when the next one comes more than `max_hold_s` (or three of the meter's intervals, if longer)
later: after an outage it would be sent as a current reading. That is counted in `expired`.

The gate cannot lock a meter out for good. After `resync_after` rejections in a row (a
replaced meter, a real jump) it starts over from the next two telegrams that agree. If even
that does not get a single telegram through `fail_open_after` times in a row, the check itself
is what is wrong for this meter (a real reading beyond a bound, a layout it does not expect):
it logs an ERROR once that says why and lets telegrams through unchecked (verdict UNCHECKED),
so that the receiver still gets the meter's values, until two telegrams in a row pass again.

Telegrams whose CRC is valid bypass the gate; a telegram whose CRC fails is rejected (the
serial source never hands one on). Sans-I/O: time is the `now` the caller passes (when the
telegram arrived); the caller counts and logs what is rejected (`transmitter.runtime`).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import timedelta
from decimal import Decimal
from types import MappingProxyType

from p1lora.common.dsmr_time import SUMMER, WINTER, eu_offset_for_local
from p1lora.common.framing import check_crc, excerpt
from p1lora.common.obis import SensorSpec, ValueKind
from p1lora.common.parser import TelegramParseError, parse_telegram
from p1lora.common.telegram import DataObject, Telegram

__all__ = [
    "GateResult",
    "PlausibilityGate",
    "PlausibilityLimits",
    "Verdict",
]

logger = logging.getLogger(__name__)


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
    #: Starts over in a row without one telegram sent after which the gate fails open: it
    #: logs an ERROR and lets telegrams through unchecked until two in a row pass again.
    fail_open_after: int = 3
    #: An M-Bus reading's capture time may move ahead by at most this (s) more than the time
    #: since the last telegram sent (hourly readings jump by an hour); a garbled capture
    #: time must not open the gate wide.
    max_capture_step_s: float = 7200.0
    #: The meter's nominal interval (s; DSMR 2.2/3 send every 10 s): the least time assumed
    #: between two telegrams when bounding a rise, since telegrams read in one chunk after a
    #: stall share one arrival time.
    interval_s: float = 10.0
    #: A held telegram older than this (s) when the next arrives is dropped, not sent: after
    #: an outage it would go out as a current reading. A meter that sends less often gets
    #: three of its own intervals (the time between the two telegrams before).
    max_hold_s: float = 60.0

    def __post_init__(self) -> None:
        if min(self.max_power_w, self.max_volume_m3_per_h, self.max_heat_gj_per_h) <= 0:
            raise ValueError("plausibility bounds must be positive")
        if self.resync_after < 1:
            raise ValueError("resync_after must be at least 1")
        if self.fail_open_after < 1:
            raise ValueError("fail_open_after must be at least 1")
        if not 0 < self.interval_s < self.max_hold_s:
            raise ValueError("interval_s must be positive and below max_hold_s")


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
    #: The gate is failing open (nothing passed for a long time): send it now, unchecked.
    UNCHECKED = "unchecked"


@dataclass(frozen=True, slots=True)
class GateResult:
    """The gate's answer for one telegram.

    `release` is the telegram to send now: the telegram itself for a valid CRC (or while the
    gate fails open), else the one held before it, now confirmed (None: send nothing).
    `rejected` is how many telegrams this call gave up as implausible (0 to 2: this one, the
    held one when this one shows that it was wrong, or both when the gate starts over);
    `reason` says why, for the log. `expired` is 1 when the held telegram was dropped because
    this one came more than `max_hold_s` after it.
    """

    verdict: Verdict
    release: bytes | None = None
    rejected: int = 0
    reason: str | None = None
    expired: int = 0


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
#: Lines whose value must stay readable once it was: numbers (registers, powers, counters,
#: M-Bus readings). Text, timestamps and logs may legitimately become empty (`()`: the grid
#: operator cleared the message) and are only checked for their line layout.
_NUMERIC_KINDS = frozenset(
    {
        ValueKind.NUMBER,
        ValueKind.INTEGER,
        ValueKind.TIMESTAMPED_NUMBER,
        ValueKind.LEGACY_MBUS,
    }
)
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
#: The unit recorded for a line whose value is unreadable: its unit is unknown, not changed.
#: (A parsed unit never contains parentheses, so this cannot be a real one.)
_UNKNOWN_UNIT = "()"
_HOUR = timedelta(hours=1)
#: A held telegram waits for at most this many of the meter's intervals (or `max_hold_s`).
_HOLD_INTERVALS = 3


@dataclass(frozen=True, slots=True)
class _Register:
    """A cumulative register in its base unit, with its resolution and capture time."""

    name: str
    quantity: str | None
    #: The unit `value` is in (the base unit of its quantity, else the meter's own).
    unit: str
    value: Decimal
    resolution: Decimal
    #: When an M-Bus sub-meter's reading was captured (its reading only changes with it).
    captured: float | None
    #: The second instant of a capture time without DST flag in the hour that repeats when
    #: summer time ends (None for every other capture time).
    captured_later: float | None


@dataclass(frozen=True, slots=True)
class _Reading:
    """What the gate remembers of a telegram."""

    at: float
    header: str
    layout: tuple[str, ...]
    #: Every line's unit (`_UNKNOWN_UNIT` when its value is unreadable): units never change,
    #: a flipped bit in one (`kWi`) does.
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


def _repeated_hour_later(obj: DataObject) -> float | None:
    """The later instant of a capture time printed without S/W in the hour that repeats.

    DSMR 2.2/3 print M-Bus capture times as Dutch local time without a DST flag. On the last
    Sunday of October every time from 02:00 to 03:00 occurs twice; the parser takes the first
    (summer time). The gas reading captured at 02:00 winter time then carries the same
    capture time as the one an hour before, with a higher reading. This returns the second
    instant (an hour later) for such times, None for all others.
    """
    stamp = obj.timestamp
    if stamp is None or stamp.tzinfo is not SUMMER:
        return None
    raw = obj.raw
    start = raw.find("(") + 1
    if raw.find(")", start) - start != 12:
        return None  # printed with its S/W flag (or not a plain capture time): not ambiguous
    if eu_offset_for_local(stamp.replace(tzinfo=None) + _HOUR) is not WINTER:
        return None
    return stamp.timestamp() + 3600


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
        value = obj.value
        present = value is not None and value != []
        units.append(obj.unit if present else _UNKNOWN_UNIT)
        spec = obj.spec
        register = _is_register(spec)
        if present and (
            register
            or obj.key in _IDENTITY_KEYS
            or (spec is not None and spec.kind in _NUMERIC_KINDS)
        ):
            readable.add(name)
        if obj.key in _IDENTITY_KEYS:
            identity.append((name, value))
        elif spec is not None and spec.kind is ValueKind.LEGACY_MBUS:
            # `(TST)(00)(60)(1)(0-1:24.2.1)(m3)`: all but the capture time is fixed.
            first_line = obj.raw.split("\r\n", 1)[0]
            identity.append((name, first_line.partition(")")[2]))
        unit = obj.unit or (spec.unit if spec is not None else None)
        if not isinstance(value, Decimal) or not value.is_finite():
            continue
        if register:
            quantity, factor = _UNITS.get(unit or "", (None, Decimal(1)))
            exponent = value.as_tuple().exponent
            step = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
            registers[name] = _Register(
                name=obj.obis,
                quantity=quantity,
                unit=_BASE_UNITS[quantity] if quantity is not None else (unit or ""),
                value=value * factor,
                resolution=step * factor,
                captured=None if obj.timestamp is None else obj.timestamp.timestamp(),
                captured_later=_repeated_hour_later(obj),
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
        self._min_elapsed = Decimal(str(self.limits.interval_s))
        #: The last telegram released (None: none yet, or starting over).
        self._sent: _Reading | None = None
        #: The telegram waiting for the next one to confirm it, with its bytes (while failing
        #: open: the last one let through, which the next is compared with).
        self._held: tuple[_Reading, bytes] | None = None
        self._rejected_in_a_row = 0
        #: Times started over since a telegram was last sent.
        self._starts_over = 0
        #: Failing open: telegrams go through unchecked until two in a row pass.
        self._open = False
        self._open_logged = False
        #: When the last telegram arrived, and the time between the two before (the meter's
        #: interval as seen here; None until known).
        self._last_arrival: float | None = None
        self._gap: float | None = None
        #: Counters since the gate was made.
        self.bypassed = 0
        self.released = 0
        self.rejected = 0
        self.expired = 0
        self.unchecked = 0

    @property
    def holding(self) -> bool:
        """Whether a telegram is held waiting for the next one."""
        return self._held is not None and not self._open

    @property
    def failing_open(self) -> bool:
        """Whether telegrams currently go through unchecked (see the module docstring)."""
        return self._open

    def check(self, raw: bytes, now: float) -> GateResult:
        """What to do with telegram `raw` (`/` .. `!` [CRC]) that arrived at `now` (seconds)."""
        crc = check_crc(raw)
        if crc is not None and crc.valid:
            self.bypassed += 1
            return GateResult(Verdict.BYPASS, release=raw)
        # A telegram that is broken on the line is refused even while failing open, and does
        # not count towards starting over: no meter prints it so.
        if crc is None:
            return self._reject("not a complete telegram")
        if crc.valid is False:
            return self._reject(f"CRC mismatch (says {crc.expected}, computed {crc.computed})")
        try:
            telegram = parse_telegram(raw, crc)
        except TelegramParseError as exc:  # pragma: no cover - check_crc found `/` and `!`
            return self._reject(str(exc))
        reading = _reading(telegram, now)
        gap, self._gap = self._gap, self._arrival_gap(now)
        self._last_arrival = now
        if self._open:
            return self._check_open(reading, raw)
        expired = self._expire(now, gap)
        result = self._decide(reading, raw)
        return replace(result, expired=1) if expired else result

    def reset(self) -> None:
        """Forget everything (e.g. after the serial port was reopened on another meter)."""
        self._sent = None
        self._held = None
        self._rejected_in_a_row = 0
        self._starts_over = 0
        self._open = False
        self._last_arrival = None
        self._gap = None

    # -- internals ------------------------------------------------------------------------

    def _arrival_gap(self, now: float) -> float | None:
        last = self._last_arrival
        return None if last is None else max(0.0, now - last)

    def _expire(self, now: float, gap: float | None) -> bool:
        """Drop a held telegram that waited too long: the meter's data stopped in between.

        `gap` is the time between the two telegrams before this one: a meter that sends
        every 100 s must not have every telegram dropped."""
        held = self._held
        limit = self.limits.max_hold_s
        if gap is not None:
            limit = max(limit, _HOLD_INTERVALS * gap)
        if held is None or now - held[0].at <= limit:
            return False
        self._held = None
        self.expired += 1
        return True

    def _decide(self, reading: _Reading, raw: bytes) -> GateResult:
        power = self._power_problem(reading)
        if power is not None:
            return self._refuse(power, reading, raw, holdable=False)
        sent, held = self._sent, self._held
        against_sent = None if sent is None else self._compare(sent, reading)
        if held is None:
            if against_sent is None:
                self._held = (reading, raw)
                return GateResult(Verdict.HOLD)
            return self._refuse(against_sent, reading, raw)
        against_held = self._compare(held[0], reading)
        if against_sent is not None:
            return self._refuse(against_sent, reading, raw)
        self._held = (reading, raw)
        if against_held is None:
            self._sent = held[0]
            self._rejected_in_a_row = 0
            self._starts_over = 0
            self.released += 1
            return GateResult(Verdict.CONFIRM, release=held[1])
        # This one fits what was sent; the held one does not fit this one: it was wrong.
        reason = f"the telegram held before this one was given up: {against_held}"
        self._rejected_in_a_row += 1
        if self._rejected_in_a_row < self.limits.resync_after:
            self.rejected += 1
            return GateResult(Verdict.HOLD, rejected=1, reason=reason)
        return self._start_over(reason, reading, raw, rejected=1, holdable=True)

    def _reject(self, reason: str) -> GateResult:
        self.rejected += 1
        return GateResult(Verdict.REJECT, rejected=1, reason=reason)

    def _refuse(
        self, problem: str, reading: _Reading, raw: bytes, *, holdable: bool = True
    ) -> GateResult:
        """Reject an implausible telegram; start over when too many came in a row."""
        self._rejected_in_a_row += 1
        if self._rejected_in_a_row < self.limits.resync_after:
            return self._reject(problem)
        # The held telegram is never sent now: count it with the ones given up.
        dropped = 0 if self._held is None else 1
        self._held = None
        return self._start_over(problem, reading, raw, rejected=dropped, holdable=holdable)

    def _start_over(
        self, problem: str, reading: _Reading, raw: bytes, *, rejected: int, holdable: bool
    ) -> GateResult:
        """Many rejections in a row: maybe what was sent is what is wrong (a new meter, a real
        jump). Forget it and hold this telegram (if it can be sent at all) until the next one
        agrees with it; after `fail_open_after` such starts without a telegram sent, fail open.

        `rejected` telegrams were given up besides this one."""
        self._rejected_in_a_row = 0
        self._sent = None
        self._starts_over += 1
        problem += f"; {self.limits.resync_after} telegrams in a row were refused"
        if self._starts_over >= self.limits.fail_open_after:
            return self._fail_open(problem, reading, raw, rejected)
        if holdable:
            self._held = (reading, raw)
            self.rejected += rejected
            return GateResult(
                Verdict.HOLD,
                rejected=rejected,
                reason=f"{problem}: starting over, this one is sent once the next agrees",
            )
        self._held = None
        self.rejected += rejected + 1
        return GateResult(
            Verdict.REJECT,
            rejected=rejected + 1,
            reason=f"{problem}: starting over from the next two that agree",
        )

    def _fail_open(self, problem: str, reading: _Reading, raw: bytes, rejected: int) -> GateResult:
        """Nothing got through for a long time: the check, not the meter, is what is wrong.
        Let telegrams through (the receiver keeps getting the meter's values) and say so."""
        self._open = True
        self._starts_over = 0
        self._held = (reading, raw)
        self.rejected += rejected
        self.unchecked += 1
        log = logger.warning if self._open_logged else logger.error
        self._open_logged = True
        log(
            "plausibility check of P1 telegrams without CRC: it started over %d times and "
            "still refused every telegram (last: %s). Sending them UNCHECKED until two in a "
            "row pass again: if a register is wrong, Home Assistant will show it. A meter that "
            "really reads like this needs other limits; a bad cable shows as many other "
            "errors (see docs/troubleshooting.md)",
            self.limits.fail_open_after,
            problem,
        )
        return GateResult(Verdict.UNCHECKED, release=raw, rejected=rejected, reason=problem)

    def _check_open(self, reading: _Reading, raw: bytes) -> GateResult:
        """While failing open: send each telegram at once, unless it and the one before pass
        the check; then checking resumes (this one is held as usual)."""
        previous = self._held
        self._held = (reading, raw)
        problem = self._power_problem(reading)
        if problem is None and previous is not None and self._power_problem(previous[0]) is None:
            problem = self._compare(previous[0], reading)
            if problem is None:
                self._open = False
                self._sent = previous[0]
                self._rejected_in_a_row = 0
                logger.warning(
                    "plausibility check of P1 telegrams without CRC: two telegrams in a row "
                    "pass again; checking resumed after %d sent unchecked",
                    self.unchecked,
                )
                return GateResult(Verdict.HOLD)
        self.unchecked += 1
        return GateResult(Verdict.UNCHECKED, release=raw, reason=problem)

    def _power_problem(self, reading: _Reading) -> str | None:
        if reading.max_power_w <= self._max_power:
            return None
        return (
            f"a power of {reading.max_power_w / 1000:f} kW is above the "
            f"{self._max_power / 1000:f} kW any connection can draw"
        )

    def _compare(self, old: _Reading, new: _Reading) -> str | None:
        """Why `new` cannot follow `old`, or None when it can."""
        if new.header != old.header:
            return f"header changed from {excerpt(old.header)} to {excerpt(new.header)}"
        if new.layout != old.layout:
            return "its lines differ from the telegram before"
        for before, after in zip(old.units, new.units, strict=True):
            if before != after and _UNKNOWN_UNIT not in (before, after):
                return "a unit changed"
        if new.identity != old.identity:
            return "a meter identifier changed"
        lost = old.readable - new.readable
        if lost:
            name = min(lost).split("#")[0]
            return f"{excerpt(name)} is no longer readable"
        elapsed = Decimal(str(max(0.0, new.at - old.at)))
        elapsed = max(elapsed, self._min_elapsed)
        for name, register in new.registers.items():
            before_register = old.registers.get(name)
            if before_register is None:
                if name in old.readable:
                    return f"{excerpt(register.name)} changed its form"
                continue
            problem = self._register_problem(before_register, register, elapsed)
            if problem is not None:
                return problem
        return None

    def _register_problem(
        self, before: _Register, after: _Register, elapsed: Decimal
    ) -> str | None:
        rise = after.value - before.value
        if rise < 0:
            return f"{excerpt(after.name)} went down by {-rise:f} {after.unit}".rstrip()
        if after.quantity is None:
            return None  # a unit without a known rate bound: only "never down" applies
        seconds = elapsed
        if before.captured is not None and after.captured is not None:
            moved = after.captured - before.captured
            if (moved < 0 or (moved == 0 and rise)) and after.captured_later is not None:
                # 02:00 winter time printed without S/W reads as 02:00 summer time.
                moved = after.captured_later - before.captured
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
