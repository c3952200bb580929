"""`p1-lora demo`'s options: the arguments, and their check into a `DemoOptions`.

Every problem raises `UsageError` with a message that names the option (exit code 2).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from p1lora.transmitter.meter_profiles import PROFILES

__all__ = [
    "DEFAULT_PATH_LOSS_DB",
    "EXTERNAL_BASE_TOPIC",
    "EXTERNAL_BRIDGE_NAME",
    "DemoOptions",
    "UsageError",
    "configure",
    "options_from_args",
]

#: Base topic and bridge name of a demo on the user's own broker (never the real ones).
EXTERNAL_BASE_TOPIC: Final = "p1lora-demo"
EXTERNAL_BRIDGE_NAME: Final = "P1-LoRa demo bridge"
DEFAULT_PATH_LOSS_DB: Final = 100.0

EPILOG: Final = """\
examples:
  p1-lora demo                          live view until Ctrl-C
  p1-lora demo --duration 60            stop by itself after a minute
  p1-lora demo --headless --duration 30 no view; summary at the end, exit 0 if it worked
  p1-lora demo --path-loss 140          a longer link: watch auto-tune settle on a slower SF
  p1-lora demo --meter-profile fluvius  a Belgian meter (peak demand, gas and water)
  p1-lora demo --mqtt-host homeassistant.local --mqtt-username demo \\
               --mqtt-password-file ~/.p1lora-demo-password
                                        watch the entities appear in your Home Assistant
                                        (removed again at the end unless --keep-entities)

On your own broker the demo uses the base topic p1lora-demo and the bridge name "P1-LoRa demo
bridge", so it cannot disturb a real p1-lora installation on the same broker.

exit codes: 0 telegrams were delivered end to end; 1 none were, or a component failed;
2 bad arguments."""


class UsageError(Exception):
    """A bad option (exit code 2)."""


@dataclass(frozen=True)
class DemoOptions:
    """Checked options of one demo run."""

    duration_s: float | None = None
    headless: bool = False
    json: bool = False
    broker: str = "auto"
    mqtt_host: str | None = None
    mqtt_port: int = 1883
    mqtt_username: str | None = None
    mqtt_password_file: Path | None = None
    mqtt_password: str | None = field(default=None, repr=False)
    keep_entities: bool = False
    path_loss_db: float = DEFAULT_PATH_LOSS_DB
    meter_profile: str = "dsmr5"
    sim_port: int | None = None
    raw_port: int | None = None
    keep_temp: bool = False
    log_level: str = "info"

    @property
    def external(self) -> bool:
        return self.mqtt_host is not None

    @property
    def child_log_level(self) -> str:
        """The programs log at least at INFO: the event list shows their INFO lines (link
        state changes, auto-tune steps) whatever this command's own --log-level is."""
        return "debug" if self.log_level == "debug" else "info"


def configure(parser: argparse.ArgumentParser) -> None:
    """Add the `p1-lora demo` arguments."""
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (
        "Run the whole bridge on this machine without hardware: a virtual meter on a pty, "
        "p1-lora-tx and p1-lora-rx over a simulated radio, a real MQTT broker, and a live view "
        "of what Home Assistant would discover, the values, and the link (handshake, auto-tune, "
        "RSSI/SNR, airtime budget). Ctrl-C stops it cleanly."
    )
    parser.epilog = EPILOG
    run_group = parser.add_argument_group("run")
    run_group.add_argument(
        "--duration",
        metavar="SECONDS",
        type=float,
        help="stop by itself after this many seconds (default: run until Ctrl-C)",
    )
    run_group.add_argument(
        "--headless",
        action="store_true",
        help="no live view: print a summary at the end; exit 0 only if telegrams were "
        "delivered end to end",
    )
    run_group.add_argument(
        "--json", action="store_true", help="print the summary at the end as one JSON object"
    )
    run_group.add_argument(
        "--keep-temp",
        action="store_true",
        help="keep the temporary directory (logs, link-quality logs, key, state) and print "
        "where it is",
    )
    broker = parser.add_argument_group("broker")
    broker.add_argument(
        "--broker",
        choices=("auto", "mosquitto", "embedded"),
        default=None,
        help="the demo's own broker: mosquitto when installed, else the embedded one (amqtt, "
        "the demo extra; auto, the default); or force one",
    )
    broker.add_argument(
        "--mqtt-host",
        metavar="HOST",
        help="use this existing broker instead (e.g. your Home Assistant's)",
    )
    broker.add_argument(
        "--mqtt-port",
        metavar="PORT",
        type=int,
        help="port of --mqtt-host (default 1883)",
    )
    broker.add_argument("--mqtt-username", metavar="USER", help="user name at --mqtt-host")
    broker.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="file whose first line is the password at --mqtt-host (never a flag: the process "
        "list is public)",
    )
    broker.add_argument(
        "--keep-entities",
        action="store_true",
        help="with --mqtt-host: leave the demo's devices in Home Assistant at the end (default: "
        "remove its retained discovery configs and states)",
    )
    sim = parser.add_argument_group("simulation")
    sim.add_argument(
        "--path-loss",
        metavar="DB",
        type=float,
        default=DEFAULT_PATH_LOSS_DB,
        help="path loss between the two radios in dB (default 100: a few walls; about 141 "
        "gives SF10, 147 is near the SF12 limit)",
    )
    sim.add_argument(
        "--meter-profile",
        metavar="PROFILE",
        choices=tuple(PROFILES),
        default="dsmr5",
        help=f"the virtual meter: {', '.join(PROFILES)} (default dsmr5)",
    )
    sim.add_argument(
        "--sim-port",
        metavar="PORT",
        type=int,
        help="UDP port of the simulated channel (default: a free one, private to this run)",
    )
    sim.add_argument(
        "--raw-port",
        metavar="PORT",
        type=int,
        help="also let p1-lora-rx serve the rebuilt telegrams on this TCP port (for Home "
        "Assistant's DSMR integration)",
    )


def _port(value: int | None, flag: str) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise UsageError(f"{flag}: {value} is not a port number (1-65535)")
    return value


def _read_password(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            data = handle.read(4097)
    except OSError as exc:
        raise UsageError(
            f"--mqtt-password-file: cannot read {path}: {exc.strerror or exc}"
        ) from None
    lines = data.decode("utf-8", "replace").splitlines()
    password = lines[0].strip() if lines else ""
    if not password or len(data) > 4096:
        raise UsageError(f"--mqtt-password-file: {path} does not hold a password on its first line")
    return password


def options_from_args(args: argparse.Namespace) -> DemoOptions:
    """Check the arguments (`UsageError` with a message naming the option)."""
    duration = args.duration
    if duration is not None and not 0 < duration <= 30 * 86400:
        raise UsageError(f"--duration: {duration:g} s must be more than 0 (and at most 30 days)")
    if not 0 <= args.path_loss <= 250:
        raise UsageError(f"--path-loss: {args.path_loss:g} dB is outside 0..250 dB")
    external = args.mqtt_host is not None
    if external and not args.mqtt_host.strip():
        raise UsageError("--mqtt-host: the host name is empty")
    if external and args.broker is not None:
        raise UsageError(
            "--broker chooses the demo's own broker; with --mqtt-host the demo uses yours"
        )
    if not external:
        for flag, value in (
            ("--mqtt-port", args.mqtt_port),
            ("--mqtt-username", args.mqtt_username),
            ("--mqtt-password-file", args.mqtt_password_file),
            ("--keep-entities", args.keep_entities or None),
        ):
            if value is not None:
                raise UsageError(f"{flag} applies to an existing broker: give --mqtt-host too")
    if args.mqtt_password_file is not None and args.mqtt_username is None:
        raise UsageError("--mqtt-password-file needs --mqtt-username")
    password_file = (
        Path(args.mqtt_password_file).expanduser().absolute()
        if args.mqtt_password_file is not None
        else None
    )
    password = _read_password(password_file) if password_file is not None else None
    return DemoOptions(
        duration_s=duration,
        headless=args.headless,
        json=args.json,
        broker=args.broker or "auto",
        mqtt_host=args.mqtt_host.strip() if external else None,
        mqtt_port=_port(args.mqtt_port, "--mqtt-port") or 1883,
        mqtt_username=args.mqtt_username,
        mqtt_password_file=password_file,
        mqtt_password=password,
        keep_entities=args.keep_entities,
        path_loss_db=args.path_loss,
        meter_profile=args.meter_profile,
        sim_port=_port(args.sim_port, "--sim-port"),
        raw_port=_port(args.raw_port, "--raw-port"),
        keep_temp=args.keep_temp,
        log_level=args.log_level or "info",
    )
