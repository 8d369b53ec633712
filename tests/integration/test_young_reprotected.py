"""Young connections of a failover through the *next* failover (issue 18, docs/rewrite.md):
the window where the secondary loaded a checkpoint that the comparator never reported.

An idle and a busy keep-alive connection are opened (young: the two guests gave them
different initial sequence numbers, and the secondary host acknowledged their offsets).
Then the secondary loads a checkpoint (its ``filter-rewriter`` zeroes the offsets: the
connections are no longer young) while the comparator cannot report it (stopped), and the
primary dies. The promoted secondary must not keep those offsets in its table of record:
after live re-protection and a second failover both connections must still answer on the
same TCP connection. Before the fix the record kept them and the next side translated
connections that needed no translation: both hung at the second failover.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from colopp.lab import Node

ATTEMPTS = 5


@pytest.fixture(scope="module")
def site(qemu_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Driven]:
    yield from driven_pair(tmp_path_factory.mktemp("youngre"), qemu_root, "clpyre")


def _status(site: Driven, name: str) -> dict[str, Any]:
    return dict(site.run(site.sp.pair.agents[name].call("status")))


async def _secondary_loads_one(site: Driven, name: str, timeout: float) -> None:
    agent = site.sp.pair.agents[name]
    first = (await agent.call("status"))["checkpoints"]
    deadline = time.monotonic() + timeout
    while True:
        if (await agent.call("status"))["checkpoints"] > first:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} loaded no checkpoint in {timeout} s")
        await asyncio.sleep(0.05)  # the count lives in the agent's process: poll it


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


def _open_young(
    site: Driven, netns: str, guest: str
) -> tuple[NetnsHTTPConnection, NetnsHTTPConnection, int]:
    """Open the two connections and stop the primary's comparator with both still young
    (no checkpoint loaded by the secondary since they opened). Returns them and the
    comparator's pid (stopped)."""
    sp = site.sp
    for _ in range(ATTEMPTS):
        before = _status(site, sp.pair.secondary.name)["checkpoints"]
        idle = NetnsHTTPConnection(netns, guest, timeout=20.0)
        busy = NetnsHTTPConnection(netns, guest, timeout=20.0)
        assert idle.call("PUT", "/kv/yre-idle", b"i0")[0] == 200
        for n in range(3):
            assert busy.call("PUT", "/kv/yre-busy", f"b{n}".encode())[0] == 200
        pid = int(_status(site, sp.pair.primary.name)["comparator"]["pid"])
        os.kill(pid, signal.SIGSTOP)
        if _status(site, sp.pair.secondary.name)["checkpoints"] == before:
            return idle, busy, pid
        os.kill(pid, signal.SIGCONT)  # a checkpoint came first: not young any more
        idle.close()
        busy.close()
    pytest.fail(f"no two young connections in {ATTEMPTS} attempts")


def test_offsets_voided_by_an_unreported_checkpoint_leave_the_record(site: Driven) -> None:
    sp = site.sp
    netns, guest = sp.plan.netns(Node.CLIENT), str(sp.plan.guest_address.ip)
    site.run(sp.next_checkpoint())
    sp.supervise(site.loop)
    site.run(sp.heartbeats())

    idle, busy, comparator = _open_young(site, netns, guest)
    try:
        # The secondary loads the next periodic checkpoint; the comparator cannot say so.
        site.run(_secondary_loads_one(site, sp.pair.secondary.name, 30.0))
        os.kill(int(_status(site, sp.pair.primary.name)["pid"]), signal.SIGKILL)
        _wait_protected(site, 1)
        with contextlib.suppress(ProcessLookupError):
            os.kill(comparator, signal.SIGCONT)
        serving = sp.pair.agents[sp.pair.primary.name]
        ports = {conn.sock.getsockname()[1] for conn in (idle, busy) if conn.sock is not None}
        record = site.run(serving.call("translation_record"))
        assert [row for row in record if row["peer"][1] in ports] == []
        assert busy.call("PUT", "/kv/yre-busy", b"b3")[0] == 200

        status = _status(site, sp.pair.primary.name)
        os.kill(int(status["pid"]), signal.SIGKILL)  # the pair was re-protected live
        _wait_protected(site, 2)
        assert busy.call("PUT", "/kv/yre-busy", b"last")[0] == 200
        assert busy.call("GET", "/kv/yre-busy") == (200, b"last")
        assert idle.call("GET", "/kv/yre-idle") == (200, b"i0")
        assert idle.reconnects == 0 and busy.reconnects == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(comparator, signal.SIGCONT)
        idle.close()
        busy.close()
    site.run(sp.unsupervise())
