"""SX1276/77/78/79 LoRa driver over a tiny SPI interface and two GPIO pins (RESET, DIO0).

It implements the non-blocking `hardware.radio.Radio` interface:

- `configure` writes the whole register image for a `RadioSettings` (frequency, SF 6-12,
  BW 7.8-500 kHz, CR, LowDataRateOptimize by the same rule as `common.airtime`, payload CRC on,
  sync word, preamble, PA path and power, OCP, errata 2.1 and 2.3) in standby, reads it back to
  prove the chip holds it, and starts continuous receive with DIO0 mapped to RxDone.
- Image calibration (datasheet 4.2.3.8): the chip calibrates its receiver's image rejection at
  power-on for 434 MHz only; at 868/915 MHz an uncalibrated receiver rejects the image about
  35 dB instead of 48 dB. The first `configure` after start or a reset, and any `configure` that
  moves the carrier more than `IMAGE_CAL_STEP_HZ`, runs the calibration at the new frequency
  (in FSK standby, where RegImageCal lives), as Semtech's reference driver does at start-up
  (LoRaMac-node, src/radio/sx1276/sx1276.c, RxChainCalibration).
- `start_cad` runs a Channel Activity Detection (RegOpMode mode 7, DIO0 mapped to CadDone) and
  `poll` reports `CadDone(detected)`; the radio then returns to continuous receive.
- `send` fills the FIFO, maps DIO0 to TxDone, enters TX and returns the time on air; the TX
  deadline (time on air + margin) is checked on the injected clock.
- The DIO0 handler and `poll` share one routine that reads RegIrqFlags and drains what it
  finds into events. DIO0 is level-like (it stays high until the flag is cleared), so a missed
  edge means no more edges: `poll` always reads the flags too, and an optional ticker on a
  `Scheduler` does so every `poll_interval` seconds even when nobody polls.
- RxDone is cleared *before* the FIFO is read: a frame that completes during the read raises
  RxDone again and is serviced next, instead of having its flag wiped by a late clear.
- Frames with a payload CRC error or without a CRC in their header (RegHopChannel bit 6) are
  counted and dropped; settings with `crc_on=False` keep CRC-less frames (flipped bits and
  all), as arduino-LoRa does: only the ESP32 firmware's model uses that. RSSI and SNR use the datasheet formulas for the HF/LF port.
- A transmission that never completes, or a chip found outside LoRa mode, is recovered: reset
  through the RESET pin (or a sleep-mode restart on boards without one), version check,
  settings re-applied, back to receive, a WARNING in the log and a `RadioFault` event.

Thread safety: one re-entrant lock guards every SPI transaction and the driver state. The DIO0
handler (RPi.GPIO's callback thread on a Pi; synchronously inside a scheduled callback on a
virtual clock) takes it, reads the chip, queues events and sets `wakeup`; it never waits.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Final

from p1lora.common.airtime import MAX_PAYLOAD, low_data_rate_optimize, time_on_air_for
from p1lora.common.backoff import Backoff
from p1lora.common.clock import Clock, Scheduler, TimerHandle
from p1lora.common.link.config import (
    HIGH_POWER_MAX_DUTY_CYCLE,
    PA_BOOST_CONTINUOUS_MAX_DBM,
    PA_BOOST_MAX_DBM,
    max_power_for_duty_cycle,
)
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.radio import (
    CadDone,
    FrameReceived,
    RadioCounters,
    RadioError,
    RadioEvent,
    RadioFault,
    TxDone,
)
from p1lora.hardware.spi_gpio import DigitalInput, DigitalOutput, SpiDevice
from p1lora.hardware.sx127x_registers import (
    BANDWIDTH_CODES,
    CHIP_VERSION,
    CODING_RATE_CODES,
    DETECTION_SETTINGS,
    FREQ_STEP_HZ,
    FSK_IMAGE_CAL,
    FXOSC_HZ,
    HF_PORT_MIN_HZ,
    KNOWN_VERSIONS,
    RSSI_OFFSET_HF,
    RSSI_OFFSET_LF,
    Dio0Mapping,
    HopChannel,
    ImageCal,
    Irq,
    Mode,
    ModemConfig1,
    ModemConfig2,
    ModemConfig3,
    OpMode,
    PaConfig,
    Reg,
    bandwidth_from_code,
    detect_optimize_for,
    errata_bw_registers,
)

__all__ = [
    "HIGH_POWER_MAX_DUTY_CYCLE",
    "IMAGE_CAL_STEP_HZ",
    "PA_BOOST_CONTINUOUS_MAX_DBM",
    "PA_BOOST_RANGE_DBM",
    "RFO_RANGE_DBM",
    "PowerSetting",
    "SX127x",
    "frf_for",
    "max_power_for_duty_cycle",
    "power_setting",
    "register_image",
]

logger = logging.getLogger(__name__)

#: Output power each PA path can produce (datasheet 5.4.2; +18..+20 need RegPaDac = 0x87).
PA_BOOST_RANGE_DBM: Final = (2, PA_BOOST_MAX_DBM)
RFO_RANGE_DBM: Final = (-4, 14)
#: The +20 dBm mode's 1 % duty-cycle rating (`PA_BOOST_CONTINUOUS_MAX_DBM`,
#: `HIGH_POWER_MAX_DUTY_CYCLE`, `max_power_for_duty_cycle`) lives in `p1lora.common.link.config`
#: so the link and the simulator apply it too; re-exported here for the driver's users.
#: Over-current limit per path: (highest power in the row, limit in mA). PA_BOOST at +20 dBm
#: draws about 120 mA; the 100 mA default would clip it.
OCP_TABLE_MA: Final = MappingProxyType({"pa_boost": ((17, 100), (20, 140)), "rfo": ((14, 100),)})
#: Reset timing (datasheet 7.2.2): NRESET low for > 100 us, then 5 ms before SPI is usable.
RESET_PULSE_S: Final = 0.001
RESET_SETTLE_S: Final = 0.01
#: A TX deadline is time on air * 1.1 + this margin.
DEFAULT_TX_TIMEOUT_MARGIN_S: Final = 0.5
#: A carrier move larger than this re-runs the image calibration. The calibration is valid
#: around the frequency it ran at; Semtech's reference driver calibrates once per band. 5 MHz
#: keeps every channel of one band plan (EU868's 863-870 MHz) on one calibration, and a move to
#: another band (868 -> 915, or a 433 MHz channel) recalibrates.
IMAGE_CAL_STEP_HZ: Final = 5_000_000
#: The calibration takes about 10 ms (datasheet 4.2.3.8); give up after this long.
IMAGE_CAL_TIMEOUT_S: Final = 0.1
_IMAGE_CAL_POLL_S: Final = 0.002
#: Backoff between recovery attempts of a chip that does not come back.
RECOVERY_BACKOFF_S: Final = (1.0, 60.0)
#: RegLna: maximum gain G1, and on the HF port the 150 % LNA current boost.
LNA_HF: Final = 0x23
LNA_LF: Final = 0x20
#: RegIrqFlags bits that describe a received packet and are cleared together.
_RX_FLAGS: Final = int(Irq.RX_DONE | Irq.PAYLOAD_CRC_ERROR | Irq.VALID_HEADER)
_CAD_FLAGS: Final = int(Irq.CAD_DONE | Irq.CAD_DETECTED)
_STRAY_FLAGS: Final = int(Irq.RX_TIMEOUT | Irq.FHSS_CHANGE_CHANNEL) | _CAD_FLAGS
# Single flags as plain ints for `_service`, which runs at every poll: `int & IntFlag` builds
# an enum member each time (issue 16).
_TX_DONE: Final = int(Irq.TX_DONE)
_RX_DONE: Final = int(Irq.RX_DONE)
_CAD_DONE: Final = int(Irq.CAD_DONE)
_CAD_DETECTED: Final = int(Irq.CAD_DETECTED)
_PAYLOAD_CRC_ERROR: Final = int(Irq.PAYLOAD_CRC_ERROR)
_CRC_ON_PAYLOAD: Final = int(HopChannel.CRC_ON_PAYLOAD)
_LORA: Final = int(OpMode.LONG_RANGE)
_LF: Final = int(OpMode.LOW_FREQUENCY)
#: Registers left out of the read-back check after configuring. RegIrqFlagsMask: a wrong mask
#: only hides interrupts, which the polling fallback covers. RegLna: with AGC on (AgcAutoOn)
#: its gain bits may read back the gain the AGC picked rather than the value written; a
#: mismatch there says nothing about the wiring and must not stop a working radio.
_NOT_READ_BACK: Final = frozenset({Reg.IRQ_FLAGS_MASK, Reg.LNA})


@dataclass(frozen=True, slots=True)
class PowerSetting:
    """RegPaConfig/RegPaDac/RegOcp for a requested power, and the power they really give."""

    pa_config: int
    pa_dac: int
    ocp: int
    ocp_ma: int
    dbm: int


def _ocp_register(milliamps: int) -> int:
    """RegOcp: OcpOn plus the trim (45 + 5*trim mA up to 120 mA, -30 + 10*trim above)."""
    trim = (milliamps - 45) // 5 if milliamps <= 120 else (milliamps + 30) // 10
    return 0x20 | min(trim, 27)


def power_setting(dbm: int, pa_boost: bool) -> PowerSetting:
    """Registers for `dbm` on the PA_BOOST or RFO path; out-of-range power is clamped.

    PA_BOOST: Pout = 2 + OutputPower (+2..+17), or 5 + OutputPower with RegPaDac 0x87
    (+18..+20; datasheet: at most 1 % duty cycle at +20 dBm). RFO: Pout = Pmax - 15 +
    OutputPower with Pmax = 10.8 + 0.6 * MaxPower: MaxPower 7 (Pmax 15) for 0..+14 dBm,
    MaxPower 0 (Pmax 10.8) for -4..-1 dBm.
    """
    path = "pa_boost" if pa_boost else "rfo"
    low, high = PA_BOOST_RANGE_DBM if pa_boost else RFO_RANGE_DBM
    power = min(max(dbm, low), high)
    if pa_boost:
        high_power = power > PA_BOOST_CONTINUOUS_MAX_DBM
        output = power - (5 if high_power else 2)
        pa_config = int(PaConfig.PA_BOOST) | 0x70 | output
        pa_dac = 0x87 if high_power else 0x84
    else:
        max_power, output = (7, power) if power >= 0 else (0, power + 4)
        pa_config = (max_power << 4) | output
        pa_dac = 0x84
    milliamps = next(ma for limit, ma in OCP_TABLE_MA[path] if power <= limit)
    return PowerSetting(pa_config, pa_dac, _ocp_register(milliamps), milliamps, power)


def frf_for(frequency_hz: int) -> int:
    """RegFrf value: f * 2^19 / 32 MHz, rounded to the nearest 61 Hz step."""
    return round(frequency_hz * (1 << 19) / FXOSC_HZ)


def register_image(
    settings: RadioSettings, *, pa_boost: bool, implicit_payload_length: int = MAX_PAYLOAD
) -> list[tuple[Reg, int]]:
    """Every register write for `settings`, in order (written in standby, verified after).

    SF6 only works with an implicit header (no length/CR/CRC in the frame), so both ends use
    `implicit_payload_length` there; SF7-12 use the explicit header.
    """
    implicit = settings.sf == 6
    frf = frf_for(settings.frequency_hz)
    power = power_setting(settings.tx_power_dbm, pa_boost)
    hf = settings.frequency_hz > HF_PORT_MIN_HZ
    detection_threshold = DETECTION_SETTINGS[settings.sf][1]
    detect_optimize = detect_optimize_for(settings.sf, settings.bw_hz)
    config1 = (BANDWIDTH_CODES[settings.bw_hz] << 4) | (CODING_RATE_CODES[settings.cr] << 1)
    config1 |= int(ModemConfig1.IMPLICIT_HEADER) if implicit else 0
    config2 = settings.sf << 4
    config2 |= int(ModemConfig2.RX_PAYLOAD_CRC_ON) if settings.crc_on else 0
    config3 = int(ModemConfig3.AGC_AUTO_ON)
    if low_data_rate_optimize(settings.sf, settings.bw_hz):
        config3 |= int(ModemConfig3.LOW_DATA_RATE_OPTIMIZE)
    image: list[tuple[Reg, int]] = [
        (Reg.FRF_MSB, (frf >> 16) & 0xFF),
        (Reg.FRF_MID, (frf >> 8) & 0xFF),
        (Reg.FRF_LSB, frf & 0xFF),
        (Reg.PA_CONFIG, power.pa_config),
        (Reg.PA_DAC, power.pa_dac),
        (Reg.OCP, power.ocp),
        (Reg.LNA, LNA_HF if hf else LNA_LF),
        (Reg.MODEM_CONFIG1, config1),
        (Reg.MODEM_CONFIG2, config2),
        (Reg.MODEM_CONFIG3, config3),
        (Reg.PREAMBLE_MSB, (settings.preamble >> 8) & 0xFF),
        (Reg.PREAMBLE_LSB, settings.preamble & 0xFF),
        (Reg.SYNC_WORD, settings.sync_word),
        (Reg.DETECT_OPTIMIZE, detect_optimize),
        (Reg.DETECTION_THRESHOLD, detection_threshold),
        *errata_bw_registers(settings.bw_hz, settings.frequency_hz),
        (Reg.PAYLOAD_LENGTH, implicit_payload_length if implicit else 0x01),
        (Reg.MAX_PAYLOAD_LENGTH, 0xFF),
        (Reg.FIFO_TX_BASE_ADDR, 0x00),
        (Reg.FIFO_RX_BASE_ADDR, 0x00),
        (Reg.IRQ_FLAGS_MASK, 0x00),
    ]
    return image


def _signed(value: int, bits: int) -> int:
    sign = 1 << (bits - 1)
    return (value & (sign - 1)) - (value & sign)


class SX127x:
    """An SX127x on `spi` with optional `reset` and `dio0` pins (implements `Radio`)."""

    def __init__(  # noqa: PLR0913 - wiring and timing settings, all keyword-only
        self,
        spi: SpiDevice,
        *,
        clock: Clock,
        reset: DigitalOutput | None = None,
        dio0: DigitalInput | None = None,
        pa_boost: bool = True,
        scheduler: Scheduler | None = None,
        poll_interval: float | None = None,
        name: str = "sx127x",
        wiring: str = "the radio's chip select (NSS) pin",
        implicit_payload_length: int = MAX_PAYLOAD,
        tx_timeout_margin: float = DEFAULT_TX_TIMEOUT_MARGIN_S,
        on_close: Iterable[Callable[[], None]] = (),
    ) -> None:
        if not 1 <= implicit_payload_length <= MAX_PAYLOAD:
            raise ValueError("implicit payload length must be 1..255")
        self.wakeup = threading.Event()
        self.settings: RadioSettings | None = None
        #: The TX power the PA really produces (requests outside the path's range are clamped).
        self.effective_tx_power_dbm: int | None = None
        self.name = name
        self.pa_boost = pa_boost
        self.implicit_payload_length = implicit_payload_length
        self._spi = spi
        self._clock = clock
        self._reset = reset
        self._dio0 = dio0
        self._scheduler = scheduler
        self._poll_interval = poll_interval
        self._wiring = wiring
        self._tx_margin = tx_timeout_margin
        self._on_close = list(on_close)
        self._lock = threading.RLock()
        self._pause_event = threading.Event()  # never set: waiting on it is a pause
        self._counters = RadioCounters()
        self._events: list[RadioEvent] = []
        self._busy = False
        self._cad = False
        #: The carrier the image calibration last ran at (None: only the power-on 434 MHz one).
        self._image_cal_hz: int | None = None
        self._tx_airtime = 0.0
        self._tx_length = 0
        self._tx_deadline = 0.0
        self._tx_timer: TimerHandle | None = None
        self._tick_timer: TimerHandle | None = None
        self._closed = False
        self._recovering = False
        self._broken: str | None = None
        self._retry_at = 0.0
        self._recovery_backoff = Backoff(*RECOVERY_BACKOFF_S, jitter=0.0)
        with self._lock:
            self._reset_chip()
            self._check_version()
            self._enter_lora(hf=True)
        if dio0 is not None:
            dio0.watch_rising(self._on_dio0)
        if scheduler is not None and poll_interval is not None:
            self._arm_ticker()
        logger.debug("%s: SX127x found (%s)", name, wiring)

    # ------------------------------------------------------------------ SPI primitives

    def _xfer(self, data: bytes) -> bytes:
        try:
            result = self._spi.transfer(data)
        except OSError as exc:
            self._counters.spi_errors += 1
            raise RadioError(f"SPI transfer failed: {exc}") from exc
        if len(result) != len(data):
            self._counters.spi_errors += 1
            raise RadioError(f"SPI returned {len(result)} bytes for a {len(data)}-byte transfer")
        return result

    def _read(self, register: int) -> int:
        return self._xfer(bytes((register & 0x7F, 0)))[1]

    def _read_burst(self, register: int, count: int) -> bytes:
        return self._xfer(bytes((register & 0x7F,)) + bytes(count))[1:]

    def _write(self, register: int, value: int) -> None:
        self._xfer(bytes((register | 0x80, value & 0xFF)))

    def _write_burst(self, register: int, data: bytes) -> None:
        self._xfer(bytes((register | 0x80,)) + data)

    def _set_mode(self, mode: Mode) -> None:
        hf = self.settings is None or self.settings.frequency_hz > HF_PORT_MIN_HZ
        self._write(Reg.OP_MODE, _LORA | (0 if hf else _LF) | int(mode))

    # ------------------------------------------------------------------ chip bring-up

    def _pause(self, seconds: float) -> None:
        self._clock.wait(self._pause_event, seconds)

    def _reset_chip(self) -> None:
        self._image_cal_hz = None  # a reset (or a restart) falls back to the power-on one
        if self._reset is None:
            return  # no RESET wired (Uputronics): the SLEEP restart in _enter_lora has to do
        self._reset.write(False)
        self._pause(RESET_PULSE_S)
        self._reset.write(True)
        self._pause(RESET_SETTLE_S)

    def _check_version(self) -> None:
        version = self._read(Reg.VERSION)
        if version == CHIP_VERSION:
            return
        if version in (0x00, 0xFF):
            raise RadioError(
                f"SX127x not found: RegVersion reads {version:#04x}, so nothing answers on the "
                "SPI bus. Check that SPI is enabled (raspi-config > Interface Options > SPI, or "
                "dtparam=spi=on in /boot/firmware/config.txt), that the board setting matches "
                f"your HAT ({self._wiring}), that MOSI (GPIO10), MISO (GPIO9) and SCK (GPIO11) "
                "reach the module, and that the module has 3.3 V power."
            )
        known = KNOWN_VERSIONS.get(version, "an unknown chip")
        raise RadioError(
            f"unexpected RegVersion {version:#04x} ({known}); p1-lora drives the "
            f"SX1276/77/78/79, which report {CHIP_VERSION:#04x} ({self._wiring})"
        )

    def _enter_lora(self, *, hf: bool) -> None:
        """LoRa mode can only be selected in SLEEP: go to sleep, set the bit, check it stuck."""
        lf = 0 if hf else _LF
        self._write(Reg.OP_MODE, int(Mode.SLEEP) | lf)
        self._write(Reg.OP_MODE, _LORA | int(Mode.SLEEP) | lf)
        op_mode = self._read(Reg.OP_MODE)
        if not op_mode & _LORA:
            raise RadioError(
                f"the chip did not enter LoRa mode (RegOpMode reads {op_mode:#04x} after "
                "writing LoRa+SLEEP); SPI writes are not reaching it"
            )
        self._write(Reg.OP_MODE, _LORA | int(Mode.STDBY) | lf)

    def _calibrate_image(self, frequency_hz: int) -> None:
        """Run the receiver's image calibration at `frequency_hz` (datasheet 4.2.3.8).

        RegImageCal is on the FSK page and the calibration starts in standby: leave LoRa mode
        (through SLEEP, the only mode where the LoRa bit may change), set the carrier, start
        it, wait for ImageCalRunning to clear, and come back to LoRa standby.
        """
        hf = frequency_hz > HF_PORT_MIN_HZ
        lf = 0 if hf else _LF
        frf = frf_for(frequency_hz)
        self._write(Reg.OP_MODE, _LORA | int(Mode.SLEEP) | lf)
        self._write(Reg.OP_MODE, int(Mode.SLEEP) | lf)
        self._write_burst(Reg.FRF_MSB, bytes(((frf >> 16) & 0xFF, (frf >> 8) & 0xFF, frf & 0xFF)))
        self._write(Reg.OP_MODE, int(Mode.STDBY) | lf)
        image_cal = self._read(FSK_IMAGE_CAL)
        self._write(FSK_IMAGE_CAL, image_cal | int(ImageCal.IMAGE_CAL_START))
        waited = 0.0
        while self._read(FSK_IMAGE_CAL) & ImageCal.IMAGE_CAL_RUNNING:
            if waited >= IMAGE_CAL_TIMEOUT_S:
                raise RadioError(
                    f"the image calibration at {frequency_hz / 1e6:.3f} MHz did not finish "
                    f"within {IMAGE_CAL_TIMEOUT_S * 1000:.0f} ms (RegImageCal stays "
                    "ImageCalRunning)"
                )
            self._pause(_IMAGE_CAL_POLL_S)
            waited += _IMAGE_CAL_POLL_S
        self._image_cal_hz = frequency_hz
        logger.debug("%s: image calibration done at %.3f MHz", self.name, frequency_hz / 1e6)
        self._enter_lora(hf=hf)

    def _image_cal_due(self, frequency_hz: int) -> bool:
        calibrated = self._image_cal_hz
        return calibrated is None or abs(frequency_hz - calibrated) > IMAGE_CAL_STEP_HZ

    # ------------------------------------------------------------------ Radio interface

    def configure(self, settings: RadioSettings) -> None:
        """Apply `settings` (aborting a transmission in progress) and start continuous RX."""
        with self._lock:
            self._ensure_open()
            if self._busy:
                logger.info("%s: configure() aborted a transmission in progress", self.name)
                self._end_tx()
            self._service(self._clock.now())  # keep a frame that arrived just now
            self._cad = False
            self._apply(settings)
            self._start_rx()
            self._broken = None

    def channel_rssi(self) -> float:
        """The channel's power now, in dBm (RegRssiValue, datasheet 5.5.5: the HF/LF offset
        plus the register): everything on the channel counts, whatever its SF, so a listener
        hears what a CAD at its own SF cannot (another link's slow handshake)."""
        with self._lock:
            settings = self._idle_settings("reading the channel RSSI")
            hf = settings.frequency_hz > HF_PORT_MIN_HZ
            return (RSSI_OFFSET_HF if hf else RSSI_OFFSET_LF) + self._read(Reg.RSSI_VALUE)

    def start_cad(self) -> float:
        """Start a Channel Activity Detection with the current settings (non-blocking).

        Returns how long the chip takes (about two symbols, datasheet 4.1.6.4); a later
        `poll()` reports `CadDone(detected)` and the radio is back in continuous receive.
        DIO0 is mapped to CadDone for the duration, so the edge wakes the consumer.
        """
        with self._lock:
            settings = self._idle_settings("a channel activity detection")
            self._service(self._clock.now())  # a frame received just before must not be lost
            self._set_mode(Mode.STDBY)
            self._write(Reg.DIO_MAPPING1, int(Dio0Mapping.CAD_DONE) << 6)
            self._write(Reg.IRQ_FLAGS, 0xFF)
            self._set_mode(Mode.CAD)
            self._cad = True
            return 2 * (1 << settings.sf) / settings.bw_hz

    def send(self, payload: bytes) -> float:
        """Start transmitting; return the time on air. Busy until TxDone, then back in RX."""
        data = bytes(payload)
        if not 1 <= len(data) <= MAX_PAYLOAD:
            raise RadioError(f"a LoRa frame carries 1..{MAX_PAYLOAD} bytes, not {len(data)}")
        with self._lock:
            settings = self._idle_settings("sending")
            if settings.sf == 6 and len(data) != self.implicit_payload_length:
                raise RadioError(
                    f"at SF6 (implicit header) every frame is {self.implicit_payload_length} "
                    f"bytes, not {len(data)}"
                )
            now = self._clock.now()
            self._service(now)  # a frame received just before must not be lost
            self._cad = False  # a CAD still running is abandoned: the caller decided to talk
            self._set_mode(Mode.STDBY)
            self._write(Reg.FIFO_TX_BASE_ADDR, 0x00)
            self._write(Reg.FIFO_ADDR_PTR, 0x00)
            self._write_burst(Reg.FIFO, data)
            self._write(Reg.PAYLOAD_LENGTH, len(data))
            self._write(Reg.DIO_MAPPING1, int(Dio0Mapping.TX_DONE) << 6)
            self._write(Reg.IRQ_FLAGS, 0xFF)
            self._set_mode(Mode.TX)
            airtime = time_on_air_for(settings, len(data))
            self._busy = True
            self._tx_airtime = airtime
            self._tx_length = len(data)
            self._tx_deadline = now + airtime * 1.1 + self._tx_margin
            if self._scheduler is not None:
                self._tx_timer = self._scheduler.call_at(self._tx_deadline, self._on_tx_watchdog)
            return airtime

    def busy(self) -> bool:
        with self._lock:
            return self._busy

    def poll(self) -> list[RadioEvent]:
        """Drain events: reads RegIrqFlags (missed-edge fallback), checks the TX deadline and
        that the chip is still in the expected mode. Chip trouble comes back as `RadioFault`."""
        with self._lock:
            if not self._closed:
                now = self._clock.now()
                try:
                    if self._broken is not None:
                        if now >= self._retry_at:
                            self._recover(self._broken, now)
                    else:
                        self._service(now)
                        self._check_tx_deadline(now)
                        self._health_check(now)
                except RadioError as exc:
                    self._give_up(str(exc), now)
            events, self._events = self._events, []
            self.wakeup.clear()
            return events

    def close(self) -> None:
        """Put the chip to sleep and release SPI and pins (idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for timer in (self._tx_timer, self._tick_timer):
                if timer is not None:
                    timer.cancel()
            with contextlib.suppress(RadioError):
                self._write(Reg.OP_MODE, _LORA | int(Mode.SLEEP))
        # Outside the lock: stopping edge detection may wait for a running GPIO callback,
        # which itself waits for the lock.
        closers: list[Callable[[], None]] = []
        if self._dio0 is not None:
            dio0 = self._dio0
            closers += [lambda: dio0.watch_rising(None), dio0.close]
        if self._reset is not None:
            closers.append(self._reset.close)
        closers.append(self._spi.close)
        for close in closers + self._on_close:
            try:
                close()
            except Exception:
                logger.exception("%s: error while closing", self.name)

    # ------------------------------------------------------------------ extras

    @property
    def clock(self) -> Clock:
        """The clock the driver runs on (real, or the simulation's), for tools that time
        their own steps by the radio's time."""
        return self._clock

    @property
    def counters(self) -> RadioCounters:
        """A snapshot of the counters."""
        with self._lock:
            return replace(self._counters)

    def read_settings(self) -> RadioSettings:
        """Decode the settings the chip holds from its registers (diagnostics, tests)."""
        with self._lock:
            frf_bytes = self._read_burst(Reg.FRF_MSB, 4)
            pa_dac = self._read(Reg.PA_DAC)
            config = self._read_burst(Reg.MODEM_CONFIG1, 6)
            sync_word = self._read(Reg.SYNC_WORD)
        frf = (frf_bytes[0] << 16) | (frf_bytes[1] << 8) | frf_bytes[2]
        pa_config = frf_bytes[3]
        output = pa_config & int(PaConfig.OUTPUT_POWER_MASK)
        if pa_config & int(PaConfig.PA_BOOST):
            power = output + (5 if pa_dac & 0x07 == 0x07 else 2)
        else:
            max_power = 10.8 + 0.6 * ((pa_config & int(PaConfig.MAX_POWER_MASK)) >> 4)
            power = round(max_power - 15 + output)
        bw = bandwidth_from_code(config[0] >> 4)
        cr_code = (config[0] & int(ModemConfig1.CR_MASK)) >> 1
        cr = next((den for den, code in CODING_RATE_CODES.items() if code == cr_code), None)
        if bw is None or cr is None:
            raise RadioError(f"the chip holds an invalid modem configuration ({config[0]:#04x})")
        return RadioSettings(
            frequency_hz=round(frf * FREQ_STEP_HZ),
            sf=config[1] >> 4,
            bw_hz=bw,
            cr=cr,
            tx_power_dbm=power,
            preamble=(config[3] << 8) | config[4],
            sync_word=sync_word,
            crc_on=bool(config[1] & int(ModemConfig2.RX_PAYLOAD_CRC_ON)),
        )

    # ------------------------------------------------------------------ internals

    def _ensure_open(self) -> None:
        if self._closed:
            raise RadioError(f"{self.name} is closed")

    def _idle_settings(self, before: str) -> RadioSettings:
        """The settings, when the radio is open, configured, working and not transmitting."""
        self._ensure_open()
        settings = self.settings
        if settings is None:
            raise RadioError(f"configure() the radio before {before}")
        if self._busy:
            raise RadioError("the radio is still transmitting the previous frame")
        if self._broken is not None:
            raise RadioError(f"the radio is not working: {self._broken}")
        return settings

    def _apply(self, settings: RadioSettings) -> None:
        power = power_setting(settings.tx_power_dbm, self.pa_boost)
        if power.dbm != settings.tx_power_dbm:
            path = "PA_BOOST" if self.pa_boost else "RFO"
            low, high = PA_BOOST_RANGE_DBM if self.pa_boost else RFO_RANGE_DBM
            logger.warning(
                "%s: %d dBm is outside the %s range (%+d..%+d dBm); using %+d dBm",
                self.name,
                settings.tx_power_dbm,
                path,
                low,
                high,
                power.dbm,
            )
        hf = settings.frequency_hz > HF_PORT_MIN_HZ
        if self._image_cal_due(settings.frequency_hz):
            self._calibrate_image(settings.frequency_hz)
        op_mode = self._read(Reg.OP_MODE)
        if not op_mode & _LORA:
            self._enter_lora(hf=hf)
        self._write(Reg.OP_MODE, _LORA | (0 if hf else _LF) | int(Mode.STDBY))
        image = register_image(
            settings, pa_boost=self.pa_boost, implicit_payload_length=self.implicit_payload_length
        )
        for register, value in image:
            self._write(register, value)
        mismatches = [
            f"{register.name} wrote {value:#04x} reads {actual:#04x}"
            for register, value in image
            if register not in _NOT_READ_BACK and (actual := self._read(register)) != value
        ]
        if mismatches:
            raise RadioError(
                "the chip does not hold the settings written to it ("
                + "; ".join(mismatches[:4])
                + "): unreliable SPI wiring, or another program driving the same chip?"
            )
        self.settings = settings
        self.effective_tx_power_dbm = power.dbm

    def _start_rx(self) -> None:
        self._write(Reg.DIO_MAPPING1, int(Dio0Mapping.RX_DONE) << 6)
        self._write(Reg.FIFO_ADDR_PTR, 0x00)
        self._write(Reg.IRQ_FLAGS, 0xFF)
        self._set_mode(Mode.RXCONT)

    def _queue(self, event: RadioEvent) -> None:
        self._events.append(event)
        self.wakeup.set()

    def _end_tx(self) -> None:
        self._busy = False
        if self._tx_timer is not None:
            self._tx_timer.cancel()
            self._tx_timer = None

    def _service(self, now: float) -> None:
        """Read RegIrqFlags and turn what it says into events (lock held; never waits)."""
        if self._closed or self._recovering or self._broken is not None:
            return
        flags = self._read(Reg.IRQ_FLAGS)
        if flags in (0x00, 0xFF):
            return  # nothing, or a bus reading all ones (the health check deals with that)
        if flags & _TX_DONE:
            self._write(Reg.IRQ_FLAGS, _TX_DONE)
            if self._busy:
                self._end_tx()
                self._counters.tx_frames += 1
                self._queue(TxDone(at=now, airtime=self._tx_airtime))
                self._start_rx()
        if flags & _RX_DONE:
            # Clear first: a frame that lands while this one is read raises RxDone anew.
            self._write(Reg.IRQ_FLAGS, _RX_FLAGS)
            self._read_frame(flags, now)
        if flags & _CAD_DONE and self._cad:
            self._write(Reg.IRQ_FLAGS, _CAD_FLAGS)
            self._cad = False
            self._queue(CadDone(at=now, detected=bool(flags & _CAD_DETECTED)))
            self._start_rx()
            flags &= ~_CAD_FLAGS
        if flags & _STRAY_FLAGS:
            self._write(Reg.IRQ_FLAGS, flags & _STRAY_FLAGS)

    def _read_frame(self, flags: int, now: float) -> None:
        settings = self.settings
        if settings is None:
            return
        if flags & _PAYLOAD_CRC_ERROR:
            self._counters.crc_errors += 1
            logger.debug("%s: dropped a frame with a payload CRC error", self.name)
            return
        # One burst for RegFifoRxCurrentAddr (0x10) .. RegHopChannel (0x1C).
        block = self._read_burst(Reg.FIFO_RX_CURRENT_ADDR, 13)
        current = block[Reg.FIFO_RX_CURRENT_ADDR - 0x10]
        length = block[Reg.RX_NB_BYTES - 0x10]
        snr = _signed(block[Reg.PKT_SNR_VALUE - 0x10], 8) / 4
        rssi_raw = block[Reg.PKT_RSSI_VALUE - 0x10]
        hop = block[Reg.HOP_CHANNEL - 0x10]
        if settings.crc_on and settings.sf != 6 and not hop & _CRC_ON_PAYLOAD:
            self._counters.no_crc_frames += 1
            logger.debug("%s: dropped a frame sent without a payload CRC", self.name)
            return
        if length == 0:
            return
        hf = settings.frequency_hz > HF_PORT_MIN_HZ
        rssi = (RSSI_OFFSET_HF if hf else RSSI_OFFSET_LF) + rssi_raw + min(snr, 0.0)
        fei = self._read_burst(Reg.FEI_MSB, 3)
        raw_fei = _signed(((fei[0] & 0x0F) << 16) | (fei[1] << 8) | fei[2], 20)
        freq_error = raw_fei * (1 << 24) / FXOSC_HZ * (settings.bw_hz / 500_000)
        self._write(Reg.FIFO_ADDR_PTR, current)
        payload = self._read_burst(Reg.FIFO, length)
        self._counters.frames_received += 1
        frame = ReceivedFrame(
            payload=payload,
            rssi_dbm=float(rssi),
            snr_db=snr,
            settings=settings,
            received_at=now,
            freq_error_hz=freq_error,
        )
        self._queue(FrameReceived(frame))

    def _check_tx_deadline(self, now: float) -> None:
        if self._busy and now >= self._tx_deadline:
            self._counters.tx_timeouts += 1
            timeout = self._tx_airtime * 1.1 + self._tx_margin
            self._recover(
                f"transmission of {self._tx_length} bytes did not complete within "
                f"{timeout:.2f} s (time on air {self._tx_airtime:.3f} s)",
                now,
            )

    def _health_check(self, now: float) -> None:
        """A chip that lost power or was reset drops back to FSK standby: notice and recover."""
        op_mode = self._read(Reg.OP_MODE)
        mode = Mode(op_mode & 0x07)
        expected: tuple[Mode, ...]
        if self._busy:
            expected = (Mode.TX, Mode.STDBY)  # STDBY: TxDone about to be read
        elif self._cad:
            expected = (Mode.CAD, Mode.STDBY)  # STDBY: CadDone about to be read
        elif self.settings is not None:
            expected = (Mode.RXCONT,)
        else:
            expected = (Mode.STDBY, Mode.SLEEP)
        if op_mode & _LORA and mode in expected:
            return
        self._recover(
            f"the chip left {'/'.join(m.name for m in expected)} (RegOpMode reads "
            f"{op_mode:#04x}); a power glitch or reset?",
            now,
        )

    def _recover(self, reason: str, now: float) -> None:
        how = "through its RESET pin" if self._reset is not None else "with a sleep-mode restart"
        label = self.settings.label() if self.settings else "no settings yet"
        logger.warning("%s: %s; resetting the chip %s (%s)", self.name, reason, how, label)
        self._end_tx()
        self._cad = False
        self._recovering = True
        try:
            self._reset_chip()
            self._check_version()
            hf = self.settings is None or self.settings.frequency_hz > HF_PORT_MIN_HZ
            self._enter_lora(hf=hf)
            if self.settings is not None:
                self._apply(self.settings)
                self._start_rx()
        except RadioError as exc:
            self._recovering = False
            self._give_up(f"{reason}; recovery failed: {exc}", now, cause=reason)
            return
        self._recovering = False
        self._broken = None
        self._recovery_backoff.reset()
        self._counters.recoveries += 1
        logger.warning("%s: chip reset, settings re-applied, receiving again", self.name)
        self._queue(RadioFault(reason, recovered=True))

    def _give_up(self, message: str, now: float, cause: str | None = None) -> None:
        """The chip does not answer: report it, and retry recovery after a growing pause.

        `cause` (what went wrong in the first place) is what later retries recover from and
        what `send` reports; `message` adds why this attempt failed.
        """
        first = self._broken is None
        self._end_tx()
        self._broken = cause or message
        delay = self._recovery_backoff.next_delay()
        self._retry_at = now + delay
        log = logger.error if first else logger.debug
        log("%s: %s; retrying in %.0f s", self.name, message, delay)
        self._queue(RadioFault(message, recovered=False))

    # ------------------------------------------------------------------ callbacks

    def _on_dio0(self) -> None:
        """DIO0 rose: read the chip and queue events (GPIO thread or scheduled callback)."""
        with self._lock:
            try:
                self._service(self._clock.now())
            except RadioError as exc:
                logger.debug("%s: DIO0 service failed: %s", self.name, exc)
                self.wakeup.set()  # let poll() report and recover

    def _on_tx_watchdog(self) -> None:
        """The TX deadline passed: wake the consumer so that poll() recovers (no waiting here)."""
        with self._lock:
            self._tx_timer = None
            if self._busy and not self._closed:
                self.wakeup.set()

    def _arm_ticker(self) -> None:
        assert self._scheduler is not None and self._poll_interval is not None
        self._tick_timer = self._scheduler.call_later(self._poll_interval, self._tick)

    def _tick(self) -> None:
        """Periodic missed-edge fallback: service the chip even if nobody polls."""
        with self._lock:
            if self._closed:
                return
            now = self._clock.now()
            try:
                self._service(now)
            except RadioError:
                self.wakeup.set()
            if (self._busy and now >= self._tx_deadline) or (
                self._broken is not None and now >= self._retry_at
            ):
                self.wakeup.set()
            self._arm_ticker()
