"""Every timeout and pacing interval of the link, derived from airtime and the duty budget.

The seed firmware's receiver gave up on the link sooner than its transmitter was allowed to
send at SF12; here every timeout is a formula of the time on air at the current setting and the
sub-band's duty cycle, and both sides evaluate the same formulas, so neither ever declares the
other gone while it is legally waiting. Notation: `A(s, n)` is the time on air of an n-byte
frame at settings s, `f` the sub-band's duty-cycle fraction, `u` the share of it paced traffic
aims at (`pacing_share`), `T` the configured turnaround (how late the peer may start replying),
`k(s)` = max(A(s, KEEPALIVE), A(s, ACK_TYPICAL)) and `c(s)` = max(A(s, STATUS_TYPICAL),
A(s, ACK_TYPICAL)): what one keepalive (a 14-byte PROBE) and one standalone status report cost
the busier of the two budgets.

| quantity                 | formula                                                           |
|--------------------------|-------------------------------------------------------------------|
| guard(s)                 | 0.05 s + 4 symbols                                                |
| reply_timeout(s, n)      | T + A(s, n) + guard(s): how long to wait for an n-byte answer       |
| pacing_share             | u = max(0.9, min(pacing_max_share, 1 - (A(r, DISCOVER) +          |
|                          | A(r, SWITCH)) / (f * window))): room for one handshake at the     |
|                          | rendezvous r is kept (92 % of the 1 % band, 99 % of the 10 %)     |
| pacing_gap(s, n)         | max(A(s, n), A(s, ACK_TYPICAL)) / (f * u): steady spacing of paced |
|                          | frames so that *both* budgets hold (our frame, the peer's ack)      |
| keepalive_interval(s)    | max(keepalive_s, k(s) / (f * keepalive_share)): the transmitter     |
|                          | sends *something* at least this often (a keepalive when nothing    |
|                          | else is due)                                                       |
| status_interval(s)       | max(status_interval_s, c(s) / (f * status_share)): full status     |
|                          | reports (they ride on an update whenever one fits)                 |
| max_send_interval(s)     | keepalive_interval(s) + reply_timeout(s, ACK_MAX): the longest a    |
|                          | linked transmitter may legally stay silent                         |
| silence_timeout(s)       | silence_factor * max_send_interval(s) + reply_timeout(s, ACK_MAX)  |
| rendezvous_window(s)     | [last ack + silence(s), last frame sent + silence(s)] + guard(s):  |
|                          | when a receiver that stopped hearing us is back at the rendezvous |
| handshake_grace(s)       | reply_timeout(s, CHALLENGE) + reply_timeout(s, MAX_FRAME): how     |
|                          | long an answered DISCOVER may keep a resumed receiver from the     |
|                          | rendezvous (the CHALLENGE and the transmitter's first frame)       |
| probe_cycle(s)           | A(s, PROBE_MAX) + reply_timeout(s, ACK_MAX)                        |
| switch_cycle(s)          | A(s, SWITCH) + reply_timeout(s, ACK_MAX)                           |
| switch_timeout(t, p)     | (switch_attempts - 1) * switch_cycle(p) + (probe_attempts + 1) *   |
|                          | probe_cycle(t) + guard(t): the receiver's wait at the target t for |
|                          | proof before it reverts to p (the SWITCH may still be repeated)    |
| discovery_delay(s, k)    | min(max(base * 2^k, 2 * reply_timeout(s, CHALLENGE)),              |
|                          |     max(discovery_max, A(s, DISCOVER) / (f * handshake_share)))    |
| responder rate           | tokens refill at f * handshake_share / A(s, CHALLENGE) per second   |

Why keepalives scale: a fixed keepalive (the first design used 60 s) costs nothing at
SF7/BW250 in the 10 % band but a large part of the 1 % budget at SF12, and the receiver's
silence timeout follows it. Tying the interval to a share of the budget makes keepalives
frequent where they are cheap (so a dead link is noticed in about 30 s at SF7/BW250 and both
sides meet at the rendezvous quickly) and rare where every second of airtime is a telegram.
Keepalives do not wait for the data pacing or the `set interval` gate (only for the budget),
which is what makes `keepalive_interval` the slowest legal send interval.

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
    STATUS_TYPICAL_BODY_SIZE,
    SWITCH_BODY_SIZE,
)
from p1lora.common.link.tuning import candidate_table
from p1lora.common.radio_types import RadioSettings

__all__ = [
    "ACK_MAX_BYTES",
    "ACK_TYPICAL_BYTES",
    "CHALLENGE_BYTES",
    "DISCOVER_BYTES",
    "KEEPALIVE_BYTES",
    "PROBE_MAX_BYTES",
    "STATUS_TYPICAL_BYTES",
    "SWITCH_BYTES",
    "discovery_delay",
    "fast_rendezvous",
    "follow_window",
    "guard",
    "handshake_grace",
    "keepalive_interval",
    "max_send_interval",
    "pacing_gap",
    "pacing_share",
    "probe_cycle",
    "rendezvous_window",
    "reply_timeout",
    "responder_refill_per_s",
    "silence_timeout",
    "status_interval",
    "switch_cycle",
    "switch_timeout",
]

ACK_TYPICAL_BYTES = overhead(FrameType.ACK) + ACK_BODY_SIZE
ACK_MAX_BYTES = ACK_TYPICAL_BYTES + COMMAND_MAX_SIZE
CHALLENGE_BYTES = overhead(FrameType.CHALLENGE) + CHALLENGE_BODY_SIZE
DISCOVER_BYTES = overhead(FrameType.DISCOVER) + DISCOVER_BODY_SIZE
#: A standalone STATUS frame with typical counters (a day of uptime, thousands of telegrams).
STATUS_TYPICAL_BYTES = overhead(FrameType.STATUS) + STATUS_TYPICAL_BODY_SIZE
#: A keepalive: a PROBE with its id and no padding (acked like any probe).
KEEPALIVE_BYTES = overhead(FrameType.PROBE) + 1
#: Probes are never larger than this (sized like a typical update, capped).
PROBE_MAX_BYTES = 64
SWITCH_BYTES = overhead(FrameType.SWITCH) + SWITCH_BODY_SIZE


def _fraction(config: LinkConfig) -> float | None:
    duty = config.sub_band().duty_cycle
    return None if duty >= 1.0 else duty


def guard(settings: RadioSettings) -> float:
    """Slack for clock granularity and radio mode changes: 50 ms plus four symbols."""
    return 0.05 + 4 * symbol_time(settings.sf, settings.bw_hz)


def reply_timeout(config: LinkConfig, settings: RadioSettings, reply_bytes: int) -> float:
    """How long after our frame ends an answer of `reply_bytes` may still arrive."""
    return config.turnaround_s + time_on_air_for(settings, reply_bytes) + guard(settings)


#: The share paced traffic may always use (the first design's fixed 90 %).
PACING_MIN_SHARE = 0.9


def pacing_share(config: LinkConfig) -> float:
    """The share of the allowance paced traffic (updates) aims at.

    What must stay free is what the link needs to recover at any moment: one rendezvous
    handshake (a DISCOVER and the SWITCH that leaves the rendezvous, 2.8 s at SF12/BW125).
    Keeping less made a link whose path suddenly failed in the 1 % band wait twice as long for
    its handshake (the simulator: 185 s instead of 95 s without telegrams); keeping a fixed
    10 % (the first design) wasted 7 % of the 10 % band's allowance on nothing. Where a window
    is short (US915: 0.4 s per 20 s) a handshake is a large share of it but waits at most one
    window: the share never drops below the first design's `PACING_MIN_SHARE`. Status
    reports ride on updates and keepalives flow only when nothing else does, so they need no
    room of their own; the hard budget still checks every frame.
    """
    band = config.sub_band()
    if band.duty_cycle >= 1.0:
        return config.pacing_max_share
    rendezvous = config.rendezvous()
    reserve = time_on_air_for(rendezvous, DISCOVER_BYTES) + time_on_air_for(
        rendezvous, SWITCH_BYTES
    )
    share = min(config.pacing_max_share, 1.0 - reserve / band.airtime_per_window_s)
    return max(min(PACING_MIN_SHARE, config.pacing_max_share), share)


def pacing_gap(config: LinkConfig, settings: RadioSettings, frame_bytes: int) -> float:
    """Spacing of paced frames so both our budget and the peer's (its acks) hold in the long run."""
    fraction = _fraction(config)
    if fraction is None:
        return 0.0
    ours = time_on_air_for(settings, min(frame_bytes, MAX_FRAME))
    theirs = time_on_air_for(settings, ACK_TYPICAL_BYTES)
    return max(ours, theirs) / (fraction * pacing_share(config))


def _cost(settings: RadioSettings, frame_bytes: int) -> float:
    """Airtime of a frame or of the ack it gets, whichever is longer (the busier budget)."""
    return max(time_on_air_for(settings, frame_bytes), time_on_air_for(settings, ACK_TYPICAL_BYTES))


def keepalive_interval(config: LinkConfig, settings: RadioSettings) -> float:
    """The transmitter sends a frame at least this often while linked (a keepalive when
    nothing else is due): `keepalive_s` where that is cheap, otherwise as often as
    `keepalive_share` of the budget allows. Keepalives flow only while nothing else does."""
    fraction = _fraction(config)
    if fraction is None:
        return config.keepalive_s
    cost = _cost(settings, KEEPALIVE_BYTES)
    return max(config.keepalive_s, cost / (fraction * config.keepalive_share))


def status_interval(config: LinkConfig, settings: RadioSettings) -> float:
    """How often the transmitter reports its full status: `status_interval_s`, or rarer where
    a standalone report would take more than `status_share` of the budget."""
    fraction = _fraction(config)
    if fraction is None:
        return config.status_interval_s
    cost = _cost(settings, STATUS_TYPICAL_BYTES)
    return max(config.status_interval_s, cost / (fraction * config.status_share))


def max_send_interval(config: LinkConfig, settings: RadioSettings) -> float:
    """The longest a linked transmitter may stay silent while following every rule: a
    keepalive is due after `keepalive_interval`, and it may wait for one reply timeout of the
    frame before it (stop and wait). It waits for neither the data pacing nor `set interval`."""
    return keepalive_interval(config, settings) + reply_timeout(config, settings, ACK_MAX_BYTES)


def silence_timeout(config: LinkConfig, settings: RadioSettings) -> float:
    """Receiver: after this long without a valid frame the link is considered lost.

    `silence_factor` (3) slowest legal send intervals: two keepalives in a row may be lost
    before the receiver gives up and returns to the rendezvous.
    """
    return config.silence_factor * max_send_interval(config, settings) + reply_timeout(
        config, settings, ACK_MAX_BYTES
    )


#: Slack in `follow_window` for each frame's wait for a free channel (listen before talk
#: holds a frame up to 0.75 s + 0.4 airtimes, inside the link's 1 s + 1.5 airtimes watchdog).
FOLLOW_HOLD_S = 1.0


def fast_rendezvous(config: LinkConfig) -> RadioSettings | None:
    """Where a crowded link meets when both sides can (docs/protocol.md, "Sharing the air"):
    the fastest setting the link may use, which is also where its neighbours run. None when
    that is the rendezvous itself."""
    fastest = candidate_table(config)[0]
    settings = config.settings(fastest.sf, fastest.bw_hz)
    return None if settings == config.rendezvous() else settings


def follow_window(config: LinkConfig, fast: RadioSettings) -> float:
    """Receiver: how long it waits at the fast rendezvous after a DISCOVER asked it to follow.

    The transmitter waits one reply timeout for an answer at the rendezvous (a receiver that
    cannot follow answers there), then sends a DISCOVER at `fast`; the CHALLENGE and the
    transmitter's first session frame follow. Each of those three frames may wait
    `FOLLOW_HOLD_S` for a free channel.
    """
    rendezvous = config.rendezvous()
    return (
        reply_timeout(config, rendezvous, CHALLENGE_BYTES)
        + 3 * FOLLOW_HOLD_S
        + reply_timeout(config, fast, CHALLENGE_BYTES)
        + handshake_grace(config, fast)
    )


def handshake_grace(config: LinkConfig, settings: RadioSettings) -> float:
    """Receiver: how long after a CHALLENGE the transmitter's first session frame has ended.

    The transmitter sends it as soon as the CHALLENGE has arrived (a SWITCH, or the status on
    the first update), and no frame is longer than `MAX_FRAME`. A resumed receiver stays at its
    setting this long after an answered DISCOVER beyond its own silence deadline, and no more:
    the DISCOVER may be a replay, and replays one grace apart would otherwise keep it there
    while the transmitter waits at the rendezvous. One grace is shorter than one response
    token's refill everywhere (about 0.7 s against 1.3 s at SF7/BW250 in the 10 % band), so a
    flood cannot string graces together.
    """
    return reply_timeout(config, settings, CHALLENGE_BYTES) + reply_timeout(
        config, settings, MAX_FRAME
    )


def rendezvous_window(
    config: LinkConfig, settings: RadioSettings, last_ack_at: float, last_sent_end: float
) -> tuple[float, float]:
    """Transmitter: when a receiver that stopped hearing us is back at the rendezvous.

    The receiver's silence timer restarts with every frame it hears. It heard the frame whose
    ack arrived at `last_ack_at`, so if it heard nothing after that (the usual case: the
    channel failed in both directions) it has given up by the first bound; if it kept hearing
    us while its acks were lost, it gives up at the latest a silence timeout after our last
    frame at this setting, which ended at `last_sent_end` (the second bound). Before the first
    bound a DISCOVER at the rendezvous cannot be heard and only costs budget.
    """
    silence = silence_timeout(config, settings)
    first = last_ack_at + silence + guard(settings)
    return first, max(first, last_sent_end + silence + guard(settings))


def probe_cycle(config: LinkConfig, settings: RadioSettings) -> float:
    """One probe and the wait for its ack."""
    return time_on_air_for(settings, PROBE_MAX_BYTES) + reply_timeout(
        config, settings, ACK_MAX_BYTES
    )


def switch_cycle(config: LinkConfig, settings: RadioSettings) -> float:
    """One SWITCH and the wait for its ack."""
    return time_on_air_for(settings, SWITCH_BYTES) + reply_timeout(config, settings, ACK_MAX_BYTES)


def switch_timeout(
    config: LinkConfig, settings: RadioSettings, previous: RadioSettings | None = None
) -> float:
    """Receiver: how long to wait at a new setting (`settings`) for proof before reverting.

    The transmitter may still be repeating the SWITCH at the `previous` setting (it sends it
    up to `switch_attempts` times when no ack comes back: the receiver may have switched
    anyway), then it probes for at most `probe_attempts` cycles. The timeout outlasts both, so
    the transmitter always reverts first or both succeed. Without `previous` the repeats are
    assumed at the new setting.
    """
    repeats = (config.switch_attempts - 1) * switch_cycle(config, previous or settings)
    probing = (config.probe_attempts + 1) * probe_cycle(config, settings)
    return repeats + probing + guard(settings)


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
