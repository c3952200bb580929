"""amqtt as the demo's embedded broker (`tools/embedded_broker.py`, the `demo` extra), exercised
with paho (the client the bridge uses) and raw sockets: what the demo and `p1-lora bench e2e`
rely on (retained messages, last will on a dropped connection, QoS 1, wildcards, the bridge's
publisher reconnecting across a broker restart).

What amqtt 0.12.1 does not do, measured against the hand-written broker it replaced (each
waited for a timeout): a client silent past its keepalive is never disconnected (no will after
30 s), a second connection with the same client id does not close the first, a persistent
session's queued QoS 1 message is not delivered on reconnect, and a PUBLISH before CONNECT
leaves the connection open. The demo uses none of them: its clients use clean sessions and
unique ids, and a killed process closes its socket, which sends the will.
"""

from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading

import pytest

pytest.importorskip("amqtt", reason="the demo extra (amqtt) is not installed")

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from p1lora.common.backoff import Backoff
from p1lora.receiver.mqtt_config import MqttConfig
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.tools.demo.broker import choose_broker, find_mosquitto
from p1lora.tools.demo.options import DemoOptions
from p1lora.tools.embedded_broker import (
    BrokerUnavailableError,
    EmbeddedBrokerThread,
    amqtt_available,
)
from tests.helpers_mqtt import MqttCollector, wait_until

TIMEOUT = 10.0


@pytest.fixture
def broker():
    with EmbeddedBrokerThread("127.0.0.1", 0) as running:
        yield running


def paho_client(
    broker: EmbeddedBrokerThread,
    client_id: str,
    *,
    will: tuple[str, bytes] | None = None,
    clean: bool = True,
    keepalive: int = 30,
) -> mqtt.Client:
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean)
    if will:
        client.will_set(will[0], will[1], qos=1, retain=False)
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect(broker.host, broker.port, keepalive=keepalive)
    client.loop_start()
    assert connected.wait(TIMEOUT)
    return client


def close(client: mqtt.Client) -> None:
    client.disconnect()
    client.loop_stop()


def raw_connect(broker: EmbeddedBrokerThread, client_id: str, *, keepalive: int = 0, will=None):
    """CONNECT over a plain socket; returns the socket after checking CONNACK."""
    flags = 0x02
    payload = struct.pack("!H", len(client_id)) + client_id.encode()
    if will:
        flags |= 0x04
        topic, message = will
        payload += struct.pack("!H", len(topic)) + topic.encode()
        payload += struct.pack("!H", len(message)) + message
    body = b"\x00\x04MQTT\x04" + bytes([flags]) + struct.pack("!H", keepalive) + payload
    sock = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
    sock.sendall(bytes([0x10, len(body)]) + body)
    assert sock.recv(4) == b"\x20\x02\x00\x00"
    return sock


def test_retained_messages_and_deletion(broker):
    publisher = paho_client(broker, "pub")
    try:
        publisher.publish("r/a", b"A", qos=1, retain=True).wait_for_publish(TIMEOUT)
        publisher.publish("r/b", b"B1", qos=1, retain=True).wait_for_publish(TIMEOUT)
        publisher.publish("r/b", b"B2", qos=1, retain=True).wait_for_publish(TIMEOUT)
        with MqttCollector(broker.host, broker.port, ["r/#"]) as first:
            message = first.wait_for("r/b")
            assert (message.payload, message.retain) == (b"B2", True)
            assert first.wait_for("r/a").payload == b"A"
            # A live publish reaches subscribers without the retain flag.
            publisher.publish("r/c", b"C", qos=1, retain=True).wait_for_publish(TIMEOUT)
            assert first.wait_for("r/c").retain is False
        publisher.publish("r/a", b"", qos=1, retain=True).wait_for_publish(TIMEOUT)  # delete
        with MqttCollector(broker.host, broker.port, ["r/#"]) as second:
            second.wait_for("r/b")
            second.wait_for("r/c")
            assert second.on("r/a") == []
    finally:
        close(publisher)


def test_wildcards_and_unsubscribe(broker):
    publisher = paho_client(broker, "pub")
    try:
        with MqttCollector(broker.host, broker.port, ["meter/+/power", "bridge/#"]) as c:
            for topic in (
                "meter/1/power",
                "meter/1/energy",
                "meter/1/power/x",
                "bridge",
                "bridge/a/b",
            ):
                publisher.publish(topic, topic.encode(), qos=1).wait_for_publish(TIMEOUT)
            publisher.publish("end", b"", qos=1)
            c.wait_for("bridge/a/b")
            assert sorted(m.topic for m in c.messages) == ["bridge", "bridge/a/b", "meter/1/power"]

        got: list[str] = []
        unsubscribed = threading.Event()
        client = paho_client(broker, "unsub")
        client.on_message = lambda cl, u, m: got.append(m.topic)
        client.on_unsubscribe = lambda *args: unsubscribed.set()
        subscribed = threading.Event()
        client.on_subscribe = lambda *args: subscribed.set()
        client.subscribe("x/#", qos=1)
        assert subscribed.wait(TIMEOUT)
        publisher.publish("x/1", b"1", qos=1).wait_for_publish(TIMEOUT)
        assert wait_until(lambda: got == ["x/1"])
        client.unsubscribe("x/#")
        assert unsubscribed.wait(TIMEOUT)
        publisher.publish("x/2", b"2", qos=1).wait_for_publish(TIMEOUT)
        with MqttCollector(broker.host, broker.port, ["x/#"]) as probe:
            publisher.publish("x/3", b"3", qos=1).wait_for_publish(TIMEOUT)
            probe.wait_for("x/3")
        assert got == ["x/1"]
        close(client)
    finally:
        close(publisher)


def test_invalid_filter_is_refused_in_suback(broker):
    codes: list[int] = []
    done = threading.Event()
    client = paho_client(broker, "bad-filter")

    def on_subscribe(c, u, mid, reason_codes, properties):
        codes.extend(rc.value for rc in reason_codes)
        done.set()

    client.on_subscribe = on_subscribe
    client._send_subscribe(False, [(b"a/#/b", 0)])  # paho refuses to send it otherwise
    try:
        assert done.wait(TIMEOUT)
        assert codes == [0x80]
    finally:
        close(client)


def test_qos1_round_trip_and_qos2_accepted(broker):
    publisher = paho_client(broker, "pub")
    try:
        with MqttCollector(broker.host, broker.port, ["q/#"], qos=1) as c:
            info = publisher.publish("q/1", b"one", qos=1)
            info.wait_for_publish(TIMEOUT)
            assert info.is_published()  # PUBACK came back
            assert c.wait_for("q/1").qos == 1
            info2 = publisher.publish("q/2", b"two", qos=2)
            info2.wait_for_publish(TIMEOUT)
            assert info2.is_published()  # PUBREC/PUBREL/PUBCOMP completed
            message = c.wait_for("q/2")
            assert message.qos == 1  # the broker grants at most QoS 1
        assert len([m for m in c.messages if m.topic == "q/2"]) == 1
    finally:
        close(publisher)


def test_last_will_on_unclean_disconnect_but_not_on_disconnect(broker):
    with MqttCollector(broker.host, broker.port, ["will/#"]) as c:
        polite = paho_client(broker, "polite", will=("will/polite", b"gone"))
        close(polite)  # DISCONNECT: the will is discarded
        rude = raw_connect(broker, "rude", will=("will/rude", b"offline"))
        rude.close()  # no DISCONNECT
        assert c.wait_for("will/rude").payload == b"offline"
        marker = paho_client(broker, "marker")
        marker.publish("will/marker", b"m", qos=1).wait_for_publish(TIMEOUT)
        c.wait_for("will/marker")
        close(marker)
        assert c.on("will/polite") == []


def test_pingreq_gets_pingresp(broker):
    sock = raw_connect(broker, "pinger", keepalive=60)
    try:
        sock.sendall(b"\xc0\x00")
        assert sock.recv(2) == b"\xd0\x00"
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        assert sock.recv(2) == b""
    finally:
        sock.close()


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


def test_the_bridges_last_will_when_its_process_is_killed(broker):
    """`kill -9` of the receiver: no DISCONNECT, the socket closes, the retained will says
    `offline` (what the demo shows when it stops the receiver the hard way)."""
    script = (
        "import sys, time\n"
        "from p1lora.receiver.mqtt_config import MqttConfig\n"
        "from p1lora.receiver.mqtt_publisher import MqttPublisher\n"
        "config = MqttConfig(host='127.0.0.1', port=int(sys.argv[1]), base_topic='demo',"
        " client_id='doomed-bridge')\n"
        "publisher = MqttPublisher(config)\n"
        "publisher.start()\n"
        "assert publisher.wait_connected(10)\n"
        "print('connected', flush=True)\n"
        "time.sleep(60)\n"
    )
    with MqttCollector(broker.host, broker.port, ["demo/#"]) as c:
        child = subprocess.Popen(
            [sys.executable, "-c", script, str(broker.port)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None and child.stdout.readline() == "connected\n"
            c.wait_for("demo/bridge/availability", b"online")
            child.kill()
            child.wait(TIMEOUT)
            c.wait_for("demo/bridge/availability", b"offline")
        finally:
            child.kill()
            child.wait(TIMEOUT)
    with MqttCollector(broker.host, broker.port, ["demo/#"]) as late:
        message = late.wait_for("demo/bridge/availability")
        assert (message.payload, message.retain) == (b"offline", True)


def test_the_demo_falls_back_to_amqtt_when_mosquitto_is_hidden(monkeypatch, tmp_path):
    # $P1LORA_MOSQUITTO, when set, is the only candidate: a missing path hides an installed
    # Mosquitto (how scripts/demo's fresh-machine check runs), and `auto` starts amqtt.
    monkeypatch.setenv("P1LORA_MOSQUITTO", str(tmp_path / "no-mosquitto"))
    assert find_mosquitto() is None
    broker = choose_broker(DemoOptions(broker="auto"), tmp_path)
    try:
        assert broker.label == f"embedded (amqtt) on 127.0.0.1:{broker.port}"
        with MqttCollector(broker.host, broker.port, ["x/#"]) as c:
            publisher = paho_client(broker.thread, "demo-check")
            publisher.publish("x/1", b"1", qos=1).wait_for_publish(TIMEOUT)
            c.wait_for("x/1")
            close(publisher)
    finally:
        broker.stop(lambda: True)
