"""Listen before talk: a Channel Activity Detection before each frame, and a contention window.

In a meter room every neighbour's transmitter is 25-65 dB stronger at ours than our own ack
from the flat: any overlap kills the ack. So the transmitter's runtime holds each frame the
link emits, runs a CAD (about two symbols, no transmission, no airtime: SX1276 datasheet
4.1.6.4) and sends only when no preamble is heard. When one is, it waits a random number of
slots and listens again. The window grows with how busy the channel has been (the share of
busy CADs, a moving average) and with the busy CADs in a row, as Meshtastic's
`RadioInterface::getTxDelayMsec` grows its contention window with channel utilisation
(src/mesh/RadioInterface.cpp: CWmin 2 .. CWmax 7). After a busy CAD it first waits one
exchange (the held frame's airtime plus an ack of the same size: what the neighbour heard is
busy with), then a random number of slots of a quarter exchange.

Once the channel has been busy lately, every frame also waits a random share of the smallest
window before its first CAD: links that start together would otherwise listen at the same
instant, hear nothing and talk together. On a quiet channel it goes at once, and so does a
frame the link timed to its own slot (`Transmit.slotted`: a crowded transmitter keeps a place
in its period that neighbours do not use, and a random wait would move it off that place).

A CAD hears preambles of its own SF only. In the honest channel model other SFs interfere
too (Croce et al. 2018): a neighbour running at SF7 destroys the SF12 CHALLENGE of a link
still at the rendezvous, which its SF7 CAD never hears. So after a free CAD the runtime also
reads the channel's power (RegRssiValue, what ETSI EN 300 220's LBT measures) and counts the
channel busy while it is `ENERGY_MARGIN_DB` above the noise floor.

A frame is held at most `max_hold(airtime)`: the link's transmit watchdog expects the frame to
end within 1 s + 1.5 airtimes of asking for it. A frame that found no free channel by then is
not sent: to the link it went unanswered (it resends later, after its random backoff), which
is how a crowded channel lowers each link's rate instead of adding a collision.

The link never sees any of this: to it, the radio was busy a little longer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol, runtime_checkable

from p1lora.hardware.channel import noise_floor_dbm

__all__ = ["ChannelRssi", "ContentionWindow", "LbtStats", "energy_threshold_dbm", "max_hold"]

#: Longest a frame waits for a free channel: `HOLD_BASE_S + HOLD_AIRTIMES * airtime` keeps its
#: end inside the link's transmit watchdog (1 s + 1.5 airtimes after it asked).
HOLD_BASE_S: Final = 0.75
HOLD_AIRTIMES: Final = 0.4
#: Contention window exponents (slots drawn from [0, 2**cw)), as Meshtastic's CWmin/CWmax.
CW_MIN: Final = 2
CW_MAX: Final = 7
#: Energy this far above the noise floor is a busy channel (whatever its SF).
ENERGY_MARGIN_DB: Final = 10.0
#: A contention slot as a share of one exchange (frame plus ack).
SLOT_SHARE: Final = 0.25
#: Below this share of busy CADs the channel is quiet: no first wait.
QUIET_USE: Final = 0.01
#: Weight of each CAD in the moving average of channel use.
_USE_WEIGHT: Final = 0.05


@runtime_checkable
class ChannelRssi(Protocol):
    """A radio that reports the channel's power now (the SX127x's RegRssiValue)."""

    def channel_rssi(self) -> float:
        """The channel's power now, in dBm."""


def energy_threshold_dbm(bw_hz: int) -> float:
    """Above this power the channel is busy: thermal noise in `bw_hz` plus the noise figure
    plus `ENERGY_MARGIN_DB`."""
    return noise_floor_dbm(bw_hz) + ENERGY_MARGIN_DB


@dataclass(slots=True)
class LbtStats:
    """What listening before talking did (diagnostics, the simulator's report)."""

    cads: int = 0
    busy: int = 0
    deferred_s: float = 0.0
    #: Frames that found no free channel within `max_hold` and were not sent.
    given_up: int = 0


def max_hold(airtime_s: float) -> float:
    """How long a frame of `airtime_s` may wait for a free channel (module docstring)."""
    return HOLD_BASE_S + HOLD_AIRTIMES * airtime_s


class ContentionWindow:
    """The backoff after a busy CAD (see the module docstring)."""

    def __init__(self, rng: Callable[[int], bytes]) -> None:
        self._rng = rng
        #: Moving average of busy CADs: how crowded the channel has been lately.
        self.channel_use = 0.0
        self.busy_in_row = 0
        self.stats = LbtStats()

    def heard(self, busy: bool) -> None:
        """Record one CAD's answer."""
        self.stats.cads += 1
        self.channel_use += _USE_WEIGHT * ((1.0 if busy else 0.0) - self.channel_use)
        if busy:
            self.stats.busy += 1
            self.busy_in_row += 1
        else:
            self.busy_in_row = 0

    def exponent(self) -> int:
        """CW_MIN on a quiet channel, growing with channel use and with busy CADs in a row."""
        grown = CW_MIN + round(self.channel_use * (CW_MAX - CW_MIN)) + self.busy_in_row - 1
        return max(CW_MIN, min(CW_MAX, grown))

    def first_wait(self, exchange_s: float, hold_s: float) -> float:
        """The random wait before a frame's first CAD (within half its hold): the smallest
        window once the channel has been busy lately, nothing on a quiet one (a lone link
        keeps its timing: its resends must fit before the next telegram)."""
        if self.channel_use < QUIET_USE:
            return 0.0
        window = min((1 << CW_MIN) * SLOT_SHARE * exchange_s, hold_s / 2)
        return window * int.from_bytes(self._rng(2), "big") / 65536

    def backoff(self, exchange_s: float, *, slotted: bool = False) -> float:
        """How long to wait before the next CAD: the exchange the neighbour heard is busy with
        (its frame and its ack), then a random number of slots of a quarter exchange (enough
        for the first waiter's preamble to be heard by the next one's CAD).

        A `slotted` frame (`Transmit.slotted`) draws from the smallest window: a neighbour is
        in its place, and the frame should get on air within its hold, just after that
        neighbour, rather than be given up and wait a whole period for the next slot. The
        grown window suits frames that arrive at random, not a schedule that spreads them."""
        slots = 1 << (CW_MIN if slotted else self.exponent())
        draw = int.from_bytes(self._rng(2), "big") / 65536
        return exchange_s * (1.0 + draw * slots * SLOT_SHARE)
