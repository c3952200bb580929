"""`TxLink`: the meter-closet side of the link as a sans-I/O state machine.

States (the `state` property):

| state       | radio at                 | doing                                                  |
|-------------|--------------------------|--------------------------------------------------------|
| rendezvous  | region rendezvous        | DISCOVER with exponential backoff (budget-capped)      |
| handshake   | last known good          | DISCOVER after a restart or a RESYNC; after            |
|             |                          | `resume_attempts` failures -> rendezvous               |
| switching   | current                  | SWITCH sent (phase 1 of a two-phase switch), repeated  |
|             |                          | up to `switch_attempts` times while unacknowledged     |
| probing     | target                   | PROBEs sized like updates; `probe_count` acks commit,  |
|             |                          | too many failures revert to last known good            |
| fallback    | last known good          | holding off after a failed switch until the receiver   |
|             |                          | has surely reverted too (`timing.switch_timeout`)      |
| running     | committed setting        | updates (latest wins, paced), status riding on them,   |
|             |                          | keepalives, command replies                            |

The legal moves between them are `states.TX_TRANSITIONS`. `TxLink` coordinates: it owns the
radio-facing bookkeeping (the one frame in flight, the timers, pacing gates) and runs each
state's step (`_STEPS`); each concern is a small object with the attributes it owns:
`Handshake` (discovery, CHALLENGE, RESYNC, link loss), `Switching` (switch, probes, commit,
revert, fallback; costs planned by `SwitchPlanner`), `AutoTuner` (when to switch, power),
`Delivery` (slot, reference, retries, fragments), `Reports` (status, keepalives, commit proof)
and `ReplyQueue` with `command_exec.EXECUTORS` (downlink commands). Acks and timeouts of the
frame in flight go by what it awaits (`_ACK_HANDLERS`, `_TIMEOUT_HANDLERS`).

Delivery policy: telegrams wait in a queue of the newest `batch_max` (1: latest wins); the next
update frame carries all of them, oldest first (a BATCH when more than one), the first encoded
against the last telegram the receiver acknowledged and each later one against the one before
it (a telegram byte-identical to the reference, meter timestamp included, is not sent at all:
`duplicate_telegrams`); one frame is in flight at a time (stop and wait: the ack names the
last rebuilt telegram's id); an unacknowledged frame is resent (same body, fresh counter,
resend flag) up to `max_retries` times unless a newer telegram is waiting, in which case its
telegrams join the newer ones in the next frame. While other p1-lora networks are heard, the
updates wait for the link's slot: one frame per period, at a place of the period kept while it
is acknowledged (`slots`, docs/protocol.md "Sharing the air"). Pacing (`pacing.Pacer`) spaces updates by what a typical update costs at the rate the
budget still sustains with *all* traffic in the sliding window counted (handshakes, probes, key
frames), so a burst slows the updates slightly instead of emptying the budget at the hour's
end; the receiver's acks are paced with them. Every frame also passes this node's budget.

Status and keepalive: the status report rides on an update when one is due (a STATUS frame
carrying the update, acked like DATA) and goes alone only when no update came for a keepalive
interval; a change of what the last report showed (TX power, radio mode, interval, serial
state) makes one due at once and lets it go alone after `reports.CHANGE_RIDE_WAIT_S`; after a
commit the newest update is the proof the receiver waits for. A keepalive
(a PROBE without padding) goes when nothing was sent for `timing.keepalive_interval`, a share
of the budget: frequent where airtime is cheap, so the receiver notices a dead link quickly.

Auto-tune (`RadioMode.AUTO`): after the handshake, jump to the fastest candidate whose
predicted margin clears `snr_margin_db` in both directions (`tuning`; the planning SNR is the
mean less half the spread beyond the reading scatter), confirm with probes, step down one rung
per failure; once a few samples are in, correct that first choice once without hysteresis
(`AutoTuner.settle`; on a fading link a lost round trip is a sample at the rung's floor and a
rung whose fading costs at most a quarter of the round trips is acceptable,
`AutoTuner.unanswered` / `tolerable`); while running, move up when even the worst recent sample clears a
faster rung by `hysteresis_db` more and it cuts the airtime by a fifth, move down when the
margin falls `hysteresis_db` (and two standard errors) short (after restoring full power) or
when loss exceeds `loss_retune_threshold` and the measured fading does not explain it,
unless the worst recent samples still clear the rung by `snr_margin_db + hysteresis_db` (interference:
keep the rung, full power, no power reduction for `interference_cooldown_s`); lower the TX
power at the fastest rung only while the worst recent sample keeps 10 dB of margin, and
restore full power at once when acks are lost. Total silence: after `link_lost_after`
unanswered frames, stay at full power until the receiver's silence timeout has surely sent it
to the rendezvous (`timing.rendezvous_window`), then meet it there.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.counters import CounterState
from p1lora.common.crypto import Direction
from p1lora.common.frames import FrameError, FrameType, RejectReason, network_id_of, overhead
from p1lora.common.link import timing
from p1lora.common.link.autotune import AutoTuner
from p1lora.common.link.base import LinkBase, decode_body
from p1lora.common.link.command_exec import EXECUTORS, ReplyQueue
from p1lora.common.link.commands import Command
from p1lora.common.link.config import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.delivery import Delivery
from p1lora.common.link.diagnostics import LossWindow
from p1lora.common.link.events import Action, LinkEvent, PersistState
from p1lora.common.link.handshake import Handshake
from p1lora.common.link.messages import (
    Ack,
    Reply,
    TxStatus,
)
from p1lora.common.link.pacing import Pacer
from p1lora.common.link.persist import TxPersistentState
from p1lora.common.link.reports import Reports
from p1lora.common.link.states import TX_TRANSITIONS, TxState
from p1lora.common.link.switch_plan import SwitchPlanner, same_rung
from p1lora.common.link.switching import Switching
from p1lora.common.link.tuning import (
    candidate_table,
    find,
)
from p1lora.common.link.tx_types import Awaiting, Outstanding, Timer
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.regions import RegionError

__all__ = ["TxLink"]

logger = logging.getLogger(__name__)


#: Consecutive unanswered frames at reduced power before full power is restored.
_POWER_RESTORE_AFTER = 2


class TxLink(LinkBase[TxState]):
    """The transmitter's link state machine (see the module docstring)."""

    ROLE = "tx"
    SENDING = Direction.UPLINK
    TRANSITIONS = TX_TRANSITIONS

    def __init__(
        self,
        config: LinkConfig,
        psk: bytes,
        counter_state: CounterState | None,
        rng: Callable[[int], bytes],
        now: float,
        *,
        persisted: TxPersistentState | None = None,
    ) -> None:
        super().__init__(config, psk, counter_state, rng, now)
        self._table = candidate_table(config)
        self._max_power = config.max_tx_power()
        self._mode = config.mode
        self._fixed: FixedRadio | None = config.fixed
        self._interval = config.min_interval_s
        #: The receiver's random of our last session it confirmed: our DISCOVERs carry it in
        #: their associated data, which gets them the full response rate (`DiscoverFilter`).
        self._binding = persisted.binding if persisted is not None else b""
        start = self._restore(persisted)
        self._settings = start
        self._last_good = start
        self._state = TxState.RENDEZVOUS if start == config.rendezvous() else TxState.HANDSHAKE
        self._configure(start, "start")
        self._outstanding: Outstanding | None = None
        self._timers: dict[Timer, float] = {Timer.DISCOVER: now}
        self._handshake = Handshake(self)
        self._delivery = Delivery(self)
        self._switching = Switching(self, now)
        self._probe_id = 0
        #: The receiver's budget as far as we heard its frames: a switch also needs room
        #: for its acks (at US915's 0.4 s per 20 s, its CHALLENGE left no room for the ack
        #: of a SWITCH sent right after the handshake, and the switch failed).
        self._peer_budget = AirtimeBudget.for_sub_band(config.sub_band())
        self._planner = SwitchPlanner(config, self._budget, self._peer_budget)
        self._never_warned_frames: set[tuple[Timer, TxState, int, int]] = set()
        self._tuner = AutoTuner(self, self._table, self._max_power, now)
        self._loss = LossWindow(config.loss_window)
        self._consecutive_failures = 0
        self._last_ack_at = now
        self._gate_at = now
        self._data_gate_at = now
        self._last_sent_at = now
        self._last_sent_end = now
        self._pacer = Pacer(self._budget, timing.pacing_share(config), config.pacing_floor)
        self._reports = Reports(self, now)
        self._replies = ReplyQueue()
        self._started_at = now

    def _restore(self, persisted: TxPersistentState | None) -> RadioSettings:
        """Start settings from the persisted state, ignoring what today's config forbids."""
        rendezvous = self.config.rendezvous()
        if persisted is None:
            return rendezvous
        try:
            if persisted.fixed is not None:
                self.config.fixed_settings(persisted.fixed)
            self._mode, self._fixed = persisted.mode, persisted.fixed
            if self._mode is RadioMode.FIXED and self._fixed is None:
                self._mode = RadioMode.AUTO
            self._interval = min(max(persisted.interval_s, 0.0), 3600.0)
            good = persisted.last_good.replace(tx_power_dbm=self._max_power)
            if good.frequency_hz != self.config.channel_for(good.bw_hz) or (
                find(self._table, good) is None
            ):
                return rendezvous
            self.config.region.check(good)
        except (RegionError, ValueError) as exc:
            logger.warning("tx: ignoring saved link state: %s", exc)
            return rendezvous
        return good

    # -- public events ----------------------------------------------------------------------

    def telegram_ready(self, now: float, telegram: bytes) -> list[Action]:
        """A new telegram from the meter: it replaces any older one not yet sent."""

        def ready(at: float) -> None:
            self._telegrams["read"] += 1
            if not telegram:
                return
            self._delivery.offer(telegram, at)
            self._on_tick(at)

        self._guarded(now, ready)
        return self.actions()

    def update_status(self, status: TxStatus) -> None:
        """The runtime's view of the serial source, sent in the next status report. A change of
        the serial state (meter disconnected, back) is reported soon (`Reports.check_news`),
        new error counts within a keepalive interval: the status interval alone can be an hour
        at slow settings."""
        self._reports.status = status

    def _mode_label(self) -> str:
        return self._mode.value

    def _slotted(self, now: float) -> bool:
        return self._state is TxState.RUNNING and self._delivery.slotted(now)

    def _readings(self) -> tuple[float | None, float | None, float | None, float | None]:
        channel = self._tuner.channel
        return channel.up_rssi, channel.up_snr, channel.down_rssi, channel.down_snr

    @property
    def mode(self) -> RadioMode:
        return self._mode

    @property
    def interval_s(self) -> float:
        return self._interval

    @property
    def reference(self) -> bytes | None:
        """The last telegram the receiver acknowledged (updates are encoded against it)."""
        return self._delivery.reference

    # -- hooks ------------------------------------------------------------------------------

    def _deadlines(self) -> list[float | None]:
        out = self._outstanding
        return [out.deadline if out else None, *self._timers.values()]

    def _on_tx_done(self, now: float) -> None:
        out = self._outstanding
        if out is not None and out.deadline is None:
            # A frame that never went on air (listen before talk found the channel busy
            # throughout) still waits its reply timeout: a crowded channel slows every link
            # down this way.
            aired_at = now - time_on_air_for(out.settings, len(out.frame))
            out.aired_at = aired_at if self._frame_aired else None  # (a resend: this attempt)
            out.deadline = now + timing.reply_timeout(self.config, out.settings, out.reply_bytes)
            if out.kind is Awaiting.PROBE and self._switching.plan is not None:
                self._switching.plan.last_probe_end = now

    def _on_tick(self, now: float) -> None:
        out = self._outstanding
        if out is not None and out.deadline is not None and now >= out.deadline:
            self._outstanding = None
            self._on_timeout(now, out)
        fired = [k for k, t in self._timers.items() if t <= now]
        for name in fired:
            del self._timers[name]
        if Timer.LOST in fired and self._state is TxState.RUNNING:
            self._handshake.check_lost(now)
        self._pump(now)

    def _pump(self, now: float) -> None:
        """Send the next frame the state calls for, if the radio is free."""
        for _ in range(6):  # a state change may make another handler send at once
            if self._radio_busy or self._outstanding is not None:
                return
            before = self._state
            sent = _STEPS[self._state](self, now)
            if sent or self._state == before:
                return

    def _wait(self, name: Timer, until: float) -> None:
        if math.isfinite(until):
            self._timers[name] = until
            return
        # A frame the budget can never carry (larger than the whole allowance or the dwell
        # cap): nothing will wake us for it, so say so instead of sitting still in silence.
        key = (name, self._state, self._settings.sf, self._settings.bw_hz)
        if key not in self._never_warned_frames:
            self._never_warned_frames.add(key)
            logger.warning(
                "tx: %s: a frame never fits %s's airtime budget (%.3g s per %g s) at %s; "
                "waiting for something else to change",
                self._state,
                self.config.sub_band().name,
                self._budget.allowance_s,
                self._budget.window_s,
                self._settings.label(),
            )

    def _session_send(
        self, now: float, kind: Awaiting, frame_type: FrameType, body: bytes, reply_bytes: int
    ) -> Outstanding | None:
        size = len(body) + overhead(frame_type)
        wait = self._budget_wait(now, size)
        if wait > 0:
            self._wait(Timer.BUDGET, now + wait)
            return None
        sent = self._send(now, size, lambda: self._security.seal_session(frame_type, body))
        if sent is None:
            return None
        self._handshake.sent_session_frame(sent, now)
        self._last_sent_at = now
        self._last_sent_end = now + self._airtime(size)
        if frame_type is not FrameType.PROBE:
            self._reports.proof_due = False
        if kind in (Awaiting.SWITCH, Awaiting.PROBE):
            self._pacer.invalidate()  # unpaced traffic: the pacing must account for it
        out = Outstanding(
            kind, sent.frame, frame_type, sent.counter, self._settings, now, reply_bytes, body=body
        )
        self._outstanding = out
        return out

    def _resent(self, now: float, out: Outstanding) -> bool:
        """Send `out`'s body again as the frame in flight, sealed under a fresh counter with
        the resend flag (so any exact copy of a frame is a replay the receiver never answers),
        when the radio and the budget allow it now; False (and a budget timer) otherwise."""
        wait = self._budget_wait(now, len(out.frame))
        if wait > 0:
            self._wait(Timer.BUDGET, now + wait)
            return False
        sent = self._send(
            now,
            len(out.frame),
            lambda: self._security.seal_session(out.frame_type, out.body, resend=True),
        )
        if sent is None:
            return False
        self._handshake.sent_session_frame(sent, now)
        out.frame, out.counter = sent.frame, sent.counter
        out.attempts += 1
        out.deadline = None
        out.sent_at = now
        self._outstanding = out
        self._last_sent_at = now
        return True

    # -- coordination -------------------------------------------------------------------------

    def _reset_traffic(self) -> None:
        """A new session or the rendezvous: nothing in flight, no switch."""
        self._outstanding = None
        self._delivery.reset()
        self._switching.plan = None
        self._switching.deferred = None

    def _start_switch(self, now: float, target: RadioSettings, reason: str) -> bool:
        """Start a two-phase switch to `target` (`Switching.start`: it may be deferred for the
        budget; False then)."""
        return self._switching.start(now, target, reason)

    # -- running ------------------------------------------------------------------------------

    def _sent_running(self, now: float) -> bool:  # noqa: C901, PLR0911 - the running state's frame priority, its docstring lists it in order
        """Choose the next frame: a command reply; else an update (the status report riding on
        it when due); else, when no update came to ride on for a keepalive interval, the status
        alone; and a keepalive when nothing was sent for `timing.keepalive_interval`, even
        while updates wait for their pacing or interval gate: that bound is what the receiver's
        silence timeout is built on. Right after a commit the receiver needs a non-probe frame
        as proof: the newest update, or the status at once when there is none or the budget
        has no room for the update yet (the switch plan kept room for the status)."""
        if self._switching.deferred is not None and now >= self._switching.deferred_at:
            target, reason = self._switching.deferred
            self._switching.deferred = None
            if not same_rung(target, self._settings) and self._start_switch(now, target, reason):
                return False  # the state changed: the pump goes on in `switching`
        keepalive = timing.keepalive_interval(self.config, self._settings)
        if now >= self._reports.last_at + timing.status_interval(self.config, self._settings):
            self._reports.want(now)
        self._reports.check_news(now, keepalive)
        if self._replies:
            return self._send_reply(now)
        keepalive_at = self._last_sent_at + keepalive
        if self._delivery.drop_repeat():
            # Byte for byte what the receiver already has, timestamp included (a capture of
            # one telegram looped): the receiver would take it for a resend, acknowledge it
            # and deliver nothing, so it would cost airtime for no news. Counted, not sent.
            # (Meters without a clock, DSMR 2.2/3, repeat an unchanged telegram, and each
            # repeat is delivered: it keeps Home Assistant's values from expiring.)
            self._telegrams["duplicate_telegrams"] += 1
        if self._delivery.has_update() and not self._gated(now, data=True):
            sent = self._delivery.sent_update(now)
            if sent or not self._reports.proof_due:
                return sent
            # The update does not fit the budget now, and the receiver reverts unless a proof
            # arrives soon: the switch plan kept room for a standalone status, which goes.
        if self._reports.proof_due or now >= keepalive_at:
            if self._reports.due or self._reports.proof_due:
                return self._reports.sent_status(now, unpaced=True)
            return self._reports.sent_keepalive(now)
        if self._reports.due:
            alone_at = self._reports.alone_at(keepalive)  # waited long enough for a ride
            if now < alone_at:
                self._timers[Timer.STATUS] = min(keepalive_at, alone_at)
                return False
            if self._reports.sent_status(now, unpaced=False):
                return True
            self._timers[Timer.STATUS] = keepalive_at  # (the pacing gate's timer is set)
            return False
        self._timers[Timer.STATUS] = min(
            self._reports.last_at + timing.status_interval(self.config, self._settings),
            keepalive_at,
        )
        return False

    def _gated(self, now: float, data: bool) -> bool:
        gate = max(self._gate_at, self._data_gate_at) if data else self._gate_at
        if now < gate:
            self._timers[Timer.SEND] = gate
            return True
        return False

    def _paced(self, now: float, size: int) -> None:
        """Space the next paced frame by what a *typical* update costs at the rate the budget
        sustains (`Pacer`: all traffic in the window counts, the frame just sent included).

        Pacing by the frame just sent would follow a key frame (at SF12 a 150-byte update
        takes 6 s, a sixth of the hourly 1 % budget) with a 14-minute silence; the pacer
        instead spreads its cost over the rest of the window, so deliveries stay even. The
        gap also grows when the receiver's budget is running out (its acks need room too).
        """
        typical = max(round(self._delivery.typical_bytes), overhead(FrameType.DATA) + 1)
        steady = timing.pacing_gap(self.config, self._settings, typical)
        airtime = max(self._airtime(typical), self._airtime(timing.ACK_TYPICAL_BYTES))
        if size > 1.5 * typical:
            self._pacer.invalidate()  # a large frame changes what the window can still carry
        gap = self._pacer.gap(now, airtime, steady)
        peer = self._tuner.channel.peer_budget
        if peer is not None and peer > 0.8:
            gap *= 1.0 + (peer - 0.8) * 5  # the receiver is running out: give its acks room
        self._gate_at = now + gap

    def _send_reply(self, now: float) -> bool:
        if self._gated(now, data=False):
            return False
        reply = self._replies.first()
        body = Reply(reply.command_id, reply.status, reply.text, reply.check).encode()
        out = self._session_send(now, Awaiting.REPLY, FrameType.REPLY, body, timing.ACK_MAX_BYTES)
        if out is None:
            return False
        out.expect = reply.command_id
        reply.attempts += 1
        self._paced(now, len(out.frame))
        return True

    # -- answers --------------------------------------------------------------------------

    def _peer_sent(self, frame: ReceivedFrame) -> None:
        """Count an authentic frame of the receiver in our copy of its budget (only authentic
        ones: a jammer's or an attacker's frames must not hold up our switches)."""
        airtime = time_on_air_for(frame.settings, len(frame.payload))
        self._peer_budget.record(max(0.0, frame.received_at - airtime), airtime)

    def _on_frame(self, now: float, frame: ReceivedFrame) -> None:
        if frame.payload == self._last_accepted_raw:
            self._telegrams["duplicate_acks"] += 1
            return
        try:
            sealed = self._security.parse(frame.payload)
            frame_type = sealed.header.frame_type
            if frame_type is FrameType.CHALLENGE:
                self._handshake.on_challenge(now, sealed, frame)
            elif frame_type is FrameType.RESYNC:
                self._handshake.on_resync(now, sealed)
            else:
                counter, body, _ = self._security.open_session(sealed)
                self._handshake.heard_receiver(counter)
                self._learn_binding()
                self._peer_sent(frame)
                ack = decode_body(Ack.decode, body)
                self._last_accepted_raw = sealed.raw
                self._on_ack(now, ack, frame)
        except FrameError as error:
            if error.reason is RejectReason.WRONG_NETWORK:
                self._delivery.heard_neighbour(network_id_of(frame.payload), now)
            self._reject(now, error, frame)

    def _learn_binding(self) -> None:
        """An ack proves the receiver confirmed this session: bind our DISCOVERs to it."""
        session = self._security.session
        if session is not None and session.rx_random != self._binding:
            self._binding = session.rx_random
            self._persist()

    def _on_ack(self, now: float, ack: Ack, frame: ReceivedFrame) -> None:
        out = self._outstanding
        matched = (
            out is not None
            and out.deadline is not None
            and ack.counter_low == out.counter & 0xFFFF
            and out.frame_type is not FrameType.DISCOVER
        )
        if not matched or out is None:
            # Before the command's own events: an observer pairing ACKs with frames (the link
            # log) learns from the next event whether this ACK answered its frame.
            self._event(LinkEvent.LATE_ACK, ack_kind=ack.kind.name)
            self._run_piggybacked_command(now, ack)
            return
        self._run_piggybacked_command(now, ack)
        self._outstanding = None
        if out.frame_type is not FrameType.PROBE:
            self._switching.proven()
        self._tuner.measure(ack.report, out.settings, frame)
        self._last_ack_at = now
        self._consecutive_failures = 0
        self._loss.record(True)
        handler = _ACK_HANDLERS.get(out.kind)
        if handler is not None:
            handler(self, now, out, ack)
        if self._state is TxState.RUNNING:
            self._tuner.evaluate(now)

    def _run_piggybacked_command(self, now: float, ack: Ack) -> None:
        if ack.command is not None and ack.command_id is not None:
            self._on_command(now, ack.command_id, ack.command)

    def _ack_reply(self, now: float, out: Outstanding, ack: Ack) -> None:
        then_run = self._replies.acked(out.expect)
        if then_run is not None:
            self._emit(then_run)

    def _on_timeout(self, now: float, out: Outstanding) -> None:
        _TIMEOUT_HANDLERS[out.kind](self, now, out)

    def _count_unanswered(self, now: float) -> None:
        """A frame that expected an answer got none: loss, and full power when acks keep
        failing."""
        self._loss.record(False)
        if self._state is TxState.RUNNING:
            self._tuner.unanswered(now, self._settings)
            self._switching.proof_lost(now)
        self._consecutive_failures += 1
        if (
            self._state is TxState.RUNNING
            and self._consecutive_failures >= _POWER_RESTORE_AFTER
            and self._settings.tx_power_dbm < self._max_power
        ):
            # Lost acks: full power first. It is immediate and costs no airtime; a step down
            # needs the receiver's cooperation, which is what is failing.
            self._tuner.restore_power(now, "acks lost")

    def _after_unanswered(self, now: float) -> None:
        if self._state is TxState.RUNNING:
            self._handshake.check_lost(now)
            if self._state is TxState.RUNNING:
                self._tuner.evaluate(now)

    def _timeout_reply(self, now: float, out: Outstanding) -> None:
        self._count_unanswered(now)
        then_run = self._replies.unanswered(self.config.reply_attempts)
        if then_run is not None:
            self._emit(then_run)
        self._after_unanswered(now)

    def _timeout_report(self, now: float, out: Outstanding) -> None:
        """A status report or keepalive went unanswered: counted, nothing to resend."""
        self._count_unanswered(now)
        self._after_unanswered(now)

    # -- commands -----------------------------------------------------------------------------

    def _on_command(self, now: float, command_id: int, command: Command) -> None:
        if self._replies.repeat(command_id, command.check):
            return
        outcome = EXECUTORS[command.code](self, now, command)
        self._replies.add(command_id, command.check, outcome)
        self._event(
            LinkEvent.COMMAND, command=str(command), command_id=command_id, status=outcome[0].name
        )

    def _info(self, now: float) -> str:
        loss = self._loss.rate
        return (
            f"{self._state} {self._settings.label()} {self._settings.tx_power_dbm}dBm "
            f"{self._mode.value} int={self._interval:g}s "
            f"air={self._airtime_used(now):.1%} loss={'-' if loss is None else f'{loss:.0%}'} "
            f"up={int(self._reports.status.uptime_s or now - self._started_at)}s "
            f"sent={self._telegrams['sent']} acked={self._telegrams['acked']}"
        )

    def _persist(self) -> None:
        self._emit(
            PersistState(
                TxPersistentState(
                    self._last_good.replace(tx_power_dbm=self._max_power),
                    self._mode,
                    self._fixed,
                    self._interval,
                    self._binding,
                )
            )
        )


_ACK_HANDLERS: dict[Awaiting, Callable[[TxLink, float, Outstanding, Ack], None]] = {
    Awaiting.SWITCH: lambda link, now, out, ack: link._switching.on_switch_ack(now, out, ack),
    Awaiting.PROBE: lambda link, now, out, ack: link._switching.on_probe_ack(now, out, ack),
    Awaiting.DATA: lambda link, now, out, ack: link._delivery.on_ack(now, out, ack),
    Awaiting.FRAGMENT: lambda link, now, out, ack: link._delivery.on_ack(now, out, ack),
    Awaiting.REPLY: TxLink._ack_reply,
}
"""What an ack does for the frame it answers (a status report or keepalive needs nothing
beyond the measurement every ack gives)."""

_TIMEOUT_HANDLERS: dict[Awaiting, Callable[[TxLink, float, Outstanding], None]] = {
    Awaiting.DISCOVER: lambda link, now, out: link._handshake.discover_failed(now, out),
    Awaiting.SWITCH: lambda link, now, out: link._switching.on_switch_timeout(now, out),
    Awaiting.PROBE: lambda link, now, out: link._switching.on_probe_timeout(now, out),
    Awaiting.DATA: lambda link, now, out: link._delivery.on_timeout(now, out),
    Awaiting.FRAGMENT: lambda link, now, out: link._delivery.on_timeout(now, out),
    Awaiting.STATUS: TxLink._timeout_report,
    Awaiting.KEEPALIVE: TxLink._timeout_report,
    Awaiting.REPLY: TxLink._timeout_reply,
}

_STEPS: dict[TxState, Callable[[TxLink, float], bool]] = {
    TxState.RENDEZVOUS: lambda link, now: link._handshake.sent_discover(now),
    TxState.HANDSHAKE: lambda link, now: link._handshake.sent_discover(now),
    TxState.SWITCHING: lambda link, now: link._switching.sent_switch(now),
    TxState.PROBING: lambda link, now: link._switching.sent_probe(now),
    TxState.FALLBACK: lambda link, now: link._switching.sent_after_fallback(now),
    TxState.RUNNING: TxLink._sent_running,
}
"""Each state's step in the pump: send the frame the state calls for; True if one went."""
