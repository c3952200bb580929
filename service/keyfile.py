"""The pre-shared key: reading it from its own file or from a systemd credential, and writing it.

The key is the link's only secret: whoever has it can read the meter's data and command the
transmitter. So:

- It lives in **its own file**, not in the config (configs get pasted into forum posts). The
  file is one line of 64 hexadecimal characters (256 bits), optionally preceded by comment lines
  starting with ``#``; `p1-lora keygen` writes it with mode 0600.
- A key file that **group or others can access is refused** with the fix in the message
  (``chmod 600 FILE``), like ssh refuses a private key with loose permissions: a key that may
  already have leaked is no key, and saying so at start is better than finding out later.
- Under systemd the unit passes it as a **credential** (``LoadCredential=p1lora-key:/etc/p1-lora/
  key``): systemd reads the root-owned file and hands the service a private copy in
  ``$CREDENTIALS_DIRECTORY``, so the service user never needs read access to /etc/p1-lora/key.
  A credential, when present, wins over `key_file` (it is what the unit explicitly hands over).
  Its permissions are systemd's business (a private, read-only directory), so they are not
  checked.
- A key file **owned by someone else** (not the running user, not root) is refused too: its
  owner can replace the key at will. A key file in a directory that others may write is
  warned about (they can rename another file over it). The file is opened with ``O_NONBLOCK``
  and checked with `fstat`, so a FIFO or a device at the key path is an error, never a hang.
- The key **never appears** in a log line, an exception message or a `repr()`: errors describe
  the problem (length, line, character class) without quoting the content. What can be shown is
  the public *network id* derived from it (it is in every frame header anyway): both sides
  print it at start, and if they differ, the two key files differ.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from p1lora.common.crypto import KEY_SIZE, LinkKeys
from p1lora.service.bounded_read import UnsuitableFileError, read_regular_file

__all__ = [
    "CREDENTIALS_ENV",
    "KeyFileError",
    "PresharedKey",
    "credential_path",
    "format_key_file",
    "generate_key",
    "load_key",
    "parse_key_text",
    "read_key_file",
    "write_key_file",
]

logger = logging.getLogger(__name__)

CREDENTIALS_ENV: Final = "CREDENTIALS_DIRECTORY"
#: Hex digits in a key line.
KEY_HEX_CHARS: Final = KEY_SIZE * 2
#: A key file is a few lines; anything bigger is the wrong file.
_MAX_KEY_FILE_BYTES = 4096
_HEX_LINE = re.compile(r"[0-9A-Fa-f]+")


class KeyFileError(Exception):
    """The key cannot be used; the message says why and how to fix it, never the key."""


class PresharedKey:
    """The 32-byte pre-shared key, wrapped so that it cannot be printed by accident.

    `material` gives the bytes to the link; `repr()`/`str()` show only where the key came from
    and its public network id.
    """

    __slots__ = ("_material", "network_id", "source")

    def __init__(self, material: bytes, source: str) -> None:
        if len(material) != KEY_SIZE:
            raise KeyFileError(f"{source}: a key is {KEY_SIZE} bytes, not {len(material)}")
        self._material = bytes(material)
        #: Where it came from ("/etc/p1-lora/key", "systemd credential p1lora-key").
        self.source = source
        #: The public network id (hex) derived from the key: the same on both sides when the
        #: keys match.
        self.network_id = LinkKeys(self._material).network_id.hex()

    @property
    def material(self) -> bytes:
        """The key bytes, for the link only."""
        return self._material

    def __repr__(self) -> str:
        return f"PresharedKey(source={self.source!r}, network_id={self.network_id})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a PresharedKey cannot be pickled")


def generate_key() -> bytes:
    """A new random key from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_SIZE)


def format_key_file(key: bytes, comment: str | None = None) -> str:
    """The text of a key file: optional comment lines, then the key as 64 hex digits."""
    if len(key) != KEY_SIZE:
        raise ValueError(f"a key is {KEY_SIZE} bytes")
    lines = [f"# {line}".rstrip() for line in (comment or "").splitlines()]
    return "\n".join([*lines, key.hex()]) + "\n"


def parse_key_text(text: str, where: str) -> bytes:
    """The key from a key file's text; `KeyFileError` (naming `where`, never the content)."""
    key_lines: list[tuple[int, str]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key_lines.append((number, stripped))
    expected = (
        f"expected one line of {KEY_HEX_CHARS} hexadecimal characters (a {KEY_SIZE * 8}-bit "
        "key, as written by `p1-lora keygen`)"
    )
    if not key_lines:
        raise KeyFileError(f"{where}: no key in it; {expected}")
    if len(key_lines) > 1:
        numbers = ", ".join(str(n) for n, _ in key_lines)
        raise KeyFileError(
            f"{where}: {len(key_lines)} lines look like keys (lines {numbers}); {expected}, "
            "with any other line starting with #"
        )
    number, line = key_lines[0]
    if not _HEX_LINE.fullmatch(line):
        position = next(
            i for i, ch in enumerate(line, start=1) if ch not in "0123456789abcdefABCDEF"
        )
        raise KeyFileError(
            f"{where}: line {number} has a character that is not hexadecimal at column "
            f"{position}; {expected}"
        )
    if len(line) != KEY_HEX_CHARS:
        raise KeyFileError(f"{where}: line {number} has {len(line)} characters; {expected}")
    return bytes.fromhex(line)


def _permission_problem(path: Path, info: os.stat_result) -> str | None:
    loose = stat.S_IMODE(info.st_mode) & 0o077
    if loose:
        who = (
            "group and others"
            if loose & 0o070 and loose & 0o007
            else ("its group" if loose & 0o070 else "others")
        )
        return (
            f"key file {path} can be accessed by {who} (mode {stat.S_IMODE(info.st_mode):04o}); "
            f"the key must stay secret: run chmod 600 {path} (and consider a new key: "
            "p1-lora keygen)"
        )
    me = os.geteuid()
    if info.st_uid not in (me, 0):
        return (
            f"key file {path} is owned by user {info.st_uid}, not by the user p1-lora runs as "
            f"({me}) or root; its owner can read or replace the key: run chown {me} {path} "
            "(or chown root, with the unit's LoadCredential=)"
        )
    return None


def _warn_if_directory_is_writable(path: Path) -> None:
    """Whoever may write the key file's directory can rename another key over it (the file's
    own mode does not stop that), unless the sticky bit (as on /tmp) restricts renames to the
    file's owner. Only a warning: the key itself has not leaked."""
    directory = path.parent
    try:
        mode = directory.stat().st_mode
    except OSError:
        return
    if mode & 0o022 and not mode & stat.S_ISVTX:
        logger.warning(
            "the directory %s of key file %s is writable by others (mode %04o): they could "
            "replace the key; run chmod go-w %s",
            directory,
            path.name,
            stat.S_IMODE(mode),
            directory,
        )


def read_key_file(path: Path, *, check_permissions: bool = True) -> PresharedKey:
    """Read and check a key file (`KeyFileError` with a clear message).

    Opened without blocking and checked on the opened file (`read_regular_file`): a FIFO, a
    device or a directory is refused, never waited on or read without end. With
    `check_permissions` (everything but a systemd credential, which systemd keeps private) the
    file must be private to its owner, owned by the running user or root, and a directory
    others may write is warned about.
    """
    try:
        opened = read_regular_file(path, _MAX_KEY_FILE_BYTES)
    except FileNotFoundError:
        raise KeyFileError(
            f"key file {path} does not exist; create one with: p1-lora keygen --out {path}"
        ) from None
    except PermissionError:
        raise KeyFileError(
            f"cannot read key file {path}: permission denied; it must be readable by the user "
            "p1-lora runs as (under systemd the unit passes it with LoadCredential= instead)"
        ) from None
    except UnsuitableFileError as exc:
        if exc.too_large:
            raise KeyFileError(f"key file {path} is too large to be a key file") from None
        raise KeyFileError(f"key file {exc}") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read key file {path}: {exc.strerror or exc}") from None
    if check_permissions:
        problem = _permission_problem(path, opened.info)
        if problem is not None:
            raise KeyFileError(problem)
        _warn_if_directory_is_writable(path)
    try:
        text = opened.data.decode("ascii")
    except UnicodeDecodeError:
        raise KeyFileError(
            f"key file {path} is not text; expected {KEY_HEX_CHARS} hexadecimal characters"
        ) from None
    return PresharedKey(parse_key_text(text, f"key file {path}"), str(path))


def credential_path(name: str, environ: Mapping[str, str] | None = None) -> Path | None:
    """The file of systemd credential `name`, if the service was given one."""
    env = os.environ if environ is None else environ
    directory = env.get(CREDENTIALS_ENV)
    if not directory:
        return None
    path = Path(directory) / name
    return path if path.exists() else None


def load_key(
    key_file: Path | None,
    *,
    credential: str = "p1lora-key",
    environ: Mapping[str, str] | None = None,
) -> PresharedKey:
    """The key from the systemd credential `credential` if present, else from `key_file`."""
    from_systemd = credential_path(credential, environ)
    if from_systemd is not None:
        if key_file is not None:
            logger.debug(
                "using the systemd credential %s; key_file %s not read", credential, key_file
            )
        key = read_key_file(from_systemd, check_permissions=False)
        key.source = f"systemd credential {credential}"
        return key
    if key_file is None:
        raise KeyFileError(
            "no pre-shared key: create one with `p1-lora keygen --out /etc/p1-lora/key`, copy "
            "the same file to both Pis, and set key_file in [link] (or --key-file FILE)"
        )
    return read_key_file(key_file)


def write_key_file(
    path: Path, key: bytes, *, comment: str | None = None, force: bool = False
) -> None:
    """Write a key file with mode 0600 from the first byte on.

    Without `force` an existing file is never touched (`FileExistsError`): overwriting a key
    silently would cut the link until the other side gets the new one. With `force` the new key
    is written to a temporary file and renamed over the old one, so a crash leaves either key,
    never half of one.
    """
    text = format_key_file(key, comment).encode("ascii")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    target = path if not force else path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(target, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)  # whatever the umask said
        view = memoryview(text)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            target.unlink()
        raise
    os.close(fd)
    if force:
        try:
            target.replace(path)
        except BaseException:
            with contextlib.suppress(OSError):
                target.unlink()
            raise
