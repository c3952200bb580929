"""`p1-lora linkreport` on recorded logs: the numbers, the outputs, the command contract."""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
from pathlib import Path

import pytest

from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.receiver import linkreport_command
from p1lora.receiver.linkreport import (
    BadRecordError,
    analyse,
    format_report,
    parse_lines,
    parse_record,
    percentile,
    report_to_dict,
)
from p1lora.service.link_log import LinkLog
from p1lora.tools import cli

T0 = 1_714_564_800.0  # 2024-05-01T12:00:00Z
RENDEZVOUS = RadioSettings(frequency_hz=869_525_000, sf=12, bw_hz=125_000, tx_power_dbm=14)
FAST = RENDEZVOUS.replace(sf=7)
FASTER = RENDEZVOUS.replace(sf=8, bw_hz=250_000)


def rssi_of(i: int) -> float:
    return -120.0 + (i * 37 % 50)  # deterministic spread over -120..-71


def snr_of(i: int) -> float:
    return -2.0 + (i * 11 % 16) / 2


def heard(log: LinkLog, t: float, settings: RadioSettings, i: int, **fields) -> None:
    frame = ReceivedFrame(
        payload=bytes(40),
        rssi_dbm=rssi_of(i),
        snr_db=snr_of(i),
        settings=settings,
        received_at=t,
    )
    log.received(t, frame, frame_type=fields.pop("frame_type", "telegram"), airtime=0.1, **fields)


def write_receiver_log(path: Path, *, max_bytes: int = 5_000_000, backups: int = 5) -> dict:
    """A receiver's view of 2 hours: rendezvous, SF7 for an hour with losses, then SF8/BW250.

    Returns what the report must find.
    """
    log = LinkLog(path, max_bytes=max_bytes, backups=backups)
    t = T0
    log.settings_changed(t, RENDEZVOUS, reason="rendezvous")
    for counter in (1, 2, 3):  # discovery and probes, all heard
        heard(
            log,
            t + counter,
            RENDEZVOUS,
            counter,
            frame_type="discovery",
            counter=counter,
            session="s1",
        )
        log.sent(t + counter + 0.5, RENDEZVOUS, frame_type="ack", nbytes=13, airtime=1.0)
    t += 60
    log.settings_changed(t, FAST, reason="auto-tune")
    missing = {100, 101, 500}
    fast_rx = []
    for counter in range(4, 3604):  # one telegram a second for an hour
        if counter in missing:
            continue
        heard(log, t + counter, FAST, counter, counter=counter, session="s1")
        fast_rx.append(counter)
        log.sent(t + counter + 0.2, FAST, frame_type="ack", nbytes=13, airtime=0.05)
    heard(log, t + 1000.5, FAST, 7, ok=False, reason="auth", counter=999_999)
    heard(log, t + 1000.6, FAST, 8, ok=False, reason="replay", counter=3)
    heard(log, t + 1000.7, FAST, 9, counter=1000, session="s1")  # an exact duplicate, re-acked
    log.event(t + 3605, "handshake", step="probe", good=3)
    t += 3700
    log.settings_changed(t, FASTER, reason="auto-tune")
    # The transmitter restarted: new session, counter skipped ahead to its next block.
    for k in range(600):
        heard(log, t + k, FASTER, k, counter=5000 + k, session="s2")
    log.close()
    return {
        "fast_rx": fast_rx,
        "fast_lost": len(missing),
        "end": t + 599,
    }


def read_report(*paths: Path, **kwargs):
    lines = []
    for path in paths:
        lines += [(str(path), n, text) for n, text in enumerate(path.read_text().splitlines(), 1)]
    parsed = parse_lines(lines)
    return parsed, analyse(parsed, **kwargs)


def test_percentile_matches_the_linear_interpolation_definition():
    values = [float(v) for v in (9, 1, 7, 3, 5, 11, 2)]
    cuts = statistics.quantiles(values, n=20, method="inclusive")
    assert percentile(values, 5) == pytest.approx(cuts[0])
    assert percentile(values, 50) == pytest.approx(cuts[9])
    assert percentile(values, 95) == pytest.approx(cuts[18])
    assert percentile([4.0], 95) == 4.0
    assert percentile([], 50) is None


def test_report_on_a_recorded_receiver_log(tmp_path: Path):
    path = tmp_path / "rx-link.jsonl"
    expected = write_receiver_log(path)
    parsed, report = read_report(path)
    assert parsed.bad_lines == 0
    by_label = {s.label: s for s in report.settings}
    assert list(by_label) == ["SF7/BW125", "SF8/BW250", "SF12/BW125"]

    fast = by_label["SF7/BW125"]
    assert fast.frames_rx == len(expected["fast_rx"]) + 3
    assert fast.frames_tx == len(expected["fast_rx"])
    assert fast.rejected == 2
    assert dict(fast.rejected_by_reason) == {"auth": 1, "replay": 1}
    assert fast.uplink_lost == expected["fast_lost"]
    assert fast.uplink_received == len(expected["fast_rx"])
    assert fast.duplicates == 1
    assert fast.uplink_loss == pytest.approx(3 / 3600)
    # Percentiles of every heard frame on the setting, rejected ones included.
    rssi = [rssi_of(i) for i in expected["fast_rx"]] + [rssi_of(7), rssi_of(8), rssi_of(9)]
    cuts = statistics.quantiles(rssi, n=20, method="inclusive")
    assert percentile(fast.rssi, 5) == pytest.approx(cuts[0])
    assert percentile(fast.rssi, 95) == pytest.approx(cuts[18])
    assert fast.airtime_tx == pytest.approx(0.05 * len(expected["fast_rx"]))
    assert fast.time_on_setting == pytest.approx(3700)
    assert fast.tx_airtime_per_hour == pytest.approx(fast.airtime_tx * 3600 / 3700)

    rendezvous = by_label["SF12/BW125"]
    assert (rendezvous.frames_rx, rendezvous.frames_tx, rendezvous.uplink_lost) == (3, 3, 0)

    faster = by_label["SF8/BW250"]
    # A new session starts a new counter sequence: the jump from 3603 to 5000 is not loss.
    assert (faster.uplink_received, faster.uplink_lost) == (600, 0)

    assert [(c.sf, c.bw, c.reason) for c in report.timeline] == [
        (12, 125_000, "rendezvous"),
        (7, 125_000, "auto-tune"),
        (8, 250_000, "auto-tune"),
    ]
    assert report.timeline[0].freq == 869_525_000
    assert dict(report.rejected_by_reason) == {"auth": 1, "replay": 1}
    assert report.events == 4  # three settings changes and one handshake event
    assert report.first == T0 and report.last == expected["end"]
    # Airtime per clock hour adds up to the total.
    total_tx = sum(s.airtime_tx for s in report.settings)
    assert sum(h.tx for h in report.hours) == pytest.approx(total_tx)
    assert [h.hour for h in report.hours] == [T0, T0 + 3600]


def test_ack_loss_from_the_transmitter_side(tmp_path: Path):
    path = tmp_path / "tx-link.jsonl"
    log = LinkLog(path)
    for counter in range(1, 101):
        t = T0 + counter * 10
        log.sent(
            t,
            FAST,
            frame_type="telegram",
            nbytes=60,
            airtime=0.1,
            counter=counter,
            ack_expected=True,
        )
        if counter % 10 != 0 and counter != 99:  # acks 10, 20, ... 100 and 99 never came
            heard(log, t + 0.3, FAST, counter, frame_type="ack", acked=counter, counter=counter)
    log.close()
    _, report = analyse_path(path, ack_grace=5)
    (fast,) = report.settings
    assert fast.acks_expected == 100
    assert fast.acks_received == 89
    assert fast.acks_pending == 1  # 100 was sent 0 s before the end: may still come
    assert fast.ack_loss == pytest.approx(10 / 99)


def analyse_path(path: Path, **kwargs):
    return read_report(path, **kwargs)


def test_bad_lines_are_counted_and_skipped(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path)
    good_lines = path.read_text().splitlines()
    garbage = [
        "not json at all",
        "[1, 2, 3]",
        '{"kind": "event", "type": "no time"}',
        '{"time": "yesterday", "kind": "event"}',
        '{"time": "2024-05-01T12:00:00Z", "kind": "frame", "direction": "rx", "rssi": "loud"}',
        '{"time": "2024-05-01T12:00:00Z", "kind": "frame", "direction": "up"}',
        '{"time": "2024-05-01T12:00:00Z", "kind": "frame", "direction": "rx", "sf": 99}',
        '{"time": "2024-05-01T12:00:00Z", "kind": "frame", "direction": "rx", "ok": "yes"}',
        '{"time": "2024-05-01T12:00:00Z", "kind": "what"}',
        '{"time": "2024-05-01T1',  # a line cut by a crash
    ]
    path.write_text("\n".join(good_lines[:5] + garbage + [""] + good_lines[5:]) + "\n")
    parsed, report = read_report(path)
    assert parsed.bad_lines == len(garbage)
    assert len(parsed.bad_examples) == 5
    assert parsed.bad_examples[0] == f"{path}:6: not JSON"
    assert report.records == len(good_lines)
    _, clean = read_report_from_lines(good_lines)
    assert report_to_dict(report)["settings"] == report_to_dict(clean)["settings"]


def read_report_from_lines(lines: list[str]):
    parsed = parse_lines(("mem", n, text) for n, text in enumerate(lines, 1))
    return parsed, analyse(parsed)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{}", "time"),
        ('{"time": 5}', "time"),
        ('{"time": "2024-05-01T12:00:00Z", "kind": "frame", "direction": "rx", "bw": -1}', "bw"),
        ('{"time": "2024-05-01T12:00:00Z", "direction": "rx", "counter": 1.5}', "counter"),
        ('{"time": "2024-05-01T12:00:00Z", "direction": "tx", "snr": true}', "snr"),
    ],
)
def test_parse_record_explains_what_is_wrong(line: str, message: str):
    with pytest.raises(BadRecordError, match=message):
        parse_record(line)


def test_rotated_files_give_the_same_report_as_one_file(tmp_path: Path):
    one = tmp_path / "one" / "link.jsonl"
    one.parent.mkdir()
    write_receiver_log(one)
    rotated = tmp_path / "rotated" / "link.jsonl"
    rotated.parent.mkdir()
    write_receiver_log(rotated, max_bytes=100_000, backups=50)
    siblings = linkreport_command.rotated_siblings(rotated)
    assert len(siblings) >= 5
    assert siblings[0].name.endswith(f".{len(siblings)}")  # oldest first
    _, single = read_report(one)
    _, split = read_report(*siblings, rotated)
    assert report_to_dict(split) == report_to_dict(single)


def test_text_report_lists_settings_timeline_reasons_and_hours(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path)
    _, report = read_report(path)
    text = format_report(report)
    assert "Link log 2024-05-01T12:00:00Z .. 2024-05-01T13:12:39Z (1.21 h)" in text
    fast_row = next(line for line in text.splitlines() if line.startswith("SF7/BW125"))
    assert "0.1% (3/3600)" in fast_row
    assert "2024-05-01T12:01:00Z  SF7/BW125 869.525 MHz 14 dBm  (auto-tune)" in text
    assert "auth: 1" in text and "replay: 1" in text
    assert "Airtime per hour" in text
    assert format_report(analyse(parse_lines([]))).startswith("No records")


# ---------------------------------------------------------------------- the command


@pytest.fixture
def restore_logging():
    """cli.main() configures the root logger; put the test runner's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def run_command(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="p1-lora linkreport")
    linkreport_command.configure(parser)
    return linkreport_command.run(parser.parse_args(argv))


def test_command_prints_json(tmp_path: Path, capsys):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path, max_bytes=100_000, backups=50)
    assert run_command([str(path), "--rotated", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["frames"]["rx"] > 4000
    assert data["bad_lines"] == 0
    fast = next(s for s in data["settings"] if s["setting"] == "SF7/BW125")
    assert fast["uplink"] == {"received": 3597, "lost": 3, "duplicates": 1, "loss": 0.000833}
    assert set(fast["rssi"]) == {"p5", "p50", "p95"}
    assert [c["setting"] for c in data["timeline"]] == ["SF12/BW125", "SF7/BW125", "SF8/BW250"]
    assert data["period"]["first"] == "2024-05-01T12:00:00Z"


def test_command_without_rotated_reads_only_the_named_file(tmp_path: Path, capsys):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path, max_bytes=100_000, backups=50)
    assert run_command([str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 0 < data["records"] < 1000  # only the newest piece


def test_command_missing_file_is_a_usage_error(tmp_path: Path, caplog):
    assert run_command([str(tmp_path / "nope.jsonl")]) == 2
    assert "does not exist" in caplog.text


def test_command_plot_without_matplotlib_says_how_to_get_it(tmp_path: Path, caplog, monkeypatch):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails as if not installed
    assert run_command([str(path), "--plot", str(tmp_path / "out.png")]) == 2
    assert "p1-lora[plot]" in caplog.text
    assert not (tmp_path / "out.png").exists()


def test_command_plot_draws_a_png(tmp_path: Path, capsys):
    pytest.importorskip("matplotlib", reason="the 'plot' extra is not installed")
    path = tmp_path / "link.jsonl"
    write_receiver_log(path)
    out = tmp_path / "quality.png"
    assert run_command([str(path), "--plot", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    assert "Per setting" in capsys.readouterr().out


def test_command_rejects_bad_options(tmp_path: Path):
    path = tmp_path / "link.jsonl"
    path.write_text("")
    assert run_command([str(path), "--max-gap", "0"]) == 2
    assert run_command([str(path), "--ack-grace", "-1"]) == 2
    assert run_command([str(path)]) == 0  # empty log: a report saying so


def test_registered_in_the_tool_command(tmp_path: Path, capsys, restore_logging):
    path = tmp_path / "link.jsonl"
    write_receiver_log(path)
    assert cli.main(["linkreport", str(path)]) == 0
    assert "SF7/BW125" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["linkreport", "--help"])
    assert exit_info.value.code == 0
    assert "--plot" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["linkreport"])
    assert exit_info.value.code == 2
