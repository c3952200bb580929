"""Choosing SF/BW from measured SNR margin: one table, one rule.

The seed firmware walked one rung per window; p1-lora predicts instead. A LoRa demodulator
needs the SNR (measured in the channel bandwidth) to clear a floor that depends only on the
spreading factor (`DEMODULATION_FLOOR_DB`, Semtech SX1276 datasheet). Noise power grows with
bandwidth, so the same signal has 3 dB less SNR at twice the bandwidth. Expressing everything
at a 125 kHz reference makes settings comparable:

    required_125(SF, BW) = floor(SF) + 10*log10(BW / 125 kHz)
    snr_125              = measured SNR + 10*log10(measured BW / 125 kHz)
    margin(SF, BW)       = snr_125 - required_125(SF, BW)

Uplink SNR (as the receiver heard our frames, reported in its acks) is also normalised to this
node's maximum TX power, so a power reduction does not look like a worse channel. The target is
the *fastest* setting (least airtime for a typical update) whose margin in **both** directions
is at least `snr_margin_db`; it is then confirmed with probes. Settings that are slower and not
more sensitive than another one are dropped from the table (SF7/125 vs SF8/250: same
sensitivity, SF8/250 is faster), so the ladder is short and every rung is worth having.
"""

from __future__ import annotations

import math
from collections.abc import Container, Iterable
from dataclasses import dataclass

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link.config import LinkConfig
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "DEMODULATION_FLOOR_DB",
    "REFERENCE_BW_HZ",
    "TYPICAL_FRAME_BYTES",
    "Candidate",
    "SnrEstimate",
    "bw_offset_db",
    "candidate_table",
    "choose_target",
    "margin_db",
]

#: SNR (dB) the SX127x needs to demodulate, per spreading factor (datasheet table 13).
DEMODULATION_FLOOR_DB: dict[int, float] = {
    7: -7.5,
    8: -10.0,
    9: -12.5,
    10: -15.0,
    11: -17.5,
    12: -20.0,
}
REFERENCE_BW_HZ = 125_000
#: A typical DSMR 5 update on air: 5-byte header + ~12-24 byte delta + 8-byte tag.
TYPICAL_FRAME_BYTES = 37
_BANDWIDTHS = (125_000, 250_000, 500_000)


def bw_offset_db(bw_hz: int) -> float:
    """How much more noise `bw_hz` lets in than the 125 kHz reference (dB)."""
    return 10.0 * math.log10(bw_hz / REFERENCE_BW_HZ)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One rung of the ladder: SF/BW, the SNR it needs and its airtime for a typical update."""

    sf: int
    bw_hz: int
    typical_airtime_s: float

    @property
    def key(self) -> tuple[int, int]:
        return (self.sf, self.bw_hz)

    @property
    def floor_db(self) -> float:
        return DEMODULATION_FLOOR_DB[self.sf]

    @property
    def required_125_db(self) -> float:
        """The SNR this setting needs, expressed at 125 kHz."""
        return self.floor_db + bw_offset_db(self.bw_hz)

    def label(self) -> str:
        return f"SF{self.sf}/BW{self.bw_hz / 1000:g}"

    def matches(self, settings: RadioSettings) -> bool:
        return settings.sf == self.sf and settings.bw_hz == self.bw_hz


def candidate_table(config: LinkConfig) -> tuple[Candidate, ...]:
    """The legal, non-dominated settings for this link, fastest first.

    Legal: the bandwidth fits the sub-band around the channel and its maximum, and a typical
    frame respects the dwell-time cap. The region's rendezvous setting is always included
    (it is where the link falls back to) and is the slowest rung.
    """
    band = config.sub_band()
    rendezvous = config.rendezvous()
    found: list[Candidate] = []
    for sf in DEMODULATION_FLOOR_DB:
        for bw in _BANDWIDTHS:
            if bw > band.max_bw_hz or not band.contains(config.channel_hz, bw):
                continue
            settings = config.settings(sf, bw)
            airtime = time_on_air_for(settings, TYPICAL_FRAME_BYTES)
            if band.max_dwell_s is not None and airtime > band.max_dwell_s:
                continue
            found.append(Candidate(sf, bw, airtime))
    rdv = Candidate(
        rendezvous.sf, rendezvous.bw_hz, time_on_air_for(rendezvous, TYPICAL_FRAME_BYTES)
    )
    if rdv.key not in {c.key for c in found}:
        found.append(rdv)
    # Drop dominated rungs: slower (or equal) and not more sensitive than another one.
    kept = [
        c
        for c in found
        if not any(
            o is not c
            and o.typical_airtime_s <= c.typical_airtime_s
            and o.required_125_db <= c.required_125_db
            and (o.typical_airtime_s, o.required_125_db) != (c.typical_airtime_s, c.required_125_db)
            for o in found
        )
    ]
    # Nothing slower than the rendezvous: it is the most robust setting the region allows.
    kept = [c for c in kept if c.typical_airtime_s <= rdv.typical_airtime_s]
    if rdv.key not in {c.key for c in kept}:
        kept.append(rdv)
    return tuple(sorted(kept, key=lambda c: (c.typical_airtime_s, c.required_125_db)))


def find(table: Iterable[Candidate], settings: RadioSettings) -> Candidate | None:
    """The table entry for these settings, if any."""
    return next((c for c in table if c.matches(settings)), None)


class SnrEstimate:
    """Exponentially weighted SNR at the 125 kHz reference (and at full power for the uplink).

    Weighted averaging smooths the +-1-2 dB frame-to-frame scatter; `count` says how much
    evidence there is, so decisions can wait for enough samples.
    """

    __slots__ = ("alpha", "count", "value")

    def __init__(self, alpha: float = 0.3) -> None:
        self.alpha = alpha
        self.value: float | None = None
        self.count = 0

    def add(self, snr_db: float, bw_hz: int, power_deficit_db: float = 0.0) -> None:
        """One sample measured at `bw_hz`, sent `power_deficit_db` below the maximum power."""
        sample = snr_db + bw_offset_db(bw_hz) + power_deficit_db
        self.value = (
            sample if self.value is None else self.value + self.alpha * (sample - self.value)
        )
        self.count += 1

    def reset(self) -> None:
        self.value = None
        self.count = 0


def margin_db(
    candidate: Candidate,
    uplink_125: float | None,
    downlink_125: float | None,
    power_deficit_db: float = 0.0,
) -> float | None:
    """Worst-direction margin of `candidate`; uplink sent `power_deficit_db` below maximum."""
    values = []
    if uplink_125 is not None:
        values.append(uplink_125 - power_deficit_db - candidate.required_125_db)
    if downlink_125 is not None:
        values.append(downlink_125 - candidate.required_125_db)
    return min(values) if values else None


def choose_target(
    table: tuple[Candidate, ...],
    uplink_125: float | None,
    downlink_125: float | None,
    required_margin_db: float,
    excluded: Container[tuple[int, int]] = (),
) -> Candidate:
    """The fastest candidate whose margin in both directions is at least `required_margin_db`
    (skipping `excluded` keys); the most robust one when none qualifies or nothing is known."""
    for candidate in table:
        if candidate.key in excluded:
            continue
        margin = margin_db(candidate, uplink_125, downlink_125)
        if margin is not None and margin >= required_margin_db:
            return candidate
    return table[-1]


def slower(table: tuple[Candidate, ...], settings: RadioSettings) -> Candidate | None:
    """The next more robust rung below `settings`, or None at the bottom."""
    current = find(table, settings)
    if current is None:
        return table[-1] if not table[-1].matches(settings) else None
    index = table.index(current)
    return table[index + 1] if index + 1 < len(table) else None


def is_faster(table: tuple[Candidate, ...], a: RadioSettings, b: RadioSettings) -> bool:
    """Whether `a` is a faster rung than `b` (unknown settings count as slowest)."""
    ca, cb = find(table, a), find(table, b)
    if ca is None:
        return False
    if cb is None:
        return True
    return table.index(ca) < table.index(cb)
