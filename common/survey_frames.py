"""The frames of `p1-lora survey` (see `common.survey`): a SURVEY probe sized like a typical
update and the SURVEYED report that answers it, sealed like the link's handshake frames.

Both are static-key frames (`frames.FrameType.SURVEY`/`SURVEYED`): authenticated and encrypted
with the pre-shared key's static direction keys, a fresh 8-byte random and a counter in every
nonce (`crypto.LinkKeys.static_nonce`), the header as associated data. A report also binds the
probe's random as associated data, as the link's CHALLENGE binds its DISCOVER's, so that it
answers that probe and no other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from p1lora.common.crypto import RANDOM_SIZE, LinkKeys
from p1lora.common.frames import (
    FrameError,
    FrameType,
    RejectReason,
    build_frame,
    open_frame,
    overhead,
    parse_frame,
)
from p1lora.common.link.tuning import TYPICAL_FRAME_BYTES
from p1lora.common.radio_types import ReceivedFrame

__all__ = [
    "PROBE_BYTES",
    "RENDEZVOUS_STEP",
    "REPORT_BYTES",
    "SurveyFrames",
    "SurveyKind",
    "SurveyProbe",
    "SurveyReport",
]

#: The `step` of frames exchanged at the rendezvous (not a rung of the ladder).
RENDEZVOUS_STEP: Final = 0xFF
_PROBE_BODY: Final = struct.Struct(">BBBBb")  # kind, step, seq, count, tx power (dBm)
_REPORT_BODY: Final = struct.Struct(">BBhbB")  # step, seq, rssi * 2, snr * 4, heard so far
#: A probe is as long as a typical update, so its fate is the update's.
PROBE_BYTES: Final = TYPICAL_FRAME_BYTES
REPORT_BYTES: Final = overhead(FrameType.SURVEYED) + _REPORT_BODY.size


class SurveyKind(IntEnum):
    """What a SURVEY frame asks."""

    HELLO = 0  # at the rendezvous: is anybody there?
    GOTO = 1  # at the rendezvous: let us both switch to rung `step`
    PROBE = 2  # on a rung: measure me (`seq` of `count`)
    DONE = 3  # at the rendezvous: the ladder is done


@dataclass(frozen=True, slots=True)
class SurveyProbe:
    kind: SurveyKind
    step: int
    seq: int
    count: int
    tx_power_dbm: int
    random: bytes
    counter: int


@dataclass(frozen=True, slots=True)
class SurveyReport:
    step: int
    seq: int
    rssi_dbm: float
    snr_db: float
    heard: int


class SurveyFrames:
    """Seal and open survey frames with the static keys of the pre-shared key."""

    def __init__(self, psk: bytes, rng: Callable[[int], bytes]) -> None:
        self._keys = LinkKeys(psk)
        self._rng = rng
        self._counter = int.from_bytes(rng(3), "big")  # fresh per run; nonces carry a random

    def seal(self, frame_type: FrameType, body: bytes, extra: bytes = b"") -> tuple[bytes, bytes]:
        self._counter = (self._counter + 1) & 0xFFFF_FFFF
        random = self._rng(RANDOM_SIZE)
        direction = frame_type.direction
        frame = build_frame(
            frame_type,
            self._keys.network_id,
            self._counter,
            body,
            cipher=self._keys.static(direction),
            nonce=LinkKeys.static_nonce(direction, random, self._counter),
            random=random,
            extra_associated=extra,
        )
        return frame, random

    def open(
        self, payload: bytes, frame_type: FrameType, extra: bytes = b""
    ) -> tuple[bytes, bytes, int]:
        """(body, random, counter) of an authentic `frame_type`; FrameError otherwise."""
        sealed = parse_frame(payload, self._keys.network_id, frame_type.direction)
        header = sealed.header
        if header.frame_type is not frame_type:
            raise FrameError(RejectReason.UNEXPECTED, f"{header.frame_type.name} in a survey")
        counter = header.full_counter
        assert counter is not None and header.random is not None  # static frames carry both
        nonce = LinkKeys.static_nonce(frame_type.direction, header.random, counter)
        body = open_frame(sealed, self._keys.static(frame_type.direction), nonce, extra)
        return body, header.random, counter

    def probe(
        self, kind: SurveyKind, step: int, seq: int, count: int, power: int
    ) -> tuple[bytes, bytes]:
        body = _PROBE_BODY.pack(kind, step, seq, count, power)
        padding = PROBE_BYTES - overhead(FrameType.SURVEY) - len(body)
        return self.seal(FrameType.SURVEY, body + self._rng(max(0, padding)))

    def open_probe(self, payload: bytes) -> SurveyProbe:
        body, random, counter = self.open(payload, FrameType.SURVEY)
        if len(body) < _PROBE_BODY.size:
            raise FrameError(RejectReason.MALFORMED, "survey probe too short")
        kind, step, seq, count, power = _PROBE_BODY.unpack_from(body)
        try:
            return SurveyProbe(SurveyKind(kind), step, seq, count, power, random, counter)
        except ValueError:
            raise FrameError(RejectReason.MALFORMED, f"survey probe kind {kind}") from None

    def report(self, probe: SurveyProbe, frame: ReceivedFrame, heard: int) -> bytes:
        body = _REPORT_BODY.pack(
            probe.step,
            probe.seq,
            max(-32768, min(32767, round(frame.rssi_dbm * 2))),
            max(-128, min(127, round(frame.snr_db * 4))),
            min(heard, 255),
        )
        return self.seal(FrameType.SURVEYED, body, extra=probe.random)[0]

    def open_report(self, payload: bytes, probe_random: bytes) -> SurveyReport:
        body, _, _ = self.open(payload, FrameType.SURVEYED, extra=probe_random)
        if len(body) != _REPORT_BODY.size:
            raise FrameError(RejectReason.MALFORMED, "survey report of the wrong size")
        step, seq, rssi2, snr4, heard = _REPORT_BODY.unpack(body)
        return SurveyReport(step, seq, rssi2 / 2, snr4 / 4, heard)
