"""The soak (issue 7, item 3): one hour of the daemons' logic on a virtual clock.

What runs: the parts `p1-lora-tx` and `p1-lora-rx` are made of, assembled by this test (not by
`service.daemon.prepare_link` or the `cli.build` functions, which open real ports, threads and
a real MQTT client): the real SX127x driver on an emulated chip on the simulated channel (as
`--radio sim` opens it, through `hardware.factory.open_radio`), a `TxRuntime` and an `RxRuntime`
on state stores in a directory, their budget stores saved as the daemon's heartbeat does, the
radio-health observer, a link-quality log per side writing JSON lines with size rotation, and
on the receiver the delivery log and the Home Assistant bridge (discovery planning, state
building and command plumbing; a bounded in-memory MQTT port stands in for the broker). The
virtual meter sends a DSMR 5 telegram every second. What it does not cover, and where that is
tested with the real processes: the serial reader, the MQTT client and the daemons' threads
(tests/test_daemons.py, tests/test_faults.py).

What it shows, with the numbers printed (`pytest -s` shows them; failures include them):

- memory is flat: no allocation site grows in the second half hour by more than a small
  bound, and all of them together by no more than another. The only structure that
  legitimately grows for a whole hour is the airtime budget (each node's own, and the
  transmitter's copy of the receiver's), which must remember the last hour of transmissions
  (the duty-cycle window), and its objects are allocated at several
  sites (a `Transmission` in the budget, its start time wherever the virtual clock's `now` was
  made: the emulated chip's end-of-transmission timer, the meter's schedule). So the windows
  are *measured*, not estimated: at each checkpoint the windows are emptied, a snapshot is
  taken without them, and they are rebuilt from copies made in this file (filtered out).
  Growth is compared between those window-free snapshots, site by site, so a leak cannot hide
  at a site the windows also use;
- each link-quality log stays within its rotation settings (files, bytes per file);
- every queue and cache the runtimes keep stays bounded (sampled every simulated minute);
- and the link carried the meter: telegrams delivered byte for byte, none corrupt.
"""

from __future__ import annotations

import gc
import hashlib
import json
import random
import threading
import tracemalloc
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from p1lora.common.budget import AirtimeBudget, Transmission
from p1lora.common.clock import VirtualClock
from p1lora.common.link import LinkReport
from p1lora.common.link.config import LinkConfig
from p1lora.hardware.factory import open_radio
from p1lora.hardware.sx127x import SX127x
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.receiver.runtime import BaseSink, RxRuntime
from p1lora.receiver.sinks import DeliveryLog
from p1lora.service.budget_store import BudgetStore
from p1lora.service.link_log import LinkLog
from p1lora.service.observers import LinkLogObserver, RadioHealth
from p1lora.service.state_store import StateStore
from p1lora.tools.sim import MeterNode, NodeLoop, SimOptions, build_channel, sim_psk
from p1lora.transmitter.runtime import TxRuntime
from p1lora.transmitter.virtual_meter import VirtualMeter

pytestmark = [pytest.mark.soak, pytest.mark.slow]

HOUR = 3600.0
#: Caches, discovery configs and the first session settle in the first minutes.
WARM_UP_S = 300.0
MID_S = WARM_UP_S + (HOUR - WARM_UP_S) / 2
#: Link log rotation of the soak: small enough to rotate many times in an hour.
LOG_MAX_BYTES = 64 * 1024
LOG_BACKUPS = 2
#: Allowed growth of traced memory over the second half hour (about 1 650 telegrams),
#: outside the budget windows: per allocation site, and of all sites together. A leak of
#: 10 bytes or more per telegram at one site, or 20 spread over several, fails (a 50-byte one
#: injected into the bridge showed +95 KB at its site).
SITE_GROWTH_BOUND = 16 * 1024
GROWTH_BOUND = 32 * 1024
#: How often a user sends the transmitter a command through Home Assistant.
COMMAND_EVERY_S = 300.0
#: The wall clock the logs and the bridge see (the runtimes run on the virtual monotonic one).
EPOCH = 1_767_225_600.0


class BoundedMqtt:
    """An `MqttPort` that keeps what a broker would retain (one message per topic), counts the
    rest and the command replies by status, and hands messages to subscribers (`deliver`, as
    paho's thread would): bounded, so the soak's own bookkeeping cannot grow."""

    def __init__(self, reply_topic: str) -> None:
        self.reply_topic = reply_topic
        self.retained: dict[str, bytes] = {}
        self.published = 0
        self.replies: Counter[str] = Counter()
        self.handlers: dict[str, Callable[[str, bytes], None]] = {}

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool:
        data = payload.encode() if isinstance(payload, str) else bytes(payload)
        self.published += 1
        if topic == self.reply_topic:
            self.replies[str(json.loads(data)["status"])] += 1
        if retain:
            if data:
                self.retained[topic] = data
            else:
                self.retained.pop(topic, None)
        return True

    def subscribe(
        self, topic_filter: str, handler: Callable[[str, bytes], None], *, qos: int = 0
    ) -> None:
        self.handlers[topic_filter] = handler

    def deliver(self, topic: str, payload: bytes) -> None:
        self.handlers[topic](topic, payload)


class Checker(BaseSink):
    """Every delivery must be one of the meter's recent telegrams (kept by digest, bounded)."""

    def __init__(self) -> None:
        self.recent: OrderedDict[bytes, None] = OrderedDict()
        self.delivered = 0
        self.corrupt = 0

    def meter(self, raw: bytes) -> None:
        self.recent[hashlib.blake2b(raw, digest_size=16).digest()] = None
        while len(self.recent) > 120:
            self.recent.popitem(last=False)

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.delivered += 1
        if hashlib.blake2b(raw, digest_size=16).digest() not in self.recent:
            self.corrupt += 1


@dataclass
class Soak:
    """Both daemons' parts on one virtual clock."""

    directory: Path
    seed: int = 3
    clock: VirtualClock = field(default_factory=lambda: VirtualClock(0.0))
    samples: list[dict[str, int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        options = SimOptions(path_loss_db=100.0, seed=self.seed)
        self.config: LinkConfig = options.link_config()
        self.loop = NodeLoop(self.clock)
        self.channel = build_channel(options, self.clock)
        self.channel.set_path_loss("tx", "rx", 100.0)
        psk = sim_psk(self.seed)
        wall = self.wall
        now = self.clock.now()
        self.logs: dict[str, LinkLog] = {}
        self.budget_stores: dict[str, BudgetStore] = {}
        self.health: dict[str, RadioHealth] = {}
        observers = {}
        for role in ("tx", "rx"):
            state_dir = self.directory / role
            log = LinkLog(
                self.directory / f"{role}-link.jsonl",
                max_bytes=LOG_MAX_BYTES,
                backups=LOG_BACKUPS,
                monotonic=self.clock.now,
            )
            self.logs[role] = log
            self.budget_stores[role] = BudgetStore(state_dir, role)
            self.health[role] = RadioHealth()
            observers[role] = [self.health[role], LinkLogObserver(log, wall_clock=wall)]
        self.tx = TxRuntime(
            self._radio("tx"),
            self.config,
            psk,
            now,
            store=StateStore(self.directory / "tx", role="tx"),
            rng=_rng(self.seed, "tx"),
            observers=observers["tx"],
        )
        settings = DiscoverySettings(link=self.config)
        self.mqtt = BoundedMqtt(f"{settings.base_topic}/command/reply")
        self.bridge = HomeAssistantBridge(
            self.mqtt,
            settings,
            wall_clock=wall,
            monotonic=self.clock.now,
        )
        self.deliveries = DeliveryLog()
        self.checker = Checker()
        self.rx = RxRuntime(
            self._radio("rx"),
            self.config,
            psk,
            now,
            store=StateStore(self.directory / "rx", role="rx"),
            rng=_rng(self.seed, "rx"),
            sinks=[self.deliveries, self.bridge, self.checker],
            observers=observers["rx"],
        )
        self.bridge.attach_commands(self.rx)
        self.bridge.start()
        self.meter = MeterNode(iter(VirtualMeter("dsmr5", self.seed)), self._submit)
        self.loop.add("meter", self.meter, 0)
        self.loop.add("tx", _Heartbeat(self.tx, self.budget_stores["tx"]), 1)
        self.loop.add("rx", _Heartbeat(self.rx, self.budget_stores["rx"]), 2)
        self.read = 0
        self.commands_sent = 0

    def wall(self) -> float:
        return EPOCH + self.clock.now()

    def _radio(self, name: str) -> SX127x:
        """The real driver on an emulated chip, as `--radio sim` opens it."""
        return open_radio("sim", clock=self.clock, channel=self.channel, name=name)

    def _submit(self, raw: bytes, t: float) -> None:
        self.read += 1
        self.checker.meter(raw)
        self.tx.submit_telegram(raw, t)

    def sample(self) -> None:
        """The size of every queue and cache worth watching, now."""
        now = self.clock.now()
        tx, rx = self.tx.diagnostics(now), self.rx.diagnostics(now)
        bridge = self.bridge.stats()
        self.samples.append(
            {
                "tx_dropped": tx.telegrams_dropped,
                "rx_sink_errors": rx.sink_errors,
                "rx_references": len(self.rx.rx_link.references()),
                "rx_commands": len(self.rx.rx_link.pending_commands),
                "bridge_pending": bridge.pending_commands,
                "bridge_configs": len(self.bridge.config_topics()),
                "retained_topics": len(self.mqtt.retained),
                "tx_log_pending": self.logs["tx"].stats().pending,
                "rx_log_pending": self.logs["rx"].stats().pending,
                "tx_budget_window": len(self.tx.tx_link.budget.transmissions(now)),
                "rx_budget_window": len(self.rx.rx_link.budget.transmissions(now)),
                "tx_store_pending": int(self.tx.store.pending),
                "rx_store_pending": int(self.rx.store.pending),
            }
        )

    def command(self) -> None:
        """A user presses the bridge's "info" button in Home Assistant."""
        self.commands_sent += 1
        payload = json.dumps({"cmd": "info", "id": self.commands_sent}).encode()
        self.mqtt.deliver(self.bridge.settings.command_topic, payload)

    def run_until(self, end: float) -> None:
        self.loop.run_until(end)

    def every(self, period: float, until: float, action: Callable[[], None]) -> None:
        def fire(at: float) -> None:
            action()
            if at + period <= until:
                self.loop.at(at + period, lambda: fire(at + period))

        first = self.clock.now() + period
        self.loop.at(first, lambda: fire(first))


class _Heartbeat:
    """Steps a runtime and, after every step, saves its budget now and then, as the daemon's
    heartbeat does (`service.daemon._Heartbeat`)."""

    def __init__(self, runtime: TxRuntime | RxRuntime, store: BudgetStore) -> None:
        self.runtime = runtime
        self.store = store
        self.wakeup: threading.Event = runtime.wakeup

    def step(self, now: float) -> float | None:
        deadline = self.runtime.step(now)
        link = self.runtime.tx_link if isinstance(self.runtime, TxRuntime) else self.runtime.rx_link
        self.store.maybe_save(link.budget, now)
        return deadline


def _rng(seed: int, role: str) -> Callable[[int], bytes]:
    return random.Random(f"soak:{seed}:{role}").randbytes


def _window_free_snapshot(budgets: list[AirtimeBudget]) -> tracemalloc.Snapshot:
    """A snapshot of everything but what only the budgets' windows hold (see the module
    docstring). The windows are copied into new objects allocated here (filtered out of every
    comparison by `_ours`), emptied so that their own objects are freed, and after the snapshot
    refilled with the copies with the same totals: the link cannot tell, because it only reads
    the values. Touches the budget's private deque and sum: the test measures that structure."""
    copies = []
    for budget in budgets:
        window = budget._sent
        copies.append(
            (
                [
                    Transmission(float.fromhex(t.start.hex()), float.fromhex(t.airtime.hex()))
                    for t in window
                ],
                budget._used,
            )
        )
        window.clear()
    del window
    snapshot = _snapshot()
    for budget, (items, used) in zip(budgets, copies, strict=True):
        budget._sent.extend(items)
        budget._used = used
    return snapshot


def _budgets(soak: Soak) -> list[AirtimeBudget]:
    """Every one-hour airtime window the soak's nodes keep: each node's own budget and the
    transmitter's copy of the receiver's (frames it heard, so a switch does not run the
    receiver's acks out of budget)."""
    peer: AirtimeBudget = soak.tx.tx_link._peer_budget
    return [soak.tx.tx_link.budget, peer, soak.rx.rx_link.budget]


def _ours(snapshot: tracemalloc.Snapshot) -> tracemalloc.Snapshot:
    """The snapshot without this test's own bookkeeping (allocated in this file, and the
    earlier snapshots, which tracemalloc traces too)."""
    return snapshot.filter_traces(
        [
            tracemalloc.Filter(False, "*tests/test_soak.py"),
            tracemalloc.Filter(False, tracemalloc.__file__),
        ]
    )


def _traced(snapshot: tracemalloc.Snapshot) -> int:
    """Traced memory of everything but this test's own bookkeeping."""
    return sum(stat.size for stat in _ours(snapshot).statistics("filename"))


def _site(stat: tracemalloc.StatisticDiff) -> str:
    frame = stat.traceback[0]
    return f"{frame.filename.rsplit('/', 2)[-1]}:{frame.lineno}"


def _snapshot() -> tracemalloc.Snapshot:
    gc.collect()
    return tracemalloc.take_snapshot()


def test_one_hour_of_both_daemons_keeps_memory_flat_and_logs_bounded(tmp_path: Path) -> None:
    soak = Soak(tmp_path)
    soak.every(60.0, HOUR, soak.sample)
    soak.every(COMMAND_EVERY_S, HOUR - 120.0, soak.command)
    soak.run_until(WARM_UP_S)  # not traced: it only fills caches, and tracing is slow
    tracemalloc.start()
    try:
        budgets = _budgets(soak)
        full: list[tracemalloc.Snapshot] = []
        free: list[tracemalloc.Snapshot] = []
        for until in (WARM_UP_S, MID_S, HOUR):
            soak.run_until(until)
            full.append(_ours(_snapshot()))
            free.append(_ours(_window_free_snapshot(budgets)))
    finally:
        tracemalloc.stop()

    traced = [_traced(snapshot) for snapshot in full]
    windows = [full_ - _traced(free_) for full_, free_ in zip(traced, free, strict=True)]
    free_traced = [_traced(snapshot) for snapshot in free]
    # Site by site, between window-free snapshots: what grew in the second half hour.
    sites = free[2].compare_to(free[1], "lineno")
    growing = [stat for stat in sites if stat.size_diff > 0]
    growth = sum(stat.size_diff for stat in growing)
    worst = max(growing, key=lambda stat: stat.size_diff, default=None)
    window_sites = [
        f"{_site(stat)} {stat.size_diff:+d} B"
        for stat in _ours(full[2]).compare_to(free[2], "lineno")[:6]
        if stat.size_diff > 0
    ]
    figures = {
        "traced_growth_first_half_B": traced[1] - traced[0],
        "traced_growth_second_half_B": traced[2] - traced[1],
        "budget_windows_B (objects since the previous checkpoint)": windows,
        "budget_windows_transmissions": [len(b.transmissions(soak.clock.now())) for b in budgets],
        "budget_windows_largest_sites_at_end": window_sites,
        "growth_first_half_outside_budget_windows_B": free_traced[1] - free_traced[0],
        "growth_second_half_outside_budget_windows_B": free_traced[2] - free_traced[1],
        "growing_sites_second_half_sum_B": growth,
        "top_growth_sites_second_half": [
            f"{_site(stat)} {stat.size_diff:+d} B ({stat.count_diff:+d} blocks)"
            for stat in sites[:8]
        ],
        "telegrams_read": soak.read,
        "delivered": soak.checker.delivered,
        "commands": dict(soak.mqtt.replies),
        "log_rotations": {role: log.stats().rotations for role, log in soak.logs.items()},
    }
    print("\nsoak figures:", json.dumps(figures, indent=2))

    # The link carried the meter the whole hour, byte for byte.
    assert soak.checker.corrupt == 0
    assert soak.checker.delivered >= 0.97 * soak.read
    assert soak.bridge.stats().telegrams_published == soak.checker.delivered
    assert soak.bridge.stats().errors == 0
    # Every command from Home Assistant was queued, answered by the transmitter, published.
    assert soak.commands_sent >= 10
    assert soak.mqtt.replies == {"queued": soak.commands_sent, "ok": soak.commands_sent}
    # Memory: flat outside the duty-cycle windows, which hold one hour and no more.
    assert worst is None or worst.size_diff <= SITE_GROWTH_BOUND, figures
    assert growth <= GROWTH_BOUND, figures
    # The windows were measured (what they hold of the objects made since the previous
    # checkpoint; older ones are copies made here) and hold one hour of frames, no more.
    assert windows[1] > 0 and windows[2] > 0, figures
    for budget in budgets:
        window = budget.transmissions(soak.clock.now())
        assert window and all(t.end > soak.clock.now() - HOUR for t in window)
    # Logs: rotated by size, never more files or bytes than configured.
    for role, log in soak.logs.items():
        assert log.path is not None
        files = sorted(log.path.parent.glob(f"{log.path.name}*"))
        assert len(files) <= LOG_BACKUPS + 1, files
        assert all(f.stat().st_size <= LOG_MAX_BYTES for f in files)
        stats = log.stats()
        assert stats.rotations > 5, f"{role} log never really rotated: {stats}"
        assert stats.dropped == 0 and stats.pending == 0
        last = log.path.read_text().splitlines()[-1]
        assert json.loads(last)["time"].startswith("2026-01-01T")
    # Queues and caches: bounded, sampled every simulated minute.
    config = soak.config
    for sample in soak.samples:
        assert sample["tx_dropped"] == 0 and sample["rx_sink_errors"] == 0
        assert sample["rx_references"] <= config.reference_cache
        assert sample["rx_commands"] <= 1 and sample["bridge_pending"] <= 1
        assert sample["tx_log_pending"] == 0 and sample["rx_log_pending"] == 0
        assert sample["tx_store_pending"] == 0 and sample["rx_store_pending"] == 0
    settled = soak.samples[10:]
    assert len({s["bridge_configs"] for s in settled}) == 1
    assert len({s["retained_topics"] for s in settled}) == 1
    assert max(s["tx_budget_window"] for s in soak.samples) <= 2.5 * HOUR
    assert soak.rx.rx_link.pending_commands == []
    assert soak.bridge.stats().pending_commands == 0
    assert soak.health["tx"].problem(soak.clock.now()) is None
    assert soak.health["rx"].problem(soak.clock.now()) is None
