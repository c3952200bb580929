"""Key updates longer than one frame: split, send what is missing, reassemble.

A key update (no shared reference yet) of a 1500-byte telegram compresses to a few hundred
bytes, more than a frame may carry at slow settings or under a dwell-time cap. It is cut into
at most 16 chunks, each sent as a FRAGMENT with its update tag, index and count. The receiver
acknowledges every fragment with the bitmap of fragments it holds, so the transmitter resends
only the missing ones, and one lost ack costs nothing (the next bitmap says it all).

Latest wins: a fragment with a new tag discards an unfinished update (the transmitter only
starts a new one when the old one is superseded), so a stale half-update never blocks a fresh
one and memory stays bounded (one update of at most 16 chunks).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from p1lora.common.link.messages import FragmentHeader, MessageError

__all__ = ["MAX_FRAGMENTS", "OutgoingUpdate", "Reassembler", "split"]

MAX_FRAGMENTS = 16


def split(payload: bytes, chunk_size: int) -> list[bytes]:
    """Cut `payload` into at most 16 chunks of at most `chunk_size` bytes, sizes balanced so the
    last one is not a runt (every fragment costs a header and an ack)."""
    if chunk_size < 1:
        raise ValueError("chunk size must be at least 1 byte")
    if not payload:
        raise ValueError("nothing to fragment")
    count = -(-len(payload) // chunk_size)
    if count > MAX_FRAGMENTS:
        raise ValueError(
            f"update of {len(payload)} bytes needs {count} fragments of {chunk_size} bytes; "
            f"at most {MAX_FRAGMENTS} are allowed"
        )
    size = -(-len(payload) // count)
    return [payload[i : i + size] for i in range(0, len(payload), size)]


@dataclass
class OutgoingUpdate:
    """A multi-frame update on the transmitter: which chunks the receiver holds."""

    tag: int
    chunks: list[bytes]
    telegram: bytes
    held: int = 0  # bitmap reported by the receiver
    last_index: int = -1

    @property
    def count(self) -> int:
        return len(self.chunks)

    @property
    def complete(self) -> bool:
        return self.held == (1 << self.count) - 1

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if not self.held >> i & 1]

    def next_index(self) -> int | None:
        """The next missing fragment after the last one sent (round robin), or None."""
        missing = self.missing()
        if not missing:
            return None
        later = [i for i in missing if i > self.last_index]
        return later[0] if later else missing[0]

    def body(self, index: int) -> bytes:
        return FragmentHeader(self.tag, index, self.count).encode() + self.chunks[index]


@dataclass
class Reassembler:
    """The receiver's side: collects the fragments of the newest update."""

    tag: int | None = None
    count: int = 0
    chunks: dict[int, bytes] = field(default_factory=dict)
    discarded: int = 0
    #: Tag of the last update completed (a late fragment of it is re-acknowledged, not restarted).
    completed_tag: int | None = None

    @property
    def bitmap(self) -> int:
        return sum(1 << i for i in self.chunks)

    def add(self, header: FragmentHeader, chunk: bytes) -> bytes | None:
        """Store one fragment; return the whole payload once every fragment is there.

        A different tag (or a count that disagrees with the tag's) starts over: latest wins.
        """
        if header.tag != self.tag or header.count != self.count:
            self.completed_tag = None
            if self.chunks:
                self.discarded += 1
            self.tag, self.count, self.chunks = header.tag, header.count, {}
        if header.index in self.chunks and self.chunks[header.index] != chunk:
            raise MessageError("fragment conflicts with the one already held")
        self.chunks[header.index] = chunk
        if len(self.chunks) < self.count:
            return None
        payload = b"".join(self.chunks[i] for i in range(self.count))
        self.completed_tag = self.tag
        self.tag, self.count, self.chunks = None, 0, {}
        return payload

    def reset(self) -> None:
        self.tag, self.count, self.chunks = None, 0, {}
