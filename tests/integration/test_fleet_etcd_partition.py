"""The etcd partition on a real COLO pair: the fleet lab's three hosts, a 3-member etcd that
the agents reach over the management network, one kvd guest protected with its right to
serve held at etcd (``Fleet(etcd_endpoints=...)``). The primary's host is then cut off from
etcd only (a firewall rule in its namespace: it still reaches its peer, the controller and
the client). Its agent must fence its own QEMU before the lease expires; the secondary takes
the right (a larger token) and serves; the client's writes survive.

The client cannot tell the sides apart (both answer at the guest's address), so the verdict
on the old side is its right's state (fenced) and the new side's larger token."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from colopp.arbiter.cluster import EtcdCluster, Member, free_port
from colopp.demo.harness import ClientWorkload
from colopp.fleet.local import LocalFleet
from colopp.lab import Network, Node

# ~75 s (one kvd pair, TCG): in CI, the acceptance test of the right to serve.

Site = tuple[LocalFleet, asyncio.AbstractEventLoop, list[int]]


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    loop = asyncio.new_event_loop()
    state = tmp_path_factory.mktemp("fleet-etcd")
    made = loop.run_until_complete(LocalFleet.start(state, qemu_root, "f21dep", taps=1))
    root = str(made.deployment.plan.address(Node.CONTROLLER, Network.MANAGEMENT))
    members = [Member(f"m{i}", root, free_port(), free_port()) for i in range(3)]
    (state / "etcd").mkdir()
    cluster = EtcdCluster(members, state / "etcd")
    try:
        cluster.start()
        made.fleet.etcd_endpoints = [m.client_url for m in members]
        yield made, loop, [m.client_port for m in members]
    finally:
        loop.run_until_complete(made.close())
        cluster.stop()
        loop.close()


def etcd_rule(netns: str, ports: list[int], action: str) -> None:
    """Add (``-I``) or delete (``-D``) the rule that cuts ``netns`` off from etcd only."""
    argv = ["ip", "netns", "exec", netns, "iptables", action, "OUTPUT", "-p", "tcp"]
    argv += ["-m", "multiport", "--dports", ",".join(map(str, ports)), "-j", "DROP"]
    subprocess.run(argv, check=True, capture_output=True)


async def wait_until(what: str, check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.1)  # the pair's state lives in the supervisor's task


def test_a_primary_cut_off_from_etcd_fences_itself_and_the_secondary_serves(site: Site) -> None:
    local, loop, ports = site
    run = loop.run_until_complete
    vm0, target = run(local.protect("vm0"))
    old, new = vm0.sides.primary, vm0.sides.secondary
    assert new is not None
    held = run(vm0.agents[old].call("right_status", timeout=10))
    assert held["state"] == "holding" and held["token"] > 0
    load = ClientWorkload(local.deployment.plan, target=target)
    netns = local.deployment.plan.netns(Node(old))
    try:
        run(asyncio.to_thread(load.served, 20))
        supervisor = local.fleet.supervise("vm0", loop)
        run(wait_until("heartbeats", lambda: supervisor.rounds >= 3, 30))
        etcd_rule(netns, ports, "-I")
        cut_at = time.monotonic()
        run(wait_until("served by the secondary", lambda: vm0.pair.primary.name == new, 60))
        served_s = time.monotonic() - cut_at
        run(asyncio.to_thread(load.served, 20))
        summary = load.finish()
        fenced = run(vm0.agents[old].call("right_status", timeout=10))
        taken = run(vm0.agents[new].call("right_status", timeout=10))
    finally:
        load.kill()
        etcd_rule(netns, ports, "-D")
    print(f"served by {new} {served_s:.1f}s after the cut;", summary["requests_failed"], "failed")
    assert [i.role for i in vm0.incidents][:1] == ["primary"]
    assert fenced["state"] == "fenced"
    assert taken["state"] == "holding" and taken["token"] > held["token"]
    assert summary["writes_lost"] == 0, summary["lost_keys"]
