"""What one LoRa signal does to another: capture, imperfect SF orthogonality, spectral overlap.

Pure functions and tables, no state: `channel.SimChannel` applies them to the frames on its air.
The model, and where each number comes from:

- **Receiver noise figure 7 dB** at 862-1020 MHz: SX1276/77/78/79 datasheet (Rev. 7, May 2020),
  section 5.5.3, Table 38 "LNA Gain Control and Performances": NF at the highest LNA gain G1 is
  4 / 5.5 / 7 dB in band 3 / 2 / 1; band 1 (HF port) holds 868 and 915 MHz. Semtech's own
  driver used 6 dB (`NOISE_FIGURE_HF` in SX1276Lib sx1276.h), which is kinder than the table.
- **Co-SF capture, 6 dB**: a frame survives same-SF interference when it is at least 6 dB above
  the *sum* of the overlapping same-SF interferers. Bor, Roedig, Voigt, Alonso, "Do LoRa
  low-power wide-area networks scale?", MSWiM 2016 (measured power-capture threshold 6 dB);
  Haxhibeqiri, Van den Abeele, Moerman, Hoebeke, "LoRa scalability: a simulation model based
  on interference measurements", Sensors 17(6) 2017 (capture needs a few dB and depends on
  timing). Interference is summed in milliwatts and the worst instant of the overlap counts
  (stricter than ns-3's energy average).
- **Capture timing, both ways**: the chip synchronises on the preamble and commits when the
  sync word and start-of-frame delimiter follow it. A frame that is `CO_SF_CAPTURE_DB` stronger
  and starts while the receiver is still in the locked frame's programmed preamble takes the
  receiver over (the first frame is lost); one that starts later only corrupts the locked frame
  and is itself lost, because the receiver is busy. Rahmadhani & Kuipers, "When LoRaWAN frames
  collide", WiNTECH 2018 (a stronger frame arriving during the first frame's preamble is
  received; after it, both are lost); Bor et al. 2016 (the last preamble symbols are critical).
- **Inter-SF interference is not zero**: `INTER_SF_SIR_DB` is the SIR (dB) a frame of the row
  SF needs against an interferer of the column SF, both BW 125 kHz: Croce, Gucciardo, Mangione,
  Santaromita, Tinnirello, "Impact of LoRa imperfect orthogonality: analysis of link-level
  performance", IEEE Communications Letters 22(4) 2018, Table I, as transcribed in the
  `collisionSnirCroce` matrix of brunocitoni/my-modified-lorawan-module,
  model/lora-interference-helper.cc (an ns-3 lorawan fork). Goursaud & Gorce, "Dedicated
  networks for IoT: PHY/MAC state of the art and challenges", EAI Endorsed Transactions on IoT
  2015, give more rejection (-16..-36 dB: `collisionSnirGoursaud` in signetlabdei/lorawan, the
  same file, ns-3's default); Croce's harsher link-level values are used here. The diagonal is
  not used (capture, above).
- **Different bandwidth or carrier, by spectral overlap**: a chirp sweeps its bandwidth
  uniformly, so its power is spread flat across it. The power an interferer puts into the
  victim's channel is its received power times the fraction of its band that overlaps the
  victim's band (`in_band_fraction`). Power outside the band is attenuated by
  `ADJACENT_REJECTION_DB` (assumption: 60 dB, the SX1276 datasheet's LoRa adjacent-channel
  rejection at SF7, BW 125 kHz, offset 1.5 BW, its weakest entry; not re-verified here).
  Same SF and bandwidth at a carrier offset is a time-shifted chirp: co-SF interference. Same
  SF at another bandwidth has another chirp slope and is quasi-orthogonal like another SF; no
  measured table exists for it, so the victim row's *harshest* off-diagonal Croce value is
  used (an assumption on the hard side).
- **Foreign LoRa traffic occupies the receiver**: the SX127x detects any preamble at its SF,
  bandwidth and IQ polarity whatever the sync word; with another sync word it stays locked
  until the header would have been decoded, then gives up (`Detection.HEADER_FAILS`); with
  another low-data-rate or implicit-header setting the header passes and the payload fails at
  the end (`PAYLOAD_FAILS`). Another p1-lora network (our sync word) is decoded by the chip and
  rejected by the software, so it is an ordinary `DECODES`. IQ-inverted frames (LoRaWAN
  downlinks) carry down-chirps that a normal-IQ receiver does not correlate with: no
  detection, but their energy interferes like a same-SF frame (an assumption on the hard side).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from types import MappingProxyType
from typing import Final

from p1lora.common.airtime import symbol_time
from p1lora.hardware.emulator import AirFrame, AirParams

__all__ = [
    "ADJACENT_REJECTION_DB",
    "CO_SF_CAPTURE_DB",
    "HEADER_SYMBOLS",
    "INTER_SF_SIR_DB",
    "NOISE_FIGURE_DB",
    "PREAMBLE_SYNC_SYMBOLS",
    "Detection",
    "carrier_hz",
    "detection",
    "header_end",
    "in_band_fraction",
    "is_co_sf",
    "lock_deadline",
    "peak_sum_mw",
    "preamble_end",
    "required_sir_db",
]

#: SX1276 datasheet Rev. 7, 5.5.3, Table 38: NF at LNA gain G1, band 1 (862-1020 MHz).
NOISE_FIGURE_DB: Final = 7.0
#: Bor et al. 2016: a same-SF frame survives interference this much weaker (summed, in mW).
CO_SF_CAPTURE_DB: Final = 6.0
#: Croce et al. 2018, Table I: SIR (dB) a frame of SF row needs against one interferer of SF
#: column, BW 125 kHz. SF6 (implicit header only, unused by LoRaWAN) borrows the SF7 entries.
INTER_SF_SIR_DB: Final = MappingProxyType(
    {
        (victim, interferer): value
        for victim, row in {
            7: (None, -8, -9, -9, -9, -9),
            8: (-11, None, -11, -12, -13, -13),
            9: (-15, -13, None, -13, -14, -15),
            10: (-19, -18, -17, None, -17, -18),
            11: (-22, -22, -21, -20, None, -20),
            12: (-25, -25, -25, -24, -23, None),
        }.items()
        for interferer, value in zip(range(7, 13), row, strict=True)
        if value is not None
    }
)
#: Assumption (see the module docstring): power outside the victim's band is this much weaker.
ADJACENT_REJECTION_DB: Final = 60.0
#: `ADJACENT_REJECTION_DB` as a power ratio (computed once: `in_band_fraction` runs for every
#: pair of overlapping frames).
_ADJACENT_REJECTION_RATIO: Final = 10 ** (-ADJACENT_REJECTION_DB / 10)
#: Sync word (2 symbols) and start-of-frame delimiter (2.25) after the programmed preamble.
PREAMBLE_SYNC_SYMBOLS: Final = 4.25
#: The explicit header travels in the first 8 symbols after the preamble (always CR 4/8).
HEADER_SYMBOLS: Final = 8


class Detection(enum.Enum):
    """What a receiver set to one modulation does with a frame sent with another."""

    #: Other SF, bandwidth, carrier or IQ polarity: the preamble goes unnoticed.
    NONE = "none"
    #: Another sync word: the receiver locks on the preamble, the header fails.
    HEADER_FAILS = "header_fails"
    #: The header decodes but the payload cannot (LDRO / implicit-header settings differ).
    PAYLOAD_FAILS = "payload_fails"
    #: The chip demodulates it (whether the software wants it is another matter).
    DECODES = "decodes"


def detection(receiver: AirParams, frame: AirParams) -> Detection:
    """How a receiver set to `receiver` reacts to a frame sent with `frame`.

    Detection needs the same Frf register value, SF and bandwidth (the channel keeps the
    decoding rule of `AirParams.can_receive`, which demands an identical carrier register) and
    the same IQ polarity.
    """
    if not receiver.same_air(frame) or receiver.invert_iq != frame.invert_iq:
        return Detection.NONE
    if receiver.sync_word != frame.sync_word:
        return Detection.HEADER_FAILS
    if receiver.can_receive(frame):
        return Detection.DECODES
    return Detection.PAYLOAD_FAILS


def carrier_hz(params: AirParams, offset_hz: float = 0.0) -> float:
    """The frequency a signal is really centred on (register value plus crystal error)."""
    return params.frequency_hz + offset_hz


def in_band_fraction(
    victim_hz: float, victim_bw: int, interferer_hz: float, interferer_bw: int
) -> float:
    """Share of an interferer's power that lands in the victim's channel (flat chirp spectrum),
    with `ADJACENT_REJECTION_DB` for the part outside it."""
    low = max(victim_hz - victim_bw / 2, interferer_hz - interferer_bw / 2)
    high = min(victim_hz + victim_bw / 2, interferer_hz + interferer_bw / 2)
    inside = max(0.0, high - low) / interferer_bw
    return inside + (1.0 - inside) * _ADJACENT_REJECTION_RATIO


def is_co_sf(victim: AirParams, interferer: AirParams) -> bool:
    """Same chirp (SF and bandwidth, either IQ polarity): capture rules, not the Croce table."""
    return victim.sf == interferer.sf and victim.bw_hz == interferer.bw_hz


def required_sir_db(victim: AirParams, interferer: AirParams) -> float:
    """The SIR (dB) `victim` needs against the in-band power of `interferer`."""
    if is_co_sf(victim, interferer):
        return CO_SF_CAPTURE_DB
    row = max(victim.sf, 7)
    if victim.bw_hz == interferer.bw_hz:
        return INTER_SF_SIR_DB[(row, max(interferer.sf, 7))]
    # Another chirp slope with no measured table: the harshest entry of the victim's row.
    return max(value for (sf, _), value in INTER_SF_SIR_DB.items() if sf == row)


def preamble_end(frame: AirFrame) -> float:
    """When `frame`'s programmed preamble ends (its sync word follows)."""
    return frame.start + frame.params.preamble * symbol_time(frame.params.sf, frame.params.bw_hz)


def lock_deadline(frame: AirFrame) -> float:
    """Until when a stronger frame may still take the receiver over from `frame`."""
    return min(preamble_end(frame), frame.end)


def header_end(frame: AirFrame) -> float:
    """When the receiver knows whether `frame`'s header is valid (gives up on a foreign one)."""
    params = frame.params
    symbols = params.preamble + PREAMBLE_SYNC_SYMBOLS + HEADER_SYMBOLS
    return min(frame.start + symbols * symbol_time(params.sf, params.bw_hz), frame.end)


def peak_sum_mw(intervals: Iterable[tuple[float, float, float]], start: float, end: float) -> float:
    """The largest total power (mW) of `intervals` (start, end, mW) at any instant of
    [start, end): a sweep over the interval edges, not a per-sample loop."""
    edges: list[tuple[float, float]] = []
    for first, last, mw in intervals:
        a, b = max(first, start), min(last, end)
        if a < b and mw > 0:
            edges.append((a, mw))
            edges.append((b, -mw))
    edges.sort(key=lambda edge: (edge[0], edge[1]))  # ends (negative) before starts at a tie
    level = peak = 0.0
    for _, delta in edges:
        level += delta
        peak = max(peak, level)
    return peak
