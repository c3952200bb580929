"""`open_radio`'s backend table: each backend takes its own typed options object."""

from __future__ import annotations

import pytest

from p1lora.common.clock import VirtualClock
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.factory import BACKENDS, ChipOptions, SimRadioOptions, open_radio


def test_the_table_lists_each_backend_with_its_options() -> None:
    assert list(BACKENDS) == ["sx127x", "sim"]
    assert BACKENDS["sx127x"].options is ChipOptions
    assert BACKENDS["sim"].options is SimRadioOptions


def test_a_sim_radio_opens_from_its_options_object() -> None:
    channel = SimChannel(VirtualClock())
    radio = open_radio("sim", SimRadioOptions(channel=channel, name="typed", board="dragino"))
    assert channel.chip("typed").antenna == "pa_boost"
    radio.close()
    assert channel.radio_names == []


def test_options_of_another_backend_are_refused() -> None:
    with pytest.raises(TypeError, match="SimRadioOptions"):
        open_radio("sim", ChipOptions(name="wrong"))
    with pytest.raises(TypeError, match="ChipOptions"):
        open_radio("sx127x", SimRadioOptions(name="wrong"))


def test_a_setting_the_backend_does_not_take_is_refused() -> None:
    with pytest.raises(TypeError):
        open_radio("sim", channel=SimChannel(VirtualClock()), spi_speed_hz=1_000_000)
    with pytest.raises(TypeError):
        open_radio("sim", SimRadioOptions(), name="both ways at once")
