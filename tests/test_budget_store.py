"""The airtime budget survives a restart: never less counted than was really sent."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1lora.common.budget import AirtimeBudget, Transmission
from p1lora.service.budget_store import BudgetStore, merge_transmissions


class Wall:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def _filled(sent: list[tuple[float, float]]) -> AirtimeBudget:
    budget = AirtimeBudget(0.01)
    for start, airtime in sent:
        budget.record(start, airtime)
    return budget


def test_restart_restores_the_hour_on_a_new_monotonic_clock(tmp_path):
    wall = Wall()
    before = _filled([(100.0 + 10 * i, 0.5) for i in range(60)])  # 30 s in 10 minutes
    store = BudgetStore(tmp_path, "tx", wall_clock=wall)
    assert store.save(before, now=700.0)
    wall.t += 120.0  # the restart took two minutes; the new process's monotonic clock is at 5
    after = AirtimeBudget(0.01)
    assert BudgetStore(tmp_path, "tx", wall_clock=wall).restore(after, now=5.0) > 0
    assert after.used(5.0) == pytest.approx(30.0)
    # 36 s allowed: only 6 s left, as before the restart.
    assert not after.may_send(5.0, 7.0)
    assert after.may_send(5.0, 5.0)


def test_transmissions_older_than_the_window_are_not_restored(tmp_path):
    wall = Wall()
    store = BudgetStore(tmp_path, "rx", wall_clock=wall)
    store.save(_filled([(0.0, 1.0), (3000.0, 2.0)]), now=3100.0)
    wall.t += 1000.0  # the first frame (ended 3099 s before the save) has left the window
    restored = AirtimeBudget(0.01)
    BudgetStore(tmp_path, "rx", wall_clock=wall).restore(restored, now=0.0)
    assert restored.used(0.0) == pytest.approx(2.0)


def test_a_clock_that_went_backwards_counts_as_no_time_passed(tmp_path):
    wall = Wall()
    BudgetStore(tmp_path, "tx", wall_clock=wall).save(_filled([(0.0, 3.0)]), now=10.0)
    wall.t -= 5000.0  # a Pi without RTC before NTP sync
    restored = AirtimeBudget(0.01)
    BudgetStore(tmp_path, "tx", wall_clock=wall).restore(restored, now=50.0)
    assert restored.used(50.0) == pytest.approx(3.0)
    # It still counts for (almost) a full hour from the restart.
    assert restored.used(50.0 + 3590.0) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (json.dumps({"format": 99}).encode(), "unknown format"),
        (
            json.dumps({"format": 1, "role": "rx", "saved_at": 1.0, "transmissions": []}).encode(),
            "written by the 'rx' side",
        ),
        (
            json.dumps(
                {"format": 1, "role": "tx", "saved_at": 1.0, "transmissions": [[1, -2]]}
            ).encode(),
            "bad entry",
        ),
    ],
)
def test_unusable_files_are_reported_and_count_as_a_full_hour(tmp_path, caplog, content, why):
    (tmp_path / "tx_budget.json").write_bytes(content)
    budget = AirtimeBudget(0.01)
    with caplog.at_level(logging.WARNING):
        assert BudgetStore(tmp_path, "tx").restore(budget, now=0.0) == 1
    assert why in caplog.text
    assert budget.used(0.0) == pytest.approx(budget.allowance_s)
    assert (tmp_path / "tx_budget.json.corrupt").read_bytes() == content


def test_a_failing_write_is_logged_once_and_never_raises(tmp_path, caplog):
    blocker = tmp_path / "state"
    blocker.write_text("a file where the directory should be")
    store = BudgetStore(blocker, "tx")
    budget = _filled([(0.0, 1.0)])
    with caplog.at_level(logging.ERROR):
        assert not store.save(budget, now=1.0)
        assert not store.save(budget, now=2.0)
    assert caplog.text.count("cannot write") == 1


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.5, 120.0), st.floats(0.01, 2.0)), min_size=1, max_size=120),
    st.floats(0.0, 3700.0),
)
def test_restored_budget_never_counts_less_than_the_real_frames(tmp_path_factory, gaps, downtime):
    directory = tmp_path_factory.mktemp("budget")
    wall = Wall()
    now = 0.0
    real: list[Transmission] = []
    budget = AirtimeBudget(0.01)
    for gap, airtime in gaps:
        now += gap
        budget.record(now, airtime)
        real.append(Transmission(now, airtime))
        now += airtime
    BudgetStore(directory, "tx", wall_clock=wall).save(budget, now)
    wall.t += downtime
    restored = AirtimeBudget(0.01)
    BudgetStore(directory, "tx", wall_clock=wall).restore(restored, now=0.0)
    # At any later moment, the restored budget counts at least what the real frames still
    # occupy of the window (mapped onto the new clock: old time t is t - now - downtime).
    for probe in (0.0, 60.0, 600.0, 1800.0, 3599.0):
        horizon = probe - restored.window_s
        still = sum(t.airtime for t in real if t.end - now - downtime > horizon + 1e-3)
        assert restored.used(probe) >= still - 1e-6


def test_merged_buckets_never_free_airtime_early():
    sent = [Transmission(float(i), 0.05) for i in range(0, 300, 2)]
    buckets = merge_transmissions(sent)
    assert len(buckets) <= 6
    assert sum(b.airtime for b in buckets) == pytest.approx(sum(t.airtime for t in sent))
    for frame in sent:  # every frame lies in a bucket that ends no earlier than it does
        assert any(b.end >= frame.end for b in buckets)
