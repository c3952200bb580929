"""Helpers for the radio-layer tests: emulated chips on a channel with real drivers on them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from p1lora.common.clock import VirtualClock
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AirParams, SX127xEmulator
from p1lora.hardware.radio import FrameReceived, RadioEvent, RadioFault, TxDone
from p1lora.hardware.sx127x import SX127x
from p1lora.hardware.sx127x_registers import Reg

EU_CHANNEL = 869_525_000
SF7 = RadioSettings(frequency_hz=EU_CHANNEL, sf=7, bw_hz=125_000)
SF12 = RadioSettings(frequency_hz=EU_CHANNEL, sf=12, bw_hz=125_000)
FAST = RadioSettings(frequency_hz=EU_CHANNEL, sf=7, bw_hz=500_000)


def driver_on(chip: SX127xEmulator, clock: VirtualClock, **kwargs) -> SX127x:
    """The real driver on an emulated chip, on a virtual clock (watchdog timers included)."""
    kwargs.setdefault("scheduler", clock)
    kwargs.setdefault("name", chip.name)
    return SX127x(chip.spi, clock=clock, reset=chip.reset_pin, dio0=chip.dio0, **kwargs)


@dataclass
class Bench:
    """A virtual clock, a channel and named radios (chip + driver) on it."""

    clock: VirtualClock
    channel: SimChannel
    chips: dict[str, SX127xEmulator] = field(default_factory=dict)
    radios: dict[str, SX127x] = field(default_factory=dict)

    def add(self, name: str, settings: RadioSettings | None = None, **kwargs) -> SX127x:
        position = kwargs.pop("position", None)
        chip = self.channel.add_radio(name, position=position)
        radio = driver_on(chip, self.clock, **kwargs)
        if settings is not None:
            radio.configure(settings)
        self.chips[name] = chip
        self.radios[name] = radio
        return radio

    def send_and_settle(self, sender: str, payload: bytes) -> float:
        """Send and run the clock past the end of the frame."""
        airtime = self.radios[sender].send(payload)
        self.clock.advance(airtime + 0.01)
        return airtime

    def frames(self, name: str) -> list[bytes]:
        return [e.frame.payload for e in self.radios[name].poll() if isinstance(e, FrameReceived)]


def bench(seed: int = 0, **channel_kwargs) -> Bench:
    clock = VirtualClock()
    return Bench(clock, SimChannel(clock, seed=seed, **channel_kwargs))


def pair(settings: RadioSettings = SF7, seed: int = 0, **channel_kwargs) -> Bench:
    """Two configured radios "a" and "b" on one channel."""
    setup = bench(seed=seed, **channel_kwargs)
    setup.add("a", settings)
    setup.add("b", settings)
    return setup


def of_type(events: list[RadioEvent], kind: type) -> list:
    return [event for event in events if isinstance(event, kind)]


def received(events: list[RadioEvent]) -> list[FrameReceived]:
    return of_type(events, FrameReceived)


def tx_done(events: list[RadioEvent]) -> list[TxDone]:
    return of_type(events, TxDone)


def faults(events: list[RadioEvent]) -> list[RadioFault]:
    return of_type(events, RadioFault)


def chip_settings(chip: SX127xEmulator) -> tuple[AirParams, float, int, int]:
    """What the chip's registers say, decoded by the emulator (independent of the driver):
    modulation, radiated power, RegOcp and RegPaDac."""
    return chip.air_params(), chip.radiated_power_dbm(), chip.peek(Reg.OCP), chip.peek(Reg.PA_DAC)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    radio: SX127x, predicate: Callable[[RadioEvent], bool], timeout: float = 10.0
) -> list[RadioEvent]:
    """Real time: poll `radio` (sleeping on its wakeup) until an event matches; all events."""
    seen: list[RadioEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        radio.wakeup.wait(0.05)
        events = radio.poll()
        seen += events
        if any(predicate(event) for event in events):
            return seen
    raise AssertionError(f"no matching event within {timeout} s; saw {seen}")


def eventually(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Real time: wait until `condition()` holds."""
    done = threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        done.wait(0.02)
    raise AssertionError(f"condition not met within {timeout} s")
