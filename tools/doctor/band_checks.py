"""Frequency sanity: the channel against the region's rules and against the module's band.

RegVersion reads 0x12 on every SX1276/77/78/79, so only the board table can say which module
is on the HAT (`boards.MODULES`): a 433 MHz RFM96W/98W on an 868 MHz channel is the classic
mistake (it transmits, but tens of dB weaker), and an RFM97W (SX1277) cannot demodulate the
SF12 rendezvous of EU868 at all.
"""

from __future__ import annotations

from p1lora.common.regions import RegionError
from p1lora.hardware.boards import MODULES, module_problem
from p1lora.tools.doctor.findings import Finding, failed, passed
from p1lora.tools.doctor.setup import DoctorSetup

__all__ = ["check_band"]


def _needed_sfs(setup: DoctorSetup) -> tuple[int, ...]:
    rendezvous = setup.region.rendezvous(setup.frequency_hz).sf
    return (rendezvous,) if setup.fixed_sf is None else (rendezvous, setup.fixed_sf)


def check_band(setup: DoctorSetup) -> list[Finding]:
    """Findings "region" and "module"."""
    region = setup.region
    mhz = setup.frequency_hz / 1e6
    try:
        rendezvous = region.rendezvous(setup.frequency_hz)
        band = region.check(rendezvous)
    except RegionError as exc:
        return [
            failed(
                "region",
                f"{mhz:.3f} MHz in {region.name}: {exc}",
                f"set radio.frequency to a channel of {region.name} (default "
                f"{region.default_frequency_hz / 1e6:.3f} MHz), the same on both Pis",
                "frequency",
            )
        ]
    findings = [passed("region", f"{mhz:.3f} MHz is in {region.name} {band.describe()}")]
    module = setup.pins.radio_module if setup.pins is not None else None
    if module is None:
        known = ", ".join(m.describe() for m in MODULES.values())
        findings.append(
            passed(
                "module",
                "the board does not name its module and the chip cannot tell (RegVersion is "
                f"0x12 on all): read the module's label ({known})",
            )
        )
        return findings
    problem = module_problem(module, setup.frequency_hz, _needed_sfs(setup))
    if problem is not None:
        findings.append(
            failed(
                "module",
                problem,
                "use a board entry or module that matches the radio on your HAT, and a "
                "channel that module is built for",
                "wrong-module",
            )
        )
    else:
        findings.append(passed("module", f"{module.describe()} fits {mhz:.3f} MHz"))
    return findings
