"""LoRaWAN traffic in the background of a simulated channel: the air is not empty.

Two Poisson streams injected into a `SimChannel` (every random draw from one seeded generator,
so a run on a `VirtualClock` repeats exactly):

- **Uplinks** of LoRaWAN devices on the three default EU868 channels 868.1/868.3/868.5 MHz
  (LoRaWAN Regional Parameters RP002, EU863-870 default channels), BW 125 kHz, SF7-SF12 by
  `uplink_sf_mix`, 14 dBm (the EU868 default max EIRP is 16 dBm; 14 dBm is what most devices
  send), sync word 0x34 (public LoRaWAN), payload CRC on, normal IQ. Each frame draws its path
  loss to our radios from a Gaussian (devices stand in many places).
- **Gateway downlinks** in the RX2 window on 869.525 MHz: IQ-inverted, no payload CRC (LoRaWAN
  downlinks carry none), SF9/BW125 as The Things Network uses for RX2 in EU868, or SF12/BW125
  (DR0, the Regional Parameters default), up to 27 dBm (the 869.4-869.65 MHz sub-band allows
  500 mW ERP at 10 % duty cycle: ERC Recommendation 70-03 annex 1 band h1.6, as in
  `common.regions`). The power is used as radiated power with the path loss on top.

Our receivers (normal IQ, sync word 0x12) never decode any of it; the uplinks occupy a receiver
tuned to their channel and SF until the header fails, the downlinks only interfere (see
`interference`). Frames are marked as background so the channel counts them apart.

The presets. What is measured and what is assumed:

- The SF mix follows the shape of The Things Network traffic measured by Blenn & Kuipers,
  "LoRaWAN in the wild: measurements from The Things Network" (arXiv:1706.03086, 2017): most
  frames at SF7, a long tail with a bump at SF12 (devices without ADR). The exact shares below
  are an assumption in that shape.
- Device counts, rates and path losses are assumptions, chosen to be busy rather than quiet:
  "city" puts 500 devices within earshot of the meter room, each sending every 15 minutes
  (2000 uplinks an hour over three channels) at 115 +- 10 dB, and a gateway on a nearby roof
  (105 dB away, 27 dBm) sending 40 RX2 downlinks an hour at SF9. "countryside" puts 30 devices
  sending twice an hour at 130 +- 8 dB and a distant gateway (130 dB) sending 2 RX2 downlinks
  an hour at SF12. Replace them with a `BackgroundPreset` of your own measurements.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from p1lora.common.airtime import low_data_rate_optimize, time_on_air
from p1lora.common.clock import TimerHandle
from p1lora.hardware.channel import SimChannel
from p1lora.hardware.emulator import AirParams
from p1lora.hardware.sx127x_registers import FREQ_STEP_HZ

__all__ = [
    "BACKGROUND_CHOICES",
    "BACKGROUND_PRESETS",
    "LORAWAN_SYNC_WORD",
    "RX2_FREQUENCY_HZ",
    "UPLINK_CHANNELS_HZ",
    "BackgroundPreset",
    "BackgroundStats",
    "BackgroundTraffic",
    "lorawan_params",
    "start_background",
]

#: LoRaWAN Regional Parameters RP002, EU863-870: the three default uplink channels.
UPLINK_CHANNELS_HZ: Final = (868_100_000, 868_300_000, 868_500_000)
#: EU868 RX2 downlink channel (also p1-lora's default channel).
RX2_FREQUENCY_HZ: Final = 869_525_000
#: Public LoRaWAN networks' sync word (ours is 0x12, the private one).
LORAWAN_SYNC_WORD: Final = 0x34
#: A typical uplink: 13 bytes of LoRaWAN header and MIC plus a 12-byte sensor payload.
UPLINK_PAYLOAD_BYTES: Final = 25
#: A downlink without application data (ACK / MAC commands): 13 bytes plus a few.
DOWNLINK_PAYLOAD_BYTES: Final = 17
_BANDWIDTH_HZ = 125_000


@dataclass(frozen=True, slots=True)
class BackgroundPreset:
    """How much LoRaWAN traffic a place has, as our radios hear it."""

    name: str
    uplink_devices: int
    uplinks_per_device_per_hour: float
    uplink_path_loss_db: float
    uplink_path_loss_sigma_db: float
    downlinks_per_hour: float
    downlink_path_loss_db: float
    downlink_sf: int = 9
    downlink_power_dbm: float = 27.0
    uplink_power_dbm: float = 14.0
    #: Share of uplinks per SF (normalised when drawing).
    uplink_sf_mix: Mapping[int, float] = field(
        default_factory=lambda: MappingProxyType(
            {7: 0.55, 8: 0.12, 9: 0.10, 10: 0.08, 11: 0.05, 12: 0.10}
        )
    )

    def __post_init__(self) -> None:
        if self.uplink_devices < 0 or self.uplinks_per_device_per_hour < 0:
            raise ValueError("device count and uplink rate cannot be negative")
        if self.downlinks_per_hour < 0:
            raise ValueError("downlink rate cannot be negative")
        if self.downlink_sf not in range(7, 13):
            raise ValueError(f"downlink SF {self.downlink_sf} is not 7..12")
        if not self.downlink_power_dbm <= 27.0:
            raise ValueError("a gateway may send at most 27 dBm (500 mW ERP) on 869.525 MHz")
        if not self.uplink_sf_mix or any(
            sf not in range(7, 13) or share < 0 for sf, share in self.uplink_sf_mix.items()
        ):
            raise ValueError("the uplink SF mix needs shares >= 0 for SF7..SF12")
        if sum(self.uplink_sf_mix.values()) <= 0:
            raise ValueError("the uplink SF mix is all zero")

    @property
    def uplinks_per_hour(self) -> float:
        return self.uplink_devices * self.uplinks_per_device_per_hour


#: Named presets (`p1-lora sim --background`); the numbers are explained in the module docstring.
BACKGROUND_PRESETS: Final = MappingProxyType(
    {
        "city": BackgroundPreset(
            name="city",
            uplink_devices=500,
            uplinks_per_device_per_hour=4.0,
            uplink_path_loss_db=115.0,
            uplink_path_loss_sigma_db=10.0,
            downlinks_per_hour=40.0,
            downlink_path_loss_db=105.0,
            downlink_sf=9,
        ),
        "countryside": BackgroundPreset(
            name="countryside",
            uplink_devices=30,
            uplinks_per_device_per_hour=2.0,
            uplink_path_loss_db=130.0,
            uplink_path_loss_sigma_db=8.0,
            downlinks_per_hour=2.0,
            downlink_path_loss_db=130.0,
            downlink_sf=12,
        ),
    }
)
#: What `--background` accepts: no background, or a preset.
BACKGROUND_CHOICES: Final = ("none", *BACKGROUND_PRESETS)


@dataclass(slots=True)
class BackgroundStats:
    uplinks: int = 0
    downlinks: int = 0
    uplinks_by_sf: dict[int, int] = field(default_factory=dict)
    airtime_s: float = 0.0


def lorawan_params(frequency_hz: int, sf: int, *, downlink: bool, payload: int) -> AirParams:
    """The modulation of a LoRaWAN uplink or (IQ-inverted, CRC-less) downlink, BW 125 kHz."""
    return AirParams(
        frf=round(frequency_hz / FREQ_STEP_HZ),
        sf=sf,
        bw_hz=_BANDWIDTH_HZ,
        cr=5,
        implicit_header=False,
        crc_on=not downlink,
        ldro=low_data_rate_optimize(sf, _BANDWIDTH_HZ),
        preamble=8,
        sync_word=LORAWAN_SYNC_WORD,
        invert_iq=downlink,
        payload_length=payload,
    )


class BackgroundTraffic:
    """The two Poisson streams of `preset` on `channel`'s scheduler, from `start()` on."""

    def __init__(self, channel: SimChannel, preset: BackgroundPreset, *, seed: int = 0) -> None:
        self.channel = channel
        self.preset = preset
        self.stats = BackgroundStats()
        self._rng = random.Random(seed)
        self._sfs = tuple(preset.uplink_sf_mix)
        self._weights = tuple(preset.uplink_sf_mix.values())
        self._timers: list[TimerHandle | None] = [None, None]
        self._running = False

    def start(self) -> BackgroundTraffic:
        if not self._running:
            self._running = True
            self._schedule(0, self.preset.uplinks_per_hour, self._uplink)
            self._schedule(1, self.preset.downlinks_per_hour, self._downlink)
        return self

    def stop(self) -> None:
        self._running = False
        for timer in self._timers:
            if timer is not None:
                timer.cancel()
        self._timers = [None, None]

    def _schedule(self, slot: int, per_hour: float, send: Callable[[], None]) -> None:
        if not self._running or per_hour <= 0:
            return
        delay = self._rng.expovariate(per_hour / 3600.0)

        def fire() -> None:
            send()
            self._schedule(slot, per_hour, send)

        self._timers[slot] = self.channel.scheduler.call_later(delay, fire)

    def _uplink(self) -> None:
        preset = self.preset
        frequency = self._rng.choice(UPLINK_CHANNELS_HZ)
        sf = self._rng.choices(self._sfs, self._weights)[0]
        loss = self._rng.gauss(preset.uplink_path_loss_db, preset.uplink_path_loss_sigma_db)
        self.stats.uplinks += 1
        self.stats.uplinks_by_sf[sf] = self.stats.uplinks_by_sf.get(sf, 0) + 1
        self._send(
            "background:uplink",
            frequency,
            sf,
            downlink=False,
            power=preset.uplink_power_dbm,
            loss=loss,
        )

    def _downlink(self) -> None:
        preset = self.preset
        self.stats.downlinks += 1
        self._send(
            "background:gateway",
            RX2_FREQUENCY_HZ,
            preset.downlink_sf,
            downlink=True,
            power=preset.downlink_power_dbm,
            loss=preset.downlink_path_loss_db,
        )

    def _send(
        self, origin: str, frequency: int, sf: int, *, downlink: bool, power: float, loss: float
    ) -> None:
        payload = DOWNLINK_PAYLOAD_BYTES if downlink else UPLINK_PAYLOAD_BYTES
        params = lorawan_params(frequency, sf, downlink=downlink, payload=payload)
        airtime = time_on_air(
            payload, sf, _BANDWIDTH_HZ, cr=5, preamble=8, crc_on=params.crc_on, ldro=params.ldro
        )
        self.stats.airtime_s += airtime
        body = self._rng.randbytes(payload)
        self.channel.inject(
            origin,
            params,
            body,
            tx_power_dbm=power,
            airtime=airtime,
            path_loss_db=max(0.0, loss),
            background=True,
        )


def start_background(channel: SimChannel, name: str, *, seed: int) -> BackgroundTraffic | None:
    """Start the preset `name` ("none": nothing) on `channel`; ValueError for an unknown name."""
    if name == "none":
        return None
    preset = BACKGROUND_PRESETS.get(name)
    if preset is None:
        raise ValueError(f"background {name!r} is not one of {', '.join(BACKGROUND_CHOICES)}")
    return BackgroundTraffic(channel, preset, seed=seed).start()
