"""HTTPS for the API: check the certificate and key before uvicorn gets them (pure apart
from reading the two files).

The key must be readable by its owner only (0600), like every secret colopp reads; the pair
is loaded into an SSL context once, so a wrong file or a key that does not match the
certificate is a clear :class:`~colopp.errors.ConfigError` at start, not a traceback.
"""

from __future__ import annotations

import logging
import ssl
import stat
from dataclasses import dataclass
from pathlib import Path

from colopp.errors import ConfigError


@dataclass(frozen=True)
class TlsFiles:
    """A PEM certificate (chain) and its PEM private key."""

    cert: Path
    key: Path


def tls_files(cert: str | None, key: str | None) -> TlsFiles | None:
    """The checked pair, or None when neither is given (plain HTTP).

    Raises:
        ConfigError: only one given, unreadable, a key readable by group/others, not PEM, or
            a key that does not match the certificate.
    """
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise ConfigError("--tls-cert and --tls-key go together")
    files = TlsFiles(Path(cert), Path(key))
    try:
        mode = files.key.stat().st_mode
    except OSError as exc:
        raise ConfigError(f"cannot read the TLS key {key}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"the TLS key {key} must be mode 0600 (it is {stat.S_IMODE(mode):04o})")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(str(files.cert), str(files.key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS certificate {cert} with key {key}: {exc}") from exc
    return files


LOOPBACK = ("127.0.0.1", "::1", "localhost")


def transport_notices(host: str, tls: TlsFiles | None, agents_tls: bool) -> list[tuple[int, str]]:
    """What the API says at start about its two wires (pure): (logging level, message).

    Plain HTTP, and plain TCP to the agents, stay possible for the local lab only, and say so.
    """
    notices: list[tuple[int, str]] = []
    if tls is not None:
        notices.append((logging.INFO, f"HTTPS on {host} with {tls.cert}"))
    elif host in LOOPBACK:
        notices.append(
            (
                logging.WARNING,
                f"plain HTTP on {host}: for a local lab only (bearer tokens are not "
                "encrypted; give --tls-cert/--tls-key)",
            )
        )
    else:
        notices.append(
            (
                logging.WARNING,
                f"plain HTTP on {host}: bearer tokens cross the network in clear text "
                "(give --tls-cert/--tls-key)",
            )
        )
    if agents_tls:
        notices.append((logging.INFO, "agents over mutual TLS (COLOPP_AGENT_TLS_*)"))
    else:
        notices.append(
            (
                logging.WARNING,
                "agents over plain TCP: the agent token crosses the network in clear text; "
                "for a local lab only (set COLOPP_AGENT_TLS_CERT/KEY/CA)",
            )
        )
    return notices
