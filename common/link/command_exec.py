"""The transmitter's side of downlink commands: running them once, and their replies.

A command rides in the receiver's acks until its reply arrives, so the transmitter sees the same
command many times. It runs it once (`ReplyQueue` remembers the last `COMMAND_MEMORY` ids of
the current session, each with its command's check) and repeats the reply instead; a reply
goes as its own REPLY frame, acknowledged like any frame, up to `reply_attempts` times.

Ids are remembered per session only: the receiver numbers commands from 1 again after a
restart (which always means a new session), and its queue already reported every command sent
in the old session as UNKNOWN when the new one began. A remembered id therefore never answers a
command of a new session (it used to: `set radio fixed 12 125` came back "OK" with an old
`info` text, and a `restart` came back "OK" while nothing restarted), and a reply carries its
command's check, which the receiver compares. What a command does is one row of `EXECUTORS` (a table, as the
command set is one).
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p1lora.common.link.commands import Command, CommandCode, ReplyStatus
from p1lora.common.link.config import FixedRadio, RadioMode
from p1lora.common.link.events import RunCommand
from p1lora.common.link.states import TxState
from p1lora.common.link.switch_plan import same_rung
from p1lora.common.regions import RegionError

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["COMMAND_MEMORY", "EXECUTORS", "Outcome", "PendingReply", "ReplyQueue"]

#: Remember this many recently executed command ids (their replies are repeated, not re-run).
COMMAND_MEMORY = 16

#: What running a command gave: the reply's status and text, and what the runtime must do
#: once the reply was acknowledged (or given up on): a restart goes only after its reply.
Outcome = tuple[ReplyStatus, str, RunCommand | None]


@dataclass
class PendingReply:
    """A command's reply, sent until acknowledged or `reply_attempts` frames went out."""

    command_id: int
    status: ReplyStatus
    text: str
    #: `Command.check` of the command it answers.
    check: int = 0
    attempts: int = 0
    then_run: RunCommand | None = None
    acked: bool = False


class ReplyQueue:
    """Replies waiting to go (oldest first) and the replies of recently executed commands."""

    def __init__(self) -> None:
        self._waiting: deque[PendingReply] = deque()
        self._executed: OrderedDict[int, PendingReply] = OrderedDict()

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def first(self) -> PendingReply:
        """The reply to send next (only when the queue is not empty)."""
        return self._waiting[0]

    def repeat(self, command_id: int, check: int) -> bool:
        """True if this command (id and check) ran already in this session; its reply is
        queued again if it was acknowledged (the receiver still sends the command: it missed
        the reply's ack... or the reply)."""
        done = self._executed.get(command_id)
        if done is None or done.check != check:
            return False
        if done.acked and done not in self._waiting:
            done.acked = False
            done.attempts = 0
            self._waiting.append(done)
        return True

    def add(self, command_id: int, check: int, outcome: Outcome) -> None:
        status, text, then_run = outcome
        self._waiting = deque(r for r in self._waiting if r.command_id != command_id)
        reply = PendingReply(command_id, status, text, check, then_run=then_run)
        self._executed.pop(command_id, None)
        self._executed[command_id] = reply
        while len(self._executed) > COMMAND_MEMORY:
            self._executed.popitem(last=False)
        self._waiting.append(reply)

    def acked(self, command_id: int) -> RunCommand | None:
        """The receiver acknowledged the reply to `command_id`: done; what to run now."""
        if self._waiting and self._waiting[0].command_id == command_id:
            reply = self._waiting.popleft()
            reply.acked = True
            return reply.then_run
        return None

    def unanswered(self, attempts: int) -> RunCommand | None:
        """The first reply's frame went unanswered: after `attempts` frames, give up on it and
        return what was to run after it."""
        if self._waiting:
            reply = self._waiting[0]
            if reply.attempts >= attempts:
                self._waiting.popleft()
                return reply.then_run
        return None

    def new_session(self) -> list[RunCommand]:
        """A new session: forget every id (see the module docstring) and the replies still
        waiting (the receiver reported their commands as UNKNOWN); returns what was to run
        after them (a `restart` still happens, as when its reply is given up on)."""
        then_run = [r.then_run for r in self._waiting if r.then_run is not None]
        self._waiting.clear()
        self._executed.clear()
        return then_run


def _info(link: TxLink, now: float, command: Command) -> Outcome:
    link._reports.want(now)  # whoever asks wants fresh diagnostics at home too
    return ReplyStatus.OK, link._info(now), None


def _retune(link: TxLink, now: float, command: Command) -> Outcome:
    link._tuner.forget_failures(now)
    if link._mode is RadioMode.AUTO and link._state is TxState.RUNNING:
        target = link._tuner.desired_target(now)
        if target is not None and not same_rung(target, link._settings):
            link._start_switch(now, target, "retune command")
            return ReplyStatus.OK, f"retuning to {target.label()}", None
    return ReplyStatus.OK, f"staying at {link._settings.label()}", None


def _set_interval(link: TxLink, now: float, command: Command) -> Outcome:
    assert command.interval_s is not None
    link._interval = command.interval_s
    link._persist()
    return ReplyStatus.OK, f"interval {link._interval:g} s", None


def _set_radio_auto(link: TxLink, now: float, command: Command) -> Outcome:
    link._mode = RadioMode.AUTO
    link._persist()
    link._tuner.next_tune_at = now
    return ReplyStatus.OK, "radio auto", None


def _set_radio_fixed(link: TxLink, now: float, command: Command) -> Outcome:
    assert command.sf is not None and command.bw_hz is not None
    fixed = FixedRadio(command.sf, command.bw_hz, command.tx_power_dbm)
    try:
        target = link.config.fixed_settings(fixed)
        link.config.region.check(target)
    except (RegionError, ValueError) as exc:
        return ReplyStatus.ERROR, str(exc), None
    link._mode, link._fixed = RadioMode.FIXED, fixed
    link._tuner.cooldowns.pop((target.sf, target.bw_hz), None)
    link._persist()
    link._tuner.next_tune_at = now
    if link._state is TxState.RUNNING:
        link._tuner.evaluate_fixed(now)
    return ReplyStatus.OK, f"radio fixed {fixed.label()}", None


def _restart(link: TxLink, now: float, command: Command) -> Outcome:
    return ReplyStatus.OK, "restarting", RunCommand("restart")


def _log_level(link: TxLink, now: float, command: Command) -> Outcome:
    link._emit(RunCommand("log_level", command.log_level))
    return ReplyStatus.OK, f"log level {command.log_level}", None


EXECUTORS: dict[CommandCode, Callable[[TxLink, float, Command], Outcome]] = {
    CommandCode.INFO: _info,
    CommandCode.RETUNE: _retune,
    CommandCode.SET_INTERVAL: _set_interval,
    CommandCode.SET_RADIO_AUTO: _set_radio_auto,
    CommandCode.SET_RADIO_FIXED: _set_radio_fixed,
    CommandCode.RESTART: _restart,
    CommandCode.LOG_LEVEL: _log_level,
}
"""What each command does to the transmitter (every `CommandCode` has a row)."""
