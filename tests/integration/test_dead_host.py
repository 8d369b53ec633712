"""A dead primary host (every link of its namespace down) under client load: the primary
fences itself by lease, the controller promotes the secondary only after that, clients
keep their connections, no acknowledged write is lost, and when the host is back the pair
is re-protected onto it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.state import PairState
from colopp.lab import Node


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("dead"), qemu_root, "clpdead")


def test_dead_primary_host_self_fences_and_secondary_takes_over(site: Driven) -> None:
    sp = site.sp
    lab = sp.local.deployment.lab
    assert lab is not None
    workload = site.supervised_under_load()
    try:
        lab.set_node_links(Node.HOST_A, False)
        site.run(sp.wait_for("dead host handled", lambda: sp.handled(1), 30))
        first = sp.incidents[0]
        assert (first.role, first.host, first.health, first.error) == (
            "primary",
            "hosta",
            "unreachable",
            None,
        )
        assert sp.pair.primary.name == "hostb"
        workload.served(100)  # the secondary serves alone
        lab.set_node_links(Node.HOST_A, True)
        beat = site.run(sp.pair.agents["hosta"].call("ping"))
        assert beat["self_fenced"] is True and beat["vm_alive"] is False
        site.run(sp.wait_for("re-protected", lambda: sp.pair.state is PairState.PROTECTED, 90))
        assert sp.pair.secondary is not None and sp.pair.secondary.name == "hosta"
        summary = workload.finish()
    finally:
        lab.set_node_links(Node.HOST_A, True)
        workload.kill()
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
