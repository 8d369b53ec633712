"""The controller's seams: what it needs from an agent, and what it needs from time.

- :class:`Agent`: the one call the controller makes on a host agent
  (:class:`colopp.controller.agent_client.AgentClient` over the network;
  :class:`ScriptedAgent` in tests, like httpx's ``MockTransport``: a handler answers).
- :class:`~colopp.clock.Clock`: time as the controller uses it (:mod:`colopp.clock`).
- :func:`fence`: kill a side's QEMU and wait until its agent reports it gone: the one
  way the controller makes sure a side no longer serves.
"""

from __future__ import annotations

import asyncio
import inspect
import signal
from collections.abc import Callable
from typing import Any, Protocol

from colopp.clock import Clock, FakeClock, SystemClock
from colopp.errors import AgentError, FenceError


class Agent(Protocol):
    """A host agent as the controller sees it."""

    @property
    def name(self) -> str: ...

    @property
    def port(self) -> int: ...

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        """Call ``method``; raises the agent's ColoppError subclass, or AgentError."""
        ...

    async def close(self) -> None: ...


Handler = Callable[[str, dict[str, Any]], Any]


class ScriptedAgent:
    """An agent whose answers come from ``handler(method, params)``.

    The handler returns the result (or an awaitable of it), or raises a ColoppError
    (e.g. AgentError for an unreachable host). Every call is recorded in :attr:`calls`
    as ``(method, params)``.
    """

    def __init__(self, name: str, handler: Handler, port: int = 7400) -> None:
        self._name = name
        self._port = port
        self.handler = handler
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = False

    @property
    def name(self) -> str:
        return self._name

    @property
    def port(self) -> int:
        return self._port

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        self.calls.append((method, params))
        await asyncio.sleep(0)
        result = self.handler(method, params)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def close(self) -> None:
        self.closed = True

    def methods(self) -> list[str]:
        """The methods called so far, in order."""
        return [method for method, _ in self.calls]


async def fence(
    agent: Agent, clock: Clock, timeout: float = 10.0, call_timeout: float = 5.0
) -> None:
    """SIGKILL the side's QEMU and return once its agent reports it gone.

    Raises:
        FenceError: QEMU still ran after ``timeout`` seconds.
        AgentError (or the agent's error): the agent could not be asked.
    """
    await agent.call("kill_vm", signum=int(signal.SIGKILL), timeout=call_timeout)
    deadline = clock.monotonic() + timeout
    while (await agent.call("ping", timeout=call_timeout))["vm_alive"]:
        if clock.monotonic() > deadline:
            raise FenceError(f"could not fence {agent.name}: QEMU still runs")
        await clock.sleep(0.02)  # the agent reaps QEMU: poll it


__all__ = ["Agent", "AgentError", "Clock", "FakeClock", "ScriptedAgent", "SystemClock", "fence"]
