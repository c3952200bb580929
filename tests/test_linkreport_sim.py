"""`p1-lora linkreport` on link logs written by the real observer in a simulated link.

The logs come from `LinkLogObserver` hung off the real `TxRuntime`/`RxRuntime` on a simulated
channel (`tests.helpers_linklog.LoggedSimulation`), not from hand-built records: what the
report says about loss, acks and the sender's power is what a user would read.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from p1lora.common.frames import VERSION, FrameType
from p1lora.common.link import LinkEventAction, Transmit
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.receiver.linkreport import DEFAULT_MAX_GAP, analyse, parse_lines
from p1lora.service.link_log import LinkLog
from p1lora.service.observers import LinkLogObserver
from p1lora.tools.sim import SimOptions
from tests.helpers_linklog import LoggedSimulation, report_of

SETTINGS = RadioSettings(869_525_000, sf=7, bw_hz=250_000, tx_power_dbm=14)
UPLINK_SESSION = {"telegram", "fragment", "probe", "switch", "status", "reply"}


def rows(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle]


def heard(path: Path) -> Iterator[dict[str, Any]]:
    return (r for r in rows(path) if r.get("direction") == "rx" and r["ok"])


@pytest.fixture(scope="module")
def restarted(tmp_path_factory: pytest.TempPathFactory) -> LoggedSimulation:
    """20 minutes of a clean link; the transmitter restarts (a new process) after 10."""
    sim = LoggedSimulation(SimOptions(duration_s=1200, seed=3), tmp_path_factory.mktemp("restart"))
    sim.at(600, lambda: sim.restart_tx(down_s=5))
    sim.run_until(1200)
    sim.close_logs()
    return sim


@pytest.fixture(scope="module")
def lossy(tmp_path_factory: pytest.TempPathFactory) -> LoggedSimulation:
    """20 minutes with 10 % of the frames lost in each direction."""
    sim = LoggedSimulation(
        SimOptions(duration_s=1200, seed=5, frame_loss=0.1), tmp_path_factory.mktemp("lossy")
    )
    sim.run_until(1200)
    sim.close_logs()
    return sim


def test_a_transmitter_restart_is_not_counted_as_uplink_loss(restarted: LoggedSimulation):
    # The scenario must be the one users hit: a counter jump smaller than max_gap.
    counters = [r["counter"] for r in heard(restarted.rx_log_path) if r["counter"] is not None]
    jumps = [b - a for a, b in itertools.pairwise(counters)]
    restart_jump = max(jumps)
    assert 1 < restart_jump < DEFAULT_MAX_GAP
    sessions = {r["session"] for r in heard(restarted.rx_log_path)}
    assert len(sessions) == 2  # one per transmitter run, named by its DISCOVER's random

    report = report_of(restarted.rx_log_path)
    assert sum(s.uplink_received for s in report.settings) > 1000
    assert [s.uplink_lost for s in report.settings] == [0] * len(report.settings)
    # ... and it agrees with the receiver's own loss figure (Home Assistant's packet loss).
    assert restarted.rx.diagnostics(restarted.now).link.loss_rate == 0.0


def test_ack_loss_is_reported_from_the_transmitters_real_log(restarted: LoggedSimulation):
    report = report_of(restarted.tx_log_path)
    expected = sum(s.acks_expected for s in report.settings)
    assert expected > 1000
    assert sum(s.acks_received for s in report.settings) == expected - sum(
        s.acks_pending for s in report.settings
    )
    main = max(report.settings, key=lambda s: s.acks_expected)
    assert main.ack_loss == 0.0


def test_loss_on_a_lossy_link_matches_the_frames_that_never_arrived(lossy: LoggedSimulation):
    tx_rows = rows(lossy.tx_log_path)
    sent = [r for r in tx_rows if r.get("direction") == "tx" and r["type"] in UPLINK_SESSION]
    received = {r["counter"] for r in heard(lossy.rx_log_path)}
    first, last = min(received), max(received)
    # Independently of linkreport's gap rule: counters sent within the heard range that the
    # receiver never heard, however often they were repeated.
    never_heard = {r["counter"] for r in sent if first <= r["counter"] <= last} - received
    report = report_of(lossy.rx_log_path)
    assert sum(s.uplink_lost for s in report.settings) == len(never_heard)
    # A resend carries a fresh counter (docs/protocol.md, 1.6): no counter is sent twice.
    assert len(sent) == len({r["counter"] for r in sent})
    assert len(never_heard) > 100  # 10 % loss each way: many frames never arrived

    tx_report = report_of(lossy.tx_log_path)
    decided = sum(s.acks_expected - s.acks_pending for s in tx_report.settings)
    acked = sum(s.acks_received for s in tx_report.settings)
    assert decided > 1000
    # Per transmission, an ack needs the frame up and the ACK down: about 1 - 0.9 * 0.9.
    assert 0.12 < (decided - acked) / decided < 0.26
    # Every ack is attributed to a frame the receiver really heard, and to one transmission.
    acked_counters = [r["acked"] for r in heard(lossy.tx_log_path) if "acked" in r]
    assert len(acked_counters) == acked
    assert set(acked_counters) <= received


def test_received_rows_carry_the_transmitters_reported_power(restarted: LoggedSimulation):
    known: int | None = None
    filled = 0
    for record in rows(restarted.rx_log_path):
        if record["kind"] == "event" and record["type"] == "status":
            known = record["tx_power_dbm"]
        elif record.get("direction") == "rx" and record["ok"]:
            if record["type"] == "discovery":
                known = None  # a new transmitter run: its power is not known yet
            assert record["tx_power"] == known
            filled += record["tx_power"] is not None
    assert filled > 1000


# ---------------------------------------------------------------------------- the observer


def frame(frame_type: FrameType, counter: int, body: bytes = b"\x00" * 12) -> bytes:
    return bytes([VERSION << 5 | frame_type]) + b"\x12\x34" + counter.to_bytes(2, "big") + body


def received(payload: bytes) -> ReceivedFrame:
    return ReceivedFrame(payload, -90.0, 5.0, SETTINGS, 0.0)


def sent(observer: LinkLogObserver, counter: int) -> None:
    payload = frame(FrameType.DATA, counter)
    observer.frame_sent(0.0, Transmit(payload, SETTINGS, "DATA", 0.05), 0.05)


def observed(tmp_path: Path) -> tuple[LinkLog, LinkLogObserver]:
    log = LinkLog(tmp_path / "link.jsonl")
    return log, LinkLogObserver(log, wall_clock=lambda: 1_700_000_000.0)


def test_an_ack_names_the_frame_it_answers_unless_the_link_calls_it_late(tmp_path: Path):
    log, observer = observed(tmp_path)
    sent(observer, 10)
    ack_10 = frame(FrameType.ACK, 500)
    observer.frame_received(received(ack_10), None)
    observer.frame_received(received(ack_10), None)  # heard twice: answers nothing new
    sent(observer, 11)
    observer.frame_received(received(frame(FrameType.ACK, 501)), None)
    observer.link_event(0.0, LinkEventAction("late_ack", {"ack_kind": "DATA"}))
    observer.frame_received(received(frame(FrameType.ACK, 502)), None)  # the real answer to 11
    log.close()  # writes the ACK row still held
    records = rows(tmp_path / "link.jsonl")
    data = [r for r in records if r["kind"] == "frame" and r["direction"] == "tx"]
    assert [(r["counter"], r["ack_expected"]) for r in data] == [(10, True), (11, True)]
    acks = [r for r in records if r.get("type") == "ack"]
    assert [r.get("acked") for r in acks] == [10, None, None, 11]
    assert [r["counter"] for r in acks] == [500, 500, 501, 502]
    # The held row keeps its place: the late ACK's row comes before the event about it.
    assert [r["type"] for r in records] == [
        "telegram",
        "ack",
        "ack",
        "telegram",
        "ack",
        "late_ack",
        "ack",
    ]


def test_a_peer_handshake_starts_a_new_session(tmp_path: Path):
    log, observer = observed(tmp_path)
    observer.frame_received(received(frame(FrameType.DATA, 7)), None)
    discover = frame(FrameType.DISCOVER, 2000, b"\x00\x00" + bytes(range(1, 9)) + b"\x00" * 10)
    observer.frame_received(received(discover), None)
    observer.frame_received(received(frame(FrameType.DATA, 2001)), None)
    forged = frame(FrameType.DISCOVER, 9, b"\x00\x00" + b"\xff" * 8 + b"\x00" * 10)
    observer.frame_received(received(forged), "auth_failed")  # says nothing about the peer
    observer.frame_received(received(frame(FrameType.DATA, 2002)), None)
    log.close()
    heard_rows = [r for r in rows(tmp_path / "link.jsonl") if r["ok"]]
    assert heard_rows[0]["session"].startswith("peer@")
    assert [r["session"] for r in heard_rows[1:]] == ["0102030405060708"] * 3
    assert [r["counter"] for r in heard_rows] == [7, 2000, 2001, 2002]


# ---------------------------------------------------------------------------- linkreport


def test_a_handshake_starts_a_new_sequence_in_logs_without_peer_sessions():
    """Older logs name every peer session "peer": the handshake frame still marks the restart
    (a jump of 300, well below max_gap)."""

    def line(t: int, kind: str, counter: int) -> str:
        return json.dumps(
            {
                "time": f"2024-05-01T12:{t // 60:02d}:{t % 60:02d}Z",
                "kind": "frame",
                "direction": "rx",
                "type": kind,
                "sf": 7,
                "bw": 250000,
                "ok": True,
                "counter": counter,
                "session": "peer",
            }
        )

    lines = [line(0, "discovery", 100)]
    lines += [line(t, "telegram", 100 + t) for t in range(1, 11)]
    lines += [line(20, "discovery", 410), line(21, "telegram", 411), line(23, "telegram", 413)]
    report = analyse(parse_lines(("log", i, text) for i, text in enumerate(lines, 1)))
    (setting,) = report.settings
    assert setting.uplink_lost == 1  # 412 only; the jump 110 -> 410 is the restart
    assert setting.uplink_received == 14


def test_ack_loss_counts_transmissions_and_an_ack_answers_the_latest_one():
    """Frame 5 is sent, its ack is lost, it is sent again (same counter) and acked: one of two
    transmissions lost. Frame 6 is acked at once. Frame 7 is sent twice and never acked."""

    def line(t: float, direction: str, kind: str, **fields: object) -> str:
        seconds = f"{t:06.3f}"
        record = {"time": f"2024-05-01T12:00:{seconds}Z", "kind": "frame", "sf": 7, "bw": 250000}
        return json.dumps({**record, "direction": direction, "type": kind, "ok": True, **fields})

    lines = [
        line(1, "tx", "telegram", counter=5, ack_expected=True),
        line(3, "tx", "telegram", counter=5, ack_expected=True),
        line(3.2, "rx", "ack", counter=900, acked=5),
        line(4, "tx", "telegram", counter=6, ack_expected=True),
        line(4.2, "rx", "ack", counter=901, acked=6),
        line(5, "tx", "telegram", counter=7, ack_expected=True),
        line(7, "tx", "telegram", counter=7, ack_expected=True),
        line(50, "tx", "status", counter=8),  # the end of the log, well after the grace
    ]
    report = analyse(parse_lines(("log", i, text) for i, text in enumerate(lines, 1)))
    (setting,) = report.settings
    assert (setting.acks_expected, setting.acks_received, setting.acks_pending) == (5, 2, 0)
    assert setting.ack_loss == pytest.approx(3 / 5)


def test_a_failing_close_hook_does_not_stop_the_log_closing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    log = LinkLog(tmp_path / "link.jsonl")
    calls: list[str] = []

    def broken() -> None:
        calls.append("broken")
        raise RuntimeError("a writer's bug")

    log.add_close_hook(broken)
    log.add_close_hook(lambda: calls.append("second"))
    log.event(1_700_000_000.0, "state", state="running")
    log.close()
    assert calls == ["broken", "second"]
    assert "failed to flush before closing" in caplog.text
    assert rows(tmp_path / "link.jsonl")[0]["type"] == "state"
