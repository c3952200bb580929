"""Values computed from a telegram: total import/export, net energy and net power.

Computed the way the widely used Python P1 client computes them ("net power consumption is
import power 1-0:1.7.0 minus export power 1-0:2.7.0; net energy is the import registers
1-0:1.8.1 + 1-0:1.8.2 minus the export registers 1-0:2.8.1 + 1-0:2.8.2"), generalised to every
meter we read:

* import/export totals are the sum of the tariff registers (`1.8.1`..`1.8.4`,
  `2.8.1`..`2.8.4`); a meter that only has total registers (`1.8.0`/`2.8.0`, Sweden and
  Luxembourg) uses those. Never both: Hungarian and Austrian meters print the total *and* the
  tariffs, and adding them would count the energy twice.
* net energy = import total - export total; net power = `1.7.0` - `2.7.0`.

Arithmetic is exact `Decimal`, in the meter's own unit (kWh, or Wh on Sagemcom/EasyMeter); a
register in another scale of the same unit (Wh next to kWh) is converted exactly. A value is
None when a register it needs is missing, rather than a guess.

A register that is present but unreadable (`1-0:1.8.2(abc*kWh)`: the parser keeps it as null)
makes its total and the net values that use it None too, with a warning. Leaving it out would
publish tariff 1 alone as "total import": a drop that Home Assistant takes for a meter reset
of a `total_increasing` sensor, and a wrong net energy. A meter that prints its own total next
to the tariffs (`1.8.0`, Hungary and Austria) keeps its totals: with a tariff unreadable, the
readable total register is used instead of the sum.

On that client's reference telegram (import 2640.860 + 1164.335 kWh, export
1076.832 + 2684.048 kWh, 0.006 kW in, 0 out) this gives net energy 44.315 kWh and net power
0.006 kW.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from p1lora.common.obis import SensorSpec, ValueKind
from p1lora.common.warn_once import WarnOnce

if TYPE_CHECKING:
    from p1lora.common.telegram import DataObject

__all__ = ["DERIVED_SPECS", "DerivedValues", "compute_derived"]

logger = logging.getLogger(__name__)

# Role of each register in the computation (key -> role).
_IMPORT_TARIFF = "import_tariff"
_EXPORT_TARIFF = "export_tariff"
_IMPORT_TOTAL = "import_total"
_EXPORT_TOTAL = "export_total"
_POWER_IN = "power_in"
_POWER_OUT = "power_out"

_ROLES: Mapping[str, str] = MappingProxyType(
    {
        "electricity_used_tariff_1": _IMPORT_TARIFF,
        "electricity_used_tariff_2": _IMPORT_TARIFF,
        "electricity_used_tariff_3": _IMPORT_TARIFF,
        "electricity_used_tariff_4": _IMPORT_TARIFF,
        "electricity_delivered_tariff_1": _EXPORT_TARIFF,
        "electricity_delivered_tariff_2": _EXPORT_TARIFF,
        "electricity_delivered_tariff_3": _EXPORT_TARIFF,
        "electricity_delivered_tariff_4": _EXPORT_TARIFF,
        "electricity_imported_total": _IMPORT_TOTAL,
        "electricity_exported_total": _EXPORT_TOTAL,
        "current_electricity_usage": _POWER_IN,
        "current_electricity_delivery": _POWER_OUT,
    }
)

_ROLE_ORDER = (_IMPORT_TARIFF, _EXPORT_TARIFF, _IMPORT_TOTAL, _EXPORT_TOTAL, _POWER_IN, _POWER_OUT)
# key -> position in _ROLE_ORDER (a plain dict: looked up for every object of every telegram).
_ROLE_INDEX: dict[str, int] = {key: _ROLE_ORDER.index(role) for key, role in _ROLES.items()}

# Unit -> (base unit, power of ten to get there). Energy and power scales meters use.
_SCALES: Mapping[str, tuple[str, int]] = MappingProxyType(
    {
        "Wh": ("Wh", 0),
        "kWh": ("Wh", 3),
        "MWh": ("Wh", 6),
        "W": ("W", 0),
        "kW": ("W", 3),
        "MW": ("W", 6),
    }
)


# (value, unit): a plain tuple, because this runs for every telegram.
_Quantity = tuple[Decimal, "str | None"]


@dataclass(frozen=True, slots=True)
class DerivedValues:
    """Totals and net values of one telegram; None where the telegram lacks a register."""

    total_energy_import: Decimal | None = None
    total_energy_export: Decimal | None = None
    net_energy: Decimal | None = None
    energy_unit: str | None = None
    net_power: Decimal | None = None
    power_unit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """`{key: {"value": Decimal | None, "unit": str | None}}` for JSON (see telegram.dumps)."""
        return {
            "total_energy_import": {"value": self.total_energy_import, "unit": self.energy_unit},
            "total_energy_export": {"value": self.total_energy_export, "unit": self.energy_unit},
            "net_energy": {"value": self.net_energy, "unit": self.energy_unit},
            "net_power": {"value": self.net_power, "unit": self.power_unit},
        }


# fmt: off
# key, name in Home Assistant, description, unit, device_class, state_class
_DERIVED_ROWS: tuple[tuple[str, str, str, str, str, str], ...] = (
    ("total_energy_import", "Energy consumption (all tariffs)", "Electricity imported, sum of all tariffs", "kWh", "energy", "total_increasing"),
    ("total_energy_export", "Energy production (all tariffs)", "Electricity exported, sum of all tariffs", "kWh", "energy", "total_increasing"),
    ("net_energy", "Net energy", "Net electricity: imported minus exported", "kWh", "energy", "total"),
    ("net_power", "Net power", "Net power: import power minus export power", "kW", "power", "measurement"),
)
# fmt: on

#: Home Assistant metadata for the derived values (same shape as the OBIS table rows; no OBIS
#: code, disabled by default). Net energy can go down (solar export), so it is `total`.
DERIVED_SPECS: Mapping[str, SensorSpec] = MappingProxyType(
    {
        key: SensorSpec(
            code=None,
            key=key,
            description=description,
            kind=ValueKind.NUMBER,
            unit=unit,
            device_class=device_class,
            state_class=state_class,
            entity_category=None,
            enabled_by_default=False,
            name=name,
        )
        for key, name, description, unit, device_class, state_class in _DERIVED_ROWS
    }
)


def _sum(quantities: list[_Quantity]) -> _Quantity | None:
    """Exact sum in the unit of the first quantity; None if units cannot be combined."""
    if not quantities:
        return None
    total, unit = quantities[0]
    for value, other_unit in quantities[1:]:
        converted = value if other_unit == unit else _convert(value, other_unit, unit)
        if converted is None:
            return None
        total += converted
    return total, unit


def _convert(value: Decimal, unit: str | None, target_unit: str | None) -> Decimal | None:
    if unit == target_unit:
        return value
    source = _SCALES.get(unit or "")
    target = _SCALES.get(target_unit or "")
    if source is None or target is None or source[0] != target[0]:
        logger.warning(
            "cannot combine %s with %s in derived values", unit or "no unit", target_unit
        )
        return None
    return value.scaleb(source[1] - target[1])


def _difference(a: _Quantity | None, b: _Quantity | None) -> _Quantity | None:
    if a is None or b is None:
        return None
    converted = _convert(b[0], b[1], a[1])
    if converted is None:
        return None
    return a[0] - converted, a[1]


# Warn once per (output, register key); bounded like the parser's warnings.
_WARN_LIMIT = 64
_warned = WarnOnce(logger, _WARN_LIMIT)


def _warn_unreadable(output: str, key: str) -> None:
    _warned(
        (output, key),
        "%s left empty: register %s is in the telegram but its value is unreadable (a total "
        "without it would be wrong)",
        output,
        key,
    )


def _pick_role(
    tariffs: int, total: int, found: list[list[_Quantity]], bad: list[str | None]
) -> int:
    """Which role gives a direction's total: its tariffs, or the meter's own total register.

    The tariffs when the meter has any (readable or not), else the total register. When a
    tariff is unreadable but the meter also prints its own total (Hungarian and Austrian
    meters print `1.8.0` next to `1.8.1`..`1.8.4`) and that is readable, the total is used:
    it is the meter's own sum, so nothing is guessed and nothing is left out.
    """
    if not found[tariffs] and bad[tariffs] is None:
        return total
    if bad[tariffs] is not None and found[total] and bad[total] is None:
        return total
    return tariffs


def compute_derived(objects: Iterable[DataObject]) -> DerivedValues:
    """Derived values from a telegram's objects (M-Bus channels are ignored).

    A role (import tariffs, export totals, power in ...) with a register that is present but
    not a number is unusable: the values computed from it are None, never a partial sum.
    """
    # One list per role; this runs for every telegram, so it stays a plain loop.
    found: list[list[_Quantity]] = [[], [], [], [], [], []]
    # Per role: the key of a register that is present but unreadable (None: all readable).
    unreadable: list[str | None] = [None, None, None, None, None, None]
    index_of = _ROLE_INDEX.get
    any_found = False
    for obj in objects:
        index = index_of(obj.key)  # type: ignore[arg-type]
        if index is None or obj.channel is not None:
            continue
        value = obj.value
        if isinstance(value, Decimal):
            found[index].append((value, obj.unit))
        elif unreadable[index] is None:
            unreadable[index] = obj.key
        any_found = True
    if not any_found:
        return _NOTHING
    power_in, power_out = found[4], found[5]
    import_role = _pick_role(0, 2, found, unreadable)
    export_role = _pick_role(1, 3, found, unreadable)
    bad_import, bad_export = unreadable[import_role], unreadable[export_role]
    bad_power = unreadable[4] or unreadable[5]
    if bad_import is not None:
        _warn_unreadable("total_energy_import and net_energy", bad_import)
    if bad_export is not None:
        _warn_unreadable("total_energy_export and net_energy", bad_export)
    if bad_power is not None:
        _warn_unreadable("net_power", bad_power)
    total_import = None if bad_import else _sum(found[import_role])
    total_export = None if bad_export else _sum(found[export_role])
    net_power = None if bad_power else _difference(_sum(power_in), _sum(power_out))
    if total_import is not None:
        energy_unit = total_import[1]
        net_energy = _difference(total_import, total_export)
    else:
        energy_unit = None if total_export is None else total_export[1]
        net_energy = None
    return DerivedValues(
        None if total_import is None else total_import[0],
        None if total_export is None else _convert(total_export[0], total_export[1], energy_unit),
        None if net_energy is None else net_energy[0],
        energy_unit,
        None if net_power is None else net_power[0],
        None if net_power is None else net_power[1],
    )


_NOTHING = DerivedValues()
