"""`p1-lora sim`: options, validation, the JSON object and the text report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from p1lora.tools.cli import main
from p1lora.transmitter.virtual_meter import VirtualMeter

REQUIRED = {
    "telegrams_read": int,
    "telegrams_delivered": int,
    "telegrams_corrupt": int,
    "frame_bytes_median": float,
    "frame_bytes_p95": float,
    "airtime_s_tx": float,
    "airtime_s_rx": float,
    "duty_cycle_max_tx": float,
    "duty_cycle_max_rx": float,
    "latency_ms_p50": float,
    "latency_ms_p95": float,
    "max_gap_s": float,
    "first_delivery_s": float,
    "final_sf": int,
    "final_bw": float,
    "settings_timeline": list,
    "handshake_airtime_s": float,
    "convergence_s": float,
    "frames_rejected": int,
}


def _run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, object]:
    assert main(["sim", "--json", *args]) == 0
    out = capsys.readouterr().out
    document = json.loads(out)
    assert isinstance(document, dict)
    return document


def test_json_has_every_field_the_issue_asks_for(capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(capsys, "--duration", "120", "--seed", "3")
    for key, kind in REQUIRED.items():
        assert isinstance(document[key], kind), (key, document[key])
    assert document["telegrams_read"] == 121  # one per second, t = 0 .. 120
    assert 100 < document["telegrams_delivered"] <= 121  # type: ignore[operator]
    assert document["telegrams_corrupt"] == 0
    assert (document["final_sf"], document["final_bw"]) == (7, 250.0)
    timeline = document["settings_timeline"]
    assert isinstance(timeline, list)
    assert timeline[0][1:3] == [12, 125.0]  # starts at the rendezvous
    assert all(len(row) == 4 for row in timeline)
    assert [row[0] for row in timeline] == sorted(row[0] for row in timeline)
    assert document["frequency_mhz"] == 869.525
    assert document["duty_cycle_limit"] == 0.1
    assert "baselines" not in document


def test_the_sub_band_follows_the_frequency(capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(capsys, "--duration", "10m", "--frequency", "868.1")
    assert document["duty_cycle_limit"] == 0.01
    assert document["sub_band"] == "h1.4 868.0-868.6"
    assert document["final_bw"] == 125.0  # 250 kHz does not fit that sub-band
    assert document["duty_cycle_max_tx"] <= 0.01  # type: ignore[operator]


def test_baselines_run_next_to_p1lora(capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(
        capsys, "--duration", "300", "--baseline", "esp32", "--baseline", "esp32-same-channel"
    )
    baselines = document["baselines"]
    assert isinstance(baselines, dict) and set(baselines) == {"esp32", "esp32-same-channel"}
    shipped, same = baselines["esp32"], baselines["esp32-same-channel"]
    assert shipped["protocol"] == "esp32" and shipped["frequency_mhz"] == 868.0
    assert same["frequency_mhz"] == document["frequency_mhz"] == 869.525
    for run in (shipped, same):
        assert run["delivers"] == "readings"  # never byte-exact telegrams
        assert run["frame_bytes_median"] == 100.0
        assert set(REQUIRED) - {"telegrams_delivered", "telegrams_corrupt", "frames_rejected"} <= (
            set(run)
        )
    for run in (shipped, same):  # the newest receiver no longer reboots: both deliver
        assert run["delivered"] > 15  # type: ignore[operator]
        assert run["receiver_sync_requests"] == 0
    assert document["delivers"] == "telegrams"


def test_path_changes_loss_and_distance(capsys: pytest.CaptureFixture[str]) -> None:
    document = _run_json(
        capsys, "--duration", "20m", "--degrade", "5m:136", "--degrade", "12m:100", "--seed", "4"
    )
    assert document["final_sf"] == 7
    timeline = document["settings_timeline"]
    assert isinstance(timeline, list)
    sfs = {row[1] for row in timeline}
    assert len(sfs) >= 3  # rendezvous, fast, and a slower rung during the degradation
    far = _run_json(capsys, "--duration", "5m", "--distance", "20000", "--path-loss-exponent", "3")
    assert far["path_loss_db"] is None and far["distance_m"] == 20000.0
    assert far["final_sf"] > 7  # type: ignore[operator]
    lossy = _run_json(capsys, "--duration", "5m", "--frame-loss", "0.2", "--fading", "2")
    assert lossy["telegrams_corrupt"] == 0
    assert lossy["telegrams_delivered"] < lossy["telegrams_read"]  # type: ignore[operator]


def test_a_capture_replays_byte_exact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    meter = VirtualMeter("dsmr5", seed=9)
    capture = tmp_path / "capture.txt"
    capture.write_bytes(b"".join(meter.next_telegram()[1] for _ in range(30)))
    document = _run_json(capsys, "--duration", "90", "--meter", str(capture))
    assert document["telegrams_read"] == 91
    assert document["telegrams_delivered"] > 40  # type: ignore[operator]
    assert document["telegrams_corrupt"] == 0


def test_the_text_report_is_readable(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sim", "--duration", "120", "--baseline", "esp32"]) == 0
    out = capsys.readouterr().out
    assert "p1-lora sim: 0.0333333 h of link time" in out
    for label in (
        "telegrams read",
        "delivered per hour",
        "frame bytes median / p95",
        "duty cycle max tx / rx",
        "latency p50 / p95",
        "final settings",
    ):
        assert label in out
    assert "esp32" in out and "readings" in out and "re-syncs the receiver asked for" in out
    assert "SF7/BW250" in out
    assert "p1-lora settings (transmitter):" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--path-loss", "300"], "outside 0..250"),
        (["--path-loss", "100", "--distance", "10"], "not allowed with argument"),
        (["--duration", "0"], "more than 0 s"),
        (["--duration", "soon"], "not a number of seconds"),
        (["--frame-loss", "1.5"], "outside 0..1"),
        (["--region", "MARS"], "unknown region"),
        (["--profile", "dsmr9"], "unknown meter profile"),
        (["--degrade", "100"], "must be AT:DB"),
        (["--fixed", "7"], "SF/BW"),
        (["--baseline", "lora32"], "invalid choice"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", *args])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--frequency", "870.5"], "does not fit a EU868 sub-band"),
        (["--tx-power", "27"], "exceeds"),
        (["--fixed", "7/500"], "500 kHz bandwidth does not fit"),
    ],
)
def test_settings_the_region_forbids_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["sim", *args]) == 2
    assert message in capsys.readouterr().err


def test_a_missing_capture_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["sim", "--meter", str(tmp_path / "nope.txt")]) == 2
    assert "cannot read capture" in capsys.readouterr().err


def test_help_describes_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--duration",
        "--path-loss",
        "--distance",
        "--frame-loss",
        "--region",
        "--frequency",
        "--meter",
        "--seed",
        "--json",
        "--baseline",
        "--degrade",
    ):
        assert option in out
