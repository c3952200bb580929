"""Test helpers: a virtual meter on a pty that can be unplugged and replugged, and a UART double.

A pty pair is the closest thing to a P1 cable a test machine has: the reader opens a real tty
with pyserial and reads real bytes. Unplugging closes the meter's side and removes the stable
symlink (the USB port disappearing from /dev/serial/by-id); replugging makes a new pty and
re-points the link. A pty ignores baud rate and parity, so `MismatchedUart` wraps the reader's
port and garbles bytes the way a UART does when its settings do not match the meter's.

Waiting is always on events or polled conditions with generous timeouts, never fixed sleeps.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from p1lora.hardware.realtime import SystemClock
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_profiles import SERIAL_SETTINGS, SerialSettings
from p1lora.transmitter.meter_writer import MeterWriter, PtyPort, StableLink
from p1lora.transmitter.serial_source import SerialPort, open_serial
from p1lora.transmitter.virtual_meter import VirtualMeter

#: Generous: CI machines are slow and busy; tests finish as soon as the condition holds.
TIMEOUT = 20.0


def wait_until(condition: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    """Poll `condition` until it holds or `timeout` passes; return whether it held."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() >= deadline:
            return condition()
        time.sleep(0.01)
    return True


class TelegramCollector:
    """An `on_telegram` callback that records telegrams and lets a test wait for a count."""

    def __init__(self) -> None:
        self.items: list[tuple[bytes, float]] = []
        self._condition = threading.Condition()

    def __call__(self, raw: bytes, received_at: float) -> None:
        with self._condition:
            self.items.append((raw, received_at))
            self._condition.notify_all()

    @property
    def telegrams(self) -> list[bytes]:
        with self._condition:
            return [raw for raw, _ in self.items]

    def __len__(self) -> int:
        with self._condition:
            return len(self.items)

    def wait_for(self, count: int, timeout: float = TIMEOUT) -> bool:
        """Wait until at least `count` telegrams arrived in total."""
        with self._condition:
            return self._condition.wait_for(lambda: len(self.items) >= count, timeout)


class PtyMeter:
    """A `VirtualMeter` written to a pty behind a stable symlink, from a background thread.

    The meter keeps its own time across unplug/replug (its registers continue), like a real
    meter whose cable was pulled. `sent` lists every telegram handed to the writer.
    """

    def __init__(
        self,
        link: Path,
        profile: str = "dsmr5",
        *,
        seed: int = 0,
        speed: float = 20.0,
        faults: FaultConfig | None = None,
    ) -> None:
        self.link = StableLink(link)
        self.meter = VirtualMeter(profile, seed=seed)
        self.speed = speed
        self.sent: list[bytes] = []
        self.port: PtyPort | None = None
        self.injector = (
            FaultInjector(faults, seed=seed, data_bits=self.meter.serial_settings.bytesize)
            if faults is not None
            else None
        )
        self._events = self._stream()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _stream(self) -> Iterator[tuple[float, bytes]]:
        def recorded() -> Iterator[tuple[float, bytes]]:
            for t, raw in self.meter:
                self.sent.append(raw)
                yield t, raw

        events = recorded()
        return inject(events, self.injector) if self.injector is not None else events

    @property
    def serial_settings(self) -> SerialSettings:
        return self.meter.serial_settings

    def plug(self) -> str:
        """Make a new pty, point the link at it and start writing; return the pty path."""
        assert self._thread is None, "already plugged in"
        self.port = PtyPort()
        self.link.point_to(self.port.path)
        self._stop = threading.Event()
        writer = MeterWriter(self.port, self.meter.serial_settings, SystemClock(), speed=self.speed)
        self._thread = threading.Thread(
            target=writer.run, args=(self._events, self._stop), name="pty-meter", daemon=True
        )
        self._thread.start()
        return self.port.path

    def unplug(self) -> None:
        """Stop writing, remove the link and close the pty: the cable is gone."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(TIMEOUT)
            assert not self._thread.is_alive(), "meter writer did not stop"
            self._thread = None
        self.link.remove()
        if self.port is not None:
            self.port.close()
            self.port = None

    def close(self) -> None:
        self.unplug()

    def __enter__(self) -> PtyMeter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _even_parity_bit(byte: int) -> int:
    return bin(byte & 0x7F).count("1") & 1


def _garble(data: bytes, sent: SerialSettings, read: SerialSettings) -> bytes:
    """What a UART set to `read` makes of bytes a meter sends with `sent`.

    Wrong baud rate: noise (bytes with the high bit set, never '/'). 7E1 read as 8N1: the
    parity bit becomes bit 7. 8N1 (ASCII) read as 7E1: the 8th bit is dropped, text unchanged.
    """
    if sent.baudrate != read.baudrate:
        return bytes(0x80 | ((b * 73 + 41) & 0x7F) for b in data)
    if sent.bytesize == 7 and read.bytesize == 8:
        return bytes(b | (_even_parity_bit(b) << 7) for b in data)
    if sent.bytesize == 8 and read.bytesize == 7:
        return bytes(b & 0x7F for b in data)
    return data


class MismatchedUart:
    """A real (pty) port whose bytes are garbled unless opened with the meter's settings."""

    def __init__(self, port: SerialPort, sent: SerialSettings, read: SerialSettings) -> None:
        self._port = port
        self._sent = sent
        self._read = read

    @property
    def in_waiting(self) -> int:
        return self._port.in_waiting

    def read(self, size: int = 1) -> bytes:
        return _garble(self._port.read(size), self._sent, self._read)

    def cancel_read(self) -> None:
        cancel = getattr(self._port, "cancel_read", None)
        if callable(cancel):
            cancel()

    def close(self) -> None:
        self._port.close()


#: What the pty itself is opened with. Some kernels refuse to change a pty's character size or
#: parity once set (EINVAL), and a pty ignores them anyway: the simulated UART applies them.
_PTY_SETTINGS = SERIAL_SETTINGS["5"]


class RecordingFactory:
    """A serial factory: real pty ports seen through `MismatchedUart`; records each open."""

    def __init__(self, meter_settings: SerialSettings) -> None:
        self.meter_settings = meter_settings
        self.opened: list[SerialSettings] = []
        self._lock = threading.Lock()

    def __call__(self, path: str, settings: SerialSettings, timeout: float) -> SerialPort:
        port = open_serial(path, _PTY_SETTINGS, timeout)
        with self._lock:
            self.opened.append(settings)
        return MismatchedUart(port, self.meter_settings, settings)
