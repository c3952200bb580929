"""Reading the small files a node trusts (config, key, state) without hanging or swallowing RAM.

Every file the daemons read at start is small: a config of a few KB, a key of one line, state
files of a few hundred bytes. A wrong path must not turn that into an outage:

- ``/dev/zero`` (or ``/dev/urandom``) given as the config reads forever and fills memory;
- a FIFO blocks `open()` until some other process writes to it, so systemd's start times out
  and it restarts the unit forever;
- a directory, a socket or a device is never what the user meant.

So `read_regular_file` opens with ``O_NONBLOCK`` (opening a FIFO returns at once instead of
waiting for a writer), checks with `fstat` that *the file it opened* is a regular file (no race
with a path swapped in between), and reads at most `max_bytes` + 1 bytes whatever `st_size`
says (procfs and sysfs files report size 0; a file can grow while it is read). The caller
turns `UnsuitableFileError` into its own clear message (config error, key error, a state
file moved aside).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["RegularFile", "UnsuitableFileError", "file_kind", "read_regular_file"]

#: What `st_mode` says a path is, for messages ("... is a named pipe (FIFO), not a file").
_KINDS: tuple[tuple[str, Callable[[int], bool]], ...] = (
    ("a directory", stat.S_ISDIR),
    ("a named pipe (FIFO)", stat.S_ISFIFO),
    ("a character device", stat.S_ISCHR),
    ("a block device", stat.S_ISBLK),
    ("a socket", stat.S_ISSOCK),
)


class UnsuitableFileError(ValueError):
    """The path exists and can be opened, but it is not a regular file of a sensible size.

    The message is "PATH is a named pipe (FIFO), not a regular file" or "PATH is larger than
    N bytes"; `too_large` tells the two apart for callers with their own wording.
    """

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


@dataclass(frozen=True, slots=True)
class RegularFile:
    """What was read, and the `fstat` of the very file it came from (owner, mode)."""

    data: bytes
    info: os.stat_result


def file_kind(mode: int) -> str:
    """'a directory', 'a named pipe (FIFO)', ... for a non-regular `st_mode`."""
    for name, test in _KINDS:
        if test(mode):
            return name
    return "not a regular file"


def read_regular_file(path: Path, max_bytes: int) -> RegularFile:
    """The content of regular file `path`, at most `max_bytes` long.

    Raises `FileNotFoundError`/`PermissionError`/`OSError` as `os.open` does, and
    `UnsuitableFileError` for anything that is not a regular file or is larger than
    `max_bytes`. Never blocks on a FIFO and never reads more than `max_bytes` + 1 bytes.
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsuitableFileError(f"{path} is {file_kind(info.st_mode)}, not a regular file")
        if info.st_size > max_bytes:
            raise UnsuitableFileError(f"{path} is larger than {max_bytes} bytes", too_large=True)
        chunks: list[bytes] = []
        size = 0
        while size <= max_bytes:
            chunk = os.read(fd, max_bytes + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > max_bytes:
        raise UnsuitableFileError(f"{path} is larger than {max_bytes} bytes", too_large=True)
    return RegularFile(b"".join(chunks), info)
