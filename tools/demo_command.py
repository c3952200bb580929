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
- **Broker.** Mosquitto when it is installed (found like the test suite finds it:
  $P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto), on a free loopback port with a generated
  config; otherwise the embedded pure-Python broker (`p1lora.tools.mini_broker`), so the demo
  never needs root. `--mqtt-host` points it at an existing broker instead (a user's Home
  Assistant): the demo then uses its own base topic (`p1lora-demo`), bridge name and client
  ids, so it can never disturb a real installation on the same broker, and by default it
  removes its retained discovery configs and states when it stops (`--keep-entities` keeps
  them: Home Assistant then shows the demo's entities as unavailable).
- **Watching.** An MQTT client subscribes to the bridge's discovery configs and topics, like
  Home Assistant; the daemons' log files are followed. `p1lora.tools.demo_view` turns both into
  a live terminal view (plain ANSI), into periodic plain lines when stdout is not a terminal,
  or (`--headless`) into a summary at the end only.
- **Supervision.** A daemon that exits with the restart exit code (4: the `restart` command
  over the link) is started again, as systemd would. Any other exit ends the demo with the
  daemon's last log lines. Children run in their own sessions, so Ctrl-C reaches only this
  command, which stops them in order (transmitter, receiver (it marks itself offline),
  meter, broker); they also get SIGTERM if this command dies (PR_SET_PDEATHSIG), so nothing
  is left running. A second Ctrl-C kills them at once.

Exit codes: 0 telegrams were delivered end to end and nothing failed; 1 nothing was delivered
or a component failed; 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Final, TextIO

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.service.daemon import EXIT_CODES, EXIT_RESTART
from p1lora.service.keyfile import generate_key, write_key_file
from p1lora.tools.demo_view import (
    DemoInfo,
    DemoResult,
    DemoState,
    DemoView,
    discovery_line,
    event_line,
    render_screen,
    status_line,
    summary_dict,
    summary_lines,
)
from p1lora.tools.mini_broker import MiniBrokerThread
from p1lora.transmitter.meter_profiles import PROFILES

__all__ = [
    "EXTERNAL_BASE_TOPIC",
    "DemoOptions",
    "UsageError",
    "configure",
    "find_mosquitto",
    "options_from_args",
    "run",
]

logger = logging.getLogger(__name__)

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1
EXIT_USAGE: Final = 2

LOOPBACK: Final = "127.0.0.1"
#: Base topic and bridge name of a demo on the user's own broker (never the real ones).
EXTERNAL_BASE_TOPIC: Final = "p1lora-demo"
EXTERNAL_BRIDGE_NAME: Final = "P1-LoRa demo bridge"
DEFAULT_PATH_LOSS_DB: Final = 100.0
#: Main loop period; the live view redraws at most this often.
TICK_S: Final = 0.25
#: Plain output: a status line this often.
PLAIN_STATUS_INTERVAL_S: Final = 5.0
START_TIMEOUT_S: Final = 15.0
STOP_TIMEOUT_S: Final = 15.0
#: How long the end waits for the receiver's retained `offline`.
OFFLINE_WAIT_S: Final = 3.0
#: More restarts than this within RESTART_WINDOW_S is a failure (systemd's start limit idea).
MAX_RESTARTS: Final = 5
RESTART_WINDOW_S: Final = 60.0
LOG_TAIL_LINES: Final = 15

#: The module whose `main` each program runs (what its console script calls).
MODULES: Final = {
    "p1-lora-tx": "p1lora.transmitter.cli",
    "p1-lora-rx": "p1lora.receiver.cli",
    "p1-lora": "p1lora.tools.cli",
}
#: Variables of the calling shell that would change how a child behaves.
_HOST_ONLY: Final = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
    "LISTEN_FDS",
    "LISTEN_PID",
)

#: Runs first in every child: ask the kernel for SIGTERM when this command dies (so a killed
#: demo leaves nothing running), give up if that already happened, then exec the program.
_LAUNCHER: Final = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM), 0, 0, 0)
except (OSError, AttributeError):
    pass
if os.getppid() != int(sys.argv[1]):
    sys.exit(143)
os.execv(sys.argv[2], sys.argv[2:])
"""

EPILOG: Final = """\
examples:
  p1-lora demo                          live view until Ctrl-C
  p1-lora demo --duration 60            stop by itself after a minute
  p1-lora demo --headless --duration 30 no view; summary at the end, exit 0 if it worked
  p1-lora demo --path-loss 140          a longer link: watch auto-tune settle on a slower SF
  p1-lora demo --meter-profile fluvius  a Belgian meter (peak demand, gas and water)
  p1-lora demo --mqtt-host homeassistant.local --mqtt-username demo \\
               --mqtt-password-file ~/.p1lora-demo-password
                                        watch the entities appear in your Home Assistant
                                        (removed again at the end unless --keep-entities)

On your own broker the demo uses the base topic p1lora-demo and the bridge name "P1-LoRa demo
bridge", so it cannot disturb a real p1-lora installation on the same broker.

exit codes: 0 telegrams were delivered end to end; 1 none were, or a component failed;
2 bad arguments."""


class UsageError(Exception):
    """A bad option (exit code 2)."""


class StartError(Exception):
    """A part of the demo could not be started; the message says which and why."""


# ---------------------------------------------------------------------------------- options


@dataclass(frozen=True)
class DemoOptions:
    """Checked options of one demo run."""

    duration_s: float | None = None
    headless: bool = False
    json: bool = False
    broker: str = "auto"
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    keep_entities: bool = False
    path_loss_db: float = DEFAULT_PATH_LOSS_DB
    meter_profile: str = "dsmr5"
    sim_port: int | None = None
    raw_port: int | None = None
    keep_temp: bool = False
    log_level: str = "info"

    @property
    def external(self) -> bool:
        return self.mqtt_host is not None

    @property
    def child_log_level(self) -> str:
        """The programs log at least at INFO: the view follows their INFO lines (link state,
        auto-tune steps) whatever this command's own --log-level is."""
        return "debug" if self.log_level == "debug" else "info"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `p1-lora demo` arguments."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Run the whole bridge on this machine without hardware: a virtual meter on a pty, "
        "p1-lora-tx and p1-lora-rx over a simulated radio, a real MQTT broker, and a live view "
        "of what Home Assistant would discover, the values, and the link (handshake, auto-tune, "
        "RSSI/SNR, airtime budget). Ctrl-C stops it cleanly."
    )
    parser.epilog = EPILOG
    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        help="stop by itself after this many seconds (default: run until Ctrl-C)",
    )
    run_group.add_argument(
        "--headless",
        action="store_true",
        help="no live view: print a summary at the end; exit 0 only if telegrams were "
        "delivered end to end",
    )
    run_group.add_argument(
        "--json", action="store_true", help="print the summary at the end as one JSON object"
    )
    run_group.add_argument(
        "--keep-temp",
        action="store_true",
        help="keep the temporary directory (logs, link-quality logs, key, state) and print "
        "where it is",
    )
    broker = parser.add_argument_group("broker")
    broker.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default=None,
        help="the demo's own broker: mosquitto when installed, else the embedded pure-Python "
        "one (auto, the default); or force one",
    )
    broker.add_argument(
        "--mqtt-host",
        metavar="HOST",
        help="use this existing broker instead (e.g. your Home Assistant's)",
    )
    broker.add_argument(
        "--mqtt-port",
        metavar="PORT",
        type=int,
        help="port of --mqtt-host (default 1883)",
    )
    broker.add_argument("--mqtt-username", metavar="USER", help="user name at --mqtt-host")
    broker.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="file whose first line is the password at --mqtt-host (never a flag: the process "
        "list is public)",
    )
    broker.add_argument(
        "--keep-entities",
        action="store_true",
        help="with --mqtt-host: leave the demo's devices in Home Assistant at the end (default: "
        "remove its retained discovery configs and states)",
    )
    sim = parser.add_argument_group("simulation")
    sim.add_argument(
        "--path-loss",
        metavar="DB",
        type=float,
        default=DEFAULT_PATH_LOSS_DB,
        help="path loss between the two radios in dB (default 100: a few walls; about 141 "
        "gives SF10, 147 is near the SF12 limit)",
    )
    sim.add_argument(
        "--meter-profile",
        metavar="PROFILE",
        choices=tuple(PROFILES),
        default="dsmr5",
        help=f"the virtual meter: {', '.join(PROFILES)} (default dsmr5)",
    )
    sim.add_argument(
        "--sim-port",
        metavar="PORT",
        type=int,
        help="UDP port of the simulated channel (default: a free one, private to this run)",
    )
    sim.add_argument(
        "--raw-port",
        metavar="PORT",
        type=int,
        help="also let p1-lora-rx serve the rebuilt telegrams on this TCP port (for Home "
        "Assistant's DSMR integration)",
    )


def _port(value: int | None, flag: str) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise UsageError(f"{flag}: {value} is not a port number (1-65535)")
    return value


def _read_password(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(4097)
    except OSError as exc:
        raise UsageError(
            f"--mqtt-password-file: cannot read {path}: {exc.strerror or exc}"
        ) from None
    lines = data.decode("utf-8", "replace").splitlines()
    password = lines[0].strip() if lines else ""
    if not password or len(data) > 4096:
        raise UsageError(f"--mqtt-password-file: {path} does not hold a password on its first line")
    return password


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """Check the arguments (`UsageError` with a message naming the option)."""
    duration = args.duration
    if duration is not None and not 0 < duration <= 30 * 86400:
        raise UsageError(f"--duration: {duration:g} s must be more than 0 (and at most 30 days)")
    if not 0 <= args.path_loss <= 250:
        raise UsageError(f"--path-loss: {args.path_loss:g} dB is outside 0..250 dB")
    external = args.mqtt_host is not None
    if external and not args.mqtt_host.strip():
        raise UsageError("--mqtt-host: the host name is empty")
    if external and args.broker is not None:
        raise UsageError(
            "--broker chooses the demo's own broker; with --mqtt-host the demo uses yours"
        )
    if not external:
        for flag, value in (
            ("--mqtt-port", args.mqtt_port),
            ("--mqtt-username", args.mqtt_username),
            ("--mqtt-password-file", args.mqtt_password_file),
            ("--keep-entities", args.keep_entities or None),
        ):
            if value is not None:
                raise UsageError(f"{flag} applies to an existing broker: give --mqtt-host too")
    if args.mqtt_password_file is not None and args.mqtt_username is None:
        raise UsageError("--mqtt-password-file needs --mqtt-username")
    password_file = (
        Path(args.mqtt_password_file).expanduser().absolute()
        if args.mqtt_password_file is not None
        else None
    )
    password = _read_password(password_file) if password_file is not None else None
    return DemoOptions(
        duration_s=duration,
        headless=args.headless,
        json=args.json,
        broker=args.broker or "auto",
        mqtt_host=args.mqtt_host.strip() if external else None,
        mqtt_port=_port(args.mqtt_port, "--mqtt-port") or 1883,
        mqtt_username=args.mqtt_username,
        mqtt_password_file=password_file,
        mqtt_password=password,
        keep_entities=args.keep_entities,
        path_loss_db=args.path_loss,
        meter_profile=args.meter_profile,
        sim_port=_port(args.sim_port, "--sim-port"),
        raw_port=_port(args.raw_port, "--raw-port"),
        keep_temp=args.keep_temp,
        log_level=args.log_level or "info",
    )


# ---------------------------------------------------------------------------------- helpers


def find_mosquitto() -> str | None:
    """The mosquitto binary: $P1LORA_MOSQUITTO, PATH, then /usr/sbin/mosquitto (as the tests)."""
    for candidate in (
        os.environ.get("P1LORA_MOSQUITTO"),
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
    ):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port(kind: socket.SocketKind) -> int:
    """A loopback port (TCP or UDP) that was free a moment ago."""
    with socket.socket(socket.AF_INET, kind) as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def child_environment() -> dict[str, str]:
    """This environment without p1-lora and systemd variables; unbuffered Python output."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("P1LORA_") and k not in _HOST_ONLY
    }
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LogTail:
    """Follows a log file a child writes: complete new lines since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""
        self.recent: deque[str] = deque(maxlen=LOG_TAIL_LINES)

    def lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read(1 << 20)
        except OSError:
            return []
        self._offset += len(data)
        data = self._partial + data
        *complete, self._partial = data.split(b"\n")
        out = [line.decode("utf-8", "replace").rstrip("\r") for line in complete]
        self.recent.extend(out)
        return out


class Child:
    """One program of the demo in its own session, its stderr in a log file."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str], cwd: Path
    ) -> None:
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.cwd = cwd
        self.tail = LogTail(log_path)
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts: deque[float] = deque()

    def start(self) -> None:
        """Start (again); from the main thread only (PR_SET_PDEATHSIG follows the thread)."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *self.argv],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float, hurry: Callable[[], bool]) -> int | None:
        """SIGTERM, wait up to `timeout` (less when `hurry()` turns true), then SIGKILL."""
        process = self.process
        if process is None:
            return None
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while process.poll() is None and time.monotonic() < deadline and not hurry():
                time.sleep(0.05)
            if process.poll() is None:
                if not hurry():
                    logger.warning("%s did not stop within %g s: killing it", self.name, timeout)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
        try:
            return process.wait(5)
        except subprocess.TimeoutExpired:
            return None


def python_child(
    name: str, program: str, args: list[str], *, log_path: Path, env: dict[str, str], cwd: Path
) -> Child:
    """A p1-lora program run with this Python, as its console script does (independent of PATH
    and of where the venv's bin is; `-m` would name the module's logger `__main__`)."""
    code = f"import sys; from {MODULES[program]} import main; sys.exit(main())"
    return Child(name, [sys.executable, "-c", code, *args], log_path, env, cwd)


# ---------------------------------------------------------------------------------- the broker


@dataclass
class Broker:
    """Where the MQTT broker is, and how to stop it (nothing to stop for the user's own)."""

    host: str
    port: int
    label: str
    child: Child | None = None
    thread: MiniBrokerThread | None = None

    def problem(self) -> str | None:
        if self.child is not None:
            code = self.child.exit_code()
            if code is not None:
                return f"mosquitto stopped (exit code {code})"
        return None

    def stop(self, hurry: Callable[[], bool]) -> None:
        if self.child is not None:
            self.child.stop(STOP_TIMEOUT_S, hurry)
        if self.thread is not None:
            self.thread.stop()


def start_mosquitto(executable: str, workdir: Path) -> Broker:
    """Mosquitto on a free loopback port with a generated config (a few tries: the free port
    may be taken in the meantime)."""
    log_path = workdir / "mosquitto.log"
    last = "it did not start"
    for _attempt in range(3):
        port = free_port(socket.SOCK_STREAM)
        lines = [
            "persistence false",
            f"log_dest file {log_path}",
            "connection_messages true",
            f"listener {port} {LOOPBACK}",
            "allow_anonymous true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto switches to the user "mosquitto", which cannot read our 0700
            # temporary directory.
            lines.append(f"user {getpass.getuser()}")
        config = workdir / "mosquitto.conf"
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        child = Child(
            "mosquitto", [executable, "-c", str(config)], log_path, os.environ.copy(), workdir
        )
        child.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if child.exit_code() is not None:
                last = f"it exited with code {child.exit_code()}: " + " | ".join(
                    child.tail.lines()[-3:]
                )
                break
            if _accepts(LOOPBACK, port):
                return Broker(LOOPBACK, port, f"mosquitto on {LOOPBACK}:{port}", child=child)
            time.sleep(0.05)
        else:
            child.stop(2.0, lambda: True)
            last = f"it did not listen on port {port} within {START_TIMEOUT_S:g} s"
    raise StartError(f"mosquitto ({executable}) could not be started: {last}")


def start_embedded() -> Broker:
    thread = MiniBrokerThread(LOOPBACK, 0)
    try:
        thread.start()
    except (OSError, TimeoutError) as exc:
        raise StartError(f"the embedded MQTT broker could not start: {exc}") from None
    return Broker(
        LOOPBACK, thread.port, f"embedded (pure Python) on {LOOPBACK}:{thread.port}", thread=thread
    )


# ---------------------------------------------------------------------------------- the observer


class Observer:
    """The demo's MQTT client: sees what Home Assistant would see; cleans up at the end."""

    def __init__(self, state: DemoState, broker: Broker, options: DemoOptions) -> None:
        self._state = state
        self._broker = broker
        self.connected = threading.Event()
        self.refused: str | None = None
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"p1lora-demo-view-{uuid.uuid4().hex[:8]}",
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        client.suppress_exceptions = True
        if options.mqtt_username:
            client.username_pw_set(options.mqtt_username, options.mqtt_password)
        client.reconnect_delay_set(1, 5)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client
        self._filters = [state.settings.config_filter, f"{state.settings.base_topic}/#"]

    def start(self) -> None:
        self._client.connect_async(self._broker.host, self._broker.port, keepalive=30)
        self._client.loop_start()

    def _on_connect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        try:
            if reason_code.is_failure:
                self.refused = str(reason_code)
                return
            self.refused = None
            for topic_filter in self._filters:
                client.subscribe(topic_filter, qos=0)
            self._state.mqtt_connected(True)
            self.connected.set()
        except Exception:  # paho's thread must survive anything
            logger.exception("demo: MQTT connect handler failed")

    def _on_disconnect(
        self, client: mqtt.Client, userdata: Any, flags: Any, reason_code: ReasonCode, props: Any
    ) -> None:
        self._state.mqtt_connected(False)

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            self._state.mqtt_message(
                message.topic,
                bytes(message.payload),
                time.monotonic(),
                retained=bool(message.retain),
            )
        except Exception:
            logger.exception("demo: handling %s failed", message.topic)

    def clear_retained(self, topics: list[str], timeout: float = 5.0) -> int:
        """Delete retained messages (an empty retained message each); how many the broker
        acknowledged. Discovery configs go first: Home Assistant removes those entities."""
        infos = []
        for topic in topics:
            try:
                infos.append(self._client.publish(topic, b"", qos=1, retain=True))
            except ValueError:
                continue
        deadline = time.monotonic() + timeout
        done = 0
        for info in infos:
            with contextlib.suppress(RuntimeError, ValueError):
                info.wait_for_publish(max(0.0, deadline - time.monotonic()))
            if info.is_published():
                done += 1
        return done

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._client.disconnect()
        self._client.loop_stop()


# ---------------------------------------------------------------------------------- output


class LiveScreen:
    """The live view: the terminal's alternate screen, redrawn from the top (no curses)."""

    def __init__(self, stream: TextIO, *, color: bool) -> None:
        self.stream = stream
        self.color = color
        self.active = False

    def __enter__(self) -> LiveScreen:
        self._write("\x1b[?1049h\x1b[?25l")
        self.active = True
        return self

    def draw(self, lines: list[str]) -> None:
        self._write("\x1b[H" + "\x1b[K\n".join(lines) + "\x1b[K\x1b[J")

    def __exit__(self, *exc_info: object) -> None:
        if self.active:
            self._write("\x1b[?25h\x1b[?1049l")
            self.active = False

    def _write(self, text: str) -> None:
        # A closed terminal (SIGHUP) must not turn the orderly stop into a traceback.
        with contextlib.suppress(OSError):
            self.stream.write(text)
            self.stream.flush()


class _NoteHandler(logging.Handler):
    """While the live view owns the terminal, log records become events in the view."""

    def __init__(self, state: DemoState) -> None:
        super().__init__(logging.INFO)
        self._state = state

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._state.note(record.getMessage(), time.monotonic(), level=record.levelno)
        except Exception:  # noqa: BLE001 - a log handler must never raise
            self.handleError(record)


@contextlib.contextmanager
def _logs_into(state: DemoState) -> Iterator[None]:
    root = logging.getLogger()
    saved = list(root.handlers)
    root.handlers[:] = [_NoteHandler(state)]
    try:
        yield
    finally:
        root.handlers[:] = saved


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

    def _start_broker(self) -> Broker:
        options = self.options
        if options.mqtt_host is not None:
            label = f"{options.mqtt_host}:{options.mqtt_port} (yours)"
            return Broker(options.mqtt_host, options.mqtt_port, label)
        if options.broker == "embedded":
            return start_embedded()
        executable = find_mosquitto()
        if executable is None:
            if options.broker == "mosquitto":
                raise StartError(
                    "mosquitto not found ($P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto): "
                    "install it (sudo apt install mosquitto) or use --broker embedded"
                )
            return start_embedded()
        try:
            return start_mosquitto(executable, self.workdir)
        except StartError as exc:
            if options.broker == "mosquitto":
                raise
            logger.warning("%s; using the embedded broker instead", exc)
            return start_embedded()

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
            str(self.workdir / f"{role}-link.jsonl"),
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
        self.broker = self._start_broker()
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
        for role, program in (("rx", "p1-lora-rx"), ("tx", "p1-lora-tx")):
            child = python_child(
                program,
                program,
                self._daemon_args(role),
                log_path=workdir / f"{role}.log",
                env=self.env,
                cwd=workdir,
            )
            child.start()
            self.daemons.append(child)
            self._wait_running(child)

    def _wait_running(self, child: Child) -> None:
        """Until the daemon logs that it runs (its log lines go to the view meanwhile)."""
        assert self.state is not None
        ready = f"{child.name} running"
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            now = time.monotonic()
            for line in child.tail.lines():
                self.state.log_line(self._source(child), line, now)
                if ready in line:
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
        return {"p1-lora-tx": "tx", "p1-lora-rx": "rx"}.get(child.name, child.name)

    def _pump_logs(self, now: float) -> None:
        assert self.state is not None
        children = [*self.daemons, *([self.meter] if self.meter else [])]
        for child in children:
            for line in child.tail.lines():
                event = self.state.log_line(self._source(child), line, now)
                if event is not None and self._emit is not None:
                    self._emit(event_line(event))

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
                self.state.restarted(child.name)
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
                stack.enter_context(_logs_into(self.state))
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
                self.workdir / "rx-link.jsonl",
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
    if options.log_level != "debug":
        # Its connect/disconnect lines are noise here; the view shows the broker's state.
        logging.getLogger("p1lora.tools.mini_broker").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="p1lora-demo-"))
    try:
        return Demo(options, workdir).run()
    finally:
        if not options.keep_temp:
            shutil.rmtree(workdir, ignore_errors=True)
