"""The ESP32 "P1-LoRa" firmware's behaviour, ported to Python from its newest source.

p1-lora descends from this firmware; `tools.esp32_baseline` runs the two state machines below
on the simulated channel so `p1-lora sim --baseline ...` compares both on the same air (its
frames and meter values are in `tools.esp32_frames`). Every constant and rule cites the file,
commit and line of the source it comes from (read through the search tools; behaviour ported,
no code copied). Line numbers are those of the commits below.

Which version, and why (the source index holds several versions of each file; it gives their
commits but not their dates, so the order below is inferred from their contents):

- TX = github.com/plan-d-io/P1-LoRa-transmitter at f2e5d06: `P1-LoRa-transmitter.ino`,
  `LoRaFuncs.ino` and `utilities.h` (the only version of `utilities.h`). Versions seen:
  3a12344 (no resync request, `packetLoss > 128`), 775a678 (adds `accPacketLoss`, the
  restart ACK type 24 and reacts to type 231), 5c248fe (.ino only: declares `revertTried`
  but no code uses it yet) and f2e5d06, the newest: it uses `revertTried` in syncMode 4,
  calls `reSync()` when rung 0's beacon goes unanswered in syncMode 1, understands the
  receiver's "forced settings" ack (byte 189, which only the newest receivers send) and
  uses `networkNum` 125 like the newest receiver (the older transmitters say 127).
  `DSMRtelegram.ino` follows 3a12344: the index names no other commit of its three versions.
- RX = github.com/plan-d-io/P1-LoRa-receiver at e0df6f8: `P1-LoRa-receiver.ino`,
  `LoRaFuncs.ino` and `LoRaConfig.h`. `LoRaFuncs.ino` versions seen: 59eb47c (guards its
  packet-loss division), f2442b7 (divides by the message counter unguarded), e77a0af (the
  guard back, plus `sendSyncReq()`), 2a9db7b (adds forced settings, `revertTried`, the LED)
  and e0df6f8, the newest: everything of 2a9db7b plus LoRa aux sensors (type 153, also in its
  `LoRaConfig.h`), `!forcedSettings` on the sync request, and an .ino built for Arduino-ESP32
  3.x (`NetworkClientSecure`); 2a9db7b and e0df6f8 both say `fw_ver = 217`. Four other
  versions of `LoRaFuncs.ino` are stored under commits the index does not name: a newer one
  may exist.
- LoRa.cpp = github.com/sandeepmistry/arduino-LoRa `src/LoRa.cpp` (the stored version is
  0.7.2; `begin()` and the CRC default are the same in 0.8.0, which the firmware names).

How the firmware works (both sides run an Arduino `loop()`; `elapsedMillis` timers compared
with a strict `>`, so a "6 s" wait fires in the millisecond after 6 s; every `endPacket()`
blocks for the whole time on air, arduino-LoRa's default, LoRa.cpp `endPacket(async=false)`):

1. Discovery (TX syncMode 0): a start-sync beacon at SF12/BW125 every 6 s, 7 tries, then a
   3-minute pause. The receiver listens at SF12/BW125 (RX syncMode 0).
2. Each rung of `LADDER` (SF12/BW125, then SF12..SF7 at BW250): the transmitter sends a
   start-sync beacon naming the rung on the *current* setting; the receiver acks it 200 ms
   later and switches; on the ack the transmitter switches too and sends 52-byte calibration
   frames every `spacing_s` for `window_s`, each acked 20 ms after it arrives with a CRC of
   its first 8 plaintext bytes and the receiver's count. 4.5 s after the window, if it sent
   more than twice the count the last ack reported, it reverts: one rung down with
   `revertTried` set, but the next pass of the same syncMode counts the cleared counters as
   a success and requests the *same* rung again; a rung whose calibrations all fail after a
   revert restarts the climb at rung 0 (whose beacon, unanswered 7 times, re-syncs). Only at
   rung 0 does a failed window stop the climb there. Otherwise it tries the next rung. A
   rung whose beacon gets no ack 3 times stops the climb one rung lower. The stop beacon is
   acked (or repeated once). The receiver mirrors the revert: a window with nothing heard
   steps one rung down, a second one after a revert goes back to rung 0.
3. Operation (syncMode -1): a reading is sent only when a P1 telegram has been read and more
   than `update_interval_s` (per rung and meter type) has passed since the last one ended:
   with a telegram every second, SF7/BW250 three-phase sends every 8 s (7 s rounded up to the
   next telegram). The receiver publishes it and acks 200 ms later.
4. Losing the link: the transmitter re-syncs from SF12/BW125 (after sending a type-24
   "restart sync ACK", which sends a receiver that hears it back to SF12/BW125 too) after
   more unacked readings in a row than its SF's limit, more than 64 of its byte-wide counter
   unacked, or 300 s without any ack; the receiver returns to SF12/BW125 after 180 s without
   a telegram.
5. Asking for better: at SF9 or slower, when the transmitter's counter wraps (every 256
   readings) and the last packet loss was under 26 %, the receiver sends a sync request
   (type 231); the transmitter answers with `reSync()` and both climb the ladder again.

Its bugs are ported as they are (each cited where it happens): the SF11 typo in the loss
limits (SF11 keeps the previous limit); calibration frames count as lost readings until an
ack resets the count (so a rung's failed calibrations can end operation at once); the
revert that retries the same rung (a marginal rung is calibrated again and again); a
receiver still in sync mode acks readings without publishing them; single-phase meters send
their readings as calibration-type frames the receiver never publishes in operation.

Not modelled: the older receiver's division by a zero message counter (f2442b7: an
`IntegerDivideByZero` reboot on the first reading after every sync; the newest guards it),
forced settings (a receiver option, off by default), the serial port's 256-byte buffer
overflowing during long transmissions (a telegram that arrives while the MCU is blocked, or
during the sync, is not read), LoRa aux sensors, the WiFi / MQTT side of the receiver,
`setLCD`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from enum import IntEnum
from typing import ClassVar

from p1lora.common.link import Transmit
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.radio import FrameReceived, RadioError, TxDone
from p1lora.hardware.sx127x import SX127x
from p1lora.tools.esp32_frames import (
    METER_KINDS,
    NETWORK_NUM,
    Header,
    Kind,
    MeterData,
    Phases,
    check_crc,
    decrypt,
    encrypt,
    frame,
    value_count,
)
from p1lora.tools.sim import SideRecorder

__all__ = [
    "FIRMWARE_RADIO",
    "LADDER",
    "RUN_LOSS_LIMIT",
    "UPDATE_INTERVAL_S",
    "Esp32Receiver",
    "Esp32Transmitter",
    "Rung",
    "RxMode",
    "TxMode",
    "firmware_radio",
    "run_loss_limit",
]

logger = logging.getLogger(__name__)

MILLISECOND = 0.001


@dataclass(frozen=True, slots=True)
class Rung:
    """One row of `loraConfig` (TX P1-LoRa-transmitter.ino f2e5d06:19-27 = RX LoRaConfig.h
    e0df6f8:3-11)."""

    sf: int
    bw_khz: int
    #: Seconds between beacons / calibration frames at this rung (column 3).
    spacing_s: float
    #: The calibration window (column 4), also sent in the beacon as one byte.
    window_s: float

    @property
    def bw_hz(self) -> int:
        return self.bw_khz * 1000


#: The sync ladder, slowest first: SF12/BW125, then SF12..SF7 all at BW250.
LADDER: tuple[Rung, ...] = (
    Rung(12, 125, 8.0, 38.0),
    Rung(12, 250, 3.0, 20.0),
    Rung(11, 250, 2.0, 10.0),
    Rung(10, 250, 2.0, 8.0),
    Rung(9, 250, 2.0, 8.0),
    Rung(8, 250, 2.0, 8.0),
    Rung(7, 250, 1.0, 8.0),
)


#: `loraUpdate` (TX P1-LoRa-transmitter.ino f2e5d06:31-34, RX LoRaConfig.h e0df6f8:15-18): seconds
#: readings per rung, "to keep in line with 1 % LoRa duty cycle" (whatever the sub-band).
UPDATE_INTERVAL_S: dict[Phases, tuple[float, ...]] = {
    Phases.SINGLE: (230.474, 107.207, 57.803, 31.099, 16.7, 9.0, 4.5),
    Phases.THREE: (372.346, 173.169, 93.369, 50.238, 26.977, 14.538, 7.0),
}

#: Unacked readings in a row allowed per SF (TX LoRaFuncs.ino f2e5d06:372-377). The SF11 line tests
#: `setSF == 8` a second time (line 376), so SF11 keeps whatever limit was set before.
RUN_LOSS_LIMIT: dict[int, int] = {7: 26, 8: 21, 9: 15, 10: 9, 12: 3}
#: `accPacketLoss` at boot (TX P1-LoRa-transmitter.ino f2e5d06:71).
INITIAL_RUN_LOSS_LIMIT = 25
#: More than this many of the byte-wide counter unacked: re-sync (TX .ino f2e5d06:150, 154).
MAX_COUNTER_LOSS = 64
#: Re-sync after this long without an ack or sync ack (TX .ino f2e5d06:159, reset at 206-217).
TX_SILENCE_S = 300.0
#: The receiver returns to SF12/BW125 after this long without a telegram (RX .ino e0df6f8:268-279).
RX_SILENCE_S = 180.0
SILENCE_REASON = "180 s without a telegram"
#: Discovery: a beacon every 6 s (TX LoRaFuncs.ino f2e5d06:233), 7 tries (239: syncTry > 6), then
#: `waitForSync = 0` and nothing until it exceeds 180 s again (188).
DISCOVERY_SPACING_S = 6.0
DISCOVERY_TRIES = 7
DISCOVERY_PAUSE_S = 180.0
#: A rung's beacon is tried 3 times (TX LoRaFuncs.ino f2e5d06:266: syncTry > 2) before giving up.
REQUEST_TRIES = 3
#: Wait after the calibration window before judging it (TX LoRaFuncs.ino f2e5d06:298).
EVALUATION_GRACE_S = 4.5
#: The receiver acks a start-sync beacon after 200 ms (RX LoRaFuncs.ino e0df6f8:331), a calibration
#: frame after `delay(20)` (RX LoRaFuncs.ino e0df6f8:205-207), a reading in operation after 200 ms
#: (RX P1-LoRa-receiver.ino e0df6f8:258-266).
SYNC_ACK_DELAY_S = 0.2
SYNC_MODE_ACK_DELAY_S = 0.02
OPERATION_ACK_DELAY_S = 0.2


def firmware_radio(frequency_hz: int, sf: int, bw_hz: int, tx_power_dbm: int) -> RadioSettings:
    """A rung as the firmware configures the SX127x: LoRa.begin() leaves CR 4/5, an 8-symbol
    preamble and no payload CRC (the chip's reset values: nothing calls setCodingRate4,
    setPreambleLength or enableCrc), sync word 0xF3 (TX .ino f2e5d06:103, RX .ino e0df6f8:392)."""
    return RadioSettings(
        frequency_hz, sf, bw_hz, cr=5, tx_power_dbm=tx_power_dbm, sync_word=0xF3, crc_on=False
    )


#: As shipped: 868 MHz (TX utilities.h f2e5d06:21 `LoRa_frequency 868E6`), 17 dBm (LoRa.cpp:140,
#: `begin()` calls setTxPower(17); the firmware never changes it).
FIRMWARE_RADIO = firmware_radio(868_000_000, 12, 125_000, 17)


def run_loss_limit(sf: int, previous: int) -> int:
    """`accPacketLoss` after settling at `sf` (SF11: unchanged, the typo)."""
    return RUN_LOSS_LIMIT.get(sf, previous)


# ---------------------------------------------------------------------------- the MCU


@dataclass(frozen=True, slots=True)
class SentReading:
    """A frame of meter values the transmitter put on the air (for the metrics)."""

    plaintext: bytes
    meter_time: float
    exact: dict[int, Decimal]


class _Mcu:
    """What both sides share: a radio, a blocking `endPacket()`, `loop()` on a virtual clock.

    A blocking transmission is a continuation run at TxDone; frames the chip hands over
    while the MCU is blocked (sending or in `delay()`) are lost, as they are on the device
    (the chip is in TX or standby then).
    """

    ROLE = "esp32"

    def __init__(
        self, radio: SX127x, recorder: SideRecorder, frequency_hz: int, tx_power_dbm: int
    ) -> None:
        self.radio = radio
        self.wakeup: threading.Event = radio.wakeup
        self.recorder = recorder
        self.frequency_hz = frequency_hz
        self.tx_power_dbm = tx_power_dbm
        self.settings = firmware_radio(frequency_hz, 12, 125_000, tx_power_dbm)
        self.frames_missed_while_blocked = 0
        self._sending = False
        self._blocked_until: float | None = None
        self._then: Callable[[float], None] | None = None

    def set_radio(self, now: float, sf: int, bw_khz: int, reason: str) -> None:
        """`LoRa.setSpreadingFactor` + `setSignalBandwidth`: the chip listens there next."""
        self.settings = firmware_radio(self.frequency_hz, sf, bw_khz * 1000, self.tx_power_dbm)
        self.radio.configure(self.settings)
        self.recorder.configured(now, self.settings, reason)

    def send(self, now: float, name: str, data: bytes, then: Callable[[float], None]) -> None:
        """`beginPacket ... endPacket()`: blocks until TxDone, then runs `then(now)`."""
        try:
            airtime = self.radio.send(data)
        except RadioError as exc:
            logger.warning("%s: send failed: %s", self.ROLE, exc)
            then(now)
            return
        self._sending = True
        self._then = then
        self.recorder.frame_sent(now, Transmit(data, self.settings, name, airtime), airtime)

    def block(self, now: float, seconds: float, then: Callable[[float], None]) -> None:
        """`delay(ms)`: nothing runs meanwhile, then `then(now)`."""
        self._blocked_until = now + seconds
        self._then = then

    def blocked(self) -> bool:
        return self._sending or self._blocked_until is not None

    def step(self, now: float) -> float | None:
        for event in self.radio.poll():
            if isinstance(event, TxDone) and self._sending:
                self._sending = False
                self._resume(now)
            elif isinstance(event, FrameReceived):
                self.recorder.frame_received(event.frame, None)
                if self.blocked():
                    self.frames_missed_while_blocked += 1
                    continue
                header = Header.parse(event.frame.payload)
                if header is not None and header.network == NETWORK_NUM:
                    self.on_frame(now, header)
        if self._blocked_until is not None and now >= self._blocked_until:
            self._blocked_until = None
            self._resume(now)
        if self.blocked():
            return self._blocked_until  # None while sending: TxDone wakes us
        self.loop(now)
        if self.blocked():
            return self._blocked_until
        return max(self.next_deadline(now), now + MILLISECOND)

    def _resume(self, now: float) -> None:
        then, self._then = self._then, None
        if then is not None:
            then(now)

    def on_frame(self, now: float, header: Header) -> None:
        raise NotImplementedError

    def loop(self, now: float) -> None:
        raise NotImplementedError

    def next_deadline(self, now: float) -> float:
        raise NotImplementedError


def _over(now: float, since: float, seconds: float) -> bool:
    """`elapsedMillis > ms`: strictly more, at millisecond resolution."""
    return now - since > seconds + 1e-9


def _when_over(since: float, seconds: float) -> float:
    return since + seconds + MILLISECOND


class TxMode(IntEnum):
    """The transmitter's `syncMode` values (TX LoRaFuncs.ino f2e5d06:228-382, .ino
    f2e5d06:136-160)."""

    OPERATION = -1
    DISCOVERY = 0
    REQUEST = 1
    CALIBRATE = 2
    GRACE = 3
    EVALUATE = 4
    STOP = 8
    APPLY = 9


class Esp32Transmitter(_Mcu):
    """The transmitter: discovery, the ladder, readings when a telegram was read."""

    ROLE = "esp32-tx"

    def __init__(
        self,
        radio: SX127x,
        recorder: SideRecorder,
        frequency_hz: int,
        tx_power_dbm: int,
        now: float,
    ) -> None:
        super().__init__(radio, recorder, frequency_hz, tx_power_dbm)
        self.mode = TxMode.DISCOVERY
        self.meter = MeterData()
        self.sent_readings: dict[bytes, SentReading] = {}
        self.readings_sent = 0
        self.calibrations_sent = 0
        self.resyncs: dict[str, int] = {}
        self.operation_entries: list[tuple[float, RadioSettings]] = []
        # setup() (TX .ino f2e5d06:126-132).
        self.sync_count = 0
        self.sync_try = 0
        self.acc_packet_loss = INITIAL_RUN_LOSS_LIMIT
        self.run_packet_loss = 0
        self.counter = 0
        self.ack_counter = 0
        self.rom_crc = 0
        self.revert_tried = False
        rung = LADDER[0]
        self.set_sf, self.set_bw = rung.sf, rung.bw_khz
        self.send_spacing_s, self.window_s = rung.spacing_s, rung.window_s
        self.wait_sync_since = now - 380.0  # `waitForSync = 380000` (.ino f2e5d06:132)
        self.wait_send_since = now
        self.run_loop_since = now - 1e9  # never sent: the first reading goes at once
        self.since_last_msg = now
        self._pending: tuple[bytes, float] | None = None
        self.set_radio(now, rung.sf, rung.bw_khz, "boot")

    # -- serial ---------------------------------------------------------------------------

    def submit_telegram(self, raw: bytes, t: float) -> None:
        """A telegram on the P1 port; read only in operation while not blocked (TX .ino
        f2e5d06:137-144)."""
        if self.mode is TxMode.OPERATION and not self.blocked():
            self._pending = (raw, t)
            self.wakeup.set()

    # -- loop() ---------------------------------------------------------------------------

    def loop(self, now: float) -> None:
        if self.mode is TxMode.OPERATION:
            self._operate(now)
        else:
            self._SYNC_STEPS[self.mode](self, now)

    def next_deadline(self, now: float) -> float:
        mode = self.mode
        if mode is TxMode.OPERATION:
            return _when_over(self.since_last_msg, TX_SILENCE_S)
        if mode is TxMode.DISCOVERY:
            return max(
                _when_over(self.wait_sync_since, DISCOVERY_PAUSE_S),
                _when_over(self.wait_send_since, DISCOVERY_SPACING_S),
            )
        if mode is TxMode.REQUEST:
            return max(
                _when_over(self.wait_sync_since, self.window_s),
                _when_over(self.wait_send_since, self.send_spacing_s),
            )
        if mode is TxMode.CALIBRATE:
            return min(
                _when_over(self.wait_send_since, self.send_spacing_s),
                self.wait_sync_since + self.window_s,
            )
        if mode is TxMode.GRACE:
            return _when_over(self.wait_send_since, EVALUATION_GRACE_S)
        if mode is TxMode.STOP:
            return _when_over(self.wait_send_since, self.send_spacing_s)
        return now  # EVALUATE, APPLY: act in the next loop()

    def _operate(self, now: float) -> None:
        """TX .ino f2e5d06:137-160: a reading per telegram read once the interval has passed."""
        if self._pending is not None:
            raw, meter_time = self._pending
            self._pending = None
            self.meter.split(raw)
            interval = UPDATE_INTERVAL_S[self.meter.phases][self.sync_count]
            if _over(now, self.run_loop_since, interval):
                self._send_values(now, self.meter.kind, meter_time, self._after_reading)
                return
        if _over(now, self.since_last_msg, TX_SILENCE_S):
            self._resync(now, "300 s without an ack")

    def _after_reading(self, now: float) -> None:
        self.run_loop_since = now
        lost = (self.counter - self.ack_counter) & 0xFF
        if lost > MAX_COUNTER_LOSS:
            self._resync(now, f"more than {MAX_COUNTER_LOSS} of the counter unacked")
        elif self.run_packet_loss > self.acc_packet_loss:
            self._resync(now, "too many unacked readings in a row")

    def _send_values(
        self, now: float, kind: Kind, meter_time: float, then: Callable[[float], None]
    ) -> None:
        """`sendTelegram(type)` (TX LoRaFuncs.ino f2e5d06:115-177)."""
        count = value_count(kind)
        plain = self.meter.plaintext(count)
        self.rom_crc = check_crc(plain)
        data = frame(kind, self.counter, encrypt(plain)[: 4 * count])
        operating = self.mode is TxMode.OPERATION
        if operating:
            self.readings_sent += 1
            self.sent_readings[plain[: 4 * count]] = SentReading(
                plain[: 4 * count], meter_time, dict(self.meter.exact)
            )
        else:
            self.calibrations_sent += 1

        def sent(at: float) -> None:
            self.counter = (self.counter + 1) & 0xFF
            self.run_packet_loss += 1  # calibration frames too (line 176): the bug
            then(at)

        self.send(now, "READING" if operating else "CALIBRATION", data, sent)

    def _resync(self, now: float, reason: str) -> None:
        """`reSync()` (TX LoRaFuncs.ino f2e5d06:200-226)."""
        self.resyncs[reason] = self.resyncs.get(reason, 0) + 1
        logger.debug("%s: re-sync (%s)", self.ROLE, reason)

        def sent(at: float) -> None:
            self.counter = self.ack_counter = 0
            self.sync_count = self.sync_try = 0
            rung = LADDER[0]
            self.set_sf, self.set_bw = rung.sf, rung.bw_khz
            self.send_spacing_s, self.window_s = rung.spacing_s, rung.window_s
            self.wait_sync_since = at - 300.0
            self.wait_send_since = at - 6.0
            self.set_radio(at, rung.sf, rung.bw_khz, f"re-sync: {reason}")
            self.mode = TxMode.DISCOVERY

        self.send(now, "RESYNC", frame(Kind.RESYNC, self.counter, b""), sent)

    # -- syncLoop() -----------------------------------------------------------------------

    def _beacon(self, now: float, start: bool, then: Callable[[float], None]) -> None:
        """`sendSync(start)` (TX LoRaFuncs.ino f2e5d06:65-113): the rung `sync_count` names, sent on
        the current setting."""
        rung = LADDER[self.sync_count]
        self.set_sf, self.set_bw = rung.sf, rung.bw_khz
        self.send_spacing_s, self.window_s = rung.spacing_s, rung.window_s
        body = bytes((self.sync_count, rung.sf, rung.bw_khz))
        if start:
            body += bytes((int(rung.window_s) & 0xFF,))
        kind = Kind.START_SYNC if start else Kind.STOP_SYNC
        self.send(now, kind.name, frame(kind, 0, body), then)

    def _discover(self, now: float) -> None:
        """syncMode 0 (TX LoRaFuncs.ino f2e5d06:229-247)."""
        if not (
            _over(now, self.wait_sync_since, DISCOVERY_PAUSE_S)
            and _over(now, self.wait_send_since, DISCOVERY_SPACING_S)
        ):
            return

        def sent(at: float) -> None:
            self.wait_send_since = at
            self.sync_try += 1
            if self.sync_try >= DISCOVERY_TRIES:
                self.wait_sync_since = at
                self.sync_try = 0

        self._beacon(now, True, sent)

    def _request(self, now: float) -> None:
        """syncMode 1 (TX LoRaFuncs.ino f2e5d06:248-277): the next rung's beacon, 3 tries."""
        if not (
            _over(now, self.wait_sync_since, self.window_s)
            and _over(now, self.wait_send_since, self.send_spacing_s)
        ):
            return

        def sent(at: float) -> None:
            self.wait_send_since = at
            self.sync_try += 1
            if self.sync_count == 0:  # after a restart from rung 0, see _evaluate
                if self.sync_try >= DISCOVERY_TRIES:
                    self.wait_sync_since = at
                    self.sync_try = 0
                    self._resync(at, "rung 0 beacon unanswered")
            elif self.sync_try >= REQUEST_TRIES:
                self.sync_count -= 1
                self._beacon(at, False, self._stopping)

        self._beacon(now, True, sent)

    def _stopping(self, now: float) -> None:
        self.wait_send_since = now
        self.mode = TxMode.STOP

    def _calibrate(self, now: float) -> None:
        """syncMode 2 (TX LoRaFuncs.ino f2e5d06:278-294): calibration frames during the window."""
        if now - self.wait_sync_since < self.window_s - 1e-9:
            if _over(now, self.wait_send_since, self.send_spacing_s):

                def sent(at: float) -> None:
                    self.wait_send_since = at
                    self.sync_try = 0

                self._send_values(now, Kind.CALIBRATION, now, sent)
        else:
            self.wait_send_since = now
            self.mode = TxMode.GRACE

    def _grace(self, now: float) -> None:
        """syncMode 3 (TX LoRaFuncs.ino f2e5d06:295-302)."""
        if _over(now, self.wait_send_since, EVALUATION_GRACE_S):
            self.wait_send_since = now
            self.mode = TxMode.EVALUATE

    def _evaluate(self, now: float) -> None:
        """syncMode 4 (TX LoRaFuncs.ino f2e5d06:303-352; 313-320 restart, 322-326 revert,
        327-331 stop at rung 0): more than half the calibrations unacked either restarts the
        climb (none acked, and a revert was already tried), or steps back one rung with
        `revertTried` set and stays in syncMode 4 (whose next pass, with both
        counters 0, counts as a success and requests the *same* rung again: a marginal rung
        is retried until its calibrations all fail or half succeed), or at rung 0 stops
        there; otherwise on to the next rung. `revertTried` is never cleared by a success."""
        self.wait_send_since = self.wait_sync_since = now
        if self.counter > self.ack_counter * 2:
            if self.ack_counter == 0 and self.revert_tried:
                self.sync_count = 0
                self._request_rung(now)
                self.revert_tried = False
            elif self.sync_count > 0:
                self.sync_count -= 1
                self.revert_tried = True
            else:
                self._beacon(now, False, self._stopping)
        else:
            self.sync_count += 1
            if self.sync_count < len(LADDER):
                self._request_rung(now)
            else:
                self.sync_count -= 1  # "Best possible settings reached"
                self._beacon(now, False, self._stopping)
        self.counter = self.ack_counter = 0

    def _request_rung(self, now: float) -> None:
        """`waitForSync = waitForSyncVal; waitForSyncVal = <the rung's window>; waitForSend =
        waitForSendVal; syncMode = 1`: the old window counts as passed, so the beacon for
        `sync_count` goes once the new window exceeds the old one."""
        self.wait_sync_since = now - self.window_s
        self.window_s = LADDER[self.sync_count].window_s
        self.wait_send_since = now - self.send_spacing_s
        self.mode = TxMode.REQUEST

    def _stop(self, now: float) -> None:
        """syncMode 8 (TX LoRaFuncs.ino f2e5d06:353-361): repeat the stop beacon once, then
        settle."""
        if _over(now, self.wait_send_since, self.send_spacing_s):
            self._beacon(now, False, self._to_apply)

    def _to_apply(self, now: float) -> None:
        self.mode = TxMode.APPLY

    def _apply(self, now: float) -> None:
        """syncMode 9 (TX LoRaFuncs.ino f2e5d06:362-381): settle and start operation."""
        self.set_radio(now, self.set_sf, self.set_bw, "operation")
        self.acc_packet_loss = run_loss_limit(self.set_sf, self.acc_packet_loss)
        self.counter = self.ack_counter = 0
        self.mode = TxMode.OPERATION
        self.operation_entries.append((now, self.settings))

    _SYNC_STEPS: ClassVar[dict[TxMode, Callable[[Esp32Transmitter, float], None]]] = {
        TxMode.DISCOVERY: _discover,
        TxMode.REQUEST: _request,
        TxMode.CALIBRATE: _calibrate,
        TxMode.GRACE: _grace,
        TxMode.EVALUATE: _evaluate,
        TxMode.STOP: _stop,
        TxMode.APPLY: _apply,
    }

    # -- onReceive() ----------------------------------------------------------------------

    def on_frame(self, now: float, header: Header) -> None:
        """`onReceive` (TX .ino f2e5d06:176-218)."""
        if header.kind in (Kind.CRC_ACK, 128):
            self._crc_ack(header)
            self.since_last_msg = now
        elif header.kind in (Kind.START_SYNC_ACK, Kind.STOP_SYNC_ACK):
            self._sync_ack(now, header)
            self.since_last_msg = now
        elif header.kind == Kind.SYNC_REQUEST:  # "resync request", in any syncMode
            self.since_last_msg = now
            self._resync(now, "the receiver requested it")

    def _crc_ack(self, header: Header) -> None:
        """`processTelegramAck` (TX LoRaFuncs.ino f2e5d06:179-198): a matching CRC takes the
        receiver's count and clears the run of losses."""
        if int.from_bytes(header.payload[:4].ljust(4, b"\0"), "little") == self.rom_crc:
            self.ack_counter = header.counter
            self.run_packet_loss = 0

    def _sync_ack(self, now: float, header: Header) -> None:
        """`processSyncAck` (TX LoRaFuncs.ino f2e5d06:1-63)."""
        msg = header.payload.ljust(3, b"\0")
        if not (6 < msg[0] < 13 and msg[1] in (125, 250)):
            return
        if header.kind == Kind.START_SYNC_ACK:
            window = int(self.window_s) & 0xFF
            if self.mode is not TxMode.OPERATION and tuple(msg[:3]) == (
                self.set_sf,
                self.set_bw,
                window,
            ):
                self.set_radio(now, self.set_sf, self.set_bw, f"rung {self.sync_count}")
                self.wait_send_since = now - self.send_spacing_s
                self.wait_sync_since = now
                self.mode = TxMode.CALIBRATE
        elif tuple(msg[:2]) == (self.set_sf, self.set_bw) and self.mode > TxMode.REQUEST:
            self.wait_sync_since = now
            self.mode = TxMode.APPLY


class RxMode(IntEnum):
    """The receiver's `syncMode` values (RX LoRaFuncs.ino e0df6f8:284-346)."""

    OPERATION = -1
    LISTEN = 0
    WINDOW = 1
    WINDOW_END = 3
    ACK_SWITCH = 4
    APPLY = 9


class Esp32Receiver(_Mcu):
    """The receiver: acks beacons and calibrations, publishes readings in operation."""

    ROLE = "esp32-rx"

    def __init__(
        self,
        radio: SX127x,
        recorder: SideRecorder,
        frequency_hz: int,
        tx_power_dbm: int,
        now: float,
        *,
        on_reading: Callable[[bytes, float], None],
    ) -> None:
        super().__init__(radio, recorder, frequency_hz, tx_power_dbm)
        self.on_reading = on_reading
        self.silence_timeouts = 0
        self.acked_not_published = 0
        self.sync_requests = 0
        # `initLoRa()` (RX .ino e0df6f8:364-422), the globals' initial values (RX .ino
        # e0df6f8:43-52).
        self.mode = RxMode.LISTEN
        self.sync_count = 0
        self.set_sf, self.set_bw = 12, 125
        self.window_s = 38.0
        self.wait_sync_since = now - 300.0
        self.telegram_timeout_since = now
        self.delay_crc_since = now
        self.send_crc = False
        self.revert_tried = False
        self.counter = 0
        self.packet_loss = 0
        self.rom_crc = 0
        self.set_radio(now, 12, 125, "boot")

    # -- loop() ---------------------------------------------------------------------------

    def loop(self, now: float) -> None:
        """RX .ino e0df6f8:258-279."""
        if self.mode is not RxMode.OPERATION:
            self._SYNC_STEPS[self.mode](self, now)
        elif self.send_crc and _over(now, self.delay_crc_since, OPERATION_ACK_DELAY_S):
            self.send_crc = False
            self._crc_ack(now, lambda at: None)
        if self.blocked():
            return
        if _over(now, self.telegram_timeout_since, RX_SILENCE_S):
            self.silence_timeouts += 1
            self.mode = RxMode.LISTEN
            self.set_sf, self.set_bw = 12, 125
            self.set_radio(now, 12, 125, SILENCE_REASON)
            self.telegram_timeout_since = now

    def next_deadline(self, now: float) -> float:
        deadlines = [_when_over(self.telegram_timeout_since, RX_SILENCE_S)]
        if self.mode is RxMode.OPERATION and self.send_crc:
            deadlines.append(_when_over(self.delay_crc_since, OPERATION_ACK_DELAY_S))
        elif self.mode is RxMode.WINDOW:
            deadlines.append(_when_over(self.wait_sync_since, self.window_s))
        elif self.mode is RxMode.ACK_SWITCH:
            deadlines.append(_when_over(self.wait_sync_since, SYNC_ACK_DELAY_S))
        elif self.mode in (RxMode.WINDOW_END, RxMode.APPLY):
            deadlines.append(now)
        return min(deadlines)

    def _listen(self, now: float) -> None:
        """syncMode 0 (RX LoRaFuncs.ino e0df6f8:285-290)."""
        self.counter = 0

    def _window(self, now: float) -> None:
        """syncMode 1 (RX LoRaFuncs.ino e0df6f8:291-298)."""
        if _over(now, self.wait_sync_since, self.window_s):
            self.mode = RxMode.WINDOW_END

    def _window_end(self, now: float) -> None:
        """syncMode 3 (RX LoRaFuncs.ino e0df6f8:299-328, `revertTried` 308-317): nothing heard
        in the window steps one rung down and sets `revertTried`; nothing heard again after a
        revert goes to rung 0 (and stays there: the step down is skipped at rung 0). There it
        waits twice the single-phase reading interval of that rung (line 321)."""
        self.mode = RxMode.WINDOW if self.sync_count > 0 else RxMode.LISTEN
        if self.counter == 0:
            if self.revert_tried:
                self.sync_count = 0
                self.revert_tried = False
            if self.sync_count > 0:
                self.sync_count -= 1
                self.revert_tried = True
            rung = LADDER[self.sync_count]
            self.set_sf, self.set_bw = rung.sf, rung.bw_khz
            self.window_s = UPDATE_INTERVAL_S[Phases.SINGLE][self.sync_count] * 2
            self.set_radio(now, rung.sf, rung.bw_khz, "nothing heard in the window")
        self.counter = 0
        self.wait_sync_since = now

    def _ack_switch(self, now: float) -> None:
        """syncMode 4 (RX LoRaFuncs.ino e0df6f8:329-336)."""
        if _over(now, self.wait_sync_since, SYNC_ACK_DELAY_S):

            def sent(at: float) -> None:
                self.wait_sync_since = at
                self.mode = RxMode.WINDOW

            self._sync_ack(now, True, sent)

    def _apply(self, now: float) -> None:
        """syncMode 9 (RX LoRaFuncs.ino e0df6f8:337-346)."""
        self.set_radio(now, self.set_sf, self.set_bw, "operation")
        self.counter = 0
        self.mode = RxMode.OPERATION

    _SYNC_STEPS: ClassVar[dict[RxMode, Callable[[Esp32Receiver, float], None]]] = {
        RxMode.LISTEN: _listen,
        RxMode.WINDOW: _window,
        RxMode.WINDOW_END: _window_end,
        RxMode.ACK_SWITCH: _ack_switch,
        RxMode.APPLY: _apply,
    }

    # -- frames ---------------------------------------------------------------------------

    def _sync_ack(self, now: float, start: bool, then: Callable[[float], None]) -> None:
        """`sendSyncAck` (RX LoRaFuncs.ino e0df6f8:74-106): ack on the current setting, then
        switch."""
        kind = Kind.START_SYNC_ACK if start else Kind.STOP_SYNC_ACK
        body = bytes((self.set_sf, self.set_bw, int(self.window_s) & 0xFF))

        def sent(at: float) -> None:
            self.set_radio(at, self.set_sf, self.set_bw, f"rung {self.sync_count}")
            self.counter = 0
            then(at)

        self.send(now, "SYNC_ACK", frame(kind, self.counter, body), sent)

    def _crc_ack(self, now: float, then: Callable[[float], None]) -> None:
        """`sendCRCAck` (RX LoRaFuncs.ino e0df6f8:261-282): the receiver's count and the CRC."""
        data = frame(Kind.CRC_ACK, self.counter, self.rom_crc.to_bytes(4, "little"))
        self.send(now, "CRC_ACK", data, then)

    def on_frame(self, now: float, header: Header) -> None:
        """`onReceive` (RX .ino e0df6f8:338-358); type 153 (aux sensors) is not modelled."""
        kind = header.kind
        if kind in METER_KINDS or kind == 128:
            if header.size in (48, 96) and kind in METER_KINDS:
                self._telegram(now, Kind(kind), header)
        elif kind in (Kind.START_SYNC, Kind.STOP_SYNC):
            self._sync(now, Kind(kind), header)
        elif kind == Kind.RESYNC:
            self.mode = RxMode.LISTEN
            self.set_sf, self.set_bw = 12, 125
            self.set_radio(now, 12, 125, "re-sync requested")

    def _sync(self, now: float, kind: Kind, header: Header) -> None:
        """`processSync` (RX LoRaFuncs.ino e0df6f8:1-72; a stop-sync resets the silence timer,
        line 50)."""
        msg = header.payload.ljust(4, b"\0")
        if not (6 < msg[1] < 13 and msg[2] in (125, 250)) or msg[0] >= len(LADDER):
            return  # (an index past the table would read beyond it on the device)
        rung = LADDER[msg[0]]
        if kind == Kind.START_SYNC:
            self.sync_count = msg[0]
            if (rung.sf, rung.bw_khz) == (msg[1], msg[2]):
                self.set_sf, self.set_bw = msg[1], msg[2]
                self.window_s = float(msg[3])
                self.wait_sync_since = now
                self.counter = (self.counter + 1) & 0xFF
                self.mode = RxMode.ACK_SWITCH
        elif self.mode is not RxMode.OPERATION:
            self.sync_count = msg[0]
            if (rung.sf, rung.bw_khz) == (msg[1], msg[2]):
                self.set_sf, self.set_bw = rung.sf, rung.bw_khz
                self.wait_sync_since = now

                def sent(at: float) -> None:
                    self.mode = RxMode.APPLY
                    self.telegram_timeout_since = at

                self._sync_ack(now, False, sent)

    def _telegram(self, now: float, kind: Kind, header: Header) -> None:
        """`processTelegram` (RX LoRaFuncs.ino e0df6f8:124-218)."""
        if kind != Kind.CALIBRATION and self.mode > RxMode.LISTEN:
            self.mode = RxMode.OPERATION  # "Transmitter is already synced" (lines 129-133)
        count = value_count(kind)
        plain = decrypt(header.payload)[: 4 * count]
        self.rom_crc = check_crc(plain)
        self.counter = (self.counter + 1) & 0xFF
        self.telegram_timeout_since = now
        if kind == Kind.CALIBRATION:
            self._answer(now, kind, plain)
            return
        request: bytes | None = None
        if header.counter < self.counter:  # "Reached end of telegram count cycle"
            if self.set_sf >= 9 and self.packet_loss < 26 and self.counter > 2:
                request = frame(Kind.SYNC_REQUEST, self.counter, b"")
            self.counter = header.counter
        if header.counter > 0:  # the guard: no division by a zero message counter
            # C's int division truncates towards zero; out-of-range results are ignored.
            lost = header.counter - self.counter
            percent = abs(lost) * 100 // header.counter * (1 if lost >= 0 else -1)
            if 0 <= percent < 101:
                self.packet_loss = percent
        if request is not None:  # "RF channel good, requesting resync for better performance"
            self.sync_requests += 1
            self.send(now, "SYNC_REQUEST", request, lambda at: self._answer(at, kind, plain))
            return
        self._answer(now, kind, plain)

    def _answer(self, now: float, kind: Kind, plain: bytes) -> None:
        """The end of `processTelegram`: in a sync mode `delay(20)` and ack at once; in
        operation publish and ack 200 ms later (from loop())."""
        if self.mode is not RxMode.OPERATION:
            if kind > Kind.CALIBRATION:
                self.acked_not_published += 1  # acked in sync mode, never published
            self.block(now, SYNC_MODE_ACK_DELAY_S, lambda at: self._crc_ack(at, lambda _: None))
        elif kind > Kind.CALIBRATION:
            self.send_crc = True
            self.delay_crc_since = now
            self.on_reading(plain, now)  # processMeterTelegram(): published
