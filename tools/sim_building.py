"""A block of flats in the simulator: N independent p1-lora links sharing one meter room.

`Building` puts N complete links (`tools.sim.Simulation`: their own keys, meters, seeds and
state stores) into one world: one `VirtualClock`, one `NodeLoop` stepping every node, one
`SimChannel` (with the background traffic of `SimOptions.background` when the channel has it).
Every link is a full `Simulation`, so each reports exactly the metrics a single-link run does.

The geometry, drawn from the building's seed (assumptions, not measurements: a meter room in
the basement and flats above it; the ranges are the ones issue 16 asks for):

- transmitters stand together in the meter room, 60-70 dB apart (a few metres, a cabinet);
- each receiver sits in its own flat at 95-125 dB from its transmitter (floors and walls);
- a receiver hears the other transmitters about as well as its own (the same room, other
  antennas): its own loss +-6 dB;
- receivers hear each other at 60-115 dB (from the next flat to the other end of the block).

Meters: `phase="aligned"` makes every meter send on the whole second (DSMR 5 meters are
synchronised to the grid operator's clock), `phase="random"` shifts each meter by a drawn
fraction of its interval. Everything is seeded: the same options give the same run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Final

from p1lora.common.clock import VirtualClock
from p1lora.common.link import LinkConfig
from p1lora.common.link.air import AirPolicy
from p1lora.tools.sim import (
    NodeLoop,
    SendRecord,
    SimOptions,
    Simulation,
    World,
    build_channel,
    median,
    telegram_feed,
)

__all__ = [
    "PHASES",
    "Building",
    "BuildingOptions",
    "Geometry",
    "draw_geometry",
    "union_airtime",
]

PHASES: Final = ("aligned", "random")
#: Loss between two transmitters in the meter room (dB).
ROOM_LOSS_DB: Final = (60.0, 70.0)
#: Loss from a transmitter to its own receiver in a flat (dB).
OWN_LOSS_DB: Final = (95.0, 125.0)
#: A receiver hears the other transmitters at its own loss +- this (dB).
NEIGHBOUR_SPREAD_DB: Final = 6.0
#: Loss between two receivers in different flats (dB).
FLAT_LOSS_DB: Final = (60.0, 115.0)
#: A link that delivered nothing in this last stretch of the run is lost for good.
LOST_FOR_GOOD_S: Final = 600.0


@dataclass(frozen=True, slots=True)
class BuildingOptions:
    """N links in one meter room. `base` holds what every link shares (duration, region,
    background, profile, seed of the building); its path loss is ignored (drawn per link)."""

    links: int = 2
    phase: str = "aligned"
    base: SimOptions = dataclasses.field(default_factory=SimOptions)
    #: Run the links as they were before "Sharing the air" (`AirPolicy.legacy()`).
    legacy_air: bool = False
    #: Each link's own tx->rx loss instead of drawn ones (tests place a weak link).
    own_path_loss_db: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.links <= 64:
            raise ValueError("links must be within 1..64")
        if self.own_path_loss_db and len(self.own_path_loss_db) != self.links:
            raise ValueError("give one own path loss per link")
        if any(not 0 <= loss <= 250 for loss in self.own_path_loss_db):
            raise ValueError("path loss must be within 0..250 dB")
        if self.phase not in PHASES:
            raise ValueError(f"phase must be one of {', '.join(PHASES)}")
        if self.base.meter_file is not None:
            raise ValueError("a building runs virtual meters (one capture cannot be N meters)")
        if self.base.distance_m is not None or self.base.degrade:
            raise ValueError("a building draws its own path losses (no distance or degrade)")

    def link_config(self) -> LinkConfig:
        config = self.base.link_config()
        if self.legacy_air:
            config = dataclasses.replace(config, air=AirPolicy.legacy())
        return config


@dataclass(frozen=True, slots=True)
class Geometry:
    """Drawn path losses (dB) of a building; `own[i]` is link i's tx->rx loss."""

    own: tuple[float, ...]
    #: (a, b) -> loss for every other pair of radios ("l0.tx", "l1.rx", ...).
    cross: dict[tuple[str, str], float]


def _name(index: int, role: str) -> str:
    return f"l{index}.{role}"


def draw_geometry(links: int, seed: int, own_losses: Sequence[float] = ()) -> Geometry:
    """The building's path losses (see the module docstring), the same for the same seed;
    `own_losses` replaces the drawn tx->rx losses (the cross losses follow them)."""
    rng = random.Random(f"p1lora-building:{seed}")
    own = tuple(round(rng.uniform(*OWN_LOSS_DB), 1) for _ in range(links))
    if own_losses:
        own = tuple(float(loss) for loss in own_losses)
    cross: dict[tuple[str, str], float] = {}
    for i in range(links):
        for j in range(i + 1, links):
            cross[(_name(i, "tx"), _name(j, "tx"))] = round(rng.uniform(*ROOM_LOSS_DB), 1)
            cross[(_name(i, "rx"), _name(j, "rx"))] = round(rng.uniform(*FLAT_LOSS_DB), 1)
            for a, b in ((i, j), (j, i)):
                spread = rng.uniform(-NEIGHBOUR_SPREAD_DB, NEIGHBOUR_SPREAD_DB)
                cross[(_name(a, "tx"), _name(b, "rx"))] = round(own[b] + spread, 1)
    return Geometry(own, cross)


def _link_seed(seed: int, index: int) -> int:
    digest = hashlib.sha256(f"p1lora-building:{seed}:link{index}".encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def _shifted(feed: Iterator[tuple[float, bytes]], offset: float) -> Iterator[tuple[float, bytes]]:
    return ((t + offset, raw) for t, raw in feed)


class Building:
    """N links in one world (see the module docstring)."""

    def __init__(self, options: BuildingOptions) -> None:
        self.options = options
        base = options.base
        self.clock = VirtualClock(0.0)
        self.loop = NodeLoop(self.clock)
        self.channel = build_channel(base, self.clock, salt=":building")
        self.world = World(self.clock, self.loop, self.channel)
        self.geometry = draw_geometry(options.links, base.seed, options.own_path_loss_db)
        config = options.link_config()
        phase_rng = random.Random(f"p1lora-building:{base.seed}:phase")
        self.links: list[Simulation] = []
        for index in range(options.links):
            link_options = dataclasses.replace(
                base, seed=_link_seed(base.seed, index), path_loss_db=self.geometry.own[index]
            )
            feed = telegram_feed(link_options)
            if options.phase == "random":
                feed = _shifted(feed, phase_rng.random())
            self.links.append(
                Simulation(
                    link_options,
                    feed=feed,
                    config=config,
                    keep_telegrams=0,
                    world=self.world,
                    name=f"l{index}",
                )
            )
        for (a, b), loss in self.geometry.cross.items():
            self.channel.set_path_loss(a, b, loss)
        self._wall = 0.0

    def run_until(self, end: float) -> None:
        self._wall += self.loop.run_timed(end)

    def run(self) -> dict[str, object]:
        """Run for the configured duration; the `--json` object."""
        self.run_until(self.options.base.duration_s)
        return self.metrics()

    def metrics(self) -> dict[str, object]:
        """Per link what a single-link run reports (`links`), plus the shared air."""
        end = self.clock.now()
        links: list[dict[str, object]] = []
        frames: list[SendRecord] = []
        for index, sim in enumerate(self.links):
            record = sim.metrics().as_dict()
            record.pop("channel", None)  # the shared channel is reported once, below
            record["link"] = index
            record["own_path_loss_db"] = self.geometry.own[index]
            record["lost_for_good"] = _lost_for_good(sim, end)
            links.append(record)
            frames += sim.tx_log.sent
            frames += sim.rx_log.sent
        config = self.options.link_config()
        channel = dict(_channel_counters(self.channel))
        busy = union_airtime(frames)
        channel["p1lora_busy_s"] = round(busy, 3)
        channel["p1lora_occupancy"] = round(busy / end, 4) if end > 0 else None
        return {
            "links": links,
            "link_count": len(links),
            "phase": self.options.phase,
            "legacy_air": self.options.legacy_air,
            "background": getattr(self.options.base, "background", "none"),
            "duration_s": round(end, 3),
            "wall_time_s": round(self._wall, 3),
            "seed": self.options.base.seed,
            "duty_cycle_limit": config.sub_band().duty_cycle,
            "channel": channel,
            "summary": summarise(links),
        }


def _channel_counters(channel: object) -> dict[str, object]:
    """The channel's counters: by kind when the channel reports them (`stats.as_dict`)."""
    stats = getattr(channel, "stats", None)
    as_dict = getattr(stats, "as_dict", None)
    if callable(as_dict):
        return dict(as_dict())
    if stats is None:
        return {}
    return {f.name: getattr(stats, f.name) for f in dataclasses.fields(stats)}


def _lost_for_good(sim: Simulation, end: float) -> bool:
    """No delivery at all, or none in the run's last `LOST_FOR_GOOD_S` (when it is longer)."""
    times = sim.deliveries.times
    if not times:
        return True
    return end > 2 * LOST_FOR_GOOD_S and times[-1] < end - LOST_FOR_GOOD_S


def union_airtime(frames: Sequence[SendRecord]) -> float:
    """Seconds during which at least one of `frames` was on air (overlaps counted once)."""
    total = 0.0
    current_start = current_end = None
    for frame in sorted(frames, key=lambda s: s.start):
        if current_end is None or frame.start > current_end:
            if current_end is not None and current_start is not None:
                total += current_end - current_start
            current_start, current_end = frame.start, frame.end
        else:
            current_end = max(current_end, frame.end)
    if current_end is not None and current_start is not None:
        total += current_end - current_start
    return total


def summarise(links: Sequence[dict[str, object]]) -> dict[str, object]:
    """The figures the building benchmark prints: per-link delivery (min, median), ratio,
    the busiest node's duty cycle, link losses."""

    def numbers(key: str) -> list[float]:
        return [float(v) for link in links if isinstance(v := link.get(key), int | float)]

    rates = numbers("delivered_per_hour")
    ratios = numbers("delivery_ratio")
    duty = numbers("duty_cycle_max_tx") + numbers("duty_cycle_max_rx")
    return {
        "delivered_per_hour_min": min(rates, default=None),
        "delivered_per_hour_median": median(rates),
        "delivery_ratio_min": min(ratios, default=None),
        "delivery_ratio_median": median(ratios),
        "duty_cycle_max": max(duty, default=None),
        "budget_exceeded": any(bool(link.get("budget_exceeded")) for link in links),
        "link_losses": int(sum(numbers("link_lost"))),
        "lost_for_good": sum(1 for link in links if link.get("lost_for_good")),
        "first_delivery_max_s": max(numbers("first_delivery_s"), default=None),
    }
