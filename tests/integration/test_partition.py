"""Split-brain prevention: the replication link is cut while both hosts still answer the
controller. Exactly one side keeps serving, the other is fenced, no acknowledged write is
lost; when the link is back, the pair is re-protected.

Which side serves depends on where the cut finds the primary. Usually its checkpoint waits
for the secondary's reply with the VM running, the checkpoint falls overdue, the primary is
judged ``stalled`` and the secondary is fenced. If the cut comes while QEMU stops the VM for
a checkpoint, the stop drains the disk's in-flight writes to the secondary's NBD export with
QEMU's big lock held, so the primary's QMP stops answering: it is judged ``hung``, fenced,
and the secondary (which holds the last checkpoint, everything the clients were answered
from) takes over (read off QEMU's migration/colo.c and seen once in CI, session 16). Both
keep exactly one side serving; the test accepts either.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.state import PairState
from colopp.lab import Network, Node

#: The incident a cut replication link may cause -> which side's VM is alive after it.
PARTITION_VERDICTS = {
    ("secondary", "hostb", "stalled"): {"hosta": True, "hostb": False},
    ("primary", "hosta", "hung"): {"hosta": False, "hostb": True},
}


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
        verdict = (incident.role, incident.host, incident.health)
        assert verdict in PARTITION_VERDICTS, verdict
        assert incident.fenced and incident.error is None
        alive = {n: site.run(a.call("ping"))["vm_alive"] for n, a in sp.pair.agents.items()}
        assert alive == PARTITION_VERDICTS[verdict]  # exactly one side serves
        workload.served(100)  # one side serves alone, under load
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
