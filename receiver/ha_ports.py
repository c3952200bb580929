"""What the Home Assistant output needs from the rest of the receiver, as two small interfaces.

`MqttPort` is the part of `MqttPublisher` the bridge, its discovery registry and its command
relay use; `CommandPort` is the part of `RxRuntime` the command relay uses. Tests pass fakes
(`tests/helpers_ha.py`).
"""

from __future__ import annotations

from typing import Protocol

from p1lora.common.link.commands import Command
from p1lora.receiver.mqtt_publisher import MessageHandler

__all__ = ["CommandPort", "MqttPort"]


class MqttPort(Protocol):
    """What the bridge needs from `MqttPublisher` (tests may pass a fake)."""

    def publish(
        self,
        topic: str,
        payload: bytes | bytearray | memoryview | str,
        *,
        retain: bool = False,
        qos: int = 0,
    ) -> bool: ...

    def subscribe(self, topic_filter: str, handler: MessageHandler, *, qos: int = 0) -> None: ...


class CommandPort(Protocol):
    """What the bridge needs from `RxRuntime`: queue a command, get its id back."""

    def queue_command(self, command: Command | str, now: float | None = None) -> int: ...
