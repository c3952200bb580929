"""The survey's printed output: a table row per setting, the link's choice, watch lines.

Numbers are what was measured: RSSI and SNR are means over the answered probes, the margin is
the worst direction's SNR the link would plan with (`effective_snr_db`) minus the SF's
demodulation floor, and updates per hour are what each sub-band's duty cycle allows at that
setting (capped at the meter's one telegram a second).
"""

from __future__ import annotations

from collections.abc import Callable

from p1lora.common.link.config import LinkConfig
from p1lora.common.survey_results import Choice, Measurement, SettingResult, WatchSample

__all__ = ["SurveyPrinter", "choice_line", "header", "row", "rx_line", "watch_line"]

_COLUMNS = (
    f"{'setting':<11} {'sent':>4} {'answered':>8} {'heard':>5} {'up RSSI':>8} {'up SNR':>7} "
    f"{'down RSSI':>9} {'down SNR':>8} {'margin':>7}  updates/h per sub-band"
)


def _num(value: float | None, width: int) -> str:
    return f"{value:>{width}.1f}" if value is not None else f"{'-':>{width}}"


def header() -> str:
    return (
        _COLUMNS
        + "\n"
        + f"{'':<11} {'':>4} {'':>8} {'':>5} {'dBm':>8} {'dB':>7} {'dBm':>9} {'dB':>8} {'dB':>7}"
    )


def row(result: SettingResult, config: LinkConfig) -> str:
    updates = "  ".join(
        f"{band} {rate:.0f}" for band, rate in result.updates_per_hour(config).items()
    )
    return (
        f"{result.candidate.label():<11} {result.sent:>4} {result.answered:>8} {result.heard:>5} "
        f"{_num(result.up.mean_rssi(), 8)} {_num(result.up.mean_snr(), 7)} "
        f"{_num(result.down.mean_rssi(), 9)} {_num(result.down.mean_snr(), 8)} "
        f"{_num(result.margin_db(), 7)}  {updates}"
    )


def choice_line(choice: Choice) -> str:
    label = choice.candidate.label()
    if choice.margin_db is None:
        return f"the link would choose {label}: nothing was heard, so it stays at the rendezvous"
    verdict = "enough" if choice.margin_db >= choice.required_db else "LESS than it requires"
    return (
        f"the link would choose {label} with a margin of {choice.margin_db:.1f} dB over its "
        f"demodulation floor ({verdict}: the link requires {choice.required_db:.0f} dB)"
    )


def watch_line(sample: WatchSample, start: float) -> str:
    t = sample.at - start
    if not sample.answered:
        return f"{t:7.1f} s  {sample.settings.label()}  no answer"
    margin = sample.margin_db()
    return (
        f"{t:7.1f} s  {sample.settings.label()}  up {sample.up_rssi_dbm:.1f} dBm "
        f"{sample.up_snr_db:+.1f} dB  down {sample.down_rssi_dbm:.1f} dBm "
        f"{sample.down_snr_db:+.1f} dB  margin {margin:+.1f} dB"
    )


def rx_line(label: str, measurement: Measurement) -> str:
    return (
        f"{label:<11} heard {measurement.count} probe(s)  RSSI {_num(measurement.mean_rssi(), 6)} "
        f"dBm  SNR {_num(measurement.mean_snr(), 5)} dB"
    )


class SurveyPrinter:
    """Prints a survey as it goes (rows as rungs finish, then the choice, then watch lines)."""

    def __init__(self, write: Callable[[str], None], config: LinkConfig, start: float) -> None:
        self.write = write
        self.config = config
        self.start = start
        self._header_done = False
        self._choice_done = False

    def tx(
        self, results: list[SettingResult], choice: Choice | None, samples: list[WatchSample]
    ) -> None:
        for result in results:
            if not self._header_done:
                self.write(header())
                self._header_done = True
            self.write(row(result, self.config))
        if choice is not None and not self._choice_done:
            self.write(choice_line(choice))
            self._choice_done = True
        for sample in samples:
            self.write(watch_line(sample, self.start))
