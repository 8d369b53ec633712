"""Mutual TLS between the controller (API) and the agents.

An agent given ``--tls-cert/--tls-key/--tls-ca`` serves TLS only and requires a client
certificate signed by that CA; the controller presents its own certificate from the same CA
(``COLOPP_AGENT_TLS_CERT/KEY/CA``) and checks the agent's against the agent's address. The
token then never crosses the network in clear text. Without them the agent speaks plain TCP
(the local lab) and says so at start. Certificates are made by :mod:`colopp.tls.issue`
(``python -m colopp.tls``), which the Ansible playbook runs, or brought by the operator.
"""

from __future__ import annotations

import functools
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ConfigError

ENV_PREFIX = "COLOPP_AGENT_TLS_"


@dataclass(frozen=True)
class TlsFiles:
    """A certificate, its private key (0600) and the CA that signs the other side."""

    cert: Path
    key: Path
    ca: Path

    def check(self) -> None:
        """Raises ConfigError: a file is missing, or the key is readable by others."""
        for what, path in (("certificate", self.cert), ("key", self.key), ("CA", self.ca)):
            if not path.is_file():
                raise ConfigError(f"TLS {what} {path} does not exist")
        mode = self.key.stat().st_mode
        if mode & 0o077:
            raise ConfigError(f"TLS key {self.key} must be mode 0600 (is {mode & 0o777:o})")


def tls_files(cert: Path | None, key: Path | None, ca: Path | None) -> TlsFiles | None:
    """All three, or none (None: plain TCP).

    Raises:
        ConfigError: only some were given, or a file is missing or unsafe.
    """
    given = [p for p in (cert, key, ca) if p is not None]
    if not given:
        return None
    if cert is None or key is None or ca is None:
        raise ConfigError("TLS needs a certificate, its key and the CA, all three")
    files = TlsFiles(cert, key, ca)
    files.check()
    return files


def _context(purpose: ssl.Purpose, files: TlsFiles) -> ssl.SSLContext:
    context = ssl.create_default_context(purpose, cafile=str(files.ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS certificate {files.cert} / key {files.key}: {exc}") from exc
    return context


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """An agent's context: its certificate, and a client certificate from the CA required.

    Raises:
        ConfigError: the certificate, key or CA cannot be loaded.
    """
    context = _context(ssl.Purpose.CLIENT_AUTH, files)
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def client_context(files: TlsFiles) -> ssl.SSLContext:
    """The controller's context: its certificate; the agent's checked against the CA and
    the address dialled (IP subject alternative names).

    Raises:
        ConfigError: the certificate, key or CA cannot be loaded.
    """
    return _context(ssl.Purpose.SERVER_AUTH, files)


@functools.cache
def agent_client_context() -> ssl.SSLContext | None:
    """The controller's context from ``COLOPP_AGENT_TLS_{CERT,KEY,CA}`` (None: plain TCP).

    Raises:
        ConfigError: as :func:`tls_files` and :func:`client_context`.
    """

    def env(name: str) -> Path | None:
        value = os.environ.get(ENV_PREFIX + name, "")
        return Path(value) if value else None

    files = tls_files(env("CERT"), env("KEY"), env("CA"))
    return client_context(files) if files is not None else None
