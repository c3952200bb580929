"""The pre-shared key file: format, permissions, systemd credentials, and never showing the key."""

from __future__ import annotations

import os
import pickle
import stat

import pytest

from p1lora.common.crypto import LinkKeys
from p1lora.service.keyfile import (
    KeyFileError,
    PresharedKey,
    format_key_file,
    generate_key,
    load_key,
    parse_key_text,
    read_key_file,
    write_key_file,
)

KEY = bytes(range(32))
KEY_HEX = KEY.hex()


def _key_file(tmp_path, text: str, mode: int = 0o600, name: str = "key"):
    path = tmp_path / name
    path.write_text(text)
    path.chmod(mode)
    return path


def test_reads_a_key_with_comment_lines_and_blank_lines(tmp_path):
    path = _key_file(
        tmp_path, f"# made by p1-lora keygen\n#   network id ...\n\n  {KEY_HEX.upper()}  \n\n"
    )
    key = read_key_file(path)
    assert key.material == KEY
    assert key.source == str(path)
    assert key.network_id == LinkKeys(KEY).network_id.hex()


def test_format_and_parse_round_trip():
    text = format_key_file(KEY, "line one\nline two")
    assert text.splitlines() == ["# line one", "# line two", KEY_HEX]
    assert parse_key_text(text, "here") == KEY


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key in it"),
        ("# only a comment\n", "no key in it"),
        (KEY_HEX[:-2] + "\n", "line 1 has 62 characters"),
        (KEY_HEX + "00\n", "line 1 has 66 characters"),
        (
            KEY_HEX[:10] + "g" + KEY_HEX[11:] + "\n",
            "character that is not hexadecimal at column 11",
        ),
        (KEY_HEX[:32] + " " + KEY_HEX[32:] + "\n", "not hexadecimal at column 33"),
        (f"{KEY_HEX}\n{KEY_HEX}\n", "2 lines look like keys (lines 1, 2)"),
        ("key = " + KEY_HEX + "\n", "not hexadecimal at column 1"),
    ],
)
def test_malformed_keys_are_refused_without_showing_the_content(tmp_path, text, message):
    path = _key_file(tmp_path, text)
    with pytest.raises(KeyFileError) as info:
        read_key_file(path)
    shown = str(info.value)
    assert message in shown
    assert str(path) in shown
    assert "p1-lora keygen" in shown or "no key" not in message
    # Not even a recognisable piece of the key material.
    for start in range(0, len(KEY_HEX) - 8, 4):
        assert KEY_HEX[start : start + 8] not in shown.lower()
    assert info.value.__cause__ is None


def test_binary_file_is_refused(tmp_path):
    path = tmp_path / "key"
    path.write_bytes(bytes(range(128, 160)))
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="is not text"):
        read_key_file(path)


@pytest.mark.parametrize(
    ("mode", "who"),
    [
        (0o644, "group and others"),
        (0o640, "its group"),
        (0o604, "others"),
        (0o620, "its group"),
        (0o666, "group and others"),
    ],
)
def test_key_file_readable_by_others_is_refused(tmp_path, mode, who):
    path = _key_file(tmp_path, KEY_HEX + "\n", mode)
    with pytest.raises(KeyFileError) as info:
        read_key_file(path)
    message = str(info.value)
    assert f"can be accessed by {who} (mode {mode:04o})" in message
    assert f"chmod 600 {path}" in message


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_private_key_file_is_accepted(tmp_path, mode):
    assert read_key_file(_key_file(tmp_path, KEY_HEX + "\n", mode)).material == KEY


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(KeyFileError, match=r"does not exist; create one with: p1-lora keygen"):
        read_key_file(tmp_path / "absent")
    directory = tmp_path / "dir"
    directory.mkdir(mode=0o700)
    with pytest.raises(KeyFileError, match="is a directory, not a regular file"):
        read_key_file(directory)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_says_how_systemd_does_it(tmp_path):
    path = _key_file(tmp_path, KEY_HEX + "\n", 0o000)
    with pytest.raises(KeyFileError, match=r"permission denied.*LoadCredential"):
        read_key_file(path)


def test_systemd_credential_wins_over_key_file(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    other = bytes(reversed(KEY))
    # systemd makes credentials read-only for the service; their mode is not checked.
    _key_file(credentials, other.hex() + "\n", 0o440, name="p1lora-key")
    key_file = _key_file(tmp_path, KEY_HEX + "\n")
    key = load_key(key_file, environ={"CREDENTIALS_DIRECTORY": str(credentials)})
    assert key.material == other
    assert key.source == "systemd credential p1lora-key"
    # Without the credential the key file is used; an empty directory variable is ignored.
    assert (
        load_key(key_file, environ={"CREDENTIALS_DIRECTORY": str(tmp_path / "x")}).material == KEY
    )
    assert load_key(key_file, environ={}).material == KEY


def test_a_malformed_credential_is_still_an_error(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    _key_file(credentials, "nope\n", name="p1lora-key")
    with pytest.raises(KeyFileError, match="p1lora-key: line 1"):
        load_key(None, environ={"CREDENTIALS_DIRECTORY": str(credentials)})


def test_no_key_at_all_explains_what_to_do():
    with pytest.raises(KeyFileError, match=r"p1-lora keygen --out /etc/p1-lora/key.*key_file"):
        load_key(None, environ={})


def test_the_key_object_never_shows_the_key():
    key = PresharedKey(KEY, "/etc/p1-lora/key")
    for text in (repr(key), str(key), f"{key}", f"{key!r}"):
        assert KEY_HEX not in text
        assert repr(KEY) not in text
        assert key.network_id in text
    with pytest.raises(TypeError):
        pickle.dumps(key)
    with pytest.raises(KeyFileError, match="a key is 32 bytes, not 3"):
        PresharedKey(b"abc", "x")


def test_write_key_file_is_private_from_the_start(tmp_path):
    old = os.umask(0)
    try:
        path = tmp_path / "key"
        write_key_file(path, KEY, comment="test")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_key_file(path).material == KEY


def test_write_key_file_refuses_to_overwrite_unless_forced(tmp_path):
    path = tmp_path / "key"
    write_key_file(path, KEY)
    with pytest.raises(FileExistsError):
        write_key_file(path, generate_key())
    assert read_key_file(path).material == KEY
    new = generate_key()
    write_key_file(path, new, force=True)
    assert read_key_file(path).material == new
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["key"]  # no temporary left behind


def test_generated_keys_are_random():
    keys = {generate_key() for _ in range(16)}
    assert len(keys) == 16
    assert all(len(k) == 32 for k in keys)
