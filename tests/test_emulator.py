"""The SX127x emulator at the register level (raw SPI, no driver): it must behave like the chip."""

from __future__ import annotations

from dataclasses import replace

import pytest

from p1lora.common.airtime import time_on_air
from p1lora.common.clock import VirtualClock
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import Reception, SX127xEmulator
from p1lora.hardware.sx127x_registers import (
    LORA_RESET_VALUES,
    RSSI_OFFSET_LF,
    SHARED_RESET_VALUES,
    Irq,
    Mode,
    Reg,
)

LORA = 0x80


def read(chip: SX127xEmulator, register: int) -> int:
    return chip.spi.transfer(bytes([register, 0]))[1]


def write(chip: SX127xEmulator, register: int, value: int) -> None:
    chip.spi.transfer(bytes([register | 0x80, value]))


def enter_lora(chip: SX127xEmulator, mode: Mode = Mode.STDBY) -> None:
    write(chip, Reg.OP_MODE, Mode.SLEEP)
    write(chip, Reg.OP_MODE, LORA | Mode.SLEEP)
    write(chip, Reg.OP_MODE, LORA | mode)


def load_fifo(chip: SX127xEmulator, payload: bytes) -> None:
    write(chip, Reg.FIFO_TX_BASE_ADDR, 0)
    write(chip, Reg.FIFO_ADDR_PTR, 0)
    chip.spi.transfer(bytes([Reg.FIFO | 0x80]) + payload)
    write(chip, Reg.PAYLOAD_LENGTH, len(payload))


@pytest.fixture
def clock():
    return VirtualClock()


@pytest.fixture
def chip(clock):
    return SX127xEmulator(clock, name="chip")


def test_power_on_values_match_the_datasheet(chip):
    assert read(chip, Reg.VERSION) == 0x12
    assert read(chip, Reg.OP_MODE) == 0x09  # FSK standby, LF registers
    assert read(chip, Reg.FRF_MSB) == 0x6C  # 434 MHz
    assert read(chip, Reg.PA_CONFIG) == 0x4F
    assert read(chip, Reg.OCP) == 0x2B
    assert read(chip, Reg.PA_DAC) == 0x84
    for register, value in SHARED_RESET_VALUES.items():
        assert read(chip, register) == value, Reg(register).name
    enter_lora(chip)
    for register, value in LORA_RESET_VALUES.items():
        assert read(chip, register) == value, Reg(register).name


def test_lora_bit_is_only_writable_in_sleep(chip):
    write(chip, Reg.OP_MODE, LORA | Mode.STDBY)  # from FSK standby: ignored
    assert read(chip, Reg.OP_MODE) & LORA == 0
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.STDBY
    write(chip, Reg.OP_MODE, Mode.SLEEP)
    write(chip, Reg.OP_MODE, LORA | Mode.SLEEP)
    assert read(chip, Reg.OP_MODE) & LORA
    write(chip, Reg.OP_MODE, LORA | Mode.STDBY)
    write(chip, Reg.OP_MODE, Mode.STDBY)  # clearing it outside SLEEP is ignored too
    assert read(chip, Reg.OP_MODE) == LORA | Mode.STDBY


def test_lora_and_fsk_pages_are_separate(chip):
    write(chip, Reg.SYNC_WORD, 0x55)  # FSK page 0x39
    enter_lora(chip)
    assert read(chip, Reg.SYNC_WORD) == 0x12
    write(chip, Reg.SYNC_WORD, 0x34)
    assert read(chip, Reg.SYNC_WORD) == 0x34


def test_burst_access_increments_registers_but_not_the_fifo(chip):
    enter_lora(chip)
    chip.spi.transfer(bytes([Reg.FRF_MSB | 0x80, 0xD9, 0x61, 0x00]))
    assert chip.spi.transfer(bytes([Reg.FRF_MSB, 0, 0, 0]))[1:] == bytes([0xD9, 0x61, 0x00])
    write(chip, Reg.FIFO_ADDR_PTR, 0x10)
    chip.spi.transfer(bytes([Reg.FIFO | 0x80]) + b"abc")
    assert read(chip, Reg.FIFO_ADDR_PTR) == 0x13
    write(chip, Reg.FIFO_ADDR_PTR, 0x10)
    assert chip.spi.transfer(bytes([Reg.FIFO, 0, 0, 0]))[1:] == b"abc"


def test_fifo_pointer_wraps_and_sleep_clears_the_fifo(chip):
    enter_lora(chip)
    write(chip, Reg.FIFO_ADDR_PTR, 0xFF)
    chip.spi.transfer(bytes([Reg.FIFO | 0x80]) + b"xy")
    assert read(chip, Reg.FIFO_ADDR_PTR) == 0x01
    write(chip, Reg.OP_MODE, LORA | Mode.SLEEP)
    assert read(chip, Reg.FIFO) == 0  # not accessible in sleep
    write(chip, Reg.OP_MODE, LORA | Mode.STDBY)
    write(chip, Reg.FIFO_ADDR_PTR, 0xFF)
    assert chip.spi.transfer(bytes([Reg.FIFO, 0, 0]))[1:] == b"\0\0"


def test_read_only_registers_ignore_writes(chip):
    enter_lora(chip)
    for register in (Reg.VERSION, Reg.RX_NB_BYTES, Reg.PKT_SNR_VALUE, Reg.HOP_CHANNEL):
        before = read(chip, register)
        write(chip, register, before ^ 0x5A)
        assert read(chip, register) == before


def test_tx_completes_after_the_time_on_air_then_standby(chip, clock):
    enter_lora(chip)
    write(chip, Reg.MODEM_CONFIG2, 0x94)  # SF9, CRC on
    load_fifo(chip, b"x" * 20)
    write(chip, Reg.DIO_MAPPING1, 0x40)  # DIO0 = TxDone
    edges = []
    chip.dio0.watch_rising(lambda: edges.append(clock.now()))
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    expected = time_on_air(20, 9, 125_000)
    clock.advance(expected - 1e-6)
    assert read(chip, Reg.IRQ_FLAGS) & Irq.TX_DONE == 0
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.TX
    clock.advance(2e-6)
    assert read(chip, Reg.IRQ_FLAGS) & Irq.TX_DONE
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.STDBY
    assert edges == [pytest.approx(expected)]
    assert chip.dio0.read()


def test_irq_flags_are_write_one_to_clear_and_dio0_follows(chip, clock):
    enter_lora(chip)
    load_fifo(chip, b"hi")
    write(chip, Reg.DIO_MAPPING1, 0x40)
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(1)
    assert chip.dio0.read()
    write(chip, Reg.IRQ_FLAGS, Irq.RX_DONE)  # a different bit: nothing changes
    assert read(chip, Reg.IRQ_FLAGS) == Irq.TX_DONE
    write(chip, Reg.IRQ_FLAGS, Irq.TX_DONE)
    assert read(chip, Reg.IRQ_FLAGS) == 0
    assert not chip.dio0.read()


def test_dio0_mapping_selects_the_flag(chip, clock):
    enter_lora(chip)
    load_fifo(chip, b"hi")
    write(chip, Reg.DIO_MAPPING1, 0x00)  # RxDone
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(1)
    assert read(chip, Reg.IRQ_FLAGS) & Irq.TX_DONE
    assert not chip.dio0.read()
    write(chip, Reg.DIO_MAPPING1, 0x40)  # remapping raises the level (and an edge)
    assert chip.dio0.read()


def test_masked_irqs_are_not_raised(chip, clock):
    enter_lora(chip)
    write(chip, Reg.IRQ_FLAGS_MASK, Irq.TX_DONE)
    load_fifo(chip, b"hi")
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(1)
    assert read(chip, Reg.IRQ_FLAGS) == 0
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.STDBY


def test_rx_continuous_stays_and_fills_the_fifo(clock):
    channel = SimChannel(clock, seed=1)
    tx, rx = channel.add_radio("tx"), channel.add_radio("rx")
    for chip in (tx, rx):
        enter_lora(chip)
        write(chip, Reg.MODEM_CONFIG2, 0x74)  # SF7 + CRC
    write(rx, Reg.OP_MODE, LORA | Mode.RXCONT)
    for payload in (b"first", b"second!"):
        load_fifo(tx, payload)
        write(tx, Reg.OP_MODE, LORA | Mode.TX)
        clock.advance(1)
        flags = read(rx, Reg.IRQ_FLAGS)
        assert flags & Irq.RX_DONE and flags & Irq.VALID_HEADER
        assert not flags & Irq.PAYLOAD_CRC_ERROR
        assert read(rx, Reg.OP_MODE) & 0x07 == Mode.RXCONT
        assert read(rx, Reg.HOP_CHANNEL) & 0x40  # CRC announced in the header
        length = read(rx, Reg.RX_NB_BYTES)
        write(rx, Reg.FIFO_ADDR_PTR, read(rx, Reg.FIFO_RX_CURRENT_ADDR))
        assert rx.spi.transfer(bytes([Reg.FIFO]) + bytes(length))[1:] == payload
        write(rx, Reg.IRQ_FLAGS, 0xFF)
    assert read(rx, Reg.FIFO_RX_CURRENT_ADDR) == len(b"first")  # second packet follows
    assert read(rx, Reg.RX_PACKET_CNT_LSB) == 2


def test_rx_single_times_out_to_standby(chip, clock):
    enter_lora(chip)
    write(chip, Reg.SYMB_TIMEOUT_LSB, 10)
    write(chip, Reg.OP_MODE, LORA | Mode.RXSINGLE)
    clock.advance(10 * 128 / 125_000 + 1e-6)  # 10 SF7 symbols
    assert read(chip, Reg.IRQ_FLAGS) & Irq.RX_TIMEOUT
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.STDBY


def test_cad_detects_a_frame_on_the_air(clock):
    channel = SimChannel(clock, seed=1)
    tx, cad = channel.add_radio("tx"), channel.add_radio("cad")
    enter_lora(tx)
    enter_lora(cad)
    write(cad, Reg.OP_MODE, LORA | Mode.CAD)
    clock.advance(0.01)
    assert read(cad, Reg.IRQ_FLAGS) == Irq.CAD_DONE
    write(cad, Reg.IRQ_FLAGS, 0xFF)
    load_fifo(tx, b"busy air" * 4)
    write(tx, Reg.OP_MODE, LORA | Mode.TX)
    write(cad, Reg.OP_MODE, LORA | Mode.CAD)
    clock.advance(0.005)
    assert read(cad, Reg.IRQ_FLAGS) == Irq.CAD_DONE | Irq.CAD_DETECTED


def test_reset_pin_holds_and_restores_reset_values(chip):
    enter_lora(chip)
    write(chip, Reg.SYNC_WORD, 0x34)
    chip.reset_pin.write(False)
    assert read(chip, Reg.VERSION) == 0  # held in reset: SPI does nothing
    chip.reset_pin.write(True)
    assert read(chip, Reg.VERSION) == 0x12
    assert read(chip, Reg.OP_MODE) == 0x09
    enter_lora(chip)
    assert read(chip, Reg.SYNC_WORD) == 0x12
    assert chip.counters.resets == 1


def test_hung_chip_never_finishes_until_reset(chip, clock):
    enter_lora(chip)
    chip.faults.hung_tx = True
    load_fifo(chip, b"stuck")
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(60)
    assert read(chip, Reg.IRQ_FLAGS) == 0
    assert read(chip, Reg.OP_MODE) & 0x07 == Mode.TX
    chip.reset_pin.write(False)
    chip.reset_pin.write(True)
    assert not chip.faults.hung_tx
    enter_lora(chip)
    load_fifo(chip, b"works")
    write(chip, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(1)
    assert read(chip, Reg.IRQ_FLAGS) & Irq.TX_DONE


@pytest.mark.parametrize("stuck", [0x00, 0xFF])
def test_a_dead_bus_reads_one_value_everywhere(chip, stuck):
    chip.faults.version = stuck
    assert {read(chip, register) for register in (0x01, 0x06, 0x42)} == {stuck}
    write(chip, Reg.SYNC_WORD, 0x34)
    chip.faults.version = None
    assert read(chip, Reg.SYNC_WORD) == 0x00  # the write went nowhere (FSK page unchanged)


def test_wrong_version_only_changes_regversion(chip):
    chip.faults.version = 0x22
    assert read(chip, Reg.VERSION) == 0x22
    assert read(chip, Reg.OP_MODE) == 0x09


def test_dropped_dio0_edges(chip, clock):
    enter_lora(chip)
    edges = []
    chip.dio0.watch_rising(lambda: edges.append(1))
    write(chip, Reg.DIO_MAPPING1, 0x40)
    chip.faults.drop_dio0_edges = 1
    for _ in range(2):
        load_fifo(chip, b"x")
        write(chip, Reg.OP_MODE, LORA | Mode.TX)
        clock.advance(1)
        assert chip.dio0.read()
        write(chip, Reg.IRQ_FLAGS, 0xFF)
    assert edges == [1]
    assert chip.counters.edges_dropped == 1


def test_leaving_tx_aborts_the_frame(clock):
    channel = SimChannel(clock, seed=1)
    tx, rx = channel.add_radio("tx"), channel.add_radio("rx")
    enter_lora(tx)
    enter_lora(rx, Mode.RXCONT)
    load_fifo(tx, b"cut short" * 10)
    write(tx, Reg.OP_MODE, LORA | Mode.TX)
    clock.advance(0.02)
    write(tx, Reg.OP_MODE, LORA | Mode.STDBY)
    clock.advance(1)
    assert read(tx, Reg.IRQ_FLAGS) == 0  # no TxDone for an aborted frame
    assert read(rx, Reg.IRQ_FLAGS) == 0
    assert tx.counters.tx_aborted == 1
    assert channel.stats.aborted == 1


def test_crc_error_and_crcless_frames_set_the_right_registers(clock):
    chip = SX127xEmulator(clock)
    enter_lora(chip, Mode.RXCONT)
    with_crc = replace(chip.air_params(), crc_on=True)
    with chip.lock.hold():
        chip.receive(Reception(b"bad", -100.0, 5.0, crc_ok=False, params=with_crc))
    assert read(chip, Reg.IRQ_FLAGS) & Irq.PAYLOAD_CRC_ERROR
    assert read(chip, Reg.HOP_CHANNEL) & 0x40
    write(chip, Reg.IRQ_FLAGS, 0xFF)
    without_crc = replace(with_crc, crc_on=False)
    with chip.lock.hold():
        chip.receive(Reception(b"b4d", -100.0, 5.0, crc_ok=False, params=without_crc))
    flags = read(chip, Reg.IRQ_FLAGS)
    assert flags & Irq.RX_DONE
    assert not flags & Irq.PAYLOAD_CRC_ERROR  # nothing to check: corruption goes unnoticed
    assert read(chip, Reg.HOP_CHANNEL) & 0x40 == 0


def test_packet_rssi_and_snr_registers(clock):
    chip = SX127xEmulator(clock)
    enter_lora(chip)
    chip.spi.transfer(bytes([Reg.FRF_MSB | 0x80, 0xD9, 0x61, 0x00]))  # 869.5 MHz: HF port
    write(chip, Reg.OP_MODE, LORA | Mode.RXCONT)
    params = replace(chip.air_params(), crc_on=True)
    with chip.lock.hold():
        chip.receive(Reception(b"ok", -120.0, -6.5, crc_ok=True, params=params))
    snr_raw = read(chip, Reg.PKT_SNR_VALUE)
    rssi_raw = read(chip, Reg.PKT_RSSI_VALUE)
    snr = (snr_raw - 256 if snr_raw > 127 else snr_raw) / 4
    assert snr == -6.5
    assert -157 + rssi_raw + snr == pytest.approx(-120, abs=0.5)


#: A change to each register `air_params` decodes (XOR mask) that changes what it decodes.
_AIR_REGISTER_CHANGES = {
    Reg.FRF_MSB: 0x10,
    Reg.FRF_MID: 0x10,
    Reg.FRF_LSB: 0x10,
    Reg.MODEM_CONFIG1: 0x10,  # bandwidth
    Reg.MODEM_CONFIG2: 0x10,  # spreading factor
    Reg.MODEM_CONFIG3: 0x08,  # low data rate optimisation
    Reg.PREAMBLE_MSB: 0x10,
    Reg.PREAMBLE_LSB: 0x10,
    Reg.SYNC_WORD: 0x10,
    Reg.INVERT_IQ: 0x40,
    Reg.PAYLOAD_LENGTH: 0x10,
}


@pytest.mark.parametrize("register", list(_AIR_REGISTER_CHANGES), ids=lambda r: r.name)
def test_air_params_follow_every_register_they_decode(clock, register):
    """`air_params()` is decoded once and kept: a write to any register it reads shows at
    once, and so does a reset (compared with a chip that never decoded before)."""
    chip = SX127xEmulator(clock)
    enter_lora(chip)
    before = chip.air_params()
    value = read(chip, register) ^ _AIR_REGISTER_CHANGES[register]
    write(chip, register, value)
    fresh = SX127xEmulator(clock)
    enter_lora(fresh)
    write(fresh, register, value)
    assert chip.air_params() == fresh.air_params() != before
    chip.reset_pin.write(False)
    chip.reset_pin.write(True)
    assert chip.air_params() == before


def test_burst_reads_match_single_reads(clock):
    """A burst is read at once, but it must say what reading each register does, including
    the registers the modem computes when read (RegModemStat, RegRssiValue)."""
    channel = SimChannel(clock)
    chip = channel.add_radio("a")
    for mode in (Mode.STDBY, Mode.RXCONT):
        enter_lora(chip, mode)
        for start, count in ((0x10, 13), (0x18, 4), (0x3C, 8), (0x7E, 3)):
            burst = chip.spi.transfer(bytes([start]) + bytes(count))[1:]
            singles = bytes(read(chip, (start + i) & 0x7F) for i in range(count))
            assert burst == singles, (mode.name, hex(start))
        # RegRssiValue is the channel's power now (LF port offset at the reset carrier).
        rssi = channel.noise_rssi_dbm(chip, chip.air_params().bw_hz) - RSSI_OFFSET_LF
        assert chip.spi.transfer(bytes([0x10]) + bytes(13))[1 + 0x1B - 0x10] == round(rssi)
    write(chip, Reg.OP_MODE, Mode.SLEEP)
    write(chip, Reg.OP_MODE, Mode.STDBY)  # FSK page
    burst = chip.spi.transfer(bytes([0x0D]) + bytes(0x33))[1:]
    assert burst == bytes(read(chip, 0x0D + i) for i in range(0x33))
