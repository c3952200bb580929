"""What one simulated link run delivered and spent: one typed record for every protocol.

`p1-lora sim` runs p1-lora (`tools.sim`) and, with `--baseline`, the ESP32 firmware's model
(`tools.esp32_baseline`) on the same channel and meter. Both report a `SimMetrics` built by
`link_metrics` from the same observations (each side's frame log, the delivery times), so a
column of the report means the same thing for both: delivered per hour, gaps, duty cycle per
side, the setting the transmitter ended on, first delivery, convergence, latency and the
handshake airtime, which is *all* airtime of both sides before the first delivery (discovery,
tuning, probes, acks: whatever a protocol spends before it delivers anything).

What only one protocol has (p1-lora's rejected frames and switch counts, the firmware's
reboots and re-syncs) lives in `details`, keyed by name; `as_dict()` (the `--json` object)
puts both at the top level, and `metrics["key"]` / `metrics.number("key")` read either.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum

from p1lora.common.radio_types import RadioSettings

__all__ = [
    "HOUR_S",
    "Delivers",
    "RunContext",
    "SendRecord",
    "SimMetrics",
    "airtime_before",
    "convergence_time",
    "gap_metrics",
    "link_metrics",
    "max_window_airtime",
    "median",
    "percentile",
    "settings_timeline",
]

HOUR_S = 3600.0
#: Time comparisons closer than this are equal (float rounding of sums of times).
_EPSILON_S = 1e-9


class Delivers(StrEnum):
    """What a protocol hands to the user."""

    #: The meter's telegram, byte for byte (p1-lora).
    TELEGRAMS = "telegrams"
    #: A fixed set of values the firmware extracted and rounded (the ESP32 firmware).
    READINGS = "readings"


@dataclass(frozen=True, slots=True)
class SendRecord:
    """One frame on air."""

    start: float
    airtime: float
    nbytes: int
    frame_type: str
    settings: RadioSettings

    @property
    def end(self) -> float:
        return self.start + self.airtime


@dataclass(frozen=True, slots=True)
class SimMetrics:
    """The numbers of one run, the same fields for every protocol (see the module docstring)."""

    protocol: str
    delivers: Delivers
    duration_s: float
    wall_time_s: float
    seed: int
    region: str
    frequency_mhz: float
    sub_band: str
    duty_cycle_limit: float
    path_loss_db: float | None
    distance_m: float | None
    #: Telegrams the meter produced while the transmitter ran.
    telegrams_read: int
    #: Telegrams (p1-lora) or readings (the firmware) the receiver handed on.
    delivered: int
    delivered_per_hour: float
    #: Delivered but not what the transmitter sent (a CRC-less frame with flipped bits).
    delivered_corrupt: int
    first_delivery_s: float | None
    #: Longest time without a delivery after the first one (the end of the run included).
    max_gap_s: float | None
    #: When the transmitter arrived at the setting it kept to the end.
    convergence_s: float | None
    latency_ms_p50: float | None
    latency_ms_p95: float | None
    #: On-air size of the frames that carry meter data.
    frame_bytes_median: float | None
    frame_bytes_p95: float | None
    frames_tx: int
    frames_rx: int
    airtime_s_tx: float
    airtime_s_rx: float
    #: Largest airtime in any sliding hour of each side's frame log, / 3600 s.
    duty_cycle_max_tx: float
    duty_cycle_max_rx: float
    budget_exceeded: bool
    #: All airtime of both sides before the first delivery (the whole run without one).
    handshake_airtime_s: float
    final_state: str
    final_sf: int
    final_bw: float
    final_tx_power_dbm: int
    #: [[t, SF, BW kHz, TX power dBm], ...] of the transmitter.
    settings_timeline: list[list[float | int]]
    details: Mapping[str, object] = field(default_factory=dict)

    def as_dict(self) -> dict[str, object]:
        """The `--json` object: every field, then the protocol's own details."""
        out: dict[str, object] = {
            f.name: getattr(self, f.name) for f in fields(self) if f.name != "details"
        }
        out["delivers"] = str(self.delivers)
        out.update(self.details)
        return out

    def __getitem__(self, key: str) -> object:
        if key in self.details:
            return self.details[key]
        if key == "details" or key not in _FIELD_NAMES:
            raise KeyError(key)
        value: object = getattr(self, key)
        return value

    def number(self, key: str) -> float:
        """A numeric metric (TypeError when it is missing a value, e.g. no delivery yet)."""
        value = self[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"metric {key!r} is {value!r}, not a number")
        return float(value)


_FIELD_NAMES = frozenset(f.name for f in fields(SimMetrics))


@dataclass(frozen=True, slots=True)
class RunContext:
    """Where and how a run happened (the same for both protocols of one command)."""

    seed: int
    region: str
    frequency_hz: int
    sub_band: str
    duty_cycle_limit: float
    path_loss_db: float | None
    distance_m: float | None


def link_metrics(  # noqa: PLR0913 - one keyword per measured quantity, all keyword-only
    *,
    protocol: str,
    delivers: Delivers,
    context: RunContext,
    end: float,
    wall_time_s: float,
    tx_sent: Sequence[SendRecord],
    rx_sent: Sequence[SendRecord],
    tx_settings: Sequence[tuple[float, RadioSettings, str]],
    telegrams_read: int,
    delivery_times: Sequence[float],
    latencies: Sequence[float],
    delivered_corrupt: int,
    data_frame_types: frozenset[str],
    converged: float | None,
    final: RadioSettings,
    final_state: str,
    details: Mapping[str, object],
) -> SimMetrics:
    """The shared figures of one run from what was observed on air and at the receiver."""
    first, max_gap = gap_metrics(delivery_times, end)
    sizes = [float(s.nbytes) for s in tx_sent if s.frame_type in data_frame_types]
    duty_tx = max_window_airtime(tx_sent) / HOUR_S
    duty_rx = max_window_airtime(rx_sent) / HOUR_S
    before = end if first is None else first
    hours = max(end, 1e-9) / HOUR_S
    return SimMetrics(
        protocol=protocol,
        delivers=delivers,
        duration_s=round(end, 3),
        wall_time_s=round(wall_time_s, 3),
        seed=context.seed,
        region=context.region,
        frequency_mhz=context.frequency_hz / 1e6,
        sub_band=context.sub_band,
        duty_cycle_limit=context.duty_cycle_limit,
        path_loss_db=context.path_loss_db,
        distance_m=context.distance_m,
        telegrams_read=telegrams_read,
        delivered=len(delivery_times),
        delivered_per_hour=round(len(delivery_times) / hours, 1),
        delivered_corrupt=delivered_corrupt,
        first_delivery_s=_round(first),
        max_gap_s=_round(max_gap),
        convergence_s=_round(converged),
        latency_ms_p50=_ms(median(latencies)),
        latency_ms_p95=_ms(percentile(latencies, 0.95)),
        frame_bytes_median=median(sizes),
        frame_bytes_p95=percentile(sizes, 0.95),
        frames_tx=len(tx_sent),
        frames_rx=len(rx_sent),
        airtime_s_tx=round(sum(s.airtime for s in tx_sent), 3),
        airtime_s_rx=round(sum(s.airtime for s in rx_sent), 3),
        duty_cycle_max_tx=round(duty_tx, 5),
        duty_cycle_max_rx=round(duty_rx, 5),
        budget_exceeded=max(duty_tx, duty_rx) > context.duty_cycle_limit + _EPSILON_S,
        handshake_airtime_s=round(
            airtime_before(tx_sent, before) + airtime_before(rx_sent, before), 3
        ),
        final_state=final_state,
        final_sf=final.sf,
        final_bw=final.bw_hz / 1000,
        final_tx_power_dbm=final.tx_power_dbm,
        settings_timeline=settings_timeline(tx_settings),
        details=dict(details),
    )


# ---------------------------------------------------------------------------- helpers


def airtime_before(sent: Sequence[SendRecord], t: float) -> float:
    """Airtime of the frames that started before `t` (the frame that delivered included)."""
    return sum(s.airtime for s in sent if s.start < t + _EPSILON_S)


def max_window_airtime(sent: Sequence[SendRecord], window: float = HOUR_S) -> float:
    """Largest airtime within any `window` seconds, sliding. A frame counts in full while any
    part of it lies inside the window, as a duty-cycle budget counts it, so the sum peaks when
    a frame starts: evaluated for the window ending at every frame start. A frame that ended
    exactly when the window begins is out of it (as in the budget); `_EPSILON_S` absorbs the
    float rounding of "end + window == start", which would otherwise count it in."""
    frames = sorted(sent, key=lambda s: s.start)
    starts = [s.start for s in frames]
    by_start = list(itertools.accumulate((s.airtime for s in frames), initial=0.0))
    ended = sorted((s.end, s.airtime) for s in frames)
    ends = [e for e, _ in ended]
    by_end = list(itertools.accumulate((a for _, a in ended), initial=0.0))
    best = 0.0
    for frame in frames:
        begun = bisect.bisect_right(starts, frame.start)
        gone = bisect.bisect_right(ends, frame.start - window + _EPSILON_S)
        best = max(best, by_start[begun] - by_end[gone])
    return best


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def settings_timeline(
    changes: Sequence[tuple[float, RadioSettings, str]],
) -> list[list[float | int]]:
    """[[t, SF, BW kHz, TX power dBm], ...] with consecutive duplicates removed."""
    out: list[list[float | int]] = []
    for t, s, _ in changes:
        row: list[float | int] = [round(t, 3), s.sf, s.bw_hz / 1000, s.tx_power_dbm]
        if not out or out[-1][1:] != row[1:]:
            out.append(row)
    return out


def convergence_time(changes: Sequence[tuple[float, RadioSettings, str]]) -> float | None:
    """When the transmitter arrived at the SF/BW it kept until the end (power aside)."""
    if not changes:
        return None
    final = (changes[-1][1].sf, changes[-1][1].bw_hz)
    at = changes[-1][0]
    for t, s, _ in reversed(changes):
        if (s.sf, s.bw_hz) != final:
            break
        at = t
    return at


def gap_metrics(times: Sequence[float], end: float) -> tuple[float | None, float | None]:
    """(first delivery, longest gap after it, the tail to `end` included)."""
    if not times:
        return None, None
    ordered = sorted(times)
    gaps = [b - a for a, b in itertools.pairwise(ordered)]
    gaps.append(max(0.0, end - ordered[-1]))
    return ordered[0], max(gaps)


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
