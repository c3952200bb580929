"""Body layouts of each frame type (the plaintext inside the AEAD).

Every field is sized for airtime: RSSI in whole dB, SNR in quarter dB (the SX127x's own
resolution), fractions in half percent. All integers are big-endian; `varint` is unsigned
LEB128. A body that does not parse raises `MessageError` (counted as "malformed"; an
authenticated but malformed body means a bug or a version mismatch, never an attack that
got through).

| frame     | body                                                                            |
|-----------|---------------------------------------------------------------------------------|
| DISCOVER  | u8 flags (bit 0: resuming elsewhere; bit 1: follow to the fast rendezvous), i8 power|
| CHALLENGE | report (3), i8 receiver TX power, u8 flags (bit 0: has reference), u16 ref id     |
| RESYNC    | the 8-byte CCM tag of the transmitter frame that could not be opened              |
| DATA      | the codec payload (`p1lora.common.codec`), nothing else                          |
| BATCH     | two or more telegram updates, oldest first: (u8 length, codec payload) each      |
| FRAGMENT  | u8 update tag, u8 index<<4 | (count-1), chunk                                     |
| PROBE     | u8 probe id, padding to the size of a typical update; acked with CRC-16 of body  |
| SWITCH    | u8 switch id, u8 SF, u8 bandwidth index (`BANDWIDTHS_HZ`)                        |
| STATUS    | see `StatusMessage`; flag bit 1: a telegram update (codec payload) follows        |
| REPLY     | u8 command id, u8 status, u16 check of the command answered, UTF-8 text          |
| ACK       | u8 kind, u16 acked counter low bits, u16 value, report (3), [u8 cmd id, command] |

Link report (3 bytes): u8 RSSI as -dBm (0..255), i8 SNR in 0.25 dB, u8 sender's budget use
in 0.5 % of its allowance (0..200, 255 = unknown).

ACK kinds and their value: DATA (telegram id of the rebuilt telegram), NAK (the reference id
that was missing, 0xFFFF when the update itself was bad), PROBE (CRC-16/ARC of the probe body),
FRAGMENT (bitmap of fragments held), SWITCH (switch id; high byte 1 = refused), FRAME (0: a
status report or reply was received). A STATUS that carries an update is acked like DATA.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from p1lora.common.crypto import TAG_SIZE
from p1lora.common.link.commands import MAX_REPLY_TEXT, Command, CommandSyntaxError, ReplyStatus
from p1lora.common.radio_types import BANDWIDTHS_HZ

__all__ = [
    "ACK_BODY_SIZE",
    "CHALLENGE_BODY_SIZE",
    "COMMAND_MAX_SIZE",
    "DISCOVER_BODY_SIZE",
    "RESYNC_BODY_SIZE",
    "STATUS_TYPICAL_BODY_SIZE",
    "SWITCH_BODY_SIZE",
    "Ack",
    "AckKind",
    "Batch",
    "Challenge",
    "Discover",
    "FragmentHeader",
    "MessageError",
    "Probe",
    "Reply",
    "Report",
    "Resync",
    "SerialState",
    "StatusMessage",
    "Switch",
    "TxStatus",
    "updates_body",
]

DISCOVER_BODY_SIZE = 2
#: A RESYNC names the unreadable frame by its tag (`crypto.TAG_SIZE`).
RESYNC_BODY_SIZE = TAG_SIZE
CHALLENGE_BODY_SIZE = 7
ACK_BODY_SIZE = 8
#: Command id + the longest command on air.
COMMAND_MAX_SIZE = 1 + 4
SWITCH_BODY_SIZE = 3
#: A status report after about a day (uptime, telegram and update counters of 3 varint bytes).
STATUS_TYPICAL_BODY_SIZE = 24


class MessageError(ValueError):
    """An authenticated body that does not have its type's layout."""


def _need(data: bytes, size: int, what: str) -> None:
    if len(data) != size:
        raise MessageError(f"{what} body is {len(data)} bytes, expected {size}")


def _i8(value: int) -> int:
    return max(-128, min(127, value)) & 0xFF


def _from_i8(byte: int) -> int:
    return byte - 256 if byte >= 128 else byte


@dataclass(frozen=True, slots=True)
class Report:
    """How a frame was heard (and how busy the hearer's budget is)."""

    rssi_dbm: float
    snr_db: float
    budget_used: float | None = None

    def encode(self) -> bytes:
        rssi = max(0, min(255, round(-self.rssi_dbm)))
        snr = _i8(round(self.snr_db * 4))
        budget = (
            255 if self.budget_used is None else max(0, min(200, round(self.budget_used * 200)))
        )
        return bytes((rssi, snr, budget))

    @classmethod
    def decode(cls, data: bytes) -> Report:
        _need(data, 3, "report")
        budget = None if data[2] == 255 else data[2] / 200
        return cls(-float(data[0]), _from_i8(data[1]) / 4, budget)


@dataclass(frozen=True, slots=True)
class Discover:
    resume: bool
    tx_power_dbm: int
    #: A crowded channel: "if you hear me well enough, meet me at the fast rendezvous"
    #: (`timing.fast_rendezvous`; the receiver goes there instead of answering).
    follow: bool = False

    FLAG_RESUME = 0x01
    FLAG_FOLLOW = 0x02

    def encode(self) -> bytes:
        flags = (self.FLAG_RESUME if self.resume else 0) | (self.FLAG_FOLLOW if self.follow else 0)
        return bytes((flags, _i8(self.tx_power_dbm)))

    @classmethod
    def decode(cls, data: bytes) -> Discover:
        _need(data, DISCOVER_BODY_SIZE, "DISCOVER")
        flags = data[0]
        return cls(bool(flags & cls.FLAG_RESUME), _from_i8(data[1]), bool(flags & cls.FLAG_FOLLOW))


@dataclass(frozen=True, slots=True)
class Challenge:
    report: Report
    rx_power_dbm: int
    reference_id: int | None

    def encode(self) -> bytes:
        has_ref = self.reference_id is not None
        ref = self.reference_id or 0
        return (
            self.report.encode()
            + bytes((_i8(self.rx_power_dbm), int(has_ref)))
            + ref.to_bytes(2, "big")
        )

    @classmethod
    def decode(cls, data: bytes) -> Challenge:
        _need(data, CHALLENGE_BODY_SIZE, "CHALLENGE")
        ref = int.from_bytes(data[5:7], "big") if data[4] & 1 else None
        return cls(Report.decode(data[:3]), _from_i8(data[3]), ref)


@dataclass(frozen=True, slots=True)
class Resync:
    """Names the frame the receiver could not open by its CCM tag: unpredictable before that
    frame was sent, so a RESYNC harvested by sending the receiver made-up frames never names
    a frame of the real transmitter (header counter bits did: anyone can predict them)."""

    tag: bytes

    def encode(self) -> bytes:
        if len(self.tag) != RESYNC_BODY_SIZE:
            raise ValueError(f"a RESYNC names a {RESYNC_BODY_SIZE}-byte tag")
        return self.tag

    @classmethod
    def decode(cls, data: bytes) -> Resync:
        _need(data, RESYNC_BODY_SIZE, "RESYNC")
        return cls(bytes(data))


@dataclass(frozen=True, slots=True)
class FragmentHeader:
    """Which part of which multi-frame update a FRAGMENT carries (up to 16 fragments)."""

    tag: int
    index: int
    count: int

    SIZE = 2

    def __post_init__(self) -> None:
        if not (0 <= self.tag <= 255 and 1 <= self.count <= 16 and 0 <= self.index < self.count):
            raise MessageError(f"bad fragment {self.index}/{self.count} of update {self.tag}")

    def encode(self) -> bytes:
        return bytes((self.tag, (self.index << 4) | (self.count - 1)))

    @classmethod
    def split(cls, data: bytes) -> tuple[FragmentHeader, bytes]:
        if len(data) <= cls.SIZE:
            raise MessageError("FRAGMENT body without a chunk")
        return cls(data[0], data[1] >> 4, (data[1] & 0x0F) + 1), bytes(data[cls.SIZE :])


@dataclass(frozen=True, slots=True)
class Batch:
    """Several telegram updates in one frame, oldest first: the first encoded against the
    transmitter's reference, each later one against the telegram before it.

    Why: a frame's fixed cost (preamble, header, tag, codec header: about 20 symbols and 19
    bytes) is larger than a one-second DSMR 5 change (about 13 bytes), so where the budget or
    a crowded channel spaces frames seconds apart, carrying each telegram read since the last
    frame delivers them all for little more airtime than the newest alone. Each update carries
    its length (a codec payload is not self-delimiting); one ack, for the last telegram,
    answers the whole frame.
    """

    updates: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if len(self.updates) < 2:
            raise MessageError("a BATCH carries at least two updates")
        if any(not 0 < len(update) <= 255 for update in self.updates):
            raise MessageError("every update of a BATCH is 1..255 bytes")

    @staticmethod
    def size_of(updates: list[bytes]) -> int:
        """The body size of a batch of these updates."""
        return sum(1 + len(update) for update in updates)

    def encode(self) -> bytes:
        out = bytearray()
        for update in self.updates:
            out.append(len(update))
            out += update
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Batch:
        updates: list[bytes] = []
        pos = 0
        while pos < len(data):
            end = pos + 1 + data[pos]
            if end > len(data):
                raise MessageError("BATCH update runs past the end of the body")
            updates.append(bytes(data[pos + 1 : end]))
            pos = end
        return cls(tuple(updates))


def updates_body(updates: list[bytes]) -> bytes:
    """What carries these codec payloads (oldest first): one as it is, several as a `Batch`."""
    return updates[0] if len(updates) == 1 else Batch(tuple(updates)).encode()


@dataclass(frozen=True, slots=True)
class Probe:
    probe_id: int
    padding: bytes

    def encode(self) -> bytes:
        return bytes((self.probe_id & 0xFF,)) + self.padding

    @classmethod
    def decode(cls, data: bytes) -> Probe:
        if not data:
            raise MessageError("empty PROBE body")
        return cls(data[0], bytes(data[1:]))


@dataclass(frozen=True, slots=True)
class Switch:
    switch_id: int
    sf: int
    bw_hz: int

    def encode(self) -> bytes:
        return bytes((self.switch_id & 0xFF, self.sf, BANDWIDTHS_HZ.index(self.bw_hz)))

    @classmethod
    def decode(cls, data: bytes) -> Switch:
        _need(data, 3, "SWITCH")
        if data[2] >= len(BANDWIDTHS_HZ) or not 6 <= data[1] <= 12:
            raise MessageError("SWITCH to an impossible setting")
        return cls(data[0], data[1], BANDWIDTHS_HZ[data[2]])


class SerialState(IntEnum):
    """The transmitter's P1 serial source as its runtime sees it."""

    UNKNOWN = 0
    OK = 1
    NO_DATA = 2  # port open, no telegrams lately
    ERROR = 3  # telegrams arrive but fail (CRC, framing)
    DISCONNECTED = 4  # port missing or closed


@dataclass(frozen=True, slots=True)
class TxStatus:
    """What the transmitter's runtime hands `TxLink.update_status` (serial side facts)."""

    serial_state: SerialState = SerialState.UNKNOWN
    telegrams_read: int = 0
    crc_errors: int = 0
    other_errors: int = 0
    uptime_s: float = 0.0


def _put_varint(out: bytearray, value: int) -> None:
    value = max(0, value)
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _get_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = 0
    for shift in range(0, 64, 7):
        if pos >= len(data):
            raise MessageError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
    raise MessageError("varint too long")


@dataclass(frozen=True, slots=True)
class StatusMessage:
    """The transmitter's periodic status report, as the receiver surfaces it.

    Layout: u8 serial state, u8 flags (bit 0: fixed radio mode; bit 1: a telegram update
    follows; bit 2: it is a BATCH body), i8 TX power, u8 airtime use (0.5 % of the allowance), u8 loss (0.5 %), u8
    downlink RSSI as -dBm (0: unknown), i8 downlink SNR in 0.25 dB (how the transmitter hears
    the receiver's acks: the receiver cannot measure that itself), then varints: uptime s,
    telegrams read, CRC errors, other errors, interval in 0.1 s, updates sent, updates
    acknowledged, superseded; then, with flag bit 1, the codec payload of a telegram update
    (with bit 2 too: a `Batch` body, several updates).

    Why an update can ride along: a standalone report costs a frame header, a tag and an ack;
    appended to an update that is sent anyway it costs only its ~20 body bytes, so at slow
    settings the status no longer competes with telegrams for the budget.
    """

    serial_state: SerialState
    fixed_mode: bool
    tx_power_dbm: int
    airtime_used: float
    loss_rate: float
    uptime_s: int
    telegrams_read: int
    crc_errors: int
    other_errors: int
    interval_s: float
    updates_sent: int
    updates_acked: int
    superseded: int
    downlink_rssi_dbm: float | None = None
    downlink_snr_db: float | None = None

    FIXED_SIZE = 7
    FLAG_FIXED_MODE = 0x01
    FLAG_UPDATE = 0x02
    FLAG_BATCH = 0x04

    def encode(self, updates: list[bytes] | None = None) -> bytes:
        """The body; with `updates` (codec payloads, oldest first) the frame also carries
        those telegrams (several as a `Batch` body)."""
        if updates is not None and not (updates and all(updates)):
            raise ValueError("an update riding on a status cannot be empty")
        update = None if updates is None else updates_body(updates)
        rssi = (
            0
            if self.downlink_rssi_dbm is None
            else max(1, min(255, round(-self.downlink_rssi_dbm)))
        )
        snr = 0 if self.downlink_snr_db is None else _i8(round(self.downlink_snr_db * 4))
        flags = (
            (self.FLAG_FIXED_MODE if self.fixed_mode else 0)
            | (self.FLAG_UPDATE if update is not None else 0)
            | (self.FLAG_BATCH if len(updates or ()) > 1 else 0)
        )
        out = bytearray(
            (
                int(self.serial_state),
                flags,
                _i8(self.tx_power_dbm),
                max(0, min(255, round(self.airtime_used * 200))),
                max(0, min(200, round(self.loss_rate * 200))),
                rssi,
                snr,
            )
        )
        for value in (
            self.uptime_s,
            self.telegrams_read,
            self.crc_errors,
            self.other_errors,
            round(self.interval_s * 10),
            self.updates_sent,
            self.updates_acked,
            self.superseded,
        ):
            _put_varint(out, value)
        if update is not None:
            out += update
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> StatusMessage:
        """The status report of a STATUS body (a carried update, if any, is not returned)."""
        return cls.decode_with_update(data)[0]

    @classmethod
    def decode_with_update(cls, data: bytes) -> tuple[StatusMessage, list[bytes] | None]:
        """The status report and the codec payloads it carries, oldest first (None when it
        carries none)."""
        if len(data) < cls.FIXED_SIZE + 8:
            raise MessageError("STATUS body too short")
        try:
            state = SerialState(data[0])
        except ValueError:
            state = SerialState.UNKNOWN
        pos = cls.FIXED_SIZE
        values = []
        for _ in range(8):
            value, pos = _get_varint(data, pos)
            values.append(value)
        update: list[bytes] | None = None
        if data[1] & cls.FLAG_UPDATE:
            update = [bytes(data[pos:])]
            if not update[0]:
                raise MessageError("STATUS announces an update but carries none")
            if data[1] & cls.FLAG_BATCH:
                update = list(Batch.decode(update[0]).updates)
        elif pos != len(data):
            raise MessageError("STATUS body has trailing bytes")
        status = cls(
            serial_state=state,
            fixed_mode=bool(data[1] & cls.FLAG_FIXED_MODE),
            tx_power_dbm=_from_i8(data[2]),
            airtime_used=data[3] / 200,
            loss_rate=data[4] / 200,
            uptime_s=values[0],
            telegrams_read=values[1],
            crc_errors=values[2],
            other_errors=values[3],
            interval_s=values[4] / 10,
            updates_sent=values[5],
            updates_acked=values[6],
            superseded=values[7],
            downlink_rssi_dbm=-float(data[5]) if data[5] else None,
            downlink_snr_db=_from_i8(data[6]) / 4 if data[5] else None,
        )
        return status, update

    def as_fields(self) -> dict[str, object]:
        """Flat dict for logs and Home Assistant diagnostics."""
        return {
            "serial_state": self.serial_state.name.lower(),
            "radio_mode": "fixed" if self.fixed_mode else "auto",
            "tx_power_dbm": self.tx_power_dbm,
            "airtime_used": self.airtime_used,
            "loss_rate": self.loss_rate,
            "uptime_s": self.uptime_s,
            "telegrams_read": self.telegrams_read,
            "crc_errors": self.crc_errors,
            "other_errors": self.other_errors,
            "interval_s": self.interval_s,
            "updates_sent": self.updates_sent,
            "updates_acked": self.updates_acked,
            "superseded": self.superseded,
            "downlink_rssi_dbm": self.downlink_rssi_dbm,
            "downlink_snr_db": self.downlink_snr_db,
        }


@dataclass(frozen=True, slots=True)
class Reply:
    command_id: int
    status: ReplyStatus
    text: str
    #: `Command.check` of the command answered (binds the reply to it, not only to its id).
    check: int = 0

    def encode(self) -> bytes:
        text = self.text.encode("utf-8")[:MAX_REPLY_TEXT]
        head = bytes((self.command_id & 0xFF, int(self.status)))
        return head + (self.check & 0xFFFF).to_bytes(2, "big") + text

    @classmethod
    def decode(cls, data: bytes) -> Reply:
        if len(data) < 4:
            raise MessageError("REPLY body too short")
        try:
            status = ReplyStatus(data[1])
        except ValueError:
            raise MessageError(f"unknown reply status {data[1]}") from None
        text = data[4:].decode("utf-8", errors="replace")
        return cls(data[0], status, text, int.from_bytes(data[2:4], "big"))


class AckKind(IntEnum):
    DATA = 1
    NAK = 2
    PROBE = 3
    FRAGMENT = 4
    SWITCH = 5
    FRAME = 6


@dataclass(frozen=True, slots=True)
class Ack:
    kind: AckKind
    counter_low: int
    value: int
    report: Report
    command_id: int | None = None
    command: Command | None = None

    def encode(self) -> bytes:
        out = (
            bytes((int(self.kind),))
            + (self.counter_low & 0xFFFF).to_bytes(2, "big")
            + (self.value & 0xFFFF).to_bytes(2, "big")
            + self.report.encode()
        )
        if self.command is not None and self.command_id is not None:
            out += bytes((self.command_id & 0xFF,)) + self.command.encode()
        return out

    @classmethod
    def decode(cls, data: bytes) -> Ack:
        if len(data) < ACK_BODY_SIZE:
            raise MessageError("ACK body too short")
        try:
            kind = AckKind(data[0])
        except ValueError:
            raise MessageError(f"unknown ACK kind {data[0]}") from None
        command_id: int | None = None
        command: Command | None = None
        if len(data) > ACK_BODY_SIZE:
            command_id = data[ACK_BODY_SIZE]
            try:
                command = Command.decode(bytes(data[ACK_BODY_SIZE + 1 :]))
            except CommandSyntaxError as exc:
                raise MessageError(f"ACK carries a bad command: {exc}") from None
        return cls(
            kind,
            int.from_bytes(data[1:3], "big"),
            int.from_bytes(data[3:5], "big"),
            Report.decode(data[5:8]),
            command_id,
            command,
        )
