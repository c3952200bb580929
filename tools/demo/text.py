"""Words for a `DemoView`: values as Home Assistant shows them, and the plain lines the demo
prints when stdout is not a terminal (one per event, a status line every few seconds)."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, Final

from p1lora.tools.demo.views import DemoView, DeviceView, EntityView, LogEvent

__all__ = [
    "clock",
    "discovery_line",
    "event_line",
    "format_value",
    "link_words",
    "meter_words",
    "plural",
    "settings_label",
    "status_line",
]

_CLOCK_TIME: Final = re.compile(r"T(\d\d:\d\d:\d\d)")


def _fmt_number(value: object, digits: int | None = None) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    if digits is None:
        return str(value)
    return f"{float(value):.{digits}f}"


def format_value(entity: EntityView, availability: str | None) -> str:
    """An entity's state as Home Assistant would show it (`unavailable`, `unknown`, `1.2 kW`)."""
    if availability == "offline":
        return "unavailable"
    if entity.component == "button":
        return "(button)"
    if not entity.has_value or entity.value is None:
        return "unknown"
    value = entity.value
    if isinstance(value, dict | list):
        return json.dumps(value, default=str)[:40]
    text = _fmt_number(value) or str(value)
    return f"{text} {entity.unit}" if entity.unit else text


def _num(bridge: Mapping[str, Any], key: str, digits: int, unit: str, missing: str = "-") -> str:
    text = _fmt_number(bridge.get(key), digits)
    return missing if text is None else f"{text} {unit}".rstrip()


def settings_label(bridge: Mapping[str, Any]) -> str | None:
    """`SF7/BW250` from the bridge's state (the label the link's own records use)."""
    sf, bw = bridge.get("spreading_factor"), bridge.get("bandwidth")
    if sf is None or bw is None:
        return None
    bw_text = _fmt_number(bw, 0) or str(bw)
    return f"SF{sf}/BW{bw_text}"


def link_words(view: DemoView) -> dict[str, str]:
    """The link's figures as short words (`-` for what is not known yet)."""
    b = view.bridge
    return {
        "state": view.link_state or "starting",
        "settings": view.settings or "-",
        "power": _num({"p": view.tx_power_dbm}, "p", 0, "dBm"),
        "rssi": _num(b, "rssi", 0, "dBm"),
        "snr": _num(b, "snr", 1, "dB"),
        "air_rx": _num(b, "airtime_used", 1, "%"),
        "air_tx": _num(b, "transmitter_airtime_used", 1, "%"),
        "loss_rx": _num(b, "packet_loss", 0, "%"),
        "loss_tx": _num(b, "transmitter_packet_loss", 0, "%"),
        "rejected": str(b.get("frames_rejected") or 0),
        "serial": str(b.get("serial_state") or "-"),
    }


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def clock(seconds: float) -> str:
    """`01:05`, or `1:00:05` from an hour on."""
    whole = int(seconds)
    if whole < 3600:
        return f"{whole // 60:02d}:{whole % 60:02d}"
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def event_line(event: LogEvent) -> str:
    """A plain line for one event: `[+  3.2s] tx      rendezvous -> running (handshake complete)`."""
    level = "" if event.level < logging.WARNING else logging.getLevelName(event.level) + " "
    return f"[+{event.at:6.1f}s] {event.source:<6} {level}{event.text}"


def status_line(view: DemoView) -> str:
    """One plain line with the link, delivery and meter state (non-terminal output).

    Made to show progress from one line to the next: the telegram count and the age of the
    last one, the meter's own clock, power in both directions (the virtual meter's solar panels
    export while the import reads 0.000 kW), and the energy registers with every digit the
    meter sends (they move by a few watt-hours, which rounding would hide).
    """
    w = link_words(view)
    parts = [
        f"[{clock(view.elapsed)}] link {w['state']} {w['settings']} {w['power']}",
        f"RSSI {w['rssi']}, SNR {w['snr']}",
        f"airtime {w['air_rx']} (rx) / {w['air_tx']} (tx) of the hourly allowance",
        f"loss {w['loss_rx']}",
        _delivery_words(view),
    ]
    meter = meter_words(view)
    if meter is not None:
        parts.append(meter)
    return "; ".join(parts)


def _delivery_words(view: DemoView) -> str:
    text = f"{view.telegrams} telegram(s) end to end"
    if view.telegrams and view.last_telegram_at is not None:
        text += f" (last {max(0.0, view.elapsed - view.last_telegram_at):.0f} s ago)"
    return text


def _meter_entities(view: DemoView) -> dict[str, EntityView]:
    """The meters' entities by value key (the bridge's own are left out)."""
    found: dict[str, EntityView] = {}
    for device in view.devices:
        if device.is_bridge:
            continue
        for entity in device.entities:
            if entity.value_key is not None and entity.has_value:
                found.setdefault(entity.value_key, entity)
    return found


def meter_words(view: DemoView) -> str | None:
    """`meter 12:00:01: import 0.000 kW, export 1.651 kW, energy in 13920.164 kWh, out
    3731.876 kWh`; None before the first meter values."""
    entities = _meter_entities(view)
    if not entities:
        return None
    if view.availability == "offline":
        return "meter unavailable (bridge offline)"
    stamp = entities.get("timestamp")
    meter_clock = _CLOCK_TIME.search(str(stamp.value)) if stamp is not None else None
    words: list[str] = []
    for label, key in (
        ("import", "current_electricity_usage"),
        ("export", "current_electricity_delivery"),
    ):
        entity = entities.get(key)
        if entity is not None:
            words.append(f"{label} {format_value(entity, view.availability)}")
    # The bridge's own totals (all tariffs): unknown, like in Home Assistant, when a register
    # could not be read, never a partial sum.
    energy = [
        f"{direction} {format_value(entity, view.availability)}"
        for direction, key in (("in", "total_energy_import"), ("out", "total_energy_export"))
        if (entity := entities.get(key)) is not None
    ]
    if energy:
        words.append("energy " + ", ".join(energy))
    head = f"meter {meter_clock.group(1)}" if meter_clock is not None else "meter"
    return f"{head}: {', '.join(words)}" if words else None


def discovery_line(device: DeviceView) -> str:
    """A plain line for a newly discovered device."""
    return (
        f"Home Assistant would discover {device.label()}: {len(device.entities)} entities, "
        f"{len(device.enabled_entities)} enabled by default"
    )
