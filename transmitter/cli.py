"""`p1-lora-tx`: the meter-closet daemon. P1 source -> `TxRuntime` -> radio.

The P1 source (the serial port, the virtual meter or a capture replay) is built by
`p1lora.transmitter.sources`; the options are `p1lora.transmitter.options`.

Everything else (configuration, key, state, radio, signals, systemd, exit codes) is the shared
skeleton in `p1lora.service.daemon`.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Final

from p1lora.common.budget import AirtimeBudget
from p1lora.service.bounded_read import read_regular_file
from p1lora.service.config import Config
from p1lora.service.daemon import (
    DaemonContext,
    DaemonSpec,
    LinkParts,
    prepare_link,
    run_daemon,
)
from p1lora.service.options import LinkSection, fixed_radio, link_config
from p1lora.service.state_store import StateStore, parse_state_json, write_atomically
from p1lora.transmitter.options import TX_OPTIONS
from p1lora.transmitter.runtime import TxRuntime
from p1lora.transmitter.serial_source import SourceStats
from p1lora.transmitter.sources import SerialTelegramSource, TelegramSource, make_source

__all__ = ["SPEC", "apply_config_changes", "build", "main"]

logger = logging.getLogger(__name__)

EXAMPLES: Final = """\
examples:
  p1-lora-tx                          run with /etc/p1-lora/tx.toml (as the systemd unit does)
  p1-lora-tx --radio sim --serial /dev/pts/7 --key-file key --state-dir /tmp/p1-tx
                                      simulated radio, P1 telegrams from `p1-lora meter`'s pty
  p1-lora-tx --radio sim --meter virtual --key-file key --state-dir /tmp/p1-tx
                                      simulated radio and the built-in virtual meter (its
                                      registers continue across restarts in --state-dir)
  p1-lora-tx --radio sim --meter virtual --meter-template telegram.txt --key-file key
                                      the virtual meter in the style of your meter's telegram
  p1-lora-tx --board dragino --serial /dev/ttyUSB0 --key-file /etc/p1-lora/key

Create the key with `p1-lora keygen --out FILE` and give both daemons the same file. Check a
config file without starting with `p1-lora config check FILE`."""

#: The config's radio mode and interval at the last start (see `apply_config_changes`).
CONFIG_MEMORY: Final = "tx_config.json"


class _Forward:
    """The source's callback, pointed at the runtime once it exists."""

    def __init__(self) -> None:
        self.target: Callable[[bytes, float], None] | None = None

    def __call__(self, raw: bytes, received_at: float) -> None:
        if self.target is not None:
            self.target(raw, received_at)


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
        "interval_s": LinkSection.of(config).interval,
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
    source = make_source(context.config, context.clock, forward, parts.state_dir)
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
