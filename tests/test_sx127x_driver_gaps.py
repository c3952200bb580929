"""Driver gaps closed for issue 14/16: image calibration, CAD, errata 2.3, RxDone before the
FIFO read, the FIFO refused outside standby, and the module table (RFM95/96/97/98)."""

from __future__ import annotations

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.boards import BOARDS, MODULES, get_module, module_problem, parse_pins
from p1lora.hardware.emulator import SX127xEmulator
from p1lora.hardware.radio import CadDone, CadRadio, RadioError
from p1lora.hardware.sx127x import IMAGE_CAL_STEP_HZ, SX127x, register_image
from p1lora.hardware.sx127x_registers import (
    ERRATA_IF_FREQ2,
    FSK_IMAGE_CAL,
    ImageCal,
    Irq,
    Mode,
    Reg,
)
from tests.helpers_radio import EU_CHANNEL, SF7, SF12, bench, of_type, pair

LORA = 0x80


def _cal_count(chip: SX127xEmulator) -> int:
    return chip.counters.image_calibrations


def test_image_calibration_runs_at_the_channel_on_first_configure():
    setup = bench()
    radio = setup.add("a")
    chip = setup.chips["a"]
    assert chip.image_calibrated_hz == pytest.approx(434e6, abs=100)  # power-on calibration
    radio.configure(SF7)
    assert _cal_count(chip) == 1
    assert chip.image_calibrated_hz == pytest.approx(EU_CHANNEL, abs=100)
    assert chip.peek(Reg.OP_MODE) & LORA  # back in LoRa mode, receiving
    assert chip.peek(Reg.OP_MODE) & 0x07 == Mode.RXCONT


def test_image_calibration_repeats_only_after_a_large_frequency_change():
    setup = bench()
    radio = setup.add("a", SF7)
    chip = setup.chips["a"]
    radio.configure(SF7.replace(frequency_hz=868_100_000))  # same band plan: no new calibration
    assert _cal_count(chip) == 1
    far = SF7.replace(frequency_hz=EU_CHANNEL + IMAGE_CAL_STEP_HZ + 1_000_000, tx_power_dbm=14)
    radio.configure(far)
    assert _cal_count(chip) == 2
    assert chip.image_calibrated_hz == pytest.approx(far.frequency_hz, abs=100)


def test_a_reset_forgets_the_calibration_and_recovery_recalibrates():
    setup = bench()
    radio = setup.add("a", SF7)
    chip = setup.chips["a"]
    chip.set_reset_line(False)
    chip.set_reset_line(True)  # a power glitch: back to 434 MHz calibration and FSK standby
    assert chip.image_calibrated_hz == pytest.approx(434e6, abs=100)
    radio.poll()  # the health check notices and recovers
    assert chip.image_calibrated_hz == pytest.approx(EU_CHANNEL, abs=100)


def test_emulator_image_calibration_only_starts_in_fsk_standby():
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    spi = chip.spi
    spi.transfer(bytes([Reg.OP_MODE | 0x80, Mode.SLEEP]))
    spi.transfer(bytes([FSK_IMAGE_CAL | 0x80, 0x82 | ImageCal.IMAGE_CAL_START]))
    assert _cal_count(chip) == 0  # not in standby: ignored
    spi.transfer(bytes([Reg.OP_MODE | 0x80, Mode.STDBY]))
    spi.transfer(bytes([FSK_IMAGE_CAL | 0x80, 0x82 | ImageCal.IMAGE_CAL_START]))
    assert spi.transfer(bytes([FSK_IMAGE_CAL, 0]))[1] & ImageCal.IMAGE_CAL_RUNNING
    clock.advance(0.02)
    value = spi.transfer(bytes([FSK_IMAGE_CAL, 0]))[1]
    assert not value & (ImageCal.IMAGE_CAL_RUNNING | ImageCal.IMAGE_CAL_START)
    assert value & ImageCal.AUTO_IMAGE_CAL_ON
    assert _cal_count(chip) == 1


@pytest.mark.parametrize("bw", [7_800, 41_700, 62_500, 125_000, 250_000])
def test_errata_2_3_below_500_khz(bw):
    settings = RadioSettings(frequency_hz=EU_CHANNEL, sf=9, bw_hz=bw)
    image = dict(register_image(settings, pa_boost=True))
    assert not image[Reg.DETECT_OPTIMIZE] & 0x80
    assert image[Reg.DETECT_OPTIMIZE] & 0x07 == 0x03
    assert image[Reg.IF_FREQ2] == ERRATA_IF_FREQ2[bw]
    assert image[Reg.IF_FREQ1] == 0x00


def test_errata_2_3_leaves_500_khz_on_automatic_if():
    settings = RadioSettings(frequency_hz=915_000_000, sf=7, bw_hz=500_000)
    image = dict(register_image(settings, pa_boost=True))
    assert image[Reg.DETECT_OPTIMIZE] == 0xC3
    assert (image[Reg.IF_FREQ2], image[Reg.IF_FREQ1]) == (0x20, 0x00)


def test_errata_registers_reach_the_chip():
    setup = bench()
    setup.add("a", SF12)
    chip = setup.chips["a"]
    assert chip.peek(Reg.DETECT_OPTIMIZE) == 0x43
    assert chip.peek(Reg.IF_FREQ2) == 0x40


def test_cad_on_a_quiet_channel_then_on_a_busy_one():
    setup = pair(SF7)
    a, b = setup.radios["a"], setup.radios["b"]
    assert isinstance(b, CadRadio)
    started = setup.clock.now()
    duration = b.start_cad()
    assert duration == pytest.approx(2 * 128 / 125_000)
    setup.clock.advance(0.01)
    events = b.poll()
    assert of_type(events, CadDone) == [
        CadDone(at=pytest.approx(started + duration), detected=False)
    ]
    assert setup.chips["b"].peek(Reg.OP_MODE) & 0x07 == Mode.RXCONT  # back to receive
    a.send(b"x" * 40)
    setup.clock.advance(0.005)
    b.start_cad()
    setup.clock.advance(0.01)
    (done,) = of_type(b.poll(), CadDone)
    assert done.detected
    setup.clock.advance(0.2)
    assert setup.chips["a"].counters.tx_completed == 1


def test_cad_done_raises_dio0_and_needs_settings():
    setup = bench()
    radio = setup.add("a")
    with pytest.raises(RadioError, match="configure"):
        radio.start_cad()
    radio.configure(SF7)
    chip = setup.chips["a"]
    radio.start_cad()
    assert chip.peek(Reg.DIO_MAPPING1) >> 6 == 0b10  # DIO0 = CadDone
    setup.clock.advance(0.01)
    assert radio.wakeup.is_set()  # the DIO0 edge woke the consumer (no ticker here)
    radio.poll()
    assert chip.peek(Reg.DIO_MAPPING1) >> 6 == 0b00  # back to RxDone
    radio.send(b"hello")
    with pytest.raises(RadioError, match="transmitting"):
        radio.start_cad()


def test_cad_without_a_dio0_edge_is_found_by_polling():
    setup = bench()
    radio = setup.add("a", SF7)
    setup.chips["a"].faults.dio0_unconnected = True
    radio.start_cad()
    setup.clock.advance(0.01)
    assert not radio.wakeup.is_set()
    assert of_type(radio.poll(), CadDone)


class _RecordingSpi:
    """Wraps an SPI device and records (address, write) of each transfer."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.log: list[tuple[int, bool, bytes]] = []

    def transfer(self, data: bytes) -> bytes:
        self.log.append((data[0] & 0x7F, bool(data[0] & 0x80), bytes(data[1:])))
        return self.inner.transfer(data)

    def close(self) -> None:
        self.inner.close()


def test_rx_done_is_cleared_before_the_fifo_is_read():
    setup = bench()
    setup.add("a", SF7)
    chip = setup.channel.add_radio("b")
    spy = _RecordingSpi(chip.spi)
    radio = SX127x(spy, clock=setup.clock, reset=chip.reset_pin, dio0=chip.dio0)
    radio.configure(SF7)
    spy.log.clear()
    setup.send_and_settle("a", b"payload")  # the DIO0 edge services the chip
    events = radio.poll()
    assert [e.frame.payload for e in events if hasattr(e, "frame")] == [b"payload"]
    clear = next(
        i
        for i, (reg, write, data) in enumerate(spy.log)
        if reg == Reg.IRQ_FLAGS and write and data[0] & Irq.RX_DONE
    )
    fifo_read = next(
        i for i, (reg, write, _) in enumerate(spy.log) if reg == Reg.FIFO and not write
    )
    assert clear < fifo_read


def test_emulator_refuses_fifo_writes_outside_standby():
    setup = bench()
    radio = setup.add("a", SF7)  # receiving
    chip = setup.chips["a"]
    chip.spi.transfer(bytes([Reg.FIFO_ADDR_PTR | 0x80, 0x00]))
    chip.spi.transfer(bytes([Reg.FIFO | 0x80]) + b"\xaa\xbb")
    assert chip.peek(Reg.FIFO_ADDR_PTR) == 0  # RXCONT: the write went nowhere
    radio.close()  # SLEEP
    chip.spi.transfer(bytes([Reg.FIFO | 0x80]) + b"\xaa")
    assert chip.spi.transfer(bytes([Reg.FIFO, 0]))[1] == 0


def test_module_table_and_board_entries():
    assert MODULES["rfm97w"].sf_range == (6, 9)
    assert get_module("RFM95").chip == "SX1276"
    assert BOARDS["dragino-433"].radio_module is MODULES["rfm98w"]
    assert BOARDS["adafruit-rfm95w"].radio_module is MODULES["rfm95w"]
    assert BOARDS["uputronics-ce0"].radio_module is None  # sold in 434 and 868 MHz versions
    assert parse_pins("spi=0.1,reset=25,dio0=22,module=rfm97").module == "rfm97w"
    with pytest.raises(ValueError, match="unknown radio module"):
        parse_pins("spi=0.1,module=rfm99")


def test_module_problems():
    assert module_problem(MODULES["rfm95w"], EU_CHANNEL, (7, 12)) is None
    wrong_band = module_problem(MODULES["rfm98w"], EU_CHANNEL, (12,))
    assert wrong_band is not None and "RFM98W is built for 410-525 MHz" in wrong_band
    sf12 = module_problem(MODULES["rfm97w"], EU_CHANNEL, (7, 12))
    assert sf12 is not None and "only SF6-SF9" in sf12 and "SF12" in sf12


def test_driver_on_emulated_chip_still_round_trips_after_calibration():
    setup = pair(SF12)
    setup.send_and_settle("a", b"after calibration")
    assert setup.frames("b") == [b"after calibration"]
