"""The seed firmware's model (`p1-lora sim --baseline esp32`) on the same emulated radios."""

from __future__ import annotations

from decimal import Decimal

import pytest

from p1lora.tools.esp32_baseline import (
    LADDER,
    Esp32Simulation,
    float32_keeps,
    reading_values,
)
from p1lora.tools.sim import SimOptions, Simulation, max_window_airtime
from tests.conftest import telegram_bytes

EU_1 = 868_100_000


def test_reading_values_are_the_first_22_numbers_of_the_telegram() -> None:
    values = reading_values(telegram_bytes("V5.txt"))
    assert len(values) == 22
    assert all(isinstance(v, Decimal) for v in values)
    assert len(set(values)) > 5  # real meter numbers, not padding


def test_float32_loses_the_digits_of_large_registers() -> None:
    assert float32_keeps(Decimal("1234.567"))
    assert float32_keeps(Decimal("230.1"))
    assert not float32_keeps(Decimal("1234567.891"))  # a large energy register
    assert not float32_keeps(Decimal("98765.4321"))


def test_on_a_good_link_it_walks_the_whole_ladder_and_sends_every_7_seconds() -> None:
    sim = Esp32Simulation(SimOptions(path_loss_db=100.0, duration_s=600.0))
    metrics = sim.run()
    rungs = [(s.sf, s.bw_hz) for _, s, _ in sim.tx_log.settings]
    assert rungs == list(LADDER)  # one rung at a time, SF12/125 up to SF7/250
    assert metrics["final_state"] == "operation"
    assert (metrics["final_sf"], metrics["final_bw"]) == (7, 250.0)
    converged = metrics.number("convergence_s")
    assert 30.0 < converged < 90.0  # slow: a walk, not a jump
    expected = (600.0 - converged) / 7.0
    assert abs(metrics.number("readings_delivered") - expected) <= 2
    assert metrics["telegrams_delivered"] == 0  # readings, never byte-exact telegrams
    sizes = {s.nbytes for s in sim.tx_log.sent} | {s.nbytes for s in sim.rx_log.sent}
    assert sizes == {52, 100}
    assert metrics.number("handshake_airtime_s") > 30.0


def test_in_a_1_percent_band_the_faithful_model_exceeds_the_limit_and_the_legal_one_does_not() -> (
    None
):
    options = SimOptions(path_loss_db=100.0, frequency_hz=EU_1, duration_s=3600.0)
    faithful = Esp32Simulation(options).run()
    legal_sim = Esp32Simulation(options, legal=True)
    legal = legal_sim.run()
    assert faithful["budget_exceeded"] is True
    assert faithful.number("duty_cycle_max_tx") > 0.01
    assert legal["budget_exceeded"] is False
    for side in (legal_sim.tx_log, legal_sim.rx_log):
        assert max_window_airtime(side.sent) <= 36.0 + 1e-9
    # 250 kHz does not fit the 868.0-868.6 sub-band: the legal ladder stops at SF7/125.
    assert (legal["final_sf"], legal["final_bw"]) == (7, 125.0)
    assert (faithful["final_sf"], faithful["final_bw"]) == (7, 250.0)


def test_slow_settings_cause_spurious_rehandshakes() -> None:
    """At SF10 in a 1 % band its limiter spaces readings 103 s apart, longer than the receiver's
    60 s silence timeout: the receiver leaves, acks go missing, a new handshake starts."""
    sim = Esp32Simulation(SimOptions(path_loss_db=144.0, frequency_hz=EU_1, duration_s=3600.0))
    metrics = sim.run()
    assert metrics.number("rx_silence_fallbacks") >= 2
    assert metrics.number("rehandshakes_after_loss") >= 2
    assert metrics.number("handshakes") >= 3


# 140 dB: SNR -10 dB at 125 kHz with the 7 dB noise figure (141 dB with the old 6 dB, issue 16).
@pytest.mark.parametrize("loss", [100.0, 140.0])
def test_in_the_same_1_percent_band_p1lora_gains_by_protocol_alone(loss: float) -> None:
    options = SimOptions(path_loss_db=loss, frequency_hz=EU_1, duration_s=3600.0)
    p1 = Simulation(options).run()
    seed = Esp32Simulation(options, legal=True).run()
    assert p1.number("frame_bytes_median") < seed.number("frame_bytes_median")
    assert p1.number("handshake_airtime_s") < seed.number("handshake_airtime_s")
    assert p1.number("convergence_s") < seed.number("convergence_s")
    assert p1.number("telegrams_delivered") > 2 * seed.number("readings_delivered")
    assert not p1["budget_exceeded"] and not seed["budget_exceeded"]
