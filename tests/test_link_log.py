"""The link-quality log writer: schema, rotation, failure handling, and never raising."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.service.link_log import LinkLog, format_time

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
SETTINGS = RadioSettings(frequency_hz=869_525_000, sf=7, bw_hz=125_000, tx_power_dbm=14)


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_time_format_is_iso8601_utc_with_milliseconds():
    assert format_time(T0) == "2024-05-01T12:00:00.000Z"
    assert format_time(T0 + 1.2345) == "2024-05-01T12:00:01.234Z"


def test_frame_and_event_records_carry_the_schema(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    with LinkLog(path) as log:
        frame = ReceivedFrame(
            payload=b"x" * 42, rssi_dbm=-97.5, snr_db=7.25, settings=SETTINGS, received_at=12.0
        )
        log.received(
            T0, frame, frame_type="telegram", airtime=0.0778, tx_power=14, counter=17, session="a1"
        )
        log.received(T0 + 1, frame, frame_type="telegram", airtime=0.0778, ok=False, reason="auth")
        log.sent(T0 + 2, SETTINGS, frame_type="ack", nbytes=13, airtime=0.0463, counter=5)
        log.settings_changed(T0 + 3, SETTINGS.replace(sf=8), reason="auto-tune", margin_db=6.5)
        log.event(T0 + 4, "handshake", step="probe", good=3)
        assert log.stats().written == 5
    rx, rejected, tx, settings, event = read_records(path)
    assert rx == {
        "time": "2024-05-01T12:00:00.000Z",
        "kind": "frame",
        "direction": "rx",
        "type": "telegram",
        "sf": 7,
        "bw": 125000,
        "freq": 869525000,
        "tx_power": 14,
        "bytes": 42,
        "airtime": 0.0778,
        "rssi": -97.5,
        "snr": 7.25,
        "ok": True,
        "reason": None,
        "counter": 17,
        "session": "a1",
    }
    assert (rejected["ok"], rejected["reason"]) == (False, "auth")
    assert tx["direction"] == "tx" and tx["rssi"] is None and tx["tx_power"] == 14
    assert tx["counter"] == 5 and tx["bytes"] == 13
    assert settings == {
        "time": "2024-05-01T12:00:03.000Z",
        "kind": "event",
        "type": "settings",
        "sf": 8,
        "bw": 125000,
        "freq": 869525000,
        "tx_power": 14,
        "reason": "auto-tune",
        "margin_db": 6.5,
    }
    assert event == {
        "time": "2024-05-01T12:00:04.000Z",
        "kind": "event",
        "type": "handshake",
        "step": "probe",
        "good": 3,
    }


def test_odd_values_never_raise_and_schema_fields_win(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    log = LinkLog(path)
    log.frame(
        T0,
        direction="rx",
        frame_type="telegram",
        sf=7,
        bw=125_000,
        freq=None,
        tx_power=None,
        nbytes=10,
        airtime=None,
        rssi=float("nan"),
        snr=float("inf"),
        where=Path("/x"),  # not JSON: written as text
        time="forged",  # cannot override the schema's own field
    )
    log.event(float("nan"), "bad-time")  # dropped with a warning, no exception
    log.frame(
        T0,
        direction="sideways",
        frame_type="x",
        sf=None,
        bw=None,
        freq=None,
        tx_power=None,
        nbytes=0,
        airtime=None,
    )
    log.close()
    (record,) = read_records(path)
    assert record["rssi"] is None and record["snr"] is None
    assert record["where"] == "/x"
    assert record["time"] == "2024-05-01T12:00:00.000Z"


def test_disabled_log_does_nothing(tmp_path: Path):
    log = LinkLog(None)
    assert not log.enabled
    log.sent(T0, SETTINGS, frame_type="ack", nbytes=13, airtime=0.05)
    log.event(T0, "x")
    log.close()
    assert log.stats().written == 0
    assert list(tmp_path.iterdir()) == []


def test_creates_missing_directories(tmp_path: Path):
    path = tmp_path / "var" / "log" / "p1-lora" / "link.jsonl"
    with LinkLog(path) as log:
        log.event(T0, "start")
    assert read_records(path)[0]["type"] == "start"


def test_rotation_keeps_n_files_each_below_the_limit(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    log = LinkLog(path, max_bytes=2048, backups=2)
    for i in range(200):
        log.event(T0 + i, "tick", seq=i)
    log.close()
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["link.jsonl", "link.jsonl.1", "link.jsonl.2"]
    for name in files:
        assert 0 < (tmp_path / name).stat().st_size <= 2048
    # The kept lines are the newest ones, consecutive across the files (oldest file first).
    seqs = [
        r["seq"]
        for name in ("link.jsonl.2", "link.jsonl.1", "link.jsonl")
        for r in read_records(tmp_path / name)
    ]
    assert seqs == list(range(seqs[0], 200))
    assert log.stats().rotations >= 2
    assert log.stats().written == 200


def test_rotation_without_backups_starts_over(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    with LinkLog(path, max_bytes=1024, backups=0) as log:
        for i in range(100):
            log.event(T0 + i, "tick", seq=i)
    assert [p.name for p in tmp_path.iterdir()] == ["link.jsonl"]
    seqs = [r["seq"] for r in read_records(path)]
    assert seqs[-1] == 99 and seqs == list(range(seqs[0], 100))


def test_appends_to_an_existing_log_and_repairs_a_cut_line(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    path.write_bytes(b'{"time":"2024-05-01T11:00:00Z","kind":"event","type":"old"}\n{"time":"20')
    with LinkLog(path) as log:
        log.event(T0, "new")
    lines = path.read_text().splitlines()
    assert len(lines) == 3
    assert json.loads(lines[0])["type"] == "old"
    assert lines[1] == '{"time":"20'
    assert json.loads(lines[2])["type"] == "new"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_disk_full_is_logged_once_kept_in_memory_and_recovered(tmp_path: Path, caplog):
    caplog.set_level(logging.DEBUG, logger="p1lora.service.link_log")
    clock = FakeMonotonic()
    path = tmp_path / "link.jsonl"
    path.symlink_to("/dev/full")  # every write fails with ENOSPC
    log = LinkLog(path, retry_interval=30, max_pending=3, monotonic=clock)
    for i in range(5):
        log.event(T0 + i, "tick", seq=i)  # must not raise
        clock.now += 10
    stats = log.stats()
    assert (stats.written, stats.pending, stats.dropped, stats.failures) == (0, 3, 2, 1)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "cannot be written" in warnings[0].message
    assert "No space left on device" in warnings[0].message

    path.unlink()  # space again: a real file
    clock.now += 30
    log.event(T0 + 5, "tick", seq=5)
    log.close()
    assert [r["seq"] for r in read_records(path)] == [2, 3, 4, 5]
    stats = log.stats()
    assert (stats.written, stats.pending, stats.dropped) == (4, 0, 2)
    assert "writable again (2 lines lost" in caplog.text


def test_unwritable_location_never_raises_and_retries_only_after_the_interval(tmp_path: Path):
    clock = FakeMonotonic()
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    path = blocker / "link.jsonl"
    log = LinkLog(path, retry_interval=60, monotonic=clock)
    log.event(T0, "a")
    log.event(T0 + 1, "b")  # within the retry interval: kept, not tried
    assert log.stats().pending == 2
    blocker.unlink()
    log.event(T0 + 2, "c")  # still within the interval
    assert not path.exists()
    clock.now = 61
    log.event(T0 + 3, "d")
    assert [r["type"] for r in read_records(path)] == ["a", "b", "c", "d"]
    assert log.stats().failures == 1


def test_bad_arguments():
    with pytest.raises(ValueError):
        LinkLog("x", max_bytes=10)
    with pytest.raises(ValueError):
        LinkLog("x", backups=-1)
