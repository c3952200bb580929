"""How a link shares the air with its neighbours (docs/protocol.md, "Sharing the air").

In a block of flats every meter sits in one room and DSMR 5 meters send on the whole second:
without care, every transmitter starts within milliseconds of the others, on the same channel,
every second, and the same pairs collide again and again. `AirPolicy` holds the knobs that
break that lock-step; `AirPolicy.legacy()` is the behaviour before them (the benchmark runs both
in one command, `p1-lora bench building`).

- `slot_period_s`, `networks_per_period`: while a neighbour is heard, the transmitter sends
  one update frame per period (every telegram read since the last, as one BATCH) at a place
  of its own in the period, which it keeps while its frames are acknowledged and draws anew
  when one goes unanswered (`slots`: reservation ALOHA). The period is `slot_period_s` for up
  to `networks_per_period` networks heard (ours included) and doubles with each doubling of
  the crowd. An unanswered update goes again in the next slot, not at once.
- Only while a neighbour is heard (a frame of another p1-lora network within
  `crowded_memory_s`): alone, a link sends each telegram as it comes, and resends at once.
- `fast_rendezvous`: while a neighbour is heard, every other DISCOVER asks the receiver to
  meet at the fastest setting (`timing.fast_rendezvous`, where the neighbours run) instead of
  answering at the SF12 rendezvous: a 1.5 s CHALLENGE from the flat arrives in the meter room
  25-65 dB below the neighbours' frames and dies under any of them, and no neighbour's CAD at
  SF7 hears it; at the fast setting it lasts milliseconds and their CAD defers to it.
- `listen_before_talk`: the transmitter's runtime runs a Channel Activity Detection before
  each frame and defers while it hears a preamble, with a contention window that grows with
  the share of busy detections (as Meshtastic's `RadioInterface::getTxDelayMsec` does from its
  channel utilisation). CAD costs no airtime and is no transmission.
- `busy_collisions`: loss while the signal is strong is collisions, not a weak link (the tuner
  keeps its rung; `autotune`), also when a switch confirmation fails.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["AirPolicy", "random_delay"]


@dataclass(frozen=True, slots=True)
class AirPolicy:
    """The sharing-the-air behaviour of one link (see the module docstring)."""

    #: The crowded cadence (0: send each telegram as it comes, as before).
    slot_period_s: float = 2.0
    networks_per_period: int = 10
    #: The crowded cadence applies while another p1-lora network was heard this recently (a
    #: link alone sends at once: nothing to share the air with).
    crowded_memory_s: float = 120.0
    listen_before_talk: bool = True
    fast_rendezvous: bool = True
    #: A failed switch confirmation with strong signal (both directions clear the margin) is
    #: collisions: the transmitter does not step down or block the setting for it.
    busy_collisions: bool = True

    def __post_init__(self) -> None:
        if self.slot_period_s != 0 and not 1 <= self.slot_period_s <= 8:
            raise ValueError("slot_period_s must be 0 (off) or within 1..8 s")
        if self.networks_per_period < 1:
            raise ValueError("networks_per_period must be >= 1")

    @classmethod
    def legacy(cls) -> AirPolicy:
        """The behaviour before "Sharing the air": send at once, resend at once, no CAD."""
        return cls(
            slot_period_s=0.0,
            listen_before_talk=False,
            busy_collisions=False,
            fast_rendezvous=False,
        )


def random_delay(rng: Callable[[int], bytes], span_s: float) -> float:
    """A delay uniform in [0, span_s) from the link's injected randomness (seeded in the
    simulator, so a run repeats)."""
    return span_s * int.from_bytes(rng(2), "big") / 65536
