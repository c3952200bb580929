"""The options both daemons share, the sections they read them through, and the builders that
turn a checked `Config` into the link's objects.

The rows are the single source of truth for the config files, the flags, the environment
variables, `--help`, `p1-lora config check` and the example configs in `deploy/config/`
(see `p1lora.service.config` for how one row becomes all of those).

What belongs to which side:

- both (here): `[radio]` (backend, board or custom pins, region, channel, power), `[sim]` (the
  simulated radio), `[link]` (key file, link-quality log), `[state]`, `[log]`, and the
  transmitter's radio mode and interval rows (auto-tune or fixed settings: the transmitter
  decides, the receiver follows its SWITCH frames), which `link_config` reads;
- transmitter (`p1lora.transmitter.options`): `[serial]` (the P1 port) or `[meter]` (built-in
  virtual meter or capture replay);
- receiver (`p1lora.receiver.options`): `[mqtt]`, `[homeassistant]`, `[raw]`.

Each daemon assembles its table with `daemon_table`: its own rows first, then the shared ones.
This module imports neither daemon, so loading the receiver never loads pyserial.

Code reads options through frozen per-section dataclasses (`RadioSection.of(config)` and
friends, see `Section`), not through "section.key" strings, so a misspelt key is a type error.

Region, channel and the protocol rules must match on both ends; the cross-checks here verify
each side's own settings against the region's rules before anything touches a radio.
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Final, Self

from p1lora.common.link import FixedRadio, LinkConfig, RadioMode
from p1lora.common.link.config import HIGH_POWER_MAX_DUTY_CYCLE, max_power_for_duty_cycle
from p1lora.common.radio_types import BANDWIDTHS_HZ
from p1lora.common.regions import (
    DEFAULT_REGION,
    REGIONS,
    Region,
    RegionError,
    SubBand,
    get_region,
)
from p1lora.hardware.boards import (
    BOARD_ALIASES,
    BOARDS,
    BoardPins,
    get_board,
    module_problem,
    parse_pins,
)
from p1lora.hardware.factory import BACKENDS
from p1lora.hardware.udp_channel import UdpSimOptions
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

__all__ = [
    "DEFAULT_STATE_DIR",
    "KEY_CREDENTIAL",
    "LinkSection",
    "LogSection",
    "RadioSection",
    "Section",
    "SimSection",
    "StateSection",
    "board_pins",
    "chip_tx_power",
    "daemon_table",
    "fixed_radio",
    "link_config",
    "sim_options",
]

logger = logging.getLogger(__name__)

DEFAULT_STATE_DIR: Final = Path("/var/lib/p1-lora")
#: systemd credential name (LoadCredential=NAME:PATH in the units).
KEY_CREDENTIAL: Final = "p1lora-key"

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


def _sub_band_syntax(value: str) -> str | None:
    """A sub-band name or range some region knows (the region's own check is `_link_problems`)."""
    if any(band.matches(value) for region in REGIONS.values() for band in region.sub_bands):
        return None
    return (
        f"{value!r} names no sub-band; write its range in MHz as `p1-lora airtime` prints it "
        "(e.g. 868.0-868.6) or its short name (h1.4)"
    )


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


# ---------------------------------------------------------------------------------- rows

_BOARD_NAMES = ", ".join([*BOARDS, *BOARD_ALIASES])

_RADIO_COMMON: Final = (
    Option(
        "radio",
        "backend",
        choice(*BACKENDS),
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
        "channel",
        STRING,
        None,
        'a sub-band instead of a frequency, as `p1-lora airtime` names it ("868.0-868.6" or '
        '"h1.4"): the link chooses centre and bandwidth inside it from the measured margin '
        "(868.0-868.6 allows BW500 at 868.3 MHz); must be the same on both sides; exclusive "
        "with radio.frequency",
        check=_sub_band_syntax,
        metavar="SUB-BAND",
        sample="868.0-868.6",
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
        "radio = sim: loopback UDP port where simulated radios meet (default 24576 + the "
        "key's network id modulo 8192: pairs with different keys do not hear each other)",
        check=port_number,
        metavar="PORT",
        sample=47900,
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
        7.0,  # SX1276 datasheet Table 38 at 868/915 MHz (hardware.interference)
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
    Option(
        "link",
        "batch",
        INTEGER,
        3,
        "an update frame carries up to N telegrams: those read since the last frame, where "
        "the duty cycle or a crowded channel spaces frames (1: only the newest)",
        check=in_range(1, 16),
        metavar="N",
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

_SECTIONS_COMMON: Final = {
    "radio": "The LoRa radio and the channel.",
    "sim": "The simulated radio (radio = sim only).",
    "link": "The encrypted link and its diagnostics.",
    "state": "Persistent state.",
    "log": "Logging.",
}


# ---------------------------------------------------------------------------------- sections


class Section:
    """Base of the frozen dataclasses that hold one config section, typed.

    A subclass names its `SECTION` and declares one field per key, with the type the option's
    kind produces. `of` copies the checked values in, once per config (a `Config` does not
    change after loading); a key the daemon's table lacks (the receiver has no `[radio] mode`)
    keeps the field's default.
    """

    SECTION: ClassVar[str]

    @classmethod
    def of(cls, config: Config) -> Self:
        built = _SECTIONS.setdefault(config, {})
        section = built.get(cls)
        if not isinstance(section, cls):
            values: dict[str, Any] = {}
            for field in dataclasses.fields(cls):  # type: ignore[arg-type]
                name = f"{cls.SECTION}.{field.name}"
                if name in config.table:
                    values[field.name] = config[name]
            section = built[cls] = cls(**values)
        return section


#: The sections built from each config (see `Section.of`); gone with the config.
_SECTIONS: Final[weakref.WeakKeyDictionary[Config, dict[type[Section], Section]]] = (
    weakref.WeakKeyDictionary()
)


@dataclasses.dataclass(frozen=True, slots=True)
class RadioSection(Section):
    """`[radio]`."""

    SECTION: ClassVar[str] = "radio"
    backend: str = "sx127x"
    board: str | None = None
    pins: str | None = None
    spi_bus: int | None = None
    spi_device: int | None = None
    nss_pin: int | None = None
    reset_pin: int | None = None
    dio0_pin: int | None = None
    pa_boost: bool | None = None
    region: str = DEFAULT_REGION
    frequency: float | None = None
    channel: str | None = None
    tx_power: int | None = None
    #: The transmitter's only (the receiver follows the transmitter's settings).
    mode: str | None = None
    fixed_sf: int | None = None
    fixed_bw: float | None = None

    @property
    def channel_hz(self) -> int | None:
        """The configured channel centre in Hz (None: the region's default)."""
        return round(self.frequency * 1e6) if self.frequency is not None else None

    def sub_band(self, region: Region) -> SubBand:
        """The sub-band the link uses: the one `channel` names, else the one the channel
        falls in (RegionError when neither fits)."""
        if self.channel is not None:
            return region.named_sub_band(self.channel)
        channel = region.default_frequency_hz if self.channel_hz is None else self.channel_hz
        return region.sub_band_for(channel, region.rendezvous_bw_hz)

    def rendezvous_hz(self, region: Region) -> int:
        """Where the handshake happens (the band's middle when the link picks the channel:
        close enough for a module's frequency range)."""
        if self.channel is not None:
            band = region.named_sub_band(self.channel)
            return (band.low_hz + band.high_hz) // 2
        return self.channel_hz or region.default_frequency_hz


@dataclasses.dataclass(frozen=True, slots=True)
class SimSection(Section):
    """`[sim]`."""

    SECTION: ClassVar[str] = "sim"
    port: int | None = None
    path_loss: float | None = None
    noise_figure: float = 6.0
    fading: float = 0.0
    loss: float = 0.0
    seed: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class LinkSection(Section):
    """`[link]` (`interval` is the transmitter's only)."""

    SECTION: ClassVar[str] = "link"
    key_file: Path | None = None
    log: Path | None = None
    log_max_bytes: int = 5_000_000
    log_backups: int = 5
    interval: float | None = None
    batch: int = 3


@dataclasses.dataclass(frozen=True, slots=True)
class StateSection(Section):
    """`[state]`."""

    SECTION: ClassVar[str] = "state"
    dir: Path = DEFAULT_STATE_DIR


@dataclasses.dataclass(frozen=True, slots=True)
class LogSection(Section):
    """`[log]`."""

    SECTION: ClassVar[str] = "log"
    level: str = "info"


# ---------------------------------------------------------------------------------- checks


def _link_problems(config: Config, role: str) -> Iterator[str]:
    """Region, channel, power and fixed settings against the region's rules.

    Logs (does not refuse) the region's legal caveat and a power capped to the chip's rating.
    """
    radio = RadioSection.of(config)
    region = get_region(radio.region)
    if region.caveat:
        logger.warning("radio.region %s: %s", region.name, region.caveat)
    try:
        band = radio.sub_band(region)
    except RegionError as exc:
        yield f"radio.{'frequency' if radio.channel is None else 'channel'}: {exc}"
        return
    power = radio.tx_power
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
        mode_problems = list(_mode_problems(config, radio))
        if mode_problems:
            yield from mode_problems
            return
    try:
        link_config(config, role)
    except (ValueError, RegionError) as exc:
        key = "radio.fixed_bw" if role == "tx" and config.is_set("radio.fixed_bw") else "radio"
        yield f"{key}: {exc}"


_FIXED_KEYS: Final = ("radio.fixed_sf", "radio.fixed_bw")


def _mode_problems(config: Config, radio: RadioSection) -> Iterator[str]:
    fixed_keys = [n for n in _FIXED_KEYS if config.is_set(n)]
    if radio.mode == "fixed":
        values = (radio.fixed_sf, radio.fixed_bw)
        missing = [n for n, v in zip(_FIXED_KEYS, values, strict=True) if v is None]
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
    if RadioSection.of(config).backend == "sx127x" and not (
        config.is_set("radio.board") or config.is_set("radio.pins")
    ):
        yield (
            f"radio.board: not set: name your LoRa HAT ({', '.join(BOARDS)}) or give custom "
            "pins (radio.pins, or radio.dio0_pin and friends); for a test without hardware "
            "use radio.backend = sim (--radio sim)"
        )


def _module_problems(config: Config) -> Iterator[str]:
    """A board whose module cannot serve the channel or the rendezvous SF (an RFM96W/98W on
    868 MHz, an RFM97W's SF6-SF9 against an SF12 rendezvous): refused, see docs/hardware.md."""
    try:
        pins = board_pins(config)
        radio = RadioSection.of(config)
        region = get_region(radio.region)
    except (ValueError, RegionError):
        return  # reported by the other checks
    module = pins.radio_module if pins is not None else None
    if pins is None or module is None:
        return
    channel = radio.rendezvous_hz(region)
    sfs = [region.rendezvous_sf]
    if radio.fixed_sf is not None:
        sfs.append(radio.fixed_sf)
    problem = module_problem(module, channel, tuple(sfs))
    if problem is not None:
        yield f"radio.board ({pins.name}): {problem}"


def _common_checks(role: str) -> Callable[[Config], Iterator[str]]:
    def check(config: Config) -> Iterator[str]:
        yield from _pin_problems(config)
        yield from _module_problems(config)
        yield from _link_problems(config, role)

    return check


_CHANNEL_CHOICE: Final = Exclusive(
    (("radio.frequency",), ("radio.channel",)),
    "pin a frequency or name a sub-band for the link to choose the channel in, not both",
)

_PIN_CHOICE: Final = Exclusive(
    (("radio.board",), ("radio.pins",), _CUSTOM_PINS),
    "choose a board, or custom pins (either radio.pins or the separate pin keys)",
)


# ---------------------------------------------------------------------------------- tables


def daemon_table(
    *,
    program: str,
    role: str,
    intro: str,
    options: Iterable[Option],
    sections: Mapping[str, str],
    exclusive: Iterable[Exclusive] = (),
    checks: Iterable[Callable[[Config], Iterable[str]]] = (),
) -> OptionTable:
    """One daemon's table: its own rows and sections first, then the shared ones.

    The transmitter also gets the radio mode and interval rows (`role` "tx"). The shared
    checks (pins, then region and channel) run before the daemon's own `checks`.
    """
    tx = role == "tx"
    return OptionTable(
        program=program,
        role=role,
        default_path=Path(f"/etc/p1-lora/{role}.toml"),
        options=(
            *options,
            *_RADIO_COMMON,
            *(_RADIO_TX if tx else ()),
            *_SIM,
            *_LINK_COMMON,
            *(_LINK_TX if tx else ()),
            *_STATE_LOG,
        ),
        sections={**sections, **_SECTIONS_COMMON},
        exclusive=(_PIN_CHOICE, _CHANNEL_CHOICE, *exclusive),
        checks=(_common_checks(role), *checks),
        intro=intro,
    )


# ---------------------------------------------------------------------------------- builders


def fixed_radio(config: Config) -> FixedRadio | None:
    """Fixed-mode settings from [radio] fixed_sf/fixed_bw (None in auto mode)."""
    radio = RadioSection.of(config)
    if radio.mode != "fixed":
        return None
    sf, bw = radio.fixed_sf, radio.fixed_bw
    if sf is None or bw is None:
        raise ValueError("fixed radio mode needs radio.fixed_sf and radio.fixed_bw")
    bw_hz = _bw_hz(bw)
    if bw_hz is None:
        raise ValueError(f"{bw:g} kHz is not an SX127x bandwidth")
    power = radio.tx_power
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
    radio = RadioSection.of(config)
    region = get_region(radio.region)
    band = radio.sub_band(region)
    wanted = radio.tx_power
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
    radio = RadioSection.of(config)
    fixed = fixed_radio(config)
    link = LinkSection.of(config)
    interval = link.interval
    return LinkConfig(
        region=get_region(radio.region),
        frequency_hz=radio.channel_hz,
        sub_band_name=radio.channel,
        tx_power_dbm=chip_tx_power(config)[0],
        mode=RadioMode.FIXED if fixed is not None else RadioMode.AUTO,
        fixed=fixed,
        min_interval_s=interval if role == "tx" and interval is not None else 0.0,
        batch_max=link.batch if role == "tx" else 1,
    )


def board_pins(config: Config) -> BoardPins | None:
    """The wiring: a named board, a pin spec, the separate pin keys, or None (unset)."""
    radio = RadioSection.of(config)
    if radio.board is not None:
        return get_board(radio.board)
    if radio.pins is not None:
        return parse_pins(radio.pins)
    if not any(config.is_set(n) for n in _CUSTOM_PINS):
        return None
    return BoardPins(
        "custom",
        "custom wiring",
        spi_bus=radio.spi_bus or 0,
        spi_device=radio.spi_device or 0,
        cs_gpio=radio.nss_pin,
        reset_gpio=radio.reset_pin,
        dio0_gpio=radio.dio0_pin,
        pa_boost=True if radio.pa_boost is None else radio.pa_boost,
    )


def sim_options(config: Config, network_id: bytes | None = None) -> UdpSimOptions:
    """The simulated channel's per-process settings ([sim]); `network_id` (the key's) picks
    the default port."""
    sim = SimSection.of(config)
    return UdpSimOptions(
        network_id=network_id,
        port=sim.port,
        path_loss_db=sim.path_loss,
        noise_figure_db=sim.noise_figure,
        fading_sigma_db=sim.fading,
        loss_probability=sim.loss,
        seed=sim.seed,
    )
