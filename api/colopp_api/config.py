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
``COLOPP_API_MAX_BODY``                 largest request body in bytes (default 1048576)
``COLOPP_API_WEBHOOK_NETWORKS``         comma-separated CIDRs webhook URLs may point at (any)
``COLOPP_API_RETENTION``                sample retention tiers (default ``1s:1d,1m:30d``)
``COLOPP_API_RETENTION_PERIOD``         seconds between retention passes (default 300)
``COLOPP_ETCD_ENDPOINTS``               comma-separated etcd client URLs: fleet mode, replicas
                                        elect a leader that alone supervises (default unset)
``COLOPP_RIGHT_ENDPOINTS``              etcd client URLs as the pool's agents reach them: with
                                        fleet mode, each pool protection's serving side holds
                                        its right to serve there (default unset: not held)
``COLOPP_API_REPLICA``                  this replica's name in the election (default host:pid)
``COLOPP_POOL``                         the pool for ``pool`` placements: a JSON list of hosts
                                        ``{"name", "address", "repl_ip", "port", "slots"}``,
                                        three or more (``colopp.fleet.pool``; default none)
======================================  ==================================================

Every value is validated when the API starts (a pydantic model of the environment): a bad
one is a :class:`ConfigError` naming the variable (``colopp serve`` exits 2). An empty
value counts as unset.

Without any configured write token the API makes one (``STATE_DIR/api.token``, 0600) so
that it never runs open.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from colopp.errors import ConfigError
from colopp.fleet.pool import PoolMember, parse_pool
from colopp.lab import check_prefix
from colopp_api.db.retention import DEFAULT_RETENTION, RetentionPolicy, parse_retention
from colopp_api.netcheck import webhook_networks

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
    return tuple(ipaddress.IPv4Network(part.strip()) for part in text.split(",") if part.strip())


def _endpoints(text: str) -> tuple[str, ...]:
    urls = tuple(part.strip() for part in text.split(",") if part.strip())
    for url in urls:
        if not url.startswith(("http://", "https://")) or any(c.isspace() for c in url):
            raise ValueError(f"etcd endpoint {url!r} must be an http(s) URL")
    return urls


def _prefix(text: str) -> str:
    try:
        return check_prefix(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


def _pool(text: str) -> tuple[PoolMember, ...]:
    try:
        return tuple(parse_pool(text))
    except ConfigError as exc:
        raise ValueError(str(exc)) from exc


def _database_url(text: str) -> str:
    try:
        make_url(text)
    except ArgumentError as exc:
        raise ValueError(f"not a database URL: {exc}") from exc
    return text


def _path(text: str) -> Path:
    if "\x00" in text or not text.startswith("/"):
        raise ValueError(f"must be an absolute path, not {text!r}")
    return Path(text)


AbsolutePath = Annotated[Path, BeforeValidator(_path)]


class _Environment(BaseModel):
    """The API's environment variables, each validated (aliases are the variables)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    state_dir: AbsolutePath = Field(DEFAULT_STATE_DIR, alias="COLOPP_API_STATE_DIR")
    database_url: Annotated[str | None, AfterValidator(lambda v: v and _database_url(v))] = Field(
        None, alias="COLOPP_DATABASE_URL"
    )
    agent_token_file: AbsolutePath | None = Field(None, alias="COLOPP_AGENT_TOKEN_FILE")
    qemu_root: AbsolutePath | None = Field(None, alias="COLOPP_QEMU_ROOT")
    lab_enabled: bool = Field(True, alias="COLOPP_API_LAB")
    lab_prefix: Annotated[str, AfterValidator(_prefix)] = Field(
        "colopp", alias="COLOPP_API_LAB_PREFIX"
    )
    agent_networks: Annotated[tuple[ipaddress.IPv4Network, ...], BeforeValidator(_networks)] = (
        Field((), alias="COLOPP_API_AGENT_NETWORKS")
    )
    sample_period: float = Field(
        1.0, gt=0, le=3600, allow_inf_nan=False, alias="COLOPP_API_SAMPLE_PERIOD"
    )
    max_body: int = Field(1 << 20, ge=1024, le=1 << 30, alias="COLOPP_API_MAX_BODY")
    etcd_endpoints: Annotated[tuple[str, ...], BeforeValidator(_endpoints)] = Field(
        (), alias="COLOPP_ETCD_ENDPOINTS"
    )
    right_endpoints: Annotated[tuple[str, ...], BeforeValidator(_endpoints)] = Field(
        (), alias="COLOPP_RIGHT_ENDPOINTS"
    )
    replica: str | None = Field(None, max_length=200, alias="COLOPP_API_REPLICA")
    pool: Annotated[tuple[PoolMember, ...], BeforeValidator(_pool)] = Field((), alias="COLOPP_POOL")


def _read_environment(env: dict[str, str]) -> _Environment:
    names = {f.alias for f in _Environment.model_fields.values()}
    given = {k: v for k, v in env.items() if k in names and v != ""}
    try:
        return _Environment.model_validate(given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "environment"
            shown = f" (got {given[name]!r})" if name in given else ""
            problems.append(f"{name}: {error['msg']}{shown}")
        raise ConfigError("; ".join(problems)) from None


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
    max_body: int = 1 << 20
    webhook_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    retention: RetentionPolicy = field(default_factory=lambda: parse_retention(DEFAULT_RETENTION))
    #: Fleet mode (colopp/arbiter): etcd client URLs; empty = the single-controller default.
    etcd_endpoints: tuple[str, ...] = ()
    #: etcd as the pool's agents reach it (fleet mode): serving sides hold their right.
    right_endpoints: tuple[str, ...] = ()
    replica: str = ""
    #: The hosts of ``pool`` placements (empty: none configured).
    pool: tuple[PoolMember, ...] = ()

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> Settings:
        """Read the settings (``os.environ`` by default).

        Raises:
            ConfigError: a value is malformed or out of range (the message names the
                variable), a token file is not 0600, the state directory cannot be made.
        """
        env = dict(os.environ if env is None else env)
        values = _read_environment(env)
        state_dir = values.state_dir
        try:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise ConfigError(f"COLOPP_API_STATE_DIR {state_dir}: {exc.strerror}") from exc
        url = values.database_url or f"sqlite:///{state_dir / 'colopp.db'}"
        write = _token(env, "COLOPP_API_TOKEN")
        if write is None:
            generated = state_dir / "api.token"
            write = read_secret_file(generated) if generated.exists() else None
            write = write or _write_new_token(generated)
        return cls(
            state_dir=state_dir,
            database_url=url,
            write_token=write,
            read_token=_token(env, "COLOPP_API_READ_TOKEN"),
            agent_token_file=values.agent_token_file,
            qemu_root=values.qemu_root,
            lab_enabled=values.lab_enabled,
            lab_prefix=values.lab_prefix,
            agent_networks=values.agent_networks,
            sample_period=values.sample_period,
            max_body=values.max_body,
            webhook_networks=webhook_networks(env.get("COLOPP_API_WEBHOOK_NETWORKS", "")),
            retention=_retention(env),
            etcd_endpoints=values.etcd_endpoints,
            right_endpoints=values.right_endpoints if values.etcd_endpoints else (),
            replica=values.replica or f"{socket.gethostname()}:{os.getpid()}",
            pool=values.pool,
        )


def _retention(env: dict[str, str]) -> RetentionPolicy:
    """``COLOPP_API_RETENTION`` and ``COLOPP_API_RETENTION_PERIOD``, validated.

    Raises:
        ConfigError: either is malformed (named in the message).
    """
    text = env.get("COLOPP_API_RETENTION") or DEFAULT_RETENTION
    raw_period = env.get("COLOPP_API_RETENTION_PERIOD") or "300"
    try:
        period = float(raw_period)
    except ValueError:
        raise ConfigError(
            f"COLOPP_API_RETENTION_PERIOD: {raw_period!r} is not a number of seconds"
        ) from None
    try:
        return parse_retention(text, period)
    except ConfigError as exc:
        raise ConfigError(f"COLOPP_API_RETENTION: {exc}") from exc
