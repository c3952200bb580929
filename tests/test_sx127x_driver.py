"""The real SX127x driver against the register-level emulator, on a virtual clock."""

from __future__ import annotations

import logging
import threading

import pytest

from p1lora.common.airtime import low_data_rate_optimize, time_on_air_for
from p1lora.common.clock import VirtualClock
from p1lora.common.radio_types import BANDWIDTHS_HZ, RadioSettings
from p1lora.hardware.channel import SimChannel, noise_floor_dbm
from p1lora.hardware.emulator import PKT_SNR_SATURATION_DB, Reception, SX127xEmulator
from p1lora.hardware.radio import Radio, RadioError, TxDone
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.sx127x import SX127x, frf_for, power_setting
from p1lora.hardware.sx127x_registers import Mode, Reg

from .helpers_radio import (
    EU_CHANNEL,
    FAST,
    SF7,
    SF12,
    bench,
    chip_settings,
    driver_on,
    faults,
    pair,
    received,
    tx_done,
)


def test_init_resets_checks_version_and_enters_lora_standby():
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    radio = driver_on(chip, clock)
    assert chip.counters.resets == 1
    assert chip.peek(Reg.OP_MODE) == 0x80 | Mode.STDBY
    assert radio.settings is None
    assert not radio.busy()
    assert isinstance(radio, Radio)


# ---------------------------------------------------------------------- settings round-trip

ROUND_TRIP = [
    RadioSettings(frequency_hz=f, sf=sf, bw_hz=bw, cr=cr, preamble=pre, sync_word=sync)
    for f, sf, bw, cr, pre, sync in [
        (EU_CHANNEL, 12, 125_000, 5, 8, 0x12),
        (868_100_000, 7, 250_000, 6, 12, 0x34),
        (915_000_000, 9, 500_000, 8, 16, 0x2B),
        (433_175_000, 10, 62_500, 7, 10, 0x12),
        (433_175_000, 11, 500_000, 5, 8, 0x12),
        (169_400_000, 8, 7_800, 5, 6, 0xF1),
    ]
] + [
    RadioSettings(frequency_hz=EU_CHANNEL, sf=sf, bw_hz=bw)
    for sf in range(6, 13)
    for bw in BANDWIDTHS_HZ
]


@pytest.mark.parametrize("settings", ROUND_TRIP, ids=lambda s: f"{s.frequency_mhz}-{s.label()}")
def test_every_setting_round_trips_through_the_registers(settings):
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    radio = driver_on(chip, clock)
    radio.configure(settings)
    air, power, _, _ = chip_settings(chip)
    assert air.frf == frf_for(settings.frequency_hz)
    assert abs(air.frequency_hz - settings.frequency_hz) <= 31
    assert (air.sf, air.bw_hz, air.cr) == (settings.sf, settings.bw_hz, settings.cr)
    assert (air.preamble, air.sync_word, air.crc_on) == (
        settings.preamble,
        settings.sync_word,
        True,
    )
    assert air.ldro == low_data_rate_optimize(settings.sf, settings.bw_hz)
    assert air.implicit_header == (settings.sf == 6)
    assert round(power) == settings.tx_power_dbm
    # SF6 needs its own detection settings (datasheet 4.1.1.2).
    sf6 = settings.sf == 6
    assert chip.peek(Reg.DETECT_OPTIMIZE) & 0x07 == (0x05 if sf6 else 0x03)
    assert chip.peek(Reg.DETECTION_THRESHOLD) == (0x0C if sf6 else 0x0A)
    # Errata 2.1.
    if settings.bw_hz == 500_000:
        assert chip.peek(Reg.HIGH_BW_OPTIMIZE1) == 0x02
        hf = settings.frequency_hz > 525_000_000
        assert chip.peek(Reg.HIGH_BW_OPTIMIZE2) == (0x64 if hf else 0x7F)
    else:
        assert chip.peek(Reg.HIGH_BW_OPTIMIZE1) == 0x03
    # LF/HF register access bit and LNA boost follow the band.
    lf = settings.frequency_hz <= 525_000_000
    assert bool(chip.peek(Reg.OP_MODE) & 0x08) == lf
    assert chip.peek(Reg.LNA) == (0x20 if lf else 0x23)
    assert chip.peek(Reg.OP_MODE) & 0x07 == Mode.RXCONT
    assert chip.peek(Reg.DIO_MAPPING1) >> 6 == 0  # DIO0 = RxDone
    read_back = radio.read_settings()
    assert read_back.replace(frequency_hz=settings.frequency_hz) == settings


@pytest.mark.parametrize("dbm", range(2, 21))
def test_pa_boost_power_and_ocp(dbm):
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    radio = driver_on(chip, clock, pa_boost=True)
    radio.configure(SF7.replace(tx_power_dbm=dbm))
    _, power, ocp, pa_dac = chip_settings(chip)
    assert power == dbm
    assert chip.peek(Reg.PA_CONFIG) & 0x80
    assert pa_dac == (0x87 if dbm > 17 else 0x84)
    limit = 45 + 5 * (ocp & 0x1F) if ocp & 0x1F <= 15 else -30 + 10 * (ocp & 0x1F)
    assert ocp & 0x20  # OCP on
    assert limit == (140 if dbm > 17 else 100)
    assert radio.effective_tx_power_dbm == dbm


@pytest.mark.parametrize("dbm", range(-4, 15))
def test_rfo_power(dbm):
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    radio = driver_on(chip, clock, pa_boost=False)
    radio.configure(SF7.replace(tx_power_dbm=dbm))
    _, power, _, pa_dac = chip_settings(chip)
    assert chip.peek(Reg.PA_CONFIG) & 0x80 == 0
    assert power == pytest.approx(dbm, abs=0.25)
    assert pa_dac == 0x84


@pytest.mark.parametrize(
    ("dbm", "pa_boost", "effective"),
    [(0, True, 2), (-4, True, 2), (17, False, 14), (20, False, 14)],
)
def test_power_outside_the_path_is_clamped_with_a_warning(dbm, pa_boost, effective, caplog):
    clock = VirtualClock()
    radio = driver_on(SX127xEmulator(clock), clock, pa_boost=pa_boost)
    with caplog.at_level(logging.WARNING):
        radio.configure(SF7.replace(tx_power_dbm=dbm))
    assert radio.effective_tx_power_dbm == effective
    assert "outside the" in caplog.text
    assert power_setting(dbm, pa_boost).dbm == effective


def test_rfm95_style_module_on_rfo_radiates_almost_nothing():
    setup = bench()
    setup.add("a", SF7, pa_boost=False)
    setup.add("b", SF7)
    setup.chips["a"].antenna = "pa_boost"  # the module only wires PA_BOOST to the antenna
    setup.channel.set_path_loss("a", "b", 125)
    setup.send_and_settle("a", b"hello")
    assert setup.frames("b") == []
    setup.radios["a"].close()
    setup.add("a2", SF7, pa_boost=True)
    setup.channel.set_path_loss("a2", "b", 125)
    setup.send_and_settle("a2", b"hello")
    assert setup.frames("b") == [b"hello"]


# ---------------------------------------------------------------------- TX and RX


def test_two_chips_exchange_frames_through_the_channel():
    setup = pair(SF7)
    a, b = setup.radios["a"], setup.radios["b"]
    payload = bytes(range(200))
    started = setup.clock.now()
    airtime = a.send(payload)
    assert airtime == pytest.approx(time_on_air_for(SF7, 200))
    assert a.busy()
    setup.clock.advance(airtime)
    assert a.wakeup.is_set() and b.wakeup.is_set()  # DIO0 edges, no polling needed
    done = tx_done(a.poll())
    assert done == [TxDone(at=pytest.approx(started + airtime), airtime=airtime)]
    assert not a.busy()
    assert not a.wakeup.is_set()
    (frame,) = received(b.poll())
    assert frame.frame.payload == payload
    assert frame.frame.settings == SF7
    assert frame.frame.received_at == pytest.approx(setup.clock.now())
    # After TxDone the sender is back in continuous RX by itself: it hears the reply.
    setup.send_and_settle("b", b"ack")
    assert setup.frames("a") == [b"ack"]
    assert a.counters.tx_frames == 1 and a.counters.frames_received == 1
    assert b.counters.tx_frames == 1 and b.counters.frames_received == 1


def test_sf12_and_max_payload():
    setup = pair(SF12)
    payload = bytes(255)
    airtime = setup.send_and_settle("a", payload)
    assert airtime == pytest.approx(9.019392)
    assert setup.frames("b") == [payload]


def test_sf6_uses_implicit_header_with_a_fixed_length():
    sf6 = RadioSettings(frequency_hz=EU_CHANNEL, sf=6, bw_hz=500_000)
    setup = bench()
    setup.add("a", sf6, implicit_payload_length=16)
    setup.add("b", sf6, implicit_payload_length=16)
    setup.send_and_settle("a", b"sixteen bytes!!!")
    assert setup.frames("b") == [b"sixteen bytes!!!"]
    with pytest.raises(RadioError, match="SF6"):
        setup.radios["a"].send(b"short")


def test_send_rules():
    setup = pair(SF7)
    a = setup.radios["a"]
    with pytest.raises(RadioError, match=r"1\.\.255"):
        a.send(bytes(256))
    with pytest.raises(RadioError, match=r"1\.\.255"):
        a.send(b"")
    a.send(b"one")
    with pytest.raises(RadioError, match="still transmitting"):
        a.send(b"two")
    fresh = bench()
    radio = fresh.add("c")
    with pytest.raises(RadioError, match="configure"):
        radio.send(b"x")


def test_configure_while_busy_aborts_the_transmission():
    setup = pair(SF12)
    a = setup.radios["a"]
    a.send(b"long frame" * 10)
    setup.clock.advance(0.5)
    a.configure(SF7)
    assert not a.busy()
    setup.clock.advance(10)
    assert tx_done(a.poll()) == []
    assert setup.frames("b") == []
    assert setup.chips["a"].counters.tx_aborted == 1


def test_frames_with_a_payload_crc_error_are_dropped_and_counted():
    setup = pair(SF7)
    chip, radio = setup.chips["b"], setup.radios["b"]
    params = chip.air_params()
    with chip.lock.hold():
        chip.receive(Reception(b"corrupted", -90.0, 8.0, crc_ok=False, params=params))
    assert received(radio.poll()) == []
    assert radio.counters.crc_errors == 1
    with chip.lock.hold():
        chip.receive(Reception(b"fine", -90.0, 8.0, crc_ok=True, params=params))
    assert [f.frame.payload for f in received(radio.poll())] == [b"fine"]


def test_frames_without_a_crc_in_their_header_are_dropped_and_counted():
    setup = bench()
    setup.add("a", SF7.replace(crc_on=False))
    setup.add("b", SF7)
    setup.send_and_settle("a", b"no crc here")
    assert setup.frames("b") == []
    assert setup.radios["b"].counters.no_crc_frames == 1
    assert setup.chips["b"].counters.rx_delivered == 1  # the chip did receive it


@pytest.mark.parametrize(
    ("settings", "loss"),
    [(SF7, 100.0), (SF7, 118.0), (SF12, 130.0), (SF12, 136.0), (SF7.replace(bw_hz=250_000), 112.5)],
)
def test_rssi_and_snr_are_what_the_channel_set(settings, loss):
    setup = pair(settings, path_loss_db=loss)
    setup.send_and_settle("a", b"measure me")
    (event,) = received(setup.radios["b"].poll())
    expected_rssi = settings.tx_power_dbm - loss
    expected_snr = min(expected_rssi - noise_floor_dbm(settings.bw_hz), PKT_SNR_SATURATION_DB)
    assert event.frame.snr_db == pytest.approx(expected_snr, abs=0.13)
    assert event.frame.rssi_dbm == pytest.approx(expected_rssi, abs=0.75)


def test_rssi_on_the_low_frequency_port():
    settings = RadioSettings(frequency_hz=433_175_000, sf=9, bw_hz=125_000, tx_power_dbm=10)
    setup = pair(settings, path_loss_db=126.0)
    setup.send_and_settle("a", b"433")
    (event,) = received(setup.radios["b"].poll())
    assert event.frame.rssi_dbm == pytest.approx(-116, abs=0.75)  # -164 offset applied
    assert event.frame.snr_db == pytest.approx(-116 - noise_floor_dbm(125_000), abs=0.13)


def test_frequency_error_from_fei():
    setup = bench()
    chip_a = setup.channel.add_radio("a", freq_offset_hz=2_500.0)
    chip_b = setup.channel.add_radio("b", freq_offset_hz=-500.0)
    a, b = driver_on(chip_a, setup.clock), driver_on(chip_b, setup.clock)
    a.configure(SF7)
    b.configure(SF7)
    a.send(b"offset")
    setup.clock.advance(1)
    (event,) = received(b.poll())
    assert event.frame.freq_error_hz == pytest.approx(3_000, abs=20)


# ---------------------------------------------------------------------- missed edges


def test_missed_dio0_edge_on_receive_is_recovered_by_polling():
    setup = pair(SF7)
    setup.chips["b"].faults.drop_dio0_edges = 1
    setup.send_and_settle("a", b"edge lost")
    b = setup.radios["b"]
    assert not b.wakeup.is_set()  # no edge: nobody was told
    assert [f.frame.payload for f in received(b.poll())] == [b"edge lost"]
    # DIO0 is level-like: the flag was cleared by the poll, so the next frame raises an edge.
    setup.send_and_settle("a", b"next")
    assert b.wakeup.is_set()
    assert setup.frames("b") == [b"next"]


def test_missed_dio0_edge_on_transmit_is_recovered_by_polling():
    setup = pair(SF7)
    setup.chips["a"].faults.drop_dio0_edges = 1
    airtime = setup.send_and_settle("a", b"tx edge lost")
    a = setup.radios["a"]
    assert a.busy()
    assert tx_done(a.poll()) == [TxDone(at=setup.clock.now(), airtime=airtime)]
    assert not a.busy()
    setup.send_and_settle("b", b"reply")
    assert setup.frames("a") == [b"reply"]


def test_polling_ticker_catches_missed_edges_without_a_poll():
    setup = bench()
    setup.add("a", SF7)
    b = setup.add("b", SF7, poll_interval=0.5)
    setup.chips["b"].faults.drop_dio0_edges = 1
    setup.radios["a"].send(b"tick")
    setup.clock.advance(0.2)
    assert not b.wakeup.is_set()
    setup.clock.advance(0.5)
    assert b.wakeup.is_set()  # the ticker read RegIrqFlags and queued the frame
    assert [f.frame.payload for f in received(b.poll())] == [b"tick"]


# ---------------------------------------------------------------------- recovery


def test_hung_chip_is_recovered_by_reset(caplog):
    setup = pair(SF7)
    a, chip = setup.radios["a"], setup.chips["a"]
    chip.faults.hung_tx = True
    airtime = a.send(b"never leaves")
    setup.clock.advance(airtime + 0.1)
    assert a.busy() and tx_done(a.poll()) == []
    next_event = setup.clock.next_event_time()
    assert next_event is not None  # the TX watchdog
    setup.clock.advance_to(next_event)
    assert a.wakeup.is_set()
    with caplog.at_level(logging.WARNING, logger="p1lora.hardware.sx127x"):
        events = a.poll()
    (fault,) = faults(events)
    assert fault.recovered
    assert "did not complete" in fault.reason
    assert "resetting the chip through its RESET pin" in caplog.text
    assert "settings re-applied" in caplog.text
    assert chip.counters.resets == 2
    assert not a.busy()
    assert a.counters.recoveries == 1 and a.counters.tx_timeouts == 1
    air, _, _, _ = chip_settings(chip)
    assert (air.sf, air.bw_hz) == (7, 125_000)
    assert chip.peek(Reg.OP_MODE) & 0x07 == Mode.RXCONT
    # Working again, both ways.
    setup.send_and_settle("a", b"after reset")
    assert setup.frames("b") == [b"after reset"]
    setup.send_and_settle("b", b"heard")
    assert setup.frames("a") == [b"heard"]


def test_board_without_reset_pin_recovers_with_a_sleep_restart(caplog):
    setup = bench()
    chip = setup.channel.add_radio("a")
    radio = SX127x(chip.spi, clock=setup.clock, reset=None, dio0=chip.dio0, name="a")
    radio.configure(SF7)
    chip.faults.hung_tx = True
    airtime = radio.send(b"x")
    setup.clock.advance(airtime * 1.1 + 0.6)
    with caplog.at_level(logging.WARNING):
        (fault,) = faults(radio.poll())
    assert fault.recovered
    assert "sleep-mode restart" in caplog.text
    assert chip.counters.resets == 0
    assert chip.peek(Reg.OP_MODE) & 0x07 == Mode.RXCONT


def test_chip_that_lost_its_settings_is_noticed_and_reconfigured():
    setup = pair(SF7.replace(sf=9))
    chip = setup.chips["b"]
    chip.reset_pin.write(False)  # a brown-out: the chip restarts in FSK standby
    chip.reset_pin.write(True)
    (fault,) = faults(setup.radios["b"].poll())
    assert fault.recovered and "power glitch" in fault.reason
    assert chip.air_params().sf == 9
    setup.send_and_settle("a", b"still there")
    assert setup.frames("b") == [b"still there"]


def test_chip_that_stops_answering_is_reported_not_raised():
    setup = pair(SF7)
    b, chip = setup.radios["b"], setup.chips["b"]
    chip.faults.version = 0x00  # unplugged: everything reads 0x00
    events = b.poll()
    (fault,) = faults(events)
    assert not fault.recovered
    assert "SPI" in fault.reason
    assert faults(b.poll()) == []  # retries wait for the backoff
    with pytest.raises(RadioError, match="not working"):
        b.send(b"x")
    chip.faults.version = None  # plugged back in
    setup.clock.advance(1.5)
    (fault,) = faults(b.poll())
    assert fault.recovered
    setup.send_and_settle("a", b"back")
    assert setup.frames("b") == [b"back"]


class FlakySpi:
    def __init__(self, inner):
        self.inner = inner
        self.broken = False

    def transfer(self, data):
        if self.broken:
            raise OSError(5, "Input/output error")
        return self.inner.transfer(data)

    def close(self):
        self.inner.close()


def test_spi_errors_become_faults_in_poll():
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    spi = FlakySpi(chip.spi)
    radio = SX127x(spi, clock=clock, reset=chip.reset_pin, dio0=chip.dio0)
    radio.configure(SF7)
    spi.broken = True
    (fault,) = faults(radio.poll())
    assert not fault.recovered and "Input/output error" in fault.reason
    assert radio.counters.spi_errors >= 1
    spi.broken = False
    clock.advance(2)
    (fault,) = faults(radio.poll())
    assert fault.recovered


# ---------------------------------------------------------------------- version check


@pytest.mark.parametrize("version", [0x00, 0xFF])
def test_silent_bus_names_the_wiring_to_check(version):
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    chip.faults.version = version
    with pytest.raises(RadioError) as info:
        SX127x(chip.spi, clock=clock, reset=chip.reset_pin, wiring="NSS on CE1 (GPIO7)")
    message = str(info.value)
    assert f"{version:#04x}" in message
    for needle in ("SPI is enabled", "NSS on CE1 (GPIO7)", "MOSI", "MISO", "SCK", "3.3 V"):
        assert needle in message


@pytest.mark.parametrize(("version", "name"), [(0x22, "SX1272"), (0x35, "unknown chip")])
def test_wrong_chip_version_is_reported(version, name):
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    chip.faults.version = version
    with pytest.raises(RadioError, match=name):
        SX127x(chip.spi, clock=clock, reset=chip.reset_pin)


def test_settings_that_do_not_stick_are_reported():
    clock = VirtualClock()
    chip = SX127xEmulator(clock)
    radio = driver_on(chip, clock)

    class DroppingSpi:
        def transfer(self, data):
            if data[0] == (Reg.SYNC_WORD | 0x80):
                return bytes(len(data))  # this write never arrives
            return chip.spi.transfer(data)

        def close(self):
            pass

    radio._spi = DroppingSpi()  # a marginal wire on one transfer
    with pytest.raises(RadioError, match="SYNC_WORD"):
        radio.configure(SF7.replace(sync_word=0x34))


# ---------------------------------------------------------------------- lifecycle, threads


def test_close_puts_the_chip_to_sleep_and_is_idempotent():
    setup = pair(SF7)
    a, chip = setup.radios["a"], setup.chips["a"]
    a.close()
    a.close()
    assert chip.peek(Reg.OP_MODE) & 0x07 == Mode.SLEEP
    assert chip.spi.closed and chip.dio0.closed and chip.reset_pin.closed
    assert a.poll() == []
    with pytest.raises(RadioError, match="closed"):
        a.send(b"x")


def test_real_threads_exchange_many_frames_without_deadlock():
    """Real time: scheduler thread delivers frames and DIO0 edges while the main thread sends
    and polls, and an extra thread polls concurrently (SPI lock contention)."""
    scheduler = ThreadScheduler("test-radio")
    try:
        channel = SimChannel(scheduler, seed=3)
        chip_a, chip_b = channel.add_radio("a"), channel.add_radio("b")
        a = SX127x(
            chip_a.spi,
            clock=scheduler,
            reset=chip_a.reset_pin,
            dio0=chip_a.dio0,
            scheduler=scheduler,
            poll_interval=0.05,
        )
        b = SX127x(
            chip_b.spi,
            clock=scheduler,
            reset=chip_b.reset_pin,
            dio0=chip_b.dio0,
            scheduler=scheduler,
            poll_interval=0.05,
        )
        a.configure(FAST)
        b.configure(FAST)
        got: list[bytes] = []
        stop = threading.Event()

        def poller() -> None:
            while not stop.is_set():
                for event in b.poll():
                    if hasattr(event, "frame"):
                        got.append(event.frame.payload)
                b.wakeup.wait(0.01)

        thread = threading.Thread(target=poller)
        thread.start()
        sent = []
        for i in range(25):
            payload = f"frame {i}".encode()
            a.send(payload)
            sent.append(payload)
            events = []
            while not tx_done(events):
                assert a.wakeup.wait(2.0), "TxDone never arrived"
                events = a.poll()
        deadline = scheduler.now() + 5
        while len(got) < len(sent) and scheduler.now() < deadline:
            stop.wait(0.02)
        stop.set()
        thread.join(2)
        assert got == sent
        a.close()
        b.close()
    finally:
        scheduler.close()


def test_a_chip_that_stays_dead_is_retried_with_backoff_and_a_stable_reason(caplog):
    setup = pair(SF7)
    b, chip = setup.radios["b"], setup.chips["b"]
    chip.faults.version = 0xFF
    reasons = []
    for _ in range(6):
        with caplog.at_level(logging.DEBUG):
            reasons += [fault.reason for fault in faults(b.poll())]
        setup.clock.advance(100)
    assert len(reasons) == 6
    assert all(len(reason) < 1000 for reason in reasons)  # no ever-growing message
    assert caplog.text.count("ERROR") <= 1  # logged loudly once, then quietly
