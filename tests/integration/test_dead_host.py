"""A dead primary host (every link of its namespace down) under client load: the primary
fences itself by lease, the controller promotes the secondary only after that, clients
keep their connections, no acknowledged write is lost, and when the host is back the pair
is re-protected onto it."""

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
from colopp.lab import Node, netns_argv
from colopp.qemu.argv import ComparatorKind

PREFIX = "clpdead"


class Site:
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

    async def wait_for(self, what: str, check: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            assert time.monotonic() < deadline, (
                f"{what}: {self.pair.state} {self.supervisor.incidents}"
            )
            await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    loop = asyncio.new_event_loop()
    local = loop.run_until_complete(
        prepare_local_pair(
            tmp_path_factory.mktemp("dead"),
            qemu_root,
            ComparatorKind.COLOPP,
            Console(quiet=True),
            prefix=PREFIX,
        )
    )
    loop.run_until_complete(local.deployment.start())
    s = Site(local, loop)
    try:
        s.run(s.pair.protect())
        yield s
    finally:
        s.supervisor.stop()
        s.run(s.supervisor.close())
        s.run(s.pair.stop())
        s.run(local.deployment.stop())
        loop.close()


def test_dead_primary_host_self_fences_and_secondary_takes_over(site: Site) -> None:
    deployment = site.local.deployment
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
    task = site.loop.create_task(site.supervisor.run())
    incidents = site.supervisor.incidents
    try:
        site.run(asyncio.sleep(3))  # protected, under load, heartbeats flowing
        lab.set_node_links(Node.HOST_A, False)
        site.run(
            site.wait_for(
                "dead host handled",
                lambda: (
                    bool(incidents) and (incidents[0].failover_ms is not None or incidents[0].error)
                ),
                30,
            )
        )
        first = incidents[0]
        assert (first.role, first.host, first.health, first.error) == (
            "primary",
            "hosta",
            "unreachable",
            None,
        )
        assert site.pair.primary.name == "hostb"
        site.run(asyncio.sleep(2))  # the secondary serves alone
        lab.set_node_links(Node.HOST_A, True)
        beat = site.run(site.pair.agents["hosta"].call("ping"))
        assert beat["self_fenced"] is True and beat["vm_alive"] is False
        site.run(site.wait_for("re-protected", lambda: site.pair.state is PairState.PROTECTED, 90))
        assert site.pair.secondary is not None and site.pair.secondary.name == "hosta"
        assert workload.stdin is not None
        workload.stdin.write("stop\n")
        workload.stdin.flush()
        out, _ = workload.communicate(timeout=180)
    finally:
        site.supervisor.stop()
        site.run(task)
        lab.set_node_links(Node.HOST_A, True)
        if workload.poll() is None:
            workload.kill()
            workload.communicate()
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
