"""Naming a sub-band instead of a frequency: the channel plan, the config, the link's choice."""

from __future__ import annotations

import itertools
import json
import logging
import re
from pathlib import Path

import pytest

from p1lora.common.channel_plan import Channel, channels, pick, plan
from p1lora.common.link import LinkConfig
from p1lora.common.link.tuning import candidate_table
from p1lora.common.regions import REGIONS, RegionError, get_region
from p1lora.service.keyfile import write_key_file
from p1lora.tools.cli import main
from p1lora.tools.sim import SimOptions, Simulation

EU = get_region("EU868")
H14 = EU.named_sub_band("868.0-868.6")


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """`main` points the root logger at captured stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# ------------------------------------------------------------------------------ the plan


def test_868_0_to_868_6_holds_one_bw500_two_bw250_and_four_bw125_channels():
    assert channels(H14, 500_000) == (Channel(868_300_000, 500_000),)
    assert channels(H14, 250_000) == (
        Channel(868_168_750, 250_000),
        Channel(868_431_250, 250_000),
    )
    assert [c.centre_hz for c in channels(H14, 125_000)] == [
        868_103_125,
        868_234_375,
        868_365_625,
        868_496_875,
    ]


def test_every_channel_keeps_the_guard_and_channels_never_overlap():
    for region in REGIONS.values():
        for band in region.sub_bands:
            for bw, found in plan(band).items():
                assert found == tuple(sorted(found))  # deterministic: lowest first
                for channel in found:
                    assert band.low_hz + band.guard_hz <= channel.low_hz
                    assert channel.high_hz <= band.high_hz - band.guard_hz
                    assert band.contains(channel.centre_hz, bw)
                for lower, upper in itertools.pairwise(found):
                    assert lower.high_hz <= upper.low_hz


def test_the_10_percent_band_holds_one_bw250_or_two_bw125_channels():
    band = EU.named_sub_band("869.4-869.65")
    assert channels(band, 250_000) == (Channel(869_525_000, 250_000),)
    assert len(channels(band, 125_000)) == 2
    assert channels(band, 500_000) == ()  # wider than the band allows


def test_pick_spreads_links_by_offset_modulo_the_channel_count():
    picked = [pick(H14, 125_000, offset) for offset in range(6)]
    assert picked[:4] == list(channels(H14, 125_000))
    assert picked[4:] == picked[:2]
    assert pick(H14, 500_000, 3) == Channel(868_300_000, 500_000)
    assert pick(EU.named_sub_band("h1.6"), 500_000) is None


@pytest.mark.parametrize("text", ["868.0-868.6", "868-868.6", "h1.4", "H1.4 868.0-868.6"])
def test_a_sub_band_is_named_as_airtime_prints_it(text):
    assert EU.named_sub_band(text) is H14


def test_an_unknown_sub_band_lists_the_region_s():
    with pytest.raises(RegionError, match=r"'868.0-869' is not a EU868 sub-band.*868.0-868.6"):
        EU.named_sub_band("868.0-869")


# ------------------------------------------------------------------------------ the link config


def test_a_named_sub_band_offers_every_bandwidth_that_fits():
    config = LinkConfig(sub_band_name="868.0-868.6")
    assert config.sub_band() is H14
    assert config.channel_hz == 868_103_125  # the rendezvous: the plan's BW125 channel
    assert config.rendezvous().frequency_hz == 868_103_125
    assert config.settings(7, 500_000).frequency_hz == 868_300_000
    assert config.settings(8, 250_000).frequency_hz == 868_168_750
    bandwidths = {c.bw_hz for c in candidate_table(config)}
    assert bandwidths == {125_000, 250_000, 500_000}
    for candidate in candidate_table(config):
        EU.check(config.settings(candidate.sf, candidate.bw_hz))


def test_a_pinned_frequency_stays_pinned():
    config = LinkConfig(frequency_hz=868_100_000)
    assert {c.bw_hz for c in candidate_table(config)} == {125_000}
    assert {config.settings(c.sf, c.bw_hz).frequency_hz for c in candidate_table(config)} == {
        868_100_000
    }


def test_a_sub_band_and_a_frequency_together_are_refused():
    with pytest.raises(ValueError, match="not both"):
        LinkConfig(frequency_hz=868_100_000, sub_band_name="868.0-868.6")


def test_a_0_1_percent_sub_band_is_refused_by_name_too():
    with pytest.raises(RegionError, match="cannot run there"):
        LinkConfig(sub_band_name="863.0-865.0")


# ------------------------------------------------------------------------------ the daemons' config


def _check(tmp_path: Path, capsys: pytest.CaptureFixture[str], radio: str) -> tuple[int, str]:
    key = tmp_path / "key"
    write_key_file(key, bytes(32))
    path = tmp_path / "rx.toml"
    path.write_text(f"[radio]\nbackend = 'sim'\n{radio}[link]\nkey_file = '{key}'\n")
    code = main(["config", "check", str(path), "--ignore-env"])
    out, err = capsys.readouterr()
    return code, out + err


def test_radio_channel_names_the_sub_band(tmp_path, capsys):
    code, text = _check(tmp_path, capsys, "channel = '868.0-868.6'\n")
    assert code == 0, text
    assert re.search(r'channel += "868.0-868.6"  # file', text), text


@pytest.mark.parametrize(
    ("radio", "message"),
    [
        ("channel = '868.0-869'\n", "radio.channel: '868.0-869' names no sub-band"),
        ("channel = '433.05-434.79'\n", "radio.channel: '433.05-434.79' is not a EU868 sub-band"),
        ("channel = 'h1.2'\n", "cannot run there"),
        ("channel = 'h1.4'\nfrequency = 868.1\n", "are both set"),
    ],
)
def test_a_bad_radio_channel_exits_2(tmp_path, capsys, radio, message):
    code, text = _check(tmp_path, capsys, radio)
    assert code == 2
    assert message in text


# ------------------------------------------------------------------------------ the simulator


def test_sim_channel_and_frequency_are_exclusive(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["sim", "--channel", "h1.4", "--frequency", "868.1"])
    assert exc.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_sim_rejects_an_unknown_sub_band(capsys):
    assert main(["sim", "--channel", "868-870"]) == 2
    assert "is not a EU868 sub-band" in capsys.readouterr().err


@pytest.mark.parametrize(("loss", "sfs"), [(100.0, {7}), (131.0, {8, 9, 10})])
def test_the_link_chooses_a_wide_channel_inside_868_0_to_868_6(loss, sfs):
    """Virtual time: the transmitter leaves the BW125 rendezvous (868.103 MHz) for a wide
    channel (BW500 at 868.3 MHz; at a long path with a slower SF, where SF+1/BW500 is about as
    sensitive as SF/BW250 and faster) and stays legal (both budgets count every frame)."""
    metrics = Simulation(
        SimOptions(duration_s=180.0, path_loss_db=loss, channel="868.0-868.6", seed=1)
    ).run()
    assert metrics.final_sf in sfs
    assert metrics.final_bw in (250.0, 500.0)
    assert metrics.delivered_corrupt == 0
    assert not metrics.budget_exceeded
    assert metrics.convergence_s is not None and metrics.convergence_s < 60


def test_sim_json_reports_the_named_sub_band(capsys):
    assert main(["sim", "--json", "--duration", "60", "--channel", "h1.4"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document["sub_band"] == "h1.4 868.0-868.6"
    assert document["duty_cycle_limit"] == 0.01
