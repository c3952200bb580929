"""`p1-lora airtime`: the airtime table and the legal send intervals per sub-band."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from p1lora.tools.cli import main


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["airtime", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys, *argv: str) -> dict:
    code, out, _ = run(capsys, *argv, "--json")
    assert code == 0
    return json.loads(out)


def test_reference_value_13_bytes_sf7_bw125(capsys):
    code, out, _ = run(capsys, "--payload", "13", "--sf", "7", "--bw", "125")
    assert code == 0
    assert out.splitlines()[0] == "13 bytes at SF7/BW125: 46.3 ms on air"
    assert "46.3 ms" in out.splitlines()[6]  # the table row too


def test_default_table_covers_sf7_to_12_at_three_bandwidths(capsys):
    data = run_json(capsys, "--payload", "40")
    rows = {(row["sf"], row["bw_hz"]): row for row in data["rows"]}
    assert set(rows) == {(sf, bw) for sf in range(7, 13) for bw in (125_000, 250_000, 500_000)}
    # design.md: 41 ms at SF7/250, 288 ms at SF9/125, 1974 ms at SF12/125.
    assert rows[(7, 250_000)]["airtime_s"] == pytest.approx(0.041088)
    assert rows[(9, 125_000)]["airtime_s"] == pytest.approx(0.287744)
    assert rows[(12, 125_000)]["airtime_s"] == pytest.approx(1.974272)
    assert rows[(12, 125_000)]["ldro"] and not rows[(12, 500_000)]["ldro"]
    labels = [column["duty_cycle"] for column in data["columns"]]
    assert labels == [0.001, 0.01, 0.1]  # EU868's three rule sets
    one_percent, ten_percent = 1, 2
    assert rows[(12, 125_000)]["min_interval_s"][one_percent] == pytest.approx(197.4272)
    assert rows[(12, 125_000)]["min_interval_s"][ten_percent] == pytest.approx(19.74272)
    # 869.4-869.65 MHz is only 250 kHz wide: BW500 does not fit.
    assert rows[(7, 500_000)]["min_interval_s"][ten_percent] is None
    assert rows[(7, 500_000)]["notes"][ten_percent] == "BW too wide"


def test_text_table_layout(capsys):
    code, out, _ = run(capsys, "--payload", "40")
    assert code == 0
    lines = out.splitlines()
    header = next(line for line in lines if line.lstrip().startswith("SF"))
    assert "0.1 %" in header and "1 %" in header and "10 %" in header
    sf12 = next(line for line in lines if line.split()[:2] == ["12", "125"])
    assert "1974.3 ms" in sf12 and "19.7 s" in sf12 and "197 s (3.3 min)" in sf12
    assert "h1.6 869.4-869.65" in out  # the legend lists every sub-band


def test_frequency_selects_one_sub_band(capsys):
    data = run_json(capsys, "--payload", "40", "--frequency", "868.1")
    assert [c["sub_bands"] for c in data["columns"]] == [["h1.4 868.0-868.6"]]
    data = run_json(capsys, "--payload", "40", "--frequency", "869.525", "--bw", "125", "500")
    (sf7_125, sf7_500) = data["rows"][:2]
    assert sf7_125["min_interval_s"] == [pytest.approx(0.82176)]
    assert sf7_500["notes"] == ["BW too wide"]


def test_other_regions(capsys):
    data = run_json(capsys, "--payload", "40", "--region", "us915", "--sf", "7", "10")
    rows = {row["sf"]: row for row in data["rows"] if row["bw_hz"] == 125_000}
    assert rows[10]["min_interval_s"] == [None]  # 534 ms: longer than the 400 ms dwell
    assert rows[10]["notes"] == ["never (dwell 0.4 s)"]
    assert rows[7]["min_interval_s"][0] == pytest.approx(0.082176 / 0.02)
    data = run_json(capsys, "--payload", "40", "--region", "IN865", "--sf", "12", "--bw", "125")
    assert data["rows"][0]["notes"] == ["no limit"]


def test_a_frame_no_budget_can_carry_is_never_given_an_interval(capsys):
    # 9.02 s on air: more than the 3.6 s per hour of a 0.1 % band, so no interval fits it
    # (the budget's wait_time is inf); 1 % (36 s/h) and 10 % still carry it.
    data = run_json(capsys, "--payload", "255", "--sf", "12", "--bw", "125")
    (row,) = data["rows"]
    assert row["airtime_s"] == pytest.approx(9.019392)
    assert row["min_interval_s"][0] is None
    assert row["notes"][0] == "never (> 3.6 s/h)"
    assert row["min_interval_s"][1] == pytest.approx(901.9392)
    assert row["min_interval_s"][2] == pytest.approx(90.19392)
    code, out, _ = run(capsys, "--payload", "255", "--sf", "12", "--bw", "125")
    assert code == 0
    assert "never (> 3.6 s/h)" in out and "9019 s" not in out


@pytest.mark.parametrize("region", ["US915", "AU915", "AS923"])
def test_dwell_limits_forbid_long_frames_outright(capsys, region):
    data = run_json(capsys, "--payload", "60", "--region", region, "--sf", "7", "12")
    rows = {row["sf"]: row for row in data["rows"] if row["bw_hz"] == 125_000}
    assert rows[12]["min_interval_s"] == [None]
    assert rows[12]["notes"] == ["never (dwell 0.4 s)"]
    assert rows[7]["min_interval_s"][0] is not None  # 118 ms fits all three


def test_interval_is_the_budgets_answer_and_a_true_lower_bound():
    """The table asks the link's `AirtimeBudget`; no sender obeying it ever beats the interval."""
    from p1lora.common.budget import AirtimeBudget
    from p1lora.common.regions import REGIONS
    from p1lora.tools.airtime_command import build_table

    for region in REGIONS.values():
        columns, rows = build_table(255, (7, 9, 12), (125_000, 250_000, 500_000), region=region)
        for row in rows:
            for column, cell in zip(columns, row.cells, strict=True):
                budget = AirtimeBudget.for_sub_band(column.rules)
                if cell.interval_s is None:
                    if cell.note != "BW too wide":
                        assert budget.wait_time(0.0, row.airtime_s) == float("inf")
                    continue
                assert budget.frame_fits(row.airtime_s)
                assert cell.interval_s == budget.sustainable_interval(row.airtime_s)
                if budget.unlimited:
                    continue
                # A greedy sender that waits exactly as long as the budget says it must: after
                # the first window's burst its steady rhythm is never faster than the table's.
                now, starts = 0.0, []
                while now < 6 * budget.window_s:
                    now += budget.wait_time(now, row.airtime_s)
                    budget.record(now, row.airtime_s)
                    starts.append(now)
                    now += row.airtime_s
                steady = [t for t in starts if t >= budget.window_s]
                rhythm = (steady[-1] - steady[0]) / (len(steady) - 1)
                assert rhythm >= cell.interval_s * (1 - 1e-9), (region.name, row)


def test_coding_rate_and_preamble(capsys):
    base = run_json(capsys, "--payload", "40", "--sf", "7", "--bw", "125")["rows"][0]
    slower = run_json(
        capsys, "--payload", "40", "--sf", "7", "--bw", "125", "--cr", "4/8", "--preamble", "16"
    )["rows"][0]
    assert slower["airtime_s"] > base["airtime_s"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--payload", "256"], "0..255"),
        (["--payload", "-1"], "byte count"),
        (["--payload", "10", "--sf", "13"], "6..12"),
        (["--payload", "10", "--bw", "100"], "not one of 7.8"),
        (["--payload", "10", "--cr", "4/9"], "4/5"),
        (["--payload", "10", "--region", "mars"], "known regions"),
        (["--payload", "10", "--frequency", "2400"], "137-1020 MHz"),
        (["--payload", "10", "--preamble", "2"], "6..65535"),
        ([], "--payload"),
        (["--payload", "4", "--bw", "inf"], "bandwidth 'inf' is not one of"),
        (["--payload", "4", "--bw", "1e400"], "bandwidth '1e400' is not one of"),
        (["--payload", "4", "--bw", "nan"], "bandwidth 'nan' is not one of"),
        (["--payload", "4", "--frequency", "inf"], "137-1020 MHz"),
        (["--payload", "4", "--frequency", "1e400"], "137-1020 MHz"),
        (["--payload", "4", "--frequency=-1e400"], "137-1020 MHz"),
    ],
)
def test_bad_input_exits_2_with_a_message(capsys, argv, message):
    with pytest.raises(SystemExit) as info:
        main(["airtime", *argv])
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_frequency_outside_the_region_is_explained(capsys):
    code, out, err = run(capsys, "--payload", "10", "--frequency", "915")
    assert code == 2
    assert out == ""
    assert "does not fit a EU868 sub-band" in err and "--region" in err


def test_help_and_a_real_process():
    result = subprocess.run(
        [sys.executable, "-m", "p1lora.tools.cli", "airtime", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--payload" in result.stdout and "--frequency" in result.stdout
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "p1lora.tools.cli",
            "airtime",
            "--payload",
            "13",
            "--sf",
            "7",
            "--bw",
            "125",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "46.3 ms" in result.stdout
