"""Issue 12 info item: an exhausted counter store stops the daemon with one clear error.

Before, a saved reservation of 2^32 let the transmitter start; every frame it tried to seal
raised inside the link, which logged a traceback and tried again, for ever (systemd saw a
running service). No retry and no restart can cure it: only a new key can.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.counters import CounterExhaustedError, CounterState, FrameCounter
from p1lora.common.link import LinkConfig
from p1lora.service.keyfile import write_key_file
from p1lora.service.run_loop import LoopStats, run_forever
from p1lora.service.state_store import StateStore
from p1lora.transmitter.runtime import TxRuntime
from tests.helpers_daemons import clean_env
from tests.helpers_sim import PSK, FakeRadio

EXHAUSTED = 2**32


def test_a_counter_with_no_value_left_refuses_to_start():
    with pytest.raises(CounterExhaustedError, match="new pre-shared key"):
        FrameCounter(CounterState(EXHAUSTED))
    assert FrameCounter(CounterState(EXHAUSTED - 1)).next_value == EXHAUSTED - 1


def _runtime(clock: VirtualClock, reserved_until: int) -> TxRuntime:
    store = StateStore.memory("tx")
    store.save_counters(CounterState(reserved_until))
    return TxRuntime(
        FakeRadio(clock, auto_complete=True), LinkConfig(), PSK, clock.now(), store=store, rng=bytes
    )


def test_a_runtime_on_an_exhausted_store_does_not_start():
    with pytest.raises(CounterExhaustedError):
        _runtime(VirtualClock(), EXHAUSTED)


def test_running_out_mid_run_ends_the_loop_with_one_error(caplog):
    """Three values left: the loop must end (not log a traceback per frame for ever)."""
    clock = VirtualClock()
    runtime = _runtime(clock, EXHAUSTED - 3)
    stop = threading.Event()
    stats = LoopStats()

    def give_up_after_an_hour() -> None:
        if clock.now() > 3600.0:
            stop.set()

    with caplog.at_level(logging.INFO), pytest.raises(CounterExhaustedError):
        run_forever(runtime, clock, stop, heartbeat=give_up_after_an_hour, stats=stats)
    assert not stop.is_set()
    assert stats.failures == 0  # not retried: no retry can cure it
    assert "internal error" not in caplog.text
    assert sum(r.exc_info is not None for r in caplog.records) == 0


def test_the_daemon_exits_2_with_one_clear_line(tmp_path: Path):
    """In a subprocess: before the fix the daemon ran (and logged) for ever."""
    key = tmp_path / "key"
    write_key_file(key, PSK)
    state = tmp_path / "state"
    state.mkdir()
    (state / "tx_counters.json").write_text(
        json.dumps({"format": 1, "role": "tx", "data": {"reserved_until": EXHAUSTED}})
    )
    argv = ["--radio", "sim", "--meter", "virtual", "--key-file", str(key)]
    result = subprocess.run(
        [sys.executable, "-m", "p1lora.transmitter.cli", *argv, "--state-dir", str(state)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=clean_env(tmp_path),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("new pre-shared key") == 1
    assert "Traceback" not in result.stderr
