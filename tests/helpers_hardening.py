"""Shared by the hardening tests: run a call that may block forever, and FIFOs that release it."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

_T = TypeVar("_T")

#: Long enough for a slow CI machine to read a small file, far too short for "forever".
RETURN_WITHIN_S = 10.0


def returns_within(call: Callable[[], _T], seconds: float = RETURN_WITHIN_S) -> _T:
    """`call()`'s result or exception; fails the test if it is still running after `seconds`
    (the thread is left behind as a daemon: the old code blocked in `open()` or `read()`)."""
    outcome: dict[str, object] = {}

    def run() -> None:
        try:
            outcome["value"] = call()
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds:g} s"
    if "error" in outcome:
        raise outcome["error"]  # type: ignore[misc]
    return outcome["value"]  # type: ignore[return-value]


@contextlib.contextmanager
def fifo_at(path: Path) -> Iterator[Path]:
    """A named pipe at `path`; on exit a writer opens and closes it, so a reader that the old
    code left blocked in `open()` wakes up (and sees EOF) instead of hanging the test run."""
    os.mkfifo(path)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
