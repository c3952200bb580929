"""The link simulator: a whole p1-lora link on a virtual clock, and the metrics it produced.

`Simulation` builds what a real installation has, minus the hardware: a meter (the virtual
meter, or a capture replayed byte for byte), a `TxRuntime` and an `RxRuntime` with the real
link state machines, codec and crypto, each driving the real SX127x driver on the
register-level emulator, both chips on one simulated RF channel (path loss, noise, fading,
random loss, collisions, half duplex). Everything runs on one `VirtualClock`, so an hour of link
time takes seconds and every run with the same seed is the same run.

It is a harness as much as a command: tests drive it step by step (`run_until`), change the
channel (`set_path_loss`), reboot either side with its state store (`restart_tx`,
`restart_rx`), add a third radio (`add_radio`: an attacker replaying and forging frames) and
read the `metrics()`; `p1-lora sim` (`tools.sim_command`) prints them; the ESP32 baseline
(`tools.esp32_baseline`) reuses the loop, the meter and the recorders on its own channel.

How time advances (`NodeLoop`): the loop jumps to the earliest of the clock's next scheduled
event (a frame ending, a TX watchdog), every node's deadline and the next scenario action, runs
what is due, and steps every node whose deadline passed or whose `wakeup` was set. Nodes are
stepped in a fixed order (meter, transmitter, receiver) so a telegram submitted at time t is
seen by the transmitter at t.

Metrics (`tools.sim_metrics.SimMetrics`, the same record for the baseline) are computed from
what was observed (`SideRecorder` sees every frame through the runtime's observer hooks), not
from the links' own counters: the duty cycle is the largest
airtime in any sliding hour of the transmission log, delivered telegrams are compared byte for
byte with what the meter produced.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import itertools
import logging
import math
import random
import threading
import time
from array import array
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from p1lora.common.clock import VirtualClock
from p1lora.common.link import (
    FixedRadio,
    LinkConfig,
    LinkEventAction,
    LinkReport,
    RadioMode,
    Transmit,
)
from p1lora.common.link.config import HIGH_POWER_MAX_DUTY_CYCLE
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.regions import SubBand, get_region
from p1lora.hardware.background import BACKGROUND_CHOICES, start_background
from p1lora.hardware.channel import DEFAULT_NOISE_FIGURE_DB, LogDistance, SimChannel
from p1lora.hardware.factory import open_radio
from p1lora.hardware.sx127x import SX127x
from p1lora.receiver.runtime import BaseSink, RxRuntime
from p1lora.service.link_runtime import RuntimeObserver
from p1lora.service.state_store import StateStore
from p1lora.tools.sim_metrics import (
    HOUR_S,
    Delivers,
    RunContext,
    SendRecord,
    SimMetrics,
    convergence_time,
    gap_metrics,
    link_metrics,
    max_window_airtime,
    median,
    percentile,
    settings_timeline,
)
from p1lora.transmitter.capture_replay import CaptureReplay
from p1lora.transmitter.runtime import TxRuntime
from p1lora.transmitter.virtual_meter import VirtualMeter

__all__ = [
    "DEFAULT_PATH_LOSS_DB",
    "HOUR_S",
    "DeliveryRecorder",
    "MeterNode",
    "NodeLoop",
    "SendRecord",
    "SideRecorder",
    "SimMetrics",
    "SimOptions",
    "Simulation",
    "SimulationError",
    "World",
    "build_channel",
    "convergence_time",
    "digest",
    "gap_metrics",
    "max_window_airtime",
    "median",
    "percentile",
    "positions",
    "run_context",
    "settings_timeline",
    "sim_psk",
    "telegram_feed",
]

logger = logging.getLogger(__name__)

DEFAULT_PATH_LOSS_DB = 100.0
#: Frame types that carry telegram updates (their sizes are the "frame bytes" metrics).
UPDATE_FRAMES = frozenset({"DATA", "BATCH", "FRAGMENT"})
#: Frames spent choosing and confirming settings (transmitter side).
TUNING_FRAMES = frozenset({"SWITCH", "PROBE"})
#: Loop iterations at one instant before the simulation is declared stuck (a livelock bug).
_MAX_SPINS = 100_000


class SimulationError(RuntimeError):
    """The simulation cannot continue (a node keeps asking to run at the same instant)."""


# ---------------------------------------------------------------------------- options


@dataclass(frozen=True, slots=True)
class SimOptions:
    """One simulated installation. Invalid values raise ValueError with a clear message
    (`link_config()` raises `RegionError`, a ValueError, for settings the region forbids)."""

    duration_s: float = HOUR_S
    #: Path loss between the two radios; None means `distance_m` (or the default loss).
    path_loss_db: float | None = None
    #: Distance between the radios for the log-distance model (instead of `path_loss_db`).
    distance_m: float | None = None
    path_loss_exponent: float = 3.0
    #: Extra random loss of each frame (both directions).
    frame_loss: float = 0.0
    #: Per-frame Gaussian fading (standard deviation, dB).
    fading_db: float = 0.0
    noise_figure_db: float = DEFAULT_NOISE_FIGURE_DB
    #: LoRaWAN traffic on the air (`hardware.background` presets): "none", "city", "countryside".
    background: str = "none"
    region: str = "EU868"
    frequency_hz: int | None = None
    #: A sub-band named instead of a frequency: the link chooses the channel inside it.
    channel: str | None = None
    tx_power_dbm: int | None = None
    profile: str = "dsmr5"
    #: A telegram capture to replay (looped) instead of the virtual meter.
    meter_file: str | None = None
    seed: int = 1
    #: Path-loss changes over time: (at seconds, new path loss dB).
    degrade: tuple[tuple[float, float], ...] = ()
    #: Fixed radio settings instead of auto-tuning.
    fixed: FixedRadio | None = None
    #: Minimum seconds between telegrams sent (the `set interval` command).
    interval_s: float = 0.0

    def __post_init__(self) -> None:
        checks: tuple[tuple[bool, str], ...] = (
            (math.isfinite(self.duration_s) and self.duration_s > 0, "duration must be > 0 s"),
            (
                self.path_loss_db is None or 0 <= self.path_loss_db <= 250,
                "path loss must be within 0..250 dB",
            ),
            (
                self.distance_m is None or 0 < self.distance_m <= 1_000_000,
                "distance must be within 0..1000000 m",
            ),
            (
                self.path_loss_db is None or self.distance_m is None,
                "give either a path loss or a distance, not both",
            ),
            (1.5 <= self.path_loss_exponent <= 6, "path loss exponent must be within 1.5..6"),
            (0 <= self.frame_loss <= 1, "frame loss must be a probability within 0..1"),
            (0 <= self.fading_db <= 30, "fading must be within 0..30 dB"),
            (0 <= self.noise_figure_db <= 30, "noise figure must be within 0..30 dB"),
            (0 <= self.interval_s <= 3600, "interval must be within 0..3600 s"),
            (
                self.background in BACKGROUND_CHOICES,
                f"background must be one of {', '.join(BACKGROUND_CHOICES)}",
            ),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        for at, loss in self.degrade:
            if not (math.isfinite(at) and at >= 0 and 0 <= loss <= 250):
                raise ValueError(
                    f"path-loss change {at:g}:{loss:g} is not a time >= 0 s and 0..250 dB"
                )

    @property
    def effective_path_loss_db(self) -> float | None:
        """The explicit path loss (None when the distance model applies)."""
        if self.distance_m is not None:
            return None
        return DEFAULT_PATH_LOSS_DB if self.path_loss_db is None else self.path_loss_db

    def link_config(self) -> LinkConfig:
        """Both sides' link configuration for this installation."""
        mode = RadioMode.FIXED if self.fixed is not None else RadioMode.AUTO
        return LinkConfig(
            region=get_region(self.region),
            frequency_hz=self.frequency_hz,
            sub_band_name=self.channel,
            tx_power_dbm=self.tx_power_dbm,
            mode=mode,
            fixed=self.fixed,
            min_interval_s=self.interval_s,
        )


#: Frames that carry telegrams (a STATUS may carry them too: it counts where it rode along).
TELEGRAM_FRAMES = frozenset({*UPDATE_FRAMES, "STATUS"})


def update_share_of_allowance(
    sent: Sequence[SendRecord], duty_cycle: float, end: float
) -> float | None:
    """How much of the duty-cycle allowance that was left for the final setting carried
    telegrams: the airtime of telegram frames at the final setting over (the allowance of the
    run, `duty_cycle` x `end`, less the airtime of every other frame: handshake, tuning,
    keepalives). It answers "what share of the frames the duty cycle allows at this setting
    and frame size did the link send" (issue 15); None without a duty-cycle limit or frames."""
    if duty_cycle >= 1.0 or not sent or end <= 0:
        return None
    final = sent[-1].settings
    carrying = sum(
        s.airtime
        for s in sent
        if s.frame_type in TELEGRAM_FRAMES
        and (s.settings.sf, s.settings.bw_hz) == (final.sf, final.bw_hz)
    )
    other = sum(s.airtime for s in sent) - carrying
    left = duty_cycle * end - other
    return carrying / left if left > 0 else None


def _warn_power_cap(options: SimOptions, config: LinkConfig) -> None:
    """Say it when --tx-power asks for more than the chip is rated for at the channel's duty
    cycle: the link models what the daemons would transmit (`LinkConfig.max_tx_power`), and
    the daemons log the same cap at start."""
    wanted = options.tx_power_dbm
    ceiling = config.max_tx_power()
    if wanted is None or wanted <= ceiling:
        return
    band = config.sub_band()
    logger.warning(
        "--tx-power %d dBm needs the SX127x's +20 dBm mode, rated for at most %.0f%% duty cycle; "
        "sub-band %s allows %.0f%%, so the link transmits at most %d dBm",
        wanted,
        HIGH_POWER_MAX_DUTY_CYCLE * 100,
        band.name,
        band.duty_cycle * 100,
        ceiling,
    )


def sim_psk(seed: int) -> bytes:
    """The simulation's pre-shared key: derived from the seed (a simulation has no secrets)."""
    return hashlib.sha256(f"p1lora-sim-psk:{seed}".encode()).digest()


def build_channel(options: SimOptions, clock: VirtualClock, *, salt: str = "") -> SimChannel:
    """The RF channel of `options` on `clock` (its own seeded random stream)."""
    model = LogDistance(options.path_loss_exponent) if options.distance_m is not None else None
    seed = int.from_bytes(hashlib.sha256(f"{options.seed}:channel{salt}".encode()).digest()[:8])
    channel = SimChannel(
        clock,
        seed=seed,
        path_loss_db=options.effective_path_loss_db or DEFAULT_PATH_LOSS_DB,
        model=model,
        noise_figure_db=options.noise_figure_db,
        loss_probability=options.frame_loss,
        fading_sigma_db=options.fading_db,
    )
    # Unsalted: p1-lora and a baseline hear the same background traffic.
    start_background(channel, options.background, seed=options.seed)
    return channel


def positions(options: SimOptions) -> dict[str, tuple[float, float] | None]:
    """Where the two radios stand (only the distance model uses positions)."""
    if options.distance_m is None:
        return {"tx": None, "rx": None}
    return {"tx": (0.0, 0.0), "rx": (options.distance_m, 0.0)}


def telegram_feed(options: SimOptions) -> Iterator[tuple[float, bytes]]:
    """(t, telegram) from the capture (looped) or the virtual meter; raises ValueError
    (`ReplayError`, unknown profile) with a clear message."""
    if options.meter_file is not None:
        replay = CaptureReplay.from_file(Path(options.meter_file), loop=True)
        distinct = len(set(replay.telegrams))
        if distinct < 2:
            logger.warning(
                "%s holds %d distinct telegram: looped, every repeat is identical to the one "
                "already delivered, which the transmitter does not send again "
                "(telegrams_unchanged); delivery figures say little about the link",
                options.meter_file,
                distinct,
            )
        return iter(replay)
    return iter(VirtualMeter(options.profile, options.seed))


# ---------------------------------------------------------------------------- the loop


class Node(Protocol):
    """Anything the loop steps (runtimes, the meter, the baseline's nodes)."""

    wakeup: threading.Event

    def step(self, now: float) -> float | None:
        """Do what is due; return the next deadline."""


@dataclass
class _Entry:
    node: Node
    order: int
    deadline: float | None = 0.0


class NodeLoop:
    """Steps nodes on a `VirtualClock` (see the module docstring)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self._nodes: dict[str, _Entry] = {}
        self._actions: list[tuple[float, int, Callable[[], None]]] = []
        self._sequence = itertools.count()

    def add(self, name: str, node: Node, order: int) -> None:
        """Step `node` (lower `order` first at the same instant) from now on."""
        self._nodes[name] = _Entry(node, order, self.clock.now())
        self._nodes = dict(sorted(self._nodes.items(), key=lambda item: item[1].order))

    def remove(self, name: str) -> None:
        self._nodes.pop(name, None)

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Run `action` at virtual time `when`, outside any clock callback (so it may build
        radios, which wait on the clock while resetting the chip)."""
        heapq.heappush(self._actions, (when, next(self._sequence), action))

    def run_timed(self, end: float) -> float:
        """`run_until(end)`, returning the wall-clock seconds it took (the runs' `wall_time_s`)."""
        started = time.perf_counter()
        self.run_until(end)
        return time.perf_counter() - started

    def run_until(self, end: float) -> None:
        spins = 0
        last = -math.inf
        while True:
            now = self.clock.now()
            candidates = [self.clock.next_event_time()]
            candidates += [e.deadline for e in self._nodes.values()]
            if self._actions:
                candidates.append(self._actions[0][0])
            if any(e.node.wakeup.is_set() for e in self._nodes.values()):
                candidates.append(now)
            due = [t for t in candidates if t is not None]
            if not due:
                break
            t = max(min(due), now)
            if t > end:
                break
            spins = spins + 1 if t == last else 0
            if spins > _MAX_SPINS:
                raise SimulationError(f"the simulation is stuck at t={t:.6f} s")
            last = t
            if t > now:
                self.clock.advance_to(t)
            self._run_actions()
            self._step_nodes()
        if self.clock.now() < end:
            self.clock.advance_to(end)

    def _run_actions(self) -> None:
        now = self.clock.now()
        while self._actions and self._actions[0][0] <= now:
            _, _, action = heapq.heappop(self._actions)
            action()

    def _step_nodes(self) -> None:
        for entry in list(self._nodes.values()):
            now = self.clock.now()
            if entry.node.wakeup.is_set() or (entry.deadline is not None and entry.deadline <= now):
                entry.node.wakeup.clear()
                entry.deadline = entry.node.step(now)


class MeterNode:
    """Feeds telegrams at their meter times to whatever `target` currently is."""

    def __init__(
        self, feed: Iterator[tuple[float, bytes]], target: Callable[[bytes, float], None]
    ) -> None:
        self.wakeup = threading.Event()
        self._feed = feed
        self._target = target
        self._next: tuple[float, bytes] | None = next(feed, None)

    def step(self, now: float) -> float | None:
        while self._next is not None and self._next[0] <= now:
            t, raw = self._next
            self._target(raw, t)
            self._next = next(self._feed, None)
        return None if self._next is None else self._next[0]


# ---------------------------------------------------------------------------- recording


class SideRecorder(RuntimeObserver):
    """Everything one side did on air, observed through the runtime's hooks.

    Frame bytes are kept only with `keep_payloads` (tests replay them); a week-long run would
    otherwise hold every frame in memory.
    """

    def __init__(self, role: str, *, keep_payloads: bool = False) -> None:
        self.role = role
        self.keep_payloads = keep_payloads
        self.sent: list[SendRecord] = []
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.settings: list[tuple[float, RadioSettings, str]] = []
        self.payloads: list[tuple[float, bytes, RadioSettings]] = []

    def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
        self.sent.append(
            SendRecord(
                now, airtime_s, len(transmit.payload), transmit.frame_type, transmit.settings
            )
        )
        if self.keep_payloads:
            self.payloads.append((now, transmit.payload, transmit.settings))

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        self.received += 1

    def configured(self, now: float, settings: RadioSettings, reason: str) -> None:
        if not self.settings or self.settings[-1][1] != settings:
            self.settings.append((now, settings, reason))

    def link_event(self, now: float, event: LinkEventAction) -> None:
        self.events[event.kind] += 1
        if event.kind == "frame_rejected":
            self.rejected[str(event.fields.get("reason", "unknown"))] += 1

    def airtime(self, types: frozenset[str] | None = None) -> float:
        return sum(s.airtime for s in self.sent if types is None or s.frame_type in types)


class DeliveryRecorder(BaseSink):
    """The receiver's deliveries.

    `delivered` holds (received at, telegram, link report) of the last `keep` deliveries (all
    when `keep` is None); `times` and `digests` hold every delivery compactly for the metrics.
    """

    def __init__(self, keep: int | None = None) -> None:
        self.delivered: deque[tuple[float, bytes, LinkReport]] = deque(maxlen=keep)
        self.times: array[float] = array("d")
        self.digests: list[bytes] = []
        self.statuses = 0
        self.replies: list[object] = []

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.delivered.append((received_at, raw, report))
        self.times.append(received_at)
        self.digests.append(digest(raw))

    @property
    def count(self) -> int:
        return len(self.times)

    def status(self, status: object, received_at: float, report: LinkReport) -> None:
        self.statuses += 1

    def command_reply(self, reply: object) -> None:
        self.replies.append(reply)


# ---------------------------------------------------------------------------- metrics helpers


def digest(raw: bytes) -> bytes:
    """A compact identity for a telegram (metrics compare telegrams without keeping them)."""
    return hashlib.blake2b(raw, digest_size=16).digest()


# ---------------------------------------------------------------------------- the simulation

_ROLES = ("meter", "tx", "rx")


@dataclass(frozen=True, slots=True)
class World:
    """What several links share: one clock, one loop stepping every node, one channel (a
    building, `tools.sim_building`); a lone `Simulation` makes its own."""

    clock: VirtualClock
    loop: NodeLoop
    channel: SimChannel


@dataclass
class _Side:
    radio: SX127x
    recorder: SideRecorder
    store: StateStore
    down: bool = False
    boots: int = 1


class Simulation:
    """A complete p1-lora link on a virtual clock (see the module docstring)."""

    def __init__(  # noqa: PLR0913 - one options object, the rest keyword-only hooks of tests and the building
        self,
        options: SimOptions | None = None,
        *,
        feed: Iterator[tuple[float, bytes]] | None = None,
        config: LinkConfig | None = None,
        rx_config: LinkConfig | None = None,
        on_restart: Callable[[], None] | None = None,
        on_log_level: Callable[[str], None] | None = None,
        keep_telegrams: int | None = None,
        keep_payloads: bool = False,
        world: World | None = None,
        name: str = "",
    ) -> None:
        self.options = options or SimOptions()
        #: Radio and loop names of this link's nodes ("tx", or "l3.tx" in a building).
        self._names = {role: f"{name}.{role}" if name else role for role in _ROLES}
        #: What the transmitter's daemon would do on `restart` / `log level` commands.
        self.on_restart = on_restart
        self.on_log_level = on_log_level or (lambda level: None)
        self.config = config or self.options.link_config()
        self.rx_config = rx_config or self.config
        _warn_power_cap(self.options, self.config)
        if world is None:
            clock = VirtualClock(0.0)
            world = World(clock, NodeLoop(clock), build_channel(self.options, clock))
        self.clock = world.clock
        self.loop = world.loop
        self.channel = world.channel
        self.psk = sim_psk(self.options.seed)
        self._positions = positions(self.options)
        self.deliveries = DeliveryRecorder(keep_telegrams)
        self.missed_while_down = 0
        #: Meter times of every telegram read, and per telegram (by digest) when it was read.
        self._read_at: array[float] = array("d")
        self._read_times: dict[bytes, list[float]] = {}
        self._wall = 0.0
        self._rngs = {
            role: random.Random(f"p1lora-sim:{self.options.seed}:{role}") for role in ("tx", "rx")
        }
        self._tx_side = _Side(
            self._open("tx"),
            SideRecorder("tx", keep_payloads=keep_payloads),
            StateStore.memory("tx"),
        )
        self._rx_side = _Side(
            self._open("rx"),
            SideRecorder("rx", keep_payloads=keep_payloads),
            StateStore.memory("rx"),
        )
        self.tx: TxRuntime = self._new_tx()
        self.rx: RxRuntime = self._new_rx()
        self.meter = MeterNode(feed or telegram_feed(self.options), self._submit)
        self.loop.add(self._names["meter"], self.meter, 0)
        self.loop.add(self._names["tx"], self.tx, 1)
        self.loop.add(self._names["rx"], self.rx, 2)
        explicit = self.options.effective_path_loss_db
        if explicit is not None:
            self.channel.set_path_loss(self._names["tx"], self._names["rx"], explicit)
        for at, loss in self.options.degrade:
            self.loop.at(at, functools.partial(self.set_path_loss, loss))

    # ------------------------------------------------------------------ building

    def _open(self, role: str) -> SX127x:
        return open_radio(
            "sim",
            clock=self.clock,
            channel=self.channel,
            name=self._names[role],
            position=self._positions[role],
        )

    def _rng(self, role: str) -> Callable[[int], bytes]:
        return self._rngs[role].randbytes

    def _new_tx(self) -> TxRuntime:
        side = self._tx_side
        return TxRuntime(
            side.radio,
            self.config,
            self.psk,
            self.clock.now(),
            store=side.store,
            rng=self._rng("tx"),
            observers=[side.recorder],
            on_restart=self.on_restart,
            on_log_level=self.on_log_level,
        )

    def _new_rx(self) -> RxRuntime:
        side = self._rx_side
        return RxRuntime(
            side.radio,
            self.rx_config,
            self.psk,
            self.clock.now(),
            store=side.store,
            rng=self._rng("rx"),
            sinks=[self.deliveries],
            observers=[side.recorder],
        )

    def _submit(self, raw: bytes, t: float) -> None:
        if self._tx_side.down:
            self.missed_while_down += 1
            return
        self._read_at.append(t)
        self._read_times.setdefault(digest(raw), []).append(t)
        self.tx.submit_telegram(raw, t)

    # ------------------------------------------------------------------ running

    @property
    def now(self) -> float:
        return self.clock.now()

    @property
    def telegrams_read(self) -> int:
        """Telegrams the meter produced while the transmitter was on."""
        return len(self._read_at)

    def was_read(self, raw: bytes) -> bool:
        """Whether the transmitter read exactly these bytes from the meter."""
        return digest(raw) in self._read_times

    def run_until(self, end: float) -> None:
        self._wall += self.loop.run_timed(end)

    def run_for(self, seconds: float) -> None:
        self.run_until(self.clock.now() + seconds)

    def run(self) -> SimMetrics:
        """Run for the configured duration and return the metrics."""
        self.run_until(self.options.duration_s)
        return self.metrics()

    def at(self, when: float, action: Callable[[], None]) -> None:
        """Schedule a scenario action (path-loss change, reboot ...) at virtual time `when`."""
        self.loop.at(when, action)

    # ------------------------------------------------------------------ scenario controls

    def set_path_loss(self, loss_db: float, direction: str = "both") -> None:
        """Change the tx<->rx path loss; `direction` "uplink" (tx->rx) or "downlink" alone."""
        pairs = {"both": ("tx", "rx", True), "uplink": ("tx", "rx", False)}
        pairs["downlink"] = ("rx", "tx", False)
        if direction not in pairs:
            raise ValueError(f"direction must be one of {', '.join(pairs)}")
        a, b, symmetric = pairs[direction]
        self.channel.set_path_loss(self._names[a], self._names[b], loss_db, symmetric=symmetric)
        logger.info("sim: path loss %s %.1f dB at t=%.1f s", direction, loss_db, self.now)

    def restart_tx(self, *, down_s: float = 2.0, keep_state: bool = True) -> None:
        """Power-cycle the transmitter now: it is off for `down_s` and boots with its state
        store (or a fresh one: a lost SD card)."""
        self.power_off("tx", keep_state=keep_state)
        self.loop.at(self.now + max(0.0, down_s), lambda: self._boot_if_down("tx"))

    def restart_rx(self, *, down_s: float = 2.0, keep_state: bool = True) -> None:
        """Power-cycle the receiver (see `restart_tx`)."""
        self.power_off("rx", keep_state=keep_state)
        self.loop.at(self.now + max(0.0, down_s), lambda: self._boot_if_down("rx"))

    def power_off(self, role: str, *, keep_state: bool = True) -> None:
        """Switch a side off now (its radio leaves the channel; telegrams meanwhile are lost)."""
        side = self._side(role)
        if side.down:
            raise RuntimeError(f"the {role} is already off")
        self.loop.remove(self._names[role])
        side.radio.close()
        side.down = True
        if not keep_state:
            side.store = StateStore.memory(role)

    def power_on(self, role: str) -> None:
        """Switch a side on now: a new runtime on a freshly reset chip, with its state store."""
        side = self._side(role)
        if not side.down:
            raise RuntimeError(f"the {role} is already on")
        side.radio = self._open(role)
        side.down = False
        side.boots += 1
        if role == "tx":
            self.tx = self._new_tx()
            self.loop.add(self._names["tx"], self.tx, 1)
        else:
            self.rx = self._new_rx()
            self.loop.add(self._names["rx"], self.rx, 2)

    def is_on(self, role: str) -> bool:
        return not self._side(role).down

    def _boot_if_down(self, role: str) -> None:
        if self._side(role).down:
            self.power_on(role)

    def _side(self, role: str) -> _Side:
        sides = {"tx": self._tx_side, "rx": self._rx_side}
        if role not in sides:
            raise ValueError(f"role must be 'tx' or 'rx', not {role!r}")
        return sides[role]

    def add_radio(self, name: str, position: Sequence[float] | None = None) -> SX127x:
        """A third radio on the channel (the caller drives it: configure, send, poll)."""
        return open_radio(
            "sim", clock=self.clock, channel=self.channel, name=name, position=position
        )

    # ------------------------------------------------------------------ results

    @property
    def tx_log(self) -> SideRecorder:
        return self._tx_side.recorder

    @property
    def rx_log(self) -> SideRecorder:
        return self._rx_side.recorder

    @property
    def tx_store(self) -> StateStore:
        return self._tx_side.store

    @property
    def rx_store(self) -> StateStore:
        return self._rx_side.store

    @property
    def sub_band(self) -> SubBand:
        return self.config.sub_band()

    def metrics(self) -> SimMetrics:
        """Everything `p1-lora sim --json` reports (see `tools.sim_command` for the fields)."""
        end = self.clock.now()
        tx, rx = self.tx_log, self.rx_log
        read_times = self._read_times
        latencies: list[float] = []
        corrupt = duplicates = out_of_order = 0
        seen: set[bytes] = set()
        last_meter_time = -math.inf
        delivery_times: list[float] = []
        delivered_meter_times: list[float] = []
        for received_at, key in zip(self.deliveries.times, self.deliveries.digests, strict=True):
            times = read_times.get(key)
            if times is None:
                corrupt += 1  # counted apart, never as a delivery
                continue
            delivery_times.append(received_at)
            if key in seen:
                duplicates += 1
            seen.add(key)
            index = bisect.bisect_right(times, received_at) - 1
            meter_time = times[max(index, 0)]
            delivered_meter_times.append(meter_time)
            latencies.append(received_at - meter_time)
            if meter_time < last_meter_time:
                out_of_order += 1
            last_meter_time = max(last_meter_time, meter_time)
        converged = convergence_time(tx.settings)
        after = converged if converged is not None else math.inf
        read_after = sum(1 for t in self._read_at if t >= after)
        delivered_after = sum(1 for t in delivered_meter_times if t >= after)
        delivered = self.deliveries.count
        read = self.telegrams_read
        details: dict[str, object] = {
            "telegrams_delivered": delivered,
            "telegrams_corrupt": corrupt,
            "telegrams_duplicate": duplicates,
            "telegrams_out_of_order": out_of_order,
            "telegrams_missed_while_down": self.missed_while_down,
            # Identical to what the receiver already had: not sent (the meter's clock did
            # not tick, or a capture of one telegram looped).
            "telegrams_unchanged": self.tx.tx_link.diagnostics(end).telegrams.get(
                "duplicate_telegrams", 0
            ),
            "delivery_ratio": _round(delivered / read if read else None, 4),
            "telegrams_read_after_convergence": read_after,
            "telegrams_delivered_after_convergence": delivered_after,
            "delivery_ratio_after_convergence": _round(
                delivered_after / read_after if read_after else None, 4
            ),
            "update_frames": sum(1 for s in tx.sent if s.frame_type in UPDATE_FRAMES),
            "update_share_of_allowance": _round(
                update_share_of_allowance(tx.sent, self.sub_band.duty_cycle, end), 4
            ),
            "tuning_airtime_s": round(tx.airtime(TUNING_FRAMES), 3),
            "frames_rejected_tx": dict(sorted(tx.rejected.items())),
            "frames_rejected_rx": dict(sorted(rx.rejected.items())),
            "frames_rejected": sum(tx.rejected.values()) + sum(rx.rejected.values()),
            "link_lost": tx.events["link_lost"],
            "switches_committed": tx.events["switch_committed"],
            "switches_failed": tx.events["switch_failed"],
            "channel": _channel_stats(self.channel),
        }
        return link_metrics(
            protocol="p1-lora",
            delivers=Delivers.TELEGRAMS,
            context=run_context(self.options, self.config.channel_hz, self.sub_band),
            end=end,
            wall_time_s=self._wall,
            tx_sent=tx.sent,
            rx_sent=rx.sent,
            tx_settings=tx.settings,
            telegrams_read=read,
            delivery_times=delivery_times,
            latencies=latencies,
            delivered_corrupt=corrupt,
            data_frame_types=UPDATE_FRAMES,
            converged=converged,
            final=self.tx.tx_link.settings,
            final_state=str(self.tx.tx_link.state) if self.is_on("tx") else "off",
            details=details,
        )


def run_context(options: SimOptions, frequency_hz: int, band: SubBand) -> RunContext:
    """The run's place on the air, as both protocols' metrics report it."""
    return RunContext(
        seed=options.seed,
        region=options.region,
        frequency_hz=frequency_hz,
        sub_band=band.name,
        duty_cycle_limit=band.duty_cycle,
        path_loss_db=options.effective_path_loss_db,
        distance_m=options.distance_m,
    )


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def _channel_stats(channel: SimChannel) -> dict[str, int | float]:
    return channel.stats.as_dict()  # collisions by kind, busy time, background frames
