"""Home Assistant state: values in the declared units with the meter's digits, one retained
object per device, the rules that keep Home Assistant's statistics right, the bridge's state."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from p1lora.common.link.events import LinkReport
from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_commands import CommandResult
from p1lora.receiver.ha_discovery import DiscoverySettings, plan_telegram
from p1lora.receiver.ha_entities import BRIDGE_SENSORS, BridgeView, LinkEventView
from p1lora.receiver.ha_state import MeterStateBuilder, bridge_state, encode_state, render_value
from p1lora.receiver.home_assistant import HomeAssistantBridge
from tests.helpers_ha import SETTINGS, FakeMqtt, ManualClock, snapshot, status
from tests.helpers_telegrams import build_telegram, fixture

REPORT = LinkReport(-97.0, 7.5, SETTINGS, 40)
HEADER = "ISK5\\2M550T-1012"


def _states(raw: bytes, builder: MeterStateBuilder | None = None) -> dict[str, dict]:
    plan = plan_telegram(parse_telegram(raw), DiscoverySettings())
    states = (builder or MeterStateBuilder()).build(plan)
    # What goes on the wire, read back as Home Assistant's JSON parser would.
    return {slug: json.loads(encode_state(state)) for slug, state in states.items()}


def _meter(raw: bytes, builder: MeterStateBuilder | None = None) -> dict:
    return next(v for k, v in _states(raw, builder).items() if k.startswith("meter_"))


def test_values_keep_the_meters_digits_and_convert_exactly():
    text = encode_state(
        MeterStateBuilder().build(
            plan_telegram(parse_telegram(fixture("SAGEMCOM_T210_D_R.txt")), DiscoverySettings())
        )["meter_p1lora"]
    )
    # 006545766*Wh -> 6545.766 kWh, 000000000*Wh -> 0.000 kWh (three decimals: Wh resolution).
    assert '"electricity_imported_total": 6545.766' in text
    assert '"electricity_delivered_tariff_1": 0.000' in text
    assert '"current_electricity_usage": 0.286' in text
    esy = _meter(fixture("ESY5Q3DA1004_V304.txt"))
    assert esy["current_electricity_usage"] == pytest.approx(1.68821)
    assert esy["electricity_imported_total"] == pytest.approx(32549.5061662)


def test_one_object_per_device_with_attributes():
    states = _states(fixture("FLUVIUS_V171.txt"))
    assert len(states) == 3
    gas = next(v for k, v in states.items() if "gas_reading" in v)
    water = next(v for k, v in states.items() if "water_reading" in v)
    assert gas["gas_reading"] == 112.384 and gas["mbus_valve_position"] == "open"
    assert gas["attributes"]["gas_reading"] == {"timestamp": "2020-05-12T13:45:58+02:00"}
    assert water["water_reading"] == 872.234
    meter = _meter(fixture("FLUVIUS_V171.txt"))
    assert meter["belgium_maximum_demand_current_month"] == 2.589
    assert meter["attributes"]["belgium_maximum_demand_current_month"] == {
        "timestamp": "2020-05-09T13:45:58+02:00"
    }
    history = meter["attributes"]["belgium_maximum_demand_13_months"]["history"]
    assert [h["value"] for h in history] == [3.695, 5.980, 4.318]
    # The highest of the monthly peaks (March's), not the latest month's (April's 3.695).
    assert meter["belgium_maximum_demand_13_months"] == 5.980
    assert "gas_reading" not in meter


def test_13_month_peak_is_the_highest_month_and_each_period_starts_a_month_before_it_closes():
    # The first timestamp of each month closes the billing period (April's peak on 23 April
    # is listed under 1 May); the history's period_start is the month before, with its own
    # summer/winter offset.
    history = _meter(fixture("FLUVIUS_V171.txt"))["attributes"]["belgium_maximum_demand_13_months"][
        "history"
    ]
    assert [(h["period_start"], h["period_end"]) for h in history] == [
        ("2020-04-01T00:00:00+02:00", "2020-05-01T00:00:00+02:00"),
        ("2020-03-01T00:00:00+01:00", "2020-04-01T00:00:00+02:00"),
        # The meter printed 1 March as summer time (`200301000000S`): kept as printed.
        ("2020-02-01T00:00:00+01:00", "2020-03-01T00:00:00+02:00"),
    ]
    for entry in history:  # every peak lies inside its period
        assert entry["period_start"] <= entry["timestamp"] < entry["period_end"]
    # The garbage first timestamp of FLUVIUS_V171_ALT gives no start, the rest still do.
    alt = _meter(fixture("FLUVIUS_V171_ALT.txt"))
    alt_history = alt["attributes"]["belgium_maximum_demand_13_months"]["history"]
    assert alt_history[0]["period_start"] == "2023-07-01T00:00:00+02:00"
    assert alt_history[1]["timestamp"] == "2023-08-31T18:15:00+02:00"
    assert alt["belgium_maximum_demand_13_months"] == 4.927


def test_13_month_peak_of_the_virtual_fluvius_meter():
    from p1lora.transmitter.virtual_meter import VirtualMeter

    _, raw = VirtualMeter("fluvius", seed=0).next_telegram()
    meter = _meter(raw)
    history = meter["attributes"]["belgium_maximum_demand_13_months"]["history"]
    assert len(history) == 13
    assert history[0]["value"] == 2.574  # December 2023, the latest closed month
    assert meter["belgium_maximum_demand_13_months"] == 7.364  # August 2023, the highest
    assert history[0]["period_start"] == "2023-12-01T00:00:00+01:00"
    assert history[0]["period_end"] == "2024-01-01T00:00:00+01:00"


@pytest.mark.parametrize(
    ("name", "code", "expected"),
    [
        ("V5.txt", "0002", "normal"),
        ("V5_TWO_MBUS.txt", "0001", "low"),
        ("FLUVIUS_V171.txt", "0001", "normal"),  # Belgium: 1 is the normal (day) tariff
        ("DSMR22_ISKRA_MT382_REAL.txt", "0002", "normal"),
    ],
)
def test_active_tariff_names(name, code, expected):
    meter = _meter(fixture(name))
    assert meter["electricity_active_tariff"] == expected


def test_unknown_tariff_code_is_unknown_not_invalid():
    raw = build_telegram(
        HEADER, ["0-0:96.1.1(4530)", "0-0:96.14.0(0007)", "1-0:1.8.1(000001.000*kWh)"]
    )
    assert _meter(raw)["electricity_active_tariff"] is None


def test_timestamps_are_iso_with_offset():
    meter = _meter(fixture("V5.txt"))
    stamp = datetime.fromisoformat(meter["timestamp"])
    assert stamp.utcoffset() is not None
    assert stamp.astimezone(UTC) == datetime(2017, 1, 2, 18, 20, 2, tzinfo=UTC)


def test_power_failure_log_state_and_attributes():
    meter = _meter(fixture("V4_2.txt"))
    log = meter["attributes"]["power_event_failure_log"]
    assert log["count"] == 3
    assert log["failures"][0] == {
        "end": "2000-01-04T18:03:20+01:00",
        "duration_s": 237126,
        "unit": "s",
    }
    assert meter["power_event_failure_log"] == "2000-01-04T18:03:20+01:00"  # the latest end
    empty = _meter(fixture("V5.txt"))
    assert empty["power_event_failure_log"] is None
    assert empty["attributes"]["power_event_failure_log"] == {"count": 0, "failures": []}


def test_long_text_is_cut_to_home_assistants_limit():
    message = "ab" * 200
    raw = build_telegram(
        HEADER, ["0-0:96.1.1(4530)", f"0-0:96.13.0({message.encode().hex().upper()})"]
    )
    meter = _meter(raw)
    assert len(meter["text_message"]) == 255 and meter["text_message"].endswith("...")
    assert meter["attributes"]["text_message"] == {"text": message}


def test_register_dropping_to_zero_is_published_as_unknown():
    builder = MeterStateBuilder()
    lines = ["0-0:96.1.1(4530)", "1-0:2.8.1(000000.000*kWh)"]
    first = _meter(build_telegram(HEADER, [*lines, "1-0:1.8.1(000123.456*kWh)"]), builder)
    assert first["electricity_used_tariff_1"] == 123.456
    # Export without solar panels really is 0 and stays 0.
    assert first["electricity_delivered_tariff_1"] == 0
    glitch = _meter(build_telegram(HEADER, [*lines, "1-0:1.8.1(000000.000*kWh)"]), builder)
    assert glitch["electricity_used_tariff_1"] is None
    assert glitch["electricity_delivered_tariff_1"] == 0
    after = _meter(build_telegram(HEADER, [*lines, "1-0:1.8.1(000123.457*kWh)"]), builder)
    assert after["electricity_used_tariff_1"] == 123.457


def test_value_that_does_not_convert_to_the_declared_unit_is_unknown():
    """An entity announced in kW gets null, never a wrong number, from a line printed in kWh."""
    good = plan_telegram(
        parse_telegram(build_telegram(HEADER, ["0-0:96.1.1(4530)", "1-0:1.7.0(01.000*kW)"])),
        DiscoverySettings(),
    )
    odd = plan_telegram(
        parse_telegram(build_telegram(HEADER, ["0-0:96.1.1(4530)", "1-0:1.7.0(01.000*kWh)"])),
        DiscoverySettings(),
    )
    entity = next(v.entity for v in good.values if v.entity.key == "current_electricity_usage")
    obj = next(v.obj for v in odd.values if v.entity.key == "current_electricity_usage")
    assert entity.unit == "kW"
    assert render_value(obj, entity) == (None, None)
    # Planned on its own the odd line declares what it prints, so nothing is lost either.
    assert (
        next(v.entity.unit for v in odd.values if v.entity.key == "current_electricity_usage")
        == "kWh"
    )


def test_announced_fields_are_always_present():
    plan = plan_telegram(parse_telegram(fixture("V5.txt")), DiscoverySettings())
    announced = {
        "meter_4b384547303034303436333935353037": [
            v.entity for v in plan.values if v.entity.device.startswith("meter")
        ]
    }
    short = plan_telegram(
        parse_telegram(
            build_telegram(
                "ISk5\\2MT382-1000",
                ["0-0:96.1.1(4B384547303034303436333935353037)", "1-0:1.8.1(000004.427*kWh)"],
            )
        ),
        DiscoverySettings(),
    )
    state = MeterStateBuilder().build(short, announced)["meter_4b384547303034303436333935353037"]
    assert state["electricity_used_tariff_1"] == Decimal("4.427")
    assert state["instantaneous_voltage_l1"] is None
    assert state["attributes"]["power_event_failure_log"] == {}


# ---------------------------------------------------------------------------- the bridge


def test_frames_rejected_leaves_out_no_session():
    """A restart of either side makes session frames arrive without a session (`no_session`):
    ordinary, not a security rejection. The entity leaves them out; the attribute keeps them."""
    rejected = {"no_session": 7, "replay": 2, "auth_failed": 1, "wrong_network": 4}
    state = bridge_state(BridgeView(snapshot=snapshot(rejected=rejected)))
    assert state["frames_rejected"] == 7  # 2 + 1 + 4: the security reasons only
    assert state["attributes"]["frames_rejected"] == {
        "reasons": {"auth_failed": 1, "replay": 2, "wrong_network": 4},
        "no_session": 7,
    }
    only_restarts = bridge_state(BridgeView(snapshot=snapshot(rejected={"no_session": 3})))
    assert only_restarts["frames_rejected"] == 0


def test_bridge_state_from_a_snapshot():
    view = BridgeView(
        snapshot=snapshot(at=500.0, last_telegram_at=470.4, transmitter=status(fixed_mode=True)),
        last_telegram_wall=1_700_000_000.0,
    )
    state = bridge_state(view)
    assert state["rssi"] == -97.5 and state["snr"] == 7.25
    assert state["spreading_factor"] == 7 and state["bandwidth"] == 250.0
    assert state["frequency"] == pytest.approx(869.525)
    assert state["airtime_used"] == 12.34  # percent of the allowance
    assert state["transmitter_airtime_used"] == 25.0
    assert state["packet_loss"] == 5.0
    assert state["frames_rejected"] == 3
    assert state["attributes"]["frames_rejected"] == {
        "reasons": {"bad_tag": 1, "replay": 2},
        "no_session": 0,
    }
    assert state["link_state"] == "running"
    assert state["last_telegram_age"] == 30
    assert state["last_telegram"] == "2023-11-14T22:13:20+00:00"
    assert state["serial_state"] == "ok"
    assert state["telegram_errors"] == 3
    assert state["attributes"]["telegram_errors"] == {
        "crc_errors": 2,
        "other_errors": 1,
        "telegrams_read": 3600,
    }
    assert state["transmitter_started"] is None  # known from status reports (see below)
    assert state["attributes"]["transmitter_started"] == {"uptime_s": 3600, "reported_at": None}
    assert state["tx_power"] == 11
    assert state["radio_mode"] == "SF7/BW250"  # fixed mode: the setting in use


def test_bridge_state_before_anything_is_known():
    state = json.loads(encode_state(bridge_state(BridgeView())))
    assert set(state) == {row.key for row in BRIDGE_SENSORS} | {"radio_mode", "attributes"}
    assert state["rssi"] is None and state["radio_mode"] is None and state["last_command"] is None
    # Every attribute set is an object (Home Assistant needs one), even when empty.
    assert all(isinstance(v, dict) for v in state["attributes"].values())


def test_bridge_state_never_carries_nan():
    view = BridgeView(snapshot=snapshot(uplink_snr_db=math.nan, transmitter=status()))
    text = encode_state(bridge_state(view))
    assert "NaN" not in text
    assert json.loads(text)["snr"] is None
    assert json.loads(text)["radio_mode"] == "auto"


def test_bridge_shows_command_and_event():
    result = CommandResult(
        "ok",
        "retune",
        "retune",
        "retuning to SF7/BW250",
        "a1",
        "home_assistant",
        4,
        1_700_000_000.0,
    )
    view = BridgeView(
        command=result,
        last_event=LinkEventView("switch_committed", {"settings": "SF7/BW250"}, 1_700_000_001.0),
    )
    state = bridge_state(view)
    assert state["last_command"] == "retune: ok (retuning to SF7/BW250)"
    attributes = state["attributes"]["last_command"]
    assert (
        attributes["id"] == "a1" and attributes["status"] == "ok" and attributes["command_id"] == 4
    )
    assert state["last_link_event"] == "switch_committed"
    assert state["attributes"]["last_link_event"]["settings"] == "SF7/BW250"


def _clocked_bridge(start: float = 1000.0) -> tuple[ManualClock, FakeMqtt, HomeAssistantBridge]:
    """A started bridge on a manual clock, publishing its diagnostics at most every 10 s."""
    clock = ManualClock(start)
    mqtt = FakeMqtt()
    bridge = HomeAssistantBridge(
        mqtt,
        DiscoverySettings(base_topic="p1"),
        bridge_interval_s=10.0,
        monotonic=clock,
        wall_clock=clock,
    )
    bridge.start()
    return clock, mqtt, bridge


def test_bridge_publishes_diagnostics_at_most_every_interval():
    clock, mqtt, bridge = _clocked_bridge()
    topic = "p1/bridge/state"
    assert len(mqtt.on(topic)) == 1
    bridge.diagnostics(snapshot())
    assert len(mqtt.on(topic)) == 2  # the radio setting became known: at once
    bridge.diagnostics(snapshot(uplink_rssi_dbm=-90.0))
    assert len(mqtt.on(topic)) == 2  # only RSSI moved: within the interval
    clock.advance(10)
    bridge.diagnostics(snapshot(uplink_rssi_dbm=-80.0))
    assert mqtt.last(topic).json()["rssi"] == -80.0
    # Status reports and link events go out at once.
    bridge.status(status(tx_power_dbm=5), 1.0, REPORT)
    assert mqtt.last(topic).json()["tx_power"] == 5
    clock.advance(1)
    from p1lora.common.link.events import LinkEventAction

    published = len(mqtt.on(topic))
    bridge.link_event(LinkEventAction("link_lost", {"reason": "silence"}), 2.0)
    # The event waits for the fresh diagnostics the runtime sends right after it, so the state
    # never pairs the new event with the old snapshot...
    assert len(mqtt.on(topic)) == published
    bridge.diagnostics(snapshot(uplink_rssi_dbm=-95.0))
    # ...and then goes out at once, not after the diagnostics interval.
    state = mqtt.last(topic).json()
    assert state["last_link_event"] == "link_lost"
    assert state["rssi"] == -95.0
    assert all(p.retain for p in mqtt.on(topic))


def test_state_is_published_with_every_telegram_and_retained_when_state_interval_is_0():
    mqtt = FakeMqtt()
    bridge = HomeAssistantBridge(mqtt, DiscoverySettings(base_topic="p1", state_interval_s=0))
    bridge.start()
    for _ in range(3):
        bridge.telegram(fixture("V4_2.txt"), 1.0, REPORT)
    meter = mqtt.on("p1/meter_3960221976967177082151037881335713/state")
    gas = mqtt.on("p1/mbus_4819243993373755377509728609491464/state")
    assert len(meter) == 3 and len(gas) == 3
    assert all(p.retain for p in meter + gas)
    assert bridge.stats().telegrams_published == 3


def test_transmitter_started_is_a_timestamp_that_stays_put_between_reports():
    clock, mqtt, bridge = _clocked_bridge(1_700_000_000.0)
    bridge.status(status(uptime_s=3600), 1.0, REPORT)
    first = mqtt.last("p1/bridge/state").json()
    assert first["transmitter_started"] == "2023-11-14T21:13:20+00:00"  # 3600 s before
    assert first["attributes"]["transmitter_started"]["uptime_s"] == 3600
    # Five minutes later the next report, built 2 s before it arrived: the same start.
    clock.advance(302)
    bridge.status(status(uptime_s=3900), 1.0, REPORT)
    assert (
        mqtt.last("p1/bridge/state").json()["transmitter_started"] == first["transmitter_started"]
    )
    # The transmitter restarted: a new start time.
    clock.advance(60)
    bridge.status(status(uptime_s=20), 1.0, REPORT)
    assert mqtt.last("p1/bridge/state").json()["transmitter_started"] == (
        "2023-11-14T22:19:02+00:00"
    )


def test_a_changed_setting_goes_out_with_the_next_snapshot_not_after_the_interval():
    clock, mqtt, bridge = _clocked_bridge()
    topic = "p1/bridge/state"
    bridge.diagnostics(snapshot())
    count = len(mqtt.on(topic))
    clock.advance(5)  # the runtime's snapshot period, half the bridge interval
    bridge.diagnostics(snapshot(transmitter=status(tx_power_dbm=2)))
    assert len(mqtt.on(topic)) == count + 1
    assert mqtt.last(topic).json()["tx_power"] == 2
    clock.advance(5)
    faster = SETTINGS.replace(sf=9)
    bridge.diagnostics(snapshot(transmitter=status(tx_power_dbm=2), settings=faster))
    assert mqtt.last(topic).json()["spreading_factor"] == 9
