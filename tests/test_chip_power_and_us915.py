"""The SX127x's 1 % rating of its +20 dBm mode, and the honest US915 profile.

The datasheet rates PA_BOOST above +17 dBm (RegPaDac 0x87) for at most 1 % duty cycle; where a
sub-band lets the link transmit more, the daemons cap the power at +17 dBm with one WARNING
instead of refusing to start. US915 warns that a fixed 125 kHz channel is not legal under FCC
15.247 and meets at BW500, so fixed BW500 settings never use a narrower signal.
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from p1lora.common.airtime import time_on_air_for
from p1lora.common.link import LinkConfig
from p1lora.common.link.config import FixedRadio, RadioMode
from p1lora.common.regions import REGIONS, Region, RegionError, SubBand, get_region
from p1lora.hardware.sx127x import (
    PA_BOOST_CONTINUOUS_MAX_DBM,
    max_power_for_duty_cycle,
    power_setting,
)
from p1lora.service.config import load_config
from p1lora.service.options import chip_tx_power, link_config
from p1lora.tools.config_command import table_for
from p1lora.tools.sim import SimOptions, Simulation

ROOT = Path(__file__).resolve().parent.parent
TX_ENV = {"P1LORA_SERIAL": "/dev/ttyUSB0", "P1LORA_RADIO": "sim"}
OPTIONS_LOGGER = "p1lora.service.options"


def _load(tmp_path: Path, role: str, text: str, argv: tuple[str, ...] = ()):
    table = table_for(role)
    parser = argparse.ArgumentParser(allow_abbrev=False)
    table.add_arguments(parser)
    path = tmp_path / f"{role}.toml"
    path.write_text(text)
    env = TX_ENV if role == "tx" else {"P1LORA_RADIO": "sim"}
    return load_config(table, parser.parse_args(["--config", str(path), *argv]), env)


def _warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == OPTIONS_LOGGER and r.levelno == logging.WARNING
    ]


# ---------------------------------------------------------------------- the chip's rule


def test_the_rule_lives_in_the_sans_io_core_and_the_driver_re_exports_it():
    from p1lora.common.link import config as link_config_module
    from p1lora.hardware import sx127x

    assert sx127x.max_power_for_duty_cycle is link_config_module.max_power_for_duty_cycle
    assert sx127x.PA_BOOST_CONTINUOUS_MAX_DBM == link_config_module.PA_BOOST_CONTINUOUS_MAX_DBM
    assert sx127x.HIGH_POWER_MAX_DUTY_CYCLE == link_config_module.HIGH_POWER_MAX_DUTY_CYCLE
    assert sx127x.PA_BOOST_RANGE_DBM[1] == link_config_module.PA_BOOST_MAX_DBM


def test_the_link_config_caps_the_power_by_the_duty_cycle():
    # 869.525 MHz allows 500 mW and 10 %: the chip may only use +17 dBm there.
    assert LinkConfig(tx_power_dbm=20).max_tx_power() == 17
    assert LinkConfig(tx_power_dbm=17).max_tx_power() == 17
    assert LinkConfig(tx_power_dbm=20).rendezvous().tx_power_dbm == 17
    high = LinkConfig(tx_power_dbm=20)
    assert high.fixed_settings(FixedRadio(7, 250_000, 17)).tx_power_dbm == 17
    with pytest.raises(RegionError, match=r"maximum 17 dBm \(the SX127x's \+20 dBm mode"):
        LinkConfig(tx_power_dbm=20, mode=RadioMode.FIXED, fixed=FixedRadio(7, 250_000, 20))
    # A 1 % band that allows +20 dBm keeps it.
    band = SubBand("one-percent", 869_400_000, 869_650_000, 0.01, 500, 27)
    region = Region("ONE", "test region", (band,), 869_525_000)
    assert LinkConfig(region=region, tx_power_dbm=20).max_tx_power() == 20
    # US915 (0.4 s per 20 s is 2 %): at most +17 dBm, as its default already is.
    assert LinkConfig(region=get_region("US915"), tx_power_dbm=20).max_tx_power() == 17


def test_the_simulator_models_the_capped_power_and_says_so(caplog):
    caplog.set_level(logging.WARNING, logger="p1lora.tools.sim")
    sim = Simulation(SimOptions(tx_power_dbm=20, duration_s=30.0, path_loss_db=147.0))
    assert sim.config.max_tx_power() == 17
    sim.run()
    powers = {s.tx_power_dbm for _, s, _ in sim.tx_log.settings}
    assert powers == {17}
    (warning,) = [r.getMessage() for r in caplog.records if "--tx-power" in r.getMessage()]
    assert "--tx-power 20 dBm" in warning and "at most 17 dBm" in warning
    assert "1% duty cycle" in warning and "10%" in warning
    caplog.clear()
    Simulation(SimOptions(tx_power_dbm=14, duration_s=1.0))
    assert "--tx-power" not in caplog.text


def test_the_plus_20_dbm_mode_is_for_one_percent_duty_cycle_only():
    assert max_power_for_duty_cycle(0.001) == 20
    assert max_power_for_duty_cycle(0.01) == 20
    assert max_power_for_duty_cycle(0.02) == PA_BOOST_CONTINUOUS_MAX_DBM == 17
    assert max_power_for_duty_cycle(0.1) == 17
    assert max_power_for_duty_cycle(1.0) == 17
    # The cap is exactly where the driver stops using RegPaDac 0x87.
    assert power_setting(17, pa_boost=True).pa_dac == 0x84
    assert power_setting(18, pa_boost=True).pa_dac == 0x87


@pytest.mark.parametrize("role", ["tx", "rx"])
@pytest.mark.parametrize("power", [18, 20])
def test_high_power_in_the_10_percent_band_is_capped_with_one_warning(
    tmp_path, caplog, role, power
):
    caplog.set_level(logging.WARNING, logger=OPTIONS_LOGGER)
    config = _load(tmp_path, role, f"[radio]\ntx_power = {power}\n")  # 869.525 MHz, 10 %
    (warning,) = _warnings(caplog)
    assert warning.startswith(f"radio.tx_power: {power} dBm needs the SX127x's +20 dBm mode")
    assert "RegPaDac 0x87" in warning and "1% duty cycle" in warning
    assert "h1.6 869.4-869.65" in warning and "10% of the time" in warning
    assert "at most 17 dBm" in warning
    link = link_config(config, role)
    assert link.max_tx_power() == 17
    assert link.rendezvous().tx_power_dbm == 17
    assert _warnings(caplog) == [warning]  # building the link again does not repeat it


def test_the_flag_is_capped_too_and_the_daemon_starts(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger=OPTIONS_LOGGER)
    config = _load(tmp_path, "tx", "", ("--radio-tx-power", "20"))
    assert link_config(config, "tx").max_tx_power() == 17
    assert len(_warnings(caplog)) == 1


def test_fixed_mode_power_is_capped_as_well(tmp_path):
    config = _load(
        tmp_path,
        "tx",
        "[radio]\ntx_power = 20\nmode = 'fixed'\nfixed_sf = 7\nfixed_bw = 250\n",
    )
    link = link_config(config, "tx")
    assert link.fixed is not None and link.fixed.tx_power_dbm == 17
    assert link.fixed_settings().tx_power_dbm == 17


@pytest.mark.parametrize(
    "text",
    [
        "[radio]\ntx_power = 17\n",  # within the rating at 10 %
        "[radio]\nfrequency = 868.1\ntx_power = 14\n",  # a 1 % sub-band: 14 dBm legal limit
        "",  # EU868's default 14 dBm
        "[radio]\nregion = 'AU915'\n",  # the region default is 17 dBm now, not 20
        "[radio]\nregion = 'IN865'\n",
    ],
)
def test_no_warning_when_the_power_is_within_the_rating(tmp_path, caplog, text):
    caplog.set_level(logging.WARNING, logger=OPTIONS_LOGGER)
    config = _load(tmp_path, "tx", text)
    assert _warnings(caplog) == []
    assert chip_tx_power(config)[1] is None
    assert link_config(config, "tx").max_tx_power() <= 17


def test_a_region_default_never_needs_the_cap():
    for region in REGIONS.values():
        band = region.sub_band_for(region.default_frequency_hz, region.rendezvous_bw_hz)
        assert region.default_tx_power_dbm <= max_power_for_duty_cycle(band.duty_cycle), region


def test_the_legal_limit_still_refuses_rather_than_caps(tmp_path):
    from p1lora.service.config import ConfigError

    with pytest.raises(ConfigError) as info:
        _load(tmp_path, "tx", "[radio]\nfrequency = 868.1\ntx_power = 17\n")
    assert any("exceeds the 14 dBm allowed" in p for p in info.value.problems)


def test_config_check_reports_the_cap(tmp_path):
    path = tmp_path / "tx.toml"
    path.write_text("[serial]\nport = '/dev/ttyUSB0'\n[radio]\nbackend = 'sim'\ntx_power = 20\n")
    result = subprocess.run(
        [sys.executable, "-m", "p1lora.tools.cli", "config", "check", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    assert "WARNING" in result.stderr and "at most 17 dBm" in result.stderr, result.stderr


# ---------------------------------------------------------------------- US915


def test_us915_says_it_is_experimental_and_why(tmp_path, caplog):
    region = get_region("US915")
    assert "experimental" in region.caveat and "15.249" in region.caveat
    assert "500 kHz" in region.caveat and "fixed_bw = 500" in region.caveat
    caplog.set_level(logging.WARNING, logger=OPTIONS_LOGGER)
    _load(tmp_path, "tx", "[radio]\nregion = 'US915'\n")
    (warning,) = _warnings(caplog)
    assert warning.startswith("radio.region US915: experimental")
    caplog.clear()
    _load(tmp_path, "tx", "")  # EU868 has no caveat
    assert _warnings(caplog) == []
    assert [name for name, r in REGIONS.items() if r.caveat] == ["US915"]


def test_us915_meets_at_bw500_within_the_dwell_budget(tmp_path):
    region = get_region("US915")
    rendezvous = region.rendezvous()
    assert rendezvous.bw_hz == 500_000
    band = region.check(rendezvous)
    assert time_on_air_for(rendezvous, 32) < band.max_dwell_s  # a CHALLENGE fits 400 ms
    assert rendezvous.tx_power_dbm == 17
    # Fixed BW500 in the transmitter's config: no narrower setting anywhere in the link.
    config = _load(
        tmp_path, "tx", "[radio]\nregion = 'US915'\nmode = 'fixed'\nfixed_sf = 7\nfixed_bw = 500\n"
    )
    link = link_config(config, "tx")
    assert link.rendezvous().bw_hz == 500_000
    assert link.fixed_settings().bw_hz == 500_000


def test_airtime_shows_the_us915_caveat_and_the_bands_note(capsys):
    from p1lora.tools.cli import main

    assert main(["airtime", "--payload", "40", "--region", "US915"]) == 0
    out, err = capsys.readouterr()
    assert "15.247(a)(1)(i) occupancy rule of a hopping system" in out
    assert "WARNING p1lora.tools.airtime_command: US915: experimental" in err
    assert main(["airtime", "--payload", "40"]) == 0
    assert "WARNING" not in capsys.readouterr().err
