"""Split-brain prevention: the replication link is cut while both hosts still answer the
controller. Exactly one side keeps serving (the primary), the other is fenced, no
acknowledged write is lost; when the link is back, the pair is re-protected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.state import PairState
from colopp.lab import Network, Node


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("split"), qemu_root, "clpsplit")


def test_replication_partition_keeps_exactly_one_serving_side(site: Driven) -> None:
    sp = site.sp
    lab = sp.local.deployment.lab
    assert lab is not None
    workload = site.supervised_under_load()
    try:
        lab.set_link(Node.HOST_B, Network.REPLICATION, False)
        site.run(sp.wait_for("partition handled", lambda: sp.handled(1), 60))
        incident = sp.incidents[0]
        assert (incident.role, incident.host, incident.health) == ("secondary", "hostb", "stalled")
        assert incident.fenced and incident.error is None
        alive = {n: site.run(a.call("ping"))["vm_alive"] for n, a in sp.pair.agents.items()}
        assert alive == {"hosta": True, "hostb": False}  # exactly one side serves
        workload.served(100)  # the primary serves alone, under load
        assert sp.pair.state is PairState.FAILED_OVER  # no re-protect without a path
        lab.set_link(Node.HOST_B, Network.REPLICATION, True)
        site.run(sp.wait_for("re-protected", lambda: sp.pair.state is PairState.PROTECTED, 90))
        summary = workload.finish()
    finally:
        lab.set_link(Node.HOST_B, Network.REPLICATION, True)
        workload.kill()
    assert summary["requests_ok"] > 50
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
