"""`p1-lora bench e2e`: latency and CPU of the real processes, the way users run them.

The simulator's figures (BENCHMARKS.md sections 5 and 6) run the link on a virtual clock inside
one process. This benchmark measures what a user's installation does instead, with only the
radio simulated:

    this process: virtual DSMR 5 meter on a pty (behind a stable link path, at 115200 baud)
        -> p1-lora-tx --radio sim --serial LINK  ->  loopback radio channel (UDP)
        -> p1-lora-rx --radio sim  ->  MQTT broker  ->  this process: an MQTT subscriber

The daemons are separate processes started like their console scripts (`p1lora.*.cli.main`),
each with an empty config file, a fresh key, its own state directory and a free loopback port.
The broker is Mosquitto on a free loopback port when it is installed, else the embedded
amqtt broker (`tools.embedded_broker`, the `demo` extra); the result says which, because it is
on the path.

What is measured, and how:

- **End-to-end latency** of telegram k: from the moment the telegram's last byte was written to
  the pty (the earliest a reader can have all of it) to the moment the meter state with that
  telegram's meter timestamp arrives at the MQTT subscriber. Both instants are
  `time.monotonic()` in this process. Only telegrams written after the first delivery count
  (the cold start is reported separately as "first delivery"); the link delivers the latest
  telegram and skips older ones while the air is busy, so not every telegram has a latency.
- **CPU per telegram** of each daemon: user + system time from /proc/PID/stat, from the moment
  the daemon logged that it runs until the end of the run, divided by the telegrams the meter
  wrote in that span (transmitter: it reads every one) or the meter states that arrived
  (receiver). Start-up (imports, key, state) is reported on its own.
- **Memory**: resident set size (VmRSS) and its peak (VmHWM) from /proc/PID/status at the end.

Linux only (/proc, ptys). Exit codes: 0 done, 1 a measurement failed (the error says which
part), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import re
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from p1lora.common.dsmr_time import parse_timestamp
from p1lora.hardware.realtime import SystemClock
from p1lora.service.keyfile import generate_key, write_key_file
from p1lora.tools.demo.broker import Broker, find_mosquitto, start_embedded, start_mosquitto
from p1lora.tools.demo.processes import (
    Child,
    NotifySocket,
    StartError,
    child_environment,
    python_child,
)
from p1lora.tools.sim import percentile
from p1lora.transmitter.meter_writer import MeterWriter, PtyPort, StableLink
from p1lora.transmitter.virtual_meter import VirtualMeter

__all__ = [
    "BROKERS",
    "DaemonUsage",
    "E2eError",
    "E2eOptions",
    "E2eResult",
    "configure",
    "latency_table",
    "measure",
    "options_from_args",
    "process_cpu_seconds",
    "process_memory_kib",
    "render_text",
    "run",
    "usage_table",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

LOOPBACK = "127.0.0.1"
BROKERS = ("auto", "mosquitto", "embedded")
#: A daemon must log that it runs, and the first telegram must arrive, within these.
START_TIMEOUT_S = 30.0
FIRST_DELIVERY_TIMEOUT_S = 90.0
#: After the meter stops: wait this long for the telegrams still on their way.
SETTLE_S = 3.0
METER_PROFILE = "dsmr5"
METER_START = datetime(2024, 4, 15, 9, 0, tzinfo=UTC)
STOP_TIMEOUT_S = 10.0

_STAMP = re.compile(rb"^0-0:1\.0\.0\((\d{12}[SW])\)", re.MULTILINE)
_EQUIPMENT = re.compile(rb"^0-0:96\.1\.1\(([0-9A-Fa-f]+)\)", re.MULTILINE)


class E2eError(RuntimeError):
    """The run could not produce a trustworthy figure (a daemon did not start, nothing
    arrived, the meter had to drop bytes)."""


@dataclass(frozen=True, slots=True)
class E2eOptions:
    duration_s: float = 60.0
    path_loss_db: float = 100.0
    broker: str = "auto"
    seed: int = 1
    #: Keep the run's directory (logs, link logs) here instead of a removed temporary one.
    workdir: Path | None = None


@dataclass(frozen=True, slots=True)
class DaemonUsage:
    """One daemon's resource use over the run (see the module docstring)."""

    name: str
    startup_cpu_s: float
    cpu_s: float
    rss_kib: int
    peak_rss_kib: int


@dataclass
class E2eResult:
    broker: str
    measured_s: float
    first_delivery_s: float
    written: int
    delivered: int
    latencies_s: list[float] = field(default_factory=list)
    tx: DaemonUsage | None = None
    rx: DaemonUsage | None = None

    def latency(self, fraction: float) -> float | None:
        return percentile(self.latencies_s, fraction)


# ---------------------------------------------------------------------------- /proc


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` (its threads included), from /proc/PID/stat."""
    text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    # The command name (field 2) is in parentheses and may contain spaces: split after it.
    fields = text[text.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of proc(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def process_memory_kib(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of process `pid` in KiB, from /proc/PID/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text(encoding="ascii").splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0])
    return values.get("VmRSS", 0), values.get("VmHWM", 0)


# ---------------------------------------------------------------------------- the meter side


def _epoch_of_telegram(raw: bytes) -> int:
    found = _STAMP.search(raw)
    moment = parse_timestamp(found.group(1).decode()) if found is not None else None
    if moment is None:
        raise E2eError(f"the virtual meter wrote a telegram without a timestamp: {raw[:60]!r}")
    return int(moment.timestamp())


class _TimedPty:
    """The pty sink of the meter writer, noting when each telegram's last byte was written."""

    def __init__(self, port: PtyPort) -> None:
        self.port = port
        self._lock = threading.Lock()
        self._written = 0
        self._ends: list[tuple[int, int]] = []  # (byte offset of a telegram's end, epoch)
        self.completed: dict[int, float] = {}  # meter epoch -> monotonic time of its last byte

    def expect(self, raw: bytes) -> None:
        with self._lock:
            end = (self._ends[-1][0] if self._ends else self._written) + len(raw)
            self._ends.append((end, _epoch_of_telegram(raw)))

    def write(self, data: bytes) -> int:
        written = self.port.write(data)
        now = time.monotonic()
        with self._lock:
            self._written += written
            while self._ends and self._ends[0][0] <= self._written:
                self.completed[self._ends.pop(0)[1]] = now
        return written

    def telegram_boundary(self, now: float) -> None:
        self.port.telegram_boundary(now)

    def snapshot(self) -> dict[int, float]:
        with self._lock:
            return dict(self.completed)


class _Meter:
    """A virtual meter writing to a pty in a thread, at the real interval and baud rate."""

    def __init__(self, link: Path, seed: int) -> None:
        self.meter = VirtualMeter(METER_PROFILE, seed=seed, start=METER_START)
        first = self.meter.telegram_at(0.0)
        equipment = _EQUIPMENT.search(first)
        if equipment is None:
            raise E2eError("the virtual meter's telegram has no equipment id")
        self.topic_part = f"meter_{equipment.group(1).decode().lower()}"
        self._first = first
        self.port = PtyPort()
        self.link = StableLink(link)
        self.link.point_to(self.port.path)
        self.sink = _TimedPty(self.port)
        self.writer = MeterWriter(self.sink, self.meter.serial_settings, SystemClock())
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-meter", daemon=True)

    def _events(self) -> Iterator[tuple[float, bytes]]:
        t, raw = 0.0, self._first
        while True:
            self.sink.expect(raw)
            yield t, raw
            t, raw = self.meter.next_telegram()

    def _run(self) -> None:
        self.writer.run(self._events(), self._stop)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def close(self) -> None:
        self.stop()
        self.link.remove()
        self.port.close()


# ---------------------------------------------------------------------------- the subscriber


class _Subscriber:
    """An MQTT client on the meter's state topic: arrival time per meter timestamp."""

    def __init__(self, broker: Broker, topic: str) -> None:
        self.topic = topic
        self.arrivals: dict[int, float] = {}
        self.messages = 0
        self.problems: list[str] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"p1lora-bench-{os.getpid()}"
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise E2eError(f"could not subscribe at the broker {broker.label}")

    def _on_connect(self, client: mqtt.Client, *_: Any) -> None:
        client.subscribe(self.topic, qos=0)

    def _on_subscribe(self, *_: Any) -> None:
        self._subscribed.set()

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        now = time.monotonic()
        try:
            stamp = json.loads(message.payload)["timestamp"]
            epoch = int(datetime.fromisoformat(stamp).timestamp())
        except (ValueError, KeyError, TypeError) as exc:
            with self._lock:
                self.problems.append(f"{message.topic}: {exc}")
            return
        with self._lock:
            self.messages += 1
            self.arrivals.setdefault(epoch, now)

    def snapshot(self) -> dict[int, float]:
        with self._lock:
            return dict(self.arrivals)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.disconnect()
        self.client.loop_stop()


# ---------------------------------------------------------------------------- the run


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _start_broker(choice: str, workdir: Path) -> Broker:
    executable = find_mosquitto()
    if choice == "mosquitto" and executable is None:
        raise E2eError("mosquitto not found ($P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto)")
    try:
        if executable is not None and choice != "embedded":
            return start_mosquitto(executable, workdir)
        return start_embedded()
    except StartError as exc:
        raise E2eError(str(exc)) from None


def _wait_running(child: Child, stop_at: float) -> float:
    """Wait for the daemon's `READY=1` (systemd's notify protocol); returns its CPU seconds at
    that moment."""
    while True:
        if child.ready():
            assert child.process is not None
            return process_cpu_seconds(child.process.pid)
        code = child.exit_code()
        if code is not None or time.monotonic() > stop_at:
            child.tail.lines()
            tail = " | ".join(list(child.tail.recent)[-5:])
            what = f"exited with code {code}" if code is not None else "did not start in time"
            raise E2eError(f"{child.name} {what}: {tail}")
        time.sleep(0.05)


def _usage(child: Child, startup_cpu_s: float) -> DaemonUsage:
    assert child.process is not None
    pid = child.process.pid
    rss, peak = process_memory_kib(pid)
    return DaemonUsage(child.name, startup_cpu_s, process_cpu_seconds(pid), rss, peak)


def _daemon_args(workdir: Path, role: str, sim_port: int, path_loss_db: float) -> list[str]:
    return [
        "--config",
        str(workdir / "empty.toml"),
        "--radio",
        "sim",
        "--sim-port",
        str(sim_port),
        "--sim-path-loss",
        f"{path_loss_db:g}",
        "--key-file",
        str(workdir / "key"),
        "--state-dir",
        str(workdir / role),
    ]


def measure(options: E2eOptions) -> E2eResult:
    """Run the installation for `options.duration_s` after its first delivery (raises
    `E2eError`)."""
    if options.workdir is not None:
        options.workdir.mkdir(parents=True, exist_ok=True)
        return _measure_in(options, options.workdir)
    workdir = Path(tempfile.mkdtemp(prefix="p1lora-bench-e2e-"))
    try:
        return _measure_in(options, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _measure_in(options: E2eOptions, workdir: Path) -> E2eResult:
    write_key_file(workdir / "key", generate_key(), comment="p1-lora bench key (throwaway)")
    (workdir / "empty.toml").write_text("# bench: every option is a flag\n", encoding="utf-8")
    env = child_environment()
    # Latency is measured per telegram on the meter's state topic: every telegram published.
    env["P1LORA_HOMEASSISTANT_STATE_INTERVAL"] = "0"
    sim_port = _free_udp_port()
    with contextlib.ExitStack() as stack:
        broker = _start_broker(options.broker, workdir)
        stack.callback(broker.stop, lambda: False)
        meter = _Meter(workdir / "p1", options.seed)
        stack.callback(meter.close)
        subscriber = _Subscriber(broker, f"p1lora/{meter.topic_part}/state")
        stack.callback(subscriber.close)
        rx_args = _daemon_args(workdir, "rx", sim_port, options.path_loss_db)
        rx_args += ["--mqtt-host", broker.host, "--mqtt-port", str(broker.port)]
        tx_args = _daemon_args(workdir, "tx", sim_port, options.path_loss_db)
        tx_args += ["--serial", str(meter.link.path)]
        startup: dict[str, float] = {}
        children: list[Child] = []
        # The receiver first, as the demo and the systemd units do: it hosts the channel.
        for program, args in (("p1-lora-rx", rx_args), ("p1-lora-tx", tx_args)):
            child = python_child(
                program,
                program,
                args,
                log_path=workdir / f"{program}.log",
                env=env,
                cwd=workdir,
                notify=NotifySocket(program),
            )
            stack.callback(child.close)
            child.start()
            children.append(child)
            stack.callback(child.stop, STOP_TIMEOUT_S, lambda: False)
            startup[program] = _wait_running(child, time.monotonic() + START_TIMEOUT_S)
        rx, tx = children
        started = time.monotonic()
        meter.start()
        deadline = started + FIRST_DELIVERY_TIMEOUT_S
        while not subscriber.snapshot():
            for child in children:
                if child.exit_code() is not None:
                    raise E2eError(f"{child.name} exited with code {child.exit_code()}")
            if time.monotonic() > deadline:
                raise E2eError(
                    f"no telegram reached the MQTT subscriber within {FIRST_DELIVERY_TIMEOUT_S:g} s"
                )
            time.sleep(0.02)
        first = min(subscriber.snapshot().values())
        logger.info(
            "e2e: first delivery after %.1f s; measuring %g s", first - started, options.duration_s
        )
        time.sleep(max(0.0, first + options.duration_s - time.monotonic()))
        meter.stop()
        _settle(subscriber)
        usage = {child.name: _usage(child, startup[child.name]) for child in children}
        for child in children:
            if child.exit_code() is not None:
                raise E2eError(f"{child.name} exited with code {child.exit_code()} during the run")
        if meter.writer.stats.bytes_dropped or meter.port.flushes:
            raise E2eError("the transmitter did not keep up: the meter dropped bytes")
        written = meter.sink.snapshot()
        arrivals = subscriber.snapshot()
        if subscriber.problems:
            raise E2eError(f"unreadable state message: {subscriber.problems[0]}")
        unknown = sorted(set(arrivals) - set(written))
        if unknown:
            raise E2eError(f"a state for a telegram the meter never wrote: epoch {unknown[0]}")
        latencies = [
            arrivals[epoch] - at
            for epoch, at in sorted(written.items())
            if at > first and epoch in arrivals
        ]
        return E2eResult(
            broker=broker.label.split(" on ")[0],
            measured_s=time.monotonic() - first,
            first_delivery_s=first - started,
            written=len(written),
            delivered=len(arrivals),
            latencies_s=latencies,
            tx=usage[tx.name],
            rx=usage[rx.name],
        )
    raise AssertionError("unreachable")  # pragma: no cover - the with block returns


def _settle(subscriber: _Subscriber) -> None:
    """Wait until no state arrived for `SETTLE_S` / 3 (at most `SETTLE_S`)."""
    deadline = time.monotonic() + SETTLE_S
    count = -1
    while time.monotonic() < deadline:
        now = len(subscriber.snapshot())
        if now == count:
            return
        count = now
        time.sleep(SETTLE_S / 3)


# ---------------------------------------------------------------------------- output


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:.0f}"


def _per_telegram_ms(cpu_s: float, count: int) -> str:
    return "-" if count <= 0 else f"{cpu_s / count * 1000:.2f}"


def latency_table(result: E2eResult) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    headers = (
        "broker",
        "telegrams written (count)",
        "states received (count)",
        "first delivery (s)",
        "latency samples (count)",
        "latency p50 (ms)",
        "latency p95 (ms)",
        "latency max (ms)",
    )
    row = (
        result.broker,
        str(result.written),
        str(result.delivered),
        f"{result.first_delivery_s:.1f}",
        str(len(result.latencies_s)),
        _ms(result.latency(0.5)),
        _ms(result.latency(0.95)),
        _ms(max(result.latencies_s, default=None)),
    )
    return headers, [row]


def usage_table(result: E2eResult) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    headers: tuple[str, ...] = (
        "daemon",
        "telegrams (count)",
        "CPU after start-up (s)",
        "CPU per telegram (ms)",
        "start-up CPU (s)",
        "RSS (MiB)",
        "peak RSS (MiB)",
    )
    rows: list[tuple[str, ...]] = []
    for usage, count in ((result.tx, result.written), (result.rx, result.delivered)):
        if usage is None:
            continue
        cpu = usage.cpu_s - usage.startup_cpu_s
        rows.append(
            (
                usage.name,
                str(count),
                f"{cpu:.2f}",
                _per_telegram_ms(cpu, count),
                f"{usage.startup_cpu_s:.2f}",
                f"{usage.rss_kib / 1024:.1f}",
                f"{usage.peak_rss_kib / 1024:.1f}",
            )
        )
    return headers, rows


def render_text(result: E2eResult) -> str:
    lines: list[str] = []
    for headers, rows in (latency_table(result), usage_table(result)):
        lines.append("| " + " | ".join(headers) + " |")
        lines.append("|" + "|".join("---" for _ in headers) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        lines.append("")
    return "\n".join(lines)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `p1-lora bench e2e`."""
    parser.description = (
        "Run the virtual meter (pty), p1-lora-tx and p1-lora-rx as real processes with the "
        "radio simulated on loopback, and a broker (mosquitto, else the embedded one); print "
        "end-to-end latency (pty write -> MQTT state) and each daemon's CPU per telegram and "
        "memory. Linux only."
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=60.0,
        metavar="S",
        help="seconds to measure after the first delivery (default 60, at least 2)",
    )
    parser.add_argument(
        "--broker", choices=BROKERS, default="auto", help="which broker to start (default auto)"
    )
    parser.add_argument(
        "--path-loss",
        type=float,
        default=100.0,
        metavar="DB",
        help="simulated path loss in dB (default 100: a good link)",
    )
    parser.add_argument("--seed", type=int, default=1, help="virtual meter seed (default 1)")
    parser.add_argument(
        "--keep",
        type=Path,
        metavar="DIR",
        help="run in DIR and keep the logs there (default: a temporary directory, removed)",
    )


def options_from_args(args: argparse.Namespace) -> E2eOptions:
    """Checked options (ValueError with the message for the user)."""
    if not args.duration >= 2.0 or args.duration > 86_400:
        raise ValueError(f"--duration must be between 2 and 86400 s, got {args.duration:g}")
    if not 0.0 <= args.path_loss <= 200.0:
        raise ValueError(f"--path-loss must be between 0 and 200 dB, got {args.path_loss:g}")
    if args.keep is not None and args.keep.exists() and not args.keep.is_dir():
        raise ValueError(f"--keep {args.keep} exists and is not a directory")
    return E2eOptions(args.duration, args.path_loss, args.broker, args.seed, args.keep)


def run(args: argparse.Namespace) -> int:
    try:
        options = options_from_args(args)
    except ValueError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    if not Path("/proc/self/stat").exists():
        logger.error("this benchmark reads /proc: it runs on Linux only")
        return EXIT_USAGE
    try:
        result = measure(options)
    except (E2eError, OSError) as exc:
        logger.error("end-to-end benchmark failed: %s", exc)
        return EXIT_FAILED
    sys.stdout.write(render_text(result))
    return EXIT_OK
