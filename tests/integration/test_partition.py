"""Split-brain prevention: the replication link is cut while both hosts still answer the
controller. Exactly one side keeps serving (the primary), the other is fenced, no
acknowledged write is lost; when the link is back, the pair is re-protected."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from colopp.colo.state import PairState
from colopp.controller.agent_client import AgentClient
from colopp.controller.pair import PairController
from colopp.controller.setup import LocalPair, prepare_local_pair
from colopp.controller.supervisor import PairSupervisor
from colopp.lab import Network, Node, netns_argv
from colopp.qemu.argv import ComparatorKind

PREFIX = "clpsplit"


class Cluster:
    def __init__(self, local: LocalPair, loop: asyncio.AbstractEventLoop) -> None:
        self.local, self.loop = local, loop
        self.pair = PairController(local.config, local.deployment.agents)
        beat = {
            n: AgentClient(f"{n}-hb", a.host, a.port, local.deployment.token)
            for n, a in local.deployment.agents.items()
        }
        self.supervisor = PairSupervisor(self.pair, beat)

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def wait_for(self, what: str, check: Any, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, (
                f"{what}: {self.pair.state} {self.supervisor.incidents}"
            )
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def cluster(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    loop = asyncio.new_event_loop()
    local = loop.run_until_complete(
        prepare_local_pair(
            tmp_path_factory.mktemp("split"),
            qemu_root,
            ComparatorKind.COLOPP,
            Console(quiet=True),
            prefix=PREFIX,
        )
    )
    loop.run_until_complete(local.deployment.start())
    c = Cluster(local, loop)
    try:
        c.run(c.pair.protect())
        yield c
    finally:
        c.supervisor.stop()
        c.run(c.supervisor.close())
        c.run(c.pair.stop())
        c.run(local.deployment.stop())
        loop.close()


def test_replication_partition_keeps_exactly_one_serving_side(cluster: Cluster) -> None:
    deployment = cluster.local.deployment
    plan, lab = deployment.plan, deployment.lab
    assert lab is not None
    workload = subprocess.Popen(
        netns_argv(
            plan.netns(Node.CLIENT),
            [
                sys.executable,
                "-m",
                "colopp.demo.workload",
                "--target",
                f"{plan.guest_address.ip}:80",
                "--connections",
                "3",
            ],
        ),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    task = cluster.loop.create_task(cluster.supervisor.run())
    try:
        cluster.run(asyncio.sleep(3))  # load while protected (the supervisor watches)
        lab.set_link(Node.HOST_B, Network.REPLICATION, False)
        incidents = cluster.supervisor.incidents
        cluster.run(
            cluster.wait_for(
                "partition handled",
                lambda: (
                    bool(incidents)
                    and (incidents[0].failover_ms is not None or incidents[0].error is not None)
                ),
            )
        )
        incident = cluster.supervisor.incidents[0]
        assert (incident.role, incident.host, incident.health) == ("secondary", "hostb", "stalled")
        assert incident.fenced and incident.error is None
        alive = {
            name: cluster.run(agent.call("ping"))["vm_alive"]
            for name, agent in cluster.pair.agents.items()
        }
        assert alive == {"hosta": True, "hostb": False}  # exactly one side serves
        cluster.run(asyncio.sleep(2))  # the primary serves alone, under load
        assert cluster.pair.state is PairState.FAILED_OVER  # no re-protect without a path
        lab.set_link(Node.HOST_B, Network.REPLICATION, True)
        cluster.run(
            cluster.wait_for("re-protected", lambda: cluster.pair.state is PairState.PROTECTED, 90)
        )
        assert workload.stdin is not None
        workload.stdin.write("stop\n")
        workload.stdin.flush()
        out, _ = workload.communicate(timeout=180)
    finally:
        cluster.supervisor.stop()
        cluster.run(task)
        lab.set_link(Node.HOST_B, Network.REPLICATION, True)
        if workload.poll() is None:
            workload.kill()
            workload.communicate()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["requests_ok"] > 50
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
