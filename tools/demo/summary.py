"""The end of a run: how it ended (`DemoResult`), for people (`summary_lines`) and as JSON
(`summary_dict`, `p1-lora demo --json`)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from p1lora.tools.demo.text import link_words
from p1lora.tools.demo.views import DemoView

__all__ = ["DemoResult", "summary_dict", "summary_lines"]


@dataclass(frozen=True, slots=True)
class DemoResult:
    """How the run ended: its problems (a component that failed) and how it was stopped."""

    stopped_by: str
    problems: tuple[str, ...] = ()
    cleaned_up: int | None = None

    def ok(self, view: DemoView) -> bool:
        """Success: telegrams went end to end and nothing failed."""
        return view.telegrams > 0 and not self.problems


def summary_dict(view: DemoView, result: DemoResult) -> dict[str, Any]:
    """The run's outcome as plain JSON types (`p1-lora demo --json`)."""
    b = view.bridge

    def plain(value: object) -> object:
        return float(value) if isinstance(value, Decimal) else value

    return {
        "ok": result.ok(view),
        "stopped_by": result.stopped_by,
        "duration_s": round(view.elapsed, 1),
        "broker": view.info.broker,
        "meter": view.info.meter,
        "path_loss_db": view.info.path_loss_db,
        "telegrams_delivered": view.telegrams,
        "first_telegram_after_s": None
        if view.first_telegram_at is None
        else round(view.first_telegram_at, 1),
        "link": {
            "state": view.link_state,
            "settings": view.settings,
            "tx_power_dbm": plain(view.tx_power_dbm),
            "rssi_dbm": plain(b.get("rssi")),
            "snr_db": plain(b.get("snr")),
            "airtime_used_percent": plain(b.get("airtime_used")),
            "transmitter_airtime_used_percent": plain(b.get("transmitter_airtime_used")),
            "packet_loss_percent": plain(b.get("packet_loss")),
            "frames_rejected": plain(b.get("frames_rejected")),
            "handshakes": view.handshakes,
            "auto_tune_steps": view.radio_changes,
        },
        "home_assistant": {
            "devices": [
                {
                    "name": d.name,
                    "label": d.label(),
                    "entities": len(d.entities),
                    "enabled": len(d.enabled_entities),
                }
                for d in view.devices
            ],
            "entities": view.entity_count,
        },
        "receiver_marked_offline": view.offline_seen,
        "restarts": dict(view.restarts),
        "warnings": view.warnings,
        "problems": list(result.problems),
        "retained_topics_removed": result.cleaned_up,
    }


def summary_lines(view: DemoView, result: DemoResult) -> list[str]:
    """The run's outcome for people."""
    w = link_words(view)
    first = (
        ""
        if view.first_telegram_at is None
        else f" (the first after {view.first_telegram_at:.1f} s)"
    )
    lines = [
        f"p1-lora demo: {view.elapsed:.0f} s, broker {view.info.broker}, stopped by "
        f"{result.stopped_by}",
        f"  telegrams delivered end to end: {view.telegrams}{first}",
        f"  link: {w['state']} at {w['settings']} {w['power']}, RSSI {w['rssi']}, "
        f"SNR {w['snr']}; {view.handshakes} handshake(s), {view.radio_changes} auto-tune step(s)",
        f"  airtime used: {w['air_rx']} (receiver), {w['air_tx']} (transmitter) of the hourly "
        f"allowance; packet loss {w['loss_rx']}; frames rejected {w['rejected']}",
        f"  Home Assistant would discover: {len(view.devices)} device(s), "
        f"{view.entity_count} entities ({view.enabled_count} enabled by default)",
    ]
    lines.extend(f"    {d.label()}: {len(d.entities)} entities" for d in view.devices)
    lines.append(
        "  receiver marked itself offline at the end: "
        + ("yes" if view.offline_seen else "not seen")
    )
    if view.restarts:
        restarts = ", ".join(f"{n} x {name}" for name, n in sorted(view.restarts.items()))
        lines.append(f"  restarted after exit code 4: {restarts}")
    if result.cleaned_up is not None:
        lines.append(f"  removed {result.cleaned_up} retained topic(s) from the broker")
    lines.extend(f"  problem: {p}" for p in result.problems)
    lines.append(
        "  result: OK, telegrams went end to end"
        if result.ok(view)
        else "  result: FAILED, "
        + ("see the problems above" if result.problems else "no telegram arrived end to end")
    )
    return lines
