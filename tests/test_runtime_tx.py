"""TxRuntime: actions executed in order, radio trouble survived, state persisted and resumed."""

from __future__ import annotations

import logging
import re
import threading
from pathlib import Path

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.counters import CounterState
from p1lora.common.crc16 import crc16_arc
from p1lora.common.link import LinkConfig, LinkEventAction, SerialState, Transmit, TxStatus, timing
from p1lora.common.plausibility import PlausibilityGate, PlausibilityLimits
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.service.link_runtime import RuntimeObserver, frame_type_name
from p1lora.service.state_store import StateStore
from p1lora.tools.sim import SimOptions, Simulation
from p1lora.transmitter.runtime import TxRuntime, tx_status_from_source
from p1lora.transmitter.serial_source import SourceStats
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_sim import PSK, FakeRadio, frame_counter

DISCOVER = 0x01


def _runtime(
    clock: VirtualClock, radio: FakeRadio, store: StateStore | None = None, **kwargs: object
) -> TxRuntime:
    return TxRuntime(
        radio,
        LinkConfig(),
        PSK,
        clock.now(),
        store=store,
        rng=bytes,
        **kwargs,  # type: ignore[arg-type]
    )


def _step_until(runtime: TxRuntime, clock: VirtualClock, end: float) -> int:
    """Step at every deadline up to `end`; return the number of steps."""
    steps = 0
    deadline: float | None = clock.now()
    while True:
        times = [t for t in (deadline, clock.next_event_time()) if t is not None]
        if runtime.wakeup.is_set():
            times.append(clock.now())
        if not times or min(times) > end:
            break
        clock.advance_to(max(min(times), clock.now()))
        if runtime.wakeup.is_set() or (deadline is not None and deadline <= clock.now()):
            deadline = runtime.step(clock.now())
            steps += 1
        assert steps < 10_000, "the runtime spins"
    clock.advance_to(end)
    return steps


def test_it_listens_at_the_rendezvous_and_discovers() -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = _runtime(clock, radio)
    assert radio.configured == [LinkConfig().rendezvous()]  # configured at construction
    deadline = runtime.step(0.0)
    assert len(radio.sent) == 1
    assert radio.sent[0][1][0] & 0x0F == DISCOVER
    assert frame_type_name(radio.sent[0][1]) == "DISCOVER"
    assert deadline is not None and deadline > 0.0
    assert runtime.stats.frames_sent == 1
    assert runtime.stats.airtime_s > 1.0  # a static frame at SF12/BW125


def test_the_counter_reservation_is_stored_before_the_frame_leaves() -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    store = StateStore.memory("tx")
    checked: list[tuple[int, int]] = []

    def check(payload: bytes) -> None:
        saved = store.load_counters()
        assert saved is not None, "frame sent before its counter reservation was persisted"
        checked.append((frame_counter(payload), saved.reserved_until))

    radio.on_send = check
    runtime = _runtime(clock, radio, store)
    runtime.step(0.0)
    assert checked and all(counter < reserved for counter, reserved in checked)


def test_a_restarted_runtime_continues_above_the_reservation() -> None:
    clock = VirtualClock()
    store = StateStore.memory("tx")
    first = FakeRadio(clock)
    _runtime(clock, first, store).step(0.0)
    used = frame_counter(first.sent[0][1])
    saved = store.load_counters()
    assert saved is not None and saved.reserved_until > used

    second = FakeRadio(clock)
    _runtime(clock, second, store).step(0.0)
    assert frame_counter(second.sent[0][1]) >= saved.reserved_until


def test_a_refused_frame_is_reported_as_ended_later_without_spinning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    radio.refuse_send = "the chip does not answer"
    runtime = _runtime(clock, radio)
    with caplog.at_level(logging.DEBUG, "p1lora.service.link_runtime"):
        runtime.step(0.0)
        assert radio.send_attempts == 1
        runtime.step(0.0)  # nothing new within the same instant: no tight send-refuse loop
        assert radio.send_attempts == 1
        steps = _step_until(runtime, clock, 120.0)
    assert runtime.stats.send_refused == radio.send_attempts
    assert 2 <= radio.send_attempts <= 30  # the link keeps trying, with its own backoff
    assert steps < 200
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "the chip does not answer" in warnings[0].getMessage()

    radio.refuse_send = None  # the radio works again: frames go out
    before = len(radio.sent)
    _step_until(runtime, clock, 300.0)
    assert len(radio.sent) > before


def test_a_chip_reset_during_a_frame_ends_that_frame_for_the_link(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = _runtime(clock, radio)
    runtime.step(0.0)
    calls: list[tuple[float, float | None]] = []
    original = runtime.tx_link.tx_done

    def spy(now: float, airtime_s: float | None = None) -> list[object]:
        calls.append((now, airtime_s))
        return original(now, airtime_s)  # type: ignore[return-value]

    monkeypatch.setattr(runtime.tx_link, "tx_done", spy)
    clock.advance_to(0.5)
    radio.fault(recovered=True)
    runtime.step(0.5)
    assert calls == [(0.5, None)]
    assert runtime.stats.radio_faults == 1
    radio.fault(recovered=True)  # a second fault with nothing on air: nothing to report
    runtime.step(0.6)
    assert len(calls) == 1


def test_tx_done_reaches_the_link_with_the_radios_airtime(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = _runtime(clock, radio)
    runtime.step(0.0)
    calls: list[tuple[float, float | None]] = []
    original = runtime.tx_link.tx_done

    def spy(now: float, airtime_s: float | None = None) -> list[object]:
        calls.append((now, airtime_s))
        return original(now, airtime_s)  # type: ignore[return-value]

    monkeypatch.setattr(runtime.tx_link, "tx_done", spy)
    clock.advance_to(1.5)
    radio.finish_tx()
    runtime.step(1.5)
    assert calls and calls[0][0] == 1.5 and calls[0][1] is not None and calls[0][1] > 1.0


def test_settings_the_radio_refuses_are_retried(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    radio.refuse_configure = "SPI transfer failed"
    with caplog.at_level(logging.ERROR, "p1lora.service.link_runtime"):
        runtime = _runtime(clock, radio)
    assert radio.configured == []
    assert runtime.stats.configure_failed == 1
    assert "SPI transfer failed" in caplog.text
    radio.refuse_configure = None
    _step_until(runtime, clock, 5.0)
    assert radio.configured and radio.configured[0] == LinkConfig().rendezvous()


def _with_crc(telegram: bytes) -> bytes:
    """A telegram with its CRC: it passes the plausibility gate at once (CRC-less ones wait
    for the next telegram to confirm them, see test_plausibility)."""
    return telegram + b"%04X\r\n" % crc16_arc(telegram)


def test_telegrams_from_another_thread_are_queued_bounded_and_wake_the_loop() -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = _runtime(clock, radio, max_queued=4)
    radio.wakeup.clear()
    threads = [
        threading.Thread(target=runtime.submit_telegram, args=(_with_crc(b"/X%d\r\n!" % i), 0.0))
        for i in range(10)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert runtime.wakeup.is_set()
    snapshot = runtime.diagnostics(0.0)
    assert snapshot.telegrams_submitted == 10
    assert snapshot.telegrams_dropped == 6
    runtime.step(0.0)
    assert runtime.tx_link.diagnostics(0.0).telegrams["read"] == 4


def test_the_serial_source_view_goes_into_the_status(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = VirtualClock()
    radio = FakeRadio(clock)
    stats = SourceStats(
        "connected", "/dev/ttyUSB0", "5", "115200 8N1", 42, 1, 2, 0, 0, 0, 0, 3, 0.5
    )
    runtime = _runtime(clock, radio, source_stats=lambda now: stats, status_update_s=10.0)
    seen: list[TxStatus] = []
    monkeypatch.setattr(runtime.tx_link, "update_status", seen.append)
    runtime.step(0.0)
    clock.advance_to(25.0)
    runtime.step(25.0)
    assert len(seen) == 2
    assert seen[0] == TxStatus(SerialState.OK, 42, 1, 5, 0.0)
    assert seen[1].uptime_s == 25.0


@pytest.mark.parametrize(
    ("state", "ok", "crc", "expected"),
    [
        ("connected", 11, 0, SerialState.OK),
        ("connected", 10, 5, SerialState.ERROR),  # bytes but no good telegram: a bad cable
        ("no data", 10, 0, SerialState.NO_DATA),
        ("waiting for port", 10, 0, SerialState.DISCONNECTED),
        ("stopped", 10, 0, SerialState.DISCONNECTED),
        ("detecting settings", 10, 0, SerialState.UNKNOWN),
    ],
)
def test_serial_states_map_to_status_states(
    state: str, ok: int, crc: int, expected: SerialState
) -> None:
    previous = SourceStats("connected", "p", "5", None, 10, 0, 0, 0, 0, 0, 0, 0, None)
    now = SourceStats(state, "p", "5", None, ok, crc, 0, 0, 0, 0, 0, 0, None)
    assert tx_status_from_source(now, 5.0, previous=previous).serial_state is expected


def test_without_a_source_the_runtime_reports_its_own_telegram_feed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = VirtualClock()
    runtime = _runtime(clock, FakeRadio(clock))
    seen: list[TxStatus] = []
    monkeypatch.setattr(runtime.tx_link, "update_status", seen.append)
    runtime.step(0.0)
    runtime.submit_telegram(b"/X\r\n!", 5.0)
    clock.advance_to(10.0)
    runtime.step(10.0)
    clock.advance_to(50.0)
    runtime.step(50.0)
    assert [s.serial_state for s in seen] == [
        SerialState.UNKNOWN,
        SerialState.OK,
        SerialState.NO_DATA,
    ]
    assert seen[1].telegrams_read == 1


def test_a_failing_observer_is_logged_once_and_the_loop_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(RuntimeObserver):
        def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
            raise RuntimeError("observer bug")

    class Recording(RuntimeObserver):
        def __init__(self) -> None:
            self.sent: list[str] = []
            self.events: list[str] = []
            self.settings: list[RadioSettings] = []

        def frame_sent(self, now: float, transmit: Transmit, airtime_s: float) -> None:
            self.sent.append(transmit.frame_type)

        def link_event(self, now: float, event: LinkEventAction) -> None:
            self.events.append(event.kind)

        def configured(self, now: float, settings: RadioSettings, reason: str) -> None:
            self.settings.append(settings)

        def frame_received(self, frame: ReceivedFrame, rejected: str | None) -> None:
            raise AssertionError("nothing was received")

    clock = VirtualClock()
    radio = FakeRadio(clock, auto_complete=True)
    recording = Recording()
    with caplog.at_level(logging.ERROR, "p1lora.service.link_runtime"):
        runtime = _runtime(clock, radio, observers=[Broken(), recording])
        _step_until(runtime, clock, 60.0)
    assert len(radio.sent) >= 2
    assert recording.sent == ["DISCOVER"] * len(radio.sent)
    assert "discover" in recording.events and "configure" in recording.events
    # The rendezvous, and the fast rendezvous the unanswered DISCOVERs alternate with.
    config = LinkConfig()
    assert recording.settings[0] == config.rendezvous()
    assert set(recording.settings) == {config.rendezvous(), timing.fast_rendezvous(config)}
    assert runtime.stats.callback_errors == len(radio.sent)
    logged = [r for r in caplog.records if r.exc_info is not None]
    assert len(logged) == 1  # the traceback once, then counted


def test_a_broken_state_directory_does_not_stop_the_transmitter(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    store = StateStore(blocker / "state", role="tx")
    clock = VirtualClock()
    radio = FakeRadio(clock)
    runtime = _runtime(clock, radio, store)
    runtime.step(0.0)
    assert radio.sent, "the frame must still go out"
    assert runtime.stats.persist_failed == 1
    assert store.pending
    blocker.unlink()
    _step_until(runtime, clock, 61.0)  # the runtime retries the write every minute
    assert store.stats().pending == ()
    assert StateStore(blocker / "state", role="tx").load_counters() == CounterState(1000)


def test_the_wrong_store_is_refused() -> None:
    clock = VirtualClock()
    with pytest.raises(ValueError, match="role 'tx'"):
        _runtime(clock, FakeRadio(clock), StateStore.memory("rx"))


def test_commands_reach_the_daemons_callbacks_end_to_end() -> None:
    restarts: list[float] = []
    levels: list[str] = []

    def restart() -> None:  # what a daemon does: exit, and systemd starts it again
        restarts.append(sim.now)
        sim.restart_tx(down_s=1.0)

    sim = Simulation(SimOptions(seed=5), on_restart=restart, on_log_level=levels.append)
    sim.run_until(60.0)
    sim.rx.queue_command("log level debug")
    sim.run_until(90.0)
    assert levels == ["debug"]
    sim.rx.queue_command("restart")
    sim.run_until(200.0)
    assert len(restarts) == 1
    assert sim.tx.tx_link.state == "running"  # the new transmitter linked up again
    delivered_after = [t for t, _, _ in sim.deliveries.delivered if t > restarts[0] + 1.0]
    assert delivered_after
    assert sim.metrics()["telegrams_corrupt"] == 0


def test_link_events_go_to_the_link_log_callable() -> None:
    clock = VirtualClock()
    logged: list[tuple[float, str]] = []

    def link_log(now: float, event: LinkEventAction) -> None:
        logged.append((now, event.kind))

    runtime = _runtime(clock, FakeRadio(clock), link_log=link_log)
    runtime.step(0.0)
    assert (0.0, "discover") in logged
    assert (0.0, "configure") in logged  # the construction's Configure


def _handed_to_link(runtime: TxRuntime, monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every telegram the runtime hands to its link, in order."""
    handed: list[bytes] = []
    real = runtime.tx_link.telegram_ready

    def spy(now: float, raw: bytes):  # type: ignore[no-untyped-def]
        handed.append(raw)
        return real(now, raw)

    monkeypatch.setattr(runtime.tx_link, "telegram_ready", spy)
    return handed


def test_a_telegram_held_over_a_meter_outage_is_dropped_not_sent_as_current(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """DSMR 2.2 (no CRC): the telegram held for confirmation when the meter's data stopped
    must not be sent when the first telegram after a two-hour outage arrives."""
    clock = VirtualClock()
    runtime = _runtime(clock, FakeRadio(clock))
    handed = _handed_to_link(runtime, monkeypatch)
    meter = VirtualMeter("dsmr22", seed=0)
    stream = [meter.next_telegram()[1] for _ in range(4)]
    caplog.set_level(logging.INFO, logger="p1lora.transmitter.runtime")
    for at, raw in zip((0.0, 10.0, 7200.0, 7210.0), stream, strict=True):
        clock.advance_to(at)
        runtime.submit_telegram(raw, at)
        runtime.step(at)
    assert handed == [stream[0], stream[2]]  # stream[1] was held when the data stopped
    snapshot = runtime.diagnostics()
    assert snapshot.telegrams_expired == 1 and snapshot.telegrams_rejected == 0
    assert any("held for confirmation was dropped" in r.getMessage() for r in caplog.records)


def test_telegrams_the_gate_lets_through_unchecked_are_sent_and_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gate = PlausibilityGate(PlausibilityLimits(resync_after=2, fail_open_after=1))
    clock = VirtualClock()
    runtime = _runtime(clock, FakeRadio(clock), plausibility=gate)
    handed = _handed_to_link(runtime, monkeypatch)
    meter = VirtualMeter("dsmr22", seed=0)
    stream = [meter.next_telegram() for _ in range(5)]
    high = [re.sub(rb"1-0:1\.7\.0\([0-9.]+", b"1-0:1.7.0(0070.00", raw) for _, raw in stream]
    for (at, _), raw in zip(stream, high, strict=True):
        clock.advance_to(at)
        runtime.submit_telegram(raw, at)
        runtime.step(at)
    assert handed == high[1:]  # the first refused, then open after 2 in a row
    snapshot = runtime.diagnostics()
    assert snapshot.telegrams_unchecked == 4 and snapshot.telegrams_rejected == 1
