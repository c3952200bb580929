"""The P1 serial source against the virtual meter over real ptys: unplug, replug, detection.

Every wait is on an event or a polled condition with a generous timeout; nothing sleeps a
fixed time for correctness. A pty ignores baud rate and parity, so detection tests put a
simulated UART (`MismatchedUart`) between the pty and the source.
"""

from __future__ import annotations

import errno
import itertools
import logging
import os
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial

from p1lora.common.clock import VirtualClock
from p1lora.common.framing import FramedTelegram
from p1lora.common.parser import parse_telegram
from p1lora.hardware.realtime import SystemClock
from p1lora.transmitter.meter_faults import FaultConfig
from p1lora.transmitter.meter_profiles import SERIAL_SETTINGS, SerialSettings
from p1lora.transmitter.meter_writer import PtyPort, StableLink
from p1lora.transmitter.serial_source import (
    SerialSource,
    SourceState,
    enable_parity_check,
    open_serial,
)
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_pty import (
    TIMEOUT,
    PtyMeter,
    RecordingFactory,
    TelegramCollector,
    wait_until,
)

LOGGER = "p1lora.transmitter.serial_source"
FAST = {"backoff_initial": 0.05, "backoff_max": 0.4, "read_timeout": 0.05}


@pytest.fixture
def link(tmp_path: Path) -> Path:
    return tmp_path / "usb-P1_cable-if00-port0"


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger=LOGGER)
    return caplog


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER]


def _is_contiguous_run(part: list[bytes], whole: list[bytes]) -> bool:
    if not part:
        return False
    start = whole.index(part[0])
    return whole[start : start + len(part)] == part


@pytest.fixture
def meter(link: Path) -> Iterator[PtyMeter]:
    with PtyMeter(link, "dsmr5", speed=20.0) as pty_meter:
        yield pty_meter


@pytest.mark.e2e
def test_telegrams_arrive_byte_exact_with_their_receive_time(meter: PtyMeter, link: Path) -> None:
    meter.plug()
    clock = SystemClock()
    collected = TelegramCollector()
    before = clock.now()
    with SerialSource(str(link), collected, clock, mode="5", **FAST) as source:
        assert collected.wait_for(10)
        stats = source.stats()
    after = clock.now()
    telegrams = collected.telegrams
    assert _is_contiguous_run(telegrams, meter.sent), "nothing lost, nothing altered"
    times = [at for _, at in collected.items]
    assert times == sorted(times) and before <= times[0] and times[-1] <= after
    assert stats.state == "connected" and stats.generation == "5"
    assert stats.settings == "115200 8N1"
    assert stats.telegrams_ok == len(telegrams) and stats.crc_errors == 0
    assert stats.seconds_since_last_good is not None
    assert 0.0 <= stats.seconds_since_last_good < TIMEOUT
    assert source.stats(now=times[-1] + 7.5).seconds_since_last_good == pytest.approx(7.5)
    assert source.state is SourceState.STOPPED and not source.running


@pytest.mark.e2e
def test_unplug_and_replug_resume_with_one_log_line_per_state_change(
    meter: PtyMeter, link: Path, logs: pytest.LogCaptureFixture
) -> None:
    meter.plug()
    collected = TelegramCollector()
    source = SerialSource(str(link), collected, SystemClock(), mode="5", **FAST)
    with source:
        assert collected.wait_for(5)
        meter.unplug()
        assert wait_until(lambda: source.state is SourceState.WAITING)
        # Several reopen attempts fail while the cable is out: none of them may log again.
        assert wait_until(lambda: source.stats().open_failures >= 4)
        before = len(collected)
        meter.plug()
        assert collected.wait_for(before + 5)
        stats = source.stats()
    assert stats.reconnects == 1
    assert stats.state == "connected"
    messages = _messages(logs)
    assert len(messages) == 4, messages
    assert messages[0].endswith("connected (115200 8N1)")
    assert "lost (" in messages[1] and "waiting for it to come back" in messages[1]
    assert messages[2].endswith("connected (115200 8N1)")
    assert messages[3].endswith("stopped")
    levels = [r.levelname for r in logs.records if r.name == LOGGER]
    assert levels == ["INFO", "WARNING", "INFO", "INFO"]
    # The meter kept counting while unplugged: registers after the replug are not lower.
    first = parse_telegram(collected.telegrams[0]).value("electricity_used_tariff_1")
    last = parse_telegram(collected.telegrams[-1]).value("electricity_used_tariff_1")
    assert first is not None and last is not None and last >= first  # type: ignore[operator]


@pytest.mark.e2e
def test_port_missing_at_start_is_waited_for(link: Path, logs: pytest.LogCaptureFixture) -> None:
    collected = TelegramCollector()
    with PtyMeter(link, "dsmr5", speed=20.0) as meter:
        source = SerialSource(str(link), collected, SystemClock(), mode="5", **FAST)
        with source:
            assert wait_until(lambda: source.stats().open_failures >= 4)
            assert source.state is SourceState.WAITING
            meter.plug()
            assert collected.wait_for(3)
            stats = source.stats()
    assert stats.reconnects == 0, "the first connection is not a reconnect"
    messages = _messages(logs)
    assert sum("not available" in m for m in messages) == 1, messages
    assert "No such file or directory" in messages[0]


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("profile", "tried"),
    [
        ("dsmr5", ["115200 8N1"]),
        ("dsmr4", ["115200 8N1", "115200 7E1"]),
        ("dsmr22", ["115200 8N1", "115200 7E1", "9600 7E1"]),
    ],
)
def test_auto_mode_detects_the_generation_from_what_arrives(
    link: Path, logs: pytest.LogCaptureFixture, profile: str, tried: list[str]
) -> None:
    collected = TelegramCollector()
    with PtyMeter(link, profile, speed=50.0) as meter:
        factory = RecordingFactory(meter.serial_settings)
        meter.plug()
        source = SerialSource(
            str(link), collected, SystemClock(), mode="auto", serial_factory=factory, **FAST
        )
        with source:
            assert collected.wait_for(3), source.stats()
            generation = meter.meter.profile.dsmr
            assert source.generation == generation
            assert [s.label for s in factory.opened] == tried
            # After a replug the detected settings are tried first, with no new detection.
            meter.unplug()
            assert wait_until(lambda: source.state is SourceState.WAITING)
            count = len(collected)
            meter.plug()
            assert collected.wait_for(count + 3)
            assert [s.label for s in factory.opened[len(tried) :]] == [tried[-1]]
    assert all(raw in meter.sent for raw in collected.telegrams), "only genuine telegrams"
    messages = _messages(logs)
    assert any(f"detected DSMR {generation} settings ({tried[-1]})" in m for m in messages)


@pytest.mark.e2e
def test_fixed_mode_with_wrong_settings_reports_no_data_and_never_guesses(
    link: Path, logs: pytest.LogCaptureFixture
) -> None:
    collected = TelegramCollector()
    with PtyMeter(link, "dsmr4", speed=50.0) as meter:
        factory = RecordingFactory(meter.serial_settings)
        meter.plug()
        source = SerialSource(
            str(link),
            collected,
            SystemClock(),
            mode="5",
            serial_factory=factory,
            no_data_after=0.5,
            **FAST,
        )
        with source:
            assert wait_until(lambda: source.state is SourceState.NO_DATA)
            assert wait_until(lambda: source.stats().bytes_read > 3000)
    assert len(collected) == 0
    assert {s.label for s in factory.opened} == {"115200 8N1"}
    no_data = [m for m in _messages(logs) if "no valid telegram" in m]
    assert len(no_data) == 1 and "is the meter's P1 port enabled?" in no_data[0]


@pytest.mark.e2e
def test_auto_mode_detects_again_when_a_different_meter_appears(
    link: Path, logs: pytest.LogCaptureFixture
) -> None:
    collected = TelegramCollector()
    factory = RecordingFactory(SERIAL_SETTINGS["5"])
    source = SerialSource(
        str(link),
        collected,
        SystemClock(),
        serial_factory=factory,
        no_data_after=0.5,
        **FAST,
    )
    with source:
        with PtyMeter(link, "dsmr5", speed=50.0) as first:
            first.plug()
            assert collected.wait_for(3)
            assert source.generation == "5"
        assert wait_until(lambda: source.state is SourceState.WAITING)
        with PtyMeter(link, "dsmr4", speed=50.0) as second:
            factory.meter_settings = second.serial_settings
            count = len(collected)
            second.plug()
            assert collected.wait_for(count + 3)
            assert source.generation == "4"
    assert any("detecting settings again" in m for m in _messages(logs))


@pytest.mark.e2e
def test_a_silent_meter_is_reported_once_and_recovery_is_logged(
    link: Path, logs: pytest.LogCaptureFixture
) -> None:
    collected = TelegramCollector()
    stable = StableLink(link)
    with PtyPort() as port:
        stable.point_to(port.path)
        source = SerialSource(
            str(link), collected, SystemClock(), mode="5", no_data_after=0.3, **FAST
        )
        with source:
            assert wait_until(lambda: source.state is SourceState.NO_DATA)
            meter = VirtualMeter("dsmr5", seed=2)
            stop = threading.Event()

            def feed() -> None:
                while not stop.is_set():
                    port.write(meter.next_telegram()[1])
                    stop.wait(0.05)

            feeder = threading.Thread(target=feed, daemon=True)
            feeder.start()
            try:
                assert collected.wait_for(2)
                assert wait_until(lambda: source.state is SourceState.CONNECTED)
            finally:
                stop.set()
                feeder.join(TIMEOUT)
        stable.remove()
    messages = _messages(logs)
    assert sum("no valid telegram" in m for m in messages) == 1
    assert sum("arriving again" in m for m in messages) == 1


@pytest.mark.e2e
def test_faulty_line_delivers_only_genuine_telegrams(link: Path) -> None:
    faults = FaultConfig(bit_errors=0.15, truncate=0.2, junk=0.2)
    collected = TelegramCollector()
    bad: list[FramedTelegram] = []
    with PtyMeter(link, "dsmr5", speed=40.0, faults=faults) as meter:
        meter.plug()
        source = SerialSource(
            str(link),
            collected,
            SystemClock(),
            mode="5",
            on_bad_telegram=lambda telegram, at: bad.append(telegram),
            **FAST,
        )
        with source:
            assert collected.wait_for(25)
            assert wait_until(lambda: source.stats().crc_errors >= 3)
            assert wait_until(lambda: source.stats().framing_errors >= 1)
            stats = source.stats()
    assert all(raw in meter.sent for raw in collected.telegrams)
    assert stats.framing_errors > 0
    assert all(t.problem is not None and t.raw not in meter.sent for t in bad)
    assert len(bad) >= 3


@pytest.mark.e2e
def test_a_failing_callback_is_logged_once_and_reading_goes_on(
    meter: PtyMeter, link: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    calls: list[bytes] = []

    def broken(raw: bytes, at: float) -> None:
        calls.append(raw)
        raise ValueError("downstream is broken")

    meter.plug()
    with SerialSource(str(link), broken, SystemClock(), mode="5", **FAST) as source:
        assert wait_until(lambda: source.stats().callback_errors >= 6)
        assert source.state is SourceState.CONNECTED
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is not None
    assert len(calls) >= 6


@pytest.mark.e2e
def test_stop_is_prompt_while_waiting_and_while_reading(meter: PtyMeter, link: Path) -> None:
    clock = SystemClock()
    waiting = SerialSource(str(link), TelegramCollector(), clock, backoff_max=30.0)
    waiting.start()
    assert wait_until(lambda: waiting.stats().open_failures >= 1)
    started = clock.now()
    waiting.stop()
    assert clock.now() - started < 2.0
    assert not waiting.running and waiting.state is SourceState.STOPPED

    meter.plug()
    collected = TelegramCollector()
    reading = SerialSource(str(link), collected, clock, mode="5", read_timeout=1.0)
    reading.start()
    assert collected.wait_for(2)
    started = clock.now()
    reading.stop()
    assert clock.now() - started < 2.0, "cancel_read ends a blocking read at once"
    assert not reading.running


class _OneTelegramPort:
    """A port that delivers one telegram, then fails like an unplugged cable."""

    def __init__(self, telegram: bytes) -> None:
        self._data = telegram
        self.closed = False

    @property
    def in_waiting(self) -> int:
        return len(self._data)

    def read(self, size: int = 1) -> bytes:
        if not self._data:
            raise OSError(5, "Input/output error")
        chunk, self._data = self._data[:size], self._data[size:]
        return chunk

    def close(self) -> None:
        self.closed = True


def test_backoff_doubles_to_its_cap_and_restarts_after_a_good_telegram() -> None:
    """On a virtual clock the reader's waits take no real time, so delays are exact."""
    clock = VirtualClock()
    telegram = VirtualMeter("dsmr5").next_telegram()[1]
    attempts: list[float] = []
    ports: list[_OneTelegramPort] = []
    enough = threading.Event()

    def factory(path: str, settings: SerialSettings, timeout: float) -> _OneTelegramPort:
        attempts.append(clock.now())
        if len(attempts) >= 11:
            enough.set()
        if len(attempts) == 5:
            ports.append(_OneTelegramPort(telegram))
            return ports[-1]
        raise FileNotFoundError(2, "No such file or directory")

    collected = TelegramCollector()
    source = SerialSource(
        "/dev/ttyUSB9",
        collected,
        clock,
        mode="5",
        serial_factory=factory,
        backoff_initial=0.5,
        backoff_max=3.0,
    )
    source.start()
    try:
        assert enough.wait(TIMEOUT)
    finally:
        source.stop()
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts[:11])]
    assert gaps == [0.5, 1.0, 2.0, 3.0, 0.5, 1.0, 2.0, 3.0, 3.0, 3.0]
    assert collected.telegrams == [telegram]
    assert ports[0].closed, "a failed port is closed before the next attempt"
    assert source.stats().reconnects == 0


@pytest.mark.parametrize(
    ("error", "tried"),
    [
        # The device exists but refuses 8N1 (EINVAL): detection moves on to the next setting.
        (OSError(errno.EINVAL, "Invalid argument"), ["115200 8N1", "115200 7E1"]),
        # The device is not there yet: same settings again, detection has not started.
        (FileNotFoundError(errno.ENOENT, "No such file or directory"), ["115200 8N1"] * 2),
    ],
)
def test_open_errors_advance_detection_only_when_the_device_refuses_settings(
    error: OSError, tried: list[str]
) -> None:
    clock = VirtualClock()
    telegram = VirtualMeter("dsmr4").next_telegram()[1]
    opened: list[str] = []
    done = threading.Event()

    def factory(path: str, settings: SerialSettings, timeout: float) -> _OneTelegramPort:
        opened.append(settings.label)
        if len(opened) == 1:
            raise error
        done.set()
        return _OneTelegramPort(telegram)

    source = SerialSource("/dev/ttyUSB9", TelegramCollector(), clock, serial_factory=factory)
    source.start()
    try:
        assert done.wait(TIMEOUT)
        assert wait_until(lambda: source.generation is not None)
    finally:
        source.stop()
    assert opened[:2] == tried
    assert source.generation == ("4" if len(set(tried)) == 2 else "5")


def test_configuration_errors_are_clear() -> None:
    clock = SystemClock()
    with pytest.raises(ValueError, match=r"serial mode '6' is not one of auto, 5, 4, 2\.2, 3"):
        SerialSource("/dev/null", TelegramCollector(), clock, mode="6")
    with pytest.raises(ValueError, match="backoff"):
        SerialSource("/dev/null", TelegramCollector(), clock, backoff_initial=5, backoff_max=1)
    source = SerialSource("/nonexistent/port", TelegramCollector(), clock, **FAST)
    source.start()
    try:
        with pytest.raises(RuntimeError, match="already started"):
            source.start()
    finally:
        source.stop()


# -------------------------------------------------------------- parity checking (7E1 ports)


def _iflag(fd: int) -> int:
    return int(termios.tcgetattr(fd)[0])


@pytest.mark.parametrize("generation", ["2.2", "4"])
def test_7e1_ports_check_parity_so_a_bad_byte_reads_as_nul(generation: str) -> None:
    """A pty cannot produce parity errors, but it keeps the flags: INPCK on, IGNPAR and PARMRK
    off is what makes the kernel deliver a byte with a parity error as NUL."""
    pty = PtyPort()
    try:
        try:
            port = open_serial(pty.path, SERIAL_SETTINGS[generation], 0.1)
        except serial.SerialException as exc:  # some kernels refuse 7E1 on a pty
            pytest.skip(f"this kernel refuses 7E1 on a pty: {exc}")
        try:
            iflag = _iflag(port.fileno())
        finally:
            port.close()
    finally:
        pty.close()
    assert iflag & termios.INPCK
    assert not iflag & termios.IGNPAR
    assert not iflag & termios.PARMRK


def test_8n1_ports_are_left_without_parity_check() -> None:
    pty = PtyPort()
    try:
        port = open_serial(pty.path, SERIAL_SETTINGS["5"], 0.1)
        try:
            iflag = _iflag(port.fileno())
        finally:
            port.close()
    finally:
        pty.close()
    assert not iflag & termios.INPCK


def test_enable_parity_check_sets_the_flags_and_reports_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    pty = PtyPort()
    try:
        assert enable_parity_check(pty.slave, pty.path)
        iflag = _iflag(pty.slave)
    finally:
        pty.close()
    assert iflag & termios.INPCK and not iflag & (termios.IGNPAR | termios.PARMRK)
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        with open(os.devnull, "rb") as not_a_tty:
            assert not enable_parity_check(not_a_tty.fileno(), "/dev/null")
    assert "cannot enable the UART's parity check" in caplog.text


def test_a_parity_error_nul_in_a_telegram_without_crc_is_never_delivered() -> None:
    """What the kernel makes of a flipped bit on a 7E1 line (NUL) drops that DSMR 2.2 telegram;
    the clean ones around it are delivered, the bad one is counted."""
    meter = VirtualMeter("dsmr22", seed=1)
    first, second, third = (meter.next_telegram()[1] for _ in range(3))
    assert b"!\r\n" in first and b"!0" not in first  # no CRC
    damaged = second.replace(b"1-0:1.8.1(", b"1-0:1.8.1(\x00", 1)
    assert damaged != second
    collected = TelegramCollector()
    bad: list[FramedTelegram] = []
    port = _ChunksPort([first, damaged, third])
    source = SerialSource(
        "/dev/ttyUSB9",
        collected,
        VirtualClock(),
        mode="2.2",
        serial_factory=lambda path, settings, timeout: port,
        on_bad_telegram=lambda telegram, at: bad.append(telegram),
    )
    with source:
        assert wait_until(lambda: len(collected) >= 2 and len(bad) >= 1)
    assert collected.telegrams == [first, third]
    assert [t.raw for t in bad] == [damaged]
    assert source.stats().framing_errors == 1


class _ChunksPort:
    """A port that returns the given chunks once each, then nothing."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)
        self._lock = threading.Lock()

    @property
    def in_waiting(self) -> int:
        with self._lock:
            return len(self._chunks[0]) if self._chunks else 0

    def read(self, size: int = 1) -> bytes:
        with self._lock:
            if not self._chunks:
                return b""
            return self._chunks.pop(0)

    def close(self) -> None:
        pass
