"""Board pin maps, custom pins, the lazily imported Pi adapters and the radio factory.

The Pi adapters are exercised against stand-ins for `spidev` and `RPi.GPIO` that forward to an
emulated chip, so the real adapter code (chip select, reset pulse, edge detection) runs here.
"""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.hardware import pi_adapters
from p1lora.hardware.boards import BOARDS, BoardPins, get_board, parse_pins
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import SX127xEmulator
from p1lora.hardware.factory import open_radio
from p1lora.hardware.radio import RadioError, TxDone
from p1lora.hardware.sx127x_registers import Mode, Reg
from p1lora.hardware.udp_channel import UdpSimOptions

from .helpers_radio import SF7, received

# ---------------------------------------------------------------------- the table


def test_board_table():
    dragino = BOARDS["dragino"]
    assert (dragino.spi_device, dragino.cs_gpio, dragino.reset_gpio, dragino.dio0_gpio) == (
        0,
        25,
        17,
        4,
    )
    bonnet = BOARDS["adafruit-rfm95w"]
    assert (bonnet.spi_device, bonnet.cs_gpio, bonnet.reset_gpio, bonnet.dio0_gpio) == (
        1,
        None,
        25,
        22,
    )
    ce0, ce1 = BOARDS["uputronics-ce0"], BOARDS["uputronics-ce1"]
    assert (ce0.spi_device, ce0.dio0_gpio, ce0.reset_gpio) == (0, 25, None)
    assert (ce1.spi_device, ce1.dio0_gpio, ce1.reset_gpio) == (1, 16, None)
    assert all(board.pa_boost for board in BOARDS.values())  # RFM9x modules: PA_BOOST only


def test_board_names_and_aliases():
    assert get_board("Dragino").name == "dragino"
    assert get_board("adafruit_bonnet").name == "adafruit-rfm95w"
    assert get_board("uputronics").name == "uputronics-ce0"
    with pytest.raises(ValueError, match="known boards: dragino"):
        get_board("heltec")


def test_wiring_description_names_the_pins():
    assert "NSS on GPIO25 driven as a GPIO" in BOARDS["dragino"].wiring()
    assert "CE1 (GPIO7, /dev/spidev0.1)" in BOARDS["adafruit-rfm95w"].wiring()
    assert "no RESET" in BOARDS["uputronics-ce1"].wiring()


def test_custom_pins():
    pins = parse_pins("spi=0.1, reset=GPIO5, dio0=6, pa_boost=no")
    assert (pins.spi_bus, pins.spi_device, pins.cs_gpio) == (0, 1, None)
    assert (pins.reset_gpio, pins.dio0_gpio, pins.pa_boost) == (5, 6, False)
    assert parse_pins("cs=25,reset=17,dio0=4").cs_gpio == 25
    assert parse_pins("dragino") == BOARDS["dragino"]
    assert parse_pins("dio0=none").dio0_gpio is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("reset=17,dio0=17", "used twice"),
        ("dio0=10", "SPI0 data/clock"),
        ("spi=0.0,dio0=8", "chip enable"),
        ("spi=0.3", "chip-enable devices"),
        ("spi=2.0", "SPI bus 2"),
        ("reset=40", "BCM 0..27"),
        ("reset=x", "GPIO number"),
        ("colour=blue", "unknown pin setting"),
        ("pa_boost=maybe", "yes or no"),
        ("reset", "unknown board"),
    ],
)
def test_bad_custom_pins_are_explained(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_pins(spec)


def test_manual_chip_select_frees_the_hardware_ce_pin():
    BoardPins("x", "x", spi_device=0, cs_gpio=25, dio0_gpio=8)  # CE0 unused: allowed


# ---------------------------------------------------------------------- fake Pi libraries


class FakeGPIO(types.ModuleType):
    """RPi.GPIO stand-in wired to an emulated chip."""

    BCM, OUT, IN, HIGH, LOW, RISING, PUD_DOWN = 11, 0, 1, 1, 0, 31, 21

    def __init__(self, chip: SX127xEmulator, board: BoardPins, classic: bool = False) -> None:
        super().__init__("RPi.GPIO")
        self.chip = chip
        self.board = board
        self.classic = classic
        self.mode = None
        self.levels: dict[int, int] = {}
        self.setups: dict[int, int] = {}
        self.edges: dict[int, int] = {}
        self.cleaned: list[int] = []
        self.reset_pulses = 0

    def setwarnings(self, flag):
        pass

    def setmode(self, mode):
        self.mode = mode

    def setup(self, pin, direction, initial=None, pull_up_down=None):
        assert self.mode == self.BCM
        self.setups[pin] = direction
        if direction == self.OUT:
            self.output(pin, initial)

    def output(self, pin, value):
        assert self.setups.get(pin) == self.OUT, f"GPIO{pin} is not an output"
        if pin == self.board.reset_gpio:
            if self.levels.get(pin) == 1 and not value:
                self.reset_pulses += 1
            self.chip.reset_pin.write(bool(value))
        self.levels[pin] = value

    def input(self, pin):
        assert pin == self.board.dio0_gpio
        return int(self.chip.dio0.read())

    def add_event_detect(self, pin, edge, callback):
        if self.classic:
            raise RuntimeError("Failed to add edge detection")
        assert edge == self.RISING and pin == self.board.dio0_gpio
        self.edges[pin] = edge
        self.chip.dio0.watch_rising(lambda: callback(pin))

    def remove_event_detect(self, pin):
        self.edges.pop(pin, None)
        self.chip.dio0.watch_rising(None)

    def cleanup(self, pin):
        self.cleaned.append(pin)


class FakeSpiDev:
    def __init__(self, chip: SX127xEmulator, gpio: FakeGPIO, board: BoardPins, missing: bool):
        self.chip, self.gpio, self.board, self.missing = chip, gpio, board, missing
        self.no_cs = False
        self.opened = None
        self.closed = False
        self.mode = None
        self.max_speed_hz = None

    def open(self, bus, device):
        if self.missing:
            raise FileNotFoundError(2, "No such file or directory")
        self.opened = (bus, device)

    def xfer2(self, data):
        cs = self.board.cs_gpio
        selected = (self.gpio.levels.get(cs) == 0) if cs is not None else not self.no_cs
        assert self.opened == (self.board.spi_bus, self.board.spi_device)
        if not selected:
            return [0xFF] * len(data)  # nobody drives MISO
        return list(self.chip.spi.transfer(bytes(data)))

    def close(self):
        self.closed = True


@pytest.fixture
def fake_pi(monkeypatch):
    """Install fake spidev/RPi.GPIO for a board; returns (chip, gpio, spidev list, clock)."""

    def install(board_name: str, *, classic: bool = False, missing_device: bool = False):
        clock = VirtualClock()
        chip = SX127xEmulator(clock)
        board = BOARDS[board_name]
        gpio = FakeGPIO(chip, board, classic)
        devices: list[FakeSpiDev] = []

        def make_spidev():
            device = FakeSpiDev(chip, gpio, board, missing_device)
            devices.append(device)
            return device

        spidev = types.ModuleType("spidev")
        spidev.SpiDev = make_spidev  # type: ignore[attr-defined]
        rpi = types.ModuleType("RPi")
        rpi.GPIO = gpio  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "spidev", spidev)
        monkeypatch.setitem(sys.modules, "RPi", rpi)
        monkeypatch.setitem(sys.modules, "RPi.GPIO", gpio)
        monkeypatch.setattr(pi_adapters, "_gpio_module", None)
        return chip, gpio, devices, clock

    return install


@pytest.mark.parametrize("board", list(BOARDS))
def test_real_backend_drives_each_board(fake_pi, board):
    chip, gpio, devices, clock = fake_pi(board)
    pins = BOARDS[board]
    radio = open_radio("sx127x", board=board, scheduler=clock)
    (device,) = devices
    assert device.opened == (0, pins.spi_device)
    assert device.mode == 0 and device.max_speed_hz == pi_adapters.DEFAULT_SPI_SPEED_HZ
    assert device.no_cs == (pins.cs_gpio is not None)
    assert gpio.reset_pulses == (1 if pins.reset_gpio is not None else 0)
    assert gpio.edges == {pins.dio0_gpio: gpio.RISING}
    radio.configure(SF7)
    assert chip.peek(Reg.OP_MODE) == 0x80 | Mode.RXCONT
    airtime = radio.send(b"over fake spidev")
    clock.advance(airtime)
    assert radio.wakeup.is_set()  # the DIO0 edge came through add_event_detect
    assert [type(e) for e in radio.poll()] == [TxDone]
    radio.close()
    assert device.closed
    assert pins.dio0_gpio in gpio.cleaned and not gpio.edges
    if pins.cs_gpio is not None:
        assert gpio.levels[pins.cs_gpio] == 1  # NSS released between transfers
        assert pins.cs_gpio in gpio.cleaned


def test_missing_spi_device_says_how_to_enable_spi(fake_pi):
    fake_pi("dragino", missing_device=True)
    with pytest.raises(RadioError, match="dtparam=spi=on"):
        open_radio("sx127x", board="dragino", scheduler=VirtualClock())


def test_classic_rpi_gpio_edge_detection_failure_names_rpi_lgpio(fake_pi):
    fake_pi("adafruit-rfm95w", classic=True)
    with pytest.raises(RadioError, match="rpi-lgpio"):
        open_radio("sx127x", board="adafruit-rfm95w", scheduler=VirtualClock())


def test_wrong_board_choice_reports_the_wiring(fake_pi):
    chip, *_ = fake_pi("dragino")
    chip.faults.version = 0x00
    with pytest.raises(RadioError, match="NSS on GPIO25"):
        open_radio("sx127x", board="dragino", scheduler=VirtualClock())


def test_without_pi_libraries_only_the_real_radio_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "spidev", None)
    monkeypatch.setitem(sys.modules, "RPi", None)
    monkeypatch.setitem(sys.modules, "RPi.GPIO", None)
    monkeypatch.setattr(pi_adapters, "_gpio_module", None)
    with pytest.raises(RadioError, match=r"p1-lora\[pi\]"):
        open_radio("sx127x", board="dragino", scheduler=VirtualClock())
    clock = VirtualClock()
    radio = open_radio("sim", channel=SimChannel(clock), name="fine")
    radio.configure(SF7)
    radio.close()


def test_importing_the_hardware_package_does_not_import_pi_libraries():
    code = (
        "import sys, p1lora.hardware.factory, p1lora.hardware.pi_adapters;"
        "assert 'spidev' not in sys.modules and 'RPi' not in sys.modules, sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_real_backend_needs_a_board():
    with pytest.raises(RadioError, match="--board"):
        open_radio("sx127x", scheduler=VirtualClock())
    with pytest.raises(RadioError, match="unknown radio backend"):
        open_radio("lora", scheduler=VirtualClock())


# ---------------------------------------------------------------------- factory, sim


def test_sim_backend_on_an_in_process_channel():
    clock = VirtualClock()
    channel = SimChannel(clock)
    a = open_radio("sim", channel=channel, name="tx", board="dragino")
    b = open_radio("sim", channel=channel, name="rx")
    assert channel.chip("tx").antenna == "pa_boost"
    a.configure(SF7)
    b.configure(SF7)
    clock.advance(a.send(b"factory made"))
    assert [e.frame.payload for e in received(b.poll())] == [b"factory made"]
    a.close()
    assert channel.radio_names == ["rx"]
    b.close()


def test_open_radio_joins_the_udp_sim():
    from .helpers_radio import free_udp_port

    radio = open_radio("sim", sim=UdpSimOptions(port=free_udp_port()), name="cli")
    try:
        radio.configure(SF7)
        assert not radio.busy()
    finally:
        radio.close()
