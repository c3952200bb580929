"""The loopback-UDP channel runs the same physics as the in-process one: a foreign preamble that
crosses processes occupies the receiver, an IQ-inverted one only interferes (real time)."""

from __future__ import annotations

import dataclasses

from p1lora.hardware.udp_channel import RelayedFrame

from .helpers_radio import eventually
from .test_udp_channel import _joined, nodes  # noqa: F401  (the fixture)


def test_foreign_and_inverted_frames_from_another_process(nodes):  # noqa: F811
    hub, member = nodes("hub"), nodes("member")
    _joined(hub, 1)
    ours = member.udp.channel.chip("member").air_params()
    foreign = dataclasses.replace(ours, sync_word=0x34)
    inverted = dataclasses.replace(ours, invert_iq=True)
    for sender, params in (("lorawan-device", foreign), ("lorawan-gateway", inverted)):
        hub.udp.send_frame(
            RelayedFrame(
                sender=sender,
                frame_id=1,
                params=params,
                payload=bytes(20),
                tx_power_dbm=14.0,
                airtime=0.05,
            )
        )
    stats = member.udp.channel.stats
    eventually(lambda: stats.frames_sent == 2, timeout=5)
    eventually(lambda: stats.foreign_busy_s > 0, timeout=5)
    assert stats.foreign_preambles == 1  # the other sync word locked the receiver
    assert stats.settings_mismatch == 2  # neither was decoded
    assert stats.delivered == 0
