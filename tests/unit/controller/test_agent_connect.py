"""A call to an agent whose host drops every packet (link down: no RST, the SYN is lost)
fails within the call's own timeout, not the 2 s of a connection attempt: found on the
three-host lab, where each heartbeat round waited 2 s on the dead secondary's host and the
primary, beaten too late, fenced itself."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from colopp.controller.agent_client import AgentClient
from colopp.errors import AgentError


def test_a_call_to_a_host_that_drops_the_syn_ends_within_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()  # the SYN is never answered

    monkeypatch.setattr(asyncio, "open_connection", never)

    async def main() -> float:
        client = AgentClient("hosta-hb", "198.18.2.10", 7400, "t", tls=None)
        started = time.monotonic()
        with pytest.raises(AgentError, match="unreachable"):
            await client.call("ping", timeout=0.3)
        return time.monotonic() - started

    took = asyncio.run(main())
    assert took < 1.5  # 0.3 s asked; an attempt of 2 s was the bug


def test_a_status_of_a_host_that_drops_the_syn_costs_the_connect_budget_not_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A new leader's re-attach asked the host just lost for its status and waited the
    whole 5 s timeout; the status's connection now gets STATUS_CONNECT_S."""
    from colopp.controller.pair import STATUS_CONNECT_S, PairController

    async def never(*args: Any, **kwargs: Any) -> Any:
        await asyncio.Event().wait()

    monkeypatch.setattr(asyncio, "open_connection", never)

    async def main() -> tuple[float, dict[str, Any]]:
        client = AgentClient("hosta-pair", "198.18.2.10", 7400, "t", tls=None)
        started = time.monotonic()
        reply = await PairController._status_of(client)
        return time.monotonic() - started, reply

    took, reply = asyncio.run(main())
    assert "unreachable" in reply["error"]
    assert took < STATUS_CONNECT_S + 1.0  # was 5 s: the status call's whole timeout
