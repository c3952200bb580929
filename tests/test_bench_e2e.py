"""`p1-lora bench e2e`: the real processes measured end to end (short runs here).

The figures are measurements, so the tests check what must hold on any machine: a state
arrives after its telegram was written (a positive latency, matched by meter timestamp), both
daemons used CPU and memory, counts are consistent, and the /proc readers and the pty
timestamping are right on their own.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest

from p1lora.tools import bench_e2e
from p1lora.tools.bench_command import BENCHMARKS
from p1lora.tools.cli import main
from p1lora.transmitter.virtual_meter import VirtualMeter

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")


def test_a_short_run_with_the_embedded_broker_prints_both_tables(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["bench", "e2e", "--duration", "2", "--broker", "embedded"]) == 0
    out = capsys.readouterr().out
    rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in out.splitlines()
        if line.startswith("| ") and not line.startswith("| broker") and "daemon |" not in line
    ]
    latency, tx, rx = rows
    assert latency[0] == "embedded (amqtt)"
    written, received, samples = int(latency[1]), int(latency[2]), int(latency[4])
    assert 1 <= received <= written and samples <= received
    assert (tx[0], rx[0]) == ("p1-lora-tx", "p1-lora-rx")
    assert (int(tx[1]), int(rx[1])) == (written, received)
    for row in (tx, rx):
        assert float(row[3]) > 0  # CPU per telegram (ms)
        assert float(row[6]) >= float(row[5]) > 5  # peak RSS >= RSS > 5 MiB


def test_measure_matches_states_to_telegrams_with_positive_latencies(tmp_path: Path) -> None:
    result = bench_e2e.measure(bench_e2e.E2eOptions(duration_s=3.0, workdir=tmp_path))
    assert result.latencies_s, "no telegram written after the first delivery was delivered"
    # A state matched to the wrong telegram (an older one) would show up as a negative or a
    # multi-second latency; the link delivers in well under a second at 100 dB.
    assert all(0.0 < latency < 5.0 for latency in result.latencies_s)
    assert result.delivered <= result.written
    assert result.broker in ("mosquitto", "embedded (amqtt)")
    assert result.tx is not None and result.rx is not None
    assert result.tx.cpu_s > result.tx.startup_cpu_s > 0
    assert result.rx.cpu_s > result.rx.startup_cpu_s > 0
    # The run's directory keeps the daemons' logs (--keep).
    assert "p1-lora-tx running" in (tmp_path / "p1-lora-tx.log").read_text()


def test_process_cpu_seconds_reads_this_process() -> None:
    before = bench_e2e.process_cpu_seconds(os.getpid())
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass
    after = bench_e2e.process_cpu_seconds(os.getpid())
    assert 0.1 <= after - before <= 5.0
    assert abs(after - time.process_time()) < 0.5


def test_process_memory_kib_reads_rss_and_peak() -> None:
    rss, peak = bench_e2e.process_memory_kib(os.getpid())
    assert 1024 < rss <= peak


class _Port:
    """A pty stand-in that accepts at most `limit` bytes per write."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = b""

    def write(self, data: bytes) -> int:
        self.data += data[: self.limit]
        return min(len(data), self.limit)

    def telegram_boundary(self, now: float) -> None:
        return None


def test_the_pty_sink_stamps_a_telegram_when_its_last_byte_is_written() -> None:
    meter = VirtualMeter("dsmr5", seed=3)
    (_, first), (_, second) = meter.next_telegram(), meter.next_telegram()
    port = _Port(limit=100)
    sink = bench_e2e._TimedPty(port)  # type: ignore[arg-type]
    sink.expect(first)
    sink.expect(second)
    epoch = [bench_e2e._epoch_of_telegram(raw) for raw in (first, second)]
    assert epoch[1] - epoch[0] == 1
    sent = 0
    while sent < len(first) - 1:
        sent += sink.write(first[sent : len(first) - 1])
    assert sink.snapshot() == {}  # one byte of the first telegram is still missing
    sink.write(first[-1:])
    assert set(sink.snapshot()) == {epoch[0]}
    payload = second
    while payload:
        payload = payload[sink.write(payload) :]
    assert set(sink.snapshot()) == set(epoch)
    assert port.data == first + second


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--duration", "0.5"], "--duration must be between 2 and 86400"),
        (["--path-loss", "-3"], "--path-loss must be between 0 and 200"),
    ],
)
def test_bad_options_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["bench", "e2e", *args]) == 2
    assert message in capsys.readouterr().err


def test_it_is_registered_and_documents_itself(capsys: pytest.CaptureFixture[str]) -> None:
    assert BENCHMARKS["e2e"].module == "p1lora.tools.bench_e2e"
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "e2e", "--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    assert re.search(r"--duration S", help_text) and "--broker" in help_text
