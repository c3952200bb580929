"""What a link asks its runtime to keep across restarts (besides frame counters).

The transmitter keeps its last known good settings (a restart resumes there before falling
back to the rendezvous, so a reboot of the closet Pi does not cost a slow SF12 handshake), its
radio mode with the fixed settings, and the `set interval` value, because those were set by
command and a restart must not silently undo them. The receiver keeps its last known good
settings so that after its own restart it listens where the transmitter still talks.

`as_dict`/`from_dict` give a JSON-friendly form; a damaged file raises ValueError with a clear
message, and the runtime then starts from defaults (losing only speed, never data).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from p1lora.common.link.config import FixedRadio, RadioMode
from p1lora.common.radio_types import RadioSettings

__all__ = ["RxPersistentState", "TxPersistentState", "settings_from_dict", "settings_to_dict"]


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
        return cls(settings_from_dict(_mapping(data, "last_good")), mode, fixed, float(interval))


@dataclass(frozen=True, slots=True)
class RxPersistentState:
    last_good: RadioSettings

    def as_dict(self) -> dict[str, object]:
        return {"last_good": settings_to_dict(self.last_good)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> RxPersistentState:
        return cls(settings_from_dict(_mapping(data, "last_good")))
