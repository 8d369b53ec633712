"""HTTPS: ``colopp serve --tls-cert/--tls-key`` with a CA made in the test (cryptography);
bad key files are refused at start with a reason."""

from __future__ import annotations

import datetime
import ipaddress
import logging
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from colopp.errors import ConfigError
from colopp_api.client import ApiClient
from colopp_api.tls import TlsFiles, tls_files, transport_notices
from tests.api.conftest import READ, ApiServer, wait_until


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )


def make_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("colopp test CA"))
        .issuer_name(_name("colopp test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("colopp api"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(paths[2], key)
    return paths


def trusting(ca: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(ca))


class TlsApiServer(ApiServer):
    """The API server with ``--tls-cert/--tls-key``, checked over HTTPS with the test's CA."""

    def __init__(self, state_dir: Path, database_url: str, pki: tuple[Path, Path, Path]) -> None:
        super().__init__(state_dir, database_url)
        self.ca, self.cert, self.key = pki
        self.url = f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "colopp_api",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(self.port),
                    "--tls-cert",
                    str(self.cert),
                    "--tls-key",
                    str(self.key),
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_until(f"API up on {self.url}; log: {self.log}", self._https_up, 60)

    def _https_up(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"API exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", verify=trusting(self.ca), timeout=2).is_success
        except httpx.HTTPError:
            return False


@pytest.fixture(scope="module")
def tls_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsApiServer]:
    folder = tmp_path_factory.mktemp("tls")
    server = TlsApiServer(folder / "state", f"sqlite:///{folder / 'api.db'}", make_pki(folder))
    try:
        server.start()
        yield server
    finally:
        server.kill()


def test_the_api_serves_https_with_the_given_certificate(tls_api: TlsApiServer) -> None:
    headers = {"Authorization": f"Bearer {READ}"}
    with httpx.Client(base_url=tls_api.url, verify=trusting(tls_api.ca), headers=headers) as c:
        assert c.get("/v1/protections").json() == {"protections": []}
        assert "colopp_build_info" in c.get("/metrics").text
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{tls_api.url}/healthz", timeout=5)  # the system's CAs do not know it
    with pytest.raises(httpx.HTTPError):  # no plain HTTP on the same port
        httpx.get(f"http://127.0.0.1:{tls_api.port}/healthz", timeout=5)


def test_the_cli_client_trusts_a_private_ca(
    tls_api: TlsApiServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLOPP_API_URL", tls_api.url)
    monkeypatch.setenv("COLOPP_API_TOKEN", READ)
    monkeypatch.setenv("COLOPP_API_CA_FILE", str(tls_api.ca))
    client = ApiClient.from_env()
    try:
        assert client.request("GET", "/v1/protections") == {"protections": []}
    finally:
        client._http.close()


def test_bad_tls_files_are_refused_with_a_reason(tmp_path: Path) -> None:
    ca, cert, key = make_pki(tmp_path)
    assert tls_files(None, None) is None
    assert tls_files(str(cert), str(key)) is not None
    with pytest.raises(ConfigError, match="go together"):
        tls_files(str(cert), None)
    with pytest.raises(ConfigError, match="TLS certificate"):
        tls_files(str(ca), str(key))  # the CA's certificate does not match this key
    with pytest.raises(ConfigError, match="cannot read"):
        tls_files(str(cert), str(tmp_path / "missing.pem"))
    key.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        tls_files(str(cert), str(key))
    env = {**os.environ, "COLOPP_API_STATE_DIR": str(tmp_path / "state"), "COLOPP_API_LAB": "0"}
    argv = [sys.executable, "-m", "colopp_api", "--port", "1", "--tls-cert", str(cert)]
    done = subprocess.run(
        [*argv, "--tls-key", str(key)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 2 and "must be mode 0600" in done.stderr


def test_start_notices_name_each_wire() -> None:
    files = TlsFiles(Path("/etc/colopp/tls/api.pem"), Path("/etc/colopp/tls/api.key"))
    assert transport_notices("127.0.0.1", files, True) == [
        (logging.INFO, "HTTPS on 127.0.0.1 with /etc/colopp/tls/api.pem"),
        (logging.INFO, "agents over mutual TLS (COLOPP_AGENT_TLS_*)"),
    ]
    lab = transport_notices("127.0.0.1", None, False)
    assert [level for level, _ in lab] == [logging.WARNING, logging.WARNING]
    assert "plain HTTP on 127.0.0.1: for a local lab only" in lab[0][1]
    assert "agents over plain TCP" in lab[1][1] and "local lab only" in lab[1][1]
    assert "in clear text" in transport_notices("0.0.0.0", None, True)[0][1]


def test_each_server_says_at_start_how_it_is_reached(tls_api: TlsApiServer, tmp_path: Path) -> None:
    assert "HTTPS on 127.0.0.1 with" in tls_api.log.read_text()
    plain = ApiServer(tmp_path / "state", f"sqlite:///{tmp_path / 'api.db'}")
    try:
        plain.start()
        text = plain.log.read_text()
    finally:
        plain.kill()
    assert "plain HTTP on 127.0.0.1: for a local lab only" in text
    assert "agents over plain TCP" in text
