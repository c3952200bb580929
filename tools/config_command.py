"""`p1-lora config check FILE [--role tx|rx]`: validate a daemon's config without starting it.

Runs exactly the checks a daemon runs at start (the option table, the cross-checks against the
region's rules) plus the files the config names (key file format and permissions, TLS files,
the MQTT password file, a capture to replay), and prints the effective configuration with every
value's origin and secrets redacted, ready to paste into a bug report. It never opens a radio,
a serial port or a network connection.

The role is inferred when not given: sections only one daemon has (`[serial]`/`[meter]`:
transmitter; `[mqtt]`/`[homeassistant]`/`[raw]`: receiver), else the file name (tx.toml,
rx.toml, p1-lora-rx.toml ...).
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from p1lora.receiver.options import RX_OPTIONS, MqttSection
from p1lora.service.bounded_read import read_regular_file
from p1lora.service.config import Config, ConfigError, OptionTable, load_config
from p1lora.service.keyfile import KeyFileError, read_key_file
from p1lora.service.options import LinkSection
from p1lora.transmitter.capture_replay import CaptureReplay, ReplayError
from p1lora.transmitter.options import TX_OPTIONS, VIRTUAL_METER, MeterSection, SerialSection

__all__ = ["configure", "infer_role", "run", "table_for"]

logger = logging.getLogger(__name__)

EPILOG: Final = """\
examples:
  p1-lora config check /etc/p1-lora/rx.toml
  p1-lora config check my.toml --role tx
  p1-lora config check /etc/p1-lora/tx.toml --ignore-env

Environment variables (P1LORA_*) are applied as the daemon would, unless --ignore-env.
Exit codes: 0 valid, 2 invalid (each problem is logged with its key) or bad arguments."""

#: Sections only one daemon has -> that daemon's role.
_ROLE_SECTIONS: Final = {
    "serial": "tx",
    "meter": "tx",
    "mqtt": "rx",
    "homeassistant": "rx",
    "raw": "rx",
}
_NAME_ROLE = re.compile(r"(?:^|[^a-z])(tx|rx)(?:[^a-z]|$)")


def table_for(role: str) -> OptionTable:
    """The option table of "tx" or "rx"."""
    tables = {"tx": TX_OPTIONS, "rx": RX_OPTIONS}
    if role not in tables:
        raise ValueError(f"role must be tx or rx, not {role!r}")
    return tables[role]


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `p1-lora config` arguments (one action: check)."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = "Check a p1-lora-tx or p1-lora-rx config file without starting it."
    parser.epilog = EPILOG
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    check = actions.add_parser(
        "check",
        help="validate FILE and print the effective configuration (secrets redacted)",
        description="Validate FILE and print the effective configuration (secrets redacted).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("file", metavar="FILE", help="the TOML config file to check")
    check.add_argument(
        "--role",
        choices=("tx", "rx"),
        help="whose config it is (default: inferred from its sections or file name)",
    )
    check.add_argument(
        "--ignore-env",
        action="store_true",
        help="ignore P1LORA_* environment variables (check the file alone)",
    )


def infer_role(path: Path, document: Mapping[str, object] | None) -> str | None:
    """ "tx"/"rx" from the sections of `document`, else from the file name; None if unclear."""
    roles = {_ROLE_SECTIONS[s] for s in (document or {}) if s in _ROLE_SECTIONS}
    if len(roles) == 1:
        return roles.pop()
    if len(roles) > 1:
        return None
    found = {m.group(1) for m in _NAME_ROLE.finditer(path.name.lower())}
    return found.pop() if len(found) == 1 else None


def _peek(path: Path) -> Mapping[str, object] | None:
    """The document if it parses (role inference only; the real load reports problems)."""
    try:
        return tomllib.loads(read_regular_file(path, 1024 * 1024).data.decode("utf-8"))
    # UnicodeDecodeError, TOMLDecodeError and UnsuitableFileError (a FIFO, /dev/zero) are
    # ValueErrors; tomllib recurses without a depth limit.
    except (OSError, ValueError, RecursionError):
        return None


def _file_problems(config: Config, environ: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Problems (errors) and warnings about the files the config names."""
    errors: list[str] = []
    warnings: list[str] = []
    _key_file_problems(config, errors, warnings)
    if config.table.role == "tx":
        _meter_file_problems(config, errors, warnings)
    if config.table.role == "rx" and MqttSection.of(config).enabled:
        _mqtt_file_problems(config, environ, errors, warnings)
    return errors, warnings


def _key_file_problems(config: Config, errors: list[str], warnings: list[str]) -> None:
    key_file = LinkSection.of(config).key_file
    if key_file is None:
        warnings.append(
            "link.key_file is not set: the daemon then needs the key as the systemd credential "
            "p1lora-key (LoadCredential=) or --key-file"
        )
    elif key_file.exists() and not os.access(key_file, os.R_OK):
        warnings.append(
            f"link.key_file: {key_file} is not readable by this user, so it was not checked "
            "(fine if the service gets it through LoadCredential=)"
        )
    else:
        try:
            key = read_key_file(key_file)
        except KeyFileError as exc:
            errors.append(f"link.key_file: {exc}")
        else:
            logger.info("key file %s: network id %s", key_file, key.network_id)


def _meter_file_problems(config: Config, errors: list[str], warnings: list[str]) -> None:
    """The transmitter's capture file and serial port."""
    source = MeterSection.of(config).source
    if source is not None and source.strip().lower() != VIRTUAL_METER:
        try:
            CaptureReplay.from_file(source)
        except ReplayError as exc:
            errors.append(f"meter.source: {exc}")
    port = SerialSection.of(config).port
    if port is not None and not port.exists():
        warnings.append(
            f"serial.port: {port} does not exist now (fine if the P1 cable is plugged in "
            "later; the daemon waits for it)"
        )


def _mqtt_file_problems(
    config: Config, environ: Mapping[str, str], errors: list[str], warnings: list[str]
) -> None:
    """The receiver's TLS and password files; the password itself when its file is readable."""
    unchecked = False
    for name in ("mqtt.ca_file", "mqtt.cert_file", "mqtt.key_file", "mqtt.password_file"):
        path = config.opt_path(name)  # the option's name is also the message's
        if path is None:
            continue
        if not path.is_file():
            errors.append(f"{name}: {path} does not exist or is not a file")
            unchecked |= name == "mqtt.password_file"
        elif not os.access(path, os.R_OK):
            warnings.append(f"{name}: {path} is not readable by this user")
            unchecked |= name == "mqtt.password_file"
    if not unchecked:
        errors.extend(_password_problems(config, environ))


def _password_problems(config: Config, environ: Mapping[str, str]) -> list[str]:
    """Get the broker password exactly as p1-lora-rx does at start, so that config check gives
    the same warnings (a world-readable config file holding the password, or password file)
    and the same errors (an empty password file). The daemon logs those warnings itself."""
    from p1lora.receiver.cli import broker_password  # noqa: PLC0415 - rx only; paho is heavy

    try:
        broker_password(config, environ)
    except ConfigError as exc:
        return list(exc.problems)
    return []


def _check(path: Path, table: OptionTable, environ: Mapping[str, str]) -> int:
    try:
        config = load_config(table, None, environ, path=path)
    except ConfigError as exc:
        for problem in exc.problems:
            logger.error("%s: %s", path, problem)
        logger.error("%s is NOT a valid %s configuration", path, table.program)
        return 2
    errors, warnings = _file_problems(config, environ)
    for note in config.notes:
        logger.info("%s", note)
    for warning in warnings:
        logger.warning("%s: %s", path, warning)
    for error in errors:
        logger.error("%s: %s", path, error)
    if errors:
        logger.error("%s is NOT a valid %s configuration", path, table.program)
        return 2
    print(config.render(redact=True), end="")
    print(f"# OK: {path} is a valid {table.program} configuration")
    return 0


def run(args: argparse.Namespace) -> int:
    """Check the file; see the module docstring."""
    path = Path(args.file).expanduser()
    if not path.is_file():
        if path.is_dir():
            what = "is a directory"
        elif path.exists():
            what = "is not a regular file (give the TOML config file itself)"
        else:
            what = "does not exist"
        logger.error("%s %s", path, what)
        return 2
    role: str | None = args.role
    if role is None:
        role = infer_role(path, _peek(path))
        if role is None:
            logger.error(
                "cannot tell whether %s is for p1-lora-tx or p1-lora-rx (no [serial]/[meter] "
                "or [mqtt]/[raw] section, and the name does not say): give --role tx or --role rx",
                path,
            )
            return 2
        logger.info("checking %s as a %s config", path, table_for(role).program)
    environ: Mapping[str, str] = {} if args.ignore_env else os.environ
    return _check(path, table_for(role), environ)
