"""Auto-tune and power control on top of `tuning`'s pure functions (`RadioMode.AUTO`).

`AutoTuner` owns what the acks taught the transmitter about the channel (`ChannelEstimate`),
the rungs that cool off after a failed switch, and the times of the next decisions. It decides;
`TxLink` acts: a switch is started through the link (`_start_switch`, which may defer it for
the budget), a power change is a `Configure` through the link. The rules are in tx.py's
docstring (auto-tune paragraph).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from p1lora.common.link.config import RadioMode
from p1lora.common.link.events import LinkEvent
from p1lora.common.link.messages import Report
from p1lora.common.link.switch_plan import same_rung
from p1lora.common.link.tuning import (
    Candidate,
    SnrEstimate,
    choose_target,
    effective_snr_db,
    find,
    is_faster,
    margin_db,
    slower,
)
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.regions import RegionError

if TYPE_CHECKING:
    from p1lora.common.link.tx import TxLink

__all__ = ["MIN_SAMPLES", "AutoTuner", "ChannelEstimate", "Cooldown"]

#: Acks needed at a new setting before margin decisions are trusted again.
MIN_SAMPLES = 5


@dataclass
class Cooldown:
    """A rung whose switch failed: not tried again before `until`; `failures` in a row."""

    until: float
    failures: int = 1


@dataclass
class ChannelEstimate:
    """What the acks say about the channel: SNR estimates both ways, the last readings, and
    how much of its budget the receiver has used."""

    up: SnrEstimate = field(default_factory=SnrEstimate)
    down: SnrEstimate = field(default_factory=SnrEstimate)
    up_rssi: float | None = None
    up_snr: float | None = None
    down_rssi: float | None = None
    down_snr: float | None = None
    peer_budget: float | None = None


class AutoTuner:
    """The transmitter's tuning state and decisions (one per `TxLink`)."""

    def __init__(
        self, link: TxLink, table: tuple[Candidate, ...], max_power: int, now: float
    ) -> None:
        self._link = link
        #: The rungs this region and config allow, fastest first.
        self.table = table
        self.max_power = max_power
        self.channel = ChannelEstimate()
        #: Acks measured at the current setting and power.
        self.samples = 0
        #: Rungs cooling off after a failed switch, by (sf, bw_hz).
        self.cooldowns: dict[tuple[int, int], Cooldown] = {}
        self.next_tune_at = now
        self.next_down_at = now
        self.next_power_at = now
        #: Until then loss was interference lately: no power reduction (`interference`).
        self.interference_until = now

    def new_session(self) -> None:
        """A new session starts a fresh view of the channel: old estimates may be from a
        channel that has since changed (that may be why the link was lost)."""
        self.channel = ChannelEstimate()
        self.samples = 0

    def forget_failures(self, now: float) -> None:
        """The retune command: every rung may be tried again, and at once."""
        self.cooldowns.clear()
        self.next_tune_at = now
        self.samples = max(self.samples, MIN_SAMPLES)

    def _settings_of(self, candidate: Candidate) -> RadioSettings:
        return self._link.config.settings(candidate.sf, candidate.bw_hz)

    def desired_target(self, now: float) -> RadioSettings | None:
        link = self._link
        if link._mode is RadioMode.FIXED and link._fixed is not None:
            try:
                return link.config.fixed_settings(link._fixed)
            except (RegionError, ValueError):
                return None
        best = self.choose(
            now, self.channel.up.value, self.channel.down.value, link.config.snr_margin_db
        )
        return link.config.settings(best.sf, best.bw_hz)

    def choose(
        self, now: float, up: float | None, down: float | None, margin_db: float
    ) -> Candidate:
        """`choose_target`, skipping rungs that cool off after a failure and rungs the budget
        can never switch to from here (`unreachable`); the latter is said once per rung
        (`Switching.switch_never`) when it is the one the margin asks for."""
        link = self._link
        cooling = self.cooling(now)
        ideal = choose_target(self.table, up, down, margin_db, cooling)
        target = self._settings_of(ideal)
        if same_rung(target, link._settings) or self.reachable(target):
            return ideal  # (the common case, checked at every ack: one plan at most)
        if is_faster(self.table, target, link._settings):
            link._switching.switch_never(target)
        return choose_target(self.table, up, down, margin_db, cooling | self.unreachable())

    def cooling(self, now: float) -> set[tuple[int, int]]:
        return {key for key, f in self.cooldowns.items() if f.until > now}

    def unreachable(self) -> set[tuple[int, int]]:
        """Rungs a switch from the current setting can never reach: even the smallest plan
        (`SwitchPlanner.plans`) exceeds one budget window (US915's 0.4 s per 20 s, from a slow
        setting). The tuner skips them like cooling rungs and picks a rung that fits, rather
        than deferring a switch that never comes."""
        out: set[tuple[int, int]] = set()
        for candidate in self.table:
            target = self._settings_of(candidate)
            if not same_rung(target, self._link._settings) and not self.reachable(target):
                out.add(candidate.key)
        return out

    def reachable(self, target: RadioSettings) -> bool:
        """Whether the smallest switch plan to `target` fits one window of both budgets."""
        link = self._link
        if link._planner.unlimited():
            return True
        return link._planner.reachable(
            link._settings, target, link._delivery.typical_bytes, link._reports.proof_bytes()
        )

    def step_down_target(self, now: float, below: RadioSettings) -> RadioSettings | None:
        """A rung slower than `below`: the SNR-based choice if that is slower still, else the
        next rung down that is not cooling off after a failure and that the budget can switch
        to from here (`unreachable`); None at the bottom."""
        cooling = self.cooling(now) | self.unreachable()
        lower = slower(self.table, below)
        while lower is not None and lower.key in cooling:
            lower = slower(self.table, self._settings_of(lower))
        if lower is None:
            return None
        best = choose_target(
            self.table,
            self.channel.up.value,
            self.channel.down.value,
            self._link.config.snr_margin_db,
            cooling,
        )
        lower_settings = self._settings_of(lower)
        chosen = best if is_faster(self.table, lower_settings, self._settings_of(best)) else lower
        return self._settings_of(chosen)

    def measure(self, report: Report, sent_with: RadioSettings, frame: ReceivedFrame) -> None:
        channel = self.channel
        at = frame.received_at
        deficit = self.max_power - sent_with.tx_power_dbm
        up = effective_snr_db(report.snr_db, report.rssi_dbm, sent_with.bw_hz)
        channel.up.add(up, sent_with.bw_hz, deficit, at)
        down = effective_snr_db(frame.snr_db, frame.rssi_dbm, frame.settings.bw_hz)
        channel.down.add(down, frame.settings.bw_hz, at=at)
        channel.up_rssi, channel.up_snr = report.rssi_dbm, report.snr_db
        channel.down_rssi, channel.down_snr = frame.rssi_dbm, frame.snr_db
        channel.peer_budget = report.budget_used
        self.samples += 1

    def evaluate(self, now: float) -> None:  # noqa: C901 - one re-tune decision in priority order (loss, up, down, power); split up, the order would be hidden
        """Decide whether to re-tune (running state only)."""
        link = self._link
        if link._mode is RadioMode.FIXED:
            self.evaluate_fixed(now)
            return
        current = find(self.table, link._settings)
        rate = link._loss.rate
        if (
            now >= self.next_down_at
            and rate is not None
            and len(link._loss) >= min(10, link.config.loss_window)
            and link.config.loss_retune_threshold <= rate < 1.0
        ):
            # Partial loss: the channel degraded but still carries some frames. (Total loss is
            # a lost link: `Handshake.check_lost` returns to the rendezvous for a fresh measurement.)
            link._loss.clear()
            if current is not None and self.interference(now, current):
                # The frames that arrive show plenty of margin: the losses are collisions.
                # A slower rung only makes frames longer (easier to hit); keep the rung, give
                # the frames full power (it helps the capture of a colliding frame).
                self.interference_until = now + link.config.interference_cooldown_s
                self.next_down_at = now + link.config.retune_interval_s
                link._event(LinkEvent.INTERFERENCE, loss=round(rate, 3), settings=current.label())
                if link._settings.tx_power_dbm < self.max_power:
                    self.restore_power(now, f"loss {rate:.0%} with margin: interference")
                return
            if link._settings.tx_power_dbm < self.max_power:
                self.restore_power(now, "loss")
                return
            target = self.step_down_target(now, link._settings)
            if target is not None:
                link._start_switch(now, target, f"loss {rate:.0%}")
            return
        if current is None or self.samples < MIN_SAMPLES or now < self.next_tune_at:
            return
        up, down = self.channel.up.value, self.channel.down.value
        margin = link.config.snr_margin_db
        hysteresis = link.config.hysteresis_db
        # Up only when even the worst recent sample clears the faster rung: on a fading
        # channel the average alone moved up and straight back down every few minutes.
        best = self.choose(
            now, self.channel.up.low(now), self.channel.down.low(now), margin + hysteresis
        )
        if is_faster(self.table, self._settings_of(best), link._settings):
            self.next_tune_at = now + link.config.retune_interval_s
            link._start_switch(now, self._settings_of(best), "margin up")
            return
        deficit = self.max_power - link._settings.tx_power_dbm
        current_margin = margin_db(current, up, down, deficit)
        if current_margin is not None and current_margin < margin - hysteresis:
            if deficit > 0:
                self.set_power(now, self.max_power, "margin down")
                return
            fallback = choose_target(self.table, up, down, margin, self.cooling(now))
            if is_faster(self.table, link._settings, self._settings_of(fallback)):
                self.next_tune_at = now + link.config.retune_interval_s
                link._start_switch(now, self._settings_of(fallback), "margin down")
            return
        if (
            link.config.power_control
            and current is self.table[0]
            and now >= max(self.next_power_at, self.interference_until)
        ):
            self.power_control(now, current)

    def interference(self, now: float, current: Candidate) -> bool:
        """Whether the loss just seen is interference rather than weak signal: even the worst
        recent sample in each direction (uplink at the power in use) clears the rung's floor by
        `snr_margin_db + hysteresis_db`. Needs a sample in both directions; a fading channel
        shows its fades in the worst sample and is treated as weak signal."""
        link = self._link
        up, down = self.channel.up.low(now), self.channel.down.low(now)
        if up is None or down is None:
            return False
        deficit = self.max_power - link._settings.tx_power_dbm
        margin = margin_db(current, up, down, deficit)
        return (
            margin is not None and margin >= link.config.snr_margin_db + link.config.hysteresis_db
        )

    def evaluate_fixed(self, now: float) -> None:
        """Fixed mode: go to the fixed settings (again, after a cooldown if they failed)."""
        link = self._link
        target = self.desired_target(now)
        if target is None or now < self.next_tune_at:
            return
        if (target.sf, target.bw_hz) in self.cooling(now):
            return
        if not same_rung(target, link._settings):
            self.next_tune_at = now + link.config.retune_interval_s
            link._start_switch(now, target, "fixed settings")
        elif target.tx_power_dbm != link._settings.tx_power_dbm:
            self.set_power(now, target.tx_power_dbm, "fixed settings")

    def power_control(self, now: float, current: Candidate) -> None:
        """Lower the power only while the worst recent uplink sample keeps `snr_margin_db +
        power_headroom_db` (10 dB) above the floor; raise it when it falls `hysteresis_db`
        short. A saturated SNR reading is a lower bound, so every step down is proven."""
        link = self._link
        low = self.channel.up.low(now)
        if low is None:
            return
        power = link._settings.tx_power_dbm
        uplink_margin = low - (self.max_power - power) - current.required_125_db
        wanted = link.config.snr_margin_db + link.config.power_headroom_db
        new = power
        if uplink_margin > wanted + 1:
            new = max(link.config.min_tx_power_dbm, power - math.floor(uplink_margin - wanted))
        elif uplink_margin < wanted - link.config.hysteresis_db:
            new = min(self.max_power, power + math.ceil(wanted - uplink_margin))
        if new != power:
            self.set_power(now, new, f"uplink margin {uplink_margin:.1f} dB")

    def set_power(self, now: float, power: int, reason: str) -> None:
        link = self._link
        link._configure(link._settings.replace(tx_power_dbm=power), f"power: {reason}")
        self.next_power_at = now + link.config.retune_interval_s
        self.samples = 0
        link._event(LinkEvent.POWER, tx_power=power, reason=reason)

    def restore_power(self, now: float, reason: str) -> None:
        """Full power after losses; power control waits a cooldown before lowering it again."""
        self.set_power(now, self.max_power, reason)
        self.next_power_at = now + self._link.config.failed_cooldown_s
