"""Values that cross the boundary between the link protocol and the radio backends.

They live in `p1lora.common` (not `p1lora.hardware`) because the sans-I/O link state machines
produce settings and consume received frames without knowing which backend is underneath.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

__all__ = ["BANDWIDTHS_HZ", "CODING_RATES", "SPREADING_FACTORS", "RadioSettings", "ReceivedFrame"]

#: The SX127x LoRa bandwidths (RegModemConfig1 BW field order), in Hz.
BANDWIDTHS_HZ: tuple[int, ...] = (
    7_800,
    10_400,
    15_600,
    20_800,
    31_250,
    41_700,
    62_500,
    125_000,
    250_000,
    500_000,
)
SPREADING_FACTORS: tuple[int, ...] = (6, 7, 8, 9, 10, 11, 12)
#: Coding rate denominators: 5 means 4/5 ... 8 means 4/8.
CODING_RATES: tuple[int, ...] = (5, 6, 7, 8)


@dataclass(frozen=True, slots=True)
class RadioSettings:
    """Everything both ends must agree on to hear each other, plus the sender's power.

    Frequency, SF, BW, coding rate, preamble and sync word must match between transmitter and
    receiver; TX power is local. CRC is always on in p1-lora (frames without a payload CRC are
    rejected), but the field is kept so the airtime formula and the driver are explicit.
    """

    frequency_hz: int
    sf: int = 12
    bw_hz: int = 125_000
    cr: int = 5
    tx_power_dbm: int = 14
    preamble: int = 8
    sync_word: int = 0x12
    crc_on: bool = True

    def __post_init__(self) -> None:
        if not 137_000_000 <= self.frequency_hz <= 1_020_000_000:
            raise ValueError(f"frequency {self.frequency_hz} Hz is outside the SX127x range")
        if self.sf not in SPREADING_FACTORS:
            raise ValueError(f"spreading factor {self.sf} is not one of {SPREADING_FACTORS}")
        if self.bw_hz not in BANDWIDTHS_HZ:
            raise ValueError(f"bandwidth {self.bw_hz} Hz is not one of {BANDWIDTHS_HZ}")
        if self.cr not in CODING_RATES:
            raise ValueError(f"coding rate 4/{self.cr} is not one of 4/5..4/8")
        if not -4 <= self.tx_power_dbm <= 20:
            raise ValueError(f"TX power {self.tx_power_dbm} dBm is outside -4..+20 dBm")
        if not 6 <= self.preamble <= 65_535:
            raise ValueError(f"preamble length {self.preamble} is outside 6..65535 symbols")
        if not 0 <= self.sync_word <= 0xFF:
            raise ValueError(f"sync word {self.sync_word:#x} does not fit one byte")

    @property
    def bw_khz(self) -> float:
        """Bandwidth in kHz, as people write it (125, 250, 62.5 ...)."""
        return self.bw_hz / 1000

    @property
    def frequency_mhz(self) -> float:
        return self.frequency_hz / 1e6

    def replace(self, **changes: object) -> RadioSettings:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def same_channel(self, other: RadioSettings) -> bool:
        """True when two radios with these settings can hear each other (power aside)."""
        return (
            self.frequency_hz == other.frequency_hz
            and self.sf == other.sf
            and self.bw_hz == other.bw_hz
            and self.sync_word == other.sync_word
        )

    def label(self) -> str:
        """Short human label such as 'SF7/BW250'."""
        bw = f"{self.bw_khz:g}"
        return f"SF{self.sf}/BW{bw}"


@dataclass(frozen=True, slots=True)
class ReceivedFrame:
    """A frame that passed the radio's payload CRC, with how it was heard.

    `received_at` is on the backend's clock (the same clock the runtime hands the link as `now`).
    """

    payload: bytes
    rssi_dbm: float
    snr_db: float
    settings: RadioSettings
    received_at: float
    freq_error_hz: float | None = None
