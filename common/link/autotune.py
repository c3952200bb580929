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

from p1lora.common.link import timing
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
#: Samples (each direction) before the session's settling correction (`AutoTuner.settle`).
SETTLE_MIN_SAMPLES = 3
#: ... and where the samples show fading: the mean of three 4 dB samples is off by 2.3 dB
#: (one standard error), enough to choose two rungs too fast or too slow.
SETTLE_FADING_SAMPLES = 6
#: The settling correction is a cold start's: it comes within this long of the session's
#: first sample. Where the samples come slower than that (the 1 % band spaces updates
#: minutes apart at SF10-12), it decides with the evidence in rather than move a quarter of
#: an hour later; at least `SETTLE_SPARSE_SAMPLES` per direction (the handshake's and one
#: more: two readings each way show the spread).
SETTLE_WINDOW_S = 60.0
SETTLE_SPARSE_SAMPLES = 2
#: Standard errors by which a running link's margin must fall short before it steps down
#: on margin (beyond `hysteresis_db`): 0 on a steady channel, about 2 dB at 4 dB fading.
LONG_RUN_DOUBT = 2.0
#: A move up must cut the typical update's airtime at least to this ratio: SF12/BW250 is
#: only 8 % faster than SF11/BW125 and 0.5 dB less sensitive, and a fading link moved
#: between the two (and back, on loss) for nothing.
UP_MIN_AIRTIME_RATIO = 0.8
#: A step down on loss skips rungs that gain less sensitivity than this (the rendezvous,
#: the bottom, is always a valid step).
STEP_DOWN_MIN_GAIN_DB = 1.0
#: Loss within this many binomial standard deviations of what the measured fading predicts
#: is explained by it (`AutoTuner.fading_explains`): at 5, a link whose fades lose 8 % of its
#: round trips steps down for it less than once in thousands of windows.
LOSS_EXPLAINED_SIGMAS = 5.0
#: The least spread assumed for that prediction (the chip's SNR reading is quantised to
#: 0.25 dB and a steady channel shows almost none): below it a single loss is unexplained.
MIN_FADE_SD_DB = 0.5
#: Round-trip loss the measured fading may cost a rung chosen on the mean SNR
#: (`AutoTuner.tolerable`): below `loss_retune_threshold`'s default (0.3), so the rung is
#: not left on loss, and a frame needs at most 1.33 tries on average.
FADING_LOSS_CAP = 0.25
#: A spread of the samples that is fading, not the reading scatter of a steady channel
#: (+-1-2 dB on real boards, `tuning.READING_SCATTER_DB`): only then is a loss a fade
#: (`AutoTuner.unanswered`) and a rung chosen by the loss it would cost (`tolerable`).
FADING_MIN_SD_DB = 2.0


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


def _lower(a: float | None, b: float | None) -> float | None:
    """The smaller of two estimates (either may be missing)."""
    if a is None or b is None:
        return b if a is None else a
    return min(a, b)


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
        #: Whether this session's one settling correction (`settle`) has been decided.
        self.settled = False
        #: When this session's first sample arrived (`settle_due`).
        self.session_at: float | None = None

    def new_session(self) -> None:
        """A new session starts a fresh view of the channel: old estimates may be from a
        channel that has since changed (that may be why the link was lost)."""
        self.channel = ChannelEstimate()
        self.samples = 0
        self.settled = False
        self.session_at = None

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
            now, self.channel.up.planning(), self.channel.down.planning(), link.config.snr_margin_db
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
        next rung down that is not cooling off after a failure, that the budget can switch to
        from here (`unreachable`) and that is at least `STEP_DOWN_MIN_GAIN_DB` more sensitive
        (SF11/BW125 is only 0.5 dB more sensitive than SF12/BW250: a step that gains no
        margin only starts the next step); None at the bottom."""
        cooling = self.cooling(now) | self.unreachable()
        origin = find(self.table, below)
        lower = slower(self.table, below)
        while lower is not None and (
            lower.key in cooling
            or (
                origin is not None
                and origin.required_125_db - lower.required_125_db < STEP_DOWN_MIN_GAIN_DB
                and lower is not self.table[-1]
            )
        ):
            lower = slower(self.table, self._settings_of(lower))
        if lower is None:
            return None
        best = choose_target(
            self.table,
            self.channel.up.planning(),
            self.channel.down.planning(),
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
        if self.session_at is None:
            self.session_at = at

    def unanswered(self, now: float, sent_with: RadioSettings) -> None:
        """A round trip at `sent_with` got no answer: a censored sample (`SnrEstimate` only
        hears frames that arrived, so near the floor its mean is too high and its spread too
        small, and a link chose rungs its survivors claimed and then lost most frames).
        Where the estimates show fading, the loss counts as a sample at the rung's floor in
        both directions: one of them fell below it (by about 1.2 spreads on average), the
        other arrived (about the margin above it), and the floor errs least in both on
        average. On a steady channel a loss is a collision, not a fade, and is no sample."""
        rung = find(self.table, sent_with)
        if rung is None or not self.fading():
            return
        floor = rung.floor_db
        deficit = self.max_power - sent_with.tx_power_dbm
        self.channel.up.add(floor, sent_with.bw_hz, deficit, now, censored=True)
        self.channel.down.add(floor, sent_with.bw_hz, at=now, censored=True)

    def fading(self) -> bool:
        """Whether either direction's samples spread by `FADING_MIN_SD_DB` or more."""
        return any(
            e.count > 1 and e.sd >= FADING_MIN_SD_DB for e in (self.channel.up, self.channel.down)
        )

    def evaluate(self, now: float) -> None:
        """Decide whether to re-tune (running state only), in priority order: loss, the
        settling correction, margin down, margin up, power."""
        link = self._link
        if link._mode is RadioMode.FIXED:
            self.evaluate_fixed(now)
            return
        current = find(self.table, link._settings)
        if self.on_loss(now, current) or current is None:
            return
        if self.settle_due(now):
            self.settle(now, current)
            return
        if self.margin_down(now, current):
            return
        if self.samples < MIN_SAMPLES or now < self.next_tune_at:
            return
        if self.margin_up(now, current):
            return
        if (
            link.config.power_control
            and current is self.table[0]
            and now >= max(self.next_power_at, self.interference_until)
        ):
            self.power_control(now, current)

    def on_loss(self, now: float, current: Candidate | None) -> bool:
        """Partial loss the measured fading does not explain: interference (keep the rung,
        full power) or weak signal (full power, else a step down). True when it acted."""
        link = self._link
        rate = link._loss.rate
        if not (
            now >= self.next_down_at
            and rate is not None
            and len(link._loss) >= min(10, link.config.loss_window)
            and link.config.loss_retune_threshold <= rate < 1.0
            and not (current is not None and self.fading_explains(rate, len(link._loss), current))
        ):
            return False
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
            return True
        if link._settings.tx_power_dbm < self.max_power:
            self.restore_power(now, "loss")
            return True
        target = self.step_down_target(now, link._settings)
        if target is not None:
            link._start_switch(now, target, f"loss {rate:.0%}")
        return True

    def margin_down(self, now: float, current: Candidate) -> bool:
        """Full power, else a slower rung, when the planning margin falls `hysteresis_db`
        (and `LONG_RUN_DOUBT` standard errors: a noisy link's estimate wanders by them, which
        is no reason to move) short. Decided as soon as the evidence (the handshake's sample
        and the probes') allows, not after the retune interval. True when it decided."""
        link = self._link
        if self.samples < 1 or self.evidence() < MIN_SAMPLES:
            return False
        up, down = self.channel.up.planning(), self.channel.down.planning()
        margin = link.config.snr_margin_db
        deficit = self.max_power - link._settings.tx_power_dbm
        current_margin = margin_db(current, up, down, deficit)
        short = margin - link.config.hysteresis_db - LONG_RUN_DOUBT * self.standard_error()
        if current_margin is None or current_margin >= short:
            return False
        tolerable = self.tolerable()
        if current.key in tolerable:
            return False
        if deficit > 0:
            self.set_power(now, self.max_power, "margin down")
            return True
        fallback = choose_target(
            self.table, up, down, margin, self.cooling(now), tolerable=tolerable
        )
        if is_faster(self.table, link._settings, self._settings_of(fallback)):
            self.next_tune_at = now + link.config.retune_interval_s
            link._start_switch(now, self._settings_of(fallback), "margin down")
        return True

    def margin_up(self, now: float, current: Candidate) -> bool:
        """A faster rung when even the worst recent sample (and the planning value) clears
        it by `snr_margin_db + hysteresis_db` (on a fading channel the average alone moved up
        and straight back down every few minutes), and only for a real gain
        (`UP_MIN_AIRTIME_RATIO`). True when it started a switch."""
        link = self._link
        channel = self.channel
        best = self.choose(
            now,
            _lower(channel.up.low(now), channel.up.planning()),
            _lower(channel.down.low(now), channel.down.planning()),
            link.config.snr_margin_db + link.config.hysteresis_db,
        )
        if not is_faster(self.table, self._settings_of(best), link._settings) or (
            best.typical_airtime_s > UP_MIN_AIRTIME_RATIO * current.typical_airtime_s
        ):
            return False
        self.next_tune_at = now + link.config.retune_interval_s
        link._start_switch(now, self._settings_of(best), "margin up")
        return True

    def settle(self, now: float, current: Candidate) -> None:
        """The session's one correction without hysteresis, once a few samples are in.

        The handshake chooses from one sample per direction; on a fading channel that sample
        is several decibels off either way, and the hysteresis that keeps a running link
        still then kept the link on the wrong rung for minutes (or until a fade moved it).
        With the probes' samples (or, at the rendezvous, the first updates') the plain rule
        is asked once more, and the link moves to its answer (up only for a real gain);
        after that only the hysteresis rules apply, so it does not wander."""
        self.settled = True
        link = self._link
        # Slower rungs that gain less than `STEP_DOWN_MIN_GAIN_DB` are no correction.
        index = self.table.index(current)
        no_gain = {
            c.key
            for c in self.table[index + 1 :]
            if current.required_125_db - c.required_125_db < STEP_DOWN_MIN_GAIN_DB
        }
        best = choose_target(
            self.table,
            self.channel.up.planning(),
            self.channel.down.planning(),
            link.config.snr_margin_db,
            self.cooling(now) | self.unreachable() | no_gain,
            tolerable=self.tolerable(),
        )
        if best is current:
            return
        faster = is_faster(self.table, self._settings_of(best), link._settings)
        if faster and best.typical_airtime_s > UP_MIN_AIRTIME_RATIO * current.typical_airtime_s:
            return
        self.next_tune_at = now + link.config.retune_interval_s
        link._start_switch(now, self._settings_of(best), "settle")

    def settle_samples(self) -> int:
        """Samples (each direction) the settling correction waits for."""
        return SETTLE_FADING_SAMPLES if self.fading() else SETTLE_MIN_SAMPLES

    def settle_due(self, now: float) -> bool:
        """Whether the settling correction is decided now: once `settle_samples` are in, or
        with `SETTLE_SPARSE_SAMPLES` when the missing ones, at the pacing gap of the current
        rung, would arrive only after `SETTLE_WINDOW_S` (a duty-limited band: the six
        samples of a fading link took 11-22 minutes at 868.1 MHz, and the link then moved)."""
        if self.settled:
            return False
        have, need = self.evidence(), self.settle_samples()
        if have >= need:
            return True
        if have < SETTLE_SPARSE_SAMPLES or self.session_at is None:
            return False
        link = self._link
        gap = timing.pacing_gap(link.config, link._settings, round(link._delivery.typical_bytes))
        return now + (need - have) * gap > self.session_at + SETTLE_WINDOW_S

    def standard_error(self) -> float:
        """The larger standard error of the two directions' estimates (dB)."""
        return max(self.channel.up.standard_error, self.channel.down.standard_error)

    def evidence(self) -> int:
        """Samples behind the estimates (the fewer of the two directions)."""
        return min(self.channel.up.count, self.channel.down.count)

    def fading_explains(self, rate: float, frames: int, current: Candidate) -> bool:
        """Whether a loss `rate` over `frames` is what the measured fading predicts at this
        rung (`predicted_loss` from the planning values), within `LOSS_EXPLAINED_SIGMAS`
        binomial deviations. A rung carrying the loss its noise predicts is settled, not
        failing: stepping down for it made a fading link wander between settings all hour.
        A loss the fading does not explain (the path got worse, the estimates lag) still
        steps down."""
        # The planning value, not the mean: only frames that arrived were measured, so
        # near the floor the mean of the samples is too high and their spread too small.
        expected = self.predicted_loss(current, planning=True)
        if expected is None:
            return False
        deviation = math.sqrt(max(expected * (1.0 - expected), 1e-9) / max(frames, 1))
        return rate <= expected + LOSS_EXPLAINED_SIGMAS * deviation

    def predicted_loss(self, rung: Candidate, planning: bool) -> float | None:
        """The round-trip loss the measured fading predicts at `rung`: a frame and its ack
        each fail when their SNR falls below the floor, a normal fade around the estimate
        (its planning value, else its mean less its standard error) with the samples'
        spread: Phi(-margin / sd) per direction. None before a sample in both directions."""
        channel = self.channel
        deficit = self.max_power - self._link._settings.tx_power_dbm
        success = 1.0
        for estimate, extra in ((channel.up, deficit), (channel.down, 0.0)):
            level = estimate.planning()
            if not planning and estimate.value is not None:
                # The mean less its standard error: a few samples' scatter is no margin (the
                # mean of six 4 dB samples is off by 1.6 dB in one run of three).
                level = estimate.value - estimate.standard_error
            if level is None:
                return None
            mean_margin = level - extra - rung.required_125_db
            spread = max(estimate.sd, MIN_FADE_SD_DB)
            success *= 1.0 - 0.5 * math.erfc(mean_margin / (spread * math.sqrt(2.0)))
        return 1.0 - success

    def tolerable(self) -> set[tuple[int, int]]:
        """Rungs a fading link may settle on although the spread term of the planning value
        rules them out: the fading measured costs them at most `FADING_LOSS_CAP` of the round
        trips, which retransmissions carry (and `fading_explains` then keeps the link there).
        Without it a 4 dB fading link at 141 dB went to SF12/BW125 (half the throughput of
        SF12/BW250, which its mean SNR carries) on a few samples' scatter. Empty on a
        channel that shows no fading: there the margin rule alone decides."""
        if not self.fading():
            return set()
        return {
            c.key
            for c in self.table
            if (loss := self.predicted_loss(c, planning=False)) is not None
            and loss <= FADING_LOSS_CAP
        }

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
