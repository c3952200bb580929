"""The skeleton both daemons share: configuration, logging, the link parts, signals, the main
loop, systemd and exit codes.

A daemon (`p1-lora-tx`, `p1-lora-rx`) is a `DaemonSpec`: its option table and a `build`
function that turns a checked configuration into a running `Daemon` (a runtime plus whatever
feeds it or consumes from it). Everything else is the same for both and lives here, in the
order a start goes through:

1. **Configuration** (`service.config`): flags > environment > file > defaults; every problem
   is logged with its key and the process exits with code 2 before touching any hardware.
2. **The link parts** (`prepare_link`): the pre-shared key (its own file or a systemd
   credential; a bad key file is a configuration error), the region-checked `LinkConfig`, the
   state directory, the link-quality log, and only then the radio (not found: exit code 3).
3. **Restart state**: the runtime resumes counters and last good settings from the state
   store; the airtime budget of the last hour comes back from `budget_store`.
4. **Running**: `run_forever` steps the runtime; after each step the heartbeat pings the
   systemd watchdog (only while healthy), saves the budget now and then and refreshes the
   status line. SIGTERM/SIGINT set the stop event: an orderly shutdown follows (the receiver
   marks itself offline first). A second signal of the same kind kills the process at once.
5. **Exit codes** (`EXIT_*`), documented in `--help` and the units: systemd's
   ``Restart=on-failure`` restarts everything but a clean stop and a configuration error.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import os
import signal
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

from p1lora.common.budget import AirtimeBudget
from p1lora.common.fatal import FatalError
from p1lora.common.link import LinkConfig
from p1lora.common.logging_setup import setup_logging
from p1lora.common.radio_types import RadioSettings
from p1lora.common.regions import RegionError
from p1lora.hardware.factory import ChipOptions, SimRadioOptions, open_radio
from p1lora.hardware.radio import Radio, RadioError
from p1lora.hardware.realtime import SystemClock
from p1lora.service.budget_store import BudgetStore
from p1lora.service.config import Config, ConfigError, OptionTable, Source, load_config
from p1lora.service.keyfile import KeyFileError, PresharedKey, load_key
from p1lora.service.link_log import LinkLog
from p1lora.service.link_runtime import LinkRuntime, RuntimeObserver
from p1lora.service.observers import LinkLogObserver, RadioHealth
from p1lora.service.options import (
    KEY_CREDENTIAL,
    LinkSection,
    LogSection,
    RadioSection,
    StateSection,
    board_pins,
    link_config,
    sim_options,
)
from p1lora.service.run_loop import RunLoopError, run_forever
from p1lora.service.state_store import StateStore
from p1lora.service.systemd import Notifier, Watchdog

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_HARDWARE",
    "EXIT_OK",
    "EXIT_RESTART",
    "Daemon",
    "DaemonContext",
    "DaemonSpec",
    "HardwareError",
    "LinkParts",
    "build_parser",
    "exit_codes_help",
    "log_radio_start",
    "prepare_link",
    "run_daemon",
    "start_setting_text",
]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1
EXIT_CONFIG: Final = 2
EXIT_HARDWARE: Final = 3
EXIT_RESTART: Final = 4

#: Exit code -> meaning (the --help text and the units' comments are built from this table).
EXIT_CODES: Final[dict[int, str]] = {
    EXIT_OK: "stopped cleanly (SIGTERM, Ctrl-C)",
    EXIT_FAILURE: "failed; the error is in the log (systemd restarts the service)",
    EXIT_CONFIG: "configuration error: an option, the config file or the key file (fix it; "
    "a restart does not help, so systemd does not restart)",
    EXIT_HARDWARE: "the radio was not found or cannot be used (SPI/GPIO, wiring, the pi extra)",
    EXIT_RESTART: "restart requested by the `restart` command over the link (systemd restarts "
    "the service)",
}

#: How often the systemd status line is refreshed, and a summary logged.
STATUS_INTERVAL_S: Final = 10.0
SUMMARY_INTERVAL_S: Final = 900.0
#: Environment variable systemd sets for StateDirectory=.
STATE_DIRECTORY_ENV: Final = "STATE_DIRECTORY"


def exit_codes_help() -> str:
    return "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


class HardwareError(Exception):
    """The radio cannot be opened (exit code 3)."""


class Daemon(Protocol):
    """What a `DaemonSpec.build` returns: a runtime and the parts around it."""

    @property
    def runtime(self) -> LinkRuntime:
        """The runtime the main loop steps."""

    @property
    def budget(self) -> AirtimeBudget:
        """The link's airtime budget (persisted across restarts by the skeleton)."""

    def start(self) -> None:
        """Start what feeds or consumes the runtime (serial reader, MQTT, servers)."""

    def status_line(self, now: float) -> str:
        """One line for `systemctl status` and the periodic summary."""

    def health(self, now: float) -> str | None:
        """None when healthy, else why (the watchdog withholds its ping)."""

    def shutdown(self) -> None:
        """Stop what `start` started, in an orderly way (must not raise)."""


@dataclass
class DaemonContext:
    """What `build` gets: the checked config, the clock, the stop event and systemd."""

    config: Config
    spec: DaemonSpec
    clock: SystemClock = field(default_factory=SystemClock)
    stop: threading.Event = field(default_factory=threading.Event)
    notifier: Notifier = field(default_factory=Notifier)
    exit_code: int = EXIT_OK
    #: Set by `build` once the runtime exists, so that stop requests wake it.
    wakeup: threading.Event | None = None
    #: Link parts built by `prepare_link` (closed by the skeleton on exit).
    link: LinkParts | None = None

    def request_stop(self, code: int = EXIT_OK) -> None:
        """End the main loop (any thread); the first non-zero code wins."""
        if self.exit_code == EXIT_OK:
            self.exit_code = code
        self.stop.set()
        if self.wakeup is not None:
            self.wakeup.set()

    def request_restart(self) -> None:
        """The `restart` command: exit with EXIT_RESTART so that the supervisor restarts us."""
        logger.warning(
            "restart requested over the link: stopping with exit code %d so that the service "
            "manager starts %s again",
            EXIT_RESTART,
            self.spec.table.program,
        )
        self.request_stop(EXIT_RESTART)


@dataclass(frozen=True)
class DaemonSpec:
    """One daemon: its options, its help texts and how to build it."""

    table: OptionTable
    description: str
    examples: str
    build: Callable[[DaemonContext], Daemon]


# ---------------------------------------------------------------------------------- the parts


@dataclass
class LinkParts:
    """Everything between the config and a runtime that both daemons need."""

    key: PresharedKey
    link_config: LinkConfig
    store: StateStore
    budget: BudgetStore
    radio: Radio
    link_log: LinkLog
    health: RadioHealth
    observers: list[RuntimeObserver]
    state_dir: Path
    #: The radio, region and channel for the start-up "radio:" line (logged once the runtime
    #: is built and knows whether it resumed at a saved setting).
    description: str = ""

    def close(self) -> None:
        for what, close in (("radio", self.radio.close), ("link log", self.link_log.close)):
            try:
                close()
            except Exception:
                logger.exception("error while closing the %s", what)


def state_directory(config: Config) -> Path:
    """[state] dir, or systemd's $STATE_DIRECTORY when the option was left at its default."""
    if config.source("state.dir") is Source.DEFAULT:
        from_systemd = os.environ.get(STATE_DIRECTORY_ENV, "").split(":")[0]
        if from_systemd:
            return Path(from_systemd)
    return StateSection.of(config).dir


def _check_state_dir(directory: Path) -> None:
    """Say early (and once) when the state cannot be kept; the daemon still runs."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        logger.warning(
            "state directory %s cannot be created (%s): counters and link settings will not "
            "survive a restart (set [state] dir, or run under systemd with StateDirectory=)",
            directory,
            exc.strerror or exc,
        )
        return
    if not os.access(directory, os.W_OK | os.X_OK):
        logger.warning(
            "state directory %s is not writable by this user: counters and link settings will "
            "not survive a restart",
            directory,
        )


def prepare_link(context: DaemonContext, role: str) -> LinkParts:
    """Key, link config, state, link log, then the radio (see the module docstring).

    Raises `ConfigError` (also for key file problems) or `HardwareError`.
    """
    config = context.config
    options = LinkSection.of(config)
    try:
        key = load_key(options.key_file, credential=KEY_CREDENTIAL)
    except KeyFileError as exc:
        raise ConfigError(f"link.key_file: {exc}") from None
    logger.info(
        "pre-shared key from %s: network id %s (the other side must show the same)",
        key.source,
        key.network_id,
    )
    try:
        link = link_config(config, role)
    except (ValueError, RegionError) as exc:
        raise ConfigError(f"radio: {exc}") from None
    directory = state_directory(config)
    _check_state_dir(directory)
    store = StateStore(directory, role=role)
    log_path = options.log
    try:
        link_log = LinkLog(log_path, max_bytes=options.log_max_bytes, backups=options.log_backups)
    except ValueError as exc:
        raise ConfigError(f"link.log: {exc}") from None
    if log_path is not None:
        logger.info("link-quality log: %s", log_path)
    radio, wiring = _open_radio(config, context, bytes.fromhex(key.network_id))
    health = RadioHealth()
    observers: list[RuntimeObserver] = [health]
    if link_log.enabled:
        observers.append(LinkLogObserver(link_log))
    band = link.sub_band()
    duty = "no duty-cycle limit" if band.duty_cycle >= 1 else f"{band.duty_cycle:.1%} duty cycle"
    description = (
        f"{wiring}; {link.region.name} {link.channel_hz / 1e6:.3f} MHz in sub-band "
        f"{band.name} ({duty})"
    )
    return LinkParts(
        key=key,
        link_config=link,
        store=store,
        budget=BudgetStore(directory, role),
        radio=radio,
        link_log=link_log,
        health=health,
        observers=observers,
        state_dir=directory,
        description=description,
    )


def start_setting_text(link: LinkConfig, start: RadioSettings) -> str:
    """Where the link starts, for the "radio:" line: the rendezvous, or the last good setting
    a restart resumes at (state kept in the state directory; the link falls back to the
    rendezvous by itself if the other side is not there)."""
    rendezvous = link.rendezvous()
    if (start.sf, start.bw_hz) == (rendezvous.sf, rendezvous.bw_hz):
        return f"rendezvous {rendezvous.label()}"
    return f"resuming at {start.label()} (last good setting; rendezvous {rendezvous.label()})"


def log_radio_start(parts: LinkParts, runtime: LinkRuntime) -> None:
    """The start-up "radio:" line: the radio, the channel and the setting the link starts at."""
    logger.info(
        "radio: %s, %s",
        parts.description,
        start_setting_text(parts.link_config, runtime.link_settings),
    )


def _open_radio(config: Config, context: DaemonContext, network_id: bytes) -> tuple[Radio, str]:
    """The radio and a description of it for the log (`network_id` picks the simulated
    channel's default port)."""
    backend = RadioSection.of(config).backend
    try:
        pins = board_pins(config)
    except ValueError as exc:
        raise ConfigError(f"radio: {exc}") from None
    name = context.spec.table.program
    sim = sim_options(config, network_id) if backend == "sim" else None
    options = (
        SimRadioOptions(name=name, pins=pins, sim=sim)
        if sim is not None
        else ChipOptions(name=name, pins=pins)
    )
    try:
        radio = open_radio(backend, options)
    except RadioError as exc:
        raise HardwareError(str(exc)) from None
    if sim is not None:
        return radio, f"emulated SX1276 on the simulated channel (UDP port {sim.resolved_port()})"
    assert pins is not None  # the config check demands a board or pins for sx127x
    return radio, f"SX127x on {pins.wiring()}"


# ---------------------------------------------------------------------------------- command line


def _version() -> str:
    try:
        return importlib.metadata.version("p1-lora")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def build_parser(spec: DaemonSpec) -> argparse.ArgumentParser:
    """The daemon's parser: every option of its table, plus --version."""
    parser = argparse.ArgumentParser(
        prog=spec.table.program,
        description=textwrap.fill(spec.description, 79),
        epilog=f"{spec.examples}\n\n{exit_codes_help()}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    spec.table.add_arguments(parser)
    return parser


@contextlib.contextmanager
def _signals(context: DaemonContext) -> Iterator[None]:
    """SIGTERM/SIGINT: orderly stop; the same signal again: the default action (die now)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if context.stop.is_set():
            return
        logger.info("received %s: stopping (send it again to stop at once)", name)
        signal.signal(signum, signal.SIG_DFL)
        context.request_stop(EXIT_OK)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _initial_log_level(args: argparse.Namespace) -> str | None:
    value = getattr(args, "log__level", None)
    return value if isinstance(value, str) else None


def run_daemon(spec: DaemonSpec, argv: Sequence[str] | None = None) -> int:
    """Parse, configure, build, run and stop one daemon; returns its exit code."""
    parser = build_parser(spec)
    args = parser.parse_args(argv)
    setup_logging(_initial_log_level(args))
    program = spec.table.program
    try:
        config = load_config(spec.table, args)
    except ConfigError as exc:
        return _config_failure(program, exc)
    setup_logging(LogSection.of(config).level)
    where = (
        f"config {config.path}"
        if config.path
        else f"no config file ({spec.table.default_path} not found)"
    )
    logger.info("%s %s starting; %s", program, _version(), where)
    for note in config.notes:
        logger.info("%s", note)
    context = DaemonContext(config=config, spec=spec)
    with _signals(context):
        return _run(context)


def _config_failure(program: str, exc: ConfigError, notifier: Notifier | None = None) -> int:
    for problem in exc.problems:
        logger.error("configuration error: %s", problem)
    # `systemctl status` shows this line next to the failed start.
    (notifier or Notifier()).status(f"configuration error: {exc.problems[0]}")
    where = f" (config file {exc.path})" if exc.path is not None else ""
    logger.error(
        "%s not started (exit code %d): fix the configuration above%s; "
        "`p1-lora config check FILE` checks a file without starting",
        program,
        EXIT_CONFIG,
        where,
    )
    return EXIT_CONFIG


def _run(context: DaemonContext) -> int:
    program = context.spec.table.program
    try:
        daemon = context.spec.build(context)
    except ConfigError as exc:
        _close_link(context)
        return _config_failure(program, exc, context.notifier)
    except FatalError as exc:
        _close_link(context)
        return _fatal_failure(program, exc, context.notifier)
    except HardwareError as exc:
        _close_link(context)
        context.notifier.status(f"radio not available: {exc}")
        logger.error("radio not available: %s", exc)
        logger.error("%s not started (exit code %d)", program, EXIT_HARDWARE)
        return EXIT_HARDWARE
    except Exception:
        _close_link(context)
        logger.exception("%s could not start", program)
        return EXIT_FAILURE
    context.wakeup = daemon.runtime.wakeup
    if context.link is not None:
        log_radio_start(context.link, daemon.runtime)
    try:
        return _serve(context, daemon)
    except Exception:
        logger.exception("%s failed", program)
        return EXIT_FAILURE
    finally:
        _close_link(context)
        context.notifier.close()


def _fatal_failure(program: str, exc: FatalError, notifier: Notifier) -> int:
    """One line, no traceback: the message says what the user must do; exit 2 (not restarted)."""
    notifier.status(str(exc))
    logger.critical("%s not started (exit code %d): %s", program, EXIT_CONFIG, exc)
    return EXIT_CONFIG


def _close_link(context: DaemonContext) -> None:
    if context.link is not None:
        context.link.close()
        context.link = None


def _serve(context: DaemonContext, daemon: Daemon) -> int:
    program = context.spec.table.program
    runtime = daemon.runtime
    link = context.link
    clock = context.clock
    if link is not None:
        link.budget.restore(daemon.budget, clock.now())
    try:
        daemon.start()
    except ConfigError as exc:
        _shutdown(context, daemon)
        return _config_failure(program, exc, context.notifier)
    except Exception:
        logger.exception("%s could not start", program)
        _shutdown(context, daemon)
        return EXIT_FAILURE
    watchdog = Watchdog.from_environment(context.notifier, lambda: daemon.health(clock.now()))
    heartbeat = _Heartbeat(context, daemon, watchdog)
    context.notifier.ready(_status_line(daemon, clock.now()))
    logger.info(
        "%s running%s",
        program,
        f" (systemd watchdog every {watchdog.interval:g} s)" if watchdog.enabled else "",
    )
    code = EXIT_OK
    try:
        run_forever(runtime, clock, context.stop, heartbeat=heartbeat)
    except RunLoopError as exc:
        logger.critical("%s: %s; exiting", program, exc)
        code = EXIT_FAILURE
    except FatalError as exc:
        logger.critical("%s: %s; exiting", program, exc)
        context.notifier.status(str(exc))
        code = EXIT_CONFIG
    _shutdown(context, daemon)
    code = code or context.exit_code
    logger.info("%s stopped (exit code %d)", program, code)
    return code


def _status_line(daemon: Daemon, now: float) -> str:
    try:
        return daemon.status_line(now)
    except Exception:
        logger.exception("building the status line failed")
        return "running"


class _Heartbeat:
    """After every step: watchdog, budget persistence, status line, periodic summary."""

    def __init__(self, context: DaemonContext, daemon: Daemon, watchdog: Watchdog) -> None:
        self._context = context
        self._daemon = daemon
        self._watchdog = watchdog
        now = context.clock.now()
        self._next_status = now + STATUS_INTERVAL_S
        self._next_summary = now + SUMMARY_INTERVAL_S

    def __call__(self) -> None:
        now = self._context.clock.now()
        self._watchdog.beat(now)
        link = self._context.link
        if link is not None:
            link.budget.maybe_save(self._daemon.budget, now)
        if now >= self._next_status:
            self._next_status = now + STATUS_INTERVAL_S
            self._context.notifier.status(_status_line(self._daemon, now))
        if now >= self._next_summary:
            self._next_summary = now + SUMMARY_INTERVAL_S
            logger.info("status: %s", _status_line(self._daemon, now))


def _shutdown(context: DaemonContext, daemon: Daemon) -> None:
    clock = context.clock
    context.notifier.stopping("stopping")
    try:
        daemon.shutdown()
    except Exception:
        logger.exception("error during shutdown")
    link = context.link
    if link is not None:
        now = clock.now()
        try:
            link.budget.save(daemon.budget, now)
            link.store.retry()
        except Exception:
            logger.exception("error while saving state at shutdown")
