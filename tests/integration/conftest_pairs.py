"""A module-scoped supervised pair for the HA tests, driven from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from colopp.demo.harness import ClientWorkload, SupervisedPair
from colopp.errors import AgentError


class Driven:
    """A SupervisedPair plus the event loop that runs it."""

    def __init__(self, pair: SupervisedPair, loop: asyncio.AbstractEventLoop) -> None:
        self.sp, self.loop = pair, loop

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def supervised_under_load(self) -> ClientWorkload:
        """Client load on, its connections across two checkpoints (README: known limits),
        then supervision with heartbeats flowing."""
        workload = ClientWorkload(self.sp.plan)
        try:
            self.run(self.sp.next_checkpoint())
            self.run(self.sp.next_checkpoint())
            self.sp.supervise(self.loop)
            self.run(self.sp.heartbeats())
        except BaseException:
            workload.kill()
            raise
        return workload


async def agent_status(site: Driven, name: str, within: float = 20.0) -> dict[str, Any]:
    """The agent's status, retried while a new agent starts (its old connection broke)."""
    agent = site.sp.pair.agents[name]
    deadline = asyncio.get_running_loop().time() + within
    while True:
        try:
            result: dict[str, Any] = await agent.call("status", timeout=5)
            return result
        except AgentError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.1)  # the next agent is starting: retry


def driven_pair(state_dir: Path, qemu_root: Path, prefix: str, **options: Any) -> Iterator[Driven]:
    """``options``: SupervisedPair.protect's COLO++ keywords."""
    loop = asyncio.new_event_loop()
    try:
        sp = loop.run_until_complete(
            SupervisedPair.protect(state_dir, qemu_root, prefix, **options)
        )
        yield Driven(sp, loop)
        loop.run_until_complete(sp.close())
    finally:
        loop.close()
