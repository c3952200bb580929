"""`p1-lora bench report`: measure everything BENCHMARKS.md shows, in one run, and write it.

A benchmark page that is edited by hand drifts from the code; this one is a command's output.
Each run measures every figure afresh on the machine it runs on and writes the page with, next
to each figure, how it was measured: the command, the simulated duration, the seed, and the
machine (CPU model, Python version, date). Nothing is copied from an earlier run.

What it measures (each section of the page is one function below, `SECTIONS` lists them):

1. telegram parsing, p1-lora vs dsmr_parser (`tools.bench_parse`'s timing and memory-growth
   functions, with fewer rounds and parses than `p1-lora bench parse`);
2. bytes on air per telegram, median and p95, against the raw telegram and the ESP32
   firmware's frames (`p1-lora sim` runs per meter profile, and the ESP32 baseline model);
3. telegrams delivered per hour and the longest gap at three path losses (a good link, about
   SF10, near the SF12 limit) in the 1 % (868.1 MHz) and 10 % (869.525 MHz) EU sub-bands,
   p1-lora against `--baseline esp32` and `esp32-same-channel`;
4. cold-start convergence (the delivery runs, and several seeds on a fading link);
5. end-to-end link latency on the simulator's virtual clock (meter telegram -> delivery);
6. CPU time per telegram on each side, measured with `time.process_time` around the link's
   event methods and the runtimes' `step` in a simulated run;
7. the real processes, the way users run them (`tools.bench_e2e`, also `p1-lora bench e2e`):
   virtual meter on a pty -> `p1-lora-tx --radio sim` -> `p1-lora-rx --radio sim` -> a broker ->
   an MQTT subscriber, in wall time: latency from the pty write to the MQTT state, each
   daemon's CPU per telegram from /proc/PID/stat, and its resident memory.
8. many links in one meter room (`tools.bench_building`, also `p1-lora bench building`): the
   link as it is beside the air policy before "Sharing the air", all meters in phase;
9. Home Assistant state messages and recorder rows per hour for several
   `homeassistant.state_interval` settings (`tools.bench_ha`, also `p1-lora bench ha`).

`--quick` runs everything shorter (minutes of simulated time instead of hours, fewer parses):
the same page with less precise numbers, for the test suite's smoke test. Exit codes: 0 done,
2 bad input (an output path that cannot be written), 1 when a measurement failed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import logging
import math
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from p1lora.common.parser import parse_telegram
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.tools import bench_building, bench_e2e, bench_ha, bench_parse
from p1lora.tools.esp32_frames import reading_frame_bytes
from p1lora.tools.sim import (
    UPDATE_FRAMES,
    SimMetrics,
    SimOptions,
    Simulation,
    percentile,
    telegram_feed,
)
from p1lora.tools.sim import median as median_of
from p1lora.tools.sim_command import run_simulations

__all__ = [
    "PLANS",
    "SECTIONS",
    "Context",
    "Machine",
    "Plan",
    "Section",
    "Table",
    "configure",
    "default_output",
    "machine_info",
    "measure_all",
    "render",
    "run",
]

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Path losses of the delivery table: a few walls (SF7/BW250 with a large margin), about the
#: SF10/BW125 setting, and near the SF12 limit at 14 dBm (see `p1-lora sim --help`).
PATH_LOSSES: tuple[tuple[str, float], ...] = (
    ("good", 100.0),
    ("SF10-ish", 141.0),
    ("near SF12", 147.0),
)
#: The two EU sub-bands users can choose: 1 % at 868.1 MHz, 10 % at 869.525 MHz.
BANDS: tuple[tuple[str, int], ...] = (("10 %", 869_525_000), ("1 %", 868_100_000))
BASELINES = ("esp32", "esp32-same-channel")
PROFILES = ("dsmr5", "fluvius", "dsmr4", "dsmr22")
GOOD_LOSS_DB = 100.0
#: The convergence spread runs: the SF10-ish link with per-frame fading (dB, standard
#: deviation), where the seed decides what the tuning measures and so when it settles.
CONVERGENCE_LOSS_DB = 141.0
CONVERGENCE_FADING_DB = 4.0


@dataclass(frozen=True, slots=True)
class Plan:
    """How long and how often each measurement runs."""

    name: str
    delivery_s: float
    profile_s: float
    convergence_runs: int
    convergence_s: float
    cpu_s: float
    parse_seconds: float
    parse_rounds: int
    parse_rss_parses: int
    parse_traced_parses: int
    #: Wall-time seconds of the real-process run after its first delivery.
    e2e_s: float
    #: The building section: link counts, seconds per run, background, runs at a time.
    building_links: tuple[int, ...] = (1, 2)
    building_s: float = 120.0
    building_background: str = "none"
    building_jobs: int = 1
    #: Hours of the Home Assistant database-growth runs, and the settings compared.
    ha_hours: float = 0.1
    ha_intervals: tuple[float, ...] = (0.0, 5.0, 30.0)


PLANS: dict[str, Plan] = {
    "full": Plan(
        "full",
        3600.0,
        1800.0,
        6,
        600.0,
        1800.0,
        0.2,
        3,
        20_000,
        5_000,
        60.0,
        building_links=(1, 2, 10, 20),
        building_s=3600.0,
        building_background="city",
        building_jobs=2,
        ha_hours=1.0,
        ha_intervals=(0.0, 1.0, 5.0, 10.0, 30.0, 60.0),
    ),
    "quick": Plan("quick", 300.0, 120.0, 2, 120.0, 120.0, 0.02, 1, 300, 100, 4.0),
}


# ---------------------------------------------------------------------------- the page model


@dataclass(frozen=True, slots=True)
class Table:
    """A Markdown table. Columns whose header carries a unit in parentheses hold numbers only
    (or "-" where a run produced no value), so the page can be checked mechanically."""

    headers: tuple[str, ...]
    rows: Sequence[tuple[str, ...]]


@dataclass
class Section:
    """One `## N. title` of the page: how it was measured (bullets), tables, notes."""

    title: str
    method: list[str]
    tables: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: Wall time of the measurement (None: derived from another section's runs).
    seconds: float | None = 0.0


@dataclass(frozen=True, slots=True)
class Machine:
    """Where the numbers come from (the page's header)."""

    cpu: str
    cores: int
    python: str
    system: str
    date: str
    version: str


@dataclass(frozen=True, slots=True)
class Context:
    """What every measurement needs to know."""

    plan: Plan
    seed: int
    command: str
    #: The delivery matrix's runs, (sub-band, path loss) -> protocol -> metrics, for the
    #: sections that report more of what those runs measured.
    delivery_runs: dict[tuple[str, float], dict[str, SimMetrics]] = field(default_factory=dict)


def machine_info(now: dt.datetime | None = None) -> Machine:
    """The machine the numbers come from (CPU model from /proc/cpuinfo where there is one)."""
    moment = now or dt.datetime.now(dt.UTC)
    return Machine(
        cpu=_cpu_model(),
        cores=os.cpu_count() or 1,
        python=f"{platform.python_implementation()} {platform.python_version()}",
        system=platform.platform(terse=True),
        date=moment.strftime("%Y-%m-%d %H:%M UTC"),
        version=_version(),
    )


def _cpu_model() -> str:
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    # x86 says "model name", a Raspberry Pi says "Model" (the board) besides per-core entries.
    for key in ("model name", "Model", "Hardware", "cpu model"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def _version() -> str:
    try:
        return metadata.version("p1-lora")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------- formatting


def _num(value: object, digits: int = 1) -> str:
    """A table cell: a plain number (no thousands separators, no unit) or "-"."""
    if value is None or isinstance(value, bool):
        return "-"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.{digits}f}"
    return "-"


def _metric(metrics: SimMetrics, key: str) -> float | None:
    value = metrics.as_dict().get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _setting(metrics: SimMetrics) -> str:
    data = metrics.as_dict()
    bw = data.get("final_bw")
    bw_text = f"{bw:g}" if isinstance(bw, float) else str(bw)
    return f"SF{data.get('final_sf')}/BW{bw_text}"


def _duration(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


# ---------------------------------------------------------------------------- 1. parsing


def measure_parse(context: Context) -> Section:
    plan = context.plan
    section = Section(
        "Telegram parsing: p1-lora vs dsmr_parser",
        [
            "Both parsers check the CRC and read every line of the same telegram "
            "(`tools.bench_parse`, the code behind `p1-lora bench parse`): rounds interleaved, "
            f"best of {plan.parse_rounds} round(s) of {plan.parse_seconds:g} s per parser and "
            "telegram, so background load penalises neither side.",
            f"Memory growth: resident set size over {plan.parse_rss_parses:,} parses and "
            f"tracemalloc over {plan.parse_traced_parses:,} parses of the telegram with a "
            "power-failure log (the line that makes dsmr_parser's ProfileGenericParser grow): "
            f"{bench_parse.BUILTIN_TELEGRAMS[bench_parse.MEMORY_TELEGRAM].label}.",
            "For longer runs: `p1-lora bench parse` (100 000 parses by default).",
        ],
    )
    modules = bench_parse.load_oracle()
    items = list(bench_parse.BUILTIN_TELEGRAMS)
    rows: list[tuple[str, ...]] = []
    if modules is None:
        section.notes.append(
            "dsmr_parser is not installed here (it is a test dependency: "
            "`pip install 'p1-lora[dev]'`), so only p1-lora was measured."
        )
        for item in items:
            (ours,) = bench_parse.throughput(
                [(parse_telegram, item.raw)], plan.parse_seconds, plan.parse_rounds
            )
            rows.append((item.label, str(len(item.raw)), _num(ours, 0), "-", "-"))
    else:
        parsers, specs = modules
        for item in items:
            oracle = bench_parse.dsmr_parser_for(specs, parsers, item.spec)
            problem = bench_parse.check_agreement(item, oracle)
            if problem is not None:
                raise MeasurementError(f"{item.label}: the parsers disagree ({problem})")
            logger.info("parse: timing %s", item.label)
            ours, theirs = bench_parse.throughput(
                [
                    (parse_telegram, item.raw),
                    (oracle.parse, item.raw.decode("latin-1")),
                ],
                plan.parse_seconds,
                plan.parse_rounds,
            )
            rows.append(
                (
                    item.label,
                    str(len(item.raw)),
                    _num(ours, 0),
                    _num(theirs, 0),
                    _num(ours / theirs),
                )
            )
    section.tables.append(
        Table(
            (
                "telegram",
                "size (bytes)",
                "p1-lora (telegrams/s)",
                "dsmr_parser (telegrams/s)",
                "speed-up (x)",
            ),
            rows,
        )
    )
    section.tables.append(_parse_memory(context, modules))
    return section


def _parse_memory(context: Context, modules: Any) -> Table:
    plan = context.plan
    item = bench_parse.BUILTIN_TELEGRAMS[bench_parse.MEMORY_TELEGRAM]
    makers: list[tuple[str, Callable[[], Callable[[Any], object]], Any]] = [
        ("p1-lora", lambda: parse_telegram, item.raw),
    ]
    if modules is not None:
        parsers, specs = modules

        def fresh() -> Callable[[Any], object]:
            parse: Callable[[Any], object] = bench_parse.dsmr_parser_for(
                specs, parsers, item.spec
            ).parse
            return parse

        makers.append(("dsmr_parser", fresh, item.raw.decode("latin-1")))
    rows = []
    for name, make, argument in makers:
        logger.info("parse: memory growth of %s", name)
        rss = bench_parse.rss_growth(make(), argument, plan.parse_rss_parses)
        traced = bench_parse.traced_growth(make(), argument, plan.parse_traced_parses)
        rows.append(
            (
                name,
                _num(rss / 1024),
                _num(traced / 1024),
                _num(traced / plan.parse_traced_parses),
            )
        )
    return Table(
        (
            "parser",
            "RSS growth (KiB)",
            "traced growth (KiB)",
            "traced growth per parse (bytes)",
        ),
        rows,
    )


# ---------------------------------------------------------------------------- 2. frame bytes


def measure_frame_bytes(context: Context) -> Section:
    plan = context.plan
    seconds = plan.profile_s
    section = Section(
        "Bytes on air per telegram",
        [
            f"`p1-lora sim --profile P --path-loss {GOOD_LOSS_DB:g} --duration {seconds:g} "
            f"--seed {context.seed}` for each virtual-meter profile: the size of every update "
            "frame the transmitter put on the air (DATA and FRAGMENT: codec payload, 5-byte "
            "header and 8-byte tag; key updates included), and all of them divided by the "
            "telegrams delivered.",
            "Raw telegram: the meter's telegrams over the same run. ESP32: the seed firmware's "
            "reading frame for the same meter (`tools.esp32_frames.reading_frame_bytes`), which "
            "carries 12 (single-phase) or 24 (three-phase) values in thousandths, not the "
            "telegram.",
        ],
    )
    rows = []
    for profile in PROFILES:
        options = SimOptions(
            duration_s=seconds, path_loss_db=GOOD_LOSS_DB, profile=profile, seed=context.seed
        )
        logger.info("frame bytes: %s", profile)
        sim = Simulation(options, keep_telegrams=1)
        metrics = sim.run()
        sizes = [float(len(raw)) for _, raw in _feed_until(options, seconds)]
        update_bytes = sum(s.nbytes for s in sim.tx_log.sent if s.frame_type in UPDATE_FRAMES)
        delivered = sim.deliveries.count
        esp32_frame = float(reading_frame_bytes(next(telegram_feed(options))[1]))
        frame_median = _metric(metrics, "frame_bytes_median")
        rows.append(
            (
                profile,
                _num(median_of(sizes), 0),
                _num(percentile(sizes, 0.95), 0),
                _num(frame_median, 0),
                _num(_metric(metrics, "frame_bytes_p95"), 0),
                _num(update_bytes / delivered if delivered else None),
                _num(esp32_frame, 0),
                _num(_ratio(median_of(sizes), frame_median)),
                _num(_ratio(esp32_frame, frame_median)),
            )
        )
    section.tables.append(
        Table(
            (
                "meter profile",
                "raw telegram median (bytes)",
                "raw telegram p95 (bytes)",
                "p1-lora frame median (bytes)",
                "p1-lora frame p95 (bytes)",
                "p1-lora on air per delivered telegram (bytes)",
                "ESP32 frame (bytes)",
                "raw / p1-lora (x)",
                "ESP32 / p1-lora (x)",
            ),
            rows,
        )
    )
    return section


def _feed_until(options: SimOptions, seconds: float) -> Iterator[tuple[float, bytes]]:
    for t, raw in telegram_feed(options):
        if t > seconds:
            return
        yield t, raw


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


# ---------------------------------------------------------------------------- 3. + 5. delivery


def measure_delivery(context: Context) -> tuple[Section, Section]:
    """The delivery matrix; its runs also give the latency section."""
    plan = context.plan
    seconds = plan.delivery_s
    delivery = Section(
        "Telegrams delivered per hour, by path loss and sub-band",
        [
            f"`p1-lora sim --path-loss DB --frequency MHZ --duration {seconds:g} "
            f"--seed {context.seed} --baseline esp32 --baseline "
            "esp32-same-channel`: a DSMR 5 virtual "
            "meter (one telegram a second), the real link, codec, crypto and SX127x driver on "
            "the emulator, and the ESP32 firmware's model on an identical channel.",
            "p1-lora delivers telegrams byte for byte (verified by the meter's CRC); the ESP32 "
            "firmware delivers readings of 24 values in thousandths. `esp32` is the firmware as "
            "shipped (868.0 MHz, 17 dBm, every bug of its newest source), "
            "`esp32-same-channel` that on p1-lora's channel and TX power. Duty cycle: the "
            "largest airtime in any sliding hour of "
            "each side's transmission log, over 3600 s. Allowance used by telegrams (p1-lora, "
            "where a duty cycle applies): the airtime of frames carrying telegrams at the final "
            "setting over what the run's allowance left after every other frame (handshake, "
            "tuning, keepalives): the share of the frames the duty cycle allows at that setting "
            "and frame size that were sent (`update_share_of_allowance` in `p1-lora sim "
            "--json`). p1-lora's frames carry the telegrams read since the last one (up to 3, "
            "`link.batch`).",
            "Path losses: 100 dB (a few walls; SF7/BW250 with a large margin), 141 dB (about "
            "SF10/BW125), 147 dB (near the SF12 limit at 14 dBm).",
        ],
    )
    latency = Section(
        "End-to-end latency (link latency on a virtual clock)",
        [
            f"From the delivery runs of section 3 (`p1-lora sim --path-loss DB --frequency MHZ "
            f"--duration {seconds:g} --seed {context.seed}`): for each delivered telegram, the "
            "time from the virtual meter producing it to the receiver delivering it, on the "
            "simulator's virtual clock. It is the *link's* latency (waiting for the budget, airtime, "
            "retransmissions), not the CPU's: serial reading, MQTT and Home Assistant add "
            "their own, small, real-time share.",
        ],
    )
    rows: list[tuple[str, ...]] = []
    latency_rows: list[tuple[str, ...]] = []
    for band, frequency in BANDS:
        for label, loss in PATH_LOSSES:
            options = SimOptions(
                duration_s=seconds, path_loss_db=loss, frequency_hz=frequency, seed=context.seed
            )
            logger.info("delivery: %s band, %s (%g dB)", band, label, loss)
            main, baselines = run_simulations(options, BASELINES)
            runs = [("p1-lora", main), *baselines.items()]
            context.delivery_runs[band, loss] = dict(runs)
            for name, metrics in runs:
                rows.append(_delivery_row(band, loss, name, metrics))
                latency_rows.append(
                    (
                        band,
                        _num(loss, 0),
                        name,
                        _num(_metric(metrics, "latency_ms_p50"), 0),
                        _num(_metric(metrics, "latency_ms_p95"), 0),
                    )
                )
    delivery.tables.append(
        Table(
            (
                "sub-band",
                "path loss (dB)",
                "protocol",
                "delivered per hour (telegrams or readings)",
                "max gap (s)",
                "duty cycle tx (%)",
                "duty cycle rx (%)",
                "over the limit",
                "allowance used by telegrams (%)",
                "final setting",
            ),
            rows,
        )
    )
    latency.tables.append(
        Table(
            ("sub-band", "path loss (dB)", "protocol", "latency p50 (ms)", "latency p95 (ms)"),
            latency_rows,
        )
    )
    return delivery, latency


def _delivery_row(band: str, loss: float, name: str, metrics: SimMetrics) -> tuple[str, ...]:
    per_hour = _metric(metrics, "delivered_per_hour")
    duty_tx = _metric(metrics, "duty_cycle_max_tx")
    duty_rx = _metric(metrics, "duty_cycle_max_rx")
    over = metrics.as_dict().get("budget_exceeded")
    share = _metric(metrics, "update_share_of_allowance")
    return (
        band,
        _num(loss, 0),
        name,
        _num(per_hour),
        _num(_metric(metrics, "max_gap_s")),
        _num(None if duty_tx is None else duty_tx * 100, 2),
        _num(None if duty_rx is None else duty_rx * 100, 2),
        "yes" if over else "no",
        _num(None if share is None else share * 100, 1),
        _setting(metrics),
    )


# ---------------------------------------------------------------------------- 4. convergence


def measure_convergence(context: Context) -> Section:
    """From the delivery runs (every path loss, both protocols) and from several seeds with
    fading on the SF10-ish link (the spread a real, fluctuating channel gives)."""
    plan = context.plan
    seeds = list(range(context.seed, context.seed + plan.convergence_runs))
    section = Section(
        "Cold-start convergence",
        [
            "Both sides start from nothing, p1-lora at its SF12/BW125 rendezvous, the ESP32 "
            "model at SF12 too. First delivery: the first telegram (or reading) delivered; "
            "converged: when the transmitter arrived at the setting it kept to the end of the "
            "run (for the ESP32 model: entered operation at it).",
            "First table: the delivery runs of section 3 (`p1-lora sim --path-loss DB "
            f"--frequency MHZ --duration {plan.delivery_s:g} --seed {context.seed} "
            "--baseline esp32 --baseline esp32-same-channel`).",
            f"Second table: `p1-lora sim --path-loss {CONVERGENCE_LOSS_DB:g} --fading "
            f"{CONVERGENCE_FADING_DB:g} --frequency MHZ --duration {plan.convergence_s:g} "
            f"--seed S` for seeds {seeds[0]}..{seeds[-1]} (per-frame Gaussian fading, so the "
            "seeds differ).",
        ],
    )
    rows = [
        (
            band,
            _num(loss, 0),
            name,
            _num(_metric(metrics, "first_delivery_s")),
            _num(_metric(metrics, "convergence_s")),
            _setting(metrics),
        )
        for (band, loss), runs in context.delivery_runs.items()
        for name, metrics in runs.items()
    ]
    if rows:
        section.tables.append(
            Table(
                (
                    "sub-band",
                    "path loss (dB)",
                    "protocol",
                    "first delivery (s)",
                    "converged (s)",
                    "final setting",
                ),
                rows,
            )
        )
    section.tables.append(_convergence_spread(context, seeds))
    return section


def _convergence_spread(context: Context, seeds: Sequence[int]) -> Table:
    rows = []
    for band, frequency in BANDS:
        firsts: list[float] = []
        converged: list[float] = []
        finals: set[str] = set()
        for seed in seeds:
            options = SimOptions(
                duration_s=context.plan.convergence_s,
                path_loss_db=CONVERGENCE_LOSS_DB,
                fading_db=CONVERGENCE_FADING_DB,
                frequency_hz=frequency,
                seed=seed,
            )
            logger.info("convergence: %s band, seed %d", band, seed)
            metrics = Simulation(options, keep_telegrams=1).run()
            first = _metric(metrics, "first_delivery_s")
            done = _metric(metrics, "convergence_s")
            if first is not None:
                firsts.append(first)
            if done is not None:
                converged.append(done)
            finals.add(_setting(metrics))
        rows.append(
            (
                band,
                str(len(seeds)),
                _num(median_of(firsts)),
                _num(max(firsts, default=None)),
                _num(median_of(converged)),
                _num(max(converged, default=None)),
                ", ".join(sorted(finals)),
            )
        )
    return Table(
        (
            "sub-band",
            "runs (count)",
            "first delivery median (s)",
            "first delivery max (s)",
            "converged median (s)",
            "converged max (s)",
            "final setting",
        ),
        rows,
    )


# ---------------------------------------------------------------------------- 6. CPU


class _CpuClock:
    """Process CPU time spent inside wrapped callables, per name (a name's total includes
    whatever the callable called)."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    def wrap(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.totals[name] = self.totals.get(name, 0.0) + time.process_time() - started

        return timed


class _NullMqtt:
    """The MQTT port of the bridge in the CPU measurement: publishing costs nothing here, so
    the figure is the bridge's own work (parse, discovery planning, state JSON)."""

    def publish(self, topic: str, payload: object, *, retain: bool = False, qos: int = 0) -> bool:
        return True

    def subscribe(self, topic_filter: str, handler: object, *, qos: int = 0) -> None:
        return None


_LINK_METHODS = ("telegram_ready", "frame_received", "tx_done", "tick")


def measure_cpu(context: Context) -> Section:
    plan = context.plan
    seconds = plan.cpu_s
    section = Section(
        "CPU time per telegram",
        [
            f"One run of `p1-lora sim --path-loss {GOOD_LOSS_DB:g} --duration {seconds:g} "
            f"--seed {context.seed}` (DSMR 5, one telegram a second, SF7/BW250 after the "
            "first seconds), with `time.process_time()` accumulated around each side's work: "
            "the link state machine's event methods (protocol, codec, AES-CCM), each "
            "runtime's whole `step` (that plus the SX127x driver talking to the emulated "
            "chip over emulated SPI, which on a Pi is the kernel's spidev instead), and on "
            "the receiver a Home Assistant bridge sink (parsing, discovery planning, state "
            "JSON; publishing to a port that does nothing).",
            "Per telegram: transmitter totals divided by the telegrams the meter produced, "
            "receiver totals by the telegrams delivered. The channel physics (the simulator) "
            "is not counted on either side.",
        ],
    )
    sim = Simulation(SimOptions(duration_s=seconds, path_loss_db=GOOD_LOSS_DB, seed=context.seed))
    clock = _CpuClock()
    bridge = HomeAssistantBridge(_NullMqtt(), DiscoverySettings(link=sim.config))
    bridge.start()
    bridge.telegram = clock.wrap("rx bridge", bridge.telegram)  # type: ignore[method-assign]
    sim.rx.add_sink(bridge)
    for side, runtime, link in (("tx", sim.tx, sim.tx.tx_link), ("rx", sim.rx, sim.rx.rx_link)):
        for method in _LINK_METHODS:
            if hasattr(link, method):
                setattr(link, method, clock.wrap(f"{side} link", getattr(link, method)))
        runtime.step = clock.wrap(f"{side} step", runtime.step)  # type: ignore[method-assign]
    logger.info("cpu: %s of link time", _duration(seconds))
    wall = time.process_time()
    sim.run_until(seconds)
    total = time.process_time() - wall
    read = max(sim.telegrams_read, 1)
    delivered = max(sim.deliveries.count, 1)
    totals = clock.totals

    def per(name: str, count: int) -> str:
        return _num(totals.get(name, 0.0) / count * 1e6, 0)

    section.tables.append(
        Table(
            (
                "side",
                "telegrams (count)",
                "link logic (µs/telegram)",
                "runtime step incl. emulated radio (µs/telegram)",
                "Home Assistant bridge (µs/telegram)",
            ),
            [
                (
                    "transmitter",
                    str(sim.telegrams_read),
                    per("tx link", read),
                    per("tx step", read),
                    "-",
                ),
                (
                    "receiver",
                    str(sim.deliveries.count),
                    per("rx link", delivered),
                    per("rx step", delivered),
                    per("rx bridge", delivered),
                ),
            ],
        )
    )
    section.notes.append(
        f"The whole simulated run (both sides, emulated chips, channel) took {total:.1f} s of "
        f"CPU for {_duration(seconds)} of link time."
    )
    return section


# ---------------------------------------------------------------------------- 7. processes


def measure_e2e(context: Context) -> Section:
    seconds = context.plan.e2e_s
    section = Section(
        "End-to-end latency and CPU of the real processes",
        [
            f"`p1-lora bench e2e --duration {seconds:g} --seed {context.seed}`: the virtual "
            "DSMR 5 meter writes a telegram a second to a pty at 115200 baud (in the bench "
            "process); `p1-lora-tx --radio sim --serial LINK` and `p1-lora-rx --radio sim` run "
            "as separate processes, started like their console scripts (empty config file, "
            "fresh key, own state directories, path loss 100 dB on the loopback radio channel), "
            "the receiver publishing to a broker on a free loopback port (which one: first "
            "table); an MQTT subscriber in the bench process receives the meter states. "
            f"Measured for {_duration(seconds)} of wall time after the first delivery.",
            "Latency: from the moment the telegram's last byte was written to the pty to the "
            "moment the meter state with that telegram's meter timestamp arrived at the "
            "subscriber (both `time.monotonic()` in the bench process), for the telegrams "
            "written after the first delivery that were delivered (the link sends the latest "
            "telegram; any it skipped while the air was busy have no latency). First delivery: "
            "from the meter's first telegram.",
            "CPU: user + system time of each daemon from /proc/PID/stat (all its threads), "
            "from its 'running' log line to the end, divided by the telegrams the meter wrote "
            "(transmitter: it reads every one) or the meter states received (receiver); "
            "start-up CPU (imports, key, state, radio set-up) is the time before that line. "
            "RSS and peak RSS: VmRSS and VmHWM from /proc/PID/status at the end.",
        ],
    )
    logger.info("e2e: real processes for %s", _duration(seconds))
    try:
        result = bench_e2e.measure(bench_e2e.E2eOptions(duration_s=seconds, seed=context.seed))
    except (bench_e2e.E2eError, OSError) as exc:
        raise MeasurementError(f"end-to-end run: {exc}") from None
    for headers, rows in (bench_e2e.latency_table(result), bench_e2e.usage_table(result)):
        section.tables.append(Table(headers, rows))
    section.notes.append(
        f"Both daemons, the broker and the bench process shared this machine's "
        f"{os.cpu_count() or 1} logical cores; on a Pi each daemon has its own, and the "
        "SX127x driver talks to a real chip over spidev instead of the loopback channel."
    )
    return section


# ---------------------------------------------------------------------------- 8. a building


def measure_building(context: Context) -> Section:
    plan = context.plan
    links = ",".join(str(n) for n in plan.building_links)
    section = Section(
        "Many links in one meter room (shared air)",
        [
            f"`p1-lora bench building --links {links} --phase aligned --background "
            f"{plan.building_background} --duration {plan.building_s:g} --seed {context.seed} "
            f"--jobs {plan.building_jobs}`: N independent p1-lora links (own keys, meters and "
            "seeds) in one simulated building: transmitters 60-70 dB apart in the meter room, "
            "each receiver 95-125 dB from its transmitter, drawn cross losses; DSMR 5 meters "
            "that all send on the same second (the hard case); the channel's capture, inter-SF "
            "and foreign-preamble physics and, where named, the LoRaWAN background.",
            "`new` is the link as it is; `legacy` the same code with the air policy before "
            "'Sharing the air' (no listen before talk, no slots), on the same "
            "building. Not connected: links that delivered nothing in the run. Vs solo: the "
            "worst link against the one-link run of the same policy.",
        ],
    )
    todo = [
        bench_building.Case(
            n, "aligned", plan.building_background, policy, plan.building_s, context.seed
        )
        for n in plan.building_links
        for policy in ("new", "legacy")
    ]
    logger.info("building: %d runs of %s", len(todo), _duration(plan.building_s))
    rows = list(bench_building.results(todo, plan.building_jobs))
    solo = {str(r["policy"]): r.get("delivered_per_hour_min") for r in rows if r["links"] == 1}
    table_rows = []
    for row in rows:
        worst, alone = row.get("delivered_per_hour_min"), solo.get(str(row["policy"]))
        versus = (
            float(worst) / float(alone) * 100
            if isinstance(worst, int | float) and isinstance(alone, int | float) and alone
            else None
        )
        table_rows.append(
            (
                str(row["links"]),
                str(row["policy"]),
                _num(row.get("delivered_per_hour_min"), 0),
                _num(row.get("delivered_per_hour_median"), 0),
                _num(versus, 0),
                _num(_percent_of(row.get("duty_cycle_max")), 2),
                _num(row.get("lost_for_good"), 0),
                _num(_percent_of(row.get("occupancy")), 1),
                _num(row.get("first_delivery_max_s"), 1),
            )
        )
    section.tables.append(
        Table(
            (
                "links (count)",
                "air",
                "delivered per hour, worst link (count)",
                "median link (count)",
                "worst vs solo (%)",
                "max duty per node (%)",
                "not connected (count)",
                "channel occupancy (%)",
                "first delivery, slowest link (s)",
            ),
            table_rows,
        )
    )
    return section


def _percent_of(value: object) -> float | None:
    return float(value) * 100 if isinstance(value, int | float) else None


# ---------------------------------------------------------------------------- 9. recorder


def measure_home_assistant(context: Context) -> Section:
    plan = context.plan
    section = Section(
        "Home Assistant state messages and database rows",
        [
            f"`p1-lora bench ha --hours {plan.ha_hours:g} --seed {context.seed}`: the real "
            "Home Assistant bridge publishes that much of a DSMR 5 virtual meter (one telegram "
            "a second) on a virtual clock into a port that counts; rows are entity state "
            "changes Home Assistant's recorder stores (entities enabled by default, and with "
            "every entity enabled). The raw telegram server and raw topic get every telegram "
            "whatever the setting.",
        ],
    )
    logger.info("home assistant: %d settings", len(plan.ha_intervals))
    results = [
        bench_ha.measure(interval, seed=context.seed, hours=plan.ha_hours)
        for interval in plan.ha_intervals
    ]
    section.tables.append(
        Table(
            (
                "state_interval (s)",
                "messages per hour (count)",
                "rows per hour (count)",
                "rows per day (count)",
                "rows per hour, every entity enabled (count)",
            ),
            [
                (
                    _num(g.state_interval_s, 0),
                    _num(g.per_hour(g.messages), 0),
                    _num(g.per_hour(g.rows), 0),
                    _num(g.per_hour(g.rows) * 24, 0),
                    _num(g.per_hour(g.rows_all_entities), 0),
                )
                for g in results
            ],
        )
    )
    section.notes.append("0: every telegram; the default is 5 s (docs/home-assistant.md).")
    return section


# ---------------------------------------------------------------------------- the page


class MeasurementError(RuntimeError):
    """A measurement could not produce a trustworthy number."""


#: Page order of the sections, by key.
SECTIONS: tuple[str, ...] = (
    "parse",
    "frames",
    "delivery",
    "convergence",
    "latency",
    "cpu",
    "e2e",
    "building",
    "ha",
)


def _delivery_and_latency(context: Context) -> dict[str, Section]:
    delivery, latency = measure_delivery(context)
    latency.seconds = None  # derived from the delivery runs, not measured on its own
    return {"delivery": delivery, "latency": latency}


#: What to run, in the order it runs (cheap first, so a broken setup fails fast), and the
#: sections each step produces.
_STEPS: tuple[tuple[str, Callable[[Context], Section | dict[str, Section]]], ...] = (
    ("frames", measure_frame_bytes),
    ("cpu", measure_cpu),
    ("e2e", measure_e2e),
    ("delivery", _delivery_and_latency),
    ("convergence", measure_convergence),  # after delivery: it reports those runs too
    ("parse", measure_parse),
    ("ha", measure_home_assistant),
    ("building", measure_building),
)


def measure_all(context: Context) -> list[Section]:
    """Every section, measured, in page order."""
    found: dict[str, Section] = {}
    for key, step in _STEPS:
        started = time.perf_counter()
        produced = step(context)
        elapsed = time.perf_counter() - started
        group = produced if isinstance(produced, dict) else {key: produced}
        for name, section in group.items():
            if name == key:
                section.seconds = elapsed
            found[name] = section
    return [found[key] for key in SECTIONS]


def render(sections: Sequence[Section], machine: Machine, context: Context, wall_s: float) -> str:
    """The Markdown page."""
    plan = context.plan
    lines = [
        "# p1-lora benchmarks",
        "",
        "<!-- Generated by `p1-lora bench report`; do not edit by hand: run the command. -->",
        "",
        f"Measured on {machine.date} by `{context.command}` ({plan.name} run, seed "
        f"{context.seed}, {wall_s:.0f} s of wall time), p1-lora {machine.version}.",
        "",
        "| machine | |",
        "|---|---|",
        f"| CPU | {machine.cpu} ({machine.cores} logical cores) |",
        f"| Python | {machine.python} |",
        f"| system | {machine.system} |",
        "",
        "Link figures come from the simulator (`p1-lora sim`): the real link state machines, "
        "codec, crypto and SX127x driver on a register-level emulator and a simulated RF "
        "channel, on a virtual clock. Run the same command to check any figure; the seed "
        "makes every simulated run repeatable. The last section runs the real processes "
        "instead, in wall time (`p1-lora bench e2e`).",
        "",
    ]
    for index, section in enumerate(sections, start=1):
        lines += [f"## {index}. {section.title}", ""]
        lines += [f"- {text}" for text in section.method]
        if section.seconds is not None:
            lines.append(f"- Measured in {section.seconds:.1f} s of wall time.")
        lines.append("")
        for table in section.tables:
            lines += [*_table(table), ""]
        lines += [*section.notes, ""] if section.notes else []
    return "\n".join(lines).rstrip() + "\n"


def _table(table: Table) -> list[str]:
    numeric = ["(" in header for header in table.headers]
    out = [
        "| " + " | ".join(table.headers) + " |",
        "|" + "|".join("---:" if n else "---" for n in numeric) + "|",
    ]
    out += ["| " + " | ".join(row) + " |" for row in table.rows]
    return out


def default_output() -> Path | None:
    """BENCHMARKS.md at the root of the source tree this module runs from (an editable
    install), or None when it runs from an installed package."""
    root = Path(__file__).resolve().parent.parent
    project = root / "pyproject.toml"
    try:
        if 'name = "p1-lora"' in project.read_text(encoding="utf-8"):
            return root / "BENCHMARKS.md"
    except OSError:
        pass
    return None


@contextlib.contextmanager
def _quiet_links() -> Iterator[None]:
    """A simulated hour holds thousands of link events the daemons log at INFO: noise here.
    Warnings still show; `--log-level debug` shows everything."""
    package = logging.getLogger("p1lora")
    root_level = logging.getLogger().getEffectiveLevel()
    if root_level <= logging.DEBUG:
        yield
        return
    old_package, old_ours = package.level, logger.level
    package.setLevel(logging.WARNING)
    logger.setLevel(root_level)
    try:
        yield
    finally:
        package.setLevel(old_package)
        logger.setLevel(old_ours)


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `p1-lora bench report`."""
    parser.description = (
        "Measure every figure of BENCHMARKS.md on this machine and write the page: parsing vs "
        "dsmr_parser, bytes on air per telegram, delivery per hour and gaps by path loss in "
        "the 1 % and 10 % sub-bands (vs the ESP32 firmware's model), cold-start "
        "convergence, link latency and CPU time per telegram. A few minutes; --quick takes "
        "seconds and gives rougher numbers."
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="where to write the page (default: BENCHMARKS.md at the repository root)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="shorter simulated runs and fewer parses (for smoke tests)",
    )
    parser.add_argument("--seed", type=int, default=1, help="simulation seed (default 1)")


def _check_output(path: Path) -> str | None:
    if path.exists() and not path.is_file():
        return f"--out {path} is not a regular file"
    parent = path.parent if str(path.parent) else Path()
    if not parent.is_dir():
        return f"--out {path}: directory {parent} does not exist"
    if not os.access(parent, os.W_OK):
        return f"--out {path}: directory {parent} is not writable"
    return None


def _write(path: Path, text: str) -> None:
    """Replace `path` in one step, so a failed run never leaves half a page."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(path)


def run(args: argparse.Namespace) -> int:
    """Measure, render and write the page."""
    out: Path | None = args.out or default_output()
    if out is None:
        logger.error("not running from a source tree: say where to write the page with --out FILE")
        return EXIT_USAGE
    problem = _check_output(out)
    if problem is not None:
        logger.error("%s", problem)
        return EXIT_USAGE
    plan = PLANS["quick" if args.quick else "full"]
    command = "p1-lora bench report" + (" --quick" if args.quick else "")
    if args.seed != 1:
        command += f" --seed {args.seed}"
    context = Context(plan, args.seed, command)
    started = time.perf_counter()
    try:
        with _quiet_links():
            sections = measure_all(context)
    except (MeasurementError, ValueError) as exc:
        logger.error("a measurement failed: %s", exc)
        return EXIT_FAILED
    wall = time.perf_counter() - started
    text = render(sections, machine_info(), context, wall)
    try:
        _write(out, text)
    except OSError as exc:
        logger.error("cannot write %s: %s", out, exc.strerror or exc)
        return EXIT_FAILED
    sys.stdout.write(f"wrote {out} ({len(sections)} sections, {wall:.0f} s)\n")
    return EXIT_OK
