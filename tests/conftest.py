"""Shared fixtures. Test data lives in tests/data; nothing here reads ../shared at run time."""

from __future__ import annotations

from pathlib import Path

import pytest

# A real Mosquitto broker on a free loopback port (mqtt_broker, mqtt_broker_session, ...).
pytest_plugins = ["tests.mqtt_broker"]

DATA = Path(__file__).resolve().parent / "data"
TELEGRAMS = DATA / "telegrams"


@pytest.fixture
def telegram_dir() -> Path:
    return TELEGRAMS


def telegram_bytes(name: str) -> bytes:
    """A fixture telegram, byte-exact (CRLF kept)."""
    return (TELEGRAMS / name).read_bytes()
