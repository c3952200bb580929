"""Test helpers: the daemons and the virtual meter as real processes, isolated from the host.

Each process gets a clean environment (no P1LORA_* variables from the developer's shell, no
systemd variables) and an empty explicit config file, so a /etc/p1-lora/*.toml on the test
machine cannot leak in. Logs go to a file per process; tests wait for log lines and MQTT
messages with generous deadlines, never fixed sleeps. Every process is killed at teardown
(`ProcessGroup`), whatever the test did.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

#: Generous: CI machines are slow; waits end as soon as the condition holds.
TIMEOUT = 45.0

#: Command -> module run with `python -m` (the console scripts call the same `main`).
MODULES = {
    "p1-lora-tx": "p1lora.transmitter.cli",
    "p1-lora-rx": "p1lora.receiver.cli",
    "p1-lora": "p1lora.tools.cli",
}

#: Host variables that would change how a daemon behaves.
_ISOLATE = (
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    "CREDENTIALS_DIRECTORY",
    "STATE_DIRECTORY",
)


def free_udp_port() -> int:
    """A loopback UDP port that was free a moment ago (one simulated channel per test)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(workdir: Path, **extra: str) -> dict[str, str]:
    """The host environment without p1-lora and systemd variables, plus an empty config file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("P1LORA_") and k not in _ISOLATE}
    empty = workdir / "empty.toml"
    if not empty.exists():
        empty.write_text("# intentionally empty: tests pass everything as flags\n")
    env["P1LORA_CONFIG"] = str(empty)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


class Proc:
    """One process with its stderr in a log file."""

    def __init__(
        self,
        name: str,
        args: Sequence[str],
        workdir: Path,
        *,
        env: dict[str, str] | None = None,
        stdout: bool = False,
    ) -> None:
        self.name = name
        self.log_path = workdir / f"{name}-{uuid.uuid4().hex[:6]}.log"
        command = [sys.executable, "-m", MODULES[args[0]], *args[1:]]
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout else subprocess.DEVNULL,
            stderr=self._log,
            env=env if env is not None else clean_env(workdir),
            cwd=workdir,
        )

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_log(self, pattern: str, *, timeout: float = TIMEOUT, after: int = 0) -> re.Match[str]:
        """The first match of the regex `pattern` in the log (from character `after` on)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            text = self.log()
            found = regex.search(text, after)
            if found is not None:
                return found
            if not self.running:
                raise AssertionError(
                    f"{self.name} exited with {self.process.returncode} before logging "
                    f"{pattern!r}:\n{text[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.name} did not log {pattern!r} within {timeout} s:\n{text[-4000:]}"
                )
            time.sleep(0.05)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.running:
            self.process.send_signal(signum)

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"{self.name} did not exit within {timeout} s:\n{self.log()[-4000:]}"
            ) from None

    def stop(self, timeout: float = TIMEOUT) -> int:
        """SIGTERM and wait for the exit code."""
        self.signal(signal.SIGTERM)
        return self.wait(timeout)

    def kill(self) -> None:
        if self.running:
            self.process.kill()
            self.process.wait(10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self._log.close()


class ProcessGroup:
    """Starts processes for one test and kills whatever is left at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.procs: list[Proc] = []

    def start(
        self, name: str, *args: str, env: dict[str, str] | None = None, stdout: bool = False
    ) -> Proc:
        proc = Proc(name, args, self.workdir, env=env, stdout=stdout)
        self.procs.append(proc)
        return proc

    def meter(self, link: Path, *extra: str) -> tuple[Proc, str]:
        """`p1-lora meter --link LINK`: a virtual DSMR 5 meter on a pty; returns its pty path."""
        proc = self.start("meter", "p1-lora", "meter", "--link", str(link), *extra, stdout=True)
        assert proc.process.stdout is not None
        line = proc.process.stdout.readline().decode().strip()
        assert line.startswith("/dev/"), f"meter printed {line!r}:\n{proc.log()}"
        return proc, line

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.kill()


@contextmanager
def processes(workdir: Path) -> Iterator[ProcessGroup]:
    group = ProcessGroup(workdir)
    try:
        yield group
    finally:
        group.close()


def read_telegram(host: str, port: int, timeout: float = TIMEOUT) -> bytes:
    """Connect to the raw telegram server and return the first complete telegram."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        data = b""
        while time.monotonic() < deadline:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
            match = re.search(rb"/[^\r\n]*\r\n.*?![0-9A-F]{4}\r\n", data, re.DOTALL)
            if match is not None:
                return match.group(0)
    raise AssertionError(f"no complete telegram from {host}:{port}; got {data[:200]!r}")
