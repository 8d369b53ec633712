"""A primary told to continue alone is not self-fenced by its lease while its failover
sequence runs (no peer, and no heartbeats while the controller waits on the call): found
on the three-host lab, where a loaded primary's sequence outlasted the 1 s lease and the
watchdog SIGKILLed the side the controller had chosen to keep."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from colopp.agent import failover as failover_module
from colopp.agent.host import HostAgent
from colopp.agent.side import Side
from colopp.clock import FakeClock
from colopp.domain import Role, SideSpec, VmSpec


class FakeProcess:
    def __init__(self) -> None:
        self.killed = False

    def alive(self) -> bool:
        return not self.killed


def test_the_lease_does_not_fence_a_primary_during_its_own_failover(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = FakeClock()
    process = FakeProcess()
    fenced: list[bool] = []

    async def peer_gone() -> bool:
        return False

    async def no_comparator(side: Any) -> None:
        return None

    async def main() -> dict[str, Any]:
        agent = HostAgent("hostc", tmp_path, runtime=None, lease=1.0, clock=clock)  # type: ignore[arg-type]
        spec = SideSpec(
            Role.PRIMARY, tmp_path, "cpp1", tmp_path / "d", "198.18.1.12", "198.18.1.10"
        )
        vm = VmSpec("vm1", Path("/k"), Path("/i"), "x")
        agent.side = Side(vm, spec, process, monitor=None)  # type: ignore[arg-type]
        agent.lease._kill = lambda: setattr(process, "killed", True)
        agent.lease._peer_reachable = peer_gone

        async def slow_steps(side: Any, steps: Any) -> None:
            clock.advance(3.0)  # a loaded machine: the sequence outlasts the lease
            fenced.append(await agent.lease.check())

        monkeypatch.setattr(failover_module, "run_steps", slow_steps)
        monkeypatch.setattr(failover_module, "stop_comparator", no_comparator)
        monkeypatch.setattr(agent, "persist", lambda: None)
        agent.lease.renew()  # heartbeats flowed before the secondary's host died
        try:
            reply: dict[str, Any] = dict(await agent.failover())
        finally:
            agent.lease.cancel()
        assert agent.side.failed_over
        return reply

    reply = asyncio.run(main())
    assert fenced == [False] and not process.killed
    assert reply["role"] == "primary"
