"""Young connections through two failovers in a row with QEMU's ``colo-compare``
(``--comparator builtin``; issue 18, docs/rewrite.md, "Comparators").

An idle and a busy keep-alive connection are opened right after a checkpoint, so the two
guests gave them different initial sequence numbers and the secondary's ``filter-rewriter``
translates them; the secondary's agent learns the same offsets from the replication streams
(``colopp.agent.rewriter_relay``). The primary dies before the next checkpoint: the promoted
side's table of record must hold both connections, and after live re-protection and a
second failover both must still answer on the same TCP connection. Before the relay the
record stayed empty on a builtin pair and both hung at the second failover.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest_pairs import Driven, driven_pair
from netns_client import NetnsHTTPConnection

from colopp.colo.state import PairState
from colopp.domain import ComparatorKind
from colopp.lab import Node

ATTEMPTS = 5


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(
        tmp_path_factory.mktemp("youngbi"), qemu_root, "clpybi", comparator=ComparatorKind.BUILTIN
    )


def _status(site: Driven, name: str) -> dict[str, Any]:
    return dict(site.run(site.sp.pair.agents[name].call("status")))


def _wait_protected(site: Driven, count: int) -> None:
    sp = site.sp
    site.run(
        sp.wait_for(
            f"failover {count}",
            lambda: sp.handled(count) and sp.pair.state is PairState.PROTECTED,
            180,
        )
    )
    assert sp.incidents[-1].error is None, sp.incidents[-1]


def _open_young_and_kill(
    site: Driven, netns: str, guest: str
) -> tuple[NetnsHTTPConnection, NetnsHTTPConnection]:
    """Open the two connections and SIGKILL the primary while both are still young (the
    secondary loaded no checkpoint since they opened and its relay learned both)."""
    sp = site.sp
    secondary = sp.pair.secondary.name
    for _ in range(ATTEMPTS):
        site.run(sp.next_checkpoint())
        before = _status(site, secondary)["checkpoints"]
        idle = NetnsHTTPConnection(netns, guest, timeout=20.0)
        busy = NetnsHTTPConnection(netns, guest, timeout=20.0)
        assert idle.call("PUT", "/kv/ybi-idle", b"i0")[0] == 200
        for n in range(3):
            assert busy.call("PUT", "/kv/ybi-busy", f"b{n}".encode())[0] == 200
        status = _status(site, secondary)
        if status["checkpoints"] == before and status["translation"]["young"] >= 2:
            os.kill(int(_status(site, sp.pair.primary.name)["pid"]), signal.SIGKILL)
            return idle, busy
        idle.close()  # a checkpoint came first: not young any more
        busy.close()
    pytest.fail(f"no two young connections in {ATTEMPTS} attempts")


def test_young_connections_survive_two_failovers_with_colo_compare(site: Driven) -> None:
    sp = site.sp
    netns, guest = sp.plan.netns(Node.CLIENT), str(sp.plan.guest_address.ip)
    sp.supervise(site.loop)
    site.run(sp.heartbeats())

    idle, busy = _open_young_and_kill(site, netns, guest)
    try:
        _wait_protected(site, 1)
        serving = sp.pair.agents[sp.pair.primary.name]
        ports = {conn.sock.getsockname()[1] for conn in (idle, busy) if conn.sock is not None}
        record = site.run(serving.call("translation_record"))
        assert {row["peer"][1] for row in record} >= ports, record
        assert busy.call("PUT", "/kv/ybi-busy", b"b3")[0] == 200

        os.kill(int(_status(site, sp.pair.primary.name)["pid"]), signal.SIGKILL)
        _wait_protected(site, 2)
        assert busy.call("PUT", "/kv/ybi-busy", b"last")[0] == 200
        assert busy.call("GET", "/kv/ybi-busy") == (200, b"last")
        assert idle.call("GET", "/kv/ybi-idle") == (200, b"i0")
        assert idle.reconnects == 0 and busy.reconnects == 0
    finally:
        idle.close()
        busy.close()
    site.run(sp.unsupervise())


def test_a_builtin_secondarys_relay_learns_and_forwards(site: Driven) -> None:
    """After the two failovers the new secondary's relay carries the streams again."""
    sp = site.sp
    site.run(sp.next_checkpoint())
    relay = _status(site, sp.pair.secondary.name)["translation"]["relay"]
    assert relay["client_frames"] > 0 and relay["guest_frames"] > 0, relay
