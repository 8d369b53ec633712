"""The agent's RPC: auth, dispatch, error classes across the wire (real loopback sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from colopp.agent.protocol import decode_request, raise_remote
from colopp.agent.server import AgentServer
from colopp.controller.agent_client import AgentClient
from colopp.errors import AgentError, QmpError, StateError


async def _with_server(methods: dict[str, Any], body: Any, token: str = "secret") -> Any:
    server = AgentServer("secret", methods)
    await server.start("127.0.0.1", 0)
    port = server.ports[0]
    client = AgentClient("test", "127.0.0.1", port, token)
    try:
        return await body(client)
    finally:
        await client.close()
        await server.close()


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def echo(**params: Any) -> dict[str, Any]:
    return {"echo": params}


async def refuse() -> None:
    raise StateError("pair is launching, this needs protected")


async def qmp_fails() -> None:
    raise QmpError("nbd-server-start", "NBD server already running", "GenericError")


def test_call_round_trips_params() -> None:
    result = run(_with_server({"echo": echo}, lambda c: c.call("echo", a=1, b="x")))
    assert result == {"echo": {"a": 1, "b": "x"}}


def test_bad_token_is_refused() -> None:
    with pytest.raises(AgentError, match="bad token"):
        run(_with_server({"echo": echo}, lambda c: c.call("echo"), token="wrong"))


def test_unknown_method_is_refused_by_name() -> None:
    with pytest.raises(AgentError, match="no method 'format_disk'"):
        run(_with_server({"echo": echo}, lambda c: c.call("format_disk")))


def test_wrong_params_are_an_agent_error_not_a_crash() -> None:
    async def body(c: AgentClient) -> Any:
        with pytest.raises(AgentError, match="refuse"):
            await c.call("refuse", surprise=1)
        return await c.call("echo", ok=True)  # the connection still serves

    assert run(_with_server({"echo": echo, "refuse": refuse}, body)) == {"echo": {"ok": True}}


def test_errors_keep_their_class_and_qmp_command() -> None:
    with pytest.raises(StateError, match="needs protected"):
        run(_with_server({"refuse": refuse}, lambda c: c.call("refuse")))
    with pytest.raises(QmpError) as info:
        run(_with_server({"q": qmp_fails}, lambda c: c.call("q")))
    assert info.value.command == "nbd-server-start"
    assert info.value.error_class == "GenericError"


def test_unreachable_agent_is_a_clear_error() -> None:
    client = AgentClient("gone", "127.0.0.1", 9, "t")
    with pytest.raises(AgentError, match="agent gone at 127.0.0.1:9 unreachable"):
        run(client.connect(within=0.3))


@pytest.mark.parametrize(
    "line",
    [
        b"not json",
        b"[]",
        b'{"id": "1", "token": "t", "method": "m"}',
        b'{"id": 1, "token": "t", "method": "m", "params": []}',
    ],
)
def test_malformed_requests_are_refused(line: bytes) -> None:
    with pytest.raises(AgentError):
        decode_request(line)


def test_unknown_remote_error_type_becomes_agent_error() -> None:
    with pytest.raises(AgentError, match="agent h: boom"):
        raise_remote("h", {"type": "KeyError", "message": "boom"})
