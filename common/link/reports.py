"""Status reports, keepalives and the proof of a commit.

`Reports` owns the serial side's status as the runtime reported it, what was last sent of it,
and when a report is due. The status rides on an update when one is due (a STATUS frame
carrying the update) and goes alone only when no update came for a keepalive interval; a
keepalive (a PROBE without padding) goes when nothing was sent for
`timing.keepalive_interval`; after a commit the next non-probe frame is the receiver's proof
(`proof_due`). The rules are in tx.py's docstring (status and keepalive paragraph).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p1lora.common.crc16 import crc16_arc
from p1lora.common.frames import FrameType, overhead
from p1lora.common.link import timing
from p1lora.common.link.config import RadioMode
from p1lora.common.link.messages import Probe, StatusMessage, TxStatus
from p1lora.common.link.tx_types import Awaiting

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["Reports"]


class Reports:
    """The transmitter's status reports and keepalives (one per `TxLink`)."""

    def __init__(self, link: TxLink, now: float) -> None:
        self._link = link
        #: The runtime's view of the serial source (`TxLink.update_status`).
        self.status = TxStatus()
        #: The serial side as last reported (None: nothing reported in this run yet).
        self.reported: TxStatus | None = None
        #: A report is due (since `due_at`): it rides on the next update or goes alone.
        self.due = False
        self.due_at = now
        #: When the last report left.
        self.last_at = now
        #: After a commit the receiver waits for a non-probe frame as proof (keepalives are
        #: probes): the next update, or the status at once.
        self.proof_due = False

    def sent_keepalive(self, now: float) -> bool:
        """The smallest acknowledged frame (a PROBE without padding): proof of life for the
        receiver's silence timer and an SNR sample for us. Not paced (keepalives are rare by
        construction); the budget applies as always."""
        link = self._link
        link._probe_id = (link._probe_id + 1) & 0xFF
        body = Probe(link._probe_id, b"").encode()
        out = link._session_send(
            now, Awaiting.KEEPALIVE, FrameType.PROBE, body, timing.ACK_MAX_BYTES
        )
        if out is None:
            return False
        out.expect = crc16_arc(body)
        return True

    def serial_news(self, now: float, keepalive: float) -> bool:
        """The serial side changed since the last report: its state (at once) or its error
        counts (at most once per keepalive interval)."""
        last, current = self.reported, self.status
        if last is None:
            return False
        if current.serial_state != last.serial_state:
            return True
        errors = (current.crc_errors, current.other_errors)
        return errors != (last.crc_errors, last.other_errors) and (now >= self.last_at + keepalive)

    def want(self, now: float) -> None:
        if not self.due:
            self.due = True
            self.due_at = now

    def message(self, now: float) -> StatusMessage:
        link = self._link
        s = self.status
        return StatusMessage(
            serial_state=s.serial_state,
            fixed_mode=link._mode is RadioMode.FIXED,
            tx_power_dbm=link._settings.tx_power_dbm,
            airtime_used=link._airtime_used(now),
            loss_rate=link._loss.rate or 0.0,
            uptime_s=max(0, int(s.uptime_s)),
            telegrams_read=s.telegrams_read,
            crc_errors=s.crc_errors,
            other_errors=s.other_errors,
            interval_s=link._interval,
            updates_sent=link._telegrams["sent"],
            updates_acked=link._telegrams["acked"],
            superseded=link._telegrams["superseded"],
            downlink_rssi_dbm=link._tuner.channel.down_rssi,
            downlink_snr_db=link._tuner.channel.down_snr,
        )

    def mark_sent(self, now: float) -> None:
        self.due = False
        self.last_at = now
        self.reported = self.status

    def sent_status(self, now: float, unpaced: bool) -> bool:
        """A standalone status report. `unpaced` (it serves as the keepalive, or as the proof
        of a commit) skips the pacing gate, never the budget: such reports are rare by
        construction and must not wait behind a long data gap."""
        link = self._link
        if not unpaced and link._gated(now, data=False):
            return False
        body = self.message(now).encode()
        out = link._session_send(now, Awaiting.STATUS, FrameType.STATUS, body, timing.ACK_MAX_BYTES)
        if out is None:
            return False
        self.mark_sent(now)
        link._paced(now, len(out.frame))
        return True

    def proof_bytes(self) -> int:
        """The smallest frame that proves a commit to the receiver: a standalone STATUS (the
        newest update goes instead when the budget has room for it, see `TxLink._sent_running`). Two bytes
        of slack cover counters that grow a varint byte between the plan and the commit."""
        status = overhead(FrameType.STATUS) + len(self.message(self._link._last_sent_at).encode())
        return max(timing.STATUS_TYPICAL_BYTES, status + 2)
