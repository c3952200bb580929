"""`p1-lora-tx`: the meter-closet daemon. P1 source -> `TxRuntime` -> radio.

The P1 source is one of:

- the meter's serial port (`SerialSource`: auto-detects DSMR 2.2-5 settings, survives unplugged
  cables by reopening with backoff, so a missing port at start is waited for, not fatal);
- the built-in virtual meter (`--meter virtual`): realistic telegrams at the profile's interval,
  generated in-process, no pty needed (demos, tests, trying the link before the cable arrives);
- a capture replay (`--meter FILE`): a real meter's telegrams byte for byte at their interval.

Everything else (configuration, key, state, radio, signals, systemd, exit codes) is the shared
skeleton in `p1lora.service.daemon`.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Final, Protocol

from p1lora.common.budget import AirtimeBudget
from p1lora.common.clock import Clock
from p1lora.service.bounded_read import read_regular_file
from p1lora.service.config import Config, ConfigError
from p1lora.service.daemon import (
    DaemonContext,
    DaemonSpec,
    LinkParts,
    prepare_link,
    run_daemon,
)
from p1lora.service.options import TX_OPTIONS, VIRTUAL_METER, fixed_radio, link_config
from p1lora.service.state_store import StateStore, parse_state_json, write_atomically
from p1lora.transmitter.capture_replay import CaptureReplay, ReplayError
from p1lora.transmitter.runtime import TxRuntime
from p1lora.transmitter.serial_source import SerialSource, SourceStats
from p1lora.transmitter.virtual_meter import VirtualMeter

__all__ = ["SPEC", "MeterFeeder", "apply_config_changes", "build", "main", "make_source"]

logger = logging.getLogger(__name__)

EXAMPLES: Final = """\
examples:
  p1-lora-tx                          run with /etc/p1-lora/tx.toml (as the systemd unit does)
  p1-lora-tx --radio sim --serial /dev/pts/7 --key-file key --state-dir /tmp/p1-tx
                                      simulated radio, P1 telegrams from `p1-lora meter`'s pty
  p1-lora-tx --radio sim --meter virtual --key-file key --state-dir /tmp/p1-tx
                                      simulated radio and the built-in virtual meter
  p1-lora-tx --board dragino --serial /dev/ttyUSB0 --key-file /etc/p1-lora/key

Create the key with `p1-lora keygen --out FILE` and give both daemons the same file. Check a
config file without starting with `p1-lora config check FILE`."""

#: The config's radio mode and interval at the last start (see `apply_config_changes`).
CONFIG_MEMORY: Final = "tx_config.json"
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
    ) -> None:
        self.description = description
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


class _Forward:
    """The source's callback, pointed at the runtime once it exists."""

    def __init__(self) -> None:
        self.target: Callable[[bytes, float], None] | None = None

    def __call__(self, raw: bytes, received_at: float) -> None:
        if self.target is not None:
            self.target(raw, received_at)


def make_source(
    config: Config, clock: Clock, forward: Callable[[bytes, float], None]
) -> TelegramSource:
    """The P1 source the config asks for (not started); `ConfigError` for an unusable capture."""
    port = config.opt_path("serial.port")
    if port is not None:
        source = SerialSource(str(port), forward, clock, mode=config.get_str("serial.mode"))
        return SerialTelegramSource(source)
    spec = config.get_str("meter.source")
    if spec.strip().lower() == VIRTUAL_METER:
        meter = VirtualMeter(
            config.get_str("meter.profile"),
            seed=config.get_int("meter.seed"),
            start=datetime.now(UTC),
            solar_kwp=config.opt_float("meter.solar"),
        )
        description = (
            f"virtual {meter.profile.name} meter (seed {meter.seed}, every {meter.interval:g} s)"
        )
        return MeterFeeder(
            iter(meter), forward, clock, interval=meter.interval, description=description
        )
    loop = config.get_bool("meter.loop")
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


class TxDaemon:
    """The running transmitter: source -> runtime -> radio."""

    def __init__(self, parts: LinkParts, runtime: TxRuntime, source: TelegramSource) -> None:
        self.parts = parts
        self._runtime = runtime
        self.source = source

    @property
    def runtime(self) -> TxRuntime:
        return self._runtime

    @property
    def budget(self) -> AirtimeBudget:
        return self._runtime.tx_link.budget

    def start(self) -> None:
        logger.info("P1 source: %s", self.source.description)
        self.source.start()

    def status_line(self, now: float) -> str:
        snapshot = self._runtime.diagnostics(now)
        link = snapshot.link
        acked = link.telegrams.get("acked", 0)
        return (
            f"link {link.state} at {link.settings.label()} {link.tx_power_dbm} dBm; "
            f"{snapshot.telegrams_submitted} telegram(s) read, {acked} delivered; "
            f"airtime {link.airtime_used:.0%} of the hourly allowance; "
            f"{self.source.summary(now)}"
        )

    def health(self, now: float) -> str | None:
        return self.parts.health.problem(now) or self.source.problem()

    def shutdown(self) -> None:
        try:
            self.source.stop()
        except Exception:
            logger.exception("error while stopping the P1 source")


def _configured_radio(config: Config) -> dict[str, object]:
    """What the config says about the radio mode and interval (compared across starts)."""
    fixed = fixed_radio(config)
    return {
        "mode": "fixed" if fixed is not None else "auto",
        "fixed": None
        if fixed is None
        else {"sf": fixed.sf, "bw_hz": fixed.bw_hz, "tx_power_dbm": fixed.tx_power_dbm},
        "interval_s": config.get_float("link.interval"),
    }


def apply_config_changes(config: Config, store: StateStore, state_dir: Path) -> None:
    """Let an edited config win over the radio mode and interval saved in the state.

    The link persists its mode, fixed settings and interval because `set radio` and `set
    interval` commands must survive a restart. Without care that would also freeze whatever the
    config said at the first start: editing `mode = "fixed"` would have no effect. So the config's
    values are remembered next to the state (`tx_config.json`); when they differ at a start, the
    config was edited since and its values replace the saved ones. Otherwise the saved values
    stand (they may come from a command).
    """
    wanted = _configured_radio(config)
    remembered = state_dir / CONFIG_MEMORY
    try:  # bounded, never blocking; damage (even deep nesting) counts as "config changed"
        previous = parse_state_json(read_regular_file(remembered, 64 * 1024).data)
    except (OSError, ValueError):
        previous = None
    if previous == wanted:
        return
    saved = store.load_tx_state()
    if saved is not None:
        link = link_config(config, "tx")
        updated = replace(saved, mode=link.mode, fixed=link.fixed, interval_s=link.min_interval_s)
        if updated != saved:
            logger.info(
                "radio mode %s and interval %g s from the config replace the saved %s and "
                "%g s (the config changed since the last start)",
                link.fixed.label() if link.fixed is not None else "auto",
                link.min_interval_s,
                saved.fixed.label() if saved.fixed is not None else saved.mode.value,
                saved.interval_s,
            )
            store.save_link_state(updated)
    try:
        write_atomically(remembered, (json.dumps(wanted, sort_keys=True) + "\n").encode())
    except OSError as exc:
        logger.debug("cannot remember the configured radio mode in %s: %s", remembered, exc)


def build(context: DaemonContext) -> TxDaemon:
    """The transmitter from a checked configuration (see `DaemonSpec.build`)."""
    parts = prepare_link(context, "tx")
    context.link = parts
    apply_config_changes(context.config, parts.store, parts.state_dir)
    forward = _Forward()
    source = make_source(context.config, context.clock, forward)
    stats: Callable[[float], SourceStats] | None = None
    if isinstance(source, SerialTelegramSource):
        stats = source.stats
    runtime = TxRuntime(
        parts.radio,
        parts.link_config,
        parts.key.material,
        context.clock.now(),
        store=parts.store,
        source_stats=stats,
        on_restart=context.request_restart,
        observers=parts.observers,
    )
    forward.target = runtime.submit_telegram
    return TxDaemon(parts, runtime, source)


SPEC: Final = DaemonSpec(
    table=TX_OPTIONS,
    description="p1-lora-tx: read the smart meter's P1 port and send every reading over LoRa to "
    "p1-lora-rx (encrypted, duty-cycle legal, self-tuning).",
    examples=EXAMPLES,
    build=build,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `p1-lora-tx`; returns the exit code."""
    return run_daemon(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
