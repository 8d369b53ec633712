"""Fixtures of the API tier: a real uvicorn server (a subprocess, so it can be SIGKILLed),
on a fresh SQLite file or a fresh database of a private PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from colopp.polling import wait_until

WRITE = "test-write-token"
READ = "test-read-token"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Postgres:
    """A private PostgreSQL cluster (initdb as the postgres user, unix socket only)."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="colopp-pg-"))
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = free_port()
        self._count = 0

    def _as_postgres(self, *argv: str) -> None:
        subprocess.run(["runuser", "-u", "postgres", "--", *argv], check=True, capture_output=True)

    def start(self) -> None:
        data = self.dir / "data"
        self._as_postgres(str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
        options = f"-k {self.dir} -p {self.port} -c listen_addresses='' -c fsync=off"
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(data),
            "-o",
            options,
            "-l",
            str(self.dir / "log"),
            "-w",
            "start",
        )

    def new_database(self) -> str:
        """A fresh, empty database's SQLAlchemy URL."""
        self._count += 1
        name = f"colopp{self._count}"
        self._as_postgres(str(PG_BIN / "createdb"), "-h", str(self.dir), "-p", str(self.port), name)
        return f"postgresql+psycopg://postgres@/{name}?host={self.dir}&port={self.port}"

    def stop(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self._as_postgres(
                str(PG_BIN / "pg_ctl"), "-D", str(self.dir / "data"), "-m", "immediate", "stop"
            )
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    if os.geteuid() != 0 or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL tests need root and Debian's postgresql (scripts/setup.sh)")
    server = Postgres()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh, empty database per test module (Alembic migrates it from empty)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'api.db'}"
    pg: Postgres = request.getfixturevalue("postgres")
    return pg.new_database()


class ApiServer:
    """``python -m colopp_api`` on a free port of 127.0.0.1."""

    def __init__(self, state_dir: Path, database_url: str, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        agent_token = state_dir / "agent.token"
        agent_token.parent.mkdir(parents=True, exist_ok=True)
        agent_token.write_text("agent-token\n")
        agent_token.chmod(0o600)
        self.env = {
            **os.environ,
            "COLOPP_API_STATE_DIR": str(state_dir),
            "COLOPP_DATABASE_URL": database_url,
            "COLOPP_API_TOKEN": WRITE,
            "COLOPP_API_READ_TOKEN": READ,
            "COLOPP_AGENT_TOKEN_FILE": str(agent_token),
            "COLOPP_API_AGENT_NETWORKS": "127.0.0.0/8,198.18.0.0/15",
            "COLOPP_API_WEBHOOK_NETWORKS": "127.0.0.0/8",  # fuzzed webhooks stay on loopback
            "COLOPP_API_LAB": "0",
            **env,
        }
        self.log = state_dir / "api.log"
        self.proc: subprocess.Popen[bytes] | None = None

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
                ],
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        wait_until(f"API up on {self.url}; log: {self.log}", self._healthy, 60)

    def _healthy(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"API exited {self.proc.returncode}: {self.log.read_text()[-2000:]}")
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=60)

    def client(self, token: str | None = WRITE) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory, database_url: str) -> Iterator[ApiServer]:
    """One server per module and database (tests share it; names keep them apart)."""
    server = ApiServer(tmp_path_factory.mktemp("state"), database_url)
    server.start()
    yield server
    server.kill(signal.SIGTERM)


@contextlib.contextmanager
def lab_api_server(
    prefix: str, qemu_root: Path, database_url: str | None = None
) -> Iterator[ApiServer]:
    """``colopp serve`` allowed to build this host's lab under ``prefix``; on the way out
    every protection is unprotected with ``stop=true`` and, should the API fail to, the
    lab's processes and namespaces are removed."""
    from colopp.controller.local import processes_in_netns
    from colopp.lab import cleanup_leftovers, plan_lab

    short = Path(tempfile.mkdtemp(prefix=f"{prefix}-"))  # QEMU socket paths < 108 bytes
    server = ApiServer(
        short / "state",
        database_url or f"sqlite:///{short / 'api.db'}",
        COLOPP_API_LAB="1",
        COLOPP_API_LAB_PREFIX=prefix,
        COLOPP_QEMU_ROOT=str(qemu_root),
    )
    server.start()
    try:
        yield server
    finally:
        with contextlib.suppress(Exception), server.client() as c:
            for p in c.get("/v1/protections").json()["protections"]:
                if not p["stopped"]:
                    c.delete(f"/v1/protections/{p['id']}", params={"stop": "true"})
            wait_until(
                "teardown",
                lambda: all(p["stopped"] for p in c.get("/v1/protections").json()["protections"]),
                120,
            )
        server.kill()
        for netns in plan_lab(prefix).namespaces:  # only if the API could not tear down
            for pid in processes_in_netns(netns):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        cleanup_leftovers(prefix)
        if not os.environ.get("COLOPP_KEEP_LAB_STATE"):  # set to read the logs afterwards
            shutil.rmtree(short, ignore_errors=True)


def get_protection(c: httpx.Client, pid: str) -> dict[str, Any]:
    """One protection as the API reports it."""
    got: dict[str, Any] = c.get(f"/v1/protections/{pid}").json()
    return got


def in_state(c: httpx.Client, pid: str, *states: str) -> Any:
    """A check for :func:`wait_until`: the protection once it is in one of ``states``
    (an ``error`` state fails at once, with its reason)."""

    def check() -> Any:
        got = get_protection(c, pid)
        assert got["state"] != "error", got["reason"]
        return got if got["state"] in states else None

    return check
