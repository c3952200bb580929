"""The publish policy of meter state (`homeassistant.state_interval`): measurements at most
every N seconds, registers when they change, tariff/breaker/valve at once, keep-alives against
`expire_after`, and the database growth of each setting counted from the published messages."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest

from p1lora.common.link.events import LinkReport
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_discovery import DiscoveryError, DiscoverySettings, plan_telegram
from p1lora.receiver.ha_publisher import Pace, pace_of
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.tools import bench_ha
from p1lora.tools.cli import main
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_ha import SETTINGS, FakeMqtt, ManualClock
from tests.helpers_telegrams import fixture

REPORT = LinkReport(-97.0, 7.5, SETTINGS, 40)
#: 06:58 local on a Monday: the tariff switches to normal at 07:00, 120 s in.
BEFORE_TARIFF_SWITCH = datetime(2024, 1, 15, 5, 58, tzinfo=UTC)


def _run(seconds: int, interval: float, start: datetime = BEFORE_TARIFF_SWITCH):
    """Feed `seconds` of a DSMR 5 virtual meter; returns (telegram values by time, published
    meter/gas states as (time, state) per topic)."""
    meter = VirtualMeter("dsmr5", seed=3, start=start)
    clock = ManualClock(0.0)
    mqtt = FakeMqtt()
    bridge = HomeAssistantBridge(
        mqtt,
        DiscoverySettings(base_topic="p1", state_interval_s=interval),
        monotonic=clock,
        wall_clock=lambda: 1.7e9 + clock.now,
    )
    bridge.start()
    sent: dict[str, list[tuple[float, dict]]] = {}
    telegrams: list[tuple[float, dict]] = []
    for t, raw in meter.telegrams_until(seconds - 1):
        clock.now = t
        before = len(mqtt.published)
        bridge.telegram(raw, t, REPORT)
        objects = parse_telegram(raw).objects
        values = {obj.key: obj.value for obj in objects if obj.key}
        values.update({f"{obj.key}@": obj.timestamp for obj in objects if obj.key})
        telegrams.append((t, values))
        for message in mqtt.published[before:]:
            if message.topic.endswith("/state") and not message.topic.startswith("p1/bridge"):
                sent.setdefault(message.topic, []).append((t, message.json()))
    return telegrams, sent, bridge, mqtt


def _topic(sent: dict, prefix: str) -> list[tuple[float, dict]]:
    return next(v for k, v in sent.items() if k.startswith(prefix))


def test_paces_follow_the_entity_kind():
    plan = plan_telegram(parse_telegram(fixture("FLUVIUS_V171.txt")), DiscoverySettings())
    paces = {p.entity.key: pace_of(p.entity) for p in plan.values}
    assert paces["current_electricity_usage"] is Pace.SAMPLE
    assert paces["instantaneous_voltage_l1"] is Pace.SAMPLE
    assert paces["timestamp"] is Pace.SAMPLE
    assert paces["electricity_used_tariff_1"] is Pace.CHANGE
    assert paces["gas_reading"] is Pace.CHANGE
    assert paces["electricity_active_tariff"] is Pace.AT_ONCE
    assert paces["actual_switch_position"] is Pace.AT_ONCE
    assert paces["mbus_valve_position"] is Pace.AT_ONCE


def test_default_is_at_most_one_message_per_device_every_5_s_except_a_tariff_change():
    telegrams, sent, _, _ = _run(300, 5.0)
    meter = _topic(sent, "p1/meter_")
    switch = (
        next(
            t
            for (t, v), (_, w) in itertools.pairwise(telegrams)
            if v["electricity_active_tariff"] != w["electricity_active_tariff"]
        )
        + 1.0
    )
    times = [t for t, _ in meter]
    assert switch in times  # published at once ...
    tariff_at = {t: s["electricity_active_tariff"] for t, s in meter}
    assert tariff_at[switch] == "normal"
    gaps = [(b - a, b) for a, b in itertools.pairwise(times)]
    assert all(gap >= 5.0 for gap, at in gaps if at != switch)  # ... everything else paced
    assert len(times) <= 300 / 5 + 2


def test_register_changes_reach_home_assistant_within_the_interval():
    telegrams, sent, _, _ = _run(300, 5.0)
    meter = _topic(sent, "p1/meter_")
    key = "electricity_used_tariff_2"  # the register that counts after 07:00
    changes = [
        (t, float(v[key])) for (_, u), (t, v) in itertools.pairwise(telegrams) if u[key] != v[key]
    ]
    assert len(changes) >= 5  # the test sees real register movement
    for t, value in changes:
        if t > telegrams[-1][0] - 6:
            continue  # too close to the end to be due yet
        published = [s[key] for at, s in meter if t <= at <= t + 5.0]
        assert published and max(published) >= value, (t, value)


def test_gas_device_publishes_when_its_reading_changes_not_every_telegram():
    telegrams, sent, _, _ = _run(900, 5.0)
    gas = _topic(sent, "p1/mbus_")
    # The M-Bus reading and its capture time (an attribute) refresh every 5 minutes.
    readings = [(v["gas_reading"], v["gas_reading@"]) for _, v in telegrams]
    assert len(gas) == len(set(readings))  # the first, then one message per change
    assert len(gas) < len(telegrams) / 100


def test_every_telegram_setting_publishes_each_telegram_for_each_device():
    telegrams, sent, _, _ = _run(60, 0.0)
    assert {len(v) for v in sent.values()} == {len(telegrams)}


def test_unchanged_device_is_kept_alive_against_expire_after():
    clock = ManualClock(0.0)
    mqtt = FakeMqtt()
    bridge = HomeAssistantBridge(
        mqtt, DiscoverySettings(base_topic="p1"), monotonic=clock, wall_clock=clock
    )
    bridge.start()
    for second in range(0, 701):
        clock.now = float(second)
        bridge.telegram(fixture("V5.txt"), clock.now, REPORT)  # the same values every time
    meter = mqtt.on("p1/meter_4b384547303034303436333935353037/state")
    # expire_after is 600 s: a keep-alive every 300 s, nothing else.
    assert len(meter) == 3


def test_birth_message_republishes_the_latest_values_even_when_they_were_held():
    telegrams, sent, _, mqtt = _run(12, 5.0)
    topic = next(iter(k for k in sent if k.startswith("p1/meter_")))
    mqtt.clear()
    mqtt.deliver("homeassistant/status", b"online")
    republished = mqtt.last(topic).json()
    assert republished["timestamp"] == telegrams[-1][1]["timestamp"].isoformat()
    assert sent[topic][-1][1]["timestamp"] != republished["timestamp"]  # it had been held


@pytest.mark.parametrize("value", [-1.0, 301.0, float("nan")])
def test_state_interval_out_of_range_is_refused(value):
    with pytest.raises(DiscoveryError, match="state_interval"):
        DiscoverySettings(state_interval_s=value)


def test_database_growth_counted_from_published_messages_falls_with_the_interval():
    results = [bench_ha.measure(v, hours=0.1) for v in (0.0, 5.0, 30.0)]
    every, default, slow = results
    assert every.messages == 2 * every.telegrams  # meter + gas, every telegram
    assert default.messages <= every.telegrams / 5 + 12
    assert every.rows > 3 * default.rows > 3 * slow.rows > 0
    assert every.rows_all_entities > every.rows


def test_bench_ha_prints_a_table(capsys):
    assert main(["bench", "ha", "--hours", "0.02", "--interval", "0", "--interval", "5"]) == 0
    out = capsys.readouterr().out
    assert "| every telegram (0) |" in out and "| 5 s (default) |" in out
    assert main(["bench", "ha", "--hours", "0"]) == 2
