"""`p1-lora-rx` as a daemon: the watchdog's health check and the password file advice."""

from __future__ import annotations

import argparse
import logging
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from p1lora.common.backoff import Backoff
from p1lora.common.link import LinkReport
from p1lora.common.radio_types import RadioSettings
from p1lora.hardware.radio import RadioFault
from p1lora.receiver.cli import RxDaemon, broker_password
from p1lora.receiver.mqtt_config import MqttConfig
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.receiver.options import RX_OPTIONS
from p1lora.receiver.raw_server import RawTelegramServer
from p1lora.receiver.sinks import DeliveryLog, RawMqttSink
from p1lora.service.config import ConfigError, load_config
from p1lora.service.observers import RadioHealth
from tests.helpers_mqtt import MqttCollector, wait_until

if TYPE_CHECKING:
    from tests.mqtt_broker import MosquittoBroker


SETTINGS = RadioSettings(869_525_000, sf=7, bw_hz=250_000, tx_power_dbm=14)


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _daemon(
    publisher: MqttPublisher | None, raw_server: RawTelegramServer | None
) -> tuple[RxDaemon, RadioHealth]:
    health = RadioHealth(grace_s=300.0)
    parts = cast(Any, SimpleNamespace(health=health))
    runtime = cast(Any, None)
    daemon = RxDaemon(
        parts,
        runtime,
        publisher=publisher,
        bridge=None,
        raw_server=raw_server,
        deliveries=DeliveryLog(),
    )
    return daemon, health


def test_an_unreachable_broker_keeps_the_watchdog_fed():
    """The reconnect loop is alive: a broker outage is no reason for systemd to restart us."""
    config = MqttConfig(
        host="127.0.0.1", port=_closed_port(), reconnect_min=0.05, reconnect_max=0.1
    )
    publisher = MqttPublisher(config, backoff=Backoff(0.05, 0.1, rng=lambda: 0.5))
    daemon, _ = _daemon(publisher, None)
    assert daemon.health(0.0) is None  # not started yet
    publisher.start()
    try:
        assert wait_until(lambda: publisher.stats().connect_failures >= 2, 10)
        assert not publisher.connected
        assert daemon.health(0.0) is None
    finally:
        publisher.stop()
    assert daemon.health(0.0) is None  # stopped on purpose (shutdown) is not death


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_dead_mqtt_network_thread_stops_the_watchdog(
    mqtt_broker_session: MosquittoBroker, mqtt_base_topic: str
):
    publisher = MqttPublisher(mqtt_broker_session.mqtt_config(base_topic=mqtt_base_topic))
    daemon, _ = _daemon(publisher, None)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        assert daemon.health(0.0) is None
        # paho's network thread ends when something inside its loop raises; simulate that.
        client: Any = publisher._client
        client.loop_misc = _raise
        assert wait_until(lambda: daemon.health(0.0) is not None, 10)
        assert daemon.health(0.0) == (
            "the MQTT network thread is not running (nothing is published)"
        )
    finally:
        publisher.stop(timeout=0.5)


def _raise(*args: object) -> None:
    raise RuntimeError("simulated failure inside paho's network loop")


def test_a_dead_raw_server_thread_stops_the_watchdog(caplog: pytest.LogCaptureFixture):
    server = RawTelegramServer("127.0.0.1", 0)
    daemon, _ = _daemon(None, server)
    server.start()
    try:
        assert daemon.health(0.0) is None
        broken = threading.Event()

        def accept() -> None:
            broken.set()
            raise RuntimeError("simulated bug in the server thread")

        server._accept = accept  # type: ignore[method-assign]
        with caplog.at_level(logging.ERROR), socket.create_connection(("127.0.0.1", server.port)):
            assert broken.wait(5)
            assert wait_until(lambda: daemon.health(0.0) is not None, 5)
        assert daemon.health(0.0) == "the raw telegram server thread is not running"
    finally:
        server.close(timeout=0.5)
    assert daemon.health(0.0) is None  # closed on purpose


def test_the_radio_is_still_checked_first():
    daemon, health = _daemon(None, None)
    health.radio_fault(0.0, RadioFault("SX127x did not answer", recovered=False))
    assert daemon.health(100.0) is None
    problem = daemon.health(400.0)
    assert problem is not None and "radio" in problem


def _config(path: Path) -> Any:
    parser = argparse.ArgumentParser()
    RX_OPTIONS.add_arguments(parser)
    return load_config(RX_OPTIONS, parser.parse_args(["--config", str(path)]), {})


def test_password_file_advice_keeps_it_readable_for_the_service_user(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    secret = tmp_path / "mqtt-password"
    secret.write_text("s3cret!\n")
    secret.chmod(0o644)
    config_file = tmp_path / "rx.toml"
    config_file.write_text(
        f'[radio]\nbackend = "sim"\n[mqtt]\nhost = "broker"\nusername = "ha"\npassword_file = "{secret}"\n'
    )
    config = _config(config_file)
    with caplog.at_level(logging.WARNING):
        assert broker_password(config) == "s3cret!"
    assert f"sudo chown root:p1lora {secret} and sudo chmod 640 {secret}" in caplog.text
    assert "s3cret" not in caplog.text


def test_password_in_a_public_config_file_gets_the_same_advice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    config_file = tmp_path / "rx.toml"
    config_file.write_text(
        '[radio]\nbackend = "sim"\n[mqtt]\nhost = "broker"\nusername = "ha"\npassword = "s3cret!"\n'
    )
    config_file.chmod(0o644)
    config = _config(config_file)
    with caplog.at_level(logging.WARNING):
        assert broker_password(config) == "s3cret!"
    assert f"sudo chown root:p1lora {config_file} and sudo chmod 640 {config_file}" in caplog.text
    assert "s3cret" not in caplog.text


# ---------------------------------------------------------------------------- [raw] mqtt


def test_raw_telegrams_are_published_byte_for_byte_and_not_retained(
    mqtt_broker_session: MosquittoBroker, mqtt_base_topic: str, telegram_dir: Path
):
    topic = f"{mqtt_base_topic}/telegram/raw"
    telegrams = [
        (telegram_dir / name).read_bytes()
        for name in sorted(p.name for p in telegram_dir.glob("*.txt"))[:3]
    ]
    assert len(telegrams) == 3 and all(b"\r\n" in t for t in telegrams)
    publisher = MqttPublisher(mqtt_broker_session.mqtt_config(base_topic=mqtt_base_topic))
    sink = RawMqttSink(publisher)
    assert sink.topic == topic
    with MqttCollector(mqtt_broker_session.host, mqtt_broker_session.port, [topic]) as collector:
        publisher.start()
        try:
            assert publisher.wait_connected(10)
            report = LinkReport(-90.0, 5.0, SETTINGS, 40)
            for raw in telegrams:
                sink.telegram(raw, 0.0, report)
            assert wait_until(lambda: len(collector.on(topic)) == 3, 10)
        finally:
            publisher.stop()
        received = collector.on(topic)
        assert [m.payload for m in received] == telegrams  # exact bytes, CRLF and CRC included
        assert not any(m.retain for m in received)
    # Not retained: a late subscriber gets nothing stale.
    with MqttCollector(mqtt_broker_session.host, mqtt_broker_session.port, [topic]) as late:
        time.sleep(0.3)
        assert late.on(topic) == []


@pytest.mark.parametrize(
    ("argv", "problem"),
    [
        (
            ["--raw-mqtt", "--no-mqtt-enabled", "--raw-port", "8088"],
            "raw.mqtt is true but mqtt.enabled is false",
        ),
    ],
)
def test_raw_mqtt_needs_the_broker(tmp_path: Path, argv: list[str], problem: str):
    config_file = tmp_path / "rx.toml"
    config_file.write_text('[radio]\nbackend = "sim"\n')
    parser = argparse.ArgumentParser()
    RX_OPTIONS.add_arguments(parser)
    with pytest.raises(ConfigError) as caught:
        load_config(RX_OPTIONS, parser.parse_args(["--config", str(config_file), *argv]), {})
    assert problem in str(caught.value)


def test_raw_mqtt_has_a_flag_an_env_variable_and_defaults_to_off():
    option = RX_OPTIONS["raw.mqtt"]
    assert (option.flag_name, option.env_name, option.default) == (
        "--raw-mqtt",
        "P1LORA_RAW_MQTT",
        False,
    )
