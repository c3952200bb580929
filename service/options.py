"""The options of `p1-lora-tx` and `p1-lora-rx`: two tables built from shared rows, and the
builders that turn a checked `Config` into the objects the daemons run on.

The rows are the single source of truth for the config files, the flags, the environment
variables, `--help`, `p1-lora config check` and the example configs in `deploy/config/`
(see `p1lora.service.config` for how one row becomes all of those).

What belongs to which side:

- both: `[radio]` (backend, board or custom pins, region, channel, power), `[sim]` (the
  simulated radio), `[link]` (key file, link-quality log), `[state]`, `[log]`;
- transmitter: `[serial]` (the P1 port) or `[meter]` (built-in virtual meter or capture
  replay), and the radio mode (auto-tune or fixed settings: the transmitter decides, the
  receiver follows its SWITCH frames);
- receiver: `[mqtt]`, `[homeassistant]`, `[raw]` (the raw telegram TCP server).

Region, channel and the protocol rules must match on both ends; the cross-checks here verify
each side's own settings against the region's rules before anything touches a radio.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Final

from p1lora.common.link import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.config import HIGH_POWER_MAX_DUTY_CYCLE, max_power_for_duty_cycle
from p1lora.common.radio_types import BANDWIDTHS_HZ
from p1lora.common.regions import DEFAULT_REGION, REGIONS, RegionError, get_region
from p1lora.hardware.boards import BOARD_ALIASES, BOARDS, BoardPins, get_board, parse_pins
from p1lora.hardware.udp_channel import UdpSimOptions
from p1lora.receiver.mqtt_config import MqttConfig, MqttConfigError
from p1lora.service.config import (
    BOOLEAN,
    INTEGER,
    NUMBER,
    PATH,
    STRING,
    Config,
    Exclusive,
    Option,
    OptionTable,
    choice,
    in_range,
    port_number,
)
from p1lora.transmitter.meter_profiles import PROFILES
from p1lora.transmitter.serial_source import MODES as SERIAL_MODES

__all__ = [
    "DEFAULT_STATE_DIR",
    "KEY_CREDENTIAL",
    "MQTT_PASSWORD_CREDENTIAL",
    "RX_OPTIONS",
    "TX_OPTIONS",
    "board_pins",
    "chip_tx_power",
    "fixed_radio",
    "link_config",
    "mqtt_config",
    "raw_listen_problem",
    "sim_options",
    "table_for",
]

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR: Final = Path("/var/lib/p1-lora")
#: systemd credential names (LoadCredential=NAME:PATH in the units).
KEY_CREDENTIAL: Final = "p1lora-key"
MQTT_PASSWORD_CREDENTIAL: Final = "p1lora-mqtt-password"  # noqa: S105 - a name, not a secret
#: `meter.source` value selecting the built-in virtual meter.
VIRTUAL_METER: Final = "virtual"

_CUSTOM_PINS: Final = (
    "radio.spi_bus",
    "radio.spi_device",
    "radio.nss_pin",
    "radio.reset_pin",
    "radio.dio0_pin",
    "radio.pa_boost",
)


# ---------------------------------------------------------------------------------- checks


def _board(value: str) -> str | None:
    try:
        get_board(value)
    except ValueError as exc:
        return str(exc)
    return None


def _pins(value: str) -> str | None:
    try:
        parse_pins(value)
    except ValueError as exc:
        return str(exc)
    return None


def _gpio(value: int) -> str | None:
    return None if 0 <= value <= 27 else f"GPIO{value} is not a header GPIO (BCM 0..27)"


def _frequency(value: float) -> str | None:
    if 137.0 <= value <= 1020.0:
        return None
    hint = " (write MHz, e.g. 869.525)" if value > 1e5 else ""
    return f"{value:g} MHz is outside the SX127x's 137..1020 MHz{hint}"


def _bandwidth(value: float) -> str | None:
    if _bw_hz(value) is not None:
        return None
    listed = ", ".join(f"{bw / 1000:g}" for bw in BANDWIDTHS_HZ)
    return f"{value:g} kHz is not an SX127x bandwidth ({listed})"


def _bw_hz(khz: float) -> int | None:
    for bw in BANDWIDTHS_HZ:
        if abs(bw / 1000 - khz) < 0.06:
            return bw
    return None


def _not_empty(value: str) -> str | None:
    return None if value.strip() else "must not be empty"


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


def _meter_source(value: str) -> str | None:
    if not value.strip():
        return f'must be "{VIRTUAL_METER}" or the path of a capture file'
    return None


# ---------------------------------------------------------------------------------- rows

_BOARD_NAMES = ", ".join([*BOARDS, *BOARD_ALIASES])

_RADIO_COMMON: Final = (
    Option(
        "radio",
        "backend",
        choice("sx127x", "sim"),
        "sx127x",
        "sx127x: the LoRa HAT on this Pi; sim: an emulated radio on a simulated channel that "
        "other p1-lora processes on this machine share (no hardware needed)",
        flag="--radio",
    ),
    Option(
        "radio",
        "board",
        STRING,
        None,
        f"the LoRa HAT: {_BOARD_NAMES} (or give custom pins instead)",
        check=_board,
        flag="--board",
        metavar="NAME",
        example="dragino",
    ),
    Option(
        "radio",
        "pins",
        STRING,
        None,
        "custom wiring in one line instead of board, e.g. 'spi=0.0,cs=25,reset=17,dio0=4,"
        "pa_boost=yes' (or use the separate pin keys below)",
        check=_pins,
        flag="--pins",
        metavar="SPEC",
        sample="spi=0.0,cs=25,reset=17,dio0=4",
    ),
    Option(
        "radio",
        "spi_bus",
        INTEGER,
        None,
        "custom wiring: SPI bus (0 on every Pi HAT)",
        check=in_range(0, 1),
        sample=0,
    ),
    Option(
        "radio",
        "spi_device",
        INTEGER,
        None,
        "custom wiring: SPI device, /dev/spidevBUS.DEVICE (0 = CE0, 1 = CE1); with nss_pin the "
        "device's own chip-enable line is left unused",
        check=in_range(0, 2),
        sample=0,
    ),
    Option(
        "radio",
        "nss_pin",
        INTEGER,
        None,
        "custom wiring: drive chip select (NSS) from this BCM GPIO instead of a hardware CE",
        check=_gpio,
        sample=25,
    ),
    Option(
        "radio",
        "reset_pin",
        INTEGER,
        None,
        "custom wiring: BCM GPIO of RESET (recommended: lets p1-lora recover a hung chip)",
        check=_gpio,
        sample=17,
    ),
    Option(
        "radio",
        "dio0_pin",
        INTEGER,
        None,
        "custom wiring: BCM GPIO of DIO0 (without it the chip is polled)",
        check=_gpio,
        sample=4,
    ),
    Option(
        "radio",
        "pa_boost",
        BOOLEAN,
        None,
        "custom wiring: the module's antenna is on PA_BOOST (true for RFM95W/RFM96W modules; "
        "false selects the RFO output)",
        sample=True,
    ),
    Option(
        "radio",
        "region",
        choice(*REGIONS),
        DEFAULT_REGION,
        f"regulatory region ({', '.join(REGIONS)}): its rules (duty cycle, power, dwell time) "
        "are enforced on every frame; must be the same on both sides",
        metavar="REGION",
    ),
    Option(
        "radio",
        "frequency",
        NUMBER,
        None,
        "channel centre in MHz; must be the same on both sides (default: the region's, "
        "869.525 MHz in EU868: the 10 % duty-cycle sub-band)",
        check=_frequency,
        metavar="MHZ",
        sample=869.525,
    ),
    Option(
        "radio",
        "tx_power",
        INTEGER,
        None,
        "this node's maximum transmit power in dBm (default: the region's, capped at the "
        "sub-band's limit); subtract antenna gain above 2 dBi",
        check=in_range(2, 20, "dBm"),
        metavar="DBM",
        sample=14,
    ),
)

_RADIO_TX: Final = (
    Option(
        "radio",
        "mode",
        choice("auto", "fixed"),
        "auto",
        "auto: tune spreading factor, bandwidth and power from the measured link margin; "
        "fixed: always use fixed_sf/fixed_bw (a `set radio` command over the link overrides "
        "this until the next `set radio`)",
    ),
    Option(
        "radio",
        "fixed_sf",
        INTEGER,
        None,
        "spreading factor of fixed mode (7..12)",
        check=in_range(7, 12),
        metavar="SF",
        sample=9,
    ),
    Option(
        "radio",
        "fixed_bw",
        NUMBER,
        None,
        "bandwidth of fixed mode in kHz (125, 250 or 500 where the sub-band allows it)",
        check=_bandwidth,
        metavar="KHZ",
        sample=125,
    ),
)

_SIM: Final = (
    Option(
        "sim",
        "port",
        INTEGER,
        None,
        "radio = sim: loopback UDP port where simulated radios meet (default 47868)",
        check=port_number,
        metavar="PORT",
        sample=47868,
    ),
    Option(
        "sim",
        "path_loss",
        NUMBER,
        None,
        "radio = sim: path loss to the other processes' radios in dB (default 100; the larger "
        "of both sides' settings applies)",
        check=in_range(0, 250, "dB"),
        metavar="DB",
        sample=100.0,
    ),
    Option(
        "sim",
        "noise_figure",
        NUMBER,
        6.0,
        "radio = sim: receiver noise figure in dB",
        check=in_range(0, 30, "dB"),
        metavar="DB",
    ),
    Option(
        "sim",
        "fading",
        NUMBER,
        0.0,
        "radio = sim: per-frame Gaussian fading, standard deviation in dB",
        check=in_range(0, 30, "dB"),
        metavar="DB",
    ),
    Option(
        "sim",
        "loss",
        NUMBER,
        0.0,
        "radio = sim: extra random frame loss probability (0..1)",
        check=in_range(0, 1),
        metavar="P",
    ),
    Option(
        "sim",
        "seed",
        INTEGER,
        None,
        "radio = sim: random seed of the simulated channel",
        metavar="N",
        sample=1,
    ),
)

_LINK_COMMON: Final = (
    Option(
        "link",
        "key_file",
        PATH,
        None,
        "the pre-shared key file written by `p1-lora keygen` (mode 0600; the same key on both "
        "sides). Under systemd the unit passes it as the credential p1lora-key instead, "
        "which takes precedence",
        flag="--key-file",
        metavar="FILE",
        example=Path("/etc/p1-lora/key"),
    ),
    Option(
        "link",
        "log",
        PATH,
        None,
        "write the link-quality log (JSON lines, every frame and link event) to this file; "
        "summarise it with `p1-lora linkreport FILE`",
        metavar="FILE",
        sample=Path("/var/lib/p1-lora/link.jsonl"),
    ),
    Option(
        "link",
        "log_max_bytes",
        INTEGER,
        5_000_000,
        "rotate the link-quality log when it would exceed this size",
        check=in_range(65_536, 1_000_000_000, "bytes"),
        metavar="BYTES",
    ),
    Option(
        "link",
        "log_backups",
        INTEGER,
        5,
        "rotated link-quality logs to keep (FILE.1 ... FILE.N)",
        check=in_range(0, 1000),
        metavar="N",
    ),
)

_LINK_TX: Final = (
    Option(
        "link",
        "interval",
        NUMBER,
        0.0,
        "at least this many seconds between telegrams sent (0: as often as the duty cycle "
        "allows); the `set interval` command over the link overrides it",
        check=in_range(0, 3600, "s"),
        metavar="SECONDS",
    ),
)

_STATE_LOG: Final = (
    Option(
        "state",
        "dir",
        PATH,
        DEFAULT_STATE_DIR,
        "where frame counters, the last good radio settings and the airtime budget survive "
        "restarts (systemd's StateDirectory=p1-lora creates it)",
        metavar="DIR",
    ),
    Option(
        "log",
        "level",
        choice("debug", "info", "warning", "error"),
        "info",
        "log verbosity on stderr (the journal under systemd)",
        metavar="LEVEL",
    ),
)

_SOURCE_TX: Final = (
    Option(
        "serial",
        "port",
        PATH,
        None,
        "the P1 cable's serial port (a /dev/serial/by-id/... path survives replugging)",
        flag="--serial",
        metavar="PATH",
        example=Path("/dev/ttyUSB0"),
    ),
    Option(
        "serial",
        "mode",
        choice(*SERIAL_MODES),
        "auto",
        "serial settings by DSMR version: auto detects them; 5 = 115200 8N1, 4 = 115200 7E1, "
        "2.2 and 3 = 9600 7E1",
    ),
    Option(
        "meter",
        "source",
        STRING,
        None,
        'instead of a serial port: "virtual" for the built-in virtual meter, or the path of '
        "a capture file to replay (testing and demos)",
        check=_meter_source,
        flag="--meter",
        metavar="virtual|FILE",
        sample=VIRTUAL_METER,
    ),
    Option(
        "meter",
        "profile",
        choice(*PROFILES),
        "dsmr5",
        f"meter = virtual: which meter to simulate ({', '.join(PROFILES)})",
        metavar="PROFILE",
    ),
    Option("meter", "seed", INTEGER, 0, "meter = virtual: random seed", metavar="N"),
    Option(
        "meter",
        "solar",
        NUMBER,
        None,
        "meter = virtual: rooftop solar size in kWp (default: the profile's; 0 for none)",
        check=in_range(0, 50, "kWp"),
        metavar="KWP",
        sample=4.0,
    ),
    Option(
        "meter",
        "loop",
        BOOLEAN,
        True,
        "meter = FILE: start the capture over at its end (otherwise the source stops)",
    ),
)

_MQTT: Final = (
    Option(
        "mqtt",
        "enabled",
        BOOLEAN,
        True,
        "publish to an MQTT broker (Home Assistant discovery and state)",
    ),
    Option(
        "mqtt",
        "host",
        STRING,
        "localhost",
        "the broker's host name or address",
        check=_not_empty,
        metavar="HOST",
        example="localhost",
    ),
    Option(
        "mqtt",
        "port",
        INTEGER,
        None,
        "the broker's port (default 1883, or 8883 with TLS)",
        check=port_number,
        metavar="PORT",
        sample=1883,
    ),
    Option(
        "mqtt",
        "username",
        STRING,
        None,
        "user name at the broker",
        check=_not_empty,
        metavar="USER",
        sample="p1lora",
    ),
    Option(
        "mqtt",
        "password",
        STRING,
        None,
        "password at the broker (secret: keep this file readable by root and the service "
        "only: sudo chown root:p1lora FILE && sudo chmod 640 FILE; or use password_file, or "
        "the systemd credential p1lora-mqtt-password)",
        secret=True,
        cli=False,
        sample="change-me",
    ),
    Option(
        "mqtt",
        "password_file",
        PATH,
        None,
        "read the broker password from this file (first line) instead",
        metavar="FILE",
        sample=Path("/etc/p1-lora/mqtt-password"),
    ),
    Option("mqtt", "tls", BOOLEAN, False, "connect with TLS (implied by the TLS files below)"),
    Option(
        "mqtt",
        "ca_file",
        PATH,
        None,
        "CA certificate(s) that sign the broker's certificate (default: the system's)",
        metavar="FILE",
        sample=Path("/etc/p1-lora/ca.crt"),
    ),
    Option(
        "mqtt",
        "cert_file",
        PATH,
        None,
        "client certificate, for brokers that require one",
        metavar="FILE",
        sample=Path("/etc/p1-lora/client.crt"),
    ),
    Option(
        "mqtt",
        "key_file",
        PATH,
        None,
        "the client certificate's private key",
        metavar="FILE",
        sample=Path("/etc/p1-lora/client.key"),
    ),
    Option(
        "mqtt",
        "tls_insecure",
        BOOLEAN,
        False,
        "do not check the broker's host name against its certificate (self-signed "
        "certificates on an IP address); the chain is still verified",
    ),
    Option(
        "mqtt",
        "client_id",
        STRING,
        None,
        "MQTT client id (default: p1lora-rx-HOSTNAME)",
        check=_not_empty,
        metavar="ID",
        sample="p1lora-rx-home",
    ),
    Option(
        "mqtt",
        "base_topic",
        STRING,
        "p1lora",
        "topic prefix for state, availability and commands",
        metavar="TOPIC",
    ),
    Option(
        "mqtt",
        "discovery_prefix",
        STRING,
        "homeassistant",
        "Home Assistant's discovery prefix",
        metavar="TOPIC",
    ),
    Option(
        "mqtt",
        "keepalive",
        INTEGER,
        60,
        "MQTT keepalive in seconds",
        check=in_range(5, 65535, "s"),
        metavar="SECONDS",
    ),
    Option(
        "mqtt",
        "queue_size",
        INTEGER,
        1000,
        "messages held while the broker is unreachable",
        check=in_range(1, 1_000_000),
        metavar="N",
    ),
)


def _expire_after(value: int) -> str | None:
    if value == 0 or 60 <= value <= 86_400:
        return None
    return f"{value} s is not 0 (off) or 60..86400 s"


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
        check=_not_empty,
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

_SECTIONS_COMMON: Final = {
    "radio": "The LoRa radio and the channel.",
    "sim": "The simulated radio (radio = sim only).",
    "link": "The encrypted link and its diagnostics.",
    "state": "Persistent state.",
    "log": "Logging.",
}


# ---------------------------------------------------------------------------------- checks


def _link_problems(config: Config, role: str) -> Iterator[str]:
    """Region, channel, power and fixed settings against the region's rules.

    Logs (does not refuse) the region's legal caveat and a power capped to the chip's rating.
    """
    region = get_region(config.get_str("radio.region"))
    if region.caveat:
        logger.warning("radio.region %s: %s", region.name, region.caveat)
    frequency = config.opt_float("radio.frequency")
    channel = round(frequency * 1e6) if frequency is not None else region.default_frequency_hz
    try:
        band = region.sub_band_for(channel, region.rendezvous_bw_hz)
    except RegionError as exc:
        yield f"radio.frequency: {exc}"
        return
    power = config.opt_int("radio.tx_power")
    if power is not None and power > band.max_tx_power_dbm:
        yield (
            f"radio.tx_power: {power} dBm exceeds the {band.max_tx_power_dbm} dBm allowed in "
            f"{region.name} sub-band {band.name} ({band.max_erp_mw:g} mW ERP)"
        )
        return
    _capped, warning = chip_tx_power(config)
    if warning is not None:
        logger.warning("%s", warning)
    if role == "tx":
        mode_problems = list(_mode_problems(config))
        if mode_problems:
            yield from mode_problems
            return
    try:
        link_config(config, role)
    except (ValueError, RegionError) as exc:
        key = "radio.fixed_bw" if role == "tx" and config.is_set("radio.fixed_bw") else "radio"
        yield f"{key}: {exc}"


def _mode_problems(config: Config) -> Iterator[str]:
    mode = config.get_str("radio.mode")
    fixed_keys = [n for n in ("radio.fixed_sf", "radio.fixed_bw") if config.is_set(n)]
    if mode == "fixed":
        missing = [n for n in ("radio.fixed_sf", "radio.fixed_bw") if config[n] is None]
        if missing:
            yield f'radio.mode is "fixed" but {" and ".join(missing)} not set'
    elif fixed_keys:
        yield (
            f'{" and ".join(fixed_keys)} set but radio.mode is "auto": set mode = "fixed" '
            "to use them, or remove them"
        )


def _pin_problems(config: Config) -> Iterator[str]:
    custom = [n for n in _CUSTOM_PINS if config.is_set(n)]
    if custom:
        try:
            board_pins(config)
        except ValueError as exc:
            yield f"radio custom pins ({', '.join(custom)}): {exc}"
        return
    if config.get_str("radio.backend") == "sx127x" and not (
        config.is_set("radio.board") or config.is_set("radio.pins")
    ):
        yield (
            f"radio.board: not set: name your LoRa HAT ({', '.join(BOARDS)}) or give custom "
            "pins (radio.pins, or radio.dio0_pin and friends); for a test without hardware "
            "use radio.backend = sim (--radio sim)"
        )


def _tx_source_problems(config: Config) -> Iterator[str]:
    if config["serial.port"] is None and config["meter.source"] is None:
        yield (
            "serial.port: no P1 source: set serial.port (--serial PATH) to the P1 cable, or "
            "meter.source (--meter virtual, or --meter FILE) for a simulated meter"
        )


def _rx_output_problems(config: Config) -> Iterator[str]:
    if not config.get_bool("mqtt.enabled") and config["raw.port"] is None:
        yield (
            "mqtt.enabled is false and raw.port is not set: the receiver would have nowhere "
            "to deliver telegrams"
        )
    if not config.get_bool("mqtt.enabled"):
        if config.get_bool("raw.mqtt"):
            yield "raw.mqtt is true but mqtt.enabled is false: there is no broker to publish to"
        return
    # A password from password_file is read at start; stand in for it so that the rules about
    # it (a user name is needed) are checked now.
    password = config.opt_str("mqtt.password")
    if password is None and config["mqtt.password_file"] is not None:
        password = "-"  # noqa: S105 - a placeholder, never used to connect
    try:
        mqtt_config(config, password=password)
    except MqttConfigError as exc:
        yield f"mqtt: {exc}"


def _tx_checks(config: Config) -> Iterator[str]:
    yield from _pin_problems(config)
    yield from _link_problems(config, "tx")
    yield from _tx_source_problems(config)


def _rx_checks(config: Config) -> Iterator[str]:
    yield from _pin_problems(config)
    yield from _link_problems(config, "rx")
    yield from _rx_output_problems(config)


_PIN_CHOICE = Exclusive(
    (("radio.board",), ("radio.pins",), _CUSTOM_PINS),
    "choose a board, or custom pins (either radio.pins or the separate pin keys)",
)

TX_OPTIONS: Final = OptionTable(
    program="p1-lora-tx",
    role="tx",
    default_path=Path("/etc/p1-lora/tx.toml"),
    options=(
        *_SOURCE_TX,
        *_RADIO_COMMON,
        *_RADIO_TX,
        *_SIM,
        *_LINK_COMMON,
        *_LINK_TX,
        *_STATE_LOG,
    ),
    sections={
        "serial": "The smart meter's P1 port.",
        "meter": "A simulated meter instead of the P1 port (testing, demos).",
        **_SECTIONS_COMMON,
    },
    exclusive=(
        _PIN_CHOICE,
        Exclusive(
            (("serial.port",), ("meter.source",)),
            "the transmitter reads either the serial port or a simulated meter",
        ),
    ),
    checks=(_tx_checks,),
    intro="p1-lora-tx: the meter-closet side. Reads the smart meter's P1 port and sends every "
    "reading over LoRa to p1-lora-rx. Default location: /etc/p1-lora/tx.toml",
)

RX_OPTIONS: Final = OptionTable(
    program="p1-lora-rx",
    role="rx",
    default_path=Path("/etc/p1-lora/rx.toml"),
    options=(
        *_MQTT,
        *_HOME_ASSISTANT,
        *_RAW,
        *_RADIO_COMMON,
        *_SIM,
        *_LINK_COMMON,
        *_STATE_LOG,
    ),
    sections={
        "mqtt": "The MQTT broker Home Assistant uses.",
        "homeassistant": "Home Assistant MQTT discovery.",
        "raw": "The raw telegram server (a network P1 port).",
        **_SECTIONS_COMMON,
    },
    exclusive=(
        _PIN_CHOICE,
        Exclusive(
            (("mqtt.password",), ("mqtt.password_file",)),
            "give the broker password once",
        ),
    ),
    checks=(_rx_checks,),
    intro="p1-lora-rx: the home side. Receives the readings over LoRa and publishes them to "
    "Home Assistant over MQTT. Default location: /etc/p1-lora/rx.toml",
)


def table_for(role: str) -> OptionTable:
    """The option table of "tx" or "rx"."""
    tables = {"tx": TX_OPTIONS, "rx": RX_OPTIONS}
    if role not in tables:
        raise ValueError(f"role must be tx or rx, not {role!r}")
    return tables[role]


# ---------------------------------------------------------------------------------- builders


def fixed_radio(config: Config) -> FixedRadio | None:
    """Fixed-mode settings from [radio] fixed_sf/fixed_bw (None in auto mode)."""
    if "radio.mode" not in config.table or config.get_str("radio.mode") != "fixed":
        return None
    sf = config.opt_int("radio.fixed_sf")
    bw = config.opt_float("radio.fixed_bw")
    if sf is None or bw is None:
        raise ValueError("fixed radio mode needs radio.fixed_sf and radio.fixed_bw")
    bw_hz = _bw_hz(bw)
    if bw_hz is None:
        raise ValueError(f"{bw:g} kHz is not an SX127x bandwidth")
    power = config.opt_int("radio.tx_power")
    return FixedRadio(sf, bw_hz, power if power is None else chip_tx_power(config)[0])


def chip_tx_power(config: Config) -> tuple[int | None, str | None]:
    """radio.tx_power within the SX127x's rating for the channel's duty cycle, and the WARNING
    to log when it had to be lowered (None power: the region's default, which stays within).

    Above +17 dBm the chip runs its +20 dBm mode, rated for at most 1 % duty cycle; in a sub-band
    that allows more the link could keep the chip there far longer. A working, legal link at
    +17 dBm (3 dB less) is what a user wants rather than a refusal to start, so the power is
    capped and the cap is said once at start (and by `p1-lora config check`).
    RegionError when the channel fits no sub-band.
    """
    region = get_region(config.get_str("radio.region"))
    frequency = config.opt_float("radio.frequency")
    channel = round(frequency * 1e6) if frequency is not None else region.default_frequency_hz
    band = region.sub_band_for(channel, region.rendezvous_bw_hz)
    wanted = config.opt_int("radio.tx_power")
    power = min(region.default_tx_power_dbm if wanted is None else wanted, band.max_tx_power_dbm)
    limit = max_power_for_duty_cycle(band.duty_cycle)
    if power <= limit:
        return wanted, None
    return limit, (
        f"radio.tx_power: {power} dBm needs the SX127x's +20 dBm mode (PA_BOOST, RegPaDac "
        f"0x87), which the datasheet rates for at most {HIGH_POWER_MAX_DUTY_CYCLE:.0%} duty "
        f"cycle; {region.name} sub-band {band.name} lets the link transmit "
        f"{_duty(band.duty_cycle)}, so this node uses at most {limit} dBm"
    )


def _duty(duty_cycle: float) -> str:
    return (
        "without a duty-cycle limit" if duty_cycle >= 1 else f"up to {duty_cycle:.0%} of the time"
    )


def link_config(config: Config, role: str) -> LinkConfig:
    """The link's configuration (ValueError/RegionError naming the problem)."""
    frequency = config.opt_float("radio.frequency")
    fixed = fixed_radio(config)
    interval = config.get_float("link.interval") if "link.interval" in config.table else 0.0
    return LinkConfig(
        region=get_region(config.get_str("radio.region")),
        frequency_hz=round(frequency * 1e6) if frequency is not None else None,
        tx_power_dbm=chip_tx_power(config)[0],
        mode=RadioMode.FIXED if fixed is not None else RadioMode.AUTO,
        fixed=fixed,
        min_interval_s=interval if role == "tx" else 0.0,
    )


def board_pins(config: Config) -> BoardPins | None:
    """The wiring: a named board, a pin spec, the separate pin keys, or None (unset)."""
    board = config.opt_str("radio.board")
    if board is not None:
        return get_board(board)
    pins = config.opt_str("radio.pins")
    if pins is not None:
        return parse_pins(pins)
    if not any(config.is_set(n) for n in _CUSTOM_PINS):
        return None
    pa_boost = config.opt_bool("radio.pa_boost")
    return BoardPins(
        "custom",
        "custom wiring",
        spi_bus=config.opt_int("radio.spi_bus") or 0,
        spi_device=config.opt_int("radio.spi_device") or 0,
        cs_gpio=config.opt_int("radio.nss_pin"),
        reset_gpio=config.opt_int("radio.reset_pin"),
        dio0_gpio=config.opt_int("radio.dio0_pin"),
        pa_boost=True if pa_boost is None else pa_boost,
    )


def sim_options(config: Config) -> UdpSimOptions:
    """The simulated channel's per-process settings ([sim])."""
    return UdpSimOptions(
        port=config.opt_int("sim.port"),
        path_loss_db=config.opt_float("sim.path_loss"),
        noise_figure_db=config.get_float("sim.noise_figure"),
        fading_sigma_db=config.get_float("sim.fading"),
        loss_probability=config.get_float("sim.loss"),
        seed=config.opt_int("sim.seed"),
    )


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
    credential, read by the daemon)."""
    settings = MqttConfig(
        host=config.get_str("mqtt.host").strip(),
        port=config.opt_int("mqtt.port"),
        username=config.opt_str("mqtt.username"),
        password=password,
        tls=config.get_bool("mqtt.tls"),
        ca_file=config.opt_path("mqtt.ca_file"),
        cert_file=config.opt_path("mqtt.cert_file"),
        key_file=config.opt_path("mqtt.key_file"),
        tls_insecure=config.get_bool("mqtt.tls_insecure"),
        base_topic=config.get_str("mqtt.base_topic"),
        discovery_prefix=config.get_str("mqtt.discovery_prefix"),
        keepalive=config.get_int("mqtt.keepalive"),
        queue_size=config.get_int("mqtt.queue_size"),
    )
    client_id = config.opt_str("mqtt.client_id")
    return settings if client_id is None else replace(settings, client_id=client_id)
