"""Capture replay: telegrams out of a capture file, byte-exact, at the meter's interval."""

from __future__ import annotations

import itertools
import logging
from pathlib import Path

import pytest

from p1lora.transmitter.capture_replay import (
    CaptureReplay,
    ReplayError,
    guess_generation,
    guess_interval,
)
from p1lora.transmitter.meter_faults import FaultConfig, FaultInjector, inject
from p1lora.transmitter.meter_profiles import SERIAL_SETTINGS
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.conftest import TELEGRAMS, telegram_bytes


def _capture(profile: str, count: int, seed: int = 0) -> list[bytes]:
    meter = VirtualMeter(profile, seed=seed)
    return [meter.next_telegram()[1] for _ in range(count)]


def test_telegrams_come_out_byte_exact_with_junk_and_broken_ones_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    v5, v42, fluvius = (telegram_bytes(n) for n in ("V5.txt", "V4_2.txt", "FLUVIUS_V171.txt"))
    broken = bytearray(v42)
    broken[40] ^= 0x01  # fails its CRC
    data = b"\x00\xffnoise\r\n" + v5 + v42[:100] + b"\r\n" + bytes(broken) + fluvius + b"tail"
    with caplog.at_level(logging.INFO, logger="p1lora.transmitter.capture_replay"):
        replay = CaptureReplay.from_bytes(data)
    assert replay.telegrams == (v5, fluvius)
    assert replay.framing is not None and replay.framing.crc_errors == 1
    assert "skipped 1 telegram(s) failing their check" in caplog.text


def test_replay_times_follow_the_interval_and_loop_on_request() -> None:
    telegrams = _capture("dsmr4", 3)
    replay = CaptureReplay.from_bytes(b"".join(telegrams))
    assert replay.interval == 10.0
    assert list(replay) == [(0.0, telegrams[0]), (10.0, telegrams[1]), (20.0, telegrams[2])]
    looping = CaptureReplay.from_bytes(b"".join(telegrams), loop=True, interval=2.5)
    first = list(itertools.islice(looping, 7))
    assert [t for t, _ in first] == [0.0, 2.5, 5.0, 7.5, 10.0, 12.5, 15.0]
    assert [raw for _, raw in first] == telegrams * 2 + telegrams[:1]
    assert len(looping) == 3


@pytest.mark.parametrize(
    ("profile", "interval"), [("dsmr5", 1.0), ("fluvius", 1.0), ("dsmr4", 10.0), ("dsmr22", 10.0)]
)
def test_interval_is_found_from_the_capture(profile: str, interval: float) -> None:
    assert guess_interval(_capture(profile, 5)) == interval


@pytest.mark.parametrize(
    ("name", "generation"),
    [
        ("V5.txt", "5"),
        ("FLUVIUS_V171.txt", "5"),
        ("V4_2.txt", "4"),
        ("DSMR22_ISKRA_MT382_REAL.txt", "2.2"),
        ("V3.txt", "2.2"),
    ],
)
def test_generation_and_serial_settings_from_a_single_telegram(name: str, generation: str) -> None:
    raw = telegram_bytes(name)
    assert guess_generation(raw) == generation
    replay = CaptureReplay.from_bytes(raw)
    assert replay.serial_settings == SERIAL_SETTINGS[generation]
    assert replay.interval == (1.0 if generation == "5" else 10.0)


def test_lf_only_capture_gets_its_crlf_back(caplog: pytest.LogCaptureFixture) -> None:
    original = [*_capture("dsmr5", 3), telegram_bytes("V2_2.txt")]
    mangled = b"".join(original).replace(b"\r\n", b"\n")
    with caplog.at_level(logging.WARNING, logger="p1lora.transmitter.capture_replay"):
        replay = CaptureReplay.from_bytes(mangled)
    assert replay.telegrams == tuple(original)
    assert "4 telegram(s) had LF-only line endings" in caplog.text


def test_a_faulty_stream_replays_only_its_good_telegrams() -> None:
    meter = VirtualMeter("dsmr5", seed=3)
    injector = FaultInjector(FaultConfig(bit_errors=0.2, truncate=0.1, junk=0.3), seed=3)
    wire = b""
    clean = []
    for t, raw in (meter.next_telegram() for _ in range(200)):
        wire += injector.apply(t, raw)
        if not {"bit_errors", "truncate"} & set(injector.last_faults):
            clean.append(raw)
    replay = CaptureReplay.from_bytes(wire)
    assert list(replay.telegrams) == clean
    assert list(inject(replay, FaultInjector(FaultConfig(), seed=0))) == list(replay)


def test_unreplayable_captures_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ReplayError, match="no valid telegram found in 5 bytes"):
        CaptureReplay.from_bytes(b"junk!")
    empty = tmp_path / "empty.txt"
    empty.write_bytes(b"")
    with pytest.raises(ReplayError, match=r"empty\.txt: no valid telegram"):
        CaptureReplay.from_file(empty)
    with pytest.raises(ReplayError, match=r"cannot read capture .*missing\.txt"):
        CaptureReplay.from_file(tmp_path / "missing.txt")
    with pytest.raises(ReplayError, match="interval"):
        CaptureReplay.from_bytes(telegram_bytes("V5.txt"), interval=0)


def test_from_file_reads_binary(tmp_path: Path) -> None:
    path = tmp_path / "capture.txt"
    path.write_bytes((TELEGRAMS / "V4_2.txt").read_bytes() * 2)
    replay = CaptureReplay.from_file(path)
    assert replay.telegrams == (telegram_bytes("V4_2.txt"),) * 2
    assert replay.generation == "4"
