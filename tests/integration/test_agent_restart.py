"""Agent restart (an upgrade): each host's agent in turn gets SIGTERM and a new agent starts;
the new one re-adopts QEMU, its QMP socket and the comparator, the supervisor waits for it
(no failover), and the pair keeps checkpointing. Under client load: 0 failed requests, 0
resets, 0 lost writes, the same QEMU and comparator pids before and after."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.agent.state_file import STATE_FILE
from colopp.colo.state import PairState
from colopp.errors import AgentError


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("adopt"), qemu_root, "clpadp")


async def status_of(site: Driven, name: str, within: float = 20.0) -> dict[str, Any]:
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


def test_agents_restart_one_at_a_time_keep_the_pair(site: Driven) -> None:
    sp = site.sp
    deployment = sp.local.deployment
    workload = site.supervised_under_load()
    try:
        before = {n: site.run(status_of(site, n)) for n in ("hosta", "hostb")}
        assert before["hosta"]["role"] == "primary"
        assert before["hosta"]["comparator"]["alive"] is True
        for name in ("hosta", "hostb"):
            state = deployment.state_dir / name / STATE_FILE
            assert state.stat().st_mode & 0o777 == 0o600
            site.run(deployment.restart_agent(name))
            after = site.run(status_of(site, name))
            assert after["pid"] == before[name]["pid"], f"{name}: QEMU replaced"
            assert after["vm_alive"] is True and after["role"] == before[name]["role"]
            if name == "hosta":
                assert after["comparator"]["pid"] == before[name]["comparator"]["pid"]
                assert after["comparator"]["alive"] is True
            # Heartbeats flow to the new agent and replication goes on through it.
            site.run(sp.heartbeats())
            site.run(sp.next_checkpoint())
            site.run(sp.next_checkpoint())
            assert sp.incidents == [], sp.incidents
            assert sp.pair.state is PairState.PROTECTED
        summary = workload.finish()
    finally:
        workload.kill()
    for name in ("hosta", "hostb"):
        log = (deployment.state_dir / f"agent-{name}.log").read_text()
        assert "left running for the next agent" in log
        assert "re-adopted the" in log
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
