"""LoRa time on air (Semtech AN1200.13 / SX1276 datasheet section 4.1.1.7).

Every legal limit in p1-lora (duty cycle, dwell time) and every timeout is derived from this
formula, so it is kept exact and tested against Semtech's published reference values:

    Tsym     = 2^SF / BW
    Npayload = 8 + max(ceil((8*PL - 4*SF + 28 + 16*CRC - 20*IH) / (4*(SF - 2*DE))) * (CR + 4), 0)
    ToA      = (Npreamble + 4.25 + Npayload) * Tsym

CR is 1..4 for coding rates 4/5..4/8 (RadioSettings.cr holds the denominator 5..8). DE, the
low data rate optimisation, is required when a symbol lasts 16 ms or more (SF11/SF12 at 125 kHz,
SF12 at 250 kHz); the driver sets it with the same rule so both ends agree.
"""

from __future__ import annotations

import math

from p1lora.common.radio_types import RadioSettings

__all__ = [
    "MAX_PAYLOAD",
    "low_data_rate_optimize",
    "symbol_time",
    "time_on_air",
    "time_on_air_for",
]

#: An SX127x frame carries at most this many payload bytes.
MAX_PAYLOAD = 255

#: Symbols at or above this duration need LowDataRateOptimize (SX1276 datasheet, RegModemConfig3).
_LDRO_SYMBOL_S = 0.016


def symbol_time(sf: int, bw_hz: int) -> float:
    """Seconds per LoRa symbol."""
    return (1 << sf) / bw_hz


def low_data_rate_optimize(sf: int, bw_hz: int) -> bool:
    """Whether LowDataRateOptimize must be on for this SF/BW (symbol time >= 16 ms)."""
    return symbol_time(sf, bw_hz) >= _LDRO_SYMBOL_S


def time_on_air(
    payload_len: int,
    sf: int,
    bw_hz: int,
    *,
    cr: int = 5,
    preamble: int = 8,
    crc_on: bool = True,
    implicit_header: bool = False,
    ldro: bool | None = None,
) -> float:
    """Seconds a frame of `payload_len` bytes occupies the air.

    `cr` is the coding-rate denominator (5 for 4/5 ... 8 for 4/8). `ldro` defaults to the rule
    in `low_data_rate_optimize`. SF6 only works with an implicit header on the SX127x.
    """
    if not 0 <= payload_len <= MAX_PAYLOAD:
        raise ValueError(f"payload of {payload_len} bytes is outside 0..{MAX_PAYLOAD}")
    if not 5 <= cr <= 8:
        raise ValueError(f"coding rate 4/{cr} is not one of 4/5..4/8")
    de = low_data_rate_optimize(sf, bw_hz) if ldro is None else ldro
    tsym = symbol_time(sf, bw_hz)
    numerator = 8 * payload_len - 4 * sf + 28 + 16 * int(crc_on) - 20 * int(implicit_header)
    denominator = 4 * (sf - 2 * int(de))
    n_payload = 8 + max(math.ceil(numerator / denominator) * cr, 0)
    return (preamble + 4.25 + n_payload) * tsym


def time_on_air_for(settings: RadioSettings, payload_len: int) -> float:
    """Time on air of a frame sent with `settings` (explicit header, as p1-lora always uses)."""
    return time_on_air(
        payload_len,
        settings.sf,
        settings.bw_hz,
        cr=settings.cr,
        preamble=settings.preamble,
        crc_on=settings.crc_on,
        implicit_header=settings.sf == 6,
    )
