"""Mutual TLS between controller and agent (real loopback sockets, certificates made by
colopp.tls.issue): a client without a valid certificate is refused, and the token never
crosses the socket in clear text (every byte is recorded by a relay in between)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ssl
import warnings
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.server import AgentServer
from colopp.controller.agent_client import AgentClient
from colopp.errors import AgentError, ConfigError
from colopp.tls import TlsFiles, client_context, server_context, tls_files
from colopp.tls.__main__ import main as tls_main
from colopp.tls.issue import issue, make_ca

TOKEN = "tok-" + "s3cr3t" * 8


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("pki") / "ca"
    assert tls_main([str(directory), "agent", "controller", "--ip", "127.0.0.1"]) == 0
    other = directory.parent / "other"
    make_ca(other, "another CA")
    issue(other, "intruder", ["127.0.0.1"])
    return directory


@pytest.fixture(autouse=True)
def collect_refused_transports() -> Iterator[None]:
    """asyncio leaves the socket of a refused TLS handshake to the garbage collector, which
    warns (ResourceWarning, an error under pytest, maybe in a later test): collect it here."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def files(directory: Path, name: str, ca: Path | None = None) -> TlsFiles:
    return TlsFiles(
        directory / f"{name}.pem", directory / f"{name}.key", ca or directory / "ca.pem"
    )


class Relay:
    """A TCP relay that keeps every byte it forwards, both ways."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.seen = bytearray()
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    self.seen += data
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                dst.close()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            for end in (writer, up_writer):
                end.close()
                with contextlib.suppress(ConnectionError, ssl.SSLError):
                    await end.wait_closed()

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def echo(**params: Any) -> dict[str, Any]:
    return {"echo": params}


async def through_relay(
    server_tls: ssl.SSLContext | None,
    client_tls: ssl.SSLContext | None,
    body: Callable[[AgentClient], Awaitable[Any]],
) -> tuple[Any, bytes, list[str]]:
    """Run ``body`` against an agent behind a relay; returns its result (or the error),
    the bytes on the wire and the methods the agent ran."""
    ran: list[str] = []

    async def traced(**params: Any) -> dict[str, Any]:
        ran.append("echo")
        return await echo(**params)

    server = AgentServer(TOKEN, {"echo": traced}, auth_timeout=2.0)
    await server.start("127.0.0.1", 0, server_tls)
    relay = Relay(server.ports[0])
    port = await relay.start()
    client = AgentClient("test", "127.0.0.1", port, TOKEN, tls=client_tls)
    try:
        try:
            result: Any = await body(client)
        except AgentError as exc:
            result = exc
        return result, bytes(relay.seen), ran
    finally:
        await client.close()
        await relay.close()
        await server.close()


def test_mutual_tls_serves_and_the_token_never_crosses_in_clear(pki: Path) -> None:
    server_tls = server_context(files(pki, "agent"))
    client_tls = client_context(files(pki, "controller"))
    result, wire, ran = asyncio.run(
        through_relay(server_tls, client_tls, lambda c: c.call("echo", a=1))
    )
    assert result == {"echo": {"a": 1}} and ran == ["echo"]
    assert len(wire) > 500  # a handshake and records did cross
    assert TOKEN.encode() not in wire and b"s3cr3t" not in wire and b"echo" not in wire
    # The same check sees the token on plain TCP (the local lab): the check is real.
    result, wire, _ = asyncio.run(through_relay(None, None, lambda c: c.call("echo", a=1)))
    assert result == {"echo": {"a": 1}} and TOKEN.encode() in wire


@pytest.mark.parametrize("who", ["no certificate", "another CA's", "plain TCP"])
def test_a_client_without_a_valid_certificate_is_refused(pki: Path, who: str) -> None:
    server_tls = server_context(files(pki, "agent"))
    if who == "no certificate":
        client_tls: ssl.SSLContext | None = ssl.create_default_context(cafile=str(pki / "ca.pem"))
    elif who == "another CA's":
        client_tls = client_context(files(pki.parent / "other", "intruder", pki / "ca.pem"))
    else:
        client_tls = None
    result, _wire, ran = asyncio.run(
        through_relay(server_tls, client_tls, lambda c: c.call("echo", timeout=3))
    )
    assert isinstance(result, AgentError), result
    assert ran == []  # the agent never ran a method for it


def test_the_controller_checks_the_agents_certificate(pki: Path) -> None:
    """An agent with a certificate of another CA is not trusted with the token."""
    server_tls = server_context(files(pki.parent / "other", "intruder", pki / "ca.pem"))
    client_tls = client_context(files(pki, "controller"))
    result, wire, ran = asyncio.run(
        through_relay(server_tls, client_tls, lambda c: c.call("echo", timeout=3))
    )
    assert isinstance(result, AgentError) and ran == []
    assert TOKEN.encode() not in wire


def test_tls_files_all_or_none_and_keys_private(pki: Path, tmp_path: Path) -> None:
    assert tls_files(None, None, None) is None
    with pytest.raises(ConfigError, match="all three"):
        tls_files(pki / "agent.pem", None, pki / "ca.pem")
    with pytest.raises(ConfigError, match="does not exist"):
        tls_files(tmp_path / "nope.pem", pki / "agent.key", pki / "ca.pem")
    assert (pki / "agent.key").stat().st_mode & 0o777 == 0o600
    assert (pki / "ca.key").stat().st_mode & 0o777 == 0o600
    loose = tmp_path / "loose.key"
    loose.write_bytes((pki / "agent.key").read_bytes())
    loose.chmod(0o644)
    with pytest.raises(ConfigError, match="0600"):
        tls_files(pki / "agent.pem", loose, pki / "ca.pem")


def test_issuing_again_changes_nothing_unless_the_names_change(pki: Path) -> None:
    assert issue(pki, "agent", ["127.0.0.1"]) is False
    assert make_ca(pki) is False
    assert issue(pki, "agent2", ["127.0.0.1", "198.18.2.10"]) is True
    assert issue(pki, "agent2", ["127.0.0.1", "198.18.2.10"]) is False
    assert issue(pki, "agent2", ["127.0.0.1"]) is True
    with pytest.raises(ConfigError, match="not an IP"):
        issue(pki, "bad", ["127.0.0.1; rm -rf /"])
    with pytest.raises(ConfigError, match="plain file name"):
        issue(pki, "../escape", ["127.0.0.1"])
