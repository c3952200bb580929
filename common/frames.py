"""The on-air frame: a tiny clear header, an AES-256-CCM body and an 8-byte tag.

Every p1-lora frame, of every type, is authenticated: the header is the AEAD's associated data
and the body is encrypted. Airtime is the scarce resource (a DSMR 5 update is about 12 bytes),
so the header is 5 bytes and the whole overhead of a session frame is 13 bytes.

Session frames (data, fragment, probe, switch, status, reply, ack):

| offset | size | field                                                                     |
|--------|------|---------------------------------------------------------------------------|
| 0      | 1    | version (bits 7-5, = 1), resend flag (bit 4), frame type (bits 3-0)         |
| 1      | 2    | network id (HKDF of the PSK): frames of other p1-lora links are set aside  |
| 3      | 2    | low 16 bits of the sender's 32-bit frame counter, big-endian                |
| 5      | n    | body, AES-256-CCM ciphertext                                               |
| 5+n    | 8    | CCM tag                                                                    |

Static-key frames (discover, challenge, resync: sent before a session exists) add, after the
counter, 2 bytes of counter high bits and an 8-byte random (their nonce entropy and the session
input), so their header is 15 bytes and their overhead 23.

| code | type      | direction | key     | purpose                                                |
|------|-----------|-----------|---------|--------------------------------------------------------|
| 0x01 | DISCOVER  | up        | static  | transmitter looks for its receiver; carries tx random  |
| 0x02 | CHALLENGE | down      | static  | receiver answers; carries rx random; AD binds tx random|
| 0x03 | RESYNC    | down      | static  | receiver lost its session; names a recent tx counter   |
| 0x04 | DATA      | up        | session | one telegram update (codec payload)                    |
| 0x05 | FRAGMENT  | up        | session | one fragment of a multi-frame (key) update             |
| 0x06 | PROBE     | up        | session | link test sized like an update                         |
| 0x07 | SWITCH    | up        | session | "change to these settings" (two-phase switch, phase 1) |
| 0x08 | STATUS    | up        | session | transmitter status report                              |
| 0x09 | REPLY     | up        | session | reply to a downlink command                            |
| 0x0A | ACK       | down      | session | acknowledgement + link report (+ a downlink command)   |
| 0x0B | SURVEY    | up        | static  | `p1-lora survey` probe (common/survey.py)              |
| 0x0C | SURVEYED  | down      | static  | `p1-lora survey` report: how the probe was heard       |
| 0x0D | BATCH     | up        | session | several telegram updates, oldest first (one ack)       |

The resend flag marks a session frame that carries the same body as the sender's previous
frame of its type, sealed again under a fresh counter (its answer was lost). The receiver
answers it again without processing it twice; an exact copy of any frame is a replay.

Counters: each side keeps one 32-bit counter over all frames it sends. Session frames carry the
low 16 bits and the receiver reconstructs the full value as the one nearest the last counter it
accepted from that peer (LoRaWAN's FCnt rule). The nonce always uses the full value, so a wrong
reconstruction cannot authenticate.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum

from p1lora.common.crypto import (
    NETWORK_ID_SIZE,
    RANDOM_SIZE,
    TAG_SIZE,
    AuthenticationError,
    Direction,
    FrameCipher,
)

__all__ = [
    "HEADER_SIZE",
    "MAX_FRAME",
    "RESEND_FLAG",
    "STATIC_HEADER_SIZE",
    "TYPE_MASK",
    "VERSION",
    "FrameError",
    "FrameType",
    "Header",
    "RejectReason",
    "SealedFrame",
    "build_frame",
    "network_id_of",
    "open_frame",
    "overhead",
    "parse_frame",
    "reconstruct_counter",
]

VERSION = 1
HEADER_SIZE = 5
STATIC_HEADER_SIZE = HEADER_SIZE + 2 + RANDOM_SIZE
#: Largest LoRa payload (SX127x FIFO).
MAX_FRAME = 255


#: Header byte 0, bit 4: the body is a resend of the sender's previous frame of this type.
RESEND_FLAG = 0x10
#: Header byte 0, bits 3-0: the frame type.
TYPE_MASK = 0x0F


class FrameType(IntEnum):
    """Frame type codes (4 bits); see the module table."""

    DISCOVER = 0x01
    CHALLENGE = 0x02
    RESYNC = 0x03
    DATA = 0x04
    FRAGMENT = 0x05
    PROBE = 0x06
    SWITCH = 0x07
    STATUS = 0x08
    REPLY = 0x09
    ACK = 0x0A
    SURVEY = 0x0B
    SURVEYED = 0x0C
    BATCH = 0x0D

    @property
    def direction(self) -> Direction:
        return _DIRECTION[self]

    @property
    def static_key(self) -> bool:
        """True for the frames sent before a session exists (longer header, static key)."""
        return self in _STATIC

    @property
    def header_size(self) -> int:
        return STATIC_HEADER_SIZE if self.static_key else HEADER_SIZE


_STATIC = frozenset(
    {
        FrameType.DISCOVER,
        FrameType.CHALLENGE,
        FrameType.RESYNC,
        FrameType.SURVEY,
        FrameType.SURVEYED,
    }
)
_DIRECTION = {
    t: Direction.DOWNLINK
    if t in (FrameType.CHALLENGE, FrameType.RESYNC, FrameType.ACK, FrameType.SURVEYED)
    else Direction.UPLINK
    for t in FrameType
}


def overhead(frame_type: FrameType) -> int:
    """Bytes a frame of this type adds around its body (header + tag)."""
    return frame_type.header_size + TAG_SIZE


class RejectReason(StrEnum):
    """Why a received frame was set aside. Counted per reason; never acted upon."""

    TRUNCATED = "truncated"  # shorter than header + tag
    BAD_VERSION = "bad_version"  # a protocol version we do not speak
    BAD_TYPE = "bad_type"  # unknown frame type code
    WRONG_NETWORK = "wrong_network"  # another p1-lora link (different PSK) or noise
    WRONG_DIRECTION = "wrong_direction"  # a frame type this side never receives
    AUTH_FAILED = "auth_failed"  # forged, bit-flipped, or under another key
    REPLAY = "replay"  # authentic but not newer than the last accepted frame
    STALE = "stale"  # authentic but refers to something we no longer know (old resync)
    NO_SESSION = "no_session"  # a session frame while no session exists
    MALFORMED = "malformed"  # authentic but the body does not parse
    UNEXPECTED = "unexpected"  # a frame type this exchange does not use (a link frame in a survey)


class FrameError(ValueError):
    """A received frame that cannot be accepted, with the counted reason."""

    def __init__(self, reason: RejectReason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Header:
    """The clear part of a frame (authenticated as associated data)."""

    frame_type: FrameType
    network_id: bytes
    counter_low: int
    counter_high: int | None = None
    random: bytes | None = None
    #: The body repeats the sender's previous frame of this type (a resend, fresh counter).
    resend: bool = False

    def encode(self) -> bytes:
        flag = RESEND_FLAG if self.resend else 0
        head = bytes(((VERSION << 5) | flag | int(self.frame_type),)) + self.network_id
        head += self.counter_low.to_bytes(2, "big")
        if self.frame_type.static_key:
            if self.counter_high is None or self.random is None:
                raise ValueError(f"{self.frame_type.name} needs the counter high bits and a random")
            head += self.counter_high.to_bytes(2, "big") + self.random
        return head

    @property
    def full_counter(self) -> int | None:
        """The full 32-bit counter, known only for static-key frames."""
        if self.counter_high is None:
            return None
        return (self.counter_high << 16) | self.counter_low


@dataclass(frozen=True, slots=True)
class SealedFrame:
    """A parsed but not yet authenticated frame."""

    header: Header
    associated: bytes  # the header bytes as sent (AEAD associated data)
    sealed: bytes  # ciphertext || tag
    raw: bytes  # the whole frame, for exact-duplicate detection


def build_frame(  # noqa: PLR0913 - the header fields positional, sealing details keyword-only
    frame_type: FrameType,
    network_id: bytes,
    counter: int,
    body: bytes,
    *,
    cipher: FrameCipher,
    nonce: bytes,
    random: bytes | None = None,
    extra_associated: bytes = b"",
    resend: bool = False,
) -> bytes:
    """Seal `body` into a complete frame. `extra_associated` is authenticated but not sent
    (a challenge binds the discovery's random this way without spending airtime on it);
    `resend` sets the header's resend flag."""
    header = Header(
        frame_type,
        network_id,
        counter & 0xFFFF,
        counter >> 16 if frame_type.static_key else None,
        random if frame_type.static_key else None,
        resend,
    )
    head = header.encode()
    frame = head + cipher.seal(nonce, body, head + extra_associated)
    if len(frame) > MAX_FRAME:
        raise ValueError(f"{frame_type.name} frame of {len(frame)} bytes exceeds {MAX_FRAME}")
    return frame


def network_id_of(frame: bytes) -> bytes:
    """The network id a frame names (a neighbour's frame is rejected as `WRONG_NETWORK`;
    the transmitter counts its neighbours by these ids)."""
    return bytes(frame[1 : 1 + NETWORK_ID_SIZE])


def parse_frame(frame: bytes, network_id: bytes, receiving: Direction) -> SealedFrame:
    """Split a received frame into header and sealed body; FrameError for what is never ours.

    Checks are ordered from cheapest to dearest, and nothing here decrypts.
    """
    if len(frame) < HEADER_SIZE + TAG_SIZE:
        raise FrameError(RejectReason.TRUNCATED, f"frame of {len(frame)} bytes is too short")
    version, code = frame[0] >> 5, frame[0] & TYPE_MASK
    if version != VERSION:
        raise FrameError(RejectReason.BAD_VERSION, f"protocol version {version} is not {VERSION}")
    try:
        frame_type = FrameType(code)
    except ValueError:
        raise FrameError(RejectReason.BAD_TYPE, f"unknown frame type {code:#04x}") from None
    if frame[1 : 1 + NETWORK_ID_SIZE] != network_id:
        raise FrameError(RejectReason.WRONG_NETWORK, "frame of another network")
    if frame_type.direction is not receiving:
        raise FrameError(
            RejectReason.WRONG_DIRECTION, f"{frame_type.name} is never sent to this side"
        )
    size = frame_type.header_size
    if len(frame) < size + TAG_SIZE:
        raise FrameError(
            RejectReason.TRUNCATED, f"{frame_type.name} of {len(frame)} bytes is too short"
        )
    low = int.from_bytes(frame[3:5], "big")
    high = int.from_bytes(frame[5:7], "big") if frame_type.static_key else None
    random = bytes(frame[7 : 7 + RANDOM_SIZE]) if frame_type.static_key else None
    resend = bool(frame[0] & RESEND_FLAG)
    header = Header(frame_type, bytes(frame[1:3]), low, high, random, resend)
    return SealedFrame(header, bytes(frame[:size]), bytes(frame[size:]), bytes(frame))


def open_frame(
    sealed: SealedFrame, cipher: FrameCipher, nonce: bytes, extra_associated: bytes = b""
) -> bytes:
    """Authenticate and decrypt; FrameError(AUTH_FAILED) when the AEAD says no."""
    try:
        return cipher.open(nonce, sealed.sealed, sealed.associated + extra_associated)
    except AuthenticationError:
        raise FrameError(
            RejectReason.AUTH_FAILED, f"{sealed.header.frame_type.name} did not authenticate"
        ) from None


def reconstruct_counter(last: int, low: int) -> int:
    """The 32-bit counter with low bits `low` nearest to `last` (the last accepted counter).

    Like LoRaWAN's FCnt: valid while fewer than 2^15 frames separate the two, which the link's
    timeouts guarantee (a session ends long before 32768 frames go missing). The result may be
    below `last`; authentication still decides, then the replay check.
    """
    candidate = (last & ~0xFFFF) | (low & 0xFFFF)
    if candidate < last - 0x8000:
        candidate += 0x10000
    elif candidate > last + 0x8000 and candidate >= 0x10000:
        candidate -= 0x10000
    if candidate > 0xFFFF_FFFF:
        candidate -= 0x10000
    return candidate
