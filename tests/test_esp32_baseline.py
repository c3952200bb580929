"""The ESP32 firmware's model (`p1-lora sim --baseline ...`) pins its published behaviour.

Each expectation below is read off the firmware's source (plan-d-io/P1-LoRa-transmitter and
-receiver; the citations are in `tools.esp32_firmware`), not off the model's output.
"""

from __future__ import annotations

import itertools

import pytest

from p1lora.tools.esp32_baseline import BASELINES, Esp32Simulation
from p1lora.tools.esp32_firmware import LADDER, UPDATE_INTERVAL_S, RxMode, TxMode, run_loss_limit
from p1lora.tools.esp32_frames import MeterData, Phases, firmware_value
from p1lora.tools.sim import SimOptions
from tests.conftest import telegram_bytes

SHIPPED = BASELINES["esp32"]
SAME_CHANNEL = BASELINES["esp32-same-channel"]


def _run(
    variant: str, duration_s: float, **options: object
) -> tuple[Esp32Simulation, dict[str, object]]:
    sim = Esp32Simulation(SimOptions(duration_s=duration_s, **options), BASELINES[variant])  # type: ignore[arg-type]
    return sim, sim.run().as_dict()


def test_its_tables_are_the_firmwares() -> None:
    assert [(r.sf, r.bw_khz) for r in LADDER] == [
        (12, 125),
        (12, 250),
        (11, 250),
        (10, 250),
        (9, 250),
        (8, 250),
        (7, 250),
    ]
    assert [r.spacing_s for r in LADDER] == [8, 3, 2, 2, 2, 2, 1]
    assert [r.window_s for r in LADDER] == [38, 20, 10, 8, 8, 8, 8]
    assert UPDATE_INTERVAL_S[Phases.THREE] == (372.346, 173.169, 93.369, 50.238, 26.977, 14.538, 7)
    assert UPDATE_INTERVAL_S[Phases.SINGLE][0] == 230.474
    assert UPDATE_INTERVAL_S[Phases.SINGLE][-1] == 4.5
    # The SF11 typo: SF11 keeps whatever loss limit was set before.
    assert [run_loss_limit(sf, 25) for sf in (7, 8, 9, 10, 11, 12)] == [26, 21, 15, 9, 25, 3]


def test_values_travel_as_float_thousandths() -> None:
    meter = MeterData()
    meter.split(telegram_bytes("V5.txt"))
    assert meter.three_phase and meter.phases is Phases.THREE
    assert len(meter.plaintext(24)) == 96
    assert firmware_value(230.1) == pytest.approx(230.1, abs=1e-3)
    # float32 has 24 bits of mantissa: near a million kWh the thousandths are gone.
    assert firmware_value(999999.999) == 1_000_000.0


def test_a_good_link_climbs_the_whole_ladder_and_reads_every_8_seconds() -> None:
    """SF7/BW250, three-phase: more than 7 s since the last reading, checked when a telegram
    (one a second) has been read, so every 8th telegram is sent."""
    sim, metrics = _run("esp32-same-channel", 900.0, path_loss_db=100.0)
    rungs = [(s.sf, s.bw_hz // 1000) for _, s, _ in sim.tx_log.settings]
    assert rungs == [(r.sf, r.bw_khz) for r in LADDER]
    assert metrics["final_state"] == "operation"
    assert (metrics["final_sf"], metrics["final_bw"]) == (7, 250.0)
    starts = [s.start for s in sim.tx_log.sent if s.frame_type == "READING"]
    assert {round(b - a, 3) for a, b in itertools.pairwise(starts)} == {8.0}
    assert metrics["delivered"] == len(starts)  # every reading published, none corrupt
    assert metrics["delivered_corrupt"] == 0
    assert metrics["delivers"] == "readings"
    # About 33 s of airtime (both sides) before the first reading: the climb.
    assert 25.0 < float(metrics["handshake_airtime_s"]) < 45.0  # type: ignore[arg-type]


def test_frame_sizes_on_air() -> None:
    sim, _ = _run("esp32-same-channel", 300.0, path_loss_db=100.0)
    sizes: dict[str, set[int]] = {}
    for record in [*sim.tx_log.sent, *sim.rx_log.sent]:
        sizes.setdefault(record.frame_type, set()).add(record.nbytes)
    assert sizes == {
        "START_SYNC": {8},
        "SYNC_ACK": {7},
        "CALIBRATION": {52},
        "CRC_ACK": {8},
        "STOP_SYNC": {7},
        "READING": {100},
    }


def test_single_phase_readings_are_calibration_frames_the_receiver_ignores() -> None:
    """`meterType` is only set for three-phase meters: a single-phase one sends type 0, which
    the receiver in operation neither acks nor publishes; the transmitter re-syncs."""
    sim, metrics = _run("esp32-same-channel", 900.0, path_loss_db=100.0, profile="dsmr22")
    assert {s.nbytes for s in sim.tx_log.sent if s.frame_type == "READING"} == {52}
    assert metrics["delivered"] == 0
    resyncs = metrics["resyncs"]
    assert isinstance(resyncs, dict) and set(resyncs) == {"too many unacked readings in a row"}


def test_as_shipped_it_delivers_from_the_first_reading_after_a_sync() -> None:
    """The newest receiver guards its packet-loss division (`if(inMsgCounter > 0)`), so the
    first reading after a sync (message counter 0) is published like any other."""
    shipped, metrics = _run("esp32", 600.0, path_loss_db=100.0)
    assert shipped.frequency_hz == 868_000_000
    assert {s.settings.tx_power_dbm for s in shipped.tx_log.sent} == {17}
    first = min(s.start for s in shipped.tx_log.sent if s.frame_type == "READING")
    assert shipped.published[0][1] == pytest.approx(first, abs=1.0)
    assert metrics["delivered"] == len(shipped.published) > 50  # type: ignore[operator]
    assert metrics["receiver_sync_requests"] == 0  # SF7: below the SF9 the request needs


def test_silence_sends_both_sides_back_to_sf12() -> None:
    """The link goes dead in operation: the transmitter re-syncs after more than 26 unacked
    readings at SF7, the receiver after 180 s without a telegram."""
    sim = Esp32Simulation(
        SimOptions(duration_s=900.0, path_loss_db=100.0, degrade=((200.0, 250.0),)), SHIPPED
    )
    metrics = sim.run().as_dict()
    assert metrics["resyncs"] == {"too many unacked readings in a row": 1}
    resync = next(t for t, _, why in sim.tx_log.settings if why.startswith("re-sync"))
    assert 200.0 + 26 * 8.0 < resync < 200.0 + 28 * 8.0
    timeout = [t for t, s, why in sim.rx_log.settings if why == "180 s without a telegram"]
    assert len(timeout) == 1
    last_reading = max(at for _, at in sim.published)
    assert timeout[0] == pytest.approx(last_reading + 180.0, abs=0.01)


def test_at_the_end_of_a_counter_cycle_the_receiver_asks_for_a_better_setting() -> None:
    """At SF9 or slower with little loss, the receiver answers the reading whose byte-wide
    counter wrapped with a sync request (type 231); the transmitter acks it (type 24) and
    both climb the ladder again from SF12/BW125."""
    sim = Esp32Simulation(SimOptions(duration_s=200.0, path_loss_db=100.0), SHIPPED)
    sim.run()
    tx, rx = sim.tx, sim.rx
    assert tx.mode.name == "OPERATION" and rx.mode.name == "OPERATION"
    now = sim.clock.now()
    for side in (tx, rx):  # as if the climb had stopped at SF9/BW250
        side.set_radio(now, 9, 250, "test: SF9")
        side.set_sf, side.set_bw = 9, 250
    tx.sync_count = 4
    tx.counter, tx.ack_counter, rx.counter = 0, 0, 250  # the next reading wraps to 0
    sim.run_until(now + 150.0)
    assert rx.sync_requests == 1
    kinds = [s.frame_type for s in [*sim.rx_log.sent, *sim.tx_log.sent] if s.start > now]
    assert "SYNC_REQUEST" in kinds and "RESYNC" in kinds
    assert tx.resyncs == {"the receiver requested it": 1}
    assert any(why == "re-sync requested" for _, _, why in sim.rx_log.settings)
    assert any(
        t > now and why.startswith("re-sync") and (s.sf, s.bw_hz) == (12, 125_000)
        for t, s, why in sim.tx_log.settings
    )


def test_like_for_like_uses_p1loras_channel_and_power() -> None:
    sim, metrics = _run("esp32-same-channel", 60.0, path_loss_db=100.0, frequency_hz=868_100_000)
    assert {s.settings.frequency_hz for s in sim.tx_log.sent} == {868_100_000}
    assert {s.settings.tx_power_dbm for s in sim.tx_log.sent} == {14}
    assert metrics["duty_cycle_limit"] == 0.01


def test_a_failed_window_reverts_then_retries_the_same_rung() -> None:
    """TX syncMode 4 (f2e5d06): more than half unacked steps one rung down with
    `revertTried`, but the next pass sees both counters cleared, counts that as a success and
    requests the same rung again; no ack at all after a revert restarts at rung 0. The
    receiver (e0df6f8 syncMode 3) steps down once, then goes to rung 0."""
    sim = Esp32Simulation(SimOptions(duration_s=1.0, path_loss_db=100.0), SHIPPED)
    tx, rx, now = sim.tx, sim.rx, 0.0
    tx.mode, tx.sync_count, tx.counter, tx.ack_counter = TxMode.EVALUATE, 3, 8, 3
    tx.loop(now)
    assert (tx.mode, tx.sync_count, tx.revert_tried) == (TxMode.EVALUATE, 2, True)
    tx.loop(now)
    assert (tx.mode, tx.sync_count, tx.revert_tried) == (TxMode.REQUEST, 3, True)
    tx.mode, tx.counter, tx.ack_counter = TxMode.EVALUATE, 8, 0
    tx.loop(now)
    assert (tx.mode, tx.sync_count, tx.revert_tried) == (TxMode.REQUEST, 0, False)
    assert tx.window_s == LADDER[0].window_s

    rx.mode, rx.sync_count, rx.counter = RxMode.WINDOW_END, 4, 0
    rx.loop(now)
    assert (rx.mode, rx.sync_count, rx.revert_tried) == (RxMode.WINDOW, 3, True)
    assert rx.window_s == 2 * UPDATE_INTERVAL_S[Phases.SINGLE][3]
    rx.mode = RxMode.WINDOW_END
    rx.loop(now)
    assert (rx.mode, rx.sync_count, rx.revert_tried) == (RxMode.WINDOW, 0, False)
    assert (rx.settings.sf, rx.settings.bw_hz) == (12, 125_000)
