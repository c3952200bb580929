"""`p1-lora keygen --out FILE`: a new private key file and the config lines that use it."""

from __future__ import annotations

import argparse
import logging
import re
import stat
import subprocess
import sys

import pytest

from p1lora.receiver.options import RX_OPTIONS
from p1lora.service.config import load_config
from p1lora.service.keyfile import load_key, read_key_file
from p1lora.tools.cli import main
from p1lora.transmitter.options import TX_OPTIONS


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["keygen", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def _restore_root_logging():
    """`main` points the root logger at this test's captured stderr; put it back afterwards so
    that later tests' threads do not log into a closed stream."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def _blocks(out: str) -> dict[str, str]:
    """The TOML snippets keygen printed, by the config file they are meant for."""
    found = re.findall(r"# in (\S+) \(p1-lora-(tx|rx)\):\n(\[link\]\nkey_file = .*\n)", out)
    return {role: snippet for _, role, snippet in found}


def test_writes_a_private_key_file_and_prints_both_configs(tmp_path, capsys):
    path = tmp_path / "key"
    code, out, _ = run(capsys, "--out", str(path))
    assert code == 0
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    key = read_key_file(path)
    assert f"network id {key.network_id}" in out
    assert key.material.hex() not in out  # the key is copied as a file, never printed
    assert path.read_text().startswith("# p1-lora pre-shared key, created ")
    assert f"LoadCredential=p1lora-key:{path}" in out
    assert set(_blocks(out)) == {"tx", "rx"}


def test_printed_lines_load_in_both_daemons(tmp_path, capsys):
    path = tmp_path / "shared key"  # a space survives the quoting
    code, out, _ = run(capsys, "--out", str(path))
    assert code == 0
    expected = read_key_file(path)
    extra = {
        "tx": "[meter]\nsource = 'virtual'\n[radio]\nbackend = 'sim'\n",
        "rx": "[radio]\nbackend = 'sim'\n",
    }
    for role, table in (("tx", TX_OPTIONS), ("rx", RX_OPTIONS)):
        config_file = tmp_path / "elsewhere" / f"{role}.toml"
        config_file.parent.mkdir(exist_ok=True)
        config_file.write_text(_blocks(out)[role] + extra[role])
        config = load_config(table, None, {}, path=config_file)
        key = load_key(config.opt_path("link.key_file"), environ={})
        assert key.material == expected.material
        assert key.network_id == expected.network_id
    # The command-line form names the same file.
    flag = re.search(r"--key-file (.+)\n", out)
    assert flag is not None and flag.group(1) == str(path)


def test_refuses_to_overwrite_without_force(tmp_path, capsys):
    path = tmp_path / "key"
    assert run(capsys, "--out", str(path))[0] == 0
    before = path.read_bytes()
    code, out, err = run(capsys, "--out", str(path))
    assert code == 2
    assert out == ""
    assert "already exists; refusing to replace a key" in err
    assert "--force" in err
    assert path.read_bytes() == before
    code, _, _ = run(capsys, "--out", str(path), "--force")
    assert code == 0
    assert path.read_bytes() != before
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_bad_destinations(tmp_path, capsys):
    code, _, err = run(capsys, "--out", str(tmp_path / "no" / "such" / "dir" / "key"))
    assert code == 2
    assert "does not exist" in err
    code, _, err = run(capsys, "--out", str(tmp_path))
    assert code == 2
    assert "is a directory" in err
    dangling = tmp_path / "link"
    dangling.symlink_to(tmp_path / "target")
    code, _, err = run(capsys, "--out", str(dangling))
    assert code == 2  # a dangling symlink is not silently followed
    assert not (tmp_path / "target").exists()


def test_out_is_required(capsys):
    try:
        main(["keygen"])
    except SystemExit as exc:
        assert exc.code == 2
    else:  # pragma: no cover - argparse always exits here
        raise AssertionError("keygen without --out did not fail")
    assert "--out" in capsys.readouterr().err


def test_help_as_a_real_command():
    result = subprocess.run(
        [sys.executable, "-m", "p1lora.tools.cli", "keygen", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "--out FILE" in result.stdout
    assert "mode 0600" in result.stdout


def test_parser_describes_exit_codes():
    from p1lora.tools import keygen_command

    parser = argparse.ArgumentParser()
    keygen_command.configure(parser)
    assert "Exit codes: 0 written, 1 the file could not be written, 2 bad arguments" in (
        parser.format_help().replace("\n", " ")
    )
