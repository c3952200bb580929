"""The state directory: atomic rare writes, corrupt files moved aside, failures never fatal."""

from __future__ import annotations

import errno
import json
import logging
import os
from pathlib import Path

import pytest

from p1lora.common.counters import CounterState
from p1lora.common.link import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.persist import RxPersistentState, TxPersistentState
from p1lora.service.state_store import StateStore

SETTINGS = LinkConfig().settings(7, 250_000)


def _tx_state() -> TxPersistentState:
    return TxPersistentState(SETTINGS, RadioMode.FIXED, FixedRadio(7, 250_000, 10), 2.5)


def test_round_trip_in_a_directory(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state", role="tx")
    assert store.load_counters() is None
    assert store.load_tx_state() is None
    assert store.save_counters(CounterState(3000))
    assert store.save_link_state(_tx_state())

    again = StateStore(tmp_path / "state", role="tx")
    assert again.load_counters() == CounterState(3000)
    assert again.load_tx_state() == _tx_state()
    document = json.loads((tmp_path / "state" / "tx_counters.json").read_text())
    assert document == {"data": {"reserved_until": 3000}, "format": 1, "role": "tx"}
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "tx_counters.json",
        "tx_link.json",
    ]


def test_rx_and_tx_can_share_a_directory(tmp_path: Path) -> None:
    tx, rx = StateStore(tmp_path, role="tx"), StateStore(tmp_path, role="rx")
    tx.save_counters(CounterState(1000))
    rx.save_counters(CounterState(5000))
    rx.save_link_state(RxPersistentState(SETTINGS))
    assert StateStore(tmp_path, role="tx").load_counters() == CounterState(1000)
    assert StateStore(tmp_path, role="rx").load_counters() == CounterState(5000)
    assert StateStore(tmp_path, role="rx").load_rx_state() == RxPersistentState(SETTINGS)


def test_unchanged_state_is_not_written_again(tmp_path: Path) -> None:
    store = StateStore(tmp_path, role="tx")
    store.save_counters(CounterState(1000))
    inode = (tmp_path / "tx_counters.json").stat().st_ino
    assert store.save_counters(CounterState(1000))
    assert (tmp_path / "tx_counters.json").stat().st_ino == inode
    assert store.stats().writes == 1
    assert store.stats().skipped_unchanged == 1
    store.save_counters(CounterState(2000))
    assert (tmp_path / "tx_counters.json").stat().st_ino != inode  # replaced by rename


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    store = StateStore(tmp_path, role="tx")
    store.save_counters(CounterState(1000))

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with caplog.at_level(logging.DEBUG, "p1lora.service.state_store"):
        assert not store.save_counters(CounterState(2000))
        assert not store.save_counters(CounterState(3000))
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1  # once per outage, not per attempt
    assert "No space left on device" in errors[0].getMessage()
    assert "tx_counters.json" in errors[0].getMessage()
    assert StateStore(tmp_path, role="tx").load_counters() == CounterState(1000)
    assert [p.name for p in tmp_path.iterdir()] == ["tx_counters.json"]
    assert store.pending
    assert store.stats().failures == 2

    monkeypatch.undo()
    caplog.clear()
    with caplog.at_level(logging.WARNING, "p1lora.service.state_store"):
        assert store.retry()
    assert store.stats().pending == ()
    assert StateStore(tmp_path, role="tx").load_counters() == CounterState(3000)
    assert any("written again" in r.getMessage() for r in caplog.records)


def test_an_unusable_directory_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    store = StateStore(blocker / "state", role="rx")
    assert store.load_counters() is None
    assert not store.save_counters(CounterState(1000))
    assert not store.save_link_state(RxPersistentState(SETTINGS))
    assert store.stats().pending == ("counters", "link")
    assert not store.retry()
    blocker.unlink()  # the user fixes it: the next retry writes what was kept in memory
    assert store.retry()
    assert StateStore(blocker / "state", role="rx").load_rx_state() == RxPersistentState(SETTINGS)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"format": 99, "role": "tx", "data": {}}', "unknown format"),
        (b'{"format": 1, "role": "rx", "data": {"reserved_until": 5}}', "rx"),
        (b'{"format": 1, "role": "tx", "data": {"reserved_until": "5"}}', "reserved_until"),
        (b'{"format": 1, "role": "tx", "data": {"reserved_until": -5}}', "out of range"),
        (b"\xff\xfe garbage", "not valid JSON"),
    ],
)
def test_a_corrupt_file_is_moved_aside_and_defaults_are_used(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes, reason: str
) -> None:
    (tmp_path / "tx_counters.json").write_bytes(content)
    with caplog.at_level(logging.WARNING, "p1lora.service.state_store"):
        assert StateStore(tmp_path, role="tx").load_counters() is None
    assert (tmp_path / "tx_counters.json.corrupt").read_bytes() == content
    assert not (tmp_path / "tx_counters.json").exists()
    message = " ".join(r.getMessage() for r in caplog.records)
    assert reason in message
    assert "moved it to tx_counters.json.corrupt" in message


def test_repeated_corruption_keeps_every_copy(tmp_path: Path) -> None:
    for n in range(3):
        (tmp_path / "rx_link.json").write_text(f"broken {n}")
        assert StateStore(tmp_path, role="rx").load_rx_state() is None
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["rx_link.json.corrupt", "rx_link.json.corrupt.1", "rx_link.json.corrupt.2"]


def test_a_bad_link_state_is_moved_aside(tmp_path: Path) -> None:
    store = StateStore(tmp_path, role="tx")
    store.save_link_state(_tx_state())
    document = json.loads((tmp_path / "tx_link.json").read_text())
    document["data"]["mode"] = "turbo"
    (tmp_path / "tx_link.json").write_text(json.dumps(document))
    assert StateStore(tmp_path, role="tx").load_tx_state() is None
    assert (tmp_path / "tx_link.json.corrupt").exists()


def test_a_leftover_temporary_file_is_removed(tmp_path: Path) -> None:
    (tmp_path / ".tx_counters.json.tmp").write_text("half a write")
    StateStore(tmp_path, role="tx")
    assert not (tmp_path / ".tx_counters.json.tmp").exists()


def test_files_are_private(tmp_path: Path) -> None:
    store = StateStore(tmp_path, role="tx")
    store.save_counters(CounterState(1000))
    assert os.stat(tmp_path / "tx_counters.json").st_mode & 0o077 == 0


def test_memory_store_round_trips() -> None:
    store = StateStore.memory("tx")
    assert store.path("counters") is None
    assert store.load_counters() is None
    store.save_counters(CounterState(7000))
    store.save_link_state(_tx_state())
    assert store.load_counters() == CounterState(7000)
    assert store.load_tx_state() == _tx_state()


def test_misuse_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="role"):
        StateStore(tmp_path, role="both")
    tx = StateStore(tmp_path, role="tx")
    with pytest.raises(ValueError, match="not the rx one"):
        tx.load_rx_state()
    with pytest.raises(TypeError, match="TxPersistentState"):
        tx.save_link_state(RxPersistentState(SETTINGS))
