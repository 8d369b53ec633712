"""The API's settings, read once from the environment (pure apart from reading files).

======================================  ==================================================
``COLOPP_API_STATE_DIR``                state directory (default ``/var/lib/colopp/api``)
``COLOPP_DATABASE_URL``                 SQLAlchemy URL (default SQLite under the state dir)
``COLOPP_API_TOKEN[_FILE]``             read-write bearer token (or a 0600 file holding it)
``COLOPP_API_READ_TOKEN[_FILE]``        read-only bearer token (or a 0600 file)
``COLOPP_AGENT_TOKEN_FILE``             0600 file with the agents' token (``hosts`` placement)
``COLOPP_QEMU_ROOT``                    private QEMU root for lab placements
``COLOPP_API_LAB``                      ``0`` refuses lab placements (default ``1``)
``COLOPP_API_LAB_PREFIX``               namespace prefix of the lab (default ``colopp``)
``COLOPP_API_AGENT_NETWORKS``           comma-separated CIDRs agents may be at (default any)
``COLOPP_API_SAMPLE_PERIOD``            seconds between metric samples (default 1.0)
``COLOPP_API_WEBHOOK_NETWORKS``         comma-separated CIDRs webhook URLs may point at (any)
``COLOPP_API_RETENTION``                sample retention tiers (default ``1s:1d,1m:30d``)
``COLOPP_API_RETENTION_PERIOD``         seconds between retention passes (default 300)
======================================  ==================================================

Without any configured write token the API makes one (``STATE_DIR/api.token``, 0600) so
that it never runs open.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path

from colopp.errors import ConfigError
from colopp.lab.plan import check_prefix
from colopp_api.retention import DEFAULT_RETENTION, RetentionPolicy, parse_retention
from colopp_api.webhooks.networks import webhook_networks

DEFAULT_STATE_DIR = Path("/var/lib/colopp/api")


def read_secret_file(path: Path) -> str:
    """The stripped content of a secret file that only its owner may read.

    Raises:
        ConfigError: missing, unreadable, empty, or readable by group/others.
    """
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError(f"{path} must be mode 0600 (it is {stat.S_IMODE(mode):04o})")
    if not text:
        raise ConfigError(f"{path} is empty")
    return text


def _token(env: dict[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    if env.get(f"{name}_FILE"):
        return read_secret_file(Path(env[f"{name}_FILE"]))
    return None


def _write_new_token(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token


def _networks(text: str) -> tuple[ipaddress.IPv4Network, ...]:
    try:
        return tuple(ipaddress.IPv4Network(part.strip()) for part in text.split(",") if part)
    except ValueError as exc:
        raise ConfigError(f"COLOPP_API_AGENT_NETWORKS: {exc}") from exc


@dataclass(frozen=True)
class Settings:
    """Everything the API reads from its environment."""

    state_dir: Path
    database_url: str
    write_token: str
    read_token: str | None = None
    agent_token_file: Path | None = None
    qemu_root: Path | None = None
    lab_enabled: bool = True
    lab_prefix: str = "colopp"
    agent_networks: tuple[ipaddress.IPv4Network, ...] = field(default_factory=tuple)
    sample_period: float = 1.0
    webhook_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    retention: RetentionPolicy = field(default_factory=lambda: parse_retention(DEFAULT_RETENTION))

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings (``os.environ`` by default).

        Raises:
            ConfigError: a token file is not 0600, a prefix or network is malformed.
        """
        env = dict(os.environ if env is None else env)
        state_dir = Path(env.get("COLOPP_API_STATE_DIR", str(DEFAULT_STATE_DIR)))
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        url = env.get("COLOPP_DATABASE_URL") or f"sqlite:///{state_dir / 'colopp.db'}"
        write = _token(env, "COLOPP_API_TOKEN")
        if write is None:
            generated = state_dir / "api.token"
            write = read_secret_file(generated) if generated.exists() else None
            write = write or _write_new_token(generated)
        agent_file = env.get("COLOPP_AGENT_TOKEN_FILE")
        root = env.get("COLOPP_QEMU_ROOT")
        return cls(
            state_dir=state_dir,
            database_url=url,
            write_token=write,
            read_token=_token(env, "COLOPP_API_READ_TOKEN"),
            agent_token_file=Path(agent_file) if agent_file else None,
            qemu_root=Path(root) if root else None,
            lab_enabled=env.get("COLOPP_API_LAB", "1") != "0",
            lab_prefix=check_prefix(env.get("COLOPP_API_LAB_PREFIX", "colopp")),
            agent_networks=_networks(env.get("COLOPP_API_AGENT_NETWORKS", "")),
            sample_period=float(env.get("COLOPP_API_SAMPLE_PERIOD", "1.0")),
            webhook_networks=webhook_networks(env.get("COLOPP_API_WEBHOOK_NETWORKS", "")),
            retention=parse_retention(
                env.get("COLOPP_API_RETENTION", DEFAULT_RETENTION),
                float(env.get("COLOPP_API_RETENTION_PERIOD", "300")),
            ),
        )
