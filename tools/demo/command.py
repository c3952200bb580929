"""`p1-lora demo`: the whole bridge on one machine, without hardware, in one command.

It starts the real programs as separate processes, as they run on the two Pis, only with the
radio simulated:

    p1-lora meter (pty)  ->  p1-lora-tx --radio sim  ->  simulated LoRa channel (UDP)
        ->  p1-lora-rx --radio sim  ->  MQTT broker  ->  this command's live view

- **Isolation.** Everything lives in a new temporary directory: a fresh key (`keygen`'s file
  format, mode 0600), both state directories, an empty config file passed with `--config` (so a
  real /etc/p1-lora/*.toml on this machine never leaks in), the logs and link logs. The
  simulated channel uses a free UDP port (`--sim-port`), so a demo never hears another demo or
  a developer's daemons. P1LORA_* and systemd variables of the calling shell are not passed on.
- **Broker** (`broker`): Mosquitto when installed, else the embedded amqtt one, or the
  user's own (`--mqtt-host`, e.g. Home Assistant's): the demo then uses its own base topic
  (`p1lora-demo`), bridge name and client ids, so it can never disturb a real installation on
  the same broker, and by default it removes its retained discovery configs and states when it
  stops (`--keep-entities` keeps them: Home Assistant then shows the demo's entities as
  unavailable).
- **Watching** (`observer`, `model`): an MQTT client subscribes to the bridge's discovery
  configs and topics, like Home Assistant; the daemons' link-quality logs (JSON lines) say
  what the link did; their log lines are shown as events. `screen` turns that into a live
  terminal view (plain ANSI), `text` into periodic plain lines when stdout is not a terminal,
  and `summary` (`--headless`) into a summary at the end only.
- **Supervision** (`processes`): the daemons are started like systemd `Type=notify` services
  (each in turn once the previous one said `READY=1`); one that exits with the restart exit
  code (4: the `restart` command over the link) is started again, as systemd would. Any other
  exit ends the demo with the daemon's last log lines. Ctrl-C reaches only this command, which
  stops the children in order (transmitter, receiver (it marks itself offline), meter,
  broker); they also get SIGTERM if this command dies, so nothing is left running. A second
  Ctrl-C kills them at once.

Exit codes: 0 telegrams were delivered end to end and nothing failed; 1 nothing was delivered
or a component failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import Final, TextIO

from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.service.daemon import EXIT_CODES, EXIT_RESTART
from p1lora.service.keyfile import generate_key, write_key_file
from p1lora.tools.demo.broker import Broker, choose_broker
from p1lora.tools.demo.model import DemoState
from p1lora.tools.demo.observer import Observer
from p1lora.tools.demo.options import (
    EXTERNAL_BASE_TOPIC,
    EXTERNAL_BRIDGE_NAME,
    DemoOptions,
    UsageError,
    configure,
    options_from_args,
)
from p1lora.tools.demo.processes import (
    START_TIMEOUT_S,
    STOP_TIMEOUT_S,
    Child,
    LogTail,
    NotifySocket,
    StartError,
    child_environment,
    free_port,
    python_child,
)
from p1lora.tools.demo.screen import LiveScreen, logs_into_view, render_screen
from p1lora.tools.demo.summary import DemoResult, summary_dict, summary_lines
from p1lora.tools.demo.text import discovery_line, event_line, status_line
from p1lora.tools.demo.views import DemoInfo, DemoView

__all__ = ["Demo", "configure", "output_mode", "run"]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

#: Main loop period; the live view redraws at most this often.
TICK_S: Final = 0.25
#: Plain output: a status line this often.
PLAIN_STATUS_INTERVAL_S: Final = 5.0
#: How long the end waits for the receiver's retained `offline`.
OFFLINE_WAIT_S: Final = 3.0
#: More restarts than this within RESTART_WINDOW_S is a failure (systemd's start limit idea).
MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 60.0
#: The daemons' short names: their link logs, state directories and event sources.
ROLES: Final = {"p1-lora-tx": "tx", "p1-lora-rx": "rx"}


def output_mode(options: DemoOptions, stream: TextIO) -> str:
    """`headless`, `live` (a real terminal) or `plain` (a pipe, a file, TERM=dumb)."""
    if options.headless:
        return "headless"
    interactive = stream.isatty() and os.environ.get("TERM", "") not in ("", "dumb")
    return "live" if interactive else "plain"


# ---------------------------------------------------------------------------------- the demo


class Demo:
    """One run: set up, watch, stop in order (see the module docstring)."""

    def __init__(self, options: DemoOptions, workdir: Path, stream: TextIO = sys.stdout) -> None:
        self.options = options
        self.workdir = workdir
        self.stream = stream
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._hurry = False
        self._stopped_by = "--duration"
        self.problems: list[str] = []
        self._tails: list[tuple[str, list[str]]] = []
        self.broker: Broker | None = None
        self.observer: Observer | None = None
        self.meter: Child | None = None
        self.daemons: list[Child] = []
        #: The daemons' link-quality logs by role (JSON lines: what the link did).
        self._link_logs: dict[str, LogTail] = {}
        self.sim_port = options.sim_port or free_port(socket.SOCK_DGRAM)
        self.env = child_environment()
        base = EXTERNAL_BASE_TOPIC if options.external else "p1lora"
        bridge_name = EXTERNAL_BRIDGE_NAME if options.external else "P1-LoRa bridge"
        self.settings = DiscoverySettings(base_topic=base, bridge_name=bridge_name)
        self.state: DemoState | None = None
        self.cleaned_up: int | None = None
        self._setup_failed = False
        self._final_view: DemoView | None = None
        #: Plain output: where events are printed as they happen.
        self._emit: Callable[[str], None] | None = None

    # -- signals ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self._stop.is_set():
            self._hurry = True  # the second Ctrl-C: no more waiting
            return
        self._stopped_by = {
            signal.SIGINT: "Ctrl-C",
            signal.SIGTERM: "SIGTERM",
            signal.SIGHUP: "SIGHUP (terminal closed)",
        }.get(signal.Signals(signum), signal.Signals(signum).name)
        self._stop.set()

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        wanted = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
        previous = {sig: signal.signal(sig, self._on_signal) for sig in wanted}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- set-up -----------------------------------------------------------------------------

    def _wait_observer(self, observer: Observer, broker: Broker) -> None:
        """Until the observer is connected; a refusal (bad credentials) fails at once."""
        deadline = time.monotonic() + START_TIMEOUT_S
        where = f"the MQTT broker at {broker.host}:{broker.port}"
        while not observer.connected.wait(0.1):
            if observer.refused:
                raise StartError(
                    f"{where} refused the connection: {observer.refused} (check "
                    "--mqtt-username and --mqtt-password-file)"
                )
            if self._stop.is_set():
                raise StartError("stopped while connecting to the broker")
            if time.monotonic() > deadline:
                raise StartError(
                    f"cannot reach {where} within {START_TIMEOUT_S:g} s (is it running, and "
                    "reachable from here?)"
                )

    def _start_meter(self) -> Child:
        link = self.workdir / "p1"
        meter = python_child(
            "meter",
            "p1-lora",
            [
                "meter",
                "--link",
                str(link),
                "--profile",
                self.options.meter_profile,
                "--log-level",
                self.options.child_log_level,
            ],
            log_path=self.workdir / "meter.log",
            env=self.env,
            cwd=self.workdir,
        )
        meter.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not link.is_symlink():
            if meter.exit_code() is not None or time.monotonic() > deadline:
                self._keep_tail("virtual meter", meter)
                raise StartError(f"the virtual meter did not start (exit code {meter.exit_code()})")
            time.sleep(0.05)
        return meter

    def _link_log_path(self, role: str) -> Path:
        return self.workdir / f"{role}-link.jsonl"

    def _daemon_args(self, role: str) -> list[str]:
        options = self.options
        key = self.workdir / "key"
        args = [
            "--config",
            str(self.workdir / "empty.toml"),
            "--radio",
            "sim",
            "--sim-port",
            str(self.sim_port),
            "--sim-path-loss",
            f"{options.path_loss_db:g}",
            "--key-file",
            str(key),
            "--state-dir",
            str(self.workdir / role),
            "--link-log",
            str(self._link_log_path(role)),
            "--log-level",
            options.child_log_level,
        ]
        if role == "tx":
            return [*args, "--serial", str(self.workdir / "p1")]
        assert self.broker is not None
        args += [
            "--mqtt-host",
            self.broker.host,
            "--mqtt-port",
            str(self.broker.port),
            "--mqtt-client-id",
            f"p1lora-demo-rx-{uuid.uuid4().hex[:8]}",
            "--mqtt-base-topic",
            self.settings.base_topic,
            "--homeassistant-bridge-name",
            self.settings.bridge_name,
            # The demo shows every telegram end to end; a real install keeps the 5 s default.
            "--homeassistant-state-interval",
            "0",
        ]
        if options.mqtt_username is not None:
            args += ["--mqtt-username", options.mqtt_username]
        if options.mqtt_password_file is not None:
            args += ["--mqtt-password-file", str(options.mqtt_password_file)]
        if options.raw_port is not None:
            args += ["--raw-port", str(options.raw_port)]
        return args

    def setup(self) -> None:
        """Key, broker, observer, meter, receiver, transmitter (raises `StartError`)."""
        options = self.options
        workdir = self.workdir
        write_key_file(workdir / "key", generate_key(), comment="p1-lora demo key (throwaway)")
        (workdir / "empty.toml").write_text(
            "# p1-lora demo: every option is passed as a flag\n", encoding="utf-8"
        )
        self.broker = choose_broker(options, workdir)
        info = DemoInfo(
            broker=self.broker.label,
            meter=options.meter_profile,
            path_loss_db=options.path_loss_db,
            sim_port=self.sim_port,
            external_broker=options.external,
            workdir=str(workdir) if options.keep_temp else None,
        )
        self.state = DemoState(self.settings, info, self.started)
        logger.info(
            "demo: MQTT broker %s; simulated radio channel on UDP port %d",
            self.broker.label,
            self.sim_port,
        )
        self.observer = Observer(self.state, self.broker, options)
        self.observer.start()
        self._wait_observer(self.observer, self.broker)
        self.meter = self._start_meter()
        logger.info(
            "demo: virtual %s meter on %s", options.meter_profile, (workdir / "p1").readlink()
        )
        # The receiver first: it listens at the rendezvous setting when the transmitter starts
        # looking for it, and it hosts the simulated channel, so a transmitter restart does not
        # move the channel.
        for program in ("p1-lora-rx", "p1-lora-tx"):
            role = ROLES[program]
            self._link_logs[role] = LogTail(self._link_log_path(role))
            child = python_child(
                program,
                program,
                self._daemon_args(role),
                log_path=workdir / f"{role}.log",
                env=self.env,
                cwd=workdir,
                notify=NotifySocket(role),
            )
            self.daemons.append(child)
            child.start()
            self._wait_running(child)

    def _wait_running(self, child: Child) -> None:
        """Until the daemon says `READY=1` (its log lines go to the view meanwhile)."""
        assert self.state is not None
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            now = time.monotonic()
            ready = child.ready()
            for line in child.tail.lines():
                self.state.log_line(self._source(child), line, now)
            if ready:
                return
            code = child.exit_code()
            if code is not None:
                self._keep_tail(child.name, child)
                meaning = EXIT_CODES.get(code, "unexpected")
                raise StartError(f"{child.name} did not start: exit code {code}: {meaning}")
            if now > deadline:
                self._keep_tail(child.name, child)
                raise StartError(f"{child.name} did not start within {START_TIMEOUT_S:g} s")
            if self._stop.wait(0.05):
                raise StartError(f"stopped while {child.name} was starting")

    # -- running ----------------------------------------------------------------------------

    def _source(self, child: Child) -> str:
        return ROLES.get(child.name, child.name)

    def _pump_logs(self, now: float) -> None:
        """New link-log records into the model, new log lines into the event list."""
        assert self.state is not None
        for role in self._link_logs:
            self._pump_link_log(role)
        children = [*self.daemons, *([self.meter] if self.meter else [])]
        for child in children:
            for line in child.tail.lines():
                event = self.state.log_line(self._source(child), line, now)
                if event is not None and self._emit is not None:
                    self._emit(event_line(event))

    def _pump_link_log(self, role: str) -> None:
        assert self.state is not None
        for line in self._link_logs[role].lines():
            self.state.link_line(role, line)

    def _keep_tail(self, what: str, child: Child) -> None:
        child.tail.lines()
        self._tails.append((what, list(child.tail.recent)))

    def _check_children(self, now: float) -> str | None:
        """None while everything runs; restarts a daemon that asked for it (exit code 4)."""
        assert self.state is not None
        for child in self.daemons:
            code = child.exit_code()
            if code is None:
                continue
            if code == EXIT_RESTART:
                while child.restarts and now - child.restarts[0] > RESTART_WINDOW_S:
                    child.restarts.popleft()
                if len(child.restarts) >= MAX_RESTARTS:
                    self._keep_tail(child.name, child)
                    return (
                        f"{child.name} asked for a restart {MAX_RESTARTS + 1} times within "
                        f"{RESTART_WINDOW_S:g} s"
                    )
                child.restarts.append(now)
                role = self._source(child)
                self._pump_link_log(role)  # the old process's last records first
                self.state.process_restarted(role, child.name)
                event = self.state.note(
                    f"{child.name} exited with code {EXIT_RESTART} (restart requested): "
                    "starting it again, as systemd would",
                    now,
                )
                if self._emit is not None:
                    self._emit(event_line(event))
                child.start()
                continue
            self._keep_tail(child.name, child)
            meaning = EXIT_CODES.get(code, "killed by a signal" if code < 0 else "unexpected")
            return f"{child.name} exited with code {code}: {meaning}"
        if self.meter is not None and self.meter.exit_code() is not None:
            self._keep_tail("virtual meter", self.meter)
            return f"the virtual meter stopped (exit code {self.meter.exit_code()})"
        if self.broker is not None:
            problem = self.broker.problem()
            if problem is not None:
                return problem
        return None

    def _loop(self, mode: str) -> None:
        assert self.state is not None
        deadline = (
            None if self.options.duration_s is None else self.started + self.options.duration_s
        )
        if mode == "plain":
            self._emit = self._print
        next_status = time.monotonic() + PLAIN_STATUS_INTERVAL_S
        screen = LiveScreen(self.stream, color="NO_COLOR" not in os.environ)
        with contextlib.ExitStack() as stack:
            if mode == "live":
                stack.enter_context(logs_into_view(self.state))
                stack.enter_context(screen)
            while not self._stop.is_set():
                now = time.monotonic()
                self._pump_logs(now)
                problem = self._check_children(now)
                if problem is not None:
                    self.problems.append(problem)
                    self._stopped_by = "a failure"
                    self._stop.set()  # a Ctrl-C from now on hurries the stop
                    break
                if deadline is not None and now >= deadline:
                    self._stopped_by = "--duration"
                    self._stop.set()
                    break
                if mode == "live":
                    size = shutil.get_terminal_size()
                    view = self.state.view(now)
                    screen.draw(render_screen(view, size.columns, size.lines, color=screen.color))
                elif mode == "plain":
                    for device in self.state.take_new_devices():
                        self._print(discovery_line(device))
                    if now >= next_status:
                        next_status = now + PLAIN_STATUS_INTERVAL_S
                        self._print(status_line(self.state.view(now)))
                self._stop.wait(TICK_S)

    def _print(self, line: str) -> None:
        with contextlib.suppress(OSError):
            self.stream.write(line + "\n")
            self.stream.flush()

    # -- stopping ---------------------------------------------------------------------------

    def shutdown(self) -> None:
        """Transmitter, receiver (offline first), meter, clean-up, observer, broker."""

        def hurry() -> bool:
            return self._hurry

        if self.daemons:
            logger.info("demo: stopping p1-lora-tx, p1-lora-rx, the meter and the broker")
        # The transmitter first (the source of frames), then the receiver.
        for child in sorted(self.daemons, key=lambda c: c.name != "p1-lora-tx"):
            was_running = child.exit_code() is None
            code = child.stop(STOP_TIMEOUT_S, hurry)
            if was_running and code not in (0, None) and not self._hurry:
                logger.warning("%s stopped with exit code %s", child.name, code)
            child.close()
        if self.meter is not None:
            self.meter.stop(STOP_TIMEOUT_S, hurry)
        if self.state is not None:
            self._pump_logs(time.monotonic())
        observer = self.observer
        if observer is not None and self.state is not None:
            if self.daemons:
                deadline = time.monotonic() + OFFLINE_WAIT_S
                while (
                    not self.state.view(time.monotonic()).offline_seen
                    and time.monotonic() < deadline
                    and not self._hurry
                ):
                    time.sleep(0.05)
            # The summary describes the run, not the broker after the clean-up below.
            self._final_view = self.state.view(time.monotonic())
            if (
                self.options.external
                and not self.options.keep_entities
                and not self._hurry
                and observer.connected.is_set()
            ):
                self.cleaned_up = observer.clear_retained(self.state.retained_topics())
            observer.stop()
        if self.broker is not None:
            self.broker.stop(hurry)

    # -- the whole run ----------------------------------------------------------------------

    def run(self) -> int:
        mode = output_mode(self.options, self.stream)
        with self._signals():
            try:
                self.setup()
                if mode == "headless":
                    logger.info(
                        "demo: running headless%s",
                        f" for {self.options.duration_s:g} s"
                        if self.options.duration_s
                        else " until Ctrl-C",
                    )
                self._loop(mode)
            except StartError as exc:
                self.problems.append(str(exc))
                self._stopped_by = "a failure"
                self._setup_failed = True
            finally:
                self.shutdown()
        return self._report()

    def _report(self) -> int:
        if self.state is None or (self._setup_failed and not self.options.json):
            for problem in self.problems:
                logger.error("demo: %s", problem)
            self._log_tails()
            self._log_kept()
            return EXIT_FAILED
        view = self._final_view or self.state.view(time.monotonic())
        result = DemoResult(self._stopped_by, tuple(self.problems), self.cleaned_up)
        if self.options.json:
            self._print(json.dumps(summary_dict(view, result), sort_keys=True))
        else:
            for line in summary_lines(view, result):
                self._print(line)
        self._log_tails()
        self._log_kept()
        return EXIT_OK if result.ok(view) else EXIT_FAILED

    def _log_kept(self) -> None:
        if self.options.keep_temp:
            logger.info(
                "demo files kept in %s (summarise the link with: p1-lora linkreport %s)",
                self.workdir,
                self._link_log_path("rx"),
            )

    def _log_tails(self) -> None:
        for what, lines in self._tails:
            logger.error("last lines of the %s log:\n  %s", what, "\n  ".join(lines) or "(empty)")


def run(args: argparse.Namespace) -> int:
    """`p1-lora demo`; see the module docstring for the exit codes."""
    try:
        options = options_from_args(args)
    except UsageError as exc:
        logger.error("%s", exc)
        return EXIT_USAGE
    workdir = Path(tempfile.mkdtemp(prefix="p1lora-demo-"))
    try:
        return Demo(options, workdir).run()
    finally:
        if not options.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
