"""`p1-lora-tx` and `p1-lora-rx`: exit codes, restart state, and the daemons as real processes.

The process tests (`e2e`, `slow`) run the real commands over `--radio sim` on a per-test UDP
port (parallel workers never hear each other), with `p1-lora meter` on a pty and a real
Mosquitto broker: start, telegrams delivered to MQTT and to the raw telegram server, SIGTERM
(the receiver marks itself offline), restarts that resume the last good settings and counters
(no rendezvous handshake, no replay rejections), systemd readiness/watchdog/stopping, and the
`restart` command's exit code.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import uuid
from pathlib import Path

import pytest

from p1lora.common.budget import AirtimeBudget, Transmission
from p1lora.common.clock import VirtualClock
from p1lora.common.framing import check_crc
from p1lora.common.link import FixedRadio, RadioMode, TxPersistentState
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.radio import RadioFault
from p1lora.service.budget_store import BudgetStore, merge_transmissions
from p1lora.service.config import ConfigError, load_config
from p1lora.service.daemon import EXIT_CODES, EXIT_CONFIG, state_directory
from p1lora.service.keyfile import write_key_file
from p1lora.service.link_log import LinkLog
from p1lora.service.observers import LinkLogObserver, RadioHealth
from p1lora.service.options import KEY_CREDENTIAL
from p1lora.service.state_store import StateStore
from p1lora.transmitter.capture_replay import CaptureReplay
from p1lora.transmitter.cli import apply_config_changes
from p1lora.transmitter.options import TX_OPTIONS
from p1lora.transmitter.sources import MeterFeeder, make_source
from tests.helpers_daemons import (
    TIMEOUT,
    clean_env,
    free_tcp_port,
    free_udp_port,
    processes,
    read_telegram,
)
from tests.helpers_mqtt import MqttCollector, wait_until

SF7 = RadioSettings(869_525_000, 7, 250_000, 5, 14)


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "key"
    write_key_file(path, os.urandom(32))
    return path


class NotifyListener:
    """A datagram socket standing in for systemd's notify socket."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.settimeout(0.0)
        self.received: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.received.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.received

    def seen(self, prefix: str) -> bool:
        return any(m.startswith(prefix) or f"\n{prefix}" in m for m in self.poll())

    def close(self) -> None:
        self.sock.close()


# ------------------------------------------------------------------------------ airtime budget


def test_budget_survives_a_restart_on_a_new_monotonic_clock(tmp_path):
    wall = [1_000_000.0]
    store = BudgetStore(tmp_path, "tx", wall_clock=lambda: wall[0])
    budget = AirtimeBudget(0.01)  # 36 s per hour
    for k in range(30):
        budget.record(5000.0 + k, 1.0)  # 30 s on air, ending at monotonic 5030
    assert store.save(budget, 5100.0)
    # Reboot: monotonic time starts over; 100 s of wall-clock time passed.
    wall[0] += 100.0
    fresh = AirtimeBudget(0.01)
    assert store.restore(fresh, 12.0) >= 1
    # The saved airtime is counted again, re-anchored on the new clock.
    assert fresh.used(12.0) == pytest.approx(30.0)
    assert not fresh.may_send(12.0, 7.0)  # 30 + 7 > 36: the hour is not reset
    # It leaves the window no earlier than the real frames would have.
    last_end = 12.0 - 100.0 - (5100.0 - 5030.0)
    assert fresh.used(last_end + 3600.0 - 0.5) == pytest.approx(30.0)
    assert fresh.used(last_end + 3600.0 + 0.1) == 0.0


def test_budget_restore_is_conservative_when_the_wall_clock_went_back(tmp_path):
    wall = [2_000_000.0]
    store = BudgetStore(tmp_path, "rx", wall_clock=lambda: wall[0])
    budget = AirtimeBudget(0.1)
    budget.record(100.0, 2.0)
    store.save(budget, 110.0)
    wall[0] -= 500.0  # e.g. fake-hwclock before NTP: counts as no time passed
    fresh = AirtimeBudget(0.1)
    store.restore(fresh, 0.0)
    (item,) = fresh.transmissions(0.0)
    assert item.end == pytest.approx(0.0 - (110.0 - 102.0))


def test_budget_entries_older_than_the_window_are_dropped_and_bad_files_ignored(tmp_path, caplog):
    wall = [10_000.0]
    store = BudgetStore(tmp_path, "tx", wall_clock=lambda: wall[0])
    budget = AirtimeBudget(0.1)
    budget.record(0.0, 1.0)
    store.save(budget, 10.0)
    wall[0] += 4000.0
    fresh = AirtimeBudget(0.1)
    assert store.restore(fresh, 50.0) == 0
    assert fresh.used(50.0) == 0.0
    assert store.path is not None
    store.path.write_text("{not json")
    damaged = AirtimeBudget(0.1)
    with caplog.at_level(logging.WARNING):
        assert store.restore(damaged, 0.0) == 1
    assert "assuming the whole allowance" in caplog.text  # a damaged file counts as a full hour
    assert damaged.used(0.0) == pytest.approx(damaged.allowance_s)
    other = BudgetStore(tmp_path, "rx")
    assert other.restore(AirtimeBudget(0.1), 0.0) == 0  # no file for this role yet


def test_merged_buckets_never_free_airtime_early():
    sent = [Transmission(float(t), 0.05) for t in range(0, 600, 2)]
    buckets = merge_transmissions(sent)
    assert len(buckets) <= 11
    assert sum(b.airtime for b in buckets) == pytest.approx(sum(t.airtime for t in sent))
    original, merged = AirtimeBudget(0.01), AirtimeBudget(0.01)
    original.restore(sent)
    merged.restore(buckets)
    for now in range(0, 4400, 7):
        assert merged.used(float(now)) >= original.used(float(now)) - 1e-9


def test_budget_save_failures_are_logged_once_and_never_raise(tmp_path, caplog):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    store = BudgetStore(blocker, "tx")
    budget = AirtimeBudget(0.1)
    with caplog.at_level(logging.ERROR):
        assert not store.save(budget, 0.0)
        assert not store.save(budget, 1.0)
    assert caplog.text.count("cannot write") == 1


# ------------------------------------------------------------------------------ config vs state


def _tx_config(tmp_path: Path, text: str):
    path = tmp_path / "tx.toml"
    path.write_text("[meter]\nsource = 'virtual'\n[radio]\nbackend = 'sim'\n" + text)
    return load_config(TX_OPTIONS, None, {}, path=path)


def test_an_edited_config_wins_over_the_saved_radio_mode(tmp_path):
    store = StateStore(tmp_path, role="tx")
    store.save_link_state(TxPersistentState(SF7, RadioMode.AUTO, None, 0.0))
    fixed = _tx_config(
        tmp_path, "mode = 'fixed'\nfixed_sf = 9\nfixed_bw = 125\n[link]\ninterval = 5\n"
    )
    apply_config_changes(fixed, store, tmp_path)
    saved = StateStore(tmp_path, role="tx").load_tx_state()
    assert saved is not None
    assert saved.mode is RadioMode.FIXED
    assert saved.fixed == FixedRadio(9, 125_000, None)
    assert saved.interval_s == 5.0
    assert saved.last_good == SF7  # the last good settings are kept
    # A `set radio auto` command later changes the state; the unchanged config leaves it alone.
    store = StateStore(tmp_path, role="tx")
    store.save_link_state(TxPersistentState(SF7, RadioMode.AUTO, None, 5.0))
    apply_config_changes(fixed, store, tmp_path)
    after = StateStore(tmp_path, role="tx").load_tx_state()
    assert after is not None and after.mode is RadioMode.AUTO


def test_state_directory_follows_systemd_unless_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/p1-lora-from-systemd")
    default = _tx_config(tmp_path, "")
    assert state_directory(default) == Path("/var/lib/p1-lora-from-systemd")
    explicit = _tx_config(tmp_path, f"[state]\ndir = '{tmp_path / 'mine'}'\n")
    assert state_directory(explicit) == tmp_path / "mine"
    monkeypatch.delenv("STATE_DIRECTORY")
    assert state_directory(default) == Path("/var/lib/p1-lora")


# ------------------------------------------------------------------------------ P1 sources


def test_meter_feeder_paces_a_capture_and_finishes(telegram_dir):
    telegrams = [(telegram_dir / n).read_bytes() for n in ("V5.txt", "FLUVIUS_V171.txt")]
    replay = CaptureReplay.from_bytes(b"".join(telegrams), interval=10.0)
    clock = VirtualClock()
    got: list[tuple[bytes, float]] = []
    feeder = MeterFeeder(
        iter(replay), lambda raw, at: got.append((raw, at)), clock, interval=10.0, description="t"
    )
    feeder._feed()  # on this thread: the virtual clock advances while it waits
    assert [raw for raw, _ in got] == telegrams
    assert [at for _, at in got] == [0.0, 10.0]
    assert feeder.finished and feeder.problem() is None


def test_meter_feeder_reports_a_crash_as_a_problem(caplog):
    clock = VirtualClock()

    def explode(raw: bytes, at: float) -> None:
        raise RuntimeError("boom")

    feeder = MeterFeeder(iter([(0.0, b"x")]), explode, clock, interval=1.0, description="t")
    with caplog.at_level(logging.ERROR):
        feeder._run()
    assert feeder.problem() == "the P1 source stopped: RuntimeError: boom"


def test_a_capture_that_cannot_be_read_is_a_configuration_error(tmp_path):
    path = tmp_path / "tx.toml"
    path.write_text(f"[meter]\nsource = '{tmp_path / 'missing.txt'}'\n[radio]\nbackend = 'sim'\n")
    config = load_config(TX_OPTIONS, None, {}, path=path)
    with pytest.raises(ConfigError, match=r"meter.source: cannot read capture"):
        make_source(config, VirtualClock(), lambda raw, at: None)


# ------------------------------------------------------------------------------ observers


def _frame(payload: bytes) -> ReceivedFrame:
    return ReceivedFrame(payload, -80.0, 7.5, SF7, 1.0)


def test_link_log_observer_writes_frames_settings_and_events(tmp_path):
    log = LinkLog(tmp_path / "link.jsonl")
    observer = LinkLogObserver(log, wall_clock=lambda: 1_700_000_000.0)
    observer.configured(0.0, SF7, "switch")
    # An ACK (type 0x0A, version 1) with low counter bits 0xFFFF, then one with 0x0001: the
    # observer unwraps them to consecutive full counters.
    observer.frame_received(_frame(bytes([0x2A, 0, 0, 0xFF, 0xFF]) + bytes(16)), None)
    observer.frame_received(_frame(bytes([0x2A, 0, 0, 0x00, 0x01]) + bytes(16)), None)
    observer.frame_received(_frame(bytes([0x2A, 9, 9, 0x00, 0x05]) + bytes(16)), "wrong_network")
    observer.radio_fault(0.0, RadioFault("SPI error", recovered=True))
    log.close()
    records = [json.loads(line) for line in (tmp_path / "link.jsonl").read_text().splitlines()]
    assert records[0]["type"] == "settings" and records[0]["sf"] == 7
    acks = [r for r in records if r.get("kind") == "frame"]
    assert [r["type"] for r in acks] == ["ack", "ack", "ack"]
    assert acks[1]["counter"] - acks[0]["counter"] == 2
    assert acks[2]["ok"] is False and acks[2]["reason"] == "wrong_network"
    assert "counter" not in acks[2]  # a rejected frame says nothing true about counters
    assert acks[0]["rssi"] == -80.0 and acks[0]["airtime"] > 0
    assert records[-1]["type"] == "radio_fault"


def test_radio_health_reports_a_radio_broken_past_the_grace_time():
    health = RadioHealth(grace_s=300.0)
    assert health.problem(0.0) is None
    health.radio_fault(10.0, RadioFault("SX127x did not answer", recovered=False))
    health.radio_fault(20.0, RadioFault("SX127x did not answer", recovered=False))
    assert health.problem(309.0) is None
    assert health.problem(311.0) == ("the radio has not worked for 301 s (SX127x did not answer)")
    health.frame_received(_frame(b"\x2a" + bytes(20)), None)
    assert health.problem(400.0) is None


# ------------------------------------------------------------------------------ exit codes


def _run(group, *args: str):
    proc = group.start(args[0], *args)
    code = proc.wait(60)
    return code, proc.log()


def test_configuration_error_exits_2_before_touching_the_radio(tmp_path, key):
    notify = NotifyListener(tmp_path / "notify")
    env = clean_env(tmp_path, NOTIFY_SOCKET=str(notify.path))
    try:
        with processes(tmp_path) as group:
            proc = group.start(
                "rx",
                "p1-lora-rx",
                "--radio",
                "sim",
                "--mqtt-port",
                "70000",
                "--key-file",
                str(key),
                env=env,
            )
            code, log = proc.wait(60), proc.log()
        # `systemctl status` would show why the start failed; READY never came.
        assert notify.poll() == [
            "STATUS=configuration error: mqtt.port (from --mqtt-port): 70000 is not a port "
            "number (1-65535)"
        ]
    finally:
        notify.close()
    assert code == 2
    assert (
        "configuration error: mqtt.port (from --mqtt-port): 70000 is not a port number (1-65535)"
        in log
    )
    assert "p1-lora-rx not started (exit code 2)" in log
    assert "radio:" not in log  # nothing was opened


def test_bad_key_file_exits_2(tmp_path, key):
    key.chmod(0o644)
    with processes(tmp_path) as group:
        code, log = _run(
            group,
            "p1-lora-tx",
            "--radio",
            "sim",
            "--meter",
            "virtual",
            "--key-file",
            str(key),
            "--state-dir",
            str(tmp_path / "state"),
        )
    assert code == 2
    assert f"chmod 600 {key}" in log
    assert key.read_text().splitlines()[-1] not in log


def test_radio_not_found_exits_3(tmp_path, key):
    with processes(tmp_path) as group:
        code, log = _run(
            group,
            "p1-lora-tx",
            "--board",
            "dragino",
            "--meter",
            "virtual",
            "--key-file",
            str(key),
            "--state-dir",
            str(tmp_path / "state"),
        )
    assert code == 3, log
    assert "radio not available:" in log
    assert "p1-lora-tx not started (exit code 3)" in log


def test_unknown_flag_exits_2(tmp_path):
    with processes(tmp_path) as group:
        code, log = _run(group, "p1-lora-tx", "--mqtt-host", "x")
    assert code == 2
    assert "unrecognized arguments: --mqtt-host" in log


@pytest.mark.parametrize(
    ("command", "flags"),
    [
        (
            "p1-lora-tx",
            ["--radio", "--serial", "--meter", "--meter-profile", "--key-file", "--state-dir"],
        ),
        (
            "p1-lora-rx",
            ["--radio", "--mqtt-host", "--mqtt-port", "--raw-port", "--raw-mqtt", "--key-file"],
        ),
    ],
)
def test_help_documents_the_command_line_contract(tmp_path, command, flags):
    with processes(tmp_path) as group:
        proc = group.start(command, command, "--help", stdout=True)
        out, _ = proc.process.communicate(timeout=60)
    text = out.decode()
    assert proc.process.returncode == 0
    for flag in [*flags, "--link-log", "--config", "--sim-port", "--board", "--pins"]:
        assert flag in text
    for code in (
        "0  stopped cleanly",
        "2  configuration error",
        "3  the radio was not found",
        "4  restart requested",
    ):
        assert code in text


# ------------------------------------------------------------------------------ systemd units

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"


def _unit(name: str) -> dict[str, list[str]]:
    """`Key` -> values (a unit may repeat a key, e.g. DeviceAllow=)."""
    values: dict[str, list[str]] = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


@pytest.mark.parametrize(
    ("role", "groups", "devices"),
    [
        ("tx", {"dialout", "spi", "gpio"}, {"char-spi rw", "char-gpiochip rw", "char-ttyUSB rw"}),
        ("rx", {"spi", "gpio"}, {"char-spi rw", "char-gpiochip rw"}),
    ],
)
def test_units_are_hardened_and_match_the_daemons(role, groups, devices):
    unit = _unit(f"p1-lora-{role}.service")
    expected = {
        "Type": ["notify"],
        "User": ["p1lora"],
        "StateDirectory": ["p1-lora"],
        "ProtectSystem": ["strict"],
        "ProtectHome": ["yes"],
        "PrivateTmp": ["yes"],
        "NoNewPrivileges": ["yes"],
        "Restart": ["on-failure"],
        "RestartPreventExitStatus": [str(EXIT_CONFIG)],
        "DevicePolicy": ["closed"],
    }
    for key, value in expected.items():
        assert unit.get(key) == value, key
    assert set(unit["SupplementaryGroups"][0].split()) == groups
    assert devices <= set(unit["DeviceAllow"])
    assert unit["LoadCredential"][0].startswith(f"{KEY_CREDENTIAL}:/etc/p1-lora/key")
    assert unit["WatchdogSec"] and unit["ExecStart"][0].split()[0].endswith(f"p1-lora-{role}")
    assert f"/etc/p1-lora/{role}.toml" in unit["ExecStart"][0]
    # lgpio needs a writable working directory.
    assert unit["WorkingDirectory"] == [f"/run/{unit['RuntimeDirectory'][0]}"]
    text = (DEPLOY / "systemd" / f"p1-lora-{role}.service").read_text()
    for code in EXIT_CODES:
        assert re.search(rf"^#\s+{code}\s", text, re.MULTILINE), code


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_units_pass_systemd_analyze_verify(tmp_path):
    for role in ("tx", "rx"):
        text = (DEPLOY / "systemd" / f"p1-lora-{role}.service").read_text()
        unit = tmp_path / f"p1-lora-{role}.service"
        # The venv path does not exist here; everything else is verified as written.
        unit.write_text(text.replace(f"/opt/p1-lora/bin/p1-lora-{role}", "/bin/true"))
        result = subprocess.run(
            ["systemd-analyze", "verify", str(unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert "Unknown key" not in result.stderr and "Invalid" not in result.stderr


def test_sysusers_creates_the_user_with_its_groups():
    lines = [
        line.split()
        for line in (DEPLOY / "sysusers.d" / "p1-lora.conf").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    assert lines[0][:2] == ["u", "p1lora"]
    assert {tuple(line[:3]) for line in lines[1:]} == {
        ("m", "p1lora", "dialout"),
        ("m", "p1lora", "spi"),
        ("m", "p1lora", "gpio"),
    }


# ------------------------------------------------------------------------------ real processes


def _rx_args(key: Path, state: Path, sim_port: int, broker, *extra: str) -> list[str]:
    return [
        "--radio",
        "sim",
        "--sim-port",
        str(sim_port),
        "--mqtt-host",
        broker.host,
        "--mqtt-port",
        str(broker.port),
        "--key-file",
        str(key),
        "--state-dir",
        str(state),
        *extra,
    ]


def _tx_args(key: Path, state: Path, sim_port: int, *source: str) -> list[str]:
    return [
        "--radio",
        "sim",
        "--sim-port",
        str(sim_port),
        *source,
        "--key-file",
        str(key),
        "--state-dir",
        str(state),
    ]


def _meter_topic(collector: MqttCollector) -> str:
    def found() -> str | None:
        for message in list(collector.messages):
            if re.fullmatch(r"p1lora/meter_[0-9a-f]+/state", message.topic):
                return message.topic
        return None

    assert wait_until(lambda: found() is not None, TIMEOUT), "no meter state published"
    topic = found()
    assert topic is not None
    return topic


def _count(collector: MqttCollector, topic: str) -> int:
    return len(collector.on(topic))


@pytest.mark.e2e
@pytest.mark.slow
def test_bridge_delivers_stops_and_the_receiver_resumes(tmp_path, key, mqtt_broker):
    """pty meter -> p1-lora-tx -> simulated radio -> p1-lora-rx -> Mosquitto and raw TCP; then
    SIGTERM the receiver (offline first) and start it again: it resumes where it was."""
    sim_port = free_udp_port()
    raw_port = free_tcp_port()
    notify = NotifyListener(tmp_path / "notify")
    rx_state, tx_state = tmp_path / "rx-state", tmp_path / "tx-state"
    collector = MqttCollector(mqtt_broker.host, mqtt_broker.port, ["p1lora/#"])
    try:
        with processes(tmp_path) as group:
            _, pty = group.meter(tmp_path / "p1")
            assert os.path.realpath(tmp_path / "p1") == os.path.realpath(pty)
            rx_env = clean_env(tmp_path, NOTIFY_SOCKET=str(notify.path), WATCHDOG_USEC="1000000")
            rx_extra = (
                "--raw-port",
                str(raw_port),
                "--raw-host",
                "127.0.0.1",
                "--link-log",
                str(tmp_path / "rx.jsonl"),
                "--raw-mqtt",
            )
            rx = group.start(
                "rx",
                "p1-lora-rx",
                *_rx_args(key, rx_state, sim_port, mqtt_broker, *rx_extra),
                env=rx_env,
            )
            rx.wait_log(r"p1-lora-rx running")
            tx = group.start(
                "tx",
                "p1-lora-tx",
                *_tx_args(key, tx_state, sim_port, "--serial", str(tmp_path / "p1")),
                "--link-log",
                str(tmp_path / "tx.jsonl"),
            )
            # Delivered: to MQTT (Home Assistant state) and byte-exact to the raw server.
            rx.wait_log(r"first telegram delivered")
            collector.wait_for("p1lora/bridge/availability", b"online")
            topic = _meter_topic(collector)
            telegram = read_telegram("127.0.0.1", raw_port)
            assert check_crc(telegram), telegram
            equipment = re.search(rb"0-0:96\.1\.1\(([0-9A-Fa-f]+)\)", telegram)
            assert equipment is not None
            assert topic == f"p1lora/meter_{equipment.group(1).decode().lower()}/state"
            json.loads(collector.on(topic)[-1].payload)
            # --raw-mqtt: the same telegrams byte for byte on p1lora/telegram/raw, not retained.
            raw = collector.wait_for("p1lora/telegram/raw")
            assert check_crc(raw.payload) and not raw.retain
            assert raw.payload.startswith(b"/") and raw.payload.endswith(b"\r\n")
            raw_topic = "p1lora/telegram/raw"
            assert wait_until(lambda: telegram in collector.payloads(raw_topic), TIMEOUT)
            assert "DSMR 5" in tx.wait_log(r"detected DSMR \d settings").group(0)
            # systemd: ready, watchdog pings while healthy.
            assert wait_until(lambda: notify.seen("READY=1"), TIMEOUT)
            assert wait_until(lambda: notify.seen("WATCHDOG=1"), TIMEOUT)
            settled = rx.wait_log(r"rx: probing -> running \(transmitter committed\)")
            assert settled

            # SIGTERM: offline first, clean exit, STOPPING for systemd.
            assert rx.stop() == 0
            offline = collector.wait_for("p1lora/bridge/availability", b"offline")
            assert offline.payload == b"offline"
            assert notify.seen("STOPPING=1")
            assert "p1-lora-rx stopped (exit code 0)" in rx.log()
            saved = json.loads((rx_state / "rx_link.json").read_text())["data"]["last_good"]
            assert saved["sf"] == 7 and saved["bw_hz"] == 250_000
            assert (rx_state / "rx_budget.json").exists()

            # Restart: it listens at the last good setting, not at the SF12 rendezvous.
            before = _count(collector, topic)
            rx2 = group.start("rx2", "p1-lora-rx", *_rx_args(key, rx_state, sim_port, mqtt_broker))
            rx2.wait_log(r"airtime budget restored")
            rx2.wait_log(r"first telegram delivered")
            assert wait_until(lambda: _count(collector, topic) > before, TIMEOUT)
            collector.wait_for("p1lora/bridge/availability", b"online", timeout=TIMEOUT)
            log = rx2.log()
            assert re.search(r"rx: resume -> (handshake|running)", log), log
            assert "rendezvous ->" not in log
            assert "(replay)" not in log
            assert tx.running
            assert rx2.stop() == 0
            assert tx.stop() == 0
    finally:
        collector.close()
        notify.close()


@pytest.mark.e2e
@pytest.mark.slow
def test_transmitter_resumes_counters_and_settings_and_restart_command_exits_4(
    tmp_path, key, mqtt_broker
):
    """The built-in virtual meter; the transmitter restarts at its last good setting with
    counters from its reservation (no replay rejections), and the `restart` command over the
    link ends it with the restart exit code."""
    sim_port = free_udp_port()
    rx_state, tx_state = tmp_path / "rx-state", tmp_path / "tx-state"
    collector = MqttCollector(mqtt_broker.host, mqtt_broker.port, ["p1lora/#"])
    try:
        with processes(tmp_path) as group:
            rx = group.start("rx", "p1-lora-rx", *_rx_args(key, rx_state, sim_port, mqtt_broker))
            rx.wait_log(r"p1-lora-rx running")
            tx_args = _tx_args(
                key, tx_state, sim_port, "--meter", "virtual", "--meter-profile", "dsmr5"
            )
            tx = group.start("tx", "p1-lora-tx", *tx_args)
            rx.wait_log(r"first telegram delivered")
            topic = _meter_topic(collector)
            tx.wait_log(r"tx: probing -> running \(switch confirmed\)")
            reserved = json.loads((tx_state / "tx_counters.json").read_text())["data"][
                "reserved_until"
            ]

            assert tx.stop() == 0
            after_stop = len(rx.log())
            before = _count(collector, topic)
            tx2 = group.start("tx2", "p1-lora-tx", *tx_args)
            tx2.wait_log(r"airtime budget restored")
            tx2.wait_log(r"tx: handshake -> running")
            assert wait_until(lambda: _count(collector, topic) > before + 2, TIMEOUT)
            log = tx2.log()
            assert "-> rendezvous" not in log and "rendezvous ->" not in log, log
            assert "(replay)" not in rx.log()[after_stop:]
            resumed = json.loads((tx_state / "tx_counters.json").read_text())["data"][
                "reserved_until"
            ]
            assert resumed > reserved

            # The `restart` command: queued by the receiver, answered, then exit code 4.
            request = str(uuid.uuid4())
            collector.publish("p1lora/command", json.dumps({"cmd": "restart", "id": request}))
            assert tx2.wait(TIMEOUT) == 4
            assert "restart requested over the link" in tx2.log()
            assert "p1-lora-tx stopped (exit code 4)" in tx2.log()
            replies = lambda: [  # noqa: E731
                m.payload
                for m in collector.on("p1lora/command/reply")
                if request.encode() in m.payload
            ]
            assert wait_until(lambda: len(replies()) >= 1, TIMEOUT)
            rx.signal(signal.SIGINT)  # Ctrl-C is an orderly stop too
            assert rx.wait() == 0
    finally:
        collector.close()
