"""Shared fixtures. Test data lives in tests/data; nothing here reads ../shared at run time."""

from __future__ import annotations

import logging
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


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """Commands under test call `setup_logging`, which points the root logger at the stderr of
    that moment (pytest's capture); restore it so later tests' threads never log into a closed
    stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
