"""Issue 12 info item: the systemd units' sandbox, and proof that the daemons run inside it.

`systemd-analyze security --offline=yes` scores (lower is better), measured with systemd 252:

    unit                          before   after
    p1-lora-tx.service            1.9      0.6
    p1-lora-tx + sim-radio.conf   -        1.3
    p1-lora-rx.service            1.9      1.5
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from p1lora.service.keyfile import write_key_file
from tests.helpers_daemons import clean_env, free_tcp_port, free_udp_port, processes
from tests.helpers_sim import PSK

SYSTEMD = Path(__file__).resolve().parent.parent / "deploy" / "systemd"
DROP_IN = SYSTEMD / "p1-lora-tx.service.d" / "sim-radio.conf"
PR_SET_MDWE, PR_GET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN = 65, 66, 1


def _settings(path: Path) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


def test_the_transmitter_has_no_network():
    unit = _settings(SYSTEMD / "p1-lora-tx.service")
    assert unit["PrivateNetwork"] == ["yes"]
    assert unit["IPAddressDeny"] == ["any"]
    assert unit["RestrictAddressFamilies"] == ["AF_UNIX"]


def test_the_sim_radio_drop_in_opens_loopback_only():
    drop_in = _settings(DROP_IN)
    assert drop_in["PrivateNetwork"] == ["no"]
    assert drop_in["RestrictAddressFamilies"] == ["", "AF_UNIX AF_INET AF_INET6"]
    assert drop_in["IPAddressAllow"] == ["localhost"]
    assert "IPAddressDeny" not in drop_in


@pytest.mark.parametrize("role", ["tx", "rx"])
def test_both_units_drop_what_an_unprivileged_daemon_never_needs(role):
    unit = _settings(SYSTEMD / f"p1-lora-{role}.service")
    assert unit["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert unit["SystemCallErrorNumber"] == ["EPERM"]
    for key in ("MemoryDenyWriteExecute", "RemoveIPC", "PrivateMounts"):
        assert unit[key] == ["yes"], key
    assert "ProcSubset" not in unit  # rpi-lgpio reads /proc/device-tree


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_unit_with_its_drop_in_passes_systemd_analyze_verify(tmp_path):
    text = (SYSTEMD / "p1-lora-tx.service").read_text()
    (tmp_path / "p1-lora-tx.service").write_text(
        text.replace("/opt/p1-lora/bin/p1-lora-tx", "/bin/true")
    )
    (tmp_path / "p1-lora-tx.service.d").mkdir()
    shutil.copy(DROP_IN, tmp_path / "p1-lora-tx.service.d")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{tmp_path}:"}

    def analyze(*args: str) -> subprocess.CompletedProcess[str]:
        command = ["systemd-analyze", *args, "p1-lora-tx.service"]
        return subprocess.run(
            command, capture_output=True, text=True, timeout=60, check=False, env=env, cwd=tmp_path
        )

    verify = analyze("verify")
    assert verify.returncode == 0, verify.stderr
    security = analyze("security", "--offline=yes")
    if "--offline" in security.stderr:
        pytest.skip("this systemd-analyze has no offline security analysis")
    # The drop-in is applied: the host network is back, but only for loopback.
    assert re.search(r"✗ PrivateNetwork=", security.stdout), security.stdout
    assert "only localhost" in security.stdout


def _mdwe_supported() -> bool:
    """Linux >= 6.3 has prctl(PR_SET_MDWE): the kernel's own form of MemoryDenyWriteExecute."""
    try:
        return int(ctypes.CDLL(None, use_errno=True).prctl(PR_GET_MDWE, 0, 0, 0, 0)) >= 0
    except (OSError, AttributeError):
        return False


#: Loaded by every Python process started with it on PYTHONPATH, before any other import.
_MDWE_HOOK = f"""
import ctypes, sys
_libc = ctypes.CDLL(None, use_errno=True)
if _libc.prctl({PR_SET_MDWE}, {PR_MDWE_REFUSE_EXEC_GAIN}, 0, 0, 0) != 0:
    raise SystemExit("cannot enable MDWE")
print("MDWE on:", _libc.prctl({PR_GET_MDWE}, 0, 0, 0, 0), file=sys.stderr, flush=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(not _mdwe_supported(), reason="the kernel has no PR_SET_MDWE (Linux < 6.3)")
def test_both_daemons_run_with_memory_deny_write_execute(tmp_path):
    """MemoryDenyWriteExecute=yes kills a process that maps memory writable and executable.
    The kernel's PR_SET_MDWE refuses the same mappings: both daemons, with crypto, MQTT and the
    simulated radio, must still deliver a telegram under it."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_MDWE_HOOK)
    env = clean_env(tmp_path, PYTHONPATH=str(hook))
    key = tmp_path / "key"
    write_key_file(key, PSK)
    sim = ["--radio", "sim", "--sim-port", str(free_udp_port()), "--key-file", str(key)]
    with processes(tmp_path) as group:
        rx = group.start(
            "rx",
            "p1-lora-rx",
            *sim,
            "--state-dir",
            str(tmp_path / "rx"),
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            str(free_tcp_port()),  # nobody listens: the bridge retries, the link still runs
            env=env,
        )
        rx.wait_log(r"p1-lora-rx running")
        tx = group.start(
            "tx",
            "p1-lora-tx",
            *sim,
            "--meter",
            "virtual",
            "--state-dir",
            str(tmp_path / "tx"),
            env=env,
        )
        rx.wait_log(r"first telegram delivered")
        assert tx.stop() == 0
        assert rx.stop() == 0
    for log in (rx.log(), tx.log()):
        assert "MDWE on: 1" in log
        assert "Traceback" not in log
