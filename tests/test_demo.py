"""`p1-lora demo`: the view's model and renderer on the real bridge's MQTT traffic (fast), the
option checks (fast), and the whole demo as a process (e2e, slow): with the embedded broker and
the live view on a pty, headless with its own Mosquitto, on an existing broker (restart of the
transmitter over the link, clean-up of its retained topics at the end), and with a daemon that
cannot start. Every process run checks that no process and no temporary file is left."""

from __future__ import annotations

import argparse
import json
import logging
import re
import socket
import time
from decimal import Decimal
from pathlib import Path

import pytest

from p1lora.common.link import LinkEventAction
from p1lora.common.parser import parse_telegram
from p1lora.common.radio_types import RadioSettings
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.service.link_log import LinkLog
from p1lora.service.observers import LinkLogObserver
from p1lora.tools import cli
from p1lora.tools.demo.broker import find_mosquitto
from p1lora.tools.demo.events import parse_log_line
from p1lora.tools.demo.model import DemoState
from p1lora.tools.demo.options import (
    EXTERNAL_BASE_TOPIC,
    UsageError,
    configure,
    options_from_args,
)
from p1lora.tools.demo.screen import render_screen
from p1lora.tools.demo.summary import DemoResult, summary_dict, summary_lines
from p1lora.tools.demo.text import event_line, format_value, status_line
from p1lora.tools.demo.views import DemoInfo
from tests.helpers_demo import BridgeTraffic, run_demo
from tests.helpers_mqtt import MqttCollector, wait_until

SF12 = RadioSettings(869_525_000, sf=12, bw_hz=125_000, tx_power_dbm=14)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def _state(traffic: BridgeTraffic) -> DemoState:
    return DemoState(traffic.settings, DemoInfo(broker="test broker"), started=100.0)


def _feed(state: DemoState, traffic: BridgeTraffic, now: float, *, retained: bool = False) -> None:
    for topic, payload in traffic.messages():
        state.mqtt_message(topic, payload, now, retained=retained)


def _entity(view, device_name: str, entity_name: str):
    device = next(d for d in view.devices if d.name == device_name)
    return next(e for e in device.entities if e.name == entity_name)


# ---------------------------------------------------------------------------------- the model


def test_devices_entities_and_values_are_what_the_bridge_announced():
    traffic = BridgeTraffic()
    state = _state(traffic)
    raw = traffic.telegram()
    traffic.diagnostics()
    _feed(state, traffic, 101.0)
    view = state.view(102.0)

    names = [d.name for d in view.devices]
    assert names == ["P1-LoRa bridge", "Electricity meter", "Gas meter"]
    configs = traffic.bridge.config_topics()
    assert view.entity_count == len(configs)
    by_device: dict[str, int] = {}
    for topic in configs:
        config = json.loads(traffic.mqtt.retained[topic])
        device_id = config["device"]["identifiers"][0]
        by_device[device_id] = by_device.get(device_id, 0) + 1
    assert {d.identifier: len(d.entities) for d in view.devices} == by_device
    enabled = sum(
        1
        for topic in configs
        if json.loads(traffic.mqtt.retained[topic]).get("enabled_by_default", True)
    )
    assert view.enabled_count == enabled

    telegram = parse_telegram(raw)
    expected = telegram.value("electricity_used_tariff_1")
    assert isinstance(expected, Decimal)
    entity = _entity(view, "Electricity meter", "Energy consumption (tariff 1)")
    assert format_value(entity, view.availability) == f"{expected} kWh"  # the meter's digits
    gas = _entity(view, "Gas meter", "Gas consumption")
    assert format_value(gas, view.availability).endswith(" m³")
    assert view.telegrams == 1
    assert view.bridge["link_state"] == "running"


def test_telegrams_count_once_each_and_never_from_retained_copies():
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.telegram()
    _feed(state, traffic, 101.0, retained=True)  # what a new subscriber gets first
    assert state.view(101.0).telegrams == 0

    traffic.telegram()
    messages = traffic.messages()
    for topic, payload in messages:
        state.mqtt_message(topic, payload, 102.0, retained=False)
    view = state.view(102.0)
    assert view.telegrams == 1  # the meter's state; the gas meter's and the bridge's do not count
    assert view.first_telegram_at == pytest.approx(2.0)

    # The publisher re-sends the latest state after a reconnect: the same telegram again.
    meter_state = [(t, p) for t, p in messages if "/meter_" in t]
    assert len(meter_state) == 1
    state.mqtt_message(*meter_state[0], 103.0, retained=False)
    assert state.view(103.0).telegrams == 1

    traffic.telegram()
    _feed(state, traffic, 104.0)
    view = state.view(104.0)
    assert view.telegrams == 2
    assert view.last_telegram_at == pytest.approx(4.0)


def _link_log_lines(tmp_path: Path, role: str, events: list[tuple[str, dict]]) -> list[str]:
    """The lines the daemons' link-log writer makes of these link events (`--link-log`)."""
    path = tmp_path / f"{role}-link-{len(list(tmp_path.iterdir()))}.jsonl"
    with LinkLog(path) as log:
        observer = LinkLogObserver(log, wall_clock=lambda: 1_700_000_000.0)
        for kind, fields in events:
            observer.link_event(0.0, LinkEventAction(kind, {"role": role, **fields}))
    return path.read_text().splitlines()


def _configure(settings: str, power: int, reason: str) -> tuple[str, dict]:
    return "configure", {"state": "running", "settings": settings, "power": power, "reason": reason}


def test_link_state_comes_from_the_link_logs_once_they_said_something(tmp_path):
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.diagnostics(settings=SF12, state="handshake")
    _feed(state, traffic, 101.0)
    view = state.view(101.0)
    assert (view.link_state, view.settings, view.handshakes, view.radio_changes) == (
        "handshake",
        "SF12/BW125",
        0,
        0,
    )

    tx = _link_log_lines(
        tmp_path,
        "tx",
        [
            _configure("SF12/BW125", 14, "start"),  # where the process starts: not a step
            ("session_established", {"state": "handshake", "settings": "SF12/BW125"}),
            (
                "state",
                {"state": "running", "previous": "handshake", "reason": "handshake complete"},
            ),
            _configure("SF7/BW250", 14, "switch"),
            _configure("SF7/BW250", 14, "resync"),  # the same settings again: not a step
            _configure("SF7/BW250", 2, "power: uplink margin 30.5 dB"),
        ],
    )
    rx = _link_log_lines(
        tmp_path,
        "rx",
        [
            _configure("SF12/BW125", 14, "start"),
            ("state", {"state": "running", "previous": "handshake", "reason": "SWITCH received"}),
            ("session_established", {"state": "running", "settings": "SF12/BW125"}),
            _configure("SF7/BW250", 14, "switch"),
            ("state", {"state": "probing", "previous": "running", "reason": "switch requested"}),
            ("state", {"state": "running", "previous": "probing", "reason": "committed"}),
        ],
    )
    for line in tx:
        state.link_line("tx", line)
    for line in rx:
        state.link_line("rx", line)
    state.link_line("rx", '{"kind": "event", "type": "state", "role": "tx", "state": "x"}')
    state.link_line("rx", '{"kind": "event", "type": "sta')  # cut short by a crash
    # A diagnostics message that arrives later may still carry the old snapshot.
    traffic.diagnostics(settings=SF12, state="handshake")
    _feed(state, traffic, 103.0)
    view = state.view(103.0)
    assert view.link_state == "running"
    assert view.settings == "SF7/BW250"
    assert view.tx_power_dbm == 2
    assert view.handshakes == 1
    assert view.radio_changes == 2  # the transmitter's: the receiver's mirror is not counted
    assert view.last_radio == "SF7/BW250 2 dBm (power: uplink margin 30.5 dB)"

    # A restarted transmitter's first configuration is where it starts, not a step.
    state.process_restarted("tx", "p1-lora-tx")
    for line in _link_log_lines(tmp_path, "tx", [_configure("SF9/BW125", 14, "start")]):
        state.link_line("tx", line)
    view = state.view(104.0)
    assert (view.radio_changes, view.settings, view.restarts) == (2, "SF7/BW250", {"p1-lora-tx": 1})


def test_which_log_lines_become_events():
    state = _state(BridgeTraffic())
    assert state.log_line("tx", "INFO p1lora.service.daemon: p1-lora-tx running", 101.0) is None
    assert state.log_line("tx", "DEBUG p1lora.common.link: tx probe {}", 101.0) is None
    assert state.log_line("tx", "Traceback (most recent call last):", 101.0) is None
    event = state.log_line(
        "tx", "INFO p1lora.common.link: tx: rendezvous -> running (handshake complete)", 101.5
    )
    assert event is not None
    assert (event.source, event.text, event.at) == (
        "tx",
        "rendezvous -> running (handshake complete)",
        1.5,
    )
    warning = state.log_line(
        "rx",
        "WARNING p1lora.receiver.mqtt_publisher: MQTT: cannot connect to 127.0.0.1:1883 "
        "(ConnectionRefusedError: [Errno 111] Connection refused); retrying with backoff, "
        "messages are kept",
        102.0,
    )
    assert warning is not None
    assert warning.level == logging.WARNING
    assert "WARNING MQTT: cannot connect" in event_line(warning)
    assert state.view(102.0).warnings == 1
    assert parse_log_line("ERROR x.y: boom") == (logging.ERROR, "x.y", "boom")
    assert parse_log_line('  File "x.py", line 1') is None


def test_offline_bridge_shows_unavailable_and_is_remembered():
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.telegram()
    _feed(state, traffic, 101.0)
    state.mqtt_message(traffic.settings.availability_topic, b"offline", 102.0, retained=True)
    view = state.view(102.0)
    assert view.offline_seen
    entity = _entity(view, "Electricity meter", "Energy consumption (tariff 1)")
    assert format_value(entity, view.availability) == "unavailable"


def test_removed_configs_disappear_and_clean_up_lists_configs_first():
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.telegram()
    _feed(state, traffic, 101.0)
    # The publisher (not the bridge) owns availability: online at connect.
    state.mqtt_message(traffic.settings.availability_topic, b"online", 101.0, retained=True)
    state.mqtt_message("p1lora/command/reply", b'{"status": "ok"}', 101.0, retained=False)
    gas_topic = next(t for t in traffic.bridge.config_topics() if t.endswith("_gas_reading/config"))
    state.mqtt_message(gas_topic, b"", 102.0, retained=False)
    view = state.view(102.0)
    assert all(e.config_topic != gas_topic for d in view.devices for e in d.entities)

    topics = state.retained_topics()
    configs = [t for t in topics if t.endswith("/config")]
    assert gas_topic not in topics
    assert topics[: len(configs)] == configs
    assert set(topics[len(configs) :]) >= {
        traffic.settings.availability_topic,
        "p1lora/bridge/state",
    }
    assert not any(t.startswith("p1lora/command") for t in topics)


def test_a_foreign_bridge_on_the_same_broker_is_ignored():
    ours = BridgeTraffic(DiscoverySettings(base_topic=EXTERNAL_BASE_TOPIC))
    theirs = BridgeTraffic()  # a real installation's bridge, base topic p1lora
    state = DemoState(ours.settings, DemoInfo(broker="shared"), started=0.0)
    theirs.telegram()
    _feed(state, theirs, 1.0)
    view = state.view(1.0)
    assert view.devices == ()
    assert view.telegrams == 0
    assert state.retained_topics() == []


def test_screen_fits_the_terminal_and_shows_the_bridge():
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.telegram()
    traffic.diagnostics()
    _feed(state, traffic, 101.0)
    state.log_line(
        "tx", "INFO p1lora.common.link: tx: rendezvous -> running (handshake complete)", 101.0
    )
    view = state.view(110.0)
    for width, height in ((120, 40), (80, 24), (40, 10)):
        lines = render_screen(view, width, height, color=False)
        assert 0 < len(lines) <= height
        assert all(len(line) <= width for line in lines), width
        assert not any("\x1b" in line for line in lines)
    text = "\n".join(render_screen(view, 120, 40, color=False))
    for needle in (
        "p1-lora demo",
        "LINK  running",
        "SF7/BW250",
        "HOME ASSISTANT",
        "Electricity meter",
        "Energy consumption (tariff 1)",
        "Gas consumption",
        "1 telegram end to end",
        "rendezvous -> running (handshake complete)",
    ):
        assert needle in text, needle
    colored = render_screen(view, 120, 40, color=True)
    assert any("\x1b[" in line for line in colored)
    assert [ANSI.sub("", line) for line in colored] == render_screen(view, 120, 40, color=False)


def test_plain_lines_and_summary():
    traffic = BridgeTraffic()
    state = _state(traffic)
    traffic.telegram()
    traffic.diagnostics()
    _feed(state, traffic, 101.0)
    view = state.view(112.0)
    line = status_line(view)
    # The transmitter's power from its status report (11 dBm in the canned one).
    assert line.startswith("[00:12] link running SF7/BW250 11 dBm; RSSI -98 dBm, SNR 7.2 dB")
    assert "1 telegram(s) end to end (last 11 s ago)" in line
    assert "meter 12:00:00: import " in line

    ok = DemoResult("--duration")
    summary = summary_dict(view, ok)
    assert summary["ok"] is True
    assert summary["telegrams_delivered"] == 1
    assert summary["link"]["settings"] == "SF7/BW250"
    json.dumps(summary)  # plain JSON types only
    text = "\n".join(summary_lines(view, ok))
    assert "telegrams delivered end to end: 1" in text
    assert "result: OK" in text

    failed = DemoResult("a failure", ("p1-lora-tx exited with code 3: ...",))
    assert summary_dict(view, failed)["ok"] is False
    assert "result: FAILED" in "\n".join(summary_lines(view, failed))
    empty = _state(BridgeTraffic()).view(130.0)
    assert summary_dict(empty, ok)["ok"] is False
    assert "no telegram arrived end to end" in "\n".join(summary_lines(empty, ok))


def test_plain_status_lines_show_both_directions_and_change_every_time():
    """The plain status line used to read `power 0.000 kW` (import) on every line while the
    virtual meter exported: it now shows import and export power, the energy registers with
    all their digits, the meter's clock and the telegram count, which all move."""
    traffic = BridgeTraffic()
    state = _state(traffic)
    lines, telegrams = [], []
    for second in range(3):
        for _ in range(30):
            telegrams.append(parse_telegram(traffic.telegram()))
        traffic.diagnostics()
        _feed(state, traffic, 101.0 + 30 * second)
        lines.append(status_line(state.view(131.0 + 30 * second)))
    last = telegrams[-1]

    def total(prefix: str) -> Decimal:
        values = [last.value(f"{prefix}_tariff_{n}") for n in (1, 2)]
        assert all(isinstance(v, Decimal) for v in values)
        return sum(values, Decimal(0))

    line = lines[-1]
    assert f"import {last.value('current_electricity_usage')} kW" in line
    assert f"export {last.value('current_electricity_delivery')} kW" in line
    assert (
        f"energy in {total('electricity_used')} kWh, out {total('electricity_delivered')} kWh"
        in line
    )
    assert "90 telegram(s) end to end (last 30 s ago)" in line
    assert len(set(lines)) == 3  # every line differs from the one before
    clocks = [re.search(r"meter (\d\d:\d\d:\d\d)", text) for text in lines]
    assert all(clocks) and len({c.group(1) for c in clocks if c}) == 3


# ---------------------------------------------------------------------------------- options


def _options(*argv: str):
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default=None)
    configure(parser)
    return options_from_args(parser.parse_args(list(argv)))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--duration", "0"], "--duration"),
        (["--duration", "-5"], "--duration"),
        (["--path-loss", "300"], "--path-loss"),
        (["--mqtt-port", "1883"], "give --mqtt-host too"),
        (["--mqtt-username", "u"], "give --mqtt-host too"),
        (["--keep-entities"], "give --mqtt-host too"),
        (["--mqtt-host", "ha", "--broker", "embedded"], "--broker"),
        (["--mqtt-host", "ha", "--mqtt-port", "70000"], "--mqtt-port"),
        (["--mqtt-host", " "], "--mqtt-host"),
        (["--sim-port", "0"], "--sim-port"),
        (["--mqtt-host", "ha", "--mqtt-password-file", "pw"], "needs --mqtt-username"),
    ],
)
def test_bad_options_are_refused_with_their_name(argv, message):
    with pytest.raises(UsageError, match=re.escape(message)):
        _options(*argv)


def test_password_file_is_read_and_never_shown(tmp_path):
    secret = "correct-horse-battery"
    path = tmp_path / "pw"
    path.write_text(f"{secret}\n")
    options = _options(
        "--mqtt-host", "ha", "--mqtt-username", "demo", "--mqtt-password-file", str(path)
    )
    assert options.mqtt_password == secret
    assert secret not in repr(options)
    assert options.mqtt_port == 1883
    with pytest.raises(UsageError, match="cannot read"):
        _options(
            "--mqtt-host",
            "ha",
            "--mqtt-username",
            "d",
            "--mqtt-password-file",
            str(tmp_path / "no"),
        )
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(UsageError, match="does not hold a password"):
        _options(
            "--mqtt-host",
            "ha",
            "--mqtt-username",
            "d",
            "--mqtt-password-file",
            str(tmp_path / "empty"),
        )


def test_usage_errors_exit_2_with_a_message(capsys):
    assert cli.main(["demo", "--duration", "0"]) == 2
    assert "--duration: 0 s must be more than 0" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["demo", "--meter-profile", "nonsense"])
    assert exc.value.code == 2


# ---------------------------------------------------------------------------------- end to end


def _no_leftovers(tmpdir: Path) -> None:
    """No temporary directory and no process of the demo is left (its children's command
    lines name their files in the demo's temporary directory)."""
    assert list(tmpdir.glob("p1lora-demo-*")) == [], "the demo left its temporary directory"
    marker = str(tmpdir).encode()
    alive = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in cmdline.read_bytes():
                alive.append(cmdline.parent.name)
        except OSError:
            continue  # the process ended meanwhile
    assert alive == [], f"processes of the demo still run: {alive}"


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_with_the_embedded_broker_and_the_live_view(tmp_path):
    tmpdir = tmp_path / "tmp"
    run = run_demo(
        ["--duration", "25", "--broker", "embedded", "--json"], tmpdir, timeout=90, tty=True
    )
    assert run.code == 0, run.describe()
    summary = run.summary()
    assert summary["ok"] is True
    assert summary["telegrams_delivered"] >= 1, run.describe()
    assert summary["broker"].startswith("embedded")
    assert summary["link"]["handshakes"] >= 1
    assert summary["link"]["state"] == "running"
    assert summary["receiver_marked_offline"] is True
    names = [d["name"] for d in summary["home_assistant"]["devices"]]
    assert names == ["P1-LoRa bridge", "Electricity meter", "Gas meter"]
    # The live view: the alternate screen, entered and left, with the sections drawn.
    assert "\x1b[?1049h" in run.stdout
    assert run.stdout.rindex("\x1b[?1049l") > run.stdout.rindex("\x1b[?1049h")
    screen = ANSI.sub("", run.stdout)
    assert "HOME ASSISTANT" in screen
    assert "Energy consumption (tariff 1)" in screen
    _no_leftovers(tmpdir)


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_headless_with_its_own_mosquitto(tmp_path):
    if find_mosquitto() is None:
        pytest.skip("mosquitto not installed (apt install mosquitto)")
    tmpdir = tmp_path / "tmp"
    run = run_demo(["--headless", "--duration", "25", "--broker", "mosquitto"], tmpdir, timeout=90)
    assert run.code == 0, run.describe()
    delivered = re.search(r"telegrams delivered end to end: (\d+)", run.stdout)
    assert delivered is not None, run.describe()
    assert int(delivered.group(1)) >= 1
    assert "broker mosquitto on 127.0.0.1:" in run.stdout
    assert "result: OK" in run.stdout
    assert "\x1b[" not in run.stdout  # headless: no screen
    _no_leftovers(tmpdir)


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_on_an_existing_broker_restarts_the_transmitter_and_cleans_up(tmp_path, mqtt_broker):
    tmpdir = tmp_path / "tmp"
    filters = [f"{EXTERNAL_BASE_TOPIC}/#", f"homeassistant/+/{EXTERNAL_BASE_TOPIC}/+/config"]
    with MqttCollector(mqtt_broker.host, mqtt_broker.port, filters) as collector:

        def meter_states() -> int:
            return sum(
                1
                for m in list(collector.messages)
                if m.topic.startswith(f"{EXTERNAL_BASE_TOPIC}/meter_") and m.payload
            )

        restart_at: list[int] = []

        def restart_after_the_first_telegram() -> None:
            assert wait_until(lambda: meter_states() >= 1, timeout=60), "no telegram arrived"
            restart_at.append(meter_states())
            collector.publish(f"{EXTERNAL_BASE_TOPIC}/command", '{"cmd": "restart"}')

        run = run_demo(
            [
                "--headless",
                "--json",
                "--duration",
                "40",
                "--mqtt-host",
                mqtt_broker.host,
                "--mqtt-port",
                str(mqtt_broker.port),
            ],
            tmpdir,
            timeout=120,
            while_running=restart_after_the_first_telegram,
        )
        assert run.code == 0, run.describe()
        summary = run.summary()
        assert summary["restarts"] == {"p1-lora-tx": 1}, run.describe()
        assert meter_states() >= restart_at[0] + 2, "no telegram after the restart"
        assert summary["receiver_marked_offline"] is True
        assert summary["retained_topics_removed"] >= summary["home_assistant"]["entities"]
        assert summary["home_assistant"]["devices"][0]["name"] == "P1-LoRa demo bridge"

    # Nothing of the demo is left retained on the user's broker.
    with MqttCollector(mqtt_broker.host, mqtt_broker.port, filters) as fresh:
        time.sleep(1.0)  # retained messages arrive right after the subscription
        leftovers = [m.topic for m in fresh.messages if m.retain and m.payload]
    assert leftovers == []
    _no_leftovers(tmpdir)


@pytest.mark.e2e
@pytest.mark.slow
def test_demo_reports_a_daemon_that_cannot_start_and_cleans_up(tmp_path):
    tmpdir = tmp_path / "tmp"
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))  # where the receiver's raw server listens
        busy.listen()
        port = busy.getsockname()[1]
        run = run_demo(
            ["--headless", "--duration", "30", "--raw-port", str(port), "--broker", "embedded"],
            tmpdir,
            timeout=90,
        )
    assert run.code == 1, run.describe()
    assert "p1-lora-rx did not start: exit code 2: configuration error" in run.stderr
    assert "raw.port: raw telegram server cannot listen" in run.stderr  # its log's last lines
    assert run.stdout == ""  # no summary for a demo that never ran
    _no_leftovers(tmpdir)
