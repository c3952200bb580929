"""The state directory: frame-counter reservations and link state as small JSON files.

A node keeps two things across restarts (the pre-shared key is *not* one of them; it lives in
its own file, read by the daemon's configuration):

- ``<role>_counters.json``: the frame-counter reservation (`common.counters.CounterState`).
  The link asks for it to be written once per reserved block (every 1000 frames, about every
  17 minutes at one frame per second) and *before* the frame that needs it is sent.
- ``<role>_link.json``: the link's restart state (last known good settings, radio mode, the
  `set interval` value): written when a switch is committed or a command changes them.

Why the care:

- **Atomic**: a power cut in the middle of a write must leave either the old or the new file,
  never half of one. Each write goes to a temporary file in the same directory, is fsynced,
  renamed over the old name (atomic on POSIX) and the directory is fsynced so that the rename
  itself survives the power cut.
- **Rare**: an SD card wears out with writes. The link already batches counter writes in blocks;
  on top of that, content identical to what is on disk is not written again.
- **Never fatal**: a read-only or full file system, a missing directory or a permissions problem
  is logged clearly (once per outage, with what it means for the user) and the state is kept in
  memory and written again by `retry()` (the runtime calls it periodically) or by the next save.
  The runtime keeps running: losing the counter store costs at worst a slower re-handshake
  after a reboot, never a reused nonce (session keys are fresh for every handshake).
- **Corrupt files are moved aside** (``<name>.corrupt``, ``.corrupt.1`` ...) with a warning and
  the defaults are used, so a damaged file cannot stop a node from starting and the evidence
  is kept for a bug report.
- **Damage includes what JSON allows but no state holds**: ``NaN``, ``Infinity`` and numbers
  too large for a float (``1e999``) are refused by `parse_state_json` (a NaN compares false
  with everything, so a NaN limit is no limit), as is a document nested so deeply that the
  parser would overflow the stack, and a negative `set interval`. Files are read with
  `read_regular_file`: at most 64 KiB, and a FIFO or device put where a state file belongs is
  damage, never a start that blocks forever.

`StateStore(None, role=...)` keeps everything in memory only (the simulator and tests use it to
"reboot" a runtime with the state it persisted).
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from p1lora.common.counters import CounterState
from p1lora.common.link.persist import RxPersistentState, TxPersistentState
from p1lora.service.bounded_read import UnsuitableFileError, read_regular_file

__all__ = [
    "FORMAT_VERSION",
    "StateStore",
    "StateStoreStats",
    "move_aside",
    "parse_state_json",
    "write_atomically",
]

logger = logging.getLogger(__name__)

#: Version of the envelope around the stored data (bumped only on incompatible changes).
FORMAT_VERSION = 1
#: Files larger than this are not state files (a wrong path, or garbage): moved aside.
_MAX_FILE_BYTES = 64 * 1024

_T = TypeVar("_T")

#: What a failed write means for the user, per kind of state (said once per outage).
_CONSEQUENCE: dict[str, str] = {
    "counters": (
        "frame counters are kept in memory only; after a restart the receiver may ignore this "
        "node for a few minutes until a new handshake"
    ),
    "link": "link settings are kept in memory only; a restart begins with a slower handshake",
}

_ROLES = ("tx", "rx")


@dataclass(frozen=True, slots=True)
class StateStoreStats:
    """Counts for diagnostics: writes done, writes that failed, files moved aside."""

    writes: int
    skipped_unchanged: int
    failures: int
    corrupt_moved: int
    pending: tuple[str, ...]


class StateStore:
    """The state directory of one node (`role` "tx" or "rx"); see the module docstring.

    Not thread-safe: one runtime owns it and uses it from its own thread.
    """

    def __init__(self, directory: str | Path | None, *, role: str) -> None:
        if role not in _ROLES:
            raise ValueError(f"state store role must be one of {', '.join(_ROLES)}, not {role!r}")
        self.directory = Path(directory) if directory is not None else None
        self.role = role
        #: The data last written (or, in memory mode, held) per kind.
        self._saved: dict[str, dict[str, object]] = {}
        #: Data that could not be written yet, per kind (retried).
        self._pending: dict[str, dict[str, object]] = {}
        self._failing: set[str] = set()
        self._writes = 0
        self._skipped = 0
        self._failures = 0
        self._corrupt_moved = 0
        if self.directory is not None:
            self._remove_stale_temporaries()

    @classmethod
    def memory(cls, role: str) -> StateStore:
        """A store that keeps state in memory only (simulator, tests)."""
        return cls(None, role=role)

    # ------------------------------------------------------------------ paths

    def path(self, kind: str) -> Path | None:
        """The file of `kind` ("counters" or "link"); None in memory mode."""
        if kind not in _CONSEQUENCE:
            raise ValueError(f"unknown state kind {kind!r}")
        if self.directory is None:
            return None
        return self.directory / f"{self.role}_{kind}.json"

    # ------------------------------------------------------------------ typed API

    def load_counters(self) -> CounterState | None:
        """The persisted counter reservation, or None (nothing saved, or unusable)."""
        return self._load("counters", CounterState.from_dict)

    def save_counters(self, state: CounterState) -> bool:
        """Persist a reservation durably; False (logged) when it could not be written."""
        return self._save("counters", dict(state.as_dict()))

    def load_tx_state(self) -> TxPersistentState | None:
        """The transmitter's link state (only for role "tx")."""
        self._need_role("tx")
        return self._load("link", _tx_state_from_dict)

    def load_rx_state(self) -> RxPersistentState | None:
        """The receiver's link state (only for role "rx")."""
        self._need_role("rx")
        return self._load("link", RxPersistentState.from_dict)

    def save_link_state(self, state: TxPersistentState | RxPersistentState) -> bool:
        """Persist the link's restart state; False (logged) when it could not be written."""
        expected = TxPersistentState if self.role == "tx" else RxPersistentState
        if not isinstance(state, expected):
            raise TypeError(f"a {self.role} state store holds {expected.__name__}, not {state!r}")
        return self._save("link", state.as_dict())

    def retry(self) -> bool:
        """Write what failed before; True when nothing is pending any more."""
        for kind, data in list(self._pending.items()):
            self._save(kind, data)
        return not self._pending

    @property
    def pending(self) -> bool:
        """True while some state could not be written."""
        return bool(self._pending)

    def stats(self) -> StateStoreStats:
        return StateStoreStats(
            writes=self._writes,
            skipped_unchanged=self._skipped,
            failures=self._failures,
            corrupt_moved=self._corrupt_moved,
            pending=tuple(sorted(self._pending)),
        )

    def _need_role(self, role: str) -> None:
        if self.role != role:
            raise ValueError(f"this is the {self.role} state store, not the {role} one")

    # ------------------------------------------------------------------ loading

    def _load(self, kind: str, parse: Callable[[Mapping[str, object]], _T]) -> _T | None:
        path = self.path(kind)
        if path is None:
            held = self._saved.get(kind)
            return None if held is None else parse(held)
        try:
            raw = read_regular_file(path, _MAX_FILE_BYTES).data
        except FileNotFoundError:
            logger.debug("no saved %s state at %s: starting from defaults", kind, path)
            return None
        except UnsuitableFileError as exc:
            self._moved(path, str(exc))
            return None
        except OSError as exc:
            logger.warning(
                "cannot read the saved %s state %s (%s): starting from defaults",
                kind,
                path,
                _describe(exc),
            )
            return None
        try:
            document = self._unwrap(raw)
            value = parse(document)
        except ValueError as exc:
            self._moved(path, str(exc))
            return None
        self._saved[kind] = dict(document)
        return value

    def _moved(self, path: Path, reason: str) -> None:
        try:
            where = f"moved it to {move_aside(path).name}"
            self._corrupt_moved += 1
        except OSError as exc:
            where = f"could not move it aside ({_describe(exc)})"
        logger.warning(
            "saved state %s is damaged (%s): %s and started from defaults", path, reason, where
        )

    def _unwrap(self, raw: bytes) -> Mapping[str, object]:
        document = parse_state_json(raw)
        if not isinstance(document, dict):
            raise ValueError("not a JSON object")
        version = document.get("format")
        if version != FORMAT_VERSION:
            raise ValueError(f"unknown format {version!r} (expected {FORMAT_VERSION})")
        role = document.get("role")
        if role != self.role:
            raise ValueError(f"written by the {role!r} side, this is the {self.role!r} side")
        data = document.get("data")
        if not isinstance(data, dict):
            raise ValueError("'data' is not an object")
        return data

    def _remove_stale_temporaries(self) -> None:
        """A crash between writing and renaming leaves a temporary file: it is never valid."""
        assert self.directory is not None
        for kind in _CONSEQUENCE:
            path = self.path(kind)
            assert path is not None
            with contextlib.suppress(OSError):
                _temporary(path).unlink(missing_ok=True)

    # ------------------------------------------------------------------ saving

    def _save(self, kind: str, data: dict[str, object]) -> bool:
        if self._saved.get(kind) == data:
            self._pending.pop(kind, None)
            self._skipped += 1
            return True
        path = self.path(kind)
        if path is None:
            self._saved[kind] = dict(data)
            self._writes += 1
            return True
        document = {"format": FORMAT_VERSION, "role": self.role, "data": data}
        text = json.dumps(document, indent=1, sort_keys=True) + "\n"
        try:
            write_atomically(path, text.encode("utf-8"))
        except OSError as exc:
            self._failures += 1
            self._pending[kind] = dict(data)
            if kind not in self._failing:
                self._failing.add(kind)
                logger.error(
                    "cannot write %s (%s): %s; retrying periodically",
                    path,
                    _describe(exc),
                    _CONSEQUENCE[kind],
                )
            else:
                logger.debug("still cannot write %s: %s", path, _describe(exc))
            return False
        self._saved[kind] = dict(data)
        self._pending.pop(kind, None)
        self._writes += 1
        if kind in self._failing:
            self._failing.discard(kind)
            logger.warning("state file %s written again after earlier failures", path)
        return True


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def write_atomically(path: Path, payload: bytes) -> None:
    """tmp + fsync + rename + directory fsync; the old file stays intact on any failure."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary(path)
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        temporary.replace(path)
    except OSError:
        with contextlib.suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError as exc:
        logger.debug("cannot open %s to make the rename durable: %s", directory, exc)
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems cannot fsync a directory (EINVAL); the rename is still atomic.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _tx_state_from_dict(data: Mapping[str, object]) -> TxPersistentState:
    state = TxPersistentState.from_dict(data)
    if state.interval_s < 0:
        raise ValueError(f"saved link state: negative interval_s {state.interval_s}")
    return state


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a state file may hold")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:24]} is too large for a state file")
    return value


def parse_state_json(raw: bytes) -> object:
    """The JSON document in `raw`; ValueError (with the reason) for anything a state file
    never holds: invalid UTF-8 or JSON, NaN/Infinity/overflowing numbers, deep nesting."""
    try:
        return json.loads(
            raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except UnicodeDecodeError as exc:
        raise ValueError(f"not valid JSON (not UTF-8 at byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    except RecursionError:
        raise ValueError("not valid JSON (nested too deeply)") from None


def move_aside(path: Path) -> Path:
    """Rename damaged state file `path` to ``<name>.corrupt`` (or ``.corrupt.N``) so that the
    evidence is kept and the next start does not trip over it; the new path (OSError if the
    rename fails)."""
    target = path.with_name(path.name + ".corrupt")
    index = 0
    while target.exists() or target.is_symlink():
        index += 1
        target = path.with_name(f"{path.name}.corrupt.{index}")
    path.rename(target)
    return target
