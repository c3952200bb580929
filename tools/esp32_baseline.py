"""`p1-lora sim --baseline ...`: the ESP32 firmware p1-lora descends from, on the same air.

`Esp32Simulation` runs the firmware's two state machines (`tools.esp32_firmware`, ported
from its source with file and line for every rule) on the same simulated channel as the
p1-lora run (`tools.sim.build_channel`: same path loss, noise, fading, random loss, collisions
and half duplex, its own seeded random stream), with the real SX127x driver on the
register-level emulator, the same meter feed and the same recorders, and reports the same
`SimMetrics`. Only the protocol differs, plus the radio a variant uses:

| variant | radio |
|---------|-------|
| `esp32` | as shipped: 868.0 MHz, 17 dBm, its own interval table (which ignores the sub-band) |
| `esp32-same-channel` | p1-lora's channel and TX power (like for like) |

Both run the newest firmware in the source index (see `tools.esp32_firmware` for the commits).
An older receiver divided by a zero message counter and rebooted; the newest guards that
division, so no variant models the crash any more.

The firmware delivers *readings* (12 or 24 values as thousandths), never telegrams: the
metrics compare each reading its receiver published with the values the transmitter sent. A
frame without a payload CRC can arrive with flipped bits and still be published: such a
reading is counted in `delivered_corrupt` only, never in `delivered` / `delivered_per_hour`
(which count correct readings), so a corrupt reading flatters neither side. The details also
say how many values differ from the meter's digits.
Nothing holds it to a duty-cycle budget, because the firmware has none: its interval table is
"in line with 1 % duty cycle" for readings only, and the report shows what it really used.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal

from p1lora.common.clock import VirtualClock
from p1lora.common.link import LinkConfig
from p1lora.hardware.factory import open_radio
from p1lora.tools.esp32_firmware import FIRMWARE_RADIO, Esp32Receiver, Esp32Transmitter, TxMode
from p1lora.tools.esp32_frames import firmware_value
from p1lora.tools.sim import (
    MeterNode,
    NodeLoop,
    SideRecorder,
    SimOptions,
    build_channel,
    positions,
    run_context,
    telegram_feed,
)
from p1lora.tools.sim_metrics import Delivers, SimMetrics, convergence_time, link_metrics

__all__ = ["BASELINES", "Esp32Simulation", "Esp32Variant"]


@dataclass(frozen=True, slots=True)
class Esp32Variant:
    """How the firmware is run (see the module docstring's table)."""

    name: str
    description: str
    #: 868.0 MHz at 17 dBm, as shipped; False: p1-lora's channel and power.
    shipped_radio: bool


#: `--baseline` names.
BASELINES: dict[str, Esp32Variant] = {
    variant.name: variant
    for variant in (
        Esp32Variant(
            "esp32",
            "as shipped: 868.0 MHz, 17 dBm, every bug in its newest source",
            shipped_radio=True,
        ),
        Esp32Variant(
            "esp32-same-channel",
            "like for like: p1-lora's channel and TX power, otherwise as shipped",
            shipped_radio=False,
        ),
    )
}
#: What its frames of meter values are called in the frame log.
_READING_FRAMES = frozenset({"READING"})


class Esp32Simulation:
    """The firmware on its own channel, built from the same options as the p1-lora run."""

    def __init__(
        self,
        options: SimOptions,
        variant: Esp32Variant | None = None,
        *,
        feed: Iterator[tuple[float, bytes]] | None = None,
        config: LinkConfig | None = None,
    ) -> None:
        self.options = options
        self.variant = variant or BASELINES["esp32"]
        self.config = config or options.link_config()
        if self.variant.shipped_radio:
            self.frequency_hz = FIRMWARE_RADIO.frequency_hz
            self.tx_power_dbm = FIRMWARE_RADIO.tx_power_dbm
        else:
            self.frequency_hz = self.config.channel_hz
            self.tx_power_dbm = self.config.max_tx_power()
        self.band = self.config.region.sub_band_for(self.frequency_hz)
        self.clock = VirtualClock(0.0)
        self.loop = NodeLoop(self.clock)
        self.channel = build_channel(options, self.clock, salt=":esp32")
        self.tx_log = SideRecorder("tx")
        self.rx_log = SideRecorder("rx")
        #: (plaintext, published at) of every reading the receiver published.
        self.published: list[tuple[bytes, float]] = []
        self.telegrams_read = 0
        self._wall = 0.0
        spots = positions(options)
        radios = {
            name: open_radio(
                "sim", clock=self.clock, channel=self.channel, name=name, position=spots[name]
            )
            for name in ("tx", "rx")
        }
        explicit = options.effective_path_loss_db
        if explicit is not None:
            self.channel.set_path_loss("tx", "rx", explicit)
        for at, loss in options.degrade:
            self.loop.at(at, functools.partial(self.channel.set_path_loss, "tx", "rx", loss))
        now = self.clock.now()
        self.tx = Esp32Transmitter(
            radios["tx"], self.tx_log, self.frequency_hz, self.tx_power_dbm, now
        )
        self.rx = Esp32Receiver(
            radios["rx"],
            self.rx_log,
            self.frequency_hz,
            self.tx_power_dbm,
            now,
            on_reading=lambda plain, at: self.published.append((plain, at)),
        )
        self.meter = MeterNode(feed or telegram_feed(options), self._submit)
        self.loop.add("meter", self.meter, 0)
        self.loop.add("tx", self.tx, 1)
        self.loop.add("rx", self.rx, 2)

    def _submit(self, raw: bytes, t: float) -> None:
        self.telegrams_read += 1
        self.tx.submit_telegram(raw, t)

    def run_until(self, end: float) -> None:
        self._wall += self.loop.run_timed(end)

    def run(self) -> SimMetrics:
        self.run_until(self.options.duration_s)
        return self.metrics()

    def metrics(self) -> SimMetrics:
        end = self.clock.now()
        sent = self.tx.sent_readings
        latencies: list[float] = []
        correct: list[float] = []
        corrupt = wrong = compared = 0
        for plain, at in self.published:
            reading = sent.get(plain)
            if reading is None:
                corrupt += 1
                continue
            correct.append(at)
            latencies.append(at - reading.meter_time)
            for exact in reading.exact.values():
                compared += 1
                wrong += not _keeps(exact)
        converged = None
        if self.tx.mode is TxMode.OPERATION:  # settled, since the last re-sync
            converged = convergence_time(self.tx_log.settings)
        details: dict[str, object] = {
            "variant": self.variant.description,
            "readings_sent": self.tx.readings_sent,
            "calibration_frames": self.tx.calibrations_sent,
            "values_per_reading": 24 if self.tx.meter.three_phase else 12,
            "values_wrong_fraction": round(wrong / compared, 4) if compared else None,
            "resyncs": dict(sorted(self.tx.resyncs.items())),
            "receiver_sync_requests": self.rx.sync_requests,
            "receiver_silence_timeouts": self.rx.silence_timeouts,
            "readings_acked_not_published": self.rx.acked_not_published,
            "tx_power_dbm": self.tx_power_dbm,
        }
        return link_metrics(
            protocol=self.variant.name,
            delivers=Delivers.READINGS,
            context=run_context(self.options, self.frequency_hz, self.band),
            end=end,
            wall_time_s=self._wall,
            tx_sent=self.tx_log.sent,
            rx_sent=self.rx_log.sent,
            tx_settings=self.tx_log.settings,
            telegrams_read=self.telegrams_read,
            delivery_times=correct,
            latencies=latencies,
            delivered_corrupt=corrupt,
            data_frame_types=_READING_FRAMES,
            converged=converged,
            final=self.tx.settings,
            final_state=self.tx.mode.name.lower(),
            details=details,
        )


def _keeps(exact: Decimal) -> bool:
    """Whether the receiver's value, at the meter's resolution, equals the meter's."""
    got = Decimal(firmware_value(float(exact)))
    exponent = exact.as_tuple().exponent
    places = Decimal(1).scaleb(exponent if isinstance(exponent, int) else 0)
    return got.quantize(places) == exact
