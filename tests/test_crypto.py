"""Key derivation and the AEAD: keys separate by purpose, tampering and truncation never pass."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p1lora.common.crypto import (
    NETWORK_ID_SIZE,
    NONCE_SIZE,
    RANDOM_SIZE,
    TAG_SIZE,
    AuthenticationError,
    Direction,
    FrameCipher,
    LinkKeys,
    check_psk,
    derive_session,
    hkdf,
)

PSK = bytes(range(32))
OTHER = bytes(range(1, 33))
R1 = b"\x01" * RANDOM_SIZE
R2 = b"\x02" * RANDOM_SIZE


def test_network_id_is_short_deterministic_and_per_psk():
    a, b = LinkKeys(PSK), LinkKeys(PSK)
    assert len(a.network_id) == NETWORK_ID_SIZE
    assert a.network_id == b.network_id
    assert LinkKeys(OTHER).network_id != a.network_id


def test_direction_keys_differ_and_differ_from_session_keys():
    keys = LinkKeys(PSK)
    up, down = keys.static(Direction.UPLINK), keys.static(Direction.DOWNLINK)
    assert not up.same_key(down)
    session = keys.session(R1, R2)
    assert not session.uplink.same_key(session.downlink)
    assert session.uplink_prefix != session.downlink_prefix
    for static in (up, down):
        assert not static.same_key(session.uplink)
        assert not static.same_key(session.downlink)


def test_sessions_differ_when_either_side_contributes_new_randomness():
    base = derive_session(PSK, R1, R2)
    again = derive_session(PSK, R1, R2)
    assert base.uplink.same_key(again.uplink)  # deterministic from the same inputs
    assert not base.uplink.same_key(derive_session(PSK, R1, b"\x03" * 8).uplink)
    assert not base.uplink.same_key(derive_session(PSK, b"\x03" * 8, R2).uplink)
    assert not base.uplink.same_key(derive_session(OTHER, R1, R2).uplink)
    # Swapping roles gives different keys too (no reflection between directions).
    assert not base.uplink.same_key(derive_session(PSK, R2, R1).uplink)


def test_hkdf_labels_separate_purposes():
    assert hkdf(PSK, b"a", 32) != hkdf(PSK, b"b", 32)
    assert hkdf(PSK, b"a", 32, salt=b"x") != hkdf(PSK, b"a", 32)


def test_seal_open_round_trip_and_tag_size():
    cipher = LinkKeys(PSK).static(Direction.UPLINK)
    nonce = LinkKeys.static_nonce(Direction.UPLINK, R1, 7)
    sealed = cipher.seal(nonce, b"hello", b"header")
    assert len(sealed) == len(b"hello") + TAG_SIZE
    assert cipher.open(nonce, sealed, b"header") == b"hello"


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=0, max_size=40), st.data())
def test_any_single_bit_flip_is_rejected(plaintext, data):
    cipher = LinkKeys(PSK).static(Direction.UPLINK)
    nonce = LinkKeys.static_nonce(Direction.UPLINK, R1, 1)
    sealed = bytearray(cipher.seal(nonce, plaintext, b"ad"))
    bit = data.draw(st.integers(0, len(sealed) * 8 - 1))
    sealed[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(AuthenticationError):
        cipher.open(nonce, bytes(sealed), b"ad")


def test_tampered_associated_data_nonce_or_key_is_rejected():
    keys = LinkKeys(PSK)
    cipher = keys.static(Direction.UPLINK)
    nonce = LinkKeys.static_nonce(Direction.UPLINK, R1, 1)
    sealed = cipher.seal(nonce, b"payload", b"ad")
    with pytest.raises(AuthenticationError):
        cipher.open(nonce, sealed, b"aD")
    with pytest.raises(AuthenticationError):
        cipher.open(LinkKeys.static_nonce(Direction.UPLINK, R1, 2), sealed, b"ad")
    with pytest.raises(AuthenticationError):
        keys.static(Direction.DOWNLINK).open(nonce, sealed, b"ad")
    with pytest.raises(AuthenticationError):
        LinkKeys(OTHER).static(Direction.UPLINK).open(nonce, sealed, b"ad")


@pytest.mark.parametrize("cut", [1, 4, TAG_SIZE, TAG_SIZE + 3])
def test_truncation_is_rejected(cut):
    cipher = LinkKeys(PSK).static(Direction.DOWNLINK)
    nonce = LinkKeys.static_nonce(Direction.DOWNLINK, R2, 9)
    sealed = cipher.seal(nonce, b"abc", b"")
    with pytest.raises(AuthenticationError):
        cipher.open(nonce, sealed[:-cut], b"")


def test_nonces_carry_direction_random_and_counter():
    n_up = LinkKeys.static_nonce(Direction.UPLINK, R1, 5)
    n_down = LinkKeys.static_nonce(Direction.DOWNLINK, R1, 5)
    assert len(n_up) == NONCE_SIZE
    assert n_up != n_down
    assert n_up != LinkKeys.static_nonce(Direction.UPLINK, R2, 5)
    assert n_up != LinkKeys.static_nonce(Direction.UPLINK, R1, 6)
    session = derive_session(PSK, R1, R2)
    assert len(session.nonce(Direction.UPLINK, 5)) == NONCE_SIZE
    assert session.nonce(Direction.UPLINK, 5) != session.nonce(Direction.UPLINK, 6)
    with pytest.raises(ValueError, match="counter"):
        session.nonce(Direction.UPLINK, 2**32)


def test_bad_keys_give_clear_errors_without_key_material():
    secret = b"S" * 31
    with pytest.raises(ValueError, match="32 bytes") as info:
        check_psk(secret)
    assert "SSSS" not in str(info.value)
    with pytest.raises(TypeError):
        check_psk("not bytes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FrameCipher(b"k" * 16, "short")


def test_repr_never_shows_keys():
    keys = LinkKeys(PSK)
    session = keys.session(R1, R2)
    text = repr(keys) + repr(session) + repr(keys.static(Direction.UPLINK))
    assert PSK.hex() not in text
    assert "secret" in repr(session)
    assert keys.network_id.hex() in repr(keys)
