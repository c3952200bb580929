"""A model of the seed firmware (ESP32 "P1-LoRa") for `p1-lora sim --baseline esp32`.

p1-lora descends from an ESP32 firmware with the right ideas and weak execution. To show what
the protocol alone gains, this module runs that firmware's behaviour as its own transmitter /
receiver pair on the **same** emulated SX127x chips (the real driver on the register-level
emulator), the same simulated channel model, the same meter and the same recorders as the
p1-lora simulation; only the protocol differs.

We only have design.md's description of the firmware, not its source, so every number below
that design.md does not give is an assumption, listed here and in `Esp32Params`:

Given by design.md
- The receiver listens on SF12/BW125; the transmitter sends discovery frames; the receiver
  acknowledges them.
- The transmitter then sends probe frames of real telegram size (its 100-byte data frames) and
  the receiver echoes their CRC, computed over only the first 8 bytes.
- After a few good echoes both step one rung faster along SF12/125, SF11/125, SF10/125,
  SF9/125, SF8/125, SF7/125, SF7/250, until SF7/BW250 or a failure; on failure they fall back
  to the last setting that worked.
- In operation, one reading every 7 s: 22 values as float32 (lossy: no meter id, no timestamp,
  no tariff; digits beyond float32's ~7 significant digits are lost) in a 100-byte frame, each
  acknowledged; control and ack frames are 52 bytes.
- Heavy loss triggers a new handshake from SF12; its timeouts are shorter than its slowest send
  interval; handshake airtime is not counted against the duty cycle.

Assumed (modelling choices)
- "A few good echoes" = 3 consecutive good echoes per rung; "failure" = 3 probes without a
  (correct) echo at a rung. A failure at SF12 restarts discovery.
- "Heavy loss" = 5 consecutive readings without an ack (design.md's example).
- Replies (acks, echoes) leave at once, as p1-lora's do in the simulator; the transmitter waits
  `inter_frame_s` (50 ms) after hearing a reply before its next frame.
- The transmitter waits for a reply `ack_timeout_s` = 3 s after the end of its frame (blocking,
  as an Arduino sketch does): enough for a 52-byte reply even at SF12/125 (2.47 s). Without an
  answer to a discovery it pauses `discovery_pause_s` = 2 s and sends the next one.
- The duty-cycle limiter counts **readings only** (handshake frames are free, as design.md
  says) and is the Arduino idiom "after a frame of airtime A, wait A / duty before the next":
  a reading due before that is skipped. Its receiver's acks are not limited at all.
- "Timeouts shorter than the slowest send interval": the receiver gives the link up after
  `rx_silence_s` = 60 s without a frame and returns to SF12 to listen for discovery. At slow
  settings the limiter spaces readings further apart than that (SF10/125 in a 1 % band: a
  100-byte reading is 1.03 s, so one per 103 s), so the receiver leaves while the transmitter
  still talks, 5 acks go missing and a new handshake starts: the spurious re-handshakes the
  seed is known for. After stepping up, a receiver that hears nothing at the new rung for
  `rung_timeout_s` = 10 s returns to the rung it came from.
- Same channel frequency and TX power as the p1-lora run (the real firmware used 868.0 MHz on
  a sub-band edge and 17 dBm, above the 14 dBm limit): the comparison is about protocol.
- Frames are not encrypted here (the firmware's AES-CBC with a constant IV adds nothing but
  padding, which the 52/100-byte sizes already include). The emulated radio drops frames that
  fail the LoRa payload CRC, so the 8-byte echo CRC cannot make a difference in this channel;
  it matters against forgery, which the firmware does not resist either.
- Deliveries are *readings* (22 values), never byte-exact telegrams: the 22 values are the
  first 22 numbers of the telegram in telegram order; a value counts as wrong when float32
  cannot reproduce the meter's digits.

Variants (`legal`)
- `esp32` (faithful): as described above. Its real duty cycle may exceed the sub-band's
  limit, mostly through uncounted handshakes and unlimited acks; the report says so.
- `esp32-legal`: the same firmware with every frame on both sides passing an `AirtimeBudget`
  for the sub-band (a frame that does not fit waits; an ack that does not fit is not sent),
  and the ladder limited to settings the sub-band allows. Use it for "in the same 1 % band"
  comparisons.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.clock import VirtualClock
from p1lora.common.crc16 import crc16_arc
from p1lora.common.link import LinkConfig, Transmit
from p1lora.common.parser import parse_telegram
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.regions import RegionError
from p1lora.hardware.factory import open_radio
from p1lora.hardware.radio import FrameReceived, RadioError, TxDone
from p1lora.hardware.sx127x import SX127x
from p1lora.tools.sim import (
    HOUR_S,
    MeterNode,
    NodeLoop,
    SideRecorder,
    SimMetrics,
    SimOptions,
    build_channel,
    convergence_time,
    gap_metrics,
    max_window_airtime,
    median,
    percentile,
    positions,
    settings_timeline,
    telegram_feed,
)

__all__ = [
    "BASELINES",
    "LADDER",
    "Esp32Params",
    "Esp32Rx",
    "Esp32Simulation",
    "Esp32Tx",
    "reading_values",
]

logger = logging.getLogger(__name__)

#: The seed's rungs, slowest first (design.md).
LADDER: tuple[tuple[int, int], ...] = (
    (12, 125_000),
    (11, 125_000),
    (10, 125_000),
    (9, 125_000),
    (8, 125_000),
    (7, 125_000),
    (7, 250_000),
)
#: `--baseline` names -> whether every frame passes the sub-band budget.
BASELINES: dict[str, bool] = {"esp32": False, "esp32-legal": True}

VALUES_PER_READING = 22
_MAGIC = 0xB0
#: Frame kinds: code, on-air size.
_KINDS: dict[str, tuple[int, int]] = {
    "DISCOVERY": (1, 52),
    "DISCOVERY_ACK": (2, 52),
    "PROBE": (3, 100),
    "ECHO": (4, 52),
    "READING": (5, 100),
    "ACK": (6, 52),
}
_NAMES = {code: name for name, (code, _) in _KINDS.items()}
HANDSHAKE_KINDS = frozenset({"DISCOVERY", "DISCOVERY_ACK", "PROBE", "ECHO"})


@dataclass(frozen=True, slots=True)
class Esp32Params:
    """The firmware's numbers (see the module docstring for which are given and which assumed)."""

    control_bytes: int = 52
    data_bytes: int = 100
    reading_interval_s: float = 7.0
    good_echoes_to_step: int = 3
    probe_failures: int = 3
    missed_acks_to_rehandshake: int = 5
    ack_timeout_s: float = 3.0
    discovery_pause_s: float = 2.0
    inter_frame_s: float = 0.05
    rx_silence_s: float = 60.0
    rung_timeout_s: float = 10.0
    echo_crc_bytes: int = 8


def reading_values(telegram: bytes) -> list[Decimal]:
    """The 22 numbers the firmware sends: the first 22 numeric values in telegram order
    (zero-padded when a telegram has fewer)."""
    try:
        parsed = parse_telegram(telegram)
    except ValueError:
        return [Decimal(0)] * VALUES_PER_READING
    values: list[Decimal] = []
    for obj in parsed.objects:
        value = obj.value
        if isinstance(value, Decimal):
            values.append(value)
        elif isinstance(value, int) and not isinstance(value, bool):
            values.append(Decimal(value))
        if len(values) == VALUES_PER_READING:
            break
    return values + [Decimal(0)] * (VALUES_PER_READING - len(values))


def float32_keeps(value: Decimal) -> bool:
    """Whether float32 reproduces the meter's digits of `value`."""
    (as_float,) = struct.unpack(">f", struct.pack(">f", float(value)))
    if not math.isfinite(as_float):
        return False
    exponent = value.as_tuple().exponent
    places = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
    return Decimal(as_float).quantize(places) == value


def _frame(kind: str, seq: int, body: bytes, rng: random.Random) -> bytes:
    code, size = _KINDS[kind]
    head = bytes((_MAGIC | code,)) + (seq & 0xFFFF).to_bytes(2, "big") + body
    return head + rng.randbytes(max(0, size - len(head)))


def _parse(payload: bytes) -> tuple[str, int, bytes] | None:
    if len(payload) < 3 or payload[0] & 0xF0 != _MAGIC:
        return None
    name = _NAMES.get(payload[0] & 0x0F)
    if name is None:
        return None
    return name, int.from_bytes(payload[1:3], "big"), payload[3:]


@dataclass
class SentReading:
    seq: int
    meter_time: float
    values: list[Decimal]
    sent_at: float


class _Esp32Node:
    """Radio plumbing shared by the two sides."""

    ROLE = "esp32"

    def __init__(
        self,
        radio: SX127x,
        ladder: Sequence[RadioSettings],
        *,
        params: Esp32Params,
        recorder: SideRecorder,
        budget: AirtimeBudget | None,
        rng: random.Random,
        now: float,
    ) -> None:
        self.radio = radio
        self.wakeup: threading.Event = radio.wakeup
        self.ladder = list(ladder)
        self.params = params
        self.recorder = recorder
        self.budget = budget
        self.rng = rng
        self.rung = 0
        self.busy = False
        self.last_payload = b""
        self.budget_blocked = 0
        self._configure(now, 0, "start")

    @property
    def settings(self) -> RadioSettings:
        return self.ladder[self.rung]

    def _configure(self, now: float, rung: int, reason: str) -> None:
        self.rung = rung
        self.radio.configure(self.settings)
        self.recorder.configured(now, self.settings, reason)

    def _send(self, now: float, kind: str, seq: int, body: bytes = b"") -> bool:
        if self.busy:
            return False
        payload = _frame(kind, seq, body, self.rng)
        airtime = time_on_air_for(self.settings, len(payload))
        if self.budget is not None:
            if not self.budget.may_send(now, airtime):
                self.budget_blocked += 1
                return False
            self.budget.record(now, airtime)
        try:
            real = self.radio.send(payload)
        except RadioError as exc:
            logger.warning("%s: send failed: %s", self.ROLE, exc)
            return False
        self.busy = True
        self.last_payload = payload
        self.recorder.frame_sent(now, Transmit(payload, self.settings, kind, real), real)
        return True

    def step(self, now: float) -> float | None:
        for event in self.radio.poll():
            if isinstance(event, TxDone):
                self.busy = False
                self._on_tx_done(now)
            elif isinstance(event, FrameReceived):
                self.recorder.frame_received(event.frame, None)
                parsed = _parse(event.frame.payload)
                if parsed is not None:
                    self._on_frame(now, *parsed, event.frame)
        self._on_timers(now)
        deadlines = [t for t in self._deadlines() if t is not None]
        if not deadlines:
            return None
        return max(min(deadlines), now + 1e-6)

    def _on_tx_done(self, now: float) -> None:
        raise NotImplementedError

    def _on_frame(self, now: float, kind: str, seq: int, body: bytes, frame: ReceivedFrame) -> None:
        raise NotImplementedError

    def _on_timers(self, now: float) -> None:
        raise NotImplementedError

    def _deadlines(self) -> list[float | None]:
        raise NotImplementedError


class Esp32Tx(_Esp32Node):
    """The firmware's transmitter: discovery, probing up the ladder, readings every 7 s."""

    ROLE = "esp32-tx"

    def __init__(
        self,
        radio: SX127x,
        ladder: Sequence[RadioSettings],
        *,
        params: Esp32Params,
        recorder: SideRecorder,
        budget: AirtimeBudget | None,
        rng: random.Random,
        now: float,
        duty_cycle: float,
    ) -> None:
        super().__init__(
            radio, ladder, params=params, recorder=recorder, budget=budget, rng=rng, now=now
        )
        self.state = "discovery"
        self.duty_cycle = duty_cycle
        self.latest: tuple[bytes, float] | None = None
        self.sent_readings: dict[int, SentReading] = {}
        self.readings_skipped = 0
        self.handshakes = 0
        self.rehandshakes = 0
        self.operation_entries: list[tuple[float, RadioSettings]] = []
        self._seq = 0
        self._waiting: tuple[str, int, bytes] | None = None  # expected reply kind, seq, check
        self._reply_deadline: float | None = None
        self._next_send = now
        self._next_reading = now
        self._pace_until = now
        self._good = 0
        self._fails = 0
        self._last_good: int | None = None
        self._missed = 0

    def submit_telegram(self, raw: bytes, received_at: float) -> None:
        self.latest = (raw, received_at)
        self.wakeup.set()

    # -- events ---------------------------------------------------------------------------

    def _on_tx_done(self, now: float) -> None:
        if self._waiting is not None:
            self._reply_deadline = now + self.params.ack_timeout_s

    def _on_frame(self, now: float, kind: str, seq: int, body: bytes, frame: ReceivedFrame) -> None:
        waiting = self._waiting
        if waiting is None or self._reply_deadline is None:
            return
        want, want_seq, check = waiting
        if kind != want or seq != want_seq or (check and body[: len(check)] != check):
            return
        self._waiting = None
        self._reply_deadline = None
        self._next_send = now + self.params.inter_frame_s
        if kind == "DISCOVERY_ACK":
            self.handshakes += 1
            self.state = "probing"
            self._good = self._fails = 0
            self._last_good = None
        elif kind == "ECHO":
            self._good += 1
            if self._good >= self.params.good_echoes_to_step:
                if self.rung + 1 >= len(self.ladder):
                    self._operate(now, self.rung, "top of the ladder")
                else:
                    self._last_good = self.rung
                    self._good = self._fails = 0
                    self._configure(now, self.rung + 1, "step up")
        elif kind == "ACK":
            self._missed = 0

    def _missed_reply(self, now: float) -> None:
        waiting = self._waiting
        self._waiting = None
        self._reply_deadline = None
        if waiting is None:
            return
        kind = waiting[0]
        if kind == "DISCOVERY_ACK":
            self._next_send = now + self.params.discovery_pause_s
        elif kind == "ECHO":
            self._fails += 1
            if self._fails >= self.params.probe_failures:
                if self._last_good is None:
                    self._rediscover(now, "probes failed at the rendezvous")
                else:
                    self._operate(now, self._last_good, "fall back to the last good rung")
        elif kind == "ACK":
            self._missed += 1
            if self._missed >= self.params.missed_acks_to_rehandshake:
                self.rehandshakes += 1
                self._rediscover(now, f"{self._missed} acks missed")

    def _operate(self, now: float, rung: int, reason: str) -> None:
        if rung != self.rung:
            self._configure(now, rung, reason)
        self.state = "operation"
        self._missed = 0
        self._next_reading = now
        self.operation_entries.append((now, self.settings))

    def _rediscover(self, now: float, reason: str) -> None:
        logger.debug("%s: new handshake (%s)", self.ROLE, reason)
        self.state = "discovery"
        self._configure(now, 0, reason)
        self._next_send = now

    # -- sending --------------------------------------------------------------------------

    def _on_timers(self, now: float) -> None:
        if self._reply_deadline is not None and now >= self._reply_deadline:
            self._missed_reply(now)
        if self.busy or self._waiting is not None or now < self._next_send:
            return
        if self.state == "discovery":
            self._request(now, "DISCOVERY", "DISCOVERY_ACK")
        elif self.state == "probing":
            self._probe(now)
        elif now >= self._next_reading:
            self._reading(now)

    def _request(self, now: float, kind: str, reply: str, body: bytes = b"") -> bool:
        self._seq = (self._seq + 1) & 0xFFFF
        if not self._send(now, kind, self._seq, body):
            self._next_send = now + 1.0  # the legal variant's budget said no: look again later
            return False
        check = b""
        if kind == "PROBE":
            sent = self.last_payload
            crc = crc16_arc(sent[3 : 3 + self.params.echo_crc_bytes])
            check = crc.to_bytes(2, "big")
        self._waiting = (reply, self._seq, check)
        return True

    def _probe(self, now: float) -> None:
        self._request(now, "PROBE", "ECHO")

    def _reading(self, now: float) -> None:
        self._next_reading = now + self.params.reading_interval_s
        if self.latest is None:
            return
        if now < self._pace_until:
            self.readings_skipped += 1  # the firmware's own limiter: this reading is dropped
            return
        raw, meter_time = self.latest
        values = reading_values(raw)
        body = struct.pack(f">{VALUES_PER_READING}f", *(float(v) for v in values))
        if not self._request(now, "READING", "ACK", body):
            return
        airtime = self.recorder.sent[-1].airtime
        if self.budget is None:
            self._pace_until = now + airtime / self.duty_cycle
        self.sent_readings[self._seq] = SentReading(self._seq, meter_time, values, now)

    def _deadlines(self) -> list[float | None]:
        if self._reply_deadline is not None:
            return [self._reply_deadline]
        if self.busy:
            return []
        if self.state == "operation":
            return [max(self._next_send, self._next_reading)]
        return [self._next_send]


class Esp32Rx(_Esp32Node):
    """The firmware's receiver: answers discovery, echoes probes, acks readings."""

    ROLE = "esp32-rx"

    def __init__(
        self,
        radio: SX127x,
        ladder: Sequence[RadioSettings],
        *,
        params: Esp32Params,
        recorder: SideRecorder,
        budget: AirtimeBudget | None,
        rng: random.Random,
        now: float,
        on_reading: Callable[[int, tuple[float, ...], float], None],
    ) -> None:
        super().__init__(
            radio, ladder, params=params, recorder=recorder, budget=budget, rng=rng, now=now
        )
        self.state = "listen"
        self.on_reading = on_reading
        self.fallbacks = 0
        self.acks_not_sent = 0
        self._last_heard = now
        self._good = 0
        self._previous: int | None = None
        self._stepped_at = now
        self._step_after_tx = False
        self._delivered: set[int] = set()

    def _reply(self, now: float, kind: str, seq: int, body: bytes = b"") -> bool:
        if self._send(now, kind, seq, body):
            return True
        self.acks_not_sent += 1
        return False

    def _on_frame(self, now: float, kind: str, seq: int, body: bytes, frame: ReceivedFrame) -> None:
        self._last_heard = now
        if kind == "DISCOVERY":
            if self._reply(now, "DISCOVERY_ACK", seq):
                self.state = "linked"
                self._good = 0
                self._previous = None
        elif kind == "PROBE" and self.state != "listen":
            crc = crc16_arc(frame.payload[3 : 3 + self.params.echo_crc_bytes])
            if self._reply(now, "ECHO", seq, crc.to_bytes(2, "big")):
                self._good += 1
                if self._good >= self.params.good_echoes_to_step and self.rung + 1 < len(
                    self.ladder
                ):
                    self._step_after_tx = True
        elif kind == "READING" and self.state != "listen":
            self.state = "operation"
            self._previous = None
            if seq not in self._delivered:
                self._delivered.add(seq)
                values = struct.unpack(f">{VALUES_PER_READING}f", body[: 4 * VALUES_PER_READING])
                self.on_reading(seq, values, frame.received_at)
            self._reply(now, "ACK", seq)

    def _on_tx_done(self, now: float) -> None:
        if self._step_after_tx:
            self._step_after_tx = False
            self._previous = self.rung
            self._good = 0
            self._stepped_at = now
            self._configure(now, self.rung + 1, "step up")

    def _on_timers(self, now: float) -> None:
        if self.busy:
            return
        if (
            self._previous is not None
            and now - max(self._stepped_at, self._last_heard) >= self.params.rung_timeout_s
        ):
            previous, self._previous = self._previous, None
            self._good = 0
            self._configure(now, previous, "nothing heard at the new rung")
            self._last_heard = now
        if self.state != "listen" and now - self._last_heard >= self.params.rx_silence_s:
            self.fallbacks += 1
            self.state = "listen"
            self._previous = None
            self._configure(now, 0, "silence")

    def _deadlines(self) -> list[float | None]:
        out: list[float | None] = []
        if self._previous is not None:
            out.append(max(self._stepped_at, self._last_heard) + self.params.rung_timeout_s)
        if self.state != "listen":
            out.append(self._last_heard + self.params.rx_silence_s)
        return out


class Esp32Simulation:
    """The baseline on its own channel with the same options as the p1-lora run."""

    def __init__(
        self,
        options: SimOptions,
        *,
        legal: bool = False,
        feed: Iterator[tuple[float, bytes]] | None = None,
        params: Esp32Params | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        self.options = options
        self.legal = legal
        self.params = params or Esp32Params()
        self.config = config or options.link_config()
        self.band = self.config.sub_band()
        self.clock = VirtualClock(0.0)
        self.loop = NodeLoop(self.clock)
        self.channel = build_channel(options, self.clock, salt=":esp32")
        spots = positions(options)
        self.ladder = self._ladder()
        self.tx_log = SideRecorder("tx")
        self.rx_log = SideRecorder("rx")
        self.readings: list[tuple[int, tuple[float, ...], float]] = []
        self.telegrams_read = 0
        self._wall = 0.0
        radios = {
            name: open_radio(
                "sim", clock=self.clock, channel=self.channel, name=name, position=spots[name]
            )
            for name in ("tx", "rx")
        }
        explicit = options.effective_path_loss_db
        if explicit is not None:
            self.channel.set_path_loss("tx", "rx", explicit)
        for at, loss in options.degrade:
            self.loop.at(at, functools.partial(self.channel.set_path_loss, "tx", "rx", loss))

        def budget() -> AirtimeBudget | None:
            return AirtimeBudget.for_sub_band(self.band) if legal else None

        now = self.clock.now()
        self.tx = Esp32Tx(
            radios["tx"],
            self.ladder,
            params=self.params,
            recorder=self.tx_log,
            budget=budget(),
            rng=random.Random(f"esp32:{options.seed}:tx"),
            now=now,
            duty_cycle=self.band.duty_cycle,
        )
        self.rx = Esp32Rx(
            radios["rx"],
            self.ladder,
            params=self.params,
            recorder=self.rx_log,
            budget=budget(),
            rng=random.Random(f"esp32:{options.seed}:rx"),
            now=now,
            on_reading=lambda seq, values, at: self.readings.append((seq, values, at)),
        )
        self.meter = MeterNode(feed or telegram_feed(options), self._submit)
        self.loop.add("meter", self.meter, 0)
        self.loop.add("tx", self.tx, 1)
        self.loop.add("rx", self.rx, 2)

    def _ladder(self) -> list[RadioSettings]:
        power = self.config.max_tx_power()
        rungs = [
            RadioSettings(self.config.channel_hz, sf, bw, self.config.coding_rate, power)
            for sf, bw in LADDER
        ]
        if not self.legal:
            return rungs
        allowed = []
        for settings in rungs:
            try:
                self.config.region.check(settings)
            except RegionError:
                continue
            allowed.append(settings)
        return allowed

    def _submit(self, raw: bytes, t: float) -> None:
        self.telegrams_read += 1
        self.tx.submit_telegram(raw, t)

    def run_until(self, end: float) -> None:
        started = time.perf_counter()
        try:
            self.loop.run_until(end)
        finally:
            self._wall += time.perf_counter() - started

    def run(self) -> SimMetrics:
        self.run_until(self.options.duration_s)
        return self.metrics()

    def metrics(self) -> SimMetrics:
        end = self.clock.now()
        tx, rx = self.tx_log, self.rx_log
        sent = self.tx.sent_readings
        latencies: list[float] = []
        delivery_times: list[float] = []
        wrong_values = total_values = corrupt = 0
        for seq, decoded, at in self.readings:
            reading = sent.get(seq)
            delivery_times.append(at)
            if reading is None:
                corrupt += 1
                continue
            latencies.append(at - reading.meter_time)
            for exact, got in zip(reading.values, decoded, strict=True):
                total_values += 1
                if not float32_keeps(exact) or not _same_float32(exact, got):
                    wrong_values += 1
        first, max_gap = gap_metrics(delivery_times, end)
        reading_sizes = [float(s.nbytes) for s in tx.sent if s.frame_type == "READING"]
        duty_tx = max_window_airtime(tx.sent) / HOUR_S
        duty_rx = max_window_airtime(rx.sent) / HOUR_S
        entries = self.tx.operation_entries
        converged = None
        if self.tx.state == "operation" and entries:
            converged = convergence_time([(t, s, "") for t, s in entries])
        hours = max(end, 1e-9) / HOUR_S
        final = self.tx.settings
        handshake = tx.airtime(HANDSHAKE_KINDS) + rx.airtime(HANDSHAKE_KINDS)
        values: dict[str, object] = {
            "protocol": "esp32-legal" if self.legal else "esp32",
            "budget_enforced": self.legal,
            "duration_s": round(end, 3),
            "wall_time_s": round(self._wall, 3),
            "telegrams_read": self.telegrams_read,
            "telegrams_delivered": 0,
            "readings_sent": len(sent),
            "readings_skipped_by_limiter": self.tx.readings_skipped,
            "readings_delivered": len(self.readings),
            "readings_corrupt": corrupt,
            "readings_per_hour": round(len(self.readings) / hours, 1),
            "values_per_reading": VALUES_PER_READING,
            "values_wrong_fraction": round(wrong_values / total_values, 4)
            if total_values
            else None,
            "frame_bytes_median": median(reading_sizes),
            "frame_bytes_p95": percentile(reading_sizes, 0.95),
            "frames_tx": len(tx.sent),
            "frames_rx": len(rx.sent),
            "airtime_s_tx": round(tx.airtime(), 3),
            "airtime_s_rx": round(rx.airtime(), 3),
            "duty_cycle_max_tx": round(duty_tx, 5),
            "duty_cycle_max_rx": round(duty_rx, 5),
            "duty_cycle_limit": self.band.duty_cycle,
            "budget_exceeded": max(duty_tx, duty_rx) > self.band.duty_cycle + 1e-9,
            "handshake_airtime_s": round(handshake, 3),
            "handshakes": self.tx.handshakes,
            "rehandshakes_after_loss": self.tx.rehandshakes,
            "rx_silence_fallbacks": self.rx.fallbacks,
            "latency_ms_p50": _ms(median(latencies)),
            "latency_ms_p95": _ms(percentile(latencies, 0.95)),
            "max_gap_s": None if max_gap is None else round(max_gap, 3),
            "first_delivery_s": None if first is None else round(first, 3),
            "convergence_s": None if converged is None else round(converged, 3),
            "final_state": self.tx.state,
            "final_sf": final.sf,
            "final_bw": final.bw_hz / 1000,
            "settings_timeline": settings_timeline(tx.settings),
        }
        return SimMetrics(values)


def _same_float32(exact: Decimal, got: float) -> bool:
    (expected,) = struct.unpack(">f", struct.pack(">f", float(exact)))
    return bool(expected == got)


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)
