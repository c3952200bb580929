"""Region rules as data: sub-bands, duty cycle, power, dwell time, default channel.

Radio regulations differ per region and per sub-band inside a region, and they must never be
code paths: the link asks "which sub-band does this frequency fall in, and what does it allow",
and the answer comes from the tables below. A new region is a new row.

Power limits are radiated (ERP, or EIRP where the rule says so); `max_tx_power_dbm` is the
conducted power that stays inside the limit with a 0 dBd (2.15 dBi) antenna, capped at the
SX127x's +20 dBm. A higher-gain antenna must lower it (see the deployment docs). Where a
sub-band allows more than 1 % duty cycle, the chip itself is rated for +17 dBm only (its +20 dBm
mode is a 1 % mode; `p1lora.hardware.sx127x.max_power_for_duty_cycle`), so the defaults there
are 17 dBm and the daemons cap a higher `tx_power` with a WARNING.

Sources: ETSI EN 300 220 / ERC Recommendation 70-03 annex 1 (EU 433/868), FCC 47 CFR 15.247
and 15.249 (US 902-928; see the US915 caveat), the LoRaWAN Regional Parameters (channel plans
and dwell limits per region).
"""

from __future__ import annotations

from dataclasses import dataclass

from p1lora.common.radio_types import RadioSettings

__all__ = ["DEFAULT_REGION", "REGIONS", "Region", "RegionError", "SubBand", "get_region"]

HOUR = 3600.0


class RegionError(ValueError):
    """A frequency or setting that the region's rules do not allow."""


@dataclass(frozen=True, slots=True)
class SubBand:
    """A frequency range with one set of rules.

    `duty_cycle` is the fraction of `window_s` a transmitter may be on air (1.0: no limit).
    `max_dwell_s` limits a single frame's time on air (US915's 400 ms), None for no limit.
    `guard_hz` is kept free at each edge by the channels the link chooses itself when a user
    names the sub-band instead of a frequency (`p1lora.common.channel_plan`); a pinned
    frequency only has to fit (`contains`).
    """

    name: str
    low_hz: int
    high_hz: int
    duty_cycle: float
    max_erp_mw: float
    max_tx_power_dbm: int
    max_bw_hz: int = 500_000
    window_s: float = HOUR
    max_dwell_s: float | None = None
    guard_hz: int = 0
    note: str = ""

    def contains(self, frequency_hz: int, bw_hz: int = 0) -> bool:
        """True when a signal of `bw_hz` centred on `frequency_hz` fits entirely in the band."""
        half = bw_hz / 2
        return self.low_hz <= frequency_hz - half and frequency_hz + half <= self.high_hz

    def range_label(self) -> str:
        """'868.0-868.6': the range as people write it (no trailing zeros past one decimal)."""
        return f"{_mhz(self.low_hz)}-{_mhz(self.high_hz)}"

    def matches(self, text: str) -> bool:
        """Whether `text` names this sub-band: its full name ('h1.4 868.0-868.6'), its short
        name ('h1.4') or its range in MHz ('868.0-868.6', '868-868.6'), case-insensitive."""
        wanted = " ".join(text.split()).lower()
        if wanted in (self.name.lower(), self.name.split()[0].lower()):
            return True
        low, sep, high = wanted.replace(" ", "").partition("-")
        try:
            low_hz, high_hz = round(float(low) * 1e6), round(float(high) * 1e6)
        except (ValueError, OverflowError):  # not a number, or inf/nan
            return False
        return bool(sep) and (low_hz, high_hz) == (self.low_hz, self.high_hz)

    @property
    def airtime_per_window_s(self) -> float:
        return self.duty_cycle * self.window_s

    def describe(self) -> str:
        limit = "no duty cycle" if self.duty_cycle >= 1 else f"{self.duty_cycle:.1%} duty cycle"
        if self.window_s != HOUR and self.duty_cycle < 1:
            limit += f" per {self.window_s:g} s"
        dwell = f", max {self.max_dwell_s * 1000:g} ms per frame" if self.max_dwell_s else ""
        return (
            f"{self.name} {self.low_hz / 1e6:.3f}-{self.high_hz / 1e6:.3f} MHz: {limit}, "
            f"{self.max_erp_mw:g} mW, up to {self.max_tx_power_dbm} dBm conducted{dwell}"
        )


@dataclass(frozen=True, slots=True)
class Region:
    """A regulatory region: its sub-bands, default channel and rendezvous modulation.

    The rendezvous setting is where a transmitter and a receiver that know nothing about each
    other meet: the most robust modulation a single frame of the handshake may legally use.
    """

    name: str
    description: str
    sub_bands: tuple[SubBand, ...]
    default_frequency_hz: int
    rendezvous_sf: int = 12
    rendezvous_bw_hz: int = 125_000
    default_tx_power_dbm: int = 14
    #: Where the profile is not (or not always) legal as p1-lora uses it: said as a WARNING
    #: whenever the region is chosen (daemon start, `config check`, `p1-lora airtime`).
    caveat: str = ""

    def sub_band_for(self, frequency_hz: int, bw_hz: int = 0) -> SubBand:
        """The sub-band a channel falls in; RegionError when it is outside every sub-band."""
        for band in self.sub_bands:
            if band.contains(frequency_hz, bw_hz):
                return band
        ranges = ", ".join(f"{b.low_hz / 1e6:.3f}-{b.high_hz / 1e6:.3f}" for b in self.sub_bands)
        raise RegionError(
            f"{frequency_hz / 1e6:.4f} MHz"
            + (f" with {bw_hz / 1e3:g} kHz bandwidth" if bw_hz else "")
            + f" does not fit a {self.name} sub-band ({ranges} MHz)"
        )

    def named_sub_band(self, text: str) -> SubBand:
        """The sub-band `text` names (`SubBand.matches`); RegionError listing this region's."""
        for band in self.sub_bands:
            if band.matches(text):
                return band
        names = ", ".join(f"{b.range_label()} ({b.name.split()[0]})" for b in self.sub_bands)
        raise RegionError(
            f"{text!r} is not a {self.name} sub-band; write one of {names} "
            "(or a frequency in MHz with radio.frequency)"
        )

    def check(self, settings: RadioSettings) -> SubBand:
        """Validate settings against the rules; return the sub-band they use."""
        band = self.sub_band_for(settings.frequency_hz, settings.bw_hz)
        if settings.bw_hz > band.max_bw_hz:
            raise RegionError(
                f"{settings.bw_khz:g} kHz is wider than {band.name} allows "
                f"({band.max_bw_hz / 1e3:g} kHz)"
            )
        if settings.tx_power_dbm > band.max_tx_power_dbm:
            raise RegionError(
                f"{settings.tx_power_dbm} dBm exceeds {band.name}'s "
                f"{band.max_tx_power_dbm} dBm ({band.max_erp_mw:g} mW)"
            )
        return band

    def rendezvous(self, frequency_hz: int | None = None) -> RadioSettings:
        """The settings both ends use until they have agreed on something faster."""
        frequency = frequency_hz or self.default_frequency_hz
        band = self.sub_band_for(frequency, self.rendezvous_bw_hz)
        return RadioSettings(
            frequency_hz=frequency,
            sf=self.rendezvous_sf,
            bw_hz=self.rendezvous_bw_hz,
            tx_power_dbm=min(self.default_tx_power_dbm, band.max_tx_power_dbm),
        )


def _mhz(hz: int) -> str:
    text = f"{hz / 1e6:.4f}".rstrip("0")
    return text + "0" if text.endswith(".") else text


#: EU868's 1 % sub-bands keep the edge guard of LoRaWAN's default channels: 868.10 MHz at
#: 125 kHz leaves 37.5 kHz to 868.0 MHz (LoRaWAN Regional Parameters RP002-1.0.4, EU863-870
#: "default channels"), room for the skirts of the chirp spectrum and crystal tolerance. The
#: 10 % sub-band keeps none: its one 250 kHz channel at 869.525 MHz fills it exactly, as the
#: default channel always has (869.4-869.65 MHz holds one BW250 or two BW125 channels).
_EU868_GUARD_HZ = 37_500

_EU868 = Region(
    name="EU868",
    description="Europe 863-870 MHz (ETSI EN 300 220, ERC 70-03 annex 1)",
    sub_bands=(
        SubBand("h1.2 863-865", 863_000_000, 865_000_000, 0.001, 25, 14),
        SubBand("h1.3 865-868", 865_000_000, 868_000_000, 0.01, 25, 14, guard_hz=_EU868_GUARD_HZ),
        SubBand(
            "h1.4 868.0-868.6", 868_000_000, 868_600_000, 0.01, 25, 14, guard_hz=_EU868_GUARD_HZ
        ),
        SubBand("h1.5 868.7-869.2", 868_700_000, 869_200_000, 0.001, 25, 14),
        SubBand(
            "h1.6 869.4-869.65",
            869_400_000,
            869_650_000,
            0.10,
            500,
            20,
            max_bw_hz=250_000,
            note="10 % at 500 mW ERP; only BW <= 250 kHz fits, centred on 869.525 MHz",
        ),
        SubBand("h1.7 869.7-870", 869_700_000, 870_000_000, 0.01, 25, 14, guard_hz=_EU868_GUARD_HZ),
    ),
    default_frequency_hz=869_525_000,
    default_tx_power_dbm=14,
)

REGIONS: dict[str, Region] = {
    "EU868": _EU868,
    "EU433": Region(
        name="EU433",
        description="Europe 433.05-434.79 MHz (ERC 70-03 annex 1 h1.4)",
        sub_bands=(SubBand("433.05-434.79", 433_050_000, 434_790_000, 0.10, 10, 10),),
        default_frequency_hz=433_175_000,
        default_tx_power_dbm=10,
    ),
    "US915": Region(
        name="US915",
        description="USA 902-928 MHz (FCC 47 CFR 15.247 / 15.249); EXPERIMENTAL, see caveat",
        sub_bands=(
            SubBand(
                "902-928",
                902_000_000,
                928_000_000,
                0.02,
                1000,
                20,
                window_s=20.0,
                max_dwell_s=0.4,
                note=(
                    "0.4 s in any 20 s is the 15.247(a)(1)(i) occupancy rule of a hopping "
                    "system, kept here as a conservative airtime budget; a fixed channel is no "
                    "hopping system, see the region's caveat"
                ),
            ),
        ),
        default_frequency_hz=915_000_000,
        # BW500, the one LoRa bandwidth that can be a 15.247 digitally modulated system: with
        # fixed BW500 settings the link never uses a narrower signal. SF11: its handshake
        # frames (206 ms) fit the 400 ms dwell budget; about as sensitive as SF9/BW125.
        rendezvous_sf=11,
        rendezvous_bw_hz=500_000,
        default_tx_power_dbm=17,
        caveat=(
            "experimental, and not legal in auto mode: FCC 15.247 covers frequency hopping "
            "(at least 50 channels for a 125 kHz signal) and digital modulation with a 6 dB "
            "bandwidth of at least 500 kHz; one fixed 125 kHz channel is neither and falls "
            "under 15.249 (50 mV/m at 3 m, about -1 dBm EIRP), far below p1-lora's power. The "
            "rendezvous uses BW500; set radio.mode = fixed, fixed_sf = 7, fixed_bw = 500 so "
            "that the link never uses a narrower signal (see docs/regions.md)"
        ),
    ),
    "AU915": Region(
        name="AU915",
        description="Australia 915-928 MHz (ACMA LIPD class licence)",
        sub_bands=(SubBand("915-928", 915_000_000, 928_000_000, 1.0, 1000, 20, max_dwell_s=0.4),),
        default_frequency_hz=916_800_000,
        rendezvous_sf=9,
        default_tx_power_dbm=17,  # the SX127x's most without its 1 %-duty +20 dBm mode
    ),
    "AS923": Region(
        name="AS923",
        description="Asia 920-923 MHz (AS923 channel plan; dwell limit where required)",
        sub_bands=(SubBand("920-923", 920_000_000, 923_500_000, 0.01, 25, 14, max_dwell_s=0.4),),
        default_frequency_hz=923_200_000,
        rendezvous_sf=9,
    ),
    "IN865": Region(
        name="IN865",
        description="India 865-867 MHz (no duty cycle limit)",
        sub_bands=(SubBand("865-867", 865_000_000, 867_000_000, 1.0, 1000, 20),),
        default_frequency_hz=865_985_000,
        default_tx_power_dbm=17,  # the SX127x's most without its 1 %-duty +20 dBm mode
    ),
}

DEFAULT_REGION = "EU868"


def get_region(name: str) -> Region:
    """Look a region up by name (case-insensitive); RegionError listing the known ones."""
    region = REGIONS.get(name.upper())
    if region is None:
        raise RegionError(f"unknown region {name!r}; known regions: {', '.join(REGIONS)}")
    return region
