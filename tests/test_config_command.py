"""`p1-lora config check FILE`: validate without starting, print the effective config."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from p1lora.service.keyfile import write_key_file
from p1lora.tools.cli import main
from p1lora.tools.config_command import infer_role

SECRET = "correct-horse-battery-staple"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["config", "check", *argv])
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


@pytest.fixture
def key(tmp_path) -> Path:
    path = tmp_path / "key"
    write_key_file(path, bytes(32))
    return path


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_valid_receiver_config(tmp_path, key, capsys):
    path = _write(
        tmp_path,
        "rx.toml",
        f"[mqtt]\nhost = 'broker.lan'\nusername = 'ha'\npassword = '{SECRET}'\n"
        f"[radio]\nboard = 'dragino'\n[link]\nkey_file = '{key}'\n",
    )
    code, out, err = run(capsys, str(path), "--ignore-env")
    assert code == 0
    assert out.rstrip().endswith(f"# OK: {path} is a valid p1-lora-rx configuration")
    assert 'host             = "broker.lan"  # file' in out
    assert 'password         = "<redacted>"  # file' in out
    assert "# port is not set" in out
    assert SECRET not in out + err
    assert "network id" in err  # the key file was read and checked


def test_valid_transmitter_config_from_the_name(tmp_path, key, capsys):
    path = _write(
        tmp_path, "p1-lora-tx.toml", f"[radio]\nbackend = 'sim'\n[link]\nkey_file = '{key}'\n"
    )
    code, out, err = run(capsys, str(path), "--ignore-env")
    # No [serial]/[meter] section: the role comes from the name, and a source is required.
    assert code == 2
    assert "as a p1-lora-tx config" in err
    assert "serial.port: no P1 source" in err
    assert "is NOT a valid p1-lora-tx configuration" in err
    assert out == ""


def test_invalid_values_are_listed_with_their_keys(tmp_path, capsys):
    path = _write(
        tmp_path, "home.toml", "[mqtt]\nport = 70000\nprot = 1\n[radio]\nbackend = 'sim'\n"
    )
    code, out, err = run(capsys, str(path), "--ignore-env")
    assert code == 2
    assert out == ""
    assert f"{path}: mqtt.port: 70000 is not a port number (1-65535)" in err
    assert f"{path}: unknown key mqtt.prot; did you mean mqtt.port?" in err


def test_bad_toml(tmp_path, capsys):
    path = _write(tmp_path, "rx.toml", "[mqtt\nhost = 1\n")
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert "is not valid TOML" in err
    assert "line 1" in err


def test_key_file_problems_make_it_invalid(tmp_path, key, capsys):
    key.chmod(0o644)
    path = _write(tmp_path, "rx.toml", f"[radio]\nbackend = 'sim'\n[link]\nkey_file = '{key}'\n")
    code, _, err = run(capsys, str(path), "--ignore-env")
    assert code == 2
    assert f"chmod 600 {key}" in err
    missing = _write(tmp_path, "rx2.toml", "[radio]\nbackend = 'sim'\n[link]\nkey_file = 'nokey'\n")
    code, _, err = run(capsys, str(missing), "--role", "rx", "--ignore-env")
    assert code == 2
    assert "p1-lora keygen --out" in err


def test_missing_key_file_setting_is_only_a_warning(tmp_path, capsys):
    path = _write(tmp_path, "rx.toml", "[radio]\nbackend = 'sim'\n")
    code, _out, err = run(capsys, str(path), "--ignore-env")
    assert code == 0
    assert "link.key_file is not set" in err
    assert "LoadCredential" in err


def test_files_the_config_names_are_checked(tmp_path, key, capsys):
    path = _write(
        tmp_path,
        "tx.toml",
        f"[meter]\nsource = '{tmp_path / 'capture.txt'}'\n[radio]\nbackend = 'sim'\n"
        f"[link]\nkey_file = '{key}'\n",
    )
    code, _, err = run(capsys, str(path), "--ignore-env")
    assert code == 2
    assert "meter.source: cannot read capture" in err
    rx = _write(
        tmp_path,
        "rx.toml",
        f"[mqtt]\nca_file = '{tmp_path / 'ca.pem'}'\n[radio]\nbackend = 'sim'\n"
        f"[link]\nkey_file = '{key}'\n",
    )
    code, _, err = run(capsys, str(rx), "--ignore-env")
    assert code == 2
    assert "mqtt.ca_file" in err and "does not exist" in err


def test_environment_is_applied_unless_ignored(tmp_path, key, capsys, monkeypatch):
    path = _write(tmp_path, "rx.toml", f"[radio]\nbackend = 'sim'\n[link]\nkey_file = '{key}'\n")
    monkeypatch.setenv("P1LORA_MQTT_PORT", "99999")
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert "mqtt.port (from $P1LORA_MQTT_PORT): 99999 is not a port number" in err
    code, out, _ = run(capsys, str(path), "--ignore-env")
    assert code == 0
    monkeypatch.setenv("P1LORA_MQTT_PORT", "1884")
    code, out, _ = run(capsys, str(path))
    assert code == 0
    assert "port             = 1884  # env P1LORA_MQTT_PORT" in out


def test_role_cannot_be_told(tmp_path, capsys):
    path = _write(tmp_path, "p1.toml", "[radio]\nbackend = 'sim'\n")
    code, _, err = run(capsys, str(path))
    assert code == 2
    assert "give --role tx or --role rx" in err
    mixed = _write(tmp_path, "both.toml", "[serial]\nport = 'x'\n[mqtt]\nhost = 'y'\n")
    code, _, err = run(capsys, str(mixed))
    assert code == 2
    assert "give --role" in err
    code, _, err = run(capsys, str(mixed), "--role", "rx")
    assert code == 2
    assert "unknown section [serial]" in err


@pytest.mark.parametrize(
    ("name", "document", "role"),
    [
        ("x.toml", {"serial": {}}, "tx"),
        ("x.toml", {"meter": {}, "radio": {}}, "tx"),
        ("x.toml", {"raw": {}}, "rx"),
        ("tx.toml", {"mqtt": {}}, "rx"),  # the sections decide over the name
        ("rx.toml", {"radio": {}}, "rx"),
        ("p1-lora-tx.toml", None, "tx"),
        ("closet_tx.toml", {}, "tx"),
        ("txrx.toml", {}, None),
        ("matrix.toml", {}, None),
    ],
)
def test_role_inference(name, document, role):
    assert infer_role(Path(name), document) == role


def test_missing_file(tmp_path, capsys):
    code, _, err = run(capsys, str(tmp_path / "nope.toml"))
    assert code == 2
    assert "does not exist" in err


def test_a_device_or_directory_is_not_a_config_file(tmp_path, capsys):
    code, out, err = run(capsys, "/dev/null", "--role", "rx")
    assert (code, out) == (2, "")
    assert "/dev/null is not a regular file" in err
    assert "does not exist" not in err
    code, _, err = run(capsys, str(tmp_path), "--role", "rx")
    assert code == 2
    assert "is a directory" in err


def test_example_configs_check_out_apart_from_the_key(capsys):
    root = Path(__file__).resolve().parent.parent / "deploy" / "config"
    for role in ("tx", "rx"):
        code, _, err = run(capsys, str(root / f"{role}.toml"), "--ignore-env")
        problems = [line for line in err.splitlines() if line.startswith("ERROR")]
        assert all("link.key_file" in line or "NOT a valid" in line for line in problems), err
        assert code in (0, 2)


@pytest.mark.parametrize("role", ["tx", "rx"])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("bogus = 1\n", 'key "bogus" is outside any section'),
        ("[bogus]\nx = 1\n", "unknown section [bogus]"),
        ("[[bogus]]\nx = 1\n", "unknown section [[bogus]]"),
        ("[radio]\nbogus = 1\n", "unknown key radio.bogus"),
        ("radio = 1\n", "radio must be a section ([radio]), not a value"),
    ],
)
def test_stray_keys_exit_2_in_config_check_and_in_the_daemons(
    tmp_path, capsys, role, text, expected
):
    """A stray key is a configuration error (exit code 2, which the systemd unit does not
    restart on), in `config check` and at the daemon's start alike; it used to crash."""
    from p1lora.receiver.cli import main as rx_main
    from p1lora.transmitter.cli import main as tx_main

    path = _write(tmp_path, "odd.toml", text)
    code, out, err = run(capsys, str(path), "--role", role, "--ignore-env")
    assert (code, out) == (2, "")
    assert expected in err
    assert "Traceback" not in err
    daemon = {"tx": tx_main, "rx": rx_main}[role]
    assert daemon(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"configuration error: {expected}" in err
    assert "Traceback" not in err


def test_a_world_readable_config_holding_the_password_is_warned_about(tmp_path, key, capsys):
    """The same warning p1-lora-rx gives at start (its own function is reused)."""
    text = (
        f"[mqtt]\nhost = 'b'\nusername = 'u'\npassword = '{SECRET}'\n[radio]\nbackend = 'sim'\n"
        f"[link]\nkey_file = '{key}'\n"
    )
    path = _write(tmp_path, "rxp.toml", text)
    path.chmod(0o644)
    code, out, err = run(capsys, str(path), "--ignore-env")
    assert code == 0  # a warning, as in the daemon
    assert out.rstrip().endswith("is a valid p1-lora-rx configuration")
    assert f"config file {path} holds the MQTT password and is readable by everyone" in err
    assert f"sudo chown root:p1lora {path}" in err
    assert SECRET not in out + err
    path.chmod(0o640)
    code, _, err = run(capsys, str(path), "--ignore-env")
    assert code == 0
    assert "readable by everyone" not in err


def test_the_password_file_is_read_as_the_daemon_reads_it(tmp_path, key, capsys):
    secret_file = tmp_path / "mqtt-password"
    secret_file.write_text(f"{SECRET}\n")
    secret_file.chmod(0o644)
    text = (
        f"[mqtt]\nusername = 'u'\npassword_file = '{secret_file}'\n[radio]\nbackend = 'sim'\n"
        f"[link]\nkey_file = '{key}'\n"
    )
    path = _write(tmp_path, "rx.toml", text)
    path.chmod(0o600)
    code, out, err = run(capsys, str(path), "--ignore-env")
    assert code == 0
    assert f"MQTT password file {secret_file} is readable by everyone" in err
    assert SECRET not in out + err
    secret_file.write_text("\n")
    secret_file.chmod(0o600)
    code, out, err = run(capsys, str(path), "--ignore-env")
    assert (code, out) == (2, "")
    assert f"mqtt.password_file: {secret_file} does not hold a password" in err
    assert "readable by everyone" not in err


def test_the_password_credential_is_looked_up_only_in_the_environment_applied(
    tmp_path, key, capsys, monkeypatch
):
    """An empty systemd credential is an error the daemon would hit; with --ignore-env the
    check must not read CREDENTIALS_DIRECTORY from this shell's environment either."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "p1lora-mqtt-password").write_text("\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    text = f"[mqtt]\nusername = 'u'\n[radio]\nbackend = 'sim'\n[link]\nkey_file = '{key}'\n"
    path = _write(tmp_path, "rx.toml", text)
    path.chmod(0o600)
    code, out, err = run(capsys, str(path), "--role", "rx")
    assert (code, out) == (2, ""), err
    assert "does not hold a password" in err
    code, out, err = run(capsys, str(path), "--role", "rx", "--ignore-env")
    assert code == 0, err
    assert "does not hold a password" not in err
