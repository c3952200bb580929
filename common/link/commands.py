"""Downlink commands (receiver -> transmitter) and their replies.

The closet Pi is hard to reach, so the receiver can ask it a few things over the link itself.
A command rides in the acknowledgements the receiver sends anyway (the ack is its only
transmit window), is repeated in every ack until the reply arrives, and is identified by an
8-bit command id so the transmitter executes it once and repeats its stored reply.

Text form (what a user or Home Assistant service types) and wire form:

| text                            | code | arguments on air                                  |
|---------------------------------|------|---------------------------------------------------|
| `info`                          | 0x01 | -                                                 |
| `retune`                        | 0x02 | -                                                 |
| `set interval S`                | 0x03 | u16 tenths of a second (0..3600 s)                |
| `set radio auto`                | 0x04 | -                                                 |
| `set radio fixed SF BW [POWER]` | 0x05 | u8 SF, u8 bandwidth index, i8 power (0x7F: none)  |
| `restart`                       | 0x06 | -                                                 |
| `log level L`                   | 0x07 | u8 level (0 debug, 1 info, 2 warning, 3 error)    |

Replies: u8 command id, u8 status (`ReplyStatus`), u16 check of the command answered
(`Command.check`: CRC-16/ARC of its wire form), then UTF-8 text (short; it costs airtime).
The check binds a reply to its command: the receiver takes a reply only for the queued command
with that id *and* that wire form, so a stored reply to an older command with the same id
(ids restart at 1 when the receiver restarts) never answers a new one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

from p1lora.common.crc16 import crc16_arc
from p1lora.common.radio_types import BANDWIDTHS_HZ

__all__ = [
    "LOG_LEVELS",
    "MAX_INTERVAL_S",
    "MAX_REPLY_TEXT",
    "Command",
    "CommandCode",
    "CommandSyntaxError",
    "ReplyStatus",
    "parse_command",
]

LOG_LEVELS: tuple[str, ...] = ("debug", "info", "warning", "error")
MAX_INTERVAL_S = 3600.0
#: Reply text is cut to this many bytes (a reply frame stays small at slow settings).
MAX_REPLY_TEXT = 96
_NO_POWER = 0x7F


class CommandSyntaxError(ValueError):
    """A command text or wire form that does not parse; the message says what is wrong."""


class CommandCode(IntEnum):
    INFO = 0x01
    RETUNE = 0x02
    SET_INTERVAL = 0x03
    SET_RADIO_AUTO = 0x04
    SET_RADIO_FIXED = 0x05
    RESTART = 0x06
    LOG_LEVEL = 0x07


class ReplyStatus(IntEnum):
    """Outcome of a command. TIMEOUT and UNKNOWN are decided by the receiver, never sent."""

    OK = 0
    ERROR = 1
    UNSUPPORTED = 2
    TIMEOUT = 3  # no reply within the command timeout
    UNKNOWN = 4  # the link was re-established after the command was sent; outcome unknown


@dataclass(frozen=True, slots=True)
class Command:
    """One downlink command; only the fields its code uses are set."""

    code: CommandCode
    interval_s: float | None = None
    sf: int | None = None
    bw_hz: int | None = None
    tx_power_dbm: int | None = None
    log_level: str | None = None

    def __post_init__(self) -> None:
        code = self.code
        if code is CommandCode.SET_INTERVAL and (
            self.interval_s is None or not 0 <= self.interval_s <= MAX_INTERVAL_S
        ):
            raise CommandSyntaxError(f"interval must be 0..{MAX_INTERVAL_S:g} seconds")
        if code is CommandCode.SET_RADIO_FIXED:
            if self.sf is None or not 7 <= self.sf <= 12:
                raise CommandSyntaxError("spreading factor must be 7..12")
            if self.bw_hz not in BANDWIDTHS_HZ:
                raise CommandSyntaxError(
                    "bandwidth must be one of "
                    + ", ".join(f"{b / 1000:g}" for b in BANDWIDTHS_HZ)
                    + " kHz"
                )
            if self.tx_power_dbm is not None and not -4 <= self.tx_power_dbm <= 20:
                raise CommandSyntaxError("TX power must be -4..20 dBm")
        if code is CommandCode.LOG_LEVEL and self.log_level not in LOG_LEVELS:
            raise CommandSyntaxError(f"log level must be one of {', '.join(LOG_LEVELS)}")

    def encode(self) -> bytes:
        """Code byte plus arguments (the command id is added by the ack that carries it)."""
        out = bytes((int(self.code),))
        if self.code is CommandCode.SET_INTERVAL:
            assert self.interval_s is not None
            out += round(self.interval_s * 10).to_bytes(2, "big")
        elif self.code is CommandCode.SET_RADIO_FIXED:
            assert self.sf is not None and self.bw_hz is not None
            power = _NO_POWER if self.tx_power_dbm is None else self.tx_power_dbm
            out += bytes((self.sf, BANDWIDTHS_HZ.index(self.bw_hz), power & 0xFF))
        elif self.code is CommandCode.LOG_LEVEL:
            assert self.log_level is not None
            out += bytes((LOG_LEVELS.index(self.log_level),))
        return out

    @classmethod
    def decode(cls, data: bytes) -> Command:
        """Parse the wire form; CommandSyntaxError when it is not exactly one command."""
        if not data:
            raise CommandSyntaxError("empty command")
        try:
            code = CommandCode(data[0])
        except ValueError:
            raise CommandSyntaxError(f"unknown command code {data[0]:#04x}") from None
        args = data[1:]
        expected = _ARG_SIZES[code]
        if len(args) != expected:
            raise CommandSyntaxError(f"{code.name} needs {expected} argument bytes")
        if code is CommandCode.SET_INTERVAL:
            return cls(code, interval_s=int.from_bytes(args, "big") / 10)
        if code is CommandCode.SET_RADIO_FIXED:
            if args[1] >= len(BANDWIDTHS_HZ):
                raise CommandSyntaxError(f"bandwidth index {args[1]} is out of range")
            power = None if args[2] == _NO_POWER else int.from_bytes(args[2:3], signed=True)
            return cls(code, sf=args[0], bw_hz=BANDWIDTHS_HZ[args[1]], tx_power_dbm=power)
        if code is CommandCode.LOG_LEVEL:
            if args[0] >= len(LOG_LEVELS):
                raise CommandSyntaxError(f"log level {args[0]} is out of range")
            return cls(code, log_level=LOG_LEVELS[args[0]])
        return cls(code)

    @property
    def check(self) -> int:
        """CRC-16/ARC of the wire form: a reply echoes it (see the module docstring)."""
        return crc16_arc(self.encode())

    def __str__(self) -> str:
        """The text form (round-trips through `parse_command`)."""
        if self.code is CommandCode.SET_INTERVAL:
            return f"set interval {self.interval_s:g}"
        if self.code is CommandCode.SET_RADIO_FIXED:
            assert self.bw_hz is not None
            power = "" if self.tx_power_dbm is None else f" {self.tx_power_dbm}"
            return f"set radio fixed {self.sf} {self.bw_hz / 1000:g}{power}"
        if self.code is CommandCode.LOG_LEVEL:
            return f"log level {self.log_level}"
        return _TEXT[self.code]


_ARG_SIZES = {
    CommandCode.INFO: 0,
    CommandCode.RETUNE: 0,
    CommandCode.SET_INTERVAL: 2,
    CommandCode.SET_RADIO_AUTO: 0,
    CommandCode.SET_RADIO_FIXED: 3,
    CommandCode.RESTART: 0,
    CommandCode.LOG_LEVEL: 1,
}
_TEXT = {
    CommandCode.INFO: "info",
    CommandCode.RETUNE: "retune",
    CommandCode.SET_RADIO_AUTO: "set radio auto",
    CommandCode.RESTART: "restart",
}
_USAGE = (
    "commands: info | retune | set interval SECONDS | set radio auto | "
    "set radio fixed SF BW_KHZ [POWER_DBM] | restart | log level debug|info|warning|error"
)


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise CommandSyntaxError(f"{what} {text!r} is not a number") from None
    if not math.isfinite(value):
        raise CommandSyntaxError(f"{what} must be finite")
    return value


def _integer(text: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise CommandSyntaxError(f"{what} {text!r} is not a whole number") from None


def parse_command(text: str) -> Command:
    """Parse the text form; CommandSyntaxError with the usage when it does not fit."""
    words = text.strip().lower().split()
    simple = {v: k for k, v in _TEXT.items()}
    joined = " ".join(words)
    if joined in simple:
        return Command(simple[joined])
    if words[:2] == ["set", "interval"] and len(words) == 3:
        return Command(CommandCode.SET_INTERVAL, interval_s=_number(words[2], "interval"))
    if words[:3] == ["set", "radio", "fixed"] and len(words) in (5, 6):
        bw_khz = _number(words[4], "bandwidth")
        power = _integer(words[5], "TX power") if len(words) == 6 else None
        return Command(
            CommandCode.SET_RADIO_FIXED,
            sf=_integer(words[3].removeprefix("sf"), "spreading factor"),
            bw_hz=round(bw_khz * 1000),
            tx_power_dbm=power,
        )
    if words[:2] == ["log", "level"] and len(words) == 3:
        return Command(CommandCode.LOG_LEVEL, log_level=words[2])
    raise CommandSyntaxError(f"unknown command {text.strip()!r}; {_USAGE}")
