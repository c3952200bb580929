"""SPI: the device node exists (SPI enabled in the firmware) and this user may open it.

`dev_dir` is /dev on a Pi; tests point it at a directory of their own to play a Pi without SPI
enabled.
"""

from __future__ import annotations

import os

from p1lora.tools.doctor.findings import Finding, failed, passed
from p1lora.tools.doctor.setup import DoctorSetup

__all__ = ["check_spi"]

ENABLE_SPI = (
    "enable SPI: sudo raspi-config nonint do_spi 0 (or add dtparam=spi=on to "
    "/boot/firmware/config.txt), then reboot"
)


def check_spi(setup: DoctorSetup) -> list[Finding]:
    """Findings "spi-device" and "spi-access" (nothing to check for a simulated radio)."""
    if setup.backend == "sim":
        return [passed("spi-device", "simulated radio: no SPI device needed")]
    assert setup.pins is not None
    pins = setup.pins
    node = setup.dev_dir / f"spidev{pins.spi_bus}.{pins.spi_device}"
    if not node.exists():
        present = sorted(p.name for p in setup.dev_dir.glob("spidev*"))
        saw = f"{node} does not exist" + (
            f" (present: {', '.join(present)})" if present else " (no /dev/spidev* at all)"
        )
        if present:
            fix = (
                f"the board setting expects SPI{pins.spi_bus} device {pins.spi_device}; check "
                "the board name, or enable that chip select (dtoverlay=spi1-3cs for SPI1)"
            )
        else:
            fix = ENABLE_SPI
        return [failed("spi-device", saw, fix, "spi")]
    findings = [passed("spi-device", f"{node} exists")]
    if not os.access(node, os.R_OK | os.W_OK):
        findings.append(
            failed(
                "spi-access",
                f"{node} exists but this user cannot open it",
                "add the daemon's user to the spi group (sudo usermod -aG spi p1lora; for "
                "yourself: sudo usermod -aG spi $USER, then log in again)",
                "spi",
            )
        )
    else:
        findings.append(passed("spi-access", f"{node} is readable and writable by this user"))
    return findings
