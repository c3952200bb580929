"""Harness for the process-level fault and attack suites (issue 7): the product as users run it.

`FaultRig` starts the real processes of one installation, each on its own loopback resources:

- `p1-lora meter` on a pty behind a stable `--link` path (the P1 cable), a virtual DSMR 5 meter
  with a fixed seed and start time, at `METER_SPEED` times real time;
- `p1-lora-rx --radio sim` publishing to the Mosquitto of the `mqtt_broker` fixture, with the raw
  telegram server on a free port;
- `p1-lora-tx --radio sim --serial LINK`;
- a `ChannelController`: the test process binds the run's `--sim-port` *first*, so it is the
  hub of the loopback radio channel and both daemons join it as members. Every frame between
  them crosses the controller, which records it and can raise its path loss, drop it, inject
  frames of its own (replays, forgeries) and hang a member's emulated chip.

What the rig observes, for the assertions every scenario shares:

- an `MqttCollector` on `p1lora/#` records every state message;
- a `RawTap` on the raw telegram server records every rebuilt telegram;
- `MeterOracle` regenerates the meter's stream from the same seed and start (the virtual meter
  is deterministic), so every published value can be compared with what the meter really sent
  at that meter timestamp, and every rebuilt telegram with the meter's bytes;
- each process's stderr is in its own log file (`Proc.log()`, `Proc.wait_log`).

`FaultRig.verify()` is the invariant: every meter state published equals the meter's values for
its timestamp (so no value came from a bad telegram), energy registers and timestamps never go
back, every raw telegram is byte-identical to the meter's. Waits poll conditions with generous
deadlines (`TIMEOUT`); nothing sleeps for correctness.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from p1lora.common.dsmr_time import parse_timestamp
from p1lora.hardware.realtime import ThreadScheduler
from p1lora.hardware.udp_channel import RelayedFrame, UdpChannel, UdpSimOptions
from p1lora.service.keyfile import write_key_file
from p1lora.transmitter.virtual_meter import MeterReading, VirtualMeter
from tests.helpers_daemons import (
    MODULES,
    Proc,
    ProcessGroup,
    clean_env,
    free_tcp_port,
    free_udp_port,
)
from tests.helpers_mqtt import MqttCollector, wait_until
from tests.mqtt_broker import MosquittoBroker

#: Generous deadline for one condition (a slow CI machine with two workers; the link's own
#: recovery times are tens of seconds at most, and a wait ends as soon as its condition holds).
TIMEOUT = 60.0
#: Deadline for conditions that need the link to re-tune across several settings (the SF12
#: scenario: frames of 1-2 s each, duty-cycle pauses, probes).
SLOW_TIMEOUT = 150.0

METER_SEED = 7
#: Late morning in spring: solar export and import both move, so all four registers change.
METER_START = datetime(2024, 4, 15, 9, 0, tzinfo=UTC)
#: Meter time runs this many times faster than real time: registers change visibly within a
#: test, and the link's latest-wins policy is exercised (it delivers a few telegrams a second).
METER_SPEED = 10.0

#: Energy registers (kWh) that must never decrease; `net_energy` (import - export) may.
ENERGY_KEYS = (
    "electricity_used_tariff_1",
    "electricity_used_tariff_2",
    "electricity_delivered_tariff_1",
    "electricity_delivered_tariff_2",
    "total_energy_import",
    "total_energy_export",
)

BRIDGE_STATE = "p1lora/bridge/state"

_KILO = Decimal(1000)


def _kilo(value: int) -> Decimal:
    return Decimal(value) / _KILO


def _voltage(phase: int) -> Callable[[MeterReading], Decimal]:
    return lambda r: Decimal(r.voltages_dv[phase]) / 10


def _phase_power(phase: int, sign: int) -> Callable[[MeterReading], Decimal]:
    return lambda r: _kilo(max(sign * r.phase_power_w[phase], 0))


#: Published state key -> its exact value from the meter's truth (`MeterReading`).
EXPECTED_FIELDS: dict[str, Callable[[MeterReading], Decimal]] = {
    "electricity_used_tariff_1": lambda r: _kilo(r.registers_wh[0]),
    "electricity_used_tariff_2": lambda r: _kilo(r.registers_wh[1]),
    "electricity_delivered_tariff_1": lambda r: _kilo(r.registers_wh[2]),
    "electricity_delivered_tariff_2": lambda r: _kilo(r.registers_wh[3]),
    "total_energy_import": lambda r: _kilo(r.registers_wh[0] + r.registers_wh[1]),
    "total_energy_export": lambda r: _kilo(r.registers_wh[2] + r.registers_wh[3]),
    "net_energy": lambda r: _kilo(sum(r.registers_wh[:2]) - sum(r.registers_wh[2:])),
    "current_electricity_usage": lambda r: _kilo(r.import_w),
    "current_electricity_delivery": lambda r: _kilo(r.export_w),
    **{f"instantaneous_voltage_l{n + 1}": _voltage(n) for n in range(3)},
    **{f"instantaneous_active_power_l{n + 1}_positive": _phase_power(n, 1) for n in range(3)},
    **{f"instantaneous_active_power_l{n + 1}_negative": _phase_power(n, -1) for n in range(3)},
}

# A whole telegram: header to the end line (DSMR 2.2/3 telegrams end in `!` without a CRC).
_TELEGRAM = re.compile(rb"/[^\r\n]*\r\n.*?\n![0-9A-F]{0,4}\r\n", re.DOTALL)
_STAMP = re.compile(rb"^0-0:1\.0\.0\((\d{12}[SW])\)", re.MULTILINE)
_EQUIPMENT = re.compile(rb"^0-0:96\.1\.1\(([0-9A-F]+)\)", re.MULTILINE)
_GAS_ID = re.compile(rb"^0-1:96\.1\.0\(([0-9A-F]+)\)", re.MULTILINE)


# ------------------------------------------------------------------------------ the meter's truth


class MeterOracle:
    """The virtual meter's stream regenerated in the test: telegram k and its truth, by k.

    `p1-lora meter --seed S --start T` writes telegram k (meter time T + k s) with the bytes
    `VirtualMeter(seed=S, start=T)` produces; the fault injector has its own random stream, so
    faults never change what a good telegram says. Generated lazily and kept (about 1 KB each).
    """

    def __init__(
        self, seed: int = METER_SEED, start: datetime = METER_START, profile: str = "dsmr5"
    ) -> None:
        self.seed = seed
        self.start = start
        self.profile = profile
        self._meter = VirtualMeter(profile, seed=seed, start=start)
        self.interval = self._meter.interval
        self._start_epoch = int(start.timestamp())
        self._telegrams: list[bytes] = []
        self._readings: list[MeterReading] = []
        self._gas: dict[int, int] = {}
        first = self.telegram(0)
        equipment, gas = _EQUIPMENT.search(first), _GAS_ID.search(first)
        assert equipment is not None and gas is not None, first
        self.meter_topic = f"p1lora/meter_{equipment.group(1).decode().lower()}/state"
        self.gas_topic = f"p1lora/mbus_{gas.group(1).decode().lower()}/state"

    def _extend(self, k: int) -> None:
        if k > 10_000_000:
            raise ValueError(f"telegram {k} is far beyond any test run")
        while len(self._telegrams) <= k:
            _, raw = self._meter.next_telegram()
            reading = self._meter.reading
            self._telegrams.append(raw)
            self._readings.append(reading)
            stamp = parse_timestamp(reading.gas_timestamp)
            assert stamp is not None
            self._gas.setdefault(int(stamp.timestamp()), reading.gas_shown_liters)

    def telegram(self, k: int) -> bytes:
        self._extend(k)
        return self._telegrams[k]

    def reading(self, k: int) -> MeterReading:
        self._extend(k)
        return self._readings[k]

    def index_of(self, moment: datetime) -> int:
        """k of the telegram with meter time `moment` (ValueError if the meter never had it)."""
        offset = int(moment.timestamp()) - self._start_epoch
        k, rest = divmod(offset, int(self.interval))
        if k < 0 or rest:
            raise ValueError(f"{moment.isoformat()} is not a telegram time of this meter")
        return k

    def index_of_telegram(self, raw: bytes) -> int:
        found = _STAMP.search(raw)
        if found is None:
            raise ValueError(f"no timestamp in telegram {raw[:80]!r}")
        moment = parse_timestamp(found.group(1).decode())
        assert moment is not None
        return self.index_of(moment)

    def gas_liters(self, moment: datetime) -> int | None:
        """The gas register the meter showed with M-Bus timestamp `moment` (generated so far)."""
        return self._gas.get(int(moment.timestamp()))

    def capture(self, first: int, count: int) -> bytes:
        """Telegrams first .. first+count-1 as a capture file (`p1-lora meter --replay`)."""
        return b"".join(self.telegram(k) for k in range(first, first + count))


# ------------------------------------------------------------------------------ the radio channel


def sender_pid(frame: RelayedFrame) -> int | None:
    """The process id in a loopback-channel node id (`<pid>-<random>`), if it has one."""
    head = frame.sender.split("-", 1)[0]
    return int(head) if head.isdigit() else None


@dataclass(frozen=True)
class Heard:
    """A frame the hub relayed: when (monotonic), and the frame as the members got it."""

    at: float
    frame: RelayedFrame
    dropped: bool


class ChannelController:
    """The test process as the hub of the loopback radio channel (see the module docstring).

    Create it before any daemon starts on `port`: the first process to bind the port is the
    hub. Thread-safe: the relay hook runs on the channel's network thread.
    """

    def __init__(self, port: int, *, keep: int = 5000) -> None:
        self.port = port
        self.scheduler = ThreadScheduler(f"fault-hub-{port}")
        self.channel = UdpChannel(self.scheduler, UdpSimOptions(port=port))
        if self.channel.role != "hub":
            self.close()
            raise RuntimeError(f"UDP port {port} already has a hub; the test cannot own it")
        self._lock = threading.Lock()
        self._path_loss_db: float | None = None
        self._drop: Callable[[RelayedFrame], bool] | None = None
        self._heard: deque[Heard] = deque(maxlen=keep)
        self.attacker = f"attacker-{uuid.uuid4().hex[:6]}"
        self.channel.relay_hook = self._hook

    # -- what crosses the hub

    def _hook(self, frame: RelayedFrame) -> RelayedFrame | None:
        with self._lock:
            loss, drop = self._path_loss_db, self._drop
        if loss is not None:
            frame = replace(frame, path_loss_db=max(loss, frame.path_loss_db or 0.0))
        dropped = drop is not None and drop(frame)
        with self._lock:
            self._heard.append(Heard(time.monotonic(), frame, dropped))
        return None if dropped else frame

    def heard(self, *, since: float = 0.0, pid: int | None = None) -> list[Heard]:
        """Frames relayed (or dropped) since monotonic time `since`, from process `pid`."""
        with self._lock:
            items = list(self._heard)
        return [h for h in items if h.at >= since and (pid is None or sender_pid(h.frame) == pid)]

    # -- channel conditions

    @property
    def path_loss_db(self) -> float | None:
        with self._lock:
            return self._path_loss_db

    def set_path_loss(self, loss_db: float | None) -> None:
        """Every relayed frame crosses at least this path loss (None: the daemons' own)."""
        with self._lock:
            self._path_loss_db = loss_db

    def ramp_path_loss(self, start_db: float, end_db: float, seconds: float) -> None:
        """Change the path loss linearly over `seconds` (stimulus pacing, not a correctness
        wait: the link is observed afterwards with condition waits)."""
        steps = max(1, round(seconds / 0.25))
        for step in range(steps + 1):
            self.set_path_loss(start_db + (end_db - start_db) * step / steps)
            if step < steps:
                time.sleep(seconds / steps)

    def drop_when(self, predicate: Callable[[RelayedFrame], bool] | None) -> None:
        """Drop every frame for which `predicate` is true (None: drop nothing)."""
        with self._lock:
            self._drop = predicate

    # -- a third radio

    def inject(self, frame: RelayedFrame, payload: bytes | None = None) -> None:
        """Send `frame` (optionally with another payload) as the attacker node: both daemons
        hear it like any frame on the air at the frame's settings."""
        forged = replace(
            frame,
            sender=self.attacker,
            frame_id=int.from_bytes(os.urandom(3), "big"),
            payload=frame.payload if payload is None else payload,
        )
        self.channel.send_frame(forged)

    def hang_tx(self, pid: int) -> None:
        """Make the emulated chip of daemon `pid` hang on its next transmission."""
        self.channel.send_fault(pid, hung_tx=True)

    def wait_members(self, count: int, timeout: float = TIMEOUT) -> None:
        assert wait_until(lambda: self.channel.member_count >= count, timeout), (
            f"{self.channel.member_count} of {count} processes joined the hub on {self.port}"
        )

    def close(self) -> None:
        self.channel.close()
        self.scheduler.close()


# ------------------------------------------------------------------------------ the raw telegrams


class RawTap:
    """A client of the receiver's raw telegram server that survives receiver restarts."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.telegrams: list[bytes] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="raw-tap", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with socket.create_connection((self.host, self.port), timeout=1.0) as sock:
                    sock.settimeout(0.2)
                    self.connections += 1
                    self._read(sock)
            except OSError:
                pass
            self._stop.wait(0.1)

    def _read(self, sock: socket.socket) -> None:
        data = b""
        while not self._stop.is_set():
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                return
            data += chunk
            end = 0
            for match in _TELEGRAM.finditer(data):
                with self._lock:
                    self.telegrams.append(match.group(0))
                end = match.end()
            data = data[end:]

    def count(self) -> int:
        with self._lock:
            return len(self.telegrams)

    def snapshot(self) -> list[bytes]:
        with self._lock:
            return list(self.telegrams)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(3)


# ------------------------------------------------------------------------------ processes


class PipedProc(Proc):
    """A `Proc` whose stderr reaches its log file through a pipe, optionally with limits.

    A process under RLIMIT_FSIZE=0 cannot write any regular file, not even an inherited stderr
    log, so the test process copies its stderr into the log file instead.
    """

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        max_file_size: int | None = None,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        self._log = self.log_path.open("wb")

        def limit() -> None:
            if max_file_size is not None:
                resource.setrlimit(resource.RLIMIT_FSIZE, (max_file_size, max_file_size))

        self.process = subprocess.Popen(
            [sys.executable, "-m", MODULES[args[0]], *args[1:]],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env=env if env is not None else clean_env(workdir),
            cwd=workdir,
            preexec_fn=limit,  # noqa: PLW1509 - only setrlimit, before exec
        )
        self._pump = threading.Thread(target=self._copy, name=f"log-{name}", daemon=True)
        self._pump.start()

    def _copy(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        with contextlib.suppress(OSError, ValueError):
            for line in iter(stream.readline, b""):
                self._log.write(line)
                self._log.flush()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        if self.running:
            self.process.kill()
            self.process.wait(10)
        self._pump.join(5)
        with contextlib.suppress(OSError, ValueError):
            self._log.close()


# ------------------------------------------------------------------------------ the rig


@dataclass(frozen=True)
class MeterState:
    """One published meter state message, parsed exactly (`Decimal` numbers)."""

    index: int  # position among the meter state messages
    k: int  # the meter's telegram number (from the state's timestamp)
    values: dict[str, Any]


@dataclass
class Verified:
    """What `FaultRig.verify` checked."""

    states: int = 0
    distinct: int = 0
    last_k: int = -1
    gas_states: int = 0
    raw_telegrams: int = 0
    ks: list[int] = field(default_factory=list)


class FaultRig:
    """One installation as real processes; see the module docstring."""

    def __init__(self, workdir: Path, broker: MosquittoBroker, profile: str = "dsmr5") -> None:
        self.workdir = workdir
        self.broker = broker
        self.key = workdir / "key"
        write_key_file(self.key, os.urandom(32))
        self.sim_port = free_udp_port()
        self.raw_port = free_tcp_port()
        self.link = workdir / "p1"
        self.rx_state = workdir / "rx-state"
        self.tx_state = workdir / "tx-state"
        self.oracle = MeterOracle(profile=profile)
        self.group = ProcessGroup(workdir)
        self.channel = ChannelController(self.sim_port)
        self.collector = MqttCollector(broker.host, broker.port, ["p1lora/#"])
        self.raw = RawTap("127.0.0.1", self.raw_port)
        self.meter: Proc | None = None
        self.rx: Proc | None = None
        self.tx: Proc | None = None

    # -- processes

    def start_meter(self, *extra: str) -> Proc:
        """The virtual meter on a pty behind the stable link (the P1 cable plugged in)."""
        self.meter, _ = self.group.meter(
            self.link,
            "--profile",
            self.oracle.profile,
            "--seed",
            str(self.oracle.seed),
            "--start",
            self.oracle.start.isoformat(),
            "--speed",
            f"{METER_SPEED:g}",
            *extra,
        )
        return self.meter

    def start_meter_at(self, k: int, count: int = 6000) -> Proc:
        """A meter that carries on at telegram `k` (a replugged cable: the meter kept counting
        while the cable was out): a byte-exact replay of the oracle's telegrams k onwards."""
        capture = self.workdir / f"meter-from-{k}.txt"
        capture.write_bytes(self.oracle.capture(k, count))
        self.meter, _ = self.group.meter(
            self.link, "--replay", str(capture), "--speed", f"{METER_SPEED:g}"
        )
        return self.meter

    def stop_meter(self) -> int:
        """Unplug: SIGTERM the meter (it removes the link and closes the pty); returns the
        number of telegrams it wrote."""
        assert self.meter is not None
        meter, self.meter = self.meter, None
        assert meter.stop() == 0, meter.log()
        found = re.search(r"meter stopped: (\d+) telegram\(s\)", meter.log())
        assert found is not None, meter.log()
        assert not self.link.exists(), "the meter left its link behind"
        return int(found.group(1))

    def _daemon(
        self,
        name: str,
        command: str,
        args: Sequence[str],
        max_file_size: int | None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        if max_file_size is None:
            return self.group.start(name, command, *args, env=env)
        proc = PipedProc(name, [command, *args], self.workdir, env=env, max_file_size=max_file_size)
        self.group.procs.append(proc)
        return proc

    def start_rx(
        self,
        *extra: str,
        name: str = "rx",
        state_dir: Path | str | None = None,
        max_file_size: int | None = None,
    ) -> Proc:
        args = [
            "--radio",
            "sim",
            "--sim-port",
            str(self.sim_port),
            "--mqtt-host",
            self.broker.host,
            "--mqtt-port",
            str(self.broker.port),
            "--raw-host",
            "127.0.0.1",
            "--raw-port",
            str(self.raw_port),
            "--key-file",
            str(self.key),
            "--state-dir",
            str(state_dir or self.rx_state),
            *extra,
        ]
        # The oracle checks the state of every delivered telegram: publish each one.
        env = clean_env(self.workdir, P1LORA_HOMEASSISTANT_STATE_INTERVAL="0")
        self.rx = self._daemon(name, "p1-lora-rx", args, max_file_size, env)
        return self.rx

    def start_tx(
        self,
        *extra: str,
        name: str = "tx",
        state_dir: Path | str | None = None,
        max_file_size: int | None = None,
    ) -> Proc:
        args = [
            "--radio",
            "sim",
            "--sim-port",
            str(self.sim_port),
            "--serial",
            str(self.link),
            "--key-file",
            str(self.key),
            "--state-dir",
            str(state_dir or self.tx_state),
            *extra,
        ]
        self.tx = self._daemon(name, "p1-lora-tx", args, max_file_size)
        return self.tx

    def start_all(
        self,
        *meter_extra: str,
        rx_state: Path | str | None = None,
        tx_state: Path | str | None = None,
        max_file_size: int | None = None,
    ) -> None:
        """Meter, receiver, transmitter; returns once telegrams reach MQTT."""
        self.start_meter(*meter_extra)
        rx = self.start_rx(state_dir=rx_state, max_file_size=max_file_size)
        rx.wait_log(r"p1-lora-rx running", timeout=TIMEOUT)
        self.start_tx(state_dir=tx_state, max_file_size=max_file_size)
        self.channel.wait_members(2)
        rx.wait_log(r"first telegram delivered", timeout=TIMEOUT)
        self.wait_states(3)

    @staticmethod
    def kill(proc: Proc) -> int:
        """SIGKILL (a crash, a power cut of that process): no orderly shutdown at all."""
        proc.signal(signal.SIGKILL)
        return proc.wait()

    # -- observations

    def meter_states(self) -> list[MeterState]:
        states = []
        for index, message in enumerate(self.collector.on(self.oracle.meter_topic)):
            values = json.loads(message.payload, parse_float=Decimal)
            moment = datetime.fromisoformat(values["timestamp"])
            states.append(MeterState(index, self.oracle.index_of(moment), values))
        return states

    def state_count(self) -> int:
        return len(self.collector.on(self.oracle.meter_topic))

    def wait_states(
        self, more: int, *, after: int | None = None, timeout: float = TIMEOUT, what: str = ""
    ) -> None:
        """Wait until `more` meter states beyond `after` (default: now) have been published."""
        base = self.state_count() if after is None else after
        if not wait_until(lambda: self.state_count() >= base + more, timeout):
            raise AssertionError(
                f"{self.state_count() - base} of {more} meter states published within "
                f"{timeout:g} s{' ' + what if what else ''}\n{self.logs_tail()}"
            )

    def wait_states_from(self, k: int, more: int = 1, timeout: float = TIMEOUT) -> None:
        """Wait until `more` meter states of telegrams k or later have been published."""

        def enough() -> bool:
            return sum(1 for s in self.meter_states() if s.k >= k) >= more

        if not wait_until(enough, timeout):
            last = [s.k for s in self.meter_states()][-5:]
            raise AssertionError(
                f"no {more} meter states of telegram {k} or later within {timeout:g} s "
                f"(last: {last})\n{self.logs_tail()}"
            )

    def bridge_count(self) -> int:
        return len(self.collector.on(BRIDGE_STATE))

    def bridge(self, *, after: int = 0) -> dict[str, Any]:
        """The bridge's latest diagnostics state ({} before the first, or when none was
        published after the first `after` ones)."""
        messages = self.collector.on(BRIDGE_STATE)[after:]
        return json.loads(messages[-1].payload) if messages else {}

    def wait_bridge(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        what: str,
        timeout: float = TIMEOUT,
        *,
        after: int = 0,
    ) -> dict[str, Any]:
        """Wait for a bridge state (among those after the first `after`) matching `predicate`;
        returns the latest one."""
        if not wait_until(lambda: predicate(self.bridge(after=after)), timeout):
            raise AssertionError(
                f"bridge diagnostics never showed {what} within {timeout:g} s; last: "
                f"{self.bridge()}\n{self.logs_tail()}"
            )
        return self.bridge(after=after)

    def logs_tail(self, chars: int = 2500) -> str:
        parts = []
        for proc in (self.tx, self.rx):
            if proc is not None:
                parts.append(f"--- {proc.name} log (tail):\n{proc.log()[-chars:]}")
        return "\n".join(parts)

    # -- the invariant

    def verify(self) -> Verified:
        """Every published value is the meter's, nothing goes back, raw telegrams are exact."""
        result = Verified()
        previous: dict[str, Decimal] = {}
        last_k = -1
        for state in self.meter_states():
            reading = self.oracle.reading(state.k)
            for key, expected in EXPECTED_FIELDS.items():
                got = state.values.get(key)
                assert got == expected(reading), (
                    f"meter state #{state.index} (telegram {state.k}, {reading.timestamp}): "
                    f"{key} = {got}, the meter said {expected(reading)}"
                )
            for key in ENERGY_KEYS:
                value = state.values[key]
                assert value >= previous.get(key, value), (
                    f"meter state #{state.index}: {key} went back from {previous[key]} to {value}"
                )
                previous[key] = value
            assert state.k >= last_k, (
                f"meter state #{state.index}: telegram {state.k} published after telegram {last_k}"
            )
            last_k = state.k
            result.ks.append(state.k)
        result.states = len(result.ks)
        result.distinct = len(set(result.ks))
        result.last_k = last_k
        gas_previous: Decimal | None = None
        for message in self.collector.on(self.oracle.gas_topic):
            values = json.loads(message.payload, parse_float=Decimal)
            moment = datetime.fromisoformat(values["attributes"]["gas_reading"]["timestamp"])
            expected_liters = self.oracle.gas_liters(moment)
            assert expected_liters is not None, f"gas timestamp {moment} never sent by the meter"
            assert values["gas_reading"] == _kilo(expected_liters), (
                f"gas {values['gas_reading']} m3 at {moment}, the meter said {expected_liters} l"
            )
            assert gas_previous is None or values["gas_reading"] >= gas_previous
            gas_previous = values["gas_reading"]
            result.gas_states += 1
        for raw in self.raw.snapshot():
            k = self.oracle.index_of_telegram(raw)
            assert raw == self.oracle.telegram(k), f"raw telegram {k} differs from the meter's"
            result.raw_telegrams += 1
        assert result.states > 0, "no meter state was published at all"
        return result

    # -- teardown

    def close(self) -> None:
        self.group.close()
        for close in (self.raw.close, self.collector.close, self.channel.close):
            with contextlib.suppress(Exception):
                close()


@contextlib.contextmanager
def fault_rig(workdir: Path, broker: MosquittoBroker, profile: str = "dsmr5") -> Iterator[FaultRig]:
    """A `FaultRig` (the virtual meter with `profile`), closed on exit."""
    rig = FaultRig(workdir, broker, profile)
    try:
        yield rig
    finally:
        rig.close()


def since(proc: Proc) -> int:
    """The current end of `proc`'s log: pass as `after=` to wait for lines written from now."""
    return len(proc.log())


# ------------------------------------------------------------------------------ a read-only card


class ReadOnlySwitch:
    """A directory bind-mounted onto itself, so it can be remounted read-only and back while
    processes use it: an SD card the kernel remounted read-only after I/O errors, then fixed.

    Writes then fail with EROFS for everyone, root included (chmod cannot do that as root).
    Needs root and mount(8) (`problem()` says why not otherwise); the bind mount is always
    removed on exit, and a read-only one never outlives the test.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.mounted = False

    @staticmethod
    def problem(probe: Path) -> str | None:
        """Why bind mounts cannot be used here (None: they can); tries one on `probe`."""
        if os.geteuid() != 0:
            return "remounting a directory read-only needs root"
        probe.mkdir(parents=True, exist_ok=True)
        switch = ReadOnlySwitch(probe)
        try:
            with switch:
                switch.read_only()
                switch.writable()
        except (OSError, subprocess.CalledProcessError) as exc:
            return f"bind mounts are not available here: {exc}"
        return None

    def _mount(self, *args: str) -> None:
        subprocess.run(
            ["mount", *args, str(self.path)], check=True, capture_output=True, timeout=30
        )

    def __enter__(self) -> ReadOnlySwitch:
        subprocess.run(
            ["mount", "--bind", str(self.path), str(self.path)],
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.mounted = True
        return self

    def read_only(self) -> None:
        self._mount("-o", "remount,bind,ro")

    def writable(self) -> None:
        self._mount("-o", "remount,bind,rw")

    def __exit__(self, *exc: object) -> None:
        if self.mounted:
            # Lazy: a daemon that still has a file open there must not keep the mount alive.
            subprocess.run(
                ["umount", "-l", str(self.path)], check=False, capture_output=True, timeout=30
            )
            self.mounted = False
