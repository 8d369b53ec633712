"""Make a CA and the certificates of colopp's agents and controller (Python ``cryptography``).

Files land in one directory, created 0700; private keys are 0600 from their first byte:

- ``ca.pem`` / ``ca.key``: the CA (EC P-256, ten years);
- ``NAME.pem`` / ``NAME.key``: a certificate for NAME with the given IP addresses and DNS
  names as subject alternative names, good for TLS server and client use (two years).

Existing files are kept (a second run changes nothing); a certificate is re-issued only when
its names differ from those asked for.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from colopp.errors import ConfigError
from colopp.files import write_private

CA_DAYS = 3650
CERT_DAYS = 730


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _write_public(path: Path, text: str) -> None:
    write_private(path, text)
    path.chmod(0o644)


def _load_ca(directory: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate((directory / "ca.pem").read_bytes())
    key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ConfigError(f"{directory / 'ca.key'} is not an EC key made by colopp")
    return cert, key


def make_ca(directory: Path, name: str = "colopp CA") -> bool:
    """Create the CA in ``directory`` unless it exists; returns True when created."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    if (directory / "ca.pem").exists() and (directory / "ca.key").exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    write_private(directory / "ca.key", _key_pem(key))
    _write_public(directory / "ca.pem", cert.public_bytes(serialization.Encoding.PEM).decode())
    return True


def _names(addresses: Sequence[str], dns: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for address in addresses:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError as exc:
            raise ConfigError(f"{address!r} is not an IP address") from exc
    names += [x509.DNSName(n) for n in dns]
    return names


def _current_names(path: Path) -> set[str] | None:
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound):
        return None
    return {str(n.value) for n in san}


def issue(directory: Path, name: str, addresses: Sequence[str], dns: Sequence[str] = ()) -> bool:
    """Issue ``NAME.pem``/``NAME.key`` signed by the CA in ``directory``; returns True when
    (re-)issued, False when one with the same names exists.

    Raises:
        ConfigError: a bad name or address, or no CA in ``directory``.
    """
    if not name or "/" in name or name.startswith(".") or name == "ca":
        raise ConfigError(f"certificate name {name!r} must be a plain file name other than ca")
    wanted = _names(addresses, dns or [name])
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    if key_path.exists() and _current_names(cert_path) == {str(n.value) for n in wanted}:
        return False
    try:
        ca_cert, ca_key = _load_ca(directory)
    except OSError as exc:
        raise ConfigError(f"no CA in {directory}: {exc.strerror}") from exc
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(wanted), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    write_private(key_path, _key_pem(key))
    _write_public(cert_path, cert.public_bytes(serialization.Encoding.PEM).decode())
    return True
