"""The receiver's outputs besides Home Assistant: `RxSink`s of the runtime that `p1-lora-rx`
adds per its config.

- `RawServerSink`: the raw telegram server (`[raw] port`, a network P1 port);
- `RawMqttSink`: each telegram byte for byte on `<base>/telegram/raw` (`[raw] mqtt`);
- `DeliveryLog`: logs the first delivery and counts them for the status line.
"""

from __future__ import annotations

import logging
from typing import Final

from p1lora.common.link import LinkReport
from p1lora.receiver.mqtt_publisher import MqttPublisher
from p1lora.receiver.raw_server import RawTelegramServer
from p1lora.receiver.runtime import BaseSink

__all__ = ["RAW_TELEGRAM_TOPIC", "DeliveryLog", "RawMqttSink", "RawServerSink"]

#: The daemon's logger: "first telegram delivered" was always the daemon's line, and log readers
#: (the demo view, the daemon tests) select by logger name.
logger = logging.getLogger("p1lora.receiver.cli")


class RawServerSink(BaseSink):
    """Hands every delivered telegram to the raw telegram server (which never blocks)."""

    def __init__(self, server: RawTelegramServer) -> None:
        self.server = server

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.server.broadcast(raw)


#: Where `[raw] mqtt` publishes each telegram, under the base topic.
RAW_TELEGRAM_TOPIC: Final = ("telegram", "raw")


class RawMqttSink(BaseSink):
    """Publishes every delivered telegram byte for byte on `<base>/telegram/raw` (`[raw] mqtt`).

    Not retained: each message is one reading at one moment, and a retained one would hand a
    new subscriber an old telegram as if it were current. QoS 0 like the state topics: the
    next telegram follows within seconds. While the broker is unreachable the telegrams wait
    in the publisher's bounded queue (`mqtt.queue_size`) and follow in order on reconnect.
    """

    def __init__(self, publisher: MqttPublisher) -> None:
        self.publisher = publisher
        self.topic = publisher.topic(*RAW_TELEGRAM_TOPIC)

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.publisher.publish(self.topic, raw, retain=False)


class DeliveryLog(BaseSink):
    """Logs the first delivered telegram (the moment a new installation starts working) and
    counts deliveries for the status line."""

    def __init__(self) -> None:
        self.delivered = 0

    def telegram(self, raw: bytes, received_at: float, report: LinkReport) -> None:
        self.delivered += 1
        if self.delivered == 1:
            logger.info(
                "first telegram delivered (%d bytes, RSSI %s dBm, SNR %s dB)",
                len(raw),
                report.rssi_dbm,
                report.snr_db,
            )
