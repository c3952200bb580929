"""Analysis of the link-quality log: pure functions from JSON lines to a report.

`p1-lora linkreport` (`p1lora.receiver.linkreport_command`) reads the files and prints; this
module only parses lines and computes, so every number in the report is testable without files
or a terminal. The record schema is documented in `p1lora.service.link_log`.

What the report answers, per radio setting (SF/BW):

- **Frames**: heard (rx) and sent (tx), and how many heard frames were rejected, by reason.
- **Loss**, two ways, each only when the log has the fields for it:

  - *Uplink loss* from the sender's authenticated frame counters on accepted frames: a jump
    from counter 41 to 44 means frames 42 and 43 never arrived. The gap is charged to the
    setting of the frame that ended it. A new ``session`` starts a new sequence, and so does
    an accepted handshake frame (discovery, challenge, resync): a sender that restarted skips
    ahead to its next persisted counter block and handshakes again, which is not loss (the
    daemons name the peer's handshake in ``session`` too; the frame type covers older logs).
    A jump larger than ``max_gap`` also starts over (a log that missed the handshake).
    Repeated or older counters are counted as duplicates, not as received frames.
  - *Acknowledgement loss* from this node's point of view (the transmitter's log): sent
    frames with ``ack_expected`` and a ``counter``, matched with received acks whose ``acked``
    names that counter. It counts transmissions: a frame sent again after its ack did not come
    carries the same counter, and an ack answers the latest transmission of that counter before
    it, so the earlier one counts as lost. Frames sent within ``ack_grace`` seconds of the
    log's end are "pending", not lost. Uplink loss, by contrast, counts counters that never
    arrived at all (a repeat that got through closes the gap), as the receiver's packet loss
    does; on a link that needs repeats, ack loss is therefore the higher figure.

- **RSSI and SNR percentiles** (p5/p50/p95) of heard frames, rejected ones included (they were
  heard; the radio's view of the channel does not depend on our verdict).
- **Airtime**: seconds on air sent and heard, time spent on the setting, and sent airtime per
  hour on that setting (the duty-cycle view).

Plus the settings timeline (every change, from ``settings`` events and from the settings the
frames carry), airtime per clock hour, and rejected frames by reason. Lines that are not valid
records are counted and skipped with the first few reasons kept for the user.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "BadRecordError",
    "HourAirtime",
    "ParsedLog",
    "Record",
    "Report",
    "SettingChange",
    "SettingSummary",
    "analyse",
    "format_report",
    "parse_lines",
    "parse_record",
    "percentile",
    "report_to_dict",
    "setting_label",
]

#: How many bad-line explanations a report keeps.
MAX_BAD_EXAMPLES = 5
DEFAULT_MAX_GAP = 1000
DEFAULT_ACK_GRACE_S = 30.0
#: Frame types (as the log names them) that open a handshake: the sender's counter starts a
#: new sequence there (a restarted sender skips ahead to its next reserved block, any size).
HANDSHAKE_TYPES = frozenset({"discovery", "challenge", "resync"})
HOUR_S = 3600.0


class BadRecordError(ValueError):
    """A line that is not a valid link-log record; the message says why."""


@dataclass(frozen=True, slots=True)
class Record:
    """One parsed log line. `time` is seconds since the epoch (UTC)."""

    time: float
    kind: str
    type: str
    direction: str | None = None
    sf: int | None = None
    bw: int | None = None
    freq: int | None = None
    tx_power: float | None = None
    nbytes: int | None = None
    airtime: float | None = None
    rssi: float | None = None
    snr: float | None = None
    ok: bool = True
    reason: str | None = None
    counter: int | None = None
    session: str | None = None
    ack_expected: bool = False
    acked: int | None = None

    @property
    def setting(self) -> tuple[int, int] | None:
        if self.sf is None or self.bw is None:
            return None
        return (self.sf, self.bw)


def setting_label(setting: tuple[int, int]) -> str:
    """`(7, 125000)` -> `SF7/BW125`."""
    sf, bw = setting
    return f"SF{sf}/BW{bw / 1000:g}"


# ---------------------------------------------------------------------- parsing


def _number(data: dict[str, Any], name: str) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise BadRecordError(f"field {name!r} is not a number: {value!r}")
    return float(value)


def _integer(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise BadRecordError(f"field {name!r} is not an integer: {value!r}")
    return value


def _time(value: Any) -> float:
    if not isinstance(value, str):
        raise BadRecordError("field 'time' is missing or not a string")
    try:
        stamp = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadRecordError(f"field 'time' is not ISO 8601: {value[:40]!r}") from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)  # the writer always writes UTC
    return stamp.timestamp()


def parse_record(line: str) -> Record:
    """Parse one JSON line; raise `BadRecordError` with a short reason when it is not a record."""
    try:
        data = json.loads(line)
    except (json.JSONDecodeError, RecursionError):
        raise BadRecordError("not JSON") from None
    if not isinstance(data, dict):
        raise BadRecordError("not a JSON object")
    time = _time(data.get("time"))
    kind = data.get("kind")
    if kind is None:
        kind = "frame" if "direction" in data else "event"
    if kind not in ("frame", "event"):
        raise BadRecordError(f"field 'kind' is {kind!r}, not 'frame' or 'event'")
    record_type = data.get("type", "")
    if not isinstance(record_type, str):
        raise BadRecordError("field 'type' is not a string")
    direction = data.get("direction")
    if kind == "frame" and direction not in ("rx", "tx"):
        raise BadRecordError(f"frame with direction {direction!r}, not 'rx' or 'tx'")
    sf = _integer(data, "sf")
    if sf is not None and not 5 <= sf <= 12:
        raise BadRecordError(f"field 'sf' is outside 5..12: {sf}")
    bw = _number(data, "bw")
    if bw is not None and bw <= 0:
        raise BadRecordError(f"field 'bw' is not positive: {bw}")
    ok = data.get("ok", True)
    if not isinstance(ok, bool):
        raise BadRecordError(f"field 'ok' is not true/false: {ok!r}")
    reason = data.get("reason")
    if reason is not None and not isinstance(reason, str):
        reason = str(reason)
    session = data.get("session")
    ack_expected = data.get("ack_expected", False)
    if not isinstance(ack_expected, bool):
        raise BadRecordError(f"field 'ack_expected' is not true/false: {ack_expected!r}")
    nbytes = _integer(data, "bytes")
    return Record(
        time=time,
        kind=kind,
        type=record_type,
        direction=direction if isinstance(direction, str) else None,
        sf=sf,
        bw=None if bw is None else round(bw),
        freq=_integer(data, "freq"),
        tx_power=_number(data, "tx_power"),
        nbytes=nbytes,
        airtime=_number(data, "airtime"),
        rssi=_number(data, "rssi"),
        snr=_number(data, "snr"),
        ok=ok,
        reason=reason,
        counter=_integer(data, "counter"),
        session=None if session is None else str(session),
        ack_expected=ack_expected,
        acked=_integer(data, "acked"),
    )


@dataclass
class ParsedLog:
    """Records in time order plus what was skipped."""

    records: list[Record]
    lines: int = 0
    bad_lines: int = 0
    bad_examples: list[str] = field(default_factory=list)


def parse_lines(lines: Iterable[tuple[str, int, str]]) -> ParsedLog:
    """Parse `(source, line_number, text)` triples; blank lines are ignored, bad ones counted.

    Records are returned sorted by time (stable), so rotated files may come in any order.
    """
    records: list[Record] = []
    parsed = ParsedLog(records)
    for source, number, text in lines:
        if not text.strip():
            continue
        parsed.lines += 1
        try:
            records.append(parse_record(text))
        except BadRecordError as exc:
            parsed.bad_lines += 1
            if len(parsed.bad_examples) < MAX_BAD_EXAMPLES:
                parsed.bad_examples.append(f"{source}:{number}: {exc}")
    records.sort(key=lambda record: record.time)
    return parsed


# ---------------------------------------------------------------------- analysis


def percentile(values: Sequence[float], p: float) -> float | None:
    """The p-th percentile with linear interpolation between ranks (numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = math.ceil(rank)
    if low == high:
        return ordered[low]
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass
class SettingSummary:
    """Everything the report says about one SF/BW setting."""

    sf: int
    bw: int
    frames_rx: int = 0
    frames_tx: int = 0
    rejected: int = 0
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    rssi: list[float] = field(default_factory=list)
    snr: list[float] = field(default_factory=list)
    uplink_received: int = 0
    uplink_lost: int = 0
    duplicates: int = 0
    acks_expected: int = 0
    acks_received: int = 0
    acks_pending: int = 0
    airtime_tx: float = 0.0
    airtime_rx: float = 0.0
    time_on_setting: float = 0.0

    @property
    def label(self) -> str:
        return setting_label((self.sf, self.bw))

    @property
    def uplink_loss(self) -> float | None:
        expected = self.uplink_received + self.uplink_lost
        return self.uplink_lost / expected if expected else None

    @property
    def ack_loss(self) -> float | None:
        decided = self.acks_expected - self.acks_pending
        return (decided - self.acks_received) / decided if decided > 0 else None

    @property
    def tx_airtime_per_hour(self) -> float | None:
        """Seconds sent per hour spent on this setting (None for less than a minute)."""
        if self.time_on_setting < 60:
            return None
        return self.airtime_tx * HOUR_S / self.time_on_setting


@dataclass(frozen=True, slots=True)
class SettingChange:
    """A point in the settings timeline."""

    time: float
    sf: int
    bw: int
    freq: int | None
    tx_power: float | None
    reason: str | None
    #: "event" when a settings event said so, "frame" when first seen on a frame.
    source: str


@dataclass(frozen=True, slots=True)
class HourAirtime:
    hour: float
    tx: float
    rx: float


@dataclass
class Report:
    first: float | None
    last: float | None
    records: int
    frames_rx: int
    frames_tx: int
    events: int
    settings: list[SettingSummary]
    timeline: list[SettingChange]
    hours: list[HourAirtime]
    rejected_by_reason: Counter[str]
    bad_lines: int
    bad_examples: list[str]
    lines: int

    @property
    def duration(self) -> float:
        if self.first is None or self.last is None:
            return 0.0
        return self.last - self.first


def _timeline(records: Sequence[Record]) -> list[SettingChange]:
    """Every change of (SF, BW, frequency), from settings events and frames, in time order."""
    timeline: list[SettingChange] = []
    current: tuple[int, int, int | None] | None = None
    for record in records:
        is_settings_event = record.kind == "event" and record.type == "settings"
        if record.kind == "event" and not is_settings_event:
            continue
        if record.sf is None or record.bw is None:
            continue
        # Frames may not carry the frequency: then it is whatever it was.
        freq = record.freq if record.freq is not None else (current[2] if current else None)
        key = (record.sf, record.bw, freq)
        if key == current:
            continue
        current = key
        timeline.append(
            SettingChange(
                time=record.time,
                sf=record.sf,
                bw=record.bw,
                freq=freq,
                tx_power=record.tx_power,
                reason=record.reason if is_settings_event else None,
                source="event" if is_settings_event else "frame",
            )
        )
    return timeline


def _count_received(
    target: SettingSummary,
    record: Record,
    *,
    acks: _AckBook,
    last_counter: dict[str | None, int],
    max_gap: int,
) -> None:
    """A received frame at its setting: signal, rejection, the ack it carries, its counter."""
    if record.rssi is not None:
        target.rssi.append(record.rssi)
    if record.snr is not None:
        target.snr.append(record.snr)
    if not record.ok:
        target.rejected += 1
        target.rejected_by_reason[record.reason or "unspecified"] += 1
        return
    if record.acked is not None:
        acks.answered(record.acked)
    if record.counter is not None:
        _count_uplink(target, record, record.counter, last_counter, max_gap)


def _count_uplink(
    target: SettingSummary,
    record: Record,
    counter: int,
    last_counter: dict[str | None, int],
    max_gap: int,
) -> None:
    """Received, lost (a gap in the session's counters) or duplicate; a handshake or a jump
    over `max_gap` starts counting afresh (a restart, not a loss)."""
    previous = last_counter.get(record.session)
    handshake = record.type in HANDSHAKE_TYPES
    if previous is None or handshake or counter - previous > max_gap:
        target.uplink_received += 1
        last_counter[record.session] = counter
    elif counter <= previous:
        target.duplicates += 1
    else:
        target.uplink_lost += counter - previous - 1
        target.uplink_received += 1
        last_counter[record.session] = counter


@dataclass
class _AckBook:
    """Transmissions that expect an acknowledgement, and which of them got one."""

    awaiting: list[tuple[Record, tuple[int, int]]] = field(default_factory=list)
    answered_indexes: set[int] = field(default_factory=set)  # indexes into `awaiting`
    # counter -> index of its latest unanswered transmission
    latest_sent: dict[int, int] = field(default_factory=dict)

    def sent(self, record: Record, counter: int, setting: tuple[int, int]) -> None:
        self.latest_sent[counter] = len(self.awaiting)
        self.awaiting.append((record, setting))

    def answered(self, counter: int) -> None:
        index = self.latest_sent.pop(counter, None)
        if index is not None:
            self.answered_indexes.add(index)

    def settle(
        self, summaries: dict[tuple[int, int], SettingSummary], end: float, ack_grace: float
    ) -> None:
        """Count each setting's expected, received and still pending (within the grace) acks."""
        for index, (sent, setting) in enumerate(self.awaiting):
            target = summaries[setting]
            target.acks_expected += 1
            if index in self.answered_indexes:
                target.acks_received += 1
            elif end - sent.time < ack_grace:
                target.acks_pending += 1


def _count_time_on_settings(
    timeline: Sequence[SettingChange],
    end: float,
    summary: Callable[[tuple[int, int]], SettingSummary],
) -> None:
    """Each setting's time: from its change to the next change (or the log's end)."""
    for index, change in enumerate(timeline):
        until = timeline[index + 1].time if index + 1 < len(timeline) else end
        summary((change.sf, change.bw)).time_on_setting += max(0.0, until - change.time)


def analyse(
    parsed: ParsedLog,
    *,
    max_gap: int = DEFAULT_MAX_GAP,
    ack_grace: float = DEFAULT_ACK_GRACE_S,
) -> Report:
    """Compute the report from parsed records (see the module docstring for the definitions)."""
    records = parsed.records
    summaries: dict[tuple[int, int], SettingSummary] = {}

    def summary(setting: tuple[int, int]) -> SettingSummary:
        if setting not in summaries:
            summaries[setting] = SettingSummary(sf=setting[0], bw=setting[1])
        return summaries[setting]

    rejected_by_reason: Counter[str] = Counter()
    hours: dict[float, list[float]] = defaultdict(lambda: [0.0, 0.0])
    last_counter: dict[str | None, int] = {}
    acks = _AckBook()
    frames_rx = frames_tx = events = 0

    for record in records:
        if record.kind == "event":
            events += 1
            continue
        setting = record.setting
        target = summary(setting) if setting is not None else None
        airtime = record.airtime or 0.0
        hour = math.floor(record.time / HOUR_S) * HOUR_S
        if record.direction == "rx":
            frames_rx += 1
            hours[hour][1] += airtime
            if not record.ok:
                reason = record.reason or "unspecified"
                rejected_by_reason[reason] += 1
            if target is None:
                continue
            target.frames_rx += 1
            target.airtime_rx += airtime
            _count_received(target, record, acks=acks, last_counter=last_counter, max_gap=max_gap)
        else:
            frames_tx += 1
            hours[hour][0] += airtime
            if target is None:
                continue
            target.frames_tx += 1
            target.airtime_tx += airtime
            if record.ack_expected and record.counter is not None:
                acks.sent(record, record.counter, (target.sf, target.bw))

    end = records[-1].time if records else 0.0
    acks.settle(summaries, end, ack_grace)

    timeline = _timeline(records)
    _count_time_on_settings(timeline, end, summary)

    return Report(
        first=records[0].time if records else None,
        last=end if records else None,
        records=len(records),
        frames_rx=frames_rx,
        frames_tx=frames_tx,
        events=events,
        settings=[summaries[key] for key in sorted(summaries)],
        timeline=timeline,
        hours=[HourAirtime(hour, tx, rx) for hour, (tx, rx) in sorted(hours.items())],
        rejected_by_reason=rejected_by_reason,
        bad_lines=parsed.bad_lines,
        bad_examples=list(parsed.bad_examples),
        lines=parsed.lines,
    )


# ---------------------------------------------------------------------- output


def _iso(seconds: float) -> str:
    stamp = dt.datetime.fromtimestamp(seconds, tz=dt.UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    return {f"p{p}": _round(percentile(values, p)) for p in (5, 50, 95)}


def report_to_dict(report: Report) -> dict[str, Any]:
    """The report as plain JSON-ready data (what `--json` prints)."""
    return {
        "period": {
            "first": _iso(report.first) if report.first is not None else None,
            "last": _iso(report.last) if report.last is not None else None,
            "duration_s": round(report.duration, 3),
        },
        "lines": report.lines,
        "records": report.records,
        "frames": {"rx": report.frames_rx, "tx": report.frames_tx},
        "events": report.events,
        "bad_lines": report.bad_lines,
        "bad_examples": report.bad_examples,
        "settings": [
            {
                "setting": s.label,
                "sf": s.sf,
                "bw": s.bw,
                "frames_rx": s.frames_rx,
                "frames_tx": s.frames_tx,
                "rejected": s.rejected,
                "rejected_by_reason": dict(sorted(s.rejected_by_reason.items())),
                "rssi": _percentiles(s.rssi),
                "snr": _percentiles(s.snr),
                "uplink": {
                    "received": s.uplink_received,
                    "lost": s.uplink_lost,
                    "duplicates": s.duplicates,
                    "loss": _round(s.uplink_loss, 6),
                },
                "acks": {
                    "expected": s.acks_expected,
                    "received": s.acks_received,
                    "pending": s.acks_pending,
                    "loss": _round(s.ack_loss, 6),
                },
                "airtime_tx_s": round(s.airtime_tx, 3),
                "airtime_rx_s": round(s.airtime_rx, 3),
                "time_on_setting_s": round(s.time_on_setting, 3),
                "tx_airtime_per_hour_s": _round(s.tx_airtime_per_hour, 3),
            }
            for s in report.settings
        ],
        "timeline": [
            {
                "time": _iso(c.time),
                "setting": setting_label((c.sf, c.bw)),
                "freq": c.freq,
                "tx_power": c.tx_power,
                "reason": c.reason,
                "source": c.source,
            }
            for c in report.timeline
        ],
        "airtime_by_hour": [
            {"hour": _iso(h.hour), "tx_s": round(h.tx, 3), "rx_s": round(h.rx, 3)}
            for h in report.hours
        ],
        "rejected_by_reason": dict(sorted(report.rejected_by_reason.items())),
    }


def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _loss(lost: int, total: int, loss: float | None) -> str:
    return "-" if loss is None else f"{loss:.1%} ({lost}/{total})"


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in rows
    ]


def format_report(report: Report) -> str:
    """The human-readable report (what `p1-lora linkreport` prints)."""
    out: list[str] = []
    if report.first is None or report.last is None:
        out.append(f"No records ({report.lines} lines read).")
    else:
        out.append(
            f"Link log {_iso(report.first)} .. {_iso(report.last)} "
            f"({report.duration / HOUR_S:.2f} h): {report.frames_rx} frames heard, "
            f"{report.frames_tx} sent, {report.events} events"
        )
    if report.bad_lines:
        out.append(f"Skipped {report.bad_lines} bad lines, e.g.:")
        out.extend(f"  {example}" for example in report.bad_examples)
    if report.settings:
        out += ["", "Per setting"]
        rows = [
            [
                "setting",
                "heard",
                "sent",
                "rejected",
                "uplink loss",
                "ack loss",
                "RSSI p5/p50/p95 dBm",
                "SNR p5/p50/p95 dB",
                "hours",
                "tx s/h",
            ]
        ]
        for s in report.settings:
            rssi = "/".join(_fmt(percentile(s.rssi, p)) for p in (5, 50, 95))
            snr = "/".join(_fmt(percentile(s.snr, p)) for p in (5, 50, 95))
            rows.append(
                [
                    s.label,
                    str(s.frames_rx),
                    str(s.frames_tx),
                    str(s.rejected),
                    _loss(s.uplink_lost, s.uplink_lost + s.uplink_received, s.uplink_loss),
                    _loss(
                        s.acks_expected - s.acks_pending - s.acks_received,
                        s.acks_expected - s.acks_pending,
                        s.ack_loss,
                    ),
                    rssi if s.rssi else "-",
                    snr if s.snr else "-",
                    f"{s.time_on_setting / HOUR_S:.2f}",
                    _fmt(s.tx_airtime_per_hour),
                ]
            )
        out += _table(rows)
    if report.timeline:
        out += ["", "Settings timeline"]
        for change in report.timeline:
            freq = f" {change.freq / 1e6:.3f} MHz" if change.freq else ""
            power = f" {change.tx_power:g} dBm" if change.tx_power is not None else ""
            why = f"  ({change.reason})" if change.reason else ""
            out.append(
                f"  {_iso(change.time)}  {setting_label((change.sf, change.bw))}{freq}{power}{why}"
            )
    if report.rejected_by_reason:
        out += ["", "Rejected frames by reason"]
        out += [
            f"  {reason}: {count}"
            for reason, count in sorted(
                report.rejected_by_reason.items(), key=lambda kv: (-kv[1], kv[0])
            )
        ]
    if report.hours:
        out += ["", "Airtime per hour (sent, % of the hour; heard)"]
        out += _table(
            [["  hour", "sent s", "% of hour", "heard s"]]
            + [
                [f"  {_iso(h.hour)}", f"{h.tx:.1f}", f"{h.tx / HOUR_S:.2%}", f"{h.rx:.1f}"]
                for h in report.hours
            ]
        )
    return "\n".join(out) + "\n"
