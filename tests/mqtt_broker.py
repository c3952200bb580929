"""Pytest plugin: a real Mosquitto broker on a free loopback port.

Register with `pytest_plugins = ["tests.mqtt_broker"]` in tests/conftest.py (or run pytest with
`-p tests.mqtt_broker`). Fixtures:

- `mqtt_broker`: function-scoped, restartable (`stop()`, `kill()`, `start()`, `restart()` keep
  the same port), anonymous access, no persistence. Use it when a test restarts the broker.
- `mqtt_broker_session`: one shared broker per test session (per xdist worker). Do not stop it;
  use a unique base topic (`mqtt_base_topic`) because retained messages outlive a test.
- `mqtt_broker_auth`: session-scoped, anonymous access off, one user (`.username`,
  `.password`) from a `mosquitto_passwd` file; skipped when `mosquitto_passwd` is missing.
- `mqtt_broker_tls`: session-scoped, two TLS listeners with a throwaway CA generated with
  `cryptography`: `.port` verifies only the broker, `.mtls_port` also requires a client
  certificate. `.tls` holds the file paths (CA, client cert/key, a foreign CA).
- `mqtt_base_topic`: a unique topic prefix per test.

The binary is found via $P1LORA_MOSQUITTO, PATH, then /usr/sbin/mosquitto; without it every
broker test is skipped with the reason. Readiness is "the listener accepts TCP connections",
polled with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from p1lora.receiver.mqtt_config import MqttConfig

__all__ = [
    "MosquittoBroker",
    "TlsMaterial",
    "find_mosquitto",
    "free_port",
    "make_tls_material",
]

HOST = "127.0.0.1"
START_TIMEOUT = 10.0


def find_mosquitto() -> str | None:
    """Path of the mosquitto binary, or None."""
    candidates = [
        os.environ.get("P1LORA_MOSQUITTO"),
        shutil.which("mosquitto"),
        "/usr/sbin/mosquitto",
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def free_port() -> int:
    """A TCP port that was free on the loopback interface a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class TlsMaterial:
    """PEM files for a throwaway PKI: a CA, the broker's cert, a client cert, a foreign CA."""

    ca_file: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    #: A CA that did not sign the broker's certificate (for "wrong CA" tests).
    other_ca_file: Path


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _make_ca(common_name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _make_leaf(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    common_name: str,
    *,
    server: bool,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        # Only the name "localhost": connecting to "127.0.0.1" fails the host name check,
        # which is what the `tls_insecure` option's test needs.
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    return key, builder.sign(ca_key, hashes.SHA256())


def make_tls_material(directory: Path) -> TlsMaterial:
    """Generate a CA, a broker certificate for "localhost" and a client certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = _make_ca("p1-lora test CA")
    server_key, server_cert = _make_leaf(ca_key, ca_cert, "localhost", server=True)
    client_key, client_cert = _make_leaf(ca_key, ca_cert, "p1lora-test-client", server=False)
    _, other_ca = _make_ca("some other CA")
    pem = serialization.Encoding.PEM
    material = TlsMaterial(
        ca_file=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "client.pem",
        client_key=directory / "client.key",
        other_ca_file=directory / "other-ca.pem",
    )
    material.ca_file.write_bytes(ca_cert.public_bytes(pem))
    material.server_cert.write_bytes(server_cert.public_bytes(pem))
    material.client_cert.write_bytes(client_cert.public_bytes(pem))
    material.other_ca_file.write_bytes(other_ca.public_bytes(pem))
    _write_key(material.server_key, server_key)
    _write_key(material.client_key, client_key)
    return material


class MosquittoBroker:
    """One mosquitto process with a generated config, restartable on the same port(s)."""

    def __init__(
        self,
        executable: str,
        workdir: Path,
        *,
        username: str | None = None,
        password: str | None = None,
        tls: TlsMaterial | None = None,
    ) -> None:
        self.executable = executable
        self.workdir = workdir
        self.host = HOST
        self.username = username
        self.password = password
        self.tls = tls
        self.port = 0
        self.mtls_port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._log = workdir / "mosquitto.log"
        self._config_file = workdir / "mosquitto.conf"
        workdir.mkdir(parents=True, exist_ok=True)
        if username is not None:
            self._write_password_file()

    # -- configuration ------------------------------------------------------------------

    def _write_password_file(self) -> None:
        tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
        if not Path(tool).is_file():
            pytest.skip("mosquitto_passwd not found: cannot create a password file")
        path = self.workdir / "passwords"
        subprocess.run(
            [tool, "-b", "-c", str(path), self.username or "", self.password or ""],
            check=True,
            capture_output=True,
            timeout=10,
        )
        path.chmod(0o600)

    def _write_config(self) -> None:
        lines = [
            "persistence false",
            f"log_dest file {self._log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if os.geteuid() == 0:
            # As root mosquitto drops to user "mosquitto", which cannot read a 0700 temp dir.
            lines.append(f"user {getpass.getuser()}")
        lines.append(f"listener {self.port} {self.host}")
        if self.tls is not None:
            lines += [
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"listener {self.mtls_port} {self.host}",
                f"cafile {self.tls.ca_file}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                "require_certificate true",
            ]
        if self.username is not None:
            lines += ["allow_anonymous false", f"password_file {self.workdir / 'passwords'}"]
        else:
            lines.append("allow_anonymous true")
        self._config_file.write_text("\n".join(lines) + "\n")

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def ports(self) -> list[int]:
        return [self.port, self.mtls_port] if self.tls is not None else [self.port]

    def start(self) -> None:
        """Start (again) on the same port(s); the first start picks free ports."""
        if self.running:
            return
        first = self.port == 0
        for _attempt in range(5 if first else 1):
            if first:
                self.port = free_port()
                self.mtls_port = free_port() if self.tls is not None else 0
            self._write_config()
            if self._launch():
                return
        raise RuntimeError(f"mosquitto did not start; its log:\n{self.log_text()}")

    def _launch(self) -> bool:
        with self._log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.executable, "-c", str(self._config_file)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + START_TIMEOUT
        pending = list(self.ports)
        while pending:
            if self._process.poll() is not None:
                self._process = None
                return False  # e.g. the port was taken in the meantime
            try:
                with socket.create_connection((self.host, pending[0]), timeout=0.5):
                    pending.pop(0)
                    continue
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(
                    f"mosquitto did not listen on {self.ports} within {START_TIMEOUT} s:\n"
                    f"{self.log_text()}"
                )
            time.sleep(0.01)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Orderly shutdown (SIGTERM): clients see their connection close."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        self._process = None
        self._wait_port_closed()

    def kill(self) -> None:
        """Crash the broker (SIGKILL): nothing is sent to clients."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
        process.wait(10)
        self._process = None
        self._wait_port_closed()

    def restart(self) -> None:
        self.stop()
        self.start()

    def _wait_port_closed(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    pass
            except OSError:
                return
            time.sleep(0.01)

    def log_text(self) -> str:
        try:
            return self._log.read_text(errors="replace")
        except OSError:
            return "(no log)"

    # -- convenience --------------------------------------------------------------------

    def mqtt_config(self, **overrides: object) -> MqttConfig:
        """An `MqttConfig` pointing at this broker (plain or TLS port), with test defaults."""
        values: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "client_id": f"test-{uuid.uuid4().hex[:10]}",
            "reconnect_min": 0.05,
            "reconnect_max": 0.5,
            "connect_timeout": 5.0,
        }
        if self.username is not None:
            values["username"] = self.username
            values["password"] = self.password
        if self.tls is not None:
            values["host"] = "localhost"  # the name in the broker's certificate
            values["ca_file"] = self.tls.ca_file
        values.update(overrides)
        return MqttConfig(**values)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<MosquittoBroker {self.host}:{self.port} {state}>"


# ---------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def mosquitto_executable() -> str:
    path = find_mosquitto()
    if path is None:
        pytest.skip(
            "mosquitto not found ($P1LORA_MOSQUITTO, PATH, /usr/sbin/mosquitto): "
            "install it (apt install mosquitto) to run the MQTT tests"
        )
    return path


@pytest.fixture
def mqtt_broker(mosquitto_executable: str, tmp_path: Path) -> Iterator[MosquittoBroker]:
    """A broker for this test only; may be stopped, killed and restarted on the same port."""
    broker = MosquittoBroker(mosquitto_executable, tmp_path / "mosquitto")
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def mqtt_broker_session(
    mosquitto_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoBroker]:
    """A broker shared by the session; never stop it, and use a unique base topic."""
    broker = MosquittoBroker(mosquitto_executable, tmp_path_factory.mktemp("mosquitto-session"))
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def mqtt_broker_auth(
    mosquitto_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoBroker]:
    """A broker that requires `.username` / `.password` (anonymous access refused)."""
    broker = MosquittoBroker(
        mosquitto_executable,
        tmp_path_factory.mktemp("mosquitto-auth"),
        username="bridge",
        password=f"pw-{uuid.uuid4().hex}",
    )
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture(scope="session")
def mqtt_broker_tls(
    mosquitto_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[MosquittoBroker]:
    """TLS on `.port` (broker verified) and `.mtls_port` (client certificate required)."""
    workdir = tmp_path_factory.mktemp("mosquitto-tls")
    broker = MosquittoBroker(mosquitto_executable, workdir, tls=make_tls_material(workdir / "pki"))
    broker.start()
    yield broker
    broker.kill()


@pytest.fixture
def mqtt_base_topic() -> str:
    """A topic prefix no other test uses (retained messages outlive a test on shared brokers)."""
    return f"test-{uuid.uuid4().hex[:12]}"
