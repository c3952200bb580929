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

Real SX127x chips do not report SNR above about +10 dB: the packet SNR estimator saturates
(field reports: strong signals read +5..+12 dB depending on the board and local noise, while
the datasheet's formula could express +31.75). A reading at or above `SATURATED_SNR_DB` is
therefore a lower bound. Where it is, the packet RSSI against the noise floor implied by the
datasheet's sensitivity table (`effective_snr_db`) may raise the estimate, less a safety
margin; nothing ever raises an estimate on a saturated reading alone. Decisions stay safe
either way: the fastest rung needs far less than +10 dB, and power control lowers the power
only by what the (lower-bound) margin proves, one verified step at a time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Container, Iterable
from dataclasses import dataclass

from p1lora.common.airtime import time_on_air_for
from p1lora.common.channel_plan import LINK_BANDWIDTHS_HZ
from p1lora.common.link.config import LinkConfig
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "DEMODULATION_FLOOR_DB",
    "ESTIMATE_ALPHA",
    "FADE_SD_FACTOR",
    "LOW_MIN_SAMPLES",
    "LOW_WINDOW_S",
    "NOISE_FLOOR_125_DBM",
    "REFERENCE_BW_HZ",
    "RSSI_SNR_MARGIN_DB",
    "SATURATED_SNR_DB",
    "TYPICAL_FRAME_BYTES",
    "Candidate",
    "SnrEstimate",
    "bw_offset_db",
    "candidate_table",
    "choose_target",
    "effective_snr_db",
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
#: Readings at or above this are treated as saturated (a lower bound of the real SNR).
SATURATED_SNR_DB = 9.0
#: Noise in 125 kHz implied by the datasheet: sensitivity minus the demodulation floor
#: (SF7: -123 - -7.5 = -115.5 dBm; SF12: -136 - -20 = -116 dBm), rounded towards more noise.
NOISE_FLOOR_125_DBM = -115.0
#: RSSI is less exact than SNR (calibration, nonlinearity above -100 dBm): an SNR estimated
#: from it is taken this much lower.
RSSI_SNR_MARGIN_DB = 3.0
#: The worst-recent-sample view (`SnrEstimate.low`) covers this long, and at least the last
#: `LOW_MIN_SAMPLES` samples: at 1 Hz it sees every fade of the last half minute, at SF12
#: (a sample every ~20 s) it still follows a channel that came back within a minute.
LOW_WINDOW_S = 30.0
LOW_MIN_SAMPLES = 2
_RECENT_MAX = 128
#: Weight of a new sample once the first 1/alpha samples are in (see `SnrEstimate`).
ESTIMATE_ALPHA = 0.1
#: Spreads of the per-frame SNR a rung's margin must cover on top of `snr_margin_db`: half a
#: standard deviation. A full one sent a 4 dB fading link at 141 dB back to SF12/BW125 (half
#: the throughput, for a loss the retransmissions absorb); none let it sit on a rung whose
#: margin the average alone claimed.
FADE_SD_FACTOR = 0.5
#: A change of channel: two samples in a row this many spreads off the mean, once the
#: estimate holds this many samples (`SnrEstimate._jumped`). At 4 dB fading two samples 12 dB
#: off on the same side are a 1 in 10^6 event.
JUMP_SPREADS = 3.0
MIN_JUMP_COUNT = 5
#: Frame-to-frame scatter of the SNR reading on a steady channel (+-1-2 dB on real boards,
#: see above): spread up to this is measurement noise, not fading, and costs no margin.
READING_SCATTER_DB = 1.0
#: A typical DSMR 5 update on air: 5-byte header + ~12-24 byte delta + 8-byte tag.
TYPICAL_FRAME_BYTES = 37
_BANDWIDTHS = LINK_BANDWIDTHS_HZ


def bw_offset_db(bw_hz: int) -> float:
    """How much more noise `bw_hz` lets in than the 125 kHz reference (dB)."""
    return 10.0 * math.log10(bw_hz / REFERENCE_BW_HZ)


def effective_snr_db(snr_db: float, rssi_dbm: float | None, bw_hz: int) -> float:
    """The SNR to plan with: the reading, or where the chip's estimator may have saturated, the
    larger of the reading and what the RSSI says (conservatively)."""
    if snr_db < SATURATED_SNR_DB or rssi_dbm is None:
        return snr_db
    from_rssi = rssi_dbm - (NOISE_FLOOR_125_DBM + bw_offset_db(bw_hz)) - RSSI_SNR_MARGIN_DB
    return max(snr_db, from_rssi)


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

    Legal: a channel of the bandwidth fits the sub-band (`LinkConfig.channel_for`: around a
    pinned frequency, or the plan's channel in a named sub-band, `channel_plan`) within its
    maximum, and a typical frame respects the dwell-time cap. The region's rendezvous setting is always included
    (it is where the link falls back to) and is the slowest rung.
    """
    band = config.sub_band()
    rendezvous = config.rendezvous()
    found: list[Candidate] = []
    for sf in DEMODULATION_FLOOR_DB:
        for bw in _BANDWIDTHS:
            if config.channel_for(bw) is None:
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
    """Exponentially weighted SNR at the 125 kHz reference (and at full power for the uplink),
    with the spread of the samples around it.

    The weight of a new sample is 1/n for the first samples (a plain mean: the handshake's
    one sample and the probes' few settle the estimate in seconds) and `alpha` afterwards,
    so the estimate follows a changing channel while per-frame fading (4 dB in the
    benchmark) moves it by about a decibel, not by the 2-3 dB that flipped the choice
    between rungs of nearly equal sensitivity. `sd` is the weighted standard deviation of
    the samples: `planning()` takes `FADE_SD_FACTOR` of it off the mean, so a link that is
    merely noisy chooses a rung whose margin covers its typical fade once, and stays there.
    `count` says how much evidence there is. `low(now)` is the worst sample of the last
    `LOW_WINDOW_S`: moving up and lowering the power plan with it, so a fade seen recently is
    a fade planned for.
    """

    __slots__ = ("_before", "_recent", "alpha", "count", "value", "variance")

    def __init__(self, alpha: float = ESTIMATE_ALPHA) -> None:
        self.alpha = alpha
        self.value: float | None = None
        self.variance = 0.0
        self.count = 0
        #: (mean, variance) before the latest sample (`_jumped` judges against it).
        self._before: tuple[float, float] | None = None
        self._recent: deque[tuple[float, float]] = deque(maxlen=_RECENT_MAX)

    def add(
        self,
        snr_db: float,
        bw_hz: int,
        power_deficit_db: float = 0.0,
        at: float = 0.0,
        *,
        censored: bool = False,
    ) -> None:
        """One sample measured at `bw_hz` at time `at`, sent `power_deficit_db` below the
        maximum power. A `censored` one (a lost round trip counted at the rung's floor,
        `AutoTuner.unanswered`) never restarts the estimate: two fades in a row are no
        changed channel (they reset a fading link's estimate to the floor itself)."""
        sample = snr_db + bw_offset_db(bw_hz) + power_deficit_db
        if not censored and self._jumped(sample):
            # The channel changed (a path that came back, a new obstacle): two samples in a
            # row far outside the spread start the estimate afresh from them, so the choice
            # follows in two samples rather than the 1/alpha the weighting needs.
            previous = self._recent[-1][1]
            self.value, self.variance, self.count = previous, 0.0, 1
        self._before = None if self.value is None else (self.value, self.variance)
        self.count += 1
        if self.value is None:
            self.value = sample
        else:
            # West's weighted incremental mean and variance (the exponential form).
            weight = max(self.alpha, 1.0 / self.count)
            delta = sample - self.value
            self.value += weight * delta
            self.variance = (1.0 - weight) * (self.variance + weight * delta * delta)
        self._recent.append((at, sample))

    def _jumped(self, sample: float) -> bool:
        """Whether `sample` and the one before both lie `JUMP_SPREADS` spreads (at least the
        reading scatter) beyond the mean on the same side."""
        before = self._before
        if before is None or self.count < MIN_JUMP_COUNT or not self._recent:
            return False
        # Against the estimate before the previous sample: that sample has already widened
        # the spread it would be judged by.
        mean, variance = before
        limit = JUMP_SPREADS * max(math.sqrt(variance), READING_SCATTER_DB)
        previous = self._recent[-1][1] - mean
        current = sample - mean
        return abs(previous) > limit and abs(current) > limit and previous * current > 0

    @property
    def sd(self) -> float:
        """Weighted standard deviation of the samples (0.0 before the second)."""
        return math.sqrt(self.variance)

    @property
    def standard_error(self) -> float:
        """How far the mean may be off: the spread over the square root of the samples it
        weighs (at most (2 - alpha) / alpha of them once the weight is `alpha`)."""
        if self.count == 0:
            return 0.0
        effective = min(float(self.count), (2.0 - self.alpha) / self.alpha)
        return self.sd / math.sqrt(effective)

    def planning(self) -> float | None:
        """The SNR to choose a rung with: the mean less `FADE_SD_FACTOR` times the spread
        beyond the chip's own reading scatter (`READING_SCATTER_DB`, which is no fade)."""
        if self.value is None:
            return None
        return self.value - FADE_SD_FACTOR * max(0.0, self.sd - READING_SCATTER_DB)

    def low(self, now: float) -> float | None:
        """The worst sample of the last `LOW_WINDOW_S` (at least of the last
        `LOW_MIN_SAMPLES`); None before the first."""
        if not self._recent:
            return None
        horizon = now - LOW_WINDOW_S
        worst = min(s for t, s in list(self._recent)[-LOW_MIN_SAMPLES:])
        for t, sample in reversed(self._recent):
            if t < horizon:
                break
            worst = min(worst, sample)
        return worst

    def reset(self) -> None:
        self.value = None
        self._before = None
        self.variance = 0.0
        self.count = 0
        self._recent.clear()


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
    *,
    tolerable: Container[tuple[int, int]] = (),
) -> Candidate:
    """The fastest candidate whose margin in both directions is at least `required_margin_db`
    or whose key is `tolerable` (a rung whose measured fading costs a loss the link carries,
    `AutoTuner.tolerable`), skipping `excluded` keys; the most robust one when none
    qualifies or nothing is known."""
    for candidate in table:
        if candidate.key in excluded:
            continue
        if candidate.key in tolerable:
            return candidate
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
