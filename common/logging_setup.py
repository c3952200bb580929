"""Logging for every command: plain lines on stderr.

On a Pi the daemons run under systemd, and journald adds timestamps and the unit name, so the
format carries only level, logger and message. Secrets are never passed to loggers in the first
place; `redact` exists for the few places that show a config back to the user.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

__all__ = ["LOG_LEVELS", "add_logging_arguments", "redact", "setup_logging"]

LOG_LEVELS = ("debug", "info", "warning", "error")


def add_logging_arguments(parser: argparse.ArgumentParser) -> None:
    """Add `--log-level` (also read from P1LORA_LOG_LEVEL)."""
    parser.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=None,
        help="log verbosity on stderr (default: info, or $P1LORA_LOG_LEVEL)",
    )


def setup_logging(level: str | None = None) -> None:
    """Send log records to stderr as `LEVEL logger: message`."""
    chosen = (level or os.environ.get("P1LORA_LOG_LEVEL") or "info").lower()
    if chosen not in LOG_LEVELS:
        chosen = "info"
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(chosen.upper())


def redact(value: object) -> str:
    """Show that a secret is set without showing it."""
    return "<set>" if value else "<unset>"
