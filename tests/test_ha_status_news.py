"""End to end on the virtual clock: the transmitter's power control goes 14 -> 2 dBm and Home
Assistant's "TX power" entity follows within 10 s (issue 13: it showed 14 dBm until "Request
info" was pressed). The real driver on the emulator (`tools.sim.Simulation`), the receiver
runtime, and the Home Assistant bridge publishing to a recording MQTT port."""

from __future__ import annotations

from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.tools.sim import SimOptions, Simulation
from tests.helpers_ha import FakeMqtt, entity_value

STATE_TOPIC = "p1/bridge/state"
ENTITY_CONFIG = "homeassistant/sensor/p1/bridge_tx_power/config"


def test_the_tx_power_entity_follows_power_control_within_10_s():
    sim = Simulation(SimOptions(seed=1, path_loss_db=100.0))
    mqtt = FakeMqtt()
    bridge = HomeAssistantBridge(
        mqtt,
        DiscoverySettings(base_topic="p1"),
        monotonic=lambda: sim.now,
        wall_clock=lambda: 1_700_000_000.0 + sim.now,
    )
    bridge.start()
    sim.rx.add_sink(bridge)
    entity = mqtt.last(ENTITY_CONFIG).json()
    assert entity["state_topic"] == STATE_TOPIC
    power_at: dict[int, float] = {}  # when the transmitter went to each power (first time)
    shown_at: dict[int, float] = {}  # when the entity first showed it
    step = 0.25
    while sim.now < 120.0 and 2 not in shown_at:
        sim.run_until(sim.now + step)
        power_at.setdefault(sim.tx.tx_link.settings.tx_power_dbm, sim.now)
        if mqtt.on(STATE_TOPIC):
            shown = entity_value(entity, mqtt.last(STATE_TOPIC).payload)
            if isinstance(shown, int):
                shown_at.setdefault(shown, sim.now)
    assert 14 in shown_at and 2 in power_at, (power_at, shown_at)
    assert shown_at[2] - power_at[2] <= 10.0 + step
