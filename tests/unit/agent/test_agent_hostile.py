"""The agent and its client against hostile peers (issue #13): bad replies are typed
errors, bad requests get an error line, idle or tokenless connections cannot lock the
controller out (real loopback sockets; one test runs the real agent process)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import resource
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from colopp.agent.protocol import check_result, decode_reply, decode_request
from colopp.agent.server import AgentServer, raise_open_files_limit
from colopp.controller.agent_client import AgentClient
from colopp.errors import AgentError

TOKEN = "secret"


async def status() -> dict[str, Any]:
    return {"host": "h", "vm_alive": False}


async def odd() -> dict[Any, Any]:
    return {(1, 2): "a tuple key JSON cannot carry"}


@contextlib.asynccontextmanager
async def agent(**options: Any) -> AsyncIterator[int]:
    server = AgentServer(TOKEN, {"status": status, "odd": odd}, **options)
    await server.start("127.0.0.1", 0)
    try:
        yield server.ports[0]
    finally:
        await server.close()


@contextlib.asynccontextmanager
async def fake_agent(reply: bytes) -> AsyncIterator[int]:
    """Answers ``reply`` to every line; waits for its client to hang up."""
    served: list[asyncio.Event] = []

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        done = asyncio.Event()
        served.append(done)
        with contextlib.suppress(ConnectionError):
            while await reader.readline():
                writer.write(reply)
                await writer.drain()
        writer.close()
        done.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        for done in served:
            await asyncio.wait_for(done.wait(), 10)
        server.close()
        await server.wait_closed()


async def _raw(port: int, line: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
    writer.write(line)
    await writer.drain()
    got = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    return got


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        (b"x\n", "not JSON"),
        (b"[1]\n", "JSON object"),
        (b'{"id":1}\n', "neither result nor error"),
        (b'{"id":7,"result":{}}\n', "expected 1"),
        (b'{"id":1,"result":{"runtime":"r"}}\n', "'version'"),
        (b'{"id":1,"result":{"version":1,"runtime":"r"}}\n', "'version'"),
        (b'{"id":1,"error":"boom"}\n', "error must be an object"),
        (b"[" * 100_000 + b"\n", "nested too deeply"),
    ],
)
def test_a_bad_reply_is_an_agent_error(reply: bytes, needle: str) -> None:
    async def body() -> None:
        async with fake_agent(reply) as port:
            client = AgentClient("odd", "127.0.0.1", port, TOKEN)
            with pytest.raises(AgentError, match=needle):
                await client.call("probe_qemu", timeout=5)
            await client.close()

    asyncio.run(body())


def test_result_fields_are_typed() -> None:
    assert check_result("launch", {"pid": 3, "run_dir": "/x"})["pid"] == 3
    with pytest.raises(AgentError, match="'pid'"):
        check_result("launch", {"pid": True})
    with pytest.raises(AgentError, match="'pid'"):
        check_result("launch", {"run_dir": "/x"})
    assert check_result("launch", {"pid": None})["pid"] is None  # libvirt, pid unknown
    with pytest.raises(AgentError, match="result must be an object"):
        check_result("ping", None)
    assert check_result("unlisted", None) is None
    with pytest.raises(AgentError, match="'qmp_ok'"):
        check_result("ping", {"vm_alive": True, "checkpoint_stalled_s": 0})
    with pytest.raises(AgentError, match="'reachable'"):
        check_result("probe_tcp", {"reachable": "yes"})
    assert decode_reply(b'{"id":null,"error":{"type":"AgentError"}}\n', expected=4).error


def test_deeply_nested_request_gets_an_error_line_and_the_connection_serves_on() -> None:
    with pytest.raises(AgentError, match="nested too deeply"):
        decode_request(b"[" * 100_000)

    async def body() -> None:
        async with agent() as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 22)
            writer.write(b"[" * 100_000 + b"\n")
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert "nested too deeply" in reply["error"]["message"]
            request = {"id": 2, "token": TOKEN, "method": "status", "params": {}}
            writer.write(json.dumps(request).encode() + b"\n")
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert reply == {"id": 2, "result": {"host": "h", "vm_alive": False}}
            writer.close()

    asyncio.run(body())


def test_a_token_with_a_lone_surrogate_gets_an_error_line() -> None:
    async def body() -> None:
        async with agent() as port:
            line = b'{"id":1,"token":"\\udc80","method":"status","params":{}}\n'
            reply = json.loads(await _raw(port, line))
            assert reply["id"] == 1 and reply["error"]["message"] == "bad token"

    asyncio.run(body())


def test_a_line_over_the_limit_gets_an_error_line() -> None:
    async def body() -> None:
        async with agent() as port:
            reply = json.loads(await _raw(port, b" " * (2 << 20) + b"\n"))
            assert "longer than" in reply["error"]["message"]

    asyncio.run(body())


def test_an_idle_connection_is_closed_after_the_auth_timeout() -> None:
    async def body() -> None:
        async with agent(auth_timeout=0.2) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            reply = json.loads(await asyncio.wait_for(reader.readline(), 10))
            assert "no authenticated request within" in reply["error"]["message"]
            assert await asyncio.wait_for(reader.read(), 10) == b""  # closed
            writer.close()

    asyncio.run(body())


def test_authenticated_connections_are_not_evicted_by_a_flood() -> None:
    async def body() -> None:
        async with agent(max_unauthenticated=4) as port:
            controller = AgentClient("ctl", "127.0.0.1", port, TOKEN)
            assert (await controller.call("status"))["vm_alive"] is False
            idle = [await asyncio.open_connection("127.0.0.1", port) for _ in range(10)]
            # The oldest idle ones are dropped (EOF), the controller's connection serves on.
            assert await asyncio.wait_for(idle[0][0].read(), 10) == b""
            assert (await controller.call("status"))["vm_alive"] is False
            fresh = AgentClient("new", "127.0.0.1", port, TOKEN)
            assert (await fresh.call("status"))["vm_alive"] is False
            for _, writer in idle:
                writer.close()
            await controller.close()
            await fresh.close()

    asyncio.run(body())


def test_raise_open_files_limit_reaches_the_hard_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))
        assert raise_open_files_limit() == hard
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (hard, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _limit_open_files() -> None:  # pragma: no cover - runs in the child
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


@pytest.fixture
def agent_process(tmp_path: Path) -> Iterator[int]:
    """``python -m colopp.agent`` with at most 1024 open files (soft and hard)."""
    token = tmp_path / "token"
    token.write_text(TOKEN)
    token.chmod(0o600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    argv = [sys.executable, "-m", "colopp.agent", "--host", "h", "--listen", f"127.0.0.1:{port}"]
    argv += ["--state-dir", str(tmp_path / "state"), "--token-file", str(token)]
    argv += ["--qemu-binary", "/bin/true"]
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=_limit_open_files,  # noqa: PLW1509 - only setrlimit, no threads yet
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()  # "listening on ..." once it serves
    assert b"listening" in first, first
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()


def test_1100_idle_tokenless_connections_do_not_lock_the_controller_out(
    agent_process: int,
) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1300:
        pytest.skip("this test needs 1300 open files on the test's side")
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    idle: list[socket.socket] = []
    try:
        for _ in range(1100):
            idle.append(socket.create_connection(("127.0.0.1", agent_process), timeout=10))

        async def call() -> Any:
            client = AgentClient("ctl", "127.0.0.1", agent_process, TOKEN)
            try:
                return await client.call("status", timeout=5)
            finally:
                await client.close()

        assert asyncio.run(call())["vm_alive"] is False
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("role", ["colopp_agent", "colopp_api"])
def test_the_systemd_units_raise_the_open_files_limit(role: str) -> None:
    root = Path(__file__).resolve().parents[3]
    unit = next((root / "ansible/roles" / role / "templates").glob("*.service.j2")).read_text()
    limits = [int(line.split("=", 1)[1]) for line in unit.splitlines() if "LimitNOFILE=" in line]
    assert limits and limits[0] >= 65536


def test_a_result_that_cannot_be_encoded_is_an_error_reply() -> None:
    async def body() -> None:
        async with agent() as port:
            client = AgentClient("ctl", "127.0.0.1", port, TOKEN)
            with pytest.raises(AgentError, match="cannot be encoded"):
                await client.call("odd")
            assert (await client.call("status"))["vm_alive"] is False
            await client.close()

    asyncio.run(body())
