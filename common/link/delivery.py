"""Delivering telegrams: the queue, the reference, batches, retries and multi-frame updates.

`Delivery` owns the telegrams waiting to go (`queue`: the newest `batch_max`, oldest first),
the telegram the receiver acknowledged last (`reference`: updates are encoded against it), the
update in flight as fragments, and the frame to resend (`retry`: its body under a fresh
counter). It builds and sends update frames through the link (which gates, paces and seals
them): one telegram as DATA, several as a BATCH (each encoded against the one before it), a
key update too large for one frame as FRAGMENTs. It handles their acks and timeouts. The
policy is in tx.py's docstring (delivery paragraph).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from p1lora.common import codec
from p1lora.common.codec_fields import has_meter_clock
from p1lora.common.frames import FrameType, overhead
from p1lora.common.link import timing
from p1lora.common.link.events import LinkEvent
from p1lora.common.link.fragments import OutgoingUpdate, split
from p1lora.common.link.messages import Ack, AckKind, Batch, updates_body
from p1lora.common.link.slots import Neighbours, SendSlot
from p1lora.common.link.tuning import TYPICAL_FRAME_BYTES
from p1lora.common.link.tx_types import Awaiting, Outstanding

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["Delivery"]

logger = logging.getLogger("p1lora.common.link.tx")


class Delivery:
    """The transmitter's telegram delivery (one per `TxLink`)."""

    def __init__(self, link: TxLink) -> None:
        self._link = link
        #: Telegrams not yet sent, oldest first: at most `batch_max` (older ones are dropped).
        self.queue: list[bytes] = []
        #: The last telegram the receiver acknowledged (updates are encoded against it).
        self.reference: bytes | None = None
        #: A multi-frame update in flight.
        self.fragments: OutgoingUpdate | None = None
        #: The tag of the last multi-frame update (the receiver tells updates apart by it).
        self.fragment_tag = 0
        #: An unacknowledged update frame to resend (same body, fresh counter).
        self.retry: Outstanding | None = None
        #: A running average of an update's size (probes and pacing imitate it).
        self.typical_bytes = float(TYPICAL_FRAME_BYTES)
        #: Other p1-lora networks heard lately, and the slot this link sends in while they
        #: are (docs/protocol.md, "Sharing the air").
        self.neighbours = Neighbours(link.config.air.crowded_memory_s)
        self.slot = SendSlot(link.config.air, link._rng)

    @property
    def newest(self) -> bytes | None:
        """The newest telegram waiting, if any."""
        return self.queue[-1] if self.queue else None

    def offer(self, telegram: bytes, now: float) -> None:
        """A new telegram from the meter: it joins the queue, whose oldest is dropped beyond
        `batch_max` (with 1: latest wins). Alone, it goes at once; while neighbours are heard,
        in the link's next slot (`slots`)."""
        if self.retry is not None and self.retry.kind is Awaiting.DATA:
            # Its telegrams go again with the new one, encoded anew (not resent as they were).
            self._requeue(self.retry, now)
            self.retry = None
        self._enqueue([bytes(telegram)], now)
        self._wait_for_slot(now)

    def _enqueue(self, telegrams: list[bytes], now: float) -> None:
        """Add `telegrams` (oldest first) behind the queue, keeping the newest `batch_max`
        (while slotted, at least a period's telegrams and one more); only the newest while a
        send interval is set (`set interval`, `link.interval`: the user asked for one
        telegram per interval, not for the seconds in between)."""
        link = self._link
        self.queue.extend(telegrams)
        limit = link.config.batch_max
        if link._interval > 0:
            limit = 1
        elif self.slotted(now):
            limit = max(limit, self.slot.telegrams_per_frame())
        excess = len(self.queue) - limit
        if excess > 0:
            link._telegrams["superseded"] += excess
            del self.queue[:excess]

    def _requeue(self, out: Outstanding, now: float) -> None:
        """The telegrams of an update that did not get through go again, ahead of newer ones."""
        self.queue[:0] = out.telegrams
        self._enqueue([], now)

    def drop_repeat(self) -> bool:
        """Drop the newest telegram when it is byte for byte the reference, meter clock
        included (tx.py: such a repeat would cost airtime and deliver nothing)."""
        newest = self.newest
        if newest is not None and newest == self.reference and has_meter_clock(newest):
            self.queue.pop()
            return True
        return False

    def _wait_for_slot(self, now: float) -> None:
        """While slotted, updates wait for the link's next slot; a link alone sends at once."""
        if self.slotted(now):
            link = self._link
            link._data_gate_at = max(link._data_gate_at, self.slot.next_at(now, link._interval))

    def heard_neighbour(self, network_id: bytes, now: float) -> None:
        """A frame of another p1-lora network (rejected as `wrong_network`)."""
        self.neighbours.heard(network_id, now)

    def crowded(self, now: float) -> bool:
        """Whether another p1-lora network was heard within `AirPolicy.crowded_memory_s`."""
        return self.neighbours.count(now) > 0

    def slotted(self, now: float) -> bool:
        """Whether updates go in the link's own slot: while crowded, unless the policy sends
        at once (`AirPolicy.legacy`). The slot's period follows the crowd's size."""
        networks = self.neighbours.count(now)
        if networks == 0 or self._link.config.air.slot_period_s <= 0:
            return False
        self.slot.set_crowd(networks + 1)
        return True

    def has_update(self) -> bool:
        return self.retry is not None or self.fragments is not None or bool(self.queue)

    def reset(self) -> None:
        """Traffic starts over (a new session): nothing in flight, the telegram of an
        unfinished multi-frame update goes again unless a newer one waits."""
        self.retry = None
        if self.fragments is not None and not self.queue:
            self.queue = [self.fragments.telegram]
        self.fragments = None

    def sent_update(self, now: float) -> bool:
        """Send the next update frame (a resend, a fragment, or the queue); False if nothing
        went."""
        if self._link._gated(now, data=True):
            return False
        if self.retry is not None:
            return self._sent_retry(now, self.retry)
        if self.fragments is not None and self.queue:
            self.maybe_supersede_fragments()
        if self.fragments is not None:
            return self.sent_fragment(now, self.fragments)
        return bool(self.queue) and self._sent_queue(now)

    def _sent_retry(self, now: float, retry: Outstanding) -> bool:
        link = self._link
        if retry.counter != link._security.counter.next_value - 1:
            # Something else was sent since: encode the telegrams anew instead.
            self.retry = None
            if retry.kind is Awaiting.DATA:
                self._requeue(retry, now)
            return self.sent_update(now)
        if not link._resent(now, retry):
            return False
        self.retry = None
        retry.settings = link._settings
        link._paced(now, len(retry.frame))
        link._data_gate_at = now + link._interval
        return True

    def _sent_queue(self, now: float) -> bool:
        """The queued telegrams in one frame (or a key update as fragments)."""
        link = self._link
        if self.reference is None:
            # A key update is large: only the newest goes.
            link._telegrams["superseded"] += len(self.queue) - 1
            del self.queue[:-1]
        encoded = self._encode_queue(now)
        if encoded is None:
            return self.sent_update(now)
        telegrams, payloads = encoded
        if len(payloads) == 1 and len(payloads[0]) > link._max_body(FrameType.DATA):
            return self._sent_fragmented(now, telegrams[0], payloads[0])
        out = self.send_data(now, payloads)
        if out is None:
            return False
        del self.queue[: len(telegrams)]
        out.telegrams = telegrams
        out.expect = codec.telegram_id(telegrams[-1])
        link._telegrams["sent"] += len(telegrams)
        frame_type, body = _update_body(payloads)
        self.after_update_sent(now, len(out.frame), overhead(frame_type) + len(body))
        return True

    def _encode_queue(self, now: float) -> tuple[list[bytes], list[bytes]] | None:
        """The queued telegrams that fit one frame and their codec payloads, each against the
        one before it (the first against the reference); the oldest give way when they do not
        all fit the frame, or the budget now (a nearly spent hour still carries the newest
        telegram, not a batch that would wait until the window frees). None when a telegram
        could not be encoded (it was dropped)."""
        room = self._link._max_body(FrameType.BATCH)
        while True:
            payloads = self._chained()
            if payloads is None:
                return None
            body = Batch.size_of(payloads)
            if len(payloads) == 1 or (
                body <= room and self._link._budget_wait(now, overhead(FrameType.BATCH) + body) <= 0
            ):
                return list(self.queue), payloads
            self._link._telegrams["superseded"] += 1
            del self.queue[0]

    def _chained(self) -> list[bytes] | None:
        """Codec payloads of the queue, each against the telegram before it."""
        link = self._link
        reference = self.reference
        payloads: list[bytes] = []
        for index, telegram in enumerate(self.queue):
            try:
                payloads.append(codec.encode_update(telegram, reference))
            except codec.CodecError as exc:
                del self.queue[index]
                link._telegrams["encode_failed"] += 1
                logger.warning("tx: telegram not sent: %s", exc)
                link._event(LinkEvent.ENCODE_FAILED, error=str(exc))
                return None
            reference = telegram
        return payloads

    def _sent_fragmented(self, now: float, telegram: bytes, payload: bytes) -> bool:
        """A single update too large for one frame (a key update) goes as fragments."""
        link = self._link
        chunk = link._max_body(FrameType.FRAGMENT) - 2
        try:
            chunks = split(payload, chunk)
        except ValueError as exc:
            self.queue.clear()
            link._telegrams["encode_failed"] += 1
            logger.warning("tx: telegram too large to send at %s: %s", link._settings.label(), exc)
            link._event(LinkEvent.ENCODE_FAILED, error=str(exc))
            return False
        self.fragment_tag = (self.fragment_tag + 1) & 0xFF
        self.fragments = OutgoingUpdate(self.fragment_tag, chunks, telegram)
        self.queue.clear()
        link._telegrams["sent"] += 1
        link._event(
            LinkEvent.FRAGMENTED, tag=self.fragment_tag, fragments=len(chunks), bytes=len(payload)
        )
        return self.sent_fragment(now, self.fragments)

    def send_data(self, now: float, payloads: list[bytes]) -> Outstanding | None:
        """A single-frame update of one telegram (DATA) or several (BATCH); when a status
        report is due and fits, it rides along (a STATUS frame carrying the update, acked
        like DATA)."""
        link = self._link
        if link._reports.due:
            body = link._reports.message(now).encode(payloads)
            if len(body) <= link._max_body(FrameType.STATUS):
                out = link._session_send(
                    now, Awaiting.DATA, FrameType.STATUS, body, timing.ACK_MAX_BYTES
                )
                if out is not None:
                    link._reports.mark_sent(now)
                return out
        frame_type, body = _update_body(payloads)
        return link._session_send(now, Awaiting.DATA, frame_type, body, timing.ACK_MAX_BYTES)

    def maybe_supersede_fragments(self) -> None:
        """Latest wins, but only when the newer telegram fits one frame: a multi-frame update
        superseded by another multi-frame update would starve at slow settings."""
        link = self._link
        newest = self.newest
        assert newest is not None and self.fragments is not None
        try:
            payload = codec.encode_update(newest, self.reference)
        except codec.CodecError:
            return
        if len(payload) <= link._max_body(FrameType.DATA):
            link._telegrams["superseded"] += 1
            link._event(LinkEvent.FRAGMENTS_SUPERSEDED, tag=self.fragments.tag)
            self.fragments = None

    def sent_fragment(self, now: float, update: OutgoingUpdate) -> bool:
        index = update.next_index()
        if index is None:  # everything held but never confirmed: start over with the newest
            self.fragments = None
            if not self.queue:
                self.queue = [update.telegram]
            return self.sent_update(now)
        body = update.body(index)
        out = self._link._session_send(
            now, Awaiting.FRAGMENT, FrameType.FRAGMENT, body, timing.ACK_MAX_BYTES
        )
        if out is None:
            return False
        update.last_index = index
        out.telegrams = [update.telegram]
        out.expect = codec.telegram_id(update.telegram)
        self.after_update_sent(now, len(out.frame), len(out.frame))
        return True

    def after_update_sent(self, now: float, size: int, update_size: int) -> None:
        """Bookkeeping after an update frame of `size` bytes (`update_size` of them the update
        itself, which is what probes imitate)."""
        link = self._link
        link._telegrams["frames"] += 1
        self.typical_bytes += 0.1 * (update_size - self.typical_bytes)
        link._paced(now, size)
        link._data_gate_at = now + link._interval

    def on_ack(self, now: float, out: Outstanding, ack: Ack) -> None:
        link = self._link
        telegram = out.telegram
        assert telegram is not None
        if ack.kind is AckKind.DATA and ack.value == out.expect:
            if out.aired_at is not None and self.slotted(now):
                self.slot.keep(out.aired_at)
            self.reference = telegram
            link._telegrams["acked"] += len(out.telegrams)
            if out.kind is Awaiting.FRAGMENT:
                self.fragments = None
            return
        if ack.kind is AckKind.FRAGMENT and self.fragments is not None:
            self.fragments.held = ack.value & ((1 << self.fragments.count) - 1)
            return
        # NAK (or an id that does not match): the receiver lacks the reference or the update
        # did not rebuild. Send a key update next; the newest telegram if there is one.
        link._telegrams["nak"] += 1
        self.reference = None
        self.fragments = None
        if not self.queue:
            self.queue = [telegram]
        link._event(LinkEvent.UPDATE_REJECTED, ack_kind=ack.kind.name, value=ack.value)

    def on_timeout(self, now: float, out: Outstanding) -> None:
        link = self._link
        slotted = self.slotted(now)
        if out.aired or not slotted:
            link._count_unanswered(now)
        # else: listen before talk found our place busy throughout and the frame never went
        # on air. That says nothing about the link, only that the channel was busy: counted
        # as a loss, a few busy slots in a row would declare the link lost and send both
        # sides to the rendezvous, whose handshakes crowd the channel further (measured: a
        # cascade that lost most of 20 links). It goes again in the next slot.
        link._telegrams["unacked"] += 1
        newer = bool(self.queue) and out.kind is Awaiting.DATA
        if slotted:
            self.slot.redraw()  # a neighbour may hold this place now
        if out.attempts <= link.config.max_retries and not newer:
            self.retry = out
            self._wait_for_slot(now)  # not at once: the frames that met would meet again
        elif newer:
            self._requeue(out, now)  # they go with the newer telegrams (the newest `batch_max`)
        elif out.kind is Awaiting.DATA:
            link._telegrams["lost"] += len(out.telegrams)
        link._after_unanswered(now)


def _update_body(payloads: list[bytes]) -> tuple[FrameType, bytes]:
    """The frame type and body that carry these codec payloads: one as DATA, several as a
    BATCH."""
    frame_type = FrameType.DATA if len(payloads) == 1 else FrameType.BATCH
    return frame_type, updates_body(payloads)
