"""An IPv6 client gets COLO's guarantees (issue #23), with colopp's comparator.

The client talks to the guest's unique-local IPv6 address only. Its traffic is compared, not
passed through (the comparator's pass-through counters name no IPv6 EtherType, while its
compared counter grows). Then one primary SIGKILL: connections opened before the failover
keep working, no write the client saw acknowledged is lost, and a connection opened after the
last periodic checkpoint (its SYN-ACK waited for a checkpoint of its own) survives too.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair
from netns_client import NetnsHTTPConnection

from colopp.colo.state import PairState
from colopp.demo.harness import ClientWorkload
from colopp.lab import Node

STATUS_DEADLINE_S = 10.0  # the comparator rewrites its status every 0.5 s


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("six"), qemu_root, "clpsix")


def counters(site: Driven) -> dict[str, Any]:
    primary = site.sp.pair.primary
    assert primary is not None
    status = site.run(site.sp.pair.agents[primary.name].call("status"))
    found: dict[str, Any] = status["comparator"]["counters"]
    return found


def counter_exceeds(site: Driven, name: str, floor: int) -> dict[str, Any]:
    """The primary comparator's counters once ``name`` passed ``floor`` (each poll is an
    agent RPC; fails after STATUS_DEADLINE_S)."""
    deadline = time.monotonic() + STATUS_DEADLINE_S
    while (found := counters(site))[name] <= floor:
        assert time.monotonic() < deadline, f"{name} stayed at {found[name]}"
    return found


def test_ipv6_client_is_compared_and_its_connections_survive_a_primary_kill(
    site: Driven,
) -> None:
    sp = site.sp
    netns, guest = sp.plan.netns(Node.CLIENT), str(sp.plan.guest_address6.ip)
    workload = ClientWorkload(sp.plan, connections=3, ipv6=True)
    young = NetnsHTTPConnection(netns, guest, timeout=10.0)
    try:
        workload.served(20)
        before = counters(site)
        workload.served(20)
        after = counter_exceeds(site, "matched_frames", before["matched_frames"] + 40)
        # IPv6 is compared, and no IPv6 frame is counted among those released uncompared.
        assert "0x86dd" not in after["passthrough_by_ethertype"], after
        assert after["passthrough_frames"] - before["passthrough_frames"] < 20, after
        # The workload's connections live across checkpoints (README: limits).
        site.run(sp.next_checkpoint())
        site.run(sp.next_checkpoint())
        sp.supervise(site.loop)
        site.run(sp.heartbeats())
        # A connection opened after the last periodic checkpoint, then the kill at once.
        births = counters(site)["ipv6_birth_checkpoints"]
        young.connect()  # returns with the SYN-ACK: after its own checkpoint
        counter_exceeds(site, "ipv6_birth_checkpoints", births)
        primary = sp.pair.primary
        assert primary is not None
        os.kill(int(site.run(sp.pair.agents[primary.name].call("status"))["pid"]), signal.SIGKILL)
        workload.mark()
        site.run(sp.wait_for("failover", lambda: sp.handled(1), 60))
        assert sp.incidents[0].error is None, sp.incidents[0]
        assert young.call("PUT", "/kv/young6", b"after")[0] == 200
        assert young.call("GET", "/kv/young6") == (200, b"after")
        assert young.reconnects == 0  # connect() above counted none
        workload.served(30)  # the promoted secondary answers on the old connections
        summary = workload.finish()
    finally:
        young.close()
        workload.kill()
    site.run(sp.unsupervise())
    assert sp.pair.state is not PairState.ERROR
    assert summary["requests_ok"] > 50
    assert summary["requests_failed"] == 0, summary["errors"]
    assert summary["connections_reset"] == 0
    assert summary["writes_lost"] == 0, summary["lost_keys"]
    assert summary["counter_regressions"] == 0
