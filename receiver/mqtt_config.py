"""The MQTT connection settings of `p1-lora-rx`, as one validated value.

The configuration layer (TOML file, flags, environment) builds an `MqttConfig`; the publisher only
consumes it. Values are checked when the object is made, so a typo in a config file is reported
by field name before anything connects. File paths (TLS material) are checked separately with
`check_files()`, because a config can be validated on one machine and used on another.

The password is a secret: it is excluded from `repr()`, and `describe()` (what the daemons log)
shows only whether it is set.
"""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Unpack

from p1lora.service.config import OptionDetails, in_range, not_empty, port_number

__all__ = [
    "DEFAULT_BASE_TOPIC",
    "DEFAULT_DISCOVERY_PREFIX",
    "DEFAULT_PORT",
    "DEFAULT_TLS_PORT",
    "OPTION",
    "MqttConfig",
    "MqttConfigError",
]

DEFAULT_PORT = 1883
DEFAULT_TLS_PORT = 8883
DEFAULT_BASE_TOPIC = "p1lora"
DEFAULT_DISCOVERY_PREFIX = "homeassistant"
#: The field metadata key holding a field's `OptionDetails`.
OPTION = "option"

#: MQTT 3.1.1 allows 65535 bytes of client id on the wire, but brokers may refuse more than 23;
#: Mosquitto and Home Assistant's add-on accept long ids. 128 keeps log lines readable.
_MAX_CLIENT_ID = 128
#: A topic prefix: levels of printable characters without wildcards or NUL, no leading or
#: trailing slash, no empty level (`a//b` would silently create a different topic tree).
_PREFIX_RE = re.compile(r"^[^/#+\x00\s]+(/[^/#+\x00\s]+)*$")


class MqttConfigError(ValueError):
    """A setting that cannot work; the message names the setting and the problem."""


def _default_client_id() -> str:
    """`p1lora-rx-<hostname>`: stable across restarts, so broker logs show one client.

    Two bridges on hosts with the same name would kick each other off; such users set
    `client_id` explicitly.
    """
    host = re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname()) or "host"
    return f"p1lora-rx-{host}"[:_MAX_CLIENT_ID]


def _option(**details: Unpack[OptionDetails]) -> dict[str, Any]:
    """Field metadata that makes the field a `[mqtt]` config option (see `MqttConfig`)."""
    return {OPTION: details}


@dataclass(frozen=True, slots=True)
class MqttConfig:
    """Where the broker is, how to authenticate, and which topic trees to use.

    `tls` turns TLS on; it is implied by any of `ca_file`, `cert_file`, `key_file` or
    `tls_insecure`. Without `ca_file` the system's trusted CAs verify the broker.
    `tls_insecure` skips the host name check (self-signed certificates on an IP address); the
    certificate chain is still verified against `ca_file`.

    `queue_size` bounds the messages held while the broker is unreachable (retained state is kept
    separately, one payload per topic, and is not counted here).

    The fields with an `option` in their metadata are also the `[mqtt]` rows of `p1-lora-rx`'s
    config (help text, checks, examples): `p1lora.receiver.options` builds the rows from them,
    so this class is the one place the MQTT settings are defined. The timing fields below them
    are not user settings.
    """

    host: str = field(
        default="localhost",
        metadata=_option(
            help="the broker's host name or address",
            check=not_empty,
            metavar="HOST",
            example="localhost",
        ),
    )
    port: int | None = field(
        default=None,
        metadata=_option(
            help="the broker's port (default 1883, or 8883 with TLS)",
            check=port_number,
            metavar="PORT",
            sample=1883,
        ),
    )
    username: str | None = field(
        default=None,
        metadata=_option(
            help="user name at the broker", check=not_empty, metavar="USER", sample="p1lora"
        ),
    )
    password: str | None = field(
        default=None,
        repr=False,
        metadata=_option(
            help="password at the broker (secret: keep this file readable by root and the service "
            "only: sudo chown root:p1lora FILE && sudo chmod 640 FILE; or use password_file, "
            "or the systemd credential p1lora-mqtt-password)",
            secret=True,
            cli=False,
            sample="change-me",
        ),
    )
    tls: bool = field(
        default=False, metadata=_option(help="connect with TLS (implied by the TLS files below)")
    )
    ca_file: Path | None = field(
        default=None,
        metadata=_option(
            help="CA certificate(s) that sign the broker's certificate (default: the system's)",
            metavar="FILE",
            sample=Path("/etc/p1-lora/ca.crt"),
        ),
    )
    cert_file: Path | None = field(
        default=None,
        metadata=_option(
            help="client certificate, for brokers that require one",
            metavar="FILE",
            sample=Path("/etc/p1-lora/client.crt"),
        ),
    )
    key_file: Path | None = field(
        default=None,
        metadata=_option(
            help="the client certificate's private key",
            metavar="FILE",
            sample=Path("/etc/p1-lora/client.key"),
        ),
    )
    tls_insecure: bool = field(
        default=False,
        metadata=_option(
            help="do not check the broker's host name against its certificate (self-signed "
            "certificates on an IP address); the chain is still verified"
        ),
    )
    client_id: str = field(
        default_factory=_default_client_id,
        metadata=_option(
            help="MQTT client id (default: p1lora-rx-HOSTNAME)",
            check=not_empty,
            metavar="ID",
            sample="p1lora-rx-home",
        ),
    )
    base_topic: str = field(
        default=DEFAULT_BASE_TOPIC,
        metadata=_option(help="topic prefix for state, availability and commands", metavar="TOPIC"),
    )
    discovery_prefix: str = field(
        default=DEFAULT_DISCOVERY_PREFIX,
        metadata=_option(help="Home Assistant's discovery prefix", metavar="TOPIC"),
    )
    keepalive: int = field(
        default=60,
        metadata=_option(
            help="MQTT keepalive in seconds", check=in_range(5, 65535, "s"), metavar="SECONDS"
        ),
    )
    queue_size: int = field(
        default=1000,
        metadata=_option(
            help="messages held while the broker is unreachable",
            check=in_range(1, 1_000_000),
            metavar="N",
        ),
    )
    connect_timeout: float = 10.0
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0

    def __post_init__(self) -> None:
        for name in ("ca_file", "cert_file", "key_file"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                object.__setattr__(self, name, Path(os.fspath(value)))
        if self.ca_file or self.cert_file or self.key_file or self.tls_insecure:
            object.__setattr__(self, "tls", True)
        self._validate()

    def _validate(self) -> None:
        host = self.host.strip() if isinstance(self.host, str) else ""
        if not host or any(ch.isspace() for ch in host) or "/" in host:
            raise MqttConfigError(f"mqtt host {self.host!r} is not a host name or address")
        if self.port is not None and (
            isinstance(self.port, bool)
            or not isinstance(self.port, int)
            or not 1 <= self.port <= 65535
        ):
            raise MqttConfigError(f"mqtt port {self.port!r} is outside 1..65535")
        if self.password is not None and not self.username:
            # A password without a user name is never sent by MQTT 3.1.1; say so instead of
            # silently connecting anonymously.
            raise MqttConfigError("mqtt password is set but username is not")
        if self.username is not None and (not self.username or "\x00" in self.username):
            raise MqttConfigError("mqtt username must be a non-empty string without NUL")
        if self.key_file is not None and self.cert_file is None:
            raise MqttConfigError("mqtt TLS key_file is set but cert_file is not")
        if not self.client_id or len(self.client_id) > _MAX_CLIENT_ID or "\x00" in self.client_id:
            raise MqttConfigError(
                f"mqtt client_id must be 1..{_MAX_CLIENT_ID} characters without NUL, "
                f"got {self.client_id!r}"
            )
        for name in ("base_topic", "discovery_prefix"):
            value = getattr(self, name)
            if not isinstance(value, str) or not _PREFIX_RE.match(value) or value.startswith("$"):
                raise MqttConfigError(
                    f"mqtt {name} {value!r} must be topic levels separated by '/', without "
                    "wildcards, spaces, empty levels, leading '$' or a leading/trailing '/'"
                )
        self._validate_limits()

    def _validate_limits(self) -> None:
        """The numeric settings: each within the range the broker or the queue can use."""
        if isinstance(self.keepalive, bool) or not 5 <= self.keepalive <= 65535:
            raise MqttConfigError(f"mqtt keepalive {self.keepalive!r} is outside 5..65535 seconds")
        if isinstance(self.queue_size, bool) or not 1 <= self.queue_size <= 1_000_000:
            raise MqttConfigError(f"mqtt queue_size {self.queue_size!r} is outside 1..1000000")
        if not 0 < self.connect_timeout <= 300:
            raise MqttConfigError(
                f"mqtt connect_timeout {self.connect_timeout!r} is outside (0, 300] seconds"
            )
        if not 0 < self.reconnect_min <= self.reconnect_max <= 3600:
            raise MqttConfigError(
                "mqtt reconnect delays must satisfy 0 < reconnect_min <= reconnect_max <= 3600, "
                f"got {self.reconnect_min!r} and {self.reconnect_max!r}"
            )

    @property
    def effective_port(self) -> int:
        """The port to connect to: explicit, else 8883 with TLS and 1883 without."""
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if self.tls else DEFAULT_PORT

    @property
    def availability_topic(self) -> str:
        """Where the bridge says `online`/`offline` (retained; the last will says `offline`)."""
        return f"{self.base_topic}/bridge/availability"

    def topic(self, *levels: str) -> str:
        """A topic under the base topic: `topic("bridge", "state")` -> `p1lora/bridge/state`."""
        return "/".join((self.base_topic, *levels))

    def check_files(self) -> None:
        """Raise `MqttConfigError` when a configured TLS file is missing or unreadable."""
        for name in ("ca_file", "cert_file", "key_file"):
            path: Path | None = getattr(self, name)
            if path is None:
                continue
            if not path.is_file():
                raise MqttConfigError(f"mqtt {name} {str(path)!r} does not exist or is not a file")
            if not os.access(path, os.R_OK):
                raise MqttConfigError(f"mqtt {name} {str(path)!r} is not readable")

    def describe(self) -> str:
        """One log-safe line: `mqtt://user@host:port (TLS)`; the password is never shown."""
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        secret = " password <set>" if self.password else ""
        insecure = ", host name not verified" if self.tls_insecure else ""
        return (
            f"{scheme}://{user}{self.host}:{self.effective_port}{secret}{insecure} "
            f"as {self.client_id!r}, base topic {self.base_topic!r}"
        )
