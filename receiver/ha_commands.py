"""Commands for the transmitter from MQTT: the JSON contract, its validation, and the results.

The closet Pi is hard to reach, so `p1-lora-rx` lets users (and Home Assistant's buttons and
select) send it the downlink commands of `p1lora.common.link.commands` over MQTT. One topic,
`<base>/command`, takes a JSON object; answers go to `<base>/command/reply` (not retained) and
the latest one also appears in Home Assistant as the "Last command" sensor:

| JSON                                                             | link command           |
|------------------------------------------------------------------|------------------------|
| `{"cmd": "info"}`                                                | `info`                 |
| `{"cmd": "retune"}`                                              | `retune`               |
| `{"cmd": "set_interval", "seconds": 10}`                         | `set interval 10`      |
| `{"cmd": "radio", "mode": "auto"}`                               | `set radio auto`       |
| `{"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 250, "power": 14}` | `set radio fixed 7 250 14` |
| `{"cmd": "radio", "option": "SF9/BW125"}` (what the select sends) | `set radio fixed 9 125` |
| `{"cmd": "restart"}`                                             | `restart`              |
| `{"cmd": "log_level", "level": "debug"}`                         | `log level debug`      |

Every object may carry `"id"` (a string of at most 64 characters or an integer), echoed in every
reply about that request, and `"source"` (free text, shown in the result). Anything else is
refused with a message that says what is wrong: an unknown command or field, a value out of
range, or a radio setting the configured region and sub-band do not allow (the same list the
Home Assistant select offers), so a typo never costs a round trip over the air.

A request goes through these states, each published as a reply: `queued` (it waits for the
next acknowledgement the receiver sends, the only moment it may transmit), then `ok`, `error`
or `unsupported` as the transmitter answers, or `timeout` (no answer within the link's command
timeout) or `unknown` (the link was re-established after it was sent, e.g. by `restart`).
`rejected` means it never left the receiver.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link.commands import (
    LOG_LEVELS,
    MAX_INTERVAL_S,
    Command,
    CommandCode,
    CommandSyntaxError,
    ReplyStatus,
)
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.tuning import DEMODULATION_FLOOR_DB, TYPICAL_FRAME_BYTES
from p1lora.common.radio_types import BANDWIDTHS_HZ
from p1lora.common.regions import RegionError

__all__ = [
    "AUTO_OPTION",
    "COMMAND_LEVEL",
    "MAX_PAYLOAD_BYTES",
    "MAX_STATE_CHARS",
    "QUEUED",
    "REJECTED",
    "REPLY_LEVEL",
    "STATUS_NAMES",
    "CommandRejected",
    "CommandRequest",
    "CommandResult",
    "legal_fixed_settings",
    "parse_command_payload",
    "parse_radio_option",
    "radio_option_label",
]

#: `<base>/command` takes requests; `<base>/command/reply` carries the answers.
COMMAND_LEVEL = "command"
REPLY_LEVEL = "command/reply"
#: The select option for automatic tuning.
AUTO_OPTION = "auto"
#: A command is a small JSON object; anything bigger is refused unread.
MAX_PAYLOAD_BYTES = 4096
_MAX_ID_CHARS = 64
_MAX_SOURCE_CHARS = 64
#: The bandwidths auto-tune uses; fixed settings are offered from the same set.
_FIXED_BANDWIDTHS_HZ = (125_000, 250_000, 500_000)
_COMMON_FIELDS = frozenset({"cmd", "id", "source"})

RequestId = str | int | None


class CommandRejected(ValueError):  # noqa: N818 - a result users see, not a bug
    """A request that cannot be sent; `str()` is the message for the user, `request_id` the
    id to echo (None when the request had none or it was unusable)."""

    def __init__(self, message: str, request_id: RequestId = None) -> None:
        super().__init__(message)
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class CommandRequest:
    """A validated request: the link command plus what the reply must echo."""

    command: Command
    cmd: str
    request_id: RequestId = None
    source: str | None = None


# ---------------------------------------------------------------------------- radio options


def radio_option_label(sf: int, bw_hz: int) -> str:
    """The select option for a fixed setting, spelled like `RadioSettings.label()`."""
    return f"SF{sf}/BW{bw_hz / 1000:g}"


def legal_fixed_settings(config: LinkConfig) -> tuple[tuple[int, int], ...]:
    """The (SF, bandwidth) pairs a user may fix on this link, fastest first.

    Legal means what auto-tune itself would consider: the bandwidth fits the sub-band around
    the channel and its maximum, and a typical update respects the sub-band's dwell limit.
    Unlike auto-tune's ladder, slower-but-not-more-sensitive settings stay in the list: a
    user may have a reason to pick SF7/BW125.
    """
    band = config.sub_band()
    found: list[tuple[float, int, int]] = []
    for sf in DEMODULATION_FLOOR_DB:
        for bw in _FIXED_BANDWIDTHS_HZ:
            if bw > band.max_bw_hz or not band.contains(config.channel_hz, bw):
                continue
            settings = config.settings(sf, bw, min(config.max_tx_power(), band.max_tx_power_dbm))
            try:
                config.region.check(settings)
            except RegionError:
                continue
            airtime = time_on_air_for(settings, TYPICAL_FRAME_BYTES)
            if band.max_dwell_s is not None and airtime > band.max_dwell_s:
                continue
            found.append((airtime, sf, bw))
    return tuple((sf, bw) for _, sf, bw in sorted(found))


def parse_radio_option(text: str) -> tuple[int, int] | None:
    """`"SF9/BW125"` -> (9, 125000); `"auto"` -> None. ValueError for anything else."""
    cleaned = text.strip().upper().replace(" ", "")
    if cleaned == AUTO_OPTION.upper():
        return None
    sf_text, sep, bw_text = cleaned.partition("/")
    if not sep or not sf_text.startswith("SF") or not bw_text.startswith("BW"):
        raise ValueError(f"radio option {text!r} is not 'auto' or like 'SF9/BW125'")
    try:
        sf = int(sf_text[2:])
        bw_khz = float(bw_text[2:])
    except ValueError:
        raise ValueError(f"radio option {text!r} is not 'auto' or like 'SF9/BW125'") from None
    if not math.isfinite(bw_khz):
        raise ValueError(f"radio option {text!r} has no usable bandwidth")
    return sf, round(bw_khz * 1000)


# ---------------------------------------------------------------------------- field readers


def _integer(obj: Mapping[str, Any], name: str, *, required: bool = True) -> int | None:
    value = obj.get(name)
    if value is None:
        if required:
            raise CommandRejected(f'"{name}" is required')
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRejected(f'"{name}" must be a whole number, not {json.dumps(value)}')
    if isinstance(value, float) and not value.is_integer():
        raise CommandRejected(f'"{name}" must be a whole number, not {value:g}')
    return int(value)


def _number(obj: Mapping[str, Any], name: str) -> float:
    value = obj.get(name)
    if value is None:
        raise CommandRejected(f'"{name}" is required')
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandRejected(f'"{name}" must be a number, not {json.dumps(value)}')
    if not math.isfinite(value):
        raise CommandRejected(f'"{name}" must be a finite number')
    return float(value)


def _text(obj: Mapping[str, Any], name: str) -> str:
    value = obj.get(name)
    if value is None:
        raise CommandRejected(f'"{name}" is required')
    if not isinstance(value, str):
        raise CommandRejected(f'"{name}" must be a string, not {json.dumps(value)}')
    return value.strip().lower()


# ---------------------------------------------------------------------------- per command


def _info(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    return Command(CommandCode.INFO)


def _retune(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    return Command(CommandCode.RETUNE)


def _restart(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    return Command(CommandCode.RESTART)


def _set_interval(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    seconds = _number(obj, "seconds")
    if not 0 <= seconds <= MAX_INTERVAL_S:
        raise CommandRejected(f'"seconds" must be 0..{MAX_INTERVAL_S:g}, not {seconds:g}')
    return Command(CommandCode.SET_INTERVAL, interval_s=seconds)


def _log_level(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    level = _text(obj, "level")
    if level not in LOG_LEVELS:
        raise CommandRejected(f'"level" must be one of {", ".join(LOG_LEVELS)}, not "{level}"')
    return Command(CommandCode.LOG_LEVEL, log_level=level)


def _check_legal(sf: int, bw_hz: int, power: int | None, link: LinkConfig | None) -> None:
    """Refuse settings the region does not allow before they cost a round trip over the air."""
    if link is None:
        return
    legal = legal_fixed_settings(link)
    if (sf, bw_hz) not in legal:
        offered = ", ".join(radio_option_label(s, b) for s, b in legal)
        raise CommandRejected(
            f"{radio_option_label(sf, bw_hz)} is not allowed on {link.channel_hz / 1e6:.3f} MHz "
            f"in {link.region.name} ({link.sub_band().name}); allowed: {offered}"
        )
    band = link.sub_band()
    if power is not None and power > band.max_tx_power_dbm:
        raise CommandRejected(
            f'"power" {power} dBm exceeds the {band.max_tx_power_dbm} dBm allowed in {band.name}'
        )


def _radio(obj: Mapping[str, Any], link: LinkConfig | None) -> Command:
    option = obj.get("option")
    if option is not None:
        if "mode" in obj or "sf" in obj or "bw" in obj or "power" in obj:
            raise CommandRejected('give either "option" or "mode" (with "sf", "bw"), not both')
        if not isinstance(option, str):
            raise CommandRejected(f'"option" must be a string, not {json.dumps(option)}')
        try:
            parsed = parse_radio_option(option)
        except ValueError as exc:
            raise CommandRejected(str(exc)) from None
        if parsed is None:
            return Command(CommandCode.SET_RADIO_AUTO)
        sf, bw_hz = parsed
        power = None
    else:
        mode = _text(obj, "mode")
        if mode == AUTO_OPTION:
            extra = sorted(set(obj) & {"sf", "bw", "power"})
            if extra:
                raise CommandRejected(f'mode "auto" takes no {", ".join(extra)}')
            return Command(CommandCode.SET_RADIO_AUTO)
        if mode != "fixed":
            raise CommandRejected(f'"mode" must be "auto" or "fixed", not "{mode}"')
        sf_value = _integer(obj, "sf")
        assert sf_value is not None  # required=True raises instead
        sf = sf_value
        bw_hz = round(_number(obj, "bw") * 1000)
        power = _integer(obj, "power", required=False)
    if bw_hz not in BANDWIDTHS_HZ:
        raise CommandRejected(
            '"bw" must be a LoRa bandwidth in kHz ('
            + ", ".join(f"{b / 1000:g}" for b in BANDWIDTHS_HZ)
            + ")"
        )
    try:
        command = Command(CommandCode.SET_RADIO_FIXED, sf=sf, bw_hz=bw_hz, tx_power_dbm=power)
    except CommandSyntaxError as exc:
        raise CommandRejected(str(exc)) from None
    _check_legal(sf, bw_hz, power, link)
    return command


_Builder = Callable[[Mapping[str, Any], LinkConfig | None], Command]

#: cmd -> (fields it takes besides cmd/id/source, how to build the link command).
_COMMANDS: Mapping[str, tuple[frozenset[str], _Builder]] = {
    "info": (frozenset(), _info),
    "retune": (frozenset(), _retune),
    "restart": (frozenset(), _restart),
    "set_interval": (frozenset({"seconds"}), _set_interval),
    "radio": (frozenset({"mode", "sf", "bw", "power", "option"}), _radio),
    "log_level": (frozenset({"level"}), _log_level),
}


def _request_id(obj: Mapping[str, Any]) -> RequestId:
    value = obj.get("id")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise CommandRejected('"id" must be a string or an integer')
    if isinstance(value, str) and len(value) > _MAX_ID_CHARS:
        raise CommandRejected(f'"id" must be at most {_MAX_ID_CHARS} characters')
    return value


def parse_command_payload(payload: bytes, link: LinkConfig | None = None) -> CommandRequest:
    """Validate one message from the command topic; `CommandRejected` says what is wrong.

    With `link`, fixed radio settings are checked against its region and sub-band.
    """
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise CommandRejected(f"command is {len(payload)} bytes; at most {MAX_PAYLOAD_BYTES}")
    try:
        obj = json.loads(payload.decode("utf-8"))
    except UnicodeDecodeError:
        raise CommandRejected("command is not UTF-8 text") from None
    except ValueError as exc:
        raise CommandRejected(f"command is not valid JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CommandRejected('command must be a JSON object such as {"cmd": "info"}')
    request_id = _request_id(obj)
    try:
        cmd = obj.get("cmd")
        if not isinstance(cmd, str) or cmd.strip().lower() not in _COMMANDS:
            known = ", ".join(_COMMANDS)
            shown = json.dumps(cmd) if cmd is not None else "missing"
            raise CommandRejected(f'"cmd" is {shown}; it must be one of {known}')
        cmd = cmd.strip().lower()
        fields, build = _COMMANDS[cmd]
        unknown = sorted(set(obj) - fields - _COMMON_FIELDS)
        if unknown:
            allowed = ", ".join(sorted(fields)) or "no other fields"
            raise CommandRejected(
                f'"{cmd}" does not take {", ".join(unknown)} (it takes {allowed})'
            )
        source = obj.get("source")
        if source is not None and (not isinstance(source, str) or len(source) > _MAX_SOURCE_CHARS):
            raise CommandRejected(
                f'"source" must be a string of at most {_MAX_SOURCE_CHARS} characters'
            )
        command = build(obj, link)
    except CommandRejected as exc:
        raise CommandRejected(str(exc), request_id) from None
    except CommandSyntaxError as exc:
        raise CommandRejected(str(exc), request_id) from None
    return CommandRequest(command, cmd, request_id, source)


# ---------------------------------------------------------------------------- results

#: Outcome names as they appear in replies and in Home Assistant.
STATUS_NAMES: Mapping[ReplyStatus, str] = {
    ReplyStatus.OK: "ok",
    ReplyStatus.ERROR: "error",
    ReplyStatus.UNSUPPORTED: "unsupported",
    ReplyStatus.TIMEOUT: "timeout",
    ReplyStatus.UNKNOWN: "unknown",
}
QUEUED = "queued"
REJECTED = "rejected"
#: Home Assistant refuses sensor states longer than this.
MAX_STATE_CHARS = 255


@dataclass(frozen=True, slots=True)
class CommandResult:
    """Where one request stands; the reply payload and the "Last command" sensor both come
    from here. `at` is wall-clock time (Unix seconds) of this status."""

    status: str
    cmd: str | None
    command: str | None
    text: str = ""
    request_id: RequestId = None
    source: str | None = None
    command_id: int | None = None
    at: float = 0.0
    extra: Mapping[str, object] = field(default_factory=dict)

    def reply(self) -> dict[str, object]:
        """The JSON object published on `<base>/command/reply`."""
        out: dict[str, object] = {
            "id": self.request_id,
            "cmd": self.cmd,
            "command": self.command,
            "status": self.status,
        }
        if self.status == REJECTED:
            out["error"] = self.text
        else:
            out["text"] = self.text
        if self.command_id is not None:
            out["command_id"] = self.command_id
        if self.source is not None:
            out["source"] = self.source
        out.update(self.extra)
        return out

    def summary(self) -> str:
        """One line for the sensor state: `retune: ok (retuning to SF7/BW250)`."""
        what = self.command or self.cmd or "command"
        line = f"{what}: {self.status}"
        if self.text:
            line += f" ({self.text})"
        if len(line) > MAX_STATE_CHARS:
            line = line[: MAX_STATE_CHARS - 3] + "..."
        return line
