"""The receiver's queue of downlink commands waiting for the transmitter's reply.

A queued command rides in every ack (the oldest first) until its reply arrives or
`command_timeout_s` passes. `CommandQueue` only keeps the queue; `RxLink` turns what leaves it
into `CommandReply` actions, so every outcome (reply, timeout, unknown) is reported the same way.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass

from p1lora.common.link.commands import Command

__all__ = ["CommandQueue", "QueuedCommand"]


@dataclass
class QueuedCommand:
    command_id: int
    command: Command
    queued_at: float
    #: Acks that carried it so far (once sent, its outcome is unknown if the session ends).
    sent: int = 0


class CommandQueue:
    """Commands for the transmitter, oldest first, with ids 1..255 reused in turn."""

    def __init__(self) -> None:
        self._queue: deque[QueuedCommand] = deque()
        self._last_id = 0

    def __bool__(self) -> bool:
        return bool(self._queue)

    def __iter__(self) -> Iterator[QueuedCommand]:
        return iter(self._queue)

    def add(self, command: Command, now: float) -> int:
        """Queue `command`; returns its id (an older command with the same id is dropped)."""
        self._last_id = self._last_id % 255 + 1
        command_id = self._last_id
        self._queue = deque(q for q in self._queue if q.command_id != command_id)
        self._queue.append(QueuedCommand(command_id, command, now))
        return command_id

    def first(self) -> QueuedCommand | None:
        """The command the next ack carries."""
        return self._queue[0] if self._queue else None

    def deadline(self, timeout_s: float) -> float | None:
        """When the oldest command times out."""
        return self._queue[0].queued_at + timeout_s if self._queue else None

    def expired(self, now: float, timeout_s: float) -> list[QueuedCommand]:
        """Remove and return the commands that waited `timeout_s` for a reply."""
        out: list[QueuedCommand] = []
        while self._queue and now >= self._queue[0].queued_at + timeout_s:
            out.append(self._queue.popleft())
        return out

    def answered(self, command_id: int, check: int) -> QueuedCommand | None:
        """Remove and return the command a reply names by id and check (None: not queued,
        e.g. timed out, or the reply answers another command that had this id)."""
        for queued in self._queue:
            if queued.command_id == command_id and queued.command.check == check:
                self._queue.remove(queued)
                return queued
        return None

    def take_sent(self) -> list[QueuedCommand]:
        """Remove and return the commands already sent: when the session changes their
        outcome is unknown (a restart command ends exactly like this), and sending them again
        could repeat them."""
        sent = [q for q in self._queue if q.sent]
        self._queue = deque(q for q in self._queue if not q.sent)
        return sent
