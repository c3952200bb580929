"""RxRuntime: sinks get telegrams, status, replies, events and diagnostics; nothing breaks it."""

from __future__ import annotations

import logging
import threading

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.link import LinkConfig, ReplyStatus
from p1lora.common.link.commands import CommandSyntaxError
from p1lora.common.link.events import LinkEventAction
from p1lora.receiver.runtime import BaseSink, RxRuntime, RxSink
from p1lora.service.state_store import StateStore
from p1lora.tools.sim import SimOptions, Simulation
from tests.helpers_sim import PSK, BrokenSink, FakeRadio, RecordingSink


def _sim_with(*sinks: RxSink, seed: int = 2) -> Simulation:
    sim = Simulation(SimOptions(seed=seed))
    for sink in sinks:
        sim.rx.add_sink(sink)
    return sim


def test_sinks_get_every_verified_telegram_once() -> None:
    sink = RecordingSink()
    sim = _sim_with(sink)
    sim.run_until(120.0)
    raws = [raw for raw, _, _ in sink.telegrams]
    assert len(raws) > 100
    assert len(set(raws)) == len(raws)
    assert all(sim.was_read(raw) for raw in raws)
    assert not sim.was_read(raws[0].replace(b"/ISK5", b"/XXX5"))
    _, received_at, report = sink.telegrams[-1]
    assert report.settings.sf == 7 and report.settings.bw_hz == 250_000
    assert report.rssi_dbm < -50 and report.frame_bytes < 64
    assert received_at <= sim.now
    assert "session_established" in sink.events
    assert sink.statuses, "the transmitter's status report reaches the sinks"


def test_a_broken_sink_is_logged_and_the_others_still_get_everything(
    caplog: pytest.LogCaptureFixture,
) -> None:
    good = RecordingSink()
    with caplog.at_level(logging.ERROR, "p1lora.service.link_runtime"):
        sim = _sim_with(BrokenSink(), good)
        sim.run_until(120.0)
    assert len(good.telegrams) > 100
    assert len(good.telegrams) == len(sim.deliveries.delivered)
    snapshot = sim.rx.diagnostics()
    assert snapshot.sink_errors >= len(good.telegrams)
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 3  # one per failing method, then counted
    assert sim.tx.tx_link.state == "running"


def test_diagnostics_every_few_seconds_describe_the_link() -> None:
    sink = RecordingSink()
    sim = _sim_with(sink)
    sim.run_until(60.0)
    # Every 5 s, plus one right after each step that carried link events (handshake, switch).
    periodic = [b.at - a.at for a, b in zip(sink.snapshots, sink.snapshots[1:], strict=False)]
    assert 10 <= len(sink.snapshots) <= 13 + len(sink.events)
    assert max(periodic) <= 5.0 + 1e-9
    last = sink.snapshots[-1]
    assert last.link.state == "running"
    assert last.link.settings.sf == 7
    assert last.link.uplink_rssi_dbm is not None and last.link.uplink_snr_db is not None
    assert last.telegrams_delivered == sum(1 for _, t, _ in sink.telegrams if t <= last.at)
    assert last.seconds_since_last_telegram is not None
    assert last.seconds_since_last_telegram < 5.0
    assert last.transmitter is not None and last.transmitter_status_at is not None
    assert last.radio is not None and last.radio.frames_received > 40
    assert last.runtime.frames_sent > 40


def test_diagnostics_after_a_switch_already_show_the_new_setting() -> None:
    sink = RecordingSink()
    sim = _sim_with(sink)
    configured: list[tuple[float, str]] = []
    record = sink.link_event

    def link_event(event: LinkEventAction, at: float) -> None:
        if event.kind == "configure":
            configured.append((at, str(event.fields["settings"])))
        record(event, at)

    sink.link_event = link_event  # type: ignore[method-assign]
    sim.run_until(30.0)
    assert configured, "the link never switched"
    for at, label in configured:
        # The snapshot sent in the same step as the event already shows the new setting.
        snapshot = next(s for s in sink.snapshots if s.at >= at)
        assert snapshot.at == at
        assert snapshot.link.settings.label() == label


def test_commands_queued_from_another_thread_are_answered() -> None:
    sink = RecordingSink()
    sim = _sim_with(sink)
    sim.run_until(60.0)
    ids: list[int] = []
    thread = threading.Thread(target=lambda: ids.append(sim.rx.queue_command("info")))
    thread.start()
    thread.join()
    assert sim.rx.wakeup.is_set()
    sim.run_until(80.0)
    assert len(sink.replies) == 1
    reply = sink.replies[0]
    assert reply.command_id == ids[0]
    assert reply.status is ReplyStatus.OK
    assert "running" in reply.text and "SF7/BW250" in reply.text
    assert "command_queued" in sink.events


def test_a_command_that_does_not_parse_is_refused_before_queueing() -> None:
    sim = _sim_with()
    with pytest.raises(CommandSyntaxError):
        sim.rx.queue_command("format the sd card")
    assert sim.rx.rx_link.pending_commands == []


def test_a_rebooted_receiver_resumes_at_its_last_good_setting() -> None:
    sink = RecordingSink()
    sim = _sim_with(sink)
    sim.run_until(60.0)
    saved = sim.rx_store.load_rx_state()
    assert saved is not None and (saved.last_good.sf, saved.last_good.bw_hz) == (7, 250_000)
    sim.restart_rx(down_s=3.0)
    sim.run_until(63.0)  # it boots now
    assert sim.rx.rx_link.state == "resume"
    assert sim.rx.rx_link.settings.label() == "SF7/BW250"
    sim.run_until(120.0)
    assert sim.rx.rx_link.state == "running"
    after = [t for t, _, _ in sim.deliveries.delivered if t > 63.5]
    assert after and after[0] < 80.0  # RESYNC: back within seconds, no SF12 round trip


def test_the_runtime_needs_the_receivers_store() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="role 'rx'"):
        RxRuntime(FakeRadio(clock), LinkConfig(), PSK, 0.0, store=StateStore.memory("tx"))


def test_base_sink_ignores_everything_and_satisfies_the_protocol() -> None:
    assert isinstance(BaseSink(), RxSink)
    assert isinstance(RecordingSink(), RxSink)


def test_no_sinks_means_no_diagnostics_deadline() -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = RxRuntime(radio, LinkConfig(), PSK, 0.0, rng=bytes)
    assert radio.configured == [LinkConfig().rendezvous()]
    assert runtime.step(0.0) is None  # a receiver at the rendezvous waits for frames only
    runtime.add_sink(RecordingSink())
    deadline = runtime.step(0.0)
    assert deadline is not None and deadline <= 5.0
