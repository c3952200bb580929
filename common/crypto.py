"""Keys, nonces and the AEAD for p1-lora frames (AES-256-CCM, 8-byte tag, HKDF-SHA256).

Why these choices:

- **AES-256-CCM with an 8-byte tag** (`cryptography`'s `AESCCM`). CCM is safe with short tags and
  every byte costs airtime at SF12; 8 bytes leave a forger a 2^-64 chance per try, and the duty
  cycle limits tries to a few thousand per hour. The AEAD compares tags in constant time: this
  module never compares a tag itself.
- **One pre-shared key, many derived keys.** HKDF-SHA256 derives from the 32-byte PSK: a 2-byte
  *network id* (public, in every header, so frames of a neighbour's p1-lora link in the same
  building are set aside cheaply and counted as "wrong network" instead of costing a decryption),
  one *static* key per direction (for the few frames exchanged before a session exists: discovery,
  challenge, resync) and, per session, one key and one nonce prefix per direction derived from
  **both** sides' randomness (the transmitter's discovery random and the receiver's challenge
  random). A session key therefore never existed before, so its nonces (prefix || counter) can
  never repeat even if a counter store is lost or rolled back.
- **Static-key frames carry their own randomness.** Their nonce is direction || an 8-byte
  random value sent in clear || the 32-bit frame counter, so even a transmitter that lost its
  counter store cannot repeat a nonce under the static key (a 64-bit random collides after about
  2^32 discoveries, far more than a lifetime of handshakes).

Nothing here logs or formats key material: `repr()` of a cipher shows no key, and errors
never carry key bytes.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import IntEnum

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = [
    "COUNTER_MAX",
    "KEY_SIZE",
    "NETWORK_ID_SIZE",
    "NONCE_SIZE",
    "RANDOM_SIZE",
    "TAG_SIZE",
    "AuthenticationError",
    "Direction",
    "FrameCipher",
    "LinkKeys",
    "SessionKeys",
    "check_psk",
    "derive_session",
    "hkdf",
]

#: The pre-shared key is 32 bytes (AES-256), as written by `p1-lora keygen`.
KEY_SIZE = 32
#: CCM tag length on air (bytes).
TAG_SIZE = 8
#: CCM nonce length; 13 bytes leaves a 2-byte length field (messages up to 64 KiB).
NONCE_SIZE = 13
#: Bytes of the public network id in every header.
NETWORK_ID_SIZE = 2
#: Random bytes a static-key frame carries in clear (its nonce entropy and the session input).
RANDOM_SIZE = 8
#: Session nonce prefix length (NONCE_SIZE minus the 4-byte counter).
_PREFIX_SIZE = NONCE_SIZE - 4
#: Largest frame counter: the nonce holds it in 32 bits.
COUNTER_MAX = 0xFFFF_FFFF

_LABEL = b"p1lora/1 "


class Direction(IntEnum):
    """Who sends: every key and nonce is bound to one direction so the two never collide."""

    UPLINK = 0  # transmitter (meter closet) -> receiver (home)
    DOWNLINK = 1  # receiver -> transmitter

    @property
    def other(self) -> Direction:
        return Direction.DOWNLINK if self is Direction.UPLINK else Direction.UPLINK


class AuthenticationError(ValueError):
    """The frame did not authenticate: forged, corrupted, truncated or under another key."""


def check_psk(psk: bytes) -> None:
    """Reject a key of the wrong type or size with a message that never shows the key."""
    if not isinstance(psk, bytes | bytearray):
        raise TypeError("the pre-shared key must be bytes")
    if len(psk) != KEY_SIZE:
        raise ValueError(f"the pre-shared key must be {KEY_SIZE} bytes, got {len(psk)} bytes")


def hkdf(psk: bytes, info: bytes, length: int, salt: bytes | None = None) -> bytes:
    """HKDF-SHA256 (RFC 5869) of the PSK with a p1-lora label in `info` (domain separation)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=_LABEL + info).derive(
        bytes(psk)
    )


class FrameCipher:
    """AES-256-CCM with an 8-byte tag under one key; the caller supplies the nonce.

    `seal` and `open` are the only places p1-lora encrypts or decrypts. The key is kept private
    and never shown by `repr`.
    """

    __slots__ = ("_aead", "_key", "label")

    def __init__(self, key: bytes, label: str) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError(f"frame keys are {KEY_SIZE} bytes")
        self._key = bytes(key)
        self._aead = AESCCM(self._key, tag_length=TAG_SIZE)
        self.label = label

    def __repr__(self) -> str:
        return f"FrameCipher({self.label})"

    def seal(self, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        """Encrypt and authenticate; returns ciphertext || tag."""
        if len(nonce) != NONCE_SIZE:
            raise ValueError(f"nonces are {NONCE_SIZE} bytes")
        return self._aead.encrypt(nonce, plaintext, associated)

    def open(self, nonce: bytes, sealed: bytes, associated: bytes) -> bytes:
        """Verify and decrypt ciphertext || tag; AuthenticationError when anything is off."""
        if len(nonce) != NONCE_SIZE or len(sealed) < TAG_SIZE:
            raise AuthenticationError("frame too short to authenticate")
        try:
            return self._aead.decrypt(nonce, sealed, associated)
        except InvalidTag:
            raise AuthenticationError("frame did not authenticate") from None

    def same_key(self, other: FrameCipher) -> bool:
        """Constant-time key equality (tests use it to prove keys differ without showing them)."""
        return hmac.compare_digest(self._key, other._key)


def _counter_bytes(counter: int) -> bytes:
    if not 0 <= counter <= COUNTER_MAX:
        raise ValueError(f"frame counter {counter} is outside 0..{COUNTER_MAX}")
    return counter.to_bytes(4, "big")


@dataclass(frozen=True, slots=True, repr=False)
class SessionKeys:
    """The keys and nonce prefixes of one session, one pair per direction.

    Derived with HKDF from the PSK, salted with both sides' randomness, so two sessions never
    share a key even when the same counters come round again.
    """

    uplink: FrameCipher
    downlink: FrameCipher
    uplink_prefix: bytes
    downlink_prefix: bytes

    def __repr__(self) -> str:
        return "SessionKeys(<secret>)"

    def cipher(self, direction: Direction) -> FrameCipher:
        return self.uplink if direction is Direction.UPLINK else self.downlink

    def nonce(self, direction: Direction, counter: int) -> bytes:
        """Session nonce: the direction's 9-byte prefix || the 32-bit counter."""
        prefix = self.uplink_prefix if direction is Direction.UPLINK else self.downlink_prefix
        return prefix + _counter_bytes(counter)


def derive_session(psk: bytes, tx_random: bytes, rx_random: bytes) -> SessionKeys:
    """Session keys from the PSK and both handshake randoms (transmitter's first)."""
    check_psk(psk)
    if len(tx_random) != RANDOM_SIZE or len(rx_random) != RANDOM_SIZE:
        raise ValueError(f"handshake randoms are {RANDOM_SIZE} bytes")
    salt = bytes(tx_random) + bytes(rx_random)
    material = hkdf(psk, b"session", 2 * KEY_SIZE + 2 * _PREFIX_SIZE, salt=salt)
    up_key = material[:KEY_SIZE]
    down_key = material[KEY_SIZE : 2 * KEY_SIZE]
    up_prefix = material[2 * KEY_SIZE : 2 * KEY_SIZE + _PREFIX_SIZE]
    down_prefix = material[2 * KEY_SIZE + _PREFIX_SIZE :]
    return SessionKeys(
        uplink=FrameCipher(up_key, "session uplink"),
        downlink=FrameCipher(down_key, "session downlink"),
        uplink_prefix=up_prefix,
        downlink_prefix=down_prefix,
    )


class LinkKeys:
    """Everything derived once from the PSK: the network id and the static direction keys.

    The PSK itself is kept only to derive session keys; it is never logged or shown.
    """

    __slots__ = ("_psk", "_static", "network_id")

    def __init__(self, psk: bytes) -> None:
        check_psk(psk)
        self._psk = bytes(psk)
        self.network_id: bytes = hkdf(psk, b"network id", NETWORK_ID_SIZE)
        self._static = {
            Direction.UPLINK: FrameCipher(hkdf(psk, b"static uplink", KEY_SIZE), "static uplink"),
            Direction.DOWNLINK: FrameCipher(
                hkdf(psk, b"static downlink", KEY_SIZE), "static downlink"
            ),
        }

    def __repr__(self) -> str:
        return f"LinkKeys(network_id={self.network_id.hex()})"

    def static(self, direction: Direction) -> FrameCipher:
        """The static key for frames sent in `direction` before a session exists."""
        return self._static[direction]

    @staticmethod
    def static_nonce(direction: Direction, random: bytes, counter: int) -> bytes:
        """Static-key nonce: direction byte || the frame's clear random || 32-bit counter."""
        if len(random) != RANDOM_SIZE:
            raise ValueError(f"frame randoms are {RANDOM_SIZE} bytes")
        return bytes((0x80 | int(direction),)) + bytes(random) + _counter_bytes(counter)

    def session(self, tx_random: bytes, rx_random: bytes) -> SessionKeys:
        """Derive the session keys for a handshake's two randoms."""
        return derive_session(self._psk, tx_random, rx_random)
