"""The link machines' transition tables: complete, connected, enforced, and documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from p1lora.common.link.states import (
    RX_TRANSITIONS,
    TX_TRANSITIONS,
    IllegalTransitionError,
    RxState,
    TxState,
    check_transition,
    transition_rows,
)

ARCHITECTURE = Path(__file__).resolve().parent.parent / "docs" / "architecture.md"


@pytest.mark.parametrize("table", [TX_TRANSITIONS, RX_TRANSITIONS])
def test_every_state_has_a_row_and_every_state_is_reachable(table):
    kind = type(next(iter(table)))
    states = set(kind)
    assert set(table) == states
    reachable = {kind("rendezvous")}
    frontier = list(reachable)
    while frontier:
        for nxt in table[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    # rx: `resume` is a start state (restart with a saved setting), reachable from handshake.
    assert reachable == states
    assert all(state not in table[state] for state in states)  # staying is not a move


def test_an_illegal_move_raises():
    check_transition(TX_TRANSITIONS, TxState.RUNNING, TxState.SWITCHING)
    with pytest.raises(IllegalTransitionError, match="rendezvous -> probing"):
        check_transition(TX_TRANSITIONS, TxState.RENDEZVOUS, TxState.PROBING)
    with pytest.raises(IllegalTransitionError):
        check_transition(RX_TRANSITIONS, RxState.RENDEZVOUS, RxState.RUNNING)


def test_the_architecture_doc_prints_both_tables():
    text = ARCHITECTURE.read_text(encoding="utf-8")
    for table in (TX_TRANSITIONS, RX_TRANSITIONS):
        for state, moves in transition_rows(table):
            assert f"| {state} | {moves} |" in text
