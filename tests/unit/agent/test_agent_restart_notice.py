"""An agent exiting for a restart tells the controller through its heartbeat replies, and
waits until two heartbeats carried the notice (the second proves the first was read)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from colopp.agent.restart import ANNOUNCE_BEATS, announce_restart


@dataclass
class Lease:
    last_heartbeat: float | None = None


@dataclass
class FakeAgent:
    side: Any = None
    lease: Lease = field(default_factory=Lease)
    restart_grace: float | None = None


def test_the_notice_waits_for_two_heartbeats() -> None:
    async def main() -> int:
        agent = FakeAgent(side=object(), lease=Lease(1.0))
        beats = 0

        async def controller() -> None:
            nonlocal beats
            while True:
                await asyncio.sleep(0.02)
                beats += 1
                if agent.restart_grace is not None:  # what a ping would answer
                    assert agent.restart_grace == 30.0
                agent.lease.last_heartbeat = 1.0 + beats

        task = asyncio.create_task(controller())
        try:
            return await announce_restart([agent], 30.0, within=5.0)  # type: ignore[list-item]
        finally:
            task.cancel()

    assert asyncio.run(main()) == ANNOUNCE_BEATS


def test_without_a_vm_or_a_controller_nobody_is_waited_for() -> None:
    async def main() -> tuple[int, int, float | None]:
        idle = FakeAgent(side=None, lease=Lease(1.0))
        unwatched = FakeAgent(side=object(), lease=Lease(None))
        silent = FakeAgent(side=object(), lease=Lease(1.0))
        none = await announce_restart([idle, unwatched], 5.0)  # type: ignore[list-item]
        timed_out = await announce_restart([silent], 5.0, within=0.05)  # type: ignore[list-item]
        return none, timed_out, idle.restart_grace

    assert asyncio.run(main()) == (0, 0, 5.0)
