"""Shared air: several links in one meter room, jammers and LoRaWAN traffic, on a virtual clock
(`tools.sim_building`, `tools.sim`; docs/protocol.md "Sharing the air")."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections import Counter

import pytest

from p1lora.common.airtime import time_on_air_for
from p1lora.common.crypto import NETWORK_ID_SIZE, LinkKeys
from p1lora.common.link import LinkEventAction
from p1lora.common.link.air import AirPolicy
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.hardware.emulator import AirParams
from p1lora.hardware.sx127x_registers import FREQ_STEP_HZ
from p1lora.service.link_runtime import RuntimeObserver
from p1lora.tools.sim import SimOptions, Simulation
from p1lora.tools.sim_building import Building, BuildingOptions, draw_geometry, union_airtime

EU_10 = 869_525_000


def _building(links: int, seconds: float, **kwargs: object) -> Building:
    base = SimOptions(duration_s=seconds, seed=int(kwargs.pop("seed", 1)))  # type: ignore[call-overload]
    return Building(BuildingOptions(links=links, base=base, **kwargs))  # type: ignore[arg-type]


def _delivered_between(sim: Simulation, start: float, end: float) -> int:
    return sum(1 for t in sim.deliveries.times if start <= t < end)


def test_the_geometry_is_drawn_from_the_seed_within_the_building_ranges() -> None:
    one, again, other = draw_geometry(5, 3), draw_geometry(5, 3), draw_geometry(5, 4)
    assert one == again
    assert one != other
    assert all(95 <= loss <= 125 for loss in one.own)
    room = [v for (a, b), v in one.cross.items() if a.endswith("tx") and b.endswith("tx")]
    assert len(room) == 10
    assert all(60 <= v <= 70 for v in room)


def test_two_links_in_phase_both_deliver_nearly_everything() -> None:
    building = _building(2, 240.0, phase="aligned")
    building.run_until(240.0)
    for sim in building.links:
        # After the cold start, every telegram of the last two minutes (no more than a few lost).
        assert _delivered_between(sim, 120.0, 240.0) >= 114
        assert sim.metrics()["link_lost"] == 0


def test_the_legacy_air_policy_still_collides_in_lock_step() -> None:
    """The comparison the benchmark makes is real: the same building without the policy."""
    building = _building(2, 240.0, phase="aligned", legacy_air=True)
    building.run_until(240.0)
    delivered = [_delivered_between(sim, 120.0, 240.0) for sim in building.links]
    assert min(delivered) < 100


def test_a_building_run_is_repeatable() -> None:
    first = _building(2, 60.0, phase="random").run()
    second = _building(2, 60.0, phase="random").run()
    keys = ("delivered", "frames_tx", "settings_timeline", "first_delivery_s")
    assert [[link[k] for k in keys] for link in first["links"]] == [  # type: ignore[attr-defined]
        [link[k] for k in keys]
        for link in second["links"]  # type: ignore[attr-defined]
    ]


def test_the_json_object_has_per_link_metrics_and_the_shared_channel() -> None:
    result = _building(2, 60.0).run()
    links = result["links"]
    assert isinstance(links, list) and len(links) == 2
    for key in (
        "delivered_per_hour",
        "delivery_ratio",
        "duty_cycle_max_tx",
        "duty_cycle_max_rx",
        "final_sf",
        "final_bw",
        "settings_timeline",
        "link_lost",
    ):
        assert all(key in link for link in links)
    assert result["duty_cycle_limit"] == 0.1
    channel = result["channel"]
    assert isinstance(channel, dict) and channel["frames_sent"] > 0
    assert 0 < channel["p1lora_occupancy"] < 1


def test_union_airtime_counts_overlaps_once() -> None:
    from p1lora.tools.sim_metrics import SendRecord

    settings = RadioSettings(EU_10)
    frames = [SendRecord(0.0, 1.0, 10, "DATA", settings), SendRecord(0.5, 1.0, 10, "ACK", settings)]
    frames.append(SendRecord(3.0, 0.5, 10, "DATA", settings))
    assert union_airtime(frames) == pytest.approx(2.0)


class _Jammer:
    """A radio on the link's channel sending frames at random times (another network)."""

    def __init__(self, sim: Simulation, settings: RadioSettings, busy_share: float) -> None:
        self.radio = sim.add_radio("jammer")
        self.radio.configure(settings)
        self.sim = sim
        self.rng = random.Random(7)
        self.airtime = time_on_air_for(settings, 40)
        self.mean_gap = self.airtime / busy_share
        self.sent = 0

    def start(self, at: float) -> None:
        self.sim.at(at, self._send)

    def _send(self) -> None:
        self.radio.poll()
        if not self.radio.busy():
            self.radio.send(bytes(self.rng.randrange(256) for _ in range(40)))
            self.sent += 1
        self.sim.at(self.sim.now + self.rng.expovariate(1 / self.mean_gap), self._send)


def test_a_jammer_at_the_same_sf_10_db_stronger_neither_kills_nor_slows_the_link() -> None:
    sim = Simulation(SimOptions(path_loss_db=100.0, seed=5))
    sim.run_until(60.0)
    settings = sim.tx.tx_link.settings
    assert (settings.sf, settings.bw_hz) == (7, 250_000)
    jammer = _Jammer(sim, settings.replace(tx_power_dbm=14), busy_share=0.2)
    # 10 dB stronger than the link at both ends (the link sends at 14 dBm over 100 dB).
    sim.channel.set_path_loss("jammer", "rx", 90.0)
    sim.channel.set_path_loss("jammer", "tx", 90.0)
    jammer.start(60.0)
    sim.run_until(360.0)
    assert jammer.sent > 200
    delivered = _delivered_between(sim, 60.0, 360.0)
    assert delivered >= 0.6 * 300
    metrics = sim.metrics()
    assert metrics["link_lost"] == 0
    # Collisions with a strong signal are not a weak link: never a slower setting.
    assert all(sf == 7 for _, sf, _, _ in metrics.settings_timeline if _ >= 60.0)


def test_the_transmitter_listens_before_talking_and_defers_to_a_busy_channel() -> None:
    sim = Simulation(SimOptions(path_loss_db=100.0, seed=5))
    sim.run_until(60.0)
    jammer = _Jammer(sim, sim.tx.tx_link.settings, busy_share=0.3)
    sim.channel.set_path_loss("jammer", "tx", 70.0)
    jammer.start(60.0)
    sim.run_until(180.0)
    stats = sim.tx.listen_before_talk
    assert stats is not None
    assert stats.busy > 10  # it heard the jammer's preambles ...
    assert stats.cads > stats.busy  # ... and found the channel free most of the time
    assert sim.rx.listen_before_talk is None  # acks answer at once


def _downlink_params(sf: int = 9) -> AirParams:
    """A LoRaWAN gateway's RX2 downlink: IQ-inverted, no payload CRC, BW125, sync word 0x34."""
    return AirParams(
        frf=round(EU_10 / FREQ_STEP_HZ),
        sf=sf,
        bw_hz=125_000,
        cr=5,
        implicit_header=False,
        crc_on=False,
        ldro=False,
        preamble=8,
        sync_word=0x34,
        invert_iq=True,
        payload_length=17,
    )


def test_a_lorawan_gateway_downlink_burst_on_869_525_mhz_does_not_break_the_link() -> None:
    sim = Simulation(SimOptions(path_loss_db=100.0, seed=6))
    sim.run_until(60.0)
    params = _downlink_params()
    airtime = time_on_air_for(RadioSettings(EU_10, sf=9, bw_hz=125_000), 17)
    rng = random.Random(3)

    def downlink() -> None:
        # 27 dBm ERP from a roof 105 dB away: far stronger at our radios than our own frames.
        sim.channel.inject(
            "gateway", params, bytes(17), tx_power_dbm=27.0, airtime=airtime, path_loss_db=105.0
        )

    burst_start = 60.0
    for index in range(60):  # a burst: one downlink a second for a minute (a firmware push)
        sim.at(burst_start + index + rng.random() * 0.5, downlink)
    sim.run_until(240.0)
    metrics = sim.metrics()
    assert metrics["link_lost"] == 0
    assert _delivered_between(sim, 60.0, 120.0) >= 40
    assert _delivered_between(sim, 150.0, 240.0) >= 85  # and all is well after it
    assert all(sf == 7 for t, sf, _, _ in metrics.settings_timeline if t >= 60.0)


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    reason="known limitation (docs/protocol.md 4a, 'What is left'): the weak link's acks "
    "(-121 dBm) lose to neighbours' frames (-54 dBm) in the meter room; at SF9-SF11 it hears "
    "none of their SF7 frames, so it does not take the crowded cadence, and it delivers well "
    "under 90 % of its solo run",
)
def test_a_weak_link_next_to_strong_neighbours_still_tunes_to_what_its_path_allows() -> None:
    weak = 135.0  # dB: SF7/BW250 lacks the margin; a solo link settles lower
    solo = Simulation(SimOptions(path_loss_db=weak, seed=21))
    solo.run_until(240.0)
    building = _building(3, 240.0, own_path_loss_db=(weak, 98.0, 100.0))
    building.run_until(240.0)
    weak_link = building.links[0]
    solo_settings = solo.tx.tx_link.settings
    assert (solo_settings.sf, solo_settings.bw_hz) != (7, 250_000)
    settings = weak_link.tx.tx_link.settings
    assert (settings.sf, settings.bw_hz) == (solo_settings.sf, solo_settings.bw_hz)
    alone = _delivered_between(solo, 150.0, 240.0)
    assert _delivered_between(weak_link, 150.0, 240.0) >= 0.9 * alone
    for strong in building.links[1:]:
        assert strong.tx.tx_link.settings.sf == 7


def test_a_failed_switch_with_strong_signal_is_collisions_and_with_weak_signal_is_not() -> None:
    strong = Simulation(SimOptions(path_loss_db=100.0, seed=8))
    strong.run_until(60.0)
    target = strong.tx.tx_link.settings
    switching = strong.tx.tx_link._switching
    assert switching.collided(strong.now, target)  # 100 dB: SF7/BW250 with room to spare
    legacy = Simulation(
        SimOptions(path_loss_db=100.0, seed=8),
        config=dataclasses.replace(SimOptions().link_config(), air=AirPolicy.legacy()),
    )
    legacy.run_until(60.0)
    assert not legacy.tx.tx_link._switching.collided(legacy.now, target)  # as before
    weak = Simulation(SimOptions(path_loss_db=141.0, seed=8))
    weak.run_until(300.0)
    assert not weak.tx.tx_link._switching.collided(weak.now, target)  # SF7/BW250: too weak


@pytest.mark.slow
def test_collisions_in_a_crowded_building_never_push_a_link_slower() -> None:
    """Four links in phase: switch confirmations fail on collisions now and then; with the
    strong signal all of them have, none of those failures may push a link slower."""
    building = _building(4, 300.0, phase="aligned")
    causes: Counter[str] = Counter()

    class Failures(RuntimeObserver):
        def link_event(self, now: float, event: LinkEventAction) -> None:
            if event.kind == "switch_failed":
                causes[str(event.fields.get("cause"))] += 1

    for sim in building.links:
        sim.tx.add_observer(Failures())
    building.run_until(300.0)
    assert causes["signal"] == 0
    for sim in building.links:
        assert sim.tx.tx_link.settings.sf == 7  # 95-125 dB paths: SF7 holds for all of them


@pytest.mark.slow
def test_no_node_of_a_20_link_building_exceeds_its_duty_cycle() -> None:
    building = _building(20, 300.0, phase="aligned")
    result = building.run()
    links = result["links"]
    assert isinstance(links, list)
    limit = result["duty_cycle_limit"]
    assert isinstance(limit, float)
    for link in links:
        assert not link["budget_exceeded"]
        assert link["duty_cycle_max_tx"] <= limit
        assert link["duty_cycle_max_rx"] <= limit
    assert sum(1 for link in links if link["delivered"] > 0) >= 10


class _Foreign(RuntimeObserver):
    """Counts frames of another network a side received, and the ones its link rejected."""

    def __init__(self, network_id: bytes) -> None:
        self.network_id = network_id
        self.foreign = 0
        self.rejected = 0

    def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
        if frame.payload[1 : 1 + NETWORK_ID_SIZE] != self.network_id:
            self.foreign += 1
            self.rejected += rejected == "wrong_network"


def test_every_foreign_frame_is_counted_and_logged_at_most_once_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    building = _building(2, 200.0, phase="random")
    observers = []
    for sim in building.links:
        network_id = LinkKeys(sim.psk).network_id
        for runtime in (sim.tx, sim.rx):
            observer = _Foreign(network_id)
            runtime.add_observer(observer)
            observers.append(observer)
    with caplog.at_level(logging.INFO, logger="p1lora.common.link"):
        building.run_until(200.0)
    assert all(o.foreign > 50 for o in observers)
    assert all(o.rejected == o.foreign for o in observers)
    for sim in building.links:
        counts = sim.tx_log.rejected["wrong_network"], sim.rx_log.rejected["wrong_network"]
        assert all(c > 50 for c in counts)
    lines = [r for r in caplog.records if "wrong_network" in r.getMessage()]
    # Per side: the first rejection at once, then one summary a minute (200 s: at most 4).
    assert 0 < len(lines) <= 4 * 4


def test_lost_acks_never_leave_the_two_sides_on_different_references() -> None:
    """Updates get through while every ack dies (a neighbour drowns them in the meter room):
    the receiver delivers more telegrams than its reference cache holds, yet keeps the one the
    transmitter still encodes against, so no update fails to decode when acks return."""
    sim = Simulation(SimOptions(path_loss_db=100.0, seed=9))
    sim.run_until(60.0)
    assert sim.tx.tx_link.state == "running"
    rejected = sim.tx_log.events["update_rejected"]
    sim.set_path_loss(250.0, direction="downlink")
    sim.run_until(68.0)  # 8 telegrams, more than `reference_cache` (4), none acknowledged
    sim.set_path_loss(100.0, direction="downlink")
    sim.run_until(120.0)
    assert sim.rx.rx_link.diagnostics(sim.now).telegrams.get("decode_failed", 0) == 0
    assert sim.tx_log.events["update_rejected"] == rejected
    assert _delivered_between(sim, 100.0, 120.0) >= 19


def test_p1_lora_sim_links_prints_one_json_object(capsys: pytest.CaptureFixture[str]) -> None:
    from p1lora.tools.cli import main

    args = ["sim", "--links", "2", "--phase", "random", "--duration", "30", "--json"]
    assert main(args) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["links"]) == 2
    assert document["phase"] == "random" and document["legacy_air"] is False
    assert {"delivered_per_hour", "settings_timeline"} <= set(document["links"][0])
    assert main([*args, "--legacy-air"]) == 0
    assert json.loads(capsys.readouterr().out)["legacy_air"] is True


@pytest.mark.parametrize(
    "args",
    [
        ["--links", "0"],
        ["--links", "2", "--baseline", "esp32"],
        ["--links", "2", "--phase", "sometimes"],
        ["--legacy-air"],
    ],
)
def test_p1_lora_sim_refuses_bad_building_options(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    from p1lora.tools.cli import main

    try:
        code = main(["sim", "--duration", "10", *args])
    except SystemExit as exc:  # argparse's own validation
        code = int(str(exc.code))
    assert code == 2
    assert capsys.readouterr().err


def test_crowded_links_send_a_batch_per_period_in_places_of_their_own() -> None:
    """Five links in phase: once they hear each other, each sends one update frame per 2 s
    period (every telegram since the last, as one BATCH) and keeps a place in the period that
    works, so after the cold start they no longer meet: every telegram gets through."""
    building = _building(5, 200.0, phase="aligned")
    building.run_until(200.0)
    updates = {"DATA", "BATCH", "STATUS"}
    places = []
    for sim in building.links:
        assert _delivered_between(sim, 140.0, 200.0) >= 58
        starts = [s.start for s in sim.tx_log.sent if s.frame_type in updates and s.start >= 140.0]
        assert 27 <= len(starts) <= 33  # one per period, not one per telegram
        assert sim.tx.tx_link._delivery.slot.period_s == 2.0
        phases = sorted(round(t % 2.0, 1) for t in starts)
        places.append(max(phases, key=phases.count))  # the place this link keeps
    # Neighbours hold places apart (a place is a frame and its ack, well under 0.2 s).
    assert len(set(places)) == len(places)
