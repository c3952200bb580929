"""Every timeout and pacing interval of the link, derived from airtime and the duty budget.

The seed firmware's receiver gave up on the link sooner than its transmitter was allowed to
send at SF12; here every timeout is a formula of the time on air at the current setting and the
sub-band's duty cycle, and both sides evaluate the same formulas, so neither ever declares the
other gone while it is legally waiting. Notation: `A(s, n)` is the time on air of an n-byte
frame at settings s, `f` the sub-band's duty-cycle fraction, `u` the configured budget
utilisation (0.9), `T` the configured turnaround (how late the peer may start replying).

| quantity                 | formula                                                           |
|--------------------------|-------------------------------------------------------------------|
| guard(s)                 | 0.05 s + 4 symbols                                                |
| reply_timeout(s, n)      | T + A(s, n) + guard(s): how long to wait for an n-byte answer       |
| pacing_gap(s, n)         | max(A(s, n), A(s, ACK_TYPICAL)) / (f * u): steady spacing of paced |
|                          | frames so that *both* budgets hold (our frame, the peer's ack)      |
| max_send_interval(s, I)  | max(keepalive, I, pacing_gap(s, 255)): the longest a linked         |
|                          | transmitter may legally stay silent (I = the `set interval` value) |
| silence_timeout(s, I)    | silence_factor * max_send_interval(s, I) + reply_timeout(s, ACK)   |
| probe_cycle(s)           | A(s, PROBE_MAX) + reply_timeout(s, ACK_MAX)                        |
| switch_timeout(s)        | (probe_attempts + 1) * probe_cycle(s) + guard(s): the receiver's   |
|                          | wait for proof after a switch before it reverts                     |
| discovery_delay(s, k)    | min(max(base * 2^k, 2 * reply_timeout(s, CHALLENGE)),              |
|                          |     max(discovery_max, A(s, DISCOVER) / (f * handshake_share)))    |
| responder rate           | tokens refill at f * handshake_share / A(s, CHALLENGE) per second   |

With no duty-cycle limit (f >= 1) the budget terms vanish and only airtime terms remain.
"""

from __future__ import annotations

from p1lora.common.airtime import symbol_time, time_on_air_for
from p1lora.common.frames import MAX_FRAME, FrameType, overhead
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.messages import (
    ACK_BODY_SIZE,
    CHALLENGE_BODY_SIZE,
    COMMAND_MAX_SIZE,
    DISCOVER_BODY_SIZE,
)
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "ACK_MAX_BYTES",
    "ACK_TYPICAL_BYTES",
    "CHALLENGE_BYTES",
    "DISCOVER_BYTES",
    "PROBE_MAX_BYTES",
    "discovery_delay",
    "guard",
    "max_send_interval",
    "pacing_gap",
    "probe_cycle",
    "reply_timeout",
    "responder_refill_per_s",
    "silence_timeout",
    "switch_timeout",
]

ACK_TYPICAL_BYTES = overhead(FrameType.ACK) + ACK_BODY_SIZE
ACK_MAX_BYTES = ACK_TYPICAL_BYTES + COMMAND_MAX_SIZE
CHALLENGE_BYTES = overhead(FrameType.CHALLENGE) + CHALLENGE_BODY_SIZE
DISCOVER_BYTES = overhead(FrameType.DISCOVER) + DISCOVER_BODY_SIZE
#: Probes are never larger than this (sized like a typical update, capped).
PROBE_MAX_BYTES = 64


def _fraction(config: LinkConfig) -> float | None:
    duty = config.sub_band().duty_cycle
    return None if duty >= 1.0 else duty


def guard(settings: RadioSettings) -> float:
    """Slack for clock granularity and radio mode changes: 50 ms plus four symbols."""
    return 0.05 + 4 * symbol_time(settings.sf, settings.bw_hz)


def reply_timeout(config: LinkConfig, settings: RadioSettings, reply_bytes: int) -> float:
    """How long after our frame ends an answer of `reply_bytes` may still arrive."""
    return config.turnaround_s + time_on_air_for(settings, reply_bytes) + guard(settings)


def pacing_gap(config: LinkConfig, settings: RadioSettings, frame_bytes: int) -> float:
    """Spacing of paced frames so both our budget and the peer's (its acks) hold in the long run."""
    fraction = _fraction(config)
    if fraction is None:
        return 0.0
    ours = time_on_air_for(settings, min(frame_bytes, MAX_FRAME))
    theirs = time_on_air_for(settings, ACK_TYPICAL_BYTES)
    return max(ours, theirs) / (fraction * config.budget_utilisation)


def max_send_interval(config: LinkConfig, settings: RadioSettings, interval_s: float) -> float:
    """The longest a linked transmitter may stay silent while following every rule."""
    return max(config.keepalive_s, interval_s, pacing_gap(config, settings, MAX_FRAME))


def silence_timeout(config: LinkConfig, settings: RadioSettings, interval_s: float) -> float:
    """Receiver: after this long without a valid frame the link is considered lost."""
    return config.silence_factor * max_send_interval(config, settings, interval_s) + reply_timeout(
        config, settings, ACK_MAX_BYTES
    )


def probe_cycle(config: LinkConfig, settings: RadioSettings) -> float:
    """One probe and the wait for its ack."""
    return time_on_air_for(settings, PROBE_MAX_BYTES) + reply_timeout(
        config, settings, ACK_MAX_BYTES
    )


def switch_timeout(config: LinkConfig, settings: RadioSettings) -> float:
    """Receiver: how long to wait at a new setting for proof before reverting.

    Longer than the transmitter's whole probe phase (it gives up after `probe_attempts`
    cycles), so the transmitter always reverts first or both succeed.
    """
    return (config.probe_attempts + 1) * probe_cycle(config, settings) + guard(settings)


def discovery_delay(config: LinkConfig, settings: RadioSettings, attempt: int) -> float:
    """Delay before DISCOVER attempt `attempt` + 1 (exponential, capped so that discovery stays
    within `handshake_share` of the budget in the long run). Jitter is added by the caller."""
    floor = 2 * reply_timeout(config, settings, CHALLENGE_BYTES)
    fraction = _fraction(config)
    cap = config.discovery_max_interval_s
    if fraction is not None:
        cap = max(
            cap, time_on_air_for(settings, DISCOVER_BYTES) / (fraction * config.handshake_share)
        )
    return min(max(config.discovery_base_s * 2.0 ** min(attempt, 16), floor), max(cap, floor))


def responder_refill_per_s(config: LinkConfig, settings: RadioSettings, frame_bytes: int) -> float:
    """Receiver: challenge/resync tokens per second so responses stay within the handshake share."""
    fraction = _fraction(config)
    if fraction is None:
        return 1.0
    return fraction * config.handshake_share / time_on_air_for(settings, frame_bytes)
