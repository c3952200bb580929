"""`p1-lora bench NAME`: benchmarks that print tables.

Benchmarks are commands, not timed tests: timing assertions in a test suite are flaky on shared
CI machines, while a table a developer runs on the target hardware is informative. One table maps
each benchmark to the module that implements it (imported only when it runs), so adding one is
one row. A benchmark module provides `configure(parser)` and `run(args) -> int`, like every
`p1-lora` subcommand.
"""

from __future__ import annotations

import argparse
import importlib
from typing import NamedTuple

__all__ = ["BENCHMARKS", "Benchmark", "configure", "run"]


class Benchmark(NamedTuple):
    module: str
    summary: str


#: benchmark name -> implementing module and one-line summary.
BENCHMARKS: dict[str, Benchmark] = {
    "parse": Benchmark(
        "p1lora.tools.bench_parse",
        "telegram parser vs dsmr_parser: telegrams/s and memory growth",
    ),
    "channel": Benchmark(
        "p1lora.tools.bench_channel",
        "simulated channel speed: N transmitters at 1 Hz in one meter room, virtual vs wall time",
    ),
    "codec": Benchmark(
        "p1lora.tools.bench_codec",
        "lossless codec: update/key bytes, frame size, encode/decode time",
    ),
    "e2e": Benchmark(
        "p1lora.tools.bench_e2e",
        "real processes: latency pty -> MQTT, CPU per telegram and RSS of each daemon",
    ),
    "ha": Benchmark(
        "p1lora.tools.bench_ha",
        "Home Assistant state messages and recorder rows per hour of each state_interval",
    ),
    "building": Benchmark(
        "p1lora.tools.bench_building",
        "N links in one meter room: delivery, duty, occupancy, new air policy vs legacy",
    ),
    "report": Benchmark(
        "p1lora.tools.bench_report",
        "measure everything and regenerate BENCHMARKS.md (--quick for a short run)",
    ),
}


def _listing() -> str:
    width = max(len(name) for name in BENCHMARKS)
    rows = "\n".join(
        f"  {name:<{width}}  {entry.summary}" for name, entry in sorted(BENCHMARKS.items())
    )
    return f"benchmarks:\n{rows}\n\nRun 'p1-lora bench NAME --help' for a benchmark's options."


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of `p1-lora bench`."""
    parser.description = "Run a benchmark and print its table."
    parser.epilog = _listing()
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("name", choices=sorted(BENCHMARKS), metavar="NAME", help="benchmark to run")
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        metavar="...",
        help="options of that benchmark (see 'p1-lora bench NAME --help')",
    )


def run(args: argparse.Namespace) -> int:
    """Run the named benchmark with its own options."""
    entry = BENCHMARKS[args.name]
    module = importlib.import_module(entry.module)
    parser = argparse.ArgumentParser(prog=f"p1-lora bench {args.name}", description=entry.summary)
    module.configure(parser)
    code: int = module.run(parser.parse_args(args.options))
    return code
