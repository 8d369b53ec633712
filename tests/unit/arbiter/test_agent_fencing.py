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


def test_a_deposed_controller_replica_is_refused_once_its_successor_spoke(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def status() -> dict[str, Any]:
        return {"vm_alive": True}

    async def body() -> None:
        server = AgentServer("secret", {"status": status})
        await server.start("127.0.0.1", 0)
        old = AgentClient("hosta", "127.0.0.1", server.ports[0], "secret")
        new = AgentClient("hosta", "127.0.0.1", server.ports[0], "secret")
        try:
            await old.call("status")  # single-controller mode: no token, served
            monkeypatch.setattr(AgentClient, "controller_token", 7)
            await old.call("status")  # replica 1 leads with token 7
            monkeypatch.setattr(AgentClient, "controller_token", 9)
            await new.call("status")  # replica 2 took over with token 9
            monkeypatch.setattr(AgentClient, "controller_token", 7)
            with pytest.raises(StaleToken, match="7 is older than 9"):
                await old.call("status")  # replica 1's late call
            monkeypatch.setattr(AgentClient, "controller_token", 0)
            with pytest.raises(StaleToken, match="no token"):
                await old.call("status")  # nor can a tokenless caller slip in
        finally:
            await old.close()
            await new.close()
            await server.close()

    asyncio.run(body())
