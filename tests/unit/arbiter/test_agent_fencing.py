"""Agents refuse commands carrying stale fencing tokens (real loopback RPC)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from colopp.agent.server import AgentServer
from colopp.controller.agent_client import AgentClient
from colopp.errors import ConfigError, StaleToken


def test_a_command_with_an_older_token_is_refused_and_runs_nothing() -> None:
    ran: list[dict[str, Any]] = []

    async def failover(**params: Any) -> dict[str, Any]:
        ran.append(params)
        return {"took_ms": 1.0}

    async def body() -> None:
        server = AgentServer("secret", {"failover": failover})
        await server.start("127.0.0.1", 0)
        client = AgentClient("hostb", "127.0.0.1", server.ports[0], "secret")
        try:
            await client.call("failover", fence={"protection": "web", "token": 41})
            await client.call("failover", fence={"protection": "web", "token": 57})
            with pytest.raises(StaleToken, match="agent hostb: .*41 is older than 57"):
                await client.call("failover", fence={"protection": "web", "token": 41})
            with pytest.raises(ConfigError, match="fence must be"):
                await client.call("failover", fence={"token": 60})
            with pytest.raises(ConfigError, match="positive integer"):
                await client.call("failover", fence={"protection": "web", "token": "57"})
            await client.call("failover")  # single-controller mode: no token at all
            assert server.fencing.newest("web") == 57
        finally:
            await client.close()
            await server.close()

    asyncio.run(body())
    assert ran == [{}, {}, {}]  # the handler never sees the fence, and refusals run nothing
