"""Issue 12 item 5: a damaged state file must never switch off a limit or hang a start.

Each test writes the file an attacker (or a dying SD card) could leave in the state directory
and checks the property that matters: the duty cycle holds over the next hour (virtual time),
the node is never muted for longer than one window, and loading returns (with a warning)
instead of raising or blocking.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import pytest

from p1lora.common.budget import AirtimeBudget
from p1lora.common.link import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.persist import TxPersistentState
from p1lora.service.budget_store import BudgetStore
from p1lora.service.config import load_config
from p1lora.service.state_store import StateStore
from p1lora.transmitter.cli import CONFIG_MEMORY, apply_config_changes
from p1lora.transmitter.options import TX_OPTIONS
from tests.helpers_hardening import fifo_at, returns_within

WALL = 1_800_000_000.0
NOW = 500.0  # the new process's monotonic clock at restore


def _budget_file(directory: Path, transmissions: str, saved_at: str = f"{WALL}") -> None:
    """Written by hand: `json.dumps` cannot produce every shape an attacker can."""
    (directory / "tx_budget.json").write_text(
        f'{{"format":1,"role":"tx","saved_at":{saved_at},"window_s":3600,'
        f'"transmissions":{transmissions}}}'
    )


def _restored(directory: Path) -> AirtimeBudget:
    budget = AirtimeBudget(0.01)  # 36 s per hour
    returns_within(
        lambda: BudgetStore(directory, "tx", wall_clock=lambda: WALL).restore(budget, NOW)
    )
    return budget


def _airtime_sent_in_one_window(budget: AirtimeBudget, start: float) -> float:
    """A greedy node: a 1 s frame whenever the budget lets it, for one window."""
    sent, now = 0.0, start
    while now < start + budget.window_s:
        if budget.may_send(now, 1.0):
            budget.record(now, 1.0)
            sent += 1.0
            now += 1.0
        else:
            now += 5.0
    return sent


@pytest.mark.parametrize(
    "transmissions",
    [
        "[[10.0, NaN]]",  # the example: NaN airtime made `used` 0.0 forever
        "[[NaN, 1.0]]",
        "[[10.0, Infinity]]",
        "[[10.0, 1e999]]",  # parses to inf without any keyword
        "[[-Infinity, 1.0]]",
        "[[10.0, -0.5]]",
        '[[10.0, "1"]]',
        "[" * 5000 + "]" * 5000,
    ],
)
def test_a_damaged_budget_file_never_lets_the_node_exceed_its_duty_cycle(
    tmp_path, caplog, transmissions
):
    _budget_file(tmp_path, transmissions)
    with caplog.at_level(logging.WARNING):
        budget = _restored(tmp_path)
    assert _airtime_sent_in_one_window(budget, NOW) <= budget.allowance_s
    assert "airtime budget" in caplog.text
    assert any(r.levelno >= logging.ERROR for r in caplog.records)


def test_a_nan_saved_at_is_damage_not_no_time_passed(tmp_path):
    _budget_file(tmp_path, "[[10.0, 30.0]]", saved_at="NaN")
    budget = _restored(tmp_path)
    assert _airtime_sent_in_one_window(budget, NOW) <= budget.allowance_s


def test_a_negative_age_cannot_mute_the_node_for_longer_than_one_window(tmp_path):
    """Before: an entry that 'ended' 10^12 s in the future counted against the budget forever."""
    _budget_file(tmp_path, "[[-1e12, 36.0]]")
    budget = _restored(tmp_path)
    assert budget.may_send(NOW + budget.window_s + 1.0, 1.0)


def test_a_frame_still_on_the_air_at_the_save_is_not_damage(tmp_path):
    """A save during a transmission stores a slightly negative age (end after the save)."""
    _budget_file(tmp_path, "[[-0.4, 1.2]]")
    budget = _restored(tmp_path)
    assert budget.used(NOW) == pytest.approx(1.2)


def test_a_future_saved_at_counts_as_no_time_passed(tmp_path):
    """A Pi without a real-time clock boots with its clock behind: the save looks like it is
    in the future. That is legal (old frames count for longer), so it is not damage."""
    _budget_file(tmp_path, "[[100.0, 5.0]]", saved_at=f"{WALL + 86400}")
    budget = _restored(tmp_path)
    assert budget.used(NOW) == pytest.approx(5.0)
    assert budget.used(NOW + budget.window_s - 101.0) == pytest.approx(5.0)


def test_a_fifo_as_the_budget_file_neither_blocks_nor_opens_the_budget(tmp_path):
    with fifo_at(tmp_path / "tx_budget.json"):
        budget = _restored(tmp_path)
    assert _airtime_sent_in_one_window(budget, NOW) <= budget.allowance_s


def test_a_missing_budget_file_is_a_first_start_with_the_full_allowance(tmp_path):
    budget = _restored(tmp_path)
    assert budget.used(NOW) == 0.0


def test_the_assumed_full_hour_is_saved_so_a_restart_loop_cannot_reset_it(tmp_path):
    _budget_file(tmp_path, "[[10.0, NaN]]")
    budget = _restored(tmp_path)
    assert BudgetStore(tmp_path, "tx", wall_clock=lambda: WALL + 60).save(budget, NOW + 60)
    again = AirtimeBudget(0.01)
    BudgetStore(tmp_path, "tx", wall_clock=lambda: WALL + 120).restore(again, NOW)
    assert _airtime_sent_in_one_window(again, NOW) <= again.allowance_s
    assert (tmp_path / "tx_budget.json.corrupt").exists()  # the evidence is kept


# ------------------------------------------------------------------ counters and link state


def _state_file(directory: Path, kind: str, data: str) -> Path:
    path = directory / f"tx_{kind}.json"
    path.write_text(f'{{"format":1,"role":"tx","data":{data}}}')
    return path


def _tx_link_data(**overrides: object) -> dict[str, object]:
    settings = LinkConfig().settings(7, 250_000)
    state = TxPersistentState(settings, RadioMode.FIXED, FixedRadio(7, 250_000, 10), 2.5)
    return {**state.as_dict(), **overrides}


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_non_finite_number_in_the_link_state_is_damage(tmp_path, caplog, number):
    """Before: `interval_s: NaN` was loaded and became the transmitter's send interval."""
    data = json.dumps(_tx_link_data(interval_s=0.0)).replace(
        '"interval_s": 0.0', f'"interval_s": {number}'
    )
    path = _state_file(tmp_path, "link", data)
    with caplog.at_level(logging.WARNING):
        assert StateStore(tmp_path, role="tx").load_tx_state() is None
    assert not path.exists()
    assert "damaged" in caplog.text


def test_a_negative_interval_in_the_link_state_is_damage(tmp_path):
    _state_file(tmp_path, "link", json.dumps(_tx_link_data(interval_s=-5.0)))
    assert StateStore(tmp_path, role="tx").load_tx_state() is None


def test_a_deeply_nested_state_file_is_damage_not_a_crash(tmp_path, caplog):
    """Before: RecursionError escaped `load_counters` and the daemon died at start."""
    _state_file(tmp_path, "counters", "[" * 20000 + "]" * 20000)
    with caplog.at_level(logging.WARNING):
        assert StateStore(tmp_path, role="tx").load_counters() is None
    assert "nested too deeply" in caplog.text


@pytest.mark.parametrize("kind", ["counters", "link"])
def test_a_fifo_in_the_state_directory_does_not_block_the_start(tmp_path, caplog, kind):
    store = StateStore(tmp_path, role="tx")
    load = store.load_counters if kind == "counters" else store.load_tx_state
    with fifo_at(tmp_path / f"tx_{kind}.json"), caplog.at_level(logging.WARNING):
        assert returns_within(load) is None
    assert "named pipe" in caplog.text


def test_finite_state_round_trips_unchanged(tmp_path):
    store = StateStore(tmp_path, role="tx")
    state = TxPersistentState.from_dict(_tx_link_data(interval_s=1e-3))
    assert store.save_link_state(state)
    loaded = StateStore(tmp_path, role="tx").load_tx_state()
    assert loaded == state
    assert loaded is not None and math.isfinite(loaded.interval_s)


# ------------------------------------------------------------------ the remembered config


@pytest.mark.parametrize("kind", ["nested", "fifo"])
def test_a_damaged_remembered_config_counts_as_a_changed_config(tmp_path, kind):
    """`tx_config.json` (what the config said at the last start): before, deep nesting raised
    RecursionError at start and a FIFO blocked it; now either counts as "the config changed"."""
    remembered = tmp_path / CONFIG_MEMORY
    config_file = tmp_path / "tx.toml"
    config_file.write_text(
        "[meter]\nsource = 'virtual'\n[radio]\nbackend = 'sim'\nmode = 'fixed'\n"
    )
    config_file.write_text(config_file.read_text() + "fixed_sf = 9\nfixed_bw = 125\n")
    config = load_config(TX_OPTIONS, None, {}, path=config_file)
    store = StateStore(tmp_path, role="tx")
    store.save_link_state(TxPersistentState.from_dict(_tx_link_data(mode="auto", fixed=None)))
    if kind == "nested":
        remembered.write_text("[" * 20000 + "]" * 20000)
        returns_within(lambda: apply_config_changes(config, store, tmp_path))
    else:
        with fifo_at(remembered):
            returns_within(lambda: apply_config_changes(config, store, tmp_path))
    saved = StateStore(tmp_path, role="tx").load_tx_state()
    assert saved is not None and saved.mode is RadioMode.FIXED
