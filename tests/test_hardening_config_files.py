"""Issue 12 item 7 and the key-file info item: a wrong config or key path is a clear error.

A config error is exit 2 and systemd does not restart the unit for it; anything else (a
RecursionError, a start blocked on a FIFO, memory filled from /dev/zero) makes systemd restart
it for ever. Every case here must end in `ConfigError`/`KeyFileError` within seconds.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from p1lora.receiver.options import RX_OPTIONS
from p1lora.service.config import ConfigError, load_config
from p1lora.service.keyfile import KeyFileError, read_key_file
from p1lora.tools.cli import main as tools_main
from p1lora.transmitter.cli import main as tx_main
from tests.helpers_hardening import fifo_at, returns_within

KEY_HEX = bytes(range(32)).hex()


def _config_problems(path: Path) -> str:
    with pytest.raises(ConfigError) as info:
        returns_within(lambda: load_config(RX_OPTIONS, None, {}, path=path))
    return str(info.value)


@pytest.mark.parametrize(
    "document",
    [
        "a = " + "[" * 3000 + "]" * 3000,
        "a = " + "{b = " * 3000 + "1" + "}" * 3000,
    ],
)
def test_a_deeply_nested_toml_is_a_config_error(tmp_path, document):
    """Before: tomllib's RecursionError escaped, the daemon exited 1 and systemd restarted it."""
    path = tmp_path / "rx.toml"
    path.write_text(document)
    assert "is not valid TOML" in _config_problems(path)


def test_a_deeply_nested_toml_makes_the_daemon_exit_2(tmp_path, capsys):
    path = tmp_path / "tx.toml"
    path.write_text("a = " + "[" * 3000 + "]" * 3000)
    assert tx_main(["--config", str(path)]) == 2
    assert "not valid TOML" in capsys.readouterr().err


def test_a_fifo_as_the_config_is_a_config_error_not_a_hang(tmp_path):
    with fifo_at(tmp_path / "rx.toml") as path:
        assert "named pipe" in _config_problems(path)


def test_dev_zero_as_the_config_is_a_config_error_not_an_endless_read():
    assert "character device" in _config_problems(Path("/dev/zero"))


def test_a_key_file_fifo_is_an_error_not_a_hang(tmp_path):
    with fifo_at(tmp_path / "key") as path, pytest.raises(KeyFileError, match="named pipe"):
        returns_within(lambda: read_key_file(path))


def test_dev_zero_as_the_key_file_is_an_error():
    with pytest.raises(KeyFileError, match="character device"):
        returns_within(lambda: read_key_file(Path("/dev/zero"), check_permissions=False))


def _key(tmp_path: Path) -> Path:
    path = tmp_path / "key"
    path.write_text(KEY_HEX + "\n")
    path.chmod(0o600)
    return path


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_key_file_owned_by_another_user_is_refused(tmp_path):
    """Someone else's key file could be replaced by them at any time: not our secret."""
    path = _key(tmp_path)
    os.chown(path, 4242, 4242)
    with pytest.raises(KeyFileError, match=r"owned by user 4242.*chown"):
        read_key_file(path)


def test_a_key_file_in_a_world_writable_directory_is_warned_about(tmp_path, caplog):
    """Anyone who may write the directory may replace the key file (rename over it)."""
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(0o777)
    path = _key(directory)
    with caplog.at_level(logging.WARNING, logger="p1lora.service.keyfile"):
        read_key_file(path)
    assert "writable by others" in caplog.text
    assert KEY_HEX not in caplog.text


def test_a_key_file_in_a_private_or_sticky_directory_is_not_warned_about(tmp_path, caplog):
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # like /tmp: others cannot rename or delete our file
    with caplog.at_level(logging.WARNING, logger="p1lora.service.keyfile"):
        read_key_file(_key(tmp_path))
        read_key_file(_key(sticky))
    assert caplog.text == ""


def test_config_check_names_a_deeply_nested_toml_instead_of_a_traceback(tmp_path, capsys):
    """Before: `p1-lora config check` died with RecursionError while guessing the role."""
    path = tmp_path / "rx.toml"
    path.write_text("a = " + "[" * 3000 + "]" * 3000)
    assert tools_main(["config", "check", str(path)]) == 2
    assert "nested too deeply" in capsys.readouterr().err
