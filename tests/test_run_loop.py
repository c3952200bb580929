"""run_forever: steps at deadlines, wakes on events, survives failing steps, gives up clearly."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from p1lora.common.backoff import Backoff
from p1lora.common.clock import VirtualClock
from p1lora.hardware.realtime import SystemClock
from p1lora.service.run_loop import LoopStats, RunLoopError, request_stop, run_forever


class Ticker:
    """Wants to run every `period` seconds; can be told to fail."""

    def __init__(self, period: float = 1.0, failures: int = 0) -> None:
        self.wakeup = threading.Event()
        self.period = period
        self.failures = failures
        self.steps: list[float] = []

    def step(self, now: float) -> float | None:
        self.wakeup.clear()
        if self.failures:
            self.failures -= 1
            raise RuntimeError("step failed")
        self.steps.append(now)
        return now + self.period


def test_it_steps_at_deadlines_until_stopped() -> None:
    clock = VirtualClock()
    stop = threading.Event()
    ticker = Ticker(period=2.0)
    clock.call_at(10.0, stop.set)
    beats: list[int] = []
    run_forever(ticker, clock, stop, max_wait_s=60.0, heartbeat=lambda: beats.append(1))
    assert ticker.steps == [0.0, 2.0, 4.0, 6.0, 8.0]  # the stop at 10 s comes first
    assert len(beats) == len(ticker.steps)


def test_a_wakeup_runs_a_step_before_the_deadline() -> None:
    clock = VirtualClock()
    stop = threading.Event()
    ticker = Ticker(period=100.0)
    clock.call_at(3.0, ticker.wakeup.set)
    clock.call_at(50.0, lambda: request_stop(stop, ticker))
    run_forever(ticker, clock, stop, max_wait_s=600.0)
    assert ticker.steps[:2] == [0.0, 3.0]
    assert clock.now() == 50.0


def test_waits_are_capped_so_a_stop_is_noticed() -> None:
    clock = VirtualClock()
    stop = threading.Event()
    ticker = Ticker(period=1000.0)
    clock.call_at(2.5, stop.set)  # nobody sets the wakeup
    run_forever(ticker, clock, stop, max_wait_s=1.0)
    assert ticker.steps == [0.0, 1.0, 2.0]
    assert clock.now() == 3.0  # seen at the end of the capped wait


def test_failing_steps_are_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    stop = threading.Event()
    ticker = Ticker(period=5.0, failures=3)
    clock.call_at(30.0, stop.set)
    stats = LoopStats()
    with caplog.at_level(logging.INFO, "p1lora.service.run_loop"):
        run_forever(ticker, clock, stop, stats=stats, backoff=Backoff(1.0, 10.0, rng=lambda: 0.0))
    assert stats.failures == 3 and stats.consecutive_failures == 0
    assert ticker.steps[0] == 7.0  # after 1 + 2 + 4 s of backoff
    assert "recovered after 3 failures" in caplog.text
    assert sum(1 for r in caplog.records if r.exc_info) == 3


def test_it_gives_up_after_repeated_failures() -> None:
    clock = VirtualClock()
    ticker = Ticker(failures=100)
    stats = LoopStats()
    with pytest.raises(RunLoopError, match="5 times in a row: step failed"):
        run_forever(ticker, clock, threading.Event(), max_failures=5, stats=stats)
    assert stats.failures == 5


def test_a_failing_heartbeat_does_not_stop_the_loop(caplog: pytest.LogCaptureFixture) -> None:
    clock = VirtualClock()
    stop = threading.Event()
    ticker = Ticker()
    clock.call_at(5.0, stop.set)

    def heartbeat() -> None:
        raise OSError("watchdog socket gone")

    run_forever(ticker, clock, stop, heartbeat=heartbeat)
    assert len(ticker.steps) == 5
    assert caplog.text.count("heartbeat callback failed") == 1


def test_real_time_stop_from_another_thread_is_immediate() -> None:
    stop = threading.Event()
    ticker = Ticker(period=3600.0)
    thread = threading.Thread(
        target=run_forever, args=(ticker, SystemClock(), stop), kwargs={"max_wait_s": 30.0}
    )
    thread.start()
    time.sleep(0.05)
    started = time.monotonic()
    request_stop(stop, ticker)
    thread.join(timeout=5.0)
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.0


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="max_wait_s"):
        run_forever(Ticker(), VirtualClock(), threading.Event(), max_wait_s=0)
    with pytest.raises(ValueError, match="max_failures"):
        run_forever(Ticker(), VirtualClock(), threading.Event(), max_failures=0)
