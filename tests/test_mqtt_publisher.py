"""MqttPublisher against a real Mosquitto: availability, queueing, reconnects, guards, auth, TLS."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from p1lora.common.backoff import Backoff
from p1lora.receiver.mqtt_config import MqttConfig, MqttConfigError
from p1lora.receiver.mqtt_publisher import (
    MqttPublisher,
    validate_topic,
    validate_topic_filter,
)
from tests.helpers_mqtt import MqttCollector, TcpGate, wait_until

if TYPE_CHECKING:
    from tests.mqtt_broker import MosquittoBroker


def _fast_backoff() -> Backoff:
    return Backoff(0.05, 0.3, rng=lambda: 0.5)


@pytest.fixture
def collector(mqtt_broker_session: MosquittoBroker, mqtt_base_topic: str):
    with MqttCollector(
        mqtt_broker_session.host, mqtt_broker_session.port, [f"{mqtt_base_topic}/#"]
    ) as c:
        yield c


def _publisher(broker: MosquittoBroker, base: str, **overrides) -> MqttPublisher:
    return MqttPublisher(broker.mqtt_config(base_topic=base, **overrides), backoff=_fast_backoff())


# ---------------------------------------------------------------- availability


def test_online_on_connect_and_offline_on_stop(mqtt_broker_session, mqtt_base_topic, collector):
    publisher = _publisher(mqtt_broker_session, mqtt_base_topic)
    availability = f"{mqtt_base_topic}/bridge/availability"
    assert publisher.availability_topic == availability
    publisher.start()
    assert publisher.wait_connected(10)
    collector.wait_for(availability, b"online")
    publisher.stop()
    collector.wait_for(availability, b"offline")
    assert collector.payloads(availability) == [b"online", b"offline"]
    # Both are retained: a late subscriber (Home Assistant after a restart) sees "offline".
    with MqttCollector(mqtt_broker_session.host, mqtt_broker_session.port, [availability]) as late:
        message = late.wait_for(availability)
        assert (message.payload, message.retain) == (b"offline", True)
    assert not publisher.connected
    publisher.stop()  # idempotent


def test_last_will_on_unclean_disconnect_then_online_again(
    mqtt_broker_session, mqtt_base_topic, collector
):
    """Cutting the TCP connection (no DISCONNECT) makes the broker publish the will."""
    availability = f"{mqtt_base_topic}/bridge/availability"
    with TcpGate(mqtt_broker_session.host, mqtt_broker_session.port) as gate:
        gate.open()
        publisher = MqttPublisher(
            mqtt_broker_session.mqtt_config(port=gate.port, base_topic=mqtt_base_topic),
            # Slow enough that the broker has certainly seen the old connection die first.
            backoff=Backoff(0.3, 1.0, rng=lambda: 0.0),
        )
        publisher.start()
        try:
            collector.wait_for(availability, b"online")
            gate.cut()
            collector.wait_for(availability, b"offline")
            assert wait_until(lambda: len(collector.payloads(availability)) >= 3)
            assert collector.payloads(availability)[:3] == [b"online", b"offline", b"online"]
            assert publisher.wait_connected(10)
            assert publisher.reconnects == 1
        finally:
            publisher.stop()


# ---------------------------------------------------------------- publishing and queueing


def test_publish_qos0_qos1_and_retained(mqtt_broker_session, mqtt_base_topic, collector):
    with _publisher(mqtt_broker_session, mqtt_base_topic) as publisher:
        assert publisher.wait_connected(10)
        assert publisher.publish(f"{mqtt_base_topic}/a", b"zero")
        assert publisher.publish(f"{mqtt_base_topic}/b", "one", qos=1)
        assert publisher.publish(f"{mqtt_base_topic}/state", b'{"x": 1}', retain=True, qos=1)
        collector.wait_for(f"{mqtt_base_topic}/a", b"zero")
        collector.wait_for(f"{mqtt_base_topic}/b", b"one")
        collector.wait_for(f"{mqtt_base_topic}/state", b'{"x": 1}')
        stats = publisher.stats()
        assert stats.published >= 4  # three plus "online"
        assert stats.retained_topics == 1
        assert stats.dropped == 0
    with MqttCollector(
        mqtt_broker_session.host, mqtt_broker_session.port, [f"{mqtt_base_topic}/state"]
    ) as late:
        assert late.wait_for(f"{mqtt_base_topic}/state").retain


def test_broker_down_at_start_queues_bounded_and_republishes_newest_retained(
    mqtt_broker_session, mqtt_base_topic, collector, caplog
):
    caplog.set_level(logging.DEBUG, logger="p1lora.receiver.mqtt_publisher")
    gate = TcpGate(mqtt_broker_session.host, mqtt_broker_session.port)  # closed: refused
    config = mqtt_broker_session.mqtt_config(
        port=gate.port, base_topic=mqtt_base_topic, queue_size=5
    )
    publisher = MqttPublisher(config, backoff=_fast_backoff())
    publisher.start()  # must not raise although nothing listens
    try:
        assert wait_until(lambda: publisher.stats().connect_failures >= 3)
        assert not publisher.connected
        for i in range(12):
            assert publisher.publish(f"{mqtt_base_topic}/event", f"e{i}", qos=1) is False
        for value in (b"1", b"2", b"3"):
            assert publisher.publish(f"{mqtt_base_topic}/state", value, retain=True) is False
        stats = publisher.stats()
        assert (stats.queued, stats.dropped, stats.retained_topics) == (5, 7, 1)
        # "Broker down" was logged once as a warning; the retries only at debug level.
        warnings = [
            r
            for r in caplog.records
            if r.levelno >= logging.WARNING and "cannot connect" in r.message
        ]
        assert len(warnings) == 1, [r.message for r in warnings]
        assert "ConnectionRefusedError" in warnings[0].message

        gate.open()
        assert publisher.wait_connected(10)
        collector.wait_for(f"{mqtt_base_topic}/bridge/availability", b"online")
        collector.wait_for(f"{mqtt_base_topic}/state", b"3")
        events = collector.wait_count(f"{mqtt_base_topic}/event", 5)
        # The oldest were dropped; what was kept arrives in order.
        assert events == [b"e7", b"e8", b"e9", b"e10", b"e11"]
        assert collector.payloads(f"{mqtt_base_topic}/state") == [b"3"]
        assert publisher.stats().queued == 0
        assert publisher.reconnects == 0  # the first connection is not a reconnect
    finally:
        publisher.stop()
        gate.close()


def test_broker_restart_republishes_retained_state(mqtt_broker: MosquittoBroker, mqtt_base_topic):
    """A broker without persistence forgets retained messages; the publisher restores them."""
    publisher = _publisher(mqtt_broker, mqtt_base_topic)
    state = f"{mqtt_base_topic}/meter/state"
    deleted = f"{mqtt_base_topic}/old/config"
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        publisher.publish(state, b"v1", retain=True, qos=1)
        publisher.publish(deleted, b"{}", retain=True, qos=1)
        mqtt_broker.kill()
        assert wait_until(lambda: not publisher.connected)
        publisher.publish(state, b"v2", retain=True, qos=1)
        publisher.publish(state, b"v3", retain=True, qos=1)
        publisher.publish(deleted, b"", retain=True, qos=1)  # a delete while away
        mqtt_broker.start()
        assert publisher.wait_connected(10)
        assert publisher.reconnects == 1
        with MqttCollector(mqtt_broker.host, mqtt_broker.port, [f"{mqtt_base_topic}/#"]) as c:
            c.wait_for(state, b"v3")
            c.wait_for(f"{mqtt_base_topic}/bridge/availability", b"online")
            assert b"v2" not in c.payloads(state)
            assert b"{}" not in c.payloads(deleted)
        assert publisher.stats().retained_topics == 2
    finally:
        publisher.stop()


def test_publish_from_many_threads_keeps_per_thread_order(
    mqtt_broker_session, mqtt_base_topic, collector
):
    with _publisher(mqtt_broker_session, mqtt_base_topic) as publisher:
        assert publisher.wait_connected(10)

        def worker(n: int) -> None:
            for i in range(150):
                publisher.publish(f"{mqtt_base_topic}/t{n}", str(i), qos=1)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for n in range(4):
            got = collector.wait_count(f"{mqtt_base_topic}/t{n}", 150)
            assert got == [str(i).encode() for i in range(150)]


def test_invalid_publish_arguments_raise(mqtt_broker_session, mqtt_base_topic):
    publisher = _publisher(mqtt_broker_session, mqtt_base_topic)
    with pytest.raises(ValueError, match="wildcards"):
        publisher.publish("a/+/b", b"x")
    with pytest.raises(ValueError, match="QoS"):
        publisher.publish("a/b", b"x", qos=2)
    with pytest.raises(TypeError, match="payload"):
        publisher.publish("a/b", 12)  # type: ignore[arg-type]
    assert publisher.publish("a/b", b"x") is False  # not started: queued
    assert publisher.stats().queued == 1


def test_publish_after_stop_is_ignored(mqtt_broker_session, mqtt_base_topic):
    publisher = _publisher(mqtt_broker_session, mqtt_base_topic)
    publisher.start()
    assert publisher.wait_connected(10)
    publisher.stop()
    assert publisher.publish(f"{mqtt_base_topic}/late", b"x") is False
    assert publisher.stats().queued == 0
    with pytest.raises(RuntimeError):
        publisher.start()


# ---------------------------------------------------------------- subscriptions and guards


def test_subscribe_handlers_and_guard_against_exceptions(
    mqtt_broker_session, mqtt_base_topic, collector, caplog
):
    received: list[tuple[str, bytes]] = []
    got_two = threading.Event()

    def bad_handler(topic: str, payload: bytes) -> None:
        raise RuntimeError("handler bug")

    def good_handler(topic: str, payload: bytes) -> None:
        received.append((topic, payload))
        if len(received) == 2:
            got_two.set()

    status = f"{mqtt_base_topic}/ha/status"
    with _publisher(mqtt_broker_session, mqtt_base_topic) as publisher:
        publisher.subscribe(status, bad_handler)
        publisher.subscribe(f"{mqtt_base_topic}/ha/+", good_handler)
        assert publisher.wait_connected(10)
        # Subscriptions are in place once our own probe comes back to us.
        probe_seen = threading.Event()
        publisher.subscribe(f"{mqtt_base_topic}/probe", lambda t, p: probe_seen.set())
        assert wait_until(
            lambda: publisher.publish(f"{mqtt_base_topic}/probe", b"p") and probe_seen.wait(0.2)
        )
        collector.publish(status, b"online")
        collector.publish(status, b"offline")
        assert got_two.wait(10)
        assert received == [(status, b"online"), (status, b"offline")]
        assert publisher.stats().callback_errors == 2
        assert publisher.connected  # paho's thread survived
        assert "handler bug" in caplog.text


def test_subscriptions_and_hooks_survive_reconnect(mqtt_broker: MosquittoBroker, mqtt_base_topic):
    calls: list[str] = []
    status = f"{mqtt_base_topic}/status"
    messages: list[bytes] = []
    message_event = threading.Event()

    def hook() -> None:
        calls.append("connect")
        raise ValueError("hook bug must not stop the next hook")

    def second_hook() -> None:
        calls.append("second")

    def on_status(topic: str, payload: bytes) -> None:
        messages.append(payload)
        message_event.set()

    publisher = _publisher(mqtt_broker, mqtt_base_topic)
    publisher.add_connect_hook(hook)
    publisher.add_connect_hook(second_hook)
    publisher.subscribe(status, on_status)
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        assert wait_until(lambda: calls == ["connect", "second"])
        mqtt_broker.restart()
        assert wait_until(lambda: calls == ["connect", "second"] * 2)
        # Retained on the broker: it reaches us once our renewed subscription is active.
        with MqttCollector(mqtt_broker.host, mqtt_broker.port, [status]) as other:
            other.publish(status, b"online", retain=True)
        assert message_event.wait(10)
        assert messages == [b"online"]
        assert publisher.stats().callback_errors == 2
    finally:
        publisher.stop()


def test_unsubscribe_stops_delivery(mqtt_broker_session, mqtt_base_topic, collector):
    got: list[bytes] = []
    first = threading.Event()
    topic = f"{mqtt_base_topic}/cmd"

    def handler(t: str, payload: bytes) -> None:
        got.append(payload)
        first.set()

    with _publisher(mqtt_broker_session, mqtt_base_topic) as publisher:
        publisher.subscribe(topic, handler)
        assert publisher.wait_connected(10)
        assert wait_until(lambda: publisher.publish(topic, b"1") and first.wait(0.2))
        publisher.unsubscribe(topic, handler)
        count = len(got)
        marker = f"{mqtt_base_topic}/marker"
        seen = threading.Event()
        last_marker = threading.Event()

        def on_marker(t: str, payload: bytes) -> None:
            seen.set()
            if payload == b"m2":
                last_marker.set()

        publisher.subscribe(marker, on_marker)
        assert wait_until(lambda: publisher.publish(marker, b"m") and seen.wait(0.2))
        # The broker delivers in order: had "2" still been sent to us, it would come before "m2".
        publisher.publish(topic, b"2")
        publisher.publish(marker, b"m2")
        assert last_marker.wait(10)
        collector.wait_for(topic, b"2")  # others still get it
        assert len(got) == count


# ---------------------------------------------------------------- authentication and TLS


def test_username_password(mqtt_broker_auth: MosquittoBroker, mqtt_base_topic, caplog):
    caplog.set_level(logging.DEBUG)
    good = MqttPublisher(mqtt_broker_auth.mqtt_config(base_topic=mqtt_base_topic))
    good.start()
    try:
        assert good.wait_connected(10)
    finally:
        good.stop()
    wrong = "not-" + (mqtt_broker_auth.password or "")
    bad_config = mqtt_broker_auth.mqtt_config(base_topic=mqtt_base_topic, password=wrong)
    bad = MqttPublisher(bad_config, backoff=_fast_backoff())
    bad.start()
    try:
        assert wait_until(lambda: bad.stats().connect_failures >= 3)
        assert not bad.connected
    finally:
        bad.stop()
    refused = [r for r in caplog.records if "refused the connection" in r.message]
    assert len(refused) >= 3
    # Logged as an error once; the retries only at debug level.
    assert [r.levelno for r in refused].count(logging.ERROR) == 1
    assert {r.levelno for r in refused} == {logging.ERROR, logging.DEBUG}
    assert "not authori" in refused[0].message.lower()
    # The secret never reaches a log line or a repr.
    for secret in (mqtt_broker_auth.password or "", wrong):
        assert secret not in caplog.text
        assert secret not in repr(bad_config)
        assert secret not in bad_config.describe()
    assert "password <set>" in bad_config.describe()


def test_tls_verifies_the_broker(mqtt_broker_tls: MosquittoBroker, mqtt_base_topic):
    assert mqtt_broker_tls.tls is not None
    publisher = MqttPublisher(
        mqtt_broker_tls.mqtt_config(base_topic=mqtt_base_topic, ca_file=mqtt_broker_tls.tls.ca_file)
    )
    publisher.start()
    try:
        assert publisher.wait_connected(10)
        assert publisher.publish(f"{mqtt_base_topic}/x", b"over tls", qos=1)
    finally:
        publisher.stop()


def test_tls_wrong_ca_is_refused_with_a_clear_message(
    mqtt_broker_tls: MosquittoBroker, mqtt_base_topic, caplog
):
    assert mqtt_broker_tls.tls is not None
    config = mqtt_broker_tls.mqtt_config(
        base_topic=mqtt_base_topic, ca_file=mqtt_broker_tls.tls.other_ca_file
    )
    publisher = MqttPublisher(config, backoff=_fast_backoff())
    publisher.start()
    try:
        assert wait_until(lambda: publisher.stats().connect_failures >= 2)
        assert not publisher.connected
    finally:
        publisher.stop()
    assert "certificate verify failed" in caplog.text


def test_tls_host_name_check_and_the_insecure_option(
    mqtt_broker_tls: MosquittoBroker, mqtt_base_topic, caplog
):
    """The certificate names "localhost"; 127.0.0.1 fails unless tls_insecure is set."""
    strict = MqttPublisher(
        mqtt_broker_tls.mqtt_config(host="127.0.0.1", base_topic=mqtt_base_topic),
        backoff=_fast_backoff(),
    )
    insecure = MqttPublisher(
        mqtt_broker_tls.mqtt_config(host="127.0.0.1", base_topic=mqtt_base_topic, tls_insecure=True)
    )
    strict.start()
    insecure.start()
    try:
        assert insecure.wait_connected(10)
        assert wait_until(lambda: strict.stats().connect_failures >= 2)
        assert not strict.connected
    finally:
        strict.stop()
        insecure.stop()
    assert "hostname mismatch" in caplog.text or "IP address mismatch" in caplog.text
    assert "host name not verified" in insecure.config.describe()


def test_tls_client_certificate(mqtt_broker_tls: MosquittoBroker, mqtt_base_topic, caplog):
    tls = mqtt_broker_tls.tls
    assert tls is not None
    with_cert = MqttPublisher(
        mqtt_broker_tls.mqtt_config(
            port=mqtt_broker_tls.mtls_port,
            base_topic=mqtt_base_topic,
            cert_file=tls.client_cert,
            key_file=tls.client_key,
        )
    )
    without_cert = MqttPublisher(
        mqtt_broker_tls.mqtt_config(port=mqtt_broker_tls.mtls_port, base_topic=mqtt_base_topic),
        backoff=_fast_backoff(),
    )
    with_cert.start()
    without_cert.start()
    try:
        assert with_cert.wait_connected(10)
        assert wait_until(lambda: without_cert.stats().connect_failures >= 2)
        assert not without_cert.connected
    finally:
        with_cert.stop()
        without_cert.stop()
    assert "client certificate" in caplog.text


def test_missing_tls_file_is_reported_before_connecting(tmp_path: Path):
    config = MqttConfig(host="localhost", ca_file=tmp_path / "missing-ca.pem")
    with pytest.raises(MqttConfigError, match="ca_file"):
        MqttPublisher(config)


# ---------------------------------------------------------------- configuration value


def test_config_defaults_and_secret_handling():
    config = MqttConfig(host="broker.lan", username="ha", password="s3cret!")
    assert config.effective_port == 1883
    assert config.base_topic == "p1lora"
    assert config.discovery_prefix == "homeassistant"
    assert config.availability_topic == "p1lora/bridge/availability"
    assert config.topic("meter", "state") == "p1lora/meter/state"
    assert config.client_id.startswith("p1lora-rx-")
    assert "s3cret!" not in repr(config)
    assert "s3cret!" not in config.describe()
    assert MqttConfig(tls=True).effective_port == 8883
    tls_implied = MqttConfig(ca_file="/etc/ssl/ca.pem")  # type: ignore[arg-type]
    assert tls_implied.tls and tls_implied.ca_file == Path("/etc/ssl/ca.pem")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": ""}, "host"),
        ({"host": "bad host"}, "host"),
        ({"port": 0}, "port"),
        ({"port": 70000}, "port"),
        ({"password": "x"}, "username"),
        ({"username": ""}, "username"),
        ({"cert_file": None, "key_file": "/k.pem"}, "key_file"),
        ({"client_id": ""}, "client_id"),
        ({"base_topic": "p1lora/"}, "base_topic"),
        ({"base_topic": "a/#"}, "base_topic"),
        ({"base_topic": "a//b"}, "base_topic"),
        ({"discovery_prefix": "$SYS"}, "discovery_prefix"),
        ({"keepalive": 1}, "keepalive"),
        ({"queue_size": 0}, "queue_size"),
        ({"reconnect_min": 5, "reconnect_max": 1}, "reconnect"),
        ({"connect_timeout": 0}, "connect_timeout"),
    ],
)
def test_config_rejects_bad_values(changes, message):
    with pytest.raises(MqttConfigError, match=message):
        MqttConfig(**changes)


def test_topic_validation():
    validate_topic("a/b/c")
    validate_topic_filter("a/+/c")
    validate_topic_filter("a/#")
    validate_topic_filter("#")
    for bad in ("a/#/c", "a/b#", "a+/b", ""):
        with pytest.raises(ValueError):
            validate_topic_filter(bad)
    for bad in ("", "a/+", "a/#", "a\x00b"):
        with pytest.raises(ValueError):
            validate_topic(bad)


# ---------------------------------------------------------------- backoff


def test_backoff_doubles_to_the_cap_with_bounded_jitter():
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0])
    backoff = Backoff(1.0, 10.0, jitter=0.5, rng=lambda: next(draws))
    delays = [backoff.next_delay() for _ in range(7)]
    # base 1, 2, 4, 8, 10, 10, 10; the draw shortens each by up to 50 %.
    assert delays == [1.0, 1.0, 3.0, 8.0, 10.0, 10.0, 10.0]
    assert backoff.attempts == 7
    backoff.reset()
    assert backoff.peek_base() == 1.0


def test_backoff_never_exceeds_the_maximum_even_after_a_long_outage():
    backoff = Backoff(0.5, 60.0)
    delays = [backoff.next_delay() for _ in range(5000)]
    assert max(delays) <= 60.0
    assert min(delays[20:]) >= 60.0 * (1 - backoff.jitter)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"initial": 0},
        {"initial": 5, "maximum": 1},
        {"factor": 0.5},
        {"jitter": 1.0},
        {"jitter": -0.1},
    ],
)
def test_backoff_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        Backoff(**kwargs)
