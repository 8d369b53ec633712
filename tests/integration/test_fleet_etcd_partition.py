"""The etcd partition on a real COLO pair, judged on the cables (``bench.fleet_paths``).

The fleet lab's three hosts, a 3-member etcd that the agents reach over the management
network, one kvd guest protected with its right to serve held at etcd, a client workload,
a watcher on every host's service uplink (frames from the guest's MAC leaving that host)
and an ARP probe every serving side answers. The primary's host is cut off from etcd only
(a firewall rule in its namespace: it still reaches its peer, the controller and the
client).

- With fencing, its agent fences its own QEMU before the lease expires; the secondary takes
  the right (a larger token) and serves; no frame leaves the old host once the new one's
  frames begin, and the client's writes survive.
- The control (``unsafe_no_fence``, tests only): the old primary keeps running; once it is
  failed over and the old primary is also told to serve, the watchers must see frames
  leave both hosts: the check can fail."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.fleet_paths import partition
from colopp.arbiter.cluster import EtcdCluster, Member, free_port
from colopp.fleet.local import LocalFleet
from colopp.lab import Network, Node
from tests.integration.etcd_lab import need_etcd

# ~80 s (two kvd pairs one after the other, TCG): in CI.

Site = tuple[LocalFleet, asyncio.AbstractEventLoop, list[int]]


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    need_etcd()
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


def test_a_primary_cut_off_from_etcd_fences_itself_before_the_secondary_serves(
    site: Site,
) -> None:
    local, loop, ports = site
    seen = loop.run_until_complete(partition(local, ports, "vm0", fence=True))
    print("fenced:", {k: v for k, v in seen.items() if k != "scope"})
    assert seen["frames_isolated_before_cut"] > 0, seen  # the watcher saw the primary serve
    assert seen["frames_other_after_cut"] > 0, seen  # and the secondary serve after it
    assert not seen["dual_primary_observed"], seen
    assert seen["old_right"]["state"] == "fenced", seen
    assert seen["new_right"]["state"] == "holding", seen
    assert seen["new_right"]["token"] > seen["token_before"], seen
    assert seen["writes_lost"] == 0, seen


def test_without_fencing_the_watchers_see_two_primaries(site: Site) -> None:
    local, loop, ports = site
    seen = loop.run_until_complete(partition(local, ports, "vm1", fence=False))
    print("control:", {k: v for k, v in seen.items() if k != "scope"})
    assert seen["old_right"]["state"] != "holding", seen  # it lost the right ...
    assert seen["dual_primary_observed"], seen  # ... and served on: the check can fail
    assert seen["late_frames"] > 0 and seen["intervals_both"] > 0, seen
