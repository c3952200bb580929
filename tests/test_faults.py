"""Fault injection, end to end (issue 7 item 1): the real processes, a real broker, a pty P1
line, the simulated radio over loopback UDP with the test process as the channel's hub.

Every scenario starts one installation (`tests.helpers_faults.FaultRig`), breaks one thing the
way it breaks in the field, and asserts the same four things:

1. the system recovers without a human (new meter states are published afterwards);
2. no energy reading is lost or wrong: every meter state published equals the virtual meter's
   values at that state's meter timestamp, registers and timestamps never go back, and every
   telegram on the raw telegram server is byte-identical to the meter's (`FaultRig.verify`);
3. nothing from a bad telegram is published (the same check: a bad telegram's values would
   differ from the meter's truth for its timestamp);
4. the logs say what happened (the specific lines are asserted).

The meter runs at `METER_SPEED` times real time, so meter seconds pass quickly and registers
move; timeouts are generous (`TIMEOUT`, `SLOW_TIMEOUT`, `RECOVERY_TIMEOUT`) and every wait ends when its condition
holds. Run on their own with `pytest -m faults`.
"""

from __future__ import annotations

import json
import re
import signal
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from p1lora.common.parser import parse_telegram
from tests.helpers_faults import (
    SLOW_TIMEOUT,
    TIMEOUT,
    FaultRig,
    ReadOnlySwitch,
    fault_rig,
    since,
)
from tests.helpers_mqtt import wait_until
from tests.mqtt_broker import MosquittoBroker

pytestmark = [pytest.mark.faults, pytest.mark.e2e, pytest.mark.slow]

AVAILABILITY = "p1lora/bridge/availability"
#: Tuning back up after a deep fade (see the SF12 scenario's docstring for the figures).
RECOVERY_TIMEOUT = 300.0
#: `p1-lora meter` fault flags: about every third telegram damaged (seeded, reproducible).
LINE_FAULTS = ("--bit-errors", "0.2", "--truncate", "0.1", "--junk", "0.1", "--fault-seed", "3")


def _last_k(rig: FaultRig) -> int:
    states = rig.meter_states()
    assert states, "no meter state yet"
    return states[-1].k


def _availability(rig: FaultRig) -> list[bytes]:
    return rig.collector.payloads(AVAILABILITY)


def _reserved_until(state_dir: Path) -> int:
    data = json.loads((state_dir / "tx_counters.json").read_text())["data"]
    return int(data["reserved_until"])


# ------------------------------------------------------------------------------ 1. the P1 cable


def test_p1_cable_unplugged_and_replugged(tmp_path: Path, mqtt_broker: MosquittoBroker) -> None:
    """The meter process goes away with its pty and link (the cable is pulled); a new one
    appears at the same path later, the meter having counted on meanwhile."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        tx = rig.tx
        assert tx is not None
        mark = since(tx)
        written = rig.stop_meter()
        tx.wait_log(r"P1 port \S+: lost \(.+\); waiting for it to come back", after=mark)
        # The cable stays out long enough for the reader to find no port at all.
        # The radio link does not depend on P1: it stays up while the cable is out.
        rig.wait_bridge(lambda b: b.get("link_state") == "running", "a running link")
        unplugged_k = _last_k(rig)

        # Replugged: the meter kept counting, 30 meter-seconds passed (3 s at 10x).
        resume_k = written + 30
        rig.start_meter_at(resume_k)
        tx.wait_log(r"P1 port \S+: (connected|telegrams are arriving again)", after=mark)
        rig.wait_states_from(resume_k, 3)

        result = rig.verify()
        ks = result.ks
        assert max(k for k in ks if k < resume_k) <= written - 1
        assert unplugged_k < resume_k
        assert not [k for k in ks if written <= k < resume_k], "telegrams from nowhere"


# ------------------------------------------------------------------------------ 2. a bad line


def test_garbage_truncated_and_crc_bad_telegrams_are_never_published(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """About every third telegram is damaged on the line (bit errors, cut off, junk before
    it): none of them reaches Home Assistant or the raw telegram server, the good ones in
    between do, and the transmitter says in its log that it dropped them."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all(*LINE_FAULTS)
        tx, rx = rig.tx, rig.rx
        assert tx is not None and rx is not None
        line = tx.wait_log(
            r"P1 port \S+: (\d+) bad telegram\(s\) dropped \((\d+) failed the CRC check, "
            r"(\d+) cut off or malformed"
        )
        assert int(line.group(1)) >= 1
        rig.wait_states(15)

        meter = rig.meter
        assert meter is not None
        rig.stop_meter()
        injected = re.search(r"faults injected: (\{.*\})", meter.log())
        assert injected is not None, meter.log()
        counts = {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", injected.group(1))}
        assert counts.get("bit_errors", 0) >= 3 and counts.get("truncated", 0) >= 1, counts

        result = rig.verify()
        assert result.distinct >= 15 and result.raw_telegrams >= 15
        # Nothing bad even reached the receiver: the transmitter never sends a bad telegram.
        assert rig.bridge()["telegrams_refused"] == 0
        assert "Home Assistant: telegram not published" not in rx.log()


#: The electricity registers of a DSMR 2.2 meter (no total registers, no meter timestamp).
DSMR22_REGISTERS = (
    "electricity_used_tariff_1",
    "electricity_used_tariff_2",
    "electricity_delivered_tariff_1",
    "electricity_delivered_tariff_2",
)


def test_bit_errors_on_a_meter_without_crc_never_publish_a_wrong_register(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """The same bad line on a DSMR 2.2 meter, whose telegrams carry no CRC: the framer cannot
    tell a flipped bit, so the transmitter's plausibility check must. Every published set of
    energy registers (and every telegram on the raw server) is one the meter really sent,
    registers never go back, the gas reading is one the meter sent, and the transmitter logs
    what it rejected. (A pty cannot emulate the UART's parity check: this is the second layer.)
    """
    with fault_rig(tmp_path, mqtt_broker, profile="dsmr22") as rig:
        rig.start_all(*LINE_FAULTS)
        tx, rx = rig.tx, rig.rx
        assert tx is not None and rx is not None
        tx.wait_log(r"P1 telegram\(s\) without CRC rejected as implausible: \d+ \(last: .+\)")
        # One telegram a second (10 s meter interval at 10x), a third of them damaged.
        rig.wait_states(15, timeout=SLOW_TIMEOUT)

        meter = rig.meter
        assert meter is not None
        written = rig.stop_meter()
        injected = re.search(r"faults injected: (\{.*\})", meter.log())
        assert injected is not None, meter.log()
        counts = {k: int(v) for k, v in re.findall(r"'(\w+)': (\d+)", injected.group(1))}
        assert counts.get("bit_errors", 0) >= 3, counts

        truth: set[tuple[object, ...]] = set()
        gas_truth: set[object] = set()
        for k in range(written + 1):
            telegram = parse_telegram(rig.oracle.telegram(k))
            truth.add(tuple(telegram.value(key) for key in DSMR22_REGISTERS))
            gas_truth.add(telegram.value("gas_meter_reading", 1))
        states = [
            json.loads(m.payload, parse_float=Decimal)
            for m in rig.collector.on(rig.oracle.meter_topic)
        ]
        assert len(states) >= 15
        previous: tuple[Decimal, ...] | None = None
        for index, state in enumerate(states):
            registers = tuple(state[key] for key in DSMR22_REGISTERS)
            assert registers in truth, f"meter state #{index}: {registers} never sent"
            assert previous is None or all(
                a >= b for a, b in zip(registers, previous, strict=True)
            ), f"meter state #{index}: a register went back: {previous} -> {registers}"
            assert state["total_energy_import"] == registers[0] + registers[1]
            previous = registers
        gas_states = [
            json.loads(m.payload, parse_float=Decimal)
            for m in rig.collector.on(rig.oracle.gas_topic)
        ]
        gas_values = [s.get("gas_meter_reading") for s in gas_states]
        assert gas_values and all(v in gas_truth for v in gas_values), gas_values
        assert gas_values == sorted(gas_values)
        raw = rig.raw.snapshot()
        assert len(raw) >= 15
        for telegram in raw:
            parsed = parse_telegram(telegram)
            assert parsed.crc.valid is None
            assert tuple(parsed.value(key) for key in DSMR22_REGISTERS) in truth
        assert rig.bridge()["telegrams_refused"] == 0
        assert "Home Assistant: telegram not published" not in rx.log()


# ------------------------------------------------------------------------------ 3. the broker


def test_mosquitto_killed_and_restarted_on_the_same_port(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """SIGKILL the broker: the receiver keeps the link (raw telegrams keep flowing), says it
    lost MQTT, reconnects when the broker is back and publishes current states again."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx = rig.rx
        assert rx is not None
        mark = since(rx)
        killed_k = _last_k(rig)
        raw_before = rig.raw.count()
        mqtt_broker.kill()
        rx.wait_log(r"MQTT: lost connection to \S+ \(.+\); reconnecting with backoff", after=mark)
        # Deliveries go on without the broker: the raw telegram server sees them.
        assert wait_until(lambda: rig.raw.count() >= raw_before + 8, TIMEOUT), (
            f"{rig.raw.count() - raw_before} raw telegrams while the broker was down"
        )
        online_before = _availability(rig).count(b"online")
        mqtt_broker.start()
        rx.wait_log(r"MQTT: connected to \S+ \(\d+ retained topics republished", after=mark)
        assert wait_until(lambda: _availability(rig).count(b"online") > online_before, TIMEOUT)
        rig.wait_states_from(killed_k + 1, 3)
        rig.verify()


# ------------------------------------------------------------------------------ 4. the receiver


def test_receiver_killed_and_restarted_with_its_state(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """SIGKILL p1-lora-rx (no orderly shutdown): the broker marks the bridge offline (last
    will); a new receiver on the same state directory resumes the link without rejecting the
    transmitter's frames as replays, and deliveries continue."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        rx.wait_log(r"rx: probing -> running")
        assert (rig.rx_state / "rx_link.json").exists()
        killed_k = _last_k(rig)
        assert rig.kill(rx) == -signal.SIGKILL
        rig.collector.wait_for(AVAILABILITY, b"offline", timeout=TIMEOUT)
        online_before = _availability(rig).count(b"online")

        bridge_before = rig.bridge_count()
        rx2 = rig.start_rx(name="rx2")
        rx2.wait_log(r"first telegram delivered")
        rig.wait_states_from(killed_k + 1, 3)
        assert wait_until(lambda: _availability(rig).count(b"online") > online_before, TIMEOUT)
        log = rx2.log()
        assert re.search(r"rx: resume -> (handshake|running)", log), log
        assert "(replay)" not in log, log
        bridge = rig.wait_bridge(
            lambda b: "reasons" in (b.get("attributes", {}).get("frames_rejected") or {}),
            "the new receiver's rejected-frames counter",
            after=bridge_before,
        )
        assert "replay" not in bridge["attributes"]["frames_rejected"]["reasons"], bridge
        assert tx.running
        rig.verify()


# ------------------------------------------------------------------------------ 5. the transmitter


def test_transmitter_killed_and_restarted_continues_its_counters(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """SIGKILL p1-lora-tx: the new process continues the frame counters from the reserved
    block (above anything the dead one may have sent), so the receiver rejects nothing as a
    replay, and the link resumes at its last good setting."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        tx.wait_log(r"tx: probing -> running \(switch confirmed\)")
        reserved = _reserved_until(rig.tx_state)
        killed_k = _last_k(rig)
        mark = since(rx)
        assert rig.kill(tx) == -signal.SIGKILL

        tx2 = rig.start_tx(name="tx2")
        tx2.wait_log(r"tx: \w+ -> running")
        rig.wait_states_from(killed_k + 1, 3)
        assert _reserved_until(rig.tx_state) > reserved
        log = tx2.log()
        assert "-> rendezvous" not in log and "rendezvous ->" not in log, log
        assert "(replay)" not in rx.log()[mark:], rx.log()[mark:]
        rig.verify()


# ------------------------------------------------------------------------------ 6. the channel


@pytest.mark.timeout(600)
def test_channel_degrading_to_the_sf12_limit_and_recovering(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """The path loss ramps from 100 dB to 147 dB within 8 s (SF12/BW125 at 14 dBm keeps
    about 4 dB of margin there, SF11 1.5 dB) and later snaps back. The link finds its way down
    to SF12 by itself and keeps delivering there, then tunes back up to a fast setting.

    Timeouts (measured on a 2-core machine with the link code of this change; the link's
    tuning is still being worked on, so these may shrink): the fast setting is given up after
    about 30 s of silence and the SF12 rendezvous handshake follows (~50 s after the ramp); at
    147 dB updates are ~20 s apart (10 % duty cycle, ~2 s frames at SF12); tuning back up
    waits until the worst of the last 8 SNR samples clears the faster rung, i.e. until 8 good
    samples have arrived at SF12 pacing: 100-180 s after the channel recovered (the whole test
    took 130-280 s). `RECOVERY_TIMEOUT` leaves room above that.
    """
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        mark_tx, mark_rx = since(tx), since(rx)
        rig.channel.ramp_path_loss(100.0, 147.0, 8.0)
        before = rig.bridge_count()
        rig.wait_bridge(
            lambda b: b.get("spreading_factor") == 12 and b.get("link_state") == "running",
            "the link running at SF12",
            timeout=SLOW_TIMEOUT,
            after=before,
        )
        tx.wait_log(r"tx: radio SF\d+/BW\d+ \d+ dBm -> SF12/BW125 14 dBm", after=mark_tx)
        rig.wait_states(1, timeout=SLOW_TIMEOUT, what="at SF12, 4 dB above its floor")
        at_limit = rig.bridge()
        assert at_limit["spreading_factor"] == 12, at_limit
        assert at_limit["rssi"] is not None and at_limit["rssi"] < -125, at_limit

        rig.channel.set_path_loss(None)
        before = rig.bridge_count()
        rig.wait_bridge(
            lambda b: b.get("spreading_factor", 12) <= 8 and b.get("link_state") == "running",
            "the link back at a fast setting",
            timeout=RECOVERY_TIMEOUT,
            after=before,
        )
        rig.wait_states(5)
        # Back up from SF12 to a fast setting: in one jump, or via a middle rung when the
        # settling estimate is not yet sure of the margin (issue 15's tuner).
        after_sf12 = rx.log()[mark_rx:].split("-> SF12/BW125", 1)
        assert len(after_sf12) == 2 and re.search(
            r"rx: radio SF\d+/BW\d+ \d+ dBm -> SF[78]/BW", after_sf12[1]
        )
        result = rig.verify()
        assert result.distinct >= 10


# ------------------------------------------------------------------------------ 7. a hung radio


def test_hung_radio_in_the_transmitter_is_reset_and_deliveries_resume(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """The transmitter's SX127x stops raising TxDone mid-run (hub-sent test fault): the
    driver notices the overdue transmission, resets the chip through its RESET pin, re-applies
    the settings, says so, and deliveries carry on."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        tx = rig.tx
        assert tx is not None
        tx.wait_log(r"tx: probing -> running")
        mark = since(tx)
        count = rig.state_count()
        rig.channel.hang_tx(tx.process.pid)
        tx.wait_log(
            r"TEST FAULT from the hub applied to emulated chip\(s\) .*hung_tx=True", after=mark
        )
        tx.wait_log(
            r"transmission of \d+ bytes did not complete within [\d.]+ s .*; resetting the "
            r"chip through its RESET pin",
            after=mark,
        )
        tx.wait_log(r"chip reset, settings re-applied, receiving again", after=mark)
        rig.wait_states(5, after=count)
        assert tx.running
        rig.verify()


# ------------------------------------------------------------------------------ 8. the state dir


def test_state_directory_read_only_the_daemons_keep_delivering(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """The transmitter's state directory cannot be created (a path under /proc, where nobody,
    root included, may create anything); the receiver's is a regular file. Both say that their
    state will not survive a restart, and deliver anyway."""
    blocked = tmp_path / "rx-state-is-a-file"
    blocked.write_text("not a directory\n")
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all(tx_state="/proc/p1lora-fault-test/state", rx_state=blocked)
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        tx.wait_log(r"state directory /proc/p1lora-fault-test/state cannot be created")
        rx.wait_log(rf"state directory {re.escape(str(blocked))} cannot be created")
        tx.wait_log(r"cannot write \S+tx_\w+\.json \(.+\): .*kept in memory only")
        rx.wait_log(r"cannot write \S+rx_\w+\.json \(.+\): .*kept in memory only")
        rig.wait_states(10)
        assert blocked.read_text() == "not a directory\n"
        assert tx.running and rx.running
        rig.verify()


def test_state_directory_full_the_daemons_keep_delivering(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """Both daemons run with RLIMIT_FSIZE=0: every write to a file fails with EFBIG, as on a
    full disk (Python ignores SIGXFSZ). They say they cannot keep their state and deliver."""
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all(max_file_size=0)
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        for proc, role in ((tx, "tx"), (rx, "rx")):
            proc.wait_log(
                rf"cannot write \S+/{role}_\w+\.json \(File too large\): .*kept in memory only"
            )
        rig.wait_states(10)
        assert not (rig.tx_state / "tx_counters.json").exists()
        assert not (rig.rx_state / "rx_link.json").exists()
        assert tx.running and rx.running
        rig.verify()


def _command(rig: FaultRig, payload: dict[str, object]) -> dict[str, object]:
    """Send a command over MQTT (as Home Assistant does) and wait for its final reply."""
    request = uuid.uuid4().hex
    rig.collector.publish("p1lora/command", json.dumps({**payload, "id": request}))

    def final() -> dict[str, object] | None:
        for message in rig.collector.on("p1lora/command/reply"):
            reply: dict[str, object] = json.loads(message.payload)
            if reply.get("id") == request and reply.get("status") != "queued":
                return reply
        return None

    assert wait_until(lambda: final() is not None, TIMEOUT), f"no answer to {payload}"
    reply = final()
    assert reply is not None and reply["status"] == "ok", reply
    return reply


def _link_state(state_dir: Path, role: str) -> dict[str, object]:
    data: dict[str, object] = json.loads((state_dir / f"{role}_link.json").read_text())["data"]
    return data


def test_state_directory_turns_read_only_mid_run_and_writable_again(
    tmp_path: Path, mqtt_broker: MosquittoBroker
) -> None:
    """Both daemons hold state when their state directories become read-only (EROFS, as when
    the kernel remounts an SD card read-only after I/O errors; done with a bind mount of each
    directory onto itself, since chmod cannot stop root). A radio command then changes what
    both must save: they say they cannot, keep the old files intact, and keep delivering. Once
    the directories are writable again, the next change is written at once and they say so."""
    problem = ReadOnlySwitch.problem(tmp_path / "probe")
    if problem is not None:
        pytest.skip(problem)
    with fault_rig(tmp_path, mqtt_broker) as rig:
        rig.start_all()
        rx, tx = rig.rx, rig.tx
        assert rx is not None and tx is not None
        files = [rig.tx_state / "tx_link.json", rig.rx_state / "rx_link.json"]
        assert wait_until(lambda: all(f.exists() for f in files), TIMEOUT), rig.logs_tail()
        with ReadOnlySwitch(rig.tx_state) as tx_card, ReadOnlySwitch(rig.rx_state) as rx_card:
            tx_card.read_only()
            rx_card.read_only()
            before = {f: f.read_bytes() for f in files}
            marks = since(tx), since(rx)
            _command(rig, {"cmd": "radio", "mode": "fixed", "sf": 8, "bw": 250, "power": 14})
            for proc, role, mark in ((tx, "tx", marks[0]), (rx, "rx", marks[1])):
                proc.wait_log(
                    rf"cannot write \S+/{role}_link\.json \(Read-only file system\): "
                    r".*kept in memory only",
                    after=mark,
                )
            count = rig.state_count()
            rig.wait_states(5, after=count, what="with read-only state directories")
            assert tx.running and rx.running

            tx_card.writable()
            rx_card.writable()
            # Writable again: the failed atomic writes left the old files whole and no
            # temporary file behind (the read-only mount itself kept anyone from changing them).
            assert {f: f.read_bytes() for f in files} == before, "a state file changed"
            assert all(json.loads(f.read_bytes()) for f in files)
            marks = since(tx), since(rx)
            _command(rig, {"cmd": "radio", "mode": "fixed", "sf": 8, "bw": 125, "power": 14})
            for proc, role, mark in ((tx, "tx", marks[0]), (rx, "rx", marks[1])):
                proc.wait_log(
                    rf"state file \S+/{role}_link\.json written again after earlier failures",
                    after=mark,
                )
            tx_link = _link_state(rig.tx_state, "tx")
            assert tx_link["mode"] == "fixed", tx_link
            assert tx_link["fixed"] == {"sf": 8, "bw_hz": 125_000, "tx_power_dbm": 14}, tx_link
            rx_last = _link_state(rig.rx_state, "rx")["last_good"]
            assert isinstance(rx_last, dict) and rx_last.get("sf") == 8, rx_last
            count = rig.state_count()
            rig.wait_states(3, after=count, what="after the state directories recovered")
        assert tx.running and rx.running
        assert not list(rig.tx_state.glob(".*.tmp")) and not list(rig.rx_state.glob(".*.tmp"))
        rig.verify()
