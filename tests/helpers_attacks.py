"""The attacker of the attack suite (tests/test_attacks.py): a third radio on the simulated channel.

`Attacker` is an emulated SX1276 (the real driver on the register-level emulator, added with
`Simulation.add_radio`) stepped by the simulation's `NodeLoop` on the same `VirtualClock` as
the legitimate nodes. It records every frame it hears and transmits whatever its `Strategy`
queues: replays (at once, much later, at other settings, after a session change), frames
sealed under another pre-shared key with the network id it learned from the air, bit-flipped
and truncated copies, floods of DISCOVER- and RESYNC-looking frames, and jamming.

It is given the link's current radio settings for free (`follow`): a real attacker finds them
by scanning the few legal settings, so handing them over makes it stronger, never weaker. It
listens before talking (the channel's own carrier sense, as a CAD would) unless it jams, so
that what a test measures is the protocol's answer to the frames, not accidental collisions.

Proof that nothing it sent was accepted needs to know who sent each frame a link accepted.
`AirLog` records every frame any radio started (origin, end time, bytes) from the channel's
`on_local_frame` hook; `Acceptance` wraps each side's recorder so that every frame a link
handled is kept with the link's verdict (survives reboots: the recorder belongs to the side,
not to the runtime). `attacker_frames_at()` joins the two.
"""

from __future__ import annotations

import hashlib
import heapq
import itertools
import math
import random
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from p1lora.common.airtime import time_on_air_for
from p1lora.common.codec import encode_update
from p1lora.common.crc16 import crc16_arc
from p1lora.common.crypto import Direction, LinkKeys
from p1lora.common.frames import TYPE_MASK, FrameType, build_frame
from p1lora.common.link import parse_command
from p1lora.common.link.commands import ReplyStatus
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.messages import (
    Ack,
    AckKind,
    Batch,
    Challenge,
    Discover,
    FragmentHeader,
    Probe,
    Reply,
    Report,
    Resync,
    SerialState,
    StatusMessage,
    Switch,
)
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.emulator import AirFrame
from p1lora.hardware.radio import FrameReceived, RadioError, RadioFault, TxDone
from p1lora.tools.sim import SideRecorder, Simulation
from p1lora.transmitter.virtual_meter import VirtualMeter

ATTACKER = "mallory"
#: A correctly formed p1-lora key that is not the link's.
WRONG_PSK = hashlib.sha256(b"p1lora attack suite: not the link's key").digest()
#: How often an idle attacker looks at the link's settings (it re-tunes to follow them).
FOLLOW_EVERY_S = 0.25
#: Listen-before-talk: how long to wait when the channel is busy.
LBT_RETRY_S = 0.02
#: Frame types by the direction they travel (uplink: to the receiver).
UPLINK_TYPES = frozenset(t for t in FrameType if t.direction is Direction.UPLINK)
DOWNLINK_TYPES = frozenset(t for t in FrameType if t.direction is Direction.DOWNLINK)


def frame_type_of(payload: bytes) -> FrameType | None:
    """The p1-lora frame type in a payload's first byte (None for anything else)."""
    if not payload or payload[0] >> 5 != 1:
        return None
    try:
        return FrameType(payload[0] & TYPE_MASK)
    except ValueError:
        return None


# ---------------------------------------------------------------------------- who sent what


@dataclass(frozen=True, slots=True)
class OnAir:
    """A frame some radio put on the air."""

    origin: str
    start: float
    end: float
    payload: bytes


class AirLog:
    """Every frame started on the channel, by origin (see the module docstring)."""

    def __init__(self, sim: Simulation) -> None:
        self.frames: list[OnAir] = []
        self._by_payload: dict[bytes, list[OnAir]] = {}
        previous = sim.channel.on_local_frame

        def record(frame: AirFrame) -> None:
            entry = OnAir(frame.origin, frame.start, frame.end, bytes(frame.payload))
            self.frames.append(entry)
            self._by_payload.setdefault(entry.payload, []).append(entry)
            if previous is not None:
                previous(frame)

        sim.channel.on_local_frame = record

    def origin_of(self, payload: bytes, received_at: float) -> str | None:
        """Who sent the frame with these bytes that ended at `received_at`."""
        for entry in self._by_payload.get(payload, ()):
            if abs(entry.end - received_at) < 1e-6:
                return entry.origin
        return None

    def airtime(self, origin: str, start: float = 0.0, end: float = math.inf) -> float:
        return sum(
            f.end - f.start for f in self.frames if f.origin == origin and start <= f.start < end
        )


@dataclass(frozen=True, slots=True)
class Handled:
    """A frame one side's link handled, with its verdict (None: accepted or answered)."""

    at: float
    payload: bytes
    rejected: str | None


class Acceptance:
    """Keeps every frame each side's link handled (wraps the side's `SideRecorder`)."""

    def __init__(self, sim: Simulation) -> None:
        self.handled: dict[str, list[Handled]] = {"tx": [], "rx": []}
        for role, recorder in (("tx", sim.tx_log), ("rx", sim.rx_log)):
            self._wrap(recorder, self.handled[role])

    @staticmethod
    def _wrap(recorder: SideRecorder, into: list[Handled]) -> None:
        original = recorder.frame_received

        def frame_received(frame: ReceivedFrame, rejected: str | None) -> None:
            into.append(Handled(frame.received_at, bytes(frame.payload), rejected))
            original(frame, rejected)

        recorder.frame_received = frame_received  # type: ignore[method-assign]


@dataclass
class AttackReport:
    """What one side's link did with the attacker's frames."""

    heard: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    #: Not rejected: answered as an exact copy of the last acknowledged frame, or a DISCOVER.
    not_rejected: Counter[str] = field(default_factory=Counter)


def attacker_frames_at(
    air: AirLog, acceptance: Acceptance, role: str, attacker: str = ATTACKER
) -> AttackReport:
    """Every attacker frame `role` heard, by the link's verdict."""
    report = AttackReport()
    for item in acceptance.handled[role]:
        if air.origin_of(item.payload, item.at) != attacker:
            continue
        report.heard += 1
        if item.rejected is not None:
            report.rejected[item.rejected] += 1
        else:
            kind = frame_type_of(item.payload)
            report.not_rejected[kind.name if kind is not None else "?"] += 1
    return report


@dataclass
class Run:
    """One attacked simulation: the link, the air log, the verdicts and the attacker."""

    sim: Simulation
    air: AirLog
    acceptance: Acceptance
    attacker: Attacker

    def report(self, role: str) -> AttackReport:
        return attacker_frames_at(self.air, self.acceptance, role)

    def deliveries(self, start: float, end: float) -> int:
        return sum(1 for t in self.sim.deliveries.times if start <= t < end)


# ---------------------------------------------------------------------------- the attacker


@dataclass(frozen=True, slots=True)
class Heard:
    """A frame the attacker received (it passed the LoRa CRC)."""

    at: float
    payload: bytes
    settings: RadioSettings
    rssi_dbm: float

    @property
    def frame_type(self) -> FrameType | None:
        return frame_type_of(self.payload)


@dataclass(frozen=True, slots=True)
class Sent:
    at: float
    payload: bytes
    settings: RadioSettings
    airtime: float
    label: str


class Strategy(Protocol):
    """What an attack does: react to frames heard, and act when its time comes."""

    def heard(self, attacker: Attacker, frame: Heard) -> None: ...

    def tick(self, attacker: Attacker, now: float) -> float | None:
        """Act; return when to be called again (None: only when something is heard)."""


class Passive:
    """Only listens (the attack-free baseline keeps the same three radios on the channel)."""

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        return None


@dataclass(order=True)
class _Queued:
    at: float
    sequence: int
    payload: bytes = field(compare=False)
    settings: RadioSettings | None = field(compare=False)
    label: str = field(compare=False)


class Attacker:
    """A third radio driven by a `Strategy` on the simulation's clock (module docstring).

    `follow` names the side whose settings the radio listens and sends at ("rx" or "tx"); the
    attack runs from `start` to `stop` (it keeps listening before and after). `loss_db` is
    the path loss to both legitimate radios (lower than theirs makes it the stronger signal).
    """

    def __init__(
        self,
        sim: Simulation,
        strategy: Strategy,
        *,
        name: str = ATTACKER,
        loss_db: float = 100.0,
        tx_power_dbm: int = 14,
        follow: str = "rx",
        start: float = 0.0,
        stop: float = math.inf,
        listen_before_talk: bool = True,
        seed: int = 7,
    ) -> None:
        self.sim = sim
        self.strategy = strategy
        self.name = name
        self.follow = follow
        self.start = start
        self.stop = stop
        self.listen_before_talk = listen_before_talk
        self.tx_power_dbm = tx_power_dbm
        self.rng = random.Random(f"attacker:{seed}")
        self.radio = sim.add_radio(name)
        self.wakeup: threading.Event = self.radio.wakeup
        for peer in ("tx", "rx"):
            sim.channel.set_path_loss(name, peer, loss_db)
        self.captured: list[Heard] = []
        self.captured_by_type: dict[FrameType, list[Heard]] = {}
        self.sent: list[Sent] = []
        self.faults = 0
        self.refused = 0
        self.network_id: bytes | None = None
        self._queue: list[_Queued] = []
        self._sequence = itertools.count()
        self._busy = False
        self._listening: RadioSettings | None = None
        self._next_strategy: float | None = start
        self._tune(self.target_settings())
        sim.loop.add(name, self, 3)

    # ------------------------------------------------------------------ what it knows

    @property
    def config(self) -> LinkConfig:
        return self.sim.config

    def target_settings(self) -> RadioSettings:
        """The followed side's current settings, at the attacker's own power."""
        sim = self.sim
        side = self.follow if sim.is_on(self.follow) else ("tx" if self.follow == "rx" else "rx")
        if not sim.is_on(side):
            settings = self.config.rendezvous()
        elif side == "rx":
            settings = sim.rx.rx_link.settings
        else:
            settings = sim.tx.tx_link.settings
        return settings.replace(tx_power_dbm=self.tx_power_dbm)

    @property
    def active(self) -> bool:
        return self.start <= self.sim.now < self.stop

    def with_power(self, settings: RadioSettings) -> RadioSettings:
        return settings.replace(tx_power_dbm=self.tx_power_dbm)

    # ------------------------------------------------------------------ sending

    def enqueue(
        self,
        payload: bytes,
        *,
        at: float | None = None,
        settings: RadioSettings | None = None,
        label: str = "",
    ) -> None:
        """Send `payload` at `at` (default now), at `settings` (default: the followed ones)."""
        when = self.sim.now if at is None else at
        item = _Queued(when, next(self._sequence), bytes(payload), settings, label)
        heapq.heappush(self._queue, item)
        self.wakeup.set()

    @property
    def queued(self) -> int:
        return len(self._queue)

    def clear_queue(self) -> None:
        self._queue.clear()

    def airtime(self) -> float:
        return sum(s.airtime for s in self.sent)

    def sent_labels(self) -> Counter[str]:
        return Counter(s.label for s in self.sent)

    # ------------------------------------------------------------------ Node

    def step(self, now: float) -> float | None:
        for event in self.radio.poll():
            if isinstance(event, TxDone):
                self._busy = False
            elif isinstance(event, FrameReceived):
                self._heard(event.frame)
            elif isinstance(event, RadioFault):
                self.faults += 1
                self._busy = False
        deadlines: list[float] = [now + FOLLOW_EVERY_S]
        if self.active and self._next_strategy is not None and now >= self._next_strategy:
            self._next_strategy = self.strategy.tick(self, now)
        elif not self.active and now < self.start:
            self._next_strategy = self.start
        if self._next_strategy is not None and now < self.stop:
            deadlines.append(max(self._next_strategy, now))
        if not self._busy:
            retry = self._send_due(now)
            if retry is not None:
                deadlines.append(retry)
            elif self._queue and self.active and not self._busy:  # busy: TxDone wakes it
                deadlines.append(max(self._queue[0].at, now + 1e-6))
        if not self._busy:
            self._tune(self.target_settings())
        return min(deadlines)

    def _heard(self, frame: ReceivedFrame) -> None:
        heard = Heard(frame.received_at, bytes(frame.payload), frame.settings, frame.rssi_dbm)
        self.captured.append(heard)
        if heard.frame_type is not None:
            self.captured_by_type.setdefault(heard.frame_type, []).append(heard)
        if self.network_id is None and heard.frame_type is not None and len(heard.payload) >= 3:
            self.network_id = heard.payload[1:3]  # public: in every header
        if self.active:
            self.strategy.heard(self, heard)

    def _tune(self, settings: RadioSettings) -> None:
        if settings != self._listening:
            self.radio.configure(settings)
            self._listening = settings

    def _send_due(self, now: float) -> float | None:
        """Send the head of the queue if due; returns a retry time when the channel was busy."""
        if not self._queue or self._queue[0].at > now or not self.active:
            return None
        head = self._queue[0]
        settings = head.settings or self.target_settings()
        self._tune(settings)
        if self.listen_before_talk and self._channel_busy():
            return now + LBT_RETRY_S
        heapq.heappop(self._queue)
        try:
            airtime = self.radio.send(head.payload)
        except RadioError:
            self.refused += 1
            return None
        self._busy = True
        self.sent.append(Sent(now, head.payload, settings, airtime, head.label))
        return None

    def _channel_busy(self) -> bool:
        chip = self.sim.channel.chip(self.name)
        return self.sim.channel.channel_busy(chip, chip.air_params())


# ---------------------------------------------------------------------------- forging


def forged_telegram(seed: int = 99) -> bytes:
    """A well-formed DSMR 5 telegram with a good CRC that the meter never produced (the
    import register is set to an absurd value)."""
    _, raw = next(iter(VirtualMeter("dsmr5", seed)))
    text = raw.decode("ascii")
    start = text.index("1-0:1.8.1(") + len("1-0:1.8.1(")
    end = text.index("*", start)
    text = text[:start] + "999999.999" + text[end:]
    body = text[: text.index("!") + 1].encode("ascii")
    return body + f"{crc16_arc(body):04X}\r\n".encode("ascii")


class Forger:
    """Seals correctly formed p1-lora frames of every type under `WRONG_PSK`.

    The network id is the one learned from the air (so the frames pass the cheap header checks
    and must be refused by authentication) unless `own_network` (then they are a neighbour's).
    Counters are just above the last one heard, as a careful forger would pick them.
    """

    def __init__(self, rng: random.Random, *, own_network: bool = False) -> None:
        self.rng = rng
        self.keys = LinkKeys(WRONG_PSK)
        self.own_network = own_network
        self.session = self.keys.session(rng.randbytes(8), rng.randbytes(8))
        self._counter = 0

    def network_id(self, learned: bytes | None) -> bytes:
        if self.own_network or learned is None:
            return self.keys.network_id
        return learned

    def counter_after(self, heard: Sequence[Heard]) -> int:
        for frame in reversed(heard):
            if len(frame.payload) >= 5 and frame.frame_type is not None:
                low = int.from_bytes(frame.payload[3:5], "big")
                high = 0
                if frame.frame_type.static_key and len(frame.payload) >= 7:
                    high = int.from_bytes(frame.payload[5:7], "big")
                self._counter = max(self._counter, (high << 16 | low) + 1)
                break
        self._counter += 1
        return self._counter

    def frame(self, frame_type: FrameType, network_id: bytes, counter: int) -> bytes:
        body = self.body(frame_type, counter)
        direction = frame_type.direction
        if frame_type.static_key:
            random_bytes = self.rng.randbytes(8)
            return build_frame(
                frame_type,
                network_id,
                counter,
                body,
                cipher=self.keys.static(direction),
                nonce=self.keys.static_nonce(direction, random_bytes, counter),
                random=random_bytes,
            )
        return build_frame(
            frame_type,
            network_id,
            counter,
            body,
            cipher=self.session.cipher(direction),
            nonce=self.session.nonce(direction, counter),
        )

    def body(self, frame_type: FrameType, counter: int) -> bytes:
        report = Report(-60.0, 9.0, 0.01)
        bodies: dict[FrameType, Callable[[], bytes]] = {
            FrameType.DISCOVER: lambda: Discover(False, 14).encode(),
            FrameType.CHALLENGE: lambda: Challenge(report, 14, None).encode(),
            FrameType.RESYNC: lambda: Resync(self.rng.randbytes(8)).encode(),
            FrameType.DATA: lambda: encode_update(forged_telegram(), None),
            FrameType.BATCH: lambda: Batch((bytes(20), bytes(30))).encode(),
            FrameType.FRAGMENT: lambda: FragmentHeader(7, 0, 2).encode() + bytes(40),
            FrameType.PROBE: lambda: Probe(9, bytes(30)).encode(),
            FrameType.SWITCH: lambda: Switch(9, 12, 125_000).encode(),
            FrameType.STATUS: lambda: _status().encode(),
            FrameType.REPLY: lambda: Reply(3, ReplyStatus.OK, "done").encode(),
            FrameType.ACK: lambda: Ack(
                AckKind.DATA, counter & 0xFFFF, 0, report, 77, parse_command("restart")
            ).encode(),
            FrameType.SURVEY: lambda: bytes(14),  # `p1-lora survey` frames (common/survey.py)
            FrameType.SURVEYED: lambda: bytes(6),
        }
        return bodies[frame_type]()


def _status() -> StatusMessage:
    return StatusMessage(
        serial_state=SerialState.OK,
        fixed_mode=False,
        tx_power_dbm=14,
        airtime_used=0.0,
        loss_rate=0.0,
        uptime_s=1,
        telegrams_read=1,
        crc_errors=0,
        other_errors=0,
        interval_s=1.0,
        updates_sent=1,
        updates_acked=1,
        superseded=0,
    )


# ---------------------------------------------------------------------------- strategies


def _quiet_delay(settings: RadioSettings) -> float:
    """After a frame ends, when its answer has surely been sent: a quiet moment to talk."""
    return time_on_air_for(settings, 40) + 0.25


@dataclass
class ReplayEach:
    """Replays every frame heard from the legitimate nodes once (`times`), right after its
    exchange: the receiver sees each uplink frame again, the transmitter each ack."""

    times: int = 1
    seen: Counter[bytes] = field(default_factory=Counter)

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        if frame.frame_type is None or self.seen[frame.payload] >= self.times:
            return
        self.seen[frame.payload] += 1
        attacker.enqueue(
            frame.payload, at=frame.at + _quiet_delay(frame.settings), label="replay-now"
        )

    def tick(self, attacker: Attacker, now: float) -> float | None:
        return None


@dataclass
class ReplayLater:
    """Records until `at`, then replays everything it captured, oldest first, one frame every
    `gap_s`, at the link's current settings (and, with `also_at_capture_settings`, also at the
    settings each frame was captured at: the rendezvous, probing rungs...)."""

    at: float
    gap_s: float = 1.5
    also_at_capture_settings: bool = True
    only: Callable[[Heard], bool] | None = None
    _done: bool = False

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        if now < self.at:
            return self.at
        if self._done:
            return None
        self._done = True
        when = now
        for frame in list(attacker.captured):
            if frame.at >= self.at or (self.only is not None and not self.only(frame)):
                continue
            attacker.enqueue(frame.payload, at=when, label="replay-later")
            when += self.gap_s
            if self.also_at_capture_settings:
                here = attacker.with_power(frame.settings)
                attacker.enqueue(frame.payload, at=when, settings=here, label="replay-capture")
                when += self.gap_s
        return None


@dataclass
class ReplayAcrossSettings:
    """Replays frames captured at one setting at every *other* setting of `settings` (frames
    from the SF12 handshake at SF7/BW250 and the other way round), one every `gap_s`.

    Each captured frame, in capture order, is replayed at all its other settings before the
    next one. (It used to walk the captures once per round with one target per round, but
    the capture list grows about as fast as it replays, two frames a second since DATA and
    ACK flow every second, so a round never ended and every SF7 frame went to SF8 only.)
    Like `Flood`, it never holds more than `occupancy` of the channel's time: replaying at
    SF12 every `gap_s` would be jamming (tested on its own), which listen before talk
    rightly yields to."""

    settings: Sequence[RadioSettings]
    gap_s: float = 1.0
    occupancy: float = 0.1
    _cursor: int = 0
    _target: int = 0

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        frames = [f for f in attacker.captured if f.frame_type is not None]
        if not frames:
            return now + self.gap_s
        frame = frames[self._cursor % len(frames)]
        others = [s for s in self.settings if not _same_rung(s, frame.settings)]
        target = others[self._target % len(others)]
        self._target += 1
        if self._target >= len(others):
            self._cursor += 1
            self._target = 0
        attacker.enqueue(
            frame.payload, settings=attacker.with_power(target), label="replay-settings"
        )
        airtime = time_on_air_for(target, len(frame.payload))
        return now + max(self.gap_s, airtime / self.occupancy)


def _same_rung(a: RadioSettings, b: RadioSettings) -> bool:
    return (a.sf, a.bw_hz) == (b.sf, b.bw_hz)


@dataclass
class ForgeEverything:
    """Every `period_s`, one frame of the next type in turn, sealed under the wrong key
    (uplink types for the receiver, downlink types for the transmitter)."""

    forger: Forger
    period_s: float = 2.0
    types: Sequence[FrameType] = tuple(FrameType)
    _index: int = 0

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        if attacker.network_id is None and not self.forger.own_network:
            return now + self.period_s  # nothing heard yet to learn the network id from
        frame_type = self.types[self._index % len(self.types)]
        self._index += 1
        counter = self.forger.counter_after(attacker.captured)
        network = self.forger.network_id(attacker.network_id)
        attacker.enqueue(
            self.forger.frame(frame_type, network, counter), label=f"forged-{frame_type.name}"
        )
        return now + self.period_s


@dataclass
class BitFlipper:
    """Sends each frame heard again with 1 to `max_bits` random bits flipped (anywhere:
    header, body or tag), `copies` different corruptions per frame."""

    rng: random.Random
    max_bits: int = 3
    copies: int = 1
    positions: Counter[str] = field(default_factory=Counter)

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        if frame.frame_type is None:
            return
        for copy in range(self.copies):
            data = bytearray(frame.payload)
            for _ in range(1 + self.rng.randrange(self.max_bits)):
                index = self.rng.randrange(len(data))
                data[index] ^= 1 << self.rng.randrange(8)
                self.positions["header" if index < 5 else "body"] += 1
            if bytes(data) == frame.payload:
                continue  # the flips cancelled out
            attacker.enqueue(
                bytes(data),
                at=frame.at + _quiet_delay(frame.settings) * (1 + copy),
                label="bit-flipped",
            )

    def tick(self, attacker: Attacker, now: float) -> float | None:
        return None


@dataclass
class Truncator:
    """Sends each frame heard again cut short: within the header, within the tag, one byte
    short, at random."""

    rng: random.Random

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        if frame.frame_type is None or len(frame.payload) < 2:
            return
        size = len(frame.payload)
        cut = self.rng.choice([1, 3, 5, 12, size - 8, size - 1, self.rng.randrange(1, size)])
        cut = min(max(cut, 1), size - 1)
        attacker.enqueue(
            frame.payload[:cut], at=frame.at + _quiet_delay(frame.settings), label="truncated"
        )

    def tick(self, attacker: Attacker, now: float) -> float | None:
        return None


@dataclass
class Flood:
    """Every `period_s`, one frame from `make` (a flood of DISCOVER- or RESYNC-looking frames:
    replays of captured ones and forgeries), at the followed settings, but never more than
    `occupancy` of the channel's time: a flood, not a jammer (at SF12 one frame lasts
    seconds, and back-to-back frames would only be jamming, tested on its own)."""

    make: Callable[[Attacker], bytes | None]
    period_s: float
    label: str = "flood"
    occupancy: float = 0.2

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        payload = self.make(attacker)
        if payload is None:
            return now + self.period_s
        if attacker.queued < 2:
            attacker.enqueue(payload, label=self.label)
        airtime = time_on_air_for(attacker.target_settings(), len(payload))
        return now + max(self.period_s, airtime / self.occupancy)


def captured_of(attacker: Attacker, types: Iterable[FrameType]) -> list[Heard]:
    """The frames of `types` captured so far, in the order they were heard."""
    found = [f for t in types for f in attacker.captured_by_type.get(t, ())]
    return sorted(found, key=lambda f: f.at) if len(set(types)) > 1 else found


def rotating_flood(
    sources: Sequence[Callable[[Attacker], bytes | None]],
) -> Callable[[Attacker], bytes | None]:
    """A flood source that takes its frames from `sources` in turn (skipping empty ones)."""
    turn = itertools.count()

    def make(attacker: Attacker) -> bytes | None:
        for _ in range(len(sources)):
            payload = sources[next(turn) % len(sources)](attacker)
            if payload is not None:
                return payload
        return None

    return make


def replay_of(types: Iterable[FrameType]) -> Callable[[Attacker], bytes | None]:
    """Flood source: the captured frames of `types`, in turn."""
    wanted = tuple(types)
    turn = itertools.count()

    def make(attacker: Attacker) -> bytes | None:
        frames = captured_of(attacker, wanted)
        if not frames:
            return None
        return frames[next(turn) % len(frames)].payload

    return make


def forgery_of(forger: Forger, frame_type: FrameType) -> Callable[[Attacker], bytes | None]:
    """Flood source: a fresh forgery of `frame_type` each time."""

    def make(attacker: Attacker) -> bytes | None:
        counter = forger.counter_after(attacker.captured)
        return forger.frame(frame_type, forger.network_id(attacker.network_id), counter)

    return make


@dataclass
class Jammer:
    """Transmits `frame_bytes`-byte noise back to back at the followed settings, except at the
    settings in `spare` (jam everything but SF12 and the link has to go there: the attack that
    tries to push the link to its slowest, most expensive setting). No listen-before-talk:
    jamming *is* talking over the others."""

    rng: random.Random
    spare: Sequence[tuple[int, int]] = ()
    frame_bytes: int = 255
    duty: float = 1.0

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        return None

    def tick(self, attacker: Attacker, now: float) -> float | None:
        settings = attacker.target_settings()
        airtime = time_on_air_for(settings, self.frame_bytes)
        if (settings.sf, settings.bw_hz) in self.spare:
            return now + FOLLOW_EVERY_S
        if attacker.queued == 0:
            attacker.enqueue(self.rng.randbytes(self.frame_bytes), label="jam")
        pause = airtime * (1 - self.duty) / self.duty if self.duty < 1 else 0.0
        return now + airtime + pause + 1e-3


@dataclass
class Hammer:
    """Replays each uplink frame of `types` it hears `copies` times, `spacing_s` apart, right
    after its exchange: cheap for the attacker (a 25-byte frame at SF7/BW250), and each copy
    is an exact duplicate of the frame the receiver just acknowledged."""

    copies: int
    spacing_s: float = 0.06
    types: frozenset[FrameType] = frozenset({FrameType.DATA})

    def heard(self, attacker: Attacker, frame: Heard) -> None:
        if frame.frame_type not in self.types:
            return
        first = frame.at + _quiet_delay(frame.settings)
        for index in range(self.copies):
            attacker.enqueue(frame.payload, at=first + index * self.spacing_s, label="hammer")

    def tick(self, attacker: Attacker, now: float) -> float | None:
        return None
