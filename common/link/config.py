"""`LinkConfig`: the knobs of one side of the link, validated against the region's rules.

Both sides are configured from the same defaults and derive every timeout from the same
formulas (`p1lora.common.link.timing`), which is how each knows how long the other may stay
silent without talking about it on air. Only a few values are per-node (this node's maximum
TX power); the rest are protocol rules that must match on both ends.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from p1lora.common import channel_plan
from p1lora.common.airtime import time_on_air_for
from p1lora.common.link.air import AirPolicy
from p1lora.common.radio_types import BANDWIDTHS_HZ, RadioSettings
from p1lora.common.regions import DEFAULT_REGION, Region, RegionError, SubBand, get_region

__all__ = [
    "HIGH_POWER_MAX_DUTY_CYCLE",
    "PA_BOOST_CONTINUOUS_MAX_DBM",
    "PA_BOOST_MAX_DBM",
    "FixedRadio",
    "LinkConfig",
    "RadioMode",
    "max_power_for_duty_cycle",
]

#: The SX127x's PA_BOOST output reaches +20 dBm only in its high-power mode (RegPaDac 0x87, which
#: the driver uses for everything above +17 dBm), and the datasheet ("High Power +20 dBm
#: Operation") rates that mode for at most 1 % duty cycle. A sub-band that allows more (EU868's
#: 10 % at 869.525 MHz, the US/AU/IN bands) must stay at +17 dBm. The rule lives here, in the
#: sans-I/O core, so the link, the simulator and the daemons (`hardware.sx127x`,
#: `service.options`) all apply the same cap.
PA_BOOST_MAX_DBM: Final = 20
PA_BOOST_CONTINUOUS_MAX_DBM: Final = 17
HIGH_POWER_MAX_DUTY_CYCLE: Final = 0.01


def max_power_for_duty_cycle(duty_cycle: float) -> int:
    """The most PA_BOOST power the chip is rated for when on air up to `duty_cycle` of the time.

    The legal duty cycle of the sub-band is the bound that matters: the link may use all of
    it, so a 10 % band means up to 10 % on air, beyond the +20 dBm mode's 1 % rating.
    """
    if duty_cycle <= HIGH_POWER_MAX_DUTY_CYCLE:
        return PA_BOOST_MAX_DBM
    return PA_BOOST_CONTINUOUS_MAX_DBM


#: The largest handshake frame (a CHALLENGE is 30 bytes): it must fit the dwell limit.
_HANDSHAKE_FRAME_BYTES = 32
#: Frames each side sends in a rendezvous handshake before the link can leave the rendezvous
#: setting (DISCOVER and SWITCH; CHALLENGE and the SWITCH's ack).
_HANDSHAKE_FRAMES = 2
#: The longest the duty cycle may need to earn back the airtime of one rendezvous handshake.
#: In the 1 % band it is about 6 minutes at SF12; in the 0.1 % sub-bands (863-865 and
#: 868.7-869.2 MHz) about an hour: the handshake alone takes the whole hourly allowance, so
#: every lost link would mean an hour of silence, discovery would retry every ~1.5 hours, and
#: the acks of the first hour's telegrams would no longer fit the receiver's budget.
MAX_HANDSHAKE_RECOVERY_S = 1800.0


class RadioMode(StrEnum):
    """`auto` tunes SF/BW/power from measured SNR margin; `fixed` uses the given settings."""

    AUTO = "auto"
    FIXED = "fixed"


@dataclass(frozen=True, slots=True)
class FixedRadio:
    """The settings of `fixed` mode (SF, bandwidth, and optionally the transmitter's power)."""

    sf: int
    bw_hz: int
    tx_power_dbm: int | None = None

    def __post_init__(self) -> None:
        if not 7 <= self.sf <= 12:
            raise ValueError(f"fixed spreading factor {self.sf} is not one of 7..12")
        if self.bw_hz not in BANDWIDTHS_HZ:
            raise ValueError(f"fixed bandwidth {self.bw_hz} Hz is not an SX127x bandwidth")

    def label(self) -> str:
        power = "" if self.tx_power_dbm is None else f" {self.tx_power_dbm} dBm"
        return f"SF{self.sf}/BW{self.bw_hz / 1000:g}{power}"


def _default_region() -> Region:
    return get_region(DEFAULT_REGION)


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """Protocol rules and per-node settings. Invalid combinations raise ValueError/RegionError
    with a message naming the offending value."""

    region: Region = field(default_factory=_default_region)
    #: The channel; None means the region's default (869.525 MHz in EU868) unless
    #: `sub_band_name` names a sub-band. A pinned frequency stays pinned.
    frequency_hz: int | None = None
    #: A sub-band named instead of a frequency ('868.0-868.6', 'h1.4'): the link chooses
    #: centre and bandwidth inside it (`channel_plan`) as it chooses the SF. Exclusive with
    #: `frequency_hz`.
    sub_band_name: str | None = None
    #: Which of the plan's channels of a bandwidth this link uses (`channel_plan.pick`: modulo
    #: their number); both sides must agree, like the sub-band.
    channel_offset: int = 0
    #: This node's maximum TX power; None means the region default, never above the sub-band's.
    tx_power_dbm: int | None = None
    mode: RadioMode = RadioMode.AUTO
    fixed: FixedRadio | None = None
    coding_rate: int = 5
    #: Predicted SNR must clear the SF's demodulation floor by this much (both directions).
    snr_margin_db: float = 5.0
    #: Extra margin before moving up, and the shortfall tolerated before moving down.
    hysteresis_db: float = 3.0
    #: Lower the transmitter's power when the uplink margin is large at the fastest setting,
    #: but only while `snr_margin_db + power_headroom_db` (10 dB) remains above the floor in
    #: the worst recent sample: power costs no airtime, a dead link costs minutes.
    power_control: bool = True
    power_headroom_db: float = 5.0
    min_tx_power_dbm: int = 2
    #: Probes that must be acknowledged before a new setting is committed, out of `attempts`.
    probe_count: int = 3
    probe_attempts: int = 5
    #: A SWITCH without an ack is repeated (same body, fresh counter) up to this many sends in
    #: all: a step down happens on a lossy link, and one lost SWITCH should not cost the switch.
    switch_attempts: int = 3
    #: Minimum seconds between telegrams sent (the `set interval` command changes it).
    min_interval_s: float = 0.0
    #: The transmitter sends something (a keepalive: a 14-byte PROBE) at least this often
    #: while linked, where that is cheap; where it is not, `keepalive_share` of the budget sets
    #: the interval (`timing.keepalive_interval`). The receiver's silence timeout follows.
    keepalive_s: float = 10.0
    #: Share of the duty-cycle allowance keepalives may use (they flow only when nothing
    #: else does, so they never compete with telegrams).
    keepalive_share: float = 0.2
    #: Full status reports at most this often, and rarer where a standalone report would take
    #: more than `status_share` of the allowance (`timing.status_interval`).
    status_interval_s: float = 300.0
    status_share: float = 0.05
    #: The receiver answers copies (repeated frames) only within this share of its allowance:
    #: the rest is kept for the acks of new frames (`RxLink._within_reserve`).
    budget_utilisation: float = 0.9
    #: Paced traffic aims at most at this share of the duty-cycle allowance, and never closer
    #: to it than the airtime of one rendezvous handshake (`timing.pacing_share`: 92 % of the
    #: 1 % band, 99 % of the 10 % band). The pacing counts *all* traffic in the sliding window,
    #: so a burst of handshake frames slows the updates a little for an hour instead of
    #: stopping them at the hour's end.
    pacing_max_share: float = 0.99
    #: However much the window holds, updates keep at least this share of the steady rate
    #: (the hard budget still applies to every frame).
    pacing_floor: float = 0.25
    #: Long-run share of the allowance that discovery / challenge / resync traffic may use.
    handshake_share: float = 0.25
    #: Allowance for the peer to start its reply after our frame ends (radio + runtime).
    turnaround_s: float = 0.2
    #: Receiver silence timeout = this many times the slowest legal send interval.
    silence_factor: float = 3.0
    loss_window: int = 20
    loss_retune_threshold: float = 0.3
    #: Consecutive unanswered frames (and at least `link_lost_min_s`) before the link is lost.
    link_lost_after: int = 8
    link_lost_min_s: float = 30.0
    #: Exact retransmissions of an unacknowledged update or reply before it is given up.
    max_retries: int = 2
    reply_attempts: int = 8
    reference_cache: int = 4
    #: An update frame carries up to this many telegrams: every one read since the last frame,
    #: oldest first (a BATCH frame; `messages.Batch` says why). Where frames go every second
    #: it is always one; where the budget or a crowded channel spaces them, they carry the
    #: seconds in between for a fraction of a frame's airtime each. 1: only the newest
    #: (the first design's "latest wins"). The receiver keeps the reference a batch was
    #: encoded against while it decodes the batch, whatever its length.
    batch_max: int = 3
    counter_block: int = 1000
    #: Minimum seconds between two re-tunes decided from margin.
    retune_interval_s: float = 30.0
    #: A setting that failed its probes is not tried again for this long (doubling per failure,
    #: up to `failed_cooldown_max_s`; see `failed_cooldown`).
    failed_cooldown_s: float = 300.0
    failed_cooldown_max_s: float = 4 * 3600.0
    #: The fixed-mode target's first failures are retried sooner (`retune_interval_s`,
    #: doubling): it is what the user asked for, and random loss makes its probes fail now and
    #: then. After this many failures in a row it is unreachable for now and backs off like
    #: any setting, so a hopeless target does not cost a switch every few minutes forever.
    fixed_fast_retries: int = 3
    #: Loss while the measured SNR margin (both directions) clears `snr_margin_db +
    #: hysteresis_db` is interference (collisions), not weak signal: slower settings would
    #: only make frames longer and easier to hit, so the link keeps its rung, restores full
    #: power, and lowers the power again only after this long without such loss.
    interference_cooldown_s: float = 1200.0
    command_timeout_s: float = 600.0
    #: DISCOVER attempts at the last known good setting before going to the rendezvous.
    resume_attempts: int = 3
    discovery_base_s: float = 4.0
    discovery_max_interval_s: float = 120.0
    #: How the link shares the air with neighbours (`AirPolicy.legacy()`: as before).
    air: AirPolicy = field(default_factory=AirPolicy)

    def __post_init__(self) -> None:
        checks: tuple[tuple[bool, str], ...] = (
            (self.snr_margin_db >= 0, "snr_margin_db must be >= 0"),
            (self.hysteresis_db >= 0, "hysteresis_db must be >= 0"),
            (1 <= self.probe_count <= self.probe_attempts, "need 1 <= probe_count <= attempts"),
            (self.probe_attempts <= 20, "probe_attempts must be <= 20"),
            (1 <= self.switch_attempts <= 5, "switch_attempts must be within 1..5"),
            (0 <= self.min_interval_s <= 3600, "min_interval_s must be within 0..3600"),
            (self.keepalive_s >= 5, "keepalive_s must be >= 5"),
            (0 < self.keepalive_share <= 1, "keepalive_share must be in (0, 1]"),
            (self.status_interval_s >= self.keepalive_s, "status_interval_s < keepalive_s"),
            (0 < self.status_share <= 1, "status_share must be in (0, 1]"),
            (0 < self.budget_utilisation <= 1, "budget_utilisation must be in (0, 1]"),
            (0 < self.pacing_max_share <= 1, "pacing_max_share must be in (0, 1]"),
            (0 < self.pacing_floor <= 1, "pacing_floor must be in (0, 1]"),
            (0 < self.handshake_share <= 1, "handshake_share must be in (0, 1]"),
            (0 <= self.turnaround_s <= 5, "turnaround_s must be within 0..5"),
            (self.silence_factor >= 2, "silence_factor must be >= 2"),
            (self.loss_window >= 5, "loss_window must be >= 5"),
            (0 < self.loss_retune_threshold < 1, "loss_retune_threshold must be in (0, 1)"),
            (self.link_lost_after >= 2, "link_lost_after must be >= 2"),
            (self.max_retries >= 0, "max_retries must be >= 0"),
            (self.reply_attempts >= 1, "reply_attempts must be >= 1"),
            (self.reference_cache >= 1, "reference_cache must be >= 1"),
            (1 <= self.batch_max <= 16, "batch_max must be within 1..16"),
            (self.counter_block >= 1, "counter_block must be >= 1"),
            (self.interference_cooldown_s >= 0, "interference_cooldown_s must be >= 0"),
            (self.failed_cooldown_s > 0, "failed_cooldown_s must be > 0"),
            (
                self.failed_cooldown_max_s >= self.failed_cooldown_s,
                "failed_cooldown_max_s must be >= failed_cooldown_s",
            ),
            (0 <= self.fixed_fast_retries <= 10, "fixed_fast_retries must be within 0..10"),
            (self.resume_attempts >= 1, "resume_attempts must be >= 1"),
            (self.discovery_base_s > 0, "discovery_base_s must be > 0"),
            (self.coding_rate in (5, 6, 7, 8), "coding_rate must be 5..8 (4/5..4/8)"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        if self.sub_band_name is not None and self.frequency_hz is not None:
            raise ValueError(
                "name a sub-band or pin a frequency, not both (the sub-band lets the link "
                "choose the channel inside it)"
            )
        band = self.sub_band()
        if self.sub_band_name is not None and not channel_plan.plan(band):
            raise RegionError(
                f"{self.region.name} sub-band {band.name} holds no 125, 250 or 500 kHz channel "
                f"with its {band.guard_hz / 1e3:g} kHz edge guard"
            )
        rendezvous = self.rendezvous()
        self.region.check(rendezvous)
        if band.max_dwell_s is not None and (
            time_on_air_for(rendezvous, _HANDSHAKE_FRAME_BYTES) > band.max_dwell_s
        ):
            raise RegionError(
                f"{self.region.name}: a handshake frame at the rendezvous setting "
                f"{rendezvous.label()} exceeds the {band.max_dwell_s * 1000:g} ms dwell limit"
            )
        self._check_handshake_budget(band, rendezvous)
        if self.tx_power_dbm is not None and self.tx_power_dbm > band.max_tx_power_dbm:
            raise RegionError(
                f"TX power {self.tx_power_dbm} dBm exceeds {band.name}'s "
                f"{band.max_tx_power_dbm} dBm"
            )
        if self.min_tx_power_dbm > self.max_tx_power():
            raise ValueError("min_tx_power_dbm is above the maximum TX power")
        if self.mode is RadioMode.FIXED and self.fixed is None:
            raise ValueError("fixed radio mode needs fixed settings (SF, BW)")
        if self.fixed is not None:
            self.region.check(self.fixed_settings())

    def _check_handshake_budget(self, band: SubBand, rendezvous: RadioSettings) -> None:
        """Refuse a sub-band whose duty cycle cannot carry the link: one rendezvous handshake
        must be earned back within `MAX_HANDSHAKE_RECOVERY_S` (RegionError naming the channel,
        the sub-band and why)."""
        if band.duty_cycle >= 1.0:
            return
        airtime = _HANDSHAKE_FRAMES * time_on_air_for(rendezvous, _HANDSHAKE_FRAME_BYTES)
        recovery = airtime / band.duty_cycle
        per = "hour" if band.window_s == 3600 else f"{band.window_s:g} s"
        if recovery > MAX_HANDSHAKE_RECOVERY_S:
            raise RegionError(
                f"{self.channel_hz / 1e6:g} MHz is in {self.region.name} sub-band {band.name} "
                f"with a {band.duty_cycle:.1%} duty cycle ({band.airtime_per_window_s:g} s of "
                f"airtime per {per}): one handshake at the rendezvous setting "
                f"{rendezvous.label()} takes about {airtime:.1f} s of airtime on each side, which "
                f"the duty cycle earns back only after {recovery / 60:.0f} minutes, so every lost "
                "link would mean about that long without telegrams; the link cannot run there. "
                "Choose a channel in a 1 % or 10 % sub-band (e.g. 868.1 or 869.525 MHz)"
            )

    @property
    def channel_hz(self) -> int:
        """The rendezvous channel's centre: the pinned frequency, the region's default, or
        in a named sub-band the plan's channel at the rendezvous bandwidth."""
        if self.sub_band_name is not None:
            found = self._planned(self.region.rendezvous_bw_hz)
            if found is not None:
                return found
        return self.frequency_hz or self.region.default_frequency_hz

    def sub_band(self) -> SubBand:
        """The sub-band (and so the duty-cycle budget, shared by all its channels) the link
        uses: the named one, or the one the channel falls in."""
        if self.sub_band_name is not None:
            return self.region.named_sub_band(self.sub_band_name)
        return self.region.sub_band_for(self.channel_hz, self.region.rendezvous_bw_hz)

    def _planned(self, bw_hz: int) -> int | None:
        band = self.region.named_sub_band(self.sub_band_name or "")
        channel = channel_plan.pick(band, bw_hz, self.channel_offset)
        return None if channel is None else channel.centre_hz

    def channel_for(self, bw_hz: int) -> int | None:
        """The centre a signal of `bw_hz` uses on this link, None where none fits: in a named
        sub-band the plan's channel of that bandwidth; a pinned channel when it fits."""
        if self.sub_band_name is not None:
            return self._planned(bw_hz)
        band = self.sub_band()
        if bw_hz > band.max_bw_hz or not band.contains(self.channel_hz, bw_hz):
            return None
        return self.channel_hz

    def channel_label(self) -> str:
        """'868.0-868.6 MHz (h1.4, channel chosen by the link)' or '868.100 MHz'."""
        if self.sub_band_name is None:
            return f"{self.channel_hz / 1e6:.3f} MHz"
        band = self.sub_band()
        return f"{band.range_label()} MHz ({band.name.split()[0]}, channel chosen by the link)"

    def failed_cooldown(self, failures: int, fixed: bool) -> float:
        """How long a setting whose switch failed `failures` times in a row is left alone.

        | failure n                     | cooldown (capped at `failed_cooldown_max_s`)        |
        |-------------------------------|-----------------------------------------------------|
        | auto mode, any n              | `failed_cooldown_s` * 2^(n-1): 5, 10, 20 min ...    |
        | fixed, n <= fixed_fast_retries | `retune_interval_s` * 2^(n-1), at most              |
        |                               | `failed_cooldown_s`: 30 s, 1 min, 2 min             |
        | fixed, later                  | `failed_cooldown_s` * 2^(n-1-fast): 5, 10 min ... 4 h |
        """
        n = max(1, failures)
        if fixed and n <= self.fixed_fast_retries:
            return min(self.retune_interval_s * 2.0 ** (n - 1), self.failed_cooldown_s)
        if fixed:
            n -= self.fixed_fast_retries
        return min(self.failed_cooldown_s * 2.0 ** min(n - 1, 64), self.failed_cooldown_max_s)

    def max_tx_power(self) -> int:
        """This node's power ceiling: configured or region default, never above the sub-band's
        and never above what the chip is rated for at the sub-band's duty cycle (+17 dBm where
        the band allows more than 1 %: `max_power_for_duty_cycle`)."""
        band = self.sub_band()
        wanted = (
            self.tx_power_dbm if self.tx_power_dbm is not None else self.region.default_tx_power_dbm
        )
        return min(wanted, band.max_tx_power_dbm, max_power_for_duty_cycle(band.duty_cycle))

    def settings(self, sf: int, bw_hz: int, tx_power_dbm: int | None = None) -> RadioSettings:
        """Settings on this link's channel for `bw_hz` with this node's power (or the given
        one). A bandwidth that fits no channel keeps the rendezvous centre (and fails
        `Region.check`)."""
        power = self.max_tx_power() if tx_power_dbm is None else tx_power_dbm
        return RadioSettings(
            frequency_hz=self.channel_for(bw_hz) or self.channel_hz,
            sf=sf,
            bw_hz=bw_hz,
            cr=self.coding_rate,
            tx_power_dbm=power,
        )

    def rendezvous(self) -> RadioSettings:
        """Where both sides meet when they know nothing: the region's most robust setting."""
        return self.settings(self.region.rendezvous_sf, self.region.rendezvous_bw_hz)

    def fixed_settings(self, fixed: FixedRadio | None = None) -> RadioSettings:
        """The settings of fixed mode (power capped at this node's maximum)."""
        chosen = fixed or self.fixed
        if chosen is None:
            raise ValueError("no fixed settings configured")
        power = chosen.tx_power_dbm
        ceiling = self.max_tx_power()
        if power is not None and power > ceiling:
            band = self.sub_band()
            why = ""
            if power <= band.max_tx_power_dbm and ceiling == PA_BOOST_CONTINUOUS_MAX_DBM:
                why = (
                    f" (the SX127x's +20 dBm mode is rated for at most "
                    f"{HIGH_POWER_MAX_DUTY_CYCLE:.0%} duty cycle; {band.name} allows "
                    f"{band.duty_cycle:.0%})"
                )
            raise RegionError(
                f"TX power {power} dBm exceeds this node's maximum {ceiling} dBm{why}"
            )
        return self.settings(chosen.sf, chosen.bw_hz, power)
