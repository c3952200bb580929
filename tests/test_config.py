"""The daemons' configuration: one option table, TOML + environment + flags, strict validation."""

from __future__ import annotations

import argparse
import json
import re
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings

from p1lora.receiver.options import RX_OPTIONS, mqtt_config, raw_listen_problem
from p1lora.receiver.raw_server import RawTelegramServer
from p1lora.service.config import (
    ConfigError,
    OptionTable,
    Source,
    load_config,
    render_example,
)
from p1lora.service.options import board_pins, link_config, sim_options
from p1lora.tools.config_command import table_for
from p1lora.transmitter.options import TX_OPTIONS
from tests.helpers_config import documents, toml_document, toml_value

ROOT = Path(__file__).resolve().parent.parent

#: What makes a configuration valid per role, given in the environment so that test files
#: can use any section.
BASE = {
    "tx": {"P1LORA_SERIAL": "/dev/ttyUSB0", "P1LORA_RADIO": "sim"},
    "rx": {"P1LORA_RADIO": "sim"},
}


def _parse(table: OptionTable, argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    table.add_arguments(parser)
    return parser.parse_args(argv)


def _load(
    tmp_path: Path,
    role: str,
    text: str = "",
    *,
    argv: list[str] | None = None,
    env: dict[str, str] | None = None,
    base: bool = True,
):
    table = table_for(role)
    path = tmp_path / f"{role}.toml"
    path.write_text(text)
    environ = {**(BASE[role] if base else {}), **(env or {})}
    return load_config(table, _parse(table, ["--config", str(path), *(argv or [])]), environ)


def _problems(tmp_path: Path, role: str, text: str = "", **kwargs) -> list[str]:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, role, text, **kwargs)
    return list(info.value.problems)


# ------------------------------------------------------------------------------ valid input


def test_minimal_files_load_with_defaults(tmp_path):
    tx = _load(tmp_path, "tx")
    assert tx["serial.port"] == Path("/dev/ttyUSB0")
    assert tx.source("serial.port") is Source.ENV
    assert tx["radio.region"] == "EU868"
    assert tx.source("radio.region") is Source.DEFAULT
    rx = _load(tmp_path, "rx")
    assert rx["mqtt.host"] == "localhost"
    assert rx["mqtt.port"] is None
    assert rx.get_int("homeassistant.expire_after") == 600


def test_every_kind_of_value_reaches_the_builders(tmp_path):
    config = _load(
        tmp_path,
        "rx",
        "[radio]\nregion = 'eu868'\nfrequency = 868.1\ntx_power = 12\n"
        "[mqtt]\nhost = 'broker.lan'\nport = 8883\nusername = 'ha'\npassword = 's3cret'\n"
        "tls = true\nbase_topic = 'home/p1'\n"
        "[sim]\npath_loss = 120.5\nseed = 7\n",
    )
    broker = mqtt_config(config, password=config.opt_str("mqtt.password"))
    assert (broker.host, broker.port, broker.username, broker.tls) == (
        "broker.lan",
        8883,
        "ha",
        True,
    )
    assert broker.base_topic == "home/p1"
    link = link_config(config, "rx")
    assert link.region.name == "EU868"  # choices are matched case-insensitively
    assert link.channel_hz == 868_100_000
    assert link.max_tx_power() == 12
    sim = sim_options(config)
    assert (sim.path_loss_db, sim.seed) == (120.5, 7)


def test_fixed_mode_builds_fixed_settings(tmp_path):
    config = _load(tmp_path, "tx", "[radio]\nmode = 'fixed'\nfixed_sf = 9\nfixed_bw = 125\n")
    link = link_config(config, "tx")
    assert link.mode.value == "fixed"
    assert link.fixed is not None
    assert (link.fixed.sf, link.fixed.bw_hz) == (9, 125_000)


@pytest.mark.parametrize(
    ("radio", "expected"),
    [
        ("board = 'adafruit'", ("adafruit-rfm95w", 1, None, 25, 22)),
        ("pins = 'spi=0.0,cs=25,reset=17,dio0=4'", ("custom", 0, 25, 17, 4)),
        ("spi_device = 1\nreset_pin = 5\ndio0_pin = 6", ("custom", 1, None, 5, 6)),
    ],
)
def test_board_or_custom_pins(tmp_path, radio, expected):
    config = _load(tmp_path, "rx", "[radio]\n" + radio + "\n")
    pins = board_pins(config)
    assert pins is not None
    assert (pins.name, pins.spi_device, pins.cs_gpio, pins.reset_gpio, pins.dio0_gpio) == expected


def test_relative_paths_in_a_file_are_relative_to_the_file(tmp_path):
    config = _load(tmp_path, "tx", "[link]\nkey_file = 'keys/p1.key'\nlog = '~/link.jsonl'\n")
    assert config["link.key_file"] == tmp_path / "keys" / "p1.key"
    assert config["link.log"] == Path("~/link.jsonl").expanduser()


def test_missing_default_file_is_fine_and_flags_suffice(tmp_path, monkeypatch):
    table = OptionTable(
        program=TX_OPTIONS.program,
        role="tx",
        default_path=tmp_path / "absent.toml",
        options=TX_OPTIONS.options,
        sections=TX_OPTIONS.sections,
        exclusive=TX_OPTIONS.exclusive,
        checks=TX_OPTIONS.checks,
    )
    args = _parse(table, ["--radio", "sim", "--meter", "virtual", "--key-file", "k"])
    config = load_config(table, args, {})
    assert config.path is None
    assert config["meter.source"] == "virtual"
    assert config.source("radio.backend") is Source.FLAG


# ------------------------------------------------------------------------------ precedence


def test_environment_beats_file_and_flags_beat_environment(tmp_path):
    text = "[sim]\npath_loss = 90\nnoise_figure = 5\n[log]\nlevel = 'warning'\n"
    env = {"P1LORA_SIM_PATH_LOSS": "110", "P1LORA_LOG_LEVEL": "debug"}
    config = _load(tmp_path, "tx", text, env=env, argv=["--sim-path-loss", "130"])
    assert config["sim.path_loss"] == 130.0
    assert config.origin("sim.path_loss") == "flag --sim-path-loss"
    assert config["log.level"] == "debug"
    assert config.origin("log.level") == "env P1LORA_LOG_LEVEL"
    assert config["sim.noise_figure"] == 5.0
    assert config.source("sim.noise_figure") is Source.FILE


def test_boolean_flags_and_environment(tmp_path):
    config = _load(
        tmp_path,
        "rx",
        env={"P1LORA_MQTT_TLS": "yes"},
        argv=["--no-mqtt-enabled", "--raw-port", "8088"],
    )
    assert config["mqtt.tls"] is True
    assert config["mqtt.enabled"] is False


def test_empty_environment_variable_counts_as_unset(tmp_path):
    config = _load(tmp_path, "rx", "[mqtt]\nhost = 'a.lan'\n", env={"P1LORA_MQTT_HOST": ""})
    assert config["mqtt.host"] == "a.lan"


def test_higher_precedence_alternative_overrides_the_other(tmp_path):
    # The file names a serial port; the command line asks for the virtual meter: the flag wins
    # and the serial port is dropped (with a note), instead of a conflict.
    config = _load(
        tmp_path,
        "tx",
        "[serial]\nport = '/dev/ttyUSB1'\n",
        argv=["--meter", "virtual", "--radio", "sim"],
        base=False,
    )
    assert config["meter.source"] == "virtual"
    assert config["serial.port"] is None
    assert any("serial.port" in note and "--meter" not in note for note in config.notes)
    board = _load(
        tmp_path, "rx", "[radio]\nboard = 'dragino'\n", env={"P1LORA_PINS": "spi=0.1,dio0=22"}
    )
    assert board["radio.board"] is None
    assert board_pins(board) is not None and board_pins(board).spi_device == 1


# ------------------------------------------------------------------------------ bad values

BAD_VALUES = [
    # (role, file text, expected problem, exactly)
    ("rx", "[mqtt]\nport = 70000\n", "mqtt.port: 70000 is not a port number (1-65535)"),
    ("rx", "[mqtt]\nport = 0\n", "mqtt.port: 0 is not a port number (1-65535)"),
    (
        "rx",
        '[mqtt]\nport = "1883"\n',
        'mqtt.port: expected an integer, got the string "1883" (write numbers without quotes)',
    ),
    ("rx", "[mqtt]\nhost = 5\n", "mqtt.host: expected a string, got 5"),
    (
        "rx",
        '[mqtt]\nenabled = "yes"\n',
        'mqtt.enabled: expected true or false, got the string "yes" (write true or false '
        "without quotes)",
    ),
    ("rx", "[mqtt]\nkeepalive = 2\n", "mqtt.keepalive: 2 is outside 5..65535 s"),
    ("rx", "[mqtt]\nqueue_size = [1]\n", "mqtt.queue_size: expected an integer, got an array"),
    ("rx", "[mqtt]\nhost = ''\n", "mqtt.host: must not be empty"),
    ("rx", "[homeassistant]\nexpire_after = 30\n", "homeassistant.expire_after: 30 s is not 0"),
    ("rx", "[raw]\nport = 99999\n", "raw.port: 99999 is not a port number (1-65535)"),
    ("tx", "[radio]\ntx_power = 1.5\n", "radio.tx_power: expected an integer, got 1.5"),
    ("tx", "[radio]\ntx_power = 30\n", "radio.tx_power: 30 is outside 2..20 dBm"),
    ("tx", "[radio]\nregion = 'EU686'\n", 'radio.region: "EU686" is not one of EU868, EU433'),
    ("tx", "[radio]\nfrequency = 869525000\n", "radio.frequency: 8.69525e+08 MHz is outside"),
    ("tx", "[radio]\nfrequency = 868.0\n", "radio.frequency: 868.0000 MHz with 125 kHz"),
    ("tx", "[radio]\nfixed_bw = 200\n", "radio.fixed_bw: 200 kHz is not an SX127x bandwidth"),
    ("tx", "[radio]\nfixed_sf = 13\n", "radio.fixed_sf: 13 is outside 7..12"),
    ("tx", "[radio]\nboard = 'raspberry'\n", "radio.board: unknown board 'raspberry'"),
    ("tx", "[radio]\npins = 'spi=0.0,dio0=10'\n", "radio.pins: dio0 GPIO10 is an SPI0"),
    ("tx", "[radio]\ndio0_pin = 40\n", "radio.dio0_pin: GPIO40 is not a header GPIO"),
    ("tx", "[serial]\nmode = '6'\n", 'serial.mode: "6" is not one of auto, 5, 4, 2.2, 3'),
    ("tx", "[meter]\nsolar = -1\n", "meter.solar: -1.0 is outside 0..50 kWp"),
    ("tx", "[sim]\nloss = 2\n", "sim.loss: 2.0 is outside 0..1"),
    ("tx", "[link]\nlog_backups = -1\n", "link.log_backups: -1 is outside 0..1000"),
    ("tx", "[link]\ninterval = 1e9\n", "link.interval: 1000000000.0 is outside 0..3600 s"),
    ("tx", "[log]\nlevel = 'verbose'\n", 'log.level: "verbose" is not one of debug'),
    ("tx", "[state]\ndir = ''\n", "state.dir: expected a path, got an empty string"),
    ("tx", "[radio]\ntx_power = nan\n", "radio.tx_power: expected an integer, got nan"),
]


@pytest.mark.parametrize(("role", "text", "expected"), BAD_VALUES)
def test_bad_values_name_the_key_and_the_problem(tmp_path, role, text, expected):
    problems = _problems(tmp_path, role, text)
    assert any(p.startswith(expected) for p in problems), problems


def test_region_power_limit_is_checked_per_sub_band(tmp_path):
    problems = _problems(tmp_path, "tx", "[radio]\nfrequency = 868.1\ntx_power = 20\n")
    assert problems == [
        "radio.tx_power: 20 dBm exceeds the 14 dBm allowed in EU868 sub-band h1.4 868.0-868.6 "
        "(25 mW ERP)"
    ]


def test_fixed_setting_must_fit_the_sub_band(tmp_path):
    # 500 kHz does not fit the 250 kHz wide 10 % sub-band around 869.525 MHz.
    problems = _problems(tmp_path, "tx", "[radio]\nmode = 'fixed'\nfixed_sf = 7\nfixed_bw = 500\n")
    assert len(problems) == 1
    assert problems[0].startswith("radio.fixed_bw: ")
    assert "869.5250 MHz with 500 kHz" in problems[0]


def test_all_problems_are_reported_at_once(tmp_path):
    problems = _problems(
        tmp_path,
        "rx",
        "[mqtt]\nport = 70000\nkeepalive = 1\n[raw]\nport = 'x'\n[radio]\ntx_power = 99\n",
    )
    assert len(problems) == 4
    assert {p.split(":")[0] for p in problems} == {
        "mqtt.port",
        "mqtt.keepalive",
        "raw.port",
        "radio.tx_power",
    }


# ------------------------------------------------------------------------------ structure


@pytest.mark.parametrize(
    ("role", "text", "expected"),
    [
        ("rx", "[mqtt]\nprot = 1884\n", "unknown key mqtt.prot; did you mean mqtt.port?"),
        (
            "rx",
            "[mqtt]\nbase_topik = 'x'\n",
            "unknown key mqtt.base_topik; did you mean mqtt.base_topic?",
        ),
        (
            "tx",
            "[radio]\nmode = 'auto'\nbaord = 'dragino'\n",
            "unknown key radio.baord; did you mean radio.board?",
        ),
        (
            "rx",
            "[raw]\nkey_file = 'k'\n",
            "unknown key raw.key_file; did you mean mqtt.key_file or link.key_file?",
        ),
        ("rx", "[mqtx]\nhost = 'x'\n", "unknown section [mqtx]; did you mean [mqtt]?"),
        ("tx", "[mqtt]\nhost = 'x'\n", "unknown section [mqtt]"),
        ("rx", "port = 1883\n", 'key "port" is outside any section; did you mean mqtt.port'),
        ("rx", "mqtt = 5\n", "mqtt must be a section ([mqtt]), not a value"),
        ("rx", "[mqtt.tls]\nenabled = true\n", "mqtt.tls: expected true or false, got a table"),
    ],
)
def test_unknown_keys_and_sections_are_errors_with_suggestions(tmp_path, role, text, expected):
    problems = _problems(tmp_path, role, text, base=False)
    assert any(p.startswith(expected) for p in problems), problems


#: Odd shapes at the top level and inside sections (both roles): each is one clear problem
#: that names the key, never a crash (a crash under systemd means restarting forever).
ODD_SHAPES = [
    ("bogus = 1\n", 'key "bogus" is outside any section; put it under one of [', "bogus"),
    ("bogus = [1, 2]\n", 'key "bogus" is outside any section', "bogus"),
    ("bogus = []\n", 'key "bogus" is outside any section', "bogus"),
    ("bogus = 1979-05-27\n", 'key "bogus" is outside any section', "bogus"),
    ("prot = 1\n", 'key "prot" is outside any section; did you mean ', "prot"),
    ("[bogus]\nx = 1\n", "unknown section [bogus] (known: [", "[bogus]"),
    ("[[bogus]]\nx = 1\n", "unknown section [[bogus]] (known: [", "[[bogus]]"),
    ("[[radio]]\nregion = 'EU868'\n", "[[radio]] is an array of tables", "[[radio]]"),
    ("radio = 1\n", "radio must be a section ([radio]), not a value", "radio"),
    ("radio = [1]\n", "radio must be a section ([radio]), not a value", "radio"),
    ("[radio]\nbogus = 1\n", "unknown key radio.bogus", "radio.bogus"),
    ("[radio]\nregion = 868\n", "radio.region: expected one of ", "radio.region"),
    ("[radio]\nregion = ['EU868']\n", "radio.region: expected one of ", "radio.region"),
    ("[radio.sub]\nx = 1\n", "unknown key radio.sub", "radio.sub"),
    ("[[radio.sub]]\nx = 1\n", "unknown key radio.sub", "radio.sub"),
    ("[radio]\ntx_power = 1e300\n", "radio.tx_power: expected an integer, got 1e+300", ""),
    ("[radio]\nfrequency = 1" + "0" * 400 + "\n", "radio.frequency: expected a finite", ""),
    ("[radio]\ntx_power = 1" + "0" * 5000 + "\n", "is not valid TOML: a number is too long", ""),
    ("[state]\ndir = '~nosuchuser-p1lora/x'\n", "state.dir: cannot expand ~", ""),
]


@pytest.mark.parametrize("role", ["tx", "rx"])
@pytest.mark.parametrize(("text", "expected", "names"), ODD_SHAPES)
def test_odd_shapes_are_problems_not_crashes(tmp_path, role, text, expected, names):
    problems = _problems(tmp_path, role, text)
    assert any(expected in p and names in p for p in problems), problems


def test_a_secret_of_the_wrong_type_names_only_its_type(tmp_path):
    problems = _problems(tmp_path, "rx", "[mqtt]\npassword = 2026-11-24\n")
    assert problems == ["mqtt.password: expected a string, got a date"]


@pytest.mark.parametrize("role", ["tx", "rx"])
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(document=documents)
def test_any_toml_document_loads_or_names_its_problems(tmp_path_factory, role, document):
    """Whatever a TOML file holds, loading gives a Config or a ConfigError, nothing else."""
    path = tmp_path_factory.mktemp("odd") / f"{role}.toml"
    path.write_text(toml_document(document), encoding="utf-8")
    try:
        load_config(table_for(role), None, BASE[role], path=path)
    except ConfigError as exc:
        assert exc.problems
        assert all(isinstance(p, str) and p for p in exc.problems)


def test_bad_toml_syntax_names_the_line(tmp_path):
    problems = _problems(tmp_path, "rx", "[mqtt]\nhost = 'a'\nport 1883\n", base=False)
    assert len(problems) == 1
    assert "is not valid TOML" in problems[0]
    assert "line 3" in problems[0]


def test_non_utf8_file_is_refused(tmp_path):
    path = tmp_path / "rx.toml"
    path.write_bytes(b"[mqtt]\nhost = '\xff'\n")
    with pytest.raises(ConfigError, match=r"is not UTF-8 text \(line 2\)"):
        load_config(RX_OPTIONS, None, {}, path=path)


def test_missing_explicit_file_is_an_error(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope.toml does not exist \(given by --config\)"):
        load_config(RX_OPTIONS, _parse(RX_OPTIONS, ["--config", str(missing)]), {})
    with pytest.raises(ConfigError, match=r"given by \$P1LORA_CONFIG"):
        load_config(RX_OPTIONS, _parse(RX_OPTIONS, []), {"P1LORA_CONFIG": str(missing)})
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(RX_OPTIONS, None, {}, path=tmp_path)


# ------------------------------------------------------------------------------ env and flags


def test_bad_environment_and_flag_values_name_their_origin(tmp_path):
    problems = _problems(
        tmp_path,
        "rx",
        env={"P1LORA_MQTT_PORT": "http", "P1LORA_MQTT_TLS": "maybe"},
        argv=["--raw-port", "70000", "--radio-tx-power", "x"],
    )
    assert sorted(problems) == sorted(
        [
            'mqtt.port (from $P1LORA_MQTT_PORT): expected an integer, got "http"',
            "mqtt.tls (from $P1LORA_MQTT_TLS): expected true or false (also yes/no, on/off, 1/0), "
            'got "maybe"',
            "raw.port (from --raw-port): 70000 is not a port number (1-65535)",
            'radio.tx_power (from --radio-tx-power): expected an integer, got "x"',
        ]
    )


# ------------------------------------------------------------------------------ conflicts


@pytest.mark.parametrize(
    ("role", "text", "expected"),
    [
        (
            "rx",
            "[radio]\nboard = 'dragino'\npins = 'spi=0.1'\n",
            "radio.board and radio.pins are both set (file)",
        ),
        (
            "rx",
            "[radio]\nboard = 'dragino'\ndio0_pin = 4\n",
            "radio.board and radio.dio0_pin are both set",
        ),
        (
            "tx",
            "[serial]\nport = '/dev/ttyS0'\n[meter]\nsource = 'virtual'\n[radio]\nbackend = 'sim'\n",
            "serial.port and meter.source are both set (file)",
        ),
        (
            "rx",
            "[mqtt]\nusername = 'u'\npassword = 'p'\npassword_file = '/x'\n",
            "mqtt.password and mqtt.password_file are both set",
        ),
        (
            "tx",
            "[radio]\nmode = 'fixed'\nfixed_sf = 9\n",
            'radio.mode is "fixed" but radio.fixed_bw not set',
        ),
        ("tx", "[radio]\nfixed_sf = 9\n", 'radio.fixed_sf set but radio.mode is "auto"'),
        ("rx", "[mqtt]\npassword = 'p'\n", "mqtt: mqtt password is set but username is not"),
        ("rx", "[mqtt]\npassword_file = '/x'\n", "mqtt: mqtt password is set but username is not"),
        ("rx", "[mqtt]\nenabled = false\n", "mqtt.enabled is false and raw.port is not set"),
        ("rx", "[mqtt]\nkey_file = '/k'\n", "mqtt: mqtt TLS key_file is set but cert_file is not"),
    ],
)
def test_conflicting_options(tmp_path, role, text, expected):
    problems = _problems(tmp_path, role, text, base=role == "rx")
    assert any(p.startswith(expected) for p in problems), problems


def test_sx127x_needs_a_board_and_tx_needs_a_source(tmp_path):
    problems = _problems(tmp_path, "tx", "", base=False)
    assert any(p.startswith("radio.board: not set: name your LoRa HAT") for p in problems)
    assert any(p.startswith("serial.port: no P1 source") for p in problems)
    custom = _problems(tmp_path, "rx", "[radio]\nspi_device = 0\nreset_pin = 8\n", base=False)
    assert any("GPIO8 is the chip enable of /dev/spidev0.0" in p for p in custom), custom


# ------------------------------------------------------------------------------ secrets


def test_secrets_never_appear_in_messages_or_output(tmp_path):
    secret = "pw-\u00e9-123456"
    problems = _problems(tmp_path, "rx", f"[mqtt]\npassword = '{secret}'\n")
    assert not any(secret in p for p in problems)
    config = _load(tmp_path, "rx", f"[mqtt]\nusername = 'u'\npassword = '{secret}'\n")
    assert secret not in config.render()
    assert '"<redacted>"' in config.render()
    assert secret not in repr(config)
    assert secret in config.render(redact=False)
    # A wrong type for a secret does not echo the value either.
    typed = _problems(tmp_path, "rx", "[mqtt]\nusername = 'u'\npassword = 31415926\n")
    assert typed == ["mqtt.password: expected a string, got an integer"]
    env = _problems(tmp_path, "rx", env={"P1LORA_MQTT_PASSWORD": "x", "P1LORA_MQTT_PORT": "x"})
    assert all('x"' not in p or p.startswith("mqtt.port") for p in env)


def test_secrets_have_no_command_line_flag():
    parser = argparse.ArgumentParser()
    RX_OPTIONS.add_arguments(parser)
    assert not re.search(r"--mqtt-password(?!-file)", parser.format_help())
    assert "--mqtt-password-file" in parser.format_help()


# ------------------------------------------------------------------------------ the table


@pytest.mark.parametrize("table", [TX_OPTIONS, RX_OPTIONS], ids=["tx", "rx"])
def test_help_documents_every_flag_and_variable(table):
    parser = argparse.ArgumentParser(allow_abbrev=False)
    table.add_arguments(parser)
    text = " ".join(parser.format_help().split())
    for option in table.options:
        assert f"${option.env_name}" in text
        assert f"[{option.section}] {option.key}" in text
        if option.cli:
            assert option.flag_name in text


def test_flags_and_environment_are_derived_from_the_row():
    port = RX_OPTIONS["mqtt.port"]
    assert (port.flag_name, port.env_name) == ("--mqtt-port", "P1LORA_MQTT_PORT")
    key = TX_OPTIONS["link.key_file"]
    assert (key.flag_name, key.env_name) == ("--key-file", "P1LORA_KEY_FILE")
    assert TX_OPTIONS["sim.port"].env_name == "P1LORA_SIM_PORT"  # as the UDP channel reads it
    assert TX_OPTIONS["log.level"].env_name == "P1LORA_LOG_LEVEL"  # as logging_setup reads it


@pytest.mark.parametrize(("role", "name"), [("tx", "tx.toml"), ("rx", "rx.toml")])
def test_example_configs_are_generated_from_the_table(role, name):
    """deploy/config/*.toml hold every option; regenerate them with render_example()."""
    path = ROOT / "deploy" / "config" / name
    table = table_for(role)
    assert path.read_text() == render_example(table), (
        f"{path} is out of date: write render_example(table_for({role!r})) to it"
    )
    text = path.read_text()
    for option in table.options:
        assert f"#{option.key} =" in text or f"\n{option.key} =" in text, option.name
        assert f"${option.env_name}" in text


@pytest.mark.parametrize("role", ["tx", "rx"])
def test_example_configs_load(tmp_path, role):
    config = load_config(
        table_for(role), None, {}, path=ROOT / "deploy" / "config" / f"{role}.toml"
    )
    assert config["link.key_file"] == Path("/etc/p1-lora/key")
    assert config["radio.board"] == "dragino"


def test_custom_wiring_in_the_hardware_docs_loads(tmp_path):
    text = (ROOT / "docs" / "hardware.md").read_text()
    block = re.search(r"### Custom wiring.*?```toml\n(.*?)```", text, re.DOTALL)
    assert block is not None
    path = tmp_path / "rx.toml"
    path.write_text(block.group(1))
    pins = board_pins(load_config(RX_OPTIONS, None, {}, path=path))
    assert pins is not None
    assert (pins.spi_bus, pins.spi_device, pins.cs_gpio, pins.reset_gpio, pins.dio0_gpio) == (
        0,
        0,
        25,
        17,
        4,
    )
    assert pins.pa_boost


# ------------------------------------------------------------------------------ raw server


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("999.1.1.1", "raw.host: 999.1.1.1 is not an IPv4 address"),
        ("10.0.0", "raw.host: 10.0.0 is not an IPv4 address"),
        ("::g", "raw.host: ::g is not an IPv6 address"),
        ("my host", "raw.host: 'my host' is not an IP address or host name"),
        ("-bad.lan", "raw.host: '-bad.lan' is not an IP address or host name"),
        (" ", "raw.host: must not be empty"),
    ],
)
def test_raw_host_must_look_like_an_address(tmp_path, host, expected):
    flag = expected.replace("raw.host:", "raw.host (from --raw-host):")
    problems = _problems(tmp_path, "rx", argv=["--raw-port", "8088", f"--raw-host={host}"])
    assert any(p.startswith(flag) for p in problems), problems
    from_file = _problems(tmp_path, "rx", f"[raw]\nport = 8088\nhost = {json.dumps(host)}\n")
    assert any(p.startswith(expected) for p in from_file), from_file


@pytest.mark.parametrize("host", ["0.0.0.0", "127.0.0.1", "::", "::1", "localhost", "p1-home.lan"])
def test_raw_host_accepts_addresses_and_names(tmp_path, host):
    config = _load(tmp_path, "rx", f"[raw]\nport = 8088\nhost = {json.dumps(host)}\n")
    assert config["raw.host"] == host


def test_a_failed_listen_names_the_option_at_fault():
    """Binding fails at start: an address this machine lacks is raw.host's fault, a port in
    use raw.port's (the message used to blame raw.port for both)."""
    with pytest.raises(OSError) as lacking:
        RawTelegramServer("192.0.2.1", 0).start()  # TEST-NET-1: never a local address
    assert raw_listen_problem(lacking.value).startswith("raw.host: raw telegram server cannot")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError) as in_use:
            RawTelegramServer("127.0.0.1", port).start()
    assert raw_listen_problem(in_use.value).startswith("raw.port: ")
    assert "already in use" in raw_listen_problem(in_use.value)


_ODD_VALUES = (True, 10**30, 10**400, 1e300, float("nan"), "", "~nosuchuser-p1lora/x", [], {"a": 1})
_ODD_TEXTS = ("", " ", "9" * 5000, "nan", "1e999", "~nosuchuser-p1lora/x", "\u00e9")


@pytest.mark.parametrize("role", ["tx", "rx"])
def test_every_option_with_odd_values_gives_problems_not_crashes(tmp_path, role):
    """Each option in turn, from the file and from the environment, with values of the wrong
    type or out of any range: a `ConfigError` naming the option, or a valid config."""
    table = table_for(role)
    path = tmp_path / f"{role}.toml"
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    for option in table.options:
        for value in _ODD_VALUES:
            path.write_text(f"[{option.section}]\n{option.key} = {toml_value(value)}\n")
            try:
                load_config(table, None, BASE[role], path=path)
            except ConfigError as exc:
                assert exc.problems, option.name
        for text in _ODD_TEXTS:
            try:
                load_config(table, None, {**BASE[role], option.env_name: text}, path=empty)
            except ConfigError as exc:
                assert exc.problems, option.name
