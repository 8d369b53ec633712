"""An IPv6 client gets COLO's guarantees (issue #23), with colopp's comparator.

The client talks to the guest's unique-local IPv6 address only. Its traffic is compared, not
passed through (the comparator's pass-through counters name no IPv6 EtherType, while its
compared counter grows); connections opened before the failover keep working through a
primary SIGKILL, and no write the client saw acknowledged is lost.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair

from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("six"), qemu_root, "clpsix")


def counters(site: Driven) -> dict[str, Any]:
    primary = site.sp.pair.primary
    assert primary is not None
    status = site.run(site.sp.pair.agents[primary.name].call("status"))
    found: dict[str, Any] = status["comparator"]["counters"]
    return found


def test_ipv6_client_is_compared_and_survives_a_primary_kill(site: Driven) -> None:
    sp = site.sp
    workload = ClientWorkload(sp.plan, connections=3, ipv6=True)
    try:
        workload.served(20)
        before = counters(site)
        workload.served(20)
        after = counters(site)
        # IPv6 is compared: the compared count grows with the client's requests, and no
        # IPv6 frame is counted among those released uncompared.
        assert after["matched_frames"] - before["matched_frames"] >= 40
        assert "0x86dd" not in after["passthrough_by_ethertype"], after
        assert after["passthrough_frames"] - before["passthrough_frames"] < 20, after
        # Connections must live across one checkpoint before a failover (README: limits).
        site.run(sp.next_checkpoint())
        site.run(sp.next_checkpoint())
        sp.supervise(site.loop)
        site.run(sp.heartbeats())
        old_primary = sp.pair.primary
        assert old_primary is not None
        pid = site.run(sp.pair.agents[old_primary.name].call("status"))["pid"]
        os.kill(pid, signal.SIGKILL)
        workload.mark()
        site.run(sp.wait_for("failover", lambda: sp.handled(1), 60))
        workload.served(30)  # the promoted secondary answers on the old connections
        summary = workload.finish()
    finally:
        workload.kill()
    assert sp.incidents[0].error is None, sp.incidents[0]
    assert sp.pair.state is not PairState.ERROR
    assert summary["requests_ok"] > 50
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
    assert summary["counter_regressions"] == 0
