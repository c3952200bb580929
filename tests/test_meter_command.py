"""`p1-lora meter`, the paced writer and the pty it writes to.

Pacing is checked on a `VirtualClock` (exact, instant); the pty and the command itself run for
real, with generous timeouts and event waits.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.framing import TelegramFramer
from p1lora.common.parser import parse_telegram
from p1lora.hardware.realtime import SystemClock
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_profiles import SERIAL_SETTINGS
from p1lora.transmitter.meter_writer import MeterWriter, PtyPort, StableLink
from p1lora.transmitter.serial_source import SerialSource
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.conftest import TELEGRAMS
from tests.helpers_pty import TIMEOUT, TelegramCollector, wait_until

START = "2024-02-05T07:59:50+01:00"


class RecordingSink:
    """A sink that records when (on the writer's clock) each chunk went out."""

    def __init__(self, clock: VirtualClock, accept: int | None = None) -> None:
        self.clock = clock
        self.accept = accept
        self.chunks: list[tuple[float, bytes]] = []
        self.boundaries: list[float] = []

    def write(self, data: bytes) -> int:
        taken = data if self.accept is None else data[: self.accept]
        self.chunks.append((self.clock.now(), taken))
        return len(taken)

    def telegram_boundary(self, now: float) -> None:
        self.boundaries.append(now)

    @property
    def data(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)


# -- the writer ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("profile", "speed"), [("dsmr5", 1.0), ("dsmr22", 1.0), ("dsmr4", 10.0)])
def test_writer_paces_telegrams_and_bytes_like_the_uart(profile: str, speed: float) -> None:
    clock = VirtualClock(start=100.0)
    sink = RecordingSink(clock)
    meter = VirtualMeter(profile, seed=1)
    serial = meter.serial_settings
    telegrams = [meter.next_telegram() for _ in range(4)]
    stats = MeterWriter(sink, serial, clock, speed=speed).run(telegrams, threading.Event())
    assert stats.telegrams == 4
    assert sink.data == b"".join(raw for _, raw in telegrams)
    assert sink.boundaries == [100.0 + t / speed for t, _ in telegrams]
    byte_time = serial.char_seconds / speed
    offset = 0
    ends = []
    for t, raw in telegrams:
        start = 100.0 + t / speed
        sent = 0
        while sent < len(raw):
            at, chunk = sink.chunks[offset]
            assert at == pytest.approx(start + sent * byte_time, abs=1e-9)
            sent += len(chunk)
            offset += 1
        ends.append(start + len(raw) * byte_time)
    # Small chunks: about 5 ms of line time each, so readers see realistic fragments.
    assert max(len(c) for _, c in sink.chunks) <= max(16, int(0.005 / byte_time))
    assert clock.now() == pytest.approx(ends[-1] - len(sink.chunks[-1][1]) * byte_time)


def test_a_telegram_due_while_the_line_is_busy_waits_for_it() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock)
    serial = SERIAL_SETTINGS["2.2"]  # 9600 baud: 960 bytes take a second
    events = [(0.0, b"/" + b"a" * 959), (0.25, b"/" + b"b" * 959)]
    MeterWriter(sink, serial, clock).run(events, threading.Event())
    second = next(at for at, chunk in sink.chunks if chunk.startswith(b"/b"))
    assert second == pytest.approx(1.0)


def test_count_stop_and_unlimited_speed() -> None:
    clock = VirtualClock()
    meter = VirtualMeter("dsmr5")
    sink = RecordingSink(clock)
    stats = MeterWriter(sink, meter.serial_settings, clock, speed=float("inf")).run(
        iter(meter), threading.Event(), count=7
    )
    assert stats.telegrams == 7
    assert len(sink.chunks) == 7, "no pacing: one write per telegram"
    assert clock.now() == 0.0
    stop = threading.Event()
    stop.set()
    assert MeterWriter(sink, meter.serial_settings, clock).run(iter(meter), stop).telegrams == 0
    with pytest.raises(ValueError, match="speed"):
        MeterWriter(sink, meter.serial_settings, clock, speed=0)


def test_bytes_a_sink_cannot_take_are_counted_as_dropped() -> None:
    clock = VirtualClock()
    sink = RecordingSink(clock, accept=10)
    stats = MeterWriter(sink, SERIAL_SETTINGS["5"], clock, speed=float("inf")).run(
        [(0.0, b"x" * 100), (1.0, b"y" * 50)], threading.Event()
    )
    assert (stats.bytes_written, stats.bytes_dropped) == (20, 130)


# -- the pty and the link ------------------------------------------------------------------------


def _read_exactly(fd: int, size: int) -> bytes:
    data = b""
    while len(data) < size:
        ready, _, _ = select.select([fd], [], [], TIMEOUT)
        assert ready, f"timed out after {data!r}"
        data += os.read(fd, size - len(data))
    return data


def test_pty_is_raw_so_crlf_and_every_byte_survive() -> None:
    payload = b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(000001.000*kWh)\r\n\x03\x7f!ABCD\r\n"
    with PtyPort() as port:
        reader = os.open(port.path, os.O_RDONLY | os.O_NOCTTY)
        try:
            assert port.write(payload) == len(payload)
            assert _read_exactly(reader, len(payload)) == payload
        finally:
            os.close(reader)


def test_pty_flushes_data_nobody_reads_but_not_data_a_reader_takes() -> None:
    with PtyPort(stale_after=2.0) as port:
        port.write(b"x" * 100)
        assert wait_until(lambda: port.pending() == 100)
        port.telegram_boundary(0.0)
        port.telegram_boundary(1.0)
        assert port.pending() == 100 and port.flushes == 0
        port.telegram_boundary(2.5)
        assert port.pending() == 0 and port.flushes == 1

        reader = os.open(port.path, os.O_RDONLY | os.O_NOCTTY)
        try:
            port.write(b"y" * 100)
            port.telegram_boundary(10.0)
            assert _read_exactly(reader, 40) == b"y" * 40
            port.telegram_boundary(13.0)  # consumption seen: not stale
            assert port.flushes == 1
            assert _read_exactly(reader, 60) == b"y" * 60
        finally:
            os.close(reader)


def test_closing_the_pty_looks_like_an_unplugged_cable() -> None:
    port = PtyPort()
    reader = os.open(port.path, os.O_RDONLY | os.O_NOCTTY)
    try:
        port.close()
        ready, _, _ = select.select([reader], [], [], TIMEOUT)
        assert ready
        with contextlib.suppress(OSError):  # EIO is how Linux reports a hung-up pty
            assert os.read(reader, 10) == b""
        port.close()  # idempotent
    finally:
        os.close(reader)


def test_stable_link_repoints_atomically_and_removes_only_its_own(tmp_path: Path) -> None:
    path = tmp_path / "p1"
    link = StableLink(path)
    link.point_to("/dev/pts/one")
    assert os.readlink(path) == "/dev/pts/one"
    link.point_to("/dev/pts/two")
    assert os.readlink(path) == "/dev/pts/two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p1"], "no temporary left behind"
    os.remove(path)
    os.symlink("/dev/pts/someone-else", path)
    link.remove()
    assert os.readlink(path) == "/dev/pts/someone-else", "not ours any more: left alone"
    regular = tmp_path / "file"
    regular.write_text("keep me")
    with pytest.raises(FileExistsError, match="not a symlink"):
        StableLink(regular)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        StableLink(tmp_path / "missing" / "p1")


# -- the command ---------------------------------------------------------------------------------


def _command(*args: str) -> list[str]:
    return [sys.executable, "-m", "p1lora.tools.cli", "meter", *args]


def _run(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(_command(*args), capture_output=True, timeout=120, check=False)


def _frame(data: bytes) -> tuple[list[bytes], TelegramFramer]:
    framer = TelegramFramer()
    telegrams = [t.raw for t in framer.feed(data)]
    return telegrams, framer


@pytest.mark.e2e
def test_stdout_with_count_writes_exactly_that_many_valid_telegrams() -> None:
    result = _run("--stdout", "--count", "5", "--speed", "max", "--start", START, "--seed", "4")
    assert result.returncode == 0, result.stderr
    telegrams, framer = _frame(result.stdout)
    assert len(telegrams) == 5
    assert framer.stats.crc_errors == framer.stats.framing_errors == 0
    assert b"".join(telegrams) == result.stdout
    stamps = [parse_telegram(raw).meter_timestamp for raw in telegrams]
    assert stamps[0] == datetime.fromisoformat(START)
    assert b"meter stopped: 5 telegram(s)" in result.stderr
    # Same seed and start: the same bytes as the library produces.
    meter = VirtualMeter("dsmr5", seed=4, start=datetime.fromisoformat(START))
    assert telegrams == [meter.next_telegram()[1] for _ in range(5)]


@pytest.mark.e2e
def test_stdout_is_paced_at_the_meter_interval() -> None:
    # DSMR 4 at 20x speed: three telegrams need two intervals of 0.5 s.
    started = SystemClock().now()
    result = _run("--stdout", "--count", "3", "--profile", "dsmr4", "--speed", "20")
    elapsed = SystemClock().now() - started
    assert result.returncode == 0, result.stderr
    telegrams, _ = _frame(result.stdout)
    assert len(telegrams) == 3
    assert elapsed >= 1.0
    assert all(b"1-3:0.2.8(42)" in raw for raw in telegrams)


@pytest.mark.e2e
def test_dsmr22_profile_has_no_crc_and_seven_bit_text() -> None:
    result = _run("--stdout", "--count", "2", "--profile", "dsmr22", "--speed", "max")
    assert result.returncode == 0, result.stderr
    telegrams, _ = _frame(result.stdout)
    assert len(telegrams) == 2
    assert all(raw.endswith(b"\r\n!\r\n") for raw in telegrams)
    assert max(result.stdout) < 0x80


@pytest.mark.e2e
def test_fault_flags_reach_the_stream() -> None:
    args = ("--seed", "2", "--start", START, "--count", "60", "--speed", "max", "--stdout")
    faults = ("--bit-errors", "0.2", "--junk", "0.2", "--truncate", "0.1")
    result = _run(*args, *faults)
    assert result.returncode == 0, result.stderr
    meter = VirtualMeter("dsmr5", seed=2, start=datetime.fromisoformat(START))
    injector = FaultInjector(FaultConfig(bit_errors=0.2, junk=0.2, truncate=0.1), seed=2)
    expected = b"".join(
        data for _, data in inject((meter.next_telegram() for _ in range(60)), injector)
    )
    assert result.stdout == expected
    telegrams, framer = _frame(result.stdout)
    assert 20 < len(telegrams) < 60
    assert framer.stats.crc_errors > 0
    assert b"faults injected" in result.stderr


@pytest.mark.e2e
def test_replay_a_capture_byte_exact_and_looping() -> None:
    fixture = TELEGRAMS / "V4_2.txt"
    result = _run("--replay", str(fixture), "--loop", "--stdout", "--count", "3", "--speed", "max")
    assert result.returncode == 0, result.stderr
    assert result.stdout == fixture.read_bytes() * 3


@pytest.mark.e2e
def test_pty_mode_prints_the_path_serves_a_reader_and_stops_cleanly(tmp_path: Path) -> None:
    link = tmp_path / "meter"
    proc = subprocess.Popen(
        _command("--link", str(link), "--speed", "20", "--profile", "fluvius"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], TIMEOUT)
        assert ready, "the meter printed no pty path"
        path = proc.stdout.readline().decode().strip()
        assert path.startswith("/dev/pts/")
        assert os.readlink(link) == path
        collected = TelegramCollector()
        source = SerialSource(str(link), collected, SystemClock(), mode="5")
        with source:
            assert collected.wait_for(4), source.stats()
        telegrams = collected.telegrams
        for raw in telegrams:
            telegram = parse_telegram(raw)
            assert telegram.crc.valid is True
            assert telegram.header == "FLU5\\253769484_A"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(TIMEOUT) == 0
        assert not link.exists() and not link.is_symlink(), "the link is removed on exit"
        assert proc.stderr is not None
        assert b"meter stopped" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(TIMEOUT)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--bit-errors", "2"), "not a probability"),
        (("--speed", "0"), "outside"),
        (("--speed", "fast"), "not a number"),
        (("--count", "0"), "at least 1"),
        (("--start", "2024-01-01T00:00"), "no UTC offset"),
        (("--start", "yesterday"), "not an ISO"),
        (("--profile", "dsmr6"), "invalid choice"),
        (("--loop",), "--loop only applies to --replay"),
        (("--speed", "max"), "--speed max needs --stdout"),
        (("--stdout", "--link", "/tmp/x"), "not allowed with"),
        (("--replay", "/nonexistent/capture.txt", "--stdout"), "cannot read capture"),
        (("--replay", str(TELEGRAMS / "V5.txt"), "--start", START), "not to --replay"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(args: tuple[str, ...], message: str) -> None:
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr.decode()
    assert result.stdout == b""


@pytest.mark.e2e
def test_link_refuses_to_replace_a_regular_file(tmp_path: Path) -> None:
    precious = tmp_path / "ttyUSB0"
    precious.write_text("not a link")
    result = _run("--link", str(precious))
    assert result.returncode == 2
    assert b"not a symlink" in result.stderr
    assert precious.read_text() == "not a link"


@pytest.mark.e2e
def test_help_lists_profiles_and_exits_0() -> None:
    result = _run("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for word in (
        "dsmr5",
        "fluvius",
        "dsmr4",
        "dsmr22",
        "--link",
        "--speed",
        "--replay",
        "9600 7E1",
    ):
        assert word in text


@pytest.mark.e2e
def test_start_now_by_default() -> None:
    before = datetime.now(UTC).replace(microsecond=0)
    result = _run("--stdout", "--count", "1", "--speed", "max")
    stamp = parse_telegram(result.stdout).meter_timestamp
    assert stamp is not None and before <= stamp <= datetime.now(UTC)
