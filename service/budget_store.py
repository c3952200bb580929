"""The airtime budget across restarts: a restart must not reset the hour.

Every node counts its transmissions in a sliding one-hour window (`common.budget`), and the law
counts per device, not per process. A daemon that restarts (a `restart` command, an update, a
crash) with an empty budget could send another full hour's allowance on top of what it sent in
the last hour. So the daemon saves the recent transmissions and the next start restores them
into the new link's budget before its first frame.

Two facts shape the file:

- **Time**: the link's times are monotonic seconds, and the monotonic clock starts over at a
  reboot. The file therefore stores *ages* ("ended 754 s before the save") plus the wall-clock
  time of the save; the restore re-anchors them on the new monotonic clock using the wall-clock
  time that passed. A Pi has no real-time clock: after a reboot its clock may be behind until NTP
  syncs, which makes the elapsed time look shorter and the old transmissions more recent. That
  errs on the legal side, and a clock that went backwards counts as no time passed at all.
- **Size and wear**: at one frame per second an hour holds 3600 transmissions. They are merged
  into buckets of at most a minute: a bucket's airtime is the sum of its frames and it counts
  until its *last* frame leaves the window, so it never frees airtime earlier than the frames it
  stands for would have (conservative). That bounds the file at about 60 entries (2 KB). The
  daemon saves every 10 minutes, every minute while more than half of the allowance is used,
  and at every orderly stop; a power cut loses at most the last interval.

Writes are atomic (temporary file, fsync, rename, directory fsync) and failures are logged
once, never raised: losing this file costs legal margin after a crash, never the daemon.

**A damaged file counts as a full hour.** The file holds limits, so it is read as hostile
input: every number must be finite (a NaN airtime once made `used()` return 0.0 for ever, i.e.
no duty cycle at all), airtimes lie in 0..window, and an age may be negative only by the
frame's own airtime (a frame still on the air when the save ran; anything else would "end"
in the future and could mute the node for ever). A file that fails any check, is not a
regular file, is larger than 256 KiB or cannot be read says nothing about the last hour, and
"nothing" must not mean "nothing was sent": the node may have used its whole allowance just
before the restart. So the restore assumes exactly that: one transmission of the full
allowance ending now. That is the worst history any legal node can have had (every real
window before now held at most the allowance, and this one counts it all for a full window
from now), so the duty cycle holds whatever the file said; the price is that the node stays
silent for up to one window (an hour in the EU 868 MHz bands), which the ERROR line says. The
damaged file is moved aside as evidence (``.corrupt``), and the next save writes the assumed
hour, so a restart loop cannot shorten it. A *missing* file (also one under a "directory" that
is really a file: nothing could ever have been saved there) is a first start (or a state
directory the user reset on purpose) and starts with the full allowance. A `saved_at` in the
future is not damage: a Pi without a real-time clock boots with its clock behind until NTP
syncs, and counting that as no time passed errs on the legal side.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

from p1lora.common.budget import AirtimeBudget, Transmission
from p1lora.service.bounded_read import UnsuitableFileError, read_regular_file
from p1lora.service.state_store import move_aside, parse_state_json, write_atomically

__all__ = ["BudgetStore", "merge_transmissions"]

logger = logging.getLogger(__name__)

FORMAT_VERSION: Final = 1
#: Transmissions closer than this are merged into one bucket.
BUCKET_S: Final = 60.0
SAVE_INTERVAL_S: Final = 600.0
BUSY_SAVE_INTERVAL_S: Final = 60.0
_MAX_FILE_BYTES = 256 * 1024


def merge_transmissions(sent: list[Transmission], bucket_s: float = BUCKET_S) -> list[Transmission]:
    """Merge transmissions (ordered by start) into buckets of at most `bucket_s`; each bucket
    ends with its last frame and starts its summed airtime before that."""
    buckets: list[Transmission] = []
    first_start: float | None = None
    total = 0.0
    last_end = 0.0
    for item in sorted(sent, key=lambda t: t.start):
        if first_start is not None and item.end - first_start > bucket_s:
            buckets.append(Transmission(last_end - total, total))
            first_start, total = None, 0.0
        if first_start is None:
            first_start = item.start
        total += item.airtime
        last_end = max(last_end, item.end)
    if first_start is not None:
        buckets.append(Transmission(last_end - total, total))
    return buckets


class BudgetStore:
    """`<role>_budget.json` in the state directory (None: memory only, nothing persisted)."""

    def __init__(
        self,
        directory: Path | None,
        role: str,
        *,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = directory / f"{role}_budget.json" if directory is not None else None
        self.role = role
        self._wall = wall_clock
        self._next_save: float | None = None
        self._failing = False
        #: Successful writes (diagnostics, tests).
        self.writes = 0

    def restore(self, budget: AirtimeBudget, now: float) -> int:
        """Put the saved transmissions back into a new link's budget (call before its first
        frame). Returns how many buckets were restored."""
        if self.path is None:
            return 0
        self._next_save = now + SAVE_INTERVAL_S
        try:
            raw = read_regular_file(self.path, _MAX_FILE_BYTES).data
            saved_at, entries = self._parse(raw, budget.window_s)
        except (FileNotFoundError, NotADirectoryError):
            return 0  # nothing was ever saved there (the state "directory" may be a file)
        except (OSError, UnsuitableFileError, ValueError) as exc:
            reason = (exc.strerror or str(exc)) if isinstance(exc, OSError) else str(exc)
            self._assume_spent(budget, now, reason)
            return 1
        elapsed = max(0.0, self._wall() - saved_at)
        restored = []
        for age, airtime in entries:
            end = now - age - elapsed
            if end + budget.window_s <= now:
                continue  # already out of the window
            restored.append(Transmission(end - airtime, airtime))
        budget.restore(restored)
        if restored:
            logger.info(
                "airtime budget restored: %.1f s used in the last hour before the restart",
                sum(t.airtime for t in restored),
            )
        return len(restored)

    def _assume_spent(self, budget: AirtimeBudget, now: float, reason: str) -> None:
        """The file says nothing usable: assume the whole allowance ended just now (see the
        module docstring for why that is the legal choice)."""
        assert self.path is not None
        try:
            where = f"moved it to {move_aside(self.path).name}"
        except OSError as exc:
            where = f"could not move it aside ({exc.strerror or exc})"
        if budget.unlimited:
            logger.warning(
                "the saved airtime budget %s is unusable (%s; %s); no duty-cycle limit applies",
                self.path,
                reason,
                where,
            )
            return
        allowance = budget.allowance_s
        budget.restore([Transmission(now - allowance, allowance)])
        logger.error(
            "the saved airtime budget %s is unusable (%s; %s): assuming the whole allowance "
            "(%.1f s) was used just before this start, so this node may stay silent for up to "
            "%.0f s to keep the legal duty cycle",
            self.path,
            reason,
            where,
            allowance,
            budget.window_s,
        )

    def _parse(self, raw: bytes, window_s: float) -> tuple[float, list[tuple[float, float]]]:
        """(saved_at, [(age, airtime)]); ValueError naming the first problem."""
        document = parse_state_json(raw)
        if not isinstance(document, dict) or document.get("format") != FORMAT_VERSION:
            raise ValueError("unknown format")
        if document.get("role") != self.role:
            raise ValueError(f"written by the {document.get('role')!r} side")
        saved_at = _finite(document.get("saved_at"))
        entries = document.get("transmissions")
        if saved_at is None or not isinstance(entries, list):
            raise ValueError("missing saved_at or transmissions")
        out: list[tuple[float, float]] = []
        for entry in entries:
            pair = [_finite(v) for v in entry] if isinstance(entry, list) else []
            if len(pair) != 2 or pair[0] is None or pair[1] is None:
                raise ValueError(f"bad entry {_short(entry)}")
            age, airtime = pair[0], pair[1]
            # A frame on the air during the save ends after it, by at most its own airtime.
            if not 0.0 <= airtime <= window_s or age < -airtime:
                raise ValueError(f"bad entry {_short(entry)}")
            out.append((age, airtime))
        return saved_at, out

    def maybe_save(self, budget: AirtimeBudget, now: float) -> None:
        """Save when the interval is due (shorter while the budget is busy)."""
        if self.path is None:
            return
        if self._next_save is None:
            self._next_save = now + SAVE_INTERVAL_S
        if now >= self._next_save:
            self.save(budget, now)

    def save(self, budget: AirtimeBudget, now: float) -> bool:
        """Write the transmissions still in the window at `now`; False (logged) on failure."""
        if self.path is None:
            return True
        busy = not budget.unlimited and budget.fraction_used(now) > 0.5
        self._next_save = now + (BUSY_SAVE_INTERVAL_S if busy else SAVE_INTERVAL_S)
        buckets = merge_transmissions(budget.transmissions(now))
        document = {
            "format": FORMAT_VERSION,
            "role": self.role,
            "saved_at": round(self._wall(), 3),
            "window_s": budget.window_s,
            # [seconds before the save when the bucket's last frame ended, airtime seconds]
            # Rounded towards the legal side: ages down (later ends), airtime up.
            "transmissions": [
                [math.floor((now - b.end) * 1e3) / 1e3, math.ceil(b.airtime * 1e6) / 1e6]
                for b in buckets
            ],
        }
        text = json.dumps(document, separators=(",", ":")) + "\n"
        try:
            write_atomically(self.path, text.encode("utf-8"))
        except OSError as exc:
            if not self._failing:
                logger.error(
                    "cannot write %s (%s): after a crash the airtime budget of the last hour "
                    "is forgotten; retrying",
                    self.path,
                    exc.strerror or exc,
                )
            self._failing = True
            return False
        if self._failing:
            logger.warning("airtime budget file %s written again", self.path)
            self._failing = False
        self.writes += 1
        return True


def _finite(value: object) -> float | None:
    """`value` as a finite float, None for anything else (text, bool, an int beyond float)."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
