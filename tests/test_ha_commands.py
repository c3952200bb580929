"""Commands over MQTT: the JSON contract, its validation messages, and how the bridge queues
commands on the runtime and reports every step on the reply topic and in Home Assistant."""

from __future__ import annotations

import json

import pytest

from p1lora.common.link import LinkConfig
from p1lora.common.link.commands import Command, CommandCode, ReplyStatus
from p1lora.common.link.events import CommandReply
from p1lora.common.regions import get_region
from p1lora.receiver.ha_commands import (
    CommandRejected,
    CommandResult,
    legal_fixed_settings,
    parse_command_payload,
    parse_radio_option,
    radio_option_label,
)
from p1lora.receiver.ha_discovery import DiscoverySettings
from p1lora.receiver.home_assistant import HomeAssistantBridge
from tests.helpers_ha import FakeCommands, FakeMqtt, ManualClock

EU = LinkConfig(region=get_region("EU868"), frequency_hz=869_525_000)
EU_1PCT = LinkConfig(region=get_region("EU868"), frequency_hz=868_100_000)


@pytest.mark.parametrize(
    ("payload", "text"),
    [
        ({"cmd": "info"}, "info"),
        ({"cmd": "retune"}, "retune"),
        ({"cmd": "restart"}, "restart"),
        ({"cmd": "set_interval", "seconds": 10}, "set interval 10"),
        ({"cmd": "set_interval", "seconds": 2.5}, "set interval 2.5"),
        ({"cmd": "radio", "mode": "auto"}, "set radio auto"),
        (
            {"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 250, "power": 14},
            "set radio fixed 7 250 14",
        ),
        ({"cmd": "radio", "mode": "fixed", "sf": 9, "bw": 125}, "set radio fixed 9 125"),
        ({"cmd": "radio", "option": "SF9/BW125"}, "set radio fixed 9 125"),
        ({"cmd": "radio", "option": "auto"}, "set radio auto"),
        ({"cmd": "log_level", "level": "debug"}, "log level debug"),
        ({"cmd": " INFO ", "id": 7, "source": "automation"}, "info"),
    ],
)
def test_valid_commands(payload, text):
    request = parse_command_payload(json.dumps(payload).encode(), EU)
    assert str(request.command) == text
    assert request.request_id == payload.get("id")
    assert request.source == payload.get("source")


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"id": "x"}', '"cmd" is missing'),
        (b'{"cmd": "reboot"}', "must be one of info, retune"),
        (b'{"cmd": "info", "seconds": 3}', "does not take seconds"),
        (b'{"cmd": "set_interval"}', '"seconds" is required'),
        (b'{"cmd": "set_interval", "seconds": "ten"}', "must be a number"),
        (b'{"cmd": "set_interval", "seconds": true}', "must be a number"),
        (b'{"cmd": "set_interval", "seconds": 4000}', "0..3600"),
        (b'{"cmd": "radio", "mode": "turbo"}', '"auto" or "fixed"'),
        (b'{"cmd": "radio", "mode": "auto", "sf": 7}', "takes no sf"),
        (b'{"cmd": "radio", "mode": "fixed", "bw": 125}', '"sf" is required'),
        (b'{"cmd": "radio", "mode": "fixed", "sf": 7.5, "bw": 125}', "whole number"),
        (
            b'{"cmd": "radio", "mode": "fixed", "sf": 13, "bw": 125}',
            "spreading factor must be 7..12",
        ),
        (b'{"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 300}', "LoRa bandwidth"),
        (
            b'{"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 500}',
            "SF7/BW500 is not allowed on 869.525 MHz",
        ),
        (
            b'{"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 250, "power": 30}',
            "TX power must be -4..20",
        ),
        (b'{"cmd": "radio", "option": "SF7/BW250", "mode": "auto"}', "not both"),
        (b'{"cmd": "radio", "option": "fast"}', "like 'SF9/BW125'"),
        (b'{"cmd": "log_level", "level": "verbose"}', "debug, info, warning, error"),
        (b'{"cmd": "info", "id": [1]}', '"id" must be a string or an integer'),
        (b'{"cmd": "info", "id": "' + b"x" * 65 + b'"}', "at most 64"),
        (b'{"cmd": "info", "source": 5}', '"source" must be a string'),
        (b"{" + b" " * 5000 + b"}", "at most 4096"),
    ],
)
def test_invalid_commands_say_what_is_wrong(payload, message):
    with pytest.raises(
        CommandRejected, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")
    ):
        parse_command_payload(payload, EU)


def test_rejection_keeps_the_request_id():
    with pytest.raises(CommandRejected) as info:
        parse_command_payload(b'{"cmd": "set_interval", "seconds": -1, "id": "job-7"}', EU)
    assert info.value.request_id == "job-7"


def test_power_above_the_sub_band_limit_is_refused():
    # 868.1 MHz allows 14 dBm (25 mW); 869.525 MHz allows 20 dBm (500 mW).
    assert (
        str(
            parse_command_payload(
                b'{"cmd": "radio", "mode": "fixed", "sf": 9, "bw": 125, "power": 20}', EU
            ).command
        )
        == "set radio fixed 9 125 20"
    )
    with pytest.raises(CommandRejected, match="exceeds the 14 dBm"):
        parse_command_payload(
            b'{"cmd": "radio", "mode": "fixed", "sf": 9, "bw": 125, "power": 20}', EU_1PCT
        )


def test_without_a_link_configuration_only_the_command_rules_apply():
    request = parse_command_payload(b'{"cmd": "radio", "mode": "fixed", "sf": 7, "bw": 500}')
    assert request.command == Command(CommandCode.SET_RADIO_FIXED, sf=7, bw_hz=500_000)


def test_legal_fixed_settings():
    legal = legal_fixed_settings(EU)
    assert legal[0] == (7, 250_000)  # fastest first
    assert (12, 125_000) in legal and all(bw <= 250_000 for _, bw in legal)
    assert all(bw == 125_000 for _, bw in legal_fixed_settings(EU_1PCT))


def test_radio_option_round_trip():
    for sf, bw in legal_fixed_settings(EU):
        assert parse_radio_option(radio_option_label(sf, bw)) == (sf, bw)
    assert parse_radio_option("auto") is None
    assert parse_radio_option(" sf7 / bw62.5 ") == (7, 62_500)
    for bad in ("SF7", "SF/BW125", "SFx/BW125", "BW125/SF7", "SF7/BWnan"):
        with pytest.raises(ValueError):
            parse_radio_option(bad)


def test_result_summary_and_reply():
    result = CommandResult("rejected", "radio", None, "bad", "id-1", "cli", None, 0.0)
    assert result.reply() == {
        "id": "id-1",
        "cmd": "radio",
        "command": None,
        "status": "rejected",
        "error": "bad",
        "source": "cli",
    }
    long = CommandResult("ok", "info", "info", "x" * 400)
    assert len(long.summary()) == 255


# ---------------------------------------------------------------------------- the bridge


def _bridge(commands: FakeCommands | None = None, **kwargs) -> tuple[HomeAssistantBridge, FakeMqtt]:
    mqtt = FakeMqtt()
    clock = ManualClock()
    bridge = HomeAssistantBridge(
        mqtt,
        DiscoverySettings(base_topic="p1", link=EU),
        commands=commands,
        monotonic=clock,
        wall_clock=clock,
        **kwargs,
    )
    bridge.start()
    return bridge, mqtt


def _replies(mqtt: FakeMqtt) -> list[dict]:
    return [p.json() for p in mqtt.on("p1/command/reply")]


def test_start_clears_a_retained_command_and_subscribes():
    _, mqtt = _bridge(FakeCommands())
    first = mqtt.published[0]
    assert (first.topic, first.payload, first.retain) == ("p1/command", b"", True)
    filters = {f for f, _, _ in mqtt.handlers}
    assert filters == {"p1/command", "homeassistant/status", "homeassistant/+/p1/+/config"}
    mqtt.deliver("p1/command", b"")  # the bridge's own clean-up echo: ignored
    assert not _replies(mqtt)


def test_command_round_trip_with_the_runtime():
    commands = FakeCommands()
    bridge, mqtt = _bridge(commands)
    mqtt.deliver("p1/command", b'{"cmd": "retune", "id": "r-1"}')
    assert commands.queued == [(1, Command(CommandCode.RETUNE))]
    queued = _replies(mqtt)[-1]
    assert queued == {
        "id": "r-1",
        "cmd": "retune",
        "command": "retune",
        "status": "queued",
        "text": "waiting for the next chance to send it",
        "command_id": 1,
    }
    bridge_state = mqtt.last("p1/bridge/state").json()
    assert bridge_state["last_command"].startswith("retune: queued")
    bridge.command_reply(
        CommandReply(1, Command(CommandCode.RETUNE), ReplyStatus.OK, "retuning to SF7/BW250", 5.0)
    )
    done = _replies(mqtt)[-1]
    assert (
        done["status"] == "ok" and done["id"] == "r-1" and done["text"] == "retuning to SF7/BW250"
    )
    state = mqtt.last("p1/bridge/state").json()
    assert state["last_command"] == "retune: ok (retuning to SF7/BW250)"
    assert state["attributes"]["last_command"]["id"] == "r-1"
    assert bridge.stats().pending_commands == 0


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (ReplyStatus.TIMEOUT, "timeout"),
        (ReplyStatus.UNKNOWN, "unknown"),
        (ReplyStatus.ERROR, "error"),
    ],
)
def test_every_outcome_is_reported(status, name):
    commands = FakeCommands()
    bridge, mqtt = _bridge(commands)
    mqtt.deliver("p1/command", b'{"cmd": "restart", "id": 3}')
    bridge.command_reply(
        CommandReply(1, Command(CommandCode.RESTART), status, "no reply from the transmitter", 9.0)
    )
    assert _replies(mqtt)[-1]["status"] == name
    assert _replies(mqtt)[-1]["id"] == 3


def test_invalid_command_is_answered_and_never_queued():
    commands = FakeCommands()
    bridge, mqtt = _bridge(commands)
    mqtt.deliver("p1/command", b'{"cmd": "radio", "mode": "fixed", "sf": 12, "bw": 500, "id": "x"}')
    assert not commands.queued
    reply = _replies(mqtt)[-1]
    assert reply["status"] == "rejected" and reply["id"] == "x"
    assert "SF12/BW500 is not allowed" in reply["error"]
    assert mqtt.last("p1/bridge/state").json()["last_command"].startswith("command: rejected")
    assert bridge.stats().commands_rejected == 1


def test_no_runtime_and_failing_runtime_are_answered():
    bridge, mqtt = _bridge(None)
    mqtt.deliver("p1/command", b'{"cmd": "info"}')
    assert "no link to the transmitter" in _replies(mqtt)[-1]["error"]
    bridge.attach_commands(FakeCommands(fail="the runtime is stopping"))
    mqtt.deliver("p1/command", b'{"cmd": "info"}')
    assert "the runtime is stopping" in _replies(mqtt)[-1]["error"]


def test_pending_commands_are_bounded():
    commands = FakeCommands()
    bridge, mqtt = _bridge(commands, max_pending_commands=2)
    for _ in range(3):
        mqtt.deliver("p1/command", b'{"cmd": "info"}')
    assert len(commands.queued) == 2
    assert "already waiting" in _replies(mqtt)[-1]["error"]
    bridge.command_reply(CommandReply(1, Command(CommandCode.INFO), ReplyStatus.OK, "running", 1.0))
    mqtt.deliver("p1/command", b'{"cmd": "info"}')
    assert len(commands.queued) == 3


def test_reply_before_the_queue_call_returns_is_matched():
    """The runtime may answer before `queue_command` has returned to the MQTT thread."""
    bridge, mqtt = _bridge(None)

    class Racing(FakeCommands):
        def queue_command(self, command, now=None):
            command_id = super().queue_command(command, now)
            bridge.command_reply(CommandReply(command_id, command, ReplyStatus.OK, "fast", 1.0))
            return command_id

    bridge.attach_commands(Racing())
    mqtt.deliver("p1/command", b'{"cmd": "info", "id": "race"}')
    statuses = [(r["status"], r["id"]) for r in _replies(mqtt)]
    assert statuses[-2:] == [("queued", "race"), ("ok", "race")]
    assert bridge.stats().pending_commands == 0


def test_reply_to_a_command_queued_elsewhere_is_shown():
    bridge, mqtt = _bridge(FakeCommands())
    bridge.command_reply(
        CommandReply(42, Command(CommandCode.INFO), ReplyStatus.OK, "running SF7/BW250", 1.0)
    )
    reply = _replies(mqtt)[-1]
    assert (reply["status"], reply["command"], reply["id"]) == ("ok", "info", None)


def test_buttons_and_select_send_valid_commands():
    """What Home Assistant publishes for our buttons and select parses as the right command."""
    commands = FakeCommands()
    bridge, mqtt = _bridge(commands)
    configs = {
        p.topic.split("/")[-2]: p.json() for p in mqtt.published if p.topic.endswith("/config")
    }
    for key, text in (
        ("bridge_retune", "retune"),
        ("bridge_restart_transmitter", "restart"),
        ("bridge_request_info", "info"),
    ):
        config = configs[key]
        mqtt.deliver(config["command_topic"], config["payload_press"])
        assert str(commands.queued[-1][1]) == text
        assert _replies(mqtt)[-1]["source"] == "home_assistant"
    select = configs["bridge_radio_mode"]
    for option in select["options"]:
        # Home Assistant renders the command template with the chosen option.
        payload = select["command_template"].replace("{{ value | tojson }}", json.dumps(option))
        mqtt.deliver(select["command_topic"], payload)
        expected = (
            "set radio auto"
            if option == "auto"
            else "set radio fixed " + option.replace("SF", "").replace("/BW", " ")
        )
        assert str(commands.queued[-1][1]) == expected
        bridge.command_reply(
            CommandReply(commands.queued[-1][0], commands.queued[-1][1], ReplyStatus.OK, "", 1.0)
        )


def test_an_old_reply_with_a_reused_id_does_not_answer_a_new_command():
    commands = FakeCommands()
    mqtt = FakeMqtt()
    clock = ManualClock()
    bridge = HomeAssistantBridge(
        mqtt,
        DiscoverySettings(base_topic="p1"),
        commands=commands,
        monotonic=clock,
        wall_clock=clock,
    )
    bridge.start()
    # A command queued by someone else (id 1) was answered long ago ...
    bridge.command_reply(CommandReply(1, Command(CommandCode.INFO), ReplyStatus.OK, "old", 1.0))
    clock.advance(60)
    # ... and ids wrap: a new request gets id 1 again. It must wait for its own answer.
    mqtt.deliver("p1/command", b'{"cmd": "info", "id": "new"}')
    assert _replies(mqtt)[-1]["status"] == "queued"
    assert bridge.stats().pending_commands == 1
