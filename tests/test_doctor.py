"""`p1-lora doctor`: one test per wiring fault, against the emulated chip (virtual time) and a
pty meter; every failure names what it saw, the one thing to do and its troubleshooting
section."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from p1lora.service.keyfile import generate_key, write_key_file
from p1lora.tools.cli import main
from tests.helpers_pty import PtyMeter


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    write_key_file(path, generate_key())
    return path


def doctor(capsys, *args: str) -> tuple[int, dict]:
    code = main(["doctor", "--json", *args])
    report = json.loads(capsys.readouterr().out)
    assert report["exit_code"] == code
    return code, report


def by_check(report: dict) -> dict[str, dict]:
    return {item["check"]: item for item in report["checks"]}


def sim(key: Path, *args: str) -> list[str]:
    return ["--radio", "sim", "--key-file", str(key), *args]


def assert_failure(report: dict, check: str, saw: str, fix: str, section: str) -> None:
    item = by_check(report)[check]
    assert item["status"] == "fail", item
    assert saw in item["saw"]
    assert fix in item["fix"]
    assert item["see"] == f"docs/troubleshooting.md#{section}"


def test_a_healthy_emulated_setup_passes_every_check(capsys, key):
    code, report = doctor(capsys, *sim(key, "--board", "adafruit-rfm95w"))
    assert code == 0, report
    checks = by_check(report)
    assert [c["check"] for c in report["checks"]] == [
        "config",
        "key",
        "network-id",
        "spi-device",
        "pins",
        "chip",
        "reset",
        "dio0",
        "region",
        "module",
    ]
    assert all(c["status"] == "ok" for c in report["checks"])
    assert "RFM95W" in checks["module"]["saw"]


def test_text_output_and_help(capsys, key):
    assert main(["doctor", *sim(key)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[-1] == "all checks passed"
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--help"])
    assert exc.value.code == 0
    assert "Exit codes" in capsys.readouterr().out


def test_spi_absent(capsys, key, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    args = ["--board", "dragino", "--key-file", str(key), "--dev-dir", str(dev)]
    code, report = doctor(capsys, *args)
    assert code == 1
    assert_failure(report, "spi-device", "spidev0.0 does not exist", "raspi-config", "spi")
    checks = by_check(report)
    assert [checks[c]["status"] for c in ("pins", "chip", "reset", "dio0")] == ["skip"] * 4


def test_spi_on_the_other_chip_select(capsys, key, tmp_path):
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "spidev0.1").touch()
    args = ["--board", "dragino", "--key-file", str(key), "--dev-dir", str(dev)]
    code, report = doctor(capsys, *args)
    assert code == 1
    assert_failure(report, "spi-device", "present: spidev0.1", "board name", "spi")


@pytest.mark.parametrize(
    ("fault", "stuck", "hint"), [("chip-00", "0x00", "MISO (GPIO9)"), ("chip-ff", "0xff", "NSS")]
)
def test_chip_answering_a_stuck_bus(capsys, key, fault, stuck, hint):
    code, report = doctor(capsys, *sim(key, "--board", "dragino", "--sim-fault", fault))
    assert code == 1
    assert_failure(report, "chip", f"RegVersion reads {stuck}", hint, "chip-not-found")
    item = by_check(report)["chip"]
    assert "NSS on GPIO25" in item["fix"]  # the board's own pins are named
    assert by_check(report)["reset"]["status"] == "skip"


def test_reset_floating(capsys, key):
    code, report = doctor(capsys, *sim(key, "--board", "dragino", "--sim-fault", "reset-floating"))
    assert code == 1
    assert_failure(report, "reset", "still reads 0x08", "RESET pin to GPIO17", "reset")
    assert by_check(report)["dio0"]["status"] == "ok"


def test_board_without_reset_is_fine(capsys, key):
    code, report = doctor(capsys, *sim(key, "--board", "uputronics-ce0"))
    assert code == 0
    assert "sleep-mode restart" in by_check(report)["reset"]["saw"]


def test_dio0_unconnected(capsys, key):
    args = sim(key, "--board", "adafruit-rfm95w", "--sim-fault", "dio0-unconnected")
    code, report = doctor(capsys, *args)
    assert code == 1
    assert_failure(report, "dio0", "no rising edge arrived on GPIO22", "polling", "dio0")


def test_custom_pins_without_dio0_warn_but_pass(capsys, key):
    code, report = doctor(capsys, *sim(key, "--pins", "spi=0.1,reset=25,dio0=none"))
    assert code == 0
    assert by_check(report)["dio0"]["status"] == "warn"


def test_433_mhz_module_on_an_868_channel(capsys, key):
    code, report = doctor(capsys, *sim(key, "--board", "dragino-433"))
    assert code == 1
    assert_failure(
        report, "module", "RFM98W is built for 410-525 MHz", "module that matches", "wrong-module"
    )


def test_a_config_with_a_433_mhz_board_on_868_is_refused(capsys, key, tmp_path):
    config = tmp_path / "rx.toml"
    config.write_text(
        f'[radio]\nbackend = "sim"\nboard = "dragino-433"\n[link]\nkey_file = "{key}"\n'
        "[mqtt]\nenabled = false\n[raw]\nport = 3333\n"
    )
    code, report = doctor(capsys, str(config))
    assert code == 2  # the daemon would refuse it too
    assert_failure(
        report, "config", "RFM98W is built for 410-525 MHz", "config check", "config-file"
    )
    config.write_text(config.read_text().replace('"dragino-433"', '"dragino"'))
    code, report = doctor(capsys, str(config))
    assert code == 0, report


def test_rfm97_cannot_do_the_sf12_rendezvous(capsys, key):
    pins = "spi=0.0,reset=17,dio0=4,module=rfm97w"
    code, report = doctor(capsys, *sim(key, "--pins", pins))
    assert code == 1
    assert_failure(report, "module", "SF6-SF9", "module that matches", "wrong-module")
    assert "SF12" in by_check(report)["module"]["saw"]


def test_key_file_readable_by_others(capsys, key):
    key.chmod(0o644)
    code, report = doctor(capsys, *sim(key))
    assert code == 1
    assert_failure(report, "key", "can be accessed by", "chmod 600", "key-file")
    assert "network-id" not in by_check(report)


def test_bad_config_exits_2(capsys, key, tmp_path):
    config = tmp_path / "tx.toml"
    config.write_text('[radio]\nbackend = "sim"\nbord = "dragino"\n')
    code, report = doctor(capsys, str(config))
    assert code == 2
    assert_failure(report, "config", "bord", "p1-lora config check", "config-file")


def test_no_config_and_no_board_exits_2(capsys, key):
    code, report = doctor(capsys, "--key-file", str(key))
    assert code == 2
    assert_failure(report, "config", "no --board", "--radio sim", "config-file")


def _inverted_garbage_writer(master: int, stop: threading.Event) -> None:
    telegram = b"/ISK5\\2M550T-1012\r\n\r\n1-0:1.8.1(001234.567*kWh)\r\n!ABCD\r\n"
    garbage = bytes(~b & 0xFF for b in telegram)
    while not stop.wait(0.02):
        try:
            os.write(master, garbage)
        except OSError:
            return


def test_pty_meter_sending_non_inverted_garbage(capsys, key):
    master, slave = os.openpty()
    stop = threading.Event()
    writer = threading.Thread(target=_inverted_garbage_writer, args=(master, stop), daemon=True)
    writer.start()
    try:
        args = sim(key, "--serial", os.ttyname(slave), "--p1-seconds", "1.5")
        code, report = doctor(capsys, *args)
    finally:
        stop.set()
        writer.join()
        os.close(master)
        os.close(slave)
    assert code == 1
    checks = by_check(report)
    assert checks["p1-port"]["status"] == "ok"
    assert checks["p1-bytes"]["status"] == "ok"
    assert_failure(
        report, "p1-telegram", "no telegram at any serial setting", "does not invert", "p1-garbage"
    )


def test_pty_meter_with_a_good_cable(capsys, key, tmp_path):
    link = tmp_path / "p1"
    with PtyMeter(link, "dsmr5", speed=20.0) as meter:
        meter.plug()
        code, report = doctor(capsys, *sim(key, "--serial", str(link), "--p1-seconds", "20"))
    assert code == 0, report
    assert "DSMR 5" in by_check(report)["p1-telegram"]["saw"]


def test_missing_p1_port(capsys, key, tmp_path):
    code, report = doctor(capsys, *sim(key, "--serial", str(tmp_path / "ttyUSB9")))
    assert code == 1
    assert_failure(report, "p1-port", "does not exist", "/dev/serial/by-id", "p1-port")


def test_every_finding_has_its_troubleshooting_section():
    import ast

    root = Path(__file__).resolve().parents[1]
    sections: set[str] = set()
    for path in (root / "tools" / "doctor").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("failed", "warned")
                and isinstance(node.args[-1], ast.Constant)
            ):
                sections.add(node.args[-1].value)
    text = (root / "docs" / "troubleshooting.md").read_text()
    assert len(sections) >= 10
    assert all(f'<a id="{section}"></a>' in text for section in sections), sections


def test_without_the_pi_libraries_the_chip_check_names_the_extra(capsys, key, tmp_path):
    import importlib.util

    if importlib.util.find_spec("RPi") is not None:
        pytest.skip("the Pi libraries are installed here")
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "spidev0.0").touch()
    args = ["--board", "dragino", "--key-file", str(key), "--dev-dir", str(dev)]
    code, report = doctor(capsys, *args)
    assert code == 1
    checks = by_check(report)
    assert checks["spi-device"]["status"] == checks["pins"]["status"] == "ok"
    assert_failure(report, "chip", "RPi.GPIO", "pi extra", "spi")
    assert checks["reset"]["status"] == checks["dio0"]["status"] == "skip"
