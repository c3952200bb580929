"""What a survey measured, and the arithmetic that turns it into margins and update rates.

The margin of a setting is the SNR the link would plan with (`tuning.effective_snr_db`: the
reading, or from the RSSI where the chip's SNR estimator saturates) minus the SF's
demodulation floor, in the worse direction; the updates per hour are what a sub-band's duty
cycle allows for typical update frames at the link's pacing share, capped at the meter's rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.tuning import (
    DEMODULATION_FLOOR_DB,
    TYPICAL_FRAME_BYTES,
    Candidate,
    effective_snr_db,
)
from p1lora.common.radio_types import RadioSettings
from p1lora.common.regions import SubBand

__all__ = [
    "METER_UPDATES_PER_HOUR",
    "Choice",
    "Measurement",
    "SettingResult",
    "WatchSample",
    "updates_per_hour",
]

#: The meter's own rate (DSMR 5: one telegram a second) caps the updates per hour.
METER_UPDATES_PER_HOUR: Final = 3600.0


@dataclass(slots=True)
class Measurement:
    """RSSI/SNR samples of one direction at one setting."""

    rssi: list[float] = field(default_factory=list)
    snr: list[float] = field(default_factory=list)

    def add(self, rssi_dbm: float, snr_db: float) -> None:
        self.rssi.append(rssi_dbm)
        self.snr.append(snr_db)

    @property
    def count(self) -> int:
        return len(self.snr)

    def mean_rssi(self) -> float | None:
        return sum(self.rssi) / len(self.rssi) if self.rssi else None

    def mean_snr(self) -> float | None:
        return sum(self.snr) / len(self.snr) if self.snr else None

    def planning_snr(self, bw_hz: int) -> float | None:
        """The SNR the link would plan with: the reading, or from the RSSI where the chip's
        estimator saturates (`tuning.effective_snr_db`), averaged."""
        if not self.snr:
            return None
        values = [effective_snr_db(s, r, bw_hz) for s, r in zip(self.snr, self.rssi, strict=True)]
        return sum(values) / len(values)


def updates_per_hour(band: SubBand, settings: RadioSettings, utilisation: float) -> float:
    """Telegram updates per hour `band`'s duty cycle allows at `settings` (typical update
    frames, the link's pacing share), capped at the meter's rate."""
    airtime = time_on_air_for(settings, TYPICAL_FRAME_BYTES)
    if band.duty_cycle >= 1:
        allowed = math.inf
    else:
        allowed = band.airtime_per_window_s * utilisation / airtime * (3600 / band.window_s)
    if band.max_dwell_s is not None and airtime > band.max_dwell_s:
        return 0.0
    return min(METER_UPDATES_PER_HOUR, allowed)


@dataclass(slots=True)
class SettingResult:
    """What one rung of the survey measured, as the transmitter saw it."""

    candidate: Candidate
    settings: RadioSettings
    sent: int = 0
    answered: int = 0
    up: Measurement = field(default_factory=Measurement)
    down: Measurement = field(default_factory=Measurement)
    #: The receiver's count of probes heard (from its last report).
    heard: int = 0

    @property
    def floor_db(self) -> float:
        return DEMODULATION_FLOOR_DB[self.settings.sf]

    def margin_db(self) -> float | None:
        """Worst-direction margin over this SF's demodulation floor (None: nothing heard)."""
        values = [
            snr - self.floor_db
            for snr in (
                self.up.planning_snr(self.settings.bw_hz),
                self.down.planning_snr(self.settings.bw_hz),
            )
            if snr is not None
        ]
        return min(values) if len(values) == 2 else None

    def updates_per_hour(self, config: LinkConfig) -> dict[str, float]:
        """Per sub-band of the region (those the setting's bandwidth fits)."""
        return {
            band.name.split()[0]: updates_per_hour(band, self.settings, config.budget_utilisation)
            for band in config.region.sub_bands
            if self.settings.bw_hz <= band.max_bw_hz
        }


@dataclass(frozen=True, slots=True)
class Choice:
    """The setting the link would choose from the survey's measurements, and its margin."""

    candidate: Candidate
    margin_db: float | None
    required_db: float
    uplink_125_db: float | None
    downlink_125_db: float | None


@dataclass(frozen=True, slots=True)
class WatchSample:
    """One `--watch` exchange at the chosen setting."""

    at: float
    settings: RadioSettings
    answered: bool
    up_rssi_dbm: float | None = None
    up_snr_db: float | None = None
    down_rssi_dbm: float | None = None
    down_snr_db: float | None = None

    def margin_db(self) -> float | None:
        if self.up_snr_db is None or self.down_snr_db is None:
            return None
        assert self.up_rssi_dbm is not None and self.down_rssi_dbm is not None
        bw = self.settings.bw_hz
        worst = min(
            effective_snr_db(self.up_snr_db, self.up_rssi_dbm, bw),
            effective_snr_db(self.down_snr_db, self.down_rssi_dbm, bw),
        )
        return worst - DEMODULATION_FLOOR_DB[self.settings.sf]
