"""`p1-lora`: the tool command.

One table maps each subcommand to the module that implements it, so that `p1-lora --help`
stays fast (modules are imported only when their subcommand runs) and a new subcommand is one
row. Each module provides `configure(parser)` to add its arguments and `run(args) -> int`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NamedTuple

from p1lora.common.logging_setup import add_logging_arguments, setup_logging

__all__ = ["SUBCOMMANDS", "main"]


class Subcommand(NamedTuple):
    module: str
    summary: str


#: subcommand name -> implementing module and one-line summary (shown in `p1-lora --help`).
SUBCOMMANDS: dict[str, Subcommand] = {
    "parse": Subcommand(
        "p1lora.tools.parse_command", "parse P1 telegrams from a file or stdin to JSON"
    ),
    "meter": Subcommand(
        "p1lora.transmitter.meter_command", "run a virtual smart meter (pty or stdout)"
    ),
    "airtime": Subcommand(
        "p1lora.tools.airtime_command", "LoRa time on air and legal send intervals"
    ),
    "sim": Subcommand(
        "p1lora.tools.sim_command", "simulate a whole link on a virtual clock and report"
    ),
    "keygen": Subcommand("p1lora.tools.keygen_command", "write a new pre-shared key file"),
    "config": Subcommand(
        "p1lora.tools.config_command", "check a p1-lora-tx/p1-lora-rx config file"
    ),
    "doctor": Subcommand(
        "p1lora.tools.doctor_command", "check wiring, chip, key and P1 port of a p1-lora Pi"
    ),
    "survey": Subcommand(
        "p1lora.tools.survey_command", "measure the link at every setting (run on both Pis)"
    ),
    "linkreport": Subcommand("p1lora.receiver.linkreport_command", "summarise a link-quality log"),
    "bench": Subcommand("p1lora.tools.bench_command", "benchmarks that print tables"),
    "demo": Subcommand(
        "p1lora.tools.demo.command", "run the whole bridge locally without hardware"
    ),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="p1-lora",
        description="p1-lora tool command: utilities around the p1-lora-tx/p1-lora-rx bridge.",
    )
    add_logging_arguments(parser)
    sub = parser.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)
    for name, entry in SUBCOMMANDS.items():
        sub.add_parser(name, help=entry.summary, add_help=False)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `p1-lora`; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    top = build_parser()
    # Parse only up to the subcommand name, then let the subcommand's own parser do the rest so
    # that `p1-lora SUB --help` shows the subcommand's full help.
    known, rest = top.parse_known_args(args_list)
    name: str = known.subcommand
    entry = SUBCOMMANDS[name]
    module = importlib.import_module(entry.module)
    parser = argparse.ArgumentParser(prog=f"p1-lora {name}", description=entry.summary)
    add_logging_arguments(parser)
    module.configure(parser)
    args = parser.parse_args(rest)
    args.log_level = args.log_level or known.log_level
    setup_logging(args.log_level)
    try:
        code: int = module.run(args)
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
