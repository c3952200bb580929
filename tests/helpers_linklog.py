"""Helpers for the link-log tests: a whole simulated link whose two daemons write real
link-quality logs through `LinkLogObserver`, as `p1-lora-tx` and `p1-lora-rx` do.

`LoggedSimulation` is `tools.sim.Simulation` with one `LinkLog` file per side. A restarted side
gets a new observer on a new `LinkLog` over the same file (a new daemon process appending to the
log), after the old one was closed (a clean shutdown, as systemd's SIGTERM gives).
"""

from __future__ import annotations

from pathlib import Path

from p1lora.receiver.linkreport import Report, analyse, parse_lines
from p1lora.receiver.runtime import RxRuntime
from p1lora.service.link_log import LinkLog
from p1lora.service.observers import LinkLogObserver
from p1lora.tools.sim import SimOptions, Simulation
from p1lora.transmitter.runtime import TxRuntime

#: Wall-clock time of the simulation's t=0 (the log writes wall-clock times).
EPOCH = 1_700_000_000.0


class LoggedSimulation(Simulation):
    """A simulation whose transmitter and receiver write link logs to `directory`."""

    def __init__(self, options: SimOptions, directory: Path) -> None:
        self.tx_log_path = directory / "tx-link.jsonl"
        self.rx_log_path = directory / "rx-link.jsonl"
        self.logs: dict[str, LinkLog] = {}
        super().__init__(options)

    def _log_wall_time(self) -> float:
        return EPOCH + self.clock.now()

    def _observer(self, role: str, path: Path) -> LinkLogObserver:
        previous = self.logs.get(role)
        if previous is not None:
            previous.close()
        log = LinkLog(path)
        self.logs[role] = log
        return LinkLogObserver(log, wall_clock=self._log_wall_time)

    def _new_tx(self) -> TxRuntime:
        runtime = super()._new_tx()
        runtime.add_observer(self._observer("tx", self.tx_log_path))
        return runtime

    def _new_rx(self) -> RxRuntime:
        runtime = super()._new_rx()
        runtime.add_observer(self._observer("rx", self.rx_log_path))
        return runtime

    def close_logs(self) -> None:
        for log in self.logs.values():
            log.close()


def report_of(path: Path) -> Report:
    """`p1-lora linkreport`'s analysis of one log file."""
    with path.open(encoding="utf-8") as handle:
        lines = [(path.name, number, text) for number, text in enumerate(handle, 1)]
    return analyse(parse_lines(lines))
