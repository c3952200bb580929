"""The virtual meter's registers in the state directory (`p1-lora-tx --meter virtual`).

A real meter's energy registers only ever grow; Home Assistant books a drop as a meter reset
and, after a few, reports the sensor as "not strictly increasing". A virtual meter restarted
from its seed printed its seed's registers again (1334.514 -> 1334.513 kWh after a restart), so
the transmitter keeps them in ``<state dir>/virtual-meter.json`` (`MeterRegisters` JSON):

- at start they are read (bounded, never blocking: `read_regular_file`) and `restore()`d into
  the new meter before its first telegram, so each register continues from the larger of the
  saved and the seeded value;
- a damaged file, or one of another meter (another seed, profile or template: its equipment id
  differs), is moved aside (``virtual-meter.json.corrupt``, kept for a look) with a warning,
  and the meter starts from its seed: registers of two meters are never mixed;
- while running, the registers of the last telegram handed on are written atomically
  (`write_atomically`: tmp, fsync, rename) about every `SAVE_INTERVAL_S` and at shutdown, so
  an orderly stop or restart never steps back. A power cut or `kill -9` loses what the meter
  counted since the last save: the restarted meter continues from that save, below what it
  printed in that last minute (a few Wh; writing every telegram instead would wear the SD
  card for a demo meter).

A failing write (read-only or full disk) is logged once as a warning and retried at the next
interval; the meter keeps running either way.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from p1lora.common.clock import Clock
from p1lora.service.bounded_read import UnsuitableFileError, read_regular_file
from p1lora.service.state_store import move_aside, parse_state_json, write_atomically
from p1lora.transmitter.virtual_meter import MeterRegisters, VirtualMeter

__all__ = ["METER_STATE_FILE", "SAVE_INTERVAL_S", "MeterRegisterFile"]

#: The file in the state directory.
METER_STATE_FILE: Final = "virtual-meter.json"
#: How often the registers are written while running (an SD card wears with every write).
SAVE_INTERVAL_S: Final = 60.0
#: A register file is a few hundred bytes; anything much larger is not one.
_MAX_BYTES: Final = 64 * 1024

logger = logging.getLogger("p1lora.transmitter.cli")


class MeterRegisterFile:
    """Keeps one virtual meter's registers in `path` (see the module docstring)."""

    def __init__(self, path: Path, clock: Clock, *, every_s: float = SAVE_INTERVAL_S) -> None:
        self.path = path
        self._clock = clock
        self._every = every_s
        self._lock = threading.Lock()
        self._latest: MeterRegisters | None = None
        self._written: MeterRegisters | None = None
        self._next_save = clock.now() + every_s
        self._failing = False
        #: Writes that reached the disk (for tests and the log).
        self.saves = 0

    def restore_into(self, meter: VirtualMeter) -> bool:
        """Continue `meter` from the saved registers; False when there were none to use."""
        try:
            raw = read_regular_file(self.path, _MAX_BYTES).data
        except FileNotFoundError:
            logger.info(
                "virtual meter: no saved registers in %s; starting from the seed", self.path
            )
            return False
        except UnsuitableFileError as exc:
            self._set_aside(str(exc))
            return False
        except OSError as exc:
            logger.warning(
                "virtual meter: cannot read the saved registers %s (%s); starting from the seed",
                self.path,
                exc.strerror or exc,
            )
            return False
        try:
            parse_state_json(raw)  # refuses NaN, huge numbers and deep nesting first
            saved = MeterRegisters.from_json(raw.decode("utf-8"))
            meter.restore(saved)
        except ValueError as exc:
            self._set_aside(str(exc))
            return False
        self._written = saved
        logger.info(
            "virtual meter: continuing meter %s from the registers saved in %s",
            saved.equipment_id,
            self.path,
        )
        return True

    def telegrams(self, meter: VirtualMeter) -> Iterator[tuple[float, bytes]]:
        """`meter`'s telegrams; after each one is handed on, its registers are the ones to
        keep (written when `SAVE_INTERVAL_S` has passed)."""
        for item in meter:
            yield item
            self._latest = meter.registers()  # the feeder asks for the next: this one went
            if self._clock.now() >= self._next_save:
                self.save()

    def save(self) -> None:
        """Write the registers of the last telegram handed on (nothing new: no write)."""
        with self._lock:
            latest = self._latest
            self._next_save = self._clock.now() + self._every
            if latest is None or latest == self._written:
                return
            try:
                write_atomically(self.path, (latest.to_json() + "\n").encode())
            except OSError as exc:
                if not self._failing:
                    logger.warning(
                        "virtual meter: cannot save its registers to %s (%s); after a restart "
                        "it may count from older values (retrying every %g s)",
                        self.path,
                        exc.strerror or exc,
                        self._every,
                    )
                self._failing = True
                return
            if self._failing:
                logger.info("virtual meter: registers saved to %s again", self.path)
            self._failing = False
            self._written = latest
            self.saves += 1

    def _set_aside(self, reason: str) -> None:
        try:
            where = f"moved it to {move_aside(self.path).name}"
        except OSError as exc:
            where = f"could not move it aside ({exc.strerror or exc})"
        logger.warning(
            "virtual meter: saved registers %s unusable (%s): %s and started from the seed",
            self.path,
            reason,
            where,
        )
