"""`p1-lora-tx --meter virtual` keeps its meter's registers in the state directory, so a
restarted transmitter never prints lower energy registers (issue 13 item 7); `--meter-template`
and its validation. On the virtual clock, plus one short real process for the exit code."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.common.parser import parse_telegram
from p1lora.service.config import ConfigError, load_config
from p1lora.transmitter.options import TX_OPTIONS
from p1lora.transmitter.sources import MeterFeeder, make_source
from p1lora.transmitter.virtual_meter import MeterRegisters
from p1lora.transmitter.virtual_meter_state import METER_STATE_FILE, SAVE_INTERVAL_S

from .helpers_telegrams import fixture

ENERGY = (
    "electricity_used_tariff_1",
    "electricity_used_tariff_2",
    "electricity_delivered_tariff_1",
    "electricity_delivered_tariff_2",
)


def _config(tmp_path: Path, extra: str = "", *, seed: int = 3):
    path = tmp_path / "tx.toml"
    path.write_text(
        f"[meter]\nsource = 'virtual'\nseed = {seed}\n{extra}[radio]\nbackend = 'sim'\n"
    )
    return load_config(TX_OPTIONS, None, {}, path=path)


def _registers(raw: bytes) -> list[Decimal]:
    telegram = parse_telegram(raw)
    return [telegram.value(k) for k in ENERGY] + [telegram.value("gas_reading", 1)]


def _run(config, state: Path, telegrams: int) -> list[bytes]:
    """One transmitter run on the virtual clock: `telegrams` telegrams, then an orderly stop."""
    got: list[bytes] = []
    feeder: MeterFeeder | None = None

    def forward(raw: bytes, at: float) -> None:
        got.append(raw)
        if len(got) == telegrams and feeder is not None:
            feeder._stop.set()

    source = make_source(config, VirtualClock(), forward, state)
    assert isinstance(source, MeterFeeder)
    feeder = source
    feeder._feed()  # on this thread: the virtual clock advances while it waits
    feeder.stop()
    return got


def test_a_restarted_transmitter_continues_the_registers_instead_of_the_seed(
    tmp_path: Path,
) -> None:
    config, state = _config(tmp_path), tmp_path / "state"
    first = _run(config, state, 200)  # 200 telegrams of a DSMR 5 meter: 200 s
    saved = MeterRegisters.from_json((state / METER_STATE_FILE).read_text())
    assert saved.equipment_id in first[-1].decode()
    second = _run(config, state, 5)
    last, resumed = _registers(first[-1]), _registers(second[0])
    assert all(b >= a for a, b in zip(last, resumed, strict=True)), (last, resumed)
    # Without the state directory it steps back to the seed's registers (the bug).
    fresh = _run(config, tmp_path / "elsewhere", 1)
    assert any(b < a for a, b in zip(last, _registers(fresh[0]), strict=True))
    # The third run continues from the second's shutdown save.
    third = _run(config, state, 1)
    assert all(b >= a for a, b in zip(_registers(second[-1]), _registers(third[0]), strict=True))


def test_registers_are_saved_about_every_minute_not_every_telegram(tmp_path: Path) -> None:
    config, state = _config(tmp_path), tmp_path / "state"
    path = state / METER_STATE_FILE
    writes: list[float] = []
    original = os.replace

    def counting(src: str | Path, dst: str | Path) -> None:
        if Path(dst) == path:
            writes.append(1.0)
        original(src, dst)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(os, "replace", counting)
        _run(config, state, 300)  # five minutes
    # Every 60 s while running, plus the shutdown save.
    assert 300 / SAVE_INTERVAL_S - 1 <= len(writes) <= 300 / SAVE_INTERVAL_S + 1


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"format": 1, "equipment_id": "x", "joules": [NaN]}', "not a number"),
        (b"[" * 50_000, "nested too deeply"),
        (b" " * 100_000, "larger than 65536 bytes"),
        (None, "belong to meter"),  # another seed's registers
    ],
)
def test_a_bad_or_foreign_file_is_moved_aside_and_the_meter_starts_from_its_seed(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    content: bytes | None,
    why: str,
) -> None:
    state = tmp_path / "state"
    if content is None:
        _run(_config(tmp_path, seed=99), state, 2)  # another meter's registers
        content = (state / METER_STATE_FILE).read_bytes()
    state.mkdir(exist_ok=True)
    (state / METER_STATE_FILE).write_bytes(content)
    config = _config(tmp_path)
    caplog.clear()  # only the restarted meter's records (the first run may have logged at INFO)
    with caplog.at_level(logging.WARNING):
        got = _run(config, state, 2)
    assert _registers(got[0]) == _registers(_run(config, tmp_path / "seed", 1)[0])
    kept = state / f"{METER_STATE_FILE}.corrupt"
    assert kept.read_bytes() == content  # kept for a look
    warning = next(r.getMessage() for r in caplog.records if "virtual meter" in r.getMessage())
    assert why in warning and "started from the seed" in warning
    # And the run saved its own registers in its place.
    assert MeterRegisters.from_json((state / METER_STATE_FILE).read_text()).equipment_id


def test_an_unwritable_state_directory_is_one_warning_and_the_meter_runs_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("a file where the state directory should be")
    with caplog.at_level(logging.WARNING):
        got = _run(_config(tmp_path), blocker, 200)
    assert len(got) == 200
    warnings = [r for r in caplog.records if "cannot save its registers" in r.getMessage()]
    assert len(warnings) == 1


def test_meter_template_styles_the_virtual_meter_and_keeps_its_registers(
    tmp_path: Path,
) -> None:
    template = tmp_path / "fluvius.txt"
    template.write_bytes(fixture("FLUVIUS_V171.txt"))
    config = _config(tmp_path, f"template = '{template}'\n")
    state = tmp_path / "state"
    first = _run(config, state, 3)
    assert first[0].startswith(fixture("FLUVIUS_V171.txt").split(b"\r\n", 1)[0])
    second = _run(config, state, 1)
    assert all(
        b >= a for a, b in zip(_registers(first[-1])[:4], _registers(second[0])[:4], strict=True)
    )


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (None, "cannot read template"),
        (lambda p: p.write_text("not a telegram at all\n"), "template"),
    ],
)
def test_a_missing_or_bad_template_is_a_configuration_error(
    tmp_path: Path, write: Callable[[Path], object] | None, message: str
) -> None:
    template = tmp_path / "template.txt"
    if write is not None:
        write(template)
    with pytest.raises(ConfigError, match=rf"meter\.template.*{message}"):
        _config(tmp_path, f"template = '{template}'\n")


def test_a_template_needs_the_virtual_meter(tmp_path: Path) -> None:
    template = tmp_path / "fluvius.txt"
    template.write_bytes(fixture("FLUVIUS_V171.txt"))
    path = tmp_path / "tx.toml"
    path.write_text(f"[serial]\nport = '/dev/ttyUSB0'\n[meter]\ntemplate = '{template}'\n")
    with pytest.raises(ConfigError, match="a template styles the virtual meter"):
        load_config(TX_OPTIONS, None, {}, path=path)


def test_p1_lora_tx_exits_2_for_a_missing_template(tmp_path: Path) -> None:
    missing = tmp_path / "missing.txt"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "p1lora.transmitter.cli",
            "--radio",
            "sim",
            "--meter",
            "virtual",
            "--meter-template",
            str(missing),
            "--key-file",
            str(tmp_path / "key"),
            "--state-dir",
            str(tmp_path / "state"),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "P1LORA_CONFIG": ""},
    )
    assert done.returncode == 2, done.stderr
    assert "meter.template (from --meter-template)" in done.stderr
    assert str(missing) in done.stderr
    assert "radio:" not in done.stderr  # nothing was opened
