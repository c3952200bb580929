"""The frame format: tiny header, every field authenticated, each rejection with its reason."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p1lora.common.crypto import TAG_SIZE, Direction, LinkKeys, derive_session
from p1lora.common.frames import (
    HEADER_SIZE,
    MAX_FRAME,
    STATIC_HEADER_SIZE,
    FrameError,
    FrameType,
    RejectReason,
    build_frame,
    open_frame,
    overhead,
    parse_frame,
    reconstruct_counter,
)

PSK = bytes(range(32))
KEYS = LinkKeys(PSK)
NET = KEYS.network_id
R = b"\x11" * 8
SESSION = derive_session(PSK, R, b"\x22" * 8)


def _session_frame(counter: int = 0x12345, body: bytes = b"update") -> bytes:
    return build_frame(
        FrameType.DATA,
        NET,
        counter,
        body,
        cipher=SESSION.uplink,
        nonce=SESSION.nonce(Direction.UPLINK, counter),
    )


def _static_frame(counter: int = 0x10002, body: bytes = b"\x00\x0e") -> bytes:
    return build_frame(
        FrameType.DISCOVER,
        NET,
        counter,
        body,
        cipher=KEYS.static(Direction.UPLINK),
        nonce=KEYS.static_nonce(Direction.UPLINK, R, counter),
        random=R,
    )


def _open_session(frame: bytes, counter: int) -> bytes:
    sealed = parse_frame(frame, NET, Direction.UPLINK)
    return open_frame(sealed, SESSION.uplink, SESSION.nonce(Direction.UPLINK, counter))


def test_session_frame_overhead_is_13_bytes_and_header_is_clear():
    frame = _session_frame(0x12345, b"x" * 12)
    assert overhead(FrameType.DATA) == HEADER_SIZE + TAG_SIZE == 13
    assert len(frame) == 12 + 13  # a typical DSMR 5 update: 25 bytes on air
    assert frame[0] == (1 << 5) | FrameType.DATA
    assert frame[1:3] == NET
    assert frame[3:5] == (0x2345).to_bytes(2, "big")  # only the low 16 bits travel
    sealed = parse_frame(frame, NET, Direction.UPLINK)
    assert sealed.header.counter_low == 0x2345
    assert sealed.header.full_counter is None
    assert _open_session(frame, 0x12345) == b"x" * 12


def test_static_frame_carries_full_counter_and_random():
    frame = _static_frame(0x10002)
    assert overhead(FrameType.DISCOVER) == STATIC_HEADER_SIZE + TAG_SIZE == 23
    sealed = parse_frame(frame, NET, Direction.UPLINK)
    assert sealed.header.full_counter == 0x10002
    assert sealed.header.random == R
    nonce = KEYS.static_nonce(Direction.UPLINK, R, 0x10002)
    assert open_frame(sealed, KEYS.static(Direction.UPLINK), nonce) == b"\x00\x0e"


def test_every_type_has_one_direction_and_key_kind():
    static = {t for t in FrameType if t.static_key}
    assert static == {
        FrameType.DISCOVER,
        FrameType.CHALLENGE,
        FrameType.RESYNC,
        FrameType.SURVEY,
        FrameType.SURVEYED,
    }
    downlink = {t for t in FrameType if t.direction is Direction.DOWNLINK}
    assert downlink == {
        FrameType.CHALLENGE,
        FrameType.RESYNC,
        FrameType.ACK,
        FrameType.SURVEYED,
    }


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda f: f[: HEADER_SIZE + TAG_SIZE - 1], RejectReason.TRUNCATED),
        (lambda f: bytes([(2 << 5) | f[0] & 0x1F]) + f[1:], RejectReason.BAD_VERSION),
        (lambda f: bytes([(1 << 5) | 0x1F]) + f[1:], RejectReason.BAD_TYPE),
        (lambda f: f[:1] + bytes([f[1] ^ 1]) + f[2:], RejectReason.WRONG_NETWORK),
        (lambda f: bytes([(1 << 5) | FrameType.ACK]) + f[1:], RejectReason.WRONG_DIRECTION),
    ],
)
def test_parse_rejects_with_reason(mutate, reason):
    with pytest.raises(FrameError) as info:
        parse_frame(mutate(_session_frame()), NET, Direction.UPLINK)
    assert info.value.reason is reason


def test_static_frame_cut_inside_its_longer_header_is_truncated():
    frame = _static_frame()
    with pytest.raises(FrameError) as info:
        parse_frame(frame[: STATIC_HEADER_SIZE + TAG_SIZE - 1], NET, Direction.UPLINK)
    assert info.value.reason is RejectReason.TRUNCATED


def test_every_single_bit_flip_anywhere_is_rejected():
    frame = _session_frame(0x12345, b"meter update")
    for bit in range(len(frame) * 8):
        damaged = bytearray(frame)
        damaged[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises(FrameError):
            _open_session(bytes(damaged), 0x12345)


def test_every_truncation_is_rejected():
    frame = _static_frame()
    for size in range(len(frame)):
        with pytest.raises(FrameError):
            sealed = parse_frame(frame[:size], NET, Direction.UPLINK)
            nonce = KEYS.static_nonce(Direction.UPLINK, R, 0x10002)
            open_frame(sealed, KEYS.static(Direction.UPLINK), nonce)


def test_wrong_key_with_forged_network_id_fails_authentication():
    other = derive_session(bytes(range(1, 33)), R, R)
    forged = build_frame(
        FrameType.DATA, NET, 5, b"evil", cipher=other.uplink, nonce=other.nonce(Direction.UPLINK, 5)
    )
    with pytest.raises(FrameError) as info:
        _open_session(forged, 5)
    assert info.value.reason is RejectReason.AUTH_FAILED


def test_extra_associated_data_binds_without_being_sent():
    cipher = KEYS.static(Direction.DOWNLINK)
    nonce = KEYS.static_nonce(Direction.DOWNLINK, R, 3)
    frame = build_frame(
        FrameType.CHALLENGE,
        NET,
        3,
        b"hi",
        cipher=cipher,
        nonce=nonce,
        random=R,
        extra_associated=b"discovery random",
    )
    sealed = parse_frame(frame, NET, Direction.DOWNLINK)
    assert open_frame(sealed, cipher, nonce, b"discovery random") == b"hi"
    with pytest.raises(FrameError):
        open_frame(sealed, cipher, nonce, b"another random!!")


def test_oversized_frames_are_refused_when_built():
    with pytest.raises(ValueError, match="exceeds"):
        _session_frame(1, b"x" * (MAX_FRAME - 12))


@given(st.integers(0, 2**32 - 1), st.integers(-0x7FFF, 0x7FFF))
def test_counter_reconstruction_recovers_nearby_counters(last, delta):
    true = last + delta
    if not 0 <= true < 2**32:
        return
    assert reconstruct_counter(last, true & 0xFFFF) == true


def test_counter_reconstruction_examples():
    assert reconstruct_counter(0x1FFFF, 0x0002) == 0x20002  # wraps the low 16 bits forward
    assert reconstruct_counter(0x20002, 0xFFFF) == 0x1FFFF  # an older frame stays older
    assert reconstruct_counter(5, 3) == 3
    assert reconstruct_counter(0xFFFF_FFF0, 0x0005) <= 0xFFFF_FFFF
