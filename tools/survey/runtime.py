"""Drive a survey machine (`common.survey.SurveyTx`/`SurveyRx`) on a `Radio`.

`SurveyStation` is the glue, the same for real time and virtual time: drain the radio's
events into the machine, call its timer when due, and carry out its `Configure`/`Transmit`
actions. `run_virtual` runs any number of stations on one `VirtualClock` (both Pis in one
process, for tests and `p1-lora survey --simulate`); `run_realtime` runs one station on a
real clock, waking on the radio's `wakeup` or the machine's next deadline.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from p1lora.common.clock import Clock, VirtualClock
from p1lora.common.survey import Action, Configure, SurveyRx, SurveyTx, Transmit
from p1lora.hardware.radio import FrameReceived, Radio, RadioError, RadioFault, TxDone

__all__ = ["SurveyStation", "run_realtime", "run_virtual"]

logger = logging.getLogger(__name__)

#: A real-time station re-checks at least this often (a missed wakeup costs no more).
_MAX_SLEEP_S = 0.2
#: Virtual time never stands still: a deadline already due moves the clock this much.
_EPSILON_S = 1e-6


class SurveyStation:
    """One survey machine on one radio; `after_service` runs after each service (printing)."""

    def __init__(
        self,
        machine: SurveyTx | SurveyRx,
        radio: Radio,
        clock: Clock,
        after_service: Callable[[], None] = lambda: None,
    ) -> None:
        self.machine = machine
        self.radio = radio
        self.clock = clock
        self.after_service = after_service
        self.faults = 0

    def start(self) -> None:
        self._apply(self.machine.start(self.clock.now()))
        self.after_service()

    def service(self) -> None:
        """Feed the radio's events and a due timer to the machine, carry out its actions."""
        for event in self.radio.poll():
            now = self.clock.now()
            if isinstance(event, FrameReceived):
                self._apply(self.machine.on_frame(event.frame, now))
            elif isinstance(event, TxDone):
                self._apply(self.machine.on_tx_done(now))
            elif isinstance(event, RadioFault):
                self.faults += 1
                logger.warning("radio: %s", event.reason)
        deadline = self.machine.next_deadline()
        now = self.clock.now()
        if deadline is not None and now >= deadline:
            self._apply(self.machine.on_timer(now))
        self.after_service()

    def _apply(self, actions: Sequence[Action]) -> None:
        for action in actions:
            if isinstance(action, Configure):
                self.radio.configure(action.settings)
            elif isinstance(action, Transmit):
                try:
                    self.radio.send(action.payload)
                except RadioError as exc:
                    logger.warning("could not send a survey frame: %s", exc)
                    self._apply(self.machine.on_tx_done(self.clock.now()))


def run_virtual(
    stations: Sequence[SurveyStation],
    clock: VirtualClock,
    until: Callable[[], bool],
    limit_s: float,
) -> None:
    """Run `stations` on one virtual clock until `until()` or `limit_s` of virtual time."""
    end = clock.now() + limit_s
    for station in stations:
        station.start()
    while not until() and clock.now() < end:
        for station in stations:
            station.service()
        if until():
            return
        times = [t for s in stations if (t := s.machine.next_deadline()) is not None]
        scheduled = clock.next_event_time()
        if scheduled is not None:
            times.append(scheduled)
        if not times:
            return
        clock.advance_to(min(max(min(times), clock.now() + _EPSILON_S), end))


def run_realtime(station: SurveyStation, until: Callable[[], bool]) -> None:
    """Run one station on its real clock until `until()` (Ctrl-C stops it too)."""
    station.start()
    while not until():
        station.service()
        deadline = station.machine.next_deadline()
        sleep = _MAX_SLEEP_S
        if deadline is not None:
            sleep = min(sleep, max(0.0, deadline - station.clock.now()))
        station.clock.wait(station.radio.wakeup, sleep)
