"""The transmitter's P1 sources: where `p1-lora-tx` reads telegrams from.

- the meter's serial port (`SerialSource`: auto-detects DSMR 2.2-5 settings, survives unplugged
  cables by reopening with backoff, so a missing port at start is waited for, not fatal);
- the built-in virtual meter (`--meter virtual`, optionally `--meter-template FILE` for any
  meter's style): realistic telegrams at the profile's interval, generated in-process, no pty
  needed (demos, tests, trying the link before the cable arrives); its registers are kept in
  the state directory so they never count backwards across restarts (`virtual_meter_state`);
- a capture replay (`--meter FILE`): a real meter's telegrams byte for byte at their interval.

`make_source` picks one from the `[serial]`/`[meter]` sections; each has the `TelegramSource`
face the daemon starts, stops, summarises and health-checks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from p1lora.common.clock import Clock
from p1lora.service.config import Config, ConfigError, Source
from p1lora.transmitter.capture_replay import CaptureReplay, ReplayError
from p1lora.transmitter.meter_template import load_template
from p1lora.transmitter.options import VIRTUAL_METER, MeterSection, SerialSection
from p1lora.transmitter.serial_source import SerialSource, SourceStats
from p1lora.transmitter.virtual_meter import VirtualMeter
from p1lora.transmitter.virtual_meter_state import METER_STATE_FILE, MeterRegisterFile

__all__ = [
    "MeterFeeder",
    "SerialTelegramSource",
    "TelegramSource",
    "make_source",
]

#: The daemon's logger: these lines were always the daemon's, and log readers (the demo view)
#: select by logger name.
logger = logging.getLogger("p1lora.transmitter.cli")

#: A feeder this far behind real time (a suspended machine) skips ahead instead of bursting.
_MAX_LAG_INTERVALS = 5


class TelegramSource(Protocol):
    """What the transmitter reads telegrams from."""

    description: str

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def summary(self, now: float) -> str: ...

    def problem(self) -> str | None: ...


class MeterFeeder:
    """Hands the telegrams of a (t, raw) stream to `on_telegram` at real time, on a thread.

    The virtual meter and capture replay produce telegram k at `t_k` seconds after their
    start; this paces them on `clock` like a real meter's line would. A finished stream (a
    replay without looping) ends the thread normally; only a crash is a `problem()`.
    """

    def __init__(
        self,
        events: Iterator[tuple[float, bytes]],
        on_telegram: Callable[[bytes, float], None],
        clock: Clock,
        *,
        interval: float,
        description: str,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.description = description
        #: Called by `stop()` once the thread has ended (the virtual meter's final save).
        self._on_stop = on_stop
        self._events = events
        self._on_telegram = on_telegram
        self._clock = clock
        self._interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._crashed: str | None = None
        self.sent = 0
        self.skipped = 0
        self.finished = False

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the meter feeder was already started")
        self._thread = threading.Thread(target=self._run, name="p1-meter-feeder", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        if self._on_stop is not None:
            self._on_stop()

    def summary(self, now: float) -> str:
        state = "finished" if self.finished else "running"
        return f"{self.description}: {state}, {self.sent} telegram(s)"

    def problem(self) -> str | None:
        if self._crashed is not None:
            return f"the P1 source stopped: {self._crashed}"
        return None

    def _run(self) -> None:
        try:
            self._feed()
        except Exception as exc:
            self._crashed = f"{type(exc).__name__}: {exc}"
            logger.exception("P1 source %s failed", self.description)

    def _feed(self) -> None:
        started = self._clock.now()
        for t, raw in self._events:
            delay = started + t - self._clock.now()
            if delay > 0 and self._clock.wait(self._stop, delay):
                return
            if self._stop.is_set():
                return
            if -delay > _MAX_LAG_INTERVALS * self._interval:
                self.skipped += 1
                continue
            self._on_telegram(raw, self._clock.now())
            self.sent += 1
            if self.sent == 1:
                logger.info("first telegram from the %s", self.description)
        self.finished = True
        logger.warning(
            "%s finished after %d telegram(s); nothing more to send (set meter.loop to repeat)",
            self.description,
            self.sent,
        )


class SerialTelegramSource:
    """`SerialSource` with the `TelegramSource` face."""

    def __init__(self, source: SerialSource) -> None:
        self.source = source
        self.description = f"P1 port {source.port} (serial mode {source.mode})"

    def start(self) -> None:
        self.source.start()

    def stop(self, timeout: float = 5.0) -> None:
        self.source.stop(timeout)

    def stats(self, now: float) -> SourceStats:
        return self.source.stats(now)

    def summary(self, now: float) -> str:
        stats = self.source.stats(now)
        generation = f" DSMR {stats.generation}" if stats.generation else ""
        return (
            f"P1 {stats.state}{generation}, {stats.telegrams_ok} telegram(s), "
            f"{stats.crc_errors} CRC error(s)"
        )

    def problem(self) -> str | None:
        if not self.source.running:
            return "the P1 serial reader thread is not running"
        return None


def make_source(
    config: Config,
    clock: Clock,
    forward: Callable[[bytes, float], None],
    state_dir: Path | None = None,
) -> TelegramSource:
    """The P1 source the config asks for (not started); `ConfigError` for an unusable capture
    or template. The virtual meter keeps its registers in `state_dir` (None: it does not)."""
    serial, meter_options = SerialSection.of(config), MeterSection.of(config)
    if serial.port is not None:
        source = SerialSource(str(serial.port), forward, clock, mode=serial.mode)
        return SerialTelegramSource(source)
    spec = meter_options.source
    assert spec is not None  # the config check demands a serial port or a meter source
    if spec.strip().lower() == VIRTUAL_METER:
        return _virtual_meter(config, clock, forward, state_dir)
    loop = meter_options.loop
    try:
        replay = CaptureReplay.from_file(spec, loop=loop)
    except ReplayError as exc:
        raise ConfigError(f"meter.source: {exc}") from None
    description = (
        f"capture replay of {spec} ({len(replay)} telegram(s) every {replay.interval:g} s"
        + (", looping)" if loop else ")")
    )
    return MeterFeeder(
        iter(replay), forward, clock, interval=replay.interval, description=description
    )


def _virtual_meter(
    config: Config, clock: Clock, forward: Callable[[bytes, float], None], state_dir: Path | None
) -> MeterFeeder:
    """The built-in virtual meter (in a template's style when one is set), continuing from
    the registers saved in `state_dir`."""
    options = MeterSection.of(config)
    # The profile only when set: a template's own behaviour wins over the default dsmr5.
    profile = None if config.source("meter.profile") is Source.DEFAULT else options.profile
    start = datetime.now(UTC)
    if options.template is not None:
        try:
            template = load_template(options.template, profile=profile)
        except ValueError as exc:
            raise ConfigError(f"meter.template: {exc}") from None
        meter = template.meter(seed=options.seed, start=start, solar_kwp=options.solar)
        style = f"meter in the style of {options.template}"
    else:
        meter = VirtualMeter(
            options.profile, seed=options.seed, start=start, solar_kwp=options.solar
        )
        style = f"{meter.profile.name} meter"
    description = f"virtual {style} (seed {meter.seed}, every {meter.interval:g} s)"
    if state_dir is None:
        return MeterFeeder(
            iter(meter), forward, clock, interval=meter.interval, description=description
        )
    registers = MeterRegisterFile(state_dir / METER_STATE_FILE, clock)
    registers.restore_into(meter)
    return MeterFeeder(
        registers.telegrams(meter),
        forward,
        clock,
        interval=meter.interval,
        description=description,
        on_stop=registers.save,
    )
