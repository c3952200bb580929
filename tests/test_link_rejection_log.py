"""The log after a receiver restart: the transmitter's frames in its old session are expected
(`no_session` at INFO, issue 13), while the same rejection once a session ran is a warning."""

from __future__ import annotations

import logging

import pytest

from p1lora.common.link.diagnostics import RejectionLog
from tests.helpers_link import Channel, Harness

LOGGER = "p1lora.common.link"


def _no_session_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if "rejected a frame (no_session)" in r.getMessage()]


def test_a_receiver_restart_logs_the_old_sessions_frames_as_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(channel=Channel(path_loss_db=108.0))
    h.run_until(60.0)
    assert h.rx_link.state == "running"
    with caplog.at_level(logging.INFO, LOGGER):
        h.restart_rx(keep_state=True)  # its session is gone; the transmitter does not know
        h.run_for(120.0)
    assert h.rx_link.rejected.get("no_session", 0) >= 1
    records = _no_session_records(caplog)
    assert [r.levelno for r in records] == [logging.INFO]
    assert "expected right after a start" in records[0].getMessage()
    assert h.rx_link.state == "running" and h.rx.delivered[-1][0] > 150.0  # and it recovered
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_no_session_once_a_session_ran_is_still_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = RejectionLog(logging.getLogger(LOGGER), "rx")
    log.expected["no_session"] = "expected right after a start"
    log.expected.clear()  # what the receiver does when its first session is established
    with caplog.at_level(logging.INFO, LOGGER):
        log.record(10.0, "no_session", "DATA while no session exists")
    assert [r.levelno for r in _no_session_records(caplog)] == [logging.WARNING]


def test_only_the_expected_reason_is_downgraded(caplog: pytest.LogCaptureFixture) -> None:
    log = RejectionLog(logging.getLogger(LOGGER), "rx")
    log.expected["no_session"] = "expected right after a start"
    with caplog.at_level(logging.INFO, LOGGER):
        log.record(1.0, "no_session", "DATA while no session exists")
        log.record(2.0, "wrong_network", "frame of another network")
    levels = {r.getMessage().split("(")[1].split(")")[0]: r.levelno for r in caplog.records}
    assert levels == {"no_session": logging.INFO, "wrong_network": logging.WARNING}
