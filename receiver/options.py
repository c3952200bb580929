"""The options only `p1-lora-rx` has: `[mqtt]`, `[homeassistant]` and `[raw]`, its option table,
and the typed sections its code reads them through.

The `[mqtt]` rows that describe the broker connection are built from `MqttConfig`'s fields
(their metadata holds the help texts and checks), so the MQTT settings are defined once; only
`enabled` and `password_file` (how the daemon gets the password, not what the publisher needs)
are rows of their own here. The shared rows and checks come from `p1lora.service.options`.
"""

from __future__ import annotations

import dataclasses
import errno
import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Final

from p1lora.receiver.mqtt_config import OPTION, MqttConfig, MqttConfigError
from p1lora.service.config import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    PATH,
    STRING,
    Config,
    Exclusive,
    Kind,
    Option,
    OptionDetails,
    in_range,
    not_empty,
    port_number,
)
from p1lora.service.options import Section, daemon_table

__all__ = [
    "MQTT_PASSWORD_CREDENTIAL",
    "RX_OPTIONS",
    "HomeAssistantSection",
    "MqttSection",
    "RawSection",
    "mqtt_config",
    "raw_listen_problem",
]

#: systemd credential name (LoadCredential=NAME:PATH in the units).
MQTT_PASSWORD_CREDENTIAL: Final = "p1lora-mqtt-password"  # noqa: S105 - a name, not a secret


# ---------------------------------------------------------------------------------- checks

_HOST_LABEL: Final = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")
_NUMERIC: Final = re.compile(r"[0-9]+")


def _listen_address(value: str) -> str | None:
    """An IP address or a host name, checked by its form only (no DNS lookup at start).

    Without this, a typo such as 999.1.1.1 only shows when the server binds, as a name
    resolution error; all-numeric dotted names are taken as IPv4 addresses, as the resolver
    would, so they must be valid ones.
    """
    if not value.strip():
        return "must not be empty"
    if ":" in value:
        try:
            ipaddress.IPv6Address(value)
        except ValueError:
            return f"{value} is not an IPv6 address"
        return None
    labels = value.removesuffix(".").split(".")
    if all(_NUMERIC.fullmatch(label) for label in labels):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            return (
                f"{value} is not an IPv4 address (four numbers 0..255, such as 0.0.0.0 or "
                "192.168.1.10)"
            )
        return None
    if len(value) > 253 or not all(_HOST_LABEL.fullmatch(label) for label in labels):
        return f"{value!r} is not an IP address or host name"
    return None


def _expire_after(value: int) -> str | None:
    if value == 0 or 60 <= value <= 86_400:
        return None
    return f"{value} s is not 0 (off) or 60..86400 s"


# ---------------------------------------------------------------------------------- rows

#: The option kind of a `MqttConfig` field, by its annotation (without "| None").
_KINDS: Final[dict[str, Kind]] = {"str": STRING, "int": INTEGER, "bool": BOOLEAN, "Path": PATH}


def _mqtt_field_row(field: dataclasses.Field[Any]) -> Option:
    details: OptionDetails = field.metadata[OPTION]
    kind = _KINDS[str(field.type).removesuffix(" | None")]
    # A computed default (the client id from the host name) shows as "not set" in the config.
    default = None if field.default is dataclasses.MISSING else field.default
    return Option("mqtt", field.name, kind, default, **details)


_MQTT_ENABLED: Final = Option(
    "mqtt",
    "enabled",
    BOOLEAN,
    True,
    "publish to an MQTT broker (Home Assistant discovery and state)",
)
_MQTT_PASSWORD_FILE: Final = Option(
    "mqtt",
    "password_file",
    PATH,
    None,
    "read the broker password from this file (first line) instead",
    metavar="FILE",
    sample=Path("/etc/p1-lora/mqtt-password"),
)


def _mqtt_rows() -> Iterator[Option]:
    yield _MQTT_ENABLED
    for field in dataclasses.fields(MqttConfig):
        if OPTION in field.metadata:
            yield _mqtt_field_row(field)
            if field.name == "password":
                yield _MQTT_PASSWORD_FILE


#: The `MqttConfig` fields that are options (the rest are timings the user does not set).
_MQTT_FIELDS: Final = tuple(f.name for f in dataclasses.fields(MqttConfig) if OPTION in f.metadata)

_HOME_ASSISTANT: Final = (
    Option(
        "homeassistant",
        "expire_after",
        INTEGER,
        600,
        "meter values become unavailable in Home Assistant after this many seconds without "
        "a telegram (0: never; otherwise at least 60, and more than the slowest delivery "
        "interval: raised automatically when the transmitter reports a longer one)",
        check=_expire_after,
        metavar="SECONDS",
    ),
    Option(
        "homeassistant",
        "state_interval",
        NUMBER,
        5.0,
        "at most one state message per meter device this often: measurements (power, "
        "voltage) refresh every SECONDS, energy registers when they change, tariff and "
        "breaker changes at once (0: every telegram; the raw server and topic always get "
        "every telegram); keeps Home Assistant's database small",
        check=in_range(0, 300, "s"),
        metavar="SECONDS",
    ),
    Option(
        "homeassistant",
        "bridge_name",
        STRING,
        "P1-LoRa bridge",
        "name of the bridge's own device in Home Assistant (link diagnostics, commands)",
        check=not_empty,
        metavar="NAME",
    ),
)

_RAW: Final = (
    Option(
        "raw",
        "port",
        INTEGER,
        None,
        "serve the rebuilt telegrams on this TCP port, like a network P1 cable (Home "
        "Assistant's DSMR integration, DSMR Reader)",
        check=port_number,
        metavar="PORT",
        sample=8088,
    ),
    Option(
        "raw",
        "host",
        STRING,
        "0.0.0.0",  # noqa: S104 - Home Assistant usually runs on another machine
        "address the raw telegram server listens on (0.0.0.0: every interface; 127.0.0.1: "
        "this machine only)",
        check=_listen_address,
        metavar="ADDRESS",
    ),
    Option(
        "raw",
        "max_clients",
        INTEGER,
        16,
        "connections the raw telegram server accepts at once",
        check=in_range(1, 1000),
        metavar="N",
    ),
    Option(
        "raw",
        "mqtt",
        BOOLEAN,
        False,
        "also publish every telegram, byte for byte as the meter sent it, on the MQTT topic "
        "BASE_TOPIC/telegram/raw (not retained; needs mqtt.enabled)",
    ),
)

# ---------------------------------------------------------------------------------- sections


@dataclasses.dataclass(frozen=True, slots=True)
class MqttSection(Section):
    """`[mqtt]` as the daemon sees it: whether to publish, and where the password comes from
    (the connection itself is `mqtt_config`)."""

    SECTION: ClassVar[str] = "mqtt"
    enabled: bool = True
    password: str | None = dataclasses.field(default=None, repr=False)
    password_file: Path | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class HomeAssistantSection(Section):
    """`[homeassistant]`."""

    SECTION: ClassVar[str] = "homeassistant"
    expire_after: int = 600
    state_interval: float = 5.0
    bridge_name: str = "P1-LoRa bridge"


@dataclasses.dataclass(frozen=True, slots=True)
class RawSection(Section):
    """`[raw]`."""

    SECTION: ClassVar[str] = "raw"
    port: int | None = None
    host: str = "0.0.0.0"  # noqa: S104 - see the row
    max_clients: int = 16
    mqtt: bool = False


# ---------------------------------------------------------------------------------- checks


def _output_problems(config: Config) -> Iterator[str]:
    mqtt, raw = MqttSection.of(config), RawSection.of(config)
    if not mqtt.enabled and raw.port is None:
        yield (
            "mqtt.enabled is false and raw.port is not set: the receiver would have nowhere "
            "to deliver telegrams"
        )
    if not mqtt.enabled:
        if raw.mqtt:
            yield "raw.mqtt is true but mqtt.enabled is false: there is no broker to publish to"
        return
    # A password from password_file is read at start; stand in for it so that the rules about
    # it (a user name is needed) are checked now.
    password = mqtt.password
    if password is None and mqtt.password_file is not None:
        password = "-"  # noqa: S105 - a placeholder, never used to connect
    try:
        mqtt_config(config, password=password)
    except MqttConfigError as exc:
        yield f"mqtt: {exc}"


RX_OPTIONS: Final = daemon_table(
    program="p1-lora-rx",
    role="rx",
    options=(*_mqtt_rows(), *_HOME_ASSISTANT, *_RAW),
    sections={
        "mqtt": "The MQTT broker Home Assistant uses.",
        "homeassistant": "Home Assistant MQTT discovery.",
        "raw": "The raw telegram server (a network P1 port).",
    },
    exclusive=(
        Exclusive(
            (("mqtt.password",), ("mqtt.password_file",)),
            "give the broker password once",
        ),
    ),
    checks=(_output_problems,),
    intro="p1-lora-rx: the home side. Receives the readings over LoRa and publishes them to "
    "Home Assistant over MQTT. Default location: /etc/p1-lora/rx.toml",
)


# ---------------------------------------------------------------------------------- builders

#: Why binding the raw telegram server failed -> the option to blame. The port is at fault
#: when it is taken or privileged; anything else (a name that does not resolve, an address
#: this machine does not have, an address family it lacks) is the host's.
_PORT_ERRNOS: Final = frozenset({errno.EADDRINUSE, errno.EACCES, errno.EPERM})


def raw_listen_problem(exc: OSError) -> str:
    """The configuration problem, named by its key, for the raw server failing to listen."""
    key = "raw.port" if exc.errno in _PORT_ERRNOS else "raw.host"
    return f"{key}: {exc.strerror or exc}"


def mqtt_config(config: Config, *, password: str | None) -> MqttConfig:
    """The broker settings ([mqtt]); the password is passed in (it may come from a file or a
    credential, read by the daemon). An unset client id keeps `MqttConfig`'s default."""
    values: dict[str, Any] = {name: config[f"mqtt.{name}"] for name in _MQTT_FIELDS}
    values["host"] = values["host"].strip()
    values["password"] = password
    if values["client_id"] is None:
        del values["client_id"]
    return MqttConfig(**values)
