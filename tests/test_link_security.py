"""An attacker on the channel: replayed, forged, bit-flipped, truncated, foreign frames."""

from __future__ import annotations

import logging
import random

import pytest

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.counters import CounterState
from p1lora.common.crypto import Direction, LinkKeys
from p1lora.common.frames import FrameError, FrameType, RejectReason, build_frame
from p1lora.common.link import Configure, LinkConfig, RxLink, Transmit, timing
from p1lora.common.link.replay_limits import DiscoverFilter, DuplicateAnswers
from p1lora.common.link.session import PENDING_LIMIT, LinkSecurity
from p1lora.common.radio_types import ReceivedFrame
from tests.helpers_link import PSK, Air, Channel, Harness, recorded_discovers

OTHER_PSK = bytes(range(100, 132))


def _running_pair(seed: int = 1) -> Harness:
    h = Harness(channel=Channel(path_loss_db=108.0), seed=seed)
    h.run_until(60.0)
    assert h.tx_link.state == h.rx_link.state == "running"
    return h


def _snapshot(h: Harness) -> tuple[object, ...]:
    return (
        h.tx_link.state,
        h.rx_link.state,
        h.tx_link.settings,
        h.rx_link.settings,
        len(h.rx.delivered),
        len(h.rx.statuses),
        len(h.tx.runs),
        h.rx_link._security.session,
        h.tx_link._security.session,
    )


def test_replayed_frames_are_rejected_and_never_acted_upon() -> None:
    h = _running_pair()
    uplink = [a.payload for a in h.air if a.sender == "tx"]
    downlink = [a.payload for a in h.air if a.sender == "rx"]
    last_up, last_down = uplink[-1], downlink[-1]
    before = _snapshot(h)
    for payload in uplink:
        if payload != last_up:  # an exact copy of the last frame is re-acked (tested below)
            h.inject("rx", payload)
    for payload in downlink:
        if payload != last_down:
            h.inject("tx", payload)
    assert _snapshot(h) == before
    rx_rejected, tx_rejected = h.rx_link.rejected, h.tx_link.rejected
    assert rx_rejected["replay"] == len(uplink) - 1  # discovery, switch, probes, data: all
    assert tx_rejected["replay"] + tx_rejected.get("stale", 0) == len(downlink) - 1
    assert tx_rejected.get("stale", 0) == 1  # the old challenge: no discovery in flight
    # The link carries on untroubled.
    delivered = len(h.rx.delivered)
    h.run_for(30.0)
    assert len(h.rx.delivered) >= delivered + 25
    assert h.delivered_ok()


def test_forged_flipped_truncated_and_foreign_frames_are_rejected_by_reason() -> None:
    h = _running_pair()
    rnd = random.Random(9)
    genuine = [a.payload for a in h.air if a.sender == "tx" and a.frame_type == "DATA"][-1]
    net = h.tx_link.network_id
    before = _snapshot(h)
    forged = [bytes([0x24]) + net + rnd.randbytes(2) + rnd.randbytes(20) for _ in range(20)]
    flipped = []
    for byte in range(5, len(genuine)):  # every body and tag byte
        damaged = bytearray(genuine)
        damaged[byte] ^= 0x10
        flipped.append(bytes(damaged))
    truncated = [genuine[:n] for n in range(0, 13)]
    other = Harness(channel=Channel(path_loss_db=108.0), psk=OTHER_PSK, seed=2)
    other.run_until(30.0)
    foreign = [a.payload for a in other.air if a.sender == "tx"]
    for payload in forged + flipped + truncated + foreign:
        h.inject("rx", payload)
    assert _snapshot(h) == before
    rejected = h.rx_link.rejected
    assert rejected["auth_failed"] == len(forged) + len(flipped)
    assert rejected["truncated"] == len(truncated)
    assert rejected["wrong_network"] == len(foreign)
    assert not [a for a in h.rx.sent if a.start >= h.clock.now()]  # nothing answered


def test_wrong_key_receiver_delivers_nothing() -> None:
    h = Harness(channel=Channel(path_loss_db=108.0), rx_psk=OTHER_PSK)
    h.run_until(120.0)
    assert h.rx.delivered == []
    assert h.rx_link.rejected["wrong_network"] > 0
    assert not h.rx.sent  # never answered a frame it could not authenticate
    assert h.tx_link.state == "rendezvous"


def test_exact_duplicate_of_the_last_frame_is_re_acked_not_redelivered() -> None:
    h = _running_pair()
    h.run_for(0.3)  # let the last exchange finish so the radios are idle
    last = [a for a in h.air if a.sender == "tx"][-1]
    last_ack = [a for a in h.air if a.sender == "rx"][-1]
    assert last.frame_type == "DATA" and last_ack.start >= last.end
    delivered = len(h.rx.delivered)
    sent = len(h.rx.sent)
    h.inject("rx", last.payload)
    assert len(h.rx.delivered) == delivered
    assert len(h.rx.sent) == sent + 1
    assert h.rx.sent[-1].payload == last_ack.payload  # the same ack again, no new nonce
    assert h.rx_link.rejected == {}


def test_replayed_discovery_never_establishes_a_session() -> None:
    h = _running_pair()
    discover = next(a.payload for a in h.air if a.frame_type == "DISCOVER")
    session_frame = next(a.payload for a in h.air if a.frame_type == "DATA")
    rx = RxLink(LinkConfig(), PSK, None, random.Random(5).randbytes, 1000.0)  # a rebooted rx
    rx.actions()
    frame = ReceivedFrame(discover, -80.0, 5.0, rx.settings, 1000.0)
    actions = rx.frame_received(frame)
    challenge = [a for a in actions if isinstance(a, Transmit)]
    assert [a.frame_type for a in challenge] == ["CHALLENGE"]  # answered (it cannot know)...
    rx.tx_done(1000.0 + challenge[0].airtime_s)
    assert rx.state == "handshake" and not rx.session_active
    # ...but the attacker cannot produce the transmitter's session frame, and old session
    # frames do not authenticate under the new pending session: they count as frames of a
    # session this receiver does not hold, exactly as without the pending one.
    rx.frame_received(ReceivedFrame(session_frame, -80.0, 5.0, rx.settings, 1010.0))
    assert rx.rejected == {"no_session": 1}
    assert not rx.session_active
    deadline = rx.next_deadline()
    assert deadline is not None
    rx.tick(deadline + 1.0)
    assert rx.state == "rendezvous" and not rx.session_active


def test_discovery_flood_stays_within_the_response_rate_and_budget() -> None:
    h = _running_pair()
    discover = next(a.payload for a in h.air if a.frame_type == "DISCOVER")
    config = LinkConfig()
    rx = RxLink(config, PSK, None, random.Random(5).randbytes, 0.0)
    rx.actions()
    challenges: list[tuple[float, float]] = []
    busy_until = 0.0
    t = 0.0
    while t < 7200.0:
        if t >= busy_until:
            actions = rx.frame_received(ReceivedFrame(discover, -80.0, 5.0, rx.settings, t))
            for action in actions:
                if isinstance(action, Transmit):
                    challenges.append((t, action.airtime_s))
                    busy_until = t + action.airtime_s
                    rx.tx_done(busy_until)
        t += 2.0
    airtime = time_on_air_for(rx.settings, timing.CHALLENGE_BYTES)
    allowance = AirtimeBudget.for_sub_band(config.sub_band()).allowance_s
    per_hour = max(
        sum(air for start, air in challenges if end - 3600.0 < start + air and start <= end)
        for end in (start + air for start, air in challenges)
    )
    # 3600 requests an hour, answered only at the refill rate: a quarter of the allowance
    # (plus the initial burst), never the whole budget.
    assert per_hour <= config.handshake_share * allowance + 3 * airtime
    assert rx.budget.fraction_used(t) <= 1.0


def test_rejections_are_logged_first_then_summarised(caplog: pytest.LogCaptureFixture) -> None:
    h = _running_pair()
    genuine = [a.payload for a in h.air if a.sender == "tx" and a.frame_type == "DATA"][-1]
    caplog.set_level(logging.INFO, logger="p1lora.common.link")
    for i in range(50):
        damaged = bytearray(genuine)
        damaged[-1] ^= 1 + i % 200
        h.inject("rx", bytes(damaged))
    h.inject("rx", b"\x00" * 3)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2  # the first auth failure and the first truncated frame
    h.run_for(65.0)
    h.inject("rx", bytes(genuine[:-1]) + bytes([genuine[-1] ^ 0xFF]))
    summaries = [r.getMessage() for r in caplog.records if "last minute" in r.getMessage()]
    assert summaries and "auth_failed=" in summaries[0]
    assert PSK.hex() not in caplog.text


def test_static_key_frames_from_a_neighbour_link_are_counted_as_wrong_network() -> None:
    keys = LinkKeys(OTHER_PSK)
    rng = random.Random(1)
    nonce_random = rng.randbytes(8)
    frame = build_frame(
        FrameType.DISCOVER,
        keys.network_id,
        1,
        b"\x00\x0e",
        cipher=keys.static(Direction.UPLINK),
        nonce=keys.static_nonce(Direction.UPLINK, nonce_random, 1),
        random=nonce_random,
    )
    rx = RxLink(LinkConfig(), PSK, None, rng.randbytes, 0.0)
    configured = [a for a in rx.actions() if isinstance(a, Configure)]
    assert configured
    actions = rx.frame_received(ReceivedFrame(frame, -70.0, 5.0, rx.settings, 1.0))
    assert not [a for a in actions if isinstance(a, Transmit)]
    assert rx.rejected == {"wrong_network": 1}


def test_random_garbage_never_raises_or_changes_anything() -> None:
    h = _running_pair(seed=6)
    rnd = random.Random(12)
    net = h.tx_link.network_id
    before = _snapshot(h)
    for i in range(3000):
        size = rnd.randrange(0, 80)
        payload = rnd.randbytes(size)
        if i % 2 and size > 5:  # half of them with a valid-looking version, type and network
            payload = bytes([0x20 | rnd.randrange(1, 11)]) + net + payload[3:]
        h.inject("rx" if i % 3 else "tx", payload)
    assert _snapshot(h) == before
    assert h.tx_link.internal_errors == h.rx_link.internal_errors == 0
    total = sum(h.rx_link.rejected.values()) + sum(h.tx_link.rejected.values())
    assert total == 3000


# ------------------------------------------------------------------ answers to replayable frames


def _quiet_running_pair() -> Harness:
    """A running pair whose meter has stopped: the last frame stays the last for a while."""
    h = _running_pair()
    h.telegram_interval = None
    h.run_for(2.0)
    return h


def _last_exchange(h: Harness) -> tuple[Air, Air]:
    last = [a for a in h.air if a.sender == "tx" and a.heard][-1]
    ack = [a for a in h.air if a.sender == "rx"][-1]
    assert ack.frame_type == "ACK" and ack.start >= last.end
    return last, ack


def test_copies_of_the_last_frame_are_answered_only_as_often_as_the_transmitter_resends() -> None:
    h = _quiet_running_pair()
    last, ack = _last_exchange(h)
    sent = len(h.rx.sent)
    for _ in range(6):
        h.run_for(0.3)  # the receiver's radio is idle again
        h.inject("rx", last.payload)
    resends = max(h.rx_config.max_retries, h.rx_config.switch_attempts - 1)
    assert [a.payload for a in h.rx.sent[sent:]] == [ack.payload] * resends
    assert h.rx_link.rejected == {"replay": 6 - resends}
    assert h.rx_link.diagnostics(h.clock.now()).telegrams["duplicate_frames"] == 6
    # A new frame (the keepalive, or the status report of a power change) is answered, and so
    # are its copies, as often again.
    h.run_for(12.0)
    keepalive, keepalive_ack = _last_exchange(h)
    assert keepalive.frame_type in ("PROBE", "STATUS") and keepalive.start > last.end
    h.run_for(0.3)
    h.inject("rx", keepalive.payload)
    assert h.rx.sent[-1].payload == keepalive_ack.payload
    assert h.rx_link.state == "running" and h.delivered_ok()


def test_copies_faster_than_new_frames_get_at_most_one_answer_per_new_frame() -> None:
    answers = DuplicateAnswers(per_frame=2, saved=3)
    answered = 0
    for _ in range(100):  # an attacker sends five copies of every new frame
        answers.new_frame()
        for _ in range(5):
            if answers.refusal() is None:
                answers.answered()
                answered += 1
    assert answered <= 100 + 3
    assert answered >= 100  # a transmitter losing every ack still gets one answer per frame
    answers.new_frame()
    answers.answered()
    answers.answered()
    assert "at most 2" in (answers.refusal() or "")


def test_copies_of_the_last_frame_do_not_keep_a_silent_link_alive() -> None:
    h = _quiet_running_pair()
    last, _ = _last_exchange(h)
    h.channel.uplink_blocked = lambda _t: True  # the transmitter is gone; the attacker is not
    silence = timing.silence_timeout(h.rx_config, h.rx_link.settings)
    while h.clock.now() < last.end + silence - 5.0:
        h.run_for(4.0)
        h.inject("rx", last.payload)
    assert h.rx_link.state == "running"
    h.run_until(last.end + silence + 0.5)
    assert h.rx_link.state == "rendezvous"  # as if nobody had sent the copies


def test_copies_are_never_answered_from_the_reserve_kept_for_new_frames() -> None:
    h = _quiet_running_pair()
    last, _ = _last_exchange(h)
    budget = h.rx_link.budget
    now = h.clock.now()
    reserve_line = h.rx_config.budget_utilisation * budget.allowance_s
    budget.record(now - 1.0, reserve_line - budget.used(now))  # the budget is used up to it
    sent = len(h.rx.sent)
    h.inject("rx", last.payload)
    assert len(h.rx.sent) == sent
    suppressed = [f for _, kind, f in h.rx.events if kind == "ack_suppressed"]
    assert suppressed and suppressed[-1]["reason"] == "reserve"
    h.run_for(12.0)  # the keepalive, a new frame, still gets its ack from the reserve
    assert [a.frame_type for a in h.rx.sent[sent:]] == ["ACK"]
    assert h.tx_link.state == "running"


def test_a_replayed_discover_after_a_receiver_reboot_does_not_hide_the_transmitter() -> None:
    h = _running_pair()
    discover = next(a.payload for a in h.air if a.frame_type == "DISCOVER")
    rebooted = h.clock.now()
    h.restart_rx(keep_state=True)
    assert h.rx_link.state == "resume"
    h.inject("rx", discover)
    assert h.rx.sent[-1].frame_type == "CHALLENGE"  # it cannot tell a replay yet...
    assert h.rx_link.state == "handshake"
    h.run_for(10.0)
    # ...but the transmitter's frames, which open under no pending session, still earn the
    # RESYNC that brings the link back within seconds.
    assert "resync_sent" in [kind for t, kind, _ in h.rx.events if t >= rebooted]
    assert h.rx_link.state == "running" and h.rx_link.session_active
    assert "auth_failed" not in h.rx_link.rejected
    assert h.rx_link.rejected["no_session"] >= 1
    assert any(t > rebooted for t, _ in h.rx.delivered)
    assert h.delivered_ok()


def test_a_replayed_discover_cannot_displace_the_real_pending_handshake() -> None:
    rng = random.Random(3)
    rx = LinkSecurity(PSK, Direction.DOWNLINK, None, 1000, rng.randbytes)
    tx = LinkSecurity(PSK, Direction.UPLINK, CounterState(100), 1000, rng.randbytes)
    real = rng.randbytes(8), rng.randbytes(8)
    rx.start_session(*real, 99, pending=True)  # the real DISCOVER was answered...
    tx.start_session(*real, 7, pending=False)
    for _ in range(PENDING_LIMIT - 1):  # ...then replays, before its first session frame
        rx.start_session(rng.randbytes(8), rng.randbytes(8), 50, pending=True)
    frame = tx.seal_session(FrameType.STATUS, b"status").frame
    counter, body, confirmed = rx.open_session(rx.parse(frame))
    assert (counter, body, confirmed) == (100, b"status", True)
    assert rx.pending == [] and rx.session is not None
    # A frame under no held keys: auth_failed with a confirmed session...
    other = LinkSecurity(PSK, Direction.UPLINK, CounterState(200), 1000, rng.randbytes)
    other.start_session(rng.randbytes(8), rng.randbytes(8), 7, pending=False)
    stranger = other.seal_session(FrameType.STATUS, b"status").frame
    with pytest.raises(FrameError) as info:
        rx.open_session(rx.parse(stranger))
    assert info.value.reason is RejectReason.AUTH_FAILED
    # ...no_session without one, pending handshakes or not.
    rx.drop_sessions()
    rx.start_session(rng.randbytes(8), rng.randbytes(8), 50, pending=True)
    with pytest.raises(FrameError) as info:
        rx.open_session(rx.parse(stranger))
    assert info.value.reason is RejectReason.NO_SESSION


def test_replayed_discovers_do_not_hold_a_resumed_receiver_away_from_the_rendezvous() -> None:
    """Recorded DISCOVERs (the transmitter searched while the receiver was down) replayed at a
    resumed receiver: each answered one may be the transmitter, but it holds the receiver at
    its setting only for one handshake grace, not until the replays stop."""
    h = _running_pair()
    recorded = recorded_discovers(40, first_counter=5000)
    h.channel.uplink_blocked = lambda _t: True  # the transmitter went to the rendezvous
    h.channel.downlink_blocked = lambda _t: True
    rebooted = h.clock.now()
    h.restart_rx(keep_state=True)
    assert h.rx_link.state == "resume"
    settings = h.rx_link.settings
    silence = timing.silence_timeout(h.rx_config, settings)
    for payload in recorded:
        h.run_for(5.0)
        h.inject("rx", payload)
    assert h.rx_link.state in ("rendezvous", "handshake")
    assert h.rx_link.settings == h.rx_config.rendezvous()
    lost = [t for t, kind, _ in h.rx.events if kind == "link_lost" and t >= rebooted]
    grace = timing.handshake_grace(h.rx_config, settings)
    assert grace < 1.0  # the CHALLENGE and the transmitter's first frame at SF7/BW250
    assert lost and lost[0] <= rebooted + silence + grace + 1e-6


def test_replayed_discovers_do_not_starve_the_returning_transmitter() -> None:
    # The receiver misses the first DISCOVERs: the attacker records several, one answered.
    channel = Channel(path_loss_db=108.0, uplink_blocked=lambda t: t < 30.0)
    h = Harness(channel=channel, seed=1)
    h.run_until(100.0)
    assert h.tx_link.state == h.rx_link.state == "running"
    recorded = [a.payload for a in h.air if a.frame_type == "DISCOVER"]
    assert len(recorded) >= 3
    away = (100.0, 1300.0)  # the transmitter is away for 20 minutes

    def gone(t: float) -> bool:
        return away[0] <= t < away[1]

    h.channel.uplink_blocked = gone
    h.channel.downlink_blocked = gone
    replays = 0
    while h.clock.now() < away[1] + 300.0:  # a replay every 10 s, on and on
        h.run_for(10.0)
        h.inject("rx", recorded[replays % len(recorded)])
        replays += 1
    challenges = [a for a in h.rx.sent if a.frame_type == "CHALLENGE" and a.start >= away[0]]
    # Each recorded DISCOVER is answered at most once, and then only at a quarter of the
    # response rate (they are below the counters of the session that followed them)...
    assert len(challenges) <= len(recorded) + 1
    assert h.rx_link.rejected["replay"] >= replays - len(recorded)
    # ...so the returning transmitter finds tokens and the link is back within minutes.
    assert h.tx_link.state == h.rx_link.state == "running"
    back = [t for t, _ in h.rx.delivered if t >= away[1]]
    assert back and back[0] < away[1] + 240.0


def test_old_discovers_take_a_quarter_of_the_response_rate_and_never_starve_new_ones() -> None:
    """After a confirmed session, DISCOVERs at or below its counters (recorded before it, or
    from a transmitter that lost its counter store) are answered at a quarter of the response
    rate at most; a newer DISCOVER still finds a token at once."""
    h = _running_pair()
    h.channel.uplink_blocked = lambda _t: True
    h.channel.downlink_blocked = lambda _t: True
    h.run_for(timing.silence_timeout(h.rx_config, h.rx_link.settings) + 1.0)
    assert h.rx_link.state == "rendezvous" and not h.rx_link.session_active
    start = h.clock.now()
    assert h.tx_link._security.counter.next_value > 40  # the session's counters
    # Distinct recorded DISCOVERs, all below the counters of the session.
    old = [d for seed in range(20) for d in recorded_discovers(40, seed=seed)]
    for payload in old:  # one every 5 s for more than an hour
        h.run_for(5.0)
        h.inject("rx", payload)
    elapsed = h.clock.now() - start
    rendezvous = h.rx_config.rendezvous()
    quarter = timing.responder_refill_per_s(h.rx_config, rendezvous, timing.CHALLENGE_BYTES) / 4
    challenges = [a for a in h.rx.sent if a.frame_type == "CHALLENGE" and a.start >= start]
    assert 1 <= len(challenges) <= 2 + quarter * elapsed
    assert h.rx_link.rejected["replay"] >= len(old) - len(challenges) - 10
    h.run_for(10.0)  # the radio is idle
    sent = len(h.rx.sent)
    h.inject("rx", recorded_discovers(1, first_counter=10**6)[0])
    assert [a.frame_type for a in h.rx.sent[sent:]] == ["CHALLENGE"]


def test_the_discover_floor_follows_the_current_transmitter() -> None:
    discovers = DiscoverFilter(memory=2)
    discovers.confirmed(120)  # the first session frame of the current transmitter
    discovers.accepted(180)
    assert discovers.below_floor(180) and not discovers.below_floor(181)
    discovers.answered(200, b"r1")
    discovers.answered(201, b"r2")
    discovers.answered(202, b"r3")  # the memory is bounded: the oldest is forgotten
    assert not discovers.answered_before(200, b"r1")
    assert discovers.answered_before(202, b"r3") and not discovers.answered_before(202, b"r4")
    discovers.confirmed(3)  # a transmitter that lost its counter store was confirmed
    assert not discovers.below_floor(4) and discovers.below_floor(3)
