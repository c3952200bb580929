"""The OBIS table: every P1 line p1-lora understands, and what Home Assistant should make of it.

One row per OBIS code, saying everything about the line (like rtl_433's discovery `mappings`).
The parser reads it to know how to read a line (the value kind); the Home Assistant discovery
(`p1lora.receiver.ha_discovery`) reads it to build each entity (device class, state class,
category, enabled by default, which device the entity belongs to, and the `name=` and `icon=`
keywords). Keeping both in one place means a new meter line is one row, never a parser branch
plus a discovery branch that can drift apart. The Home Assistant columns are plain strings in
Home Assistant's vocabulary: `common` knows nothing of the receiver.

Keys are snake_case. Where Home Assistant's own DSMR integration has an equivalent sensor the key
is *its* key (``electricity_used_tariff_1``, ``current_electricity_usage``,
``belgium_maximum_demand_current_month`` ...), so users moving from that integration recognise
their entities; otherwise the key follows dsmr_parser's name for the object, lower-cased.

M-Bus sub-meter lines (gas, water, heat on channels 1-4) are written with a channel wildcard,
``0-n:24.2.1``. Their reading means different things depending on the device type the meter
reports on ``0-n:24.1.0`` (3 gas, 4 heat, 7 water ...), so the reading row is resolved against
``MBUS_DEVICE_TYPES`` into Home Assistant's per-device sensors (``gas_reading``,
``water_reading``, ``heat_reading``) with the right device class.

Units: the ``unit`` column is the unit the standards specify, used when a meter sends none; the
parser always keeps the unit the meter actually printed (Sagemcom and EasyMeter send Wh and W,
heat meters GJ).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from types import MappingProxyType
from typing import NamedTuple

__all__ = [
    "BILLING_SNAPSHOT_SPEC",
    "BREAKER_STATES",
    "KNOWN_CODES",
    "MBUS_CHANNELS",
    "MBUS_DEVICE_TYPES",
    "MBUS_DEVICE_TYPE_NAMES",
    "NO_LIMIT_FROM",
    "OBIS_TABLE",
    "VALVE_STATES",
    "CodeInfo",
    "Device",
    "MbusDeviceType",
    "SensorSpec",
    "ValueKind",
    "is_obis_code",
    "lookup_code",
    "reading_spec",
    "spec_by_key",
]


class ValueKind(StrEnum):
    """How the value part of a P1 line is read (see `p1lora.common.parser`)."""

    #: `(000123.456*kWh)`: a Decimal with exactly the meter's digits, plus its unit.
    NUMBER = "number"
    #: `(00015)`: counters, device types, switch positions.
    INTEGER = "integer"
    #: `(0002)`: identifiers, tariff indicator, versions, as printed.
    STRING = "string"
    #: `(303132...)`: hex-encoded text, decoded (plain text is kept as it is).
    TEXT = "text"
    #: `(170102192002W)`: a timezone-aware datetime.
    TIMESTAMP = "timestamp"
    #: `(200512134558S)(00112.384*m3)`: a number with the time it was captured.
    TIMESTAMPED_NUMBER = "timestamped_number"
    #: DSMR 2.2/3 gas: `(TST)(00)(60)(1)(0-1:24.2.1)(m3)` then the reading on the next line.
    LEGACY_MBUS = "legacy_mbus"
    #: `(2)(0-0:96.7.19)(TST)(dur*s)(TST)(dur*s)`: the power-failure event log, any length.
    EVENT_LOG = "event_log"
    #: `0-0:98.1.0`: Belgian 13-month peak history, or the Hungarian last-month snapshot
    #: (`BILLING_SNAPSHOT_SPEC`).
    BILLING_HISTORY = "billing_history"
    #: `(040*A)(-040*A)`: several numbers on one line.
    NUMBER_LIST = "number_list"


class Device(StrEnum):
    """Which Home Assistant device an entity belongs to."""

    #: The electricity meter itself (the one with the P1 port).
    ELECTRICITY = "electricity"
    #: An M-Bus sub-meter on a channel; gas, water or heat by its device type.
    MBUS = "mbus"


@dataclass(frozen=True, slots=True)
class SensorSpec:
    """One row of the table: how to read a value and how Home Assistant should show it.

    `code` is the OBIS code as in the standards (`0-n:` for any M-Bus channel); derived values
    (`p1lora.common.derived`) use the same class with `code=None`. The Home Assistant fields
    use Home Assistant's own vocabulary (device_class `energy`, state_class `total_increasing`,
    entity_category `diagnostic`) so discovery can copy them verbatim. `name` is the entity's
    name in Home Assistant (shown after the device name, close to Home Assistant's own DSMR
    integration so users moving from it recognise their entities); None falls back to the
    description's first clause. `icon` is only set where the device class gives none.
    `options` names the codes of a line that is a state, not a quantity (breaker state, valve
    position, M-Bus device type): Home Assistant shows it as an `enum` sensor with these names.
    `no_limit_from` is for limits: a value this high or higher is the meter's way of saying
    "no limit is set" (999.9 kW, 999 A on Belgian meters).
    """

    code: str | None
    key: str
    description: str
    kind: ValueKind
    unit: str | None
    device_class: str | None
    state_class: str | None
    entity_category: str | None
    enabled_by_default: bool
    device: Device = Device.ELECTRICITY
    name: str | None = None
    icon: str | None = None
    options: Mapping[int, str] | None = dataclasses.field(default=None, hash=False)
    no_limit_from: Decimal | None = None


@dataclass(frozen=True, slots=True)
class MbusDeviceType:
    """An EN 13757-3 device type as reported on `0-n:24.1.0`, and what its reading becomes
    (`reading_name` is the reading entity's name in Home Assistant)."""

    code: int
    name: str
    description: str
    reading_key: str
    device_class: str | None
    unit: str | None
    icon: str | None = None
    reading_name: str = dataclasses.field(kw_only=True)


# Home Assistant vocabulary, spelled once.
_ENERGY = "energy"
_POWER = "power"
_VOLTAGE = "voltage"
_CURRENT = "current"
_GAS = "gas"
_WATER = "water"
_TIMESTAMP = "timestamp"
_FREQUENCY = "frequency"
_POWER_FACTOR = "power_factor"
_REACTIVE_POWER = "reactive_power"
_APPARENT_POWER = "apparent_power"
_MEASUREMENT = "measurement"
_TOTAL_INCREASING = "total_increasing"
_TOTAL = "total"
_DIAG = "diagnostic"

_K = ValueKind
_S = SensorSpec
_E = Device.ELECTRICITY
_M = Device.MBUS

#: Breaker (disconnector) states, `0-0:96.3.10` and `0-n:96.3.10`: the `control_state` of the
#: COSEM "Disconnect control" object (class_id 70, IEC 62056-6-2 / DLMS Blue Book), which DSMR 5
#: and e-MUCS print as a number (Gurux's `gurux_dlms/objects/enums/ControlState.py` has the
#: same three values). Option names follow the standard's words.
BREAKER_STATES: Mapping[int, str] = MappingProxyType(
    {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}
)
#: Gas/water valve position, `0-n:24.4.0`: the same Disconnect control object on the M-Bus
#: device (DSMR 4/5 "valve position (on/off/released)", e-MUCS "valve state"); 0 off, 1 on,
#: 2 released (ready to be opened at the valve).
VALVE_STATES: Mapping[int, str] = MappingProxyType({0: "closed", 1: "open", 2: "ready_to_open"})
# fmt: off
#: M-Bus device types (EN 13757-3 "device type" byte, printed in decimal on `0-n:24.1.0`), the
#: types the standard lists for meters, sensors and switching devices. Codes it reserves have
#: no name and show as unknown.
MBUS_DEVICE_TYPE_NAMES: Mapping[int, str] = MappingProxyType({
    0x00: "other", 0x01: "oil", 0x02: "electricity", 0x03: "gas", 0x04: "heat_outlet",
    0x05: "steam", 0x06: "warm_water", 0x07: "water", 0x08: "heat_cost_allocator",
    0x09: "compressed_air", 0x0A: "cooling_outlet", 0x0B: "cooling_inlet", 0x0C: "heat_inlet",
    0x0D: "heat_cooling", 0x0E: "bus_system_component", 0x0F: "unknown_medium",
    0x15: "hot_water", 0x16: "cold_water", 0x17: "hot_cold_water", 0x18: "pressure",
    0x19: "ad_converter", 0x1A: "smoke_detector", 0x1B: "room_sensor", 0x1C: "gas_detector",
    0x20: "breaker", 0x21: "valve", 0x25: "customer_unit", 0x28: "waste_water", 0x29: "garbage",
})
# fmt: on
#: Limits at or above this mean "no limit set" (DSMR/e-MUCS meters print 999.9 kW and 999 A).
NO_LIMIT_FROM = Decimal(999)

# fmt: off
# code, key, description, kind, unit, device_class, state_class, entity_category, enabled, device,
# then name= (the entity's name in Home Assistant) and icon= (where the device class gives none)
_ROWS: tuple[SensorSpec, ...] = (
    # --- identification and versions -------------------------------------------------------
    _S("1-3:0.2.8", "p1_version", "Version of the P1 output (42 = DSMR 4.2, 50 = DSMR 5.0)", _K.STRING, None, None, None, _DIAG, False, _E, name="DSMR version"),
    _S("0-0:96.1.4", "belgium_version_information", "Version of the e-MUCS P1 output (Belgium)", _K.STRING, None, None, None, _DIAG, False, _E, name="e-MUCS version"),
    _S("0-0:1.0.0", "timestamp", "Date and time at which the meter made this telegram", _K.TIMESTAMP, None, _TIMESTAMP, None, _DIAG, False, _E, name="Timestamp"),
    _S("0-0:96.1.1", "equipment_identifier", "Equipment identifier of the electricity meter (hex-encoded serial)", _K.STRING, None, None, None, _DIAG, False, _E, name="Equipment identifier"),
    _S("0-0:96.1.0", "equipment_serial_number", "Serial number of the electricity meter (Hungary)", _K.STRING, None, None, None, _DIAG, False, _E, name="Serial number"),
    _S("0-0:42.0.0", "luxembourg_equipment_identifier", "COSEM logical device name (Luxembourg Smarty, Hungary)", _K.STRING, None, None, None, _DIAG, False, _E, name="Logical device name"),
    _S("1-0:0.0.0", "q3d_equipment_identifier", "Device identifier (EasyMeter Q3D)", _K.STRING, None, None, None, _DIAG, False, _E, name="Device identifier"),
    _S("0-0:96.1.255", "q3d_equipment_serialnumber", "Serial number (EasyMeter Q3D)", _K.STRING, None, None, None, _DIAG, False, _E, name="Serial number"),
    _S("1-0:96.5.5", "q3d_equipment_state", "Device state, hexadecimal (EasyMeter Q3D)", _K.STRING, None, None, None, _DIAG, False, _E, name="Device state"),
    _S("0-0:96.14.0", "electricity_active_tariff", "Active tariff as printed (0001 = tariff 1, 0002 = tariff 2)", _K.STRING, None, None, None, None, True, _E, name="Active tariff", icon="mdi:theme-light-dark"),
    # --- active energy registers ---------------------------------------------------------------
    _S("1-0:1.8.0", "electricity_imported_total", "Electricity imported from the grid, all tariffs (+A)", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy consumption (total)"),
    _S("1-0:1.8.1", "electricity_used_tariff_1", "Electricity imported from the grid, tariff 1", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy consumption (tariff 1)"),
    _S("1-0:1.8.2", "electricity_used_tariff_2", "Electricity imported from the grid, tariff 2", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy consumption (tariff 2)"),
    _S("1-0:1.8.3", "electricity_used_tariff_3", "Electricity imported from the grid, tariff 3", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy consumption (tariff 3)"),
    _S("1-0:1.8.4", "electricity_used_tariff_4", "Electricity imported from the grid, tariff 4", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy consumption (tariff 4)"),
    _S("1-0:2.8.0", "electricity_exported_total", "Electricity exported to the grid, all tariffs (-A)", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy production (total)"),
    _S("1-0:2.8.1", "electricity_delivered_tariff_1", "Electricity exported to the grid, tariff 1", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy production (tariff 1)"),
    _S("1-0:2.8.2", "electricity_delivered_tariff_2", "Electricity exported to the grid, tariff 2", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy production (tariff 2)"),
    _S("1-0:2.8.3", "electricity_delivered_tariff_3", "Electricity exported to the grid, tariff 3", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy production (tariff 3)"),
    _S("1-0:2.8.4", "electricity_delivered_tariff_4", "Electricity exported to the grid, tariff 4", _K.NUMBER, "kWh", _ENERGY, _TOTAL_INCREASING, None, True, _E, name="Energy production (tariff 4)"),
    _S("1-0:15.8.0", "eon_hu_electricity_combined", "Combined active energy |+A| + |-A| (Hungary)", _K.NUMBER, "kWh", _ENERGY, _TOTAL, None, True, _E, name="Energy combined (import + export)"),
    # --- reactive energy registers -------------------------------------------------------------
    _S("1-0:3.8.0", "electricity_reactive_imported_total", "Reactive energy imported (+R)", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy consumption (total)", icon="mdi:sine-wave"),
    _S("1-0:3.8.1", "electricity_reactive_imported_tariff_1", "Reactive energy imported, tariff 1", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy consumption (tariff 1)"),
    _S("1-0:3.8.2", "electricity_reactive_imported_tariff_2", "Reactive energy imported, tariff 2", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy consumption (tariff 2)"),
    _S("1-0:4.8.0", "electricity_reactive_exported_total", "Reactive energy exported (-R)", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy production (total)", icon="mdi:sine-wave"),
    _S("1-0:4.8.1", "electricity_reactive_exported_tariff_1", "Reactive energy exported, tariff 1", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy production (tariff 1)"),
    _S("1-0:4.8.2", "electricity_reactive_exported_tariff_2", "Reactive energy exported, tariff 2", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy production (tariff 2)"),
    _S("1-0:5.8.0", "electricity_reactive_total_q1", "Reactive energy, quadrant 1", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy Q1"),
    _S("1-0:6.8.0", "electricity_reactive_total_q2", "Reactive energy, quadrant 2", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy Q2"),
    _S("1-0:7.8.0", "electricity_reactive_total_q3", "Reactive energy, quadrant 3", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy Q3"),
    _S("1-0:8.8.0", "electricity_reactive_total_q4", "Reactive energy, quadrant 4", _K.NUMBER, "kvarh", None, _TOTAL_INCREASING, None, False, _E, name="Reactive energy Q4"),
    # --- power, all phases ---------------------------------------------------------------------
    _S("1-0:1.7.0", "current_electricity_usage", "Power imported from the grid, all phases (+P)", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, True, _E, name="Power consumption"),
    _S("1-0:2.7.0", "current_electricity_delivery", "Power exported to the grid, all phases (-P)", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, True, _E, name="Power production"),
    _S("1-0:3.7.0", "current_reactive_imported", "Reactive power imported (+Q)", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power consumption"),
    _S("1-0:4.7.0", "current_reactive_exported", "Reactive power exported (-Q)", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power production"),
    _S("1-0:5.7.0", "instantaneous_reactive_power_q1", "Reactive power, quadrant 1", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power Q1"),
    _S("1-0:6.7.0", "instantaneous_reactive_power_q2", "Reactive power, quadrant 2", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power Q2"),
    _S("1-0:7.7.0", "instantaneous_reactive_power_q3", "Reactive power, quadrant 3", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power Q3"),
    _S("1-0:8.7.0", "instantaneous_reactive_power_q4", "Reactive power, quadrant 4", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power Q4"),
    _S("1-0:9.7.0", "instantaneous_apparent_power_positive", "Apparent power imported (+S)", _K.NUMBER, "kVA", _APPARENT_POWER, _MEASUREMENT, None, False, _E, name="Apparent power consumption"),
    _S("1-0:10.7.0", "instantaneous_apparent_power_negative", "Apparent power exported (-S)", _K.NUMBER, "kVA", _APPARENT_POWER, _MEASUREMENT, None, False, _E, name="Apparent power production"),
    _S("1-0:13.7.0", "eon_hu_instantaneous_power_factor_total", "Power factor, all phases", _K.NUMBER, None, _POWER_FACTOR, _MEASUREMENT, _DIAG, False, _E, name="Power factor"),
    _S("1-0:14.7.0", "eon_hu_frequency", "Grid frequency", _K.NUMBER, "Hz", _FREQUENCY, _MEASUREMENT, _DIAG, False, _E, name="Frequency"),
    # --- per phase -----------------------------------------------------------------------------
    _S("1-0:21.7.0", "instantaneous_active_power_l1_positive", "Power imported on phase L1", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power consumption phase L1"),
    _S("1-0:41.7.0", "instantaneous_active_power_l2_positive", "Power imported on phase L2", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power consumption phase L2"),
    _S("1-0:61.7.0", "instantaneous_active_power_l3_positive", "Power imported on phase L3", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power consumption phase L3"),
    _S("1-0:22.7.0", "instantaneous_active_power_l1_negative", "Power exported on phase L1", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power production phase L1"),
    _S("1-0:42.7.0", "instantaneous_active_power_l2_negative", "Power exported on phase L2", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power production phase L2"),
    _S("1-0:62.7.0", "instantaneous_active_power_l3_negative", "Power exported on phase L3", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, False, _E, name="Power production phase L3"),
    _S("1-0:23.7.0", "instantaneous_reactive_power_l1_positive", "Reactive power imported on phase L1", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power consumption phase L1"),
    _S("1-0:43.7.0", "instantaneous_reactive_power_l2_positive", "Reactive power imported on phase L2", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power consumption phase L2"),
    _S("1-0:63.7.0", "instantaneous_reactive_power_l3_positive", "Reactive power imported on phase L3", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power consumption phase L3"),
    _S("1-0:24.7.0", "instantaneous_reactive_power_l1_negative", "Reactive power exported on phase L1", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power production phase L1"),
    _S("1-0:44.7.0", "instantaneous_reactive_power_l2_negative", "Reactive power exported on phase L2", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power production phase L2"),
    _S("1-0:64.7.0", "instantaneous_reactive_power_l3_negative", "Reactive power exported on phase L3", _K.NUMBER, "kvar", _REACTIVE_POWER, _MEASUREMENT, None, False, _E, name="Reactive power production phase L3"),
    _S("1-0:32.7.0", "instantaneous_voltage_l1", "Voltage on phase L1", _K.NUMBER, "V", _VOLTAGE, _MEASUREMENT, _DIAG, False, _E, name="Voltage phase L1"),
    _S("1-0:52.7.0", "instantaneous_voltage_l2", "Voltage on phase L2", _K.NUMBER, "V", _VOLTAGE, _MEASUREMENT, _DIAG, False, _E, name="Voltage phase L2"),
    _S("1-0:72.7.0", "instantaneous_voltage_l3", "Voltage on phase L3", _K.NUMBER, "V", _VOLTAGE, _MEASUREMENT, _DIAG, False, _E, name="Voltage phase L3"),
    _S("1-0:31.7.0", "instantaneous_current_l1", "Current on phase L1", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current phase L1"),
    _S("1-0:51.7.0", "instantaneous_current_l2", "Current on phase L2", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current phase L2"),
    _S("1-0:71.7.0", "instantaneous_current_l3", "Current on phase L3", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current phase L3"),
    _S("1-0:33.7.0", "eon_hu_instantaneous_power_factor_l1", "Power factor on phase L1", _K.NUMBER, None, _POWER_FACTOR, _MEASUREMENT, _DIAG, False, _E, name="Power factor phase L1"),
    _S("1-0:53.7.0", "eon_hu_instantaneous_power_factor_l2", "Power factor on phase L2", _K.NUMBER, None, _POWER_FACTOR, _MEASUREMENT, _DIAG, False, _E, name="Power factor phase L2"),
    _S("1-0:73.7.0", "eon_hu_instantaneous_power_factor_l3", "Power factor on phase L3", _K.NUMBER, None, _POWER_FACTOR, _MEASUREMENT, _DIAG, False, _E, name="Power factor phase L3"),
    # --- power quality and failures ------------------------------------------------------------
    _S("0-0:96.7.21", "short_power_failure_count", "Number of power failures in any phase", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Short power failure count", icon="mdi:flash-off"),
    _S("0-0:96.7.9", "long_power_failure_count", "Number of long power failures in any phase", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Long power failure count", icon="mdi:flash-off"),
    _S("1-0:99.97.0", "power_event_failure_log", "Long power failures: end time and duration of each", _K.EVENT_LOG, "s", None, None, _DIAG, False, _E, name="Last long power failure", icon="mdi:flash-off"),
    _S("1-0:32.32.0", "voltage_sag_l1_count", "Number of voltage sags on phase L1", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage sags phase L1"),
    _S("1-0:52.32.0", "voltage_sag_l2_count", "Number of voltage sags on phase L2", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage sags phase L2"),
    _S("1-0:72.32.0", "voltage_sag_l3_count", "Number of voltage sags on phase L3", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage sags phase L3"),
    _S("1-0:32.36.0", "voltage_swell_l1_count", "Number of voltage swells on phase L1", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage swells phase L1"),
    _S("1-0:52.36.0", "voltage_swell_l2_count", "Number of voltage swells on phase L2", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage swells phase L2"),
    _S("1-0:72.36.0", "voltage_swell_l3_count", "Number of voltage swells on phase L3", _K.INTEGER, None, None, _TOTAL_INCREASING, _DIAG, False, _E, name="Voltage swells phase L3"),
    # --- messages ------------------------------------------------------------------------------
    _S("0-0:96.13.0", "text_message", "Text message from the grid operator", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message", icon="mdi:message-text-outline"),
    _S("0-0:96.13.1", "text_message_code", "Numeric message code (DSMR 2.2-4)", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message code"),
    _S("0-0:96.13.2", "text_message_2", "Text message 2 (Luxembourg)", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message 2"),
    _S("0-0:96.13.3", "text_message_3", "Text message 3 (Luxembourg)", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message 3"),
    _S("0-0:96.13.4", "text_message_4", "Text message 4 (Luxembourg)", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message 4"),
    _S("0-0:96.13.5", "text_message_5", "Text message 5 (Luxembourg)", _K.TEXT, None, None, None, _DIAG, False, _E, name="Text message 5"),
    # --- limits, breaker, Belgian capacity tariff ----------------------------------------------
    _S("0-0:17.0.0", "actual_threshold_electricity", "Power limit of the breaker (DSMR 3 meters print it in A)", _K.NUMBER, "kW", _POWER, _MEASUREMENT, _DIAG, False, _E, name="Power limit", no_limit_from=NO_LIMIT_FROM),
    _S("1-0:31.4.0", "fuse_threshold_l1", "Current limit on phase L1", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current limit phase L1", no_limit_from=NO_LIMIT_FROM),
    _S("1-0:51.4.0", "fuse_threshold_l2", "Current limit on phase L2", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current limit phase L2", no_limit_from=NO_LIMIT_FROM),
    _S("1-0:71.4.0", "fuse_threshold_l3", "Current limit on phase L3", _K.NUMBER, "A", _CURRENT, _MEASUREMENT, _DIAG, False, _E, name="Current limit phase L3", no_limit_from=NO_LIMIT_FROM),
    _S("1-1:31.4.0", "current_limit_import_export", "Import and export current limits (Luxembourg Smarty)", _K.NUMBER_LIST, "A", None, None, _DIAG, False, _E, name="Current limit"),
    _S("0-0:96.3.10", "actual_switch_position", "Breaker state (0 off, 1 on, 2 ready to switch on)", _K.INTEGER, None, None, None, _DIAG, False, _E, name="Breaker state", icon="mdi:electric-switch", options=BREAKER_STATES),
    _S("1-0:1.4.0", "belgium_current_average_demand", "Average import power of the running quarter-hour (Belgium)", _K.NUMBER, "kW", _POWER, _MEASUREMENT, None, True, _E, name="Current average demand"),
    _S("1-0:1.6.0", "belgium_maximum_demand_current_month", "Highest quarter-hour average this month, and when (Belgium)", _K.TIMESTAMPED_NUMBER, "kW", _POWER, _MEASUREMENT, None, True, _E, name="Maximum demand current month"),
    _S("0-0:98.1.0", "belgium_maximum_demand_13_months", "Monthly peak history of the last 13 months (Belgium); the Hungarian snapshot on this code is BILLING_SNAPSHOT_SPEC", _K.BILLING_HISTORY, "kW", None, None, _DIAG, False, _E, name="Maximum demand last 13 months"),
    # --- M-Bus sub-meters (n = channel 1-4) ----------------------------------------------------
    _S("0-n:24.1.0", "mbus_device_type", "M-Bus device type (3 gas, 4 heat, 7 water ...)", _K.INTEGER, None, None, None, _DIAG, False, _M, name="Device type", icon="mdi:format-list-bulleted-type", options=MBUS_DEVICE_TYPE_NAMES),
    _S("0-n:96.1.0", "mbus_equipment_identifier", "Equipment identifier of the M-Bus device", _K.STRING, None, None, None, _DIAG, False, _M, name="Equipment identifier"),
    _S("0-n:96.1.1", "mbus_equipment_identifier", "Equipment identifier of the M-Bus device (Belgium)", _K.STRING, None, None, None, _DIAG, False, _M, name="Equipment identifier"),
    _S("0-n:24.4.0", "mbus_valve_position", "Valve position of the M-Bus device", _K.INTEGER, None, None, None, _DIAG, False, _M, name="Valve position", icon="mdi:valve", options=VALVE_STATES),
    _S("0-n:96.3.10", "mbus_switch_position", "Breaker state of the M-Bus device (Luxembourg)", _K.INTEGER, None, None, None, _DIAG, False, _M, name="Breaker state", icon="mdi:electric-switch", options=BREAKER_STATES),
    _S("0-n:24.2.1", "mbus_meter_reading", "M-Bus device reading with its capture time", _K.TIMESTAMPED_NUMBER, None, None, _TOTAL_INCREASING, None, True, _M, name="Meter reading"),
    _S("0-n:24.2.3", "mbus_meter_reading", "M-Bus device reading, not temperature corrected (Belgian gas)", _K.TIMESTAMPED_NUMBER, None, None, _TOTAL_INCREASING, None, True, _M, name="Meter reading"),
    _S("0-n:24.3.0", "gas_meter_reading", "Gas reading in the two-line DSMR 2.2/3 form", _K.LEGACY_MBUS, "m3", _GAS, _TOTAL_INCREASING, None, True, _M, name="Gas consumption"),

)
# fmt: on

# fmt: off
#: EN 13757-3 device types a P1 meter reports for its M-Bus channels.
MBUS_DEVICE_TYPES: Mapping[int, MbusDeviceType] = MappingProxyType({
    row.code: row
    for row in (
        MbusDeviceType(2, "electricity", "Electricity sub-meter", "electricity_reading", _ENERGY, "kWh", reading_name="Energy consumption"),
        MbusDeviceType(3, "gas", "Gas meter", "gas_reading", _GAS, "m3", reading_name="Gas consumption"),
        MbusDeviceType(4, "heat", "Heat meter (outlet)", "heat_reading", _ENERGY, "GJ", "mdi:radiator", reading_name="Heat energy"),
        MbusDeviceType(6, "warm_water", "Warm water meter", "water_reading", _WATER, "m3", reading_name="Water consumption"),
        MbusDeviceType(7, "water", "Water meter", "water_reading", _WATER, "m3", reading_name="Water consumption"),
        MbusDeviceType(10, "cooling", "Cooling meter (outlet)", "cooling_reading", _ENERGY, "GJ", "mdi:snowflake", reading_name="Cooling energy"),
        MbusDeviceType(11, "cooling", "Cooling meter (inlet)", "cooling_reading", _ENERGY, "GJ", "mdi:snowflake", reading_name="Cooling energy"),
        MbusDeviceType(12, "heat", "Heat meter (inlet)", "heat_reading", _ENERGY, "GJ", "mdi:radiator", reading_name="Heat energy"),
        MbusDeviceType(13, "heat_cooling", "Heat/cooling meter", "heat_reading", _ENERGY, "GJ", "mdi:radiator", reading_name="Heat energy"),
        MbusDeviceType(21, "hot_water", "Hot water meter", "water_reading", _WATER, "m3", reading_name="Water consumption"),
        MbusDeviceType(22, "cold_water", "Cold water meter", "water_reading", _WATER, "m3", reading_name="Water consumption"),
    )
})
# fmt: on

#: M-Bus channels a `0-n:` row matches. DSMR allows 1-4; accepting up to 9 costs nothing.
MBUS_CHANNELS: tuple[int, ...] = tuple(range(1, 10))


def _build_table() -> Mapping[str, SensorSpec]:
    table: dict[str, SensorSpec] = {}
    for spec in _ROWS:
        assert spec.code is not None  # every row has one; derived values are not rows
        if spec.code in table:
            raise ValueError(f"OBIS code {spec.code} appears twice in the table")
        table[spec.code] = spec
    return MappingProxyType(table)


#: The table: OBIS code (``0-n:`` for M-Bus rows) -> its spec. Read-only.
OBIS_TABLE: Mapping[str, SensorSpec] = _build_table()

_BY_KEY: Mapping[str, SensorSpec] = MappingProxyType(
    {spec.key: spec for spec in reversed(list(OBIS_TABLE.values()))}
)


class CodeInfo(NamedTuple):
    """What the parser needs to know about an OBIS code as a meter wrote it."""

    spec: SensorSpec | None
    channel: int | None
    normalized: str


def _expand_codes() -> dict[str, CodeInfo]:
    """Every exact code the table matches, so the parser's common case is one dict lookup."""
    exact: dict[str, CodeInfo] = {}
    for code, spec in OBIS_TABLE.items():
        if code.startswith("0-n:"):
            rest = code[4:]
            for channel in MBUS_CHANNELS:
                concrete = f"0-{channel}:{rest}"
                exact[concrete] = CodeInfo(spec, channel, concrete)
        else:
            exact[code] = CodeInfo(spec, None, code)
    return exact


#: Every concrete code the table knows (M-Bus rows expanded per channel) -> CodeInfo. The parser
#: reads this directly for its common case; treat it as read-only.
KNOWN_CODES: dict[str, CodeInfo] = _expand_codes()
_EXACT = KNOWN_CODES

# Codes written in another form (`1-0:1.8.0*255`) resolve through a regex once, then from here.
# Bounded, because arbitrary input must not grow memory.
_NORMALIZED_CACHE_LIMIT = 1024
_normalized_cache: dict[str, CodeInfo] = {}

# A-B:C.D.E with an optional F group written as `*255` or `.255` (EasyMeter and others).
_OBIS_RE = re.compile(r"(\d{1,3})-(\d{1,3}):(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:[.*](\d{1,3}))?")


def is_obis_code(text: str) -> bool:
    """Whether `text` is an OBIS code as meters write it (with an optional `*255`/`.255`)."""
    return _OBIS_RE.fullmatch(text) is not None


def lookup_code(obis: str) -> CodeInfo:
    """Resolve an OBIS code as written (`1-0:1.8.1`, `0-2:24.2.1`, `1-0:1.8.0*255`).

    Returns the table row (None when the code is unknown), the M-Bus channel (only for
    ``0-n`` codes with n > 0) and the code in canonical ``A-B:C.D.E`` form.
    """
    info = _EXACT.get(obis) or _normalized_cache.get(obis)
    if info is not None:
        return info
    match = _OBIS_RE.fullmatch(obis.strip())
    if match is None:
        return CodeInfo(None, None, obis)
    a, b, c, d, e = (int(group) for group in match.groups()[:5])
    normalized = f"{a}-{b}:{c}.{d}.{e}"
    channel = b if a == 0 and b != 0 else None
    known = _EXACT.get(normalized)
    info = CodeInfo(None, channel, normalized) if known is None else known
    if len(_normalized_cache) < _NORMALIZED_CACHE_LIMIT:
        _normalized_cache[obis] = info
    return info


def _build_reading_specs() -> dict[tuple[str, int], SensorSpec]:
    specs: dict[tuple[str, int], SensorSpec] = {}
    for code, spec in OBIS_TABLE.items():
        if spec.key != "mbus_meter_reading":
            continue
        for device_type in MBUS_DEVICE_TYPES.values():
            specs[code, device_type.code] = dataclasses.replace(
                spec,
                key=device_type.reading_key,
                description=f"{device_type.description} reading with its capture time",
                unit=device_type.unit,
                device_class=device_type.device_class,
                icon=device_type.icon,
                name=device_type.reading_name,
            )
    return specs


_READING_SPECS = _build_reading_specs()


def reading_spec(spec: SensorSpec, device_type: int | None) -> SensorSpec:
    """The spec of an M-Bus reading once its channel's device type is known.

    A gas meter's `0-1:24.2.1` becomes `gas_reading` with device class `gas`, a water meter's
    `water_reading` with `water`, as in Home Assistant's DSMR integration. Unknown device types
    keep the generic `mbus_meter_reading` row.
    """
    if device_type is None or spec.code is None:
        return spec
    return _READING_SPECS.get((spec.code, device_type), spec)


#: `0-0:98.1.0` on Hungarian meters: not the Belgian peak history but a snapshot of the
#: registers at the end of the last billing period, `(time)(value*kWh)(value*kvarh)...(peak*kW)`
#: (E.ON's V5 telegram has 19 values, mostly kWh and kvarh). Same code, different meaning, so a
#: separate row: the parser picks it by the line's shape (the Belgian history starts with a
#: month count, the snapshot with a timestamp). No unit: the entries carry their own.
BILLING_SNAPSHOT_SPEC: SensorSpec = dataclasses.replace(
    OBIS_TABLE["0-0:98.1.0"],
    key="billing_snapshot",
    description="Register snapshot at the end of the last billing period (Hungary)",
    unit=None,
    name="Register snapshot at the end of the last billing period",
)


def spec_by_key(key: str) -> SensorSpec | None:
    """The table row for a key (the first row when two codes share one, as M-Bus ids do).

    Resolved M-Bus reading keys (`gas_reading`, `water_reading` ...) and the Hungarian
    `billing_snapshot` are found too.
    """
    spec = _BY_KEY.get(key)
    if spec is not None:
        return spec
    if key == BILLING_SNAPSHOT_SPEC.key:
        return BILLING_SNAPSHOT_SPEC
    for resolved in _READING_SPECS.values():
        if resolved.key == key:
            return resolved
    return None
