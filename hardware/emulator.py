"""A register-level SX127x emulator: a fake SPI device, a fake DIO0 pin and a fake RESET pin.

The test suite and the simulator run the *real* driver (`hardware.sx127x`) against this, so it
behaves like the chip at the register level rather than at the driver's level:

- the register file with the datasheet's reset values, separate FSK and LoRa pages for
  0x0D..0x3F, read-only registers ignoring writes;
- the 256-byte FIFO with RegFifoAddrPtr auto-increment, TX from RegFifoTxBaseAddr, RX written
  at the receive pointer with RegFifoRxCurrentAddr/RegRxNbBytes describing the last packet;
- RegIrqFlags set by events, cleared by writing 1, masked by RegIrqFlagsMask;
- RegOpMode with the LoRa bit writable only in SLEEP; SLEEP clears the FIFO; TX returns to
  STDBY after TxDone; RXCONT stays; RXSINGLE and CAD return to STDBY;
- the FIFO refused in SLEEP (reads 0, writes vanish; it is cleared there) and written only in
  STDBY (datasheet 4.1.6: "the LoRa FIFO can only be filled in Stand-by mode"; a write while
  receiving or transmitting is dropped). Reading it while receiving is allowed, as drivers do;
- CAD (mode 7): about two symbols later CadDone, plus CadDetected when the channel
  (`Medium.channel_busy`) has a preamble of the chip's settings on the air at the start;
- image calibration (RegImageCal on the FSK page, started by ImageCalStart in FSK standby,
  ImageCalRunning for `IMAGE_CAL_DURATION_S`): the chip remembers the carrier it calibrated
  at (`image_calibrated_hz`; 434 MHz after power-on, as the real chip does);
- DIO0 following the flag chosen by RegDioMapping1 (level-like: it stays high until the flag is
  cleared, so a missed edge means no further edge);
- TX completing after the time on air computed from the *registers* (so a driver that sets
  LowDataRateOptimize wrongly produces frames its peer cannot decode);
- RESET held low: the chip ignores SPI; released: every register back to its reset value;
- RegPktSnrValue saturating at `PKT_SNR_SATURATION_DB` (+10 dB): the chip's SNR estimator does
  not report more even though the register could express +31.75 dB (field reports: strong
  signals read +5..+12 dB), so software tuned against the emulator sees no more margin than
  it will on hardware. RegPktRssiValue keeps tracking the signal.

Fault knobs (`EmulatorFaults`): a hung chip that never raises TxDone until reset, a wrong
RegVersion (0x00/0xFF make the whole bus read that value, as a disconnected MISO does),
dropped DIO0 edges, a RESET line that is not connected (`reset_floating`) and a DIO0 line that
is not connected (`dio0_unconnected`).

Time comes from an injected `common.clock.Scheduler`: on a `VirtualClock` the end of a
transmission is a scheduled callback, and the DIO0 edge callback runs synchronously inside it.
What a transmission does on the air is the business of a `Medium` (the simulated channel); a
chip without one transmits into the void.

Threads: a chip and its channel share one `EmulationLock`. GPIO edge callbacks are collected
while it is held and run after it is released, because the driver's handler takes the driver's
own lock and then talks SPI (which takes this one): running it under this lock would deadlock
against a driver thread that holds its lock and waits for SPI.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol

from p1lora.common.airtime import time_on_air
from p1lora.common.clock import Scheduler, TimerHandle
from p1lora.hardware.spi_gpio import EdgeCallback
from p1lora.hardware.sx127x_registers import (
    CODING_RATE_CODES,
    DIO0_FLAG,
    FIFO_SIZE,
    FREQ_STEP_HZ,
    FSK_IMAGE_CAL,
    FSK_RESET_VALUES,
    FXOSC_HZ,
    HF_PORT_MIN_HZ,
    IMAGE_CAL_DURATION_S,
    LORA_RESET_VALUES,
    RSSI_OFFSET_HF,
    RSSI_OFFSET_LF,
    SHARED_RESET_VALUES,
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
)

__all__ = [
    "PKT_SNR_SATURATION_DB",
    "AirFrame",
    "AirParams",
    "AntennaPort",
    "EmulationLock",
    "EmulatorFaults",
    "ListenState",
    "Medium",
    "Reception",
    "SX127xEmulator",
]

logger = logging.getLogger(__name__)

AntennaPort = Literal["both", "pa_boost", "rfo"]

#: The largest packet SNR the chip reports: its estimator saturates around +10 dB (SX127x
#: field reports and driver issues: +5..+12 dB for strong signals, never the +31.75 dB the
#: register format allows). Weaker signals are reported as they are.
PKT_SNR_SATURATION_DB: Final = 10.0

#: Registers a write to which changes what the modem hears: a receiver that is reconfigured in
#: the middle of a frame loses that frame.
_MODEM_REGISTERS = frozenset(
    {
        Reg.FRF_MSB,
        Reg.FRF_MID,
        Reg.FRF_LSB,
        Reg.MODEM_CONFIG1,
        Reg.MODEM_CONFIG2,
        Reg.MODEM_CONFIG3,
        Reg.SYNC_WORD,
        Reg.INVERT_IQ,
        Reg.PREAMBLE_MSB,
        Reg.PREAMBLE_LSB,
    }
)

#: Registers the chip writes and the host only reads (LoRa page and shared).
_READ_ONLY = frozenset(
    {
        Reg.FIFO_RX_CURRENT_ADDR,
        Reg.RX_NB_BYTES,
        Reg.RX_HEADER_CNT_MSB,
        Reg.RX_HEADER_CNT_LSB,
        Reg.RX_PACKET_CNT_MSB,
        Reg.RX_PACKET_CNT_LSB,
        Reg.MODEM_STAT,
        Reg.PKT_SNR_VALUE,
        Reg.PKT_RSSI_VALUE,
        Reg.RSSI_VALUE,
        Reg.HOP_CHANNEL,
        Reg.FIFO_RX_BYTE_ADDR,
        Reg.FEI_MSB,
        Reg.FEI_MID,
        Reg.FEI_LSB,
        Reg.RSSI_WIDEBAND,
        Reg.VERSION,
    }
)

#: Registers `air_params` decodes (the modem's and the implicit header's payload length): a
#: write to one of them drops the cached `AirParams`.
_AIR_REGISTERS = frozenset(int(register) for register in (*_MODEM_REGISTERS, Reg.PAYLOAD_LENGTH))

# Plain ints: `~` on an IntFlag member complements within the flag's members, not the byte.
# The SPI path compares plain ints too: an enum operation per register byte was the largest
# single cost of a long simulation (issue 16).
_LONG_RANGE = int(OpMode.LONG_RANGE)
_MODE_MASK = int(OpMode.MODE_MASK)
_FIFO = int(Reg.FIFO)
_OP_MODE = int(Reg.OP_MODE)
_FIFO_ADDR_PTR = int(Reg.FIFO_ADDR_PTR)
_IRQ_FLAGS = int(Reg.IRQ_FLAGS)
_RSSI_VALUE = int(Reg.RSSI_VALUE)
_MODEM_STAT = int(Reg.MODEM_STAT)
_DIO_MAPPING1 = int(Reg.DIO_MAPPING1)
_SLEEP = int(Mode.SLEEP)
_STDBY = int(Mode.STDBY)
#: LoRa-page registers whose value `_read_register` computes when read (not stored).
_COMPUTED_ON_READ = (_MODEM_STAT, _RSSI_VALUE)
_RX_MODES = frozenset({int(Mode.RXCONT), int(Mode.RXSINGLE)})
#: `DIO0_FLAG` as plain ints, indexed by RegDioMapping1 bits 7-6.
_DIO0_FLAG_BITS = tuple(int(DIO0_FLAG[Dio0Mapping(bits)]) for bits in range(4))

#: Output path loss when the driver selects a PA output the module does not wire to the antenna
#: (an RFM95 only connects PA_BOOST; RFO then leaks a little power through the board).
_UNCONNECTED_PORT_LOSS_DB = 30.0


class EmulationLock:
    """One re-entrant lock for a channel and its chips, with deferred GPIO callbacks.

    `deferred(callback)` queues a callback while the lock is held; the callbacks run in order
    after the outermost `hold()` releases the lock, on the releasing thread. On a virtual clock
    that is still synchronous inside the scheduled callback that caused the edge.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0
        self._deferred: list[Callable[[], None]] = []

    def hold(self) -> EmulationLock:
        """The lock as a context manager: `with lock.hold(): ...`.

        The lock is its own context manager (not a `contextlib.contextmanager` generator):
        every SPI transfer takes it, and a generator per transfer cost a tenth of a long run.
        """
        return self

    def __enter__(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def __exit__(self, *exc_info: object) -> None:
        self._depth -= 1
        if self._depth or not self._deferred:
            self._lock.release()
            return
        run, self._deferred = self._deferred, []
        self._lock.release()
        for callback in run:
            try:
                callback()
            except Exception:
                logger.exception("GPIO edge callback %r failed", callback)

    def defer(self, callback: Callable[[], None]) -> None:
        """Run `callback` once the lock is released (call with the lock held)."""
        self._deferred.append(callback)


@dataclass(frozen=True, slots=True)
class AirParams:
    """The modulation a chip is set to, decoded from its registers (what goes on the air)."""

    frf: int
    sf: int
    bw_hz: int
    cr: int
    implicit_header: bool
    crc_on: bool
    ldro: bool
    preamble: int
    sync_word: int
    invert_iq: bool
    payload_length: int

    @property
    def frequency_hz(self) -> float:
        return self.frf * FREQ_STEP_HZ

    def same_air(self, other: AirParams) -> bool:
        """Same carrier, SF and bandwidth: the two signals interfere with each other."""
        return self.frf == other.frf and self.sf == other.sf and self.bw_hz == other.bw_hz

    def can_receive(self, frame: AirParams) -> bool:
        """Whether a receiver set to `self` demodulates a frame sent with `frame`.

        Sync word and IQ polarity must match for the receiver to accept the preamble; the
        low-data-rate setting changes the symbol mapping of the payload; an implicit header
        carries no length, coding rate or CRC flag, so both ends must agree on them.
        """
        if not self.same_air(frame):
            return False
        if (self.sync_word, self.invert_iq, self.ldro, self.implicit_header) != (
            frame.sync_word,
            frame.invert_iq,
            frame.ldro,
            frame.implicit_header,
        ):
            return False
        if self.implicit_header:
            return (self.cr, self.crc_on, self.payload_length) == (
                frame.cr,
                frame.crc_on,
                frame.payload_length,
            )
        return True


@dataclass(slots=True)
class AirFrame:
    """One transmission on the air."""

    frame_id: int
    origin: str
    params: AirParams
    payload: bytes
    tx_power_dbm: float
    start: float
    end: float
    freq_offset_hz: float = 0.0
    aborted: bool = False

    def overlaps(self, other: AirFrame) -> bool:
        return self.start < other.end and other.start < self.end


@dataclass(frozen=True, slots=True)
class Reception:
    """What the channel hands a receiving chip at the end of a frame."""

    payload: bytes
    rssi_dbm: float
    snr_db: float
    crc_ok: bool
    params: AirParams
    freq_error_hz: float = 0.0


@dataclass(frozen=True, slots=True)
class ListenState:
    """A chip's receiver as the channel sees it when a frame starts and ends."""

    listening: bool
    params: AirParams | None
    epoch: int
    transmitting: bool


class Medium(Protocol):
    """What a chip needs from the channel it is attached to."""

    def frame_started(self, chip: SX127xEmulator, frame: AirFrame) -> None:
        """`chip` started transmitting `frame` (frame.end is the computed end)."""

    def frame_aborted(self, chip: SX127xEmulator, frame: AirFrame, at: float) -> None:
        """`chip` stopped transmitting `frame` early (mode change, reset)."""

    def channel_busy(self, chip: SX127xEmulator, params: AirParams) -> bool:
        """Whether a LoRa preamble matching `params` is on the air at `chip` (for CAD)."""

    def receiving(self, chip: SX127xEmulator) -> bool:
        """Whether `chip` is locked onto a frame in progress (for RxTimeout and ModemStat)."""

    def noise_rssi_dbm(self, chip: SX127xEmulator, bw_hz: int) -> float:
        """Current wideband power at `chip` (for RegRssiValue)."""


@dataclass(slots=True)
class EmulatorFaults:
    """Misbehaviour to inject.

    `hung_tx`: TX starts but never completes (no frame on air, no TxDone) until RESET.
    `version`: what RegVersion reads; 0x00 or 0xFF make every read return that byte and every
    write vanish (MISO stuck, chip unpowered or not selected).
    `drop_dio0_edges`: swallow this many upcoming DIO0 rising edges (the flag is still set).
    `reset_floating`: the RESET pin is not connected to the Pi's GPIO (pulses do nothing).
    `dio0_unconnected`: DIO0 is not connected to the Pi's GPIO (reads low, never an edge).
    """

    hung_tx: bool = False
    version: int | None = None
    drop_dio0_edges: int = 0
    reset_floating: bool = False
    dio0_unconnected: bool = False


@dataclass(slots=True)
class EmulatorCounters:
    tx_started: int = 0
    tx_completed: int = 0
    tx_aborted: int = 0
    rx_delivered: int = 0
    rx_crc_errors: int = 0
    rx_missed: int = 0
    resets: int = 0
    edges_dropped: int = 0
    spi_transfers: int = 0
    image_calibrations: int = 0
    cads: int = 0


@dataclass(slots=True)
class _Transmission:
    frame: AirFrame
    timer: TimerHandle | None


@dataclass(slots=True)
class _PinState:
    level: bool = False
    callbacks: list[EdgeCallback] = field(default_factory=list)


class EmulatedSpi:
    """The chip's SPI port (implements `spi_gpio.SpiDevice`)."""

    def __init__(self, chip: SX127xEmulator) -> None:
        self._chip = chip
        self.closed = False

    def transfer(self, data: bytes) -> bytes:
        return self._chip.spi_transfer(bytes(data))

    def close(self) -> None:
        self.closed = True


class EmulatedResetPin:
    """The chip's NRESET input (implements `spi_gpio.DigitalOutput`); low holds it in reset."""

    def __init__(self, chip: SX127xEmulator) -> None:
        self._chip = chip
        self.closed = False

    def write(self, high: bool) -> None:
        self._chip.set_reset_line(high)

    def close(self) -> None:
        self.closed = True


class EmulatedDio0:
    """The chip's DIO0 output (implements `spi_gpio.DigitalInput`)."""

    def __init__(self, chip: SX127xEmulator) -> None:
        self._chip = chip
        self.closed = False

    def read(self) -> bool:
        return self._chip.dio0_level() and not self._chip.faults.dio0_unconnected

    def watch_rising(self, callback: EdgeCallback | None) -> None:
        self._chip.set_dio0_callback(callback)

    def close(self) -> None:
        self._chip.set_dio0_callback(None)
        self.closed = True


class SX127xEmulator:
    """One emulated SX1276 with its SPI port (`spi`), `reset_pin` and `dio0` pin."""

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        name: str = "sx127x",
        medium: Medium | None = None,
        lock: EmulationLock | None = None,
        freq_offset_hz: float = 0.0,
        antenna: AntennaPort = "both",
    ) -> None:
        self.name = name
        self.scheduler = scheduler
        self.medium = medium
        self.lock = lock or EmulationLock()
        #: The crystal's error as a carrier offset: the receiver's FEI shows the difference.
        self.freq_offset_hz = freq_offset_hz
        #: Which PA output the module wires to the antenna ("both" for a generic test chip).
        self.antenna: AntennaPort = antenna
        self.faults = EmulatorFaults()
        self.counters = EmulatorCounters()
        self.spi = EmulatedSpi(self)
        self.reset_pin = EmulatedResetPin(self)
        self.dio0 = EmulatedDio0(self)
        self._dio0 = _PinState()
        self._in_reset = False
        self._shared = bytearray(0x80)
        self._fsk_page = bytearray(0x40)
        self._lora_page = bytearray(0x40)
        self._fifo = bytearray(FIFO_SIZE)
        self._rx_pointer = 0
        self._epoch = 0
        self._frame_ids = 0
        self._tx: _Transmission | None = None
        self._mode_timer: TimerHandle | None = None
        self._header_count = 0
        self._packet_count = 0
        #: Frf of the last image calibration (power-on: 434 MHz, the reset Frf).
        self._image_cal_frf = 0
        self._image_cal_timer: TimerHandle | None = None
        #: `air_params()` decoded once per change of `_AIR_REGISTERS` (None: decode again).
        self._air: AirParams | None = None
        self._power_on_reset()

    # ------------------------------------------------------------------ register file

    def _power_on_reset(self) -> None:
        self._shared[:] = bytes(0x80)
        for address, value in SHARED_RESET_VALUES.items():
            self._shared[address] = value
        self._fsk_page[:] = bytes(0x40)
        for address, value in FSK_RESET_VALUES.items():
            self._fsk_page[address] = value
        self._lora_page[:] = bytes(0x40)
        for address, value in LORA_RESET_VALUES.items():
            self._lora_page[address] = value
        self._fifo[:] = bytes(FIFO_SIZE)
        self._rx_pointer = 0
        self._header_count = 0
        self._packet_count = 0
        self._air = None
        # The chip calibrates its image rejection at power-on, at the reset Frf (434 MHz).
        self._image_cal_frf = self._frf()

    def _frf(self) -> int:
        shared = self._shared
        return (shared[Reg.FRF_MSB] << 16) | (shared[Reg.FRF_MID] << 8) | shared[Reg.FRF_LSB]

    @property
    def image_calibrated_hz(self) -> float:
        """The carrier the receiver's image rejection was last calibrated at."""
        with self.lock.hold():
            return self._image_cal_frf * FREQ_STEP_HZ

    def _lora(self) -> bool:
        return bool(self._shared[_OP_MODE] & _LONG_RANGE)

    def _mode(self) -> Mode:
        return Mode(self._shared[_OP_MODE] & _MODE_MASK)

    def _page(self) -> bytearray:
        return self._lora_page if self._shared[_OP_MODE] & _LONG_RANGE else self._fsk_page

    def peek(self, address: int) -> int:
        """A register's value as the chip holds it (tests; no side effects, faults ignored)."""
        with self.lock.hold():
            return self._get(address)

    def _get(self, address: int) -> int:
        if 0x0D <= address <= 0x3F:
            return self._page()[address]
        if address == Reg.VERSION and self.faults.version is not None:
            return self.faults.version & 0xFF
        return self._shared[address] if address < 0x80 else 0

    def _set(self, address: int, value: int) -> None:
        if address in _AIR_REGISTERS:
            self._air = None
        if 0x0D <= address <= 0x3F:
            self._page()[address] = value & 0xFF
        elif address < 0x80:
            self._shared[address] = value & 0xFF

    # ------------------------------------------------------------------ SPI

    def spi_transfer(self, data: bytes) -> bytes:
        """One SPI transaction: address byte (bit 7 = write) then data, burst-incrementing.

        Bursts on RegFifo stay on the FIFO (through RegFifoAddrPtr); bursts elsewhere move to
        the next register.
        """
        with self.lock.hold():
            self.counters.spi_transfers += 1
            if not data:
                return b""
            stuck = self.faults.version
            if self._in_reset:
                return bytes(len(data))
            if stuck in (0x00, 0xFF):
                return bytes([stuck]) * len(data)
            if data[0] & 0x80:
                self._write_burst(data[0] & 0x7F, data[1:])
                return bytes(len(data))
            return b"\x00" + self._read_burst(data[0] & 0x7F, len(data) - 1)

    def _write_burst(self, address: int, values: bytes) -> None:
        if address == _FIFO:
            self._write_fifo(values)
            return
        for value in values:
            self._write_register(address, value)
            if address != _FIFO:
                address = (address + 1) & 0x7F

    def _read_burst(self, address: int, count: int) -> bytes:
        if address == _FIFO:
            return self._read_fifo(count)
        if count == 1:  # most transfers: one register
            return bytes((self._read_register(address),))
        end = address + count
        if address >= 0x0D and end <= 0x40:
            # Within the page (most reads: RegIrqFlags, the packet block, FEI): copied at
            # once, then the registers the modem computes on reading are filled in.
            out = bytearray(self._page()[address:end])
            if self._shared[_OP_MODE] & _LONG_RANGE:
                for computed in _COMPUTED_ON_READ:
                    if address <= computed < end:
                        out[computed - address] = self._read_register(computed)
            return bytes(out)
        out = bytearray()
        for _ in range(count):
            out.append(self._read_register(address))
            if address != _FIFO:
                address = (address + 1) & 0x7F
        return bytes(out)

    def _read_fifo(self, count: int) -> bytes:
        """A read burst on RegFifo: `count` bytes from RegFifoAddrPtr on, which advances.

        A burst is copied at once: the frame bodies were most of the register reads of a
        simulation, one call per byte (issue 16). Nothing but the pointer changes meanwhile.
        """
        if self._shared[_OP_MODE] & _MODE_MASK == _SLEEP:
            return bytes(count)
        page = self._page()
        pointer = page[_FIFO_ADDR_PTR]
        page[_FIFO_ADDR_PTR] = (pointer + count) % FIFO_SIZE
        return _ring_slice(self._fifo, pointer, count)

    def _write_fifo(self, data: bytes) -> None:
        """A write burst on RegFifo: only in STDBY (see the module docstring), at
        RegFifoAddrPtr, which advances; in any other mode every byte is dropped."""
        if self._shared[_OP_MODE] & _MODE_MASK != _STDBY:
            return
        page = self._page()
        pointer = page[_FIFO_ADDR_PTR]
        fifo = self._fifo
        for value in data:
            fifo[pointer] = value
            pointer = (pointer + 1) % FIFO_SIZE
        page[_FIFO_ADDR_PTR] = pointer

    def _read_register(self, address: int) -> int:
        if 0x0D <= address <= 0x3F:  # the paged registers, inline: most reads are here
            if not self._shared[_OP_MODE] & _LONG_RANGE:
                return self._fsk_page[address]
            if address == _RSSI_VALUE and self.medium is not None:
                params = self.air_params()
                power = self.medium.noise_rssi_dbm(self, params.bw_hz)
                return _clamp_byte(round(power - self._rssi_offset()))
            if address == _MODEM_STAT:
                receiving = self.medium is not None and self.medium.receiving(self)
                return 0x10 | (0x0B if receiving else 0x00)
            return self._lora_page[address]
        if address == _FIFO:  # a burst that wrapped around from 0x7F
            return self._read_fifo(1)[0]
        return self._get(address)

    def _write_register(self, address: int, value: int) -> None:
        if address == _FIFO:  # a burst that wrapped around from 0x7F
            self._write_fifo(bytes((value,)))
            return
        lora = bool(self._shared[_OP_MODE] & _LONG_RANGE)
        if address == _OP_MODE:
            self._write_op_mode(value)
            return
        if lora and address == _IRQ_FLAGS:
            self._lora_page[_IRQ_FLAGS] &= ~value & 0xFF
            self._update_dio0()
            return
        if address in _READ_ONLY and (lora or address >= 0x40):
            return
        if not lora and address == FSK_IMAGE_CAL:
            self._write_image_cal(value)
            return
        self._set(address, value)
        if lora and address in _MODEM_REGISTERS:
            self._epoch += 1
        if address == _DIO_MAPPING1:
            self._update_dio0()

    # ------------------------------------------------------------------ modes

    def _write_op_mode(self, value: int) -> None:
        old = self._shared[Reg.OP_MODE]
        old_mode = Mode(old & _MODE_MASK)
        if old_mode != Mode.SLEEP:
            # LongRangeMode "can be modified only in Sleep mode; a write in other modes is
            # ignored": keep the old bit.
            value = (value & ~_LONG_RANGE) | (old & _LONG_RANGE)
        self._shared[Reg.OP_MODE] = value & 0xFF
        new_mode = Mode(value & _MODE_MASK)
        if (old ^ value) & _LONG_RANGE:
            self._epoch += 1
        if new_mode != old_mode or (old ^ value) & _LONG_RANGE:
            self._enter_mode(old_mode, new_mode)

    def _enter_mode(self, old_mode: Mode, new_mode: Mode) -> None:
        self._epoch += 1
        if self._mode_timer is not None:
            self._mode_timer.cancel()
            self._mode_timer = None
        if old_mode == Mode.TX and self._tx is not None:
            self._abort_tx()
        if not self._lora():
            return  # the FSK/OOK modem is not emulated: modes change, nothing happens
        if new_mode == Mode.SLEEP:
            self._fifo[:] = bytes(FIFO_SIZE)
        elif new_mode == Mode.TX:
            self._start_tx()
        elif new_mode in (Mode.RXCONT, Mode.RXSINGLE):
            self._rx_pointer = self._get(Reg.FIFO_RX_BASE_ADDR)
            if new_mode == Mode.RXSINGLE:
                self._arm_rx_timeout()
        elif new_mode == Mode.CAD:
            self._start_cad()

    def _set_mode(self, mode: Mode) -> None:
        """A transition the chip makes by itself (TX -> STDBY and the like)."""
        self._shared[Reg.OP_MODE] = (self._shared[Reg.OP_MODE] & ~_MODE_MASK) | int(mode)
        self._epoch += 1

    def air_params(self) -> AirParams:
        """The modulation settings from the LoRa registers, decoded once per change.

        The channel asks for every radio at every frame start and end (a receiver's settings
        decide what it hears), so the decoded value is kept until a write to one of
        `_AIR_REGISTERS` or a reset (issue 16: decoding was a fifth of a long run).
        """
        air = self._air
        if air is None:
            air = self._air = self._decode_air_params()
        return air

    def _decode_air_params(self) -> AirParams:
        page = self._lora_page
        config1 = page[Reg.MODEM_CONFIG1]
        config2 = page[Reg.MODEM_CONFIG2]
        cr_code = (config1 & ModemConfig1.CR_MASK) >> 1
        cr = next((den for den, code in CODING_RATE_CODES.items() if code == cr_code), 5)
        bw = bandwidth_from_code((config1 & ModemConfig1.BW_MASK) >> 4) or 500_000
        sf = min(max((config2 & ModemConfig2.SF_MASK) >> 4, 6), 12)
        frf = (
            (self._shared[Reg.FRF_MSB] << 16)
            | (self._shared[Reg.FRF_MID] << 8)
            | self._shared[Reg.FRF_LSB]
        )
        return AirParams(
            frf=frf,
            sf=sf,
            bw_hz=bw,
            cr=cr,
            implicit_header=bool(config1 & ModemConfig1.IMPLICIT_HEADER),
            crc_on=bool(config2 & ModemConfig2.RX_PAYLOAD_CRC_ON),
            ldro=bool(page[Reg.MODEM_CONFIG3] & ModemConfig3.LOW_DATA_RATE_OPTIMIZE),
            preamble=(page[Reg.PREAMBLE_MSB] << 8) | page[Reg.PREAMBLE_LSB],
            sync_word=page[Reg.SYNC_WORD],
            invert_iq=bool(page[Reg.INVERT_IQ] & 0x40),
            payload_length=page[Reg.PAYLOAD_LENGTH],
        )

    def radiated_power_dbm(self) -> float:
        """Output power from RegPaConfig/RegPaDac, less what an unwired PA port loses."""
        config = self._shared[Reg.PA_CONFIG]
        output = config & PaConfig.OUTPUT_POWER_MASK
        if config & PaConfig.PA_BOOST:
            high_power = (self._shared[Reg.PA_DAC] & 0x07) == 0x07
            power = float(output + (5 if high_power else 2))
            port: AntennaPort = "pa_boost"
        else:
            max_power = 10.8 + 0.6 * ((config & PaConfig.MAX_POWER_MASK) >> 4)
            power = max_power - (15 - output)
            port = "rfo"
        if self.antenna not in ("both", port):
            power -= _UNCONNECTED_PORT_LOSS_DB
        return power

    def _rssi_offset(self) -> int:
        frequency = self.air_params().frequency_hz
        return RSSI_OFFSET_HF if frequency > HF_PORT_MIN_HZ else RSSI_OFFSET_LF

    # ------------------------------------------------------------------ TX

    def _start_tx(self) -> None:
        params = self.air_params()
        length = self._lora_page[Reg.PAYLOAD_LENGTH]
        base = self._lora_page[Reg.FIFO_TX_BASE_ADDR]
        payload = bytes(self._fifo[(base + i) % FIFO_SIZE] for i in range(length))
        self.counters.tx_started += 1
        if self.faults.hung_tx:
            logger.debug("%s: TX started on a hung chip; it will never finish", self.name)
            self._tx = None
            return
        airtime = time_on_air(
            max(length, 0),
            params.sf,
            params.bw_hz,
            cr=params.cr,
            preamble=params.preamble,
            crc_on=params.crc_on,
            implicit_header=params.implicit_header,
            ldro=params.ldro,
        )
        now = self.scheduler.now()
        self._frame_ids += 1
        frame = AirFrame(
            frame_id=self._frame_ids,
            origin=self.name,
            params=params,
            payload=payload,
            tx_power_dbm=self.radiated_power_dbm(),
            start=now,
            end=now + airtime,
            freq_offset_hz=self.freq_offset_hz,
        )
        transmission = _Transmission(frame, None)
        self._tx = transmission
        transmission.timer = self.scheduler.call_at(
            frame.end, lambda: self._tx_finished(transmission)
        )
        if self.medium is not None:
            self.medium.frame_started(self, frame)

    def _tx_finished(self, transmission: _Transmission) -> None:
        with self.lock.hold():
            if self._tx is not transmission:
                return
            self._tx = None
            self.counters.tx_completed += 1
            self._raise_irq(Irq.TX_DONE)
            self._set_mode(Mode.STDBY)

    def _abort_tx(self) -> None:
        transmission, self._tx = self._tx, None
        if transmission is None:
            return
        if transmission.timer is not None:
            transmission.timer.cancel()
        self.counters.tx_aborted += 1
        if self.medium is not None:
            self.medium.frame_aborted(self, transmission.frame, self.scheduler.now())

    @property
    def transmitting(self) -> bool:
        return self._tx is not None

    # ------------------------------------------------------------------ RX

    def listen_state(self) -> ListenState:
        """What the channel needs to decide whether this chip hears a frame."""
        op_mode = self._shared[_OP_MODE]
        listening = (
            not self._in_reset
            and bool(op_mode & _LONG_RANGE)
            and op_mode & _MODE_MASK in _RX_MODES
            and self.faults.version not in (0x00, 0xFF)
        )
        return ListenState(
            listening=listening,
            params=self.air_params() if listening else None,
            epoch=self._epoch,
            transmitting=self._tx is not None,
        )

    def receive(self, reception: Reception) -> None:
        """A frame ended at this chip and its preamble, header and payload were demodulated.

        Called by the channel (with the lock held). Writes the payload into the FIFO at the
        receive pointer and sets the packet registers and IRQ flags as the chip does.
        """
        if not self.listen_state().listening:
            self.counters.rx_missed += 1
            return
        own = self.air_params()
        payload = reception.payload
        crc_present = own.crc_on if own.implicit_header else reception.params.crc_on
        start = self._rx_pointer
        _ring_write(self._fifo, start, payload)
        self._rx_pointer = (start + len(payload)) % FIFO_SIZE
        page = self._lora_page
        page[Reg.FIFO_RX_CURRENT_ADDR] = start
        page[Reg.FIFO_RX_BYTE_ADDR] = (start + len(payload) - 1) % FIFO_SIZE
        page[Reg.RX_NB_BYTES] = len(payload)
        snr_raw = max(-128, min(round(PKT_SNR_SATURATION_DB * 4), round(reception.snr_db * 4)))
        page[Reg.PKT_SNR_VALUE] = snr_raw & 0xFF
        # The chip's PktRssi measures signal plus noise; below the noise floor (SNR < 0) the
        # driver adds the SNR back, so store what makes the documented formula come out right.
        snr = snr_raw / 4
        rssi_reg = reception.rssi_dbm - min(snr, 0.0) - self._rssi_offset()
        page[Reg.PKT_RSSI_VALUE] = _clamp_byte(round(rssi_reg))
        cr_code = CODING_RATE_CODES[reception.params.cr]
        page[Reg.HOP_CHANNEL] = HopChannel.CRC_ON_PAYLOAD if crc_present else 0
        page[Reg.MODEM_STAT] = 0x10 | (cr_code << 5)
        self._store_fei(reception.freq_error_hz, own.bw_hz)
        self._header_count = (self._header_count + 1) & 0xFFFF
        self._packet_count = (self._packet_count + 1) & 0xFFFF
        page[Reg.RX_HEADER_CNT_MSB] = self._header_count >> 8
        page[Reg.RX_HEADER_CNT_LSB] = self._header_count & 0xFF
        page[Reg.RX_PACKET_CNT_MSB] = self._packet_count >> 8
        page[Reg.RX_PACKET_CNT_LSB] = self._packet_count & 0xFF
        flags = Irq.RX_DONE | Irq.VALID_HEADER
        if crc_present and not reception.crc_ok:
            flags |= Irq.PAYLOAD_CRC_ERROR
            self.counters.rx_crc_errors += 1
        self.counters.rx_delivered += 1
        if self._mode() == Mode.RXSINGLE:
            if self._mode_timer is not None:
                self._mode_timer.cancel()
                self._mode_timer = None
            self._set_mode(Mode.STDBY)
        self._raise_irq(flags)

    def _store_fei(self, freq_error_hz: float, bw_hz: int) -> None:
        # Ferr = FreqError * 2^24 / Fxtal * BW / 500 kHz (datasheet 4.1.5): invert it.
        raw = round(freq_error_hz * FXOSC_HZ / (1 << 24) / (bw_hz / 500_000))
        raw = max(-(1 << 19), min((1 << 19) - 1, raw)) & 0xFFFFF
        self._lora_page[Reg.FEI_MSB] = raw >> 16
        self._lora_page[Reg.FEI_MID] = (raw >> 8) & 0xFF
        self._lora_page[Reg.FEI_LSB] = raw & 0xFF

    def _arm_rx_timeout(self) -> None:
        params = self.air_params()
        symbols = ((self._lora_page[Reg.MODEM_CONFIG2] & 0x03) << 8) | self._lora_page[
            Reg.SYMB_TIMEOUT_LSB
        ]
        delay = symbols * (1 << params.sf) / params.bw_hz
        epoch = self._epoch
        self._mode_timer = self.scheduler.call_later(delay, lambda: self._rx_timeout(epoch))

    def _rx_timeout(self, epoch: int) -> None:
        with self.lock.hold():
            self._mode_timer = None
            if epoch != self._epoch or self._mode() != Mode.RXSINGLE:
                return
            if self.medium is not None and self.medium.receiving(self):
                return  # a preamble was found in time: the frame's end decides
            self._set_mode(Mode.STDBY)
            self._raise_irq(Irq.RX_TIMEOUT)

    # ------------------------------------------------------------------ image calibration

    def _write_image_cal(self, value: int) -> None:
        """RegImageCal: ImageCalStart (in FSK standby) runs a calibration; it reads back 0."""
        running = int(ImageCal.IMAGE_CAL_RUNNING)
        start = int(ImageCal.IMAGE_CAL_START)
        keep = self._fsk_page[FSK_IMAGE_CAL] & running
        self._fsk_page[FSK_IMAGE_CAL] = (value & ~(start | running) & 0xFF) | keep
        if not value & start or keep or self._mode() != Mode.STDBY:
            return
        self._fsk_page[FSK_IMAGE_CAL] |= running
        frf = self._frf()
        self.counters.image_calibrations += 1
        self._image_cal_timer = self.scheduler.call_later(
            IMAGE_CAL_DURATION_S, lambda: self._image_cal_done(frf)
        )

    def _image_cal_done(self, frf: int) -> None:
        with self.lock.hold():
            self._image_cal_timer = None
            self._fsk_page[FSK_IMAGE_CAL] &= ~int(ImageCal.IMAGE_CAL_RUNNING) & 0xFF
            self._image_cal_frf = frf

    # ------------------------------------------------------------------ CAD

    def _start_cad(self) -> None:
        self.counters.cads += 1
        params = self.air_params()
        delay = 2 * (1 << params.sf) / params.bw_hz
        busy = self.medium is not None and self.medium.channel_busy(self, params)
        epoch = self._epoch
        self._mode_timer = self.scheduler.call_later(delay, lambda: self._cad_done(epoch, busy))

    def _cad_done(self, epoch: int, busy: bool) -> None:
        with self.lock.hold():
            self._mode_timer = None
            if epoch != self._epoch or self._mode() != Mode.CAD:
                return
            self._set_mode(Mode.STDBY)
            self._raise_irq(Irq.CAD_DONE | (Irq.CAD_DETECTED if busy else Irq(0)))

    # ------------------------------------------------------------------ IRQ and DIO0

    def _raise_irq(self, flags: Irq) -> None:
        mask = self._lora_page[Reg.IRQ_FLAGS_MASK]
        self._lora_page[Reg.IRQ_FLAGS] |= int(flags) & ~mask & 0xFF
        self._update_dio0()

    def dio0_level(self) -> bool:
        with self.lock.hold():
            return self._dio0.level

    def _compute_dio0(self) -> bool:
        if self._in_reset or not self._lora():
            return False
        flag = _DIO0_FLAG_BITS[(self._shared[_DIO_MAPPING1] >> 6) & 0x03]
        return bool(self._lora_page[_IRQ_FLAGS] & flag)

    def _update_dio0(self) -> None:
        level = self._compute_dio0()
        rising = level and not self._dio0.level
        self._dio0.level = level
        if not rising:
            return
        if self.faults.drop_dio0_edges > 0:
            self.faults.drop_dio0_edges -= 1
            self.counters.edges_dropped += 1
            return
        if self.faults.dio0_unconnected:
            return
        for callback in list(self._dio0.callbacks):
            self.lock.defer(callback)

    def set_dio0_callback(self, callback: EdgeCallback | None) -> None:
        with self.lock.hold():
            self._dio0.callbacks = [callback] if callback is not None else []

    # ------------------------------------------------------------------ RESET

    def set_reset_line(self, high: bool) -> None:
        """NRESET: low holds the chip in reset; the rising edge restarts it from reset values."""
        with self.lock.hold():
            if self.faults.reset_floating:
                return  # the pin is not wired to the chip: nothing happens
            if not high:
                if self._in_reset:
                    return
                self._in_reset = True
                self.counters.resets += 1
                for timer in (self._mode_timer, self._image_cal_timer):
                    if timer is not None:
                        timer.cancel()
                self._mode_timer = self._image_cal_timer = None
                self._abort_tx()
                self._epoch += 1
                self.faults.hung_tx = False
                self._power_on_reset()
                self._update_dio0()
            elif self._in_reset:
                self._in_reset = False
                self._power_on_reset()
                self._epoch += 1


def _clamp_byte(value: int) -> int:
    return max(0, min(255, value))


def _ring_slice(ring: bytearray, start: int, count: int) -> bytes:
    """`count` bytes of the circular buffer `ring` from `start` on (wrapping around)."""
    end = start + count
    if end <= len(ring):
        return bytes(ring[start:end])
    return bytes(ring[(start + i) % len(ring)] for i in range(count))


def _ring_write(ring: bytearray, start: int, data: bytes) -> None:
    """Write `data` into the circular buffer `ring` from `start` on (wrapping around)."""
    end = start + len(data)
    if end <= len(ring):
        ring[start:end] = data
        return
    for i, byte in enumerate(data):
        ring[(start + i) % len(ring)] = byte
