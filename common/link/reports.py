"""Status reports, keepalives and the proof of a commit.

`Reports` owns the serial side's status as the runtime reported it, what the last report
carried, and when a report is due. The status rides on an update when one is due (a STATUS
frame carrying the update) and goes alone only when no update came for a keepalive interval; a
keepalive (a PROBE without padding) goes when nothing was sent for
`timing.keepalive_interval`; after a commit the next non-probe frame is the receiver's proof
(`proof_due`). The rules are in tx.py's docstring (status and keepalive paragraph).

A change a user sees in Home Assistant (TX power, radio mode, send interval, serial state)
makes a report due at once and lets it go alone after `CHANGE_RIDE_WAIT_S` instead of a
keepalive interval: HA showed 14 dBm for minutes after power control had gone to 2 dBm.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from p1lora.common.crc16 import crc16_arc
from p1lora.common.frames import FrameType, overhead
from p1lora.common.link import timing
from p1lora.common.link.config import RadioMode
from p1lora.common.link.messages import Probe, SerialState, StatusMessage, TxStatus
from p1lora.common.link.tx_types import Awaiting

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["CHANGE_RIDE_WAIT_S", "Reports", "Shown"]

#: A report made due by a change waits this long for an update to ride on, then goes alone
#: (paced and within the budget like any frame). With the receiver's at-once publishing this
#: puts a change in Home Assistant within 10 s wherever the pacing gap is shorter than 5 s.
CHANGE_RIDE_WAIT_S = 5.0

#: What a report shows that a user acts on: serial state, fixed mode, TX power (dBm), interval.
Shown = tuple[SerialState, bool, int, float]


class Reports:
    """The transmitter's status reports and keepalives (one per `TxLink`)."""

    def __init__(self, link: TxLink, now: float) -> None:
        self._link = link
        #: The runtime's view of the serial source (`TxLink.update_status`).
        self.status = TxStatus()
        #: The serial side as last reported (None: nothing reported in this run yet).
        self.reported: TxStatus | None = None
        #: What the last report showed (`shown`; None: nothing reported in this run yet).
        self.shown_last: Shown | None = None
        #: A report is due (since `due_at`): it rides on the next update or goes alone at
        #: `alone_after` seconds after `due_at` (None: a keepalive interval).
        self.due = False
        self.due_at = now
        self.alone_after: float | None = None
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

    def shown(self) -> Shown:
        link = self._link
        return (
            self.status.serial_state,
            link._mode is RadioMode.FIXED,
            link._settings.tx_power_dbm,
            link._interval,
        )

    def check_news(self, now: float, keepalive: float) -> None:
        """Want a report when what the last one showed changed (soon: `CHANGE_RIDE_WAIT_S`),
        or the serial error counts did (at most once per keepalive interval)."""
        if self.shown_last is None or self.reported is None:
            return  # nothing reported in this run yet: the handshake wants the first report
        if self.shown() != self.shown_last:
            self.want(now, soon=True)
            return
        last, current = self.reported, self.status
        errors = (current.crc_errors, current.other_errors)
        if errors != (last.crc_errors, last.other_errors) and now >= self.last_at + keepalive:
            self.want(now)

    def want(self, now: float, *, soon: bool = False) -> None:
        """A report is due; `soon`: it goes alone after `CHANGE_RIDE_WAIT_S` if no update
        comes to ride on."""
        if not self.due:
            self.due = True
            self.due_at = now
        if soon:
            self.alone_after = CHANGE_RIDE_WAIT_S

    def alone_at(self, keepalive: float) -> float:
        """When a due report stops waiting for an update to ride on."""
        wait = keepalive if self.alone_after is None else min(keepalive, self.alone_after)
        return self.due_at + wait

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
        self.alone_after = None
        self.last_at = now
        self.reported = self.status
        self.shown_last = self.shown()

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
