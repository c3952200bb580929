"""The simulated channel's default port comes from the key's network id: two pairs with
different keys on one machine (two demos, two test runs) never hear each other (issue 13;
they counted each other's frames as `wrong_network`). Real time on loopback UDP."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from p1lora.common.crypto import LinkKeys
from p1lora.hardware.radio import FrameReceived, RadioEvent
from p1lora.hardware.udp_channel import (
    DEFAULT_SIM_PORT,
    NETWORK_PORT_BASE,
    NETWORK_PORT_SPAN,
    SIM_PORT_ENV,
    UdpSimOptions,
    default_sim_port,
    network_port,
)
from p1lora.service.config import load_config
from p1lora.service.options import sim_options
from p1lora.tools.config_command import table_for

from .helpers_radio import eventually, wait_for
from .test_udp_channel import Node


def _payloads(events: list[RadioEvent]) -> list[bytes]:
    return [e.frame.payload for e in events if isinstance(e, FrameReceived)]


def _is(payload: bytes) -> Callable[[RadioEvent], bool]:
    return lambda e: isinstance(e, FrameReceived) and e.frame.payload == payload


class Daemon(Node):
    """One process's radio on the loopback channel, at the default port for its key."""

    def __init__(self, name: str, network_id: bytes) -> None:
        super().__init__(None, name, network_id=network_id)  # port None: the default

    def heard(self) -> list[bytes]:
        return _payloads(self.radio.poll())


def _two_network_ids() -> tuple[bytes, bytes]:
    """Network ids of two fresh random keys (a fresh pair per run: two runs of this test on
    one machine must not meet either) whose ports differ (1 pair in 8192 shares one)."""
    while True:
        a, b = (LinkKeys(secrets.token_bytes(32)).network_id for _ in range(2))
        if network_port(a) != network_port(b):
            return a, b


def test_the_default_port_follows_the_network_id(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIM_PORT_ENV, raising=False)
    assert network_port(b"\x00\x00") == NETWORK_PORT_BASE
    assert network_port(b"\x1f\xff") == NETWORK_PORT_BASE + NETWORK_PORT_SPAN - 1
    assert network_port(b"\xa0\x01") == NETWORK_PORT_BASE + 1  # 0xa001 % 8192
    assert NETWORK_PORT_BASE + NETWORK_PORT_SPAN <= 32_768  # below Linux's ephemeral ports
    assert default_sim_port(b"\x12\x34") == network_port(b"\x12\x34")
    assert default_sim_port() == DEFAULT_SIM_PORT  # no key: the fixed port
    assert UdpSimOptions(network_id=b"\x12\x34", port=40_001).resolved_port() == 40_001
    monkeypatch.setenv(SIM_PORT_ENV, "40002")  # an explicit choice wins over the key
    assert default_sim_port(b"\x12\x34") == 40_002


def test_the_daemons_sim_options_take_the_network_id(tmp_path: Path) -> None:
    path = tmp_path / "rx.toml"
    path.write_text("[radio]\nbackend = 'sim'\n")
    config = load_config(table_for("rx"), None, {}, path=path)
    assert sim_options(config, b"\x12\x34").resolved_port() == network_port(b"\x12\x34")
    path.write_text("[radio]\nbackend = 'sim'\n[sim]\nport = 40003\n")
    config = load_config(table_for("rx"), None, {}, path=path)
    assert sim_options(config, b"\x12\x34").resolved_port() == 40_003


def test_two_pairs_with_different_keys_never_hear_each_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(SIM_PORT_ENV, raising=False)
    first, second = _two_network_ids()
    made: list[Daemon] = []
    try:
        a_tx, a_rx, b_tx, b_rx = (
            Daemon(name, nid)
            for name, nid in (("a-tx", first), ("a-rx", first), ("b-tx", second), ("b-rx", second))
        )
        made += [a_tx, a_rx, b_tx, b_rx]
        assert a_tx.udp.port == network_port(first) != b_tx.udp.port == network_port(second)
        eventually(lambda: a_tx.udp.member_count == 1 and b_tx.udp.member_count == 1, 5)
        a_tx.radio.send(b"pair a")
        b_tx.radio.send(b"pair b")
        heard_a = _payloads(wait_for(a_rx.radio, _is(b"pair a")))
        heard_b = _payloads(wait_for(b_rx.radio, _is(b"pair b")))
        time.sleep(0.5)  # anything crossing over would have arrived by now
        assert b"pair b" not in heard_a + a_rx.heard() + a_tx.heard()
        assert b"pair a" not in heard_b + b_rx.heard() + b_tx.heard()
    finally:
        for daemon in made:
            daemon.close()
