"""`p1-lora doctor [CONFIG]`: find out why a p1-lora Pi does not work, one wire at a time.

Run it on either Pi, as the daemon's user, with the daemon's config file, right after
installing (docs/install.md, "Check your wiring"). It checks, in order:

1. the config file (the daemon's own loader and cross-checks);
2. the key file (readable, private) and the network id (compare both Pis);
3. SPI: the /dev/spidevX.Y of the board exists and may be opened;
4. the chip: the pin map, RegVersion, RESET (a pulse restores a register's reset value), DIO0
   (a CAD's CadDone edge reaches the GPIO; nothing is transmitted);
5. the channel against the region and the module's band and spreading factors;
6. on the transmitter: the P1 port, bytes, a framed telegram and at which serial settings.

Each failure prints what it saw, the one thing to do and the docs/troubleshooting.md section.
A check whose premise failed is skipped (no SPI device: no chip checks).

Exit codes: 0 every check passed (warnings allowed), 1 a check failed, 2 the config file or a
flag is unusable. `--json` prints one object for scripts. `--radio sim` runs against an
emulated chip (with `--sim-fault` miswirings) to try it without hardware.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Final

from p1lora.common.regions import REGIONS
from p1lora.hardware.radio import RadioError
from p1lora.tools.doctor.band_checks import check_band
from p1lora.tools.doctor.chip_checks import check_chip, check_pin_map
from p1lora.tools.doctor.chip_port import SIM_FAULTS, open_chip_port
from p1lora.tools.doctor.findings import Finding, failed, render_json, render_text, skipped
from p1lora.tools.doctor.key_checks import check_key
from p1lora.tools.doctor.p1_checks import check_p1
from p1lora.tools.doctor.setup import DoctorSetup, load_setup
from p1lora.tools.doctor.spi_checks import check_spi

__all__ = ["configure", "diagnose", "run"]

logger = logging.getLogger(__name__)

EPILOG: Final = """\
examples:
  p1-lora doctor /etc/p1-lora/tx.toml
  sudo -u p1lora p1-lora doctor --config /etc/p1-lora/rx.toml --json
  p1-lora doctor --radio sim --key-file key --sim-fault dio0-unconnected

Exit codes: 0 all checks passed, 1 a check failed, 2 the config file or a flag is unusable.
Every finding is explained in docs/troubleshooting.md."""

_CHIP_CHECKS: Final = ("pins", "chip", "reset", "dio0")
#: The chip checks that need the chip to answer first.
_LATER: Final = _CHIP_CHECKS[2:]


def configure(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Check the wiring, the chip, the key and the P1 port of a p1-lora Pi."
    parser.epilog = EPILOG
    parser.add_argument(
        "config_file", nargs="?", type=Path, metavar="CONFIG", help="the daemon's config file"
    )
    parser.add_argument("--config", type=Path, metavar="FILE", help="same as CONFIG")
    parser.add_argument("--role", choices=("tx", "rx"), help="whose config (default: inferred)")
    parser.add_argument(
        "--radio", choices=("sx127x", "sim"), help="override radio.backend (sim: emulated chip)"
    )
    parser.add_argument("--board", metavar="NAME", help="override radio.board")
    parser.add_argument("--pins", metavar="SPEC", help="override the pins (custom wiring)")
    parser.add_argument("--key-file", type=Path, metavar="FILE", help="override link.key_file")
    parser.add_argument("--serial", type=Path, metavar="PATH", help="the P1 port to check")
    parser.add_argument("--region", choices=sorted(REGIONS), help="override radio.region")
    parser.add_argument("--frequency", type=float, metavar="MHZ", help="override the channel")
    parser.add_argument(
        "--sim-fault",
        action="append",
        choices=sorted(SIM_FAULTS),
        help="with --radio sim: miswire the emulated chip this way (repeatable)",
    )
    parser.add_argument(
        "--p1-seconds",
        type=float,
        default=35.0,
        metavar="S",
        help="listen this long on the P1 port for a telegram (default 35)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--dev-dir", type=Path, default=Path("/dev"), help=argparse.SUPPRESS)


def _chip_findings(setup: DoctorSetup) -> list[Finding]:
    findings = [check_pin_map(setup)]
    try:
        port = open_chip_port(setup)
    except RadioError as exc:
        findings.append(
            failed("chip", str(exc), "install the pi extra or fix the GPIO setup", "spi")
        )
        return findings + [skipped(c, "skipped: the chip could not be opened") for c in _LATER]
    try:
        return findings + check_chip(setup, port)
    finally:
        port.close()


def diagnose(setup: DoctorSetup) -> list[Finding]:
    """Every check after the config, in order."""
    findings = check_key(setup)
    spi = check_spi(setup)
    findings += spi
    if any(f.failed for f in spi):
        findings += [skipped(c, "skipped: no usable SPI device") for c in _CHIP_CHECKS]
    else:
        findings += _chip_findings(setup)
    findings += check_band(setup)
    findings += check_p1(setup)
    return findings


def run(args: argparse.Namespace) -> int:
    if args.sim_fault and args.radio != "sim":
        logger.error("--sim-fault needs --radio sim")
        return 2
    if args.p1_seconds <= 0:
        logger.error("--p1-seconds must be positive")
        return 2
    setup, config_finding = load_setup(args)
    findings = [config_finding]
    if setup is not None:
        findings += diagnose(setup)
        code = 1 if any(f.failed for f in findings) else 0
    else:
        code = 2
    print(render_json(findings, code) if args.json else render_text(findings), end="")
    if args.json:
        print()
    return code
