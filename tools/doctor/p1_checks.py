"""The transmitter's P1 port: present, openable, bytes arrive, a telegram is framed.

The port is read by the daemon's own `SerialSource` (in its configured mode, "auto" trying
every DSMR generation's serial settings), for up to `p1_seconds`. Bytes that never form a
telegram under any setting are the signature of a cable that does not invert the P1 signal
(the P1 output is an inverted, open-collector line; the most common cable mistake), or of a
meter whose data request line is not driven (then no bytes arrive at all).
"""

from __future__ import annotations

import errno
import os
import threading

from p1lora.hardware.realtime import SystemClock
from p1lora.tools.doctor.findings import Finding, failed, passed, skipped
from p1lora.tools.doctor.setup import DoctorSetup
from p1lora.transmitter.meter_profiles import DSMR_GENERATIONS, SERIAL_SETTINGS
from p1lora.transmitter.serial_source import SerialSource, open_serial

__all__ = ["check_p1"]


def _open_problem(setup: DoctorSetup) -> Finding | None:
    assert setup.serial_port is not None
    port = setup.serial_port
    if not port.exists():
        return failed(
            "p1-port",
            f"{port} does not exist",
            "plug the P1 cable in and set serial.port to its /dev/serial/by-id/... path "
            "(ls -l /dev/serial/by-id/)",
            "p1-port",
        )
    try:
        handle = open_serial(str(port), SERIAL_SETTINGS[DSMR_GENERATIONS[0]], 0.1)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM) or not os.access(port, os.R_OK):
            return failed(
                "p1-port",
                f"{port} exists but this user cannot open it ({exc.strerror or exc})",
                "add the daemon's user to the dialout group (sudo usermod -aG dialout p1lora)",
                "p1-port",
            )
        return failed("p1-port", f"cannot open {port}: {exc}", "check the cable", "p1-port")
    handle.close()
    return None


def check_p1(setup: DoctorSetup) -> list[Finding]:
    """Findings "p1-port", "p1-bytes", "p1-telegram" (transmitter side only)."""
    if setup.serial_port is None:
        if setup.role == "tx" and setup.meter_source is not None:
            return [skipped("p1-port", f"meter.source = {setup.meter_source}: no P1 port")]
        return []
    problem = _open_problem(setup)
    if problem is not None:
        return [problem]
    findings = [passed("p1-port", f"{setup.serial_port} opens")]
    got_one = threading.Event()
    generations = len(DSMR_GENERATIONS) if setup.serial_mode == "auto" else 1
    source = SerialSource(
        str(setup.serial_port),
        lambda _raw, _at: got_one.set(),
        SystemClock(),
        mode=setup.serial_mode,
        detect_seconds=max(1.0, setup.p1_seconds / generations),
        no_data_after=setup.p1_seconds + 1,
    )
    with source:
        got_one.wait(setup.p1_seconds)
    stats = source.stats()
    if stats.bytes_read == 0:
        findings.append(
            failed(
                "p1-bytes",
                f"no bytes in {setup.p1_seconds:g} s",
                "the meter sends only while its data request line (RJ12 pin 2) is driven: use "
                "a cable that drives it (5 V), and check the P1 port is enabled (some "
                "operators enable it on request)",
                "p1-no-data",
            )
        )
        return findings
    findings.append(passed("p1-bytes", f"{stats.bytes_read} bytes arrived"))
    if stats.telegrams_ok == 0:
        findings.append(
            failed(
                "p1-telegram",
                f"{stats.bytes_read} bytes but no telegram at any serial setting "
                f"({stats.crc_errors} CRC failures, {stats.framing_errors} framing errors)",
                "the cable probably does not invert the signal (P1 is an inverted "
                "open-collector output): use a P1 cable with an inverter, or set "
                "serial.mode to your meter's DSMR version",
                "p1-garbage",
            )
        )
        return findings
    findings.append(
        passed(
            "p1-telegram",
            f"telegram framed at {stats.settings} (DSMR {stats.generation}); "
            f"{stats.telegrams_ok} good, {stats.crc_errors} CRC failures",
        )
    )
    return findings
