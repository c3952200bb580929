"""An attacker on the channel: replayed, forged, bit-flipped, truncated, foreign frames."""

from __future__ import annotations

import logging
import random

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.crypto import Direction, LinkKeys
from p1lora.common.frames import FrameType, build_frame
from p1lora.common.link import Configure, LinkConfig, RxLink, Transmit, timing
from p1lora.common.radio_types import ReceivedFrame
from tests.helpers_link import PSK, Channel, Harness

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


def test_replayed_frames_are_rejected_and_never_acted_upon():
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


def test_forged_flipped_truncated_and_foreign_frames_are_rejected_by_reason():
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


def test_wrong_key_receiver_delivers_nothing():
    h = Harness(channel=Channel(path_loss_db=108.0), rx_psk=OTHER_PSK)
    h.run_until(120.0)
    assert h.rx.delivered == []
    assert h.rx_link.rejected["wrong_network"] > 0
    assert not h.rx.sent  # never answered a frame it could not authenticate
    assert h.tx_link.state == "rendezvous"


def test_exact_duplicate_of_the_last_frame_is_re_acked_not_redelivered():
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


def test_replayed_discovery_never_establishes_a_session():
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
    # frames do not authenticate under the new pending session.
    rx.frame_received(ReceivedFrame(session_frame, -80.0, 5.0, rx.settings, 1010.0))
    assert rx.rejected["auth_failed"] == 1
    deadline = rx.next_deadline()
    assert deadline is not None
    rx.tick(deadline + 1.0)
    assert rx.state == "rendezvous" and not rx.session_active


def test_discovery_flood_stays_within_the_response_rate_and_budget():
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


def test_rejections_are_logged_first_then_summarised(caplog):
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


def test_static_key_frames_from_a_neighbour_link_are_counted_as_wrong_network():
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


def test_random_garbage_never_raises_or_changes_anything():
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
