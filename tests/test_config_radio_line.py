"""The start-up "radio:" line says where the link starts: the rendezvous, or the last good
setting a restart resumes at (it used to name the rendezvous even when resuming)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from p1lora.common.link.persist import RxPersistentState
from p1lora.common.radio_types import RadioSettings
from p1lora.receiver.cli import SPEC as RX_SPEC
from p1lora.receiver.cli import build as build_rx
from p1lora.receiver.options import RX_OPTIONS
from p1lora.service.config import load_config
from p1lora.service.daemon import DaemonContext, log_radio_start, start_setting_text
from p1lora.service.keyfile import write_key_file
from p1lora.service.options import link_config
from p1lora.service.state_store import StateStore
from tests.helpers_daemons import free_tcp_port, free_udp_port


def _config(tmp_path: Path):
    key = tmp_path / "key"
    write_key_file(key, bytes(32))
    path = tmp_path / "rx.toml"
    path.write_text(
        f"[mqtt]\nenabled = false\n[raw]\nport = {free_tcp_port()}\nhost = '127.0.0.1'\n"
        f"[radio]\nbackend = 'sim'\n[sim]\nport = {free_udp_port()}\n"
        f"[link]\nkey_file = '{key}'\n[state]\ndir = '{tmp_path / 'state'}'\n"
    )
    return load_config(RX_OPTIONS, None, {}, path=path)


def _radio_line(config, caplog) -> str:
    context = DaemonContext(config=config, spec=RX_SPEC)
    daemon = build_rx(context)
    try:
        assert context.link is not None
        with caplog.at_level(logging.INFO, logger="p1lora.service.daemon"):
            caplog.clear()
            log_radio_start(context.link, daemon.runtime)
    finally:
        context.link.close()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("radio: ")]
    assert len(lines) == 1, caplog.text
    return lines[0]


def test_the_radio_line_names_the_rendezvous_or_the_resumed_setting(tmp_path, caplog):
    config = _config(tmp_path)
    fresh = _radio_line(config, caplog)
    assert fresh.startswith("radio: emulated SX1276 on the simulated channel")
    assert "EU868 869.525 MHz in sub-band" in fresh
    assert fresh.endswith(", rendezvous SF12/BW125")
    assert "resuming" not in fresh

    channel = link_config(config, "rx").channel_hz
    saved = RadioSettings(frequency_hz=channel, sf=7, bw_hz=250_000, cr=5, tx_power_dbm=14)
    assert StateStore(tmp_path / "state", role="rx").save_link_state(RxPersistentState(saved))
    resumed = _radio_line(config, caplog)
    assert resumed.endswith(", resuming at SF7/BW250 (last good setting; rendezvous SF12/BW125)"), (
        resumed
    )


@pytest.mark.parametrize(
    ("sf", "bw_hz", "power", "expected"),
    [
        (12, 125_000, 14, "rendezvous SF12/BW125"),
        (12, 125_000, 2, "rendezvous SF12/BW125"),  # only the power differs: still there
        (9, 125_000, 14, "resuming at SF9/BW125 (last good setting; rendezvous SF12/BW125)"),
    ],
)
def test_start_setting_text(tmp_path, sf, bw_hz, power, expected):
    link = link_config(_config(tmp_path), "rx")
    start = RadioSettings(link.channel_hz, sf, bw_hz, 5, power)
    assert start_setting_text(link, start) == expected
