"""Young connections through failovers in a row (issue #18, docs/rewrite.md).

Connections opened since the last checkpoint have different initial sequence numbers in the
two guests. With colopp's comparator they must keep working through any number of
failovers, each followed by re-protection: an idle connection opened just before the first
failover (silent 60 s, then used) and a busy one opened just before the second.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest_pairs import Driven, driven_pair
from netns_client import NetnsHTTPConnection

from colopp.colo.state import PairState
from colopp.lab import Node


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("young"), qemu_root, "clpyoung")


def _kill_primary_and_reprotect(site: Driven, count: int) -> None:
    sp = site.sp
    status = site.run(sp.pair.agents[sp.pair.primary.name].call("status"))
    os.kill(int(status["pid"]), signal.SIGKILL)
    site.run(
        sp.wait_for(
            f"failover {count}",
            lambda: sp.handled(count) and sp.pair.state is PairState.PROTECTED,
            180,
        )
    )
    assert sp.incidents[-1].error is None, sp.incidents[-1]


def test_young_and_idle_connections_survive_two_failovers(site: Driven) -> None:
    sp = site.sp
    netns, guest = sp.plan.netns(Node.CLIENT), str(sp.plan.guest_address.ip)
    site.run(sp.next_checkpoint())
    sp.supervise(site.loop)
    site.run(sp.heartbeats())

    idle = NetnsHTTPConnection(netns, guest, timeout=10.0)
    busy = NetnsHTTPConnection(netns, guest, timeout=10.0)
    try:
        assert idle.call("PUT", "/kv/young-idle", b"before")[0] == 200
        opened = time.monotonic()
        _kill_primary_and_reprotect(site, 1)  # the idle connection is young here

        assert busy.call("PUT", "/kv/young-busy", b"b0")[0] == 200
        _kill_primary_and_reprotect(site, 2)  # a pair that was itself re-protected
        for n in range(1, 4):
            assert busy.call("PUT", "/kv/young-busy", f"b{n}".encode())[0] == 200
            assert busy.call("GET", "/kv/young-busy") == (200, f"b{n}".encode())

        # The scenario's silence (not a synchronisation): the idle connection says nothing.
        site.run(sp.wait_for("60 s of silence", lambda: time.monotonic() >= opened + 60, 120))
        assert idle.call("GET", "/kv/young-idle") == (200, b"before")
        assert idle.reconnects == 0 and busy.reconnects == 0
    finally:
        idle.close()
        busy.close()
    site.run(sp.unsupervise())
