"""The site survey protocol (`p1-lora survey`), sans I/O: the two state machines.

A survey answers "will the link work from here, and how well?" before the antenna is mounted.
The transmitter's Pi (`SurveyTx`) and the receiver's Pi (`SurveyRx`) meet at the region's
rendezvous setting, as the link does, then visit every rung of the link's own ladder
(`tuning.candidate_table`): at each, the transmitter sends `probes` probes sized like a typical
update and the receiver answers each with a report of how it heard the probe. The transmitter
thus measures both directions (the uplink from the reports, the downlink from the reports
themselves) and prints, per setting, frames sent and answered, RSSI, SNR, the margin over the
demodulation floor and the updates per hour each sub-band's duty cycle would allow; then the
setting the link would choose with the link's own rule (`tuning.choose_target` over the SNR
the link would plan with, `tuning.effective_snr_db`) and its margin.

Sequence (all frames authenticated with the pre-shared key exactly like the link's handshake
frames: static direction keys, a fresh 8-byte random and a counter in every nonce):

    rendezvous:  SURVEY(hello)      -> SURVEYED            (repeated until answered)
    rendezvous:  SURVEY(goto i, n)  -> SURVEYED            then both switch to rung i
    rung i:      SURVEY(probe i, s) -> SURVEYED(i, s, rssi, snr)   for s in 0..n-1
    (both return to the rendezvous: the transmitter after its n probes, the receiver after
     the last one or when the rung's time is up)
    ...every rung..., then SURVEY(done) at the rendezvous.

With `watch`, the transmitter then goes to the chosen rung and keeps probing about once a
second (`WATCH_INTERVAL_S`, slower when the budget requires), a `WatchSample` per answer, for
moving the antenna; the receiver stays on that rung while probes keep coming.

The frames are in `survey_frames`, the arithmetic of the results in `survey_results`. Every
transmission passes the sub-band's `AirtimeBudget` first (the transmitter also mirrors the
receiver's, see `SurveyTx`): a survey is frames like any other, and when the budget is spent
the machine waits.

Time is injected (`now` in every call); the machines return `Configure` / `Transmit` actions
and keep their results; `next_deadline()` says when to call `on_timer` next.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from p1lora.common.airtime import time_on_air_for
from p1lora.common.budget import AirtimeBudget
from p1lora.common.frames import FrameError
from p1lora.common.link.config import LinkConfig
from p1lora.common.link.tuning import bw_offset_db, candidate_table, choose_target, margin_db
from p1lora.common.radio_types import RadioSettings, ReceivedFrame
from p1lora.common.survey_frames import (
    PROBE_BYTES,
    RENDEZVOUS_STEP,
    REPORT_BYTES,
    SurveyFrames,
    SurveyKind,
)
from p1lora.common.survey_results import (
    Choice,
    Measurement,
    SettingResult,
    WatchSample,
)

__all__ = [
    "HELLO_INTERVAL_S",
    "PROBES_PER_SETTING",
    "WATCH_INTERVAL_S",
    "Action",
    "Configure",
    "SurveyRx",
    "SurveyTx",
    "Transmit",
    "step_patience",
]

#: Probes per rung: enough to see a 25 % loss, few enough that the whole ladder fits a few
#: minutes of a 10 % sub-band.
PROBES_PER_SETTING: Final = 4
#: `--watch` probes this often when the budget allows it.
WATCH_INTERVAL_S: Final = 1.0
#: Goto and done frames are repeated this many times before the survey meets again.
_ATTEMPTS: Final = 5
#: An unanswered hello is repeated after this long (the budget may stretch it further).
HELLO_INTERVAL_S: Final = 5.0


# ---------------------------------------------------------------------------------- actions


@dataclass(frozen=True, slots=True)
class Configure:
    """Set the radio to `settings` (continuous receive)."""

    settings: RadioSettings


@dataclass(frozen=True, slots=True)
class Transmit:
    """Send `payload` now with the settings last configured (the budget already allowed it)."""

    payload: bytes
    airtime: float


Action = Configure | Transmit


def _reply_timeout(config: LinkConfig, settings: RadioSettings) -> float:
    """How long to wait for a report after a probe's TxDone."""
    return time_on_air_for(settings, REPORT_BYTES) + 2 * config.turnaround_s + 0.3


def _step_airtimes(
    config: LinkConfig, settings: RadioSettings, probes: int
) -> tuple[list[float], list[float]]:
    """Airtime of one rung's frames: the transmitter's (goto at the rendezvous, then the
    probes) and the receiver's (the reports to each)."""
    rendezvous = config.rendezvous()
    tx = [time_on_air_for(rendezvous, PROBE_BYTES)] + [
        time_on_air_for(settings, PROBE_BYTES)
    ] * probes
    rx = [time_on_air_for(rendezvous, REPORT_BYTES)] + [
        time_on_air_for(settings, REPORT_BYTES)
    ] * probes
    return tx, rx


def step_patience(config: LinkConfig, settings: RadioSettings, probes: int) -> float:
    """How long the receiver waits on a rung for the next probe.

    When the rung's frames fit one budget window, the transmitter waits for room for all of
    them before its goto, so probes follow each other closely. When they cannot (US915's
    0.4 s in 20 s), probes wait for the window to slide, and so must the receiver. Both sides
    compute this from the shared config, so no frame needs to carry it.
    """
    per_probe = time_on_air_for(settings, PROBE_BYTES) + _reply_timeout(config, settings)
    patience = max(probes, 3) * per_probe + 2.0
    budget = AirtimeBudget.for_sub_band(config.sub_band())
    tx, rx = _step_airtimes(config, settings, probes)
    if not (budget.sequence_fits(tx) and budget.sequence_fits(rx)):
        patience += budget.window_s
    return patience


# ---------------------------------------------------------------------------------- base


class _Node:
    """Budget gate, radio busy and deferred sends shared by both sides."""

    def __init__(self, config: LinkConfig, psk: bytes, rng: Callable[[int], bytes]) -> None:
        self.config = config
        self.table = candidate_table(config)
        self.rendezvous = config.rendezvous()
        self._frames = SurveyFrames(psk, rng)
        self._budget = AirtimeBudget.for_sub_band(config.sub_band())
        self._settings = self.rendezvous
        self._busy = False
        self._pending: bytes | None = None
        self._actions: list[Action] = []
        self.rejected = 0
        self.deadline: float | None = None
        #: Time spent waiting for the duty-cycle budget (seconds).
        self.budget_wait_s = 0.0
        self._budget_at: float | None = None
        #: A step to take later: (when, what) - a settle delay, a hello interval, watch pacing.
        self._later: tuple[float, Callable[[float], None]] | None = None

    def settings_for(self, step: int) -> RadioSettings:
        if step == RENDEZVOUS_STEP:
            return self.rendezvous
        candidate = self.table[step]
        return self.config.settings(candidate.sf, candidate.bw_hz)

    def _configure(self, settings: RadioSettings) -> None:
        self._settings = settings
        self._pending = None
        self._actions.append(Configure(settings))

    def _peer_wait(self, now: float, airtime: float) -> float:
        """How long the peer's budget needs before it can answer a frame sent now."""
        return 0.0

    def _peer_record(self, now: float, airtime: float) -> None:
        """The peer will answer the frame sent now."""

    def _send(self, payload: bytes, now: float) -> bool:
        """Transmit now if the radio is free and the budget allows; else keep it pending."""
        airtime = time_on_air_for(self._settings, len(payload))
        wait = max(self._budget.wait_time(now, airtime), self._peer_wait(now, airtime))
        if math.isinf(wait):
            # The ladder (`candidate_table`) only holds settings whose frames are legal.
            raise ValueError(f"a {len(payload)}-byte frame at {self._settings.label()} never fits")
        if self._busy or wait > 0:
            self._pending = payload
            if not self._busy:
                self._budget_at = now + wait
            return False
        self._budget.record(now, airtime)
        self._peer_record(now, airtime)
        self._busy = True
        self._pending = None
        self._budget_at = None
        self._actions.append(Transmit(payload, airtime))
        return True

    def _retry_pending(self, now: float) -> None:
        if self._pending is None or self._busy:
            return
        if self._budget_at is not None:
            if now < self._budget_at:
                return
            self.budget_wait_s += now - self._budget_at
        self._send(self._pending, now)

    def _run_later(self, now: float) -> None:
        if self._later is not None and now >= self._later[0]:
            _, step = self._later
            self._later = None
            step(now)

    def _take(self) -> list[Action]:
        actions, self._actions = self._actions, []
        return actions

    def next_deadline(self) -> float | None:
        later = self._later[0] if self._later is not None else None
        times = [t for t in (self.deadline, self._budget_at, later) if t is not None]
        return min(times, default=None)


# ---------------------------------------------------------------------------------- rx


class SurveyRx(_Node):
    """The receiver's side: answers probes and follows the transmitter across the ladder."""

    def __init__(self, config: LinkConfig, psk: bytes, rng: Callable[[int], bytes]) -> None:
        super().__init__(config, psk, rng)
        self.results: dict[int, Measurement] = {}
        self.finished = False
        self.met = False
        self._step = RENDEZVOUS_STEP
        self._step_count = PROBES_PER_SETTING
        self._after_tx: RadioSettings | None = None
        self._last_counter: int | None = None

    def start(self, now: float) -> list[Action]:
        self._configure(self.rendezvous)
        return self._take()

    def on_frame(self, frame: ReceivedFrame, now: float) -> list[Action]:
        try:
            probe = self._frames.open_probe(frame.payload)
        except FrameError:
            self.rejected += 1
            return self._take()
        replayed = self._last_counter is not None and probe.counter <= self._last_counter
        if replayed and probe.kind is not SurveyKind.HELLO:
            self.rejected += 1  # a replay of an earlier probe
            return self._take()
        self._last_counter = probe.counter
        self.met = True
        measurement = self.results.setdefault(probe.step, Measurement())
        if probe.kind is SurveyKind.PROBE:
            measurement.add(frame.rssi_dbm, frame.snr_db)
        heard = measurement.count
        self._send(self._frames.report(probe, frame, heard), now)
        if probe.kind is SurveyKind.GOTO and probe.step < len(self.table):
            self._step = probe.step
            self._step_count = probe.count or PROBES_PER_SETTING
            self._after_tx = self.settings_for(probe.step)
            self.results[probe.step] = Measurement()
        elif probe.kind is SurveyKind.PROBE and probe.count and probe.seq >= probe.count - 1:
            self._after_tx = self.rendezvous
        elif probe.kind is SurveyKind.PROBE:
            self.deadline = now + self._step_timeout(probe.count or PROBES_PER_SETTING)
        elif probe.kind is SurveyKind.DONE:
            self.finished = True
        return self._take()

    def _step_timeout(self, count: int) -> float:
        """How long the receiver stays on a rung without hearing the transmitter."""
        return step_patience(self.config, self._settings, max(count, 1))

    def on_tx_done(self, now: float) -> list[Action]:
        self._busy = False
        if self._after_tx is not None:
            target, self._after_tx = self._after_tx, None
            self._configure(target)
            if target is self.rendezvous:
                self._step = RENDEZVOUS_STEP
                self.deadline = None
            else:
                self.deadline = now + self._step_timeout(self._step_count)
        self._retry_pending(now)
        return self._take()

    def on_timer(self, now: float) -> list[Action]:
        self._retry_pending(now)
        if self.deadline is not None and now >= self.deadline:
            self.deadline = None
            if self._step != RENDEZVOUS_STEP:
                self._step = RENDEZVOUS_STEP
                self._configure(self.rendezvous)
        return self._take()


# ---------------------------------------------------------------------------------- tx


class SurveyTx(_Node):
    """The transmitter's side: drives the survey and measures both directions."""

    def __init__(
        self,
        config: LinkConfig,
        psk: bytes,
        rng: Callable[[int], bytes],
        *,
        probes: int = PROBES_PER_SETTING,
        watch: bool = False,
    ) -> None:
        super().__init__(config, psk, rng)
        if not 1 <= probes <= 50:
            raise ValueError("probes per setting must be within 1..50")
        self.probes = probes
        self.watch = watch
        self.results = [SettingResult(c, config.settings(c.sf, c.bw_hz)) for c in self.table]
        self.choice: Choice | None = None
        #: The ladder is done (`choice` is set); with `watch` the probing goes on.
        self.finished = False
        self.met = False
        self._finished_steps: list[SettingResult] = []
        self._samples: list[WatchSample] = []
        self._phase = "hello"
        self._step = 0
        self._seq = 0
        self._attempts = 0
        #: The probe awaiting its report: its kind and random (the report's associated data).
        self._outstanding: tuple[SurveyKind, bytes] | None = None
        self._waiting_reply = False
        self._watch_started = 0.0
        #: The receiver answers every probe and sends nothing else, so its budget can be
        #: mirrored here exactly (counting every report it may have sent): a probe goes out
        #: only when the answer will be allowed too, instead of timing out on a report the
        #: receiver had to hold back.
        self._peer_budget = AirtimeBudget.for_sub_band(config.sub_band())

    def _report_airtime(self) -> float:
        return time_on_air_for(self._settings, REPORT_BYTES)

    def _peer_wait(self, now: float, airtime: float) -> float:
        at = now + airtime + self.config.turnaround_s
        return self._peer_budget.wait_time(at, self._report_airtime())

    def _peer_record(self, now: float, airtime: float) -> None:
        self._peer_budget.record(now + airtime, self._report_airtime())

    def start(self, now: float) -> list[Action]:
        self._configure(self.rendezvous)
        self._probe(SurveyKind.HELLO, RENDEZVOUS_STEP, 0, 0, now)
        return self._take()

    # -- sending ----------------------------------------------------------------------------

    def _probe(self, kind: SurveyKind, step: int, seq: int, count: int, now: float) -> None:
        payload, random = self._frames.probe(kind, step, seq, count, self._settings.tx_power_dbm)
        self._outstanding = (kind, random)
        self._waiting_reply = False
        self.deadline = None
        self._send(payload, now)

    def _switch_then(
        self, settings: RadioSettings, now: float, then: Callable[[float], None]
    ) -> None:
        """Change settings and act after the turnaround (the peer switches as we do)."""
        self._configure(settings)
        self._later = (now + self.config.turnaround_s, then)

    # -- the plan ---------------------------------------------------------------------------

    def _next(self, now: float, answered: bool) -> None:
        """The next frame once a probe was answered or its wait ran out: one step per phase,
        looked up in `_NEXT_BY_PHASE` (a finished survey has no next frame)."""
        step = _NEXT_BY_PHASE.get(self._phase)
        if step is not None:
            step(self, now, answered)

    def _next_after_hello(self, now: float, answered: bool) -> None:
        if answered:
            self.met = True
            self._goto(now)
        else:
            self._later = (
                now + HELLO_INTERVAL_S,
                lambda t: self._probe(SurveyKind.HELLO, RENDEZVOUS_STEP, 0, 0, t),
            )

    def _next_after_goto(self, now: float, answered: bool) -> None:
        if answered:
            self._phase, self._seq = "probe", 0
            self._switch_then(self.results[self._step].settings, now, self._probe_step)
        elif self._attempts < _ATTEMPTS:
            self._attempts += 1
            self._probe(SurveyKind.GOTO, self._step, 0, self.probes, now)
        else:
            self._phase = "hello"  # the receiver is gone: meet again
            self._probe(SurveyKind.HELLO, RENDEZVOUS_STEP, 0, 0, now)

    def _next_after_probe(self, now: float, answered: bool) -> None:
        self._seq += 1
        if self._seq < self.probes:
            self._probe_step(now)
        else:
            self._finished_steps.append(self.results[self._step])
            self._step += 1
            self._switch_then(self.rendezvous, now, self._goto)

    def _next_after_done(self, now: float, answered: bool) -> None:
        if answered or self._attempts >= _ATTEMPTS:
            self._conclude(now)
        else:
            self._attempts += 1
            self._probe(SurveyKind.DONE, RENDEZVOUS_STEP, 0, 0, now)

    def _next_after_watch_goto(self, now: float, answered: bool) -> None:
        if answered:
            self._phase = "watch"
            self._switch_then(self._watch_settings(), now, self._watch_probe)
        else:
            self._later = (now + WATCH_INTERVAL_S, self._watch_goto)

    def _next_after_watch(self, now: float, answered: bool) -> None:
        self._later = (max(now, self._watch_started + WATCH_INTERVAL_S), self._watch_probe)

    def _probe_step(self, now: float) -> None:
        self._probe(SurveyKind.PROBE, self._step, self._seq, self.probes, now)

    def _goto(self, now: float) -> None:
        self._attempts = 0
        if self._step >= len(self.results):
            self._phase = "done"
            self._probe(SurveyKind.DONE, RENDEZVOUS_STEP, 0, 0, now)
        else:
            self._phase = "goto"
            wait = self._rung_wait(now)
            if wait > 0:
                self.budget_wait_s += wait
                self._later = (now + wait, self._send_goto)
            else:
                self._send_goto(now)

    def _send_goto(self, now: float) -> None:
        self._probe(SurveyKind.GOTO, self._step, 0, self.probes, now)

    def _rung_wait(self, now: float) -> float:
        """Until both budgets have room for the whole rung (0 when it cannot fit one window:
        then each frame waits for its own room, and the receiver knows to be patient)."""
        tx, rx = _step_airtimes(self.config, self.results[self._step].settings, self.probes)
        own = self._budget.sequence_wait(now, tx)
        peer = self._peer_budget.sequence_wait(now, rx)
        if math.isinf(own) or math.isinf(peer):
            return 0.0
        return max(own, peer)

    def _conclude(self, now: float) -> None:
        self.choice = self._choose()
        self.finished = True
        if self.watch:
            self._watch_goto(now)
        else:
            self._phase = "finished"
            self.deadline = None

    def _watch_goto(self, now: float) -> None:
        self._phase = "watch-goto"
        self._probe(SurveyKind.GOTO, self._watch_step(), 0, 0, now)

    def _watch_step(self) -> int:
        assert self.choice is not None
        return self.table.index(self.choice.candidate)

    def _watch_settings(self) -> RadioSettings:
        return self.settings_for(self._watch_step())

    def _watch_probe(self, now: float) -> None:
        self._watch_started = now
        self._probe(SurveyKind.PROBE, self._watch_step(), 0, 0, now)

    def _choose(self) -> Choice:
        """The link's own rule (`choose_target`) over the SNR measured in each direction,
        expressed at the 125 kHz reference and averaged over the rungs that answered."""
        up_125 = _mean(
            [
                snr + bw_offset_db(r.settings.bw_hz)
                for r in self.results
                if (snr := r.up.planning_snr(r.settings.bw_hz)) is not None
            ]
        )
        down_125 = _mean(
            [
                snr + bw_offset_db(r.settings.bw_hz)
                for r in self.results
                if (snr := r.down.planning_snr(r.settings.bw_hz)) is not None
            ]
        )
        # A rung that never answered is not chosen, however good the SNR elsewhere looked.
        excluded = {r.candidate.key for r in self.results if r.answered == 0}
        excluded.discard(self.table[-1].key)
        target = choose_target(self.table, up_125, down_125, self.config.snr_margin_db, excluded)
        margin = margin_db(target, up_125, down_125)
        return Choice(target, margin, self.config.snr_margin_db, up_125, down_125)

    # -- events -----------------------------------------------------------------------------

    def on_frame(self, frame: ReceivedFrame, now: float) -> list[Action]:
        if self._outstanding is None or not self._waiting_reply:
            self.rejected += 1
            return self._take()
        kind, random = self._outstanding
        try:
            report = self._frames.open_report(frame.payload, random)
        except FrameError:
            self.rejected += 1
            return self._take()
        self._outstanding = None
        self._waiting_reply = False
        self.deadline = None
        if kind is SurveyKind.PROBE and self._phase == "probe":
            result = self.results[self._step]
            result.answered += 1
            result.heard = report.heard
            result.up.add(report.rssi_dbm, report.snr_db)
            result.down.add(frame.rssi_dbm, frame.snr_db)
        elif kind is SurveyKind.PROBE and self._phase == "watch":
            self._samples.append(
                WatchSample(
                    now,
                    self._settings,
                    True,
                    report.rssi_dbm,
                    report.snr_db,
                    frame.rssi_dbm,
                    frame.snr_db,
                )
            )
        self._next(now, answered=True)
        return self._take()

    def on_tx_done(self, now: float) -> list[Action]:
        self._busy = False
        if self._outstanding is not None:
            if self._outstanding[0] is SurveyKind.PROBE and self._phase == "probe":
                self.results[self._step].sent += 1
            self._waiting_reply = True
            self.deadline = now + _reply_timeout(self.config, self._settings)
        self._retry_pending(now)
        return self._take()

    def on_timer(self, now: float) -> list[Action]:
        self._retry_pending(now)
        self._run_later(now)
        if self.deadline is not None and now >= self.deadline and self._waiting_reply:
            self.deadline = None
            self._waiting_reply = False
            self._outstanding = None
            if self._phase == "watch":
                self._samples.append(WatchSample(now, self._settings, False))
            self._next(now, answered=False)
        return self._take()

    def take_finished(self) -> list[SettingResult]:
        """Rungs completed since the last call (to print them as the survey goes)."""
        done, self._finished_steps = self._finished_steps, []
        return done

    def take_samples(self) -> list[WatchSample]:
        """`--watch` samples since the last call."""
        samples, self._samples = self._samples, []
        return samples


# The transmitter's next step per phase once a probe was answered or its wait ran out.
_NEXT_BY_PHASE: Final[dict[str, Callable[[SurveyTx, float, bool], None]]] = {
    "hello": SurveyTx._next_after_hello,
    "goto": SurveyTx._next_after_goto,
    "probe": SurveyTx._next_after_probe,
    "done": SurveyTx._next_after_done,
    "watch-goto": SurveyTx._next_after_watch_goto,
    "watch": SurveyTx._next_after_watch,
}


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None
