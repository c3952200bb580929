"""The states of both link machines and, in one table each, the transitions between them.

As in h11's `_state.py`: the legal moves are data, not scattered conditions. `LinkBase._set_state`
checks every move against its machine's table, so a state change the design does not allow is
a bug that shows at once (counted as an internal error), not a link that drifts somewhere odd.
The states are `StrEnum`s: they reach logs, events and JSON as their plain names.

docs/architecture.md prints both tables (`transition_rows`).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

__all__ = [
    "RX_TRANSITIONS",
    "TX_TRANSITIONS",
    "IllegalTransitionError",
    "RxState",
    "TxState",
    "check_transition",
    "transition_rows",
]


class TxState(StrEnum):
    """`TxLink.state` (see the table in tx.py's docstring)."""

    RENDEZVOUS = "rendezvous"
    HANDSHAKE = "handshake"
    SWITCHING = "switching"
    PROBING = "probing"
    FALLBACK = "fallback"
    RUNNING = "running"


class RxState(StrEnum):
    """`RxLink.state` (see the table in rx.py's docstring)."""

    RENDEZVOUS = "rendezvous"
    RESUME = "resume"
    HANDSHAKE = "handshake"
    RUNNING = "running"
    PROBING = "probing"
    FALLBACK = "fallback"


_S = TypeVar("_S", TxState, RxState)

#: Transmitter: state -> the states it may move to (staying put is not a transition).
TX_TRANSITIONS: Mapping[TxState, frozenset[TxState]] = {
    # an answered DISCOVER (CHALLENGE) -> running
    TxState.RENDEZVOUS: frozenset({TxState.RUNNING}),
    # CHALLENGE -> running; `resume_attempts` unanswered DISCOVERs -> rendezvous
    TxState.HANDSHAKE: frozenset({TxState.RUNNING, TxState.RENDEZVOUS}),
    # a switch starts; the link is lost; a RESYNC (the receiver lost its session)
    TxState.RUNNING: frozenset({TxState.SWITCHING, TxState.RENDEZVOUS, TxState.HANDSHAKE}),
    # SWITCH acked or all repeats unanswered -> probing; refused or dropped -> running; RESYNC
    TxState.SWITCHING: frozenset({TxState.PROBING, TxState.RUNNING, TxState.HANDSHAKE}),
    # `probe_count` acks -> running (commit); too many failures -> fallback; RESYNC
    TxState.PROBING: frozenset({TxState.RUNNING, TxState.FALLBACK, TxState.HANDSHAKE}),
    # the receiver has surely reverted too -> running; RESYNC
    TxState.FALLBACK: frozenset({TxState.RUNNING, TxState.HANDSHAKE}),
}

#: Receiver: state -> the states it may move to (staying put is not a transition).
RX_TRANSITIONS: Mapping[RxState, frozenset[RxState]] = {
    # an authentic DISCOVER answered
    RxState.RENDEZVOUS: frozenset({RxState.HANDSHAKE}),
    # DISCOVER answered; a session frame opens; silence
    RxState.RESUME: frozenset({RxState.HANDSHAKE, RxState.RUNNING, RxState.RENDEZVOUS}),
    # the first session frame confirms; expiry back to where it came from; silence (resume)
    RxState.HANDSHAKE: frozenset({RxState.RUNNING, RxState.RENDEZVOUS, RxState.RESUME}),
    # SWITCH (after its ack left); silence
    RxState.RUNNING: frozenset({RxState.PROBING, RxState.RENDEZVOUS}),
    # a non-probe frame (commit); `switch_timeout` without proof -> fallback; silence
    RxState.PROBING: frozenset({RxState.RUNNING, RxState.FALLBACK, RxState.RENDEZVOUS}),
    # any authentic frame; silence
    RxState.FALLBACK: frozenset({RxState.RUNNING, RxState.RENDEZVOUS}),
}


class IllegalTransitionError(AssertionError):
    """A state change the machine's table does not allow: a bug in the link, never input."""


def check_transition(table: Mapping[_S, frozenset[_S]], old: _S, new: _S) -> None:
    """Raise `IllegalTransitionError` unless `old -> new` is in `table`."""
    if new not in table[old]:
        raise IllegalTransitionError(f"{old} -> {new} is not a legal transition")


def transition_rows(table: Mapping[_S, frozenset[_S]]) -> list[tuple[str, str]]:
    """(state, "next, next") rows in the enum's order, for documentation."""
    order = list(type(next(iter(table))))
    return [(str(state), ", ".join(str(s) for s in order if s in table[state])) for state in order]
