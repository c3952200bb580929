"""Switching settings: the two-phase switch, its probes, commit, revert and the fallback.

`Switching` owns the switch under way (`plan`), a switch put off for the budget (`deferred`)
and what a failed switch leaves behind (`step_down_from`, `revert_anchor`). Phase 1 is a
SWITCH at the current setting, repeated while unacknowledged; phase 2 probes at the target
until `probe_count` acks commit it or too many failures revert to the last known good setting,
where the link holds off (fallback) until the receiver has surely reverted too. What a switch
costs is planned in `switch_plan`; when to switch is `autotune`'s decision.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from p1lora.common.crc16 import crc16_arc
from p1lora.common.frames import FrameType, overhead
from p1lora.common.link import timing
from p1lora.common.link.autotune import Cooldown
from p1lora.common.link.config import RadioMode
from p1lora.common.link.events import LinkEvent
from p1lora.common.link.messages import Ack, AckKind, Probe, Switch
from p1lora.common.link.states import TxState
from p1lora.common.link.tuning import find, is_faster
from p1lora.common.link.tx_types import Awaiting, Outstanding, Timer
from p1lora.common.radio_types import RadioSettings

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

#: Failed switches in a row retried as collisions before they count as failures anyway (a
#: setting that keeps failing with a strong signal may still be wrong for this link).
MAX_COLLISION_RETRIES = 2

__all__ = ["PlannedSwitch", "Switching"]

logger = logging.getLogger("p1lora.common.link.tx")


@dataclass
class PlannedSwitch:
    """A switch under way: where to, why, from where, and how its probes went."""

    target: RadioSettings
    switch_id: int
    reason: str
    origin: RadioSettings
    acked: bool = False
    #: The SWITCH frame once sent (its body repeated under a fresh counter while unacknowledged).
    sent: Outstanding | None = None
    probes_ok: int = 0
    probes_failed: int = 0
    last_probe_end: float = 0.0


class Switching:
    """The transmitter's setting changes (one per `TxLink`)."""

    def __init__(self, link: TxLink, now: float) -> None:
        self._link = link
        self.plan: PlannedSwitch | None = None
        #: The id of the last SWITCH (the receiver's ack names it).
        self.switch_id = 0
        #: The target of the last failed switch: the next attempt steps down from it.
        self.step_down_from: RadioSettings | None = None
        #: The target of a switch that failed on collisions: tried again after the fallback.
        self.retry_after_collisions: RadioSettings | None = None
        #: Failed switches in a row put down to collisions (`MAX_COLLISION_RETRIES`).
        self.collided_in_row = 0
        #: A switch put off for a short budget wait, retried at `deferred_at`.
        self.deferred: tuple[RadioSettings, str] | None = None
        self.deferred_at = now
        #: Switch targets the budget can never carry (warned about once each).
        self.never_warned: set[tuple[int, int]] = set()
        #: The target of the last `switch_deferred` event: a switch put off again and again
        #: (a 20 s dwell window) is reported once, not at every retry.
        self.deferred_reported: tuple[int, int] | None = None
        #: When a receiver that followed a failed switch reverted, at the latest (its silence
        #: timer restarts then).
        self.revert_anchor = now
        #: After a commit, until when the receiver still waits at the target for its proof
        #: (its `switch_timeout` after the last probe it heard): a proof that goes unanswered
        #: before then is sent again (`proof_lost`). A lost proof left the receiver at the
        #: old setting and the transmitter at the new one until the link was declared lost:
        #: 15 minutes at 868.1 MHz, where the next update came 85 s later.
        self.unproven_until: float | None = None

    def start(self, now: float, target: RadioSettings, reason: str) -> bool:
        """Start a two-phase switch to `target` when the budget has room for it; otherwise
        defer it (retried at `deferred_at` if the wait is short, else by the next evaluation)
        and return False."""
        link = self._link
        self.deferred = None
        # The plan that can start soonest (the most generous one among equals), once the
        # receiver also has room for the acks of the SWITCH and of the probes that commit.
        acks = link._planner.acks(link._settings, target)
        plans = link._planner.plans(
            link._settings, target, link._delivery.typical_bytes, link._reports.proof_bytes()
        )
        wait = max(
            min((link._budget.sequence_wait(now, p) for p in plans), default=math.inf),
            link._peer_budget.sequence_wait(now, acks),
        )
        if wait > 0:
            delay = wait if math.isfinite(wait) else link.config.retune_interval_s
            link._tuner.next_tune_at = link._tuner.next_down_at = now + delay
            key = (target.sf, target.bw_hz)
            report = key != self.deferred_reported
            if not math.isfinite(wait):
                self.switch_never(target)  # (the event, too, once per target)
                report = False
            elif delay <= link.config.retune_interval_s:
                # A short wait (a 20 s dwell window): hold the paced traffic so the window
                # empties for the switch instead of refilling with updates, and retry when
                # the room is there (waiting for the next evaluation could take minutes).
                link._gate_at = max(link._gate_at, now + delay)
                self.deferred = (target, reason)
                self.deferred_at = now + delay
                link._timers[Timer.DEFERRED] = now + delay
            if report:
                self.deferred_reported = key
                link._event(
                    LinkEvent.SWITCH_DEFERRED,
                    target=target.label(),
                    reason="budget",
                    wait_s=round(delay, 3) if math.isfinite(wait) else None,
                )
            return False
        self.deferred_reported = None
        self.switch_id = (self.switch_id + 1) & 0xFF
        self.plan = PlannedSwitch(target, self.switch_id, reason, link._settings)
        link._reports.proof_due = False
        self.unproven_until = None
        link._set_state(TxState.SWITCHING, reason)
        link._event(LinkEvent.SWITCH_START, target=target.label(), reason=reason)
        return True

    def switch_never(self, target: RadioSettings) -> None:
        """A switch the budget can never carry: say so once per target (WARNING and a
        `switch_deferred` event without a wait), not silently retry forever."""
        link = self._link
        key = (target.sf, target.bw_hz)
        if key in self.never_warned:
            return
        self.never_warned.add(key)
        link._event(LinkEvent.SWITCH_DEFERRED, target=target.label(), reason="budget", wait_s=None)
        band = link.config.sub_band()
        logger.warning(
            "tx: cannot switch to %s: the SWITCH and its probes never fit %s's %.3g s of airtime "
            "per %g s; staying at %s",
            target.label(),
            band.name,
            link._budget.allowance_s,
            band.window_s,
            link._settings.label(),
        )

    def sent_switch(self, now: float) -> bool:
        link = self._link
        plan = self.plan
        if plan is None:
            link._set_state(TxState.RUNNING, "no switch planned")
            return False
        if plan.sent is None:
            body = Switch(plan.switch_id, plan.target.sf, plan.target.bw_hz).encode()
            out = link._session_send(
                now, Awaiting.SWITCH, FrameType.SWITCH, body, timing.ACK_MAX_BYTES
            )
            if out is None:
                return False
            out.expect = plan.switch_id
            plan.sent = out
            return True
        # Unacknowledged: the same body again under a fresh counter (the receiver, if it heard
        # the first, has already switched and does not hear this one; if not, it is new to it).
        sent = plan.sent
        if not link._resent(now, sent):
            return False
        link._last_sent_end = now + link._airtime(len(sent.frame))
        return True

    def enter_probing(self, now: float, acked: bool) -> None:
        link = self._link
        plan = self.plan
        assert plan is not None
        plan.acked = acked
        plan.last_probe_end = now
        link._configure(plan.target, "switch" if acked else "switch (unacknowledged)")
        link._set_state(TxState.PROBING, plan.reason)
        # The receiver changes its settings when its ack has left, the moment we heard it: a
        # probe sent at once could start before it listens at the target. A guard avoids
        # losing the first probe (a whole probe cycle: seconds at SF12).
        link._timers[Timer.PROBE] = now + timing.guard(plan.target)

    def sent_probe(self, now: float) -> bool:
        link = self._link
        if link._timers.get(Timer.PROBE, now) > now:
            return False
        plan = self.plan
        origin = link._last_good if plan is None else plan.origin
        size = link._planner.probe_size(
            origin, link._settings, link._delivery.typical_bytes, link._reports.proof_bytes()
        )
        link._probe_id = (link._probe_id + 1) & 0xFF
        padding = link._rng(size - overhead(FrameType.PROBE) - 1)
        body = Probe(link._probe_id, padding).encode()
        out = link._session_send(now, Awaiting.PROBE, FrameType.PROBE, body, timing.ACK_MAX_BYTES)
        if out is None:
            return False
        out.expect = crc16_arc(body)
        return True

    def probe_result(self, now: float, ok: bool) -> None:
        link = self._link
        plan = self.plan
        if plan is None:
            return
        if ok:
            plan.probes_ok += 1
            if plan.probes_ok >= link.config.probe_count:
                self.commit(now, plan)
            return
        plan.probes_failed += 1
        if plan.probes_failed > link.config.probe_attempts - link.config.probe_count:
            self.revert(now, plan)

    def commit(self, now: float, plan: PlannedSwitch) -> None:
        link = self._link
        self.plan = None
        link._last_good = link._settings.replace(tx_power_dbm=link._max_power)
        link._tuner.cooldowns.pop((plan.target.sf, plan.target.bw_hz), None)
        self.collided_in_row = 0
        link._set_state(TxState.RUNNING, "switch confirmed")
        link._event(LinkEvent.SWITCH_COMMITTED, settings=link._settings.label(), reason=plan.reason)
        # Any non-probe frame proves the commit to the receiver: the newest telegram goes
        # first (the status rides on it), not a status followed by a full pacing gap.
        link._reports.want(now)
        link._reports.proof_due = True
        self.unproven_until = now + timing.switch_timeout(link.config, plan.target, plan.origin)
        link._tuner.samples = 0
        link._loss.clear()
        link._consecutive_failures = 0
        link._tuner.next_tune_at = now + link.config.retune_interval_s
        link._tuner.next_power_at = now + link.config.retune_interval_s
        link._gate_at = now
        link._pacer.invalidate()
        link._persist()

    def proven(self) -> None:
        """A non-probe frame at the committed setting was acknowledged: the receiver has
        its proof."""
        self.unproven_until = None

    def proof_lost(self, now: float) -> None:
        """A frame went unanswered while the commit may be unproven: the proof goes again
        (unpaced, like the first) while the receiver still waits for it. It costs a status
        frame; the receiver that had it acknowledges it like any other."""
        if self.unproven_until is None:
            return
        if now < self.unproven_until:
            self._link._reports.proof_due = True
        else:
            self.unproven_until = None

    def revert(self, now: float, plan: PlannedSwitch) -> None:
        link = self._link
        self.plan = None
        key = (plan.target.sf, plan.target.bw_hz)
        failure = link._tuner.cooldowns.get(key)
        failures = 1 if failure is None else failure.failures + 1
        # The user's fixed setting is retried sooner at first (a few lost probes are enough to
        # fail it on a lossy channel), then backs off like any setting (`failed_cooldown`).
        cooldown = link.config.failed_cooldown(failures, fixed=link._mode is RadioMode.FIXED)
        collided = self.collided_in_row < MAX_COLLISION_RETRIES and self.collided(now, plan.target)
        if collided:
            # Strong signal, lost frames: neighbours' collisions, not this setting's fault. A
            # step down would make every frame longer and the collisions worse, a cooldown
            # would keep the link at the slow setting it fell back to: try the same target
            # again once the receiver has reverted, without counting a failure against it.
            self.collided_in_row += 1
            self.retry_after_collisions = plan.target
            cooldown = 0.0
        else:
            self.collided_in_row = 0
            link._tuner.cooldowns[key] = Cooldown(now + cooldown, failures)
        link._configure(link._last_good, "switch failed")
        if plan.reason == "settle":
            # A lost SWITCH or probe says little about the rung (it now cools off): settle
            # again from where the link is, with the samples that keep coming.
            link._tuner.settled = False
        holdoff = plan.last_probe_end + timing.switch_timeout(link.config, plan.target, plan.origin)
        link._timers[Timer.HOLDOFF] = max(now, holdoff) + timing.guard(plan.target)
        self.revert_anchor = max(now, holdoff)
        self.step_down_from = None if collided else plan.target
        link._set_state(TxState.FALLBACK, "switch failed")
        link._event(
            LinkEvent.SWITCH_FAILED,
            target=plan.target.label(),
            reverted_to=link._last_good.label(),
            probes_ok=plan.probes_ok,
            cooldown_s=cooldown,
            cause="collisions" if collided else "signal",
        )

    def collided(self, now: float, target: RadioSettings) -> bool:
        """Whether a failed switch to `target` was collisions rather than a weak link: the
        measured signal (worst recent samples, both directions) clears the target's floor by
        the margin plus the hysteresis (`AutoTuner.interference`). Only with
        `AirPolicy.busy_collisions`; before it, every failure counted against the setting."""
        link = self._link
        candidate = find(link._table, target)
        return (
            link.config.air.busy_collisions
            and candidate is not None
            and link._tuner.interference(now, candidate)
        )

    def sent_after_fallback(self, now: float) -> bool:
        link = self._link
        if Timer.HOLDOFF in link._timers:
            return False
        link._set_state(TxState.RUNNING, "receiver has reverted")
        link._gate_at = max(link._gate_at, now)
        failed = self.step_down_from
        self.step_down_from = None
        link._tuner.next_tune_at = now + link.config.retune_interval_s
        link._handshake.check_lost(now)
        retry, self.retry_after_collisions = self.retry_after_collisions, None
        if link._state is TxState.RUNNING and retry is not None:
            self.start(now, retry, "retry after collisions")
            return False
        if link._state is not TxState.RUNNING or failed is None or link._mode is RadioMode.FIXED:
            return False
        target = link._tuner.step_down_target(now, failed)
        if target is not None and is_faster(link._table, target, link._last_good):
            self.start(now, target, "step down")
        return False

    def on_switch_ack(self, now: float, out: Outstanding, ack: Ack) -> None:
        link = self._link
        if ack.kind is not AckKind.SWITCH or ack.value & 0xFF != out.expect:
            return
        plan = self.plan
        if plan is None:
            return
        if ack.value >> 8:
            link._tuner.cooldowns[(plan.target.sf, plan.target.bw_hz)] = Cooldown(
                now + link.config.failed_cooldown_s
            )
            self.plan = None
            link._event(LinkEvent.SWITCH_REFUSED, target=plan.target.label())
            link._set_state(TxState.RUNNING, "switch refused")
            return
        self.enter_probing(now, acked=True)

    def on_probe_ack(self, now: float, out: Outstanding, ack: Ack) -> None:
        self.probe_result(now, ack.kind is AckKind.PROBE and ack.value == out.expect)

    def on_switch_timeout(self, now: float, out: Outstanding) -> None:
        link = self._link
        link._count_unanswered(now)
        if self.plan is not None and out.attempts < link.config.switch_attempts:
            return  # still switching: `sent_switch` repeats the SWITCH
        self.enter_probing(now, acked=False)

    def on_probe_timeout(self, now: float, out: Outstanding) -> None:
        # A failed probe says nothing about the setting we return to: not counted as loss.
        self.probe_result(now, ok=False)
