"""The simulated RF channel: emulated SX127x chips hearing each other in one process.

Physics, kept simple but with the effects that shape a LoRa link and a crowded channel (the
interference rules and their sources are in `interference`):

- Received power = TX power (from the chip's PA registers) - path loss (+ per-frame Gaussian
  fading if enabled). Path loss is per link: an explicit value, or a log-distance model from the
  radios' positions, or the channel's default. It can change at run time (tests degrade a link
  mid-run).
- Noise floor = -174 dBm/Hz + 10 log10(BW) + noise figure (7 dB, SX1276 datasheet Table 38):
  SNR = RSSI - noise floor.
- Demodulation: each SF has an SNR floor (design.md: SF7 -7.5 dB ... SF12 -20 dB). The payload
  decodes with a probability that falls from 1 to 0 around the floor along a logistic curve
  (10 %..90 % over about 2.6 dB). The explicit header (always CR 4/8) survives about 1.5 dB
  lower, so frames in the transition sometimes arrive with a payload CRC error instead of not at
  all. More than 5 dB below the floor the receiver does not even notice the preamble.
- A chip decodes a frame only with the same carrier (Frf register), SF, BW, sync word, IQ
  polarity and low-data-rate setting, in LoRa receive mode when the frame starts, still
  receiving with unchanged settings when it ends, and not transmitting meanwhile (half-duplex).
- The receiver locks onto the first preamble it detects at its SF/BW/IQ, *whatever the sync
  word*: a foreign preamble keeps it busy until that frame's header fails, and frames that start
  meanwhile are lost. A frame `CO_SF_CAPTURE_DB` stronger that starts during the locked frame's
  preamble takes the receiver over; a later one corrupts the locked frame and is lost itself.
- The locked frame survives when it is `CO_SF_CAPTURE_DB` above the sum of the overlapping
  same-SF interference, and above the sum of each other SF's (and bandwidth's) interference by
  that pair's measured SIR (Croce et al. 2018), all weighted by spectral overlap. IQ-inverted
  frames (LoRaWAN downlinks) are never detected but interfere. `capture=False` makes any
  same-SF overlap fatal (pure ALOHA).
- Optional random loss per frame and link. Every random draw comes from one seeded generator in
  event order, so a run on a `VirtualClock` is reproducible.

Everything happens in scheduled callbacks on the injected `Scheduler`: a frame ends at
`start + time on air` and the receiving chips raise RxDone then. The bookkeeping is by intervals
(frames with a start and an end), never per sample. The loopback-UDP channel (`udp_channel`)
reuses this class for the radios of one process and injects remote frames with `inject`;
`background` injects LoRaWAN traffic the same way.

`activity(name, params, at)` answers what Channel Activity Detection needs: the strongest
preamble and chirps of one SF/BW/IQ at a radio at an instant, and the energy in its channel.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Final

from p1lora.common.clock import Scheduler, TimerHandle
from p1lora.hardware.emulator import (
    AirFrame,
    AirParams,
    AntennaPort,
    EmulationLock,
    Reception,
    SX127xEmulator,
)
from p1lora.hardware.interference import (
    CO_SF_CAPTURE_DB,
    NOISE_FIGURE_DB,
    Detection,
    carrier_hz,
    detection,
    header_end,
    in_band_fraction,
    is_co_sf,
    lock_deadline,
    peak_sum_mw,
    preamble_end,
    required_sir_db,
)

__all__ = [
    "CAPTURE_THRESHOLD_DB",
    "DEFAULT_NOISE_FIGURE_DB",
    "DEFAULT_PATH_LOSS_DB",
    "DEMODULATION_FLOOR_DB",
    "AirActivity",
    "ChannelStats",
    "LogDistance",
    "SimChannel",
    "header_success_probability",
    "noise_floor_dbm",
    "payload_success_probability",
]

logger = logging.getLogger(__name__)

#: SNR (dB) each SF needs to demodulate (Semtech datasheet table 13; design.md).
DEMODULATION_FLOOR_DB: Final = MappingProxyType(
    {6: -5.0, 7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
)
THERMAL_NOISE_DBM_PER_HZ: Final = -174.0
#: SX1276 datasheet Rev. 7, 5.5.3, Table 38 (see `interference`): 7 dB at 868/915 MHz.
DEFAULT_NOISE_FIGURE_DB: Final = NOISE_FIGURE_DB
#: A link through a few walls and floors: -86 dBm at 14 dBm, comfortable even at SF7/BW500.
DEFAULT_PATH_LOSS_DB: Final = 100.0
#: Co-SF capture: the locked frame survives the sum of same-SF interferers this much weaker.
CAPTURE_THRESHOLD_DB: Final = CO_SF_CAPTURE_DB
#: Logistic scale of the decode probability around the floor (10-90 % over 4.4 * scale dB).
TRANSITION_SCALE_DB: Final = 0.6
#: How much lower than the payload the (CR 4/8) explicit header still decodes.
HEADER_ADVANTAGE_DB: Final = 1.5
#: Below floor - 5 dB the preamble goes unnoticed (the receiver stays free for other frames).
DETECTION_MARGIN_DB: Final = -5.0
#: A signal this far (dB) below the frame it could hurt is left out of its interference sums:
#: far below every SIR threshold, and it keeps the sums short in a crowded run.
_NEGLIGIBLE_DB = 40.0
#: CAD correlates with chirps whose carrier is within a quarter bandwidth of its own (the
#: SX127x demodulates with a carrier error up to +-25 % of the bandwidth; an assumption here).
_CAD_MIN_OVERLAP = 0.75
#: The SNR range RegPktSnrValue can express (signed byte / 4).
_SNR_RANGE = (-32.0, 31.75)


def noise_floor_dbm(bw_hz: int, noise_figure_db: float = DEFAULT_NOISE_FIGURE_DB) -> float:
    """Thermal noise in `bw_hz` plus the receiver's noise figure."""
    return THERMAL_NOISE_DBM_PER_HZ + 10 * math.log10(bw_hz) + noise_figure_db


def _logistic(x: float) -> float:
    if x < -60:
        return 0.0
    if x > 60:
        return 1.0
    return 1.0 / (1.0 + math.exp(-x))


def payload_success_probability(snr_db: float, sf: int) -> float:
    """Probability that a frame at `snr_db` decodes with a good CRC (50 % at the SF's floor)."""
    return _logistic((snr_db - DEMODULATION_FLOOR_DB[sf]) / TRANSITION_SCALE_DB)


def header_success_probability(snr_db: float, sf: int) -> float:
    """Probability that the receiver sees a valid header (then RxDone, CRC good or not)."""
    margin = snr_db - DEMODULATION_FLOOR_DB[sf] + HEADER_ADVANTAGE_DB
    return _logistic(margin / TRANSITION_SCALE_DB)


@dataclass(frozen=True, slots=True)
class LogDistance:
    """Log-distance path loss: PL(d) = PL(d0) + 10 n log10(d / d0).

    `reference_loss_db` None means free-space loss at `reference_m` for the frame's frequency
    (31.2 dB at 1 m and 868 MHz). An exponent of 2 is free space, 2.7-3.5 urban or through
    buildings, 4-6 indoors across floors.
    """

    exponent: float = 3.0
    reference_m: float = 1.0
    reference_loss_db: float | None = None

    def loss_db(self, distance_m: float, frequency_hz: float) -> float:
        distance = max(distance_m, self.reference_m)
        reference = self.reference_loss_db
        if reference is None:
            reference = 20 * math.log10(4 * math.pi * self.reference_m * frequency_hz / 299_792_458)
        return reference + 10 * self.exponent * math.log10(distance / self.reference_m)


@dataclass(slots=True)
class ChannelStats:
    """What happened to frames, counted per (frame, receiver) pair except `frames_sent` and
    `background_frames`. `as_dict()` is the form the JSON reports carry.

    Losses by kind: `co_sf_lost` (same-SF interference above the capture threshold, or taken
    over by a stronger frame during the preamble), `inter_sf_lost` (another SF or bandwidth above
    the Croce threshold), `busy_lost` (a decodable frame started while the receiver was locked
    on another one; `foreign_busy_lost` counts those where the lock was a foreign preamble), and
    `background_lost` (any of those where background traffic was the cause). `collisions` is
    `co_sf_lost + inter_sf_lost`. `busy_s` is receiver-seconds locked on frames of any kind,
    `foreign_busy_s` the part spent on frames the receiver could not decode.
    """

    frames_sent: int = 0
    delivered: int = 0
    crc_errors: int = 0
    below_floor: int = 0
    collisions: int = 0
    half_duplex: int = 0
    not_listening: int = 0
    settings_mismatch: int = 0
    left_receive: int = 0
    random_losses: int = 0
    aborted: int = 0
    co_sf_lost: int = 0
    inter_sf_lost: int = 0
    captures: int = 0
    busy_lost: int = 0
    foreign_busy_lost: int = 0
    foreign_preambles: int = 0
    background_lost: int = 0
    background_frames: int = 0
    busy_s: float = 0.0
    foreign_busy_s: float = 0.0

    def as_dict(self) -> dict[str, int | float]:
        return {
            f.name: round(value, 3) if isinstance(value := getattr(self, f.name), float) else value
            for f in fields(self)
        }


@dataclass(frozen=True, slots=True)
class AirActivity:
    """What is on one radio's channel at one instant, as CAD and RSSI see it (dBm; -inf: none).

    `preamble_dbm`: the strongest detectable preamble of the queried SF, bandwidth and IQ
    polarity (what SX127x CAD is specified to find). `chirps_dbm`: the strongest detectable
    signal of that modulation in any part of its frame. `energy_dbm`: everything in the
    channel plus the noise floor (what RegRssiValue shows). "Detectable" means an SNR above the
    SF's demodulation floor - 5 dB, the preamble detection limit used for reception.
    """

    at: float
    preamble_dbm: float
    chirps_dbm: float
    energy_dbm: float
    noise_floor_dbm: float

    @property
    def preamble_detected(self) -> bool:
        return self.preamble_dbm > -math.inf

    @property
    def chirps_detected(self) -> bool:
        return self.chirps_dbm > -math.inf


@dataclass(slots=True)
class _Node:
    chip: SX127xEmulator
    position: tuple[float, ...] | None
    noise_figure_db: float


@dataclass(slots=True)
class _OnAir:
    frame: AirFrame
    centre_hz: float
    background: bool = False
    rx_power: dict[str, float] = field(default_factory=dict)
    timer: TimerHandle | None = None
    finished: bool = False


@dataclass(slots=True)
class _Lock:
    """A receiver synchronised on a frame: until its end, or its header (a foreign one)."""

    onair: _OnAir
    epoch: int
    kind: Detection
    since: float
    release: TimerHandle | None = None


class SimChannel:
    """Any number of emulated chips on one simulated channel (implements `emulator.Medium`)."""

    def __init__(  # noqa: PLR0913 - the medium's physics settings, all keyword-only
        self,
        scheduler: Scheduler,
        *,
        seed: int | None = 0,
        path_loss_db: float = DEFAULT_PATH_LOSS_DB,
        model: LogDistance | None = None,
        noise_figure_db: float = DEFAULT_NOISE_FIGURE_DB,
        capture: bool = True,
        capture_threshold_db: float = CAPTURE_THRESHOLD_DB,
        loss_probability: float = 0.0,
        fading_sigma_db: float = 0.0,
        lock: EmulationLock | None = None,
    ) -> None:
        if not 0.0 <= loss_probability <= 1.0:
            raise ValueError(f"loss probability {loss_probability} is outside 0..1")
        if fading_sigma_db < 0:
            raise ValueError("fading sigma cannot be negative")
        self.scheduler = scheduler
        self.lock = lock or EmulationLock()
        self.default_path_loss_db = float(path_loss_db)
        self.model = model
        self.noise_figure_db = noise_figure_db
        self.capture = capture
        self.capture_threshold_db = capture_threshold_db
        self.loss_probability = loss_probability
        self.fading_sigma_db = fading_sigma_db
        self.stats = ChannelStats()
        self.rng = random.Random(seed)
        #: Called (lock held) for each frame a local chip starts; the UDP channel forwards it.
        self.on_local_frame: Callable[[AirFrame], None] | None = None
        #: Called (lock held) when a local chip cuts its frame short.
        self.on_local_abort: Callable[[AirFrame], None] | None = None
        self._nodes: dict[str, _Node] = {}
        self._pair_loss: dict[tuple[str, str], float] = {}
        self._frames: list[_OnAir] = []
        self._locks: dict[str, _Lock] = {}
        self._remote_ids = 0

    # ------------------------------------------------------------------ set-up

    def add_radio(
        self,
        name: str,
        *,
        position: Sequence[float] | None = None,
        freq_offset_hz: float = 0.0,
        antenna: AntennaPort = "both",
        noise_figure_db: float | None = None,
    ) -> SX127xEmulator:
        """A new emulated chip on this channel (its `spi`, `reset_pin`, `dio0` for a driver)."""
        with self.lock.hold():
            if name in self._nodes:
                raise ValueError(f"a radio named {name!r} is already on this channel")
            chip = SX127xEmulator(
                self.scheduler,
                name=name,
                medium=self,
                lock=self.lock,
                freq_offset_hz=freq_offset_hz,
                antenna=antenna,
            )
            self._nodes[name] = _Node(
                chip,
                tuple(position) if position is not None else None,
                self.noise_figure_db if noise_figure_db is None else noise_figure_db,
            )
            return chip

    def remove_radio(self, name: str) -> None:
        with self.lock.hold():
            self._nodes.pop(name, None)
            lock = self._locks.pop(name, None)
            if lock is not None and lock.release is not None:
                lock.release.cancel()

    @property
    def radio_names(self) -> list[str]:
        with self.lock.hold():
            return list(self._nodes)

    def chip(self, name: str) -> SX127xEmulator:
        return self._nodes[name].chip

    def set_path_loss(
        self, a: str, b: str, loss_db: float | None, *, symmetric: bool = True
    ) -> None:
        """Fix the loss from `a` to `b` (and back); None returns the link to model/default."""
        with self.lock.hold():
            pairs = [(a, b), (b, a)] if symmetric else [(a, b)]
            for pair in pairs:
                if loss_db is None:
                    self._pair_loss.pop(pair, None)
                else:
                    self._pair_loss[pair] = float(loss_db)

    def set_default_path_loss(self, loss_db: float) -> None:
        with self.lock.hold():
            self.default_path_loss_db = float(loss_db)

    def set_position(self, name: str, position: Sequence[float] | None) -> None:
        with self.lock.hold():
            self._nodes[name].position = tuple(position) if position is not None else None

    # ------------------------------------------------------------------ link budget

    def path_loss_db(self, src: str, dst: str, frequency_hz: float = 868e6) -> float:
        """The mean loss from `src` to `dst`: explicit, else log-distance, else the default."""
        explicit = self._pair_loss.get((src, dst))
        if explicit is not None:
            return explicit
        a, b = self._nodes.get(src), self._nodes.get(dst)
        if self.model is not None and a and b and a.position is not None and b.position:
            return self.model.loss_db(math.dist(a.position, b.position), frequency_hz)
        return self.default_path_loss_db

    def noise_floor_for(self, name: str, bw_hz: int) -> float:
        return noise_floor_dbm(bw_hz, self._nodes[name].noise_figure_db)

    def expected_snr_db(self, src: str, dst: str, tx_power_dbm: float, bw_hz: int) -> float:
        """Mean SNR of a link (no fading, no interference): for tests and planning."""
        rssi = tx_power_dbm - self.path_loss_db(src, dst)
        return rssi - self.noise_floor_for(dst, bw_hz)

    # ------------------------------------------------------------------ what is on the air

    def activity(self, name: str, params: AirParams, at: float | None = None) -> AirActivity:
        """What radio `name`, tuned to `params` (carrier, SF, BW, IQ), has on its air at `at`
        (default: now). The query for Channel Activity Detection and RSSI; it changes nothing.

        `at` may lie in the past only as far back as frames are still kept (those overlapping
        a frame still on the air); the emulator asks at the instant CAD starts or ends.
        """
        with self.lock.hold():
            when = self.scheduler.now() if at is None else at
            node = self._nodes.get(name)
            nf = node.noise_figure_db if node is not None else self.noise_figure_db
            offset = node.chip.freq_offset_hz if node is not None else 0.0
            floor = noise_floor_dbm(params.bw_hz, nf)
            detect = floor + DEMODULATION_FLOOR_DB[params.sf] + DETECTION_MARGIN_DB
            centre = carrier_hz(params, offset)
            energy_mw = _mw(floor)
            preamble = chirps = -math.inf
            for onair in self._frames:
                frame = onair.frame
                power = onair.rx_power.get(name)
                if power is None or not frame.start <= when < frame.end:
                    continue
                fraction = in_band_fraction(
                    centre, params.bw_hz, onair.centre_hz, frame.params.bw_hz
                )
                energy_mw += _mw(power) * fraction
                same_chirp = (
                    is_co_sf(params, frame.params) and params.invert_iq == frame.params.invert_iq
                )
                if not same_chirp or fraction < _CAD_MIN_OVERLAP or power < detect:
                    continue
                chirps = max(chirps, power)
                if when < preamble_end(frame):
                    preamble = max(preamble, power)
            return AirActivity(when, preamble, chirps, _dbm(energy_mw), floor)

    # ------------------------------------------------------------------ Medium protocol

    def frame_started(self, chip: SX127xEmulator, frame: AirFrame) -> None:
        with self.lock.hold():
            lock = self._locks.get(chip.name)
            if lock is not None:
                self.stats.half_duplex += 1  # it was receiving a frame and now talks over it
                self._unlock(chip.name, lock)
            self._begin(frame, None, background=False)
            if self.on_local_frame is not None:
                self.on_local_frame(frame)

    def frame_aborted(self, chip: SX127xEmulator, frame: AirFrame, at: float) -> None:
        with self.lock.hold():
            self._abort(frame, at)
            if self.on_local_abort is not None:
                self.on_local_abort(frame)

    def channel_busy(self, chip: SX127xEmulator, params: AirParams) -> bool:
        """CAD: LoRa chirps of `params` detectable at `chip` now (see `activity`)."""
        return self.activity(chip.name, params).chirps_detected

    def receiving(self, chip: SX127xEmulator) -> bool:
        with self.lock.hold():
            return chip.name in self._locks

    def noise_rssi_dbm(self, chip: SX127xEmulator, bw_hz: int) -> float:
        own = chip.air_params()
        params = own if own.bw_hz == bw_hz else dataclasses.replace(own, bw_hz=bw_hz)
        return self.activity(chip.name, params).energy_dbm

    # ------------------------------------------------------------------ remote frames

    def inject(
        self,
        origin: str,
        params: AirParams,
        payload: bytes,
        *,
        tx_power_dbm: float,
        airtime: float,
        path_loss_db: float,
        freq_offset_hz: float = 0.0,
        background: bool = False,
    ) -> AirFrame:
        """A frame from outside this process starts now (the UDP channel; `background` marks
        LoRaWAN traffic from `background`, counted apart)."""
        with self.lock.hold():
            self._remote_ids += 1
            now = self.scheduler.now()
            frame = AirFrame(
                frame_id=-self._remote_ids,
                origin=origin,
                params=params,
                payload=bytes(payload),
                tx_power_dbm=tx_power_dbm,
                start=now,
                end=now + max(0.0, airtime),
                freq_offset_hz=freq_offset_hz,
            )
            self._begin(frame, path_loss_db, background=background)
            return frame

    def abort(self, frame: AirFrame, at: float | None = None) -> None:
        """Cut an injected frame short."""
        with self.lock.hold():
            self._abort(frame, self.scheduler.now() if at is None else at)

    # ------------------------------------------------------------------ the physics

    def _begin(
        self, frame: AirFrame, path_loss_override: float | None, *, background: bool
    ) -> None:
        onair = _OnAir(frame, carrier_hz(frame.params, frame.freq_offset_hz), background)
        self._frames.append(onair)
        self.stats.frames_sent += 1
        if background:
            self.stats.background_frames += 1
        for name, node in self._nodes.items():
            if name == frame.origin:
                continue
            loss = path_loss_override
            if loss is None:
                loss = self.path_loss_db(frame.origin, name, frame.params.frequency_hz)
            fading = self.rng.gauss(0.0, self.fading_sigma_db) if self.fading_sigma_db else 0.0
            power = frame.tx_power_dbm - loss + fading
            onair.rx_power[name] = power
            self._offer(name, node, onair, power)
        onair.timer = self.scheduler.call_at(frame.end, lambda: self._end(onair))

    def _offer(self, name: str, node: _Node, onair: _OnAir, power: float) -> None:  # noqa: C901 - the receiver's lock decision, step by step as in the datasheet
        """A frame starts at radio `name`: does its receiver lock onto it?"""
        frame = onair.frame
        state = node.chip.listen_state()
        if state.transmitting:
            if node.chip.air_params().can_receive(frame.params):
                self.stats.half_duplex += 1
            return
        if not state.listening or state.params is None:
            self.stats.not_listening += 1
            return
        kind = detection(state.params, frame.params)
        if kind is not Detection.DECODES:
            self.stats.settings_mismatch += 1
            if kind is Detection.NONE:
                return
        snr = power - noise_floor_dbm(frame.params.bw_hz, node.noise_figure_db)
        if snr < DEMODULATION_FLOOR_DB[frame.params.sf] + DETECTION_MARGIN_DB:
            if kind is Detection.DECODES:
                self.stats.below_floor += 1
            return
        lock = self._locks.get(name)
        if lock is not None:
            if not self._takes_over(lock, name, power):
                self._count_busy_loss(lock, kind)
                return
            self.stats.captures += 1
            if lock.kind is Detection.DECODES:
                self._count_collision(co_sf=True, background=onair.background)
            self._unlock(name, lock)
        if kind is not Detection.DECODES:
            self.stats.foreign_preambles += 1
        self._locks[name] = new = _Lock(onair, state.epoch, kind, self.scheduler.now())
        if kind is Detection.HEADER_FAILS:
            new.release = self.scheduler.call_at(
                header_end(frame), lambda: self._header_failed(name, new)
            )

    def _takes_over(self, lock: _Lock, name: str, power: float) -> bool:
        """Capture by a later, stronger frame: only while the locked one is in its preamble."""
        locked = lock.onair
        return (
            self.capture
            and self.scheduler.now() < lock_deadline(locked.frame)
            and power - locked.rx_power[name] >= self.capture_threshold_db
        )

    def _count_busy_loss(self, lock: _Lock, kind: Detection) -> None:
        if kind is not Detection.DECODES:
            return
        self.stats.busy_lost += 1
        if lock.kind is not Detection.DECODES:
            self.stats.foreign_busy_lost += 1
        if lock.onair.background:
            self.stats.background_lost += 1

    def _count_collision(self, *, co_sf: bool, background: bool) -> None:
        self.stats.collisions += 1
        if co_sf:
            self.stats.co_sf_lost += 1
        else:
            self.stats.inter_sf_lost += 1
        if background:
            self.stats.background_lost += 1

    def _unlock(self, name: str, lock: _Lock) -> None:
        if self._locks.get(name) is lock:
            del self._locks[name]
        if lock.release is not None:
            lock.release.cancel()
            lock.release = None
        held = max(0.0, self.scheduler.now() - lock.since)
        self.stats.busy_s += held
        if lock.kind is not Detection.DECODES:
            self.stats.foreign_busy_s += held

    def _header_failed(self, name: str, lock: _Lock) -> None:
        with self.lock.hold():
            lock.release = None
            if self._locks.get(name) is lock:
                self._unlock(name, lock)

    def _abort(self, frame: AirFrame, at: float) -> None:
        for onair in self._frames:
            if onair.frame is frame and not onair.finished:
                frame.aborted = True
                frame.end = max(frame.start, at)
                if onair.timer is not None:
                    onair.timer.cancel()
                self._finish(onair)
                return

    def _end(self, onair: _OnAir) -> None:
        with self.lock.hold():
            if not onair.finished:
                self._finish(onair)

    def _finish(self, onair: _OnAir) -> None:
        onair.finished = True
        frame = onair.frame
        for name, lock in list(self._locks.items()):
            if lock.onair is not onair:
                continue
            self._unlock(name, lock)
            node = self._nodes.get(name)
            if node is None or lock.kind is Detection.HEADER_FAILS:
                continue
            if frame.aborted:
                self.stats.aborted += 1
                continue
            state = node.chip.listen_state()
            if not state.listening or state.epoch != lock.epoch:
                if state.transmitting:
                    self.stats.half_duplex += 1
                else:
                    self.stats.left_receive += 1
                continue
            reception = self._outcome(onair, name, node, lock.kind)
            if reception is not None:
                node.chip.receive(reception)
        self._prune()

    def _outcome(self, onair: _OnAir, name: str, node: _Node, kind: Detection) -> Reception | None:
        """Decide what the chip `name` demodulates from `onair` (None: nothing at all)."""
        frame = onair.frame
        power = onair.rx_power[name]
        noise_mw = _mw(noise_floor_dbm(frame.params.bw_hz, node.noise_figure_db))
        freq_error = frame.freq_offset_hz - node.chip.freq_offset_hz
        co_sf_mw, failure = self._interference(onair, name, node)
        if failure is not None or kind is Detection.PAYLOAD_FAILS:
            if failure is not None:
                self._count_collision(co_sf=failure[0], background=failure[1])
            else:
                self.stats.crc_errors += 1
            snr = power - _dbm(noise_mw + co_sf_mw)
            return self._reception(frame, power, snr, freq_error, ok=False)
        snr = power - _dbm(noise_mw + co_sf_mw)
        if self.loss_probability and self.rng.random() < self.loss_probability:
            self.stats.random_losses += 1
            return None
        draw = self.rng.random()
        if draw < payload_success_probability(snr, frame.params.sf):
            self.stats.delivered += 1
            return self._reception(frame, power, snr, freq_error, ok=True)
        if draw < header_success_probability(snr, frame.params.sf):
            self.stats.crc_errors += 1
            return self._reception(frame, power, snr, freq_error, ok=False)
        self.stats.below_floor += 1
        return None

    def _interference(
        self, onair: _OnAir, name: str, node: _Node
    ) -> tuple[float, tuple[bool, bool] | None]:
        """The worst-instant same-SF interference (mW) on `onair` at `name`, and what destroyed
        the frame: None, or (same SF?, background involved?).

        Interferers are grouped by modulation: all same-SF/BW signals together against the
        capture threshold, each other SF/BW against its Croce SIR (`interference` module).
        """
        frame = onair.frame
        victim = frame.params
        power = onair.rx_power[name]
        centre = carrier_hz(victim, node.chip.freq_offset_hz)
        negligible = _mw(power - _NEGLIGIBLE_DB)
        groups: dict[tuple[int, int], list[tuple[float, float, float]]] = {}
        sources: dict[tuple[int, int], AirParams] = {}
        background: set[tuple[int, int]] = set()
        for other in self._frames:
            other_power = other.rx_power.get(name)
            interferer = other.frame
            if (
                other is onair
                or other_power is None
                or interferer.origin == name
                or not interferer.overlaps(frame)
            ):
                continue
            fraction = in_band_fraction(
                centre, victim.bw_hz, other.centre_hz, interferer.params.bw_hz
            )
            mw = _mw(other_power) * fraction
            if mw < negligible:
                continue
            key = (interferer.params.sf, interferer.params.bw_hz)
            groups.setdefault(key, []).append((interferer.start, interferer.end, mw))
            sources.setdefault(key, interferer.params)
            if other.background:
                background.add(key)
        co_key = (victim.sf, victim.bw_hz)
        co_sf_mw = 0.0
        failure: tuple[bool, bool] | None = None
        for key, spans in groups.items():
            peak = peak_sum_mw(spans, frame.start, frame.end)
            if key == co_key:
                co_sf_mw = peak
                lost = not self.capture or power - _dbm(peak) < self.capture_threshold_db
            else:
                lost = power - _dbm(peak) < required_sir_db(victim, sources[key])
            if lost and (failure is None or key == co_key):
                failure = (key == co_key, key in background)
        return co_sf_mw, failure

    def _reception(
        self, frame: AirFrame, power: float, snr: float, freq_error: float, *, ok: bool
    ) -> Reception:
        return Reception(
            payload=frame.payload if ok else self._corrupt(frame.payload),
            rssi_dbm=power,
            snr_db=_clip_snr(snr),
            crc_ok=ok,
            params=frame.params,
            freq_error_hz=freq_error,
        )

    def _corrupt(self, payload: bytes) -> bytes:
        """Flip a few bits, as a failed demodulation does (what a CRC-less receiver would keep)."""
        if not payload:
            return payload
        data = bytearray(payload)
        for _ in range(1 + self.rng.randrange(3)):
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        return bytes(data)

    def _prune(self) -> None:
        """Forget frames that can no longer overlap anything still on the air."""
        now = self.scheduler.now()
        live = [onair.frame.start for onair in self._frames if not onair.finished]
        horizon = min(live, default=now)
        self._frames = [
            onair for onair in self._frames if not onair.finished or onair.frame.end > horizon
        ]


def _mw(dbm: float) -> float:
    return 0.0 if dbm == -math.inf else 10 ** (dbm / 10)


def _dbm(mw: float) -> float:
    return 10 * math.log10(mw) if mw > 0 else -math.inf


def _clip_snr(snr: float) -> float:
    return min(max(snr, _SNR_RANGE[0]), _SNR_RANGE[1])
