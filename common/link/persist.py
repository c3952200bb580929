"""What a link asks its runtime to keep across restarts (besides frame counters).

The transmitter keeps its last known good settings (a restart resumes there before falling
back to the rendezvous, so a reboot of the closet Pi does not cost a slow SF12 handshake), its
radio mode with the fixed settings, and the `set interval` value, because those were set by
command and a restart must not silently undo them. The receiver keeps its last known good
settings so that after its own restart it listens where the transmitter still talks.

Both also keep what binds a DISCOVER to the last confirmed session (docs/protocol.md, section
2): the transmitter the receiver's random of its last session (`binding`, sealed into its
DISCOVERs' associated data), the receiver that random and the one before it, each with the
highest DISCOVER counter seen under it (`discover`). Without them a reboot forgot which
DISCOVERs were replays, and a pool of replays kept the link down for hours. Files written
before these fields existed still load (no binding: as before the first handshake).

`as_dict`/`from_dict` give a JSON-friendly form; a damaged file raises ValueError with a clear
message, and the runtime then starts from defaults (losing only speed, never data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from p1lora.common.link.config import FixedRadio, RadioMode
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "DiscoverBinding",
    "RxPersistentState",
    "TxPersistentState",
    "settings_from_dict",
    "settings_to_dict",
]

#: Bytes of a binding (a session's receiver random, `crypto.RANDOM_SIZE`).
_BINDING_SIZE = 8


def settings_to_dict(settings: RadioSettings) -> dict[str, int]:
    return {
        "frequency_hz": settings.frequency_hz,
        "sf": settings.sf,
        "bw_hz": settings.bw_hz,
        "cr": settings.cr,
        "tx_power_dbm": settings.tx_power_dbm,
    }


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"saved link state: {key!r} must be an integer")
    return value


def settings_from_dict(data: Mapping[str, object]) -> RadioSettings:
    return RadioSettings(
        frequency_hz=_int(data, "frequency_hz"),
        sf=_int(data, "sf"),
        bw_hz=_int(data, "bw_hz"),
        cr=_int(data, "cr"),
        tx_power_dbm=_int(data, "tx_power_dbm"),
    )


def _binding(value: object, what: str) -> bytes:
    """A binding from its hex text ("" for none)."""
    if not isinstance(value, str):
        raise ValueError(f"saved link state: {what} must be a hex string")
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise ValueError(f"saved link state: {what} is not hex") from None
    if len(raw) not in (0, _BINDING_SIZE):
        raise ValueError(f"saved link state: {what} must be {_BINDING_SIZE} bytes or empty")
    return raw


@dataclass(frozen=True, slots=True)
class DiscoverBinding:
    """A session's receiver random (b"": no session yet) and the highest DISCOVER counter the
    receiver saw sealed under it (-1: none yet)."""

    binding: bytes
    floor: int = -1

    def as_dict(self) -> dict[str, object]:
        return {"binding": self.binding.hex(), "floor": self.floor}

    @classmethod
    def from_dict(cls, data: object) -> DiscoverBinding:
        if not isinstance(data, Mapping):
            raise ValueError("saved link state: a 'discover' entry must be an object")
        floor = _int(data, "floor")
        if not -1 <= floor < 1 << 32:
            raise ValueError(f"saved link state: DISCOVER floor {floor} is out of range")
        return cls(_binding(data.get("binding"), "a DISCOVER binding"), floor)


def _mapping(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    if not isinstance(value, Mapping):
        raise ValueError(f"saved link state: {key!r} must be an object")
    return value


@dataclass(frozen=True, slots=True)
class TxPersistentState:
    last_good: RadioSettings
    mode: RadioMode = RadioMode.AUTO
    fixed: FixedRadio | None = None
    interval_s: float = 0.0
    #: The receiver's random of the last session it confirmed (b"": none yet).
    binding: bytes = b""

    def as_dict(self) -> dict[str, object]:
        fixed = None
        if self.fixed is not None:
            fixed = {
                "sf": self.fixed.sf,
                "bw_hz": self.fixed.bw_hz,
                "tx_power_dbm": self.fixed.tx_power_dbm,
            }
        return {
            "last_good": settings_to_dict(self.last_good),
            "mode": self.mode.value,
            "fixed": fixed,
            "interval_s": self.interval_s,
            "binding": self.binding.hex(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> TxPersistentState:
        mode_text = data.get("mode", "auto")
        try:
            mode = RadioMode(str(mode_text))
        except ValueError:
            raise ValueError(f"saved link state: unknown radio mode {mode_text!r}") from None
        fixed = None
        fixed_data = data.get("fixed")
        if fixed_data is not None:
            if not isinstance(fixed_data, Mapping):
                raise ValueError("saved link state: 'fixed' must be an object")
            power = fixed_data.get("tx_power_dbm")
            if power is not None and (not isinstance(power, int) or isinstance(power, bool)):
                raise ValueError("saved link state: fixed 'tx_power_dbm' must be an integer")
            fixed = FixedRadio(_int(fixed_data, "sf"), _int(fixed_data, "bw_hz"), power)
        interval = data.get("interval_s", 0.0)
        if not isinstance(interval, int | float) or isinstance(interval, bool):
            raise ValueError("saved link state: 'interval_s' must be a number")
        if mode is RadioMode.FIXED and fixed is None:
            raise ValueError("saved link state: fixed mode without fixed settings")
        binding = _binding(data.get("binding", ""), "'binding'")
        return cls(
            settings_from_dict(_mapping(data, "last_good")), mode, fixed, float(interval), binding
        )


@dataclass(frozen=True, slots=True)
class RxPersistentState:
    last_good: RadioSettings
    #: The bindings DISCOVERs are checked against, newest first (empty: none yet).
    discover: tuple[DiscoverBinding, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "last_good": settings_to_dict(self.last_good),
            "discover": [entry.as_dict() for entry in self.discover],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RxPersistentState:
        entries = data.get("discover", [])
        if not isinstance(entries, list) or len(entries) > 4:
            raise ValueError("saved link state: 'discover' must be a list of at most 4 entries")
        discover = tuple(DiscoverBinding.from_dict(entry) for entry in entries)
        return cls(settings_from_dict(_mapping(data, "last_good")), discover)
