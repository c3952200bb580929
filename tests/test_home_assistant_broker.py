"""The Home Assistant bridge against a real Mosquitto: birth message, a broker killed and
restarted mid-stream, removal of entities the bridge no longer has, and a command's round trip
from MQTT over the simulated radio link to the transmitter and back."""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

import pytest

from p1lora.common.backoff import Backoff
from p1lora.common.link.events import LinkReport
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.tools.sim import SimOptions, Simulation
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_ha import SETTINGS, ManualClock, corrupt_digit, entity_value, status
from tests.helpers_mqtt import MqttCollector, wait_until
from tests.helpers_telegrams import build_telegram, fixture

REPORT = LinkReport(-97.0, 7.5, SETTINGS, 40)
TIMEOUT = 15.0


def _connect(broker: Any, base: str, **settings: Any) -> tuple[MqttPublisher, HomeAssistantBridge]:
    config = broker.mqtt_config(base_topic=base, discovery_prefix=f"{base}-ha")
    publisher = MqttPublisher(config, backoff=Backoff(0.05, 0.3, rng=lambda: 0.5))
    bridge = HomeAssistantBridge(publisher, DiscoverySettings.from_mqtt(config, **settings))
    bridge.start()
    publisher.start()
    assert publisher.wait_connected(10)
    return publisher, bridge


def _settled(broker: Any, topics: set[str]) -> None:
    """Wait until the broker has every topic (so a new subscriber sees only retained ones)."""
    with MqttCollector(broker.host, broker.port, sorted(topics)) as live:
        assert wait_until(lambda: topics <= {m.topic for m in live.messages}, TIMEOUT)


def _subscribed(broker: Any, base: str) -> None:
    """Wait until the bridge's subscriptions are active on the broker.

    They go out in one SUBSCRIBE when the publisher connects; a birth message that makes the
    bridge announce itself again proves the broker has processed it.
    """
    with MqttCollector(broker.host, broker.port, [f"{base}-ha/+/+/+/config"]) as probe:
        assert wait_until(lambda: bool(probe.messages), TIMEOUT)  # retained configs
        seen = len(probe.messages)
        deadline = time.monotonic() + TIMEOUT
        while len(probe.messages) <= seen and time.monotonic() < deadline:
            probe.publish(f"{base}-ha/status", b"online")
            wait_until(lambda: len(probe.messages) > seen, 2.0)
        assert len(probe.messages) > seen, "the bridge never saw the birth message"


def _timestamps(collector: MqttCollector, topic: str) -> list[str | None]:
    return [json.loads(p).get("timestamp") for p in collector.payloads(topic) if p]


def test_birth_message_republishes_discovery(mqtt_broker_session, mqtt_base_topic):
    broker, base = mqtt_broker_session, mqtt_base_topic
    publisher, bridge = _connect(broker, base)
    try:
        bridge.telegram(fixture("V4_2.txt"), 1.0, REPORT)
        topics = set(bridge.config_topics())
        _settled(broker, topics)
        # What a restarted Home Assistant gets first: every config, retained.
        with MqttCollector(broker.host, broker.port, [f"{base}-ha/+/+/+/config"]) as fresh:
            assert wait_until(
                lambda: topics <= {m.topic for m in fresh.messages if m.retain}, TIMEOUT
            )
        _subscribed(broker, base)  # (announces once more, as a probe)
        with MqttCollector(broker.host, broker.port, [f"{base}-ha/+/+/+/config"]) as collector:
            assert wait_until(lambda: topics <= {m.topic for m in collector.messages}, TIMEOUT)
            published = bridge.stats().configs_published
            before = Counter(m.topic for m in collector.messages)
            # Home Assistant restarted: its birth message asks everyone to announce again.
            collector.publish(f"{base}-ha/status", b"online")
            assert wait_until(
                lambda: all(
                    Counter(m.topic for m in collector.messages)[t] > before[t] for t in topics
                ),
                TIMEOUT,
            )
            assert bridge.stats().configs_published >= published + len(topics)
            # Same configs: a re-announcement must never rename or reclassify an entity.
            payloads: dict[str, set[bytes]] = {}
            for message in collector.messages:
                payloads.setdefault(message.topic, set()).add(message.payload)
            assert all(len(p) == 1 for p in payloads.values())
    finally:
        publisher.stop()


def test_broker_killed_and_restarted_mid_stream(mqtt_broker, mqtt_base_topic):
    broker, base = mqtt_broker, mqtt_base_topic
    meter = VirtualMeter("dsmr5", seed=11)
    telegrams = [meter.next_telegram()[1] for _ in range(12)]
    stamps = [parse_telegram(raw).meter_timestamp.isoformat() for raw in telegrams]
    # Every telegram published (state_interval 0): this test follows each one through the outage.
    publisher, bridge = _connect(broker, base, state_interval_s=0)
    equipment = parse_telegram(telegrams[0]).equipment_id
    assert equipment is not None
    state = f"{base}/meter_{equipment.lower()}/state"
    try:
        with MqttCollector(broker.host, broker.port, [f"{base}/#"]) as collector:
            for raw in telegrams[:4]:
                bridge.telegram(raw, 1.0, REPORT)
            assert wait_until(lambda: stamps[3] in _timestamps(collector, state), TIMEOUT)
            broker.kill()
            assert wait_until(lambda: not publisher.connected, TIMEOUT)
            for raw in telegrams[4:7]:
                bridge.telegram(raw, 1.0, REPORT)  # kept by the publisher, newest per topic
            # A telegram whose CRC fails publishes nothing, whatever the link said about it.
            bad = corrupt_digit(telegrams[7], b"1-0:1.7.0(", b"1-0:1.7.0(9")
            assert parse_telegram(bad).crc.valid is False
            bridge.telegram(bad, 1.0, REPORT)
            assert bridge.stats().telegrams_refused == 1
            seen_before_restart = len(collector.messages)
            broker.start()
            assert publisher.wait_connected(TIMEOUT)
            # The broker lost everything (no persistence): the newest state comes back ...
            assert wait_until(lambda: stamps[6] in _timestamps(collector, state), TIMEOUT)
            # ... and the stream resumes.
            for raw in telegrams[8:]:
                bridge.telegram(raw, 1.0, REPORT)
            assert wait_until(lambda: stamps[11] in _timestamps(collector, state), TIMEOUT)
            after = _timestamps(collector, state)
            assert stamps[7] not in after  # nothing from the bad telegram, ever
            assert stamps[4] not in after and stamps[5] not in after  # superseded while down
            resumed = [s for s in after[after.index(stamps[6]) :] if s is not None]
            assert resumed == [stamps[6], *stamps[8:]]
            assert len(collector.messages) > seen_before_restart
        # A fresh subscriber (Home Assistant after a restart) finds configs and the last state.
        with MqttCollector(broker.host, broker.port, [f"{base}/#", f"{base}-ha/#"]) as fresh:
            topics = set(bridge.config_topics()) | {state}
            assert wait_until(lambda: topics <= {m.topic for m in fresh.messages}, TIMEOUT)
            assert json.loads(fresh.payloads(state)[-1])["timestamp"] == stamps[11]
    finally:
        publisher.stop()


def _v5(*, voltages: bool) -> bytes:
    raw = fixture("V5.txt").decode("ascii")
    header, _, rest = raw.partition("\r\n\r\n")
    lines = [
        line
        for line in rest.split("\r\n")
        if line and not line.startswith("!") and (voltages or ":32.7.0" not in line)
    ]
    return build_telegram(header.lstrip("/"), lines)


def test_entity_no_longer_present_is_removed(mqtt_broker_session, mqtt_base_topic):
    broker, base = mqtt_broker_session, mqtt_base_topic
    removed = f"{base}-ha/sensor/{base}/meter_4b384547303034303436333935353037_instantaneous_voltage_l1/config"
    kept = removed.replace("instantaneous_voltage_l1", "instantaneous_voltage_l2")
    # First run: the meter sends voltages on L1..L3.
    publisher, bridge = _connect(broker, base)
    try:
        bridge.telegram(_v5(voltages=True), 1.0, REPORT)
        assert removed in bridge.config_topics()
        _settled(broker, {removed})
        with MqttCollector(broker.host, broker.port, [removed]) as check:
            check.wait_for(removed, retain=True, timeout=TIMEOUT)
    finally:
        publisher.stop()
    # Second run (after an upgrade, or the grid operator reconfigured the meter): no L1 voltage.
    publisher, bridge = _connect(broker, base, removal_grace_s=0.0)
    try:
        with MqttCollector(broker.host, broker.port, [f"{base}-ha/#"]) as collector:
            bridge.telegram(_v5(voltages=False), 1.0, REPORT)
            collector.wait_for(removed, b"", timeout=TIMEOUT)
            assert removed not in bridge.config_topics()
            assert bridge.stats().configs_removed == 1
        with MqttCollector(broker.host, broker.port, [f"{base}-ha/#"]) as fresh:
            assert wait_until(lambda: kept in {m.topic for m in fresh.messages}, TIMEOUT)
            assert removed not in {m.topic for m in fresh.messages if m.payload}
    finally:
        publisher.stop()


def test_invalid_command_is_answered_on_the_reply_topic(mqtt_broker_session, mqtt_base_topic):
    broker, base = mqtt_broker_session, mqtt_base_topic
    publisher, _ = _connect(broker, base)
    try:
        _subscribed(broker, base)
        with MqttCollector(broker.host, broker.port, [f"{base}/command/reply"]) as collector:
            collector.publish(f"{base}/command", b'{"cmd": "set_interval", "seconds": -5, "id": 9}')
            reply = json.loads(collector.wait_for(f"{base}/command/reply", timeout=TIMEOUT).payload)
            assert reply == {
                "id": 9,
                "cmd": None,
                "command": None,
                "status": "rejected",
                "error": '"seconds" must be 0..3600, not -5',
            }
    finally:
        publisher.stop()


def test_retained_command_does_not_run_again_after_a_reconnect(
    mqtt_broker_session, mqtt_base_topic
):
    broker, base = mqtt_broker_session, mqtt_base_topic
    command = f"{base}/command"
    with MqttCollector(broker.host, broker.port, [f"{base}/command/reply"]) as collector:
        # Someone published a restart with the retain flag while the bridge was away.
        collector.publish(command, b'{"cmd": "restart"}', retain=True)
        with MqttCollector(broker.host, broker.port, [command]) as check:
            check.wait_for(command, b'{"cmd": "restart"}', retain=True, timeout=TIMEOUT)
        publisher, bridge = _connect(broker, base)
        try:
            # The bridge cleared it before subscribing: nothing ran, nothing is retained.
            _subscribed(broker, base)
            marker = f"{base}/bridge/state"
            with MqttCollector(broker.host, broker.port, [command, marker]) as check:
                check.wait_for(marker, timeout=TIMEOUT)
                assert check.payloads(command) == []
            assert bridge.stats().commands_rejected == 0
            assert bridge.stats().commands_queued == 0
            assert collector.payloads(f"{base}/command/reply") == []
        finally:
            publisher.stop()


@pytest.mark.parametrize("cmd", [{"cmd": "info"}, {"cmd": "radio", "option": "SF8/BW250"}])
def test_command_round_trip_through_the_simulated_link(mqtt_broker_session, mqtt_base_topic, cmd):
    """MQTT -> bridge -> RxRuntime.queue_command -> emulated radios -> TxLink -> reply -> MQTT."""
    broker, base = mqtt_broker_session, mqtt_base_topic
    sim = Simulation(SimOptions(seed=5))
    publisher, bridge = _connect(broker, base, link=sim.rx_config)
    bridge.attach_commands(sim.rx)
    sim.rx.add_sink(bridge)
    reply_topic = f"{base}/command/reply"
    try:
        _subscribed(broker, base)
        with MqttCollector(broker.host, broker.port, [f"{base}/#"]) as collector:
            sim.run_for(60)  # the link converges and telegrams flow
            assert sim.rx.diagnostics().link.state == "running"
            assert bridge.stats().telegrams_published > 20
            collector.publish(f"{base}/command", json.dumps({**cmd, "id": "rt-1"}))
            assert wait_until(lambda: bridge.stats().commands_queued == 1, TIMEOUT)
            queued = json.loads(collector.wait_for(reply_topic, timeout=TIMEOUT).payload)
            assert (queued["status"], queued["id"]) == ("queued", "rt-1")

            def answered() -> list[dict]:
                return [
                    json.loads(p)
                    for p in collector.payloads(reply_topic)
                    if json.loads(p)["status"] != "queued"
                ]

            deadline = time.monotonic() + TIMEOUT
            while not answered() and time.monotonic() < deadline:
                sim.run_for(2)
                time.sleep(0.005)
            replies = answered()
            assert replies, "no answer from the transmitter"
            reply = replies[0]
            assert (reply["status"], reply["id"], reply["command_id"]) == (
                "ok",
                "rt-1",
                queued["command_id"],
            )
            if cmd["cmd"] == "info":
                assert "SF" in reply["text"]  # the transmitter's own view of the link
            else:
                assert reply["text"] == "radio fixed SF8/BW250"
            # The result also shows in Home Assistant (the "Last command" sensor).
            bridge_state = f"{base}/bridge/state"
            assert wait_until(
                lambda: (
                    json.loads(collector.payloads(bridge_state)[-1])["last_command"]
                    == f"{reply['command']}: ok ({reply['text']})"
                ),
                TIMEOUT,
            )
            latest = json.loads(collector.payloads(bridge_state)[-1])
            assert latest["attributes"]["last_command"]["id"] == "rt-1"
            assert latest["attributes"]["last_command"]["status"] == "ok"
            if cmd["cmd"] == "radio":
                # The transmitter now reports fixed mode: the select follows.
                sim.run_for(400)
                assert sim.rx.diagnostics().link.settings.label() == "SF8/BW250"
                bridge.status(sim.rx.diagnostics().transmitter, sim.now, REPORT)
                assert wait_until(
                    lambda: (
                        json.loads(collector.payloads(bridge_state)[-1])["radio_mode"]
                        == "SF8/BW250"
                    ),
                    TIMEOUT,
                )
    finally:
        publisher.stop()


def test_meter_state_flows_from_the_simulated_link(mqtt_broker_session, mqtt_base_topic):
    broker, base = mqtt_broker_session, mqtt_base_topic
    sim = Simulation(SimOptions(seed=6))
    # The simulation runs faster than real time: every telegram published (state_interval 0),
    # so the last one's values are on the broker.
    publisher, bridge = _connect(broker, base, link=sim.rx_config, state_interval_s=0)
    sim.rx.add_sink(bridge)
    try:
        sim.run_for(30)
        assert bridge.stats().telegrams_published == len(sim.deliveries.delivered) >= 15
        last = parse_telegram(sim.deliveries.delivered[-1][1])
        topics = set(bridge.config_topics())
        with MqttCollector(broker.host, broker.port, [f"{base}/#", f"{base}-ha/#"]) as fresh:
            assert wait_until(lambda: topics <= {m.topic for m in fresh.messages}, TIMEOUT)
            checks = [
                ("electricity_used_tariff_1", None),
                ("current_electricity_usage", None),
                ("gas_reading", 1),
            ]
            for key, channel in checks:
                config = next(
                    json.loads(m.payload)
                    for m in fresh.messages
                    if m.topic.endswith(f"_{key}/config")
                )
                expected = float(last.value(key, channel))  # type: ignore[arg-type]
                # The newest state may still be on its way when the retained one arrives.
                assert wait_until(
                    lambda c=config, e=expected: any(
                        entity_value(c, p) == e for p in fresh.payloads(c["state_topic"])
                    ),
                    TIMEOUT,
                ), key
    finally:
        publisher.stop()


def test_issue_13_on_a_real_broker(mqtt_broker_session, mqtt_base_topic):
    """A Belgian meter through Mosquitto: enum sensors with names, M-Bus makers and models,
    the 13-month peak's state and periods, "no limit" limits, and the publish policy (one
    message per device per 5 s of meter time, the gas meter only when its reading moves)."""
    broker, base = mqtt_broker_session, mqtt_base_topic
    clock = ManualClock(0.0)
    config = broker.mqtt_config(base_topic=base, discovery_prefix=f"{base}-ha")
    publisher = MqttPublisher(config, backoff=Backoff(0.05, 0.3, rng=lambda: 0.5))
    bridge = HomeAssistantBridge(
        publisher, DiscoverySettings.from_mqtt(config), monotonic=clock, wall_clock=clock
    )
    bridge.start()
    publisher.start()
    meter = VirtualMeter("fluvius", seed=0)
    try:
        assert publisher.wait_connected(10)
        with MqttCollector(broker.host, broker.port, [f"{base}/#", f"{base}-ha/#"]) as seen:
            for t, raw in meter.telegrams_until(59):
                clock.now = t
                bridge.telegram(raw, t, REPORT)
            # The discovery configs travel through the broker like everything else: wait for
            # the meter's and the gas meter's before reading them (reading at once raced).
            assert wait_until(
                lambda: all(
                    any(m.topic.endswith(f"_{key}/config") for m in seen.messages)
                    for key in ("current_electricity_usage", "gas_reading")
                ),
                TIMEOUT,
            )
            configs = {
                m.topic.split("/")[-2]: json.loads(m.payload)
                for m in seen.messages
                if m.topic.endswith("/config") and m.payload
            }
            meter_states = [t for t in configs if t.endswith("_current_electricity_usage")]
            assert len(meter_states) == 1
            state_topic = configs[meter_states[0]]["state_topic"]
            gas_topic = next(
                c["state_topic"] for t, c in configs.items() if t.endswith("_gas_reading")
            )
            assert wait_until(lambda: len(seen.payloads(state_topic)) >= 12, TIMEOUT)
            state = seen.payloads(state_topic)[-1]

            def value(key: str) -> Any:
                return entity_value(next(c for t, c in configs.items() if t.endswith(key)), state)

            # Item 1: 60 telegrams, one a second: 12 meter messages, 1 gas message.
            time.sleep(0.5)  # nothing more may arrive
            assert len(seen.payloads(state_topic)) == 12
            assert len(seen.payloads(gas_topic)) == 1
            # Item 2: the highest monthly peak; periods a month long.
            assert value("_belgium_maximum_demand_13_months") == 7.364
            history = json.loads(state)["attributes"]["belgium_maximum_demand_13_months"]
            assert history["history"][0]["period_start"] == "2023-12-01T00:00:00+01:00"
            # Item 4: enums with names, limits that say "no limit", M-Bus device identity.
            breaker = next(c for t, c in configs.items() if t.endswith("_actual_switch_position"))
            assert breaker["device_class"] == "enum"
            assert "ready_for_reconnection" in breaker["options"]
            assert value("_actual_switch_position") == "connected"
            assert json.loads(state)["attributes"]["actual_threshold_electricity"] == {
                "no_limit": True
            }
            gas_config = next(c for t, c in configs.items() if t.endswith("_gas_reading"))
            assert gas_config["device"]["model"] == "Gas meter, M-Bus type 3"
            gas_state = seen.payloads(gas_topic)[-1]
            valve = next(c for t, c in configs.items() if t.endswith("_mbus_valve_position"))
            assert entity_value(valve, gas_state) == "open"
            kind = next(c for t, c in configs.items() if t.endswith("_mbus_device_type"))
            assert entity_value(kind, gas_state) == "gas"
            # Item 3: when the transmitter started, as a timestamp; its TX power at once.
            clock.now = 1_700_000_000.0
            bridge.status(status(uptime_s=600, tx_power_dbm=2), clock.now, REPORT)
            started = next(c for t, c in configs.items() if t.endswith("_transmitter_started"))
            assert started["device_class"] == "timestamp"
            assert not any(t.endswith("_transmitter_uptime") for t in configs)
            bridge_topic = started["state_topic"]
            assert wait_until(
                lambda: any(
                    entity_value(started, p) == "2023-11-14T22:03:20+00:00"
                    for p in seen.payloads(bridge_topic)
                ),
                TIMEOUT,
            )
            assert json.loads(seen.payloads(bridge_topic)[-1])["tx_power"] == 2
    finally:
        publisher.stop()
