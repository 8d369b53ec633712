"""One protection's view of a host agent that runs sides of several protections.

:class:`ProtectionAgent` is the controller's :class:`~colopp.controller.seam.Agent` for one
protection on one host: every call names the protection, so the agent routes it to that
protection's own side (``colopp.agent.protections``). :meth:`ProtectionAgent.allocate`
reserves the protection's fleet slot on the host before its first side starts there.
"""

from __future__ import annotations

from typing import Any

from colopp.controller.seam import Agent


class ProtectionAgent:
    """An :class:`Agent` whose calls all carry ``protection``."""

    def __init__(self, agent: Agent, protection: str, slot: int) -> None:
        self.agent, self.protection, self.slot = agent, protection, slot

    @property
    def name(self) -> str:
        return self.agent.name

    @property
    def port(self) -> int:
        return self.agent.port

    async def call(self, method: str, timeout: float = 30.0, **params: Any) -> Any:
        """The agent's ``method`` on this protection's side."""
        return await self.agent.call(method, timeout=timeout, protection=self.protection, **params)

    async def allocate(self, timeout: float = 10.0) -> dict[str, Any]:
        """Reserve this protection's fleet slot on the host (idempotent).

        Raises:
            ConfigError: the host holds that slot for another protection, or is full.
            AgentError: the agent is unreachable.
        """
        result: dict[str, Any] = await self.agent.call(
            "allocate", timeout=timeout, protection=self.protection, slot=self.slot
        )
        return result

    async def release(self, timeout: float = 30.0) -> None:
        """Stop this protection's side on the host and free its slot there."""
        await self.agent.call("release", timeout=timeout, protection=self.protection)

    async def close(self) -> None:
        await self.agent.close()
