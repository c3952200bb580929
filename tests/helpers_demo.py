"""Helpers for the demo tests: canned MQTT traffic from the real bridge, and the demo as a process.

- `BridgeTraffic`: a `HomeAssistantBridge` on a `FakeMqtt`, fed with virtual-meter telegrams and
  diagnostics snapshots; `messages()` hands back what it published since the last call, exactly
  as a subscriber would get it. The renderer tests use it so that a change of topics, keys or
  discovery fields in the receiver breaks them instead of passing against invented payloads.
- `run_demo()`: `p1-lora demo ...` as a real process in its own temporary directory (TMPDIR),
  optionally with a pty as stdout (the live view), output collected; `DemoRun.summary()` is the
  `--json` summary.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from p1lora.common.link.events import LinkReport
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.transmitter.virtual_meter import VirtualMeter
from tests.helpers_ha import SETTINGS, FakeMqtt, snapshot, status

REPORT = LinkReport(-97.0, 7.5, SETTINGS, 40)


class BridgeTraffic:
    """What the receiver's Home Assistant bridge publishes, message by message."""

    def __init__(self, settings: DiscoverySettings | None = None, profile: str = "dsmr5") -> None:
        self.settings = settings or DiscoverySettings(state_interval_s=0)  # as the demo runs it
        self.mqtt = FakeMqtt()
        self.bridge = HomeAssistantBridge(self.mqtt, self.settings, bridge_interval_s=0.0)
        self._meter: Iterator[tuple[float, bytes]] = iter(
            VirtualMeter(profile, seed=3, start=datetime(2024, 6, 3, 10, 0, tzinfo=UTC))
        )
        self._seen = 0
        self.bridge.start()

    def telegram(self) -> bytes:
        """Deliver the virtual meter's next telegram to the bridge; returns it."""
        _, raw = next(self._meter)
        self.bridge.telegram(raw, 1.0, REPORT)
        return raw

    def diagnostics(self, **link: Any) -> None:
        self.bridge.diagnostics(snapshot(transmitter=status(), **link))

    def messages(self) -> list[tuple[str, bytes]]:
        """(topic, payload) published since the last call."""
        new = self.mqtt.published[self._seen :]
        self._seen = len(self.mqtt.published)
        return [(m.topic, m.payload) for m in new]


@dataclass
class DemoRun:
    code: int
    stdout: str
    stderr: str

    def summary(self) -> dict[str, Any]:
        """The `--json` summary: the last line of stdout that is a JSON object."""
        for line in reversed(self.stdout.splitlines()):
            start = line.find("{")
            if start >= 0:
                try:
                    value = json.loads(line[start:])
                except ValueError:
                    continue
                if isinstance(value, dict):
                    return value
        raise AssertionError(f"no JSON summary in the output:\n{self.describe()}")

    def describe(self) -> str:
        return (
            f"exit code {self.code}\nstdout:\n{self.stdout[-4000:]}\nstderr:\n{self.stderr[-4000:]}"
        )


def demo_environment(tmpdir: Path, **extra: str) -> dict[str, str]:
    """The host environment without p1-lora variables (but with the mosquitto hint), its
    temporary files in `tmpdir`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("P1LORA_") or k == "P1LORA_MOSQUITTO"
    }
    tmpdir.mkdir(parents=True, exist_ok=True)
    env["TMPDIR"] = str(tmpdir)
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_demo(
    args: Sequence[str],
    tmpdir: Path,
    *,
    timeout: float,
    tty: bool = False,
    env: dict[str, str] | None = None,
    while_running: Callable[[], None] | None = None,
) -> DemoRun:
    """Run `p1-lora demo ARGS` to its end; `while_running` is called once it started."""
    command = [sys.executable, "-m", "p1lora.tools.cli", "demo", *args]
    environment = env or demo_environment(tmpdir)
    stderr_path = tmpdir.parent / f"{tmpdir.name}-stderr.txt"
    with stderr_path.open("wb") as stderr:
        if not tty:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=environment,
            )
            if while_running is not None:
                while_running()
            try:
                out, _ = process.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
                raise AssertionError(
                    f"the demo did not end within {timeout} s:\n{stderr_path.read_text()}"
                ) from None
            text = out.decode("utf-8", "replace")
        else:
            text, process = _run_on_pty(command, environment, stderr, timeout, while_running)
    return DemoRun(process.returncode, text, stderr_path.read_text(errors="replace"))


def _run_on_pty(
    command: list[str],
    env: dict[str, str],
    stderr: Any,
    timeout: float,
    while_running: Callable[[], None] | None,
) -> tuple[str, subprocess.Popen[bytes]]:
    master, slave = pty.openpty()
    env = {**env, "TERM": "xterm", "COLUMNS": "120", "LINES": "40"}
    env.pop("NO_COLOR", None)
    process = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=slave, stderr=stderr, env=env
    )
    os.close(slave)
    if while_running is not None:
        while_running()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed its side
                    data = b""
                if data:
                    chunks.append(data)
                    continue
                if process.poll() is not None:
                    break
                time.sleep(0.05)
            elif process.poll() is not None:
                break
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise AssertionError(f"the demo did not end within {timeout} s")
    finally:
        os.close(master)
    process.wait(10)
    return b"".join(chunks).decode("utf-8", "replace"), process
