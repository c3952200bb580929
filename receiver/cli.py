"""`p1-lora-rx`: the home daemon. Radio -> `RxRuntime` -> Home Assistant over MQTT, the raw
telegram server, and the link-quality log.

Outputs are `RxSink`s of the runtime: the Home Assistant bridge (discovery, state, commands;
on an `MqttPublisher` that reconnects by itself), and the raw telegram server (a network P1
port for Home Assistant's DSMR integration or DSMR Reader). A broker that is down at start is
not an error: the publisher keeps trying, and the link keeps acknowledging the transmitter.

On SIGTERM the bridge is marked `offline` (retained, acknowledged by the broker) before the
connection closes, so Home Assistant shows the entities unavailable instead of frozen values.

Everything else (configuration, key, state, radio, signals, systemd, exit codes) is the shared
skeleton in `p1lora.service.daemon`.
"""

from __future__ import annotations

import logging
import os
import stat
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from p1lora.common.budget import AirtimeBudget
from p1lora.receiver.ha_discovery import DiscoveryError, DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from p1lora.receiver.mqtt_config import MqttConfig, MqttConfigError
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.receiver.options import (
    MQTT_PASSWORD_CREDENTIAL,
    RX_OPTIONS,
    HomeAssistantSection,
    MqttSection,
    RawSection,
    mqtt_config,
    raw_listen_problem,
)
from p1lora.receiver.raw_server import RawTelegramServer
from p1lora.receiver.runtime import RxRuntime, RxSink
from p1lora.receiver.sinks import DeliveryLog, RawMqttSink, RawServerSink
from p1lora.service.config import Config, ConfigError, Source
from p1lora.service.daemon import (
    DaemonContext,
    DaemonSpec,
    LinkParts,
    prepare_link,
    run_daemon,
)
from p1lora.service.keyfile import credential_path

__all__ = ["SPEC", "RxDaemon", "broker_password", "build", "main"]

logger = logging.getLogger(__name__)

EXAMPLES: Final = """\
examples:
  p1-lora-rx                          run with /etc/p1-lora/rx.toml (as the systemd unit does)
  p1-lora-rx --radio sim --mqtt-host localhost --mqtt-port 1883 --key-file key \\
             --state-dir /tmp/p1-rx    simulated radio, publish to a local broker
  p1-lora-rx --radio sim --mqtt-host localhost --raw-port 8088 --key-file key
                                      also serve the telegrams on TCP port 8088
  p1-lora-rx --radio sim --mqtt-host localhost --raw-mqtt --key-file key
                                      also publish them on p1lora/telegram/raw
  p1-lora-rx --board dragino --mqtt-host homeassistant.local --key-file /etc/p1-lora/key

The broker password comes from [mqtt] password or password_file in the config file, from
$P1LORA_MQTT_PASSWORD, or from the systemd credential p1lora-mqtt-password (never a flag: the
process list is public). Check a config file without starting: `p1-lora config check FILE`."""

_PASSWORD_FILE_MAX = 4096


def _read_password_file(path: Path) -> str:
    try:
        with path.open("rb") as handle:
            info = os.fstat(handle.fileno())
            data = handle.read(_PASSWORD_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(
            f"mqtt.password_file: cannot read {path}: {exc.strerror or exc}"
        ) from None
    if info.st_mode & stat.S_IROTH:
        logger.warning(
            "MQTT password file %s is readable by everyone: run sudo chown root:p1lora %s and "
            "sudo chmod 640 %s (the p1lora service user must still read it)",
            path,
            path,
            path,
        )
    lines = data.decode("utf-8", "replace").splitlines()
    password = lines[0].strip() if lines else ""
    if not password or len(data) > _PASSWORD_FILE_MAX:
        raise ConfigError(f"mqtt.password_file: {path} does not hold a password on its first line")
    return password


def broker_password(config: Config, environ: Mapping[str, str] | None = None) -> str | None:
    """The broker password: [mqtt] password, password_file, or the systemd credential (found
    through `environ`, the process environment by default)."""
    mqtt = MqttSection.of(config)
    if mqtt.password is not None:
        if config.source("mqtt.password") is Source.FILE and config.path is not None:
            _warn_if_public(config.path)
        return mqtt.password
    if mqtt.password_file is not None:
        return _read_password_file(mqtt.password_file)
    credential = credential_path(MQTT_PASSWORD_CREDENTIAL, environ)
    if credential is not None:
        return _read_password_file(credential)
    return None


def _warn_if_public(path: Path) -> None:
    try:
        mode = path.stat().st_mode
    except OSError:
        return
    if mode & stat.S_IROTH:
        logger.warning(
            "config file %s holds the MQTT password and is readable by everyone: run sudo chown "
            "root:p1lora %s and sudo chmod 640 %s, or move the password to password_file",
            path,
            path,
            path,
        )


def _broker(config: Config) -> MqttConfig:
    try:
        settings = mqtt_config(config, password=broker_password(config))
        settings.check_files()
    except MqttConfigError as exc:
        raise ConfigError(f"mqtt: {exc}") from None
    return settings


class RxDaemon:
    """The running receiver: radio -> runtime -> sinks."""

    def __init__(
        self,
        parts: LinkParts,
        runtime: RxRuntime,
        *,
        publisher: MqttPublisher | None,
        bridge: HomeAssistantBridge | None,
        raw_server: RawTelegramServer | None,
        deliveries: DeliveryLog,
    ) -> None:
        self.parts = parts
        self._runtime = runtime
        self.publisher = publisher
        self.bridge = bridge
        self.raw_server = raw_server
        self.deliveries = deliveries

    @property
    def runtime(self) -> RxRuntime:
        return self._runtime

    @property
    def budget(self) -> AirtimeBudget:
        return self._runtime.rx_link.budget

    def start(self) -> None:
        if self.raw_server is not None:
            try:
                self.raw_server.start()
            except OSError as exc:
                raise ConfigError(raw_listen_problem(exc)) from None
        if self.publisher is not None:
            self.publisher.start()
        if self.bridge is not None:
            self.bridge.start()

    def status_line(self, now: float) -> str:
        snapshot = self._runtime.diagnostics(now)
        link = snapshot.link
        parts = [f"link {link.state} at {link.settings.label()}"]
        if link.uplink_rssi_dbm is not None and link.uplink_snr_db is not None:
            parts.append(f"RSSI {link.uplink_rssi_dbm:.0f} dBm, SNR {link.uplink_snr_db:.1f} dB")
        age = snapshot.seconds_since_last_telegram
        last = "none yet" if age is None else f"last {age:.0f} s ago"
        parts.append(f"{snapshot.telegrams_delivered} telegram(s) delivered ({last})")
        if self.publisher is not None:
            parts.append("MQTT " + ("connected" if self.publisher.connected else "not connected"))
        if self.raw_server is not None:
            parts.append(f"{self.raw_server.client_count} raw client(s)")
        return "; ".join(parts)

    def health(self, now: float) -> str | None:
        """Why the watchdog should stop being pinged, else None: a radio broken for too long,
        or a dead output thread (paho's network thread, the raw server thread), after which
        the process would look alive while nothing is published. A broker that is merely
        unreachable is not a reason: the publisher's reconnect loop is alive and recovers."""
        problems = [self.parts.health.problem(now)]
        if self.publisher is not None:
            problems.append(self.publisher.problem())
        if self.raw_server is not None:
            problems.append(self.raw_server.problem())
        return next((p for p in problems if p is not None), None)

    def shutdown(self) -> None:
        # Offline first: Home Assistant must not keep showing the last values as current.
        if self.publisher is not None:
            try:
                self.publisher.stop()
            except Exception:
                logger.exception("error while stopping MQTT")
        if self.raw_server is not None:
            try:
                self.raw_server.close()
            except Exception:
                logger.exception("error while closing the raw telegram server")


def build(context: DaemonContext) -> RxDaemon:
    """The receiver from a checked configuration (see `DaemonSpec.build`)."""
    config = context.config
    raw = RawSection.of(config)
    home_assistant = HomeAssistantSection.of(config)
    # Output settings first: a configuration mistake must not wait for the radio.
    broker = _broker(config) if MqttSection.of(config).enabled else None
    raw_server = (
        RawTelegramServer(raw.host, raw.port, max_clients=raw.max_clients)
        if raw.port is not None
        else None
    )
    parts = prepare_link(context, "rx")
    context.link = parts
    publisher: MqttPublisher | None = None
    bridge: HomeAssistantBridge | None = None
    deliveries = DeliveryLog()
    sinks: list[RxSink] = [deliveries]
    if broker is not None:
        try:
            settings = DiscoverySettings.from_mqtt(
                broker,
                expire_after_s=home_assistant.expire_after,
                state_interval_s=home_assistant.state_interval,
                bridge_name=home_assistant.bridge_name,
                link=parts.link_config,
            )
        except DiscoveryError as exc:
            raise ConfigError(f"homeassistant: {exc}") from None
        publisher = MqttPublisher(broker)
        bridge = HomeAssistantBridge(publisher, settings)
        sinks.append(bridge)
        if raw.mqtt:
            sinks.append(RawMqttSink(publisher))
    if raw_server is not None:
        sinks.append(RawServerSink(raw_server))
    runtime = RxRuntime(
        parts.radio,
        parts.link_config,
        parts.key.material,
        context.clock.now(),
        store=parts.store,
        sinks=sinks,
        observers=parts.observers,
    )
    if bridge is not None:
        bridge.attach_commands(runtime)
    return RxDaemon(
        parts,
        runtime,
        publisher=publisher,
        bridge=bridge,
        raw_server=raw_server,
        deliveries=deliveries,
    )


SPEC: Final = DaemonSpec(
    table=RX_OPTIONS,
    description="p1-lora-rx: receive the smart meter's readings over LoRa from p1-lora-tx and "
    "publish them to Home Assistant over MQTT (and as a raw telegram stream).",
    examples=EXAMPLES,
    build=build,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of `p1-lora-rx`; returns the exit code."""
    return run_daemon(SPEC, argv)


if __name__ == "__main__":
    sys.exit(main())
