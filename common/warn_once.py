"""Warn about a problem once, not every telegram.

A meter repeats itself every second: a line it prints badly, it prints badly in every
telegram. Logging each one at WARNING would fill the journal with one message; logging none
would hide it. `WarnOnce` logs the first occurrence of each problem at WARNING and the
repeats at DEBUG. Memory is bounded: after `limit` distinct problems, new ones are still
logged at WARNING but no longer remembered (noisy input must not grow memory without end).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

__all__ = ["WarnOnce"]


class WarnOnce:
    """Log at WARNING the first time a key is seen, at DEBUG after (see the module docstring).

    Not locked: callers are the parser, its timestamps and derived values, which run on one
    thread per telegram stream; a race only costs an extra warning, never a lost one.
    """

    def __init__(self, logger: logging.Logger, limit: int) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._logger = logger
        self._limit = limit
        self._seen: set[Hashable] = set()

    def __call__(self, key: Hashable, message: str, *args: object) -> None:
        """Log `message % args` for problem `key`: WARNING the first time, DEBUG after."""
        if key in self._seen:
            self._logger.debug(message, *args)
            return
        if len(self._seen) < self._limit:
            self._seen.add(key)
        self._logger.warning(message, *args)

    def __contains__(self, key: object) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

    def clear(self) -> None:
        """Forget what was warned about (tests; a new meter)."""
        self._seen.clear()
