"""SX1276/77/78/79 LoRa register map and bit fields, as named tables.

Both the driver and the emulator read their numbers from here, so a register address or a bit
position exists exactly once. Values follow the Semtech SX1276/77/78/79 datasheet (rev. 7, LoRa
register map, section 6.4) and the SX1276/77/78 errata note (section 2.1, 500 kHz sensitivity;
section 2.3, spurious reception of off-channel LoRa signals).

Registers 0x0D..0x3F are a separate page in LoRa mode (RegOpMode bit 7): the same address means
something else in FSK/OOK mode. Everything here is the LoRa page unless noted.
"""

from __future__ import annotations

from enum import IntEnum, IntFlag
from types import MappingProxyType
from typing import Final

__all__ = [
    "BANDWIDTH_CODES",
    "CHIP_VERSION",
    "CODING_RATE_CODES",
    "DETECTION_SETTINGS",
    "DIO0_FLAG",
    "ERRATA_IF_FREQ2",
    "FIFO_SIZE",
    "FREQ_STEP_HZ",
    "FSK_IMAGE_CAL",
    "FSK_RESET_VALUES",
    "FXOSC_HZ",
    "HF_PORT_MIN_HZ",
    "IMAGE_CAL_DURATION_S",
    "KNOWN_VERSIONS",
    "LORA_RESET_VALUES",
    "RSSI_OFFSET_HF",
    "RSSI_OFFSET_LF",
    "SHARED_RESET_VALUES",
    "Dio0Mapping",
    "HopChannel",
    "ImageCal",
    "Irq",
    "Mode",
    "ModemConfig1",
    "ModemConfig2",
    "ModemConfig3",
    "OpMode",
    "PaConfig",
    "Reg",
    "bandwidth_from_code",
    "detect_optimize_for",
    "errata_bw_registers",
]

#: Crystal frequency of every SX127x module on the market (32 MHz).
FXOSC_HZ: Final = 32_000_000
#: One step of the 24-bit Frf register: Frf = f * 2^19 / 32 MHz, so a step is 61.035 Hz.
FREQ_STEP_HZ: Final = FXOSC_HZ / (1 << 19)
#: RegVersion of the SX1276/77/78/79 family.
CHIP_VERSION: Final = 0x12
#: The LoRa FIFO is 256 bytes shared by TX and RX.
FIFO_SIZE: Final = 256
#: Frequencies above this use the HF RF port (band 1, 862-1020 MHz); below, the LF port.
HF_PORT_MIN_HZ: Final = 525_000_000
#: Packet RSSI offsets (datasheet 5.5.5): RSSI = offset + PktRssi on the HF and LF ports.
RSSI_OFFSET_HF: Final = -157
RSSI_OFFSET_LF: Final = -164

#: RegVersion values of chips people plug in by mistake, for a useful error message.
KNOWN_VERSIONS: Final = MappingProxyType(
    {
        0x12: "SX1276/77/78/79",
        0x22: "SX1272/73 (a different register map; not supported)",
        0x24: "SX1272 (a different register map; not supported)",
        0x13: "SX1276 engineering sample",
    }
)


class Reg(IntEnum):
    """Register addresses (LoRa page for 0x0D..0x3F)."""

    FIFO = 0x00
    OP_MODE = 0x01
    FRF_MSB = 0x06
    FRF_MID = 0x07
    FRF_LSB = 0x08
    PA_CONFIG = 0x09
    PA_RAMP = 0x0A
    OCP = 0x0B
    LNA = 0x0C
    FIFO_ADDR_PTR = 0x0D
    FIFO_TX_BASE_ADDR = 0x0E
    FIFO_RX_BASE_ADDR = 0x0F
    FIFO_RX_CURRENT_ADDR = 0x10
    IRQ_FLAGS_MASK = 0x11
    IRQ_FLAGS = 0x12
    RX_NB_BYTES = 0x13
    RX_HEADER_CNT_MSB = 0x14
    RX_HEADER_CNT_LSB = 0x15
    RX_PACKET_CNT_MSB = 0x16
    RX_PACKET_CNT_LSB = 0x17
    MODEM_STAT = 0x18
    PKT_SNR_VALUE = 0x19
    PKT_RSSI_VALUE = 0x1A
    RSSI_VALUE = 0x1B
    HOP_CHANNEL = 0x1C
    MODEM_CONFIG1 = 0x1D
    MODEM_CONFIG2 = 0x1E
    SYMB_TIMEOUT_LSB = 0x1F
    PREAMBLE_MSB = 0x20
    PREAMBLE_LSB = 0x21
    PAYLOAD_LENGTH = 0x22
    MAX_PAYLOAD_LENGTH = 0x23
    HOP_PERIOD = 0x24
    FIFO_RX_BYTE_ADDR = 0x25
    MODEM_CONFIG3 = 0x26
    PPM_CORRECTION = 0x27
    FEI_MSB = 0x28
    FEI_MID = 0x29
    FEI_LSB = 0x2A
    RSSI_WIDEBAND = 0x2C
    IF_FREQ2 = 0x2F  # errata 2.3 (not named in the datasheet's LoRa register table)
    IF_FREQ1 = 0x30
    DETECT_OPTIMIZE = 0x31
    INVERT_IQ = 0x33
    HIGH_BW_OPTIMIZE1 = 0x36
    DETECTION_THRESHOLD = 0x37
    SYNC_WORD = 0x39
    HIGH_BW_OPTIMIZE2 = 0x3A
    INVERT_IQ2 = 0x3B
    DIO_MAPPING1 = 0x40
    DIO_MAPPING2 = 0x41
    VERSION = 0x42
    TCXO = 0x4B
    PA_DAC = 0x4D
    FORMER_TEMP = 0x5B
    AGC_REF = 0x61
    AGC_THRESH1 = 0x62
    AGC_THRESH2 = 0x63
    AGC_THRESH3 = 0x64
    PLL = 0x70


class Mode(IntEnum):
    """RegOpMode bits 2-0: the transceiver mode."""

    SLEEP = 0
    STDBY = 1
    FSTX = 2
    TX = 3
    FSRX = 4
    RXCONT = 5
    RXSINGLE = 6
    CAD = 7


class OpMode(IntFlag):
    """RegOpMode flag bits; the mode itself is `Mode` in bits 2-0 (`MODE_MASK`)."""

    LONG_RANGE = 0x80  # LoRa; writable only in SLEEP
    ACCESS_SHARED_REG = 0x40
    LOW_FREQUENCY = 0x08  # LF test registers (used below 525 MHz)
    MODE_MASK = 0x07


class Irq(IntFlag):
    """RegIrqFlags (write 1 to clear) and RegIrqFlagsMask (1 masks the IRQ)."""

    RX_TIMEOUT = 0x80
    RX_DONE = 0x40
    PAYLOAD_CRC_ERROR = 0x20
    VALID_HEADER = 0x10
    TX_DONE = 0x08
    CAD_DONE = 0x04
    FHSS_CHANGE_CHANNEL = 0x02
    CAD_DETECTED = 0x01


#: RegImageCal lives on the FSK/OOK page (0x3B; the LoRa page has RegInvertIQ2 there), so the
#: image calibration runs with the LoRa bit cleared, in FSK standby (datasheet 4.2.3.8).
FSK_IMAGE_CAL: Final = 0x3B
#: How long the chip's image calibration takes (datasheet 4.2.3.8: "about 10 ms").
IMAGE_CAL_DURATION_S: Final = 0.01


class ImageCal(IntFlag):
    """RegImageCal (FSK page 0x3B)."""

    AUTO_IMAGE_CAL_ON = 0x80
    IMAGE_CAL_START = 0x40  # write 1 in standby to start; reads back 0
    IMAGE_CAL_RUNNING = 0x20  # set while the calibration runs
    TEMP_CHANGE = 0x08
    TEMP_THRESHOLD_MASK = 0x06
    TEMP_MONITOR_OFF = 0x01


class HopChannel(IntFlag):
    """RegHopChannel (read-only)."""

    PLL_TIMEOUT = 0x80
    CRC_ON_PAYLOAD = 0x40  # the received header said a payload CRC follows


class ModemConfig1(IntFlag):
    """RegModemConfig1: BW in bits 7-4, coding rate in bits 3-1, implicit header in bit 0."""

    BW_MASK = 0xF0
    CR_MASK = 0x0E
    IMPLICIT_HEADER = 0x01


class ModemConfig2(IntFlag):
    """RegModemConfig2: SF in bits 7-4, TX continuous, RX payload CRC, SymbTimeout(9:8)."""

    SF_MASK = 0xF0
    TX_CONTINUOUS = 0x08
    RX_PAYLOAD_CRC_ON = 0x04
    SYMB_TIMEOUT_MSB_MASK = 0x03


class ModemConfig3(IntFlag):
    """RegModemConfig3."""

    LOW_DATA_RATE_OPTIMIZE = 0x08
    AGC_AUTO_ON = 0x04


class PaConfig(IntFlag):
    """RegPaConfig: PA_BOOST select, MaxPower (bits 6-4), OutputPower (bits 3-0)."""

    PA_BOOST = 0x80
    MAX_POWER_MASK = 0x70
    OUTPUT_POWER_MASK = 0x0F


class Dio0Mapping(IntEnum):
    """RegDioMapping1 bits 7-6: what DIO0 signals in LoRa mode."""

    RX_DONE = 0b00
    TX_DONE = 0b01
    CAD_DONE = 0b10
    NONE = 0b11


#: DIO0 follows exactly one IRQ flag per mapping (datasheet table 18); NONE follows nothing.
DIO0_FLAG: Final = MappingProxyType(
    {
        Dio0Mapping.RX_DONE: Irq.RX_DONE,
        Dio0Mapping.TX_DONE: Irq.TX_DONE,
        Dio0Mapping.CAD_DONE: Irq.CAD_DONE,
        Dio0Mapping.NONE: Irq(0),
    }
)

#: LoRa bandwidth (Hz) -> RegModemConfig1 BW code (bits 7-4).
BANDWIDTH_CODES: Final = MappingProxyType(
    {
        7_800: 0,
        10_400: 1,
        15_600: 2,
        20_800: 3,
        31_250: 4,
        41_700: 5,
        62_500: 6,
        125_000: 7,
        250_000: 8,
        500_000: 9,
    }
)

#: Coding rate denominator (5 for 4/5 ... 8 for 4/8) -> RegModemConfig1 CR code (bits 3-1).
CODING_RATE_CODES: Final = MappingProxyType({5: 1, 6: 2, 7: 3, 8: 4})

#: (RegDetectOptimize, RegDetectionThreshold) per SF: SF6 needs its own (datasheet 4.1.1.2).
#: Bit 7 of RegDetectOptimize is what errata 2.3 clears below 500 kHz (`detect_optimize_for`).
DETECTION_SETTINGS: Final = MappingProxyType(
    {sf: ((0xC5, 0x0C) if sf == 6 else (0xC3, 0x0A)) for sf in range(6, 13)}
)
#: RegDetectOptimize bit 7 (automatic IF): left set only at 500 kHz (errata 2.3).
_AUTOMATIC_IF = 0x80

#: SX1276/77/78 errata note section 2.3 ("Receiver spurious reception of a LoRa signal"): with
#: the automatic IF on, a receiver below 500 kHz bandwidth can lock onto a LoRa signal that is
#: off its channel. The fix clears RegDetectOptimize bit 7 and sets RegIfFreq2 (0x2F) per
#: bandwidth, with RegIfFreq1 (0x30) = 0x00. BW -> RegIfFreq2. Below 62.5 kHz the errata also
#: shifts the receive frequency up by one bandwidth; p1-lora never uses those bandwidths (the
#: link's ladder starts at 125 kHz) and the driver does not apply that shift.
ERRATA_IF_FREQ2: Final = MappingProxyType(
    {
        7_800: 0x48,
        10_400: 0x44,
        15_600: 0x44,
        20_800: 0x44,
        31_250: 0x44,
        41_700: 0x44,
        62_500: 0x40,
        125_000: 0x40,
        250_000: 0x40,
    }
)


def detect_optimize_for(sf: int, bw_hz: int) -> int:
    """RegDetectOptimize for `sf` at `bw_hz`: bit 7 cleared below 500 kHz (errata 2.3)."""
    value = DETECTION_SETTINGS[sf][0]
    return value if bw_hz == 500_000 else value & ~_AUTOMATIC_IF


def bandwidth_from_code(code: int) -> int | None:
    """The bandwidth in Hz of a BW code, None for the reserved codes 10..15."""
    for bw, value in BANDWIDTH_CODES.items():
        if value == code:
            return bw
    return None


def errata_bw_registers(bw_hz: int, frequency_hz: int) -> tuple[tuple[Reg, int], ...]:
    """Register writes of errata 2.1 (receiver sensitivity at 500 kHz) and 2.3 (spurious
    reception below 500 kHz).

    2.1: with BW 500 kHz the chip needs 0x36 = 0x02 and 0x3A = 0x64 in band 1 (above 525 MHz)
    or 0x3A = 0x7F in bands 2/3; any other bandwidth needs 0x36 = 0x03 after each reset (0x3A is
    then unused and keeps its value, as in Semtech's reference driver).
    2.3: below 500 kHz RegIfFreq2 (0x2F) per `ERRATA_IF_FREQ2` and RegIfFreq1 (0x30) = 0x00
    (RegDetectOptimize bit 7 is `detect_optimize_for`'s part). At 500 kHz both keep their reset
    values, which the automatic IF then uses.
    """
    if bw_hz == 500_000:
        high = 0x64 if frequency_hz > HF_PORT_MIN_HZ else 0x7F
        return (
            (Reg.HIGH_BW_OPTIMIZE1, 0x02),
            (Reg.HIGH_BW_OPTIMIZE2, high),
            (Reg.IF_FREQ2, LORA_RESET_VALUES[Reg.IF_FREQ2]),
            (Reg.IF_FREQ1, 0x00),
        )
    return (
        (Reg.HIGH_BW_OPTIMIZE1, 0x03),
        (Reg.IF_FREQ2, ERRATA_IF_FREQ2[bw_hz]),
        (Reg.IF_FREQ1, 0x00),
    )


#: Reset values of the registers outside the LoRa page (same in both modes). RegOpMode resets
#: to FSK/OOK standby with LowFrequencyModeOn set; Frf resets to 434 MHz.
SHARED_RESET_VALUES: Final = MappingProxyType(
    {
        Reg.OP_MODE: 0x09,
        0x02: 0x1A,
        0x03: 0x0B,
        0x04: 0x00,
        0x05: 0x52,
        Reg.FRF_MSB: 0x6C,
        Reg.FRF_MID: 0x80,
        Reg.FRF_LSB: 0x00,
        Reg.PA_CONFIG: 0x4F,
        Reg.PA_RAMP: 0x09,
        Reg.OCP: 0x2B,
        Reg.LNA: 0x20,
        Reg.DIO_MAPPING1: 0x00,
        Reg.DIO_MAPPING2: 0x00,
        Reg.VERSION: CHIP_VERSION,
        Reg.TCXO: 0x09,
        Reg.PA_DAC: 0x84,
        Reg.AGC_REF: 0x19,
        Reg.AGC_THRESH1: 0x0C,
        Reg.AGC_THRESH2: 0x4B,
        Reg.AGC_THRESH3: 0xCC,
        Reg.PLL: 0xD0,
    }
)

#: Reset values of the LoRa page (0x0D..0x3F); unlisted addresses reset to 0x00.
LORA_RESET_VALUES: Final = MappingProxyType(
    {
        Reg.FIFO_TX_BASE_ADDR: 0x80,
        Reg.MODEM_STAT: 0x10,
        Reg.MODEM_CONFIG1: 0x72,  # BW 125 kHz, CR 4/5, explicit header
        Reg.MODEM_CONFIG2: 0x70,  # SF7, CRC off
        Reg.SYMB_TIMEOUT_LSB: 0x64,
        Reg.PREAMBLE_LSB: 0x08,
        Reg.PAYLOAD_LENGTH: 0x01,
        Reg.MAX_PAYLOAD_LENGTH: 0xFF,
        Reg.MODEM_CONFIG3: 0x04,
        Reg.IF_FREQ2: 0x20,
        Reg.DETECT_OPTIMIZE: 0xC3,
        Reg.INVERT_IQ: 0x27,
        Reg.HIGH_BW_OPTIMIZE1: 0x03,
        Reg.DETECTION_THRESHOLD: 0x0A,
        Reg.SYNC_WORD: 0x12,
        Reg.HIGH_BW_OPTIMIZE2: 0x65,
        Reg.INVERT_IQ2: 0x1D,
    }
)

#: FSK/OOK page registers p1-lora touches, with their reset values (datasheet table 41).
FSK_RESET_VALUES: Final = MappingProxyType(
    {FSK_IMAGE_CAL: int(ImageCal.AUTO_IMAGE_CAL_ON) | 0x02}  # 0x82: auto on, threshold 10 degC
)
