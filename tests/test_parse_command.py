"""`p1-lora parse`: JSON lines out, diagnostics on stderr, exit codes 0/1/2."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from decimal import Decimal

import pytest

from p1lora.tools.cli import main

from .helpers_telegrams import build_telegram, fixture, telegram_part


@pytest.fixture
def cli(capsys, monkeypatch):
    """Run `p1-lora ARGS` in-process; returns (exit code, stdout, stderr)."""
    root = logging.getLogger()

    def run(*args: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        saved = (list(root.handlers), root.level)
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        try:
            code = main(list(args))
        finally:
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def json_lines(out: str) -> list[dict]:
    return [json.loads(line, parse_float=Decimal) for line in out.splitlines()]


def test_one_telegram(cli, tmp_path):
    path = tmp_path / "v4.txt"
    path.write_bytes(fixture("V4_2.txt"))
    code, out, err = cli("parse", str(path))
    assert code == 0
    assert err == ""
    (telegram,) = json_lines(out)
    assert telegram["header"] == "KFM5KAIFA-METER"
    assert telegram["crc"] == {"expected": "6796", "computed": "6796", "valid": True}
    first = telegram["objects"][0]
    assert set(first) == {"obis", "key", "value", "unit", "channel", "timestamp"}
    gas = next(o for o in telegram["objects"] if o["key"] == "gas_reading")
    assert gas["channel"] == 1
    assert gas["timestamp"] == "2016-11-29T20:00:00+01:00"
    assert gas["value"] == Decimal("981.443")
    assert telegram["derived"]["total_energy_import"]["value"] == Decimal("3016.829")
    # Numbers are JSON numbers with the meter's digits.
    assert '"value": 0.000,' in out
    assert '"value": 1581.123,' in out


def test_capture_with_junk_gives_one_line_per_telegram(cli, tmp_path):
    capture = (
        b"\x00\xffgarbage\r\n"
        + fixture("V5.txt")
        + b"(00.123*kW)\r\n"
        + fixture("FLUVIUS_V171.txt")
        + fixture("DSMR22_ISKRA_MT382_REAL.txt")
    )
    path = tmp_path / "capture.txt"
    path.write_bytes(capture)
    code, out, err = cli("parse", str(path))
    assert code == 0
    assert [t["header"] for t in json_lines(out)] == [
        "ISk5\\2MT382-1000",
        "FLU5\\253769484_A",
        "ISk5\\2MT382-1003",
    ]
    assert "CRC" not in err


def test_stdin(cli):
    code, out, _ = cli("parse", stdin=fixture("V5.txt"))
    assert code == 0
    assert len(json_lines(out)) == 1
    code, out, _ = cli("parse", "-", stdin=fixture("V5.txt") + fixture("V4_2.txt"))
    assert code == 0
    assert len(json_lines(out)) == 2


def test_crc_failure_is_reported_with_both_values_and_exits_1(cli, tmp_path):
    bad = fixture("V5.txt").replace(b"000004.426", b"000004.427")
    path = tmp_path / "bad.txt"
    path.write_bytes(bad + fixture("V4_2.txt"))
    code, out, err = cli("parse", str(path))
    assert code == 1
    assert [t["header"] for t in json_lines(out)] == ["KFM5KAIFA-METER"]
    assert "telegram 1" in err
    assert "6EEE" in err
    computed = json_lines(cli("parse", "--no-crc-check", str(path))[1])[0]["crc"]["computed"]
    assert computed in err


def test_no_crc_check_prints_it_anyway(cli, tmp_path):
    bad = fixture("V5.txt").replace(b"000004.426", b"000004.427")
    path = tmp_path / "bad.txt"
    path.write_bytes(bad)
    code, out, err = cli("parse", "--no-crc-check", str(path))
    assert code == 0
    (telegram,) = json_lines(out)
    assert telegram["crc"]["valid"] is False
    assert telegram["crc"]["expected"] == "6EEE"
    tariff = next(o for o in telegram["objects"] if o["key"] == "electricity_used_tariff_1")
    assert tariff["value"] == Decimal("4.427")
    assert "CRC mismatch" in err


def test_lf_only_file_is_accepted_after_restoring_crlf(cli, tmp_path):
    path = tmp_path / "from-a-web-page.txt"
    path.write_bytes(fixture("V5.txt").replace(b"\r\n", b"\n"))
    code, out, err = cli("parse", str(path))
    assert code == 0
    (telegram,) = json_lines(out)
    assert telegram["crc"] == {"expected": "6EEE", "computed": "6EEE", "valid": True}
    assert "LF only" in err
    assert "restored CRLF" in err


def test_lf_only_file_that_still_fails_its_crc(cli, tmp_path):
    path = tmp_path / "edited.txt"
    bad = fixture("V5.txt").replace(b"000004.426", b"000004.427").replace(b"\r\n", b"\n")
    path.write_bytes(bad)
    code, _, err = cli("parse", str(path))
    assert code == 1
    assert "CRC mismatch" in err


def test_lf_only_telegram_without_crc(cli, tmp_path):
    path = tmp_path / "dsmr22.txt"
    path.write_bytes(fixture("V2_2.txt").replace(b"\r\n", b"\n"))
    code, out, err = cli("parse", str(path))
    assert code == 0
    (telegram,) = json_lines(out)
    assert telegram["crc"]["valid"] is None
    assert "no CRC to confirm" in err


def test_raw_option(cli, tmp_path):
    path = tmp_path / "v5.txt"
    path.write_bytes(fixture("V5.txt"))
    _, out, _ = cli("parse", "--raw", str(path))
    (telegram,) = json_lines(out)
    assert telegram["objects"][0]["raw"] == "1-3:0.2.8(50)"


def test_cut_off_telegrams_are_noted(cli, tmp_path):
    path = tmp_path / "cut.txt"
    v4 = fixture("V4_2.txt")
    path.write_bytes(v4[: v4.index(b"1-0:99.97.0")] + fixture("V5.txt"))
    code, out, err = cli("parse", str(path))
    assert code == 0
    assert len(json_lines(out)) == 1
    assert "1 cut-off telegram" in err


def test_missing_file_exits_2(cli, tmp_path):
    code, out, err = cli("parse", str(tmp_path / "missing.txt"))
    assert code == 2
    assert out == ""
    assert "cannot read" in err
    assert "missing.txt" in err


def test_directory_exits_2(cli, tmp_path):
    code, _, err = cli("parse", str(tmp_path))
    assert code == 2
    assert "directory" in err


def test_no_telegram_in_input_exits_2(cli, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_bytes(b"just some text\nwithout a telegram\n")
    code, out, err = cli("parse", str(path))
    assert code == 2
    assert out == ""
    assert "no P1 telegram found" in err
    assert cli("parse", stdin=b"")[0] == 2


def test_bad_usage_exits_2(cli):
    with pytest.raises(SystemExit) as excinfo:
        cli("parse", "--no-such-option")
    assert excinfo.value.code == 2
    assert cli("parse", "--max-telegram-bytes", "3", stdin=b"")[0] == 2


def test_help_explains_exit_codes_crc_and_line_endings(cli, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli("parse", "--help")
    assert excinfo.value.code == 0
    text = capsys.readouterr().out
    for phrase in (
        "Exit status: 0",
        "1 a telegram failed its CRC",
        "2 bad usage",
        "LF line endings",
    ):
        assert phrase in text


def test_console_script_end_to_end(tmp_path):
    """The installed command, as a user runs it: help, a pipe, and stderr for diagnostics."""
    exe = [sys.executable, "-m", "p1lora.tools.cli"]
    helped = subprocess.run([*exe, "parse", "--help"], capture_output=True, text=True, check=False)
    assert helped.returncode == 0
    for phrase in ("--no-crc-check", "Exit status", "LF line endings", "JSON"):
        assert phrase in helped.stdout
    piped = subprocess.run(
        [*exe, "parse"],
        input=telegram_part("ESY5Q3DA1004_V304.txt") + fixture("V5_TWO_MBUS.txt"),
        capture_output=True,
        check=False,
    )
    assert piped.returncode == 0, piped.stderr
    lines = piped.stdout.decode().splitlines()
    assert len(lines) == 2
    assert json.loads(lines[0])["objects"][1]["obis"] == "1-0:1.8.0*255"
    assert piped.stderr == b""


# -- `p1-lora bench parse` (a command that prints a table; run small, never timed) ------------

BENCH_QUICK = ("--seconds", "0.01", "--rounds", "1", "--parses", "100", "--traced-parses", "100")


def test_bench_parse_prints_its_table(cli):
    code, out, _ = cli("bench", "parse", *BENCH_QUICK)
    assert code == 0
    for label in ("DSMR 5.0", "e-MUCS", "DSMR 4.2", "DSMR 2.2", "geometric mean speed-up"):
        assert label in out
    memory = out.split("Memory growth", 1)[1]
    per_parse = {
        name: float(value)
        for name, value in re.findall(r"(p1-lora|dsmr_parser) .*\(([\d.]+) B per parse\)", memory)
    }
    # Our parser keeps nothing between parses; dsmr_parser's power-failure log parser keeps
    # two references per log entry (3 entries: 48 bytes) on every parse.
    assert per_parse["p1-lora"] < 1.0
    assert per_parse["dsmr_parser"] >= 40.0


def test_bench_parse_on_a_capture_file(cli, tmp_path):
    path = tmp_path / "capture.txt"
    path.write_bytes(b"junk\r\n" + fixture("FLUVIUS_V171.txt"))
    code, out, _ = cli(
        "bench",
        "parse",
        *BENCH_QUICK[:4],
        "--parses",
        "0",
        "--traced-parses",
        "0",
        "--file",
        str(path),
        "--spec",
        "BELGIUM_FLUVIUS",
    )
    assert code == 0
    assert "capture.txt" in out
    assert "Memory growth" not in out


def test_bench_parse_input_errors(cli, tmp_path):
    path = tmp_path / "empty.txt"
    path.write_bytes(b"nothing here")
    assert cli("bench", "parse", "--file", str(path))[0] == 2
    assert cli("bench", "parse", "--file", str(tmp_path / "missing"))[0] == 2
    path.write_bytes(fixture("V5.txt"))
    code, _, err = cli("bench", "parse", *BENCH_QUICK, "--file", str(path), "--spec", "NOPE")
    assert code == 2
    assert "NOPE" in err
    assert cli("bench", "parse", "--rounds", "0")[0] == 2


def test_error_lines_quote_noise_escaped_and_short(cli, tmp_path):
    noise = bytes(range(1, 10)) + bytes(range(0x80, 0x100)) * 20
    path = tmp_path / "noise.bin"
    path.write_bytes(b"\r\n/" + noise + b"\r\n!\r\n")
    code, out, err = cli("parse", str(path))
    assert code == 1 and out == ""
    (line,) = [line for line in err.splitlines() if "telegram 1" in line]
    assert "\\x01\\x02" in line and "\x01" not in line and "\x80" not in line
    assert len(line) < 300 and "(2570 characters)" in line


def test_unreadable_known_line_keeps_its_raw_text_in_the_output(cli, tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(build_telegram("ISK5\\2M550T-1012", ["1-0:1.8.2(abc*kWh)"], crc=True))
    code, out, _ = cli("parse", str(path))
    assert code == 0
    (obj,) = json_lines(out)[0]["objects"]
    assert obj["value"] is None and obj["raw"] == "1-0:1.8.2(abc*kWh)"
