"""What the doctor checks against: the daemon's config file (or flags alone for a try-out with
`--radio sim`), reduced to the few facts the checks need.

The config goes through the same loader and cross-checks as the daemon (`load_config` with the
tx or rx option table), so "config valid" here means the daemon would start with it. Flags
given next to a config file override it (e.g. `--radio sim` to try a real config without the
HAT).
"""

from __future__ import annotations

import argparse
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from p1lora.common.regions import Region, RegionError, get_region
from p1lora.hardware.boards import BoardPins, get_board, parse_pins
from p1lora.service.config import Config, ConfigError, load_config
from p1lora.service.options import LinkSection, RadioSection, board_pins
from p1lora.tools.config_command import infer_role, table_for
from p1lora.tools.doctor.findings import Finding, failed, passed
from p1lora.transmitter.options import MeterSection, SerialSection

__all__ = ["DoctorSetup", "flag_pins", "load_setup"]

_DEFAULT_SERIAL_MODE = "auto"


@dataclass(frozen=True, slots=True)
class DoctorSetup:
    """The facts the checks need, from the config file and/or the flags."""

    role: str
    backend: str
    pins: BoardPins | None
    key_file: Path | None
    region: Region
    frequency_hz: int
    fixed_sf: int | None = None
    serial_port: Path | None = None
    serial_mode: str = _DEFAULT_SERIAL_MODE
    #: The transmitter reads a simulated meter or a capture (no P1 port to check).
    meter_source: str | None = None
    sim_faults: frozenset[str] = field(default_factory=frozenset)
    dev_dir: Path = Path("/dev")
    p1_seconds: float = 35.0


def _peek(path: Path) -> Mapping[str, object] | None:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def flag_pins(args: argparse.Namespace) -> BoardPins | None:
    """The wiring given by `--pins` or `--board` (ValueError naming the problem), else None."""
    if args.pins:
        return parse_pins(args.pins)
    if args.board:
        return get_board(args.board)
    return None


def _frequency_hz(region: Region, mhz: float | None) -> int:
    return round(mhz * 1e6) if mhz is not None else region.default_frequency_hz


def _from_config(args: argparse.Namespace, path: Path, config: Config) -> DoctorSetup:
    radio = RadioSection.of(config)
    region = get_region(str(args.region or radio.region))
    mhz = args.frequency if args.frequency is not None else radio.frequency
    fixed_sf = radio.fixed_sf if radio.mode == "fixed" else None
    role = config.table.role
    serial = SerialSection.of(config) if role == "tx" else None
    meter = MeterSection.of(config) if role == "tx" and not args.serial else None
    return DoctorSetup(
        role=role,
        backend=args.radio or radio.backend,
        pins=flag_pins(args) or board_pins(config),
        key_file=args.key_file or LinkSection.of(config).key_file,
        region=region,
        frequency_hz=_frequency_hz(region, mhz),
        fixed_sf=fixed_sf,
        serial_port=args.serial or (serial.port if serial else None),
        serial_mode=serial.mode if serial else _DEFAULT_SERIAL_MODE,
        meter_source=meter.source if meter else None,
        sim_faults=frozenset(args.sim_fault or ()),
        dev_dir=args.dev_dir,
        p1_seconds=args.p1_seconds,
    )


def _from_flags(args: argparse.Namespace) -> DoctorSetup:
    region = get_region(args.region or "EU868")
    return DoctorSetup(
        role=args.role or ("tx" if args.serial else "rx"),
        backend=args.radio or "sx127x",
        pins=flag_pins(args),
        key_file=args.key_file,
        region=region,
        frequency_hz=_frequency_hz(region, args.frequency),
        serial_port=args.serial,
        sim_faults=frozenset(args.sim_fault or ()),
        dev_dir=args.dev_dir,
        p1_seconds=args.p1_seconds,
    )


def load_setup(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> tuple[DoctorSetup | None, Finding]:
    """The setup and the "config" finding; None when the config (or a flag) is unusable."""
    env = os.environ if environ is None else environ
    path: Path | None = args.config_file or args.config
    try:
        if path is None:
            setup = _from_flags(args)
            if setup.backend == "sx127x" and setup.pins is None:
                return None, failed(
                    "config",
                    "no config file and no --board/--pins",
                    "give the daemon's config file (p1-lora doctor /etc/p1-lora/tx.toml), or "
                    "--board NAME, or --radio sim to try the doctor without hardware",
                    "config-file",
                )
            return setup, passed("config", f"no config file: checking {setup.backend} from flags")
        path = path.expanduser()
        role = args.role or infer_role(path, _peek(path))
        if role is None:
            return None, failed(
                "config",
                f"cannot tell whether {path} is for p1-lora-tx or p1-lora-rx",
                "give --role tx or --role rx",
                "config-file",
            )
        table = table_for(role)
        config = load_config(table, None, env, path=path)
        setup = _from_config(args, path, config)
    except ConfigError as exc:
        return None, failed(
            "config",
            f"{path}: " + "; ".join(exc.problems),
            f"fix the file (p1-lora config check {path} explains each problem)",
            "config-file",
        )
    except (ValueError, RegionError) as exc:
        return None, failed("config", str(exc), "fix the flag", "config-file")
    return setup, passed("config", f"{path} is a valid {table.program} configuration")
