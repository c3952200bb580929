"""amqtt as the demo's embedded broker (`tools/embedded_broker.py`, the `demo` extra): the
behaviours `tests/test_mini_broker.py` checks of the hand-written broker, run against it."""

from __future__ import annotations

import socket
import sys

import pytest

pytest.importorskip("amqtt", reason="the demo extra (amqtt) is not installed")

from p1lora.common.backoff import Backoff
from p1lora.receiver.mqtt_config import MqttConfig
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.tools.embedded_broker import (
    BrokerUnavailableError,
    EmbeddedBrokerThread,
    amqtt_available,
)
from tests.helpers_mqtt import MqttCollector, wait_until

# The same tests as the hand-written broker's, for what the demo relies on. Four of its tests
# fail on amqtt 0.12.1 and are not imported (each waits for a timeout, 40 s in all):
# keepalive expiry (a client silent past its 1 s keepalive is never disconnected, no will
# after 30 s), client-id takeover (the old connection stays open), a persistent session's
# queued QoS 1 message (never delivered on reconnect) and a PUBLISH before CONNECT (the
# connection stays open). The demo uses none of them: its clients use clean sessions and
# unique ids, and a killed process closes its socket, which sends the will.
from tests.test_mini_broker import (  # noqa: F401
    TIMEOUT,
    test_invalid_filter_is_refused_in_suback,
    test_last_will_on_unclean_disconnect_but_not_on_disconnect,
    test_pingreq_gets_pingresp,
    test_qos1_round_trip_and_qos2_accepted,
    test_retained_messages_and_deletion,
    test_wildcards_and_unsubscribe,
)


@pytest.fixture
def broker():
    with EmbeddedBrokerThread("127.0.0.1", 0) as running:
        yield running


def test_amqtt_is_available():
    assert amqtt_available()


def test_mqtt_publisher_works_against_the_embedded_broker_across_a_restart():
    first = EmbeddedBrokerThread("127.0.0.1", 0)
    first.start()
    port = first.port
    assert port > 0
    config = MqttConfig(
        host="127.0.0.1", port=port, base_topic="demo", client_id="bridge", reconnect_min=0.05
    )
    publisher = MqttPublisher(config, backoff=Backoff(0.05, 0.3, rng=lambda: 0.5))
    publisher.start()
    try:
        assert publisher.wait_connected(TIMEOUT)
        publisher.publish("demo/meter/state", b'{"power": 1}', retain=True)
        with MqttCollector("127.0.0.1", port, ["demo/#"]) as c:
            c.wait_for("demo/bridge/availability", b"online")
            c.wait_for("demo/meter/state", b'{"power": 1}')
        first.stop()
        assert wait_until(lambda: not publisher.connected)
        second = EmbeddedBrokerThread("127.0.0.1", port)  # same port, empty: nothing retained
        second.start()
        try:
            assert publisher.wait_connected(TIMEOUT)
            with MqttCollector("127.0.0.1", port, ["demo/#"]) as c:
                c.wait_for("demo/meter/state", b'{"power": 1}')
                c.wait_for("demo/bridge/availability", b"online")
            with MqttCollector("127.0.0.1", port, ["demo/#"]) as late:
                assert late.wait_for("demo/meter/state").retain
                publisher.stop()
                late.wait_for("demo/bridge/availability", b"offline")
        finally:
            second.stop()
    finally:
        publisher.stop()
        first.stop()


def test_port_in_use_is_reported():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        with pytest.raises(OSError):
            EmbeddedBrokerThread("127.0.0.1", holder.getsockname()[1]).start()


def test_without_the_demo_extra_the_error_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "amqtt.broker", None)  # import fails as if not installed
    assert not amqtt_available()
    with pytest.raises(BrokerUnavailableError, match=r"p1-lora\[demo\]"):
        EmbeddedBrokerThread().start()
