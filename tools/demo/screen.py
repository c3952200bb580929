"""The live view: a full-screen picture of the demo on a terminal, redrawn from the top.

`render_screen` is pure (a `DemoView` in, at most `height` lines of at most `width` visible
characters out); `LiveScreen` owns the terminal's alternate screen while the demo runs, and
`logs_into_view` turns the demo's own log records into events meanwhile (a line printed to the
terminal would tear the picture). No curses: a screen is a list of lines, plain ANSI styles.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Final, TextIO

from p1lora.tools.demo.model import DemoState
from p1lora.tools.demo.text import clock, format_value, link_words, plural
from p1lora.tools.demo.views import DemoView, EntityView

__all__ = ["LiveScreen", "logs_into_view", "render_screen"]

#: A value that changed this recently is highlighted.
CHANGED_HIGHLIGHT_S: Final = 1.5

_STYLES: Final = {
    "": "",
    "bold": "\x1b[1m",
    "dim": "\x1b[2m",
    "green": "\x1b[32m",
    "yellow": "\x1b[33m",
    "red": "\x1b[31m",
    "cyan": "\x1b[36m",
    "reverse": "\x1b[7m",
}
_RESET: Final = "\x1b[0m"

Segment = tuple[str, str]
Line = list[Segment]


def _finish(line: Line, width: int, color: bool) -> str:
    """Cut a line of styled segments to `width` visible characters and apply the styles."""
    out: list[str] = []
    room = width
    for text, style in line:
        if room <= 0:
            break
        piece = text[:room]
        room -= len(piece)
        if color and style:
            codes = "".join(_STYLES[s] for s in style.split())
            out.append(f"{codes}{piece}{_RESET}")
        else:
            out.append(piece)
    return "".join(out)


def _state_style(state: str) -> str:
    if state == "running":
        return "green bold"
    if state in ("probing", "handshake", "resume", "switching"):
        return "yellow bold"
    return "red bold" if state in ("fallback", "rendezvous") else "bold"


def _header(view: DemoView) -> list[Line]:
    info = view.info
    title: Line = [
        ("p1-lora demo", "bold reverse"),
        (f"  {clock(view.elapsed)}  ", "bold"),
        (f"broker {info.broker}", ""),
        ("  Ctrl-C stops", "dim"),
    ]
    pipeline: Line = [
        (
            f"{info.meter} meter -> p1-lora-tx -> LoRa (simulated, {info.path_loss_db:g} dB) "
            "-> p1-lora-rx -> MQTT",
            "dim",
        )
    ]
    return [title, pipeline]


_INDENT: Final = "      "


def _link_block(view: DemoView) -> list[Line]:
    w = link_words(view)
    availability = view.availability or "unknown"
    last = f" (last: {view.last_radio})" if view.last_radio else ""
    lines: list[Line] = [
        [
            ("LINK  ", "bold cyan"),
            (f"{w['state']:<9}", _state_style(w["state"])),
            (f" {w['settings']} {w['power']}", "bold"),
            (f"  RSSI {w['rssi']}  SNR {w['snr']}", ""),
            (f"  bridge {availability}", "green" if availability == "online" else "yellow"),
        ],
        [
            (_INDENT, ""),
            (
                f"airtime {w['air_rx']} rx, {w['air_tx']} tx of the allowance  "
                f"loss {w['loss_rx']} rx, {w['loss_tx']} tx  rejected {w['rejected']}",
                "",
            ),
        ],
        [
            (_INDENT, ""),
            (f"handshakes {view.handshakes}, auto-tune steps {view.radio_changes}{last}", ""),
        ],
    ]
    if view.telegrams:
        first = view.first_telegram_at or 0.0
        ago = view.elapsed - (view.last_telegram_at or 0.0)
        delivery = (
            f"{plural(view.telegrams, 'telegram')} end to end (first after {first:.1f} s, "
            f"last {ago:.0f} s ago)"
        )
        if w["serial"] != "-":
            delivery += f"  P1 port {w['serial']}"
        style = "green"
    else:
        delivery = "no telegram end to end yet (the first handshake at SF12 takes a few seconds)"
        style = "yellow"
    lines.append([(_INDENT, ""), (delivery, style)])
    restarts = ", ".join(f"{name} {n}x" for name, n in sorted(view.restarts.items()))
    if restarts:
        lines.append([(_INDENT, ""), (f"restarted after exit code 4: {restarts}", "")])
    return lines


def _entity_cell(entity: EntityView, view: DemoView, name_w: int, value_w: int) -> Line:
    """`name  value unit` in a cell of `name_w + value_w + 3` characters."""
    value = format_value(entity, view.availability)
    changed = (
        entity.changed_at is not None and view.elapsed - entity.changed_at < CHANGED_HIGHLIGHT_S
    )
    name = entity.name if len(entity.name) <= name_w else entity.name[: name_w - 1] + "…"
    value = value if len(value) <= value_w else value[: value_w - 1] + "…"
    style = "bold green" if changed else ("dim" if value in ("unknown", "unavailable") else "")
    return [(name.ljust(name_w + 1), ""), (value.ljust(value_w + 2), style)]


def _shares(wanted: list[int], room: int) -> list[int]:
    """Split `room` rows among devices wanting `wanted` rows: everyone gets rows in turn, so a
    short terminal still shows a few values of every device."""
    given = [0] * len(wanted)
    while room > 0 and any(g < w for g, w in zip(given, wanted, strict=True)):
        for index, want in enumerate(wanted):
            if room > 0 and given[index] < want:
                given[index] += 1
                room -= 1
    return given


def _device_lines(view: DemoView, width: int, budget: int) -> list[Line]:
    """Devices with their enabled sensors, in columns, within `budget` lines."""
    if not view.devices:
        return [[("HOME ASSISTANT  ", "bold cyan"), ("waiting for discovery configs …", "yellow")]]
    lines: list[Line] = [
        [
            ("HOME ASSISTANT  ", "bold cyan"),
            (
                f"would discover {len(view.devices)} devices, {view.entity_count} entities "
                f"({view.enabled_count} enabled by default)",
                "",
            ),
        ]
    ]
    shown = {
        d.identifier: [e for e in d.enabled_entities if e.component == "sensor"]
        for d in view.devices
        if not d.is_bridge  # the bridge's diagnostics are the LINK block
    }
    every = [e for entities in shown.values() for e in entities]
    values = [len(format_value(e, view.availability)) for e in every]
    name_w = min(max((len(e.name) for e in every), default=10), 32, width - 16)
    value_w = min(max(values, default=8), 18)
    columns = max(1, min(3, (width - 4) // (name_w + value_w + 3)))
    rows = [-(-len(shown.get(d.identifier, [])) // columns) for d in view.devices]
    given = _shares(rows, budget - 1 - len(view.devices))
    for device, allowed in zip(view.devices, given, strict=True):
        entities = shown.get(device.identifier, [])
        hidden = len(entities) - allowed * columns
        lines.append(
            [
                ("  ", ""),
                (device.label(), "bold"),
                (f"  {len(device.enabled_entities)} of {len(device.entities)} enabled", "dim"),
                (f", {hidden} not shown" if hidden > 0 else "", "dim"),
            ]
        )
        for row in range(allowed):
            line: Line = [("    ", "")]
            for entity in entities[row * columns : (row + 1) * columns]:
                line.extend(_entity_cell(entity, view, name_w, value_w))
            lines.append(line)
    return lines[:budget]


def _event_lines(view: DemoView, budget: int) -> list[Line]:
    if budget <= 1:
        return []
    lines: list[Line] = [[("EVENTS", "bold cyan"), ("  handshake, auto-tune, warnings", "dim")]]
    for event in list(view.events)[-(budget - 1) :]:
        style = "red" if event.level >= logging.ERROR else "yellow" if event.level >= 30 else ""
        lines.append(
            [
                (f"  +{event.at:6.1f}s ", "dim"),
                (f"{event.source:<6} ", "bold"),
                (event.text, style),
            ]
        )
    return lines


def render_screen(view: DemoView, width: int, height: int, *, color: bool = True) -> list[str]:
    """The live view as at most `height` lines of at most `width` visible characters."""
    cut = max(1, width)
    width = max(40, width)  # the layout's minimum; lines are still cut to the real width
    height = max(1, height)
    top = [*_header(view), [], *_link_block(view), []]
    footer: list[Line] = []
    if view.info.workdir:
        footer = [[(f"logs: {view.info.workdir}", "dim")]]
    room = height - len(top) - len(footer)
    events_wanted = min(len(view.events) + 1, max(4, room // 3))
    device_budget = max(1, room - events_wanted - 1)
    devices = _device_lines(view, width, device_budget)
    events = _event_lines(view, room - len(devices) - 1)
    body = [*top, *devices, *([[]] if events else []), *events, *footer]
    return [_finish(line, cut, color) for line in body[:height]]


class LiveScreen:
    """The live view: the terminal's alternate screen, redrawn from the top (no curses)."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.active = False

    def __enter__(self) -> LiveScreen:
        self._write("\x1b[?1049h\x1b[?25l")
        self.active = True
        return self

    def draw(self, lines: list[str]) -> None:
        self._write("\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")

    def __exit__(self, *exc_info: object) -> None:
        if self.active:
            self._write("\x1b[?25h\x1b[?1049l")
            self.active = False

    def _write(self, text: str) -> None:
        # A closed terminal (SIGHUP) must not turn the orderly stop into a traceback.
        with contextlib.suppress(OSError):
            self.stream.write(text)
            self.stream.flush()


class _EventHandler(logging.Handler):
    """While the live view owns the terminal, log records become events in the view."""

    def __init__(self, state: DemoState) -> None:
        super().__init__(logging.INFO)
        self._state = state

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._state.note(record.getMessage(), time.monotonic(), level=record.levelno)
        except Exception:  # noqa: BLE001 - a log handler must never raise
            self.handleError(record)


@contextlib.contextmanager
def logs_into_view(state: DemoState) -> Iterator[None]:
    """The demo's own log records go to the event list instead of stderr meanwhile."""
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers[:] = [_EventHandler(state)]
    try:
        yield
    finally:
        root.handlers[:] = saved
