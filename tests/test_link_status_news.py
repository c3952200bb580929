"""A change Home Assistant shows (TX power, radio mode, interval, serial state) reaches the
receiver in a status report within 10 s, not at the next 300 s status interval (issue 13).

All on the virtual clock with the sans-I/O harness; the end-to-end check through the Home
Assistant bridge is in tests/test_ha_status_news.py.
"""

from __future__ import annotations

from p1lora.common.link import LinkConfig, StatusReport, TxStatus, parse_command
from p1lora.common.link.messages import SerialState
from p1lora.common.link.reports import CHANGE_RIDE_WAIT_S
from tests.helpers_link import Channel, Harness

#: The promise of issue 13: a change is in Home Assistant within this many seconds.
WITHIN_S = 10.0


def _first_report_after(
    h: Harness, at: float, shows: dict[str, object] | None = None
) -> StatusReport:
    """The first report received after `at` (that shows `shows`, when given)."""
    for report in h.rx.statuses:
        if report.received_at <= at:
            continue
        if shows is None or all(getattr(report.status, k) == v for k, v in shows.items()):
            return report
    raise AssertionError(f"no status report after {at:.1f} s showing {shows}")


def test_power_control_14_to_2_dbm_is_reported_within_10_s():
    # 100 dB path loss at EU868's 10 % band: the simulator's case (14 -> 2 dBm at 37 s).
    h = Harness(channel=Channel(path_loss_db=100.0))
    h.run_until(180.0)
    changes = [(t, f["tx_power"]) for t, kind, f in h.tx.events if kind == "power"]
    assert changes and changes[0][1] == 2, changes  # power control went down to 2 dBm
    for at, power in changes:
        report = _first_report_after(h, at)
        assert report.status.tx_power_dbm == power
        assert report.received_at - at <= WITHIN_S
    # It rode on an update (telegrams every second): no extra frames for it.
    assert len(h.rx.statuses) <= 1 + len(changes) + 1  # handshake, changes, one interval


def test_an_interval_or_mode_command_is_reported_within_10_s_without_updates_to_ride_on():
    # No telegrams (a meter that went quiet): each report goes alone after the short wait.
    h = Harness(channel=Channel(path_loss_db=108.0), telegram_interval=None)
    h.run_until(60.0)
    for text, shows in (
        ("set interval 30", {"interval_s": 30.0}),
        ("set radio fixed 9 125", {"fixed_mode": True}),
        ("set radio auto", {"fixed_mode": False}),
    ):
        h.rx_link.queue_command(parse_command(text), h.clock.now())
        h.run_for(40.0)
        ran = [t for t, kind, f in h.tx.events if kind == "command" and f["command"] == text]
        assert ran, text
        report = _first_report_after(h, ran[-1], shows)
        assert report.received_at - ran[-1] <= WITHIN_S, text


def test_a_disconnected_meter_is_reported_within_10_s():
    # A meter that is unplugged sends no telegrams: the report goes alone.
    h = Harness(channel=Channel(path_loss_db=108.0), telegram_interval=None)
    h.tx_link.update_status(TxStatus(SerialState.OK, 10, 0, 0, 10.0))
    h.run_until(100.0)
    h.tx_link.update_status(TxStatus(SerialState.DISCONNECTED, 10, 0, 0, 100.0))
    h.run_until(100.0 + WITHIN_S)
    report = _first_report_after(h, 100.0)
    assert report.status.serial_state is SerialState.DISCONNECTED
    assert report.received_at - 100.0 >= CHANGE_RIDE_WAIT_S  # it waited for a ride first


def test_counters_alone_do_not_make_a_report_due():
    # Uptime, telegram counts and airtime move all the time: only the status interval
    # reports them (else every update would carry a status).
    config = LinkConfig(status_interval_s=300.0)
    h = Harness(channel=Channel(path_loss_db=108.0), tx_config=config, rx_config=config)
    h.tx_link.update_status(TxStatus(SerialState.OK, 0, 0, 0, 0.0))
    h.run_until(60.0)
    reports = len(h.rx.statuses)
    for second in range(60, 250, 5):
        h.tx_link.update_status(TxStatus(SerialState.OK, second, 0, 0, float(second)))
        h.run_until(second + 5.0)
    changes = [t for t, kind, _ in h.tx.events if kind in ("power", "switch_committed")]
    assert len(h.rx.statuses) <= reports + sum(1 for t in changes if t > 60.0)
