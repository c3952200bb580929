"""The embedded demo broker, exercised with paho (the client the bridge uses) and raw sockets."""

from __future__ import annotations

import socket
import struct
import threading

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from p1lora.common.backoff import Backoff
from p1lora.receiver.mqtt_config import MqttConfig
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.tools.mini_broker import MiniBrokerThread, main, topic_matches, valid_filter
from tests.helpers_mqtt import MqttCollector, wait_until

TIMEOUT = 10.0


@pytest.fixture
def broker():
    with MiniBrokerThread("127.0.0.1", 0) as running:
        yield running


def paho_client(
    broker: MiniBrokerThread,
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


def raw_connect(broker: MiniBrokerThread, client_id: str, *, keepalive: int = 0, will=None):
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


# ---------------------------------------------------------------- topic rules


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+/b", "a/b", True),
        ("+/+", "a", False),
        ("a/+/c", "a//c", True),
        ("#", "$SYS/x", False),
        ("+/x", "$SYS/x", False),
        ("$SYS/#", "$SYS/x", True),
        ("a/b", "a/c", False),
    ],
)
def test_topic_matching(topic_filter, topic, expected):
    assert topic_matches(topic_filter, topic) is expected


def test_filter_validation():
    assert valid_filter("a/+/b/#")
    for bad in ("", "a/#/b", "a/b#", "a+"):
        assert not valid_filter(bad)


# ---------------------------------------------------------------- with paho


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


def test_keepalive_expiry_publishes_the_will(broker):
    with MqttCollector(broker.host, broker.port, ["ka/#"]) as c:
        sock = raw_connect(broker, "sleepy", keepalive=1, will=("ka/sleepy", b"timeout"))
        try:
            assert c.wait_for("ka/sleepy", timeout=5).payload == b"timeout"
            sock.settimeout(TIMEOUT)
            assert sock.recv(10) == b""  # the broker closed the connection
        finally:
            sock.close()


def test_pingreq_gets_pingresp(broker):
    sock = raw_connect(broker, "pinger", keepalive=60)
    try:
        sock.sendall(b"\xc0\x00")
        assert sock.recv(2) == b"\xd0\x00"
        sock.sendall(b"\xe0\x00")  # DISCONNECT
        assert sock.recv(2) == b""
    finally:
        sock.close()


def test_protocol_errors_close_only_that_connection(broker):
    bad_first = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
    bad_first.sendall(b"\x30\x05\x00\x01ax!")  # PUBLISH before CONNECT
    assert bad_first.recv(10) == b""
    bad_first.close()
    level5 = socket.create_connection((broker.host, broker.port), timeout=TIMEOUT)
    body = b"\x00\x04MQTT\x09\x02\x00\x3c\x00\x01x"
    level5.sendall(bytes([0x10, len(body)]) + body)
    assert level5.recv(4) == b"\x20\x02\x00\x01"  # unacceptable protocol version
    level5.close()
    garbage = raw_connect(broker, "garbage", will=("pe/garbage", b"died"))
    with MqttCollector(broker.host, broker.port, ["pe/#"]) as c:
        garbage.sendall(b"\x30\xff\xff\xff\xff\x01")  # remaining length longer than allowed
        assert c.wait_for("pe/garbage").payload == b"died"
        garbage.close()
        still = paho_client(broker, "still-fine")
        still.publish("pe/ok", b"ok", qos=1).wait_for_publish(TIMEOUT)
        c.wait_for("pe/ok")
        close(still)


def test_persistent_session_keeps_subscriptions_and_queues_qos1(broker):
    got: list[bytes] = []
    first = paho_client(broker, "persistent", clean=False)
    subscribed = threading.Event()
    first.on_subscribe = lambda *a: subscribed.set()
    first.subscribe("ps/#", qos=1)
    assert subscribed.wait(TIMEOUT)
    close(first)
    publisher = paho_client(broker, "pub")
    publisher.publish("ps/1", b"while away", qos=1).wait_for_publish(TIMEOUT)
    close(publisher)
    session_present: list[bool] = []
    arrived = threading.Event()
    second = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="persistent", clean_session=False)
    second.on_connect = lambda c, u, flags, rc, p: session_present.append(flags.session_present)

    def on_message(c, u, m):
        got.append(m.payload)
        arrived.set()

    second.on_message = on_message
    second.connect(broker.host, broker.port)
    second.loop_start()
    try:
        assert arrived.wait(TIMEOUT)
        assert got == [b"while away"]
        assert session_present == [True]
    finally:
        close(second)


def test_client_id_takeover_closes_the_old_connection_without_will(broker):
    with MqttCollector(broker.host, broker.port, ["to/#"]) as c:
        old = raw_connect(broker, "same-id", will=("to/old", b"will"))
        new = paho_client(broker, "same-id")
        old.settimeout(TIMEOUT)
        assert old.recv(10) == b""
        new.publish("to/new", b"n", qos=1).wait_for_publish(TIMEOUT)
        c.wait_for("to/new")
        assert c.on("to/old") == []
        close(new)
        old.close()


def test_stuck_subscriber_is_disconnected():
    small = MiniBrokerThread("127.0.0.1", 0, max_backlog=64 * 1024)
    small.start()
    try:
        stuck = socket.socket()
        stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
        stuck.connect((small.host, small.port))
        body = b"\x00\x04MQTT\x04\x06\x00\x00\x00\x05stuck\x00\x0astuck/will\x00\x04dead"
        stuck.sendall(bytes([0x10, len(body)]) + body)
        assert stuck.recv(4) == b"\x20\x02\x00\x00"
        subscribe = b"\x00\x01\x00\x01#\x00"
        stuck.sendall(bytes([0x82, len(subscribe)]) + subscribe)
        with MqttCollector(small.host, small.port, ["stuck/will"]) as c:
            publisher = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="flood")
            publisher.connect(small.host, small.port)
            publisher.loop_start()
            try:
                # More than the kernel's socket buffers can absorb (tcp_wmem max is 4 MB).
                for _ in range(2500):
                    publisher.publish("flood", bytes(4096), qos=0)
                assert c.wait_for("stuck/will").payload == b"dead"
            finally:
                close(publisher)
        stuck.close()
    finally:
        small.stop()


# ---------------------------------------------------------------- with the bridge's publisher


def test_mqtt_publisher_works_against_the_mini_broker_across_a_restart():
    first = MiniBrokerThread("127.0.0.1", 0)
    first.start()
    port = first.port
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
        second = MiniBrokerThread("127.0.0.1", port)  # same port, empty: nothing retained
        second.start()
        try:
            assert publisher.wait_connected(TIMEOUT)
            with MqttCollector("127.0.0.1", port, ["demo/#"]) as c:
                # Republished by the bridge (live or already retained, depending on timing).
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


# ---------------------------------------------------------------- command line


def test_command_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "--port" in capsys.readouterr().out
    assert main(["--port", "70000"]) == 2


def test_port_in_use_is_reported():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        with pytest.raises(OSError):
            MiniBrokerThread("127.0.0.1", holder.getsockname()[1]).start()
