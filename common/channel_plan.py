"""The channels (centre, bandwidth) that fit in a sub-band: pure data, deterministic order.

When a user names a sub-band instead of a frequency (`radio.channel = "868.0-868.6"`), the
link may use any channel that fits it: the 600 kHz of EU868's h1.4 hold one 500 kHz channel,
two 250 kHz or four 125 kHz ones. Which bandwidth is the tuner's choice (from the measured
margin, like the spreading factor); which of the channels of that bandwidth is `pick`'s, from
a per-link offset (0 unless something spreads links apart, issue 16). Both sides compute the
same plan from the same config, so a SWITCH names only SF and bandwidth and each side knows
the centre; the rendezvous is the plan's channel at the rendezvous bandwidth.

The rule, for a sub-band [low, high] with edge guard g (`SubBand.guard_hz`, region data):

    usable  = (high - g) - (low + g)
    n(bw)   = floor(usable / bw)                    channels that do not overlap
    centre_i = low + g + usable * (2i + 1) / (2n)   i = 0 .. n-1, lowest first

Channels are spread evenly over the usable width (any slack between them, not at one edge),
so neighbouring channels of one bandwidth never overlap and every channel keeps the guard.
"""

from __future__ import annotations

from dataclasses import dataclass

from p1lora.common.regions import SubBand

__all__ = ["LINK_BANDWIDTHS_HZ", "Channel", "channels", "pick", "plan"]

#: The bandwidths the link uses (narrower ones are too slow for a telegram a second).
LINK_BANDWIDTHS_HZ: tuple[int, ...] = (125_000, 250_000, 500_000)


@dataclass(frozen=True, slots=True, order=True)
class Channel:
    """One channel: centre frequency and bandwidth (Hz)."""

    centre_hz: int
    bw_hz: int

    @property
    def low_hz(self) -> float:
        return self.centre_hz - self.bw_hz / 2

    @property
    def high_hz(self) -> float:
        return self.centre_hz + self.bw_hz / 2

    def label(self) -> str:
        return f"{self.centre_hz / 1e6:.4f} MHz/BW{self.bw_hz / 1000:g}"


def channels(band: SubBand, bw_hz: int) -> tuple[Channel, ...]:
    """The non-overlapping channels of `bw_hz` in `band` (with its guard), lowest first;
    empty when the bandwidth is wider than the band allows or does not fit."""
    if bw_hz <= 0 or bw_hz > band.max_bw_hz:
        return ()
    low = band.low_hz + band.guard_hz
    usable = band.high_hz - band.guard_hz - low
    count = usable // bw_hz if usable > 0 else 0
    return tuple(Channel(low + (usable * (2 * i + 1)) // (2 * count), bw_hz) for i in range(count))


def plan(
    band: SubBand, bandwidths: tuple[int, ...] = LINK_BANDWIDTHS_HZ
) -> dict[int, tuple[Channel, ...]]:
    """Every bandwidth of `bandwidths` that has at least one channel in `band`, with them."""
    found = {bw: channels(band, bw) for bw in bandwidths}
    return {bw: chs for bw, chs in found.items() if chs}


def pick(band: SubBand, bw_hz: int, offset: int = 0) -> Channel | None:
    """The channel of `bw_hz` a link with this `offset` uses (offset modulo the number of
    channels, so any integer, e.g. one derived from a network id, is valid); None when no
    channel of that bandwidth fits."""
    found = channels(band, bw_hz)
    return found[offset % len(found)] if found else None
