"""Attack smoke test on the real processes (issue 7): the radio channel itself is hostile.

The test process owns the hub of the loopback radio channel (`tests.helpers_faults`), so it
hears every frame between `p1-lora-tx` and `p1-lora-rx` like a third radio in range would. It
records legitimate frames, lets the link move on, then transmits, at the link's own settings:
old frames replayed byte for byte, frames forged under the link's header (a valid network id
and a fresh counter, but no key), and bit-flipped copies of real frames. Nothing it sends may be
accepted: the published states stay exactly the meter's (no old timestamp, no changed value),
deliveries continue, the bridge's "Frames rejected" diagnostic rises with the reasons, and
both daemons log the rejections. The in-process attack suite (tests/test_attacks.py) covers
floods and budget attacks; this one proves the same holds across real processes.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from p1lora.hardware.udp_channel import RelayedFrame
from tests.helpers_faults import TIMEOUT, fault_rig, since
from tests.helpers_mqtt import wait_until
from tests.mqtt_broker import MosquittoBroker

pytestmark = [pytest.mark.attacks, pytest.mark.e2e, pytest.mark.slow]

#: Header: version/type, network id (2 bytes), low counter bits (2 bytes).
HEADER = 5
#: Spacing of injected frames: each is ~40 ms on air at SF7/BW250; the gap lets the receiver
#: get back to listening (and leaves room for the legitimate traffic in between).
SPACING_S = 0.35


def _channel(frame: RelayedFrame) -> tuple[int, int, int]:
    """Frequency, SF and bandwidth: what decides whether a receiver can hear the frame."""
    return frame.params.frf, frame.params.sf, frame.params.bw_hz


def _flip(payload: bytes, index: int, bit: int = 0) -> bytes:
    data = bytearray(payload)
    data[index] ^= 1 << bit
    return bytes(data)


def _forge(frame: RelayedFrame, step: int) -> bytes:
    """The link's header with a counter ahead of the real one, and no valid ciphertext."""
    header = bytearray(frame.payload[:HEADER])
    counter = (int.from_bytes(header[3:5], "big") + 100 + step) & 0xFFFF
    header[3:5] = counter.to_bytes(2, "big")
    return bytes(header) + os.urandom(len(frame.payload) - HEADER)


def test_replayed_forged_and_bit_flipped_frames_are_rejected(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        tx.wait_log(r"tx: probing -> running \(switch confirmed\)")
        settled = time.monotonic()
        tx_pid, rx_pid = tx.process.pid, rx.process.pid
        # Record: a few legitimate frames each way at the settled link's settings.
        assert wait_until(
            lambda: (
                len(rig.channel.heard(since=settled, pid=tx_pid)) >= 12
                and len(rig.channel.heard(since=settled, pid=rx_pid)) >= 6
            ),
            TIMEOUT,
        ), "the link carried too few frames to record"
        # Let the link move on, so that the recorded frames are old news.
        rig.wait_states(5)
        uplink = [h.frame for h in rig.channel.heard(since=settled, pid=tx_pid)]
        downlink = [h.frame for h in rig.channel.heard(since=settled, pid=rx_pid)]
        current = _channel(uplink[-1])
        uplink = [f for f in uplink if _channel(f) == current][:8]
        downlink = [f for f in downlink if _channel(f) == current][:4]
        assert len(uplink) >= 6 and len(downlink) >= 3

        before = rig.bridge()
        rejected_before = before.get("frames_rejected") or 0
        states_before = rig.state_count()
        mark_rx, mark_tx = since(rx), since(tx)

        attacks: list[tuple[RelayedFrame, bytes]] = []
        attacks += [(f, f.payload) for f in uplink[:5]]  # replays
        attacks += [(uplink[0], _forge(uplink[0], n)) for n in range(3)]  # forgeries
        attacks += [(f, _flip(f.payload, len(f.payload) - 1)) for f in uplink[:3]]  # tag bit
        attacks += [(uplink[1], _flip(uplink[1].payload, 4, 2))]  # a counter bit
        attacks += [(f, f.payload) for f in downlink[:3]]  # old acks, towards the transmitter
        uplink_attacks = len(attacks) - 3
        for frame, payload in attacks:
            rig.channel.inject(frame, payload)
            time.sleep(SPACING_S)  # pacing the attacker, not waiting for a result

        # Rejected, counted with their reasons, and said in the log. A few injected frames may
        # collide with legitimate ones on the air (then neither is heard), hence "at least
        # half" rather than all of them.
        bridge = rig.wait_bridge(
            lambda b: (
                (b.get("frames_rejected") or 0) - rejected_before >= uplink_attacks // 2
                and {"replay", "auth_failed"}
                <= set(b["attributes"]["frames_rejected"].get("reasons", {}))
            ),
            "the injected frames among the rejected ones",
        )
        reasons = bridge["attributes"]["frames_rejected"]["reasons"]
        rx.wait_log(r"rx rejected a frame \(replay\)", after=mark_rx)
        rx.wait_log(r"rx rejected a frame \(auth_failed\)", after=mark_rx)
        tx.wait_log(r"tx rejected a frame \((replay|wrong_direction|auth_failed)\)", after=mark_tx)

        # Nothing was accepted: states go on, all exactly the meter's, never back in time.
        rig.wait_states(5, after=states_before)
        result = rig.verify()
        assert result.raw_telegrams >= 5
        assert bridge["link_state"] == "running"
        assert "rx: running -> rendezvous" not in rx.log()[mark_rx:]
        assert not re.search(r"tx: \w+ -> rendezvous", tx.log()[mark_tx:]), reasons
